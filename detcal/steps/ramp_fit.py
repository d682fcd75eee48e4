"""Ramp fitting: optimally weighted least-squares slopes (the stcal OLS_C algorithm).

Reproduces ``stcal.ramp_fitting.ramp_fit.ramp_fit`` with ``algorithm='OLS_C'``,
``weighting='optimal'`` (stcal 1.20, as the jwst 3.0 RampFitStep calls it) for every pixel:

* Read noise per group ``rn = READNOISE * gain / sqrt(2 * NFRAMES)`` [e-] (the input array is
  not modified, unlike stcal). Gain <= 0 or NaN: NO_GAIN_VALUE | DO_NOT_USE in the pixel DQ.
* ``suppress_one_group``: an integration with exactly one good group (ignoring PERSISTENCE)
  becomes DO_NOT_USE in every group.
* Segments: maximal runs of good groups (``gdq & ~PERSISTENCE == 0``); a run that follows a group
  flagged exactly JUMP_DET starts at that group. Length-1 segments are dropped when a longer one
  exists, otherwise only the first is kept. An integration whose group 0 is SATURATED has none.
* Per segment of ``n`` groups (``T`` = TGROUP, ``g`` = gain, ``dc`` = average dark current, ``mr``
  = the pixel's median rate: the mean over integrations of the median first difference of
  ``data / T`` ignoring DO_NOT_USE / SATURATED groups and differences into JUMP groups):

  - n >= 3: weights ``|(k - mid) / mid| ** P`` with the exponent ``P`` from the segment SNR
    (``<5: 0, <10: 0.4, <20: 1, <50: 3, <100: 6, else 10``); slope = weighted LSQ slope / T;
    ``var_p = (mr + dc if mr > 0 else dc) / (T g (n - 1))``,
    ``var_r = 12 (rn / T)^2 / ((n^3 - n) g^2)``;
  - n = 2: ``(y1 - y0) / T``, ``var_p = (...) / (T g)``, ``var_r = 12 (rn / T)^2 / (6 g^2)``;
  - n = 1: ``y / t1`` (``t1`` = T, or ``(NFRAMES + 1) TFRAME / 2`` for a ramp whose only good group
    is group 0 when ``suppress_one_group`` is off), variances as n = 2 with ``t1``.

* Integration (JP-4318): slope = sum(slope_s / var_r_s) / sum(1 / var_r_s);
  VAR_POISSON = 1 / sum(1 / var_p_s) (segments with var_p > 0); VAR_RNOISE = 1 / sum(1 / var_r_s);
  ERR = sqrt(1 / sum(1 / (var_p_s + var_r_s))). Exposure: the same sums over all integrations and
  segments, but ERR = sqrt(VAR_POISSON + VAR_RNOISE). Variances >= 1e6 become 0.
* DQ: JUMP_DET / PERSISTENCE if any group had it; DO_NOT_USE (+ SATURATED) for integrations
  without usable groups; any DO_NOT_USE or SATURATED in the DQ (e.g. DO_NOT_USE in PIXELDQ)
  makes the slope NaN and the variances 0; partial saturation sets SATURATED but keeps the slope.

Arithmetic is float64 as in the C code (TGROUP/TFRAME rounded to float32 as stcal passes them,
weights through float32 ``powf``), outputs float32. Vectorised: pixels with finite data whose
only GROUPDQ flags are the block's common DO_NOT_USE groups (leading/trailing groups flagged in
every pixel of an integration, as lastframe, rscd, the branch without dark's skip groups and the
group selectors flag them; none at all for a NIR dark) are the common case. For them each
integration is one segment [lo, hi) of the remaining groups (a DO_NOT_USE group is not JUMP_DET,
so it starts no segment; stcal's x values are group numbers from lo), fitted with closed-form
weighted slopes (the most common weight exponent of the integration with scalar coefficients),
and the median rate is that of the differences inside [lo, hi), from
:func:`detcal.steps.median.median_of_differences` (a median-only sorting network up to 32
differences; above, int32 sort keys of the float32 differences that identify the middle elements,
whose float64 rate differences are then computed exactly). An integration keeping fewer than 3 groups
disables this; other ramps (an integration of a pixel with jumps, saturation, NaN, other
DO_NOT_USE) go through a vectorised segment path, one integration at a time, so a pixel's other
integrations keep the closed form (their slopes then redone with stcal's arithmetic, because the
exposure rate combines them with the segment path's).
Segment slopes of flagged pixels, of ramps with another exponent and of closed-form slopes whose
float64 value lies within a rounding bound of a float32 boundary use stcal's own weighted sums in
group order, so the float32 outputs are bit-identical. Work is done in blocks of rows sized from a
memory budget (``memory_mb`` per thread), optionally on several threads (``threads``): the result
does not depend on either. :func:`fit_rows` / :func:`run_rows` fit a ramp that is not whole in
memory (the per-step job reads its file by blocks of rows) and hand each block's rate and
rateints rows to a writer as they are computed (:class:`detcal.io.RateWriter`); what depends on
the whole frame (MIRI's group range, the group selectors) is decided once, first, so the values
are those of one whole-frame call.

* ZEROFRAME (level-1b ``ZEROFRAME`` extension, float32 (nints, ny, nx) [DN]), as stcal uses it:
  only when ``suppress_one_group`` is off, for an integration without any good group (group 0
  SATURATED) whose ZEROFRAME value is not 0, the ZEROFRAME replaces group 0 (flags cleared) and
  gives a length-1 segment timed by TFRAME: slope ``zf / TFRAME``, variances as n = 1 with
  ``t1 = TFRAME``, median rate ``zf / TFRAME``; the other groups' SATURATED flags remain (partial
  saturation).

Deliberate differences from stcal: when group 0 is SATURATED in every pixel (or, for MIRI, no
usable group remains) stcal returns no product at all; here the per-pixel rules apply (all NaN,
DQ DO_NOT_USE | SATURATED). CHARGELOSS re-fitting and the optional ``fitopt`` product are not
implemented. :func:`run` passes a ramp's ZEROFRAME when the header has ZEROFRAM = T: then the
saturation, superbias, refpix and linearity steps have corrected it as jwst's do
(:meth:`detcal.io.Ramp.correct_zeroframe`), and it is in the state jwst's ramp_fit reads. jwst's
ramp_fit would also use a ZEROFRAME extension of a file whose ZEROFRAM is not T, uncorrected (bias
included); :func:`run` leaves such a ZEROFRAME out and says so.
"""

import ctypes
import ctypes.util
import dataclasses
import fractions
import functools
import logging
import math

import numpy as np

from .. import dqflags, keywords
from .descriptor import Param, Product, Step
from .jump import check_frame_shapes, check_ramp_inputs, map_blocks, row_blocks, rows_per_block, shared_threads
from .median import NETWORK_MAX, median_of_differences, median_sorted, release_scratch, sort_columns

log = logging.getLogger("detcal.ramp_fit")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="ramp_fit", description="OLS ramp fit to rate and rateints products",
    position={"NIR": 90, "MIRI": 100}, cal_step="S_RAMP", references=("gain", "readnoise"),
    keywords=("TFRAME", "TGROUP"), ramp_product=False,
    parameters={"suppress_one_group": Param(True, "Give no slope to ramps with a single good group")},
    products={"rate": Product("rate", "rate"), "rateints": Product("rateints", "rateints")})

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: Variances at or above this are set to 0 (stcal ``LARGE_VARIANCE_THRESHOLD``).
LARGE_VARIANCE = 1.0e6

#: SNR limits of the weight exponents and the exponents (stcal ``snr_power``).
SNR_LIMITS = np.array([5.0, 10.0, 20.0, 50.0, 100.0])
POWERS = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)

_DNU = dqflags.DO_NOT_USE
_SAT = dqflags.SATURATED
_JUMP = dqflags.JUMP_DET
_PERS = dqflags.PERSISTENCE
_U8_DNU = np.uint8(_DNU)
_U8_NOT_PERS = np.uint8(0xFF & ~_PERS)
_INVALID = np.uint32(_DNU | _SAT)

#: Factor on the first-order rounding bound of :func:`_rounding_scales` (the neglected
#: second-order terms are ~n u of it, below 1e-13 at 1000 groups).
SPARE = 1.25

#: Approximate bytes of temporaries per pixel-group (used to size the row blocks; measured with
#: tracemalloc at a 16 MB budget: 15 MB at 2 x 10 groups; above 33 groups, whose median rate
#: takes int32 keys (:func:`detcal.steps.median.median_of_differences`), 20 bytes give 10-15 MB
#: at 1 x 40 to 1 x 100 and 3 x 40).
_BYTES_PER_PIXEL_GROUP = 32
_BYTES_PER_PIXEL_GROUP_KEYED = 20

#: Keys of the rate and rateints dicts (FITS extensions SCI, ERR, DQ, VAR_POISSON, VAR_RNOISE).
PRODUCT_NAMES = ("sci", "err", "dq", "var_poisson", "var_rnoise")


def _load_powf():
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        f = libm.powf
        f.restype = ctypes.c_float
        f.argtypes = (ctypes.c_float, ctypes.c_float)
        return lambda x, y: float(f(x, y))
    except (OSError, AttributeError):  # no C math library: round a double pow
        return lambda x, y: float(np.float32(math.pow(np.float32(x), np.float32(y))))


_powf = _load_powf()


@functools.lru_cache(maxsize=None)
def weight_table(n):
    """Slope coefficients for a segment of ``n >= 3`` groups, one row per weight exponent.

    Returns float64 (len(POWERS), n): ``slope * TGROUP = sum_k c[p, k] * y_k``, the weighted
    least-squares slope with stcal's optimal weights ``powf(|(k - mid) / mid|, P)`` (the 1/rn^2
    factor cancels). Each coefficient is the exact rational value rounded once to float64 (so
    ``|c - exact| <= 2**-53 |exact|``: on a ramp with a large pedestal the closed-form slope then
    errs only by the rounding of its own sum, :func:`_rounding_scales`).
    """
    weights = _padded_weights(n)[n]
    table = np.empty((len(POWERS), n))
    for row in range(len(POWERS)):
        w = [fractions.Fraction(float(v)) for v in weights[row]]
        sw = sum(w)
        sx = sum(wk * k for k, wk in enumerate(w))
        sxx = sum(wk * k * k for k, wk in enumerate(w))
        den = sw * sxx - sx * sx
        table[row] = [float(wk * (k * sw - sx) / den) for k, wk in enumerate(w)]
    return table


@functools.lru_cache(maxsize=8)
def _padded_weights(ngroups):
    """stcal's optimal weights before the 1/rn^2 factor, float64 (ngroups + 1, len(POWERS),
    ngroups): ``[n, p, k] = powf(|(k - mid) / mid|, POWERS[p])`` for k < n (n >= 3), 0 beyond."""
    out = np.zeros((ngroups + 1, len(POWERS), ngroups))
    for n in range(3, ngroups + 1):
        mid = (n - 1) / 2.0
        invmid = 1.0 / mid
        for row, p in enumerate(POWERS):
            out[n, row, :n] = [_powf(abs((k - mid) * invmid), p) for k in range(n)]
    return out


@functools.lru_cache(maxsize=256)
def _rounding_scales(n, p, start=0):
    """Coefficients ``(KM, KS)`` of the rounding bound of :func:`_rounding_margin` for a segment
    of ``n`` groups starting at group ``start`` with weight row ``p``: the closed-form slope and
    stcal's differ by at most ``u (KM max|y| / T + KS |slope|) / SPARE`` (u = 2**-53, the float64
    unit roundoff; :data:`SPARE` covers the second-order terms, relative size ~n u, many times).

    First-order bounds of each one's distance from the exact weighted least-squares slope, from
    the weights ``w`` (scale-free; stcal's 1/rn^2 scaling rounds every weight by one u: a weight
    perturbation of at most ``2 u C max|y|``), its x values (group numbers ``start + k``),
    ``sw, sx, sxx``, ``den = sw sxx - sx^2`` and ``C = sum |c_k|`` (c: the slope coefficients,
    which do not depend on ``start``):

    * stcal: sequential sums (:func:`_stcal_slopes`), each rounding bounded by u times the
      partial sum it makes (``|partial sums of w y| <= max|y| * partial sums of w``), then
      ``num = sw sxy - sx sy``, ``den``, ``num / den / T``;
    * closed form: the correctly rounded coefficients of :func:`weight_table` (``u C max|y|``),
      a float64 sum of ``n`` products in any order (``n u C max|y|``), then ``/ T``.
    """
    w = _padded_weights(n)[n, p]
    x = start + np.arange(n, dtype=np.float64)
    sw, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    den = sw * sxx - sx * sx

    def part(t):       # sum of the partial sums that sequential addition rounds
        return float(np.cumsum(t)[1:].sum())

    dsw, dsx, dsxx = part(w), part(w * x) + sx, part(w * x * x) + 2.0 * sxx   # / u
    dsy, dsxy = part(w) + sw, part(w * x) + 2.0 * sx                          # / (u max|y|)
    C = float(np.abs(weight_table(n)[p]).sum())
    stcal_m = (sw * dsxy + sx * dsw + sx * dsy + sw * dsx + 2.0 * sw * sx) / den + 2.0 * C
    stcal_s = (sw * dsxx + sxx * dsw + 2.0 * sx * dsx + sw * sxx + sx * sx) / den + 4.0
    closed_m = (n + 3.0) * C
    closed_s = 3.0
    return SPARE * (stcal_m + closed_m), SPARE * (stcal_s + closed_s) + 16.0


def _rounding_margin(slope, y32, n, start, p, T, extremes=None):
    """Bound (P,) [DN/s] on the distance between the closed-form slopes ``slope`` (P,) of one
    integration's segments ``y32`` (n, P) (groups ``start`` .. ``start + n - 1``, weight row
    ``p``) and the slopes stcal's arithmetic gives them (:func:`_rounding_scales`; the extra
    ``16 u |slope|`` covers the few operations that turn a slope into SCI, the same for both).
    ``extremes``: (min, max) of ``y32`` over axis 0 if known.
    """
    KM, KS = _rounding_scales(n, p, start)
    u = np.finfo(np.float64).eps / 2.0
    ymin, ymax = (y32.min(axis=0), y32.max(axis=0)) if extremes is None else extremes
    big = np.fmax(np.abs(ymax), np.abs(ymin)).astype(np.float64)        # max |y|
    return u * (KM / T) * big + (u * KS) * np.abs(slope)


def _near_float32_boundary(slope, margin, ns):
    """True where the closed-form slopes (nints, P) [DN/s] could round to a different float32
    rateints or rate value than stcal's arithmetic would give.

    ``margin`` (nints, P): :func:`_rounding_margin`; ``ns``: the segment length of each
    integration. A value is at risk when its float32 rounding is not the same at both ends of
    its interval. The exposure rate of these pixels is the mean of the integrations' slopes
    weighted by 1 / VAR_RNOISE, i.e. by ``n^3 - n`` (the pixel's read noise and gain cancel).
    """
    f32 = np.float32
    risky = (slope - margin).astype(f32) != (slope + margin).astype(f32)
    nints = slope.shape[0]
    w = np.array([float(n) ** 3 - n for n in ns])
    w /= w.sum()
    mean = np.einsum("i,ip->p", w, slope)
    u = np.finfo(np.float64).eps / 2.0    # the exposure sums' own rounding, generously
    m = margin.max(axis=0) + 64.0 * (nints + 4) * u * np.abs(slope).max(axis=0)
    risky |= ((mean - m).astype(f32) != (mean + m).astype(f32))[None, :]
    return risky


def _column_sums(a):
    """Sums over axis 0 of a C-contiguous float64 (n, S) array, row after row (stcal's group
    order): numpy reduces axis 0 of such an array row by row when it has several columns, but sums
    a single column pairwise (as a contiguous vector), so that one is accumulated."""
    if a.shape[1] != 1:
        return np.add.reduce(a, axis=0)
    return np.add.accumulate(a, axis=0)[-1]


def _stcal_sums_slopes(y, w, x, T):
    """stcal's slopes from segment values ``y`` (n, S) (float32 or float64), weights ``w``
    float64 (n, S) C-contiguous (``powf(...) * invrn2``; overwritten) and x values ``x`` float64
    (n, S) or (n, 1): weighted sums in group order (:func:`_column_sums`), then
    ``(sumw sumxy - sumx sumy) / (sumw sumxx - sumx^2) / T`` -> float64 (S,) [DN/s]."""
    xwt = x * w
    sumw = _column_sums(w)
    sumx = _column_sums(xwt)
    sumxx = _column_sums(x * xwt)
    sumy = _column_sums(np.multiply(y, w, out=w))
    sumxy = _column_sums(np.multiply(y, xwt, out=xwt))
    num = sumw * sumxy - sumx * sumy
    den = sumw * sumxx - sumx * sumx
    return num * (1.0 / den) / T


def _stcal_slopes(Y, start, n, pidx, invrn2, T, ngroups):
    """Segment slopes [DN/s] with stcal's arithmetic (weighted sums in group order, then
    ``(sumw sumxy - sumx sumy) / (sumw sumxx - sumx^2) / T``), so that they are bit-identical.

    Y : float64 (S, maxn) segment values, NaN and positions beyond ``n`` set to 0 (a transposed
    view of a C-contiguous (maxn, S) array is used without a copy); start, n, pidx : int (S,)
    first group, length (>= 3), weight-exponent row; invrn2 : float64 (S,) ``1 / rn^2``. Padded
    positions have weight 0 and add exact zeros.
    """
    S, maxn = Y.shape
    W = _padded_weights(ngroups)
    w = np.multiply(W[n, pidx, :maxn].T, invrn2, out=np.empty((maxn, S)))
    x = start.astype(np.float64) + np.arange(maxn, dtype=np.float64)[:, None]
    return _stcal_sums_slopes(np.ascontiguousarray(Y.T), w, x, T)


def _stcal_slopes_rows(y32, start, p, invrn2, T):
    """:func:`_stcal_slopes` of segments that share their groups and weight row: ``y32``
    float32 (n, S) [DN] (group ``start + k`` in row k, no NaN), weight row ``p``, ``invrn2``
    float64 (S,) ``1 / rn^2`` -> slopes float64 (S,) [DN/s], bit-identical to stcal's.
    """
    n = y32.shape[0]
    w = _padded_weights(n)[n, p][:, None] * invrn2            # stcal: powf(...) * invrn2
    x = start + np.arange(n, dtype=np.float64)[:, None]
    return _stcal_sums_slopes(y32, w, x, T)


def _power_index(snr):
    """Row of :func:`weight_table` for each SNR (NaN counts as the highest, as in stcal)."""
    return np.searchsorted(SNR_LIMITS, snr, side="right")


def _snr(delta, rn, g):
    """stcal ``segment_snr`` from the segment's last-minus-first value (float64 arrays)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        den = rn * rn + delta * g
        s = delta * g / np.sqrt(den)
    s = np.where(s < 0.0, 0.0, s)
    return np.where((den <= 0.0) | (g == 0.0), 0.0, s)


def _var_poisson(mr, dc, pden):
    return np.where(mr > 0.0, mr + dc, dc) / pden


def _var_rnoise(rn, t, n, g):
    """Segment read-noise variance 12 (rn/t)^2 / ((n^3 - n) g^2) (n = 2 for 1- and 2-group segments)."""
    rnum = rn / t
    rnum = 12.0 * rnum * rnum
    rden = (n * n * n - n) * g * g
    return rnum / rden


def _median_rate(y, gdq, T, one_group_time, is0th, suppress, is_zf=None, tf=None):
    """The pixel's median rate mr (P,), as stcal ``compute_median_rate``.

    y : float64 (nints, ngroups, P), SATURATED groups NaN; gdq uint8 same shape.
    """
    nints, ngroups, npix = y.shape
    if ngroups == 1:
        acc = np.zeros(npix)
        for i in range(nints):
            acc += y[i, 0] / one_group_time
        return acc / float(nints)
    rates = y / T
    rates[(gdq & _U8_DNU) != 0] = np.nan
    diffs = rates[:, 1:] - rates[:, :-1]
    diffs[(gdq[:, 1:] & np.uint8(_JUMP)) != 0] = np.nan
    nvalid = (ngroups - 1) - np.count_nonzero(np.isnan(diffs), axis=1)
    first = rates[:, 0]
    only_first = (nvalid == 0) & ~np.isnan(first)
    med = np.stack([median_sorted(sort_columns(diffs[i]), nvalid[i]) for i in range(nints)])
    med = np.where(only_first, first, med)
    if not suppress:
        med = np.where(is0th, y[:, 0] / one_group_time, med)
        if is_zf is not None:
            med = np.where(is_zf, y[:, 0] / tf, med)
    med = np.where(np.isnan(med), 0.0, med)
    acc = np.zeros(npix)
    for i in range(nints):
        acc += med[i]
    return acc / float(nints)


def _median_rate_clean(y32, T, ranges, extremes):
    """Per-integration medians of :func:`_median_rate` for pixels whose only GROUPDQ flags are the
    block's common DO_NOT_USE groups (:func:`_common_ranges`) and with finite data (the common
    case), same arithmetic: y32 float32 (nints, ngroups, P) [DN], ``ranges`` (lo, hi) per
    integration with hi - lo >= 2, ``extremes`` (:func:`_extremes`) -> float64 (nints, P) [DN/s],
    NaN as 0. The DO_NOT_USE groups give NaN rates, hence NaN differences, so the median is that
    of the differences inside [lo, hi) (:func:`detcal.steps.median.median_of_differences`)."""
    nints, ngroups, npix = y32.shape
    meds = np.empty((nints, npix))
    for i, (lo, hi) in enumerate(ranges):
        big = np.fmax(np.abs(extremes[0][i]), np.abs(extremes[1][i])).astype(np.float64)
        med = median_of_differences(y32[i, lo:hi], T, big, work=f"ramp_fit.median.{hi - lo - 1}")
        meds[i] = np.where(np.isnan(med), 0.0, med)
    return meds


def _common_ranges(gdq):
    """The groups [lo, hi) of each integration left when the leading and trailing groups that are
    DO_NOT_USE in most pixels of the block are set aside (lastframe, rscd, the branch without
    dark's skip groups, the group selectors flag whole groups so; rscd flags fewer groups in
    pixels that saturate early): a list of (lo, hi), one per integration.

    gdq : uint8 (nints, ngroups, P). A pixel whose only flags are DO_NOT_USE outside [lo, hi) has,
    for stcal, one segment [lo, hi) (a DO_NOT_USE group ends a run and is not JUMP_DET, so it
    starts none) whose median rate uses the differences inside it. When an integration would keep
    fewer than 3 groups, no group is set aside anywhere (ranges (0, ngroups)): the general path
    takes such ramps. The majority is taken over every 16th pixel: any choice gives the same
    products (ramps that differ go through the general path), it only decides which is faster.
    """
    nints, ngroups, npix = gdq.shape
    sample = gdq[:, :, ::16]
    common = 2 * np.count_nonzero(sample & _U8_DNU, axis=2) > sample.shape[2]   # (nints, ngroups)
    ranges = []
    for i in range(nints):
        lo, hi = 0, ngroups
        while lo < ngroups and common[i, lo]:
            lo += 1
        while hi > lo and common[i, hi - 1]:
            hi -= 1
        ranges.append((lo, hi))
    if any(hi - lo < 3 for lo, hi in ranges):
        return [(0, ngroups)] * nints
    return ranges


def _extremes(y32, ranges):
    """Smallest and largest value (float32 (nints, P) each) of every ramp over the groups
    [lo, hi) of its integration (``ranges``); NaN where a value is NaN."""
    nints, _, npix = y32.shape
    ymin = np.empty((nints, npix), np.float32)
    ymax = np.empty((nints, npix), np.float32)
    for i, (lo, hi) in enumerate(ranges):
        np.minimum.reduce(y32[i, lo:hi], axis=0, out=ymin[i])
        np.maximum.reduce(y32[i, lo:hi], axis=0, out=ymax[i])
    return ymin, ymax


def _segments(gdq):
    """Usable segments of each integration ramp of some pixels.

    gdq : uint8 (nints, M, ngroups). Returns int arrays (integ, pixel, start, length), ordered
    by integration, pixel and start, after stcal's length-1 pruning. Integrations whose group 0
    is SATURATED have no segment.
    """
    nints, npix, ngroups = gdq.shape
    core = gdq & _U8_NOT_PERS
    good = core == 0
    prev = np.zeros_like(good)
    prev[..., 1:] = good[..., :-1]
    nxt = np.zeros_like(good)
    nxt[..., :-1] = good[..., 1:]
    si, sm, sk = np.nonzero(good & ~prev)
    ek = np.nonzero(good & ~nxt)[2]
    back = sk > 0
    jump_start = np.zeros(sk.shape, bool)
    jump_start[back] = core[si[back], sm[back], sk[back] - 1] == _JUMP
    start = sk - jump_start
    length = ek + 1 - start
    keep = (gdq[si, sm, 0] & _SAT) == 0
    si, sm, start, length = si[keep], sm[keep], start[keep], length[keep]
    grp = si * npix + sm
    maxlen = np.zeros(nints * npix, np.int64)
    np.maximum.at(maxlen, grp, length)
    first = np.ones(grp.shape, bool)
    first[1:] = grp[1:] != grp[:-1]
    keep = (length >= 2) | ((maxlen[grp] == 1) & first)
    return si[keep], sm[keep], start[keep], length[keep]


def _substitute_zeroframe(y32, gdq, zf, suppress):
    """stcal ``get_pixel_ramp``: in an integration without any good group, a non-zero finite
    ZEROFRAME replaces group 0 (flags cleared). Returns (y32, gdq, is_zf (nints, P) bool or None);
    copies only when a value is replaced."""
    if zf is None or suppress:
        return y32, gdq, None
    is_zf = (np.count_nonzero(gdq == 0, axis=1) == 0) & (zf != 0) & np.isfinite(zf)
    if is_zf.any():
        y32, gdq = y32.copy(), gdq.copy()
        y32[:, 0] = np.where(is_zf, zf, y32[:, 0])
        gdq[:, 0] = np.where(is_zf, np.uint8(0), gdq[:, 0])
    return y32, gdq, is_zf


@dataclasses.dataclass
class _GroupCounts:
    """Per-integration facts of a block's ramps (nints, P), filled for the flagged ramps only.

    fi, fp: integration and pixel of the flagged ramps (a GROUPDQ value other than the block's
    common DO_NOT_USE pattern of :func:`_common_ranges`, non-finite data, or every ramp below 3
    groups), by integration then pixel; mixed (P,): pixels with flagged and unflagged ramps;
    y_fl, gdq_fl: the flagged ramps as integrations of one-integration pixels, (1, ngroups, K),
    float64 with SATURATED groups NaN, and uint8.
    """

    fi: np.ndarray
    fp: np.ndarray
    mixed: np.ndarray
    y_fl: np.ndarray
    gdq_fl: np.ndarray
    cnt_sat: np.ndarray
    cnt_dnu_sat: np.ndarray
    is0th: np.ndarray
    any_jump: np.ndarray
    any_pers: np.ndarray
    sat0: np.ndarray


def _group_counts(y32, gdq, orig_gdq, is_zf, ranges, extremes, prepare=None):
    """:class:`_GroupCounts` of a block. Ramps whose GROUPDQ is the block's common pattern
    (:func:`_common_ranges`: DO_NOT_USE outside the integration's groups ``ranges`` [lo, hi), 0
    inside) and with finite data inside [lo, hi) (``extremes``: :func:`_extremes`; the common
    case) need no per-group bookkeeping: one segment, no saturated, jump or persistence group, some
    usable group (the DO_NOT_USE groups' values are not used). Every integration of a pixel is
    fitted on its own (stcal combines them afterwards), so only the flagged integrations of a
    pixel are flagged."""
    nints, ngroups, npix = y32.shape
    flagged = np.empty((nints, npix), bool)
    for i, (lo, hi) in enumerate(ranges):
        np.not_equal(np.bitwise_or.reduce(gdq[i, lo:hi], axis=0), 0, out=flagged[i])
        for k in (*range(lo), *range(hi, ngroups)):
            flagged[i] |= gdq[i, k] != _U8_DNU
    flagged |= ~np.isfinite(extremes[0])             # min and max are NaN or inf if a value is
    flagged |= ~np.isfinite(extremes[1])
    if ngroups < 3:
        flagged[:] = True
    fi, fp = np.nonzero(flagged)
    nfl = np.count_nonzero(flagged, axis=0)
    c = _GroupCounts(fi, fp, (nfl > 0) & (nfl < nints), None, None,
                     *(np.zeros((nints, npix), t) for t in (np.intp, np.intp, bool, bool, bool, bool)))
    if fi.size:
        c.gdq_fl = gdq[fi, :, fp].T[None]                 # (1, ngroups, K)
        orig_fl = orig_gdq[fi, :, fp]                      # (K, ngroups)
        if prepare is not None:                            # (no ZEROFRAME: orig is gdq)
            c.gdq_fl = prepare(c.gdq_fl)
            orig_fl = c.gdq_fl[0].T
        sat = (c.gdq_fl[0] & np.uint8(_SAT)) != 0         # (ngroups, K)
        c.y_fl = y32[fi, :, fp].T[None].astype(np.float64)
        c.y_fl[0][sat] = np.nan
        c.cnt_sat[fi, fp] = np.count_nonzero(sat, axis=0)
        c.cnt_dnu_sat[fi, fp] = np.count_nonzero((c.gdq_fl[0] & np.uint8(_DNU | _SAT)) != 0, axis=0)
        good0 = c.gdq_fl[0] == 0
        c.is0th[fi, fp] = (np.count_nonzero(good0, axis=0) == 1) & good0[0]
        c.any_jump[fi, fp] = np.any((orig_fl & np.uint8(_JUMP)) != 0, axis=1)  # before ZEROFRAME
        c.any_pers[fi, fp] = np.any((orig_fl & np.uint8(_PERS)) != 0, axis=1)
        c.sat0[fi, fp] = sat[0]
    if is_zf is not None:
        c.is0th &= ~is_zf
    return c


def _block_dq(pdq, c, ngroups):
    """(rateints DQ (nints, P), rate DQ (P,)) uint32 from the pixel DQ and the group counts,
    before the saturation and DO_NOT_USE summaries of :func:`_products`."""
    nints = c.any_jump.shape[0]
    dq_i = np.broadcast_to(pdq, (nints, pdq.size)).copy()
    dq_i[c.any_jump] |= np.uint32(_JUMP)
    dq_i[c.any_pers] |= np.uint32(_PERS)
    dq_r = pdq.copy()
    dq_r[c.any_jump.any(axis=0)] |= np.uint32(_JUMP)
    dq_r[c.any_pers.any(axis=0)] |= np.uint32(_PERS)
    dq_i[c.sat0] |= np.uint32(_DNU | _SAT)
    none_usable = c.cnt_dnu_sat == ngroups
    dq_i[none_usable] |= np.uint32(_DNU)
    dq_i[none_usable & (c.cnt_sat == ngroups)] |= np.uint32(_SAT)
    return dq_i, dq_r


def _block_median_rate(y32, c, T, one_group_time, suppress, is_zf, tf, ranges, extremes):
    """The median rate mr (P,) of every pixel of a block: the mean over integrations of the
    per-integration medians, closed form for the unflagged ramps, :func:`_median_rate` (one
    integration at a time) for the flagged ones."""
    nints, _, npix = y32.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        if c.fi.size == nints * npix:
            meds = np.empty((nints, npix))
        else:
            meds = _median_rate_clean(y32, T, ranges, extremes)   # the flagged ones are redone
        if c.fi.size:
            meds[c.fi, c.fp] = _median_rate(c.y_fl, c.gdq_fl, T, one_group_time,
                                            c.is0th[c.fi, c.fp][None], suppress,
                                            None if is_zf is None else is_zf[c.fi, c.fp][None], tf)
    acc = np.zeros(npix)
    for i in range(nints):                                # stcal's order
        acc += meds[i]
    return acc / float(nints)


def _closed_form_sums(y32, mr, g, rn, dc, bad_gain, T, ranges, sums, flagged=None, mixed=None,
                      extremes=None):
    """Integration sums (sum_r, sum_p, sum_e, sum_num; (nints, P) float64, filled in place) of
    one segment [lo, hi) per integration (``ranges``, hi - lo >= 3; :func:`_common_ranges`), for
    every pixel (the caller redoes the flagged).

    Closed-form weighted slopes (coefficients per weight exponent, the most common exponent of
    the integration with scalar coefficients); they differ from stcal's weighted sums by rounding
    only. Where that rounding could change a float32 output (the float64 value lies within an
    error bound of a float32 rounding boundary) and for the few ramps of other exponents, the
    slope is redone with stcal's arithmetic. ``flagged`` (nints, P): ramps the caller redoes (not
    redone here); ``mixed`` (P,): pixels whose other integrations the caller fits, so the
    exposure rate is not the mean of these slopes: all of their slopes are redone.
    """
    sum_r, sum_p, sum_e, sum_num = sums
    nints, _, npix = y32.shape
    slope = np.empty((nints, npix))
    margin = np.empty((nints, npix))
    delta = np.empty((nints, npix))
    for i, (lo, hi) in enumerate(ranges):
        np.subtract(y32[i, hi - 1], y32[i, lo], out=delta[i], dtype=np.float64)
    pidx = _power_index(_snr(delta, rn, g))
    p0 = []
    for i, (lo, hi) in enumerate(ranges):
        n = hi - lo
        yi = y32[i, lo:hi]
        p0.append(int(np.bincount(pidx[i], minlength=len(POWERS)).argmax()))
        # float64 sums of float32 data in any order (einsum's own loops: no BLAS threads)
        np.einsum("k,kp->p", weight_table(n)[p0[i]], yi, dtype=np.float64, out=slope[i])
        slope[i] /= T
        margin[i] = _rounding_margin(slope[i], yi, n, lo, p0[i], T,
                                     None if extremes is None else (extremes[0][i], extremes[1][i]))
    ns = [hi - lo for lo, hi in ranges]
    redo = pidx != np.array(p0)[:, None]
    redo |= _near_float32_boundary(slope, margin, ns)
    if mixed is not None:
        redo |= mixed
    if flagged is not None:
        redo &= ~flagged
    for i, (lo, hi) in enumerate(ranges):
        n = hi - lo
        for p in np.unique(pidx[i, redo[i]]):
            op = np.flatnonzero(redo[i] & (pidx[i] == p))
            slope[i, op] = _stcal_slopes_rows(y32[i, lo:hi][:, op], lo, p, 1.0 / (rn[op] * rn[op]), T)
    n = np.array(ns, np.float64)[:, None]                 # every integration at once
    var_p = _var_poisson(mr, dc, T * g * (n - 1.0))
    var_r = _var_rnoise(rn, T, n, g)
    var_r = np.where(bad_gain, 0.0, var_r)
    np.divide(1.0, var_r, out=sum_r)
    np.divide(1.0, var_p, out=sum_p, where=var_p > 0.0)
    sum_p[~(var_p > 0.0)] = 0.0
    np.divide(1.0, var_p + var_r, out=sum_e)
    np.divide(slope, var_r, out=sum_num)


def _products(sums, dq_i, dq_r, cnt_sat):
    """rate and rateints dicts (float32 SCI, ERR, VAR_POISSON, VAR_RNOISE; uint32 DQ) from the
    integration sums (stcal JP-4318 combination; exposure sums in integration order)."""
    sum_r, sum_p, sum_e, sum_num = sums
    nints, npix = sum_r.shape
    # Integration level.
    vp_i = np.where(sum_p > 0.0, 1.0 / sum_p, 0.0)
    vp_i[vp_i >= LARGE_VARIANCE] = 0.0
    vr_i = 1.0 / sum_r
    vr_i[vr_i >= LARGE_VARIANCE] = 0.0
    ve_i = 1.0 / sum_e
    slope_i = sum_num * vr_i
    err_i = np.where(ve_i > LARGE_VARIANCE, 0.0, np.sqrt(ve_i))
    invalid_i = (dq_i & _INVALID) != 0
    slope_i[invalid_i] = np.nan
    vp_i[invalid_i] = vr_i[invalid_i] = err_i[invalid_i] = 0.0
    dnu_cnt = np.count_nonzero((dq_i & np.uint32(_DNU)) != 0, axis=0)
    sat_cnt = np.count_nonzero((dq_i & np.uint32(_SAT)) != 0, axis=0)
    partial_sat = cnt_sat > 0
    dq_i[partial_sat] |= np.uint32(_SAT)

    # Exposure level: sums over integrations, in integration order.
    acc_p = np.zeros(npix)
    acc_r = np.zeros(npix)
    acc_num = np.zeros(npix)
    for i in range(nints):
        acc_p += np.where(sum_p[i] > 0.0, sum_p[i], 0.0)
        acc_r += sum_r[i]
        acc_num += sum_num[i]
    dq_r[dnu_cnt == nints] |= np.uint32(_DNU)
    dq_r[sat_cnt == nints] |= np.uint32(_SAT)
    vp = np.where(acc_p > 0.0, 1.0 / acc_p, acc_p)
    vp[(vp >= LARGE_VARIANCE) | (vp < 0.0)] = 0.0
    vr = np.where(acc_r > 0.0, 1.0 / acc_r, acc_r)
    vr[vr >= LARGE_VARIANCE] = 0.0
    err = np.sqrt(vp + vr)
    invalid = (dq_r & _INVALID) != 0
    slope = acc_num * vr
    slope[invalid] = np.nan
    vp[invalid] = vr[invalid] = err[invalid] = 0.0
    dq_r[partial_sat.any(axis=0)] |= np.uint32(_SAT)

    f32 = np.float32
    rate = {"sci": slope.astype(f32), "err": err.astype(f32), "dq": dq_r,
            "var_poisson": vp.astype(f32), "var_rnoise": vr.astype(f32)}
    rateints = {"sci": slope_i.astype(f32), "err": err_i.astype(f32), "dq": dq_i,
                "var_poisson": vp_i.astype(f32), "var_rnoise": vr_i.astype(f32)}
    return rate, rateints


def _fit_block(y32, gdq, pdq, g, rn, dc, T, one_group_time, suppress, zf=None, tf=None,
               prepare=None):
    """Fit the ramps of one block of pixels.

    y32 : float32 (nints, ngroups, P) [DN]; gdq : uint8 same shape (after suppression, or before
    it when ``prepare`` is given); pdq : uint32 (P,); g, rn, dc : float64 (P,) (gain, read noise
    per group in e-, dark current); zf : float32 (nints, P) ZEROFRAME [DN] or None (used only when
    not ``suppress``, and not with ``prepare``), tf TFRAME [s]; prepare : None or a function
    applying the one-good-group suppression (and the first kept MIRI group's JUMP clearing) to
    GROUPDQ of flagged ramps (:func:`_prepare_flagged`): a ramp that suppression or that clearing
    would change is not one of the block's common pattern, so the block's GROUPDQ needs no copy.
    Returns (rate dict of (P,) arrays, rateints dict of (nints, P) arrays).
    """
    nints, ngroups, npix = y32.shape
    orig_gdq = gdq
    y32, gdq, is_zf = _substitute_zeroframe(y32, gdq, zf, suppress)
    bad_gain = ~(g > 0.0)
    pdq = pdq | np.where(bad_gain, np.uint32(_DNU | dqflags.NO_GAIN_VALUE), np.uint32(0))
    ranges = _common_ranges(gdq)
    extremes = _extremes(y32, ranges)
    c = _group_counts(y32, gdq, orig_gdq, is_zf, ranges, extremes, prepare)
    dq_i, dq_r = _block_dq(pdq, c, ngroups)
    mr = _block_median_rate(y32, c, T, one_group_time, suppress, is_zf, tf, ranges, extremes)

    sums = tuple(np.zeros((nints, npix)) for _ in range(4))     # sum_r, sum_p, sum_e, sum_num
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if ngroups >= 3 and c.fi.size < nints * npix:
            flagged = np.zeros((nints, npix), bool)
            flagged[c.fi, c.fp] = True
            _closed_form_sums(y32, mr, g, rn, dc, bad_gain, T, ranges, sums, flagged, c.mixed,
                              extremes)
        if c.fi.size:
            for s in sums:
                s[c.fi, c.fp] = 0.0
            # the flagged ramps as pixels of one integration, added at (0, fi * P + fp)
            fp = c.fp
            _general(c.y_fl, c.gdq_fl, c.is0th[c.fi, fp][None], mr[fp], g[fp], rn[fp], dc[fp],
                     bad_gain[fp], T, one_group_time, suppress, c.fi * npix + fp,
                     *(s.reshape(1, nints * npix) for s in sums),
                     None if is_zf is None else is_zf[c.fi, fp][None], tf)
        return _products(sums, dq_i, dq_r, c.cnt_sat)


def _general(y, gdq, is0th, mr, g, rn, dc, bad_gain, T, one_group_time, suppress, cols,
             sum_r, sum_p, sum_e, sum_num, is_zf=None, tf=None):
    """Segment-by-segment fit of flagged pixels; adds to the (nints, P) sums at ``cols``."""
    nints, ngroups, m = y.shape
    yt = np.ascontiguousarray(y.transpose(0, 2, 1))       # (nints, M, ngroups)
    si, sm, start, length = _segments(np.ascontiguousarray(gdq.transpose(0, 2, 1)))
    if si.size == 0:
        return
    nseg = si.size
    slope = np.empty(nseg)
    var_p = np.empty(nseg)
    var_r = np.empty(nseg)
    gs, rns, dcs, mrs = g[sm], rn[sm], dc[sm], mr[sm]
    y0 = yt[si, sm, start]

    one = length == 1
    if one.any():
        t1 = np.full(one.sum(), T)
        if not suppress:
            t1 = np.where(is0th[si[one], sm[one]], one_group_time, T)
            if is_zf is not None:
                t1 = np.where(is_zf[si[one], sm[one]], tf, t1)     # ZEROFRAME: one frame
        slope[one] = y0[one] / t1
        var_p[one] = _var_poisson(mrs[one], dcs[one], t1 * gs[one])
        var_r[one] = _var_rnoise(rns[one], t1, 2.0, gs[one])
    two = length == 2
    if two.any():
        slope[two] = (yt[si[two], sm[two], start[two] + 1] - y0[two]) / T
        var_p[two] = _var_poisson(mrs[two], dcs[two], T * gs[two])
        var_r[two] = _var_rnoise(rns[two], T, 2.0, gs[two])
    sel = np.flatnonzero(length >= 3)
    if sel.size:
        # All lengths at once: segments padded with zeros to the longest, coefficients from a
        # zero-padded table of every length.
        ii, mm, ss, nn = si[sel], sm[sel], start[sel], length[sel]
        maxn = int(nn.max())
        k = np.arange(maxn)[:, None]
        pos = ss + k                                       # (maxn, S): group order in rows
        inside = k < nn
        seg = yt[ii, mm, np.where(inside, pos, 0)]
        last = yt[ii, mm, ss + nn - 1]
        pidx = _power_index(_snr(last - seg[0], rns[sel], gs[sel]))
        seg = np.where(inside & ~np.isnan(seg), seg, 0.0)
        rsel = rns[sel]
        slope[sel] = _stcal_slopes(seg.T, ss, nn, pidx, 1.0 / (rsel * rsel), T, ngroups)
        n = nn.astype(np.float64)
        var_p[sel] = _var_poisson(mrs[sel], dcs[sel], T * gs[sel] * (n - 1.0))
        vr = _var_rnoise(rns[sel], T, n, gs[sel])
        var_r[sel] = np.where(bad_gain[mm], 0.0, vr)

    where = (si, cols[sm])
    np.add.at(sum_r, where, 1.0 / var_r)
    pos = var_p > 0.0
    np.add.at(sum_p, (si[pos], cols[sm[pos]]), 1.0 / var_p[pos])
    np.add.at(sum_e, where, 1.0 / (var_p + var_r))
    np.add.at(sum_num, where, slope / var_r)


def _prepare_gdq(gdq, suppress, firstgroup, lastgroup):
    """Copy of a GROUPDQ block with the first/last-group and one-good-group DO_NOT_USE applied."""
    gdq = gdq.copy()
    ngroups = gdq.shape[1]
    if firstgroup is not None and firstgroup > 0:
        gdq[:, :firstgroup] |= _U8_DNU
    if lastgroup is not None and lastgroup < ngroups - 1:
        gdq[:, lastgroup + 1:] |= _U8_DNU
    if suppress:
        one = np.count_nonzero((gdq & _U8_NOT_PERS) == 0, axis=1) == 1   # (nints, ...)
        gdq |= np.where(one, _U8_DNU, np.uint8(0))[:, None]
    return gdq


def _prepare_flagged(gdq, suppress, clear_jump0):
    """:func:`_prepare_gdq`'s suppression, then the first kept MIRI group's JUMP_DET clearing,
    for flagged ramps gathered as ``gdq`` uint8 (1, ngroups, K) (modified in place and returned).
    The groups set aside before are DO_NOT_USE in every ramp, so they change no good-group count."""
    if suppress:
        one = np.count_nonzero((gdq & _U8_NOT_PERS) == 0, axis=1) == 1
        gdq |= np.where(one, _U8_DNU, np.uint8(0))[:, None]
    if clear_jump0:
        gdq[:, 0] &= np.uint8(0xFF & ~_JUMP)
    return gdq


def _group_selectors(firstgroup, lastgroup, ngroups):
    """jwst ``set_groupdq`` rules: returns the (firstgroup, lastgroup) actually applied."""
    if firstgroup is None and lastgroup is None:
        return None, None
    first = 0 if firstgroup is None else max(0, int(firstgroup))
    last = ngroups - 1 if lastgroup is None else int(lastgroup)
    if first >= last:
        log.warning("ramp_fit: firstgroup %s >= lastgroup %s, group selectors ignored", first, last)
        return None, None
    return first, last


def fit_ramps(data, groupdq, pixeldq, gain, readnoise, tframe, tgroup, nframes, groupgap,
              average_dark_current=None, suppress_one_group=True, *, firstgroup=None,
              lastgroup=None, miri=False, memory_mb=16, zeroframe=None, threads=1, group_range=None):
    """Fit slopes to every ramp with stcal's OLS_C optimal weighting.

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)      [DN]
    groupdq : ndarray, uint8, same shape
    pixeldq : ndarray, uint32, shape (ny, nx)
    gain : ndarray, float32, shape (ny, nx)                      [e-/DN]
    readnoise : ndarray, float32, shape (ny, nx)                 [DN]   CDS read noise
    tframe, tgroup : float                                       [s]    TFRAME, TGROUP
    nframes, groupgap : int                                             NFRAMES, GROUPGAP
    average_dark_current : ndarray, float32, shape (ny, nx), or None   (None: 0)
                                added to the median rate in the Poisson variance, as stcal does
                                (jwst documents it in e-/s)
    suppress_one_group : bool   ramps with one good group count as having none
                                (ignored when ngroups == 1, as in jwst)
    firstgroup, lastgroup : int or None   groups outside [first, last] (0-based) are DO_NOT_USE
    miri : bool                 drop leading/trailing groups that are DO_NOT_USE in every pixel
    memory_mb : float           working-memory budget per thread for the row blocks [MB]
    threads : int               row blocks fitted at once (the result does not depend on it)
    zeroframe : ndarray, float32, shape (nints, ny, nx), or None   [DN] ZEROFRAME (used as stcal
                                does, for integrations saturated in group 0, only when
                                ``suppress_one_group`` is off; 0 = no value)
    group_range : (lo, hi) or None   MIRI's groups kept (:func:`_miri_group_range`) when the
                                arrays are a block of rows of a larger frame (it is decided from
                                the whole frame: :func:`fit_rows`); None: from these arrays

    Inputs are not modified.

    Returns
    -------
    rate : dict   'sci' float32 (ny, nx) [DN/s], 'err' float32 [DN/s], 'dq' uint32,
                  'var_poisson', 'var_rnoise' float32 [(DN/s)^2]
    rateints : dict   the same keys, arrays of shape (nints, ny, nx)
    """
    data, gain, readnoise = check_ramp_inputs(data, groupdq, gain, readnoise)
    nints, ngroups, ny, nx = data.shape
    if average_dark_current is None:
        average_dark_current = np.broadcast_to(np.float32(0.0), (ny, nx))   # no frame of zeros
    dark = np.asarray(average_dark_current, dtype=np.float32)
    check_frame_shapes(ny, nx, (("pixeldq", pixeldq), ("gain", gain), ("readnoise", readnoise),
                                ("average_dark_current", dark)))
    if nframes < 1 or tgroup <= 0:
        raise ValueError(f"need nframes >= 1 and tgroup > 0 (got {nframes}, {tgroup})")
    groupdq = np.asarray(groupdq, dtype=np.uint8)
    pixeldq = np.asarray(pixeldq, dtype=np.uint32)
    if zeroframe is not None and np.shape(zeroframe) != (nints, ny, nx):
        raise ValueError(f"zeroframe shape {np.shape(zeroframe)} is not (nints, ny, nx) = "
                         f"{(nints, ny, nx)}")

    # stcal passes the times through C floats.
    T = float(np.float32(tgroup))
    tf = float(np.float32(tframe))
    one_group_time = (float(nframes) + 1.0) * tf / 2.0
    suppress = bool(suppress_one_group) and ngroups > 1
    first, last = _group_selectors(firstgroup, lastgroup, ngroups)
    rn_scale = np.sqrt(2.0 * nframes)

    per_value = _BYTES_PER_PIXEL_GROUP_KEYED if ngroups > NETWORK_MAX + 1 else _BYTES_PER_PIXEL_GROUP
    blocks = row_blocks(ny, rows_per_block(nints, ngroups, nx, memory_mb, per_value))

    g_lo, g_hi = 0, ngroups
    if miri and ngroups > 1:
        g_lo, g_hi = (_miri_group_range(groupdq, blocks, suppress, first, last) if group_range is None
                      else group_range)
        if g_hi - g_lo < 2:
            log.warning("ramp_fit: MIRI ramp has fewer than 2 usable groups; all slopes are NaN")
            return _unusable(pixeldq, gain, nints)

    rate = {k: np.empty((ny, nx), np.uint32 if k == "dq" else np.float32) for k in PRODUCT_NAMES}
    rateints = {k: np.empty((nints,) + v.shape, v.dtype) for k, v in rate.items()}

    prepare = None
    if zeroframe is None and (suppress or g_lo > 0):
        prepare = functools.partial(_prepare_flagged, suppress=suppress, clear_jump0=g_lo > 0)

    def fit(block):
        r0, r1 = block
        if zeroframe is None and first is None:            # no copy: see _fit_block's prepare
            gdq = groupdq[:, g_lo:g_hi, r0:r1]
        else:
            gdq = _prepare_gdq(groupdq[:, :, r0:r1], prepare is None and suppress, first,
                               last)[:, g_lo:g_hi]
            if g_lo > 0 and prepare is None:
                gdq[:, 0] &= np.uint8(0xFF & ~_JUMP)
        npix = (r1 - r0) * nx
        gdq = gdq.reshape(nints, g_hi - g_lo, npix)
        y32 = np.asarray(data[:, g_lo:g_hi, r0:r1, :], np.float32).reshape(nints, g_hi - g_lo, npix)
        g = gain[r0:r1].ravel().astype(np.float64)
        rn = (readnoise[r0:r1].astype(np.float64) * (gain[r0:r1].astype(np.float64) / rn_scale))
        rn = rn.astype(np.float32).ravel().astype(np.float64)
        dc = dark[r0:r1].ravel().astype(np.float64)
        zf = None
        if zeroframe is not None:
            zf = np.asarray(zeroframe[:, r0:r1], np.float32).reshape(nints, npix)
        r, ri = _fit_block(y32, gdq, pixeldq[r0:r1].ravel(), g, rn, dc, T, one_group_time,
                           suppress, zf, tf, prepare)
        for k in rate:
            rate[k][r0:r1] = r[k].reshape(r1 - r0, nx)
            rateints[k][:, r0:r1] = ri[k].reshape(nints, r1 - r0, nx)

    map_blocks(fit, blocks, threads)
    release_scratch()
    return rate, rateints


def _miri_group_range(groupdq, blocks, suppress, first, last):
    """Groups [lo, hi) kept for MIRI: leading groups and one trailing group that are DO_NOT_USE in
    every pixel of every integration are dropped (stcal ``discard_miri_groups``).

    ``groupdq``: uint8 (nints, ngroups, ny, nx), or a function ``(r0, r1) -> groupdq[:, :, r0:r1]``
    (a file read by rows); ``blocks``: [(r0, r1), ...] covering the rows. It is decided from the
    whole frame, so a fit by blocks of rows computes it first and passes it to every block.

    DO_NOT_USE after :func:`_prepare_gdq`. A group that is not DO_NOT_USE in the input everywhere
    (nor set aside by the group selectors) is not so after it either as soon as one ramp without
    DO_NOT_USE there keeps two good groups (suppression spares it): such a witness among the first
    such ramps of a block decides (which ramps are looked at does not change the answer);
    otherwise every block is prepared."""
    read = groupdq if callable(groupdq) else (lambda r0, r1: groupdq[:, :, r0:r1])
    raw = None
    for r0, r1 in blocks:
        g = read(r0, r1)
        nints, ngroups = g.shape[:2]
        g = g.reshape(nints, ngroups, -1)
        found = np.bitwise_and.reduce(np.bitwise_and.reduce(g, axis=2), axis=0)
        raw = found if raw is None else raw & found
    sure = np.zeros(ngroups, bool)        # DO_NOT_USE in every ramp, before suppression
    if first is not None:
        sure[:first] = True
        sure[last + 1:] = True
    sure |= (raw & _U8_DNU) != 0

    def all_dnu(k):
        if sure[k]:
            return True
        if not suppress:
            return False
        for r0, r1 in blocks:
            g = read(r0, r1)
            i, y, x = np.nonzero((g[:, k] & _U8_DNU) == 0)
            if i.size:
                ramps = g[i[:256], :, y[:256], x[:256]] | np.where(sure, _U8_DNU, np.uint8(0))
                if np.any(np.count_nonzero((ramps & _U8_NOT_PERS) == 0, axis=1) >= 2):
                    return False
                break
        every = np.ones(ngroups, bool)
        for r0, r1 in blocks:
            gdq = _prepare_gdq(read(r0, r1), suppress, first, last)
            every &= np.all((gdq & _U8_DNU) != 0, axis=(0, 2, 3))
        return bool(every[k])

    lo = 0
    while lo < ngroups and all_dnu(lo):
        lo += 1
    hi = ngroups
    if lo < ngroups and all_dnu(hi - 1):
        hi -= 1
    return lo, hi


def _unusable(pixeldq, gain, nints):
    """Products for an exposure without usable groups: NaN slopes, zero variances, DO_NOT_USE."""
    dq = pixeldq | np.uint32(_DNU)
    dq[~(gain > 0.0)] |= np.uint32(dqflags.NO_GAIN_VALUE)
    shape = pixeldq.shape
    rate = {"sci": np.full(shape, np.nan, np.float32), "err": np.zeros(shape, np.float32),
            "dq": dq, "var_poisson": np.zeros(shape, np.float32),
            "var_rnoise": np.zeros(shape, np.float32)}
    rateints = {k: np.repeat(v[None], nints, axis=0) for k, v in rate.items()}
    return rate, rateints


def _ramp_dark_current(ramp):
    """The AVDRKCUR image the dark_current step stores on a ramp (``ramp.tables``), or None."""
    for hdu in ramp.tables:
        if hdu.name == "AVDRKCUR" and hdu.data is not None and hdu.data.shape == ramp.data.shape[2:]:
            return np.asarray(hdu.data, np.float32)
    return None


def _fit_parameters(ramp, params):
    """(meta, params) of a fit of ``ramp``, a :class:`detcal.io.Ramp` in memory or a
    :class:`detcal.io.RampReader`: the keywords ramp_fit needs, and ``params`` with ``miri`` (from
    INSTRUME), ``average_dark_current`` (the AVDRKCUR image the dark_current step stored) and
    ``zeroframe`` (only when ZEROFRAM = T: no step corrected it otherwise) filled in where not
    given; a file's arrays as :class:`detcal.io.LazyArray` s."""
    in_memory = hasattr(ramp, "data")
    meta = keywords.require(ramp.header, "ramp_fit", ramp.path)
    params = dict(params)
    params.setdefault("miri", meta["INSTRUME"].upper() == "MIRI")
    if params.get("average_dark_current") is None:
        params["average_dark_current"] = _ramp_dark_current(ramp) if in_memory else (
            ramp.lazy("AVDRKCUR") if ramp.has("AVDRKCUR") else None)
    present = ramp.zeroframe is not None if in_memory else ramp.has("ZEROFRAME")
    if present and params.get("zeroframe") is None:
        if keywords.optional(ramp.header, "ZEROFRAM") is True:
            params["zeroframe"] = ramp.zeroframe if in_memory else ramp.lazy("ZEROFRAME")
        else:
            log.info("ramp_fit: ZEROFRAME extension but ZEROFRAM is not T, so no step corrected "
                     "it: not used")
    return meta, params


def run(ramp, refs, **params):
    """Fit the ramps of a :class:`detcal.io.Ramp`; returns ``(rate, rateints)``, not a Ramp.

    ``refs['gain']``, ``refs['readnoise']``: GAIN and READNOISE References cut to the subarray.
    ``params``: keyword arguments of :func:`fit_ramps` (``suppress_one_group``, ``firstgroup``,
    ``lastgroup``, ``average_dark_current``, ``memory_mb``). Without ``average_dark_current`` the
    AVDRKCUR image that the dark_current step stored on the ramp is used (0 if there is none).
    MIRI ramps (INSTRUME) drop leading/trailing groups that are DO_NOT_USE everywhere. Write the
    two dicts (see :func:`fit_ramps`) with :func:`detcal.io.write_rate`, passing ``ramp.header``
    (and ``tables=ramp.tables`` for the rateints INT_TIMES).
    """
    meta, params = _fit_parameters(ramp, params)
    gain, rnoise = refs["gain"], refs["readnoise"]
    rate, rateints = fit_ramps(ramp.data, ramp.groupdq, ramp.pixeldq, gain.data, rnoise.data,
                               meta["TFRAME"], meta["TGROUP"], meta["NFRAMES"], meta["GROUPGAP"],
                               **params)
    log_slopes(rate["sci"])
    return rate, rateints


def log_slopes(sci):
    """Log how many pixels of a rate SCI (ny, nx) [DN/s] have a slope, and their median."""
    sci = np.asarray(sci)
    good = np.isfinite(sci)
    log.info("ramp_fit: %d of %d pixels have a slope; median %.4g DN/s", int(good.sum()), good.size,
             float(np.median(sci[good])) if good.any() else float("nan"))


#: Bytes of one ramp value a block of rows of :func:`fit_rows` holds (SCI float32 + GROUPDQ uint8).
_READ_BYTES_PER_PIXEL_GROUP = 5
#: A block of rows of :func:`fit_rows` holds up to this many times ``memory_mb`` of ramp values
#: and products, whatever the number of threads (at least one fit_ramps block per thread);
#: fit_ramps' own temporaries come on top (``memory_mb`` per thread).
READ_BLOCK_FACTOR = 4


def fit_rows(read, shape, tframe, tgroup, nframes, groupgap, write, *, suppress_one_group=True,
             firstgroup=None, lastgroup=None, miri=False, memory_mb=16, threads=1):
    """:func:`fit_ramps` on blocks of rows of a ramp that need not be in memory (a file read by
    rows); each block's rate and rateints rows go to ``write`` as soon as they are computed.

    read : function (name, r0, r1) -> rows r0:r1 of 'SCI' float32 (nints, ngroups, r1 - r0, nx)
        [DN], 'GROUPDQ' uint8 (same shape), 'PIXELDQ' uint32 (r1 - r0, nx), 'gain' [e-/DN],
        'readnoise' [DN] float32 (r1 - r0, nx), 'dark' float32 (r1 - r0, nx) or None (average dark
        current), 'ZEROFRAME' float32 (nints, r1 - r0, nx) [DN] or None
    shape : (nints, ngroups, ny, nx)
    write : function ((r0, r1), rate, rateints) with the dicts :func:`fit_ramps` returns for those
        rows; called once per block, in row order
    other parameters : as :func:`fit_ramps` (``memory_mb``, ``threads``: its blocks)

    The values are those of one :func:`fit_ramps` call on the whole frame, bit for bit: its
    slopes are per pixel; what is decided from the whole frame (MIRI's group range
    :func:`_miri_group_range`, from a first pass over GROUPDQ by blocks; the group selectors) is
    decided here once and given to every block. A block holds about ``READ_BLOCK_FACTOR *
    memory_mb`` MB of ramp values and products (at least one of fit_ramps' blocks per thread), in
    whole multiples of fit_ramps' blocks.
    Returns the number of blocks.
    """
    nints, ngroups, ny, nx = (int(n) for n in shape)
    first, last = _group_selectors(firstgroup, lastgroup, ngroups)
    suppress = bool(suppress_one_group) and ngroups > 1
    per_value = _BYTES_PER_PIXEL_GROUP_KEYED if ngroups > NETWORK_MAX + 1 else _BYTES_PER_PIXEL_GROUP
    inner = rows_per_block(nints, ngroups, nx, memory_mb, per_value)
    per_pixel = nints * ngroups * _READ_BYTES_PER_PIXEL_GROUP + (nints + 1) * 20 + nints * 4 + 16
    budget = int(READ_BLOCK_FACTOR * memory_mb * 1e6) // (per_pixel * nx)
    rows = max(inner * max(1, threads), budget // inner * inner)
    blocks = row_blocks(ny, rows)
    group_range = None
    if miri and ngroups > 1:
        group_range = _miri_group_range(lambda r0, r1: read("GROUPDQ", r0, r1), blocks, suppress, first,
                                        last)
        if group_range[1] - group_range[0] < 2:
            log.warning("ramp_fit: MIRI ramp has fewer than 2 usable groups; all slopes are NaN")
    with shared_threads(threads):          # the same worker threads (and work arrays) for every block
        for r0, r1 in blocks:
            if group_range is not None and group_range[1] - group_range[0] < 2:
                write((r0, r1), *_unusable(read("PIXELDQ", r0, r1), read("gain", r0, r1), nints))
                continue
            rate, rateints = fit_ramps(
                read("SCI", r0, r1), read("GROUPDQ", r0, r1), read("PIXELDQ", r0, r1), read("gain", r0, r1),
                read("readnoise", r0, r1), tframe, tgroup, nframes, groupgap,
                average_dark_current=read("dark", r0, r1), suppress_one_group=suppress_one_group,
                firstgroup=first, lastgroup=last, miri=miri, memory_mb=memory_mb,
                zeroframe=read("ZEROFRAME", r0, r1), threads=threads, group_range=group_range)
            write((r0, r1), rate, rateints)
    return len(blocks)


def run_rows(ramp, refs, write, **params):
    """:func:`run` by blocks of rows (:func:`fit_rows`): the same values, handed to ``write``
    ((r0, r1), rate, rateints) as they are computed, so that neither the ramp (a file) nor the
    products (written by rows, :class:`detcal.io.RateWriter`) need be whole in memory.

    ramp : a :class:`detcal.io.Ramp` (in memory: the fused chain) or a
        :class:`detcal.io.RampReader` (a file read by rows: the per-step job; SCI, GROUPDQ,
        PIXELDQ, ZEROFRAME and the AVDRKCUR image rows of each block)
    refs : 'gain', 'readnoise': References cut to the subarray, or
        :class:`detcal.io.ReferenceReader` s cut to it (read by rows)
    params : as :func:`run` (an explicit ``average_dark_current`` or ``zeroframe``: whole arrays)
    """
    in_memory = hasattr(ramp, "data")
    meta, params = _fit_parameters(ramp, params)
    arrays = {"dark": params.pop("average_dark_current"), "ZEROFRAME": params.pop("zeroframe", None)}
    if in_memory:
        arrays.update(SCI=ramp.data, GROUPDQ=ramp.groupdq, PIXELDQ=ramp.pixeldq)
    else:
        arrays.update(SCI=ramp.lazy("SCI"), GROUPDQ=ramp.lazy("GROUPDQ"), PIXELDQ=ramp.lazy("PIXELDQ"))
    for key in ("gain", "readnoise"):
        ref = refs[key]
        arrays[key] = ref.data if hasattr(ref, "data") else ref.lazy("SCI")

    def read(name, r0, r1):
        arr = arrays[name]
        if arr is None:
            return None
        rows = arr[..., r0:r1, :]
        return rows if isinstance(rows, np.ndarray) else np.asarray(rows)

    return fit_rows(read, ramp.shape, meta["TFRAME"], meta["TGROUP"], meta["NFRAMES"], meta["GROUPGAP"],
                    write, **params)
