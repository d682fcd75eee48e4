"""ramp_fit by blocks of rows (ramp_fit.fit_rows / run_rows, runner.run_ramp_fit_file): the same
products, bit for bit, as one whole-frame fit_ramps call in every regime the step has (NIR, MIRI
group range, ZEROFRAME, suppress_one_group, firstgroup/lastgroup, saturation, one group, average
dark current), and the per-step job's files byte for byte those of the whole-frame write."""

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags, io, runner
from detcal.steps import ramp_fit

from conftest import make_ramp
from test_ramp_fit_miri import miri_dark_case

JUMP, DNU, SAT = dqflags.JUMP_DET, dqflags.DO_NOT_USE, dqflags.SATURATED
TFRAME = 10.73676


def nir_case(seed, nints=2, ngroups=10, ny=23, nx=17):
    """Noisy NIR dark ramps with jumps, saturation (from group 0 in a few ramps), NaN, a DO_NOT_USE
    pixel, bad gains and a ZEROFRAME; 23 rows so that blocks of rows are uneven."""
    rng = np.random.default_rng(seed)
    shape = (nints, ngroups, ny, nx)
    rate = rng.uniform(0.0, 2.0, (ny, nx))
    t = TFRAME * np.arange(1, ngroups + 1)
    data = (100.0 + rate * t[None, :, None, None] + rng.normal(0, 8, shape)).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[rng.random(shape) < 0.03] |= JUMP
    hit = rng.random((nints, ny, nx)) < 0.04
    for i, y, x in zip(*np.nonzero(hit)):
        gdq[i, rng.integers(0, ngroups):, y, x] |= SAT
    gdq[0, :, 2, 3] |= SAT                                   # saturated from group 0
    data[-1, ngroups // 2, 5, 6] = np.nan
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[7, 8] = DNU
    gain = rng.uniform(1.8, 2.2, (ny, nx)).astype(np.float32)
    gain[9, 10] = 0.0
    gain[11, 1] = np.nan
    rn = rng.uniform(8.0, 12.0, (ny, nx)).astype(np.float32)
    zeroframe = (50.0 + rng.normal(0, 5, (nints, ny, nx))).astype(np.float32)
    zeroframe[0, 2, 3] = 0.0 if seed % 2 else zeroframe[0, 2, 3]
    return dict(data=data, groupdq=gdq, pixeldq=pdq, gain=gain, readnoise=rn, tframe=TFRAME,
                tgroup=TFRAME, nframes=1, groupgap=0), zeroframe


def miri_emptied_case():
    """MIRI: every ramp but one has one good group (group 0), which suppress_one_group makes
    DO_NOT_USE; the one ramp that keeps its groups, in row 15, decides the group range for the
    whole frame (the first rows alone would give another range)."""
    case = miri_dark_case(3, nints=2, ngroups=8, ny=19, nx=9)
    gdq = case["groupdq"]
    gdq[:] = 0
    gdq[:, 1:] |= DNU
    gdq[:, :, 15, 4] = 0
    return case


def miri_unusable_case():
    """MIRI with one usable group (the rest DO_NOT_USE everywhere): every slope NaN."""
    case = miri_dark_case(4, nints=2, ngroups=6, ny=9, nx=9)
    case["groupdq"][:] = 0
    case["groupdq"][:, 1:] = DNU
    return case


def in_memory_rows(case, zeroframe=None, dark=None, **params):
    """fit_rows over the arrays of ``case``: the products assembled from the blocks written."""
    nints, ngroups, ny, nx = case["data"].shape
    arrays = {"SCI": case["data"], "GROUPDQ": case["groupdq"], "PIXELDQ": case["pixeldq"],
              "gain": case["gain"], "readnoise": case["readnoise"], "dark": dark, "ZEROFRAME": zeroframe}
    rate = {k: np.full((ny, nx), 77, np.uint32 if k == "dq" else np.float32) for k in ramp_fit.PRODUCT_NAMES}
    rateints = {k: np.repeat(v[None], nints, 0) for k, v in rate.items()}
    seen = []

    def read(name, r0, r1):
        return None if arrays[name] is None else arrays[name][..., r0:r1, :]

    def write(rows, r, ri):
        seen.append(rows)
        for k in rate:
            rate[k][rows[0]:rows[1]] = r[k]
            rateints[k][:, rows[0]:rows[1]] = ri[k]

    n = ramp_fit.fit_rows(read, case["data"].shape, case["tframe"], case["tgroup"], case["nframes"],
                          case["groupgap"], write, **params)
    assert n == len(seen) and [r[0] for r in seen] == sorted(r[0] for r in seen)
    assert seen[0][0] == 0 and seen[-1][1] == ny and all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    return rate, rateints, len(seen)


def assert_same(a, b):
    for mine, ref in zip(a, b):
        for key in ramp_fit.PRODUCT_NAMES:
            assert mine[key].dtype == ref[key].dtype
            np.testing.assert_array_equal(mine[key], ref[key], err_msg=key)   # NaN where NaN


REGIMES = {
    "nir": (lambda: nir_case(1)[0], {}),
    "nir_no_suppress": (lambda: nir_case(2)[0], {"suppress_one_group": False}),
    "nir_groups_2_7": (lambda: nir_case(3)[0], {"firstgroup": 2, "lastgroup": 7}),
    "nir_one_group": (lambda: nir_case(4, ngroups=1)[0], {}),
    "nir_two_groups": (lambda: nir_case(5, ngroups=2)[0], {}),
    "miri_dark_40": (lambda: miri_dark_case(6, ngroups=40, ny=21), {"miri": True}),
    "miri_emptied": (miri_emptied_case, {"miri": True}),
    "miri_emptied_selectors": (miri_emptied_case, {"miri": True, "firstgroup": 1, "lastgroup": 5}),
    "miri_unusable": (miri_unusable_case, {"miri": True}),
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("memory_mb", [1e-9, 0.0015])
def test_rows_give_the_whole_frame_fit(regime, memory_mb):
    make, params = REGIMES[regime]
    case = make()
    whole = ramp_fit.fit_ramps(**case, **params)
    rate, rateints, nblocks = in_memory_rows(case, memory_mb=memory_mb, **params)
    assert nblocks >= 2 and (memory_mb > 1e-6 or nblocks == case["data"].shape[2])   # 1e-9: one row each
    assert_same((rate, rateints), whole)
    if regime.startswith("miri_emptied"):      # the regime the test is there for
        selectors = ramp_fit._group_selectors(params.get("firstgroup"), params.get("lastgroup"), 8)
        gdq = case["groupdq"]
        assert (ramp_fit._miri_group_range(gdq, [(0, 19)], True, *selectors)
                != ramp_fit._miri_group_range(gdq[:, :, :10], [(0, 10)], True, *selectors))


@pytest.mark.parametrize("seed", [1, 2])
def test_rows_with_zeroframe_dark_and_threads(seed):
    case, zeroframe = nir_case(seed, nints=3, ngroups=5)
    dark = np.random.default_rng(seed).uniform(0, 0.5, case["pixeldq"].shape).astype(np.float32)
    params = {"suppress_one_group": False, "average_dark_current": dark, "zeroframe": zeroframe}
    whole = ramp_fit.fit_ramps(**case, **params)
    used = np.isfinite(whole[1]["sci"][0, 2, 3])
    assert used == (seed % 2 == 0)             # the ZEROFRAME gave the saturated ramp a slope
    for threads in (1, 2):
        rate, rateints, _ = in_memory_rows(case, zeroframe=zeroframe, dark=dark, suppress_one_group=False,
                                           memory_mb=0.003, threads=threads)
        assert_same((rate, rateints), whole)


def write_case(fits_writer, case, instrument="NIRCAM", zeroframe=None, dark=None, name="ramp.fits"):
    nints, ngroups, ny, nx = case["data"].shape
    ramp = make_ramp(nints, ngroups, ny, nx, instrument, data=case["data"], pixeldq=case["pixeldq"],
                     groupdq=case["groupdq"], TFRAME=case["tframe"], ZEROFRAM=zeroframe is not None)
    ramp.zeroframe = zeroframe
    cols = [fits.Column("integration_number", "J", array=np.arange(1, nints + 1))]
    ramp.tables = [fits.BinTableHDU.from_columns(cols, name="INT_TIMES")]
    if dark is not None:
        ramp.tables.append(fits.ImageHDU(dark, name="AVDRKCUR"))
    path = fits_writer.ramp(ramp, name)
    refs = {"gain": fits_writer.reference("GAIN", ramp, SCI=case["gain"]),
            "readnoise": fits_writer.reference("READNOISE", ramp, SCI=case["readnoise"])}
    return path, refs


@pytest.mark.parametrize("kind", ["nir", "miri"])
def test_per_step_job_writes_the_whole_frame_files(fits_writer, kind):
    """runner.run_ramp_fit_file (the ramp file read by rows, rate/rateints written by rows) makes
    the bytes that the whole-frame fit and io.write_rate make."""
    if kind == "nir":
        case, zeroframe = nir_case(2, nints=2, ngroups=6)
        dark = np.random.default_rng(0).uniform(0, 0.5, case["pixeldq"].shape).astype(np.float32)
        path, refs = write_case(fits_writer, case, zeroframe=zeroframe, dark=dark)
        params = {"suppress_one_group": False, "memory_mb": 0.002}
    else:
        case = miri_emptied_case()
        path, refs = write_case(fits_writer, case, "MIRI")
        params = {"memory_mb": 0.001}
    out = {k: fits_writer.path(f"{k}.fits") for k in ("rate", "rateints", "ref_rate", "ref_rateints")}
    rate, rateints = runner.run_ramp_fit_file(path, refs, out["rate"], out["rateints"], params)
    # the reference: the whole ramp read, one whole-frame fit, the whole-array write
    ramp = io.read_ramp(path, "ramp_fit")
    if kind == "nir":
        assert ramp.has_zeroframe and ramp_fit._ramp_dark_current(ramp) is not None
    ref_refs = {k: io.read_reference(p, io.REFTYPES[k], like=ramp) for k, p in refs.items()}
    whole = ramp_fit.run(ramp, ref_refs, **params)
    inputs = [path, *refs.values()]
    io.write_rate(out["ref_rate"], whole[0], ramp.header, step="ramp_fit", inputs=inputs, params=params)
    io.write_rate(out["ref_rateints"], whole[1], ramp.header, ramp.tables, step="ramp_fit", inputs=inputs,
                  params=params)
    for k in ("rate", "rateints"):
        with open(out[k], "rb") as a, open(out[f"ref_{k}"], "rb") as b:
            assert a.read() == b.read(), k
    assert_same(({k: np.asarray(v) for k, v in rate.items()}, {k: np.asarray(v) for k, v in rateints.items()}),
                whole)
    assert rate["sci"].shape == case["pixeldq"].shape
