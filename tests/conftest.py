"""Shared test helpers: ramps, headers and reference files in memory, and a tmp-dir writer.

Plain functions (import them: ``from conftest import make_ramp``) build objects in memory; the
``fits_writer`` fixture writes them to the test's ``tmp_path`` through :mod:`detcal.io`.

    ramp = make_ramp(2, 5, 8, 10, instrument="MIRI", NFRAMES=4, data=my_array)
    ref = make_reference("SATURATION", ramp, data=thresholds, dq=flags)
    path = fits_writer.ramp(ramp)                     # RampModel layout
    path = fits_writer.reference("SUPERBIAS", ramp, SCI=bias, DQ=dq)
"""

import numpy as np
import pytest
from astropy.io import fits

from detcal import io

#: Per-instrument defaults: DETECTOR, EXP_TYPE, READPATT, TFRAME [s].
INSTRUMENTS = {
    "NIRCAM": ("NRCA1", "NRC_DARK", "RAPID", 10.73676),
    "NIRISS": ("NIS", "NIS_DARK", "NISRAPID", 10.73676),
    "NIRSPEC": ("NRS1", "NRS_DARK", "NRSRAPID", 10.73676),
    "FGS": ("GUIDER1", "FGS_DARK", "FGSRAPID", 10.73676),
    "MIRI": ("MIRIMAGE", "MIR_DARKIMG", "FAST", 2.77504),
}


def make_header(nints, ngroups, ny, nx, instrument="NIRCAM", **keywords):
    """Primary header of a ramp with every keyword any step reads.

    Defaults: a full frame of its own size (SUBARRAY='FULL', SUBSTRT1/2=1, SUBSIZE from ny, nx),
    NFRAMES=1, GROUPGAP=0, FASTAXIS=1, SLOWAXIS=2, NOUTPUTS 4 (full frame) or 1, TGROUP =
    (NFRAMES+GROUPGAP)*TFRAME. ``keywords`` (upper-case FITS names) override anything; a value of
    None deletes the keyword (to test missing-keyword errors).
    """
    instrument = instrument.upper()
    detector, exp_type, readpatt, tframe = INSTRUMENTS[instrument]
    header = fits.Header()
    header["TELESCOP"] = "JWST"
    header["INSTRUME"] = instrument
    header["DETECTOR"] = detector
    header["EXP_TYPE"] = exp_type
    header["READPATT"] = readpatt
    header["NINTS"] = nints
    header["NGROUPS"] = ngroups
    header["NFRAMES"] = 1
    header["GROUPGAP"] = 0
    header["TFRAME"] = tframe
    header["SUBARRAY"] = "FULL"
    header["SUBSTRT1"] = 1
    header["SUBSTRT2"] = 1
    header["SUBSIZE1"] = nx
    header["SUBSIZE2"] = ny
    header["FASTAXIS"] = 1
    header["SLOWAXIS"] = 2
    header["EXPSTART"] = 60000.0
    header["ZEROFRAM"] = False
    for key, val in keywords.items():
        if val is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = val
    if "NOUTPUTS" not in keywords:
        header["NOUTPUTS"] = 4 if str(header.get("SUBARRAY", "FULL")).upper() == "FULL" else 1
    if "TGROUP" not in keywords and "TFRAME" in header:
        header["TGROUP"] = (header.get("NFRAMES", 1) + header.get("GROUPGAP", 0)) * header["TFRAME"]
    return header


def make_ramp(nints, ngroups, ny, nx, instrument="NIRCAM", *, data=None, pixeldq=None,
              groupdq=None, path="<memory>", **keywords):
    """A :class:`detcal.io.Ramp` in memory; arrays default to zeros of the right dtype."""
    shape = (nints, ngroups, ny, nx)
    data = np.zeros(shape, np.float32) if data is None else np.asarray(data, np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32) if pixeldq is None else np.asarray(pixeldq, np.uint32)
    groupdq = np.zeros(shape, np.uint8) if groupdq is None else np.asarray(groupdq, np.uint8)
    assert data.shape == shape and groupdq.shape == shape and pixeldq.shape == (ny, nx)
    header = make_header(nints, ngroups, ny, nx, instrument, **keywords)
    return io.Ramp(data, pixeldq, groupdq, header, path)


def reference_meta(like, **keywords):
    """Keywords for :func:`detcal.io.reference_header` taken from a Ramp or header ``like``."""
    header = like.header if isinstance(like, io.Ramp) else like
    meta = {k: header[k] for k in ("INSTRUME", "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2",
                                   "SUBSIZE1", "SUBSIZE2", "READPATT", "NFRAMES", "NGROUPS",
                                   "GROUPGAP", "EXP_TYPE") if k in header}
    meta.update(keywords)
    return meta


def make_reference_header(reftype, like, descrip=None, **keywords):
    """A complete reference-file primary header matching a Ramp (or ramp header) ``like``."""
    return io.reference_header(reftype, reference_meta(like, **keywords),
                               descrip or f"test {reftype.lower()} reference")


def make_reference(reftype, like, *, data=None, dq=None, err=None, path="<memory>", **extras):
    """A :class:`detcal.io.Reference` in memory (arrays as given, header matching ``like``).

    As :func:`detcal.io.read_reference` does, a MASK's ``data`` is its ``dq``.
    """
    if reftype.upper() == "MASK" and data is None:
        data = dq
    return io.Reference(reftype.upper(), data, dq=dq, err=err,
                        header=make_reference_header(reftype, like), path=path, extras=extras)


class FitsWriter:
    """Writes ramps, uncal files and references into one directory; methods return the path."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, name):
        return str(self.directory / name)

    def ramp(self, ramp, name="test_ramp.fits", **kwargs):
        path = self.path(name)
        io.write_ramp(ramp, path, **kwargs)
        return path

    def uncal(self, data, header, name="test_uncal.fits"):
        path = self.path(name)
        io.write_uncal(np.asarray(data, np.uint16), header, path)
        return path

    def reference(self, reftype, like, name=None, header=None, **arrays):
        """``arrays`` are extension name -> array (``SCI=..., DQ=...``; RSCD: RSCD_GROUP_SKIP=...)."""
        path = self.path(name or f"test_{reftype.lower()}.fits")
        header = header if header is not None else make_reference_header(reftype, like)
        io.write_reference(path, reftype, arrays, header)
        return path


@pytest.fixture
def fits_writer(tmp_path):
    """A :class:`FitsWriter` on the test's ``tmp_path``."""
    return FitsWriter(tmp_path)
