"""DARK reference files from jump-flagged dark ramps (the jwst_reffiles ``Dark`` algorithm, fixed).

Input: dark ramps of ONE configuration group, read with NFRAMES=1 and GROUPGAP=0, processed
WITHOUT dark subtraction and with jump flags: NIR dq_init -> saturation -> superbias -> refpix ->
linearity -> jump; MIRI dq_init -> saturation -> linearity -> rscd -> jump. Per pixel and
integration, the first group flagged JUMP_DET and every later group are dropped (the charge of a
cosmic ray stays in the pixel); groups flagged DO_NOT_USE or SATURATED are dropped too
(``exclude_flags``). Per pixel
and group, the remaining values of all integrations of all files are sigma clipped (astropy
``sigma_clip`` semantics: median centre, std width, ``maxiters`` rounds) and combined with the
clipped mean (default) or median; ERR is the clipped std (ddof 0): the scatter of one
integration's value, not the uncertainty of the mean (that is ERR / sqrt(count)). Groups of a
pixel without any value (saturation, which the saturation step grows to the 8 neighbours, or a
cosmic ray in every integration) are extrapolated from the pixel's other groups
(:func:`fill_missing`; ``fill='zero'`` keeps jwst_reffiles' 0); they count 0 in the count map.

MIRI darks are 4-D (DarkMIRIModel): the first integration of a MIRI exposure differs from the
later ones (reset anomaly, RSCD), so dark integration 1 is made from integration 1 of every input
(absolute number INTSTART + i == 1) and dark integration 2 from all later integrations. The
dark_current step (jwst and detcal) uses dark integration i for science integration i and the
last one beyond, so this is exactly the right pairing. With no later integrations in the inputs
the dark has one integration (a warning). NIR darks are 3-D (DarkModel) with a 2-D DQ.

Memory: the data are never loaded whole. Groups are read in chunks (and, when one group of all
integrations does not fit, in blocks of rows) sized so that the chunk, the output arrays, the
statistics work space and the interpreter stay within ``memory_mb``.

The jwst_reffiles defects this avoids (research notes section 12): DESCRIP is written (not
``meta.descrip``); MIRI gets a valid 4-D model; every file's own NINTS is used (jwst_reffiles
reads the first file's NINTS for all); inputs are checked on every configuration keyword and
NFRAMES/GROUPGAP (a NFRAMES>1 dark cannot be averaged into other patterns); "no cosmic ray" is
NGROUPS, distinct from a hit in group 0 (never an ``argmax`` that is 0 for both); no side files
are written to the working directory; the chunk size can never be 0; the default statistic is the
clipped mean that the docstring promises.
"""

import dataclasses
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.io import fits

from .. import __version__, dqflags, io, keywords
from ..analysis import robust
from ..analysis.robust import MAD_TO_SIGMA
from ..errors import InputError
from ..geometry import family
from ..multiaccum import int_numbers
from ..parameters import keyword_parameters
from . import common

log = logging.getLogger("detcal.reffiles.dark")

_JUMP = np.uint8(dqflags.JUMP_DET)
_BAD = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)

#: Resident memory of the interpreter with numpy/astropy/pandas/matplotlib loaded [MB].
BASELINE_MB = 300


# --------------------------------------------------------------------------------------------
# Pure array functions
# --------------------------------------------------------------------------------------------
def first_jump_group(groupdq):
    """Index of the first JUMP_DET group of every pixel and integration.

    Parameters
    ----------
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)

    Returns
    -------
    ndarray, int16, shape (nints, ny, nx): 0..ngroups-1, or ``ngroups`` where no group has
    JUMP_DET ("no hit" is never confused with a hit in group 0).
    """
    groupdq = np.asarray(groupdq)
    ngroups = groupdq.shape[-3]
    jump = (groupdq & _JUMP) != 0
    first = np.argmax(jump, axis=-3).astype(np.int16)
    first[~jump.any(axis=-3)] = ngroups
    return first


def usable(groupdq, hit=None, exclude=_BAD):
    """Which group values enter the dark: before the first jump and without an ``exclude`` flag.

    Parameters
    ----------
    groupdq : ndarray, uint8, shape (ngroups, ny, nx)   groups of one integration (a contiguous
                                                        run of groups, in order)
    hit : ndarray, bool, shape (ny, nx), or None        pixels with a jump in an earlier group
                                                        (updated in place with this run's jumps)
    exclude : int                                       group flags that drop a value
                                                        (default DO_NOT_USE | SATURATED)

    Returns
    -------
    ndarray, bool, shape (ngroups, ny, nx)
    """
    groupdq = np.asarray(groupdq, np.uint8)
    if hit is None:
        hit = np.zeros(groupdq.shape[1:], bool)
    ok = np.empty(groupdq.shape, bool)
    for k in range(groupdq.shape[0]):
        hit |= (groupdq[k] & _JUMP) != 0
        ok[k] = ~hit & ((groupdq[k] & np.uint8(exclude)) == 0)
    return ok


def dark_values(data, groupdq, hit=None, out=None, exclude=_BAD):
    """The values of one integration that enter the dark, NaN elsewhere (see :func:`usable`).

    Parameters
    ----------
    data : ndarray, float32, shape (ngroups, ny, nx)   [DN]
    groupdq : ndarray, uint8, same shape
    hit : ndarray, bool, shape (ny, nx), or None       jump seen in earlier groups (updated)
    out : ndarray, float32, same shape, or None        filled in place when given
    exclude : int                                      group flags that drop a value

    Returns
    -------
    ndarray, float32, shape (ngroups, ny, nx)          [DN], NaN where excluded
    """
    ok = usable(groupdq, hit, exclude)
    if out is None:
        out = np.empty(ok.shape, np.float32)
    np.copyto(out, np.asarray(data, np.float32))
    out[~ok] = np.nan
    return out


#: Upward step of a first difference, in robust sigma of the pixel's differences, that marks a
#: cosmic ray in :func:`first_cosmic_ray` (one-sided; Gaussian false-alarm rate 3e-5 per difference).
CR_THRESHOLD = 4.0


def first_cosmic_ray(data, groupdq, threshold=CR_THRESHOLD):
    """First group of every pixel that carries cosmic-ray charge, found in EVERY group.

    The jump step does not look at DO_NOT_USE groups (MIRI's first and last groups in the
    branch without dark), and a handful of integrations cannot be sigma clipped, so the dark
    finds its own: the first differences ``d_g = y[g+1] - y[g]`` minus the median difference of
    group g over the pixels (the anomaly shape, common to the array) minus the pixel's median
    residual (its dark rate) leave noise, whose scatter is the pixel's MAD-based sigma over its
    groups (never below the median of those sigmas over the array); a residual above
    ``threshold`` sigma is a cosmic ray, and group g+1 and later carry its charge. Differences
    touching a SATURATED group are ignored.

    Parameters
    ----------
    data : ndarray, float32, shape (ngroups, ny, nx)   [DN] one integration
    groupdq : ndarray, uint8, same shape
    threshold : float                                  [sigma]

    Returns
    -------
    ndarray, int16, shape (ny, nx): first affected group (1..ngroups-1), ``ngroups`` for none
    """
    ngroups = data.shape[0]
    first = np.full(data.shape[1:], ngroups, np.int16)
    if ngroups < 3:
        return first
    d = np.diff(np.asarray(data, np.float64), axis=0)
    sat = (np.asarray(groupdq) & np.uint8(dqflags.SATURATED)) != 0
    d[sat[1:] | sat[:-1]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shape = np.nanmedian(d.reshape(ngroups - 1, -1), axis=1)[:, None, None]
        r = d - shape
        r -= np.nanmedian(r, axis=0)
        sig = MAD_TO_SIGMA * np.nanmedian(np.abs(r), axis=0)
        # a MAD of a few dozen differences can come out low: never below the array's typical sigma
        sig = np.fmax(sig, np.nanmedian(sig))
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.inf)
    hit = np.nan_to_num(r, nan=0.0) > threshold * sig
    any_hit = hit.any(axis=0)
    first[any_hit] = (np.argmax(hit, axis=0)[any_hit] + 1).astype(np.int16)
    return first


def combine(values, stat="mean", sigma=3.0, maxiters=5):
    """Sigma-clipped combination across integrations (axis 0) of NaN-masked dark values.

    Parameters
    ----------
    values : ndarray, float32, shape (nvalues, ngroups, ny, nx)   [DN], NaN = excluded
    stat : 'mean' or 'median'
    sigma : float         clip threshold [sigma]
    maxiters : int        clipping rounds

    Returns
    -------
    dark : ndarray, float32, shape (ngroups, ny, nx)     [DN] clipped mean/median, 0 if no value
    err : ndarray, float32, same shape                   [DN] clipped std (ddof 0), 0 if no value
    used : ndarray, int32, same shape                    values kept after clipping
    good : ndarray, int32, same shape                    values before clipping
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    st = robust.sigma_clipped_stats(values, sigma=sigma, maxiters=maxiters, ddof=0)
    empty = st["count"] == 0
    dark = np.where(empty, 0.0, st[stat]).astype(np.float32)
    err = np.where(empty, 0.0, st["std"]).astype(np.float32)
    return dark, err, st["count"], st["n_good"]


def dark_from_arrays(ramps, stat="mean", sigma=3.0, maxiters=5, split_first=False):
    """A dark from ramps in memory (the same rules as :func:`make_dark`, without chunking).

    Parameters
    ----------
    ramps : list of (data, groupdq) or (data, groupdq, int_numbers)
        data float32 (nints, ngroups, ny, nx) [DN], groupdq uint8 (same shape), int_numbers
        (nints,) absolute 1-based integration numbers (default 1..nints)
    stat, sigma, maxiters : see :func:`combine`
    split_first : bool    MIRI layout: dark integration 1 from integration 1, 2 from the rest

    Returns
    -------
    dark, err : float32, (ngroups, ny, nx), or (nclass, ngroups, ny, nx) when ``split_first``
    used : int32, same shape
    """
    classes = [[], []]
    for item in ramps:
        data, gdq = item[0], item[1]
        numbers = item[2] if len(item) > 2 else np.arange(1, data.shape[0] + 1)
        for i in range(data.shape[0]):
            vals = dark_values(data[i], gdq[i])
            classes[1 if (split_first and numbers[i] > 1) else 0].append(vals)
    classes = [c for c in classes if c]
    results = [combine(np.stack(c), stat, sigma, maxiters) for c in classes]
    if not split_first:
        return results[0][:3]
    return tuple(np.stack([r[k] for r in results]) for k in range(3))


def fill_missing(dark, err, used, times):
    """Fill the groups of a pixel that have no value from its other groups.

    A pixel that saturates (or whose neighbour does: saturation grows to the 8 neighbours) or
    that is hit by cosmic rays in every integration loses its later groups. Those groups get the
    least-squares line through the pixel's groups that have values (its own dark rate), or its
    only value; their ERR is the largest ERR of its valid groups. Pixels without any value stay 0.
    (jwst_reffiles leaves 0, which makes the dark step subtract the dark from the early groups
    only, a step in the corrected ramp.)

    Parameters
    ----------
    dark, err : ndarray, float32, shape (ngroups, ny, nx)   [DN]   filled in place
    used : ndarray, int, same shape                          values per group (0 = missing)
    times : ndarray, float, shape (ngroups,)                 [s] group times

    Returns
    -------
    int: number of pixels filled
    """
    missing = used == 0
    pix = np.any(missing, axis=0) & ~np.all(missing, axis=0)
    if not pix.any():
        return 0
    y = dark[:, pix].astype(np.float64)
    e = err[:, pix]
    w = (~missing[:, pix]).astype(np.float64)
    t = np.asarray(times, np.float64)[:, None]
    sw, st, stt = w.sum(0), (w * t).sum(0), (w * t * t).sum(0)
    sy, sty = (w * y).sum(0), (w * t * y).sum(0)
    den = sw * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(den > 0, (sw * sty - st * sy) / den, 0.0)
    icpt = (sy - slope * st) / sw
    line = icpt + slope * t
    hole = w == 0
    y[hole] = line[hole]
    e_max = np.where(hole, 0.0, e).max(axis=0)
    e = np.where(hole, e_max, e)
    dark[:, pix] = y.astype(np.float32)
    err[:, pix] = e.astype(np.float32)
    return int(pix.sum())


def group_times(ngroups, tframe):
    """Read time after reset of every NFRAMES=1 group: ``(g + 1) * TFRAME`` [s], float64."""
    return (np.arange(ngroups) + 1.0) * float(tframe)


def region_means(dark, used, masks):
    """Per-region mean dark signal per group over the pixels that have a value in every group.

    Parameters
    ----------
    dark : ndarray, float32, shape (ngroups, ny, nx)    [DN]
    used : ndarray, int, same shape
    masks : dict name -> bool (ny, nx)                  (:func:`detcal.reffiles.common.regions`)

    Returns
    -------
    dict name -> (float64 (ngroups,) [DN], number of pixels)
    """
    complete = np.all(used > 0, axis=0)
    out = {}
    for name, mask in masks.items():
        sel = mask & complete
        n = int(sel.sum())
        out[name] = (np.array([np.mean(d[sel], dtype=np.float64) for d in dark]) if n else
                     np.full(dark.shape[0], np.nan), n)
    return out


def fit_rate(times, signal):
    """Least-squares slope of ``signal`` [DN] against ``times`` [s]: the dark rate [DN/s]."""
    ok = np.isfinite(signal)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(times)[ok], np.asarray(signal)[ok], 1)[0])


# --------------------------------------------------------------------------------------------
# Memory plan
# --------------------------------------------------------------------------------------------
def plan_chunks(nvalues, ngroups, ny, nx, nclass, memory_mb, count_bytes=2):
    """Groups per chunk and rows per block that keep the peak memory within ``memory_mb``.

    Accounted: the interpreter (:data:`BASELINE_MB`), the outputs (dark and err float32, two
    count maps) for every class, the statistics work space, and per chunk the float32 value
    stack (``nvalues`` x groups x rows x nx), the jump state (1 byte per value and pixel) and
    the read buffers of one integration.

    Returns
    -------
    dict ``groups`` (per chunk), ``rows`` (per block), ``fixed_mb``, ``chunk_mb``

    Raises
    ------
    ValueError if even one group of one row does not fit.
    """
    mb = 1e6
    outputs = nclass * ngroups * ny * nx * (4 + 4 + 2 * count_bytes)
    work = 1.25 * min(robust.STATS_WORK_MB * mb, nvalues * robust.STATS_BYTES_PER_VALUE * ny * nx)
    fixed = BASELINE_MB * mb + outputs + work
    avail = memory_mb * mb - fixed
    per_group_row = (4 * nvalues + 5 + 8) * nx       # stack + read buffers + mask temporaries
    state_row = nvalues * nx
    rows = ny
    groups = int((avail - state_row * rows) // (per_group_row * rows)) if avail > 0 else 0
    if groups < 1:
        groups = 1
        rows = int(avail // (per_group_row + state_row)) if avail > 0 else 0
        if rows < 1:
            raise ValueError(
                f"memory_mb={memory_mb} is too small: the outputs alone need "
                f"{fixed / mb:.0f} MB ({nclass} x {ngroups} groups x {ny} x {nx} pixels) and one "
                f"row of one group of {nvalues} integrations {per_group_row / mb:.2f} MB more")
    groups = min(groups, ngroups)
    chunk = (per_group_row * groups + state_row) * rows
    return {"groups": int(groups), "rows": int(rows), "fixed_mb": fixed / mb, "chunk_mb": chunk / mb}


# --------------------------------------------------------------------------------------------
# File level
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DarkParameters:
    """Parameters of the DARK builder (the rule's ``params.kwargs`` and their defaults).

    stat : 'mean' or 'median'      combination of the clipped values ('mean')
    sigma, maxiters                clipping across all integrations of all files [sigma,
                                   iterations] (3.0, 5: astropy's)
    memory_mb : float              peak-memory budget of the whole process [MB] (4000)
    split_first_integration : bool MIRI: separate dark integrations for integration 1 and the
                                   later ones (True)
    fill : 'extrapolate' or 'zero' groups of a pixel without any value (:func:`fill_missing`)
    min_count : int or None        UNRELIABLE_DARK below this many values in any group
                                   (None: MIRI 2, NIR 0)
    exclude_flags : tuple of str   GROUPDQ flags that drop a value (DO_NOT_USE, SATURATED)
    find_cosmic_rays : bool or None  :func:`first_cosmic_ray` in every group (None: MIRI yes)
    subtract_group0 : bool or None   subtract each integration's group 0 (None: MIRI yes)
    cr_threshold : float           [sigma] of :func:`first_cosmic_ray` (:data:`CR_THRESHOLD`)
    """

    stat: str = "mean"
    sigma: float = 3.0
    maxiters: int = 5
    memory_mb: float = 4000
    split_first_integration: bool = True
    fill: str = "extrapolate"
    min_count: int = None
    exclude_flags: tuple = ("DO_NOT_USE", "SATURATED")
    find_cosmic_rays: bool = None
    subtract_group0: bool = None
    cr_threshold: float = CR_THRESHOLD

    def exclude_mask(self):
        """The GROUPDQ bits of ``exclude_flags`` (ValueError for a name that is not a group flag)."""
        exclude = 0
        for name in self.exclude_flags:
            if name not in dqflags.GROUP:
                raise ValueError(f"exclude_flags: {name!r} is not a group flag {sorted(dqflags.GROUP)}")
            exclude |= dqflags.GROUP[name]
        return exclude

    def check(self):
        """ValueError for an unknown ``stat`` or ``fill``."""
        if self.stat not in ("mean", "median"):
            raise ValueError(f"stat must be 'mean' or 'median', got {self.stat!r}")
        if self.fill not in ("extrapolate", "zero"):
            raise ValueError(f"fill must be 'extrapolate' or 'zero', got {self.fill!r}")

    def resolved(self, miri):
        """The family defaults filled in (MIRI: cosmic rays, group 0, min_count 2)."""
        return dataclasses.replace(
            self, find_cosmic_rays=miri if self.find_cosmic_rays is None else bool(self.find_cosmic_rays),
            subtract_group0=miri if self.subtract_group0 is None else bool(self.subtract_group0),
            min_count=(2 if miri else 0) if self.min_count is None else int(self.min_count))


@keyword_parameters(DarkParameters)
def make_dark(ramp_paths, out_path, *, table_path=None, figure_path=None, counts_path=None,
              pedigree="GROUND", author="detcal", useafter=None, descrip=None, parameters=None):
    """Make a DARK reference file from jump-flagged dark ramps of one configuration group.

    Read (chunks of groups x rows of every integration, :func:`accumulate_dark`) -> combine
    (:func:`combine`, :func:`finish_dark`) -> tables (:func:`dark_table`) -> write.

    Parameters
    ----------
    ramp_paths : list of str
        Ramps (RampModel layout) of ONE configuration group (:data:`detcal.keywords.GROUP`),
        NFRAMES=1, GROUPGAP=0, after the jump step and WITHOUT dark subtraction (see the module
        docstring for the chain). NINTS may differ between files.
    out_path : str
        The DARK reference (DarkModel layout; MIRI: DarkMIRIModel 4-D).
    table_path : str or None
        TSV, one row per dark integration and group: time, count statistics, per-amplifier mean
        dark signal [DN] over the pixels with a value in every group.
    figure_path : str or None
        PNG drawn from that table: per-amplifier mean dark signal vs time with the fitted rate,
        and the median number of values per group.
    counts_path : str or None
        FITS with the per-pixel count maps: GOOD (values before clipping) and USED (after),
        uint16/uint32, the SCI shape.
    pedigree, author, useafter, descrip : str
        Reference keywords; ``useafter`` defaults to the date of the earliest input, ``descrip``
        to a description of the configuration and the inputs.
    stat, sigma, maxiters, memory_mb, split_first_integration, fill, min_count, exclude_flags,
    find_cosmic_rays, subtract_group0, cr_threshold
        :class:`DarkParameters` (keywords, or ``parameters=`` one object). ``exclude_flags``:
        inputs whose leading or trailing groups were flagged DO_NOT_USE only to keep them out
        of slope fits (MIRI's first 5 and last group) must either come without those flags or
        use ``('SATURATED',)``: a MIRI DARK has to hold exactly those groups. ``min_count``
        default NIR 0: DQ all zeros, bad pixels belong in the MASK reference, as
        jwst_reffiles. ``subtract_group0``: jwst DarkCurrentStep docs, "the dark reference data
        should have their own group zero subtracted from all groups"; MIRI yes (no superbias),
        NIR no (the superbias already removed the pedestal).

    Returns
    -------
    dict: ``path``, ``ngroups``, ``dark_integrations``, ``n_files``, ``n_integrations``,
    ``plan`` (chunking), ``rate_DN_per_s`` ({dark integration: {region: rate}}), ``npix_rate``,
    ``pixels_without_data`` (some group without a value), ``pixels_filled``, ``median_used``,
    ``unreliable``.

    Raises
    ------
    InputError
        mixed configuration groups (names the odd file and keyword), NFRAMES/GROUPGAP not 1/0,
        dark-subtracted input (S_DARK=COMPLETE), missing keywords, unreadable files.
    """
    readers = common.open_inputs(ramp_paths, step="jump", what="dark")
    try:
        exclude = parameters.exclude_mask()
        return _make_dark(readers, out_path, parameters, exclude,
                          (table_path, figure_path, counts_path), (pedigree, author, useafter, descrip))
    finally:
        common.close_all(readers)


def _check_dark_inputs(readers):
    common.require_rapid(readers, "DARK reference")
    for r in readers:
        if str(r.header.get("S_DARK", "")).upper() == "COMPLETE":
            raise InputError(r.path, "S_DARK=COMPLETE: the dark was already subtracted; a DARK "
                                     "reference is made from ramps processed without dark_current")
        if str(r.header.get("S_JUMP", "")).upper() != "COMPLETE":
            log.warning("%s: no S_JUMP=COMPLETE; cosmic rays are removed only by sigma clipping "
                        "and by any JUMP_DET flags present", r.path)


def dark_slots(readers, split):
    """Every integration of every file, dark integration (class) 0 first, then class 1.

    split : MIRI with split_first_integration: integration 1 -> class 0, later ones -> class 1
    (one class when the inputs hold only one kind). Returns (entries [(reader, index in file,
    integration number)], bounds [(start, stop) per class]).
    """
    entries = [(r, i, n) for r in readers for i, n in enumerate(int_numbers(r.header, r.shape[0]))]
    cls = [1 if (split and n > 1) else 0 for _, _, n in entries]
    if split and (0 not in cls or 1 not in cls):
        log.warning("MIRI dark: the inputs hold %s; the dark has one integration",
                    "no integration after the first" if 1 not in cls else "no first integration")
        cls = [0] * len(cls)
    order = sorted(range(len(entries)), key=lambda k: cls[k])
    entries = [entries[k] for k in order]
    cls = [cls[k] for k in order]
    bounds = [(cls.index(c), len(cls) - cls[::-1].index(c)) for c in range(max(cls) + 1)]
    return entries, bounds


def _cosmic_rays_and_group0(entries, r0, r1, ngroups, nx, p):
    """First cosmic-ray group (int16, ngroups = none) and group 0 [DN] of every slot's rows."""
    first_cr = np.full((len(entries), r1 - r0, nx), ngroups, np.int16)
    base = np.zeros((len(entries), r1 - r0, nx), np.float32)
    for j, (reader, i, _) in enumerate(entries):
        sci = reader.read("SCI", i, slice(None), slice(r0, r1))
        if p.find_cosmic_rays:
            first_cr[j] = first_cosmic_ray(sci, reader.read("GROUPDQ", i, slice(None), slice(r0, r1)),
                                           p.cr_threshold)
        if p.subtract_group0:
            base[j] = sci[0]
        del sci
    return first_cr, base


def _value_stack(entries, g0, g1, r0, r1, nx, hit, first_cr, base, exclude, p):
    """Dark values (NaN where dropped) of groups g0:g1, rows r0:r1 of every slot."""
    stack = np.empty((len(entries), g1 - g0, r1 - r0, nx), np.float32)
    for j, (reader, i, _) in enumerate(entries):
        sci = reader.read("SCI", i, slice(g0, g1), slice(r0, r1))
        gdq = reader.read("GROUPDQ", i, slice(g0, g1), slice(r0, r1))
        dark_values(sci, gdq, hit[j], out=stack[j], exclude=exclude)
        if p.find_cosmic_rays:
            after = np.arange(g0, g1)[:, None, None] >= first_cr[j][None]
            stack[j][after] = np.nan
        if p.subtract_group0:
            stack[j] -= base[j][None]
        del sci, gdq
    return stack


def accumulate_dark(entries, bounds, shape, plan, exclude, parameters, count_dtype):
    """Clipped dark, error and counts, by chunks of rows (and groups) of every slot.

    shape : (nclass, ngroups, ny, nx);  parameters : resolved :class:`DarkParameters`.
    Returns (dark float32, err float32, used, good (count_dtype), cosmic rays found).
    """
    p = parameters
    nclass, ngroups, ny, nx = shape
    dark, err = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    used, good = np.zeros(shape, count_dtype), np.zeros(shape, count_dtype)
    n_cr = 0
    for r0 in range(0, ny, plan["rows"]):
        r1 = min(ny, r0 + plan["rows"])
        hit = np.zeros((len(entries), r1 - r0, nx), bool)
        first_cr = base = None
        if p.find_cosmic_rays or p.subtract_group0:
            # one pass over all groups of each integration: cosmic rays anywhere, and group 0
            first_cr, base = _cosmic_rays_and_group0(entries, r0, r1, ngroups, nx, p)
            n_cr += int(np.count_nonzero(first_cr < ngroups))
        for g0 in range(0, ngroups, plan["groups"]):
            g1 = min(ngroups, g0 + plan["groups"])
            stack = _value_stack(entries, g0, g1, r0, r1, nx, hit, first_cr, base, exclude, p)
            for c, (a, b) in enumerate(bounds):
                for k in range(g1 - g0):
                    d, e, u, n = combine(stack[a:b, k], p.stat, p.sigma, p.maxiters)
                    dark[c, g0 + k, r0:r1], err[c, g0 + k, r0:r1] = d, e
                    used[c, g0 + k, r0:r1], good[c, g0 + k, r0:r1] = u, n
            del stack
        del hit
    return dark, err, used, good, n_cr


def finish_dark(dark, err, used, times, fill, min_count):
    """Fill the groups without a value (in place) and flag UNRELIABLE_DARK.

    UNRELIABLE_DARK marks the pixels with fewer than ``min_count`` values in some group, and
    always those whose dark is a placeholder: a group without any value that was not filled
    (``fill='zero'``, or a pixel without a value in any group, e.g. saturated from the first
    group on in every integration), whose 0 DN would otherwise read as a measured "no dark".

    Returns (dq uint32 (ny, nx), pixels without data in some group, pixels filled, unreliable).
    """
    nclass, _, ny, nx = dark.shape
    no_data = int(np.count_nonzero(~np.all(used > 0, axis=(0, 1))))
    n_filled = 0
    if fill == "extrapolate":
        n_filled = sum(fill_missing(dark[c], err[c], used[c], times) for c in range(nclass))
        unfilled = np.any(np.all(used == 0, axis=1), axis=0)
    else:
        unfilled = np.any(used == 0, axis=(0, 1))
    low = unfilled | (np.any(used < min_count, axis=(0, 1)) if min_count > 0 else False)
    dq2 = np.zeros((ny, nx), np.uint32)
    dq2[low] = dqflags.UNRELIABLE_DARK
    return dq2, no_data, n_filled, int(np.count_nonzero(low))


def dark_table(dark, err, used, good, times, masks):
    """Per dark integration and group: counts and per-region mean dark signal [DN]; the rates.

    Returns (table, rates {dark integration: {region: DN/s}}, npix {same: pixels}).
    """
    rows, rates, npix = [], {}, {}
    for c in range(dark.shape[0]):
        means = region_means(dark[c], used[c], masks)
        rates[c + 1] = {name: fit_rate(times, m) for name, (m, _) in means.items()}
        npix[c + 1] = {name: n for name, (_, n) in means.items()}
        for g in range(dark.shape[1]):
            row = {"dark_integration": c + 1, "group": g + 1, "time_s": times[g],
                   "good_median": float(np.median(good[c, g])), "used_median": float(np.median(used[c, g])),
                   "used_min": int(used[c, g].min()), "used_max": int(used[c, g].max())}
            for name, (m, _) in means.items():
                row[f"{name}_mean_DN"] = m[g]
            row["err_median_DN"] = float(np.median(err[c, g][masks["active"]]))
            rows.append(row)
    return pd.DataFrame(rows), rates, npix


def _dark_header(readers, keywords_, label, p, nvalues, counts, rates):
    """The DARK header: reference keywords and the DRK*/DR* keywords of this build."""
    first = readers[0]
    hdr = first.header
    pedigree, author, useafter, descrip = keywords_
    no_data, n_cr = counts
    tframe = keywords.value(hdr, "TFRAME", first.path)
    if descrip is None:
        descrip = (f"{label} dark: clipped {p.stat} of {nvalues} integrations, {len(readers)} files "
                   f"(detcal {__version__})")
    exp_type = keywords.optional(hdr, "EXP_TYPE") or common.DARK_EXP_TYPE.get(
        keywords.value(hdr, "INSTRUME", first.path).upper(), "N/A")
    extra_meta = {"READPATT": keywords.value(hdr, "READPATT", first.path), "NFRAMES": 1,
                  "GROUPGAP": 0, "NGROUPS": int(first.shape[1]), "TFRAME": tframe, "TGROUP": tframe,
                  "EXP_TYPE": exp_type}
    header = common.header_for("DARK", readers, descrip, author, pedigree, useafter, extra_meta)
    header["DRKSTAT"] = (p.stat, "combination of the clipped values")
    header["DRKSIGMA"] = (float(p.sigma), "[sigma] clip threshold")
    header["DRKITERS"] = (int(p.maxiters), "clipping iterations")
    header["DRKNINTS"] = (int(nvalues), "integrations combined")
    header["DRKNFILE"] = (int(len(readers)), "input files")
    header["DRKNOVAL"] = (no_data, "pixels with no value in some group")
    header["DRKFILL"] = (p.fill, "their missing groups: extrapolate or zero")
    header["DRKGRP0"] = (bool(p.subtract_group0), "each integration's group 0 subtracted")
    header["DRKCRALL"] = (bool(p.find_cosmic_rays), "cosmic rays searched in every group")
    header["DRKNCR"] = (n_cr, "pixel-integrations cut at a cosmic ray found here")
    header["DRKMINCT"] = (int(p.min_count), "UNRELIABLE_DARK below this many values")
    for c, by_region in rates.items():
        for name, rate in by_region.items():
            if np.isfinite(rate) and name != "reference":
                key = f"DR{c}ALL" if name == "active" else f"DR{c}A{name[3:]}"
                header[key] = (float(rate), f"[DN/s] mean dark rate, dark int {c}, {name}")
    return header


def _make_dark(readers, out_path, parameters, exclude, outputs, keywords_):
    parameters.check()
    _check_dark_inputs(readers)
    first = readers[0]
    hdr = first.header
    fam = family(keywords.value(hdr, "INSTRUME", first.path))
    ngroups, ny, nx = first.shape[1:]
    tframe = keywords.value(hdr, "TFRAME", first.path)
    p = parameters.resolved(fam == "MIRI")
    split = fam == "MIRI" and p.split_first_integration
    entries, bounds = dark_slots(readers, split)
    nclass, nvalues = len(bounds), len(entries)
    count_dtype = np.uint16 if nvalues < 65535 else np.uint32
    plan = plan_chunks(nvalues, ngroups, ny, nx, nclass, p.memory_mb,
                       count_bytes=np.dtype(count_dtype).itemsize)
    log.info("dark: %d files, %d integrations (%s), %d groups of %d x %d; chunks of %d groups x "
             "%d rows (%.0f MB fixed + %.0f MB per chunk, budget %.0f MB)", len(readers), nvalues,
             " + ".join(str(b - a) for a, b in bounds), ngroups, ny, nx, plan["groups"],
             plan["rows"], plan["fixed_mb"], plan["chunk_mb"], p.memory_mb)
    dark, err, used, good, n_cr = accumulate_dark(entries, bounds, (nclass, ngroups, ny, nx), plan, exclude,
                                                  p, count_dtype)
    times = group_times(ngroups, tframe)
    dq2, no_data, n_filled, n_unreliable = finish_dark(dark, err, used, times, p.fill, p.min_count)
    table, rates, npix = dark_table(dark, err, used, good, times, common.regions(common.geometry_of(first)))

    label = common.config_label(hdr)
    header = _dark_header(readers, keywords_, label, p, nvalues, (no_data, n_cr), rates)
    if fam == "MIRI":
        arrays = {"SCI": dark, "ERR": err, "DQ": np.broadcast_to(dq2, (nclass, 1, ny, nx)).copy()}
    else:
        arrays = {"SCI": dark[0], "ERR": err[0], "DQ": dq2}
    params = {"stat": p.stat, "sigma": p.sigma, "maxiters": p.maxiters, "memory_mb": p.memory_mb,
              "split_first_integration": split, "fill": p.fill, "min_count": p.min_count,
              "find_cosmic_rays": p.find_cosmic_rays, "subtract_group0": p.subtract_group0,
              "cr_threshold": p.cr_threshold, "exclude_flags": "|".join(dqflags.names(exclude)) or "none"}
    io.write_reference(out_path, "DARK", arrays, header, step="detcal.reffiles.make_dark",
                       inputs=[r.path for r in readers], params=params,
                       units={"SCI": "DN", "ERR": "DN"})
    table_path, figure_path, counts_path = outputs
    if counts_path:
        _write_counts(counts_path, good, used, header, fam, [r.path for r in readers])
    if table_path:
        common.write_table(table, table_path)
    if figure_path:
        plot_dark_table(table, figure_path, f"{label}: DARK from {nvalues} integrations")
    summary = {"path": str(out_path), "ngroups": int(ngroups), "dark_integrations": nclass,
               "n_files": len(readers), "n_integrations": nvalues, "plan": plan, "rate_DN_per_s": rates,
               "npix_rate": npix, "pixels_without_data": no_data, "pixels_filled": n_filled,
               "median_used": [float(np.median(used[c, g])) for c in range(nclass) for g in range(ngroups)],
               "unreliable": n_unreliable, "cosmic_rays_found": n_cr}
    log.info("dark: wrote %s; mean rate (active) %s DN/s; %d pixels lack data in some group",
             out_path, {c: round(v["active"], 6) for c, v in rates.items()}, no_data)
    return summary


def _write_counts(path, good, used, ref_header, fam, inputs):
    """FITS of the count maps: GOOD and USED, SCI-shaped (3-D NIR, 4-D MIRI)."""
    h = fits.Header()
    for key in ("TELESCOP", "INSTRUME", "DETECTOR", "SUBARRAY", "READPATT", "NGROUPS"):
        if key in ref_header:
            h[key] = ref_header[key]
    h["CONTENT"] = ("dark value counts", "GOOD: before clipping, USED: after")
    io.add_history(h, "detcal.reffiles.make_dark counts", inputs)
    sel = (lambda a: a) if fam == "MIRI" else (lambda a: a[0])
    hdus = [fits.PrimaryHDU(header=h), fits.ImageHDU(sel(good), name="GOOD"),
            fits.ImageHDU(sel(used), name="USED")]
    io.atomic_write(fits.HDUList(hdus), path)


def plot_dark_table(table, path, title=""):
    """Figure from the :func:`make_dark` table: mean dark signal per amplifier vs time (with the
    least-squares rate) and the median count of values per group."""
    from ..plots import plt, save_figure
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    regions = [c[:-len("_mean_DN")] for c in table.columns if c.endswith("_mean_DN")
               and c != "reference_mean_DN"]
    for c, sub in table.groupby("dark_integration"):
        style = "-" if c == 1 else "--"
        for name in regions:
            y = sub[f"{name}_mean_DN"].to_numpy(float)
            t = sub["time_s"].to_numpy(float)
            rate = fit_rate(t, y)
            label = f"{name}" + (f" (int {c})" if table["dark_integration"].max() > 1 else "")
            line, = ax1.plot(t, y, "o" + style, ms=3, lw=1, label=f"{label}: {rate:.4g} DN/s")
            ok = np.isfinite(y)
            if ok.sum() >= 2:
                p = np.polyfit(t[ok], y[ok], 1)
                ax1.plot(t, np.polyval(p, t), ":", color=line.get_color(), lw=1)
        ax2.plot(sub["group"], sub["used_median"], "o" + style, ms=3, label=f"used (int {c})")
        ax2.plot(sub["group"], sub["good_median"], "s" + style, ms=3, mfc="none",
                 label=f"before clipping (int {c})")
    ax1.set_xlabel("time after reset [s]")
    ax1.set_ylabel("mean dark signal [DN]")
    ax1.set_title("mean dark signal per amplifier (pixels with data in every group)", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("group number")
    ax2.set_ylabel("median values per pixel [integrations]")
    ax2.set_title("values combined per group (after first-jump exclusion)", fontsize=9)
    ax2.legend(fontsize=7)
    save_figure(fig, path, dpi=90, title=title)
