"""Effective noise and CDS noise decomposition (detcal.analysis.effnoise, detcal.analysis.noise).

Closed-form checks on tiny arrays, then truth recovery on small simulated detectors
(detcal.simulate, 64-128 px) with known read noise, dark rate and 1/f amplitudes.
"""

import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from detcal import io
from detcal.analysis import effnoise, noise, robust
from detcal.geometry import Geometry
from detcal.noise_conventions import pink_amplitude
from detcal.simulate import make_detector, simulate_exposure
from detcal.simulate.noise import Clock

from conftest import make_reference_header

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
QUIET = dict(amp_offset=0.0, amp_drift=0.0, cr_rate=0.0, nonlin=False)


def simulated(name, preset, size, ngroups, nints=1, seed=1, **overrides):
    return make_detector({"name": name, "preset": preset, "size": size, "ngroups": ngroups,
                          "nints": nints, "overrides": {**QUIET, **overrides}}, seed=seed)


def ramps_of(det, nexp):
    """Every integration of ``nexp`` exposures as float32 (ngroups, ny, nx) [DN], bias subtracted."""
    for e in range(nexp):
        data, _, _ = simulate_exposure(det, index=e)
        for integ in data:
            yield integ.astype(np.float32) - det.science(det.bias)[None]


def cds_frames_of(det, nexp):
    for ramp in ramps_of(det, nexp):
        for g0, g1 in noise.cds_pairs(ramp.shape[0]):
            yield ramp[g1].astype(np.float64) - ramp[g0]


def write_products(det, tmp_path, nexp):
    """Write exposures as RampModel-layout products (bias subtracted) + a GAIN reference."""
    paths = []
    for e in range(nexp):
        data, header, _ = simulate_exposure(det, index=e)
        sci = data.astype(np.float32) - det.science(det.bias)[None, None]
        ramp = io.Ramp(sci, np.zeros(det.shape, np.uint32), np.zeros(sci.shape, np.uint8), header)
        path = str(tmp_path / f"e{e:02d}_linearity.fits")
        io.write_ramp(ramp, path, step="linearity")
        paths.append(path)
    gain_path = str(tmp_path / "gain.fits")
    io.write_reference(gain_path, "GAIN", {"SCI": np.full(det.shape, det.gain, np.float32)},
                       make_reference_header("GAIN", header))
    return paths, gain_path


# ---------------------------------------------------------------------------------------------
# closed form
# ---------------------------------------------------------------------------------------------
def test_ols_slopes_equal_polyfit_for_every_group_count():
    rng = np.random.default_rng(0)
    ramp = rng.normal(100.0, 5.0, (7, 3, 4)) + 2.0 * np.arange(7)[:, None, None]
    ns = [2, 4, 7]
    slopes = effnoise.ols_slopes(ramp, ns, tgroup=10.0)
    for i, n in enumerate(ns):
        t = 10.0 * np.arange(1, n + 1)
        expect = np.polyfit(t, ramp[:n].reshape(n, -1), 1)[0].reshape(3, 4)
        np.testing.assert_allclose(slopes[i], expect, rtol=1e-5)


def _exact_ols_variance(n, m, s, tframe, rn, flux):
    """Covariance-matrix variance of the accumulated OLS signal (group means of m frames, Poisson)."""
    times = np.array([[(g * (m + s) + j + 1) * tframe for j in range(m)] for g in range(n)])
    cov = np.array([[flux * np.minimum.outer(times[i], times[j]).mean() for j in range(n)] for i in range(n)])
    cov += np.eye(n) * rn ** 2 / m
    x = np.arange(n) * (m + s) * tframe
    w = (x - x.mean()) / ((x - x.mean()) ** 2).sum() * (n - 1) * (m + s) * tframe
    return w @ cov @ w


@pytest.mark.parametrize("n, m, s, flux", [(10, 8, 12, 1.0), (5, 4, 1, 5.0), (10, 1, 0, 0.03), (7, 2, 3, 2.0)])
def test_multiaccum_formula_is_exact_for_ols_on_group_means(n, m, s, flux):
    # the Robberto-corrected frame term (minus sign, m^2 - 1) makes it exact; "+" or (2m-1) would not be
    got = effnoise.multiaccum_variance(n, m, 1.3, 6.0, flux, groupgap=s)
    assert got == pytest.approx(_exact_ols_variance(n, m, s, 1.3, 6.0, flux), rel=1e-10)


def test_multiaccum_two_groups_is_cds_noise_plus_shot():
    assert effnoise.multiaccum_variance(2, 1, 10.0, 7.0, 0.0) == pytest.approx(2 * 7.0 ** 2)
    assert effnoise.multiaccum_variance(2, 1, 10.0, 7.0, 0.5) == pytest.approx(2 * 49 + 10.0 * 0.5)
    assert effnoise.read_noise_from_n2(2 * 49 + 5.0, 1, 10.0, 0.5) == pytest.approx(7.0)


def test_default_group_counts_follow_pynrc_and_cap_at_ngroups():
    assert effnoise.default_group_counts(10) == list(range(2, 11))
    ns = effnoise.default_group_counts(93)
    assert ns[:4] == [2, 3, 5, 10] and ns[-1] == 93 and ns == sorted(set(ns)) and len(ns) == 18


def test_excess_fit_recovers_injected_excess_variance():
    n = np.arange(2, 40)
    theory = effnoise.multiaccum_variance(n, 1, 10.7, 9.0, 0.03)
    measured = theory + effnoise.excess_variance(n, 1, 1.2, 5.0)
    fit = effnoise.fit_excess_variance(n, 1, measured, theory)
    assert fit["p0"] == pytest.approx(1.2, rel=1e-4) and fit["p1"] == pytest.approx(5.0, rel=1e-3)
    assert fit["excess_positive"] and fit["excess_var_nmax"] > 0


def test_clipped_sigma_has_no_quantisation_steps_on_integer_data():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0.0, 2.7, 200_000))
    truth = np.sqrt(2.7 ** 2 + 1 / 12)                 # rounding adds 1/12 DN^2
    assert robust.clipped_sigma(x) == pytest.approx(truth, rel=0.01)
    assert abs(robust.mad_sigma(x) / truth - 1) > 0.05   # the plain MAD is off by a step
    x[:500] = 1e4                                       # outliers do not matter
    assert robust.clipped_sigma(x) == pytest.approx(truth, rel=0.01)


def test_median_variance_is_unbiased_for_few_samples():
    rng = np.random.default_rng(2)
    var = rng.normal(0.0, 3.0, (11, 40_000)).var(axis=0, ddof=1)
    assert robust.median_variance(var, 10) == pytest.approx(9.0, rel=0.01)
    assert np.median(var) < 0.95 * 9.0                  # the plain median is biased low


def test_cds_pink_autocovariance_at_zero_lag_is_the_band_integral():
    tg, dt = 0.05, 1e-5
    f = np.linspace(1e-3, 0.5 / dt, 2_000_001)
    integrand = 4 * np.sin(np.pi * f * tg) ** 2 / f
    expect = np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(f))
    got = noise.cds_pink_autocovariance(np.array([0.0]), tg, dt=dt)[0]
    assert got == pytest.approx(expect, rel=1e-3)


@pytest.mark.parametrize("name", ["NRCA1", "NRCA2", "NIS"])
def test_readout_order_puts_every_output_in_read_sequence(name):
    """A stream read through the simulator's clock comes back in read order for any FASTAXIS/SLOWAXIS."""
    det = simulated(name, "nircam_sw", 32, 2)
    clock = Clock(32, 32, 4)
    stream = np.arange(clock.window, dtype=np.float32)
    sci = det.science(clock.image(common=stream))
    blocks = noise.readout_order(sci, det.geometry)
    expect = clock.to_block(stream)
    for k in range(4):
        np.testing.assert_array_equal(blocks[k], expect)
    np.testing.assert_array_equal(noise.from_readout_order(blocks, det.geometry), sci)


def test_readout_order_rejects_miri():
    h = fits.Header({"INSTRUME": "MIRI", "SUBARRAY": "FULL", "SUBSTRT1": 1, "SUBSTRT2": 1,
                     "SUBSIZE1": 16, "SUBSIZE2": 8})
    with pytest.raises(ValueError, match="NIR"):
        noise.readout_order(np.zeros((8, 16)), Geometry.from_header(h, (8, 16)))


# ---------------------------------------------------------------------------------------------
# truth recovery: effective noise
# ---------------------------------------------------------------------------------------------
def _lw_detector(nints=1, **overrides):
    # NIRCam LW dark (0.034 e-/s) with full-frame frame time: at 40 groups (419 s) shot noise is
    # ~40 % of the variance, so the dark terms of the formula are tested, not only the read term
    return simulated("NRCALONG", "nircam_lw", 128, 40, nints=nints, seed=7, tframe=10.73677,
                     rn_scatter=0.0, **overrides)


def test_temporal_effective_noise_matches_multiaccum_formula_on_white_noise():
    """White read noise + dark current with shot noise, no 1/f, no amplifier offsets or drifts.

    Statistics: 30 ramps, 3600 active pixels per output. The temporal estimate of one output has a
    relative error of about 1.2533 * sqrt(2/29) / sqrt(3600) / 2 = 0.29 % (median of 3600 sample
    variances with 29 dof, halved for sigma), 0.15 % for the average of 4 outputs; ADC rounding
    (1/12 DN^2 per read) adds +0.2 %. The test allows 3 %; measured agreement is 0.1-0.6 %.
    """
    det = _lw_detector(c_pink=0.0, u_pink=0.0)
    ns = effnoise.default_group_counts(40)
    stats = effnoise.measure_effective_noise(ramps_of(det, 30), det.geometry, det.tframe, ns)
    assert stats["nramps"] == 30 and stats["temporal_ok"]
    table, summary = effnoise.effective_noise_table(stats, np.full(4, det.gain), det.tframe, det.tframe)
    flux = float(np.median(det.dark_rate[det.response]))              # truth [e-/s]
    rn = det.params["rn_cds"] / np.sqrt(2)                            # truth single-frame [e-]
    formula = np.sqrt(effnoise.multiaccum_variance(np.array(ns), 1, det.tframe, rn, flux))
    for chan in ("1", "2", "3", "4", "all"):
        measured = table[table.amplifier == chan].eff_noise_temporal_e.to_numpy()
        np.testing.assert_allclose(measured, formula, rtol=0.03, err_msg=f"channel {chan}")
    measured = table[table.amplifier == "all"].eff_noise_temporal_e.to_numpy()
    assert np.max(np.abs(measured / formula - 1)) < 0.01               # what it actually achieves
    # the measured inputs of the theory curve agree with the truth
    assert summary["all"]["read_noise_n2_e"] == pytest.approx(rn, rel=0.02)
    assert summary["all"]["dark_rate_e_per_s"] == pytest.approx(flux, rel=0.1)
    fit = summary["all"]["excess_fit"]
    assert abs(fit["excess_var_nmax"]) < 3 * fit["excess_var_nmax_err"]   # no excess without 1/f


def test_excess_variance_is_positive_and_reported_with_1f_noise(tmp_path):
    """Default NIRCam 1/f (c_pink 3 e-, u_pink 1 e-), 3 files x 8 integrations = 24 ramps, file level."""
    det = _lw_detector(nints=8)
    paths, gain_path = write_products(det, tmp_path, 3)
    table, doc = effnoise.effective_noise_files(paths, tmp_path / "en.tsv", tmp_path / "en.json",
                                                tmp_path / "en.png", gain_path=gain_path)
    fit = doc["channels"]["all"]["excess_fit"]
    assert doc["nramps"] == 24 and doc["temporal_valid"]
    assert fit["excess_positive"] and fit["excess_significant"]
    assert fit["p0"] >= 0 and np.isfinite(fit["p1"]) and 0 < fit["p0_err"] < 5 and np.isfinite(fit["p1_err"])
    saved = json.loads((tmp_path / "en.json").read_text())
    assert saved["channels"]["all"]["excess_fit"]["excess_positive"] is True
    tab = pd.read_csv(tmp_path / "en.tsv", sep="\t", dtype={"amplifier": str})
    last = tab[tab.amplifier == "all"].iloc[-1]
    assert last.eff_noise_temporal_e > 1.02 * last.theory_e              # the 1/f excess (2.4 %)
    assert last.theory_plus_excess_e == pytest.approx(last.eff_noise_temporal_e, rel=0.03)
    assert set(tab.amplifier) == {"1", "2", "3", "4", "all", "reference"}
    assert (tmp_path / "en.png").stat().st_size > 10_000


def test_effective_noise_with_fewer_than_10_ramps_is_spatial_only(tmp_path, caplog):
    det = simulated("NRCA1", "nircam_sw", 64, 6, nints=3)
    paths, gain_path = write_products(det, tmp_path, 1)
    table, doc = effnoise.effective_noise_files(paths, tmp_path / "en.tsv", tmp_path / "en.json",
                                                tmp_path / "en.png", gain_path=gain_path)
    assert doc["nramps"] == 3 and not doc["temporal_valid"] and "at least 10" in doc["note"]
    assert "at least 10" in caplog.text
    assert table.eff_noise_temporal_e.isna().all() and table.eff_noise_spatial_e.notna().all()
    assert not table.temporal_valid.any()
    assert (tmp_path / "en.png").exists()


# ---------------------------------------------------------------------------------------------
# truth recovery: noise decomposition
# ---------------------------------------------------------------------------------------------
def test_noise_decomposition_recovers_simulated_white_and_1f_amplitudes():
    """Default NIRCam SW noise (white CDS 15.77 e-, c_pink 3 e-, u_pink 1 e-), 128 px, 600 CDS frames.

    The 1/f amplitudes are compared in the simulator's convention (rms over 1/10.74 s..Nyquist,
    converted from the fitted A of S(f) = A/f). Statistical errors of this data set: white 0.1 %,
    c_pink 0.3 %, u_pink (output mean) 3.5 %, u_pink per output ~7 %. The per-integration
    amplifier offsets (amp_offset, on) cancel in a CDS.
    """
    det = simulated("NRCA1", "nircam_sw", 128, 10, seed=3, amp_offset=30.0)
    res = noise.analyse_cds_frames(cds_frames_of(det, 120), det.geometry, dt=det.params["pixel_time"],
                                   tgroup=det.tframe, tframe=det.tframe)
    assert res["nframes"] == 600
    summary = noise.fit_summary(res, np.full(4, det.gain))
    active = ~det.reference
    # the white CDS noise the simulator injects (rn_frame map, incl. its 5 % scatter)
    white_truth = np.sqrt(2 * np.mean(det.rn_frame[active].astype(float) ** 2))
    assert summary["white"]["all"]["cds_noise_e"] == pytest.approx(white_truth, rel=0.10)
    assert summary["white"]["all"]["cds_noise_e"] == pytest.approx(white_truth, rel=0.01)
    for k in "1234":
        assert summary["white"][k]["cds_noise_e"] == pytest.approx(white_truth, rel=0.10)
        assert summary["pink_uncorr"][k]["rms_e"] == pytest.approx(1.0, rel=0.25)
    assert summary["pink_corr"]["rms_e"] == pytest.approx(3.0, rel=0.10)
    assert summary["pink_uncorr"]["all"]["rms_e"] == pytest.approx(1.0, rel=0.10)
    # time domain: leakage-corrected white noise agrees too (raw is low by sqrt(1 - h0))
    tab = noise.noise_table(res, np.full(4, det.gain))
    white = tab[(tab.amplifier == "all") & (tab.pixels == "active") & (tab.component == "white")]
    for _, row in white.iterrows():
        assert row.cds_noise_e == pytest.approx(white_truth, rel=0.10)
        assert row.cds_noise_raw_e == pytest.approx(row.cds_noise_e * np.sqrt(1 - res["h0"]), rel=1e-6)


def test_pink_kernel_matches_the_spectrum_of_simulated_correlated_1f():
    """Pure correlated 1/f, no white noise: the cross spectrum follows A K(f) bin by bin."""
    det = simulated("NRCA2", "nircam_sw", 64, 10, seed=5, rn_cds=0.0, u_pink=0.0, ktc=0.0,
                    dark_median=0.0, warm_frac=0.0, hot_frac=0.0, very_hot_frac=0.0, gain=0.05)
    res = noise.analyse_cds_frames(cds_frames_of(det, 40), det.geometry, tgroup=det.tframe,
                                   tframe=det.tframe, clip=1e9, nbins=25)
    amp = pink_amplitude(3.0) / det.gain ** 2
    ratio = res["spectra"]["cross"] / (amp * res["spectra"]["kernel"])
    weights = res["spectra"]["nbins_fft"]
    assert np.average(ratio, weights=weights) == pytest.approx(1.0, abs=0.03)
    assert np.all(np.abs(ratio[weights >= 20] - 1) < 0.1)
    # every output sees the same stream in readout order: auto = cross
    np.testing.assert_allclose(res["spectra"]["auto"].mean(axis=0), res["spectra"]["cross"], rtol=1e-3)  # ADC rounding


def test_noise_decomposition_files_write_tables_json_and_figures(tmp_path):
    det = simulated("NRCA1", "nircam_sw", 64, 6, nints=3, seed=4)      # FASTAXIS=-1
    paths, gain_path = write_products(det, tmp_path, 2)                   # 2 x 3 x 3 = 18 CDS frames
    out = {k: tmp_path / f"{k}" for k in ("n.tsv", "s.tsv", "f.json", "c.png", "p.png")}
    ntab, stab, summary = noise.noise_decomposition_files(
        paths, out["n.tsv"], out["s.tsv"], out["f.json"], out["c.png"], out["p.png"], gain_path=gain_path)
    saved = json.loads(out["f.json"].read_text())
    assert saved["n_cds_frames"] == 18 and saved["temporal_valid"]
    assert saved["fit"]["pink_corr"]["rms_e"] > 0 and "white" in saved["fit"]
    tab = pd.read_csv(out["n.tsv"], sep="\t", dtype={"amplifier": str})
    assert set(tab.component) == set(noise.COMPONENTS) and set(tab.statistic) == {"spatial", "temporal"}
    assert set(tab.amplifier) == {"1", "2", "3", "4", "all"} and set(tab.pixels) == {"active", "reference"}
    assert {"cds_noise_DN", "cds_noise_e", "cds_noise_raw_DN"} <= set(tab.columns)
    spec = pd.read_csv(out["s.tsv"], sep="\t")
    assert {"frequency_Hz", "psd_mean_DN2_per_Hz", "psd_cross_DN2_per_Hz",
            "model_total_DN2_per_Hz"} <= set(spec.columns)
    assert (spec.frequency_Hz.diff().dropna() > 0).all()
    assert out["c.png"].stat().st_size > 10_000 and out["p.png"].stat().st_size > 10_000


def test_noise_decomposition_with_few_cds_frames_reports_temporal_missing(tmp_path):
    det = simulated("NRCB1", "nircam_sw", 64, 4, nints=1, seed=6)
    paths, gain_path = write_products(det, tmp_path, 1)                   # 2 CDS frames
    ntab, _, summary = noise.noise_decomposition_files(
        paths, tmp_path / "n.tsv", tmp_path / "s.tsv", tmp_path / "f.json", tmp_path / "c.png",
        tmp_path / "p.png", gain_path=gain_path)
    assert not summary["temporal_valid"] and "at least 10" in summary["note"]
    assert ntab[ntab.statistic == "temporal"].cds_noise_DN.isna().all()
    assert ntab[ntab.statistic == "spatial"].cds_noise_DN.notna().all()


def test_effective_noise_without_gain_reports_dn_only(tmp_path):
    det = simulated("NRCB2", "nircam_sw", 64, 5, nints=4, seed=3)
    paths, _ = write_products(det, tmp_path, 3)
    table, doc = effnoise.effective_noise_files(paths, tmp_path / "en.tsv", tmp_path / "en.json",
                                                tmp_path / "en.png")
    assert table.eff_noise_temporal_DN.notna().all() and table.eff_noise_temporal_e.isna().all()
    assert table.theory_e.isna().all() and "need 2" in doc["channels"]["all"]["excess_fit"]["message"]


def test_open_ramp_reads_single_groups_of_an_uncal_file(tmp_path):
    det = simulated("NRCA3", "nircam_sw", 32, 3, nints=2)
    data, header, _ = simulate_exposure(det)
    io.write_uncal(data, header, tmp_path / "x_uncal.fits")
    with noise.open_ramp(tmp_path / "x_uncal.fits") as ramp:
        assert ramp.shape == data.shape and ramp.pixel_time == pytest.approx(10e-6)
        np.testing.assert_array_equal(ramp.frame(1, 2), data[1, 2])


def test_summary_effective_noise_column_is_the_largest_n_with_its_convention(tmp_path):
    """The group summary's effective-noise column holds the channel average at the largest N [e-]
    (from the effective-noise JSON's ``summary``), and the CDS noise the PSD white level [DN]."""
    from detcal.analysis import summary as summary_mod

    det = simulated("NRCB3", "nircam_sw", 64, 6, nints=4, seed=8)
    paths, gain_path = write_products(det, tmp_path, 3)                   # 12 ramps: temporal
    table, doc = effnoise.effective_noise_files(paths, tmp_path / "en.tsv", tmp_path / "en.json",
                                                None, gain_path=gain_path)
    _, _, nd = noise.noise_decomposition_files(paths, tmp_path / "n.tsv", tmp_path / "s.tsv",
                                               tmp_path / "n.json", None, None, gain_path=gain_path)
    s = doc["summary"]
    last = table[(table.amplifier == "all") & (table.ngroups_fit == 6)].iloc[0]
    assert s["ngroups_max_n"] == 6 and s["statistic"] == "temporal"
    assert s["effective_noise_max_n_e"] == pytest.approx(last.eff_noise_temporal_e, rel=1e-9)
    assert 0 < s["effective_noise_max_n_err_e"] < 0.1 * s["effective_noise_max_n_e"]
    assert np.isfinite(s["excess_max_n_e2"]) and s["excess_max_n_err_e2"] > 0
    assert "largest N = 6" in s["convention"] and "e-" in s["convention"]
    row = summary_mod.summary_file("G", {"effective_noise": str(tmp_path / "en.json"),
                                         "noise_decomposition": str(tmp_path / "n.json")},
                                   str(tmp_path / "sum.tsv"), str(tmp_path / "sum.json"))
    assert row["effective_noise_max_n"] == pytest.approx(s["effective_noise_max_n_e"])
    assert row["effective_noise_key"] == "effective_noise:summary.effective_noise_max_n_e"
    assert row["cds_noise"] == pytest.approx(nd["fit"]["white"]["all"]["cds_noise_DN"])
    assert row["cds_noise_key"] == "noise_decomposition:summary.cds_noise_DN"
    assert "effective noise" in row["effective_noise.convention"]


def test_groups_flagged_on_every_pixel_by_design_do_not_drop_a_ramp(tmp_path):
    """MIRI's lastframe step flags the last group DO_NOT_USE on every pixel (and rscd the first
    groups of later integrations): the effective noise keeps those ramps; only ramps saturated (or
    DO_NOT_USE in every group) on most pixels are left out."""
    from detcal import dqflags
    from detcal.simulate import miri

    spec = {"name": "MIRIMAGE", "preset": "miri_imager", "size": 32, "ngroups": 8, "nints": 2}
    det = miri.make_detector(spec, seed=4)
    paths = []
    for k in range(3):
        data, header, _ = miri.simulate_exposure(det, index=k)
        groupdq = np.zeros(data.shape, np.uint8)
        groupdq[:, -1] = dqflags.DO_NOT_USE                     # as the lastframe step does
        ramp = io.Ramp(data.astype(np.float32), np.zeros(data.shape[2:], np.uint32), groupdq,
                       header, "<memory>")
        paths.append(str(tmp_path / f"m{k}.fits"))
        io.write_ramp(ramp, paths[-1], step="test")
    _, doc = effnoise.effective_noise_files(paths, str(tmp_path / "e.tsv"), str(tmp_path / "e.json"),
                                            None, gain=4.0, min_ramps=4)[:2]
    assert doc["nramps_excluded_flagged"] == 0
    assert doc["nramps"] == 6
