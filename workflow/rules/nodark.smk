# The branch without dark subtraction: the chain minus dark_current (steps after it are re-run:
# MIRI refpix), then jump and ramp_fit. The dark-current analysis, the DARK reference and the
# bad-pixel mask need ramps and slopes that still contain the dark signal, as the JWQL dark
# monitor and jwst_reffiles use them.


rule refpix_nodark:
    input:
        ramp=nodark_input("refpix"),
    output:
        ramp=temp("results/nodark/{exposure}_refpixstep.fits"),
    log:
        "logs/refpix_nodark/{exposure}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        step="refpix",
        parameters=step_parameters("refpix"),
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
    params:
        parameters=step_parameters("ramp_fit"),
    script:
        "../scripts/ramp_fit.py"
