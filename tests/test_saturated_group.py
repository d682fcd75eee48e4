"""Two edge cases of a configuration group saturated everywhere (issue 13: a valid input), through
the workflow's steps (raw SCI at the ADC limit, 65535 DN, flagged by the saturation step;
``truthkit.reduce_exposure``, the branch without dark subtraction the jump statistics and the MASK
read):

* jump statistics: a row without any usable group difference has every percentage and number
  per integration NaN (was 0.0, which reads as "no cosmic rays"), counts 0 and detection time 0 s,
  in the TSV, the JSON (summary, per integration) and the group's summary row; a saturated
  exposure in a good group leaves the group's numbers finite;
* MASK: a set saturated in (nearly) every pixel is unusable (light leak, wrong bias), not a
  detector full of hot pixels: no HOT flag, the pixels are not judged (they keep the inputs'
  flags), a table row, header keywords, a log warning and a note say why; an isolated pixel
  saturated in every group (a real hot pixel) stays HOT.
"""

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits

from detcal import dqflags, simulate
from detcal.analysis import jumps, summary
from detcal.reffiles import badpix

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import truthkit  # noqa: E402

# TFRAME 10.7 s (full-frame RAPID) and 10x the demo's cosmic-ray rate: a few hits per
# integration even on 32 x 32 pixels and 5 groups
SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 5, "nints": 2, "nexposures": 3,
        "overrides": {"tframe": 10.7, "cr_rate": 40.0}}
HOT_PIXELS = [(8, 9), (15, 20), (22, 6)]          # (row, column), active pixels of the 32 x 32 frame
PER_INT = ("jump_flags_per_integration", "pct_pixels_with_jump", "pct_pixels_with_jump_per_integration",
           "events_per_integration")


def _reduce(tmp, name, saturate):
    """Simulate the set (seed 7), saturate the raw files as ``saturate(index, sci)`` says, run the
    workflow's steps; returns the products of every exposure and the references."""
    files = simulate.write_detector_set(SPEC, str(tmp / name / "sim"), 7)
    for k, path in enumerate(files["uncal"]):
        with fits.open(path, mode="update") as hdul:
            saturate(k, hdul["SCI"].data)
    refs = files["references"]
    return [truthkit.reduce_exposure(u, refs, str(tmp / name / "work"), "NIR", branches=("nodark",))
            for u in files["uncal"]], refs


def _everywhere(k, sci):
    sci[:] = 65535


def _first_file(k, sci):
    if k == 0:
        sci[:] = 65535


def _hot_pixels(k, sci):
    for y, x in HOT_PIXELS:
        sci[..., y, x] = 65535


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saturated")
    return {name: _reduce(tmp, name, how) for name, how in (
        ("everywhere", _everywhere), ("first_file", _first_file), ("hot_pixels", _hot_pixels))}


def _jumps(products, refs, out):
    doc = jumps.jump_statistics_file([p["jump"] for p in products], str(out / "j.tsv"), str(out / "j.json"),
                                     group="g", gain_path=refs["gain"], readnoise_path=refs["readnoise"])
    return pd.read_csv(out / "j.tsv", sep="\t"), yaml.safe_load((out / "j.json").read_text()), doc


def test_jump_numbers_per_integration_of_a_group_saturated_everywhere_are_nan(sets, tmp_path):
    table, doc, _ = _jumps(*sets["everywhere"], tmp_path)
    assert len(table) == (SPEC["nexposures"] + 1) * 5          # every file and the group, 4 outputs + all
    assert (table.n_usable_differences == 0).all() and (table.n_active_pixels > 0).all()
    for col in PER_INT:
        assert table[col].isna().all(), col
    for col in ("n_jump_flags", "n_pixels_with_jump", "n_events", "detection_time_per_integration_s"):
        assert (table[col] == 0).all(), col                     # counts and the detection time: a true 0
    s = doc["summary"]
    for key in ("jump_flags_per_integration", "pct_pixels_with_jump_per_integration",
                "pct_pixels_with_jump_all_integrations", "events_per_integration"):
        assert s[key] is None, key                              # NaN in the JSON
    assert "no jump percentages" in s["note"]
    assert len(doc["per_integration"]) == SPEC["nexposures"] * SPEC["nints"]
    assert all(row["pct_pixels_with_jump"] is None for row in doc["per_integration"])
    row = summary.summary_row("g", {"jumps": doc})
    assert row["pct_pixels_with_jump_per_integration"] is None
    assert row["jumps.pct_pixels_with_jump_all_integrations"] is None and row["jumps.note"]


def test_a_saturated_file_in_a_good_group_has_nan_rows_and_the_group_finite_numbers(sets, tmp_path):
    table, doc, _ = _jumps(*sets["first_file"], tmp_path)
    bad = table.exposure == "demo_nrca1_e001"
    assert bad.sum() == 5 and (table[bad].n_usable_differences == 0).all()
    for col in PER_INT:
        assert table[bad][col].isna().all(), col
        assert np.isfinite(table[~bad][col]).all(), col           # the other files and the group
    per_int = pd.DataFrame(doc["per_integration"])
    assert per_int.pct_pixels_with_jump.isna().sum() == SPEC["nints"]
    # numbers per integration of the group: over the usable integrations only (the saturated
    # file's would count as 0 and lower them by a third)
    n_used = (SPEC["nexposures"] - 1) * SPEC["nints"]
    group = table[table.exposure == "all"].set_index("amplifier")
    files = table[~bad & (table.exposure != "all")].groupby("amplifier")
    assert np.allclose(group.n_jump_flags, files.n_jump_flags.sum()[group.index])
    assert group.loc["all", "n_jump_flags"] > 0 and group.loc["all", "n_events"] > 0
    assert np.allclose(group.jump_flags_per_integration, group.n_jump_flags / n_used)
    assert np.allclose(group.events_per_integration, group.n_events / n_used)
    assert group.loc["all", "pct_pixels_with_jump_per_integration"] == pytest.approx(
        per_int.pct_pixels_with_jump.mean())                      # NaN rows left out
    assert doc["summary"].get("note") is None


def _mask(products, refs, out, **kw):
    return badpix.make_mask([p["rateints"] for p in products], [p["jump"] for p in products],
                            str(out / "mask.fits"), gain_path=refs["gain"], table_path=str(out / "m.tsv"),
                            raw_paths=[p["raw"] for p in products], **kw)


def test_mask_of_a_set_saturated_everywhere_flags_no_hot_pixel_and_says_why(sets, tmp_path, caplog):
    products, refs = sets["everywhere"]
    with caplog.at_level(logging.WARNING, logger="detcal.reffiles.badpix"):
        result = _mask(products, refs, tmp_path)
    table = pd.read_csv(tmp_path / "m.tsv", sep="\t").set_index("type")
    nact = 24 * 24
    assert result["saturated_set"] and result["saturated_fraction_of_active"] == 1.0
    assert table.loc["hot", "npix"] == 0 and table.loc["do_not_use (any)", "npix"] <= 4
    assert table.loc["saturated set (not judged)", "npix"] == nact
    assert table.loc["unmeasured (inputs' flags kept)", "npix"] == nact
    assert result["note"].startswith("exposure set unusable: 100 % of the active pixels saturated")
    assert any(result["note"] in r.getMessage() for r in caplog.records)
    with fits.open(tmp_path / "mask.fits") as hdul:
        dq, header = hdul["DQ"].data, hdul[0].header
    assert header["BPSATFR"] == 1.0 and header["BPNOTE"] == result["note"]
    pixeldq = fits.getdata(products[0]["jump"], "PIXELDQ")     # the previous mask, through dq_init
    active = (dq & dqflags.REFERENCE_PIXEL) == 0
    assert active.sum() == nact
    assert np.array_equal(dq[active], pixeldq[active])
    # the jwst_reffiles rule alone (no limit) calls every active pixel HOT: what this replaces
    (tmp_path / "old").mkdir()
    old = _mask(products, refs, tmp_path / "old", saturated_set_fraction=1.0)
    assert old["counts"]["hot"] == nact and not old["saturated_set"] and old["note"] is None
    # not judged at all: a saturated ramp is flat, DEAD with any peak-to-peak tolerance otherwise
    (tmp_path / "ptp").mkdir()
    flat = _mask(products, refs, tmp_path / "ptp", dead_ptp=1e6)
    assert all(flat["counts"][t] == 0 for t in badpix.TYPES) and flat["saturated_set"]


def test_mask_keeps_an_isolated_pixel_saturated_in_every_group_hot(sets, tmp_path):
    products, refs = sets["hot_pixels"]
    result = _mask(products, refs, tmp_path)
    assert not result["saturated_set"] and result["note"] is None
    # the saturation step grows the flags into the 8 neighbours (jwst's n_pix_grow_sat = 1)
    assert result["saturated_fraction_of_active"] == pytest.approx(9 * len(HOT_PIXELS) / 24 ** 2)
    with fits.open(tmp_path / "mask.fits") as hdul:
        dq, header = hdul["DQ"].data, hdul[0].header
    assert "BPSATFR" not in header and "BPNOTE" not in header
    for y, x in HOT_PIXELS:
        assert dq[y, x] & dqflags.HOT and dq[y, x] & dqflags.DO_NOT_USE, (y, x)
    table = pd.read_csv(tmp_path / "m.tsv", sep="\t")
    assert "saturated set (not judged)" not in set(table.type)


@pytest.mark.parametrize("n_saturated, unusable", [(80, False), (100, False), (101, True), (200, True)])
def test_saturated_set_limit_is_more_than_half_of_the_active_pixels(n_saturated, unusable):
    active = np.zeros((20, 20), bool)
    active[:, :10] = True                                     # 200 active pixels
    n_sat = np.zeros((20, 20), int)
    n_sat[:, 10:] = 4                                         # inactive pixels never count
    idx = np.flatnonzero(active)
    n_sat.ravel()[idx[:n_saturated]] = 3                      # more than half of 4 integrations
    n_sat.ravel()[idx[n_saturated:n_saturated + 5]] = 2       # exactly half: not saturated
    sat, fraction, flag = badpix.saturated_set(n_sat, active, 4)
    assert sat.sum() == n_saturated and fraction == n_saturated / 200 and flag is unusable
