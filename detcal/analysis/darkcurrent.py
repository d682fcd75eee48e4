"""Dark current per amplifier and per detector from the slope products of one configuration group.

Input: the ``rateints`` products (per-integration slopes [DN/s]) of a group, from a chain that
does **not** subtract a dark, and the GAIN reference [e-/DN].

1. Slope image: per-pixel 3-sigma-clipped mean over every integration of every file (the JWQL
   dark monitor's mean image), with its per-pixel std; written in the slope-image format of
   :func:`detcal.analysis.common.write_slope_images` (usable as a stability baseline).
2. Pixels used: active (reference pixels excluded) and no DQ bit of ``exclude_dq`` set in the
   integrations' DQ that is common to all of them (default DO_NOT_USE, DEAD, HOT, i.e. pixel
   properties; JUMP_DET is a transient and is not a reason to drop a pixel).
3. Per amplifier and for the whole array (``'all'``):

   * ``mean``: 3-sigma-clipped mean of the slope image (astropy ``sigma_clip`` defaults:
     median centre, ``maxiters=5``), with ``median`` and ``std`` (pixel scatter);
   * ``mode``: peak of a Gaussian fitted to the histogram over ``mean +/- 7 std`` (JWQL),
     with its fit error, width and Pearson chi-square (:func:`common.histogram_gaussian_fit`);
   * ``sigma_stat`` of the mean: the scatter of the same clipped mean computed on each
     integration's slope image, ``std(ddof=1) / sqrt(n_integrations)``. Correlated noise (1/f,
     amplifier drifts, reference-pixel correction) moves all pixels of an integration together,
     so ``std / sqrt(npix)`` would underestimate it; with one integration only that white-noise
     value is given and ``sigma_stat_method`` says so.

4. Units: DN/s, and e-/s and e-/1000 s with the amplifier's median gain (per-amplifier gain
   from the GAIN reference; ``'all'`` uses the median over the whole array).
5. Expected values (NRC-09, ground): SW 1.9 +/- 1.1, LW 27 +/- 5 e-/1000 s, looked up by
   DETECTOR, then by channel (:data:`CHANNELS`); configurable. Verdict ``PASS`` when
   ``|measured - expected| <= n_sigma * sqrt(uncertainty^2 + sigma_stat^2)`` (default
   ``n_sigma = 2``; measured = the clipped mean), ``FAIL`` otherwise, ``N/A`` without an
   expectation, and ``N/A`` (with a note; mean and error kept) when ``sigma_stat`` exceeds
   :data:`NO_POWER_RATIO` times the expected value: on very short ramps (e.g. 5 groups of a
   32 x 32 full frame, 33 ms) the dark charge is far below the read noise and a PASS or FAIL
   says nothing about the dark. Measured over 240 seeded short-ramp campaigns (tframe 6.6 ms to
   0.05 s, 5 and 10 groups, 1 and 4 outputs, 8-10 integrations, tests/test_truth_darkcurrent.py)
   the mean shows no bias beyond +0.2 sigma and ``sigma_stat`` has the right scale (rms of
   measured - truth / rms sigma_stat 0.8-1.1 per regime): the pull follows Student's t with
   n_integrations - 1 degrees of freedom, so with 8-10 integrations |pull| > 3 happens in a few
   % of campaigns by chance (4 of 90 seeds in one regime).

6. MIRI (with the no-dark jump ramps, ``ramp_paths``): the reset anomaly and RSCD of the
   first groups bias the slopes (the issue-10 demo: +37 e-/1000 s on ~209 with groups 11-39
   fitted). The bias is measured on the data, per amplifier (:func:`anomaly_bias`): the
   integrations' clipped mean first differences give a mean ramp per class (integration 1;
   later integrations); a line plus decaying anomaly terms (:func:`fit_anomaly`: one
   exponential-or-power-law reset term shared by the classes, one exponential RSCD-like term in
   the later integrations, one dark rate) chooses the group ``s`` from which that ramp is linear
   within a stated tolerance (:func:`late_start`: anomaly bias of the slope <= 1 % of the rate
   or <= 0.25 of its own statistical error); each integration's bias is then the slope of its
   own mean ramp over the fitted groups minus its slope over groups s..end (model-free), and is
   subtracted from that integration's mean (``anomaly_bias_DN_per_s`` in the table). The error
   is the scatter of the corrected integration means about their class means
   (:func:`stratified_sigma`), so it includes the late slope's larger noise. The truth this
   estimates is the mean dark rate of the pixels the clipping kept (``clip_lower/upper``).

Memory (:class:`RateGroup`): the group is never stacked. The per-integration values (clipped
means, the DQ bits set in every integration, MIRI's kept pixels, re-derived from each
integration's clipping bounds) are read one integration at a time, the slope image from blocks of
rows of every integration that fit ``memory_mb``; what grows with the number of integrations are
per-integration scalars only. The numbers do not depend on ``memory_mb``.

Known offsets of the input slopes (measured on simulated 10-group RAPID ramps, see the tests):
the optimally weighted ramp fit reads a 0.5 e-/s dark 0.3 % high compared with plain OLS (its
weights depend on each ramp's own SNR, which is near the 5 and 10 switch points there), and
cosmic-ray charge below the jump threshold (unflagged diagonal neighbours) adds about
0.05-0.07 e-/1000 s per event/cm^2/s of CR rate (~0.25 e-/1000 s at 4 events/cm^2/s), which matters
for short-wave darks of ~2 e-/1000 s.
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import dqflags, inventory, io, tables
from ..errors import InputError
from ..multiaccum import int_numbers
from ..parameters import keyword_parameters
from . import common, robust

log = logging.getLogger(__name__)

#: Expected dark current [e-/1000 s]: (value, uncertainty) per channel (NRC-09 notebooks, ground).
EXPECTED = {"SW": (1.9, 1.1), "LW": (27.0, 5.0)}

#: DETECTOR -> channel for the expectation lookup.
CHANNELS = {**{f"NRC{m}{k}": "SW" for m in "AB" for k in "1234"},
            "NRCALONG": "LW", "NRCBLONG": "LW", "NRCA5": "LW", "NRCB5": "LW"}

#: Verdict ``N/A`` when sigma_stat > NO_POWER_RATIO x the expected value: then only a dark
#: current above ~2 x NO_POWER_RATIO times the expectation could FAIL, and the ~5 % chance FAILs
#: of a 2-sigma test would outnumber real ones (the short-ramp regime, module docstring 5).
NO_POWER_RATIO = 5.0

#: DQ flags that exclude a pixel from the statistics (when set in every integration).
EXCLUDE_DQ = ("DO_NOT_USE", "DEAD", "HOT")

CONVENTIONS = {
    "slope_image": "per-pixel 3-sigma-clipped mean over all integrations (rateints) of all files",
    "pixels": "active (non-reference) pixels without the excluded DQ flags",
    "mean": "3-sigma-clipped mean (median centre, maxiters 5) of the slope image",
    "mode": "peak of a Gaussian fitted to the histogram over mean +/- 7 std (Pearson chi2, dof = bins - 3)",
    "sigma_stat": "std(ddof=1) of the per-integration clipped means / sqrt(n_integrations)",
    "units": "DN/s; e-/s = DN/s x gain (amplifier median of the GAIN reference); e-/1000s = 1000 x e-/s",
    "verdict": "PASS if |mean - expected| <= n_sigma x sqrt(expected_unc^2 + sigma_stat^2); N/A without "
               f"an expectation or when sigma_stat > {NO_POWER_RATIO:g} x expected (the test has no power)",
    "miri_anomaly": "MIRI: reset-anomaly/RSCD slope bias measured on the no-dark ramps (slope of each "
                    "integration's mean ramp over the fitted groups minus over the groups where a fitted "
                    "anomaly model says the ramp is linear within 1 % of the rate or 0.25 sigma) and "
                    "subtracted; sigma_stat then from the corrected integration means",
    "error": "sigma_stat is a 1-sigma standard error of the mean (statistical only)",
}


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------
def expected_dark(detector, expected=None):
    """Expected dark current of a detector: ``(value, uncertainty)`` [e-/1000 s] or None.

    Parameters
    ----------
    detector : str, DETECTOR keyword
    expected : dict, optional
        ``{key: (value, uncertainty)}`` with keys detector names or channels ('SW', 'LW', ...);
        replaces :data:`EXPECTED` entries of the same key. Lookup: the detector name, then its
        channel (:data:`CHANNELS`).
    """
    table = dict(EXPECTED)
    table.update({str(k).upper(): tuple(v) for k, v in (expected or {}).items()})
    det = str(detector).strip().upper()
    for key in (det, CHANNELS.get(det)):
        if key and key in table:
            value, unc = table[key]
            return float(value), float(unc)
    return None


def verdict(measured, sigma_stat, expected_value, expected_unc, n_sigma=2.0):
    """``'PASS'``, ``'FAIL'`` or ``'N/A'`` for a measured dark current [all in e-/1000 s]
    (``N/A``: no expectation, no measurement, or :func:`no_power`)."""
    if expected_value is None or not np.isfinite(measured) or no_power(sigma_stat, expected_value):
        return "N/A"
    stat = sigma_stat if np.isfinite(sigma_stat) else 0.0
    return "PASS" if abs(measured - expected_value) <= n_sigma * math.hypot(expected_unc, stat) else "FAIL"


def no_power(sigma_stat, expected_value, ratio=NO_POWER_RATIO):
    """True when the statistical error [e-/1000 s] exceeds ``ratio`` x the expected dark current
    [e-/1000 s]: a comparison with the expectation cannot tell anything (:data:`NO_POWER_RATIO`)."""
    return (expected_value is not None and expected_value > 0 and np.isfinite(sigma_stat)
            and sigma_stat > ratio * expected_value)


def pixel_selection(active, dq_cube, exclude_dq=EXCLUDE_DQ):
    """bool (ny, nx): active pixels without the ``exclude_dq`` flags set in every integration.

    Parameters
    ----------
    active : bool (ny, nx)
    dq_cube : uint32 (n, ny, nx), DQ of the integrations
    exclude_dq : flag names
    """
    bits = common.dq_bits(exclude_dq)
    return active & ((common.persistent_dq(dq_cube) & np.uint32(bits)) == 0)


def amplifier_dark(image, masks, sigma=3.0, maxiters=5, hist_nsigma=7.0):
    """Clipped statistics and histogram mode of a slope image per pixel selection.

    Parameters
    ----------
    image : float (ny, nx) [DN/s], NaN ignored
    masks : dict label -> bool (ny, nx) (:func:`common.amplifier_masks`)
    sigma, maxiters : clipping
    hist_nsigma : histogram half-range in clipped std

    Returns
    -------
    dict label -> dict: ``stats`` (:class:`common.ClippedStats`), ``fit``
    (:func:`common.histogram_gaussian_fit` result)
    """
    out = {}
    for label, sel in masks.items():
        st = robust.clipped_stats(image[sel], sigma, maxiters)
        fit = common.histogram_gaussian_fit(image[sel], st.mean, st.std, nsigma=hist_nsigma)
        out[label] = {"stats": st, "fit": fit}
    return out


def integration_means(cube, masks, sigma=3.0, maxiters=5, bounds=None):
    """Clipped mean of every integration's slope image per pixel selection.

    Parameters
    ----------
    cube : float (n, ny, nx) [DN/s], or :class:`Integrations` (read one integration at a time)
    masks : dict label -> bool (ny, nx)
    bounds : list, optional
        Filled with one dict per integration, label -> (lower, upper) [DN/s]: the final clipping
        bounds (:func:`kept_pixels` gives the pixels kept, from the slope image again).

    Returns
    -------
    dict label -> float64 (n,) [DN/s]
    """
    out = {label: np.empty(cube.shape[0]) for label in masks}
    for i, img in enumerate(cube):
        clip = {}
        for label, sel in masks.items():
            st = robust.clipped_stats(img[sel], sigma, maxiters)
            out[label][i] = st.mean
            clip[label] = (st.lower, st.upper)
        if bounds is not None:
            bounds.append(clip)
    return out


def kept_pixels(image, masks, bounds):
    """dict label -> bool (ny, nx): the pixels of ``masks`` whose slope in ``image`` (ny, nx)
    [DN/s] is within that label's clipping ``bounds`` (lower, upper) of :func:`integration_means`."""
    return {label: sel & (image >= bounds[label][0]) & (image <= bounds[label][1])
            for label, sel in masks.items()}


def sigma_stat(means, fallback=math.nan):
    """Error of the mean from the scatter of independent estimates: ``std(ddof=1) / sqrt(n)``.

    Returns ``(value, method)``; with fewer than 2 finite estimates ``(fallback, 'white')``.
    """
    m = np.asarray(means, np.float64)
    m = m[np.isfinite(m)]
    if m.size < 2:
        return fallback, "white"
    return float(m.std(ddof=1) / math.sqrt(m.size)), "integration_scatter"


#: Default working-memory budget [MB] of the blocks of rows of the per-pixel slope images
#: (:meth:`RateGroup.images`; the analyses' ``memory_mb``).
MEMORY_MB = common.MEMORY_MB

#: Bytes per value of a block of rows of :meth:`RateGroup.images`: the SCI float32 as read plus
#: the clipping's temporaries (:data:`detcal.analysis.robust.CLIP_IMAGE_BYTES_PER_VALUE`).
IMAGE_BLOCK_BYTES_PER_VALUE = 4 + robust.CLIP_IMAGE_BYTES_PER_VALUE


class RateGroup:
    """The rateints products of one configuration group, read a part at a time.

    Every file is checked from its headers (:class:`detcal.io.CubeReader`: a 2-D rate is one
    integration) and against the first (frame size; :func:`detcal.inventory.check_one_group`)
    before any data is read. The data are then read one integration at a time (:attr:`sci`,
    :attr:`dq`, :meth:`persistent_dq`) or one block of rows of every integration at a time
    (:meth:`images`), so that the memory of an analysis does not grow with the number of
    integrations (only its per-integration scalars do).

    Attributes
    ----------
    paths : list of str;  headers : primary headers, one per file, in the given order
    owner : int (n,), index of each integration's file;  shape : (n, ny, nx), n integrations
    name : the group's name (``group`` or the inventory's name of the first file,
        :func:`detcal.inventory.group_name`)
    sci, dq : :class:`Integrations` of SCI (float32 [DN/s]) and DQ (uint32), (n, ny, nx)

    Use it as a context manager (the files are closed at the end), or call :meth:`close`.
    """

    def __init__(self, rateints_paths, group=None):
        paths = [str(p) for p in rateints_paths]
        if not paths:
            raise ValueError("no rateints products given")
        readers = [io.CubeReader(path, ("SCI", "DQ")) for path in paths]
        first = readers[0]
        for r in readers[1:]:
            if r.shape[1:] != first.shape[1:]:
                raise InputError(r.path, f"slope images are {r.shape[2]} x {r.shape[1]}, but "
                                         f"{paths[0]} has {first.shape[2]} x {first.shape[1]}")
        self.paths, self.readers = paths, readers
        self.headers = [r.header for r in readers]
        inventory.check_one_group(self.headers, paths)
        self.owner = np.repeat(np.arange(len(readers)), [r.shape[0] for r in readers])
        self.shape = (self.owner.size,) + tuple(first.shape[1:])
        self.name = group or inventory.group_name(self.headers[0], paths[0])
        self._start = np.concatenate([[0], np.cumsum([r.shape[0] for r in readers])])
        self.sci, self.dq = Integrations(self, "SCI"), Integrations(self, "DQ")

    def read(self, ext, i):
        """Integration ``i`` (0-based over the group, file order) of ``ext``: (ny, nx)."""
        k = int(self.owner[i])
        return self.readers[k].read(ext, int(i - self._start[k]))

    def rows(self, ext, rows):
        """Rows ``rows`` (a slice) of every integration of ``ext``: (n, nrows, nx)."""
        parts = [r.read(ext, rows=rows) for r in self.readers]
        out = np.empty((self.shape[0],) + parts[0].shape[1:], parts[0].dtype) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            for k, part in enumerate(parts):
                out[self._start[k]:self._start[k + 1]] = part
        return out

    def persistent_dq(self):
        """uint32 (ny, nx): DQ bits set in every integration (:func:`common.persistent_dq`), read one
        integration at a time."""
        out = None
        for plane in self.dq:
            out = plane if out is None else np.bitwise_and(out, plane, out=out)
        return out

    def images(self, sigma=3.0, maxiters=5, memory_mb=MEMORY_MB):
        """:func:`detcal.analysis.robust.clipped_mean_std_images` of the group's SCI, computed on
        blocks of rows of every integration that fit ``memory_mb`` [MB]
        (:data:`IMAGE_BLOCK_BYTES_PER_VALUE`; at least one row). The clipping is per pixel, so the
        images do not depend on the blocks. Returns (mean, std, nused)."""
        n, ny, nx = self.shape
        mean = np.empty((ny, nx), np.float32)
        std = np.empty((ny, nx), np.float32)
        nused = np.empty((ny, nx), np.int16)
        size = io.block_size(memory_mb, IMAGE_BLOCK_BYTES_PER_VALUE, self.shape, axis=1)
        for rows in io.blocks(ny, size):
            block = self.rows("SCI", rows)
            mean[rows], std[rows], nused[rows] = robust.clipped_mean_std_images(block, sigma, maxiters,
                                                                                 work_mb=memory_mb)
            del block
        return mean, std, nused

    def close(self):
        """Close the files (a later read reopens them)."""
        for r in self.readers:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Integrations:
    """One extension of a :class:`RateGroup` as a sequence of integrations read on demand:
    ``len``, ``shape`` (n, ny, nx), ``x[i]`` reads integration i (ny, nx), iteration reads one
    integration at a time. What the per-integration measurements take in place of a cube."""

    def __init__(self, group, ext):
        self.group, self.ext, self.shape = group, ext, group.shape

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError("integrations are read one at a time: index with an int")
        if not -len(self) <= i < len(self):
            raise IndexError(f"integration {i} of {len(self)}")
        return self.group.read(self.ext, int(i) % len(self))

    def __iter__(self):
        for i in range(len(self)):
            yield self.group.read(self.ext, i)


def read_group(rateints_paths):
    """Stack the rateints products of a group (all of them in memory; the analyses use
    :class:`RateGroup`, which reads a part at a time).

    Returns
    -------
    cube : float32 (n_total_ints, ny, nx) [DN/s]
    dq : uint32 (n_total_ints, ny, nx)
    headers : list of primary headers (one per file, in the given order)
    exposure_of : int (n_total_ints,), index of each integration's file

    The files are checked as :class:`RateGroup` does before any is read.
    """
    with RateGroup(rateints_paths, group="-") as grp:
        cube = np.empty(grp.shape, np.float32)
        dq = np.empty(grp.shape, np.uint32)
        for k, r in enumerate(grp.readers):
            start, stop = grp._start[k], grp._start[k + 1]
            cube[start:stop], dq[start:stop] = r.read("SCI"), r.read("DQ")
        return cube, dq, grp.headers, grp.owner


# ----------------------------------------------------------------------------------------------
# MIRI: the reset-anomaly (and RSCD) bias of the slopes, from the data
# ----------------------------------------------------------------------------------------------
#: Decay shapes of the anomaly model: power-law indices p of ``(1 + g/(p tau))**-p`` (inf: the
#: exponential ``exp(-g/tau)``) and e-foldings tau [groups]. The grid spans anomalies that fade
#: within the ramp (JDox: "by group ~15" on full frames); tau > 8 groups would be a slope change.
DECAY_POWERS = (1.0, 2.0, 3.0, 5.0, 10.0, math.inf)
DECAY_TAUS = tuple(float(t) for t in np.geomspace(0.5, 8.0, 12))


def decay(groups, tau, power=math.inf):
    """Decay shape at 0-based group numbers: ``exp(-g/tau)`` or ``(1 + g/(power*tau))**-power``."""
    g = np.asarray(groups, np.float64)
    if math.isinf(power):
        return np.exp(-g / tau)
    return (1.0 + g / (power * tau)) ** -power


def ols_weights(used):
    """Weights c_g of the least-squares slope over the groups ``used`` (bool (ngroups,)):
    slope = sum_g c_g y_g [DN/group] (0 outside ``used``; all 0 with fewer than 2 groups)."""
    used = np.asarray(used, bool)
    c = np.zeros(used.size)
    g = np.flatnonzero(used).astype(np.float64)
    if g.size >= 2:
        u = g - g.mean()
        c[used] = u / np.sum(u * u)
    return c


def fit_anomaly(ramps, fit_groups, powers=DECAY_POWERS, taus=DECAY_TAUS):
    """Fit the mean dark ramps of the integration classes with one dark rate and decaying anomalies.

    Model of class k (0: integration 1, 1: later integrations)::

        M_k(g) = c_k + r g + a_k f(g; tau1, p) [+ b_k exp(-g/tau2), later integrations only]

    ``r`` (the dark rate) is common to all integrations; ``f`` is the reset-anomaly decay
    (:func:`decay`: exponential or power law), shared by the classes with its own amplitude per
    class; the second term is an RSCD-like offset of the later integrations. Offsets, rate and
    amplitudes are linear least squares; (tau1, p, tau2) the grid point of least squared residual.

    Parameters
    ----------
    ramps : list of float (ngroups,) [DN] mean ramp of each class (any offset), NaN = no value,
        or None for an absent class
    fit_groups : list of bool (ngroups,) groups fitted, per class

    Returns
    -------
    dict: ``rate`` [DN/group], ``anomaly`` list of float64 (ngroups,) [DN] per class (None if
    absent), ``terms`` the same split into the model's terms, ``tau1``, ``power``, ``tau2``
    [groups], ``amplitudes`` [DN], ``rms`` [DN] residual; None with fewer than 7 finite fitted groups.
    """
    present = [k for k, r in enumerate(ramps) if r is not None]
    blocks = []
    for k in present:
        y = np.asarray(ramps[k], np.float64)
        sel = np.asarray(fit_groups[k], bool) & np.isfinite(y)
        blocks.append((k, np.flatnonzero(sel).astype(np.float64), y[sel]))
    nobs = sum(b[1].size for b in blocks)
    if nobs < 7 or not blocks:
        return None
    yy = np.concatenate([b[2] for b in blocks])
    later = [k for k in present if k > 0]
    best = None
    for p in powers:
        for i1, t1 in enumerate(taus):
            for t2 in (taus[i1:] if later else taus[:1]):
                cols = []
                for j, (k, g, _) in enumerate(blocks):
                    rows = np.zeros(nobs, bool)
                    off = sum(b[1].size for b in blocks[:j])
                    rows[off:off + g.size] = True
                    c = np.zeros(nobs)
                    c[rows] = 1.0
                    a = np.zeros(nobs)
                    a[rows] = decay(g, t1, p)
                    cols += [c, a]
                    if k > 0:
                        b2 = np.zeros(nobs)
                        b2[rows] = decay(g, t2)
                        cols.append(b2)
                X = np.column_stack([np.concatenate([b[1] for b in blocks])] + cols)
                try:
                    coef, _, rank, _ = np.linalg.lstsq(X, yy, rcond=None)
                except np.linalg.LinAlgError:     # garbage-but-valid ramps: skip this grid point
                    continue
                if rank < X.shape[1]:
                    continue
                sse = float(np.sum((yy - X @ coef) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, p, t1, t2, coef, X.shape[1])
    if best is None:
        return None
    sse, p, t1, t2, coef, ncol = best
    anomaly, terms, amps, j = [None] * len(ramps), [None] * len(ramps), [], 1
    for k, _, _ in blocks:
        g_all = np.arange(len(ramps[k]), dtype=np.float64)
        terms[k] = [coef[j + 1] * decay(g_all, t1, p)]
        amps.append(float(coef[j + 1]))
        j += 2
        if k > 0:
            terms[k].append(coef[j] * decay(g_all, t2))
            amps.append(float(coef[j]))
            j += 1
        anomaly[k] = sum(terms[k])
    return {"rate": float(coef[0]), "anomaly": anomaly, "terms": terms, "tau1": float(t1),
            "power": float(p),
            "tau2": float(t2) if later else None, "amplitudes": amps,
            "rms": math.sqrt(sse / max(1, nobs - ncol))}


#: Clip threshold [sigma] of the mean first differences (cosmic rays the jump step did not flag).
DIFF_CLIP_SIGMA = 5.0


def ramp_differences(data, groupdq, masks, sigma=DIFF_CLIP_SIGMA, maxiters=5):
    """Mean first differences of one integration per pixel selection.

    Parameters
    ----------
    data : float32 (ngroups, ny, nx) [DN], no-dark ramp after jump
    groupdq : uint8 (ngroups, ny, nx)
    masks : dict label -> bool (ny, nx): the pixels whose slopes the integration's clipped mean
        kept (:func:`integration_means` ``kept``), so that the ramp has their population

    Returns
    -------
    diffs : dict label -> float64 (ngroups - 1,) [DN/group]: mean over the pixels of
        ``y[g+1] - y[g]``, differences into a JUMP_DET group or touching a SATURATED group left
        out, ``sigma``-clipped (cosmic rays in DO_NOT_USE groups, which the jump step does not
        see; the DO_NOT_USE groups are kept: the anomaly shape is measured in them too)
    fitted : bool (ngroups,): groups that ramp fitting used (DO_NOT_USE in under half the pixels)
    """
    sat = (groupdq & np.uint8(dqflags.SATURATED)) != 0
    jump = (groupdq & np.uint8(dqflags.JUMP_DET)) != 0
    d = np.diff(np.asarray(data, np.float64), axis=0)
    d[sat[1:] | sat[:-1] | jump[1:]] = np.nan
    dnu = (groupdq & np.uint8(dqflags.DO_NOT_USE)) != 0
    union = np.zeros(data.shape[1:], bool)
    for sel in masks.values():
        union |= sel
    fitted = dnu[:, union].mean(axis=1) < 0.5 if union.any() else np.ones(data.shape[0], bool)
    out = {}
    for label, sel in masks.items():
        st = robust.sigma_clipped_stats(d[:, sel].T, sigma=sigma, maxiters=maxiters)
        out[label] = st["mean"]
    return out, fitted


def read_ramp_differences(ramp_paths, masks, nints_expected=None, sigma=DIFF_CLIP_SIGMA,
                          maxiters=5):
    """:func:`ramp_differences` of every integration of the no-dark ramps of a group.

    ``masks``: dict label -> bool (ny, nx), or a list of such dicts, one per integration, or a
    function of the integration's index (0-based over the group) returning that dict.

    Returns
    -------
    diffs : list (one per integration, in file order) of dict label -> (ngroups-1,) [DN/group]
    fitted : list of bool (ngroups,)
    first : bool (n,), True for absolute integration 1 (INTSTART + i == 1)
    """
    diffs, fitted, first = [], [], []
    for k, path in enumerate(ramp_paths):
        with io.RampReader(path, "ramp_fit") as reader:
            if nints_expected is not None and reader.shape[0] != nints_expected[k]:
                raise InputError(reader.path, f"{reader.shape[0]} integrations, but its rateints "
                                              f"product has {nints_expected[k]}")
            for i, number in enumerate(int_numbers(reader.header, reader.shape[0])):
                sel = (masks(len(diffs)) if callable(masks) else
                       masks[len(diffs)] if isinstance(masks, (list, tuple)) else masks)
                dif, fit = ramp_differences(reader.read("SCI", i), reader.read("GROUPDQ", i),
                                            sel, sigma, maxiters)
                diffs.append(dif)
                fitted.append(fit)
                first.append(int(number) == 1)
    return diffs, fitted, np.array(first, bool)


#: Start group of the late-slope reference: the first group from which the fitted anomaly
#: biases the least-squares slope by at most this fraction of the fitted dark rate, or by at
#: most :data:`LATE_ERROR_FRACTION` of the late slope's own statistical error.
LATE_TOLERANCE = 0.01
LATE_ERROR_FRACTION = 0.25

#: Fewest groups of the late-slope reference.
LATE_MIN_GROUPS = 8


def cumulative_weights(used):
    """Weights of the least-squares slope over ``used`` applied to first differences: the slope
    of ``M = cumsum([0, d])`` is ``sum_k W_k d_k`` with ``W_k = sum_{g > k} c_g`` (float (ngroups-1,))."""
    c = ols_weights(used)
    return np.cumsum(c[::-1])[::-1][1:]


def difference_noise(stack):
    """Noise of one integration's mean ramp from its mean first differences.

    ``stack`` float (n, ngroups-1) [DN/group]: the mean first differences of n >= 2 integrations
    of one class. About their class mean, the differences of white read noise (variance
    ``w`` per read) and of a random walk (variance ``q`` per step, e.g. common drifts) have
    ``var(d) = 2w + q`` and ``var(d_g + d_g+1) = 2w + 2q`` (lag-1 covariance ``-w``), both taken
    as robust (MAD) variances, so that a small cosmic ray left in a mean difference does not pass
    for noise. Returns ``(w, q)`` [DN^2] (both >= 0).
    """
    x = np.asarray(stack, np.float64)
    n = x.shape[0]
    r = (x - np.nanmean(x, axis=0)) * math.sqrt(n / (n - 1))
    var = robust.mad_sigma(r) ** 2                     # 2w + q (robust: small cosmic rays)
    if r.shape[1] < 2:
        return var / 2.0, 0.0
    var2 = robust.mad_sigma(r[:, 1:] + r[:, :-1]) ** 2  # 2w + 2q
    walk = max(0.0, var2 - var)
    return max(0.0, (var - walk) / 2.0), walk


def late_start(terms, rate, last, noise=None, nints=1, tolerance=LATE_TOLERANCE,
               error_fraction=LATE_ERROR_FRACTION, min_groups=LATE_MIN_GROUPS):
    """First group s whose late slope (groups s..last) the fitted anomaly biases by at most
    ``max(tolerance * |rate|, error_fraction * sigma(s))``; at most ``last - min_groups + 1``.

    ``terms``: the anomaly's terms, float (ngroups,) [DN] each; the bias counted is the sum of
    the terms' absolute biases, so that two fitted terms of opposite sign cannot cancel into a
    tail that looks faded when each of them is not.

    ``noise`` is :func:`difference_noise` of one integration's mean ramp; sigma(s) is then the
    error of the late slope of the ``nints`` integrations' mean ramp.
    """
    s_max = max(0, last - min_groups + 1)
    for s in range(0, s_max + 1):
        used = np.zeros(terms[0].size, bool)
        used[s:last + 1] = True
        allowed = tolerance * abs(rate)
        if noise is not None:
            W = cumulative_weights(used)
            sig = math.sqrt((noise[0] * np.sum(ols_weights(used) ** 2) + noise[1] * np.sum(W * W))
                            / nints)
            allowed = max(allowed, error_fraction * sig)
        w = ols_weights(used)
        if sum(abs(w @ t) for t in terms) <= allowed:
            return s
    return s_max


#: Significance [sigma] of the slope change between a late range and its second half that
#: moves the late start on (:func:`linear_start`).
LINEAR_SIGMA = 2.0


def linear_start(ramp, start, last, noise, nints, nsigma=LINEAR_SIGMA,
                 min_groups=LATE_MIN_GROUPS):
    """Move ``start`` on while the mean ``ramp`` is measurably not linear from there.

    The test: the least-squares slope over ``start..last`` minus that over the second half of
    the range, against its error from ``noise`` (:func:`difference_noise`, of one integration;
    the ramp is the mean of ``nints``); a change beyond ``nsigma`` moves the start by one group.
    Stops when the second half would have fewer than ``min_groups`` groups. The model-chosen
    start (:func:`late_start`) is thus checked on the data, whatever the anomaly's shape.
    """
    if noise is None:
        return start
    ramp = np.asarray(ramp, np.float64)
    s = start
    while True:
        mid = (s + last + 1) // 2
        if last - mid + 1 < min_groups:
            return s
        a = np.zeros(ramp.size, bool)
        a[s:last + 1] = True
        b = np.zeros(ramp.size, bool)
        b[mid:last + 1] = True
        c = ols_weights(a) - ols_weights(b)
        W = cumulative_weights(a) - cumulative_weights(b)
        err = math.sqrt((noise[0] * np.sum(c * c) + noise[1] * np.sum(W * W)) / nints)
        ok = np.isfinite(ramp)
        if not ok[s:last + 1].all() or abs(c @ np.where(ok, ramp, 0.0)) <= nsigma * err:
            return s
        s += 1


def class_mean_ramps(diffs, fitted, first, label):
    """Mean ramp of each class (integration 1; the later ones) of amplifier ``label``.

    Per class k (None where the class is empty): ``ramps[k]`` the cumulative sum of the
    integrations' mean first differences [DN] (0 at group 0), ``groups[k]`` bool, every group up
    to the last one ramp fitting used, ``members[k]`` the integrations, ``last[k]`` that last
    group, ``noise[k]`` (white, random walk) of :func:`difference_noise` from the second half of
    the differences (two integrations or more), ``groups_fit[k]`` bool, the groups ramp fitting
    used. Returns (ramps, groups, members, last, noise, groups_fit), each a 2-list.
    """
    ramps, groups, members, last = [None, None], [None, None], [None, None], [0, 0]
    noise, groups_fit = [None, None], [None, None]
    for k, cls in enumerate((first, ~first)):
        idx = np.flatnonzero(cls)
        if idx.size == 0:
            continue
        stack = np.stack([diffs[i][label] for i in idx])
        d = np.nanmean(stack, axis=0)
        if idx.size >= 2:       # from the second half: integrations differ in their anomaly
            noise[k] = difference_noise(stack[:, stack.shape[1] // 2:])
        ramps[k] = np.concatenate([[0.0], np.cumsum(d)])
        used = np.flatnonzero(np.any(np.stack([fitted[i] for i in idx]), axis=0))
        groups_fit[k] = np.zeros(ramps[k].size, bool)
        groups_fit[k][used] = True
        groups[k] = np.zeros(ramps[k].size, bool)
        if used.size:
            groups[k][: used[-1] + 1] = True
            last[k] = int(used[-1])
        members[k] = idx
    return ramps, groups, members, last, noise, groups_fit


def anomaly_bias(diffs, fitted, first, label):
    """Slope bias of each integration from the reset anomaly and RSCD [DN/group].

    1. The integrations are split into integration 1 and the later ones (the reset anomaly and
       RSCD differ); each class's mean ramp (cumulative sum of the clipped mean first
       differences, 0 at group 0) enters :func:`fit_anomaly` over every group up to the last
       one that ramp fitting used (``e``).
    2. Per class, the late start ``s`` (:func:`late_start`): the first group from which the
       fitted anomaly biases the slope by at most :data:`LATE_TOLERANCE` of the rate or
       :data:`LATE_ERROR_FRACTION` of the late slope's statistical error: the mean ramp is
       linear from there within that tolerance. The model only chooses ``s``.
       ``s`` is never before the first group that ramp fitting used (the jump step did not
       look at the DO_NOT_USE groups, so their cosmic rays would bias the late slope).
       The data then confirm it (:func:`linear_start`): the start moves on while the slope
       over s..e and over its second half differ by more than :data:`LINEAR_SIGMA`.
    3. Per integration ``i``, with ``M_i`` its own mean ramp, ``U_i`` the groups ramp fitting
       used and ``S`` = s..e: ``bias_i = slope_U(M_i) - slope_S(M_i)``, the anomaly's bias
       relative to the late slope, measured on the data (the dark rate, the clipping and the
       pixel population cancel). The corrected dark current is thus the late slope, with the
       pixel statistics of the full-ramp slopes.

    Returns
    -------
    bias : float64 (n,) [DN/group], NaN for integrations without a fit
    fit : :func:`fit_anomaly` result with, per class, ``late_start`` and ``late_sigma``
        [DN/group] (the noise of one integration's late slope, from the white and random-walk
        noise of the integrations' mean ramps about their class mean, :func:`difference_noise`;
        a class of one integration takes the other's noise model) added; or None
    """
    n = len(diffs)
    bias = np.full(n, math.nan)
    ramps, groups, members, last, noise, groups_fit = class_mean_ramps(diffs, fitted, first, label)
    fit = fit_anomaly(ramps, groups)
    if fit is None:
        return bias, None
    for k in (0, 1):            # a class of one integration: the other class's noise model
        if noise[k] is None and members[k] is not None:
            noise[k] = noise[1 - k]
    fit["late_start"] = [None, None]
    fit["late_sigma"] = [None, None]
    for k in (0, 1):
        if members[k] is None:
            continue
        # allowed bias: against the error of the final mean over all integrations
        s = late_start(fit["terms"][k], fit["rate"], last[k], noise[k], n)
        # never before the groups ramp fitting used: the jump step did not look at those
        s = max(s, int(np.flatnonzero(groups_fit[k])[0]) if groups_fit[k].any() else s)
        s = linear_start(ramps[k], s, last[k], noise[k], members[k].size)
        fit["late_start"][k] = s
        if last[k] - s + 1 < LATE_MIN_GROUPS:
            continue            # too short a late range to stand for the dark rate: bias stays NaN
        late = np.zeros(ramps[k].size, bool)
        late[s:last[k] + 1] = True
        w_late = ols_weights(late)
        if noise[k] is not None:
            white, walk = noise[k]
            W = cumulative_weights(late)
            fit["late_sigma"][k] = float(math.sqrt(white * np.sum(w_late ** 2)
                                                   + walk * np.sum(W * W)))
        for i in members[k]:
            m_i = np.concatenate([[0.0], np.cumsum(diffs[i][label])])
            ok = np.isfinite(m_i)
            if not (ok[fitted[i]].all() and ok[late].all()):
                continue
            m_i = np.where(ok, m_i, 0.0)
            bias[i] = float(ols_weights(fitted[i]) @ m_i - w_late @ m_i)
    return bias, fit


def corrected_means(per_int, diffs, fitted, first, label, tgroup):
    """Per-integration anomaly biases [DN/s] and the error of the corrected mean.

    Parameters
    ----------
    per_int : float (n,) [DN/s] clipped mean slope of each integration (:func:`integration_means`)
    tgroup : float [s]

    Returns
    -------
    bias : float64 (n,) [DN/s] (:func:`anomaly_bias`)
    sigma : float [DN/s] error of the mean of the corrected per-integration means from their
        scatter about their class means, the classes' noise in the ratio of their predicted
        late-slope noise (:func:`stratified_sigma`). NaN with too few integrations.
    fit : :func:`anomaly_bias` model
    """
    m = np.asarray(per_int, np.float64)
    bias, fit = anomaly_bias(diffs, fitted, first, label)
    bias = bias / tgroup
    scale = fit["late_sigma"] if fit is not None else None
    sigma = stratified_sigma(m - bias, first, scale)
    if fit is not None:
        fit["bias_DN_per_s"] = float(np.nanmean(bias)) if np.isfinite(bias).any() else math.nan
        fit["applied"] = bool(np.all(np.isfinite(bias)))
    return bias, sigma, fit


def stratified_sigma(values, first, scale=None):
    """Error of the mean of ``values`` when integration 1 and the later integrations have their
    own noise level (their late slopes start at different groups).

    The noise of class k is ``scale_k`` times a unit variance that both classes share,
    estimated from the scatter of each class about its own mean (n - 2 degrees of freedom):
    ``var = sum_k (n_k/n)^2 u scale_k^2 / n_k``. ``scale`` (per class; None or a None entry:
    1) is the predicted noise of one integration's late slope (:func:`anomaly_bias`
    ``late_sigma``; only its ratio between the classes matters). NaN with fewer than 3 finite
    values (2 if all are in one class).
    """
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    v, first = v[ok], np.asarray(first, bool)[ok]
    n = v.size
    scale = [1.0, 1.0] if scale is None else [1.0 if x is None else float(x) for x in scale]
    if any(x <= 0 for x in scale):
        scale = [1.0, 1.0]
    classes = [(v[first], scale[0]), (v[~first], scale[1])]
    ss = sum(float(np.sum(((c - c.mean()) / f) ** 2)) for c, f in classes if c.size)
    dof = n - sum(1 for c, _ in classes if c.size)
    if dof < 1:
        return math.nan
    unit = ss / dof
    return math.sqrt(sum((c.size / n) ** 2 * unit * f * f / c.size for c, f in classes if c.size))


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def histogram_table(results):
    """Long table of the per-amplifier histograms and fitted Gaussians (the histogram figure's data).

    Columns: amplifier, bin_low_DN_per_s, bin_high_DN_per_s, bin_centre_DN_per_s, n_pixels,
    gaussian_fit_n_pixels.
    """
    rows = []
    for label, res in results.items():
        fit = res["fit"]
        edges = fit["edges"]
        for k in range(len(fit["counts"])):
            rows.append((label, edges[k], edges[k + 1], 0.5 * (edges[k] + edges[k + 1]),
                         int(fit["counts"][k]), float(fit["model"][k])))
    return pd.DataFrame(rows, columns=["amplifier", "bin_low_DN_per_s", "bin_high_DN_per_s",
                                       "bin_centre_DN_per_s", "n_pixels", "gaussian_fit_n_pixels"])


def plot_histograms(hist, table, path, title):
    """Histogram per amplifier and for the whole array (log y) with the Gaussian fit."""
    labels = list(dict.fromkeys(hist.amplifier))
    fig, axs = common.subplot_grid(max(len(labels), 1), ncols=3, size=3.6)
    for ax, label in zip(axs, labels):
        h = hist[hist.amplifier == label]
        if len(h):
            edges = np.r_[h.bin_low_DN_per_s.to_numpy(), h.bin_high_DN_per_s.to_numpy()[-1:]]
            ax.stairs(h.n_pixels.to_numpy(), edges, fill=True, color="0.6", label="pixels")
        ok = h.gaussian_fit_n_pixels > 0
        ax.plot(h.bin_centre_DN_per_s[ok], h.gaussian_fit_n_pixels[ok], "r-", lw=1.2, label="Gaussian fit")
        row = table[table.amplifier == label].iloc[0]
        ax.axvline(row.mean_DN_per_s, color="b", lw=1, ls="--", label="clipped mean")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
        ax.set_xlabel("dark rate [DN/s]")
        ax.set_ylabel("number of pixels")
        name = "whole array" if label == common.ALL else f"amplifier {label}"
        ax.set_title(f"{name}: mean {row.mean_DN_per_s:.4g}, mode {row.mode_DN_per_s:.4g} DN/s\n"
                     f"= {row.mean_e_per_1000s:.3g} e-/1000 s (reduced chi2 {row.gauss_reduced_chi2:.2f})",
                     fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_slope_image(image, select, path, title, nsigma=5.0):
    """Slope image, colour range median +/- 5 sigma (clipped, selected pixels), colour bar DN/s."""
    vmin, vmax = common.image_range(image, select, nsigma)
    fig, ax = common.plt.subplots(figsize=(6.4, 5.4))
    common.show_image(ax, image, vmin, vmax, "dark rate [DN/s]", title)
    fig.tight_layout()
    common.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# File level
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DarkCurrentParameters:
    """Parameters of the dark-current analysis (the rule's ``params.kwargs`` and their defaults).

    expected : dict or None    expected values ``{detector or channel: (value, uncertainty)}``
                               [e-/1000 s] (:func:`expected_dark`; None: :data:`EXPECTED`)
    n_sigma : float            verdict tolerance [sigma] (:func:`verdict`) (2.0)
    sigma, maxiters            clipping of the slope image and the amplifier means [sigma,
                               iterations] (3.0, 5)
    hist_nsigma : float        histogram range, mean +/- hist_nsigma std (:func:`amplifier_dark`) (7.0)
    exclude_dq : tuple of str  DQ flag names that exclude a pixel (:data:`EXCLUDE_DQ`)
    memory_mb : float          working-memory budget [MB] of the blocks of rows of the slope
                               images (:meth:`RateGroup.images`); the rest is read one
                               integration at a time (:data:`MEMORY_MB`). Changes no number.
    """

    expected: dict = None
    n_sigma: float = 2.0
    sigma: float = 3.0
    maxiters: int = 5
    hist_nsigma: float = 7.0
    exclude_dq: tuple = EXCLUDE_DQ
    memory_mb: float = MEMORY_MB

    def as_dict(self):
        """The parameters as written to the JSON document."""
        return {"sigma": self.sigma, "maxiters": self.maxiters, "hist_nsigma": self.hist_nsigma,
                "n_sigma": self.n_sigma, "exclude_dq": list(self.exclude_dq)}


def _anomaly_corrected(st, stat, method, per_int, anomaly, label):
    """Subtract the MIRI anomaly bias of amplifier ``label`` (per_int[label] is replaced)."""
    diffs, fitted, first, tgroup = anomaly
    bias, corr_sigma, fit = corrected_means(per_int[label], diffs, fitted, first, label, tgroup)
    bias_mean = 0.0
    if np.all(np.isfinite(bias)):
        bias_mean = float(np.mean(bias))
        per_int[label] = per_int[label] - bias
        st = st._replace(mean=st.mean - bias_mean, median=st.median - bias_mean)
        if np.isfinite(corr_sigma) and fit is not None and fit.get("applied"):
            stat, method = corr_sigma, "integration_scatter_anomaly_corrected"
    return st, stat, method, bias_mean, fit


def amplifier_rows(results, per_int, masks, gains, nints, group, detector, parameters, anomaly=None):
    """The dark-current table: one row per amplifier (:func:`amplifier_dark` results).

    per_int : label -> per-integration clipped means [DN/s] (:func:`integration_means`); with
    ``anomaly`` = (diffs, fitted, first, tgroup) of :func:`read_ramp_differences` (MIRI) the
    anomaly bias is subtracted from them in place. Returns (table, anomaly fits by label).
    """
    exp = expected_dark(detector, parameters.expected)
    rows, anomaly_fits = [], {}
    for label, res in results.items():
        st, fit = res["stats"], res["fit"]
        white = st.std / math.sqrt(st.npix) if st.npix else math.nan
        stat, method = sigma_stat(per_int[label], white)
        bias_mean = 0.0
        if anomaly is not None:
            st, stat, method, bias_mean, anomaly_fits[label] = _anomaly_corrected(st, stat, method, per_int,
                                                                                  anomaly, label)
        g = gains[label]
        mean_ks, stat_ks = st.mean * g * 1000.0, stat * g * 1000.0
        rows.append({
            "group": group, "detector": detector, "amplifier": label,
            "n_pixels": st.npix, "n_pixels_selected": int(masks[label].sum()),
            "n_integrations": int(nints),
            "mean_DN_per_s": st.mean, "median_DN_per_s": st.median, "std_DN_per_s": st.std,
            "anomaly_bias_DN_per_s": bias_mean,
            "clip_lower_DN_per_s": res["stats"].lower, "clip_upper_DN_per_s": res["stats"].upper,
            "sigma_stat_DN_per_s": stat, "sigma_stat_method": method,
            "mode_DN_per_s": fit["peak"] - bias_mean, "mode_err_DN_per_s": fit["peak_err"],
            "gauss_width_DN_per_s": fit["width"], "gauss_chi2": fit["chi2"], "gauss_dof": fit["dof"],
            "gauss_reduced_chi2": fit["reduced_chi2"],
            "gain_e_per_DN": g,
            "mean_e_per_s": st.mean * g, "sigma_stat_e_per_s": stat * g,
            "mode_e_per_s": (fit["peak"] - bias_mean) * g,
            "mean_e_per_1000s": mean_ks, "sigma_stat_e_per_1000s": stat_ks,
            "mode_e_per_1000s": (fit["peak"] - bias_mean) * g * 1000.0,
            "expected_e_per_1000s": exp[0] if exp else math.nan,
            "expected_unc_e_per_1000s": exp[1] if exp else math.nan,
            "verdict": verdict(mean_ks, stat_ks, exp[0] if exp else None, exp[1] if exp else 0.0,
                               parameters.n_sigma),
        })
    return pd.DataFrame(rows), anomaly_fits


def _whole_array(table, ngroups, corrected, anomaly_fits):
    """The whole-array row and a note (NaN with a note: a MIRI bias the data cannot measure)."""
    whole = table[table.amplifier == common.ALL].iloc[0]
    fit_all = anomaly_fits.get(common.ALL) if corrected else None
    if not corrected or (fit_all and fit_all.get("applied")):
        return whole, ""
    # MIRI slopes without dark subtraction carry the reset-anomaly/RSCD bias; when the data
    # cannot measure it (too few groups after the DO_NOT_USE ones) no number is better than a
    # biased one (a 10-group FAST ramp reads about -100 e-/1000 s for a true +200)
    note = (f"MIRI dark current not measured: NGROUPS={int(ngroups)} leaves too few "
            "usable groups to measure and remove the reset-anomaly/RSCD slope bias "
            "(about 20 groups or more are needed)")
    log.warning(note)
    whole = whole.copy()
    for key in ("mean_DN_per_s", "sigma_stat_DN_per_s", "mean_e_per_s", "mean_e_per_1000s",
                "sigma_stat_e_per_1000s", "mode_e_per_1000s"):
        whole[key] = math.nan
    whole["verdict"] = "N/A"
    return whole, note


def dark_summary(table, detector, ngroups, nfiles, nints, parameters, dead=(), anomaly_fits=None):
    """The JSON ``summary``: whole-array dark current, expectation, verdicts, dead outputs, note.

    ``anomaly_fits`` (MIRI, corrected): without an applied whole-array fit the numbers are NaN.
    """
    whole, note = _whole_array(table, ngroups, anomaly_fits is not None, anomaly_fits or {})
    if not whole.n_pixels:      # a valid input: every ramp of the group saturated or DO_NOT_USE
        empty = (f"no usable pixel: no active pixel has a slope in any of the {int(nints)} integrations "
                 "(every ramp saturated or flagged DO_NOT_USE): nothing measured (NaN)")
        log.warning(empty)
        note = "; ".join(s for s in (note, empty) if s)
    if dead:
        note = "; ".join(s for s in (note, common.join_notes(log, common.dead_amplifier_note(
            [k + 1 for k in dead], "left out of the whole-array value"))) if s)
    exp = expected_dark(detector, parameters.expected)
    if exp and no_power(whole.sigma_stat_e_per_1000s, exp[0]):
        weak = common.join_notes(log, (
            f"dark-current verdict N/A: the statistical error {whole.sigma_stat_e_per_1000s:.3g} e-/1000 s "
            f"is more than {NO_POWER_RATIO:g} x the expected {exp[0]:g} e-/1000 s (NGROUPS={int(ngroups)}: the "
            "ramps are too short for the dark charge to show above the read noise); the mean and its error are kept"))
        note = "; ".join(s for s in (note, weak) if s)
    return {
        "detector": detector,
        "n_files": nfiles, "n_integrations": int(nints),
        "dark_current_DN_per_s": whole.mean_DN_per_s,
        "dark_current_err_DN_per_s": whole.sigma_stat_DN_per_s,
        "dark_current_e_per_s": whole.mean_e_per_s,
        "dark_current_e_per_1000s": whole.mean_e_per_1000s,
        "dark_current_err_e_per_1000s": whole.sigma_stat_e_per_1000s,
        "dark_mode_e_per_1000s": whole.mode_e_per_1000s,
        "expected_e_per_1000s": exp[0] if exp else None,
        "expected_unc_e_per_1000s": exp[1] if exp else None,
        "verdict": whole.verdict,
        "amplifier_verdicts": {r.amplifier: r.verdict for r in table.itertuples()
                               if r.amplifier != common.ALL},
        "dead_amplifiers": [k + 1 for k in dead], "n_dead_amplifiers": len(dead),
        **({"note": note} if note else {}),
    }


def per_integration_rows(paths, owner, per_int):
    """Per-integration clipped means [DN/s] by amplifier, with exposure and 1-based integration."""
    exposures = [inventory.exposure_name(p, product=True) for p in paths]
    return [{"exposure": exposures[owner[i]], "integration_in_file": int(np.sum(owner[:i] == owner[i])) + 1,
             **{f"mean_DN_per_s_amp_{label}": per_int[label][i] for label in per_int}}
            for i in range(len(owner))]


def _read_anomaly(ramp_paths, grp, masks, bounds, header):
    """MIRI: (diffs, fitted, first, tgroup) of the no-dark ramps matched to the rateints of
    ``grp`` (:class:`RateGroup`); each integration's ramp is averaged over the pixels its clipped
    mean kept (:func:`kept_pixels` of its slope image, read again)."""
    paths, owner = grp.paths, grp.owner
    ramp_paths = [str(p) for p in ramp_paths]
    if len(ramp_paths) != len(paths):
        raise InputError(ramp_paths[0] if ramp_paths else paths[0],
                         f"{len(ramp_paths)} no-dark ramps for {len(paths)} rateints products")
    nints = [int(np.sum(owner == k)) for k in range(len(paths))]
    diffs, fitted, first = read_ramp_differences(ramp_paths, lambda i: kept_pixels(grp.sci[i], masks, bounds[i]),
                                                 nints)
    return diffs, fitted, first, float(header.get("TGROUP") or header["TFRAME"])


def _write_images(results, table, mean_img, std_img, nused, select, pdq, nints, headers, paths, title,
                  outputs):
    histogram_tsv, histogram_png, image_fits, image_png = outputs
    if histogram_tsv or histogram_png:
        hist = histogram_table(results)
        if histogram_tsv:
            tables.write_tsv(hist, histogram_tsv)
        if histogram_png:
            plot_histograms(hist, table, histogram_png, f"dark rate histograms, {title}")
    if image_fits:
        common.write_slope_images(image_fits, mean_img, std_img, nused, pdq, headers[0],
                                  nints, [common.expstart(h) for h in headers], paths)
    if image_png:
        plot_slope_image(mean_img, select, image_png, f"mean dark rate (clipped over integrations)\n{title}")


@keyword_parameters(DarkCurrentParameters)
def dark_current_file(rateints_paths, gain_path, table_path, json_path, group=None,
                      histogram_tsv=None, histogram_png=None, image_fits=None, image_png=None,
                      ramp_paths=None, raw_paths=None, parameters=None):
    """Dark current of one configuration group.

    Read (slopes, gain, MIRI no-dark ramps) -> measure (:func:`amplifier_dark`,
    :func:`integration_means`, :func:`amplifier_rows`, :func:`dark_summary`) -> write.

    Parameters
    ----------
    rateints_paths : list of str
        ``{exposure}_rateints.fits`` of the group (a chain without dark subtraction). 2-D
        ``rate`` products are accepted as one integration each (then ``sigma_stat`` is the
        scatter of the per-exposure means).
    gain_path : str
        GAIN reference [e-/DN] of the detector (cut to the subarray).
    table_path : str
        One row per amplifier ('1'..'N', 'all'); columns with units in their names.
    json_path : str
        ``summary`` (the whole-array numbers: ``dark_current_e_per_1000s``,
        ``dark_current_err_e_per_1000s``, expected value, ``verdict``), ``table``,
        ``per_integration`` means, ``conventions``, ``parameters``.
    group : str, optional
        Group name (default: from the first file's keywords).
    histogram_tsv, histogram_png : str, optional
        Histogram table per amplifier (with the fitted Gaussian) and its figure (log y).
    image_fits, image_png : str, optional
        The slope images (MEAN, STD, NUSED, DQ; the stability baseline format) and the MEAN image.
    ramp_paths : list of str, optional
        MIRI: the no-dark jump ramps of the same exposures, in the same order; with them the
        reset-anomaly/RSCD bias of the slopes is measured and removed (module docstring, 6).
        Without them (or for NIR) the slopes are used as they are (``anomaly_correction``
        'none').
    raw_paths : list of str, optional
        The group's raw files: outputs dead or flat in all of them
        (:func:`common.dead_amplifiers`) keep their rows but are left out of the whole-array
        value; listed in the JSON summary (``dead_amplifiers``) and its note.
    expected, n_sigma, sigma, maxiters, hist_nsigma, exclude_dq
        :class:`DarkCurrentParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: the JSON document written.
    """
    p = parameters
    with RateGroup(rateints_paths, group) as grp:
        return _dark_current_group(grp, gain_path, table_path, json_path, histogram_tsv, histogram_png,
                                   image_fits, image_png, ramp_paths, raw_paths, p)


def _dark_current_group(grp, gain_path, table_path, json_path, histogram_tsv, histogram_png, image_fits,
                        image_png, ramp_paths, raw_paths, p):
    """:func:`dark_current_file` on an open :class:`RateGroup` (memory: per-pixel images of one
    frame, one integration, one block of rows of :meth:`RateGroup.images`)."""
    paths, headers, owner, group, nints = grp.paths, grp.headers, grp.owner, grp.name, grp.shape[0]
    header = headers[0]
    detector = str(header["DETECTOR"]).strip()
    geom, amp_map, active = common.layout(header, grp.shape, paths[0])
    pdq = grp.persistent_dq()
    select = pixel_selection(active, pdq[None], p.exclude_dq)
    masks = common.amplifier_masks(amp_map, select, geom.noutputs)
    # a dead or flat output (found on the raw files) keeps its row, not in the whole-array value
    dead = common.dead_amplifiers(raw_paths) if raw_paths else []
    if dead:
        masks[common.ALL] &= ~np.isin(amp_map, dead)
    gains = common.amplifier_gains(common.read_gain(gain_path, header, grp.shape), masks)

    mean_img, std_img, nused = grp.images(p.sigma, p.maxiters, p.memory_mb)
    results = amplifier_dark(mean_img, masks, p.sigma, p.maxiters, p.hist_nsigma)
    bounds = []
    per_int = integration_means(grp.sci, masks, p.sigma, p.maxiters, bounds)
    correct = ramp_paths is not None and common.family(header["INSTRUME"]) == "MIRI"
    anomaly = _read_anomaly(ramp_paths, grp, masks, bounds, header) if correct else None
    table, anomaly_fits = amplifier_rows(results, per_int, masks, gains, nints, group, detector, p,
                                         anomaly)
    tables.write_tsv(table, table_path)
    summary = dark_summary(table, detector, header.get("NGROUPS", 0), len(paths), nints, p,
                           dead, anomaly_fits if correct else None)
    doc = {"analysis": "darkcurrent", "group": group, "inputs": paths, "gain": str(gain_path),
           "conventions": CONVENTIONS, "parameters": p.as_dict(),
           "summary": summary, "table": tables.records(table),
           "per_integration": per_integration_rows(paths, owner, per_int),
           "anomaly_correction": ({label: ({k: v for k, v in f.items() if k not in ("anomaly", "terms")}
                                           if f else None)
                                   for label, f in anomaly_fits.items()} if correct else "none")}
    tables.write_json(doc, json_path)
    title = f"{group}: {len(paths)} files, {nints} integrations"
    _write_images(results, table, mean_img, std_img, nused, select, pdq, nints, headers, paths, title,
                  (histogram_tsv, histogram_png, image_fits, image_png))
    return doc
