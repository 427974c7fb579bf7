"""Sorting kernels: a stable merge sort along the last axis of a 2-D block, and the
run-length pass that ``unique`` and ``mode`` read from a sorted row.

Order is PyTorch's: NaN sorts above every number (last ascending, first descending), and
ties keep their input order (the sort is stable, which PyTorch's ``stable=False`` allows
too). Rows are sorted in parallel from ``PARALLEL_MIN`` elements on. Nothing here indexes
with a value read from an input array.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["argsort_rows", "topk_rows", "rows", "restore", "unique_runs", "mode_rows", "unique_slices"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_RUN = 16          # rows are first sorted in runs of this length by insertion


@njit(inline="always", error_model="numpy")
def _before(a, b, descending):
    """Whether ``a`` goes strictly before ``b``: NaN is the largest value."""
    if descending:
        if a != a:
            return b == b
        if b != b:
            return False
        return a > b
    if a != a:
        return False
    if b != b:
        return True
    return a < b


@njit(inline="always", error_model="numpy")
def _sort_row(v, idx, tmp, descending):
    n = v.shape[0]
    for i in range(n):
        idx[i] = i
    for lo in range(0, n, _RUN):
        hi = min(lo + _RUN, n)
        for i in range(lo + 1, hi):
            j = idx[i]
            k = i
            while k > lo and _before(v[j], v[idx[k - 1]], descending):
                idx[k] = idx[k - 1]
                k -= 1
            idx[k] = j
    width = _RUN
    flipped = False
    while width < n:
        src = tmp if flipped else idx
        dst = idx if flipped else tmp
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if _before(v[src[j]], v[src[i]], descending):
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
        flipped = not flipped
        width *= 2
    if flipped:
        for i in range(n):
            idx[i] = tmp[i]


@njit(inline="always", error_model="numpy")
def _take(v, idx, out):
    for i in range(idx.shape[0]):
        out[i] = v[idx[i]]


@njit(**_JIT)
def _argsort_serial(x, idx, values, descending):
    tmp = np.empty(x.shape[1], np.int64)
    for r in range(x.shape[0]):
        _sort_row(x[r], idx[r], tmp, descending)
        _take(x[r], idx[r], values[r])


@njit(parallel=True, **_JIT)
def _argsort_parallel(x, idx, values, descending):
    for r in prange(x.shape[0]):
        tmp = np.empty(x.shape[1], np.int64)
        _sort_row(x[r], idx[r], tmp, descending)
        _take(x[r], idx[r], values[r])


def argsort_rows(x, descending):
    """Each row of the C-contiguous 2-D ``x`` sorted: (values, the stable sorting permutation)."""
    idx = np.empty(x.shape, np.int64)
    values = np.empty_like(x)
    if x.size >= PARALLEL_MIN and x.shape[0] > 1:
        with parallel_lock:
            _argsort_parallel(x, idx, values, descending)
    elif x.size:
        _argsort_serial(x, idx, values, descending)
    return values, idx


@njit(inline="always", error_model="numpy")
def _topk_row(v, idx, k, descending):
    """The first ``k`` positions of ``v``'s stable order, kept sorted by insertion: a new
    element enters only if it goes strictly before the current last (ties: earlier wins)."""
    count = 0
    for i in range(v.shape[0]):
        if count == k and (k == 0 or not _before(v[i], v[idx[k - 1]], descending)):
            continue
        j = count if count < k else k - 1
        while j > 0 and _before(v[i], v[idx[j - 1]], descending):
            idx[j] = idx[j - 1]
            j -= 1
        idx[j] = i
        if count < k:
            count += 1


@njit(**_JIT)
def _topk_serial(x, idx, values, k, descending):
    for r in range(x.shape[0]):
        _topk_row(x[r], idx[r], k, descending)
        _take(x[r], idx[r], values[r])


@njit(parallel=True, **_JIT)
def _topk_parallel(x, idx, values, k, descending):
    for r in prange(x.shape[0]):
        _topk_row(x[r], idx[r], k, descending)
        _take(x[r], idx[r], values[r])


def topk_rows(x, k, descending):
    """Each row's ``k`` first elements in stable sorted order (a full sort's first ``k``
    columns), for ``k`` small next to the row: about one comparison per element."""
    idx = np.empty((x.shape[0], k), np.int64)
    values = np.empty((x.shape[0], k), x.dtype)
    if x.size >= PARALLEL_MIN and x.shape[0] > 1:
        with parallel_lock:
            _topk_parallel(x, idx, values, k, descending)
    elif x.size and k:
        _topk_serial(x, idx, values, k, descending)
    return values, idx


def rows(x, dim):
    """``x`` with ``dim`` moved last, as a C-contiguous 2-D block (a copy unless it already is one)."""
    moved = np.moveaxis(x, dim, -1) if x.ndim else x.reshape(1)
    n = moved.shape[-1]
    count = 1
    for m in moved.shape[:-1]:
        count *= m
    return np.ascontiguousarray(moved).reshape(count, n), moved.shape


def restore(block, moved, dim, ndim):
    """A 2-D block from ``rows`` (of the same or another last size) back in the dim order of the
    ``ndim``-D array it came from, C-contiguous."""
    arr = block.reshape(moved)
    if not ndim:
        return arr.reshape(())
    return np.ascontiguousarray(np.moveaxis(arr, -1, dim))


@njit(**_JIT)
def unique_runs(values, order, consecutive):
    """Runs of equal values in ``values`` (sorted, or as given with ``consecutive``): the
    first value of each run, each input position's run number (``order[i]`` is the input
    position of ``values[i]``) and the run lengths. NaNs are each their own run."""
    n = values.shape[0]
    starts = np.empty(n, np.int64)
    inverse = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if i == 0 or values[i] != values[i - 1]:
            starts[m] = i
            m += 1
        p = order[i]
        if 0 <= p < n:
            inverse[p] = m - 1
    firsts = np.empty(m, values.dtype)
    counts = np.empty(m, np.int64)
    for k in range(m):
        firsts[k] = values[starts[k]]
        counts[k] = (starts[k + 1] if k + 1 < m else n) - starts[k]
    return firsts, inverse, counts


@njit(**_JIT)
def mode_rows(sorted_values, order):
    """Per row of sorted values: the most frequent value (the smallest of equally frequent
    ones) and the input position of its last occurrence, as PyTorch's CPU kernel returns."""
    rows_, n = sorted_values.shape
    values = np.empty(rows_, sorted_values.dtype)
    indices = np.empty(rows_, np.int64)
    for r in range(rows_):
        v = sorted_values[r]
        best, best_len, start = 0, 0, 0
        for i in range(1, n + 1):
            if i == n or v[i] != v[i - 1]:
                if i - start > best_len:
                    best, best_len = start, i - start
                start = i
        values[r] = v[best]
        last = best
        for i in range(best, best + best_len):
            if order[r, i] > order[r, last]:
                last = i
        indices[r] = order[r, last]
    return values, indices


@njit(inline="always", error_model="numpy")
def _row_before(x, a, b):
    """Whether row ``a`` of ``x`` goes strictly before row ``b`` (lexicographic, NaN largest)."""
    for j in range(x.shape[1]):
        u, v = x[a, j], x[b, j]
        if _before(u, v, False):
            return True
        if _before(v, u, False):
            return False
    return False


@njit(inline="always", error_model="numpy")
def _rows_equal(x, a, b):
    for j in range(x.shape[1]):
        if x[a, j] != x[b, j]:
            return False
    return True


@njit(**_JIT)
def unique_slices(x, consecutive):
    """The distinct rows of the 2-D ``x`` (in lexicographic order, or runs as given with
    ``consecutive``): the position of each kept row, each row's group, and the group sizes.
    A stable bottom-up merge sort of the row positions."""
    n = x.shape[0]
    order = np.arange(n)
    if not consecutive:
        tmp = np.empty(n, np.int64)
        width = 1
        while width < n:
            for lo in range(0, n, 2 * width):
                mid = min(lo + width, n)
                hi = min(lo + 2 * width, n)
                i, j, k = lo, mid, lo
                while i < mid and j < hi:
                    if _row_before(x, order[j], order[i]):
                        tmp[k] = order[j]
                        j += 1
                    else:
                        tmp[k] = order[i]
                        i += 1
                    k += 1
                while i < mid:
                    tmp[k] = order[i]
                    i += 1
                    k += 1
                while j < hi:
                    tmp[k] = order[j]
                    j += 1
                    k += 1
            order, tmp = tmp, order
            width *= 2
    firsts = np.empty(n, np.int64)
    inverse = np.empty(n, np.int64)
    starts = np.empty(n + 1, np.int64)
    m = 0
    for i in range(n):
        if i == 0 or not _rows_equal(x, order[i], order[i - 1]):
            firsts[m] = order[i]
            starts[m] = i
            m += 1
        inverse[order[i]] = m - 1
    starts[m] = n
    counts = np.empty(m, np.int64)
    for g in range(m):
        counts[g] = starts[g + 1] - starts[g]
    return firsts[:m].copy(), inverse, counts


guard(globals())
