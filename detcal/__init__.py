"""detcal: detector-level calibration of infrared dark ramps.

Pure numpy/astropy code: the calibration steps (``detcal.steps``), file I/O in the JWST layouts
(``detcal.io``), the truth-known simulator (``detcal.simulate``) and the header/geometry
definitions every other module shares. It never imports Snakemake.
"""

__version__ = "0.1.0"
