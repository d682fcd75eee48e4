"""Shared pieces of the commissioning analyses (jumps, dark current, stability, noise, summary).

The analysis toolkit is this module, :mod:`detcal.analysis.robust` (every robust statistic),
:mod:`detcal.tables` (the TSV/JSON writer) and, for files, :mod:`detcal.inventory` (the one
configuration-group check, ``check_one_group``, and ``exposure_name``).

* Pixel selections: active pixels (reference pixels excluded, through
  :class:`detcal.geometry.Geometry`, the one definition), pixels without DO_NOT_USE, and
  amplifiers (outputs). **Amplifier label convention**: every table, JSON and figure names an
  amplifier by its 1-based number, column/key ``amplifier`` = ``'1'..'N'`` (output index + 1;
  :func:`amplifier_labels`), and ``'all'`` for every selected pixel of the array. Dead or flat
  outputs (:func:`dead_outputs`, :func:`dead_amplifiers`).
* Gains: the GAIN reference cut to a product's frame (:func:`read_gain`, per pixel) and its
  median per amplifier (:func:`amplifier_gains`, :func:`output_gains`).
* A histogram with a Gaussian fit and a Pearson chi-square.
* Products: the slope-image file (MEAN/STD/NUSED/DQ) that the dark-current analysis writes and
  the stability analysis uses as its baseline; rate/rateints products.
* matplotlib (Agg) figure helpers.

No Snakemake, no logging configuration.
"""

import math
import types

import numpy as np
from astropy.io import fits
from scipy import optimize

from .. import dqflags, io, keywords
from ..errors import InputError
from ..geometry import Geometry, family
from ..plots import (
    plt,  # pyplot on the Agg backend (plots.pyplot)
    save_figure,  # noqa: F401  (the one figure writer, used as common.save_figure)
)
from . import robust
from .robust import quiet_warnings

#: Label of the whole-array row in per-amplifier tables.
ALL = "all"

#: Pixel pitch per instrument family [um] (CR hit area).
PIXEL_PITCH_UM = {"NIR": 18.0, "MIRI": 25.0}

#: Default working-memory budget [MB] of the group analyses' blocks of rows of every integration
#: (config ``analysis: memory_mb``; jump statistics, dark current, stability). Changes no number.
MEMORY_MB = 256


# ----------------------------------------------------------------------------------------------
# DQ and pixel selections
# ----------------------------------------------------------------------------------------------
def dq_bits(names):
    """OR of the DQ flag values named in ``names`` (e.g. ``('DO_NOT_USE', 'HOT')``); 0 for none."""
    bits = 0
    for name in names or ():
        try:
            bits |= dqflags.PIXEL[str(name).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown DQ flag {name!r}; known: {sorted(dqflags.PIXEL)}") from None
    return bits


def layout(header, shape, path="<header>"):
    """Geometry, amplifier map and active-pixel mask of an array.

    Parameters
    ----------
    header : primary header with INSTRUME, SUBARRAY, SUBSTRT1/2, SUBSIZE1/2 (NOUTPUTS, FASTAXIS,
        SLOWAXIS optional)
    shape : tuple, the array's (..., ny, nx)

    Returns
    -------
    geometry : :class:`detcal.geometry.Geometry`
    amp_map : int8 (ny, nx), output index 0..noutputs-1
    active : bool (ny, nx), True on non-reference pixels
    """
    geom = Geometry.from_header(header, shape, path)
    return geom, geom.amplifier_map(), ~geom.reference_mask()


def dead_amplifiers(raw_paths):
    """Outputs (0-based; amplifier = index + 1) that are dead or flat in every raw file of a group.

    Read on the level-1b SCI, before refpix spreads the side reference pixels' correction into
    every output: an output whose last-minus-first group difference of the first integration
    has a variance [DN^2] below :data:`DEAD_OUTPUT_FRACTION` of the
    largest output's (constant, zero or stuck signal). Empty for 1-output readouts.
    """
    dead = None
    for path in raw_paths:
        with io.RampReader(path) as reader:                     # two frames read, not the ramp
            geom, amp, active = layout(reader.header, reader.shape, reader.path)
            diff = (np.asarray(reader.read("SCI", 0, -1), np.float64)
                    - np.asarray(reader.read("SCI", 0, 0), np.float64))
        var = [float(np.var(diff[active & (amp == k)])) if (active & (amp == k)).any() else np.nan
               for k in range(geom.noutputs)]
        found = set(dead_outputs(var)) if geom.noutputs > 1 else set()
        dead = found if dead is None else dead & found
    return sorted(dead or ())


def amplifier_masks(amp_map, select, noutputs):
    """Pixel selection per amplifier plus the whole array.

    Parameters
    ----------
    amp_map : int (ny, nx), output index
    select : bool (ny, nx), pixels to use
    noutputs : int

    Returns
    -------
    dict label -> bool (ny, nx): ``'1'..str(noutputs)`` then :data:`ALL`
    """
    out = {str(k + 1): select & (amp_map == k) for k in range(noutputs)}
    out[ALL] = select.copy()
    return out


def amplifier_labels(noutputs):
    """``['1', ..., str(noutputs), 'all']``."""
    return [str(k + 1) for k in range(noutputs)] + [ALL]


def good_pixels(pixeldq):
    """bool (ny, nx): pixels without DO_NOT_USE."""
    return (np.asarray(pixeldq, np.uint32) & np.uint32(dqflags.DO_NOT_USE)) == 0


def subsample_rows(mask, max_pixels):
    """Flat indices of the True pixels of ``mask`` (ny, nx) on every k-th row, at most ~max_pixels.

    The temporal statistics need per-pixel accumulators; on a full frame a regular subset of rows
    (every amplifier keeps its share) keeps them small without changing the median noticeably.
    """
    ny = mask.shape[0]
    total = int(mask.sum())
    step = max(1, int(np.ceil(total / max(int(max_pixels), 1))))
    rows = np.zeros(ny, bool)
    rows[::step] = True
    return np.flatnonzero(mask & rows[:, None])


#: An output whose CDS variance is at most this fraction of the largest output's is dead or flat
#: (constant, zero or stuck signal): real outputs differ by far less than 10^4 in CDS variance.
DEAD_OUTPUT_FRACTION = 1e-4


def dead_outputs(output_var, fraction=DEAD_OUTPUT_FRACTION):
    """Dead or flat outputs: indices (0-based; amplifier = index + 1) whose CDS variance
    [DN^2] is finite and at most ``fraction`` of the largest output's. ``output_var``: (nout,)
    spatial variance of the active pixels' total CDS noise. Empty when no output has noise."""
    v = np.asarray(output_var, float)
    if not np.isfinite(v).any() or not np.nanmax(v) > 0:
        return []
    return [int(k) for k in np.flatnonzero(np.isfinite(v) & (v <= fraction * np.nanmax(v)))]


def dead_amplifier_note(amplifiers, consequence, detail=""):
    """The notes' sentence on dead or flat amplifiers (1-based numbers): what was done with them.

    ``dead or flat amplifier(s) 2, 3<detail>: <consequence>``.
    """
    return f"dead or flat amplifier(s) {', '.join(str(a) for a in amplifiers)}{detail}: {consequence}"


def temporal_note(quantity, count, unit, minimum):
    """The notes' sentence when a temporal (per-pixel) statistic has too few samples."""
    return (f"temporal {quantity} not computed: {count} {unit}(s), at least {minimum} needed "
            "(spatial only)")


def join_notes(log, *notes):
    """An analysis' note: the non-empty ``notes`` joined by '; ', each logged as a warning."""
    notes = [n for n in notes if n]
    for n in notes:
        log.warning(n)
    return "; ".join(notes)


# ----------------------------------------------------------------------------------------------
# Gains
# ----------------------------------------------------------------------------------------------
def read_gain(path, header, shape, product=None):
    """The one GAIN reader: the reference [e-/DN] cut to the subarray of a product with
    ``header`` and (..., ny, nx) ``shape`` (``product``: its file, named in errors; default the
    header's FILENAME). Returns float32 (ny, nx) [e-/DN], per pixel, as stored.
    """
    like = types.SimpleNamespace(data=np.empty((1, 1) + tuple(shape[-2:]), np.float32), header=header,
                                 path=str(product or header.get("FILENAME", "<product>")))
    return io.read_reference(path, "GAIN", like=like).data.astype(np.float32)


def amplifier_gains(gain, masks):
    """Per-amplifier gain: median [e-/DN] (float64) of the finite, positive gains of each selection.

    Parameters
    ----------
    gain : float (ny, nx) [e-/DN], e.g. :func:`read_gain`
    masks : dict label -> bool (ny, nx), e.g. :func:`amplifier_masks`

    Returns
    -------
    dict label -> float [e-/DN]; NaN for a selection without a usable gain
    """
    gain = np.asarray(gain, np.float64)
    out = {}
    for label, sel in masks.items():
        g = gain[sel]
        g = g[np.isfinite(g) & (g > 0)]
        out[label] = float(np.median(g)) if g.size else math.nan
    return out


def output_gains(gain_path, header, shape, amp_map, select, value=None):
    """Per-output gains [e-/DN] float64 (noutputs,) in output order (amplifier = index + 1).

    With a GAIN reference (``gain_path``): :func:`amplifier_gains` of its values cut to the
    frame, over ``select`` (bool (ny, nx)) and each output of ``amp_map`` (int (ny, nx), output
    index; ``noutputs = amp_map.max() + 1``). Without one: ``value`` for every output, or NaN
    (the e- columns of a table are then NaN).
    """
    nout = int(np.max(amp_map)) + 1
    if not gain_path:
        return np.full(nout, np.nan if value is None else float(value))
    per_amp = amplifier_gains(read_gain(gain_path, header, shape), amplifier_masks(amp_map, select, nout))
    return np.array([per_amp[str(k + 1)] for k in range(nout)])


def mean_gain(gains):
    """Mean of the finite per-output gains, NaN when there is none (no e- values)."""
    gains = np.asarray(gains, float)
    return float(np.mean(gains[np.isfinite(gains)])) if np.isfinite(gains).any() else np.nan


# ----------------------------------------------------------------------------------------------
# Histogram fit
# ----------------------------------------------------------------------------------------------
def gaussian(x, amplitude, peak, width):
    """``amplitude * exp(-(x - peak)^2 / (2 width^2))``."""
    return amplitude * np.exp(-0.5 * ((x - peak) / width) ** 2)


def histogram_gaussian_fit(values, centre, width, nsigma=7.0, bins="auto", min_expected=5.0):
    """JWQL-style histogram and 1-D Gaussian fit (the histogram mode).

    The histogram covers ``centre +/- nsigma * width`` with numpy's ``bins`` rule (10 bins if the
    rule gives fewer than 7 edges). The Gaussian (amplitude, peak, width) is fitted to the bin
    counts at the bin centres, starting from (max count, centre, width), by weighted least squares
    with weights ``sqrt(count + 1)`` and then again with Pearson weights ``sqrt(model)``. The
    goodness of fit is Pearson's chi-square ``sum((n_i - m_i)^2 / m_i)`` over the bins whose
    fitted count ``m_i`` is at least ``min_expected`` (where the chi-square approximation
    holds), with ``dof = nbins_used - 3`` (not JWQL's ``(n - (N p)^2)``, whose square is
    misplaced).

    Parameters
    ----------
    values : array-like [any unit], NaN ignored
    centre, width : float [unit of values], e.g. the clipped mean and std
    nsigma : float
    bins : numpy bins rule or int
    min_expected : float, counts

    Returns
    -------
    dict: ``edges`` (nbins+1,), ``counts`` (nbins,) int, ``model`` (nbins,) float (fitted counts
    at the bin centres), ``amplitude``, ``peak``, ``width`` and their ``*_err`` (sqrt of the
    covariance diagonal), ``chi2``, ``dof``, ``reduced_chi2``, ``fit_ok`` (bool). Fit values are
    NaN when the fit fails or there are fewer than 4 populated bins.
    """
    x = np.asarray(values, np.float64).ravel()
    x = x[np.isfinite(x)]
    nan = math.nan
    out = {"edges": np.zeros(1), "counts": np.zeros(0, np.int64), "model": np.zeros(0),
           "amplitude": nan, "peak": nan, "width": nan, "amplitude_err": nan, "peak_err": nan,
           "width_err": nan, "chi2": nan, "dof": 0, "reduced_chi2": nan, "fit_ok": False}
    if x.size < 10 or not (np.isfinite(centre) and np.isfinite(width) and width > 0):
        return out
    lo, hi = centre - nsigma * width, centre + nsigma * width
    x = x[(x >= lo) & (x <= hi)]
    edges = np.histogram_bin_edges(x, bins=bins, range=(lo, hi))
    if len(edges) < 7:
        edges = np.linspace(lo, hi, 11)
    counts, edges = np.histogram(x, bins=edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    out.update(edges=edges, counts=counts, model=np.full(mid.shape, nan))
    if np.count_nonzero(counts) < 4:
        return out
    try:
        with quiet_warnings():
            # pass 1: weights from the counts; pass 2: Pearson weights from the pass-1 model
            # (count-based weights alone bias the amplitude low)
            popt, pcov = optimize.curve_fit(gaussian, mid, counts, p0=(counts.max(), centre, width),
                                            sigma=np.sqrt(counts + 1.0), absolute_sigma=True,
                                            maxfev=5000)
            weight = np.sqrt(np.maximum(gaussian(mid, *popt), 1.0))
            popt, pcov = optimize.curve_fit(gaussian, mid, counts, p0=popt, sigma=weight,
                                            absolute_sigma=True, maxfev=5000)
    except (RuntimeError, ValueError):
        return out
    popt[2] = abs(popt[2])
    model = gaussian(mid, *popt)
    use = model >= min_expected
    chi2 = float(np.sum((counts[use] - model[use]) ** 2 / model[use]))
    dof = int(use.sum()) - 3
    err = np.sqrt(np.clip(np.diag(pcov), 0, None)) if np.all(np.isfinite(pcov)) else np.full(3, nan)
    out.update(model=model, amplitude=float(popt[0]), peak=float(popt[1]), width=float(popt[2]),
               amplitude_err=float(err[0]), peak_err=float(err[1]), width_err=float(err[2]),
               chi2=chi2, dof=dof, reduced_chi2=chi2 / dof if dof > 0 else nan,
               fit_ok=bool(np.all(np.isfinite(popt))))
    return out


# ----------------------------------------------------------------------------------------------
# Products
# ----------------------------------------------------------------------------------------------
def expstart(header):
    """EXPSTART [MJD] of a header, NaN if absent."""
    val = keywords.optional(header, "EXPSTART")
    return math.nan if val is None else float(val)


def pixel_pitch(header, pixel_pitch_um=None):
    """Pixel pitch [um]: the value given, else 18 (NIR) or 25 (MIRI) from INSTRUME."""
    if pixel_pitch_um is not None:
        return float(pixel_pitch_um)
    return PIXEL_PITCH_UM[family(keywords.value(header, "INSTRUME", "<header>"))]


# ----------------------------------------------------------------------------------------------
# Slope-image file (dark-current image; stability baseline)
# ----------------------------------------------------------------------------------------------
#: Keywords copied from the products into a slope-image file (those present).
_IMAGE_KEYS = ("TELESCOP", "INSTRUME", "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1",
               "SUBSIZE2", "FASTAXIS", "SLOWAXIS", "NOUTPUTS", "READPATT", "NGROUPS", "NFRAMES",
               "GROUPGAP", "TFRAME", "TGROUP", "CORONMSK", "EXP_TYPE")


def write_slope_images(path, mean, std, nused, dq, header, nints, expstarts=(), inputs=()):
    """Write the slope-image file: the dark-monitor baseline format.

    Layout: primary header (the group and subarray keywords of ``header``; ``DCKIND =
    'SLOPE_IMAGES'``, ``NINTUSED`` integrations, ``EXPSTART``/``EXPEND`` = first/last EXPSTART
    [MJD], ``BUNIT = 'DN/s'``) and image extensions

    * ``MEAN`` float32 (ny, nx) [DN/s]: per-pixel sigma-clipped mean slope over the integrations
    * ``STD`` float32 (ny, nx) [DN/s]: per-pixel sample std (ddof=1) of the kept slopes
    * ``NUSED`` int16 (ny, nx): integrations kept per pixel
    * ``DQ`` uint32 (ny, nx): flags set in every integration (pixel properties, not transients)

    A later run passes this file as ``baseline`` to :func:`detcal.analysis.stability.stability_file`.
    """
    h = fits.Header()
    for key in _IMAGE_KEYS:
        if key in header:
            h[key] = header[key]
    h["DCKIND"] = ("SLOPE_IMAGES", "slope mean/std images (dark baseline)")
    h["BUNIT"] = ("DN/s", "unit of MEAN and STD")
    h["NINTUSED"] = (int(nints), "integrations combined")
    times = [t for t in expstarts if np.isfinite(t)]
    if times:
        h["EXPSTART"] = (float(min(times)), "[MJD] first exposure start")
        h["EXPEND"] = (float(max(times)), "[MJD] last exposure start")
    io.add_history(h, "slope images", inputs)
    hdus = [fits.PrimaryHDU(header=h)]
    for name, arr, dtype in (("MEAN", mean, np.float32), ("STD", std, np.float32),
                             ("NUSED", nused, np.int16), ("DQ", dq, np.uint32)):
        hdu = fits.ImageHDU(np.asarray(arr, dtype), name=name)
        if name in ("MEAN", "STD"):
            hdu.header["BUNIT"] = "DN/s"
        hdus.append(hdu)
    io.atomic_write(fits.HDUList(hdus), path)


def read_slope_images(path):
    """Read a slope-image file: dict with ``mean``, ``std`` (float32 DN/s), ``nused``, ``dq``, ``header``."""
    path = str(path)
    with io.open_fits(path) as hdul:
        names = [h.name for h in hdul]
        missing = [e for e in ("MEAN", "STD") if e not in names]
        if missing:
            raise InputError(path, f"not a slope-image (baseline) file: no {', '.join(missing)} "
                                   "extension (expected MEAN, STD, NUSED, DQ)")
        out = {"header": hdul[0].header.copy(),
               "mean": np.asarray(hdul["MEAN"].data, np.float32),
               "std": np.asarray(hdul["STD"].data, np.float32)}
        shape = out["mean"].shape
        out["nused"] = (np.asarray(hdul["NUSED"].data, np.int16) if "NUSED" in names
                        else np.zeros(shape, np.int16))
        out["dq"] = (np.asarray(hdul["DQ"].data, np.uint32) if "DQ" in names
                     else np.zeros(shape, np.uint32))
    if out["std"].shape != shape:
        raise InputError(path, f"MEAN {shape} and STD {out['std'].shape} differ in shape")
    return out


def persistent_dq(dq_cube):
    """uint32 (ny, nx): DQ bits set in every plane of ``dq_cube`` (n, ny, nx)."""
    return np.bitwise_and.reduce(np.asarray(dq_cube, np.uint32), axis=0)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def image_range(image, select=None, nsigma=5.0):
    """Colour range ``median +/- nsigma * sigma`` (3-sigma clipped statistics of the selected pixels)."""
    vals = np.asarray(image)[select] if select is not None else np.asarray(image)
    st = robust.clipped_stats(vals)
    if not np.isfinite(st.median):
        return 0.0, 1.0
    half = nsigma * st.std if st.std > 0 else 1.0
    return st.median - half, st.median + half


def show_image(ax, image, vmin, vmax, colorbar_label, title, cmap="viridis"):
    """Draw a science-frame image (origin lower-left) with a labelled colour bar; returns the AxesImage."""
    im = ax.imshow(image, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(colorbar_label)
    ax.set_xlabel("column [pixel]")
    ax.set_ylabel("row [pixel]")
    ax.set_title(title, fontsize=10)
    return im


def subplot_grid(n, ncols=3, size=3.6):
    """Figure with a grid for ``n`` panels; unused axes hidden. Returns (fig, flat list of axes)."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axs = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.6, size * nrows), squeeze=False)
    flat = list(axs.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]
