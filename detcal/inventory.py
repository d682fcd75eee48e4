"""Inventory of input ramps: one row per file with its configuration keywords and group.

Reads primary headers only (cheap enough to run when the workflow is parsed). A file that
cannot be used is an :class:`~detcal.errors.InputError` naming it.
"""

import glob
import os

from . import keywords
from .errors import InputError
from .geometry import family

_SUFFIXES = (".fits.gz", ".fits", ".fit")


def exposure_name(path, product=False):
    """Exposure name of a raw file, or of a product with ``product=True``.

    ``.../jw01062001001_01101_00001_nrca1_uncal.fits`` -> ``jw01062001001_01101_00001_nrca1``:
    the file name without its extension and ``_uncal``. A product is named
    ``{exposure}_{suffix}.fits`` (``demo_nrca1_e001_jumpstep.fits`` -> ``demo_nrca1_e001``);
    with ``product=True`` a suffix of :func:`product_suffixes` is removed as well.
    """
    name = os.path.basename(str(path))
    for ext in _SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if name.endswith("_uncal"):
        return name[:-6]
    if product:
        for suffix in product_suffixes():
            if name.endswith(f"_{suffix}"):
                return name[: -len(suffix) - 1]
    return name


def product_suffixes():
    """File-name suffixes of the products, ``{exposure}_{suffix}.fits``: every registered step's
    ramp product and its further products (rate, rateints, ...), from the step descriptors."""
    from .steps import descriptor  # a floor above; only read when a product is named

    out = []
    for step in descriptor.DESCRIPTORS.values():
        out += [step.suffix] if step.suffix else []
        out += [prod.suffix for prod in step.products.values()]
    return tuple(dict.fromkeys(out))


def group_values(header, path, also=()):
    """Typed values of the configuration-group keywords of a header.

    :data:`detcal.keywords.GROUP` (required: :class:`InputError` naming ``path`` when one is
    missing or malformed), then :data:`detcal.keywords.GROUP_OPTIONAL` and the keywords ``also``
    (None when absent). ``keywords.group_id`` of the result is the inventory's group name.
    """
    vals = {k: keywords.value(header, k, path, needed_by="the configuration group") for k in keywords.GROUP}
    for k in keywords.GROUP_OPTIONAL + tuple(also):
        vals[k] = keywords.optional(header, k)
    return vals


def group_name(header, path="<header>"):
    """Configuration-group name (as the inventory names it) of a file's header."""
    return keywords.group_id(group_values(header, path))


def check_one_group(headers, paths, also=(), what="input"):
    """The one check that files belong to one configuration group (as the inventory groups them).

    Compares :func:`group_values` (:data:`detcal.keywords.GROUP`, ``GROUP_OPTIONAL`` and the
    keywords ``also``, e.g. the subarray placement) of every header with the first's.

    Parameters
    ----------
    headers : sequence of primary headers; paths : their files (same order)
    also : keywords that must agree besides the group's
    what : name of the files in the error message ('input', 'mask', ...)

    Returns
    -------
    dict: the group values of the first file.

    Raises
    ------
    InputError naming the first file that differs, every keyword that differs and the first file.
    """
    if not headers:
        raise ValueError("no input files given")
    ref = group_values(headers[0], paths[0], also)
    for header, path in zip(headers[1:], paths[1:]):
        vals = group_values(header, path, also)
        diff = [k for k in ref if vals[k] != ref[k]]
        if diff:
            raise InputError(path, f"does not belong to the configuration group of the first {what} file "
                                   f"{os.path.basename(str(paths[0]))}: "
                             + ", ".join(f"{k}={vals[k]!r} (not {ref[k]!r})" for k in diff)
                             + f" (one group shares {', '.join(keywords.GROUP + tuple(also))})")
    return ref


def expand_inputs(raw):
    """Paths from a glob pattern or a list of patterns/paths, sorted; error if nothing matches."""
    patterns = [raw] if isinstance(raw, str) else list(raw)
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found:
            raise InputError(pattern, "matches no file (config key 'raw')")
        paths += found
    return list(dict.fromkeys(os.path.normpath(p) for p in paths))


def header_row(path):
    """Typed inventory keywords of one raw file plus ``exposure``, ``path``, ``family``, ``group``."""
    from . import io  # astropy: imported by the first header read, not by the workflow's parse

    path = str(path)
    header, extensions = io.read_headers(path)
    if "SCI" not in extensions:
        raise InputError(path, "no SCI extension (a ramp file needs SCI)")
    sci = extensions["SCI"]
    keywords.check_supported_readout(header, path)
    meta = keywords.require(header, "inventory", path)
    for key in keywords.INVENTORY:
        if key not in meta:
            meta[key] = keywords.optional(header, key)
    if sci.get("NAXIS") != 4:
        raise InputError(path, f"SCI has {sci.get('NAXIS')} dimensions; a ramp needs 4 "
                               "(nints, ngroups, ny, nx)")
    try:
        fam = family(meta["INSTRUME"])
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    row = {"exposure": exposure_name(path), "path": path, "family": fam,
           "group": group_name(header, path)}
    row.update({k: meta[k] for k in keywords.INVENTORY})
    return row


def scan(paths):
    """DataFrame (index: exposure) of :func:`header_row` for every path; names must be unique."""
    return table([header_row(p) for p in paths])


def table(rows):
    """DataFrame (index: exposure) of :func:`header_row` rows; exposure names must be unique."""
    import pandas as pd  # here, not at import: the workflow's cluster jobs use this module without it

    frame = pd.DataFrame(rows, columns=["exposure", "path", "family", "group", *keywords.INVENTORY])
    dup = frame["exposure"][frame["exposure"].duplicated()]
    if len(dup):
        clash = frame.loc[frame["exposure"] == dup.iloc[0], "path"].tolist()
        raise InputError(clash[0], f"exposure name {dup.iloc[0]!r} is also used by {clash[1]} "
                                   "(exposure names come from file names and must be unique)")
    return frame.set_index("exposure", drop=False).sort_index()


#: Reference files the workflow can build for a configuration group (results/reffiles/{group}/).
REFERENCE_PRODUCTS = ("dark", "superbias", "readnoise", "mask")


def reference_products(row):
    """Which reference files a configuration group gets, decided from its inventory keywords.

    Parameters
    ----------
    row : mapping with ``family``, ``NFRAMES``, ``GROUPGAP``, ``READPATT`` (an inventory row)

    Returns
    -------
    dict product -> None (built) or the reason it is not (one sentence, for the summary/report):

    * ``dark``: only from NFRAMES=1, GROUPGAP=0 groups (each group one frame, so the DARK can be
      averaged into any readout pattern, as jwst's dark_current step does);
    * ``superbias``: NIR only (the jwst MIRI chain has no superbias step);
    * ``readnoise``: every group (CDS noise scaled to single-frame groups, RNNFRAME in its header);
    * ``mask``: every group.
    """
    out = {name: None for name in REFERENCE_PRODUCTS}
    nframes, groupgap = int(row["NFRAMES"]), int(row["GROUPGAP"])
    if (nframes, groupgap) != (1, 0):
        out["dark"] = (f"{row['READPATT']} has NFRAMES={nframes}, GROUPGAP={groupgap}: a DARK is made "
                       "only from NFRAMES=1/GROUPGAP=0 darks (every group one frame) so that it can be "
                       "averaged into any readout pattern")
    if row["family"] == "MIRI":
        out["superbias"] = "MIRI: the jwst MIRI detector1 chain has no superbias step"
    return out


def write(table, path, crds=None):
    """Write the inventory as TSV (units in the column names where they have one).

    ``crds`` ({exposure: {'CRDS_CTX': context, 'R_<TYPE>': file name}}, optional) adds the CRDS
    context and the reference chosen for each type as columns (empty for other exposures).
    """
    import pandas as pd

    from . import tables

    out = table.rename(columns={"TFRAME": "TFRAME_s", "TGROUP": "TGROUP_s", "EXPSTART": "EXPSTART_mjd"})
    if crds:
        extra = pd.DataFrame.from_dict(crds, orient="index")
        out = out.join(extra).fillna({c: "" for c in extra.columns})
    tables.write_tsv(out, path)
