#!/usr/bin/env python
"""Peak memory and time of the dark_current step (detcal.steps.dark_current.run) on one ramp.

Builds in memory a ramp of NINTS x NGROUPS x SIZE x SIZE float32 (plus its GROUPDQ) and a DARK
reference of the same readout with SCI, ERR and DQ, as the workflow's runner holds them after
reading the files, then runs the step in a fresh subprocess per mode and prints the peak resident
memory (``ru_maxrss``) above the inputs:

* ``copying``: the whole matched dark and a corrected copy of the ramp (what the step did before
  issue 15, and still does with ``dark_output``);
* ``in place``: the ramp corrected in place, the matched dark built in ``--memory-mb`` chunks.

    .venv/bin/python benchmarks/bench_dark_current_step.py                  # 1 x 50 x 1024^2
    .venv/bin/python benchmarks/bench_dark_current_step.py --size 2048      # full frame (~3 GB)

The rows are printed as they are measured; both modes must give the same corrected ramp.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode, nints, ngroups, size, memory_mb, out):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from astropy.io import fits

    from detcal.io import Ramp, Reference
    from detcal.steps import dark_current

    rng = np.random.default_rng(5)
    shape = (nints, ngroups, size, size)
    data = np.empty(shape, np.float32)
    for i in range(nints):
        for k in range(ngroups):
            data[i, k] = rng.normal(1000.0 + 10 * k, 10.0, (size, size))
    hdr = fits.Header()
    for key, val in dict(INSTRUME="NIRCAM", DETECTOR="NRCA1", NINTS=nints, NGROUPS=ngroups,
                         NFRAMES=1, GROUPGAP=0, SUBARRAY="FULL", SUBSTRT1=1, SUBSTRT2=1,
                         SUBSIZE1=size, SUBSIZE2=size).items():
        hdr[key] = val
    ramp = Ramp(data, np.zeros((size, size), np.uint32), np.zeros(shape, np.uint8), hdr, "sci.fits")
    dark = np.empty(shape[1:], np.float32)
    for k in range(ngroups):
        dark[k] = rng.normal(0.1 * k, 1.0, (size, size))
    dhdr = fits.Header()
    for key, val in dict(REFTYPE="DARK", NFRAMES=1, GROUPGAP=0, NGROUPS=ngroups).items():
        dhdr[key] = val
    ref = Reference("DARK", dark, dq=np.zeros((size, size), np.uint32),
                    err=np.ones(shape[1:], np.float32), header=dhdr, path="dark.fits")
    base = _maxrss_mb()
    t0 = time.perf_counter()
    if mode == "copying":
        ramp, _ = dark_current.run(ramp, {"dark": ref}, dark_output=True)
    else:
        ramp = dark_current.run(ramp, {"dark": ref}, memory_mb=memory_mb)
    seconds = time.perf_counter() - t0
    np.save(out, ramp.data[:, -1])
    return {"seconds": seconds, "base_mb": base, "peak_mb": _maxrss_mb()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--ngroups", type=int, default=50)
    ap.add_argument("--nints", type=int, default=1)
    ap.add_argument("--memory-mb", type=float, default=64.0)
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.nints, a.ngroups, a.size, a.memory_mb, a.child[1])))
        return 0
    ramp_mb = a.nints * a.ngroups * a.size * a.size * 4 / 2**20
    print(f"ramp {a.nints} x {a.ngroups} x {a.size} x {a.size} float32 = {ramp_mb:.0f} MB; the dark "
          f"SCI and ERR are {ramp_mb / a.nints:.0f} MB each; inputs = ramp + GROUPDQ + dark", flush=True)
    print(f"{'mode':10s} {'time [s]':>9s} {'inputs [MB]':>12s} {'peak [MB]':>10s} "
          f"{'peak - inputs [MB]':>19s}", flush=True)
    outs = []
    for mode in ("copying", "in place"):
        out = os.path.join(a.workdir, f"bench_dark_step_{os.getpid()}_{len(outs)}.npy")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--size", str(a.size),
                               "--ngroups", str(a.ngroups), "--nints", str(a.nints),
                               "--memory-mb", str(a.memory_mb), "--child", mode, out],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{mode:10s} {r['seconds']:9.2f} {r['base_mb']:12.0f} {r['peak_mb']:10.0f} "
              f"{r['peak_mb'] - r['base_mb']:19.0f}", flush=True)
        outs.append(out)
    same = np.array_equal(np.load(outs[0]), np.load(outs[1]))
    for out in outs:
        os.remove(out)
    print(f"last group identical in both modes: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
