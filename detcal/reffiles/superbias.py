"""SUPERBIAS reference files, and the kTC (reset) noise, from group 0 of dark ramps.

Input: NIR dark ramps of ONE configuration group after dq_init and saturation only. Why not
refpix-corrected (or superbias-subtracted) ramps: in the pipeline the superbias is subtracted
from the raw ramp BEFORE refpix, and the saturation step uses it as the absolute bias level of the
group-2 check, so the reference must be in the raw frame, absolute level included (NRC-09 shows
group 0 at 10 000-18 000 DN; jwst_reffiles ``make_superbias`` stacks raw group 0). Refpix would
remove each integration's amplifier offsets and drifts, which only lowers the noise of the
estimate; those offsets average out over integrations (and a constant per-amplifier offset left
in a superbias is removed again by refpix downstream). Files with S_SUPERB or S_REFPIX =
COMPLETE are rejected. MIRI has no superbias step (jwst skips it), so MIRI inputs are rejected.

* SCI: per pixel, the sigma-clipped mean (3 sigma, 3 rounds, as jwst_reffiles) of group 0 over
  every integration of every file, ignoring DO_NOT_USE/SATURATED group-0 values. Pixels without a
  value get the median of their valid 3x3 neighbours (UNRELIABLE_BIAS | DO_NOT_USE).
* ERR: uncertainty of that mean, clipped std (ddof 1) / sqrt(values).
* DQ: UNRELIABLE_BIAS | DO_NOT_USE where ERR > clipped mean + 5 sigma of the ERR map (3 sigma,
  3 rounds), or ERR is undefined (fewer than 2 values), judged separately for active and
  reference pixels; reference pixels get UNRELIABLE_BIAS only, never DO_NOT_USE.
* kTC noise: each integration's group 0 minus the superbias, minus its median over every
  amplifier and column parity (active and reference pixels apart: the per-integration output
  offsets, which are not reset noise), minus the median of every detector line of every output
  (1/f banding, :class:`LineGroups`), gives a per-pixel scatter across integrations (clipped
  std, ddof 1, corrected for the clipping
  with :func:`detcal.analysis.robust.clip_bias_factor`). Its mode (half-sample mode, corrected for
  the mode of a chi distribution with k = values - 1 degrees of freedom, sqrt((k-1)/k)) is
  sqrt(kTC^2 + single-frame read noise^2). The single-frame read noise comes the same way from
  group 1 - group 0 (divided by sqrt 2); kTC = sqrt(mode^2 - read^2), in DN and, with a gain, e-.
"""

import logging
import warnings
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

log = logging.getLogger("detcal.reffiles.superbias")

_BAD = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)
_FLAG = np.uint32(dqflags.UNRELIABLE_BIAS | dqflags.DO_NOT_USE)


# --------------------------------------------------------------------------------------------
# Pure array functions
# --------------------------------------------------------------------------------------------
def superbias_from_stack(frames, sigma=3.0, maxiters=3):
    """Clipped mean of group-0 frames and its uncertainty.

    Parameters
    ----------
    frames : ndarray, float32, shape (nvalues, ny, nx)   [DN] raw group 0, NaN = excluded
    sigma, maxiters : clipping (default 3, 3)

    Returns
    -------
    bias : float32 (ny, nx) [DN], NaN without values
    err : float32 (ny, nx) [DN] clipped std (ddof 1) / sqrt(count), NaN for count < 2
    scatter : float32 (ny, nx) [DN] clipped std (ddof 1), NaN for count < 2
    count : int32 (ny, nx) values kept
    """
    st = robust.sigma_clipped_stats(frames, sigma=sigma, maxiters=maxiters, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = st["std"] / np.sqrt(st["count"])
    return (st["mean"].astype(np.float32), err.astype(np.float32), st["std"].astype(np.float32),
            st["count"])


def flag_unreliable(err, populations, sigma=3.0, maxiters=3, threshold=5.0):
    """UNRELIABLE_BIAS (| DO_NOT_USE) where the bias error is an outlier.

    Parameters
    ----------
    err : float (ny, nx) [DN]
    populations : dict name -> (bool (ny, nx), do_not_use: bool)   judged separately
    sigma, maxiters : clipping of the error distribution
    threshold : flag err > clipped mean + threshold * clipped std, and non-finite err

    Returns
    -------
    dq : uint32 (ny, nx); thresholds : dict name -> threshold [DN]
    """
    err = np.asarray(err, np.float64)
    dq = np.zeros(err.shape, np.uint32)
    limits = {}
    for name, (mask, dnu) in populations.items():
        vals = err[mask]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            st = robust.sigma_clipped_stats(vals[:, None], sigma=sigma, maxiters=maxiters)
            limit = float(st["mean"][0] + threshold * st["std"][0])
        else:
            limit = float("nan")
        limits[name] = limit
        with np.errstate(invalid="ignore"):
            bad = mask & (~np.isfinite(err) | (err > limit))
        dq[bad] |= _FLAG if dnu else np.uint32(dqflags.UNRELIABLE_BIAS)
    return dq, limits


def fill_from_neighbours(image, bad):
    """Replace ``bad`` pixels of a 2-D image by the median of their valid 3x3 neighbours.

    Pixels without a valid neighbour get the median of all valid pixels. Returns a new array.
    """
    out = np.array(image, dtype=np.float32, copy=True)
    valid = ~bad & np.isfinite(out)
    padded = np.pad(np.where(valid, out, np.nan), 1, constant_values=np.nan)
    fallback = float(np.median(out[valid])) if valid.any() else 0.0
    for y, x in zip(*np.nonzero(bad)):
        win = padded[y:y + 3, x:x + 3]
        win = win[np.isfinite(win)]
        out[y, x] = np.median(win) if win.size else fallback
    return out


def parity_map(geom):
    """int8 (ny, nx): column parity (0/1) of every pixel in the detector frame."""
    full = geom.full_shape
    det_shape = full if abs(geom.fastaxis) == 1 else full[::-1]
    par = np.broadcast_to(np.arange(det_shape[1]) % 2, det_shape).astype(np.int8)
    return np.ascontiguousarray(geom.cut(geom.to_science(par)))


def common_mode_labels(geom):
    """int (ny, nx): one label per (amplifier, detector column parity, reference or active)."""
    amp = geom.amplifier_map().astype(np.int32)
    lab = amp * 2 + parity_map(geom)
    ref = geom.reference_mask()
    lab[ref] += 2 * geom.noutputs
    return lab


def chi_mode_correction(k):
    """sqrt(k / (k - 1)): true sigma / mode of the sample std with k degrees of freedom."""
    k = float(k)
    return float(np.sqrt(k / (k - 1.0))) if k > 1 else float("nan")


def ktc_from_scatter(bias_scatter, frame_noise, dof_bias, dof_frame):
    """kTC noise from the modes of the per-pixel bias scatter and single-frame read noise.

    Parameters
    ----------
    bias_scatter : float array [DN]  per-pixel std of group 0 across integrations
    frame_noise : float array [DN] or None   per-pixel single-frame read noise (CDS / sqrt 2)
    dof_bias, dof_frame : float      degrees of freedom of those std estimates

    Returns
    -------
    dict ``scatter_mode_DN`` (chi-corrected mode of the bias scatter), ``frame_noise_mode_DN``,
    ``ktc_DN`` = sqrt(scatter_mode^2 - frame_noise_mode^2) (NaN if undefined)
    """
    s = common.half_sample_mode(bias_scatter) * chi_mode_correction(dof_bias)
    r = (common.half_sample_mode(frame_noise) * chi_mode_correction(dof_frame)
         if frame_noise is not None else float("nan"))
    k = float(np.sqrt(s * s - r * r)) if np.isfinite(r) and s > r else float("nan")
    return {"scatter_mode_DN": s, "frame_noise_mode_DN": r, "ktc_DN": k}


# --------------------------------------------------------------------------------------------
# File level
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuperbiasParameters:
    """Parameters of the SUPERBIAS builder (the rule's ``params.kwargs`` and their defaults).

    sigma, maxiters        clipping of group 0 across integrations [sigma, iterations] (3, 3)
    bad_sigma, bad_maxiters, bad_threshold : UNRELIABLE_BIAS rule (:func:`flag_unreliable`)
                           [sigma, iterations, x robust scatter] (3, 3, 5)
    memory_mb : float      budget for the group-0 stack [MB]; read in blocks of rows when it
                           does not fit (4000)
    """

    sigma: float = 3.0
    maxiters: int = 3
    bad_sigma: float = 3.0
    bad_maxiters: int = 3
    bad_threshold: float = 5.0
    memory_mb: float = 4000


@keyword_parameters(SuperbiasParameters)
def make_superbias(ramp_paths, out_path, *, gain_path=None, table_path=None, figure_path=None,
                   pedigree="GROUND", author="detcal", useafter=None, descrip=None, parameters=None):
    """Make a SUPERBIAS reference (and measure the kTC noise) from NIR dark ramps.

    Read (group 0 by blocks of rows) -> combine (:func:`bias_pass`, :func:`finish_bias`) ->
    kTC (:func:`ktc_pass`) -> table and write.

    Parameters
    ----------
    ramp_paths : list of str
        Ramps of ONE configuration group after dq_init and saturation (not superbias, not refpix;
        see the module docstring), NIR only. Only groups 0 (and 1, for the kTC read-noise term)
        are read.
    out_path : str
        SUPERBIAS reference (SuperBiasModel layout: SCI, ERR, DQ + DQ_DEF).
    gain_path : str (GAIN reference), a number [e-/DN] or None
        For kTC in electrons.
    table_path, figure_path : str or None
        Per-region (amplifiers, all active, reference) statistics TSV of the bias level, its
        error and the per-pixel scatter (with its mode and the kTC per region); box-plot figure
        drawn from it.
    pedigree, author, useafter, descrip : reference keywords (see :func:`make_dark`).
    sigma, maxiters, bad_sigma, bad_maxiters, bad_threshold, memory_mb
        :class:`SuperbiasParameters` (keywords, or ``parameters=`` one object).

    Returns
    -------
    dict: ``path``, ``n_files``, ``n_integrations``, ``n_unreliable``, ``n_no_data``,
    ``thresholds_DN``, ``ktc`` (``scatter_mode_DN``, ``frame_noise_mode_DN``, ``ktc_DN``,
    ``ktc_e`` when a gain is given, ``dof``), ``median_bias_DN``.
    """
    readers = common.open_inputs(ramp_paths, step="saturation", what="superbias")
    try:
        return _make_superbias(readers, out_path, parameters, gain_path, (table_path, figure_path),
                               (pedigree, author, useafter, descrip))
    finally:
        common.close_all(readers)


def _check_superbias_inputs(readers):
    first = readers[0]
    if family(keywords.value(first.header, "INSTRUME", first.path)) == "MIRI":
        raise InputError(first.path, "MIRI data have no superbias step (jwst skips it for MIRI); "
                                     "no SUPERBIAS reference is made for MIRI")
    for r in readers:
        for key, step in (("S_SUPERB", "superbias"), ("S_REFPIX", "refpix")):
            if str(r.header.get(key, "")).upper() == "COMPLETE":
                raise InputError(r.path, f"{key}=COMPLETE: a superbias is made from ramps after "
                                         f"dq_init and saturation only (the {step} step has run)")


def bias_pass(entries, rows, shape, parameters):
    """Pass 1: clipped group 0 of every integration, by blocks of rows.

    entries : [(reader, integration)];  shape : (ny, nx). Returns (bias, err, scatter float32,
    count int32) of :func:`superbias_from_stack`.
    """
    ny, nx = shape
    n = len(entries)
    bias, err = np.empty((ny, nx), np.float32), np.empty((ny, nx), np.float32)
    scatter, count = np.empty((ny, nx), np.float32), np.empty((ny, nx), np.int32)
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        stack = np.empty((n, r1 - r0, nx), np.float32)
        for j, (reader, i) in enumerate(entries):
            stack[j] = reader.read("SCI", i, slice(0, 1), slice(r0, r1))[0]
            gdq = reader.read("GROUPDQ", i, slice(0, 1), slice(r0, r1))[0]
            stack[j][(gdq & _BAD) != 0] = np.nan
        bias[r0:r1], err[r0:r1], scatter[r0:r1], count[r0:r1] = superbias_from_stack(
            stack, parameters.sigma, parameters.maxiters)
        del stack
    return bias, err, scatter, count


def finish_bias(bias, err, count, ref_mask, parameters):
    """UNRELIABLE_BIAS flags, pixels without data filled from their neighbours, finite errors.

    Returns (bias, err, dq uint32, limits of :func:`flag_unreliable`, no_data bool (ny, nx)).
    """
    p = parameters
    no_data = count == 0
    dq, limits = flag_unreliable(err, {"active": (~ref_mask, True), "reference": (ref_mask, False)},
                                 p.bad_sigma, p.bad_maxiters, p.bad_threshold)
    dq[no_data & ~ref_mask] |= _FLAG
    dq[no_data & ref_mask] |= np.uint32(dqflags.UNRELIABLE_BIAS)
    if no_data.any():
        bias = fill_from_neighbours(bias, no_data)
    err = np.where(np.isfinite(err), err, np.float32(0.0)).astype(np.float32)
    return bias, err, dq, limits, no_data


def _common_mode_tables(entries, bias, labels, lab_ids, lines, two):
    """Per-integration medians of every (amplifier, parity) and of every line of every output,
    of group 0 - bias and (two) group 1 - group 0: whole frames, one integration at a time."""
    n = len(entries)
    cm = np.zeros((2, n, labels.max() + 1), np.float32)
    lm = np.zeros((2, n) + lines.table_shape, np.float32)
    for j, (reader, i) in enumerate(entries):
        g0, g1 = _groups01(reader, i, two)
        for k, frame in enumerate((g0 - bias, None if not two else g1 - g0)):
            if frame is None:
                continue
            cm[k, j] = _label_medians(frame, labels, lab_ids)
            lm[k, j] = lines.medians(frame - cm[k, j][labels])
    return cm, lm


def _residual_scatter(entries, bias, cm, lm, labels, lines, rows, two, parameters):
    """Per-pixel clipped scatter of the common-mode-free residuals, by blocks of rows [DN]."""
    sigma, maxiters = parameters.sigma, parameters.maxiters
    ny, nx = bias.shape
    n = len(entries)
    factor = clip_bias_factor(sigma, maxiters)
    bias_scatter = np.full((ny, nx), np.nan, np.float32)
    frame_noise = np.full((ny, nx), np.nan, np.float32) if two else None
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        res = np.empty((2 if two else 1, n, r1 - r0, nx), np.float32)
        lab = labels[r0:r1]
        for j, (reader, i) in enumerate(entries):
            g0, g1 = _groups01(reader, i, two, slice(r0, r1))
            res[0, j] = g0 - bias[r0:r1] - cm[0, j][lab] - lines.expand(lm[0, j], r0, r1)
            if two:
                res[1, j] = g1 - g0 - cm[1, j][lab] - lines.expand(lm[1, j], r0, r1)
        keep = lines.variance_kept(r0, r1)
        st = robust.sigma_clipped_stats(res[0], sigma, maxiters, ddof=1)
        bias_scatter[r0:r1] = st["std"] / factor / np.sqrt(keep)
        if two:
            st = robust.sigma_clipped_stats(res[1], sigma, maxiters, ddof=1)
            frame_noise[r0:r1] = st["std"] / factor / np.sqrt(keep) / np.sqrt(2.0)
        del res
    return bias_scatter, frame_noise


def ktc_pass(readers, entries, bias, count, geom, ref_mask, rows, parameters):
    """Pass 2: kTC from common-mode-free residuals of group 0 (and group 1 - group 0).

    The per-integration medians of every (amplifier, parity) and of every detector line of every
    output need whole frames, read one integration at a time and kept as small tables; the
    per-pixel scatter is then taken in blocks of rows. Returns (ktc dict of
    :func:`ktc_from_scatter` + ``dof``, bias_scatter, frame_noise (None without group 1)).
    """
    labels = common_mode_labels(geom)
    lab_ids = np.unique(labels[labels >= 0])
    lines = LineGroups(geom)
    two = readers[0].shape[1] >= 2 and all(r.shape[1] >= 2 for r in readers)
    ktc = {"scatter_mode_DN": float("nan"), "frame_noise_mode_DN": float("nan"), "ktc_DN": float("nan")}
    dof = float(np.median(count[~ref_mask])) - 1.0 if (~ref_mask).any() else float("nan")
    bias_scatter = frame_noise = None
    if len(entries) >= 3 and lab_ids.size:
        cm, lm = _common_mode_tables(entries, bias, labels, lab_ids, lines, two)
        bias_scatter, frame_noise = _residual_scatter(entries, bias, cm, lm, labels, lines, rows, two,
                                                      parameters)
        ktc = ktc_from_scatter(bias_scatter[~ref_mask], None if frame_noise is None else
                               frame_noise[~ref_mask], dof, dof)
    else:
        log.warning("superbias: %d integrations are too few to measure the kTC noise", len(entries))
    ktc["dof"] = dof
    return ktc, bias_scatter, frame_noise


def _ktc_in_electrons(ktc, gain_path, first, ref_mask):
    """Add the kTC numbers in e- (median gain of the active pixels); return that gain or None."""
    if gain_path is None:
        return None
    gain_e = float(np.nanmedian(common.gain_map(gain_path, first)[~ref_mask]))
    ktc["ktc_e"] = ktc["ktc_DN"] * gain_e
    ktc["scatter_mode_e"] = ktc["scatter_mode_DN"] * gain_e
    ktc["frame_noise_mode_e"] = ktc["frame_noise_mode_DN"] * gain_e
    ktc["gain_e_per_DN"] = gain_e
    return gain_e


def _superbias_header(readers, keywords_, label, n, ktc, p):
    pedigree, author, useafter, descrip = keywords_
    if descrip is None:
        descrip = (f"{label} superbias: clipped mean of group 0 of {n} integrations, "
                   f"{len(readers)} files (detcal {__version__})")
    header = common.header_for("SUPERBIAS", readers, descrip, author, pedigree, useafter,
                               extra=("READPATT",))
    header["SBSIGMA"] = (float(p.sigma), "[sigma] clip threshold")
    header["SBITERS"] = (int(p.maxiters), "clipping iterations")
    header["SBNINTS"] = (int(n), "integrations combined")
    for key, name, unit in (("KTC_DN", "ktc_DN", "DN"), ("KTC_E", "ktc_e", "e-"),
                            ("SBSCMODE", "scatter_mode_DN", "DN"),
                            ("RNFRMODE", "frame_noise_mode_DN", "DN")):
        val = ktc.get(name)
        if val is not None and np.isfinite(val):
            header[key] = (float(val), f"[{unit}] {name.replace('_', ' ')}")
    return header


def _make_superbias(readers, out_path, p, gain_path, outputs, keywords_):
    _check_superbias_inputs(readers)
    first = readers[0]
    ny, nx = first.shape[2:]
    entries = [(r, i) for r in readers for i in range(r.shape[0])]
    n = len(entries)
    geom = common.geometry_of(first)
    masks = common.regions(geom)
    ref_mask = masks["reference"]
    per_pixel = n * (4 + 4 + robust.STATS_BYTES_PER_VALUE)      # stack, read buffer, statistics
    rows = io.block_size(p.memory_mb - 300, per_pixel, (ny, nx)) if p.memory_mb > 300 else 1

    bias, err, _, count = bias_pass(entries, rows, (ny, nx), p)
    bias, err, dq, limits, no_data = finish_bias(bias, err, count, ref_mask, p)
    ktc, bias_scatter, frame_noise = ktc_pass(readers, entries, bias, count, geom, ref_mask, rows, p)
    gain_e = _ktc_in_electrons(ktc, gain_path, first, ref_mask)
    table = _region_table(bias, err, bias_scatter, frame_noise, dq, masks, ktc["dof"], gain_e)

    label = common.config_label(first.header)
    header = _superbias_header(readers, keywords_, label, n, ktc, p)
    n_unrel = int(np.count_nonzero(dq & dqflags.UNRELIABLE_BIAS))
    params = {"sigma": p.sigma, "maxiters": p.maxiters, "bad_sigma": p.bad_sigma,
              "bad_maxiters": p.bad_maxiters, "bad_threshold": p.bad_threshold}
    io.write_reference(out_path, "SUPERBIAS", {"SCI": bias, "ERR": err, "DQ": dq}, header,
                       step="detcal.reffiles.make_superbias", inputs=[r.path for r in readers],
                       params=params, units={"SCI": "DN", "ERR": "DN"})
    table_path, figure_path = outputs
    if table_path:
        common.write_table(table, table_path)
    if figure_path:
        plot_superbias_table(table, figure_path, f"{label}: SUPERBIAS from {n} integrations")
    summary = {"path": str(out_path), "n_files": len(readers), "n_integrations": n,
               "n_unreliable": n_unrel, "n_no_data": int(no_data.sum()), "thresholds_DN": limits,
               "ktc": ktc,
               "median_bias_DN": float(np.median(bias[~ref_mask])) if (~ref_mask).any() else float("nan")}
    log.info("superbias: wrote %s; %d UNRELIABLE_BIAS pixels; kTC %.3g DN", out_path, n_unrel,
             ktc["ktc_DN"])
    return summary


class LineGroups:
    """Medians along every detector line (fast-scan row) of every output, for 1/f banding.

    Pixels are grouped by (output, reference or active) in the detector frame; for each group
    and line, the median of a frame's pixels is its banding offset (1/f noise is nearly constant
    over the microseconds one output takes to read one line). Subtracting the median of ``m``
    Gaussian values keeps ``1 - (2 - pi/2)/m`` of a pixel's variance (:meth:`variance_kept`).
    """

    def __init__(self, geom):
        amp = geom.amplifier_map().astype(np.int32)
        group = amp * 2 + geom.reference_mask().astype(np.int32)
        self.geom = geom
        gdet = np.ascontiguousarray(geom.to_detector(group))
        ny_d, nx_d = gdet.shape
        self.ids = [int(g) for g in np.unique(gdet)]
        self.cols, self.masks, count = [], [], np.zeros((ny_d, len(self.ids)), np.int32)
        for k, g in enumerate(self.ids):
            cols = np.nonzero(np.any(gdet == g, axis=0))[0]
            cols = slice(cols[0], cols[-1] + 1)
            m = gdet[:, cols] == g
            self.cols.append(cols)
            self.masks.append(m)
            count[:, k] = m.sum(axis=1)
        self.table_shape = (ny_d, len(self.ids))
        lines = np.broadcast_to(np.arange(ny_d, dtype=np.int32)[:, None], (ny_d, nx_d))
        index = {g: k for k, g in enumerate(self.ids)}
        self.line_of = np.ascontiguousarray(geom.to_science(lines))
        self.group_of = np.vectorize(index.get, otypes=[np.int32])(group)
        self.count = count

    def medians(self, frame):
        """float32 (ny_det, ngroups): median of every line of every group (0 where empty)."""
        det = self.geom.to_detector(np.asarray(frame, np.float32))
        out = np.zeros(self.table_shape, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN lines: no correction
            for k, (cols, m) in enumerate(zip(self.cols, self.masks)):
                out[:, k] = np.nanmedian(np.where(m, det[:, cols], np.nan), axis=1)
        return np.nan_to_num(out)

    def expand(self, table, r0, r1):
        """The per-pixel offsets of science rows r0:r1 from a :meth:`medians` table."""
        return table[self.line_of[r0:r1], self.group_of[r0:r1]]

    def variance_kept(self, r0, r1):
        """float (r1-r0, nx): variance fraction left after subtracting the line median."""
        m = self.count[self.line_of[r0:r1], self.group_of[r0:r1]].astype(np.float64)
        return np.clip(1.0 - (2.0 - np.pi / 2.0) / np.maximum(m, 1.0), 0.05, 1.0)


def _groups01(reader, i, two, rows=slice(None)):
    """Group 0 and (if ``two``) group 1 of one integration, NaN where DO_NOT_USE/SATURATED."""
    k = 2 if two else 1
    sci = reader.read("SCI", i, slice(0, k), rows)
    gdq = reader.read("GROUPDQ", i, slice(0, k), rows)
    sci[(gdq & _BAD) != 0] = np.nan
    return sci[0], (sci[1] if two else None)


def _label_medians(frame, labels, lab_ids):
    """Median of ``frame`` over the pixels of every label (NaN ignored): float32 (max label + 1,)."""
    out = np.zeros(labels.max() + 1, np.float32)
    for lab in lab_ids:
        vals = frame[labels == lab]
        vals = vals[np.isfinite(vals)]
        out[lab] = np.median(vals) if vals.size else 0.0
    return out


def _region_table(bias, err, scatter, frame_noise, dq, masks, dof, gain):
    rows = []
    for name, mask in masks.items():
        row = {"region": name, "npix": int(mask.sum())}
        for prefix, img in (("bias", bias), ("err", err), ("scatter", scatter)):
            if img is None:
                continue
            st = common.region_stats(img, {name: mask})[0]
            for key in ("clipped_mean", "p05", "p25", "p50", "p75", "p95"):
                row[f"{prefix}_{key}_DN"] = st[key]
        if scatter is not None:
            k = ktc_from_scatter(scatter[mask], None if frame_noise is None else frame_noise[mask],
                                 dof, dof)
            row["scatter_mode_DN"] = k["scatter_mode_DN"]
            row["frame_noise_mode_DN"] = k["frame_noise_mode_DN"]
            row["ktc_DN"] = k["ktc_DN"]
            if gain:
                row["ktc_e"] = k["ktc_DN"] * gain
        row["n_unreliable_bias"] = int(np.count_nonzero(dq[mask] & dqflags.UNRELIABLE_BIAS))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_superbias_table(table, path, title=""):
    """Box plots (from the table's percentiles) of the bias level and the per-pixel bias scatter
    per region, with the scatter mode and kTC marked."""
    from ..plots import plt, save_figure
    has_scatter = "scatter_p50_DN" in table.columns
    fig, axs = plt.subplots(1, 2 if has_scatter else 1, figsize=(12 if has_scatter else 6, 4.8),
                            squeeze=False)
    ax = axs[0, 0]
    ax.bxp(common.bxp_stats(table, "bias", "DN"), showfliers=False)
    ax.set_ylabel("superbias [DN]")
    ax.set_title("superbias level per region (box 25-75 %, whiskers 5-95 %)", fontsize=9)
    if has_scatter:
        ax = axs[0, 1]
        ax.bxp(common.bxp_stats(table, "scatter", "DN"), showfliers=False)
        x = np.arange(1, len(table) + 1)
        ax.plot(x, table["scatter_mode_DN"], "r*", ms=9, label="mode (chi-corrected)")
        if "ktc_DN" in table.columns:
            ax.plot(x, table["ktc_DN"], "bD", ms=6, label="kTC = sqrt(mode^2 - read^2)")
        ax.set_ylabel("group-0 scatter across integrations [DN]")
        ax.set_title("per-pixel bias scatter (output offsets removed)", fontsize=9)
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=90, title=title)
