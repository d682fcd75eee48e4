"""What the benchmarks share: peak resident memory, CPU time, the ``--shapes`` parser.

A benchmark runs each implementation in a fresh subprocess of itself, so that one's memory does
not hide the other's. In that child, :func:`reset_peak` clears the kernel's peak-RSS mark
(``ru_maxrss`` of a child started by ``subprocess`` includes the parent's resident size at the
spawn), :func:`peak_mb` then reads the peak since (``VmHWM``), and :func:`cpu_s` the CPU time.
Imported by the scripts in this directory (``python benchmarks/<script>.py`` puts it on the path).
"""

import argparse
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


def parse_shapes(text):
    """``"1x10x2048,2x40x1024"`` -> [(nints, ngroups, size), ...] (argparse type of ``--shapes``)."""
    shapes = []
    for item in text.split(","):
        parts = item.lower().strip().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"shape {item!r} is not NINTSxNGROUPSxSIZE")
        shapes.append(tuple(int(p) for p in parts))
    return shapes
