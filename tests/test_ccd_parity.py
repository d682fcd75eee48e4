"""Parity of detcal.ccd.process with ccdproc 2.5 on the same simulated frames (float32 rounding).

ccdproc is a test dependency only; detcal never imports it.
"""

import warnings

import astropy.units as u
import ccdproc  # test dependency (pyproject [test]); detcal never imports it
import numpy as np
import pytest
from astropy.modeling import models
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.stats import mad_std

from detcal.ccd import process
from detcal.ccd.sections import parse_section
from detcal.simulate import ccd as sim

pytestmark = pytest.mark.parity

SPEC = {"rows": 40, "columns": 48, "overscan": 8, "nbias": 5, "darks": {70: 5, 300: 5}}
OVERSCAN, TRIM = "[49:56, :]", "[1:48, :]"
F32 = np.finfo(np.float32).eps


def _close(mine, ref):
    """Equal to float32 rounding of the reference's magnitude."""
    ref = np.asarray(ref, np.float64)
    tol = 4 * F32 * max(1.0, float(np.nanmax(np.abs(ref))))
    np.testing.assert_allclose(mine, ref, rtol=0, atol=tol)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Raw frames of one simulated set: {'bias': [...], 70.0: [...], 300.0: [...]} (float64 ADU)."""
    spec = dict(SPEC, overrides={"cr_rate": 2e-4})  # many cosmic rays, so the clipping matters
    s = sim.normalize_spec(spec)
    truth = sim.make_truth(s, 11)
    rng = np.random.default_rng(5)
    out = {"bias": [sim.simulate_frame(s, truth, "bias", 0.0, rng)[0].astype(np.float64) for _ in range(5)]}
    for t in (70.0, 300.0):
        out[t] = [sim.simulate_frame(s, truth, "dark", t, rng)[0].astype(np.float64) for _ in range(5)]
    return out


@pytest.mark.parametrize("model", ["median", "mean", "polynomial"])
def test_overscan_subtraction_matches_ccdproc(frames, model):
    raw = frames[300.0][0]
    mine, _ = process.subtract_overscan(raw, parse_section(OVERSCAN, raw.shape), model, order=2)
    kw = {"median": model == "median"}
    if model == "polynomial":
        kw["model"] = models.Polynomial1D(2)
    ref = ccdproc.subtract_overscan(CCDData(raw, unit="adu"), fits_section=OVERSCAN, overscan_axis=1, **kw)
    _close(mine, ref.data)


def test_overscan_along_columns_matches_ccdproc(frames):
    raw = frames[70.0][0][:, :48]
    section = "[:, 33:40]"  # a row strip: one level per column
    mine, level = process.subtract_overscan(raw, parse_section(section, raw.shape), "median")
    assert level.shape == (1, 48)
    ref = ccdproc.subtract_overscan(CCDData(raw, unit="adu"), fits_section=section, overscan_axis=0, median=True)
    _close(mine, ref.data)


def test_trim_matches_ccdproc(frames):
    raw = frames["bias"][0]
    mine = process.trim(raw, parse_section("[3:45, 2:39]", raw.shape))
    ref = ccdproc.trim_image(CCDData(raw, unit="adu"), fits_section="[3:45, 2:39]")
    assert mine.shape == ref.shape
    _close(mine, ref.data)


def _calibrated(frames, key):
    sl = parse_section(OVERSCAN, frames[key][0].shape)
    tr = parse_section(TRIM, frames[key][0].shape)
    return [process.trim(process.subtract_overscan(f, sl, "median")[0], tr) for f in frames[key]]


@pytest.mark.parametrize("method", ["average", "median"])
def test_sigma_clipped_combine_matches_ccdproc(frames, method):
    stack = _calibrated(frames, 300.0)
    value, mask, scatter, n_used = process.combine(stack, method=method, clip="sigma", low=5, high=5,
                                                   center="median", dev="mad_std", mem_limit=2e4)
    assert (n_used < len(stack)).sum() > 20  # cosmic rays were rejected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ccdproc.combine([CCDData(f, unit="adu") for f in stack], method=method, sigma_clip=True,
                              sigma_clip_low_thresh=5, sigma_clip_high_thresh=5,
                              sigma_clip_func=np.ma.median, sigma_clip_dev_func=mad_std, mem_limit=2e4)
    _close(value, ref.data)
    np.testing.assert_array_equal(mask, ref.mask)
    _close(scatter, ref.uncertainty.array)


def test_combine_without_clipping_is_the_plain_mean(frames):
    stack = _calibrated(frames, 70.0)
    value, mask, _, n_used = process.combine(stack, clip="none")
    ref = ccdproc.combine([CCDData(f, unit="adu") for f in stack], method="average")
    _close(value, ref.data)
    assert not mask.any() and (n_used == len(stack)).all()


def test_memory_limit_splits_the_combine_into_row_blocks_without_changing_it(frames):
    stack = _calibrated(frames, 300.0)
    assert process.tile_rows(len(stack), stack[0].shape, "average", 2e4) < stack[0].shape[0]
    small = process.combine(stack, mem_limit=2e4)[0]
    whole = process.combine(stack, mem_limit=1e9)[0]
    np.testing.assert_array_equal(small, whole)


def test_bias_and_scaled_dark_subtraction_match_ccdproc(frames):
    bias = process.combine(_calibrated(frames, "bias"))[0]
    d300 = process.combine([f - bias for f in _calibrated(frames, 300.0)])[0]
    light = _calibrated(frames, 70.0)[0]
    mine_b, _ = process.subtract_bias(light, bias)
    ref_b = ccdproc.subtract_bias(CCDData(light, unit="adu"), CCDData(bias, unit="adu"))
    _close(mine_b, ref_b.data)
    mine_d = process.subtract_dark(mine_b, d300, 70.0, 300.0, scale=True)
    ref_d = ccdproc.subtract_dark(ref_b, CCDData(d300, unit="adu"), dark_exposure=300 * u.s,
                                  data_exposure=70 * u.s, scale=True)
    _close(mine_d, ref_d.data)
    scaled, unc = process.scale_dark(d300, 300.0, 70.0, np.full(d300.shape, 2.0))
    _close(mine_b - scaled, ref_d.data)
    ref_s = CCDData(d300, unit="adu", uncertainty=StdDevUncertainty(np.full(d300.shape, 2.0))).multiply(70 / 300)
    _close(unc, ref_s.uncertainty.array)


def test_deviation_matches_ccdproc_create_deviation(frames):
    signal = _calibrated(frames, 300.0)[0] - 3.0
    mine = process.deviation(signal, 1.5, 8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ccdproc.create_deviation(CCDData(signal, unit="adu"), gain=1.5 * u.electron / u.adu,
                                       readnoise=8.0 * u.electron, disregard_nan=True)
    _close(mine, ref.uncertainty.array)


def test_workflow_products_match_a_ccdproc_reduction_of_the_same_files(tmp_path):
    """The branch's master bias, master darks and scaled dark (files, as the rules write them)
    against the Astropy CCD guide's ccdproc calls on the same raw files."""
    import ccdkit

    spec = {"rows": 24, "columns": 32, "overscan": 8, "nbias": 5, "darks": {30: 3, 300: 5},
            "lights": {90: 1}, "overrides": {"cr_rate": 5e-5}}
    cfg = ccdkit.ccd_config(**ccdkit.sections_for(spec))
    p = ccdkit.run_branch(tmp_path, spec, 21, cfg=cfg, analysis=False)
    kw = {"sigma_clip": True, "sigma_clip_low_thresh": 5, "sigma_clip_high_thresh": 5,
          "sigma_clip_func": np.ma.median, "sigma_clip_dev_func": mad_std, "mem_limit": 350e6}

    def calibrated(path):
        ccd = CCDData.read(path, unit="adu")
        ccd = ccdproc.subtract_overscan(ccd, fits_section=cfg["overscan"], median=True, overscan_axis=1)
        return ccdproc.trim_image(ccd, fits_section=cfg["trim"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias = ccdproc.combine([calibrated(f) for f in p["plan"]["bias_files"]], **kw)
        mine_bias = CCDData.read(p["master_bias"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
        _close(mine_bias.data, bias.data)
        bias32 = CCDData(mine_bias.data.astype(np.float64), unit="adu")  # the rules subtract the file
        for label, path in p["master_darks"].items():
            darks = [ccdproc.subtract_bias(calibrated(f), bias32)
                     for f in p["plan"]["dark_exptimes"][label]["files"]]
            ref = ccdproc.combine(darks, **kw)
            _close(CCDData.read(path, hdu_uncertainty="UNCERT", hdu_mask="MASK").data, ref.data)
        zero = CCDData(np.zeros(ref.shape), unit="adu", meta={"EXPTIME": 90.0})
        ref_scaled = ccdproc.subtract_dark(zero, CCDData(ref.data, unit="adu", meta={"EXPTIME": 300.0}),
                                           exposure_time="EXPTIME", exposure_unit=u.s, scale=True)
    scaled = CCDData.read(p["scaled_darks"][90], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    _close(scaled.data, -ref_scaled.data)
