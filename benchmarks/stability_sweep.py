"""False-alarm and detection rates of the stability drift test, through the real pipeline.

Usage::

    .venv/bin/python benchmarks/stability_sweep.py                       # 52 stationary, 32 + 32 drift groups (~10 min)
    .venv/bin/python benchmarks/stability_sweep.py --stationary 8 --drift 4 --out /tmp/stab

Every group is simulated and reduced by ``tests/test_truth_stability.run_group`` (truthkit
``reduce_campaign``: pipeline-built SUPERBIAS/READNOISE from a calibration set, the workflow's
no-dark branch, the bias from the raw files), cycling through the regimes of
``test_truth_stability.REGIMES`` (NIR 4 outputs 10.7 s frames, NIR 1 output 1 s frames, NIR
BRIGHT2, MIRI FAST; 6 exposures x 2 integrations; a 10 DN rms bias offset per exposure).

1. Stationary groups (seeds 100, 101, ...): the fraction with ``any_drift`` (Holm-Bonferroni,
   family-wise alpha 0.01) and, for comparison, the verdict of the previous test (ANOVA F and
   slope t against the within-exposure scatter only, each at p < 1e-3, no multiple-testing
   control), recomputed from the table's exposure means and within-exposure errors (these are
   now from the two-way model exposure + integration number, not the old pooled scatter). The
   per-exposure error of the whole-array dark [DN/s] and bias [DN] of each regime is the rms
   scatter of the exposure means about their mean.
2. Drift groups (seeds 300, ...): a dark-rate ramp (``dark_drift`` = 3 x that dark error x gain
   [e-/s per exposure]) or a bias ramp (``bias_drift`` = 3 x that bias error [DN per exposure]);
   the fraction flagged (``any_drift``, and the drifted quantity on the whole array).
3. Error-bar coverage of the whole-array slopes of dark and bias (truth: 0, or the injected
   drift per day): the fraction of groups with |slope - truth| <= 1 and <= 2 slope errors.

Tables are printed and written to ``--out`` (groups.tsv, errors.tsv).
"""

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from scipy import stats as sstats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from detcal.simulate.params import PRESETS  # noqa: E402

import test_truth_stability as T  # noqa: E402


def old_verdict(table, alpha=1e-3):
    """The previous drift test (within-exposure errors only, every test at ``alpha``): any flag."""
    for _, g in table.groupby("amplifier"):
        for col in ("dark_DN_per_s", "cds_noise_DN", "bias_DN"):
            m = g[col].to_numpy(float)
            n = g.n_integrations.to_numpy(float)
            sw = float(np.nanmean(g[f"{col}_err_within"].to_numpy(float) * np.sqrt(n)))
            t = g.expstart_mjd.to_numpy(float)
            dof = int(np.sum(n - 1))
            if not (np.isfinite(m).all() and sw > 0 and dof > 0):
                continue
            grand = np.sum(n * m) / n.sum()
            F = np.sum(n * (m - grand) ** 2) / (len(m) - 1) / sw ** 2
            tw = np.sum(n * t) / n.sum()
            sxx = np.sum(n * (t - tw) ** 2)
            b = np.sum(n * (t - tw) * (m - grand)) / sxx
            z = b / (sw / math.sqrt(sxx))
            if min(sstats.f.sf(F, len(m) - 1, dof), 2 * sstats.t.sf(abs(z), dof)) < alpha:
                return True
    return False


def one(regime, seed, kind, overrides, truth):
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        doc, trends = T.run_group(d, regime, seed, overrides)
        table = pd.read_csv(os.path.join(d, "stability", "st.tsv"), sep="\t", dtype={"amplifier": str})
        whole = table[table.amplifier == "all"]
        row = {"regime": regime, "seed": seed, "kind": kind, "any_drift": doc["summary"]["any_drift"],
               "flagged": ",".join(f"{f['quantity']}:{f['amplifier']}" for f in doc["flagged"]),
               "min_p_holm": doc["summary"]["drift_min_p_holm"], "family_size": doc["summary"]["drift_tests"],
               "old_any_drift": old_verdict(table), "seconds": round(time.time() - t0, 1)}
        for q, col in (("dark", "dark_DN_per_s"), ("bias", "bias_DN")):
            tr = trends[(trends.quantity == q) & (trends.amplifier == "all")].iloc[0]
            row[f"{q}_flagged"] = bool(tr.flagged)
            row[f"{q}_p_slope_holm"] = tr.p_slope_holm
            row[f"{q}_slope_per_day"] = tr.slope_per_day
            row[f"{q}_slope_err_per_day"] = tr.slope_err_per_day
            row[f"{q}_slope_truth_per_day"] = truth.get(q, 0.0)
            row[f"{q}_exposure_var"] = float(np.var(whole[col].to_numpy(float), ddof=1))
            row[f"{q}_birge_ratio"] = tr.birge_ratio
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stationary", type=int, default=52, help="stationary groups (cycled over the regimes)")
    ap.add_argument("--drift", type=int, default=32, help="groups per drift kind (dark, bias)")
    ap.add_argument("--out", default="stability_sweep", help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    regimes = list(T.REGIMES)
    rows = []
    log = os.path.join(args.out, "groups.tsv")

    def record(row):
        rows.append(row)
        pd.DataFrame(rows).to_csv(log, sep="\t", index=False)
        print(row, flush=True)

    for i in range(args.stationary):
        record(one(regimes[i % len(regimes)], 100 + i, "stationary", {}, {}))
    st = pd.DataFrame(rows)
    err = st.groupby("regime")[["dark_exposure_var", "bias_exposure_var"]].mean().apply(np.sqrt)
    err.columns = ["dark_err_DN_per_s", "bias_err_DN"]
    err["gain_e_per_DN"] = [PRESETS[T.REGIMES[r]["preset"]]["gain"] for r in err.index]
    err["dark_drift_e_per_s_per_exposure"] = 3 * err.dark_err_DN_per_s * err.gain_e_per_DN
    err["bias_drift_DN_per_exposure"] = 3 * err.bias_err_DN
    print(err.to_string())
    err.to_csv(os.path.join(args.out, "errors.tsv"), sep="\t")
    per_day = 24.0 / T.CADENCE_H
    for i in range(args.drift):
        for kind in ("dark", "bias"):
            r = regimes[i % len(regimes)]
            e = err.loc[r]
            if kind == "dark":
                over = {"dark_drift": float(e.dark_drift_e_per_s_per_exposure)}
                truth = {"dark": 3 * float(e.dark_err_DN_per_s) * per_day}
            else:
                over = {"bias_drift": float(e.bias_drift_DN_per_exposure)}
                truth = {"bias": float(e.bias_drift_DN_per_exposure) * per_day}
            record(one(r, 300 + i, f"{kind}_drift", over, truth))
    res = pd.DataFrame(rows)
    rate = res.groupby("kind").agg(groups=("seed", "size"), any_drift_pct=("any_drift", "mean"),
                                   dark_flagged_pct=("dark_flagged", "mean"), bias_flagged_pct=("bias_flagged", "mean"),
                                   old_any_drift_pct=("old_any_drift", "mean"))
    for c in rate.columns[1:]:
        rate[c] = (100 * rate[c]).round(1)
    print("\nflag rates [% of groups]\n" + rate.to_string())
    per_regime = 100 * res.groupby(["kind", "regime"])[["any_drift", "old_any_drift"]].mean()
    print("\nper regime\n" + per_regime.round(1).to_string())
    cov = []
    for q in ("dark", "bias"):
        z = (res[f"{q}_slope_per_day"] - res[f"{q}_slope_truth_per_day"]).abs() / res[f"{q}_slope_err_per_day"]
        cov.append({"quantity": f"{q} slope (whole array)", "groups": int(z.notna().sum()),
                    "within_1_sigma_pct": round(100 * float((z <= 1).mean()), 1),
                    "within_2_sigma_pct": round(100 * float((z <= 2).mean()), 1)})
    print("\nslope error-bar coverage\n" + pd.DataFrame(cov).to_string(index=False))


if __name__ == "__main__":
    main()
