"""Campaign benchmark: a whole dark campaign from raw files to every product (issue 15).

Simulates ``--nexposures`` NIRCam-like darks of one detector (``--size`` pixels a side, 4 outputs,
RAPID, ``--nints`` x ``--ngroups``) with their reference files (``detcal.simulate``), writes a
config that gives them as real data (``raw:`` glob, ``references:``), and runs the workflow
(`snakemake --cores N`) from the raw files to all products: the detector1 chain, the branch
without dark, the reference files, the analyses and the summary (the HTML report is built by a
second command, timed apart). It prints one row per campaign as it goes:

* ``wall [s]``: the workflow run (Snakemake start-up included), ``report [s]`` the
  ``--report`` run after it;
* ``largest job [MB]``: the highest ``max_rss`` in the jobs' ``benchmark:`` files (Snakemake
  measures each job's process tree) and the rule it belongs to;
* ``I/O floor [s]``: reading every raw file's SCI once into memory (astropy, one file at a time),
  the least any reduction of these files can take on this machine;
* ``jobs``: jobs run; ``job time [s]``: the sum of the jobs' own wall times (their benchmark
  files), so ``job time / wall`` is the parallelism obtained;
* ``mode``: the config's ``pipeline: {mode: ...}`` when the workflow has that key (fused or
  per-step detector1), else ``steps``.

Examples (the full campaign of issue 15 needs ~4 GB of disk per 10 exposures and 20-40 min on
two cores)::

    .venv/bin/python benchmarks/bench_campaign.py --size 256 --nexposures 2          # smoke test
    .venv/bin/python benchmarks/bench_campaign.py --size 2048 --nexposures 20 --nints 2 --ngroups 10
    .venv/bin/python benchmarks/bench_campaign.py --campaigns 512x1,512x5,512x20 --mode steps,fused

``--campaigns`` is a list of ``SIZExNEXPOSURES`` (the scaling table's exposure and frame-size
axes); ``--ngroups`` may also be a list (10,40,100). Every campaign runs in a fresh directory
under ``--workdir`` (deleted afterwards unless ``--keep``).
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from astropy.io import fits

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def simulate_campaign(root, size, nexposures, nints, ngroups, seed):
    """Write the raw darks and references of one detector; return (raw glob, references)."""
    from detcal import simulate

    spec = {"name": "NRCA1", "preset": "nircam_sw", "size": size, "readpatt": "RAPID",
            "ngroups": ngroups, "nints": nints, "nexposures": nexposures,
            "overrides": {"tframe": 10.73677}}
    files = simulate.write_detector_set(spec, str(root / "data"), seed)
    return str(root / "data" / "uncal" / "*_uncal.fits"), {"NRCA1": dict(files["references"])}


def has_mode_key():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    pipeline = schema.get("properties", {}).get("pipeline", {})
    return "mode" in pipeline.get("properties", {})


def io_floor(raw_glob):
    """Seconds to read every raw file's SCI once (one file at a time)."""
    start = time.perf_counter()
    for path in sorted(glob.glob(raw_glob)):
        with fits.open(path, memmap=False) as hdul:
            np.asarray(hdul["SCI"].data).sum(dtype=np.int64)
    return time.perf_counter() - start


def job_benchmarks(work):
    """(largest max_rss [MB], its rule, sum of job wall times [s], jobs) from benchmark files."""
    rows = []
    for path in glob.glob(str(work / "results" / "benchmarks" / "**" / "*.tsv"), recursive=True):
        table = pd.read_csv(path, sep="\t")
        rel = Path(path).relative_to(work / "results" / "benchmarks")
        # analysis/<name>_<group>.tsv and reffiles/<product>_<group>.tsv: name the analysis
        rule = rel.parts[0] if len(rel.parts) > 2 or rel.parts[0] not in ("analysis", "reffiles") \
            else f"{rel.parts[0]}/{rel.stem.rsplit('_', 1)[0]}"
        rows.append((float(pd.to_numeric(table["max_rss"], errors="coerce").max()), rule,
                     float(table["s"].iloc[0])))
    if not rows:
        return float("nan"), "-", float("nan"), 0
    peak = max(rows, key=lambda r: (np.nan_to_num(r[0], nan=-1.0)))
    return peak[0], peak[1], sum(r[2] for r in rows), len(rows)


def run_campaign(args, size, nexposures, ngroups, mode, seed):
    root = Path(tempfile.mkdtemp(prefix=f"campaign_{size}x{nexposures}_", dir=args.workdir))
    try:
        raw_glob, references = simulate_campaign(root, size, nexposures, args.nints, ngroups, seed)
        work = root / "work"
        shutil.copytree(REPO / "config", work / "config")
        config = {"raw": raw_glob, "references": references, "keep": []}
        if mode != "steps" or has_mode_key():
            config["pipeline"] = {"mode": mode}
        (work / "campaign.yaml").write_text(yaml.safe_dump(config))
        floor = io_floor(raw_glob)
        base = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
                str(work / "campaign.yaml"), "--cores", str(args.cores), "--quiet"]
        start = time.perf_counter()
        proc = subprocess.run(base, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"campaign {size}x{nexposures} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        start = time.perf_counter()
        rep = subprocess.run(base + ["--report", str(work / "report.html")], capture_output=True,
                             text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        report = time.perf_counter() - start if rep.returncode == 0 else float("nan")
        peak, rule, job_time, jobs = job_benchmarks(work)
        raw_mb = sum(os.path.getsize(p) for p in glob.glob(raw_glob)) / 1e6
        return {"size": f"{size}²", "exposures": nexposures, "ints x groups": f"{args.nints} x {ngroups}",
                "mode": mode, "raw [MB]": round(raw_mb), "wall [s]": round(wall, 1),
                "report [s]": round(report, 1), "I/O floor [s]": round(floor, 2), "jobs": jobs,
                "job time [s]": round(job_time, 1), "largest job [MB]": round(peak),
                "largest job rule": rule}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--nexposures", type=int, default=20)
    parser.add_argument("--nints", type=int, default=2)
    parser.add_argument("--ngroups", default="10", help="number of groups, or a comma list")
    parser.add_argument("--campaigns", default=None, help="comma list of SIZExNEXPOSURES")
    parser.add_argument("--mode", default="steps", help="detector1 mode(s): steps, fused (comma list)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the campaign directories")
    args = parser.parse_args(argv)
    campaigns = ([tuple(int(v) for v in c.split("x")) for c in args.campaigns.split(",")]
                 if args.campaigns else [(args.size, args.nexposures)])
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f}, --cores {args.cores}", flush=True)
    widths = None
    for size, nexp in campaigns:
        for ngroups in (int(g) for g in args.ngroups.split(",")):
            for mode in args.mode.split(","):
                row = run_campaign(args, size, nexp, ngroups, mode, args.seed)
                row["load"] = round(os.getloadavg()[0], 1)
                if widths is None:          # header once, columns as wide as their names
                    widths = {k: max(len(k), 12) for k in row}
                    print("  ".join(k.rjust(w) for k, w in widths.items()), flush=True)
                print("  ".join(str(v).rjust(widths[k]) for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
