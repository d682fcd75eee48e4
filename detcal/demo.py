"""The embedded demo data set: what the workflow simulates when no real data are given.

``demo`` is the config block ``{'seed': int, 'detectors': [spec, ...]}`` with one simulator spec
per detector (see :func:`detcal.simulate.params.normalize_spec`). File names are known before
anything is simulated, so the workflow can plan its DAG without a checkpoint.
"""

import pandas as pd

from . import keywords, simulate
from .geometry import family
from .simulate import params as simparams


def _specs(demo):
    specs = [simparams.normalize_spec(spec) for spec in demo["detectors"]]
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"demo detectors must have distinct names, got {names}")
    return specs


def table(demo, outdir):
    """Exposure table of the demo set (same columns as :func:`detcal.inventory.scan`)."""
    rows = []
    for spec in _specs(demo):
        p = spec["params"]
        meta = {"INSTRUME": p["instrument"], "DETECTOR": spec["name"], "EXP_TYPE": p["exp_type"],
                "READPATT": spec["readpatt"], "SUBARRAY": "FULL", "NOUTPUTS": p.get("noutputs", 4),
                "NINTS": spec["nints"], "NGROUPS": spec["ngroups"], "NFRAMES": spec["nframes"],
                "GROUPGAP": spec["groupgap"], "TFRAME": spec["tframe"],
                "TGROUP": spec["tframe"] * (spec["nframes"] + spec["groupgap"]),
                "FASTAXIS": spec["fastaxis"], "SLOWAXIS": spec["slowaxis"], "SUBSTRT1": 1,
                "SUBSTRT2": 1, "SUBSIZE1": spec["shape"][1], "SUBSIZE2": spec["shape"][0]}
        planned = simulate.planned_files(spec, outdir)
        for i, (name, path) in enumerate(zip(planned["exposures"], planned["uncal"])):
            rows.append({"exposure": name, "path": path,
                         "family": family(p["instrument"]), "group": keywords.group_id(meta),
                         "EXPSTART": spec["expstart"] + i * spec["cadence"] / 24.0, **meta})
    columns = ["exposure", "path", "family", "group", *keywords.INVENTORY]
    return pd.DataFrame(rows, columns=columns).set_index("exposure", drop=False).sort_index()


def reference_files(demo, outdir):
    """{DETECTOR: {reference key: path}} of the references the simulation writes."""
    out = {}
    for spec in _specs(demo):
        out[spec["name"]] = dict(simulate.planned_files(spec, outdir)["references"])
    return out


def truth_files(demo, outdir):
    """{DETECTOR: path of its truth file}."""
    return {spec["name"]: simulate.planned_files(spec, outdir)["truth"] for spec in _specs(demo)}


def files(demo, outdir):
    """Every file :func:`write` creates."""
    out = []
    for spec in _specs(demo):
        planned = simulate.planned_files(spec, outdir)
        out += planned["uncal"] + list(planned["references"].values()) + [planned["truth"]]
    return out


def write(demo, outdir):
    """Simulate every demo detector into ``outdir`` (uncal/, references/, truth/)."""
    for spec in demo["detectors"]:
        simulate.write_detector_set(spec, outdir, demo["seed"])
