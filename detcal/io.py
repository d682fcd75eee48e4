"""Reading and writing ramps and reference files in the JWST FITS layouts.

Ramps: level-1b ``uncal`` (SCI uint16) on input, the RampModel layout (SCI float32, PIXELDQ
uint32, GROUPDQ uint8) for every product; a ZEROFRAME extension (float32 (nints, ny, nx)) and the
INT_TIMES and GROUP tables are kept from the raw file through every product (the ZEROFRAME is
corrected by saturation, superbias, refpix and linearity as jwst does when ZEROFRAM = T:
:meth:`Ramp.correct_zeroframe`). Reference files: MASK, SATURATION, SUPERBIAS,
LINEARITY, DARK (3-D, MIRI 4-D), GAIN, READNOISE, RSCD, RESET (MIRI 4-D) in the layouts of
the matching stdatamodels models. Every file written goes to a temporary name first and is
renamed into place, so a failed write never leaves a partial file; it carries its provenance
(detcal version, step, parameters, input names) in HISTORY cards. Ramp and rate products are
written by parts through :class:`ImageFileWriter` (headers from astropy, values by positional
writes: the bytes astropy writes for the whole arrays): a rate/rateints by rows as ramp_fit
computes them (:class:`RateWriter`), a ramp's SCI that is a :class:`LazyArray` of another file
copied from it (:func:`write_ramp`).

Whole files are read by :func:`read_ramp`, :func:`read_reference` (FITS big-endian arrays are
byte-swapped in place, so a read needs no second copy). Parts of files are read by the one
chunked reader, :class:`SectionReader` (only the integrations, groups, rows and columns asked
for): :class:`RampReader` (SCI, GROUPDQ, PIXELDQ, ZEROFRAME), :class:`CubeReader` (rate and
rateints products) and :class:`ReferenceReader` (``read_reference(..., lazy=True)``: arrays of
3 or more dimensions as :class:`LazyArray`, read by sections when used). Each checks its file
from the headers alone (truncation, shapes, keywords) and raises one
:class:`~detcal.errors.InputError` naming it. Block sizes come from one memory-budget helper,
:func:`block_size` (MB budget, bytes per value, array shape -> indices per block), with
:func:`blocks` and the readers' :meth:`SectionReader.row_blocks` / ``group_blocks``.
"""

import contextlib
import io as io_module
import itertools
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from . import __version__, dqflags, keywords, multiaccum
from .errors import InputError
from .geometry import Geometry
from .reftypes import DATAMODL, LAYOUT, MAIN, REFTYPES  # noqa: F401 (io's names, re-exported)


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
        """The :class:`detcal.geometry.Geometry` of the ramp, from its header and SCI shape."""
        return Geometry.from_header(self.header, self.data.shape, self.path)

    @property
    def shape(self):
        """(nints, ngroups, ny, nx) of SCI."""
        return self.data.shape


_CARRY_THROUGH = ("INT_TIMES", "GROUP", "AVDRKCUR")  # AVDRKCUR: set by dark_current, read by ramp_fit


def open_fits(path, read_data=True, skip=()):
    """Open a FITS file, turning every way it can be unreadable into one InputError.

    Truncation is detected from the headers alone, so ``read_data=False`` is a cheap full check
    of the file's structure. ``skip``: names of HDUs whose data are not read here (the caller
    reads them).
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
                # cut at an HDU boundary: only the count written by atomic_write can tell
                hdul.close()
                raise InputError(path, f"file is truncated: NEXTEND={nextend} but only "
                                       f"{len(hdul) - 1} extensions are present")
            if read_data:
                for hdu in hdul:
                    if hdu.name not in skip:
                        hdu.data  # force the read so any damage in the data shows up here
            return hdul
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, warnings...
        raise InputError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from None


def _read_data(path, hdu):
    """``hdu.data`` of a file opened by :func:`open_fits` with the HDU in ``skip``, with the same
    InputError for damaged data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)
            warnings.simplefilter("error", VerifyWarning)
            return hdu.data
    except Exception as exc:
        raise InputError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from None


def read_headers(path):
    """Primary header and {EXTNAME: header} of a FITS file, checking its structure (not its data)."""
    with open_fits(path, read_data=False) as hdul:
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
        expect = multiaccum.group_time(tframe, meta["NFRAMES"], meta["GROUPGAP"])
        if abs(tgroup - expect) > 1e-3 * expect:
            raise InputError(path, f"TGROUP={tgroup} s is inconsistent with (NFRAMES+GROUPGAP)*TFRAME="
                                   f"{expect:.6g} s")
    return meta


def _native(arr, dtype):
    """``arr`` as a native-endian array of ``dtype``. A big-endian array of that dtype just read
    from a file (FITS stores big-endian) is byte-swapped in place rather than copied, so reading a
    float32 SCI needs no second copy of it; the values are the same."""
    want = np.dtype(dtype)
    if (isinstance(arr, np.ndarray) and arr.dtype != want and arr.dtype.newbyteorder("=") == want
            and arr.flags.writeable and arr.flags.c_contiguous):
        return arr.byteswap(inplace=True).view(want)
    return np.asarray(arr, dtype=want)


#: Values per chunk of :func:`_read_uint16_sci` (0.5 MB read, 1 MB written: stays in the cache).
RAW_CHUNK = 1 << 18


def _read_uint16_sci(path, hdul):
    """SCI of a level-1b raw file stored as uint16 (BITPIX 16, BZERO 32768, BSCALE 1: big-endian
    int16 + 32768) as float32, in one pass: the file is read by chunks of :data:`RAW_CHUNK` values
    into a small buffer and each chunk converted into the output (``int16 + 32768.0``, exact in
    float32), instead of astropy's whole uint16 copy and a float32 copy of it. The values are
    those of ``np.asarray(hdul['SCI'].data, np.float32)``. None when SCI is stored otherwise."""
    hdu = hdul["SCI"]
    h = hdu.header
    naxis = h.get("NAXIS", 0)
    if (h.get("BITPIX") != 16 or h.get("BZERO") != 32768 or h.get("BSCALE", 1) != 1 or "BLANK" in h
            or not naxis):
        return None
    shape = tuple(int(h[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    buf = np.empty(min(RAW_CHUNK, flat.size), ">i2")
    offset = np.float32(32768)
    with open(path, "rb") as f:
        f.seek(hdul.fileinfo(hdul.index_of("SCI"))["datLoc"])
        for start in range(0, flat.size, buf.size):
            chunk = buf[:min(buf.size, flat.size - start)]
            if f.readinto(chunk.view(np.uint8)) != chunk.nbytes:
                raise InputError(path, "file is truncated inside its SCI data")
            np.add(chunk, offset, out=flat[start:start + chunk.size])
    return out


def read_ramp(path, step="inventory", lazy_data=False):
    """Read a level-1b uncal or a RampModel-layout file into a :class:`Ramp`.

    ``step`` names the step that will use it: its keywords must be present (see
    :data:`detcal.keywords.STEP`). Missing PIXELDQ/GROUPDQ (raw files) are created as zeros.
    A raw file's uint16 SCI is read by :func:`_read_uint16_sci` (float32 in one pass).
    ``lazy_data=True``: SCI is a :class:`LazyArray` of a :class:`RampReader` (float32 values
    read by sections when used; checked from the headers), the rest is read.
    """
    path = str(path)
    with open_fits(path, skip=("SCI",)) as hdul:
        header = hdul[0].header.copy()
        names = [h.name for h in hdul]
        if "SCI" not in names:
            raise InputError(path, "no SCI extension (a ramp file needs SCI, and optionally PIXELDQ, "
                                   "GROUPDQ)")
        if lazy_data:
            data = RampReader(path, step).lazy("SCI")
        else:
            sci = _read_uint16_sci(path, hdul)
            if sci is None:
                sci = _read_data(path, hdul["SCI"])
            _check_ramp_shape(path, sci, header, step)
            data = _native(sci, np.float32)
        shape = data.shape
        pixeldq = _optional_array(hdul, "PIXELDQ", shape[2:], np.uint32, path)
        groupdq = _optional_array(hdul, "GROUPDQ", shape, np.uint8, path)
        zeroframe = None
        if "ZEROFRAME" in names and hdul["ZEROFRAME"].data is not None:
            zeroframe = _optional_array(hdul, "ZEROFRAME", (shape[0],) + shape[2:], np.float32, path)
        tables = [h.copy() for h in hdul[1:] if h.name in _CARRY_THROUGH]
    return Ramp(data, pixeldq, groupdq, header, path, tables, zeroframe)


def block_size(memory_mb, bytes_per_value, shape, axis=0):
    """How many indices along ``axis`` one block may hold within a memory budget.

    A block of an array of ``shape`` is the array cut to ``n`` indices along ``axis``; it costs
    ``bytes_per_value`` bytes per element (its own bytes plus every temporary the caller makes per
    element, e.g. 4 for a float32 copy alone, 48 for :func:`detcal.analysis.robust.sigma_clipped_stats`).

    Parameters
    ----------
    memory_mb : float        budget of one block [MB = 1e6 bytes]
    bytes_per_value : float  [bytes per element of the block]
    shape : tuple of int     shape of the whole array (or of one slab: only the product of the
                             axes other than ``axis`` matters, and ``shape[axis]`` caps the result)
    axis : int

    Returns
    -------
    int in [1, shape[axis]] (at least 1 even when one index exceeds the budget; 1 for an empty axis)
    """
    shape = tuple(int(s) for s in shape)
    length = shape[axis]
    per_index = bytes_per_value * math.prod(s for k, s in enumerate(shape) if k != axis % len(shape))
    n = int(memory_mb * 1e6 // per_index) if per_index > 0 else length
    return max(1, min(length, n))


def blocks(length, size):
    """Consecutive slices ``[k*size, min(length, (k+1)*size))`` covering ``range(length)``."""
    size = max(1, int(size))
    return [slice(start, min(length, start + size)) for start in range(0, int(length), size)]


def _ext_shape(ext_header):
    naxis = int(ext_header.get("NAXIS", 0))
    return tuple(int(ext_header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))


def _window(key, length, offset=0):
    """A slice or int along an axis of ``length`` -> the same in file coordinates (+ ``offset``)."""
    if isinstance(key, slice):
        start, stop, step = key.indices(length)
        if step < 0:
            raise IndexError("negative steps are not supported when reading sections")
        stop = max(start, stop)
        return slice(start + offset, stop + offset, step)
    index = int(key)
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for an axis of length {length}")
    return index % length + offset


class SectionReader:
    """Sections of the image extensions of one FITS file, read from disk only when asked for.

    The one chunked reader of detcal: ramps (:class:`RampReader`), rate/rateints products
    (:class:`CubeReader`) and reference cubes (:func:`read_reference` with ``lazy=True``) are
    read through it. Each extension's axes are named: ``int`` (integration), ``group``, ``row``
    and ``col``; :meth:`read` takes integration, group and row ranges (an int drops the axis)
    and returns a native-endian array of the extension's dtype. Only those values are read
    (astropy ``ImageHDU.section``, no memory map, so nothing else of the file becomes resident).

    Subclasses check the file in ``__init__`` from its headers alone (truncation, shapes,
    keywords: one :class:`~detcal.errors.InputError` naming the file) and fill in:

    ``path``, ``header`` (primary), ``shape`` (the logical shape of the main extension),
    ``_axes`` {EXTNAME: axis names of the logical array}, ``_dtypes`` {EXTNAME: dtype},
    ``_present`` (extensions in the file), and optionally ``_zeros_if_absent`` (extensions that
    read as zeros when the file lacks them; any other absent one is an InputError), ``_offset``
    {axis name: first file index} and ``_file_axes`` {EXTNAME: axis names as stored, when the file
    lacks a logical axis (a 2-D rate read as one integration)}.
    """

    _offset = {}
    _file_axes = {}
    _zeros_if_absent = frozenset()

    def _open_hdul(self):
        if getattr(self, "_hdul", None) is None:
            self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)
        return self._hdul

    def ext_shape(self, ext):
        """Logical shape of extension ``ext`` (the main shape with that extension's axes)."""
        full = dict(zip(self._axes[self._main], self.shape))
        return tuple(full[a] for a in self._axes[ext.upper()])

    def read(self, ext="SCI", ints=slice(None), groups=slice(None), rows=slice(None), cols=slice(None)):
        """Section ``[ints, groups, rows, cols]`` of ``ext`` (only the axes it has).

        ``ints``, ``groups``, ``rows``, ``cols``: an int (that axis is dropped) or a slice with a
        positive step, in the logical coordinates of :attr:`shape` (a reference read ``like`` a
        subarray: subarray rows and columns). Returns a new native-endian array.
        """
        ext = ext.upper()
        dtype = self._dtypes[ext]
        keys = {"int": ints, "group": groups, "row": rows, "col": cols}
        axes = self._axes[ext]
        lengths = self.ext_shape(ext)
        logical = tuple(_window(keys[a], n) for a, n in zip(axes, lengths))
        shape = np.broadcast_to(np.zeros((), np.bool_), lengths)[logical].shape  # no allocation
        if ext not in self._present and ext not in self._zeros_if_absent:
            raise InputError(self.path, f"no {ext} extension")
        if ext not in self._present or 0 in shape:
            return np.zeros(shape, dtype)
        file_axes = self._file_axes.get(ext, axes)
        key = tuple(_window(keys[a], n, self._offset.get(a, 0)) for a, n in zip(axes, lengths)
                    if a in file_axes)
        try:
            arr = self._read_rows(ext, key)
            if arr is None:
                arr = self._open_hdul()[ext].section[key]
            arr = self._convert(ext, _native(arr, dtype))
        except InputError:
            raise
        except Exception as exc:  # damaged data past the headers
            raise InputError(self.path, f"cannot read {ext}{list(key)} ({type(exc).__name__}: "
                                        f"{exc})") from None
        if file_axes != axes:         # a stored axis missing (2-D rate): add it, then index it
            for k, a in enumerate(axes):
                if a not in file_axes:
                    kept = sum(1 for b, v in zip(axes[:k], logical[:k]) if not isinstance(v, int))
                    arr = np.expand_dims(arr, kept)[(slice(None),) * kept + (logical[k],)]
        return arr

    def _convert(self, ext, arr):
        """Hook for value conversions of a section (the DQ_DEF mapping of references)."""
        return arr

    def _read_rows(self, ext, key):
        """Section ``key`` (file axes) of an unscaled extension (BSCALE 1, BZERO 0, no BLANK) read
        straight into one array, each run of whole rows by one positional read: the values of
        astropy's ``section[key]`` without its per-run pieces and their concatenation (twice
        the section in memory). None when the key does not take whole rows (the columns cut, a
        step) or the extension is scaled: then astropy reads it."""
        hdul = self._open_hdul()
        stored = _unscaled_data(hdul, ext)
        shape = _ext_shape(hdul[ext].header)
        if stored is None or len(shape) < 2 or len(key) != len(shape):
            return None
        data_start, dtype = stored
        cols = key[-1]
        if not (isinstance(cols, slice) and cols.indices(shape[-1]) == (0, shape[-1], 1)):
            return None
        rows = key[-2]
        if isinstance(rows, slice):
            r0, r1, step = rows.indices(shape[-2])
            if step != 1:
                return None
            r1 = max(r0, r1)
        else:
            r0, r1 = int(rows), int(rows) + 1
        lead = []
        for k, n in zip(key[:-2], shape[:-2]):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                lead.append(range(start, max(start, stop), step))
            else:
                lead.append([int(k)])
        out_shape = tuple(len(r) for k, r in zip(key[:-2], lead) if isinstance(k, slice))
        out_shape += ((r1 - r0,) if isinstance(rows, slice) else ()) + (shape[-1],)
        out = np.empty(out_shape, dtype)
        run = (r1 - r0) * shape[-1] * dtype.itemsize
        if run == 0 or out.size == 0:
            return out
        flat = out.reshape(-1).view(np.uint8)
        plane = shape[-2] * shape[-1] * dtype.itemsize
        strides = [math.prod(shape[k + 1:-2]) for k in range(len(shape) - 2)]
        with open(self.path, "rb") as f:
            fd = f.fileno()
            for n, index in enumerate(itertools.product(*lead)):
                offset = (data_start + sum(i * s for i, s in zip(index, strides)) * plane
                          + r0 * shape[-1] * dtype.itemsize)
                view = flat[n * run:(n + 1) * run]
                got = os.preadv(fd, [view], offset)
                if got != run:
                    raise InputError(self.path, f"file is truncated inside its {ext} data")
        return out

    def row_blocks(self, memory_mb, bytes_per_pixel):
        """Row slices covering the frame whose blocks stay within ``memory_mb`` [MB] at
        ``bytes_per_pixel`` bytes per (row, column) pixel of the block (everything the caller holds
        per pixel: all integrations and groups it reads, and its temporaries)."""
        return blocks(self.shape[-2], block_size(memory_mb, bytes_per_pixel, self.shape[-2:], axis=0))

    def group_blocks(self, memory_mb, bytes_per_value):
        """Group slices whose blocks ((nints,) block, ny, nx) stay within ``memory_mb`` [MB]."""
        axes = self._axes[self._main]
        g = axes.index("group")
        return blocks(self.shape[g], block_size(memory_mb, bytes_per_value, self.shape, axis=g))

    def lazy(self, ext):
        """:class:`LazyArray` of extension ``ext``: its values are read on demand."""
        return LazyArray(self, ext.upper())

    def has(self, ext):
        """True when the file has extension ``ext`` (with data of the expected shape)."""
        return ext.upper() in self._present

    def close(self):
        """Close the file (it is reopened by the next :meth:`read`)."""
        if getattr(self, "_hdul", None) is not None:
            self._hdul.close()
            self._hdul = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: Stored (big-endian) dtype of each FITS BITPIX.
_STORED = {8: np.dtype("u1"), 16: np.dtype(">i2"), 32: np.dtype(">i4"), 64: np.dtype(">i8"),
           -32: np.dtype(">f4"), -64: np.dtype(">f8")}


def _unscaled_data(hdul, ext):
    """(offset of the data in the file, stored big-endian dtype) of extension ``ext`` when its
    values are stored as they are (no BSCALE/BZERO scaling, no BLANK), else None."""
    head = hdul[ext].header
    dtype = _STORED.get(head.get("BITPIX"))
    if dtype is None or head.get("BSCALE", 1) != 1 or head.get("BZERO", 0) != 0 or "BLANK" in head:
        return None
    return hdul.fileinfo(hdul.index_of(ext))["datLoc"], dtype


class LazyArray:
    """An extension of a :class:`SectionReader` that reads values only when they are used.

    Basic slicing (ints and slices with step 1, ``...``) returns another LazyArray over that
    window without reading; ``np.asarray(x)``, :meth:`copy` and any other use read the window
    (only it) from disk. ``shape``, ``ndim``, ``dtype`` and ``size`` are known without reading.
    """

    def __init__(self, reader, ext, window=None):
        self.reader = reader
        self.ext = ext
        self._axes = reader._axes[ext]
        lengths = reader.ext_shape(ext)
        self._window = window or tuple(slice(0, n) for n in lengths)
        self.dtype = np.dtype(reader._dtypes[ext])

    @property
    def shape(self):
        """Shape of the window (known without reading)."""
        return tuple(w.stop - w.start for w in self._window if isinstance(w, slice))

    @property
    def ndim(self):
        """Number of dimensions of the window."""
        return len(self.shape)

    @property
    def size(self):
        """Number of values in the window."""
        return math.prod(self.shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not all(k is Ellipsis or isinstance(k, (slice, int, np.integer)) for k in key):
            return np.asarray(self)[key]         # advanced indexing (masks, index arrays): read
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
            return np.asarray(self)[key]
        free = iter(key)
        window = []
        for w in self._window:
            if not isinstance(w, slice):
                window.append(w)
                continue
            k = _window(next(free), w.stop - w.start, w.start)
            if isinstance(k, slice) and k.step != 1:
                return np.asarray(self)[key]
            window.append(k)
        return LazyArray(self.reader, self.ext, tuple(window))

    def read(self):
        """The window's values: a new native-endian ndarray."""
        keys = dict(zip(self._axes, self._window))
        return self.reader.read(self.ext, ints=keys.get("int", slice(None)),
                                groups=keys.get("group", slice(None)), rows=keys.get("row", slice(None)),
                                cols=keys.get("col", slice(None)))

    def stored_bytes(self):
        """(path, offset, stored dtype) of the window's values in its file when the window is a
        whole extension stored unscaled (BSCALE 1, BZERO 0), else None."""
        reader = self.reader
        if (self.ext not in reader._present or reader._offset or reader._file_axes
                or self.shape != reader.ext_shape(self.ext)):
            return None
        stored = _unscaled_data(reader._open_hdul(), self.ext)
        return None if stored is None else (reader.path, *stored)

    def __array__(self, dtype=None, copy=None):
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def copy(self):
        """The window's values (read from disk): a new ndarray, as ``ndarray.copy``."""
        return self.read()

    def astype(self, dtype, copy=True):
        """The window's values (read from disk) as ``dtype``: a new ndarray."""
        return self.read().astype(dtype, copy=False)

    def __repr__(self):
        return f"LazyArray({self.reader.path!r}, {self.ext}, shape={self.shape}, dtype={self.dtype})"


class RampReader(SectionReader):
    """Read parts of a ramp file without loading the rest of it (for combining many big ramps).

    ``RampReader(path, step)`` checks the file's structure (truncation) and the keywords ``step``
    needs from the headers alone, as :func:`read_ramp` does, without reading any data.
    :meth:`read` then returns one section of SCI (float32 [DN]), GROUPDQ (uint8), PIXELDQ
    (uint32), ZEROFRAME (float32 (nints, ny, nx) [DN]) or the AVDRKCUR image (float32 (ny, nx),
    present only with that shape): only the requested integrations, groups and rows are read
    from disk. A missing GROUPDQ or PIXELDQ reads as zeros; :meth:`has` tells what is present.
    Use it as a context manager, or call :meth:`close`.

    Attributes: ``path``, ``header`` (primary), ``shape`` (nints, ngroups, ny, nx).
    """

    _main = "SCI"
    _zeros_if_absent = frozenset({"GROUPDQ", "PIXELDQ"})
    _dtypes = {"SCI": np.float32, "GROUPDQ": np.uint8, "PIXELDQ": np.uint32, "ZEROFRAME": np.float32,
               "AVDRKCUR": np.float32}
    _axes = {"SCI": ("int", "group", "row", "col"), "GROUPDQ": ("int", "group", "row", "col"),
             "PIXELDQ": ("row", "col"), "ZEROFRAME": ("int", "row", "col"), "AVDRKCUR": ("row", "col")}

    def __init__(self, path, step="inventory"):
        self.path = str(path)
        header, extensions = read_headers(self.path)
        if "SCI" not in extensions:
            raise InputError(self.path, "no SCI extension (a ramp file needs SCI, and optionally "
                                        "PIXELDQ, GROUPDQ)")
        shape = _ext_shape(extensions["SCI"])
        dummy = np.broadcast_to(np.zeros((), np.uint8), shape) if shape else None  # no data read
        _check_ramp_shape(self.path, dummy, header, step)
        self.header = header
        self.shape = shape
        self._present = {"SCI"}
        for name in ("GROUPDQ", "PIXELDQ", "ZEROFRAME"):
            if name in extensions and extensions[name].get("NAXIS", 0):
                got, want = _ext_shape(extensions[name]), self.ext_shape(name)
                if got != want:
                    raise InputError(self.path, f"{name} has shape {got}, expected {want}")
                self._present.add(name)
        avdrkcur = extensions.get("AVDRKCUR")       # dark_current's image (a ramp_fit input)
        if avdrkcur is not None and avdrkcur.get("NAXIS", 0) and _ext_shape(avdrkcur) == shape[2:]:
            self._present.add("AVDRKCUR")           # another shape is ignored, as ramp_fit does
        self._hdul = None

    def table_hdus(self, names=_CARRY_THROUGH):
        """Copies of the file's extensions named in ``names`` (the tables carried through the
        products: INT_TIMES, ...), in file order."""
        return [h.copy() for h in self._open_hdul()[1:] if h.name in names]


class CubeReader(SectionReader):
    """Sections of a ramp_fit product: a rateints (CubeModel: 3-D (nints, ny, nx)) or a rate
    (ImageModel: 2-D, read as one integration).

    ``CubeReader(path, extensions)`` checks from the headers alone that the file is readable and
    that each of ``extensions`` (default SCI and DQ) is present with SCI's shape; ``rateints=True``
    refuses a 2-D rate. :meth:`read` returns SCI/ERR/VAR_* as float32 [DN/s or (DN/s)^2] and DQ
    as uint32, shape (nints, rows, nx) or per integration.

    Attributes: ``path``, ``header`` (primary), ``shape`` (nints, ny, nx), ``ndim_on_disk``.
    """

    _main = "SCI"
    _dtypes = {"SCI": np.float32, "ERR": np.float32, "DQ": np.uint32, "VAR_POISSON": np.float32,
               "VAR_RNOISE": np.float32, "VAR_FLAT": np.float32}

    def __init__(self, path, extensions=("SCI", "DQ"), rateints=False):
        self.path = str(path)
        header, exts = read_headers(self.path)
        self.header = header
        shape = None
        for ext in ("SCI",) + tuple(e.upper() for e in extensions if e.upper() != "SCI"):
            if ext not in exts or not exts[ext].get("NAXIS", 0):
                raise InputError(self.path, f"rate product has no {ext} extension")
            got = _ext_shape(exts[ext])
            if rateints and len(got) != 3:
                raise InputError(self.path, f"a rateints file needs a 3-D {ext} extension "
                                            "(nints, ny, nx): is this a rate (2-D) file?")
            if len(got) not in (2, 3) or (shape is not None and got != shape):
                raise InputError(self.path, f"{ext} {got} / SCI {shape}: expected a 2-D rate or 3-D "
                                            "rateints product")
            shape = got if shape is None else shape
        self.ndim_on_disk = len(shape)
        self.shape = shape if len(shape) == 3 else (1,) + shape
        axes = ("int", "row", "col")
        self._axes = {ext: axes for ext in self._dtypes}
        self._present = {e for e in self._dtypes if e in exts and exts[e].get("NAXIS", 0)}
        for ext in self._present - {"SCI"}:
            if _ext_shape(exts[ext]) != shape:
                raise InputError(self.path, f"{ext} has shape {_ext_shape(exts[ext])}, SCI has {shape}")
        self._file_axes = {} if len(shape) == 3 else {ext: ("row", "col") for ext in self._dtypes}
        self._hdul = None


def _optional_array(hdul, name, shape, dtype, path):
    if name not in [h.name for h in hdul] or hdul[name].data is None:
        return np.zeros(shape, dtype)
    arr = hdul[name].data
    if arr.shape != tuple(shape):
        raise InputError(path, f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    return _native(arr, dtype)


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
        from .crds_refs import provenance  # references from the CRDS cache: R_<TYPE>, CRDS_CTX
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


def atomic_write(hdul, path):
    """Write ``hdul`` to ``path`` through :func:`atomic_path`, with NEXTEND set to detect truncation."""
    hdul[0].header["NEXTEND"] = (len(hdul) - 1, "number of extensions (detects truncation)")
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=False)


def write_ramp(ramp, path, step=None, inputs=(), params=None):
    """Write ``ramp`` in the RampModel layout; mark ``step`` COMPLETE (S_* keyword) and add HISTORY.

    SCI, PIXELDQ, GROUPDQ (uint8), ZEROFRAME when the ramp has one (SCI and ZEROFRAME with
    BUNIT = 'DN'), then ``ramp.tables``; written by :class:`ImageFileWriter`. An array of the
    ramp that is a :class:`LazyArray` of another file (a step that reads SCI by rows and does not
    change it: jump) is copied from that file, never whole in memory.
    """
    header = ramp.header.copy()
    if step in keywords.CAL_STEP and header.get(keywords.CAL_STEP[step]) != "SKIPPED":
        header[keywords.CAL_STEP[step]] = "COMPLETE"  # a step that skipped itself says so
    add_history(header, step, inputs, params)
    shape = tuple(ramp.data.shape)
    arrays = [("SCI", ramp.data, np.float32, shape, "DN"), ("PIXELDQ", ramp.pixeldq, np.uint32, shape[2:], None),
              ("GROUPDQ", ramp.groupdq, np.uint8, shape, None)]
    if ramp.zeroframe is not None:
        arrays.append(("ZEROFRAME", ramp.zeroframe, np.float32, (shape[0],) + shape[2:], "DN"))
    for name, arr, _, want, _ in arrays:
        if tuple(np.shape(arr)) != want:
            raise ValueError(f"ramp {name} has shape {np.shape(arr)}, expected {want}")
    images = [(name, dtype, want, bunit) for name, _, dtype, want, bunit in arrays]
    with ImageFileWriter(path, header, images, [t.copy() for t in ramp.tables]) as writer:
        for name, arr, *_ in arrays:
            if isinstance(arr, LazyArray):
                writer.copy_from(name, arr)
            else:
                writer.write(name, 0, arr)


def write_uncal(data, header, path, tables=()):
    """Write a level-1b raw file: SCI uint16 (nints, ngroups, ny, nx) plus the primary header."""
    data = np.asarray(data)
    if data.dtype != np.uint16:
        raise ValueError(f"uncal SCI must be uint16, got {data.dtype}")
    hdus = [fits.PrimaryHDU(header=header), fits.ImageHDU(data, name="SCI")]
    hdus[1].header["BUNIT"] = "DN"
    hdus += list(tables)
    atomic_write(fits.HDUList(hdus), path)


# --------------------------------------------------------------------------------------------
# Reference files
# --------------------------------------------------------------------------------------------
# The reference types' tables LAYOUT, REFTYPES, MAIN and DATAMODL are detcal.reftypes' (imported
# above: the same dicts), which the step registry reads without importing astropy.


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
    present = int(np.bitwise_or.reduce(dq, axis=None)) if dq.size else 0
    same = 0    # single-bit rows whose file bit is the JWST bit: copied with one mask (speed)
    for row in table:
        name = str(row["NAME"]).strip().upper()
        value = int(row["VALUE"])
        if name not in dqflags.PIXEL or not present & value:
            continue
        if value == dqflags.PIXEL[name] and value & (value - 1) == 0:
            same |= value
        else:
            out[(dq & np.uint32(value)) != 0] |= np.uint32(dqflags.PIXEL[name])
    if same:
        out |= dq & np.uint32(same)
    return out


def _ndims(spec):
    return spec if isinstance(spec, tuple) else (spec,)


def _check_reftype(path, header, reftype):
    found = keywords.optional(header, "REFTYPE")
    if found and found.upper() != reftype:
        raise InputError(path, f"REFTYPE is {found!r}, but it was given as the {reftype} reference")


def read_reference(path, reftype, like=None, lazy=False):
    """Read a reference file of type ``reftype`` (``'SUPERBIAS'``, ...).

    ``like`` (a :class:`Ramp`) makes the arrays match its subarray: a full-frame reference is cut
    with SUBSTRT1/2 of both files; an incompatible shape is an InputError naming the file.
    ``lazy=True``: the checks are made from the headers alone and every array of 3 or more
    dimensions is a :class:`LazyArray` (read, cut, by sections when used: a DARK by chunks of
    groups, its ERR never unless asked for); 2-D arrays are read.
    """
    path = str(path)
    reftype = reftype.upper()
    if lazy and reftype != "RSCD":
        return _lazy_reference(path, reftype, like)
    layout = LAYOUT[reftype]
    with open_fits(path) as hdul:
        header = hdul[0].header.copy()
        _check_reftype(path, header, reftype)
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
            arrays[ext] = _native(arr, dtype)
        if "DQ" in arrays and "DQ_DEF" in names:
            arrays["DQ"] = _apply_dq_def(arrays["DQ"], hdul["DQ_DEF"].data)
    shapes = {arr.shape[-2:] for arr in arrays.values()}
    if len(shapes) != 1:
        raise InputError(path, f"extensions disagree on the image shape: {sorted(shapes)}")
    if like is not None:
        arrays = {k: _cut_to(v, path, header, like) for k, v in arrays.items()}
    return _reference_of(reftype, arrays, header, path)


def _reference_of(reftype, arrays, header, path):
    main = MAIN.get(reftype, "SCI")
    ref = Reference(reftype, arrays.pop(main), header=header, path=path)
    ref.dq = arrays.pop("DQ", None) if main != "DQ" else ref.data
    ref.err = arrays.pop("ERR", None)
    ref.extras = arrays
    return ref


def _lazy_reference(path, reftype, like):
    reader = ReferenceReader(path, reftype, like)
    arrays = {ext: reader.lazy(ext) if len(reader.ext_shape(ext)) >= 3 else reader.read(ext)
              for ext in reader.extensions}
    return _reference_of(reftype, arrays, reader.header, path)


def _cut_window(image_shape, path, ref_header, ramp):
    """((ny, nx), (y0, x0)): the ramp's subarray inside a reference image of ``image_shape``
    (SUBSTRT/SUBSIZE of both files), or an InputError naming the reference."""
    ny, nx = (ramp.shape if hasattr(ramp, "shape") else ramp.data.shape)[-2:]   # Ramp, RampReader
    sy = keywords.value(ramp.header, "SUBSTRT2", ramp.path) - 1
    sx = keywords.value(ramp.header, "SUBSTRT1", ramp.path) - 1
    ry = (keywords.optional(ref_header, "SUBSTRT2", 1) or 1) - 1
    rx = (keywords.optional(ref_header, "SUBSTRT1", 1) or 1) - 1
    y0, x0 = sy - ry, sx - rx
    rny, rnx = image_shape
    if y0 < 0 or x0 < 0 or y0 + ny > rny or x0 + nx > rnx:
        raise InputError(path, f"reference covers {rnx} x {rny} pixels starting at SUBSTRT1/2="
                               f"{rx + 1}/{ry + 1}, which does not contain the science array of "
                               f"{os.path.basename(ramp.path)} "
                               f"({nx} x {ny} at SUBSTRT1/2={sx + 1}/{sy + 1})")
    return (ny, nx), (y0, x0)


def _cut_to(arr, path, ref_header, ramp):
    """Cut a reference array to the ramp's subarray (SUBSTRT/SUBSIZE of both files)."""
    (ny, nx), (y0, x0) = _cut_window(arr.shape[-2:], path, ref_header, ramp)
    if (ny, nx) == arr.shape[-2:] and (y0, x0) == (0, 0):
        return arr
    return np.ascontiguousarray(arr[..., y0:y0 + ny, x0:x0 + nx])


class ReferenceReader(SectionReader):
    """Sections of a reference file's image extensions, cut to a science subarray (``like``).

    ``ReferenceReader(path, reftype, like)`` makes from the headers alone every check
    :func:`read_reference` makes (REFTYPE, required extensions, number of dimensions, one image
    shape, the science subarray inside the reference) and reads the DQ_DEF table, which
    :meth:`read` applies to DQ sections. Axes: the last two are ``row``, ``col`` (subarray
    coordinates when cut); a 3-D array's first is ``group``; a 4-D array's are ``int``, ``group``.

    Attributes: ``path``, ``header`` (primary), ``reftype``, ``shape`` (of the main array),
    ``extensions`` (the image extensions present, by :data:`LAYOUT` order).
    """

    _AXES = {2: ("row", "col"), 3: ("group", "row", "col"), 4: ("int", "group", "row", "col")}

    def __init__(self, path, reftype, like=None):
        self.path = str(path)
        self.reftype = reftype = reftype.upper()
        layout = LAYOUT[reftype]
        with open_fits(self.path, read_data=False) as hdul:
            header = hdul[0].header.copy()
            names = [h.name for h in hdul]
            exts = {h.name: h.header.copy() for h in hdul[1:]}
            dq_def = hdul["DQ_DEF"].data if "DQ_DEF" in names and "DQ" in layout else None  # read now
        _check_reftype(self.path, header, reftype)
        self.header = header
        self._dq_def = dq_def
        self._main = MAIN.get(reftype, "SCI")
        self._dtypes, self._axes, self._shapes = {}, {}, {}
        for ext, (dtype, ndim, required) in layout.items():
            shape = _ext_shape(exts[ext]) if ext in exts else ()
            if not shape:
                if required:
                    raise InputError(self.path, f"{reftype} reference has no {ext} extension")
                continue
            if len(shape) not in _ndims(ndim):
                raise InputError(self.path, f"{ext} has {len(shape)} dimensions (shape {shape}); a {reftype} "
                                            f"reference needs {' or '.join(map(str, _ndims(ndim)))}")
            self._dtypes[ext], self._axes[ext], self._shapes[ext] = dtype, self._AXES[len(shape)], shape
        images = {s[-2:] for s in self._shapes.values()}
        if len(images) != 1:
            raise InputError(self.path, f"extensions disagree on the image shape: {sorted(images)}")
        self.extensions = tuple(self._shapes)
        self._present = set(self._shapes)
        if like is not None:
            (ny, nx), (y0, x0) = _cut_window(images.pop(), self.path, header, like)
            self._offset = {"row": y0, "col": x0}
            self._shapes = {e: s[:-2] + (ny, nx) for e, s in self._shapes.items()}
        self.shape = self._shapes[self._main]
        self._hdul = None

    def ext_shape(self, ext):
        """Shape of extension ``ext`` (cut to the subarray when read ``like`` a ramp)."""
        return self._shapes[ext.upper()]

    def _convert(self, ext, arr):
        if ext == "DQ" and self._dq_def is not None:
            return _apply_dq_def(arr, self._dq_def)
        return arr


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
    atomic_write(fits.HDUList(hdus), path)


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
    ``ramp.tables``) is written too. SCI and ERR carry BUNIT = 'DN/s'. One :class:`RateWriter`
    call with every row (the one definition of the layout).
    """
    shape = np.shape(products["sci"])
    if len(shape) not in (2, 3):
        raise ValueError(f"rate products must be 2-D or 3-D, got SCI of shape {shape}")
    for key, *_ in RATE_EXTENSIONS:
        if np.shape(products[key]) != shape:
            raise ValueError(f"rate product {key} has shape {np.shape(products[key])}, SCI has {shape}")
    with RateWriter(path, shape, header, tables, step, inputs, params) as writer:
        writer.write(slice(None), products)


class ImageFileWriter:
    """A FITS file of image extensions (then table extensions) whose values are written by parts.

    ``ImageFileWriter(path, header, images, tables)`` with ``images`` a list of (EXTNAME, dtype,
    shape, BUNIT or None): used as a context manager, it makes the file that astropy writes for
    ``HDUList([PrimaryHDU(header=header), ImageHDU(array, name=EXTNAME) (BUNIT set), ...,
    *tables])`` through :func:`atomic_write` (NEXTEND set, no checksum), byte for byte, without
    any whole array in memory: on entry the headers (made by astropy for arrays of that dtype
    and shape) and the tables are written at their offsets and the file is sized; then
    :meth:`write` puts values at their offsets with plain positional writes (big-endian; unsigned
    integers with the FITS BZERO offset), and :meth:`copy_from` copies an extension's data from
    another file. No memory map, so nothing of the product stays resident. The file goes
    through :func:`atomic_path`: it appears at ``path`` only when the ``with`` block ends without
    an exception and every value of every extension was written once.
    """

    #: Most bytes converted to big-endian at once (a block is written in pieces this size).
    PIECE = 1 << 16

    def __init__(self, path, header, images, tables=()):
        self.path = str(path)
        hdus = [fits.PrimaryHDU(header=header)]
        for extname, dtype, shape, bunit in images:
            # the header astropy makes for a whole array of this dtype and shape (no data made)
            hdu = fits.ImageHDU(np.broadcast_to(np.zeros((), dtype), tuple(shape)), name=extname)
            if bunit:
                hdu.header["BUNIT"] = bunit
            hdus.append(hdu)
        hdul = fits.HDUList(hdus + list(tables))
        hdul[0].header["NEXTEND"] = (len(hdul) - 1, "number of extensions (detects truncation)")
        hdul.update_extend()        # as HDUList.writeto does
        self._pieces = [(0, hdul[0].header.tostring().encode("ascii"))]
        self.images = {}
        pos = len(self._pieces[0][1])
        for (extname, dtype, shape, _), hdu in zip(images, hdul[1:]):
            head = hdu.header.tostring().encode("ascii")
            self._pieces.append((pos, head))
            dtype, shape = np.dtype(dtype), tuple(int(n) for n in shape)
            self.images[extname] = (pos + len(head), dtype, shape)
            pos += len(head) + _padded(math.prod(shape) * dtype.itemsize)
        for table in hdul[1 + len(images):]:
            self._pieces.append((pos, _hdu_bytes(table)))
            pos += len(self._pieces[-1][1])
        self.size = pos
        self._written = dict.fromkeys(self.images, 0)
        self._stack = None
        self._fd = None

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            self._fd = os.open(tmp, os.O_WRONLY)
            stack.callback(os.close, self._fd)
            for offset, data in self._pieces:
                self._pwrite(data, offset)
            os.ftruncate(self._fd, self.size)      # data and padding not yet written read as 0
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc):
        stack, self._stack = self._stack, None
        self._fd = None
        if exc[0] is None:
            problem = self._incomplete()
            if problem:
                err = ValueError(f"{self.path}: {problem}")
                stack.__exit__(ValueError, err, None)
                raise err
        return stack.__exit__(*exc)

    def _incomplete(self):
        """What was not written (None when every value was written once)."""
        for extname, (_, _, shape) in self.images.items():
            if self._written[extname] != math.prod(shape):
                return (f"{extname}: {self._written[extname]} of {math.prod(shape)} values written "
                        "(each must be written once)")
        return None

    def _pwrite(self, data, offset):
        view = memoryview(data).cast("B")
        while view.nbytes:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def write(self, extname, start, values):
        """Write ``values`` (any shape; C order) at flat index ``start`` of extension ``extname``."""
        if self._fd is None:
            raise ValueError(f"{type(self).__name__}.write outside its 'with' block")
        offset, dtype, shape = self.images[extname]
        flat = np.asarray(values).reshape(-1)
        if start < 0 or start + flat.size > math.prod(shape):
            raise ValueError(f"{extname}: values {start}..{start + flat.size} outside its {shape}")
        step = max(1, self.PIECE // dtype.itemsize)
        for a in range(0, flat.size, step):
            piece = np.asarray(flat[a:a + step], dtype)
            if dtype.kind == "u" and dtype.itemsize > 1:     # FITS: signed with BZERO = 2**(bits-1)
                piece = np.bitwise_xor(piece, dtype.type(1 << (8 * dtype.itemsize - 1)))
            self._pwrite(piece.astype(dtype.newbyteorder(">")), offset + (start + a) * dtype.itemsize)
        self._written[extname] += flat.size

    def copy_from(self, extname, lazy):
        """Write extension ``extname`` from ``lazy``, a :class:`LazyArray` of a whole extension
        of another file with its values: the stored bytes are copied as they are (no reading into
        memory) when it is stored as this file stores it (same big-endian dtype, no scaling),
        otherwise its planes are read and written one at a time."""
        offset, dtype, shape = self.images[extname]
        if lazy.shape != shape:
            raise ValueError(f"{extname}: source of shape {lazy.shape}, expected {shape}")
        source = lazy.stored_bytes()
        if source is not None and dtype.kind == "f":
            path, src_offset, src_dtype = source
            if src_dtype == dtype.newbyteorder(">"):
                _copy_bytes(path, src_offset, self._fd, offset, math.prod(shape) * dtype.itemsize)
                self._written[extname] += math.prod(shape)
                return
        per_plane = math.prod(shape[-2:])
        for n, index in enumerate(np.ndindex(shape[:-2])):
            self.write(extname, n * per_plane, lazy[index] if index else lazy)


def _copy_bytes(src_path, src_offset, dst_fd, dst_offset, nbytes):
    """Copy ``nbytes`` of a file into an open one at the given offsets (in the kernel when it can)."""
    with open(src_path, "rb") as src:
        fd = src.fileno()
        while nbytes:
            try:
                n = os.copy_file_range(fd, dst_fd, min(nbytes, 1 << 30), src_offset, dst_offset)
            except (AttributeError, OSError):
                n = 0
            if n <= 0:            # not supported here (or across file systems): read and write
                n = os.pwrite(dst_fd, os.pread(fd, min(nbytes, 1 << 22), src_offset), dst_offset)
                if n <= 0:
                    raise OSError(f"cannot copy data from {src_path}")
            nbytes, src_offset, dst_offset = nbytes - n, src_offset + n, dst_offset + n


class RateWriter(ImageFileWriter):
    """A rate (2-D) or rateints (3-D) product written by blocks of rows as they are computed.

    ``with RateWriter(path, shape, header, tables, step, inputs, params) as w: w.write(rows,
    products)``: the file is the one :func:`write_rate` writes for the whole arrays, byte for
    byte (primary header with S_RAMP, DATAMODL, HISTORY, NEXTEND; SCI, ERR, DQ, VAR_POISSON,
    VAR_RNOISE with BUNIT on SCI and ERR; a 3-D product's INT_TIMES table; no checksum), written
    as :class:`ImageFileWriter` does (atomic; every row must be written).

    shape : (ny, nx) for a rate, (nints, ny, nx) for a rateints
    header : the ramp's primary header (copied); tables : its extra HDUs (INT_TIMES is written
        for a rateints); step, inputs, params : provenance (HISTORY), as :func:`add_history`
    """

    def __init__(self, path, shape, header, tables=(), step="ramp_fit", inputs=(), params=None):
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (2, 3):
            raise ValueError(f"rate products must be 2-D or 3-D, got shape {self.shape}")
        header = header.copy()
        header["S_RAMP"] = "COMPLETE"
        header["DATAMODL"] = "ImageModel" if len(self.shape) == 2 else "CubeModel"
        add_history(header, step, inputs, params)
        tables = [t.copy() for t in tables if t.name == "INT_TIMES"] if len(self.shape) == 3 else []
        super().__init__(path, header, [(extname, dtype, self.shape, bunit)
                                        for _, extname, dtype, bunit in RATE_EXTENSIONS], tables)
        self._rows = np.zeros(self.shape[-2], bool)

    def _incomplete(self):
        if not self._rows.all():
            missing = np.flatnonzero(~self._rows)
            return (f"rows {missing[0]}..{missing[-1]} of the rate product were never written "
                    f"({missing.size} rows)")
        return super()._incomplete()

    def write(self, rows, products):
        """Write rows ``rows`` (a slice, or (r0, r1)) of every product: ``products`` maps 'sci',
        'err', 'dq', 'var_poisson', 'var_rnoise' to arrays of shape (r1 - r0, nx) (rate) or
        (nints, r1 - r0, nx) (rateints)."""
        ny, nx = self.shape[-2:]
        r0, r1, _ = (rows if isinstance(rows, slice) else slice(*rows)).indices(ny)
        r1 = max(r0, r1)
        want = self.shape[:-2] + (r1 - r0, nx)
        nints = self.shape[0] if len(self.shape) == 3 else 1
        for key, extname, _, _ in RATE_EXTENSIONS:
            arr = np.asarray(products[key])
            if arr.shape != want:
                raise ValueError(f"rate product {key}: block of shape {arr.shape}, expected {want}")
            arr = arr.reshape(nints, r1 - r0, nx)
            for i in range(nints):
                super().write(extname, (i * ny + r0) * nx, arr[i])
        self._rows[r0:r1] = True


def _padded(nbytes):
    """``nbytes`` rounded up to whole 2880-byte FITS blocks."""
    return -(-nbytes // 2880) * 2880


def _hdu_bytes(hdu):
    """The bytes astropy writes for a (table) extension ``hdu``, header and padded data."""
    buf = io_module.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf, checksum=False)
    return buf.getvalue()[len(fits.PrimaryHDU().header.tostring()):]
