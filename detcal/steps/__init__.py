"""Detector1 calibration steps: one module per step, and the registry of steps.

Each module holds pure functions on arrays (documented with shapes, dtypes and units), one
``run(ramp, refs, **params)`` that applies the step to a :class:`detcal.io.Ramp` in memory
(``refs`` maps config reference keys, e.g. ``'superbias'``, to :class:`detcal.io.Reference`
objects already cut to the ramp's subarray) and returns the ramp, and its ``DESCRIPTOR``
(:class:`detcal.steps.descriptor.Step`: name, jwst suffix, S_* keyword, references, header
keywords, parameters with defaults, position in each instrument family's chain). No file I/O, no
Snakemake.

Adding a step is one module: put ``<name>.py`` with ``run`` and ``DESCRIPTOR`` in this package
(or anywhere, named in the environment variable ``DETCAL_STEP_MODULES``, or passed to
:func:`register`). The step order, the reference table, the keyword lists, the config schema's
``steps``/``parameters`` blocks and the workflow's rule for the step all follow from the
descriptor (:mod:`detcal.steps.descriptor` lists where each is derived).
"""

import importlib
import pkgutil

from . import descriptor
from .descriptor import StepResult, register, unregister  # noqa: F401  (the public interface)

#: step name -> module, for every registered step (the descriptors' registry).
REGISTRY = descriptor.MODULES

for _info in pkgutil.iter_modules(__path__):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "DESCRIPTOR"):
        register(_module)
descriptor.load_environment()
