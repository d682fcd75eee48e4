"""Superbias: subtract the bias frame from every group of every integration.

As jwst ``superbias.bias_sub.do_correction``: NaN bias values are treated as 0, the reference DQ is
OR-ed into PIXELDQ, the subtraction is done in float32. The reference ERR is not used.
A level-1b ZEROFRAME (ZEROFRAM = T) has the bias subtracted too; its 0 values ("no value") stay 0.
"""

import logging
import os

import numpy as np

from ..errors import InputError
from .descriptor import Step
from .guards import owned

log = logging.getLogger("detcal.superbias")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="superbias", description="Subtract the superbias (NIR only)",
    position={"NIR": 30}, cal_step="S_SUPERB", suffix="superbiasstep", references=("superbias",))

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references


def subtract_superbias(data, pixeldq, bias, bias_dq, out=None):
    """Subtract the superbias from every group.

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   [DN]
    pixeldq : ndarray, uint32, shape (ny, nx)
    bias : ndarray, float32, shape (ny, nx)                     [DN]   NaN treated as 0
    bias_dq : ndarray, uint32, shape (ny, nx), or None          OR-ed into pixeldq
    out : ndarray, float32, shape of ``data``, optional         where to write ``data - bias``; may
                                                                be ``data`` itself (in place)

    Returns
    -------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)     [DN]   ``data - bias``: ``out``, or a
                                                                new array
    pixeldq : ndarray, uint32, shape (ny, nx)                   new array, ``pixeldq | bias_dq``

    The inputs are not modified (except ``data`` when it is ``out``).
    """
    bias = np.asarray(bias, dtype=np.float32)
    if bias.shape != np.shape(data)[-2:]:
        raise ValueError(f"bias shape {bias.shape} does not match the frames of data {np.shape(data)}")
    bias = np.where(np.isnan(bias), np.float32(0.0), bias)
    out = np.subtract(np.asarray(data, dtype=np.float32), bias, out=out, dtype=np.float32)
    pdq = np.array(pixeldq, dtype=np.uint32, copy=True)
    if bias_dq is not None:
        pdq |= np.asarray(bias_dq, dtype=np.uint32)
    return out, pdq


def run(ramp, refs):
    """Apply :func:`subtract_superbias` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['superbias']``: SUPERBIAS Reference (SCI, DQ), cut to the ramp's subarray.
    """
    ramp.meta("superbias")
    ref = refs["superbias"]
    shape = ramp.data.shape[-2:]
    for name in ("data", "dq"):
        arr = getattr(ref, name)
        if arr is not None and arr.shape != shape:
            raise InputError(ref.path, f"SUPERBIAS {name} has shape {arr.shape}, but the science "
                                       f"frames are {shape}; read it with like=ramp to cut a subarray")
    n_nan = int(np.count_nonzero(np.isnan(ref.data)))
    # in place when the ramp owns its SCI (always, read from a file): no second cube
    ramp.data, ramp.pixeldq = subtract_superbias(ramp.data, ramp.pixeldq, ref.data, ref.dq,
                                                 out=owned(ramp.data, np.float32))
    if ramp.correct_zeroframe(lambda zf: subtract_superbias(zf[:, None], ramp.pixeldq, ref.data,
                                                           None)[0][:, 0]):
        log.info("superbias: subtracted from the ZEROFRAME too (its 0 values kept)")
    ramp.header["R_SUPERB"] = os.path.basename(ref.path)
    finite = ref.data[np.isfinite(ref.data)]
    log.info("superbias: subtracted bias of median %.1f DN from %d groups x %d integrations; "
             "%d NaN bias pixels treated as 0", float(np.median(finite)) if finite.size else 0.0,
             ramp.data.shape[1], ramp.data.shape[0], n_nan)
    return ramp
