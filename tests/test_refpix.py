"""refpix: closed-form tests on tiny arrays, and bit-level parity with jwst 3.0 refpix."""

import logging
import warnings

import numpy as np
import pytest
import scipy.stats
from astropy.io import fits

from detcal import dqflags
from detcal.geometry import Geometry, to_science
from detcal.io import Ramp
from detcal.steps import refpix
from detcal.steps.refpix import clipped_means, running_median, subtract_reference_pixels, window_rows

DNU, REF = dqflags.DO_NOT_USE, dqflags.REFERENCE_PIXEL


# --------------------------------------------------------------------------------------------
# helpers (own, not conftest)
# --------------------------------------------------------------------------------------------
def nir(shape, start=(0, 0), full=(2048, 2048), noutputs=4, fast=1, slow=2):
    """Geometry of a NIR (sub)array; ``full=None`` makes it a (mini) full frame."""
    return Geometry("NIR", tuple(shape), tuple(full or shape), tuple(start), noutputs, fast, slow)


def border(shape):
    """bool mask of the 4-pixel reference border of a full frame."""
    m = np.zeros(shape, bool)
    m[:4] = m[-4:] = True
    m[:, :4] = m[:, -4:] = True
    return m


def make_ramp(data, pixeldq=None, **header):
    """A detcal Ramp with the keywords refpix needs (NIRCam full-frame defaults)."""
    nints, ngroups, ny, nx = data.shape
    hdr = fits.Header()
    values = dict(INSTRUME="NIRCAM", DETECTOR="NRCA1", NINTS=nints, NGROUPS=ngroups, NFRAMES=1,
                  GROUPGAP=0, SUBARRAY="FULL", SUBSTRT1=1, SUBSTRT2=1, SUBSIZE1=nx, SUBSIZE2=ny,
                  NOUTPUTS=4, FASTAXIS=1, SLOWAXIS=2, READPATT="RAPID", TFRAME=10.0, TGROUP=10.0)
    values.update(header)
    for k, v in values.items():
        hdr[k] = v
    pdq = np.zeros((ny, nx), np.uint32) if pixeldq is None else pixeldq
    return Ramp(np.asarray(data, np.float32), pdq, np.zeros(data.shape, np.uint8), hdr, "test.fits")


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_means_equal_scipy_sigmaclip_mean_bit_for_bit(dtype):
    rng = np.random.default_rng(7)
    n = 1024
    values = rng.normal(3.0, 5.0, (40, n)).astype(dtype)
    values[rng.random(values.shape) < 0.01] += 200.0             # outliers to clip
    good = rng.random(values.shape) > 0.05
    good[3, 500:] = False                                         # different lengths
    good[4] = False                                               # no good value
    values[5] = 2.5                                               # std == 0
    mean, wide, valid = clipped_means(values, good)
    for b in range(values.shape[0]):
        v = values[b][good[b]]
        if v.size == 0:
            assert not valid[b]
        elif np.std(v, dtype=np.float64) == 0:
            assert wide[b] and mean[b] == v.mean(dtype=np.float64)
        else:
            expect = scipy.stats.sigmaclip(v, 3.0, 3.0)[0].mean()
            assert expect.dtype == dtype and not wide[b]
            assert mean[b] == expect, b


@pytest.mark.parametrize("length", [11, 10, 1, 5])
def test_running_median_matches_a_per_row_median_with_reflection_and_dnu(length):
    rng = np.random.default_rng(3)
    ny = 30
    block = rng.normal(0, 1, (2, ny, 4)).astype(np.float32)
    good = rng.random((ny, 4)) > 0.2
    good[10:13] = False
    got = running_median(block, good, window_rows(ny, length))
    h = length // 2
    pad = np.pad(np.arange(ny), (h, h), mode="reflect")
    expect = np.full((2, ny), np.nan)
    for f in range(2):
        for r in range(ny):
            rows = pad[r:r + length]
            w = block[f][rows][good[rows]]
            if w.size:
                expect[f, r] = np.median(w)
    np.testing.assert_array_equal(got, expect)        # NaN where a window has no good pixel


def test_window_rows_of_a_subarray_stop_at_its_edge_and_reflect_at_the_frame_edge():
    # 6 rows starting at full-frame row 0 of a 100-row frame, window 5
    src = window_rows(6, 5, row0=0, full_ny=100)
    assert src[0].tolist() == [2, 1, 0, 1, 2]          # reflected at the frame edge
    assert src[5].tolist() == [3, 4, 5, -1, -1]        # beyond the subarray: not available


# --------------------------------------------------------------------------------------------
# closed form: 4 outputs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast,slow", [(1, 2), (-1, 2), (2, 1), (-2, -1)])
def test_refpix_removes_known_per_amp_odd_even_offsets_exactly(fast, slow):
    ny = nx = 64                                     # mini full frame: 4 amplifiers 16 columns wide
    geom = nir((ny, nx), full=None, fast=fast, slow=slow)
    rng = np.random.default_rng(1)
    offsets = rng.integers(-50, 50, (2, 3, 4, 2)).astype(np.float32)   # (int, group, amp, parity)
    det = np.zeros((2, 3, ny, nx), np.float32)
    for amp in range(4):
        for parity in range(2):
            det[..., amp * 16 + parity:(amp + 1) * 16:2] = offsets[:, :, amp, parity, None, None]
    signal = np.where(border((ny, nx)), 0.0, rng.integers(0, 1000, (ny, nx))).astype(np.float32)
    det += signal
    pixeldq = np.zeros((ny, nx), np.uint32)
    det[:, :, 1, 5] = 1e6                            # a bad reference pixel, flagged DO_NOT_USE
    pixeldq[1, 5] = DNU
    data = np.ascontiguousarray(to_science(det, fast, slow))
    out, reason = subtract_reference_pixels(data, to_science(pixeldq, fast, slow), geom,
                                            use_side_ref_pixels=False)
    assert reason is None
    expect = to_science(np.broadcast_to(signal, det.shape), fast, slow)
    usable = to_science(pixeldq, fast, slow) == 0        # the flagged pixel keeps its 1e6
    np.testing.assert_array_equal(out[..., usable], expect[..., usable])
    assert out.dtype == np.float32


def test_refpix_with_odd_even_columns_off_removes_one_offset_per_amplifier():
    ny = nx = 32
    data = np.zeros((1, 2, ny, nx), np.float32)
    for amp in range(4):
        data[:, :, :, amp * 8:(amp + 1) * 8] = 10.0 * (amp + 1)
    data[..., 0::2] += 1.0                     # the odd/even difference stays
    out, _ = subtract_reference_pixels(data, np.zeros((ny, nx), np.uint32), nir((ny, nx), full=None),
                                       odd_even_columns=False, use_side_ref_pixels=False)
    np.testing.assert_array_equal(out[..., 0::2], 0.5)
    np.testing.assert_array_equal(out[..., 1::2], -0.5)


def test_side_reference_pixels_remove_a_known_row_drift():
    ny, nx = 64, 32
    drift = np.zeros(ny, np.float32)
    drift[20:40] = 8.0                          # steps the running median keeps exactly
    drift[40:] = -4.0
    data = np.broadcast_to(drift[:, None], (1, 2, ny, nx)).astype(np.float32) + 100.0
    out, reason = subtract_reference_pixels(data, np.zeros((ny, nx), np.uint32), nir((ny, nx), full=None))
    assert reason is None
    np.testing.assert_array_equal(out, 0.0)


def test_side_gain_scales_the_side_correction():
    ny, nx = 32, 16
    data = np.zeros((1, 1, ny, nx), np.float32)
    data[0, 0, 8:24] = 4.0                      # top/bottom rows see 0; the sides see the step
    out, _ = subtract_reference_pixels(data, np.zeros((ny, nx), np.uint32), nir((ny, nx), full=None),
                                       side_gain=0.5)
    np.testing.assert_array_equal(out[0, 0, 8:24], 2.0)
    np.testing.assert_array_equal(out[0, 0, :8], 0.0)


def test_amplifier_without_good_reference_rows_is_left_uncorrected_and_said():
    ny = nx = 32
    data = np.full((1, 1, ny, nx), 5.0, np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[:4, 8:16] = DNU
    pixeldq[-4:, 8:16] = DNU                    # amplifier 1 has no usable top/bottom pixels
    out, reason = subtract_reference_pixels(data, pixeldq, nir((ny, nx), full=None),
                                            use_side_ref_pixels=False)
    np.testing.assert_array_equal(out[..., 8:16], 5.0)
    np.testing.assert_array_equal(out[..., :8], 0.0)
    assert "1 amplifier-frame" in reason


# --------------------------------------------------------------------------------------------
# closed form: 1-output subarrays
# --------------------------------------------------------------------------------------------
def test_one_output_subarray_subtracts_one_mean_per_full_frame_column_parity():
    ny, nx = 16, 16
    x0 = 5                                       # odd start: column parity is the full frame's
    geom = nir((ny, nx), start=(0, x0), noutputs=1)
    full_col = x0 + np.arange(nx)
    offset = np.where(full_col % 2 == 0, 3.0, -7.0).astype(np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[:4] = REF                            # the bottom reference rows in this subarray
    signal = np.zeros((ny, nx), np.float32)
    signal[4:] = np.arange(12 * 16).reshape(12, 16)
    data = (signal + offset)[None, None].repeat(2, axis=1)
    out, reason = subtract_reference_pixels(data, pixeldq, geom)
    assert reason is None
    np.testing.assert_array_equal(out, np.broadcast_to(signal, out.shape))


def test_one_output_subarray_without_reference_pixels_is_unchanged_with_a_reason(caplog):
    ny, nx = 8, 8
    data = np.arange(2 * ny * nx, dtype=np.float32).reshape(1, 2, ny, nx)
    geom = nir((ny, nx), start=(500, 500), noutputs=1)
    out, reason = subtract_reference_pixels(data, np.zeros((ny, nx), np.uint32), geom)
    np.testing.assert_array_equal(out, data)
    assert "no reference pixels" in reason
    ramp = make_ramp(data, SUBARRAY="SUB8", SUBSTRT1=501, SUBSTRT2=501, NOUTPUTS=1)
    with caplog.at_level(logging.INFO, logger="detcal.refpix"):
        refpix.run(ramp, {})
    assert "no reference pixels" in caplog.text
    np.testing.assert_array_equal(ramp.data, data)


def test_nirspec_edgeless_subarray_uses_its_first_and_last_four_columns():
    ny, nx = 8, 32
    data = np.full((1, 1, ny, nx), 6.0, np.float32)
    geom = nir((ny, nx), start=(1000, 100), noutputs=1)
    out, reason = subtract_reference_pixels(data, np.zeros((ny, nx), np.uint32), geom,
                                            subarray="SUB32")
    assert reason is None
    np.testing.assert_array_equal(out, 0.0)


def test_run_corrects_a_mini_full_frame_ramp_and_logs_one_line(caplog):
    ny = nx = 256                                # amplifiers 64 wide
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (1, 2, ny, nx)).astype(np.float32) + 1000.0
    ramp = make_ramp(data)
    with caplog.at_level(logging.INFO, logger="detcal.refpix"):
        out = refpix.run(ramp, {})
    assert out is ramp and ramp.data.dtype == np.float32
    assert abs(float(np.median(ramp.data))) < 1.0
    assert len([r for r in caplog.records if r.name == "detcal.refpix"]) == 1


def test_miri_subarray_is_skipped_and_miri_full_frame_is_corrected():
    data = np.zeros((1, 2, 16, 16), np.float32)
    geom = Geometry("MIRI", (16, 16), (1024, 1032), (0, 0), 4, 1, 2)
    out, reason = subtract_reference_pixels(data, np.zeros((16, 16), np.uint32), geom)
    assert "MIRI subarray" in reason
    full = Geometry("MIRI", (16, 16), (16, 16), (0, 0), 4, 1, 2)     # tests/test_miri.py has more
    out, reason = subtract_reference_pixels(data, np.zeros((16, 16), np.uint32), full)
    assert reason is None and np.array_equal(out, data)


# --------------------------------------------------------------------------------------------
# parity with jwst 3.0 (jwst.refpix.reference_pixels.correct_model)
# --------------------------------------------------------------------------------------------
CONV = {"refpix_algorithm": "median", "sirs_kernel_model": None, "sigreject": 4.0,
        "gaussmooth": 1.0, "halfwidth": 30}


def jwst_refpix(data, pixeldq, start, fast, slow, noutputs, subarray, odd_even_columns=True,
                use_side_ref_pixels=True, side_smoothing_length=11, side_gain=1.0):
    from jwst.refpix.reference_pixels import correct_model
    from stdatamodels.jwst.datamodels import RampModel

    model = RampModel(data=data.copy(), pixeldq=pixeldq.copy(), groupdq=np.zeros(data.shape, np.uint8))
    meta = model.meta
    meta.instrument.name = "NIRCAM"
    meta.instrument.detector = "NRCA1"
    meta.exposure.noutputs = noutputs
    meta.subarray.name = subarray
    meta.subarray.xstart, meta.subarray.ystart = start[1] + 1, start[0] + 1
    meta.subarray.ysize, meta.subarray.xsize = data.shape[-2:]
    meta.subarray.fastaxis, meta.subarray.slowaxis = fast, slow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = correct_model(model, odd_even_columns, use_side_ref_pixels, side_smoothing_length,
                               side_gain, True, CONV, 3.0)
    assert status == 0
    return np.asarray(model.data)


def realistic(shape, seed, fast, slow):
    """Ramp with read noise, per-amplifier odd/even offsets, a row drift, outliers and bad refs.

    Offsets and drift are built in the detector frame and turned to the science frame.
    """
    rng = np.random.default_rng(seed)
    nints, ngroups, ny, nx = shape
    det = rng.normal(0.0, 6.0, shape).astype(np.float32)                 # read noise [DN]
    namp, width = 4, nx // 4
    for amp in range(namp):
        for parity in range(2):
            det[..., amp * width + parity:(amp + 1) * width:2] += rng.normal(0, 15, (nints, ngroups, 1, 1))
    det += rng.normal(0, 2.0, (nints, ngroups, ny, 1)).astype(np.float32)   # row-correlated noise
    det += (4 * np.sin(np.arange(ny) / 97.0))[:, None].astype(np.float32)  # slow drift
    det[..., 2046, 77] += 3000.0                                             # hot reference pixels
    det[..., 100, 2] += 2500.0
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[rng.integers(0, 4, 60), rng.integers(0, nx, 60)] = DNU         # bad top/bottom refs
    pixeldq[rng.integers(0, ny, 60), rng.integers(0, 4, 60)] = DNU         # bad side refs
    pixeldq[border((ny, nx))] |= REF
    return (np.ascontiguousarray(to_science(det, fast, slow)),
            np.ascontiguousarray(to_science(pixeldq, fast, slow)))


@pytest.mark.parity
@pytest.mark.parametrize("fast,slow,options", [
    (-1, 2, {}),                                                             # NRCA1-like
    (2, 1, {"odd_even_columns": False, "side_smoothing_length": 10, "side_gain": 0.8}),  # NRS-like
])
def test_refpix_full_frame_matches_jwst(fast, slow, options):
    data, pixeldq = realistic((1, 2, 2048, 2048), 11, fast, slow)
    expect = jwst_refpix(data, pixeldq, (0, 0), fast, slow, 4, "FULL", **options)
    got, reason = subtract_reference_pixels(data, pixeldq, nir((2048, 2048), fast=fast, slow=slow),
                                            **options)
    assert reason is None
    diff = np.abs(got.astype(np.float64) - expect)
    print(f"refpix full frame FASTAXIS={fast}: max |detcal - jwst| = {diff.max():.3g} DN")
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parity
def test_refpix_full_frame_without_side_pixels_matches_jwst():
    data, pixeldq = realistic((2, 2, 2048, 2048), 12, 1, 2)
    expect = jwst_refpix(data, pixeldq, (0, 0), 1, 2, 4, "FULL", use_side_ref_pixels=False)
    got, _ = subtract_reference_pixels(data, pixeldq, nir((2048, 2048)), use_side_ref_pixels=False)
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parity
@pytest.mark.parametrize("shape,start,fast,slow,noutputs,name", [
    ((64, 64), (0, 0), -1, 2, 1, "SUB64P"),             # corner: bottom rows + side columns
    ((64, 64), (1984, 1984), 1, -2, 1, "SUB64P"),       # opposite corner, flipped slow axis
    ((64, 64), (0, 1983), 2, 1, 1, "SUB64P"),           # odd start column, swapped axes
    ((64, 2048), (0, 0), -1, 2, 4, "SUBGRISM64"),       # 4-output stripe: window truncated at its top
    ((128, 2048), (900, 0), 1, 2, 4, "SUBGRISM128"),    # stripe with side pixels only
])
def test_refpix_subarrays_match_jwst(shape, start, fast, slow, noutputs, name):
    rng = np.random.default_rng(5)
    ny, nx = shape
    data = (rng.normal(0, 5, (2, 3, ny, nx)) + rng.normal(0, 30, (2, 3, 1, 1))).astype(np.float32)
    data[..., ::2] += 7.0
    pixeldq = np.zeros(shape, np.uint32)
    full = border((2048, 2048))
    pixeldq[full[start[0]:start[0] + ny, start[1]:start[1] + nx]] |= REF
    pixeldq[rng.integers(0, ny, 10), rng.integers(0, nx, 10)] |= DNU
    expect = jwst_refpix(data, pixeldq, start, fast, slow, noutputs, name)
    got, reason = subtract_reference_pixels(data, pixeldq, nir(shape, start, noutputs=noutputs,
                                                                fast=fast, slow=slow), subarray=name)
    assert np.any(got != data)
    print(f"refpix {name} at {start}: max |detcal - jwst| = "
          f"{np.abs(got.astype(np.float64) - expect).max():.3g} DN ({reason})")
    np.testing.assert_array_equal(got, expect)
    inplace, _ = subtract_reference_pixels(data, pixeldq, nir(shape, start, noutputs=noutputs, fast=fast,
                                                              slow=slow), subarray=name, out=data)
    assert inplace is data                                        # in place, as run() calls it
    np.testing.assert_array_equal(inplace, expect)
