"""Bad-pixel MASK reference files from darks (the dark half of jwst_reffiles ``bad_pixel_mask``).

Inputs of ONE configuration group, processed WITHOUT dark subtraction (a hot pixel's dark is its
signature): per-integration slopes (``rateints``, ramp_fit of the jump products) and the
jump-flagged ramps themselves. Per active pixel (reference pixels get REFERENCE_PIXEL and nothing
else, never DO_NOT_USE):

* **HOT / WARM**: per integration, the slope [DN/s] against ``hot_threshold`` /
  ``warm_threshold`` [e-/s] divided by the gain; flagged when at or above it in at least
  ``fraction`` (75 %) of the integrations with a slope. An integration whose slope is NaN because
  the pixel saturated (DQ SATURATED) counts as above both thresholds, and a pixel saturated in
  more than ``saturated_fraction`` (50 %) of its integrations is HOT (jwst_reffiles'
  "saturated in all groups -> HOT"). WARM excludes HOT.
* **UNRELIABLE_SLOPE** (noisy): the std across integrations of the slopes (integrations with
  a jump or saturation left out, and the 2 highest slopes dropped, as jwst_reffiles: small
  unflagged cosmic rays only ever raise a slope), divided by the expected scatter from read
  noise (VAR_RNOISE) and the pixel's own shot noise, so hot pixels are not noisy for their
  shot noise;
  flagged above the clipped mean + ``noisy_threshold_sigma`` (5) sigma of that ratio over the
  active pixels (clipping 5 sigma, 5 rounds); needs ``min_slopes`` (5) integrations left.
* **RC** and **TELEGRAPH** from the jump flags (jwst_reffiles' jump rules): per integration, a
  pixel with at least ``min_jumps`` (10) JUMP_DET groups is RC-like when its jump rate in the
  first ``early_fraction`` (25 %) of the groups is at least ``jump_ratio`` (5) times the rate in
  the rest, telegraph-like otherwise; RC when RC-like in more than ``rc_fraction`` (80 %) of the
  integrations, TELEGRAPH when telegraph-like in more than ``telegraph_fraction`` (80 %) and not
  RC. (With 10 jumps needed, short ramps never show either; lower ``min_jumps`` for them.)
* **DEAD**: no response at all: every group of the ramp identical (peak-to-peak <= ``dead_ptp``
  DN) in at least ``fraction`` of the integrations. A pixel that only lacks dark current cannot
  be told from a dead one in darks (normal dark rates are ~0): the simulator's dead pixels, which
  still show read noise, are not found this way.
* **DO_NOT_USE** is added to the types in ``do_not_use`` (default HOT, RC, TELEGRAPH, DEAD, as the
  NRC-09 call of jwst_reffiles); WARM and UNRELIABLE_SLOPE stay usable.
* Pixels without a usable slope in any integration (e.g. DO_NOT_USE everywhere in the inputs)
  cannot be judged from the darks: with ``keep_unmeasured`` they keep the flags of the inputs'
  PIXELDQ (the previous mask, through dq_init).
"""

import logging
import os
import warnings

import numpy as np
import pandas as pd
from astropy.io import fits

from .. import __version__, dqflags, io, keywords
from ..errors import InputError
from . import common

log = logging.getLogger("detcal.reffiles.badpix")

_JUMP = np.uint8(dqflags.JUMP_DET)

#: Flag types: name -> DQ bit.
TYPES = {"hot": dqflags.HOT, "warm": dqflags.WARM, "noisy": dqflags.UNRELIABLE_SLOPE,
         "rc": dqflags.RC, "telegraph": dqflags.TELEGRAPH, "dead": dqflags.DEAD}


# --------------------------------------------------------------------------------------------
# Pure array functions
# --------------------------------------------------------------------------------------------
def threshold_fractions(slopes, dq, threshold):
    """Fraction of integrations in which a pixel's slope reaches ``threshold``.

    Parameters
    ----------
    slopes : ndarray, float32, shape (nints, ny, nx)   [DN/s] per-integration slopes (rateints)
    dq : ndarray, uint32, same shape                  rateints DQ
    threshold : float or ndarray (ny, nx)             [DN/s]

    Returns
    -------
    fraction : float64 (ny, nx)   (above + saturated) / (with slope + saturated); NaN if none
    n_valid : int (ny, nx)        integrations with a finite slope
    n_saturated : int (ny, nx)    integrations without slope because of saturation
    """
    slopes = np.asarray(slopes)
    finite = np.isfinite(slopes)
    sat = ~finite & ((np.asarray(dq) & dqflags.SATURATED) != 0)
    with np.errstate(invalid="ignore"):
        above = finite & (slopes >= threshold)
    n_valid = finite.sum(axis=0)
    n_sat = sat.sum(axis=0)
    denom = n_valid + n_sat
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (above.sum(axis=0) + n_sat) / denom
    frac = np.where(denom > 0, frac, np.nan)
    return frac, n_valid, n_sat


def hot_warm(slopes, dq, hot_dn, warm_dn, fraction=0.75, saturated_fraction=0.5):
    """HOT and WARM maps from per-integration slopes (rules in the module docstring).

    Parameters
    ----------
    slopes : float32 (nints, ny, nx) [DN/s];  dq : uint32, same shape
    hot_dn, warm_dn : float or float (ny, nx)   thresholds [DN/s]
    fraction : float          fraction of integrations needed (>=)
    saturated_fraction : float  saturated in more than this fraction of integrations -> HOT

    Returns
    -------
    hot, warm : bool (ny, nx)
    """
    f_hot, n_valid, n_sat = threshold_fractions(slopes, dq, hot_dn)
    f_warm, _, _ = threshold_fractions(slopes, dq, warm_dn)
    nints = np.shape(slopes)[0]
    with np.errstate(invalid="ignore"):
        hot = (f_hot >= fraction) | (n_sat > saturated_fraction * nints)
        warm = (f_warm >= fraction) & ~hot
    return hot, warm


def slope_scatter(slopes, var_rnoise, dq, gain, t_int, min_slopes=5, drop_highest=2):
    """Normalised scatter of the per-integration slopes: std / expected std.

    Integrations with JUMP_DET or SATURATED (in the rateints DQ) or without a slope are left out,
    and then the ``drop_highest`` largest slopes (as jwst_reffiles): a cosmic ray too small to be
    flagged always raises an integration's slope, and long ramps catch many of them in the
    neighbours of flagged hits, while a noisy pixel is noisy in every integration. The std
    (ddof 1) of the rest is divided by the expected std: the median VAR_RNOISE of those
    integrations and the shot noise of the pixel's own mean slope ``S``,
    ``sqrt(var_rnoise + max(S, 0) / (gain * t_int))`` (the rateints VAR_POISSON is not used: at
    dark levels it follows the noisy median first difference, jwst#3878). Dropping the highest
    values lowers every pixel's ratio by the same factor (about 0.8 for 12 integrations), which
    the relative threshold of :func:`noisy_threshold` absorbs.

    Parameters
    ----------
    slopes : float32 (nints, ny, nx) [DN/s];  var_rnoise : float32, same shape [(DN/s)^2]
    dq : uint32, same shape
    gain : float or float (ny, nx) [e-/DN];  t_int : float [s] effective integration time
    min_slopes : int    fewest integrations left for a value (5, as jwst_reffiles)
    drop_highest : int  largest slopes dropped per pixel

    Returns
    -------
    float64 (ny, nx): ratio, NaN where undefined
    """
    slopes = np.asarray(slopes, np.float64)
    var_rnoise = np.asarray(var_rnoise, np.float64)
    bad = np.uint32(dqflags.JUMP_DET | dqflags.SATURATED | dqflags.DO_NOT_USE)
    ok = (np.isfinite(slopes) & np.isfinite(var_rnoise) & (var_rnoise > 0)
          & ((np.asarray(dq) & bad) == 0))
    x = np.sort(np.where(ok, slopes, np.inf), axis=0)       # excluded sort last
    n = ok.sum(axis=0)
    keep = np.arange(x.shape[0])[:, None, None] < (n - int(drop_highest))[None]
    m = keep.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(keep, x, 0.0).sum(axis=0) / m
        var = (np.where(keep, x - mean, 0.0) ** 2).sum(axis=0) / (m - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN pixels give NaN
            vr = np.nanmedian(np.where(ok, var_rnoise, np.nan), axis=0)
        expected = np.sqrt(vr + np.maximum(mean, 0.0) / (np.asarray(gain, np.float64) * t_int))
        ratio = np.sqrt(var) / expected
    return np.where(m >= max(2, min_slopes), ratio, np.nan)


def noisy_threshold(ratio, active, clip_sigma=5.0, maxiters=5, threshold=5.0):
    """Clipped mean + ``threshold`` x clipped std of the scatter ratio over active pixels."""
    vals = np.asarray(ratio)[active]
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return float("nan")
    st = common.sigma_clipped_stats(vals[:, None], sigma=clip_sigma, maxiters=maxiters)
    return float(st["mean"][0] + threshold * st["std"][0])


def jump_classes(groupdq, min_jumps=10, early_fraction=0.25, jump_ratio=5.0):
    """RC-like and telegraph-like pixels of one integration from its jump flags.

    Parameters
    ----------
    groupdq : uint8 (ngroups, ny, nx)
    min_jumps : int            JUMP_DET groups needed for either class
    early_fraction : float     the early part is the first ``ceil(early_fraction * ngroups)``
                               groups (at least 1, at most ngroups - 1)
    jump_ratio : float         early jump rate / late jump rate for RC-like

    Returns
    -------
    rc_like, telegraph_like : bool (ny, nx);  n_jumps : int (ny, nx)
    """
    g = np.asarray(groupdq)
    ngroups = g.shape[0]
    jump = (g & _JUMP) != 0
    n = jump.sum(axis=0)
    n_early = int(min(max(1, np.ceil(early_fraction * ngroups)), max(1, ngroups - 1)))
    early = jump[:n_early].sum(axis=0)
    late = n - early
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (early / n_early) / (late / max(1, ngroups - n_early))
    many = n >= min_jumps
    rc = many & (ratio >= jump_ratio)
    return rc, many & ~rc, n


def flat_ramp(data, groupdq=None, ptp=0.0):
    """True where a ramp of one integration does not respond: max - min over groups <= ``ptp``.

    data : float32 (ngroups, ny, nx) [DN];  groupdq ignored (a dead pixel's groups are all kept).
    """
    d = np.asarray(data)
    return (d.max(axis=0) - d.min(axis=0)) <= ptp


def assemble(shape, reference, flags, do_not_use, inherited=None):
    """The MASK DQ: type bits (active pixels), DO_NOT_USE for ``do_not_use`` types, REFERENCE_PIXEL.

    Parameters
    ----------
    shape : (ny, nx);  reference : bool (ny, nx)
    flags : dict type name (:data:`TYPES`) -> bool (ny, nx)
    do_not_use : iterable of type names
    inherited : uint32 (ny, nx) or None   flags kept for unmeasured pixels (OR-ed, active only)

    Returns
    -------
    uint32 (ny, nx)
    """
    dq = np.zeros(shape, np.uint32)
    dnu = {t.lower() for t in do_not_use}
    unknown = dnu - set(TYPES)
    if unknown:
        raise ValueError(f"unknown do_not_use type(s) {sorted(unknown)}; known: {sorted(TYPES)}")
    for name, mask in flags.items():
        bits = TYPES[name] | (dqflags.DO_NOT_USE if name in dnu else 0)
        dq[mask & ~reference] |= np.uint32(bits)
    if inherited is not None:
        keep = np.uint32(~dqflags.REFERENCE_PIXEL & 0xFFFFFFFF)
        dq[~reference] |= np.asarray(inherited, np.uint32)[~reference] & keep
    dq[reference] = np.uint32(dqflags.REFERENCE_PIXEL)
    return dq


# --------------------------------------------------------------------------------------------
# File level
# --------------------------------------------------------------------------------------------
class _CubeReader:
    """Sections of a rateints file (CubeModel layout: SCI, DQ, VAR_RNOISE (nints, ny, nx))."""

    def __init__(self, path):
        self.path = str(path)
        self.header, exts = io.read_headers(self.path)
        for ext in ("SCI", "DQ", "VAR_RNOISE"):
            if ext not in exts or exts[ext].get("NAXIS") != 3:
                raise InputError(self.path, f"a rateints file needs a 3-D {ext} extension "
                                            "(nints, ny, nx): is this a rate (2-D) file?")
        self.shape = tuple(int(exts["SCI"][f"NAXIS{k}"]) for k in (3, 2, 1))
        self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)

    def read(self, ext, rows):
        dtype = np.uint32 if ext == "DQ" else np.float32
        return np.asarray(self._hdul[ext].section[:, rows, :], dtype=dtype)

    def close(self):
        self._hdul.close()


def make_mask(rateints_paths, jump_paths, out_path, *, gain, hot_threshold=1.0, warm_threshold=0.1,
              fraction=0.75, saturated_fraction=0.5, noisy_threshold_sigma=5.0,
              noisy_clip_sigma=5.0, noisy_maxiters=5, min_slopes=5, drop_highest=2, min_jumps=10,
              early_fraction=0.25, jump_ratio=5.0, rc_fraction=0.8, telegraph_fraction=0.8,
              dead_ptp=0.0, do_not_use=("hot", "rc", "telegraph", "dead"), keep_unmeasured=True,
              memory_mb=4000, table_path=None, figure_path=None, pedigree="GROUND",
              author="detcal", useafter=None, descrip=None):
    """Make a bad-pixel MASK reference from darks of one configuration group.

    Parameters
    ----------
    rateints_paths : list of str
        Per-integration slope files (CubeModel layout: SCI [DN/s], DQ, VAR_RNOISE (nints, ny, nx)) from
        ramps processed WITHOUT dark subtraction.
    jump_paths : list of str
        The jump-flagged ramps (RampModel layout; the DARK inputs): JUMP_DET flags for RC and
        TELEGRAPH, the data for DEAD. May be empty (then no RC/TELEGRAPH/DEAD search).
    out_path : str
        MASK reference (MaskModel layout: DQ uint32 + DQ_DEF).
    gain : float or str (GAIN reference path)
        [e-/DN] to convert the thresholds to DN/s (per pixel with a GAIN reference).
    hot_threshold, warm_threshold : float
        [e-/s] (defaults 1.0 and 0.1; the simulator's truth uses 1.0 and 0.05 (SW) / 0.2 (LW)).
    fraction, saturated_fraction : see the module docstring (0.75, 0.5).
    noisy_threshold_sigma, noisy_clip_sigma, noisy_maxiters, min_slopes, drop_highest : noisy
        rule (5, 5, 5, 5, 2).
    min_jumps, early_fraction, jump_ratio, rc_fraction, telegraph_fraction : jump rules
        (10, 0.25, 5, 0.8, 0.8).
    dead_ptp : float
        [DN] peak-to-peak of a non-responding ramp (0: exactly constant).
    do_not_use : iterable of type names ('hot', 'warm', 'noisy', 'rc', 'telegraph', 'dead')
    keep_unmeasured : bool
        Pixels without any usable slope keep the input PIXELDQ flags.
    memory_mb : float
        Budget for the blocks of rows processed at a time.
    table_path, figure_path : str or None
        TSV of counts per type (type, DQ flag and value, pixels, fraction of active pixels,
        DO_NOT_USE) and a bar chart drawn from it.
    pedigree, author, useafter, descrip : reference keywords (see :func:`make_dark`).

    Returns
    -------
    dict: ``path``, ``counts`` (type -> pixels), ``thresholds_DN_per_s`` (median over pixels),
    ``noisy_threshold`` (ratio), ``n_integrations``, ``n_jump_integrations``, ``unmeasured``.
    """
    rate_readers, jump_readers = [], []
    try:
        for p in rateints_paths:
            rate_readers.append(_CubeReader(p))
        if not rate_readers:
            raise InputError("<inputs>", "no rateints files given")
        jump_readers = [io.RampReader(p, "dq_init") for p in jump_paths]
        headers = [r.header for r in rate_readers + jump_readers]
        common.check_same_group(headers, [r.path for r in rate_readers + jump_readers], "mask")
        shapes = {r.shape[-2:] for r in rate_readers + jump_readers}
        if len(shapes) != 1:
            raise InputError(rate_readers[0].path, f"inputs disagree on the frame shape: {sorted(shapes)}")
        return _make_mask(rate_readers, jump_readers, out_path, locals())
    finally:
        for r in rate_readers + jump_readers:
            r.close()


def _make_mask(rate_readers, jump_readers, out_path, p):
    first = rate_readers[0]
    for r in rate_readers + jump_readers:
        if str(r.header.get("S_DARK", "")).upper() == "COMPLETE":
            raise InputError(r.path, "S_DARK=COMPLETE: hot and warm pixels are found in slopes "
                                     "that still hold their dark current (process without dark_current)")
    ny, nx = first.shape[1:]
    gain = common.gain_map(p["gain"], first)
    hot_dn = np.float32(p["hot_threshold"]) / gain
    warm_dn = np.float32(p["warm_threshold"]) / gain
    geom = common.geometry_of(first)
    masks = common.regions(geom)
    reference, active = masks["reference"], masks["active"]
    nrate = sum(r.shape[0] for r in rate_readers)
    t_int = (keywords.value(first.header, "NGROUPS", first.path) - 1) * keywords.value(
        first.header, "TGROUP", first.path)
    jump_ints = [(r, i) for r in jump_readers for i in range(r.shape[0])]
    ngroups = max([r.shape[1] for r in jump_readers], default=0)
    per_row = nx * (nrate * 3 * 4 * 3 + ngroups * 5 * 2 + 64)
    avail = (p["memory_mb"] - 300) * 1e6
    rows = int(max(1, min(ny, avail // per_row))) if avail > 0 else 1

    hot = np.zeros((ny, nx), bool)
    warm = np.zeros((ny, nx), bool)
    ratio = np.full((ny, nx), np.nan)
    measured = np.zeros((ny, nx), bool)
    n_rc = np.zeros((ny, nx), np.int32)
    n_tel = np.zeros((ny, nx), np.int32)
    n_flat = np.zeros((ny, nx), np.int32)
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        sl = slice(r0, r1)
        sci = np.concatenate([r.read("SCI", sl) for r in rate_readers])
        vrn = np.concatenate([r.read("VAR_RNOISE", sl) for r in rate_readers])
        dq = np.concatenate([r.read("DQ", sl) for r in rate_readers])
        hot[sl], warm[sl] = hot_warm(sci, dq, hot_dn[sl], warm_dn[sl], p["fraction"],
                                     p["saturated_fraction"])
        ratio[sl] = slope_scatter(sci, vrn, dq, gain[sl], t_int, p["min_slopes"],
                                  p["drop_highest"])
        measured[sl] = np.any(np.isfinite(sci) | ((dq & dqflags.SATURATED) != 0), axis=0)
        del sci, vrn, dq
        for reader, i in jump_ints:
            gdq = reader.read("GROUPDQ", i, slice(None), sl)
            rc, tel, _ = jump_classes(gdq, p["min_jumps"], p["early_fraction"], p["jump_ratio"])
            n_rc[sl] += rc
            n_tel[sl] += tel
            del gdq
            data = reader.read("SCI", i, slice(None), sl)
            n_flat[sl] += flat_ramp(data, ptp=p["dead_ptp"])
            del data
    limit = noisy_threshold(ratio, active, p["noisy_clip_sigma"], p["noisy_maxiters"],
                            p["noisy_threshold_sigma"])
    with np.errstate(invalid="ignore"):
        noisy = ratio > limit
    nj = len(jump_ints)
    rc = (n_rc > p["rc_fraction"] * nj) if nj else np.zeros((ny, nx), bool)
    tel = ((n_tel > p["telegraph_fraction"] * nj) & ~rc) if nj else np.zeros((ny, nx), bool)
    dead = (n_flat >= p["fraction"] * nj) if nj else np.zeros((ny, nx), bool)
    flags = {"hot": hot, "warm": warm, "noisy": noisy, "rc": rc, "telegraph": tel, "dead": dead}
    unmeasured = active & ~measured
    inherited = None
    if p["keep_unmeasured"] and unmeasured.any() and jump_readers:
        inherited = np.where(unmeasured, jump_readers[0].read("PIXELDQ"), 0).astype(np.uint32)
    dq = assemble((ny, nx), reference, flags, p["do_not_use"], inherited)

    dnu = {t.lower() for t in p["do_not_use"]}
    nact = int(active.sum())
    rows_t = []
    for name, bit in TYPES.items():
        n = int(np.count_nonzero(flags[name] & active))
        rows_t.append({"type": name, "dq_flag": dqflags.names(bit)[0], "dq_value": int(bit),
                       "npix": n, "fraction_of_active": n / nact if nact else float("nan"),
                       "do_not_use": name in dnu})
    n_dnu = int(np.count_nonzero(dq & dqflags.DO_NOT_USE))
    rows_t.append({"type": "do_not_use (any)", "dq_flag": "DO_NOT_USE", "dq_value": dqflags.DO_NOT_USE,
                   "npix": n_dnu, "fraction_of_active": n_dnu / nact if nact else float("nan"),
                   "do_not_use": True})
    rows_t.append({"type": "unmeasured (inputs' flags kept)" if inherited is not None else "unmeasured",
                   "dq_flag": "", "dq_value": 0, "npix": int(unmeasured.sum()),
                   "fraction_of_active": int(unmeasured.sum()) / nact if nact else float("nan"),
                   "do_not_use": False})
    rows_t.append({"type": "reference", "dq_flag": "REFERENCE_PIXEL",
                   "dq_value": dqflags.REFERENCE_PIXEL, "npix": int(reference.sum()),
                   "fraction_of_active": float("nan"), "do_not_use": False})
    table = pd.DataFrame(rows_t)
    label = common.config_label(first.header)
    descrip = p["descrip"] or (f"{label} bad pixels from darks: {nrate} integrations, "
                               f"{len(rate_readers)} files (detcal {__version__})")
    readers_for_header = rate_readers + jump_readers
    header = common.header_for("MASK", readers_for_header, descrip, p["author"], p["pedigree"],
                               p["useafter"])
    header["BPHOT"] = (float(p["hot_threshold"]), "[e-/s] HOT threshold")
    header["BPWARM"] = (float(p["warm_threshold"]), "[e-/s] WARM threshold")
    header["BPFRAC"] = (float(p["fraction"]), "fraction of integrations needed")
    header["BPNOISY"] = (float(limit) if np.isfinite(limit) else 0.0, "scatter ratio limit (noisy)")
    header["BPNINTS"] = (int(nrate), "rateints integrations")
    params = {k: p[k] for k in ("hot_threshold", "warm_threshold", "fraction", "saturated_fraction",
                                "noisy_threshold_sigma", "noisy_clip_sigma", "noisy_maxiters",
                                "min_slopes", "drop_highest", "min_jumps", "early_fraction", "jump_ratio",
                                "rc_fraction", "telegraph_fraction", "dead_ptp", "do_not_use",
                                "keep_unmeasured")}
    params["gain"] = p["gain"] if not isinstance(p["gain"], str) else os.path.basename(p["gain"])
    io.write_reference(out_path, "MASK", {"DQ": dq}, header, step="detcal.reffiles.make_mask",
                       inputs=[r.path for r in readers_for_header], params=params)
    if p["table_path"]:
        common.write_table(table, p["table_path"])
    if p["figure_path"]:
        plot_mask_table(table, p["figure_path"], f"{label}: bad pixels from {nrate} dark integrations")
    counts = {row["type"]: row["npix"] for row in rows_t}
    log.info("mask: wrote %s; %s", out_path, counts)
    return {"path": str(out_path), "counts": counts,
            "thresholds_DN_per_s": {"hot": float(np.nanmedian(hot_dn)), "warm": float(np.nanmedian(warm_dn))},
            "noisy_threshold": limit, "n_integrations": nrate, "n_jump_integrations": nj,
            "unmeasured": int(unmeasured.sum())}


def plot_mask_table(table, path, title=""):
    """Horizontal bar chart of the pixels per flag type (from the :func:`make_mask` table)."""
    from ..plots import plt
    fig, ax = plt.subplots(figsize=(8, 4.8))
    y = np.arange(len(table))
    counts = table["npix"].to_numpy(float)
    colors = ["tab:red" if d else "tab:blue" for d in table["do_not_use"]]
    ax.barh(y, np.maximum(counts, 0.8), color=colors)
    for k, c in enumerate(counts):
        ax.text(max(c, 0.8) * 1.1, k, f"{int(c)}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{t} ({f})" if f else t for t, f in zip(table["type"], table["dq_flag"])],
                  fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("pixels [count] (red: DO_NOT_USE)")
    ax.invert_yaxis()
    common.save_figure(fig, path, title)
