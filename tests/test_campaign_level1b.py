"""Real level-1b files keep what they carry: ZEROFRAME, the GROUP and INT_TIMES tables and the
header keywords, through every detector1 step to the rate products; ramp_fit uses a ZEROFRAME
exactly as stcal/jwst do (pixels saturated in group 0, ``suppress_one_group`` off). The steps'
corrections of the ZEROFRAME and the chain against jwst: tests/test_zeroframe.py.
"""

import numpy as np
import pytest
from astropy.io import fits

from detcal import dqflags, io, pipeline, runner, simulate
from detcal.steps.ramp_fit import fit_ramps

from test_ramp_fit import assert_products_match, parity_case, stcal_fit

SAT = dqflags.SATURATED

#: Keywords of a real level-1b primary header (observation, exposure timing, pointing) that jwst
#: copies into every product; each must survive our chain unchanged.
LEVEL1B_KEYWORDS = {"PROGRAM": "01062", "OBSERVTN": "001", "VISIT": "001", "VISITGRP": "01",
                    "DATE-OBS": "2024-02-10", "TIME-OBS": "10:11:12.345", "EXPMID": 60350.43,
                    "EXPEND": 60350.44, "EFFINTTM": 42.9, "EFFEXPTM": 42.9, "DURATION": 47.0,
                    "ZEROFRAM": True, "FILTER": "F200W", "PUPIL": "CLEAR", "DATAMODL": "Level1bModel"}


#: jwst Level1bModel GROUP and INT_TIMES columns (stdatamodels group/int_times schemas).
GROUP_DTYPE = np.dtype([("integration_number", ">i4"), ("group_number", ">i2"), ("end_day", ">i2"),
                        ("end_milliseconds", ">i4"), ("end_submilliseconds", ">i2"),
                        ("group_end_time", "S26"), ("number_of_columns", ">i2"),
                        ("number_of_rows", ">i2"), ("number_of_gaps", ">i2"),
                        ("completion_code_number", ">i2"), ("completion_code_text", "S36"),
                        ("bary_end_time", ">f8"), ("helio_end_time", ">f8")])
INT_TIMES_DTYPE = np.dtype([("integration_number", ">i4")] + [
    (f"int_{w}_{s}", ">f8") for s in ("MJD_UTC", "BJD_TDB") for w in ("start", "mid", "end")])


def level1b_tables(nints, ngroups):
    """GROUP and INT_TIMES tables with every jwst Level1bModel column, filled like real files."""
    group = np.zeros(nints * ngroups, GROUP_DTYPE)
    group["integration_number"] = np.repeat(np.arange(1, nints + 1), ngroups)
    group["group_number"] = np.tile(np.arange(1, ngroups + 1), nints)
    group["end_day"] = 17
    group["end_milliseconds"] = np.arange(nints * ngroups) * 10737
    group["group_end_time"] = [f"2024-02-10T10:11:{12 + k:02d}.345" for k in range(nints * ngroups)]
    group["number_of_columns"], group["number_of_rows"] = 32, 32
    group["completion_code_text"] = "COMPLETE"
    group["bary_end_time"] = 60350.4 + np.arange(nints * ngroups) * 1e-4
    group["helio_end_time"] = group["bary_end_time"]
    times = np.zeros(nints, INT_TIMES_DTYPE)
    times["integration_number"] = np.arange(1, nints + 1)
    for k, w in enumerate(("start", "mid", "end")):
        times[f"int_{w}_MJD_UTC"] = 60350.4 + np.arange(nints) * 1e-3 + k * 5e-4
        times[f"int_{w}_BJD_TDB"] = times[f"int_{w}_MJD_UTC"] + 8e-4
    return fits.BinTableHDU(group, name="GROUP"), fits.BinTableHDU(times, name="INT_TIMES")


#: The steps that correct a ZEROFRAME in jwst 3.0 (the others carry it unchanged).
ZEROFRAME_STEPS = ("saturation", "superbias", "refpix", "linearity")


@pytest.fixture(scope="module")
def level1b(tmp_path_factory):
    """A simulated NRCA1 exposure rewritten as a real level-1b file (ZEROFRAME, tables, keywords)."""
    tmp = tmp_path_factory.mktemp("level1b")
    files = simulate.write_detector_set({"name": "NRCA1", "preset": "nircam_sw", "size": 32,
                                         "ngroups": 4, "nints": 2, "nexposures": 1}, str(tmp), 5)
    uncal = files["uncal"][0]
    with fits.open(uncal) as hdul:
        header, sci = hdul[0].header.copy(), hdul["SCI"].data.copy()
    header.update(LEVEL1B_KEYWORDS)
    zeroframe = (sci[:, 0].astype(np.float32) - 3.0)    # the first frame, read before group 0 ends
    zeroframe[0, 10, 10] = 65000.0                       # saturated: 0 after saturation (grown)
    zeroframe[1, 5, 5] = 0.0                             # no value: stays 0
    zf = fits.ImageHDU(zeroframe, name="ZEROFRAME")
    path = tmp / "jw01062001001_01101_00001_nrca1_uncal.fits"
    io.write_uncal(sci, header, path, tables=[zf, *level1b_tables(*sci.shape[:2])])
    return path, files["references"], zeroframe


def test_level1b_file_round_trips_through_the_chain_with_its_extensions(level1b, tmp_path):
    path, refs, zeroframe = level1b
    before = fits.getheader(path)
    with fits.open(path) as hdul:
        tables = {n: np.array(hdul[n].data) for n in ("GROUP", "INT_TIMES")}
    current = str(path)
    previous = zeroframe
    for step in pipeline.chain("NIR", {}):
        if step == "ramp_fit":
            continue
        out = str(tmp_path / f"{step}.fits")
        needed = {k: refs[k] for k in pipeline.REFERENCES[step] if k in refs}
        runner.run_step_file(step, current, needed, out)
        ramp = io.read_ramp(out)
        # kept by every step; corrected (as jwst, tests/test_zeroframe.py) by these four only
        assert ramp.zeroframe.shape == zeroframe.shape and ramp.zeroframe.dtype == np.float32
        if step in ZEROFRAME_STEPS:
            assert np.any(ramp.zeroframe != previous), step
        else:
            np.testing.assert_array_equal(ramp.zeroframe, previous, err_msg=step)
        previous = ramp.zeroframe
        with fits.open(out) as hdul:
            for name, table in tables.items():
                np.testing.assert_array_equal(np.array(hdul[name].data), table)
            for key, val in LEVEL1B_KEYWORDS.items():
                assert hdul[0].header[key] == val, (step, key)
            assert hdul[0].header["EXPSTART"] == before["EXPSTART"]
        current = out
    assert previous[1, 5, 5] == 0 and np.all(previous[0, 9:12, 9:12] == 0)
    assert np.count_nonzero(previous == 0) == 10
    rate, rateints = str(tmp_path / "rate.fits"), str(tmp_path / "rateints.fits")
    runner.run_ramp_fit_file(current, {k: refs[k] for k in ("gain", "readnoise")}, rate, rateints)
    with fits.open(rateints) as hdul:
        np.testing.assert_array_equal(np.array(hdul["INT_TIMES"].data), tables["INT_TIMES"])
        assert hdul[0].header["PROGRAM"] == "01062"
    from stdatamodels.jwst import datamodels
    with datamodels.RampModel(current) as model:     # jwst reads our products with ZEROFRAME
        np.testing.assert_array_equal(model.zeroframe, previous)
        assert len(model.group) == 8 and len(model.int_times) == 2


def zeroframe_case(seed, nints=2, ngroups=5):
    """A parity case with ~10 % of the ramps saturated from group 0 and a ZEROFRAME (some 0)."""
    case = parity_case(nints, ngroups, seed=seed)
    rng = np.random.default_rng(seed)
    sat0 = rng.random((nints,) + case["pixeldq"].shape) < 0.1
    case["groupdq"][np.broadcast_to(sat0[:, None], case["groupdq"].shape)] |= SAT
    zeroframe = rng.uniform(50.0, 400.0, sat0.shape).astype(np.float32)
    zeroframe[rng.random(sat0.shape) < 0.2] = 0.0     # no ZEROFRAME value: stays unusable
    return case, zeroframe, sat0


def stcal_fit_zeroframe(case, zeroframe):
    """stcal ramp_fit_data with a ZEROFRAME (suppress_one_group off: the only case stcal uses it)."""
    from stcal.ramp_fitting import ramp_fit_class
    original = ramp_fit_class.RampData.set_arrays

    def with_zeroframe(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.zeroframe = zeroframe.copy()

    ramp_fit_class.RampData.set_arrays = with_zeroframe
    try:
        return stcal_fit(case, suppress_one_group=False)
    finally:
        ramp_fit_class.RampData.set_arrays = original


@pytest.mark.parity
@pytest.mark.parametrize("seed,nints,ngroups,nframes", [(31, 2, 5, 1), (32, 1, 3, 1), (33, 3, 8, 1)])
def test_ramp_fit_uses_zeroframe_as_stcal_on_pixels_saturated_in_group_0(seed, nints, ngroups, nframes):
    case, zeroframe, sat0 = zeroframe_case(seed, nints, ngroups)
    ref_rate, ref_ints = stcal_fit_zeroframe(case, zeroframe)
    rate, rateints = fit_ramps(**case, suppress_one_group=False, zeroframe=zeroframe)
    assert_products_match(rate, ref_rate)
    assert_products_match(rateints, ref_ints)
    np.testing.assert_array_equal(rateints["sci"], ref_ints["slope"])
    used = sat0 & (zeroframe != 0) & (case["pixeldq"] == 0) & (case["gain"] > 0)
    assert used.sum() > 20
    # the ZEROFRAME gives those integrations a slope of zf / TFRAME
    np.testing.assert_allclose(rateints["sci"][used],
                               (zeroframe / np.float32(case["tframe"]))[used], rtol=1e-6)
    without, _ = fit_ramps(**case, suppress_one_group=False)[1], None
    assert np.all(np.isnan(without["sci"][used]))


def test_a_zeroframe_without_zerofram_is_carried_but_neither_corrected_nor_used(level1b, caplog):
    """jwst corrects a ZEROFRAME only when ZEROFRAM = T; detcal's ramp_fit then leaves it out too."""
    path, refs, zeroframe = level1b
    ramp = io.read_ramp(path)
    ramp.header["ZEROFRAM"] = False
    from detcal.steps import linearity, ramp_fit, saturation, superbias
    read = {k: io.read_reference(refs[k], io.REFTYPES[k], like=ramp)
            for k in ("saturation", "superbias", "linearity", "gain", "readnoise")}
    ramp = saturation.run(ramp, read)
    ramp = superbias.run(ramp, read)
    ramp = linearity.run(ramp, read)
    np.testing.assert_array_equal(ramp.zeroframe, zeroframe)
    with caplog.at_level("INFO", logger="detcal.ramp_fit"):
        ramp_fit.run(ramp, read, suppress_one_group=False)
    assert "ZEROFRAME extension but ZEROFRAM is not T" in caplog.text
    ramp.header["ZEROFRAM"] = True
    assert ramp.has_zeroframe
    caplog.clear()
    with caplog.at_level("INFO", logger="detcal.ramp_fit"):
        ramp_fit.run(ramp, read, suppress_one_group=False)
    assert "ZEROFRAM is not T" not in caplog.text
