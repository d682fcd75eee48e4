"""Process measurements the benchmarks share: peak resident memory and CPU time.

A benchmark runs each implementation in a fresh subprocess of itself, so that one's memory does
not hide the other's. In that child, :func:`reset_peak` clears the kernel's peak-RSS mark
(``ru_maxrss`` of a child started by ``subprocess`` includes the parent's resident size at the
spawn), :func:`peak_mb` then reads the peak since (``VmHWM``), and :func:`cpu_s` the CPU time.
Imported by the scripts in this directory (``python benchmarks/<script>.py`` puts it on the path).
"""

import os
import resource


def reset_peak():
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb():
    """Peak resident memory of this process [MB]: VmHWM (see :func:`reset_peak`), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s():
    """CPU time [s] of this process (all threads) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
