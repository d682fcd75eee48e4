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

Medians avoid ``np.nanmedian``: columns of up to 32 differences are sorted with a sorting
network over whole rows (NaN sorted last), and the middle values are read at the positions of the
most common number of usable differences (the fast path: pixels without NaN), gathering per pixel
only for the others. The arithmetic follows stcal's dtypes (float32 data and differences, float64
medians, sigmas and ratios; in the iterative regime, the median of later iterations rounded to
float32) so that the flags are bit-identical. The work is done in blocks of rows sized from a memory budget: the
peak memory is the input and output arrays plus about ``memory_mb``. Columns of more than 32
differences are sorted as contiguous rows of a transposed copy. The single-pass test never builds
float64 arrays of the block: a float32 screen (``d`` outside ``med -+ threshold * sig`` shrunk by
1e-5) selects the candidates and stcal's float64 ratio is computed for those only; the ratios of
the neighbour test are computed only where JUMP is set. Neighbour seeds come from the flags before
any neighbour flagging, so they are collected over all blocks and their neighbours flagged at the
end: the result does not depend on the block size.

Deliberate differences from stcal: when the exposure has too few usable groups the jump search is
skipped and ``n_primary_crs`` is 0 (stcal reports -99); snowball and MIRI-shower flagging
(off by default in jwst) are not implemented; inputs are never modified.
"""

import functools
import logging
import os
import warnings

import numpy as np

from .. import dqflags
from .descriptor import Param, Step

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


def rows_per_block(nints, ngroups, nx, memory_mb,
                   bytes_per_pixel_group=_BYTES_PER_PIXEL_GROUP):
    """Detector rows per block so that ``bytes_per_pixel_group`` bytes of temporaries per
    (integration, group, pixel) stay within ``memory_mb`` [MB]; at least 1 (shared with ramp_fit)."""
    per_row = max(1, nints * ngroups * nx * bytes_per_pixel_group)
    return max(1, int(memory_mb * 1e6) // per_row)


def check_ramp_inputs(data, groupdq, gain, readnoise):
    """Common input checks of :func:`detect_jumps` and :func:`detcal.steps.ramp_fit.fit_ramps`.

    Returns ``data`` as an ndarray (must be 4-D (nints, ngroups, ny, nx); ``groupdq`` of the same
    shape) and ``gain``, ``readnoise`` as float32 arrays. Raises ValueError otherwise.
    """
    data = np.asarray(data)
    if data.ndim != 4:
        raise ValueError(f"data must be 4-D (nints, ngroups, ny, nx), got shape {data.shape}")
    if np.shape(groupdq) != data.shape:
        raise ValueError(f"groupdq shape {np.shape(groupdq)} does not match data {data.shape}")
    return data, np.asarray(gain, dtype=np.float32), np.asarray(readnoise, dtype=np.float32)


def check_frame_shapes(ny, nx, arrays):
    """Raise ValueError naming the first (name, array) of ``arrays`` whose shape is not (ny, nx)."""
    for name, arr in arrays:
        if np.shape(arr) != (ny, nx):
            raise ValueError(f"{name} shape {np.shape(arr)} does not match the frames {(ny, nx)}")


@functools.lru_cache(maxsize=None)
def _network(n):
    """Comparator pairs of Batcher's odd-even merge sort for ``n`` elements."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def sort_columns(x):
    """Sort ``x`` (N, P) along axis 0 into a new array; NaN become +inf (so they sort last).

    Up to 32 rows use a sorting network of ``np.minimum``/``np.maximum`` over whole rows
    (several times faster than ``np.sort`` along a short axis); the result is the same.
    """
    N = x.shape[0]
    nan = np.isnan(x)
    if N > 32:
        # Long columns: sort contiguous rows of the transposed copy (numpy's SIMD sort) and
        # return a transposed view; faster than a strided sort along axis 0.
        out = np.array(x.T, order="C", copy=True)     # never a view of x: sorted in place
        np.copyto(out, np.inf, where=nan.T)
        out.sort(axis=1)
        return out.T
    buf = np.empty((N + 1,) + x.shape[1:], x.dtype)
    np.copyto(buf[:N], x)
    np.copyto(buf[:N], np.inf, where=nan)
    rows = list(buf[:N])
    spare = buf[N]
    for i, j in _network(N):
        a, b = rows[i], rows[j]
        np.minimum(a, b, out=spare)
        np.maximum(a, b, out=b)
        rows[i] = spare
        spare = a
    return np.stack(rows)


def sort_for_median(x):
    """Sort ``x`` (N, P) along axis 0 for :func:`_median_sorted`: NaN sorted last (as +inf up to
    32 rows, where the sorting network is used; as NaN above, where contiguous rows of a
    transposed copy are sorted and a transposed view is returned)."""
    if x.shape[0] <= 32:
        return sort_columns(x)
    out = np.array(x.T, order="C", copy=True)
    out.sort(axis=1)                          # numpy sorts NaN last
    return out.T


def _median_sorted(S, n):
    """Median of the first ``n[p]`` values of each column of ``S`` (sorted along axis 0).

    float64 result, ``(a + b) / 2`` of the two middle values as numpy's (nan)median computes it;
    NaN where ``n == 0``.
    """
    N = S.shape[0]
    if n.size == 0:
        return np.zeros(0)
    common = int(np.bincount(np.clip(n, 0, N)).argmax())   # usually N: no NaN in the pixel
    a = S[max(0, (common - 1) // 2)].astype(np.float64)
    b = S[min(N - 1, common // 2)].astype(np.float64)
    other = np.flatnonzero(n != common)
    if other.size:
        m = n[other]
        a[other] = S[np.clip((m - 1) // 2, 0, N - 1), other]
        b[other] = S[np.clip(m // 2, 0, N - 1), other]
    med = (a + b) / 2.0
    med[n <= 0] = np.nan
    return med


def _sort_with_counts(x):
    """Sort ``x`` (N, P) along axis 0 (NaN as +inf, last); return (sorted, count of non-NaN)."""
    nvalid = x.shape[0] - np.count_nonzero(np.isnan(x), axis=0)
    return sort_columns(x), nvalid


def signed_median(d):
    """NaN-ignoring median of ``d`` (nints, ndiffs, P) over integrations and differences (float64)."""
    N = d.shape[0] * d.shape[1]
    x = d.reshape(N, -1)
    nvalid = N - np.count_nonzero(np.isnan(x), axis=0)
    return _median_sorted(sort_for_median(x), nvalid)


def _sigma(med, rn2_term):
    sig = np.sqrt(np.abs(med) + rn2_term)
    sig[sig == 0.0] = np.nan
    return sig


def _clipped_abs_median(A):
    """stcal ``calc_med_first_diffs`` on |d| (nints, ndiffs, P): returns (median float64, usable count)."""
    N = A.shape[0] * A.shape[1]
    S, v = _sort_with_counts(A.reshape(N, -1))
    mx = np.take_along_axis(S, np.clip(v - 1, 0, N - 1)[None, :], axis=0)
    ncopies = np.count_nonzero(S == mx, axis=0)
    inf_max = np.isinf(mx[0])   # NaN sorted as +inf: do not count them as copies of the max
    ncopies[inf_max] -= (N - v)[inf_max]
    n = np.where(v >= 4, v - ncopies, v)
    med = _median_sorted(S, n)
    two = v == 2
    if two.any():
        med[two] = S[0, two]
    med[v < 2] = np.nan
    return med, v


def _cr_locs(A, rn2_term, thresholds, round_median):
    """stcal ``get_cr_locs`` for the pixels of A (nints, ndiffs, P).

    Returns (cr (nints, P) bool, ratio (nints, ndiffs, P) float64).
    """
    normal, three_diff, two_diff = thresholds
    med, nuse = _clipped_abs_median(A)
    if round_median:  # later iterations store the median in a float32 array
        med = med.astype(np.float32).astype(np.float64)
    sig = _sigma(med, rn2_term)
    e = np.subtract(A, med, dtype=np.float64).astype(np.float32)
    ratio = np.abs(e).astype(np.float64)
    ratio /= sig
    max_ratio = np.fmax.reduce(ratio, axis=1)  # nanmax over differences, per integration
    cr = (((nuse >= 4) & (max_ratio > normal))
          | ((nuse == 3) & (max_ratio > three_diff))
          | ((nuse == 2) & (max_ratio > two_diff)))
    return cr, ratio


def _iterative(d, g, rn2_term, thresholds):
    """Iterative one-jump-at-a-time search; sets JUMP in g[:, 1:] (g: (nints, ngroups, P) uint8)."""
    nints, ndiffs, npix = d.shape
    A = np.abs(d)
    cr, ratio = _cr_locs(A, rn2_term, thresholds, round_median=False)
    # Only pixels where a CR can be found matter from here on.
    active = np.flatnonzero(cr.any(axis=0))
    if active.size == 0:
        return
    A = A[:, :, active]
    ratio = ratio[:, :, active]
    cr = cr[:, active]
    rn2_term = rn2_term[active]
    for _ in range(nints * ndiffs):
        top = np.fmax.reduce(np.fmax.reduce(ratio, axis=1), axis=0)
        new = (ratio == top) & cr[:, None, :]
        hit = new.any(axis=(0, 1))
        if not hit.any():
            break
        keep = np.flatnonzero(hit)
        new = new[:, :, keep]
        active = active[keep]
        sub = g[:, 1:, active]
        sub[new] |= _JUMP
        g[:, 1:, active] = sub
        A = A[:, :, keep]
        A[new] = np.nan
        rn2_term = rn2_term[keep]
        cr, ratio = _cr_locs(A, rn2_term, thresholds, round_median=True)


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


def _single_pass(d, g, med, sig, threshold):
    """JUMP where ``|d - med| / sig > threshold`` (float64, as stcal), without float64 arrays of
    the whole block: a float32 screen keeps every difference outside ``med -+ threshold * sig``
    shrunk by 1e-5 (a strict superset of the jumps), the exact ratio is computed for those only."""
    with np.errstate(invalid="ignore"):
        c = threshold * sig * (1.0 - 1e-5)
        L, U = _float32_bounds(med - c, med + c)
        cand = np.flatnonzero((d < L) | (d > U))        # NaN d, med or sig: never a candidate
        hit = cand[_ratio_at(d, med, sig, cand) > threshold]
    gv = g[:, 1:]
    i, k, p = np.unravel_index(hit, d.shape)
    gv[i, k, p] |= _JUMP


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
    with np.errstate(invalid="ignore"):
        r = _ratio_at(d, med, sig, idx)
        return idx[(r < hi) & (r > lo)]


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


def detect_jumps(data, groupdq, pixeldq, gain, readnoise, nframes, tgroup=None, *,
                 rejection_threshold=4.0, three_group_rejection_threshold=6.0,
                 four_group_rejection_threshold=5.0, flag_4_neighbors=True,
                 max_jump_to_flag_neighbors=1000.0, min_jump_to_flag_neighbors=10.0,
                 after_jump_flag_dn1=0.0, after_jump_flag_time1=0.0,
                 after_jump_flag_dn2=0.0, after_jump_flag_time2=0.0,
                 minimum_groups=3, minimum_sigclip_groups=100, only_use_ints=True,
                 min_diffs_single_pass=10, memory_mb=16):
    """Flag cosmic-ray jumps with the two-point-difference method (stcal 1.20 parity).

    Parameters
    ----------
    data : ndarray, float32, shape (nints, ngroups, ny, nx)      [DN]   not modified
    groupdq : ndarray, uint8, same shape                               not modified
    pixeldq : ndarray, uint32, shape (ny, nx)                          not modified
    gain : ndarray, float32, shape (ny, nx)                      [e-/DN]
    readnoise : ndarray, float32, shape (ny, nx)                 [DN]   CDS read noise
    nframes : int                                                       frames averaged per group
    tgroup : float or None                                       [s]    group time; needed for the
        after-jump times and the primary cosmic-ray rate
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
    memory_mb : float              working-memory budget for the row blocks [MB]

    Returns
    -------
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)      new array with JUMP_DET set
    pixeldq : ndarray, uint32, shape (ny, nx)                     new array (NO_GAIN_VALUE)
    info : dict
        ``n_primary_crs`` (JUMP_DET groups before neighbour flagging, including those already
        set on input), ``regime`` ('iterative', 'single_pass', 'sigma_clip' or 'skipped'),
        ``n_jump_groups`` (JUMP_DET groups in the output), ``n_all_dnu_groups`` (groups that are
        DO_NOT_USE in every pixel), ``primary_cosmic_rays`` (per 1000 pixels per second, as jwst's
        PRIMECRS; None without ``tgroup`` or usable groups).
    """
    data, gain, readnoise = check_ramp_inputs(data, groupdq, gain, readnoise)
    nints, ngroups, ny, nx = data.shape
    check_frame_shapes(ny, nx, (("pixeldq", pixeldq), ("gain", gain), ("readnoise", readnoise)))
    if nframes < 1:
        raise ValueError(f"nframes must be >= 1, got {nframes}")

    gdq = np.array(groupdq, dtype=np.uint8, copy=True, order="C")
    pdq = np.array(pixeldq, dtype=np.uint32, copy=True)
    bad_gain = ~(gain > 0.0)
    pdq[bad_gain] |= np.uint32(dqflags.NO_GAIN_VALUE | dqflags.DO_NOT_USE)

    def rn2_term(r0, r1):
        """RN^2 / (0.5 * 2 * NFRAMES) of rows r0:r1, flattened; RN = READNOISE * gain (float32, e-)."""
        rn = readnoise[r0:r1] * gain[r0:r1]
        return (rn * rn).astype(np.float64).ravel() / float(nframes)

    # Groups that are DO_NOT_USE in every pixel decide the regime.
    all_dnu = np.array([[bool(np.all(gdq[i, k] & _DNU)) for k in range(ngroups)]
                        for i in range(nints)]).reshape(nints, ngroups)
    n_flagged = all_dnu.sum(axis=1)
    min_usable_groups = ngroups - int(n_flagged.max(initial=0))
    total_groups = nints * ngroups - int(n_flagged.sum())
    min_usable_diffs = min_usable_groups - 1
    sigclip_groups = nints if only_use_ints else total_groups
    sigclip_ok = sigclip_groups >= minimum_sigclip_groups
    if ngroups < 2 or (not sigclip_ok and min_usable_groups < minimum_groups):
        regime = "skipped"
    elif sigclip_ok:
        regime = "sigma_clip"
    elif min_usable_diffs >= min_diffs_single_pass:
        regime = "single_pass"
    else:
        regime = "iterative"

    thresholds = (rejection_threshold, four_group_rejection_threshold,
                  three_group_rejection_threshold)
    n1 = int(after_jump_flag_time1 // tgroup) if (tgroup and after_jump_flag_time1) else 0
    n2 = int(after_jump_flag_time2 // tgroup) if (tgroup and after_jump_flag_time2) else 0
    do_after = regime != "skipped" and (n1 > 0 or n2 > 0)
    if do_after:
        gmed = np.nanmedian(gain)
        e1 = np.float32(after_jump_flag_dn1) * gmed
        e2 = np.float32(after_jump_flag_dn2) * gmed

    rows = rows_per_block(nints, ngroups, nx, memory_mb)
    blocks = [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]

    def block_stats(r0, r1):
        """Differences (nints, ndiffs, P) in electrons, signed median and sigma of rows r0:r1."""
        D = np.multiply(data[:, :, r0:r1, :], gain[r0:r1], dtype=np.float32)
        D[(gdq[:, :, r0:r1, :] & _BAD) != 0] = np.nan
        D = D.reshape(nints, ngroups, -1)
        d = np.diff(D, axis=1)
        del D
        med = signed_median(d)
        sig = _sigma(med, rn2_term(r0, r1))
        return d, med, sig

    n_primary = 0
    if regime != "skipped":
        lo, hi = min_jump_to_flag_neighbors, max_jump_to_flag_neighbors
        seeds = []  # (i, group, y, x) of jumps that flag their neighbours, set after all blocks

        def neighbours(r0, r1, d, med, sig):
            g = gdq[:, :, r0:r1, :].reshape(nints, ngroups, -1)
            idx = _neighbour_seeds(d, g, med, sig, lo, hi)
            i, k, p = np.unravel_index(idx, d.shape)
            seeds.append((i, k + 1, r0 + p // nx, p % nx))

        for r0, r1 in blocks:
            d, med, sig = block_stats(r0, r1)
            g = gdq[:, :, r0:r1, :].reshape(nints, ngroups, -1)  # a view: blocks of whole rows
            if regime == "iterative":
                _iterative(d, g, rn2_term(r0, r1), thresholds)
            elif regime == "single_pass":
                _single_pass(d, g, med, sig, rejection_threshold)
            else:
                _sigma_clip(d, g, rejection_threshold, only_use_ints)
                continue
            n_primary += int(np.count_nonzero(g & _JUMP))
            if flag_4_neighbors:
                neighbours(r0, r1, d, med, sig)

        if regime == "sigma_clip":
            # A group in which every pixel is JUMP or DO_NOT_USE: JUMP-only pixels are reset.
            for i in range(nints):
                for k in range(ngroups):
                    plane = gdq[i, k]
                    if np.all((plane & (_JUMP | _DNU)) != 0):
                        plane[plane == _JUMP] = 0
            n_primary = int(np.count_nonzero(gdq & _JUMP))
            if flag_4_neighbors:
                for r0, r1 in blocks:
                    neighbours(r0, r1, *block_stats(r0, r1))

        if seeds:
            # Seeds come from the flags before any neighbour flagging, so deferring is exact.
            _flag_neighbours(gdq, *(np.concatenate(c) for c in zip(*seeds)))

        if do_after:
            for r0, r1 in blocks:
                d, med, _ = block_stats(r0, r1)
                _after_jump(d, gdq[:, :, r0:r1, :].reshape(nints, ngroups, -1), med, e1, n1, e2, n2)
    else:
        log.info("jump: skipped, the exposure has fewer than %d usable groups", minimum_groups)

    # JUMP is redundant on groups that are DO_NOT_USE or SATURATED.
    all_dnu_out = np.ones((nints, ngroups), bool)
    for r0, r1 in blocks:
        g = gdq[:, :, r0:r1, :]
        g[(g & (_JUMP | _DNU)) == (_JUMP | _DNU)] ^= _JUMP
        g[(g & (_JUMP | _SAT)) == (_JUMP | _SAT)] ^= _JUMP
        all_dnu_out &= np.all((g & _DNU) != 0, axis=(2, 3))

    n_all_dnu = int(all_dnu_out.sum())
    usable = nints * ngroups - n_all_dnu - nints
    rate = None
    if tgroup and usable >= 1:
        rate = 1000.0 * n_primary / (tgroup * usable * ny * nx)
    info = {"n_primary_crs": n_primary, "regime": regime,
            "n_jump_groups": int(np.count_nonzero(gdq & _JUMP)),
            "n_all_dnu_groups": n_all_dnu, "primary_cosmic_rays": rate}
    return gdq, pdq, info


def run(ramp, refs, **params):
    """Apply :func:`detect_jumps` to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['gain']``, ``refs['readnoise']``: GAIN and READNOISE References cut to the subarray.
    ``params``: keyword arguments of :func:`detect_jumps` (defaults: :data:`DEFAULTS`).
    Like jwst, a ramp with NGROUPS <= 2 is left unchanged (S_JUMP = SKIPPED). Sets PRIMECRS.
    """
    meta = ramp.meta("jump")
    nints, ngroups = ramp.data.shape[:2]
    if ngroups <= 2:
        log.warning("jump: NGROUPS=%d <= 2, jump detection skipped", ngroups)
        ramp.header["S_JUMP"] = "SKIPPED"
        return ramp
    gain, rnoise = refs["gain"], refs["readnoise"]
    ramp.groupdq, ramp.pixeldq, info = detect_jumps(
        ramp.data, ramp.groupdq, ramp.pixeldq, gain.data, rnoise.data, meta["NFRAMES"],
        meta["TGROUP"], **params)
    if info["primary_cosmic_rays"] is not None:
        ramp.header["PRIMECRS"] = (info["primary_cosmic_rays"],
                                   "Cosmic ray rate per thousand pixels per second")
    ramp.header["R_GAIN"] = os.path.basename(gain.path)
    ramp.header["R_READNO"] = os.path.basename(rnoise.path)
    log.info("jump: %s regime, %d primary jumps, %d JUMP_DET groups after neighbours",
             info["regime"], info["n_primary_crs"], info["n_jump_groups"])
    return ramp
