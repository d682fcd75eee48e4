"""Robust statistics of the analyses, reference files and the CCD branch: each defined once.

Every function ignores NaN/inf unless it says otherwise and works in float64; units are those of
the values given. The statistics, by what they measure:

* :func:`mad_sigma`: the **MAD sigma**, ``MAD_TO_SIGMA * median(|x - median(x)|)`` (pynrc
  ``medabsdev``, astropy ``mad_std``) of a set of values; :func:`mad_sigma_along` the same along
  one axis of a stack. Unbiased for Gaussian data, but it moves in steps of ``MAD_TO_SIGMA`` for
  integer-valued data (CDS of raw DN).
* :func:`clipped_sigma`: the **clipped sigma**, the sample standard deviation (ddof=1) of the
  values within ``clip`` MAD sigma of the median, divided by the standard deviation of a unit
  normal truncated at ``+-clip`` (:func:`truncated_normal_std`), so that it is unbiased for
  Gaussian data and has no quantisation steps. The noise analyses' spatial noise.
* :func:`clipped_stats`: **iterative sigma clipping** of a set of values, astropy
  ``sigma_clip`` defaults (median centre, std with ddof=0 as width, ``maxiters=5``, strict
  bounds); the mean, median and std (ddof=0) of what is kept.
  :func:`sigma_clipped_stats` is the same statistic along the first axis of a stack, in bounded
  memory (the reference-file builders' per-pixel statistics; jwst_reffiles' ``sigma_clip`` use).
* :func:`clipped_mean_std_images`: the same clipping **per pixel along the first axis** of a
  cube (JWQL mean image); sample std (ddof=1) of what is kept.
* :func:`clip_bias_factor`: the expected clipped std / true std of Gaussian data after
  ``maxiters`` rounds of :func:`clipped_stats`-style clipping (to unbias a clipped noise).
* :class:`PixelMoments`: per-pixel running mean and sample variance (Welford) over samples,
  mergeable (for jackknife blocks).
* :func:`median_variance`: the **median of per-pixel sample variances**, divided by the median
  of ``chi2(dof)/dof`` (:func:`chi2_median_factor`) so that it is unbiased for Gaussian noise.

Besides numpy and scipy only the memory-budget helper :func:`detcal.io.block_size` and the steps'
column sort (:func:`detcal.steps.median.sort_columns`) are imported: the analyses, the
reference-file builders and the CCD branch all use this module.
"""

import contextlib
import math
import warnings
from collections import namedtuple

import numpy as np
import scipy.stats
from scipy import optimize

from .. import io
from ..steps.median import sort_columns

#: MAD -> sigma of a Gaussian: the multiplier ``1 / Phi^-1(3/4)`` (1.482602218505602).
MAD_TO_SIGMA = float(1.0 / scipy.stats.norm.ppf(0.75))

ClippedStats = namedtuple("ClippedStats", "mean median std npix lower upper")

#: Working memory of one block of :func:`sigma_clipped_stats` [MB].
STATS_WORK_MB = 256
#: Bytes of temporaries per value in :func:`sigma_clipped_stats` (sorted copy, masks, squares).
STATS_BYTES_PER_VALUE = 48


@contextlib.contextmanager
def quiet_warnings():
    """Silence numpy's 'All-NaN slice' / 'Degrees of freedom' RuntimeWarnings and scipy's
    OptimizeWarning inside a block (empty selections and failed fits are reported as NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        yield


def mad_sigma(values):
    """MAD sigma ``MAD_TO_SIGMA * median(|x - median(x)|)`` of the finite values; NaN if none.

    Parameters
    ----------
    values : array-like, any shape [any unit]

    Returns
    -------
    float [unit of values]
    """
    x = np.asarray(values, np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def mad_sigma_along(values, axis=0):
    """MAD sigma along ``axis``, NaN ignored (``nanmedian``): per-pixel scatter of a stack of frames.

    Parameters
    ----------
    values : ndarray, float, e.g. shape (nframes, ny, nx) [any unit]; NaN = missing
    axis : int

    Returns
    -------
    ndarray, float64, ``values.shape`` without ``axis`` [unit of values]; NaN where all are NaN
    """
    x = np.asarray(values)
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=axis)


def truncated_normal_std(a):
    """Std of a unit normal truncated to [-a, a]: sqrt(1 - 2 a phi(a) / (2 Phi(a) - 1))."""
    phi = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    mass = math.erf(a / math.sqrt(2.0))
    return math.sqrt(max(0.0, 1.0 - 2.0 * a * phi / mass))


def clipped_sigma(values, clip=4.0):
    """Clipped sigma: std of the values within ``clip`` MAD sigma of the median, unbiased.

    The MAD of integer-valued data (CDS of raw DN, slopes over 2-3 groups) moves in steps of
    ``MAD_TO_SIGMA`` DN, a bias of several % at CDS noise of a few DN; the clipped standard
    deviation has no such steps and is as insensitive to hot pixels and cosmic rays. It is
    divided by :func:`truncated_normal_std` of ``clip``, so it is unbiased for Gaussian data.

    Parameters
    ----------
    values : array_like, float   (any shape; flattened; NaN/inf ignored)
    clip : float                 [MAD sigma]

    Returns
    -------
    float [units of values]; NaN for fewer than 2 values
    """
    x = np.asarray(values, np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return np.nan
    med = np.median(x)
    s = MAD_TO_SIGMA * np.median(np.abs(x - med))
    if s > 0:
        x = x[np.abs(x - med) <= clip * s]
    if x.size < 2:
        return np.nan
    return float(np.std(x, ddof=1) / truncated_normal_std(clip))


def clipped_stats(values, sigma=3.0, maxiters=5):
    """Iterative sigma clipping of a set of values (astropy ``sigma_clip`` defaults).

    Each iteration rejects values with ``|x - median| > sigma * std`` (std with ddof=0, of the
    values kept so far); stops when nothing changes or after ``maxiters`` iterations.

    Parameters
    ----------
    values : array-like, any shape; NaN/inf ignored
    sigma : float
    maxiters : int

    Returns
    -------
    ClippedStats(mean, median, std, npix, lower, upper): statistics of the kept values (std with
    ddof=0, as astropy) and the final clipping bounds; NaN everywhere (npix 0) if nothing is finite.
    """
    x = np.asarray(values, np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return ClippedStats(math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    lower, upper = -math.inf, math.inf
    for _ in range(int(maxiters)):
        med, std = np.median(x), x.std()
        lower, upper = med - sigma * std, med + sigma * std
        keep = (x >= lower) & (x <= upper)
        if keep.all():
            break
        x = x[keep]
        if x.size == 0:
            return ClippedStats(math.nan, math.nan, math.nan, 0, lower, upper)
    return ClippedStats(float(x.mean()), float(np.median(x)), float(x.std()), int(x.size),
                        float(lower), float(upper))


def clip_bias_factor(sigma, maxiters=5):
    """Expected (clipped std) / (true std) for Gaussian data after ``maxiters`` clipping rounds.

    Round j clips at ``sigma`` times the std of the previous round's survivors, so
    ``c_0 = 1``, ``c_{j+1} = truncated_normal_std(sigma * c_j)``; returns ``c_maxiters``
    (0.9849 for sigma=3, maxiters=3; jwst_reffiles does not correct for it and underestimates
    the read noise by 1.5 %). ``maxiters=None`` gives the fixed point.
    """
    c = 1.0
    n = 100 if maxiters is None else int(maxiters)
    for _ in range(n):
        c = truncated_normal_std(sigma * c)
    return c


#: Working memory of :func:`clipped_mean_std_images` per value of a block of rows [bytes]
#: (six float64 temporaries; measured 45-48 with tracemalloc).
CLIP_IMAGE_BYTES_PER_VALUE = 48


def clipped_mean_std_images(cube, sigma=3.0, maxiters=5, work_mb=256):
    """Per-pixel sigma-clipped mean and standard deviation along the first axis (JWQL mean image).

    Parameters
    ----------
    cube : ndarray (n, ny, nx) float, NaN = missing (e.g. slopes of integrations) [any unit]
    sigma, maxiters : clipping along axis 0 (centre median, std ddof=0 for the clipping, as
        astropy ``sigma_clip(axis=0)``)
    work_mb : working memory [MB]: rows are processed in blocks of about this size
        (:data:`CLIP_IMAGE_BYTES_PER_VALUE` per value; :func:`detcal.io.block_size`), so the
        memory does not grow with the number of integrations n (the result does not depend on it)

    Returns
    -------
    mean : float32 (ny, nx)       [unit of cube]   NaN where no value is left
    std : float32 (ny, nx)        [unit of cube]   sample std (ddof=1) of the kept values, NaN if < 2
    nused : int16 (ny, nx)        number of values kept
    """
    cube = np.asarray(cube)
    n, ny, nx = cube.shape
    block_rows = io.block_size(work_mb, CLIP_IMAGE_BYTES_PER_VALUE, cube.shape, axis=1)
    mean = np.full((ny, nx), np.nan, np.float32)
    std = np.full((ny, nx), np.nan, np.float32)
    nused = np.zeros((ny, nx), np.int16)
    for r0 in range(0, ny, block_rows):
        x = np.array(cube[:, r0:r0 + block_rows], np.float64)
        keep = np.isfinite(x)
        for _ in range(int(maxiters)):
            xm = np.where(keep, x, np.nan)
            with np.errstate(invalid="ignore"), quiet_warnings():
                med = np.nanmedian(xm, axis=0)
                sd = np.nanstd(xm, axis=0)
                new = keep & (np.abs(x - med) <= sigma * sd)
            if np.array_equal(new, keep):
                break
            keep = new
        cnt = keep.sum(axis=0)
        xm = np.where(keep, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = xm.sum(axis=0) / cnt
            var = (np.where(keep, x - m, 0.0) ** 2).sum(axis=0) / (cnt - 1)
        mean[r0:r0 + block_rows] = np.where(cnt > 0, m, np.nan)
        std[r0:r0 + block_rows] = np.where(cnt > 1, np.sqrt(var), np.nan)
        nused[r0:r0 + block_rows] = cnt
    return mean, std, nused


def chi2_median_factor(dof):
    """Median of ``chi2(dof)/dof``: the bias of the median of sample variances with ``dof`` dof."""
    dof = np.asarray(dof, np.float64)
    return scipy.stats.chi2.median(dof) / dof


def median_variance(var, dof):
    """Unbiased (Gaussian) noise variance from per-pixel sample variances: median / chi2 median.

    Parameters
    ----------
    var : ndarray, float, shape (npix,)   sample variances (ddof=1) [unit^2]; NaN ignored
    dof : int                              degrees of freedom of each (nsamples - 1)

    Returns
    -------
    float [unit^2]; NaN when ``var`` is empty or ``dof < 1``
    """
    var = np.asarray(var, np.float64)
    var = var[np.isfinite(var)]
    if var.size == 0 or dof < 1:
        return np.nan
    return float(np.median(var) / chi2_median_factor(dof))


class PixelMoments:
    """Per-pixel running mean/variance (Welford, float64) of a subset of pixels over samples.

    ``keys`` name the quantities (e.g. the group counts N or the noise components); ``index`` is
    the flat index (into ny*nx) of the pixels followed. ``n`` counts the samples added;
    ``count`` (npix,) the samples each pixel kept (a sample can be left out per pixel).
    """

    def __init__(self, keys, index):
        self.keys = list(keys)
        self.index = np.asarray(index, np.intp)
        self.n = 0
        self.count = np.zeros(self.index.size)
        self.mean = np.zeros((len(self.keys), self.index.size))
        self.m2 = np.zeros_like(self.mean)

    def add(self, values, indexed=False, valid=None):
        """values : sequence (one per key) of images (ny, nx) or flat arrays (ny*nx,); with
        ``indexed`` the values of the followed pixels only ((npix,) each, in ``index`` order).
        ``valid`` : bool (npix,) in ``index`` order, pixels whose sample counts (default all)."""
        self.n += 1
        use = np.ones(self.index.size, bool) if valid is None else np.asarray(valid, bool)
        self.count += use
        cnt = np.maximum(self.count, 1)
        for i, v in enumerate(values):
            x = np.asarray(v, np.float64).reshape(-1)
            x = x if indexed else x[self.index]
            delta = np.where(use, x - self.mean[i], 0.0)
            self.mean[i] += delta / cnt
            self.m2[i] += delta * np.where(use, x - self.mean[i], 0.0)

    @classmethod
    def merged(cls, parts):
        """One accumulator holding the samples of all ``parts`` (same keys and pixels; Chan et al.)."""
        parts = list(parts)
        out = cls(parts[0].keys, parts[0].index)
        for p in parts:
            if p.n == 0:
                continue
            n = out.count + p.count
            frac = np.divide(p.count, n, out=np.zeros_like(n), where=n > 0)
            delta = p.mean - out.mean
            out.m2 = out.m2 + p.m2 + delta ** 2 * (out.count * frac)
            out.mean = out.mean + delta * frac
            out.count = n
            out.n += p.n
        return out

    def variance(self, key):
        """Sample variance (ddof=1) of every pixel followed: (npix,); NaN with fewer than 2 samples."""
        c = self.count
        return np.where(c >= 2, self.m2[self.keys.index(key)] / np.maximum(c - 1, 1), np.nan)


def _window_stats(s, lo, hi, idx, ddof=0):
    """Median, mean and std of the sorted columns ``s[lo:hi, j]`` (per column j), float64."""
    m = hi - lo
    inwin = (idx >= lo) & (idx < hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(inwin, s, 0.0).sum(axis=0) / m
        d = np.where(inwin, s - mean, 0.0)
        var = np.einsum("ij,ij->j", d, d) / (m - ddof)
        var[m - ddof <= 0] = np.nan
        n = s.shape[0]
        a = np.take_along_axis(s, np.clip(lo + (m - 1) // 2, 0, n - 1)[None], 0)[0]
        b = np.take_along_axis(s, np.clip(lo + m // 2, 0, n - 1)[None], 0)[0]
        med = np.where(m > 0, 0.5 * (a + b), np.nan)
    mean[m == 0] = np.nan
    return med, mean, np.sqrt(var)


def sigma_clipped_stats(values, sigma=3.0, maxiters=5, ddof=0, work_mb=STATS_WORK_MB):
    """Sigma-clipped mean, median, std and count along axis 0 (astropy ``sigma_clip`` semantics).

    Per column: centre = median, width = std (ddof 0) of the values still in; values with
    ``x < centre - sigma*width`` or ``x > centre + sigma*width`` are dropped; repeated until
    nothing changes or ``maxiters`` iterations (``None``: until convergence). NaN (and inf) are
    missing values. Because the retained values are always a contiguous run of the sorted column,
    each column is sorted once and the iterations move two indices.

    Parameters
    ----------
    values : ndarray, float, shape (n, ...)           any unit; NaN = missing
    sigma : float                                      clip threshold [sigma]
    maxiters : int or None
    ddof : int                                         delta degrees of freedom of the returned
                                                       std (the clipping itself uses 0, as astropy)
    work_mb : float                                    memory of one block of columns [MB]

    Returns
    -------
    dict of ndarrays of shape ``values.shape[1:]``: ``mean``, ``median``, ``std`` (float64,
    NaN where nothing is left), ``count`` (int32, values retained), ``n_good`` (int32, finite
    values before clipping).
    """
    values = np.asarray(values)
    n = values.shape[0]
    out_shape = values.shape[1:]
    flat = values.reshape(n, -1)
    npix = flat.shape[1]
    res = {k: np.empty(npix, np.float64) for k in ("mean", "median", "std")}
    res["count"] = np.empty(npix, np.int32)
    res["n_good"] = np.empty(npix, np.int32)
    block = io.block_size(work_mb, STATS_BYTES_PER_VALUE, (n, npix), axis=1)
    idx = np.arange(n)[:, None]
    iters = math.inf if maxiters is None else int(maxiters)
    for c0 in range(0, npix, block):
        c1 = min(npix, c0 + block)
        x = np.array(flat[:, c0:c1], dtype=np.float64)
        x[~np.isfinite(x)] = np.nan
        s = sort_columns(x)                     # NaN -> +inf, sorted last
        del x
        good = np.count_nonzero(np.isfinite(s), axis=0).astype(np.int64)
        lo = np.zeros_like(good)
        hi = good.copy()
        it = 0
        while it < iters:
            it += 1
            med, _, std = _window_stats(s, lo, hi, idx, ddof=0)
            with np.errstate(invalid="ignore"):
                lower = med - sigma * std
                upper = med + sigma * std
                new_lo = np.maximum(lo, np.count_nonzero(s < lower, axis=0))
                new_hi = np.minimum(hi, np.count_nonzero(s <= upper, axis=0))
            changed = np.any(new_lo != lo) or np.any(new_hi != hi)
            lo, hi = new_lo, new_hi
            if not changed:
                break
        med, mean, std = _window_stats(s, lo, hi, idx, ddof=ddof)
        res["median"][c0:c1], res["mean"][c0:c1], res["std"][c0:c1] = med, mean, std
        res["count"][c0:c1] = hi - lo
        res["n_good"][c0:c1] = good
    return {k: v.reshape(out_shape) for k, v in res.items()}
