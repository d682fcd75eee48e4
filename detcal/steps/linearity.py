"""Classic (group-level) non-linearity correction (jwst ``linearity`` / stcal ``linearity``).

Every group value ``x`` of a pixel is replaced by the polynomial ``sum_j coeffs[j] * x**j`` of
the LINEARITY reference (``coeffs[0]`` is the constant term), evaluated by Horner's rule in
float32 in the same order as stcal 1.20 ``apply_polynomial``::

    r = c[n-1] * x
    for j in n-2 .. 1:  r += c[j];  r *= x
    r += c[0]

so results are bit-identical to stcal. Groups flagged SATURATED keep their input value
(DO_NOT_USE groups *are* corrected, as in stcal). Pixels flagged NO_LIN_CORR in the reference DQ
are left unchanged; pixels with a NaN coefficient or a zero linear term are left unchanged and get
NO_LIN_CORR in PIXELDQ. All reference DQ bits are OR-ed into PIXELDQ. A level-1b ZEROFRAME
(ZEROFRAM = T) is linearised with the same coefficients as a one-group ramp; its 0 values ("no
value") stay 0 (stcal ``linearity_correction(zframe=...)``; always the group-level polynomial).

Not implemented: stcal's read-level path (used by jwst only when the reference has INV_COEFFS,
NFRAMES > 1 and the exposure has no read times), which linearises the individual frames of a
multi-frame group through the inverse polynomial. :func:`run` logs a warning when that path
would have applied; otherwise the results are those of jwst.
"""

import logging

import numpy as np

from .. import dqflags
from ..errors import InputError
from .descriptor import Step
from .guards import owned

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="linearity", description="Classical linearity correction",
    position={"NIR": 50, "MIRI": 50}, cal_step="S_LINEAR", suffix="linearitystep", references=("linearity",))

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

log = logging.getLogger("detcal.linearity")

_SAT = np.uint8(dqflags.SATURATED)
_NO_LIN = np.uint32(dqflags.NO_LIN_CORR)


def prepare_coefficients(coeffs, lin_dq, pixeldq):
    """Replace unusable coefficients by the identity ``[0, 1, 0, ...]`` (stcal ``prepare_coefficients``).

    Parameters
    ----------
    coeffs : ndarray, float32, shape (ncoeffs, ny, nx)   ncoeffs >= 2; not modified
    lin_dq : ndarray, uint32, shape (ny, nx) or None       reference DQ
    pixeldq : ndarray, uint32, shape (ny, nx)

    Returns
    -------
    coeffs : ndarray, float32, shape (ncoeffs, ny, nx)     copy with identity coefficients where
                                                           NO_LIN_CORR, NaN, or coeffs[1] == 0
    pixeldq : ndarray, uint32, shape (ny, nx)              pixeldq | lin_dq | NO_LIN_CORR (NaN/zero)
    n_bad : int                                            pixels identity-ed because of NaN/zero
    """
    coeffs = np.array(coeffs, dtype=np.float32, copy=True)
    if coeffs.ndim != 3 or coeffs.shape[0] < 2:
        raise ValueError(f"coefficients must be (ncoeffs >= 2, ny, nx), got shape {coeffs.shape}")
    pixeldq = np.asarray(pixeldq, np.uint32)
    lin_dq = np.zeros(pixeldq.shape, np.uint32) if lin_dq is None else np.asarray(lin_dq, np.uint32)
    new_pdq = pixeldq | lin_dq
    identity = np.zeros(coeffs.shape[0], np.float32)
    identity[1] = 1.0
    flagged = (lin_dq & _NO_LIN) != 0
    coeffs[:, flagged] = identity[:, None]
    bad = np.isnan(coeffs).any(axis=0) | (coeffs[1] == 0)
    coeffs[:, bad] = identity[:, None]
    new_pdq[bad] |= _NO_LIN
    return coeffs, new_pdq, int(bad.sum())


def apply_polynomial(x, coeffs, out=None):
    """Evaluate ``sum_j coeffs[j] * x**j`` by Horner's rule in float32 (stcal's operation order).

    Parameters
    ----------
    x : ndarray, float32, shape (..., ny, nx)         [DN]
    coeffs : ndarray, float32, shape (ncoeffs, ny, nx)
    out : ndarray, float32, shape of ``x``, optional  where to write the result (not ``x`` itself)

    Returns
    -------
    ndarray, float32, shape of ``x``                   [DN]
    """
    n = coeffs.shape[0]
    r = np.multiply(coeffs[n - 1], x, out=out)
    for j in range(n - 2, 0, -1):
        r += coeffs[j]
        r *= x
    r += coeffs[0]
    return r


#: Bytes of one block of rows (the coefficients, a group's values and the scratch rows): small
#: enough to stay in the CPU cache through the Horner passes, so each value is read from memory
#: once instead of once per pass (2048^2 x 10 groups, 5 coefficients: ~0.05 s against 0.4 s).
BLOCK_BYTES = 2 << 20


def correct_linearity(data, groupdq, pixeldq, coeffs, lin_dq=None, out=None):
    """Linearise every group (see the module docstring).

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   [DN]; not modified unless it is ``out``
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)   SATURATED groups are left unchanged
    pixeldq : ndarray, uint32, shape (ny, nx)
    coeffs : ndarray, float32, shape (ncoeffs, ny, nx)          COEFFS, coeffs[0] = constant term
    lin_dq : ndarray, uint32, shape (ny, nx) or None            reference DQ (OR-ed into pixeldq)
    out : ndarray, float32, shape of ``data``, optional         where to write the result; may be
                                                                ``data`` itself (in place)

    Returns
    -------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)   corrected [DN]: ``out``, or a new array
    pixeldq : ndarray, uint32, shape (ny, nx)                  with the reference DQ and NO_LIN_CORR

    The polynomial is evaluated on blocks of rows (:data:`BLOCK_BYTES`) into a scratch block that
    is then copied to ``out``, so the result does not depend on the block size or on ``out``
    being ``data``.
    """
    data = np.asarray(data, np.float32)
    if data.ndim != 4:
        raise ValueError(f"data must be 4-D (nints, ngroups, ny, nx), got shape {data.shape}")
    if tuple(np.shape(coeffs)[-2:]) != data.shape[2:]:
        raise ValueError(f"coefficients {np.shape(coeffs)} do not match frames {data.shape[2:]}")
    coeffs, pixeldq, _ = prepare_coefficients(coeffs, lin_dq, pixeldq)
    out = np.empty_like(data) if out is None else out
    groupdq = np.asarray(groupdq)
    nints, ngroups, ny, nx = data.shape
    rows = int(max(1, min(ny, BLOCK_BYTES // (4 * nx * (coeffs.shape[0] + 3)))))
    scratch = np.empty((rows, nx), np.float32)
    bits = np.empty((rows, nx), np.uint8)
    keep = np.empty((rows, nx), bool)
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        c, r, b, k = coeffs[:, y0:y1], scratch[:y1 - y0], bits[:y1 - y0], keep[:y1 - y0]
        for i in range(nints):
            for g in range(ngroups):
                x = data[i, g, y0:y1]
                apply_polynomial(x, c, out=r)
                np.not_equal(np.bitwise_and(groupdq[i, g, y0:y1], _SAT, out=b), 0, out=k)
                np.copyto(r, x, where=k)
                out[i, g, y0:y1] = r
    return out, pixeldq


def run(ramp, refs):
    """Apply :func:`correct_linearity` with ``refs['linearity']`` (a LINEARITY Reference).

    Logs the number of pixels left uncorrected (NO_LIN_CORR) and of saturated groups kept.
    """
    meta = ramp.meta("linearity")
    ref = refs["linearity"]
    coeffs = ref.data
    if coeffs.ndim != 3 or coeffs.shape[0] < 2:
        raise InputError(ref.path, f"COEFFS must be (ncoeffs >= 2, ny, nx), got shape {coeffs.shape}")
    if coeffs.shape[1:] != ramp.data.shape[2:]:
        raise InputError(ref.path, f"COEFFS frames {coeffs.shape[1:]} do not match the science frames "
                                   f"{ramp.data.shape[2:]} of {ramp.path}")
    if "INV_COEFFS" in (ref.extras or {}) and meta["NFRAMES"] > 1:
        log.warning("linearity: %s has INV_COEFFS and NFRAMES=%d > 1; jwst would use the read-level "
                    "correction, detcal applies the group-level one", ref.path, meta["NFRAMES"])
    before = ramp.pixeldq
    # in place when the ramp owns its SCI (always, read from a file): no second cube
    ramp.data, ramp.pixeldq = correct_linearity(ramp.data, ramp.groupdq, ramp.pixeldq, coeffs, ref.dq,
                                                out=owned(ramp.data, np.float32))
    if ramp.correct_zeroframe(lambda zf: correct_linearity(
            zf[:, None], np.zeros((zf.shape[0], 1) + zf.shape[1:], np.uint8), before, coeffs,
            ref.dq)[0][:, 0]):
        log.info("linearity: ZEROFRAME linearised too (its 0 values kept)")
    nolin = (ramp.pixeldq & _NO_LIN) != 0
    added = int((nolin & ((before & _NO_LIN) == 0)).sum())
    plane = np.empty(ramp.data.shape[2:], np.uint8)        # counted plane by plane: no cube temporaries
    nsat = sum(int(np.count_nonzero(np.bitwise_and(g, _SAT, out=plane)))
               for g in ramp.groupdq.reshape((-1,) + plane.shape))
    log.info("linearity: %s, %d coefficients, %d pixels without correction (NO_LIN_CORR, %d new), "
             "%d saturated groups left unchanged", meta["DETECTOR"], coeffs.shape[0], int(nolin.sum()),
             added, nsat)
    return ramp
