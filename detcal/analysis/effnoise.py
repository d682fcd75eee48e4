"""Effective noise: the noise of an up-the-ramp slope fit vs the number of groups fitted.

Definition (pynrc ``calc_eff_noise``, the NRC-09 "effective noise"; research/analysis.md 1.2)
-------------------------------------------------------------------------------------------
For each N in a set of group counts, every ramp (every integration of every file) is fitted with
an **unweighted OLS** line over its first N groups (closed form for equally spaced groups,
``slope = sum_g (g - (N-1)/2) y_g / (TGROUP N (N^2-1)/12)`` [DN/s], accumulated group by group).

* **spatial** slope noise of a channel (amplifier output, or the reference pixels): per ramp the
  clipped sigma of the slope image over the channel's good pixels; median over ramps. The clipped
  sigma (:func:`detcal.analysis.robust.clipped_sigma`) is the standard deviation within +-4
  MAD sigma (1.4826 MAD) of the median, corrected for the truncation: pynrc's plain MAD sigma
  moves in steps of 1.48 DN on integer-valued data (slopes over 2-3 groups of raw DN), a bias of
  several % at NIRCam CDS noise.
  Works with one ramp; contains fixed-pattern dark-rate scatter.
* **temporal** slope noise: per pixel the sample variance of the slope across ramps; the median
  over the channel's pixels, divided by the median of chi2(k)/k (k = nramps - 1) so that it is
  unbiased for Gaussian noise (pynrc uses the plain median, low by 1-4 % for 10-50 ramps).
  Needs at least ``min_ramps`` (10, NRC-09) ramps; with fewer it is not computed and the table
  and log say so (spatial is still computed).
* **effective noise** = slope noise x (N - 1) x TGROUP: the noise of the accumulated signal, in DN
  and e- (GAIN reference, median over the channel's active pixels). The channel average is
  sqrt(mean over outputs of the variance).

Theory (Rauscher et al. 2007 with the Robberto 2009 correction; analysis.md 1.3), in e-^2::

    var(n) = 12 (n-1) / (m n (n+1)) sigma_read^2
           + 6 (n^2+1) / (5 n (n+1)) (n-1) t_g f
           - 2 (m^2-1) (n-1) / (m n (n+1)) t_f f

with m = NFRAMES, t_f = TFRAME, t_g = TGROUP (= (NFRAMES + GROUPGAP) TFRAME), f the dark rate
[e-/s] and sigma_read the single-frame read noise [e-]. ``read_noise_source='n2'`` (default,
as pynrc) solves the formula at N = 2 for sigma_read from the measured N = 2 point (temporal if
available, else spatial), so 1/f seen by a single CDS is part of it; ``'reference'`` uses the
READNOISE reference (CDS noise [DN] x gain / sqrt(2), median over the channel). The dark rate is
measured: median over the channel's active pixels of the slope at the largest N, median over
ramps (negative values are clipped to 0 for the theory).

Excess variance (pynrc ``fit_func_var_ex``): ``var_ex(n, m) = 12 (n-1)/(n+1) p0^2 - p1/sqrt(m)``
[e-^2] fitted with ``scipy.optimize.least_squares`` (in q = p0^2 >= 0 and p1, start (1.5^2, 10))
to measured^2 - theory^2 over all N (temporal if available, else spatial); errors from the (linear) design
matrix scaled by the residual variance. ``excess_positive``: var_ex at the largest N is > 0;
``excess_significant``: it is > 2 sigma.

Inputs: superbias- and refpix-corrected ramps (NIR ``linearity`` or ``refpix`` product, before
dark_current and jump; 1/f still in), as pynrc (which keeps the 1/f by not using side reference
columns); GAIN reference; optionally READNOISE. Cosmic rays are left out: a pixel whose group-to-group
difference in a ramp is more than ``clip`` (10) MAD sigma from the median, and its 8
neighbours (which hold 15-30 % of a cosmic ray's charge), do not count in that ramp
(:func:`flag_jumps`); at group times of ~10 s they would otherwise add a spurious excess.
DO_NOT_USE pixels are left out.
"""

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from .. import dqflags, io, tables
from ..errors import InputError
from ..multiaccum import PIXEL_TIME_S, ROW_OVERHEAD
from ..parameters import keyword_parameters
from ..plots import plt  # pyplot on the Agg backend (plots.pyplot)
from . import common
from .noise import (
    MAX_FLAGGED_FRACTION,
    MIN_TEMPORAL,
    check_same_configuration,
    grow_outliers,
    nothing_measured,
    open_ramp,
)
from .robust import PixelMoments, clipped_sigma, mad_sigma, median_variance

log = logging.getLogger("detcal.analysis.effnoise")

#: Blocks of ramps for the delete-one-block jackknife errors of the excess variance.
JACKKNIFE_BLOCKS = 10

#: pynrc's start values of the excess-variance fit (p0 [e-], p1 [e-^2]).
EXCESS_P_START = (1.5, 10.0)


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
def default_group_counts(ngroups, nlin=15):
    """Group counts N fitted: 2..ngroups for ngroups < 20, else [2, 3, 5] + linspace(10, ngroups, nlin).

    Integers, unique, sorted, capped at ``ngroups`` (pynrc ``calc_eff_noise``; it uses 2..nz for
    short non-RAPID ramps too).
    """
    ngroups = int(ngroups)
    if ngroups < 2:
        raise ValueError(f"effective noise needs at least 2 groups, got NGROUPS={ngroups}")
    if ngroups < 20:
        return list(range(2, ngroups + 1))
    ns = [2, 3, 5] + list(np.linspace(10, ngroups, nlin).astype(int))
    return sorted({int(n) for n in ns if 2 <= n <= ngroups})


def iter_ols_slopes(groups, ns, tgroup):
    """Unweighted OLS slopes of one ramp over its first N groups, for each N in ``ns``.

    Parameters
    ----------
    groups : iterable of ndarray (ny, nx) [DN]   the groups of one integration, in order
    ns : sequence of int >= 2                      group counts (any order)
    tgroup : float [s]                             time between groups

    Yields
    ------
    (N, slope) in increasing N; slope float32 (ny, nx) [DN/s]. Stops after max(ns) groups.
    """
    want = sorted({int(n) for n in ns})
    if not want or want[0] < 2:
        raise ValueError(f"group counts must be >= 2, got {list(ns)}")
    s0 = s1 = y0 = None
    g = -1
    for g, frame in enumerate(groups):
        if g >= want[-1]:
            break
        y = np.asarray(frame, np.float64)
        if y0 is None:
            y0 = y.copy()                     # slopes do not depend on a constant; keeps sums small
            s0 = np.zeros_like(y)
            s1 = np.zeros_like(y)
        y = y - y0
        s0 += y
        s1 += g * y
        n = g + 1
        if n in want:
            denom = tgroup * n * (n * n - 1) / 12.0
            yield n, ((s1 - 0.5 * (n - 1) * s0) / denom).astype(np.float32)
    if g + 1 < want[-1]:
        raise ValueError(f"ramp has {g + 1} groups, fewer than N = {want[-1]}")


def ols_slopes(ramp, ns, tgroup):
    """float32 (len(ns), ny, nx) [DN/s]: OLS slopes of ``ramp`` (ngroups, ny, nx) [DN] for sorted ``ns``."""
    return np.stack([s for _, s in iter_ols_slopes(ramp, ns, tgroup)])


def multiaccum_variance(n, m, tframe, read_noise, flux, tgroup=None, groupgap=0):
    """Variance of the accumulated signal of an OLS ramp fit (Rauscher 2007 / Robberto 2009) [e-^2].

    Parameters
    ----------
    n : int or ndarray        groups fitted
    m : int                   frames averaged per group (NFRAMES)
    tframe : float [s]        frame time
    read_noise : float [e-]   single-frame read noise (CDS noise / sqrt(2))
    flux : float [e-/s]       dark (+ any) current
    tgroup : float [s]        group time; default (m + groupgap) * tframe

    Returns
    -------
    ndarray float64 [e-^2]; the effective noise is its square root, the slope noise that / ((n-1) tgroup).
    """
    n = np.asarray(n, np.float64)
    tg = (m + groupgap) * tframe if tgroup is None else tgroup
    read = 12.0 * (n - 1) / (m * n * (n + 1)) * read_noise ** 2
    shot = 6.0 * (n ** 2 + 1) / (5.0 * n * (n + 1)) * (n - 1) * tg * flux
    frame = -2.0 * (m ** 2 - 1) * (n - 1) / (m * n * (n + 1)) * tframe * flux
    return read + shot + frame


def read_noise_from_n2(var_n2, m, tframe, flux, tgroup=None, groupgap=0):
    """Single-frame read noise [e-] that makes :func:`multiaccum_variance` equal ``var_n2`` at n=2.

    var_n2 : measured variance of the N=2 effective noise [e-^2]; NaN if the flux terms exceed it.
    """
    flux_part = multiaccum_variance(2, m, tframe, 0.0, flux, tgroup, groupgap)
    rest = (var_n2 - flux_part) * m / 2.0
    return float(np.sqrt(rest)) if rest >= 0 else np.nan


def excess_variance(n, m, p0, p1):
    """pynrc's empirical excess variance ``12 (n-1)/(n+1) p0^2 - p1/sqrt(m)`` [e-^2]."""
    n = np.asarray(n, np.float64)
    return 12.0 * (n - 1) / (n + 1) * p0 ** 2 - p1 / np.sqrt(m)


def fit_excess_variance(n, m, measured_var, theory_var, p_start=EXCESS_P_START):
    """Fit :func:`excess_variance` to ``measured_var - theory_var`` (both [e-^2], per N).

    The model is linear in (p0^2, p1): ``scipy.optimize.least_squares`` fits q = p0^2 >= 0 and p1
    (a fit in p0 itself has a vanishing Jacobian at p0 = 0 and can stop there); p0 = sqrt(q),
    errors from the (linear) design matrix scaled by the residual variance; p0_err =
    sqrt(q + q_err) - sqrt(q) (= q_err / (2 p0) far from the bound q = 0).

    Returns
    -------
    dict: p0 [e-] (>= 0), p0_err, p1 [e-^2], p1_err, excess_var_nmax [e-^2] (var_ex at the largest
    N) and its error, excess_positive, excess_significant (> 2 sigma), npoints, success, message.
    """
    n = np.asarray(n, np.float64)
    y = np.asarray(measured_var, np.float64) - np.asarray(theory_var, np.float64)
    ok = np.isfinite(y)
    out = {"p0": np.nan, "p0_err": np.nan, "p1": np.nan, "p1_err": np.nan,
           "excess_var_nmax": np.nan, "excess_var_nmax_err": np.nan, "excess_positive": False,
           "excess_significant": False, "npoints": int(ok.sum()), "success": False, "message": ""}
    if ok.sum() < 2:
        out["message"] = f"{int(ok.sum())} usable point(s): need 2 for (p0, p1)"
        return out
    n, y = n[ok], y[ok]
    shape = 12.0 * (n - 1) / (n + 1)

    def resid(x):
        return y - (shape * x[0] - x[1] / np.sqrt(m))

    try:
        res = least_squares(resid, [p_start[0] ** 2, p_start[1]], bounds=([0.0, -np.inf], [np.inf, np.inf]))
    except (ValueError, np.linalg.LinAlgError) as exc:     # e.g. residuals that overflow
        out["message"] = f"fit failed: {exc}"
        return out
    q, p1 = float(res.x[0]), float(res.x[1])
    dof = n.size - 2
    cov = np.full((2, 2), np.nan)
    if dof > 0:     # linear model: covariance from the design matrix (res.jac is 0 at an active bound)
        design = np.column_stack([shape, np.full(n.size, -1.0 / np.sqrt(m))])
        try:
            cov = np.linalg.inv(design.T @ design) * (2.0 * res.cost / dof)
        except np.linalg.LinAlgError:
            pass
    p0 = float(np.sqrt(q))
    q_err = float(np.sqrt(cov[0, 0]))
    p0_err = float(np.sqrt(q + q_err) - p0)           # = q_err/(2 p0) far from the bound
    nmax = n.max()
    ex = float(excess_variance(nmax, m, p0, p1))
    grad = np.array([12.0 * (nmax - 1) / (nmax + 1), -1.0 / np.sqrt(m)])
    ex_err = float(np.sqrt(grad @ cov @ grad)) if np.all(np.isfinite(cov)) else np.nan
    out.update({"p0": p0, "p0_err": p0_err, "p1": p1, "p1_err": float(np.sqrt(cov[1, 1])),
                "excess_var_nmax": ex, "excess_var_nmax_err": ex_err, "excess_positive": bool(ex > 0),
                "excess_significant": bool(ex > 2 * ex_err) if np.isfinite(ex_err) else False,
                "success": bool(res.success), "message": str(res.message)})
    return out


def flag_jumps(groups, hit, good, clip=10.0):
    """Pass the groups of one ramp through, OR-ing into ``hit`` (bool (ny, nx), in place) the
    pixels whose difference to the previous group is more than ``clip`` MAD sigma (MAD of
    the difference over ``good`` pixels) from its median: cosmic rays, which are not noise."""
    prev = None
    for frame in groups:
        y = np.asarray(frame, np.float64)
        if prev is not None:
            d = y - prev
            sel = d[good]
            if sel.size:
                hit |= np.abs(d - np.median(sel)) > clip * mad_sigma(sel)
        prev = y
        yield frame


def measure_effective_noise(ramps, geom, tgroup, ns, pixeldq=None, min_ramps=MIN_TEMPORAL,
                            max_temporal_pixels=2 ** 19, jackknife_blocks=JACKKNIFE_BLOCKS, clip=10.0):
    """Spatial and temporal slope noise per channel for every N.

    Parameters
    ----------
    ramps : iterable of ramps; a ramp is an iterable of groups (ny, nx) [DN], e.g. an ndarray
        (ngroups, ny, nx); every integration counts as a ramp
    geom : detcal.geometry.Geometry          amplifier map and reference pixels
    tgroup : float [s]
    ns : sequence of int                      group counts (sorted, >= 2)
    pixeldq : ndarray uint32 (ny, nx) or None DO_NOT_USE pixels are left out
    min_ramps : int                           temporal statistics need at least this many ramps
    max_temporal_pixels : int                 pixels followed for the temporal statistic (in
                                              all blocks together)
    jackknife_blocks : int                    ramps are dealt in turn into this many blocks
    clip : float                              a pixel whose group-to-group difference is more
                                              than ``clip`` MAD sigma off (a cosmic ray), and
                                              its 8 neighbours, are left out of that ramp

    Returns
    -------
    dict: ``ns`` (list), ``channels`` (list of str: amplifiers '1'..'N' = output index + 1, and
    'reference' if any),
    ``spatial_var``/``temporal_var`` float64 (nchan, len(ns)) [(DN/s)^2] (temporal NaN when
    fewer than ``min_ramps``), ``dark_rate`` (nchan,) [DN/s] (median slope at max N),
    ``nramps``, ``temporal_ok``; ``jackknife``: the same dict for every delete-one-block subset
    (empty with fewer than 3 blocks), for :func:`jackknife_errors`. No ramp at all: ``nramps`` 0
    and NaN statistics.
    """
    ns = sorted({int(n) for n in ns})
    ref = geom.reference_mask()
    good = np.ones(geom.shape, bool) if pixeldq is None else common.good_pixels(pixeldq)
    amp = geom.amplifier_map()
    nout = int(amp.max()) + 1
    masks = [(~ref) & good & (amp == k) for k in range(nout)]
    names = [str(k + 1) for k in range(nout)]          # amplifier labels
    if (ref & good).any():
        masks.append(ref & good)
        names.append("reference")
    nblk = max(int(jackknife_blocks), 1)
    followed = common.subsample_rows(np.logical_or.reduce(masks), max(max_temporal_pixels // nblk, 1))
    blocks = [PixelMoments(ns, followed) for _ in range(nblk)]
    chan_of = np.full(geom.shape, -1, int)
    for c, m in enumerate(masks):
        chan_of[m] = c
    chan_followed = chan_of.reshape(-1)[followed]
    spatial, dark = [], []
    nramps = 0
    anygood = np.logical_or.reduce(masks)
    for ramp in ramps:
        sp = np.full((len(masks), len(ns)), np.nan)
        hit = np.zeros(geom.shape, bool)
        slopes = list(iter_ols_slopes(flag_jumps(ramp, hit, anygood, clip), ns, tgroup))
        hit = grow_outliers(hit)                       # a cosmic ray's neighbours hold 15-30 % of it
        followed_slopes = []
        for i, (n, s) in enumerate(slopes):
            for c, m in enumerate(masks):
                sp[c, i] = clipped_sigma(s[m & ~hit]) ** 2
            followed_slopes.append(s.reshape(-1)[followed])
        blocks[nramps % nblk].add(followed_slopes, indexed=True, valid=~hit.reshape(-1)[followed])
        dark.append([float(np.median(s[m & ~hit])) for m in masks])      # s: slope at max N
        spatial.append(sp)
        nramps += 1
    if nramps == 0:     # every ramp left out (flagged, e.g. a saturated group): NaN statistics
        nan = np.full((len(masks), len(ns)), np.nan)
        return {"ns": ns, "channels": names, "spatial_var": nan, "temporal_var": nan.copy(),
                "dark_rate": np.full(len(masks), np.nan), "nramps": 0, "temporal_ok": False, "nout": nout,
                "jackknife": []}
    spatial, dark = np.array(spatial), np.array(dark)
    block_of = np.arange(nramps) % nblk

    def stats_of(keep, need=min_ramps):
        """Statistics of the ramps in the blocks ``keep`` (temporal with at least ``need`` ramps)."""
        moments = PixelMoments.merged([blocks[b] for b in keep])
        sel = np.isin(block_of, keep)
        nr = int(sel.sum())
        ok = nr >= max(need, 2)
        temporal = np.full((len(masks), len(ns)), np.nan)
        if ok:
            kept = moments.count >= 2
            for i, n in enumerate(ns):
                var = moments.variance(n)
                for c in range(len(masks)):
                    pick = (chan_followed == c) & kept
                    dof = int(np.median(moments.count[pick])) - 1 if pick.any() else 0
                    temporal[c, i] = median_variance(var[pick], dof)
        return {"ns": ns, "channels": names,
                "spatial_var": np.median(spatial[sel], axis=0),  # median over ramps of sigma^2
                "temporal_var": temporal, "dark_rate": np.median(dark[sel], axis=0), "nramps": nr,
                "temporal_ok": ok, "nout": nout}

    used = [b for b in range(nblk) if blocks[b].n > 0]
    out = stats_of(used)
    # the subsets use the full set's statistic (temporal or spatial) even if they hold fewer ramps
    need = 2 if out["temporal_ok"] else np.inf
    out["jackknife"] = ([stats_of([b for b in used if b != drop], need) for drop in used]
                        if len(used) >= 3 else [])
    return out


def effective_noise_table(stats, gains, tgroup, tframe, nframes=1, groupgap=0,
                          read_noise_source="n2", readnoise_cds_dn=None):
    """Effective noise table, theory and excess fits from :func:`measure_effective_noise` output.

    Parameters
    ----------
    stats : dict                    :func:`measure_effective_noise`
    gains : ndarray (nout,) [e-/DN] per output (NaN: no e- values, no theory)
    tgroup, tframe : float [s]; nframes, groupgap : int
    read_noise_source : 'n2' | 'reference'
    readnoise_cds_dn : ndarray (nout,) [DN] READNOISE reference (CDS) per output, or None

    Returns
    -------
    table : pandas.DataFrame, one row per (channel, N): column ``amplifier`` = '1'..'N' (output
        index + 1), 'all' (output average), 'reference'. Columns: amplifier, ngroups_fit, time_s,
        slope_noise_{spatial,temporal}_DN_per_s, eff_noise_{spatial,temporal}_{DN,e}, gain_e_per_DN,
        theory_e, theory_plus_excess_e, temporal_valid
    summary : dict per channel: gain, dark rate [DN/s, e-/s], read noise [e-] (n2 and reference;
        which one the theory used), fit (see :func:`fit_excess_variance`), statistic fitted
    """
    if read_noise_source not in ("n2", "reference"):
        raise ValueError(f"read_noise_source must be 'n2' or 'reference', got {read_noise_source!r}")
    ns = np.array(stats["ns"], float)
    t = (ns - 1) * tgroup
    gains = np.asarray(gains, float)
    use = "temporal" if stats["temporal_ok"] else "spatial"
    rows, summary = [], {}
    chans = list(stats["channels"])
    live = live_outputs(stats)       # dead or flat outputs are left out of the output average
    var_dn = {s: np.asarray(stats[f"{s}_var"]) * t[None, :] ** 2 for s in ("spatial", "temporal")}
    theory_var_amp = []
    for c, name in enumerate(chans + ["all"]):
        if name == "all":
            v = {s: np.nanmean(var_dn[s][live], axis=0) if np.isfinite(var_dn[s][live]).any()
                 else np.full(len(ns), np.nan) for s in var_dn}
            g = common.mean_gain(gains[live])
            dark_dn = float(np.mean(np.asarray(stats["dark_rate"])[live]))
        else:
            v = {s: var_dn[s][c] for s in var_dn}
            g = float(gains[c]) if name != "reference" else common.mean_gain(gains)
            dark_dn = float(stats["dark_rate"][c]) if name != "reference" else 0.0
        flux = max(dark_dn * g, 0.0) if np.isfinite(g) else np.nan
        meas_e2 = v[use] * g ** 2
        rn_n2 = read_noise_from_n2(meas_e2[0], nframes, tframe, flux, tgroup, groupgap) \
            if ns[0] == 2 and np.isfinite(meas_e2[0]) and np.isfinite(flux) else np.nan
        rn_ref = np.nan
        if readnoise_cds_dn is not None and name not in ("reference",):
            ref_dn = (float(np.mean(np.asarray(readnoise_cds_dn)[live])) if name == "all"
                      else float(readnoise_cds_dn[c]))
            rn_ref = ref_dn * g / np.sqrt(2.0)
        rn = rn_n2 if read_noise_source == "n2" else rn_ref
        if name == "all" and theory_var_amp:
            theory = np.mean([theory_var_amp[k] for k in live], axis=0)
        elif np.isfinite(rn) and np.isfinite(flux):
            theory = multiaccum_variance(ns, nframes, tframe, rn, flux, tgroup, groupgap)
        else:
            theory = np.full(len(ns), np.nan)
        if name not in ("reference", "all"):
            theory_var_amp.append(theory)
        fit = None
        if name != "reference":
            fit = fit_excess_variance(ns, nframes, meas_e2, theory)
            excess = (excess_variance(ns, nframes, fit["p0"], fit["p1"]) if fit["npoints"] >= 2
                      else np.full(len(ns), np.nan))
        else:
            excess = np.full(len(ns), np.nan)
        summary[name] = {"ngroups_max": int(ns[-1]), "time_max_s": float(t[-1]),
                         "effective_noise_max_n_e": float(np.sqrt(meas_e2[-1])) if meas_e2[-1] >= 0 else np.nan,
                         "effective_noise_max_n_DN": float(np.sqrt(v[use][-1])),
                         "theory_max_n_e": float(np.sqrt(theory[-1])) if theory[-1] >= 0 else np.nan,
                         "excess_max_n_e2": float(meas_e2[-1] - theory[-1]),
                         "gain_e_per_DN": g, "dark_rate_DN_per_s": dark_dn, "dark_rate_e_per_s": flux,
                         "read_noise_n2_e": rn_n2, "read_noise_reference_e": rn_ref,
                         "read_noise_used_e": rn, "read_noise_source": read_noise_source,
                         "statistic_fitted": use, "excess_fit": fit}
        for i in range(len(ns)):
            rows.append({
                "amplifier": name, "ngroups_fit": int(ns[i]), "time_s": t[i],
                "slope_noise_spatial_DN_per_s": np.sqrt(v["spatial"][i]) / t[i],
                "slope_noise_temporal_DN_per_s": np.sqrt(v["temporal"][i]) / t[i],
                "eff_noise_spatial_DN": np.sqrt(v["spatial"][i]),
                "eff_noise_temporal_DN": np.sqrt(v["temporal"][i]),
                "eff_noise_spatial_e": np.sqrt(v["spatial"][i]) * g,
                "eff_noise_temporal_e": np.sqrt(v["temporal"][i]) * g,
                "gain_e_per_DN": g,
                "theory_e": np.sqrt(theory[i]) if theory[i] >= 0 else np.nan,
                "theory_plus_excess_e": (np.sqrt(theory[i] + excess[i])
                                         if np.isfinite(excess[i]) and theory[i] + excess[i] >= 0 else np.nan),
                "temporal_valid": bool(stats["temporal_ok"]),
            })
    return pd.DataFrame(rows), summary


def pink_ols_variance(ns, geom, tgroup, tframe, nframes=1, groupgap=0, dt=PIXEL_TIME_S,
                      row_overhead=ROW_OVERHEAD, refpix=True, max_pixels=256, max_ref=256):
    """Variance of the accumulated OLS signal that a unit 1/f stream adds, per N: (len(ns),).

    The 1/f stream ``S(f) = A/f`` (A = 1, :mod:`detcal.noise_conventions`) is read through the
    outputs in readout order (pixel j of row r at sample ``r (w + row_overhead) + j`` of its
    frame; frames ``tframe`` apart; a group is the mean of ``nframes`` frames, ``nframes +
    groupgap`` frames apart). With ``refpix`` every group first has the top/bottom reference
    correction of :mod:`detcal.steps.refpix` (per output and detector-column parity, the mean of
    the bottom and the top reference rows' means) subtracted, as the noise analyses' ramps
    have. The OLS fit of the first N groups gives the accumulated signal ``slope (N-1) TGROUP``;
    its variance is summed exactly from the stream's autocovariance ``R(tau) = const - Cin(pi
    tau/dt)`` (the constant cancels: the weights sum to zero), averaged over up to
    ``max_pixels`` active pixels (reference sets thinned to ``max_ref`` pixels).

    Returns float64 (len(ns),) [unit^2 of the stream per unit of A]; times A [e-^2] it is the
    1/f part of the effective-noise variance [e-^2]. The same for a stream common to all
    outputs (correlated 1/f, each pixel sees one stream) and one per output (uncorrelated).
    The part of it that the effective-noise excess shows at N (read noise taken from N = 2):
    ``V(N) - 6 (N-1) / (N (N+1)) V(2)``.
    """
    from .noise import cin, output_width, readout_order

    ns = np.asarray(sorted({int(n) for n in ns}))
    nmax = int(ns[-1])
    m = int(nframes)
    period = float(tframe) / dt                       # samples between frame starts
    gper = (m + int(groupgap)) * period               # between group starts

    def h(x):
        """Covariance of two group means whose first frames are ``x`` samples apart."""
        x = np.asarray(x, np.float64)
        out = np.zeros_like(x)
        for d in range(-(m - 1), m):
            out += (m - abs(d)) / m ** 2 * -cin(np.pi * (x + d * period))
        return out

    nout, w = output_width(geom)
    ref = readout_order(geom.reference_mask(), geom)                   # (nout, ny, w)
    ny_d, nx_d = ref.shape[1], nout * w
    det_cols = np.broadcast_to(np.arange(nx_d), (ny_d, nx_d))
    parity = readout_order(geom.to_science(det_cols), geom) % 2
    offs = np.arange(ny_d)[:, None] * (w + int(row_overhead)) + np.arange(w)[None, :]
    lags = np.arange(nmax) * gper
    g_sum = np.zeros(nmax)
    npix = 0
    per_out = max(int(max_pixels) // nout, 1)
    for k in range(nout):
        ref_rows = np.flatnonzero(ref[k].all(axis=1))
        bottom, top = ref_rows[ref_rows < ny_d // 2], ref_rows[ref_rows >= ny_d // 2]
        active = np.flatnonzero(~ref[k].reshape(-1))
        pick = active[np.linspace(0, active.size - 1, min(per_out, active.size)).astype(int)]
        sets = {}
        for par in (0, 1):
            s_q, a_q = [], []
            parts = [rows for rows in (bottom, top) if refpix and rows.size]
            for rows in parts:
                sel = np.zeros((ny_d, w), bool)
                sel[rows] = True
                sel &= parity[k] == par
                q = offs[sel]
                q = q[np.linspace(0, q.size - 1, min(q.size, max(int(max_ref) // 2, 1))).astype(int)]
                s_q.append(q)
                a_q.append(np.full(q.size, 1.0 / (q.size * len(parts))))
            if s_q:
                s_q, a_q = np.concatenate(s_q).astype(float), np.concatenate(a_q)
                diff = s_q[:, None] - s_q[None, :]
                rr = np.array([np.sum(a_q[:, None] * a_q[None, :] * h(lag + diff)) for lag in lags])
            else:
                s_q, a_q, rr = np.zeros(0), np.zeros(0), np.zeros(nmax)
            sets[par] = (s_q, a_q, rr)
        for p in pick:
            s_p = float(offs.reshape(-1)[p])
            s_q, a_q, rr = sets[int(parity[k].reshape(-1)[p])]
            g = h(lags) + rr
            if s_q.size:
                g -= np.array([np.sum(a_q * (h(lag + s_p - s_q) + h(lag - s_p + s_q))) for lag in lags])
            g_sum += g
            npix += 1
    g = g_sum / max(npix, 1)
    out = []
    for n in ns:
        k = np.arange(n) - (n - 1) / 2.0
        wts = k * (n - 1) / np.sum(k ** 2)
        lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        out.append(float(wts @ g[lag] @ wts))
    return np.array(out)


#: Summary numbers of a channel that get jackknife errors (``<name>_err``).
JACKKNIFE_KEYS = ("effective_noise_max_n_e", "excess_max_n_e2", "read_noise_n2_e")


def jackknife_errors(stats, summary, *args, **kwargs):
    """Delete-one-block jackknife errors of the effective-noise summary (modified in place).

    ``stats``: :func:`measure_effective_noise` (with its ``jackknife`` subsets); ``summary``: the
    per-channel dict of :func:`effective_noise_table`, which is re-run on every subset with
    ``args``/``kwargs``. Adds ``<key>_err`` for :data:`JACKKNIFE_KEYS` and
    ``excess_fit.excess_var_nmax_err_jackknife`` to every channel, and ``error_method``.
    Ramps of one block share nothing with other blocks' ramps, so the errors include the
    ramp-to-ramp scatter of correlated (1/f) noise, which the fit's residuals do not see.
    """
    subsets = stats.get("jackknife") or []
    k = len(subsets)
    for name, chan in summary.items():
        chan["error_method"] = (f"delete-one-block jackknife over {k} blocks of ramps" if k >= 3
                                else "none (fewer than 3 blocks of ramps)")
    if k < 3:       # no error bars: the keys exist (NaN) so that the summary can be written
        for chan in summary.values():
            chan.update({f"{key}_err": np.nan for key in JACKKNIFE_KEYS})
        return summary
    subs = [effective_noise_table(s, *args, **kwargs)[1] for s in subsets]

    def jk(values):
        v = np.asarray(values, float)
        if not np.all(np.isfinite(v)):
            return np.nan
        return float(np.sqrt((k - 1) / k * np.sum((v - v.mean()) ** 2)))

    for name, chan in summary.items():
        for key in JACKKNIFE_KEYS:
            chan[f"{key}_err"] = jk([sub[name][key] for sub in subs])
        if chan.get("excess_fit"):
            chan["excess_fit"]["excess_var_nmax_err_jackknife"] = jk(
                [sub[name]["excess_fit"]["excess_var_nmax"] for sub in subs])
    return summary


# ---------------------------------------------------------------------------------------------
# Figure (drawn from the table)
# ---------------------------------------------------------------------------------------------
def _draw_noise_curves(draw, t, measured, theory=None, theory_label="theory"):
    """Measured spatial/temporal points (column pattern ``measured`` with ``{stat}``) and, with
    ``theory`` (a function of the theory column, None: no e- values), the theory curves."""
    for stat, mk in (("spatial", "o"), ("temporal", "s")):
        y = t[measured.format(stat=stat)]
        if y.notna().any():
            draw(t.time_s, y, mk, ms=4, label=f"measured, {stat}")
    curves = (("theory_e", "k-", theory_label), ("theory_plus_excess_e", "r--", "theory + excess"))
    for col, style, label in curves:
        if theory is not None and t[col].notna().any():
            draw(t.time_s, theory(t[col]), style, lw=1.2, label=label)


def plot_effective_noise(table, path, title="", note=""):
    """Effective noise [e- or DN] vs (N-1) TGROUP per channel (top) and slope noise [DN/s] (bottom)."""
    chans, last = list(table.amplifier.unique()), ("all", "reference")
    chans = [c for c in chans if c not in last] + [c for c in last if c in chans]
    use_e = table.eff_noise_spatial_e.notna().any()
    unit = "e-" if use_e else "DN"
    fig, axs = plt.subplots(2, len(chans), figsize=(3.6 * len(chans), 7), squeeze=False)
    for j, c in enumerate(chans):
        t = table[table.amplifier == c].sort_values("ngroups_fit")
        ax = axs[0, j]
        _draw_noise_curves(ax.plot, t, "eff_noise_{stat}_" + ("e" if use_e else "DN"),
                           (lambda y: y) if use_e else None, "theory (MULTIACCUM)")
        names = {"all": "channel average", "reference": "reference pixels"}
        label = names[c] if c in names else f"amplifier {c}"
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("time (N-1) x TGROUP [s]")
        ax.set_ylabel(f"effective noise [{unit}]")
        if ax.get_legend_handles_labels()[0]:      # nothing drawn when nothing was measured
            ax.legend(fontsize=7)
        ax = axs[1, j]
        _draw_noise_curves(ax.loglog, t, "slope_noise_{stat}_DN_per_s",
                           (lambda y, t=t: y / t.gain_e_per_DN / t.time_s) if use_e else None)
        ax.set_xlabel("time (N-1) x TGROUP [s]")
        ax.set_ylabel("slope noise [DN/s]")
    fig.suptitle(" ".join(s for s in (title, note) if s), fontsize=11)
    fig.tight_layout()
    common.save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------------------------
# File level: one configuration group
# ---------------------------------------------------------------------------------------------
def _ramp_groups(ramp, integration, ngroups):
    for g in range(ngroups):
        yield ramp.frame(integration, g)


def _iter_ramps(paths, first, excluded=None):
    """Every integration as a ramp; those whose pixels are SATURATED in some group, or DO_NOT_USE
    in every group, on more than noise.MAX_FLAGGED_FRACTION of the non-reference pixels (a ramp
    saturated everywhere) are skipped and their (file name, integration) appended to
    ``excluded``. Groups flagged DO_NOT_USE on every pixel by design (MIRI's last frame, the
    rscd step's first groups) do not exclude a ramp."""
    science = ~first.geom.reference_mask()
    for path in paths:
        with open_ramp(path) as ramp:
            check_same_configuration(first, ramp)
            for i in range(ramp.shape[0]):
                saturated = np.zeros(ramp.shape[2:], bool)
                unused = np.ones(ramp.shape[2:], bool)
                for g in range(ramp.shape[1]):
                    saturated |= ramp.flagged(i, g, dqflags.SATURATED)
                    unused &= ramp.flagged(i, g, dqflags.DO_NOT_USE)
                flagged = saturated | unused
                if flagged[science].size and flagged[science].mean() > MAX_FLAGGED_FRACTION:
                    if excluded is not None:
                        excluded.append((os.path.basename(path), i))
                    continue
                yield _ramp_groups(ramp, i, ramp.shape[1])


def live_outputs(stats):
    """Outputs (0-based) of the output average: all but the dead or flat ones
    (:func:`detcal.analysis.common.dead_outputs` of the spatial slope variance at the first N)."""
    nout = stats["nout"]
    dead = common.dead_outputs(np.asarray(stats["spatial_var"], float)[:nout, 0])
    return [k for k in range(nout) if k not in dead] or list(range(nout))


@dataclass(frozen=True)
class EffectiveNoiseParameters:
    """Parameters of the effective-noise analysis (the rule's ``params.kwargs`` and defaults).

    ngroups : list of int or None     group counts N of the slope fits (None:
                                      :func:`default_group_counts`)
    read_noise_source : 'n2' | 'reference'   single-frame read noise of the theory: the N = 2
                                      point, or the READNOISE reference (CDS / sqrt 2)
    min_ramps : int                   temporal statistics need this many ramps (:data:`MIN_TEMPORAL`)
    max_temporal_pixels : int         pixels followed for the temporal statistic (2**19)
    jackknife_blocks : int            blocks of ramps for the jackknife errors
                                      (:func:`jackknife_errors`; :data:`JACKKNIFE_BLOCKS`)
    """

    ngroups: tuple = None
    read_noise_source: str = "n2"
    min_ramps: int = MIN_TEMPORAL
    max_temporal_pixels: int = 2 ** 19
    jackknife_blocks: int = JACKKNIFE_BLOCKS


def _open_effnoise_group(paths, gain_path, readnoise_path, gain, read_noise_source):
    """Metadata, OR of the PIXELDQ, output gains and READNOISE per output of the group's ramps.

    Returns (meta, geom, header, pixeldq, gains, rn_ref (per output [DN CDS] or None), first).
    """
    with open_ramp(paths[0]) as first:
        meta, geom, shape, header = first.meta, first.geom, first.shape, first.header
        pixeldq = first.pixeldq.copy()
        active = ~geom.reference_mask() & common.good_pixels(pixeldq)
        gains = common.output_gains(gain_path, header, shape, geom.amplifier_map(), active, gain)
        rn_ref = None
        if readnoise_path:
            like = io.Ramp(np.empty((0, 0) + shape[2:], np.float32), None, None, header, first.path)
            rn_map = io.read_reference(readnoise_path, "READNOISE", like=like).data.astype(np.float64)
            amp = geom.amplifier_map()
            rn_ref = np.array([np.nanmedian(rn_map[active & (amp == k)]) for k in range(len(gains))])
        elif read_noise_source == "reference":
            raise InputError(paths[0], "read_noise_source='reference' needs a READNOISE reference")
        for path in paths[1:]:
            with open_ramp(path) as other:
                check_same_configuration(first, other)
                pixeldq |= other.pixeldq
    return meta, geom, header, pixeldq, gains, rn_ref, first


def effective_noise_headline(avg):
    """The JSON ``summary``: effective noise, theory and excess at the largest N (output average)."""
    stat = avg["statistic_fitted"]
    return {
        "effective_noise_max_n_e": avg["effective_noise_max_n_e"],
        "effective_noise_max_n_err_e": avg["effective_noise_max_n_e_err"],
        "effective_noise_max_n_DN": avg["effective_noise_max_n_DN"],
        "ngroups_max_n": avg["ngroups_max"], "time_max_n_s": avg["time_max_s"],
        "theory_max_n_e": avg["theory_max_n_e"],
        "excess_max_n_e2": avg["excess_max_n_e2"], "excess_max_n_err_e2": avg["excess_max_n_e2_err"],
        "read_noise_n2_e": avg["read_noise_n2_e"], "read_noise_n2_err_e": avg["read_noise_n2_e_err"],
        "statistic": stat,
        "convention": (f"{stat} effective noise (OLS slope noise x (N-1) TGROUP) at the largest N = "
                       f"{avg['ngroups_max']} ({avg['time_max_s']:.4g} s), output average, e-; excess = "
                       "measured^2 - MULTIACCUM theory^2 at that N [e-^2] (read noise from N = 2); "
                       "errors: delete-one-block jackknife over ramps"),
    }


def effective_noise_conventions(read_noise_source):
    """The ``conventions`` block of the effective-noise JSON."""
    source = "the N=2 point" if read_noise_source == "n2" else "the READNOISE reference (CDS/sqrt2)"
    return {
        "effective_noise": "noise of the accumulated signal: OLS slope noise x (N-1) x TGROUP",
        "slope_fit": "unweighted OLS over the first N groups of every integration",
        "spatial": "clipped sigma (std within +-4 MAD sigma of the median, truncation-corrected) over a "
                   "channel's good pixels per ramp, median over ramps",
        "temporal": "per-pixel variance across ramps, median over pixels / chi2 median factor (unbiased)",
        "channel_average": "sqrt(mean over outputs of the variance)",
        "units": "DN as in the ramps; e- = DN x gain (GAIN reference, median per output)",
        "theory": "Rauscher 2007 / Robberto 2009 MULTIACCUM variance with the measured dark rate and "
                  f"single-frame read noise from {source}",
        "excess": "var_ex(n, m) = 12 (n-1)/(n+1) p0^2 - p1/sqrt(m) [e-^2], least squares on "
                  "measured^2 - theory^2",
        "read_noise": "single-frame read noise [e-] (CDS noise / sqrt(2))",
        "excess_max_n": "measured^2 - theory^2 at the largest N [e-^2] (the data point, not the fit)",
        "errors": "delete-one-block jackknife: ramps dealt in turn into blocks, each left out once",
    }


def _effnoise_note(stats, min_ramps):
    dead = [k + 1 for k in range(stats["nout"]) if k not in live_outputs(stats)]
    temporal = (not stats["temporal_ok"]
                and common.temporal_note("effective noise", stats["nramps"], "ramp", min_ramps))
    dead_note = dead and common.dead_amplifier_note(dead, "left out of the output average")
    return common.join_notes(log, temporal, dead_note), dead


@keyword_parameters(EffectiveNoiseParameters)
def effective_noise_files(ramp_paths, table_path, json_path, figure_path, gain_path=None,
                          readnoise_path=None, gain=None, title=None, parameters=None):
    """Effective noise of one configuration group: table (TSV), summary (JSON) and figure (PNG).

    Read (:func:`_open_effnoise_group`, ramps one at a time) -> measure
    (:func:`measure_effective_noise`, :func:`effective_noise_table`, :func:`jackknife_errors`) ->
    write.

    Parameters
    ----------
    ramp_paths : list of str   ramp products of one group (superbias + refpix corrected, 1/f in:
                               the NIR ``linearity`` or ``refpix`` products); every integration is a ramp
    table_path, json_path, figure_path : str   outputs (figure_path None: no figure)
    gain_path : str or None    GAIN reference [e-/DN]; ``gain``: a number instead (else no e-)
    readnoise_path : str or None  READNOISE reference [DN, CDS]; needed for read_noise_source='reference'
    title : str                figure title (default: the group's DETECTOR etc.)
    ngroups, read_noise_source, min_ramps, max_temporal_pixels, jackknife_blocks
        :class:`EffectiveNoiseParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    (table DataFrame, summary dict)
    """
    p = parameters
    paths = [str(x) for x in ramp_paths]
    if not paths:
        raise ValueError("no ramp files given")
    meta, geom, header, pixeldq, gains, rn_ref, first_stub = _open_effnoise_group(
        paths, gain_path, readnoise_path, gain, p.read_noise_source)
    ns = sorted({int(n) for n in (p.ngroups or default_group_counts(meta["NGROUPS"]))
                 if 2 <= int(n) <= meta["NGROUPS"]})
    if not ns:
        raise ValueError(f"no usable group count in {p.ngroups} for NGROUPS={meta['NGROUPS']}")
    log.info("effective noise: %d file(s), NGROUPS=%d, N=%s", len(paths), meta["NGROUPS"], ns)
    excluded = []
    stats = measure_effective_noise(_iter_ramps(paths, first_stub, excluded), geom, meta["TGROUP"], ns,
                                    pixeldq, p.min_ramps, p.max_temporal_pixels, p.jackknife_blocks)
    if excluded:
        log.warning("effective noise: %d ramp(s) left out: flagged SATURATED/DO_NOT_USE on more than "
                    "%.0f %% of the pixels (%s)", len(excluded), 100 * MAX_FLAGGED_FRACTION,
                    sorted({e[0] for e in excluded}))
    note, dead = _effnoise_note(stats, p.min_ramps)
    if stats["nramps"] == 0:        # every ramp flagged: NaN numbers, this note
        note = nothing_measured(paths, "ramps", excluded)
        log.warning("effective noise: %s", note)
    targs = (gains, meta["TGROUP"], meta["TFRAME"], meta["NFRAMES"], meta["GROUPGAP"], p.read_noise_source,
             rn_ref)
    table, summary = effective_noise_table(stats, *targs)
    jackknife_errors(stats, summary, *targs)
    tables.write_tsv(table, table_path, float_format="%.6g")
    ident = {k: meta.get(k) for k in ("DETECTOR", "SUBARRAY", "NGROUPS", "NFRAMES", "GROUPGAP", "TFRAME",
                                      "TGROUP")}
    ident.update({k: header.get(k) for k in ("READPATT", "NOUTPUTS")})
    doc = {
        "analysis": "effective noise",
        "configuration": ident,
        "inputs": [os.path.basename(x) for x in paths],
        "gain_reference": os.path.basename(gain_path) if gain_path else None,
        "readnoise_reference": os.path.basename(readnoise_path) if readnoise_path else None,
        "nramps": stats["nramps"], "temporal_valid": stats["temporal_ok"], "min_ramps_temporal": p.min_ramps,
        "nramps_excluded_flagged": len(excluded), "ramps_excluded_flagged": [list(e) for e in excluded],
        "note": note, "group_counts": ns,
        "dead_amplifiers": dead, "n_dead_amplifiers": len(dead),
        # nothing measured: the note also in the summary, so the group's summary row says why
        "summary": effective_noise_headline(summary["all"]) | ({"note": note} if not stats["nramps"] else {}),
        "conventions": effective_noise_conventions(p.read_noise_source),
        "channels": summary,
    }
    tables.write_json(doc, json_path)
    label = title or " ".join(str(ident.get(k)) for k in ("DETECTOR", "SUBARRAY", "READPATT") if ident.get(k))
    if figure_path:
        plot_effective_noise(table, figure_path, title=f"Effective noise {label} ({stats['nramps']} ramps)",
                             note=note)
    return table, doc
