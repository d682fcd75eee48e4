"""The fused per-exposure mode (``pipeline: {mode: fused}``) against the per-step rules.

One tiny campaign (NIR: 4 outputs, 48 x 48, 2 integrations of 5 groups; MIRI: 24 x 32, 2 x 12
groups; one exposure each; analyses and reference files on, so the chain makes what they read)
is run through the workflow once in each mode with ``--cores 1``, up to every file the chain
makes for later rules (rate/rateints of both branches, the no-dark jump ramps, the noise
product, the saturation and before-dark products: :func:`chain_targets`). Both runs keep their
temporary files (``--notemp``), so the test sees every file each mode wrote. Then:

* every file the fused run wrote is one the per-step run wrote, with the same contents: FITS
  data arrays bit for bit and headers card for card (HISTORY included), TSV and PNG byte for
  byte;
* the per-step run wrote nothing else but the intermediate ramps the fused run keeps in memory
  (those neither in ``keep:`` nor read by a later rule, and MIRI's re-run refpix of the branch
  without dark);
* the chain ran as one job per exposure (one log each), and the per-step run one job per step.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from detcal import pipeline

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]

DEMO = {
    "seed": 11,
    "detectors": [
        {"name": "NRCA1", "preset": "nircam_sw", "size": 48, "ngroups": 5, "nints": 2, "nexposures": 1},
        {"name": "MIRIMAGE", "preset": "miri_imager", "size": 24, "ngroups": 12, "nints": 2,
         "nexposures": 1},
    ],
}
#: keep: one NIR and one MIRI intermediate product; dark_output: the dark_current step's product.
CONFIG = {"demo": DEMO, "keep": ["superbias", "reset"], "sample_pixels": [[10, 10], [20, 30]],
          "parameters": {"dark_current": {"dark_output": True}}, "ccd": {"demo": None}}
NIR, MIRI = "demo_nrca1_e001", "demo_mirimage_e001"
FAMILY = {NIR: "NIR", MIRI: "MIRI"}


def ramp(exposure, step):
    return f"results/ramps/{exposure}/{exposure}_{pipeline.SUFFIX[step]}.fits"


def read_later(exposure):
    """Temporary products of an exposure's chain that later rules read (the analyses: branch
    without dark, noise product; the SUPERBIAS: NIR saturation products)."""
    out = [f"results/nodark/{exposure}_jumpstep.fits", f"results/nodark/{exposure}_rateints.fits"]
    if FAMILY[exposure] == "NIR":
        return out + [f"results/noise/{exposure}_refpixstep.fits", ramp(exposure, "saturation")]
    return out + [ramp(exposure, pipeline.product_before("MIRI", {}, "dark_current"))]


def chain_targets():
    return [f"results/rates/{e}_{kind}.fits" for e in FAMILY for kind in ("rate", "rateints")] + [
        path for e in FAMILY for path in read_later(e)]


def run(workdir, mode):
    """Run the workflow in ``workdir`` up to :func:`chain_targets` with the chain in ``mode``
    (``--cores 1 --notemp``)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        DeploymentSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    workdir = Path(workdir)
    shutil.copytree(REPO / "config", workdir / "config")
    configfile = workdir / "config" / "test.yaml"
    configfile.write_text(yaml.safe_dump(dict(CONFIG, pipeline={"mode": mode})))
    with SnakemakeApi(OutputSettings(show_failed_logs=True)) as api:
        wf = api.workflow(snakefile=REPO / "Snakefile", workdir=workdir,
                          resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=[workdir / "config/config.yaml",
                                                                      configfile]),
                          storage_settings=StorageSettings(notemp=True),
                          deployment_settings=DeploymentSettings())
        dag = wf.dag(DAGSettings(targets=set(chain_targets())))
        dag.execute_workflow(executor="local", execution_settings=ExecutionSettings())
    return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(per-step run, fused run) of the same config, temporary files kept."""
    return run(tmp_path_factory.mktemp("steps"), "steps"), run(tmp_path_factory.mktemp("fused"), "fused")


def products(workdir):
    """Every file under results/ (relative paths), the simulated inputs and benchmarks left out."""
    root = Path(workdir) / "results"
    return {str(p.relative_to(workdir)) for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith(("benchmarks/", "demo/"))}


def in_memory_only(exposure):
    """Ramp products the per-step run writes and the fused run keeps in memory."""
    fam = FAMILY[exposure]
    kept = set(CONFIG["keep"]) | {pipeline.last_ramp_step(fam, {})}
    out = {ramp(exposure, step) for step in pipeline.chain(fam, {})
           if step in pipeline.RAMP_STEPS and step not in kept} - set(read_later(exposure))
    return out | {f"results/nodark/{exposure}_{pipeline.SUFFIX[step]}.fits"
                  for step in pipeline.nodark_steps(fam, {})}


def test_fused_mode_writes_only_what_is_kept_or_read_later(runs):
    steps, fused = runs
    assert products(fused) <= products(steps)
    assert products(steps) - products(fused) == in_memory_only(NIR) | in_memory_only(MIRI)
    assert ramp(NIR, "dq_init") in products(steps) - products(fused)
    # kept products, the dark_output product and every step's table/figure in both
    for workdir in runs:
        names = products(workdir)
        assert {ramp(NIR, "superbias"), ramp(MIRI, "reset"), ramp(NIR, "jump"), ramp(MIRI, "jump"),
                f"results/ramps/{NIR}/{NIR}_dark.fits"} <= names
        for exposure, fam in FAMILY.items():
            for step in pipeline.chain(fam, {}):
                if step in pipeline.RAMP_STEPS:
                    assert {f"results/plots/steps/{exposure}/{exposure}_{step}.{ext}"
                            for ext in ("png", "tsv")} <= names


def test_fused_mode_is_one_job_per_exposure(runs):
    steps, fused = runs
    assert sorted(p.stem for p in (fused / "logs/detector1").glob("*.log")) == sorted(FAMILY)
    assert not (fused / "logs/dq_init").exists() and not (steps / "logs/detector1").exists()
    assert sorted(p.stem for p in (steps / "logs/dq_init").glob("*.log")) == sorted(FAMILY)


def _fits_problems(a, b):
    """Differences between two FITS files: extensions, header cards, data bytes."""
    problems = []
    with fits.open(a) as ha, fits.open(b) as hb:
        if [h.name for h in ha] != [h.name for h in hb]:
            return [f"extensions {[h.name for h in ha]} != {[h.name for h in hb]}"]
        for x, y in zip(ha, hb):
            cards_x, cards_y = [c.image for c in x.header.cards], [c.image for c in y.header.cards]
            if cards_x != cards_y:
                problems.append(f"{x.name} header: " + "; ".join(sorted(set(cards_x) ^ set(cards_y)))[:300])
            if x.data is None or y.data is None:
                if (x.data is None) != (y.data is None):
                    problems.append(f"{x.name} data in one file only")
                continue
            data_x, data_y = np.asarray(x.data), np.asarray(y.data)
            if (data_x.dtype, data_x.shape) != (data_y.dtype, data_y.shape) or \
                    data_x.tobytes() != data_y.tobytes():
                problems.append(f"{x.name} data differ")
    return problems


def test_both_modes_write_identical_files(runs):
    steps, fused = runs
    names = sorted(products(fused))
    assert {Path(p).suffix for p in names} == {".fits", ".tsv", ".png"}
    assert len([p for p in names if p.endswith(".fits")]) >= 15
    problems = {}
    for rel in names:
        if rel.endswith(".fits"):
            found = _fits_problems(steps / rel, fused / rel)
        else:
            found = [] if (steps / rel).read_bytes() == (fused / rel).read_bytes() else ["bytes differ"]
        if found:
            problems[rel] = found
    assert not problems
