#!/usr/bin/env python
"""Benchmark detcal jump + ramp_fit against stcal 1.20 (two-point difference + OLS_C).

Builds one simulated dark ramp (default 1 integration x 10 groups x 2048 x 2048: bias-subtracted,
Gaussian read noise of 10 DN CDS, Poisson dark current, a few thousand cosmic-ray steps; seeded),
writes it to a scratch directory (``.npy`` arrays for stcal; a RampModel-layout FITS ramp with
GAIN and READNOISE reference files for detcal), then runs each implementation in fresh Python
subprocesses so that the peak memory of one does not hide the other's:

* stcal: ``detect_jumps_data`` then ``ramp_fit_data`` on the arrays loaded in memory (no file
  I/O timed: the comparison favours stcal);
* detcal: the two per-step jobs the workflow runs, each in its own process, file to file:
  ``runner.run_step_file('jump', ...)`` (ramp file -> jump product) then
  ``runner.run_ramp_fit_file(...)`` (jump product -> rate and rateints files), timed with their
  reading and writing; peak = the larger of the two jobs' peaks.

Prints the wall times of both steps, the time ratio, both peak memories and the agreement of
the results (GROUPDQ of the written jump product against stcal's, slopes of the written rate
file against stcal's).

    .venv/bin/python benchmarks/bench_jump_rampfit.py                 # full frame (~1 min)
    .venv/bin/python benchmarks/bench_jump_rampfit.py --size 512      # quick check
    .venv/bin/python benchmarks/bench_jump_rampfit.py --shapes 1x10x2048,2x40x2048,1x100x2048

``--shapes`` prints one table row per shape as soon as it is measured: wall times of both steps,
the speed-up in wall time and in CPU (process) time, peak memories and whether GROUPDQ and slopes
are identical. stcal must be importable (``pip install -e '.[test]'``). By default both run on one
core (stcal ``max_cores='1'``, detcal ``threads=1``; BLAS/OpenMP threads set to 1); ``--threads 2``
gives stcal ``max_cores='2'`` (worker processes; their CPU time is added, their memory is not in
the peak) and detcal ``threads=2`` (row blocks on two threads).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

TFRAME = 10.73676  # NIRCam full-frame frame time [s]


from procstats import cpu_s, parse_shapes, peak_mb, reset_peak  # noqa: E402 (this directory)


def simulate(path, nints, ngroups, ny, nx, ncr, seed):
    """Write data.npy, gain.npy, readnoise.npy, truth.json for a dark ramp into ``path``."""
    rng = np.random.default_rng(seed)
    gain = rng.normal(2.0, 0.05, (ny, nx)).astype(np.float32)
    rn_cds = rng.normal(10.0, 1.0, (ny, nx)).clip(5, 20).astype(np.float32)   # DN, CDS
    dark = np.full((ny, nx), 0.01, np.float32)                                # DN/s
    hot = rng.random((ny, nx)) < 1e-3
    dark[hot] = rng.uniform(1.0, 50.0, hot.sum())
    data = np.empty((nints, ngroups, ny, nx), np.float32)
    for i in range(nints):
        acc = np.zeros((ny, nx), np.float32)
        for k in range(ngroups):
            acc += rng.poisson(dark * gain * TFRAME).astype(np.float32) / gain
            noise = rng.standard_normal((ny, nx), dtype=np.float32) * (rn_cds / np.float32(np.sqrt(2)))
            data[i, k] = acc + noise
    # cosmic rays: a step from a random group on
    yy = rng.integers(0, ny, ncr)
    xx = rng.integers(0, nx, ncr)
    ii = rng.integers(0, nints, ncr)
    kk = rng.integers(1, ngroups, ncr)
    amp = rng.lognormal(np.log(150.0), 1.2, ncr).astype(np.float32)
    for i, k, y, x, a in zip(ii, kk, yy, xx, amp):
        data[i, k:, y, x] += a
    np.save(os.path.join(path, "data.npy"), data)
    np.save(os.path.join(path, "gain.npy"), gain)
    np.save(os.path.join(path, "readnoise.npy"), rn_cds)
    with open(os.path.join(path, "truth.json"), "w") as f:
        json.dump({"ncr": int(ncr), "tframe": TFRAME}, f)


def _load(path):
    data = np.load(os.path.join(path, "data.npy"))
    gain = np.load(os.path.join(path, "gain.npy"))
    rn = np.load(os.path.join(path, "readnoise.npy"))
    gdq = np.zeros(data.shape, np.uint8)
    pdq = np.zeros(data.shape[-2:], np.uint32)
    return data, gdq, pdq, gain, rn


def write_files(path):
    """The detcal job inputs in ``path``: ramp.fits (RampModel layout: SCI float32, PIXELDQ and
    GROUPDQ zeros, the keywords jump and ramp_fit read), gain.fits and readnoise.fits."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from astropy.io import fits

    from detcal import io
    data, gdq, pdq, gain, rn = _load(path)
    nints, ngroups, ny, nx = data.shape
    header = fits.Header()
    for key, val in dict(TELESCOP="JWST", INSTRUME="NIRCAM", DETECTOR="NRCA1", EXP_TYPE="NRC_DARK",
                         READPATT="RAPID", NINTS=nints, NGROUPS=ngroups, NFRAMES=1, GROUPGAP=0,
                         TFRAME=TFRAME, TGROUP=TFRAME, SUBARRAY="FULL", SUBSTRT1=1, SUBSTRT2=1,
                         SUBSIZE1=nx, SUBSIZE2=ny, FASTAXIS=1, SLOWAXIS=2, NOUTPUTS=4,
                         EXPSTART=60000.0, ZEROFRAM=False).items():
        header[key] = val
    io.write_ramp(io.Ramp(data, pdq, gdq, header, "ramp.fits"), os.path.join(path, "ramp.fits"))
    meta = {k: header[k] for k in ("INSTRUME", "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2",
                                   "SUBSIZE1", "SUBSIZE2")}
    for reftype, arr in (("GAIN", gain), ("READNOISE", rn)):
        io.write_reference(os.path.join(path, f"{reftype.lower()}.fits"), reftype, {"SCI": arr},
                           io.reference_header(reftype, meta, f"benchmark {reftype.lower()}"))


def child_detcal(path, threads=1, job="jump"):
    """One of detcal's jobs on the files in ``path``, as the workflow runs it (file in, file
    out): the per-step ``jump`` (ramp.fits -> jump.fits) or ``ramp_fit`` (jump.fits -> rate.fits,
    rateints.fits), or ``fused`` (the fused chain's job with only jump and ramp_fit switched on:
    ramp.fits read whole, jump and ramp_fit in memory, fused_rate.fits and fused_rateints.fits
    written, no jump product); returns its time (reading and writing included), CPU time and
    peak."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from detcal import runner
    refs = {"gain": os.path.join(path, "gain.fits"), "readnoise": os.path.join(path, "readnoise.fits")}
    base = peak_mb()
    t0, c0 = time.perf_counter(), cpu_s()
    if job == "fused":                     # one job: the fused chain with only jump and ramp_fit on
        from detcal import pipeline
        enabled = {step: step in ("jump", "ramp_fit") for step in pipeline.chain("NIR", {})}
        runner.run_chain_file(os.path.join(path, "ramp.fits"), "NIR", enabled,
                              {"jump": refs, "ramp_fit": refs},
                              {"rate": os.path.join(path, "fused_rate.fits"),
                               "rateints": os.path.join(path, "fused_rateints.fits")},
                              params={"jump": {"threads": threads}, "ramp_fit": {"threads": threads}})
        extra = {}
    elif job == "jump":
        out = runner.run_step_file("jump", os.path.join(path, "ramp.fits"), refs,
                                   os.path.join(path, "jump.fits"), {"threads": threads})
        extra = {"n_primary": -1}
        del out
    else:
        runner.run_ramp_fit_file(os.path.join(path, "jump.fits"), refs, os.path.join(path, "rate.fits"),
                                 os.path.join(path, "rateints.fits"), {"threads": threads})
        extra = {}
    t1, c1 = time.perf_counter(), cpu_s()
    return {"s": t1 - t0, "cpu_s": c1 - c0, "base_mb": base, "peak_mb": peak_mb(), **extra}


def run_detcal(path, threads=1):
    """detcal's two per-step jobs, each in a fresh subprocess, then the fused job; the written
    products saved for comparison as detcal_gdq.npy (GROUPDQ of jump.fits), detcal_slope.npy
    (SCI of rate.fits) and fused_slope.npy (SCI of fused_rate.fits)."""
    from astropy.io import fits
    jump = run_child("detcal_jump", path, threads)
    fit = run_child("detcal_ramp_fit", path, threads)
    with fits.open(os.path.join(path, "jump.fits")) as hdul:
        gdq = np.asarray(hdul["GROUPDQ"].data)
        primary = int(round(hdul[0].header["PRIMECRS"] * TFRAME * (gdq.shape[0] * gdq.shape[1] - gdq.shape[0])
                            * gdq.shape[2] * gdq.shape[3] / 1000.0))
        np.save(os.path.join(path, "detcal_gdq.npy"), gdq)
    with fits.open(os.path.join(path, "rate.fits")) as hdul:
        np.save(os.path.join(path, "detcal_slope.npy"), np.asarray(hdul["SCI"].data, np.float32))
    fused = run_child("detcal_fused", path, threads)
    with fits.open(os.path.join(path, "fused_rate.fits")) as hdul:
        np.save(os.path.join(path, "fused_slope.npy"), np.asarray(hdul["SCI"].data, np.float32))
    return {"jump_s": jump["s"], "ramp_fit_s": fit["s"], "cpu_s": jump["cpu_s"] + fit["cpu_s"],
            "base_mb": max(jump["base_mb"], fit["base_mb"]), "peak_mb": max(jump["peak_mb"], fit["peak_mb"]),
            "jump_peak_mb": jump["peak_mb"], "ramp_fit_peak_mb": fit["peak_mb"], "n_primary": primary,
            "fused_s": fused["s"], "fused_cpu_s": fused["cpu_s"], "fused_peak_mb": fused["peak_mb"]}


def child_stcal(path, threads=1):
    """Run stcal's jump + ramp_fit (OLS_C) on the arrays in ``path``; returns times, peaks, counts."""
    import logging
    logging.disable(logging.INFO)
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    from stcal.ramp_fitting.ramp_fit_class import RampData
    from stdatamodels.jwst.datamodels import dqflags
    pix = dqflags.pixel
    data, gdq, pdq, gain, rn = _load(path)
    base = peak_mb()
    t0, c0 = time.perf_counter(), cpu_s()
    jd = JumpData(gain2d=gain, rnoise2d=rn, dqflags=pix)
    jd.init_arrays_from_arrays(data, gdq, pdq)
    jd.nframes = 1
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2
    jd.max_cores = str(threads)
    gdq, pdq, n_primary, _ = detect_jumps_data(jd)
    t1 = time.perf_counter()
    ny, nx = pdq.shape
    rd = RampData()
    rd.set_arrays(data, gdq, pdq, np.zeros((ny, nx), np.float32))
    rd.set_meta(name="NIRCAM", frame_time=TFRAME, group_time=TFRAME, groupgap=0, nframes=1,
                drop_frames1=None)
    rd.algorithm = "OLS_C"
    rd.set_dqflags(pix)
    rd.suppress_one_group_ramps = True
    rd.start_row, rd.num_rows = 0, ny
    image_info, _, _ = ramp_fit_data(rd, False, rn.copy(), gain, "OLS_C", "optimal", str(threads))
    t2, c2 = time.perf_counter(), cpu_s()
    np.save(os.path.join(path, "stcal_gdq.npy"), gdq)
    np.save(os.path.join(path, "stcal_slope.npy"), image_info["slope"])
    return {"jump_s": t1 - t0, "ramp_fit_s": t2 - t1, "cpu_s": c2 - c0, "base_mb": base,
            "peak_mb": peak_mb(), "n_primary": int(n_primary)}


def run_child(which, path, threads=1):
    """Run :func:`child_stcal` or one :func:`child_detcal` job (``detcal_jump``,
    ``detcal_ramp_fit``) in a fresh subprocess; returns its dict."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", which, path,
                          str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_shape(nints, ngroups, size, ncr, seed, workdir, repeat, threads=1):
    """Simulate one ramp, run both implementations (stcal once, detcal ``repeat`` times, best
    kept; ``threads``: stcal max_cores and detcal threads), compare the results; returns a dict
    of the row's numbers."""
    with tempfile.TemporaryDirectory(dir=workdir) as path:
        simulate(path, nints, ngroups, size, size, ncr, seed)
        write_files(path)
        load = os.getloadavg()[0]
        res = {"stcal": run_child("stcal", path, threads)}
        runs = [run_detcal(path, threads) for _ in range(repeat)]
        res["detcal"] = min(runs, key=lambda r: r["jump_s"] + r["ramp_fit_s"])
        g_d = np.load(os.path.join(path, "detcal_gdq.npy"))
        g_s = np.load(os.path.join(path, "stcal_gdq.npy"))
        s_d = np.load(os.path.join(path, "detcal_slope.npy"))
        s_s = np.load(os.path.join(path, "stcal_slope.npy"))
        s_f = np.load(os.path.join(path, "fused_slope.npy"))
    same_slope = np.array_equal(s_d, s_s, equal_nan=True) and np.array_equal(s_f, s_s, equal_nan=True)
    both = np.isfinite(s_d) & np.isfinite(s_s)
    rel = np.abs(s_d[both] - s_s[both]) / np.maximum(np.abs(s_s[both]), 1e-6)
    return {"shape": (nints, ngroups, size), "threads": threads, "res": res,
            "load": (load + os.getloadavg()[0]) / 2,
            "ramp_mb": nints * ngroups * size * size * 4 / 2**20,
            "gdq_differ": int(np.count_nonzero(g_d != g_s)), "same_slope": same_slope,
            "nan_mismatch": int(np.count_nonzero(np.isnan(s_d) != np.isnan(s_s))),
            "max_rel": float(rel.max()) if rel.size else 0.0}


ROW_HEADER = (f"{'nints x ngroups x ny x nx':>26s} {'cores':>5s} {'ramp [MB]':>9s} {'load':>5s} "
              f"{'stcal jump/fit/total [s]':>25s} {'stcal peak [MB]':>15s} | "
              f"{'per-step jump/fit/total [s]':>27s} {'speed-up wall/CPU':>17s} "
              f"{'peak jump/fit [MB]':>18s} {'peak/ramp':>9s} | {'fused [s]':>9s} {'speed-up wall/CPU':>17s} "
              f"{'peak [MB]':>9s} {'peak/ramp':>9s} | {'identical':>9s}")


def format_row(r):
    """One table row (see :data:`ROW_HEADER`) from a :func:`run_shape` result."""
    n, g, size = r["shape"]
    st, dc = r["res"]["stcal"], r["res"]["detcal"]
    tot = {w: r["res"][w]["jump_s"] + r["res"][w]["ramp_fit_s"] for w in ("stcal", "detcal")}
    same = "yes" if (r["gdq_differ"] == 0 and r["same_slope"]) else (
        f"no: {r['gdq_differ']} GROUPDQ, {r['nan_mismatch']} NaN, max rel {r['max_rel']:.1e}")
    return (f"{f'{n} x {g} x {size} x {size}':>26s} {r['threads']:5d} {r['ramp_mb']:9.0f} {r['load']:5.1f} "
            f"{st['jump_s']:7.2f} {st['ramp_fit_s']:7.2f} {tot['stcal']:8.2f}  {st['peak_mb']:15.0f} | "
            f"{dc['jump_s']:8.2f} {dc['ramp_fit_s']:8.2f} {tot['detcal']:8.2f}  "
            f"{tot['stcal'] / tot['detcal']:7.1f}x {st['cpu_s'] / dc['cpu_s']:7.1f}x  "
            f"{dc['jump_peak_mb']:8.0f} {dc['ramp_fit_peak_mb']:8.0f}  {dc['peak_mb'] / r['ramp_mb']:9.2f} | "
            f"{dc['fused_s']:9.2f} {tot['stcal'] / dc['fused_s']:7.1f}x {st['cpu_s'] / dc['fused_cpu_s']:7.1f}x  "
            f"{dc['fused_peak_mb']:9.0f} {dc['fused_peak_mb'] / r['ramp_mb']:9.2f} | {same:>9s}")


def main(argv=None):
    """Command line: one default shape, a table of ``--shapes``, or a ``--child`` run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="frame size ny = nx (default 2048)")
    ap.add_argument("--ngroups", type=int, default=10)
    ap.add_argument("--nints", type=int, default=1)
    ap.add_argument("--shapes", type=parse_shapes, default=None,
                    help="comma-separated NINTSxNGROUPSxSIZE list, e.g. 1x10x2048,2x40x2048 "
                         "(replaces --nints/--ngroups/--size); one table row per shape, printed "
                         "as soon as it is measured")
    ap.add_argument("--repeat", type=int, default=1,
                    help="detcal runs per shape (the fastest is kept; stcal runs once)")
    ap.add_argument("--ncr", type=int, default=None, help="cosmic rays (default 3000 per 2048^2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="cores for both: stcal max_cores, detcal threads (default 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--child", nargs=3, metavar=("WHICH", "PATH", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        reset_peak()
        which, path, threads = args.child
        if which.startswith("detcal_"):
            result = child_detcal(path, int(threads), which[len("detcal_"):])
        else:
            result = child_stcal(path, int(threads))
        print(json.dumps(result))
        return 0

    if args.shapes:
        print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}; "
              f"speed-up = stcal time / detcal time (wall: jump + ramp_fit; CPU: process and "
              f"child-process time); "
              f"peak = VmHWM of the run's own process, inputs included", flush=True)
        print(ROW_HEADER, flush=True)
        for nints, ngroups, size in args.shapes:
            ncr = args.ncr if args.ncr is not None else int(3000 * size ** 2 / 2048 ** 2)
            r = run_shape(nints, ngroups, size, ncr, args.seed, args.workdir, args.repeat,
                          args.threads)
            print(format_row(r), flush=True)
        return 0

    ncr = args.ncr if args.ncr is not None else int(3000 * args.size ** 2 / 2048 ** 2)
    with tempfile.TemporaryDirectory(dir=args.workdir) as path:
        t = time.perf_counter()
        simulate(path, args.nints, args.ngroups, args.size, args.size, ncr, args.seed)
        write_files(path)
        print(f"simulated {args.nints} x {args.ngroups} x {args.size} x {args.size} dark ramp with "
              f"{ncr} cosmic rays in {time.perf_counter() - t:.1f} s")
        res = {"stcal": run_child("stcal", path, args.threads), "detcal": run_detcal(path, args.threads)}
        g_d = np.load(os.path.join(path, "detcal_gdq.npy"))
        g_s = np.load(os.path.join(path, "stcal_gdq.npy"))
        s_d = np.load(os.path.join(path, "detcal_slope.npy"))
        s_s = np.load(os.path.join(path, "stcal_slope.npy"))

    same_gdq = float(np.mean(g_d == g_s))
    nan_mismatch = int(np.count_nonzero(np.isnan(s_d) != np.isnan(s_s)))
    both = np.isfinite(s_d) & np.isfinite(s_s)
    rel = np.abs(s_d[both] - s_s[both]) / np.maximum(np.abs(s_s[both]), 1e-6)
    print(f"{'':8s} {'jump [s]':>9s} {'ramp_fit [s]':>13s} {'total [s]':>10s} {'start [MB]':>12s} "
          f"{'peak [MB]':>10s} {'primary CRs':>12s}")
    for which in ("stcal", "detcal"):
        r = res[which]
        print(f"{which:8s} {r['jump_s']:9.2f} {r['ramp_fit_s']:13.2f} "
              f"{r['jump_s'] + r['ramp_fit_s']:10.2f} {r['base_mb']:12.0f} {r['peak_mb']:10.0f} "
              f"{r['n_primary']:12d}")
    tot = {w: res[w]["jump_s"] + res[w]["ramp_fit_s"] for w in res}
    print(f"time ratio detcal/stcal: jump {res['detcal']['jump_s'] / res['stcal']['jump_s']:.3f}, "
          f"ramp_fit {res['detcal']['ramp_fit_s'] / res['stcal']['ramp_fit_s']:.3f}, "
          f"total {tot['detcal'] / tot['stcal']:.3f} (stcal is {tot['stcal'] / tot['detcal']:.1f}x slower)")
    print(f"peak memory ratio detcal/stcal: {res['detcal']['peak_mb'] / res['stcal']['peak_mb']:.3f}")
    print(f"agreement: GROUPDQ equal in {same_gdq:.8f} of pixel-groups "
          f"({int(np.count_nonzero(g_d != g_s))} differ); slopes: {nan_mismatch} NaN mismatches, "
          f"max relative difference {rel.max() if rel.size else 0.0:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
