"""Write results/inventory.tsv: one row per input ramp with its configuration keywords."""
from detcal import inventory, runner

with runner.logged(snakemake.log[0], "inventory") as log:
    table = inventory.scan(snakemake.input)
    inventory.write(table, snakemake.output[0], crds=snakemake.params.crds)
    log.info("%d files in %d configuration groups", len(table), table["group"].nunique())
