"""Per-job overhead of the workflow on a real SLURM: per-step jobs, the fused chain, job groups (issue 15).

Runs the tiny demo of tests/test_slurm.py (one NIRCam detector, 64 x 64, 2 exposures of 1 x 5
groups, every ramp product kept, the CCD demo on) through ``--profile profiles/slurm`` on the
single-node SLURM of tests/cluster/slurm-up.sh, in up to three configurations:

* ``steps``: ``pipeline: {mode: steps}``, the profile without its job groups (one SLURM job per
  workflow job: the state before issue 15);
* ``fused``: the fused chain (one job per exposure), the profile without its job groups;
* ``fused-groups``: the fused chain and the profile as shipped (``groups``, ``group-components``,
  ``cores``): the state after.

The cluster is started, locked and stopped as tests/test_slurm.py does it (``running_cluster``:
the same lock file, the daemons stopped at the end also on failure), and the SLURM executor
plugin is installed for these runs only when the environment lacks it (``plugin_env``).

Per configuration, one row (printed as soon as the run ends):

* ``wf jobs``: workflow (Snakemake) jobs that ran as or inside SLURM jobs (all but ``all`` and
  the Snakefile's ``localrules``); ``SLURM jobs``: the SLURM jobs the run submitted;
* ``run wall``: the whole ``snakemake`` command, from start to exit [s];
* ``SLURM wall``: sum over the SLURM jobs of EndTime - StartTime from the jobcomp log
  (/var/log/slurm/jobcomp.log; whole seconds, SLURM's resolution) [s];
* ``work``: sum of the time inside each workflow job's own work, the ``done in`` that
  ``detcal.runner.logged`` writes to the job's log (the detcal function, after the script's
  imports) [s];
* ``overhead/SLURM job``: (SLURM wall - work) / SLURM jobs [s]: what one SLURM job costs besides
  its work (slurmd's job start, the job's ``python -m snakemake`` and the jobstep's ``srun`` with
  a second one per workflow job, the rule script's interpreter start and imports, output checks);
  ``overhead/wf job``: the same over the workflow jobs; ``overhead %``: of SLURM wall;
* ``queued``: sum over the SLURM jobs of StartTime - SubmitTime [s] (waiting for a free CPU);
* ``load``: the 1-min load average before and after the run (the machine is shared).

``--campaign SIZExNEXP`` replaces the tiny demo by a realistic campaign: ``NEXP`` NIRCam-like raw
darks of ``SIZE`` x ``SIZE`` pixels (``--nints`` x ``--ngroups``, 4 outputs, RAPID, TFRAME 10.7 s)
with their reference files, simulated once (not timed, before the cluster is taken) by
bench_campaign.py's ``simulate_campaign`` and given to every configuration as real data
(``raw:`` glob, ``references:``, ``keep: []``), as benchmarks/bench_campaign.py runs it locally.
The cluster is started and stopped (and its lock taken and released) around each configuration's
run, so that tests/test_slurm.py on the same machine waits for one run, not for all of them.

    .venv/bin/python benchmarks/bench_slurm.py                       # all three, in that order
    .venv/bin/python benchmarks/bench_slurm.py --configs fused,fused-groups --repeat 2
    .venv/bin/python benchmarks/bench_slurm.py --campaign 1024x4 --nints 2 --ngroups 10 --configs fused-groups,steps

Needs root (as tests/test_slurm.py). Every product is left in ``--workdir`` (default: a new
temporary directory, deleted at the end unless ``--keep``).
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from bench_campaign import simulate_campaign  # noqa: E402  (benchmarks/ is the script's directory)

from test_slurm import CONFIG, JOBCOMP, plugin_env, running_cluster  # noqa: E402

SNAKEFILE = REPO / "Snakefile"
PROFILE = REPO / "profiles" / "slurm" / "profile.yaml"
#: The profile's job-group settings (dropped for the configurations without groups).
GROUP_KEYS = ("groups", "group-components", "cores")
#: name -> (pipeline mode, job groups of the shipped profile on)
CONFIGS = {"steps": ("steps", False), "fused": ("fused", False), "fused-groups": ("fused", True)}
COLUMNS = ("config", "wf jobs", "SLURM jobs", "run wall [s]", "SLURM wall [s]", "work [s]",
           "overhead/SLURM job [s]", "overhead/wf job [s]", "overhead %", "queued [s]", "load")


def load():
    return float(Path("/proc/loadavg").read_text().split()[0])


def profile_dir(root, grouped):
    """A copy of profiles/slurm (with or without its job groups) in ``root``."""
    profile = yaml.safe_load(PROFILE.read_text())
    if not grouped:
        for key in GROUP_KEYS:
            profile.pop(key)
    root.mkdir(parents=True, exist_ok=True)
    (root / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return root


def workdir(root, mode, settings):
    """A work directory with the repository's config/ and config/bench.yaml = ``settings`` + the mode."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", root / "config", dirs_exist_ok=True)
    (root / "config" / "bench.yaml").write_text(yaml.safe_dump({**settings, "pipeline": {"mode": mode}}))
    return root


def jobcomp(job_ids):
    """SLURM job id -> {field: value} of its jobcomp record."""
    records = {}
    for line in JOBCOMP.read_text().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("JobId") in job_ids:
            records[fields["JobId"]] = fields
    missing = set(job_ids) - set(records)
    if missing:
        raise RuntimeError(f"SLURM jobs {sorted(missing)} missing from {JOBCOMP}")
    return records


def seconds(fields, start, end):
    parse = datetime.fromisoformat
    return (parse(fields[end]) - parse(fields[start])).total_seconds()


def job_logs(out):
    """(logs of the jobs run through SLURM, logs of the local jobs) from snakemake's job blocks."""
    remote, local = [], []
    # a group job's jobs are listed indented under "Group job <id> ...:"
    for indent, kind, block in re.findall(r"^( *)(rule|localrule) \w+:\n((?:\1    .*\n)+)", out, re.M):
        logs = re.findall(r"^ *log: (.+)$", block, re.M)
        (local if kind == "localrule" else remote).extend(path.strip() for entry in logs for path in entry.split(", "))
    return remote, local


def done_in(path):
    """The ``done in`` seconds that detcal.runner.logged wrote to a job's log."""
    found = re.findall(r"done in ([0-9.]+) s", path.read_text())
    if len(found) != 1:
        raise RuntimeError(f"{path}: expected one 'done in' line, found {len(found)}")
    return float(found[0])


def run(name, root, env, timeout, settings):
    mode, grouped = CONFIGS[name]
    wd = workdir(root / name, mode, settings)
    profile = profile_dir(root / "profiles" / name, grouped)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(wd),
           "--configfiles", "config/config.yaml", "config/bench.yaml", "--profile", str(profile)]
    load_before = load()
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    (root / f"{name}.out").write_text(out)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: snakemake failed (rc {proc.returncode}), see {root / f'{name}.out'}:\n"
                           + "\n".join(out.splitlines()[-30:]))
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", out)
    records = jobcomp(submitted)
    if any(r["JobState"] != "COMPLETED" for r in records.values()):
        raise RuntimeError(f"{name}: not every SLURM job COMPLETED: {records}")
    remote, local = job_logs(out)
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", out, re.M)
    local_rules = set(re.findall(r"^localrule (\w+):", out, re.M))
    wf_jobs = sum(rule not in local_rules for rule in finished)
    if len(remote) != wf_jobs:
        raise RuntimeError(f"{name}: {wf_jobs} workflow jobs through SLURM but {len(remote)} logs")
    slurm_wall = sum(seconds(r, "StartTime", "EndTime") for r in records.values())
    queued = sum(seconds(r, "SubmitTime", "StartTime") for r in records.values())
    work = sum(done_in(wd / path) for path in remote)
    overhead = slurm_wall - work
    return (name, wf_jobs, len(submitted), f"{wall:.1f}", f"{slurm_wall:.0f}", f"{work:.1f}",
            f"{overhead / len(submitted):.1f}", f"{overhead / wf_jobs:.1f}", f"{100 * overhead / slurm_wall:.0f}",
            f"{queued:.0f}", f"{load_before:.1f}-{load():.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="steps,fused,fused-groups",
                        help=f"comma-separated, of {', '.join(CONFIGS)} (default: all, in that order)")
    parser.add_argument("--repeat", type=int, default=1, help="run the list of configurations this many times")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per snakemake run")
    parser.add_argument("--campaign", help="SIZExNEXP: a simulated campaign of NEXP raw darks of SIZE^2 pixels "
                        "instead of the tiny demo")
    parser.add_argument("--nints", type=int, default=2, help="integrations per exposure (--campaign)")
    parser.add_argument("--ngroups", type=int, default=10, help="groups per integration (--campaign)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (--campaign)")
    args = parser.parse_args()
    names = args.configs.split(",")
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    if args.campaign and not re.fullmatch(r"\d+x\d+", args.campaign):
        parser.error(f"--campaign {args.campaign}: expected SIZExNEXP, e.g. 1024x4")

    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}, workdir {base}", flush=True)
    try:
        if args.campaign:
            size, nexp = (int(v) for v in args.campaign.split("x"))
            raw_glob, references = simulate_campaign(base / "campaign", size, nexp, args.nints, args.ngroups,
                                                     args.seed)
            settings = {"raw": raw_glob, "references": references, "keep": []}
            print(f"campaign: {nexp} NRCA1 exposures of {size}^2, {args.nints} x {args.ngroups} groups, "
                  f"seed {args.seed}", flush=True)
        else:
            settings = CONFIG
        env = plugin_env(base / "slurm-plugin")
        print("  ".join(f"{c:>14}" for c in COLUMNS), flush=True)
        for repeat in range(args.repeat):
            for name in names:
                # the cluster (and its lock) per run: a waiting tests/test_slurm.py gets it in between
                with running_cluster(log=lambda text: print(text, flush=True)):
                    row = run(name, base / f"run{repeat + 1}", env, args.timeout, settings)
                print("  ".join(f"{c:>14}" for c in row), flush=True)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
