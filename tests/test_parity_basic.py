"""Parity of dq_init, saturation and superbias with stcal 1.20 / jwst 3.0 on the same arrays.

stcal's ``flag_saturated_pixels`` modifies ``gdq``, ``sat_thresh`` and ``sat_dq`` in place, and
jwst's superbias sets NaN to 0 inside the reference model, so the reference implementations get
copies; detcal's functions must leave their inputs alone (checked here too).
"""

import numpy as np
import pytest
from stcal.saturation.saturation import flag_saturated_pixels
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags as jwst_dqflags

from detcal import dqflags, io, steps
from detcal.steps.dq_init import initialize
from detcal.steps.saturation import ATOD_LIMIT, flag_saturation, read_pattern
from detcal.steps.superbias import subtract_superbias

from conftest import make_ramp

pytestmark = pytest.mark.parity

DNU, SAT, AD, NSC = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.AD_FLOOR, dqflags.NO_SAT_CHECK


def test_detcal_dq_flags_are_the_jwst_ones():
    for name, value in jwst_dqflags.pixel.items():
        assert dqflags.PIXEL[name] == value, name
    assert dqflags.GROUP == jwst_dqflags.group


def saturation_case(nframes, seed, nints=2, ngroups=6, ny=23, nx=19):
    """Ramps that saturate at various groups, with every special case the kernel handles.

    Returns data, gdq, pdq, thresholds, sat_dq, bias and the positions of three planted pixels:
    one that the diluted-group pass flags (NFRAMES > 1), one that the group-2 check flags with the
    bias, and one that saturates only at the array edge.
    """
    rng = np.random.default_rng(seed)
    shape = (nints, ngroups, ny, nx)
    bias = rng.normal(10000, 40, (ny, nx)).astype(np.float32)
    bias[rng.random((ny, nx)) < 0.03] = np.nan
    rate = rng.exponential(3000, (ny, nx))                      # DN per group
    frames = np.arange(1, ngroups + 1)[:, None, None]
    data = (np.nan_to_num(bias)[None, None] + rate * frames
            + rng.normal(0, 15, shape)).astype(np.float32)
    data[rng.random(shape) < 0.02] = 0.0                          # A-to-D floor
    data[rng.random(shape) < 0.01] = -7.0
    data[rng.random(shape) < 0.005] = 65535.0                     # hard A-to-D ceiling
    thr = rng.normal(30000, 500, (ny, nx)).astype(np.float32)
    thr[rng.random((ny, nx)) < 0.05] = np.nan
    sat_dq = np.zeros((ny, nx), np.uint32)
    sat_dq[rng.random((ny, nx)) < 0.05] |= NSC
    sat_dq[rng.random((ny, nx)) < 0.05] |= dqflags.HOT | dqflags.DO_NOT_USE
    gdq = np.zeros(shape, np.uint8)
    gdq[rng.random(shape) < 0.02] |= SAT                           # pre-existing flags
    gdq[rng.random(shape) < 0.02] |= DNU
    gdq[rng.random(shape) < 0.02] |= dqflags.JUMP_DET
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[rng.random((ny, nx)) < 0.05] = dqflags.REFERENCE_PIXEL

    # planted pixels, in integration 0, clean neighbourhoods (needs 6 groups)
    dil, g2, edge = (5, 5), (15, 10), (0, nx - 1)
    if ngroups < 6:
        return data, gdq, pdq, thr, sat_dq, bias, (dil, g2, edge)
    for y, x in (dil, g2, edge):
        ys, xs = slice(max(y - 3, 0), y + 4), slice(max(x - 3, 0), x + 4)
        data[0, :, ys, xs] = 1000.0 * frames
        gdq[0, :, ys, xs] = 0
        thr[ys, xs] = 30000.0
        sat_dq[ys, xs] = 0
        bias[ys, xs] = 100.0
    rp = read_pattern(ngroups, nframes)
    # diluted group: group 2 reaches thr * mean(rp[2]) / rp[2][-1], group 3 saturates
    data[0, 2, dil[0], dil[1]] = 30000.0 * np.mean(rp[2]) / rp[2][-1] + 10
    data[0, 3:, dil[0], dil[1]] = 40000.0
    # group-2 check: group 1 low, big jump to group 2 (below the diluted limit), group 3 saturated
    data[0, :, g2[0], g2[1]] = [2000.0, 2000.0 + 30000.0 / nframes, 50000.0, 50000, 50000, 50000][:ngroups]
    data[0, 1, g2[0], g2[1]] = min(data[0, 1, g2[0], g2[1]],
                                   30000.0 * np.mean(rp[1]) / rp[1][-1] - 10)
    data[0, 1, g2[0], g2[1]] = max(data[0, 1, g2[0], g2[1]], 2000 + (30000.0 - 2000) / nframes + 5)
    data[0, 4:, edge[0], edge[1]] = 35000.0
    return data, gdq, pdq, thr, sat_dq, bias, (dil, g2, edge)


def stcal_saturation(data, gdq, pdq, thr, sat_dq, bias, n, nframes):
    g, p, _ = flag_saturated_pixels(
        data.copy(), gdq.copy(), pdq.copy(), thr.copy(), sat_dq.copy(), ATOD_LIMIT,
        jwst_dqflags.pixel, n_pix_grow_sat=n, zframe=None,
        read_pattern=read_pattern(data.shape[1], nframes),
        bias=None if bias is None else bias.copy())
    return g, p


REGIMES = [  # (nframes, n_pix_grow_sat, use bias)
    (1, 1, True), (1, 0, False), (1, 2, True),
    (4, 1, True), (4, 0, True), (4, 2, False), (2, 1, False),
]


@pytest.mark.parametrize("nframes, grow, use_bias", REGIMES)
def test_saturation_flags_match_stcal(nframes, grow, use_bias):
    data, gdq, pdq, thr, sat_dq, bias, (dil, g2, edge) = saturation_case(nframes, seed=nframes * 10 + grow)
    bias = bias if use_bias else None
    inputs = [a.copy() for a in (data, gdq, pdq, thr, sat_dq)]
    ref_gdq, ref_pdq = stcal_saturation(data, gdq, pdq, thr, sat_dq, bias, grow, nframes)
    our_gdq, our_pdq = flag_saturation(data, gdq, pdq, thr, sat_dq, n_pix_grow_sat=grow,
                                       nframes=nframes, bias=bias)
    assert our_gdq.dtype == np.uint8 and our_pdq.dtype == np.uint32
    np.testing.assert_array_equal(our_gdq, ref_gdq)
    np.testing.assert_array_equal(our_pdq, ref_pdq)
    for before, after in zip(inputs, (data, gdq, pdq, thr, sat_dq)):
        np.testing.assert_array_equal(before, after)

    # the regime exercised what it claims (so that equality is not vacuous)
    assert np.any(ref_gdq & SAT) and np.any(ref_gdq & AD)
    assert np.any(ref_pdq & NSC)
    assert ref_gdq[0, 4, edge[0], edge[1]] & SAT
    if grow:
        assert ref_gdq[0, 4, edge[0] + grow, edge[1] - grow] & SAT
    if nframes > 1:
        assert ref_gdq[0, 2, dil[0], dil[1]] == DNU
        if use_bias:
            assert ref_gdq[0, 1, g2[0], g2[1]] == DNU


@pytest.mark.parametrize("nframes, grow, use_bias", [(1, 1, True), (1, 0, False), (4, 2, True)])
def test_saturation_matches_stcal_without_saturated_flags_on_input(nframes, grow, use_bias):
    """A raw ramp has no SATURATED flags before the step (the step then takes a group's
    SATURATED pixels as those crossed so far); some groups have no A-to-D-floor value (skipped
    after a minimum that ignores NaN), one has NaN values beside floor values."""
    data, gdq, pdq, thr, sat_dq, bias, _ = saturation_case(nframes, seed=40 + nframes + grow)
    gdq &= ~np.uint8(SAT)
    data[1, 3][data[1, 3] <= 0] = 5.0                   # no floor value in this group
    data[1, 4, :3, :3] = np.nan                         # NaN beside the floor values
    data[0, 5, 0, 0] = 0.0
    bias = bias if use_bias else None
    ref_gdq, ref_pdq = stcal_saturation(data, gdq, pdq, thr, sat_dq, bias, grow, nframes)
    our_gdq, our_pdq = flag_saturation(data, gdq, pdq, thr, sat_dq, n_pix_grow_sat=grow,
                                       nframes=nframes, bias=bias)
    np.testing.assert_array_equal(our_gdq, ref_gdq)
    np.testing.assert_array_equal(our_pdq, ref_pdq)
    assert np.any(ref_gdq & SAT) and np.any(ref_gdq[1, 4] & AD) and not np.any(ref_gdq[1, 3] & AD)


def test_saturation_matches_stcal_on_a_single_group_and_two_group_ramp():
    for ngroups in (1, 2):
        data, gdq, pdq, thr, sat_dq, bias, _ = saturation_case(4, seed=7, ngroups=ngroups)
        ref_gdq, ref_pdq = stcal_saturation(data, gdq, pdq, thr, sat_dq, bias, 1, 4)
        our_gdq, our_pdq = flag_saturation(data, gdq, pdq, thr, sat_dq, nframes=4, bias=bias)
        np.testing.assert_array_equal(our_gdq, ref_gdq)
        np.testing.assert_array_equal(our_pdq, ref_pdq)


@pytest.mark.parametrize("grow", [1, 2])
def test_saturation_matches_stcal_on_a_dark_with_few_saturated_pixels(grow):
    """A dark's few saturating (hot) pixels, at corners and edges too: the step then grows the
    flags from the pixels' coordinates instead of dilating whole frames; same flags as stcal."""
    from detcal.steps.saturation import grow as dilate
    from detcal.steps.saturation import grow_in_place
    rng = np.random.default_rng(20 + grow)
    nints, ngroups, ny, nx = 2, 5, 64, 48
    data = (10000 + rng.normal(0, 10, (nints, ngroups, ny, nx))).astype(np.float32)
    hot = [(0, 0), (0, 20), (ny - 1, nx - 1), (30, 0), (31, 1), (10, 10), (50, nx - 2)]
    for k, (y, x) in enumerate(hot):
        data[k % nints, 1 + k % (ngroups - 1):, y, x] = 40000.0
    thr = np.full((ny, nx), 30000, np.float32)
    gdq, pdq, sat_dq = (np.zeros(data.shape, np.uint8), np.zeros((ny, nx), np.uint32),
                        np.zeros((ny, nx), np.uint32))
    ref_gdq, ref_pdq = stcal_saturation(data, gdq, pdq, thr, sat_dq, None, grow, 1)
    our_gdq, our_pdq = flag_saturation(data, gdq, pdq, thr, sat_dq, n_pix_grow_sat=grow)
    np.testing.assert_array_equal(our_gdq, ref_gdq)
    np.testing.assert_array_equal(our_pdq, ref_pdq)
    assert ref_gdq[0, 4, grow, grow] & SAT and ref_gdq[0, 4, ny - 1 - grow, nx - 1 - grow] & SAT
    assert 0 < np.count_nonzero(ref_gdq[0, 4] & SAT) < ny * nx // 8     # the sparse regime
    inplace, _ = flag_saturation(data, gdq, pdq, thr, sat_dq, n_pix_grow_sat=grow, out=gdq)  # as run()
    assert inplace is gdq
    np.testing.assert_array_equal(inplace, ref_gdq)
    # the two ways of growing agree on sparse and on dense masks
    for density in (0.001, 0.3):
        mask = rng.random((ny, nx)) < density
        np.testing.assert_array_equal(grow_in_place(mask.copy(), grow), dilate(mask, grow))


def model_meta(model, ramp):
    """Copy the subarray/exposure metadata jwst's steps look at from a detcal Ramp header."""
    h = ramp.header
    model.meta.instrument.name = h["INSTRUME"]
    model.meta.instrument.detector = h["DETECTOR"]
    model.meta.subarray.name = h["SUBARRAY"]
    model.meta.subarray.xstart, model.meta.subarray.ystart = h["SUBSTRT1"], h["SUBSTRT2"]
    model.meta.subarray.xsize, model.meta.subarray.ysize = h["SUBSIZE1"], h["SUBSIZE2"]
    return model


def ramp_model(ramp):
    model = datamodels.RampModel(data=ramp.data.copy(), pixeldq=ramp.pixeldq.copy(),
                                 groupdq=ramp.groupdq.copy())
    model_meta(model, ramp)
    model.meta.exposure.type = ramp.header["EXP_TYPE"]
    model.meta.exposure.ngroups = ramp.header["NGROUPS"]
    model.meta.exposure.nframes = ramp.header["NFRAMES"]
    model.meta.exposure.zero_frame = False
    return model


def test_saturation_step_on_files_matches_jwst_flag_saturation_with_subarray_and_dq_def(fits_writer):
    from jwst.saturation.saturation import flag_saturation as jwst_flag_saturation
    data, gdq, pdq, thr, sat_dq, bias, _ = saturation_case(4, seed=3, nints=1)   # 23 x 19
    ramp = make_ramp(1, 6, 23, 19, NFRAMES=4, SUBARRAY="SUB160", SUBSTRT1=3, SUBSTRT2=5,
                     data=data, groupdq=gdq, pixeldq=pdq)
    full = make_ramp(1, 6, 30, 24)                         # the references cover 24 x 30 pixels
    inner = (slice(4, 27), slice(2, 21))
    big_thr = np.full((30, 24), 30000, np.float32)
    big_thr[inner] = thr
    big_dq = np.zeros((30, 24), np.uint32)
    big_dq[inner] = sat_dq
    big_bias = np.full((30, 24), 10000, np.float32)
    big_bias[inner] = bias
    sat_path = fits_writer.reference("SATURATION", full, SCI=big_thr, DQ=big_dq)
    bias_path = fits_writer.reference("SUPERBIAS", full, SCI=big_bias, DQ=np.zeros((30, 24)))
    ramp_path = fits_writer.ramp(ramp, name="sub_uncal.fits")

    ours = io.read_ramp(ramp_path, "saturation")
    refs = {"saturation": io.read_reference(sat_path, "SATURATION", like=ours),
            "superbias": io.read_reference(bias_path, "SUPERBIAS", like=ours)}
    ours = steps.REGISTRY["saturation"].run(ours, refs, n_pix_grow_sat=1)

    model = datamodels.RampModel(ramp_path)
    from jwst.lib import reffile_utils
    sat_model = datamodels.SaturationModel(sat_path)
    bias_model = reffile_utils.get_subarray_model(model, datamodels.SuperBiasModel(bias_path))
    theirs = jwst_flag_saturation(model, sat_model, 1, True, bias_model=bias_model)
    np.testing.assert_array_equal(ours.groupdq, theirs.groupdq)
    np.testing.assert_array_equal(ours.pixeldq, theirs.pixeldq)
    assert np.any(theirs.groupdq & SAT)


@pytest.mark.parametrize("with_nan_bias", [False, True])
def test_superbias_matches_jwst_do_correction(with_nan_bias):
    from jwst.superbias.bias_sub import do_correction
    rng = np.random.default_rng(5)
    ramp = make_ramp(2, 4, 9, 7, data=rng.normal(12000, 300, (2, 4, 9, 7)).astype(np.float32),
                     pixeldq=rng.choice([0, DNU, dqflags.HOT], (9, 7)).astype(np.uint32))
    bias = rng.normal(10000, 50, (9, 7)).astype(np.float32) + np.float32(0.1234567)
    if with_nan_bias:
        bias[rng.random((9, 7)) < 0.2] = np.nan
    bias_dq = rng.choice([0, dqflags.UNRELIABLE_BIAS, DNU | dqflags.DEAD], (9, 7)).astype(np.uint32)

    model = ramp_model(ramp)
    bias_model = model_meta(datamodels.SuperBiasModel(data=bias.copy(), dq=bias_dq.copy()), ramp)
    theirs = do_correction(model, bias_model)
    data_in, pdq_in = ramp.data.copy(), ramp.pixeldq.copy()
    out, pdq = subtract_superbias(ramp.data, ramp.pixeldq, bias, bias_dq)
    assert out.dtype == theirs.data.dtype == np.float32
    np.testing.assert_array_equal(out, theirs.data)           # bit-identical float32
    np.testing.assert_array_equal(pdq, theirs.pixeldq)
    np.testing.assert_array_equal(ramp.data, data_in)
    np.testing.assert_array_equal(ramp.pixeldq, pdq_in)
    inplace, _ = subtract_superbias(ramp.data, ramp.pixeldq, bias, bias_dq, out=ramp.data)  # as run()
    assert inplace is ramp.data
    np.testing.assert_array_equal(inplace, theirs.data)


def test_dq_init_matches_jwst_do_dqinit_on_a_subarray(fits_writer):
    from jwst.dq_init.dq_initialization import do_dqinit
    rng = np.random.default_rng(11)
    full = make_ramp(1, 3, 20, 16)
    mask = rng.choice([0, DNU, dqflags.HOT, DNU | dqflags.DEAD, dqflags.REFERENCE_PIXEL | DNU,
                       dqflags.RC], (20, 16), p=[0.6, 0.1, 0.1, 0.1, 0.05, 0.05]).astype(np.uint32)
    mask_path = fits_writer.reference("MASK", full, DQ=mask)
    gdq = rng.choice([0, SAT, dqflags.JUMP_DET], (2, 3, 6, 8)).astype(np.uint8)
    ramp = make_ramp(2, 3, 6, 8, SUBARRAY="SUB160", SUBSTRT1=5, SUBSTRT2=9, groupdq=gdq,
                     pixeldq=rng.choice([0, dqflags.LOW_QE], (6, 8)).astype(np.uint32))
    ramp_path = fits_writer.ramp(ramp, name="sub_ramp.fits")

    ours = io.read_ramp(ramp_path, "dq_init")
    ours = steps.REGISTRY["dq_init"].run(ours, {"mask": io.read_reference(mask_path, "MASK", like=ours)})
    theirs = do_dqinit(datamodels.RampModel(ramp_path), datamodels.MaskModel(mask_path))
    np.testing.assert_array_equal(ours.pixeldq, theirs.pixeldq)
    np.testing.assert_array_equal(ours.groupdq, theirs.groupdq)
    assert np.any(theirs.groupdq[:, :, :, :] & DNU)


def test_dq_init_initialize_matches_do_dqinit_on_arrays():
    from jwst.dq_init.dq_initialization import do_dqinit
    rng = np.random.default_rng(12)
    ramp = make_ramp(1, 4, 5, 6, groupdq=rng.choice([0, SAT, DNU], (1, 4, 5, 6)).astype(np.uint8))
    mask = rng.choice([0, DNU, dqflags.WARM, DNU | dqflags.OPEN], (5, 6)).astype(np.uint32)
    model = ramp_model(ramp)
    theirs = do_dqinit(model, model_meta(datamodels.MaskModel(dq=mask.copy()), ramp))
    pdq, gdq = initialize(ramp.pixeldq, ramp.groupdq, mask)
    np.testing.assert_array_equal(pdq, theirs.pixeldq)
    np.testing.assert_array_equal(gdq, theirs.groupdq)
    _, inplace = initialize(ramp.pixeldq, ramp.groupdq, mask, out=ramp.groupdq)   # as run()
    assert inplace is ramp.groupdq
    np.testing.assert_array_equal(inplace, theirs.groupdq)
