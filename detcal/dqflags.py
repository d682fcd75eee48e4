"""Data-quality bit values: the one definition used everywhere in detcal.

Values are the JWST ones (``stdatamodels.jwst.datamodels.dqflags``). PIXELDQ is uint32; GROUPDQ is
uint8 and only carries the flags in :data:`GROUP`.
"""

GOOD = 0
DO_NOT_USE = 1 << 0
SATURATED = 1 << 1
JUMP_DET = 1 << 2
DROPOUT = 1 << 3
OUTLIER = 1 << 4
PERSISTENCE = 1 << 5
AD_FLOOR = 1 << 6
CHARGELOSS = 1 << 7
RESERVED = 1 << 8
NON_SCIENCE = 1 << 9
DEAD = 1 << 10
HOT = 1 << 11
WARM = 1 << 12
LOW_QE = 1 << 13
RC = 1 << 14
TELEGRAPH = 1 << 15
NONLINEAR = 1 << 16
BAD_REF_PIXEL = 1 << 17
NO_FLAT_FIELD = 1 << 18
NO_GAIN_VALUE = 1 << 19
NO_LIN_CORR = 1 << 20
NO_SAT_CHECK = 1 << 21
UNRELIABLE_BIAS = 1 << 22
UNRELIABLE_DARK = 1 << 23
UNRELIABLE_SLOPE = 1 << 24
UNRELIABLE_FLAT = 1 << 25
OPEN = 1 << 26
ADJ_OPEN = 1 << 27
FLUX_ESTIMATED = 1 << 28
MSA_FAILED_OPEN = 1 << 29
OTHER_BAD_PIXEL = 1 << 30
REFERENCE_PIXEL = 1 << 31

#: name -> value for every pixel flag (the JWST ``dqflags.pixel`` mapping).
PIXEL = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int)
}

#: The flags that may appear in GROUPDQ (all fit in uint8).
GROUP = {
    name: PIXEL[name]
    for name in ("GOOD", "DO_NOT_USE", "SATURATED", "JUMP_DET", "DROPOUT", "PERSISTENCE",
                 "AD_FLOOR", "CHARGELOSS")
}

#: One-line descriptions, written to the DQ_DEF table of reference files.
DESCRIPTIONS = {
    "GOOD": "Good pixel",
    "DO_NOT_USE": "Bad pixel. Do not use.",
    "SATURATED": "Pixel saturated during exposure",
    "JUMP_DET": "Jump detected during exposure",
    "DROPOUT": "Data lost in transmission",
    "OUTLIER": "Flagged by outlier detection",
    "PERSISTENCE": "High persistence",
    "AD_FLOOR": "Below A/D floor",
    "CHARGELOSS": "Charge migration",
    "RESERVED": "Reserved",
    "NON_SCIENCE": "Pixel not on science portion of detector",
    "DEAD": "Dead pixel",
    "HOT": "Hot pixel",
    "WARM": "Warm pixel",
    "LOW_QE": "Low quantum efficiency",
    "RC": "RC pixel",
    "TELEGRAPH": "Telegraph pixel",
    "NONLINEAR": "Pixel highly nonlinear",
    "BAD_REF_PIXEL": "Reference pixel cannot be used",
    "NO_FLAT_FIELD": "Flat field cannot be measured",
    "NO_GAIN_VALUE": "Gain cannot be measured",
    "NO_LIN_CORR": "Linearity correction not available",
    "NO_SAT_CHECK": "Saturation check not available",
    "UNRELIABLE_BIAS": "Bias variance large",
    "UNRELIABLE_DARK": "Dark variance large",
    "UNRELIABLE_SLOPE": "Slope variance large (i.e., noisy pixel)",
    "UNRELIABLE_FLAT": "Flat variance large",
    "OPEN": "Open pixel (counts move to adjacent pixels)",
    "ADJ_OPEN": "Adjacent to open pixel",
    "FLUX_ESTIMATED": "Pixel flux estimated due to missing/bad data",
    "MSA_FAILED_OPEN": "Pixel sees light from failed-open shutter",
    "OTHER_BAD_PIXEL": "A catch-all flag",
    "REFERENCE_PIXEL": "Pixel is a reference pixel",
}


def names(value):
    """Return the flag names set in one DQ value (e.g. ``names(2049) == ['DO_NOT_USE', 'HOT']``)."""
    value = int(value)
    return [n for n, v in PIXEL.items() if v and value & v]
