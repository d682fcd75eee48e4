"""reset (MIRI): subtract the reset anomaly, integration by integration (jwst 3.0 ``reset``).

The first groups after a MIRI reset sit off the linear ramp (the FET settles; worst in groups
1-2, faded by about group 15 on full frames, later on subarrays), with an amplitude that changes
over the first integrations. The RESET reference holds that offset per pixel, integration and
group, in raw DN (the step runs before linearity); jwst (``jwst/reset/reset_sub.py:
do_correction``) subtracts it:

1. ``reset_nints``, ``reset_ngroups`` = the reference's NINTS and NGROUPS header keywords (not
   the array shape; a keyword larger than the array is an error here, an IndexError in jwst).
2. NaN in the reference SCI counts as 0.
3. Only the first ``min(NGROUPS, reset_ngroups)`` groups of each integration are corrected.
4. Integration ``i`` of the exposure (1-based, INTSTART + index in the file) uses plane
   ``min(i, reset_nints)`` of the reference: integrations beyond the reference's use its last.
5. The reference DQ (2-D, after its DQ_DEF) is OR-ed into PIXELDQ; GROUPDQ is not touched.
6. Subtraction in float32. The reference ERR is not used (jwst leaves the ERR propagation
   stubbed out). There is no NGROUPS limit: a 1- or 2-group ramp gets its groups corrected.

Non-MIRI data: nothing is done, S_RESET = 'SKIPPED' (jwst tests DETECTOR[:3] == 'MIR'; here the
instrument family, as the other MIRI steps).

Shapes: data float32 (nints, ngroups, ny, nx) [DN]; reference SCI float32 (reset_nints',
ngroups', ny, nx) [DN], cut to the science subarray by :func:`detcal.io.read_reference`
(``like=ramp``).

Memory: the ramp is corrected in place (when it owns a writable float32 SCI) and the reference
subtracted plane by plane, :data:`CHUNK_MB` of groups at a time; the runner reads it lazily
(:data:`LAZY_REFERENCES`), so only the planes and groups used are read, never its ERR: the job
holds the ramp plus one chunk.
"""

import logging
import os

import numpy as np

from ..errors import InputError
from .descriptor import Step
from .guards import owned, skip_unless_miri

# detcal.io (astropy) is imported where used: every Snakemake parse imports this module for its
# DESCRIPTOR (the step registry), and a cluster job's parse must not pay astropy.

log = logging.getLogger("detcal.reset")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="reset",
    description="MIRI: subtract the RESET reference (reset anomaly per integration and group) before "
                "linearity, as jwst reset; switch off only together with a DARK that holds the reset anomaly",
    position={"MIRI": 40}, cal_step="S_RESET", suffix="resetstep", references=("reset",))

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: References read by sections (:func:`detcal.io.read_reference` with ``lazy=True``): only the
#: RESET planes and groups used are read, never its ERR.
LAZY_REFERENCES = ("reset",)

#: Work space of :func:`subtract_reset`: chunks of groups of one reference plane [MB of float32];
#: small enough to stay in the CPU cache between reading a chunk and subtracting it (full-frame
#: MIRI, one group: 0.24 s at 64 MB, 0.17 s at 4 MB for 3 x 40 groups).
CHUNK_MB = 4


def reset_planes(nints, intstart, reset_nints):
    """Reference plane (0-based) used by each integration of the file.

    Parameters
    ----------
    nints : int            integrations in the file
    intstart : int         INTSTART, 1-based number of the file's first integration
    reset_nints : int >= 1 the reference's NINTS

    Returns
    -------
    list of int, one per integration: ``min(intstart - 1 + k, reset_nints - 1)``
    """
    return [min(intstart - 1 + k, reset_nints - 1) for k in range(nints)]


def subtract_reset(data, pixeldq, reset, reset_dq, reset_nints=None, reset_ngroups=None,
                   intstart=1, out=None):
    """Subtract the reset anomaly from the first groups of every integration.

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)           [DN]
    pixeldq : ndarray, uint32, shape (ny, nx)
    reset : ndarray, float32, shape (nints_r, ngroups_r, ny, nx)     [DN]   NaN treated as 0
    reset_dq : ndarray, uint32, shape (ny, nx), or None              OR-ed into pixeldq
    reset_nints, reset_ngroups : int >= 1, or None                   the reference's NINTS and
        NGROUPS keywords (None: the array's); at most the array's
    intstart : int >= 1                                              INTSTART of the file
    out : ndarray, float32, shape of ``data``, optional              where to write the result;
        may be ``data`` itself (in place)

    Returns
    -------
    data : ndarray, float32, same shape     ``out``, or a new array
    pixeldq : ndarray, uint32, (ny, nx)     new array, ``pixeldq | reset_dq``
    info : dict   ``groups`` (groups corrected per integration), ``planes`` (reference plane of
                  each integration, 0-based), ``nan`` (NaN values in the used reference planes)

    The inputs are not modified (except ``data`` when it is ``out``).
    """
    from ..io import LazyArray, block_size, blocks

    if out is None:
        out = np.array(data, dtype=np.float32, copy=True)
    elif out is not data:
        np.copyto(out, data)
    pdq = np.array(pixeldq, dtype=np.uint32, copy=True)
    if not isinstance(reset, LazyArray):    # a LazyArray (the runner's) is read plane by plane below
        reset = np.asarray(reset, dtype=np.float32)
    if out.ndim != 4 or reset.ndim != 4:
        raise ValueError(f"data and reset must be 4-D, got shapes {out.shape} and {reset.shape}")
    if reset.shape[-2:] != out.shape[-2:]:
        raise ValueError(f"reset frames {reset.shape[-2:]} do not match the data frames "
                         f"{out.shape[-2:]}")
    reset_nints = reset.shape[0] if reset_nints is None else int(reset_nints)
    reset_ngroups = reset.shape[1] if reset_ngroups is None else int(reset_ngroups)
    if not (1 <= reset_nints <= reset.shape[0] and 1 <= reset_ngroups <= reset.shape[1]):
        raise ValueError(f"reset NINTS={reset_nints}, NGROUPS={reset_ngroups} do not fit its "
                         f"array of shape {reset.shape}")
    nints, ngroups = out.shape[:2]
    ngroups_corr = min(ngroups, reset_ngroups)
    planes = reset_planes(nints, intstart, reset_nints)
    # plane by plane, a chunk of groups at a time: only the planes and groups used are read (from
    # a LazyArray), and the work space is one chunk (CHUNK_MB), not the reference
    chunk = block_size(CHUNK_MB, 4, (ngroups_corr,) + tuple(out.shape[2:]), axis=0)
    n_nan = 0
    for plane in sorted(set(planes)):
        ints = [k for k, p in enumerate(planes) if p == plane]
        for groups in blocks(ngroups_corr, chunk):
            ref = reset[plane, groups]                 # read from disk, or a view: our copy
            ref = ref.read() if isinstance(ref, LazyArray) else np.array(ref, np.float32, copy=True)
            nan = np.isnan(ref)
            count = int(np.count_nonzero(nan))
            if count:
                n_nan += count
                ref[nan] = 0.0                         # our copy: NaN counts as 0
            for k in ints:
                out[k, groups] -= ref
    if nints and reset_dq is not None:
        pdq |= np.asarray(reset_dq, dtype=np.uint32)
    return out, pdq, {"groups": ngroups_corr, "planes": planes, "nan": n_nan}


def run(ramp, refs):
    """Apply :func:`subtract_reset` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['reset']``: RESET Reference (SCI 4-D, DQ 2-D; header NINTS and NGROUPS), cut to the
    ramp's subarray. A reference without NINTS/NGROUPS, or with values beyond its array, or with
    frames of another shape, is an :class:`InputError` naming the file.
    """
    if skip_unless_miri(ramp, "reset", "the reset-anomaly correction"):
        return ramp
    meta = ramp.meta("reset")
    ref = refs["reset"]
    shape = ramp.data.shape[-2:]
    if ref.data.ndim != 4:
        raise InputError(ref.path, f"RESET SCI has shape {ref.data.shape}; it must be 4-D "
                                   "(nints, ngroups, ny, nx)")
    for name in ("data", "dq"):
        arr = getattr(ref, name)
        if arr is not None and arr.shape[-2:] != shape:
            raise InputError(ref.path, f"RESET {name} has frames of {arr.shape[-2:]}, but the "
                                       f"science frames are {shape}; read it with like=ramp to cut a "
                                       "subarray")
    header = ref.header if ref.header is not None else {}
    counts = {}
    for key, axis in (("NINTS", 0), ("NGROUPS", 1)):
        if key not in header:
            raise InputError(ref.path, f"RESET reference has no {key} keyword (jwst reads the number "
                                       f"of {'integrations' if axis == 0 else 'groups'} it covers "
                                       "from it)")
        try:
            counts[key] = int(header[key])
        except (TypeError, ValueError):
            raise InputError(ref.path,
                             f"RESET keyword {key}={header[key]!r} is not an integer") from None
        if not 1 <= counts[key] <= ref.data.shape[axis]:
            raise InputError(ref.path, f"RESET {key}={counts[key]} does not fit its SCI array of "
                                       f"shape {ref.data.shape}")
    intstart = ramp.get("INTSTART", 1) or 1
    # in place when the ramp owns its SCI (always, read from a file): no second cube
    ramp.data, ramp.pixeldq, info = subtract_reset(ramp.data, ramp.pixeldq, ref.data, ref.dq,
                                                   counts["NINTS"], counts["NGROUPS"], intstart,
                                                   out=owned(ramp.data, np.float32))
    ramp.header["R_RESET"] = os.path.basename(ref.path)
    planes = info["planes"]
    log.info("reset: %s, NGROUPS=%d, INTSTART=%d: subtracted the first %d group(s) of the RESET "
             "reference (NINTS=%d, NGROUPS=%d) from integrations %d-%d using reference plane(s) "
             "%s (1-based); %d NaN reference values treated as 0", meta["DETECTOR"],
             ramp.data.shape[1], intstart, info["groups"], counts["NINTS"], counts["NGROUPS"],
             intstart, intstart + len(planes) - 1, sorted({p + 1 for p in planes}), info["nan"])
    return ramp
