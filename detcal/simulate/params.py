"""Simulator tables: readout patterns, detector orientations, parameter presets, spec handling.

Everything here is data or pure bookkeeping: no random numbers, no arrays. A *spec* is the dict
the workflow passes for one detector (see :func:`normalize_spec`); its ``preset`` names an entry
of :data:`PRESETS` whose parameters ``overrides`` may change.

Two detector kinds, told apart by the preset's ``instrument`` (:func:`detcal.geometry.family`):
``'NIR'`` (H2RG, :mod:`.h2rg`, parameters :data:`PARAMETERS`) and ``'MIRI'`` (:mod:`.miri`,
parameters :data:`MIRI_PARAMETERS`).
"""

import zlib

from ..geometry import MIRI_REF_COLUMNS, family
from ..multiaccum import (  # frame_time, frames_per_integration: simulate API (defined there)
    PIXEL_TIME_S,
    ROW_OVERHEAD,
    frame_time,  # noqa: F401
    frames_per_integration,  # noqa: F401
)

#: Readout patterns: READPATT -> (NFRAMES, GROUPGAP). The one definition in detcal.
#: NIRCam from JDox "NIRCam Detector Readout Patterns"; NIRISS NISRAPID/NIS (no dropped frames).
READ_PATTERNS = {
    "RAPID": (1, 0),
    "BRIGHT1": (1, 1),
    "BRIGHT2": (2, 0),
    "SHALLOW2": (2, 3),
    "SHALLOW4": (4, 1),
    "MEDIUM2": (2, 8),
    "MEDIUM8": (8, 2),
    "DEEP2": (2, 18),
    "DEEP8": (8, 12),
    "NISRAPID": (1, 0),
    "NIS": (4, 0),
    # MIRI (every MIRI pattern reads single frames; SLOW averages 8 samples per pixel read)
    "FAST": (1, 0),
    "FASTR1": (1, 0),
    "SLOW": (1, 0),
    "SLOWR1": (1, 0),
}

#: MIRI READPATT -> full-array frame time [s] (JDox "MIRI detector readout overview": FAST 2.775 s,
#: SLOW 23.890 s; FAST as flight headers give it). The R1 patterns add one reset between
#: integrations (since June 2021) but read frames at the same rate.
MIRI_READ_PATTERNS = {"FAST": 2.77504, "FASTR1": 2.77504, "SLOW": 23.89, "SLOWR1": 23.89}

#: DETECTOR -> (INSTRUME, FASTAXIS, SLOWAXIS) of the real detectors (jwst "orientation of
#: detector image": NIRCam SCAs 481/483/485/487/489 = A1/A3/ALONG/B2/B4 have (-1, 2), the others
#: (1, -2); NIRISS (-2, -1)).
DETECTORS = {
    "NRCA1": ("NIRCAM", -1, 2), "NRCA2": ("NIRCAM", 1, -2), "NRCA3": ("NIRCAM", -1, 2),
    "NRCA4": ("NIRCAM", 1, -2), "NRCALONG": ("NIRCAM", -1, 2),
    "NRCB1": ("NIRCAM", 1, -2), "NRCB2": ("NIRCAM", -1, 2), "NRCB3": ("NIRCAM", 1, -2),
    "NRCB4": ("NIRCAM", -1, 2), "NRCBLONG": ("NIRCAM", 1, -2),
    "NIS": ("NIRISS", -2, -1),
    # MIRI: the DMS and detector frames coincide (jwst refpix has no transform for MIRI)
    "MIRIMAGE": ("MIRI", 1, 2), "MIRIFULONG": ("MIRI", 1, 2), "MIRIFUSHORT": ("MIRI", 1, 2),
}

#: Full-frame frame time of a 2048x2048 H2RG read through 4 outputs [s].
FULL_FRAME_TFRAME = 10.73677

#: Dark-current population and cosmic-ray parameters, the same in :data:`PARAMETERS` and
#: :data:`MIRI_PARAMETERS` (name -> (unit, description)).
_DARK_AND_CR_PARAMETERS = {
    # dark current
    "dark_median": ("e-/s", "median dark rate of normal pixels"),
    "dark_sigma": ("", "lognormal (natural log) scatter of normal-pixel dark rates"),
    "shot_noise": ("", "Poisson shot noise on the dark current (False: deterministic charge)"),
    "warm_frac": ("", "fraction of active pixels in the warm population"),
    "warm_min": ("e-/s", "lower end of the warm population = WARM threshold"),
    "hot_min": ("e-/s", "lower end of the hot population = HOT threshold"),
    "hot_frac": ("", "fraction of active pixels in the hot population"),
    "hot_max": ("e-/s", "upper end of the hot population (log-uniform between hot_min and hot_max)"),
    "very_hot_frac": ("", "fraction of active pixels in the saturating very-hot population"),
    "very_hot_min": ("e-/s", "lower end of the very-hot population"),
    "very_hot_max": ("e-/s", "upper end of the very-hot population"),
    "dead_frac": ("", "fraction of active pixels that are dead (no response; DO_NOT_USE|DEAD)"),
    # exposure-to-exposure changes (0 = stationary); exposure index i is 0-based
    "bias_drift": ("DN", "bias change per exposure: exposure i has every pixel's bias + i * bias_drift"),
    "dark_drift": ("e-/s", "dark-rate change per exposure: exposure i has every responding pixel's "
                           "rate + i * dark_drift (floored at 0)"),
    "bias_jitter": ("DN", "rms random bias offset of each exposure, common to all pixels"),
    # noisy pixels (white read noise only; independent of the dark populations)
    "noisy_frac": ("", "fraction of live active pixels in the noisy population (truth NOISY)"),
    "noisy_min": ("", "lower end of the noisy pixels' white-read-noise factor (log-uniform)"),
    "noisy_max": ("", "upper end of the noisy pixels' white-read-noise factor"),
    # cosmic rays
    "cr_rate": ("1/cm2/s", "cosmic-ray hit rate"),
    "cr_median": ("e-", "median total charge of one hit (lognormal)"),
    "cr_sigma": ("", "lognormal (natural log) width of the hit charge"),
    "cr_central_min": ("", "minimum fraction of the charge in the central pixel"),
    "cr_central_max": ("", "maximum fraction of the charge in the central pixel"),
    "cr_8_frac": ("", "fraction of hits sharing with the 8 neighbours (others: the 4 nearest)"),
}


#: Parameter name -> (unit, description). Every preset defines every one of these.
PARAMETERS = {
    # identity and readout
    "instrument": ("", "INSTRUME keyword"),
    "exp_type": ("", "EXP_TYPE keyword of the darks"),
    "rapid_pattern": ("", "READPATT of the NFRAMES=1/GROUPGAP=0 pattern (written to the DARK reference)"),
    "noutputs": ("", "number of outputs (1 or 4)"),
    "tframe": ("s", "frame time; None = NIRCam formula for the array size and outputs"),
    "pixel_time": ("s", "time per pixel read"),
    "row_overhead": ("pixel", "pixel times of overhead at the end of every row"),
    "pixel_pitch": ("um", "pixel pitch (CR hit area)"),
    "fastaxis": ("", "FASTAXIS; None = from the DETECTORS table"),
    "slowaxis": ("", "SLOWAXIS; None = from the DETECTORS table"),
    # gain and white noise
    "gain": ("e-/DN", "conversion gain (uniform)"),
    "rn_cds": ("e-", "white CDS read noise of active pixels (single frame sigma = rn_cds/sqrt(2))"),
    "rn_scatter": ("", "fractional rms pixel-to-pixel scatter of the white read noise"),
    "ref_rn_ratio": ("", "white read noise of reference pixels / active pixels"),
    "ktc": ("e-", "kTC reset noise per integration"),
    # correlated noise
    "c_pink": ("e-", "correlated 1/f (common to all outputs): rms over one full-frame time band"),
    "u_pink": ("e-", "uncorrelated 1/f (per output): rms over one full-frame time band"),
    "amp_offset": ("e-", "rms per-integration offset of each output and column parity"),
    "amp_drift": ("e-", "rms per-frame random-walk step of each output and column-parity offset"),
    "pink_method": ("", "'auto', 'exact' (one continuous stream) or 'split' (coarse+fine)"),
    # bias
    "bias_level": ("DN", "mean bias level"),
    "bias_amp_sigma": ("DN", "rms bias offset between outputs"),
    "bias_col_sigma": ("DN", "rms bias offset between column parities of one output"),
    "bias_gradient": ("DN", "peak-to-peak linear bias gradient along the slow-scan axis"),
    "bias_pixel_sigma": ("DN", "rms pixel-to-pixel bias structure"),
    **_DARK_AND_CR_PARAMETERS,
    # nonlinearity and saturation
    "well": ("e-", "full well (measured, superbias-subtracted signal at saturation)"),
    "well_scatter": ("", "fractional rms pixel-to-pixel scatter of the well"),
    "nonlin": ("", "simulate nonlinearity (False: identity LINEARITY coefficients)"),
    "nl_frac": ("", "S_true/S_meas - 1 at the well"),
    "nl_cubic": ("", "share of nl_frac from the cubic term"),
    "nl_scatter": ("", "fractional rms pixel-to-pixel scatter of c2 and c3"),
    "sat_margin": ("", "SATURATION threshold = bias + sat_margin * well (DN)"),
}

_COMMON = {
    "noutputs": 4, "tframe": None, "pixel_time": PIXEL_TIME_S, "row_overhead": ROW_OVERHEAD,
    "pixel_pitch": 18.0,
    "fastaxis": None, "slowaxis": None, "rn_scatter": 0.05, "ref_rn_ratio": 0.8,
    "c_pink": 3.0, "u_pink": 1.0, "amp_offset": 30.0, "amp_drift": 3.0, "pink_method": "auto",
    "bias_level": 11000.0, "bias_amp_sigma": 300.0, "bias_col_sigma": 20.0, "bias_gradient": 150.0,
    "bias_pixel_sigma": 200.0, "dark_sigma": 0.3, "shot_noise": True,
    "bias_drift": 0.0, "dark_drift": 0.0, "bias_jitter": 0.0,
    "warm_frac": 0.005, "warm_min": 0.05, "hot_min": 1.0, "hot_frac": 0.001, "hot_max": 100.0,
    "very_hot_frac": 1e-4, "very_hot_min": 300.0, "very_hot_max": 3000.0, "dead_frac": 1e-4,
    "noisy_frac": 0.0, "noisy_min": 1.5, "noisy_max": 3.0,
    "cr_rate": 4.0, "cr_median": 2500.0, "cr_sigma": 1.0, "cr_central_min": 0.70,
    "cr_central_max": 0.85, "cr_8_frac": 0.5,
    "well_scatter": 0.02, "nonlin": True, "nl_frac": 0.08, "nl_cubic": 0.25, "nl_scatter": 0.05,
    "sat_margin": 0.97,
}

#: Realistic defaults per detector kind (numbers: /work/shared/research/analysis.md section 3).
#: NIRCam: JDox flight averages (CDS noise, dark, gain, well), pynrc kTC, NGHXRG/pynrc 1/f
#: amplitudes (c_pink 3 e-, u_pink 1 e-), CR rate ~4 /cm2/s (NIRSpec flight, near solar maximum).
#: NIRISS: pre-launch "at a glance" values (flight values unconfirmed); well as NIRCam SW.
#: Warm population: log-uniform from warm_min (0.05 e-/s; LW 0.2 e-/s, well above its 0.034
#: median) to hot_min (1 e-/s); hot: log-uniform 1-100 e-/s; very hot (saturating within a
#: RAPID ramp): 300-3000 e-/s. The HOT/WARM masks are these thresholds applied to the map.
PRESETS = {
    "nircam_sw": dict(_COMMON, instrument="NIRCAM", exp_type="NRC_DARK", rapid_pattern="RAPID",
                      gain=2.05, rn_cds=15.77, ktc=37.6, dark_median=0.0019, well=105750.0),
    "nircam_lw": dict(_COMMON, instrument="NIRCAM", exp_type="NRC_DARK", rapid_pattern="RAPID",
                      gain=1.82, rn_cds=13.25, ktc=36.8, dark_median=0.0342, well=83300.0,
                      warm_min=0.2),  # ~6x the median, so normal pixels stay below WARM
    "niriss": dict(_COMMON, instrument="NIRISS", exp_type="NIS_DARK", rapid_pattern="NISRAPID",
                   gain=1.5, rn_cds=23.0, ktc=37.6, dark_median=0.015, well=105750.0),
}

#: MIRI parameter name -> (unit, description) (:mod:`detcal.simulate.miri`). The anomaly
#: amplitudes are in DN of the linearized signal, i.e. what the pipeline sees after ``linearity``.
MIRI_PARAMETERS = {
    # identity and readout
    "instrument": ("", "INSTRUME keyword"),
    "exp_type": ("", "EXP_TYPE keyword of the darks"),
    "rapid_pattern": ("", "default READPATT of a spec (FAST)"),
    "tframe": ("s", "frame time; None = the full-array time of the READPATT (MIRI_READ_PATTERNS)"),
    "pixel_time": ("s", "time per pixel sample (TSAMPLE)"),
    "pixel_pitch": ("um", "pixel pitch (CR hit area)"),
    # gain and white noise
    "gain": ("e-/DN", "conversion gain (uniform)"),
    "rn_cds": ("e-", "white CDS read noise of active pixels (single frame sigma = rn_cds/sqrt(2))"),
    "rn_scatter": ("", "fractional rms pixel-to-pixel scatter of the white read noise"),
    "ref_rn_ratio": ("", "white read noise of reference columns / active pixels"),
    "ktc": ("e-", "reset noise per integration"),
    # odd/even row drifts (seen identically by the reference columns)
    "amp_offset": ("e-", "rms per-integration offset of each output (column k::4) and row parity"),
    "amp_drift": ("e-", "rms per-frame random-walk step of each output and row-parity offset"),
    # bias
    "bias_level": ("DN", "mean bias (pedestal) level"),
    "bias_amp_sigma": ("DN", "rms bias offset between outputs"),
    "bias_row_sigma": ("DN", "rms bias offset between the row parities of one output"),
    "bias_gradient": ("DN", "peak-to-peak linear bias gradient along the rows"),
    "bias_pixel_sigma": ("DN", "rms pixel-to-pixel bias structure"),
    **_DARK_AND_CR_PARAMETERS,
    # nonlinearity and saturation
    "well": ("e-", "full well (measured signal above the bias at saturation)"),
    "well_scatter": ("", "fractional rms pixel-to-pixel scatter of the well"),
    "nonlin": ("", "simulate nonlinearity (False: identity LINEARITY coefficients)"),
    "nl_frac": ("", "S_true/S_meas - 1 at the well"),
    "nl_cubic": ("", "share of nl_frac from the cubic term"),
    "nl_scatter": ("", "fractional rms pixel-to-pixel scatter of the quadratic and cubic terms"),
    "sat_margin": ("", "SATURATION threshold = bias + sat_margin * well (DN)"),
    # MIRI anomalies (active pixels only; all three are in the 4-D DARK reference)
    "reset_amp": ("DN", "reset anomaly: offset of frame 1 of integration 1 (decays with reset_tau)"),
    "reset_scatter": ("", "fractional rms pixel-to-pixel scatter of the reset anomaly"),
    "reset_tau": ("frames", "e-folding of the reset anomaly (faded to < 1 % by frame ~15)"),
    "reset_power": ("", "reset-anomaly decay: 0 = exponential exp(-f/reset_tau); p > 0 = power law "
                        "(1 + f/(p*reset_tau))**-p (same start, heavier tail)"),
    "reset_later": ("", "reset-anomaly amplitude of late integrations / integration 1"),
    "reset_settle": ("", "per-integration factor towards reset_later: f_i = L + (1-L)*settle**i"),
    "rscd_amp": ("DN", "RSCD offset of frame 1 of integrations 2, 3, ... (decays with rscd_tau)"),
    "rscd_tau": ("frames", "e-folding of the RSCD offset"),
    "rscd_scatter": ("", "fractional rms pixel-to-pixel scatter of the RSCD offset"),
    "lastframe_amp": ("DN", "offset of the last frame of every integration"),
    "rscd_skip1": ("groups", "RSCD reference: group_skip1 (integration 1) of every row"),
    "rscd_skip": ("groups", "RSCD reference: group_skip (integrations 2+) of every row"),
}

#: MIRI Imager (JDox "MIRI Detector Performance", flight averages): gain ~4 e-/DN, dark ~0.2 e-/s,
#: read noise ~6 DN (taken as the CDS noise: 24 e-), full well ~210000 e-; 25 um pixels; CR rate
#: as the NIR presets. Row drifts "of the order of a few counts" (the refpix seed): a 10-DN offset
#: per integration and 0.5-DN random-walk steps per frame (~3 DN over 40 frames). Assumed (no
#: source number): bias 12000 DN and its structure, kTC 100 e-, the anomaly amplitudes (reset
#: -40 DN fading with 3 frames so that it is gone by group ~15; RSCD +20 DN over the first ~2
#: groups of later integrations; last frame -10 DN) and the RSCD table (skip 3 groups of
#: integrations 2+, none of integration 1).
PRESETS["miri_imager"] = {
    "instrument": "MIRI", "exp_type": "MIR_DARKIMG", "rapid_pattern": "FAST", "tframe": None,
    "pixel_time": PIXEL_TIME_S, "pixel_pitch": 25.0,
    "gain": 4.0, "rn_cds": 24.0, "rn_scatter": 0.05, "ref_rn_ratio": 0.8, "ktc": 100.0,
    "amp_offset": 40.0, "amp_drift": 2.0,
    "bias_level": 12000.0, "bias_amp_sigma": 200.0, "bias_row_sigma": 10.0, "bias_gradient": 100.0,
    "bias_pixel_sigma": 150.0,
    "dark_median": 0.2, "dark_sigma": 0.3, "shot_noise": True,
    "bias_drift": 0.0, "dark_drift": 0.0, "bias_jitter": 0.0,
    "warm_frac": 0.005, "warm_min": 2.0, "hot_min": 10.0, "hot_frac": 0.001, "hot_max": 500.0,
    "very_hot_frac": 1e-4, "very_hot_min": 2000.0, "very_hot_max": 20000.0, "dead_frac": 1e-4,
    "noisy_frac": 0.0, "noisy_min": 1.5, "noisy_max": 3.0,
    "cr_rate": 4.0, "cr_median": 2500.0, "cr_sigma": 1.0, "cr_central_min": 0.70,
    "cr_central_max": 0.85, "cr_8_frac": 0.5,
    "well": 210000.0, "well_scatter": 0.02, "nonlin": True, "nl_frac": 0.08, "nl_cubic": 0.25,
    "nl_scatter": 0.05, "sat_margin": 0.97,
    "reset_amp": -40.0, "reset_scatter": 0.1, "reset_tau": 3.0, "reset_power": 0.0, "reset_later": 0.8,
    "reset_settle": 0.3, "rscd_amp": 20.0, "rscd_tau": 1.5, "rscd_scatter": 0.1,
    "lastframe_amp": -10.0, "rscd_skip1": 0, "rscd_skip": 3,
}

#: Parameter table of each detector family.
FAMILY_PARAMETERS = {"NIR": PARAMETERS, "MIRI": MIRI_PARAMETERS}


def preset_family(preset):
    """Detector family (``'NIR'`` or ``'MIRI'``) of a preset; ValueError naming the known presets."""
    if preset not in PRESETS:
        raise ValueError(f"unknown simulator preset {preset!r}; known: {sorted(PRESETS)}")
    return family(PRESETS[preset]["instrument"])


def parameters_for(preset):
    """The parameter table (name -> (unit, description)) of a preset's detector family."""
    return FAMILY_PARAMETERS[preset_family(preset)]


for _name, _preset in PRESETS.items():
    _table = parameters_for(_name)
    assert set(_preset) == set(_table), (_name, set(_preset) ^ set(_table))

#: Keys of a detector spec and their defaults (None = required).
SPEC_KEYS = {
    "name": None,          # DETECTOR keyword, e.g. 'NRCA1'
    "preset": None,        # key of PRESETS
    "size": 256,           # NIR: pixels per side (incl. the 4-pixel border); MIRI: rows = active
                           # columns, the array being size x (size + 8) (4 reference columns a side)
    "readpatt": "",        # key of READ_PATTERNS; '' = the preset's rapid_pattern (RAPID, NISRAPID)
    "ngroups": 10,
    "nints": 1,
    "nexposures": 1,
    "overrides": {},       # parameter name -> value, replacing the preset's
    "prefix": "demo",      # exposure-name prefix
    "expstart": 60310.0,   # MJD of the first exposure (2024-01-01)
    "cadence": 1.0,        # hours between exposure starts
    "dark_ngroups": 0,     # minimum NGROUPS of the DARK reference (0: what the exposures need)
}


def pattern(readpatt):
    """(NFRAMES, GROUPGAP) of a readout pattern; ValueError naming the known ones."""
    try:
        return READ_PATTERNS[str(readpatt).upper()]
    except KeyError:
        raise ValueError(f"unknown readout pattern {readpatt!r}; known: {sorted(READ_PATTERNS)}") from None


def resolve_params(preset, overrides=None):
    """Full parameter dict: a copy of ``PRESETS[preset]`` updated by ``overrides``.

    Unknown preset or parameter names raise ValueError listing the valid ones.
    """
    table = parameters_for(preset)
    params = dict(PRESETS[preset])
    unknown = sorted(set(overrides or {}) - set(table))
    if unknown:
        raise ValueError(f"unknown simulator parameter(s) {unknown} for preset {preset!r}; "
                         f"known: {sorted(table)}")
    params.update(overrides or {})
    if params.get("noutputs", 4) not in (1, 4):
        raise ValueError(f"noutputs must be 1 or 4, got {params['noutputs']}")
    return params


def normalize_spec(spec):
    """Validate a detector spec and fill its defaults (see :data:`SPEC_KEYS`).

    Returns a new dict with every key of SPEC_KEYS plus ``params`` (the resolved parameters),
    ``family`` ('NIR' or 'MIRI'), ``shape`` ((ny, nx) of the array: (size, size) for NIR,
    (size, size + 8) for MIRI), ``nframes``/``groupgap`` (from READPATT), ``fastaxis``/``slowaxis``
    and ``tframe`` [s]. An already normalized spec (it has ``params``) is returned unchanged.
    """
    if "params" in spec:
        return spec
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"unknown detector spec key(s) {unknown}; known: {sorted(SPEC_KEYS)}")
    out = {}
    for key, default in SPEC_KEYS.items():
        if spec.get(key) is None:
            if default is None:
                raise ValueError(f"detector spec needs {key!r} (got keys {sorted(spec)})")
            out[key] = dict(default) if isinstance(default, dict) else default
        else:
            out[key] = spec[key]
    out["name"] = str(out["name"]).strip().upper()
    out["params"] = params = resolve_params(out["preset"], out["overrides"])
    out["family"] = fam = preset_family(out["preset"])
    out["readpatt"] = str(out["readpatt"] or params["rapid_pattern"]).strip().upper()
    out["nframes"], out["groupgap"] = pattern(out["readpatt"])
    if (fam == "MIRI") != (out["readpatt"] in MIRI_READ_PATTERNS):
        known = sorted(MIRI_READ_PATTERNS if fam == "MIRI"
                       else set(READ_PATTERNS) - set(MIRI_READ_PATTERNS))
        raise ValueError(f"readout pattern {out['readpatt']!r} is not a {fam} pattern "
                         f"(preset {out['preset']!r}); use one of {known}")
    for key in ("size", "ngroups", "nints", "nexposures", "dark_ngroups"):
        out[key] = int(out[key])
    size = out["size"]
    nout = params.get("noutputs", 4)
    if size < 16 or size % (2 * nout):
        raise ValueError(f"size must be >= 16 and a multiple of 2*noutputs={2 * nout}, got {size}")
    if out["ngroups"] < 1 or out["nints"] < 1 or out["nexposures"] < 1:
        raise ValueError("ngroups, nints and nexposures must be >= 1")
    out["fastaxis"], out["slowaxis"] = orientation(out["name"], params)
    if fam == "MIRI":
        out["shape"] = (size, size + 2 * MIRI_REF_COLUMNS)
        out["tframe"] = float(params["tframe"] or MIRI_READ_PATTERNS[out["readpatt"]])
    else:
        out["shape"] = (size, size)
        out["tframe"] = float(params["tframe"] or frame_time(size, size, nout, params["pixel_time"],
                                                             params["row_overhead"]))
    return out


def orientation(name, params):
    """(FASTAXIS, SLOWAXIS) of a detector: parameters if set, else the :data:`DETECTORS` table."""
    if params.get("fastaxis") is not None and params.get("slowaxis") is not None:
        fast, slow = int(params["fastaxis"]), int(params["slowaxis"])
    elif name in DETECTORS:
        _, fast, slow = DETECTORS[name]
    else:
        raise ValueError(f"detector {name!r} is not in the orientation table {sorted(DETECTORS)}; "
                         "give fastaxis and slowaxis in the overrides")
    if sorted((abs(fast), abs(slow))) != [1, 2]:
        raise ValueError(f"FASTAXIS={fast}, SLOWAXIS={slow} do not describe two different axes")
    return fast, slow


def simulated_exposure_name(detector, index, prefix="demo"):
    """Name of simulated exposure ``index`` (0-based) of a detector:
    ``simulated_exposure_name('NRCA1', 0) == 'demo_nrca1_e001'`` (read back by
    :func:`detcal.inventory.exposure_name`)."""
    return f"{prefix}_{str(detector).strip().lower()}_e{int(index) + 1:03d}"


def detector_key(name):
    """Stable integer for a detector name (used in the random-seed spawn keys)."""
    return zlib.crc32(str(name).strip().upper().encode())
