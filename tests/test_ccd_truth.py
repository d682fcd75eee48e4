"""Truth tests of the CCD branch: simulated frames through the same functions the workflow's
rules call (tests/ccdkit.run_branch), compared with the simulator's truth file.

Sweep: 100 seeds of a 64 x 96 (+ 8 overscan columns) CCD, 6 bias frames, 3 darks at 7 and
70 s and 5 at 300 s (the one with most cosmic rays), lights at 120 s (so the 300 s master is
scaled), 3 % hot pixels. Per seed:

* dark rate = mean over the pixels that are not hot of dark_rate.fits [e-/s], vs the truth's mean
  over the same pixels; sigma = the per-pixel UNCERT combined ⊕ RATECOH (the error common to all
  pixels from the subtracted overscan levels);
* read noise [e-, single read] from bias pairs vs the truth's RNEFF_E (analog read noise with the
  ADC's quantization, sqrt(RN^2 + g^2 / 12));
* hot pixels (dark_rate > hot_threshold) vs the injected ones;
* the 300 s master scaled to 70 s minus the 70 s master: median over pixels that are not hot
  [ADU], sigma = 1.2533 x rms per-pixel error / sqrt(N) ⊕ the masters' level errors.

Run with -s to print the table.
"""

import math

import numpy as np
import pytest
from astropy.nddata import CCDData

import ccdkit

SPEC = {"rows": 64, "columns": 96, "overscan": 8, "nbias": 6, "darks": {7: 3, 70: 3, 300: 5},
        "lights": {120: 1}, "overrides": {"hot_fraction": 0.03}}
SEEDS = range(100)


def _measure(tmp, seed, spec=SPEC, cfg=None):
    p = ccdkit.run_branch(tmp / f"s{seed}", spec, seed, cfg=cfg)
    truth = p["truth"]
    rate = CCDData.read(p["dark_rate"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    normal = ~truth["hot"]
    n = normal.sum()
    stat = math.sqrt(float(np.sum(rate.uncertainty.array[normal].astype(np.float64) ** 2))) / n
    row = {"seed": seed,
           "rate": float(rate.data[normal].astype(np.float64).mean()),
           "rate_truth": float(truth["dark_rate"][normal].mean()),
           "rate_sigma": math.hypot(stat, float(rate.meta["RATECOH"])),
           "hot_found": rate.mask.astype(bool), "hot_truth": truth["hot"]}
    summary = __import__("json").load(open(p["ccd.json"]))["summary"]
    row.update(rn=summary["read_noise_e"], rn_sigma=summary["read_noise_err_e"],
               rn_truth=float(truth["header"]["RNEFF_E"]))
    if 70 in p["master_darks"] and 300 in p["master_darks"]:
        m70 = CCDData.read(p["master_darks"][70], hdu_uncertainty="UNCERT", hdu_mask="MASK")
        m300 = CCDData.read(p["master_darks"][300], hdu_uncertainty="UNCERT", hdu_mask="MASK")
        bias = CCDData.read(p["master_bias"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
        f = 70.0 / float(m300.meta["EXPTIME"])
        res = (f * m300.data.astype(np.float64) - m70.data)[normal]
        # per-pixel (independent) part: UNCERT^2 without the master bias (common to both masters,
        # enters as (1 - f) B) and without the overscan values' noise (common to a row; its mean
        # over the frame is the masters' level error OSCNERR, counted in ``coh``)
        def own(m):
            return m.meta["OSCNOISE"] ** 2 / m.meta["NCOMBINE"]

        sb2 = bias.uncertainty.array.astype(np.float64) ** 2
        var = (f ** 2 * (m300.uncertainty.array ** 2 - sb2 - own(m300)) + (m70.uncertainty.array ** 2 - sb2 - own(m70))
               + (1 - f) ** 2 * (sb2 - own(bias)))[normal]
        coh = math.sqrt((f * m300.meta["OSCNERR"]) ** 2 + m70.meta["OSCNERR"] ** 2
                        + ((1 - f) * bias.meta["OSCNERR"]) ** 2)
        row.update(resid=float(np.median(res)),
                   resid_sigma=math.hypot(1.2533 * math.sqrt(float(var.mean()) / n), coh))
    return row, p


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ccd_truth")
    rows = [_measure(tmp, seed)[0] for seed in SEEDS]
    print("\nseed  rate[e-/s]  truth     sigma     z     | RN[e-]  truth  sigma  z     | hot TP/FP/FN | "
          "resid[ADU] sigma  z")
    for r in rows:
        tp = int((r["hot_found"] & r["hot_truth"]).sum())
        fp = int((r["hot_found"] & ~r["hot_truth"]).sum())
        fn = int((~r["hot_found"] & r["hot_truth"]).sum())
        print(f"{r['seed']:<4d}  {r['rate']:.5f}  {r['rate_truth']:.5f}  {r['rate_sigma']:.5f}  "
              f"{(r['rate'] - r['rate_truth']) / r['rate_sigma']:+.2f} | {r['rn']:.3f}  {r['rn_truth']:.3f}  "
              f"{r['rn_sigma']:.3f}  {(r['rn'] - r['rn_truth']) / r['rn_sigma']:+.2f} | {tp}/{fp}/{fn} | "
              f"{r['resid']:+.4f}  {r['resid_sigma']:.4f}  {r['resid'] / r['resid_sigma']:+.2f}")
    return rows


def _coverage(z):
    z = np.abs(np.asarray(z))
    return float(np.mean(z <= 1)), float(np.mean(z <= 2))


def test_dark_rate_within_max_1pct_or_2sigma_and_error_bar_covers_truth(sweep):
    err = [abs(r["rate"] - r["rate_truth"]) for r in sweep]
    ok = [e <= max(0.01 * r["rate_truth"], 2 * r["rate_sigma"]) for e, r in zip(err, sweep)]
    assert np.mean(ok) >= 0.9
    one, two = _coverage([(r["rate"] - r["rate_truth"]) / r["rate_sigma"] for r in sweep])
    assert 0.55 <= one <= 0.80 and two >= 0.90, (one, two)


def test_dark_rate_per_pixel_error_bars_cover_the_truth(tmp_path):
    row, p = _measure(tmp_path, 100)
    rate = CCDData.read(p["dark_rate"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    normal = ~p["truth"]["hot"]
    z = ((rate.data - p["truth"]["dark_rate"]) / rate.uncertainty.array)[normal]
    one, two = _coverage(z)
    assert 0.60 <= one <= 0.76 and 0.92 <= two <= 0.98, (one, two)


def test_read_noise_from_bias_pairs_within_2pct_with_covering_error_bar(sweep):
    assert all(abs(r["rn"] / r["rn_truth"] - 1) <= 0.02 for r in sweep)
    one, two = _coverage([(r["rn"] - r["rn_truth"]) / r["rn_sigma"] for r in sweep])
    assert 0.55 <= one <= 0.80 and two >= 0.90, (one, two)


def test_hot_pixels_precision_and_recall_at_least_99pct(sweep):
    found = np.concatenate([r["hot_found"].ravel() for r in sweep])
    truth = np.concatenate([r["hot_truth"].ravel() for r in sweep])
    tp = (found & truth).sum()
    assert truth.sum() > 1000
    assert tp / found.sum() >= 0.99 and tp / truth.sum() >= 0.99
    assert all((r["hot_found"] != r["hot_truth"]).sum() <= 1 for r in sweep)


def test_300s_master_scaled_to_70s_leaves_a_median_residual_consistent_with_zero(sweep):
    z = [r["resid"] / r["resid_sigma"] for r in sweep]
    one, two = _coverage(z)
    assert 0.55 <= one <= 0.80 and two >= 0.90, (one, two)
    assert all(abs(v) < 3.5 for v in z)
