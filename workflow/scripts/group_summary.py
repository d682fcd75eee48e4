"""One summary row for a configuration group, from its analyses' JSON files."""
from detcal import runner
from detcal.analysis import summary

with runner.logged(snakemake.log[0], "group_summary"):
    summary.summary_file(snakemake.wildcards.group, dict(snakemake.input.items()),
                         snakemake.output.tsv, snakemake.output.json,
                         products=snakemake.params.products)
