# The branch without dark subtraction: jump and ramp_fit on the product just before
# dark_current. The dark-current analysis, the DARK reference and the bad-pixel mask need
# ramps and slopes that still contain the dark signal (as the JWQL dark monitor and
# jwst_reffiles use them); MIRI's branch also skips refpix, which comes after dark_current.


rule jump_nodark:
    input:
        unpack(step_references("jump")),
        ramp=nodark_input,
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
