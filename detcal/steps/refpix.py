"""Reference-pixel correction (jwst ``refpix``, the NIR "median" algorithm).

What it does (jwst 3.0 ``jwst/refpix/reference_pixels.py``; see
``research/jwst_algorithms.md`` section 5), in the detector frame (``Geometry.to_detector``):

* **4-output data** (full frames, mini full frames, and subarrays with NOUTPUTS=4), every
  integration and every group including group 0:

  1. *Top/bottom.* For each amplifier (column stripe of width ``nx / NOUTPUTS``, from
     :class:`detcal.geometry.Geometry`) and each edge (the 4 bottom and the 4 top rows of the full
     frame), the sigma-clipped mean (:func:`clipped_means`) of the reference pixels in the "odd"
     columns (even 0-based index counted from the amplifier's first column) and in the "even"
     columns. Top and bottom are averaged (or whichever exists). If both parities have a value,
     they are subtracted from every row of their columns of the amplifier; otherwise the amplifier
     is left uncorrected. ``odd_even_columns=False``: one mean over all columns.
  2. *Sides.* On the top/bottom-corrected group, a running median over ``side_smoothing_length``
     rows (reflected at the frame edges, jwst padding) of the 4 left and the 4 right reference
     columns; left and right are averaged (or whichever exists, or 0), multiplied by
     ``side_gain`` and subtracted from every column of its row.

* **1-output subarrays** (NOUTPUTS=1): the reference pixels are those whose PIXELDQ has
  REFERENCE_PIXEL and not DO_NOT_USE (NIRSpec SUB512/SUB512S/SUB32 also get their first and
  last 4 columns, as jwst). One clipped mean per column parity (full-frame detector column index
  even/odd), subtracted from all columns of that parity; no side correction. No reference
  pixels: nothing is done, and the reason is returned.

* **MIRI full frame** (1024 x 1032, or a mini full frame of its own size; jwst
  ``MIRIDataset.do_fullframe_corrections``, research section 5c), no orientation change (the DMS
  and detector frames coincide), per integration:

  1. the first read is subtracted from every group (result rounded to float32, as jwst stores it);
  2. for every group after the first and every output k (columns ``k::4``, from
     :class:`detcal.geometry.Geometry`): the clipped means (:func:`clipped_means`) of the left
     reference column k and of the right one ``nx - 4 + k``, separately for the rows ``0::2``
     and ``1::2`` (``odd_even_rows=True``) or over all rows; the average of left and right is
     subtracted from those rows of every column of the output (reference columns included);
  3. the first read is added back, so group 0 is unchanged.

  If any of those means has no usable (not DO_NOT_USE) reference pixel, jwst warns and breaks
  out of its group loop and, because its flag is never reset, corrects no later integration
  either. The flag depends only on PIXELDQ, so the net effect is that nothing is corrected
  (except the float32 round trip of steps 1 and 3); detcal does exactly that and says why.
  MIRI subarrays are skipped (as jwst) with that reason.

* **ZEROFRAME** (level-1b, ZEROFRAM = T): corrected after the science frames exactly as one more
  group per integration, with the same PIXELDQ (jwst ``process_zeroframe_correction``); its 0
  values ("no value") stay 0. In the 4-output case with side pixels jwst's work buffer is then
  already float64, so every ZEROFRAME integration is corrected in float64.

Reference pixels outside the array (subarrays) do not exist; a subarray is treated exactly as
jwst treats it, i.e. as embedded in a full frame whose reference pixels outside the data are
DO_NOT_USE (so a running-median window is truncated at the subarray's edge, and reflected at the
full frame's edge).

Bit-level parity with jwst 3.0
------------------------------
The arithmetic reproduces jwst's dtypes, which are not uniform:

* the clipped mean is ``scipy.stats.sigmaclip(v, siglimit, siglimit)`` followed by ``.mean()``
  in the dtype of the work buffer; when the good reference values are all equal jwst returns
  their float64 mean instead (float64 then propagates through the top/bottom average);
* jwst's work buffer is float32 for the first frame (integration 0, group 0) and **float64 for
  every later frame when ``use_side_ref_pixels`` is on**, because the side correction replaces
  the buffer by a float64 array that is then reused. So frame 0 is corrected in float32 (one
  rounding after the top/bottom correction, float32 medians) and later frames in float64 (one
  rounding at the end). With ``use_side_ref_pixels=False`` every frame is float32. detcal does
  the same, so the results are bit-identical; the difference between the two precisions is of
  order 1e-6 DN.

MIRI: jwst's work buffer is float32; a clipped mean is float32 (float64 when its good values are
all equal); the left/right average is float32 unless one of them is float64, and the subtraction
happens in that precision; the first read is subtracted and added back in float64 with float32
storage. detcal reproduces each of these, so the MIRI results are bit-identical as well.

Deliberate differences from jwst (all in cases where jwst fails or has no defined result):
jwst raises a TypeError when a 1-output subarray has reference pixels of only one column
parity; detcal leaves the frame uncorrected and says so. jwst fails for
``side_smoothing_length=1`` or windows longer than the frame; detcal reflects as
``numpy.pad(mode='reflect')``. jwst's 4-output code is hard-wired to 2048x2048; detcal takes the
amplifier widths from the geometry, so mini full frames (e.g. 256x256, amplifiers 64 wide) work.
The NIRSpec IRS2 readout (refused when a ramp is read: detcal.keywords.check_supported_readout)
and the 'sirs' side algorithm are not covered.
"""

import logging

import numpy as np

from .. import dqflags
from ..geometry import MIRI_NOUTPUTS, MIRI_REF_COLUMNS, NREF, to_detector
from .descriptor import Param, Step
from .guards import owned

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="refpix", description="Reference-pixel correction",
    position={"NIR": 40, "MIRI": 80}, cal_step="S_REFPIX", suffix="refpixstep",
    keywords=("NOUTPUTS", "FASTAXIS", "SLOWAXIS"),
    parameters={
        "odd_even_columns": Param(True, "NIR: separate reference means for even and odd columns"),
        "use_side_ref_pixels": Param(True, "NIR: subtract the smoothed side reference-pixel signal (1/f "
                                           "along rows)"),
        "side_smoothing_length": Param(11, "NIR: rows in the running median of the side reference pixels",
                                       {"minimum": 1}),
        "side_gain": Param(1.0, "NIR: factor applied to the side reference signal before subtraction"),
        "odd_even_rows": Param(True, "MIRI: separate reference means for even and odd rows"),
    })

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: jwst's NIRSpec subarrays without reference pixels, whose first/last 4 columns are used.
NRS_EDGELESS_SUBARRAYS = ("SUB512", "SUB512S", "SUB32")

log = logging.getLogger("detcal.refpix")

_DNU = np.uint32(dqflags.DO_NOT_USE)
_REF = np.uint32(dqflags.REFERENCE_PIXEL)
_ROW_CHUNK = 32      # rows per block when applying corrections (float64 work rows stay in the cache)
_FRAME_CHUNK = 32    # frames per block in the running median


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def clipped_means(values, good, siglimit=3.0):
    """Sigma-clipped means of many vectors at once, bit-identical to jwst's ``sigma_clip``.

    For each row ``v = values[b][good[b]]`` (kept in order): if ``v`` is empty the result is
    invalid; if ``np.std(v, dtype=float64) == 0`` the result is ``v.mean(dtype=float64)``
    ("wide"); otherwise it is ``scipy.stats.sigmaclip(v, siglimit, siglimit)[0].mean()`` computed
    in the dtype of ``values`` (iterate ``mean +- siglimit*std`` with inclusive bounds until
    nothing more is removed). Rows are processed together whenever they have the same number of
    surviving values, which gives exactly numpy's 1-D results (row reductions are pairwise like
    1-D ones).

    Parameters
    ----------
    values : ndarray, float32 or float64, shape (nvec, n)       [DN]
    good : ndarray, bool, shape (nvec, n) or (n,)                True where a value may be used
    siglimit : float                                              clipping limit in sigma

    Returns
    -------
    mean : ndarray, float64, shape (nvec,)   the clipped mean (a float32 value unless ``wide``);
                                             NaN where invalid
    wide : ndarray, bool, shape (nvec,)      True where jwst's result is a float64 (std == 0)
    valid : ndarray, bool, shape (nvec,)     False where there was no good value
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (nvec, n), got shape {values.shape}")
    good = np.broadcast_to(np.asarray(good, bool), values.shape)
    siglimit = float(siglimit)   # a Python float keeps the arithmetic in the values' dtype
    nvec = values.shape[0]
    mean = np.full(nvec, np.nan)
    count = good.sum(axis=1)
    valid = count > 0
    # std == 0 (all good values equal): jwst returns the float64 mean, i.e. that value.
    with np.errstate(invalid="ignore"):
        lo = np.where(good, values, np.inf).min(axis=1, initial=np.inf)
        hi = np.where(good, values, -np.inf).max(axis=1, initial=-np.inf)
    wide = valid & (lo == hi) & np.isfinite(lo)
    mean[wide] = lo[wide]

    kept = good.copy()
    active = valid & ~wide
    lengths = count.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        while active.any():
            snapshot = lengths.copy()
            for length in np.unique(snapshot[active]):
                rows = np.flatnonzero(active & (snapshot == length))
                if length == 0:          # everything clipped (only with NaN values): mean of nothing
                    active[rows] = False
                    continue
                v = values[rows]
                k = kept[rows]
                c = v[k].reshape(len(rows), length)
                m = c.mean(axis=1)
                s = c.std(axis=1)
                low = m - s * siglimit
                high = m + s * siglimit
                k &= (v >= low[:, None]) & (v <= high[:, None])
                new = k.sum(axis=1)
                done = new == length
                mean[rows[done]] = m[done]
                active[rows[done]] = False
                kept[rows] = k
                lengths[rows] = new
    return mean, wide, valid


def _average_with_none(a, b):
    """jwst ``average_with_none`` on arrays of (mean, wide, valid) triples, with jwst's dtypes."""
    (va, wa, oka), (vb, wb, okb) = a, b
    both = oka & okb
    with np.errstate(invalid="ignore"):
        narrow = ((va.astype(np.float32) + vb.astype(np.float32)) * np.float32(0.5)).astype(np.float64)
        wide64 = 0.5 * (va + vb)
    avg = np.where(wa | wb, wide64, narrow)
    value = np.where(both, avg, np.where(oka, va, vb))
    wide = np.where(both, wa | wb, np.where(oka, wa, wb))
    return value, wide, oka | okb


def _reflect(index, n):
    """Reflect integer indices into [0, n) without repeating the edge (numpy 'reflect')."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index > n - 1, period - index, index)


def window_rows(ny, length, row0=0, full_ny=None):
    """Source rows of jwst's running-median windows.

    Window ``i`` covers the reflected full-frame rows ``row0 + i - h .. row0 + i - h + length - 1``
    with ``h = length // 2`` (for an even ``length`` jwst pads as for ``length + 1`` but keeps the
    window ``length`` rows long). Rows outside the array (a subarray starting at full-frame row
    ``row0`` of a ``full_ny``-row frame) are -1.

    Returns
    -------
    ndarray, int, shape (ny, length): row index into the array, or -1
    """
    full_ny = ny if full_ny is None else full_ny
    h = length // 2
    q = row0 + np.arange(ny)[:, None] - h + np.arange(length)[None, :]
    src = _reflect(q, full_ny) - row0
    return np.where((src >= 0) & (src < ny), src, -1)


def running_median(block, good, src):
    """jwst's side-pixel running median of several frames at once.

    Parameters
    ----------
    block : ndarray, float32 or float64, shape (nframes, ny, ncols)   [DN] side reference columns
    good : ndarray, bool, shape (ny, ncols)         pixels that may be used (not DO_NOT_USE)
    src : ndarray, int, shape (ny, L)               window rows, from :func:`window_rows`

    Returns
    -------
    ndarray, float64, shape (nframes, ny): ``np.median`` of the good pixels of each window,
    computed in the dtype of ``block`` (the mean of the two middle values for an even count);
    NaN where a window has no good pixel or a good NaN.
    """
    nframes, ny, ncols = block.shape
    L = src.shape[1]
    out = np.full((nframes, ny), np.nan)
    if ncols == 0 or nframes == 0:
        return out
    rows = np.clip(src, 0, None)
    mask = good[rows] & (src >= 0)[:, :, None]                 # (ny, L, ncols)
    mask = mask.reshape(ny, L * ncols)
    n = mask.sum(axis=1)
    k1 = np.clip((n - 1) // 2, 0, None)[None, :, None]
    k2 = np.clip(n // 2, 0, L * ncols - 1)[None, :, None]
    two = block.dtype.type(2)
    for f0 in range(0, nframes, _FRAME_CHUNK):
        vals = block[f0:f0 + _FRAME_CHUNK][:, rows, :].reshape(-1, ny, L * ncols)
        hasnan = (np.isnan(vals) & mask).any(axis=2)
        vals = np.where(mask, vals, np.inf)
        vals.sort(axis=2)
        s1 = np.take_along_axis(vals, k1, axis=2)[..., 0]
        s2 = np.take_along_axis(vals, k2, axis=2)[..., 0]
        with np.errstate(invalid="ignore", over="ignore"):
            med = np.where((n % 2 == 1)[None, :], s2, (s1 + s2) / two)
        med = med.astype(np.float64)
        med[:, n == 0] = np.nan
        med[hasnan] = np.nan
        out[f0:f0 + _FRAME_CHUNK] = med
    return out


def _combine_with_nans(a, b):
    """Average of two side signals, or whichever is not NaN, or 0 (jwst ``combine_with_nans``)."""
    na, nb = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        out = 0.5 * (a + b)
    out = np.where(na & ~nb, b, out)
    out = np.where(nb & ~na, a, out)
    return np.where(na & nb, 0.0, out)


def detector_window(geom):
    """Where the array sits in the full frame, in the detector frame.

    Returns
    -------
    (row0, col0, (full_ny, full_nx)): offsets of the detector-frame array in the detector-frame
    full frame, and that full frame's shape.
    """
    inside = np.zeros(geom.full_shape, bool)
    y0, x0 = geom.start
    inside[y0:y0 + geom.shape[0], x0:x0 + geom.shape[1]] = True
    det = to_detector(inside, geom.fastaxis, geom.slowaxis)
    rows = np.flatnonzero(det.any(axis=1))
    cols = np.flatnonzero(det.any(axis=0))
    return int(rows[0]), int(cols[0]), det.shape


# --------------------------------------------------------------------------------------------
# NIR, 4 outputs
# --------------------------------------------------------------------------------------------
def _frames(nints, ngroups):
    return [(i, g) for i in range(nints) for g in range(ngroups)]


def _edge_rows(row0, ny, full_ny):
    """Array rows of the bottom and top reference rows (full-frame rows [0,4) and [N-4,N))."""
    edges = {}
    for name, (a, b) in (("bottom", (0, NREF)), ("top", (full_ny - NREF, full_ny))):
        lo, hi = max(a - row0, 0), min(b - row0, ny)
        if hi > lo:
            edges[name] = np.arange(lo, hi)
    return edges


def _nir_multi_output(src, dst, dq, geom, odd_even_columns, use_side_ref_pixels,
                      side_smoothing_length, side_gain, siglimit, zeroframe_pass=False):
    """4-output correction of detector-frame views ``src`` -> ``dst``; returns a reason or None."""
    nints, ngroups, ny, nx = src.shape
    frames = _frames(nints, ngroups)
    nfr = len(frames)
    row0, col0, (full_ny, full_nx) = detector_window(geom)
    amps = to_detector(geom.amplifier_map(), geom.fastaxis, geom.slowaxis)[0]
    full_amps = to_detector(geom.full_frame_amplifier_map(), geom.fastaxis, geom.slowaxis)[0]
    amp_start = {int(k): int(np.flatnonzero(full_amps == k)[0]) for k in np.unique(full_amps)}
    good_dq = (dq & _DNU) == 0
    # jwst's work-buffer precision: frame 0 in float32, later frames in float64 with side pixels.
    # In the ZEROFRAME pass jwst reuses the buffer of the science frames: float64 from the start.
    wide_frame = np.zeros(nfr, bool)
    if use_side_ref_pixels:
        wide_frame[0 if zeroframe_pass else 1:] = True

    # ---- top/bottom clipped means: one vector per (frame, edge, amp, parity) ----------------
    edges = _edge_rows(row0, ny, full_ny)
    combos = []       # (edge, amp, parity or None, columns)
    for edge in edges:
        for amp in np.unique(amps):
            cols = np.flatnonzero(amps == amp)
            if odd_even_columns:
                rel = (col0 + cols - amp_start[int(amp)]) % 2
                combos.append((edge, int(amp), "odd", cols[rel == 0]))
                combos.append((edge, int(amp), "even", cols[rel == 1]))
            else:
                combos.append((edge, int(amp), None, cols))
    corr = np.zeros((nfr, nx))
    n_uncorrected = 0
    n_refs = 0
    if combos:
        nmax = max(len(edges[e]) * len(c) for e, _, _, c in combos)
        values = np.zeros((len(combos), nfr, nmax), np.float32)
        good = np.zeros((len(combos), nfr, nmax), bool)
        for j, (edge, _, _, cols) in enumerate(combos):
            rows = edges[edge]
            n = len(rows) * len(cols)
            values[j, :, :n] = src[:, :, rows][..., cols].reshape(nfr, n)
            good[j, :, :n] = good_dq[np.ix_(rows, cols)].ravel()
            n_refs += int(good[j, 0, :n].sum())
        mean = np.full((len(combos), nfr), np.nan)
        wide = np.zeros((len(combos), nfr), bool)
        ok = np.zeros((len(combos), nfr), bool)
        for is_wide, dtype in ((False, np.float32), (True, np.float64)):
            sel = wide_frame == is_wide
            if not sel.any():
                continue
            v = values[:, sel].reshape(-1, nmax).astype(dtype)
            m, w, o = clipped_means(v, good[:, sel].reshape(-1, nmax), siglimit)
            mean[:, sel] = m.reshape(len(combos), -1)
            wide[:, sel] = w.reshape(len(combos), -1) | is_wide
            ok[:, sel] = o.reshape(len(combos), -1)
        index = {(e, a, p): j for j, (e, a, p, _) in enumerate(combos)}
        missing = (np.full(nfr, np.nan), np.zeros(nfr, bool), np.zeros(nfr, bool))

        def ref(amp, parity):
            per_edge = [(mean[index[k]], wide[index[k]], ok[index[k]]) if k in index else missing
                        for k in (("top", amp, parity), ("bottom", amp, parity))]
            return _average_with_none(*per_edge)

        for amp in np.unique(amps):
            amp = int(amp)
            cols = np.flatnonzero(amps == amp)
            if odd_even_columns:
                rel = (col0 + cols - amp_start[amp]) % 2
                (vo, _, oko), (ve, _, oke) = ref(amp, "odd"), ref(amp, "even")
                use = oko & oke
                corr[np.ix_(use, cols[rel == 0])] = vo[use, None]
                corr[np.ix_(use, cols[rel == 1])] = ve[use, None]
            else:
                v, _, use = ref(amp, None)
                corr[np.ix_(use, cols)] = v[use, None]
            n_uncorrected += int((~use).sum())

    # ---- side reference pixels: running median of the top/bottom-corrected columns ----------
    side = None
    n_side = 0
    if use_side_ref_pixels:
        src_rows = window_rows(ny, side_smoothing_length, row0, full_ny)
        signals = []
        for a, b in ((0, NREF), (full_nx - NREF, full_nx)):
            cols = np.arange(max(a - col0, 0), min(b - col0, nx))
            block = np.empty((nfr, ny, len(cols)))
            for f, (i, g) in enumerate(frames):
                block[f] = src[i, g][:, cols]
            block -= corr[:, None, cols]
            sig = np.full((nfr, ny), np.nan)
            good_side = good_dq[:, cols]
            n_side += int(good_side.sum())
            for is_wide, dtype in ((False, np.float32), (True, np.float64)):
                sel = wide_frame == is_wide
                if sel.any():
                    sig[sel] = running_median(block[sel].astype(dtype), good_side, src_rows)
            signals.append(sig)
        side = float(side_gain) * _combine_with_nans(*signals)

    if n_refs == 0 and n_side == 0:
        dst[...] = src
        return "no usable reference pixels (top/bottom or side): data left unchanged"

    # ---- apply, row block by row block ------------------------------------------------------
    # Each ufunc computes in float64 (an operand is float64) and rounds once into its output:
    # a float64 block for jwst's float64 work buffer, a float32 one for its float32 buffer.
    chunk = min(_ROW_CHUNK, ny)
    work = {np.float64: np.empty((chunk, nx)), np.float32: np.empty((chunk, nx), np.float32)}
    for f, (i, g) in enumerate(frames):
        c = corr[f]
        c32 = c.astype(np.float32)
        if side is None and not wide_frame[f] and np.array_equal(c32, c):
            # float32 corrections: float32 arithmetic gives the same correctly rounded result
            np.subtract(src[i, g], c32, out=dst[i, g])
            continue
        for r in range(0, ny, _ROW_CHUNK):
            rows = slice(r, r + _ROW_CHUNK)
            if side is None:
                np.subtract(src[i, g, rows], c, out=dst[i, g, rows])
                continue
            tmp = work[np.float64 if wide_frame[f] else np.float32][:dst[i, g, rows].shape[0]]
            np.subtract(src[i, g, rows], c, out=tmp)
            np.subtract(tmp, side[f, rows, None], out=dst[i, g, rows])
    if n_refs == 0:
        return "no usable top/bottom reference pixels: only the side correction was applied"
    if n_uncorrected:
        return (f"top/bottom reference pixels unusable in {n_uncorrected} amplifier-frame(s): "
                "those amplifiers were not offset-corrected there")
    return None


# --------------------------------------------------------------------------------------------
# NIR, 1 output (subarrays)
# --------------------------------------------------------------------------------------------
def _nir_single_output(src, dst, dq, geom, odd_even_columns, siglimit):
    nints, ngroups, ny, nx = src.shape
    frames = _frames(nints, ngroups)
    _, col0, _ = detector_window(geom)
    refmask = ((dq & _REF) != 0) & ((dq & _DNU) == 0)
    if not refmask.any():
        dst[...] = src
        return ("subarray has no reference pixels (no pixel with REFERENCE_PIXEL and without "
                "DO_NOT_USE): data left unchanged")
    even_col = ((col0 + np.arange(nx)) % 2 == 0)[None, :]
    if odd_even_columns:
        sets = [("even", refmask & even_col, even_col[0]), ("odd", refmask & ~even_col, ~even_col[0])]
    else:
        sets = [("all", refmask, np.ones(nx, bool))]
    corr = np.zeros((len(frames), nx))
    use = np.ones(len(frames), bool)
    missing = []
    for name, mask, cols in sets:
        n = int(mask.sum())
        if n == 0:
            use[:] = False
            missing.append(name)
            continue
        values = np.empty((len(frames), n), np.float32)
        for f, (i, g) in enumerate(frames):
            values[f] = src[i, g][mask]
        m, _, _ = clipped_means(values, np.ones(n, bool), siglimit)
        corr[:, cols] = m[:, None]
    for f, (i, g) in enumerate(frames):
        if use[f]:
            dst[i, g] = src[i, g].astype(np.float64) - corr[f]
        else:
            dst[i, g] = src[i, g]
    if missing:
        return (f"no reference pixels in the {' and '.join(missing)} columns: data left unchanged "
                "(jwst would fail here)")
    return None


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
def _nir(data, pixeldq, geom, odd_even_columns, use_side_ref_pixels, side_smoothing_length,
         side_gain, odd_even_rows, siglimit, subarray, zeroframe_pass=False, out=None):
    del odd_even_rows  # MIRI only
    # out may be data: every reference value is gathered before the first frame is written
    out = np.empty_like(data) if out is None else out
    src = to_detector(data, geom.fastaxis, geom.slowaxis)
    dst = to_detector(out, geom.fastaxis, geom.slowaxis)
    if geom.is_full_frame or geom.noutputs != 1:
        dq = to_detector(pixeldq, geom.fastaxis, geom.slowaxis)
        reason = _nir_multi_output(src, dst, dq, geom, odd_even_columns, use_side_ref_pixels,
                                   side_smoothing_length, side_gain, siglimit, zeroframe_pass)
    else:
        pdq = pixeldq.copy()
        if subarray is not None and str(subarray).strip().upper() in NRS_EDGELESS_SUBARRAYS:
            pdq[:, :NREF] |= _REF
            pdq[:, -NREF:] |= _REF
        dq = to_detector(pdq, geom.fastaxis, geom.slowaxis)
        reason = _nir_single_output(src, dst, dq, geom, odd_even_columns, siglimit)
    return out, reason


def miri_reference_sets(ny, nx, odd_even_rows):
    """The MIRI reference-pixel sets: [(output, side, rows)] with ``rows`` a slice.

    Output k's left reference column is k, its right one ``nx - 4 + k`` (jwst
    ``MIR_reference_sections`` for 1032 columns); ``rows`` is ``0::2`` / ``1::2`` with
    ``odd_even_rows`` (jwst's "odd" and "even" rows, 1-based), else all rows.
    """
    return [(k, side, rows) for k in range(MIRI_NOUTPUTS) for side in ("left", "right")
            for rows in _miri_row_sets(ny, odd_even_rows)]


def _miri_row_sets(ny, odd_even_rows):
    return [slice(0, ny, 2), slice(1, ny, 2)] if odd_even_rows else [slice(0, ny)]


#: Rows per block of the MIRI full-frame pass (a multiple of 2, so that the row sets ``0::2`` and
#: ``1::2`` keep their parity inside a block): the block's first read (float64) and its rows stay
#: in the CPU cache through the subtract - correct - add of every group, so each value of the
#: ramp is read and written once.
MIRI_BLOCK_ROWS = 32


def _miri_full_frame(data, pixeldq, odd_even_rows, siglimit, out=None):
    """MIRI full-frame correction (module docstring); returns (corrected data, reason or None).
    ``out`` may be ``data``: a block's first read is copied before the block is written.

    The reference columns are taken first (first read subtracted with the frame pass's
    arithmetic), then every group of a block of rows is corrected in one pass."""
    nints, ngroups, ny, nx = data.shape
    out = np.empty_like(data) if out is None else out
    good_dq = (pixeldq & _DNU) == 0
    sets = miri_reference_sets(ny, nx, odd_even_rows)
    column = {("left", k): k for k in range(MIRI_NOUTPUTS)}
    column.update({("right", k): nx - MIRI_REF_COLUMNS + k for k in range(MIRI_NOUTPUTS)})
    nmax = max(len(range(*rows.indices(ny))) for _, _, rows in sets)
    good = np.zeros((len(sets), nmax), bool)
    for j, (k, side, rows) in enumerate(sets):
        g = good_dq[rows, column[side, k]]
        good[j, :g.size] = g
    missing = [f"output {k} {side} column {column[side, k]}"
               + ("" if not odd_even_rows else f" rows {rows.start}::2")
               for j, (k, side, rows) in enumerate(sets) if not good[j].any()]
    reason = None
    if missing and ngroups > 1:
        reason = ("MIRI reference columns without a usable (not DO_NOT_USE) pixel: "
                  f"{'; '.join(missing)}: no group corrected (jwst stops at the first group)")
    row_sets = _miri_row_sets(ny, odd_even_rows)
    nrs = len(row_sets)
    ref_columns = sorted(set(column.values()))
    at = {c: n for n, c in enumerate(ref_columns)}
    correct = ngroups > 1 and not missing
    step = max(nrs, MIRI_BLOCK_ROWS - MIRI_BLOCK_ROWS % nrs)
    for i in range(nints):
        if correct:
            values, wides = _miri_group_values(data[i], ref_columns, at, sets, column, good, nmax,
                                               row_sets, siglimit)
            # the (row set, output) pattern as whole rows: contiguous broadcasts over a block
            rows32 = np.tile(values.astype(np.float32), nx // MIRI_NOUTPUTS)
            rows64 = np.tile(values, nx // MIRI_NOUTPUTS) if wides.any() else None
        for y0 in range(0, ny, step):
            y1 = min(ny, y0 + step)
            # jwst: data[i] = data[i] - first_read (float64, stored as float32), the corrections,
            # then data[i] += first_read (float64, stored as float32). Both operands are float32,
            # and for + and - the float64 result rounded to float32 is the float32 result bit
            # for bit (53 >= 2 x 24 + 2 bits: double rounding is innocuous), so float32 it is.
            first = data[i, 0, y0:y1].copy()
            for g in range(ngroups):
                block = out[i, g, y0:y1]
                np.subtract(data[i, g, y0:y1], first, out=block)
                if correct and g > 0:
                    _miri_subtract(block, values[g - 1], wides[g - 1], nrs, rows32[g - 1],
                                   None if rows64 is None else rows64[g - 1])
                np.add(block, first, out=block)
    return out, reason


def _miri_group_values(frames, ref_columns, at, sets, column, good, nmax, row_sets, siglimit):
    """Value and width (float32 or float64) to subtract per (group after the first, row set,
    output) of one integration ``frames`` (ngroups, ny, nx): the average of the left and right
    clipped means of the reference columns after the first-read subtraction."""
    ngroups = frames.shape[0]
    first = frames[0][:, ref_columns].astype(np.float64)
    diff = np.empty((ngroups - 1, frames.shape[1], len(ref_columns)), np.float32)
    np.subtract(frames[1:][:, :, ref_columns], first, out=diff)   # float64, stored as float32
    values = np.zeros((ngroups - 1, len(sets), nmax), np.float32)
    for j, (k, side, rows) in enumerate(sets):
        v = diff[:, rows, at[column[side, k]]]
        values[:, j, :v.shape[1]] = v
    flat = values.reshape(-1, nmax)
    mean, wide, _ = clipped_means(flat, np.broadcast_to(good, values.shape).reshape(-1, nmax), siglimit)
    mean = mean.reshape(ngroups - 1, len(sets))
    wide = wide.reshape(ngroups - 1, len(sets))
    index = {(k, side, rows.start): j for j, (k, side, rows) in enumerate(sets)}
    ok = np.ones(ngroups - 1, bool)
    # value and width per (group, row set, output): a (row set, output) pattern that repeats over
    # the frame (rows alternate with odd_even_rows, outputs every 4 columns)
    out = np.zeros((ngroups - 1, len(row_sets), MIRI_NOUTPUTS))
    wides = np.zeros(out.shape, bool)
    for k in range(MIRI_NOUTPUTS):
        for r, rows in enumerate(row_sets):
            jl, jr = index[k, "left", rows.start], index[k, "right", rows.start]
            value, is_wide, _ = _average_with_none((mean[:, jl], wide[:, jl], ok),
                                                   (mean[:, jr], wide[:, jr], ok))
            out[:, r, k], wides[:, r, k] = value, is_wide
    return out, wides


def _miri_subtract(block, v, w, nrs, rows32, rows64):
    """Subtract the (row set, output) values ``v`` (float64 where ``w``, else float32 arithmetic)
    from a block of rows (rows, nx) whose first row is in row set 0 (in place). ``rows32``,
    ``rows64``: the values as whole rows (nrs, nx), float32 and float64 (None if not needed)."""
    rows, nx = block.shape
    if rows % nrs == 0 and (w.all() or not w.any()):      # one broadcast over the block
        tiles = block.reshape(rows // nrs, nrs, nx)
        if w.all():
            np.subtract(tiles, rows64, out=tiles, dtype=np.float64)
        else:
            np.subtract(tiles, rows32, out=tiles)
        return
    for k in range(MIRI_NOUTPUTS):
        for r in range(nrs):
            part = block[r::nrs, k::MIRI_NOUTPUTS]     # a view: corrected in place
            if w[r, k]:
                np.subtract(part, np.float64(v[r, k]), out=part, dtype=np.float64)
            else:
                np.subtract(part, np.float32(v[r, k]), out=part)


def _miri(data, pixeldq, geom, odd_even_columns, use_side_ref_pixels, side_smoothing_length,
          side_gain, odd_even_rows, siglimit, subarray, out=None):
    del odd_even_columns, use_side_ref_pixels, side_smoothing_length, side_gain  # NIR only
    if not geom.is_full_frame:
        if out is None:
            out = data.copy()
        elif out is not data:
            out[...] = data
        return out, "MIRI subarray: reference-pixel correction skipped (as jwst)"
    if geom.shape[1] % MIRI_NOUTPUTS or geom.shape[1] < 2 * MIRI_REF_COLUMNS:
        raise ValueError(f"a MIRI full frame needs a multiple of {MIRI_NOUTPUTS} columns including "
                         f"{MIRI_REF_COLUMNS} reference columns a side, got {geom.shape[1]}")
    return _miri_full_frame(data, pixeldq, odd_even_rows, siglimit, out)


def _zeroframe_pass(zeroframe, pixeldq, geom, reasons, params):
    """The ZEROFRAME (nints, ny, nx) corrected as jwst's ``process_zeroframe_correction`` does."""
    out, reason = subtract_reference_pixels(zeroframe[:, None], pixeldq, geom, zeroframe_pass=True,
                                            **params)
    reasons.append(reason)
    return out[:, 0]


#: Instrument family -> implementation.
_FAMILY = {"NIR": _nir, "MIRI": _miri}


def subtract_reference_pixels(data, pixeldq, geom, odd_even_columns=True, use_side_ref_pixels=True,
                              side_smoothing_length=11, side_gain=1.0, odd_even_rows=True,
                              siglimit=3.0, subarray=None, zeroframe_pass=False, out=None):
    """Correct bias drifts with the reference pixels (jwst ``refpix``, see the module docstring).

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   [DN], science frame; not modified
    pixeldq : ndarray, uint32, shape (ny, nx)                  DO_NOT_USE excludes a reference pixel;
                                                               REFERENCE_PIXEL marks them (1-output)
    geom : detcal.geometry.Geometry                            orientation, outputs, subarray place
    odd_even_columns : bool                                    separate odd/even column offsets
    use_side_ref_pixels : bool                                 side (row drift) correction (4-output)
    side_smoothing_length : int                                rows in the running median (>= 1)
    side_gain : float                                          factor on the side signal
    odd_even_rows : bool                                       MIRI: separate offsets for the
                                                               rows 0::2 and 1::2; ignored for NIR
    siglimit : float                                           clipping limit of the means [sigma]
    subarray : str or None                                     SUBARRAY (NIRSpec edgeless subarrays)
    zeroframe_pass : bool                                      ``data`` is the ZEROFRAME as one
                                                               group (nints, 1, ny, nx): jwst
                                                               corrects it after the science
                                                               frames in their (float64) buffer
    out : ndarray, float32, shape of ``data``, optional        where to write the result; may be
                                                               ``data`` itself (in place)

    Returns
    -------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   corrected [DN]: ``out``, or a new
                                                               array
    reason : str or None                                       why (part of) the data were left
                                                               uncorrected; None if all was done
    """
    data = np.asarray(data)
    if data.ndim != 4:
        raise ValueError(f"data must be 4-D (nints, ngroups, ny, nx), got shape {data.shape}")
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    if out is not None and (out.shape != data.shape or out.dtype != np.float32):
        raise ValueError(f"out must be float32 of shape {data.shape}, got {out.dtype} {out.shape}")
    if tuple(pixeldq.shape) != data.shape[2:]:
        raise ValueError(f"pixeldq shape {pixeldq.shape} does not match frames {data.shape[2:]}")
    if tuple(geom.shape) != data.shape[2:]:
        raise ValueError(f"geometry shape {geom.shape} does not match frames {data.shape[2:]}")
    side_smoothing_length = int(side_smoothing_length)
    if side_smoothing_length < 1:
        raise ValueError(f"side_smoothing_length must be >= 1, got {side_smoothing_length}")
    pixeldq = np.asarray(pixeldq, np.uint32)
    extra = {"zeroframe_pass": True} if zeroframe_pass and geom.family == "NIR" else {}
    return _FAMILY[geom.family](data, pixeldq, geom, bool(odd_even_columns), bool(use_side_ref_pixels),
                                side_smoothing_length, float(side_gain), bool(odd_even_rows),
                                float(siglimit), subarray, out=out, **extra)


def run(ramp, refs=None, odd_even_columns=True, use_side_ref_pixels=True, side_smoothing_length=11,
        side_gain=1.0, odd_even_rows=True, siglimit=3.0):
    """Apply :func:`subtract_reference_pixels` to a :class:`detcal.io.Ramp` (no reference files).

    Parameters mirror the jwst RefPixStep parameters. Needs NOUTPUTS, FASTAXIS, SLOWAXIS.
    Returns the ramp with corrected ``data``; logs a one-line summary (and the reason when
    something was left uncorrected).
    """
    meta = ramp.meta("refpix")
    geom = ramp.geometry
    # in place when the ramp owns its SCI (always, read from a file): no second cube
    ramp.data, reason = subtract_reference_pixels(
        ramp.data, ramp.pixeldq, geom, odd_even_columns=odd_even_columns,
        use_side_ref_pixels=use_side_ref_pixels, side_smoothing_length=side_smoothing_length,
        side_gain=side_gain, odd_even_rows=odd_even_rows, siglimit=siglimit, subarray=meta["SUBARRAY"],
        out=owned(ramp.data, np.float32))
    if geom.family == "MIRI":
        log.info("refpix: %s %s MIRI %s, %d int x %d groups, odd_even_rows=%s%s", meta["DETECTOR"],
                 meta["SUBARRAY"], "full frame" if geom.is_full_frame else "subarray",
                 ramp.data.shape[0], ramp.data.shape[1], odd_even_rows, f"; {reason}" if reason else "")
        return ramp
    zf_reason = []
    if ramp.correct_zeroframe(lambda zf: _zeroframe_pass(zf, ramp.pixeldq, geom, zf_reason, dict(
            odd_even_columns=odd_even_columns, use_side_ref_pixels=use_side_ref_pixels,
            side_smoothing_length=side_smoothing_length, side_gain=side_gain,
            odd_even_rows=odd_even_rows, siglimit=siglimit, subarray=meta["SUBARRAY"]))):
        log.info("refpix: ZEROFRAME corrected as one more group%s",
                 f"; {zf_reason[0]}" if zf_reason and zf_reason[0] else "")
    mode = ("4-output" if (geom.is_full_frame or geom.noutputs != 1) else "1-output subarray")
    log.info("refpix: %s %s %s, %d int x %d groups, odd_even_columns=%s, side=%s (L=%d, gain=%g)%s",
             meta["DETECTOR"], meta["SUBARRAY"], mode, ramp.data.shape[0], ramp.data.shape[1],
             odd_even_columns, use_side_ref_pixels, side_smoothing_length, side_gain,
             f"; {reason}" if reason else "")
    return ramp
