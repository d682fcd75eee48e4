"""Shared machinery of the reference-file builders: input checks, clipped statistics, headers.

* :func:`open_inputs` opens the input ramps of one reference file lazily
  (:class:`detcal.io.RampReader`) and rejects a set that mixes configuration groups
  (:data:`detcal.keywords.GROUP`), naming the odd file and keyword.
* the clipped statistics of the stacks (astropy ``sigma_clip`` along the first axis, in
  bounded memory) are :func:`detcal.analysis.robust.sigma_clipped_stats`.
* :func:`reference_meta` / :func:`header_for` build complete JWST reference headers.
"""

import logging
import re

import numpy as np
from astropy.time import Time

from .. import inventory, io, keywords, tables
from ..analysis import robust
from ..errors import InputError
from ..geometry import Geometry

log = logging.getLogger("detcal.reffiles")

#: Keywords that, besides :data:`detcal.keywords.GROUP`, every input of one reference must share
#: (they fix the array and its place on the detector).
SHARED = ("INSTRUME", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")

#: EXP_TYPE written when the inputs carry none, per INSTRUME (one definition: detcal.keywords).
DARK_EXP_TYPE = keywords.DARK_EXP_TYPE

_PEDIGREE = re.compile(r"^(GROUND|DUMMY|SIMULATION|INFLIGHT \d{4}-\d{2}-\d{2} \d{4}-\d{2}-\d{2})$")
_USEAFTER = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")

# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def open_inputs(paths, step="inventory", what="input"):
    """Open every ramp lazily and check that they belong to one configuration group.

    Parameters
    ----------
    paths : sequence of str      at least one
    step : str                   keywords of :data:`detcal.keywords.STEP` each file must carry
    what : str                   name of the inputs in error messages

    Returns
    -------
    list of :class:`detcal.io.RampReader` (close them, or use :func:`close_all`)

    Raises
    ------
    InputError
        naming the first file whose configuration keyword (GROUP, CORONMSK, INSTRUME or the
        subarray placement) differs from the first file's, or a file that cannot be read.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise InputError("<inputs>", f"no {what} files given")
    readers = []
    try:
        for p in paths:
            readers.append(io.RampReader(p, step))
        inventory.check_one_group([r.header for r in readers], paths, also=SHARED, what=what)
    except BaseException:
        close_all(readers)
        raise
    return readers


def close_all(readers):
    """Close every reader of ``readers``."""
    for r in readers:
        r.close()


def require_rapid(readers, product):
    """InputError unless every file has NFRAMES=1 and GROUPGAP=0 (each group is one frame)."""
    for r in readers:
        nframes = keywords.value(r.header, "NFRAMES", r.path)
        groupgap = keywords.value(r.header, "GROUPGAP", r.path)
        if (nframes, groupgap) != (1, 0):
            raise InputError(r.path, (
                f"NFRAMES={nframes}, GROUPGAP={groupgap}: a {product} is made from darks read with "
                "NFRAMES=1 and GROUPGAP=0 (RAPID-like patterns: every group one frame), so that it "
                "can be averaged into any other pattern; this file's groups average or skip frames"))


def geometry_of(reader):
    """:class:`detcal.geometry.Geometry` of an input file (from its header and array shape)."""
    return Geometry.from_header(reader.header, reader.shape[-2:], reader.path)


def gain_map(gain, reader):
    """Gain [e-/DN] as float32 (ny, nx) from a number or a GAIN reference path (cut like the data)."""
    shape = tuple(reader.shape[-2:])
    if gain is None:
        raise InputError(reader.path, "a gain (number or GAIN reference file) is needed to convert "
                                      "between DN and electrons")
    if isinstance(gain, (int, float, np.floating, np.integer)):
        if not gain > 0:
            raise ValueError(f"gain must be > 0 e-/DN, got {gain}")
        return np.full(shape, float(gain), np.float32)
    from ..analysis.common import read_gain  # the one GAIN reader (matplotlib: imported at use)
    g = read_gain(gain, reader.header, reader.shape, reader.path)
    return np.where(g > 0, g, np.nan).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------
def check_pedigree_useafter(pedigree, useafter):
    """Validated (PEDIGREE, USEAFTER); a bare date gets T00:00:00. ValueError with the rule."""
    pedigree = str(pedigree).strip().upper()
    if not _PEDIGREE.match(pedigree):
        raise ValueError(f"PEDIGREE {pedigree!r} must be GROUND, DUMMY, SIMULATION or "
                         "'INFLIGHT yyyy-mm-dd yyyy-mm-dd'")
    useafter = str(useafter).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", useafter):
        useafter += "T00:00:00"
    if not _USEAFTER.match(useafter):
        raise ValueError(f"USEAFTER {useafter!r} must be yyyy-mm-ddThh:mm:ss")
    return pedigree, useafter


def earliest_date(readers):
    """``yyyy-mm-ddT00:00:00`` of the earliest input (DATE-OBS, else EXPSTART), or 2000-01-01."""
    dates = []
    for r in readers:
        d = keywords.optional(r.header, "DATE-OBS")
        if d and re.match(r"^\d{4}-\d{2}-\d{2}", d):
            dates.append(d[:10])
            continue
        mjd = keywords.optional(r.header, "EXPSTART")
        if mjd:
            dates.append(Time(mjd, format="mjd").isot[:10])
    return (min(dates) if dates else "2000-01-01") + "T00:00:00"


def reference_meta(header, extra=()):
    """Selector keywords of a reference made from files with primary ``header``.

    INSTRUME, DETECTOR, SUBARRAY, SUBSTRT1/2, SUBSIZE1/2 (required), FASTAXIS, SLOWAXIS,
    NOUTPUTS, EXP_TYPE, CORONMSK (when present) and the keywords in ``extra``.
    """
    meta = {}
    for key in ("INSTRUME", "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"):
        meta[key] = keywords.value(header, key, "<input header>")
    for key in ("FASTAXIS", "SLOWAXIS", "NOUTPUTS", "EXP_TYPE", "CORONMSK") + tuple(extra):
        val = keywords.optional(header, key)
        if val is not None:
            meta[key] = val
    return meta


def header_for(reftype, readers, descrip, author, pedigree, useafter, extra_meta=None,
               extra=()):
    """Complete reference primary header (:func:`detcal.io.reference_header`) for ``readers``."""
    if useafter is None:
        useafter = earliest_date(readers)
    pedigree, useafter = check_pedigree_useafter(pedigree, useafter)
    meta = reference_meta(readers[0].header, extra)
    meta.update(extra_meta or {})
    return io.reference_header(reftype, meta, descrip, author=author, pedigree=pedigree,
                               useafter=useafter)


def config_label(header):
    """``NRCA1 FULL RAPID`` (DETECTOR SUBARRAY READPATT) for descriptions and titles."""
    parts = [keywords.optional(header, k) for k in ("DETECTOR", "SUBARRAY", "READPATT")]
    return " ".join(str(p) for p in parts if p)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def half_sample_mode(x):
    """Mode of a sample by the half-sample method (Bickel & Fruehwirth 2006); NaN ignored.

    Repeatedly keeps the half of the sorted sample with the smallest range; robust to outliers
    and to skewed tails. Returns NaN for an empty sample.
    """
    x = np.sort(np.asarray(x, np.float64)[np.isfinite(x)])
    while x.size > 3:
        h = (x.size + 1) // 2
        widths = x[h - 1:] - x[:x.size - h + 1]
        i = int(np.argmin(widths))
        x = x[i:i + h]
    if x.size == 3:
        left, right = x[1] - x[0], x[2] - x[1]
        x = x[:2] if left < right else (x[1:] if left > right else x[1:2])
    return float(np.mean(x)) if x.size else float("nan")


def regions(geom):
    """Pixel regions for per-amplifier statistics: {name: bool (ny, nx)}.

    ``amp1`` .. ``ampN``: active (non-reference) pixels read by output 1..N (detcal.geometry's
    amplifier map); ``active``: all active pixels; ``reference``: the reference pixels.
    """
    ref = geom.reference_mask()
    amp = geom.amplifier_map()
    out = {f"amp{k + 1}": (amp == k) & ~ref for k in range(geom.noutputs)}
    out["active"] = ~ref
    out["reference"] = ref
    return out


def region_stats(image, masks, sigma=3.0, maxiters=5, percentiles=(5, 25, 50, 75, 95)):
    """Per-region statistics of a 2-D map: rows of dicts (npix, clipped mean/std, percentiles).

    NaN pixels are ignored; a region without finite pixels gets NaN statistics.
    """
    rows = []
    for name, mask in masks.items():
        v = np.asarray(image, np.float64)[mask]
        v = v[np.isfinite(v)]
        row = {"region": name, "npix": int(v.size)}
        if v.size:
            st = robust.sigma_clipped_stats(v[:, None], sigma=sigma, maxiters=maxiters)
            row["clipped_mean"], row["clipped_std"] = float(st["mean"][0]), float(st["std"][0])
            pct = np.percentile(v, percentiles)
        else:
            row["clipped_mean"] = row["clipped_std"] = float("nan")
            pct = [float("nan")] * len(percentiles)
        for p, val in zip(percentiles, pct):
            row[f"p{p:02d}"] = float(val)
        rows.append(row)
    return rows


def write_table(df, path):
    """Write a reference file's statistics table as TSV, floats to 6 significant digits."""
    tables.write_tsv(df, path, float_format="%.6g")


def bxp_stats(df, prefix, unit):
    """matplotlib ``bxp`` box statistics from a region table's percentile columns."""
    stats = []
    for _, row in df.iterrows():
        stats.append({"label": row["region"], "whislo": row[f"{prefix}_p05_{unit}"],
                      "q1": row[f"{prefix}_p25_{unit}"], "med": row[f"{prefix}_p50_{unit}"],
                      "q3": row[f"{prefix}_p75_{unit}"], "whishi": row[f"{prefix}_p95_{unit}"],
                      "fliers": []})
    return stats
