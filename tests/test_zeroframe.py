"""ZEROFRAME through the detector1 chain, bit for bit with jwst 3.0 / stcal 1.20.

jwst corrects a level-1b ZEROFRAME (header ZEROFRAM = T) in four steps and leaves it alone in the
others (dq_init, dark_current, jump): saturation sets saturated (grown) and A-to-D-floor values
to 0, superbias subtracts the bias, refpix corrects it as one more group, linearity linearises
it; 0 means "no value" and stays 0. ramp_fit then uses it for integrations saturated from group 1
(0-based group 0) when ``suppress_one_group`` is off. Each step is checked against jwst/stcal on
the same arrays, then the whole chain: one level-1b file (NFRAMES=2 groups, whose ZEROFRAME is the
first frame, read before group 1 saturates) through detcal's steps as the workflow runs them and
through jwst's Detector1 steps (offline, override references) gives the same ZEROFRAME after every
step and the same rates.
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags as jwst_dqflags

from detcal import dqflags, io, pipeline, runner, simulate
from detcal.steps import linearity, ramp_fit, saturation, superbias

from conftest import make_ramp
from test_parity_basic import model_meta
from test_refpix import border, realistic

pytestmark = pytest.mark.parity

SAT, DNU, NSC, REF = (dqflags.SATURATED, dqflags.DO_NOT_USE, dqflags.NO_SAT_CHECK,
                      dqflags.REFERENCE_PIXEL)


def zeroframe_values(rng, shape, low=-50.0, high=40000.0):
    """float32 ZEROFRAME [DN] over [low, high) with ~10 % exact zeros (no value)."""
    zf = rng.uniform(low, high, shape).astype(np.float32)
    zf[rng.random(shape) < 0.1] = 0.0
    return zf


# --------------------------------------------------------------------------------------------
# step by step, on the same arrays
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grow", [0, 1, 2])
def test_saturation_zeroes_the_zeroframe_as_stcal(grow):
    from stcal.saturation.saturation import flag_saturated_pixels
    rng = np.random.default_rng(40 + grow)
    nints, ngroups, ny, nx = 2, 3, 23, 19
    thr = rng.normal(30000, 500, (ny, nx)).astype(np.float32)
    thr[rng.random((ny, nx)) < 0.05] = np.nan
    sat_dq = np.where(rng.random((ny, nx)) < 0.05, NSC, 0).astype(np.uint32)
    zf = zeroframe_values(rng, (nints, ny, nx), high=34000.0)
    zf[1, 2:4, 2:4] = -5.0                                       # A-to-D floor
    thr[8:17, 8:17], sat_dq[8:17, 8:17] = 30000.0, 0             # one saturated pixel, clean box
    zf[0, 8:17, 8:17] = 1000.0
    zf[0, 12, 12] = 31000.0
    data = rng.uniform(100, 20000, (nints, ngroups, ny, nx)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    _, _, expect = flag_saturated_pixels(
        data, gdq, np.zeros((ny, nx), np.uint32), thr.copy(), sat_dq.copy(),
        saturation.ATOD_LIMIT, jwst_dqflags.pixel, n_pix_grow_sat=grow, zframe=zf.copy(),
        read_pattern=saturation.read_pattern(ngroups, 1))
    ramp = make_ramp(nints, ngroups, ny, nx, data=data, ZEROFRAM=True)
    ramp.zeroframe = zf.copy()
    ramp = saturation.run(ramp, {"saturation": io.Reference("SATURATION", thr, sat_dq)},
                          n_pix_grow_sat=grow)
    np.testing.assert_array_equal(ramp.zeroframe, expect)
    # the case exercised what it claims: values zeroed by the threshold, the floor and the growth
    over = (zf >= np.where(np.isnan(thr), np.inf, thr)) & (zf != 0) & ((sat_dq & NSC) == 0)
    assert over.sum() > 10 and np.all(expect[over] == 0)
    assert np.all(expect[1, 2:4, 2:4] == 0)
    assert expect[0, 12, 12] == 0 and expect[0, 12 + grow, 12 - grow] == 0
    assert expect[0, 12 + grow + 1, 12] == 1000.0 and expect[0, 12, 12 - grow - 1] == 1000.0


def test_superbias_subtracts_the_bias_from_the_zeroframe_as_jwst():
    from jwst.superbias.bias_sub import do_correction
    rng = np.random.default_rng(5)
    nints, ny, nx = 2, 9, 7
    data = rng.normal(12000, 300, (nints, 3, ny, nx)).astype(np.float32)
    zf = zeroframe_values(rng, (nints, ny, nx), 9000.0, 14000.0)
    bias = rng.normal(10000, 50, (ny, nx)).astype(np.float32) + np.float32(0.1234567)
    bias[rng.random((ny, nx)) < 0.2] = np.nan
    ramp = make_ramp(nints, 3, ny, nx, data=data, ZEROFRAM=True)
    ramp.zeroframe = zf.copy()
    model = datamodels.RampModel(data=data.copy(), pixeldq=ramp.pixeldq.copy(),
                                 groupdq=ramp.groupdq.copy(), zeroframe=zf.copy())
    model_meta(model, ramp).meta.exposure.zero_frame = True
    bias_model = datamodels.SuperBiasModel(data=bias.copy(), dq=np.zeros((ny, nx), np.uint32))
    theirs = do_correction(model, model_meta(bias_model, ramp))
    ramp = superbias.run(ramp, {"superbias": io.Reference("SUPERBIAS", bias, None)})
    np.testing.assert_array_equal(ramp.zeroframe, theirs.zeroframe)
    np.testing.assert_array_equal(ramp.data, theirs.data)
    assert np.all(ramp.zeroframe[zf == 0] == 0) and np.any(zf == 0)
    sub = (zf != 0) & ~np.isnan(bias)                          # NaN bias counts as 0
    np.testing.assert_array_equal(ramp.zeroframe[sub], (zf - bias)[sub])
    assert np.any((zf != 0) & np.isnan(bias))


def test_linearity_linearises_the_zeroframe_as_stcal():
    from stcal.linearity.linearity import linearity_correction
    rng = np.random.default_rng(3)
    ni, ng, ny, nx = 2, 4, 30, 40
    data = rng.uniform(-100, 60000, (ni, ng, ny, nx)).astype(np.float32)
    zf = zeroframe_values(rng, (ni, ny, nx), -100.0, 60000.0)
    coeffs = np.stack([rng.normal(0, 3, (ny, nx)), rng.normal(1, 0.01, (ny, nx)),
                       rng.normal(1e-6, 1e-7, (ny, nx)), rng.normal(1e-11, 1e-12, (ny, nx))]
                      ).astype(np.float32)
    coeffs[2, 3, 4] = np.nan
    coeffs[1, 5, 5] = 0.0
    lin_dq = np.zeros((ny, nx), np.uint32)
    lin_dq[7, 7] = dqflags.NO_LIN_CORR
    gdq = np.where(rng.random(data.shape) < 0.1, SAT, 0).astype(np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    _, _, expect = linearity_correction(data.copy(), gdq.copy(), pdq.copy(), coeffs.copy(),
                                        lin_dq.copy(), jwst_dqflags.pixel, zframe=zf.copy())
    ramp = make_ramp(ni, ng, ny, nx, data=data, groupdq=gdq, ZEROFRAM=True)
    ramp.zeroframe = zf.copy()
    ramp = linearity.run(ramp, {"linearity": io.Reference("LINEARITY", coeffs, lin_dq)})
    np.testing.assert_array_equal(ramp.zeroframe, expect)
    assert np.all(expect[zf == 0] == 0) and np.any(zf == 0)
    changed = expect != zf
    assert changed.mean() > 0.8 and not changed[:, 7, 7].any() and not changed[:, 5, 5].any()


def _refpix_file(tmp_path, subarray):
    """A NIRCam ramp file with ZEROFRAME: 4-output full frame or a 1-output subarray (SUB160)."""
    fast, slow = -1, 2
    full, pdq_full = realistic((2, 2, 2048, 2048), 23, fast, slow)
    zf_full = realistic((2, 1, 2048, 2048), 24, fast, slow)[0][:, 0] + np.float32(150.0)
    zf_full[:, 100:140, 300:305] = 0.0                              # no value: stays 0
    if subarray:
        y0, x0, n = 1888, 0, 160                                   # corner subarray with refs
        cut = (Ellipsis, slice(y0, y0 + n), slice(x0, x0 + n))
        data, pdq, zf = (np.ascontiguousarray(a[cut]) for a in (full, pdq_full, zf_full))
        pdq[border((2048, 2048))[cut]] |= REF
        zf[:, 20:30, 40:44] = 0.0
        keys = dict(SUBARRAY="SUB160", SUBSTRT1=x0 + 1, SUBSTRT2=y0 + 1, NOUTPUTS=1)
    else:
        data, pdq, zf = full, pdq_full, zf_full
        keys = {}
    nints, ngroups, ny, nx = data.shape
    ramp = make_ramp(nints, ngroups, ny, nx, data=data, pixeldq=pdq, FASTAXIS=fast,
                     SLOWAXIS=slow, ZEROFRAM=True, **keys)
    ramp.zeroframe = zf
    path = tmp_path / f"refpix_{'sub' if subarray else 'full'}.fits"
    io.write_ramp(ramp, path, step="linearity")
    return path, zf


@pytest.mark.parametrize("subarray,params", [
    (False, {}),                                              # float64 buffer (side pixels)
    (False, {"use_side_ref_pixels": False}),                  # float32 buffer throughout
    (True, {}),
], ids=["full", "full-noside", "subarray"])
def test_refpix_corrects_the_zeroframe_as_jwst(tmp_path, subarray, params):
    from jwst.refpix import RefPixStep
    path, zf = _refpix_file(tmp_path, subarray)
    out = tmp_path / "detcal_refpix.fits"
    runner.run_step_file("refpix", str(path), {}, str(out), params=params)
    ours = io.read_ramp(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with datamodels.RampModel(str(path)) as model:
            assert model.meta.exposure.zero_frame is True
            theirs = RefPixStep(override_refpix="N/A", override_sirskernel="N/A",
                                **params).run(model)
            expect, expect_data = np.array(theirs.zeroframe), np.array(theirs.data)
    np.testing.assert_array_equal(ours.data, expect_data)
    np.testing.assert_array_equal(ours.zeroframe, expect)
    assert np.all(expect[zf == 0] == 0) and np.any(zf == 0)
    assert np.abs(expect - zf)[zf != 0].max() > 5.0             # the correction did something


# --------------------------------------------------------------------------------------------
# the whole chain: detcal's steps vs jwst's Detector1 steps on one level-1b file
# --------------------------------------------------------------------------------------------
#: jwst step class and its override references (config keys) for each detcal step.
JWST_STEPS = {
    "dq_init": ("jwst.dq_init.DQInitStep", {"mask": "mask"}),
    "saturation": ("jwst.saturation.SaturationStep", {"saturation": "saturation",
                                                      "superbias": "superbias"}),
    "superbias": ("jwst.superbias.SuperBiasStep", {"superbias": "superbias"}),
    "refpix": ("jwst.refpix.RefPixStep", {"refpix": None, "sirskernel": None}),
    "linearity": ("jwst.linearity.LinearityStep", {"linearity": "linearity"}),
    "dark_current": ("jwst.dark_current.DarkCurrentStep", {"dark": "dark"}),
    "jump": ("jwst.jump.JumpStep", {"gain": "gain", "readnoise": "readnoise"}),
    "ramp_fit": ("jwst.ramp_fitting.RampFitStep", {"gain": "gain", "readnoise": "readnoise"}),
}


def _jwst_step(step, refs, **params):
    import importlib
    dotted, overrides = JWST_STEPS[step]
    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    kwargs = {f"override_{k}": (refs[v] if v else "N/A") for k, v in overrides.items()}
    return cls(**kwargs, **params)


def _relabel_as_subarray(path):
    """Mark a simulated 32 x 32 mini-detector file as a 1-output corner subarray (as jwst reads)."""
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["SUBARRAY"] = "SUB32"
        hdul[0].header["NOUTPUTS"] = 1


#: (READPATT, NGROUPS, NINTS, simulator overrides): ~1 s frames and 10 s frames, NFRAMES 2 and 4.
CHAIN_REGIMES = {"BRIGHT2": ("BRIGHT2", 5, 2, {}),
                 "SHALLOW4-10s": ("SHALLOW4", 4, 1, {"tframe": 10.0})}


@pytest.fixture(scope="module", params=sorted(CHAIN_REGIMES))
def level1b_bright(tmp_path_factory, request):
    """A NIRCam NFRAMES > 1 exposure rewritten as a level-1b file with a ZEROFRAME.

    ~5 % of the active pixels saturate in group 1 (raw 65535 in every group) while their first
    frame (ZEROFRAME) is below the threshold; some of them have no ZEROFRAME value (0), some a
    saturated one. Elsewhere the ZEROFRAME is the first frame: group 1 minus half a frame of signal.
    """
    readpatt, ngroups, nints, overrides = CHAIN_REGIMES[request.param]
    tmp = tmp_path_factory.mktemp("zf_chain")
    files = simulate.write_detector_set({"name": "NRCA1", "preset": "nircam_sw", "size": 32,
                                         "readpatt": readpatt, "ngroups": ngroups, "nints": nints,
                                         "nexposures": 1, "overrides": overrides}, str(tmp), 11)
    refs = files["references"]
    for ref in refs.values():
        _relabel_as_subarray(ref)
    with fits.open(files["uncal"][0]) as hdul:
        header, sci = hdul[0].header.copy(), hdul["SCI"].data.astype(np.float64)
    thr = fits.getdata(refs["saturation"], "SCI").astype(np.float64)
    bias = fits.getdata(refs["superbias"], "SCI").astype(np.float64)
    rng = np.random.default_rng(11)
    nints, ngroups, ny, nx = sci.shape
    zf = sci[:, 0] - 0.5 * np.clip(sci[:, 1] - sci[:, 0], 0, None)
    active = np.zeros((ny, nx), bool)
    active[5:-5, 5:-5] = True
    hit = active & (rng.random((nints, ny, nx)) < 0.05)
    sci[np.broadcast_to(hit[:, None], sci.shape)] = 65535.0
    zf[hit] = (bias + rng.uniform(0.05, 0.6, hit.shape) * (thr - bias))[hit]
    zf[hit & (rng.random(hit.shape) < 0.15)] = 0.0
    zf[hit & (rng.random(hit.shape) < 0.1)] = 65535.0
    zf[~hit & (rng.random(hit.shape) < 0.02)] = 0.0
    header["ZEROFRAM"] = True
    header["SUBARRAY"], header["NOUTPUTS"] = "SUB32", 1
    header["DATAMODL"] = "Level1bModel"
    path = tmp / "jw01062001001_01101_00001_nrca1_uncal.fits"
    io.write_uncal(np.round(sci).astype(np.uint16), header, path,
                   tables=[fits.ImageHDU(np.round(zf).astype(np.uint16), name="ZEROFRAME")])
    return path, refs, hit


def test_chain_uses_the_zeroframe_as_jwst_on_pixels_saturated_in_group_1(level1b_bright, tmp_path,
                                                                          monkeypatch):
    import stpipe.crds_client
    monkeypatch.setattr(stpipe.crds_client, "get_context_used", lambda *a, **k: "offline")
    path, refs, hit = level1b_bright
    chain = pipeline.chain("NIR", {})
    assert chain[-1] == "ramp_fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = datamodels.RampModel(str(path))     # as Detector1Pipeline opens an uncal file
        current = str(path)
        for step in chain[:-1]:
            out = str(tmp_path / f"{step}.fits")
            runner.run_step_file(step, current, {k: refs[k] for k in pipeline.REFERENCES[step]
                                                  if k in refs}, out)
            model = _jwst_step(step, refs).run(model)
            ours = io.read_ramp(out)
            np.testing.assert_array_equal(ours.zeroframe, model.zeroframe, err_msg=step)
            np.testing.assert_array_equal(ours.groupdq, model.groupdq, err_msg=step)
            np.testing.assert_array_equal(ours.data, model.data, err_msg=step)
            current = out
        rate, rateints = runner.run_ramp_fit_file(
            current, {k: refs[k] for k in ("gain", "readnoise")}, str(tmp_path / "rate.fits"),
            str(tmp_path / "rateints.fits"), params={"suppress_one_group": False})
        theirs, theirs_ints = _jwst_step("ramp_fit", refs, suppress_one_group=False).run(model)
    zf = io.read_ramp(current).zeroframe
    group1_sat = np.all(model.groupdq & SAT, axis=1)              # (nints, ny, nx)
    used = group1_sat & (zf != 0)
    assert used.sum() >= 20 and (group1_sat & (zf == 0)).sum() >= 3
    assert np.all(np.isfinite(theirs_ints.data[used]))           # jwst used the ZEROFRAME there
    planted = used & hit                              # the rest: grown neighbours, ~0 signal
    tframe = fits.getval(current, "TFRAME")
    print(f"ZEROFRAME chain {fits.getval(current, 'READPATT')}, TFRAME {tframe:.4g} s: "
          f"{int(group1_sat.sum())} integration-pixels saturated from group 1 "
          f"({int(hit.sum())} planted, the rest grown neighbours), {int(used.sum())} with a "
          f"ZEROFRAME value; planted: median rate {np.median(rateints['sci'][planted]):.5g} DN/s "
          f"(detcal) vs {np.median(theirs_ints.data[planted]):.5g} (jwst); max |detcal - jwst| = "
          f"{np.nanmax(np.abs(rateints['sci'] - theirs_ints.data)):.3g} DN/s over all pixels")
    assert planted.sum() >= 10
    np.testing.assert_allclose(rateints["sci"][planted], zf[planted] / np.float32(tframe),
                               rtol=1e-6)
    np.testing.assert_array_equal(rateints["sci"][used], theirs_ints.data[used])
    np.testing.assert_array_equal(rateints["sci"], theirs_ints.data)
    np.testing.assert_array_equal(rateints["dq"], theirs_ints.dq)
    np.testing.assert_array_equal(rate["sci"], theirs.data)
    np.testing.assert_array_equal(rate["dq"], theirs.dq)
    for ours_var, jwst_var in (("var_poisson", "var_poisson"), ("var_rnoise", "var_rnoise"),
                               ("err", "err")):
        np.testing.assert_array_equal(rateints[ours_var], getattr(theirs_ints, jwst_var))
    # without the ZEROFRAME those integrations have no slope
    ramp = io.read_ramp(current)
    ramp.header["ZEROFRAM"] = False
    gain = io.read_reference(refs["gain"], "GAIN", like=ramp)
    rn = io.read_reference(refs["readnoise"], "READNOISE", like=ramp)
    _, without = ramp_fit.run(ramp, {"gain": gain, "readnoise": rn}, suppress_one_group=False)
    assert np.all(np.isnan(without["sci"][used]))
