"""Ramp fitting (OLS_C, optimal weighting): closed-form cases, products on disk, stcal parity.

Hand formulas (per segment of n groups, rn = READNOISE * gain / sqrt(2 NFRAMES) electrons):
``var_rnoise = 12 rn^2 / ((n^3 - n) TGROUP^2 gain^2)`` and
``var_poisson = median rate / (TGROUP gain (n - 1))`` in (DN/s)^2.
"""

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags, io
from detcal.io import Ramp, Reference
from detcal.steps import ramp_fit
from detcal.steps.ramp_fit import fit_ramps, weight_table

JUMP, DNU, SAT = dqflags.JUMP_DET, dqflags.DO_NOT_USE, dqflags.SATURATED
TFRAME = 10.73676
T32 = float(np.float32(TFRAME))   # stcal passes TGROUP through a C float


def linear(nints, ngroups, rate=5.0, ny=4, nx=5, nframes=1, pedestal=100.0):
    """Noise-free ramps ``pedestal + rate * t`` [DN], gain 2, READNOISE 14 DN."""
    tgroup = TFRAME * nframes
    t = tgroup * np.arange(1, ngroups + 1)
    data = np.broadcast_to((pedestal + rate * t)[None, :, None, None],
                           (nints, ngroups, ny, nx)).astype(np.float32)
    return dict(data=data, groupdq=np.zeros(data.shape, np.uint8),
                pixeldq=np.zeros((ny, nx), np.uint32), gain=np.full((ny, nx), 2.0, np.float32),
                readnoise=np.full((ny, nx), 14.0, np.float32), tframe=TFRAME, tgroup=tgroup,
                nframes=nframes, groupgap=0)


def hand_var_rnoise(n, readnoise=14.0, gain=2.0, nframes=1, tgroup=T32):
    rn = readnoise * gain / np.sqrt(2 * nframes)
    return 12 * rn ** 2 / ((n ** 3 - n) * tgroup ** 2 * gain ** 2)


# ------------------------------------------------------------------------------ closed form
@pytest.mark.parametrize("ngroups", [2, 3, 5, 10])
def test_noise_free_linear_ramp_gives_the_exact_slope(ngroups):
    rate, rateints = fit_ramps(**linear(2, ngroups, rate=5.0))
    np.testing.assert_allclose(rate["sci"], 5.0, rtol=2e-6)
    np.testing.assert_allclose(rateints["sci"], 5.0, rtol=2e-6)
    assert rate["dq"].max() == 0 and rateints["dq"].max() == 0


def test_weights_reproduce_an_exact_line_for_every_exponent():
    for n in (3, 4, 7, 12):
        table = weight_table(n)
        y = 3.0 + 2.0 * np.arange(n)
        np.testing.assert_allclose(table @ y, 2.0, rtol=1e-12)
        np.testing.assert_allclose(table.sum(axis=1), 0.0, atol=1e-12)


def test_var_rnoise_matches_the_hand_formula():
    for nframes in (1, 4):
        rate, rateints = fit_ramps(**linear(1, 6, rate=0.0, nframes=nframes))
        expect = hand_var_rnoise(6, nframes=nframes, tgroup=float(np.float32(TFRAME * nframes)))
        np.testing.assert_allclose(rateints["var_rnoise"], expect, rtol=1e-6)
        np.testing.assert_allclose(rate["var_rnoise"], expect, rtol=1e-6)


def test_var_poisson_uses_the_median_rate_and_the_dark_current():
    case = linear(1, 6, rate=5.0)
    rate, _ = fit_ramps(**case)
    np.testing.assert_allclose(rate["var_poisson"], 5.0 / (T32 * 2.0 * 5), rtol=1e-5)
    dark = np.full((4, 5), 0.5, np.float32)
    rate, _ = fit_ramps(**case, average_dark_current=dark)
    np.testing.assert_allclose(rate["var_poisson"], 5.5 / (T32 * 2.0 * 5), rtol=1e-5)


def test_rate_err_adds_variances_but_rateints_err_adds_inverse_total_variances():
    case = linear(3, 5, rate=5.0)
    rate, rateints = fit_ramps(**case)
    vp, vr = 5.0 / (T32 * 2.0 * 4), hand_var_rnoise(5)
    np.testing.assert_allclose(rateints["err"], np.sqrt(vp + vr), rtol=1e-5)   # one segment
    np.testing.assert_allclose(rate["var_poisson"], vp / 3, rtol=1e-5)
    np.testing.assert_allclose(rate["var_rnoise"], vr / 3, rtol=1e-5)
    np.testing.assert_allclose(rate["err"], np.sqrt(vp / 3 + vr / 3), rtol=1e-5)


def test_a_jump_splits_the_ramp_and_both_segments_give_the_rate():
    case = linear(1, 8, rate=3.0)
    case["data"] = case["data"].copy()
    case["data"][0, 4:, 1, 1] += 500.0
    case["groupdq"][0, 4, 1, 1] = JUMP
    rate, rateints = fit_ramps(**case)
    assert rate["sci"][1, 1] == pytest.approx(3.0, rel=1e-5)
    # segments [0, 4) and [4, 8): the JUMP group starts the second one -> two 4-group segments
    assert rateints["var_rnoise"][0, 1, 1] == pytest.approx(hand_var_rnoise(4) / 2, rel=1e-6)
    assert rate["dq"][1, 1] == JUMP and rateints["dq"][0, 1, 1] == JUMP
    # the untouched pixels are one 8-group segment
    assert rate["var_rnoise"][0, 0] == pytest.approx(hand_var_rnoise(8), rel=1e-6)


def test_a_jump_flagged_with_another_flag_does_not_start_the_next_segment():
    case = linear(1, 8, rate=3.0)
    case["groupdq"][0, 4, 1, 1] = JUMP | DNU      # group 4 excluded: segments [0,4) and [5,8)
    rate, _ = fit_ramps(**case)
    expect = 1 / (1 / hand_var_rnoise(4) + 1 / hand_var_rnoise(3))
    assert rate["var_rnoise"][1, 1] == pytest.approx(expect, rel=1e-6)


def test_saturated_tail_is_excluded_and_flagged_but_the_slope_is_kept():
    case = linear(1, 10, rate=4.0)
    case["data"] = case["data"].copy()
    case["data"][0, 6:, 2, 2] = 60000.0
    case["groupdq"][0, 6:, 2, 2] = SAT
    rate, rateints = fit_ramps(**case)
    assert rate["sci"][2, 2] == pytest.approx(4.0, rel=1e-5)
    assert rate["var_rnoise"][2, 2] == pytest.approx(hand_var_rnoise(6), rel=1e-6)
    assert rate["dq"][2, 2] == SAT and rateints["dq"][0, 2, 2] == SAT


def test_a_ramp_saturated_from_the_first_group_is_nan():
    case = linear(1, 5)
    case["groupdq"][0, :, 0, 0] = SAT
    rate, rateints = fit_ramps(**case)
    assert np.isnan(rate["sci"][0, 0]) and rate["dq"][0, 0] == DNU | SAT
    assert rate["var_poisson"][0, 0] == 0 and rate["err"][0, 0] == 0
    assert np.isnan(rateints["sci"][0, 0, 0])


def test_do_not_use_in_pixeldq_gives_nan_and_zero_variances():
    case = linear(2, 5)
    case["pixeldq"][1, 2] = DNU | dqflags.HOT
    rate, rateints = fit_ramps(**case)
    assert np.isnan(rate["sci"][1, 2]) and np.isnan(rateints["sci"][:, 1, 2]).all()
    for key in ("err", "var_poisson", "var_rnoise"):
        assert rate[key][1, 2] == 0 and (rateints[key][:, 1, 2] == 0).all()
    assert rate["dq"][1, 2] == DNU | dqflags.HOT
    assert np.isfinite(rate["sci"][0, 0])


def test_bad_gain_gives_nan_and_no_gain_value():
    case = linear(1, 5)
    case["gain"][0, 1] = 0.0
    rate, _ = fit_ramps(**case)
    assert np.isnan(rate["sci"][0, 1]) and rate["dq"][0, 1] == DNU | dqflags.NO_GAIN_VALUE


def test_one_good_group_is_suppressed_unless_asked_otherwise():
    case = linear(1, 5, rate=5.0)
    case["groupdq"][0, 1:, 0, 0] = SAT
    rate, _ = fit_ramps(**case)
    assert np.isnan(rate["sci"][0, 0]) and rate["dq"][0, 0] == DNU | SAT
    rate, _ = fit_ramps(**case, suppress_one_group=False)
    one_group_time = (1 + 1.0) * T32 / 2
    y0 = case["data"][0, 0, 0, 0]
    assert rate["sci"][0, 0] == pytest.approx(y0 / one_group_time, rel=1e-6)
    assert rate["dq"][0, 0] == SAT


def test_integrations_are_combined_with_read_noise_weights():
    case = linear(2, 6, rate=2.0)
    case["data"] = case["data"].copy()
    case["data"][1] += (np.arange(6) * 4.0 * T32)[:, None, None]   # int 1: rate 6
    case["groupdq"][1, 3, 0, 0] = DNU        # int 1 of pixel (0, 0): segments [0,3) and [4,6)
    rate, rateints = fit_ramps(**case)
    w0, w1 = 1 / hand_var_rnoise(6), 1 / hand_var_rnoise(3) + 1 / hand_var_rnoise(2)
    assert rateints["sci"][1, 0, 0] == pytest.approx(6.0, rel=1e-5)
    assert rate["sci"][0, 0] == pytest.approx((2.0 * w0 + 6.0 * w1) / (w0 + w1), rel=1e-5)
    assert rate["sci"][1, 1] == pytest.approx(4.0, rel=1e-5)


def test_group_selectors_mark_outer_groups_do_not_use():
    case = linear(1, 8, rate=3.0)
    rate, _ = fit_ramps(**case, firstgroup=1, lastgroup=5)
    assert rate["var_rnoise"][0, 0] == pytest.approx(hand_var_rnoise(5), rel=1e-6)


def test_inputs_are_not_modified_and_blocks_and_threads_do_not_matter():
    rng = np.random.default_rng(1)
    case = linear(2, 6, rate=3.0, ny=9, nx=7)
    case["data"] = case["data"] + rng.normal(0, 5, case["data"].shape).astype(np.float32)
    case["groupdq"][rng.random(case["groupdq"].shape) < 0.1] = JUMP
    copies = {k: np.copy(v) for k, v in case.items() if isinstance(v, np.ndarray)}
    whole = fit_ramps(**case)
    one_row = fit_ramps(**case, memory_mb=1e-6)
    two_threads = fit_ramps(**case, memory_mb=1e-6, threads=2)
    for k, v in copies.items():
        np.testing.assert_array_equal(case[k], v)
    for other in (one_row, two_threads):
        for a, b in zip(whole, other):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_run_uses_the_dark_current_stored_by_the_dark_step():
    case = linear(1, 6, rate=5.0)
    ramp = _ramp(case)
    ramp.tables = [fits.ImageHDU(np.full((4, 5), 0.5, np.float32), name="AVDRKCUR")]
    refs = {"gain": Reference("GAIN", case["gain"]), "readnoise": Reference("READNOISE", case["readnoise"])}
    rate, _ = ramp_fit.run(ramp, refs)
    np.testing.assert_allclose(rate["var_poisson"], 5.5 / (T32 * 2.0 * 5), rtol=1e-5)


def _ramp(case, instrument="NIRCAM"):
    nints, ngroups, ny, nx = case["data"].shape
    h = fits.Header()
    for key, val in dict(INSTRUME=instrument, DETECTOR="NRCA1", NINTS=nints, NGROUPS=ngroups,
                         NFRAMES=1, GROUPGAP=0, SUBARRAY="SUB", SUBSTRT1=1, SUBSTRT2=1,
                         SUBSIZE1=nx, SUBSIZE2=ny, TFRAME=TFRAME, TGROUP=TFRAME).items():
        h[key] = val
    return Ramp(case["data"], case["pixeldq"], case["groupdq"], h, "x_jumpstep.fits")


@pytest.mark.filterwarnings("ignore::stdatamodels.validate.ValidationWarning")
def test_run_returns_rate_and_rateints_and_write_rate_makes_jwst_models(tmp_path):
    from stdatamodels.jwst import datamodels

    case = linear(2, 5, rate=5.0)
    ramp = _ramp(case)
    cols = [("integration_number", ">i4")] + [(f"int_{when}_{scale}", ">f8") for scale in
                                               ("MJD_UTC", "BJD_TDB") for when in ("start", "mid", "end")]
    times = np.zeros(2, dtype=cols)
    times["integration_number"] = [1, 2]
    ramp.tables = [fits.BinTableHDU(times, name="INT_TIMES")]
    refs = {"gain": Reference("GAIN", case["gain"]), "readnoise": Reference("READNOISE", case["readnoise"])}
    rate, rateints = ramp_fit.run(ramp, refs)
    assert rate["sci"].shape == (4, 5) and rateints["sci"].shape == (2, 4, 5)
    io.write_rate(tmp_path / "x_rate.fits", rate, ramp.header, step="ramp_fit")
    io.write_rate(tmp_path / "x_rateints.fits", rateints, ramp.header, tables=ramp.tables)
    with datamodels.ImageModel(str(tmp_path / "x_rate.fits")) as m:
        np.testing.assert_array_equal(m.data, rate["sci"])
        np.testing.assert_array_equal(m.var_rnoise, rate["var_rnoise"])
        np.testing.assert_array_equal(m.dq, rate["dq"])
        assert m.meta.bunit_data == "DN/s" and m.meta.cal_step.ramp_fit == "COMPLETE"
    with datamodels.CubeModel(str(tmp_path / "x_rateints.fits")) as m:
        np.testing.assert_array_equal(m.err, rateints["err"])
        assert len(m.int_times) == 2


# ------------------------------------------------------------------------------ parity
def parity_case(nints, ngroups, seed, nframes=1, ny=64, nx=64, flags=True):
    """Ramps from faint to bright (all SNR weight exponents) with jumps, saturation, DNU."""
    rng = np.random.default_rng(seed)
    tgroup = TFRAME * nframes
    rate = rng.uniform(0.0, 30.0, (ny, nx))
    rate[:4] = rng.uniform(100.0, 3000.0, (4, nx))
    rate[4:6] = -rng.uniform(0.0, 2.0, (2, nx))
    shape = (nints, ngroups, ny, nx)
    data = (np.cumsum(np.broadcast_to(rate * tgroup, shape), axis=1)
            + rng.normal(0, 10, shape)).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    if flags:
        for _ in range(200):
            i, k, y, x = rng.integers(nints), rng.integers(ngroups), rng.integers(ny), rng.integers(nx)
            gdq[i, k, y, x] |= JUMP
            data[i, k:, y, x] += 500.0
        for _ in range(60):
            i, k, y, x = rng.integers(nints), rng.integers(ngroups), rng.integers(ny), rng.integers(nx)
            gdq[i, k:, y, x] |= SAT
        for _ in range(60):
            i, k, y, x = rng.integers(nints), rng.integers(ngroups), rng.integers(ny), rng.integers(nx)
            gdq[i, k, y, x] |= DNU
        last = ngroups - 1
        gdq[:, :, 40, 40] |= DNU
        gdq[0, 0, 41, 41] |= SAT
        gdq[:, 1:, 42, 42] |= SAT                       # one good group
        gdq[0, :, 43, 43] |= dqflags.PERSISTENCE
        gdq[0, min(2, last), 44, 44] = JUMP | dqflags.PERSISTENCE
        gdq[0, 1:, 45, 45] |= JUMP
        pdq[50, 50], pdq[51, 51], pdq[52, 52] = DNU, SAT, dqflags.HOT
        data[0, min(2, last), 53, 53] = np.nan
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[3, 3], gain[4, 4] = 0.0, np.nan
    rn = rng.uniform(8.0, 16.0, (ny, nx)).astype(np.float32)
    return dict(data=data, groupdq=gdq, pixeldq=pdq, gain=gain, readnoise=rn, tframe=TFRAME,
                tgroup=tgroup, nframes=nframes, groupgap=0)


def stcal_fit(case, average_dark_current=None, suppress_one_group=True, instrument="NIRCAM"):
    """stcal ``ramp_fit_data`` (OLS_C, optimal) on copies of the arrays."""
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    from stcal.ramp_fitting.ramp_fit_class import RampData
    from stdatamodels.jwst.datamodels import dqflags as jwst_dqflags

    ny, nx = case["pixeldq"].shape
    dark = np.zeros((ny, nx), np.float32) if average_dark_current is None else average_dark_current
    rd = RampData()
    rd.set_arrays(case["data"].copy(), case["groupdq"].copy(), case["pixeldq"].copy(), dark.copy())
    rd.set_meta(name=instrument, frame_time=case["tframe"], group_time=case["tgroup"],
                groupgap=case["groupgap"], nframes=case["nframes"], drop_frames1=None)
    rd.algorithm = "OLS_C"
    rd.set_dqflags(jwst_dqflags.pixel)
    rd.suppress_one_group_ramps = suppress_one_group and case["data"].shape[1] > 1
    rd.start_row, rd.num_rows = 0, ny
    readnoise = case["readnoise"].copy()        # ramp_fit_data scales it in place
    image, integ, _ = ramp_fit_data(rd, False, readnoise, case["gain"].copy(), "OLS_C", "optimal", "1")
    return image, integ


def assert_products_match(ours, ref):
    assert np.array_equal(np.isnan(ours["sci"]), np.isnan(ref["slope"]))
    np.testing.assert_allclose(ours["sci"], ref["slope"], rtol=1e-5, atol=1e-6, equal_nan=True)
    for key in ("err", "var_poisson", "var_rnoise"):
        # float32 rounding: at most one unit in the last place
        np.testing.assert_array_max_ulp(ours[key], ref[key], maxulp=1)
    np.testing.assert_array_equal(ours["dq"], ref["dq"])


def assert_same_fit(case, **params):
    stcal_params = {k: v for k, v in params.items()
                    if k in ("average_dark_current", "suppress_one_group")}
    if params.get("miri"):
        stcal_params["instrument"] = "MIRI"
    ref_rate, ref_ints = stcal_fit(case, **stcal_params)
    rate, rateints = fit_ramps(**case, **params)
    assert_products_match(rate, ref_rate)
    assert_products_match(rateints, ref_ints)
    # in practice the outputs are bit-identical
    for ours, ref in ((rate, ref_rate), (rateints, ref_ints)):
        np.testing.assert_array_equal(ours["sci"], ref["slope"])
        np.testing.assert_array_equal(ours["err"], ref["err"])


@pytest.mark.parity
@pytest.mark.parametrize("nints, ngroups, nframes", [
    (1, 3, 1), (1, 4, 1), (2, 5, 1), (2, 10, 1), (1, 12, 1), (3, 15, 1), (2, 6, 4), (1, 2, 1),
    (2, 1, 1)])
def test_parity_with_stcal(nints, ngroups, nframes):
    assert_same_fit(parity_case(nints, ngroups, seed=nints * 100 + ngroups, nframes=nframes))


@pytest.mark.parity
def test_parity_with_stcal_without_flags():
    assert_same_fit(parity_case(2, 10, seed=7, flags=False))


@pytest.mark.parity
def test_parity_with_stcal_dark_current_and_no_suppression():
    case = parity_case(2, 8, seed=8)
    dark = np.random.default_rng(8).uniform(0, 0.5, case["pixeldq"].shape).astype(np.float32)
    assert_same_fit(case, average_dark_current=dark)
    assert_same_fit(case, suppress_one_group=False)


@pytest.mark.parity
def test_parity_with_stcal_miri_drops_all_do_not_use_groups():
    case = parity_case(2, 8, seed=9)
    case["groupdq"][:, :2] |= DNU
    case["groupdq"][:, -1] |= DNU
    case["groupdq"][0, 2, 5, 5] |= JUMP
    assert_same_fit(case, miri=True)


@pytest.mark.parity
def test_parity_with_stcal_after_detcal_jump_detection():
    from detcal.steps.jump import detect_jumps

    rng = np.random.default_rng(10)
    case = parity_case(2, 10, seed=10, flags=False)
    data = case["data"].copy()
    for _ in range(80):
        i, k, y, x = rng.integers(2), rng.integers(1, 10), rng.integers(64), rng.integers(64)
        data[i, k:, y, x] += rng.choice([50.0, 200.0, 2000.0])
    case["data"] = data
    case["groupdq"], case["pixeldq"], _ = detect_jumps(
        data, case["groupdq"], case["pixeldq"], case["gain"], case["readnoise"], 1, TFRAME)
    assert (case["groupdq"] & JUMP).any()
    assert_same_fit(case)
