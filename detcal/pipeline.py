"""Step order per instrument family, and what each step needs: the one table the workflow reads.

The per-file chain of an exposure is its family's order restricted to the steps that are
switched on (and implemented); each step's input is the previous step's output, so switching a
step off closes the chain over the gap.
"""

from .geometry import family  # noqa: F401  (re-exported: the workflow asks pipeline for families)

#: Detector1 step order per family (jwst 3.0 calwebb_detector1 order; MIRI: lastframe and reset
#: between saturation and linearity as there, emicorr/ipc/firstframe left out as jwst skips them).
ORDER = {
    "NIR": ("dq_init", "saturation", "superbias", "refpix", "linearity", "persistence",
            "dark_current", "jump", "ramp_fit"),
    "MIRI": ("dq_init", "saturation", "lastframe", "reset", "linearity", "rscd", "dark_current",
             "refpix", "jump", "ramp_fit"),
}

#: Reference files (config keys, see detcal.io.REFTYPES) each step reads.
REFERENCES = {
    "dq_init": ("mask",),
    "saturation": ("saturation", "superbias"),
    "superbias": ("superbias",),
    "refpix": (),
    "linearity": ("linearity",),
    "persistence": (),
    "lastframe": (),
    "reset": ("reset",),
    "rscd": ("rscd",),
    "dark_current": ("dark",),
    "jump": ("gain", "readnoise"),
    "ramp_fit": ("gain", "readnoise"),
}

#: References a step can run without (the step then does less, and logs it).
OPTIONAL_REFERENCES = {"saturation": ("superbias",)}

#: File suffix of each step's ramp product, as the seeds' jwst runs name them (lastframe, reset:
#: what jwst 3.0 writes when LastFrameStep / ResetStep run on their own, the step name lowercased).
SUFFIX = {
    "dq_init": "dqinitstep", "saturation": "saturationstep", "superbias": "superbiasstep",
    "refpix": "refpixstep", "linearity": "linearitystep", "persistence": "persistencestep",
    "lastframe": "lastframestep", "reset": "resetstep",
    "rscd": "rscd_step", "dark_current": "darkcurrentstep", "jump": "jumpstep",
}

#: Steps whose product is a ramp (ramp_fit makes rate/rateints instead).
RAMP_STEPS = tuple(SUFFIX)


def available_steps():
    """Steps that detcal implements (a module in detcal.steps with a ``run`` function)."""
    from . import steps
    return tuple(name for name in dict.fromkeys(ORDER["NIR"] + ORDER["MIRI"]) if name in steps.REGISTRY)


def chain(fam, enabled):
    """Ordered steps for family ``fam`` among ``enabled`` (a mapping step -> bool) that exist."""
    have = available_steps()
    return tuple(s for s in ORDER[fam] if enabled.get(s, True) and s in have)


def previous_step(fam, enabled, step):
    """The step whose product feeds ``step`` (None: the raw file)."""
    steps = chain(fam, enabled)
    if step not in steps:
        raise ValueError(f"step {step} is not in the {fam} chain {steps}")
    i = steps.index(step)
    return steps[i - 1] if i else None


def last_ramp_step(fam, enabled):
    """The last step of the chain whose product is a ramp (None if the chain is empty)."""
    ramps = [s for s in chain(fam, enabled) if s in RAMP_STEPS]
    return ramps[-1] if ramps else None


def product_before(fam, enabled, step):
    """The last switched-on step that comes before ``step`` in the family order (None: raw).

    Unlike :func:`previous_step` this works whether or not ``step`` itself is on: the branch that
    skips dark subtraction starts from ``product_before(fam, enabled, 'dark_current')``.
    """
    steps = chain(fam, enabled)
    earlier = ORDER[fam][: ORDER[fam].index(step)]
    before = [s for s in steps if s in earlier and s in RAMP_STEPS]
    return before[-1] if before else None


def nodark_steps(fam, enabled):
    """Steps after dark_current and before jump, re-run by the branch without dark subtraction
    (MIRI: refpix). With them the branch is the family's chain minus dark_current."""
    order = ORDER[fam]
    i_dark, i_jump = order.index("dark_current"), order.index("jump")
    return tuple(s for s in chain(fam, enabled) if i_dark < order.index(s) < i_jump)


#: Groups flagged DO_NOT_USE at the start of the branch without dark subtraction, per family:
#: (first groups, last groups). MIRI ramps carry the reset anomaly in their first groups (it
#: fades by about group 15 on full frames) and the last-frame effect in the last one; in the main
#: chain the 4-D DARK removes both. The JWQL monitors and jwst_reffiles drop at least the first
#: 5 groups and the last. The bias that the anomaly's tail still puts on the slopes is measured
#: on the data and removed by the dark-current analysis (detcal.analysis.darkcurrent,
#: anomaly_bias), and the DARK builder looks for cosmic rays in these groups itself
#: (detcal.reffiles.dark.first_cosmic_ray), so this count only keeps the jump step and the slope
#: fit out of the worst of the anomaly.
NODARK_SKIP_GROUPS = {"NIR": (0, 0), "MIRI": (10, 1)}

#: Fewest groups the branch without dark leaves usable in a ramp: on short ramps the first-group
#: skip shrinks so that jump detection, the slope fit and the CR statistics keep something to
#: work on (a 10-group MIRI ramp would otherwise be flagged DO_NOT_USE everywhere).
NODARK_MIN_GROUPS = 5


def nodark_skip_groups(fam, ngroups):
    """(first, last) groups the branch without dark subtraction flags DO_NOT_USE in a ramp of
    ``ngroups`` groups: :data:`NODARK_SKIP_GROUPS`, with the first-group skip reduced so that at
    least :data:`NODARK_MIN_GROUPS` groups stay usable (none reduced below 0)."""
    first, last = NODARK_SKIP_GROUPS[fam]
    return max(0, min(first, int(ngroups) - last - NODARK_MIN_GROUPS)), last


def flag_skipped_groups(groupdq, first, last):
    """Flag the first ``first`` and last ``last`` groups DO_NOT_USE (uint8 (nints, ngroups, ny, nx),
    modified in place and returned), so jump detection and ramp fitting leave them out."""
    from .dqflags import DO_NOT_USE

    if first:
        groupdq[:, :first] |= DO_NOT_USE
    if last:
        groupdq[:, groupdq.shape[1] - last:] |= DO_NOT_USE
    return groupdq
