"""Run the CCD branch as the workflow's rules do, on a simulated set (for truth and file tests).

``ccd_config(**over)`` is the ``ccd`` block with the schema's defaults (one definition: the
schema); ``run_branch(tmp, spec, seed, cfg)`` simulates ``spec`` (detcal.simulate.ccd), then
calls the same detcal functions, with the same inputs, as the rules in workflow/rules/ccd.smk:
inventory -> master bias -> master dark per exposure time -> dark rate (+ scaled darks) ->
analysis. Returns a dict of every product path plus ``plan``, ``settings`` and ``truth``.
"""

import copy
from pathlib import Path

import yaml

from detcal.ccd import products
from detcal.simulate import ccd as sim

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def _defaults(node):
    if node.get("type") == "object" and "properties" in node:
        out = dict(node.get("default") or {})
        for key, sub in node["properties"].items():
            if "default" in sub or "properties" in sub:
                val = _defaults(sub)
                out.setdefault(key, val)
        return out
    return copy.deepcopy(node.get("default"))


def ccd_config(**over):
    """The ccd block with the schema defaults, overridden by ``over`` (nested dicts merged)."""
    cfg = _defaults(yaml.safe_load(SCHEMA.read_text())["properties"]["ccd"])
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = dict(cfg[key], **val)
        else:
            cfg[key] = val
    return cfg


DEMO_SECTIONS = {"overscan": "[129:136, :]", "trim": "[1:128, :]"}


def sections_for(spec):
    """overscan / trim strings of a simulated spec (image area first, overscan to its right)."""
    s = sim.normalize_spec(spec)
    nx, nos = s["columns"], s["overscan"]
    return {"overscan": f"[{nx + 1}:{nx + nos}, :]" if nos else "", "trim": f"[1:{nx}, :]"}


def run_branch(tmp, spec, seed, cfg=None, analysis=True, figures=False):
    """Simulate and calibrate a CCD set as the workflow does; returns the product paths."""
    tmp = Path(tmp)
    cfg = cfg or ccd_config(**sections_for(spec))
    files = sim.write_ccd_set(spec, str(tmp / "sim"), seed)
    out = tmp / "ccd"
    p = {"inventory": out / "inventory.tsv", "decisions_tsv": out / "decisions.tsv",
         "decisions": out / "decisions.json", "master_bias": out / "master_bias.fits",
         "dark_rate": out / "dark_rate.fits", "hot_pixels": out / "hot_pixels.tsv"}
    plan, settings = products.inventory_file(files["raw"], cfg, p["inventory"], p["decisions_tsv"],
                                             p["decisions"])
    bias = None
    if plan["bias_files"]:
        products.master_bias_file(plan["bias_files"], p["decisions"], p["master_bias"])
        bias = str(p["master_bias"])
    p["master_darks"] = {}
    for label, d in sorted(plan["dark_exptimes"].items()):
        path = out / f"master_dark_{label:03d}s.fits"
        products.master_dark_file(d["files"], p["decisions"], path,
                                  master_bias=bias if plan["bias_subtract"] else None)
        p["master_darks"][label] = path
    p["scaled_darks"] = {lab: out / f"scaled_dark_{lab:03d}s.fits" for lab in plan["scaled_labels"]}
    products.dark_rate_file(list(p["master_darks"].values()), p["decisions"], p["dark_rate"],
                            p["hot_pixels"], list(p["scaled_darks"].values()))
    if analysis:
        names = ["readnoise.tsv", "hot_counts.tsv", "ccd.json", "summary.tsv"]
        if figures:
            names += ["master_bias.png", "master_darks.png", "dark_rate_histogram.png", "dark_linearity.png"]
        a = {n: out / n for n in names}
        products.analysis_file(plan["bias_files"], p["decisions"], list(p["master_darks"].values()),
                               p["dark_rate"], *a.values(), master_bias=bias)
        p.update(a)
    p.update(plan=plan, settings=settings, raw=files["raw"], truth=sim.read_truth(files["truth"]),
             config=cfg)
    return p
