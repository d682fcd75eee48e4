"""Header keywords: their types, which ones each step reads, and the configuration-group keys.

Which primary-header keywords a step needs is declared by the step (its descriptor's
``keywords``, added to :data:`BASE`; :mod:`detcal.steps.descriptor`) and read here as
``STEP[step]``. Readers call :func:`require` with the step name; a missing or mistyped keyword
becomes an :class:`~detcal.errors.InputError` naming the file and the keyword.
"""

from .errors import InputError

#: Python type of every keyword detcal reads.
TYPES = {
    "TELESCOP": str, "INSTRUME": str, "DETECTOR": str, "EXP_TYPE": str, "READPATT": str,
    "SUBARRAY": str, "CORONMSK": str,
    "NINTS": int, "NGROUPS": int, "NFRAMES": int, "GROUPGAP": int, "NOUTPUTS": int,
    "INTSTART": int, "INTEND": int, "DRPFRMS1": int,
    "SUBSTRT1": int, "SUBSTRT2": int, "SUBSIZE1": int, "SUBSIZE2": int,
    "FASTAXIS": int, "SLOWAXIS": int,
    "TFRAME": float, "TGROUP": float, "EXPSTART": float, "EFFINTTM": float, "EFFEXPTM": float,
    "ZEROFRAM": bool,
}

#: Every ramp needs these to be read at all (shape checks, subarray placement).
BASE = ("INSTRUME", "DETECTOR", "NINTS", "NGROUPS", "NFRAMES", "GROUPGAP",
        "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")

#: Keywords a raw file must carry (the inventory). The keywords each detector1 step reads
#: (``STEP[step]``: BASE plus the step descriptor's ``keywords``) and the steps' status keywords
#: (``CAL_STEP[step]``: S_DQINIT, ..., as the JWST pipeline writes them) are derived from the step
#: descriptors (:mod:`detcal.steps.descriptor`) when read: see :func:`__getattr__`.
RAW_REQUIRED = BASE + ("READPATT", "NOUTPUTS", "EXP_TYPE", "TFRAME", "TGROUP")


def __getattr__(name):
    """``STEP`` ({'inventory': ..., step: keywords}) and ``CAL_STEP`` ({step: S_* keyword}),
    derived from the registered step descriptors each time they are read."""
    if name not in ("STEP", "CAL_STEP"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .steps import descriptor  # the steps import this module; their table is read when asked

    if name == "CAL_STEP":
        return {n: d.cal_step for n, d in descriptor.DESCRIPTORS.items()}
    return {"inventory": RAW_REQUIRED,
            **{n: BASE + tuple(d.keywords) for n, d in descriptor.DESCRIPTORS.items()}}


#: The keywords that define a detector configuration group: files that differ in any of them are
#: never combined (darks, noise statistics). CORONMSK joins when present.
GROUP = ("DETECTOR", "SUBARRAY", "READPATT", "NOUTPUTS", "NGROUPS", "NFRAMES", "GROUPGAP")
GROUP_OPTIONAL = ("CORONMSK",)

#: Columns of results/inventory.tsv after ``exposure``, ``path`` and ``group``.
INVENTORY = ("INSTRUME", "DETECTOR", "EXP_TYPE", "READPATT", "SUBARRAY", "NOUTPUTS", "NINTS",
             "NGROUPS", "NFRAMES", "GROUPGAP", "TFRAME", "TGROUP", "EXPSTART", "FASTAXIS",
             "SLOWAXIS", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")

#: Primary keywords every reference file we write carries (JWST ReferenceFileModel requirements
#: plus the subarray keywords); DARK and RESET add their readout keywords.
REFERENCE = ("REFTYPE", "DESCRIP", "AUTHOR", "PEDIGREE", "USEAFTER", "TELESCOP", "INSTRUME",
             "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")
REFERENCE_EXTRA = {"DARK": ("READPATT", "NFRAMES", "NGROUPS", "GROUPGAP"),
                   "RESET": ("READPATT", "NINTS", "NGROUPS")}   # jwst reset reads NINTS/NGROUPS

#: CRDS selection keywords a reference gets when its inputs do not fix them: the CRDS wildcard
#: values (N/A: not a selection criterion, ANY: every readout pattern). The operational rmaps of
#: READNOISE, MASK, GAIN, LINEARITY, SATURATION (and NIRISS/MIRI DARK) select on FILTER, NIRCam
#: SUPERBIAS and MIRI MASK/DARK/RESET on READPATT, MIRI GAIN on BAND (crds certify requires them).
REFERENCE_DEFAULTS = {"FILTER": "N/A", "READPATT": "ANY"}
REFERENCE_DEFAULTS_MIRI = {"BAND": "N/A"}

#: EXP_TYPE of dark exposures per INSTRUME (written to a DARK whose inputs carry none; the NIRCam
#: DARK rmap selects on it).
DARK_EXP_TYPE = {"NIRCAM": "NRC_DARK", "NIRISS": "NIS_DARK", "NIRSPEC": "NRS_DARK", "FGS": "FGS_DARK",
                 "MIRI": "MIR_DARKIMG"}

def value(header, key, path, needed_by=None):
    """Return ``header[key]`` converted to its type in :data:`TYPES`.

    Raises :class:`InputError` if the keyword is absent, empty, or of the wrong type.
    """
    why = f" (needed by {needed_by})" if needed_by else ""
    if key not in header or header[key] is None or header[key] == "":
        raise InputError(path, f"missing header keyword {key}{why}")
    raw = header[key]
    kind = TYPES.get(key, str)
    try:
        if kind is int:
            if isinstance(raw, bool) or float(raw) != int(float(raw)):
                raise ValueError
            return int(float(raw))
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            raise ValueError
        return str(raw).strip()
    except (TypeError, ValueError):
        raise InputError(path, f"header keyword {key}={raw!r} is not a valid {kind.__name__}{why}")


def check_supported_readout(header, path):
    """InputError for readouts detcal does not reduce yet (NIRSpec IRS2: READPATT NRSIRS2*)."""
    readpatt = optional(header, "READPATT") or ""
    if "IRS2" in readpatt.upper():
        raise InputError(path, f"READPATT={readpatt}: the NIRSpec IRS2 readout (interleaved reference "
                               "pixels, 3200 columns per row in the raw frame) is not supported yet; "
                               "reduce it with the jwst pipeline (refpix IRS2 algorithm) instead")


def require(header, step, path):
    """Check that ``header`` has every keyword ``step`` needs; return them as a typed dict."""
    table = __getattr__("STEP")
    if step not in table:
        raise KeyError(f"unknown step {step!r}; known: {sorted(table)}")
    return {key: value(header, key, path, needed_by=step) for key in table[step]}


def optional(header, key, default=None):
    """Typed value of an optional keyword, or ``default`` when absent or unusable."""
    try:
        return value(header, key, "<header>")
    except InputError:
        return default


def group_id(meta):
    """Name of the configuration group of a file, from its typed keyword dict.

    Example: ``NRCA1-FULL-RAPID-4amp-10g`` (readout keywords spelled out only when not 1/0 so
    that the name stays readable; every GROUP keyword is part of it).
    """
    parts = [meta["DETECTOR"], meta["SUBARRAY"], meta["READPATT"], f"{meta['NOUTPUTS']}amp",
             f"{meta['NGROUPS']}g"]
    if meta["NFRAMES"] != 1 or meta["GROUPGAP"] != 0:
        parts.append(f"f{meta['NFRAMES']}gap{meta['GROUPGAP']}")
    coron = meta.get("CORONMSK")
    if coron and coron.upper() not in ("NONE", "N/A"):
        parts.append(coron)
    return "-".join(str(p) for p in parts).replace(" ", "_")
