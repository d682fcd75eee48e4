"""lastframe (MIRI): flag the last group of every integration DO_NOT_USE (jwst 3.0 ``lastframe``).

The last read of a MIRI integration is pulled off the ramp by the reset of the next row pair
(the "last-frame effect"); jwst (``jwst/lastframe/lastframe_sub.py: do_correction``) does no
arithmetic, it flags the group:

* NGROUPS > 2 (the number of groups in the data array): ``groupdq[:, -1] |= DO_NOT_USE`` in every
  integration and pixel; S_LASTFR = 'COMPLETE'.
* NGROUPS <= 2: nothing is flagged (too few groups would remain for a slope); S_LASTFR =
  'SKIPPED'.
* Not MIRI data: nothing is flagged, S_LASTFR = 'SKIPPED' (jwst tests DETECTOR[:3] == 'MIR';
  here the instrument family, as the other MIRI steps, which is the same for every MIRI file).

SCI, PIXELDQ and ERR are not touched; no reference file.
"""

import logging

import numpy as np

from .. import dqflags
from .descriptor import Step
from .guards import owned, skip_unless_miri

log = logging.getLogger("detcal.lastframe")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="lastframe",
    description="MIRI: flag the last group of every integration DO_NOT_USE (NGROUPS > 2), as jwst lastframe",
    position={"MIRI": 30}, cal_step="S_LASTFR", suffix="lastframestep")

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: Fewest groups for which the last one is flagged (jwst: ``ngroups > 2``).
MIN_NGROUPS = 3


def flag_last_group(groupdq, out=None):
    """Flag the final group of every integration DO_NOT_USE when there are more than 2 groups.

    Parameters
    ----------
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)
    out : ndarray, uint8, shape of ``groupdq``, optional   where to write the result; may be
        ``groupdq`` itself (in place: no new cube)

    Returns
    -------
    groupdq : ndarray, uint8, same shape    ``out`` or a new array, last group OR DO_NOT_USE
    flagged : bool                          False when NGROUPS < :data:`MIN_NGROUPS` (unchanged)
    """
    if out is None:
        out = np.array(groupdq, dtype=np.uint8, copy=True)
    elif out is not groupdq:
        np.copyto(out, groupdq)
    if out.ndim != 4:
        raise ValueError(f"groupdq must be 4-D (nints, ngroups, ny, nx), got shape {out.shape}")
    if out.shape[1] < MIN_NGROUPS:
        return out, False
    out[:, -1] |= np.uint8(dqflags.DO_NOT_USE)
    return out, True


def run(ramp, refs=None):
    """Apply :func:`flag_last_group` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs`` is not used (the step reads no reference file).

    Sets S_LASTFR = 'SKIPPED' for non-MIRI data and for NGROUPS <= 2, and logs why.
    """
    if skip_unless_miri(ramp, "lastframe", "the last-frame flagging"):
        return ramp
    gdq = ramp.groupdq         # in place when the ramp owns its GROUPDQ (no new cube)
    ramp.groupdq, flagged = flag_last_group(gdq, out=owned(gdq, np.uint8))
    nints, ngroups = ramp.data.shape[:2]
    if not flagged:
        log.warning("lastframe: %s has NGROUPS=%d < %d: too few groups to flag the last one; "
                    "skipped (S_LASTFR = SKIPPED)", ramp.path, ngroups, MIN_NGROUPS)
        ramp.header["S_LASTFR"] = "SKIPPED"
        return ramp
    log.info("lastframe: group %d of %d flagged DO_NOT_USE in %d integration(s)", ngroups, ngroups,
             nints)
    return ramp
