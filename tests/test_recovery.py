"""Recovery after ``kill -9`` with the commands the README gives, determinism across core counts,
and a group failing at run time that leaves the other group's products alone.

Two tiny chains (the demo's NRCA1 and NRCA2, two configuration groups, 32 x 32, 4 groups, one
exposure each, dq_init -> saturation -> superbias -> refpix -> jump -> ramp_fit, one detector1
job per exposure in the default fused mode) are made:

* run A: ``snakemake --cores 1``, uninterrupted (module fixture, shared by the tests);
* run B: ``snakemake --cores 2``, killed (SIGKILL to Snakemake and its jobs) while a detector1
  job runs; a plain rerun is refused (incomplete files), then ``snakemake --unlock`` and
  ``snakemake --cores 2 --rerun-incomplete`` (README, "After an interruption") finish it;
* copies of run A in which the demo's NRCA2 SUPERBIAS (an intermediate the demo rule wrote;
  the validation checks the raw files and the references the config gives, so this passes it)
  is damaged: NRCA2's detector1 job reruns and fails at run time; rerun without and with
  ``--keep-going``.

Every product of A and B (FITS data arrays and tables, TSV tables; not the benchmarks, which hold
run times, nor the PNG renderings, nor the hidden ``.tmp-*`` file a write killed half-way leaves
next to the products) must be identical: the resumed run equals an uninterrupted one,
and ``--cores 1`` equals ``--cores 2`` (rule threads differ between them).
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
EXPOSURE, OTHER = "demo_nrca1_e001", "demo_nrca2_e001"
CONFIG = {
    "raw": "demo",
    "demo": {"seed": 3, "detectors": [{"name": name, "preset": "nircam_sw", "size": 32, "ngroups": 4,
                                       "nints": 1, "nexposures": 1} for name in ("NRCA1", "NRCA2")]},
    "steps": {"linearity": False, "dark_current": False},
    "analysis": {"enabled": False},
    "ccd": {"demo": None},
    "sample_pixels": [[10, 10], [20, 5]],
}
TARGET = f"results/rates/{EXPOSURE}_rate.fits"
TARGETS = (TARGET, f"results/rates/{OTHER}_rate.fits")


def _setup(work):
    work.mkdir()
    (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    (work / "my.yaml").write_text(yaml.safe_dump(CONFIG))


def _cmd(work, *extra):
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
            str(work / "my.yaml"), *extra]


def _run(work, *extra):
    return subprocess.run(_cmd(work, *extra), capture_output=True, text=True, timeout=300)


def _products(work, exclude=None):
    """{relative path: comparable content} of every FITS and TSV product (no benchmarks; none whose
    path contains ``exclude``, any case)."""
    out = {}
    for path in sorted((work / "results").rglob("*")):
        rel = str(path.relative_to(work))
        if not path.is_file() or rel.startswith("results/benchmarks"):
            continue
        if exclude and exclude.lower() in rel.lower():
            continue
        if path.name.startswith(".tmp-"):       # a write the kill interrupted (README)
            out.setdefault("interrupted writes", []).append(rel)
            continue
        if path.suffix == ".fits":
            with fits.open(path) as hdul:
                out[rel] = [(h.name, None if h.data is None else np.array(h.data)) for h in hdul]
        elif path.suffix == ".tsv":
            out[rel] = path.read_text()
    return out


def _equal(a, b):
    if isinstance(a, str):
        return a == b
    if [n for n, _ in a] != [n for n, _ in b]:
        return False
    for (_, x), (_, y) in zip(a, b):
        if (x is None) != (y is None):
            return False
        if x is not None and not (x.dtype == y.dtype and x.shape == y.shape
                                  and (x.tobytes() == y.tobytes())):
            return False
    return True


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Run A: both chains, ``--cores 1``, uninterrupted."""
    work = tmp_path_factory.mktemp("recovery") / "clean"
    _setup(work)
    done = _run(work, "--cores", "1", *TARGETS)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def test_kill_resume_and_core_count_give_identical_products(clean, tmp_path):
    killed = tmp_path / "killed"
    _setup(killed)

    proc = subprocess.Popen(_cmd(killed, "--cores", "2", *TARGETS), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    started = killed / "logs" / "detector1"          # a chain job has started (fused mode)
    deadline = time.time() + 240
    while (not (started.exists() and any(started.iterdir())) and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a detector1 job started"
    os.killpg(proc.pid, signal.SIGKILL)             # Snakemake and the jobs it started
    proc.wait()
    assert not any((killed / t).exists() for t in TARGETS)

    plain = _run(killed, "--cores", "2", *TARGETS)
    assert plain.returncode != 0                    # stale lock / incomplete files
    assert _run(killed, "--unlock").returncode == 0
    resumed = _run(killed, "--cores", "2", "--rerun-incomplete", *TARGETS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = _products(clean), _products(killed)
    b.pop("interrupted writes", None)   # hidden .tmp-* files a killed write leaves; never products
    assert TARGET in a and f"results/ramps/{EXPOSURE}/{EXPOSURE}_jumpstep.fits" in a
    assert sorted(a) == sorted(b)
    different = [name for name in a if not _equal(a[name], b[name])]
    assert different == []


def _files(work, exclude):
    """{relative path: sha256} of every file under results/ whose path does not contain ``exclude``
    (any case)."""
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((work / "results").rglob("*"))
            if p.is_file() and exclude.lower() not in str(p).lower()}


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "keep-going"])
def test_group_failing_at_run_time_leaves_the_other_group_alone(clean, tmp_path, keep_going):
    """The demo's NRCA2 SUPERBIAS damaged (truncated, as a disk error would): NRCA2's detector1 job
    fails at run time with one line naming that file and the exit code is non-zero. Without
    ``--keep-going`` every file of the NRCA1 group is byte-identical; with it, NRCA1's rate
    product (deleted first) is remade meanwhile by its own job, and every NRCA1 product (FITS
    data arrays, tables) equals run A's."""
    work = tmp_path / "work"
    shutil.copytree(clean, work, symlinks=True)
    bad = work / "results" / "demo" / "references" / "NRCA2" / "superbias.fits"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])      # newer than NRCA2's products: its job reruns
    before = _files(work, "nrca2")
    extra = []
    if keep_going:
        (work / TARGET).unlink()                    # NRCA1 has work to do in the same run
        extra = ["--keep-going"]
    proc = _run(work, "--cores", "2", *extra, *TARGETS)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" not in text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {bad.relative_to(work)}: not a readable FITS file "
                                "(AstropyUserWarning: File may have been truncated"), errors
    if not keep_going:
        assert _files(work, "nrca2") == before
        return
    got, want = _products(work, exclude="NRCA2"), _products(clean, exclude="NRCA2")
    assert TARGET in got and sorted(got) == sorted(want)
    assert [name for name in want if not _equal(want[name], got[name])] == []
