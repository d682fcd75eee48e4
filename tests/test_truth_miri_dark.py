"""Truth tests of the MIRI DARK reference built by the pipeline (issue 10).

The DARK is built by ``tests/truthkit.reduce_campaign`` from an independent simulated
calibration set with the workflow's own builder (:func:`detcal.reffiles.dark.make_dark`) on the
no-dark branch's jump ramps, exactly as the workflow does. It is compared with the simulator's
truth in jwst's convention (each dark integration's group 0 subtracted), and used as
``override_dark`` of jwst's DarkCurrentStep on an independent simulated exposure.
"""

import math

import numpy as np
import pytest

from detcal import dqflags, io, pipeline, steps
from detcal.simulate import miri

from truthkit import reduce_campaign

SPEC = {"name": "MIRIMAGE", "preset": "miri_imager", "size": 32, "ngroups": 20, "nints": 3,
        "nexposures": 1}
SEED = 7


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return reduce_campaign(tmp_path_factory.mktemp("miridark"), SPEC, SEED, ncal=3)


def true_dark(spec, seed, ngroups, enabled=None):
    """The simulator's DARK truth in jwst's convention: group 0 of each plane subtracted; the
    reset anomaly only when the chain has no ``reset`` step (which removes it before the dark)."""
    det = miri.make_detector(spec, seed)
    reset_in_chain = "reset" in pipeline.chain("MIRI", enabled or {})
    cube = miri.dark_cube(det, ngroups, reset=not reset_in_chain).astype(np.float64)
    return det, cube - cube[:, :1]


def test_miri_dark_has_no_pixel_group_off_the_truth_beyond_gaussian_noise(campaign):
    """No cosmic ray leaks into the cube: |dark - truth| / sigma > 5 in no more pixel-groups than
    Gaussian noise predicts for their number (sigma: robust scatter of the residuals of the
    group over the active pixels, which holds read noise, shot noise and kTC-free CDS noise)."""
    check_against_truth(campaign, None)


def test_miri_dark_without_the_reset_step_holds_the_reset_anomaly_and_no_cosmic_ray(tmp_path):
    """The chain without ``reset`` (a campaign building its first RESET from these darks): the
    DARK then holds the reset anomaly, and still no cosmic ray."""
    camp = reduce_campaign(tmp_path, SPEC, SEED + 1, ncal=3, branches=("nodark",),
                           enabled={"reset": False})
    check_against_truth(camp, {"reset": False})


def check_against_truth(campaign, enabled):
    ref = io.read_reference(campaign.references["dark"], "DARK")
    det, truth = true_dark(SPEC, campaign.seed, SPEC["ngroups"], enabled)
    assert ref.data.shape == truth.shape
    assert np.all(ref.data[:, 0] == 0)                      # jwst: group 0 of the dark is 0
    active = ~det.reference
    resid = (ref.data.astype(np.float64) - truth)[:, 1:, active]
    med = np.median(resid, axis=-1, keepdims=True)
    sigma = 1.482602218505602 * np.median(np.abs(resid - med), axis=-1, keepdims=True)
    z = resid / sigma
    n = z.size
    expected = n * math.erfc(5 / math.sqrt(2))               # ~0.02 for ~40000 pixel-groups
    n_out = int(np.count_nonzero(np.abs(z) > 5))
    print(f"MIRI DARK vs truth: {n} pixel-groups, max |z| = {np.abs(z).max():.2f}, "
          f"{n_out} beyond 5 sigma (Gaussian expectation {expected:.3f}); "
          f"max |dark - truth| = {np.abs(resid).max():.1f} DN; median sigma "
          f"{np.median(sigma):.2f} DN")
    assert n_out <= 1 + 3 * expected


def test_miri_dark_flags_pixels_with_too_few_clean_values(campaign):
    """Pixels whose clean values (no cosmic ray, not saturated) drop below 2 in some group get
    UNRELIABLE_DARK; the rest have DQ 0."""
    from astropy.io import fits

    counts = campaign.references["dark"]
    ref = io.read_reference(counts, "DARK")
    header = fits.getheader(counts)
    assert header["DRKMINCT"] == 2 and header["DRKGRP0"] and header["DRKCRALL"]
    assert header["DRKNCR"] > 0                              # cosmic rays were found and cut
    flagged = (ref.dq[:, 0] & dqflags.UNRELIABLE_DARK) != 0
    assert np.all((ref.dq[:, 0] & ~np.uint32(dqflags.UNRELIABLE_DARK)) == 0)
    assert flagged.sum() < 0.05 * flagged.size


def _jwst_dark_current(ramp_path, dark_path, monkeypatch):
    import stpipe.crds_client
    from jwst.dark_current import DarkCurrentStep
    from stdatamodels.jwst.datamodels import RampModel
    monkeypatch.setattr(stpipe.crds_client, "get_context_used", lambda *a, **k: "offline")
    with RampModel(ramp_path) as model:
        result = DarkCurrentStep(override_dark=str(dark_path)).run(model)
        assert result.meta.cal_step.dark_sub == "COMPLETE"
        return result.data.astype(np.float64), result.pixeldq.copy()


def _integration_means(data, select):
    """Clipped (3 sigma, median centre) mean over ``select`` of each integration's OLS slope
    over all groups [DN/group] (cosmic rays are clipped)."""
    from detcal.analysis.robust import clipped_stats
    g = np.arange(data.shape[1], dtype=np.float64)
    w = (g - g.mean()) / np.sum((g - g.mean()) ** 2)
    slopes = np.tensordot(w, data, axes=(0, 1))              # (nints, ny, nx)
    return np.array([clipped_stats(s[select]).mean for s in slopes])


@pytest.mark.parity
def test_jwst_dark_current_step_with_our_miri_dark_leaves_zero_mean_slopes(campaign, monkeypatch):
    """jwst DarkCurrentStep(override_dark=our DARK) on an independent simulated exposure (the
    science set, before dark_current): the mean slope of the active pixels is 0 within noise,
    where without the dark it is the dark current plus the anomalies."""
    exposure = campaign.files["exposures"][0]
    before = campaign.products[exposure]["before_dark"]
    data, pixeldq = _jwst_dark_current(before, campaign.references["dark"], monkeypatch)
    # the MIRI chain runs refpix after dark_current: it removes the outputs' common drifts
    ramp = io.read_ramp(before, "dark_current")
    raw = steps.REGISTRY["refpix"].run(ramp, {}).data.astype(np.float64)
    ramp = io.read_ramp(before, "dark_current")
    ramp.data = data.astype(np.float32)
    data = steps.REGISTRY["refpix"].run(ramp, {}).data.astype(np.float64)
    det = miri.make_detector(SPEC, SEED)
    select = ~det.reference & ~det.hot & ~det.warm & ~det.dead & ((pixeldq & dqflags.DO_NOT_USE) == 0)
    after = _integration_means(data, select)
    without = _integration_means(raw, select)
    # per integration the noise is the read noise of the pixels' slopes (refpix removed the
    # outputs' common drifts)
    white = 1.482602218505602 * np.median(np.abs(np.diff(data, axis=1)[:, :, select]))
    g = data.shape[1]
    sigma_int = white / math.sqrt(2) * math.sqrt(12.0 / (g ** 3 - g)) / math.sqrt(select.sum())
    print(f"mean slope after our dark: {np.round(after, 4)} DN/group (sigma ~{sigma_int:.4f} "
          f"white); without it: {np.round(without, 4)}")
    for a in after:
        assert abs(a) < max(5 * sigma_int, 0.01)           # 0.01 DN/group = 7 % of the dark
    # without the dark, RSCD and the last frame bias the later integrations' slopes by ~0.5 DN/group
    assert np.max(np.abs(without)) > 10 * max(5 * sigma_int, 0.01)


def test_first_cosmic_ray_finds_hits_in_do_not_use_groups_under_the_reset_anomaly():
    """Pure arrays: 20 groups of 32 x 32 pixels with a -40 DN reset anomaly (10 % pixel scatter),
    per-pixel dark rates and 4.2 DN read noise; the first 10 groups and the last are DO_NOT_USE
    (the no-dark branch's flags). Hits of 30-300 DN in groups 1-9 are found at their group;
    false alarms stay at the Gaussian rate of a 4-sigma one-sided test."""
    from detcal.reffiles.dark import first_cosmic_ray

    rng = np.random.default_rng(4)
    ngroups, ny, nx = 20, 32, 32
    g = np.arange(ngroups)[:, None, None]
    anomaly = -40.0 * np.exp(-g / 3.0) * (1 + 0.1 * rng.standard_normal((ny, nx)))
    rate = rng.lognormal(np.log(0.14), 0.3, (ny, nx))
    data = (12000 + anomaly + rate * g + rng.normal(0, 4.2, (ngroups, ny, nx))).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[:10] |= dqflags.DO_NOT_USE
    gdq[-1] |= dqflags.DO_NOT_USE
    hits = [(y, x, int(rng.integers(1, 10)), float(rng.uniform(30, 300)))
            for y, x in zip(rng.choice(ny, 20), rng.choice(nx, 20))]
    truth = np.full((ny, nx), ngroups)
    for y, x, grp, amp in hits:
        if truth[y, x] == ngroups:
            data[grp:, y, x] += np.float32(amp)
            truth[y, x] = grp
    first = first_cosmic_ray(data, gdq)
    hit = truth < ngroups
    assert np.all(first[hit] == truth[hit]), (first[hit], truth[hit])
    false = np.count_nonzero(first[~hit] < ngroups)
    expected = (~hit).sum() * (ngroups - 1) * 0.5 * math.erfc(4 / math.sqrt(2))
    print(f"{hit.sum()} hits found at their group; {false} false alarms (Gaussian {expected:.2f})")
    assert false <= 2 + 3 * expected
