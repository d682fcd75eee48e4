"""Detector1 calibration steps.

Each module holds pure functions on arrays (documented with shapes, dtypes and units) and one
``run(ramp, refs, **params)`` that applies the step to a :class:`detcal.io.Ramp` in memory
(``refs`` maps config reference keys, e.g. ``'superbias'``, to :class:`detcal.io.Reference`
objects already cut to the ramp's subarray) and returns the ramp. No file I/O, no Snakemake.
"""

import importlib

_NAMES = ("dq_init", "saturation", "superbias", "refpix", "lastframe", "reset", "linearity", "rscd",
          "dark_current", "jump", "ramp_fit")

#: step name -> module, for the steps implemented so far.
REGISTRY = {}
for _name in _NAMES:
    try:
        REGISTRY[_name] = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_name}":
            raise
