"""io.RateWriter and io.write_ramp (io.ImageFileWriter): products written by parts, byte for
byte the files astropy writes for the whole arrays (the layouts of io.write_rate and
io.write_ramp before they wrote through the writer), a lazy SCI copied from its file, and no
file left behind when the writing fails."""

import os

import numpy as np
import pytest
from astropy.io import fits

from detcal import io

from conftest import make_header

NY, NX = 13, 11


def astropy_rate(path, products, header, tables=(), step="ramp_fit", inputs=(), params=None):
    """The whole-array write (io.write_rate before the RateWriter), the reference layout."""
    ndim = np.ndim(products["sci"])
    header = header.copy()
    header["S_RAMP"] = "COMPLETE"
    header["DATAMODL"] = "ImageModel" if ndim == 2 else "CubeModel"
    io.add_history(header, step, inputs, params)
    hdus = [fits.PrimaryHDU(header=header)]
    for key, extname, dtype, bunit in io.RATE_EXTENSIONS:
        hdu = fits.ImageHDU(np.asarray(products[key], dtype=dtype), name=extname)
        if bunit:
            hdu.header["BUNIT"] = bunit
        hdus.append(hdu)
    if ndim == 3:
        hdus += [t.copy() for t in tables if t.name == "INT_TIMES"]
    io.atomic_write(fits.HDUList(hdus), path)


def int_times(nints):
    cols = [fits.Column("integration_number", "J", array=np.arange(1, nints + 1)),
            fits.Column("int_start_MJD_UTC", "D", array=60000.0 + np.arange(nints) * 1e-3)]
    return fits.BinTableHDU.from_columns(cols, name="INT_TIMES")


def products(shape, seed=0):
    rng = np.random.default_rng(seed)
    out = {k: rng.normal(0, 3, shape).astype(np.float32) for k in ("sci", "err", "var_poisson", "var_rnoise")}
    out["sci"].flat[::7] = np.nan
    out["dq"] = rng.choice(np.array([0, 1, 2, 4, 1 << 31, 0xFFFFFFFF], np.uint32), shape)
    return out


@pytest.mark.parametrize("nints", [None, 1, 3])
def test_block_writes_are_the_whole_array_file(tmp_path, nints):
    header = make_header(nints or 2, 4, NY, NX)
    shape = (NY, NX) if nints is None else (nints, NY, NX)
    prod = products(shape)
    tables = [int_times(nints or 2)]
    params = {"suppress_one_group": True}
    astropy_rate(tmp_path / "ref.fits", prod, header, tables, inputs=["a.fits", "b.fits"], params=params)
    ref = (tmp_path / "ref.fits").read_bytes()
    io.write_rate(tmp_path / "whole.fits", prod, header, tables, inputs=["a.fits", "b.fits"], params=params)
    assert (tmp_path / "whole.fits").read_bytes() == ref
    for rows in (1, 4, 13):
        path = tmp_path / f"rows{rows}.fits"
        with io.RateWriter(path, shape, header, tables, inputs=["a.fits", "b.fits"], params=params) as w:
            starts = list(range(0, NY, rows))
            for r0 in starts[::-1]:       # any order
                r1 = min(NY, r0 + rows)
                w.write((r0, r1), {k: v[..., r0:r1, :] for k, v in prod.items()})
        assert path.read_bytes() == ref, rows


def test_the_file_reads_back(tmp_path):
    prod = products((2, NY, NX), seed=3)
    io.write_rate(tmp_path / "x.fits", prod, make_header(2, 4, NY, NX), [int_times(2)])
    with fits.open(tmp_path / "x.fits") as hdul:
        np.testing.assert_array_equal(hdul["DQ"].data, prod["dq"])
        np.testing.assert_array_equal(hdul["SCI"].data, prod["sci"])
        assert hdul["SCI"].header["BUNIT"] == "DN/s" and hdul[0].header["NEXTEND"] == 6


def test_no_file_after_a_failure_or_missing_rows(tmp_path):
    prod = products((NY, NX))
    header = make_header(1, 4, NY, NX)
    path = tmp_path / "rate.fits"
    with pytest.raises(RuntimeError, match="boom"):
        with io.RateWriter(path, (NY, NX), header) as w:
            w.write((0, 5), {k: v[0:5] for k, v in prod.items()})
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="rows 5..12"):
        with io.RateWriter(path, (NY, NX), header) as w:
            w.write((0, 5), {k: v[0:5] for k, v in prod.items()})
    with pytest.raises(ValueError, match="block of shape"):
        with io.RateWriter(path, (NY, NX), header) as w:
            w.write((0, 5), {k: v[0:4] for k, v in prod.items()})
    assert os.listdir(tmp_path) == []


def astropy_ramp(ramp, path, step=None, inputs=(), params=None):
    """The whole-array write of io.write_ramp before the ImageFileWriter (the reference layout)."""
    header = ramp.header.copy()
    if step:
        header["S_JUMP"] = "COMPLETE"
    io.add_history(header, step, inputs, params)
    hdus = [fits.PrimaryHDU(header=header),
            fits.ImageHDU(np.asarray(ramp.data, np.float32), name="SCI"),
            fits.ImageHDU(np.asarray(ramp.pixeldq, np.uint32), name="PIXELDQ"),
            fits.ImageHDU(np.asarray(ramp.groupdq, np.uint8), name="GROUPDQ")]
    hdus[1].header["BUNIT"] = "DN"
    if ramp.zeroframe is not None:
        hdus.append(fits.ImageHDU(np.asarray(ramp.zeroframe, np.float32), name="ZEROFRAME"))
        hdus[-1].header["BUNIT"] = "DN"
    hdus += [t.copy() for t in ramp.tables]
    io.atomic_write(fits.HDUList(hdus), path)


@pytest.mark.parametrize("zeroframe", [False, True])
def test_write_ramp_is_the_whole_array_file_and_copies_lazy_sci(tmp_path, zeroframe):
    from conftest import make_ramp
    rng = np.random.default_rng(5)
    shape = (2, 3, NY, NX)
    ramp = make_ramp(*shape, data=rng.normal(0, 9, shape).astype(np.float32),
                     groupdq=rng.integers(0, 255, shape).astype(np.uint8),
                     pixeldq=rng.choice(np.array([0, 1, 1 << 31], np.uint32), (NY, NX)))
    ramp.tables = [int_times(2), fits.ImageHDU(np.ones((NY, NX), np.float32), name="AVDRKCUR")]
    if zeroframe:
        ramp.zeroframe = rng.normal(0, 9, (2, NY, NX)).astype(np.float32)
    astropy_ramp(ramp, tmp_path / "ref.fits", "jump", ["in.fits"], {"a": 1})
    ref = (tmp_path / "ref.fits").read_bytes()
    io.write_ramp(ramp, tmp_path / "mine.fits", "jump", ["in.fits"], {"a": 1})
    assert (tmp_path / "mine.fits").read_bytes() == ref
    # SCI (and ZEROFRAME) of another file, never read into memory: copied as stored
    with io.RampReader(tmp_path / "mine.fits") as reader:
        ramp.data = reader.lazy("SCI")
        if zeroframe:
            ramp.zeroframe = reader.lazy("ZEROFRAME")
        assert ramp.data.stored_bytes() is not None
        io.write_ramp(ramp, tmp_path / "copied.fits", "jump", ["in.fits"], {"a": 1})
    assert (tmp_path / "copied.fits").read_bytes() == ref


def test_write_ramp_from_a_raw_file_sci_converts_its_planes(tmp_path):
    """A lazy SCI stored otherwise (a raw uint16 file) is read plane by plane: the same file as
    writing the ramp read whole."""
    rng = np.random.default_rng(6)
    header = make_header(2, 3, NY, NX)
    io.write_uncal(rng.integers(0, 65535, (2, 3, NY, NX)).astype(np.uint16), header, tmp_path / "raw.fits")
    whole = io.read_ramp(tmp_path / "raw.fits")
    io.write_ramp(whole, tmp_path / "whole.fits", "dq_init")
    with io.RampReader(tmp_path / "raw.fits") as reader:
        whole.data = reader.lazy("SCI")
        assert whole.data.stored_bytes() is None           # BZERO = 32768
        io.write_ramp(whole, tmp_path / "lazy.fits", "dq_init")
    assert (tmp_path / "lazy.fits").read_bytes() == (tmp_path / "whole.fits").read_bytes()


def test_row_reads_are_astropy_sections(tmp_path):
    """SectionReader reads whole rows of unscaled extensions by positional reads (one array, no
    pieces): the values of astropy's section for every kind of key; cut columns and scaled
    extensions (uint32 PIXELDQ, BZERO) still go through astropy."""
    from conftest import make_ramp
    rng = np.random.default_rng(8)
    shape = (3, 4, NY, NX)
    ramp = make_ramp(*shape, data=rng.normal(0, 9, shape).astype(np.float32),
                     groupdq=rng.integers(0, 255, shape).astype(np.uint8),
                     pixeldq=rng.integers(0, 1 << 32, (NY, NX), dtype=np.uint64).astype(np.uint32))
    io.write_ramp(ramp, tmp_path / "r.fits")
    keys = [dict(), dict(rows=slice(3, 9)), dict(ints=1, rows=slice(0, 2)), dict(ints=slice(1, 3), groups=2),
            dict(groups=slice(0, 4, 2), rows=4), dict(rows=slice(5, 5)), dict(cols=slice(2, 7)),
            dict(ints=2, groups=3, rows=12)]
    with io.RampReader(tmp_path / "r.fits") as reader, fits.open(tmp_path / "r.fits") as hdul:
        for key in keys:
            for ext, arr in (("SCI", ramp.data), ("GROUPDQ", ramp.groupdq)):
                index = tuple(key.get(a, slice(None)) for a in ("ints", "groups", "rows", "cols"))
                got = reader.read(ext, **key)
                np.testing.assert_array_equal(got, arr[index])
                np.testing.assert_array_equal(got, hdul[ext].section[index])
                assert got.dtype == arr.dtype and got.dtype.isnative
        assert reader._read_rows("SCI", (0, 0, slice(0, NY, 1), slice(2, 7, 1))) is None
        assert reader._read_rows("PIXELDQ", (slice(0, NY, 1), slice(0, NX, 1))) is None
        np.testing.assert_array_equal(reader.read("PIXELDQ", rows=slice(2, 6)), ramp.pixeldq[2:6])
