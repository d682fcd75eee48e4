# One row per input ramp with its configuration keywords and configuration group.
rule inventory:
    input:
        EXPOSURES["path"].tolist(),
    output:
        "results/inventory.tsv",
    log:
        "logs/inventory.log",
    conda:
        "../../envs/detcal.yaml"
    script:
        "../scripts/inventory.py"
