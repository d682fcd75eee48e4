#!/usr/bin/env python
"""Benchmark the whole detector1 chain of one exposure: detcal against jwst 3.0's Detector1Pipeline.

Simulates one raw exposure and its reference files with :func:`detcal.simulate.write_detector_set`
(NIR: a NIRCam short-wave H2RG, 4 outputs; ``--miri``: a MIRI imager array of ``size x (size + 8)``),
then runs, each in a fresh Python subprocess (peak memory = ``VmHWM`` of that process, reset when
it starts; BLAS/OpenMP threads set to 1):

* **jwst**: ``Detector1Pipeline.call(uncal, steps=...)`` from the raw file to the ``rate`` and
  ``rateints`` files, with the same steps as detcal (NIR: dq_init, saturation, superbias, refpix,
  linearity, dark_current, jump, ramp_fit; MIRI: dq_init, saturation, lastframe, reset, linearity,
  rscd, dark_current, refpix, jump, ramp_fit), every other step skipped, the same reference files
  given as ``override_<reftype>`` and CRDS never contacted (empty ``CRDS_PATH``, unreachable
  server, no CRDS step parameters). The ramp after jump is saved (``save_calibrated_ramp``) for
  the GROUPDQ comparison; the time spent writing it is measured and left out of jwst's total.
* **detcal** (fused): one process reads the raw file once, applies the steps in memory (the
  :mod:`detcal.steps` modules' ``run``, as :func:`detcal.runner.run_step_file` does, references
  read once, cut to the subarray) and writes ``rate`` and ``rateints`` with
  :func:`detcal.io.write_rate`. Timed per stage: reading the raw file, each step (its reference
  files' reading included), writing.
* **per-step** (``--per-step``): the workflow's per-step file chain, each step reading and writing
  the 4-D ramp file through :func:`detcal.runner.run_step_file` / ``run_ramp_fit_file`` in one
  process (Snakemake's ~1 s per job start-up not included).

Prints one row per shape as soon as it is measured: wall time of each implementation, the
jwst/detcal ratio (wall and CPU time), both peak memories, and the agreement of the products: the
largest relative difference of the rate SCI values [DN/s] where both are finite, the number of
pixels finite in one and NaN in the other, the number of differing rate DQ values, and the number
of differing GROUPDQ values after jump. ``-v`` also prints detcal's and jwst's time per step.

    .venv/bin/python benchmarks/bench_detector1_chain.py --size 512                  # quick, ~1 min
    .venv/bin/python benchmarks/bench_detector1_chain.py --size 2048 --ngroups 10 -v  # one full frame
    .venv/bin/python benchmarks/bench_detector1_chain.py --shapes 1x10x2048,1x50x2048
    .venv/bin/python benchmarks/bench_detector1_chain.py --miri --shapes 3x40x1024

Shapes are NINTSxNGROUPSxSIZE (NIR: SIZE x SIZE pixels, reference border included; MIRI: SIZE
rows x SIZE + 8 columns, so ``--miri --size 1024`` is the 1024 x 1032 full frame). The frame time is
the simulator's full-frame value (NIR 10.737 s, MIRI 2.775 s) unless ``--tframe`` is given.
Memory: jwst at 2048^2 x 50 groups needs ~6-8 GB.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from procstats import parse_shapes, peak_mb, reset_peak  # noqa: E402 (this directory)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Steps run by both implementations, per family (detcal.pipeline.ORDER minus what is not run).
STEPS = {"NIR": ("dq_init", "saturation", "superbias", "refpix", "linearity", "dark_current",
                 "jump", "ramp_fit"),
         "MIRI": ("dq_init", "saturation", "lastframe", "reset", "linearity", "rscd",
                  "dark_current", "refpix", "jump", "ramp_fit")}

#: jwst step -> {override reference type: detcal reference key (None: 'N/A')}.
JWST_OVERRIDES = {"dq_init": {"mask": "mask"},
                  "saturation": {"saturation": "saturation", "superbias": "superbias"},
                  "superbias": {"superbias": "superbias"},
                  "refpix": {"refpix": None, "sirskernel": None},
                  "lastframe": {},
                  "reset": {"reset": "reset"},
                  "linearity": {"linearity": "linearity"},
                  "rscd": {"rscd": "rscd"},
                  "dark_current": {"dark": "dark"},
                  "jump": {"gain": "gain", "readnoise": "readnoise"},
                  "ramp_fit": {"gain": "gain", "readnoise": "readnoise"}}


# --------------------------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------------------------
def simulate(workdir, family, nints, ngroups, size, seed, tframe):
    """Write one raw exposure and its references under ``workdir``; returns the files dict."""
    sys.path.insert(0, REPO)
    from detcal import simulate as sim
    spec = {"name": "MIRIMAGE" if family == "MIRI" else "NRCA1",
            "preset": "miri_imager" if family == "MIRI" else "nircam_sw",
            "size": size, "ngroups": ngroups, "nints": nints, "nexposures": 1,
            "overrides": {"tframe": tframe} if tframe else {}}
    return sim.write_detector_set(spec, workdir, seed)


# --------------------------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------------------------
class _ChainTimer(logging.Handler):
    """Time per stage from :func:`detcal.runner.run_chain_file`'s log ('<branch> <step>: 1.23 s, ...')."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times = {}

    def emit(self, record):
        msg = record.getMessage()
        head, _, rest = msg.partition(": ")
        if rest[:1].isdigit() and " s, resident" in rest:
            self.times[head.replace("main ", "")] = float(rest.split()[0])


def child_detcal(job):
    """detcal fused: :func:`detcal.runner.run_chain_file` (the raw file read once, every step in
    memory, rate and rateints written), or, where the runner has no fused mode, the same in
    place: :mod:`detcal.steps` modules' ``run`` on the ramp read once, references read once."""
    sys.path.insert(0, REPO)
    from detcal import io, runner, steps
    jump = steps.REGISTRY["jump"]
    run_jump, untimed = jump.run, {"s": 0.0}

    def saving_jump(ramp, refs, **params):           # GROUPDQ after jump, for the comparison only
        result = run_jump(ramp, refs, **params)
        t = time.perf_counter()
        out = result[0] if isinstance(result, tuple) else result
        np.save(os.path.join(job["out"], "detcal_groupdq.npy"), out.groupdq)
        untimed["s"] += time.perf_counter() - t
        return result

    jump.run = saving_jump
    stem = os.path.join(job["out"], "detcal")
    refs = {step: {k: job["refs"][k] for k in JWST_OVERRIDES[step].values() if k in job["refs"]}
            for step in job["steps"]}
    base = peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    fused = hasattr(runner, "run_chain_file") and not job.get("inline")
    if fused:
        timer = _ChainTimer()
        logging.getLogger("detcal.chain").addHandler(timer)
        logging.getLogger("detcal").setLevel(logging.INFO)
        enabled = {name: name in job["steps"] for name in steps.REGISTRY}
        runner.run_chain_file(job["uncal"], job["family"], enabled, refs,
                              {"rate": stem + "_rate.fits", "rateints": stem + "_rateints.fits"})
        times = timer.times
    else:
        times = {}
        ramp = io.read_ramp(job["uncal"], "dq_init")
        times["read"] = time.perf_counter() - t0
        cache = {}
        for step in job["steps"]:
            t = time.perf_counter()
            for key, path in refs[step].items():
                if key not in cache:
                    cache[key] = io.read_reference(path, io.REFTYPES[key], like=ramp)
            result = steps.REGISTRY[step].run(ramp, {k: cache[k] for k in refs[step]})
            if step == "ramp_fit":
                rate, rateints = result
            else:
                ramp = result[0] if isinstance(result, tuple) else result
            times[step] = time.perf_counter() - t
        t = time.perf_counter()
        io.write_rate(stem + "_rate.fits", rate, ramp.header, step="ramp_fit")
        io.write_rate(stem + "_rateints.fits", rateints, ramp.header, tables=ramp.tables, step="ramp_fit")
        times["write"] = time.perf_counter() - t
    return {"wall_s": time.perf_counter() - t0 - untimed["s"], "cpu_s": time.process_time() - c0,
            "steps": times, "base_mb": base, "peak_mb": peak_mb(), "rate": stem + "_rate.fits",
            "fused": fused}


def child_perstep(job):
    """The workflow's per-step file chain: every step reads and writes the 4-D ramp file."""
    sys.path.insert(0, REPO)
    from detcal import pipeline, runner
    base = peak_mb()
    times = {}
    t0, c0 = time.perf_counter(), time.process_time()
    current = job["uncal"]
    stem = os.path.join(job["out"], "perstep")
    for step in job["steps"]:
        t = time.perf_counter()
        step_refs = {k: job["refs"][k] for k in pipeline.REFERENCES[step] if k in job["refs"]}
        if step == "ramp_fit":
            runner.run_ramp_fit_file(current, step_refs, stem + "_rate.fits", stem + "_rateints.fits")
        else:
            out = f"{stem}_{pipeline.SUFFIX[step]}.fits"
            runner.run_step_file(step, current, step_refs, out)
            if current != job["uncal"]:
                os.remove(current)                     # as temp() products: keep the disk small
            current = out
        times[step] = time.perf_counter() - t
    os.remove(current)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "steps": times,
            "base_mb": base, "peak_mb": peak_mb(), "rate": stem + "_rate.fits"}


class _StepTimer(logging.Handler):
    """Wall time of each jwst step from stpipe's 'Step X running' / 'Step X done' log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.start, self.times = {}, {}

    def emit(self, record):
        msg = record.getMessage()
        if not msg.startswith("Step "):
            return
        name = msg.split()[1]
        if " running with args" in msg:
            self.start[name] = record.created
        elif msg.rstrip().endswith("done") and name in self.start:
            self.times[name] = record.created - self.start.pop(name)


def child_jwst(job):
    """jwst 3.0 Detector1Pipeline, offline, with the same steps and override references."""
    import warnings
    warnings.simplefilter("ignore")
    crds = os.path.join(job["out"], "crds_empty")
    os.makedirs(crds, exist_ok=True)
    os.environ.update({"CRDS_PATH": crds, "CRDS_SERVER_URL": "https://crds-offline.invalid",
                       "CRDS_CONTEXT": "jwst_0000.pmap", "STPIPE_DISABLE_CRDS_STEPPARS": "True"})
    import stpipe.crds_client
    stpipe.crds_client.get_context_used = lambda *a, **k: "offline"
    from jwst.pipeline import Detector1Pipeline
    from stdatamodels.jwst import datamodels
    timer = _StepTimer()
    logging.getLogger("stpipe").addHandler(timer)
    logging.getLogger("stpipe").setLevel(logging.INFO)
    saved = {"s": 0.0}
    save_model = Detector1Pipeline.save_model

    def timed_save(self, model, *args, **kwargs):
        t = time.perf_counter()
        out = save_model(self, model, *args, **kwargs)
        if kwargs.get("suffix") == "ramp" or (args and args[0] == "ramp"):
            saved["s"] += time.perf_counter() - t     # written for the GROUPDQ comparison only
        return out

    Detector1Pipeline.save_model = timed_save
    run = set(job["steps"])
    steps = {name: {"skip": True} for name in Detector1Pipeline.step_defs if name not in run}
    for name in run:
        steps[name] = {f"override_{k}": job["refs"].get(v, "N/A") if v else "N/A"   # MIRI: no superbias
                       for k, v in JWST_OVERRIDES[name].items()}
    base = peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    # opened here as the pipeline opens it (the simulated raw file has no ASDF extension, which
    # stpipe's reading of the CRDS parameters from a path needs)
    model = datamodels.RampModel(job["uncal"])
    Detector1Pipeline.call(model, steps=steps, output_dir=job["out"], save_results=True,
                           save_calibrated_ramp=True)
    wall = time.perf_counter() - t0 - saved["s"]
    stem = os.path.join(job["out"], os.path.basename(job["uncal"]).replace("_uncal.fits", ""))
    return {"wall_s": wall, "cpu_s": time.process_time() - c0, "steps": timer.times,
            "ramp_save_s": saved["s"], "base_mb": base, "peak_mb": peak_mb(),
            "rate": stem + "_rate.fits", "ramp": stem + "_ramp.fits"}


CHILDREN = {"detcal": child_detcal, "perstep": child_perstep, "jwst": child_jwst}


def run_child(which, job):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=job["out"], delete=False) as f:
        json.dump(job, f)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", which, f.name],
                         capture_output=True, text=True, env=env, check=False)
    process = time.perf_counter() - start
    os.remove(f.name)
    if out.returncode:
        sys.exit(f"{which} child failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), process_s=process)


# --------------------------------------------------------------------------------------------
# comparison and table
# --------------------------------------------------------------------------------------------
def compare(ours, theirs_rate, theirs_ramp=None, ours_gdq=None):
    """Agreement of a detcal rate file with jwst's (and of GROUPDQ after jump)."""
    from astropy.io import fits
    a, b = fits.getdata(ours, "SCI"), fits.getdata(theirs_rate, "SCI")
    both = np.isfinite(a) & np.isfinite(b)
    rel = np.abs(a[both].astype(np.float64) - b[both]) / np.maximum(np.abs(b[both]), 1e-6)
    res = {"max_rel": float(rel.max()) if rel.size else 0.0,
           "nan_mismatch": int(np.count_nonzero(np.isfinite(a) != np.isfinite(b))),
           "dq_differ": int(np.count_nonzero(fits.getdata(ours, "DQ") != fits.getdata(theirs_rate, "DQ"))),
           "identical": bool(np.array_equal(a, b, equal_nan=True))}
    if theirs_ramp is not None and ours_gdq is not None:
        res["gdq_differ"] = int(np.count_nonzero(np.load(ours_gdq) != fits.getdata(theirs_ramp, "GROUPDQ")))
    return res


def run_shape(family, nints, ngroups, size, args):
    """Simulate one exposure, run every implementation, compare; returns the row's numbers."""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        files = simulate(tmp, family, nints, ngroups, size, args.seed, args.tframe)
        from astropy.io import fits
        ny, nx = fits.getval(files["uncal"][0], "NAXIS2", 1), fits.getval(files["uncal"][0], "NAXIS1", 1)
        job = {"uncal": files["uncal"][0], "refs": files["references"], "out": tmp,
               "steps": STEPS[family], "family": family, "inline": args.inline}
        load = os.getloadavg()[0]
        res = {}
        which_runs = ([] if args.no_jwst else ["jwst"]) + ["detcal"] + (["perstep"] if args.per_step else [])
        for which in which_runs:
            runs = [run_child(which, job) for _ in range(args.repeat if which != "jwst" else 1)]
            res[which] = min(runs, key=lambda r: r["wall_s"])
        agree = {}
        if "jwst" in res:
            agree["detcal"] = compare(res["detcal"]["rate"], res["jwst"]["rate"], res["jwst"]["ramp"],
                                      os.path.join(tmp, "detcal_groupdq.npy"))
            if "perstep" in res:
                agree["perstep"] = compare(res["perstep"]["rate"], res["jwst"]["rate"])
    return {"family": family, "shape": (nints, ngroups, ny, nx), "res": res, "agree": agree,
            "load": (load + os.getloadavg()[0]) / 2, "ramp_mb": nints * ngroups * ny * nx * 4 / 2**20}


ROW_HEADER = (f"{'family nints x ngroups x ny x nx':>33s} {'ramp [MB]':>9s} {'load':>5s} "
              f"{'jwst [s]':>8s} {'detcal [s]':>10s} {'per-step [s]':>12s} {'ratio wall':>10s} "
              f"{'ratio CPU':>9s} {'jwst peak [MB]':>14s} {'detcal peak [MB]':>16s} "
              f"{'per-step peak [MB]':>18s}  agreement (detcal vs jwst)")


def format_row(r):
    n, g, ny, nx = r["shape"]
    res = r["res"]
    dc, jw, ps = res["detcal"], res.get("jwst"), res.get("perstep")
    nan = float("nan")
    a = r["agree"].get("detcal")
    if a is None:
        agree = "jwst not run"
    elif a["identical"] and a["dq_differ"] == 0 and a.get("gdq_differ", 0) == 0:
        agree = "identical rate SCI and DQ, GROUPDQ after jump"
    else:
        agree = (f"rate max rel {a['max_rel']:.1e}, {a['nan_mismatch']} NaN mismatches, "
                 f"{a['dq_differ']} DQ differ, {a.get('gdq_differ', '?')} GROUPDQ differ")
    return (f"{r['family']:>6s} {f'{n} x {g} x {ny} x {nx}':>26s} {r['ramp_mb']:9.0f} {r['load']:5.1f} "
            f"{jw['wall_s'] if jw else nan:8.2f} {dc['wall_s']:10.2f} {ps['wall_s'] if ps else nan:12.2f} "
            f"{(jw['wall_s'] / dc['wall_s']) if jw else nan:9.1f}x "
            f"{(jw['cpu_s'] / dc['cpu_s']) if jw else nan:8.1f}x "
            f"{jw['peak_mb'] if jw else nan:14.0f} {dc['peak_mb']:16.0f} "
            f"{ps['peak_mb'] if ps else nan:18.0f}  {agree}")


def format_steps(r):
    lines = []
    for which in ("jwst", "detcal", "perstep"):
        if which in r["res"]:
            t = r["res"][which]["steps"]
            extra = (f" (+ {r['res'][which]['ramp_save_s']:.2f} s writing the jump ramp for the "
                     f"comparison, not counted)") if which == "jwst" else ""
            lines.append(f"    {which:>7s} per stage [s]: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items())
                         + extra)
            res = r["res"][which]
            how = "" if which != "detcal" else (
                ", runner.run_chain_file" if res["fused"] else ", steps in place")
            lines.append(f"    {'':>7s} whole process (interpreter start, imports, run) "
                         f"{res['process_s']:.2f} s, CPU of the run {res['cpu_s']:.2f} s{how}")
    return "\n".join(lines)


def main(argv=None):
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048,
                    help="NIR: pixels per side; MIRI: rows (columns = rows + 8); default 2048 (MIRI 1024)")
    ap.add_argument("--ngroups", type=int, default=10)
    ap.add_argument("--nints", type=int, default=1)
    ap.add_argument("--miri", action="store_true", help="a MIRI imager exposure instead of NIRCam")
    ap.add_argument("--shapes", type=parse_shapes, default=None,
                    help="comma-separated NINTSxNGROUPSxSIZE list (replaces --nints/--ngroups/--size)")
    ap.add_argument("--tframe", type=float, default=None, help="frame time [s] (default: the preset's)")
    ap.add_argument("--per-step", action="store_true", help="also time the per-step file chain")
    ap.add_argument("--inline", action="store_true",
                    help="detcal: the steps' run() in memory called here, not runner.run_chain_file")
    ap.add_argument("--no-jwst", action="store_true", help="detcal only (profiling)")
    ap.add_argument("--repeat", type=int, default=1, help="detcal runs per shape (the fastest is kept)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="scratch directory (~3 GB at 2048^2 x 50 groups)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the time per step too")
    ap.add_argument("--child", nargs=2, metavar=("WHICH", "JOB"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        reset_peak()
        which, path = args.child
        with open(path) as f:
            job = json.load(f)
        print(json.dumps(CHILDREN[which](job)))
        return 0

    family = "MIRI" if args.miri else "NIR"
    if args.miri and args.size == 2048:
        args.size = 1024
    shapes = args.shapes or [(args.nints, args.ngroups, args.size)]
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}; ratio = jwst time / "
          f"detcal time (wall; CPU = process time); peak = VmHWM of the run's own process", flush=True)
    print(ROW_HEADER, flush=True)
    for nints, ngroups, size in shapes:
        r = run_shape(family, nints, ngroups, size, args)
        print(format_row(r), flush=True)
        if args.verbose:
            print(format_steps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
