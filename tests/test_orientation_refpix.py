"""Every JWST near-IR orientation through refpix, file to file, bit-identical to jwst 3.0 RefPixStep.

NIRISS (NIS: FASTAXIS=-2, SLOWAXIS=-1) and NIRSpec traditional readout (NRS1: 2/1, NRS2: -2/-1;
NIRCam is covered in test_refpix.py) are written as RampModel-layout files with their own
headers; detcal's refpix step (:func:`detcal.runner.run_step`, as the workflow runs it) and jwst's
``RefPixStep`` run on the same file, each reading the orientation, outputs and subarray from the
header. Full frames (4 outputs) and one real subarray per instrument (1 output; reference pixels
from PIXELDQ as dq_init sets them). NIRSpec IRS2 data are refused with one clear error.
"""

import warnings

import numpy as np
import pytest

from detcal import dqflags, inventory, io, runner
from detcal.errors import InputError

from conftest import make_header
from test_refpix import border, realistic

DNU, REF = dqflags.DO_NOT_USE, dqflags.REFERENCE_PIXEL

#: (instrument, detector, FASTAXIS, SLOWAXIS, READPATT)
ORIENTATIONS = {"NIS": ("NIRISS", "NIS", -2, -1, "NISRAPID"),
                "NRS1": ("NIRSPEC", "NRS1", 2, 1, "NRSRAPID"),
                "NRS2": ("NIRSPEC", "NRS2", -2, -1, "NRSRAPID")}

#: Real subarrays (DMS frame): name, (SUBSTRT2, SUBSTRT1) 1-based, (SUBSIZE2, SUBSIZE1).
SUBARRAYS = {"NIS": ("SUBSTRIP96", (1803, 1), (96, 2048)),
             "NRS1": ("SUB2048", (946, 1), (32, 2048)),
             "NRS2": ("SUB2048", (946, 1), (32, 2048))}


def write_case(tmp_path, det, subarray):
    instrument, detector, fast, slow, readpatt = ORIENTATIONS[det]
    if subarray:
        name, (y1, x1), (ny, nx) = SUBARRAYS[det]
        full, pixeldq_full = realistic((1, 2, 2048, 2048), 21, fast, slow)
        data = np.ascontiguousarray(full[..., y1 - 1:y1 - 1 + ny, x1 - 1:x1 - 1 + nx])
        pixeldq = np.ascontiguousarray(pixeldq_full[y1 - 1:y1 - 1 + ny, x1 - 1:x1 - 1 + nx])
        ref = border((2048, 2048))[y1 - 1:y1 - 1 + ny, x1 - 1:x1 - 1 + nx]
        pixeldq[ref] |= REF
        noutputs = 1
    else:
        name, (y1, x1) = "FULL", (1, 1)
        data, pixeldq = realistic((1, 2, 2048, 2048), 22, fast, slow)
        noutputs = 4
    nints, ngroups, ny, nx = data.shape
    header = make_header(nints, ngroups, ny, nx, instrument, DETECTOR=detector, FASTAXIS=fast,
                         SLOWAXIS=slow, READPATT=readpatt, SUBARRAY=name, SUBSTRT1=x1, SUBSTRT2=y1,
                         NOUTPUTS=noutputs)
    ramp = io.Ramp(data, pixeldq, np.zeros(data.shape, np.uint8), header, "in.fits")
    path = tmp_path / f"{det}_{name}.fits"
    io.write_ramp(ramp, path, step="saturation")
    return path


def jwst_refpix_file(path):
    from jwst.refpix import RefPixStep
    from stdatamodels.jwst.datamodels import RampModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RampModel(str(path)) as model:
            result = RefPixStep(override_refpix="N/A", override_sirskernel="N/A").run(model)
            return np.asarray(result.data), result.meta.cal_step.refpix


@pytest.mark.parity
@pytest.mark.parametrize("subarray", [False, True], ids=["full", "subarray"])
@pytest.mark.parametrize("det", ["NIS", "NRS1", "NRS2"])
def test_refpix_matches_jwst_in_every_orientation(tmp_path, det, subarray):
    path = write_case(tmp_path, det, subarray)
    out = tmp_path / "detcal_refpix.fits"
    runner.run_step_file("refpix", str(path), {}, str(out))
    got = io.read_ramp(out).data
    expect, status = jwst_refpix_file(path)
    assert status == "COMPLETE"
    before = io.read_ramp(path).data
    assert np.any(got != before)
    print(f"refpix {det} {'subarray' if subarray else 'FULL'}: max |detcal - jwst| = "
          f"{np.abs(got.astype(np.float64) - expect).max():.3g} DN")
    np.testing.assert_array_equal(got, expect)


def test_nirspec_irs2_is_refused_with_one_clear_error(tmp_path):
    header = make_header(1, 2, 8, 8, "NIRSPEC", DETECTOR="NRS1", FASTAXIS=2, SLOWAXIS=1,
                         READPATT="NRSIRS2RAPID")
    path = tmp_path / "jw_nrs1_irs2_uncal.fits"
    io.write_uncal(np.zeros((1, 2, 8, 8), np.uint16), header, path)
    with pytest.raises(InputError, match=r"jw_nrs1_irs2_uncal.fits.*IRS2.*not supported yet"):
        inventory.header_row(path)
    with pytest.raises(InputError, match=r"jw_nrs1_irs2_uncal.fits.*IRS2.*not supported yet"):
        io.read_ramp(path)
