"""File-level wrappers the workflow scripts call (detcal.runner)."""

import warnings

import numpy as np
import pytest

from detcal import io, runner, simulate

SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 64, "ngroups": 4, "nints": 1, "nexposures": 1}


@pytest.fixture(scope="module")
def detector_set(tmp_path_factory):
    return simulate.write_detector_set(SPEC, str(tmp_path_factory.mktemp("set")), seed=3)


def test_dark_output_writes_the_subtracted_dark_as_a_valid_dark_model(detector_set, tmp_path):
    from stdatamodels.jwst import datamodels
    uncal, refs = detector_set["uncal"][0], detector_set["references"]
    out, dark = tmp_path / "ramp.fits", tmp_path / "dark.fits"
    before = io.read_ramp(uncal)
    after = runner.run_step_file("dark_current", uncal, {"dark": refs["dark"]}, out,
                                 params={"dark_output": True}, extra_output=dark)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with datamodels.DarkModel(str(dark)) as model:
            model.validate()
            subtracted = model.data
    assert subtracted.shape == (4, 64, 64)
    np.testing.assert_allclose(before.data[0] - after.data[0], subtracted, atol=1e-3)
    assert io.read_ramp(out).header["S_DARK"] == "COMPLETE"


def test_bad_input_exits_nonzero_with_one_message_and_no_output(tmp_path, capsys):
    bad = tmp_path / "bad_uncal.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    out = tmp_path / "out.fits"
    with pytest.raises(SystemExit) as exit_info:
        with runner.logged(str(tmp_path / "step.log"), "dq_init"):
            runner.run_step_file("dq_init", str(bad), {}, str(out))
    assert str(bad) in str(exit_info.value.code) and exit_info.value.code.startswith("error:")
    assert not out.exists()
    assert "not a readable FITS file" in (tmp_path / "step.log").read_text()
