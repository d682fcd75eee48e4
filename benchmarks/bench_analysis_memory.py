#!/usr/bin/env python
"""Peak memory of the jump-statistics, dark-current and stability jobs against the integrations of a group.

Writes one configuration group of ``--exposures`` NIRCam short-wave exposures of ``--size``^2
pixels (4 outputs): raw ramps from the simulator (:func:`detcal.simulate.write_detector_set`,
``--ngroups`` groups; the jobs read them for dead outputs, the bias and the CDS noise), beside each
a rateints product with random slopes (outliers, NaN, DQ flags; the analyses' cost does not
depend on the values) and a jump ramp (the raw ramp with JUMP_DET on a random 1e-4 of its
cells). Then runs, each in a fresh subprocess as the workflow's jobs do, the functions the
workflow's ``group_analysis.py`` calls with every output of their rules (tables, JSON, FITS,
figures): :func:`detcal.analysis.jumps.jump_statistics_file`,
:func:`detcal.analysis.darkcurrent.dark_current_file` and
:func:`detcal.analysis.stability.stability_file`. Prints, per job as it is measured, the wall
and CPU time and the peak resident memory above the interpreter with detcal imported
(``VmHWM``, reset after the imports), beside the size of the group's rateints SCI + DQ (what
the stacked analyses held: n x ny x nx x 8 bytes).

``--before REV`` runs the same jobs also with the ``detcal`` package of git revision ``REV``
(``git archive REV detcal``), in the same run and on the same files, interleaved.

    .venv/bin/python benchmarks/bench_analysis_memory.py --size 512 --nints 8,32,128 --before 5fe12c4
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from procstats import cpu_s, peak_mb, reset_peak  # noqa: E402 (this directory)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_code(code):
    """Import ``detcal`` from the directory ``code`` (an extracted older revision) or the repo."""
    if code:
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, code)
    else:
        sys.path.insert(0, REPO)


def child(job, files, out, code, memory_mb):
    """One analysis job; returns its wall and CPU time and peak memory above the start [MB]."""
    use_code(code)
    from detcal.analysis import darkcurrent, jumps, stability

    extra = {"memory_mb": memory_mb} if memory_mb else {}
    o = lambda name: os.path.join(out, name)  # noqa: E731
    reset_peak()                                        # after the imports
    base, c0, t0 = peak_mb(), cpu_s(), time.perf_counter()
    if job == "jump_statistics":
        jumps.jump_statistics_file(files["jump"], o("j.tsv"), o("j.json"), events_tsv=o("je.tsv"),
                                   map_fits=o("jm.fits"), map_png=o("jm.png"), examples_tsv=o("jx.tsv"),
                                   ramp_png=o("jr.png"), grid_png=o("jg.png"), significance_png=o("js.png"),
                                   raw_paths=files["uncal"], gain_path=files["gain"],
                                   readnoise_path=files["readnoise"], **extra)
    elif job == "dark_current_analysis":
        darkcurrent.dark_current_file(files["rateints"], files["gain"], o("dc.tsv"), o("dc.json"),
                                      histogram_tsv=o("hist.tsv"), histogram_png=o("hist.png"),
                                      image_fits=o("slopes.fits"), image_png=o("slopes.png"),
                                      ramp_paths=files["uncal"], raw_paths=files["uncal"], **extra)
    else:
        stability.stability_file(files["rateints"], o("st.tsv"), o("st.json"), trends_tsv=o("tr.tsv"),
                                 ramp_paths=files["uncal"], bias_paths=files["uncal"], gain_path=files["gain"],
                                 baseline_tsv=o("b.tsv"), baseline_pixels_tsv=o("bp.tsv"), trend_png=o("tr.png"),
                                 baseline_png=o("b.png"), **extra)
    return {"seconds": time.perf_counter() - t0, "cpu": cpu_s() - c0, "peak_mb": peak_mb() - base}


def write_group(work, size, nints, nexp, ngroups, seed=3):
    """Raw ramps (simulated) and rateints (random slopes) of one group; returns the paths."""
    sys.path.insert(0, REPO)
    import numpy as np
    from astropy.io import fits

    from detcal import dqflags, io, simulate

    spec = {"name": "NRCA1", "preset": "nircam_sw", "size": size, "ngroups": ngroups, "nints": nints // nexp,
            "nexposures": nexp}
    files = simulate.write_detector_set(spec, work, seed)
    rng = np.random.default_rng(seed)
    rateints, jump = [], []
    for name, uncal in zip(files["exposures"], files["uncal"]):
        ramp = io.read_ramp(uncal)
        hit = rng.random(ramp.groupdq.shape) < 1e-4
        hit[:, 0] = False
        ramp.groupdq[hit] |= np.uint8(dqflags.JUMP_DET)
        jump.append(os.path.join(work, f"{name}_jump.fits"))
        io.write_ramp(ramp, jump[-1], step="jump")
        del ramp, hit
        shape = (nints // nexp, size, size)
        sci = rng.normal(0.03, 0.01, shape).astype(np.float32)
        sci[rng.random(shape) < 0.001] = 1.0
        dq = np.where(rng.random(shape) < 0.01, np.uint32(dqflags.JUMP_DET), np.uint32(0))
        dq[:, :8, :8] |= np.uint32(dqflags.DO_NOT_USE)
        prod = {"sci": sci, "err": np.full(shape, 0.01, np.float32), "dq": dq,
                "var_poisson": np.zeros(shape, np.float32), "var_rnoise": np.zeros(shape, np.float32)}
        path = os.path.join(work, f"{name}_rateints.fits")
        io.write_rate(path, prod, fits.getheader(uncal))
        rateints.append(path)
    return {"rateints": rateints, "uncal": files["uncal"], "jump": jump, "gain": files["references"]["gain"],
            "readnoise": files["references"]["readnoise"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--nints", default="8,32,128", help="integrations of the group (comma-separated)")
    ap.add_argument("--exposures", type=int, default=4, help="exposures of the group (divides every --nints)")
    ap.add_argument("--ngroups", type=int, default=4)
    ap.add_argument("--jobs", default="jump_statistics,dark_current_analysis,stability")
    ap.add_argument("--memory-mb", type=float, default=0, help="memory_mb of the analyses (0: their default)")
    ap.add_argument("--before", default=None, help="git revision to compare with (its detcal package)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        job, files, out, code, memory_mb = a.child
        print(json.dumps(child(job, json.loads(files), out, code, float(memory_mb))))
        return 0
    print(f"NIR {a.size} x {a.size}, 4 outputs, {a.exposures} exposures, raw ramps of {a.ngroups} groups "
          f"(load {open('/proc/loadavg').read().split()[0]})", flush=True)
    print(f"{'job':22s} {'code':>8s} {'nints':>6s} {'SCI+DQ [MB]':>12s} {'time [s]':>9s} {'CPU [s]':>8s} "
          f"{'peak - start [MB]':>18s}", flush=True)
    with tempfile.TemporaryDirectory(dir=a.workdir) as work:
        codes = [("after", "")]
        if a.before:
            old = os.path.join(work, "before")
            os.makedirs(old)
            archive = subprocess.run(["git", "-C", REPO, "archive", a.before, "detcal"], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            codes.insert(0, ("before", old))
        for n in (int(x) for x in a.nints.split(",")):
            gdir = os.path.join(work, f"group{n}")
            files = write_group(gdir, a.size, n, a.exposures, a.ngroups)
            stacked = n * a.size * a.size * 8 / 1e6
            for job in a.jobs.split(","):
                for label, code in codes:
                    out = os.path.join(gdir, f"{job}_{label}")
                    os.makedirs(out)
                    mem = a.memory_mb if label == "after" else 0
                    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", job,
                                           json.dumps(files), out, code, str(mem)],
                                          capture_output=True, text=True, check=True)
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    print(f"{job:22s} {label:>8s} {n:6d} {stacked:12.0f} {r['seconds']:9.2f} {r['cpu']:8.2f} "
                          f"{r['peak_mb']:18.0f}", flush=True)
            subprocess.run(["rm", "-rf", gdir], check=True)
    print(f"load {open('/proc/loadavg').read().split()[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
