"""Peak memory and time of detcal.reffiles.make_dark on full-frame darks.

Writes (once, to a scratch directory) ``--nfiles`` simulated 2048 x 2048 x ``--ngroups`` RAPID
dark ramps of a NIRCam-SW-like detector with the flight frame time, processed by the detcal NIR
chain dq_init -> saturation -> superbias -> refpix -> linearity -> jump (no dark subtraction,
the DARK's input), then runs ``make_dark`` on all of them in a fresh subprocess and reports its
peak resident memory (``ru_maxrss``) against the ``memory_mb`` budget, and the wall time.

    python benchmarks/bench_dark_memory.py                        # 20 files x 10 groups, 4000 MB
    python benchmarks/bench_dark_memory.py --nfiles 4 --size 512  # quick look

Existing scratch files with the right shape are reused (delete the directory to regenerate).
Exit status 1 when the peak exceeds the budget.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from astropy.io import fits

CHAIN = ("dq_init", "saturation", "superbias", "refpix", "linearity", "jump")
NEEDS = {"dq_init": ("mask",), "saturation": ("saturation", "superbias"), "superbias": ("superbias",),
         "refpix": (), "linearity": ("linearity",), "jump": ("gain", "readnoise")}


def write_inputs(directory, nfiles, size, ngroups, seed=2024):
    """Simulate and process the dark ramps (skipping files that already exist); return paths."""
    from detcal import io, keywords, steps
    from detcal import simulate as sim

    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f"bench_dark_{size}_{ngroups}g_e{e:03d}_jump.fits")
             for e in range(nfiles)]
    todo = [e for e, p in enumerate(paths) if not _complete(p, size, ngroups)]
    if not todo:
        return paths
    det = sim.make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": size, "ngroups": ngroups,
                             "nints": 1, "overrides": {"tframe": 10.73677}}, seed)
    refs = {}
    for key, arrays in sim.reference_arrays(det, ngroups).items():
        reftype = io.REFTYPES[key]
        refs[key] = io.Reference(reftype, arrays[io.MAIN.get(reftype, "SCI")], dq=arrays.get("DQ"),
                                 err=arrays.get("ERR"), header=fits.Header(), path=key)
    for e in todo:
        t0 = time.perf_counter()
        data, header, _ = sim.simulate_exposure(det, index=e)
        ramp = io.Ramp(data.astype(np.float32), np.zeros(data.shape[2:], np.uint32),
                       np.zeros(data.shape, np.uint8), header, f"exposure {e}")
        del data
        for step in CHAIN:
            ramp = steps.REGISTRY[step].run(ramp, {k: refs[k] for k in NEEDS[step]})
            ramp.header[keywords.CAL_STEP[step]] = "COMPLETE"
        io.write_ramp(ramp, paths[e], step="jump")
        print(f"  wrote {os.path.basename(paths[e])} in {time.perf_counter() - t0:.1f} s", flush=True)
        del ramp
    return paths


def _complete(path, size, ngroups):
    try:
        with fits.open(path) as hdul:
            return hdul["SCI"].shape == (1, ngroups, size, size) and "GROUPDQ" in hdul
    except Exception:
        return False


_CHILD = r"""
import json, resource, sys, time
from detcal.reffiles import make_dark
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
summary = make_dark(args["paths"], args["out"], memory_mb=args["memory_mb"])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"peak_mb": peak, "wall_s": wall, "plan": summary["plan"],
                  "rate": summary["rate_DN_per_s"][1]}))
"""


def measure(paths, out, memory_mb):
    """Run make_dark in a fresh interpreter; return its JSON report (peak MB, time, plan)."""
    arg = json.dumps({"paths": paths, "out": out, "memory_mb": memory_mb})
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"make_dark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nfiles", type=int, default=20)
    ap.add_argument("--ngroups", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--memory-mb", type=float, default=4000.0)
    ap.add_argument("--scratch", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "detcal_bench_dark"))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    print(f"inputs: {args.nfiles} x (1 x {args.ngroups} x {args.size} x {args.size}) jump ramps "
          f"in {args.scratch}")
    paths = write_inputs(args.scratch, args.nfiles, args.size, args.ngroups)
    size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print(f"inputs ready in {time.perf_counter() - t0:.0f} s ({size_mb:.0f} MB on disk; SCI alone "
          f"{args.nfiles * args.ngroups * args.size ** 2 * 4 / 1e6:.0f} MB as float32)")
    report = measure(paths, os.path.join(args.scratch, "dark.fits"), args.memory_mb)
    plan = report["plan"]
    print(f"make_dark: peak RSS {report['peak_mb']:.0f} MB (budget {args.memory_mb:.0f} MB, "
          f"{report['peak_mb'] / args.memory_mb:.0%}), wall time {report['wall_s']:.1f} s; chunks of "
          f"{plan['groups']} groups x {plan['rows']} rows (planned {plan['fixed_mb']:.0f} MB fixed + "
          f"{plan['chunk_mb']:.0f} MB per chunk)")
    print(f"mean dark rate of the active pixels: {report['rate']['active']:.5f} DN/s")
    if report["peak_mb"] > args.memory_mb:
        print("FAIL: peak memory above the budget")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
