"""Jump: two-point-difference cosmic-ray detection.

Reproduces ``stcal.jump.jump.detect_jumps_data`` (stcal 1.20, two-point difference only, as the
jwst 3.0 JumpStep calls it with its default parameters) flag for flag:

1. PIXELDQ gets NO_GAIN_VALUE | DO_NOT_USE where the gain is <= 0 or NaN.
2. ``D = data * gain`` (float32, electrons); groups with DO_NOT_USE or SATURATED become NaN;
   ``d = diff(D)`` over groups (``d[i, k]`` belongs to group ``k + 1``).
3. Signed median ``med`` of ``d`` over all integrations and differences (NaN ignored) and
   ``sig = sqrt(|med| + RN^2 / NFRAMES)`` with ``RN = READNOISE * gain`` (READNOISE is the CDS
   noise in DN).
4. One of three regimes, chosen for the whole exposure:

   * sigma clip (>= ``minimum_sigclip_groups`` integrations, or usable groups when
     ``only_use_ints`` is False): ``astropy.stats.sigma_clip`` across integrations;
   * single pass (every integration has >= ``min_diffs_single_pass`` usable differences):
     ``|d - med| / sig > rejection_threshold``;
   * iterative (otherwise): one jump per pixel at a time, with the median of ``|d|`` after
     dropping the largest value (4+ usable differences), the plain median (3) or the minimum (2),
     and thresholds ``rejection_threshold`` (4+), ``four_group_rejection_threshold`` (3) and
     ``three_group_rejection_threshold`` (2 usable differences, pooled over integrations).

5. The four neighbours of a jump whose signed ratio ``|d - med| / sig`` lies strictly between
   ``min_jump_to_flag_neighbors`` and ``max_jump_to_flag_neighbors`` are flagged too (not where the
   group is SATURATED or DO_NOT_USE).
6. Optionally, groups after large jumps (``after_jump_flag_dn1/2`` DN, ``after_jump_flag_time1/2``
   seconds) are flagged.
7. JUMP_DET is removed again from groups that are also DO_NOT_USE or SATURATED.

Medians avoid ``np.nanmedian``: :mod:`detcal.steps.median` gives the same values (sorting
networks over whole rows up to 32 values, rows of a tiled transposed copy sorted above). The
arithmetic follows stcal's dtypes (float32 data and differences, float64 medians, sigmas and
ratios; in the iterative regime, the median of later iterations rounded to float32) so that the
flags are bit-identical. The work is done in blocks of rows sized from a memory budget (the peak
memory is the input and output arrays plus about ``memory_mb`` per thread), optionally on several
threads (``threads``; numpy releases the GIL in its loops and sorts). Per block:

* one pass over GROUPDQ finds the (rare) groups that are DO_NOT_USE, SATURATED or JUMP on input,
  from the pixels whose OR over the groups is set (no scan of every value); groups that are
  DO_NOT_USE in at least half of the pixels (MIRI: the last group, the groups rscd flags) are
  made NaN by a mask instead, and only their JUMP flags are looked up;
* the single-pass test never builds float64 arrays of the block: a float32 screen (``d`` outside
  ``med -+ threshold * sig`` shrunk by 1e-5) selects the candidates and stcal's float64 ratio is
  computed for those only;
* the iterative search first finds the pixels where stcal's first ``get_cr_locs`` flags a jump
  from each integration's largest and smallest ``|d|`` (the largest ratio is at one of them), and
  runs on those pixels only; it needs no signed median except at the jumps (neighbour test);
* the ratios of the neighbour test are computed only at the jumps.

Neighbour seeds come from the flags before any neighbour flagging, so they are collected over all
blocks and their neighbours flagged at the end: the result depends neither on the block size nor
on the number of threads. ``data`` may also be an array read when used (the per-step job passes
its file's SCI as a :class:`detcal.io.LazyArray`, :data:`LAZY_DATA`): each pass then reads it in
chunks of whole blocks (:data:`READ_BLOCK_FACTOR`), never whole; GROUPDQ stays in memory. The
search, the neighbour and the after-jump flags never set JUMP on a DO_NOT_USE or SATURATED
group, so the final clean-up of such groups only visits the input's.

Deliberate differences from stcal: when the exposure has too few usable groups the jump search is
skipped and ``n_primary_crs`` is 0 (stcal reports -99); snowball and MIRI-shower flagging
(off by default in jwst) are not implemented; inputs are not modified (GROUPDQ only when it is
given as ``out``: the runner flags its ramp's in place, which saves a GROUPDQ-sized cube).
"""

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import warnings

import numpy as np

from .. import dqflags
from ..parameters import keyword_parameters
from .descriptor import Param, Step
from .guards import owned
from .median import median_sorted, nanmedian_columns, release_scratch, scratch, sort_columns

log = logging.getLogger("detcal.jump")

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="jump", description="Two-point-difference jump (cosmic-ray) detection",
    position={"NIR": 80, "MIRI": 90}, cal_step="S_JUMP", suffix="jumpstep", references=("gain", "readnoise"),
    keywords=("TFRAME", "TGROUP"),
    parameters={
        "rejection_threshold": Param(4.0, "Threshold [sigma] with 4 or more usable group differences",
                                     {"exclusiveMinimum": 0}),
        "three_group_rejection_threshold": Param(6.0, "Threshold [sigma] with 2 usable differences "
                                                      "(3 groups)", {"exclusiveMinimum": 0}),
        "four_group_rejection_threshold": Param(5.0, "Threshold [sigma] with 3 usable differences (4 groups)",
                                                {"exclusiveMinimum": 0}),
        "flag_4_neighbors": Param(True, "Also flag the 4 nearest neighbours of a jump between the min "
                                        "and max sizes below"),
        "min_jump_to_flag_neighbors": Param(10.0, "Smallest jump [sigma] whose neighbours are flagged",
                                            {"minimum": 0}),
        "max_jump_to_flag_neighbors": Param(1000.0, "Largest jump [sigma] whose neighbours are flagged",
                                            {"minimum": 0}),
        "after_jump_flag_dn1": Param(0.0, "Jumps above this [DN] flag the groups of the next "
                                          "after_jump_flag_time1 seconds (0 = off)", {"minimum": 0}),
        "after_jump_flag_time1": Param(0.0, "Seconds flagged after a jump above after_jump_flag_dn1",
                                       {"minimum": 0}),
        "after_jump_flag_dn2": Param(0.0, "Second after-jump level [DN] (0 = off)", {"minimum": 0}),
        "after_jump_flag_time2": Param(0.0, "Seconds flagged after a jump above after_jump_flag_dn2",
                                       {"minimum": 0}),
        "minimum_sigclip_groups": Param(100, "Integrations needed before the sigma-clipping regime is used",
                                        {"minimum": 1}),
        "only_use_ints": Param(True, "Sigma-clip across integrations only (not across groups)"),
        "min_diffs_single_pass": Param(10, "Usable differences needed for the single-pass (non-iterative) "
                                           "regime", {"minimum": 1}),
    })

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: jwst JumpStep defaults (two-point difference part).
DEFAULTS = {
    "rejection_threshold": 4.0,
    "three_group_rejection_threshold": 6.0,
    "four_group_rejection_threshold": 5.0,
    "flag_4_neighbors": True,
    "max_jump_to_flag_neighbors": 1000.0,
    "min_jump_to_flag_neighbors": 10.0,
    "after_jump_flag_dn1": 0.0,
    "after_jump_flag_time1": 0.0,
    "after_jump_flag_dn2": 0.0,
    "after_jump_flag_time2": 0.0,
    "minimum_groups": 3,
    "minimum_sigclip_groups": 100,
    "only_use_ints": True,
    "min_diffs_single_pass": 10,
}

_JUMP = np.uint8(dqflags.JUMP_DET)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_SAT = np.uint8(dqflags.SATURATED)
_BAD = np.uint8(dqflags.DO_NOT_USE | dqflags.SATURATED)

#: Approximate bytes of temporaries per pixel-group in the iterative search (used to size blocks).
_BYTES_PER_PIXEL_GROUP = 28

#: SCI not in memory (a file, :class:`detcal.io.LazyArray`): rows are read in chunks of whole
#: blocks of about this many times ``memory_mb`` (float32 values; at least one block per thread).
READ_BLOCK_FACTOR = 2

#: The per-step job gives :func:`run` the file's SCI as a :class:`detcal.io.LazyArray`, read by
#: chunks of rows (:func:`detect_jumps` reads nothing else of it; the step does not change SCI,
#: and :func:`detcal.io.write_ramp` copies it from the file).
LAZY_DATA = True


@dataclasses.dataclass(frozen=True)
class JumpParameters:
    """Parameters of :func:`detect_jumps` (stcal's ``JumpData`` thresholds; jwst defaults).

    rejection_threshold, three_group_rejection_threshold, four_group_rejection_threshold : float
        [sigma] thresholds for 4+ / 2 / 3 usable differences
    flag_4_neighbors : bool
    max_jump_to_flag_neighbors, min_jump_to_flag_neighbors : float   [sigma]
    after_jump_flag_dn1, after_jump_flag_dn2 : float             [DN]
    after_jump_flag_time1, after_jump_flag_time2 : float         [s]
    minimum_groups : int           fewest usable groups for the search (stcal's single-process
                                   path always uses 3, whatever JumpStep's parameter says)
    minimum_sigclip_groups : int   integrations (or groups) needed for the sigma-clip regime
    only_use_ints : bool           sigma clip across integrations only
    min_diffs_single_pass : int    usable differences per integration for the single-pass regime
    memory_mb : float              working-memory budget per thread for the row blocks [MB]
    threads : int                  row blocks searched at once (numpy releases the GIL in its
                                   loops and sorts); the flags do not depend on it
    """

    rejection_threshold: float = DEFAULTS["rejection_threshold"]
    three_group_rejection_threshold: float = DEFAULTS["three_group_rejection_threshold"]
    four_group_rejection_threshold: float = DEFAULTS["four_group_rejection_threshold"]
    flag_4_neighbors: bool = DEFAULTS["flag_4_neighbors"]
    max_jump_to_flag_neighbors: float = DEFAULTS["max_jump_to_flag_neighbors"]
    min_jump_to_flag_neighbors: float = DEFAULTS["min_jump_to_flag_neighbors"]
    after_jump_flag_dn1: float = DEFAULTS["after_jump_flag_dn1"]
    after_jump_flag_time1: float = DEFAULTS["after_jump_flag_time1"]
    after_jump_flag_dn2: float = DEFAULTS["after_jump_flag_dn2"]
    after_jump_flag_time2: float = DEFAULTS["after_jump_flag_time2"]
    minimum_groups: int = DEFAULTS["minimum_groups"]
    minimum_sigclip_groups: int = DEFAULTS["minimum_sigclip_groups"]
    only_use_ints: bool = DEFAULTS["only_use_ints"]
    min_diffs_single_pass: int = DEFAULTS["min_diffs_single_pass"]
    memory_mb: float = 16.0
    threads: int = 1

    @property
    def thresholds(self):
        """(4+, 3, 2 usable differences) rejection thresholds [sigma], as stcal ``get_cr_locs``."""
        return (self.rejection_threshold, self.four_group_rejection_threshold,
                self.three_group_rejection_threshold)


def rows_per_block(nints, ngroups, nx, memory_mb,
                   bytes_per_pixel_group=_BYTES_PER_PIXEL_GROUP):
    """Detector rows per block so that ``bytes_per_pixel_group`` bytes of temporaries per
    (integration, group, pixel) stay within ``memory_mb`` [MB]; at least 1 (shared with ramp_fit)."""
    per_row = max(1, nints * ngroups * nx * bytes_per_pixel_group)
    return max(1, int(memory_mb * 1e6) // per_row)


def row_blocks(ny, rows):
    """[(r0, r1), ...] covering rows 0..ny in blocks of ``rows`` rows."""
    return [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]


def map_blocks(func, blocks, threads=1):
    """``[func(b) for b in blocks]``, on ``threads`` threads when > 1 (results in block order).

    For block functions that write disjoint rows of the outputs: the result does not depend on
    the number of threads. numpy releases the GIL in its element loops and sorts, so two threads
    run the numerical work of two blocks at once.
    """
    if threads <= 1 or len(blocks) < 2:
        return [func(b) for b in blocks]
    pool = getattr(_shared, "pool", None)
    if pool is not None and pool._max_workers == int(threads):
        return list(pool.map(func, blocks))
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(threads)) as pool:
        return list(pool.map(func, blocks))


_shared = threading.local()


@contextlib.contextmanager
def shared_threads(threads):
    """Inside the block, :func:`map_blocks` calls of this thread with ``threads`` threads run on
    one pool, shut down at the end: a loop over chunks of rows (a file read by chunks) keeps the
    same worker threads, so their work arrays (:func:`detcal.steps.median.scratch`) are reused
    from chunk to chunk instead of being made again (new pages, new allocator arenas) by a new
    pool at every chunk."""
    if threads <= 1 or getattr(_shared, "pool", None) is not None:
        yield
        return
    _shared.pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(threads))
    try:
        yield
    finally:
        pool, _shared.pool = _shared.pool, None
        pool.shutdown()


def check_ramp_inputs(data, groupdq, gain, readnoise):
    """Common input checks of :func:`detect_jumps` and :func:`detcal.steps.ramp_fit.fit_ramps`.

    Returns ``data`` as an ndarray, or as it is when it is an array-like read when used (a
    :class:`detcal.io.LazyArray` of a file: never read whole here) (must be 4-D (nints, ngroups,
    ny, nx); ``groupdq`` of the same shape) and ``gain``, ``readnoise`` as float32 arrays. Raises ValueError otherwise.
    """
    if not isinstance(data, np.ndarray) and not (hasattr(data, "shape") and hasattr(data, "dtype")):
        data = np.asarray(data)        # an ndarray, or an array read when used (io.LazyArray) as it is
    if len(data.shape) != 4:
        raise ValueError(f"data must be 4-D (nints, ngroups, ny, nx), got shape {data.shape}")
    if np.shape(groupdq) != data.shape:
        raise ValueError(f"groupdq shape {np.shape(groupdq)} does not match data {data.shape}")
    return data, np.asarray(gain, dtype=np.float32), np.asarray(readnoise, dtype=np.float32)


def check_frame_shapes(ny, nx, arrays):
    """Raise ValueError naming the first (name, array) of ``arrays`` whose shape is not (ny, nx)."""
    for name, arr in arrays:
        if np.shape(arr) != (ny, nx):
            raise ValueError(f"{name} shape {np.shape(arr)} does not match the frames {(ny, nx)}")


def signed_median(d, work=None):
    """NaN-ignoring median of ``d`` (nints, ndiffs, P) over integrations and differences (float64).
    ``work``: a key for :func:`detcal.steps.median.scratch` arrays (None: new arrays)."""
    return nanmedian_columns(d.reshape(d.shape[0] * d.shape[1], -1), work)


def _sigma(med, rn2_term):
    sig = np.sqrt(np.abs(med) + rn2_term)
    sig[sig == 0.0] = np.nan
    return sig


def _clipped_abs_median(A, work=None):
    """stcal ``calc_med_first_diffs`` on |d| (nints, ndiffs, P): returns (median float64, usable count).
    ``work``: a key for :func:`detcal.steps.median.scratch` arrays (None: new arrays)."""
    N = A.shape[0] * A.shape[1]
    x = A.reshape(N, -1)
    S = sort_columns(x, work)                              # NaN as +inf, last
    v = N - np.count_nonzero(np.isnan(x), axis=0)
    # Copies of the largest value: 1 unless the value before it is the same or it is +inf
    # (NaN are sorted as +inf: not counted as copies).
    top = np.take_along_axis(S, np.clip(v - 1, 0, N - 1)[None, :], axis=0)[0]
    before = np.take_along_axis(S, np.clip(v - 2, 0, N - 1)[None, :], axis=0)[0]
    ncopies = np.ones(v.shape, np.intp)
    exact = np.flatnonzero((v < 2) | (before == top) | np.isinf(top))
    if exact.size:
        c = np.count_nonzero(S[:, exact] == top[exact], axis=0)
        inf_max = np.isinf(top[exact])
        c[inf_max] -= (N - v[exact])[inf_max]
        ncopies[exact] = c
    n = np.where(v >= 4, v - ncopies, v)
    med = median_sorted(S, n)
    two = v == 2
    if two.any():
        med[two] = S[0, two]
    med[v < 2] = np.nan
    return med, v


def _cr_test(max_ratio, nuse, thresholds):
    """stcal ``get_cr_locs``' test of the largest ratio of each integration (nints, P) -> bool."""
    normal, three_diff, two_diff = thresholds
    return (((nuse >= 4) & (max_ratio > normal))
            | ((nuse == 3) & (max_ratio > three_diff))
            | ((nuse == 2) & (max_ratio > two_diff)))


def _cr_locs(A, rn2_term, thresholds, round_median):
    """stcal ``get_cr_locs`` for the pixels of A (nints, ndiffs, P).

    Returns (cr (nints, P) bool, ratio (nints, ndiffs, P) float64).
    """
    med, nuse = _clipped_abs_median(A)
    if round_median:  # later iterations store the median in a float32 array
        med = med.astype(np.float32).astype(np.float64)
    sig = _sigma(med, rn2_term)
    e = np.subtract(A, med, dtype=np.float64).astype(np.float32)
    ratio = np.abs(e).astype(np.float64)
    ratio /= sig
    max_ratio = np.fmax.reduce(ratio, axis=1)  # nanmax over differences, per integration
    return _cr_test(max_ratio, nuse, thresholds), ratio


def _cr_pixels(A, rn2_term, thresholds):
    """Pixels (flat indices into P) where the first ``get_cr_locs`` of A (nints, ndiffs, P) finds
    a jump, without its float64 arrays of the block: the ratio ``|float32(A - med)| / sig``
    grows with ``|A - med|``, so its largest value in an integration is at the integration's
    largest or smallest ``A`` (NaN ignored, as stcal's nanmax)."""
    med, nuse = _clipped_abs_median(A, work="jump.abs")
    sig = _sigma(med, rn2_term)
    with np.errstate(invalid="ignore"):
        ends = [np.abs(np.subtract(f.reduce(A, axis=1), med, dtype=np.float64).astype(np.float32))
                for f in (np.fmax, np.fmin)]
        max_ratio = np.fmax(*ends).astype(np.float64) / sig
        return np.flatnonzero(_cr_test(max_ratio, nuse, thresholds).any(axis=0))


def _iterative(d, rn2_term, thresholds):
    """Iterative one-jump-at-a-time search in d (nints, ndiffs, P); returns the flat indices into
    d of the differences found (each once), whose groups get JUMP."""
    nints, ndiffs, npix = d.shape
    # Only pixels where a CR can be found matter: the search runs on those only (each pixel's
    # median and sigma are its own).
    active = _cr_pixels(np.abs(d, out=scratch("jump.A", d.shape, d.dtype)), rn2_term, thresholds)
    if active.size == 0:
        return np.zeros(0, np.intp)
    A = np.abs(d[:, :, active])
    rn2_term = rn2_term[active]
    cr, ratio = _cr_locs(A, rn2_term, thresholds, round_median=False)
    found = []
    for _ in range(nints * ndiffs):
        top = np.fmax.reduce(np.fmax.reduce(ratio, axis=1), axis=0)
        new = (ratio == top) & cr[:, None, :]
        hit = new.any(axis=(0, 1))
        if not hit.any():
            break
        keep = np.flatnonzero(hit)
        new = new[:, :, keep]
        active = active[keep]
        i, k, j = np.nonzero(new)
        found.append((i * ndiffs + k) * npix + active[j])
        A = A[:, :, keep]
        A[new] = np.nan
        rn2_term = rn2_term[keep]
        cr, ratio = _cr_locs(A, rn2_term, thresholds, round_median=True)
    return np.concatenate(found) if found else np.zeros(0, np.intp)


def _float32_bounds(lo, hi):
    """float32 ``(L, U)`` with ``lo <= L`` and ``U <= hi`` (float64 inputs; NaN stays NaN)."""
    L = lo.astype(np.float32)
    up = L < lo
    L[up] = np.nextafter(L[up], np.float32(np.inf))
    U = hi.astype(np.float32)
    down = U > hi
    U[down] = np.nextafter(U[down], np.float32(-np.inf))
    return L, U


def _ratio_at(d, med, sig, idx):
    """stcal's float64 ``|d - med| / sig`` at the flat indices ``idx`` of d (nints, ndiffs, P)."""
    p = idx % d.shape[-1]
    r = np.abs(np.subtract(d.reshape(-1)[idx], med[p], dtype=np.float64))
    r /= sig[p]
    return r


def _sparse_nonzero(x):
    """``(np.flatnonzero(x), x.flat[that])`` of a 2-D ``x`` (rows, P) whose nonzero values are
    rare: the columns with any are found by one OR over the rows (a SIMD reduction, much cheaper
    than ``nonzero``'s scan of every value), then searched alone. Indices ascending, as
    ``flatnonzero``."""
    cols = np.flatnonzero(np.logical_or.reduce(x, axis=0) if x.dtype == bool
                          else np.bitwise_or.reduce(x, axis=0))
    if cols.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, x.dtype)
    sub = x[:, cols]
    r, c = np.nonzero(sub)
    return r * x.shape[1] + cols[c], sub[r, c]


def _single_pass(d, med, sig, threshold):
    """Flat indices into d of ``|d - med| / sig > threshold`` (float64, as stcal), without float64
    arrays of the whole block: a float32 screen keeps every difference outside ``med -+ threshold
    * sig`` shrunk by 1e-5 (a strict superset of the jumps), the exact ratio is computed for those
    only."""
    with np.errstate(invalid="ignore"):
        c = threshold * sig * (1.0 - 1e-5)
        L, U = _float32_bounds(med - c, med + c)
        out = np.less(d, L, out=scratch("jump.below", d.shape, bool))
        out |= np.greater(d, U, out=scratch("jump.above", d.shape, bool))
        cand = _sparse_nonzero(out.reshape(-1, d.shape[-1]))[0]   # NaN d, med or sig: never one
        return cand[_ratio_at(d, med, sig, cand) > threshold]


def _sigma_clip(d, g, threshold, only_use_ints):
    from astropy import stats
    from astropy.utils.exceptions import AstropyUserWarning

    axis = 0 if only_use_ints else (0, 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        clipped = stats.sigma_clip(d.astype(np.float64), sigma=threshold, axis=axis, masked=True)
    mask = np.ma.getmaskarray(clipped) & np.isfinite(d) & ((g[:, 1:] & _BAD) == 0)
    g[:, 1:][mask] |= _JUMP


def _neighbour_seeds(d, g, med, sig, lo, hi):
    """Flat indices into d (nints, ndiffs, P) of the jumps strong enough to flag their
    neighbours: JUMP already set and ``lo < |d - med| / sig < hi`` (NaN never)."""
    idx = np.flatnonzero(g[:, 1:] & _JUMP)
    return idx[_strong(d, med, sig, idx, lo, hi)]


def _strong(d, med, sig, idx, lo, hi):
    """Which of the flat indices ``idx`` into d have ``|d - med| / sig`` strictly in (lo, hi)."""
    with np.errstate(invalid="ignore"):
        r = _ratio_at(d, med, sig, idx)
        return (r < hi) & (r > lo)


def _flag_neighbours(gdq, i, k, y, x):
    """OR JUMP into gdq (nints, ngroups, ny, nx) at the 4-neighbours (same integration and group)
    of the seeds (i, k, y, x), except where that group is SATURATED or DO_NOT_USE."""
    ny, nx = gdq.shape[2:]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        yy, xx = y + dy, x + dx
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        at = (i[ok], k[ok], yy[ok], xx[ok])
        free = (gdq[at] & _BAD) == 0
        at = tuple(a[free] for a in at)
        gdq[at] |= _JUMP


def _after_jump(d, g, med, e1, n1, e2, n2):
    """Flag n1 (n2) groups after jumps of at least e1 (e2) electrons (stcal ``transient_jumps``)."""
    nints, ngroups = g.shape[:2]
    ejump = np.subtract(d, med, dtype=np.float64)
    jump_set = (g[:, 1:] & _JUMP) != 0
    add = np.zeros(g.shape, bool)
    for e_thr, n in ((e1, n1), (e2, n2)):
        big = np.zeros(g.shape, bool)
        big[:, 1:] = (ejump >= e_thr) & jump_set
        for j in range(min(n, ngroups - 2)):
            big[:, j + 1:] |= big[:, j:-1].copy()
        add |= big
    add &= (g & _BAD) == 0
    g[add] |= _JUMP


def _choose_regime(gdq, params):
    """The regime of the whole exposure ('skipped', 'sigma_clip', 'single_pass' or 'iterative'),
    the groups that are DO_NOT_USE in every pixel and those that are in at least half of them
    (bool (nints, ngroups) each)."""
    nints, ngroups, ny, nx = gdq.shape
    plane = np.empty((ny, nx), np.uint8)
    count = np.array([[np.count_nonzero(np.bitwise_and(gdq[i, k], _DNU, out=plane))
                       for k in range(ngroups)] for i in range(nints)]).reshape(nints, ngroups)
    all_dnu = count == ny * nx
    return choose_regime(all_dnu, params), all_dnu, 2 * count >= ny * nx


def choose_regime(all_dnu, params):
    """The regime of an exposure: 'skipped', 'sigma_clip', 'single_pass' or 'iterative'.

    all_dnu : bool (nints, ngroups), groups that are DO_NOT_USE in every pixel
    params : :class:`JumpParameters` (or any object with ``only_use_ints``,
        ``minimum_sigclip_groups``, ``minimum_groups`` and ``min_diffs_single_pass``)
    """
    nints, ngroups = all_dnu.shape
    n_flagged = all_dnu.sum(axis=1)
    min_usable_groups = ngroups - int(n_flagged.max(initial=0))
    total_groups = nints * ngroups - int(n_flagged.sum())
    sigclip_groups = nints if params.only_use_ints else total_groups
    sigclip_ok = sigclip_groups >= params.minimum_sigclip_groups
    if ngroups < 2 or (not sigclip_ok and min_usable_groups < params.minimum_groups):
        return "skipped"
    if sigclip_ok:
        return "sigma_clip"
    if min_usable_groups - 1 >= params.min_diffs_single_pass:
        return "single_pass"
    return "iterative"


class _Exposure:
    """The arrays of one :func:`detect_jumps` call and the per-block work on them.

    A block is a range of whole detector rows ``(r0, r1)``; its P = (r1 - r0) * nx pixels are
    flattened, so that GROUPDQ of the block is a view ``g`` (nints, ngroups, P) of ``gdq``.
    """

    def __init__(self, data, gdq, gain, readnoise, nframes, params, dense=None):
        self.data, self.gdq, self.gain, self.readnoise = data, gdq, gain, readnoise
        self.nframes, self.params = nframes, params
        self.nints, self.ngroups, self.ny, self.nx = data.shape
        # groups DO_NOT_USE in most pixels (MIRI lastframe and rscd: ~6 % of the values) are
        # made NaN plane by plane, not by millions of flag lookups (DO_NOT_USE never changes here)
        self.dense = (np.zeros((self.nints, self.ngroups), bool) if dense is None
                      else np.asarray(dense, bool))
        self.dense_planes = [tuple(ik) for ik in np.argwhere(self.dense)]
        self._chunk = None          # (first row, SCI rows) read by map when data is not in memory

    def map(self, func, blocks):
        """``map_blocks(func, blocks, threads)``; when the data are not in memory (a file), the
        blocks are taken in chunks of consecutive blocks, each chunk's rows of SCI read once
        (about ``READ_BLOCK_FACTOR * memory_mb`` MB, at least one block per thread) and dropped
        after its blocks."""
        threads = self.params.threads
        if isinstance(self.data, np.ndarray):
            return map_blocks(func, blocks, threads)
        per_block = max(1, blocks[0][1] - blocks[0][0]) if blocks else 1
        budget = READ_BLOCK_FACTOR * self.params.memory_mb * 1e6
        n = max(max(1, threads), int(budget // (self.nints * self.ngroups * self.nx * 4 * per_block)))
        out = []
        try:
            with shared_threads(threads):
                for k in range(0, len(blocks), n):
                    chunk = blocks[k:k + n]
                    c0, c1 = chunk[0][0], chunk[-1][1]
                    self._chunk = (c0, np.asarray(self.data[:, :, c0:c1, :], np.float32))
                    out += map_blocks(func, chunk, threads)
        finally:
            self._chunk = None
        return out

    def rows(self, r0, r1):
        """SCI of rows r0:r1 (nints, ngroups, r1 - r0, nx), from the chunk read by :meth:`map`."""
        chunk = self._chunk
        if chunk is not None and chunk[0] <= r0 and r1 <= chunk[0] + chunk[1].shape[2]:
            return chunk[1][:, :, r0 - chunk[0]:r1 - chunk[0], :]
        return self.data[:, :, r0:r1, :]

    def g(self, r0, r1):
        """GROUPDQ of rows r0:r1, a (nints, ngroups, P) view of gdq (blocks of whole rows)."""
        return self.gdq[:, :, r0:r1, :].reshape(self.nints, self.ngroups, -1)

    def rn2_term(self, r0, r1):
        """RN^2 / (0.5 * 2 * NFRAMES) of rows r0:r1, flattened; RN = READNOISE * gain (float32, e-)."""
        rn = self.readnoise[r0:r1] * self.gain[r0:r1]
        return (rn * rn).astype(np.float64).ravel() / float(self.nframes)

    def stats(self, r0, r1, with_flags=False, median=True):
        """Differences d (nints, ndiffs, P) in electrons (NaN where either group is DO_NOT_USE or
        SATURATED), their signed median and sigma (float64 (P,); None without ``median``) of
        rows r0:r1.

        ``with_flags``: also the flat indices into ``g`` of the groups that were JUMP on input,
        and of those that are JUMP and DO_NOT_USE or SATURATED (found in one pass over GROUPDQ).
        """
        nints, ngroups = self.nints, self.ngroups
        npix = (r1 - r0) * self.nx
        # Work arrays reused from block to block (d is valid until the next block of the thread).
        D = scratch("jump.D", (nints, ngroups, r1 - r0, self.nx), np.float32)
        np.multiply(self.rows(r0, r1), self.gain[r0:r1], out=D, dtype=np.float32)
        D = D.reshape(nints, ngroups, npix)
        flags = np.bitwise_and(self.g(r0, r1), _BAD | _JUMP,          # flagged groups are rare
                               out=scratch("jump.flags", (nints, ngroups, npix), np.uint8))
        for i, k in self.dense_planes:      # mostly DO_NOT_USE: NaN by a mask, JUMP looked up
            f = flags[i, k]
            np.copyto(D[i, k], np.nan, where=(f & _BAD) != 0)
            f &= _JUMP
        at, val = _sparse_nonzero(flags.reshape(nints * ngroups, npix))
        bad = (val & _BAD) != 0
        if self.dense_planes:           # flags of the dense planes' JUMP groups, from GROUPDQ
            plane, p = np.divmod(at, npix)
            there = np.flatnonzero(self.dense.reshape(-1)[plane])
            i, k = np.divmod(plane[there], ngroups)
            bad[there] = (self.g(r0, r1)[i, k, p[there]] & _BAD) != 0
        D.reshape(-1)[at[bad]] = np.nan
        d = np.subtract(D[:, 1:], D[:, :-1], out=scratch("jump.d", (nints, ngroups - 1, npix),
                                                          np.float32))
        med = sig = None
        if median:
            med = signed_median(d, work="jump.median")
            sig = _sigma(med, self.rn2_term(r0, r1))
        if not with_flags:
            return d, med, sig
        is_jump = (val & _JUMP) != 0
        return d, med, sig, at[is_jump], at[is_jump & bad]

    def to_d(self, idx, npix):
        """Flat indices into g (nints, ngroups, P) of groups >= 1 -> flat indices into d."""
        i, k = np.divmod(idx // npix, self.ngroups)
        keep = k > 0
        return ((i * (self.ngroups - 1) + k - 1) * npix + idx % npix)[keep]

    def global_index(self, r0, npix, idx_g=None, idx_d=None):
        """(i, group, y, x) of flat indices into g (``idx_g``) or into d (``idx_d``) of rows r0:."""
        if idx_d is not None:
            ik, p = np.divmod(idx_d, npix)
            i, k = np.divmod(ik, self.ngroups - 1)
            k = k + 1
        else:
            ik, p = np.divmod(idx_g, npix)
            i, k = np.divmod(ik, self.ngroups)
        y, x = np.divmod(p, self.nx)
        return i, k, r0 + y, x

    def search(self, block, regime):
        """Jump search of one block (single pass or iterative): sets JUMP in its rows of gdq.

        Returns (primary jumps (JUMP groups before neighbour flagging, input flags included),
        neighbour seeds (i, group, y, x), groups that are JUMP and DO_NOT_USE/SATURATED (idem)).
        """
        r0, r1 = block
        p = self.params
        # The iterative search does not use the signed median: it is computed for the seeds'
        # pixels only (each pixel's median is its own).
        d, med, sig, pre, pre_bad = self.stats(r0, r1, with_flags=True,
                                               median=regime == "single_pass")
        npix = d.shape[-1]
        if regime == "iterative":
            new = _iterative(d, self.rn2_term(r0, r1), p.thresholds)
        else:
            new = _single_pass(d, med, sig, p.rejection_threshold)
        i, k, y, x = self.global_index(r0, npix, idx_d=new)
        self.gdq[i, k, y, x] |= _JUMP
        jumps = new
        if pre.size:
            jumps = np.union1d(new, self.to_d(pre, npix))
        n_primary = jumps.size + int(np.count_nonzero((pre // npix) % self.ngroups == 0))
        seeds = None
        if p.flag_4_neighbors:
            lo, hi = p.min_jump_to_flag_neighbors, p.max_jump_to_flag_neighbors
            if med is None:
                pix, where = np.unique(jumps % npix, return_inverse=True)
                sub = d[:, :, pix]
                at = np.ravel_multi_index((jumps // npix, where), (d.shape[0] * d.shape[1], pix.size))
                med = signed_median(sub)
                strong = _strong(sub, med, _sigma(med, self.rn2_term(r0, r1)[pix]), at, lo, hi)
            else:
                strong = _strong(d, med, sig, jumps, lo, hi)
            seeds = self.global_index(r0, npix, idx_d=jumps[strong])
        return n_primary, seeds, self.global_index(r0, npix, idx_g=pre_bad)

    def sigma_clip(self, block):
        """Sigma-clip search of one block: sets JUMP in its rows of gdq."""
        r0, r1 = block
        d = self.stats(r0, r1)[0]
        _sigma_clip(d, self.g(r0, r1), self.params.rejection_threshold, self.params.only_use_ints)

    def seeds(self, block):
        """Neighbour seeds (i, group, y, x) of one block from the JUMP flags set so far."""
        r0, r1 = block
        d, med, sig = self.stats(r0, r1)
        idx = _neighbour_seeds(d, self.g(r0, r1), med, sig, self.params.min_jump_to_flag_neighbors,
                               self.params.max_jump_to_flag_neighbors)
        return self.global_index(r0, d.shape[-1], idx_d=idx)

    def after_jump(self, block, e1, n1, e2, n2):
        """Groups after large jumps of one block (stcal ``transient_jumps``)."""
        r0, r1 = block
        d, med, _ = self.stats(r0, r1)
        _after_jump(d, self.g(r0, r1), med, e1, n1, e2, n2)


def _clear_redundant_jumps(gdq, blocks):
    """Remove JUMP from groups that are also DO_NOT_USE or SATURATED (all of gdq, by blocks)."""
    for r0, r1 in blocks:
        g = gdq[:, :, r0:r1, :]
        g[(g & (_JUMP | _DNU)) == (_JUMP | _DNU)] ^= _JUMP
        g[(g & (_JUMP | _SAT)) == (_JUMP | _SAT)] ^= _JUMP


def _count_jumps(gdq, blocks):
    """Number of JUMP groups in gdq, counted by blocks of rows (no temporary of its size)."""
    return sum(int(np.count_nonzero(gdq[:, :, r0:r1] & _JUMP)) for r0, r1 in blocks)


def _concat(index_tuples):
    """Concatenate a list of (i, group, y, x) index tuples into one tuple of arrays."""
    return tuple(np.concatenate(c) for c in zip(*index_tuples))


@keyword_parameters(JumpParameters)
def detect_jumps(data, groupdq, pixeldq, gain, readnoise, nframes, tgroup=None, *, out=None,
                 parameters):
    """Flag cosmic-ray jumps with the two-point-difference method (stcal 1.20 parity).

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)      [DN]   not modified
    groupdq : ndarray, uint8, same shape                               not modified (unless out)
    pixeldq : ndarray, uint32, shape (ny, nx)                          not modified
    gain : ndarray, float32, shape (ny, nx)                      [e-/DN]
    readnoise : ndarray, float32, shape (ny, nx)                 [DN]   CDS read noise
    nframes : int                                                       frames averaged per group
    tgroup : float or None                                       [s]    group time; needed for the
        after-jump times and the primary cosmic-ray rate
    out : ndarray, uint8, C-contiguous, shape of ``groupdq``, optional: where to write the new
        GROUPDQ; may be ``groupdq`` itself (flagged in place: no second cube, e.g. for the
        runner, which owns its ramp)
    parameters : :class:`JumpParameters`, or its fields as keywords (thresholds, neighbour and
        after-jump settings, ``memory_mb``, ``threads``)

    Returns
    -------
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)      ``out`` or a new array, with
                                                                  JUMP_DET set
    pixeldq : ndarray, uint32, shape (ny, nx)                     new array (NO_GAIN_VALUE)
    info : dict
        ``n_primary_crs`` (JUMP_DET groups before neighbour flagging, including those already
        set on input), ``regime`` ('iterative', 'single_pass', 'sigma_clip' or 'skipped'),
        ``n_jump_groups`` (JUMP_DET groups in the output), ``n_all_dnu_groups`` (groups that are
        DO_NOT_USE in every pixel), ``primary_cosmic_rays`` (per 1000 pixels per second, as jwst's
        PRIMECRS; None without ``tgroup`` or usable groups).
    """
    p = parameters
    data, gain, readnoise = check_ramp_inputs(data, groupdq, gain, readnoise)
    nints, ngroups, ny, nx = data.shape
    check_frame_shapes(ny, nx, (("pixeldq", pixeldq), ("gain", gain), ("readnoise", readnoise)))
    if nframes < 1:
        raise ValueError(f"nframes must be >= 1, got {nframes}")

    if out is None:
        gdq = np.array(groupdq, dtype=np.uint8, copy=True, order="C")
    else:     # blocks are views of gdq (reshaped rows): it must be C-contiguous uint8
        if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.flags.c_contiguous
                and out.flags.writeable and out.shape == data.shape):
            raise ValueError(f"out must be a writeable C-contiguous uint8 array of shape {data.shape}")
        gdq = out
        if out is not groupdq:
            np.copyto(gdq, groupdq)
    pdq = np.array(pixeldq, dtype=np.uint32, copy=True)
    pdq[~(gain > 0.0)] |= np.uint32(dqflags.NO_GAIN_VALUE | dqflags.DO_NOT_USE)

    # DO_NOT_USE is never changed here: the groups DO_NOT_USE everywhere are those of the input.
    regime, all_dnu, dense = _choose_regime(gdq, p)
    blocks = row_blocks(ny, rows_per_block(nints, ngroups, nx, p.memory_mb))
    exp = _Exposure(data, gdq, gain, readnoise, nframes, p, dense)
    n_primary = 0
    if regime in ("single_pass", "iterative"):
        found = exp.map(lambda b: exp.search(b, regime), blocks)
        n_primary = sum(f[0] for f in found)
        if p.flag_4_neighbors:
            # Seeds come from the flags before any neighbour flagging, so deferring is exact.
            _flag_neighbours(gdq, *_concat([f[1] for f in found]))
    elif regime == "sigma_clip":
        exp.map(exp.sigma_clip, blocks)
        # A group in which every pixel is JUMP or DO_NOT_USE: JUMP-only pixels are reset.
        for i in range(nints):
            for k in range(ngroups):
                plane = gdq[i, k]
                if np.all((plane & (_JUMP | _DNU)) != 0):
                    plane[plane == _JUMP] = 0
        n_primary = _count_jumps(gdq, blocks)
        if p.flag_4_neighbors:
            _flag_neighbours(gdq, *_concat(exp.map(exp.seeds, blocks)))
    else:
        log.info("jump: skipped, the exposure has fewer than %d usable groups", p.minimum_groups)

    n1 = int(p.after_jump_flag_time1 // tgroup) if (tgroup and p.after_jump_flag_time1) else 0
    n2 = int(p.after_jump_flag_time2 // tgroup) if (tgroup and p.after_jump_flag_time2) else 0
    if regime != "skipped" and (n1 > 0 or n2 > 0):
        gmed = np.nanmedian(gain)
        e1 = np.float32(p.after_jump_flag_dn1) * gmed
        e2 = np.float32(p.after_jump_flag_dn2) * gmed
        exp.map(lambda b: exp.after_jump(b, e1, n1, e2, n2), blocks)

    release_scratch()
    # JUMP is redundant on groups that are DO_NOT_USE or SATURATED. The search, the neighbours
    # and the after-jump flags never set it there, so after a search only input flags remain.
    if regime in ("single_pass", "iterative"):
        gdq[_concat([f[2] for f in found])] &= ~_JUMP
    else:
        _clear_redundant_jumps(gdq, blocks)

    n_all_dnu = int(all_dnu.sum())
    usable = nints * ngroups - n_all_dnu - nints
    rate = None
    if tgroup and usable >= 1:
        rate = 1000.0 * n_primary / (tgroup * usable * ny * nx)
    info = {"n_primary_crs": n_primary, "regime": regime,
            "n_jump_groups": _count_jumps(gdq, blocks),
            "n_all_dnu_groups": n_all_dnu, "primary_cosmic_rays": rate}
    return gdq, pdq, info


def run(ramp, refs, **params):
    """Apply :func:`detect_jumps` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['gain']``, ``refs['readnoise']``: GAIN and READNOISE References cut to the subarray.
    ``params``: the fields of :class:`JumpParameters` (the config's jump parameters; defaults:
    :data:`DEFAULTS`), passed to :func:`detect_jumps` as keywords.
    Like jwst, a ramp with NGROUPS <= 2 is left unchanged (S_JUMP = SKIPPED). Sets PRIMECRS.
    """
    meta = ramp.meta("jump")
    nints, ngroups = ramp.data.shape[:2]
    if ngroups <= 2:
        log.warning("jump: NGROUPS=%d <= 2, jump detection skipped", ngroups)
        ramp.header["S_JUMP"] = "SKIPPED"
        return ramp
    gain, rnoise = refs["gain"], refs["readnoise"]
    gdq = ramp.groupdq     # flagged in place when the ramp owns its GROUPDQ (no new cube)
    ramp.groupdq, ramp.pixeldq, info = detect_jumps(
        ramp.data, gdq, ramp.pixeldq, gain.data, rnoise.data, meta["NFRAMES"],
        meta["TGROUP"], out=owned(gdq, np.uint8), **params)
    if info["primary_cosmic_rays"] is not None:
        ramp.header["PRIMECRS"] = (info["primary_cosmic_rays"],
                                   "Cosmic ray rate per thousand pixels per second")
    ramp.header["R_GAIN"] = os.path.basename(gain.path)
    ramp.header["R_READNO"] = os.path.basename(rnoise.path)
    log.info("jump: %s regime, %d primary jumps, %d JUMP_DET groups after neighbours",
             info["regime"], info["n_primary_crs"], info["n_jump_groups"])
    return ramp
