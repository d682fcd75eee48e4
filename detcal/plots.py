"""Figures. Each figure is drawn from a table that is saved next to it (TSV, units in names).

matplotlib is imported at first use (:func:`pyplot`; ``plots.plt`` is a lazy module attribute for
``from detcal.plots import plt``), not with this module, and the per-step sample table is a
mapping of numpy columns written by :func:`detcal.tables.write_tsv` without pandas: every
detector1 job imports :mod:`detcal.runner` and through it this module, and a job that draws
nothing (ramp_fit, the inventory, the summaries) should not pay ~1 s of matplotlib and pandas
imports at start-up (benchmarks/README.md, "Job start-up").
"""

import functools

import numpy as np

from . import io

#: Integration drawn per step (index; the seeds draw the last one for rscd, the first otherwise).
STEP_INTEGRATION = {"rscd": -1}

#: Steps whose figure has a third row, input / output (the rscd seed's ratio panel); their
#: table has a ``ratio`` column.
RATIO_STEPS = ("rscd",)

#: Columns of :func:`step_table`, in order (``ratio`` appended for :data:`RATIO_STEPS`).
STEP_COLUMNS = ("pixel_row", "pixel_column", "integration", "group", "input_DN", "output_DN",
                "removed_DN", "groupdq")


@functools.cache
def pyplot():
    """``matplotlib.pyplot`` with the Agg backend, imported on the first call (the backend is
    selected before pyplot is imported through detcal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def __getattr__(name):
    """``plots.plt``: :func:`pyplot`, imported when first asked for (PEP 562)."""
    if name == "plt":
        return pyplot()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def valid_pixels(pixels, shape):
    """The (row, column) pairs of ``pixels`` that fall inside a (ny, nx) frame."""
    ny, nx = shape[-2:]
    return [(int(y), int(x)) for y, x in pixels if 0 <= y < ny and 0 <= x < nx]


def sample_ramps(data, pixels):
    """Copy the ramps of ``pixels`` from data (nints, ngroups, ny, nx): float64 (npix, nints, ngroups)."""
    return np.array([data[:, :, y, x] for y, x in pixels], dtype=np.float64).reshape(
        len(pixels), data.shape[0], data.shape[1])


def step_table(step, before, after, groupdq, pixels):
    """Long table of sample-pixel ramps before and after a step, for one integration.

    before, after : float64 (npix, nints, ngroups) [DN] from :func:`sample_ramps`
    groupdq : (npix, nints, ngroups) after the step
    pixels : the npix (row, column) pairs, 0-based

    Returns {column: 1-D ndarray} in the order of :data:`STEP_COLUMNS`, one row per (pixel,
    group), pixel-major: pixel_row, pixel_column, integration (1-based), group (1-based),
    groupdq (int64); input_DN, output_DN, removed_DN = input - output (float64, [DN]). Steps in
    :data:`RATIO_STEPS` get a ``ratio`` column, input_DN / output_DN (NaN where the output is 0).
    ``pandas.DataFrame(table)`` gives the same table as a DataFrame;
    :func:`detcal.tables.write_tsv` writes it.
    """
    before = np.asarray(before, np.float64)
    after = np.asarray(after, np.float64)
    npix, ngroups = len(pixels), before.shape[2]
    integ = STEP_INTEGRATION.get(step, 0) % before.shape[1]
    rows = np.array([y for y, _ in pixels], np.int64)
    columns = np.array([x for _, x in pixels], np.int64)
    b, a = before[:, integ, :].ravel(), after[:, integ, :].ravel()
    table = {"pixel_row": np.repeat(rows, ngroups), "pixel_column": np.repeat(columns, ngroups),
             "integration": np.full(npix * ngroups, integ + 1, np.int64),
             "group": np.tile(np.arange(1, ngroups + 1, dtype=np.int64), npix),
             "input_DN": b, "output_DN": a, "removed_DN": b - a,
             "groupdq": np.asarray(groupdq)[:, integ, :].ravel().astype(np.int64)}
    if step in RATIO_STEPS:
        with np.errstate(divide="ignore", invalid="ignore"):
            table["ratio"] = np.where(a != 0, b / np.where(a != 0, a, 1.0), np.nan)
    return table


def plot_step(table, step, exposure, path):
    """The seeds' before/after figure: input vs output ramp (top) and removed signal (middle or
    bottom) per pixel; steps in :data:`RATIO_STEPS` add the ratio input / output (bottom).

    table : :func:`step_table` (or a DataFrame of its columns)
    """
    plt = pyplot()
    table = {name: np.asarray(values) for name, values in table.items()}
    pairs = np.stack([table["pixel_row"], table["pixel_column"]], axis=1).reshape(-1, 2)
    pixels = pairs[np.sort(np.unique(pairs, axis=0, return_index=True)[1])] if len(pairs) else pairs
    ncol = max(len(pixels), 1)
    ratio = step in RATIO_STEPS and "ratio" in table
    nrow = 3 if ratio else 2
    fig, axs = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 3 * nrow), sharex="col", squeeze=False)
    for k, (y, x) in enumerate(pixels):
        rows = (table["pixel_row"] == y) & (table["pixel_column"] == x)
        t = {name: values[rows] for name, values in table.items()}
        top, bottom = axs[0, k], axs[1, k]
        top.plot(t["group"], t["input_DN"], "r^-", ms=4, lw=1.5, label="input ramp")
        top.plot(t["group"], t["output_DN"], "bo-", ms=4, lw=1.5, label=f"{step} output ramp")
        flagged = t["groupdq"] != 0
        if flagged.any():
            top.plot(t["group"][flagged], t["output_DN"][flagged], "kx", ms=9, mew=2,
                     label="flagged group (GROUPDQ)")
        top.set_title(f"{exposure}\npixel (row {y}, col {x}), integration {int(t['integration'][0])}",
                      fontsize=10)
        top.set_ylabel("signal [DN]")
        top.legend(fontsize=8)
        bottom.plot(t["group"], t["removed_DN"], "gs-", ms=4, lw=1.5, label=f"signal removed by {step}")
        bottom.set_ylabel("input - output [DN]")
        bottom.legend(fontsize=8)
        if ratio:
            bottom = axs[2, k]
            bottom.plot(t["group"], t["ratio"], "ms-", ms=4, lw=1.5, label="ratio input / output")
            bottom.set_ylabel("input / output")
            bottom.legend(fontsize=8)
        bottom.set_xlabel("group number")
        bottom.xaxis.get_major_locator().set_params(integer=True)
    if not len(pixels):
        axs[0, 0].text(0.5, 0.5, "no sample pixel inside this detector", ha="center")
    fig.suptitle(f"{step} step", fontsize=13)
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine, for which savefig draws the figure once more
    # before the drawing it writes; the layout is fixed here, so skip it (same PNG, ~13 % less CPU)
    fig.set_layout_engine(None)
    save_figure(fig, path, dpi=90)


def save_figure(fig, path, dpi=110, title=None):
    """The one figure writer: PNG at ``dpi``, atomically (:func:`detcal.io.atomic_path`), and
    close the figure (also when writing fails). With ``title``: a suptitle and a tight layout
    first (the reference-file figures)."""
    try:
        if title is not None:
            fig.suptitle(title, fontsize=11)
            fig.tight_layout()
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
