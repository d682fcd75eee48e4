"""The cluster profile on a real SLURM: profiles/slurm runs the demo workflow as SLURM jobs.

A module fixture installs (if needed) and starts a single-node SLURM on this machine
(tests/cluster/slurm-up.sh: Debian's slurmctld + slurmd + munge, partition ``debug``, no
accounting) and stops every daemon again afterwards, also when a test fails
(tests/cluster/slurm-down.sh). Needs root and apt-get, as `make test` on CI has; a machine that
cannot run SLURM fails these tests with the reason, it does not skip them.

The tiny demo is run twice with the same command line, once locally (``--cores 2``) and once
with ``--profile profiles/slurm`` (the profile file unchanged, job groups included); the SLURM
run must finish every job of the workflow, in fewer SLURM jobs than workflow jobs (one per job
group of the profile, one per ungrouped job), all COMPLETED, with the same results as the local
run. benchmarks/bench_slurm.py uses ``running_cluster`` and ``plugin_env`` from here.
The SLURM executor plugin (extra ``cluster``, not part of the test extras) is installed for the
SLURM run only when this environment lacks it (fixture ``cluster_env``).
"""

import contextlib
import fcntl
import math
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
import pandas as pd
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
#: Wall-time limit of one workflow run through SLURM (measured, depending on the load: 1.3-4 min for
#: the 20 workflow jobs in 6 SLURM jobs with the profile's job groups, 2.5-6 min in 20 without).
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


class ClusterError(RuntimeError):
    """The test cluster could not be started (or stopped); the message says why."""


@contextlib.contextmanager
def running_cluster(log=print):
    """Hold LOCK, start the single-node SLURM (tests/cluster/slurm-up.sh), yield; always stop every
    daemon again (slurm-down.sh) and release the lock, also when the body fails.

    One machine has one such cluster: the lock keeps two sessions (tests, benchmarks/bench_slurm.py)
    on a shared machine from starting and stopping it under each other's feet (the second waits
    up to LOCK_WAIT seconds). Raises ClusterError when the cluster cannot be brought up or a
    daemon survives slurm-down.sh.
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
                raise ClusterError(f"another session has held the SLURM test cluster ({LOCK}) for {LOCK_WAIT} s")
            time.sleep(2)
    try:
        if os.geteuid() != 0:
            raise ClusterError("the SLURM test cluster needs root (apt-get install, daemons); run as root, as CI does")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            raise ClusterError("no SLURM installed and no apt-get to install it (Debian packages slurmctld, slurmd, "
                               "slurm-client, munge)")
        rc, out, seconds = _script("slurm-up.sh", timeout=900)
        log(f"slurm-up.sh: {seconds:.1f} s (rc {rc})")
        if rc != 0:
            raise ClusterError(f"could not start the SLURM test cluster (tests/cluster/slurm-up.sh, rc {rc}):\n"
                               f"{_tail(out)}")
        yield
    finally:
        rc, out, seconds = _script("slurm-down.sh", timeout=120)
        log(f"slurm-down.sh: {seconds:.1f} s (rc {rc})")
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        if rc != 0:
            raise ClusterError(f"SLURM daemons left running after tests/cluster/slurm-down.sh:\n{_tail(out)}")


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM (running_cluster); all its daemons are stopped at the end of
    the module. A machine that cannot run it fails the tests with the reason."""
    try:
        with running_cluster():
            yield
    except ClusterError as err:
        pytest.fail(str(err))


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


def plugin_env(target):
    """Environment in which snakemake has the SLURM executor plugin (pyproject extra ``cluster``).

    The test extras leave the plugin out (installed, it probes the cluster at every snakemake
    start); if this environment lacks it, it is installed into ``target`` (a directory of its own)
    that only runs with this environment see (PYTHONPATH, which sbatch passes on to the jobs).
    """
    import importlib.util

    env = dict(os.environ)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None:
        return env
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), "snakemake-executor-plugin-slurm==2.8.*",
                           "snakemake-executor-plugin-slurm-jobstep>=0.6,<1"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"installing the SLURM executor plugin failed:\n{_tail(proc.stdout + proc.stderr)}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """plugin_env in a temporary directory of this test session."""
    return plugin_env(tmp_path_factory.mktemp("slurm-plugin"))


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


def slurm_jobs(out):
    """SLURM job ids that the snakemake run with output ``out`` submitted, in order."""
    return re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", out)


def finished_jobs(out):
    """Rule -> number of workflow jobs that the run with output ``out`` finished (grouped jobs
    one by one, `all` and local rules included)."""
    return Counter(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", out, re.M))


def local_rules(out):
    """Rules that the run with output ``out`` ran on the submitting host (`localrules`)."""
    return set(re.findall(r"^localrule (\w+):", out, re.M))


def test_every_job_ran_in_a_completed_grouped_slurm_job(runs):
    """Every workflow job (but `all` and the `localrules`) ran through SLURM, the jobs that
    profiles/slurm groups (`groups`, `group-components`) in ceil(jobs / group-components) SLURM
    jobs per group: the chains of the demo's exposures (up to `chains` of them per SLURM job), the
    five analyses and the four reference-file builders of the demo's one configuration group, and
    the CCD branch (connected jobs: one SLURM job); simulate_demo one SLURM job of its own.
    Each SLURM job was submitted by this run (job name = the run ID), in this workdir, tagged with
    its rule or group, COMPLETED per slurmctld and recorded in the jobcomp log."""
    local, local_out, slurm, slurm_out = runs
    jobs_per_rule = _job_stats(local_out)
    assert sum(jobs_per_rule.values()) >= 18 and _job_stats(slurm_out) == jobs_per_rule
    # every Snakemake job done, grouped or not
    assert finished_jobs(slurm_out) == jobs_per_rule + Counter(all=1)
    local = local_rules(slurm_out) - {"all"}
    expected = Counter({rule: n for rule, n in jobs_per_rule.items() if rule not in local})
    # the detector1 chain: one job per exposure (fused mode, the default) or per step
    chain = {r for r in expected if r.startswith("detector1_")} or {"dq_init", "jump", "ramp_fit"} & set(expected)
    assert "simulate_demo" in expected and chain, f"local rules: {local}, jobs: {dict(expected)}"

    # the groups this run must have formed: the tiny demo has one configuration group
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.yaml").read_text())
    groups, components = profile["groups"], profile["group-components"]
    config_groups = set(pd.read_csv(slurm / "results" / "inventory.tsv", sep="\t")["group"])
    assert len(config_groups) == 1
    # grouped rules without a job here: only the chain rule of the family the demo has not (MIRI)
    assert set(groups) - set(expected) == {"detector1_MIRI"}, set(groups) - set(expected)
    group_ids, group_jobs = {}, Counter()
    for name in set(groups.values()):
        group_id = name.format(group=next(iter(config_groups)))
        group_ids[group_id] = sorted(r for r, g in groups.items() if g == name and r in expected)
        # the analyses, the builders and the chains are not connected to each other: split into
        # group jobs of up to group-components[name] each; the CCD branch is one connected component
        njobs = sum(expected[r] for r in group_ids[group_id])
        group_jobs[group_id] = math.ceil(njobs / components[name]) if name in components else 1
    assert expected["detector1_NIR"] == 2 and group_jobs["chains"] == 1  # the demo's 2 exposures, one SLURM job
    ungrouped = Counter({rule: n for rule, n in expected.items() if rule not in groups})
    submitted = slurm_jobs(slurm_out)
    assert len(submitted) == len(set(submitted)) == sum(ungrouped.values()) + sum(group_jobs.values())
    assert len(submitted) <= sum(expected.values()) - 10, "job groups should save at least 10 SLURM jobs here"
    print(f"SLURM jobs: {len(submitted)} for {sum(expected.values())} workflow jobs outside localrules")

    run_id = re.search(r"SLURM run ID: (\S+)", slurm_out)[1]
    # slurmctld keeps finished jobs for MinJobAge = 600 s: id|name|state|comment|workdir|CPUs|memory
    table = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%k|%Z|%C|%m"], capture_output=True,
                           text=True, check=True).stdout
    jobs = {row.split("|")[0]: row.split("|") for row in table.splitlines()}
    rules, formed = Counter(), Counter()
    for job_id in submitted:
        assert job_id in jobs, f"SLURM job {job_id} unknown to slurmctld"
        _, name, state, comment, workdir, cpus, memory = jobs[job_id]
        assert (name, state, workdir) == (run_id, "COMPLETED", str(slurm)), jobs[job_id]
        # `cores: 1`: a group runs its jobs one at a time and asks for one CPU and its largest job's
        # memory (profiles/default: at most 4500 MB), not the sum over its jobs
        assert cpus == "1" and memory.endswith("M") and int(memory[:-1]) <= 4500, jobs[job_id]
        # a group job's comment: rule_<group id>_<its rules, sorted, the first five>
        group = [g for g in group_ids if comment.startswith(f"rule_{g}_")]
        if group:
            members = group_ids[group[0]]
            assert comment == f"rule_{group[0]}_" + "_".join(members[:5] + ["..."] * (len(members) > 5)), comment
            formed[group[0]] += 1
        else:
            rules[re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment)[1]] += 1
    assert rules == ungrouped
    assert formed == group_jobs, "SLURM jobs per group"

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
