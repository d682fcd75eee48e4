"""Reference files from darks (detcal.reffiles): DARK, SUPERBIAS, READNOISE, bad-pixel MASK.

Closed-form tests on tiny arrays; truth recovery on small simulated detectors (64-128 px, with the
full-frame frame time so that signals are flight-like); parity with jwst 3.0 / stdatamodels 6.0
(every product validates with its model; jwst's DarkCurrentStep with our DARK as override_dark
gives what detcal's dark_current gives). Every statistical test states its statistic and
tolerance next to the assertion.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.stats import sigma_clip

from detcal import dqflags, io, keywords, steps
from detcal import simulate as sim
from detcal.analysis import robust
from detcal.errors import InputError
from detcal.reffiles import (
    badpix,
    common,
    dark,
    make_dark,
    make_mask,
    make_readnoise,
    make_superbias,
    readnoise,
    superbias,
)
from detcal.steps import dark_current

from conftest import make_ramp

FULL_TFRAME = 10.73677
JUMP, DNU, SAT = dqflags.JUMP_DET, dqflags.DO_NOT_USE, dqflags.SATURATED

#: Reference files each step reads (subset of detcal.pipeline.REFERENCES, plus saturation's bias).
NEEDS = {"dq_init": ("mask",), "saturation": ("saturation", "superbias"), "superbias": ("superbias",),
         "refpix": (), "linearity": ("linearity",), "jump": ("gain", "readnoise"),
         "dark_current": ("dark",), "ramp_fit": ("gain", "readnoise")}
NIR_TO_JUMP = ("dq_init", "saturation", "superbias", "refpix", "linearity", "jump")


# --------------------------------------------------------------------------------------------
# helpers: simulated detectors through the NIR chain, in memory, then written
# --------------------------------------------------------------------------------------------
def detector(size=128, ngroups=10, nints=2, seed=1, readpatt=None, **overrides):
    overrides.setdefault("tframe", FULL_TFRAME)
    return sim.make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": size,
                              "ngroups": ngroups, "nints": nints, "readpatt": readpatt,
                              "overrides": overrides}, seed)


def truth_references(det, dark_ngroups):
    """The simulator's truth reference files as detcal.io.Reference objects (science frame)."""
    refs = {}
    for key, arrays in sim.reference_arrays(det, dark_ngroups).items():
        reftype = io.REFTYPES[key]
        header = fits.Header()
        if key == "dark":
            header.update(NFRAMES=1, GROUPGAP=0, NGROUPS=dark_ngroups)
        refs[key] = io.Reference(reftype, arrays[io.MAIN.get(reftype, "SCI")], dq=arrays.get("DQ"),
                                 err=arrays.get("ERR"), header=header, path=f"truth_{key}.fits")
    return refs


def run_chain(det, index, chain, refs, **simulate_kwargs):
    """Simulate exposure ``index`` and run the detcal steps of ``chain`` on it (S_* set)."""
    data, header, _ = sim.simulate_exposure(det, index=index, **simulate_kwargs)
    ramp = io.Ramp(data.astype(np.float32), np.zeros(data.shape[2:], np.uint32),
                   np.zeros(data.shape, np.uint8), header, f"exposure {index}")
    for step in chain:
        ramp = steps.REGISTRY[step].run(ramp, {k: refs[k] for k in NEEDS[step]})
        ramp.header[keywords.CAL_STEP[step]] = "COMPLETE"
    return ramp


def write_set(directory, det, nexp, chain, refs, name, rateints=False, **simulate_kwargs):
    """Run ``nexp`` exposures through ``chain`` and write them; optionally their rateints too."""
    ramps, rates = [], []
    for e in range(nexp):
        ramp = run_chain(det, e, chain, refs, **simulate_kwargs)
        path = str(directory / f"{name}_e{e}.fits")
        io.write_ramp(ramp, path)
        ramps.append(path)
        if rateints:
            _, ri = steps.REGISTRY["ramp_fit"].run(ramp, {k: refs[k] for k in NEEDS["ramp_fit"]})
            rpath = str(directory / f"{name}_e{e}_rateints.fits")
            io.write_rate(rpath, ri, ramp.header, tables=ramp.tables)
            rates.append(rpath)
    return ramps, rates


def validate(model_name, path):
    """Open ``path`` with the stdatamodels model and validate it, warnings as errors."""
    from stdatamodels.jwst import datamodels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with getattr(datamodels, model_name)(path, strict_validation=True) as model:
            model.validate()
            main = model.dq if model_name == "MaskModel" else model.data
            return model.meta.reftype, model.meta.description, main.shape


def small_ramp_files(tmp_path, n=3, nints=2, ngroups=6, ny=16, nx=20, seed=0, name="r", **keys):
    """Tiny NIR ramps (RampModel layout) with a known dark ramp 0.5 DN/group + noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for f in range(n):
        data = rng.normal(0, 1, (nints, ngroups, ny, nx)) + 0.5 * np.arange(ngroups)[None, :, None, None]
        ramp = make_ramp(nints, ngroups, ny, nx, data=data, **keys)
        ramp.header["S_JUMP"] = "COMPLETE"
        path = str(tmp_path / f"{name}{f}.fits")
        io.write_ramp(ramp, path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# detcal.io.RampReader: sections of ramp files
# --------------------------------------------------------------------------------------------
def test_ramp_reader_sections_equal_the_whole_file_and_missing_dq_reads_as_zeros(tmp_path):
    rng = np.random.default_rng(1)
    ramp = make_ramp(3, 5, 12, 10, data=rng.normal(0, 10, (3, 5, 12, 10)),
                     groupdq=rng.integers(0, 8, (3, 5, 12, 10)), pixeldq=rng.integers(0, 9, (12, 10)))
    path = str(tmp_path / "ramp.fits")
    io.write_ramp(ramp, path)
    with io.RampReader(path, "jump") as reader:
        assert reader.shape == (3, 5, 12, 10) and reader.header["NGROUPS"] == 5
        np.testing.assert_array_equal(reader.read("SCI", 1, slice(2, 4), slice(3, 9)), ramp.data[1, 2:4, 3:9])
        np.testing.assert_array_equal(reader.read("GROUPDQ", slice(0, 2)), ramp.groupdq[:2])
        np.testing.assert_array_equal(reader.read("PIXELDQ", rows=slice(5, 7)), ramp.pixeldq[5:7])
        assert reader.read("SCI", 0).dtype == np.float32
    uncal = str(tmp_path / "uncal.fits")
    io.write_uncal(np.full((1, 2, 4, 6), 40000, np.uint16), make_ramp(1, 2, 4, 6).header, uncal)
    with io.RampReader(uncal) as reader:
        assert np.all(reader.read("SCI", 0, slice(1, 2)) == 40000.0)          # BZERO applied
        assert reader.read("GROUPDQ", 0, rows=slice(0, 3)).shape == (2, 3, 6)
        assert not reader.read("GROUPDQ").any() and reader.read("PIXELDQ").shape == (4, 6)
    with open(path, "rb") as fh:
        head = fh.read(2880 * 3)
    with open(tmp_path / "cut.fits", "wb") as fh:
        fh.write(head)
    with pytest.raises(InputError, match="cut.fits"):
        io.RampReader(tmp_path / "cut.fits")
    bad = make_ramp(2, 5, 12, 10)
    bad.header["NGROUPS"] = 4
    io.write_ramp(bad, tmp_path / "bad.fits")
    with pytest.raises(InputError, match="NGROUPS=4 but SCI has 5 groups"):
        io.RampReader(tmp_path / "bad.fits")


# --------------------------------------------------------------------------------------------
# shared statistics
# --------------------------------------------------------------------------------------------
def test_sigma_clipped_stats_equal_astropy_sigma_clip_then_nan_statistics():
    rng = np.random.default_rng(2)
    x = rng.normal(10, 2, (25, 300))
    x[rng.random(x.shape) < 0.05] += rng.uniform(20, 200, np.count_nonzero(rng.random(x.shape) < 0.05))[:1]
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 0] = np.nan                      # nothing left
    x[:3, 1] = [1.0, 1.0, 1.0]            # all equal
    x[3:, 1] = np.nan
    for maxiters in (1, 3, 5, None):
        ours = robust.sigma_clipped_stats(x, sigma=3.0, maxiters=maxiters, work_mb=0.01)  # many blocks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = sigma_clip(x, sigma=3.0, maxiters=maxiters, axis=0, masked=False)
            expect = {"mean": np.nanmean(c, 0), "median": np.nanmedian(c, 0), "std": np.nanstd(c, 0)}
        for key, val in expect.items():
            np.testing.assert_allclose(ours[key], val, rtol=1e-12, atol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(ours["count"], np.count_nonzero(np.isfinite(c), 0))
    assert ours["n_good"][1] == 3 and ours["count"][0] == 0


def test_clip_bias_factor_is_the_truncated_gaussian_std():
    assert robust.truncated_normal_std(3.0) == pytest.approx(0.98658, abs=1e-5)
    assert robust.clip_bias_factor(3.0, 1) == pytest.approx(0.98658, abs=1e-5)
    assert robust.clip_bias_factor(3.0, 3) == pytest.approx(0.98489, abs=2e-5)
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (200, 4000))
    st = robust.sigma_clipped_stats(x, 3.0, 3, ddof=1)
    assert np.mean(st["std"]) / robust.clip_bias_factor(3.0, 3) == pytest.approx(1.0, abs=0.003)


def test_half_sample_mode_finds_the_peak_of_a_skewed_sample():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(5.0, 0.2, 5000), rng.exponential(10.0, 2000) + 5.0])
    assert common.half_sample_mode(x) == pytest.approx(5.0, abs=0.1)
    assert np.isnan(common.half_sample_mode([np.nan]))


def test_regions_split_active_pixels_by_amplifier_and_keep_reference_pixels_apart():
    ramp = make_ramp(1, 2, 32, 32)
    geom = ramp.geometry
    regs = common.regions(geom)
    assert [k for k in regs] == ["amp1", "amp2", "amp3", "amp4", "active", "reference"]
    assert sum(regs[f"amp{k}"].sum() for k in range(1, 5)) == regs["active"].sum() == 24 * 24
    assert not np.any(regs["active"] & regs["reference"])


# --------------------------------------------------------------------------------------------
# DARK: closed form
# --------------------------------------------------------------------------------------------
def test_first_jump_group_tells_a_hit_in_group_0_from_no_hit():
    gdq = np.zeros((2, 4, 1, 3), np.uint8)
    gdq[0, 0, 0, 0] = JUMP            # hit in group 0
    gdq[0, 2, 0, 1] = JUMP            # hit in group 2 (and again later)
    gdq[0, 3, 0, 1] = JUMP
    gdq[1, 1, 0, 2] = JUMP | SAT      # other bits do not hide the jump
    first = dark.first_jump_group(gdq)
    assert first.tolist() == [[[0, 2, 4]], [[4, 4, 1]]]


def test_dark_values_drop_the_jump_group_every_later_group_and_flagged_groups():
    data = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 1, 4), np.float32)
    gdq = np.zeros((5, 1, 4), np.uint8)
    gdq[0, 0, 0] = JUMP                   # all groups dropped
    gdq[3, 0, 1] = JUMP                   # groups 3, 4 dropped
    gdq[1, 0, 2] = SAT                    # only group 1 dropped
    gdq[2, 0, 3] = DNU
    v = dark.dark_values(data, gdq)
    isnan = np.isnan(v[:, 0, :]).T.tolist()
    assert isnan == [[True] * 5, [False, False, False, True, True],
                     [False, True, False, False, False], [False, False, True, False, False]]


def test_dark_values_carry_a_jump_across_chunks_of_groups():
    gdq = np.zeros((6, 1, 1), np.uint8)
    gdq[2, 0, 0] = JUMP
    hit = np.zeros((1, 1), bool)
    first = dark.dark_values(np.ones((3, 1, 1), np.float32), gdq[:3], hit)
    second = dark.dark_values(np.ones((3, 1, 1), np.float32), gdq[3:], hit)
    assert np.isnan(first[:, 0, 0]).tolist() == [False, False, True]
    assert np.isnan(second).all()


def test_combine_clips_an_outlier_and_reports_counts():
    vals = np.array([1.0, 2.0, 3.0, 2.0, 2.0, 1.0, 3.0, 2.0, 100.0, np.nan], np.float32)
    stack = vals[:, None, None, None]
    d, e, used, good = dark.combine(stack, "mean", 3.0, 5)
    assert d[0, 0, 0] == pytest.approx(2.0) and used[0, 0, 0] == 8 and good[0, 0, 0] == 9
    assert e[0, 0, 0] == pytest.approx(np.std([1, 2, 3, 2, 2, 1, 3, 2]))
    d, *_ = dark.combine(stack, "median", 3.0, 5)
    assert d[0, 0, 0] == 2.0
    d, e, used, _ = dark.combine(np.full((3, 1, 1, 1), np.nan, np.float32))
    assert d[0, 0, 0] == 0.0 and e[0, 0, 0] == 0.0 and used[0, 0, 0] == 0


def test_fill_missing_continues_the_pixel_line_and_leaves_empty_pixels_at_zero():
    times = np.arange(1, 6, dtype=float)
    d = np.zeros((5, 1, 3), np.float32)
    d[:, 0, 0] = 2.0 * times + 1.0
    d[3:, 0, 0] = 0.0
    used = np.ones((5, 1, 3), np.int32)
    used[3:, 0, 0] = 0                     # saturated late: extrapolated
    used[:, 0, 1] = 0                      # never any value: stays 0
    e = np.ones_like(d)
    e[:, 0, 0] = [1, 2, 3, 0, 0]
    assert dark.fill_missing(d, e, used, times) == 1
    np.testing.assert_allclose(d[:, 0, 0], 2.0 * times + 1.0, rtol=1e-6)
    assert e[:, 0, 0].tolist() == [1, 2, 3, 3, 3] and not d[:, 0, 1].any()


def test_plan_chunks_stays_in_the_budget_and_falls_back_to_blocks_of_rows():
    # 20 full-frame integrations of 10 groups: several groups per chunk within 4000 MB
    p = dark.plan_chunks(20, 10, 2048, 2048, 1, 4000)
    assert 1 <= p["groups"] <= 10 and p["rows"] == 2048 and p["fixed_mb"] + p["chunk_mb"] <= 4000
    # 500 integrations: one group of the whole frame does not fit, so blocks of rows
    p = dark.plan_chunks(500, 10, 2048, 2048, 1, 4000)
    assert p["groups"] == 1 and 1 <= p["rows"] < 2048 and p["fixed_mb"] + p["chunk_mb"] <= 4000
    with pytest.raises(ValueError, match="memory_mb=500 is too small"):
        dark.plan_chunks(20, 100, 2048, 2048, 1, 500)


def test_make_dark_result_does_not_depend_on_the_chunking(tmp_path):
    paths = small_ramp_files(tmp_path, n=3, nints=2, ngroups=7, ny=24, nx=16)
    with fits.open(paths[1], mode="update") as hdul:      # a jump, carried across chunks
        hdul["GROUPDQ"].data[1, 2, 5, 6] = JUMP
    make_dark(paths, tmp_path / "big.fits", memory_mb=4000)
    fixed = dark.plan_chunks(6, 7, 24, 16, 1, 1e6)["fixed_mb"]
    summary = make_dark(paths, tmp_path / "small.fits", memory_mb=fixed + 0.004)
    assert summary["plan"]["groups"] == 1 and summary["plan"]["rows"] < 24
    big, small = (io.read_reference(tmp_path / n, "DARK") for n in ("big.fits", "small.fits"))
    np.testing.assert_array_equal(big.data, small.data)
    np.testing.assert_array_equal(big.err, small.err)


def test_make_dark_handles_files_with_different_nints(tmp_path):
    paths = (small_ramp_files(tmp_path, n=1, nints=1, name="a")
             + small_ramp_files(tmp_path, n=1, nints=3, name="b", seed=1, NINTS=3))
    summary = make_dark(paths, tmp_path / "d.fits", counts_path=tmp_path / "c.fits")
    assert summary["n_integrations"] == 4
    assert fits.getdata(tmp_path / "c.fits", "GOOD").max() == 4


# --------------------------------------------------------------------------------------------
# DARK: files, models, errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parity
def test_dark_file_validates_as_dark_model_with_every_required_keyword(tmp_path):
    paths = small_ramp_files(tmp_path)
    out = tmp_path / "dark.fits"
    summary = make_dark(paths, out, table_path=tmp_path / "dark.tsv", figure_path=tmp_path / "dark.png",
                        counts_path=tmp_path / "counts.fits", useafter="2024-01-01")
    reftype, descrip, shape = validate("DarkModel", out)
    assert (reftype, shape) == ("DARK", (6, 16, 20)) and "dark" in descrip
    h = fits.getheader(out)
    for key in keywords.REFERENCE + ("READPATT", "NFRAMES", "GROUPGAP", "NGROUPS", "EXP_TYPE"):
        assert key in h, key
    assert (h["NFRAMES"], h["GROUPGAP"], h["NGROUPS"], h["USEAFTER"]) == (1, 0, 6, "2024-01-01T00:00:00")
    assert h["PEDIGREE"] == "GROUND" and h["EXP_TYPE"] == "NRC_DARK"
    history = "\n".join(str(c) for c in h["HISTORY"])
    assert all(os.path.basename(p) in history for p in paths)
    assert fits.getdata(out, "DQ").shape == (16, 20) and not fits.getdata(out, "DQ").any()
    table = pd.read_csv(tmp_path / "dark.tsv", sep="\t")
    assert {"time_s", "used_median", "amp1_mean_DN", "active_mean_DN"} <= set(table.columns)
    assert len(table) == 6 and os.path.getsize(tmp_path / "dark.png") > 10_000
    assert fits.getdata(tmp_path / "counts.fits", "USED").shape == (6, 16, 20)
    # the known ramp: 0.5 DN per group of TFRAME seconds
    assert summary["rate_DN_per_s"][1]["active"] == pytest.approx(0.5 / h["TFRAME"], rel=0.05)


def test_dark_dq_is_zero_unless_a_minimum_count_is_asked_for(tmp_path):
    paths = small_ramp_files(tmp_path, n=2, nints=2)           # 4 values per pixel and group
    with fits.open(paths[0], mode="update") as hdul:
        hdul["GROUPDQ"].data[:, 3, 7, 7] = JUMP                 # pixel (7, 7) keeps 2 values late
    make_dark(paths, tmp_path / "a.fits")
    assert not io.read_reference(tmp_path / "a.fits", "DARK").dq.any()
    summary = make_dark(paths, tmp_path / "b.fits", min_count=3)
    dq = io.read_reference(tmp_path / "b.fits", "DARK").dq
    assert summary["unreliable"] == 1 and dq[7, 7] == dqflags.UNRELIABLE_DARK


def test_dark_of_a_pixel_without_any_value_is_flagged_not_zero_and_clean(tmp_path):
    """A pixel saturated from group 0 in every integration has no dark: its 0 DN is a placeholder
    (UNRELIABLE_DARK), not a measured "no dark current"; a pixel that lost only its late groups is
    extrapolated (fill='extrapolate') and stays clean, but is flagged with fill='zero'."""
    paths = small_ramp_files(tmp_path, n=2, nints=2)
    for path in paths:
        with fits.open(path, mode="update") as hdul:
            hdul["GROUPDQ"].data[:, :, 3, 4] |= dqflags.GROUP["SATURATED"]     # never a value
            hdul["GROUPDQ"].data[:, 4:, 9, 9] |= dqflags.GROUP["SATURATED"]    # late groups lost
    summary = make_dark(paths, tmp_path / "a.fits")
    ref = io.read_reference(tmp_path / "a.fits", "DARK")
    assert ref.data[:, 3, 4].tolist() == [0.0] * ref.data.shape[0]
    assert ref.dq[3, 4] == dqflags.UNRELIABLE_DARK and ref.dq[9, 9] == 0
    assert summary["unreliable"] == 1 and summary["pixels_filled"] == 1
    make_dark(paths, tmp_path / "b.fits", fill="zero")
    dq = io.read_reference(tmp_path / "b.fits", "DARK").dq
    assert dq[3, 4] == dq[9, 9] == dqflags.UNRELIABLE_DARK and np.count_nonzero(dq) == 2


def test_groups_flagged_do_not_use_everywhere_can_be_kept_with_exclude_flags(tmp_path):
    paths = small_ramp_files(tmp_path, n=2, nints=2)
    for p in paths:                         # e.g. MIRI's first groups, kept out of slope fits
        with fits.open(p, mode="update") as hdul:
            hdul["GROUPDQ"].data[:, 0] |= DNU
            hdul["GROUPDQ"].data[:, 5, 3, 3] |= SAT
    make_dark(paths, tmp_path / "a.fits", counts_path=tmp_path / "ca.fits")
    make_dark(paths, tmp_path / "b.fits", counts_path=tmp_path / "cb.fits", exclude_flags=("SATURATED",))
    ua, ub = fits.getdata(tmp_path / "ca.fits", "USED"), fits.getdata(tmp_path / "cb.fits", "USED")
    assert not ua[0].any() and ub[0].min() >= 3 and ua[5, 3, 3] == ub[5, 3, 3] == 0
    with pytest.raises(ValueError, match="HOT"):
        make_dark(paths, tmp_path / "c.fits", exclude_flags=("HOT",))


@pytest.mark.parity
def test_miri_dark_is_4d_with_the_first_integration_apart_and_validates(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for f in range(3):
        data = rng.normal(0, 1, (3, 6, 16, 20)) + 0.5 * np.arange(6)[None, :, None, None]
        data += rng.normal(100, 30, (3, 1, 16, 20))           # pedestal (bias + kTC) per integration
        data[0] += 5.0 * np.exp(-np.arange(6))[:, None, None]  # the first integration differs
        path = str(tmp_path / f"miri{f}.fits")
        io.write_ramp(make_ramp(3, 6, 16, 20, instrument="MIRI", data=data), path, step="jump")
        paths.append(path)
    out = tmp_path / "miri_dark.fits"
    summary = make_dark(paths, out)
    reftype, _, shape = validate("DarkMIRIModel", out)
    assert summary["dark_integrations"] == 2 and shape == (2, 6, 16, 20)
    ref = io.read_reference(out, "DARK")
    assert ref.dq.shape == (2, 1, 16, 20)
    # jwst convention: each integration's group 0 is subtracted (the pedestal stays in the
    # science data), so group 0 of the dark is 0 and the cube holds the signal since group 0.
    # 3 values per pixel in dark integration 1, 6 in 2 (+- 4 sigma of the mean; CDS noise sqrt 2)
    assert np.all(ref.data[:, 0] == 0)
    base = 0.5 * np.arange(6)[:, None, None]
    shape = 5.0 * (np.exp(-np.arange(6)) - 1.0)[:, None, None]
    assert abs(np.mean((ref.data[0] - base - shape)[1:])) < 4 * np.sqrt(2) / np.sqrt(3 * 5 * 320)
    assert abs(np.mean(ref.data[1, 1:] - base[1:])) < 4 * np.sqrt(2) / np.sqrt(6 * 5 * 320)


def rateints_of(paths, tmp_path):
    """rateints of ramp files (detcal ramp_fit, gain 2 e-/DN, CDS read noise 1.4 DN)."""
    out = []
    for k, path in enumerate(paths):
        ramp = io.read_ramp(path)
        shape = ramp.shape[2:]
        refs = {"gain": io.Reference("GAIN", np.full(shape, 2.0, np.float32)),
                "readnoise": io.Reference("READNOISE", np.full(shape, 1.4, np.float32))}
        _, rateints = steps.REGISTRY["ramp_fit"].run(ramp, refs)
        out.append(str(tmp_path / f"{os.path.basename(path)[:-5]}_rateints.fits"))
        io.write_rate(out[-1], rateints, ramp.header, tables=ramp.tables)
    return out


@pytest.mark.parity
@pytest.mark.parametrize("instrument", ["NIRCAM", "MIRI"])
def test_every_product_opens_and_validates_with_its_stdatamodels_model(tmp_path, instrument):
    rng = np.random.default_rng(14)
    paths = []
    for f in range(3):
        data = rng.normal(0, 2.0, (3, 12, 16, 20)) + 0.3 * np.arange(12)[None, :, None, None]
        paths.append(str(tmp_path / f"{instrument.lower()}{f}.fits"))
        io.write_ramp(make_ramp(3, 12, 16, 20, instrument=instrument, data=data), paths[-1],
                      step="jump")
    products = {"dark": make_dark(paths, tmp_path / "dark.fits")["path"],
                "readnoise": make_readnoise(paths, tmp_path / "rn.fits")["path"],
                "mask": make_mask(rateints_of(paths, tmp_path), paths, tmp_path / "mask.fits",
                                  gain_path=2.0)["path"]}
    if instrument != "MIRI":                      # jwst has no MIRI superbias
        products["superbias"] = make_superbias(paths, tmp_path / "sb.fits", gain_path=2.0)["path"]
    models = {"dark": "DarkMIRIModel" if instrument == "MIRI" else "DarkModel",
              "readnoise": "ReadnoiseModel", "mask": "MaskModel", "superbias": "SuperBiasModel"}
    for kind, path in products.items():
        reftype, descrip, shape = validate(models[kind], path)
        assert reftype == io.REFTYPES[kind] and descrip
        h = fits.getheader(path)
        for key in keywords.REFERENCE:
            assert key in h, (kind, key)
        assert h["INSTRUME"] == instrument and h["DCVERS"]
        history = "\n".join(str(c) for c in h["HISTORY"])
        assert all(os.path.basename(p) in history for p in paths), kind


def _jwst_dark_current(ramp_path, dark_path, monkeypatch):
    import stpipe.crds_client
    from jwst.dark_current import DarkCurrentStep
    from stdatamodels.jwst.datamodels import RampModel
    monkeypatch.setattr(stpipe.crds_client, "get_context_used", lambda *a, **k: "offline")
    with RampModel(ramp_path) as model:
        result = DarkCurrentStep(override_dark=str(dark_path)).run(model)
        assert result.meta.cal_step.dark_sub == "COMPLETE"
        return result.data.copy(), result.pixeldq.copy()


def _detcal_dark_current(ramp_path, dark_path):
    ramp = io.read_ramp(ramp_path, "dark_current")
    ramp = dark_current.run(ramp, {"dark": io.read_reference(dark_path, "DARK", like=ramp)})
    return ramp.data, ramp.pixeldq


@pytest.mark.parity
def test_jwst_dark_current_step_with_our_dark_gives_detcal_dark_current(tmp_path, monkeypatch):
    """A DARK made from simulated RAPID ramps, as override_dark of jwst's DarkCurrentStep, on a
    simulated RAPID and a SHALLOW4 exposure (averaged by both), and a MIRI 4-D dark."""
    det = detector(size=64, ngroups=24, nints=3, seed=21, dark_median=0.5)
    refs = truth_references(det, 24)
    chain_nodark = ("dq_init", "saturation", "superbias", "refpix", "linearity")
    dark_inputs, _ = write_set(tmp_path, det, 2, chain_nodark + ("jump",), refs, "rapid")
    dark_path = tmp_path / "dark.fits"
    make_dark(dark_inputs, dark_path)
    for readpatt, ngroups in (("RAPID", 10), ("SHALLOW4", 4)):
        sci = run_chain(det, 5, chain_nodark, refs, readpatt=readpatt, ngroups=ngroups, nints=2)
        sci_path = str(tmp_path / f"sci_{readpatt}.fits")
        io.write_ramp(sci, sci_path)
        jd, jp = _jwst_dark_current(sci_path, dark_path, monkeypatch)
        dd, dp = _detcal_dark_current(sci_path, dark_path)
        print(f"{readpatt}: max |jwst - detcal| = {np.abs(jd - dd).max():.3g} DN")
        np.testing.assert_array_equal(dd, jd)
        np.testing.assert_array_equal(dp, jp)
    # MIRI: 4-D dark, dark integration 1 for science integration 1, 2 for the rest
    rng = np.random.default_rng(8)
    mpaths = []
    for f in range(2):
        data = rng.normal(0, 1, (3, 6, 16, 20)) + np.arange(6)[None, :, None, None]
        data[0] += 7.0
        mpaths.append(str(tmp_path / f"m{f}.fits"))
        io.write_ramp(make_ramp(3, 6, 16, 20, instrument="MIRI", data=data), mpaths[-1], step="jump")
    make_dark(mpaths, tmp_path / "mdark.fits")
    sci_path = str(tmp_path / "msci.fits")
    io.write_ramp(make_ramp(3, 5, 16, 20, instrument="MIRI", data=rng.normal(50, 3, (3, 5, 16, 20))),
                  sci_path, step="linearity")
    jd, jp = _jwst_dark_current(sci_path, tmp_path / "mdark.fits", monkeypatch)
    dd, dp = _detcal_dark_current(sci_path, tmp_path / "mdark.fits")
    np.testing.assert_array_equal(dd, jd)
    np.testing.assert_array_equal(dp, jp)


@pytest.mark.parametrize("key,value", [("DETECTOR", "NRCA2"), ("READPATT", "BRIGHT1"),
                                       ("NOUTPUTS", 1), ("NGROUPS", 5)])
def test_mixed_configuration_groups_are_rejected_naming_file_and_keyword(tmp_path, key, value):
    good = small_ramp_files(tmp_path, n=2)
    kwargs = {key: value}
    if key == "NGROUPS":
        odd = small_ramp_files(tmp_path, n=1, ngroups=5, name="odd")
    else:
        odd = small_ramp_files(tmp_path, n=1, name="odd", **kwargs)
    rate = tmp_path / "good_rateints.fits"
    cube = {k: np.zeros((2, 16, 20), np.uint32 if k == "dq" else np.float32)
            for k in ("sci", "err", "dq", "var_poisson", "var_rnoise")}
    io.write_rate(rate, cube, io.read_ramp(good[0]).header)
    calls = [lambda: make_dark(good + odd, tmp_path / "d.fits"),
             lambda: make_readnoise(good + odd, tmp_path / "r.fits"),
             lambda: make_superbias(good + odd, tmp_path / "s.fits"),
             lambda: make_mask([str(rate)], good + odd, tmp_path / "m.fits", gain_path=2.0)]
    for call in calls:
        with pytest.raises(InputError, match=r"odd0\.fits: ") as err:
            call()
        assert key in str(err.value) and "configuration group" in str(err.value)


def test_nframes_above_1_and_dark_subtracted_inputs_are_rejected(tmp_path):
    bright = small_ramp_files(tmp_path, n=2, name="b2", READPATT="BRIGHT2", NFRAMES=2)
    with pytest.raises(InputError, match=r"b20\.fits: NFRAMES=2, GROUPGAP=0.*NFRAMES=1 and GROUPGAP=0"):
        make_dark(bright, tmp_path / "d.fits")
    gap = small_ramp_files(tmp_path, n=1, name="g", READPATT="BRIGHT1", GROUPGAP=1)
    with pytest.raises(InputError, match="GROUPGAP=1"):
        make_dark(gap, tmp_path / "d.fits")
    sub = small_ramp_files(tmp_path, n=1, name="s")
    with fits.open(sub[0], mode="update") as hdul:
        hdul[0].header["S_DARK"] = "COMPLETE"
    with pytest.raises(InputError, match="S_DARK=COMPLETE"):
        make_dark(sub, tmp_path / "d.fits")
    with pytest.raises(ValueError, match="PEDIGREE"):
        make_dark(small_ramp_files(tmp_path, n=1, name="p"), tmp_path / "d.fits", pedigree="MADE UP")


# --------------------------------------------------------------------------------------------
# DARK, READNOISE, MASK: truth recovery on a simulated detector
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hot_set(tmp_path_factory):
    """NIRCam-SW-like 128 px detector, 3 exposures x 4 integrations x 100 RAPID groups (1070 s),
    processed dq_init .. jump (no dark subtraction) plus rateints. Every effect on (1/f, output
    offsets, kTC, CRs at 4 /cm2/s, nonlinearity, saturation); the hot population is raised to 5 %
    of the pixels (log-uniform 1-1000 e-/s) so that precision and recall are measured on ~700
    pixels."""
    directory = tmp_path_factory.mktemp("hot_set")
    det = detector(size=128, ngroups=100, nints=4, seed=11, hot_frac=0.05, hot_max=1000.0)
    refs = truth_references(det, 100)
    jumps, rates = write_set(directory, det, 3, NIR_TO_JUMP, refs, "hot", rateints=True)
    return {"det": det, "jumps": jumps, "rates": rates, "dir": directory}


def pixel_slopes(values, times):
    """Least-squares slope [DN/s] of every pixel over its non-NaN groups: (ngroups, P) -> (P,)."""
    w = np.isfinite(values).astype(float)
    y = np.where(w > 0, values, 0.0)
    t = times[:, None]
    sw, st, stt, sy, sty = w.sum(0), (w * t).sum(0), (w * t * t).sum(0), (w * y).sum(0), (w * t * y).sum(0)
    den = sw * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((sw >= 2) & (den > 0), (sw * sty - st * sy) / den, np.nan)


def test_dark_rate_per_amplifier_recovers_the_truth(hot_set, tmp_path):
    """Statistic: per amplifier, the least-squares slope of the DARK's mean group signal over the
    active pixels with a value in every group, against the mean of the truth rate map [DN/s]
    over the same pixels; tolerance max(1 %, 2 sigma_stat), sigma_stat = std over integrations
    of that amplifier's mean per-pixel slope / sqrt(integrations)."""
    det = hot_set["det"]
    out = tmp_path / "dark.fits"
    summary = make_dark(hot_set["jumps"], out, counts_path=tmp_path / "counts.fits",
                        table_path=tmp_path / "dark.tsv", figure_path=tmp_path / "dark.png")
    used = fits.getdata(tmp_path / "counts.fits", "USED")
    complete = np.all(used > 0, axis=0)
    truth = det.science(det.dark_rate) / det.gain                   # DN/s
    regs = common.regions(det.geometry)
    tgroup = fits.getheader(hot_set["jumps"][0])["TGROUP"]
    times = (np.arange(100) + 1.0) * tgroup
    per_int = {k: [] for k in regs}
    for path in hot_set["jumps"]:
        sci, gdq = fits.getdata(path, "SCI"), fits.getdata(path, "GROUPDQ")
        for i in range(sci.shape[0]):
            slopes = pixel_slopes(dark.dark_values(sci[i], gdq[i]).reshape(100, -1).astype(float),
                                  times).reshape(complete.shape)
            for name, mask in regs.items():
                per_int[name].append(np.nanmean(slopes[mask & complete]))
    for name in ("amp1", "amp2", "amp3", "amp4", "active"):
        sel = regs[name] & complete
        expect = truth[sel].mean()
        got = summary["rate_DN_per_s"][1][name]
        sigma_stat = np.std(per_int[name], ddof=1) / np.sqrt(len(per_int[name]))
        tol = max(0.01 * expect, 2 * sigma_stat)
        print(f"{name}: truth {expect:.5f} DN/s, DARK {got:.5f} DN/s ({got / expect - 1:+.3%}), "
              f"sigma_stat {sigma_stat / expect:.3%}, {sel.sum()} pixels")
        assert abs(got - expect) <= tol
    assert summary["pixels_filled"] > 0          # neighbours of saturating pixels are extrapolated


def test_hot_pixels_are_found_with_99_percent_precision_and_recall(hot_set, tmp_path):
    """Statistic: HOT in our MASK vs the truth HOT map (rate >= 1 e-/s), active pixels."""
    det = hot_set["det"]
    out = tmp_path / "mask.fits"
    summary = make_mask(hot_set["rates"], hot_set["jumps"], out, gain_path=det.gain, hot_threshold=1.0,
                        warm_threshold=0.05, table_path=tmp_path / "mask.tsv",
                        figure_path=tmp_path / "mask.png")
    dq = io.read_reference(out, "MASK").dq
    found = (dq & dqflags.HOT) != 0
    truth = det.science(det.hot)
    tp = np.count_nonzero(found & truth)
    precision, recall = tp / found.sum(), tp / truth.sum()
    warm_found, warm_truth = (dq & dqflags.WARM) != 0, det.science(det.warm)
    both = np.count_nonzero(warm_found & warm_truth)
    print(f"HOT: {found.sum()} found, {truth.sum()} true, precision {precision:.4f}, recall {recall:.4f}; "
          f"WARM: {warm_found.sum()} found, {warm_truth.sum()} true, {both} in common; "
          f"counts {summary['counts']}")
    assert precision >= 0.99 and recall >= 0.99
    assert np.all(dq[found] & DNU)                                    # HOT is DO_NOT_USE
    reference = det.science(det.reference)
    assert np.all(dq[reference] == dqflags.REFERENCE_PIXEL)
    assert summary["counts"]["noisy"] <= 0.001 * (~reference).sum()  # no noisy pixels simulated
    table = pd.read_csv(tmp_path / "mask.tsv", sep="\t")
    assert table.set_index("type").loc["hot", "npix"] == found.sum()
    assert os.path.getsize(tmp_path / "mask.png") > 10_000


def test_rapid_dark_averaged_into_shallow4_matches_a_native_shallow4_dark(tmp_path):
    """A DARK from 16 RAPID integrations (24 groups), averaged by detcal.steps.dark_current into
    SHALLOW4 (NFRAMES=4, GROUPGAP=1, 5 groups), against a dark made the same way from 16
    integrations simulated natively in SHALLOW4 (independent noise). Dark rate raised to
    0.5 e-/s so that a one-frame misalignment would be a 2.6 DN offset.

    Statistics, over active pixels with data in every group of both darks:
    (1) per group, the mean difference within 4 standard errors (std of the differences /
        sqrt(pixels));
    (2) z = difference / sqrt(errA^2/nA + errB^2/nB) (ERR / sqrt(count) per dark; the averaged
        dark's ERR and count are averaged over its frames, which treats the frames of one
        integration as fully correlated, as their shared kTC offset makes them): robust std
        (1.4826 MAD) in [0.8, 1.2] and |median| < 0.1.
    """
    det = detector(size=64, ngroups=24, nints=8, seed=31, dark_median=0.5)
    refs = truth_references(det, 24)
    rapid, _ = write_set(tmp_path, det, 2, NIR_TO_JUMP, refs, "rapid")
    make_dark(rapid, tmp_path / "dark.fits", counts_path=tmp_path / "counts.fits")
    ref = io.read_reference(tmp_path / "dark.fits", "DARK")
    used = fits.getdata(tmp_path / "counts.fits", "USED").astype(np.float32)
    nframes, groupgap = sim.pattern("SHALLOW4")
    avg = {name: dark_current.match_dark(arr, 1, 0, ngroups=5, nframes=nframes, groupgap=groupgap)[0]
           for name, arr in (("dark", ref.data), ("err", ref.err), ("used", used))}
    native = [run_chain(det, 10 + e, NIR_TO_JUMP, refs, readpatt="SHALLOW4", ngroups=5, nints=8)
              for e in range(2)]
    nd, ne, nu = dark.dark_from_arrays([(r.data, r.groupdq) for r in native])
    active = ~det.science(det.reference)
    ok = active & np.all(avg["used"] >= 1, axis=0) & np.all(nu >= 1, axis=0) & np.all(used > 0, axis=0)
    diff = (avg["dark"] - nd)[:, ok].astype(np.float64)
    sigma = np.sqrt(avg["err"][:, ok] ** 2 / avg["used"][:, ok] + ne[:, ok] ** 2 / nu[:, ok])
    z = diff / sigma
    se = diff.std(axis=1) / np.sqrt(ok.sum())
    robust = 1.4826 * np.median(np.abs(z - np.median(z)))
    print(f"SHALLOW4 from RAPID vs native: mean difference per group {np.round(diff.mean(axis=1), 3)} DN "
          f"(standard errors {np.round(se, 3)}), signal {np.round(nd[:, ok].mean(axis=1), 1)} DN; "
          f"z median {np.median(z):.3f}, robust std {robust:.3f}, {ok.sum()} pixels")
    assert np.all(np.abs(diff.mean(axis=1)) < 4 * se)
    assert abs(np.median(z)) < 0.1 and 0.8 <= robust <= 1.2


@pytest.fixture(scope="module")
def noise_set(tmp_path_factory):
    """128 px detector, 2 exposures x 5 integrations x 21 groups (100 CDS pairs per pixel) with
    correlated/uncorrelated 1/f noise and output offsets/drifts SWITCHED OFF; processed dq_init,
    saturation, superbias, linearity, jump: refpix is skipped because there is nothing for it to
    correct, and on a 128 px detector it would add the noise of its few reference pixels (+2 %)."""
    directory = tmp_path_factory.mktemp("noise_set")
    det = detector(size=128, ngroups=21, nints=5, seed=7, c_pink=0.0, u_pink=0.0, amp_offset=0.0,
                   amp_drift=0.0)
    refs = truth_references(det, 21)
    chain = ("dq_init", "saturation", "superbias", "linearity", "jump")
    paths, _ = write_set(directory, det, 2, chain, refs, "noise")
    return {"det": det, "paths": paths}


def test_readnoise_median_recovers_the_white_cds_noise(noise_set, tmp_path):
    """Statistic: median of the READNOISE map over active pixels vs the median of the truth white
    CDS noise map (sqrt 2 x single-frame noise / gain) [DN]; tolerance 2 %."""
    det = noise_set["det"]
    out = tmp_path / "readnoise.fits"
    summary = make_readnoise(noise_set["paths"], out, gain_path=det.gain, table_path=tmp_path / "rn.tsv",
                             figure_path=tmp_path / "rn.png")
    assert "CDS" in fits.getheader(out)["DESCRIP"]
    assert fits.getheader(out, "SCI")["BUNIT"] == "DN" and fits.getheader(out)["RNCONV"] == "CDS"
    truth = det.science(det.readnoise_cds_dn)
    active = ~det.science(det.reference)
    ratio = summary["median_active_DN"] / np.median(truth[active])
    print(f"read noise: median {summary['median_active_DN']:.4f} DN vs truth "
          f"{np.median(truth[active]):.4f} DN ({ratio - 1:+.2%}), {summary['n_cds']} pairs per pixel")
    assert abs(ratio - 1) < 0.02
    table = pd.read_csv(tmp_path / "rn.tsv", sep="\t").set_index("region")
    assert list(table.index) == ["amp1", "amp2", "amp3", "amp4", "active", "reference"]
    assert table.loc["reference", "npix"] == (~active).sum()
    # per-pixel: the map follows the truth's 5 % pixel-to-pixel scatter
    rn = io.read_reference(out, "READNOISE").data
    assert np.corrcoef(rn[active], truth[active])[0, 1] > 0.3
    assert table.loc["active", "readnoise_p50_e"] == pytest.approx(
        table.loc["active", "readnoise_p50_DN"] * det.gain, rel=1e-5)


def test_cds_pairs_are_independent_trim_an_odd_group_and_drop_jumped_pairs():
    assert readnoise.pair_groups(5) == [(0, 1), (2, 3)]
    assert readnoise.pair_groups(3) == [(0, 1)]
    assert readnoise.pair_groups(12, 5, 1) == [(5, 6), (7, 8), (9, 10)]
    data = (np.arange(5, dtype=np.float32) ** 2)[:, None, None] * np.ones((5, 1, 3), np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[1, 0, 1] = JUMP        # a CR between groups 0 and 1: pair (0, 1) dropped
    gdq[2, 0, 2] = JUMP        # a CR before group 2: both groups of (2, 3) hold it, pair kept
    cds = readnoise.cds_frames(data, gdq)
    assert cds.shape == (2, 1, 3)
    assert np.isnan(cds[:, 0, :]).tolist() == [[False, True, False], [False, False, False]]
    assert cds[1, 0, 0] == 9.0 - 4.0


def test_readnoise_is_cds_noise_scaled_for_nframes():
    rng = np.random.default_rng(6)
    cds = rng.normal(0, 10.0, (400, 20, 20)).astype(np.float32)
    noise, count = readnoise.cds_noise(cds)
    assert np.median(noise) == pytest.approx(10.0, rel=0.01)
    noise4, _ = readnoise.cds_noise(cds / 2.0, nframes=4)         # 4-frame groups: half the noise
    np.testing.assert_allclose(noise4, noise, rtol=1e-5)


def test_miri_readnoise_drops_the_first_five_and_the_last_group_and_validates(tmp_path):
    rng = np.random.default_rng(13)
    paths = []
    for f in range(2):
        data = rng.normal(0, 3.0 / np.sqrt(2), (4, 12, 16, 20))
        data[:, :5] += 100.0 * rng.random((4, 5, 16, 20))                  # reset anomaly
        data[:, -1] += 50.0                                                  # last-frame effect
        paths.append(str(tmp_path / f"m{f}.fits"))
        io.write_ramp(make_ramp(4, 12, 16, 20, instrument="MIRI", data=data), paths[-1], step="refpix")
    summary = make_readnoise(paths, tmp_path / "rn.fits")
    assert summary["pairs"] == [(5, 6), (7, 8), (9, 10)] and summary["n_cds"] == 24
    assert summary["median_active_DN"] == pytest.approx(3.0, rel=0.1)


def test_readnoise_rejects_ramps_too_short_for_a_pair(tmp_path):
    paths = small_ramp_files(tmp_path, n=1, ngroups=1)
    with pytest.raises(InputError, match="no CDS pair"):
        make_readnoise(paths, tmp_path / "r.fits")


# --------------------------------------------------------------------------------------------
# SUPERBIAS
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bias_set(tmp_path_factory):
    """128 px detector, 3 exposures x 10 integrations x 3 groups, every effect on, after dq_init
    and saturation only."""
    directory = tmp_path_factory.mktemp("bias_set")
    det = detector(size=128, ngroups=3, nints=10, seed=5)
    refs = truth_references(det, 3)
    paths, _ = write_set(directory, det, 3, ("dq_init", "saturation"), refs, "bias")
    return {"det": det, "paths": paths}


def test_superbias_recovers_the_bias_and_the_ktc_noise(bias_set, tmp_path):
    """Statistics: (1) superbias - truth bias over active pixels: |median| < 1 DN and its std
    within 25 % of the expected sqrt(kTC^2 + read^2 + output offsets^2)/gain/sqrt(30);
    (2) kTC from the mode of the per-pixel bias scatter within 5 % of the simulated 37.6 e-;
    (3) the single-frame read noise (same mode, of group 1 - group 0) within 8 %."""
    det = bias_set["det"]
    out = tmp_path / "superbias.fits"
    summary = make_superbias(bias_set["paths"], out, gain_path=det.gain, table_path=tmp_path / "sb.tsv",
                             figure_path=tmp_path / "sb.png")
    ref = io.read_reference(out, "SUPERBIAS")
    active = ~det.science(det.reference)
    diff = (ref.data - det.science(det.bias))[active & ((ref.dq & DNU) == 0)]
    p = det.params
    expect_std = np.sqrt(p["ktc"] ** 2 + p["rn_cds"] ** 2 / 2 + p["amp_offset"] ** 2) / det.gain / np.sqrt(30)
    ktc = summary["ktc"]
    print(f"superbias - truth: median {np.median(diff):.3f} DN, std {np.std(diff):.3f} DN (expected "
          f"{expect_std:.3f}); kTC {ktc['ktc_e']:.2f} e- (truth {p['ktc']}), scatter mode "
          f"{ktc['scatter_mode_DN']:.3f} DN, frame noise {ktc['frame_noise_mode_DN']:.3f} DN; "
          f"{summary['n_unreliable']} UNRELIABLE_BIAS")
    assert abs(np.median(diff)) < 1.0
    assert np.std(diff) == pytest.approx(expect_std, rel=0.25)
    assert ktc["ktc_e"] == pytest.approx(p["ktc"], rel=0.05)
    # white single-frame noise, plus the 1/f that a CDS keeps (a few per cent)
    assert ktc["frame_noise_mode_DN"] == pytest.approx(p["rn_cds"] / np.sqrt(2) / det.gain, rel=0.08)
    h = fits.getheader(out)
    assert h["KTC_E"] == pytest.approx(ktc["ktc_e"]) and fits.getheader(out, "SCI")["BUNIT"] == "DN"
    table = pd.read_csv(tmp_path / "sb.tsv", sep="\t").set_index("region")
    assert {"bias_p50_DN", "scatter_mode_DN", "ktc_DN", "ktc_e", "n_unreliable_bias"} <= set(table.columns)


def test_superbias_flags_an_unreliable_pixel_but_never_a_reference_pixel_do_not_use(tmp_path):
    rng = np.random.default_rng(9)
    paths = []
    for f in range(4):
        data = rng.normal(10000, 2.0, (5, 2, 24, 24)).astype(np.float32)
        data[:, 0, 10, 10] += rng.normal(0, 200.0, 5)         # active pixel with a wild bias
        data[:, 0, 1, 1] += rng.normal(0, 200.0, 5)           # reference pixel with a wild bias
        gdq = np.zeros(data.shape, np.uint8)
        if f == 0:
            gdq[:, 0, 12, 12] = SAT                            # no group-0 value in this file
        paths.append(str(tmp_path / f"b{f}.fits"))
        io.write_ramp(make_ramp(5, 2, 24, 24, data=data, groupdq=gdq), paths[-1], step="saturation")
    out = tmp_path / "sb.fits"
    summary = make_superbias(paths, out)
    ref = io.read_reference(out, "SUPERBIAS")
    assert ref.dq[10, 10] == dqflags.UNRELIABLE_BIAS | DNU
    assert ref.dq[1, 1] == dqflags.UNRELIABLE_BIAS
    assert summary["n_unreliable"] == 2 and ref.dq[12, 12] == 0
    assert ref.data[5, 5] == pytest.approx(10000, abs=1.0)
    assert ref.err[5, 5] == pytest.approx(2 / np.sqrt(20), rel=0.5)


def test_superbias_rejects_refpix_corrected_and_miri_inputs(tmp_path):
    paths = small_ramp_files(tmp_path, n=1, name="rp")
    with fits.open(paths[0], mode="update") as hdul:
        hdul[0].header["S_REFPIX"] = "COMPLETE"
    with pytest.raises(InputError, match="S_REFPIX=COMPLETE"):
        make_superbias(paths, tmp_path / "s.fits")
    miri = str(tmp_path / "miri.fits")
    io.write_ramp(make_ramp(2, 3, 8, 12, instrument="MIRI"), miri, step="saturation")
    with pytest.raises(InputError, match="MIRI"):
        make_superbias([miri], tmp_path / "s.fits")


def test_superbias_ktc_comes_from_the_chi_corrected_mode():
    # per-pixel std of k = 29 degrees of freedom (30 integrations): its mode is sqrt(28/29) sigma
    rng = np.random.default_rng(10)
    s = np.sqrt(rng.chisquare(29, 200_000) / 29) * 20.0
    assert common.half_sample_mode(s) == pytest.approx(20.0 * np.sqrt(28 / 29), rel=0.02)
    out = superbias.ktc_from_scatter(s, np.full(10, 12.0), 29, 1e9)
    assert out["scatter_mode_DN"] == pytest.approx(20.0, rel=0.02)
    assert out["ktc_DN"] == pytest.approx(16.0, rel=0.04)


# --------------------------------------------------------------------------------------------
# MASK: closed form
# --------------------------------------------------------------------------------------------
def test_hot_and_warm_are_significance_tests_of_the_mean_rate_and_saturation_counts_as_hot():
    # 4 integrations, VAR_RNOISE 0.01 (DN/s)^2 each: mean-rate sigma 0.05 DN/s (k2 = 1, no
    # Poisson term: gain huge); thresholds warm 0.1, hot 0.5 DN/s, z_alpha 3
    slopes = np.array([[0.80, 0.40, 0.30, np.nan, 0.20, 0.90],
                       [0.80, 0.40, 0.30, np.nan, 0.28, 0.70],
                       [0.80, 0.40, 0.30, np.nan, 0.20, 0.80],
                       [0.80, 0.40, 0.30, 0.90, 0.28, 0.80]], np.float32)[:, None, :]
    var_rn = np.full(slopes.shape, 0.01, np.float32)
    dq = np.zeros(slopes.shape, np.uint32)
    dq[:3, 0, 3] = SAT | DNU                                   # saturated in 3 of 4 integrations
    m = badpix.mean_dark_rate(slopes, var_rn)
    assert m["rate"][0].tolist() == pytest.approx([0.8, 0.4, 0.3, 0.9, 0.24, 0.8], abs=1e-6)
    assert m["var_rn"][0, 0] == pytest.approx(0.0025) and m["var_rn"][0, 3] == pytest.approx(0.01)
    z = [badpix.rate_significance(m["rate"], m["var_rn"], m["n_eff"], 1.0, t, 1e12, 100.0, 10)
         for t in (0.5, 0.1)]
    assert z[0][0].tolist() == pytest.approx([6.0, -2.0, -4.0, 4.0, -5.2, 6.0], abs=1e-4)
    hot, warm = badpix.hot_warm(z[0], z[1], 3.0, badpix.saturated_count(slopes, dq), 4)
    # pixel 2: 0.3 DN/s is 4 sigma above WARM; pixel 1: 0.4 is 6 sigma above WARM, 2 below HOT;
    # pixel 4: 0.24 is 2.8 sigma above WARM, not enough
    assert hot[0].tolist() == [True, False, False, True, False, True]
    assert warm[0].tolist() == [False, True, True, False, False, False]


def test_hot_and_warm_false_flag_rate_is_alpha_for_pixels_at_the_threshold():
    """Statistic: pixels whose true rate is exactly the WARM threshold (Gaussian slope noise of
    variance 1.2 x (VAR_RNOISE + Poisson variance of the rate): a 20 % excess the population
    scale k2 must find) flagged WARM; expected alpha x N = 100 of N = 100000 (alpha 1e-3),
    tolerance 4 sigma of a Poisson count (+-40)."""
    rng = np.random.default_rng(3)
    nints, npix, gain, t_int, ngroups = 6, 100_000, 2.0, 150.0, 15
    warm = 0.05
    pois = badpix.poisson_slope_variance(warm, gain, t_int, ngroups)
    vr = rng.uniform(0.5, 2.0, (nints, 1, npix)) * 1e-4
    sd = np.sqrt(1.2 * (vr + pois))
    slopes = (warm + rng.standard_normal((nints, 1, npix)) * sd).astype(np.float32)
    m = badpix.mean_dark_rate(slopes, vr)
    chi2 = badpix.scatter_chi2(slopes, vr, m["rate"],
                               badpix.poisson_slope_variance(m["rate"], gain, t_int, ngroups))
    k2 = badpix.noise_scale(chi2, m["n"], np.ones((1, npix), bool))
    assert k2 == pytest.approx(1.2, rel=0.03)
    alpha, z_alpha = badpix.false_alarm_z(100.0, npix)
    z = badpix.rate_significance(m["rate"], m["var_rn"], m["n_eff"], k2, warm, gain, t_int, ngroups)
    n_flag = int(np.count_nonzero(z > z_alpha))
    print(f"alpha {alpha:.1e}, z {z_alpha:.3f}, k2 {k2:.3f}: {n_flag} flagged, expected {alpha * npix:.0f}")
    assert abs(n_flag - alpha * npix) <= 40


def test_a_slope_raised_by_an_unflagged_cosmic_ray_is_rejected_and_a_warm_pixel_is_kept():
    rng = np.random.default_rng(5)
    nints, npix = 6, 4000
    vr = np.full((nints, 1, npix), 1e-4)
    slopes = rng.normal(0.0, 0.01, (nints, 1, npix))
    slopes[:, 0, 1] += 0.2                               # warm in every integration: kept
    slopes[2, 0, 2] += 0.12                              # 12 sigma in one integration: dropped
    slopes[0, 0, 3] += 0.12                              # two of two: the higher one dropped
    use = badpix.usable_slopes(slopes, vr)
    use[2:, 0, 3] = False
    use, dropped = badpix.reject_high_slopes(slopes, vr, use, 1.0, 0.0, z_reject=5.0)
    assert dropped[0, :4].tolist() == [0, 0, 1, 1]
    assert not use[2, 0, 2] and not use[0, 0, 3] and use[1, 0, 3]
    assert dropped.sum() == 2                              # Gaussian pixels: none beyond 5 sigma
    rate = badpix.mean_dark_rate(slopes, vr, use)["rate"]
    assert rate[0, 1] == pytest.approx(0.2, abs=0.02) and abs(rate[0, 2]) < 0.02


def test_jump_rules_tell_rc_from_telegraph():
    g = np.zeros((40, 1, 3), np.uint8)
    g[:10:1, 0, 0] = JUMP                 # 10 jumps, all early: RC-like
    g[::4, 0, 1] = JUMP                   # 10 jumps spread out: telegraph-like
    g[:5, 0, 2] = JUMP                    # too few jumps
    rc, tel, n = badpix.jump_classes(g, min_jumps=10)
    assert rc[0].tolist() == [True, False, False] and tel[0].tolist() == [False, True, False]
    assert n[0].tolist() == [10, 10, 5]


def test_assemble_sets_do_not_use_per_type_and_keeps_reference_pixels_clean():
    ref = np.zeros((1, 4), bool)
    ref[0, 3] = True
    flags = {name: np.zeros((1, 4), bool) for name in badpix.TYPES}
    flags["hot"][0, [0, 3]] = True
    flags["warm"][0, 1] = True
    flags["dead"][0, 2] = True
    dq = badpix.assemble((1, 4), ref, flags, ("hot", "dead"))
    assert dq[0].tolist() == [dqflags.HOT | DNU, dqflags.WARM, dqflags.DEAD | DNU,
                              dqflags.REFERENCE_PIXEL]
    with pytest.raises(ValueError, match="bogus"):
        badpix.assemble((1, 4), ref, flags, ("bogus",))


def test_noisy_pixels_are_judged_against_the_population_not_the_readnoise():
    """CDS pairs of 5000 pixels (read noise 5 % pixel to pixel, 40 pairs each): a 2x pixel is
    noisy, a 1.1x pixel is not (below noisy_min_ratio), a hot pixel's Poisson noise and a pixel
    with 6 pairs only widen their own null distribution, and the normal pixels give at most a
    Poisson-likely number of false flags (expected 1)."""
    rng = np.random.default_rng(8)
    npairs, npix, gain = 40, 5000, 2.0
    sigma = 10.0 * (1 + 0.05 * rng.standard_normal(npix))
    sigma[0], sigma[1] = 20.0, 11.0
    cds = rng.standard_normal((npairs, 1, npix)) * sigma
    cds[:, 0, 2] = 3000.0 + rng.normal(0.0, np.sqrt(10.0 ** 2 + 3000.0 / gain), npairs)   # hot
    cds[5, 0, 3] = np.nan
    cds[:, 0, 4] = np.nan                                       # 6 pairs only (next to a saturating
    cds[:6, 0, 4] = [14.0, -14.0, 14.0, -14.0, 14.0, -14.0]    # pixel): 1.5x measured, not significant
    cv = badpix.cds_variance(cds.astype(np.float32), gain)
    assert cv["count"][0, 3] <= npairs - 1
    assert cv["poisson"][0, 2] == pytest.approx(1500.0, rel=0.01)
    alpha, z = badpix.false_alarm_z(1.0, npix)
    out = badpix.noisy_pixels(cv["var"], np.ones((1, npix), bool), z, 1.645, 1.2, cv["poisson"],
                              cv["count"])
    assert out["noisy"][0, 0] and not out["noisy"][0, 1] and not out["noisy"][0, 2]
    assert not out["noisy"][0, 4] and out["score"][0, 4] < 3.0
    assert out["median_noise"] == pytest.approx(10.0, rel=0.02)
    assert np.count_nonzero(out["noisy"][0, 1:]) <= 4          # P(Poisson(1) > 4) = 0.4 %
    # width of t: (2/3) sqrt(0.113^2 + 0.05^2) = 0.083 of its centre (40 pairs, 5 % spread);
    # z_alpha 3.54: limit ((1 + 3.54 x 0.083) / (1 - 1.645 x 0.083))^1.5 = 1.83
    assert out["limit_factor"] == pytest.approx(1.83, rel=0.06)


def test_dead_pixels_are_ramps_that_never_change(tmp_path):
    paths = small_ramp_files(tmp_path, n=2, nints=2, ngroups=6)
    for p in paths:
        with fits.open(p, mode="update") as hdul:
            hdul["SCI"].data[:, :, 8, 8] = 123.0
    rates = rateints_of(paths, tmp_path)
    summary = make_mask(rates, paths, tmp_path / "m.fits", gain_path=2.0)
    dq = io.read_reference(tmp_path / "m.fits", "MASK").dq
    assert dq[8, 8] & dqflags.DEAD and dq[8, 8] & DNU
    assert summary["counts"]["dead"] == 1
