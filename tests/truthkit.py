"""Truth tests through the real pipeline: a simulated campaign reduced as the workflow reduces it.

A truth test must not subtract the simulator's own truth (bias, anomaly cube) before it measures.
:func:`reduce_campaign` therefore does what a detector team does:

1. simulate a **calibration set** of the detector (same pixels, independent noise: exposure
   indices from :data:`CAL_INDEX`) and reduce it with the references a team starts from (the
   simulator's, standing for CRDS): the workflow's file-level steps (:mod:`detcal.runner`), the
   branch without dark subtraction, and the workflow's reference builders, which make a
   **SUPERBIAS** (NIR), a **READNOISE** and a **DARK** from it;
2. simulate the **science set** (the darks under test, :func:`detcal.simulate.write_detector_set`
   with the test's seed) and reduce it with those pipeline-built references (MASK, SATURATION,
   LINEARITY, GAIN, RSCD and any other type the chain needs still come from the simulator, as
   they would from CRDS): the main chain to rate/rateints, and the branch without dark
   subtraction to its jump ramps and rateints, exactly as ``workflow/rules/nodark.smk`` does.

Usage::

    camp = reduce_campaign(tmp_path, spec, seed=3)
    camp.truth                       # detcal.simulate.read_truth of the science set
    camp.references["readnoise"]     # the READNOISE the science chain used (pipeline-built)
    camp.paths("jump")               # no-dark jump ramps, one per exposure (workflow group_paths)
    camp.paths("rateints")           # no-dark rateints; "main_rateints", "before_dark", "raw" too
    camp.paths("noise")              # the noise analyses' ramps (superbias + refpix, no side pixels)

Everything is small-array friendly; a 64-pixel NIR detector with 3 exposures reduces in a few
seconds. Pass ``ncal=0`` to skip the calibration set (the simulator's references are then used
for everything; only for tests that say why).
"""

import os
from dataclasses import dataclass, field

from astropy.io import fits

from detcal import io, noise_conventions, pipeline, runner, simulate
from detcal.reffiles import dark as dark_ref
from detcal.reffiles import readnoise as readnoise_ref
from detcal.reffiles import superbias as superbias_ref
from detcal.simulate.params import normalize_spec

#: Exposure indices of the calibration set start here (independent of the science set's 0..N-1).
CAL_INDEX = 1000

#: Simulator parameters of exposure-to-exposure change, left out of the calibration set.
STATIONARY_OFF = ("bias_drift", "dark_drift", "bias_jitter")

#: Reference types the pipeline builds from the calibration set, per family.
BUILT = {"NIR": ("superbias", "readnoise", "dark"), "MIRI": ("readnoise", "dark")}


@dataclass
class Campaign:
    spec: dict
    seed: int
    family: str
    files: dict                     # write_detector_set's return value (science set)
    truth: dict                     # detcal.simulate.read_truth(files["truth"])
    references: dict                # key -> path used by the science chain
    products: dict = field(default_factory=dict)   # exposure -> {kind: path}
    cal_products: dict = field(default_factory=dict)

    def paths(self, kind):
        """One path per science exposure: ``raw``, ``before_dark``, ``noise`` (workflow rule
        ``refpix_noise``), ``jump`` / ``rateints``
        (branch without dark, as the workflow's ``group_paths``), ``main_jump``, ``rate`` /
        ``main_rateints`` (main chain), or a main-chain step's product by step name."""
        return [self.products[e][kind] for e in self.files["exposures"]]


def _dark_kwargs(family):
    # The workflow's reffile_kwargs("dark"): MIRI's no-dark branch flags its first/last groups
    # DO_NOT_USE for slopes, and the DARK must keep them.
    return {"exclude_flags": ("SATURATED",)} if family == "MIRI" else {}


def reduce_exposure(uncal, references, workdir, family, branches=("main", "nodark"),
                    enabled=None, params=None):
    """Run the workflow's steps on one raw file; return {kind: path} of its products.

    references : key -> path (every type the chain reads). ``enabled`` step -> bool (default all
    on), ``params`` step -> parameters. Products are written under ``workdir``.
    """
    enabled = dict(enabled or {})
    params = dict(params or {})
    os.makedirs(workdir, exist_ok=True)
    name = os.path.basename(uncal).replace("_uncal.fits", "")
    out = {"raw": uncal}

    def refs_for(step):
        return {k: references[k] for k in pipeline.REFERENCES[step] if k in references}

    def path(tag, step):
        # one folder per branch and the workflow's product names, so that analyses that take the
        # exposure name from a file name (inventory.exposure_name) see the real one
        os.makedirs(os.path.join(workdir, tag), exist_ok=True)
        return os.path.join(workdir, tag, f"{name}_{pipeline.SUFFIX.get(step, step)}.fits")

    current = uncal
    chain = pipeline.chain(family, enabled)
    before = pipeline.product_before(family, enabled, "dark_current")
    if before is None:
        out["before_dark"] = uncal
    for step in chain:
        if step == "ramp_fit":
            continue
        if "main" not in branches and pipeline.ORDER[family].index(step) >= \
                pipeline.ORDER[family].index("dark_current"):
            break
        dst = path("main", step)
        runner.run_step_file(step, current, refs_for(step), dst, params.get(step))
        out[step] = current = dst
        if step == before:
            out["before_dark"] = dst
    # the noise analyses' product (workflow rule refpix_noise): superbias-corrected NIR ramps
    # through refpix without side reference pixels (detcal.noise_conventions.REFPIX_PARAMETERS)
    if family == "NIR" and "refpix" in chain:
        prev = pipeline.product_before(family, enabled, "refpix")
        out["noise"] = path("noise", "refpix")
        runner.run_step_file("refpix", out[prev] if prev else uncal, {}, out["noise"],
                             {**(params.get("refpix") or {}), **noise_conventions.REFPIX_PARAMETERS})
    else:
        out["noise"] = out["before_dark"]
    if "main" in branches:
        out["main_jump"] = current
        out["rate"], out["main_rateints"] = path("main", "rate"), path("main", "rateints")
        runner.run_ramp_fit_file(current, refs_for("ramp_fit"), out["rate"], out["main_rateints"],
                                 params.get("ramp_fit"))
    if "nodark" in branches:
        current = out["before_dark"]
        skip = pipeline.nodark_skip_groups(family, fits.getval(uncal, "NGROUPS"))
        for step in pipeline.nodark_steps(family, enabled) + ("jump",):
            dst = path("nodark", step)
            runner.run_step_file(step, current, refs_for(step), dst, params.get(step),
                                 skip_groups=skip if step == "jump" else (0, 0))
            current = dst
        out["jump"] = current
        out["nodark_rate"], out["rateints"] = path("nodark", "rate"), path("nodark", "rateints")
        runner.run_ramp_fit_file(current, refs_for("ramp_fit"), out["nodark_rate"],
                                 out["rateints"], params.get("ramp_fit"))
    return out


def calibration_set(tmp, spec, seed, ncal):
    """Simulate ``ncal`` calibration exposures of the spec's detector (same pixels as the science
    set of ``seed``, independent noise); return their uncal paths. The calibration set is
    stationary: the spec's exposure-to-exposure changes (``bias_drift``, ``dark_drift``,
    ``bias_jitter``) are left out (its exposure indices start at :data:`CAL_INDEX`)."""
    over = {k: v for k, v in dict(spec.get("overrides") or {}).items() if k not in STATIONARY_OFF}
    s = normalize_spec(dict(spec, overrides=over))
    module = simulate.detector_module(s)
    det = module.make_detector(s, seed)
    uncal_dir = os.path.join(tmp, "cal", "uncal")
    os.makedirs(uncal_dir, exist_ok=True)
    paths = []
    for i in range(ncal):
        name = f"cal_{s['name'].lower()}_e{i + 1:03d}"
        data, header, _ = module.simulate_exposure(det, index=CAL_INDEX + i, exposure=name)
        path = os.path.join(uncal_dir, f"{name}_uncal.fits")
        io.write_uncal(data, header, path)
        paths.append(path)
    return paths


def build_references(tmp, family, cal_products, sim_refs, built=None):
    """The workflow's reference builders on the calibration products; return key -> path."""
    built = BUILT[family] if built is None else built
    refdir = os.path.join(tmp, "cal", "references")
    os.makedirs(refdir, exist_ok=True)
    out = {}
    jumps = [p["jump"] for p in cal_products]
    if "superbias" in built:
        out["superbias"] = os.path.join(refdir, "superbias.fits")
        superbias_ref.make_superbias([p["saturation"] for p in cal_products], out["superbias"],
                                     gain_path=sim_refs.get("gain"))
    if "readnoise" in built:
        out["readnoise"] = os.path.join(refdir, "readnoise.fits")
        readnoise_ref.make_readnoise(jumps, out["readnoise"], gain_path=sim_refs.get("gain"))
    if "dark" in built:
        out["dark"] = os.path.join(refdir, "dark.fits")
        dark_ref.make_dark(jumps, out["dark"], **_dark_kwargs(family))
    return out


def reduce_campaign(tmp, spec, seed, ncal=4, branches=("main", "nodark"), built=None,
                    enabled=None, params=None):
    """Simulate and reduce a campaign (module docstring); return a :class:`Campaign`.

    tmp : directory (str or Path); ``spec`` a simulator detector spec; ``seed`` the science
    set's seed; ``ncal`` calibration exposures (same readout as the spec); ``built`` the
    reference types built from them (default :data:`BUILT` of the family).
    """
    tmp = str(tmp)
    s = normalize_spec(spec)
    family = s["family"]
    files = simulate.write_detector_set(spec, os.path.join(tmp, "sci"), seed)
    sim_refs = dict(files["references"])
    references = dict(sim_refs)
    cal_products = {}
    if ncal:
        cal = calibration_set(tmp, spec, seed, ncal)
        for path in cal:
            cal_products[path] = reduce_exposure(path, sim_refs, os.path.join(tmp, "cal", "work"),
                                                 family, ("nodark",), enabled, params)
        references.update(build_references(tmp, family, list(cal_products.values()), sim_refs,
                                           built))
    camp = Campaign(dict(spec), seed, family, files, simulate.read_truth(files["truth"]),
                    references, cal_products=cal_products)
    for name, uncal in zip(files["exposures"], files["uncal"]):
        camp.products[name] = reduce_exposure(uncal, references, os.path.join(tmp, "sci", "work"),
                                              family, branches, enabled, params)
    return camp
