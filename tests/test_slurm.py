"""The cluster profile on a real SLURM: profiles/slurm runs the demo workflow as SLURM jobs.

A module fixture installs (if needed) and starts a single-node SLURM on this machine
(tests/cluster/slurm-up.sh: Debian's slurmctld + slurmd + munge, partition ``debug``, no
accounting) and stops every daemon again afterwards, also when a test fails
(tests/cluster/slurm-down.sh). Needs root and apt-get, as `make test` on CI has; a machine that
cannot run SLURM fails these tests with the reason, it does not skip them.

The tiny demo is run twice with the same command line, once locally (``--cores 2``) and once
with ``--profile profiles/slurm`` (the profile file unchanged); the SLURM run must leave a
COMPLETED SLURM job for every job of the workflow and the same results as the local run.
The SLURM executor plugin (extra ``cluster``, not part of the test extras) is installed for the
SLURM run only when this environment lacks it (fixture ``cluster_env``).
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from test_workflow import TINY_DEMO

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CLUSTER = REPO / "tests" / "cluster"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")
#: Every ramp product is kept, so that every step's output is compared.
CONFIG = {"demo": TINY_DEMO, "sample_pixels": [[10, 10], [30, 40]],
          "keep": ["dq_init", "saturation", "superbias", "refpix", "linearity", "dark_current", "jump"]}
#: Held while the test cluster is up; another session waits up to LOCK_WAIT seconds for it.
LOCK = Path(tempfile.gettempdir()) / "detcal-slurm-test.lock"
LOCK_WAIT = 1200
#: Wall-time limit of one workflow run through SLURM (measured: ~3 min for 18 jobs).
SLURM_RUN_TIMEOUT = 600


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def _text(*streams):
    """Output captured by subprocess (str, or bytes after a timeout), joined as text."""
    return "".join(s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in streams)


def _script(name, timeout):
    """Run tests/cluster/<name>; (returncode, combined output, seconds)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(CLUSTER / name)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = _text(err.stdout, err.stderr)
        return 124, f"{name} did not finish within {timeout} s\n{out}", time.monotonic() - start
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM; all its daemons are stopped at the end of the module.

    One machine has one such cluster: a lock file keeps two test sessions on a shared machine
    from starting and stopping it under each other's feet (the second one waits).
    """
    lock = open(LOCK, "w")
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                pytest.fail(f"another test session has held the SLURM test cluster ({LOCK}) for {LOCK_WAIT} s")
            time.sleep(2)
    try:
        if os.geteuid() != 0:
            pytest.fail("the SLURM test cluster needs root (apt-get install, daemons); run as root, as CI does")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            pytest.fail("no SLURM installed and no apt-get to install it (Debian packages slurmctld, slurmd, "
                        "slurm-client, munge)")
        rc, out, seconds = _script("slurm-up.sh", timeout=900)
        print(f"slurm-up.sh: {seconds:.1f} s (rc {rc})")
        if rc != 0:
            pytest.fail(f"could not start the SLURM test cluster (tests/cluster/slurm-up.sh, rc {rc}):\n"
                        f"{_tail(out)}")
        yield
    finally:
        rc, out, seconds = _script("slurm-down.sh", timeout=120)
        print(f"slurm-down.sh: {seconds:.1f} s (rc {rc})")
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        assert rc == 0, f"SLURM daemons left running after tests/cluster/slurm-down.sh:\n{_tail(out)}"


def _workdir(path):
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", path / "config", dirs_exist_ok=True)
    (path / "config" / "test.yaml").write_text(yaml.safe_dump(CONFIG))
    return path


def _snakemake(workdir, *options, timeout, env=None):
    """``python -m snakemake`` in ``workdir`` on the tiny demo (environment ``env``, default
    this one); returns its combined output."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfiles", "config/config.yaml", "config/test.yaml", *options]
    start = time.monotonic()
    try:
        # On timeout subprocess.run kills snakemake with SIGKILL (it ignores SIGTERM while jobs
        # are active); jobs still in SLURM are cancelled by slurm-down.sh.
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as err:
        out = _text(err.stdout, err.stderr)
        pytest.fail(f"snakemake {' '.join(options)} did not finish within {timeout} s:\n{_tail(out)}")
    out = proc.stdout + proc.stderr
    print(f"snakemake {' '.join(options)}: {time.monotonic() - start:.1f} s (rc {proc.returncode})")
    assert proc.returncode == 0, f"snakemake {' '.join(options)} failed:\n{_tail(out, 60)}"
    return out


def _job_stats(out):
    """Rule -> number of jobs, from the 'Job stats' table snakemake prints (without `all`)."""
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter()
    for line in table.splitlines():
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if match and match[1] not in ("all", "total", "job"):
            counts[match[1]] = int(match[2])
    return counts


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """Environment in which snakemake has the SLURM executor plugin (pyproject extra ``cluster``).

    The test extras leave the plugin out (installed, it probes the cluster at every snakemake
    start); if this environment lacks it, it is installed into a directory of its own that only
    the SLURM run sees (PYTHONPATH, which sbatch passes on to the jobs).
    """
    import importlib.util

    env = dict(os.environ)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None:
        return env
    target = tmp_path_factory.mktemp("slurm-plugin")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), "snakemake-executor-plugin-slurm==2.8.*",
                           "snakemake-executor-plugin-slurm-jobstep>=0.6,<1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"installing the SLURM executor plugin failed:\n{_tail(proc.stdout + proc.stderr)}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def runs(slurm_cluster, cluster_env, tmp_path_factory):
    """The tiny demo run locally and through SLURM: (local workdir, output; slurm workdir, output)."""
    local = _workdir(tmp_path_factory.mktemp("local"))
    local_out = _snakemake(local, "--cores", "2", timeout=600)
    slurm = _workdir(tmp_path_factory.mktemp("slurm"))
    slurm_out = _snakemake(slurm, "--profile", str(REPO / "profiles" / "slurm"), timeout=SLURM_RUN_TIMEOUT,
                           env=cluster_env)
    return local, local_out, slurm, slurm_out


def test_slurm_profile_is_used_with_the_workflow_profile(runs):
    slurm_out = runs[3]
    assert f"Using profiles {REPO / 'profiles' / 'slurm'} and workflow specific profile " \
           f"{REPO / 'profiles' / 'default'}" in slurm_out
    assert "SLURM run ID:" in slurm_out


def test_every_job_ran_as_a_completed_slurm_job(runs):
    """Each workflow job (but the target rule `all` and any `localrules`) has its own SLURM job:
    submitted by this run (job name = the run ID), in this workdir, tagged with its rule,
    COMPLETED per slurmctld and recorded in the jobcomp log."""
    local, local_out, slurm, slurm_out = runs
    jobs_per_rule = _job_stats(local_out)
    assert sum(jobs_per_rule.values()) >= 18 and _job_stats(slurm_out) == jobs_per_rule
    local_rules = set(re.findall(r"^localrule (\w+):", slurm_out, re.M)) - {"all"}
    expected = Counter({rule: n for rule, n in jobs_per_rule.items() if rule not in local_rules})
    # the detector1 chain: one job per exposure (fused mode, the default) or per step
    chain = {r for r in expected if r.startswith("detector1_")} or {"dq_init", "jump", "ramp_fit"} & set(expected)
    assert "simulate_demo" in expected and chain, f"local rules: {local_rules}, jobs: {dict(expected)}"

    run_id = re.search(r"SLURM run ID: (\S+)", slurm_out)[1]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", slurm_out)
    assert len(submitted) == len(set(submitted)) == sum(expected.values())

    # slurmctld keeps finished jobs for MinJobAge = 600 s: id|name|state|comment|workdir
    table = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%k|%Z"], capture_output=True,
                           text=True, check=True).stdout
    jobs = {row.split("|")[0]: row.split("|") for row in table.splitlines()}
    rules = Counter()
    for job_id in submitted:
        assert job_id in jobs, f"SLURM job {job_id} unknown to slurmctld"
        _, name, state, comment, workdir = jobs[job_id]
        assert (name, state, workdir) == (run_id, "COMPLETED", str(slurm)), jobs[job_id]
        rules[re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment)[1]] += 1
    assert rules == expected

    records = JOBCOMP.read_text()
    for job_id in submitted:
        line = re.search(rf"^JobId={job_id} .*$", records, re.M)
        assert line, f"SLURM job {job_id} missing from {JOBCOMP}"
        assert "JobState=COMPLETED" in line[0] and f"WorkDir={slurm} " in line[0] \
               and "Partition=debug" in line[0]


def _files(root):
    return {p.relative_to(root).as_posix() for p in (root / "results").rglob("*") if p.is_file()}


def test_slurm_results_equal_local_results(runs):
    """Same files; same data in every FITS HDU (headers carry dates), same tables and figures."""
    import matplotlib.image

    local, _, slurm, _ = runs
    files = _files(local)
    assert files == _files(slurm)
    assert "results/inventory.tsv" in files and any(f.endswith("_rate.fits") for f in files)
    compared = Counter()
    for name in sorted(files):
        a, b = local / name, slurm / name
        if name.startswith("results/benchmarks/"):
            continue  # run times
        if name.endswith(".fits"):
            with fits.open(a) as ha, fits.open(b) as hb:
                assert [h.name for h in ha] == [h.name for h in hb], name
                for x, y in zip(ha, hb):
                    if x.data is None:
                        assert y.data is None, f"{name}[{x.name}]"
                    elif isinstance(x.data, np.ndarray) and x.data.dtype.names is None:
                        np.testing.assert_array_equal(x.data, y.data, err_msg=f"{name}[{x.name}]")
                    else:
                        assert x.data.tobytes() == y.data.tobytes(), f"{name}[{x.name}]"
        elif name.endswith(".png"):
            np.testing.assert_array_equal(matplotlib.image.imread(a), matplotlib.image.imread(b),
                                          err_msg=name)
        else:
            assert a.read_bytes() == b.read_bytes(), name
        compared[Path(name).suffix] += 1
    print(f"compared: {dict(compared)}")
    assert compared[".fits"] >= 20 and compared[".tsv"] >= 1 and compared[".png"] >= 14
