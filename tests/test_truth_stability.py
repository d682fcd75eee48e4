"""Stability without false alarms: the drift test through the real pipeline, and its statistics.

The numbers the drift test reads come from pipeline products: :func:`truthkit.reduce_campaign`
simulates a calibration set and a science group, builds SUPERBIAS/READNOISE/DARK from the
calibration set with the workflow's builders and reduces the science group through the
workflow's no-dark branch (rateints, jump ramps) as ``workflow/rules/nodark.smk`` does; the bias
is read from the raw files, as the ``stability`` rule does. Nothing of the simulator's truth is
subtracted.

Regimes (:data:`REGIMES`, 6 exposures x 2 integrations each): NIR full-frame timing (10.7 s
frames) with 4 outputs, NIR subarray-like 1-output timing (1 s frames) with a long ramp, NIR
NFRAMES = 2 (BRIGHT2), and MIRI FAST. Every regime has a random bias offset per exposure
(``bias_jitter``): exposure-to-exposure scatter that the integrations of one exposure share,
which an error model built from the within-exposure scatter alone would call a drift.

Drifts are injected with the simulator's ``dark_drift`` [e-/s per exposure] and ``bias_drift``
[DN per exposure] at 3 x the per-exposure error of the whole-array value (:data:`DRIFT`,
measured on the stationary sweep of ``benchmarks/stability_sweep.py``).

The CI runs a bounded sample (:data:`CI_SEEDS`); the full sweep (>= 50 stationary groups,
>= 30 per drift kind) is ``benchmarks/stability_sweep.py``. A synthetic sweep of
:func:`detcal.analysis.stability.trend_test` + Holm on thousands of groups checks the false-alarm
and detection rates of the statistics themselves.
"""

import os
import sys

import numpy as np
import pandas as pd
import pytest

from detcal.analysis import stability
from detcal.simulate import h2rg as sim_h2rg
from detcal.simulate.params import normalize_spec

sys.path.insert(0, os.path.dirname(__file__))
from truthkit import reduce_campaign  # noqa: E402

NEXP = 6
CADENCE_H = 1.0            # hours between exposure starts (the simulator's default cadence)

#: Simulator specs of the regimes (small arrays; 6 exposures x 2 integrations).
REGIMES = {
    "nir_4out_10s": {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 8, "nints": 2,
                     "nexposures": NEXP, "overrides": {"tframe": 10.73677, "bias_jitter": 10.0}},
    "nir_1out_1s": {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 20, "nints": 2,
                    "nexposures": NEXP, "overrides": {"tframe": 1.0, "noutputs": 1, "bias_jitter": 10.0}},
    "nir_bright2": {"name": "NRCALONG", "preset": "nircam_lw", "size": 32, "readpatt": "BRIGHT2", "ngroups": 6,
                    "nints": 2, "nexposures": NEXP, "overrides": {"tframe": 10.73677, "bias_jitter": 10.0}},
    "miri_fast": {"name": "MIRIMAGE", "preset": "miri_imager", "size": 16, "ngroups": 16, "nints": 2,
                  "nexposures": NEXP, "overrides": {"bias_jitter": 10.0}},
}

#: Per regime: (gain [e-/DN], per-exposure error of the whole-array dark [DN/s] and bias [DN]),
#: the rms scatter of the exposure means of 13 stationary groups each (benchmarks/stability_sweep.py).
#: Drifts are injected at 3 x these errors per exposure.
DRIFT = {
    "nir_4out_10s": (2.05, 0.00695, 11.18),
    "nir_1out_1s": (2.05, 0.0173, 13.69),
    "nir_bright2": (1.82, 0.00462, 9.49),
    "miri_fast": (4.0, 0.0383, 9.32),
}


def run_group(tmp, regime, seed, overrides=None):
    """Simulate and reduce one group of ``regime`` (extra simulator ``overrides``), run the
    stability analysis on the pipeline products as the workflow's ``stability`` rule does;
    return (the JSON document, the trends table)."""
    spec = dict(REGIMES[regime])
    spec["overrides"] = dict(spec["overrides"], **(overrides or {}))
    tmp = str(tmp)
    # the no-dark branch needs no DARK (and a DARK is made from NFRAMES=1 darks only)
    built = ("superbias", "readnoise") if spec["preset"] != "miri_imager" else ("readnoise",)
    camp = reduce_campaign(tmp, spec, seed=seed, ncal=2, branches=("nodark",), built=built)
    rateints, jump = camp.paths("rateints"), camp.paths("jump")  # the workflow's names
    out = os.path.join(tmp, "stability")
    os.makedirs(out, exist_ok=True)
    doc = stability.stability_file(rateints, os.path.join(out, "st.tsv"), os.path.join(out, "st.json"),
                                   trends_tsv=os.path.join(out, "tr.tsv"), ramp_paths=jump,
                                   bias_paths=camp.paths("raw"), gain_path=camp.references["gain"])
    trends = pd.read_csv(os.path.join(out, "tr.tsv"), sep="\t", dtype={"amplifier": str})
    return doc, trends


# ----------------------------------------------------------------------------------------------
# The simulator's exposure-to-exposure options
# ----------------------------------------------------------------------------------------------
def test_simulator_drifts_change_bias_and_dark_rate_per_exposure_index():
    spec = dict(REGIMES["nir_4out_10s"], overrides={"tframe": 10.73677, "bias_drift": 7.0, "dark_drift": 0.02,
                                                    "bias_jitter": 4.0})
    det = sim_h2rg.make_detector(normalize_spec(spec), 5)
    e0, e3 = sim_h2rg.exposure_detector(det, 0, 5), sim_h2rg.exposure_detector(det, 3, 5)
    jitter = (e3.bias - det.bias).astype(np.float64) - 3 * 7.0
    assert np.ptp(jitter) < 0.01 and 0 < abs(jitter.mean()) < 5 * 4.0          # one offset for all pixels
    assert e3.dark_rate[det.response] - det.dark_rate[det.response] == pytest.approx(0.06, abs=1e-3)   # float32
    assert (e3.dark_rate[~det.response] == det.dark_rate[~det.response]).all()
    assert (sim_h2rg.exposure_detector(det, 3, 5).bias == e3.bias).all()      # reproducible stream
    assert (e0.dark_rate == det.dark_rate).all()
    stationary = sim_h2rg.make_detector(normalize_spec(REGIMES["nir_4out_10s"] | {"overrides": {}}), 5)
    assert sim_h2rg.exposure_detector(stationary, 3, 5) is stationary


# ----------------------------------------------------------------------------------------------
# The statistics: synthetic groups (fast, thousands of tests)
# ----------------------------------------------------------------------------------------------
def synthetic_group(rng, k=NEXP, n=2, drift=None, taus=(0.0, 1.0, 3.0, 1.0)):
    """Drift tests of one synthetic group: 4 quantities x (4 amplifiers + whole array), ``n``
    integrations per exposure with unit within-exposure noise, exposure-to-exposure scatter
    (common to the amplifiers and per amplifier, each of rms ``tau``) per quantity, and optionally
    a linear drift ``(quantity, d)`` of ``d`` whole-array per-exposure errors per exposure.

    Returns (smallest Holm-adjusted p-value, list of (slope - truth) / slope_err of the
    whole-array values)."""
    t = np.arange(k) * CADENCE_H / 24.0
    ps, pulls = [], []
    for q, tau in enumerate(taus):
        x = rng.normal(0, 1.0, (k, n, 4)) + rng.normal(0, tau, (k, 1, 1)) + rng.normal(0, tau, (k, 1, 4))
        sigma_e = np.sqrt(tau ** 2 + tau ** 2 / 4 + 1 / (4 * n))      # per-exposure error of the whole array
        truth = 0.0
        if drift is not None and drift[0] == q:
            x = x + (drift[1] * sigma_e * np.arange(k))[:, None, None]
            truth = drift[1] * sigma_e * 24.0 / CADENCE_H              # per day
        for a in range(4):
            ps.append(stability.trend_test(t, [x[e, :, a] for e in range(k)])["p_slope"])
        res = stability.trend_test(t, [x[e].mean(1) for e in range(k)])
        ps.append(res["p_slope"])
        pulls.append((res["slope_per_day"] - truth) / res["slope_err_per_day"])
    adj, m = stability.holm(ps)
    assert m == 20
    return float(np.nanmin(adj)), pulls


def test_drift_statistics_bound_false_alarms_and_catch_3_sigma_drifts():
    """Stationary groups (with exposure-to-exposure scatter up to 3x the within-exposure error):
    "any drift" in <= 5 % (family-wise alpha 0.05); a drift of 3 per-exposure errors per exposure:
    flagged in >= 90 %; the whole-array slope's error bar covers the truth at the t rate."""
    rng = np.random.default_rng(2026)
    null = [synthetic_group(rng) for _ in range(250)]
    drift = [synthetic_group(rng, drift=(i % 4, 3.0)) for i in range(80)]
    false_alarm = np.mean([p < stability.ALPHA for p, _ in null])
    detected = np.mean([p < stability.ALPHA for p, _ in drift])
    assert false_alarm <= 0.05, false_alarm                            # measured 0.4 % (1 of 250)
    assert detected >= 0.90, detected                                  # measured 100 % (80 of 80)
    pulls = np.abs(np.concatenate([pl for _, pl in null + drift]))
    within1, within2 = np.mean(pulls <= 1), np.mean(pulls <= 2)
    assert 0.55 <= within1 <= 0.80 and within2 >= 0.90, (within1, within2)   # measured 70 %, 93 % (1320 slopes)


# ----------------------------------------------------------------------------------------------
# Through the pipeline: a bounded sample of the benchmark's groups (same seeds)
# ----------------------------------------------------------------------------------------------
#: CI sample: stationary groups (regime, seed) and drift groups (regime, kind, seed); the
#: benchmark runs seeds 100..151 (stationary) and 300..331 (each drift kind).
CI_STATIONARY = [(r, 100 + i) for i, r in enumerate(list(REGIMES) * 2)]
CI_DRIFT = [("nir_4out_10s", "dark", 300), ("nir_1out_1s", "bias", 301), ("nir_bright2", "dark", 302),
            ("miri_fast", "bias", 303)]


def drift_overrides(regime, kind):
    """Simulator overrides of a drift of 3 per-exposure errors per exposure, and the true slope
    of the whole-array quantity [its unit per day]."""
    gain, dark_err, bias_err = DRIFT[regime]
    per_day = 24.0 / CADENCE_H
    if kind == "dark":
        return {"dark_drift": 3 * dark_err * gain}, 3 * dark_err * per_day
    return {"bias_drift": 3 * bias_err}, 3 * bias_err * per_day


@pytest.fixture(scope="module")
def pipeline_sample(tmp_path_factory):
    out = {"stationary": [], "drift": []}
    for regime, seed in CI_STATIONARY:
        out["stationary"].append((regime, seed) + run_group(tmp_path_factory.mktemp(f"{regime}_{seed}"), regime, seed))
    for regime, kind, seed in CI_DRIFT:
        over, truth = drift_overrides(regime, kind)
        out["drift"].append((regime, kind, truth)
                            + run_group(tmp_path_factory.mktemp(f"{regime}_{kind}_{seed}"), regime, seed, over))
    return out


def test_stationary_pipeline_groups_raise_no_drift(pipeline_sample):
    flagged = [(r, s, doc["flagged"]) for r, s, doc, _ in pipeline_sample["stationary"] if doc["summary"]["any_drift"]]
    assert len(flagged) <= 1, flagged                               # measured 0 of 8
    for regime, seed, doc, trends in pipeline_sample["stationary"]:
        nout = 1 if regime == "nir_1out_1s" else 4
        assert doc["summary"]["drift_tests"] == 4 * (nout + 1) == trends.family_size.iloc[0]
        assert (trends.p_slope_holm >= trends.p_slope).all()
        assert set(trends.unit) == {"DN/s", "DN", "count"}


def test_a_drift_of_3_exposure_errors_is_flagged_through_the_pipeline(pipeline_sample):
    for regime, kind, truth, doc, trends in pipeline_sample["drift"]:
        whole = trends[(trends.quantity == kind) & (trends.amplifier == "all")].iloc[0]
        assert doc["summary"]["any_drift"] and kind in doc["summary"]["flagged"], (regime, kind, doc["flagged"])
        # the measured slope agrees with the injected one within 3 of its (68 %) error bars
        assert abs(whole.slope_per_day - truth) <= 3 * whole.slope_err_per_day, \
            (regime, kind, whole.slope_per_day, truth)
