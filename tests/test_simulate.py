"""Tests of the truth-known simulator (detcal.simulate): determinism, truth recovery, files.

Sizes are small (32-128 px) so the whole module runs in a few seconds. Every statistical test
states its tolerance next to the assertion.
"""

import os
import warnings

import numpy as np
import pytest
from scipy.ndimage import maximum_filter

from detcal import dqflags, io, keywords
from detcal import simulate as sim
from detcal.geometry import Geometry
from detcal.simulate import noise

FULL_TFRAME = 10.73677

#: Every effect off: bias only (tests switch on what they measure).
QUIET = dict(rn_cds=0.0, ktc=0.0, c_pink=0.0, u_pink=0.0, amp_offset=0.0, amp_drift=0.0,
             cr_rate=0.0, nonlin=False, shot_noise=False, warm_frac=0.0, hot_frac=0.0,
             very_hot_frac=0.0, dead_frac=0.0, dark_sigma=0.0)


def run(name="NRCA1", preset="nircam_sw", size=64, seed=1, readpatt=None, ngroups=10, nints=1,
        **overrides):
    """Simulate one exposure in memory; data returned as float64."""
    spec = {"name": name, "preset": preset, "size": size, "readpatt": readpatt,
            "ngroups": ngroups, "nints": nints, "overrides": overrides}
    det = sim.make_detector(spec, seed)
    data, header, truth = sim.simulate_exposure(det)
    assert data.dtype == np.uint16 and data.shape == (nints, ngroups, size, size)
    return det, data.astype(np.float64), header, truth


# ----------------------------------------------------------------------------------------------
# Tables and formulas
# ----------------------------------------------------------------------------------------------
def test_frame_time_follows_the_nircam_formula():
    assert sim.frame_time(2048, 2048, 4) == pytest.approx(10.73677, abs=1e-9)
    assert sim.frame_time(640, 640, 1) == pytest.approx(4.18584, abs=1e-9)      # SUB640
    assert sim.frame_time(64, 64, 1) == pytest.approx(0.05016, abs=1e-9)        # SUB64P
    assert sim.frame_time(256, 2048, 4) == pytest.approx(1.34669, abs=1e-9)     # SUBGRISM256


def test_readout_patterns_table():
    assert sim.READ_PATTERNS["RAPID"] == (1, 0)
    assert sim.READ_PATTERNS["DEEP8"] == (8, 12)
    assert sim.READ_PATTERNS["SHALLOW4"] == (4, 1)
    assert sim.frames_per_integration(10, 8, 12) == 188


def test_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="bogus"):
        sim.normalize_spec({"name": "NRCA1", "preset": "nircam_sw", "overrides": {"bogus": 1}})
    with pytest.raises(ValueError, match="nircam_xx"):
        sim.normalize_spec({"name": "NRCA1", "preset": "nircam_xx"})
    with pytest.raises(ValueError, match="fastaxis"):
        sim.normalize_spec({"name": "NRCZZ", "preset": "nircam_sw"})
    with pytest.raises(ValueError, match="FAST9"):
        sim.normalize_spec({"name": "NRCA1", "preset": "nircam_sw", "readpatt": "FAST9"})
    with pytest.raises(ValueError, match="size"):
        sim.normalize_spec({"name": "NRCA1", "preset": "nircam_sw", "size": 60})


def test_header_orientation_comes_from_the_detector_table():
    for name, preset, axes in (("NRCA1", "nircam_sw", (-1, 2)), ("NRCA2", "nircam_sw", (1, -2)),
                               ("NRCALONG", "nircam_lw", (-1, 2)), ("NIS", "niriss", (-2, -1))):
        det = sim.make_detector({"name": name, "preset": preset, "size": 32}, 0)
        h = det.base_header()
        assert (h["FASTAXIS"], h["SLOWAXIS"]) == axes
    assert sim.normalize_spec({"name": "NIS", "preset": "niriss"})["readpatt"] == "NISRAPID"


def test_one_output_readout_uses_the_one_output_frame_time():
    det, d, h, _ = run(size=32, ngroups=3, **dict(QUIET, noutputs=1, c_pink=50.0, rn_cds=15.77))
    assert h["NOUTPUTS"] == 1
    assert h["TFRAME"] == pytest.approx((32 + 12) * (32 + 2) * 10e-6)
    assert np.all(Geometry.from_header(h, (32, 32)).amplifier_map() == 0)
    assert np.diff(d, axis=1).std() > 5


# ----------------------------------------------------------------------------------------------
# Determinism and files
# ----------------------------------------------------------------------------------------------
SMALL_SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 3, "nints": 1,
              "nexposures": 2, "overrides": {"tframe": FULL_TFRAME, "cr_rate": 50.0}}


def _all_files(files):
    return files["uncal"] + list(files["references"].values()) + [files["truth"]]


def test_same_seed_gives_identical_bytes_and_another_seed_different_data(tmp_path):
    a = sim.write_detector_set(SMALL_SPEC, str(tmp_path / "a"), seed=5)
    b = sim.write_detector_set(SMALL_SPEC, str(tmp_path / "b"), seed=5)
    c = sim.write_detector_set(SMALL_SPEC, str(tmp_path / "c"), seed=6)
    for fa, fb in zip(_all_files(a), _all_files(b)):
        with open(fa, "rb") as x, open(fb, "rb") as y:
            assert x.read() == y.read(), os.path.basename(fa)
    for fa, fc in zip(a["uncal"] + [a["references"]["superbias"]], c["uncal"] + [c["references"]["superbias"]]):
        with open(fa, "rb") as x, open(fc, "rb") as y:
            assert x.read() != y.read(), os.path.basename(fa)


def test_plan_names_the_files_before_they_are_written(tmp_path):
    planned = sim.planned_files(SMALL_SPEC, str(tmp_path))
    assert sim.plan(SMALL_SPEC) == ["demo_nrca1_e001", "demo_nrca1_e002"] == planned["exposures"]
    assert sim.simulated_exposure_name("NRCA1", 0) == "demo_nrca1_e001"
    assert not any(os.path.exists(p) for p in _all_files(planned))
    written = sim.write_detector_set(SMALL_SPEC, str(tmp_path), seed=1)
    assert written == planned
    assert all(os.path.exists(p) for p in _all_files(written))
    assert planned["references"]["dark"].endswith(os.path.join("references", "NRCA1", "dark.fits"))


SET_SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 64, "readpatt": "RAPID", "ngroups": 4,
            "nints": 2, "nexposures": 2,
            "overrides": {"tframe": FULL_TFRAME, "hot_frac": 0.01, "warm_frac": 0.02,
                          "dead_frac": 0.005, "cr_rate": 20.0}}
SET_SEED = 11


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    return sim.write_detector_set(SET_SPEC, str(tmp_path_factory.mktemp("demo")), SET_SEED)


def test_uncal_headers_carry_every_keyword_a_step_needs(demo_set):
    starts = []
    for path in demo_set["uncal"]:
        for step in keywords.STEP:
            ramp = io.read_ramp(path, step)               # raises InputError naming a missing keyword
        h = ramp.header
        assert ramp.data.shape == (2, 4, 64, 64)
        assert (h["TELESCOP"], h["INSTRUME"], h["EXP_TYPE"], h["SUBARRAY"]) == ("JWST", "NIRCAM", "NRC_DARK", "FULL")
        assert h["TGROUP"] == pytest.approx((h["NFRAMES"] + h["GROUPGAP"]) * h["TFRAME"])
        assert h["DC_SIM"] is True and h["DC_SEED"] == SET_SEED and h["ZEROFRAM"] is False
        assert h["DATE-OBS"] == "2024-01-01" and h["EFFINTTM"] == pytest.approx(3 * FULL_TFRAME)
        starts.append(h["EXPSTART"])
    assert np.diff(starts) == pytest.approx([1 / 24])     # exposures one hour apart


def test_files_open_and_validate_with_stdatamodels(demo_set):
    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    models = {"mask": dm.MaskModel, "saturation": dm.SaturationModel, "superbias": dm.SuperBiasModel,
              "linearity": dm.LinearityModel, "dark": dm.DarkModel, "gain": dm.GainModel,
              "readnoise": dm.ReadnoiseModel}
    assert set(models) == set(sim.REFERENCE_KEYS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key, model in models.items():
            with model(demo_set["references"][key], strict_validation=True) as m:
                m.validate()
                assert m.meta.reftype == io.REFTYPES[key]
                assert m.meta.instrument.detector == "NRCA1"
        with dm.RampModel(demo_set["uncal"][0], strict_validation=True) as m:
            m.validate()
            assert m.data.shape == (2, 4, 64, 64)
            assert (m.meta.subarray.fastaxis, m.meta.subarray.slowaxis) == (-1, 2)


def test_reference_files_hold_the_truth(demo_set):
    truth = sim.read_truth(demo_set["truth"])
    det = sim.make_detector(SET_SPEC, SET_SEED)             # the same seed redraws the same truth
    refs = {k: io.read_reference(p, io.REFTYPES[k]) for k, p in demo_set["references"].items()}
    geom = Geometry.from_header(refs["mask"].header, (64, 64))
    border = geom.reference_mask()
    mask = refs["mask"].data
    assert np.array_equal((mask & dqflags.REFERENCE_PIXEL) != 0, border)
    assert not np.any(mask[border] & dqflags.DO_NOT_USE)
    for flag, name in ((dqflags.HOT, "hot"), (dqflags.WARM, "warm"), (dqflags.DEAD, "dead")):
        assert np.array_equal((mask & flag) != 0, truth[name].astype(bool)), name
        assert truth[name].sum() > 0, name
    assert np.all(mask[truth["dead"].astype(bool)] & dqflags.DO_NOT_USE)
    # DARK: rate * (g+1) * TFRAME / gain, NFRAMES=1 / GROUPGAP=0, as many groups as the exposures
    dark = refs["dark"]
    h = dark.header
    assert (h["READPATT"], h["NFRAMES"], h["GROUPGAP"], h["NGROUPS"]) == ("RAPID", 1, 0, 4)
    expect = truth["dark_rate_dn"][None] * (np.arange(4)[:, None, None] + 1) * FULL_TFRAME
    np.testing.assert_allclose(dark.data, expect, rtol=1e-6, atol=1e-7)
    assert np.all(dark.data[:, border] == 0)
    np.testing.assert_allclose(refs["readnoise"].data, np.sqrt(2) * truth["rn_frame"] / 2.05, rtol=1e-6)
    np.testing.assert_array_equal(refs["gain"].data, np.float32(2.05))
    np.testing.assert_array_equal(refs["superbias"].data, det.science(det.bias))
    np.testing.assert_array_equal(refs["linearity"].data, det.science(det.coeffs))
    assert refs["linearity"].data.shape == (4, 64, 64) and np.all(refs["linearity"].data[0] == 0)
    sat = refs["saturation"].data
    assert np.all(sat < det.science(det.bias + det.well)) and np.all(sat > refs["superbias"].data)
    # truth header and tables agree with each other
    assert truth["header"]["NCR"] == len(truth["cr_events"]) == truth["exposures"]["n_cr"].sum() > 0
    assert truth["header"]["RNCDS_E"] == 15.77 and truth["header"]["GAIN"] == 2.05
    assert set(truth["cr_events"]["exposure"]) == set(demo_set["exposures"])


# ----------------------------------------------------------------------------------------------
# Truth recovery from the simulator's own output
# ----------------------------------------------------------------------------------------------
def test_white_cds_noise_is_recovered_within_3_percent():
    det, d, h, _ = run(size=128, ngroups=10, **dict(QUIET, rn_cds=15.77, rn_scatter=0.05, ktc=37.6))
    cds = np.diff(d, axis=1)                               # kTC and bias cancel
    active = ~Geometry.from_header(h, d.shape[-2:]).reference_mask()
    measured = cds[..., active].std()
    configured = 15.77 / 2.05                              # DN
    truth_map = np.sqrt(np.mean(2 * det.science(det.rn_frame)[active].astype(float) ** 2)) / 2.05
    assert measured == pytest.approx(configured, rel=0.03)    # measured 7.709 vs 7.693 DN
    assert measured == pytest.approx(truth_map, rel=0.03)
    assert cds[..., ~active].std() == pytest.approx(0.8 * configured, rel=0.05)   # ref_rn_ratio


def test_dark_rate_is_recovered_within_1_percent_or_3_sigma():
    over = dict(QUIET, tframe=FULL_TFRAME, rn_cds=15.77, ktc=37.6, shot_noise=True, nonlin=True,
                dark_median=0.5, dark_sigma=0.3, warm_frac=0.005, hot_frac=0.001)
    det, d, h, _ = run(size=64, ngroups=10, nints=2, **over)
    lin = sim.linearity_forward(d - det.science(det.bias), det.science(det.coeffs).astype(np.float64))
    t = (np.arange(10) + 1.0) * h["TGROUP"]
    tc = (t - t.mean())[None, :, None, None]
    slope = (tc * (lin - lin.mean(axis=1, keepdims=True))).sum(axis=1) / (tc ** 2).sum()   # DN/s
    alive = det.science(det.response)
    rates = slope[:, alive] * det.gain                     # e-/s, (nints, npix)
    true_rates = det.science(det.dark_rate)[alive]
    truth = true_rates.mean()
    stat = (rates - true_rates).std() / np.sqrt(rates.size)   # measurement noise of the mean (~0.3 %)
    assert abs(rates.mean() - truth) <= max(0.01 * truth, 3 * stat)   # measured 0.12 % off


def test_cosmic_ray_count_matches_rate_area_and_time():
    rate, size, nints = 200.0, 128, 4
    det, d, h, truth = run(size=size, ngroups=10, nints=nints, **dict(QUIET, tframe=FULL_TFRAME, cr_rate=rate))
    ev = truth["cr_events"]
    area = (size - 8) ** 2 * (18e-4) ** 2                  # cm^2 of active pixels
    span = truth["nframes_total"] * h["TFRAME"]            # s from reset to the last read
    expected = rate * area * span * nints                  # ~4000
    assert abs(len(ev) - expected) < 4 * np.sqrt(expected)          # Poisson, 4 sigma (~6 %)
    assert abs(ev["time"].mean() / span - 0.5) < 4 * np.sqrt(1 / 12 / len(ev))   # uniform arrival
    assert np.all((ev["y"] >= 4) & (ev["y"] < size - 4) & (ev["x"] >= 4) & (ev["x"] < size - 4))
    assert np.array_equal(ev["group"], ev["frame"])        # RAPID: frame f is group f
    assert np.all(ev["central"] >= 0.7 * ev["charge"] - 1e-3) and np.all(ev["central"] <= 0.85 * ev["charge"] + 1e-3)


def test_cosmic_rays_in_dropped_frames_first_appear_in_the_next_group():
    det, d, h, truth = run(size=32, readpatt="SHALLOW2", ngroups=4,
                           **dict(QUIET, tframe=FULL_TFRAME, cr_rate=3000.0))
    ev = truth["cr_events"]
    last = np.array([fr[-1] for fr in truth["group_frames"]])          # last frame of each group
    assert truth["nframes_total"] == 4 * 2 + 3 * 3 and len(ev) > 100
    assert np.array_equal(ev["group"], np.searchsorted(last, ev["frame"]))
    first = np.array([fr[0] for fr in truth["group_frames"]])
    assert np.any(ev["frame"] < first[ev["group"]])                    # some arrived in a gap
    # noiseless data: an isolated hit's central pixel is flat before its group and steps there
    for e in ev[(ev["group"] >= 1) & (ev["npix"] > 0)][:20]:
        others = ev[(ev["integration"] == e["integration"]) & (np.abs(ev["y"] - e["y"]) <= 2)
                    & (np.abs(ev["x"] - e["x"]) <= 2)]
        if len(others) > 1:
            continue
        ramp = d[e["integration"], :, e["y"], e["x"]]
        assert np.all(ramp[:e["group"]] == ramp[0]) and ramp[e["group"]] > ramp[0]


@pytest.mark.parametrize("name,preset", [("NRCA1", "nircam_sw"), ("NIS", "niriss")])
def test_cosmic_rays_are_found_where_and_when_the_truth_says(name, preset):
    det, d, h, truth = run(name=name, preset=preset, size=128, ngroups=10, nints=2,
                           **dict(QUIET, tframe=FULL_TFRAME, rn_cds=PRESET_RN[preset], cr_rate=50.0))
    diffs = np.diff(d, axis=1)                             # (nints, ngroups-1, ny, nx)
    sigma = 1.4826 * np.median(np.abs(diffs - np.median(diffs)))
    thr = 20 * sigma
    peaks = (diffs > thr) & (diffs == maximum_filter(diffs, size=(1, 1, 3, 3)))
    found = set(zip(*(a.tolist() for a in np.nonzero(peaks))))
    ev = truth["cr_events"]
    big = (ev["group"] >= 1) & (ev["central"] / det.gain > thr)
    expected = {(int(e["integration"]), int(e["group"]) - 1, int(e["y"]), int(e["x"])) for e in ev[big]}
    assert len(expected) > 300
    assert len(found ^ expected) <= max(3, 0.03 * len(expected))    # measured: 6 (NRCA1), 2 (NIS) of ~455


PRESET_RN = {"nircam_sw": 15.77, "niriss": 23.0}


def test_reference_pixels_carry_no_dark_current_or_cosmic_rays():
    det, d, h, truth = run(size=64, ngroups=5, **dict(QUIET, tframe=FULL_TFRAME, dark_median=20.0,
                                                     shot_noise=True, hot_frac=0.01, cr_rate=1000.0))
    ref = Geometry.from_header(h, d.shape[-2:]).reference_mask()
    diffs = np.diff(d, axis=1)
    assert len(truth["cr_events"]) > 50
    assert np.all(diffs[..., ref] == 0)
    assert np.all(d[..., ref] == np.rint(det.science(det.bias))[ref])
    assert diffs[..., ~ref].mean() > 90                    # ~105 DN per group of dark on active pixels


@pytest.mark.parametrize("readpatt", ["RAPID", "BRIGHT1", "BRIGHT2", "SHALLOW4", "MEDIUM8", "DEEP2"])
def test_groups_are_the_mean_of_their_frames(readpatt):
    per_frame = 100.0                                      # DN per frame, noiseless
    det, d, h, truth = run(size=32, readpatt=readpatt, ngroups=3,
                           **dict(QUIET, tframe=FULL_TFRAME, dark_median=per_frame * 2.05 / FULL_TFRAME))
    nframes, groupgap = sim.READ_PATTERNS[readpatt]
    assert (h["NFRAMES"], h["GROUPGAP"], h["READPATT"]) == (nframes, groupgap, readpatt)
    assert h["TGROUP"] == pytest.approx((nframes + groupgap) * FULL_TFRAME)
    alive = det.science(det.response)
    bias = det.science(det.bias).astype(float)
    for g in range(3):
        frames = [g * (nframes + groupgap) + k for k in range(nframes)]
        assert truth["group_frames"][g] == frames
        expect = np.rint(bias + per_frame * np.mean(np.array(frames) + 1.0))
        assert np.abs(d[0, g][alive] - expect[alive]).max() <= 1   # a wrong frame would be >= 50 DN off


def test_amplifier_offsets_are_shared_by_reference_pixels_and_removed_by_them():
    det, d, h, _ = run(size=64, ngroups=6, **dict(QUIET, amp_offset=30.0, amp_drift=3.0))
    dd = det.to_detector(d[0]) - det.bias                  # (ngroups, ny, nx) detector frame, DN
    col_amp, col_par = det.column_layout()
    rows_ref = np.r_[0:4, 60:64]
    corrected = np.empty_like(dd)
    levels = np.zeros((6, 4, 2))
    for k in range(4):
        for p in range(2):
            cols = np.flatnonzero((col_amp == k) & (col_par == p))
            inner = cols[(cols >= 4) & (cols < 60)]
            ref_val = dd[:, rows_ref][:, :, cols].mean(axis=(1, 2))
            act_val = dd[:, 4:60][:, :, inner].mean(axis=(1, 2))
            np.testing.assert_allclose(act_val, ref_val, atol=0.15)   # rounding only (0.29 DN rms)
            levels[:, k, p] = ref_val
            corrected[:, :, cols] = dd[:, :, cols] - ref_val[:, None, None]
    assert levels.std(axis=0).max() > 0.5                  # offsets drift from group to group
    assert np.abs(levels[:, :, 0] - levels[:, :, 1]).max() > 1.0   # even and odd columns differ
    assert corrected[:, 4:60, 4:60].std() < 0.35           # what is left is the 1-DN quantization


def test_correlated_pink_noise_is_common_to_outputs_in_read_order():
    det, d, h, _ = run(size=64, ngroups=2, **dict(QUIET, c_pink=50.0))
    dd = det.to_detector(d[0]) - det.bias
    b = [dd[..., k * 16:(k + 1) * 16] for k in range(4)]
    assert b[0].std() > 10                                 # the signal is there (~24 DN rms)
    for k in (1, 3):                                       # odd outputs read right to left
        assert np.abs(b[0] - b[k][..., ::-1]).max() <= 1.0 + 1e-9
        assert np.abs(b[0] - b[k]).max() > 5
    assert np.abs(b[0] - b[2]).max() <= 1.0 + 1e-9


def test_uncorrelated_pink_noise_differs_between_outputs():
    det, d, h, _ = run(size=64, ngroups=2, **dict(QUIET, u_pink=50.0))
    dd = det.to_detector(d[0]) - det.bias
    b0, b1 = dd[..., 0:16].ravel(), dd[..., 16:32][..., ::-1].ravel()
    assert b0.std() > 10 and abs(np.corrcoef(b0, b1)[0, 1]) < 0.3


# ----------------------------------------------------------------------------------------------
# 1/f streams
# ----------------------------------------------------------------------------------------------
def test_pink_stream_has_the_configured_psd():
    rng = np.random.default_rng(0)
    n, dt = 2**14, 10e-6
    amp = noise.pink_amplitude(3.0, dt)
    psd = np.zeros(n // 2 + 1)
    for _ in range(100):
        psd += np.abs(np.fft.rfft(noise.pink_stream(n, amp, dt, rng).astype(float))) ** 2 * 2 * dt / n / 100
    f = np.fft.rfftfreq(n, dt)[8:]
    assert np.median(psd[8:] * f / amp) == pytest.approx(1.0, abs=0.05)     # measured 0.998
    assert np.polyfit(np.log(f), np.log(psd[8:]), 1)[0] == pytest.approx(-1.0, abs=0.03)


@pytest.mark.parametrize("period", [500, 5000])          # contiguous frames; frames with idle time
def test_split_and_exact_pink_have_the_same_frame_statistics(period):
    def stats(method, seed):
        rng = np.random.default_rng(seed)
        within, adjacent = [], []
        for _ in range(300):
            w = noise.pink_windows(range(10), 10, period, 500, 1.0, rng, method=method)
            within.append(w.var(axis=1).mean())
            adjacent.append(np.mean(np.diff(w.mean(axis=1)) ** 2))
        return np.mean(within), np.mean(adjacent)
    exact, split = stats("exact", 1), stats("split", 2)
    assert split[0] == pytest.approx(exact[0], rel=0.05)   # within-frame variance (measured ~1 %)
    assert split[1] == pytest.approx(exact[1], rel=0.15)   # frame-to-frame (stat. error ~4 %)


# ----------------------------------------------------------------------------------------------
# Nonlinearity and saturation
# ----------------------------------------------------------------------------------------------
def test_linearity_inverse_round_trips_to_float32_precision():
    det = sim.make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": 32}, 3)
    rng = np.random.default_rng(0)
    y = rng.uniform(-100, 1.1 * det.well.max(), det.shape)
    s = sim.linearity_inverse(y, det.coeffs)
    back = sim.linearity_forward(s.astype(np.float32), det.coeffs)   # float32, as the pipeline
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, y, rtol=3e-7, atol=2e-3)
    at_well = sim.linearity_forward(det.well.astype(float), det.coeffs.astype(float)) / det.well - 1
    assert at_well[~det.reference].mean() == pytest.approx(0.08, abs=0.002)   # nl_frac


def test_linearity_reference_linearizes_the_simulated_ramp():
    rate = 0.7 * 105750 / (10 * FULL_TFRAME)               # reaches ~70 % of the well
    det, d, h, _ = run(size=32, ngroups=10, **dict(QUIET, tframe=FULL_TFRAME, dark_median=rate, nonlin=True))
    meas = (d - det.science(det.bias))[0].astype(np.float32)
    corrected = sim.linearity_forward(meas, det.science(det.coeffs))
    alive = det.science(det.response)
    s_true = rate * FULL_TFRAME * (np.arange(10) + 1.0) / det.gain
    err = corrected[:, alive] - s_true[:, None]
    assert np.abs(err).max() < 0.7                        # the 1-DN rounding, stretched by L'
    assert (meas[-1, alive] - s_true[-1]).max() < -1000   # uncorrected: several % low


def test_saturation_clips_at_the_well_and_the_threshold_lies_below():
    rate = 3 * 105750 / (5 * FULL_TFRAME)                  # saturates in the second group
    det, d, h, _ = run(size=32, ngroups=5, **dict(QUIET, tframe=FULL_TFRAME, dark_median=rate, nonlin=True))
    alive = det.science(det.response)
    full = np.minimum(np.rint(det.science(det.bias + det.well)), 65535)
    assert np.abs(d[0, -1][alive] - full[alive]).max() <= 1
    assert np.all(d[0, -1][alive] >= det.science(det.saturation)[alive])   # the step will flag it
    assert np.all(d[0, 0][alive] < det.science(det.saturation)[alive])     # ...but not group 1
