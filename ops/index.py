"""Indexing kernels: gather, scatter (assign or add), nonzero, on raw arrays.

Advanced indexing (``x[idx]``, ``index_select``, ``take``, a bool mask) reads the source
through a *plan*: the result is laid out as ``pre × adv × post``, where ``pre`` and
``post`` are plain strided dimensions of the source and ``adv`` is a table of element
offsets, one per position of the broadcast index arrays (one kernel pass over the
index coordinates, wrapping negative ones). Nothing the size of the source is
allocated; a non-contiguous or broadcast source is read in place through its strides.
The same plan drives the scatter that is the backward of the gather (and
``index_put``): distinct ``pre``/``post`` positions never collide, so threads split
those and each walks the ``adv`` table in order, which makes repeated indices
accumulate correctly.

``nonzero`` (bool masks become coordinates with it) counts per block, places the
blocks by a prefix sum and fills them, in parallel for big inputs.

``gather_dim``/``scatter_dim`` are the family of ``torch.gather``/``scatter``: an index
array of the output's shape replaces the coordinate along one dimension.

Every index value is checked in the pass that uses it (the offsets of a plan, the loops
along one dimension): nothing is ever read or written through a value out of range,
whatever the caller checked before, since an index saved for backward can be changed in
place through ``.data`` or a NumPy alias. The kernels count or locate the bad values and
the Python side raises PyTorch's error after.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, flat_buffer, parallel_lock

__all__ = ["Plan", "plan", "layout", "out_of_bounds", "gather", "scatter", "nonzero", "gather_dim",
           "scatter_dim"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_BLOCK = 4096          # elements per task of a parallel loop (about)


@njit(inline="always", error_model="numpy")
def _offset(k, shape, strides, nd):
    """Element offset of the ``k``-th position (C order) of the first ``nd`` dims of ``shape``."""
    off = 0
    for d in range(nd - 1, -1, -1):
        n = shape[d]
        off += (k % n) * strides[d]
        k //= n
    return off


@njit(inline="always", error_model="numpy")
def _size(shape, nd):
    n = 1
    for d in range(nd):
        n *= shape[d]
    return n


@njit(inline="always", error_model="numpy")
def _gather_rows(t, rows, out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    """Rows ``t * rows`` to ``t * rows + rows`` of ``out`` (a row: all dims but the last
    fixed). The first row's coordinates (pre position, adv entry, post row) come from
    divisions, the next ones from counting, so a row of one element costs no division."""
    nd = post_shape.shape[0]
    nlast = post_shape[nd - 1]
    slast = post_strides[nd - 1]
    nouter = _size(post_shape, nd - 1)
    na = adv.shape[0]
    first = t * rows
    co = first % nouter
    b = (first // nouter) % na
    r = first // nouter // na
    base = _offset(r, pre_shape, pre_strides, pre_shape.shape[0])
    for row in range(first, min(first + rows, out.shape[0] // nlast)):
        s = base + adv[b] + _offset(co, post_shape, post_strides, nd - 1)
        o = row * nlast
        for j in range(nlast):
            out[o + j] = src[s + j * slast]
        co += 1
        if co == nouter:
            co = 0
            b += 1
            if b == na:
                b = 0
                r += 1
                base = _offset(r, pre_shape, pre_strides, pre_shape.shape[0])


@njit(**_JIT)
def _gather_serial(out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    _gather_rows(0, out.shape[0], out, src, pre_shape, pre_strides, adv, post_shape, post_strides)


@njit(parallel=True, **_JIT)
def _gather_parallel(out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    rows = max(1, _BLOCK // post_shape[post_shape.shape[0] - 1])       # rows per task: some thousand elements
    for t in prange((out.shape[0] // post_shape[post_shape.shape[0] - 1] + rows - 1) // rows):
        _gather_rows(t, rows, out, src, pre_shape, pre_strides, adv, post_shape, post_strides)


@njit(inline="always", error_model="numpy")
def _scatter_block(u, dst, vals, pre_shape, pre_strides, adv, post_shape, post_strides, accumulate):
    nd = post_shape.shape[0]
    nlast = post_shape[nd - 1]
    slast = post_strides[nd - 1]
    nouter = _size(post_shape, nd - 1)
    na = adv.shape[0]
    co = u % nouter
    r = u // nouter
    base = _offset(r, pre_shape, pre_strides, pre_shape.shape[0]) + _offset(co, post_shape, post_strides, nd - 1)
    for b in range(na):
        s = base + adv[b]
        o = ((r * na + b) * nouter + co) * nlast
        if accumulate:
            for j in range(nlast):
                dst[s + j * slast] += vals[o + j]
        else:
            for j in range(nlast):
                dst[s + j * slast] = vals[o + j]


@njit(**_JIT)
def _scatter_serial(dst, vals, pre_shape, pre_strides, adv, post_shape, post_strides, accumulate):
    nd = post_shape.shape[0]
    for u in range(_size(pre_shape, pre_shape.shape[0]) * _size(post_shape, nd - 1)):
        _scatter_block(u, dst, vals, pre_shape, pre_strides, adv, post_shape, post_strides, accumulate)


@njit(parallel=True, **_JIT)
def _scatter_parallel(dst, vals, pre_shape, pre_strides, adv, post_shape, post_strides, accumulate):
    nd = post_shape.shape[0]
    for u in prange(_size(pre_shape, pre_shape.shape[0]) * _size(post_shape, nd - 1)):
        _scatter_block(u, dst, vals, pre_shape, pre_strides, adv, post_shape, post_strides, accumulate)


# nonzero: the array is cut into blocks (rows, and pieces of a long last dim); each block
# counts its nonzeros, a prefix sum places the blocks, and each block writes its coordinates.


@njit(inline="always", error_model="numpy")
def _block_count(b, src, shape, strides, nblocks):
    nd = shape.shape[0]
    inner = shape[nd - 1]
    start = (b % nblocks) * _BLOCK
    stop = min(start + _BLOCK, inner)
    base = _offset(b // nblocks, shape, strides, nd - 1)
    step = strides[nd - 1]
    count = 0
    for j in range(start, stop):
        if src[base + j * step]:
            count += 1
    return count


@njit(inline="always", error_model="numpy")
def _block_fill(b, out, k, stop_k, src, shape, strides, nblocks):
    """Coordinates of block ``b``'s nonzeros into rows ``k`` to ``stop_k`` of ``out`` (never
    past them, should another thread change ``src`` between the count and the fill)."""
    nd = shape.shape[0]
    inner = shape[nd - 1]
    start = (b % nblocks) * _BLOCK
    stop = min(start + _BLOCK, inner)
    row = b // nblocks
    base = _offset(row, shape, strides, nd - 1)
    step = strides[nd - 1]
    for j in range(start, stop):
        if src[base + j * step] and k < stop_k:
            rem = row
            for d in range(nd - 2, -1, -1):
                out[k, d] = rem % shape[d]
                rem //= shape[d]
            out[k, nd - 1] = j
            k += 1


@njit(**_JIT)
def _nonzero_serial(src, shape, strides):
    nd = shape.shape[0]
    nblocks = (shape[nd - 1] + _BLOCK - 1) // _BLOCK
    blocks = _size(shape, nd - 1) * nblocks
    starts = np.zeros(blocks + 1, np.int64)
    for b in range(blocks):
        starts[b + 1] = starts[b] + _block_count(b, src, shape, strides, nblocks)
    out = np.empty((starts[blocks], nd), np.int64)
    for b in range(blocks):
        _block_fill(b, out, starts[b], starts[b + 1], src, shape, strides, nblocks)
    return out


@njit(parallel=True, **_JIT)
def _nonzero_parallel(src, shape, strides):
    nd = shape.shape[0]
    nblocks = (shape[nd - 1] + _BLOCK - 1) // _BLOCK
    blocks = _size(shape, nd - 1) * nblocks
    counts = np.zeros(blocks, np.int64)
    for b in prange(blocks):
        counts[b] = _block_count(b, src, shape, strides, nblocks)
    starts = np.zeros(blocks + 1, np.int64)
    for b in range(blocks):
        starts[b + 1] = starts[b] + counts[b]
    out = np.empty((starts[blocks], nd), np.int64)
    for b in prange(blocks):
        _block_fill(b, out, starts[b], starts[b + 1], src, shape, strides, nblocks)
    return out


# advanced indices: one row of ``coords`` per indexed dim, negatives counted from the end;
# a position with a coordinate out of range gets offset -1 (offsets are otherwise >= 0)
@njit(inline="always", error_model="numpy")
def _position_offset(i, coords, sizes, strides):
    off = 0
    for j in range(coords.shape[0]):
        c = coords[j, i]
        n = sizes[j]
        if c < -n or c >= n:
            return -1
        off += (c + n if c < 0 else c) * strides[j]
    return off


@njit(**_JIT)
def _offsets_serial(out, coords, sizes, strides):
    bad = 0
    for i in range(out.shape[0]):
        out[i] = _position_offset(i, coords, sizes, strides)
        bad += out[i] < 0
    return bad


@njit(parallel=True, **_JIT)
def _offsets_parallel(out, coords, sizes, strides):
    bad = 0
    for i in prange(out.shape[0]):
        off = _position_offset(i, coords, sizes, strides)
        out[i] = off
        bad += off < 0
    return bad


@njit(**_JIT)
def _first_out_of_bounds(coords, sizes):
    """The first position (in order, then by dim) whose coordinate is out of range, or -1."""
    for i in range(coords.shape[1]):
        for j in range(coords.shape[0]):
            c = coords[j, i]
            if c < -sizes[j] or c >= sizes[j]:
                return i * coords.shape[0] + j
    return -1


# gather/scatter along one dim: the positions are those of the flat C-contiguous ``index``
# of ``shape``, walked in blocks of up to _BLOCK along its last dim, so that a block's
# offsets are computed once and then stepped (no division in the inner loop). Array ``a``
# is addressed through the index (its coordinate along ``dim`` is the index value), array
# ``b`` at the position itself. A value outside [0, size) is neither read nor written
# through: the loops return the first such position (``index.size`` if none).
@njit(inline="always", error_model="numpy")
def _row_bases(row, shape, a_strides, b_strides, dim):
    """Offsets in ``a`` (without ``dim``) and in ``b`` of the first position of ``row``."""
    a = 0
    b = 0
    rem = row + 0
    for d in range(shape.shape[0] - 2, -1, -1):
        q = rem % shape[d]
        rem //= shape[d]
        b += q * b_strides[d]
        if d != dim:
            a += q * a_strides[d]
    return a, b


@njit(inline="always", error_model="numpy")
def _dim_blocks(shape):
    """Blocks per row, and in all."""
    inner = shape[shape.shape[0] - 1]
    nblocks = (inner + _BLOCK - 1) // _BLOCK
    return nblocks, _size(shape, shape.shape[0] - 1) * nblocks


@njit(inline="always", error_model="numpy")
def _gather_dim_block(t, out, out_strides, src, src_strides, index, shape, dim, size, nblocks):
    nd = shape.shape[0]
    inner = shape[nd - 1]
    row = t // nblocks
    start = (t - row * nblocks) * _BLOCK
    a, b = _row_bases(row, shape, src_strides, out_strides, dim)
    sa = 0 if dim == nd - 1 else src_strides[nd - 1]
    sk = src_strides[dim]
    sb = out_strides[nd - 1]
    base = row * inner
    for j in range(start, min(start + _BLOCK, inner)):
        k = index[base + j]
        if k < 0 or k >= size:
            return base + j
        out[b + j * sb] = src[a + j * sa + k * sk]
    return index.shape[0]


@njit(**_JIT)
def _gather_dim_serial(out, out_strides, src, src_strides, index, shape, dim, size):
    nblocks, tasks = _dim_blocks(shape)
    for t in range(tasks):
        first = _gather_dim_block(t, out, out_strides, src, src_strides, index, shape, dim, size, nblocks)
        if first < index.shape[0]:
            return first
    return index.shape[0]


@njit(parallel=True, **_JIT)
def _gather_dim_parallel(out, out_strides, src, src_strides, index, shape, dim, size):
    nblocks, tasks = _dim_blocks(shape)
    first = index.shape[0]
    for t in prange(tasks):
        first = min(first, _gather_dim_block(t, out, out_strides, src, src_strides, index, shape, dim, size,
                                             nblocks))
    return first


@njit(**_JIT)
def _scatter_dim(dst, dst_strides, index, shape, dim, size, src, src_strides, mode, check_first):
    """In order, so that repeated positions take the last value (or all of them, reducing);
    with ``check_first`` every value is checked before anything is written."""
    n = index.shape[0]
    if check_first:
        for i in range(n):
            if index[i] < 0 or index[i] >= size:
                return i
    nd = shape.shape[0]
    inner = shape[nd - 1]
    sa = 0 if dim == nd - 1 else dst_strides[nd - 1]
    sk = dst_strides[dim]
    sb = src_strides[nd - 1]
    for row in range(n // inner):
        a, b = _row_bases(row, shape, dst_strides, src_strides, dim)
        base = row * inner
        for j in range(inner):
            k = index[base + j]
            if k < 0 or k >= size:
                return base + j
            oa = a + j * sa + k * sk
            ob = b + j * sb
            if mode == 1:
                dst[oa] += src[ob]
            elif mode == 2:
                dst[oa] *= src[ob]
            else:
                dst[oa] = src[ob]
    return n


# -- the Python side: plans and launches -----------------------------------------------------------
def _ints(values):
    return np.array(values, dtype=np.int64).reshape(-1)


def _coalesce(shape, strides):
    """Merge neighbouring dims that are one run in memory; always at least one dim."""
    out_shape, out_strides = [], []
    for n, s in zip(shape, strides):
        if n == 1:
            continue
        if out_shape and out_strides[-1] == n * s:
            out_shape[-1] *= n
            out_strides[-1] = s
        else:
            out_shape.append(n)
            out_strides.append(s)
    return (out_shape or [1]), (out_strides or [0])


def element_strides(arr):
    return [s // arr.itemsize for s in arr.strides]


def layout(shape, dims, bshape):
    """Where advanced indices at ``dims`` (broadcast to ``bshape``) put their dims in the
    result: ``(result_shape, pre_dims, post_dims)``. Adjacent indices replace their dims
    in place; separated ones put the broadcast dims first (NumPy's rule)."""
    rest = [d for d in range(len(shape)) if d not in dims]
    if dims and list(dims) == list(range(dims[0], dims[-1] + 1)):
        pre = [d for d in rest if d < dims[0]]
        post = [d for d in rest if d > dims[-1]]
    else:
        pre, post = [], rest
    result = tuple(shape[d] for d in pre) + tuple(bshape) + tuple(shape[d] for d in post)
    return result, pre, post


class Plan:
    """How advanced indices read an array of ``shape`` with ``strides`` (in elements; 0
    where broadcast): ``coords`` has one row per indexed dim in ``dims`` (broadcast,
    flattened, negatives counted from the end); ``bshape`` is their shape. ``bad`` counts
    the positions with a coordinate out of range, found as the offsets are computed;
    ``gather`` and ``scatter`` refuse such a plan with ``error()``."""

    def __init__(self, shape, dims, coords, bshape, strides):
        self.shape, pre, post = layout(shape, dims, bshape)
        self.coords, self.sizes = coords, _ints([shape[d] for d in dims])
        self.adv = np.empty(coords.shape[1], np.int64)
        self.bad = _launch(_offsets_serial, _offsets_parallel, self.adv.size, self.adv, coords, self.sizes,
                           _ints([strides[d] for d in dims]))
        pre_shape, pre_strides = _coalesce([shape[d] for d in pre], [strides[d] for d in pre])
        post_shape, post_strides = _coalesce([shape[d] for d in post], [strides[d] for d in post])
        self.pre = (_ints(pre_shape), _ints(pre_strides))
        self.post = (_ints(post_shape), _ints(post_strides))

    def error(self):
        """PyTorch's IndexError for the first coordinate out of range (``k``-th index array)."""
        k, i = out_of_bounds(self.coords, self.sizes)
        return IndexError(f"index {self.coords[k, i]} is out of bounds for dimension {k} with size {self.sizes[k]}")


def plan(array, dims, coords, bshape):
    """The plan for indexing ``array`` (any strides) with ``coords`` at ``dims``."""
    return Plan(array.shape, dims, coords, bshape, element_strides(array))


def out_of_bounds(coords, sizes):
    """``(row, position)`` of the first coordinate outside ``[-size, size)``, or None."""
    k = _first_out_of_bounds(coords, _ints(sizes)) if coords.size else -1
    return None if k < 0 else (k % coords.shape[0], k // coords.shape[0])


def _launch(serial, parallel, size, *args):
    if size >= PARALLEL_MIN:
        with parallel_lock:
            return parallel(*args)
    return serial(*args)


def gather(out, src, p):
    """``out`` (C-contiguous, ``p.shape``) = ``src`` indexed as planned by ``p``; a plan with
    an index out of range raises PyTorch's IndexError (when there is anything to read)."""
    if out.size == 0:
        return out
    if p.bad:
        raise p.error()
    _launch(_gather_serial, _gather_parallel, out.size, out.reshape(-1), flat_buffer(src),
            *p.pre, p.adv, *p.post)
    return out


def scatter(dst, vals, p, accumulate=False):
    """``dst[planned positions] = vals`` (or ``+=``); ``vals`` is C-contiguous of ``p.shape``,
    ``dst`` any strides without self-overlap, of ``dst.dtype``. Repeated positions: with
    ``accumulate`` every value adds up, without it the last one wins. A plan with an index
    out of range raises PyTorch's IndexError before anything is written."""
    if vals.size == 0:
        return dst
    if p.bad:
        raise p.error()
    _launch(_scatter_serial, _scatter_parallel, vals.size, flat_buffer(dst), vals.reshape(-1),
            *p.pre, p.adv, *p.post, accumulate)
    return dst


def nonzero(src):
    """Coordinates of the nonzero elements of ``src`` (any strides), ``(n, src.ndim)`` int64."""
    if src.size == 0:
        return np.empty((0, src.ndim), np.int64)
    if src.ndim == 0:
        return np.empty((1 if src.reshape(1)[0] else 0, 0), np.int64)
    kernel = _nonzero_parallel if src.size >= PARALLEL_MIN else _nonzero_serial
    args = (flat_buffer(src), _ints(src.shape), _ints(element_strides(src)))
    if kernel is _nonzero_parallel:
        with parallel_lock:
            return kernel(*args)
    return kernel(*args)


def _dim_error(flat, first, dim, size):
    return RuntimeError(f"index {flat[first]} is out of bounds for dimension {dim} with size {size}")


def gather_dim(out, src, dim, index):
    """``out[i][j][k] = src[i][index[i][j][k]][k]`` (for ``dim == 1``); ``index`` (at least 1-D)
    is no larger than ``src`` in any dim but ``dim``, and ``out`` has its shape (both any
    strides). An index value out of range raises PyTorch's RuntimeError."""
    if index.size == 0:
        return out
    flat = np.ascontiguousarray(index, np.int64).reshape(-1)
    size = src.shape[dim]
    first = _launch(_gather_dim_serial, _gather_dim_parallel, index.size, flat_buffer(out),
                    _ints(element_strides(out)), flat_buffer(src), _ints(element_strides(src)), flat,
                    _ints(index.shape), dim, size)
    if first < flat.size:
        raise _dim_error(flat, first, dim, size)
    return out


_SCATTER_MODES = {None: 0, "add": 1, "multiply": 2}


def scatter_dim(dst, dim, index, src, reduce=None, check_first=False):
    """``dst[i][index[i][j][k]][k] = src[i][j][k]`` (``reduce``: ``"add"`` for ``+=``,
    ``"multiply"`` for ``*=``), serially: repeated positions take the last value, or all
    of them when reducing. ``index`` (at least 1-D) is no larger than ``dst`` in any dim
    but ``dim``; ``src`` has its number of dims and is no smaller, or is 0-d, standing for a
    number. An index value out of range raises PyTorch's RuntimeError; ``check_first``
    (for a ``dst`` the caller cannot throw away) checks them all before writing any."""
    if index.size == 0:
        return dst
    flat = np.ascontiguousarray(index, np.int64).reshape(-1)
    size = dst.shape[dim]
    src_strides = [0] * index.ndim if src.ndim == 0 else element_strides(src)
    first = _scatter_dim(flat_buffer(dst), _ints(element_strides(dst)), flat, _ints(index.shape), dim, size,
                         flat_buffer(src), _ints(src_strides), _SCATTER_MODES[reduce], check_first)
    if first < flat.size:
        raise _dim_error(flat, first, dim, size)
    return dst


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
