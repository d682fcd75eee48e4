"""Pure array functions of the CCD dark calibration (no file I/O).

Conventions: frames are 2-D ``(ny, nx)`` arrays in ADU, float64 while processing; rows are the
slow axis, and an overscan strip spans either every row (columns to the side of the image: one
overscan value per row, the readout axis being the rows) or every column (one value per
column). Read noise is single-read (one frame), in electrons; gain in e-/ADU; exposure times in
seconds; dark rates in e-/s. The reference algorithms are ccdproc 2.5's (``subtract_overscan``,
``trim_image``, ``combine``, ``subtract_bias``, ``subtract_dark``); tests/test_ccd_parity.py
compares each function with it on the same frames.
"""

import math

import numpy as np

from ..analysis import robust

#: Bytes one frame costs per pixel inside :func:`combine` (float64 data, clip mask and
#: temporaries; ccdproc budgets 2 x 1.3 x 8 for an average, 3 x 1.3 x 8 for a median).
COMBINE_BYTES_PER_PIXEL = {"average": 2 * 1.3 * 8, "median": 3 * 1.3 * 8}


# ---- overscan and trim -------------------------------------------------------------------
def overscan_axis(section_slices, shape):
    """Axis the overscan is collapsed along: 1 (one value per row) if the strip spans every
    row, 0 (one value per column) if it spans every column; ``None`` if it spans neither."""
    rows, cols = section_slices
    ny, nx = shape
    spans_rows = rows.start == 0 and rows.stop == ny
    spans_cols = cols.start == 0 and cols.stop == nx
    if spans_rows and not spans_cols:
        return 1
    if spans_cols and not spans_rows:
        return 0
    if spans_rows and spans_cols:
        return 1
    return None


def overscan_level(data, section_slices, model="median", order=1):
    """The overscan level to subtract, one value per row (or column) along the readout axis.

    Parameters
    ----------
    data : ndarray (ny, nx) [ADU]
    section_slices : (row_slice, column_slice) of the overscan (:func:`sections.parse_section`)
    model : ``median`` | ``mean`` (collapse across the strip, ccdproc ``median=True/False``) |
        ``polynomial`` (the collapsed mean fitted with a polynomial of ``order`` in the row
        index by linear least squares, as ccdproc's ``model=Polynomial1D(order)``)
    order : int, polynomial order

    Returns
    -------
    level : ndarray float64, shape (ny, 1) or (1, nx) [ADU], broadcastable on ``data``
    """
    axis = overscan_axis(section_slices, data.shape)
    if axis is None:
        raise ValueError("the overscan section must span every row or every column")
    strip = np.asarray(data[section_slices], np.float64)
    level = np.median(strip, axis=axis) if model == "median" else np.mean(strip, axis=axis)
    if model == "polynomial":
        x = np.arange(level.size, dtype=np.float64)
        scale = max(level.size - 1, 1)
        basis = np.vander(x / scale, int(order) + 1, increasing=True)
        coef, *_ = np.linalg.lstsq(basis, level, rcond=None)
        level = basis @ coef
    elif model not in ("median", "mean"):
        raise ValueError(f"unknown overscan model {model!r}")
    return level[:, None] if axis == 1 else level[None, :]


def subtract_overscan(data, section_slices, model="median", order=1):
    """``data`` minus its overscan level (a new float64 array) and the level (see
    :func:`overscan_level`)."""
    level = overscan_level(data, section_slices, model, order)
    return np.asarray(data, np.float64) - level, level


def trim(data, section_slices):
    """Copy of the section of ``data`` that is kept (ccdproc ``trim_image``)."""
    return np.array(data[section_slices], dtype=np.float64, copy=True)


# ---- uncertainty ---------------------------------------------------------------------------
def deviation(signal_adu, gain, readnoise_e, ncombine=1, extra_var=0.0):
    """Model uncertainty of a (combined) frame [ADU]:
    ``sqrt((g * max(S, 0) + RN^2) / g^2 + extra_var) / sqrt(N)``.

    ccdproc ``create_deviation`` (with negative signal counted as 0, its ``disregard_nan``) for
    one frame, divided by sqrt(N) for the mean of N frames. signal_adu: bias-free signal [ADU];
    gain [e-/ADU]; readnoise_e: single-read noise [e-]; ncombine: scalar or per-pixel count;
    extra_var: per-frame variance added [ADU^2] (the subtracted overscan's noise).
    """
    s = np.maximum(np.asarray(signal_adu, np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((gain * s + readnoise_e ** 2) / gain ** 2 + extra_var) / np.sqrt(ncombine)


# ---- combine -------------------------------------------------------------------------------
def _combine_tile(stack, method, clip, low, high, center, dev):
    """Combine one tile (N, rows, nx); returns (value, all_rejected, scatter, n_used)."""
    stack = np.array(stack, dtype=np.float64)
    rejected = ~np.isfinite(stack)
    if clip == "sigma":
        with np.errstate(invalid="ignore"), _quiet_nan():
            c = np.nanmedian(stack, axis=0) if center == "median" else np.nanmean(stack, axis=0)
            d = robust.mad_sigma_along(stack) if dev == "mad_std" else np.nanstd(stack, axis=0)
            lo = c - (np.inf if low is None else abs(low)) * d
            hi = c + (np.inf if high is None else high) * d
            rejected |= (stack < lo) | (stack > hi)
    stack[rejected] = np.nan
    n_used = (~rejected).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet_nan():
        if method == "average":
            value = np.nanmean(stack, axis=0)
            scatter = np.nanstd(stack, axis=0)
        else:
            value = np.nanmedian(stack, axis=0)
            scatter = robust.mad_sigma_along(stack)
        scatter = scatter / np.sqrt(n_used)
    return value, n_used == 0, scatter, n_used


class _quiet_nan:
    """Silence numpy's all-NaN-slice warnings (an all-rejected pixel is reported by its mask)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def tile_rows(nframes, shape, method="average", mem_limit=350e6):
    """Rows per tile so that ``nframes`` tiles of (rows, nx) fit in ``mem_limit`` bytes."""
    per_row = nframes * shape[1] * COMBINE_BYTES_PER_PIXEL.get(method, 3 * 1.3 * 8)
    return int(max(1, min(shape[0], math.floor(mem_limit / per_row))))


def combine(frames, method="average", clip="sigma", low=5.0, high=5.0, center="median",
            dev="mad_std", mem_limit=350e6):
    """Combine frames pixel by pixel, rejecting outliers (cosmic rays) first; ccdproc ``combine``.

    Parameters
    ----------
    frames : sequence of N arrays (ny, nx) [ADU]; may be memory maps, read tile by tile
    method : ``average`` (nanmean of the kept values) | ``median`` (nanmedian)
    clip : ``sigma`` (one pass of astropy ``sigma_clip``: reject x < c - low * d or
        x > c + high * d, c the per-pixel ``center`` and d the ``dev`` across frames) | ``none``
    low, high : float, rejection thresholds in units of d (None = no rejection on that side)
    center : ``median`` | ``mean``;  dev : ``mad_std`` | ``std`` (ddof = 0)
    mem_limit : float, bytes the tiles may use (rows are processed in blocks that fit)

    Returns
    -------
    value : float64 (ny, nx)   combined frame; NaN where every frame was rejected
    mask : bool (ny, nx)       every frame rejected (ccdproc's mask)
    scatter : float64 (ny, nx) ccdproc's uncertainty: std (average) or 1.4826 MAD (median) of
                               the kept values / sqrt(n_used)
    n_used : int (ny, nx)      frames kept per pixel
    """
    if method not in ("average", "median"):
        raise ValueError(f"unknown combine method {method!r}")
    if clip not in ("sigma", "none"):
        raise ValueError(f"unknown clip {clip!r}")
    shape = frames[0].shape
    value = np.empty(shape, np.float64)
    mask = np.empty(shape, bool)
    scatter = np.empty(shape, np.float64)
    n_used = np.empty(shape, np.int32)
    step = tile_rows(len(frames), shape, method, mem_limit)
    for y0 in range(0, shape[0], step):
        rows = slice(y0, min(shape[0], y0 + step))
        tile = np.stack([np.asarray(f[rows], np.float64) for f in frames])
        value[rows], mask[rows], scatter[rows], n_used[rows] = _combine_tile(
            tile, method, clip, low, high, center, dev)
    return value, mask, scatter, n_used


# ---- bias, dark, scaling -------------------------------------------------------------------
def subtract_bias(data, bias, data_unc=None, bias_unc=None):
    """``data - bias`` and its uncertainty (added in quadrature; ccdproc ``subtract_bias``)."""
    out = np.asarray(data, np.float64) - np.asarray(bias, np.float64)
    if data_unc is None or bias_unc is None:
        return out, None
    return out, np.hypot(data_unc, bias_unc)


def scale_dark(dark, dark_exptime, target_exptime, dark_unc=None):
    """A bias-free master dark scaled from ``dark_exptime`` to ``target_exptime`` [s].

    dark : (ny, nx) [ADU] overscan- and bias-subtracted. Returns (dark * t_target / t_dark,
    uncertainty scaled by the same factor or None); ccdproc ``subtract_dark(scale=True)``
    subtracts exactly this.
    """
    factor = float(target_exptime) / float(dark_exptime)
    scaled = np.asarray(dark, np.float64) * factor
    return scaled, (None if dark_unc is None else np.asarray(dark_unc, np.float64) * factor)


def subtract_dark(data, dark, data_exptime, dark_exptime, scale=True):
    """``data - dark * (t_data / t_dark)`` (``scale``) or ``data - dark`` (ccdproc
    ``subtract_dark``)."""
    factor = float(data_exptime) / float(dark_exptime) if scale else 1.0
    return np.asarray(data, np.float64) - np.asarray(dark, np.float64) * factor


def dark_rate_fit(masters, exptimes, ncombine, gain, readnoise_e, extra_var=None):
    """Per-pixel dark rate from master darks at several exposure times, bias-independent.

    Fits ``D_t = a + b t`` per pixel by weighted least squares (two passes: ordinary least squares
    for b, then weights ``1 / var_t`` with ``var_t = (g max(b t, 0) + RN^2) / g^2 / N_t``, the
    read noise plus shot noise of the dark signal of a mean of N_t frames). The intercept a
    absorbs any bias left in the masters (it is common to all exposure times), so the rate does
    not depend on the master bias. With one exposure time the rate is D / t (the master must
    then be bias-subtracted) and its variance var_t / t^2.

    Parameters
    ----------
    masters : sequence of K arrays (ny, nx) [ADU];  exptimes : K exposure times [s]
    ncombine : K frame counts (scalars or (ny, nx) arrays of frames kept)
    gain : e-/ADU;  readnoise_e : single-read noise [e-]
    extra_var : K per-frame variances [ADU^2] added to each frame's read noise (the subtracted
        overscan level's own noise, :func:`overscan_noise`); None = 0

    Returns
    -------
    rate, sigma : float64 (ny, nx) [e-/s]; intercept : float64 (ny, nx) [ADU] (zeros for K = 1)
    """
    d = np.stack([np.asarray(m, np.float64) for m in masters])
    t = np.asarray(exptimes, np.float64).reshape(-1, 1, 1)
    n = np.stack([np.broadcast_to(np.asarray(c, np.float64), d.shape[1:]) for c in ncombine])
    xv = np.zeros(d.shape[0]) if extra_var is None else np.asarray(extra_var, np.float64)
    xv = xv.reshape(-1, 1, 1)
    if d.shape[0] == 1:
        b = d[0] / t[0]
        var = ((gain * np.maximum(b * t[0], 0) + readnoise_e ** 2) / gain ** 2 + xv[0]) / n[0]
        return b * gain, np.sqrt(var) / t[0, 0, 0] * gain, np.zeros_like(b)
    valid = np.isfinite(d)
    w = valid.astype(np.float64)
    d0 = np.where(valid, d, 0.0)
    for _ in range(2):
        a, b, sigma_b = _weighted_line(w, t, d0)
        var = ((gain * np.maximum(b * t, 0.0) + readnoise_e ** 2) / gain ** 2 + xv) / np.maximum(n, 1)
        w = np.where(valid, 1.0 / var, 0.0)
    a, b, sigma_b = _weighted_line(w, t, d0)
    return b * gain, sigma_b * gain, a


def _weighted_line(w, t, d):
    """Per-pixel weighted least-squares line ``d = a + b t`` over axis 0: (a, b, sigma_b), with
    sigma_b the error of b for weights ``w = 1 / variance``."""
    sw, swt, swtt = w.sum(0), (w * t).sum(0), (w * t * t).sum(0)
    swd, swtd = (w * d).sum(0), (w * t * d).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * swtt - swt ** 2
        b = (sw * swtd - swt * swd) / det
        a = (swd - b * swt) / sw
        sigma_b = np.sqrt(sw / det)
    return a, b, sigma_b


def hot_pixels(rate, threshold):
    """Boolean map of hot pixels: dark rate [e-/s] above ``threshold`` [e-/s] (NaN: not hot)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(rate) > float(threshold)


# ---- read noise and overscan judgement ---------------------------------------------------------
def read_noise_pairs(frames, gain, sigma=5.0):
    """Single-read noise from pairs of bias frames [e-].

    frames : trimmed bias frames [ADU], not overscan-subtracted (the overscan's own noise would
    add to the difference). Pairs are (0, 1), (2, 3), ... (independent). For each pair the
    difference is taken (the fixed bias structure cancels), a straight line fitted to its row
    medians is removed (frame-to-frame level changes and drifts along the readout axis are not
    read noise; two parameters cost a negligible fraction of the variance), and its standard
    deviation is estimated with iterative ``sigma`` clipping; read noise = gain * std / sqrt(2).

    Returns (per_pair list of (i, j, rn_e, npix), mean rn_e, its 1-sigma error [e-]: the
    standard error of a Gaussian standard deviation, rn / sqrt(2 (n_pix - 1)) per pair, combined
    over pairs).
    """
    pairs = []
    for i in range(0, len(frames) - 1, 2):
        diff = np.asarray(frames[i], np.float64) - np.asarray(frames[i + 1], np.float64)
        rows = np.arange(diff.shape[0], dtype=np.float64)
        coef = np.polyfit(rows, np.median(diff, axis=1), 1) if diff.shape[0] > 1 else [0.0, np.median(diff)]
        st = robust.clipped_stats(diff - np.polyval(coef, rows)[:, None], sigma=sigma, maxiters=10)
        pairs.append((i, i + 1, gain * st.std / math.sqrt(2.0), st.npix))
    if not pairs:
        return [], math.nan, math.nan
    rn = np.array([p[2] for p in pairs])
    err = np.array([p[2] / math.sqrt(2.0 * (p[3] - 1)) for p in pairs])
    return pairs, float(rn.mean()), float(np.sqrt((err ** 2).sum()) / len(pairs))


def overscan_noise(level):
    """Noise [ADU] of each value of a subtracted overscan level vector, and the number of values.

    The level (one value per row or column) carries the overscan's own noise: every pixel of a
    row gets that row's error, so it adds ``sigma^2`` to each pixel's variance, and
    ``sigma / sqrt(n)`` is an error of the frame-mean level common to all pixels (which
    per-pixel uncertainties miss). sigma = robust std of successive differences / sqrt(2)
    (insensitive to smooth drifts along the readout axis).
    """
    v = np.asarray(level, np.float64).ravel()
    if v.size < 3:
        return 0.0, int(v.size)
    d = np.diff(v)
    return float(robust.mad_sigma(d) / math.sqrt(2.0)), int(v.size)


def coherent_rate_error(exptimes, level_errors, ncombine, gain, readnoise_e, rate, extra_var=None):
    """1-sigma error [e-/s] of the frame-mean dark rate from errors common to all pixels of a
    master dark (its overscan level error, ADU), propagated through the same weighted fit as
    :func:`dark_rate_fit` with the weights of a pixel of dark rate ``rate`` [e-/s]."""
    t = np.asarray(exptimes, np.float64)
    e = np.asarray(level_errors, np.float64)
    if t.size == 1:
        return float(gain * e[0] / t[0])
    n = np.asarray(ncombine, np.float64)
    xv = np.zeros(t.size) if extra_var is None else np.asarray(extra_var, np.float64)
    w = 1.0 / (((gain * max(rate, 0.0) * t + readnoise_e ** 2) / gain ** 2 + xv) / n)
    tbar = (w * t).sum() / w.sum()
    c = w * (t - tbar) / (w * (t - tbar) ** 2).sum()
    return float(gain * math.sqrt(((c * e) ** 2).sum()))


def frame_level(data, section_slices):
    """Median level of a section of a frame [ADU] (robust to hot pixels and cosmic rays)."""
    return float(np.median(np.asarray(data[section_slices], np.float64)))


def overscan_usefulness(active_levels, overscan_levels):
    """Judge whether the overscan tracks the bias level (the seed's "useful overscan").

    active_levels, overscan_levels : per-frame median levels [ADU] of the image area and of the
    overscan strip, for frames of one kind (bias frames, or darks of one exposure time).

    The overscan is useful when subtracting it makes the frames agree better: the frame-to-frame
    standard deviation of (active - overscan) is smaller than that of the active level alone
    (ratio < 1). An overscan that does not follow the level changes, or frames whose level does
    not change, give a ratio >= 1 (subtracting it would only add the overscan's own noise).

    Returns dict: scatter_active_adu, scatter_corrected_adu, ratio, useful (bool or None when
    fewer than 2 frames).
    """
    a = np.asarray(active_levels, np.float64)
    o = np.asarray(overscan_levels, np.float64)
    if a.size < 2:
        return {"scatter_active_adu": math.nan, "scatter_corrected_adu": math.nan,
                "ratio": math.nan, "useful": None}
    s_a = float(np.std(a, ddof=1))
    s_c = float(np.std(a - o, ddof=1))
    ratio = s_c / s_a if s_a > 0 else math.inf
    return {"scatter_active_adu": s_a, "scatter_corrected_adu": s_c, "ratio": ratio,
            "useful": bool(ratio < 1.0)}
