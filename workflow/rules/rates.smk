# Ramp fitting: the last step of every chain, giving the rate and rateints products.


rule ramp_fit:
    input:
        unpack(step_references("ramp_fit")),
        ramp=step_input("ramp_fit"),
    output:
        rate="results/rates/{exposure}_rate.fits",
        rateints="results/rates/{exposure}_rateints.fits",
    log:
        "logs/ramp_fit/{exposure}.log",
    benchmark:
        "results/benchmarks/ramp_fit/{exposure}.tsv"
    conda:
        "../../envs/detcal.yaml"
    threads: 1
    resources:
        mem_mb=ramp_step_mem_mb,
    params:
        parameters=step_parameters("ramp_fit"),
    script:
        "../scripts/ramp_fit.py"
