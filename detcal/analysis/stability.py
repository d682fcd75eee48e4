"""Stability and trending across the exposures of one configuration group, and a JWQL-style
comparison of the slope images with a baseline.

Quantities, per exposure and per amplifier (``'1'..'N'`` and ``'all'``), each measured on every
integration (the exposure value is the mean of its integrations):

* ``dark``: 3-sigma-clipped mean slope [DN/s] of active pixels without DO_NOT_USE (rateints);
* ``cds_noise``: CDS noise [DN], the MAD-based sigma of the independent group-pair differences
  ``data[2k+1] - data[2k]`` (an odd last group dropped) of active pixels, pairs with JUMP_DET,
  SATURATED or DO_NOT_USE in either group and DO_NOT_USE pixels excluded (jump-step ramps:
  superbias- and reference-pixel-corrected). CDS convention: the std of a difference, not
  divided by sqrt(2);
* ``bias``: 3-sigma-clipped mean of group 1 [DN] of active pixels (raw ``uncal`` files or any
  product before the superbias step);
* ``hot_pixels``: number of active pixels with a slope above ``hot_threshold`` [e-/s, with the
  GAIN reference; DN/s without one].

Drift test (per quantity and amplifier, :func:`trend_test`): a linear slope of the exposure
means vs EXPSTART [per day], tested against an error model with two terms: the within-exposure
error (scatter of the integrations, ``s_w / sqrt(n_e)``, about their exposure's mean and the
mean pattern of integration number, which RSCD or reset effects make systematic; for
``hot_pixels`` at least Poisson) and the exposure-to-exposure scatter that the integrations of one exposure share and
their scatter cannot show (common-mode 1/f, amplifier offsets, bias changes at a reset). The
second is measured from the exposures' own residuals about the fit: the errors are scaled by
the Birge ratio ``sqrt(chi2 / (k - 2))`` when it exceeds 1, and the slope's t statistic is
referred to Student's t with ``k - 2`` dof (exact for equal integrations per exposure whatever
the exposure-to-exposure scatter; conservative when the within-exposure floor applies). At least
3 exposures are needed. The excess scatter itself (F-test of ``chi2 / (k - 2)`` against
F(k - 2, dof_w), and its size ``tau``) is reported, not flagged: a stationary detector may
scatter more between exposures than within them without drifting.

Multiple testing: the slope tests of all quantities and amplifiers of a group (4 quantities x
(N outputs + whole array): 20 for 4 outputs) form one family, controlled with Holm-Bonferroni at
family-wise level ``alpha`` (default :data:`ALPHA` = 0.05). Family-wise control, not a false
discovery rate (Benjamini-Hochberg), because the verdict is the single "any drift" flag of a
group: its false-alarm probability on a stationary group must be bounded, and Holm bounds it
under any dependence between the tests (the whole-array and per-amplifier values share pixels).
A test is flagged when its Holm-adjusted p-value is below ``alpha``; ``any_drift`` when any is.

Rates (synthetic groups of 4 quantities x (4 amplifiers + whole array), 2 integrations per
exposure, exposure-to-exposure scatter 0-3x the within-exposure error; ``tests/test_truth_stability.py``
and ``benchmarks/stability_sweep.py`` for the pipeline): "any drift" on stationary groups 2.7 %
(6 exposures) and 0.7 % (5 exposures) at alpha 0.05; a linear drift of 3 per-exposure errors per
exposure in one quantity is flagged in ~100 % of groups with 6 exposures but only ~70 % with 5
(85 % / 26 % at alpha 0.01): the slope error has ``k - 2`` dof, so trending needs >= 6 exposures.
Through the pipeline (``benchmarks/stability_sweep.py``: NIR 4 outputs 10.7 s frames, NIR 1
output 1 s frames, NIR BRIGHT2, MIRI FAST; 6 exposures x 2 integrations, 10 DN rms bias jitter
per exposure): "any drift" on 0 of 52 stationary groups (the previous within-exposure-only test
without multiple-testing control: 4 of 52), on 64 of 64 groups with a dark or bias drift of 3
per-exposure errors per exposure; whole-array slopes within 1 / 2 error bars of the truth in
68 / 98 % (dark) and 79 / 96 % (bias) of 116 groups.

Memory: the slopes are read one integration at a time and the slope images by blocks of rows
(:class:`detcal.analysis.darkcurrent.RateGroup`, ``memory_mb``), the ramps (CDS noise) and raw
files (bias, group 1 only) one integration at a time: nothing grows with the number of
integrations but per-integration scalars.

Baseline comparison (JWQL dark monitor): the per-pixel clipped mean and std of the slopes over
all integrations are compared with a baseline in the slope-image format
(:func:`detcal.analysis.common.write_slope_images`; e.g. the ``image_fits`` of a previous
dark-current run, or ``baseline_output`` of this function). JWQL's ratio tests, each with a
significance requirement (slopes from a few integrations make plain ratios of near-zero dark
rates meaningless):

* new hot: ``mean / baseline_mean > 2`` and ``mean - baseline_mean > nsigma * e``;
* new dead: ``mean / baseline_mean < 0.1`` and ``baseline_mean - mean > nsigma * e``;
* newly noisy: ``std / baseline_std > 1.5`` and the F-test of the two variances beyond the
  one-sided ``nsigma`` normal tail probability;

with ``e = sqrt(s^2 / n + s_b^2 / n_b)`` and ``s`` the larger of the pixel's std and the
amplifier's median std (a std from few integrations is itself noisy).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from scipy import stats as sstats

from .. import dqflags, inventory, io, tables
from ..errors import InputError
from ..parameters import keyword_parameters
from . import common, robust
from .darkcurrent import RateGroup

_ONE_SIGMA = float(sstats.norm.cdf(1.0))

#: Family-wise false-alarm probability of the "any drift" flag of a group (Holm-Bonferroni).
ALPHA = 0.05

#: Unit of each quantity (its drift slope is in this unit per day).
UNITS = {"dark": "DN/s", "cds_noise": "DN", "bias": "DN", "hot_pixels": "count"}

QUANTITIES = {
    "dark": ("dark_DN_per_s", "mean dark rate [DN/s]"),
    "cds_noise": ("cds_noise_DN", "CDS noise [DN]"),
    "bias": ("bias_DN", "bias level, group 1 [DN]"),
    "hot_pixels": ("hot_pixels", "hot pixels [count]"),
}

_BAD_PAIR = np.uint8(dqflags.JUMP_DET | dqflags.SATURATED | dqflags.DO_NOT_USE)

CONVENTIONS = {
    "dark": "3-sigma-clipped mean slope of active pixels without DO_NOT_USE, per integration [DN/s]",
    "cds_noise": "MAD-based sigma of independent group-pair differences (1-0, 3-2, ...) of active pixels; "
                 "pairs with JUMP_DET/SATURATED/DO_NOT_USE excluded; CDS convention (not / sqrt 2) [DN]",
    "bias": "3-sigma-clipped mean of group 1 of active pixels [DN]",
    "hot_pixels": "active pixels with slope > hot_threshold [e-/s with GAIN, else DN/s]",
    "exposure_value": "mean of the exposure's integrations; _err: total error (within-exposure error x "
                      "max(1, Birge ratio of the exposure means about the linear fit)); _err_within: "
                      "within-exposure scatter (about the exposure mean and the mean pattern of "
                      "integration number) / sqrt(n_integrations)",
    "drift_tests": "t-test (k - 2 dof) of the linear slope of the exposure means vs EXPSTART, error from the "
                   "within-exposure scatter and the exposures' residual scatter about the fit (the larger); "
                   "Holm-Bonferroni over all quantities and amplifiers of the group (family_size tests) at "
                   "family-wise alpha; flagged if p_slope_holm < alpha. Excess exposure-to-exposure scatter "
                   "(p_excess, excess_sigma) reported, not flagged",
    "time": "EXPSTART [MJD]; slopes in the quantity's unit per day (error: half-width of the 68.3 % "
            "Student-t interval, k - 2 dof), drift_over_span in its unit",
    "baseline": "new hot: ratio > 2; dead: ratio < 0.1; noisy: std ratio > 1.5; each also significant at nsigma",
    "numbering": "integrations and groups 1-based, pixel_row / pixel_column 0-based (science frame)",
}


# ----------------------------------------------------------------------------------------------
# Measurements (pure)
# ----------------------------------------------------------------------------------------------
def amplifier_cds_noise(data, groupdq, pixeldq, masks):
    """CDS noise of one integration per pixel selection.

    Parameters
    ----------
    data : float (ngroups, ny, nx) [DN]
    groupdq : uint8 (ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    masks : dict label -> bool (ny, nx)

    Returns
    -------
    dict label -> float [DN]: MAD-based sigma of the independent differences ``data[2k+1] -
    data[2k]`` (an odd last group dropped) over the selected pixels; pairs with JUMP_DET,
    SATURATED or DO_NOT_USE in either group, and DO_NOT_USE pixels, excluded. NaN with fewer
    than 2 groups.
    """
    ng = (data.shape[0] // 2) * 2
    if ng < 2:
        return {label: math.nan for label in masks}
    d = np.asarray(data[1:ng:2], np.float32) - np.asarray(data[0:ng:2], np.float32)
    ok = ((groupdq[1:ng:2] | groupdq[0:ng:2]) & _BAD_PAIR) == 0
    ok &= ((np.asarray(pixeldq) & dqflags.DO_NOT_USE) == 0)[None]
    return {label: robust.mad_sigma(d[ok & sel[None]]) for label, sel in masks.items()}


def amplifier_clipped_means(image, masks, sigma=3.0, maxiters=5):
    """dict label -> 3-sigma-clipped mean of ``image`` (ny, nx) over each selection."""
    return {label: robust.clipped_stats(image[sel], sigma, maxiters).mean for label, sel in masks.items()}


def hot_counts(image, masks, threshold):
    """dict label -> number of selected pixels with ``image > threshold`` (NaN never counts)."""
    hot = np.nan_to_num(np.asarray(image, np.float64), nan=-np.inf) > threshold
    return {label: int(np.count_nonzero(hot & sel)) for label, sel in masks.items()}


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (family-wise error control under any dependence).

    ``p_adj[(i)] = min(1, max_{j <= i} (m - j + 1) p[(j)])`` over the m finite p-values sorted
    ascending; NaN entries stay NaN and do not count in m. A test is rejected at family-wise
    level ``alpha`` when its adjusted p-value is below ``alpha``.

    Returns (float ndarray of adjusted p-values, m).
    """
    p = np.asarray(pvalues, np.float64)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        out[order] = adj
    return out, m


def within_exposure_scatter(vals, means, same):
    """(dof, sum of squares) of the integrations about their exposure means.

    vals : list of k 1-D arrays (finite values of each exposure);  means : (k,) their means;
    same : every exposure has the same complete integrations. Then integration number is a
    factor too (two-way additive model, dof ``(k - 1)(n - 1)``): integration i of every exposure
    shares a systematic offset (RSCD, reset anomaly, first-integration effects), which is not
    measurement noise. Otherwise the scatter about the exposure means pooled (dof ``sum(n_e - 1)``).
    """
    k = len(vals)
    n0 = vals[0].size if k else 0
    if same and k >= 2 and n0 >= 2:
        d = np.array(vals) - means[:, None]
        d -= d.mean(axis=0, keepdims=True)
        return int((k - 1) * (n0 - 1)), float(np.sum(d ** 2))
    n = np.array([v.size for v in vals], np.float64)
    return int(np.sum(n - 1)), float(sum(((v - v.mean()) ** 2).sum() for v in vals))


def weighted_line(t, m, w):
    """Weighted least-squares line of ``m`` vs ``t``: (slope, sum w (t - t_w)^2, residual
    variance of unit weight with k - 2 dof); slope and variance NaN when ``sxx <= 0``."""
    tw = float(np.sum(w * t) / w.sum())
    sxx = float(np.sum(w * (t - tw) ** 2))
    if sxx <= 0:
        return math.nan, sxx, math.nan
    mw = float(np.sum(w * m) / w.sum())
    b = float(np.sum(w * (t - tw) * (m - mw)) / sxx)
    resid = m - mw - b * (t - tw)
    return b, sxx, float(np.sum(w * resid ** 2) / (len(m) - 2))


def trend_test(times, values, poisson=False):
    """Drift test of one quantity measured on the integrations of several exposures.

    Error model: exposure mean ``m_e = a + b t_e + u_e + w_e``, with ``w_e`` the within-exposure
    error (variance ``s_w^2 / n_e``; for counts at least the mean count, Poisson) and ``u_e`` the
    exposure-to-exposure
    scatter (variance ``tau^2``) that the integrations of one exposure share and the within-exposure
    scatter cannot see (common-mode 1/f, amplifier offsets, bias changes at a reset, ...).
    ``s_w^2``: when every exposure has the same ``n`` integrations (all finite), the residual
    variance of the two-way additive model exposure + integration number, ``dof_w = (k - 1)
    (n - 1)``, because integration i of every exposure shares systematic offsets that are not
    noise (MIRI RSCD and reset anomaly, first-integration effects); otherwise the scatter about
    the exposure means pooled, ``dof_w = sum(n_e - 1)``.

    * Fit: least squares of ``m_e`` vs EXPSTART, weights ``n_e``; ``chi2 = sum n_e r_e^2 / s_w^2``
      (k - 2 dof); ``scale = max(1, sqrt(chi2 / (k - 2)))`` (Birge ratio, floored at 1).
    * Error of an exposure mean: ``s_w / sqrt(n_e) * scale`` (within-exposure error, inflated
      by the observed scatter of the exposures about the fit); slope standard error
      ``se = s_w / sqrt(sum n_e (t_e - t)^2) * scale``; the reported ``slope_err_per_day`` is
      the half-width of the 68.3 % Student-t interval, ``se * t_{k-2}(0.8413)``.
    * Drift test: ``slope / se`` (``slope_significance``) against Student's t with ``k - 2``
      dof (two-sided). With
      equal ``n_e`` the error is ``max(residual scatter, within error)`` and the t-test of the
      residual scatter is exact for any ``tau``, so the p-value is valid (conservative when the
      within-exposure floor applies). Needs ``k >= 3`` exposures.
    * Excess scatter (diagnostic, not a drift): ``F = chi2 / (k - 2)`` against F(k - 2, dof_w)
      (``p_excess``) and ``tau = sqrt(max(0, (chi2/(k-2) - 1)) * s_w^2 / mean(n_e))``.
    * Without within-exposure scatter (one integration per exposure): the residual scatter
      alone (``method = 'fit_residuals'``).

    Parameters
    ----------
    times : float (k,) [MJD], exposure start times
    values : list of k 1-D arrays, the quantity on each integration of each exposure
    poisson : bool, the quantity is a count (Poisson floor of the within-exposure variance)

    Returns
    -------
    dict: ``n_exposures``, ``used`` (indices of the exposures with values and a time), ``mean``
    (integration-weighted), ``exposure_means``, ``exposure_errors`` (total) and
    ``exposure_errors_within`` (k,), ``dof_within``, ``within_sigma`` (per integration),
    ``birge_ratio``, ``excess_sigma`` (tau), ``F_excess``, ``p_excess``, ``slope_per_day``,
    ``slope_err_per_day`` (68.3 % t interval), ``slope_significance`` (t statistic), ``dof_slope``,
    ``p_slope``,
    ``drift_over_span`` (slope x time span), ``method`` ('within_and_residual_scatter',
    'fit_residuals' or 'none').
    """
    t = np.asarray(times, np.float64)
    raw = [np.asarray(v, np.float64) for v in values]
    vals = [v[np.isfinite(v)] for v in raw]
    keep = [i for i, v in enumerate(vals) if v.size and np.isfinite(t[i])]
    # integration number is a factor when every kept exposure has the same complete integrations
    same = len({raw[i].size for i in keep}) == 1 and all(vals[i].size == raw[i].size for i in keep)
    t = t[keep]
    vals = [vals[i] for i in keep]
    k = len(vals)
    n = np.array([v.size for v in vals], np.float64)
    m = np.array([v.mean() for v in vals]) if k else np.zeros(0)
    nan = math.nan
    out = {"n_exposures": k, "used": list(keep), "mean": nan, "exposure_means": m,
           "exposure_errors": np.full(k, nan), "exposure_errors_within": np.full(k, nan),
           "dof_within": 0, "within_sigma": nan, "birge_ratio": nan, "excess_sigma": nan,
           "F_excess": nan, "p_excess": nan, "slope_per_day": nan, "slope_err_per_day": nan,
           "slope_significance": nan, "dof_slope": max(k - 2, 0), "p_slope": nan,
           "drift_over_span": nan, "method": "none"}
    if k == 0:
        return out
    grand = float(np.sum(n * m) / n.sum())
    out["mean"] = grand
    dof_w, ss_w = within_exposure_scatter(vals, m, same)
    var_w = ss_w / dof_w if dof_w > 0 else nan
    if poisson and dof_w > 0:
        var_w = max(var_w, max(grand, 1.0))
    if dof_w > 0:
        out.update(dof_within=dof_w, within_sigma=math.sqrt(var_w),
                   exposure_errors_within=np.sqrt(var_w / n), exposure_errors=np.sqrt(var_w / n))
    if k < 3:
        return out
    w = n if dof_w > 0 else np.ones(k)
    b, sxx, s2_res = weighted_line(t, m, w)
    if sxx <= 0:
        return out
    if dof_w > 0 and var_w > 0:
        ratio = s2_res / var_w                                 # chi2 / (k - 2)
        scale2 = max(1.0, ratio)
        s2 = var_w * scale2
        out.update(method="within_and_residual_scatter", birge_ratio=math.sqrt(ratio),
                   F_excess=ratio, p_excess=float(sstats.f.sf(ratio, k - 2, dof_w)),
                   excess_sigma=math.sqrt(max(0.0, ratio - 1.0) * var_w / float(n.mean())),
                   exposure_errors=np.sqrt(s2 / n))
    else:
        s2 = max(s2_res, max(grand, 1.0)) if poisson else s2_res
        out.update(method="fit_residuals", within_sigma=math.sqrt(s2),
                   exposure_errors=np.full(k, math.sqrt(s2)))
    se = math.sqrt(s2 / sxx) if s2 > 0 else nan
    z = b / se if np.isfinite(se) else (math.inf if b else 0.0)
    # the error bar is the 68.3 % interval of Student's t (k - 2 dof), so that +/- 1 and 2 of it
    # cover the truth at the normal rates although the scatter is estimated from few exposures
    out.update(slope_per_day=b, slope_err_per_day=se * float(sstats.t.ppf(_ONE_SIGMA, k - 2)),
               slope_significance=z, p_slope=float(2 * sstats.t.sf(abs(z), k - 2)),
               drift_over_span=b * float(t.max() - t.min()))
    return out


def compare_baseline(mean, std, nused, base_mean, base_std, base_nused, select, amp_map=None,
                     hot_ratio=2.0, dead_ratio=0.1, noisy_ratio=1.5, nsigma=5.0):
    """JWQL-style new hot / dead / noisy pixels relative to a baseline (with significance).

    Parameters
    ----------
    mean, std : float (ny, nx) [DN/s], per-pixel clipped mean and std over n integrations
    nused : int (ny, nx), integrations per pixel
    base_mean, base_std, base_nused : the baseline's (same shapes)
    select : bool (ny, nx), pixels compared (e.g. active, not DO_NOT_USE)
    amp_map : int (ny, nx), optional: the std floor is the median std per amplifier (else global)
    hot_ratio, dead_ratio, noisy_ratio : JWQL thresholds (2, 0.1, 1.5)
    nsigma : significance of the difference (and the one-sided tail probability of the F-test)

    Returns
    -------
    dict ``hot``, ``dead``, ``noisy`` -> bool (ny, nx); ``ratio``, ``std_ratio``, ``z`` float (ny, nx)
    """
    mean = np.asarray(mean, np.float64)
    base_mean = np.asarray(base_mean, np.float64)
    std, base_std = np.asarray(std, np.float64), np.asarray(base_std, np.float64)
    n = np.maximum(np.asarray(nused, np.float64), 1)
    nb = np.maximum(np.asarray(base_nused, np.float64), 1)
    ok = select & np.isfinite(mean) & np.isfinite(base_mean)
    amp = np.zeros(mean.shape, int) if amp_map is None else np.asarray(amp_map)
    floor = np.zeros(mean.shape)
    floor_b = np.zeros(mean.shape)
    for a in np.unique(amp[ok]):
        sel = ok & (amp == a)
        floor[amp == a] = np.nanmedian(std[sel]) if np.isfinite(std[sel]).any() else 0.0
        floor_b[amp == a] = np.nanmedian(base_std[sel]) if np.isfinite(base_std[sel]).any() else 0.0
    s = np.fmax(np.nan_to_num(std, nan=0.0), floor)
    sb = np.fmax(np.nan_to_num(base_std, nan=0.0), floor_b)
    err = np.sqrt(s ** 2 / n + sb ** 2 / nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = mean - base_mean
        z = np.where(err > 0, diff / err, 0.0)
        ratio = np.where(base_mean != 0, mean / base_mean, np.sign(mean) * np.inf)
        std_ratio = std / base_std
        fstat = std_ratio ** 2
    hot = ok & (ratio > hot_ratio) & (z > nsigma)
    dead = ok & (ratio < dead_ratio) & (z < -nsigma)
    p_tail = sstats.norm.sf(nsigma)
    good_std = ok & np.isfinite(fstat) & (np.asarray(nused) > 1) & (np.asarray(base_nused) > 1)
    pf = np.ones(mean.shape)
    if good_std.any():
        pf[good_std] = sstats.f.sf(fstat[good_std], n[good_std] - 1, nb[good_std] - 1)
    noisy = good_std & (std_ratio > noisy_ratio) & (pf < p_tail)
    return {"hot": hot, "dead": dead, "noisy": noisy, "ratio": ratio, "std_ratio": std_ratio, "z": z}


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def plot_trends(table, trends, path, title):
    """Quantity vs EXPSTART per amplifier (error bars: total error of an exposure mean), flagged in the legend."""
    present = [q for q in QUANTITIES if table[QUANTITIES[q][0]].notna().any()]
    fig, axs = common.subplot_grid(max(len(present), 1), ncols=2, size=4.2)
    for ax, q in zip(axs, present):
        col, label = QUANTITIES[q]
        for amp in list(dict.fromkeys(table.amplifier)):
            t = table[table.amplifier == amp]
            tr = trends[(trends.quantity == q) & (trends.amplifier == amp)]
            flag = bool(tr.flagged.iloc[0]) if len(tr) else False
            name = "all" if amp == common.ALL else f"amp {amp}"
            ax.errorbar(t.expstart_mjd, t[col], yerr=t[f"{col}_err"], marker="o" if amp == common.ALL else ".",
                        ms=5, lw=1.0, capsize=2, label=name + (" FLAGGED" if flag else ""),
                        color="k" if amp == common.ALL else None)
        ax.set_xlabel("exposure start [MJD]")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_baseline(mean, select, pixels, path, title):
    """Mean slope image (median +/- 5 sigma) with new hot (red), dead (blue), noisy (magenta) pixels."""
    vmin, vmax = common.image_range(mean, select, 5.0)
    fig, ax = common.plt.subplots(figsize=(6.4, 5.6))
    common.show_image(ax, mean, vmin, vmax, "dark rate [DN/s]", title)
    for kind, color in (("hot", "red"), ("dead", "blue"), ("noisy", "magenta")):
        p = pixels[pixels.kind == kind]
        if len(p) and len(p) <= 1000:
            ax.plot(p.pixel_column, p.pixel_row, "o", mfc="none", mec=color, ms=6,
                    label=f"{len(p)} new {kind} vs baseline")
        elif len(p):
            ax.plot([], [], "o", mfc="none", mec=color, label=f"{len(p)} new {kind} (not drawn)")
    if len(pixels):
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    common.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# File level
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StabilityParameters:
    """Parameters of the stability analysis (the rule's ``params.kwargs`` and their defaults).

    hot_threshold : float   slope above which a pixel counts as hot [e-/s with a GAIN reference,
                            DN/s without] (1.0)
    alpha : float           family-wise false-alarm probability of the drift flags
                            (Holm-Bonferroni over the group's slope tests) (:data:`ALPHA`)
    sigma, maxiters         clipping of the per-amplifier means and of the per-pixel slope images
                            [sigma, iterations] (3.0, 5)
    hot_ratio, dead_ratio, noisy_ratio : JWQL baseline ratios (2.0, 0.1, 1.5)
    nsigma : float          significance of a baseline difference [sigma] (5.0)
    memory_mb : float       working-memory budget [MB] of the blocks of rows of the slope images
                            (:meth:`detcal.analysis.darkcurrent.RateGroup.images`); the rest is
                            read one integration at a time
                            (:data:`detcal.analysis.common.MEMORY_MB`). Changes no number.
    """

    hot_threshold: float = 1.0
    alpha: float = ALPHA
    sigma: float = 3.0
    maxiters: int = 5
    hot_ratio: float = 2.0
    dead_ratio: float = 0.1
    noisy_ratio: float = 1.5
    nsigma: float = 5.0
    memory_mb: float = common.MEMORY_MB

    def as_dict(self):
        """The parameters as written to the JSON document."""
        return {"alpha": self.alpha, "sigma": self.sigma, "maxiters": self.maxiters,
                "hot_threshold": self.hot_threshold, "hot_ratio": self.hot_ratio,
                "dead_ratio": self.dead_ratio, "noisy_ratio": self.noisy_ratio, "nsigma": self.nsigma}


_BASELINE_PIXEL_COLUMNS = ["kind", "pixel_row", "pixel_column", "amplifier", "mean_DN_per_s",
                           "baseline_mean_DN_per_s", "ratio", "std_DN_per_s", "baseline_std_DN_per_s",
                           "std_ratio", "z"]
_BASELINE_COUNT_COLUMNS = ["amplifier", "n_pixels_compared", "n_new_hot", "n_new_dead", "n_new_noisy"]
_TREND_INTERNAL = ("used", "exposure_means", "exposure_errors", "exposure_errors_within")


def slope_measurements(cube, dq, owner, nexp, masks, gain, parameters):
    """Dark [DN/s] and hot-pixel count of every integration of the slope cube, by exposure.

    cube : float (nints, ny, nx) [DN/s];  dq : uint32 (nints, ny, nx) (or the
    :class:`detcal.analysis.darkcurrent.Integrations` of a group: one integration read at a
    time);  owner : int (nints,) exposure index of each integration;  masks : label -> bool
    (ny, nx);  gain : float (ny, nx) [e-/DN] or None (then the hot threshold is in DN/s).

    Returns {"dark": per, "hot_pixels": per}, ``per[e][label]`` the list over the integrations
    of exposure ``e``.
    """
    p = parameters
    out = {q: [{lab: [] for lab in masks} for _ in range(nexp)] for q in ("dark", "hot_pixels")}
    for i in range(cube.shape[0]):
        e = owner[i]
        img = np.where((dq[i] & np.uint32(dqflags.DO_NOT_USE)) == 0, cube[i], np.nan)
        for lab, v in amplifier_clipped_means(img, masks, p.sigma, p.maxiters).items():
            out["dark"][e][lab].append(v)
        thr_img = img * gain if gain is not None else img
        for lab, v in hot_counts(thr_img, masks, p.hot_threshold).items():
            out["hot_pixels"][e][lab].append(v)
    return out


def ramp_cds_measurements(data, groupdq, pixeldq, masks):
    """CDS noise [DN] of every integration of one ramp: label -> list over integrations.

    data, groupdq : (nints, ngroups, ny, nx) arrays, or :class:`detcal.io.LazyArray` of a ramp
    file (then one integration is read at a time).
    """
    out = {lab: [] for lab in masks}
    for i in range(data.shape[0]):
        for lab, v in amplifier_cds_noise(np.asarray(data[i]), np.asarray(groupdq[i]), pixeldq, masks).items():
            out[lab].append(v)
    return out


def bias_measurements(group_zero, pixeldq, masks, parameters):
    """Bias level [DN] (clipped mean of group 1) of every integration: label -> list."""
    out = {lab: [] for lab in masks}
    for img in group_zero:
        img = np.where((pixeldq & dqflags.DO_NOT_USE) == 0, img, np.nan)
        for lab, v in amplifier_clipped_means(img, masks, parameters.sigma, parameters.maxiters).items():
            out[lab].append(v)
    return out


def _companions(kind, extra, names):
    """{exposure index: path} of the ramp or raw files matched to the rateints by exposure name."""
    by_name = {inventory.exposure_name(p, product=True): p for p in extra}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(extra[0], f"no {kind} input for exposure(s) {missing} (given: {sorted(by_name)})")
    return {e: by_name[name] for e, name in enumerate(names)}


def read_and_measure_companions(per, kind, extra, names, header, paths, masks, parameters):
    """Add the CDS noise (jump ramps) or bias (raw files) of every exposure to ``per[kind]``.

    One integration at a time (of a ramp its groups, of a raw file only its group 1; the file is
    checked from its headers, :class:`detcal.io.RampReader`, and to belong to the group first).
    Returns the paths read.
    """
    extra = [str(x) for x in extra]
    matched = _companions(kind, extra, names)
    per[kind] = [{lab: [] for lab in masks} for _ in names]
    for e, path in matched.items():
        with io.RampReader(path) as reader:
            inventory.check_one_group([header, reader.header], [paths[e], path])
            nints, pixeldq = reader.shape[0], reader.read("PIXELDQ")
            if kind == "cds_noise":
                per[kind][e] = ramp_cds_measurements(reader.lazy("SCI"), reader.lazy("GROUPDQ"), pixeldq, masks)
            else:
                per[kind][e] = bias_measurements((reader.read("SCI", i, 0) for i in range(nints)), pixeldq,
                                                 masks, parameters)
    return extra


def drift_tests(per, starts, labels, alpha):
    """Trend test of every quantity and amplifier, Holm-Bonferroni over all of them.

    per : quantity -> [exposure] -> {label: values};  starts : float (nexp,) EXPSTART [MJD].

    Returns (results {(quantity, label): :func:`trend_test` dict}, trend rows, family size). A
    trend row (the trends table): ``quantity``, ``column``, ``unit``, ``amplifier``, the results
    of :func:`trend_test`, ``family_size`` (tests in the Holm family), ``p_slope_holm`` (adjusted
    p-value), ``alpha_familywise``, ``flagged`` and ``p_excess_holm`` (the excess scatter tests,
    Holm-adjusted as a family of their own; information, not a drift).
    """
    results, rows = {}, []
    for q, (col, _) in QUANTITIES.items():
        if q not in per:
            continue
        for lab in labels:
            vals = [per[q][e][lab] for e in range(len(starts))]
            if not any(len(v) for v in vals):
                continue
            res = trend_test(starts, vals, poisson=(q == "hot_pixels"))
            results[(q, lab)] = res
            rows.append({"quantity": q, "column": col, "unit": UNITS[q], "amplifier": lab,
                         **{k: v for k, v in res.items() if k not in _TREND_INTERNAL}})
    # one family: the slope tests of every quantity and amplifier of the group (Holm-Bonferroni)
    p_holm, family = holm([r["p_slope"] for r in rows])
    p_excess_holm, _ = holm([r["p_excess"] for r in rows])      # a family of its own
    for r, pa, pe in zip(rows, p_holm, p_excess_holm):
        r.update(family_size=family, p_slope_holm=float(pa), alpha_familywise=alpha,
                 flagged=bool(np.isfinite(pa) and pa < alpha), p_excess_holm=float(pe))
    return results, rows, family


def _exposure_row(per, results, e, lab, row, gains):
    for q, (col, _) in QUANTITIES.items():
        vals = np.asarray(per[q][e][lab], np.float64) if q in per else np.zeros(0)
        res = results.get((q, lab))
        if res is None or not vals.size:
            row[col], row[f"{col}_err"], row[f"{col}_err_within"] = math.nan, math.nan, math.nan
            continue
        used = res["used"]
        err, err_w = ((res["exposure_errors"][used.index(e)], res["exposure_errors_within"][used.index(e)])
                      if e in used else (math.nan, math.nan))
        mean = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan    # all NaN: no usable pixel
        row[col], row[f"{col}_err"] = mean, float(err)
        row[f"{col}_err_within"] = float(err_w)
        if q == "dark" and gains is not None:
            row["dark_e_per_s"] = row[col] * gains[lab]
            row["dark_e_per_s_err"] = row[f"{col}_err"] * gains[lab]
    return row


def exposure_table(per, results, names, starts, owner, labels, gains=None):
    """The stability table: one row per (exposure in EXPSTART order, amplifier).

    Columns: ``exposure``, ``expstart_mjd``, ``amplifier``, ``n_integrations``, then per quantity
    its value, ``_err`` (total error: within-exposure error scaled by the exposures' scatter, see
    :func:`trend_test`) and ``_err_within``: ``dark_DN_per_s``, (``dark_e_per_s`` with
    ``gains``: label -> median gain [e-/DN]), ``cds_noise_DN``, ``bias_DN``, ``hot_pixels``.
    """
    rows = []
    for e in np.argsort(starts, kind="stable"):
        for lab in labels:
            row = {"exposure": names[e], "expstart_mjd": starts[e], "amplifier": lab,
                   "n_integrations": int(np.sum(owner == e))}
            rows.append(_exposure_row(per, results, e, lab, row, gains))
    return pd.DataFrame(rows)


def check_baseline(baseline, base, shape, detector):
    """InputError unless the baseline slope images match the group's frame and DETECTOR."""
    if base["mean"].shape != shape:
        raise InputError(baseline, f"baseline images are {base['mean'].shape[1]} x {base['mean'].shape[0]}, "
                                   f"the group's slopes {shape[1]} x {shape[0]}")
    bdet = str(base["header"].get("DETECTOR", "")).strip()
    if bdet and bdet != str(detector).strip():
        raise InputError(baseline, f"baseline is for DETECTOR {bdet}, the group is {detector}")


def baseline_comparison(mean_img, std_img, nused, base, usable, amp_map, noutputs, parameters):
    """New hot/dead/noisy pixels against a baseline (:func:`compare_baseline`) as tables.

    base : dict of :func:`common.read_slope_images`;  usable : bool (ny, nx) pixels of the group
    that may be compared. Returns (pixels table, counts per amplifier table).
    """
    p = parameters
    sel = usable & ((base["dq"] & np.uint32(dqflags.DO_NOT_USE)) == 0)
    cmp = compare_baseline(mean_img, std_img, nused, base["mean"], base["std"], base["nused"], sel, amp_map,
                           p.hot_ratio, p.dead_ratio, p.noisy_ratio, p.nsigma)
    prow = []
    for kind in ("hot", "dead", "noisy"):
        for y, x in zip(*np.nonzero(cmp[kind])):
            prow.append((kind, int(y), int(x), str(int(amp_map[y, x]) + 1), float(mean_img[y, x]),
                         float(base["mean"][y, x]), float(cmp["ratio"][y, x]), float(std_img[y, x]),
                         float(base["std"][y, x]), float(cmp["std_ratio"][y, x]), float(cmp["z"][y, x])))
    pixels = pd.DataFrame(prow, columns=_BASELINE_PIXEL_COLUMNS)
    cmasks = common.amplifier_masks(amp_map, sel, noutputs)
    counts = pd.DataFrame([{"amplifier": lab, "n_pixels_compared": int(m.sum()),
                            **{f"n_new_{k}": int(np.count_nonzero(cmp[k] & m))
                               for k in ("hot", "dead", "noisy")}}
                           for lab, m in cmasks.items()])
    return pixels, counts


def flagged_drifts(trend_rows):
    """The flagged slope tests (quantity, amplifier, unit, slope and its error, p-values)."""
    keys = ("quantity", "amplifier", "unit", "slope_per_day", "slope_err_per_day", "drift_over_span",
            "p_slope", "p_slope_holm")
    return [{k: r[k] for k in keys} for r in trend_rows if r["flagged"]]


def stability_summary(detector, starts, nints, trend_rows, results, family, parameters, gain_given,
                      baseline=None, base_counts=None, dead=()):
    """The JSON ``summary`` of a group: ``any_drift``, flagged quantities, ``drift_tests`` (family
    size), ``drift_alpha_familywise``, ``drift_min_p_holm``, ``excess_scatter``
    (quantity:amplifier whose exposures scatter beyond their within-exposure errors, not a
    drift), CDS noise / dark / bias / hot pixels of the group, baseline counts, dead outputs."""
    p = parameters
    flagged = flagged_drifts(trend_rows)
    p_adj = [r["p_slope_holm"] for r in trend_rows if np.isfinite(r["p_slope_holm"])]
    whole = {q: results[(q, common.ALL)]["mean"] for q in QUANTITIES if (q, common.ALL) in results}
    summary = {
        "detector": str(detector).strip(),
        "n_exposures": len(starts), "n_integrations": int(nints),
        "expstart_first_mjd": float(np.nanmin(starts)) if np.isfinite(starts).any() else None,
        "expstart_last_mjd": float(np.nanmax(starts)) if np.isfinite(starts).any() else None,
        "any_drift": bool(flagged),
        "flagged": sorted({f"{f['quantity']}" for f in flagged}),
        "drift_tests": family,
        "drift_alpha_familywise": p.alpha,
        "drift_min_p_holm": float(min(p_adj)) if p_adj else None,
        "excess_scatter": sorted({f"{r['quantity']}:{r['amplifier']}" for r in trend_rows
                                  if np.isfinite(r["p_excess_holm"]) and r["p_excess_holm"] < p.alpha}),
        "dark_DN_per_s": whole.get("dark"),
        "cds_noise_DN": whole.get("cds_noise"),
        "bias_DN": whole.get("bias"),
        "hot_pixels": whole.get("hot_pixels"),
        "hot_threshold": p.hot_threshold,
        "hot_threshold_unit": "e-/s" if gain_given else "DN/s",
        "baseline": str(baseline) if baseline else None,
        "dead_amplifiers": [k + 1 for k in dead], "n_dead_amplifiers": len(dead),
    }
    values = [whole.get(q) for q in ("dark", "cds_noise", "bias")]
    if not any(v is not None and np.isfinite(v) for v in values):
        # a valid input: every ramp of the group saturated or DO_NOT_USE; no value, so no verdict
        note = (f"no usable pixel: no slope, CDS difference or group-1 value in any of the {int(nints)} "
                "integrations (every ramp saturated or flagged DO_NOT_USE): nothing measured (NaN)")
        summary.update(any_drift="N/A", hot_pixels=None, drift_min_p_holm=None, note=note)
    if base_counts is not None:
        b = base_counts[base_counts.amplifier == common.ALL].iloc[0]
        summary.update(n_new_hot=int(b.n_new_hot), n_new_dead=int(b.n_new_dead),
                       n_new_noisy=int(b.n_new_noisy))
    return summary


def _group_masks(header, shape, pdq, path, bias_paths):
    """Geometry, amplifier map, usable pixels, amplifier masks and dead outputs of a group
    (``shape`` (n, ny, nx), ``pdq`` uint32 (ny, nx) the DQ bits set in every integration)."""
    geom, amp_map, active = common.layout(header, shape, path)
    usable = active & ((pdq & np.uint32(dqflags.DO_NOT_USE)) == 0)
    masks = common.amplifier_masks(amp_map, usable, geom.noutputs)
    # a dead or flat output (found on the raw files) keeps its rows, not in the whole-array values
    dead = common.dead_amplifiers(bias_paths) if bias_paths else []
    if dead:
        masks[common.ALL] &= ~np.isin(amp_map, dead)
    return geom, amp_map, usable, masks, dead


def _write_baseline_tables(base_counts, pixels, baseline_tsv, baseline_pixels_tsv):
    if baseline_tsv:
        tables.write_tsv(base_counts if base_counts is not None else
                         pd.DataFrame(columns=_BASELINE_COUNT_COLUMNS), baseline_tsv)
    if baseline_pixels_tsv:
        tables.write_tsv(pixels, baseline_pixels_tsv)


@keyword_parameters(StabilityParameters)
def stability_file(rateints_paths, table_path, json_path, trends_tsv=None, group=None,
                   ramp_paths=None, bias_paths=None, gain_path=None,
                   baseline=None, baseline_output=None, baseline_tsv=None, baseline_pixels_tsv=None,
                   trend_png=None, baseline_png=None, parameters=None):
    """Stability of one configuration group across its exposures, and a baseline comparison.

    Read (slopes, ramps, raw group 1, gain, baseline) -> measure (:func:`slope_measurements`,
    :func:`ramp_cds_measurements`, :func:`bias_measurements`) -> test (:func:`drift_tests`,
    :func:`baseline_comparison`) -> write (tables, JSON, figures).

    Parameters
    ----------
    rateints_paths : list of str
        ``{exposure}_rateints.fits`` (or ``rate``) of the group, one per exposure: dark,
        hot-pixel counts, slope images. EXPSTART [MJD] from their headers orders the exposures.
    table_path : str
        :func:`exposure_table`: one row per (exposure, amplifier).
    json_path : str
        ``summary`` (:func:`stability_summary`), ``flagged`` (:func:`flagged_drifts`),
        ``trends``, ``table``, ``conventions``, ``parameters``.
    trends_tsv : str, optional
        :func:`drift_tests`: one row per (quantity, amplifier).
    group : str, optional
        Group name (default: from the first file's keywords).
    ramp_paths : list of str, optional
        Jump-step ramps of the same exposures (matched by exposure name) for the CDS noise.
    bias_paths : list of str, optional
        Raw ``uncal`` files (or products before the superbias step) of the same exposures for
        the bias level (only group 1 is read).
    gain_path : str, optional
        GAIN reference: ``hot_threshold`` is then in e-/s (else DN/s) and the dark also in e-/s.
    baseline : str, optional
        Slope-image file of an earlier run (:func:`common.write_slope_images` format); enables
        the new hot/dead/noisy comparison.
    baseline_output : str, optional
        Write this run's slope images in the baseline format (for a later run).
    baseline_tsv, baseline_pixels_tsv, baseline_png : str, optional
        Counts per amplifier of new hot/dead/noisy pixels, the list of those pixels
        (kind, pixel_row, pixel_column, amplifier, mean/baseline in DN/s, ratio, z), and the
        mean image with the pixels marked. Written empty (with a note) without a baseline.
    trend_png : str, optional
        Quantities vs time per amplifier.
    hot_threshold, alpha, sigma, maxiters, hot_ratio, dead_ratio, noisy_ratio, nsigma
        :class:`StabilityParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: the JSON document written.
    """
    p = parameters
    with RateGroup(rateints_paths, group) as grp:
        return _stability_group(grp, table_path, json_path, trends_tsv, ramp_paths, bias_paths, gain_path,
                                baseline, baseline_output, baseline_tsv, baseline_pixels_tsv, trend_png,
                                baseline_png, p)


def _stability_group(grp, table_path, json_path, trends_tsv, ramp_paths, bias_paths, gain_path, baseline,
                     baseline_output, baseline_tsv, baseline_pixels_tsv, trend_png, baseline_png, p):
    """:func:`stability_file` on an open :class:`detcal.analysis.darkcurrent.RateGroup` (memory:
    per-pixel images of one frame, one integration, one block of rows of its ``images``)."""
    paths, headers, owner, group, nints = grp.paths, grp.headers, grp.owner, grp.name, grp.shape[0]
    names = [inventory.exposure_name(x, product=True) for x in paths]
    header = headers[0]
    pdq = grp.persistent_dq()
    geom, amp_map, usable, masks, dead = _group_masks(header, grp.shape, pdq, paths[0], bias_paths)
    labels = list(masks)
    gain = common.read_gain(gain_path, header, grp.shape) if gain_path else None
    gains = common.amplifier_gains(gain, masks) if gain is not None else None
    starts = np.array([common.expstart(h) for h in headers])

    per = slope_measurements(grp.sci, grp.dq, owner, len(paths), masks, gain, p)
    inputs = list(paths)
    for kind, extra in (("cds_noise", ramp_paths), ("bias", bias_paths)):
        if extra:
            inputs += read_and_measure_companions(per, kind, extra, names, header, paths, masks, p)
    results, trend_rows, family = drift_tests(per, starts, labels, p.alpha)
    table = exposure_table(per, results, names, starts, owner, labels, gains)
    tables.write_tsv(table, table_path)
    trends = pd.DataFrame(trend_rows)
    if trends_tsv:
        tables.write_tsv(trends, trends_tsv)

    mean_img, std_img, nused = grp.images(p.sigma, p.maxiters, p.memory_mb)
    if baseline_output:
        common.write_slope_images(baseline_output, mean_img, std_img, nused, pdq, header, nints, starts, paths)
    base_counts, pixels = None, pd.DataFrame(columns=_BASELINE_PIXEL_COLUMNS)
    if baseline:
        base = common.read_slope_images(baseline)
        check_baseline(baseline, base, mean_img.shape, header["DETECTOR"])
        pixels, base_counts = baseline_comparison(mean_img, std_img, nused, base, usable, amp_map,
                                                  geom.noutputs, p)
    _write_baseline_tables(base_counts, pixels, baseline_tsv, baseline_pixels_tsv)

    summary = stability_summary(header["DETECTOR"], starts, nints, trend_rows, results, family, p,
                                gain is not None, baseline, base_counts, dead)
    doc = {"analysis": "stability", "group": group, "inputs": inputs, "conventions": CONVENTIONS,
           "parameters": p.as_dict(), "summary": summary, "flagged": flagged_drifts(trend_rows),
           "trends": tables.records(trends), "table": tables.records(table)}
    if base_counts is not None:
        doc["baseline_counts"] = tables.records(base_counts)
    tables.write_json(doc, json_path)

    title = f"{group}: {len(paths)} exposures, {nints} integrations"
    if trend_png:
        plot_trends(table, trends, trend_png, f"stability, {title}")
    if baseline_png:
        what = "mean dark rate vs baseline" if baseline else "mean dark rate (no baseline)"
        plot_baseline(mean_img, usable, pixels, baseline_png, f"{what}\n{title}")
    return doc
