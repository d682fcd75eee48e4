"""Truth-known simulation of MIRI Si:As dark ramps (MIRI Imager flavour).

Geometry (:mod:`detcal.geometry`): ``size`` rows x ``size + 8`` columns, 4 reference columns at
each side, outputs interleaved by column (output k reads columns ``k::4``, reference columns
included). ``size=1024`` is the real 1024 x 1032 array; smaller sizes are mini detectors written
as SUBARRAY='FULL' (a full frame of their own size). The DMS and detector frames coincide
(FASTAXIS=1, SLOWAXIS=2). Frame time: the full-array time of the readout pattern (FAST 2.775 s,
SLOW 23.89 s) whatever the size, so that the dark current of a mini detector is as measurable as
on the real one.

Signal model of pixel p in frame f (read at (f+1)*TFRAME after the reset) of integration i::

    Q       = dark charge (Poisson, rate map) + cosmic-ray charge arrived before the read   [e-]
    u_true  = (Q + kTC_i)/gain + A_i(f)                                          [DN, linear]
    u_meas  = min(R^-1(u_true), well),   R(u) = u + c2 u^2 + c3 u^3        (response above bias)
    raw     = bias + u_meas + (white + drift_i[f, output, row parity]) / gain               [DN]

with the MIRI anomalies ``A_i(f)`` (active pixels only, DN of linearized signal):

* reset anomaly ``reset_map * F_i * exp(-f / reset_tau)``, F_0 = 1 and F_i = L + (1-L)*s**i
  (``reset_later`` L, ``reset_settle`` s): strongest in the first groups, faded by group ~15,
  with an amplitude that settles over the first integrations; ``reset_power`` p > 0 replaces the
  exponential by the power law ``(1 + f / (p * reset_tau))**-p`` (:meth:`Detector.reset_decay`);
* RSCD ``rscd_map * exp(-f / rscd_tau)`` in integrations after the first;
* last frame ``lastframe_map`` in the last frame of every integration.

The LINEARITY reference applies to raw DN *including the bias* (the MIRI chain has no superbias):
its coefficients are ``R(x - bias)`` expanded in powers of ``x``, so that ``L(raw) = bias +
u_true`` up to float32 rounding. Reference columns get bias, kTC, white noise (``ref_rn_ratio``)
and the row drifts, but no dark current, cosmic rays, anomalies or nonlinearity. The row drifts
are one value per (frame, output, row parity), shared exactly by the reference columns, so the
MIRI ``refpix`` step removes them (relative to the first read).

The RESET reference (:func:`reset_cube`) holds the reset anomaly of every pixel, integration
(1..NINTS of the spec) and group, the mean over the group's frames, in DN: the jwst ``reset``
step subtracts it before linearity. The DARK reference is 4-D (:func:`dark_cube`): plane 0 for
integration 1, plane 1 for later integrations (the anomalies averaged over integrations
2..NINTS of the spec), each the mean dark signal plus the RSCD and last-frame anomalies but
*without* the reset anomaly, as jwst's MIRI DARK references are made from darks that went
through ``reset`` (jwst PR 5485, JP-580: "dark reference files with reset anomaly effect
removed"; PR 6798 put ``reset`` back into calwebb_dark). ``dark_cube(..., reset=True)`` gives
the cube for a chain without the reset step.

Random numbers: as :mod:`.h2rg` (one stream per component, keyed by seed, detector, exposure,
integration), so every effect can be switched off without changing the others.
"""

from dataclasses import dataclass, field

import numpy as np

from ..geometry import MIRI_NOUTPUTS, MIRI_REF_COLUMNS
from ..multiaccum import frames_per_integration, group_frames
from . import h2rg
from .detector import ADC_MAX, DetectorBase
from .h2rg import seeded_rng
from .params import MIRI_READ_PATTERNS, detector_key, normalize_spec, pattern

#: Reference files a MIRI set has (config keys of detcal.io.REFTYPES): no superbias.
REFERENCE_KEYS = ("mask", "saturation", "reset", "linearity", "rscd", "dark", "gain", "readnoise")

#: Subarrays listed in the simulated RSCD table (MIRI Imager/LRS names), each with every pattern.
RSCD_SUBARRAYS = ("FULL", "BRIGHTSKY", "SUB256", "SUB128", "SUB64", "SLITLESSPRISM", "MASK1065",
                  "MASK1140", "MASK1550", "MASKLYOT")

#: dtype of the RSCD_GROUP_SKIP table (jwst RSCDModel: subarray A17, readpatt A12, 2 x int32).
RSCD_DTYPE = np.dtype([("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", ">i4"),
                       ("group_skip", ">i4")])

#: Reference descriptions (DESCRIP) of the MIRI set.
DESCRIPTIONS = {
    "mask": "bad-pixel mask (truth: reference columns, hot, warm, dead)",
    "saturation": "saturation threshold, raw DN incl. bias (truth well x sat_margin)",
    "linearity": "linearity coefficients for raw DN incl. bias (truth response)",
    "reset": "reset anomaly per integration and group (truth)",
    "rscd": "RSCD group-skip table (simulator rscd_skip1 / rscd_skip for every row)",
    "dark": "4-D dark: integration 1 and 2+ (truth rate x time + RSCD, last frame; reset in RESET)",
    "gain": "gain (truth)",
    "readnoise": "white CDS read noise (truth)",
}

# component numbers of the random streams (never renumber; shared ones as in h2rg)
_BIAS, _ANOM = 0, 6
_KTC, _SHOT, _CR, _WHITE, _AMP = 0, 1, 2, 3, 6


@dataclass
class Detector(DetectorBase):
    """The fixed truth of one simulated MIRI detector. All maps (ny, nx); science = detector frame.

    Shared properties and methods (identity, header, geometry, derived truth, DQ arrays):
    :class:`detcal.simulate.detector.DetectorBase`; SUBARRAY is plain 'FULL' for the real
    1024 x 1032 array only (:attr:`FULL_SHAPE`).

    Attributes
    ----------
    spec : dict                 normalized spec (``family`` 'MIRI', ``shape`` (size, size + 8))
    seed : int
    bias : float32 [DN]         bias (pedestal) level
    dark_rate : float32 [e-/s]  0 on reference and dead pixels
    rn_frame : float32 [e-]     single-frame white read noise sigma
    well : float32 [DN]         saturation level of the measured signal above bias
    response : float32 (4, ny, nx)  response polynomial of the signal above bias (c0=0, c1=1)
    reference, hot, warm, dead : bool
    reset_map, rscd_map, lastframe_map : float32 [DN]   anomaly amplitudes (0 on reference columns)
    """

    spec: dict
    seed: int
    bias: np.ndarray
    dark_rate: np.ndarray
    rn_frame: np.ndarray
    well: np.ndarray
    response_coeffs: np.ndarray
    reference: np.ndarray
    hot: np.ndarray
    warm: np.ndarray
    dead: np.ndarray
    reset_map: np.ndarray
    rscd_map: np.ndarray
    lastframe_map: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)

    FULL_SHAPE = (1024, 1032)

    # --- identity and readout -------------------------------------------------------------
    @property
    def shape(self):
        """(ny, nx) of the array, reference columns included."""
        return tuple(self.spec["shape"])

    @property
    def noutputs(self):
        """Number of readout outputs (4, interleaved by column)."""
        return MIRI_NOUTPUTS

    @property
    def active_box(self):
        """(y0, y1, x0, x1): the light-sensitive columns, all rows."""
        ny, nx = self.shape
        return (0, ny, MIRI_REF_COLUMNS, nx - MIRI_REF_COLUMNS)

    @property
    def dark_readpatt(self):
        """READPATT of the DARK reference: the exposures' own pattern (FAST or SLOW timing)."""
        return self.spec["readpatt"]

    def science(self, a):
        """Contiguous copy of an array in the science orientation (the same as the detector's)."""
        return np.ascontiguousarray(a)

    def to_detector(self, a):
        """Contiguous copy of a science-frame array in the detector frame (the same for MIRI)."""
        return np.ascontiguousarray(a)

    def science_coords(self, yd, xd):
        """Science-frame (y, x) of detector-frame pixel indices (the same for MIRI)."""
        return yd, xd

    def layout(self):
        """(output of every column (nx,), row parity of every row (ny,)), from the geometry."""
        if "layout" not in self._cache:
            amp = self.geometry.amplifier_map().astype(np.intp)
            if not np.all(amp == amp[0]):
                raise RuntimeError("detcal.geometry MIRI outputs are not whole columns")
            self._cache["layout"] = (amp[0], np.arange(self.shape[0]) % 2)
        return self._cache["layout"]

    # --- derived truth ----------------------------------------------------------------------
    @property
    def coeffs(self):
        """float32 (4, ny, nx): LINEARITY coefficients for raw DN including the bias.

        ``R(x - b)`` expanded in powers of ``x`` (float64, then float32): c0 = c2 b^2 - c3 b^3,
        c1 = 1 - 2 c2 b + 3 c3 b^2, c2' = c2 - 3 c3 b, c3' = c3. Identity on reference columns.
        """
        b = self.bias.astype(np.float64)
        r = self.response_coeffs.astype(np.float64)
        c2, c3 = r[2], r[3]
        out = np.empty_like(r)
        out[0] = c2 * b**2 - c3 * b**3
        out[1] = 1.0 - 2.0 * c2 * b + 3.0 * c3 * b**2
        out[2] = c2 - 3.0 * c3 * b
        out[3] = c3
        return out.astype(np.float32)

    def reset_factor(self, integration):
        """Reset-anomaly amplitude of integration ``integration`` (0-based) relative to the first."""
        p = self.params
        if integration == 0:
            return 1.0
        return p["reset_later"] + (1.0 - p["reset_later"]) * p["reset_settle"] ** integration

    def reset_decay(self, frame):
        """Reset-anomaly decay at 0-based frame ``frame`` (1 at frame 0): ``exp(-f / reset_tau)``
        for ``reset_power`` 0, else the power law ``(1 + f / (reset_power * reset_tau))**-reset_power``
        (the same initial e-folding, a heavier tail; the exponential is its large-power limit)."""
        p = self.params
        power = float(p.get("reset_power") or 0.0)
        if power > 0:
            return (1.0 + frame / (power * p["reset_tau"])) ** -power
        return np.exp(-frame / p["reset_tau"])

    def reset_anomaly(self, integration, frame):
        """float64 (ny, nx) [DN]: the reset anomaly of one frame (0-based indices)."""
        return self.reset_map.astype(np.float64) * (self.reset_factor(integration)
                                                    * self.reset_decay(frame))

    def anomaly(self, integration, frame, nframes_total, reset=True):
        """float64 (ny, nx) [DN]: reset anomaly (``reset=False``: left out) + RSCD + last frame of
        one frame (0-based indices)."""
        p = self.params
        out = (self.reset_anomaly(integration, frame) if reset
               else np.zeros(self.shape, np.float64))
        if integration > 0 and p["rscd_amp"]:
            out += self.rscd_map.astype(np.float64) * np.exp(-frame / p["rscd_tau"])
        if frame == nframes_total - 1:
            out += self.lastframe_map
        return out

    def anomaly_groups(self, integration, ngroups, reset=True):
        """float64 (ngroups, ny, nx) [DN]: the anomalies of each group (NFRAMES=1, GROUPGAP=0);
        ``reset=False`` leaves the reset anomaly out."""
        return np.stack([self.anomaly(integration, g, ngroups, reset) for g in range(ngroups)])


def make_detector(spec, seed=0):
    """Draw the truth of one MIRI detector.

    Parameters
    ----------
    spec : dict
        Detector spec with a MIRI preset (e.g. ``{'name': 'MIRIMAGE', 'preset': 'miri_imager',
        'size': 128}``), normalized or not.
    seed : int >= 0

    Returns
    -------
    Detector
    """
    spec = spec if "params" in spec else normalize_spec(spec)
    if spec["family"] != "MIRI":
        raise ValueError(f"preset {spec['preset']!r} is not a MIRI preset; use detcal.simulate.h2rg")
    p = spec["params"]
    ny, nx = spec["shape"]
    shape = (ny, nx)
    key = detector_key(spec["name"])
    col_amp, row_par = np.arange(nx) % MIRI_NOUTPUTS, np.arange(ny) % 2

    # bias [DN]: level + per output + per output/row parity + gradient along rows + pixel structure
    r = seeded_rng(seed, key, 0, _BIAS)
    amp_off = r.normal(0.0, p["bias_amp_sigma"], MIRI_NOUTPUTS)
    par_off = r.normal(0.0, p["bias_row_sigma"], (MIRI_NOUTPUTS, 2))
    rows = np.linspace(-0.5, 0.5, ny)[:, None] * p["bias_gradient"]
    bias = (p["bias_level"] + amp_off[col_amp][None, :] + par_off[col_amp[None, :], row_par[:, None]]
            + rows + r.normal(0.0, p["bias_pixel_sigma"], shape))
    bias = np.clip(bias, 0.0, ADC_MAX).astype(np.float32)

    reference = np.zeros(shape, bool)
    reference[:, :MIRI_REF_COLUMNS] = reference[:, -MIRI_REF_COLUMNS:] = True
    t = h2rg.draw_pixel_truth(p, reference, seed, key)

    # anomaly maps [DN]: amplitude x (1 + scatter x N(0, 1)), active pixels only
    r = seeded_rng(seed, key, 0, _ANOM)
    maps = []
    for amp_key, scatter_key in (("reset_amp", "reset_scatter"), ("rscd_amp", "rscd_scatter"),
                                 ("lastframe_amp", None)):
        scatter = p[scatter_key] if scatter_key else 0.0
        m = p[amp_key] * (1.0 + scatter * r.standard_normal(shape))
        maps.append(np.where(reference, 0.0, m).astype(np.float32))

    return Detector(spec=spec, seed=int(seed), bias=bias, dark_rate=t["dark_rate"].astype(np.float32),
                    rn_frame=t["rn_frame"].astype(np.float32), well=t["well"].astype(np.float32),
                    response_coeffs=t["coeffs"].astype(np.float32), reference=reference,
                    hot=t["hot"], warm=t["warm"], dead=t["dead"], reset_map=maps[0],
                    rscd_map=maps[1], lastframe_map=maps[2])


# ----------------------------------------------------------------------------------------------
# Reference files
# ----------------------------------------------------------------------------------------------
def rscd_table(det):
    """The RSCD_GROUP_SKIP table: every subarray of :data:`RSCD_SUBARRAYS` x every MIRI pattern,
    with ``group_skip1 = rscd_skip1`` and ``group_skip = rscd_skip``."""
    p = det.params
    rows = [(sub, patt, int(p["rscd_skip1"]), int(p["rscd_skip"]))
            for sub in RSCD_SUBARRAYS for patt in MIRI_READ_PATTERNS]
    return np.array(rows, dtype=RSCD_DTYPE)


def reset_cube(det, ngroups, nints=None):
    """The RESET reference cube: float32 (nints, ngroups, ny, nx) [DN], the reset anomaly.

    Plane ``i`` is integration ``i`` (0-based; ``nints`` defaults to the spec's NINTS); group
    ``g`` holds the mean of the reset anomaly over the frames of group ``g`` of the spec's
    readout pattern (MIRI: NFRAMES=1, GROUPGAP=0, so frame ``g``). 0 on reference columns.
    Integrations beyond ``nints`` take the last plane (jwst ``reset``), whose factor is
    :meth:`Detector.reset_factor` of that integration.
    """
    nints = det.spec["nints"] if nints is None else int(nints)
    nframes, groupgap = det.spec["nframes"], det.spec["groupgap"]
    out = np.empty((nints, ngroups) + det.shape, np.float32)
    frames = group_frames(ngroups, nframes, groupgap)
    for i in range(nints):
        for g in range(ngroups):
            out[i, g] = sum(det.reset_anomaly(i, f) for f in frames[g]) / nframes
    return out


def dark_cube(det, ngroups, nints=None, planes=2, dark_current=True, reset=False):
    """The dark that removes the dark current and the anomalies: float32 (planes, ngroups, ny, nx) [DN].

    Plane ``k < planes - 1`` is integration ``k``; the last plane is the mean of integrations
    ``planes - 1 .. max(planes, nints) - 1`` (``nints`` defaults to the spec's NINTS), which is
    what dark subtraction uses for every later integration. With ``planes=2``: integration 1 and
    2+ (the DarkMIRIModel layout); with ``planes = nints`` every integration is exact. Each plane
    is the mean dark signal (``dark_current=False``: none) plus the RSCD and last-frame anomalies,
    and the reset anomaly only with ``reset=True`` (the chain's ``reset`` step removes it with
    :func:`reset_cube`; jwst's MIRI DARK references come without it).
    """
    nints = det.spec["nints"] if nints is None else int(nints)
    planes = int(planes)
    if planes < 1:
        raise ValueError(f"planes must be >= 1, got {planes}")
    base = det.dark_signal(ngroups).astype(np.float64) if dark_current else 0.0
    out = np.empty((planes, ngroups) + det.shape, np.float32)
    for k in range(planes - 1):
        out[k] = base + det.anomaly_groups(k, ngroups, reset)
    later = range(planes - 1, max(planes, nints))
    out[-1] = base + sum(det.anomaly_groups(i, ngroups, reset) for i in later) / len(later)
    return out


def reference_arrays(det, dark_ngroups):
    """Arrays of every MIRI reference file: {key: {extension: array}} (keys :data:`REFERENCE_KEYS`).

    MASK: REFERENCE_PIXEL on the reference columns (never DO_NOT_USE), HOT / WARM from the truth
    populations, DEAD|DO_NOT_USE for dead pixels. SATURATION: bias + sat_margin*well [DN raw].
    LINEARITY: :attr:`Detector.coeffs` (raw DN incl. bias; identity and NO_LIN_CORR on the
    reference columns). RSCD: :func:`rscd_table`. RESET: :func:`reset_cube` for the spec's NINTS
    and ``dark_ngroups`` groups, DQ 2-D zeros, ERR 0 (the simulated anomaly is exact). DARK:
    :func:`dark_cube` with 2 planes and ``dark_ngroups`` groups (NFRAMES=1, GROUPGAP=0), without
    the reset anomaly, DQ 4-D zeros, ERR the Poisson scatter of the dark signal in one
    integration. GAIN [e-/DN]. READNOISE: white CDS noise [DN].
    """
    shape = det.shape
    mask = det.mask_dq()
    lin_dq = det.linearity_dq()
    dark = dark_cube(det, dark_ngroups)
    reset = reset_cube(det, dark_ngroups)
    signal = det.dark_signal(dark_ngroups)
    err = np.sqrt(np.clip(signal, 0, None) / det.gain).astype(np.float32)
    zeros = np.zeros(shape, np.uint32)
    return {
        "mask": {"DQ": mask},
        "saturation": {"SCI": det.saturation, "DQ": zeros},
        "linearity": {"COEFFS": det.coeffs, "DQ": lin_dq},
        "rscd": {"RSCD_GROUP_SKIP": rscd_table(det)},
        "reset": {"SCI": reset, "DQ": zeros, "ERR": np.zeros(reset.shape, np.float32)},
        "dark": {"SCI": dark, "DQ": np.zeros(dark.shape, np.uint32),
                 "ERR": np.broadcast_to(err, dark.shape).copy()},
        "gain": {"SCI": np.full(shape, det.gain, np.float32)},
        "readnoise": {"SCI": det.readnoise_cds_dn},
    }


def extra_truth(det):
    """MIRI additions to the truth file: anomaly keywords, amplitude maps, per-integration factors."""
    p = det.params
    nints = det.spec["nints"]
    factors = np.array([(i, det.reset_factor(i), int(i > 0)) for i in range(nints)],
                       dtype=[("integration", "i4"), ("reset_factor", "f8"), ("rscd", "i2")])
    return {
        "header": {
            "RESETAMP": (p["reset_amp"], "[DN] reset anomaly, frame 1 of integration 1"),
            "RESETTAU": (p["reset_tau"], "[frames] reset anomaly e-folding"),
            "RESETPOW": (float(p["reset_power"]), "reset decay power-law index (0: exponential)"),
            "RESETLAT": (p["reset_later"], "reset amplitude of late integrations / int 1"),
            "RESETSET": (p["reset_settle"], "reset amplitude settling per integration"),
            "RSCDAMP": (p["rscd_amp"], "[DN] RSCD offset, frame 1 of integrations 2+"),
            "RSCDTAU": (p["rscd_tau"], "[frames] RSCD e-folding"),
            "LASTAMP": (p["lastframe_amp"], "[DN] last-frame offset"),
            "RSCDSKP1": (int(p["rscd_skip1"]), "RSCD table group_skip1 (integration 1)"),
            "RSCDSKIP": (int(p["rscd_skip"]), "RSCD table group_skip (integrations 2+)"),
            "AMPOFF_E": (p["amp_offset"], "[e-] per-int output/row-parity offset"),
            "AMPDRF_E": (p["amp_drift"], "[e-] per-frame output/row-parity drift step"),
        },
        "images": {
            "RESET_AMP": (det.reset_map, "DN"),
            "RSCD_AMP": (det.rscd_map, "DN"),
            "LASTFRAME_AMP": (det.lastframe_map, "DN"),
        },
        "tables": {"ANOMALY": factors},
    }


# ----------------------------------------------------------------------------------------------
# Readout
# ----------------------------------------------------------------------------------------------
def exposure_header(det, readpatt, ngroups, nints, expstart, exposure, seed, index):
    """Complete level-1b primary header of a simulated MIRI dark exposure.

    As :func:`detcal.simulate.h2rg.exposure_header`, with the MIRI reset count (FASTR1/SLOWR1:
    one extra reset between integrations) and samples per pixel (SLOW: 9).
    """
    h = h2rg.exposure_header(det, readpatt, ngroups, nints, expstart, exposure, seed, index)
    nframes, groupgap = pattern(readpatt)
    nresets = 2 if readpatt.endswith("R1") else 1
    duration = nints * (frames_per_integration(ngroups, nframes, groupgap) + nresets) * det.tframe
    h["NRESETS"] = (nresets, "Number of resets between integrations")
    h["NSAMPLES"] = (9 if readpatt.startswith("SLOW") else 1, "Number of A/D samples per pixel")
    h["DURATION"] = (duration, "Total duration of exposure (sec)")
    h["EXPMID"] = (float(expstart) + duration / 2 / 86400.0, "UTC exposure mid time (MJD)")
    h["EXPEND"] = (float(expstart) + duration / 86400.0, "UTC exposure end time (MJD)")
    return h


def simulate_exposure(det, readpatt=None, ngroups=None, nints=None, index=0, seed=None,
                      exposure=None, expstart=None):
    """Simulate one MIRI dark exposure of ``det``.

    Parameters and returns as :func:`detcal.simulate.h2rg.simulate_exposure`: ``data`` uint16
    (nints, ngroups, ny, nx) [DN], the level-1b header, and ``truth`` with ``cr_events``,
    ``group_frames``, ``frame_times``, ``nframes_total``, ``pink_method`` ('none': no 1/f
    streams in the MIRI model).
    """
    readpatt = str(readpatt or det.spec["readpatt"]).upper()
    if readpatt not in MIRI_READ_PATTERNS:
        raise ValueError(f"{readpatt!r} is not a MIRI readout pattern; use one of "
                         f"{sorted(MIRI_READ_PATTERNS)}")
    return h2rg.read_exposure(det, _integrate, exposure_header, lambda *_: "none", readpatt, ngroups,
                              nints, index, seed, exposure, expstart)


def _integrate(det, out, nframes, groupgap, ngroups, seed, index, integration):
    """Simulate one integration into ``out`` (ngroups, ny, nx) uint16; return its CR events."""
    p = det.params
    key = detector_key(det.name)
    rng = {c: seeded_rng(seed, key, 1, index, integration, c) for c in (_KTC, _SHOT, _CR, _WHITE, _AMP)}
    shape = det.shape
    gain = det.gain
    ntot, frames, read, group_of, ktc, lam, events, deposits = h2rg.integration_setup(
        det, rng, nframes, groupgap, ngroups, integration)

    col_amp, row_par = det.layout()
    offsets = h2rg.amp_offsets(rng[_AMP], p, ntot, MIRI_NOUTPUTS)        # (ntot, 4, 2) e-

    response = det.response_coeffs.astype(np.float64) if p["nonlin"] else None
    well = det.well.astype(np.float64)
    bias = det.bias.astype(np.float64)
    shot = rng[_SHOT] if p["shot_noise"] else None
    white = rng[_WHITE] if p["rn_cds"] else None
    charge = np.zeros(shape, np.float64)
    acc = np.zeros(shape, np.float64)
    prev = -1
    for f in read:
        h2rg.add_charge(charge, lam, shot, deposits, prev, f)
        prev = f
        s, elec = h2rg.measured_signal(det, (charge + ktc) / gain + det.anomaly(integration, f, ntot),
                                       response, well, bias, white)
        if offsets is not None:
            elec += offsets[f][col_amp[None, :], row_par[:, None]].astype(np.float32)
        h2rg.store_read(det, out, acc, s, elec, f, frames, group_of, nframes)
    return events
