"""A mixed commissioning campaign in one workflow run (``snakemake --cores 2``).

Real data, as a user gives them (``raw:`` + explicit ``references:``), simulated small:

* NRCA1 RAPID in a subarray (SUB32TATS, 1 output; written from a simulated 32 x 32 set),
* NRCB1 BRIGHT2 (NFRAMES=2, full frame of its own size),
* MIRIMAGE FAST (20 groups: the no-dark branch leaves out the first 10 and the last one).

Every configuration group gets every product valid for it, decided when the DAG is built
(:func:`detcal.inventory.reference_products`): no DARK for the NFRAMES=2 group and no SUPERBIAS for
MIRI, each with its reason in the summary; all analyses and the other reference files for all. The
reference files of the subarray group pass crds certify with nothing excused.
"""

import glob
import os

import pandas as pd
import pytest
from astropy.io import fits

from detcal import inventory, simulate

import crdskit
from test_crds_certify import MINI_FULL_FRAME, check_reference
from test_workflow import snakemake

pytestmark = pytest.mark.workflow

SPECS = [
    {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "readpatt": "RAPID", "ngroups": 4, "nints": 5,
     "nexposures": 2, "overrides": {"tframe": 10.73677}},
    {"name": "NRCB1", "preset": "nircam_sw", "size": 32, "readpatt": "BRIGHT2", "ngroups": 3, "nints": 5,
     "nexposures": 2, "overrides": {"tframe": 10.73677}},
    {"name": "MIRIMAGE", "preset": "miri_imager", "size": 16, "readpatt": "FAST", "ngroups": 20,
     "nints": 5, "nexposures": 2},
]
SUBARRAY = {"NRCA1": "SUB32TATS"}
# 2 exposures x 5 integrations: the 10 ramps the temporal effective noise needs, in every group


def make_campaign(root):
    """Simulate the raw files and the references a team starts from; the subarray set's raw
    headers say SUB32TATS read through 1 output. Returns (raw glob, references config)."""
    refs = {}
    for i, spec in enumerate(SPECS):
        files = simulate.write_detector_set(spec, str(root), 100 + i)
        refs[spec["name"]] = dict(files["references"])
        if spec["name"] in SUBARRAY:
            for path in files["uncal"]:
                with fits.open(path, mode="update") as hdul:
                    hdul[0].header["SUBARRAY"] = SUBARRAY[spec["name"]]
                    hdul[0].header["NOUTPUTS"] = 1
    return str(root / "uncal" / "*_uncal.fits"), refs


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign")
    raw, refs = make_campaign(root / "data")
    work = root / "work"
    work.mkdir()
    snakemake(work, config={"raw": raw, "references": refs, "sample_pixels": [[10, 10], [5, 8]]})
    return work


def test_inventory_decides_products_per_group():
    rows = {"nir_rapid": {"family": "NIR", "NFRAMES": 1, "GROUPGAP": 0, "READPATT": "RAPID"},
            "nir_bright2": {"family": "NIR", "NFRAMES": 2, "GROUPGAP": 0, "READPATT": "BRIGHT2"},
            "nir_deep8": {"family": "NIR", "NFRAMES": 8, "GROUPGAP": 12, "READPATT": "DEEP8"},
            "miri_fast": {"family": "MIRI", "NFRAMES": 1, "GROUPGAP": 0, "READPATT": "FAST"}}
    got = {k: inventory.reference_products(r) for k, r in rows.items()}
    assert all(v is None for v in got["nir_rapid"].values())
    assert "NFRAMES=2" in got["nir_bright2"]["dark"] and got["nir_bright2"]["superbias"] is None
    assert "GROUPGAP=12" in got["nir_deep8"]["dark"]
    assert got["miri_fast"]["dark"] is None and "MIRI" in got["miri_fast"]["superbias"]
    for products in got.values():
        assert products["readnoise"] is None and products["mask"] is None


def test_mixed_campaign_completes_with_every_valid_product(campaign_run):
    table = pd.read_csv(campaign_run / "results/inventory.tsv", sep="\t")
    groups = sorted(set(table["group"]))
    assert len(groups) == 3
    summary = pd.read_csv(campaign_run / "results/analysis/summary.tsv", sep="\t",
                          keep_default_na=False)
    assert sorted(summary["group"]) == groups
    for _, row in summary.iterrows():
        members = table[table["group"] == row["group"]].iloc[0]
        products = inventory.reference_products(members)
        built = {k for k, why in products.items() if not why}
        assert set(row["reffiles"].split(",")) == built
        for kind in inventory.REFERENCE_PRODUCTS:
            path = campaign_run / "results/reffiles" / row["group"] / f"{kind}.fits"
            assert path.exists() == (kind in built), path
        for kind, why in products.items():
            if why:
                assert f"{kind}: {why}" in row["reffiles_not_built"]
        for analysis in ("jumps", "darkcurrent", "stability", "effective_noise"):
            assert (campaign_run / "results/analysis" / row["group"] / f"{analysis}.json").exists()
        assert row["dark_current_e_per_1000s"] != ""
    bright2 = summary[summary["group"].str.contains("BRIGHT2")].iloc[0]
    assert "dark: BRIGHT2 has NFRAMES=2" in bright2["reffiles_not_built"]
    miri = summary[summary["group"].str.startswith("MIRIMAGE")].iloc[0]
    assert "superbias: MIRI" in miri["reffiles_not_built"]


def test_mixed_campaign_reference_files_certify(campaign_run, tmp_path):
    paths = sorted(glob.glob(str(campaign_run / "results/reffiles/*/*.fits")))
    paths = [p for p in paths if not p.endswith("_counts.fits")]
    assert len(paths) == 4 + 3 + 3    # SUB32TATS: all four; BRIGHT2: no DARK; MIRI: no SUPERBIAS
    crdskit.build_cache(tmp_path / "crds", paths)
    with crdskit.crds_environment(tmp_path / "crds"):
        for path in paths:
            subarray = "SUB32TATS" in os.path.basename(os.path.dirname(path))
            check_reference(path, excused=() if subarray else MINI_FULL_FRAME)
