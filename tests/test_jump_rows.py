"""jump on a file by chunks of rows: detect_jumps on an io.LazyArray SCI (read by chunks of row
blocks, never whole) gives the flags of the in-memory call bit for bit in every regime (iterative,
single pass, sigma clip, after-jump flags, MIRI DO_NOT_USE planes, two threads), and the per-step
job (runner.run_step_file) writes the same file as from the ramp read whole, SCI copied."""

import numpy as np
import pytest

from detcal import dqflags, io, runner
from detcal.steps import jump
from detcal.steps.jump import detect_jumps

from conftest import make_ramp
from test_jump import parity_case

DNU = dqflags.DO_NOT_USE

REGIMES = {
    "iterative": ((2, 10, 35), {}),
    "single_pass": ((1, 14, 35), {}),
    "sigma_clip": ((5, 4, 35), {"minimum_sigclip_groups": 5}),
    "after_jump": ((2, 10, 35), {"after_jump_flag_dn1": 500.0, "after_jump_flag_time1": 30.0,
                                 "after_jump_flag_dn2": 50.0, "after_jump_flag_time2": 12.0}),
    "miri_planes": ((2, 9, 35), {}),
}


def file_case(tmp_path, regime, seed=3):
    (nints, ngroups, ny), params = REGIMES[regime]
    data, gdq, pdq, gain, rn, nframes, tgroup = parity_case(nints, ngroups, seed, ny=ny, nx=34, ncr=40)
    if regime == "miri_planes":                  # lastframe / rscd: DO_NOT_USE in whole planes
        gdq[:, -1] |= DNU
        gdq[1:, :2] |= DNU
    ramp = make_ramp(nints, ngroups, ny, 34, data=data, groupdq=gdq, pixeldq=pdq, TFRAME=tgroup)
    path = str(tmp_path / "ramp.fits")
    io.write_ramp(ramp, path)
    return path, (data, gdq, pdq, gain, rn, nframes, tgroup), params


@pytest.mark.parametrize("regime", REGIMES)
def test_lazy_sci_gives_the_in_memory_flags(tmp_path, regime, monkeypatch):
    path, case, params = file_case(tmp_path, regime)
    data, gdq, pdq, gain, rn, nframes, tgroup = case
    whole = detect_jumps(data, gdq, pdq, gain, rn, nframes, tgroup, **params)
    ny = data.shape[2]
    reads = []
    original = io.SectionReader.read
    monkeypatch.setattr(io.SectionReader, "read", lambda self, ext, *a, **k: (
        reads.append((ext, k.get("rows"))), original(self, ext, *a, **k))[1])
    for memory_mb, threads in ((1e-9, 1), (0.004, 1), (0.004, 2)):
        reads.clear()
        with io.RampReader(path) as reader:
            lazy = reader.lazy("SCI")
            out = detect_jumps(lazy, gdq, pdq, gain, rn, nframes, tgroup, memory_mb=memory_mb,
                               threads=threads, **params)
        np.testing.assert_array_equal(out[0], whole[0])
        np.testing.assert_array_equal(out[1], whole[1])
        assert out[2] == whole[2]
        rows = [r for ext, r in reads if ext == "SCI"]
        assert len(rows) >= 2 and all(r.stop - r.start < ny for r in rows)       # never all rows
    assert whole[2]["n_jump_groups"] > 0
    if regime == "sigma_clip":
        assert whole[2]["regime"] == "sigma_clip"


@pytest.mark.parametrize("regime", ["iterative", "miri_planes"])
def test_per_step_job_reads_sci_by_rows_and_writes_the_same_file(tmp_path, regime, monkeypatch):
    path, case, params = file_case(tmp_path, regime)
    ramp = make_ramp(*case[0].shape, TFRAME=case[-1])
    refs = {"gain": str(tmp_path / "gain.fits"), "readnoise": str(tmp_path / "rn.fits")}
    io.write_reference(refs["gain"], "GAIN", {"SCI": case[3]}, _ref_header("GAIN", ramp))
    io.write_reference(refs["readnoise"], "READNOISE", {"SCI": case[4]}, _ref_header("READNOISE", ramp))
    params = {**params, "memory_mb": 0.003, "threads": 2}
    reads = []
    original = io.SectionReader.read
    monkeypatch.setattr(io.SectionReader, "read", lambda self, ext, *a, **k: (
        reads.append((ext, k.get("rows"))), original(self, ext, *a, **k))[1])
    out = runner.run_step_file("jump", path, refs, str(tmp_path / "rows.fits"), params,
                               pixels=[(3, 4)], table=str(tmp_path / "rows.tsv"))
    assert isinstance(out.data, io.LazyArray)
    sci = [r for ext, r in reads if ext == "SCI"]
    chunks = [r for r in sci if isinstance(r, slice)]
    assert len(chunks) >= 2 and all(r.start is not None and r.stop - r.start < case[0].shape[2] for r in chunks)
    assert all(isinstance(r, (int, np.integer)) for r in sci if not isinstance(r, slice))   # sample pixels
    monkeypatch.setattr(jump, "LAZY_DATA", False)             # the ramp read whole, as before
    whole = runner.run_step_file("jump", path, refs, str(tmp_path / "whole.fits"), params,
                                 pixels=[(3, 4)], table=str(tmp_path / "whole.tsv"))
    assert isinstance(whole.data, np.ndarray)
    assert (tmp_path / "rows.fits").read_bytes() == (tmp_path / "whole.fits").read_bytes()
    assert (tmp_path / "rows.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    assert np.count_nonzero(whole.groupdq & dqflags.JUMP_DET) > 0


def _ref_header(reftype, ramp):
    from conftest import make_reference_header
    return make_reference_header(reftype, ramp)
