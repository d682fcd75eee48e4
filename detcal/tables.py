"""The one TSV and JSON writer of every table and summary the package writes.

* TSV: a pandas DataFrame, tab-separated, no index, units in the column names, NaN written as
  an empty field; numbers in full precision unless the caller asks for a ``float_format``
  (the reference-file tables use ``'%.6g'``). A mapping {column: 1-D array} of numbers is
  written byte for byte as its DataFrame would be, without importing pandas (the
  detector1 jobs' sample tables: pandas costs ~0.5 s of a job's start-up).
* JSON: indented, numpy scalars and arrays converted, NaN/inf written as ``null``, a
  ``detcal_version`` key added to a top-level mapping that has none.

Both write atomically (:func:`detcal.io.atomic_path`: a temporary file renamed into place), so a
full disk leaves no partial product and stops with one line naming it.
"""

import csv
import json
import math

import numpy as np

from . import __version__, io


def write_tsv(table, path, float_format=None):
    """Write a pandas DataFrame, or a mapping {column: 1-D array}, as TSV (no index); NaN written
    as an empty field.

    ``float_format``: a printf format for floats (e.g. ``'%.6g'``); default full precision.
    A mapping of equally long numeric (or boolean) columns is written without pandas, as
    ``DataFrame.to_csv`` writes it (each column's ``astype(str)``, NaN as '', the csv module's
    writer); any other mapping through ``pandas.DataFrame(table)``.
    """
    if not hasattr(table, "to_csv"):
        columns = {str(name): np.asarray(values) for name, values in table.items()}
        if (float_format is None and len({c.shape for c in columns.values()}) <= 1
                and all(c.ndim == 1 and c.dtype.kind in "biuf" for c in columns.values())):
            with io.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
                writer.writerow(columns)
                writer.writerows(zip(*(_tsv_fields(c) for c in columns.values())))
            return
        import pandas as pd

        table = pd.DataFrame(table)
    with io.atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="", float_format=float_format)


def _tsv_fields(column):
    """The TSV fields of a 1-D column as pandas writes them: ``astype(str)``, NaN as ''."""
    text = column.astype(str)
    if column.dtype.kind == "f":
        text = text.astype(object)
        text[np.isnan(column)] = ""
    return text.tolist()


def jsonable(obj):
    """``obj`` with numpy scalars/arrays as Python numbers/lists and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(obj, path):
    """Write ``obj`` as indented JSON (numpy scalars converted, NaN/inf as null)."""
    doc = jsonable(obj)
    if isinstance(doc, dict):
        doc.setdefault("detcal_version", __version__)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    with io.atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def read_json(path):
    """Read a JSON file written by :func:`write_json`."""
    with open(path) as fh:
        return json.load(fh)


def records(table):
    """List of row dicts of a DataFrame (for JSON)."""
    return [{k: jsonable(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
