#!/usr/bin/env python
"""Peak memory and time of one dark_current job (detcal.runner.run_step_file) on one ramp file.

Writes (to ``--workdir``) a ramp file of NINTS x NGROUPS x SIZE x SIZE float32 with its GROUPDQ
(RampModel layout) and a DARK reference of the same readout with SCI, ERR and DQ, then runs the
workflow's dark_current job on them -- read the ramp, read the dark, subtract, write the product --
in a fresh subprocess per mode and prints the peak resident memory (``VmHWM``, reset when the child
starts) and the wall time:

* ``copy``: the dark read whole (SCI, ERR, DQ), the whole matched dark and a corrected copy of the
  ramp (the step before issue 15; still the path of ``dark_output``, whose product is the whole
  matched dark);
* ``in place``: the dark read whole, the ramp corrected in place, the matched dark built in
  ``--memory-mb`` chunks of groups (:func:`detcal.steps.dark_current.correct_dark_in_place`);
* ``by chunks``: the default since issue 15: as ``in place``, and the dark read lazily
  (``io.read_reference(lazy=True)``, :data:`detcal.steps.dark_current.LAZY_REFERENCES`): only the
  SCI groups of the chunk being built, never ERR.

    .venv/bin/python benchmarks/bench_dark_current_step.py                  # 1 x 50 x 1024^2
    .venv/bin/python benchmarks/bench_dark_current_step.py --size 2048      # full frame (~3.5 GB disk)

The rows are printed as they are measured; every mode must write the same product (SCI, PIXELDQ,
GROUPDQ compared). The files' headers come from the tests' helpers (``tests/conftest.py``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("copy", "in place", "by chunks")


from procstats import peak_mb, reset_peak  # noqa: E402 (this directory)


def write_inputs(workdir, nints, ngroups, size):
    """Write the ramp and the DARK (same readout: NFRAMES=1, GROUPGAP=0); return their paths."""
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    from detcal import io

    from conftest import make_header, make_reference_header

    rng = np.random.default_rng(5)
    shape = (nints, ngroups, size, size)
    header = make_header(*shape)
    data = np.empty(shape, np.float32)
    for i in range(nints):
        for k in range(ngroups):
            data[i, k] = rng.normal(1000.0 + 10 * k, 10.0, (size, size))
    ramp = io.Ramp(data, np.zeros((size, size), np.uint32), np.zeros(shape, np.uint8), header)
    ramp_path = os.path.join(workdir, "bench_dark_ramp.fits")
    io.write_ramp(ramp, ramp_path)
    del ramp, data
    dark = np.empty(shape[1:], np.float32)
    for k in range(ngroups):
        dark[k] = rng.normal(0.1 * k, 1.0, (size, size))
    dark_path = os.path.join(workdir, "bench_dark_dark.fits")
    io.write_reference(dark_path, "DARK", {"SCI": dark, "ERR": np.ones_like(dark),
                                           "DQ": np.zeros((size, size), np.uint32)},
                       make_reference_header("DARK", header))
    return ramp_path, dark_path


def child(mode, ramp_path, dark_path, out, memory_mb):
    """One dark_current job as the workflow runs it; returns its time and peak memory."""
    sys.path.insert(0, ROOT)
    from detcal import runner

    reset_peak()                          # after the imports: the job's data alone
    base = peak_mb()
    params = {"memory_mb": memory_mb}
    if mode == "copy":
        params["dark_output"] = True
    if mode != "by chunks":
        runner.read_lazily = lambda step, key: False          # the dark read whole, ERR included
    t0 = time.perf_counter()
    runner.run_step_file("dark_current", ramp_path, {"dark": dark_path}, out, params=params)
    return {"seconds": time.perf_counter() - t0, "base_mb": base, "peak_mb": peak_mb()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--ngroups", type=int, default=50)
    ap.add_argument("--nints", type=int, default=1)
    ap.add_argument("--memory-mb", type=float, default=64.0)
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child, a.memory_mb)))
        return 0
    ramp_mb = a.nints * a.ngroups * a.size * a.size * 4 / 2**20
    print(f"ramp {a.nints} x {a.ngroups} x {a.size} x {a.size} float32 = {ramp_mb:.0f} MB (+ GROUPDQ "
          f"{ramp_mb / 4:.0f} MB); the dark's SCI and ERR are {ramp_mb / a.nints:.0f} MB each; "
          f"matched-dark chunks of {a.memory_mb:g} MB", flush=True)
    ramp_path, dark_path = write_inputs(a.workdir, a.nints, a.ngroups, a.size)
    print(f"{'mode':10s} {'time [s]':>9s} {'start [MB]':>11s} {'peak [MB]':>10s} "
          f"{'peak - start [MB]':>18s} {'peak / ramp+GROUPDQ':>20s}", flush=True)
    outs = []
    try:
        for mode in MODES:
            out = os.path.join(a.workdir, f"bench_dark_out_{os.getpid()}_{len(outs)}.fits")
            outs.append(out)
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-mb",
                                   str(a.memory_mb), "--child", mode, ramp_path, dark_path, out],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            above = r["peak_mb"] - r["base_mb"]
            print(f"{mode:10s} {r['seconds']:9.2f} {r['base_mb']:11.0f} {r['peak_mb']:10.0f} "
                  f"{above:18.0f} {above / (1.25 * ramp_mb):20.2f}", flush=True)
        from astropy.io import fits
        same = True
        for ext in ("SCI", "PIXELDQ", "GROUPDQ"):
            first = fits.getdata(outs[0], ext)
            same &= all(np.array_equal(first, fits.getdata(out, ext)) for out in outs[1:])
    finally:
        for path in outs + [ramp_path, dark_path]:
            if os.path.exists(path):
                os.remove(path)
    print(f"products identical in every mode (SCI, PIXELDQ, GROUPDQ): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
