"""linearity and dark_current: closed-form tests on tiny arrays, and parity with stcal 1.20."""

import logging

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags
from detcal.errors import InputError
from detcal.io import Ramp, Reference
from detcal.steps import dark_current, linearity
from detcal.steps.dark_current import (
    correct_dark,
    match_dark,
    ramp_average_dark_current,
    resolve_average_dark_current,
    subtract_dark,
)
from detcal.steps.linearity import correct_linearity

SAT, DNU, NOLIN, HOT = (dqflags.SATURATED, dqflags.DO_NOT_USE, dqflags.NO_LIN_CORR, dqflags.HOT)


# --------------------------------------------------------------------------------------------
# helpers (own, not conftest)
# --------------------------------------------------------------------------------------------
def make_ramp(data, **header):
    nints, ngroups, ny, nx = data.shape
    hdr = fits.Header()
    values = dict(INSTRUME="NIRCAM", DETECTOR="NRCA1", NINTS=nints, NGROUPS=ngroups, NFRAMES=1,
                  GROUPGAP=0, SUBARRAY="FULL", SUBSTRT1=1, SUBSTRT2=1, SUBSIZE1=nx, SUBSIZE2=ny,
                  NOUTPUTS=4, FASTAXIS=1, SLOWAXIS=2)
    values.update(header)
    for k, v in values.items():
        hdr[k] = v
    return Ramp(np.asarray(data, np.float32), np.zeros((ny, nx), np.uint32),
                np.zeros(data.shape, np.uint8), hdr, "sci.fits")


def dark_ref(data, dq=None, path="dark.fits", extras=None, **header):
    hdr = fits.Header()
    values = dict(REFTYPE="DARK", NFRAMES=1, GROUPGAP=0, NGROUPS=data.shape[-3])
    values.update(header)
    for k, v in values.items():
        hdr[k] = v
    return Reference("DARK", np.asarray(data, np.float32), dq=dq, header=hdr, path=path,
                     extras=extras or {})


def frames_dark(nframes, ny=2, nx=3):
    """A NFRAMES=1 dark whose frame k holds the value k everywhere."""
    return np.broadcast_to(np.arange(nframes, dtype=np.float32)[:, None, None], (nframes, ny, nx)).copy()


# --------------------------------------------------------------------------------------------
# linearity, closed form
# --------------------------------------------------------------------------------------------
def test_linearity_evaluates_a_known_quadratic_with_coeffs0_as_constant():
    x = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    data = x[None, :, None, None] * np.ones((1, 4, 1, 2), np.float32)
    coeffs = np.zeros((3, 1, 2), np.float32)
    coeffs[:, 0, 0] = [1.0, 2.0, 0.5]               # 1 + 2x + x^2/2
    coeffs[:, 0, 1] = [0.0, 1.0, 0.25]              # x + x^2/4
    out, pdq = correct_linearity(data, np.zeros(data.shape, np.uint8), np.zeros((1, 2), np.uint32), coeffs)
    np.testing.assert_array_equal(out[0, :, 0, 0], 1 + 2 * x + 0.5 * x ** 2)
    np.testing.assert_array_equal(out[0, :, 0, 1], x + 0.25 * x ** 2)
    assert out.dtype == np.float32 and not pdq.any()


def test_linearity_leaves_saturated_groups_untouched_and_corrects_do_not_use_groups():
    data = np.full((1, 3, 1, 1), 10.0, np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 1] = SAT
    gdq[0, 2] = DNU
    coeffs = np.array([0.0, 1.0, 0.1], np.float32)[:, None, None]
    out, _ = correct_linearity(data, gdq, np.zeros((1, 1), np.uint32), coeffs)
    assert out[0, :, 0, 0].tolist() == [np.float32(20.0), 10.0, np.float32(20.0)]


def test_linearity_flags_nan_and_zero_linear_term_and_skips_no_lin_corr_pixels():
    data = np.full((1, 2, 1, 4), 10.0, np.float32)
    coeffs = np.zeros((3, 1, 4), np.float32)
    coeffs[1] = 1.0
    coeffs[2] = 0.1
    coeffs[2, 0, 0] = np.nan                 # NaN coefficient -> identity + NO_LIN_CORR
    coeffs[1, 0, 1] = 0.0                    # zero linear term -> identity + NO_LIN_CORR
    lin_dq = np.array([[0, 0, NOLIN, HOT]], np.uint32)   # flagged in the reference -> identity
    pixeldq = np.array([[0, DNU, 0, 0]], np.uint32)
    out, pdq = correct_linearity(data, np.zeros(data.shape, np.uint8), pixeldq, coeffs, lin_dq)
    np.testing.assert_array_equal(out[0, :, 0, :3], 10.0)
    np.testing.assert_array_equal(out[0, :, 0, 3], np.float32(20.0))
    assert pdq.tolist() == [[NOLIN, DNU | NOLIN, NOLIN, HOT]]


def test_linearity_run_corrects_a_ramp_and_rejects_a_reference_of_the_wrong_shape(caplog):
    ramp = make_ramp(np.full((1, 2, 2, 2), 10.0, np.float32))
    coeffs = np.zeros((2, 2, 2), np.float32)
    coeffs[1] = 2.0
    ref = Reference("LINEARITY", coeffs, dq=np.zeros((2, 2), np.uint32), path="lin.fits")
    with caplog.at_level(logging.INFO, logger="detcal.linearity"):
        linearity.run(ramp, {"linearity": ref})
    np.testing.assert_array_equal(ramp.data, 20.0)
    assert "linearity" in caplog.text
    bad = Reference("LINEARITY", np.zeros((2, 3, 3), np.float32), path="lin.fits")
    with pytest.raises(InputError, match="lin.fits"):
        linearity.run(make_ramp(np.zeros((1, 1, 2, 2), np.float32)), {"linearity": bad})


# --------------------------------------------------------------------------------------------
# dark_current, closed form
# --------------------------------------------------------------------------------------------
def test_dark_is_averaged_over_nframes_skipping_groupgap():
    # science NFRAMES=4, GROUPGAP=2, 3 groups: frames 0-3, 6-9, 12-15 (16 frames needed)
    dark = frames_dark(16)
    matched, info = match_dark(dark, 1, 0, ngroups=3, nframes=4, groupgap=2)
    assert info["mode"] == "averaged" and info["needed_frames"] == 16
    np.testing.assert_array_equal(matched[:, 0, 0], [1.5, 7.5, 13.5])
    out, _ = subtract_dark(np.zeros((1, 3, 2, 3), np.float32), np.zeros((2, 3), np.uint32), matched)
    np.testing.assert_array_equal(out[0, :, 0, 0], [-1.5, -7.5, -13.5])


def test_dark_with_the_same_readout_is_used_directly():
    dark = frames_dark(6)
    matched, info = match_dark(dark, 4, 2, ngroups=4, nframes=4, groupgap=2)
    assert info["mode"] == "direct"
    np.testing.assert_array_equal(matched[:, 0, 0], [0, 1, 2, 3])


def test_too_short_dark_is_an_error_naming_the_file_and_both_frame_counts():
    with pytest.raises(InputError) as err:
        match_dark(frames_dark(10), 1, 0, ngroups=3, nframes=4, groupgap=2, dark_name="my_dark.fits")
    msg = str(err.value)
    assert msg.startswith("my_dark.fits:")
    assert "has 10 frames" in msg and "needs 16" in msg and "extrapolate=True" in msg


def test_too_short_dark_is_extrapolated_from_its_last_two_groups_on_request(caplog):
    dark = frames_dark(4) * 2.0                      # 0, 2, 4, 6
    with caplog.at_level(logging.WARNING, logger="detcal.dark_current"):
        matched, info = match_dark(dark, 1, 0, ngroups=6, nframes=1, groupgap=0, extrapolate=True)
    assert info["extrapolated_groups"] == 2
    np.testing.assert_array_equal(matched[:, 0, 0], [0, 2, 4, 6, 8, 10])
    assert "extrapolating 2 group" in caplog.text


def test_dark_with_another_nframes_groupgap_cannot_be_averaged():
    with pytest.raises(InputError, match="NFRAMES=2, GROUPGAP=0"):
        match_dark(frames_dark(20), 2, 0, ngroups=3, nframes=4, groupgap=0, dark_name="d.fits")


def test_nan_dark_counts_as_zero_and_dark_dq_is_ored_into_pixeldq():
    dark = np.full((2, 1, 2), 3.0, np.float32)
    dark[1, 0, 1] = np.nan
    data = np.full((1, 2, 1, 2), 10.0, np.float32)
    out, pdq, _, _ = correct_dark(data, np.array([[DNU, 0]], np.uint32), dark,
                                  np.array([[HOT, 0]], np.uint32), 1, 0, 1, 0)
    assert out[0, :, 0, :].tolist() == [[7.0, 7.0], [7.0, 10.0]]
    assert pdq.tolist() == [[DNU | HOT, 0]]


def test_4d_dark_uses_integration_i_then_the_last_one():
    dark = np.stack([np.full((3, 1, 1), 10.0), np.full((3, 1, 1), 20.0)]).astype(np.float32)
    dq = np.zeros((2, 3, 1, 1), np.uint32)
    dq[0, 0] = HOT
    dq[1, 0] = DNU
    dq[1, 1] = dqflags.WARM                             # only group 0 of each integration counts
    data = np.zeros((3, 3, 1, 1), np.float32)
    out, pdq, matched, _ = correct_dark(data, np.zeros((1, 1), np.uint32), dark, dq, 1, 0, 1, 0)
    assert out[:, 0, 0, 0].tolist() == [-10.0, -20.0, -20.0]
    assert pdq[0, 0] == HOT | DNU
    later, _, _, _ = correct_dark(data, np.zeros((1, 1), np.uint32), dark, dq, 1, 0, 1, 0, intstart=2)
    assert later[:, 0, 0, 0].tolist() == [-20.0, -20.0, -20.0]


def test_average_dark_current_priority_parameter_image_keyword_zero():
    image = np.full((2, 2), 0.5, np.float32)
    assert resolve_average_dark_current((2, 2), value=0.1, array=image, keyword=0.3)[1] == "parameter"
    avg, source = resolve_average_dark_current((2, 2), array=image, keyword=0.3)
    assert source == "reference image" and np.all(avg == 0.5)
    avg, source = resolve_average_dark_current((2, 2), array=np.zeros((2, 2)), keyword=0.3)
    assert source == "reference keyword" and np.all(avg == np.float32(0.3))
    avg, source = resolve_average_dark_current((2, 2))
    assert source == "none" and not avg.any()


def test_dark_run_subtracts_stores_avdrkcur_and_returns_the_dark_on_request(tmp_path):
    from detcal import io

    ramp = make_ramp(np.full((1, 3, 2, 3), 100.0, np.float32), NFRAMES=4, GROUPGAP=2)
    ref = dark_ref(frames_dark(16), dq=np.zeros((2, 3), np.uint32), AVDRKCUR=0.02)
    ramp, dark = dark_current.run(ramp, {"dark": ref}, dark_output=True)
    np.testing.assert_array_equal(ramp.data[0, :, 0, 0], [98.5, 92.5, 86.5])
    assert dark.reftype == "DARK" and dark.data.shape == (3, 2, 3)
    assert (dark.header["NFRAMES"], dark.header["GROUPGAP"], dark.header["NGROUPS"]) == (4, 2, 3)
    np.testing.assert_array_equal(ramp_average_dark_current(ramp), np.float32(0.02))
    path = tmp_path / "sci_dark.fits"
    io.write_ramp(ramp, path, step="dark_current")
    back = io.read_ramp(path, step="dark_current")
    np.testing.assert_array_equal(ramp_average_dark_current(back), np.float32(0.02))


def test_dark_run_names_the_dark_when_its_header_lacks_nframes():
    ref = dark_ref(frames_dark(3), path="nokey.fits")
    del ref.header["NFRAMES"]
    with pytest.raises(InputError, match="nokey.fits.*NFRAMES"):
        dark_current.run(make_ramp(np.zeros((1, 3, 2, 3), np.float32)), {"dark": ref})


# --------------------------------------------------------------------------------------------
# parity with stcal 1.20
# --------------------------------------------------------------------------------------------
def _max_ulp(a, b):
    a = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    b = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    return int(np.abs(a - b).max())


@pytest.mark.parity
@pytest.mark.parametrize("block_rows,inplace", [(None, False), (3, True)])
def test_linearity_matches_stcal_to_the_bit(block_rows, inplace, monkeypatch):
    from stcal.linearity.linearity import linearity_correction
    from stdatamodels.jwst.datamodels import dqflags as jwst_dq

    rng = np.random.default_rng(3)
    ni, ng, ny, nx = 2, 6, 40, 50
    data = rng.uniform(-100, 60000, (ni, ng, ny, nx)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[rng.random(data.shape) < 0.1] = SAT
    gdq[rng.random(data.shape) < 0.05] |= DNU
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[rng.random((ny, nx)) < 0.1] = DNU
    coeffs = np.stack([rng.normal(0, 3, (ny, nx)), rng.normal(1, 0.01, (ny, nx)),
                       rng.normal(1e-6, 1e-7, (ny, nx)), rng.normal(1e-11, 1e-12, (ny, nx)),
                       rng.normal(1e-16, 1e-17, (ny, nx))]).astype(np.float32)
    coeffs[2, 3, 4] = np.nan
    coeffs[1, 5, 5] = 0.0
    coeffs[0, 7, 7] = np.nan
    lin_dq = np.zeros((ny, nx), np.uint32)
    lin_dq[7, 7] = NOLIN
    lin_dq[8, 8] = HOT
    expect, expect_pdq, _ = linearity_correction(data.copy(), gdq.copy(), pdq.copy(), coeffs.copy(),
                                                 lin_dq.copy(), jwst_dq.pixel)
    if block_rows:      # blocks of 3 rows (the last one partial), in place, as on full frames
        monkeypatch.setattr(linearity, "BLOCK_BYTES", block_rows * 4 * nx * (coeffs.shape[0] + 3))
    got, got_pdq = correct_linearity(data, gdq, pdq, coeffs, lin_dq, out=data if inplace else None)
    assert (got is data) == inplace
    print(f"linearity: max |detcal - stcal| = {np.abs(got.astype(float) - expect).max():.3g} DN, "
          f"max ULP = {_max_ulp(got, expect)}")
    assert _max_ulp(got, expect) <= 1
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got_pdq, expect_pdq)


def _stcal_dark(data, pixeldq, dark, dark_dq, nframes, groupgap, dark_nframes, dark_groupgap):
    from stcal.dark_current import dark_sub
    from stcal.dark_current.dark_class import DarkData, ScienceData

    sci = ScienceData()
    sci.data, sci.groupdq, sci.pixeldq = data.copy(), np.zeros(data.shape, np.uint8), pixeldq.copy()
    sci.exp_nframes, sci.exp_groupgap, sci.exp_intstart = nframes, groupgap, None
    drk = DarkData()
    drk.data, drk.groupdq = dark.copy(), dark_dq.copy()
    drk.exp_nframes, drk.exp_ngroups, drk.exp_groupgap = dark_nframes, dark.shape[-3], dark_groupgap
    out, _ = dark_sub.do_correction_data(sci, drk)
    assert out.cal_step == "COMPLETE"
    return out.data, out.pixeldq


@pytest.mark.parity
@pytest.mark.parametrize("nints,ngroups,nframes,groupgap,ndark,dark_nframes,dark_ints", [
    (2, 5, 1, 0, 8, 1, 0),        # direct
    (2, 4, 4, 2, 30, 1, 0),       # averaged NFRAMES=4 GROUPGAP=2
    (2, 5, 4, 2, 20, 1, 0),       # averaged, extrapolated
    (2, 8, 1, 0, 5, 1, 0),        # direct, extrapolated (float64 dark, as stcal)
    (2, 6, 2, 0, 4, 2, 0),        # direct NFRAMES=2, extrapolated
    (3, 4, 1, 0, 6, 1, 2),        # 4-D direct, more science than dark integrations
    (1, 4, 2, 1, 20, 1, 3),       # 4-D averaged, fewer science integrations
    (4, 4, 4, 0, 10, 1, 2),       # 4-D averaged, extrapolated
])
def test_dark_subtraction_matches_stcal(nints, ngroups, nframes, groupgap, ndark, dark_nframes, dark_ints):
    rng = np.random.default_rng(ngroups * 100 + ndark)
    ny, nx = 20, 30
    data = rng.normal(100, 10, (nints, ngroups, ny, nx)).astype(np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[rng.random((ny, nx)) < 0.1] = DNU
    lead = (dark_ints,) if dark_ints else ()
    dark = np.cumsum(rng.normal(0.5, 0.3, lead + (ndark, ny, nx)), axis=-3).astype(np.float32)
    dark.flat[5] = np.nan
    dark_dq = rng.integers(0, 4, (lead + (ndark,) if dark_ints else ()) + (ny, nx)).astype(np.uint32)
    expect, expect_pdq = _stcal_dark(data, pixeldq, dark, dark_dq, nframes, groupgap, dark_nframes, 0)
    got, got_pdq, _, _ = correct_dark(data, pixeldq, dark, dark_dq, dark_nframes, 0, nframes, groupgap,
                                      extrapolate=True)
    print(f"dark {nints}x{ngroups} NFRAMES={nframes} GROUPGAP={groupgap}, dark {lead}x{ndark}: "
          f"max |detcal - stcal| = {np.abs(got.astype(float) - expect).max():.3g} DN")
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got_pdq, expect_pdq)


@pytest.mark.parity
def test_dark_averaging_matches_stcal_average_dark_frames_3d_and_4d():
    from stcal.dark_current.dark_class import DarkData
    from stcal.dark_current.dark_sub import average_dark_frames_3d, average_dark_frames_4d

    rng = np.random.default_rng(9)
    dark3 = rng.normal(1, 1, (40, 8, 9)).astype(np.float32)
    d = DarkData()
    d.data, d.groupdq = dark3.copy(), np.zeros((8, 9), np.uint32)
    expect = average_dark_frames_3d(d, 5, 4, 3).data
    got, _ = match_dark(dark3, 1, 0, ngroups=5, nframes=4, groupgap=3)
    np.testing.assert_array_equal(got, expect)
    dark4 = rng.normal(1, 1, (2, 40, 8, 9)).astype(np.float32)
    d = DarkData()
    d.data, d.groupdq = dark4.copy(), np.zeros((2, 40, 8, 9), np.uint32)
    expect = average_dark_frames_4d(d, 3, 6, 2, 1).data
    got, _ = match_dark(dark4, 1, 0, ngroups=6, nframes=2, groupgap=1, nints=3)
    np.testing.assert_array_equal(got, expect)
