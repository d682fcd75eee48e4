"""Dark-current subtraction (jwst ``dark_current`` / stcal ``dark_current.dark_sub``).

The DARK reference is first matched to the science readout (:func:`match_dark`):

* dark NFRAMES/GROUPGAP equal to the science ones: the dark groups are used directly;
* otherwise a dark read with NFRAMES=1, GROUPGAP=0 is averaged: science group ``g`` gets the mean
  of dark frames ``g*(NFRAMES+GROUPGAP) .. +NFRAMES-1`` (float32, as stcal);
* any other combination is an :class:`~detcal.errors.InputError` (stcal silently skips the step
  when the dark's NFRAMES/GROUPGAP exceed the science ones, and otherwise averages dark *groups*
  as if they were frames, which is only right for NFRAMES=1/GROUPGAP=0 darks).

A dark with fewer frames than the science exposure spans is an InputError naming the file and
both frame counts, unless ``extrapolate=True``: then, as stcal, ``k`` groups are appended by
linear extrapolation from the dark's last two groups (in float64, like stcal), with a warning.

NaN dark values count as 0. The matched dark is subtracted from every group
(:func:`subtract_dark`); the dark DQ (2-D, or for 4-D darks the OR of ``dq[i, 0]`` over the dark
integrations) is OR-ed into PIXELDQ; GROUPDQ is unchanged and there is no error propagation.

4-D (MIRI) darks hold one dark per integration: science integration ``i`` (absolute number
``INTSTART + i``) uses dark integration ``INTSTART - 1 + i``, or the last one for later
integrations. This is stcal's rule for INTSTART = 1; for later segments of a multi-segment
exposure stcal always uses the last dark integration, which differs only when the dark has more
than two integrations.

Memory: :func:`run` (without ``dark_output``) corrects the ramp in place and builds the matched
dark a chunk of groups at a time (:func:`correct_dark_in_place`, ``memory_mb``), with the same
arithmetic as :func:`correct_dark`; the step then needs the ramp and the dark as read plus one
chunk, instead of also a corrected copy of the ramp and the whole matched dark. The runner reads
the dark lazily (:data:`LAZY_REFERENCES`, :class:`detcal.io.LazyArray`): only the SCI groups of
the chunk being built are read from disk (cut to the subarray), the DQ's first group of a 4-D
DQ, and ERR not at all, so the job holds the ramp plus one chunk.

The average dark current for ramp fitting's Poisson term
(:func:`resolve_average_dark_current`) follows jwst's priority: the ``average_dark_current``
parameter, else the reference's AVDRKCUR image
(if non-zero and of the right shape), else its AVDRKCUR header keyword, else 0. :func:`run`
stores it on the ramp as an AVDRKCUR image extension (the RampModel layout; omitted when zero),
which :func:`ramp_average_dark_current` reads back.
"""

import logging

import numpy as np

from .. import keywords
from ..errors import InputError
from ..multiaccum import frames_per_integration
from .descriptor import Param, Product, Step

# detcal.io and astropy.io.fits are imported where used: every Snakemake parse imports this
# module for its DESCRIPTOR (the step registry), and a cluster job's parse must not pay astropy.

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="dark_current", description="Subtract the DARK reference group by group",
    position={"NIR": 70, "MIRI": 70}, cal_step="S_DARK", suffix="darkcurrentstep", references=("dark",),
    parameters={
        "dark_output": Param(False, "Also save the dark actually subtracted (averaged to the exposure's "
                                    "readout) as results/ramps/{exposure}/{exposure}_dark.fits"),
        "extrapolate": Param(False, "Allow a dark with fewer frames than the exposure, extrapolated linearly "
                                    "from its last two groups (as stcal does); otherwise that is an error"),
    },
    products={"dark": Product("reference", "dark", switch="dark_output")})

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: References read by sections (:func:`detcal.io.read_reference` with ``lazy=True``): the dark is
#: read a chunk of groups at a time (SCI and DQ only), never whole.
LAZY_REFERENCES = ("dark",)

#: Name of the ramp extension that carries the average dark current (RampModel layout).
AVDRKCUR = "AVDRKCUR"

log = logging.getLogger("detcal.dark_current")


def extrapolate_dark(dark, ngroups):
    """Append ``ngroups`` groups extrapolated from the last two (stcal ``extrapolate_dark``).

    ``new[j] = dark[-1] + j * (dark[-1] - dark[-2])`` for j = 1..ngroups; the difference is taken
    in the dark's dtype, the rest in float64 (as stcal, so the result is float64).

    Parameters
    ----------
    dark : ndarray, shape (ngroups_dark, ny, nx) or (nints_dark, ngroups_dark, ny, nx)   [DN]
    ngroups : int                                                                       >= 1

    Returns
    -------
    ndarray, float64, shape with ``ngroups_dark + ngroups`` groups                        [DN]
    """
    dark = np.asarray(dark)
    rate = dark[..., -1, :, :] - dark[..., -2, :, :]
    steps = np.arange(1, ngroups + 1).reshape(-1, 1, 1)
    new = steps * rate[..., None, :, :] + dark[..., -1:, :, :]
    return np.concatenate((dark.astype(np.float64), new), axis=-3)


def match_dark(dark, dark_nframes, dark_groupgap, ngroups, nframes, groupgap, nints=1, intstart=1,
               extrapolate=False, dark_name="<dark>"):
    """Build the dark that matches the science readout (see the module docstring).

    Parameters
    ----------
    dark : ndarray, float32, shape (ngroups_dark, ny, nx) or (nints_dark, ngroups_dark, ny, nx) [DN]
    dark_nframes, dark_groupgap : int      NFRAMES, GROUPGAP of the dark
    ngroups, nframes, groupgap : int       NGROUPS, NFRAMES, GROUPGAP of the science exposure
    nints : int                            science integrations (4-D darks)
    intstart : int                         INTSTART of the science file, 1-based (4-D darks)
    extrapolate : bool                     extrapolate a too-short dark instead of failing
    dark_name : str                        used in error messages

    Returns
    -------
    matched : ndarray, shape (ngroups, ny, nx), or (m, ngroups, ny, nx) for 4-D darks with
              m = min(nints_dark, intstart - 1 + nints)                           [DN], NaN -> 0.
              float32, except float64 when a directly used dark was extrapolated (as stcal).
    info : dict   ``mode`` ('direct' or 'averaged'), ``dark_frames``, ``needed_frames``,
                  ``extrapolated_groups``
    """
    dark, info = _prepare_dark(dark, dark_nframes, dark_groupgap, ngroups, nframes, groupgap,
                               nints, intstart, extrapolate, dark_name)
    return np.ascontiguousarray(matched_groups(dark, info["mode"], 0, ngroups, nframes,
                                               groupgap)), info


def _prepare_dark(dark, dark_nframes, dark_groupgap, ngroups, nframes, groupgap, nints, intstart,
                  extrapolate, dark_name):
    """Checks and mode of :func:`match_dark`; returns the dark to match from (integrations cut,
    extrapolated if asked) and ``info``. A :class:`detcal.io.LazyArray` dark stays lazy (cut to
    its integrations without reading) unless it is extrapolated."""
    from ..io import LazyArray

    if not isinstance(dark, LazyArray):
        dark = np.asarray(dark)
    if dark.ndim not in (3, 4):
        raise InputError(dark_name, f"dark SCI must be 3-D or 4-D, got shape {dark.shape}")
    nd = dark.shape[-3]
    needed = frames_per_integration(ngroups, nframes, groupgap)
    have = frames_per_integration(nd, dark_nframes, dark_groupgap)
    if (dark_nframes, dark_groupgap) == (nframes, groupgap):
        mode = "direct"
    elif (dark_nframes, dark_groupgap) == (1, 0):
        mode = "averaged"
    else:
        raise InputError(dark_name, (
            f"dark has NFRAMES={dark_nframes}, GROUPGAP={dark_groupgap}: it can neither be used "
            f"directly for science data with NFRAMES={nframes}, GROUPGAP={groupgap} nor averaged "
            "(that needs a NFRAMES=1, GROUPGAP=0 dark)"))
    if dark.ndim == 4:
        m = max(1, min(dark.shape[0], intstart - 1 + nints))
        dark = dark[:m]
    extra = 0
    if needed > have:
        if not extrapolate:
            raise InputError(dark_name, (
                f"dark has {have} frames ({nd} groups, NFRAMES={dark_nframes}, GROUPGAP={dark_groupgap}) "
                f"but the science exposure needs {needed} ({ngroups} groups, NFRAMES={nframes}, "
                f"GROUPGAP={groupgap}); use a longer dark, or extrapolate=True to extrapolate it "
                "linearly from its last two groups (as stcal does)"))
        if nd < 2:
            raise InputError(dark_name, "dark has a single group: it cannot be extrapolated")
        extra = -(-(needed - have + dark_groupgap) // (dark_nframes + dark_groupgap))
        log.warning("dark_current: %s has %d frames but %d are needed: extrapolating %d group(s) "
                    "linearly from the last two dark groups", dark_name, have, needed, extra)
        dark = extrapolate_dark(dark, extra)

    info = {"mode": mode, "dark_frames": have, "needed_frames": needed, "extrapolated_groups": extra}
    return dark, info


def matched_groups(dark, mode, g0, g1, nframes, groupgap):
    """Science groups ``g0 .. g1-1`` of the matched dark (see :func:`match_dark`; ``dark`` and
    ``mode`` as :func:`match_dark` prepared them): shape (..., g1 - g0, ny, nx) [DN], NaN -> 0.
    Only the dark groups that are used are copied."""

    def frames(a, b):
        block = dark[..., a:b, :, :].copy()
        nan = np.isnan(block)
        if nan.any():
            block[nan] = 0.0
        return block

    if mode == "direct":
        return frames(g0, g1)
    matched = np.empty(dark.shape[:-3] + (g1 - g0,) + dark.shape[-2:], np.float32)
    for j, g in enumerate(range(g0, g1)):
        start = g * (nframes + groupgap)
        if nframes == 1:
            matched[..., j, :, :] = frames(start, start + 1)[..., 0, :, :]
        else:
            matched[..., j, :, :] = frames(start, start + nframes).mean(axis=-3)
    return matched


def combined_dark_dq(dark_dq):
    """The dark's pixel DQ: a 2-D DQ as is; for a 4-D DQ the OR of ``dq[i, 0]`` over integrations.

    Parameters
    ----------
    dark_dq : ndarray, uint32, shape (ny, nx) or (nints_dark, ngroups_dark, ny, nx), or None

    Returns
    -------
    ndarray, uint32, shape (ny, nx), or None
    """
    if dark_dq is None:
        return None
    from ..io import LazyArray

    if isinstance(dark_dq, LazyArray) and dark_dq.ndim == 4:
        dark_dq = dark_dq[:, :1]                # only the first group is used: read only it
    dark_dq = np.asarray(dark_dq, np.uint32)
    if dark_dq.ndim == 2:
        return dark_dq
    if dark_dq.ndim == 4:
        return np.bitwise_or.reduce(dark_dq[:, 0], axis=0)
    raise ValueError(f"dark DQ must be 2-D or 4-D, got shape {dark_dq.shape}")


def integration_index(n_dark_ints, nints, intstart=1):
    """Dark integration used for each science integration (4-D darks), 0-based.

    Science integration ``i`` (0-based, absolute number ``intstart + i``) uses dark integration
    ``min(intstart - 1 + i, n_dark_ints - 1)``.

    Returns
    -------
    ndarray, int, shape (nints,)
    """
    return np.minimum(intstart - 1 + np.arange(nints), n_dark_ints - 1)


def subtract_dark(data, pixeldq, dark, dark_dq=None, intstart=1):
    """Subtract a matched dark from every group (stcal ``subtract_dark``).

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)     [DN]; not modified
    pixeldq : ndarray, uint32, shape (ny, nx)
    dark : ndarray, float32 (or float64), shape (>= ngroups, ny, nx) or
           (nints_dark, >= ngroups, ny, nx)                     [DN] from :func:`match_dark`
    dark_dq : ndarray, uint32, shape (ny, nx) or (nints_dark, ngroups_dark, ny, nx), or None
    intstart : int                                              INTSTART (4-D darks)

    Returns
    -------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)    ``data - dark`` (rounded once to
                                                               float32 when the dark is float64)
    pixeldq : ndarray, uint32, shape (ny, nx)                   ``pixeldq | dark DQ``
    """
    data = np.asarray(data, np.float32)
    nints, ngroups = data.shape[:2]
    if dark.shape[-3] < ngroups or dark.shape[-2:] != data.shape[2:]:
        raise ValueError(f"dark shape {dark.shape} does not cover the science ramp {data.shape}")
    out = data.copy()
    if dark.ndim == 4:
        index = integration_index(dark.shape[0], nints, intstart)
        for i in range(nints):
            out[i] -= dark[index[i], :ngroups]
    else:
        for i in range(nints):
            out[i] -= dark[:ngroups]
    pixeldq = np.asarray(pixeldq, np.uint32)
    dq = combined_dark_dq(dark_dq)
    if dq is not None:
        pixeldq = pixeldq | dq
    return out, pixeldq


def correct_dark(data, pixeldq, dark, dark_dq, dark_nframes, dark_groupgap, nframes, groupgap,
                 intstart=1, extrapolate=False, dark_name="<dark>"):
    """:func:`match_dark` then :func:`subtract_dark` (shapes, dtypes and units as there).

    Returns
    -------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   [DN]
    pixeldq : ndarray, uint32, shape (ny, nx)
    matched : ndarray, the dark that was subtracted (see :func:`match_dark`)   [DN]
    info : dict, from :func:`match_dark`
    """
    nints, ngroups = np.shape(data)[:2]
    matched, info = match_dark(dark, dark_nframes, dark_groupgap, ngroups, nframes, groupgap,
                               nints=nints, intstart=intstart, extrapolate=extrapolate,
                               dark_name=dark_name)
    data, pixeldq = subtract_dark(data, pixeldq, matched, dark_dq, intstart=intstart)
    return data, pixeldq, matched, info


def correct_dark_in_place(data, pixeldq, dark, dark_dq, dark_nframes, dark_groupgap, nframes,
                          groupgap, intstart=1, extrapolate=False, dark_name="<dark>",
                          memory_mb=16):
    """:func:`correct_dark` without copies of the ramp or of the dark: ``data`` is modified.

    The matched dark is built and subtracted a chunk of groups at a time (chunks of at most
    ``memory_mb`` [MB] of float32 matched dark, at least one group), with the same arithmetic as
    :func:`correct_dark`, so the result is identical. Peak memory: the inputs plus one chunk.

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)    [DN]; dark subtracted in place
    other parameters as :func:`correct_dark`; memory_mb : float   [MB]

    Returns
    -------
    data : the same array, pixeldq : ndarray, uint32 (ny, nx), info : dict from
    :func:`match_dark` plus ``last_group_mean`` (mean of the matched dark's last group [DN])
    """
    from ..io import block_size

    if not (isinstance(data, np.ndarray) and data.dtype == np.float32 and data.flags.writeable):
        raise ValueError("correct_dark_in_place needs a writeable float32 ndarray")
    nints, ngroups = data.shape[:2]
    prepared, info = _prepare_dark(dark, dark_nframes, dark_groupgap, ngroups, nframes, groupgap,
                                   nints, intstart, extrapolate, dark_name)
    if prepared.shape[-2:] != data.shape[2:]:
        raise ValueError(f"dark shape {prepared.shape} does not cover the science ramp {data.shape}")
    dark_ints = prepared.shape[0] if prepared.ndim == 4 else 1
    chunk = block_size(memory_mb, 4, (dark_ints, ngroups) + data.shape[2:], axis=1)  # float32 groups
    index = integration_index(dark_ints, nints, intstart) if prepared.ndim == 4 else None
    last = None
    for g0 in range(0, ngroups, chunk):
        g1 = min(ngroups, g0 + chunk)
        m = matched_groups(prepared, info["mode"], g0, g1, nframes, groupgap)
        for i in range(nints):
            data[i, g0:g1] -= m[index[i]] if index is not None else m
        last = m[..., -1, :, :].copy()
        del m                                   # one chunk alive at a time
    info["last_group_mean"] = float(np.mean(last))
    pixeldq = np.asarray(pixeldq, np.uint32)
    dq = combined_dark_dq(dark_dq)
    if dq is not None:
        pixeldq = pixeldq | dq
    return data, pixeldq, info


def resolve_average_dark_current(shape, value=None, array=None, keyword=None):
    """The average dark current for ramp fitting, by jwst's priority.

    Parameters
    ----------
    shape : tuple (ny, nx)
    value : float or None      the step parameter ``average_dark_current``          [e-/s]
    array : ndarray or None    the reference's AVDRKCUR image, shape (ny, nx)        [e-/s]
    keyword : float or None    the reference's AVDRKCUR header keyword               [e-/s]

    Returns
    -------
    avdrkcur : ndarray, float32, shape (ny, nx)                                      [e-/s]
    source : str               'parameter', 'reference image', 'reference keyword' or 'none'
    """
    shape = tuple(shape)
    if value is not None:
        return np.full(shape, value, np.float32), "parameter"
    if array is not None and np.sum(array) != 0.0:
        if tuple(np.shape(array)) == shape:
            return np.asarray(array, np.float32).copy(), "reference image"
        log.warning("dark_current: AVDRKCUR image %s does not match the science frames %s; not used",
                    np.shape(array), shape)
        return np.zeros(shape, np.float32), "none"
    if keyword is not None:
        return np.full(shape, float(keyword), np.float32), "reference keyword"
    return np.zeros(shape, np.float32), "none"


def ramp_average_dark_current(ramp):
    """The AVDRKCUR image stored on a ramp by :func:`run` (float32 (ny, nx), e-/s), zeros if none."""
    for hdu in ramp.tables:
        if hdu.name == AVDRKCUR and hdu.data is not None:
            return np.asarray(hdu.data, np.float32)
    return np.zeros(ramp.data.shape[2:], np.float32)


def _header_float(header, key):
    if header is None or key not in header or header[key] in (None, ""):
        return None
    try:
        return float(header[key])
    except (TypeError, ValueError):
        return None


def run(ramp, refs, dark_output=False, extrapolate=False, average_dark_current=None,
        memory_mb=16):
    """Subtract ``refs['dark']`` (a DARK :class:`detcal.io.Reference`) from a ramp.

    Parameters
    ----------
    ramp : detcal.io.Ramp
    refs : dict with 'dark'
    dark_output : bool or str     if set, also return the subtracted dark (jwst's ``dark_output``
                                  product) as a DARK Reference whose header has the science
                                  NFRAMES/NGROUPS/GROUPGAP, for the caller to write
    extrapolate : bool            extrapolate a dark that is too short (stcal behaviour)
    average_dark_current : float or None   overrides the reference's AVDRKCUR          [e-/s]
    memory_mb : float             without ``dark_output`` the ramp is corrected in place and
                                  the matched dark built in chunks of this size [MB]
                                  (:func:`correct_dark_in_place`; small chunks are reused
                                  heap memory and stay in the cache: MIRI full frame 0.21 s
                                  at 64 MB, 0.16-0.18 s at 16); with it, the whole matched
                                  dark and a corrected copy of the ramp are made

    Returns
    -------
    ramp, or (ramp, dark Reference) when ``dark_output`` is set
    """
    from astropy.io import fits

    from ..io import Reference

    meta = ramp.meta("dark_current")
    ref = refs["dark"]
    dark_nframes = keywords.value(ref.header, "NFRAMES", ref.path, needed_by="dark_current")
    dark_groupgap = keywords.value(ref.header, "GROUPGAP", ref.path, needed_by="dark_current")
    if ref.data.shape[-2:] != ramp.data.shape[2:]:
        raise InputError(ref.path, f"dark frames {ref.data.shape[-2:]} do not match the science frames "
                                   f"{ramp.data.shape[2:]} of {ramp.path}")
    intstart = ramp.get("INTSTART", 1) or 1
    try:
        dark_dq = combined_dark_dq(ref.dq)
    except ValueError as exc:
        raise InputError(ref.path, str(exc)) from None
    if dark_output:  # the whole matched dark is a product
        ramp.data, ramp.pixeldq, matched, info = correct_dark(
            ramp.data, ramp.pixeldq, ref.data, dark_dq, dark_nframes, dark_groupgap,
            meta["NFRAMES"], meta["GROUPGAP"], intstart=intstart, extrapolate=extrapolate,
            dark_name=ref.path)
        info["last_group_mean"] = float(np.mean(matched[..., -1, :, :]))
    else:            # bounded memory: the ramp is corrected in place, the dark a chunk at a time
        data = ramp.data
        if not (isinstance(data, np.ndarray) and data.dtype == np.float32
                and data.flags.writeable):
            data = np.array(data, np.float32)
        ramp.data, ramp.pixeldq, info = correct_dark_in_place(
            data, ramp.pixeldq, ref.data, dark_dq, dark_nframes, dark_groupgap, meta["NFRAMES"],
            meta["GROUPGAP"], intstart=intstart, extrapolate=extrapolate, dark_name=ref.path,
            memory_mb=memory_mb)

    avg, source = resolve_average_dark_current(ramp.data.shape[2:], value=average_dark_current,
                                       array=(ref.extras or {}).get(AVDRKCUR),
                                       keyword=_header_float(ref.header, AVDRKCUR))
    ramp.tables = [t for t in ramp.tables if t.name != AVDRKCUR]
    if np.any(avg != 0):
        ramp.tables.append(fits.ImageHDU(avg, name=AVDRKCUR))
    log.info("dark_current: %s, dark %s (%s%s), %d x %d groups, mean dark in last group %.4g DN, "
             "average dark current from %s (mean %.4g e-/s)", meta["DETECTOR"], ref.path, info["mode"],
             f", {info['extrapolated_groups']} groups extrapolated" if info["extrapolated_groups"]
             else "",
             ramp.data.shape[0], ramp.data.shape[1], info["last_group_mean"], source,
             float(avg.mean()) if avg.size else 0.0)
    if not dark_output:
        return ramp
    header = ref.header.copy() if ref.header is not None else fits.Header()
    header["NFRAMES"] = meta["NFRAMES"]
    header["GROUPGAP"] = meta["GROUPGAP"]
    header["NGROUPS"] = meta["NGROUPS"]
    out = Reference("DARK", np.asarray(matched, np.float32), dq=ref.dq, header=header, path=ref.path,
                    extras={AVDRKCUR: avg})
    return ramp, out
