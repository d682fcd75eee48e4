"""Jump (cosmic-ray) statistics from the jump-step ramps of one configuration group.

What is counted (per file, per integration, per amplifier and for the whole group):

* **JUMP_DET flags**: (group, pixel) cells of GROUPDQ with JUMP_DET, in active pixels (the
  reference pixels are never counted). The jump step flags the group where the jump appears and,
  for large jumps, the 4 neighbours, so flags are not events.
* **Pixels with >= 1 jump**: as a count and as % of the active pixels (per integration, the
  NRC-09 notebook's number, and over all integrations of a file or of the group).
* **Events**: one cosmic-ray hit flags its pixel and (for large hits) its neighbours in the group
  where the charge arrives. Events are the connected components of JUMP_DET cells in active
  pixels, per integration, with 8-connectivity within a group (``connectivity=4`` optional).
  When NFRAMES > 1 (or ``link_groups=True``) the same pixel in consecutive groups is connected
  too: a hit that arrives during the frames of an averaged group shows in two consecutive
  differences (and the optional after-jump flagging flags later groups of the same pixel). Two
  hits whose flags touch in one group count as one event (about 0.4 % of events at 4
  events/cm^2/s on 18 um pixels and TGROUP = 10.7 s; it grows with rate x TGROUP: ~8 % for
  NIRCam DEEP8); the rate is corrected for it to first order (*pile-up*, below). Each event is
  placed at its *peak*: the flagged (group, pixel) cell with the largest group-to-group increase;
  its amplifier is the peak's.
* **Direction**: an event is *upward* (a cosmic-ray candidate) or *downward* (noise: charge
  does not leave a pixel) by the sign of its *residual*, the flagged cell's group difference
  minus the pixel's median usable group difference (over all integrations of the file, as the
  jump step's single-pass median), taken at the cell with the largest absolute residual. With
  READNOISE and GAIN the residual is also given as a *significance* in units of the step's own
  sigma, ``sqrt(|median_e| + (READNOISE x GAIN)^2 / NFRAMES)`` [e-].
* **Usable differences**: (g-1, g) with neither group DO_NOT_USE or SATURATED, in active pixels
  that are not DO_NOT_USE. Only these count in the detection time: a hit is seen only in the
  difference in which its charge arrives (hits before the read of group 1, NIR RAPID: during
  the first frame, are invisible), and groups flagged DO_NOT_USE (MIRI first/last groups, RSCD
  groups) hide the hits that arrive next to them. A row (file, amplifier or group) without any
  usable difference (e.g. a group saturated everywhere) has its counts 0, its detection time 0 s
  and every percentage, number per integration and rate NaN: nothing could be detected. Numbers
  per integration (jump flags, events, % of pixels with a jump) are over the integrations with
  a usable difference only (a saturated exposure in a good group does not lower them).

The **CR rate** [events / cm^2 / s], convention: the rate of *all* cosmic-ray hits landing on the
active area (what a simulator's ``cr_rate`` or a particle flux means), estimated as::

    rate = (N_up - N_down) / (A_pix x TGROUP x n_usable) / efficiency x pileup_correction

* ``A_pix x TGROUP x n_usable`` (``exposure_cm2_s``): pixel area times the group time summed
  over the usable differences of active pixels; for a clean detector
  ``A_active x (NGROUPS - 1) x TGROUP`` per integration. With NFRAMES > 1 every run of
  consecutive usable differences adds ``(NFRAMES - 1) x TFRAME``: a hit during the later frames
  of the run's first or last group changes that group's average and shows in a difference
  (the window runs from the first frame read to the last, not between group mid-times).
* ``N_down``: noise jumps are symmetric (read noise, 1/f, dark shot noise at these levels) and
  cosmic rays only add charge, so the downward events estimate the number of upward noise
  events (false positives) among the ``N_up`` upward ones. This is data-driven: it holds when the
  READNOISE reference underestimates the noise (then both counts rise together).
* ``noise_events_expected_gaussian``: the number of upward (= downward) noise events the
  step's threshold lets through if every usable difference were Gaussian with the step's sigma
  (READNOISE right, no signal), for the regime the step chose (:func:`jump_regime`), by
  :func:`noise_jump_probability`. Reported, and used for ``cr_rate_gaussian_noise_corrected``,
  which shows how far the data-driven and the model estimate agree. A ratio
  ``N_down / expected`` well above 1 says the READNOISE underestimates the noise (or the noise is
  not Gaussian). In the iterative regime (fewer than 10 usable differences per integration) the
  step compares ``|d|`` with the median of ``|d|``: zero-signal pixels then need
  ``|d| > ~4.7 sigma`` and pixels with a signal of about one sigma per group get upward noise
  jumps at the 4-sigma rate but no downward ones, so N_down underestimates their upward noise
  events; the noise events are few there (~0.05 /cm^2/s at TGROUP = 10.7 s).
* ``efficiency``: hits whose charge in the brightest pixel stays below the threshold T
  (``rejection_threshold``) are not found. The hit density per unit significance is modelled as
  ``k x s`` (rising from 0 at zero charge) and ``k`` fitted to the upward-minus-downward count
  ``n_b`` of events with significance in [1.5 T, 3 T] (above the noise events, which sit just
  above T): ``n_b = 3.375 k T^2``; the hits below T are then ``k T^2 / 2 = n_b / 6.75``, with a
  systematic uncertainty of 100 % of that (a density flat below the band gives about twice as
  many, a steeper one fewer) added in quadrature to the Poisson error of ``n_b``.
  ``efficiency = net / (net + missed)`` (net = upward - downward events), computed once for the
  group and applied to every row. Without READNOISE and GAIN no significance is known: the
  efficiency is NaN and the rate is not corrected.
* ``pileup_correction``: hits that merge with another into one event are put back to first order,
  ``1 + rho x (A_touch / 2 + A_overlap x link_groups)``, with ``rho = (N_up - N_down) /
  n_usable`` the hits per pixel and usable difference and ``A_touch`` (``A_overlap``) the mean
  number of offsets at which two hits' footprints touch (share a pixel), from up to 400 measured
  footprints of upward events of >= 2 pixels (:func:`merge_areas`). It multiplies the rate and its error.
* Error: Poisson errors of both counts, ``sqrt(N_up + N_down) / (exposure x efficiency)``, with
  the efficiency's error added in quadrature. ``cr_rate_gaussian_noise_corrected`` has the
  error ``sqrt(N_up) / (exposure x efficiency)`` (the expectation carries no counting noise).

Numbering in tables: integrations and groups 1-based (as JWST documents them), pixel rows and
columns 0-based in the science frame (numpy indices). Signals in DN.
"""

import functools
import logging
import math
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy import ndimage
from scipy.signal import convolve2d
from scipy.special import ndtr

from .. import dqflags, inventory, io, keywords, tables
from ..errors import InputError
from ..parameters import keyword_parameters
from ..steps import jump as jump_step
from . import common

_JUMP = np.uint8(dqflags.JUMP_DET)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_BAD_GROUP = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)

#: dtype of the event list of one integration (0-based indices here; tables convert to 1-based).
#: ``residual`` [DN]: group difference minus the pixel's median difference at the cell of largest
#: absolute residual (> 0: upward); ``significance``: residual / the step's sigma (NaN unknown).
EVENT_DTYPE = np.dtype([("group", "i4"), ("y", "i4"), ("x", "i4"), ("npix", "i4"),
                        ("ngroups", "i4"), ("peak_jump", "f4"), ("residual", "f4"),
                        ("significance", "f4")])

#: Columns of the example-ramp table.
EXAMPLE_COLUMNS = ["example", "exposure", "integration", "pixel_row", "pixel_column", "group", "signal_DN",
                   "jump_flag", "groupdq"]

CONVENTIONS = {
    "events": "connected components of JUMP_DET (group, pixel) cells in active pixels per integration: "
              "8-connected (or 4) within a group; the same pixel in consecutive groups connected when "
              "NFRAMES > 1 (link_groups); placed at the cell with the largest group-to-group increase",
    "direction": "upward (cosmic-ray candidate) or downward (noise) by the sign of the residual: the "
                 "flagged difference minus the pixel's median usable difference, at the event's cell of "
                 "largest |residual|; significance = residual / the jump step's sigma",
    "usable_differences": "group differences (g-1, g) with neither group DO_NOT_USE or SATURATED, active "
                          "pixels not DO_NOT_USE; the detection time counts only these",
    "cr_rate": "rate of all cosmic-ray hits on the active area: (upward - downward events) / (pixel area x "
               "detection time) / detection efficiency; downward events estimate the upward "
               "noise events (noise is symmetric, hits only add charge); x pileup_correction for hits merged "
               "with another in one group (first order, from the measured footprints)",
    "cr_rate_err": "Poisson errors of the upward and of the downward count (the subtracted noise "
                   "estimate) and the efficiency's error, in quadrature",
    "noise_events_expected_gaussian": "upward (= downward) noise events expected if every usable difference "
                                      "were Gaussian with the jump step's sigma (READNOISE right, zero "
                                      "signal), for the step's regime and thresholds",
    "detection_efficiency": "net / (net + missed), missed = (upward - downward events with significance "
                            "in [1.5 T, 3 T]) / 6.75 +- 100 % (hit density proportional to significance "
                            "below the band, T = rejection_threshold); NaN without READNOISE/GAIN (rate "
                            "then not corrected)",
    "cr_rate_unit": "events / cm^2 / s",
    "pct_pixels_with_jump": "100 x pixels with >= 1 JUMP_DET group / active (non-reference) pixels; NaN (as "
                            "the numbers per integration) where no group difference is usable",
    "detection_time": "usable differences per active pixel and integration x TGROUP, plus (NFRAMES - 1) x "
                      "TFRAME per run of consecutive usable differences [s]",
    "numbering": "integrations and groups 1-based; pixel_row / pixel_column 0-based, science frame",
    "signal_unit": "DN",
}


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------
def event_structure(connectivity=8, link_groups=False):
    """bool (3, 3, 3) structuring element over (group, row, column) for :func:`find_events`.

    Within a group: 8- (or 4-) connected pixels; across groups (``link_groups``): only the same
    pixel in the previous and next group.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    if link_groups:
        s[0, 1, 1] = s[2, 1, 1] = True
    return s


def find_events(jump, data, select, connectivity=8, link_groups=False, center=None, sigma=None):
    """Cosmic-ray events of one integration.

    Parameters
    ----------
    jump : bool (ngroups, ny, nx)    JUMP_DET cells
    data : float (ngroups, ny, nx)   [DN] the ramp (for the peak of each event)
    select : bool (ny, nx)           pixels that count (active pixels)
    connectivity : 4 or 8            within-group connectivity
    link_groups : bool               connect the same pixel in consecutive groups
    center : float (ny, nx) or None  [DN] median group difference of each pixel (None: 0)
    sigma : float (ny, nx) or None   [DN] the jump step's sigma of a difference (None: unknown)

    Returns
    -------
    events : structured array :data:`EVENT_DTYPE`, one row per event: first ``group`` (0-based),
        peak pixel ``y``, ``x`` (0-based), ``npix`` (distinct pixels), ``ngroups`` (groups
        spanned), ``peak_jump`` [DN] (group-to-group increase at the peak), ``residual`` [DN]
        (difference minus ``center`` at the cell of largest absolute residual; > 0 upward) and
        its ``significance`` (residual / ``sigma``; NaN without ``sigma``)
    labels : int32 (ngroups, ny, nx), 0 outside events, k for event k-1
    """
    j = np.asarray(jump, bool) & np.asarray(select, bool)[None]
    labels, n = ndimage.label(j, structure=event_structure(connectivity, link_groups))
    labels = labels.astype(np.int32, copy=False)
    events = np.zeros(n, EVENT_DTYPE)
    if n == 0:
        return events, labels
    # work on the labelled cells only (sparse): group, pixel, label, group-to-group increase
    ny, nx = j.shape[1:]
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat]
    g, pix = np.divmod(flat, ny * nx)
    data = np.asarray(data)
    dflat = data.reshape(data.shape[0], -1)
    inc = np.full(flat.size, -np.inf)
    up = g >= 1
    inc[up] = dflat[g[up], pix[up]].astype(np.float64) - dflat[g[up] - 1, pix[up]]
    inc[~np.isfinite(inc)] = -np.inf
    order = np.lexsort((-inc, lab))                 # by label, largest increase first
    lab_s = lab[order]
    start = np.flatnonzero(np.r_[True, lab_s[1:] != lab_s[:-1]])
    peak = order[start]
    events["y"], events["x"] = np.divmod(pix[peak], nx)
    events["peak_jump"] = inc[peak]
    g_s = g[order]
    gmin = np.minimum.reduceat(g_s, start)
    events["group"] = gmin
    events["ngroups"] = np.maximum.reduceat(g_s, start) - gmin + 1
    pairs = np.unique(lab.astype(np.int64) * (ny * nx) + pix)       # distinct (label, pixel)
    events["npix"] = np.bincount(pairs // (ny * nx), minlength=n + 1)[1:]
    # residual: the cell whose difference departs most from its pixel's median, either sign
    res = inc.copy()
    if center is not None:
        res = res - np.nan_to_num(np.asarray(center, np.float64).ravel()[pix], nan=0.0)
    res[~np.isfinite(res)] = np.nan
    mag = np.where(np.isfinite(res), np.abs(res), -1.0)
    order_r = np.lexsort((-mag, lab))
    top = order_r[np.flatnonzero(np.r_[True, lab[order_r][1:] != lab[order_r][:-1]])]
    events["residual"] = res[top]
    events["significance"] = (res[top] / np.asarray(sigma, np.float64).ravel()[pix[top]]
                              if sigma is not None else np.nan)
    return events, labels


def event_footprints(labels, indices):
    """Footprints (bool (h, w), the event's pixels over all its groups) of events ``indices``
    (0-based) of a :func:`find_events` label cube."""
    objs = ndimage.find_objects(labels)
    return [(labels[objs[k]] == k + 1).any(axis=0) for k in indices if objs[k] is not None]


def merge_areas(footprints, connectivity=8, npairs=400, seed=0):
    """Mean merge areas of pairs of event footprints [pixels]: (touch, overlap).

    ``touch``: number of offsets of a second footprint at which it touches the first (a pixel of it
    within the first's ``connectivity`` neighbourhood, or on it): two hits in one group at such an
    offset make one event. ``overlap``: offsets at which they share a pixel (what links hits of
    consecutive groups when ``link_groups``). Means over ``npairs`` random pairs (seeded). NaN
    without footprints.
    """
    if not footprints:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    grow = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    touch, overlap = [], []
    for i, j in rng.integers(0, len(footprints), (npairs, 2)):
        a, b = footprints[i].astype(int), footprints[j][::-1, ::-1].astype(int)
        grown = ndimage.binary_dilation(np.pad(a, 1), grow).astype(int)
        touch.append(np.count_nonzero(convolve2d(grown, b) > 0))
        overlap.append(np.count_nonzero(convolve2d(a, b) > 0))
    return float(np.mean(touch)), float(np.mean(overlap))


def pileup_correction(n_net, n_usable_differences, touch_area, overlap_area=0.0, link_groups=False):
    """Factor for the hits lost by merging with another into one event (first order).

    With ``rho = n_net / n_usable_differences`` hits per pixel and difference, a hit meets another
    in its group within the touch area with probability ``rho x touch`` (a pair counted once:
    half of it), and with ``link_groups`` one in the next group within the overlap area:
    ``1 + rho x (touch / 2 + overlap x link_groups)``. 1 when nothing is known.
    """
    if not (n_usable_differences > 0 and n_net > 0 and np.isfinite(touch_area)):
        return 1.0
    rho = n_net / n_usable_differences
    return 1.0 + rho * (0.5 * touch_area + (overlap_area if link_groups else 0.0))


def usable_differences(groupdq, pixeldq, select):
    """Number of usable group differences per pixel in one integration.

    Parameters
    ----------
    groupdq : uint8 (ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    select : bool (ny, nx)

    Returns
    -------
    int32 (ny, nx): differences (g-1, g) with neither group DO_NOT_USE or SATURATED; 0 where the
    pixel is not selected or is DO_NOT_USE.
    """
    ok = (np.asarray(groupdq) & _BAD_GROUP) == 0
    n = np.count_nonzero(ok[1:] & ok[:-1], axis=0).astype(np.int32)
    n[~select | ((np.asarray(pixeldq) & dqflags.DO_NOT_USE) != 0)] = 0
    return n


def usable_runs(groupdq, pixeldq, select):
    """Number of runs of consecutive usable differences per pixel in one integration (int32
    (ny, nx); arguments as :func:`usable_differences`). With NFRAMES > 1 each run sees hits for
    ``(NFRAMES - 1) x TFRAME`` longer than its differences x TGROUP: a hit during the later frames
    of the run's first group, or of its last group, shows in a difference too."""
    ok = (np.asarray(groupdq) & _BAD_GROUP) == 0
    d = ok[1:] & ok[:-1]
    starts = d.copy()
    starts[1:] &= ~d[:-1]
    n = np.count_nonzero(starts, axis=0).astype(np.int32)
    n[~select | ((np.asarray(pixeldq) & dqflags.DO_NOT_USE) != 0)] = 0
    return n


def median_differences(data, groupdq, pixels):
    """Median usable group difference of the chosen pixels over all integrations of a file.

    Parameters
    ----------
    data : float (nints, ngroups, ny, nx) [DN]
    groupdq : uint8 (nints, ngroups, ny, nx)
    pixels : bool (ny, nx), the pixels wanted (work is done on these only)

    Returns
    -------
    float64 (ny, nx) [DN]: NaN outside ``pixels`` and where a pixel has no usable difference.
    """
    out = np.full(pixels.shape, np.nan)
    ys, xs = np.nonzero(pixels)
    if ys.size == 0:
        return out
    sub = np.asarray(data)[:, :, ys, xs].astype(np.float64)           # (nints, ngroups, P)
    sub[(np.asarray(groupdq)[:, :, ys, xs] & _BAD_GROUP) != 0] = np.nan
    d = np.diff(sub, axis=1).reshape(-1, ys.size)
    ok = np.isfinite(d).any(axis=0)
    med = np.full(ys.size, np.nan)
    if ok.any():
        med[ok] = np.nanmedian(d[:, ok], axis=0)
    out[ys, xs] = med
    return out


#: Bytes per value of a block of rows of :func:`ramp_median_differences` (SCI float32 and GROUPDQ
#: as read, the float64 section of the chosen pixels and its differences).
MEDIAN_BYTES_PER_VALUE = 4 + 1 + 8 + 8


def ramp_median_differences(ramp, pixels, memory_mb=common.MEMORY_MB):
    """:func:`median_differences` of a ramp: whole for a :class:`detcal.io.Ramp` in memory, by
    blocks of rows of every integration that fit ``memory_mb`` [MB] for a :class:`LazyRamp`
    (the median is per pixel, so the result does not depend on the blocks)."""
    if not isinstance(ramp, LazyRamp):
        return median_differences(ramp.data, ramp.groupdq, pixels)
    out = np.full(pixels.shape, np.nan)
    nints, ngroups = ramp.data.shape[:2]
    for rows in ramp.reader.row_blocks(memory_mb, MEDIAN_BYTES_PER_VALUE * nints * ngroups):
        if pixels[rows].any():
            out[rows] = median_differences(ramp.reader.read("SCI", rows=rows), ramp.reader.read("GROUPDQ", rows=rows),
                                           pixels[rows])
    return out


def step_sigma(center_dn, gain, readnoise, nframes):
    """The jump step's sigma of one group difference [DN]:
    ``sqrt(|center x gain| + (READNOISE x gain)^2 / NFRAMES) / gain`` (gain [e-/DN], READNOISE [DN,
    CDS], ``center_dn`` [DN] the pixel's median difference, NaN read as 0). Arrays (ny, nx)."""
    g = np.asarray(gain, np.float64)
    rn_e = np.asarray(readnoise, np.float64) * g
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt(np.abs(np.nan_to_num(center_dn) * g) + rn_e ** 2 / nframes) / g
    s[~(s > 0)] = np.nan
    return s


def jump_regime(all_dnu, parameters=None):
    """The regime the jump step chose for an exposure (:func:`detcal.steps.jump.choose_regime`).

    all_dnu : bool (nints, ngroups), groups that are DO_NOT_USE in every pixel
    parameters : jump-step parameters (default :data:`detcal.steps.jump.DEFAULTS`)

    Returns 'skipped', 'sigma_clip', 'single_pass' or 'iterative'.
    """
    return jump_step.choose_regime(np.asarray(all_dnu, bool),
                                   types.SimpleNamespace(**dict(jump_step.DEFAULTS, **(parameters or {}))))


@functools.lru_cache(maxsize=256)
def _tail_probability(kind, n, threshold, noise_e, ndraw=40000, seed=20261207):
    """P(a given one of ``n`` N(0, 1) differences is flagged upward), averaged over the others.

    ``kind`` 'signed': single pass, ``d - median(all n) > T x sig``; 'abs': iterative, ``|d| -
    m > T x sig`` with m the median of the others' ``|d|`` (n >= 4: the candidate, the largest, is
    dropped; n = 3: the middle of the three; n = 2: the other one). ``sig = sqrt(1 + |m| /
    noise_e)`` is the step's sigma over the noise (``noise_e`` [e-], the noise of a difference;
    None: the shot-noise term is left out). The candidate's own tail is integrated exactly
    (``Q(m + T sig)``), the others are drawn: the estimate is precise to ~0.5 %.
    """
    if n < 2 and kind == "abs" or n < 1:
        return 0.0
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((ndraw, n - 1))
    if kind == "signed":
        s = np.sort(np.concatenate([z, np.full((ndraw, 1), np.inf)], axis=1), axis=1)
        m = 0.5 * (s[:, (n - 1) // 2] + s[:, n // 2])
    else:
        a = np.sort(np.abs(z), axis=1)
        if n >= 4:
            m = np.median(a, axis=1)
        elif n == 3:
            m = a[:, 1]
        else:
            m = a[:, 0]
    sig = np.sqrt(1.0 + np.abs(m) / noise_e) if noise_e else 1.0
    return float(ndtr(-(m + threshold * sig)).mean())


def noise_jump_probability(regime, n_diffs, parameters=None, noise_e=None):
    """Probability that one usable difference of a zero-signal pixel with Gaussian noise (the
    step's sigma right) is flagged as an upward jump; the same for downward.

    regime : from :func:`jump_regime`
    n_diffs : int, usable differences in the step's median: single pass, those of all
        integrations; iterative, those of the integration (groups not DO_NOT_USE everywhere)
    parameters : jump-step parameters (default :data:`detcal.steps.jump.DEFAULTS`)
    noise_e : float or None, typical noise of one difference [e-] (READNOISE x GAIN)

    Returns float (NaN for 'sigma_clip', 0 for 'skipped').
    """
    p = dict(jump_step.DEFAULTS, **(parameters or {}))
    noise = round(float(noise_e), 3) if noise_e and np.isfinite(noise_e) else None
    if regime == "skipped":
        return 0.0
    if regime == "sigma_clip":
        return math.nan
    if regime == "single_pass":
        return _tail_probability("signed", int(n_diffs), float(p["rejection_threshold"]), noise)
    n = int(n_diffs)
    threshold = (p["rejection_threshold"] if n >= 4 else p["four_group_rejection_threshold"] if n == 3
                 else p["three_group_rejection_threshold"])
    return _tail_probability("abs", n, float(threshold), noise)


def detection_efficiency(significance_up, significance_down, threshold):
    """Detection efficiency of cosmic-ray hits from the amplitude distribution (module docstring).

    significance_up, significance_down : arrays, significances of the upward and downward events
    threshold : T [sigma]

    Returns dict ``efficiency``, ``efficiency_err``, ``n_missed`` (estimated hits below T),
    ``n_band_up``, ``n_band_down`` (events with |significance| in [1.5 T, 3 T]); NaN when a
    significance is unknown or there is no net signal.
    """
    up = np.abs(np.asarray(significance_up, np.float64))
    down = np.abs(np.asarray(significance_down, np.float64))
    out = {"efficiency": math.nan, "efficiency_err": math.nan, "n_missed": math.nan,
           "n_band_up": 0, "n_band_down": 0}
    if np.isnan(up).any() or np.isnan(down).any():
        return out
    lo, hi = 1.5 * threshold, 3.0 * threshold
    nb_up = int(np.count_nonzero((up >= lo) & (up < hi)))
    nb_down = int(np.count_nonzero((down >= lo) & (down < hi)))
    out.update(n_band_up=nb_up, n_band_down=nb_down)
    net = up.size - down.size
    if net <= 0:
        return out
    # density k*s fitted to the band: n_b = k (hi^2 - lo^2) / 2; missed = k T^2 / 2
    frac = threshold ** 2 / (hi ** 2 - lo ** 2)              # = 1 / 6.75
    missed = max(frac * (nb_up - nb_down), 0.0)
    var_missed = missed ** 2 + frac ** 2 * (nb_up + nb_down)
    out.update(efficiency=net / (net + missed), efficiency_err=net * math.sqrt(var_missed) / (net + missed) ** 2,
               n_missed=missed)
    return out


def integration_statistics(data, groupdq, pixeldq, amp_map, active, noutputs, tgroup, pitch_um,
                           connectivity=8, link_groups=False, center=None, sigma=None,
                           p_noise=math.nan, footprints=None, max_footprints=400, run_extra_s=0.0):
    """Jump statistics of one integration, per amplifier.

    Parameters
    ----------
    data : float32 (ngroups, ny, nx) [DN]
    groupdq : uint8 (ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    amp_map : int (ny, nx), output index; active : bool (ny, nx)
    noutputs : int
    tgroup : float [s]
    pitch_um : float [um]
    connectivity : 4 or 8
    link_groups : bool, see :func:`find_events`
    center, sigma : float (ny, nx) or None [DN], see :func:`find_events`
    p_noise : float, upward noise events expected per usable difference (:func:`noise_jump_probability`)
    run_extra_s : float [s], ``(NFRAMES - 1) x TFRAME``: detection time added per run of usable
        differences (:func:`usable_runs`)
    footprints : list or None, the footprints (:func:`event_footprints`) of upward events of >= 2
        pixels (hits; noise events are single pixels) are appended to it until it holds
        ``max_footprints``

    Returns
    -------
    stats : dict amplifier label -> dict with ``n_active_pixels``, ``n_jump_flags``,
        ``n_pixels_with_jump``, ``n_events``, ``n_events_up``, ``n_events_down``,
        ``n_event_pixels`` (sum of event sizes), ``n_usable_differences``,
        ``n_integrations_usable`` (1 with any usable difference, else 0),
        ``noise_events_expected`` (upward, Gaussian), ``usable_pixel_time_s`` (TGROUP x usable
        differences), ``exposure_cm2_s`` (area-time product of usable differences)
    events : structured array (:data:`EVENT_DTYPE` plus ``amplifier`` label field)
    jumped : bool (ny, nx), pixels with >= 1 JUMP_DET group (active only)
    njump : int16 (ny, nx), JUMP_DET groups per pixel (active only)
    """
    jump = (np.asarray(groupdq) & _JUMP) != 0
    jump &= active[None]
    njump = jump.sum(axis=0, dtype=np.int16)
    jumped = njump > 0
    events, labels = find_events(jump, data, active, connectivity, link_groups, center, sigma)
    ev_amp = np.asarray(amp_map)[events["y"], events["x"]]
    downward = events["residual"] < 0          # NaN residual (no usable difference): upward
    if footprints is not None and len(footprints) < max_footprints:   # hits: upward, >= 2 pixels
        hits = np.flatnonzero(~downward & (events["npix"] >= 2))
        footprints += event_footprints(labels, hits[:max_footprints - len(footprints)])
    usable = usable_differences(groupdq, pixeldq, active)
    runs = usable_runs(groupdq, pixeldq, active) if run_extra_s else np.zeros_like(usable)
    pix_area = (pitch_um * 1e-4) ** 2
    stats = {}
    for label, sel in common.amplifier_masks(amp_map, active, noutputs).items():
        in_amp = np.ones(len(events), bool) if label == common.ALL else ev_amp == int(label) - 1
        n_use = int(usable[sel].sum())
        t_use = n_use * tgroup + int(runs[sel].sum()) * run_extra_s          # pixel-seconds
        stats[label] = {
            "n_active_pixels": int(sel.sum()),
            "n_jump_flags": int(njump[sel].sum()),
            "n_pixels_with_jump": int(jumped[sel].sum()),
            "n_events": int(in_amp.sum()),
            "n_events_up": int((in_amp & ~downward).sum()),
            "n_events_down": int((in_amp & downward).sum()),
            "n_event_pixels": int(events["npix"][in_amp].sum()),
            "n_usable_differences": n_use,
            "n_integrations_usable": int(n_use > 0),
            "noise_events_expected": n_use * p_noise,
            "usable_pixel_time_s": t_use,
            "exposure_cm2_s": t_use * pix_area,
        }
    out = np.zeros(len(events), EVENT_DTYPE.descr + [("amplifier", "U3")])
    for name in EVENT_DTYPE.names:
        out[name] = events[name]
    out["amplifier"] = (ev_amp + 1).astype(str)
    return stats, out, jumped, njump


def rate_and_error(n_events, exposure_cm2_s):
    """Event rate and its Poisson error [events / cm^2 / s]; NaN when the exposure is 0."""
    if exposure_cm2_s <= 0:
        return math.nan, math.nan
    return n_events / exposure_cm2_s, math.sqrt(n_events) / exposure_cm2_s


def corrected_rate(n_up, n_noise, exposure_cm2_s, efficiency=math.nan, efficiency_err=math.nan,
                   noise_var=None):
    """CR rate corrected for noise events and detection efficiency, and its error [events/cm^2/s].

    ``(n_up - n_noise) / (exposure x efficiency)``; variance ``(n_up + noise_var) / (exposure x
    efficiency)^2 + (rate x efficiency_err / efficiency)^2``. ``noise_var`` is the variance of
    the noise estimate (``n_noise`` when it is a count, the default; 0 for an expectation). A NaN
    efficiency means "not corrected" (factor 1, no error term).
    """
    if exposure_cm2_s <= 0:
        return math.nan, math.nan
    eff, eff_err = (1.0, 0.0) if not np.isfinite(efficiency) else (efficiency, efficiency_err)
    noise_var = n_noise if noise_var is None else noise_var
    e = exposure_cm2_s * eff
    rate = (n_up - n_noise) / e
    var = (n_up + noise_var) / e ** 2 + (rate * eff_err / eff) ** 2
    return rate, math.sqrt(var)


def _row(exposure, expstart, label, nints, acc, union, eff, pileup=1.0):
    """One table row from accumulated per-integration stats; ``eff`` from :func:`detection_efficiency`,
    ``pileup`` from :func:`pileup_correction` (multiplies the corrected rates and their errors)."""
    n_act = acc["n_active_pixels"]
    up, down, expo = acc["n_events_up"], acc["n_events_down"], acc["exposure_cm2_s"]
    ng = acc["noise_events_expected"]
    rate, err = (pileup * v for v in corrected_rate(up, down, expo, eff["efficiency"], eff["efficiency_err"]))
    g_rate, g_err = (pileup * v for v in corrected_rate(up, ng, expo, eff["efficiency"], eff["efficiency_err"],
                                                        noise_var=0.0))
    raw, raw_err = rate_and_error(up, expo)
    # numbers per integration count only the integrations with a usable difference (a saturated
    # one saw nothing); none (all saturated / DO_NOT_USE, or no active pixel): nothing could be
    # detected, so they and the percentages are undefined (NaN), not 0; the counts stay 0 and the
    # detection time is a true 0 s
    n_used = acc["n_integrations_usable"]
    seen = acc["n_usable_differences"] > 0
    return {
        "exposure": exposure, "expstart_mjd": expstart, "amplifier": label,
        "n_integrations": nints, "n_active_pixels": n_act,
        "n_jump_flags": acc["n_jump_flags"],
        "jump_flags_per_integration": acc["n_jump_flags"] / n_used if seen else math.nan,
        "n_pixels_with_jump": union,
        "pct_pixels_with_jump": 100.0 * union / n_act if seen else math.nan,
        "pct_pixels_with_jump_per_integration": (100.0 * acc["n_pixels_with_jump"] / n_used / n_act
                                                 if seen else math.nan),
        "n_events": acc["n_events"],
        "n_events_up": up,
        "n_events_down": down,
        "noise_events_expected_gaussian": ng,
        "events_per_integration": acc["n_events"] / n_used if seen else math.nan,
        "mean_pixels_per_event": acc["n_event_pixels"] / acc["n_events"] if acc["n_events"] else math.nan,
        "n_usable_differences": acc["n_usable_differences"],
        "detection_time_per_integration_s": acc["usable_pixel_time_s"] / (n_act * nints) if n_act else math.nan,
        "exposure_cm2_s": expo,
        "cr_rate_uncorrected_events_per_cm2_per_s": raw,
        "cr_rate_uncorrected_err_events_per_cm2_per_s": raw_err,
        "noise_rate_down_events_per_cm2_per_s": rate_and_error(down, expo)[0],
        "noise_rate_gaussian_events_per_cm2_per_s": ng / expo if expo > 0 else math.nan,
        "detection_efficiency": eff["efficiency"],
        "detection_efficiency_err": eff["efficiency_err"],
        "pileup_correction": pileup,
        "cr_rate_events_per_cm2_per_s": rate,
        "cr_rate_err_events_per_cm2_per_s": err,
        "cr_rate_gaussian_noise_corrected_events_per_cm2_per_s": g_rate,
        "cr_rate_gaussian_noise_corrected_err_events_per_cm2_per_s": g_err,
    }


def _add(acc, stats):
    for key, val in stats.items():
        if key != "n_active_pixels":
            acc[key] = acc.get(key, 0) + val
    acc["n_active_pixels"] = stats["n_active_pixels"]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def _example_pixels(jumped, n):
    """Up to ``n`` (row, column) pixels evenly spread through the jumped pixels (row-major order)."""
    ys, xs = np.nonzero(jumped)
    if len(ys) == 0:
        return []
    pick = np.unique(np.linspace(0, len(ys) - 1, min(n, len(ys))).round().astype(int))
    return [(int(ys[i]), int(xs[i])) for i in pick]


def example_table(ramp, exposure, n_examples=9):
    """Long table of example ramps of pixels with jumps (the figures' data).

    Pixels come from the first integration of ``ramp`` that has jumps in active pixels; the
    example with the largest flagged group-to-group increase is example 1 (the single-ramp figure).
    Columns: example, exposure, integration, pixel_row, pixel_column, group, signal_DN,
    jump_flag (0/1), groupdq.
    """
    cols = EXAMPLE_COLUMNS
    _, _, active = common.layout(ramp.header, ramp.data.shape, ramp.path)
    for i in range(ramp.data.shape[0]):
        groupdq = np.asarray(ramp.groupdq[i])              # one integration (read from a LazyRamp)
        jump = ((groupdq & _JUMP) != 0) & active[None]
        pixels = _example_pixels(jump.any(axis=0), n_examples)
        if not pixels:
            continue
        data = np.asarray(ramp.data[i])
        size = []
        for y, x in pixels:
            d = np.diff(data[:, y, x].astype(np.float64))
            flagged = jump[1:, y, x]
            size.append(d[flagged].max() if flagged.any() else -np.inf)
        order = np.argsort(size)[::-1]
        rows = []
        for k, idx in enumerate(order):
            y, x = pixels[idx]
            for g in range(data.shape[0]):
                rows.append((k + 1, exposure, i + 1, y, x, g + 1, float(data[g, y, x]),
                             int(jump[g, y, x]), int(groupdq[g, y, x])))
        return pd.DataFrame(rows, columns=cols)
    return pd.DataFrame([], columns=cols)


def _draw_ramp(ax, t, title_prefix=""):
    ax.plot(t.group, t.signal_DN, "o-", color="black", ms=4, lw=1.2, label="signal")
    flagged = t[t.jump_flag == 1]
    ax.plot(flagged.group, flagged.signal_DN, "o", color="red", ms=6, label="flagged jump (JUMP_DET)")
    y, x = int(t.pixel_row.iloc[0]), int(t.pixel_column.iloc[0])
    ax.set_title(f"{title_prefix}pixel (row {y}, col {x}), int {int(t.integration.iloc[0])}", fontsize=9)
    ax.set_xlabel("group number")
    ax.set_ylabel("signal [DN]")


def plot_single_ramp(table, path, title=""):
    """One ramp (example 1 of :func:`example_table`) with its flagged groups in red."""
    fig, ax = common.plt.subplots(figsize=(6, 5))
    if len(table):
        t = table[table.example == table.example.min()]
        _draw_ramp(ax, t, f"{t.exposure.iloc[0]}\n")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no jumps flagged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("group number")
        ax.set_ylabel("signal [DN]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_ramp_grid(table, path, title=""):
    """3 x 3 grid of example ramps (flagged groups in red), as the NRC-09 notebook."""
    examples = sorted(table.example.unique()) if len(table) else []
    fig, axs = common.subplot_grid(max(len(examples), 1), ncols=3, size=3.3)
    for ax, ex in zip(axs, examples):
        _draw_ramp(ax, table[table.example == ex])
    if not examples:
        axs[0].text(0.5, 0.5, "no jumps flagged", ha="center", va="center", transform=axs[0].transAxes)
        axs[0].set_xlabel("group number")
        axs[0].set_ylabel("signal [DN]")
    fig.suptitle(title or "ramps of pixels with flagged jumps (red)", fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_jump_map(jump_map, path, title):
    """Image of JUMP_DET groups per pixel (colour bar in counts)."""
    fig, ax = common.plt.subplots(figsize=(6.4, 5.4))
    vmax = max(1.0, float(np.percentile(jump_map, 99.9)))
    common.show_image(ax, jump_map, 0, vmax, "JUMP_DET groups per pixel [count]", title, cmap="magma")
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_significance(significance, path, threshold, expected_noise=math.nan, title=""):
    """Histogram of the events' |significance| (step sigma), upward and downward apart.

    ``significance`` signed (< 0: downward); ``threshold`` T is marked with the band [1.5 T, 3 T]
    of the efficiency fit; ``expected_noise`` (Gaussian noise events per direction) is quoted.
    """
    sig = np.asarray(significance, np.float64)
    sig = sig[np.isfinite(sig)]
    fig, ax = common.plt.subplots(figsize=(6.4, 4.6))
    if sig.size:
        hi = max(float(np.abs(sig).max()) * 1.2, 4 * threshold)
        bins = np.geomspace(0.5 * threshold, hi, 60)
        ax.hist(sig[sig > 0], bins, histtype="step", color="black", lw=1.4,
                label=f"upward (cosmic-ray candidates): {int((sig > 0).sum())}")
        ax.hist(-sig[sig < 0], bins, histtype="step", color="tab:blue", lw=1.4,
                label=f"downward (noise): {int((sig < 0).sum())}")
        ax.axvline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:g} sigma")
        ax.axvspan(1.5 * threshold, 3 * threshold, color="0.9", zorder=0, label="efficiency band")
        if np.isfinite(expected_noise):
            ax.plot([], [], " ", label=f"Gaussian expectation per direction: {expected_noise:.1f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no event significances (no READNOISE/GAIN, or no events)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("|flagged difference - pixel median difference| / jump-step sigma")
    ax.set_ylabel("events per bin [count]")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# File level
# ----------------------------------------------------------------------------------------------
def _references(ramp, gain_path, readnoise_path):
    """(gain, readnoise) [e-/DN], [DN CDS] float64 (ny, nx) cut to the ramp, or (None, None)."""
    if not (gain_path and readnoise_path):
        return None, None
    gain = common.read_gain(gain_path, ramp.header, ramp.data.shape, ramp.path).astype(np.float64)
    rn = io.read_reference(readnoise_path, "READNOISE", like=ramp).data.astype(np.float64)
    return gain, rn


def _noise_probabilities(all_dnu, regime, parameters, noise_e):
    """Upward noise events expected per usable difference, per integration (:func:`noise_jump_probability`);
    ``all_dnu`` bool (nints, ngroups): groups DO_NOT_USE in every pixel."""
    ok = ~all_dnu
    n_diffs = np.count_nonzero(ok[:, 1:] & ok[:, :-1], axis=1)
    if regime == "single_pass":
        p = noise_jump_probability(regime, int(n_diffs.sum()), parameters, noise_e)
        return np.full(len(n_diffs), p)
    return np.array([noise_jump_probability(regime, int(n), parameters, noise_e) for n in n_diffs])


@dataclass(frozen=True)
class JumpStatisticsParameters:
    """Parameters of the jump statistics (the rule's ``params.kwargs`` and their defaults).

    jump_parameters : dict or None  the jump step's parameters (default
                                    :data:`detcal.steps.jump.DEFAULTS`): regime and thresholds
                                    of the noise expectation
    pixel_pitch_um : float or None  pixel pitch [um]; None: 18 (NIR) or 25 (MIRI) from INSTRUME
    connectivity : 4 or 8           connectivity of flagged pixels within a group (8)
    link_groups : bool or None      connect the same pixel in consecutive groups into one event;
                                    None: when NFRAMES > 1, where a hit arriving during a group's
                                    frames shows in two differences. In RAPID-like patterns
                                    (NFRAMES = 1) a hit shows in one difference only, and linking
                                    would merge unrelated hits whose neighbour flags touch the same
                                    pixel in consecutive groups
    n_examples : int                example ramps drawn (9)
    memory_mb : float               working-memory budget [MB] of the blocks of rows of the
                                    per-pixel median difference (:func:`ramp_median_differences`);
                                    the rest is read one integration at a time
                                    (:data:`detcal.analysis.common.MEMORY_MB`). Changes no number.
    """

    jump_parameters: dict = None
    pixel_pitch_um: float = None
    connectivity: int = 8
    link_groups: bool = None
    n_examples: int = 9
    memory_mb: float = common.MEMORY_MB

    def jump_step_parameters(self):
        """The jump step's parameters: its defaults updated with ``jump_parameters``."""
        return dict(jump_step.DEFAULTS, **(self.jump_parameters or {}))


def checked_jump_inputs(ramp_paths, group=None):
    """The group's jump-step products in EXPSTART order, the skipped ones, the group name.

    InputError for a file that is not a jump-step product, mixed groups, or a group where the
    jump step skipped itself in every file.
    """
    paths = [str(p) for p in ramp_paths]
    headers = [io.read_headers(p)[0] for p in paths]
    inventory.check_one_group(headers, paths)
    group = group or inventory.group_name(headers[0], paths[0])
    status = [str(h.get("S_JUMP", "")).strip().upper() for h in headers]
    for path, st in zip(paths, status):
        if st not in ("COMPLETE", "SKIPPED"):
            raise InputError(path, f"is not a jump-step product (S_JUMP={st or 'absent'}); jump statistics "
                                   "need the GROUPDQ of the jump step")
    skipped = [p for p, st in zip(paths, status) if st == "SKIPPED"]
    if len(skipped) == len(paths):
        raise InputError(paths[0], "the jump step was skipped (S_JUMP=SKIPPED, NGROUPS <= 2) in every file "
                                   "of the group: no jump statistics")
    keep = [i for i, st in enumerate(status) if st == "COMPLETE"]
    order = sorted(keep, key=lambda i: (common.expstart(headers[i]), paths[i]))
    return [paths[i] for i in order], skipped, group


def _integration_row(name, start, i, a):
    rate, err = corrected_rate(a["n_events_up"], a["n_events_down"], a["exposure_cm2_s"])
    return {"exposure": name, "expstart_mjd": start, "integration": i + 1,
            "n_jump_flags": a["n_jump_flags"], "n_pixels_with_jump": a["n_pixels_with_jump"],
            "pct_pixels_with_jump": (100.0 * a["n_pixels_with_jump"] / a["n_active_pixels"]
                                     if a["n_usable_differences"] else math.nan),     # as _row
            "n_events": a["n_events"], "n_events_up": a["n_events_up"],
            "n_events_down": a["n_events_down"],
            "noise_events_expected_gaussian": a["noise_events_expected"],
            "n_usable_differences": a["n_usable_differences"],
            "cr_rate_events_per_cm2_per_s": rate,
            "cr_rate_err_events_per_cm2_per_s": err,
            "detection_efficiency_applied": False}


def _event_rows(name, i, events):
    return [(name, i + 1, int(e["group"]) + 1, int(e["y"]), int(e["x"]), str(e["amplifier"]), int(e["npix"]),
             int(e["ngroups"]), float(e["peak_jump"]), float(e["residual"]), float(e["significance"]),
             "down" if e["residual"] < 0 else "up") for e in events]


def ramp_jump_statistics(ramp, name, start, gain, rn, dead, parameters, footprints):
    """Jump statistics of every integration of one jump-step ramp (no file access but a
    :class:`LazyRamp`'s reads of its own file).

    ramp : :class:`detcal.io.Ramp` or :class:`LazyRamp` (read one integration, or one block of
    rows, at a time);  gain [e-/DN], rn [DN CDS] : float64 (ny, nx) or None;
    dead : 0-based dead outputs (no detection area);  footprints : list, extended with the
    events' footprints (:func:`merge_areas`).

    Returns dict: ``per_integration`` rows, ``events`` rows, ``significance`` (signed, one array
    per integration), ``acc`` (label -> summed statistics), ``int_stats`` (each integration's),
    ``union`` (pixels with a jump in any integration), ``jump_map`` (JUMP_DET groups per pixel),
    ``masks``, ``noutputs``, ``pitch``, ``detector``, ``regime``, ``noise_e`` (read noise per
    difference [e-], NaN without gain), ``has_gain``, ``link``, ``nints``.
    """
    p, jparams = parameters, parameters.jump_step_parameters()
    meta = ramp.meta("jump")
    geom, amp_map, active = common.layout(ramp.header, ramp.data.shape, ramp.path)
    if dead:        # a dead output detects nothing: it is no detection area
        active = active & ~np.isin(amp_map, dead)
    pitch = common.pixel_pitch(ramp.header, p.pixel_pitch_um)
    link = meta["NFRAMES"] > 1 if p.link_groups is None else bool(p.link_groups)
    jumped_any = np.zeros(ramp.data.shape[-2:], bool)
    all_dnu = np.zeros(ramp.data.shape[:2], bool)           # (nints, ngroups): DO_NOT_USE everywhere
    for i in range(ramp.data.shape[0]):
        groupdq = np.asarray(ramp.groupdq[i])
        jumped_any |= ((groupdq & _JUMP) != 0).any(axis=0)
        all_dnu[i] = np.all((groupdq & _DNU) != 0, axis=(1, 2))
    flagged = jumped_any & active
    center = ramp_median_differences(ramp, flagged, p.memory_mb)
    sigma = step_sigma(center, gain, rn, meta["NFRAMES"]) if gain is not None else None
    noise_e = math.nan
    if gain is not None:
        rn_e = (rn * gain)[active]
        rn_e = rn_e[np.isfinite(rn_e) & (rn_e > 0)]
        noise_e = float(np.median(rn_e)) / math.sqrt(meta["NFRAMES"]) if rn_e.size else math.nan
    regime = jump_regime(all_dnu, jparams)
    p_noise = _noise_probabilities(all_dnu, regime, jparams, noise_e if gain is not None else None)
    out = {"per_integration": [], "events": [], "significance": [], "acc": {}, "int_stats": [],
           "union": None, "jump_map": None}
    for i in range(ramp.data.shape[0]):
        stats, events, jumped, njump = integration_statistics(
            np.asarray(ramp.data[i]), np.asarray(ramp.groupdq[i]), ramp.pixeldq, amp_map, active, geom.noutputs,
            meta["TGROUP"], pitch, p.connectivity, link, center, sigma, p_noise[i], footprints,
            run_extra_s=(meta["NFRAMES"] - 1) * meta["TFRAME"])
        out["union"] = jumped if out["union"] is None else out["union"] | jumped
        out["jump_map"] = njump.astype(np.int32) if out["jump_map"] is None else out["jump_map"] + njump
        for label, st in stats.items():
            _add(out["acc"].setdefault(label, {}), st)
        out["int_stats"].append(stats)
        out["per_integration"].append(_integration_row(name, start, i, stats[common.ALL]))
        out["events"] += _event_rows(name, i, events)
        out["significance"].append(np.where(events["residual"] < 0, -np.abs(events["significance"]),
                                            np.abs(events["significance"])))
    out.update(masks=common.amplifier_masks(amp_map, active, geom.noutputs), noutputs=geom.noutputs,
               pitch=pitch, detector=meta["DETECTOR"], regime=regime, noise_e=noise_e,
               has_gain=gain is not None, link=link, nints=ramp.data.shape[0])
    return out


class LazyRamp:
    """A jump-step ramp file in place of a :class:`detcal.io.Ramp`, read one integration (or one
    block of rows) at a time: ``data`` and ``groupdq`` are :class:`detcal.io.LazyArray` of SCI and
    GROUPDQ (``x[i]`` reads integration i), ``pixeldq``, ``header``, ``path`` and :meth:`meta`
    as a Ramp's, ``reader`` the open :class:`detcal.io.RampReader`."""

    def __init__(self, reader):
        self.reader, self.header, self.path = reader, reader.header, reader.path
        self.data, self.groupdq = reader.lazy("SCI"), reader.lazy("GROUPDQ")
        self.pixeldq = reader.read("PIXELDQ")

    def meta(self, step="inventory"):
        """Typed dict of the keywords ``step`` needs (:func:`detcal.keywords.require`)."""
        return keywords.require(self.header, step, self.path)


class _GroupJumps:
    """Running sums of the group over its files (per-file rows, group totals, maps, events)."""

    def __init__(self):
        self.per_file, self.per_int, self.events, self.significance, self.footprints = [], [], [], [], []
        self.acc, self.union, self.masks, self.jump_map, self.examples = {}, None, None, None, None
        self.nints, self.regimes, self.noise_e = 0, [], math.nan
        self.pitch = self.detector = self.link = None

    def add(self, name, start, res):
        for stats in res["int_stats"]:      # integration by integration: the same sums as one loop
            for label, st in stats.items():
                _add(self.acc.setdefault(label, {}), st)
        self.per_int += res["per_integration"]
        self.events += res["events"]
        self.significance += res["significance"]
        self.jump_map = res["jump_map"] if self.jump_map is None else self.jump_map + res["jump_map"]
        self.masks = res["masks"]
        self.union = res["union"] if self.union is None else self.union | res["union"]
        self.per_file.append((name, start, res["nints"], res["acc"],
                              {label: int(res["union"][res["masks"][label]].sum())
                               for label in common.amplifier_labels(res["noutputs"])}))
        self.nints += res["nints"]
        self.regimes.append(res["regime"])
        self.pitch, self.detector, self.link = res["pitch"], res["detector"], res["link"]
        if res["has_gain"]:
            self.noise_e = res["noise_e"]

    def signed_significance(self):
        return np.concatenate(self.significance) if self.significance else np.zeros(0)


def jump_table(grp, eff, pileup):
    """The jump table: one row per (exposure, amplifier) plus rows ``exposure = 'all'`` for the
    group; columns (units in names): see :data:`CONVENTIONS` and :func:`_row`."""
    rows = []
    for name, start, nints, acc, unions in grp.per_file:
        for label, union in unions.items():
            rows.append(_row(name, start, label, nints, acc[label], union, eff, pileup))
    for label, sel in grp.masks.items():
        rows.append(_row("all", math.nan, label, grp.nints, grp.acc[label], int(grp.union[sel].sum()), eff,
                         pileup))
    return pd.DataFrame(rows)


_SUMMARY_COLUMNS = (   # summary key <- table column of the group's whole-array row
    ("jump_flags_per_integration", "jump_flags_per_integration"),
    ("pct_pixels_with_jump_per_integration", "pct_pixels_with_jump_per_integration"),
    ("pct_pixels_with_jump_all_integrations", "pct_pixels_with_jump"),
    ("events_per_integration", "events_per_integration"),
    ("mean_pixels_per_event", "mean_pixels_per_event"))


def jump_summary(g, grp, n_files, eff, areas, pileup, dead=()):
    """The JSON ``summary`` from the group's whole-array row ``g`` of the table: group numbers
    (``cr_rate_events_per_cm2_per_s`` and its error, the upward and downward events, the noise
    expectation, the efficiency, ``jump_regime``, ...) and the dead outputs."""
    touch, overlap = areas
    summary = {
        "detector": grp.detector,
        "n_files": n_files,
        "n_integrations": grp.nints,
        "pixel_pitch_um": grp.pitch,
        "jump_regime": "/".join(sorted(set(grp.regimes))),
        **{key: g[col] for key, col in _SUMMARY_COLUMNS},
        "n_events_up": int(g.n_events_up),
        "n_events_down": int(g.n_events_down),
        "noise_events_expected_gaussian": g.noise_events_expected_gaussian,
        "n_usable_differences": int(g.n_usable_differences),
        "exposure_cm2_s": g.exposure_cm2_s,
        "cr_rate_uncorrected_events_per_cm2_per_s": g.cr_rate_uncorrected_events_per_cm2_per_s,
        "noise_rate_down_events_per_cm2_per_s": g.noise_rate_down_events_per_cm2_per_s,
        "noise_rate_gaussian_events_per_cm2_per_s": g.noise_rate_gaussian_events_per_cm2_per_s,
        "detection_efficiency": eff["efficiency"],
        "detection_efficiency_err": eff["efficiency_err"],
        "merge_area_touch_pixels": touch,
        "merge_area_overlap_pixels": overlap,
        "pileup_correction": pileup,
        "cr_rate_events_per_cm2_per_s": g.cr_rate_events_per_cm2_per_s,
        "cr_rate_err_events_per_cm2_per_s": g.cr_rate_err_events_per_cm2_per_s,
        "cr_rate_gaussian_noise_corrected_events_per_cm2_per_s":
            g.cr_rate_gaussian_noise_corrected_events_per_cm2_per_s,
        "cr_rate_gaussian_noise_corrected_err_events_per_cm2_per_s":
            g.cr_rate_gaussian_noise_corrected_err_events_per_cm2_per_s,
        "detection_time_per_integration_s": g.detection_time_per_integration_s,
        "dead_amplifiers": [k + 1 for k in dead], "n_dead_amplifiers": len(dead),
    }
    if dead:
        summary["note"] = common.join_notes(logging.getLogger(__name__), common.dead_amplifier_note(
            [k + 1 for k in dead], "no detection area (left out of the CR rate)"))
    if not g.n_usable_differences:
        summary["note"] = "; ".join(s for s in (
            summary.get("note"), "no usable group differences (every group DO_NOT_USE or SATURATED, e.g. "
            "MIRI ramps of <= 12 groups in the branch without dark subtraction): no CR rate, no jump "
            "percentages or numbers per integration") if s)
    return summary


def _write_jump_map(path, jump_map, detector, paths, nints):
    h = fits.Header()
    h["DETECTOR"] = detector
    h["NFILES"] = (len(paths), "files summed")
    h["NINTS"] = (nints, "integrations summed")
    io.add_history(h, "jump map", paths)
    hdu = fits.ImageHDU(jump_map, name="SCI")
    hdu.header["BUNIT"] = "count"
    io.atomic_write(fits.HDUList([fits.PrimaryHDU(header=h), hdu]), path)


def _write_jump_extras(grp, paths, group, sig, threshold, noise_expected, outputs):
    events_tsv, map_fits, map_png, examples_tsv, ramp_png, grid_png, significance_png = outputs
    if events_tsv:
        tables.write_tsv(pd.DataFrame(grp.events, columns=[
            "exposure", "integration", "group", "pixel_row", "pixel_column", "amplifier", "npix",
            "ngroups", "peak_jump_DN", "residual_DN", "significance_sigma", "direction"]), events_tsv)
    title = f"{group}: {len(paths)} files, {grp.nints} integrations"
    if map_fits:
        _write_jump_map(map_fits, grp.jump_map, grp.detector, paths, grp.nints)
    if map_png:
        plot_jump_map(grp.jump_map, map_png, f"JUMP_DET groups per pixel\n{title}")
    ex = grp.examples if grp.examples is not None else pd.DataFrame(columns=EXAMPLE_COLUMNS)
    if examples_tsv:
        tables.write_tsv(ex, examples_tsv)
    if ramp_png:
        plot_single_ramp(ex, ramp_png, group)
    if grid_png:
        plot_ramp_grid(ex, grid_png, f"{group}: ramps of pixels with flagged jumps (red)")
    if significance_png:
        plot_significance(sig, significance_png, threshold, noise_expected,
                          f"{title}: events by significance")


@keyword_parameters(JumpStatisticsParameters)
def jump_statistics_file(ramp_paths, table_path, json_path, group=None, events_tsv=None,
                         map_fits=None, map_png=None, examples_tsv=None, ramp_png=None, grid_png=None,
                         significance_png=None, gain_path=None, readnoise_path=None, raw_paths=None,
                         parameters=None):
    """Jump statistics of one configuration group from its jump-step ramps.

    Read (one ramp at a time, its GAIN and READNOISE cut to it) -> measure
    (:func:`ramp_jump_statistics`; group: :func:`detection_efficiency`, :func:`merge_areas`,
    :func:`pileup_correction`, :func:`jump_table`, :func:`jump_summary`) -> write.

    Parameters
    ----------
    ramp_paths : list of str
        Jump-step products (``{exposure}_jumpstep.fits``, RampModel layout with GROUPDQ) of one
        configuration group; any ramp product after the jump step works (S_JUMP = COMPLETE;
        files where the step skipped itself, S_JUMP = SKIPPED, are left out and listed as
        ``skipped_inputs``). Headers need the jump step's keywords (TGROUP, ...); EXPSTART
        orders the files when present.
    table_path : str
        :func:`jump_table` (columns with units in their names: :data:`CONVENTIONS`, :func:`_row`).
    json_path : str
        ``summary`` (:func:`jump_summary`), ``per_integration`` (all-amplifier numbers of every
        integration), ``efficiency``, ``table``, ``conventions``, ``parameters``.
    group : str, optional
        Group name written to the outputs (default: from the first file's keywords).
    events_tsv : str, optional
        Event list: exposure, integration, group, pixel_row, pixel_column, amplifier, npix,
        ngroups, peak_jump_DN, residual_DN, significance_sigma, direction ('up'/'down').
    map_fits, map_png : str, optional
        JUMP_DET groups per pixel summed over all files and integrations (FITS ``SCI`` int32) and
        its image.
    examples_tsv, ramp_png, grid_png : str, optional
        Example ramps of flagged pixels (from the first file with jumps) and the seeds' figures
        drawn from them: one ramp and a 3 x 3 grid, flagged groups in red.
    significance_png : str, optional
        Histogram of the events' significances, upward and downward (:func:`plot_significance`).
    gain_path, readnoise_path : str, optional
        The GAIN and READNOISE references the jump step used: with them, event significances, the
        Gaussian noise expectation with the shot-noise term and the detection efficiency.
    raw_paths : list of str, optional
        The group's raw files: outputs dead or flat in all of them
        (:func:`common.dead_amplifiers`) are no detection area (their rows have 0 active pixels,
        the whole-array rate is the live outputs'); listed in the summary (``dead_amplifiers``).
    jump_parameters, pixel_pitch_um, connectivity, link_groups, n_examples
        :class:`JumpStatisticsParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: the JSON document written.
    """
    p = parameters
    paths, skipped, group = checked_jump_inputs(ramp_paths, group)
    jparams = p.jump_step_parameters()
    dead = common.dead_amplifiers(raw_paths) if raw_paths else []
    grp = _GroupJumps()
    for path in paths:          # one integration (or block of rows) of one file at a time
        with io.RampReader(path, "jump") as reader:
            ramp = LazyRamp(reader)
            name = inventory.exposure_name(path, product=True)
            start = common.expstart(ramp.header)
            gain, rn = _references(ramp, gain_path, readnoise_path)
            grp.add(name, start, ramp_jump_statistics(ramp, name, start, gain, rn, dead, p, grp.footprints))
            if grp.examples is None and (examples_tsv or ramp_png or grid_png):
                ex = example_table(ramp, name, p.n_examples)
                grp.examples = ex if len(ex) else None

    sig = grp.signed_significance()
    if gain_path and readnoise_path:     # events on pixels without a sigma (GAIN 0) are left out
        eff = detection_efficiency(sig[sig >= 0], sig[sig < 0], jparams["rejection_threshold"])
    else:
        eff = detection_efficiency([math.nan], [], jparams["rejection_threshold"])
    touch, overlap = merge_areas(grp.footprints, p.connectivity)
    whole = grp.acc[common.ALL]
    pileup = pileup_correction(whole["n_events_up"] - whole["n_events_down"], whole["n_usable_differences"],
                               touch, overlap, grp.link)
    table = jump_table(grp, eff, pileup)
    tables.write_tsv(table, table_path)
    g = table[(table.exposure == "all") & (table.amplifier == common.ALL)].iloc[0]
    doc = {"analysis": "jumps", "group": group, "inputs": paths, "skipped_inputs": skipped,
           "conventions": CONVENTIONS,
           "parameters": {"connectivity": p.connectivity, "link_groups": grp.link,
                          "pixel_pitch_um": grp.pitch, "jump_parameters": jparams,
                          "gain": gain_path, "readnoise": readnoise_path,
                          "noise_per_difference_e": grp.noise_e},
           "efficiency": eff,
           "summary": jump_summary(g, grp, len(paths), eff, (touch, overlap), pileup, dead),
           "per_integration": grp.per_int,
           "table": tables.records(table)}
    tables.write_json(doc, json_path)
    _write_jump_extras(grp, paths, group, sig, jparams["rejection_threshold"],
                       g.noise_events_expected_gaussian,
                       (events_tsv, map_fits, map_png, examples_tsv, ramp_png, grid_png, significance_png))
    return doc
