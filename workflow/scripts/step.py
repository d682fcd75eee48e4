"""Apply one detector1 step to one ramp file (rules in workflow/rules/detector1.smk)."""
from detcal import runner

step = snakemake.params.step
with runner.logged(snakemake.log[0], step):
    references = {key: path for key, path in snakemake.input.items() if key != "ramp"}
    # named outputs beyond the ramp and its sample table/figure: the step's further products
    products = {key: path for key, path in snakemake.output.items() if key not in ("ramp", "table", "figure")}
    runner.run_step_file(step, snakemake.input.ramp, references, snakemake.output.ramp,
                         snakemake.params.parameters, pixels=snakemake.params.pixels,
                         table=snakemake.output.get("table"), figure=snakemake.output.get("figure"),
                         exposure=snakemake.wildcards.exposure, product_paths=products,
                         skip_groups=snakemake.params.get("skip_groups", (0, 0)))
