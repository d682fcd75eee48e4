"""MULTIACCUM readout bookkeeping: one definition for the steps, the checks and the simulator.

A JWST integration after a reset reads frames every TFRAME [s]; a **group** is the average of
NFRAMES consecutive frames and GROUPGAP frames are dropped between groups (JDox "NIRCam detector
readout patterns"). With frames counted from 0 after the reset:

* group ``g`` averages frames ``g (NFRAMES + GROUPGAP) + k``, ``k = 0 .. NFRAMES-1``
  (:func:`group_frames`);
* an integration of NGROUPS groups spans ``NGROUPS NFRAMES + (NGROUPS - 1) GROUPGAP`` frames
  (:func:`frames_per_integration`): what a DARK reference must cover to be averaged into the
  pattern, and what the simulator reads;
* consecutive groups are ``TGROUP = (NFRAMES + GROUPGAP) TFRAME`` [s] apart (:func:`group_time`);
* the integrations of a file are numbered from INTSTART (1-based; a segmented exposure's later
  files start higher): :func:`int_numbers`.

Frame timing of the H2RG (NIR) readout: pixels are read every :data:`PIXEL_TIME_S` (10 us) per
output, each row costs :data:`ROW_OVERHEAD` (12) more pixel times, so a frame of ny x nx pixels
read through 1 or 4 outputs takes :func:`frame_samples` pixel times (:func:`frame_time` [s]; JDox,
jwql ``calc_frame_time``). The noise analyses lay the CDS streams out on this clock and the
simulator generates its 1/f streams on it.

The simulator imports these (never the reverse); the noise of a MULTIACCUM slope is an analysis
formula (:func:`detcal.analysis.effnoise.multiaccum_variance`).
"""

import numpy as np

from . import keywords

#: Pixel read time [s] of the NIR (H2RG, SIDECAR) readout: NIRCam/NIRISS 10 us.
PIXEL_TIME_S = 10e-6
#: NIRCam row overhead [pixel times] per row read (JDox frame-time formula).
ROW_OVERHEAD = 12


def group_frames(ngroups, nframes, groupgap):
    """Frame indices (0-based from reset) averaged into each group: list of ngroups lists."""
    return [[g * (nframes + groupgap) + k for k in range(nframes)] for g in range(ngroups)]


def frames_per_integration(ngroups, nframes, groupgap):
    """Frames read or skipped from reset to the last read: NGROUPS*NFRAMES + (NGROUPS-1)*GROUPGAP."""
    return ngroups * nframes + (ngroups - 1) * groupgap


def group_time(tframe, nframes, groupgap):
    """TGROUP [s]: time between the starts of consecutive groups, ``(NFRAMES + GROUPGAP) * TFRAME``."""
    return (nframes + groupgap) * tframe


def frame_samples(ny, nx, noutputs, row_overhead=ROW_OVERHEAD):
    """Number of pixel times in one frame (the read window of the 1/f stream).

    4 outputs: ``(nx/4 + row_overhead) (ny + 1) + 1``; 1 output: ``(nx + row_overhead) (ny + 2)``.
    """
    if noutputs == 4:
        return (nx // 4 + row_overhead) * (ny + 1) + 1
    if noutputs == 1:
        return (nx + row_overhead) * (ny + 2)
    raise ValueError(f"noutputs must be 1 or 4, got {noutputs}")


def frame_time(ny, nx, noutputs, pixel_time=PIXEL_TIME_S, row_overhead=ROW_OVERHEAD):
    """NIRCam frame time [s] of an ny x nx array (JDox; jwql ``calc_frame_time``).

    4 outputs: ((nx/4 + 12) * (ny + 1) + 1) * 10 us; 1 output: (nx + 12) * (ny + 2) * 10 us.
    ``frame_time(2048, 2048, 4) == 10.73677``.
    """
    return round(frame_samples(ny, nx, noutputs, row_overhead) * pixel_time, 9)


def int_numbers(header, nints):
    """Absolute 1-based integration number of each of the ``nints`` integrations of a file with
    primary ``header``: INTSTART + i (INTSTART 1 when absent)."""
    start = keywords.optional(header, "INTSTART", 1) or 1
    return start + np.arange(nints)
