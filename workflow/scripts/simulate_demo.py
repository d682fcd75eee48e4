"""Simulate the demo data set: raw ramps, reference files and truth for every demo detector."""
from detcal import demo, runner

with runner.logged(snakemake.log[0], "simulate_demo"):
    demo.write(snakemake.params.demo, snakemake.params.outdir)
