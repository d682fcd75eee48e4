"""``references: crds``: references resolved by the crds client from a local cache, offline.

The demo's simulated references are installed in a CRDS cache (:mod:`crdskit`: context, rmaps on
the operational parkeys, server config; the server itself unreachable). The crds client then
resolves them from each exposure's headers; a workflow run with ``references: crds`` gives
bit-identical products to a run with the same references given explicitly, records ``R_<TYPE>``
and ``CRDS_CTX`` in its products, and an explicitly given reference still wins.
"""

import filecmp
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from detcal import crds_refs, simulate
from detcal.errors import InputError

import crdskit
from test_workflow import snakemake

SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 3, "nints": 1, "nexposures": 1}
MIRI = {"name": "MIRIMAGE", "preset": "miri_imager", "size": 16, "ngroups": 5, "nints": 1,
        "nexposures": 1}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Raw files and references of NRCA1 and MIRIMAGE, and a CRDS cache holding the references."""
    root = tmp_path_factory.mktemp("crds_refs")
    files = {s["name"]: simulate.write_detector_set(s, str(root / "data"), 41) for s in (SPEC, MIRI)}
    refs = [p for f in files.values() for p in f["references"].values()]
    names = crdskit.build_cache(root / "crds", refs)
    return root, files, names


def test_best_references_come_from_the_offline_cache_byte_for_byte(campaign):
    root, files, names = campaign
    with crdskit.crds_environment(root / "crds"):
        assert crds_refs.context_name() == crdskit.CONTEXT
        for det, f in files.items():
            keys = sorted(f["references"])
            got = crds_refs.best_references(f["uncal"][0], keys)
            assert sorted(got) == keys
            for key, path in got.items():
                assert path.endswith(names[f["references"][key]])        # the cache copy
                assert filecmp.cmp(path, f["references"][key], shallow=False)


def test_a_missing_cache_gives_one_clear_error(campaign, tmp_path):
    root, files, _ = campaign
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()
    with crdskit.crds_environment(tmp_path / "empty"):
        with pytest.raises(InputError, match=r"demo_nrca1_e001_uncal.fits: CRDS best references "
                                             r"\(dark\) failed .*CRDS_PATH=.*empty"):
            crds_refs.best_references(files["NRCA1"]["uncal"][0], ["dark"])
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()


@pytest.mark.workflow
def test_references_crds_gives_the_same_products_as_explicit_references(campaign):
    root, files, names = campaign
    f = files["NRCA1"]
    exposure = f["exposures"][0]
    target = f"results/rates/{exposure}_rate.fits"
    common = {"raw": f["uncal"][0], "sample_pixels": [[10, 10], [5, 8]],
              "analysis": {"enabled": False}}
    explicit = root / "explicit"
    explicit.mkdir()
    snakemake(explicit, config={**common, "references": {"NRCA1": dict(f["references"])}},
              targets=[target])
    # CRDS for everything but the gain, given explicitly (a copy outside the cache): it must win
    gain = root / "my_gain.fits"
    shutil.copyfile(f["references"]["gain"], gain)
    viacrds = root / "viacrds"
    viacrds.mkdir()
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()
    with crdskit.crds_environment(root / "crds"):
        snakemake(viacrds, config={**common, "references": {"NRCA1": {"crds": True, "gain": str(gain)}}},
                  targets=[target, "results/inventory.tsv"])
    table = pd.read_csv(viacrds / "results/inventory.tsv", sep="\t").set_index("exposure")
    assert table.loc[exposure, "CRDS_CTX"] == crdskit.CONTEXT          # in the report's inventory
    assert table.loc[exposure, "R_DARK"] == names[f["references"]["dark"]]
    assert "R_GAIN" not in table.columns
    with fits.open(explicit / target) as a, fits.open(viacrds / target) as b:
        for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data)
        h = b[0].header
        assert h["CRDS_CTX"] == crdskit.CONTEXT
        assert h["R_DARK"] == f"crds://{names[f['references']['dark']]}"
        assert h["R_READNO"] == f"crds://{names[f['references']['readnoise']]}"
        assert h["R_GAIN"] == "my_gain.fits"               # the explicit gain was used
        assert "CRDS_CTX" not in a[0].header
        assert any("input my_gain.fits" in line for line in h["HISTORY"])


@pytest.mark.workflow
def test_references_crds_for_every_detector_plans_a_run_and_a_missing_cache_is_one_error(campaign, tmp_path):
    """``references: crds`` (all detectors; MIRI has no SUPERBIAS in CRDS, which saturation only
    uses when there is one) builds the DAG; without a cache the run stops before any job with one
    error naming the exposure and the CRDS settings."""
    from snakemake.exceptions import WorkflowError
    root, files, _ = campaign
    raw = [f["uncal"][0] for f in files.values()]
    config = {"raw": raw, "references": "crds", "analysis": {"enabled": False}}
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()
    with crdskit.crds_environment(root / "crds"):
        snakemake(tmp_path / "ok", config=config, dryrun=True)
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()
    with crdskit.crds_environment(tmp_path / "no_cache"):
        with pytest.raises(WorkflowError, match=r"uncal.fits: CRDS best references .* failed .*CRDS_PATH="):
            snakemake(tmp_path / "bad", config=config, dryrun=True)
    crds_refs._best.cache_clear()
    crds_refs.context_name.cache_clear()
    assert not (tmp_path / "bad" / "results").exists()
