"""The ``sort`` family on CUDA: a stable bottom-up merge sort of each row (insertion sorts of runs
of ``_RUN``, one thread per run; then merge passes, one launch each, one thread per pair of
runs, between the index rows and a scratch copy), and the passes ``unique`` and ``mode``
make over sorted rows. The order is ``ops/sort.py``'s: NaN
above every number, ties in input order. Indices read from arrays are positions this code wrote
(a permutation of ``0..n-1``), and each is checked against ``n`` before use anyway.

``rows`` and ``restore`` are views and copies of the target (no kernel); ``topk_rows`` is a
full sort's first ``k`` columns.
"""
import numpy as np
from numba import cuda

__all__ = ["Sort"]

_THREADS = 32
_RUN = 16


@cuda.jit(device=True, inline=True)
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


@cuda.jit(device=True, inline=True)
def _at(x, xo, s1, idx, k, n):
    j = idx[k]
    if j < 0 or j >= n:          # never: idx holds a permutation this kernel wrote
        j = 0
    return x[xo + j * s1]


@cuda.jit
def _runs_kernel(x, xo, xs0, xs1, idx, rows, n, descending):
    """One thread per run of ``_RUN`` positions of a row: ``idx`` (C-contiguous (rows, n))
    gets the run's positions in stable sorted order (insertion sort)."""
    t = cuda.grid(1)
    nruns = (n + _RUN - 1) // _RUN
    if t >= rows * nruns:
        return
    r = t // nruns
    lo = (t % nruns) * _RUN
    hi = min(lo + _RUN, n)
    base = r * n
    row = xo + r * xs0
    for i in range(lo, hi):
        v = x[row + i * xs1]
        k = i
        while k > lo and _before(v, _at(x, row, xs1, idx, base + k - 1, n), descending):
            idx[base + k] = idx[base + k - 1]
            k -= 1
        idx[base + k] = i


@cuda.jit
def _merge_kernel(x, xo, xs0, xs1, src, dst, rows, n, width, descending):
    """One thread per pair of sorted runs of ``width`` in a row of ``src``: merged, stably (the
    left run wins ties), into ``dst``."""
    t = cuda.grid(1)
    npairs = (n + 2 * width - 1) // (2 * width)
    if t >= rows * npairs:
        return
    r = t // npairs
    lo = (t % npairs) * 2 * width
    mid = min(lo + width, n)
    hi = min(lo + 2 * width, n)
    base = r * n
    row = xo + r * xs0
    i, j, k = lo, mid, lo
    while i < mid and j < hi:
        if _before(_at(x, row, xs1, src, base + j, n), _at(x, row, xs1, src, base + i, n), descending):
            dst[base + k] = src[base + j]
            j += 1
        else:
            dst[base + k] = src[base + i]
            i += 1
        k += 1
    while i < mid:
        dst[base + k] = src[base + i]
        i += 1
        k += 1
    while j < hi:
        dst[base + k] = src[base + j]
        j += 1
        k += 1


@cuda.jit
def _take_kernel(x, xo, xs0, xs1, idx, values, rows, n):
    """``values[r, i] = x[r, idx[r, i]]``, one thread per element."""
    t = cuda.grid(1)
    if t >= rows * n:
        return
    r = t // n
    values[t] = _at(x, xo + r * xs0, xs1, idx, t, n)


@cuda.jit
def _unique_runs_kernel(values, order, n, firsts, inverse, counts, found):
    """One thread: runs of equal values of the 1-D ``values`` (``ops/sort.py``'s ``unique_runs``);
    ``counts`` first holds each run's start; ``found[0]``: the number of runs."""
    if cuda.grid(1) != 0:
        return
    m = 0
    for i in range(n):
        if i == 0 or values[i] != values[i - 1]:
            counts[m] = i
            firsts[m] = values[i]
            m += 1
        p = order[i]
        if 0 <= p < n:
            inverse[p] = m - 1
    for k in range(m):
        counts[k] = (counts[k + 1] if k + 1 < m else n) - counts[k]
    found[0] = m


@cuda.jit
def _mode_kernel(v, o, rows, n, values, indices):
    """Per sorted row (C-contiguous ``v`` and ``o``): the most frequent value (the smallest of
    ties) and the input position of its last occurrence."""
    r = cuda.grid(1)
    if r >= rows:
        return
    base = r * n
    best, best_len, start = 0, 0, 0
    for i in range(1, n + 1):
        if i == n or v[base + i] != v[base + i - 1]:
            if i - start > best_len:
                best, best_len = start, i - start
            start = i
    values[r] = v[base + best]
    last = best
    for i in range(best, best + best_len):
        if o[base + i] > o[base + last]:
            last = i
    indices[r] = o[base + last]


@cuda.jit(device=True, inline=True)
def _row_before(x, w, a, b):
    """Whether row ``a`` of the C-contiguous ``x`` (rows of ``w``) goes strictly before row ``b``."""
    for j in range(w):
        u, v = x[a * w + j], x[b * w + j]
        if _before(u, v, False):
            return True
        if _before(v, u, False):
            return False
    return False


@cuda.jit(device=True, inline=True)
def _rows_equal(x, w, a, b):
    for j in range(w):
        if x[a * w + j] != x[b * w + j]:
            return False
    return True


@cuda.jit
def _unique_slices_kernel(x, n, w, consecutive, order, tmp, firsts, inverse, counts, found):
    """One thread: ``ops/sort.py``'s ``unique_slices`` (a stable bottom-up merge sort of the row
    positions, then runs of equal rows); ``counts`` first holds each group's start row."""
    if cuda.grid(1) != 0:
        return
    for i in range(n):
        order[i] = i
    flipped = False
    if not consecutive:
        width = 1
        while width < n:
            src = tmp if flipped else order
            dst = order if flipped else tmp
            for lo in range(0, n, 2 * width):
                mid = min(lo + width, n)
                hi = min(lo + 2 * width, n)
                i, j, k = lo, mid, lo
                while i < mid and j < hi:
                    if _row_before(x, w, src[j], src[i]):
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
    src = tmp if flipped else order
    m = 0
    for i in range(n):
        p = src[i]
        if p < 0 or p >= n:        # never: src is a permutation written above
            p = 0
        if i == 0 or not _rows_equal(x, w, p, src[i - 1]):
            firsts[m] = p
            counts[m] = i
            m += 1
        inverse[p] = m - 1
    for g in range(m):
        counts[g] = (counts[g + 1] if g + 1 < m else n) - counts[g]
    found[0] = m


def _grid(n):
    threads = max(1, min(_THREADS, n))
    return -(-n // threads), threads


class Sort:
    """The CPU's ``ops/sort.py`` members over ``DeviceArray`` blocks, for ``CudaTarget.sort``."""

    def __init__(self, target):
        self._t = target

    def rows(self, x, dim):
        """``x`` with ``dim`` moved last, as a C-contiguous 2-D block, and the moved shape."""
        t = self._t
        if x.ndim:
            moved = t.permute(x, tuple(d for d in range(x.ndim) if d != dim) + (dim,))
        else:
            moved = t.reshape(x, (1,))
        n = moved.shape[-1]
        count = 1
        for m in moved.shape[:-1]:
            count *= m
        return t.reshape(t.contiguous(moved), (count, n)), moved.shape

    def restore(self, block, moved, dim, ndim):
        t = self._t
        arr = t.reshape(block, moved)
        if not ndim:
            return t.reshape(arr, ())
        order = list(range(ndim - 1))
        order.insert(dim, ndim - 1)
        return t.contiguous(t.permute(arr, tuple(order)))

    def argsort_rows(self, x, descending):
        """Sorted rows and their stable permutations: runs sorted in parallel, then ``log2(n/16)``
        merge passes, each a launch with one thread per pair of runs."""
        t = self._t
        idx, values = t.empty(x.shape, np.int64), t.empty(x.shape, x.dtype)
        if x.size == 0:
            return values, idx
        rows, n = x.shape
        xs0, xs1 = x.element_strides()
        _runs_kernel[_grid(rows * (-(-n // _RUN)))](x.buf, x.offset, xs0, xs1, idx.buf, rows, n, descending)
        other = None
        width = _RUN
        while width < n:
            if other is None:
                other = t.empty(x.shape, np.int64)
            _merge_kernel[_grid(rows * (-(-n // (2 * width))))](x.buf, x.offset, xs0, xs1, idx.buf, other.buf, rows,
                                                                 n, width, descending)
            idx, other = other, idx
            width *= 2
        _take_kernel[_grid(rows * n)](x.buf, x.offset, xs0, xs1, idx.buf, values.buf, rows, n)
        return values, idx

    def topk_rows(self, x, k, descending):
        t = self._t
        values, idx = self.argsort_rows(x, descending)
        first_k = (slice(None), slice(None, k))
        return t.contiguous(t.slice(values, first_k)), t.contiguous(t.slice(idx, first_k))

    def unique_runs(self, values, order, consecutive):
        """(first value of each run, each input position's run, run lengths) of 1-D ``values``;
        the number of runs is read back to size the outputs."""
        t = self._t
        n = values.size
        values, order = t.contiguous(values), t.contiguous(order)
        firsts, inverse, counts = t.empty(n, values.dtype), t.empty(n, np.int64), t.empty(n, np.int64)
        if n == 0:
            return firsts, inverse, counts
        found = t.empty(1, np.int64)
        _unique_runs_kernel[1, 1](values.buf[values.offset:], order.buf[order.offset:], n, firsts.buf, inverse.buf,
                                  counts.buf, found.buf)
        m = t.item(found)
        return t.copy(t.slice(firsts, (slice(0, m),))), inverse, t.copy(t.slice(counts, (slice(0, m),)))

    def mode_rows(self, sorted_values, order):
        t = self._t
        v, o = t.contiguous(sorted_values), t.contiguous(order)
        rows, n = v.shape
        values, indices = t.empty(rows, v.dtype), t.empty(rows, np.int64)
        if rows and n:
            blocks, threads = _grid(rows)
            _mode_kernel[blocks, threads](v.buf[v.offset:], o.buf[o.offset:], rows, n, values.buf, indices.buf)
        return values, indices

    def unique_slices(self, x, consecutive):
        """The distinct rows of the 2-D ``x``: each kept row's position, each row's group, the
        group sizes (one thread; the group count is read back to size the outputs)."""
        t = self._t
        x = t.contiguous(x)
        n, w = x.shape
        order, tmp = t.empty(n, np.int64), t.empty(n, np.int64)
        firsts, inverse, counts = t.empty(n, np.int64), t.empty(n, np.int64), t.empty(n, np.int64)
        found = t.zeros(1, np.int64)
        if n:
            _unique_slices_kernel[1, 1](x.buf[x.offset:], n, w, consecutive, order.buf, tmp.buf, firsts.buf,
                                        inverse.buf, counts.buf, found.buf)
        m = t.item(found)
        return t.copy(t.slice(firsts, (slice(0, m),))), inverse, t.copy(t.slice(counts, (slice(0, m),)))
