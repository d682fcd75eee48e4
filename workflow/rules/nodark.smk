# The branch without dark subtraction: the chain minus dark_current (steps after it are re-run:
# MIRI refpix), then jump and ramp_fit. The dark-current analysis, the DARK reference and the
# bad-pixel mask need ramps and slopes that still contain the dark signal, as the JWQL dark
# monitor and jwst_reffiles use them.


# Steps after dark_current and before jump that the branch re-runs (MIRI: refpix), one rule each.
for step in pipeline.nodark_rule_steps():

    rule:
        name:
            f"{step}_nodark"
        input:
            unpack(step_references(step)),
            ramp=nodark_input(step),
        output:
            ramp=temp(nodark_path("{exposure}", step)),
        log:
            f"logs/{step}_nodark/{{exposure}}.log",
        conda:
            "../../envs/detcal.yaml"
        threads: 1
        resources:
            mem_mb=ramp_step_mem_mb,
        params:
            step=step,
            parameters=step_parameters(step),
            pixels=[],
        script:
            "../scripts/step.py"


rule jump_nodark:
    input:
        unpack(step_references("jump")),
        ramp=nodark_input("jump"),
    output:
        ramp=temp("results/nodark/{exposure}_jumpstep.fits"),
    log:
        "logs/jump_nodark/{exposure}.log",
    benchmark:
        "results/benchmarks/jump_nodark/{exposure}.tsv"
    conda:
        "../../envs/detcal.yaml"
    threads: 1
    resources:
        mem_mb=ramp_step_mem_mb,
    params:
        step="jump",
        parameters=step_parameters("jump"),
        pixels=[],
        skip_groups=nodark_skip_groups,
    script:
        "../scripts/step.py"


rule ramp_fit_nodark:
    input:
        unpack(step_references("ramp_fit")),
        ramp="results/nodark/{exposure}_jumpstep.fits",
    output:
        rate="results/nodark/{exposure}_rate.fits",
        rateints="results/nodark/{exposure}_rateints.fits",
    log:
        "logs/ramp_fit_nodark/{exposure}.log",
    benchmark:
        "results/benchmarks/ramp_fit_nodark/{exposure}.tsv"
    conda:
        "../../envs/detcal.yaml"
    threads: 1
    resources:
        mem_mb=ramp_step_mem_mb,
    params:
        parameters=step_parameters("ramp_fit"),
    script:
        "../scripts/ramp_fit.py"
