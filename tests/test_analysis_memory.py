"""Bounded memory of the group analyses (issue 15): dark current and stability read the group's
rateints one integration (or one block of rows of every integration) at a time, so their peak
memory does not grow with the number of integrations, and every number equals the one computed
on the whole stacked group (:func:`detcal.analysis.darkcurrent.read_group`). The jump statistics
read each jump ramp one integration (or block of rows) at a time, so they no longer hold a whole
exposure, with the numbers of the in-memory ramp.

The group: simulated raw ramps of a small NIR detector (the stability analysis's bias and CDS
noise inputs) and rateints products written beside them with random slopes, outliers (hot
pixels, cosmic-ray-like integrations), NaN and DQ flags (persistent and transient). What is
tested is the reading and the bookkeeping, not a truth: the slopes need not be a ramp fit's.
"""

import os
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from detcal import dqflags, inventory, io
from detcal import simulate as sim
from detcal.analysis import common, darkcurrent, jumps, robust, stability

SIZE = 96             # pixels per side (4-pixel reference border)
NEXP = 4              # exposures of the group (stability's trend test needs >= 3)


def write_group(tmp, nints, seed=1):
    """Raw ramps (4 groups) and rateints (nints per exposure) of NEXP exposures of NRCA1.

    Returns (rateints paths, uncal paths, gain path).
    """
    spec = {"name": "NRCA1", "preset": "nircam_sw", "size": SIZE, "ngroups": 4, "nints": nints,
            "nexposures": NEXP, "overrides": {"tframe": 10.73677}}
    files = sim.write_detector_set(spec, str(tmp), seed)
    rng = np.random.default_rng(seed)
    rateints = []
    for name, uncal in zip(files["exposures"], files["uncal"]):
        header = fits.getheader(uncal)
        shape = (nints, SIZE, SIZE)
        sci = rng.normal(0.03, 0.01, shape).astype(np.float32)
        sci[:, 10:14, 20] = 3.0                                   # hot pixels
        sci[rng.random(shape) < 0.002] = 0.8                      # cosmic-ray-like integrations
        sci[:, 30, 40] = np.nan                                   # no slope
        dq = np.zeros(shape, np.uint32)
        dq[:, 50, 5:9] = dqflags.DO_NOT_USE | dqflags.DEAD        # persistent: excluded pixels
        dq[rng.random(shape) < 0.01] |= dqflags.JUMP_DET          # transient: kept
        dq[0, 60, 60] = dqflags.DO_NOT_USE                         # one integration only
        prod = {"sci": sci, "err": np.full(shape, 0.01, np.float32), "dq": dq,
                "var_poisson": np.zeros(shape, np.float32), "var_rnoise": np.zeros(shape, np.float32)}
        path = os.path.join(str(tmp), f"{name}_rateints.fits")
        io.write_rate(path, prod, header)
        rateints.append(path)
    return rateints, files["uncal"], files["references"]["gain"]


def run_dark(group, out, **kwargs):
    rateints, uncal, gain = group
    return darkcurrent.dark_current_file(rateints, gain, f"{out}/dc.tsv", f"{out}/dc.json",
                                         histogram_tsv=f"{out}/hist.tsv", image_fits=f"{out}/slopes.fits",
                                         raw_paths=uncal, **kwargs)


def run_stability(group, out, **kwargs):
    rateints, uncal, gain = group
    return stability.stability_file(rateints, f"{out}/st.tsv", f"{out}/st.json", trends_tsv=f"{out}/tr.tsv",
                                    ramp_paths=uncal, bias_paths=uncal, gain_path=gain,
                                    baseline_output=f"{out}/base.fits", **kwargs)


def peak_bytes(function, *args, **kwargs):
    """Peak of the memory allocated through Python (tracemalloc) during one call [bytes]."""
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    return {n: write_group(tmp_path_factory.mktemp(f"group{n}"), n) for n in (1, 4)}


def test_peak_memory_does_not_grow_with_the_number_of_integrations(groups, tmp_path):
    # 4 and 16 integrations of 96 x 96 pixels; a stacked group (SCI + DQ, 8 bytes a value) grows
    # by 12 x 96 x 96 x 8 = 0.88 MB, and clipping it whole needs 48 bytes a value more (5.3 MB)
    stacked_growth = 12 * SIZE * SIZE * 8
    for name, run in (("dark", run_dark), ("stability", run_stability)):
        peaks = {}
        for n, group in groups.items():
            out = tmp_path / f"{name}{n}"
            out.mkdir()
            run(group, out, memory_mb=0.5)           # warm-up: imports and caches outside the peak
            peaks[n] = peak_bytes(run, group, out, memory_mb=0.5)
        growth = peaks[4] - peaks[1]
        # measured: dark 1.37 -> 1.38 MB, stability 1.56 -> 1.58 MB (x1.01); the stacked group
        # (before issue 15's change): dark 2.51 -> 8.39 MB, stability 2.61 -> 8.51 MB (x3.3)
        assert peaks[4] / peaks[1] < 1.25, (name, peaks)
        assert growth < 0.25 * stacked_growth, (name, peaks, stacked_growth)


def test_results_equal_the_stacked_computation(groups, tmp_path):
    group = groups[4]
    rateints = group[0]
    doc = run_dark(group, tmp_path, memory_mb=0.05)           # blocks of 1 row of 16 integrations
    cube, dq, headers, owner = darkcurrent.read_group(rateints)
    assert cube.shape == (NEXP * 4, SIZE, SIZE)
    mean, std, nused = robust.clipped_mean_std_images(cube)
    img = common.read_slope_images(tmp_path / "slopes.fits")
    np.testing.assert_array_equal(img["mean"], mean)
    np.testing.assert_array_equal(img["std"], std)
    np.testing.assert_array_equal(img["nused"], nused)
    np.testing.assert_array_equal(img["dq"], common.persistent_dq(dq))
    assert img["header"]["NINTUSED"] == cube.shape[0]

    geom, amp_map, active = common.layout(headers[0], cube.shape, rateints[0])
    select = darkcurrent.pixel_selection(active, dq)
    assert not select[50, 5:9].any() and select[60, 60]        # persistent flags only
    masks = common.amplifier_masks(amp_map, select, geom.noutputs)
    per_int = darkcurrent.integration_means(cube, masks)
    got = pd.DataFrame(doc["per_integration"])
    for label, values in per_int.items():
        np.testing.assert_array_equal(got[f"mean_DN_per_s_amp_{label}"].to_numpy(), values)
    for row in doc["table"]:
        st = darkcurrent.amplifier_dark(mean, masks)[row["amplifier"]]["stats"]
        assert (row["mean_DN_per_s"], row["std_DN_per_s"], row["n_pixels"]) == (st.mean, st.std, st.npix)

    sdoc = run_stability(group, tmp_path, memory_mb=0.05)
    base = common.read_slope_images(tmp_path / "base.fits")
    np.testing.assert_array_equal(base["mean"], mean)
    np.testing.assert_array_equal(base["nused"], nused)
    usable = active & ((common.persistent_dq(dq) & dqflags.DO_NOT_USE) == 0)
    smasks = common.amplifier_masks(amp_map, usable, geom.noutputs)
    gain = common.read_gain(group[2], headers[0], cube.shape)
    per = stability.slope_measurements(cube, dq, owner, NEXP, smasks, gain, stability.StabilityParameters())
    table = pd.DataFrame(sdoc["table"])
    names = [inventory.exposure_name(p, product=True) for p in rateints]
    for e, name in enumerate(names):
        rows = table[table.exposure == name].set_index("amplifier")
        for label in smasks:
            assert rows.loc[label, "dark_DN_per_s"] == np.mean(per["dark"][e][label])
            assert rows.loc[label, "hot_pixels"] == np.mean(per["hot_pixels"][e][label])
    # the CDS noise and bias, read one integration at a time, as from the whole ramp
    ramp = io.read_ramp(group[1][0])
    cds = stability.ramp_cds_measurements(ramp.data, ramp.groupdq, ramp.pixeldq, smasks)
    bias = stability.bias_measurements(ramp.data[:, 0], ramp.pixeldq, smasks, stability.StabilityParameters())
    first = table[table.exposure == names[0]].set_index("amplifier")
    for label in smasks:
        assert first.loc[label, "cds_noise_DN"] == np.mean(cds[label])
        assert first.loc[label, "bias_DN"] == np.mean(bias[label])


def test_memory_budget_changes_no_number(groups, tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    for run in (run_dark, run_stability):
        run(groups[4], small, memory_mb=0.01)                 # one row per block
        run(groups[4], large)                                 # the whole frame in one block
    for name in ("dc.tsv", "hist.tsv", "st.tsv", "tr.tsv"):
        assert (small / name).read_bytes() == (large / name).read_bytes(), name
    for name in ("slopes.fits", "base.fits"):
        a, b = common.read_slope_images(small / name), common.read_slope_images(large / name)
        for key in ("mean", "std", "nused", "dq"):
            np.testing.assert_array_equal(a[key], b[key])


def jump_ramps(group, fraction=1e-4, seed=2):
    """Jump-step-like ramps of the group's raw files: JUMP_DET set on a random ``fraction`` of the
    (group > 1, pixel) cells. Returns their paths."""
    rng = np.random.default_rng(seed)
    out = []
    for uncal in group[1]:
        ramp = io.read_ramp(uncal)
        hit = rng.random(ramp.groupdq.shape) < fraction
        hit[:, 0] = False
        ramp.groupdq[hit] |= np.uint8(dqflags.JUMP_DET)
        path = uncal.replace("_uncal.fits", "_jump.fits")
        io.write_ramp(ramp, path, step="jump")
        out.append(path)
    return out


def run_jumps(group, paths, out, **kwargs):
    gain = group[2]
    return jumps.jump_statistics_file(paths, f"{out}/j.tsv", f"{out}/j.json", events_tsv=f"{out}/je.tsv",
                                      map_fits=f"{out}/jm.fits", examples_tsv=f"{out}/jx.tsv", gain_path=gain,
                                      readnoise_path=gain.replace("gain", "readnoise"), **kwargs)


def test_jump_statistics_hold_one_integration_not_one_exposure(groups, tmp_path):
    # 4 exposures of 1 and 4 integrations (4 groups, 96 x 96): one exposure's ramp (SCI float32 +
    # GROUPDQ) grows by 3 x 4 x 96 x 96 x 5 bytes = 0.55 MB
    peaks = {}
    for n, group in groups.items():
        paths = jump_ramps(group)
        out = tmp_path / f"j{n}"
        out.mkdir()
        run_jumps(group, paths, out, memory_mb=0.5)
        peaks[n] = peak_bytes(run_jumps, group, paths, out, memory_mb=0.5)
    # measured: 1.47 -> 1.60 MB (+0.14 MB: the events and per-integration rows); the whole
    # exposure in memory (before issue 15's change): 1.31 -> 1.95 MB (+0.65 MB)
    assert peaks[4] - peaks[1] < 0.4 * (3 * 4 * SIZE * SIZE * 5), peaks


def test_jump_statistics_equal_the_in_memory_ramp(groups, tmp_path):
    group = groups[4]
    paths = jump_ramps(group)
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    doc = run_jumps(group, paths, small, memory_mb=0.001)       # median differences a row at a time
    run_jumps(group, paths, large)
    for name in ("j.tsv", "je.tsv", "jx.tsv"):
        assert (small / name).read_bytes() == (large / name).read_bytes(), name
    # the per-integration rows of the first file, from its ramp read whole into memory
    ramp = io.read_ramp(paths[0], "jump")
    name = inventory.exposure_name(paths[0], product=True)
    gain = common.read_gain(group[2], ramp.header, ramp.data.shape, ramp.path).astype(np.float64)
    rn = io.read_reference(group[2].replace("gain", "readnoise"), "READNOISE", like=ramp).data.astype(np.float64)
    whole = jumps.ramp_jump_statistics(ramp, name, common.expstart(ramp.header), gain, rn, [],
                                       jumps.JumpStatisticsParameters(), [])
    assert sum(r["n_jump_flags"] for r in whole["per_integration"]) > 0
    assert whole["per_integration"] == [r for r in doc["per_integration"] if r["exposure"] == name]
