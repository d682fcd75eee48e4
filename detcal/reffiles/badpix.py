"""Bad-pixel MASK reference files from darks (the dark half of jwst_reffiles ``bad_pixel_mask``).

Inputs of ONE configuration group, processed WITHOUT dark subtraction (a hot pixel's dark is its
signature): per-integration slopes (``rateints``, ramp_fit of the jump products) and the
jump-flagged ramps themselves. Per active pixel (reference pixels get REFERENCE_PIXEL and nothing
else, never DO_NOT_USE). Every flag that noise alone could raise is a significance test with a
stated false-flag rate: with ``false_flags`` = F (default 1) and N active pixels, the per-pixel
false-alarm probability is ``alpha = F / N`` (one-sided, Gaussian: z_alpha = 3.42 for N = 56^2,
4.16 for 248^2, 5.03 for a 2040^2 array), so a pixel population that sits exactly at a type's
null hypothesis gives F false flags of that type on the array on average, and fewer the further
below it is.

* **HOT / WARM** (thresholds ``hot_threshold`` / ``warm_threshold`` [e-/s], divided by the gain
  to DN/s). Per pixel the mean dark rate over ALL integrations, weighted by 1 / VAR_RNOISE of
  each integration (an integration split by a jump has the larger read-noise variance of its
  segments), ``r = sum(w s) / sum(w)``. Its error under the null hypothesis "rate = T" is
  ``sigma_T^2 = k^2 (1 / sum(w) + P(T) / n_eff)``, ``n_eff = (sum w)^2 / sum(w^2)``, with the
  Poisson slope variance of one integration of an OLS ramp at rate T,
  ``P(T) = 6 (N^2 + 1) / (5 N (N + 1)) * T / (gain * t_int)`` [(DN/s)^2] (N groups,
  ``t_int = (N - 1) TGROUP``; exact for NFRAMES = 1 and uniform weights, which OLS_C uses at dark
  levels). VAR_RNOISE is first rescaled per pixel to the mean of the READNOISE-based and the
  pixel's own CDS-based variance, and at least the detector's median (:func:`read_noise_scale`:
  a READNOISE built from few darks is noisy, and a pixel whose READNOISE came out low would get
  too small an error).
  ``k^2`` is measured on the detector's own population: the median over the pixels below
  the WARM threshold of ``chi2 / median(chi2_(n-1))``, ``chi2 = sum((s - r)^2 / (VAR_RNOISE +
  P(r)))`` over each pixel's n integrations, so correlated (1/f) noise, refpix residuals and
  unflagged small cosmic rays that VAR_RNOISE does not describe are in the error bar. (The
  spread of the mean rates over the population, :func:`population_scale`, is reported as a
  check, not used: it also holds the true spread of normal dark rates, on long NIRCam LW ramps
  ~7x the noise variance.) Then
  (:func:`reject_high_slopes`, 2 rounds) an integration whose slope lies above the pixel's other
  integrations by more than z_reject (the same false-flag rule over active pixels x
  integrations) is dropped before ``r`` is formed: a cosmic ray too small for the jump step
  (the share of a diagonal neighbour) raises one integration's slope by many sigma and would
  make a normal pixel WARM. HOT when ``(r - T_hot) / sigma_Thot > z_alpha``, WARM when
  ``(r - T_warm) / sigma_Twarm > z_alpha`` and not HOT: WARM claims "rate above T_warm", so
  a hot pixel below the HOT detection limit flagged WARM is under-classified, not false. A
  pixel saturated (no slope, DQ SATURATED) in more than ``saturated_fraction`` (50 %) of its
  integrations is HOT (jwst_reffiles' "saturated in all groups -> HOT"), unless more than
  ``saturated_set_fraction`` (50 %) of the active pixels are: then the exposure set is unusable
  (light leak, wrong bias or SATURATION reference), not a detector full of hot pixels, and those
  pixels are not judged: no flag of any type, unmeasured (below), counted in a table row
  ``saturated set (not judged)``, with the reason in the header (BPSATFR, BPNOTE), the log and
  the returned ``note`` (:func:`saturated_set`). **Detection limit** (stated for the median
  pixel): the true rate detected with probability ``detect_probability`` (95 %), the solution
  of ``r = T + z_alpha sigma_T + z_beta sigma_r``. A hot pixel between T_hot and its detection
  limit can come out WARM.
  (This replaces jwst_reffiles' "above threshold in >= 75 % of the integrations", which has no
  error model: on short ramps, where one integration's slope noise exceeds the WARM threshold,
  noise alone met it in 0.5 % of normal pixels.)
* **UNRELIABLE_SLOPE** (noisy; the flag jwst_reffiles gives noisy pixels), judged against the
  detector's own population, not against READNOISE (a READNOISE built from the same detector
  already carries a noisy pixel's noise). Per pixel, the independent CDS pairs of the jump ramps
  (:func:`detcal.reffiles.readnoise.cds_frames`: pairs with a jump in the pixel or one of its 8
  neighbours (:func:`neighbour_jumps`: unflagged cosmic-ray shares), saturation or DO_NOT_USE
  dropped; MIRI without its first 5 and last group) of every integration are stacked; their
  3-sigma clipped variance (3 rounds, corrected for the clipping) minus the pair's Poisson
  variance ``max(mean, 0) / gain`` [DN^2] (so hot pixels are not noisy for their shot noise; exact
  for NFRAMES = 1) is the pixel's white CDS variance ``v``; the Poisson variance widens the
  pixel's null distribution (:func:`noisy_pixels`). The statistic ``t = v^(1/3)`` (near
  Gaussian for a chi-square variable, Wilson-Hilferty) is compared with the population of active
  pixels: score ``(t - median(t)) / (1.4826 MAD(t))``; noisy when the score > z_alpha and the
  noise is at least ``noisy_min_ratio`` (1.2) x the population median (so that very deep data
  do not flag pixels a few per cent noisier than typical). The population's width holds the
  pixel-to-pixel spread of normal read noise and the estimation noise of ``v`` from the pairs
  available. **Detection limit**: the noise factor f (CDS noise /
  median CDS noise) detected with ``detect_probability``: ``f = ((c + z_alpha w) / (c - z_beta
  w))^(3/2)`` (c, w the centre and width of ``t``; the numerator at least c x
  noisy_min_ratio^(2/3)).
* **RC** and **TELEGRAPH** from the jump flags (jwst_reffiles' jump rules): per integration, a
  pixel with at least ``min_jumps`` (10) JUMP_DET groups is RC-like when its jump rate in the
  first ``early_fraction`` (25 %) of the groups is at least ``jump_ratio`` (5) times the rate in
  the rest, telegraph-like otherwise; RC when RC-like in more than ``rc_fraction`` (80 %) of the
  integrations, TELEGRAPH when telegraph-like in more than ``telegraph_fraction`` (80 %) and not
  RC. (With 10 jumps needed, short ramps never show either; lower ``min_jumps`` for them. No
  error model: neither rule is reached by Gaussian noise.)
* **DEAD**: no response at all: every group of the ramp identical (peak-to-peak <= ``dead_ptp``
  DN) in at least ``dead_fraction`` (75 %) of the integrations. A pixel that only lacks dark
  current cannot be told from a dead one in darks (normal dark rates are ~0): the simulator's
  dead pixels, which still show read noise, are not found this way.
* **DO_NOT_USE** is added to the types in ``do_not_use`` (default HOT, RC, TELEGRAPH, DEAD, as the
  NRC-09 call of jwst_reffiles); WARM and UNRELIABLE_SLOPE stay usable.
* Pixels without a usable slope in any integration (e.g. DO_NOT_USE everywhere in the inputs)
  cannot be judged from the darks: with ``keep_unmeasured`` they keep the flags of the inputs'
  PIXELDQ (the previous mask, through dq_init).

The table (and the returned summary) give, per type, the per-pixel false-alarm probability, the
expected number of false flags on the array (alpha x pixels tested) and the detection limit with
its unit (HOT/WARM: e-/s; noisy: noise factor over the median CDS noise).
"""

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .. import __version__, dqflags, inventory, io, keywords
from ..analysis import robust
from ..analysis.robust import clip_bias_factor, mad_sigma
from ..errors import InputError
from ..geometry import family
from ..parameters import keyword_parameters
from . import common, readnoise

log = logging.getLogger("detcal.reffiles.badpix")

_JUMP = np.uint8(dqflags.JUMP_DET)

#: Flag types: name -> DQ bit.
TYPES = {"hot": dqflags.HOT, "warm": dqflags.WARM, "noisy": dqflags.UNRELIABLE_SLOPE,
         "rc": dqflags.RC, "telegraph": dqflags.TELEGRAPH, "dead": dqflags.DEAD}


# --------------------------------------------------------------------------------------------
# Pure array functions
# --------------------------------------------------------------------------------------------
def false_alarm_z(false_flags, npix):
    """One-sided Gaussian threshold z_alpha for ``alpha = false_flags / npix``; returns (alpha, z)."""
    if not false_flags > 0:
        raise ValueError(f"false_flags must be > 0, got {false_flags}")
    alpha = min(0.5, float(false_flags) / max(1, int(npix)))
    return alpha, float(stats.norm.isf(alpha))


def poisson_slope_variance(rate, gain, t_int, ngroups):
    """Variance of one integration's OLS slope from Poisson dark charge [(DN/s)^2].

    ``6 (N^2 + 1) / (5 N (N + 1)) * max(rate, 0) / (gain * t_int)``; rate [DN/s], gain [e-/DN],
    t_int = (N - 1) * TGROUP [s], N = ngroups (>= 2). N = 2 gives rate / (gain t_int).
    """
    n = float(max(2, ngroups))
    factor = 6.0 * (n * n + 1.0) / (5.0 * n * (n + 1.0))
    return factor * np.maximum(rate, 0.0) / (np.asarray(gain, np.float64) * t_int)


def usable_slopes(slopes, var_rnoise):
    """bool (nints, ny, nx): integrations with a finite slope and a positive VAR_RNOISE."""
    s = np.asarray(slopes)
    v = np.asarray(var_rnoise)
    with np.errstate(invalid="ignore"):
        return np.isfinite(s) & np.isfinite(v) & (v > 0)


def mean_dark_rate(slopes, var_rnoise, use=None):
    """Per-pixel mean of the per-integration slopes, weighted by 1 / VAR_RNOISE.

    Parameters
    ----------
    slopes : float32 (nints, ny, nx) [DN/s];  var_rnoise : float32, same shape [(DN/s)^2]
        Integrations with a NaN slope or a non-positive VAR_RNOISE are left out.
    use : bool, same shape, or None   integrations to use (default :func:`usable_slopes`)

    Returns
    -------
    dict of float64 / int (ny, nx): ``rate`` [DN/s] (NaN without an integration), ``var_rn``
    [(DN/s)^2] = 1 / sum(w), ``n_eff`` = (sum w)^2 / sum(w^2), ``n`` integrations used.
    """
    s = np.asarray(slopes, np.float64)
    v = np.asarray(var_rnoise, np.float64)
    ok = usable_slopes(s, v) if use is None else np.asarray(use) & usable_slopes(s, v)
    w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(sw > 0, (w * np.where(ok, s, 0.0)).sum(axis=0) / sw, np.nan)
        var_rn = np.where(sw > 0, 1.0 / sw, np.nan)
        n_eff = np.where(sw > 0, sw ** 2 / (w ** 2).sum(axis=0), 0.0)
    return {"rate": rate, "var_rn": var_rn, "n_eff": n_eff, "n": ok.sum(axis=0)}


def reject_high_slopes(slopes, var_rnoise, use, k2, poisson_var, z_reject, rounds=2):
    """Drop integrations whose slope lies above the pixel's other integrations by > ``z_reject``.

    A cosmic ray too small for the jump step (e.g. the share a diagonal neighbour of a hit gets)
    raises one integration's slope by many sigma, and only ever raises it; a warm pixel is warm
    in every integration. Per round and pixel, the integration with the largest leave-one-out
    residual ``(s_j - m_-j) / sqrt(E_j + 1 / sum_(i != j) 1 / E_i)``, ``E = k2 (VAR_RNOISE +
    poisson_var)`` and ``m_-j`` the 1/E-weighted mean of the others, is dropped when that
    residual exceeds ``z_reject`` (one integration of two: the higher one). At least one
    integration is kept.

    slopes, var_rnoise, use : (nints, ny, nx);  k2 : float;  poisson_var : (ny, nx) [(DN/s)^2]
    Returns ``use`` with the rejected integrations set False, and the count rejected (ny, nx).
    """
    s = np.asarray(slopes, np.float64)
    v = np.asarray(var_rnoise, np.float64)
    use = np.asarray(use).copy()
    dropped = np.zeros(s.shape[1:], np.int32)
    for _ in range(int(rounds)):
        with np.errstate(invalid="ignore", divide="ignore"):
            e = k2 * (v + poisson_var)
            w = np.where(use, 1.0 / e, 0.0)
            ws = np.where(use, w * s, 0.0)
            sw_others = w.sum(axis=0) - w
            m_others = (ws.sum(axis=0) - ws) / sw_others
            z = (s - m_others) / np.sqrt(e + 1.0 / sw_others)
        z = np.where(use & (sw_others > 0), z, -np.inf)
        j = np.argmax(z, axis=0)
        worst = np.take_along_axis(z, j[None], axis=0)[0]
        hit = worst > z_reject
        if not hit.any():
            break
        iy, ix = np.nonzero(hit)
        use[j[hit], iy, ix] = False
        dropped += hit
    return use, dropped


def read_noise_scale(var_rnoise_pixel, cds_var, select):
    """Per-pixel factor on VAR_RNOISE: each pixel's read-noise variance from the detector's
    typical one and the pixel's own CDS pairs in these darks, not from the READNOISE reference.

    A READNOISE reference estimated from few darks is itself noisy (12 % rms per pixel from 42
    CDS pairs, tails to -40 %); a pixel whose READNOISE came out low gets too small an error and
    turns WARM. The factor is ``max(R_med, (R + R_med v / v_med) / 2) / R``: R the pixel's
    median VAR_RNOISE over its integrations (so a jump-split integration keeps its larger
    variance), v its white CDS variance in these darks (:func:`cds_variance`), medians over
    ``select``: the mean of two independent estimates (reference and these darks), and at least
    the typical variance; a noisy pixel keeps its larger one. Without CDS variances the factor
    is ``max(R, R_med) / R``.

    var_rnoise_pixel : (ny, nx) R [(DN/s)^2];  cds_var : (ny, nx) [DN^2] or None;  select : bool
    Returns float64 (ny, nx) (1 where R is not finite).
    """
    r = np.asarray(var_rnoise_pixel, np.float64)
    ok = np.asarray(select) & np.isfinite(r) & (r > 0)
    if not ok.any():
        return np.ones(r.shape)
    r_med = float(np.median(r[ok]))
    target = np.maximum(r, r_med)
    if cds_var is not None:
        v = np.asarray(cds_var, np.float64)
        okv = ok & np.isfinite(v)
        if okv.any():
            both = 0.5 * (r + r_med * v / float(np.median(v[okv])))
            target = np.where(np.isfinite(both), np.maximum(both, r_med), target)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = target / r
    return np.where(np.isfinite(scale) & (r > 0), scale, 1.0)


def scatter_chi2(slopes, var_rnoise, rate, poisson_var):
    """chi2 of each pixel's slopes about its mean: sum((s - rate)^2 / (VAR_RNOISE + poisson_var)).

    Shapes as :func:`mean_dark_rate`; ``rate``, ``poisson_var`` (ny, nx). Returns float64 (ny, nx)
    (n - 1 degrees of freedom; NaN where no integration).
    """
    s = np.asarray(slopes, np.float64)
    v = np.asarray(var_rnoise, np.float64)
    ok = np.isfinite(s) & np.isfinite(v) & (v > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(ok, (s - rate) ** 2 / (v + poisson_var), 0.0)
    return np.where(ok.any(axis=0), terms.sum(axis=0), np.nan)


def noise_scale(chi2, n, select):
    """k^2: median over ``select`` pixels (with n >= 2) of chi2 / median(chi2 with n - 1 dof).

    1 when VAR_RNOISE + Poisson describe the scatter between integrations; NaN when no pixel of
    ``select`` has two integrations (then the caller uses 1).
    """
    n = np.asarray(n)
    sel = np.asarray(select) & (n >= 2) & np.isfinite(chi2)
    if not sel.any():
        return float("nan")
    u = chi2[sel] / stats.chi2.median(n[sel] - 1)
    return float(np.median(u))


def population_scale(rate, var_rn, n_eff, select, gain, t_int, ngroups):
    """k^2 from the spread of the mean rates over the population: (1.4826 MAD of
    ``(r - median r) / sigma``)^2, sigma^2 = var_rn + P(median r) / n_eff, over ``select``.

    A check of :func:`noise_scale`: it also holds what is constant over a pixel's integrations,
    including the true spread of normal dark rates, so it is an upper bound (equal to k^2 where
    that spread is far below the noise). NaN without pixels.
    """
    sel = np.asarray(select) & np.isfinite(rate) & np.isfinite(var_rn) & (np.asarray(n_eff) > 0)
    if np.count_nonzero(sel) < 3:
        return float("nan")
    med = float(np.median(rate[sel]))
    g = np.broadcast_to(np.asarray(gain, np.float64), np.shape(rate))[sel]
    sigma = np.sqrt(var_rn[sel] + poisson_slope_variance(med, g, t_int, ngroups) / n_eff[sel])
    return mad_sigma((rate[sel] - med) / sigma) ** 2


def rate_significance(rate, var_rn, n_eff, k2, threshold, gain, t_int, ngroups):
    """z = (rate - T) / sigma_T of the mean dark rate against a threshold (module docstring).

    rate, var_rn, n_eff : from :func:`mean_dark_rate`;  k2 : :func:`noise_scale`
    threshold : float or (ny, nx) [DN/s];  gain [e-/DN];  t_int [s];  ngroups : int
    Returns float64 (ny, nx), NaN without a rate.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        var = k2 * (var_rn + poisson_slope_variance(threshold, gain, t_int, ngroups) / n_eff)
        return (rate - threshold) / np.sqrt(var)


def rate_detection_limit(threshold, var_rn, n_eff, k2, gain, t_int, ngroups, z_alpha, z_beta):
    """True rate [DN/s] flagged with probability Phi(z_beta): solves
    ``r = T + z_alpha sigma(T) + z_beta sigma(r)``, sigma(x)^2 = k2 (var_rn + P(x) / n_eff)."""
    def sigma(x):
        return np.sqrt(k2 * (var_rn + poisson_slope_variance(x, gain, t_int, ngroups) / n_eff))

    base = threshold + z_alpha * sigma(threshold)
    r = base + z_beta * sigma(threshold)
    for _ in range(50):
        r = base + z_beta * sigma(r)
    return float(r)


def hot_warm(z_hot, z_warm, z_alpha, n_saturated=None, n_ints=None, saturated_fraction=0.5):
    """HOT and WARM maps from the significances (rules in the module docstring).

    z_hot, z_warm : float (ny, nx) from :func:`rate_significance`;  z_alpha : float
    n_saturated : int (ny, nx) integrations without slope because of saturation (or None)
    n_ints : int  integrations in all
    Returns hot, warm : bool (ny, nx)
    """
    with np.errstate(invalid="ignore"):
        hot = np.asarray(z_hot) > z_alpha
        if n_saturated is not None:
            hot |= np.asarray(n_saturated) > saturated_fraction * n_ints
        warm = (np.asarray(z_warm) > z_alpha) & ~hot
    return hot, warm


def saturated_count(slopes, dq):
    """Integrations without a slope because the pixel saturated (NaN slope with DQ SATURATED)."""
    return (~np.isfinite(slopes) & ((np.asarray(dq) & dqflags.SATURATED) != 0)).sum(axis=0)


def saturated_set(n_saturated, active, n_ints, saturated_fraction=0.5, set_fraction=0.5):
    """Pixels the saturation rule would call HOT, and whether they make the exposure set unusable.

    n_saturated : int (ny, nx) from :func:`saturated_count`;  active : bool (ny, nx)
    n_ints : int  integrations in all
    Returns saturated : bool (ny, nx) (active, saturated in more than ``saturated_fraction`` of
    the integrations), fraction : float (of the active pixels; NaN without any), unusable : bool
    (fraction > ``set_fraction``).
    """
    saturated = np.asarray(active) & (np.asarray(n_saturated) > saturated_fraction * n_ints)
    nact = int(np.count_nonzero(active))
    fraction = float(np.count_nonzero(saturated) / nact) if nact else float("nan")
    return saturated, fraction, bool(fraction > set_fraction)


def cds_variance(cds, gain, sigma=3.0, maxiters=3):
    """White CDS variance per pixel from a stack of CDS pairs, Poisson variance removed.

    Parameters
    ----------
    cds : float32 (npairs, ny, nx) [DN]  (:func:`detcal.reffiles.readnoise.cds_frames`), NaN excluded
    gain : float or (ny, nx) [e-/DN]
    sigma, maxiters : per-pixel clipping (the std is corrected by
        :func:`detcal.analysis.robust.clip_bias_factor`)

    Returns
    -------
    dict of (ny, nx): ``var`` float64 [DN^2] clipped variance - Poisson variance (>= 0; NaN with
    fewer than 3 pairs), ``poisson`` float64 [DN^2] = max(clipped mean, 0) / gain, ``count``
    int32 pairs kept
    """
    st = robust.sigma_clipped_stats(cds, sigma=sigma, maxiters=maxiters, ddof=1)
    std = st["std"] / clip_bias_factor(sigma, maxiters)
    poisson = np.maximum(st["mean"], 0.0) / np.asarray(gain, np.float64)
    var = np.where(st["count"] >= 3, np.maximum(std ** 2 - poisson, 0.0), np.nan)
    return {"var": var, "poisson": np.where(np.isfinite(var), poisson, np.nan), "count": st["count"]}


def neighbour_jumps(groupdq):
    """bool (ngroups, ny, nx): JUMP_DET in the pixel or in any of its 8 neighbours.

    The jump step flags the 4 nearest neighbours of strong jumps only; a cosmic ray's share in a
    diagonal neighbour (or under the neighbour threshold) stays unflagged there and would make
    the pixel look noisy. groupdq : uint8 (ngroups, ny, nx).
    """
    j = (np.asarray(groupdq) & _JUMP) != 0
    out = j.copy()
    out[:, 1:, :] |= j[:, :-1, :]
    out[:, :-1, :] |= j[:, 1:, :]
    rows = out.copy()
    out[:, :, 1:] |= rows[:, :, :-1]
    out[:, :, :-1] |= rows[:, :, 1:]
    return out


def noisy_pixels(var, select, z_alpha, z_beta, min_ratio=1.2, poisson=None, count=None):
    """UNRELIABLE_SLOPE from the population of ``t = var^(1/3)`` (module docstring).

    Parameters
    ----------
    var : float (ny, nx) [DN^2] from :func:`cds_variance`;  select : bool (ny, nx) the population
        (pixels whose Poisson variance exceeds 10 % of the median ``var`` are left out of it)
    z_alpha, z_beta : significance threshold and the z of the detection probability
    min_ratio : a flagged pixel's CDS noise is also at least this factor over the median
    poisson, count : (ny, nx) or None   Poisson variance [DN^2] and pairs n of each pixel. Under
        the null hypothesis (normal read noise, ``v = c^3``) the estimation noise of a pixel's
        ``t`` is ``c^-2 (c^3 + P) sqrt(2/(n-1)) / 3`` (delta method): larger for a pixel with
        Poisson variance P (hot pixels are not noisy for their shot noise) or with fewer pairs
        (e.g. next to a saturating pixel, whose saturation flags grow into its neighbours). Its
        width is that plus the population's width without the estimation noise at its median
        n, in quadrature.

    Returns dict: ``noisy`` bool (ny, nx), ``score`` float64 (ny, nx), ``centre``, ``width`` of t,
    ``median_noise`` [DN] (median CDS noise of the population), ``limit_factor`` (noise factor
    of a pixel without Poisson variance detected with probability Phi(z_beta)).
    """
    var = np.asarray(var, np.float64)
    t = np.cbrt(var)
    sel = np.asarray(select) & np.isfinite(t)
    if poisson is not None and sel.any():
        with np.errstate(invalid="ignore"):
            sel &= np.asarray(poisson) <= 0.1 * np.median(var[sel])
    vals = t[sel]
    if vals.size < 3:
        nan = float("nan")
        return {"noisy": np.zeros(t.shape, bool), "score": np.full(t.shape, np.nan), "centre": nan,
                "width": nan, "median_noise": nan, "limit_factor": nan}
    centre = float(np.median(vals))
    width = mad_sigma(vals)
    w = np.full(t.shape, width)
    if poisson is not None and count is not None:
        n = np.asarray(count, np.float64)
        # estimation noise of t at the population's typical pair count, and the rest (the
        # pixel-to-pixel spread of read noise); each pixel: the rest + its own estimation noise
        est_typ = centre * np.sqrt(2.0 / max(1.0, float(np.median(n[sel])) - 1.0)) / 3.0
        rest2 = max(width ** 2 - est_typ ** 2, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = (centre ** 3 + np.nan_to_num(poisson)) * np.sqrt(2.0 / (n - 1.0)) / (3.0 * centre ** 2)
            w = np.where(np.isfinite(est) & (n > 1), np.sqrt(rest2 + est ** 2), width)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (t - centre) / w
        noisy = (score > z_alpha) & (t >= centre * min_ratio ** (2.0 / 3.0))
    low = centre - z_beta * width
    need = max(centre + z_alpha * width, centre * min_ratio ** (2.0 / 3.0))
    limit = (need / low) ** 1.5 if low > 0 else float("inf")
    return {"noisy": noisy, "score": score, "centre": centre, "width": width,
            "median_noise": centre ** 1.5, "limit_factor": float(limit)}


def jump_classes(groupdq, min_jumps=10, early_fraction=0.25, jump_ratio=5.0):
    """RC-like and telegraph-like pixels of one integration from its jump flags.

    Parameters
    ----------
    groupdq : uint8 (ngroups, ny, nx)
    min_jumps : int            JUMP_DET groups needed for either class
    early_fraction : float     the early part is the first ``ceil(early_fraction * ngroups)``
                               groups (at least 1, at most ngroups - 1)
    jump_ratio : float         early jump rate / late jump rate for RC-like

    Returns
    -------
    rc_like, telegraph_like : bool (ny, nx);  n_jumps : int (ny, nx)
    """
    g = np.asarray(groupdq)
    ngroups = g.shape[0]
    jump = (g & _JUMP) != 0
    n = jump.sum(axis=0)
    n_early = int(min(max(1, np.ceil(early_fraction * ngroups)), max(1, ngroups - 1)))
    early = jump[:n_early].sum(axis=0)
    late = n - early
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (early / n_early) / (late / max(1, ngroups - n_early))
    many = n >= min_jumps
    rc = many & (ratio >= jump_ratio)
    return rc, many & ~rc, n


def flat_ramp(data, groupdq=None, ptp=0.0):
    """True where a ramp of one integration does not respond: max - min over groups <= ``ptp``.

    data : float32 (ngroups, ny, nx) [DN];  groupdq ignored (a dead pixel's groups are all kept).
    """
    d = np.asarray(data)
    return (d.max(axis=0) - d.min(axis=0)) <= ptp


def assemble(shape, reference, flags, do_not_use, inherited=None):
    """The MASK DQ: type bits (active pixels), DO_NOT_USE for ``do_not_use`` types, REFERENCE_PIXEL.

    Parameters
    ----------
    shape : (ny, nx);  reference : bool (ny, nx)
    flags : dict type name (:data:`TYPES`) -> bool (ny, nx)
    do_not_use : iterable of type names
    inherited : uint32 (ny, nx) or None   flags kept for unmeasured pixels (OR-ed, active only)

    Returns
    -------
    uint32 (ny, nx)
    """
    dq = np.zeros(shape, np.uint32)
    dnu = {t.lower() for t in do_not_use}
    unknown = dnu - set(TYPES)
    if unknown:
        raise ValueError(f"unknown do_not_use type(s) {sorted(unknown)}; known: {sorted(TYPES)}")
    for name, mask in flags.items():
        bits = TYPES[name] | (dqflags.DO_NOT_USE if name in dnu else 0)
        dq[mask & ~reference] |= np.uint32(bits)
    if inherited is not None:
        keep = np.uint32(~dqflags.REFERENCE_PIXEL & 0xFFFFFFFF)
        dq[~reference] |= np.asarray(inherited, np.uint32)[~reference] & keep
    dq[reference] = np.uint32(dqflags.REFERENCE_PIXEL)
    return dq


# --------------------------------------------------------------------------------------------
# File level
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskParameters:
    """Parameters of the MASK builder (the rule's ``params.kwargs`` and their defaults).

    hot_threshold, warm_threshold : float   [e-/s] (1.0, 0.1; the simulator's truth uses 1.0 and
                                            0.05 (SW) / 0.2 (LW))
    false_flags : float          expected false flags per type (HOT, WARM, noisy) on the array:
                                 per-pixel false-alarm probability false_flags / active pixels (1)
    detect_probability : float   at which the detection limits are stated, in (0.5, 1) (0.95)
    saturated_fraction : float   saturated in more than this fraction of the integrations -> HOT (0.5)
    saturated_set_fraction : float  unless more than this fraction of the active pixels are: then
                                 the set is unusable there and they are not judged (0.5)
    noisy_min_ratio : float      a noisy pixel's CDS noise is also at least this factor over the
                                 population median (1.2): with many pairs per pixel the
                                 significance alone would flag pixels a few % noisier
    noisy_sigma, noisy_maxiters  per-pixel clipping of the CDS pairs [sigma, iterations] (3, 3)
    min_jumps, early_fraction, jump_ratio, rc_fraction, telegraph_fraction : jump rules
                                 (10, 0.25, 5, 0.8, 0.8; :func:`jump_classes`)
    dead_ptp, dead_fraction      [DN] peak-to-peak of a non-responding ramp (0: exactly constant),
                                 in at least this fraction of the integrations (0.75)
    do_not_use : tuple of type names ('hot', 'warm', 'noisy', 'rc', 'telegraph', 'dead') that
                                 also get DO_NOT_USE (hot, rc, telegraph, dead)
    keep_unmeasured : bool       pixels without any usable slope keep the input PIXELDQ (True)
    memory_mb : float            budget for the blocks of rows processed at a time [MB] (4000)
    """

    hot_threshold: float = 1.0
    warm_threshold: float = 0.1
    false_flags: float = 1.0
    detect_probability: float = 0.95
    saturated_fraction: float = 0.5
    saturated_set_fraction: float = 0.5
    noisy_min_ratio: float = 1.2
    noisy_sigma: float = 3.0
    noisy_maxiters: int = 3
    min_jumps: int = 10
    early_fraction: float = 0.25
    jump_ratio: float = 5.0
    rc_fraction: float = 0.8
    telegraph_fraction: float = 0.8
    dead_ptp: float = 0.0
    dead_fraction: float = 0.75
    do_not_use: tuple = ("hot", "rc", "telegraph", "dead")
    keep_unmeasured: bool = True
    memory_mb: float = 4000

    def check(self):
        """ValueError for a detection probability outside (0.5, 1)."""
        if not 0.5 < self.detect_probability < 1:
            raise ValueError(f"detect_probability must be in (0.5, 1), got {self.detect_probability}")

    def recorded(self):
        """The parameters written to the MASK's parameter record (all but memory_mb)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "memory_mb"}


@keyword_parameters(MaskParameters)
def make_mask(rateints_paths, jump_paths, out_path, *, gain_path, table_path=None, figure_path=None,
              pedigree="GROUND", author="detcal", useafter=None, descrip=None, raw_paths=None,
              parameters=None):
    """Make a bad-pixel MASK reference from darks of one configuration group.

    Read (blocks of rows: :func:`_slope_block`, :func:`_jump_block`) -> measure
    (:func:`rate_passes`) -> classify (:func:`classify_pixels`) -> table and write.

    Parameters
    ----------
    rateints_paths : list of str
        Per-integration slope files (CubeModel layout: SCI [DN/s], DQ, VAR_RNOISE (nints, ny, nx)) from
        ramps processed WITHOUT dark subtraction.
    jump_paths : list of str
        The jump-flagged ramps (RampModel layout; the DARK inputs): CDS pairs for the noisy
        pixels, JUMP_DET flags for RC and TELEGRAPH, the data for DEAD. May be empty (then none
        of these four is searched).
    out_path : str
        MASK reference (MaskModel layout: DQ uint32 + DQ_DEF).
    gain_path : str (GAIN reference path) or a number
        [e-/DN] to convert the thresholds to DN/s (per pixel with a GAIN reference).
    table_path, figure_path : str or None
        TSV per type (type, DQ flag and value, pixels, fraction of active pixels, DO_NOT_USE,
        per-pixel false-alarm probability, expected false flags on the array, detection limit
        and its unit) and a bar chart drawn from it.
    pedigree, author, useafter, descrip : reference keywords (see :func:`make_dark`).
    raw_paths : list of str or None
        The group's raw files: every active pixel of an output dead or flat in all of them
        (:func:`detcal.analysis.common.dead_amplifiers`) is DEAD (and DO_NOT_USE with 'dead').
    hot_threshold, warm_threshold, false_flags, detect_probability, saturated_fraction,
    saturated_set_fraction, noisy_min_ratio, noisy_sigma, noisy_maxiters, min_jumps, early_fraction, jump_ratio,
    rc_fraction, telegraph_fraction, dead_ptp, dead_fraction, do_not_use, keep_unmeasured,
    memory_mb
        :class:`MaskParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: ``path``, ``counts`` (type -> pixels), ``thresholds_DN_per_s`` (median over pixels),
    ``alpha``, ``z_alpha``, ``noise_scale_k2``, ``expected_false_flags`` (type -> number),
    ``detection_limits`` (hot/warm [e-/s], noisy [noise factor]), ``noisy_population``
    (median CDS noise [DN], centre/width of t), ``n_integrations``, ``n_jump_integrations``,
    ``unmeasured``, ``saturated_fraction_of_active`` (pixels saturated in more than
    ``saturated_fraction`` of the integrations / active pixels), ``saturated_set`` (True: not
    judged, not HOT) and ``note`` (why, or None).
    """
    parameters.check()
    rate_readers, jump_readers = [], []
    try:
        for path in rateints_paths:
            rate_readers.append(io.CubeReader(path, ("SCI", "DQ", "VAR_RNOISE"), rateints=True))
        if not rate_readers:
            raise InputError("<inputs>", "no rateints files given")
        jump_readers = [io.RampReader(path, "dq_init") for path in jump_paths]
        headers = [r.header for r in rate_readers + jump_readers]
        inventory.check_one_group(headers, [r.path for r in rate_readers + jump_readers], also=common.SHARED,
                                  what="mask")
        shapes = {r.shape[-2:] for r in rate_readers + jump_readers}
        if len(shapes) != 1:
            raise InputError(rate_readers[0].path, f"inputs disagree on the frame shape: {sorted(shapes)}")
        return _make_mask(rate_readers, jump_readers, out_path, parameters, gain_path, raw_paths,
                          (table_path, figure_path), (pedigree, author, useafter, descrip))
    finally:
        for r in rate_readers + jump_readers:
            r.close()


def _slope_block(rate_readers, sl, out):
    """First pass over rows ``sl`` of the slopes: mean rate, median VAR_RNOISE, saturated, measured."""
    sci = np.concatenate([r.read("SCI", rows=sl) for r in rate_readers])
    vrn = np.concatenate([r.read("VAR_RNOISE", rows=sl) for r in rate_readers])
    dq = np.concatenate([r.read("DQ", rows=sl) for r in rate_readers])
    out["rate"][sl] = mean_dark_rate(sci, vrn)["rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # pixels without any slope
        out["r_pix"][sl] = np.nanmedian(np.where(usable_slopes(sci, vrn), vrn, np.nan), axis=0)
    out["n_sat"][sl] = saturated_count(sci, dq)
    out["measured"][sl] = np.any(np.isfinite(sci) | ((dq & dqflags.SATURATED) != 0), axis=0)


def _jump_block(jump_ints, r0, r1, ny, pairs, fam, gain, p, out):
    """First pass over rows r0:r1 of the jump ramps: RC/telegraph/flat counts and CDS variance."""
    sl = slice(r0, r1)
    nx = out["rate"].shape[1]
    stack = np.full((len(pairs) * len(jump_ints), r1 - r0, nx), np.nan, np.float32) if pairs else None
    k = 0
    ext = slice(max(0, r0 - 1), min(ny, r1 + 1))          # one row more for the neighbours
    for reader, i in jump_ints:
        gdq_ext = reader.read("GROUPDQ", i, slice(None), ext)
        gdq = gdq_ext[:, r0 - ext.start:r1 - ext.start]
        rc, tel, _ = jump_classes(gdq, p.min_jumps, p.early_fraction, p.jump_ratio)
        out["n_rc"][sl] += rc
        out["n_tel"][sl] += tel
        data = reader.read("SCI", i, slice(None), sl)
        out["n_flat"][sl] += flat_ramp(data, ptp=p.dead_ptp)
        if pairs:
            near = neighbour_jumps(gdq_ext)[:, r0 - ext.start:r1 - ext.start]
            c = readnoise.cds_frames(data, np.where(near, gdq | _JUMP, gdq),
                                     *readnoise.SKIP[fam])[:len(pairs)]
            stack[k:k + len(c)] = c
            k += len(pairs)
        del gdq, gdq_ext, data
    if pairs:
        cv = cds_variance(stack, gain[sl], p.noisy_sigma, p.noisy_maxiters)
        out["cds_var"][sl], out["cds_pois"][sl], out["cds_count"][sl] = cv["var"], cv["poisson"], cv["count"]


def first_pass(rate_readers, jump_readers, gain, p):
    """Per-pixel maps of the first pass by blocks of rows (memory ``p.memory_mb``).

    Returns dict: ``rate`` [DN/s] (plain mean), ``r_pix`` (median VAR_RNOISE [(DN/s)^2]),
    ``n_sat``, ``measured``, ``cds_var`` [DN^2], ``cds_pois``, ``cds_count``, ``n_rc``,
    ``n_tel``, ``n_flat`` (over the jump integrations), ``rows`` (block length), ``pairs``,
    ``jump_ints``.
    """
    first = rate_readers[0]
    ny, nx = first.shape[1:]
    nrate = sum(r.shape[0] for r in rate_readers)
    jump_ints = [(r, i) for r in jump_readers for i in range(r.shape[0])]
    ngroups = max([r.shape[1] for r in jump_readers], default=0)
    pairs, fam = [], None
    if jump_readers:
        fam = family(keywords.value(first.header, "INSTRUME", first.path))
        pairs = readnoise.pair_groups(ngroups, *readnoise.SKIP[fam])
    npairs = len(pairs) * len(jump_ints)
    per_pixel = nrate * 4 * 3 * 4 + ngroups * 5 * 2 + npairs * 4 + 64
    avail_mb = p.memory_mb - 300 - 1.25 * robust.STATS_WORK_MB
    rows = io.block_size(avail_mb, per_pixel, (ny, nx)) if avail_mb > 0 else 1
    out = {"rate": np.full((ny, nx), np.nan), "r_pix": np.full((ny, nx), np.nan),
           "n_sat": np.zeros((ny, nx), np.int32), "measured": np.zeros((ny, nx), bool),
           "cds_var": np.full((ny, nx), np.nan), "cds_pois": np.full((ny, nx), np.nan),
           "cds_count": np.zeros((ny, nx), np.int32), "n_rc": np.zeros((ny, nx), np.int32),
           "n_tel": np.zeros((ny, nx), np.int32), "n_flat": np.zeros((ny, nx), np.int32)}
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        _slope_block(rate_readers, slice(r0, r1), out)
        _jump_block(jump_ints, r0, r1, ny, pairs, fam, gain, p, out)
    return {**out, "rows": rows, "pairs": pairs, "jump_ints": jump_ints}


def rate_passes(rate_readers, m, gain, warm_dn, active, t_int, ngroups_rate, p):
    """Second and third passes: the scatter scale k^2, then the mean dark rate without the
    integrations raised by unflagged cosmic rays.

    m : :func:`first_pass` maps (``rate`` is replaced by the final mean rate). Returns dict
    ``k2``, ``var_rn``, ``n_eff``, ``n_used``, ``n_rejected``, ``z_reject``, ``normal``.
    """
    ny, nx = m["rate"].shape
    rate, rows = m["rate"], m["rows"]
    nact = int(active.sum())
    nrate = sum(r.shape[0] for r in rate_readers)
    with np.errstate(invalid="ignore"):
        normal = active & m["measured"] & (rate < warm_dn)
    rn_scale = read_noise_scale(m["r_pix"], m["cds_var"] if m["pairs"] else None, normal)

    def slopes_and_variance(sl):
        sci = np.concatenate([r.read("SCI", rows=sl) for r in rate_readers])
        vrn = np.concatenate([r.read("VAR_RNOISE", rows=sl) for r in rate_readers]) * rn_scale[sl]
        pois = poisson_slope_variance(np.nan_to_num(rate[sl]), gain[sl], t_int, ngroups_rate)
        return sci, vrn, pois

    chi2, n_used = np.full((ny, nx), np.nan), np.zeros((ny, nx), np.int32)
    # second pass: the population's scale k^2 of the scatter between integrations
    for r0 in range(0, ny, rows):
        sl = slice(r0, min(ny, r0 + rows))
        sci, vrn, pois = slopes_and_variance(sl)
        chi2[sl] = scatter_chi2(sci, vrn, rate[sl], pois)
        n_used[sl] = usable_slopes(sci, vrn).sum(axis=0)
    k2 = noise_scale(chi2, n_used, normal)
    if not np.isfinite(k2):
        log.warning("mask: no pixel has two integrations with a slope: the dark-rate errors are "
                    "VAR_RNOISE + Poisson alone (noise scale k^2 = 1)")
        k2 = 1.0
    # third pass: integrations raised by unflagged cosmic rays out, then the mean dark rate
    _, z_reject = false_alarm_z(p.false_flags, nact * max(1, nrate))
    var_rn, n_eff = np.full((ny, nx), np.nan), np.zeros((ny, nx))
    n_rejected = np.zeros((ny, nx), np.int32)
    for r0 in range(0, ny, rows):
        sl = slice(r0, min(ny, r0 + rows))
        sci, vrn, pois = slopes_and_variance(sl)
        use, n_rejected[sl] = reject_high_slopes(sci, vrn, usable_slopes(sci, vrn), k2, pois, z_reject)
        mr = mean_dark_rate(sci, vrn, use)
        rate[sl], var_rn[sl], n_eff[sl], n_used[sl] = mr["rate"], mr["var_rn"], mr["n_eff"], mr["n"]
        del sci, vrn, use
    return {"k2": k2, "var_rn": var_rn, "n_eff": n_eff, "n_used": n_used, "n_rejected": n_rejected,
            "z_reject": z_reject}


def classify_pixels(m, r, gain, thresholds_dn, active, nrate, t_int, ngroups_rate, p):
    """HOT/WARM (rate significance), noisy (CDS variance), RC/TELEGRAPH (jumps), DEAD (flat).

    m : :func:`first_pass` maps; r : :func:`rate_passes` results; thresholds_dn : (hot, warm)
    [DN/s] per pixel. Returns dict ``flags`` (type -> bool (ny, nx)), ``limits``, ``expected``,
    ``alpha``, ``z_alpha``, ``k2_pop``, ``noisy_population`` (:func:`noisy_pixels`), ``tested``.
    """
    rate, var_rn, n_eff, k2 = m["rate"], r["var_rn"], r["n_eff"], r["k2"]
    ny, nx = rate.shape
    hot_dn, warm_dn = thresholds_dn
    nact = int(active.sum())
    alpha, z_alpha = false_alarm_z(p.false_flags, nact)
    z_beta = float(stats.norm.ppf(p.detect_probability))
    # diagnostic only: the spread of the mean rates over the population also holds the true
    # spread of normal dark rates (on long LW ramps many times the noise), so it is not the error
    tested = active & np.isfinite(rate)
    k2_pop = population_scale(rate, var_rn, n_eff, tested, gain, t_int, ngroups_rate)
    z_hot = rate_significance(rate, var_rn, n_eff, k2, hot_dn, gain, t_int, ngroups_rate)
    z_warm = rate_significance(rate, var_rn, n_eff, k2, warm_dn, gain, t_int, ngroups_rate)
    hot, warm = hot_warm(z_hot, z_warm, z_alpha, m["n_sat"], nrate, p.saturated_fraction)
    g_med = float(np.nanmedian(gain[active])) if nact else float("nan")
    typical = dict(var_rn=float(np.nanmedian(var_rn[tested])) if tested.any() else float("nan"),
                   n_eff=float(np.median(n_eff[tested])) if tested.any() else float("nan"),
                   k2=k2, gain=g_med, t_int=t_int, ngroups=ngroups_rate, z_alpha=z_alpha,
                   z_beta=z_beta)
    limits = {"hot": rate_detection_limit(p.hot_threshold / g_med, **typical) * g_med,
              "warm": rate_detection_limit(p.warm_threshold / g_med, **typical) * g_med}
    population = active & np.isfinite(m["cds_var"])
    nz = noisy_pixels(m["cds_var"], population, z_alpha, z_beta, p.noisy_min_ratio, m["cds_pois"],
                      m["cds_count"])
    limits["noisy"] = nz["limit_factor"] if m["pairs"] else float("nan")
    expected = {"hot": alpha * int(tested.sum()), "warm": alpha * int(tested.sum()),
                "noisy": alpha * int(population.sum())}
    nj = len(m["jump_ints"])
    rc = (m["n_rc"] > p.rc_fraction * nj) if nj else np.zeros((ny, nx), bool)
    tel = ((m["n_tel"] > p.telegraph_fraction * nj) & ~rc) if nj else np.zeros((ny, nx), bool)
    dead = (m["n_flat"] >= p.dead_fraction * nj) if nj else np.zeros((ny, nx), bool)
    flags = {"hot": hot, "warm": warm, "noisy": nz["noisy"] & active, "rc": rc, "telegraph": tel,
             "dead": dead}
    return {"flags": flags, "limits": limits, "expected": expected, "alpha": alpha, "z_alpha": z_alpha,
            "k2_pop": k2_pop, "noisy_population": nz, "tested": tested}


def mask_table(flags, dq, active, reference, unmeasured, inherited, c, do_not_use, saturated=None):
    """The MASK table: one row per type, DO_NOT_USE (any), unmeasured and reference pixels.

    c : :func:`classify_pixels` results (alpha, expected false flags, detection limits).
    saturated : bool (ny, nx) or None   pixels of an unusable, saturated exposure set
    (:func:`saturated_set`): a row ``saturated set (not judged)`` before the unmeasured row.
    """
    nact = int(active.sum())
    dnu = {t.lower() for t in do_not_use}
    units = {"hot": "e-/s", "warm": "e-/s", "noisy": "x median CDS noise"}
    nan = float("nan")
    rows_t = []
    for name, bit in TYPES.items():
        n = int(np.count_nonzero(flags[name] & active))
        rows_t.append({"type": name, "dq_flag": dqflags.names(bit)[0], "dq_value": int(bit),
                       "npix": n, "fraction_of_active": n / nact if nact else nan,
                       "do_not_use": name in dnu,
                       "false_alarm_probability": c["alpha"] if name in c["expected"] else nan,
                       "expected_false_flags": c["expected"].get(name, nan),
                       "detection_limit": c["limits"].get(name, nan),
                       "detection_limit_unit": units.get(name, "")})
    extra = {"false_alarm_probability": nan, "expected_false_flags": nan, "detection_limit": nan,
             "detection_limit_unit": ""}
    n_dnu = int(np.count_nonzero(dq & dqflags.DO_NOT_USE))
    rows_t.append({"type": "do_not_use (any)", "dq_flag": "DO_NOT_USE", "dq_value": dqflags.DO_NOT_USE,
                   "npix": n_dnu, "fraction_of_active": n_dnu / nact if nact else nan,
                   "do_not_use": True, **extra})
    if saturated is not None:
        n_sat = int(np.count_nonzero(saturated))
        rows_t.append({"type": "saturated set (not judged)", "dq_flag": "", "dq_value": 0, "npix": n_sat,
                       "fraction_of_active": n_sat / nact if nact else nan, "do_not_use": False, **extra})
    rows_t.append({"type": "unmeasured (inputs' flags kept)" if inherited is not None else "unmeasured",
                   "dq_flag": "", "dq_value": 0, "npix": int(unmeasured.sum()),
                   "fraction_of_active": int(unmeasured.sum()) / nact if nact else nan,
                   "do_not_use": False, **extra})
    rows_t.append({"type": "reference", "dq_flag": "REFERENCE_PIXEL",
                   "dq_value": dqflags.REFERENCE_PIXEL, "npix": int(reference.sum()),
                   "fraction_of_active": nan, "do_not_use": False, **extra})
    return pd.DataFrame(rows_t)


def _finite(x):
    return float(x) if np.isfinite(x) else 0.0


def _mask_header(readers, keywords_, label, nrate, nfiles, c, k2, p):
    """The MASK header: reference keywords and the BP* keywords of this build."""
    pedigree, author, useafter, descrip = keywords_
    descrip = descrip or (f"{label} bad pixels from darks: {nrate} integrations, "
                          f"{nfiles} files (detcal {__version__})")
    header = common.header_for("MASK", readers, descrip, author, pedigree, useafter)
    header["BPHOT"] = (float(p.hot_threshold), "[e-/s] HOT threshold")
    header["BPWARM"] = (float(p.warm_threshold), "[e-/s] WARM threshold")
    header["BPFALSE"] = (float(p.false_flags), "expected false flags per type on the array")
    header["BPALPHA"] = (float(c["alpha"]), "per-pixel false-alarm probability")
    header["BPZ"] = (float(c["z_alpha"]), "[sigma] one-sided significance threshold")
    header["BPK2"] = (_finite(k2), "dark-rate error scale^2 (between integrations)")
    header["BPK2POP"] = (_finite(c["k2_pop"]), "same from the spread of mean rates (check)")
    header["BPHLIM"] = (_finite(c["limits"]["hot"]), "[e-/s] HOT detection limit (median pixel)")
    header["BPWLIM"] = (_finite(c["limits"]["warm"]), "[e-/s] WARM detection limit (median pixel)")
    header["BPNLIM"] = (_finite(c["limits"]["noisy"]), "noisy detection limit [x median CDS noise]")
    header["BPPDET"] = (float(p.detect_probability), "detection probability of the limits")
    header["BPNINTS"] = (int(nrate), "rateints integrations")
    return header


def _dead_outputs(dead, active, geom, raw_paths):
    """DEAD also every active pixel of an output dead or flat in all the raw files."""
    # a dead or flat output: flat in the raw files, but no longer in the jump ramps once refpix
    # has spread the side reference pixels' correction into it
    from ..analysis.common import dead_amplifiers
    dead_amps = dead_amplifiers(raw_paths)
    if dead_amps:
        log.warning("mask: dead or flat amplifier(s) %s flagged DEAD",
                    ", ".join(str(k + 1) for k in dead_amps))
        dead = dead | (active & np.isin(geom.amplifier_map(), dead_amps))
    return dead


def _make_mask(rate_readers, jump_readers, out_path, p, gain_path, raw_paths, outputs, keywords_):
    first = rate_readers[0]
    for r in rate_readers + jump_readers:
        if str(r.header.get("S_DARK", "")).upper() == "COMPLETE":
            raise InputError(r.path, "S_DARK=COMPLETE: hot and warm pixels are found in slopes "
                                     "that still hold their dark current (process without dark_current)")
    ny, nx = first.shape[1:]
    gain = common.gain_map(gain_path, first)
    hot_dn = np.float32(p.hot_threshold) / gain
    warm_dn = np.float32(p.warm_threshold) / gain
    geom = common.geometry_of(first)
    masks = common.regions(geom)
    reference, active = masks["reference"], masks["active"]
    nrate = sum(r.shape[0] for r in rate_readers)
    ngroups_rate = keywords.value(first.header, "NGROUPS", first.path)
    t_int = (ngroups_rate - 1) * keywords.value(first.header, "TGROUP", first.path)

    m = first_pass(rate_readers, jump_readers, gain, p)
    sat, sat_frac, unusable = saturated_set(m["n_sat"], active, nrate, p.saturated_fraction,
                                            p.saturated_set_fraction)
    note = None
    if unusable:    # a light leak or a wrong bias, not hot pixels: those pixels are not judged
        kept = ", inputs' flags kept" if p.keep_unmeasured and jump_readers else ""
        note = (f"exposure set unusable: {100 * sat_frac:.0f} % of the active pixels saturated in more "
                f"than {100 * p.saturated_fraction:g} % of the integrations (limit "
                f"{100 * p.saturated_set_fraction:g} %; light leak or wrong bias?): not flagged HOT, "
                f"not judged (unmeasured{kept})")
        log.warning("mask: %s", note)
        m["n_sat"] = np.where(sat, 0, m["n_sat"])
        m["measured"] &= ~sat
    r = rate_passes(rate_readers, m, gain, warm_dn, active, t_int, ngroups_rate, p)
    c = classify_pixels(m, r, gain, (hot_dn, warm_dn), active, nrate, t_int, ngroups_rate, p)
    flags = c["flags"]
    if raw_paths:
        flags["dead"] = _dead_outputs(flags["dead"], active, geom, raw_paths)
    if unusable:    # no type from these data (a saturated ramp is also flat: DEAD with dead_ptp > 0)
        flags = {name: f & ~sat for name, f in flags.items()}
    unmeasured = active & ~m["measured"]
    inherited = None
    if p.keep_unmeasured and unmeasured.any() and jump_readers:
        inherited = np.where(unmeasured, jump_readers[0].read("PIXELDQ"), 0).astype(np.uint32)
    dq = assemble((ny, nx), reference, flags, p.do_not_use, inherited)
    table = mask_table(flags, dq, active, reference, unmeasured, inherited, c, p.do_not_use,
                       sat if unusable else None)

    label = common.config_label(first.header)
    readers_for_header = rate_readers + jump_readers
    header = _mask_header(readers_for_header, keywords_, label, nrate, len(rate_readers), c, r["k2"], p)
    if unusable:
        header["BPSATFR"] = (float(sat_frac), "saturated fraction: set unusable")
        header["BPNOTE"] = note
    params = p.recorded()
    params["gain"] = os.path.basename(gain_path) if isinstance(gain_path, str) else gain_path
    io.write_reference(out_path, "MASK", {"DQ": dq}, header, step="detcal.reffiles.make_mask",
                       inputs=[rd.path for rd in readers_for_header], params=params)
    table_path, figure_path = outputs
    if table_path:
        common.write_table(table, table_path)
    if figure_path:
        plot_mask_table(table, figure_path, f"{label}: bad pixels from {nrate} dark integrations")
    counts = dict(zip(table["type"], (int(n) for n in table["npix"])))
    log.info("mask: wrote %s; %s; alpha %.3g (z %.2f), k^2 %.3f, detection limits %s", out_path,
             counts, c["alpha"], c["z_alpha"], r["k2"], c["limits"])
    nz = c["noisy_population"]
    return {"path": str(out_path), "counts": counts,
            "thresholds_DN_per_s": {"hot": float(np.nanmedian(hot_dn)), "warm": float(np.nanmedian(warm_dn))},
            "alpha": c["alpha"], "z_alpha": c["z_alpha"], "noise_scale_k2": r["k2"],
            "noise_scale_k2_between": r["k2"], "noise_scale_k2_population": c["k2_pop"],
            "z_reject": r["z_reject"],
            "integrations_rejected": int(r["n_rejected"][active].sum()),
            "expected_false_flags": c["expected"], "detection_limits": c["limits"],
            "noisy_population": {"median_cds_noise_DN": nz["median_noise"], "centre": nz["centre"],
                                 "width": nz["width"]},
            "n_integrations": nrate, "n_jump_integrations": len(m["jump_ints"]),
            "unmeasured": int(unmeasured.sum()), "saturated_fraction_of_active": sat_frac,
            "saturated_set": unusable, "note": note}


def plot_mask_table(table, path, title=""):
    """Horizontal bar chart of the pixels per flag type (from the :func:`make_mask` table)."""
    from ..plots import plt, save_figure
    fig, ax = plt.subplots(figsize=(8, 4.8))
    y = np.arange(len(table))
    counts = table["npix"].to_numpy(float)
    colors = ["tab:red" if d else "tab:blue" for d in table["do_not_use"]]
    ax.barh(y, np.maximum(counts, 0.8), color=colors)
    for k, c in enumerate(counts):
        ax.text(max(c, 0.8) * 1.1, k, f"{int(c)}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{t} ({f})" if f else t for t, f in zip(table["type"], table["dq_flag"])],
                  fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("pixels [count] (red: DO_NOT_USE)")
    ax.invert_yaxis()
    save_figure(fig, path, dpi=90, title=title)
