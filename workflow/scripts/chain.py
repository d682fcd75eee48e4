"""Run the detector1 chain of one exposure in memory (fused mode, workflow/rules/fused.smk)."""
from detcal import runner

with runner.logged(snakemake.log[0], "chain"):
    references = {}
    for name, path in snakemake.input.items():
        if name != "raw":
            step, key = name.split("__")
            references.setdefault(step, {})[key] = path
    runner.run_chain_file(snakemake.input.raw, snakemake.params.family, snakemake.params.enabled,
                          references, dict(snakemake.output.items()), names=snakemake.params.names,
                          params=snakemake.params.parameters, pixels=snakemake.params.pixels,
                          exposure=snakemake.wildcards.exposure,
                          skip_groups=snakemake.params.skip_groups,
                          noise_parameters=snakemake.params.noise_parameters)
