"""io.RateWriter: rate/rateints products written by blocks of rows, byte for byte the file that
astropy writes for the whole arrays (the layout io.write_rate had before it became one call of
the writer), and no file left behind when the writing fails."""

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
