"""Truth tests of the dark-current analysis through the real pipeline (issue 10).

Each campaign is simulated and reduced by ``tests/truthkit.reduce_campaign`` as the workflow
does (READNOISE, and for NIR SUPERBIAS, built from an independent calibration exposure; the
branch without dark subtraction: jump ramps and rateints), then
:func:`detcal.analysis.darkcurrent.dark_current_file` measures the whole-array dark current, with
the no-dark jump ramps for MIRI's anomaly correction, as the workflow rule does.

Truth: the same statistic on the simulator's true dark-rate map over the same pixels, i.e. the
mean true rate [e-/s] of the pixels that the measurement's 3-sigma clipping kept (selection
and clip bounds from the analysis' own table). Coverage: over 20 seeds
``|measured - truth| <= 1 sigma`` in 55-80 % and ``<= 2 sigma`` in >= 90 % (sigma: the quoted
``dark_current_err``).

Sizes are tiny (NIR 32 px, MIRI 24 rows) and each campaign has 1 science exposure of 8-9
integrations and 1 calibration exposure. The calibration set matters: with the simulator's
white-noise READNOISE instead of the pipeline-built one (``ncal=0``) the NIR jump step flags
1/f excursions and the NIR coverage drops to 55 % / 75 % (measured), so the sweeps build it.
"""

import math

import numpy as np
import pytest

from detcal.analysis import common, darkcurrent, robust

from truthkit import reduce_campaign

NSEEDS = 20

NIR_SPEC = {"name": "NRCALONG", "preset": "nircam_lw", "size": 32, "ngroups": 10, "nints": 8,
            "nexposures": 1, "overrides": {"tframe": 10.73677}}
MIRI_SPEC = {"name": "MIRIMAGE", "preset": "miri_imager", "size": 24, "ngroups": 40, "nints": 9,
             "nexposures": 1}


def measure(tmp, spec, seed, enabled=None, ncal=1):
    """(measured, sigma, truth) [e-/1000 s] of one campaign, and the analysis document."""
    camp = reduce_campaign(tmp, spec, seed, ncal=ncal, branches=("nodark",), enabled=enabled)
    rateints = camp.paths("rateints")
    doc = darkcurrent.dark_current_file(rateints, camp.references["gain"], f"{tmp}/dc.tsv",
                                        f"{tmp}/dc.json", ramp_paths=camp.paths("jump"))
    cube, dq, headers, _ = darkcurrent.read_group(rateints)
    _, _, active = common.layout(headers[0], cube.shape, rateints[0])
    select = darkcurrent.pixel_selection(active, dq)
    row = next(r for r in doc["table"] if r["amplifier"] == common.ALL)
    image = robust.clipped_mean_std_images(cube)[0]
    kept = select & (image >= row["clip_lower_DN_per_s"]) & (image <= row["clip_upper_DN_per_s"])
    truth = float(camp.truth["dark_rate"][kept].mean()) * 1000.0
    return row["mean_e_per_1000s"], row["sigma_stat_e_per_1000s"], truth, doc


def sweep(tmp_path, spec, label, enabled=None):
    rows = []
    for seed in range(NSEEDS):
        m, s, t, _ = measure(tmp_path / f"s{seed}", spec, seed, enabled)
        rows.append((seed, m, s, t, (m - t) / s))
    z = np.array([r[4] for r in rows])
    print(f"\n{label}: seed, measured, sigma, truth [e-/1000 s], z")
    for r in rows:
        print("  %2d %9.3f %8.3f %9.3f %+6.2f" % r)
    in1, in2 = np.mean(np.abs(z) <= 1), np.mean(np.abs(z) <= 2)
    print(f"  within 1 sigma {in1:.0%}, within 2 sigma {in2:.0%}, mean z {z.mean():+.2f}")
    return rows, in1, in2


def test_nir_dark_current_error_covers_the_truth_over_20_seeds(tmp_path):
    _, in1, in2 = sweep(tmp_path, NIR_SPEC, "NIR long-wave, 8 x 10 groups, ~10.7 s")
    assert 0.55 <= in1 <= 0.80 and in2 >= 0.90


def test_miri_dark_current_error_covers_the_truth_over_20_seeds_without_reset_step(tmp_path):
    """The reset step off: the full reset anomaly and RSCD are in the no-dark slopes, and the
    analysis removes their bias from the data (anomaly_bias)."""
    _, in1, in2 = sweep(tmp_path, MIRI_SPEC, "MIRI, reset step off, 9 x 40 groups",
                        enabled={"reset": False})
    assert 0.55 <= in1 <= 0.80 and in2 >= 0.90


@pytest.mark.parametrize("overrides,enabled,regime", [
    # a power law that fades to 1 % by group 15 as JDox says MIRI's reset anomaly does
    ({"reset_power": 3.0, "reset_tau": 1.4}, {"reset": False}, "power-law reset anomaly, reset step off"),
    ({}, None, "the default chain (reset step on), RSCD in integrations 2+"),
])
def test_miri_dark_current_is_within_3_sigma_of_the_truth_in_other_regimes(tmp_path, overrides,
                                                                          enabled, regime):
    """Two seeds per regime, each within 3 sigma (the issue asks max(2 %, 2 sigma); measured
    over seeds these regimes reach it in most but not all seeds, see the lead's note), and the
    anomaly correction never makes the estimate worse than the uncorrected slopes by more
    than its own error."""
    spec = dict(MIRI_SPEC, overrides=overrides)
    for seed in (101, 102):
        m, s, t, doc = measure(tmp_path / f"s{seed}", spec, seed, enabled)
        row = next(r for r in doc["table"] if r["amplifier"] == common.ALL)
        removed = row["anomaly_bias_DN_per_s"] * row["gain_e_per_DN"] * 1000
        print(f"{regime}, seed {seed}: {m:.1f} +- {s:.1f} e-/1000 s, truth {t:.1f} "
              f"({100 * (m - t) / t:+.1f} %), uncorrected {m + removed:.1f}")
        assert math.isfinite(s) and s < 0.2 * t
        assert abs(m - t) <= 3 * s
        assert abs(m - t) <= abs(m + removed - t) + s


def test_miri_anomaly_correction_recovers_a_known_bias_from_mean_ramps():
    """Pure arrays: mean ramps = rate x group + a power-law reset anomaly (and an RSCD-like
    term in the later integrations); the bias of slopes fitted from group 10 is what the
    anomaly's own least-squares slope over those groups is, and anomaly_bias finds it."""
    rng = np.random.default_rng(5)
    ngroups, rate = 40, 0.14
    g = np.arange(ngroups, dtype=float)
    reset = -40.0 * darkcurrent.decay(g, 1.4, 3.0)        # 1 % left at group 15 (JDox)
    rscd = 20.0 * darkcurrent.decay(g, 1.5)
    fitted = np.zeros(ngroups, bool)
    fitted[10:39] = True
    diffs, first = [], []
    for i in range(9):
        shape = reset * (1.0 if i % 3 == 0 else 0.85) + (0 if i % 3 == 0 else rscd)
        ramp = rate * g + shape + rng.normal(0, 0.02, ngroups)
        diffs.append({"all": np.diff(ramp)})
        first.append(i % 3 == 0)
    first = np.array(first)
    bias, fit = darkcurrent.anomaly_bias(diffs, [fitted] * 9, first, "all")
    w = darkcurrent.ols_weights(fitted)
    truth_bias = np.array([w @ (reset * (1.0 if f else 0.85) + (0 if f else rscd)) for f in first])
    print("bias found", np.round(bias, 4), "true", np.round(truth_bias, 4), fit["late_start"])
    assert np.all(np.abs(bias - truth_bias) < 0.1 * rate)
    assert abs(np.mean(bias - truth_bias)) < 0.03 * rate


def test_short_miri_ramps_give_no_dark_current_rather_than_a_biased_one(tmp_path):
    """A 10-group FAST ramp leaves 5 groups after the branch's DO_NOT_USE groups, where the RSCD
    transient of integrations 2+ still dominates the slope (uncorrected it reads about -100
    e-/1000 s for a true +200): the summary says why there is no number, and a 24-group ramp
    of the same detector is measured."""
    short = dict(MIRI_SPEC, ngroups=10, nints=3, nexposures=2)
    _, _, _, doc = measure(tmp_path / "short", short, seed=5)
    s = doc["summary"]
    assert math.isnan(s["dark_current_e_per_1000s"]) and s["verdict"] == "N/A"
    assert "NGROUPS=10" in s["note"]
    m, sig, truth, doc = measure(tmp_path / "long", dict(short, ngroups=24), seed=5)
    assert "note" not in doc["summary"]
    assert abs(m - truth) <= 3 * sig, (m, sig, truth)


#: Very short NIR ramps (issue: a 33 ms full-frame campaign read -52464 +/- 15612 e-/1000 s):
#: the simulator's own 32 x 32 frame time (6.6 ms, 4 outputs) and a 1-output subarray-like
#: 10 ms frame, 5 groups each, 8 integrations; 10 seeds each.
SHORT_SPECS = (
    (dict(NIR_SPEC, ngroups=5, overrides={}), "32 x 32 full-frame timing (6.6 ms), 4 outputs, 5 groups"),
    (dict(NIR_SPEC, ngroups=5, overrides={"noutputs": 1, "tframe": 0.01}), "1 output, 10 ms frames, 5 groups"),
)


def test_short_nir_ramps_error_covers_the_truth_and_the_verdict_is_not_applicable(tmp_path):
    """On 33-50 ms ramps the dark charge (~0.001 e-) is far below the read noise: the measured
    mean is still an unbiased estimate whose sigma_stat covers the truth at the stated rate
    (measured over 30 seeds in 6 short regimes, module docstring of darkcurrent, 5), but a
    PASS/FAIL against the expected 27 e-/1000 s means nothing (sigma_stat ~ 10^3-10^4
    e-/1000 s), so the verdict is N/A with a note saying why."""
    z = []
    for spec, label in SHORT_SPECS:
        for seed in range(10):
            m, s, t, doc = measure(tmp_path / f"{len(z)}", spec, seed)
            z.append((m - t) / s)
            print(f"{label}, seed {seed}: {m:9.0f} +- {s:7.0f} e-/1000 s, truth {t:5.1f}, z {z[-1]:+.2f}")
            summary = doc["summary"]
            assert s > darkcurrent.NO_POWER_RATIO * summary["expected_e_per_1000s"]
            assert summary["verdict"] == "N/A" and "too short" in summary["note"]
            assert set(summary["amplifier_verdicts"].values()) == {"N/A"}
            assert math.isfinite(m) and math.isfinite(s)
    z = np.abs(z)
    in1, in2 = np.mean(z <= 1), np.mean(z <= 2)
    print(f"within 1 sigma {in1:.0%}, within 2 sigma {in2:.0%}")
    assert 0.55 <= in1 <= 0.80 and in2 >= 0.90


def test_verdict_is_not_applicable_when_the_error_dwarfs_the_expectation():
    ratio = darkcurrent.NO_POWER_RATIO
    assert darkcurrent.verdict(-52464.0, 15612.0, 1.9, 1.1) == "N/A"         # 33 ms ramps
    assert darkcurrent.verdict(2.4, 1.6, 1.9, 1.1) == "PASS"                 # the demo's SW group
    assert darkcurrent.verdict(30.0, 0.99 * ratio * 1.9, 1.9, 1.1) == "FAIL"  # still a test
    assert darkcurrent.verdict(30.0, 1.01 * ratio * 1.9, 1.9, 1.1) == "N/A"
