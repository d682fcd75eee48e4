"""Simulate the demo CCD set (bias, darks, flats, lights and the truth file)."""
from detcal import runner
from detcal.simulate import ccd

with runner.logged(snakemake.log[0], "ccd_simulate"):
    spec = ccd.normalize_spec(dict(snakemake.params.spec))
    ccd.write_ccd_set(spec, snakemake.params.outdir, spec["seed"])
