"""Step order per instrument family, and what each step needs: the one table the workflow reads.

The per-file chain of an exposure is its family's order restricted to the steps that are
switched on (and implemented); each step's input is the previous step's output, so switching a
step off closes the chain over the gap.
"""

from .geometry import family  # noqa: F401  (re-exported: the workflow asks pipeline for families)

#: Detector1 step order per family (jwst calwebb_detector1 order, MIRI as the seeds run it).
ORDER = {
    "NIR": ("dq_init", "saturation", "superbias", "refpix", "linearity", "persistence",
            "dark_current", "jump", "ramp_fit"),
    "MIRI": ("dq_init", "saturation", "linearity", "rscd", "dark_current", "refpix", "jump",
             "ramp_fit"),
}

#: Reference files (config keys, see detcal.io.REFTYPES) each step reads.
REFERENCES = {
    "dq_init": ("mask",),
    "saturation": ("saturation", "superbias"),
    "superbias": ("superbias",),
    "refpix": (),
    "linearity": ("linearity",),
    "persistence": (),
    "rscd": ("rscd",),
    "dark_current": ("dark",),
    "jump": ("gain", "readnoise"),
    "ramp_fit": ("gain", "readnoise"),
}

#: References a step can run without (the step then does less, and logs it).
OPTIONAL_REFERENCES = {"saturation": ("superbias",)}

#: File suffix of each step's ramp product, as the seeds' jwst runs name them.
SUFFIX = {
    "dq_init": "dqinitstep", "saturation": "saturationstep", "superbias": "superbiasstep",
    "refpix": "refpixstep", "linearity": "linearitystep", "persistence": "persistencestep",
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
