"""Reference files from dark exposures: DARK, SUPERBIAS, READNOISE and a bad-pixel MASK.

Each module holds pure array functions and one file-level function that takes the input files of
ONE configuration group (:data:`detcal.keywords.GROUP`; a mixed set is an InputError naming the
odd file and keyword) and writes a JWST reference file (validated by the matching stdatamodels
model), plus an optional TSV table and a PNG figure drawn from it:

========================  ===================================================================
:func:`make_dark`         DARK (DarkModel; MIRI: DarkMIRIModel 4-D) from :data:`INPUTS` ``dark``
:func:`make_superbias`    SUPERBIAS (SuperBiasModel) and the kTC noise, NIR only
:func:`make_readnoise`    READNOISE (ReadnoiseModel): CDS noise in DN
:func:`make_mask`         MASK (MaskModel): HOT, WARM, UNRELIABLE_SLOPE, RC, TELEGRAPH, DEAD
========================  ===================================================================
"""

from .badpix import make_mask
from .dark import make_dark
from .readnoise import make_readnoise
from .superbias import make_superbias

#: What each builder reads: the processing state of its input files (for the workflow).
INPUTS = {
    "dark": "jump-flagged ramps WITHOUT dark subtraction, NFRAMES=1/GROUPGAP=0: NIR dq_init, "
            "saturation, superbias, refpix, linearity, jump; MIRI dq_init, saturation, linearity, "
            "rscd, jump",
    "superbias": "NIR ramps after dq_init and saturation only (not superbias, not refpix)",
    "readnoise": "ramps after dq_init, saturation, superbias, refpix (linearity, jump allowed): "
                 "the DARK's inputs do",
    "mask": "rateints (ramp_fit) of the DARK's inputs (no dark subtraction), plus those jump "
            "ramps themselves, plus a gain (number or GAIN reference)",
}

__all__ = ["INPUTS", "make_dark", "make_mask", "make_readnoise", "make_superbias"]
