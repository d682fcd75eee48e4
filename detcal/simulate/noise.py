"""Time-domain noise of an H2RG readout: 1/f ("pink") streams in pixel-read order.

The readout clock (detector frame): output k reads columns ``[k*w, (k+1)*w)`` (``w = nx/noutputs``),
k even from low to high column, k odd from high to low (see :mod:`detcal.geometry`); rows in
increasing order. Pixel ``j`` (fast-scan position) of row ``r`` of a frame is read at sample
``r*(w + row_overhead) + j`` of that frame's window; the window has
:func:`~detcal.simulate.params.frame_samples` samples (rows + overhead rows + the extra pixel of
the NIRCam frame-time formula). Frame ``f`` starts at sample ``f*P`` where ``P = max(window,
round(TFRAME/pixel_time))``: when TFRAME is overridden to be longer than the array needs (a mini
detector with full-frame timing) the rest of the frame period is idle time of the same stream.

1/f amplitude convention (defined in :mod:`detcal.noise_conventions`, shared with the
analyses): one-sided power spectral density ``S(f) = A/f`` [e-^2/Hz] with
``A = rms^2 / ln(T_ref / (2*pixel_time))``, i.e. ``rms`` is the standard deviation of the stream
over the band from ``1/T_ref`` to the Nyquist frequency, ``T_ref`` = one full-frame time
(10.73677 s). It is a property of the detector, independent of the exposure length.
"""

import numpy as np

from ..multiaccum import PIXEL_TIME_S, ROW_OVERHEAD, frame_samples
from ..noise_conventions import pink_amplitude  # noqa: F401  (the analyses' convention)

#: Largest stream (samples) the exact method generates in one FFT (2x this is transformed).
EXACT_MAX_SAMPLES = 2**24

#: Split method: lowest bin of the per-window (fine) spectrum; the coarse stream covers below it.
FINE_KMIN = 4


def _filter(nfft, dt, fmin=0.0, fmax=np.inf):
    """Amplitude filter (nfft//2+1,) float32 of a unit 1/f spectrum (A = 1), zero outside [fmin, fmax).

    ``E|X_k|^2 = nfft * S(f_k) / (2 dt)`` with complex normal ``X_k = filter_k * (g1 + i g2)``,
    so that ``irfft(X, nfft)`` has the variance ``sum_k S(f_k) / (nfft dt)`` (each bin stands for
    the band of width ``1/(nfft dt)`` around it). The DC and Nyquist bins are zero.
    """
    nf = nfft // 2 + 1
    k = np.arange(nf, dtype=np.float64)
    f = k / (nfft * dt)
    keep = (k > 0) & (f >= fmin) & (f < fmax)
    keep[-1] &= bool(nfft % 2)  # no Nyquist bin for even nfft
    filt = np.zeros(nf, np.float32)
    filt[keep] = (nfft / (2.0 * np.sqrt(dt * f[keep]))) / np.sqrt(nfft)   # sqrt(nfft/(4 dt f))
    return filt


def _fft():
    """scipy.fft, imported at first use: the workflow imports this package to plan the demo's
    files at every Snakemake start (each SLURM job's too), where nothing is simulated."""
    import scipy.fft

    return scipy.fft


def _draw(filt, amp, nfft, rng):
    """One random stream (nfft,) float32 from a filter of :func:`_filter` and amplitude ``amp``."""
    nf = filt.size
    spec = np.empty(nf, np.complex64)
    spec.real = rng.standard_normal(nf, dtype=np.float32)
    spec.imag = rng.standard_normal(nf, dtype=np.float32)
    spec *= filt * np.float32(np.sqrt(amp))
    return _fft().irfft(spec, n=nfft, workers=1)


def pink_stream(n, amp, dt, rng, fmin=0.0, fmax=np.inf, nstreams=None):
    """1/f stream(s): float32 (n,) or (nstreams, n) [e-], PSD ``amp/f`` between
    ``max(fmin, 1/(2 n dt))`` and ``fmax``.

    Each is the first half of an FFT stream of length >= 2n (not periodic over n).
    """
    nfft = _fft().next_fast_len(2 * int(n), real=True)
    filt = _filter(nfft, dt, fmin, fmax)
    out = np.stack([_draw(filt, amp, nfft, rng)[:n] for _ in range(nstreams or 1)])
    return out if nstreams else out[0]


def choose_method(nframes_total, period, window, nread, method="auto"):
    """'exact' or 'split' for a stream of ``nframes_total`` frame periods (see :func:`pink_windows`)."""
    if method in ("exact", "split"):
        return method
    if method != "auto":
        raise ValueError(f"pink_method must be 'auto', 'exact' or 'split', got {method!r}")
    total = nframes_total * period
    return "exact" if (total <= EXACT_MAX_SAMPLES and total <= 4 * nread * window) else "split"


def pink_windows(read_frames, nframes_total, period, window, rms, rng, pixel_time=PIXEL_TIME_S,
                 method="auto", nstreams=None):
    """1/f noise of one continuous time stream, sampled in the read windows of the given frames.

    Parameters
    ----------
    read_frames : sequence of int
        Frame indices (0-based, from reset) that are read; frame f occupies samples
        ``[f*period, f*period + window)`` of the stream.
    nframes_total : int
        Frames in the integration (read or skipped); the stream spans ``nframes_total*period``.
    period, window : int
        Samples per frame period and per read window (``window <= period``).
    rms : float [e-]
        Amplitude (see the module docstring).
    rng : numpy.random.Generator
    method : 'auto' | 'exact' | 'split'
        'exact': one stream over the whole integration (one FFT); 'split': fine band (periods
        shorter than ~half a window) generated independently per window, plus a coarse
        band-limited stream over the whole integration, linearly interpolated; both have the same
        spectrum and the same window-to-window correlations (to a few %). 'auto' uses
        'exact' unless it would generate more than 4x the samples read or more than
        :data:`EXACT_MAX_SAMPLES`.
    nstreams : int, optional
        Number of independent streams (e.g. one per output); None = one, without that axis.

    Returns
    -------
    ndarray, float32, shape (len(read_frames), window) or (nstreams, len(read_frames), window) [e-]
    """
    read_frames = np.asarray(read_frames, int)
    nread = len(read_frames)
    out = np.zeros((nstreams or 1, nread, window), np.float32)
    if window > period:
        raise ValueError(f"read window ({window} samples) longer than the frame period ({period})")
    if rms == 0 or nread == 0:
        return out if nstreams else out[0]
    amp = pink_amplitude(rms, pixel_time)
    if choose_method(nframes_total, period, window, nread, method) == "exact":
        total = nframes_total * period
        nfft = _fft().next_fast_len(2 * total, real=True)
        filt = _filter(nfft, pixel_time)
        for s in range(nstreams or 1):
            stream = _draw(filt, amp, nfft, rng)
            for i, f in enumerate(read_frames):
                out[s, i] = stream[f * period:f * period + window]
            del stream
        return out if nstreams else out[0]
    # Fine band: bins k >= FINE_KMIN of a 2*window FFT, independent per window (bin k stands for
    # [k-1/2, k+1/2] / (nfft dt)). Its window means are small, so window-to-window correlations
    # come from the coarse band below it: one stream over the whole integration sampled every
    # window/32 pixel times and linearly interpolated.
    nfft = _fft().next_fast_len(2 * window, real=True)
    f_split = (FINE_KMIN - 0.5) / (nfft * pixel_time)
    filt = _filter(nfft, pixel_time, fmin=f_split)
    step = max(1, window // 32)                      # coarse sample spacing [pixel times]
    ncoarse = int(np.ceil(nframes_total * period / step)) + 2
    grid = np.arange(ncoarse, dtype=np.float64)
    local = np.arange(window, dtype=np.float64)
    for s in range(nstreams or 1):
        for i in range(nread):
            out[s, i] = _draw(filt, amp, nfft, rng)[:window]
        coarse = pink_stream(ncoarse, amp, step * pixel_time, rng, fmax=f_split)
        for i, f in enumerate(read_frames):
            out[s, i] += np.interp((f * period + local) / step, grid, coarse).astype(np.float32)
    return out if nstreams else out[0]


class Clock:
    """Pixel-read timing of one frame of an ny x nx detector-frame array.

    Attributes
    ----------
    ny, nx, noutputs : int
    width : int                  columns per output
    row_samples : int            pixel times per row (width + row_overhead)
    window : int                 pixel times per frame (the NIRCam frame-time formula)
    pixel_time : float [s]
    """

    def __init__(self, ny, nx, noutputs, pixel_time=PIXEL_TIME_S, row_overhead=ROW_OVERHEAD):
        if noutputs not in (1, 4) or nx % noutputs:
            raise ValueError(f"cannot read {nx} columns through {noutputs} outputs")
        self.ny, self.nx, self.noutputs = int(ny), int(nx), int(noutputs)
        self.width = self.nx // self.noutputs
        self.row_samples = self.width + int(row_overhead)
        self.window = frame_samples(self.ny, self.nx, self.noutputs, int(row_overhead))
        self.pixel_time = float(pixel_time)

    @property
    def natural_tframe(self):
        """Frame time [s] of the array at this clock."""
        return self.window * self.pixel_time

    def period(self, tframe):
        """Samples per frame period for a frame time ``tframe`` [s] (at least one window)."""
        return max(self.window, int(round(float(tframe) / self.pixel_time)))

    def to_block(self, window):
        """(ny, width) view of a window's read samples in fast-scan order (row overheads dropped)."""
        n = self.ny * self.row_samples
        return window[:n].reshape(self.ny, self.row_samples)[:, :self.width]

    def image(self, common=None, per_output=None, out=None):
        """Detector-frame image (ny, nx) float32 of streams read through the outputs.

        ``common``: one window (window,) seen by every output in its own fast-scan direction;
        ``per_output``: (noutputs, window) one window per output. Either may be None.
        """
        img = np.zeros((self.ny, self.nx), np.float32) if out is None else out
        w = self.width
        for k in range(self.noutputs):
            block = np.zeros((self.ny, w), np.float32)
            if common is not None:
                block += self.to_block(common)
            if per_output is not None:
                block += self.to_block(per_output[k])
            img[:, k * w:(k + 1) * w] = block[:, ::-1] if k % 2 else block
        return img
