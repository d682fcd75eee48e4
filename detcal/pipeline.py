"""Step order per instrument family, and what each step needs: the tables the workflow reads.

The tables are derived from the step descriptors (:mod:`detcal.steps.descriptor`; each step
module declares its own), so they always list the registered steps and nothing else:

``ORDER``                {family: steps in chain order} (jwst 3.0 calwebb_detector1 order; MIRI:
                         lastframe and reset between saturation and linearity as there,
                         emicorr/ipc/firstframe left out as jwst skips them; persistence is not
                         implemented, so it is not offered)
``REFERENCES``           {step: reference config keys it reads} (see detcal.io.REFTYPES)
``OPTIONAL_REFERENCES``  {step: references it can run without} (the step then does less, and logs it)
``SUFFIX``               {step: file suffix of its ramp product, as jwst names it} (lastframe,
                         reset: what jwst 3.0 writes when LastFrameStep / ResetStep run on their
                         own, the step name lowercased)
``RAMP_STEPS``           steps whose product is a ramp (ramp_fit makes rate/rateints instead)

They are computed when read (module ``__getattr__``), so a step registered later (a test's, or
one named in ``DETCAL_STEP_MODULES``) is in them.

The per-file chain of an exposure is its family's order restricted to the steps that are
switched on; each step's input is the previous step's output, so switching a step off closes
the chain over the gap.
"""

from .geometry import family  # noqa: F401  (re-exported: the workflow asks pipeline for families)

_DERIVED = ("ORDER", "REFERENCES", "OPTIONAL_REFERENCES", "SUFFIX", "RAMP_STEPS")


def _descriptor():
    from .steps import descriptor  # steps sit above pipeline's imports; read when asked

    return descriptor


def __getattr__(name):
    """The derived tables (see the module docstring), built from the registered descriptors."""
    if name not in _DERIVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    desc = _descriptor()
    steps = desc.DESCRIPTORS
    if name == "ORDER":
        return {fam: desc.order(fam) for fam in desc.FAMILIES}
    if name == "REFERENCES":
        return {n: steps[n].references for n in desc.names()}
    if name == "OPTIONAL_REFERENCES":
        return {n: steps[n].optional_references for n in desc.names() if steps[n].optional_references}
    if name == "SUFFIX":
        return {n: steps[n].suffix for n in desc.ramp_steps()}
    return desc.ramp_steps()


def _order(fam):
    return _descriptor().order(fam)


def available_steps():
    """Steps that detcal implements: every registered step (:mod:`detcal.steps.descriptor`)."""
    return _descriptor().names()


def chain(fam, enabled):
    """Ordered steps for family ``fam`` that ``enabled`` (a mapping step -> bool) switches on;
    a step it does not name runs when its descriptor says so (``default_on``)."""
    steps = _descriptor().DESCRIPTORS
    return tuple(s for s in _order(fam) if enabled.get(s, steps[s].default_on))


def previous_step(fam, enabled, step):
    """The step whose product feeds ``step`` (None: the raw file)."""
    steps = chain(fam, enabled)
    if step not in steps:
        raise ValueError(f"step {step} is not in the {fam} chain {steps}")
    i = steps.index(step)
    return steps[i - 1] if i else None


def last_ramp_step(fam, enabled):
    """The last step of the chain whose product is a ramp (None if the chain is empty)."""
    ramps = [s for s in chain(fam, enabled) if _descriptor().get(s).ramp_product]
    return ramps[-1] if ramps else None


def product_before(fam, enabled, step):
    """The last switched-on step that comes before ``step`` in the family order (None: raw).

    Unlike :func:`previous_step` this works whether or not ``step`` itself is on: the branch that
    skips dark subtraction starts from ``product_before(fam, enabled, 'dark_current')``.
    """
    steps = chain(fam, enabled)
    order = _order(fam)
    earlier = order[: order.index(step)]
    before = [s for s in steps if s in earlier and _descriptor().get(s).ramp_product]
    return before[-1] if before else None


def nodark_steps(fam, enabled):
    """Steps after dark_current and before jump, re-run by the branch without dark subtraction
    (MIRI: refpix). With them the branch is the family's chain minus dark_current."""
    order = _order(fam)
    i_dark, i_jump = order.index("dark_current"), order.index("jump")
    return tuple(s for s in chain(fam, enabled) if i_dark < order.index(s) < i_jump)


def nodark_rule_steps():
    """Steps that the branch without dark subtraction re-runs in some family (MIRI: refpix), were
    every registered step on: the workflow has one ``<step>_nodark`` rule for each."""
    everything = {s: True for s in available_steps()}
    return tuple(dict.fromkeys(s for fam in _descriptor().FAMILIES for s in nodark_steps(fam, everything)))


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
