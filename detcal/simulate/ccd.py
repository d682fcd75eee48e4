"""Truth-known simulator of CCD calibration frames (bias, dark, flat, light), as a ground CCD
camera writes them.

A frame is ``rows x (columns + overscan)`` ADU (uint16, primary HDU, BZERO 32768), the image
area first and the overscan columns to its right; rows are the slow (readout) axis. Header:
IMAGETYP (BIAS / DARK / FLAT / LIGHT), EXPTIME [s], GAIN [e-/ADU], RDNOISE [e-], DETECTOR,
DATE-OBS. What goes into a frame of exposure time t (electrons e-, ADU = e- / gain):

* bias: a fixed 2-D structure (level ``bias_level`` + column pattern + a gentle gradient,
  ADU), the same in every frame, plus per frame a level change (``level_jitter`` ADU rms) and a
  drift along the readout axis (``row_drift`` ADU rms end to end); the overscan columns carry
  the level change and drift of their frame when ``overscan_useful`` (they track the bias) and
  an unrelated level otherwise;
* read noise: Gaussian, ``readnoise`` e- per read, in every pixel including the overscan;
* dark current (darks, flats, lights): rate map [e-/s] = lognormal normal pixels
  (``dark_median``, ``dark_sigma``, capped at ``dark_cap``) + an amplifier-glow corner
  (``glow_peak`` e-/s at pixel (0, 0), falling as exp(-r / ``glow_scale``)) + hot pixels
  (fraction ``hot_fraction``, log-uniform in ``hot_min``..``hot_max`` e-/s), times t, with
  Poisson noise;
* cosmic rays: Poisson number ``cr_rate`` per pixel per second x (t + ``readout_time``) x
  pixels, each 1-3 pixels of lognormal charge (median ``cr_median`` e-);
* flats: a uniform ``flat_level`` e- (any t); lights: ``sky_rate`` e-/s x t;
* ADC: rounding to integer ADU and clipping to 0..65535.

Truth file (``truth.fits``): primary header = parameters (GAIN, RN_E, RNEFF_E: the read noise a
bias-pair measurement sees, quantization included, BIASLVL, ...); extensions DARKRATE (e-/s,
image area), HOT (uint8, injected hot pixels), GLOW (e-/s), BIAS (ADU, fixed structure of the
whole frame), FRAMES (table: file, IMAGETYP, EXPTIME, level change, drift, CR count).

Every file is a pure function of (spec, seed).
"""

import math
import os

import numpy as np
from astropy.io import fits

#: Default parameters (units in the names' comments); a spec's ``overrides`` replaces them.
PARAMETERS = {
    "gain": 1.5,             # e-/ADU
    "readnoise": 8.0,        # e- per read
    "bias_level": 1000.0,    # ADU
    "bias_columns": 3.0,     # ADU rms of the fixed column pattern
    "bias_gradient": 5.0,    # ADU, fixed gradient end to end along rows and columns
    "level_jitter": 3.0,     # ADU rms frame-to-frame level change
    "row_drift": 2.0,        # ADU rms frame-to-frame drift along the readout axis (end to end)
    "overscan_useful": True,  # the overscan tracks the frame's level change and drift
    "dark_median": 0.02,     # e-/s, normal pixels
    "dark_sigma": 0.3,       # lognormal width of normal pixels
    "dark_cap": 0.1,         # e-/s, normal pixels are capped here
    "glow_peak": 0.3,        # e-/s at the glowing corner (row 0, column 0)
    "glow_scale": 12.0,      # pixels
    "hot_fraction": 0.003,   # of the image area
    "hot_min": 1.5,          # e-/s
    "hot_max": 30.0,         # e-/s
    "cr_rate": 4e-6,         # cosmic rays per pixel per second
    "cr_median": 1500.0,     # e-
    "readout_time": 2.0,     # s, exposure of the readout to cosmic rays
    "flat_level": 20000.0,   # e-
    "sky_rate": 20.0,        # e-/s
}

#: Spec keys and defaults (the ``ccd: demo:`` block of the configuration).
SPEC_DEFAULTS = {
    "seed": 20261207,
    "name": "CCD1",
    "rows": 128,
    "columns": 128,
    "overscan": 8,
    "nbias": 5,
    "darks": {7: 3, 70: 3, 300: 3},
    "flats": {},
    "lights": {},
    "overrides": {},
}

IMAGETYP = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT", "light": "LIGHT"}


def normalize_spec(spec):
    """Spec with defaults filled in; exposure-time dicts with float keys."""
    s = dict(SPEC_DEFAULTS, **(spec or {}))
    for kind in ("darks", "flats", "lights"):
        s[kind] = {float(t): int(n) for t, n in (s[kind] or {}).items()}
    s["params"] = dict(PARAMETERS, **(s.get("overrides") or {}))
    return s


def frame_plan(spec):
    """The frames of a spec, in acquisition order: list of (file name, kind, exptime [s])."""
    s = normalize_spec(spec)
    out = [(f"ccd_bias_{i + 1:02d}.fits", "bias", 0.0) for i in range(s["nbias"])]
    for kind in ("darks", "flats", "lights"):
        for t, n in sorted(s[kind].items()):
            out += [(f"ccd_{kind[:-1]}_{t:g}s_{i + 1:02d}.fits", kind[:-1], t) for i in range(n)]
    return out


def planned_files(spec, outdir):
    """Paths :func:`write_ccd_set` writes: {'raw': [paths], 'truth': path}."""
    return {"raw": [os.path.join(outdir, "raw", name) for name, _, _ in frame_plan(spec)],
            "truth": os.path.join(outdir, "truth.fits")}


def make_truth(spec, seed):
    """Fixed truth of a detector: dict of arrays (dark rate, hot map, glow, bias structure)."""
    s = normalize_spec(spec)
    p = s["params"]
    rng = np.random.default_rng([int(seed), 1])
    ny, nx, nos = s["rows"], s["columns"], s["overscan"]
    normal = np.minimum(p["dark_median"] * np.exp(p["dark_sigma"] * rng.standard_normal((ny, nx))),
                        p["dark_cap"])
    yy, xx = np.mgrid[0:ny, 0:nx]
    glow = p["glow_peak"] * np.exp(-np.hypot(yy, xx) / p["glow_scale"])
    hot = rng.random((ny, nx)) < p["hot_fraction"]
    hot_rate = np.exp(rng.uniform(math.log(p["hot_min"]), math.log(p["hot_max"]), (ny, nx)))
    rate = np.where(hot, hot_rate, normal + glow)
    ncol = nx + nos
    fy = np.linspace(-0.5, 0.5, ny)[:, None]
    fx = np.linspace(-0.5, 0.5, ncol)[None, :]
    bias = (p["bias_level"] + p["bias_gradient"] * (fy + fx)
            + p["bias_columns"] * rng.standard_normal((1, ncol)))
    bias[:, nx:] = p["bias_level"]  # the overscan has no image-area structure
    return {"dark_rate": rate, "hot": hot, "glow": glow, "bias": bias}


def simulate_frame(spec, truth, kind, exptime, rng):
    """One frame: (uint16 (rows, columns + overscan) [ADU], dict of per-frame truth)."""
    s = normalize_spec(spec)
    p = s["params"]
    ny, nx, nos = s["rows"], s["columns"], s["overscan"]
    g = p["gain"]
    electrons = np.zeros((ny, nx + nos))
    if kind != "bias":
        electrons[:, :nx] = rng.poisson(truth["dark_rate"] * exptime)
    if kind == "flat":
        electrons[:, :nx] += rng.poisson(p["flat_level"], (ny, nx))
    elif kind == "light":
        electrons[:, :nx] += rng.poisson(p["sky_rate"] * exptime, (ny, nx))
    ncr = rng.poisson(p["cr_rate"] * ny * nx * (exptime + p["readout_time"]))
    for _ in range(ncr):
        y, x = rng.integers(0, ny), rng.integers(0, nx)
        q = p["cr_median"] * math.exp(0.5 * rng.standard_normal())
        length = rng.integers(1, 4)
        for k in range(length):
            electrons[min(y + k, ny - 1), x] += q / length
    electrons += p["readnoise"] * rng.standard_normal(electrons.shape)
    offset = p["level_jitter"] * rng.standard_normal()
    drift = p["row_drift"] * rng.standard_normal()
    along = offset + drift * np.linspace(-0.5, 0.5, ny)[:, None]
    adu = electrons / g + truth["bias"]
    adu[:, :nx] += along
    if p["overscan_useful"]:
        adu[:, nx:] += along
    else:
        adu[:, nx:] += p["level_jitter"] * rng.standard_normal()
    data = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    return data, {"level_change_adu": offset, "drift_adu": drift, "n_cr": ncr}


def frame_header(spec, kind, exptime, index):
    """FITS header of raw frame number ``index`` (IMAGETYP of ``kind``, EXPTIME [s], GAIN, RDNOISE, DATE-OBS)."""
    s = normalize_spec(spec)
    p = s["params"]
    h = fits.Header()
    h["IMAGETYP"] = (IMAGETYP[kind], "frame type")
    h["EXPTIME"] = (float(exptime), "[s] exposure time")
    h["GAIN"] = (p["gain"], "[e-/ADU] conversion gain")
    h["RDNOISE"] = (p["readnoise"], "[e-] read noise")
    h["DETECTOR"] = s["name"]
    h["INSTRUME"] = ("DETCALCCD", "simulated CCD camera (detcal.simulate.ccd)")
    h["BUNIT"] = "adu"
    h["DATE-OBS"] = f"2026-12-07T{(index // 60) % 24:02d}:{index % 60:02d}:00"
    return h


def write_ccd_set(spec, outdir, seed):
    """Simulate every frame of ``spec`` into ``outdir``/raw and write ``outdir``/truth.fits.

    Returns :func:`planned_files`.
    """
    from astropy.table import Table  # at use: the workflow imports this module at every Snakemake start

    s = normalize_spec(spec)
    p = s["params"]
    truth = make_truth(s, seed)
    files = planned_files(s, outdir)
    os.makedirs(os.path.join(outdir, "raw"), exist_ok=True)
    rows = []
    for index, ((name, kind, t), path) in enumerate(zip(frame_plan(s), files["raw"])):
        rng = np.random.default_rng([int(seed), 2, index])
        data, info = simulate_frame(s, truth, kind, t, rng)
        fits.PrimaryHDU(data, frame_header(s, kind, t, index)).writeto(path, overwrite=True)
        rows.append({"file": name, "IMAGETYP": IMAGETYP[kind], "EXPTIME": t, **info})
    ph = fits.PrimaryHDU()
    for key, val in p.items():
        ph.header[f"HIERARCH {key.upper()}"] = val
    ph.header["GAIN"] = (p["gain"], "[e-/ADU]")
    ph.header["RN_E"] = (p["readnoise"], "[e-] analog single-read noise")
    ph.header["RNEFF_E"] = (effective_readnoise(p), "[e-] read noise incl. ADU quantization")
    ph.header["SEED"] = int(seed)
    ph.header["COLUMNS"] = (s["columns"], "image-area columns (overscan to their right)")
    hdus = [ph,
            fits.ImageHDU(truth["dark_rate"].astype(np.float32), name="DARKRATE"),
            fits.ImageHDU(truth["hot"].astype(np.uint8), name="HOT"),
            fits.ImageHDU(truth["glow"].astype(np.float32), name="GLOW"),
            fits.ImageHDU(truth["bias"].astype(np.float32), name="BIAS"),
            fits.BinTableHDU(Table(rows=[[r[k] for k in rows[0]] for r in rows], names=list(rows[0])),
                             name="FRAMES")]
    hdus[1].header["BUNIT"] = "electron/s"
    fits.HDUList(hdus).writeto(files["truth"], overwrite=True)
    return files


def effective_readnoise(params):
    """Read noise [e-] a measurement on integer ADU sees: sqrt(RN^2 + gain^2 / 12)."""
    return math.sqrt(params["readnoise"] ** 2 + params["gain"] ** 2 / 12.0)


def read_truth(path):
    """dict: header (parameters), dark_rate, hot (bool), glow, bias, frames (Table)."""
    from astropy.table import Table

    with fits.open(path) as hdul:
        return {"header": hdul[0].header.copy(), "dark_rate": hdul["DARKRATE"].data.astype(np.float64),
                "hot": hdul["HOT"].data.astype(bool), "glow": hdul["GLOW"].data.astype(np.float64),
                "bias": hdul["BIAS"].data.astype(np.float64), "frames": Table(hdul["FRAMES"].data)}


def inventory_rows(spec, outdir):
    """Header values of the frames :func:`write_ccd_set` will write, without simulating (the
    workflow plans the CCD branch from them before the demo exists): list of dicts path, file,
    IMAGETYP, kind, EXPTIME_s."""
    return [{"path": path, "file": name, "IMAGETYP": IMAGETYP[kind], "kind": kind, "EXPTIME_s": float(t)}
            for (name, kind, t), path in zip(frame_plan(spec), planned_files(spec, outdir)["raw"])]
