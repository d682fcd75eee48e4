"""Jump detection (two-point difference): closed-form cases and parity with stcal 1.20.

The closed-form cases use noise-free ramps, where the expected sigma is the read noise alone:
``sig = READNOISE * gain / sqrt(NFRAMES)`` electrons (gain 1 here, so DN).
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags
from detcal.io import Ramp, Reference
from detcal.steps import jump, median
from detcal.steps.jump import detect_jumps, signed_median
from detcal.steps.median import sort_columns

JUMP, DNU, SAT = dqflags.JUMP_DET, dqflags.DO_NOT_USE, dqflags.SATURATED
TGROUP = 10.73676


def flat(nints, ngroups, ny=7, nx=7, rn=10.0):
    """Noise-free, flat (zero-signal) ramps with read noise ``rn`` DN and gain 1."""
    data = np.zeros((nints, ngroups, ny, nx), np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    gain = np.ones((ny, nx), np.float32)
    readnoise = np.full((ny, nx), rn, np.float32)
    return data, gdq, pdq, gain, readnoise


def jumps_at(gdq, y, x, i=0):
    return list(np.flatnonzero(gdq[i, :, y, x] & JUMP))


# ------------------------------------------------------------------------------ closed form
def test_a_step_is_flagged_at_the_group_where_it_happens():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 200.0                  # 20 sigma step into group 3
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert jumps_at(out, 3, 3) == [3]
    assert info["regime"] == "iterative"
    assert info["n_primary_crs"] == 1


def test_four_neighbours_of_a_strong_jump_are_flagged_in_the_same_group():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 200.0
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    flagged = {(y, x) for y, x in zip(*np.nonzero(out[0, 3] & JUMP))}
    assert flagged == {(3, 3), (2, 3), (4, 3), (3, 2), (3, 4)}
    assert not (out[0, [0, 1, 2, 4, 5]] & JUMP).any()


@pytest.mark.parametrize("sigma, flagged", [(5.5, False), (6.5, True)])
def test_two_usable_differences_use_the_three_group_threshold_of_6(sigma, flagged):
    data, gdq, pdq, gain, rn = flat(1, 3)
    data[0, 2:, 3, 3] += sigma * 10.0           # diffs (0, 10*sigma): median = the smaller
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert jumps_at(out, 3, 3) == ([2] if flagged else [])


@pytest.mark.parametrize("sigma, flagged", [(4.5, False), (5.5, True)])
def test_three_usable_differences_use_the_four_group_threshold_of_5(sigma, flagged):
    data, gdq, pdq, gain, rn = flat(1, 4)
    data[0, 3:, 3, 3] += sigma * 10.0           # diffs (0, 0, 10*sigma): median 0
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert jumps_at(out, 3, 3) == ([3] if flagged else [])


def test_four_or_more_usable_differences_use_the_rejection_threshold_of_4():
    data, gdq, pdq, gain, rn = flat(1, 5)
    data[0, 4:, 1, 1] += 45.0                   # 4.5 sigma
    data[0, 4:, 5, 5] += 35.0                   # 3.5 sigma
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP, flag_4_neighbors=False)
    assert jumps_at(out, 1, 1) == [4]
    assert jumps_at(out, 5, 5) == []


def test_neighbours_are_flagged_only_for_jumps_between_10_and_1000_sigma():
    data, gdq, pdq, gain, rn = flat(1, 6, ny=9, nx=13)
    data[0, 3:, 4, 2] += 80.0                   # 8 sigma: a jump, but too weak for neighbours
    data[0, 3:, 4, 6] += 500.0                  # 50 sigma: neighbours flagged
    data[0, 3:, 4, 10] += 20000.0               # 2000 sigma: too strong (saturation-like)
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    plane = out[0, 3] & JUMP
    assert plane[4, 2] and plane[4, 6] and plane[4, 10]
    assert not plane[3, 2] and not plane[4, 1]
    assert plane[3, 6] and plane[5, 6] and plane[4, 5] and plane[4, 7]
    assert not plane[3, 10] and not plane[4, 9]
    assert info["n_primary_crs"] == 3
    assert info["n_jump_groups"] == 7


def test_neighbours_are_not_flagged_in_saturated_or_do_not_use_groups():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 200.0
    gdq[0, 3:, 2, 3] |= SAT
    gdq[0, 3, 4, 3] |= DNU
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert not out[0, 3, 2, 3] & JUMP and not out[0, 3, 4, 3] & JUMP
    assert out[0, 3, 3, 2] & JUMP and out[0, 3, 3, 4] & JUMP


def test_neighbour_flags_cross_row_block_boundaries():
    data, gdq, pdq, gain, rn = flat(1, 6, ny=12, nx=5)
    for y in (3, 4, 7):                         # jumps in rows next to block edges
        data[0, 2:, y, 2] += 300.0
    whole, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP, memory_mb=100)
    for mb in (1e-6, 2e-3, 4e-3):               # 1-row, 3-row and 7-row blocks
        out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP, memory_mb=mb)
        np.testing.assert_array_equal(out, whole)
    assert whole[0, 2, 2, 2] & JUMP and whole[0, 2, 5, 2] & JUMP and whole[0, 2, 8, 2] & JUMP


def test_single_pass_regime_flags_every_outlier_at_once():
    data, gdq, pdq, gain, rn = flat(1, 12)
    rng = np.random.default_rng(3)
    data += rng.normal(0, 10 / np.sqrt(2), data.shape).astype(np.float32)
    data[0, 4:, 3, 3] += 300.0
    data[0, 9:, 3, 3] += 300.0
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert info["regime"] == "single_pass"
    assert jumps_at(out, 3, 3) == [4, 9]


def test_iterative_regime_finds_two_jumps_in_one_ramp():
    data, gdq, pdq, gain, rn = flat(1, 10)
    data[0, 3:, 3, 3] += 300.0
    data[0, 7:, 3, 3] += 150.0
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP, flag_4_neighbors=False)
    assert info["regime"] == "iterative"
    assert jumps_at(out, 3, 3) == [3, 7]
    assert info["n_primary_crs"] == 2


def test_nframes_lowers_the_read_noise_sigma():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 30.0                   # 3 sigma for NFRAMES=1, 6 sigma for NFRAMES=4
    one, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    four, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 4, TGROUP * 4)
    assert jumps_at(one, 3, 3) == [] and jumps_at(four, 3, 3) == [3]


def test_jump_already_on_saturated_or_do_not_use_groups_is_removed():
    data, gdq, pdq, gain, rn = flat(1, 5)
    gdq[0, 2, 1, 1] = JUMP | SAT
    gdq[0, 3, 2, 2] = JUMP | DNU
    gdq[0, 3, 4, 4] = JUMP
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert out[0, 2, 1, 1] == SAT and out[0, 3, 2, 2] == DNU and out[0, 3, 4, 4] == JUMP
    assert info["n_primary_crs"] == 3           # counted before the clean-up, as stcal does


def test_bad_gain_sets_no_gain_value_and_do_not_use():
    data, gdq, pdq, gain, rn = flat(1, 5)
    gain[1, 1], gain[2, 2] = 0.0, np.nan
    _, out_pdq, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    bad = dqflags.NO_GAIN_VALUE | DNU
    assert out_pdq[1, 1] == bad and out_pdq[2, 2] == bad and out_pdq[0, 0] == 0


def test_after_jump_flagging_extends_large_jumps_forward_in_time():
    data, gdq, pdq, gain, rn = flat(1, 10)
    data[0, 3:, 3, 3] += 2000.0
    data[0, 3:, 1, 1] += 200.0                  # below after_jump_flag_dn1
    out, _, _ = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP, flag_4_neighbors=False,
                             after_jump_flag_dn1=1000.0, after_jump_flag_time1=2.5 * TGROUP)
    assert jumps_at(out, 3, 3) == [3, 4, 5]
    assert jumps_at(out, 1, 1) == [3]


def test_too_few_usable_groups_skips_the_search():
    data, gdq, pdq, gain, rn = flat(1, 3)
    data[0, 2:, 3, 3] += 1000.0
    gdq[0, 0] |= DNU                            # all pixels: only 2 usable groups
    out, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    assert info["regime"] == "skipped" and info["n_primary_crs"] == 0
    np.testing.assert_array_equal(out, gdq)


def test_inputs_are_not_modified():
    data, gdq, pdq, gain, rn = flat(2, 5)
    data[1, 2:, 3, 3] += 500.0
    gain[0, 0] = 0.0
    copies = [a.copy() for a in (data, gdq, pdq, gain, rn)]
    detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    for a, b in zip((data, gdq, pdq, gain, rn), copies):
        np.testing.assert_array_equal(a, b)


def test_primary_cosmic_ray_rate_is_per_thousand_pixels_per_second():
    data, gdq, pdq, gain, rn = flat(1, 6, ny=10, nx=10)
    data[0, 3:, 3, 3] += 200.0
    _, _, info = detect_jumps(data, gdq, pdq, gain, rn, 1, TGROUP)
    expected = 1000.0 * 1 / (TGROUP * (6 - 1) * 100)
    assert info["primary_cosmic_rays"] == pytest.approx(expected)


def test_sort_columns_and_signed_median_match_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 9, 17, 32, 33, 40, 99):
        x = rng.normal(size=(n, 50)).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        x[:, 0] = np.nan
        x[:, 1] = np.round(x[:, 1])                        # ties
        ref = np.sort(x, axis=0)
        np.testing.assert_array_equal(sort_columns(x), np.where(np.isnan(ref), np.inf, ref))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expect = np.nanmedian(x.astype(np.float64), axis=0)
        np.testing.assert_array_equal(signed_median(x.reshape(1, n, 50)), expect)
        np.testing.assert_array_equal(median.nanmedian_columns(x), expect)


@pytest.mark.parametrize("n", [1, 2, 5, 9, 10, 31, 32, 33, 39, 99])
def test_median_columns_and_tiled_transpose_match_numpy(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3001)).cumsum(axis=0)          # float64, no NaN, not a tile multiple
    x[:, :7] = np.round(x[:, :7])                          # ties
    np.testing.assert_array_equal(median.median_columns(x), np.median(x, axis=0))
    np.testing.assert_array_equal(median.transpose(x), x.T)
    np.testing.assert_array_equal(median.transpose(x.astype(np.float32), dtype=np.float64),
                                  x.astype(np.float32).T.astype(np.float64))


def test_parameters_object_and_keywords_are_the_same_and_unknown_names_fail():
    case = parity_case(1, 12, seed=5, ny=48, nx=48)
    by_keyword = detect_jumps(*case, rejection_threshold=5.0, flag_4_neighbors=False)
    by_object = detect_jumps(*case, parameters=jump.JumpParameters(rejection_threshold=5.0,
                                                                    flag_4_neighbors=False))
    default = detect_jumps(*case)
    np.testing.assert_array_equal(by_keyword[0], by_object[0])
    assert not np.array_equal(by_keyword[0], default[0])
    with pytest.raises(TypeError, match="rejection_treshold"):
        detect_jumps(*case, rejection_treshold=5.0)
    with pytest.raises(TypeError, match="not both"):
        detect_jumps(*case, parameters=jump.JumpParameters(), flag_4_neighbors=False)
    assert jump.JumpParameters().rejection_threshold == jump.DEFAULTS["rejection_threshold"]


@pytest.mark.parametrize("nints, ngroups", [(2, 10), (1, 14)])   # iterative, single pass
def test_threads_and_block_size_do_not_change_the_flags(nints, ngroups):
    case = parity_case(nints, ngroups, seed=40 + ngroups, ny=48, nx=48)
    whole, _, info = detect_jumps(*case, memory_mb=100)
    for params in ({"memory_mb": 1e-6, "threads": 2}, {"memory_mb": 0.05, "threads": 3}):
        out, _, other = detect_jumps(*case, **params)
        np.testing.assert_array_equal(out, whole)
        assert other == info
    assert info["n_jump_groups"] > info["n_primary_crs"] > 0     # neighbours across blocks


def _ramp(data, gdq, pdq):
    nints, ngroups, ny, nx = data.shape
    h = fits.Header()
    for key, val in dict(INSTRUME="NIRCAM", DETECTOR="NRCA1", NINTS=nints, NGROUPS=ngroups,
                         NFRAMES=1, GROUPGAP=0, SUBARRAY="SUB", SUBSTRT1=1, SUBSTRT2=1,
                         SUBSIZE1=nx, SUBSIZE2=ny, TFRAME=TGROUP, TGROUP=TGROUP).items():
        h[key] = val
    return Ramp(data, pdq, gdq, h, "test_uncal.fits")


def test_run_flags_the_ramp_and_records_the_cosmic_ray_rate():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 200.0
    ramp = _ramp(data, gdq, pdq)
    refs = {"gain": Reference("GAIN", gain, path="gain.fits"),
            "readnoise": Reference("READNOISE", rn, path="rn.fits")}
    out = jump.run(ramp, refs)
    assert out.groupdq[0, 3, 3, 3] & JUMP
    assert out.header["PRIMECRS"] > 0 and out.header["R_GAIN"] == "gain.fits"


def test_run_skips_ramps_with_two_groups():
    data, gdq, pdq, gain, rn = flat(1, 2)
    refs = {"gain": Reference("GAIN", gain), "readnoise": Reference("READNOISE", rn)}
    out = jump.run(_ramp(data, gdq, pdq), refs)
    assert out.header["S_JUMP"] == "SKIPPED"


# ------------------------------------------------------------------------------ parity
def parity_case(nints, ngroups, seed, nframes=1, ny=64, nx=64, ncr=60):
    """A ramp with sources, noise, cosmic rays of many sizes, saturation and DNU flags."""
    rng = np.random.default_rng(seed)
    tgroup = TGROUP * nframes
    rate = rng.uniform(0.0, 5.0, (ny, nx))
    rate[5, 5] = 400.0
    shape = (nints, ngroups, ny, nx)
    data = np.cumsum(np.broadcast_to(rate * tgroup, shape), axis=1)
    data = data + rng.normal(0, 10, shape)
    for _ in range(ncr):
        i, k = rng.integers(nints), rng.integers(1, ngroups)
        y, x = rng.integers(ny), rng.integers(nx)
        data[i, k:, y, x] += rng.choice([30.0, 80.0, 300.0, 3000.0, 1e5])
    data[0, :, 40:43, 40:43] = np.round(data[0, :, 40:43, 40:43])   # ties in the medians
    data = data.astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[:, ngroups // 2:, 10, 10] |= SAT
    gdq[0, 1:, 11, 12] |= SAT
    gdq[rng.random(shape) < 0.01] |= DNU
    gdq[:, :, 21, 22] |= DNU                                          # a dead pixel
    gdq[0, 0, 30:33, 30:33] |= JUMP                                   # flags already present
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[rng.random((ny, nx)) < 0.02] |= dqflags.HOT
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[3, 3], gain[4, 4] = 0.0, np.nan
    rn = rng.uniform(8.0, 16.0, (ny, nx)).astype(np.float32)
    rn[14:16, 14:16] = 0.0
    return data, gdq, pdq, gain, rn, nframes, tgroup


def stcal_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, **settings):
    """stcal ``detect_jumps_data`` on copies, set up as the notes (§14) say."""
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData
    from stdatamodels.jwst.datamodels import dqflags as jwst_dqflags

    jd = JumpData(gain2d=gain.copy(), rnoise2d=rn.copy(), dqflags=jwst_dqflags.pixel)
    jd.init_arrays_from_arrays(data.copy(), gdq.copy(), pdq.copy())
    jd.nframes = nframes
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2 * nframes
    jd.max_cores = "1"
    for key, val in settings.items():
        setattr(jd, key, val)
    out_gdq, out_pdq, n_primary, _ = detect_jumps_data(jd)
    return out_gdq, out_pdq, n_primary


def assert_same_jumps(case, stcal_settings=None, **params):
    data, gdq, pdq, gain, rn, nframes, tgroup = case
    ref_gdq, ref_pdq, ref_n = stcal_jumps(*case, **(stcal_settings or {}))
    out_gdq, out_pdq, info = detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, **params)
    agree = np.mean(out_gdq == ref_gdq)
    assert agree >= 0.9999
    np.testing.assert_array_equal(out_gdq, ref_gdq)   # in fact bit-identical
    np.testing.assert_array_equal(out_pdq, ref_pdq)
    assert info["n_primary_crs"] == ref_n
    assert (ref_gdq & JUMP).any()
    return info


@pytest.mark.parity
@pytest.mark.parametrize("nints, ngroups, nframes, regime", [
    (1, 3, 1, "iterative"), (1, 4, 1, "iterative"), (2, 5, 1, "iterative"),
    (2, 10, 1, "iterative"), (1, 12, 1, "single_pass"), (3, 15, 1, "single_pass"),
    (2, 6, 4, "iterative"), (1, 11, 4, "single_pass"), (5, 9, 1, "iterative")])
def test_parity_with_stcal(nints, ngroups, nframes, regime):
    info = assert_same_jumps(parity_case(nints, ngroups, seed=nints * 100 + ngroups,
                                         nframes=nframes))
    assert info["regime"] == regime


@pytest.mark.parity
def test_parity_with_stcal_in_one_row_blocks():
    case = parity_case(2, 7, seed=11)
    assert_same_jumps(case, memory_mb=1e-6)


@pytest.mark.parity
def test_parity_with_stcal_sigma_clip_regime():
    case = parity_case(100, 4, seed=12, ny=24, nx=24, ncr=200)
    info = assert_same_jumps(case)
    assert info["regime"] == "sigma_clip"


@pytest.mark.parity
def test_parity_with_stcal_sigma_clip_over_groups():
    case = parity_case(1, 101, seed=13, ny=24, nx=24)
    info = assert_same_jumps(case, {"only_use_ints": False}, only_use_ints=False)
    assert info["regime"] == "sigma_clip"


@pytest.mark.parity
def test_parity_with_stcal_after_jump_and_neighbour_settings():
    case = parity_case(2, 10, seed=14)
    tgroup = case[-1]
    assert_same_jumps(
        case,
        {"after_jump_flag_dn1": 50.0, "after_jump_flag_n1": 2, "after_jump_flag_dn2": 1000.0,
         "after_jump_flag_n2": 5, "min_jump_to_flag_neighbors": 5, "max_jump_to_flag_neighbors": 200},
        after_jump_flag_dn1=50.0, after_jump_flag_time1=2.5 * tgroup, after_jump_flag_dn2=1000.0,
        after_jump_flag_time2=5.5 * tgroup, min_jump_to_flag_neighbors=5,
        max_jump_to_flag_neighbors=200)


@pytest.mark.parity
def test_parity_with_stcal_when_a_group_is_do_not_use_everywhere():
    case = list(parity_case(1, 11, seed=15))
    case[1][:, 0] |= DNU                        # 9 usable differences: iterative, not single pass
    info = assert_same_jumps(tuple(case))
    assert info["regime"] == "iterative"


@pytest.mark.parity
@pytest.mark.parametrize("ngroups, regime, in_place", [(15, "single_pass", False), (15, "single_pass", True),
                                                       (8, "iterative", True)])
def test_parity_with_stcal_when_groups_are_do_not_use_in_most_pixels(ngroups, regime, in_place):
    """MIRI: lastframe flags the last group everywhere, rscd the first groups of the later
    integrations in all but the early-saturating pixels. Such groups are made NaN by a mask and
    only their JUMP flags are looked up; the flags must stay stcal's, in place or not."""
    case = list(parity_case(3, ngroups, seed=16 + ngroups))
    gdq = case[1]
    gdq[:, -1] |= DNU
    gdq[1:, :2] |= DNU
    gdq[1:, :2, 10:14, 10:14] &= ~np.uint8(DNU)      # kept where the ramp saturates early
    gdq[1, 1, 20:22, 20:22] |= JUMP                   # input JUMP on DO_NOT_USE groups: removed
    gdq[1, 1, 12, 12] |= JUMP                         # ... and on a usable one: kept
    before = gdq.copy()
    info = assert_same_jumps(tuple(case), out=gdq if in_place else None)
    assert info["regime"] == regime and info["n_all_dnu_groups"] == 3
    assert np.array_equal(gdq, before) != in_place    # flagged in place only when asked


def test_flagging_in_place_returns_the_input_groupdq_with_the_same_flags():
    data, gdq, pdq, gain, rn, nframes, tgroup = parity_case(2, 10, seed=17)
    new, new_pdq, info = detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup)
    own = gdq.copy()
    out, out_pdq, info_in_place = detect_jumps(data, own, pdq, gain, rn, nframes, tgroup, out=own)
    assert out is own and info_in_place == info
    np.testing.assert_array_equal(out, new)
    np.testing.assert_array_equal(out_pdq, new_pdq)
    with pytest.raises(ValueError, match="C-contiguous"):
        detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, out=np.asfortranarray(gdq))


def test_run_flags_the_ramps_own_groupdq_in_place():
    data, gdq, pdq, gain, rn = flat(1, 6)
    data[0, 3:, 3, 3] += 200.0
    refs = {"gain": Reference("GAIN", gain), "readnoise": Reference("READNOISE", rn)}
    out = jump.run(_ramp(data, gdq, pdq), refs)
    assert out.groupdq is gdq and gdq[0, 3, 3, 3] & JUMP
