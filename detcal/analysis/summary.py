"""Summary table: one row per configuration group, merged from the per-analysis JSON files.

Every analysis writes a JSON document with a top-level ``analysis`` name and a ``summary`` dict
of scalars whose keys carry their units (``dark_current_e_per_1000s``, ``cds_noise_DN``, ...).
:func:`summary_row` reads whichever of those files exist and

* fills the key columns (:data:`KEY_COLUMNS`): dark current and its verdict (``darkcurrent``),
  CR rate and % pixels with jumps (``jumps``), drift flags (``stability``), the CDS noise and
  the effective noise at the largest number of groups. The last two come from any other
  analysis document holding a number under a key starting with ``cds_noise`` / containing
  ``effective_noise`` (nested keys are searched; a ``summary`` dict and whole-array ``all``
  entries are preferred, see :func:`find_number`); the CDS noise falls back to the stability
  analysis' ``cds_noise_DN``. The ``*_key`` columns name the entry (and so the unit and the
  convention) a number came from; a noise analysis that wants its effective noise at the
  largest N in the summary writes it as ``summary: {effective_noise_max_n_e: ...}``;
* appends every scalar of each document's ``summary`` as ``{analysis}.{key}``.

Missing files are skipped (listed in the JSON), so the summary works as analyses are added.
"""

import os

import pandas as pd

from .. import tables
from ..errors import InputError

#: Key columns of the summary and where they come from: column -> (analysis, summary key).
KEY_COLUMNS = {
    "detector": None,
    "dark_current_e_per_1000s": ("darkcurrent", "dark_current_e_per_1000s"),
    "dark_current_err_e_per_1000s": ("darkcurrent", "dark_current_err_e_per_1000s"),
    "dark_current_DN_per_s": ("darkcurrent", "dark_current_DN_per_s"),
    "dark_expected_e_per_1000s": ("darkcurrent", "expected_e_per_1000s"),
    "dark_expected_unc_e_per_1000s": ("darkcurrent", "expected_unc_e_per_1000s"),
    "dark_verdict": ("darkcurrent", "verdict"),
    "cr_rate_events_per_cm2_per_s": ("jumps", "cr_rate_events_per_cm2_per_s"),
    "cr_rate_err_events_per_cm2_per_s": ("jumps", "cr_rate_err_events_per_cm2_per_s"),
    # upward events before the noise correction, and the noise estimate subtracted (downward events)
    "cr_rate_uncorrected_events_per_cm2_per_s": ("jumps", "cr_rate_uncorrected_events_per_cm2_per_s"),
    "cr_noise_rate_events_per_cm2_per_s": ("jumps", "noise_rate_down_events_per_cm2_per_s"),
    "pct_pixels_with_jump_per_integration": ("jumps", "pct_pixels_with_jump_per_integration"),
    "cds_noise": None,
    "cds_noise_key": None,
    "effective_noise_max_n": None,
    "effective_noise_key": None,
    "stability_any_drift": ("stability", "any_drift"),
    "stability_flagged": ("stability", "flagged"),
    "n_new_hot_vs_baseline": ("stability", "n_new_hot"),
}

#: Analyses whose summary fills the key columns of another when that one is absent: the CCD
#: branch's row (detcal.ccd.products.analysis_file) gives its dark current under the same keys.
FALLBACK_SOURCES = {"darkcurrent": ("ccd",)}


def _scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def load_documents(paths):
    """Read the analysis JSON files that exist.

    Parameters
    ----------
    paths : list of str, or dict name -> str (the name replaces the document's ``analysis``)

    Returns
    -------
    docs : dict analysis name -> document; missing : list of paths that do not exist
    """
    items = paths.items() if isinstance(paths, dict) else [(None, p) for p in paths]
    docs, missing = {}, []
    for name, path in items:
        if not path or not os.path.exists(str(path)):
            missing.append(str(path))
            continue
        try:
            doc = tables.read_json(path)
        except (OSError, ValueError) as exc:
            raise InputError(path, f"not a readable analysis JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise InputError(path, "analysis JSON must hold an object with a 'summary'")
        name = name or doc.get("analysis") or os.path.splitext(os.path.basename(str(path)))[0]
        name = str(name).strip().replace(" ", "_")
        doc["_path"] = str(path)
        docs[str(name)] = doc
    return docs, missing


#: Top-level entries of analysis documents that are not searched for numbers.
_SKIP = ("table", "per_integration", "inputs", "conventions", "parameters", "trends", "flagged", "sources")


def flatten(doc, prefix=""):
    """dict dotted key -> numeric value of a nested document (lists and :data:`_SKIP` entries skipped)."""
    out = {}
    for key, val in doc.items():
        if not prefix and (key in _SKIP or key.startswith("_")):
            continue
        name = f"{prefix}{key}"
        if isinstance(val, dict):
            out.update(flatten(val, name + "."))
        elif isinstance(val, (int, float)) and not isinstance(val, bool):
            out[name] = val
    return out


def find_number(docs, want, exclude=()):
    """The number a summary column takes from analysis documents.

    Candidates: numeric entries anywhere in the documents (dotted keys, :func:`flatten`) whose
    last key part satisfies ``want`` and does not mention an error. Preference: entries of a
    ``summary`` dict, then of the whole array (a path part ``all``), then document order.

    Returns (value, 'analysis:dotted.key') or (None, None).
    """
    best = None
    for name in docs:
        if name in exclude:
            continue
        for pos, (key, val) in enumerate(flatten(docs[name]).items()):
            parts = key.split(".")
            last = parts[-1].lower()
            if not want(last) or "err" in last or val is None:
                continue
            rank = (0 if parts[0] == "summary" else 1, 0 if "all" in parts[:-1] else 1, pos)
            if best is None or rank < best[0]:
                best = (rank, val, f"{name}:{key}")
    return (best[1], best[2]) if best else (None, None)


def summary_row(group, docs):
    """One summary row (dict) of a group from loaded analysis documents (:func:`load_documents`)."""
    row = {"group": group}
    for col, src in KEY_COLUMNS.items():
        row[col] = None
        if src:
            name, key = src
            val = (docs.get(name, {}).get("summary") or {}).get(key)
            for other in FALLBACK_SOURCES.get(name, ()):
                if val is None:
                    val = (docs.get(other, {}).get("summary") or {}).get(key)
            if isinstance(val, list):
                val = ",".join(map(str, val)) or "none"   # an empty list says "nothing", not "missing"
            row[col] = val
    for doc in docs.values():
        det = (doc.get("summary") or {}).get("detector") or (doc.get("configuration") or {}).get("DETECTOR")
        if det:
            row["detector"] = det
            break

    def is_cds(k):
        return k.startswith("cds_noise")

    val, key = find_number(docs, is_cds, exclude=("stability",))
    if val is None:
        val, key = find_number({k: v for k, v in docs.items() if k == "stability"}, is_cds)
    row["cds_noise"], row["cds_noise_key"] = val, key
    row["effective_noise_max_n"], row["effective_noise_key"] = find_number(
        docs, lambda k: "effective_noise" in k or "eff_noise" in k)
    for name in docs:
        for key, val in (docs[name].get("summary") or {}).items():
            if isinstance(val, list) and all(_scalar(v) for v in val):
                val = ",".join(map(str, val))
            if _scalar(val):
                row[f"{name}.{key}"] = val
    return row


def reference_columns(products):
    """Summary columns of a group's reference files from ``{product: None or reason}``
    (:func:`detcal.inventory.reference_products`): ``reffiles`` (the built ones, comma-separated)
    and ``reffiles_not_built`` (``product: reason`` entries, ``; ``-separated)."""
    built = [k for k, why in products.items() if not why]
    absent = [f"{k}: {why}" for k, why in products.items() if why]
    return {"reffiles": ",".join(built) or "none", "reffiles_not_built": "; ".join(absent) or "none"}


def summary_file(group, analysis_jsons, output_tsv, output_json, products=None):
    """Write the one-row summary of a configuration group.

    Parameters
    ----------
    group : str
    analysis_jsons : list of str or dict name -> str
        The group's analysis JSON files (``jumps.json``, ``darkcurrent.json``,
        ``stability.json``, and any other analysis' JSON with a ``summary``); missing ones are
        skipped.
    output_tsv : str   one row; key columns first (units in names), then ``analysis.key`` columns
    output_json : str  ``row``, ``sources`` (analysis -> path), ``missing``
    products : dict reference product -> None or the reason it is not built, optional
        (:func:`detcal.inventory.reference_products`): adds :func:`reference_columns`.

    Returns
    -------
    dict: the row.
    """
    docs, missing = load_documents(analysis_jsons)
    row = summary_row(group, docs)
    if products is not None:
        row.update(reference_columns(products))
    tables.write_tsv(pd.DataFrame([row]), output_tsv)
    tables.write_json({"analysis": "summary", "group": group, "row": row,
                       "sources": {k: d["_path"] for k, d in docs.items()}, "missing": missing},
                      output_json)
    return row


def combine_summaries(row_tsvs, output_tsv):
    """Concatenate per-group summary rows into one table (columns: union, key columns first)."""
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in row_tsvs]
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(
        columns=["group", *KEY_COLUMNS])
    first = [c for c in ["group", *KEY_COLUMNS, "reffiles", "reffiles_not_built"] if c in table.columns]
    table = table[first + sorted(c for c in table.columns if c not in first)]
    tables.write_tsv(table, output_tsv)
    return table

