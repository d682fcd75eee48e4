"""Per-job overhead of the workflow on a real SLURM: per-step jobs, the fused chain, job groups (issue 15).

Runs the tiny demo of tests/test_slurm.py (one NIRCam detector, 64 x 64, 2 exposures of 1 x 5
groups, every ramp product kept, the CCD demo on) through ``--profile profiles/slurm`` on the
single-node SLURM of tests/cluster/slurm-up.sh, in up to four configurations:

* ``steps``: ``pipeline: {mode: steps}``, the profile without its job groups (one SLURM job per
  workflow job: the state before issue 15);
* ``fused``: the fused chain (one job per exposure), the profile without its job groups;
* ``fused-groups-nochains``: the fused chain and the profile's job groups but for the chains'
  (``groups`` without the ``chains`` group): one SLURM job per exposure's chain, the profile
  before the chains were grouped;
* ``fused-groups``: the fused chain and the profile as shipped (``groups``, ``group-components``,
  ``cores``; up to ``group-components: chains`` exposures' chains per SLURM job): the state after.

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

``--timeline`` also prints, per kind of SLURM job (a chain, a group), where its wall time went,
from a record of every Python process of the run (a ``sitecustomize`` on PYTHONPATH writes each
process's start, end and CPU time) and the jobs' logs: queueing, slurmd to the batch job's
Snakemake, that Snakemake's start-up until its first srun, per workflow job the inner
Snakemake's start-up (until the rule's script starts), the script's imports, the work, the
tail, the gap to the next one, and the end (see :func:`timeline`).

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
    .venv/bin/python benchmarks/bench_slurm.py --campaign 1024x4 --configs fused-groups-nochains,fused-groups --timeline

Needs root (as tests/test_slurm.py). Every product is left in ``--workdir`` (default: a new
temporary directory, deleted at the end unless ``--keep``).
"""

import argparse
import json
import os
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
#: The profile's group of the fused chain rules (dropped for ``fused-groups-nochains``).
CHAIN_GROUP = "chains"
#: name -> (pipeline mode, job groups of the shipped profile: all, "analyses" (all but the chains'), none)
CONFIGS = {"steps": ("steps", None), "fused": ("fused", None), "fused-groups-nochains": ("fused", "analyses"),
           "fused-groups": ("fused", "all")}
COLUMNS = ("config", "wf jobs", "SLURM jobs", "run wall [s]", "SLURM wall [s]", "work [s]",
           "overhead/SLURM job [s]", "overhead/wf job [s]", "overhead %", "queued [s]", "load")


def load():
    return float(Path("/proc/loadavg").read_text().split()[0])


#: sitecustomize.py of ``--timeline``: every Python process started with it on its PYTHONPATH appends
#: one JSON line at exit to $DETCAL_BENCH_TIMELINE: pid, parent, SLURM job, argv, start (the process's
#: start from /proc, 10 ms resolution) and end (epoch seconds), CPU seconds (user + system, own).
SITECUSTOMIZE = """\
import atexit, json, os, sys, time


def _detcal_bench_timeline(path=os.environ.get("DETCAL_BENCH_TIMELINE")):
    if not path:
        return
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        start = boot + int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    except (OSError, ValueError, StopIteration):
        start = time.time()

    def record():
        cpu = os.times()
        row = {"pid": os.getpid(), "ppid": os.getppid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
               "argv": sys.argv, "start": start, "end": time.time(), "cpu": cpu.user + cpu.system}
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\\n")

    atexit.register(record)


_detcal_bench_timeline()
"""


def profile_dir(root, grouped, extra=None):
    """A copy of profiles/slurm in ``root``: with all its job groups (``grouped`` "all"), all but the
    chains' ("analyses"), or none (None); updated with ``extra``."""
    profile = yaml.safe_load(PROFILE.read_text())
    if grouped is None:
        for key in GROUP_KEYS:
            profile.pop(key)
    elif grouped == "analyses":
        profile["groups"] = {rule: g for rule, g in profile["groups"].items() if g != CHAIN_GROUP}
        profile["group-components"].pop(CHAIN_GROUP, None)
    profile.update(extra or {})
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


def job_targets(out):
    """{(rule, wildcards): log} of the jobs run through SLURM, from snakemake's job blocks; wildcards
    a sorted tuple of 'name=value', as an inner Snakemake's ``--target-jobs rule:name=value,...``."""
    targets = {}
    for indent, rule, block in re.findall(r"^( *)rule (\w+):\n((?:\1    .*\n)+)", out, re.M):
        logs = re.findall(r"^ *log: (.+)$", block, re.M)
        wildcards = re.findall(r"^ *wildcards: (.+)$", block, re.M)
        key = (rule, tuple(sorted(w.strip() for w in wildcards[0].split(", "))) if wildcards else ())
        targets[key] = logs[0].split(", ")[0].strip()
    return targets


def target_of(argv):
    """(rule, wildcards) of an inner Snakemake's ``--target-jobs`` argument (see job_targets)."""
    rule, _, wildcards = argv[argv.index("--target-jobs") + 1].partition(":")
    return rule, tuple(sorted(w for w in wildcards.split(",") if w))


def done_in(path):
    """The ``done in`` seconds that detcal.runner.logged wrote to a job's log."""
    found = re.findall(r"done in ([0-9.]+) s", path.read_text())
    if len(found) != 1:
        raise RuntimeError(f"{path}: expected one 'done in' line, found {len(found)}")
    return float(found[0])


def work_intervals(wd, paths):
    """(start, end) epoch seconds of each workflow job's own work, from its log's ``done in`` line
    (detcal.runner.logged: the line's time stamp is the end, ``done in`` the duration)."""
    out = []
    for path in paths:
        text = (wd / path).read_text()
        found = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ INFO: done in ([0-9.]+) s", text, re.M)
        if len(found) != 1:
            raise RuntimeError(f"{path}: expected one 'done in' line, found {len(found)}")
        end = datetime.strptime(found[0][0], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((end - float(found[0][1]), end))
    return out


#: Columns of the timeline rows (means over the SLURM jobs of one kind, seconds).
TIMELINE = ("SLURM job kind", "SLURM jobs", "wf jobs", "queued", "slurmd->outer", "outer->1st srun",
            "inner smk/job", "script imp/job", "work/job", "tail/job", "between/job", "outer end", "->SLURM end",
            "outer CPU", "inner CPU/job", "script CPU/job")


def timeline(wd, records, processes, targets, kinds):
    """Per SLURM job kind (its comment), where a SLURM job's wall time goes, as means [s]:

    queued (SubmitTime -> StartTime); slurmd->outer (StartTime -> the batch job's ``python -m
    snakemake``, the jobstep executor, starts; StartTime has whole seconds); outer->1st srun (that
    Snakemake's start-up: imports, Snakefile parse, DAG, until the first workflow job's inner
    ``python -m snakemake`` starts under srun); per workflow job: inner smk (the inner Snakemake's
    start until its rule's script starts: imports, parse, DAG, job set-up), script imp (the script's
    interpreter until the job's work begins: imports, Snakemake's script preamble), work (``done
    in``), tail (work end until the inner Snakemake exits: the script's exit, output checks),
    between (inner Snakemake's exit until the next one starts, or until the outer one ends: the
    outer Snakemake's bookkeeping and srun); outer end (last inner end -> outer exit) and
    ->SLURM end (outer exit -> EndTime, whole seconds). CPU: the processes' own user + system.
    """
    jobs = {}
    works = dict(zip(targets.values(), work_intervals(wd, targets.values())))
    for job_id, rec in records.items():
        procs = sorted((p for p in processes if p["slurm_job"] == job_id), key=lambda p: p["start"])
        # python -m snakemake: argv[0] is snakemake/__main__.py; a rule's script: .snakemake/scripts/tmp*.py
        snakemakes = [p for p in procs if p["argv"][0].endswith(os.path.join("snakemake", "__main__.py"))]
        outer = [p for p in snakemakes if "slurm-jobstep" in p["argv"]]
        inner = [p for p in snakemakes if "slurm-jobstep" not in p["argv"]]
        scripts = [p for p in procs if "/.snakemake/scripts/" in p["argv"][0]]
        if len(outer) != 1 or not inner or len(scripts) != len(inner):
            raise RuntimeError(f"SLURM job {job_id}: {len(outer)} outer, {len(inner)} inner snakemakes, "
                               f"{len(scripts)} scripts in the timeline")
        outer = outer[0]
        start = datetime.fromisoformat(rec["StartTime"]).timestamp()
        end = datetime.fromisoformat(rec["EndTime"]).timestamp()
        row = {"queued": seconds(rec, "SubmitTime", "StartTime"), "slurmd->outer": outer["start"] - start,
               "outer->1st srun": inner[0]["start"] - outer["start"], "outer end": outer["end"] - inner[-1]["end"],
               "->SLURM end": end - outer["end"], "outer CPU": outer["cpu"]}
        per = {k: 0.0 for k in ("inner smk/job", "script imp/job", "work/job", "tail/job", "between/job",
                                "inner CPU/job", "script CPU/job")}
        for k, (smk, script) in enumerate(zip(inner, scripts)):
            w0, w1 = works[targets[target_of(smk["argv"])]]
            if not script["start"] <= w0 <= w1 <= script["end"] + 0.01:
                raise RuntimeError(f"SLURM job {job_id}: the work of {target_of(smk['argv'])} is not inside its script")
            per["inner smk/job"] += script["start"] - smk["start"]
            per["script imp/job"] += w0 - script["start"]
            per["work/job"] += w1 - w0
            per["tail/job"] += smk["end"] - w1
            if k + 1 < len(inner):
                per["between/job"] += inner[k + 1]["start"] - smk["end"]
            per["inner CPU/job"] += smk["cpu"]
            per["script CPU/job"] += script["cpu"]
        n = len(inner)
        row.update({k: v / n for k, v in per.items()}, wf=n)
        kind = kinds.get(job_id, job_id)
        jobs.setdefault(kind, []).append(row)
    rows = []
    for kind, items in sorted(jobs.items()):
        mean = {k: sum(i[k] for i in items) / len(items) for k in items[0]}
        rows.append((kind[:40], len(items), sum(i["wf"] for i in items))
                    + tuple(f"{mean[c]:.2f}" for c in TIMELINE[3:]))
    return rows


def run(name, root, env, timeout, settings, profile_extra=None, timeline_dir=None):
    mode, grouped = CONFIGS[name]
    wd = workdir(root / name, mode, settings)
    profile = profile_dir(root / "profiles" / name, grouped, profile_extra)
    trace = None
    if timeline_dir is not None:   # every Python process of the run records its start, end and CPU
        timeline_dir.mkdir(parents=True, exist_ok=True)
        (timeline_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        trace = root / f"{name}.timeline.jsonl"
        trace.unlink(missing_ok=True)
        env = {**env, "DETCAL_BENCH_TIMELINE": str(trace),
               "PYTHONPATH": os.pathsep.join(p for p in (str(timeline_dir), env.get("PYTHONPATH")) if p)}
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
    steps = []
    if trace is not None:
        # SLURM job id -> the plugin's log directory of the job: rule_<rule>, group_<group id>_<its rules>
        kinds = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/([^/]+)/", out))
        processes = [json.loads(line) for line in trace.read_text().splitlines()]
        steps = timeline(wd, records, processes, job_targets(out), kinds)
    return steps, (name, wf_jobs, len(submitted), f"{wall:.1f}", f"{slurm_wall:.0f}", f"{work:.1f}",
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
    parser.add_argument("--slurm-logs", action="store_true",
                        help="keep every SLURM job's log (.snakemake/slurm_logs/ of the run's workdir; "
                        "with --keep or --workdir)")
    parser.add_argument("--timeline", action="store_true",
                        help="also print where each kind of SLURM job's time goes (queue, the two Snakemakes, "
                        "script imports, work, tails), from a record of every Python process of the run")
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
                    steps, row = run(name, base / f"run{repeat + 1}", env, args.timeout, settings,
                                     {"slurm-keep-successful-logs": True} if args.slurm_logs else None,
                                     base / "timeline-site" if args.timeline else None)
                print("  ".join(f"{c:>14}" for c in row), flush=True)
                if steps:
                    widths = [max(len(str(c)), 6) for c in TIMELINE]
                    widths[0] = max(widths[0], *(len(r[0]) for r in steps))
                    print(f"  where the SLURM jobs' time went ({name}; means per SLURM job, per workflow job "
                          "where '/job'; seconds):", flush=True)
                    for line in [TIMELINE] + steps:
                        print("    " + "  ".join(f"{c:>{w}}" for c, w in zip(line, widths)), flush=True)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
