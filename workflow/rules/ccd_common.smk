# CCD branch: parse-time plan (frames and header-only decisions, detcal.ccd.inventory) and the
# input functions of the rules in ccd.smk.
CCD = config["ccd"]
CCD_DEMO = not CCD["raw"] and DEMO and CCD["demo"] is not None
CCD_ON = bool(CCD["raw"]) or CCD_DEMO
CCD_DEMO_DIR = "results/demo/ccd"


def _ccd_plan():
    """(frames table, plan) of the CCD set; the demo's from its spec, without simulating."""
    if not CCD_ON:
        return None, None
    # imported here, not at every parse of a workflow without the CCD branch (they import astropy)
    from detcal.ccd import inventory as ccd_inventory
    from detcal.simulate import ccd as ccd_simulator

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
    out = {
        "dark_paths": CCD_PLAN["dark_exptimes"][int(wildcards.ccd_exptime)]["files"],
        "decisions_json": "results/ccd/decisions.json",
    }
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
    return [
        "results/ccd/inventory.tsv",
        "results/ccd/summary.tsv",
        "results/ccd/dark_rate.fits",
        *ccd_master_darks(),
        *ccd_scaled_darks(),
        *ccd_master_bias(),
    ]


def ccd_demo_outdir(wildcards, output):
    """The CCD demo folder, from the simulation's first output (``<outdir>/raw/<name>``)."""
    return os.path.dirname(os.path.dirname(output[0]))


def ccd_report(path, caption, label):
    return report(path, caption=f"../report/{caption}.rst", category="CCD", labels={"figure": label})
