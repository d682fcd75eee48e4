"""Reference files from CRDS: the crds client's best references for an exposure's headers.

``references: crds`` in the workflow config (for every detector, or per detector) resolves every
reference type that is not given explicitly through the ``crds`` package, exactly as the jwst
pipeline does (``crds.getreferences`` on the exposure's selection keywords), honouring the crds
client's environment:

* ``CRDS_PATH``: the local cache (mappings, references, config);
* ``CRDS_SERVER_URL``: the server; when it cannot be reached the cache's last server
  configuration is used, so a populated cache works offline;
* ``CRDS_CONTEXT``: the context (``jwst_1234.pmap``); otherwise the server's (or cached) one.

The selection keywords are read from the primary header (:data:`PARAMETERS`: the datamodel name
CRDS rmaps select on -> FITS keyword). Any failure (no cache and no server, no rule for a type,
a type the context does not know) becomes one :class:`detcal.errors.InputError` naming the
exposure and what to set, never a traceback; crds' own fatal errors (``sys.exit``) are caught.

``crds`` is an optional dependency (``pip install crds``); it is imported only when used.
"""

import functools
import os

from . import io, keywords
from .errors import InputError

#: CRDS (datamodel) parameter -> primary-header keyword of a level-1b or product file.
PARAMETERS = {
    "META.TELESCOPE": "TELESCOP", "META.INSTRUMENT.NAME": "INSTRUME",
    "META.INSTRUMENT.DETECTOR": "DETECTOR", "META.INSTRUMENT.FILTER": "FILTER",
    "META.INSTRUMENT.PUPIL": "PUPIL", "META.INSTRUMENT.BAND": "BAND",
    "META.INSTRUMENT.CHANNEL": "CHANNEL", "META.INSTRUMENT.GRATING": "GRATING",
    "META.INSTRUMENT.CORONAGRAPH": "CORONMSK",
    "META.EXPOSURE.TYPE": "EXP_TYPE", "META.EXPOSURE.READPATT": "READPATT",
    "META.EXPOSURE.NGROUPS": "NGROUPS", "META.EXPOSURE.NINTS": "NINTS",
    "META.EXPOSURE.NFRAMES": "NFRAMES", "META.EXPOSURE.GROUPGAP": "GROUPGAP",
    "META.EXPOSURE.NOUTPUTS": "NOUTPUTS",
    "META.SUBARRAY.NAME": "SUBARRAY", "META.SUBARRAY.XSTART": "SUBSTRT1",
    "META.SUBARRAY.YSTART": "SUBSTRT2", "META.SUBARRAY.XSIZE": "SUBSIZE1",
    "META.SUBARRAY.YSIZE": "SUBSIZE2", "META.SUBARRAY.FASTAXIS": "FASTAXIS",
    "META.SUBARRAY.SLOWAXIS": "SLOWAXIS",
    "META.OBSERVATION.DATE": "DATE-OBS", "META.OBSERVATION.TIME": "TIME-OBS",
}

#: Environment variables of the crds client that a resolution depends on.
ENVIRONMENT = ("CRDS_PATH", "CRDS_SERVER_URL", "CRDS_CONTEXT")


def parameters(header):
    """CRDS selection parameters {datamodel name: value} from a primary header.

    DATE-OBS/TIME-OBS default to the exposure start (EXPSTART, MJD) when absent.
    """
    out = {}
    for name, key in PARAMETERS.items():
        val = header.get(key)
        if hasattr(val, "item"):            # numpy scalars (an inventory row) -> Python
            val = val.item()
        if val is not None and val != "" and val == val:   # not NaN
            out[name] = val
    if "META.OBSERVATION.DATE" not in out:
        mjd = keywords.optional(header, "EXPSTART")
        if mjd:
            from astropy.time import Time
            date, time = Time(mjd, format="mjd").isot.split("T")
            out["META.OBSERVATION.DATE"], out["META.OBSERVATION.TIME"] = date, time
    return out


def _crds_call(path, what, func, *args, **kwargs):
    """Run a crds function, turning every failure (exceptions, crds' sys.exit) into InputError."""
    try:
        import crds  # noqa: F401
    except ImportError:
        raise InputError(path, f"{what}: the crds package is not installed (pip install crds)") from None
    env = ", ".join(f"{k}={os.environ.get(k, '<unset>')}" for k in ENVIRONMENT)
    try:
        return func(*args, **kwargs)
    except (Exception, SystemExit) as exc:
        raise InputError(path, f"{what} failed ({type(exc).__name__}: {exc}); check the CRDS cache and "
                               f"server ({env})") from None


@functools.lru_cache(maxsize=None)
def context_name():
    """The CRDS context the client uses now (CRDS_CONTEXT, else the server's or cached one)."""
    import crds
    return _crds_call("<crds>", "finding the CRDS context", crds.get_context_name, "jwst")


def best_references(path, keys, header=None):
    """Local paths of the best references of exposure ``path`` for config ``keys``.

    Parameters
    ----------
    path : str          a level-1b (or RampModel-layout) file; only its primary header is read
    keys : iterable     config keys of :data:`detcal.io.REFTYPES` (``'dark'``, ``'mask'``, ...)
    header : mapping or None   the exposure's keywords when the file is not there yet (the
                        workflow's inventory row of a demo exposure); None: read ``path``

    Returns
    -------
    dict key -> local file path (in the CRDS cache)

    Raises
    ------
    InputError
        naming ``path`` when crds cannot resolve a type (no cache, no server, no match, N/A).
    """
    keys = tuple(keys)
    if not keys:
        return {}
    if header is None:
        header, _ = io.read_headers(path)
    return dict(_best(str(path), tuple(sorted(parameters(header).items())), keys))


@functools.lru_cache(maxsize=None)
def _best(path, params, keys):
    import crds
    reftypes = [io.REFTYPES[k].lower() for k in keys]
    found = _crds_call(path, f"CRDS best references ({', '.join(reftypes)})", crds.getreferences,
                       dict(params), reftypes=reftypes, observatory="jwst")
    out = []
    for key, reftype in zip(keys, reftypes):
        ref = found.get(reftype)
        if not ref or str(ref).upper().startswith("NOT FOUND") or str(ref).upper() == "N/A" \
                or not os.path.exists(str(ref)):
            raise InputError(path, f"CRDS context {context_name()} has no {reftype.upper()} reference "
                                   f"for this exposure ({ref}); give it explicitly under "
                                   f"references: <DETECTOR>: {key}")
        out.append((key, str(ref)))
    return tuple(out)


def provenance(paths):
    """{FITS keyword: value} recording the CRDS references among ``paths`` in a product, as jwst
    writes them: ``R_<TYPE>`` = ``crds://<file name>`` (TYPE: the file's REFTYPE, cut to 6
    characters) for every file in the CRDS cache (under ``CRDS_PATH``) and ``CRDS_CTX`` (the
    context); {} when none is (so nothing is imported or asked when CRDS is not in use)."""
    root = os.environ.get("CRDS_PATH")
    if not root:
        return {}
    root = os.path.realpath(root) + os.sep
    cards = {}
    for p in paths:
        p = str(p)
        if os.path.realpath(p).startswith(root) and os.path.exists(p):
            reftype = str(io.read_headers(p)[0].get("REFTYPE", "")).strip().upper()
            if reftype:
                cards[f"R_{reftype[:6]}"] = f"crds://{os.path.basename(p)}"
    if cards:
        cards["CRDS_CTX"] = context_name()
    return cards
