"""CCD dark calibration (ground-observatory style, ccdproc's algorithms in numpy/astropy).

Raw frames: 2-D images (primary HDU or first image HDU) in ADU with IMAGETYP and EXPTIME [s].
The chain, as the Astropy CCD guide walks through it:

1. :mod:`.inventory` - which frames there are (bias, dark at which exposure times, flat, light),
   and the decisions: is the overscan useful, must darks be scaled to a flat/light exposure time,
   must bias be subtracted (and so are bias frames needed);
2. :mod:`.process` (pure array functions) - overscan subtraction (median / mean / polynomial
   along the readout axis), trim, sigma-clipped combine (cosmic rays rejected; memory-limited
   tiles), bias subtraction, per-exposure-time master darks, dark rate (weighted fit across
   exposure times, or the longest one), scaled darks, hot pixels, read noise from bias pairs;
3. :mod:`.products` (files) - master bias, master darks, dark rate, hot-pixel table, scaled
   darks (CCDData FITS with UNCERT and MASK), the analysis tables, figures and the summary row.

Sections are FITS-style strings (:mod:`.sections`). Units: frames ADU, gain e-/ADU, read noise
e- (single read), dark rate e-/s. detcal never imports ccdproc; tests/test_ccd_parity.py
compares each step with ccdproc 2.5 on the same frames.
"""

import importlib

__all__ = ["inventory", "process", "products", "sections"]


def __getattr__(name):
    """Import a submodule on first use (PEP 562): the workflow's Snakefile imports only
    :mod:`.inventory` to plan the CCD jobs, and every Snakemake start (two per job on a cluster)
    would otherwise import :mod:`.products` and :mod:`.process` (matplotlib, scipy.stats) too."""
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
