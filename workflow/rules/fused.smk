# Fused mode (config `pipeline: {mode: fused}`, the default): one job per exposure runs the whole
# detector1 chain in memory (detcal.runner.run_chain_file) instead of one job per step. It
# writes the same files, bit for bit, under the same names as the per-step rules of
# detector1.smk, rates.smk, nodark.smk and noise.smk (which `mode: steps` includes instead), but
# only those something needs: the `keep:` products and the last ramp step, the step tables and
# figures, rate/rateints, the dark_output product, and what the analyses and reference files
# read (branch without dark, noise product, the product before dark, the saturation product
# for the SUPERBIAS; temporary unless kept). One rule per instrument family, since the
# families' chains have different products.


def fused_outputs(fam):
    """{product: path pattern} of the chain job of a ``fam`` exposure (detcal.runner.run_chain_file
    names), with the per-step rules' temp() and report() wrappers."""
    chain = pipeline.chain(fam, STEPS_ON)
    out = {}
    needed = set()  # temporary ramp products read by later rules
    if ANALYSES_ON:
        if fam == "NIR" and STEPS_ON.get("refpix", True):
            out["noise"] = temp(noise_path("{exposure}"))
        else:  # noise_product(): the product before dark_current
            needed.add(pipeline.product_before(fam, STEPS_ON, "dark_current"))
        out["nodark_jump"] = temp(nodark_path("{exposure}", "jump"))
        out["nodark_rate"] = "results/nodark/{exposure}_rate.fits"
        out["nodark_rateints"] = "results/nodark/{exposure}_rateints.fits"
    if REFFILES_ON and fam == "NIR":
        # the SUPERBIAS builder reads these (rule superbias_reffile)
        needed.add("saturation")
    for step in chain:
        if step not in pipeline.RAMP_STEPS:
            continue
        if step in KEEP or step in needed:
            out[step] = step_output(step)
        out[f"table_{step}"] = step_table(step)
        out[f"figure_{step}"] = step_figure(step)
        # further products by name (dark_current: dark)
        out.update(step_extra_outputs(step))
    if "ramp_fit" in chain:
        out["rate"] = "results/rates/{exposure}_rate.fits"
        out["rateints"] = "results/rates/{exposure}_rateints.fits"
    return out


def fused_references(fam):
    """Input function: every reference of the chain, named ``<step>__<key>`` (the per-step rules'
    step_references, in their order)."""

    def references(wildcards):
        return {
            f"{step}__{key}": path
            for step in pipeline.chain(fam, STEPS_ON)
            for key, path in step_references(step)(wildcards).items()
        }

    references.__name__ = f"detector1_{fam}_references"
    return references


def fused_names(fam):
    """Params function: the path of every ramp product the per-step rules would write (the input
    names the products' HISTORY records, whether or not the fused job writes them)."""

    def names(wildcards):
        exposure = wildcards.exposure
        out = {step: ramp_path(exposure, step) for step in pipeline.chain(fam, STEPS_ON) if step in pipeline.RAMP_STEPS}
        for step in pipeline.nodark_steps(fam, STEPS_ON) + ("jump",):
            out[f"nodark_{step}"] = nodark_path(exposure, step)
        return out

    names.__name__ = f"detector1_{fam}_names"
    return names


def fused_mem_mb(wildcards, input, attempt):
    """Memory [MB] of a chain job: 500 MB + 8 x the raw file + the references, at least 1 GB,
    doubled on each retry. The raw uint16 ramp becomes float32 SCI + uint8 GROUPDQ (2.5 x the
    file), and a branch copy plus a step's temporaries about as much again: measured peak RSS
    519 MB for a 2 x 10 x 1024 x 1024 NIR exposure (42 MB raw, 143 MB references; the noise
    branch's refpix on its copy is the peak), 277 MB for MIRI 2 x 40 x 256 x 264 (11 MB, 111 MB).
    """
    raw_mb = os.path.getsize(input.raw) / 1e6 if os.path.exists(input.raw) else 0.0
    return max(1000, 500 + 8 * raw_mb + (input.size_mb - raw_mb)) * attempt


for fam in FAMILIES:

    rule:
        name:
            f"detector1_{fam}"
        input:
            unpack(fused_references(fam)),
            raw=lambda wildcards: EXPOSURES[wildcards.exposure]["path"],
        output:
            **fused_outputs(fam),
        log:
            "logs/detector1/{exposure}.log",
        benchmark:
            "results/benchmarks/detector1/{exposure}.tsv"
        wildcard_constraints:
            exposure="|".join(re.escape(e) for e in exposures_where("family", fam)),
        conda:
            "../../envs/detcal.yaml"
        threads: 1
        resources:
            mem_mb=fused_mem_mb,
        params:
            family=fam,
            enabled=STEPS_ON,
            parameters={step: step_parameters(step) for step in pipeline.chain(fam, STEPS_ON)},
            names=fused_names(fam),
            pixels=config["sample_pixels"],
            skip_groups=nodark_skip_groups,
            noise_parameters=noise_refpix_parameters,
        script:
            "../scripts/chain.py"
