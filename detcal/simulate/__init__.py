"""Truth-known simulator of infrared dark exposures (NIR H2RG now; MIRI and CCD to follow).

In memory::

    det = make_detector({"name": "NRCA1", "preset": "nircam_sw", "size": 128}, seed=1)
    data, header, truth = simulate_exposure(det, readpatt="RAPID", ngroups=10, nints=1)
    # data: uint16 (nints, ngroups, ny, nx) [DN], science orientation; truth["cr_events"] ...

On disk (what the workflow calls)::

    files = write_detector_set(spec, outdir, seed)   # uncal/, references/{DET}/, truth/
    names = plan(spec)                               # exposure names, without simulating

Modules: :mod:`.params` (readout patterns, detector orientations, presets, spec handling),
:mod:`.noise` (1/f streams in pixel-read order), :mod:`.h2rg` (detector truth and readout),
:mod:`.demo` (files). A new detector kind (MIRI, CCD) adds its own module with a ``make_detector``
/ ``simulate_exposure`` pair and its presets.
"""

from .demo import (REFERENCE_KEYS, planned_files, plan, read_truth, reference_arrays,
                   write_detector_set, write_references, write_truth)
from .h2rg import (CR_DTYPE, Detector, exposure_header, group_frames, linearity_forward,
                   linearity_inverse, make_detector, simulate_exposure)
from .params import (DETECTORS, PARAMETERS, PRESETS, READ_PATTERNS, SPEC_KEYS, exposure_name,
                     frame_time, frames_per_integration, normalize_spec, pattern, resolve_params)

__all__ = [
    "CR_DTYPE", "DETECTORS", "Detector", "PARAMETERS", "PRESETS", "READ_PATTERNS", "REFERENCE_KEYS",
    "SPEC_KEYS", "exposure_header", "exposure_name", "frame_time", "frames_per_integration",
    "group_frames", "linearity_forward", "linearity_inverse", "make_detector", "normalize_spec",
    "pattern", "plan", "planned_files", "read_truth", "reference_arrays", "resolve_params",
    "simulate_exposure", "write_detector_set", "write_references", "write_truth",
]
