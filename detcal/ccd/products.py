"""File-level functions of the CCD branch (what the workflow's rules call).

Products are FITS files ``astropy.nddata.CCDData.read`` opens: the image in the primary HDU
(BUNIT ``adu`` or ``electron / s``), an ``UNCERT`` extension (standard deviation, same unit) and a
``MASK`` extension (uint8, 1 = pixel not usable). Provenance keywords: DCVERS / NPVERS / APVERS
(detcal / numpy / astropy versions), IMAGETYP, EXPTIME [s], NCOMBINE, COMBMETH / CLIPMETH /
CLIPLOW / CLIPHIGH / CLIPCEN / CLIPDEV (the combine), OSCANSUB / OSCANSEC / OSCANMOD / OSCANORD
(overscan), TRIMSEC (FITS section kept), BIASSUB, UNCMETH (how UNCERT was made), and one HISTORY
line per input file. Masters also carry OSCNOISE (noise of each subtracted overscan value, ADU:
it is in every pixel's UNCERT, common to a row) and OSCNERR (the resulting error of the master's
mean level, ADU, common to all pixels); the dark rate carries DRMETHOD, HOTTHR, NHOT and RATECOH
(the error of any all-pixel mean rate from those level errors, e-/s, not in UNCERT).

Every frame is calibrated the same way before it is combined: overscan subtracted (if decided,
:mod:`detcal.ccd.inventory`), trimmed, and for darks the master bias subtracted (if decided).
Calibrated frames go to temporary memory maps next to the output, so the combine holds only one
block of rows of every frame at a time (``memory_mb``).

The decisions file (``decisions.json``, written by :func:`inventory_file`) carries the resolved
settings every later function needs; rules pass it along with the frames.
"""

import contextlib
import logging
import math
import os
import shutil
import tempfile

import astropy
import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from .. import __version__, plots, tables
from ..analysis import common
from ..errors import InputError
from . import inventory as inv
from . import process
from .sections import parse_section

log = logging.getLogger("detcal.ccd")


# ---- decisions -----------------------------------------------------------------------------
def inventory_file(raw_paths, cfg, inventory_tsv, decisions_tsv, decisions_json):
    """Scan the raw frames, decide the calibration, write the inventory and the decisions.

    inventory_tsv : file, IMAGETYP, kind, EXPTIME_s, shape, gain_e_per_ADU, used_for
    decisions_tsv : decision, value, why (the report's decision table)
    decisions_json : {"plan": :func:`inventory.plan`, "settings": :func:`inventory.calibration_settings`}
    Nothing is written when a frame is bad (InputError).
    """
    raw_paths = [raw_paths] if isinstance(raw_paths, str) else list(raw_paths)
    table = inv.scan(raw_paths, cfg)
    plan = inv.plan(table, cfg)
    overscan = inv.judge_overscan(table, plan, cfg)
    settings = inv.calibration_settings(table, cfg, plan, overscan)
    table["used_for"] = plan["used_for"]
    tables.write_tsv(table[["file", "IMAGETYP", "kind", "EXPTIME_s", "shape", "gain_e_per_ADU",
                            "used_for"]], inventory_tsv)
    tables.write_tsv(inv.decision_table(plan, settings), decisions_tsv)
    tables.write_json({"analysis": "ccd_decisions", "plan": plan, "settings": settings}, decisions_json)
    log.info("%d frames; overscan subtracted: %s; bias subtracted: %s", len(table),
             overscan["subtract"], plan["bias_subtract"])
    return plan, settings


def read_decisions(path):
    """(plan, settings) of a decisions file (dark exposure-time labels back to int)."""
    try:
        doc = tables.read_json(path)
        plan, settings = doc["plan"], doc["settings"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a CCD decisions file ({exc})") from None
    plan["dark_exptimes"] = {int(k): v for k, v in plan["dark_exptimes"].items()}
    return plan, settings


# ---- frames --------------------------------------------------------------------------------
def calibrate_frame(data, settings, path="<frame>", overscan=True, level_error=None):
    """Overscan-subtract (if decided and ``overscan``) and trim one raw frame: float64
    (ny', nx') [ADU]. ``level_error``: a list the frame's overscan level error [ADU] is appended
    to: (noise per overscan value [ADU], number of values), :func:`process.overscan_noise`;
    (0, 0) when no overscan is subtracted."""
    shape = tuple(settings["shape"])
    if data.shape != shape:
        raise InputError(path, f"frame shape {data.shape[0]}x{data.shape[1]} differs from "
                               f"{shape[0]}x{shape[1]} of the inventory")
    ov = settings["overscan"]
    err = (0.0, 0)
    if ov["subtract"] and overscan:
        data, level = process.subtract_overscan(data, parse_section(ov["section"], shape, path, "overscan"),
                                                ov["model"], ov["order"])
        err = process.overscan_noise(level)
    if level_error is not None:
        level_error.append(err)
    return process.trim(data, parse_section(settings["trim"], shape, path, "trim"))


@contextlib.contextmanager
def _frame_stack(paths, settings, near, subtract=None, level_errors=None):
    """Calibrated frames as read-only memory maps in a temporary folder next to ``near``."""
    folder = tempfile.mkdtemp(prefix=".ccd-", dir=os.path.dirname(os.path.abspath(near)) or ".")
    try:
        maps = []
        for k, path in enumerate(paths):
            data, _ = inv.read_frame(path)
            frame = calibrate_frame(data, settings, path, level_error=level_errors)
            if subtract is not None:
                frame -= subtract
            np.save(os.path.join(folder, f"{k}.npy"), frame)
            del frame
            maps.append(np.load(os.path.join(folder, f"{k}.npy"), mmap_mode="r"))
        yield maps
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _combine(maps, settings):
    c = settings["combine"]
    return process.combine(maps, method=c["method"], clip=c["clip"], low=c["low"], high=c["high"],
                           center=c["center"], dev=c["dev"], mem_limit=settings["memory_mb"] * 1e6)


# ---- writing -------------------------------------------------------------------------------
def provenance(settings, imagetyp, exptime, ncombine, inputs, bias_subtracted, uncmethod):
    """Header of a CCD product (the keywords of the module docstring)."""
    ov, c = settings["overscan"], settings["combine"]
    h = {"IMAGETYP": (imagetyp, "frame type of this product"),
         "EXPTIME": (float(exptime), "[s] exposure time"),
         "NCOMBINE": (int(ncombine), "frames combined"),
         "COMBMETH": (c["method"], "combine: average | median of the kept values"),
         "CLIPMETH": (c["clip"], "rejection before the combine (sigma | none)"),
         "CLIPLOW": (float(c["low"]) if c["low"] is not None else "none", "low rejection threshold [dev]"),
         "CLIPHIGH": (float(c["high"]) if c["high"] is not None else "none", "high rejection threshold [dev]"),
         "CLIPCEN": (c["center"], "sigma-clip center"),
         "CLIPDEV": (c["dev"], "sigma-clip deviation"),
         "OSCANSUB": (bool(ov["subtract"]), "overscan subtracted"),
         "OSCANSEC": (ov["section"] or "none", "overscan section (FITS, 1-based, x first)"),
         "OSCANMOD": (ov["model"], "overscan model along the readout axis"),
         "OSCANORD": (int(ov["order"]), "overscan polynomial order (model polynomial)"),
         "TRIMSEC": (settings["trim_fits"], "section kept (FITS, 1-based, x first)"),
         "BIASSUB": (bool(bias_subtracted), "master bias subtracted"),
         "GAIN": (settings["gain_e_per_ADU"], "[e-/ADU]"),
         "RDNOISE": (settings["readnoise_e"], "[e-] single-read noise used for UNCERT"),
         "UNCMETH": (uncmethod[:50], "UNCERT recipe"),
         "DCVERS": (__version__, "detcal version"),
         "NPVERS": (np.__version__, "numpy version"),
         "APVERS": (astropy.__version__, "astropy version")}
    return h, [f"input {os.path.basename(str(p))}" for p in inputs]


def write_ccd(path, data, unc, mask, unit, cards, history=()):
    """Write a CCDData product atomically (primary image, UNCERT, MASK)."""
    header = fits.Header()
    for key, val in cards.items():
        header[key] = val
    for line in history:
        header.add_history(line)
    ccd = CCDData(np.asarray(data, np.float32), unit=unit,
                  uncertainty=StdDevUncertainty(np.asarray(unc, np.float32)),
                  mask=np.asarray(mask, bool), meta=header)
    directory = os.path.dirname(os.path.abspath(str(path)))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".fits", dir=directory)
    os.close(fd)
    try:
        ccd.write(tmp, hdu_mask="MASK", hdu_uncertainty="UNCERT", overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_ccd(path, what="CCD product"):
    """CCDData of a product (InputError naming the file when it is not one)."""
    try:
        return CCDData.read(str(path), hdu_mask="MASK", hdu_uncertainty="UNCERT")
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a readable {what} ({exc})") from None


# ---- masters -------------------------------------------------------------------------------
def master_bias_file(bias_paths, decisions_json, output_fits):
    """Master bias [ADU]: overscan-subtracted (if decided), trimmed bias frames combined.

    UNCERT = RN / gain / sqrt(n_used) (read noise of the mean; ccdproc's scatter / sqrt(N) is
    too noisy for 3-5 frames). MASK = every frame rejected.
    """
    plan, settings = read_decisions(decisions_json)
    bias_paths = list(bias_paths)
    if not bias_paths:
        raise InputError(decisions_json, "no bias frames to combine")
    errs = []
    with _frame_stack(bias_paths, settings, output_fits, level_errors=errs) as maps:
        value, mask, _, n_used = _combine(maps, settings)
    unc = process.deviation(0.0, settings["gain_e_per_ADU"], settings["readnoise_e"],
                            np.maximum(n_used, 1), _noise_var(errs))
    cards, hist = provenance(settings, "BIAS", 0.0, len(bias_paths), bias_paths, False,
                             "sqrt(RN^2/g^2+os^2)/sqrt(frames kept)")
    _overscan_cards(cards, errs)
    write_ccd(output_fits, np.where(mask, np.nan, value), unc, mask, "adu", cards, hist)
    log.info("master bias from %d frames: median %.2f ADU", len(bias_paths), np.nanmedian(value))


def master_dark_file(dark_paths, decisions_json, output_fits, master_bias=None):
    """Master dark of one exposure time [ADU]: darks overscan-subtracted and trimmed, the master
    bias subtracted when decided (``master_bias`` given), combined with rejection (cosmic rays).

    UNCERT = sqrt(gain max(D, 0) + RN^2) / gain / sqrt(n_used), with the master bias's UNCERT
    added in quadrature when it was subtracted. EXPTIME = mean EXPTIME of the frames.
    """
    plan, settings = read_decisions(decisions_json)
    dark_paths = list(dark_paths)
    if not dark_paths:
        raise InputError(decisions_json, "no dark frames to combine")
    if plan["bias_subtract"] and not master_bias:
        raise InputError(decisions_json, "bias subtraction was decided but no master bias was given")
    bias = bias_unc = None
    if plan["bias_subtract"]:
        mb = read_ccd(master_bias, "master bias")
        bias, bias_unc = np.asarray(mb.data, np.float64), np.asarray(mb.uncertainty.array, np.float64)
        if bias.shape != tuple(_trimmed_shape(settings)):
            raise InputError(master_bias,
                             f"shape {bias.shape} differs from the trimmed frames {_trimmed_shape(settings)}")
    exptimes = [float(inv.read_header(p)[0]["EXPTIME"]) for p in dark_paths]
    errs = []
    with _frame_stack(dark_paths, settings, output_fits, subtract=None if bias is None else np.nan_to_num(bias),
                      level_errors=errs) as maps:
        value, mask, _, n_used = _combine(maps, settings)
    g, rn = settings["gain_e_per_ADU"], settings["readnoise_e"]
    unc = process.deviation(np.nan_to_num(value), g, rn, np.maximum(n_used, 1), _noise_var(errs))
    if bias_unc is not None:
        unc = np.hypot(unc, bias_unc)
    cards, hist = provenance(settings, "DARK", np.mean(exptimes), len(dark_paths),
                             dark_paths + ([master_bias] if bias is not None else []), bias is not None,
                             "sqrt((gD+RN^2)/g^2+os^2)/sqrt(n) (+) bias UNCERT")
    _overscan_cards(cards, errs)
    if bias is not None:
        cards["BOSCNERR"] = (float(mb.meta.get("OSCNERR", 0.0)), "[ADU] OSCNERR of master bias")
    write_ccd(output_fits, np.where(mask, np.nan, value), unc, mask, "adu", cards, hist)
    log.info("master dark %.1f s from %d frames", np.mean(exptimes), len(dark_paths))


def _noise_var(errors):
    """Mean per-frame variance [ADU^2] the subtracted overscan levels add to each pixel."""
    return float(np.mean([s ** 2 for s, _ in errors])) if errors else 0.0


def _overscan_cards(cards, errors):
    """OSCNOISE: rms noise of the subtracted overscan values [ADU]; OSCNERR: error of the
    master's mean level from them [ADU] (the frames' level errors combined for their mean)."""
    level = [s / math.sqrt(n) if n else 0.0 for s, n in errors]
    cards["OSCNOISE"] = (math.sqrt(_noise_var(errors)), "[ADU] noise per overscan value")
    cards["OSCNERR"] = (float(np.sqrt(np.sum(np.square(level))) / max(len(level), 1)),
                        "[ADU] mean-level err (overscan)")


def _trimmed_shape(settings):
    rows, cols = parse_section(settings["trim"], settings["shape"], "<config>", "trim")
    return [rows.stop - rows.start, cols.stop - cols.start]


# ---- dark rate, hot pixels, scaled darks -----------------------------------------------------
def dark_rate_file(master_darks, decisions_json, dark_rate_fits, hot_pixels_tsv, scaled_darks=()):
    """Dark-rate image [e-/s], hot-pixel table and scaled master darks.

    dark_rate_fits : the rate (:func:`process.dark_rate_fit`; DRMETHOD says fit or longest),
        UNCERT its 1-sigma error, MASK = hot pixels (rate > hot threshold) or no rate
    hot_pixels_tsv : row, column (0-based in the trimmed frame), x_fits, y_fits (1-based),
        rate_e_per_s, rate_err_e_per_s, and the rate of every bias-subtracted master dark
        (rate_{T}s_e_per_s = gain D_T / T; hot-pixel linearity)
    scaled_darks : paths ``.../scaled_dark_{T:03d}s.fits``, one per exposure time of the plan's
        ``scaled_labels``, in that order: the longest master dark x T / T_longest [ADU]
    """
    plan, settings = read_decisions(decisions_json)
    g, rn = settings["gain_e_per_ADU"], settings["readnoise_e"]
    masters = [read_ccd(p, "master dark") for p in master_darks]
    order = np.argsort([float(m.meta["EXPTIME"]) for m in masters])
    masters = [masters[i] for i in order]
    paths = [list(master_darks)[i] for i in order]
    t = [float(m.meta["EXPTIME"]) for m in masters]
    if plan["dark_rate_method"] == "fit":
        use = masters
    else:
        use = masters[-1:]
        if not masters[-1].meta.get("BIASSUB"):
            raise InputError(paths[-1], "the dark rate from one exposure time needs a bias-subtracted master dark")
    scaled_darks = list(scaled_darks)
    if len(scaled_darks) != len(plan["scaled_labels"]):
        raise InputError(decisions_json, f"{len(plan['scaled_labels'])} scaled darks planned, "
                                         f"{len(scaled_darks)} paths given")
    if scaled_darks and not masters[-1].meta.get("BIASSUB"):
        raise InputError(paths[-1], "scaling a master dark needs it bias-subtracted")
    rate, sigma, _ = process.dark_rate_fit([np.asarray(m.data, np.float64) for m in use],
                                           [float(m.meta["EXPTIME"]) for m in use],
                                           [int(m.meta["NCOMBINE"]) for m in use], g, rn,
                                           [float(m.meta.get("OSCNOISE", 0.0)) ** 2 for m in use])
    hot = process.hot_pixels(rate, settings["hot_threshold_e_per_s"])
    typical = float(np.nanmedian(rate[~hot])) if (~hot).any() else 0.0
    coherent = process.coherent_rate_error([float(m.meta["EXPTIME"]) for m in use],
                                           [_level_error(m, len(use)) for m in use],
                                           [int(m.meta["NCOMBINE"]) for m in use], g, rn, typical,
                                           [float(m.meta.get("OSCNOISE", 0.0)) ** 2 for m in use])
    method = ("fit: weighted LSQ, master dark vs EXPTIME" if plan["dark_rate_method"] == "fit"
              else f"longest: master dark {t[-1]:g} s / EXPTIME")
    cards, hist = provenance(settings, "DARKRATE", t[-1], sum(int(m.meta["NCOMBINE"]) for m in use),
                             paths, bool(masters[-1].meta.get("BIASSUB")), "propagated 1-sigma of the rate")
    cards["DRMETHOD"] = (method[:47], "dark-rate method")
    cards["HOTTHR"] = (settings["hot_threshold_e_per_s"], "[e-/s] hot-pixel threshold")
    cards["NHOT"] = (int(hot.sum()), "hot pixels (MASK)")
    cards["RATECOH"] = (coherent, "[e-/s] error common to all pixels")
    write_ccd(dark_rate_fits, rate, sigma, hot | ~np.isfinite(rate), "electron / s", cards, hist)
    rows, cols = np.nonzero(hot)
    table = pd.DataFrame({"row": rows, "column": cols, "x_fits": cols + 1, "y_fits": rows + 1,
                          "rate_e_per_s": rate[rows, cols], "rate_err_e_per_s": sigma[rows, cols]})
    for m in masters:
        if m.meta.get("BIASSUB"):
            table[f"rate_{exptime_tag(m.meta['EXPTIME'])}s_e_per_s"] = (
                g * np.asarray(m.data, np.float64)[rows, cols] / float(m.meta["EXPTIME"]))
    tables.write_tsv(table, hot_pixels_tsv)
    targets = {tg["label"]: tg["exptime_s"] for tg in plan["targets"]}
    for label, out in zip(plan["scaled_labels"], scaled_darks):
        src = masters[-1]
        data, unc = process.scale_dark(src.data, src.meta["EXPTIME"], targets[label], src.uncertainty.array)
        cards, hist = provenance(settings, "DARK", targets[label], int(src.meta["NCOMBINE"]), [paths[-1]],
                                 True, "master UNCERT x scale factor")
        cards["SCALEDFR"] = (float(src.meta["EXPTIME"]), "[s] EXPTIME of the master dark scaled")
        cards["SCALEFAC"] = (targets[label] / float(src.meta["EXPTIME"]), "scale factor")
        write_ccd(out, data, unc, np.asarray(src.mask, bool), "adu", cards, hist)
    log.info("dark rate (%s): median %.4g e-/s, %d hot pixels", plan["dark_rate_method"],
             np.nanmedian(rate), hot.sum())


def _level_error(master, nused):
    """Coherent level error [ADU] of a master dark in the rate: its own overscan error, plus the
    master bias's when the rate comes from this one master (with a fit the bias's is common to
    every exposure time and goes into the intercept)."""
    own = float(master.meta.get("OSCNERR", 0.0))
    return own if nused > 1 else math.hypot(own, float(master.meta.get("BOSCNERR", 0.0)))


def exptime_tag(exptime):
    """Three-digit exposure-time label of file names ('007' for 7 s)."""
    return f"{inv.exptime_label(exptime):03d}"


# ---- analysis and report -----------------------------------------------------------------------
def dark_level(rate, sigma, hot):
    """Median dark rate of the pixels that are not hot [e-/s] and its 1-sigma error
    (sqrt(pi/2) x the error of their mean)."""
    sel = ~hot & np.isfinite(rate) & np.isfinite(sigma)
    n = int(sel.sum())
    if n == 0:
        return math.nan, math.nan, 0
    err = math.sqrt(math.pi / 2) * math.sqrt(float(np.sum(sigma[sel] ** 2))) / n
    return float(np.median(rate[sel])), err, n


def analysis_file(bias_paths, decisions_json, master_darks, dark_rate, readnoise_tsv, hot_counts_tsv,
                  summary_json, summary_tsv, bias_png=None, darks_png=None, histogram_png=None,
                  linearity_png=None, master_bias=None, detector=None):
    """Read noise from bias pairs, hot-pixel counts, the summary row and the report figures.

    readnoise_tsv : frame_a, frame_b, read_noise_e, read_noise_ADU, npix (single-read noise)
    hot_counts_tsv : source, exptime_s, threshold_e_per_s, n_hot, pct_hot
    summary_json / summary_tsv : the CCD row of results/analysis/summary.tsv (dark rate of the
        pixels that are not hot, in e-/1000 s like the infrared rows; read noise [e-]; hot pixels)
    figures (drawn when their paths are given): master bias [ADU]; master darks [ADU]; dark-rate
    histogram [e-/s] with the hot threshold and the expected rate; rate from each master dark vs
    the dark-rate image (1:1 line)
    """
    from ..analysis import summary as summary_mod

    plan, settings = read_decisions(decisions_json)
    detector = detector or settings.get("detector") or "CCD"
    g, thr = settings["gain_e_per_ADU"], settings["hot_threshold_e_per_s"]
    frames = [calibrate_frame(inv.read_frame(p)[0], settings, p, overscan=False) for p in bias_paths]
    pairs, rn, rn_err = process.read_noise_pairs(frames, g)
    tables.write_tsv(pd.DataFrame(
        [{"frame_a": os.path.basename(bias_paths[i]), "frame_b": os.path.basename(bias_paths[j]),
          "read_noise_e": r, "read_noise_ADU": r / g, "npix": n} for i, j, r, n in pairs],
        columns=["frame_a", "frame_b", "read_noise_e", "read_noise_ADU", "npix"]), readnoise_tsv)
    rate_ccd = read_ccd(dark_rate, "dark-rate image")
    rate = np.asarray(rate_ccd.data, np.float64)
    sigma = np.asarray(rate_ccd.uncertainty.array, np.float64)
    hot = process.hot_pixels(rate, thr)
    masters = sorted((read_ccd(p, "master dark") for p in master_darks), key=lambda m: float(m.meta["EXPTIME"]))
    counts = [{"source": "dark-rate image", "exptime_s": float(rate_ccd.meta["EXPTIME"]),
               "threshold_e_per_s": thr, "n_hot": int(hot.sum()), "pct_hot": 100.0 * hot.mean()}]
    for m in masters:
        if m.meta.get("BIASSUB"):
            r_t = g * np.asarray(m.data, np.float64) / float(m.meta["EXPTIME"])
            h_t = process.hot_pixels(r_t, thr)
            counts.append({"source": f"master dark {float(m.meta['EXPTIME']):g} s",
                           "exptime_s": float(m.meta["EXPTIME"]),
                           "threshold_e_per_s": thr, "n_hot": int(h_t.sum()), "pct_hot": 100.0 * h_t.mean()})
    tables.write_tsv(pd.DataFrame(counts), hot_counts_tsv)
    level, level_err, npix = dark_level(rate, sigma, hot)
    coherent = float(rate_ccd.meta.get("RATECOH", 0.0))
    level_err = math.hypot(level_err, coherent)
    expected = settings.get("dark_expected_e_per_s")
    summ = {"detector": detector, "dark_current_e_per_1000s": 1000 * level,
            "dark_current_err_e_per_1000s": 1000 * level_err, "dark_current_DN_per_s": level / g,
            "dark_rate_method": plan["dark_rate_method"],
            "read_noise_e": rn, "read_noise_err_e": rn_err, "n_hot_pixels": int(hot.sum()),
            "pct_hot_pixels": 100.0 * float(hot.mean()), "hot_threshold_e_per_s": thr,
            "overscan_subtracted": bool(settings["overscan"]["subtract"]),
            "bias_subtracted": bool(plan["bias_subtract"]),
            "dark_exptimes_s": sorted(plan["dark_exptimes"]), "scaled_to_s": plan["scaled_labels"]}
    if expected is not None:
        summ["expected_e_per_1000s"] = 1000 * float(expected)
        summ["verdict"] = "consistent" if abs(level - expected) <= 2 * level_err else (
            "higher than expected" if level > expected else "lower than expected")
    tables.write_json({"analysis": "ccd", "summary": summ,
                       "conventions": {"dark_current": "median over pixels that are not hot, e-/1000 s",
                                       "read_noise": "single read, e-, from bias-frame pairs"}},
                      summary_json)
    summary_mod.summary_file("ccd", {"ccd": summary_json}, summary_tsv,
                             os.path.splitext(summary_tsv)[0] + ".json")
    if bias_png:
        _figures(master_bias, masters, rate, hot, thr, expected, level, g, bias_png, darks_png,
                 histogram_png, linearity_png)


def _figures(master_bias, masters, rate, hot, thr, expected, level, g, bias_png, darks_png,
             histogram_png, linearity_png):
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    if master_bias:
        mb = np.asarray(read_ccd(master_bias, "master bias").data, np.float64)
        common.show_image(ax, mb, *common.image_range(mb), "master bias [ADU]", "master bias")
    else:
        ax.text(0.5, 0.5, "no master bias (bias not subtracted)", ha="center", transform=ax.transAxes)
        ax.set_xlabel("column [pixel]")
        ax.set_ylabel("row [pixel]")
    common.save_figure(fig, bias_png)

    fig, axs = common.subplot_grid(len(masters), ncols=3, size=4.2)
    for ax, m in zip(axs, masters):
        d = np.asarray(m.data, np.float64)
        lo, hi = np.nanpercentile(d, [1, 99.5])
        common.show_image(ax, d, lo, hi, "master dark [ADU]",
                          f"{float(m.meta['EXPTIME']):g} s, {m.meta['NCOMBINE']} frames"
                          + (", bias-subtracted" if m.meta.get("BIASSUB") else ""))
    fig.tight_layout()
    common.save_figure(fig, darks_png)

    fig, (zoom, full) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    finite = rate[np.isfinite(rate)]
    lo = min(float(np.percentile(finite, 0.1)), 0.0)
    zoom.hist(finite, bins=np.linspace(lo, 2 * thr, 120), histtype="step", color="k", label="pixels")
    zoom.set_title("normal pixels (linear rate axis)", fontsize=10)
    positive = finite[finite > 0]
    top = max(float(positive.max()) if positive.size else thr, thr) * 1.5
    full.hist(positive, bins=np.geomspace(max(float(positive.min()), 1e-4) if positive.size else 1e-4, top, 120),
              histtype="step", color="k", label="pixels with rate > 0")
    full.set_xscale("log")
    full.set_title("all pixels with a positive rate (log rate axis)", fontsize=10)
    for ax in (zoom, full):
        ax.set_yscale("log")
        ax.axvline(thr, color="r", ls="--", label=f"hot threshold {thr:g} e-/s ({int(hot.sum())} hot)")
        ax.axvline(level, color="b", ls="-", label=f"median, not hot: {level:.4g} e-/s")
        if expected is not None:
            ax.axvline(float(expected), color="g", ls=":", label=f"expected {float(expected):g} e-/s")
        ax.set_xlabel("dark rate [e-/s]")
        ax.set_ylabel("number of pixels")
        ax.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, histogram_png)

    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    drawn = False
    for m in masters:
        if m.meta.get("BIASSUB"):
            r_t = g * np.asarray(m.data, np.float64) / float(m.meta["EXPTIME"])
            ax.plot(rate.ravel(), r_t.ravel(), ".", ms=2, alpha=0.5,
                    label=f"master dark {float(m.meta['EXPTIME']):g} s")
            drawn = True
    top = max(np.nanmax(rate), thr) * 1.1
    ax.plot([0, top], [0, top], "k-", lw=1, label="1:1")
    ax.axhline(thr, color="r", ls="--", lw=1, label="hot threshold")
    ax.axvline(thr, color="r", ls="--", lw=1)
    ax.set_xlabel("dark rate, dark-rate image [e-/s]")
    ax.set_ylabel("gain x master dark / EXPTIME [e-/s]")
    if not drawn:
        ax.text(0.5, 0.5, "masters not bias-subtracted", ha="center", transform=ax.transAxes)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(fontsize=8, markerscale=4, loc="upper left")
    fig.tight_layout()
    common.save_figure(fig, linearity_png)
