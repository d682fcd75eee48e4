"""The Snakemake workflow end to end, through snakemake.api (dry run, real runs, lint, errors)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits

from detcal import demo, io, pipeline

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"

TINY_DEMO = {
    "seed": 7,
    "detectors": [
        {"name": "NRCA1", "preset": "nircam_sw", "size": 64, "ngroups": 5, "nints": 1, "nexposures": 2},
    ],
}


def snakemake(workdir, config=None, dryrun=False, targets=(), lint=False):
    """Run the workflow in ``workdir`` (which gets a copy of config/); return the DAG's job rules."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        DeploymentSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
    )

    workdir = Path(workdir)
    if not (workdir / "config").exists():
        shutil.copytree(REPO / "config", workdir / "config")
    configfile = workdir / "config" / "test.yaml"
    configfile.write_text(yaml.safe_dump(config or {}))
    with SnakemakeApi(OutputSettings(show_failed_logs=True)) as api:
        wf = api.workflow(snakefile=SNAKEFILE, workdir=workdir,
                          resource_settings=ResourceSettings(cores=2),
                          config_settings=ConfigSettings(configfiles=[workdir / "config/config.yaml",
                                                                      configfile]),
                          deployment_settings=DeploymentSettings())
        if lint:
            return wf.lint()
        dag = wf.dag(DAGSettings(targets=set(targets)))
        dag.execute_workflow(executor="local", pseudo_executor="dryrun" if dryrun else None,
                             execution_settings=ExecutionSettings())


def test_lint_is_clean(tmp_path):
    assert snakemake(tmp_path, lint=True) is False


def test_default_config_dry_run_plans_the_demo(tmp_path):
    snakemake(tmp_path, dryrun=True)
    assert not (tmp_path / "results").exists()


def test_schema_rejects_an_unknown_key(tmp_path):
    from snakemake.exceptions import WorkflowError
    with pytest.raises(WorkflowError, match=r"test.yaml: unknown config key kep \(value \['jump'\]\)") as err:
        snakemake(tmp_path, config={"kep": ["jump"]}, dryrun=True)
    assert len(str(err.value).splitlines()) <= 3      # not the schema dump


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One real run of the tiny demo (shared by the tests below)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    # the CCD branch has its own workflow test (test_workflow_ccd.py)
    snakemake(workdir, config={"demo": TINY_DEMO, "keep": ["saturation"], "sample_pixels": [[10, 10], [30, 40]],
                               "ccd": {"demo": None}})
    return workdir


def test_demo_run_writes_inventory_with_one_row_per_exposure(demo_run):
    table = pd.read_csv(demo_run / "results/inventory.tsv", sep="\t")
    assert sorted(table["exposure"]) == sorted(demo.table(TINY_DEMO, "results/demo").index)
    assert set(table["DETECTOR"]) == {"NRCA1"}
    assert table["group"].nunique() == 1
    assert {"TFRAME_s", "TGROUP_s", "NGROUPS", "READPATT"} <= set(table.columns)


def test_demo_run_leaves_last_ramp_product_and_deletes_temporary_ones(demo_run):
    last = pipeline.last_ramp_step("NIR", {})
    for exposure in demo.table(TINY_DEMO, "results/demo").index:
        folder = demo_run / "results/ramps" / exposure
        assert (folder / f"{exposure}_{pipeline.SUFFIX[last]}.fits").exists()
        assert (folder / f"{exposure}_{pipeline.SUFFIX['saturation']}.fits").exists()  # kept
        assert not (folder / f"{exposure}_{pipeline.SUFFIX['dq_init']}.fits").exists()  # temp


def test_demo_products_record_each_step(demo_run):
    exposure = demo.table(TINY_DEMO, "results/demo").index[0]
    path = demo_run / "results/ramps" / exposure / f"{exposure}_{pipeline.SUFFIX['saturation']}.fits"
    header = fits.getheader(path)
    assert header["S_DQINIT"] == "COMPLETE" and header["S_SATURA"] == "COMPLETE"
    assert any("saturation parameter n_pix_grow_sat = 1" in h for h in header["HISTORY"])


def test_real_data_run_through_configfile_without_edits(tmp_path, demo_run):
    """Point `raw` and `references` at files outside the workflow, as a user with real data would."""
    data = tmp_path / "data"
    shutil.copytree(demo_run / "results/demo/uncal", data / "raw")
    shutil.copytree(demo_run / "results/demo/references/NRCA1", data / "refs")
    refs = {key: str(data / "refs" / f"{key}.fits") for key in ("mask", "saturation", "superbias")}
    # a per-step override: the saturation group-2 check gets its own copy of the superbias
    shutil.copy(refs["superbias"], data / "refs" / "bias_for_saturation.fits")
    refs["steps"] = {"saturation": {"superbias": str(data / "refs" / "bias_for_saturation.fits")}}
    work = tmp_path / "work"
    work.mkdir()
    snakemake(work, config={"raw": str(data / "raw" / "*_uncal.fits"), "references": {"NRCA1": refs},
                            "keep": ["saturation"],
                            "steps": {name: name in ("dq_init", "saturation", "superbias")
                                      for name in pipeline.ORDER["NIR"]}})
    table = pd.read_csv(work / "results/inventory.tsv", sep="\t")
    assert len(table) == 2 and not (work / "results/demo").exists()
    exposure = table["exposure"][0]
    ramp = io.read_ramp(work / "results/ramps" / exposure / f"{exposure}_superbiasstep.fits")
    raw = io.read_ramp(data / "raw" / f"{exposure}_uncal.fits")
    bias = io.read_reference(refs["superbias"], "SUPERBIAS", like=raw).data
    np.testing.assert_allclose(ramp.data, raw.data - bias, atol=0.01)
    saturation_product = work / "results/ramps" / exposure / f"{exposure}_saturationstep.fits"
    history = "\n".join(fits.getheader(saturation_product)["HISTORY"])
    assert "saturation input bias_for_saturation.fits" in history
    assert "superbias input superbias.fits" in "\n".join(ramp.header["HISTORY"])


def test_every_step_draws_its_sample_pixel_figure_from_a_table(demo_run):
    exposure = demo.table(TINY_DEMO, "results/demo").index[0]
    for step in pipeline.chain("NIR", {}):
        if step == "ramp_fit":
            continue
        folder = demo_run / "results/plots/steps" / exposure
        table = pd.read_csv(folder / f"{exposure}_{step}.tsv", sep="\t")
        assert {"input_DN", "output_DN", "removed_DN", "groupdq"} <= set(table.columns)
        assert (folder / f"{exposure}_{step}.png").stat().st_size > 10000
    sb = pd.read_csv(demo_run / "results/plots/steps" / exposure / f"{exposure}_superbias.tsv", sep="\t")
    assert (sb["removed_DN"] > 1000).all()          # the superbias step removes the ~10^4 DN bias


def test_demo_run_reaches_rate_files(demo_run):
    from stdatamodels.jwst import datamodels
    for exposure in demo.table(TINY_DEMO, "results/demo").index:
        with datamodels.ImageModel(str(demo_run / f"results/rates/{exposure}_rate.fits")) as rate:
            good = np.isfinite(rate.data)
            values = rate.data[good]
            spread = 1.4826 * np.median(np.abs(values - np.median(values)))
            # dark-subtracted dark: centred on 0 DN/s within a fraction of the pixel noise
            assert good.mean() > 0.9 and abs(np.median(values)) < 0.5 * spread
            assert rate.meta.bunit_data == "DN/s"


def test_demo_run_builds_reference_files_and_analyses(demo_run):
    from stdatamodels.jwst import datamodels
    group = demo.table(TINY_DEMO, "results/demo")["group"].iloc[0]
    models = {"dark": datamodels.DarkModel, "superbias": datamodels.SuperBiasModel,
              "readnoise": datamodels.ReadnoiseModel, "mask": datamodels.MaskModel}
    for kind, model in models.items():
        with model(str(demo_run / f"results/reffiles/{group}/{kind}.fits")) as ref:
            ref.validate()
            assert ref.meta.reftype == kind.upper()
    # keep_default_na=False: pandas would read the verdict "N/A" as NaN
    summary = pd.read_csv(demo_run / "results/analysis/summary.tsv", sep="\t", keep_default_na=False)
    assert list(summary["group"]) == [group]
    # TINY_DEMO's 5 groups of 18 ms frames cannot test a 1.9 e-/1000 s dark: N/A (darkcurrent.no_power)
    assert summary["dark_verdict"].iloc[0] == "N/A"
    for name in ("jumps", "darkcurrent", "stability", "effective_noise", "noise_decomposition"):
        assert (demo_run / f"results/analysis/{group}/{name}.json").exists()


def test_missing_reference_for_real_data_is_one_clear_error(tmp_path, demo_run):
    from snakemake.exceptions import WorkflowError
    raw = str(demo_run / "results/demo/uncal/*_uncal.fits")
    with pytest.raises(WorkflowError, match=r"needs? a \w+ reference for detector NRCA1"):
        snakemake(tmp_path, config={"raw": raw}, dryrun=True)


def test_bad_raw_file_is_rejected_naming_the_file(tmp_path, demo_run):
    from snakemake.exceptions import WorkflowError
    bad = tmp_path / "raw" / "broken_uncal.fits"
    bad.parent.mkdir()
    good = next((demo_run / "results/demo/uncal").glob("*_uncal.fits"))
    bad.write_bytes(good.read_bytes()[:5000])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(WorkflowError, match="broken_uncal.fits"):
        snakemake(work, config={"raw": str(bad)}, dryrun=True)
