# One row per input ramp with its configuration keywords and configuration group.
rule inventory:
    input:
        [row["path"] for row in EXPOSURES.values()],
    output:
        report("results/inventory.tsv", caption="../report/inventory.rst", category="Inventory"),
    log:
        "logs/inventory.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        crds=crds_choices,
        cache=INVENTORY_CACHE,
    script:
        "../scripts/inventory.py"
