"""CDS noise and its decomposition: white, correlated 1/f and uncorrelated 1/f; power spectra.

What is measured (NIR H2RG family; 1 or 4 outputs)
--------------------------------------------------
CDS frames are differences of **independent** group pairs of one integration,
``cds = data[1::2] - data[0::2]`` (the last group is dropped when NGROUPS is odd; the groups of
a pair are TGROUP apart). The per-pixel mean CDS over all frames (:func:`mean_cds_frame`: the
dark signal over TGROUP and any fixed pattern, which are not noise) is subtracted from every
frame, and variances and spectra are scaled by n/(n-1) for it. Every frame is turned into the detector frame
(:func:`detcal.geometry.to_detector`) and cut into the outputs' column stripes; odd outputs are
flipped so that every output block ``(ny, w)`` is in **readout order** (pixel ``j`` of row ``r``
is read at sample ``r*(w + row_overhead) + j`` after the frame start, 10 us per sample). That is
the layout :mod:`detcal.simulate.noise` generates its 1/f streams in, and the layout of real
NIRCam data whatever their FASTAXIS/SLOWAXIS.

Time-domain decomposition (pynrc ``gen_cds_dict`` style), per CDS frame:

* ``total``: the CDS frame, minus its median per output;
* the 1/f model of each output, ``fn``: a Savitzky-Golay smoothing (default window 31 samples,
  order 3) of the output's readout-ordered stream (rows concatenated; ``per_line`` smooths every
  row on its own); pixels more than ``clip`` MAD sigma from the median, and their 8
  neighbours (cosmic-ray charge spread, :func:`grow_outliers`), are outliers: replaced by the
  median before smoothing and left out of every statistic and spectrum;
* ``pink_corr`` = mean of ``fn`` over the outputs (common to all outputs in readout order);
* ``pink_uncorr`` = ``fn - pink_corr`` (per output);
* ``white`` = ``total - fn``.

Noise of each component (all **CDS noise**, i.e. the standard deviation of a difference of two
groups; single-read noise is CDS/sqrt(2); DN, and e- with the gain reference):

* spatial: per frame and output the clipped sigma (:func:`detcal.analysis.robust.clipped_sigma`:
  standard deviation within +-4 MAD sigma of the median, truncation-corrected; the plain MAD sigma of pynrc is
  quantized for integer-valued CDS) over the output's good pixels; the result is
  sqrt(median over frames of sigma^2);
* temporal: per pixel the sample variance over all CDS frames (every integration of every file);
  the result is sqrt(median over pixels of the variance) divided by the median of a chi-square
  variable with (nframes-1) degrees of freedom over its mean, so that it is unbiased for Gaussian
  noise (pynrc's plain median is low by e.g. 3.5 % in variance for 20 frames). Needs at least
  ``min_frames`` (10) CDS frames, as the JWQL read-noise monitor; fewer are reported as such.

The smoothing filter also passes a fraction ``h0`` (its central coefficient, 0.073 for 31/3) of
the white-noise variance, which at realistic amplitudes is larger than the 1/f itself. The table
gives the raw numbers (``*_raw``, what pynrc reports, but in CDS units: pynrc divides its 1/f
numbers by sqrt(2)) and **leakage-corrected** ones: white / sqrt(1 - h0), pink_corr^2 -
h0 white^2 / nout, pink_uncorr^2 - h0 white^2 (1 - 1/nout) (negative differences become 0).

Power spectra and the 1/f amplitudes
------------------------------------
Each output's readout-ordered stream of the active rows is laid out on the true time axis: the
row overhead (12 samples) and the columns that are reference pixels in any output are zeros; the
mean is subtracted and outliers are set to zero. One-sided periodograms
``P_k = 2 dt |X_k|^2 / n`` (``n`` samples used; white noise of CDS variance ``W`` gives
``2 dt W``) are averaged over frames: per output (auto spectra) and, for the correlated part,
the real cross spectra ``2 dt Re(X_i X_j^*) / n`` averaged over output pairs (white and
uncorrelated noise average out of it).

Model: ``P(f) = 2 dt W + A K(f)``, with ``A`` the amplitude of a single-stream 1/f spectrum
``S(f) = A/f`` [DN^2/Hz] (the convention of :mod:`detcal.simulate.noise`) and ``K`` the exact
expected periodogram of a unit (A = 1) 1/f stream seen through the CDS (difference of two groups
TGROUP apart, each the mean of NFRAMES frames TFRAME apart: the factor ``4 sin^2(pi f TGROUP)``,
which at the lowest frequencies is far from its mean 2) and through the sampling mask (row
overheads, reference columns: replicas at the row-frequency harmonics). ``K`` is computed from
the stream's autocovariance (closed form with the cosine integral) and the mask's
autocorrelation; bins at the row-frequency harmonics (where subtracting the mean acts) are left
out of the fit. The cross spectrum gives ``A_corr``, each auto spectrum ``W`` and ``A_corr +
A_uncorr``. Weighted least squares over logarithmic frequency bins, iteratively reweighted
with the model (periodogram variance ~ mean^2); errors from the covariance scaled by the reduced
chi-square.

Amplitudes (convention of :mod:`detcal.noise_conventions`, which the simulator imports) are
reported as ``A`` [DN^2], as the PSD level at 1 Hz ``A / 1 Hz`` [DN^2/Hz, e-^2/Hz], and as the
rms of the stream over the band from 1/T_ref to Nyquist (T_ref = 10.73677 s, one NIRCam
full-frame time; 0.0931 Hz .. 50 kHz at 10 us): ``rms = sqrt(A ln(T_ref / (2 dt)))`` [DN, e-].
A CDS frame cannot see that band (its lowest frequency is ~1/(frame time)); the conversion is
exact for a 1/f spectrum, which is what the fit assumes. The white amplitude is the white CDS
noise ``sqrt(W)``. The JSON's ``summary`` holds the group summary's numbers
(:func:`headline_numbers`).

Errors: the integrations are dealt in turn into up to :data:`JACKKNIFE_BLOCKS` blocks and the
fit is repeated with each block left out (delete-one-block jackknife; the CDS frames of one
integration stay together, because the 1/f makes their lowest frequencies covary). The periodogram bins are not
independent (the sampling mask spreads power over neighbouring bins) and the correlated 1/f makes
the outputs' spectra covary, so the fit covariance (kept as ``*_err_fit``) understates the
errors; the jackknife sees the actual frame-to-frame scatter.

Inputs: the ramps as NRC-09/pynrc prepare them: superbias subtracted and refpix with the
top/bottom reference rows only (:data:`detcal.noise_conventions.REFPIX_PARAMETERS`, the
workflow's ``refpix_noise`` product). The side-pixel correction of the main chain would remove
part of the 1/f at the row frequency and below and add the side pixels' own noise (on a 256 px
demo detector it turns 3.0 / 1.0 e- of correlated / uncorrelated 1/f into 3.6 / 1.7 e-). The
top/bottom correction subtracts one value per output, column parity and frame: its power falls
in the row-frequency harmonics that the fit leaves out, so the fit sees the raw 1/f.
MIRI is not an H2RG-like readout and is rejected.
"""

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft
import scipy.special
from astropy.io import fits
from scipy.signal import savgol_coeffs, savgol_filter

from .. import dqflags, inventory, io, keywords, tables
from ..errors import InputError
from ..geometry import Geometry
from ..multiaccum import PIXEL_TIME_S, ROW_OVERHEAD  # (pixel clock when no TSAMPLE)
from ..noise_conventions import REF_FREQUENCY_HZ, REF_TIME_S, pink_psd, pink_rms, rms_band
from ..parameters import keyword_parameters
from ..plots import plt  # pyplot on the Agg backend (plots.pyplot)
from .common import (
    DEAD_OUTPUT_FRACTION,
    dead_amplifier_note,
    dead_outputs,
    good_pixels,
    join_notes,
    mean_gain,
    output_gains,
    save_figure,
    subsample_rows,
    temporal_note,
)
from .robust import PixelMoments, clipped_sigma, mad_sigma, median_variance

log = logging.getLogger("detcal.analysis.noise")

#: JWQL read-noise monitor / NRC-09: minimum samples for a temporal (per-pixel) statistic.
MIN_TEMPORAL = 10
#: Blocks of integrations for the jackknife errors of the power-spectrum fit.
JACKKNIFE_BLOCKS = 20
#: Components of the time-domain decomposition, in table order.
COMPONENTS = ("total", "white", "pink_corr", "pink_uncorr")


# ---------------------------------------------------------------------------------------------
# Readout order
# ---------------------------------------------------------------------------------------------
def output_width(geom):
    """Columns per output in the detector frame; checks that the outputs are column stripes."""
    if geom.family != "NIR":
        raise ValueError(f"readout-order analyses need an H2RG-like (NIR) detector, got {geom.family}")
    amp = geom.to_detector(geom.amplifier_map())
    nx = amp.shape[-1]
    nout = geom.noutputs if int(amp.max()) > 0 else 1
    if nx % nout:
        raise ValueError(f"{nx} detector columns cannot be split into {nout} outputs")
    w = nx // nout
    expect = np.repeat(np.arange(nout), w)
    if not np.all(amp == expect[None, :]):
        raise ValueError("the amplifier map is not column stripes in the detector frame "
                         "(subarray not spanning the outputs?)")
    return nout, w


def readout_order(a, geom):
    """Science-frame images (..., ny, nx) -> output blocks in readout order (..., nout, nyd, w).

    Detector frame (``geom.to_detector``); output k holds detector columns ``[k*w, (k+1)*w)``,
    odd outputs flipped so that index ``j`` of a row is the j-th pixel read. Returns a copy.
    """
    nout, w = output_width(geom)
    d = geom.to_detector(np.asarray(a))
    blocks = [d[..., k * w:(k + 1) * w][..., ::-1] if k % 2 else d[..., k * w:(k + 1) * w]
              for k in range(nout)]
    return np.stack(blocks, axis=-3)


def from_readout_order(blocks, geom):
    """Inverse of :func:`readout_order`: (..., nout, nyd, w) -> science frame (..., ny, nx)."""
    nout, _ = output_width(geom)
    parts = [blocks[..., k, :, ::-1] if k % 2 else blocks[..., k, :, :] for k in range(nout)]
    return np.ascontiguousarray(geom.to_science(np.concatenate(parts, axis=-1)))


def cds_pairs(ngroups):
    """Group index pairs (g0, g1) of the independent CDS frames: (0,1), (2,3), ..."""
    return [(g, g + 1) for g in range(0, ngroups - 1, 2)]


# ---------------------------------------------------------------------------------------------
# Time-domain decomposition
# ---------------------------------------------------------------------------------------------
def savgol_leakage(window=31, order=3):
    """Central coefficient ``h0`` of the smoothing kernel = fraction of white variance it passes."""
    return float(savgol_coeffs(window, order)[window // 2])


def grow_outliers(mask):
    """Outlier mask (..., ny, nx) grown by the 8 neighbours of every outlier.

    A cosmic ray leaves 15-30 % of its charge in the neighbours of the pixel it hits: a few
    hundred e-, below the outlier threshold but far above the noise. At long group times
    (10.7 s) they would add ~0.5 % to the white CDS noise.
    """
    import scipy.ndimage

    m = np.asarray(mask, bool)
    structure = np.zeros((3,) * m.ndim, bool)
    structure[(1,) * (m.ndim - 2)] = True             # a 3x3 square, within each image only
    return scipy.ndimage.binary_dilation(m, structure=structure)


def mean_cds_frame(frames, shape, good, clip=10.0):
    """Per-pixel mean of CDS frames without their outliers (first pass of the analysis).

    A CDS frame holds the pixel's dark signal over TGROUP (and any fixed pattern) besides its
    noise; the analysis subtracts this mean from every frame. Values more than ``clip`` MAD
    sigma (:func:`detcal.analysis.robust.mad_sigma` of the frame's ``good`` pixels) from the frame
    median (cosmic rays, hot pixels) and their neighbours (:func:`grow_outliers`) are left out of
    the mean, as the analysis leaves them out of its statistics.

    Parameters
    ----------
    frames : iterable of ndarray (ny, nx) [DN]   CDS frames (science frame)
    shape : (ny, nx); good : bool (ny, nx)
    clip : float [MAD sigma]

    Returns
    -------
    (mean float64 (ny, nx) [DN] (0 where fewer than 2 values), count int (ny, nx))
    """
    total = np.zeros(shape)
    count = np.zeros(shape, np.int64)
    for frame in frames:
        x = np.asarray(frame, np.float64)
        sel = x[good]
        med = np.median(sel) if sel.size else 0.0
        sig = mad_sigma(sel) if sel.size else np.inf
        ok = ~grow_outliers(~(np.isfinite(x) & (np.abs(x - med) <= clip * sig)))
        total[ok] += x[ok]
        count += ok
    mean = np.where(count > 1, total / np.maximum(count, 1), 0.0)
    return mean, count


def decompose_cds(blocks, good, window=31, order=3, per_line=False, clip=10.0):
    """Split one CDS frame into total, white, correlated and uncorrelated 1/f (readout order).

    Parameters
    ----------
    blocks : ndarray, float, shape (nout, ny, w)     [DN] CDS frame in readout order
    good : ndarray, bool, shape (nout, ny, w)        pixels that define the medians and clipping
    window, order : int                               Savitzky-Golay smoothing
    per_line : bool                                   smooth each row separately (else the stream)
    clip : float                                      outlier threshold [MAD sigma]

    Returns
    -------
    dict of float64 arrays (nout, ny, w) [DN]: ``total`` (median-subtracted), ``white``,
    ``pink_corr`` (broadcast to every output; zeros when nout == 1), ``pink_uncorr``
    (= the whole 1/f model when nout == 1), and bool ``outlier``. The correlated 1/f is the
    mean over the live outputs: a dead or flat output (:func:`dead_outputs` of the outputs'
    robust variances in this frame) would pull it towards 0.
    """
    x = np.asarray(blocks, np.float64)
    nout, ny, w = x.shape
    total = np.empty_like(x)
    filled = np.empty_like(x)
    outlier = np.zeros(x.shape, bool)
    sigmas = np.full(nout, np.nan)
    for k in range(nout):
        sel = x[k][good[k]]
        med = np.median(sel) if sel.size else 0.0
        total[k] = x[k] - med
        sig = mad_sigma(total[k][good[k]]) if sel.size else np.inf
        sigmas[k] = sig if sel.size else np.nan
        outlier[k] = grow_outliers((np.abs(total[k]) > clip * sig) | ~np.isfinite(total[k]))
        filled[k] = np.where(outlier[k], 0.0, total[k])
    if per_line:
        win = min(window, w - (1 - w % 2))
        fn = savgol_filter(filled, win, min(order, win - 1), axis=-1)
    else:
        win = min(window, ny * w - (1 - (ny * w) % 2))
        fn = savgol_filter(filled.reshape(nout, ny * w), win, min(order, win - 1),
                           axis=-1).reshape(x.shape)
    dead = dead_outputs(sigmas ** 2)
    live = [k for k in range(nout) if k not in dead] or list(range(nout))
    if len(live) > 1:
        corr = np.broadcast_to(fn[live].mean(axis=0), x.shape)
    else:
        corr = np.zeros_like(fn)
    return {"total": total, "white": total - fn, "pink_corr": np.array(corr),
            "pink_uncorr": fn - corr, "outlier": outlier}


def leakage_corrected(var, white_var, h0, nout):
    """White-noise leakage correction of the component variances of one output (see module doc).

    var : dict component -> raw variance [DN^2]; white_var : raw white variance of this output;
    returns dict component -> corrected variance (>= 0).
    """
    w = white_var / (1.0 - h0)
    out = {"total": var["total"], "white": w}
    if nout > 1:
        out["pink_corr"] = max(var["pink_corr"] - h0 * w / nout, 0.0)
        out["pink_uncorr"] = max(var["pink_uncorr"] - h0 * w * (1.0 - 1.0 / nout), 0.0)
    else:
        out["pink_corr"] = np.nan
        out["pink_uncorr"] = max(var["pink_uncorr"] - h0 * w, 0.0)
    return out


# ---------------------------------------------------------------------------------------------
# Power spectra
# ---------------------------------------------------------------------------------------------
@dataclass
class StreamLayout:
    """Where the analysed samples of a frame sit on the time axis (common to all outputs).

    rows : slice of detector rows used (the active rows)
    colmask : bool (w,) columns (readout index) used in every row (active in every output)
    row_samples : int = w + row_overhead
    """

    rows: slice
    colmask: np.ndarray
    row_samples: int

    @property
    def nrows(self):
        """Number of analysed rows."""
        return self.rows.stop - self.rows.start

    @property
    def nsamples(self):
        """Length of the stream (analysed rows x row_samples)."""
        return self.nrows * self.row_samples

    def mask(self):
        """bool (nsamples,): samples that hold data."""
        m = np.zeros((self.nrows, self.row_samples), bool)
        m[:, :self.colmask.size] = self.colmask
        return m.reshape(-1)

    @property
    def nused(self):
        """Number of samples of the stream that hold data (used columns x analysed rows)."""
        return int(self.colmask.sum()) * self.nrows


def stream_layout(active_blocks, row_overhead=ROW_OVERHEAD):
    """Layout of the PSD streams from the active-pixel map in readout order (nout, ny, w)."""
    act = np.asarray(active_blocks, bool)
    rows_any = np.flatnonzero(act.any(axis=(0, 2)))
    if rows_any.size == 0:
        raise ValueError("no active pixels")
    rows = slice(int(rows_any[0]), int(rows_any[-1]) + 1)
    colmask = act[:, rows, :].all(axis=(0, 1))
    if not colmask.any():
        raise ValueError("no readout column is active in every output and row")
    return StreamLayout(rows, colmask, act.shape[-1] + int(row_overhead))


def frame_streams(blocks, layout, outlier=None):
    """Readout-ordered streams of one frame on the time axis: float64 (nout, nsamples) [DN].

    Mean of the used samples subtracted; unused samples (overheads, reference columns,
    outliers) are 0. Returns the streams and the number of samples used per output (nout,).
    """
    nout, _, w = blocks.shape
    sub = np.asarray(blocks, np.float64)[:, layout.rows, :]
    use = np.broadcast_to(layout.colmask, sub.shape).copy()
    if outlier is not None:
        use &= ~outlier[:, layout.rows, :]
    out = np.zeros((nout, layout.nrows, layout.row_samples))
    nused = use.reshape(nout, -1).sum(axis=1)
    for k in range(nout):
        mean = sub[k][use[k]].mean() if nused[k] else 0.0
        out[k, :, :w] = np.where(use[k], sub[k] - mean, 0.0)
    return out.reshape(nout, -1), nused


def frame_periodograms(streams, nused, dt):
    """Auto and output-pair-averaged cross periodograms of one frame [DN^2/Hz].

    Returns auto (nout, nf) and cross (nf,) (zeros if nout == 1), nf = nsamples//2 + 1.
    """
    spec = scipy.fft.rfft(streams, axis=-1, workers=1)
    norm = 2.0 * dt / np.maximum(nused, 1)[:, None]
    auto = (spec.real ** 2 + spec.imag ** 2) * norm
    nout = spec.shape[0]
    cross = np.zeros(spec.shape[-1])
    if nout > 1:
        # sum_{i<j} Re(X_i X_j*) = (|sum X|^2 - sum |X|^2) / 2
        tot = spec.sum(axis=0)
        pair_sum = 0.5 * ((tot.real ** 2 + tot.imag ** 2) - (spec.real ** 2 + spec.imag ** 2).sum(axis=0))
        cross = pair_sum * 2.0 * dt / np.mean(nused) / (nout * (nout - 1) / 2)
    return auto, cross


def cin(x):
    """Cin(x) = integral_0^x (1 - cos t)/t dt = gamma + ln x - Ci(x)  (x >= 0)."""
    x = np.abs(np.asarray(x, np.float64))
    out = np.zeros_like(x)
    pos = x > 0
    _, ci = scipy.special.sici(x[pos])
    out[pos] = np.euler_gamma + np.log(x[pos]) - ci
    return out


def cds_pink_autocovariance(lags, tgroup, tframe=None, nframes=1, dt=PIXEL_TIME_S):
    """Autocovariance of the CDS of a unit 1/f stream, ``S(f) = 1/f`` up to Nyquist [DN^2].

    The stream is sampled every ``dt``; a group is the mean of ``nframes`` reads ``tframe``
    apart; the CDS is the difference of two groups ``tgroup`` apart.

    Parameters
    ----------
    lags : ndarray, float   [samples]
    tgroup, tframe : float  [s]
    nframes : int
    dt : float              [s]

    Returns
    -------
    ndarray, float64, same shape as lags [DN^2 per unit A]
    """
    lags = np.asarray(lags, np.float64)
    tg = tgroup / dt
    tf = (tframe or tgroup) / dt
    m = int(nframes)
    # stream: R(tau) = ln(fN/f0) - Cin(pi tau)  (fN = 1/(2 dt)); the constant cancels below
    out = np.zeros_like(lags)
    for d in range(-(m - 1), m):
        wgt = (m - abs(d)) / m ** 2
        base = lags + d * tf
        out += wgt * (-2.0 * cin(np.pi * base) + cin(np.pi * (base + tg)) + cin(np.pi * (base - tg)))
    return out


def pink_kernel(layout, tgroup, tframe=None, nframes=1, dt=PIXEL_TIME_S):
    """Expected periodogram ``K`` (nf,) of the CDS of a unit 1/f stream seen through ``layout``.

    Normalised as :func:`frame_periodograms` (``2 dt |X|^2 / n``), so a 1/f stream of amplitude
    A gives ``A K`` [DN^2/Hz] in the auto spectra and, if common to all outputs, in the cross
    spectrum.
    """
    mask = layout.mask().astype(np.float64)
    n = mask.size
    nfft = scipy.fft.next_fast_len(2 * n, real=True)
    mf = scipy.fft.rfft(mask, nfft)
    rho = scipy.fft.irfft(mf.real ** 2 + mf.imag ** 2, nfft)[:n]       # mask autocorrelation
    a = rho * cds_pink_autocovariance(np.arange(n), tgroup, tframe, nframes, dt)
    b = a.copy()
    b[1:] += a[1:][::-1]                                              # fold negative lags
    ex2 = scipy.fft.rfft(b).real                                      # E|X_k|^2
    return 2.0 * dt * ex2 / layout.nused


def log_bins(nf, nrows, nbins=40, kmin=1):
    """Logarithmic frequency bins over FFT indices ``kmin..nf-1``, skipping row-frequency harmonics.

    Returns a list of index arrays (non-empty), in increasing frequency.
    """
    k = np.arange(nf)
    keep = (k >= kmin) & (k % nrows != 0)
    edges = np.unique(np.round(np.geomspace(kmin, nf, nbins + 1)).astype(int))
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = k[lo:hi][keep[lo:hi]]
        if idx.size:
            bins.append(idx)
    return bins


def fit_linear_psd(y, design, nk, var_of_model, iterations=4):
    """Weighted linear least squares ``y ~ design @ p`` with model-based weights (IRLS).

    y : (nb,) binned spectrum; design : (nb, npar); nk : (nb,) FFT bins per bin;
    var_of_model : callable(model (nb,)) -> relative variance (nb,).
    Returns p (npar,), err (npar,), chi2_red.
    """
    nan = np.full(design.shape[1], np.nan)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(design))):
        return nan, nan.copy(), np.nan      # garbage-but-valid data (overflowing spectra): no fit
    model = np.maximum(y, np.finfo(float).tiny)
    p = np.zeros(design.shape[1])
    cov = np.full((design.shape[1],) * 2, np.nan)
    for _ in range(iterations):
        with np.errstate(over="ignore", invalid="ignore"):   # a flat (dead) output's spectrum is 0
            wgt = nk / np.maximum(var_of_model(model), np.finfo(float).tiny)
            aw = design * np.sqrt(wgt)[:, None]
            yw = y * np.sqrt(wgt)
        if not (np.all(np.isfinite(aw)) and np.all(np.isfinite(yw))):
            return nan, nan.copy(), np.nan
        try:
            p, *_ = np.linalg.lstsq(aw, yw, rcond=None)
        except np.linalg.LinAlgError:       # "SVD did not converge": NaN amplitudes, not a traceback
            return nan, nan.copy(), np.nan
        model = np.maximum(design @ p, np.finfo(float).tiny * 1e6)
    resid = (y - design @ p) * np.sqrt(wgt)
    dof = max(len(y) - design.shape[1], 1)
    chi2_red = float(resid @ resid / dof)
    try:
        cov = np.linalg.inv(aw.T @ aw) * chi2_red
    except np.linalg.LinAlgError:
        pass
    return p, np.sqrt(np.diag(cov)), chi2_red


def binning_matrix(nf, bins):
    """Sparse (nf, nb) matrix whose product with a spectrum (..., nf) gives the bin means (..., nb)."""
    import scipy.sparse

    rows = np.concatenate(bins)
    cols = np.concatenate([np.full(b.size, i) for i, b in enumerate(bins)])
    vals = np.concatenate([np.full(b.size, 1.0 / b.size) for b in bins])
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(nf, len(bins)))


def fit_binned_spectra(auto, cross, kb, nk, dt, live=None):
    """Fit white + 1/f to bin-averaged spectra (the core of :func:`fit_power_spectra`).

    Parameters
    ----------
    auto : ndarray (nout, nb) [DN^2/Hz]   bin means of the frame-averaged auto periodograms
    cross : ndarray (nb,) [DN^2/Hz]        bin means of the pair-averaged cross periodogram
    kb : ndarray (nb,)                     bin means of :func:`pink_kernel`
    nk : ndarray (nb,)                     FFT bins per bin
    dt : float [s]

    The weights are the inverse variances of Gaussian periodograms in which the correlated 1/f
    ``C = A_corr K`` is common to the outputs: a pair-averaged cross periodogram has variance
    ``(P^2 + C^2 + 2 (n-2) P C + (npairs - 1 - 2 (n-2)) C^2) / (2 npairs)`` (pairs sharing an
    output covary by ``P C / 2``, disjoint pairs by ``C^2 / 2``), an output's auto periodogram
    ``P^2``, the output mean ``(P^2 + (n-1) C^2) / n``; all per FFT bin and frame.

    ``live``: the outputs of the output mean and of the cross spectrum's pairs (default all;
    dead outputs, :func:`dead_outputs`, are left out); every output still gets its own fit.

    Returns the dict of :func:`fit_power_spectra` (errors from the fit covariance).
    """
    nall = auto.shape[0]
    live = list(range(nall)) if live is None else list(live)
    nout = len(live)
    white_col = np.full(len(kb), 2.0 * dt)
    mean_auto = auto[live].mean(axis=0)
    res = {}
    if nout > 1:
        npairs = nout * (nout - 1) / 2
        share, disjoint = 2 * (nout - 2), npairs - 1 - 2 * (nout - 2)

        def var_cross(c):
            return (mean_auto ** 2 + c ** 2 + share * mean_auto * c + disjoint * c ** 2) / (2 * npairs)

        p, err, chi2 = fit_linear_psd(cross, kb[:, None], nk, var_cross)
        res["a_corr"], res["a_corr_err"], res["chi2_corr"] = float(p[0]), float(err[0]), chi2
        common = np.maximum(res["a_corr"], 0.0) * kb
    else:
        res["a_corr"] = res["a_corr_err"] = res["chi2_corr"] = np.nan
        common = np.zeros(len(kb))
    design = np.column_stack([white_col, kb])
    wv, wv_err, at, at_err, chis = [], [], [], [], []
    for k in range(nall + 1):
        y = mean_auto if k == nall else auto[k]
        if k == nall:
            def var_of(m):
                return (m ** 2 + (nout - 1) * common ** 2) / nout
        else:
            def var_of(m):
                return m ** 2
        p, err, chi2 = fit_linear_psd(y, design, nk, var_of)
        wv.append(p[0])
        wv_err.append(err[0])
        at.append(p[1])
        at_err.append(err[1])
        chis.append(chi2)
    ac = res["a_corr"] if nout > 1 else 0.0
    ace = res["a_corr_err"] if nout > 1 else 0.0
    res.update({
        "white_var": np.array(wv[:nall]), "white_var_err": np.array(wv_err[:nall]),
        "a_total": np.array(at[:nall]), "a_total_err": np.array(at_err[:nall]),
        "a_uncorr": np.array(at[:nall]) - ac,
        "a_uncorr_err": np.hypot(np.array(at_err[:nall]), ace),
        "chi2_auto": np.array(chis[:nall]),
        "mean_white_var": wv[nall], "mean_white_var_err": wv_err[nall],
        "mean_a_total": at[nall], "mean_a_total_err": at_err[nall],
        "mean_a_uncorr": at[nall] - ac, "mean_a_uncorr_err": float(np.hypot(at_err[nall], ace)),
        "chi2_mean_auto": chis[nall],
    })
    return res


#: Fitted quantities that get jackknife errors (``<name>_err``), see :func:`jackknife_fit`.
FIT_QUANTITIES = ("a_corr", "white_var", "a_total", "a_uncorr", "mean_white_var", "mean_a_total",
                  "mean_a_uncorr")


def jackknife_fit(block_auto, block_cross, block_count, kb, nk, dt, live=None):
    """Delete-one-block jackknife errors of the power-spectrum fit.

    Parameters
    ----------
    block_auto : ndarray (nblocks, nout, nb)   per block: sums over its frames of the binned
                                               auto periodograms [DN^2/Hz]
    block_cross : ndarray (nblocks, nb)        the same for the pair-averaged cross periodogram
    block_count : ndarray (nblocks,)           frames per block
    kb, nk, dt, live                           as :func:`fit_binned_spectra`

    Returns
    -------
    dict name -> jackknife standard error (float or (nout,) array) for :data:`FIT_QUANTITIES`,
    ``nblocks`` used; empty when fewer than 3 blocks hold frames.
    """
    used = np.flatnonzero(block_count > 0)
    if used.size < 3:
        return {}
    tot_a, tot_c, tot_n = block_auto.sum(axis=0), block_cross.sum(axis=0), block_count.sum()
    fits = []
    for b in used:
        n = tot_n - block_count[b]
        fits.append(fit_binned_spectra((tot_a - block_auto[b]) / n, (tot_c - block_cross[b]) / n,
                                       kb, nk, dt, live))
    k = used.size
    out = {"nblocks": int(k)}
    for name in FIT_QUANTITIES:
        vals = np.array([np.asarray(f[name], float) for f in fits])
        out[name] = np.sqrt((k - 1) / k * np.sum((vals - vals.mean(axis=0)) ** 2, axis=0))
    return out


def fit_power_spectra(auto, cross, kernel, bins, dt, live=None):
    """Fit white + 1/f to the frame-averaged spectra.

    Parameters
    ----------
    auto : ndarray (nout, nf) [DN^2/Hz]   mean auto periodograms
    cross : ndarray (nf,) [DN^2/Hz]        mean pair-averaged cross periodogram (ignored if nout=1)
    kernel : ndarray (nf,)                 :func:`pink_kernel`
    bins : list of index arrays            :func:`log_bins`
    dt : float [s]
    live : outputs of the output mean and the cross pairs (:func:`fit_binned_spectra`)

    Returns
    -------
    dict: ``white_var`` (nout,) [DN^2 CDS variance] and errors, ``a_total`` (nout,) [DN^2],
    ``a_corr`` [DN^2] (NaN if nout == 1), ``a_uncorr`` (nout,), each with ``*_err`` (from the
    fit covariance scaled by the reduced chi-square); the same for the output-averaged auto
    spectrum (``mean_*``); ``chi2_*``.
    """
    nk = np.array([b.size for b in bins], float)
    kb = np.array([kernel[b].mean() for b in bins])
    auto_b = np.array([[a[b].mean() for b in bins] for a in np.atleast_2d(auto)])
    cross_b = np.array([cross[b].mean() for b in bins])
    return fit_binned_spectra(auto_b, cross_b, kb, nk, dt, live)


# ---------------------------------------------------------------------------------------------
# Reading ramp products group by group (memory-lean: one frame at a time)
# ---------------------------------------------------------------------------------------------
#: GROUPDQ bits that make a group unusable for CDS statistics (a saturated ramp's differences
#: are ~0 and would lower the noise); a CDS frame with more than MAX_FLAGGED_FRACTION of its
#: non-reference pixels flagged is left out of the group statistics and counted.
_FLAGGED_GROUP = np.uint8(dqflags.SATURATED | dqflags.DO_NOT_USE)
MAX_FLAGGED_FRACTION = 0.5


def nothing_measured(paths, units, excluded):
    """The note of a noise analysis of ``paths`` left with nothing to measure: every one of its
    ``units`` ('CDS frames', 'ramps') was ``excluded`` as flagged (a group saturated everywhere
    is a valid input: its outputs are written with NaN numbers and zero counts, and this note)."""
    return (f"no usable data: all {len(excluded)} {units} of the group's {len(paths)} file(s) are flagged "
            f"SATURATED/DO_NOT_USE on more than {100 * MAX_FLAGGED_FRACTION:.0f} % of the pixels "
            "(saturated everywhere or garbage data): nothing measured (NaN)")


@dataclass
class RampFile:
    """An open ramp product: metadata and lazy access to its frames."""

    path: str
    header: fits.Header
    meta: dict
    geom: Geometry
    shape: tuple
    pixeldq: np.ndarray
    _reader: object                 # the file's detcal.io.RampReader

    def frame(self, integration, group):
        """float64 (ny, nx) [DN] of one group (read from disk on demand)."""
        return np.asarray(self._reader.read("SCI", integration, group), np.float64)

    def flagged(self, integration, group, flags=_FLAGGED_GROUP):
        """bool (ny, nx): any of ``flags`` (default SATURATED or DO_NOT_USE) in GROUPDQ of one
        group (False without GROUPDQ)."""
        return (self._reader.read("GROUPDQ", integration, group) & np.uint8(flags)) != 0

    @property
    def pixel_time(self):
        """Time [s] between two pixel reads: TSAMPLE [us], or the NIR default without it."""
        tsample = keywords.optional(self.header, "TSAMPLE")
        return float(tsample) * 1e-6 if tsample else PIXEL_TIME_S


@contextmanager
def open_ramp(path, step="ramp_fit"):
    """Open a ramp product (RampModel layout or uncal) for frame-by-frame reading.

    Checks the keywords ``step`` needs (TFRAME/TGROUP for 'ramp_fit') and the SCI shape against
    NINTS/NGROUPS/SUBSIZE from the headers (:class:`detcal.io.RampReader`); raises
    :class:`detcal.errors.InputError` naming the file.
    """
    with io.RampReader(path, step) as reader:
        meta = keywords.require(reader.header, step, reader.path)
        geom = Geometry.from_header(reader.header, reader.shape, reader.path)
        yield RampFile(reader.path, reader.header, meta, geom, reader.shape, reader.read("PIXELDQ"), reader)


def check_same_configuration(first, other):
    """Raise InputError if ``other`` cannot be analysed together with ``first`` (RampFile):
    another configuration group (:func:`detcal.inventory.check_one_group`), frame shape or TGROUP."""
    inventory.check_one_group([first.header, other.header], [first.path, other.path], what="ramp")
    if first.shape[1:] != other.shape[1:]:
        raise InputError(other.path, f"frame shape {other.shape[1:]} differs from {first.shape[1:]}")
    if abs(first.meta["TGROUP"] - other.meta["TGROUP"]) > 1e-6 * first.meta["TGROUP"]:
        raise InputError(other.path, f"TGROUP={other.meta['TGROUP']} differs from {first.meta['TGROUP']}")


# ---------------------------------------------------------------------------------------------
# The analysis of one configuration group
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseParameters:
    """Parameters of the CDS noise decomposition (the rule's ``params.kwargs`` and their defaults).

    window, order, per_line, clip : time-domain 1/f smoothing (:func:`decompose_cds`): Savitzky-Golay
                                    window [pixels] and order (31, 3), per row or along the stream
                                    (False), outlier clip [sigma] (10)
    nbins : int                     logarithmic frequency bins of the fit and the table (40)
    row_overhead : int              pixel times per row beyond the output width [samples]
                                    (:data:`ROW_OVERHEAD`, NIRCam 12)
    max_temporal_pixels : int       pixels followed for the temporal statistics (2**19)
    min_frames : int                temporal statistics need at least this many CDS frames
                                    (:data:`MIN_TEMPORAL`)
    jackknife_blocks : int          keys (frames) are dealt in turn into this many blocks; the
                                    fitted amplitudes' errors are the delete-one-block jackknife
                                    errors (:data:`JACKKNIFE_BLOCKS`; fewer than 3 frames: errors
                                    from the fit covariance)
    """

    window: int = 31
    order: int = 3
    per_line: bool = False
    clip: float = 10.0
    nbins: int = 40
    row_overhead: int = ROW_OVERHEAD
    max_temporal_pixels: int = 2 ** 19
    min_frames: int = MIN_TEMPORAL
    jackknife_blocks: int = JACKKNIFE_BLOCKS


class _CdsSums:
    """Running statistics of a sequence of CDS frames: per-frame spatial variances, per-pixel
    temporal moments, periodogram sums and their jackknife blocks (one frame at a time)."""

    def __init__(self, geom, pixeldq, dt, tgroup, tframe, nframes, p):
        self.geom, self.dt, self.p = geom, dt, p
        self.nout, self.w = output_width(geom)
        ref = geom.reference_mask()
        good = np.ones(geom.shape, bool) if pixeldq is None else good_pixels(pixeldq)
        sets = {"active": ~ref & good, "reference": ref & good}
        sets = {k: v for k, v in sets.items() if v.any()}
        self.blocks_of = {name: readout_order(m, geom) for name, m in sets.items()}
        self.layout = stream_layout(readout_order(~ref, geom), p.row_overhead)
        # temporal accumulators: one per pixel set over the chosen pixels (flat indices of blocks)
        self.moments = {name: PixelMoments(COMPONENTS, subsample_rows(m.reshape(-1, m.shape[-1]),
                                                                      p.max_temporal_pixels))
                        for name, m in self.blocks_of.items()}
        self.spatial = {name: {c: [] for c in COMPONENTS} for name in self.blocks_of}  # per frame (nout,)
        self.nf = self.layout.nsamples // 2 + 1
        self.kernel = pink_kernel(self.layout, tgroup, tframe, nframes, dt)
        self.bins = log_bins(self.nf, self.layout.nrows, p.nbins)
        self.bmat = binning_matrix(self.nf, self.bins).T.tocsr()                # (nb, nf)
        self.nblk = max(int(p.jackknife_blocks), 1)
        self.blk_auto = np.zeros((self.nblk, self.nout, len(self.bins)))
        self.blk_cross = np.zeros((self.nblk, len(self.bins)))
        self.blk_count = np.zeros(self.nblk)
        self.sums = {"auto": np.zeros((self.nout, self.nf)), "auto2": np.zeros((self.nout, self.nf)),
                     "cross": np.zeros(self.nf), "cross2": np.zeros(self.nf)}
        self.count = 0
        self.block_of = {}

    def add(self, key, frame):
        """One CDS frame [DN] (mean frame already subtracted) of jackknife block key ``key``."""
        p, nout = self.p, self.nout
        blocks = readout_order(frame, self.geom)
        comp = decompose_cds(blocks, self.blocks_of.get("active", np.ones(blocks.shape, bool)),
                             p.window, p.order, p.per_line, p.clip)
        use_out = ~comp["outlier"]
        for name, bmask in self.blocks_of.items():
            sel = bmask & use_out
            for c in COMPONENTS:
                self.spatial[name][c].append([clipped_sigma(comp[c][k][sel[k]]) ** 2 if sel[k].any()
                                              else np.nan for k in range(nout)])
            self.moments[name].add([comp[c].reshape(-1, self.w) for c in COMPONENTS])
        streams, nused = frame_streams(comp["total"], self.layout, comp["outlier"])
        auto, cross = frame_periodograms(streams, nused, self.dt)
        self.sums["auto"] += auto
        self.sums["auto2"] += auto ** 2
        self.sums["cross"] += cross
        self.sums["cross2"] += cross ** 2
        b = self.block_of.setdefault(key, len(self.block_of) % self.nblk)
        self.blk_auto[b] += (self.bmat @ auto.T).T
        self.blk_cross[b] += self.bmat @ cross
        self.blk_count[b] += 1
        self.count += 1

    def dead_and_live(self):
        """Dead or flat outputs (:func:`dead_outputs` of the spatial total variance) and the live
        outputs as strings (all when every output looks dead)."""
        nout, dead = self.nout, []
        if "active" in self.spatial:    # dead/flat outputs: reported per output, left out of the averages
            v = np.asarray(self.spatial["active"]["total"], float).reshape(-1, nout)   # (frames, nout)
            dead = dead_outputs([np.nanmedian(v[:, k]) if np.isfinite(v[:, k]).any() else np.nan
                                 for k in range(nout)])
        live = [str(k) for k in range(nout) if k not in dead] or [str(k) for k in range(nout)]
        return dead, live


def cds_noise_rows(sums, h0, live, temporal_ok):
    """The noise rows: per pixel set, statistic (spatial, temporal), output and component, the
    raw and leakage-corrected variance [DN^2]; then the average of the live outputs ('all')."""
    nout, count = sums.nout, sums.count
    out_index = np.repeat(np.arange(nout), np.prod(sums.blocks_of[next(iter(sums.blocks_of))].shape[1:]))
    rows = []
    for name, bmask in sums.blocks_of.items():
        flat_out = out_index[sums.moments[name].index]
        flat_sel = bmask.reshape(-1)[sums.moments[name].index]
        for stat in ("spatial", "temporal"):
            raw = {}
            for c in COMPONENTS:
                if stat == "spatial":
                    v = np.asarray(sums.spatial[name][c], float).reshape(-1, nout)
                    raw[c] = [float(np.nanmedian(v[:, k])) if np.isfinite(v[:, k]).any() else np.nan
                              for k in range(nout)]
                else:
                    var = sums.moments[name].variance(c)
                    raw[c] = [median_variance(var[(flat_out == k) & flat_sel], count - 1)
                              if temporal_ok else np.nan for k in range(nout)]
            for k in range(nout):
                corr = leakage_corrected({c: raw[c][k] for c in COMPONENTS}, raw["white"][k], h0,
                                         len(live))        # the correlated 1/f is the live outputs' mean
                for c in COMPONENTS:
                    rows.append({"output": str(k), "pixels": name, "component": c, "statistic": stat,
                                 "var_raw": raw[c][k], "var": corr[c]})
            for c in COMPONENTS:   # output average: mean variance
                vals = [r for r in rows if r["pixels"] == name and r["statistic"] == stat
                        and r["component"] == c and r["output"] in live]
                rows.append({"output": "all", "pixels": name, "component": c, "statistic": stat,
                             "var_raw": float(np.mean([r["var_raw"] for r in vals])),
                             "var": float(np.mean([r["var"] for r in vals]))})
    return rows


def _scale_for_mean(sums, mean_scale):
    """Scale the spectra and spatial variances by n/(n-1) for the subtracted mean frame (in place)."""
    for key in ("auto", "cross"):
        sums.sums[key] *= mean_scale
        sums.sums[key + "2"] *= mean_scale ** 2
    sums.blk_auto *= mean_scale
    sums.blk_cross *= mean_scale
    for name in sums.spatial:
        for c in COMPONENTS:
            sums.spatial[name][c] = [[v * mean_scale for v in fr] for fr in sums.spatial[name][c]]


def spectra_and_fit(sums, dead, live):
    """Mean auto/cross periodograms, binned with their errors, and the 1/f + white fit with
    jackknife errors (:func:`fit_power_spectra`, :func:`jackknife_fit`). Returns (spectra, fit)."""
    s, count, bins, dt, nout = sums.sums, sums.count, sums.bins, sums.dt, sums.nout
    with np.errstate(divide="ignore", invalid="ignore"):     # no frame (all flagged): NaN spectra
        auto_mean = s["auto"] / count
        cross_mean = s["cross"] / count
        auto_var = np.maximum(s["auto2"] / count - auto_mean ** 2, 0.0)
        cross_var = np.maximum(s["cross2"] / count - cross_mean ** 2, 0.0)
    blk_cross = sums.blk_cross
    live_out = [int(k) for k in live]
    if dead and len(live_out) > 1:
        # a dead output's stream is flat (zero after the mean is subtracted): its pairs add 0 to
        # the pair sum, so the mean over the live pairs is the all-pair mean times this ratio
        ratio = (nout * (nout - 1)) / (len(live_out) * (len(live_out) - 1))
        cross_mean, cross_var, blk_cross = cross_mean * ratio, cross_var * ratio ** 2, blk_cross * ratio
    fit = fit_power_spectra(auto_mean, cross_mean, sums.kernel, bins, dt, live_out)
    nk = np.array([b.size for b in bins], float)
    jack = jackknife_fit(sums.blk_auto, blk_cross, sums.blk_count, np.asarray(sums.bmat @ sums.kernel), nk,
                         dt, live_out)
    fit["error_method"] = "fit covariance x reduced chi-square"
    if jack:
        for name in FIT_QUANTITIES:
            fit[f"{name}_err_fit"] = fit[f"{name}_err"]
            fit[f"{name}_err"] = jack[name]
        fit["error_method"] = f"delete-one-block jackknife, {jack['nblocks']} blocks of integrations"
    freq_all = np.arange(sums.nf) / (sums.layout.nsamples * dt)

    def binned(a, var=None):
        if var is None:
            return np.array([a[..., b].mean(axis=-1) for b in bins]).T
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.array([np.sqrt(var[..., b].sum(axis=-1) / count) / b.size for b in bins]).T

    spectra = {
        "freq": np.array([freq_all[b].mean() for b in bins]),
        "nbins_fft": np.array([b.size for b in bins]),
        "auto": binned(auto_mean), "auto_err": binned(auto_mean, auto_var),
        "cross": binned(cross_mean), "cross_err": binned(cross_mean, cross_var),
        "kernel": binned(sums.kernel),
    }
    return spectra, fit


@keyword_parameters(NoiseParameters)
def analyse_cds_frames(frames, geom, pixeldq=None, dt=PIXEL_TIME_S, tgroup=None, tframe=None,
                       nframes=1, mean_frame=None, parameters=None):
    """CDS noise decomposition and power spectra of a sequence of CDS frames (no file access).

    Parameters
    ----------
    frames : iterable of ndarray (ny, nx) [DN], science frame, or of (key, frame)
        CDS frames (independent group pairs); consumed one at a time. Frames with the same
        ``key`` go to the same jackknife block (the workflow passes the integration: the 1/f
        makes the lowest frequencies of the CDS frames of one integration covary).
    geom : detcal.geometry.Geometry
    pixeldq : ndarray uint32 (ny, nx) or None    DO_NOT_USE pixels are left out of statistics
    dt : float [s]                               pixel read time
    tgroup, tframe : float [s]; nframes : int    CDS timing (for the 1/f kernel)
    mean_frame : (mean, count) or None           :func:`mean_cds_frame` of the same frames:
                                                 subtracted from every frame (the dark signal
                                                 and any fixed pattern of a CDS is not noise);
                                                 the variances and spectra are then scaled by
                                                 n/(n-1) (n = the frames in a pixel's mean)
    window, order, per_line, clip, nbins, row_overhead, max_temporal_pixels, min_frames,
    jackknife_blocks
        :class:`NoiseParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict with ``nframes``; ``noise`` (list of row dicts: output, pixels, component, statistic,
    var_raw, var [DN^2]); ``spectra`` (freq [Hz] (nb,), auto (nout, nb), auto_err, cross (nb,),
    cross_err, kernel (nb,) [DN^2/Hz]); ``fit`` (see :func:`fit_power_spectra`); ``h0``;
    ``dead_outputs`` (0-based, :func:`dead_outputs`): kept in the per-output rows, left out of
    the ``all`` rows (the mean variance of the live outputs). No frame at all (``nframes`` 0):
    the same structure with NaN variances, spectra and fit.
    """
    p = parameters
    sums = _CdsSums(geom, pixeldq, dt, tgroup, tframe, nframes, p)
    h0 = savgol_leakage(p.window, p.order)
    mean_scale = 1.0
    if mean_frame is not None:
        mean_img, mean_n = mean_frame
        n_typ = float(np.median(mean_n[mean_n > 1])) if (mean_n > 1).any() else 2.0
        mean_scale = n_typ / (n_typ - 1.0)
    for frame in frames:
        key = sums.count
        if isinstance(frame, tuple):                    # (block key, frame): e.g. one integration
            key, frame = frame
        if mean_frame is not None:
            frame = frame - mean_img
        sums.add(key, frame)
    # no frame (every one flagged, e.g. a saturated group): the rows, spectra and fit are NaN
    temporal_ok = sums.count > 0 and sums.count >= p.min_frames
    dead, live = sums.dead_and_live()
    rows = cds_noise_rows(sums, h0, live, temporal_ok)
    if mean_scale != 1.0:
        _scale_for_mean(sums, mean_scale)
    spectra, fit = spectra_and_fit(sums, dead, live)
    return {"nframes": sums.count, "temporal_ok": temporal_ok, "noise": rows, "spectra": spectra,
            "fit": fit, "h0": h0, "layout": sums.layout, "nout": sums.nout, "dt": dt, "dead_outputs": dead}


# ---------------------------------------------------------------------------------------------
# Tables, figures and the file-level function
# ---------------------------------------------------------------------------------------------
def noise_table(result, gains):
    """CDS noise table from :func:`analyse_cds_frames`: one row per amplifier/pixels/component/statistic.

    Columns: amplifier ('1'..'N' = output index + 1, 'all' = sqrt of the mean variance of the
    live outputs), pixels (active/reference),
    component, statistic (spatial/temporal), cds_noise_DN, cds_noise_e (leakage-corrected),
    cds_noise_raw_DN, cds_noise_raw_e (filter output as is), gain_e_per_DN, n_cds_frames,
    temporal_valid.
    """
    gains = np.asarray(gains, float)
    rows = []
    for r in result["noise"]:
        all_ = r["output"] == "all"           # the result's rows carry the 0-based output index
        g = mean_gain(gains) if all_ else float(gains[int(r["output"])])
        rows.append({"amplifier": "all" if all_ else str(int(r["output"]) + 1),
                     "pixels": r["pixels"], "component": r["component"],
                     "statistic": r["statistic"],
                     "cds_noise_DN": np.sqrt(r["var"]), "cds_noise_e": np.sqrt(r["var"]) * g,
                     "cds_noise_raw_DN": np.sqrt(r["var_raw"]), "cds_noise_raw_e": np.sqrt(r["var_raw"]) * g,
                     "gain_e_per_DN": g, "n_cds_frames": result["nframes"],
                     "temporal_valid": bool(result["temporal_ok"])})
    return pd.DataFrame(rows)


def spectrum_table(result):
    """Binned power spectra and the fitted model [DN^2/Hz], one row per frequency bin.

    Columns (amplifier ``a`` = output index + 1): frequency_Hz, n_fft_bins,
    psd_amplifier{a}_DN2_per_Hz (+ _err), psd_mean_DN2_per_Hz,
    psd_cross_DN2_per_Hz (+ _err: correlated part), model_white_DN2_per_Hz (output mean),
    model_pink_corr_DN2_per_Hz, model_pink_uncorr_DN2_per_Hz (output mean),
    model_total_DN2_per_Hz (output mean), model_amplifier{a}_DN2_per_Hz.
    """
    s, fit = result["spectra"], result["fit"]
    nout = result["nout"]
    dt2 = 2.0 * result["dt"]
    cols = {"frequency_Hz": s["freq"], "n_fft_bins": s["nbins_fft"]}
    for k in range(nout):
        cols[f"psd_amplifier{k + 1}_DN2_per_Hz"] = s["auto"][k]
        cols[f"psd_amplifier{k + 1}_err_DN2_per_Hz"] = s["auto_err"][k]
    live = [k for k in range(nout) if k not in result.get("dead_outputs", ())] or list(range(nout))
    cols["psd_mean_DN2_per_Hz"] = s["auto"][live].mean(axis=0)          # dead outputs left out
    cols["psd_cross_DN2_per_Hz"] = s["cross"] if nout > 1 else np.full(len(s["freq"]), np.nan)
    cols["psd_cross_err_DN2_per_Hz"] = s["cross_err"] if nout > 1 else np.full(len(s["freq"]), np.nan)
    a_corr = fit["a_corr"] if nout > 1 else 0.0
    cols["model_white_DN2_per_Hz"] = np.full(len(s["freq"]), dt2 * fit["mean_white_var"])
    cols["model_pink_corr_DN2_per_Hz"] = a_corr * s["kernel"] if nout > 1 else np.full(len(s["freq"]), np.nan)
    cols["model_pink_uncorr_DN2_per_Hz"] = fit["mean_a_uncorr"] * s["kernel"]
    cols["model_total_DN2_per_Hz"] = dt2 * fit["mean_white_var"] + fit["mean_a_total"] * s["kernel"]
    for k in range(nout):
        cols[f"model_amplifier{k + 1}_DN2_per_Hz"] = dt2 * fit["white_var"][k] + fit["a_total"][k] * s["kernel"]
    return pd.DataFrame(cols)


def fit_summary(result, gains):
    """The fitted amplitudes in DN and e-, in the convention of :mod:`detcal.noise_conventions`.

    ``white`` and ``pink_uncorr`` per amplifier (keys '1'..'N' = output index + 1) and ``'all'``
    (output average); ``pink_corr`` (common to all outputs, None for one output).
    """
    fit, dt = result["fit"], result["dt"]
    gains = np.asarray(gains, float)
    gmean = mean_gain(gains)

    def rms(a, err, g):
        r = float(pink_rms(a, dt))
        e = 0.5 * abs(r) * err / abs(a) if a else np.nan
        psd, psd_err = float(pink_psd(a)), float(pink_psd(err))
        return {"A_DN2": float(a), "A_err_DN2": float(err), "rms_DN": r, "rms_err_DN": e,
                "rms_e": r * g, "rms_err_e": e * g,
                "psd_1Hz_DN2_per_Hz": psd, "psd_1Hz_err_DN2_per_Hz": psd_err,
                "psd_1Hz_e2_per_Hz": psd * g ** 2, "psd_1Hz_err_e2_per_Hz": psd_err * g ** 2}

    def white(v, err, g):
        s = float(np.sqrt(max(v, 0.0)))
        e = 0.5 * err / s if s > 0 else np.nan
        return {"cds_noise_DN": s, "cds_noise_err_DN": e, "cds_noise_e": s * g, "cds_noise_err_e": e * g}

    nout = result["nout"]
    out = {
        "white": {**{str(k + 1): white(fit["white_var"][k], fit["white_var_err"][k], gains[k]) for k in range(nout)},
                  "all": white(fit["mean_white_var"], fit["mean_white_var_err"], gmean)},
        "pink_corr": rms(fit["a_corr"], fit["a_corr_err"], gmean) if nout > 1 else None,
        "pink_uncorr": {**{str(k + 1): rms(fit["a_uncorr"][k], fit["a_uncorr_err"][k], gains[k]) for k in range(nout)},
                        "all": rms(fit["mean_a_uncorr"], fit["mean_a_uncorr_err"], gmean)},
        "chi2_reduced": {"cross": fit["chi2_corr"], "auto": list(fit["chi2_auto"]),
                         "mean_auto": fit["chi2_mean_auto"]},
    }
    return out


def headline_numbers(fit, nout):
    """The group summary's numbers (key columns: ``cds_noise_DN`` first) from :func:`fit_summary`.

    White CDS noise of the output average [DN, e-]; correlated (4 outputs) and uncorrelated
    (output average) 1/f as PSD level at 1 Hz [e-^2/Hz] and rms over 1/T_ref..Nyquist [e-];
    each with its jackknife error (``*_err_*``).
    """
    w = fit["white"]["all"]
    out = {"cds_noise_DN": w["cds_noise_DN"], "cds_noise_err_DN": w["cds_noise_err_DN"],
           "cds_noise_e": w["cds_noise_e"], "cds_noise_err_e": w["cds_noise_err_e"]}
    for name, d in (("pink_corr", fit["pink_corr"] if nout > 1 else None), ("pink_uncorr", fit["pink_uncorr"]["all"])):
        if d is None:
            continue
        out.update({f"{name}_rms_e": d["rms_e"], f"{name}_rms_err_e": d["rms_err_e"],
                    f"{name}_psd_1Hz_e2_per_Hz": d["psd_1Hz_e2_per_Hz"],
                    f"{name}_psd_1Hz_err_e2_per_Hz": d["psd_1Hz_err_e2_per_Hz"]})
    return out


def plot_cds_noise(table, path, title=""):
    """Bar chart of the CDS noise components (active pixels) per amplifier: spatial and temporal panels."""
    t = table[table.pixels == "active"]
    amps = [a for a in t.amplifier.unique() if a != "all"] + ["all"]
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    width = 0.8 / len(COMPONENTS)
    labels = {"total": "total", "white": "white", "pink_corr": "correlated 1/f",
              "pink_uncorr": "uncorrelated 1/f"}
    for ax, stat in zip(axs, ("spatial", "temporal")):
        ts = t[t.statistic == stat]
        for i, comp in enumerate(COMPONENTS):
            vals = [ts[(ts.amplifier == a) & (ts.component == comp)].cds_noise_DN.mean() for a in amps]
            ax.bar(np.arange(len(amps)) + (i - 1.5) * width, vals, width, label=labels[comp])
        ax.set_xticks(np.arange(len(amps)))
        ax.set_xticklabels([f"amplifier {a}" if a != "all" else "average" for a in amps])
        ax.set_xlabel("amplifier")
        ax.set_ylabel("CDS noise [DN]")
        valid = bool(ts.temporal_valid.iloc[0]) if len(ts) else False
        note = "" if stat == "spatial" or valid else f" (not computed: < {MIN_TEMPORAL} CDS frames)"
        ax.set_title(f"{stat}{note}", fontsize=10)
        g = ts.gain_e_per_DN.mean() if len(ts) else np.nan
        if np.isfinite(g):
            sec = ax.secondary_yaxis("right", functions=(lambda y, g=g: y * g, lambda y, g=g: y / g))
            sec.set_ylabel("CDS noise [e-]")
    top = np.nanmax(t.cds_noise_DN.to_numpy(float)) if t.cds_noise_DN.notna().any() else 1.0
    axs[0].set_ylim(0, 1.3 * top)
    axs[0].legend(fontsize=8, loc="upper center", ncol=4)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_power_spectrum(table, path, title=""):
    """CDS power spectra (log-log) with the white + 1/f model: output mean (left), per output (right)."""
    f = table.frequency_Hz
    fig, axs = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    ax = axs[0]
    ax.loglog(f, table.psd_mean_DN2_per_Hz, "o", ms=4, color="k", label="mean over outputs")
    if table.psd_cross_DN2_per_Hz.notna().any():
        pos = table.psd_cross_DN2_per_Hz > 0
        ax.errorbar(f[pos], table.psd_cross_DN2_per_Hz[pos], yerr=table.psd_cross_err_DN2_per_Hz[pos],
                    fmt="s", ms=3, color="C1", label="cross spectrum (correlated part)")
        ax.loglog(f, table.model_pink_corr_DN2_per_Hz, "-", color="C1", label="model: correlated 1/f")
    ax.loglog(f, table.model_white_DN2_per_Hz, "--", color="C0", label="model: white")
    pos = table.model_pink_uncorr_DN2_per_Hz > 0
    ax.loglog(f[pos], table.model_pink_uncorr_DN2_per_Hz[pos], "-", color="C2", label="model: uncorrelated 1/f")
    ax.loglog(f, table.model_total_DN2_per_Hz, "-", color="k", lw=1.5, label="model: total")
    ax.set_title("output average", fontsize=10)
    ax.legend(fontsize=8)
    ax = axs[1]
    a = 1
    while f"psd_amplifier{a}_DN2_per_Hz" in table:
        ax.loglog(f, table[f"psd_amplifier{a}_DN2_per_Hz"], "o", ms=3, color=f"C{a - 1}", label=f"amplifier {a}")
        ax.loglog(f, table[f"model_amplifier{a}_DN2_per_Hz"], "-", color=f"C{a - 1}", lw=1)
        a += 1
    ax.set_title("per amplifier (lines: white + 1/f fits)", fontsize=10)
    ax.legend(fontsize=8)
    for ax in axs:
        ax.set_xlabel("frequency [Hz]")
        ax.set_ylabel("CDS power spectral density [DN$^2$/Hz]")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _iter_cds(paths, first, max_frames=None, keyed=False, excluded=None):
    """CDS frames of every integration of every file; ``keyed``: ((file, integration), frame).

    Frames whose groups are flagged (SATURATED/DO_NOT_USE) on more than MAX_FLAGGED_FRACTION of
    the non-reference pixels (a ramp saturated everywhere) are skipped; ``excluded`` (a list)
    receives their (file name, integration, g0, g1).
    """
    n = 0
    science = ~first.geom.reference_mask()
    for f, path in enumerate(paths):
        with open_ramp(path) as ramp:
            check_same_configuration(first, ramp)
            for i in range(ramp.shape[0]):
                for g0, g1 in cds_pairs(ramp.shape[1]):
                    if max_frames is not None and n >= max_frames:
                        return
                    flagged = (ramp.flagged(i, g0) | ramp.flagged(i, g1))[science]
                    if flagged.size and flagged.mean() > MAX_FLAGGED_FRACTION:
                        if excluded is not None:
                            excluded.append((os.path.basename(path), i, g0, g1))
                        continue
                    cds = ramp.frame(i, g1) - ramp.frame(i, g0)
                    yield ((f, i), cds) if keyed else cds
                    n += 1


def _open_noise_group(paths, gain_path, gain, pixel_time):
    """Read the group's first ramp's metadata, the OR of every PIXELDQ and the output gains.

    InputError unless NIR with NGROUPS >= 2 and every file in the first one's configuration.
    Returns (meta, geom, header, pixeldq, active, gains, dt, first ramp file).
    """
    with open_ramp(paths[0]) as first:
        meta, geom, header = first.meta, first.geom, first.header
        if geom.family != "NIR":
            raise InputError(first.path, f"noise decomposition needs an H2RG-like (NIR) detector, "
                                         f"got INSTRUME={meta['INSTRUME']}")
        if meta["NGROUPS"] < 2:
            raise InputError(first.path, "noise decomposition needs NGROUPS >= 2 (CDS pairs)")
        pixeldq = first.pixeldq.copy()
        active = ~geom.reference_mask() & good_pixels(pixeldq)
        gains = output_gains(gain_path, header, first.shape, geom.amplifier_map(), active, gain)
        dt = float(pixel_time) if pixel_time else first.pixel_time
        for path in paths[1:]:
            with open_ramp(path) as other:
                check_same_configuration(first, other)
                pixeldq |= other.pixeldq
    return meta, geom, header, pixeldq, active, gains, dt, first


def decomposition_note(result, min_frames):
    """What the numbers leave out: temporal statistics, dead outputs, a failed spectrum fit."""
    dead = [k + 1 for k in result["dead_outputs"]]
    limit = f" (CDS noise < {np.sqrt(DEAD_OUTPUT_FRACTION):g} x the largest output's)"
    fit_failed = not np.isfinite(result["fit"].get("mean_white_var", np.nan))
    return join_notes(
        log,
        not result["temporal_ok"] and temporal_note("CDS noise", result["nframes"], "CDS frame", min_frames),
        dead and dead_amplifier_note(dead, "left out of the output averages", limit),
        fit_failed and "power-spectrum fit not computed: non-finite or degenerate spectra (NaN amplitudes)")


def decomposition_conventions(result, p, dt):
    """The ``conventions`` block of the noise-decomposition JSON."""
    return {
        "cds": "independent pairs data[1::2] - data[0::2] of every integration (last group dropped if odd)",
        "noise": "CDS noise (std of a difference of two groups); single-read noise = CDS / sqrt(2)",
        "readout_order": "detector frame (FASTAXIS/SLOWAXIS), output stripes, odd outputs flipped",
        "time_domain": f"Savitzky-Golay window {p.window}, order {p.order}, "
                       f"{'per row' if p.per_line else 'along the readout stream'}; correlated = "
                       "output mean of the smoothed streams, uncorrelated = remainder, "
                       "white = data - smoothed",
        "leakage_correction": f"white / sqrt(1 - h0), pink_corr^2 - h0 white^2/nout, pink_uncorr^2 - "
                              f"h0 white^2 (1 - 1/nout); h0 = {result['h0']:.5f}; *_raw columns uncorrected",
        "psd": "one-sided periodogram 2 dt |rfft|^2 / n of mean-subtracted readout-ordered streams, row "
               "overhead and reference columns zero, averaged over frames; cross = Re(X_i X_j*) averaged "
               "over output pairs",
        "model": "P(f) = 2 dt W + A K(f), K = exact expected CDS periodogram of a unit 1/f stream "
                 "S(f) = 1/f (CDS lag TGROUP, NFRAMES averaging, sampling mask); fitted by weighted "
                 "least squares over log bins, row-frequency harmonics excluded",
        "amplitudes": f"A [DN^2] of the one-sided S(f) = A/f per stream; "
                      f"psd_1Hz = A / ({REF_FREQUENCY_HZ:g} Hz) [DN^2/Hz, e-^2/Hz]; "
                      f"rms = sqrt(A ln(T_ref/(2 dt))) = rms over "
                      f"{rms_band(dt)[0]:.4g}..{rms_band(dt)[1]:.4g} Hz (1/T_ref..Nyquist, T_ref = "
                      f"{REF_TIME_S} s; detcal.noise_conventions, the NGHXRG/pynrc c_pink/u_pink "
                      "convention); white = sqrt(W), CDS noise",
        "errors": result["fit"]["error_method"],
        "input": "superbias + refpix with the top/bottom reference rows only, no side reference "
                 "pixels (NRC-09/pynrc; detcal.noise_conventions.REFPIX_PARAMETERS)",
    }


def decomposition_summary(result, paths, meta, header, gain_path, gains, excluded, note, p, dt):
    """The JSON document of a noise decomposition (configuration, inputs, conventions, fit)."""
    layout = result["layout"]
    ident = {k: meta.get(k) for k in ("DETECTOR", "SUBARRAY", "NGROUPS", "NFRAMES", "GROUPGAP", "TFRAME",
                                      "TGROUP")}
    ident.update({k: header.get(k) for k in ("READPATT", "NOUTPUTS", "FASTAXIS", "SLOWAXIS")})
    dead = [k + 1 for k in result["dead_outputs"]]
    summary = {
        "analysis": "CDS noise decomposition and power spectra",
        "configuration": ident,
        "inputs": [os.path.basename(x) for x in paths],
        "gain_reference": os.path.basename(gain_path) if gain_path else None,
        "gain_e_per_DN": list(gains),
        "n_cds_frames": result["nframes"], "temporal_valid": result["temporal_ok"],
        "n_cds_frames_excluded_flagged": len(excluded),
        "dead_amplifiers": dead, "n_dead_amplifiers": len(dead),
        "cds_frames_excluded_flagged": [list(e) for e in excluded],
        "min_cds_frames_temporal": p.min_frames, "note": note,
        "conventions": decomposition_conventions(result, p, dt),
        "pixel_time_s": dt, "row_overhead": p.row_overhead,
        "stream": {"rows": [layout.rows.start, layout.rows.stop], "columns_used": int(layout.colmask.sum()),
                   "row_samples": layout.row_samples, "nsamples": layout.nsamples},
        "fit": fit_summary(result, gains),
    }
    summary["summary"] = headline_numbers(summary["fit"], result["nout"])
    return summary


@keyword_parameters(NoiseParameters)
def noise_decomposition_files(ramp_paths, table_path, spectrum_table_path, json_path,
                              cds_figure_path, psd_figure_path, gain_path=None, gain=None,
                              pixel_time=None, max_frames=None, title=None, parameters=None):
    """CDS noise decomposition and power spectra of one configuration group.

    Read (:func:`_open_noise_group`, CDS frames one at a time) -> measure
    (:func:`mean_cds_frame`, :func:`analyse_cds_frames`) -> tables, JSON
    (:func:`decomposition_summary`) and figures.

    Parameters
    ----------
    ramp_paths : list of str        ramp products of one group (NIR ``linearity`` or ``refpix``
                                    products: superbias and refpix applied, 1/f in); CDS frames
                                    from independent group pairs of every integration
    table_path : str                TSV, :func:`noise_table` (CDS noise, DN and e-)
    spectrum_table_path : str       TSV, :func:`spectrum_table` (binned PSD + model, DN^2/Hz)
    json_path : str                 fitted amplitudes (:func:`fit_summary`), conventions, inputs
    cds_figure_path, psd_figure_path : str   PNG figures drawn from the two tables (None: not drawn)
    gain_path : str or None         GAIN reference [e-/DN]; ``gain``: a number instead
    pixel_time : float or None      [s]; default header TSAMPLE [us] or 10 us
    max_frames : int or None        use at most this many CDS frames
    title : str or None             figure titles (default: DETECTOR SUBARRAY READPATT)
    window, order, per_line, clip, nbins, row_overhead, max_temporal_pixels, min_frames,
    jackknife_blocks
        :class:`NoiseParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    (noise table, spectrum table, summary dict)
    """
    p = parameters
    paths = [str(x) for x in ramp_paths]
    if not paths:
        raise ValueError("no ramp files given")
    meta, geom, header, pixeldq, active, gains, dt, first_stub = _open_noise_group(paths, gain_path, gain,
                                                                                  pixel_time)
    log.info("noise decomposition: %d file(s), %s, NGROUPS=%d, dt=%g s", len(paths),
             meta["DETECTOR"], meta["NGROUPS"], dt)
    mean = mean_cds_frame(_iter_cds(paths, first_stub, max_frames), geom.shape, active, p.clip)
    excluded = []
    result = analyse_cds_frames(_iter_cds(paths, first_stub, max_frames, keyed=True, excluded=excluded),
                                geom, pixeldq, dt=dt, tgroup=meta["TGROUP"], tframe=meta["TFRAME"],
                                nframes=meta["NFRAMES"], mean_frame=mean, parameters=p)
    if excluded:
        log.warning("noise decomposition: %d CDS frame(s) left out: groups flagged SATURATED/DO_NOT_USE "
                    "on more than %.0f %% of the pixels (%s)", len(excluded),
                    100 * MAX_FLAGGED_FRACTION, sorted({e[0] for e in excluded}))
    note = decomposition_note(result, p.min_frames)
    if result["nframes"] == 0:      # every CDS frame flagged: NaN numbers, this note
        note = nothing_measured(paths, "CDS frames", excluded)
        log.warning("noise decomposition: %s", note)
    ntab = noise_table(result, gains)
    stab = spectrum_table(result)
    for table, path in ((ntab, table_path), (stab, spectrum_table_path)):
        tables.write_tsv(table, path, float_format="%.6g")
    summary = decomposition_summary(result, paths, meta, header, gain_path, gains, excluded, note, p, dt)
    if result["nframes"] == 0:
        summary["summary"]["note"] = note           # the group's summary row says why it is NaN
    tables.write_json(summary, json_path)
    ident = summary["configuration"]
    label = title or " ".join(str(ident.get(k)) for k in ("DETECTOR", "SUBARRAY", "READPATT") if ident.get(k))
    if cds_figure_path:
        plot_cds_noise(ntab, cds_figure_path,
                       title=f"CDS noise {label} ({result['nframes']} CDS frames) {note}")
    if psd_figure_path:
        plot_power_spectrum(stab, psd_figure_path,
                            title=f"CDS power spectrum {label} ({result['nframes']} frames)")
    return ntab, stab, summary
