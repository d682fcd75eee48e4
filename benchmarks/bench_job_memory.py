#!/usr/bin/env python
"""Peak memory of every per-step detector1 job against the size of the ramp it works on.

Simulates one raw exposure and its reference files (:func:`detcal.simulate.write_detector_set`,
NIR: a NIRCam short-wave H2RG of ``--size``^2 pixels; ``--miri``: a MIRI imager of ``--size`` x
``--size + 8``), then runs the per-step file chain as the workflow's jobs do -- each step a fresh
subprocess calling :func:`detcal.runner.run_step_file` (ramp_fit: ``run_ramp_fit_file``) on the
previous step's product, with the references the workflow gives it -- and prints, per job as it
is measured, the wall time and the peak resident memory above the interpreter with detcal
imported (``VmHWM``, reset after the imports), also as a multiple of the ramp's SCI float32 +
GROUPDQ size.

    .venv/bin/python benchmarks/bench_job_memory.py --nints 2 --ngroups 20 --size 1024
    .venv/bin/python benchmarks/bench_job_memory.py --miri --nints 2 --ngroups 30 --size 512
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from procstats import peak_mb, reset_peak  # noqa: E402 (this directory)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(step, ramp_path, references, out):
    """One per-step job; returns its wall time and peak memory above the start [MB]."""
    sys.path.insert(0, REPO)
    from detcal import runner

    reset_peak()                                        # after the imports
    base = peak_mb()
    t0 = time.perf_counter()
    if step == "ramp_fit":
        runner.run_ramp_fit_file(ramp_path, references, out + "_rate.fits", out + "_rateints.fits")
    else:
        runner.run_step_file(step, ramp_path, references, out)
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak_mb() - base}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--miri", action="store_true")
    ap.add_argument("--nints", type=int, default=2)
    ap.add_argument("--ngroups", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        step, ramp_path, refs, out = a.child
        print(json.dumps(child(step, ramp_path, json.loads(refs), out)))
        return 0
    sys.path.insert(0, REPO)
    from detcal import pipeline, simulate

    family = "MIRI" if a.miri else "NIR"
    ny, nx = (a.size, a.size + 8) if a.miri else (a.size, a.size)
    ramp_mb = a.nints * a.ngroups * ny * nx * 5 / 2**20
    print(f"{family} {a.nints} x {a.ngroups} x {ny} x {nx}: ramp SCI float32 + GROUPDQ = {ramp_mb:.0f} MB",
          flush=True)
    with tempfile.TemporaryDirectory(dir=a.workdir) as work:
        spec = {"name": "MIRIMAGE" if a.miri else "NRCA1", "preset": "miri_imager" if a.miri else "nircam_sw",
                "size": a.size, "ngroups": a.ngroups, "nints": a.nints, "nexposures": 1}
        files = simulate.write_detector_set(spec, work, 3)
        refs = files["references"]
        current = files["uncal"][0]
        print(f"{'job':14s} {'time [s]':>9s} {'peak - start [MB]':>18s} {'peak / ramp':>12s}", flush=True)
        for step in pipeline.chain(family, {}):
            keys = {k: refs[k] for k in pipeline.REFERENCES.get(step, ()) if k in refs}
            out = os.path.join(work, f"{step}.fits" if step != "ramp_fit" else "fit")
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", step, current,
                                   json.dumps(keys), out], capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{step:14s} {r['seconds']:9.2f} {r['peak_mb']:18.0f} {r['peak_mb'] / ramp_mb:12.2f}",
                  flush=True)
            current = out
    return 0


if __name__ == "__main__":
    sys.exit(main())
