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
"""
import numpy as np
from numba import njit, prange

from .elementwise import PARALLEL_MIN, flat_buffer, parallel_lock

__all__ = ["Plan", "plan", "layout", "out_of_bounds", "gather", "scatter", "nonzero", "gather_dim",
           "scatter_dim"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


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
def _gather_block(t, out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    nd = post_shape.shape[0]
    nlast = post_shape[nd - 1]
    slast = post_strides[nd - 1]
    nouter = _size(post_shape, nd - 1)
    na = adv.shape[0]
    co = t % nouter
    rb = t // nouter
    s = (_offset(rb // na, pre_shape, pre_strides, pre_shape.shape[0]) + adv[rb % na]
         + _offset(co, post_shape, post_strides, nd - 1))
    o = t * nlast
    for j in range(nlast):
        out[o + j] = src[s + j * slast]


@njit(**_JIT)
def _gather_serial(out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    for t in range(out.shape[0] // post_shape[post_shape.shape[0] - 1]):
        _gather_block(t, out, src, pre_shape, pre_strides, adv, post_shape, post_strides)


@njit(parallel=True, **_JIT)
def _gather_parallel(out, src, pre_shape, pre_strides, adv, post_shape, post_strides):
    for t in prange(out.shape[0] // post_shape[post_shape.shape[0] - 1]):
        _gather_block(t, out, src, pre_shape, pre_strides, adv, post_shape, post_strides)


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
_BLOCK = 4096


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
def _block_fill(b, out, k, src, shape, strides, nblocks):
    nd = shape.shape[0]
    inner = shape[nd - 1]
    start = (b % nblocks) * _BLOCK
    stop = min(start + _BLOCK, inner)
    row = b // nblocks
    base = _offset(row, shape, strides, nd - 1)
    step = strides[nd - 1]
    for j in range(start, stop):
        if src[base + j * step]:
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
        _block_fill(b, out, starts[b], src, shape, strides, nblocks)
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
        _block_fill(b, out, starts[b], src, shape, strides, nblocks)
    return out


# advanced indices: one row of ``coords`` per indexed dim, negatives counted from the end
@njit(inline="always", error_model="numpy")
def _position_offset(i, coords, sizes, strides):
    off = 0
    for j in range(coords.shape[0]):
        c = coords[j, i]
        off += (c + sizes[j] if c < 0 else c) * strides[j]
    return off


@njit(**_JIT)
def _offsets_serial(out, coords, sizes, strides):
    for i in range(out.shape[0]):
        out[i] = _position_offset(i, coords, sizes, strides)


@njit(parallel=True, **_JIT)
def _offsets_parallel(out, coords, sizes, strides):
    for i in prange(out.shape[0]):
        out[i] = _position_offset(i, coords, sizes, strides)


@njit(**_JIT)
def _first_out_of_bounds(coords, sizes):
    """The first position (in order, then by dim) whose coordinate is out of range, or -1."""
    for i in range(coords.shape[1]):
        for j in range(coords.shape[0]):
            c = coords[j, i]
            if c < -sizes[j] or c >= sizes[j]:
                return i * coords.shape[0] + j
    return -1


@njit(inline="always", error_model="numpy")
def _dim_offset(i, index, shape, strides, dim, along):
    """Offset of position ``i`` of ``shape`` with strides ``strides``; with ``along``, the
    coordinate along ``dim`` is ``index[i]`` instead of its own."""
    off = 0
    rem = i + 0
    for d in range(shape.shape[0] - 1, -1, -1):
        q = rem % shape[d]
        rem //= shape[d]
        if along and d == dim:
            q = index[i]
        off += q * strides[d]
    return off


@njit(**_JIT)
def _gather_dim_serial(out, src, src_strides, index, shape, dim, out_strides):
    for i in range(index.shape[0]):
        out[_dim_offset(i, index, shape, out_strides, dim, False)] = \
            src[_dim_offset(i, index, shape, src_strides, dim, True)]


@njit(parallel=True, **_JIT)
def _gather_dim_parallel(out, src, src_strides, index, shape, dim, out_strides):
    for i in prange(index.shape[0]):
        out[_dim_offset(i, index, shape, out_strides, dim, False)] = \
            src[_dim_offset(i, index, shape, src_strides, dim, True)]


@njit(**_JIT)
def _scatter_dim(dst, dst_strides, index, shape, dim, src, src_strides, mode):
    for i in range(index.shape[0]):
        oa = _dim_offset(i, index, shape, dst_strides, dim, True)
        ob = _dim_offset(i, index, shape, src_strides, dim, False)
        if mode == 1:
            dst[oa] += src[ob]
        elif mode == 2:
            dst[oa] *= src[ob]
        else:
            dst[oa] = src[ob]


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
    flattened, in range, negatives counted from the end); ``bshape`` is their shape."""

    def __init__(self, shape, dims, coords, bshape, strides):
        self.shape, pre, post = layout(shape, dims, bshape)
        self.adv = np.empty(coords.shape[1], np.int64)
        _launch(_offsets_serial, _offsets_parallel, self.adv.size, self.adv, coords,
                _ints([shape[d] for d in dims]), _ints([strides[d] for d in dims]))
        pre_shape, pre_strides = _coalesce([shape[d] for d in pre], [strides[d] for d in pre])
        post_shape, post_strides = _coalesce([shape[d] for d in post], [strides[d] for d in post])
        self.pre = (_ints(pre_shape), _ints(pre_strides))
        self.post = (_ints(post_shape), _ints(post_strides))


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
            parallel(*args)
    else:
        serial(*args)


def gather(out, src, p):
    """``out`` (C-contiguous, ``p.shape``) = ``src`` indexed as planned by ``p``."""
    if out.size == 0:
        return out
    _launch(_gather_serial, _gather_parallel, out.size, out.reshape(-1), flat_buffer(src),
            *p.pre, p.adv, *p.post)
    return out


def scatter(dst, vals, p, accumulate=False):
    """``dst[planned positions] = vals`` (or ``+=``); ``vals`` is C-contiguous of ``p.shape``,
    ``dst`` any strides without self-overlap, of ``dst.dtype``. Repeated positions: with
    ``accumulate`` every value adds up, without it the last one wins."""
    if vals.size == 0:
        return dst
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


def gather_dim(out, src, dim, index):
    """``out[i][j][k] = src[i][index[i][j][k]][k]`` (for ``dim == 1``); ``out`` has ``index``'s
    shape, any strides; ``index`` holds in-range coordinates."""
    if index.size == 0:
        return out
    flat_index = np.ascontiguousarray(index, np.int64).reshape(-1)
    _launch(_gather_dim_serial, _gather_dim_parallel, index.size, flat_buffer(out), flat_buffer(src),
            _ints(element_strides(src)), flat_index, _ints(index.shape), dim, _ints(element_strides(out)))
    return out


_SCATTER_MODES = {None: 0, "add": 1, "multiply": 2}


def scatter_dim(dst, dim, index, src, reduce=None):
    """``dst[i][index[i][j][k]][k] = src[i][j][k]`` (``reduce``: ``"add"`` for ``+=``,
    ``"multiply"`` for ``*=``), serially: repeated positions take the last value, or all
    of them when reducing. ``src`` may be a one-element array standing for a number."""
    if index.size == 0:
        return dst
    flat_index = np.ascontiguousarray(index, np.int64).reshape(-1)
    src_strides = element_strides(src) if src.ndim == index.ndim else [0] * index.ndim
    _scatter_dim(flat_buffer(dst), _ints(element_strides(dst)), flat_index, _ints(index.shape), dim,
                 flat_buffer(src), _ints(src_strides), _SCATTER_MODES[reduce])
    return dst
