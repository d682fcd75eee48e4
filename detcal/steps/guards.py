"""Checks shared by the step modules' ``run`` functions (no arrays touched here)."""

import logging

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
