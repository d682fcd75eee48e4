"""READNOISE reference files: CDS noise per pixel from independent group pairs of dark ramps.

Convention (what the jwst READNOISE reference holds, "per CDS pair of reads"): the values are the
**CDS noise in DN**, i.e. the standard deviation of the difference of two single-frame reads,
sqrt(2) x the single-frame read noise; they are NOT divided by sqrt(2). jwst's jump and ramp_fit
steps divide by sqrt(2 * NFRAMES) themselves.

Input: dark ramps of ONE configuration group after dq_init, saturation, superbias and refpix
(linearity and jump may have run: the same jump products the DARK uses are fine). Refpix matters:
without it the per-frame output offsets and drifts enter every difference (NRC-09 and the JWQL
read-noise monitor use refpix-corrected ramps). MIRI drops its first 5 groups and the last group
(reset and last-frame effects; jwst_reffiles and JWQL do the same).

Algorithm per pixel: independent CDS pairs ``G[1] - G[0], G[3] - G[2], ...`` of every
integration of every file (an odd number of groups drops the last one; never broadcast), a pair
being dropped when either group is DO_NOT_USE or SATURATED or its second group is the first after
a jump (JUMP_DET: a cosmic ray arrived between the two reads); all pairs are stacked and the
sigma-clipped std (3 sigma, 3 rounds as jwst_reffiles, ddof 1) is divided by
:func:`detcal.analysis.robust.clip_bias_factor` (clipping a Gaussian at 3 sigma removes 1.5 % of
its std, which jwst_reffiles leaves in). For NFRAMES > 1 the group difference has
1/sqrt(NFRAMES) of the single-frame CDS noise, so it is scaled by sqrt(NFRAMES) (white noise).
Pixels with fewer than ``min_values`` pairs get the median of their region (amplifier, active or
reference) and are counted.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import __version__, dqflags, io, keywords
from ..analysis import robust
from ..analysis.robust import clip_bias_factor
from ..errors import InputError
from ..geometry import family
from ..parameters import keyword_parameters
from . import common

log = logging.getLogger("detcal.reffiles.readnoise")

_BAD = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)
_JUMP = np.uint8(dqflags.JUMP_DET)

#: Groups dropped at the start and end of a ramp, per instrument family.
SKIP = {"NIR": (0, 0), "MIRI": (5, 1)}


# --------------------------------------------------------------------------------------------
# Pure array functions
# --------------------------------------------------------------------------------------------
def pair_groups(ngroups, skip_first=0, skip_last=0):
    """Group indices of the independent CDS pairs: list of (first, second).

    Groups ``skip_first .. ngroups - skip_last - 1`` are paired in order; an odd count drops its
    last group. ``pair_groups(5) == [(0, 1), (2, 3)]``.
    """
    start, stop = int(skip_first), int(ngroups) - int(skip_last)
    n = max(0, stop - start) // 2
    return [(start + 2 * k, start + 2 * k + 1) for k in range(n)]


def cds_frames(data, groupdq, skip_first=0, skip_last=0):
    """Independent CDS differences of one integration.

    Parameters
    ----------
    data : ndarray, float32, shape (ngroups, ny, nx)      [DN]
    groupdq : ndarray, uint8, same shape
    skip_first, skip_last : int                          groups dropped at each end

    Returns
    -------
    ndarray, float32, shape (npairs, ny, nx)             [DN], ``G[b] - G[a]``; NaN where either
    group is DO_NOT_USE/SATURATED or ``G[b]`` has JUMP_DET
    """
    pairs = pair_groups(data.shape[0], skip_first, skip_last)
    out = np.empty((len(pairs),) + data.shape[1:], np.float32)
    for k, (a, b) in enumerate(pairs):
        np.subtract(data[b], data[a], out=out[k], dtype=np.float32)
        bad = ((groupdq[a] | groupdq[b]) & _BAD) != 0
        bad |= (groupdq[b] & _JUMP) != 0
        out[k][bad] = np.nan
    return out


def cds_noise(cds, sigma=3.0, maxiters=3, nframes=1, unbias=True):
    """Per-pixel CDS noise from a stack of CDS frames.

    Parameters
    ----------
    cds : ndarray, float32, shape (nvalues, ny, nx)   [DN], NaN = excluded
    sigma, maxiters : clipping (3, 3)
    nframes : int        NFRAMES of the groups (scales to single-frame CDS noise)
    unbias : bool        divide by the clipping factor (see the module docstring)

    Returns
    -------
    noise : float32 (ny, nx) [DN] CDS noise, NaN with fewer than 2 values
    count : int32 (ny, nx) values kept
    """
    st = robust.sigma_clipped_stats(cds, sigma=sigma, maxiters=maxiters, ddof=1)
    factor = clip_bias_factor(sigma, maxiters) if unbias else 1.0
    noise = st["std"] / factor * np.sqrt(float(nframes))
    return noise.astype(np.float32), st["count"]


# --------------------------------------------------------------------------------------------
# File level
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadnoiseParameters:
    """Parameters of the READNOISE builder (the rule's ``params.kwargs`` and their defaults).

    sigma, maxiters, unbias    clipping of the CDS stack [sigma, iterations] and the clipping-bias
                               correction of the std (3, 3, True; :func:`cds_noise`)
    skip_first, skip_last      groups dropped at each end of every ramp (None: :data:`SKIP`, MIRI
                               5 and 1, NIR 0 and 0)
    min_values : int           fewest CDS values for a pixel's own estimate (2); others get their
                               region median
    memory_mb : float          budget [MB]: the CDS stack is built in blocks of rows that fit it (4000)
    """

    sigma: float = 3.0
    maxiters: int = 3
    unbias: bool = True
    skip_first: int = None
    skip_last: int = None
    min_values: int = 2
    memory_mb: float = 4000


@keyword_parameters(ReadnoiseParameters)
def make_readnoise(ramp_paths, out_path, *, gain_path=None, table_path=None, figure_path=None,
                   pedigree="GROUND", author="detcal", useafter=None, descrip=None, parameters=None):
    """Make a READNOISE reference (CDS noise in DN) from dark ramps of one configuration group.

    Read (group pairs by blocks of rows) -> CDS noise (:func:`cds_noise_map`) -> fill
    (:func:`fill_few`) -> table and write.

    Parameters
    ----------
    ramp_paths : list of str
        Ramps after dq_init, saturation, superbias, refpix (NIR; MIRI: its chain up to refpix),
        optionally linearity and jump. One configuration group.
    out_path : str
        READNOISE reference (ReadnoiseModel layout, SCI BUNIT = DN).
    gain_path : str (GAIN reference), a number [e-/DN] or None
        Adds electron columns to the table.
    table_path, figure_path : str or None
        Per-region statistics TSV (amplifiers over active pixels, all active, reference pixels:
        npix, clipped mean/std, percentiles, in DN and e-) and a figure drawn from it.
    pedigree, author, useafter, descrip : reference keywords (see :func:`make_dark`).
    sigma, maxiters, unbias, skip_first, skip_last, min_values, memory_mb
        :class:`ReadnoiseParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: ``path``, ``n_files``, ``n_integrations``, ``n_cds`` (pairs per pixel, all files),
    ``median_active_DN``, ``regions`` (table rows), ``n_filled``, ``pairs`` (group pairs used).
    """
    readers = common.open_inputs(ramp_paths, step="dq_init", what="read-noise")
    try:
        return _make_readnoise(readers, out_path, parameters, gain_path, (table_path, figure_path),
                               (pedigree, author, useafter, descrip))
    finally:
        common.close_all(readers)


def skipped_groups(fam, ngroups, skip_first=None, skip_last=None):
    """(first, last) groups dropped: the family's :data:`SKIP` unless given; a short MIRI ramp
    keeps one CDS pair rather than none (the reset anomaly's early groups are then used)."""
    sf, sl = SKIP[fam]
    sf = sf if skip_first is None else int(skip_first)
    sl = sl if skip_last is None else int(skip_last)
    if skip_first is None and sf and ngroups - sl - sf < 2:
        sf = max(0, ngroups - sl - 2)
        log.warning("NGROUPS=%d: the default %d leading groups would leave no CDS pair; dropping %d",
                    ngroups, SKIP[fam][0], sf)
    return sf, sl


def cds_noise_map(entries, pairs, shape, nframes, rows, parameters):
    """CDS noise [DN] and values used per pixel from the group pairs of every integration.

    entries : [(reader, integration)];  pairs : [(g0, g1)] of :func:`pair_groups`;  shape :
    (ny, nx);  rows : block length. Returns (noise float32, count int32).
    """
    p = parameters
    ny, nx = shape
    nvalues = len(entries) * len(pairs)
    noise, count = np.empty((ny, nx), np.float32), np.empty((ny, nx), np.int32)
    g_lo, g_hi = pairs[0][0], pairs[-1][1] + 1
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        stack = np.empty((nvalues, r1 - r0, nx), np.float32)
        k = 0
        for reader, i in entries:
            sci = reader.read("SCI", i, slice(g_lo, g_hi), slice(r0, r1))
            gdq = reader.read("GROUPDQ", i, slice(g_lo, g_hi), slice(r0, r1))
            c = cds_frames(sci, gdq, 0, 0)[:len(pairs)]
            stack[k:k + len(c)] = c
            k += len(c)
            del sci, gdq, c
        noise[r0:r1], count[r0:r1] = cds_noise(stack, p.sigma, p.maxiters, nframes, p.unbias)
        del stack
    return noise, count


def fill_few(noise, count, masks, min_values):
    """Pixels with fewer than ``min_values`` (at least 2) values or no finite noise get their
    region's median (in place); returns how many."""
    few = (count < max(2, int(min_values))) | ~np.isfinite(noise)
    n_filled = int(few.sum())
    if n_filled:
        for name, mask in masks.items():
            if name == "active":
                continue
            ok = mask & ~few
            fill = float(np.median(noise[ok])) if ok.any() else float("nan")
            noise[mask & few] = fill
    return n_filled


def _readnoise_header(readers, keywords_, label, nvalues, nframes, groups, p):
    pedigree, author, useafter, descrip = keywords_
    if descrip is None:
        descrip = (f"{label} CDS read noise [DN] from {nvalues} independent group pairs, "
                   f"{len(readers)} files (detcal {__version__})")
    header = common.header_for("READNOISE", readers, descrip, author, pedigree, useafter,
                               extra=("READPATT",))
    header["RNCONV"] = ("CDS", "CDS noise = sqrt(2) x single-frame noise")
    header["RNNFRAME"] = (int(nframes), "NFRAMES of inputs; group CDS x sqrt(NFRAMES)")
    header["RNSIGMA"] = (float(p.sigma), "[sigma] clip threshold")
    header["RNITERS"] = (int(p.maxiters), "clipping iterations")
    header["RNUNBIAS"] = (bool(p.unbias), "std corrected for the clipping bias")
    header["RNNPAIRS"] = (int(nvalues), "CDS pairs per pixel (all files)")
    header["RNGROUPS"] = (f"{groups[0]}-{groups[1] - 1}", "groups used (0-based)")
    return header


def _make_readnoise(readers, out_path, p, gain_path, outputs, keywords_):
    first = readers[0]
    fam = family(keywords.value(first.header, "INSTRUME", first.path))
    ngroups, ny, nx = first.shape[1:]
    sf, sl = skipped_groups(fam, ngroups, p.skip_first, p.skip_last)
    nframes = keywords.value(first.header, "NFRAMES", first.path)
    pairs = pair_groups(ngroups, sf, sl)
    if not pairs:
        raise InputError(first.path, f"NGROUPS={ngroups} leaves no CDS pair after dropping "
                                            f"{sf} leading and {sl} trailing groups")
    for r in readers:
        if str(r.header.get("S_REFPIX", "")).upper() != "COMPLETE":
            log.warning("%s: refpix has not run (no S_REFPIX=COMPLETE); output offsets and drifts "
                        "enter the CDS noise", r.path)
    entries = [(r, i) for r in readers for i in range(r.shape[0])]
    nvalues = len(entries) * len(pairs)
    per_pixel = 4 * nvalues + 10 * ngroups + 4 * len(pairs)        # stack + read buffers + CDS
    avail_mb = p.memory_mb - 300 - 1.25 * robust.STATS_WORK_MB
    rows = io.block_size(avail_mb, per_pixel, (ny, nx)) if avail_mb > 0 else 1
    noise, count = cds_noise_map(entries, pairs, (ny, nx), nframes, rows, p)

    masks = common.regions(common.geometry_of(first))
    n_filled = fill_few(noise, count, masks, p.min_values)
    gain_e = None
    if gain_path is not None:
        gain_e = float(np.nanmedian(common.gain_map(gain_path, first)[masks["active"]]))
    table = _region_table(noise, masks, gain_e)
    label = common.config_label(first.header)
    header = _readnoise_header(readers, keywords_, label, nvalues, nframes, (pairs[0][0], pairs[-1][1] + 1),
                               p)
    median_active = float(np.median(noise[masks["active"]])) if masks["active"].any() else float("nan")
    params = {"sigma": p.sigma, "maxiters": p.maxiters, "unbias": p.unbias, "skip_first": sf,
              "skip_last": sl, "min_values": p.min_values}
    io.write_reference(out_path, "READNOISE", {"SCI": noise}, header,
                       step="detcal.reffiles.make_readnoise", inputs=[r.path for r in readers],
                       params=params, units={"SCI": "DN"})
    table_path, figure_path = outputs
    if table_path:
        common.write_table(table, table_path)
    if figure_path:
        plot_readnoise_table(table, figure_path, f"{label}: CDS read noise, {nvalues} pairs per pixel")
    log.info("readnoise: wrote %s; median CDS noise of active pixels %.4g DN; %d pixels filled",
             out_path, median_active, n_filled)
    return {"path": str(out_path), "n_files": len(readers), "n_integrations": len(entries),
            "n_cds": nvalues, "median_active_DN": median_active,
            "regions": table.to_dict("records"), "n_filled": n_filled, "pairs": pairs}


def _region_table(noise, masks, gain):
    rows = []
    for st in common.region_stats(noise, masks):
        row = {"region": st["region"], "npix": st["npix"]}
        for key in ("clipped_mean", "clipped_std", "p05", "p25", "p50", "p75", "p95"):
            row[f"readnoise_{key}_DN"] = st[key]
        if gain:
            for key in ("clipped_mean", "p50"):
                row[f"readnoise_{key}_e"] = st[key] * gain
        rows.append(row)
    return pd.DataFrame(rows)


def plot_readnoise_table(table, path, title=""):
    """Box plot per region (from the table's percentiles) with the clipped mean +- std."""
    from ..plots import plt, save_figure
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.bxp(common.bxp_stats(table, "readnoise", "DN"), showfliers=False)
    x = np.arange(1, len(table) + 1)
    ax.errorbar(x + 0.25, table["readnoise_clipped_mean_DN"], yerr=table["readnoise_clipped_std_DN"],
                fmt="rD", ms=5, capsize=3, label="clipped mean +- std")
    ax.set_ylabel("CDS read noise [DN]")
    ax.set_xlabel("region (amplifiers: active pixels)")
    ax.set_title("box 25-75 %, whiskers 5-95 %", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=90, title=title)
