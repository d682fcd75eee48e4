"""Files of a simulated detector set: raw exposures, reference files and the truth file.

Layout under ``outdir`` (names known in advance through :func:`plan` / :func:`planned_files`)::

    uncal/{exposure}_uncal.fits              level-1b ramps (SCI uint16), one per exposure
    references/{DETECTOR}/{key}.fits         key in reference_keys(spec), JWST reference layouts
    truth/{DETECTOR}_truth.fits              dark-rate map, populations, CR events, parameters

The detector kind follows the spec's preset (:func:`detector_module`): NIR presets use
:mod:`.h2rg` and write :data:`REFERENCE_KEYS`; MIRI presets use :mod:`.miri` and write
:data:`detcal.simulate.miri.REFERENCE_KEYS` (no superbias; reset, rscd; a 4-D dark).

Every file is a pure function of (spec, seed): the same inputs give the same bytes.
"""

import os

import numpy as np
from astropy.io import fits

from .. import io
from . import h2rg, miri
from .h2rg import CR_DTYPE
from .params import detector_key, frames_per_integration, normalize_spec, parameters_for, simulated_exposure_name

#: Reference files written for every NIR detector (config keys of detcal.io.REFTYPES).
REFERENCE_KEYS = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise")

#: Simulator module of each detector family (each has make_detector / simulate_exposure).
MODULES = {"NIR": h2rg, "MIRI": miri}


def detector_module(spec):
    """The simulator module (:mod:`.h2rg` or :mod:`.miri`) of a spec's detector family."""
    return MODULES[normalize_spec(spec)["family"]]


def reference_keys(spec):
    """Reference files (config keys) a spec's detector set has: NIR :data:`REFERENCE_KEYS`, MIRI
    :data:`detcal.simulate.miri.REFERENCE_KEYS`."""
    return miri.REFERENCE_KEYS if normalize_spec(spec)["family"] == "MIRI" else REFERENCE_KEYS

#: Nominal number of frames a superbias is averaged from (its ERR = single-read scatter / sqrt(N)).
SUPERBIAS_NFRAMES = 100

#: Parameter -> (truth-file keyword, comment) of the main noise parameters (all are in PARAMS).
TRUTH_KEYWORDS = {
    "gain": ("GAIN", "[e-/DN] conversion gain"),
    "rn_cds": ("RNCDS_E", "[e-] white CDS read noise, active pixels"),
    "rn_scatter": ("RNSCAT", "fractional pixel scatter of white read noise"),
    "ref_rn_ratio": ("RNREFRAT", "reference/active white read noise"),
    "ktc": ("KTC_E", "[e-] kTC reset noise"),
    "c_pink": ("CPINK_E", "[e-] correlated 1/f rms (full-frame-time band)"),
    "u_pink": ("UPINK_E", "[e-] uncorrelated 1/f rms per output"),
    "amp_offset": ("AMPOFF_E", "[e-] per-int output/parity offset rms"),
    "amp_drift": ("AMPDRF_E", "[e-] per-frame output/parity random-walk step"),
    "dark_median": ("DARKMED", "[e-/s] median dark rate of normal pixels"),
    "dark_sigma": ("DARKSIG", "lognormal scatter of normal-pixel dark rates"),
    "warm_min": ("WARMMIN", "[e-/s] WARM threshold"),
    "hot_min": ("HOTMIN", "[e-/s] HOT threshold"),
    "cr_rate": ("CRRATE", "[1/cm2/s] cosmic-ray hit rate"),
    "cr_median": ("CRMED", "[e-] median CR charge (lognormal)"),
    "cr_sigma": ("CRSIG", "lognormal width of CR charge"),
    "pixel_pitch": ("PIXPITCH", "[um] pixel pitch (CR hit area)"),
    "well": ("WELL_E", "[e-] full well (measured signal)"),
    "nl_frac": ("NLFRAC", "nonlinearity S_true/S_meas-1 at the well"),
    "bias_level": ("BIASLVL", "[DN] mean bias level"),
    "pixel_time": ("PIXTIME", "[s] pixel read time"),
}


def plan(spec):
    """Exposure names of a detector spec, without simulating: ``['demo_nrca1_e001', ...]``."""
    s = normalize_spec(spec)
    return [simulated_exposure_name(s["name"], i, s["prefix"]) for i in range(s["nexposures"])]


def planned_files(spec, outdir):
    """Paths :func:`write_detector_set` will write (same dict layout as its return value)."""
    s = normalize_spec(spec)
    names = plan(s)
    ref_dir = os.path.join(outdir, "references", s["name"])
    return {
        "detector": s["name"],
        "exposures": names,
        "uncal": [os.path.join(outdir, "uncal", f"{n}_uncal.fits") for n in names],
        "references": {k: os.path.join(ref_dir, f"{k}.fits") for k in reference_keys(s)},
        "truth": os.path.join(outdir, "truth", f"{s['name']}_truth.fits"),
    }


def write_detector_set(spec, outdir, seed):
    """Simulate and write one detector's demo set: exposures, reference files, truth.

    Parameters
    ----------
    spec : dict
        Detector spec. Keys (defaults in :data:`detcal.simulate.params.SPEC_KEYS`):

        - ``name`` (str, required): DETECTOR keyword, e.g. ``'NRCA1'``, ``'NRCALONG'``, ``'NIS'``
          (orientation from :data:`~detcal.simulate.params.DETECTORS`, or give ``fastaxis``/
          ``slowaxis`` in overrides);
        - ``preset`` (str, required): ``'nircam_sw'``, ``'nircam_lw'``, ``'niriss'`` or
          ``'miri_imager'`` (name e.g. ``'MIRIMAGE'``);
        - ``size`` (int, 256): NIR: pixels per side, including the 4-pixel reference border;
          MIRI: rows (= light-sensitive columns), the array being ``size x (size + 8)``;
        - ``readpatt`` (str, default the preset's ``rapid_pattern``: 'RAPID', 'NISRAPID' or
          'FAST'; any key of :data:`~detcal.simulate.params.READ_PATTERNS` of the detector's
          family: MIRI FAST, FASTR1, SLOW, SLOWR1), ``ngroups`` (int, 10),
          ``nints`` (int, 1), ``nexposures`` (int, 1);
        - ``overrides`` (dict, {}): parameter -> value (names and units in
          :data:`~detcal.simulate.params.PARAMETERS`; e.g. ``{'tframe': 10.73677, 'cr_rate': 0}``);
        - ``prefix`` ('demo'), ``expstart`` (MJD, 60310.0), ``cadence`` (hours between exposure
          starts, 1.0), ``dark_ngroups`` (minimum NGROUPS of the DARK reference, 0).
    outdir : str
        Root directory (created).
    seed : int >= 0
        Master seed: the same (spec, seed) gives byte-identical files.

    Returns
    -------
    dict with ``detector`` (name), ``exposures`` (names), ``uncal`` (paths), ``references``
    ({key: path}), ``truth`` (path): the same as :func:`planned_files`.
    """
    s = normalize_spec(spec)
    files = planned_files(spec, outdir)
    module = detector_module(s)
    det = module.make_detector(s, seed)
    events, exposures = [], []
    for index, (name, path) in enumerate(zip(files["exposures"], files["uncal"])):
        data, header, truth = module.simulate_exposure(det, index=index, exposure=name)
        io.write_uncal(data, header, path)
        events.append(truth["cr_events"])
        exposures.append((name, header["EXPSTART"], header["READPATT"], header["NGROUPS"],
                          header["NINTS"], header["NFRAMES"], header["GROUPGAP"], header["TFRAME"],
                          len(truth["cr_events"]), truth["pink_method"]))
        del data
    ntot = frames_per_integration(s["ngroups"], s["nframes"], s["groupgap"])
    write_references(det, files["references"], max(ntot, s["dark_ngroups"]))
    write_truth(det, files["truth"], np.concatenate(events) if events else np.zeros(0, CR_DTYPE),
                exposures)
    return files


def _ref_meta(det):
    h = det.base_header()
    meta = {k: h[k] for k in ("INSTRUME", "DETECTOR", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1",
                              "SUBSIZE2", "FASTAXIS", "SLOWAXIS")}
    meta["DC_SIM"] = True
    meta["DC_SEED"] = det.seed
    return meta


def reference_arrays(det, dark_ngroups):
    """Arrays of every reference file, science orientation: {key: {extension: array}}.

    MIRI detectors: :func:`detcal.simulate.miri.reference_arrays`. NIR detectors:

    MASK: REFERENCE_PIXEL on the border (never DO_NOT_USE there), HOT / WARM from the truth
    dark-rate populations, DEAD|DO_NOT_USE for dead pixels. SATURATION: bias + sat_margin*well
    [DN raw]. SUPERBIAS: the true kTC-free bias [DN], ERR = single-read scatter
    sqrt(kTC^2 + rn^2)/gain / sqrt(SUPERBIAS_NFRAMES). LINEARITY: the true coefficients
    (identity and NO_LIN_CORR on reference pixels). DARK: rate*(g+1)*TFRAME/gain for g <
    ``dark_ngroups`` [DN] (NFRAMES=1, GROUPGAP=0), ERR = its Poisson scatter in one integration.
    GAIN [e-/DN]. READNOISE: white CDS noise [DN].
    """
    if isinstance(det, miri.Detector):
        return miri.reference_arrays(det, dark_ngroups)
    sci = det.science
    shape = det.shape
    mask = det.mask_dq()
    lin_dq = det.linearity_dq()
    p = det.params
    bias_err = np.sqrt(p["ktc"] ** 2 + det.rn_frame.astype(np.float64) ** 2) / det.gain
    dark = det.dark_signal(dark_ngroups)
    zeros = np.zeros(shape, np.uint32)
    return {
        "mask": {"DQ": sci(mask)},
        "saturation": {"SCI": sci(det.saturation), "DQ": zeros},
        "superbias": {"SCI": sci(det.bias), "DQ": zeros,
                      "ERR": sci((bias_err / np.sqrt(SUPERBIAS_NFRAMES)).astype(np.float32))},
        "linearity": {"COEFFS": sci(det.coeffs), "DQ": sci(lin_dq)},
        "dark": {"SCI": sci(dark), "DQ": zeros,
                 "ERR": sci(np.sqrt(np.clip(dark, 0, None) / det.gain).astype(np.float32))},
        "gain": {"SCI": np.full(shape, det.gain, np.float32)},
        "readnoise": {"SCI": sci(det.readnoise_cds_dn)},
    }


_DESCRIPTIONS = {
    "mask": "bad-pixel mask (truth: reference border, hot, warm, dead)",
    "saturation": "saturation threshold, raw DN incl. bias (truth well x sat_margin)",
    "superbias": "superbias (truth kTC-free bias)",
    "linearity": "linearity coefficients (truth)",
    "dark": "dark signal per RAPID group (truth rate x time)",
    "gain": "gain (truth)",
    "readnoise": "white CDS read noise (truth)",
}


def write_references(det, paths, dark_ngroups):
    """Write every reference file of ``det``: ``paths`` maps its reference keys -> path."""
    arrays = reference_arrays(det, dark_ngroups)
    descriptions = miri.DESCRIPTIONS if isinstance(det, miri.Detector) else _DESCRIPTIONS
    for key in arrays:
        reftype = io.REFTYPES[key]
        meta = _ref_meta(det)
        if key == "dark":
            meta.update(READPATT=det.dark_readpatt, NFRAMES=1, GROUPGAP=0,
                        NGROUPS=int(dark_ngroups), TFRAME=det.tframe, TGROUP=det.tframe)
        if key == "reset":                # jwst reset reads NINTS/NGROUPS from the header
            nints_ref, ngroups_ref = arrays[key]["SCI"].shape[:2]
            meta.update(READPATT=det.dark_readpatt, NINTS=int(nints_ref), NGROUPS=int(ngroups_ref))
        if key == "readnoise":
            meta["BUNIT"] = "DN"
        header = io.reference_header(reftype, meta, f"Simulated {det.name} {descriptions[key]}, "
                                                    f"detcal.simulate seed {det.seed}",
                                     author="detcal.simulate", pedigree="DUMMY")
        io.write_reference(paths[key], reftype, arrays[key], header, step=f"simulate {key}")


def write_truth(det, path, events, exposures):
    """Write the truth file of ``det``.

    Extensions (science orientation): DARK_RATE [e-/s], DARK_RATE_DN [DN/s], HOT, WARM, DEAD,
    NOISY (uint8; NOISY: the noisy-pixel population, whose RN_FRAME carries its factor),
    RN_FRAME (single-frame white read noise [e-]), WELL [DN], CR_EVENTS (table,
    :data:`~detcal.simulate.h2rg.CR_DTYPE`: exposure, integration/frame/group 0-based, time [s
    after reset], y, x, charge and central-pixel charge [e-], npix), EXPOSURES (table), PARAMS
    (every parameter: name, value, unit, description). The primary header carries the main
    parameters (:data:`TRUTH_KEYWORDS`, those the detector kind has) and derived numbers (CDS
    noise in DN, mean dark rate, population counts, number of CR events). MIRI adds the anomaly
    keywords, RESET_AMP / RSCD_AMP / LASTFRAME_AMP maps [DN] and an ANOMALY table
    (:func:`detcal.simulate.miri.extra_truth`).
    """
    sci = det.science
    p = det.params
    alive = det.response
    h = det.base_header()
    h["DC_SIM"] = (True, "detcal.simulate truth file")
    h["DC_SEED"] = (det.seed, "detcal.simulate random seed")
    h["DC_PRESE"] = (det.spec["preset"], "parameter preset")
    h["TFRAME"] = (det.tframe, "[s] frame time")
    h["READPATT"] = (det.spec["readpatt"], "readout pattern of the exposures")
    for name, (kw, comment) in TRUTH_KEYWORDS.items():
        if name in p:
            h[kw] = (p[name], comment)
    extra = miri.extra_truth(det) if isinstance(det, miri.Detector) else {}
    for kw, card in extra.get("header", {}).items():
        h[kw] = card
    h["RNCDS_DN"] = (p["rn_cds"] / p["gain"], "[DN] white CDS read noise, active pixels")
    h["RNFRM_E"] = (p["rn_cds"] / np.sqrt(2.0), "[e-] single-frame white read noise")
    h["KTC_DN"] = (p["ktc"] / p["gain"], "[DN] kTC reset noise")
    h["DARKMEAN"] = (float(det.dark_rate[alive].mean()), "[e-/s] mean true dark rate, live pixels")
    h["DARKMDN"] = (float(np.median(det.dark_rate[alive])), "[e-/s] median true dark rate")
    h["NHOT"] = (int(det.hot.sum()), "hot pixels (rate >= hot_min)")
    h["NWARM"] = (int(det.warm.sum()), "warm pixels (warm_min <= rate < hot_min)")
    h["NDEAD"] = (int(det.dead.sum()), "dead pixels")
    noisy, _ = h2rg.noisy_population(p, det.reference, det.dead, det.seed, detector_key(det.name))
    h["NNOISY"] = (int(noisy.sum()), "noisy pixels (read noise x noisy_min..max)")
    h["NCR"] = (int(len(events)), "cosmic-ray events in all exposures")
    h["NEXPOSUR"] = (len(exposures), "simulated exposures")
    io.add_history(h, "simulate truth")
    hdus = [fits.PrimaryHDU(header=h)]
    images = {
        "DARK_RATE": (sci(det.dark_rate), "e-/s"),
        "DARK_RATE_DN": (sci((det.dark_rate / det.gain).astype(np.float32)), "DN/s"),
        "HOT": (sci(det.hot.astype(np.uint8)), ""),
        "WARM": (sci(det.warm.astype(np.uint8)), ""),
        "DEAD": (sci(det.dead.astype(np.uint8)), ""),
        "NOISY": (sci(noisy.astype(np.uint8)), ""),
        "RN_FRAME": (sci(det.rn_frame), "e-"),
        "WELL": (sci(det.well), "DN"),
        **extra.get("images", {}),
    }
    for name, (arr, unit) in images.items():
        hdu = fits.ImageHDU(arr, name=name)
        if unit:
            hdu.header["BUNIT"] = unit
        hdus.append(hdu)
    hdus.append(_table_hdu(events, "CR_EVENTS"))
    exp = np.array(exposures, dtype=[("exposure", "U40"), ("expstart", "f8"), ("readpatt", "U12"),
                                     ("ngroups", "i4"), ("nints", "i4"), ("nframes", "i4"),
                                     ("groupgap", "i4"), ("tframe", "f8"), ("n_cr", "i4"),
                                     ("pink_method", "U8")])
    hdus.append(_table_hdu(exp, "EXPOSURES"))
    table = parameters_for(det.spec["preset"])
    par = np.array([(k, repr(p[k]), table[k][0], table[k][1]) for k in table],
                   dtype=[("name", "U20"), ("value", "U40"), ("unit", "U10"), ("description", "U100")])
    hdus.append(_table_hdu(par, "PARAMS"))
    for name, rec in extra.get("tables", {}).items():
        hdus.append(_table_hdu(rec, name))
    io.atomic_write(fits.HDUList(hdus), path)


def _table_hdu(rec, name):
    """BinTableHDU of a structured array (unicode columns become fixed-width ASCII)."""
    cols = []
    for field in rec.dtype.names:
        col = rec[field]
        if col.dtype.kind == "U":
            width = max(1, col.dtype.itemsize // 4)
            cols.append(fits.Column(field.upper(), f"{width}A", array=col.astype(f"S{width}")))
        else:
            fmt = {"i2": "I", "i4": "J", "i8": "K", "f4": "E", "f8": "D"}[col.dtype.str[1:]]
            cols.append(fits.Column(field.upper(), fmt, array=col))
    return fits.BinTableHDU.from_columns(cols, name=name)


def read_truth(path):
    """Read a truth file: dict of arrays (keys = lower-case extension names) plus ``header``.

    Tables come back as numpy structured arrays with lower-case field names.
    """
    out = {}
    with fits.open(path) as hdul:
        out["header"] = hdul[0].header.copy()
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU):
                from astropy.table import Table  # at use: this package is imported at every Snakemake start

                t = Table(hdu.data)
                t.rename_columns(t.colnames, [c.lower() for c in t.colnames])
                out[hdu.name.lower()] = t.as_array()
            else:
                out[hdu.name.lower()] = np.array(hdu.data)
    return out
