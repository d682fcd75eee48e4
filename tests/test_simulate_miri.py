"""Tests of the MIRI flavour of the simulator (detcal.simulate.miri, preset 'miri_imager').

Mini arrays (16-64 rows) so the module runs in a few seconds. Statistical tolerances are stated
next to the assertions.
"""

import os
import warnings

import numpy as np
import pytest

from detcal import demo, dqflags, io, keywords
from detcal import simulate as sim
from detcal.geometry import Geometry
from detcal.simulate import miri
from detcal.steps import dark_current, linearity, refpix

FAST = 2.77504

#: Every effect off: bias only (tests switch on what they measure).
QUIET = dict(rn_cds=0.0, ktc=0.0, amp_offset=0.0, amp_drift=0.0, cr_rate=0.0, nonlin=False,
             shot_noise=False, warm_frac=0.0, hot_frac=0.0, very_hot_frac=0.0, dead_frac=0.0,
             dark_sigma=0.0, dark_median=0.0, reset_amp=0.0, rscd_amp=0.0, lastframe_amp=0.0)


def spec(size=32, ngroups=8, nints=1, readpatt=None, nexposures=1, **overrides):
    return {"name": "MIRIMAGE", "preset": "miri_imager", "size": size, "readpatt": readpatt,
            "ngroups": ngroups, "nints": nints, "nexposures": nexposures, "overrides": overrides}


def run(seed=1, **kwargs):
    """Simulate one exposure in memory; data returned as float64."""
    det = miri.make_detector(spec(**kwargs), seed)
    data, header, truth = miri.simulate_exposure(det)
    assert data.dtype == np.uint16 and data.shape[2:] == det.shape
    return det, data.astype(np.float64), header, truth


# ----------------------------------------------------------------------------------------------
# Spec, geometry, header
# ----------------------------------------------------------------------------------------------
def test_miri_spec_has_size_rows_by_size_plus_8_columns_and_the_pattern_frame_time():
    s = sim.normalize_spec(spec(size=128))
    assert s["family"] == "MIRI" and s["shape"] == (128, 136)
    assert (s["readpatt"], s["nframes"], s["groupgap"], s["tframe"]) == ("FAST", 1, 0, FAST)
    assert (s["fastaxis"], s["slowaxis"]) == (1, 2)
    assert sim.normalize_spec(spec(readpatt="SLOW"))["tframe"] == pytest.approx(23.89)
    assert sim.normalize_spec(spec(readpatt="fastr1"))["readpatt"] == "FASTR1"
    assert sim.normalize_spec(spec(size=1024))["shape"] == (1024, 1032)
    assert sim.normalize_spec({"name": "NRCA1", "preset": "nircam_sw", "size": 64})["shape"] == (64, 64)


def test_miri_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="not a MIRI pattern"):
        sim.normalize_spec(spec(readpatt="RAPID"))
    with pytest.raises(ValueError, match="not a NIR pattern"):
        sim.normalize_spec({"name": "NRCA1", "preset": "nircam_sw", "readpatt": "FAST"})
    with pytest.raises(ValueError, match="c_pink.*miri_imager"):
        sim.normalize_spec(spec(c_pink=3.0))             # a NIR-only parameter
    with pytest.raises(ValueError, match="size"):
        sim.normalize_spec(spec(size=60))
    with pytest.raises(ValueError, match="not a MIRI preset"):
        miri.make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": 32})


def test_mini_array_geometry_has_4_reference_columns_a_side_and_interleaved_outputs():
    det = miri.make_detector(spec(size=32), 0)
    geom = det.geometry
    assert (geom.family, geom.shape, geom.is_full_frame, geom.noutputs) == ("MIRI", (32, 40), True, 4)
    ref = geom.reference_mask()
    assert ref[:, :4].all() and ref[:, -4:].all() and not ref[:, 4:-4].any()
    assert np.array_equal(ref, det.reference)
    np.testing.assert_array_equal(geom.amplifier_map(), np.broadcast_to(np.arange(40) % 4, (32, 40)))
    # the real array: a full frame of 1024 x 1032, and a SUB128 cut of it is a subarray
    full = Geometry.from_header(miri.make_detector(spec(size=1024), 0).base_header(), (1024, 1032))
    assert full.is_full_frame and full.full_shape == (1024, 1032)


def test_uncal_headers_carry_every_keyword_a_step_needs(tmp_path):
    files = sim.write_detector_set(spec(size=16, ngroups=5, nints=2, readpatt="FASTR1"), str(tmp_path), 3)
    for step in keywords.STEP:
        ramp = io.read_ramp(files["uncal"][0], step)      # raises InputError naming a missing keyword
    h = ramp.header
    assert ramp.data.shape == (2, 5, 16, 24)
    assert (h["INSTRUME"], h["DETECTOR"], h["EXP_TYPE"], h["READPATT"]) == ("MIRI", "MIRIMAGE",
                                                                            "MIR_DARKIMG", "FASTR1")
    assert (h["NFRAMES"], h["GROUPGAP"], h["TFRAME"], h["TGROUP"]) == (1, 0, FAST, FAST)
    assert (h["SUBARRAY"], h["SUBSIZE1"], h["SUBSIZE2"], h["NOUTPUTS"]) == ("FULL", 24, 16, 4)
    assert h["NRESETS"] == 2 and h["DURATION"] == pytest.approx(2 * (5 + 2) * FAST)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
SET_SPEC = spec(size=32, ngroups=6, nints=3, nexposures=2, hot_frac=0.01, warm_frac=0.02,
                dead_frac=0.005, cr_rate=20.0)
SET_SEED = 13


@pytest.fixture(scope="module")
def miri_set(tmp_path_factory):
    return sim.write_detector_set(SET_SPEC, str(tmp_path_factory.mktemp("miri")), SET_SEED)


def _all_files(files):
    return files["uncal"] + list(files["references"].values()) + [files["truth"]]


def test_planned_references_are_exactly_the_miri_set_without_superbias(miri_set, tmp_path):
    planned = sim.planned_files(SET_SPEC, str(tmp_path))
    assert tuple(planned["references"]) == ("mask", "saturation", "reset", "linearity", "rscd",
                                            "dark", "gain", "readnoise") == sim.reference_keys(SET_SPEC)
    assert "superbias" not in planned["references"]
    assert planned["exposures"] == ["demo_mirimage_e001", "demo_mirimage_e002"]
    assert sim.detector_module(SET_SPEC) is miri
    assert all(os.path.exists(p) for p in _all_files(miri_set))
    assert sorted(os.listdir(os.path.dirname(miri_set["references"]["dark"]))) == sorted(
        f"{k}.fits" for k in planned["references"])
    assert demo.reference_files({"seed": 1, "detectors": [SET_SPEC]}, str(tmp_path)) == {
        "MIRIMAGE": planned["references"]}


def test_same_seed_gives_identical_bytes_and_another_seed_different_data(tmp_path):
    small = spec(size=16, ngroups=4, nints=2, cr_rate=50.0)
    a = sim.write_detector_set(small, str(tmp_path / "a"), seed=5)
    b = sim.write_detector_set(small, str(tmp_path / "b"), seed=5)
    c = sim.write_detector_set(small, str(tmp_path / "c"), seed=6)
    for fa, fb in zip(_all_files(a), _all_files(b)):
        with open(fa, "rb") as x, open(fb, "rb") as y:
            assert x.read() == y.read(), os.path.basename(fa)
    for fa, fc in zip(a["uncal"] + [a["references"]["dark"]], c["uncal"] + [c["references"]["dark"]]):
        with open(fa, "rb") as x, open(fc, "rb") as y:
            assert x.read() != y.read(), os.path.basename(fa)


def test_miri_files_open_and_validate_with_stdatamodels(miri_set):
    from stdatamodels.jwst import datamodels as dm

    models = {"mask": dm.MaskModel, "saturation": dm.SaturationModel, "linearity": dm.LinearityModel,
              "rscd": dm.RSCDModel, "dark": dm.DarkMIRIModel, "gain": dm.GainModel,
              "readnoise": dm.ReadnoiseModel, "reset": dm.ResetModel}
    assert set(models) == set(miri_set["references"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key, model in models.items():
            with model(miri_set["references"][key], strict_validation=True) as m:
                m.validate()
                assert m.meta.reftype == io.REFTYPES[key]
                assert (m.meta.instrument.name, m.meta.instrument.detector) == ("MIRI", "MIRIMAGE")
        with dm.DarkMIRIModel(miri_set["references"]["dark"]) as m:
            assert m.data.shape == m.dq.shape == m.err.shape == (2, 6, 32, 40)
            assert (m.meta.exposure.nframes, m.meta.exposure.groupgap, m.meta.exposure.ngroups) == (1, 0, 6)
            assert m.meta.exposure.readpatt == "FAST"
        with dm.RSCDModel(miri_set["references"]["rscd"]) as m:
            rows = {(r["subarray"], r["readpatt"]): (r["group_skip1"], r["group_skip"])
                    for r in m.rscd_group_skip_table}
            assert rows[("FULL", "FAST")] == rows[("SUB128", "SLOWR1")] == (0, 3)
        with dm.RampModel(miri_set["uncal"][0], strict_validation=True) as m:
            m.validate()
            assert m.data.shape == (3, 6, 32, 40)


def test_reference_files_hold_the_truth(miri_set):
    truth = sim.read_truth(miri_set["truth"])
    det = miri.make_detector(SET_SPEC, SET_SEED)            # the same seed redraws the same truth
    refs = {k: io.read_reference(p, io.REFTYPES[k]) for k, p in miri_set["references"].items()}
    mask = refs["mask"].data
    assert np.array_equal((mask & dqflags.REFERENCE_PIXEL) != 0, det.reference)
    assert not np.any(mask[det.reference] & dqflags.DO_NOT_USE)
    for flag, name in ((dqflags.HOT, "hot"), (dqflags.WARM, "warm"), (dqflags.DEAD, "dead")):
        assert np.array_equal((mask & flag) != 0, truth[name].astype(bool)), name
        assert truth[name].sum() > 0, name
    np.testing.assert_array_equal(refs["gain"].data, np.float32(4.0))
    np.testing.assert_allclose(refs["readnoise"].data, np.sqrt(2) * truth["rn_frame"] / 4.0, rtol=1e-6)
    np.testing.assert_array_equal(refs["linearity"].data, det.coeffs)
    assert np.all(refs["linearity"].dq[det.reference] == dqflags.NO_LIN_CORR)
    np.testing.assert_array_equal(refs["saturation"].data, det.saturation)
    # DARK: 4-D, plane 0 = integration 1, plane 1 = integrations 2+; each dark signal + anomalies
    dark = refs["dark"]
    assert dark.data.shape == dark.dq.shape == (2, 6, 32, 40) and dark.dq.dtype == np.uint32
    assert (dark.header["NFRAMES"], dark.header["GROUPGAP"], dark.header["NGROUPS"]) == (1, 0, 6)
    signal = truth["dark_rate_dn"][None] * (np.arange(6)[:, None, None] + 1) * FAST
    # (without the reset anomaly: the RESET reference holds it, as jwst's MIRI DARKs assume)
    np.testing.assert_allclose(dark.data[0], signal + det.anomaly_groups(0, 6, reset=False),
                               rtol=1e-6, atol=1e-4)
    later = (det.anomaly_groups(1, 6, reset=False) + det.anomaly_groups(2, 6, reset=False)) / 2
    np.testing.assert_allclose(dark.data[1], signal + later, rtol=1e-6, atol=1e-4)
    assert np.all(dark.data[:, :, det.reference] == 0)
    # the RSCD table lists every subarray x MIRI pattern with the simulator's counts
    table = refs["rscd"].extras["table"]
    assert len(table) == len(miri.RSCD_SUBARRAYS) * len(sim.MIRI_READ_PATTERNS)
    assert set(table["group_skip1"]) == {0} and set(table["group_skip"]) == {3}


def test_truth_file_records_the_anomaly_amplitudes(miri_set):
    truth = sim.read_truth(miri_set["truth"])
    det = miri.make_detector(SET_SPEC, SET_SEED)
    h = truth["header"]
    assert (h["RESETAMP"], h["RESETTAU"], h["RSCDAMP"], h["LASTAMP"]) == (-40.0, 3.0, 20.0, -10.0)
    assert (h["RSCDSKP1"], h["RSCDSKIP"], h["GAIN"], h["RNCDS_DN"]) == (0, 3, 4.0, 6.0)
    np.testing.assert_array_equal(truth["reset_amp"], det.reset_map)
    np.testing.assert_array_equal(truth["rscd_amp"], det.rscd_map)
    np.testing.assert_array_equal(truth["lastframe_amp"], det.lastframe_map)
    assert list(truth["anomaly"]["reset_factor"]) == pytest.approx([1.0, 0.86, 0.818])
    assert list(truth["anomaly"]["rscd"]) == [0, 1, 1]
    params = {r["name"]: r for r in truth["params"]}
    assert set(params) == set(sim.MIRI_PARAMETERS) and params["pixel_pitch"]["value"] == "25.0"
    assert h["NCR"] == len(truth["cr_events"]) > 0
    cr = truth["cr_events"]
    assert np.all((cr["x"] >= 4) & (cr["x"] < 36))     # hits on light-sensitive columns only


def test_demo_table_uses_the_miri_array_shape(tmp_path):
    table = demo.table({"seed": 1, "detectors": [SET_SPEC]}, str(tmp_path))
    row = table.iloc[0]
    assert (row["family"], row["SUBSIZE1"], row["SUBSIZE2"], row["READPATT"]) == ("MIRI", 40, 32, "FAST")
    assert row["group"] == "MIRIMAGE-FULL-FAST-4amp-6g"


# ----------------------------------------------------------------------------------------------
# Truth in the simulated ramps
# ----------------------------------------------------------------------------------------------
def test_anomalies_are_the_reset_rscd_and_last_frame_shapes_of_the_truth():
    det, d, _, _ = run(size=16, ngroups=20, nints=3, **dict(QUIET, reset_amp=-40.0, rscd_amp=20.0,
                                                           lastframe_amp=-10.0))
    signal = d - det.bias                                  # (nints, ngroups, ny, nx) DN
    active = ~det.reference
    for i in range(3):
        expect = det.anomaly_groups(i, 20)
        assert np.abs(signal[i][:, active] - expect[:, active]).max() <= 0.5 + 1e-3   # rounding
    assert np.abs(signal[..., det.reference]).max() <= 0.5 + 1e-3    # no anomaly on reference columns
    reset = signal[0][:19][:, active].mean(axis=1)        # integration 1: the reset anomaly only
    assert reset[0] == pytest.approx(-40.0, abs=1.0)
    assert abs(reset[14]) < 0.01 * 40 + 0.5               # faded by group 15
    rscd = (signal[1] - det.reset_factor(1) * signal[0])[:19][:, active].mean(axis=1)
    assert rscd[0] == pytest.approx(20.0, abs=1.0) and abs(rscd[10]) < 0.5
    last = (signal[:, 19] - signal[:, 18])[:, active].mean()
    assert last == pytest.approx(-10.0, abs=0.5)
    assert det.reset_factor(1) == pytest.approx(0.86) and det.reset_factor(5) == pytest.approx(0.8, abs=1e-3)


def test_row_drifts_are_shared_by_the_reference_columns_and_miri_refpix_removes_them():
    det, d, h, _ = run(size=32, ngroups=6, nints=2, **dict(QUIET, amp_offset=120.0, amp_drift=12.0))
    raw = d.astype(np.float32)
    col_amp, row_par = det.layout()
    diff = d - d[:, :1]                                    # drift relative to the first read, DN
    levels = np.array([[diff[..., p::2, :][..., col_amp == k].mean(axis=(-2, -1)) for p in range(2)]
                       for k in range(4)])              # (4 outputs, 2 parities, nints, ngroups)
    assert np.abs(levels[:, 0] - levels[:, 1]).max() > 3.0     # odd and even rows drift differently
    assert np.abs(levels - levels[:1]).max() > 3.0            # and so do the outputs
    out, reason = refpix.subtract_reference_pixels(raw, np.zeros(det.shape, np.uint32), det.geometry)
    assert reason is None
    np.testing.assert_array_equal(out[:, 0], raw[:, 0])       # group 0 is kept
    left = (out - out[:, :1])[..., 4:-4]
    assert np.abs(left).max() <= 1.5 and left.std() < 0.45    # only the 1-DN quantization is left
    assert np.abs(diff).max() > 8                             # ... of drifts of ~10 DN


def test_linearity_reference_linearizes_raw_dn_including_the_bias():
    over = dict(QUIET, nonlin=True, dark_median=5000.0, dark_sigma=0.2)
    det, d, _, _ = run(size=16, ngroups=12, **over)
    coeffs = det.coeffs
    corrected, _ = linearity.correct_linearity(d.astype(np.float32), np.zeros(d.shape, np.uint8),
                                               np.zeros(det.shape, np.uint32), coeffs,
                                               np.zeros(det.shape, np.uint32))
    active = ~det.reference
    t = (np.arange(12) + 1.0)[:, None] * FAST
    expect = det.bias[active] + t * (det.dark_rate[active] / det.gain)        # bias + linear signal
    unsat = d[0][:, active] < det.saturation[active] - 50
    err = np.abs(corrected[0][:, active] - expect)[unsat]
    raw_err = np.abs(d[0][:, active] - expect)[unsat]
    assert err.max() < 0.7              # rounding to integer DN x the slope of L (<= 1.2), float32
    assert raw_err.max() > 300                             # the nonlinearity it removed
    np.testing.assert_array_equal(corrected[..., det.reference], d[..., det.reference])


def test_saturation_clips_at_the_well_and_the_threshold_lies_below():
    det, d, _, _ = run(size=16, ngroups=10, **dict(QUIET, dark_median=200000.0, dark_sigma=0.0))
    active = ~det.reference
    top = d[0, -1][active]
    np.testing.assert_allclose(top, np.minimum(np.rint(det.bias + det.well), 65535)[active], atol=1)
    assert np.all(det.saturation[active] <= top) and np.mean(det.saturation[active] < top) > 0.5


def test_cosmic_ray_count_matches_rate_area_and_time_with_25_um_pixels():
    rate, size, nints, ngroups = 300.0, 64, 4, 10
    det, _, _, truth = run(size=size, ngroups=ngroups, nints=nints, **dict(QUIET, cr_rate=rate))
    area = size * size * (25e-4) ** 2                      # light-sensitive columns x rows [cm^2]
    expect = rate * area * ngroups * FAST * nints
    n = len(truth["cr_events"])
    assert abs(n - expect) < 4 * np.sqrt(expect)           # Poisson, 4 sigma (expect ~ 2100)
    assert np.all(truth["cr_events"]["group"] == truth["cr_events"]["frame"])   # NFRAMES=1


def test_dark_rate_is_recovered_within_1_percent_or_3_sigma():
    over = dict(QUIET, rn_cds=24.0, ktc=100.0, shot_noise=True, dark_median=20.0, dark_sigma=0.3,
                nonlin=True)
    det, d, h, _ = run(size=64, ngroups=20, nints=2, **over)
    lin = linearity.correct_linearity(d.astype(np.float32), np.zeros(d.shape, np.uint8),
                                      np.zeros(det.shape, np.uint32), det.coeffs,
                                      np.zeros(det.shape, np.uint32))[0].astype(np.float64)
    t = (np.arange(20) + 1.0) * h["TGROUP"]
    tc = (t - t.mean())[None, :, None, None]
    slope = (tc * (lin - lin.mean(axis=1, keepdims=True))).sum(axis=1) / (tc ** 2).sum()   # DN/s
    alive = det.response
    rates = slope[:, alive] * det.gain
    true_rates = det.dark_rate[alive]
    stat = (rates - true_rates).std() / np.sqrt(rates.size)
    assert abs(rates.mean() - true_rates.mean()) <= max(0.01 * true_rates.mean(), 3 * stat)


def test_dark_reference_removes_dark_current_and_anomalies_exactly_when_amplitudes_settle():
    over = dict(QUIET, dark_median=5.0, reset_amp=-40.0, rscd_amp=20.0, lastframe_amp=-10.0,
                reset_settle=0.0)                          # integrations 2+ identical
    det, d, _, _ = run(size=16, ngroups=8, nints=3, **over)
    dark = miri.dark_cube(det, 8, reset=True)              # no reset step here: the dark holds it
    out, _, _, _ = dark_current.correct_dark(d.astype(np.float32), np.zeros(det.shape, np.uint32),
                                             dark, None, 1, 0, 1, 0)
    left = out - det.bias
    assert np.abs(left).max() <= 0.5 + 1e-3               # rounding only
    assert np.abs(d - det.bias).max() > 30                 # what was removed
    exact = miri.dark_cube(det, 8, planes=3, dark_current=False)
    assert np.allclose(exact[1], exact[2]) and np.all(exact[:, :, det.reference] == 0)
