"""dark_current with bounded memory (issue 15): the ramp corrected in place, the matched dark
built a chunk of groups at a time, with results identical to the copying path."""

import tracemalloc

import numpy as np
import pytest

from detcal.errors import InputError
from detcal.steps.dark_current import correct_dark, correct_dark_in_place

NY, NX = 24, 32


def case(nints, ngroups, dark_shape, seed=3):
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 20.0, (nints, ngroups, NY, NX)).astype(np.float32)
    dark = rng.normal(5.0, 2.0, dark_shape).astype(np.float32)
    dark[..., 3, 4] = np.nan                                   # NaN dark values count as 0
    pdq = np.zeros((NY, NX), np.uint32)
    pdq[1, 1] = 1
    dq = np.zeros((NY, NX), np.uint32)
    dq[2, 2] = 4
    return data, pdq, dark, dq


@pytest.mark.parametrize("nints, ngroups, dark_shape, dark_readout, readout, intstart, extra", [
    (2, 6, (6, NY, NX), (1, 0), (1, 0), 1, False),            # direct
    (1, 3, (20, NY, NX), (1, 0), (4, 2), 1, False),           # averaged NFRAMES=4, GROUPGAP=2
    (3, 5, (2, 8, NY, NX), (1, 0), (1, 0), 2, False),         # MIRI-like 4-D dark, later segment
    (2, 7, (5, NY, NX), (1, 0), (1, 0), 1, True),             # extrapolated (float64 dark)
    (1, 4, (12, NY, NX), (1, 0), (2, 1), 1, True),            # averaged and extrapolated
])
@pytest.mark.parametrize("memory_mb", [1e-9, 64])
def test_in_place_dark_correction_is_identical_to_the_copying_one(
        nints, ngroups, dark_shape, dark_readout, readout, intstart, extra, memory_mb):
    data, pdq, dark, dq = case(nints, ngroups, dark_shape)
    ref, ref_pdq, matched, ref_info = correct_dark(data, pdq, dark, dq, *dark_readout, *readout,
                                                   intstart=intstart, extrapolate=extra)
    work = data.copy()
    out, out_pdq, info = correct_dark_in_place(work, pdq, dark, dq, *dark_readout, *readout,
                                               intstart=intstart, extrapolate=extra,
                                               memory_mb=memory_mb)
    assert out is work
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out_pdq, ref_pdq)
    assert info["last_group_mean"] == float(np.mean(matched[..., -1, :, :]))
    assert {k: info[k] for k in ref_info} == ref_info


def test_in_place_dark_correction_allocates_one_chunk_not_the_ramp():
    nints, ngroups = 1, 40
    data, pdq, dark, dq = case(nints, ngroups, (ngroups, NY, NX))
    ramp_bytes = data.nbytes
    tracemalloc.start()
    try:
        correct_dark(data, pdq, dark, dq, 1, 0, 1, 0)
        copying = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        correct_dark_in_place(data, pdq, dark, dq, 1, 0, 1, 0, memory_mb=4 * NY * NX * 4 / 1e6)
        in_place = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert copying >= 2 * ramp_bytes           # a corrected copy of the ramp and the whole dark
    assert in_place < ramp_bytes / 4           # 4-group chunks of a 40-group dark


def test_in_place_dark_correction_refuses_a_short_dark_with_the_file_name():
    data, pdq, dark, dq = case(1, 6, (4, NY, NX))
    with pytest.raises(InputError, match="my_dark.fits"):
        correct_dark_in_place(data, pdq, dark, dq, 1, 0, 1, 0, dark_name="my_dark.fits")


def test_dark_run_without_dark_output_corrects_the_ramp_in_place_with_the_same_result():
    from detcal.steps import dark_current

    from test_linearity_dark import dark_ref, make_ramp

    data, _, dark, dq = case(2, 9, (30, NY, NX))
    copied, _ = dark_current.run(make_ramp(data.copy(), NFRAMES=2, GROUPGAP=1),
                                 {"dark": dark_ref(dark, dq=dq)}, dark_output=True)
    ramp = make_ramp(data.copy(), NFRAMES=2, GROUPGAP=1)
    before = ramp.data
    ramp = dark_current.run(ramp, {"dark": dark_ref(dark, dq=dq)}, memory_mb=1e-9)
    assert ramp.data is before                                  # no copy of the ramp
    np.testing.assert_array_equal(ramp.data, copied.data)
    np.testing.assert_array_equal(ramp.pixeldq, copied.pixeldq)
    assert not np.array_equal(ramp.data, data)
