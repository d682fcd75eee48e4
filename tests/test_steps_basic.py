"""Closed-form tests of dq_init, saturation and superbias on tiny arrays (answers worked by hand)."""

import logging

import numpy as np
import pytest

from detcal import dqflags, pipeline, steps
from detcal.errors import InputError
from detcal.steps.dq_init import initialize
from detcal.steps.saturation import flag_saturation, grow
from detcal.steps.superbias import subtract_superbias

from conftest import make_ramp, make_reference

DNU, SAT, AD = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.AD_FLOOR
HOT, NSC = dqflags.HOT, dqflags.NO_SAT_CHECK


def ramp_of(values, ny=1, nx=1):
    """(1, ngroups, ny, nx) float32 ramp whose every pixel follows ``values``."""
    v = np.asarray(values, np.float32)
    return np.ascontiguousarray(np.broadcast_to(v[None, :, None, None], (1, v.size, ny, nx)))


def sat(data, thr, sat_dq=None, gdq=None, pdq=None, **kw):
    """flag_saturation with zero DQ defaults and a scalar or 2-D threshold."""
    ny, nx = data.shape[-2:]
    thr = np.broadcast_to(np.asarray(thr, np.float32), (ny, nx)).copy()
    sat_dq = np.zeros((ny, nx), np.uint32) if sat_dq is None else np.asarray(sat_dq, np.uint32)
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq
    pdq = np.zeros((ny, nx), np.uint32) if pdq is None else pdq
    kw.setdefault("n_pix_grow_sat", 0)
    return flag_saturation(data, gdq, pdq, thr, sat_dq, **kw)


# --------------------------------------------------------------------------------------------
# dq_init
# --------------------------------------------------------------------------------------------
def test_dq_init_sets_do_not_use_in_every_group_of_do_not_use_pixels_only():
    mask = np.array([[DNU | HOT, HOT], [0, DNU]], np.uint32)
    pdq, gdq = initialize(np.zeros((2, 2), np.uint32), np.zeros((2, 3, 2, 2), np.uint8), mask)
    assert np.all(gdq[:, :, 0, 0] == DNU) and np.all(gdq[:, :, 1, 1] == DNU)
    assert np.all(gdq[:, :, 0, 1] == 0) and np.all(gdq[:, :, 1, 0] == 0)
    assert gdq.dtype == np.uint8


def test_dq_init_ors_mask_into_pixeldq_and_keeps_existing_bits():
    pixeldq = np.array([[SAT, 0]], np.uint32)
    groupdq = np.zeros((1, 2, 1, 2), np.uint8)
    groupdq[0, 1, 0, 1] = dqflags.JUMP_DET
    pdq, gdq = initialize(pixeldq, groupdq, np.array([[HOT, DNU | dqflags.REFERENCE_PIXEL]], np.uint32))
    assert pdq.tolist() == [[SAT | HOT, DNU | dqflags.REFERENCE_PIXEL]]
    assert pdq.dtype == np.uint32
    assert gdq[0, :, 0, 1].tolist() == [DNU, DNU | dqflags.JUMP_DET]
    assert groupdq[0, 0, 0, 1] == 0 and pixeldq[0, 0] == SAT   # inputs untouched


def test_dq_init_run_uses_the_mask_reference_and_records_its_name():
    ramp = make_ramp(1, 2, 2, 2)
    mask = make_reference("MASK", ramp, dq=np.array([[DNU, 0], [0, HOT]], np.uint32),
                          path="/refs/my_mask.fits")
    out = steps.REGISTRY["dq_init"].run(ramp, {"mask": mask})
    assert out.pixeldq.tolist() == [[DNU, 0], [0, HOT]]
    assert np.all(out.groupdq[0, :, 0, 0] == DNU) and out.groupdq[0, :, 1, 1].sum() == 0
    assert out.header["R_MASK"] == "my_mask.fits"


def test_dq_init_run_rejects_a_mask_of_the_wrong_shape_naming_the_file():
    ramp = make_ramp(1, 2, 2, 2)
    mask = make_reference("MASK", ramp, dq=np.zeros((3, 2), np.uint32), path="bad_mask.fits")
    with pytest.raises(InputError, match="bad_mask.fits.*shape"):
        steps.REGISTRY["dq_init"].run(ramp, {"mask": mask})


# --------------------------------------------------------------------------------------------
# saturation
# --------------------------------------------------------------------------------------------
def test_saturation_flags_a_group_exactly_at_the_threshold_but_not_just_below():
    below = np.nextafter(np.float32(1000), np.float32(0))
    data = np.zeros((1, 2, 1, 2), np.float32)
    data[0, :, 0, 0] = [500, 1000]
    data[0, :, 0, 1] = [500, below]
    gdq, _ = sat(data, 1000.0)
    assert gdq[0, :, 0, 0].tolist() == [0, SAT]
    assert gdq[0, :, 0, 1].tolist() == [0, 0]


def test_saturation_is_sticky_after_the_signal_drops_below_threshold():
    gdq, _ = sat(ramp_of([100, 600, 300, 200]), 500.0)
    assert gdq[0, :, 0, 0].tolist() == [0, SAT, SAT, SAT]


def test_saturation_grows_to_the_eight_neighbours_for_one_pixel():
    data = ramp_of([10, 20], 5, 5)
    data[0, 1, 2, 2] = 5000
    gdq, _ = sat(data, 1000.0, n_pix_grow_sat=1)
    expect = np.zeros((5, 5), np.uint8)
    expect[1:4, 1:4] = SAT
    assert np.array_equal(gdq[0, 1], expect)
    assert not gdq[0, 0].any()


@pytest.mark.parametrize("n, box", [(1, 2), (2, 3)])
def test_saturation_growth_at_a_corner_is_clipped_to_the_array(n, box):
    data = ramp_of([10, 20], 6, 6)
    data[0, 1, 0, 0] = 5000
    gdq, _ = sat(data, 1000.0, n_pix_grow_sat=n)
    expect = np.zeros((6, 6), np.uint8)
    expect[:box, :box] = SAT
    assert np.array_equal(gdq[0, 1], expect)


def test_saturation_growth_does_not_cascade_over_later_groups():
    data = ramp_of([10, 20, 30, 40], 1, 7)
    data[0, 1:, 0, 3] = 5000
    gdq, _ = sat(data, 1000.0, n_pix_grow_sat=1)
    for g in (1, 2, 3):
        assert gdq[0, g, 0].tolist() == [0, 0, SAT, SAT, SAT, 0, 0]


def test_saturation_with_zero_growth_flags_only_the_pixel():
    data = ramp_of([10, 20], 3, 3)
    data[0, 1, 1, 1] = 5000
    gdq, _ = sat(data, 1000.0, n_pix_grow_sat=0)
    assert np.count_nonzero(gdq) == 1 and gdq[0, 1, 1, 1] == SAT


def test_saturated_flag_already_present_is_grown_in_its_group_but_not_made_sticky():
    data = ramp_of([10, 20, 30], 3, 3)
    gdq_in = np.zeros(data.shape, np.uint8)
    gdq_in[0, 0, 1, 1] = SAT
    gdq, _ = sat(data, 1000.0, gdq=gdq_in, n_pix_grow_sat=1)
    assert np.all(gdq[0, 0] == SAT)
    assert not gdq[0, 1:].any()


def test_saturation_ad_floor_flags_zero_and_negative_groups_only_without_growth():
    data = ramp_of([5, 20, 30, 40], 3, 3)
    data[0, 1, 1, 1] = 0.0
    data[0, 2, 1, 1] = -3.0
    gdq, _ = sat(data, 1000.0, n_pix_grow_sat=1)
    assert gdq[0, :, 1, 1].tolist() == [0, AD | DNU, AD | DNU, 0]
    gdq[0, :, 1, 1] = 0
    assert not gdq.any()


def test_nan_threshold_is_never_flagged_and_gains_no_sat_check_in_pixeldq():
    data = ramp_of([60000, 65535], 1, 2)
    thr = np.array([[np.nan, 50000]], np.float32)
    gdq, pdq = sat(data, thr)
    assert gdq[0, :, 0, 0].tolist() == [0, 0]
    assert gdq[0, :, 0, 1].tolist() == [SAT, SAT]
    assert pdq.tolist() == [[NSC, 0]]


def test_no_sat_check_pixel_is_never_flagged_nor_grows():
    data = ramp_of([30000, 60000], 3, 3)
    thr = np.full((3, 3), 65000, np.float32)
    thr[1, 1] = 100.0
    sat_dq = np.zeros((3, 3), np.uint32)
    sat_dq[1, 1] = NSC
    gdq, pdq = sat(data, thr, sat_dq=sat_dq, n_pix_grow_sat=1)
    assert not gdq.any()
    assert pdq[1, 1] == NSC


def test_unchecked_pixel_threshold_is_the_atod_limit_plus_one():
    # stcal sets NaN / NO_SAT_CHECK thresholds to 65536: a value above the 16-bit range still flags.
    gdq, _ = sat(ramp_of([65535, 65536]), np.nan)
    assert gdq[0, :, 0, 0].tolist() == [0, SAT]


def test_saturation_ors_every_reference_dq_bit_into_pixeldq():
    sat_dq = np.array([[HOT | NSC, dqflags.DEAD]], np.uint32)
    pdq_in = np.array([[dqflags.REFERENCE_PIXEL, 0]], np.uint32)
    _, pdq = sat(ramp_of([1, 2], 1, 2), 1000.0, sat_dq=sat_dq, pdq=pdq_in)
    assert pdq.tolist() == [[dqflags.REFERENCE_PIXEL | HOT | NSC, dqflags.DEAD]]
    assert pdq.dtype == np.uint32


def test_diluted_group_before_saturation_gets_do_not_use_when_nframes_is_4():
    # NFRAMES=4: group 0 averages frames 1..4 -> dilution 2.5/4 = 0.625 -> limit 625 DN for thr 1000.
    data = ramp_of([10, 20], 3, 3)
    data[0, :, 1, 1] = [700, 1200]
    gdq, _ = sat(data, 1000.0, nframes=4, n_pix_grow_sat=1)
    assert np.all(gdq[0, 0] == DNU)          # the pixel and its grown neighbours, DO_NOT_USE only
    assert np.all(gdq[0, 1] == SAT)


def test_diluted_group_pass_needs_the_diluted_limit_and_nframes_above_one():
    data = ramp_of([600, 1200], 1, 2)
    data[0, 0, 0, 1] = 700
    gdq4, _ = sat(data, 1000.0, nframes=4)
    assert gdq4[0, 0, 0].tolist() == [0, DNU]    # 600 < 625 <= 700
    gdq1, _ = sat(data, 1000.0, nframes=1)
    assert gdq1[0, 0, 0].tolist() == [0, 0]


def test_group2_check_flags_do_not_use_using_the_bias():
    # NFRAMES=4, thr 1000, bias 100: group 1 = 250 extrapolates to (250-100)/2.5*12+100 = 820 < 1000;
    # the jump 250 -> 500 exceeds (1000-250)/4; group 3 saturates; 500 < 812.5 (no diluted flag).
    data = ramp_of([250, 500, 1100])
    bias = np.full((1, 1), 100, np.float32)
    gdq, _ = sat(data, 1000.0, nframes=4, bias=bias)
    assert gdq[0, :, 0, 0].tolist() == [0, DNU, SAT]
    # without a bias, 250/2.5*12 = 1200 >= 1000: group 3 saturating is expected, no flag
    gdq0, _ = sat(data, 1000.0, nframes=4, bias=None)
    assert gdq0[0, :, 0, 0].tolist() == [0, 0, SAT]


def test_flag_saturation_does_not_modify_its_inputs():
    data = ramp_of([100, 2000, 0], 3, 3)
    thr = np.full((3, 3), 1000, np.float32)
    thr[0, 0] = np.nan
    sat_dq = np.zeros((3, 3), np.uint32)
    gdq = np.zeros(data.shape, np.uint8)
    pdq = np.zeros((3, 3), np.uint32)
    copies = [a.copy() for a in (data, gdq, pdq, thr, sat_dq)]
    flag_saturation(data, gdq, pdq, thr, sat_dq, n_pix_grow_sat=1, nframes=4,
                    bias=np.zeros((3, 3), np.float32))
    for before, after in zip(copies, (data, gdq, pdq, thr, sat_dq)):
        np.testing.assert_array_equal(before, after)


def test_grow_matches_a_box_dilation_with_zero_outside():
    rng = np.random.default_rng(3)
    mask = rng.random((2, 9, 11)) < 0.05
    from scipy.ndimage import binary_dilation
    for n in (1, 2, 3):
        box = np.ones((1, 2 * n + 1, 2 * n + 1), bool)
        assert np.array_equal(grow(mask, n), binary_dilation(mask, box))


def test_saturation_run_uses_references_and_logs_missing_superbias(caplog):
    ramp = make_ramp(1, 3, 2, 2, NFRAMES=4, data=ramp_of([250, 500, 1100], 2, 2))
    satref = make_reference("SATURATION", ramp, data=np.full((2, 2), 1000, np.float32),
                            dq=np.array([[HOT, 0], [0, 0]], np.uint32), path="sat.fits")
    bias = make_reference("SUPERBIAS", ramp, data=np.full((2, 2), 100, np.float32), path="bias.fits")
    with_bias = steps.REGISTRY["saturation"].run(make_ramp(1, 3, 2, 2, NFRAMES=4, data=ramp.data),
                                                 {"saturation": satref, "superbias": bias})
    assert with_bias.groupdq[0, :, 0, 0].tolist() == [0, DNU, SAT]
    assert with_bias.pixeldq[0, 0] == HOT
    with caplog.at_level(logging.INFO, logger="detcal.saturation"):
        without = steps.REGISTRY["saturation"].run(ramp, {"saturation": satref}, n_pix_grow_sat=0)
    assert without.groupdq[0, :, 0, 0].tolist() == [0, 0, SAT]
    assert any("SUPERBIAS" in r.getMessage() for r in caplog.records if r.name == "detcal.saturation")
    assert without.header["R_SATURA"] == "sat.fits"


def test_saturation_run_rejects_a_threshold_of_the_wrong_shape_naming_the_file():
    ramp = make_ramp(1, 2, 2, 2)
    satref = make_reference("SATURATION", ramp, data=np.ones((2, 3), np.float32), path="big_sat.fits")
    with pytest.raises(InputError, match="big_sat.fits"):
        steps.REGISTRY["saturation"].run(ramp, {"saturation": satref})


# --------------------------------------------------------------------------------------------
# superbias
# --------------------------------------------------------------------------------------------
def test_superbias_subtracts_every_group_of_every_integration():
    data = np.full((2, 3, 2, 2), 100.0, np.float32)
    bias = np.array([[40, 10], [0, -5]], np.float32)
    out, _ = subtract_superbias(data, np.zeros((2, 2), np.uint32), bias, np.zeros((2, 2), np.uint32))
    assert out.dtype == np.float32
    assert np.all(out == np.array([[60, 90], [100, 105]], np.float32))


def test_superbias_treats_nan_bias_as_zero():
    data = np.full((1, 2, 1, 2), 100.0, np.float32)
    out, _ = subtract_superbias(data, np.zeros((1, 2), np.uint32),
                                np.array([[np.nan, 30]], np.float32), None)
    assert out[0, :, 0].tolist() == [[100, 70], [100, 70]]


def test_superbias_ors_the_reference_dq_and_leaves_inputs_alone():
    data = np.full((1, 1, 1, 2), 100.0, np.float32)
    pdq = np.array([[DNU, 0]], np.uint32)
    bias_dq = np.array([[dqflags.UNRELIABLE_BIAS, HOT]], np.uint32)
    out, pdq_out = subtract_superbias(data, pdq, np.array([[10, 20]], np.float32), bias_dq)
    assert pdq_out.tolist() == [[DNU | dqflags.UNRELIABLE_BIAS, HOT]]
    assert pdq.tolist() == [[DNU, 0]] and np.all(data == 100.0)


def test_superbias_run_uses_the_reference_and_rejects_a_wrong_shape():
    ramp = make_ramp(1, 2, 1, 2, data=np.full((1, 2, 1, 2), 50, np.float32))
    ref = make_reference("SUPERBIAS", ramp, data=np.array([[20, np.nan]], np.float32),
                         dq=np.array([[0, HOT]], np.uint32), path="sb.fits")
    out = steps.REGISTRY["superbias"].run(ramp, {"superbias": ref})
    assert out.data[0, :, 0].tolist() == [[30, 50], [30, 50]] and out.pixeldq.tolist() == [[0, HOT]]
    wrong = make_reference("SUPERBIAS", ramp, data=np.zeros((2, 2), np.float32), path="wrong_sb.fits")
    with pytest.raises(InputError, match="wrong_sb.fits"):
        steps.REGISTRY["superbias"].run(ramp, {"superbias": wrong})


# --------------------------------------------------------------------------------------------
# the step contract
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dq_init", "saturation", "superbias"])
def test_step_is_registered_and_declares_the_references_the_pipeline_gives_it(name):
    module = steps.REGISTRY[name]
    assert callable(module.run)
    assert tuple(module.REFERENCES) == tuple(pipeline.REFERENCES[name])
