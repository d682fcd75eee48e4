"""Recovery after ``kill -9`` with the commands the README gives, and determinism across core counts.

One tiny chain (the demo's NRCA1, 32 x 32, 4 groups, one exposure, dq_init -> saturation ->
superbias -> refpix -> jump -> ramp_fit) is made twice:

* run A: ``snakemake --cores 1``, uninterrupted;
* run B: ``snakemake --cores 2``, killed (SIGKILL to Snakemake and its jobs) while the refpix job
  runs; a plain rerun is refused (incomplete files), then ``snakemake --unlock`` and
  ``snakemake --cores 2 --rerun-incomplete`` (README, "After an interruption") finish it.

Every product of A and B (FITS data arrays and tables, TSV tables; not the benchmarks, which hold
run times, nor the PNG renderings, nor the hidden ``.tmp-*`` file a write killed half-way leaves
next to the products) must be identical: the resumed run equals an uninterrupted one,
and ``--cores 1`` equals ``--cores 2`` (rule threads differ between them).
"""

import os
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
EXPOSURE = "demo_nrca1_e001"
CONFIG = {
    "raw": "demo",
    "demo": {"seed": 3, "detectors": [{"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4,
                                       "nints": 1, "nexposures": 1}]},
    "steps": {"linearity": False, "dark_current": False},
    "analysis": {"enabled": False},
    "ccd": {"demo": None},
    "sample_pixels": [[10, 10], [20, 5]],
}
TARGET = f"results/rates/{EXPOSURE}_rate.fits"


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


def _products(work):
    """{relative path: comparable content} of every FITS and TSV product (no benchmarks)."""
    out = {}
    for path in sorted((work / "results").rglob("*")):
        rel = str(path.relative_to(work))
        if not path.is_file() or rel.startswith("results/benchmarks"):
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


def test_kill_resume_and_core_count_give_identical_products(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for work in (clean, killed):
        _setup(work)

    done = _run(clean, "--cores", "1", TARGET)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(_cmd(killed, "--cores", "2", TARGET), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    started = killed / "logs" / "refpix" / f"{EXPOSURE}.log"
    deadline = time.time() + 240
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the refpix job started"
    os.killpg(proc.pid, signal.SIGKILL)             # Snakemake and the job it started
    proc.wait()
    assert not (killed / TARGET).exists()

    plain = _run(killed, "--cores", "2", TARGET)
    assert plain.returncode != 0                    # stale lock / incomplete files
    assert _run(killed, "--unlock").returncode == 0
    resumed = _run(killed, "--cores", "2", "--rerun-incomplete", TARGET)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = _products(clean), _products(killed)
    b.pop("interrupted writes", None)   # hidden .tmp-* files a killed write leaves; never products
    assert TARGET in a and f"results/ramps/{EXPOSURE}/{EXPOSURE}_jumpstep.fits" in a
    assert sorted(a) == sorted(b)
    different = [name for name in a if not _equal(a[name], b[name])]
    assert different == []
