"""Parity of jump and ramp_fit with stcal 1.20 on long ramps (issue 15).

The parity suites of tests/test_jump.py and tests/test_ramp_fit.py stop at 15 groups; the speed
paths for long ramps (medians of more than 32 values sorted as rows of a transposed copy, the
float32 screen of the single-pass jump test, the median rate of unflagged pixels on the
transposed ramp, segments of every length fitted at once) only run above that. Same cases, same
assertions (bit-identical GROUPDQ / PIXELDQ / slopes / errors), at 34 to 100 groups.
"""

import numpy as np
import pytest

from detcal.steps.jump import detect_jumps

import test_jump
import test_ramp_fit


@pytest.mark.parity
@pytest.mark.parametrize("nints, ngroups", [(1, 40), (2, 40), (1, 100), (3, 34)])
def test_jump_parity_with_stcal_on_long_ramps(nints, ngroups):
    case = test_jump.parity_case(nints, ngroups, seed=1000 + nints * 100 + ngroups, ny=48, nx=48)
    info = test_jump.assert_same_jumps(case)
    assert info["regime"] == "single_pass"


@pytest.mark.parity
def test_jump_long_ramp_flags_do_not_depend_on_the_block_size():
    data, gdq, pdq, gain, rn, nframes, tgroup = test_jump.parity_case(2, 40, seed=77, ny=48, nx=48)
    whole = detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, memory_mb=100)[0]
    rows = detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, memory_mb=1e-6)[0]
    np.testing.assert_array_equal(rows, whole)
    # neighbours of jumps were flagged across row-block boundaries
    assert np.count_nonzero(whole & test_jump.JUMP) > np.count_nonzero(gdq & test_jump.JUMP)


@pytest.mark.parity
@pytest.mark.parametrize("nints, ngroups, flags", [(1, 40, True), (2, 40, True), (1, 100, True),
                                                   (2, 40, False)])
def test_ramp_fit_parity_with_stcal_on_long_ramps(nints, ngroups, flags):
    test_ramp_fit.assert_same_fit(
        test_ramp_fit.parity_case(nints, ngroups, seed=2000 + nints * 100 + ngroups, flags=flags))


@pytest.mark.parity
def test_ramp_fit_parity_with_stcal_on_long_ramps_in_one_row_blocks():
    # one-row blocks: few flagged segments per block (stcal's running sums as add.accumulate)
    test_ramp_fit.assert_same_fit(test_ramp_fit.parity_case(2, 40, seed=2240), memory_mb=1e-6)


def test_closed_form_slopes_near_a_float32_rounding_boundary_are_redone():
    from detcal.steps.ramp_fit import _near_float32_boundary, _rounding_margin
    a = np.float32(-4.333231e-05)
    b = np.nextafter(a, np.float32(0))
    mid = (np.float64(a) + np.float64(b)) / 2              # rounds either way within 1 ulp
    y32 = np.zeros((1, 40, 2), np.float32)
    y32[0, :, :] = 20.0
    slope = np.array([[mid, np.float64(a)]])
    margin = _rounding_margin(slope[0], y32[0], 40, 0, 0, 10.73676)[None]
    risky = _near_float32_boundary(slope, margin, [40])
    assert risky.tolist() == [[True, False]]
