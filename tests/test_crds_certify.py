"""Reference files as CRDS takes them: DATAMODL, schema validation and crds certify (offline).

Every reference the demo simulation writes (standing for the CRDS references a team starts from)
and every reference the pipeline builds (SUPERBIAS, READNOISE, DARK through the workflow's own
builders via :func:`truthkit.reduce_campaign`, MASK through :func:`detcal.reffiles.badpix.make_mask`)
must

* open through ``stdatamodels.jwst.datamodels.open`` as its own model class without warnings,
  and validate against that model's schema;
* pass ``crds certify`` against a context of a local cache (:mod:`crdskit`) whose rmaps select on
  the operational parkeys of that type and instrument (so the rmap keywords are required too).

The simulator's mini detectors are written as SUBARRAY='FULL' arrays of their own size (32 x 32
here), which the certify rules reject for the one reason that a FULL array must have the real
full-frame shape (2048 x 2048 NIR, 1024 x 1032 MIRI): exactly those constraints are excused
(:data:`MINI_FULL_FRAME`), nothing else. The mixed-campaign workflow test certifies reference files
built from subarray data, where no constraint is excused.
"""

import logging
import os
import warnings
from unittest import mock

import numpy as np
import pytest

from detcal import io
from detcal.reffiles import badpix

import crdskit
import truthkit

pytestmark = pytest.mark.parity

#: Certify errors that only say "a FULL array must have the full-frame shape" (mini detectors).
MINI_FULL_FRAME = ("SHAPE[-2:]==(2048,2048)", "SHAPE[-2:]==(1024,1032)", "META_SUBARRAY_XSIZE==1032",
                   "META_SUBARRAY_YSIZE==1024", "META_SUBARRAY_XSIZE==2048", "META_SUBARRAY_YSIZE==2048")

#: stdatamodels class per (REFTYPE, family).
EXPECTED_MODEL = {"DARK": "DarkModel", "SUPERBIAS": "SuperBiasModel", "READNOISE": "ReadnoiseModel",
                  "MASK": "MaskModel", "RESET": "ResetModel", "SATURATION": "SaturationModel",
                  "LINEARITY": "LinearityModel", "GAIN": "GainModel", "RSCD": "RSCDModel"}


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def certify_errors(path, context=crdskit.CONTEXT):
    """crds certify ``path`` against ``context``; returns the error messages (list of str)."""
    from crds.certify import certify
    handler = _Collect()
    logger = logging.getLogger("CRDS")
    logger.addHandler(handler)
    try:
        # crds runs gc.collect() ~20 times per file (memory housekeeping): 95 % of its time here
        with mock.patch("gc.collect", return_value=0):
            certify.certify_file(str(path), context)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in handler.records if r.levelno >= logging.ERROR]


def check_reference(path, excused=()):
    """Assert that ``path`` opens as its own model, validates and certifies (but for ``excused``)."""
    from stdatamodels.jwst import datamodels
    header = io.read_headers(path)[0]
    reftype, instrument = header["REFTYPE"], header["INSTRUME"]
    expected = "DarkMIRIModel" if (reftype, instrument) == ("DARK", "MIRI") else EXPECTED_MODEL[reftype]
    assert header["DATAMODL"] == expected, path
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # "model_type not found" and friends are failures
        with datamodels.open(path) as model:
            assert type(model).__name__ == expected, path
            model.validate()
    errors = [e for e in certify_errors(path) if not any(x in e for x in excused)]
    assert errors == [], f"{path}: {errors}"


def _campaign_references(tmp, spec, seed):
    camp = truthkit.reduce_campaign(tmp, spec, seed, ncal=2)
    built = [p for k, p in camp.references.items() if k in truthkit.BUILT[camp.family]]
    mask = os.path.join(str(tmp), "mask.fits")
    badpix.make_mask(camp.paths("rateints"), camp.paths("jump"), mask,
                     gain_path=camp.references["gain"])
    return sorted(camp.files["references"].values()), sorted(built) + [mask]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """{family: (simulated references, pipeline-built references)} and the cache they live in."""
    tmp = tmp_path_factory.mktemp("crds_certify")
    out = {
        "NIR": _campaign_references(tmp / "nir", {"name": "NRCA1", "preset": "nircam_sw", "size": 32,
                                                   "ngroups": 4, "nints": 2, "nexposures": 1}, 11),
        "MIRI": _campaign_references(tmp / "miri", {"name": "MIRIMAGE", "preset": "miri_imager",
                                                     "size": 16, "ngroups": 12, "nints": 2,
                                                     "nexposures": 1}, 12),
    }
    every = [p for sim, built in out.values() for p in sim + built]
    crdskit.build_cache(tmp / "crds", every)
    with crdskit.crds_environment(tmp / "crds"):
        yield out


@pytest.mark.parametrize("family", ["NIR", "MIRI"])
def test_simulated_references_open_as_their_model_and_certify(references, family):
    sim, _ = references[family]
    assert len(sim) >= 7
    for path in sim:
        check_reference(path, excused=MINI_FULL_FRAME)


@pytest.mark.parametrize("family", ["NIR", "MIRI"])
def test_pipeline_built_references_open_as_their_model_and_certify(references, family):
    _, built = references[family]
    types = {io.read_headers(p)[0]["REFTYPE"] for p in built}
    assert types == ({"SUPERBIAS", "READNOISE", "DARK", "MASK"} if family == "NIR"
                     else {"READNOISE", "DARK", "MASK"})
    for path in built:
        check_reference(path, excused=MINI_FULL_FRAME)


def test_certify_catches_a_missing_required_keyword(references, tmp_path):
    """The check has teeth: a DARK without NFRAMES fails certify."""
    from astropy.io import fits
    _, built = references["NIR"]
    dark = next(p for p in built if io.read_headers(p)[0]["REFTYPE"] == "DARK")
    bad = tmp_path / "dark_no_nframes.fits"
    with fits.open(dark) as hdul:
        del hdul[0].header["NFRAMES"]
        hdul.writeto(bad)
    errors = [e for e in certify_errors(bad) if not any(x in e for x in MINI_FULL_FRAME)]
    assert any("NFRAMES" in e for e in errors), errors


def test_mini_full_frame_is_the_only_excused_constraint(references):
    """Without the excuse, the mini detectors fail only on the full-frame shape."""
    sim, _ = references["NIR"]
    errors = certify_errors(sim[0])
    assert errors and all(any(x in e for x in MINI_FULL_FRAME) for e in errors), errors
    assert np.all([h in "".join(errors) for h in ("2048",)])
