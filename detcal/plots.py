"""Figures. Each figure is drawn from a table that is saved next to it (TSV, units in names)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import io  # noqa: E402

#: Integration drawn per step (index; the seeds draw the last one for rscd, the first otherwise).
STEP_INTEGRATION = {"rscd": -1}

#: Steps whose figure has a third row, input / output (the rscd seed's ratio panel); their
#: table has a ``ratio`` column.
RATIO_STEPS = ("rscd",)


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

    before, after : float (npix, nints, ngroups) [DN] from :func:`sample_ramps`
    groupdq : uint8 (npix, nints, ngroups) after the step

    Steps in :data:`RATIO_STEPS` get a ``ratio`` column, input_DN / output_DN (NaN where the
    output is 0).
    """
    integ = STEP_INTEGRATION.get(step, 0) % before.shape[1]
    ratio = step in RATIO_STEPS
    rows = []
    for k, (y, x) in enumerate(pixels):
        for g in range(before.shape[2]):
            row = {"pixel_row": y, "pixel_column": x, "integration": integ + 1, "group": g + 1,
                   "input_DN": before[k, integ, g], "output_DN": after[k, integ, g],
                   "removed_DN": before[k, integ, g] - after[k, integ, g],
                   "groupdq": int(groupdq[k, integ, g])}
            if ratio:
                out = after[k, integ, g]
                row["ratio"] = before[k, integ, g] / out if out != 0 else np.nan
            rows.append(row)
    columns = ["pixel_row", "pixel_column", "integration", "group", "input_DN", "output_DN",
               "removed_DN", "groupdq"] + (["ratio"] if ratio else [])
    return pd.DataFrame(rows, columns=columns)


def plot_step(table, step, exposure, path):
    """The seeds' before/after figure: input vs output ramp (top) and removed signal (middle or
    bottom) per pixel; steps in :data:`RATIO_STEPS` add the ratio input / output (bottom)."""
    pixels = table[["pixel_row", "pixel_column"]].drop_duplicates().to_numpy()
    ncol = max(len(pixels), 1)
    ratio = step in RATIO_STEPS and "ratio" in table.columns
    nrow = 3 if ratio else 2
    fig, axs = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 3 * nrow), sharex="col", squeeze=False)
    for k, (y, x) in enumerate(pixels):
        t = table[(table.pixel_row == y) & (table.pixel_column == x)]
        top, bottom = axs[0, k], axs[1, k]
        top.plot(t.group, t.input_DN, "r^-", ms=4, lw=1.5, label="input ramp")
        top.plot(t.group, t.output_DN, "bo-", ms=4, lw=1.5, label=f"{step} output ramp")
        flagged = t[t.groupdq != 0]
        if len(flagged):
            top.plot(flagged.group, flagged.output_DN, "kx", ms=9, mew=2, label="flagged group (GROUPDQ)")
        top.set_title(f"{exposure}\npixel (row {y}, col {x}), integration {int(t.integration.iloc[0])}",
                      fontsize=10)
        top.set_ylabel("signal [DN]")
        top.legend(fontsize=8)
        bottom.plot(t.group, t.removed_DN, "gs-", ms=4, lw=1.5, label=f"signal removed by {step}")
        bottom.set_ylabel("input - output [DN]")
        bottom.legend(fontsize=8)
        if ratio:
            bottom = axs[2, k]
            bottom.plot(t.group, t.ratio, "ms-", ms=4, lw=1.5, label="ratio input / output")
            bottom.set_ylabel("input / output")
            bottom.legend(fontsize=8)
        bottom.set_xlabel("group number")
        bottom.xaxis.get_major_locator().set_params(integer=True)
    if not len(pixels):
        axs[0, 0].text(0.5, 0.5, "no sample pixel inside this detector", ha="center")
    fig.suptitle(f"{step} step", fontsize=13)
    fig.tight_layout()
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
        plt.close(fig)
