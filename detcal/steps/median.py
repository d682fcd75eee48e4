"""Exact column medians of short columns, as numpy's (nan)median computes them, fast.

The jump and ramp_fit steps need, bit for bit as stcal computes them with ``np.nanmedian`` /
``np.median``, the median of every column of a 2-D array ``x`` of shape (N, P): N values (group
differences, up to a few hundred) for each of P pixels (a block of detector rows). The median is
``(a + b) / 2`` in float64 of the two middle values ``a``, ``b`` of the sorted non-NaN values (the
same value twice for an odd count); NaN when a column has no value.

How (measured on 2 shared cores, numpy 2.4, float32):

* N <= 32: a sorting network (Batcher's odd-even merge sort) of ``np.minimum``/``np.maximum`` over
  whole rows, NaN as +inf so that they sort last (about 2x faster than a row sort at N = 9-18).
* N > 32: a C-contiguous transposed copy (P, N), made in tiles of :data:`TILE_ROWS` rows (about 4x
  faster than numpy's one-shot transposed copy of a block whose rows are far apart in memory, as
  row blocks of a 4-D ramp are), then numpy's SIMD sort of each row (NaN sorted last). A selection
  (``np.partition``) is slower than this sort at these lengths (for a single middle rank and for
  two).
* The middle values are read at the positions of the most common count of values (every value,
  for pixels without NaN), gathering per pixel only for the others.
* ramp_fit's median rate (:func:`median_of_differences`, the float64 differences of ``y / T`` of
  a float32 ramp, N > 32): the rows sorted are int32 keys of the float32 differences ``y[k+1] -
  y[k]`` carrying the index k (numpy's int32 sort takes ~55 ns per 37 values against ~105 for
  float64, measured interleaved); the keys identify the middle elements, whose float64
  differences are then computed exactly (no float64 array of every difference).
"""

import functools
import threading

import numpy as np

#: Rows copied per tile by :func:`transpose` (8: fastest at N = 18-198 on the benchmark machine).
TILE_ROWS = 8

#: Output bytes per column chunk of :func:`transpose` (measured: 1 MB best of 128 kB-1 MB).
TILE_BYTES = 1024 * 1024

#: Longest column sorted with the sorting network.
NETWORK_MAX = 32


_scratch = threading.local()


def scratch(key, shape, dtype):
    """A work array of ``shape`` and ``dtype`` for ``key``, reused by the next call of the same
    thread with the same key, shape and dtype (contents undefined).

    Block loops allocate arrays of the same few MB at every block; a fresh allocation of that
    size is a new memory mapping whose pages fault in again at first touch, which costs more
    than the arithmetic on them (about 4x in ramp_fit's median rate on the shared benchmark
    machine). :func:`release_scratch` frees this thread's arrays.
    """
    pool = getattr(_scratch, "arrays", None)
    if pool is None:
        pool = _scratch.arrays = {}
    arr = pool.get(key)
    if arr is None or arr.shape != tuple(shape) or arr.dtype != dtype:
        arr = pool[key] = np.empty(shape, dtype)
    return arr


def release_scratch():
    """Free the work arrays :func:`scratch` keeps for this thread."""
    _scratch.arrays = {}


def transpose(x, dtype=None, out=None):
    """C-contiguous transposed copy of ``x`` (N, P) -> (P, N), optionally cast to ``dtype``.

    Copies tiles of :data:`TILE_ROWS` rows by at most :data:`TILE_BYTES` of output, so that a
    tile's source rows stay in the cache and the TLB while their columns are written and the
    output lines are complete before they leave the cache (a plain ``np.array(x.T, order='C')``
    reads one element of every row in turn: about 3 ns per element against 0.6 here).
    ``out``: a C-contiguous (P, N) array to fill (its dtype wins).
    """
    n, p = x.shape
    if out is None:
        out = np.empty((p, n), x.dtype if dtype is None else dtype)
    cols = max(64, TILE_BYTES // max(1, n * out.itemsize))
    for c0 in range(0, p, cols):
        o = out[c0:c0 + cols]
        for r0 in range(0, n, TILE_ROWS):
            o[:, r0:r0 + TILE_ROWS] = x[r0:r0 + TILE_ROWS, c0:c0 + cols].T
    return out


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


@functools.lru_cache(maxsize=None)
def _median_network(n):
    """The comparators of :func:`_network` that the two middle outputs depend on (in order)."""
    needed = {(n - 1) // 2, n // 2}
    kept = []
    for i, j in reversed(_network(n)):
        if i in needed or j in needed:
            needed |= {i, j}
            kept.append((i, j))
    return tuple(reversed(kept))


def _run_network(x, pairs, work=None):
    """Apply the comparators ``pairs`` to the rows of ``x`` (N, P); returns the list of N rows
    (views of a new buffer, or of a :func:`scratch` array for the key ``work``). Rows are ordered
    by np.minimum/np.maximum (NaN propagate)."""
    N = x.shape[0]
    shape = (N + 1,) + x.shape[1:]
    buf = np.empty(shape, x.dtype) if work is None else scratch(work, shape, x.dtype)
    np.copyto(buf[:N], x)
    rows = list(buf[:N])
    spare = buf[N]
    for i, j in pairs:
        a, b = rows[i], rows[j]
        np.minimum(a, b, out=spare)
        np.maximum(a, b, out=b)
        rows[i] = spare
        spare = a
    return rows


def _network_sort(x, nan, work=None):
    """Sorting network over the rows of ``x`` (N, P) into a new array (a :func:`scratch` array for
    the key ``work``); ``nan``: np.isnan(x), sorted last as +inf."""
    x = np.where(nan, np.inf, x) if nan.any() else x
    out = None if work is None else scratch(f"{work}.sorted", x.shape, x.dtype)
    return np.stack(_run_network(x, _network(x.shape[0]), work), out=out)


def sort_columns(x, work=None):
    """Sort ``x`` (N, P) along axis 0 into a new array; NaN become +inf (so they sort last).

    Up to :data:`NETWORK_MAX` rows a sorting network; above, contiguous rows of a transposed copy
    are sorted and a transposed (P, N) -> (N, P) view is returned. The values are those of
    ``np.sort(x, axis=0)`` with NaN replaced by +inf. ``work``: a key for :func:`scratch` arrays
    (the result is then valid until the next call with that key).
    """
    nan = np.isnan(x) if work is None else np.isnan(x, out=scratch(f"{work}.nan", x.shape, bool))
    if x.shape[0] <= NETWORK_MAX:
        return _network_sort(x, nan, work)
    out = transpose(x, out=None if work is None else scratch(f"{work}.rows", x.shape[::-1], x.dtype))
    np.copyto(out, np.inf, where=nan.T)
    out.sort(axis=1)
    return out.T


def median_sorted(S, n):
    """Median of the first ``n[p]`` values of each column of ``S`` (N, P), sorted along axis 0.

    float64 result, ``(a + b) / 2`` of the two middle values as numpy's (nan)median computes it;
    NaN where ``n == 0``. ``n``: int (P,), the count of values (non-NaN) of each column.
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


def nanmedian_columns(x, work=None):
    """``np.nanmedian(x.astype(float64), axis=0)`` of ``x`` (N, P), float32 or float64, without
    its per-column Python overhead: float64 (P,), NaN for columns without a value.

    Long columns (N > :data:`NETWORK_MAX`): sorted as rows of a tiled transposed copy (NaN last);
    the count of values is taken only for the pixels whose largest sorted value is NaN.
    ``work``: a key for :func:`scratch` arrays (None: new arrays).
    """
    N, P = x.shape

    def buffer(name, shape, dtype):
        return np.empty(shape, dtype) if work is None else scratch(f"{work}.{name}", shape, dtype)

    if N <= NETWORK_MAX:
        nan = np.isnan(x, out=buffer("nan", x.shape, bool))
        nvalid = N - np.count_nonzero(nan, axis=0)
        return median_sorted(_network_sort(x, nan, work), nvalid)
    rows = transpose(x, out=buffer("rows", (P, N), x.dtype))
    rows.sort(axis=1)                                 # numpy sorts NaN last
    nvalid = np.full(P, N, np.intp)
    some = np.flatnonzero(np.isnan(rows[:, -1]))
    if some.size:
        nvalid[some] = N - np.count_nonzero(np.isnan(rows[some]), axis=1)
    return median_sorted(rows.T, nvalid)


def median_columns(x, work=None):
    """``np.median(x, axis=0)`` of ``x`` (N, P) float64 (N >= 1) whose columns have no NaN: float64
    (P,). A column with NaN gives NaN or a number (callers treat such columns themselves).

    N <= :data:`NETWORK_MAX`: the comparators of the sorting network that the middle values
    depend on; above, the rows of a tiled transposed copy are sorted. ``work``: a key for
    :func:`scratch` arrays (None: new arrays).
    """
    N = x.shape[0]
    if N <= NETWORK_MAX:
        rows = _run_network(x, _median_network(N), work)
        return (rows[(N - 1) // 2] + rows[N // 2]) / 2.0
    out = None if work is None else scratch(work, x.shape[::-1], x.dtype)
    rows = transpose(x, out=out)
    rows.sort(axis=1)
    return (rows[:, (N - 1) // 2] + rows[:, N // 2]) / 2.0


#: Longest ramp (differences) for :func:`median_of_differences`'s keys: the difference index takes
#: the low bits of a float32, so at most 10 of its 23 mantissa bits.
KEYED_MAX = 1024


def median_of_differences(y32, T, big=None, work=None):
    """Median over axis 0 of the rate differences ``fl(y[k+1] / T) - fl(y[k] / T)`` (float64) of
    ``y32`` (n, P) float32 finite [DN], bit for bit as :func:`median_columns` of those differences
    computes it: float64 (P,) [DN/s]. ``T`` [s] float; ``big`` float64 (P,): ``max |y|`` of each
    column if known; ``work``: a key for :func:`scratch` arrays.

    The differences are ordered by integer keys (numpy sorts int32 about twice as fast as
    float64) made from ``d32 = fl32(y[k+1] - y[k])``: its float32 bits mapped to an
    order-preserving int32 whose low B bits (``2**B >= n - 1``) are replaced by ``k``. Keys equal
    above the low B bits form a *bin* of consecutive float32 values. At a middle rank, an element
    whose bin no other element shares and whose ``d32`` has its float32 neighbours on each side
    in that bin or beyond an empty bin lies more than one float32 spacing of ``d32`` from every
    other exact difference; where that spacing exceeds ``16 u max|y|`` (u = 2**-53; each rate
    difference is within ``4 u max|y| / T`` of the exact ``d / T``), the element's rank is its rank
    among the float64 rate differences, whose value is then computed as numpy computes it. Other
    columns (ties, bin edges, differences near 0: rare) are done from float64 differences.
    """
    n, P = y32.shape
    N = n - 1
    if N <= NETWORK_MAX or N > KEYED_MAX or P == 0:
        return _median_of_differences_exact(y32, T, work)
    bits = (N - 1).bit_length()
    y32 = np.ascontiguousarray(y32)

    def buffer(name, shape, dtype):
        return np.empty(shape, dtype) if work is None else scratch(f"{work}.{name}", shape, dtype)

    def order_key(v, tmp):      # float32 bits (int32 view) -> order-preserving int32, in place
        np.right_shift(v, 31, out=tmp)
        np.bitwise_and(tmp, np.int32(0x7FFFFFFF), out=tmp)
        return np.bitwise_xor(v, tmp, out=v)

    keys = buffer("keys", (N, P), np.int32)
    with np.errstate(over="ignore", invalid="ignore"):   # non-finite columns take the float64 path
        np.subtract(y32[1:], y32[:-1], out=keys.view(np.float32))
    order_key(keys, buffer("flip", (N, P), np.int32))
    low = np.int32((1 << bits) - 1)
    np.bitwise_or(keys, low, out=keys)
    np.bitwise_xor(keys, (low ^ np.arange(N, dtype=np.int32))[:, None], out=keys)
    rows = transpose(keys, out=buffer("rows", (P, N), np.int32))
    rows.sort(axis=1)

    a, b = (N - 1) // 2, N // 2
    bins = {r: rows[:, r] >> bits for r in range(a - 1, b + 2)}
    ok = (bins[a - 1] != bins[a]) & (bins[b] != bins[b + 1]) & ((a == b) | (bins[a] != bins[b]))
    if big is None:
        big = np.fmax(np.abs(y32.max(axis=0)), np.abs(y32.min(axis=0))).astype(np.float64)
    small = big * 2.0 ** -24                 # |d32| above: its float32 spacing exceeds 16 u max|y|
    flat = y32.reshape(-1)
    base = np.arange(P)
    halves = []
    for r in sorted({a, b}):
        at = (rows[:, r] & low) * P + base
        y0 = flat[at]
        y1 = flat[at + P]
        with np.errstate(over="ignore", invalid="ignore"):
            d32 = y1 - y0
        pos = order_key(d32.view(np.int32).copy(), np.empty(P, np.int32)) & low
        ok &= (pos != 0) | (bins[r - 1] < bins[r] - 1)
        ok &= (pos != low) | (bins[r + 1] > bins[r] + 1)
        ok &= np.abs(d32) > small
        halves.append(np.divide(y1, T, dtype=np.float64) - np.divide(y0, T, dtype=np.float64))
    med = (halves[0] + halves[-1]) / 2.0
    bad = np.flatnonzero(~ok)
    if bad.size:
        med[bad] = _median_of_differences_exact(y32[:, bad], T)
    return med


def _median_of_differences_exact(y32, T, work=None):
    """:func:`median_of_differences` from the float64 differences (:func:`median_columns`)."""
    n, P = y32.shape
    if work is None:
        r, d = np.empty((n, P)), np.empty((n - 1, P))
    else:
        r, d = scratch(f"{work}.r", (n, P), np.float64), scratch(f"{work}.d", (n - 1, P), np.float64)
    np.divide(y32, T, out=r, dtype=np.float64)
    return median_columns(np.subtract(r[1:], r[:-1], out=d), work=work)
