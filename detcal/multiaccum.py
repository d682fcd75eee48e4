"""MULTIACCUM readout bookkeeping: one definition for the steps, the checks and the simulator.

A JWST integration after a reset reads frames every TFRAME [s]; a **group** is the average of
NFRAMES consecutive frames and GROUPGAP frames are dropped between groups (JDox "NIRCam detector
readout patterns"). With frames counted from 0 after the reset:

* group ``g`` averages frames ``g (NFRAMES + GROUPGAP) + k``, ``k = 0 .. NFRAMES-1``
  (:func:`group_frames`);
* an integration of NGROUPS groups spans ``NGROUPS NFRAMES + (NGROUPS - 1) GROUPGAP`` frames
  (:func:`frames_per_integration`): what a DARK reference must cover to be averaged into the
  pattern, and what the simulator reads;
* consecutive groups are ``TGROUP = (NFRAMES + GROUPGAP) TFRAME`` [s] apart (:func:`group_time`).

The simulator imports these (never the reverse); the noise of a MULTIACCUM slope is an analysis
formula (:func:`detcal.analysis.effnoise.multiaccum_variance`).
"""


def group_frames(ngroups, nframes, groupgap):
    """Frame indices (0-based from reset) averaged into each group: list of ngroups lists."""
    return [[g * (nframes + groupgap) + k for k in range(nframes)] for g in range(ngroups)]


def frames_per_integration(ngroups, nframes, groupgap):
    """Frames read or skipped from reset to the last read: NGROUPS*NFRAMES + (NGROUPS-1)*GROUPGAP."""
    return ngroups * nframes + (ngroups - 1) * groupgap


def group_time(tframe, nframes, groupgap):
    """TGROUP [s]: time between the starts of consecutive groups, ``(NFRAMES + GROUPGAP) * TFRAME``."""
    return (nframes + groupgap) * tframe
