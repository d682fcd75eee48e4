"""dq_init: initialise the pixel and group DQ from the MASK reference file.

As jwst ``dq_init.dq_initialization.do_dqinit`` for ramps: ``pixeldq |= mask`` and every group of a
pixel whose mask has DO_NOT_USE gets DO_NOT_USE.
"""

import logging
import os

import numpy as np

from .. import dqflags
from ..errors import InputError
from .descriptor import Step
from .guards import owned

log = logging.getLogger("detcal.dq_init")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="dq_init", description="Initialise PIXELDQ/GROUPDQ from the MASK reference",
    position={"NIR": 10, "MIRI": 10}, cal_step="S_DQINIT", suffix="dqinitstep", references=("mask",))

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references


def initialize(pixeldq, groupdq, mask_dq, out=None):
    """Merge the bad-pixel mask into the DQ arrays.

    Parameters
    ----------
    pixeldq : ndarray, uint32, shape (ny, nx)
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)
    mask_dq : ndarray, uint32, shape (ny, nx)        MASK reference DQ (DQ_DEF already applied)
    out : ndarray, uint8, shape of ``groupdq``, optional   where to write the new GROUPDQ; may be
                                                     ``groupdq`` itself (in place)

    Returns
    -------
    pixeldq : ndarray, uint32, shape (ny, nx)                       new array, ``pixeldq | mask_dq``
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)        ``out`` or a new array;
        DO_NOT_USE in every group of the pixels whose mask has DO_NOT_USE

    The inputs are not modified (except ``groupdq`` when it is ``out``).
    """
    mask_dq = np.asarray(mask_dq, dtype=np.uint32)
    if mask_dq.shape != np.shape(pixeldq) or mask_dq.shape != np.shape(groupdq)[-2:]:
        raise ValueError(f"mask shape {mask_dq.shape} does not match pixeldq {np.shape(pixeldq)} / "
                         f"groupdq {np.shape(groupdq)}")
    pdq = np.bitwise_or(np.asarray(pixeldq, dtype=np.uint32), mask_dq)
    dnu = (mask_dq & np.uint32(dqflags.DO_NOT_USE)).astype(np.uint8)
    gdq = np.bitwise_or(np.asarray(groupdq, dtype=np.uint8), dnu, out=out)
    return pdq, gdq


def run(ramp, refs):
    """Apply :func:`initialize` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['mask']``: MASK Reference (its ``dq``), cut to the ramp's subarray.
    """
    ramp.meta("dq_init")
    ref = refs["mask"]
    shape = ramp.data.shape[-2:]
    if ref.dq is None or ref.dq.shape != shape:
        got = None if ref.dq is None else ref.dq.shape
        raise InputError(ref.path, f"MASK DQ has shape {got}, but the science frames are {shape}; "
                                   "read it with like=ramp to cut a subarray")
    gdq = ramp.groupdq         # in place when the ramp owns its GROUPDQ (no new cube)
    ramp.pixeldq, ramp.groupdq = initialize(ramp.pixeldq, gdq, ref.dq, out=owned(gdq, np.uint8))
    ramp.header["R_MASK"] = os.path.basename(ref.path)
    n_dnu = int(np.count_nonzero(ref.dq & dqflags.DO_NOT_USE))
    n_flag = int(np.count_nonzero(ref.dq))
    log.info("dq_init: %d flagged pixels in the mask, %d of them DO_NOT_USE in every group",
             n_flag, n_dnu)
    return ramp
