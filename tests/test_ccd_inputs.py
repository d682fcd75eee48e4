"""CCD branch: inventory, decisions, products and bad input (tiny simulated sets)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from detcal.analysis import summary
from detcal.ccd import products
from detcal.errors import InputError
from detcal.simulate import ccd as sim

import ccdkit

SPEC = {"rows": 32, "columns": 40, "overscan": 8, "nbias": 4, "darks": {10: 3, 100: 3},
        "flats": {10: 2}, "lights": {30: 1}}


def _cfg(spec=SPEC, **over):
    return ccdkit.ccd_config(**{**ccdkit.sections_for(spec), **over})


def _outputs(tmp):
    return [tmp / "out" / n for n in ("inventory.tsv", "decisions.tsv", "decisions.json")]


def _inventory(tmp, raw, cfg):
    return products.inventory_file(raw, cfg, *_outputs(tmp))


@pytest.fixture
def raw(tmp_path):
    return sim.write_ccd_set(SPEC, str(tmp_path / "sim"), 3)["raw"]


@pytest.mark.parametrize("key", ["IMAGETYP", "EXPTIME"])
def test_frame_without_imagetyp_or_exptime_is_one_error_naming_it_and_nothing_is_written(tmp_path, raw, key):
    with fits.open(raw[5], mode="update") as hdul:
        del hdul[0].header[key]
    with pytest.raises(InputError, match=key) as err:
        _inventory(tmp_path, raw, _cfg())
    assert err.value.path == raw[5]
    assert not any(p.exists() for p in _outputs(tmp_path))


def test_section_outside_the_frame_is_an_error_naming_the_file(tmp_path, raw):
    with pytest.raises(InputError, match="outside the frame") as err:
        _inventory(tmp_path, raw, _cfg(overscan="[41:50, :]"))
    assert err.value.path == raw[0]
    assert not any(p.exists() for p in _outputs(tmp_path))


def test_frames_of_different_shapes_are_an_error_naming_the_odd_one(tmp_path, raw):
    data = fits.getdata(raw[7])
    fits.writeto(raw[7], data[:, :-2], fits.getheader(raw[7]), overwrite=True)
    with pytest.raises(InputError, match="shape 32x46 differs") as err:
        _inventory(tmp_path, raw, _cfg())
    assert err.value.path == raw[7]


def test_no_bias_frames_when_darks_must_be_scaled_is_an_error(tmp_path):
    spec = dict(SPEC, nbias=0)
    files = sim.write_ccd_set(spec, str(tmp_path / "sim"), 1)["raw"]
    with pytest.raises(InputError, match=r"bias subtraction is needed \(darks must be scaled to 30 s\) "
                                         "but there are no BIAS frames"):
        _inventory(tmp_path, files, _cfg(spec))
    assert not any(p.exists() for p in _outputs(tmp_path))


def test_decisions_follow_the_seed_exposure_times_overscan_and_scaling(tmp_path, raw):
    plan, settings = _inventory(tmp_path, raw, _cfg())
    table = pd.read_csv(tmp_path / "out/decisions.tsv", sep="\t").set_index("decision")
    assert sorted(plan["dark_exptimes"]) == [10, 100]
    assert table.loc["flat 10 s: scaling", "value"] == "no"
    assert table.loc["light 30 s: scaling", "value"] == "yes, x0.3"
    assert plan["scaled_labels"] == [30] and plan["bias_subtract"]
    assert table.loc["overscan subtracted", "value"] == "yes"
    assert settings["overscan"]["ratio"] < 0.5  # subtracting it removes most frame-to-frame scatter
    inv = pd.read_csv(tmp_path / "out/inventory.tsv", sep="\t")
    assert list(inv.columns) == ["file", "IMAGETYP", "kind", "EXPTIME_s", "shape", "gain_e_per_ADU", "used_for"]
    assert len(inv) == len(raw) and set(inv["shape"]) == {"32x48"}
    assert inv.loc[inv["kind"] == "light", "used_for"].iloc[0].startswith("decision only: needs master dark 100 s")


def test_overscan_that_does_not_track_the_bias_is_judged_useless_and_only_trimmed(tmp_path):
    spec = dict(SPEC, overrides={"overscan_useful": False, "level_jitter": 0.0, "row_drift": 0.0})
    p = ccdkit.run_branch(tmp_path, spec, 4, cfg=_cfg(spec), analysis=False)
    ov = p["settings"]["overscan"]
    assert ov["useful"] is False and not ov["subtract"] and ov["ratio"] > 1
    header = fits.getheader(p["master_darks"][100])
    assert header["OSCANSUB"] is False and header["TRIMSEC"] == "[1:40, 1:32]"


def test_without_bias_frames_and_matching_darks_the_rate_comes_from_the_fit_across_exposure_times(tmp_path):
    """The seed's example 1: darks match every flat/light exposure time; no bias subtracted."""
    spec = dict(SPEC, nbias=0, darks={10: 5, 100: 5, 300: 5}, flats={10: 2}, lights={300: 1},
                overrides={"hot_fraction": 0.02})
    p = ccdkit.run_branch(tmp_path, spec, 5, cfg=_cfg(spec), analysis=False)
    assert not p["plan"]["bias_subtract"] and p["plan"]["dark_rate_method"] == "fit"
    assert fits.getheader(p["master_darks"][300])["BIASSUB"] is False
    rate = CCDData.read(p["dark_rate"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    hot = p["truth"]["hot"]
    np.testing.assert_array_equal(rate.mask.astype(bool), hot)  # bias left in the masters does not matter
    normal = ~hot
    err = np.hypot(np.sqrt(np.sum(rate.uncertainty.array[normal] ** 2.0)) / normal.sum(), rate.meta["RATECOH"])
    assert abs(rate.data[normal].mean() - p["truth"]["dark_rate"][normal].mean()) < 3 * err


def test_one_dark_exposure_time_gives_the_rate_from_it_after_bias_subtraction(tmp_path):
    spec = dict(SPEC, darks={300: 5}, flats={}, lights={}, overrides={"hot_fraction": 0.02})
    p = ccdkit.run_branch(tmp_path, spec, 6, cfg=_cfg(spec, overscan_model="polynomial", overscan_order=2))
    assert p["plan"]["dark_rate_method"] == "longest" and p["plan"]["bias_subtract"]
    rate = CCDData.read(p["dark_rate"], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    assert rate.meta["DRMETHOD"].startswith("longest") and rate.meta["OSCANMOD"] == "polynomial"
    np.testing.assert_array_equal(rate.mask.astype(bool), p["truth"]["hot"])


def test_products_are_ccddata_with_uncertainty_mask_and_provenance(tmp_path):
    p = ccdkit.run_branch(tmp_path, dict(SPEC, overrides={"cr_rate": 1e-4}), 7, cfg=_cfg(), figures=True)
    for path in [p["master_bias"], *p["master_darks"].values(), *p["scaled_darks"].values(), p["dark_rate"]]:
        ccd = CCDData.read(path, hdu_uncertainty="UNCERT", hdu_mask="MASK")
        assert ccd.shape == (32, 40) and ccd.uncertainty.array.shape == ccd.shape and ccd.mask is not None
        assert np.all(ccd.uncertainty.array[np.isfinite(ccd.data)] > 0)
        for key in ("DCVERS", "NPVERS", "APVERS", "IMAGETYP", "EXPTIME", "NCOMBINE", "COMBMETH", "CLIPMETH",
                    "OSCANSEC", "TRIMSEC", "BIASSUB"):
            assert key in ccd.meta, (path, key)
        assert any(h.startswith("input ") for h in ccd.meta["HISTORY"])
    assert str(CCDData.read(p["dark_rate"]).unit) == "electron / s"
    assert fits.getheader(p["master_darks"][100])["EXPTIME"] == 100.0
    scaled = fits.getheader(p["scaled_darks"][30])
    assert scaled["EXPTIME"] == 30.0 and scaled["SCALEDFR"] == 100.0
    hot = pd.read_csv(p["hot_pixels"], sep="\t")
    assert {"row", "column", "rate_e_per_s", "rate_err_e_per_s", "rate_100s_e_per_s"} <= set(hot.columns)
    assert all(os.path.getsize(p[n]) > 0 for n in ("master_bias.png", "dark_rate_histogram.png"))


def test_ccd_row_fills_the_dark_current_columns_of_the_summary(tmp_path):
    p = ccdkit.run_branch(tmp_path, SPEC, 8, cfg=_cfg(dark_expected=0.05))
    doc = json.loads(open(p["ccd.json"]).read())["summary"]
    ir = tmp_path / "ir.tsv"
    pd.DataFrame([{"group": "NRCA1_FULL", "dark_current_e_per_1000s": 2.0}]).to_csv(ir, sep="\t", index=False)
    table = summary.combine_summaries([str(ir), str(p["summary.tsv"])], str(tmp_path / "summary.tsv"))
    row = table.set_index("group").loc["ccd"]
    assert float(row["dark_current_e_per_1000s"]) == pytest.approx(doc["dark_current_e_per_1000s"])
    assert row["dark_expected_e_per_1000s"] == "50.0" and row["dark_verdict"] == doc["verdict"]
    assert float(row["ccd.read_noise_e"]) == pytest.approx(doc["read_noise_e"])


def test_image_in_an_extension_and_imagetyp_in_another_case_are_read(tmp_path, raw):
    for path in raw:
        data, old = fits.getdata(path), fits.getheader(path)
        header = fits.Header({"IMAGETYP": old["IMAGETYP"].lower() + " frame", "EXPTIME": old["EXPTIME"],
                              "GAIN": old["GAIN"]})
        fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(data)]).writeto(path, overwrite=True)
    cfg = _cfg(imagetyp={"bias": "BIAS FRAME", "dark": "Dark Frame", "flat": "flat frame", "light": "LIGHT FRAME"})
    plan, _ = _inventory(tmp_path, raw, cfg)
    assert sorted(plan["dark_exptimes"]) == [10, 100] and len(plan["bias_files"]) == 4


@pytest.mark.parametrize("clip, expect_clean", [("sigma", True), ("none", False)])
def test_cosmic_rays_are_rejected_by_the_sigma_clipped_combine(tmp_path, clip, expect_clean):
    """Many cosmic rays (2e-5 /pixel/s: ~1 % of the pixels of each 300 s frame); the 300 s master
    compared with truth rate x t / gain: outliers beyond 6 sigma only without clipping."""
    spec = dict(SPEC, darks={100: 3, 300: 5}, flats={}, lights={},
                overrides={"cr_rate": 2e-5, "hot_fraction": 0.0})
    cfg = _cfg(spec, combine={"clip": clip})
    p = ccdkit.run_branch(tmp_path, spec, 9, cfg=cfg, analysis=False)
    master = CCDData.read(p["master_darks"][300], hdu_uncertainty="UNCERT", hdu_mask="MASK")
    expected = p["truth"]["dark_rate"] * 300.0 / 1.5
    z = (master.data - expected) / master.uncertainty.array
    assert (np.abs(z) > 6).sum() == 0 if expect_clean else (z > 6).sum() > 20


@pytest.mark.parametrize("section, problem", [("[1:10]", "expected '\\[x1:x2, y1:y2\\]'"),
                                              ("[a:b, :]", "cannot parse"),
                                              ("[10:5, :]", "outside the frame")])
def test_bad_section_strings_are_named_errors(section, problem):
    from detcal.ccd.sections import parse_section
    with pytest.raises(InputError, match=problem):
        parse_section(section, (32, 48), "frame.fits", "trim")


def test_sections_are_fits_convention_1_based_inclusive_x_first():
    from detcal.ccd.sections import parse_section
    rows, cols = parse_section("[41:48, 3:32]", (32, 48))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (2, 32, 40, 48)
    assert parse_section("", (32, 48)) == (slice(0, 32), slice(0, 48))
