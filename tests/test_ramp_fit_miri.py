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
from detcal.steps import ramp_fit

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
    _, pattern = ramp_fit._common_ranges(gdq.reshape(nints, ngroups, -1))
    return bool(pattern.any())


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
    # closed-form slopes of segments starting at group `lo` are within the margin of stcal's
    # sums (observed: within 0.15 of it), and the row-wise redo is stcal's arithmetic bit for bit
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
            assert np.all(np.abs(closed - exact) <= margin)
            assert np.all(margin <= 1e-10 * (np.abs(y).max(axis=0) / T + np.abs(closed)))
