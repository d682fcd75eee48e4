# Infrared-detector dark commissioning: raw dark ramps -> detector1 steps -> analyses,
# reference files and one HTML report. See README.md; configuration in config/.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# cheap bookkeeping jobs run on the submitting host, not as cluster jobs
localrules:
    all,
    inventory,
    group_summary,
    summary,


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ccd.smk"
include: "workflow/rules/inventory.smk"


# detector1: one job per exposure (fused, the default) or one job per step (config pipeline: mode)
if config["pipeline"]["mode"] == "fused":

    include: "workflow/rules/fused.smk"

else:

    include: "workflow/rules/detector1.smk"
    include: "workflow/rules/rates.smk"
    include: "workflow/rules/nodark.smk"
    include: "workflow/rules/noise.smk"


include: "workflow/rules/analysis.smk"
include: "workflow/rules/reffiles.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        ccd_targets(),
