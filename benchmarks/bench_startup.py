"""Job start-up benchmark: what a Snakemake job pays before its work (issue 15).

Every Snakemake job is a fresh Python process: interpreter start-up, the imports of its workflow
script, Snakemake's ``script:`` preamble (it unpickles the ``snakemake`` object), then the work.
Two measurements, each repeated ``--repeat`` times with the code trees interleaved, medians
printed as they go:

* ``imports``: for each workflow script, a fresh interpreter runs the script's own import
  statements (read from workflow/scripts/<name>.py; the group_analysis job also imports its
  analysis module). ``import wall`` / ``import CPU`` are measured inside the child around the
  imports; ``process wall`` is the whole child (interpreter start-up and exit included);
  ``loads`` lists which of matplotlib, pandas and scipy the imports loaded. ``snakemake
  preamble`` is what the preamble imports.
* ``--workflow``: a tiny 1-exposure campaign (NRCA1, 48 x 48, 1 x 5 groups, analyses off) is run
  once, then the chosen job is forced again (``--forcerun RULE --until RULE``, ``--cores 1``):
  ``job wall`` / ``job CPU`` from the job's ``benchmark:`` file, ``in runner`` from its log's
  ``done in`` line (:func:`detcal.runner.logged`), ``start-up`` = job wall - in runner
  (interpreter, imports, Snakemake's preamble). Jobs: the fused chain (``detector1_NIR``), and in
  ``mode: steps`` one step job (``superbias``) and ``ramp_fit``.

``--tree DIR`` (repeatable) measures another checkout of the code, e.g. the commit before a
change (``git archive <commit> | tar -x -C DIR``); its Snakefile and scripts are run and its
``detcal`` is put first on ``PYTHONPATH``. Examples::

    .venv/bin/python benchmarks/bench_startup.py --repeat 7
    .venv/bin/python benchmarks/bench_startup.py --repeat 5 --workflow --tree /tmp/before --tree .
"""

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Workflow script -> modules its job imports beyond the script's own import lines.
EXTRA = {"group_analysis": ["detcal.analysis.jumps"]}

SCRIPTS = ("chain", "step", "ramp_fit", "inventory", "summary", "group_summary", "group_analysis")

PREAMBLE = "import pickle\nfrom snakemake.logging import logger\nimport snakemake.script, snakemake.iocontainers"

CHILD = """import time, os, sys
t0, c0 = time.perf_counter(), time.process_time()
{imports}
t1, c1 = time.perf_counter(), time.process_time()
loads = [m for m in ('matplotlib', 'pandas', 'scipy') if m in sys.modules]
print(t1 - t0, c1 - c0, ','.join(loads) or '-')
"""

TINY = """demo: {seed: 11, detectors: [{name: NRCA1, preset: nircam_sw, size: 48, ngroups: 5, nints: 1, nexposures: 1}]}
keep: []
sample_pixels: [[10, 10], [20, 30]]
ccd: {demo: null}
analysis: {enabled: false}
"""

#: (label, pipeline mode, rule, benchmark file, log file) of the jobs timed with --workflow.
JOBS = (("chain (fused)", "fused", "detector1_NIR", "results/benchmarks/detector1/demo_nrca1_e001.tsv",
         "logs/detector1/demo_nrca1_e001.log"),
        ("step (superbias)", "steps", "superbias", "results/benchmarks/superbias/demo_nrca1_e001.tsv",
         "logs/superbias/demo_nrca1_e001.log"),
        ("ramp_fit", "steps", "ramp_fit", "results/benchmarks/ramp_fit/demo_nrca1_e001.tsv",
         "logs/ramp_fit/demo_nrca1_e001.log"))


def script_imports(tree, name):
    """The import lines a job of workflow/scripts/<name>.py runs before its work."""
    body = ast.parse((tree / "workflow" / "scripts" / f"{name}.py").read_text()).body
    lines = [ast.unparse(n) for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines + [f"import {m}" for m in EXTRA.get(name, [])])


def env_for(tree):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def time_imports(tree, imports):
    """(import wall, import CPU, process wall [s], modules loaded) of one fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(imports=imports)], cwd=tree, env=env_for(tree),
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    t, c, loads = out.stdout.split()
    return float(t), float(c), wall, loads


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def bench_imports(trees, repeat):
    print(f"{'tree':>12} {'script':>16} {'import wall [s]':>16} {'import CPU [s]':>15} "
          f"{'process wall [s]':>17} {'loads':>26} {'load':>6}", flush=True)
    sets = [(name, None) for name in SCRIPTS] + [("snakemake preamble", PREAMBLE)]
    for name, code in sets:
        runs = {tree: [] for tree in trees}
        loads = {}
        load = []
        for _ in range(repeat):
            for tree in trees:          # interleaved, so that the trees see the same load
                t, c, w, what = time_imports(tree, code or script_imports(tree, name))
                runs[tree].append((t, c, w))
                loads[tree] = what
                load.append(float(loadavg()))
        for tree in trees:
            t, c, w = (statistics.median(v) for v in zip(*runs[tree]))
            print(f"{tree.name[:12]:>12} {name:>16} {t:16.2f} {c:15.2f} {w:17.2f} {loads[tree]:>26} "
                  f"{statistics.median(load):6.1f}", flush=True)


def snakemake(tree, workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-d", str(workdir), "--cores", "1",
           "--configfile", str(workdir / "config" / "config.yaml"), str(workdir / "config" / "tiny.yaml"), *args]
    subprocess.run(cmd, cwd=tree, env=env_for(tree), capture_output=True, text=True, check=True)


def prepare(tree, root, mode):
    workdir = root / f"{tree.name}_{mode}"
    shutil.copytree(tree / "config", workdir / "config")
    (workdir / "config" / "tiny.yaml").write_text(TINY + f"pipeline: {{mode: {mode}}}\n")
    snakemake(tree, workdir)
    return workdir


def time_job(tree, workdir, rule, bench, log):
    snakemake(tree, workdir, "--forcerun", rule, "--until", rule)
    with open(workdir / bench) as f:
        header, row = f.read().splitlines()[:2]
    fields = dict(zip(header.split("\t"), row.split("\t")))
    done = re.search(r"done in ([0-9.]+) s", (workdir / log).read_text())
    return float(fields["s"]), float(fields["cpu_time"]), float(done.group(1))


def bench_workflow(trees, repeat):
    root = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        dirs = {(tree, mode): prepare(tree, root, mode) for tree in trees for mode in ("fused", "steps")}
        print(f"{'tree':>12} {'job':>18} {'job wall [s]':>13} {'job CPU [s]':>12} {'in runner [s]':>14} "
              f"{'start-up [s]':>13} {'load':>6}", flush=True)
        for label, mode, rule, bench, log in JOBS:
            runs = {tree: [] for tree in trees}
            load = []
            for _ in range(repeat):
                for tree in trees:
                    runs[tree].append(time_job(tree, dirs[tree, mode], rule, bench, log))
                    load.append(float(loadavg()))
            for tree in trees:
                wall, cpu, done = (statistics.median(v) for v in zip(*runs[tree]))
                startup = statistics.median(w - d for w, _, d in runs[tree])
                print(f"{tree.name[:12]:>12} {label:>18} {wall:13.2f} {cpu:12.2f} {done:14.2f} {startup:13.2f} "
                      f"{statistics.median(load):6.1f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="code tree to measure (repeatable; default: this repository)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median printed)")
    parser.add_argument("--workflow", action="store_true", help="also time tiny workflow jobs end to end")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [REPO])]
    print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "load": loadavg(),
                      "trees": [str(t) for t in trees]}), flush=True)
    bench_imports(trees, args.repeat)
    if args.workflow:
        bench_workflow(trees, args.repeat)


if __name__ == "__main__":
    main()
