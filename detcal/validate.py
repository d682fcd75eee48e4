"""Validation of every raw file and every reference a run will use, before any job runs.

:func:`inventory` is what the workflow calls when it builds the DAG (``workflow/rules/common.smk``):
it scans the raw files (:func:`detcal.inventory.header_row`), checks each one and each
configuration group, checks the explicitly given reference files, and either returns the
inventory table or raises one :class:`InputErrors` that lists **every** problem, one line each,
``<raw file or reference>: <problem>``. Nothing is written.

Checks (headers plus cheap array checks; large arrays are read in sections):

raw file
    readable FITS, not truncated (:func:`detcal.io.read_headers`); the inventory keywords and their
    types (:data:`detcal.keywords.STEP` ``['inventory']``); SCI 4-D and agreeing with NINTS,
    NGROUPS, SUBSIZE1/2 (:class:`detcal.io.RampReader`); subarray placement inside the full frame
    (:class:`detcal.geometry.Geometry`); NOUTPUTS possible for the subarray (NIR: 1 or 4; 4 only
    when the subarray spans every output, i.e. the whole fast-scan width); TFRAME and TGROUP finite
    and > 0 [s]; NGROUPS >= :data:`MIN_NGROUPS`; DETECTOR of the INSTRUME; a floating-point SCI
    holds no NaN/inf (level-1b SCI is integer DN); PIXELDQ/GROUPDQ, when present, integer; the
    file name is ASCII (names are written into FITS HISTORY cards, which are ASCII only; also
    for references).
configuration group (:data:`detcal.keywords.GROUP`)
    the files agree on INSTRUME, TFRAME, TGROUP, subarray placement and orientation (the group key
    already fixes DETECTOR, READPATT, NOUTPUTS, NGROUPS, NFRAMES, GROUPGAP).
reference (only those given in the config; see :func:`reference_problems`)
    exists and readable; REFTYPE, INSTRUME and DETECTOR (when present, not a CRDS wildcard) agree
    with the type it was given as and the raw files that use it; the layout of
    :data:`detcal.io.LAYOUT` (extensions, dimensions, integer DQ); it covers the subarray of every
    raw file of its detector; DARK has enough frames for the science readout; GAIN and READNOISE
    finite and > 0, SATURATION above the SUPERBIAS (or > 0 without one) on most (> half) of the
    pixels each file uses: a few bad pixels occur in real references and are flagged by the
    steps, a reference that is bad almost everywhere would turn every statistic into NaN.
"""

import functools
import hashlib
import math
import os
import pickle

import numpy as np
from astropy.io import fits

from . import inventory as _inventory
from . import io, keywords
from .errors import InputError
from .geometry import MIRI_NOUTPUTS, Geometry
from .multiaccum import frames_per_integration

#: Fewest groups per integration the workflow's products can be made from: the jump step needs
#: two group differences, the DARK builder and the CDS statistics three groups.
MIN_NGROUPS = 3

#: DETECTOR prefix -> INSTRUME (JWST names).
DETECTOR_INSTRUMENT = (("NRC", "NIRCAM"), ("NIS", "NIRISS"), ("NRS", "NIRSPEC"), ("GUIDER", "FGS"),
                       ("MIR", "MIRI"))

#: Keywords the files of one configuration group must share (beyond the group key).
GROUP_AGREE = ("INSTRUME", "TFRAME", "TGROUP", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2",
               "FASTAXIS", "SLOWAXIS")

#: Reference header values that select any detector/instrument (CRDS wildcards).
WILDCARDS = {"", "ANY", "N/A", "MULTIPLE", "GENERIC"}

#: The problem of a raw file or reference whose path is not ASCII (the products name their inputs).
NON_ASCII = ("file name has non-ASCII characters; FITS headers (where products record their inputs) "
             "are ASCII only: rename the file")

#: A reference is refused when more than this fraction of the pixels a file uses is unusable.
MAX_BAD_FRACTION = 0.5


class InputErrors(InputError):
    """Several input problems found together; ``str()`` is one line per problem.

    ``problems``: list of (path, problem). ``path``/``problem`` are those of the first one.
    """

    def __init__(self, problems):
        # one line each (astropy's messages can span lines)
        self.problems = [(str(p), " ".join(str(m).split())) for p, m in problems]
        self.path, self.problem = self.problems[0]
        Exception.__init__(self, "\n".join(f"{p}: {m}" for p, m in self.problems))


def _ext_bitpix(ext_header):
    return int(ext_header.get("BITPIX", 0))


def raw_problems(path, row):
    """Problems of one raw file whose inventory ``row`` could be read (list of messages)."""
    out = [] if str(path).isascii() else [NON_ASCII]
    for key in ("TFRAME", "TGROUP"):
        val = row[key]
        if not (isinstance(val, float) and math.isfinite(val) and val > 0):
            out.append(f"{key}={val} s: must be finite and > 0")
    if row["NGROUPS"] < MIN_NGROUPS:
        out.append(f"NGROUPS={row['NGROUPS']}: the workflow needs at least {MIN_NGROUPS} groups per "
                   "integration (jump: two group differences; DARK and CDS statistics: three groups)")
    if row["NINTS"] < 1:
        out.append(f"NINTS={row['NINTS']}: must be >= 1")
    detector, instrument = str(row["DETECTOR"]).upper(), str(row["INSTRUME"]).upper()
    for prefix, inst in DETECTOR_INSTRUMENT:
        if detector.startswith(prefix) and inst != instrument:
            out.append(f"DETECTOR={row['DETECTOR']} belongs to {inst}, but INSTRUME={row['INSTRUME']}")
    try:
        reader = io.RampReader(path)          # SCI shape vs NINTS/NGROUPS/SUBSIZE, from headers
    except InputError as err:
        return out + [err.problem]
    with reader:
        header, exts = io.read_headers(path)
        try:
            geom = Geometry.from_header(header, reader.shape[2:], path)
        except InputError as err:
            return out + [err.problem]
        out += _noutputs_problems(geom, row)
        for name in ("PIXELDQ", "GROUPDQ"):
            if name in exts and exts[name].get("NAXIS", 0) and _ext_bitpix(exts[name]) < 0:
                out.append(f"{name} is floating point (BITPIX={_ext_bitpix(exts[name])}); DQ arrays "
                           "must be integer")
        if _ext_bitpix(exts["SCI"]) < 0:      # integer SCI cannot hold NaN; a float one may
            bad = 0
            for i in range(reader.shape[0]):
                bad += int(np.count_nonzero(~np.isfinite(reader.read("SCI", ints=i))))
            if bad:
                out.append(f"SCI has {bad} NaN/inf values; level-1b SCI is integer DN (no NaN)")
    return out


def _noutputs_problems(geom, row):
    nout = row["NOUTPUTS"]
    if geom.family == "MIRI":
        return [] if nout in (None, MIRI_NOUTPUTS) else [
            f"NOUTPUTS={nout}: MIRI is read through {MIRI_NOUTPUTS} outputs"]
    if nout not in (1, 4):
        return [f"NOUTPUTS={nout}: an H2RG is read through 1 or 4 outputs"]
    if nout == 4 and not geom.is_full_frame:
        fast = 1 if abs(geom.fastaxis) == 1 else 0      # array axis along the fast-scan direction
        if geom.shape[fast] != geom.full_shape[fast]:
            return [f"NOUTPUTS=4 with SUBARRAY={row['SUBARRAY']}: a 4-output subarray must span the "
                    f"full fast-scan width ({geom.full_shape[fast]} pixels), this one is "
                    f"{geom.shape[fast]} wide"]
    return []


def group_problems(table):
    """(path, problem) for files that disagree with the rest of their configuration group."""
    out = []
    for group, rows in table.groupby("group"):
        if len(rows) < 2:
            continue
        for key in GROUP_AGREE:
            values = rows[key].tolist()
            common = max(set(values), key=values.count)
            if len(set(values)) == 1:
                continue
            if 2 * values.count(common) <= len(values):     # no majority: name every file
                for path, val in zip(rows["path"], values):
                    out.append((path, f"{key}={val}, but the files of configuration group {group} "
                                      f"disagree on {key} ({sorted(set(map(str, values)))})"))
                continue
            for path, val in zip(rows["path"], values):
                if val != common:
                    out.append((path, f"{key}={val} but the other files of configuration group "
                                      f"{group} have {key}={common}"))
    return out


def _cover(ref_header, shape, row):
    """(y0, x0) of ``row``'s subarray inside a reference of image ``shape``, or None."""
    ry = (keywords.optional(ref_header, "SUBSTRT2", 1) or 1) - 1
    rx = (keywords.optional(ref_header, "SUBSTRT1", 1) or 1) - 1
    y0, x0 = row["SUBSTRT2"] - 1 - ry, row["SUBSTRT1"] - 1 - rx
    ny, nx = row["SUBSIZE2"], row["SUBSIZE1"]
    if y0 < 0 or x0 < 0 or y0 + ny > shape[0] or x0 + nx > shape[1]:
        return None
    return y0, x0


def reference_problems(path, key, rows, superbias=None):
    """Problems of the ``key`` reference (config key, e.g. ``'gain'``) used by the raw ``rows``.

    ``superbias``: path of the SUPERBIAS used with a SATURATION reference (or None).
    Returns a list of messages (the caller names the file).
    """
    reftype = io.REFTYPES[key]
    out = [] if str(path).isascii() else [NON_ASCII]
    try:
        header, exts = io.read_headers(path)
    except InputError as err:
        return out + [err.problem]
    found = str(keywords.optional(header, "REFTYPE") or "").upper()
    if found and found != reftype:
        out.append(f"REFTYPE is {found!r}, but it was given as the {reftype} reference ({key})")
    for hkey in ("INSTRUME", "DETECTOR"):
        val = str(keywords.optional(header, hkey) or "").upper()
        want = sorted({str(v).upper() for v in rows[hkey]})
        if val not in WILDCARDS and want and val not in want:
            out.append(f"{hkey}={val} but the raw files that use it have {hkey}={'/'.join(want)}")
    if reftype == "RSCD":
        if "RSCD_GROUP_SKIP" not in exts:
            out.append("RSCD reference needs a RSCD_GROUP_SKIP table")
        return out
    shapes = {}
    for ext, (dtype, ndim, required) in io.LAYOUT[reftype].items():
        if ext not in exts or not exts[ext].get("NAXIS", 0):
            if required:
                out.append(f"{reftype} reference has no {ext} extension (with data)")
            continue
        naxis = int(exts[ext]["NAXIS"])
        if naxis not in (ndim if isinstance(ndim, tuple) else (ndim,)):
            out.append(f"{ext} has {naxis} dimensions; a {reftype} reference needs "
                       f"{' or '.join(map(str, ndim if isinstance(ndim, tuple) else (ndim,)))}")
            continue
        if np.issubdtype(dtype, np.integer) and _ext_bitpix(exts[ext]) < 0:
            out.append(f"{ext} is floating point (BITPIX={_ext_bitpix(exts[ext])}); it must be integer")
        shapes[ext] = tuple(int(exts[ext][f"NAXIS{k}"]) for k in range(naxis, 0, -1))
    if out or not shapes:
        return out
    images = {s[-2:] for s in shapes.values()}
    if len(images) != 1:
        return out + [f"extensions disagree on the image shape: {sorted(images)}"]
    image = images.pop()
    regions, seen = {}, set()
    for _, row in rows.iterrows():
        where = _cover(header, image, row)
        placement = (row["SUBSTRT1"], row["SUBSTRT2"], row["SUBSIZE1"], row["SUBSIZE2"])
        if where is None:
            if placement in seen:           # one line per subarray placement, not per file
                continue
            seen.add(placement)
            out.append(f"covers {image[1]} x {image[0]} pixels, which does not contain the "
                       f"{row['SUBSIZE1']} x {row['SUBSIZE2']} science array at SUBSTRT1/2="
                       f"{row['SUBSTRT1']}/{row['SUBSTRT2']} of {os.path.basename(row['path'])}")
        else:
            regions[where + (row["SUBSIZE2"], row["SUBSIZE1"])] = row
    if out:
        return out
    main = io.MAIN.get(reftype, "SCI")
    if reftype == "DARK":
        out += _dark_problems(header, shapes[main], rows)
    if reftype in ("GAIN", "READNOISE", "SATURATION"):
        out += _value_problems(path, reftype, regions, superbias)
    return out


def _dark_problems(header, shape, rows):
    out = []
    nframes = keywords.optional(header, "NFRAMES", 1) or 1
    groupgap = keywords.optional(header, "GROUPGAP", 0) or 0
    ndark = shape[-3]
    for _, row in rows.drop_duplicates("group").iterrows():
        if (nframes, groupgap) == (1, 0):     # averaged into the science readout, as jwst does
            need = frames_per_integration(row["NGROUPS"], row["NFRAMES"], row["GROUPGAP"])
        else:
            need = row["NGROUPS"]
        if ndark < need:
            out.append(f"DARK has {ndark} groups (NFRAMES={nframes}, GROUPGAP={groupgap}); "
                       f"{row['READPATT']} with NGROUPS={row['NGROUPS']} ({row['group']}) needs {need}")
    return out


def _section(path, ext, region):
    y0, x0, ny, nx = region
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        return np.asarray(hdul[ext].section[y0:y0 + ny, x0:x0 + nx], np.float64)


def _value_problems(path, reftype, regions, superbias):
    out = []
    for region in regions:
        try:
            values = _section(path, "SCI", region)
            floor = 0.0
            if reftype == "SATURATION" and superbias:
                try:
                    floor = _section(superbias, "SCI", region)
                except Exception:       # the SUPERBIAS's own problems are reported on it
                    floor = 0.0
                if np.shape(floor) != values.shape:
                    floor = 0.0
        except Exception as exc:   # damaged data past the headers
            return [f"cannot read SCI ({type(exc).__name__}: {exc})"]
        with np.errstate(invalid="ignore"):
            if reftype == "SATURATION":
                bad = np.isfinite(values) & ~(values > floor)   # NaN: no check (NO_SAT_CHECK)
                what = "at or below the SUPERBIAS" if superbias else "<= 0"
            else:
                bad = ~(np.isfinite(values) & (values > 0))
                what = "non-finite or <= 0"
        nbad = int(bad.sum())
        if nbad > MAX_BAD_FRACTION * bad.size:
            y0, x0, ny, nx = region
            out.append(f"{reftype} is {what} on {nbad} of the {bad.size} pixels of the "
                       f"{nx} x {ny} region at x0/y0={x0}/{y0} the raw files use")
    return out


def expand(raw):
    """Paths of the config's ``raw`` (a glob or a list of globs/paths), sorted, duplicates once.

    Every pattern that matches no file is reported (InputErrors), not only the first.
    """
    patterns = [raw] if isinstance(raw, str) else list(raw)
    if not patterns:
        raise InputErrors([("config key raw", "is empty: give a glob or a list of raw files")])
    problems, paths = [], []
    for pattern in patterns:
        try:
            paths += _inventory.expand_inputs(pattern)
        except InputError as err:
            problems.append((err.path, err.problem))
    if problems:
        raise InputErrors(problems)
    return list(dict.fromkeys(paths))


def inventory(paths, references=(), cache=None):
    """Inventory table of ``paths`` after checking them and the ``references``; or InputErrors.

    Parameters
    ----------
    paths : raw file paths (already expanded from the config's globs)
    references : iterable of (path, key, detector, where): a reference given in the config
        (``key`` a :data:`detcal.io.REFTYPES` key, ``where`` where it was given, e.g.
        ``'config references: NRCA1: gain'``, for the message). A SATURATION is checked against
        the SUPERBIAS given for the same detector.
    cache : path of a :class:`RawCheckCache` file (None: no cache). The workflow parses its
        Snakefile in the main process, for ``--report``, and in every cluster job; with the cache
        each raw file is read and checked once per change (size, mtime) instead of at each parse.

    Returns
    -------
    pandas.DataFrame as :func:`detcal.inventory.scan`.

    Raises
    ------
    InputErrors : every problem found, one (path, problem) each.
    """
    problems, rows, rejected = [], [], set()
    store = RawCheckCache(cache)
    for path in paths:
        row, found = store.get(path)
        if row is None:
            try:
                row = _inventory.header_row(path)
            except InputError as err:
                row, found = {}, [(err.path, err.problem)]
            else:
                found = [(path, p) for p in raw_problems(path, row)]
            store.put(path, row, found)
        problems += found
        if row:
            rows.append(row)
            if found:
                rejected.add(row["path"])
    store.save()
    try:
        table = _inventory.table(rows)
    except InputError as err:               # exposure names that clash
        raise InputErrors(problems + [(err.path, err.problem)]) from None
    # groups and references are checked against the files that passed their own checks
    table_ok = table[~table["path"].isin(rejected)]
    problems += group_problems(table_ok)
    references = list(references)
    superbias = {det: p for p, k, det, _ in references if k == "superbias"}
    for path, key, detector, where in references:
        if not os.path.exists(path):
            problems.append((path, f"file does not exist ({where})"))
            continue
        rows = table_ok[table_ok["DETECTOR"] == detector]
        sb = superbias.get(detector) if key == "saturation" else None
        if sb and not os.path.exists(sb):
            sb = None
        problems += [(path, f"{p} ({where})")
                     for p in reference_problems(path, key, rows, superbias=sb)]
    if problems:
        raise InputErrors(dict.fromkeys(problems))
    return table


class RawCheckCache:
    """Inventory row and problems of each raw file, kept between runs in one pickle file.

    An entry is reused while the file's absolute path, size and modification time are those it
    was made from, and while the checking code is the same (:data:`_CODE_KEY`: a digest of the
    modules that read and check raw files). ``path=None`` is a cache that keeps nothing.
    Written atomically; a damaged or foreign cache file is ignored (rebuilt).
    """

    def __init__(self, path=None):
        self.path = path
        self._entries, self._dirty = {}, False
        if path and os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    saved = pickle.load(f)
                if saved.get("code") == _code_key():
                    self._entries = saved["entries"]
            except Exception:  # noqa: BLE001 (any unreadable cache is rebuilt)
                self._entries = {}

    @staticmethod
    def _stamp(path):
        st = os.stat(path)
        return os.path.abspath(path), st.st_size, st.st_mtime_ns

    def get(self, path):
        """(row, problems) cached for ``path`` as it is now, or (None, None)."""
        try:
            stamp = self._stamp(path)
        except OSError:
            return None, None
        entry = self._entries.get(stamp[0])
        if entry is None or entry[0] != stamp:
            return None, None
        return dict(entry[1]), list(entry[2])

    def put(self, path, row, problems):
        """Remember (row, problems) for ``path`` as it is now (size and modification time)."""
        try:
            stamp = self._stamp(path)
        except OSError:
            return
        self._entries[stamp[0]] = (stamp, dict(row), list(problems))
        self._dirty = True

    def save(self):
        """Write the cache file if anything changed; a cache that cannot be written is skipped."""
        if not (self.path and self._dirty):
            return
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with io.atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                pickle.dump({"code": _code_key(), "entries": self._entries}, f)
        except (OSError, io.WriteError):   # a cache that cannot be written costs time, not results
            pass
        self._dirty = False


@functools.cache
def _code_key():
    """Digest of the modules whose code decides an inventory row and a raw file's problems."""
    from . import geometry
    digest = hashlib.sha1()
    for module in (io, keywords, geometry, _inventory, __import__(__name__, fromlist=["_"])):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def config_references(references):
    """(path, key, detector, where) of every reference file the config gives explicitly.

    ``references``: the config's ``references`` value (``'crds'``, or {DETECTOR: {key: path,
    crds: bool, steps: {step: {key: path}}}}). CRDS choices are not listed (the CRDS client
    checks them).
    """
    out = []
    if not isinstance(references, dict):
        return out
    for detector, given in references.items():
        for key, path in (given or {}).items():
            if key in io.REFTYPES and path:
                out.append((str(path), key, detector, f"config references: {detector}: {key}"))
        for step, keys in ((given or {}).get("steps") or {}).items():
            for key, path in (keys or {}).items():
                if key in io.REFTYPES and path:
                    out.append((str(path), key, detector,
                                f"config references: {detector}: steps: {step}: {key}"))
    return out


def _lookup(doc, path):
    for key in path:
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            raise KeyError(key)
    return doc


def config_schema(schema_path):
    """The config schema: the YAML file completed with the blocks the step descriptors define.

    ``workflow/schemas/config.schema.yaml`` leaves ``steps`` (on/off), ``parameters`` (per step,
    with defaults), the ``keep`` step names, ``references.<DETECTOR>.steps`` and the reference
    types a step brings to the registered steps (:func:`detcal.steps.descriptor.schema_blocks`),
    so a step that is not registered is an unknown key. Returns the schema as a dict.
    """
    import yaml

    from .steps import descriptor

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    blocks = descriptor.schema_blocks()
    props = schema["properties"]
    props["steps"]["properties"] = blocks["steps"]
    props["parameters"]["properties"] = blocks["parameters"]
    props["keep"]["items"]["enum"] = blocks["keep"]
    reference_set = schema["definitions"]["reference_set"]["properties"]
    reference_set["steps"]["properties"] = blocks["reference_steps"]
    reference_set.update(blocks["reference_types"])
    return schema


def config_problems(config, schema_path, configfiles=()):
    """One line per schema violation of ``config``: the file, the key, the value and the problem.

    A short replacement for the JSON-schema dump Snakemake prints (unknown keys: their names; a
    wrong value: the key path, the value and what the schema allows). ``schema_path``: the schema
    file (completed by :func:`config_schema`) or an already completed schema dict.
    ``configfiles``: the YAML files the config was merged from; each line names the last one that
    sets the key.
    """
    import jsonschema
    import yaml

    schema = schema_path if isinstance(schema_path, dict) else config_schema(schema_path)
    docs = []
    for name in configfiles:
        try:
            with open(name) as fh:
                docs.append((str(name), yaml.safe_load(fh) or {}))
        except (OSError, yaml.YAMLError):
            continue
    lines = []
    errors = jsonschema.Draft7Validator(schema).iter_errors(config)
    for err in sorted(errors, key=lambda e: list(map(str, e.path))):
        path = list(err.path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            for key in extra:
                where = _where(docs, path + [key])
                lines.append(f"{where}unknown config key {':'.join(map(str, path + [key]))!s} "
                             f"(value {err.instance[key]!r}); allowed here: {', '.join(allowed)}")
            continue
        where = _where(docs, path)
        value = repr(err.instance)
        value = value if len(value) <= 80 else value[:77] + "..."
        problem = err.message if len(err.message) <= 200 else err.message[:197] + "..."
        if err.validator in ("oneOf", "anyOf"):
            problem = "not one of the allowed forms: " + "; ".join(
                str(s.get("type", s)) for s in err.validator_value)
        lines.append(f"{where}config key {':'.join(map(str, path)) or '(top level)'} = {value}: {problem}")
    return lines


def config_source(configfiles, path):
    """``'<file>: '`` of the last of ``configfiles`` that sets the key ``path`` (list), or ''."""
    docs = []
    for name in configfiles:
        try:
            with open(name) as fh:
                docs.append((str(name), __import__("yaml").safe_load(fh) or {}))
        except (OSError, ValueError):
            continue
    return _where(docs, path)


def _where(docs, path):
    for name, doc in reversed(docs):
        try:
            _lookup(doc, path)
            return f"{name}: "
        except KeyError:
            continue
    return ""


def configfile_problem(path):
    """The problem of a ``--configfile`` that cannot be read as a YAML mapping, or None.

    Snakemake 9 loads ``--configfile`` files itself, before the Snakefile runs, and on a YAML
    syntax error prints only "Config file is not valid JSON or YAML" (no name, no line). This
    says ``"<path>: line L, column C: <problem>"``; ``python -m detcal.validate --configfile``
    runs it.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        return f"{path}: cannot read the config file: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        return f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = ": ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        return f"{path}: not valid YAML: {where}{what or exc}"
    if doc is not None and not isinstance(doc, dict):
        return f"{path}: a config file must be a YAML mapping of keys (got a {type(doc).__name__})"
    return None


def main(argv=None):
    """``python -m detcal.validate [RAW...] [--reference DETECTOR:key=path ...] [--configfile F ...]``.

    Checks raw files (globs allowed) and references as the workflow does before any job, and
    config files for YAML syntax (file, line, column); prints one line per problem to stderr and
    returns 1, or a one-line summary and 0. ``--schema``: prints the complete config schema (the
    schema file with the blocks of the registered steps, :func:`config_schema`) as YAML.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m detcal.validate", description=main.__doc__)
    parser.add_argument("raw", nargs="*", help="raw level-1b files or glob patterns")
    parser.add_argument("--reference", action="append", default=[], metavar="DETECTOR:key=path")
    parser.add_argument("--configfile", action="append", default=[], metavar="FILE",
                        help="check that a config file is valid YAML (Snakemake does not name it)")
    parser.add_argument("--schema", action="store_true",
                        help="print the complete config schema (with the steps' blocks) as YAML")
    args = parser.parse_args(argv)
    if args.schema:
        import yaml

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "workflow", "schemas", "config.schema.yaml")
        print(yaml.safe_dump(config_schema(path), sort_keys=False, width=100), end="")
        return 0
    if not (args.raw or args.configfile):
        parser.error("give raw files (globs) and/or --configfile FILE")
    bad = [line for line in map(configfile_problem, args.configfile) if line]
    for line in bad:
        print(f"error: {line}", file=sys.stderr)
    if bad:
        return 1
    if not args.raw:
        print(f"{len(args.configfile)} config file(s): valid YAML")
        return 0
    from . import steps  # noqa: F401  (registers the reference types step modules bring)

    refs = []
    try:
        for spec in args.reference:
            detector, _, rest = spec.partition(":")
            key, _, path = rest.partition("=")
            if not (detector and key in io.REFTYPES and path):
                raise InputError(spec, f"--reference must be DETECTOR:key=path with key one of "
                                       f"{', '.join(io.REFTYPES)}")
            refs.append((path, key, detector, f"given as --reference {detector}:{key}"))
        table = inventory(expand(args.raw), refs)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(table)} raw files in {table['group'].nunique()} configuration groups: no problems")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
