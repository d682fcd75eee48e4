"""Jump (cosmic-ray) statistics from the jump-step ramps of one configuration group.

What is counted (per file, per integration, per amplifier and for the whole group):

* **JUMP_DET flags**: (group, pixel) cells of GROUPDQ with JUMP_DET, in active pixels (the
  reference pixels are never counted). The jump step flags the group where the jump appears and,
  for large jumps, the 4 neighbours, so flags are not events.
* **Pixels with >= 1 jump**: as a count and as % of the active pixels (per integration, the
  NRC-09 notebook's number, and over all integrations of a file or of the group).
* **Events**: one cosmic-ray hit flags its pixel and (for large hits) its neighbours in the group
  where the charge arrives. Events are the connected components of JUMP_DET cells in active
  pixels, per integration, with 8-connectivity within a group (``connectivity=4`` optional).
  When NFRAMES > 1 (or ``link_groups=True``) the same pixel in consecutive groups is connected
  too: a hit that arrives during the frames of an averaged group shows in two consecutive
  differences (and the optional after-jump flagging flags later groups of the same pixel). Two
  hits whose flags touch in one group count as one event (about 0.4 % of events at 4
  events/cm^2/s on 18 um pixels, growing with the rate). Each event is placed at its *peak*: the flagged
  (group, pixel) cell with the largest group-to-group increase; its amplifier is the peak's.
* **CR event rate** [events / cm^2 / s]: events / (area x time). A hit is detectable only as a
  difference between two usable groups: hits before the read of group 1 (NIR RAPID: during
  the first frame) land in group 1 and are invisible. The area-time product is therefore
  ``pitch^2 x TGROUP x`` (number of usable group differences of active pixels), a difference
  being usable when neither group is DO_NOT_USE or SATURATED and the pixel is not DO_NOT_USE.
  For a clean detector this is ``A_active x (NGROUPS - 1) x TGROUP`` per integration: the time
  from the first to the last group. Its Poisson error is ``sqrt(N) / (A t)``. Jumps found by
  noise (false positives) are counted as events: they are negligible above ~1 event/cm^2/s for
  4-sigma thresholds (measured in the tests).

Numbering in tables: integrations and groups 1-based (as JWST documents them), pixel rows and
columns 0-based in the science frame (numpy indices). Signals in DN.
"""

import math

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy import ndimage

from .. import dqflags, io
from ..errors import InputError
from . import common

_JUMP = np.uint8(dqflags.JUMP_DET)
_BAD_GROUP = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)

#: dtype of the event list of one integration (0-based indices here; tables convert to 1-based).
EVENT_DTYPE = np.dtype([("group", "i4"), ("y", "i4"), ("x", "i4"), ("npix", "i4"),
                        ("ngroups", "i4"), ("peak_jump", "f4")])

#: Columns of the example-ramp table.
EXAMPLE_COLUMNS = ["example", "exposure", "integration", "pixel_row", "pixel_column", "group", "signal_DN",
                   "jump_flag", "groupdq"]

CONVENTIONS = {
    "events": "connected components of JUMP_DET (group, pixel) cells in active pixels per integration: "
              "8-connected (or 4) within a group; the same pixel in consecutive groups connected when "
              "NFRAMES > 1 (link_groups); placed at the cell with the largest group-to-group increase",
    "cr_rate": "events / (pixel area x TGROUP x number of usable group differences of active pixels); "
               "clean detector: events / (A_active x (NGROUPS-1) x TGROUP) per integration, i.e. hits "
               "arriving before the read of group 1 are not detectable and not in the time",
    "cr_rate_unit": "events / cm^2 / s",
    "pct_pixels_with_jump": "100 x pixels with >= 1 JUMP_DET group / active (non-reference) pixels",
    "numbering": "integrations and groups 1-based; pixel_row / pixel_column 0-based, science frame",
    "signal_unit": "DN",
}


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------
def event_structure(connectivity=8, link_groups=False):
    """bool (3, 3, 3) structuring element over (group, row, column) for :func:`find_events`.

    Within a group: 8- (or 4-) connected pixels; across groups (``link_groups``): only the same
    pixel in the previous and next group.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    if link_groups:
        s[0, 1, 1] = s[2, 1, 1] = True
    return s


def find_events(jump, data, select, connectivity=8, link_groups=False):
    """Cosmic-ray events of one integration.

    Parameters
    ----------
    jump : bool (ngroups, ny, nx)    JUMP_DET cells
    data : float (ngroups, ny, nx)   [DN] the ramp (for the peak of each event)
    select : bool (ny, nx)           pixels that count (active pixels)
    connectivity : 4 or 8            within-group connectivity
    link_groups : bool               connect the same pixel in consecutive groups

    Returns
    -------
    events : structured array :data:`EVENT_DTYPE`, one row per event: first ``group`` (0-based),
        peak pixel ``y``, ``x`` (0-based), ``npix`` (distinct pixels), ``ngroups`` (groups
        spanned), ``peak_jump`` [DN] (group-to-group increase at the peak)
    labels : int32 (ngroups, ny, nx), 0 outside events, k for event k-1
    """
    j = np.asarray(jump, bool) & np.asarray(select, bool)[None]
    labels, n = ndimage.label(j, structure=event_structure(connectivity, link_groups))
    labels = labels.astype(np.int32, copy=False)
    events = np.zeros(n, EVENT_DTYPE)
    if n == 0:
        return events, labels
    # work on the labelled cells only (sparse): group, pixel, label, group-to-group increase
    ny, nx = j.shape[1:]
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat]
    g, pix = np.divmod(flat, ny * nx)
    data = np.asarray(data)
    dflat = data.reshape(data.shape[0], -1)
    inc = np.full(flat.size, -np.inf)
    up = g >= 1
    inc[up] = dflat[g[up], pix[up]].astype(np.float64) - dflat[g[up] - 1, pix[up]]
    inc[~np.isfinite(inc)] = -np.inf
    order = np.lexsort((-inc, lab))                 # by label, largest increase first
    lab_s = lab[order]
    start = np.flatnonzero(np.r_[True, lab_s[1:] != lab_s[:-1]])
    peak = order[start]
    events["y"], events["x"] = np.divmod(pix[peak], nx)
    events["peak_jump"] = inc[peak]
    g_s = g[order]
    gmin = np.minimum.reduceat(g_s, start)
    events["group"] = gmin
    events["ngroups"] = np.maximum.reduceat(g_s, start) - gmin + 1
    pairs = np.unique(lab.astype(np.int64) * (ny * nx) + pix)       # distinct (label, pixel)
    events["npix"] = np.bincount(pairs // (ny * nx), minlength=n + 1)[1:]
    return events, labels


def usable_differences(groupdq, pixeldq, select):
    """Number of usable group differences per pixel in one integration.

    Parameters
    ----------
    groupdq : uint8 (ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    select : bool (ny, nx)

    Returns
    -------
    int32 (ny, nx): differences (g-1, g) with neither group DO_NOT_USE or SATURATED; 0 where the
    pixel is not selected or is DO_NOT_USE.
    """
    ok = (np.asarray(groupdq) & _BAD_GROUP) == 0
    n = np.count_nonzero(ok[1:] & ok[:-1], axis=0).astype(np.int32)
    n[~select | ((np.asarray(pixeldq) & dqflags.DO_NOT_USE) != 0)] = 0
    return n


def integration_statistics(data, groupdq, pixeldq, amp_map, active, noutputs, tgroup, pitch_um,
                           connectivity=8, link_groups=False):
    """Jump statistics of one integration, per amplifier.

    Parameters
    ----------
    data : float32 (ngroups, ny, nx) [DN]
    groupdq : uint8 (ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    amp_map : int (ny, nx), output index; active : bool (ny, nx)
    noutputs : int
    tgroup : float [s]
    pitch_um : float [um]
    connectivity : 4 or 8
    link_groups : bool, see :func:`find_events`

    Returns
    -------
    stats : dict amplifier label -> dict with ``n_active_pixels``, ``n_jump_flags``,
        ``n_pixels_with_jump``, ``n_events``, ``n_event_pixels`` (sum of event sizes),
        ``exposure_cm2_s`` (area-time product of usable differences)
    events : structured array (:data:`EVENT_DTYPE` plus ``amplifier`` label field)
    jumped : bool (ny, nx), pixels with >= 1 JUMP_DET group (active only)
    njump : int16 (ny, nx), JUMP_DET groups per pixel (active only)
    """
    jump = (np.asarray(groupdq) & _JUMP) != 0
    jump &= active[None]
    njump = jump.sum(axis=0, dtype=np.int16)
    jumped = njump > 0
    events, _ = find_events(jump, data, active, connectivity, link_groups)
    ev_amp = np.asarray(amp_map)[events["y"], events["x"]]
    usable = usable_differences(groupdq, pixeldq, active)
    pix_area = (pitch_um * 1e-4) ** 2
    stats = {}
    for label, sel in common.amplifier_masks(amp_map, active, noutputs).items():
        in_amp = np.ones(len(events), bool) if label == common.ALL else ev_amp == int(label) - 1
        stats[label] = {
            "n_active_pixels": int(sel.sum()),
            "n_jump_flags": int(njump[sel].sum()),
            "n_pixels_with_jump": int(jumped[sel].sum()),
            "n_events": int(in_amp.sum()),
            "n_event_pixels": int(events["npix"][in_amp].sum()),
            "exposure_cm2_s": float(usable[sel].sum()) * tgroup * pix_area,
        }
    out = np.zeros(len(events), EVENT_DTYPE.descr + [("amplifier", "U3")])
    for name in EVENT_DTYPE.names:
        out[name] = events[name]
    out["amplifier"] = (ev_amp + 1).astype(str)
    return stats, out, jumped, njump


def rate_and_error(n_events, exposure_cm2_s):
    """CR rate and its Poisson error [events / cm^2 / s]; NaN when the exposure is 0."""
    if exposure_cm2_s <= 0:
        return math.nan, math.nan
    return n_events / exposure_cm2_s, math.sqrt(n_events) / exposure_cm2_s


def _row(exposure, expstart, label, nints, acc, union, t_int):
    """One table row from accumulated per-integration stats."""
    n_act = acc["n_active_pixels"]
    rate, err = rate_and_error(acc["n_events"], acc["exposure_cm2_s"])
    return {
        "exposure": exposure, "expstart_mjd": expstart, "amplifier": label,
        "n_integrations": nints, "n_active_pixels": n_act,
        "n_jump_flags": acc["n_jump_flags"],
        "jump_flags_per_integration": acc["n_jump_flags"] / nints,
        "n_pixels_with_jump": union,
        "pct_pixels_with_jump": 100.0 * union / n_act if n_act else math.nan,
        "pct_pixels_with_jump_per_integration": (100.0 * acc["n_pixels_with_jump"] / nints / n_act
                                                 if n_act else math.nan),
        "n_events": acc["n_events"],
        "events_per_integration": acc["n_events"] / nints,
        "mean_pixels_per_event": acc["n_event_pixels"] / acc["n_events"] if acc["n_events"] else math.nan,
        "detection_time_per_integration_s": t_int,
        "exposure_cm2_s": acc["exposure_cm2_s"],
        "cr_rate_events_per_cm2_per_s": rate,
        "cr_rate_err_events_per_cm2_per_s": err,
    }


def _add(acc, stats):
    for key, val in stats.items():
        if key != "n_active_pixels":
            acc[key] = acc.get(key, 0) + val
    acc["n_active_pixels"] = stats["n_active_pixels"]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def _example_pixels(jumped, n):
    """Up to ``n`` (row, column) pixels evenly spread through the jumped pixels (row-major order)."""
    ys, xs = np.nonzero(jumped)
    if len(ys) == 0:
        return []
    pick = np.unique(np.linspace(0, len(ys) - 1, min(n, len(ys))).round().astype(int))
    return [(int(ys[i]), int(xs[i])) for i in pick]


def example_table(ramp, exposure, n_examples=9):
    """Long table of example ramps of pixels with jumps (the figures' data).

    Pixels come from the first integration of ``ramp`` that has jumps in active pixels; the
    example with the largest flagged group-to-group increase is example 1 (the single-ramp figure).
    Columns: example, exposure, integration, pixel_row, pixel_column, group, signal_DN,
    jump_flag (0/1), groupdq.
    """
    cols = EXAMPLE_COLUMNS
    _, _, active = common.layout(ramp.header, ramp.data.shape, ramp.path)
    for i in range(ramp.data.shape[0]):
        jump = ((ramp.groupdq[i] & _JUMP) != 0) & active[None]
        pixels = _example_pixels(jump.any(axis=0), n_examples)
        if not pixels:
            continue
        size = []
        for y, x in pixels:
            d = np.diff(ramp.data[i, :, y, x].astype(np.float64))
            flagged = jump[1:, y, x]
            size.append(d[flagged].max() if flagged.any() else -np.inf)
        order = np.argsort(size)[::-1]
        rows = []
        for k, idx in enumerate(order):
            y, x = pixels[idx]
            for g in range(ramp.data.shape[1]):
                rows.append((k + 1, exposure, i + 1, y, x, g + 1, float(ramp.data[i, g, y, x]),
                             int(jump[g, y, x]), int(ramp.groupdq[i, g, y, x])))
        return pd.DataFrame(rows, columns=cols)
    return pd.DataFrame([], columns=cols)


def _draw_ramp(ax, t, title_prefix=""):
    ax.plot(t.group, t.signal_DN, "o-", color="black", ms=4, lw=1.2, label="signal")
    flagged = t[t.jump_flag == 1]
    ax.plot(flagged.group, flagged.signal_DN, "o", color="red", ms=6, label="flagged jump (JUMP_DET)")
    y, x = int(t.pixel_row.iloc[0]), int(t.pixel_column.iloc[0])
    ax.set_title(f"{title_prefix}pixel (row {y}, col {x}), int {int(t.integration.iloc[0])}", fontsize=9)
    ax.set_xlabel("group number")
    ax.set_ylabel("signal [DN]")


def plot_single_ramp(table, path, title=""):
    """One ramp (example 1 of :func:`example_table`) with its flagged groups in red."""
    fig, ax = common.plt.subplots(figsize=(6, 5))
    if len(table):
        t = table[table.example == table.example.min()]
        _draw_ramp(ax, t, f"{t.exposure.iloc[0]}\n")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no jumps flagged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("group number")
        ax.set_ylabel("signal [DN]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_ramp_grid(table, path, title=""):
    """3 x 3 grid of example ramps (flagged groups in red), as the NRC-09 notebook."""
    examples = sorted(table.example.unique()) if len(table) else []
    fig, axs = common.subplot_grid(max(len(examples), 1), ncols=3, size=3.3)
    for ax, ex in zip(axs, examples):
        _draw_ramp(ax, table[table.example == ex])
    if not examples:
        axs[0].text(0.5, 0.5, "no jumps flagged", ha="center", va="center", transform=axs[0].transAxes)
        axs[0].set_xlabel("group number")
        axs[0].set_ylabel("signal [DN]")
    fig.suptitle(title or "ramps of pixels with flagged jumps (red)", fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)


def plot_jump_map(jump_map, path, title):
    """Image of JUMP_DET groups per pixel (colour bar in counts)."""
    fig, ax = common.plt.subplots(figsize=(6.4, 5.4))
    vmax = max(1.0, float(np.percentile(jump_map, 99.9)))
    common.show_image(ax, jump_map, 0, vmax, "JUMP_DET groups per pixel [count]", title, cmap="magma")
    fig.tight_layout()
    common.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# File level
# ----------------------------------------------------------------------------------------------
def jump_statistics_file(ramp_paths, output_tsv, output_json, group=None, events_tsv=None,
                         map_fits=None, map_png=None, examples_tsv=None, ramp_png=None, grid_png=None,
                         pixel_pitch_um=None, connectivity=8, link_groups=None, n_examples=9):
    """Jump statistics of one configuration group from its jump-step ramps.

    Parameters
    ----------
    ramp_paths : list of str
        Jump-step products (``{exposure}_jumpstep.fits``, RampModel layout with GROUPDQ) of one
        configuration group; any ramp product after the jump step works (S_JUMP = COMPLETE;
        files where the step skipped itself, S_JUMP = SKIPPED, are left out and listed as
        ``skipped_inputs``). Headers need the jump step's keywords (TGROUP, ...); EXPSTART
        orders the files when present.
    output_tsv : str
        One row per (exposure, amplifier) plus rows ``exposure = 'all'`` for the group; columns
        (units in names): see :data:`CONVENTIONS` and :func:`_row`.
    output_json : str
        ``summary`` (group numbers: ``cr_rate_events_per_cm2_per_s`` and its error,
        ``pct_pixels_with_jump_per_integration``, ``jump_flags_per_integration``, ...),
        ``per_integration`` (all-amplifier numbers of every integration), ``table``, ``conventions``.
    group : str, optional
        Group name written to the outputs (default: from the first file's keywords).
    events_tsv : str, optional
        Event list: exposure, integration, group, pixel_row, pixel_column, amplifier, npix,
        ngroups, peak_jump_DN.
    map_fits, map_png : str, optional
        JUMP_DET groups per pixel summed over all files and integrations (FITS ``SCI`` int32) and
        its image.
    examples_tsv, ramp_png, grid_png : str, optional
        Example ramps of flagged pixels (from the first file with jumps) and the seeds' figures
        drawn from them: one ramp and a 3 x 3 grid, flagged groups in red.
    pixel_pitch_um : float, optional
        Pixel pitch [um]; default 18 (NIR) or 25 (MIRI) from INSTRUME.
    connectivity : 4 or 8
        Connectivity of flagged pixels within a group.
    link_groups : bool, optional
        Connect the same pixel in consecutive groups into one event. Default (None): when
        NFRAMES > 1, where a hit arriving during a group's frames shows in two differences. In
        RAPID-like patterns (NFRAMES = 1) a hit shows in one difference only, and linking would
        merge unrelated hits whose neighbour flags touch the same pixel in consecutive groups.
    n_examples : int

    Returns
    -------
    dict: the JSON document written.
    """
    paths = [str(p) for p in ramp_paths]
    headers = [io.read_headers(p)[0] for p in paths]
    common.check_one_group(headers, paths)
    group = group or common.group_name(headers[0], paths[0])
    status = [str(h.get("S_JUMP", "")).strip().upper() for h in headers]
    for path, st in zip(paths, status):
        if st not in ("COMPLETE", "SKIPPED"):
            raise InputError(path, f"is not a jump-step product (S_JUMP={st or 'absent'}); jump statistics "
                                   "need the GROUPDQ of the jump step")
    skipped = [p for p, st in zip(paths, status) if st == "SKIPPED"]
    if len(skipped) == len(paths):
        raise InputError(paths[0], "the jump step was skipped (S_JUMP=SKIPPED, NGROUPS <= 2) in every file "
                                   "of the group: no jump statistics")
    keep = [i for i, st in enumerate(status) if st == "COMPLETE"]
    order = sorted(keep, key=lambda i: (common.expstart(headers[i]), paths[i]))
    paths = [paths[i] for i in order]

    rows, per_int, event_rows = [], [], []
    group_acc, group_union, masks, jump_map, examples = {}, None, None, None, None
    nints_total, pitch, detector, t_int = 0, None, None, None
    for path in paths:
        ramp = io.read_ramp(path, "jump")
        meta = ramp.meta("jump")
        name = common.exposure_name(path)
        start = common.expstart(ramp.header)
        geom, amp_map, active = common.layout(ramp.header, ramp.data.shape, path)
        pitch = common.pixel_pitch(ramp.header, pixel_pitch_um)
        detector = meta["DETECTOR"]
        tgroup = meta["TGROUP"]
        t_int = (meta["NGROUPS"] - 1) * tgroup
        nints = ramp.data.shape[0]
        link = meta["NFRAMES"] > 1 if link_groups is None else bool(link_groups)
        acc, union = {}, None
        for i in range(nints):
            stats, events, jumped, njump = integration_statistics(
                ramp.data[i], ramp.groupdq[i], ramp.pixeldq, amp_map, active, geom.noutputs, tgroup,
                pitch, connectivity, link)
            union = jumped if union is None else union | jumped
            jump_map = njump.astype(np.int32) if jump_map is None else jump_map + njump
            for label, st in stats.items():
                _add(acc.setdefault(label, {}), st)
                _add(group_acc.setdefault(label, {}), st)
            a = stats[common.ALL]
            rate, err = rate_and_error(a["n_events"], a["exposure_cm2_s"])
            per_int.append({"exposure": name, "expstart_mjd": start, "integration": i + 1,
                            "n_jump_flags": a["n_jump_flags"], "n_pixels_with_jump": a["n_pixels_with_jump"],
                            "pct_pixels_with_jump": 100.0 * a["n_pixels_with_jump"] / a["n_active_pixels"],
                            "n_events": a["n_events"], "cr_rate_events_per_cm2_per_s": rate,
                            "cr_rate_err_events_per_cm2_per_s": err})
            for e in events:
                event_rows.append((name, i + 1, int(e["group"]) + 1, int(e["y"]), int(e["x"]),
                                   str(e["amplifier"]), int(e["npix"]), int(e["ngroups"]),
                                   float(e["peak_jump"])))
        masks = common.amplifier_masks(amp_map, active, geom.noutputs)
        group_union = union if group_union is None else group_union | union
        for label in common.amplifier_labels(geom.noutputs):
            rows.append(_row(name, start, label, nints, acc[label], int(union[masks[label]].sum()), t_int))
        nints_total += nints
        if examples is None and (examples_tsv or ramp_png or grid_png):
            ex = example_table(ramp, name, n_examples)
            examples = ex if len(ex) else None
        del ramp

    for label, sel in masks.items():
        rows.append(_row("all", math.nan, label, nints_total, group_acc[label],
                         int(group_union[sel].sum()), t_int))
    table = pd.DataFrame(rows)
    common.write_tsv(table, output_tsv)

    g = table[(table.exposure == "all") & (table.amplifier == common.ALL)].iloc[0]
    summary = {
        "detector": detector,
        "n_files": len(paths),
        "n_integrations": nints_total,
        "pixel_pitch_um": pitch,
        "jump_flags_per_integration": g.jump_flags_per_integration,
        "pct_pixels_with_jump_per_integration": g.pct_pixels_with_jump_per_integration,
        "pct_pixels_with_jump_all_integrations": g.pct_pixels_with_jump,
        "events_per_integration": g.events_per_integration,
        "mean_pixels_per_event": g.mean_pixels_per_event,
        "cr_rate_events_per_cm2_per_s": g.cr_rate_events_per_cm2_per_s,
        "cr_rate_err_events_per_cm2_per_s": g.cr_rate_err_events_per_cm2_per_s,
        "detection_time_per_integration_s": t_int,
    }
    doc = {"analysis": "jumps", "group": group, "inputs": paths, "skipped_inputs": skipped,
           "conventions": CONVENTIONS,
           "parameters": {"connectivity": connectivity, "link_groups": link, "pixel_pitch_um": pitch},
           "summary": summary, "per_integration": per_int, "table": common.records(table)}
    common.write_json(doc, output_json)

    if events_tsv:
        common.write_tsv(pd.DataFrame(event_rows, columns=[
            "exposure", "integration", "group", "pixel_row", "pixel_column", "amplifier", "npix",
            "ngroups", "peak_jump_DN"]), events_tsv)
    title = f"{group}: {len(paths)} files, {nints_total} integrations"
    if map_fits:
        h = fits.Header()
        h["DETECTOR"] = detector
        h["NFILES"] = (len(paths), "files summed")
        h["NINTS"] = (nints_total, "integrations summed")
        io.add_history(h, "jump map", paths)
        hdu = fits.ImageHDU(jump_map, name="SCI")
        hdu.header["BUNIT"] = "count"
        io._atomic_write(fits.HDUList([fits.PrimaryHDU(header=h), hdu]), map_fits)
    if map_png:
        plot_jump_map(jump_map, map_png, f"JUMP_DET groups per pixel\n{title}")
    ex = examples if examples is not None else pd.DataFrame(columns=EXAMPLE_COLUMNS)
    if examples_tsv:
        common.write_tsv(ex, examples_tsv)
    if ramp_png:
        plot_single_ramp(ex, ramp_png, group)
    if grid_png:
        plot_ramp_grid(ex, grid_png, f"{group}: ramps of pixels with flagged jumps (red)")
    return doc
