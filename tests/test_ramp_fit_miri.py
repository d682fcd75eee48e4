"""ramp_fit parity with stcal 1.20 on MIRI-like GROUPDQ: whole groups DO_NOT_USE (issue 15).

MIRI's lastframe flags the last group of every integration, rscd the first groups of the second
and later integrations, and the branch without dark (or the group selectors) leading/trailing
groups of every integration: every pixel then has GROUPDQ flags, and ramp_fit takes a fast path
for the pixels whose only flags are these common DO_NOT_USE groups (one segment per
integration, closed-form slopes with stcal's arithmetic where float32 rounding could differ).
These cases mix such pixels with jumps (also right after the DO_NOT_USE groups), saturation,
NaN and DO_NOT_USE pixels; products must be bit-identical to stcal's.
"""

import numpy as np
import pytest

from detcal import dqflags
from detcal.steps import median, ramp_fit

import test_ramp_fit

JUMP, DNU, SAT = dqflags.JUMP_DET, dqflags.DO_NOT_USE, dqflags.SATURATED
MIRI_TFRAME = 2.775    # MIRI imager full frame [s]


def miri_case(nints, ngroups, lead, seed, ny=40, nx=36, trail=1):
    """Ramps from faint to bright (every weight exponent) [DN], TGROUP = 2.775 s; ``lead[i]``
    leading and ``trail`` trailing groups DO_NOT_USE in every pixel of integration i; a few
    pixels with jumps, saturation, NaN, other DO_NOT_USE groups."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.0, 0.5, (ny, nx))       # dark: slopes with small float32 steps
    rate[:4] = rng.uniform(300.0, 9000.0, (4, nx))
    rate[6:10] = rng.uniform(1.0, 30.0, (4, nx))
    rate[4:6] = -rng.uniform(0.0, 2.0, (2, nx))
    shape = (nints, ngroups, ny, nx)
    data = (np.cumsum(np.broadcast_to(rate * MIRI_TFRAME, shape), axis=1)
            + rng.normal(0, 10, shape) + 2e4).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    for i in range(nints):
        gdq[i, :lead[i]] = DNU
        gdq[i, ngroups - trail:] = DNU
    for _ in range(nints * 12):
        i, k, y, x = rng.integers(nints), rng.integers(1, ngroups), rng.integers(ny), rng.integers(nx)
        gdq[i, k, y, x] |= JUMP
        data[i, k:, y, x] += 400.0
    for i in range(nints):                       # jump in the first group after the DO_NOT_USE ones
        gdq[i, lead[i], 7 + i, 8] |= JUMP
    for _ in range(nints * 4):
        i, k, y, x = rng.integers(nints), rng.integers(ngroups), rng.integers(ny), rng.integers(nx)
        gdq[i, k:, y, x] |= SAT
    gdq[:, -1, 9, 9] |= SAT                      # saturated in the DO_NOT_USE last group only
    gdq[-1, ngroups // 2, 10, 10] |= DNU         # one more DO_NOT_USE group
    data[0, 0, 11, 11] = np.nan                  # NaN in a (possibly) DO_NOT_USE group
    data[0, ngroups // 2, 12, 12] = np.nan
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[13, 13] = DNU
    gain = rng.uniform(3.5, 4.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(8.0, 16.0, (ny, nx)).astype(np.float32)
    return dict(data=data, groupdq=gdq, pixeldq=pdq, gain=gain, readnoise=rn, tframe=MIRI_TFRAME,
                tgroup=MIRI_TFRAME, nframes=1, groupgap=0)


def common_pattern_applies(case, miri):
    """True when the whole-array block has common DO_NOT_USE groups (the fast path runs)."""
    gdq = case["groupdq"]
    if miri:   # stcal/ramp_fit drop one trailing group that is DO_NOT_USE everywhere
        gdq = gdq[:, :-1]
    nints, ngroups = gdq.shape[:2]
    ranges = ramp_fit._common_ranges(gdq.reshape(nints, ngroups, -1))
    return any(lo > 0 or hi < ngroups for lo, hi in ranges)


@pytest.mark.parity
@pytest.mark.parametrize("nints, ngroups, lead, trail, miri", [
    (1, 12, [2], 2, False),          # branch without dark: skip groups at both ends
    (2, 10, [0, 2], 1, True),        # lastframe + rscd
    (3, 40, [0, 3, 3], 1, True),     # the benchmark's MIRI shape in groups
    (3, 20, [0, 2, 4], 2, True),     # different leading groups per integration
    (2, 40, [1, 4], 3, False),
])
def test_parity_with_stcal_on_common_do_not_use_groups(nints, ngroups, lead, trail, miri):
    case = miri_case(nints, ngroups, lead, seed=nints * 1000 + ngroups + sum(lead), trail=trail,
                     ny=64, nx=72)
    assert common_pattern_applies(case, miri)
    test_ramp_fit.assert_same_fit(case, miri=miri)


@pytest.mark.parity
def test_parity_with_stcal_on_common_do_not_use_groups_in_one_row_blocks_and_options():
    case = miri_case(3, 30, [0, 3, 3], seed=31)
    test_ramp_fit.assert_same_fit(case, miri=True, memory_mb=1e-6)
    dark = np.random.default_rng(31).uniform(0, 0.5, case["pixeldq"].shape).astype(np.float32)
    test_ramp_fit.assert_same_fit(case, miri=True, average_dark_current=dark)
    test_ramp_fit.assert_same_fit(case, miri=True, suppress_one_group=False)


@pytest.mark.parity
def test_parity_with_stcal_when_an_integration_keeps_fewer_than_three_groups():
    # integration 2 keeps 2 groups: no common pattern, every pixel on the general path
    case = miri_case(2, 6, [0, 3], seed=6)
    assert not common_pattern_applies(case, miri=True)
    test_ramp_fit.assert_same_fit(case, miri=True)


def test_rounding_margin_bounds_stcal_arithmetic_for_segments_after_skipped_groups():
    # closed-form slopes of segments starting at group `lo` are within the first-order bound
    # (the margin without its SPARE factor) of stcal's sums (observed: within 0.25 of the margin),
    # and the row-wise redo is stcal's arithmetic bit for bit
    rng = np.random.default_rng(5)
    T = float(np.float32(MIRI_TFRAME))
    S = 20000
    for lo, n in ((0, 39), (3, 36), (4, 14), (1, 3)):
        y = (rng.uniform(-2, 5000, S)[None] * T * np.arange(n)[:, None]
             + rng.uniform(-3e4, 6e4, S) + rng.normal(0, 10, (n, S))).astype(np.float32)
        invrn2 = 1.0 / rng.uniform(20.0, 400.0, S)
        for p in range(len(ramp_fit.POWERS)):
            closed = np.einsum("k,kp->p", ramp_fit.weight_table(n)[p], y, dtype=np.float64) / T
            exact = ramp_fit._stcal_slopes(y.T.astype(np.float64), np.full(S, lo), np.full(S, n),
                                           np.full(S, p), invrn2, T, lo + n)
            np.testing.assert_array_equal(ramp_fit._stcal_slopes_rows(y, lo, p, invrn2, T), exact)
            margin = ramp_fit._rounding_margin(closed, y, n, lo, p, T)
            assert np.all(np.abs(closed - exact) <= margin / ramp_fit.SPARE)
            assert np.all(margin <= 1e-10 * (np.abs(y).max(axis=0) / T + np.abs(closed)))


def miri_dark_case(seed, nints=3, ngroups=40, ny=24, nx=20):
    """A MIRI dark as the chain hands it to ramp_fit: ~12000 DN pedestal, 0.001-0.05 DN/s dark
    (slopes whose float32 steps are small against the pedestal's rounding), read noise ~14 DN,
    lastframe's last group and rscd's first 3 groups of integrations 2.. DO_NOT_USE; a few
    jumps, one ramp saturating after its first group (one good group: suppressed) and one jump
    in the first kept group."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.001, 0.05, (ny, nx))
    shape = (nints, ngroups, ny, nx)
    data = (rng.uniform(11500.0, 12500.0, (ny, nx))
            + np.cumsum(np.broadcast_to(rate * MIRI_TFRAME, shape), axis=1)
            + rng.normal(0, 14, shape)).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[:, -1] = DNU
    gdq[1:, :3] = DNU
    for _ in range(nints * 6):
        i, k, y, x = rng.integers(nints), rng.integers(4, ngroups - 1), rng.integers(ny), rng.integers(nx)
        gdq[i, k, y, x] |= JUMP
        data[i, k:, y, x] += 300.0
    gdq[0, 1:, 3, 4] |= SAT                     # one good group (group 0): suppressed
    gdq[0, 0, 5, 6] |= JUMP                     # jump in the first kept group of integration 1
    gdq[1, 3, 7, 8] |= JUMP                     # ... and of integration 2 (after rscd's groups)
    pdq = np.zeros((ny, nx), np.uint32)
    gain = rng.uniform(3.5, 4.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(12.0, 16.0, (ny, nx)).astype(np.float32)
    return dict(data=data, groupdq=gdq, pixeldq=pdq, gain=gain, readnoise=rn, tframe=MIRI_TFRAME,
                tgroup=MIRI_TFRAME, nframes=1, groupgap=0)


def assert_identical_to_stcal(case, **params):
    """Every product (SCI, ERR, DQ, VAR_POISSON, VAR_RNOISE; rate and rateints) equal to stcal's
    float32 values bit for bit (NaN where NaN), and the inputs left as they were."""
    before = {k: np.copy(v) for k, v in case.items() if isinstance(v, np.ndarray)}
    stcal_params = {k: v for k, v in params.items() if k in ("average_dark_current", "suppress_one_group")}
    refs = test_ramp_fit.stcal_fit(case, instrument="MIRI" if params.get("miri") else "NIRCAM",
                                   **stcal_params)
    ours = ramp_fit.fit_ramps(**case, **params)
    for mine, ref in zip(ours, refs):
        for key, ref_key in (("sci", "slope"), ("err", "err"), ("var_poisson", "var_poisson"),
                             ("var_rnoise", "var_rnoise"), ("dq", "dq")):
            np.testing.assert_array_equal(mine[key], ref[ref_key], err_msg=key)
    for k, v in before.items():
        np.testing.assert_array_equal(case[k], v, err_msg=f"input {k} modified")


@pytest.mark.parity
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_miri_dark_slopes_near_float32_boundaries_are_identical_to_stcal(seed):
    # about 10 % of these dark slopes are within the rounding bound of a float32 boundary and
    # redone with stcal's arithmetic; the rest keep the closed form: both must match stcal
    case = miri_dark_case(seed)
    y32 = case["data"][1, 3:39].reshape(36, -1)
    closed = np.einsum("k,kp->p", ramp_fit.weight_table(36)[0], y32, dtype=np.float64) / float(np.float32(MIRI_TFRAME))
    margin = ramp_fit._rounding_margin(closed, y32, 36, 3, 0, float(np.float32(MIRI_TFRAME)))
    redone = ramp_fit._near_float32_boundary(closed[None], margin[None], [36])
    assert 0 < redone.sum() < redone.size
    assert_identical_to_stcal(case, miri=True)
    assert_identical_to_stcal(case, miri=True, memory_mb=1e-6, threads=2)   # one-row blocks


def test_stcal_arithmetic_of_a_single_segment_is_sequential():
    # numpy sums one contiguous column pairwise: the row-wise redo of one ramp must still add in
    # group order, as stcal (and the many-segment path) does
    rng = np.random.default_rng(11)
    T = float(np.float32(MIRI_TFRAME))
    for S in (1, 2, 3):
        for _ in range(40):
            y = (rng.uniform(1e4, 6e4, S) + rng.normal(0, 30, (37, S))).astype(np.float32)
            invrn2 = 1.0 / rng.uniform(20.0, 400.0, S)
            rows = ramp_fit._stcal_slopes_rows(y, 3, 0, invrn2, T)
            # stcal's C loop, written out
            expect = []
            for s in range(S):
                sw = sx = sxx = sy = sxy = 0.0
                for k in range(37):
                    w = 1.0 * invrn2[s]
                    x = 3.0 + k
                    xw = x * w
                    sw += w
                    sx += xw
                    sxx += x * xw
                    sy += float(y[k, s]) * w
                    sxy += float(y[k, s]) * xw
                expect.append((sw * sxy - sx * sy) * (1.0 / (sw * sxx - sx * sx)) / T)
            np.testing.assert_array_equal(rows, expect)


def test_miri_group_range_matches_its_definition_when_suppression_empties_a_group():
    # group 0 is DO_NOT_USE everywhere except in a ramp with a single good group (group 0):
    # suppression makes it DO_NOT_USE there too, so it is dropped; a ramp with two good groups
    # keeps it
    rng = np.random.default_rng(4)
    gdq = np.zeros((2, 8, 6, 5), np.uint8)
    gdq[:, 0] = DNU
    gdq[:, -1] = DNU
    gdq[0, 0, 2, 3] = 0
    gdq[0, 1:, 2, 3] |= SAT
    gdq |= (rng.random(gdq.shape) < 0.05).astype(np.uint8) * JUMP
    blocks = [(0, 2), (2, 5), (5, 6)]

    def definition(suppress, first=None, last=None):   # every block prepared, as stcal reads it
        every = np.all((ramp_fit._prepare_gdq(gdq, suppress, first, last) & DNU) != 0, axis=(0, 2, 3))
        lo = 0
        while lo < every.size and every[lo]:
            lo += 1
        return lo, every.size - 1 if lo < every.size and every[-1] else every.size

    assert ramp_fit._miri_group_range(gdq, blocks, True, None, None) == definition(True) == (1, 7)
    assert ramp_fit._miri_group_range(gdq, blocks, False, None, None) == definition(False) == (0, 7)
    assert ramp_fit._miri_group_range(gdq, blocks, True, 2, 5) == definition(True, 2, 5) == (2, 7)
    gdq[1, :-1, 0, 0] = 0                        # two good groups in this ramp: group 0 stays
    assert ramp_fit._miri_group_range(gdq, blocks, True, None, None) == definition(True) == (0, 7)


@pytest.mark.parametrize("seed", range(6))
def test_median_of_differences_is_numpys_median_of_the_float64_rate_differences(seed):
    # the int32-key median against np.median of fl(y[k+1] / T) - fl(y[k] / T), bit for bit, on
    # MIRI-like (pedestal, distinct differences), NIR-like (around 0), negative, quantised (ties
    # at the middle ranks), equal values (differences of 0) and short/long ramps (network / keys)
    rng = np.random.default_rng(seed)
    T = float(np.float32(MIRI_TFRAME))
    P = 300
    for n in (5, 33, 34, 38, 50, 101):
        cases = [12000 + np.cumsum(rng.normal(0.05, 14, (n, P)), axis=0),
                 rng.normal(0, 10, (n, P)) + 0.01 * np.arange(n)[:, None],
                 -(12000 + np.cumsum(rng.normal(0.05, 14, (n, P)), axis=0)),
                 100 + np.round(rng.normal(0, 2, (n, P)) * 4) / 4,
                 np.where(rng.random((n, P)) < 0.5, 7.0, 7.0 + 2.0 ** -10)]
        for y in cases:
            y32 = y.astype(np.float32)
            r = y32.astype(np.float64) / T
            expect = np.median(r[1:] - r[:-1], axis=0)
            got = median.median_of_differences(y32, T, work="test")
            np.testing.assert_array_equal(got.view(np.int64), expect.view(np.int64))
