"""A cluster job's Snakemake takes the submitting Snakemake's parse (workflow/rules/common.smk, PARSE_CACHE).

On SLURM every SLURM job runs ``python -m snakemake --mode remote`` and, per workflow job, one
more under srun; each parses the Snakefile. The submitting Snakemake (any parse not in remote
mode) validates the config, checks the raw files and references and leaves the result in
``.snakemake/detcal/parse/<digest of the config>.pickle``; a remote Snakemake of the same config
takes it from there. These tests run real ``snakemake -n`` processes on two simulated raw files
and show: the submitting parse writes the entry; a remote parse reads no raw file and imports
neither the checking modules (detcal.validate) nor the demo planner, nor pandas, astropy, scipy
or matplotlib, and plans the same job; it plans what the submitting parse saw (a raw file added
since is unknown to it until the next submitting parse, which sees it); without an entry (or with
an entry of another format) a remote parse checks everything itself and writes nothing.
"""

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detcal import simulate

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4, "nints": 1, "nexposures": 2}
#: modules only a full parse imports (config and raw/reference checks, the demo's planner and
#: simulator); not jsonschema, which Snakemake itself imports (nbformat) after the parse
CHECKING_MODULES = ("detcal.validate", "detcal.demo", "detcal.simulate")
#: libraries a remote parse does not import (each ~0.1-0.4 s of every cluster job's start-up): the
#: inventory rows come as plain records (no pandas), the step registry reads the descriptors
#: without the steps' file I/O (no astropy); numpy is Snakemake's own import (yte)
HEAVY_MODULES = ("pandas", "astropy", "astropy.io.fits", "astropy.units", "scipy", "matplotlib", "detcal.io")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote_parse")
    files = simulate.write_detector_set(SPEC, str(root / "data"), 5)
    work = root / "work"
    shutil.copytree(REPO / "config", work / "config")
    config = {"raw": str(root / "data" / "uncal" / "*_uncal.fits"), "keep": [],
              "references": {"NRCA1": dict(files["references"])}, "analysis": {"enabled": False}}
    (work / "config" / "campaign.yaml").write_text(yaml.safe_dump(config))
    return root, work


def _snakemake(work, *configfiles, remote_target=None):
    """``snakemake -n`` in ``work`` with the campaign's config and further ``configfiles`` (remote
    mode for one chain job when ``remote_target`` names its exposure); (returncode, output,
    imported module names) of the process."""
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--configfiles", "config/config.yaml", "config/campaign.yaml",
           *configfiles, "--cores", "1", "-n"]
    if remote_target:
        cmd += ["--mode", "remote", "--target-jobs", f"detector1_NIR:exposure={remote_target}",
                "--allowed-rules", "detector1_NIR", "--force", "--nolock"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    out = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith("import time:"))
    return proc.returncode, out, imported


def _entries(work):
    return sorted((work / ".snakemake" / "detcal" / "parse").glob("*.pickle"))


def test_remote_parse_takes_what_the_submitting_parse_found(campaign):
    root, work = campaign
    shutil.rmtree(work / ".snakemake", ignore_errors=True)

    # without an entry a remote parse checks everything itself, and leaves no entry
    rc, out, imported = _snakemake(work, remote_target="demo_nrca1_e001")
    assert rc == 0, out[-3000:]
    assert "detcal.validate" in imported
    assert _entries(work) == []

    # the submitting parse (here a dry run) checks and writes the entry
    rc, out, imported = _snakemake(work)
    assert rc == 0, out[-3000:]
    assert "detcal.validate" in imported and "detector1_NIR" in out
    assert len(_entries(work)) == 1

    # a remote parse of the same config plans the job from the entry: nothing checked or read again
    rc, out, imported = _snakemake(work, remote_target="demo_nrca1_e002")
    assert rc == 0, out[-3000:]
    assert "rule detector1_NIR:" in out and "exposure=demo_nrca1_e002" in out
    assert not imported & set(CHECKING_MODULES), imported & set(CHECKING_MODULES)

    # a raw file added after the submitting parse: the remote parse knows only what that parse saw
    uncal = root / "data" / "uncal"
    shutil.copy(uncal / "demo_nrca1_e002_uncal.fits", uncal / "demo_nrca1_e003_uncal.fits")
    try:
        rc, out, _ = _snakemake(work, remote_target="demo_nrca1_e003")
        assert rc != 0, "a remote parse found an exposure the submitting parse had not seen"
        # the next submitting parse reads the new file (the raw-check cache sees a new path) ...
        rc, out, _ = _snakemake(work)
        assert rc == 0 and "exposure=demo_nrca1_e003" in out, out[-3000:]
        assert len(_entries(work)) == 1  # the same config: its entry replaced
        # ... and remote parses then plan its job
        rc, out, imported = _snakemake(work, remote_target="demo_nrca1_e003")
        assert rc == 0 and "exposure=demo_nrca1_e003" in out, out[-3000:]
        assert not imported & set(CHECKING_MODULES)
    finally:
        (uncal / "demo_nrca1_e003_uncal.fits").unlink()


def test_other_config_is_parsed_in_full(campaign):
    """An entry is taken only for the config it was made from (its digest names the file)."""
    _, work = campaign
    rc, out, _ = _snakemake(work)
    assert rc == 0, out[-3000:]
    before = _entries(work)
    # one more config file changes the config: no entry for it, so the remote parse checks it all
    (work / "config" / "pixels.yaml").write_text(yaml.safe_dump({"sample_pixels": [[5, 5]]}))
    rc, out, imported = _snakemake(work, "config/pixels.yaml", remote_target="demo_nrca1_e001")
    assert rc == 0, out[-3000:]
    assert "detcal.validate" in imported
    assert _entries(work) == before


def test_remote_parse_imports_no_heavy_library(campaign):
    """What a cluster job's Snakemake imports for the parse: none of pandas, astropy, scipy,
    matplotlib (the submitting parse, which reads the raw headers, imports pandas and astropy);
    an entry of another format (an older workflow's) is not taken."""
    _, work = campaign
    rc, out, imported = _snakemake(work)
    assert rc == 0, out[-3000:]
    assert {"pandas", "astropy.io.fits"} <= imported
    rc, out, imported = _snakemake(work, remote_target="demo_nrca1_e001")
    assert rc == 0 and "exposure=demo_nrca1_e001" in out, out[-3000:]
    assert not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))

    (entry,) = _entries(work)
    found = pickle.loads(entry.read_bytes())
    entry.write_bytes(pickle.dumps({**found, "format": found["format"] - 1}))
    rc, out, imported = _snakemake(work, remote_target="demo_nrca1_e001")
    assert rc == 0, out[-3000:]
    assert "detcal.validate" in imported  # parsed in full
