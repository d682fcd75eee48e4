"""detcal.io: round trips, stdatamodels compatibility, subarray cutting and clear input errors."""

import os
import warnings

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags, io
from detcal.errors import InputError

from conftest import make_header, make_ramp, make_reference_header

NY, NX = 8, 10


def random_ramp(nints=2, ngroups=4, ny=NY, nx=NX, instrument="NIRCAM", seed=0, **keywords):
    rng = np.random.default_rng(seed)
    shape = (nints, ngroups, ny, nx)
    return make_ramp(*shape, instrument=instrument,
                     data=rng.normal(1e4, 30, shape).astype(np.float32),
                     pixeldq=rng.choice([0, dqflags.HOT, dqflags.REFERENCE_PIXEL | dqflags.DO_NOT_USE],
                                        (ny, nx)).astype(np.uint32),
                     groupdq=rng.choice([0, dqflags.SATURATED, dqflags.JUMP_DET], shape).astype(np.uint8),
                     **keywords)


def rscd_table():
    return np.array([("FULL", "FAST", 1, 2), ("SUB256", "SLOW", 3, 4)],
                    dtype=[("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", "i4"),
                           ("group_skip", "i4")])


def reference_arrays(reftype, ny=NY, nx=NX, seed=1):
    """Arrays of every extension a reference type can carry (float ones random, DQ all bits)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 5, (ny, nx)).astype(np.float32)
    dq = rng.choice([0, dqflags.HOT, dqflags.DO_NOT_USE | dqflags.DEAD, dqflags.NO_SAT_CHECK,
                     dqflags.REFERENCE_PIXEL], (ny, nx)).astype(np.uint32)
    return {
        "MASK": {"DQ": dq},
        "SATURATION": {"SCI": img, "DQ": dq},
        "SUPERBIAS": {"SCI": img, "DQ": dq, "ERR": img / 10},
        "LINEARITY": {"COEFFS": rng.normal(0, 1, (4, ny, nx)).astype(np.float32), "DQ": dq,
                      "INV_COEFFS": rng.normal(0, 1, (4, ny, nx)).astype(np.float32)},
        "DARK": {"SCI": rng.normal(0, 1, (4, ny, nx)).astype(np.float32), "DQ": dq,
                 "ERR": np.ones((4, ny, nx), np.float32), "AVDRKCUR": img / 100},
        "MIRIDARK": {"SCI": rng.normal(0, 1, (2, 4, ny, nx)).astype(np.float32),
                     "DQ": np.stack([dq[None], dq[None]]), "ERR": np.ones((2, 4, ny, nx), np.float32)},
        "GAIN": {"SCI": img / 50},
        "READNOISE": {"SCI": img / 10},
        "RSCD": {"RSCD_GROUP_SKIP": rscd_table()},
    }[reftype]


def write_reference_of(kind, fits_writer, name=None):
    """Write a reference of ``kind`` (a REFTYPE, or MIRIDARK) like a matching ramp; return path, arrays."""
    reftype = "DARK" if kind == "MIRIDARK" else kind
    like = make_ramp(1, 4, NY, NX, instrument="MIRI" if kind in ("MIRIDARK", "RSCD") else "NIRCAM")
    arrays = reference_arrays(kind)
    path = fits_writer.reference(reftype, like, name=name or f"{kind.lower()}.fits", **arrays)
    return path, arrays


KINDS = ["MASK", "SATURATION", "SUPERBIAS", "LINEARITY", "DARK", "MIRIDARK", "GAIN", "READNOISE",
         "RSCD"]


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------
def test_ramp_round_trip_preserves_data_dq_and_header_keywords(fits_writer):
    ramp = random_ramp(NFRAMES=4, GROUPGAP=1)
    back = io.read_ramp(fits_writer.ramp(ramp))
    assert back.data.dtype == np.float32 and back.pixeldq.dtype == np.uint32
    assert back.groupdq.dtype == np.uint8
    np.testing.assert_array_equal(back.data, ramp.data)
    np.testing.assert_array_equal(back.pixeldq, ramp.pixeldq)
    np.testing.assert_array_equal(back.groupdq, ramp.groupdq)
    for key in ("INSTRUME", "DETECTOR", "READPATT", "NINTS", "NGROUPS", "NFRAMES", "GROUPGAP",
                "TFRAME", "TGROUP", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2",
                "NOUTPUTS", "FASTAXIS", "SLOWAXIS", "EXP_TYPE"):
        assert back.header[key] == ramp.header[key], key
    assert back.meta("ramp_fit")["NFRAMES"] == 4


def test_ramp_round_trip_carries_int_times_table(fits_writer):
    ramp = random_ramp()
    table = fits.BinTableHDU.from_columns(
        [fits.Column("integration_number", "J", array=[1, 2]),
         fits.Column("int_mid_MJD_UTC", "D", array=[60000.1, 60000.2])], name="INT_TIMES")
    ramp.tables = [table]
    back = io.read_ramp(fits_writer.ramp(ramp))
    assert [t.name for t in back.tables] == ["INT_TIMES"]
    assert list(back.tables[0].data["integration_number"]) == [1, 2]


def test_uncal_uint16_reads_as_float32_with_zero_dq(fits_writer):
    raw = np.arange(2 * 3 * NY * NX, dtype=np.uint16).reshape(2, 3, NY, NX)
    raw[0, 0, 0, 0] = 65535
    path = fits_writer.uncal(raw, make_header(2, 3, NY, NX))
    with fits.open(path) as hdul:
        assert hdul["SCI"].data.dtype == np.uint16     # stored as unsigned 16-bit (BZERO=32768)
    ramp = io.read_ramp(path)
    assert ramp.data.dtype == np.float32 and ramp.data[0, 0, 0, 0] == 65535.0
    np.testing.assert_array_equal(ramp.data, raw.astype(np.float32))
    assert not ramp.pixeldq.any() and not ramp.groupdq.any()
    assert ramp.groupdq.shape == raw.shape and ramp.pixeldq.shape == (NY, NX)


def test_uncal_is_read_in_chunks_with_astropys_values(fits_writer, monkeypatch):
    """The raw reader converts chunk by chunk (here 7 values, not dividing the array): every
    value of the uint16 range, 0 and 65535 included, as astropy reads it."""
    monkeypatch.setattr(io, "RAW_CHUNK", 7)
    raw = np.random.default_rng(5).integers(0, 65536, (2, 3, NY, NX), dtype=np.uint16)
    raw[0, 0, 0, :4] = [0, 32767, 32768, 65535]
    path = fits_writer.uncal(raw, make_header(2, 3, NY, NX))
    with fits.open(path) as hdul:
        expect = np.asarray(hdul["SCI"].data, np.float32)
    with io.open_fits(path, skip=("SCI",)) as hdul:
        assert io._read_uint16_sci(path, hdul) is not None        # the chunked reader applies
    got = io.read_ramp(path).data
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_uncal_is_an_input_error_naming_the_file(keep, fits_writer):
    path = fits_writer.uncal(np.ones((2, 3, NY, NX), np.uint16), make_header(2, 3, NY, NX))
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:int(len(raw) * keep)])
    with pytest.raises(InputError, match="(truncated|corrupted)") as err:
        io.read_ramp(path)
    assert err.value.path == path


def test_write_uncal_refuses_non_uint16_data(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        io.write_uncal(np.zeros((1, 2, 2, 2), np.float32), make_header(1, 2, 2, 2), tmp_path / "x.fits")


def test_written_ramp_records_step_and_provenance_history(fits_writer):
    path = fits_writer.ramp(random_ramp(), step="superbias", inputs=["/data/in_uncal.fits", "/r/sb.fits"],
                            params={"n_pix_grow_sat": 1})
    header = fits.getheader(path)
    history = "\n".join(str(h) for h in header["HISTORY"])
    assert header["S_SUPERB"] == "COMPLETE"
    assert header["DCVERS"]
    assert "superbias" in history and "in_uncal.fits" in history and "sb.fits" in history
    assert "n_pix_grow_sat = 1" in history


@pytest.mark.parametrize("kind", KINDS[:-1])
def test_reference_round_trip_preserves_every_array(kind, fits_writer):
    path, arrays = write_reference_of(kind, fits_writer)
    reftype = "DARK" if kind == "MIRIDARK" else kind
    ref = io.read_reference(path, reftype)
    main = {"MASK": "DQ", "LINEARITY": "COEFFS"}.get(reftype, "SCI")
    np.testing.assert_array_equal(ref.data, arrays[main])
    assert ref.data.dtype == (np.uint32 if main == "DQ" else np.float32)
    if "DQ" in arrays:
        np.testing.assert_array_equal(ref.dq, arrays["DQ"])
        assert ref.dq.dtype == np.uint32
    if "ERR" in arrays:
        np.testing.assert_array_equal(ref.err, arrays["ERR"])
    for ext in set(arrays) - {main, "DQ", "ERR"}:
        np.testing.assert_array_equal(ref.extras[ext], arrays[ext])
    assert ref.header["REFTYPE"] == reftype


def test_miri_dark_reference_is_four_dimensional(fits_writer):
    path, _ = write_reference_of("MIRIDARK", fits_writer)
    ref = io.read_reference(path, "DARK")
    assert ref.data.shape == (2, 4, NY, NX) and ref.dq.shape == (2, 1, NY, NX)


def test_rscd_table_round_trip(fits_writer):
    path, _ = write_reference_of("RSCD", fits_writer)
    table = io.read_reference(path, "RSCD").extras["table"]
    subarrays = np.char.decode(np.asarray(table["subarray"]).astype("S"))
    assert [s.strip() for s in subarrays] == ["FULL", "SUB256"]
    assert list(table["group_skip1"]) == [1, 3] and list(table["group_skip"]) == [2, 4]


@pytest.mark.parametrize("kind", KINDS)
def test_reference_records_provenance_history(kind, fits_writer):
    path, _ = write_reference_of(kind, fits_writer)
    header = fits.getheader(path)
    assert header["DCVERS"] and any("detcal" in str(h) for h in header["HISTORY"])
    for key in ("REFTYPE", "DESCRIP", "AUTHOR", "PEDIGREE", "USEAFTER", "INSTRUME", "DETECTOR"):
        assert header[key], key


def test_dq_def_maps_file_bits_to_jwst_bits_and_drops_unlisted_ones(tmp_path):
    from stdatamodels.jwst.datamodels import MaskModel
    header = make_reference_header("MASK", make_ramp(1, 2, 1, 4))
    dq_def = fits.BinTableHDU.from_columns(
        [fits.Column("BIT", "J", array=[0, 1]),
         fits.Column("VALUE", "J", array=[1, 2]),
         fits.Column("NAME", "40A", array=["HOT", "DO_NOT_USE"]),
         fits.Column("DESCRIPTION", "80A", array=["hot", "bad"])], name="DQ_DEF")
    dq = np.array([[1, 4, 3, 0]], np.uint32)
    path = str(tmp_path / "foreign_mask.fits")
    fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(dq, name="DQ"), dq_def]).writeto(path)
    ref = io.read_reference(path, "MASK")
    assert ref.dq.tolist() == [[dqflags.HOT, 0, dqflags.HOT | dqflags.DO_NOT_USE, 0]]
    with MaskModel(path) as model:                      # stdatamodels applies DQ_DEF the same way
        np.testing.assert_array_equal(model.dq, ref.dq)


# --------------------------------------------------------------------------------------------
# stdatamodels opens and validates everything we write
# --------------------------------------------------------------------------------------------
MODELS = {"MASK": "MaskModel", "SATURATION": "SaturationModel", "SUPERBIAS": "SuperBiasModel",
          "LINEARITY": "LinearityModel", "DARK": "DarkModel", "MIRIDARK": "DarkMIRIModel",
          "GAIN": "GainModel", "READNOISE": "ReadnoiseModel", "RSCD": "RSCDModel"}


def open_and_validate(model_name, path):
    from stdatamodels.jwst import datamodels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with getattr(datamodels, model_name)(path) as model:
            model.validate()
            return model.__class__.__name__


@pytest.mark.parametrize("kind", KINDS)
def test_reference_opens_and_validates_with_its_stdatamodels_model(kind, fits_writer):
    path, arrays = write_reference_of(kind, fits_writer)
    assert open_and_validate(MODELS[kind], path) == MODELS[kind]


def test_ramp_and_uncal_open_and_validate_as_ramp_model(fits_writer):
    from stdatamodels.jwst.datamodels import RampModel
    ramp = random_ramp()
    for path in (fits_writer.ramp(ramp, step="saturation"),
                 fits_writer.uncal(np.ones(ramp.shape, np.uint16), ramp.header)):
        assert open_and_validate("RampModel", path) == "RampModel"
    with RampModel(fits_writer.path("test_ramp.fits")) as model:
        np.testing.assert_array_equal(model.data, ramp.data)
        np.testing.assert_array_equal(model.groupdq, ramp.groupdq)
        np.testing.assert_array_equal(model.pixeldq, ramp.pixeldq)
        assert model.meta.exposure.ngroups == 4 and model.meta.subarray.xsize == NX


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def test_write_leaves_only_the_target_file(fits_writer, tmp_path):
    fits_writer.ramp(random_ramp(), name="a.fits")
    fits_writer.reference("GAIN", make_ramp(1, 2, NY, NX), name="g.fits", SCI=np.ones((NY, NX)))
    assert sorted(os.listdir(tmp_path)) == ["a.fits", "g.fits"]


def test_failed_write_leaves_neither_partial_target_nor_temp_file(tmp_path, monkeypatch):
    def broken_writeto(self, name, *args, **kwargs):
        with open(name, "wb") as fh:
            fh.write(b"SIMPLE  =                    T")      # a partial file, then the disk fails
        raise OSError("disk full")
    def broken_pwrite(fd, data, offset):                # write_ramp writes by parts
        os.write(fd, b"SIMPLE  =                    T")
        raise OSError("disk full")
    monkeypatch.setattr(fits.HDUList, "writeto", broken_writeto)
    monkeypatch.setattr(io.os, "pwrite", broken_pwrite)
    with pytest.raises(OSError, match="disk full"):
        io.write_ramp(random_ramp(), tmp_path / "out.fits")
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_the_previous_file(fits_writer, tmp_path, monkeypatch):
    path = fits_writer.ramp(random_ramp(seed=1), name="keep.fits")
    before = open(path, "rb").read()
    monkeypatch.setattr(fits.HDUList, "writeto", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    monkeypatch.setattr(io.os, "pwrite", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        io.write_ramp(random_ramp(seed=2), path)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["keep.fits"]


# --------------------------------------------------------------------------------------------
# subarrays
# --------------------------------------------------------------------------------------------
def subarray_ramp(fits_writer, xstart=5, ystart=3, ny=4, nx=6):
    ramp = make_ramp(1, 2, ny, nx, SUBARRAY="SUBTEST", SUBSTRT1=xstart, SUBSTRT2=ystart)
    return io.read_ramp(fits_writer.ramp(ramp, name="sub_ramp.fits"))


@pytest.mark.parametrize("kind", ["SUPERBIAS", "MASK", "LINEARITY", "MIRIDARK"])
def test_full_frame_reference_is_cut_to_the_science_subarray(kind, fits_writer):
    ramp = subarray_ramp(fits_writer)               # columns 5..10, rows 3..6 (1-based)
    path, arrays = write_reference_of(kind, fits_writer)
    reftype = "DARK" if kind == "MIRIDARK" else kind
    ref = io.read_reference(path, reftype, like=ramp)
    main = {"MASK": "DQ", "LINEARITY": "COEFFS"}.get(reftype, "SCI")
    np.testing.assert_array_equal(ref.data, arrays[main][..., 2:6, 4:10])
    np.testing.assert_array_equal(ref.dq, arrays["DQ"][..., 2:6, 4:10])


def test_subarray_reference_containing_the_science_subarray_is_cut_by_offsets(fits_writer):
    ramp = subarray_ramp(fits_writer, xstart=5, ystart=3)
    like = make_ramp(1, 2, 6, 8, SUBARRAY="SUBBIG", SUBSTRT1=4, SUBSTRT2=2)  # covers cols 4..11
    sci = np.arange(48, dtype=np.float32).reshape(6, 8)
    path = fits_writer.reference("GAIN", like, SCI=sci)
    ref = io.read_reference(path, "GAIN", like=ramp)
    np.testing.assert_array_equal(ref.data, sci[1:5, 1:7])


def test_reference_that_does_not_contain_the_subarray_is_an_error_naming_it(fits_writer):
    ramp = subarray_ramp(fits_writer, xstart=7, ystart=3)    # columns 7..12 > 10 columns of the ref
    path, _ = write_reference_of("SUPERBIAS", fits_writer, name="too_small_bias.fits")
    with pytest.raises(InputError, match="too_small_bias.fits.*does not contain"):
        io.read_reference(path, "SUPERBIAS", like=ramp)


# --------------------------------------------------------------------------------------------
# bad input: one InputError naming the file and the problem
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.3, 0.75, 0.999])
def test_truncated_ramp_is_an_input_error_naming_the_file(keep, fits_writer):
    path = fits_writer.ramp(random_ramp(), name="cut_ramp.fits")
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:int(len(raw) * keep)])
    with pytest.raises(InputError, match="(?s)cut_ramp.fits: .*(truncated|corrupted)") as err:
        io.read_ramp(path)
    assert err.value.path == path


def test_ramp_cut_at_an_hdu_boundary_is_an_input_error(fits_writer):
    ramp = random_ramp()
    path = fits_writer.ramp(ramp, name="lost_dq.fits")
    with fits.open(path) as hdul:
        groupdq_offset = hdul.fileinfo(3)["hdrLoc"]          # file ends right before GROUPDQ
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:groupdq_offset])
    with pytest.raises(InputError, match="lost_dq.fits.*truncated"):
        io.read_ramp(path)


def test_truncated_reference_is_an_input_error_naming_the_file(fits_writer):
    path, _ = write_reference_of("SUPERBIAS", fits_writer, name="cut_bias.fits")
    raw = open(path, "rb").read()
    for keep in (len(raw) // 2, len(raw) - 2880, len(raw) - 1):
        open(path, "wb").write(raw[:keep])
        with pytest.raises(InputError, match="(?s)cut_bias.fits: .*(truncated|corrupted)"):
            io.read_reference(path, "SUPERBIAS")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nothere.fits.*does not exist"):
        io.read_ramp(tmp_path / "nothere.fits")


def test_three_dimensional_sci_is_an_input_error(tmp_path):
    path = str(tmp_path / "flat_uncal.fits")
    fits.HDUList([fits.PrimaryHDU(header=make_header(1, 3, NY, NX)),
                  fits.ImageHDU(np.zeros((3, NY, NX), np.uint16), name="SCI")]).writeto(path)
    with pytest.raises(InputError, match="flat_uncal.fits.*SCI has 3 dimensions"):
        io.read_ramp(path)


def test_missing_ngroups_is_an_input_error_naming_the_keyword(fits_writer):
    path = fits_writer.uncal(np.zeros((1, 3, NY, NX)), make_header(1, 3, NY, NX, NGROUPS=None),
                             name="no_ngroups_uncal.fits")
    with pytest.raises(InputError, match="no_ngroups_uncal.fits.*missing header keyword NGROUPS"):
        io.read_ramp(path)


def test_ngroups_disagreeing_with_the_data_is_an_input_error(fits_writer):
    path = fits_writer.uncal(np.zeros((1, 3, NY, NX)), make_header(1, 5, NY, NX), name="bad_ng.fits")
    with pytest.raises(InputError, match="bad_ng.fits.*NGROUPS=5 but SCI has 3 groups"):
        io.read_ramp(path)


def test_reference_smaller_than_the_science_array_is_an_input_error(fits_writer):
    ramp = io.read_ramp(fits_writer.ramp(random_ramp(ny=NY, nx=NX)))
    small = make_ramp(1, 2, NY - 2, NX)
    path = fits_writer.reference("SATURATION", small, name="small_sat.fits",
                                 SCI=np.ones((NY - 2, NX)), DQ=np.zeros((NY - 2, NX)))
    with pytest.raises(InputError, match="small_sat.fits.*does not contain"):
        io.read_reference(path, "SATURATION", like=ramp)


def test_reference_with_wrong_number_of_dimensions_is_an_input_error(tmp_path):
    header = make_reference_header("SUPERBIAS", make_ramp(1, 2, NY, NX))
    path = str(tmp_path / "cube_bias.fits")
    fits.HDUList([fits.PrimaryHDU(header=header),
                  fits.ImageHDU(np.zeros((2, NY, NX), np.float32), name="SCI")]).writeto(path)
    with pytest.raises(InputError, match="cube_bias.fits.*SCI has 3 dimensions"):
        io.read_reference(path, "SUPERBIAS")


def test_reference_with_the_wrong_reftype_is_an_input_error(fits_writer):
    path, _ = write_reference_of("GAIN", fits_writer, name="gain_not_bias.fits")
    with pytest.raises(InputError, match="gain_not_bias.fits.*REFTYPE is 'GAIN'.*SUPERBIAS"):
        io.read_reference(path, "SUPERBIAS")


# --------------------------------------------------------------------------------------------
# sections and memory budgets: one chunked reader (SectionReader), io.block_size
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory_mb, bytes_per_value, shape, axis, expected", [
    (1.0, 4, (10, 200, 250), 1, 100),         # rows of 10 x 250 float32: 1e6 / 1e4 = 100
    (0.5, 4, (10, 200, 250), 1, 50),
    (1e-9, 48, (7, 2048, 2048), 1, 1),        # smaller than one index: still 1
    (1e6, 1, (3, 5), 0, 3),                   # never more than the axis holds
    (2.0, 4, (500, 64, 64), 0, 122),          # groups of 64 x 64 float32: 2e6 // 16384
])
def test_block_size_keeps_one_block_within_the_budget(memory_mb, bytes_per_value, shape, axis, expected):
    n = io.block_size(memory_mb, bytes_per_value, shape, axis)
    assert n == expected
    per_index = bytes_per_value * np.prod(shape) / shape[axis]
    assert n == 1 or n * per_index <= memory_mb * 1e6
    assert n == shape[axis] or (n + 1) * per_index > memory_mb * 1e6
    cover = io.blocks(shape[axis], n)
    assert cover[0].start == 0 and cover[-1].stop == shape[axis]
    assert all(a.stop == b.start for a, b in zip(cover, cover[1:]))


@pytest.mark.parametrize("kind", ["DARK", "MIRIDARK", "LINEARITY", "SUPERBIAS", "MASK"])
@pytest.mark.parametrize("subarray", [False, True])
def test_lazy_reference_reads_the_same_values_as_the_whole_file(kind, subarray, fits_writer):
    path, _ = write_reference_of(kind, fits_writer)
    reftype = "DARK" if kind == "MIRIDARK" else kind
    like = subarray_ramp(fits_writer) if subarray else None
    whole = io.read_reference(path, reftype, like=like)
    lazy = io.read_reference(path, reftype, like=like, lazy=True)
    assert lazy.header == whole.header and set(lazy.extras) == set(whole.extras)
    for name in ("data", "dq", "err"):
        a, b = getattr(whole, name), getattr(lazy, name)
        if a is None:
            assert b is None
            continue
        assert b.shape == a.shape and np.asarray(b).dtype == a.dtype
        np.testing.assert_array_equal(np.asarray(b), a)
        if a.ndim >= 3:                             # sections: groups, one integration, rows
            assert isinstance(b, io.LazyArray)
            np.testing.assert_array_equal(b[..., 1:3, :, :].copy(), a[..., 1:3, :, :])
            np.testing.assert_array_equal(np.asarray(b[-1]), a[-1])
            np.testing.assert_array_equal(np.asarray(b[..., -1, 1:3, :]), a[..., -1, 1:3, :])
            np.testing.assert_array_equal(np.asarray(b[..., ::2, :]), a[..., ::2, :])


def test_lazy_reference_makes_the_same_checks_from_the_headers(fits_writer, tmp_path):
    ramp = subarray_ramp(fits_writer, xstart=7, ystart=3)            # not inside a 10-column ref
    path, _ = write_reference_of("DARK", fits_writer, name="small_dark.fits")
    with pytest.raises(InputError, match="small_dark.fits.*does not contain"):
        io.read_reference(path, "DARK", like=ramp, lazy=True)
    with pytest.raises(InputError, match="REFTYPE is 'DARK'"):
        io.read_reference(path, "SUPERBIAS", lazy=True)
    raw = open(path, "rb").read()
    open(tmp_path / "cut_dark.fits", "wb").write(raw[:len(raw) // 2])
    with pytest.raises(InputError, match="cut_dark.fits"):
        io.read_reference(tmp_path / "cut_dark.fits", "DARK", lazy=True)


def test_lazy_dark_reads_only_the_groups_used_and_never_err(fits_writer, monkeypatch):
    from detcal.steps import dark_current
    path, arrays = write_reference_of("DARK", fits_writer)              # 4 groups, NFRAMES=1
    ramp = random_ramp(nints=2, ngroups=2)
    whole = dark_current.run(random_ramp(nints=2, ngroups=2), {"dark": io.read_reference(path, "DARK")})
    reads = []
    original = io.SectionReader.read
    monkeypatch.setattr(io.SectionReader, "read", lambda self, ext, *a, **k: (
        reads.append((ext, k.get("groups"))), original(self, ext, *a, **k))[1])
    lazy = dark_current.run(ramp, {"dark": io.read_reference(path, "DARK", lazy=True)}, memory_mb=1e-9)
    np.testing.assert_array_equal(lazy.data, whole.data)
    np.testing.assert_array_equal(lazy.pixeldq, whole.pixeldq)
    np.testing.assert_array_equal(dark_current.ramp_average_dark_current(lazy),
                                  dark_current.ramp_average_dark_current(whole))
    # the 2-D arrays when opened, then one group of SCI per chunk; ERR never
    assert [ext for ext, _ in reads] == ["DQ", "AVDRKCUR", "SCI", "SCI"]
    assert [g for ext, g in reads if ext == "SCI"] == [slice(0, 1, 1), slice(1, 2, 1)]


def test_cube_reader_reads_rate_and_rateints_sections(tmp_path):
    rng = np.random.default_rng(4)
    header = make_header(3, 4, NY, NX)
    cube = {k: rng.normal(0, 1, (3, NY, NX)).astype(np.float32) for k in ("sci", "err", "var_poisson",
                                                                          "var_rnoise")}
    cube["dq"] = rng.integers(0, 5, (3, NY, NX)).astype(np.uint32)
    io.write_rate(tmp_path / "x_rateints.fits", cube, header)
    io.write_rate(tmp_path / "x_rate.fits", {k: v[0] for k, v in cube.items()}, header)
    with io.CubeReader(tmp_path / "x_rateints.fits", ("SCI", "DQ", "VAR_RNOISE"), rateints=True) as r:
        assert r.shape == (3, NY, NX)
        np.testing.assert_array_equal(r.read("SCI", rows=slice(2, 5)), cube["sci"][:, 2:5])
        np.testing.assert_array_equal(r.read("DQ", 1), cube["dq"][1])
        assert r.read("VAR_RNOISE").dtype == np.float32 and r.read("DQ").dtype == np.uint32
    with io.CubeReader(tmp_path / "x_rate.fits") as r:                   # a rate: one integration
        assert r.shape == (1, NY, NX) and r.ndim_on_disk == 2
        np.testing.assert_array_equal(r.read("SCI"), cube["sci"][:1])
        np.testing.assert_array_equal(r.read("DQ", 0, rows=slice(1, 3)), cube["dq"][0, 1:3])
    with pytest.raises(InputError, match="x_rate.fits.*3-D SCI"):
        io.CubeReader(tmp_path / "x_rate.fits", rateints=True)


def test_row_blocks_cover_the_frame_within_the_budget(fits_writer):
    path = fits_writer.ramp(random_ramp(nints=2, ngroups=4, ny=NY, nx=NX))
    with io.RampReader(path) as reader:
        per_pixel = 2 * 4 * 4                                              # all of SCI, float32
        rows = reader.row_blocks(3 * NX * per_pixel / 1e6, per_pixel)
        assert [s.stop - s.start for s in rows] == [3, 3, 2]
        stacked = np.concatenate([reader.read("SCI", rows=s) for s in rows], axis=2)
        np.testing.assert_array_equal(stacked, reader.read("SCI"))
        assert [s.stop - s.start for s in reader.group_blocks(2 * 2 * NY * NX * 4 / 1e6, 4)] == [2, 2]
        with pytest.raises(InputError, match="test_ramp.fits: no ZEROFRAME extension"):
            reader.read("ZEROFRAME", 0)                                   # absent, and not a DQ


@pytest.mark.parametrize("regime", ["nir-direct-full", "nir-subarray-nframes4-groupgap2", "miri-4d-intstart2",
                                    "nir-extrapolated", "dark_output"])
def test_dark_current_job_with_the_dark_read_by_chunks_writes_the_same_product(regime, fits_writer,
                                                                               monkeypatch):
    """runner.run_step_file reads the DARK lazily (dark_current.LAZY_REFERENCES); its product is
    the one of the dark read whole, in the regimes real darks have."""
    from detcal import runner
    rng = np.random.default_rng(11)
    instrument, nints, ngroups, ny, nx, sub = "NIRCAM", 2, 6, 12, 16, {}
    readout, dark_groups, params = {}, 6, {"memory_mb": 1e-9}
    if regime == "nir-subarray-nframes4-groupgap2":
        readout, dark_groups = {"NFRAMES": 4, "GROUPGAP": 2}, 40
        sub = {"SUBARRAY": "SUBTEST", "SUBSTRT1": 5, "SUBSTRT2": 3}
    elif regime == "miri-4d-intstart2":
        instrument, nints, sub = "MIRI", 3, {"INTSTART": 2, "INTEND": 4, "NINTS": 5}
    elif regime == "nir-extrapolated":
        dark_groups, params["extrapolate"] = 4, True
    elif regime == "dark_output":
        params["dark_output"] = True
    sci_ny, sci_nx = (5, 7) if sub.get("SUBARRAY") else (ny, nx)
    ramp = make_ramp(nints, ngroups, sci_ny, sci_nx, instrument=instrument,
                     data=rng.normal(1e4, 30, (nints, ngroups, sci_ny, sci_nx)), **readout, **sub)
    ramp_path = fits_writer.ramp(ramp, name="sci_ramp.fits")
    like = make_ramp(1, dark_groups, ny, nx, instrument=instrument)
    shape = ((2,) if instrument == "MIRI" else ()) + (dark_groups, ny, nx)
    dq = rng.choice([0, dqflags.HOT, dqflags.DEAD], (ny, nx)).astype(np.uint32)
    dark = {"SCI": rng.normal(5, 2, shape).astype(np.float32), "ERR": np.ones(shape, np.float32),
            "DQ": np.stack([dq[None], dq[None]]) if instrument == "MIRI" else dq}
    dark["SCI"][..., 1, 2] = np.nan
    dark_path = fits_writer.reference("DARK", like, name="dark.fits", **dark)
    out = {}
    for mode in ("whole", "chunks"):
        if mode == "whole":
            monkeypatch.setattr(runner, "read_lazily", lambda step, key: False)
        else:
            monkeypatch.undo()
            assert runner.read_lazily("dark_current", "dark")
        out[mode] = fits_writer.path(f"{mode}.fits")
        extra = fits_writer.path(f"{mode}_dark.fits") if regime == "dark_output" else None
        runner.run_step_file("dark_current", ramp_path, {"dark": dark_path}, out[mode], params=params,
                             extra_output=extra)
    for ext in ("SCI", "PIXELDQ", "GROUPDQ"):
        np.testing.assert_array_equal(fits.getdata(out["chunks"], ext), fits.getdata(out["whole"], ext))
    assert not np.array_equal(fits.getdata(out["chunks"], "SCI"), fits.getdata(ramp_path, "SCI"))
    if regime == "dark_output":
        for ext in ("SCI", "DQ"):
            np.testing.assert_array_equal(fits.getdata(fits_writer.path("chunks_dark.fits"), ext),
                                          fits.getdata(fits_writer.path("whole_dark.fits"), ext))


def test_dark_current_job_holds_the_ramp_and_one_chunk_not_the_dark(fits_writer, monkeypatch):
    """Traced peak memory of the job (read, step, write): the dark read whole adds its SCI and ERR;
    read by chunks, the job needs about the ramp plus one chunk of groups."""
    import tracemalloc

    from detcal import runner
    ngroups, ny, nx = 40, 64, 64
    rng = np.random.default_rng(3)
    ramp = make_ramp(1, ngroups, ny, nx, data=rng.normal(1e4, 30, (1, ngroups, ny, nx)))
    ramp_path = fits_writer.ramp(ramp, name="long_ramp.fits")
    sci = rng.normal(5, 2, (ngroups, ny, nx)).astype(np.float32)
    dark_path = fits_writer.reference("DARK", ramp, name="long_dark.fits", SCI=sci, ERR=np.ones_like(sci),
                                      DQ=np.zeros((ny, nx), np.uint32))
    ramp_bytes = ramp.data.nbytes + ramp.groupdq.nbytes
    params = {"memory_mb": 4 * ny * nx * 4 / 1e6}                  # chunks of 4 groups
    peaks = {}
    for mode in ("whole", "chunks"):
        if mode == "whole":
            monkeypatch.setattr(runner, "read_lazily", lambda step, key: False)
        else:
            monkeypatch.undo()
        tracemalloc.start()
        try:
            runner.run_step_file("dark_current", ramp_path, {"dark": dark_path},
                                 fits_writer.path(f"{mode}.fits"), params=params)
            peaks[mode] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks["whole"] > peaks["chunks"] + 2 * sci.nbytes * 0.9       # SCI and ERR of the dark
    assert peaks["chunks"] < 1.25 * ramp_bytes + sci.nbytes / 4          # the ramp + about one chunk


def test_clipped_mean_images_are_the_same_for_every_memory_budget():
    """analysis.robust.clipped_mean_std_images sizes its row blocks from work_mb (io.block_size):
    the images do not depend on it, its memory no longer grows with the number of integrations."""
    from detcal.analysis import robust
    rng = np.random.default_rng(8)
    cube = rng.normal(0.01, 0.002, (30, 21, 16)).astype(np.float32)
    cube[rng.random(cube.shape) < 0.03] = 0.5                          # cosmic-ray hit slopes
    cube[:, 4, 5] = np.nan
    whole = robust.clipped_mean_std_images(cube, 3.0, 5, work_mb=1e3)  # one block
    for work_mb in (1e-9, 30 * 3 * 16 * 48 / 1e6):                    # 1 row, 3 rows per block
        for a, b in zip(robust.clipped_mean_std_images(cube, 3.0, 5, work_mb=work_mb), whole):
            np.testing.assert_array_equal(a, b)
    assert io.block_size(256, robust.CLIP_IMAGE_BYTES_PER_VALUE, (40, 2048, 2048), axis=1) == 65


def test_reset_job_reads_only_the_reset_planes_and_groups_it_uses(fits_writer, monkeypatch):
    """runner.run_step_file reads the MIRI RESET lazily (reset.LAZY_REFERENCES): integrations 3-4
    of a 5-integration exposure use plane 2 (the last of a 2-plane reference; its first 3 groups),
    read a chunk of groups at a time; ERR and plane 1 are never read; same product as read whole."""
    from detcal import runner
    from detcal.steps import reset
    rng = np.random.default_rng(12)
    keys = dict(INTSTART=3, INTEND=4, NINTS=5)
    ramp = make_ramp(2, 5, NY, NX, instrument="MIRI", data=rng.normal(1e4, 30, (2, 5, NY, NX)), **keys)
    ramp_path = fits_writer.ramp(ramp, name="miri_ramp.fits")
    sci = rng.normal(-20, 8, (2, 3, NY, NX)).astype(np.float32)
    sci[0, 1, 2, 3] = sci[1, 2, 4, 5] = np.nan
    path = fits_writer.reference("RESET", ramp, name="reset.fits", SCI=sci, ERR=np.ones_like(sci),
                                 DQ=np.zeros((NY, NX), np.uint32),
                                 header=make_reference_header("RESET", ramp, NINTS=2, NGROUPS=3))
    monkeypatch.setattr(runner, "read_lazily", lambda step, key: False)
    whole = runner.run_step_file("reset", ramp_path, {"reset": path}, fits_writer.path("whole.fits"))
    monkeypatch.undo()
    reads = []
    original = io.SectionReader.read
    monkeypatch.setattr(io.SectionReader, "read", lambda self, ext, *a, **k: (
        reads.append((ext, k.get("ints"), k.get("groups"))), original(self, ext, *a, **k))[1])
    monkeypatch.setattr(reset, "CHUNK_MB", 2 * NY * NX * 4 / 1e6)         # 2 groups per chunk
    lazy = runner.run_step_file("reset", ramp_path, {"reset": path}, fits_writer.path("lazy.fits"))
    np.testing.assert_array_equal(lazy.data, whole.data)
    np.testing.assert_array_equal(lazy.pixeldq, whole.pixeldq)
    assert [r for r in reads if r[0] != "DQ"] == [("SCI", 1, slice(0, 2, 1)), ("SCI", 1, slice(2, 3, 1))]
    np.testing.assert_array_equal(lazy.data[:, :3], ramp.data[:, :3] - np.nan_to_num(sci[1]))
