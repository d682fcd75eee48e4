# CCD dark calibration branch (ground-observatory style): inventory and decisions, master bias,
# master dark per exposure time, dark rate + hot pixels + scaled darks, analysis and report.
# The frames and the header-only decisions are planned at parse time (detcal.ccd.inventory);
# rules call detcal functions through scripts/group_analysis.py (inputs/outputs named after
# their arguments).
from detcal.ccd import inventory as ccd_inventory
from detcal.simulate import ccd as ccd_simulator

CCD = config["ccd"]
CCD_DEMO = not CCD["raw"] and DEMO and CCD["demo"] is not None
CCD_ON = bool(CCD["raw"]) or CCD_DEMO
CCD_DEMO_DIR = "results/demo/ccd"


def _ccd_plan():
    """(frames table, plan) of the CCD set; the demo's from its spec, without simulating."""
    if not CCD_ON:
        return None, None
    try:
        if CCD_DEMO:
            import pandas as pd

            table = pd.DataFrame(ccd_simulator.inventory_rows(CCD["demo"], CCD_DEMO_DIR))
            return table, ccd_inventory.plan(table, CCD, where="config ccd.demo")
        table = ccd_inventory.scan(ccd_inventory.expand(CCD["raw"]), CCD)
        return table, ccd_inventory.plan(table, CCD)
    except InputError as err:
        raise WorkflowError(f"error: {err}") from None


CCD_TABLE, CCD_PLAN = _ccd_plan()


wildcard_constraints:
    ccd_exptime=r"\d\d\d+",


def ccd_raw():
    return CCD_TABLE["path"].tolist() if CCD_ON else []


def ccd_dark_labels():
    return sorted(CCD_PLAN["dark_exptimes"]) if CCD_ON else []


def ccd_master_darks():
    return [f"results/ccd/master_dark_{label:03d}s.fits" for label in ccd_dark_labels()]


def ccd_scaled_darks():
    return [f"results/ccd/scaled_dark_{label:03d}s.fits" for label in CCD_PLAN["scaled_labels"]] if CCD_ON else []


def ccd_master_bias():
    return ["results/ccd/master_bias.fits"] if CCD_ON and CCD_PLAN["bias_files"] else []


def ccd_dark_inputs(wildcards):
    """The darks of one exposure time, the decisions, and the master bias when it is subtracted."""
    out = {"dark_paths": CCD_PLAN["dark_exptimes"][int(wildcards.ccd_exptime)]["files"],
           "decisions_json": "results/ccd/decisions.json"}
    if CCD_PLAN["bias_subtract"]:
        out["master_bias"] = "results/ccd/master_bias.fits"
    return out


def ccd_analysis_bias(wildcards):
    """The master bias for the analysis figures, when there are bias frames."""
    return {"master_bias": ccd_master_bias()[0]} if ccd_master_bias() else {}


def ccd_summary_rows():
    """The CCD row of results/analysis/summary.tsv (empty when the branch is off)."""
    return ["results/ccd/summary.tsv"] if CCD_ON else []


def ccd_targets():
    if not CCD_ON:
        return []
    return ["results/ccd/inventory.tsv", "results/ccd/summary.tsv", "results/ccd/dark_rate.fits",
            *ccd_master_darks(), *ccd_scaled_darks(), *ccd_master_bias()]


def ccd_report(path, caption, label):
    return report(path, caption=f"../report/{caption}.rst", category="CCD", labels={"figure": label})


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
                outdir=CCD_DEMO_DIR,
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
            histogram_png=ccd_report("results/plots/ccd/dark_rate_histogram.png", "ccd_dark_rate", "dark-rate histogram"),
            linearity_png=ccd_report("results/plots/ccd/dark_linearity.png", "ccd_dark_linearity", "dark rate per exposure time"),
        log:
            "logs/ccd/analysis.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            function="detcal.ccd.products.analysis_file",
            kwargs={"detector": CCD["demo"]["name"] if CCD_DEMO else "CCD"},
        script:
            "../scripts/group_analysis.py"
