"""A small offline CRDS cache built from our own reference files (for certify and bestrefs tests).

:func:`build_cache` lays out ``root`` as a CRDS cache (``CRDS_PATH``) that the crds client uses
without a server:

    config/jwst/server_config                  cached server info (context, mode 'local')
    mappings/jwst/jwst_<n>.pmap                the context: one .imap per instrument
    mappings/jwst/jwst_<inst>_<n>.imap         one .rmap per reference type
    mappings/jwst/jwst_<inst>_<type>_<n>.rmap  Match on the real rmap's parkeys, then UseAfter
    references/jwst/<inst>/<name>.fits         the references (copied, CRDS-style names)

The parkeys of each rmap are those of the rmap/spec the crds package ships for that instrument and
type, so the selection (and certify's required keywords) are the operational ones. Mapping
checksums are written with crds' own tool. :func:`crds_env` gives the environment for a process
(CRDS_PATH, an unreachable CRDS_SERVER_URL, CRDS_CONTEXT).
"""

import ast
import os
import pprint
import shutil
from contextlib import contextmanager

from astropy.io import fits

CONTEXT = "jwst_0001.pmap"
#: A server that is never reached: the client falls back to the cache's server_config.
OFFLINE_SERVER = "https://crds-offline.invalid"


def _spec_parkeys(instrument, filekind):
    """parkey tuple of the rmap/spec crds ships for ``instrument``/``filekind`` (lower case)."""
    import crds
    specs = os.path.join(os.path.dirname(crds.__file__), "jwst", "specs")
    for ext in (".rmap", ".spec"):
        path = os.path.join(specs, f"{instrument}_{filekind}{ext}")
        if os.path.exists(path):
            text = open(path).read()
            if ext == ".rmap":
                text = text.split("selector")[0].split("=", 1)[1]
            header = ast.literal_eval(text.strip())
            return tuple(tuple(p) for p in header["parkey"])
    raise ValueError(f"crds has no rmap/spec for {instrument} {filekind}")


#: rmap parkey -> primary header keyword of our files.
_PARKEY_KEYWORD = {"META.INSTRUMENT.DETECTOR": "DETECTOR", "META.EXPOSURE.READPATT": "READPATT",
                   "META.SUBARRAY.NAME": "SUBARRAY", "META.EXPOSURE.TYPE": "EXP_TYPE",
                   "META.EXPOSURE.NGROUPS": "NGROUPS", "META.EXPOSURE.NINTS": "NINTS",
                   "META.INSTRUMENT.FILTER": "FILTER", "META.INSTRUMENT.PUPIL": "PUPIL",
                   "META.EXPOSURE.NOUTPUTS": "NOUTPUTS", "META.EXPOSUIRE.NOUTPUTS": "NOUTPUTS",
                   "META.INSTRUMENT.BAND": "BAND", "META.INSTRUMENT.CHANNEL": "CHANNEL"}


def _match_value(header, parkey):
    key = _PARKEY_KEYWORD.get(parkey)
    val = header.get(key) if key else None
    return "N/A" if val in (None, "") else str(val)


def _write_mapping(path, header, selector_text):
    with open(path, "w") as f:
        f.write("header = " + pprint.pformat(header) + "\n\nselector = " + selector_text + "\n")


def build_cache(root, references, context=CONTEXT):
    """Install ``references`` (paths of our reference files) in a CRDS cache at ``root``.

    Returns {source path: CRDS file name} (``jwst_<inst>_<type>_<nnnn>.fits``).
    """
    from crds.refactoring import checksum
    root = str(root)
    maps = os.path.join(root, "mappings", "jwst")
    os.makedirs(maps, exist_ok=True)
    by_kind, names = {}, {}
    for i, src in enumerate(references):
        h = fits.getheader(src)
        inst, kind = h["INSTRUME"].strip().lower(), h["REFTYPE"].strip().lower()
        name = f"jwst_{inst}_{kind}_{i + 1:04d}.fits"
        dest = os.path.join(root, "references", "jwst", inst, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
        names[str(src)] = name
        by_kind.setdefault((inst, kind), []).append((name, h))
    imaps = {}
    for (inst, kind), files in sorted(by_kind.items()):
        parkeys = _spec_parkeys(inst, kind)
        match = {}
        for name, h in files:
            values = tuple(_match_value(h, p) for p in parkeys[0])
            date, time = h["USEAFTER"].split("T")
            match.setdefault(values, {})[f"{date} {time}"] = name
        rmap = f"jwst_{inst}_{kind}_0001.rmap"
        uses_date = len(parkeys) > 1
        lines = []
        for values, dates in sorted(match.items()):
            key = repr(values if len(values) > 1 else values[0])
            if uses_date:
                inner = ", ".join(f"{d!r} : {n!r}" for d, n in sorted(dates.items()))
                lines.append(f"    {key} : UseAfter({{{inner}}}),")
            else:
                lines.append(f"    {key} : {sorted(dates.items())[-1][1]!r},")
        header = {"classes": ("Match", "UseAfter") if uses_date else ("Match",),
                  "derived_from": "detcal test cache", "file_ext": ".fits", "filekind": kind.upper(),
                  "filetype": kind.upper(), "instrument": inst.upper(), "mapping": "REFERENCE",
                  "name": rmap, "observatory": "JWST", "parkey": parkeys, "sha1sum": "0",
                  "suffix": kind, "text_descr": f"{kind} (detcal test cache)"}
        _write_mapping(os.path.join(maps, rmap), header, "Match({\n" + "\n".join(lines) + "\n})")
        imaps.setdefault(inst, {})[kind.upper()] = rmap
    for inst, rmaps in imaps.items():
        name = f"jwst_{inst}_0001.imap"
        header = {"derived_from": "detcal test cache", "instrument": inst.upper(), "mapping": "INSTRUMENT",
                  "name": name, "observatory": "JWST", "parkey": ("META.EXPOSURE.TYPE",), "sha1sum": "0"}
        _write_mapping(os.path.join(maps, name), header, pprint.pformat(rmaps))
    header = {"derived_from": "detcal test cache", "mapping": "PIPELINE", "name": context,
              "observatory": "JWST", "parkey": ("META.INSTRUMENT.NAME",), "sha1sum": "0"}
    selector = {inst.upper(): f"jwst_{inst}_0001.imap" for inst in imaps}
    _write_mapping(os.path.join(maps, context), header, pprint.pformat(selector))
    for fname in os.listdir(maps):
        checksum.update_checksum(os.path.join(maps, fname))
    cfg = os.path.join(root, "config", "jwst")
    os.makedirs(cfg, exist_ok=True)
    info = {"observatory": "jwst", "operational_context": context, "edit_context": context,
            "build_context": context, "last_synced": "2026-01-01 00:00:00", "reference_url": {},
            "crds_version": {"str": "test"}, "bad_files": "", "bad_files_list": [], "force_remote_mode": False,
            "download_metadata": {}, "mappings": {}}
    with open(os.path.join(cfg, "server_config"), "w") as f:
        f.write(pprint.pformat(info))
    return names


def crds_env(root, context=CONTEXT):
    """Environment variables that point the crds client at the cache ``root``, offline."""
    return {"CRDS_PATH": str(root), "CRDS_SERVER_URL": OFFLINE_SERVER, "CRDS_CONTEXT": context,
            "CRDS_OBSERVATORY": "jwst"}


@contextmanager
def crds_environment(root, context=CONTEXT):
    """Set :func:`crds_env` in ``os.environ`` (and reset crds' cached config) for a block."""
    import crds.core.heavy_client as hc
    from crds.core import config, utils
    env = crds_env(root, context)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    utils.clear_function_caches()
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        utils.clear_function_caches()
        del hc, config
