# CCD dark calibration branch (ground-observatory style): inventory and decisions, master bias,
# master dark per exposure time, dark rate + hot pixels + scaled darks, analysis and report.
# Rules call detcal functions through scripts/group_analysis.py (inputs and outputs named after
# the function's arguments); the plan and input functions are in ccd_common.smk.


include: "ccd_common.smk"


if CCD_ON:
    if CCD_DEMO:

        rule ccd_simulate:
            output:
                ccd_raw(),
                f"{CCD_DEMO_DIR}/truth.fits",
            log:
                "logs/ccd/simulate.log",
            conda:
                "../../envs/detcal.yaml"
            params:
                spec=CCD["demo"],
                outdir=ccd_demo_outdir,
            script:
                "../scripts/ccd_simulate.py"

    rule ccd_inventory:
        input:
            raw_paths=ccd_raw(),
        output:
            inventory_tsv=ccd_report("results/ccd/inventory.tsv", "ccd_inventory", "inventory"),
            decisions_tsv=ccd_report("results/ccd/decisions.tsv", "ccd_decisions", "decision table"),
            decisions_json="results/ccd/decisions.json",
        log:
            "logs/ccd/inventory.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.inventory_file",
            kwargs={"cfg": {key: value for key, value in CCD.items() if key != "demo"}},
        script:
            "../scripts/group_analysis.py"

    rule ccd_master_bias:
        input:
            bias_paths=CCD_PLAN["bias_files"],
            decisions_json="results/ccd/decisions.json",
        output:
            output_fits="results/ccd/master_bias.fits",
        log:
            "logs/ccd/master_bias.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.master_bias_file",
            kwargs={},
        script:
            "../scripts/group_analysis.py"

    rule ccd_master_dark:
        input:
            unpack(ccd_dark_inputs),
        output:
            output_fits="results/ccd/master_dark_{ccd_exptime}s.fits",
        log:
            "logs/ccd/master_dark_{ccd_exptime}s.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.master_dark_file",
            kwargs={},
        script:
            "../scripts/group_analysis.py"

    rule ccd_dark_rate:
        input:
            master_darks=ccd_master_darks(),
            decisions_json="results/ccd/decisions.json",
        output:
            dark_rate_fits="results/ccd/dark_rate.fits",
            hot_pixels_tsv="results/ccd/hot_pixels.tsv",
            scaled_darks=ccd_scaled_darks(),
        log:
            "logs/ccd/dark_rate.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.dark_rate_file",
            kwargs={},
        script:
            "../scripts/group_analysis.py"

    rule ccd_analysis:
        input:
            unpack(ccd_analysis_bias),
            bias_paths=CCD_PLAN["bias_files"],
            decisions_json="results/ccd/decisions.json",
            master_darks=ccd_master_darks(),
            dark_rate="results/ccd/dark_rate.fits",
        output:
            readnoise_tsv=ccd_report("results/ccd/readnoise.tsv", "ccd_readnoise", "read noise"),
            hot_counts_tsv=ccd_report("results/ccd/hot_counts.tsv", "ccd_hot_pixels", "hot-pixel counts"),
            summary_json="results/ccd/ccd.json",
            summary_tsv="results/ccd/summary.tsv",
            bias_png=ccd_report("results/plots/ccd/master_bias.png", "ccd_master_bias", "master bias"),
            darks_png=ccd_report("results/plots/ccd/master_darks.png", "ccd_master_darks", "master darks"),
            histogram_png=ccd_report(
                "results/plots/ccd/dark_rate_histogram.png", "ccd_dark_rate", "dark-rate histogram"
            ),
            linearity_png=ccd_report(
                "results/plots/ccd/dark_linearity.png", "ccd_dark_linearity", "dark rate per exposure time"
            ),
        log:
            "logs/ccd/analysis.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.analysis_file",
            kwargs={},
        script:
            "../scripts/group_analysis.py"
