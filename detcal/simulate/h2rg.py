"""Truth-known simulation of NIR H2RG dark ramps (NIRCam / NIRISS flavour).

A :class:`Detector` holds the fixed truth of one detector (bias, dark-rate map, hot/warm/dead
pixels, read-noise map, well, linearity coefficients), all drawn from a seed. :func:`simulate_exposure`
reads it out: frame by frame, in the detector frame, in e-; each group is the mean of its NFRAMES
frames (GROUPGAP frames skipped), converted to DN, clipped to the 16-bit ADC range, rounded to
uint16 and turned to the science (DMS) orientation.

Signal model of pixel p in frame f (read at (f+1)*TFRAME after the reset) of integration i::

    Q      = dark charge (Poisson, rate map) + cosmic-ray charge arrived before the read   [e-]
    S_true = (Q + kTC_i) / gain                                                       [DN]
    S_meas = min(L^-1(S_true), well)       with L(s) = c0 + c1 s + c2 s^2 + c3 s^3 (LINEARITY)
    raw    = bias + S_meas + (white + pink_common + pink_output + amp_offset) / gain  [DN]

Reference pixels (4-pixel border) get bias, kTC, white noise (ratio ``ref_rn_ratio``), 1/f and
amplifier offsets, but no dark current, no cosmic rays and identity linearity. Amplifier offsets
are one value per (output, detector-column parity, frame) shared exactly by reference and active
pixels. Every effect has a switch (its amplitude 0, ``nonlin=False``, ``shot_noise=False``).

Random numbers: every component has its own stream, keyed by (seed, detector, exposure index,
integration, component), so switching one effect off does not change the others, and any one
exposure can be simulated alone.
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from astropy.time import Time

from .. import geometry, io
from ..geometry import NREF
from ..multiaccum import frames_per_integration, group_frames, group_time
from . import noise
from .detector import ADC_MAX, DetectorBase
from .params import detector_key, normalize_spec, pattern, simulated_exposure_name

# component numbers of the random streams (never renumber: it changes every simulated file)
_BIAS, _DARK, _POP, _RN, _WELL, _NL = range(6)
_NOISY = 6      # per-detector stream of the noisy-pixel population (added after the others)
_KTC, _SHOT, _CR, _WHITE, _CPINK, _UPINK, _AMP = range(7)

#: dtype of the cosmic-ray event table (indices 0-based; y, x in the science frame).
CR_DTYPE = np.dtype([("exposure", "U40"), ("integration", "i4"), ("frame", "i4"), ("group", "i4"),
                     ("time", "f8"), ("y", "i4"), ("x", "i4"), ("charge", "f4"),
                     ("central", "f4"), ("npix", "i2")])


def seeded_rng(seed, *key):
    """Generator of the independent random stream ``key`` (ints) of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


# ----------------------------------------------------------------------------------------------
# Nonlinearity
# ----------------------------------------------------------------------------------------------
def linearity_forward(s_meas, coeffs):
    """Linearity correction as the pipeline applies it: ``sum_j coeffs[j] * s_meas**j`` (Horner).

    Parameters
    ----------
    s_meas : ndarray (..., ny, nx) [DN, bias-subtracted measured signal]
    coeffs : ndarray (ncoeffs, ny, nx); coeffs[0] is the constant term

    Returns
    -------
    ndarray, same shape and dtype as ``s_meas`` (evaluated in that dtype) [DN, linearized]
    """
    x = np.asarray(s_meas)
    c = np.asarray(coeffs).astype(x.dtype, copy=False)
    r = c[-1] * x
    for j in range(len(c) - 2, 0, -1):
        r += c[j]
        r *= x
    r += c[0]
    return r


def linearity_inverse(s_true, coeffs, tol=1e-7, max_iter=20):
    """Measured signal whose linearity correction is ``s_true``: Newton's method in float64.

    Parameters
    ----------
    s_true : ndarray (ny, nx) [DN, linear signal]
    coeffs : ndarray (ncoeffs, ny, nx) float; the polynomial must be increasing over the range
        (c1 > 0, here c2, c3 >= 0 for positive signals)

    Returns
    -------
    ndarray, float64, (ny, nx) [DN]. Starts from a first-order guess (within ~0.5 % at the well);
    stops when the largest Newton step is below ``tol`` DN.
    """
    c = np.asarray(coeffs, np.float64)
    y = np.asarray(s_true, np.float64)
    s = (y - c[0]) / c[1]
    if len(c) > 2:   # first-order start s = x / (1 + (c2 x + c3 x^2 + ...)/c1), x = (y - c0)/c1
        corr = c[-1] * s
        for j in range(len(c) - 2, 1, -1):
            corr += c[j]
            corr *= s
        s /= 1.0 + corr / c[1]
    deriv = [j * c[j] for j in range(1, len(c))]
    for _ in range(max_iter):
        f = linearity_forward(s, c) - y
        fp = deriv[-1] * s
        for j in range(len(deriv) - 2, 0, -1):
            fp += deriv[j]
            fp *= s
        fp += deriv[0]
        step = f / fp
        s -= step
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return s


# ----------------------------------------------------------------------------------------------
# The detector truth
# ----------------------------------------------------------------------------------------------
@dataclass
class Detector(DetectorBase):
    """The fixed truth of one simulated detector. All maps: (size, size), **detector frame**.

    Shared properties and methods (identity, header, geometry, derived truth, DQ arrays):
    :class:`detcal.simulate.detector.DetectorBase`.

    Attributes
    ----------
    spec : dict                 normalized spec (see :func:`detcal.simulate.params.normalize_spec`)
    seed : int
    bias : float32 [DN]         kTC-free bias level (= the SUPERBIAS)
    dark_rate : float32 [e-/s]  0 on reference and dead pixels
    rn_frame : float32 [e-]     single-frame white read noise sigma
    well : float32 [DN]         saturation level of the measured (nonlinear) signal above bias
    coeffs : float32 (4, size, size) [DN]  LINEARITY coefficients (identity on reference pixels)
    reference, hot, warm, dead : bool
    """

    spec: dict
    seed: int
    bias: np.ndarray
    dark_rate: np.ndarray
    rn_frame: np.ndarray
    well: np.ndarray
    coeffs: np.ndarray
    reference: np.ndarray
    hot: np.ndarray
    warm: np.ndarray
    dead: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)

    # --- identity and readout -------------------------------------------------------------
    @property
    def size(self):
        """Side [pixels] of the square array."""
        return self.spec["size"]

    @property
    def shape(self):
        """(ny, nx) of the array."""
        return (self.size, self.size)

    @property
    def noutputs(self):
        """Number of readout outputs (amplifiers)."""
        return self.params["noutputs"]

    @property
    def active_box(self):
        """(y0, y1, x0, x1), detector frame: the light-sensitive area (inside the 4-pixel border)."""
        return (NREF, self.size - NREF, NREF, self.size - NREF)

    @property
    def dark_readpatt(self):
        """READPATT written to the DARK reference (its NFRAMES=1/GROUPGAP=0 pattern)."""
        return self.params["rapid_pattern"]

    def science(self, a):
        """Contiguous copy of a detector-frame array (..., ny, nx) in the science orientation."""
        return np.ascontiguousarray(geometry.to_science(a, self.fastaxis, self.slowaxis))

    def to_detector(self, a):
        """Contiguous copy of a science-frame array in the detector frame."""
        return np.ascontiguousarray(geometry.to_detector(a, self.fastaxis, self.slowaxis))

    def science_coords(self, yd, xd):
        """Science-frame (y, x) of detector-frame pixel indices (arrays of int)."""
        if "coords" not in self._cache:
            ys, xs = np.indices(self.shape, dtype=np.int32)
            self._cache["coords"] = (self.to_detector(ys), self.to_detector(xs))
        ymap, xmap = self._cache["coords"]
        return ymap[yd, xd], xmap[yd, xd]

    def column_layout(self):
        """(output index, column parity) of every detector column: two int arrays (nx,).

        Output stripes come from :meth:`detcal.geometry.Geometry.amplifier_map`; a simulated
        output reads them as contiguous stripes ``[k*w, (k+1)*w)``, checked here.
        """
        if "columns" not in self._cache:
            amp = self.to_detector(self.geometry.amplifier_map()).astype(np.intp)
            col_amp = amp[0]
            w = self.size // self.noutputs
            if not (np.all(amp == col_amp) and np.array_equal(col_amp, np.arange(self.size) // w)):
                raise RuntimeError("detcal.geometry amplifier layout is not column stripes in the "
                                   "detector frame; the H2RG simulator cannot read it out")
            self._cache["columns"] = (col_amp, np.arange(self.size) % 2)
        return self._cache["columns"]


def draw_pixel_truth(p, reference, seed, key):
    """Draw the per-pixel truth shared by every detector kind (its own random streams).

    Parameters
    ----------
    p : dict                 resolved parameters (dark populations, read noise, well, nonlinearity)
    reference : bool (ny, nx) reference pixels (no dark current, identity response), detector frame
    seed, key : int          master seed and :func:`~detcal.simulate.params.detector_key`

    Returns
    -------
    dict of detector-frame arrays: ``dark_rate`` float64 [e-/s] (lognormal normal pixels plus
    warm, hot and very-hot populations; 0 on reference and dead pixels), ``dead``, ``hot``,
    ``warm`` (bool; HOT/WARM = the thresholds applied to the map), ``noisy`` (bool, the noisy
    population: :func:`noisy_population`), ``rn_frame`` float64 [e-, single-frame white noise,
    multiplied by the noisy pixels' factor], ``well`` float64 [DN of measured signal above
    bias], ``coeffs``
    float64 (4, ny, nx) [DN]: the response polynomial of the signal above bias, c0 = 0, c1 = 1,
    c2/c3 >= 0 (identity on reference pixels and with ``nonlin=False``).
    """
    shape = reference.shape
    active_idx = np.flatnonzero(~reference)
    nact = active_idx.size

    # dark-rate map [e-/s]: lognormal normal pixels + warm, hot, very-hot populations; dead pixels
    r = seeded_rng(seed, key, 0, _DARK)
    rate = np.zeros(reference.size, np.float64)
    rate[active_idx] = p["dark_median"] * np.exp(r.normal(0.0, p["dark_sigma"], nact))
    r = seeded_rng(seed, key, 0, _POP)
    perm = r.permutation(active_idx)
    counts = [int(round(p[k] * nact)) for k in ("warm_frac", "hot_frac", "very_hot_frac", "dead_frac")]
    if sum(counts) > nact:
        raise ValueError("warm+hot+very_hot+dead fractions exceed the active pixels")
    edges = np.cumsum([0] + counts)
    groups = [perm[edges[i]:edges[i + 1]] for i in range(4)]

    def loguniform(lo, hi, size):
        return np.exp(r.uniform(np.log(lo), np.log(hi), size))

    rate[groups[0]] = loguniform(p["warm_min"], p["hot_min"], counts[0])
    rate[groups[1]] = loguniform(p["hot_min"], p["hot_max"], counts[1])
    rate[groups[2]] = loguniform(p["very_hot_min"], p["very_hot_max"], counts[2])
    dead = np.zeros(reference.size, bool)
    dead[groups[3]] = True
    rate[dead] = 0.0
    rate, dead = rate.reshape(shape), dead.reshape(shape)
    alive = ~reference & ~dead
    hot = alive & (rate >= p["hot_min"])
    warm = alive & (rate >= p["warm_min"]) & ~hot

    # white read noise [e-, single frame]
    r = seeded_rng(seed, key, 0, _RN)
    rn = p["rn_cds"] / np.sqrt(2.0) * np.clip(1.0 + p["rn_scatter"] * r.standard_normal(shape), 0.5, None)
    rn[reference] *= p["ref_rn_ratio"]
    noisy, factor = noisy_population(p, reference, dead, seed, key)
    rn *= factor

    # well [DN of measured signal] and response coefficients [DN]
    r = seeded_rng(seed, key, 0, _WELL)
    well = p["well"] / p["gain"] * (1.0 + p["well_scatter"] * r.standard_normal(shape))
    coeffs = np.zeros((4,) + shape, np.float64)
    coeffs[1] = 1.0
    if p["nonlin"]:
        r = seeded_rng(seed, key, 0, _NL)
        c2 = p["nl_frac"] * (1 - p["nl_cubic"]) * (1 + p["nl_scatter"] * r.standard_normal(shape)) / well
        c3 = p["nl_frac"] * p["nl_cubic"] * (1 + p["nl_scatter"] * r.standard_normal(shape)) / well**2
        coeffs[2] = np.where(reference, 0.0, np.clip(c2, 0.0, None))
        coeffs[3] = np.where(reference, 0.0, np.clip(c3, 0.0, None))
    return {"dark_rate": rate, "dead": dead, "hot": hot, "warm": warm, "noisy": noisy, "rn_frame": rn,
            "well": well, "coeffs": coeffs}


def noisy_population(p, reference, dead, seed, key):
    """The noisy pixels: ``round(noisy_frac * live active pixels)`` of them, drawn from their own
    random stream (so the other truth does not change with ``noisy_frac``), each with its white
    read noise multiplied by a log-uniform factor in [``noisy_min``, ``noisy_max``] (1.5-3 by
    default: the pixels a MASK flags UNRELIABLE_SLOPE for their noise).

    Returns ``noisy`` bool (ny, nx) and ``factor`` float64 (ny, nx) (1 elsewhere), detector frame.
    """
    live = np.flatnonzero(~reference & ~dead)
    n = int(round(p["noisy_frac"] * (~reference).sum()))
    if n > live.size:
        raise ValueError("noisy_frac exceeds the live active pixels")
    r = seeded_rng(seed, key, 0, _NOISY)
    idx = r.permutation(live)[:n]
    factor = np.ones(reference.size, np.float64)
    factor[idx] = np.exp(r.uniform(np.log(p["noisy_min"]), np.log(p["noisy_max"]), n))
    noisy = np.zeros(reference.size, bool)
    noisy[idx] = True
    return noisy.reshape(reference.shape), factor.reshape(reference.shape)


def make_detector(spec, seed=0):
    """Draw the truth of one detector.

    Parameters
    ----------
    spec : dict
        Detector spec (keys in :data:`detcal.simulate.params.SPEC_KEYS`; at least ``name`` and
        ``preset``), normalized or not.
    seed : int >= 0

    Returns
    -------
    Detector
    """
    spec = spec if "params" in spec else normalize_spec(spec)
    p = spec["params"]
    n = spec["size"]
    shape = (n, n)
    key = detector_key(spec["name"])
    nout = p["noutputs"]
    w = n // nout
    col_amp, col_par = np.arange(n) // w, np.arange(n) % 2

    # bias [DN]: level + per output + per output/parity + slow-axis gradient + pixel structure
    r = seeded_rng(seed, key, 0, _BIAS)
    amp_off = r.normal(0.0, p["bias_amp_sigma"], nout)
    par_off = r.normal(0.0, p["bias_col_sigma"], (nout, 2))
    rows = np.linspace(-0.5, 0.5, n)[:, None] * p["bias_gradient"]
    bias = (p["bias_level"] + amp_off[col_amp][None, :] + par_off[col_amp, col_par][None, :] + rows
            + r.normal(0.0, p["bias_pixel_sigma"], shape))
    bias = np.clip(bias, 0.0, ADC_MAX).astype(np.float32)

    reference = np.zeros(shape, bool)
    reference[:NREF, :] = reference[-NREF:, :] = reference[:, :NREF] = reference[:, -NREF:] = True
    t = draw_pixel_truth(p, reference, seed, key)
    rate, dead, hot, warm, rn, well, coeffs = (t[k] for k in ("dark_rate", "dead", "hot", "warm",
                                                              "rn_frame", "well", "coeffs"))

    return Detector(spec=spec, seed=int(seed), bias=bias, dark_rate=rate.astype(np.float32),
                    rn_frame=rn.astype(np.float32), well=well.astype(np.float32),
                    coeffs=coeffs.astype(np.float32), reference=reference, hot=hot, warm=warm,
                    dead=dead)


# ----------------------------------------------------------------------------------------------
# Readout
# ----------------------------------------------------------------------------------------------
def exposure_header(det, readpatt, ngroups, nints, expstart, exposure, seed, index):
    """Complete level-1b primary header of a simulated dark exposure."""
    nframes, groupgap = pattern(readpatt)
    tframe = det.tframe
    tgroup = group_time(tframe, nframes, groupgap)
    ntot = frames_per_integration(ngroups, nframes, groupgap)
    duration = nints * (ntot + 1) * tframe           # one reset frame before every integration
    h = det.base_header()
    t0 = Time(float(expstart), format="mjd", scale="utc")
    date, clock = t0.isot.split("T")
    h["FILENAME"] = (f"{exposure}_uncal.fits", "Name of the file")
    h["DATE-OBS"] = (date, "UTC date at start of exposure")
    h["TIME-OBS"] = (clock, "UTC time at start of exposure")
    h["EXP_TYPE"] = (det.params["exp_type"], "Type of data in the exposure")
    h["EXPSTART"] = (float(expstart), "UTC exposure start time (MJD)")
    h["EXPMID"] = (float(expstart) + duration / 2 / 86400.0, "UTC exposure mid time (MJD)")
    h["EXPEND"] = (float(expstart) + duration / 86400.0, "UTC exposure end time (MJD)")
    h["READPATT"] = (readpatt, "Readout pattern")
    h["NINTS"] = (int(nints), "Number of integrations in exposure")
    h["INTSTART"] = (1, "First integration in the file")
    h["INTEND"] = (int(nints), "Last integration in the file")
    h["NGROUPS"] = (int(ngroups), "Number of groups in integration")
    h["NFRAMES"] = (nframes, "Number of frames per group")
    h["GROUPGAP"] = (groupgap, "Number of frames dropped between groups")
    h["NSAMPLES"] = (1, "Number of A/D samples per pixel")
    h["TSAMPLE"] = (det.params["pixel_time"] * 1e6, "Time between samples (microsec)")
    h["TFRAME"] = (tframe, "Time between frames (sec)")
    h["TGROUP"] = (tgroup, "Time between groups (sec)")
    # effective integration time as JDox defines it: first to last group, (NGROUPS-1)*TGROUP
    h["EFFINTTM"] = ((ngroups - 1) * tgroup, "Effective integration time (sec)")
    h["EFFEXPTM"] = ((ngroups - 1) * tgroup * nints, "Effective exposure time (sec)")
    h["DURATION"] = (duration, "Total duration of exposure (sec)")
    h["NRSTSTRT"] = (1, "Number of resets at start of exposure")
    h["NRESETS"] = (1, "Number of resets between integrations")
    h["FRMDIVSR"] = (nframes, "Divisor applied to frame-averaged groups")
    h["DRPFRMS1"] = (0, "Frames dropped before the first integration")
    h["DRPFRMS3"] = (0, "Frames dropped between integrations")
    h["ZEROFRAM"] = (False, "Zero frame was downlinked separately")
    h["DC_SIM"] = (True, "simulated by detcal.simulate")
    h["DC_SEED"] = (int(seed), "detcal.simulate random seed")
    h["DC_EXPNO"] = (int(index), "exposure index (0-based) in the set")
    h["DC_PRESE"] = (det.spec["preset"], "detcal.simulate parameter preset")
    io.add_history(h, "detcal.simulate", params={"preset": det.spec["preset"], "seed": int(seed),
                                                 "exposure index": int(index)})
    return h


def simulate_exposure(det, readpatt=None, ngroups=None, nints=None, index=0, seed=None,
                      exposure=None, expstart=None):
    """Simulate one dark exposure of ``det``.

    Parameters
    ----------
    det : Detector
    readpatt, ngroups, nints : str, int, int
        Readout; default to the detector spec's values.
    index : int
        Exposure index (0-based): selects the random streams and the default name/start time.
    seed : int, optional
        Seed of the exposure's random streams; default ``det.seed``.
    exposure : str, optional
        Exposure name; default :func:`~detcal.simulate.params.simulated_exposure_name`.
    expstart : float, optional
        Start MJD; default spec ``expstart + index * cadence/24``.

    Returns
    -------
    data : ndarray, uint16, shape (nints, ngroups, ny, nx) [DN], science orientation
    header : astropy.io.fits.Header
        Complete level-1b primary header.
    truth : dict
        ``cr_events`` (structured array, :data:`CR_DTYPE`), ``group_frames`` (frame indices of
        each group), ``frame_times`` (float64 (nframes_total,) [s] read time of each frame after
        reset), ``nframes_total``, ``pink_method``.
    """
    return read_exposure(det, _integrate, exposure_header, _pink_method, readpatt, ngroups, nints,
                         index, seed, exposure, expstart)


def _pink_method(det, ntot, nread):
    """1/f generation method (:func:`detcal.simulate.noise.choose_method`) of one integration."""
    p = det.params
    clock = noise.Clock(det.size, det.size, det.noutputs, p["pixel_time"], p["row_overhead"])
    return noise.choose_method(ntot, clock.period(det.tframe), clock.window, nread, p["pink_method"])


def read_exposure(det, integrate, make_header, pink_method, readpatt=None, ngroups=None, nints=None,
                  index=0, seed=None, exposure=None, expstart=None):
    """The readout shared by every detector kind's ``simulate_exposure``.

    Resolves the readout defaults from ``det.spec`` (as :func:`simulate_exposure`), builds the
    header with ``make_header(det, readpatt, ngroups, nints, expstart, exposure, seed, index)``,
    reads every integration with ``integrate(det, out, nframes, groupgap, ngroups, seed, index,
    integration)`` (returns its CR events) and names the 1/f method of the truth with
    ``pink_method(det, nframes_total, nreads)``. Returns (data, header, truth) as
    :func:`simulate_exposure`.
    """
    spec = det.spec
    readpatt = str(readpatt or spec["readpatt"]).upper()
    ngroups = int(ngroups or spec["ngroups"])
    nints = int(nints or spec["nints"])
    seed = det.seed if seed is None else int(seed)
    exposure = exposure or simulated_exposure_name(det.name, index, spec["prefix"])
    if expstart is None:
        expstart = spec["expstart"] + index * spec["cadence"] / 24.0
    nframes, groupgap = pattern(readpatt)
    header = make_header(det, readpatt, ngroups, nints, expstart, exposure, seed, index)
    det = exposure_detector(det, index, seed)
    data = np.empty((nints, ngroups) + det.shape, np.uint16)
    events = []
    for i in range(nints):
        ev = integrate(det, data[i], nframes, groupgap, ngroups, seed, index, i)
        ev["exposure"] = exposure
        events.append(ev)
    ntot = frames_per_integration(ngroups, nframes, groupgap)
    truth = {
        "cr_events": np.concatenate(events) if events else np.zeros(0, CR_DTYPE),
        "group_frames": group_frames(ngroups, nframes, groupgap),
        "frame_times": (np.arange(ntot) + 1.0) * det.tframe,
        "nframes_total": ntot,
        "pink_method": pink_method(det, ntot, ngroups * nframes),
    }
    return data, header, truth


def exposure_detector(det, index, seed):
    """The detector as exposure ``index`` (0-based) sees it: bias + ``index * bias_drift`` + a
    ``bias_jitter`` draw (stream keyed (seed, detector, 2, index)) [DN] on every pixel, dark rate +
    ``index * dark_drift`` [e-/s, floored at 0] on responding pixels. A copy; ``det`` itself when
    all three parameters are 0 (the stationary default)."""
    p = det.params
    drift, dark_drift, jitter = (float(p.get(k) or 0.0) for k in ("bias_drift", "dark_drift", "bias_jitter"))
    if not (drift or dark_drift or jitter):
        return det
    offset = index * drift
    if jitter:
        offset += seeded_rng(seed, detector_key(det.name), 2, index).normal(0.0, jitter)
    bias = np.clip(det.bias.astype(np.float64) + offset, 0.0, ADC_MAX).astype(np.float32)
    rate = det.dark_rate
    if dark_drift:
        rate = np.where(det.response, np.maximum(rate + index * dark_drift, 0.0), rate).astype(np.float32)
    return dataclasses.replace(det, bias=bias, dark_rate=rate, _cache={})


def _cosmic_rays(det, rng, ntot, integration, read_group):
    """Draw the CR events of one integration.

    Hits land uniformly in ``det.active_box`` (detector frame) at ``params['cr_rate']`` per cm^2
    (pixel pitch ``params['pixel_pitch']``) and second; charge goes only to ``det.response`` pixels.
    Used by every detector kind (it needs ``shape``, ``active_box``, ``response``, ``tframe``,
    ``params`` and ``science_coords``).

    Returns (events structured array, deposits) with deposits = (frame, flat pixel index, e-) of
    every pixel hit, detector frame.
    """
    p = det.params
    nx = det.shape[1]
    y0, y1, x0, x1 = det.active_box
    area = (y1 - y0) * (x1 - x0) * (p["pixel_pitch"] * 1e-4) ** 2          # cm^2
    span = ntot * det.tframe
    count = rng.poisson(p["cr_rate"] * area * span) if p["cr_rate"] > 0 else 0
    t = np.sort(rng.uniform(0.0, span, count))
    frame = np.minimum((t / det.tframe).astype(int), ntot - 1)
    yd = rng.integers(y0, y1, count)
    xd = rng.integers(x0, x1, count)
    charge = np.exp(rng.normal(np.log(p["cr_median"]), p["cr_sigma"], count))
    central = rng.uniform(p["cr_central_min"], p["cr_central_max"], count)
    eight = rng.uniform(size=count) < p["cr_8_frac"]
    cross = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    ring = cross + [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    resp = det.response
    dep_f, dep_i, dep_q, npix, qcen = [], [], [], np.zeros(count, np.int16), np.zeros(count)
    for e in range(count):
        offs = ring if eight[e] else cross
        share = rng.dirichlet(np.ones(len(offs))) * (1.0 - central[e]) * charge[e]
        ys = np.array([yd[e]] + [yd[e] + dy for dy, _ in offs])
        xs = np.array([xd[e]] + [xd[e] + dx for _, dx in offs])
        q = np.concatenate([[central[e] * charge[e]], share])
        inside = (ys >= 0) & (ys < resp.shape[0]) & (xs >= 0) & (xs < nx)   # MIRI: no border rows
        ok = inside & resp[ys.clip(0, resp.shape[0] - 1), xs.clip(0, nx - 1)]
        npix[e] = ok.sum()
        qcen[e] = q[0] if ok[0] else 0.0
        dep_f.append(np.full(ok.sum(), frame[e]))
        dep_i.append(ys[ok] * nx + xs[ok])
        dep_q.append(q[ok])
    ev = np.zeros(count, CR_DTYPE)
    ys, xs = det.science_coords(yd, xd)
    ev["integration"], ev["frame"], ev["group"], ev["time"] = integration, frame, read_group[frame], t
    ev["y"], ev["x"], ev["charge"], ev["central"], ev["npix"] = ys, xs, charge, qcen, npix
    cat = (lambda a, dt: np.concatenate(a).astype(dt) if a else np.zeros(0, dt))
    return ev, (cat(dep_f, np.int64), cat(dep_i, np.int64), cat(dep_q, np.float64))


def integration_setup(det, rng, nframes, groupgap, ngroups, integration):
    """What every detector kind's integration starts from (streams ``rng`` keyed as in :mod:`.h2rg`).

    Returns (ntot, frames, read, group_of, ktc, lam, events, deposits): frames per integration,
    the frame indices of each group (:func:`group_frames`) and all of them in read order, the group
    of every frame (-1: not read), the kTC draw [e-] (float32 (ny, nx), or 0), the dark charge
    per frame [e-] (float64 (ny, nx)) and the CR events and deposits of :func:`_cosmic_rays`.
    """
    p = det.params
    ntot = frames_per_integration(ngroups, nframes, groupgap)
    frames = group_frames(ngroups, nframes, groupgap)
    read = [f for fr in frames for f in fr]
    group_of = np.full(ntot, -1)
    for g, fr in enumerate(frames):
        group_of[fr] = g
    # group in which a charge arriving before the read of frame f first shows up
    read_group = np.array([group_of[min(r for r in read if r >= f)] for f in range(ntot)])

    ktc = (rng[_KTC].standard_normal(det.shape, dtype=np.float32) * np.float32(p["ktc"])
           if p["ktc"] else np.float32(0.0))
    lam = det.dark_rate.astype(np.float64) * det.tframe                  # e- per frame
    events, deposits = _cosmic_rays(det, rng[_CR], ntot, integration, read_group)
    return ntot, frames, read, group_of, ktc, lam, events, deposits


def amp_offsets(rng, p, ntot, noutputs):
    """float64 (ntot, noutputs, 2) [e-] per-frame offsets of each output and parity (column
    parity for H2RG, row parity for MIRI): a per-integration level (``amp_offset``) plus a random
    walk (``amp_drift``), or None when both are 0."""
    if not (p["amp_offset"] or p["amp_drift"]):
        return None
    level = rng.normal(0.0, p["amp_offset"], (noutputs, 2))
    walk = np.cumsum(rng.normal(0.0, p["amp_drift"], (ntot, noutputs, 2)), axis=0)
    return level[None] + walk


def add_charge(charge, lam, shot, deposits, prev, f):
    """Add to ``charge`` [e-] (float64 (ny, nx), in place) the dark charge of frames ``prev+1 ..
    f`` (Poisson draw from ``shot``, or its mean when ``shot`` is None) and the CR deposits of
    those frames."""
    nf = f - prev
    if shot is not None:
        charge += shot.poisson(lam * nf)
    else:
        charge += lam * nf
    dep_f, dep_i, dep_q = deposits
    sel = (dep_f > prev) & (dep_f <= f)
    if sel.any():
        np.add.at(charge.reshape(-1), dep_i[sel], dep_q[sel])


def measured_signal(det, s, coeffs, well, bias, white):
    """Raw signal [DN] of the linear signal ``s`` [DN above bias] (inverse response ``coeffs``
    unless None, capped at ``well``, plus ``bias``) and the float32 white noise [e-] of one read
    (drawn from ``white`` unless None): (s, elec)."""
    if coeffs is not None:
        s = linearity_inverse(s, coeffs)
    np.minimum(s, well, out=s)
    s += bias
    elec = np.zeros(det.shape, np.float32)
    if white is not None:
        elec += white.standard_normal(det.shape, dtype=np.float32) * det.rn_frame
    return s, elec


def store_read(det, out, acc, s, elec, f, frames, group_of, nframes):
    """Add the electronics ``elec`` [e-] to the read ``s`` [DN], clip to the ADC range and
    accumulate in ``acc``; after the last frame of a group, write its rounded mean to ``out``
    (science orientation) and reset ``acc``."""
    s += elec / np.float32(det.gain)
    np.clip(s, 0.0, ADC_MAX, out=s)
    acc += s
    g = group_of[f]
    if f == frames[g][-1]:
        out[g] = det.science(np.rint(acc / nframes).astype(np.uint16))
        acc[:] = 0.0


def _integrate(det, out, nframes, groupgap, ngroups, seed, index, integration):
    """Simulate one integration into ``out`` (ngroups, ny, nx) uint16 science frame; return CR events."""
    p = det.params
    key = detector_key(det.name)
    rng = {c: seeded_rng(seed, key, 1, index, integration, c) for c in (_KTC, _SHOT, _CR, _WHITE, _CPINK, _UPINK, _AMP)}
    shape = det.shape
    gain = det.gain
    ntot, frames, read, group_of, ktc, lam, events, deposits = integration_setup(
        det, rng, nframes, groupgap, ngroups, integration)

    clock = noise.Clock(det.size, det.size, det.noutputs, p["pixel_time"], p["row_overhead"])
    period = clock.period(det.tframe)
    common = per_out = None
    if p["c_pink"]:
        common = noise.pink_windows(read, ntot, period, clock.window, p["c_pink"], rng[_CPINK],
                                    p["pixel_time"], p["pink_method"])
    if p["u_pink"]:
        per_out = noise.pink_windows(read, ntot, period, clock.window, p["u_pink"], rng[_UPINK],
                                     p["pixel_time"], p["pink_method"], nstreams=det.noutputs)
    col_amp, col_par = det.column_layout()
    offsets = amp_offsets(rng[_AMP], p, ntot, det.noutputs)               # (ntot, nout, 2) e-

    coeffs = det.coeffs.astype(np.float64) if p["nonlin"] else None
    well = det.well.astype(np.float64)
    bias = det.bias.astype(np.float64)
    shot = rng[_SHOT] if p["shot_noise"] else None
    white = rng[_WHITE] if p["rn_cds"] else None
    charge = np.zeros(shape, np.float64)
    acc = np.zeros(shape, np.float64)
    prev = -1
    for ir, f in enumerate(read):
        add_charge(charge, lam, shot, deposits, prev, f)
        prev = f
        s, elec = measured_signal(det, (charge + ktc) / gain, coeffs, well, bias, white)
        if common is not None or per_out is not None:
            elec += clock.image(None if common is None else common[ir],
                                None if per_out is None else per_out[:, ir])
        if offsets is not None:
            elec += offsets[f][col_amp, col_par].astype(np.float32)[None, :]
        store_read(det, out, acc, s, elec, f, frames, group_of, nframes)
    return events
