# Input functions and parse-time tables. Rules live in the other .smk files.
import hashlib
import json
import pickle
import re
import tempfile

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from detcal import inventory, noise_conventions, pipeline
from detcal.steps import descriptor as step_descriptors
from detcal.errors import InputError

# config files in the order they were merged (--configfile ones last: they win)
CONFIGFILES = [f for f in workflow.configfiles if f not in workflow.overwrite_configfiles] + list(
    workflow.overwrite_configfiles
)

# Every Snakemake of a cluster run parses this file: the submitting one, and on the cluster the
# one of each SLURM job and, per workflow job, one more under srun (both `--mode remote`). The
# submitting one validates the config and checks every raw file and given reference before it
# submits a job; it leaves what it found (the validated config, the inventory, the demo's plan) in
# PARSE_CACHE under the digest of the config as given, and a remote Snakemake of the same config
# takes it from there: no schema validation, no FITS file read, no import of detcal.validate or
# detcal.demo (astropy) at its parse (benchmarks/README.md, "bench_slurm.py"). Without a matching
# entry a remote Snakemake parses as the submitting one does; only the submitting one writes it.
PARSE_CACHE = ".snakemake/detcal/parse"
PARSE_KEY = os.path.join(
    PARSE_CACHE, hashlib.sha1(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest() + ".pickle"
)


#: what an entry holds (a remote parse takes only an entry of this format): 2 = plain records
PARSE_FORMAT = 2


def _submitted_parse():
    """What the submitting Snakemake found for this config (remote Snakemakes only), or None."""
    if not workflow.remote_exec:
        return None
    try:
        with open(PARSE_KEY, "rb") as fh:
            found = pickle.load(fh)
    except Exception:  # noqa: BLE001 (none, or unreadable: parse in full)
        return None
    return found if found.get("format") == PARSE_FORMAT else None


PARSED = _submitted_parse()
if PARSED is not None:
    config.update(PARSED["config"])
else:
    from detcal import validate as input_checks

    # the schema file completed with the steps, parameters and keep blocks of the registered steps
    SCHEMA = input_checks.config_schema(os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
    with tempfile.TemporaryDirectory() as schema_dir:  # snakemake's validate reads a file
        schema_file = os.path.join(schema_dir, "config.schema.json")
        with open(schema_file, "w") as fh:
            json.dump(SCHEMA, fh)
        try:
            validate(config, schema=schema_file)  # also fills in the defaults
        except WorkflowError:  # Snakemake's message is the whole schema: say the file, key, value instead
            raise WorkflowError(
                "error: invalid configuration\n" + "\n".join(input_checks.config_problems(config, SCHEMA, CONFIGFILES))
            ) from None
    if config["raw"] in ("", []):
        raise WorkflowError(
            f"error: {input_checks.config_source(CONFIGFILES, ['raw'])}config key raw = {config['raw']!r} is "
            "empty: give a glob or a list of raw files, or `raw: demo` to run the simulated demo"
        )

DEMO = config["raw"] == "demo"  # the simulated demo only when asked for (raw: demo)
DEMO_DIR = "results/demo"
STEPS_ON = config["steps"]


# Raw files are read and checked once per change, not at every parse of this file (the main
# process, --report, and each cluster job without PARSE_CACHE): see detcal.validate.RawCheckCache.
INVENTORY_CACHE = ".snakemake/detcal/raw_checks.pickle"


def _load_exposures():
    """One row per exposure: path, family, group and the inventory keywords."""
    try:
        if DEMO:
            from detcal import demo

            return demo.table(config["demo"], DEMO_DIR)
        # every raw file and every given reference checked before any job; all problems at once
        return input_checks.inventory(
            input_checks.expand(config["raw"]),
            input_checks.config_references(config["references"]),
            cache=INVENTORY_CACHE,
        )
    except InputError as err:
        raise WorkflowError(f"error: {err}") from None


def _parse():
    """(inventory rows, demo references, demo files) as found by this parse; the submitting
    Snakemake leaves them with the validated config in PARSE_CACHE (written atomically; a cache
    that cannot be written costs the remote jobs time, not results). The inventory rows are plain
    records, {exposure: {column: value}} in the table's order, so that a remote parse that takes
    them needs no pandas (0.4 s of imports)."""
    exposures = _load_exposures().to_dict("index")
    demo_references, demo_files = {}, []
    if DEMO:
        from detcal import demo

        demo_references = demo.reference_files(config["demo"], DEMO_DIR)
        demo_files = demo.files(config["demo"], DEMO_DIR)
    if not workflow.remote_exec:
        found = {
            "format": PARSE_FORMAT,
            "config": config,
            "exposures": exposures,
            "demo_references": demo_references,
            "demo_files": demo_files,
        }
        tmp = None
        try:
            os.makedirs(PARSE_CACHE, exist_ok=True)
            with tempfile.NamedTemporaryFile("wb", dir=PARSE_CACHE, suffix=".tmp", delete=False) as fh:
                tmp = fh.name
                pickle.dump(found, fh)
            os.replace(tmp, PARSE_KEY)
        except Exception:  # noqa: BLE001 (not writable, or a config value pickle cannot store)
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
    return exposures, demo_references, demo_files


# EXPOSURES: the inventory, {exposure: {column: value}} (columns of detcal.inventory.table), sorted
if PARSED is None:
    EXPOSURES, DEMO_REFERENCES, DEMO_FILES = _parse()
else:
    EXPOSURES, DEMO_REFERENCES, DEMO_FILES = (PARSED[k] for k in ("exposures", "demo_references", "demo_files"))
FAMILIES = sorted({row["family"] for row in EXPOSURES.values()})
KEEP = set(config["keep"]) | {pipeline.last_ramp_step(fam, STEPS_ON) for fam in FAMILIES}


def exposures_where(column, value):
    """Exposure names (inventory order) whose inventory ``column`` equals ``value``."""
    return [exposure for exposure, row in EXPOSURES.items() if row[column] == value]


wildcard_constraints:
    exposure="|".join(re.escape(e) for e in EXPOSURES),


def _family(wildcards):
    return EXPOSURES[wildcards.exposure]["family"]


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
    return EXPOSURES[wildcards.exposure]["group"]


def _step_labels(step):
    def labels(wildcards):
        return {"detector": EXPOSURES[wildcards.exposure]["DETECTOR"], "exposure": wildcards.exposure, "step": step}

    return labels


def step_figure(step):
    """Report item: the before/after ramp figure of ``step``."""
    return report(
        f"results/plots/steps/{{exposure}}/{{exposure}}_{step}.png",
        caption="../report/step_figure.rst",
        category=f"Detector1 - {step}",  # no ": " (breaks the report's rst link targets)
        subcategory=_exposure_group,
        labels=_step_labels(step),
    )


def step_extra_outputs(step):
    """Further products of a step (its descriptor's ``products``) that are made: always, or when
    their switch parameter is on in the config (dark_current's ``dark_output``)."""
    params = step_parameters(step)
    return {
        name: f"results/ramps/{{exposure}}/{{exposure}}_{product.suffix}.fits"
        for name, product in step_descriptors.get(step).products.items()
        if product.switch is None or params.get(product.switch)
    }


def ramp_step_mem_mb(wildcards, input, attempt):
    """Memory [MB] of a ramp-step job (every detector1 rule; a new step gets it too). A ramp step
    holds the input ramp, the output ramp and the reference arrays at once: measured peak RSS =
    ~170 MB (interpreter and imports) + 0.6 to 1.2 x the input size (a 2 x 10 x 1024 x 1024 demo
    ramp, 109 MB per product: 278 MB for superbias, 400 MB for dark_current with its 88 MB dark;
    jump and ramp_fit read by rows and need less: 0.6x and 0.4x a 2 x 20 x 1024^2 ramp above the
    interpreter, benchmarks/README.md, bench_job_memory.py). Twice that margin, at least 1 GB,
    and doubled on each retry (``attempt``) after an out-of-memory kill on a cluster. A profile's
    set-resources overrides it."""
    return max(1000, 500 + 2 * input.size_mb) * attempt


def step_log(step):
    return f"logs/{step}/{{exposure}}.log"


def step_benchmark(step):
    return f"results/benchmarks/{step}/{{exposure}}.tsv"


def step_input(step):
    """Input function: the previous switched-on step's product, or the raw file."""

    def previous_product(wildcards):
        prev = pipeline.previous_step(_family(wildcards), STEPS_ON, step)
        if prev is None:
            return EXPOSURES[wildcards.exposure]["path"]
        return ramp_path(wildcards.exposure, prev)

    previous_product.__name__ = f"{step}_input"
    return previous_product


def product_before_dark(exposure):
    """The product just before dark_current (superbias- and refpix-corrected for NIR)."""
    step = pipeline.product_before(EXPOSURES[exposure]["family"], STEPS_ON, "dark_current")
    if step is None:
        return EXPOSURES[exposure]["path"]
    return ramp_path(exposure, step)


def nodark_path(exposure, step):
    return f"results/nodark/{exposure}_{pipeline.SUFFIX[step]}.fits"


def nodark_input(step):
    """Input function of ``step`` in the branch without dark subtraction: the product before
    dark_current, or the previous re-run step (MIRI refpix) of that branch."""

    def previous_product(wildcards):
        exposure = wildcards.exposure
        steps = pipeline.nodark_steps(EXPOSURES[exposure]["family"], STEPS_ON)
        earlier = steps[: steps.index(step)] if step in steps else steps
        return nodark_path(exposure, earlier[-1]) if earlier else product_before_dark(exposure)

    previous_product.__name__ = f"{step}_nodark_input"
    return previous_product


def noise_input(wildcards):
    """Input of ``refpix_noise``: the product before refpix (superbias-corrected NIR ramps)."""
    step = pipeline.product_before(_family(wildcards), STEPS_ON, "refpix")
    return EXPOSURES[wildcards.exposure]["path"] if step is None else ramp_path(wildcards.exposure, step)


def noise_path(exposure):
    """Path of the NIR noise analyses' refpix product (rule refpix_noise, or the fused chain)."""
    return f"results/noise/{exposure}_{pipeline.SUFFIX['refpix']}.fits"


def noise_product(exposure):
    """The ramp the noise analyses read (detcal.noise_conventions.REFPIX_PARAMETERS): NIR with
    refpix on: superbias + refpix without side reference pixels (rule refpix_noise); otherwise
    (MIRI, refpix off) the product before dark_current."""
    if EXPOSURES[exposure]["family"] == "NIR" and STEPS_ON.get("refpix", True):
        return noise_path(exposure)
    return product_before_dark(exposure)


def noise_refpix_parameters(wildcards):
    """The workflow's refpix parameters with the noise analyses' overrides (no side pixels)."""
    return {**step_parameters("refpix"), **noise_conventions.REFPIX_PARAMETERS}


def nodark_skip_groups(wildcards):
    """(first, last) groups the no-dark branch leaves out (MIRI: reset anomaly, last frame)."""
    row = EXPOSURES[wildcards.exposure]
    return pipeline.nodark_skip_groups(row["family"], row["NGROUPS"])


def _given_references(detector):
    refs = config["references"]
    return {} if isinstance(refs, str) else refs.get(detector, {})


def uses_crds(detector):
    """True when the config takes ``detector``'s references (those not given) from CRDS."""
    return config["references"] == "crds" or bool(_given_references(detector).get("crds", False))


def crds_reference(exposure, key, optional=False):
    """The CRDS best reference of type ``key`` for ``exposure`` (its headers: the raw file, or
    the inventory row of a demo file not simulated yet); None for an ``optional`` type CRDS
    has no file for."""
    from detcal import crds_refs

    row = EXPOSURES[exposure]
    header = None if os.path.exists(row["path"]) else {k: v for k, v in row.items() if v is not None}
    try:
        return crds_refs.best_references(row["path"], [key], header=header)[key]
    except InputError as err:
        if optional:
            return None
        raise WorkflowError(f"error: {err}") from None


def crds_choices(wildcards=None):
    """Params of the inventory rule: {exposure: {CRDS_CTX, R_<TYPE>: file name}} of every
    exposure whose references (those not given explicitly) come from CRDS; {} otherwise."""
    from detcal import crds_refs

    out = {}
    for exposure, row in EXPOSURES.items():
        detector = row["DETECTOR"]
        if not uses_crds(detector):
            continue
        given = _given_references(detector)
        chain = pipeline.chain(row["family"], STEPS_ON)
        keys = {k for step in chain for k in pipeline.REFERENCES.get(step, ()) if not given.get(k)}
        required = {
            k
            for step in chain
            for k in pipeline.REFERENCES.get(step, ())
            if k not in pipeline.OPTIONAL_REFERENCES.get(step, ())
        }
        choice = {"CRDS_CTX": crds_refs.context_name()}
        for key in sorted(keys):
            path = crds_reference(exposure, key, optional=key not in required)
            if path:
                choice[f"R_{key.upper()}"] = os.path.basename(path)
        out[exposure] = choice
    return out


def reference_path(detector, key, step=None, exposure=None):
    """The ``key`` reference for ``detector`` (and ``step``): per-step override, per-detector
    config, CRDS (``references: crds``; for ``exposure``, else the detector's first), the
    demo's, or None."""
    given = _given_references(detector)
    where = f"references: {detector}: steps: {step}: {key}"
    path = given.get("steps", {}).get(step, {}).get(key)
    if not path:
        where, path = f"references: {detector}: {key}", given.get(key)
    if path:
        if not os.path.exists(path):
            raise WorkflowError(f"error: {path}: file does not exist (config {where})")
        return path
    if uses_crds(detector):
        if exposure is None:
            exposure = exposures_where("DETECTOR", detector)[0]
        return crds_reference(exposure, key, optional=key in pipeline.OPTIONAL_REFERENCES.get(step, ()))
    if DEMO:
        return DEMO_REFERENCES.get(detector, {}).get(key)
    return None


def step_references(step):
    """Input function (use with unpack): named reference files a step reads for this exposure."""

    def references(wildcards):
        detector = EXPOSURES[wildcards.exposure]["DETECTOR"]
        out = {}
        for key in pipeline.REFERENCES[step]:
            path = reference_path(detector, key, step, wildcards.exposure)
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


# ---- configuration groups ------------------------------------------------------------------
GROUPS = sorted({row["group"] for row in EXPOSURES.values()})


wildcard_constraints:
    group="|".join(re.escape(g) for g in GROUPS),


def group_exposures(group):
    """Exposure names of one configuration group."""
    return exposures_where("group", group)


def group_row(group):
    """Inventory keywords shared by the group (those of its first exposure)."""
    return EXPOSURES[group_exposures(group)[0]]


def group_paths(kind):
    """Input function: one product per exposure of the group.

    kinds: ``raw``; ``before_dark`` (the product just before dark_current: superbias- and
    refpix-corrected NIR ramps with their 1/f); ``noise`` (:func:`noise_product`: superbias and
    refpix without side reference pixels, as NRC-09/pynrc); ``jump`` and ``rateints`` of the
    branch without dark subtraction.
    """

    def paths(wildcards):
        out = []
        for exposure in group_exposures(wildcards.group):
            if kind == "raw":
                out.append(EXPOSURES[exposure]["path"])
            elif kind == "before_dark":
                out.append(product_before_dark(exposure))
            elif kind == "noise":
                out.append(noise_product(exposure))
            elif kind == "jump":
                out.append(f"results/nodark/{exposure}_jumpstep.fits")
            elif kind == "rateints":
                out.append(f"results/nodark/{exposure}_rateints.fits")
            else:
                raise ValueError(kind)
        return out

    paths.__name__ = f"group_{kind}"
    return paths


def group_reference(key):
    """Input function: the group's detector reference of type ``key`` (config or demo)."""

    def reference(wildcards):
        detector = group_row(wildcards.group)["DETECTOR"]
        path = reference_path(detector, key, exposure=group_exposures(wildcards.group)[0])
        if path is None:
            raise WorkflowError(
                f"error: the analyses of group {wildcards.group} need a {key} reference for detector "
                f"{detector}: set `references: {{{detector}: {{{key}: <path>}}}}` in the config"
            )
        return path

    reference.__name__ = f"group_{key}"
    return reference


def group_baseline(wildcards):
    """Optional baseline slope image for the group's detector (empty when none is configured)."""
    path = config["analysis"]["baseline"].get(group_row(wildcards.group)["DETECTOR"])
    return {"baseline": path} if path else {}


def group_labels(figure):
    def labels(wildcards):
        return {"detector": group_row(wildcards.group)["DETECTOR"], "figure": figure}

    return labels


def group_report(path, caption, category, figure):
    """Report item of a per-group figure or table."""
    return report(
        path, caption=f"../report/{caption}.rst", category=category, subcategory="{group}", labels=group_labels(figure)
    )


ANALYSES_ON = bool(config["analysis"]["enabled"] and STEPS_ON.get("jump", True) and STEPS_ON.get("ramp_fit", True))


def analysis_targets():
    """Per-group analysis products and the all-groups summary (when analyses are on)."""
    if not ANALYSES_ON:
        return []
    out = ["results/analysis/summary.tsv"]
    for group in GROUPS:
        out.append(f"results/analysis/{group}/summary.tsv")
    return out


def group_analysis_jsons(wildcards):
    """The analysis JSON files the group summary collects (noise decomposition: NIR only)."""
    names = ["jumps", "darkcurrent", "stability", "effective_noise"]
    if group_row(wildcards.group)["family"] == "NIR":
        names.append("noise_decomposition")
    return {name: f"results/analysis/{wildcards.group}/{name}.json" for name in names}


REFFILES_ON = ANALYSES_ON and config["reffiles"]["enabled"]


def group_reference_products(group):
    """{product: None or why it is not built} of a group (detcal.inventory.reference_products),
    decided here, from the inventory, when the DAG is built; {} when reference files are off."""
    if not REFFILES_ON:
        return {}
    return inventory.reference_products(group_row(group))


def group_products(wildcards):
    """Params function of group_summary: the group's reference products and why any is absent."""
    return group_reference_products(wildcards.group)


def reffile_targets():
    """The reference files each group gets (DARK: NFRAMES=1/GROUPGAP=0 groups; SUPERBIAS: NIR)."""
    out = []
    for group in GROUPS:
        out += [
            f"results/reffiles/{group}/{kind}.fits" for kind, why in group_reference_products(group).items() if not why
        ]
    return out


def group_saturation_products(wildcards):
    """SUPERBIAS input: ramps after dq_init and saturation only."""
    return [ramp_path(e, "saturation") for e in group_exposures(wildcards.group)]


def reffile_kwargs(kind):
    """Parameters of a reference-file builder (memory_mb: its working-memory budget)."""
    cfg = config["reffiles"]

    def kwargs(wildcards):
        out = {"pedigree": cfg["pedigree"], "author": cfg["author"], "memory_mb": cfg["memory_mb"]}
        if kind == "dark":
            out.update(stat=cfg["dark_stat"], sigma=cfg["dark_sigma"])
            if group_row(wildcards.group)["family"] == "MIRI":
                # the no-dark branch flags MIRI's first/last groups DO_NOT_USE for slopes; the DARK
                # must keep them (they hold the reset anomaly it exists to remove)
                out["exclude_flags"] = ("SATURATED",)
        if kind == "mask":
            out.update(
                hot_threshold=cfg["hot_threshold"],
                warm_threshold=cfg["warm_threshold"],
                false_flags=cfg["mask_false_flags"],
                detect_probability=cfg["mask_detect_probability"],
                noisy_min_ratio=cfg["mask_noisy_min_ratio"],
            )
        return out

    kwargs.__name__ = f"{kind}_kwargs"
    return kwargs


def demo_outputs():
    """Every file the demo simulation writes (known before it runs)."""
    return list(DEMO_FILES)


def demo_outdir(wildcards, output):
    """The demo folder, from the simulation's first output (``<outdir>/uncal/<name>``)."""
    return os.path.dirname(os.path.dirname(output[0]))


def final_outputs():
    """Targets of the default target: inventory, every exposure's last products, analyses."""
    out = ["results/inventory.tsv"] + analysis_targets() + reffile_targets()
    for exposure, row in EXPOSURES.items():
        if "ramp_fit" in pipeline.chain(row["family"], STEPS_ON):
            out += [f"results/rates/{exposure}_rate.fits", f"results/rates/{exposure}_rateints.fits"]
        last = pipeline.last_ramp_step(row["family"], STEPS_ON)
        if last:
            out.append(ramp_path(exposure, last))
    return out
