# Input functions and parse-time tables. Rules live in the other .smk files.
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from detcal import demo, inventory, pipeline
from detcal.errors import InputError


validate(config, schema="../schemas/config.schema.yaml")

DEMO = not config["raw"]
DEMO_DIR = "results/demo"
STEPS_ON = config["steps"]


def _load_exposures():
    """One row per exposure: path, family, group and the inventory keywords."""
    try:
        if DEMO:
            return demo.table(config["demo"], DEMO_DIR)
        return inventory.scan(inventory.expand_inputs(config["raw"]))
    except InputError as err:
        raise WorkflowError(f"error: {err}") from None


EXPOSURES = _load_exposures()
DEMO_REFERENCES = demo.reference_files(config["demo"], DEMO_DIR) if DEMO else {}
KEEP = set(config["keep"]) | {
    pipeline.last_ramp_step(fam, STEPS_ON) for fam in set(EXPOSURES["family"])
}


wildcard_constraints:
    exposure="|".join(re.escape(e) for e in EXPOSURES.index),


def _family(wildcards):
    return EXPOSURES.loc[wildcards.exposure, "family"]


def ramp_path(exposure, step):
    """Path of the ramp product of ``step`` for ``exposure`` (seed-style suffix)."""
    return f"results/ramps/{exposure}/{exposure}_{pipeline.SUFFIX[step]}.fits"


def step_output(step):
    """Output pattern of a ramp step: temporary unless kept in the config (or last of a chain)."""
    path = ramp_path("{exposure}", step)
    return path if step in KEEP else temp(path)


def step_table(step):
    """Sample-pixel ramps before/after ``step`` (the table its figure is drawn from)."""
    return f"results/plots/steps/{{exposure}}/{{exposure}}_{step}.tsv"


def _exposure_group(wildcards):
    return EXPOSURES.loc[wildcards.exposure, "group"]


def _step_labels(step):
    def labels(wildcards):
        return {"detector": EXPOSURES.loc[wildcards.exposure, "DETECTOR"],
                "exposure": wildcards.exposure, "step": step}

    return labels


def step_figure(step):
    """Report item: the before/after ramp figure of ``step``."""
    return report(
        f"results/plots/steps/{{exposure}}/{{exposure}}_{step}.png",
        caption="../report/step_figure.rst",
        category=f"Detector1: {step}",
        subcategory=_exposure_group,
        labels=_step_labels(step),
    )


def step_extra_outputs(step):
    """Second products of a step, when the config asks for them (dark_current: dark_output)."""
    if step == "dark_current" and config["parameters"]["dark_current"]["dark_output"]:
        return {"extra": "results/ramps/{exposure}/{exposure}_dark.fits"}
    return {}


def step_log(step):
    return f"logs/{step}/{{exposure}}.log"


def step_benchmark(step):
    return f"results/benchmarks/{step}/{{exposure}}.tsv"


def step_input(step):
    """Input function: the previous switched-on step's product, or the raw file."""

    def previous_product(wildcards):
        prev = pipeline.previous_step(_family(wildcards), STEPS_ON, step)
        if prev is None:
            return EXPOSURES.loc[wildcards.exposure, "path"]
        return ramp_path(wildcards.exposure, prev)

    previous_product.__name__ = f"{step}_input"
    return previous_product


def nodark_input(wildcards):
    """Input of the branch without dark subtraction: the product just before dark_current."""
    step = pipeline.product_before(_family(wildcards), STEPS_ON, "dark_current")
    if step is None:
        return EXPOSURES.loc[wildcards.exposure, "path"]
    return ramp_path(wildcards.exposure, step)


def reference_path(detector, key, step=None):
    """The ``key`` reference for ``detector`` (and ``step``): per-step override, per-detector
    config, the demo's, or None."""
    given = config["references"].get(detector, {})
    where = f"references: {detector}: steps: {step}: {key}"
    path = given.get("steps", {}).get(step, {}).get(key)
    if not path:
        where, path = f"references: {detector}: {key}", given.get(key)
    if path:
        if not os.path.exists(path):
            raise WorkflowError(f"error: {path}: file does not exist (config {where})")
        return path
    if DEMO:
        return DEMO_REFERENCES.get(detector, {}).get(key)
    return None


def step_references(step):
    """Input function (use with unpack): named reference files a step reads for this exposure."""

    def references(wildcards):
        detector = EXPOSURES.loc[wildcards.exposure, "DETECTOR"]
        out = {}
        for key in pipeline.REFERENCES[step]:
            path = reference_path(detector, key, step)
            if path is not None:
                out[key] = path
            elif key not in pipeline.OPTIONAL_REFERENCES.get(step, ()):
                raise WorkflowError(
                    f"error: step {step} needs a {key} reference for detector {detector} "
                    f"(exposure {wildcards.exposure}): set `references: {{{detector}: {{{key}: <path>}}}}` "
                    f"in the config, or switch the step off with `steps: {{{step}: false}}`"
                )
        return out

    references.__name__ = f"{step}_references"
    return references


def step_parameters(step):
    """Parameters of ``step`` from the config (schema defaults filled in)."""
    return dict(config["parameters"].get(step, {}))


def demo_outputs():
    """Every file the demo simulation writes (known before it runs)."""
    return demo.files(config["demo"], DEMO_DIR)


def demo_outdir(wildcards, output):
    """The demo folder, from the simulation's first output (``<outdir>/uncal/<name>``)."""
    return os.path.dirname(os.path.dirname(output[0]))


def final_outputs():
    """Targets of the default target: the inventory and the last product of every exposure's chain."""
    out = ["results/inventory.tsv"]
    for exposure, row in EXPOSURES.iterrows():
        if "ramp_fit" in pipeline.chain(row["family"], STEPS_ON):
            out += [f"results/rates/{exposure}_rate.fits", f"results/rates/{exposure}_rateints.fits"]
        last = pipeline.last_ramp_step(row["family"], STEPS_ON)
        if last:
            out.append(ramp_path(exposure, last))
    return out
