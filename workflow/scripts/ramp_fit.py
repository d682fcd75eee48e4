"""Fit one ramp file: rate (DN/s per pixel) and rateints (per integration) products."""
from detcal import runner

with runner.logged(snakemake.log[0], "ramp_fit"):
    references = {key: path for key, path in snakemake.input.items() if key != "ramp"}
    runner.run_ramp_fit_file(snakemake.input.ramp, references, snakemake.output.rate,
                             snakemake.output.rateints, snakemake.params.parameters)
