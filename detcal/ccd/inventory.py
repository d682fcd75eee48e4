"""Which CCD frames there are, and what to do with them (the seed's "decide which calibration
steps to take").

:func:`scan` reads the headers of the raw frames (2-D images in the primary HDU or the first
image HDU, with IMAGETYP and EXPTIME) into the inventory table and checks them;
:func:`plan` makes the header-only decisions:

* the exposure times the darks cover (one master dark per EXPTIME rounded to whole seconds);
* for every flat/light exposure time, whether a master dark matches it (relative difference at
  most ``exptime_tolerance``: no scaling) or a master dark must be scaled (from the longest
  exposure time, the one with the best signal-to-noise);
* whether bias must be subtracted from the darks: yes when some dark must be scaled, when the
  dark rate comes from a single exposure time, or when there are no flat/light frames (the
  exposure times the darks will serve are unknown, so they must be scalable); then bias frames
  are required;

:func:`judge_overscan` looks at pixels: the overscan is useful when it tracks the frame-to-frame
bias level (:func:`detcal.ccd.process.overscan_usefulness`), judged on the bias frames (or, with
fewer than two, on the darks of the best-populated exposure time).
"""

import glob
import math
import os

import numpy as np
import pandas as pd
from astropy.io import fits

from ..errors import InputError
from .sections import parse_section, section_string

KINDS = ("bias", "dark", "flat", "light")


def expand(raw):
    """Sorted paths of a glob (or list of globs); InputError when nothing matches."""
    patterns = [raw] if isinstance(raw, str) else list(raw)
    paths = sorted({p for pat in patterns for p in glob.glob(os.path.expanduser(pat))})
    if not paths:
        raise InputError(", ".join(patterns), "no CCD frames match (config ccd.raw)")
    return paths


def _image_hdu(hdul, path):
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) == 2:
            return hdu
    raise InputError(path, "no 2-D image in the primary HDU or any image extension")


def _open_image(path, read_data):
    """(data float64 (ny, nx) [ADU] or None, header, (ny, nx)) of a raw CCD frame; primary
    header cards merged under the image extension's when the image is not in the primary HDU."""
    try:
        with fits.open(path) as hdul:
            hdu = _image_hdu(hdul, path)
            header = hdul[0].header.copy()
            if hdu is not hdul[0]:
                header.update(hdu.header)
            data = np.asarray(hdu.data, np.float64) if read_data else None
            return data, header, (int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"]))
    except OSError as exc:
        raise InputError(path, f"not a readable FITS file ({exc})") from None


def read_frame(path):
    """(data float64 (ny, nx) [ADU], header) of a raw CCD frame (see :func:`_open_image`)."""
    data, header, _ = _open_image(path, True)
    return data, header


def read_header(path):
    """(header, (ny, nx)) of a raw CCD frame, without reading its data."""
    _, header, shape = _open_image(path, False)
    return header, shape


def frame_gain(header, gain, path):
    """Gain [e-/ADU]: the configured number, or the value of the configured header keyword."""
    if isinstance(gain, (int, float)) and not isinstance(gain, bool):
        return float(gain)
    if gain not in header:
        raise InputError(path, f"no {gain} keyword for the gain (config ccd.gain: a number or a keyword)")
    try:
        return float(header[gain])
    except (TypeError, ValueError):
        raise InputError(path, f"{gain} = {header[gain]!r} is not a number (gain, e-/ADU)") from None


def scan(paths, cfg):
    """Inventory of raw CCD frames.

    Parameters
    ----------
    paths : list of str
    cfg : the ``ccd`` configuration (keys imagetyp, overscan, trim, gain)

    Returns
    -------
    pandas.DataFrame, one row per file in path order: file, path, IMAGETYP (header value), kind
    (bias/dark/flat/light/other), EXPTIME_s, shape ("ny x nx"), ny, nx, gain_e_per_ADU, DETECTOR
    (header DETECTOR, else INSTRUME, else "CCD")

    Raises
    ------
    InputError naming the file: no IMAGETYP or EXPTIME, EXPTIME not a number, not a 2-D image,
    a shape different from the first frame's, an overscan/trim section outside the frame, no
    gain.
    """
    lookup = {str(v).strip().lower(): k for k, v in cfg["imagetyp"].items()}
    rows, first = [], None
    for path in paths:
        header, shape = read_header(path)
        for key in ("IMAGETYP", "EXPTIME"):
            if key not in header:
                raise InputError(path, f"no {key} keyword (every CCD frame needs IMAGETYP and EXPTIME)")
        try:
            exptime = float(header["EXPTIME"])
        except (TypeError, ValueError):
            raise InputError(path, f"EXPTIME = {header['EXPTIME']!r} is not a number (seconds)") from None
        if not math.isfinite(exptime) or exptime < 0:
            raise InputError(path, f"EXPTIME = {exptime} is not a valid exposure time (seconds)")
        if first is None:
            first = (path, shape)
            parse_section(cfg["overscan"], shape, path, "overscan")
            parse_section(cfg["trim"], shape, path, "trim")
        elif shape != first[1]:
            raise InputError(path, f"frame shape {shape[0]}x{shape[1]} differs from "
                                   f"{first[1][0]}x{first[1][1]} of {os.path.basename(first[0])} "
                                   "(all CCD frames must have one shape)")
        imagetyp = str(header["IMAGETYP"]).strip()
        rows.append({"file": os.path.basename(path), "path": path, "IMAGETYP": imagetyp,
                     "kind": lookup.get(imagetyp.lower(), "other"), "EXPTIME_s": exptime,
                     "shape": f"{shape[0]}x{shape[1]}", "ny": shape[0], "nx": shape[1],
                     "gain_e_per_ADU": frame_gain(header, cfg["gain"], path),
                     "DETECTOR": str(header.get("DETECTOR", header.get("INSTRUME", "CCD"))).strip()})
    return pd.DataFrame(rows, columns=["file", "path", "IMAGETYP", "kind", "EXPTIME_s", "shape",
                                       "ny", "nx", "gain_e_per_ADU", "DETECTOR"])


def exptime_label(exptime):
    """Whole-second label of an exposure time (the ``{EXPTIME:03d}`` of the product names)."""
    return int(round(float(exptime)))


def plan(inventory, cfg, where="config ccd.raw"):
    """Header-only decisions (see the module docstring).

    Returns dict with
      dark_exptimes : {label (int s): {"exptime_s": mean EXPTIME, "files": [paths]}}
      bias_files : [paths]
      targets : list of {"kind", "exptime_s", "label", "match_label" or None, "scale_from" label
                or None, "factor"} per flat/light exposure time
      scaled_labels : sorted labels of the exposure times that get a scaled dark
      bias_subtract : bool, bias_reason : str
      dark_rate_method : "fit" (across exposure times) | "longest"
      used_for : list, one entry per inventory row
    """
    darks = inventory[inventory["kind"] == "dark"]
    if darks.empty:
        raise InputError(where, f"no DARK frames among {len(inventory)} files (IMAGETYP values: "
                                f"{', '.join(sorted(set(inventory['IMAGETYP'])))}; config ccd.imagetyp)")
    tol = float(cfg["exptime_tolerance"])
    dark_exptimes = {}
    for label, grp in darks.groupby(darks["EXPTIME_s"].map(exptime_label)):
        dark_exptimes[int(label)] = {"exptime_s": float(grp["EXPTIME_s"].mean()),
                                     "files": grp["path"].tolist()}
    longest = max(dark_exptimes)
    targets = []
    others = inventory[inventory["kind"].isin(["flat", "light"])]
    for (kind, t), _ in others.groupby(["kind", others["EXPTIME_s"].round(3)]):
        match = [lab for lab, d in dark_exptimes.items()
                 if abs(d["exptime_s"] - t) <= tol * max(t, d["exptime_s"])]
        match_label = min(match, key=lambda lab: abs(dark_exptimes[lab]["exptime_s"] - t)) if match else None
        targets.append({"kind": kind, "exptime_s": float(t), "label": exptime_label(t),
                        "match_label": match_label,
                        "scale_from": None if match else longest,
                        "factor": None if match else float(t) / dark_exptimes[longest]["exptime_s"]})
    scaled = sorted({tg["label"] for tg in targets if tg["scale_from"] is not None})
    method = cfg["dark_rate"]
    if method == "fit" and len(dark_exptimes) < 2:
        method = "longest"
    if scaled:
        reason = "darks must be scaled to " + ", ".join(f"{lab} s" for lab in scaled)
    elif method == "longest":
        reason = f"the dark rate comes from one exposure time ({longest} s)"
    elif others.empty:
        reason = "no flat/light frames: the darks must be scalable to any exposure time"
    else:
        reason = ""
    bias_subtract = bool(reason)
    if not bias_subtract:
        reason = "every flat/light exposure time has a matching dark (no scaling)"
    bias_files = inventory.loc[inventory["kind"] == "bias", "path"].tolist()
    if bias_subtract and not bias_files:
        raise InputError(where, f"bias subtraction is needed ({reason}) but there are no BIAS frames")
    used = []
    for _, row in inventory.iterrows():
        if row["kind"] == "bias":
            used.append("master bias; read noise (bias pairs)")
        elif row["kind"] == "dark":
            used.append(f"master dark {exptime_label(row['EXPTIME_s']):03d} s")
        elif row["kind"] in ("flat", "light"):
            tg = next(tg for tg in targets if tg["kind"] == row["kind"]
                      and abs(tg["exptime_s"] - round(row["EXPTIME_s"], 3)) < 1e-9)
            used.append(f"decision only: dark {tg['match_label']:03d} s matches" if tg["match_label"] is not None
                        else f"decision only: needs master dark {tg['scale_from']:03d} s scaled x{tg['factor']:.4g}")
        else:
            used.append(f"not used (IMAGETYP {row['IMAGETYP']!r} is none of ccd.imagetyp)")
    return {"dark_exptimes": dark_exptimes, "bias_files": bias_files, "targets": targets,
            "scaled_labels": scaled, "bias_subtract": bias_subtract, "bias_reason": reason,
            "dark_rate_method": method, "longest_label": longest, "used_for": used}


def judge_overscan(inventory, decisions, cfg):
    """Overscan decision from the pixels (see the module docstring).

    Returns dict: section (str), model, order, axis, subtract (bool), judged_on (str),
    scatter_active_adu, scatter_corrected_adu, ratio, useful (bool/None), reason (str).
    """
    from . import process  # scipy.stats: not imported by the Snakefile's header-only plan

    section = cfg["overscan"]
    out = {"section": section or "", "model": cfg["overscan_model"], "order": int(cfg["overscan_order"]),
           "scatter_active_adu": math.nan, "scatter_corrected_adu": math.nan, "ratio": math.nan,
           "useful": None, "judged_on": ""}
    if not section:
        out.update(subtract=False, reason="no overscan section configured (ccd.overscan is empty)")
        return out
    shape = (int(inventory["ny"].iloc[0]), int(inventory["nx"].iloc[0]))
    path0 = inventory["path"].iloc[0]
    oscan = parse_section(section, shape, path0, "overscan")
    trim_slices = parse_section(cfg["trim"], shape, path0, "trim")
    if process.overscan_axis(oscan, shape) is None:
        raise InputError(path0, f"overscan section {section!r} spans neither every row nor every "
                                "column of the frame (it cannot give one level per row or column)")
    files = decisions["bias_files"]
    judged_on = f"{len(files)} bias frames"
    if len(files) < 2:
        label = max(decisions["dark_exptimes"], key=lambda lab: len(decisions["dark_exptimes"][lab]["files"]))
        files = decisions["dark_exptimes"][label]["files"]
        judged_on = f"{len(files)} darks of {label} s"
    active, over = [], []
    for path in files:
        data, _ = read_frame(path)
        active.append(process.frame_level(data, trim_slices))
        over.append(process.frame_level(data, oscan))
    judged = process.overscan_usefulness(active, over)
    out.update(judged, judged_on=judged_on, axis=process.overscan_axis(oscan, shape))
    setting = cfg["overscan_subtract"]
    if setting == "auto":
        if judged["useful"] is None:
            out.update(subtract=True, reason="fewer than 2 frames to judge it: subtracted (ccd.overscan is set)")
        elif judged["useful"]:
            out.update(subtract=True, reason=(f"useful: it tracks the bias level (frame-to-frame scatter "
                                              f"{judged['scatter_active_adu']:.3g} -> "
                                              f"{judged['scatter_corrected_adu']:.3g} ADU)"))
        else:
            out.update(subtract=False, reason=(f"not useful: subtracting it does not reduce the "
                                               f"frame-to-frame scatter ({judged['scatter_active_adu']:.3g} -> "
                                               f"{judged['scatter_corrected_adu']:.3g} ADU); trimmed off only"))
    else:
        out.update(subtract=bool(setting), reason=f"forced by ccd.overscan_subtract = {setting}")
    return out


def calibration_settings(inventory, cfg, decisions, overscan):
    """Everything the later steps need, resolved (sections as slices' strings, gain value)."""
    shape = (int(inventory["ny"].iloc[0]), int(inventory["nx"].iloc[0]))
    path0 = inventory["path"].iloc[0]
    trim_slices = parse_section(cfg["trim"], shape, path0, "trim")
    gains = sorted(set(inventory["gain_e_per_ADU"]))
    if len(gains) > 1:
        bad = inventory.loc[inventory["gain_e_per_ADU"] != gains[0], "path"].iloc[0]
        raise InputError(bad, f"gain {inventory.loc[inventory['path'] == bad, 'gain_e_per_ADU'].iloc[0]} "
                              f"differs from {gains[0]} e-/ADU of the other frames")
    return {"detector": str(inventory["DETECTOR"].iloc[0]), "shape": list(shape), "trim": cfg["trim"] or "",
            "trim_fits": section_string(*trim_slices), "gain_e_per_ADU": gains[0],
            "readnoise_e": float(cfg["readnoise"]), "combine": dict(cfg["combine"]),
            "memory_mb": float(cfg["memory_mb"]), "hot_threshold_e_per_s": float(cfg["hot_threshold"]),
            "dark_expected_e_per_s": cfg.get("dark_expected"), "overscan": overscan}


def decision_table(decisions, settings):
    """The report's decision table: one row per decision (decision, value, why)."""
    ov = settings["overscan"]
    rows = [
        ("dark exposure times [s]", ", ".join(f"{lab} ({len(d['files'])} frames)"
                                              for lab, d in sorted(decisions["dark_exptimes"].items())),
         "one master dark per EXPTIME (rounded to whole seconds)"),
        ("overscan subtracted", "yes" if ov["subtract"] else "no", ov["reason"]),
        ("overscan section / model", f"{ov['section'] or '-'} / {ov['model']}"
         + (f" (order {ov['order']})" if ov["model"] == "polynomial" else ""),
         f"judged on {ov['judged_on']}" if ov["judged_on"] else ""),
        ("trim section", settings["trim"] or "whole frame", f"kept pixels {settings['trim_fits']}"),
        ("bias subtracted from darks", "yes" if decisions["bias_subtract"] else "no",
         decisions["bias_reason"]),
        ("dark rate", decisions["dark_rate_method"],
         "weighted fit of master dark vs EXPTIME per pixel (slope; the intercept absorbs bias)"
         if decisions["dark_rate_method"] == "fit" else
         f"master dark {decisions['longest_label']} s / EXPTIME (bias-subtracted)"),
    ]
    for tg in decisions["targets"]:
        if tg["scale_from"] is None:
            rows.append((f"{tg['kind']} {tg['exptime_s']:g} s: scaling", "no",
                         f"master dark {tg['match_label']} s matches within the tolerance"))
        else:
            rows.append((f"{tg['kind']} {tg['exptime_s']:g} s: scaling", f"yes, x{tg['factor']:.4g}",
                         f"no dark within the tolerance: master dark {tg['scale_from']} s scaled"))
    return pd.DataFrame(rows, columns=["decision", "value", "why"])
