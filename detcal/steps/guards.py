"""Checks shared by the step modules' ``run`` functions (no arrays touched here)."""

import logging

import numpy as np

from .. import keywords
from ..geometry import family


def skip_unless_miri(ramp, step, what):
    """True (and the step's S_* keyword set to SKIPPED, with a log line) when ``ramp`` is not
    MIRI data: ``what`` names the MIRI-only correction in the message."""
    instrument = ramp.meta(step)["INSTRUME"]
    if family(instrument) == "MIRI":
        return False
    logging.getLogger(f"detcal.{step}").warning(
        "%s: %s is %s data; %s is for MIRI only: skipped", step, ramp.path, instrument, what)
    ramp.header[keywords.CAL_STEP[step]] = "SKIPPED"
    return True


def owned(arr, dtype):
    """``arr`` when a step may write its result into it (``out=``): a writeable, C-contiguous
    numpy array of ``dtype``, as a ramp read from a file owns its SCI (float32) and GROUPDQ
    (uint8); otherwise None, and the step makes a new array (no second cube in the usual case)."""
    if (isinstance(arr, np.ndarray) and arr.dtype == np.dtype(dtype) and arr.flags.writeable
            and arr.flags.c_contiguous):
        return arr
    return None
