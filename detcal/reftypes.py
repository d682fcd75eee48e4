"""Reference-file types: the config keys, the REFTYPE of each, and each type's layout.

The tables :mod:`detcal.io` reads and writes reference files by (it re-exports them:
``detcal.io.REFTYPES`` is this module's dict) and that a step's descriptor extends with the types
it brings (:func:`detcal.steps.descriptor.register`). They live here, with numpy only, because the
step registry checks every descriptor against them when :mod:`detcal.steps` is imported, which
every Snakemake parse of the workflow does (a cluster job's too): the registry must not import
astropy through :mod:`detcal.io`.
"""

import numpy as np

#: Extensions of each reference type: name -> (dtype, ndim or tuple of allowed ndims, required).
LAYOUT = {
    "MASK": {"DQ": (np.uint32, 2, True)},
    "SATURATION": {"SCI": (np.float32, 2, True), "DQ": (np.uint32, 2, False)},
    "SUPERBIAS": {"SCI": (np.float32, 2, True), "DQ": (np.uint32, 2, False), "ERR": (np.float32, 2, False)},
    "LINEARITY": {"COEFFS": (np.float32, 3, True), "DQ": (np.uint32, 2, False),
                  "INV_COEFFS": (np.float32, 3, False)},
    "DARK": {"SCI": (np.float32, (3, 4), True), "DQ": (np.uint32, (2, 4), False),
             "ERR": (np.float32, (3, 4), False), "AVDRKCUR": (np.float32, 2, False)},
    "GAIN": {"SCI": (np.float32, 2, True)},
    "READNOISE": {"SCI": (np.float32, 2, True)},
    "RSCD": {},
    # jwst ResetModel: SCI/ERR (nints, ngroups, ny, nx), DQ 2-D (OR-ed into PIXELDQ)
    "RESET": {"SCI": (np.float32, 4, True), "DQ": (np.uint32, 2, False), "ERR": (np.float32, 4, False)},
}

#: Config key (``references: {DET: {key: path}}``) -> REFTYPE.
REFTYPES = {"mask": "MASK", "saturation": "SATURATION", "superbias": "SUPERBIAS",
            "linearity": "LINEARITY", "dark": "DARK", "gain": "GAIN", "readnoise": "READNOISE",
            "rscd": "RSCD", "reset": "RESET"}

#: The main array of each type (the one whose last two axes are the image).
MAIN = {"MASK": "DQ", "LINEARITY": "COEFFS"}

#: DATAMODL of each type: the stdatamodels class ``datamodels.open`` returns (MIRI DARK: 4-D).
DATAMODL = {"MASK": "MaskModel", "SATURATION": "SaturationModel", "SUPERBIAS": "SuperBiasModel",
            "LINEARITY": "LinearityModel", "DARK": "DarkModel", "GAIN": "GainModel",
            "READNOISE": "ReadnoiseModel", "RSCD": "RSCDModel", "RESET": "ResetModel"}
