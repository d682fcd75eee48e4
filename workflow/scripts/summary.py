"""The summary table of the run: one row per configuration group (shown first in the report)."""
from detcal import runner
from detcal.analysis import summary

with runner.logged(snakemake.log[0], "summary"):
    summary.combine_summaries(list(snakemake.input), snakemake.output[0])
