"""Reading and writing ramps and reference files in the JWST FITS layouts.

Ramps: level-1b ``uncal`` (SCI uint16) on input, the RampModel layout (SCI float32, PIXELDQ
uint32, GROUPDQ uint8) for every product; a ZEROFRAME extension (float32 (nints, ny, nx)) and the
INT_TIMES and GROUP tables are kept from the raw file through every product (the ZEROFRAME is
corrected by saturation, superbias, refpix and linearity as jwst does when ZEROFRAM = T:
:meth:`Ramp.correct_zeroframe`). Reference files: MASK, SATURATION, SUPERBIAS,
LINEARITY, DARK (3-D, MIRI 4-D), GAIN, READNOISE, RSCD, RESET (MIRI 4-D) in the layouts of
the matching stdatamodels models. Every file written goes to a temporary name first and is
renamed into place, so a failed write never leaves a partial file; it carries its provenance
(detcal version, step, parameters, input names) in HISTORY cards.
"""

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.io.fits.verify import VerifyWarning

from . import __version__, dqflags, keywords
from .errors import InputError
from .geometry import Geometry


# --------------------------------------------------------------------------------------------
# Ramps
# --------------------------------------------------------------------------------------------
@dataclass
class Ramp:
    """A ramp in memory.

    data : float32 (nints, ngroups, ny, nx) [DN]
    pixeldq : uint32 (ny, nx)
    groupdq : uint8 (nints, ngroups, ny, nx)
    header : primary header (all metadata keywords live there)
    tables : extra HDUs carried through unchanged (INT_TIMES, GROUP, ...)
    zeroframe : float32 (nints, ny, nx) [DN] or None: the level-1b ZEROFRAME (first frame of each
        integration, 0 where it has no value); written back as the ZEROFRAME extension
    """

    data: np.ndarray
    pixeldq: np.ndarray
    groupdq: np.ndarray
    header: fits.Header
    path: str = "<memory>"
    tables: list = field(default_factory=list)
    zeroframe: np.ndarray = None

    def meta(self, step="inventory"):
        """Typed dict of the keywords ``step`` needs (see :mod:`detcal.keywords`)."""
        return keywords.require(self.header, step, self.path)

    def get(self, key, default=None):
        """Typed optional keyword."""
        return keywords.optional(self.header, key, default)

    @property
    def has_zeroframe(self):
        """True when the ramp carries a ZEROFRAME that jwst's steps correct (header ZEROFRAM = T)."""
        return self.zeroframe is not None and self.get("ZEROFRAM") is True

    def correct_zeroframe(self, correct):
        """Apply a step's correction to the ZEROFRAME, as jwst 3.0 does, when there is one.

        ``correct``: function float32 (nints, ny, nx) [DN] -> array of that shape. jwst corrects
        the ZEROFRAME only when ZEROFRAM = T (:attr:`has_zeroframe`), and a 0 means "no value"
        (never read, or flagged by saturation) and stays 0 (jwst's ``wh_zero`` in superbias,
        refpix and linearity). Returns True if the ZEROFRAME was corrected.
        """
        if not self.has_zeroframe:
            return False
        zf = np.asarray(self.zeroframe, np.float32)
        out = np.array(correct(zf), np.float32)
        out[zf == 0] = 0.0
        self.zeroframe = out
        return True

    @property
    def geometry(self):
        return Geometry.from_header(self.header, self.data.shape, self.path)

    @property
    def shape(self):
        return self.data.shape


_CARRY_THROUGH = ("INT_TIMES", "GROUP", "AVDRKCUR")  # AVDRKCUR: set by dark_current, read by ramp_fit


def _open(path, read_data=True):
    """Open a FITS file, turning every way it can be unreadable into one InputError.

    Truncation is detected from the headers alone, so ``read_data=False`` is a cheap full check
    of the file's structure.
    """
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    try:
        with warnings.catch_warnings():
            # astropy only warns on truncated files; for us that is an error.
            warnings.simplefilter("error", AstropyUserWarning)
            warnings.simplefilter("error", VerifyWarning)
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            nextend = hdul[0].header.get("NEXTEND")
            if type(nextend) is int and len(hdul) - 1 < nextend:
                # cut at an HDU boundary: only the count written by _atomic_write can tell
                hdul.close()
                raise InputError(path, f"file is truncated: NEXTEND={nextend} but only "
                                       f"{len(hdul) - 1} extensions are present")
            if read_data:
                for hdu in hdul:
                    hdu.data  # force the read so any damage in the data shows up here
            return hdul
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, warnings...
        raise InputError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from None


def read_headers(path):
    """Primary header and {EXTNAME: header} of a FITS file, checking its structure (not its data)."""
    with _open(path, read_data=False) as hdul:
        return hdul[0].header.copy(), {h.name: h.header.copy() for h in hdul[1:]}


def _check_ramp_shape(path, data, header, step):
    keywords.check_supported_readout(header, path)
    meta = keywords.require(header, step, path)
    if data is None:
        raise InputError(path, "no SCI extension with data")
    if data.ndim != 4:
        raise InputError(path, f"SCI has {data.ndim} dimensions (shape {data.shape}); a ramp needs 4: "
                               "(nints, ngroups, ny, nx)")
    nints, ngroups, ny, nx = data.shape
    if meta["NGROUPS"] != ngroups:
        raise InputError(path, f"header NGROUPS={meta['NGROUPS']} but SCI has {ngroups} groups")
    intstart = keywords.optional(header, "INTSTART")
    intend = keywords.optional(header, "INTEND")
    expected_nints = (intend - intstart + 1) if (intstart and intend) else meta["NINTS"]
    if expected_nints != nints:
        raise InputError(path, f"header NINTS={meta['NINTS']} (INTSTART/INTEND {intstart}/{intend}) but "
                               f"SCI has {nints} integrations")
    if (meta["SUBSIZE2"], meta["SUBSIZE1"]) != (ny, nx):
        raise InputError(path, f"header SUBSIZE1 x SUBSIZE2 = {meta['SUBSIZE1']} x {meta['SUBSIZE2']} but "
                               f"SCI frames are {nx} x {ny} (columns x rows)")
    if meta["NFRAMES"] < 1 or meta["GROUPGAP"] < 0:
        raise InputError(path, f"NFRAMES={meta['NFRAMES']} / GROUPGAP={meta['GROUPGAP']} are not valid")
    tframe, tgroup = keywords.optional(header, "TFRAME"), keywords.optional(header, "TGROUP")
    if tframe and tgroup:
        expect = (meta["NFRAMES"] + meta["GROUPGAP"]) * tframe
        if abs(tgroup - expect) > 1e-3 * expect:
            raise InputError(path, f"TGROUP={tgroup} s is inconsistent with (NFRAMES+GROUPGAP)*TFRAME="
                                   f"{expect:.6g} s")
    return meta


def read_ramp(path, step="inventory"):
    """Read a level-1b uncal or a RampModel-layout file into a :class:`Ramp`.

    ``step`` names the step that will use it: its keywords must be present (see
    :data:`detcal.keywords.STEP`). Missing PIXELDQ/GROUPDQ (raw files) are created as zeros.
    """
    path = str(path)
    with _open(path) as hdul:
        header = hdul[0].header.copy()
        names = [h.name for h in hdul]
        if "SCI" not in names:
            raise InputError(path, "no SCI extension (a ramp file needs SCI, and optionally PIXELDQ, GROUPDQ)")
        sci = hdul["SCI"].data
        _check_ramp_shape(path, sci, header, step)
        data = np.asarray(sci, dtype=np.float32)
        shape = data.shape
        pixeldq = _optional_array(hdul, "PIXELDQ", shape[2:], np.uint32, path)
        groupdq = _optional_array(hdul, "GROUPDQ", shape, np.uint8, path)
        zeroframe = None
        if "ZEROFRAME" in names and hdul["ZEROFRAME"].data is not None:
            zeroframe = _optional_array(hdul, "ZEROFRAME", (shape[0],) + shape[2:], np.float32, path)
        tables = [h.copy() for h in hdul[1:] if h.name in _CARRY_THROUGH]
    return Ramp(data, pixeldq, groupdq, header, path, tables, zeroframe)


class RampReader:
    """Read parts of a ramp file without loading the rest of it (for combining many big ramps).

    ``RampReader(path, step)`` checks the file's structure (truncation) and the keywords ``step``
    needs from the headers alone, as :func:`read_ramp` does, without reading any data.
    :meth:`read` then returns one section of SCI (float32 [DN]), GROUPDQ (uint8) or PIXELDQ
    (uint32): only the requested integrations, groups and rows are read from disk (astropy
    ``ImageHDU.section``, no memory map, so nothing else of the file becomes resident). A missing
    GROUPDQ or PIXELDQ reads as zeros. Use it as a context manager, or call :meth:`close`.

    Attributes: ``path``, ``header`` (primary), ``shape`` (nints, ngroups, ny, nx).
    """

    _DTYPES = {"SCI": np.float32, "GROUPDQ": np.uint8, "PIXELDQ": np.uint32}

    def __init__(self, path, step="inventory"):
        self.path = str(path)
        header, extensions = read_headers(self.path)
        if "SCI" not in extensions:
            raise InputError(self.path, "no SCI extension (a ramp file needs SCI, and optionally "
                                        "PIXELDQ, GROUPDQ)")
        shape = self._ext_shape(extensions["SCI"])
        dummy = np.broadcast_to(np.zeros((), np.uint8), shape) if shape else None  # no data read
        _check_ramp_shape(self.path, dummy, header, step)
        self._present = set()
        for name, want in (("GROUPDQ", shape), ("PIXELDQ", shape[2:])):
            if name in extensions and extensions[name].get("NAXIS", 0):
                got = self._ext_shape(extensions[name])
                if got != want:
                    raise InputError(self.path, f"{name} has shape {got}, expected {want}")
                self._present.add(name)
        self.header = header
        self.shape = shape
        self._hdul = None

    @staticmethod
    def _ext_shape(ext_header):
        naxis = int(ext_header.get("NAXIS", 0))
        return tuple(int(ext_header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))

    def read(self, ext="SCI", ints=slice(None), groups=slice(None), rows=slice(None)):
        """Section ``[ints, groups, rows, :]`` of SCI/GROUPDQ (``[rows, :]`` of PIXELDQ).

        ``ints`` is an int (the integration axis is dropped) or a slice; ``groups`` and ``rows``
        are slices. Returns a new native-endian array of the extension's dtype.
        """
        ext = ext.upper()
        dtype = self._DTYPES[ext]
        key = (rows, slice(None)) if ext == "PIXELDQ" else (ints, groups, rows, slice(None))
        if ext != "SCI" and ext not in self._present:
            full = self.shape[2:] if ext == "PIXELDQ" else self.shape
            shape = np.broadcast_to(np.zeros((), np.bool_), full)[key].shape  # no allocation
            return np.zeros(shape, dtype)
        if self._hdul is None:
            self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)
        try:
            return np.asarray(self._hdul[ext].section[key], dtype=dtype)
        except Exception as exc:  # damaged data past the headers
            raise InputError(self.path, f"cannot read {ext}{list(key)} ({type(exc).__name__}: "
                                        f"{exc})") from None

    def close(self):
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _optional_array(hdul, name, shape, dtype, path):
    if name not in [h.name for h in hdul] or hdul[name].data is None:
        return np.zeros(shape, dtype)
    arr = hdul[name].data
    if arr.shape != tuple(shape):
        raise InputError(path, f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    return np.asarray(arr, dtype=dtype)


def add_history(header, step, inputs=(), params=None):
    """Record provenance: detcal version, step, parameters and input file names (and, for inputs
    from the CRDS cache, ``R_<TYPE>`` and ``CRDS_CTX`` as jwst writes them)."""
    header["DCVERS"] = (__version__, "detcal version that wrote this file")
    if step:
        header.add_history(f"detcal {__version__}: {step}")
    for key, val in (params or {}).items():
        header.add_history(f"  {step} parameter {key} = {val}")
    for name in inputs:
        header.add_history(f"  {step} input {os.path.basename(str(name))}")
    if inputs and os.environ.get("CRDS_PATH"):
        from .crds_refs import provenance      # references from the CRDS cache: R_<TYPE>, CRDS_CTX
        for key, val in provenance(inputs).items():
            header[key] = val


class WriteError(InputError, OSError):
    """A product could not be written (full disk, no permission...): ``"<path>: <problem>"``.

    An :class:`InputError`, so :func:`detcal.runner.logged` prints it as one line and exits 1,
    and an ``OSError`` for callers that handle failed writes.
    """


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary name next to ``path`` (same suffix); rename it to ``path`` on success.

    On any failure the temporary file is removed (no partial product); an ``OSError`` (e.g.
    ENOSPC, "No space left on device") becomes one :class:`WriteError` naming ``path``, without
    the chain of OSErrors the writer and its clean-up would show.
    """
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]         # savefig/to_csv pick the format from it
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; products are ordinary files
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        problem = exc.strerror or str(exc)
        raise WriteError(path, f"cannot write this product: {problem}"
                               + (f" [errno {exc.errno}]" if exc.errno else "")) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(hdul, path):
    hdul[0].header["NEXTEND"] = (len(hdul) - 1, "number of extensions (detects truncation)")
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=False)


def write_ramp(ramp, path, step=None, inputs=(), params=None):
    """Write ``ramp`` in the RampModel layout; mark ``step`` COMPLETE (S_* keyword) and add HISTORY."""
    header = ramp.header.copy()
    if step in keywords.CAL_STEP and header.get(keywords.CAL_STEP[step]) != "SKIPPED":
        header[keywords.CAL_STEP[step]] = "COMPLETE"  # a step that skipped itself says so
    add_history(header, step, inputs, params)
    hdus = [fits.PrimaryHDU(header=header),
            fits.ImageHDU(np.asarray(ramp.data, np.float32), name="SCI"),
            fits.ImageHDU(np.asarray(ramp.pixeldq, np.uint32), name="PIXELDQ"),
            fits.ImageHDU(np.asarray(ramp.groupdq, np.uint8), name="GROUPDQ")]
    hdus[1].header["BUNIT"] = "DN"
    if ramp.zeroframe is not None:
        hdus.append(fits.ImageHDU(np.asarray(ramp.zeroframe, np.float32), name="ZEROFRAME"))
        hdus[-1].header["BUNIT"] = "DN"
    hdus += [t.copy() for t in ramp.tables]
    _atomic_write(fits.HDUList(hdus), path)


def write_uncal(data, header, path, tables=()):
    """Write a level-1b raw file: SCI uint16 (nints, ngroups, ny, nx) plus the primary header."""
    data = np.asarray(data)
    if data.dtype != np.uint16:
        raise ValueError(f"uncal SCI must be uint16, got {data.dtype}")
    hdus = [fits.PrimaryHDU(header=header), fits.ImageHDU(data, name="SCI")]
    hdus[1].header["BUNIT"] = "DN"
    hdus += list(tables)
    _atomic_write(fits.HDUList(hdus), path)


# --------------------------------------------------------------------------------------------
# Reference files
# --------------------------------------------------------------------------------------------
#: Extensions of each reference type: name -> (dtype, ndim or tuple of allowed ndims, required).
LAYOUT = {
    "MASK": {"DQ": (np.uint32, 2, True)},
    "SATURATION": {"SCI": (np.float32, 2, True), "DQ": (np.uint32, 2, False)},
    "SUPERBIAS": {"SCI": (np.float32, 2, True), "DQ": (np.uint32, 2, False), "ERR": (np.float32, 2, False)},
    "LINEARITY": {"COEFFS": (np.float32, 3, True), "DQ": (np.uint32, 2, False),
                  "INV_COEFFS": (np.float32, 3, False)},
    "DARK": {"SCI": (np.float32, (3, 4), True), "DQ": (np.uint32, (2, 4), False),
             "ERR": (np.float32, (3, 4), False), "AVDRKCUR": (np.float32, 2, False)},
    "GAIN": {"SCI": (np.float32, 2, True)},
    "READNOISE": {"SCI": (np.float32, 2, True)},
    "RSCD": {},
    # jwst ResetModel: SCI/ERR (nints, ngroups, ny, nx), DQ 2-D (OR-ed into PIXELDQ)
    "RESET": {"SCI": (np.float32, 4, True), "DQ": (np.uint32, 2, False), "ERR": (np.float32, 4, False)},
}

#: Config key (``references: {DET: {key: path}}``) -> REFTYPE.
REFTYPES = {"mask": "MASK", "saturation": "SATURATION", "superbias": "SUPERBIAS",
            "linearity": "LINEARITY", "dark": "DARK", "gain": "GAIN", "readnoise": "READNOISE",
            "rscd": "RSCD", "reset": "RESET"}

#: The main array of each type (the one whose last two axes are the image).
MAIN = {"MASK": "DQ", "LINEARITY": "COEFFS"}

#: DATAMODL of each type: the stdatamodels class ``datamodels.open`` returns (MIRI DARK: 4-D).
DATAMODL = {"MASK": "MaskModel", "SATURATION": "SaturationModel", "SUPERBIAS": "SuperBiasModel",
            "LINEARITY": "LinearityModel", "DARK": "DarkModel", "GAIN": "GainModel",
            "READNOISE": "ReadnoiseModel", "RSCD": "RSCDModel", "RESET": "ResetModel"}


def datamodl(reftype, instrument):
    """DATAMODL keyword of a ``reftype`` reference for ``instrument`` (MIRI DARK: DarkMIRIModel)."""
    reftype = reftype.upper()
    if reftype == "DARK" and str(instrument).strip().upper() == "MIRI":
        return "DarkMIRIModel"
    return DATAMODL[reftype]


@dataclass
class Reference:
    """A reference file in memory. Arrays are cut to the science subarray when read ``like`` a ramp.

    data : the main array (SCI, COEFFS, or DQ for MASK)
    dq : uint32 pixel DQ (DQ_DEF already applied), or None
    err : float32 or None
    extras : other arrays by extension name (INV_COEFFS, AVDRKCUR) and, for RSCD, ``table``
    """

    reftype: str
    data: np.ndarray
    dq: np.ndarray = None
    err: np.ndarray = None
    header: fits.Header = None
    path: str = "<memory>"
    extras: dict = field(default_factory=dict)


def dq_def_table():
    """The DQ_DEF table that documents our (JWST) bit values."""
    rows = [(i, 1 << i, name, dqflags.DESCRIPTIONS[name])
            for i, (name, val) in enumerate((n, v) for n, v in dqflags.PIXEL.items() if v)]
    cols = [fits.Column("BIT", "J", array=[r[0] for r in rows]),
            fits.Column("VALUE", "J", bzero=2**31, array=np.array([r[1] for r in rows], np.uint32)),
            fits.Column("NAME", "40A", array=[r[2] for r in rows]),
            fits.Column("DESCRIPTION", "80A", array=[r[3] for r in rows])]
    return fits.BinTableHDU.from_columns(cols, name="DQ_DEF")


def _apply_dq_def(dq, table):
    """Map file DQ bits to JWST bits through a DQ_DEF table (bits not listed are dropped)."""
    out = np.zeros(dq.shape, np.uint32)
    for row in table:
        name = str(row["NAME"]).strip().upper()
        if name in dqflags.PIXEL:
            out[(dq & np.uint32(row["VALUE"])) != 0] |= np.uint32(dqflags.PIXEL[name])
    return out


def _ndims(spec):
    return spec if isinstance(spec, tuple) else (spec,)


def read_reference(path, reftype, like=None):
    """Read a reference file of type ``reftype`` (``'SUPERBIAS'``, ...).

    ``like`` (a :class:`Ramp`) makes the arrays match its subarray: a full-frame reference is cut
    with SUBSTRT1/2 of both files; an incompatible shape is an InputError naming the file.
    """
    path = str(path)
    reftype = reftype.upper()
    layout = LAYOUT[reftype]
    with _open(path) as hdul:
        header = hdul[0].header.copy()
        found = keywords.optional(header, "REFTYPE")
        if found and found.upper() != reftype:
            raise InputError(path, f"REFTYPE is {found!r}, but it was given as the {reftype} reference")
        names = [h.name for h in hdul]
        if reftype == "RSCD":
            if "RSCD_GROUP_SKIP" not in names:
                raise InputError(path, "RSCD reference needs a RSCD_GROUP_SKIP table")
            return Reference(reftype, None, header=header, path=path,
                             extras={"table": np.array(hdul["RSCD_GROUP_SKIP"].data)})
        arrays = {}
        for ext, (dtype, ndim, required) in layout.items():
            if ext not in names or hdul[ext].data is None:
                if required:
                    raise InputError(path, f"{reftype} reference has no {ext} extension")
                continue
            arr = hdul[ext].data
            if arr.ndim not in _ndims(ndim):
                raise InputError(path, f"{ext} has {arr.ndim} dimensions (shape {arr.shape}); a {reftype} "
                                       f"reference needs {' or '.join(map(str, _ndims(ndim)))}")
            arrays[ext] = np.asarray(arr, dtype=dtype)
        if "DQ" in arrays and "DQ_DEF" in names:
            arrays["DQ"] = _apply_dq_def(arrays["DQ"], hdul["DQ_DEF"].data)
    main = MAIN.get(reftype, "SCI")
    shapes = {arr.shape[-2:] for arr in arrays.values()}
    if len(shapes) != 1:
        raise InputError(path, f"extensions disagree on the image shape: {sorted(shapes)}")
    if like is not None:
        arrays = {k: _cut_to(v, path, header, like) for k, v in arrays.items()}
    ref = Reference(reftype, arrays.pop(main), header=header, path=path)
    ref.dq = arrays.pop("DQ", None) if main != "DQ" else ref.data
    ref.err = arrays.pop("ERR", None)
    ref.extras = arrays
    return ref


def _cut_to(arr, path, ref_header, ramp):
    """Cut a reference array to the ramp's subarray (SUBSTRT/SUBSIZE of both files)."""
    ny, nx = ramp.data.shape[-2:]
    sy = keywords.value(ramp.header, "SUBSTRT2", ramp.path) - 1
    sx = keywords.value(ramp.header, "SUBSTRT1", ramp.path) - 1
    ry = (keywords.optional(ref_header, "SUBSTRT2", 1) or 1) - 1
    rx = (keywords.optional(ref_header, "SUBSTRT1", 1) or 1) - 1
    y0, x0 = sy - ry, sx - rx
    rny, rnx = arr.shape[-2:]
    if (rny, rnx) == (ny, nx) and (y0, x0) == (0, 0):
        return arr
    if y0 < 0 or x0 < 0 or y0 + ny > rny or x0 + nx > rnx:
        raise InputError(path, f"reference covers {rnx} x {rny} pixels starting at SUBSTRT1/2={rx + 1}/{ry + 1}, "
                               f"which does not contain the science array of {os.path.basename(ramp.path)} "
                               f"({nx} x {ny} at SUBSTRT1/2={sx + 1}/{sy + 1})")
    return np.ascontiguousarray(arr[..., y0:y0 + ny, x0:x0 + nx])


def reference_header(reftype, meta, descrip, author="detcal", pedigree="DUMMY",
                     useafter="2020-01-01T00:00:00"):
    """Primary header of a reference file with every keyword JWST (and crds certify) requires.

    ``meta`` supplies INSTRUME, DETECTOR and the subarray keywords (and, for DARK, READPATT,
    NFRAMES, NGROUPS, GROUPGAP); anything else in it is copied too. CRDS selection keywords it
    does not give get their wildcard values (:data:`detcal.keywords.REFERENCE_DEFAULTS`; a DARK
    the instrument's dark EXP_TYPE). :func:`write_reference` adds DATAMODL.
    """
    header = fits.Header()
    header["TELESCOP"] = "JWST"
    header["REFTYPE"] = reftype
    header["DESCRIP"] = descrip
    header["AUTHOR"] = author
    header["PEDIGREE"] = pedigree
    header["USEAFTER"] = useafter
    for key, val in meta.items():
        header[key] = val
    defaults = dict(keywords.REFERENCE_DEFAULTS)
    if str(header.get("INSTRUME", "")).strip().upper() == "MIRI":
        defaults.update(keywords.REFERENCE_DEFAULTS_MIRI)
    if reftype == "DARK" and "INSTRUME" in header:
        defaults["EXP_TYPE"] = keywords.DARK_EXP_TYPE.get(str(header["INSTRUME"]).strip().upper(), "N/A")
    for key, val in defaults.items():
        if key not in header and key not in keywords.REFERENCE_EXTRA.get(reftype, ()):
            header[key] = (val, "CRDS selection: any")
    missing = [k for k in keywords.REFERENCE + keywords.REFERENCE_EXTRA.get(reftype, ()) if k not in header]
    if missing:
        raise ValueError(f"{reftype} reference header is missing {missing}")
    return header


def write_reference(path, reftype, arrays, header, step=None, inputs=(), params=None, units=None):
    """Write a reference file: ``arrays`` maps extension name -> array (dtypes from :data:`LAYOUT`).

    For RSCD pass ``arrays={'RSCD_GROUP_SKIP': structured array}``. ``units`` (optional) maps
    extension name -> BUNIT written to that extension's header (e.g. ``{'SCI': 'DN'}``).
    """
    reftype = reftype.upper()
    header = header.copy()
    header["REFTYPE"] = reftype
    header["DATAMODL"] = (datamodl(reftype, header.get("INSTRUME", "")),
                          "stdatamodels class of this file")
    add_history(header, step or f"{reftype.lower()} reference", inputs, params)
    hdus = [fits.PrimaryHDU(header=header)]
    if reftype == "RSCD":
        hdus.append(fits.BinTableHDU(np.asarray(arrays["RSCD_GROUP_SKIP"]), name="RSCD_GROUP_SKIP"))
    else:
        layout = LAYOUT[reftype]
        for ext, (dtype, ndim, required) in layout.items():
            if ext not in arrays:
                if required:
                    raise ValueError(f"{reftype} reference needs a {ext} array")
                continue
            arr = np.asarray(arrays[ext], dtype=dtype)
            if arr.ndim not in _ndims(ndim):
                raise ValueError(f"{reftype} {ext} must have {ndim} dimensions, got shape {arr.shape}")
            hdus.append(fits.ImageHDU(arr, name=ext))
            if units and ext in units:
                hdus[-1].header["BUNIT"] = units[ext]
        if "DQ" in layout:
            hdus.append(dq_def_table())
    _atomic_write(fits.HDUList(hdus), path)


# --------------------------------------------------------------------------------------------
# Rate products (ramp_fit)
# --------------------------------------------------------------------------------------------
#: Extensions of a rate/rateints product: (products key, EXTNAME, dtype, BUNIT).
RATE_EXTENSIONS = (("sci", "SCI", np.float32, "DN/s"), ("err", "ERR", np.float32, "DN/s"),
                   ("dq", "DQ", np.uint32, None), ("var_poisson", "VAR_POISSON", np.float32, None),
                   ("var_rnoise", "VAR_RNOISE", np.float32, None))


def write_rate(path, products, header, tables=(), step="ramp_fit", inputs=(), params=None):
    """Write a ramp_fit product: ``rate`` (2-D, ImageModel layout) or ``rateints`` (3-D, CubeModel).

    ``products``: dict with 'sci', 'err', 'dq', 'var_poisson', 'var_rnoise' (as returned by
    :func:`detcal.steps.ramp_fit.fit_ramps`); ``header``: the ramp's primary header (copied; S_RAMP
    set COMPLETE, HISTORY added). For 3-D products an INT_TIMES table among ``tables`` (e.g.
    ``ramp.tables``) is written too. SCI and ERR carry BUNIT = 'DN/s'.
    """
    ndim = np.ndim(products["sci"])
    if ndim not in (2, 3):
        raise ValueError(f"rate products must be 2-D or 3-D, got SCI of shape {np.shape(products['sci'])}")
    header = header.copy()
    header["S_RAMP"] = "COMPLETE"
    header["DATAMODL"] = "ImageModel" if ndim == 2 else "CubeModel"
    add_history(header, step, inputs, params)
    hdus = [fits.PrimaryHDU(header=header)]
    for key, extname, dtype, bunit in RATE_EXTENSIONS:
        arr = np.asarray(products[key], dtype=dtype)
        if arr.shape != np.shape(products["sci"]):
            raise ValueError(f"rate product {key} has shape {arr.shape}, SCI has {np.shape(products['sci'])}")
        hdu = fits.ImageHDU(arr, name=extname)
        if bunit:
            hdu.header["BUNIT"] = bunit
        hdus.append(hdu)
    if ndim == 3:
        hdus += [t.copy() for t in tables if t.name == "INT_TIMES"]
    _atomic_write(fits.HDUList(hdus), path)
