"""The CCD branch of the workflow end to end, through snakemake.api (tiny simulated CCD set)."""

import shutil

import pandas as pd
import pytest
import yaml
from astropy.io import fits
from astropy.nddata import CCDData

from test_workflow import REPO, snakemake

pytestmark = pytest.mark.workflow

TINY_CCD = {
    "overscan": "[41:48, :]", "trim": "[1:40, :]", "hot_threshold": 0.5,
    "demo": {"seed": 3, "name": "CCDT", "rows": 32, "columns": 40, "overscan": 8, "nbias": 4,
             "darks": {"10": 3, "100": 3}, "flats": {"10": 1}, "lights": {"30": 1}},
}
TARGETS = ["results/ccd/summary.tsv", "results/ccd/inventory.tsv"]


def _workdir(path):
    """A work folder whose config/config.yaml has no CCD demo set (configs merge key by key, so
    the tiny set below would otherwise add its exposure times to the default demo's)."""
    shutil.copytree(REPO / "config", path / "config")
    cfg = yaml.safe_load((path / "config/config.yaml").read_text())
    cfg["ccd"]["demo"] = None
    (path / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def ccd_run(tmp_path_factory):
    workdir = _workdir(tmp_path_factory.mktemp("ccd_run"))
    snakemake(workdir, config={"ccd": TINY_CCD}, targets=TARGETS)
    return workdir


def test_ccd_branch_writes_the_issue_products(ccd_run):
    out = ccd_run / "results/ccd"
    for name in ("inventory.tsv", "decisions.tsv", "master_bias.fits", "master_dark_010s.fits",
                 "master_dark_100s.fits", "scaled_dark_030s.fits", "dark_rate.fits", "hot_pixels.tsv",
                 "readnoise.tsv", "hot_counts.tsv", "summary.tsv"):
        assert (out / name).exists(), name
    for name in ("master_bias", "master_darks", "dark_rate_histogram", "dark_linearity"):
        assert (ccd_run / f"results/plots/ccd/{name}.png").stat().st_size > 0
    assert not (ccd_run / "results/demo/uncal").exists()  # only the CCD set was simulated


def test_ccd_inventory_has_one_row_per_frame_and_says_what_it_was_used_for(ccd_run):
    table = pd.read_csv(ccd_run / "results/ccd/inventory.tsv", sep="\t")
    assert len(table) == 4 + 6 + 1 + 1
    assert table.groupby("kind").size().to_dict() == {"bias": 4, "dark": 6, "flat": 1, "light": 1}
    assert table.loc[table["kind"] == "dark", "used_for"].str.startswith("master dark").all()


def test_ccd_products_are_ccddata_with_exptime_and_provenance(ccd_run):
    dark = CCDData.read(ccd_run / "results/ccd/master_dark_100s.fits", hdu_uncertainty="UNCERT", hdu_mask="MASK")
    assert dark.shape == (32, 40) and dark.meta["EXPTIME"] == 100.0 and dark.meta["NCOMBINE"] == 3
    assert dark.meta["BIASSUB"] and dark.meta["OSCANSEC"] == "[41:48, :]"
    rate = CCDData.read(ccd_run / "results/ccd/dark_rate.fits", hdu_uncertainty="UNCERT", hdu_mask="MASK")
    assert str(rate.unit) == "electron / s" and rate.meta["NHOT"] == int(rate.mask.sum())


def test_ccd_summary_row_carries_dark_current_in_the_infrared_convention(ccd_run):
    row = pd.read_csv(ccd_run / "results/ccd/summary.tsv", sep="\t").iloc[0]
    assert row["group"] == "ccd" and row["detector"] == "CCDT"
    assert 10 < row["dark_current_e_per_1000s"] < 200 and row["ccd.read_noise_e"] > 0


def test_ccd_frame_without_exptime_stops_the_workflow_before_any_job(tmp_path, ccd_run):
    raw = tmp_path / "frames"
    shutil.copytree(ccd_run / "results/demo/ccd/raw", raw)
    bad = sorted(raw.glob("ccd_dark_100s_*.fits"))[0]
    with fits.open(bad, mode="update") as hdul:
        del hdul[0].header["EXPTIME"]
    work = tmp_path / "work"
    work.mkdir()
    _workdir(work)
    from snakemake.exceptions import WorkflowError
    with pytest.raises(WorkflowError, match=f"{bad.name}: no EXPTIME keyword"):
        snakemake(work, config={"ccd": dict(TINY_CCD, raw=str(raw / "*.fits"), demo=None)},
                  targets=TARGETS)
    assert not (work / "results/ccd").exists()
