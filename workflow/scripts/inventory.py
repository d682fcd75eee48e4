"""Write results/inventory.tsv: one row per input ramp with its configuration keywords."""
from detcal import inventory, runner, validate

with runner.logged(snakemake.log[0], "inventory") as log:
    # the rows the parse already made (cached); the demo's files are read here the first time
    table = validate.inventory(list(snakemake.input), cache=snakemake.params.cache)
    inventory.write(table, snakemake.output[0], crds=snakemake.params.crds)
    log.info("%d files in %d configuration groups", len(table), table["group"].nunique())
