# One row per input ramp with its configuration keywords and configuration group.
rule inventory:
    input:
        EXPOSURES["path"].tolist(),
    output:
        report("results/inventory.tsv", caption="../report/inventory.rst", category="Inventory"),
    params:
        crds=crds_choices,
        cache=INVENTORY_CACHE,
    log:
        "logs/inventory.log",
    conda:
        "../../envs/detcal.yaml"
    script:
        "../scripts/inventory.py"
