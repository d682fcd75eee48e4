"""Truth-known simulator of infrared dark exposures (NIR H2RG and MIRI) and CCD frames.

In memory::

    det = make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": 128}, seed=1)
    data, header, truth = simulate_exposure(det, readpatt="RAPID", ngroups=10, nints=1)
    # data: uint16 (nints, ngroups, ny, nx) [DN], science orientation; truth["cr_events"] ...

On disk (what the workflow calls)::

    files = write_detector_set(spec, outdir, seed)   # uncal/, references/{DET}/, truth/
    names = plan(spec)                               # exposure names, without simulating

MIRI (preset ``miri_imager``; ``size`` rows x ``size + 8`` columns)::

    det = miri.make_detector({"name": "MIRIMAGE", "preset": "miri_imager", "size": 128}, seed=1)
    data, header, truth = miri.simulate_exposure(det, readpatt="FAST", ngroups=20, nints=3)

Modules: :mod:`.params` (readout patterns, detector orientations, presets, spec handling),
:mod:`.noise` (1/f streams in pixel-read order), :mod:`.h2rg` (NIR detector truth and readout),
:mod:`.miri` (MIRI detector truth, anomalies and readout), :mod:`.demo` (files; picks the module
from the preset's instrument), :mod:`.ccd` (CCD bias/dark/flat/light frames with an overscan
and a truth file; not a ramp detector, so it has its own file writer)::

    files = ccd.write_ccd_set({"darks": {7: 3, 70: 3, 300: 3}}, outdir, seed)  # raw/*.fits, truth.fits
"""

from . import ccd, miri
from .demo import (
    REFERENCE_KEYS,
    detector_module,
    plan,
    planned_files,
    read_truth,
    reference_arrays,
    reference_keys,
    write_detector_set,
    write_references,
    write_truth,
)
from .h2rg import (
    CR_DTYPE,
    Detector,
    exposure_header,
    group_frames,
    linearity_forward,
    linearity_inverse,
    make_detector,
    simulate_exposure,
)
from .params import (
    DETECTORS,
    MIRI_PARAMETERS,
    MIRI_READ_PATTERNS,
    PARAMETERS,
    PRESETS,
    READ_PATTERNS,
    SPEC_KEYS,
    frame_time,
    frames_per_integration,
    normalize_spec,
    parameters_for,
    pattern,
    resolve_params,
    simulated_exposure_name,
)

__all__ = [
    "CR_DTYPE", "DETECTORS", "ccd", "Detector", "MIRI_PARAMETERS", "MIRI_READ_PATTERNS", "PARAMETERS",
    "PRESETS", "READ_PATTERNS", "REFERENCE_KEYS", "SPEC_KEYS", "detector_module", "exposure_header",
    "frame_time", "frames_per_integration", "group_frames", "linearity_forward",
    "linearity_inverse", "make_detector", "miri", "normalize_spec", "parameters_for", "pattern",
    "plan", "planned_files", "read_truth", "reference_arrays", "reference_keys", "resolve_params",
    "simulate_exposure", "simulated_exposure_name", "write_detector_set", "write_references", "write_truth",
]
