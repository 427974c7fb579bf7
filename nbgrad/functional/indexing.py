"""Indexing: ``x[i]``, ``x[i] = v`` and the gather/scatter family.

An index is applied as PyTorch applies it, left to right: ints, slices, ``None`` and
bool scalars become *basic* steps (``select``, ``slice``, ``unsqueeze``), each a view
sharing the tensor's memory and version counter and recorded as its own node. Integer
arrays and bool masks that remain are *advanced* indices into that view: they are
checked and normalized once (``_Index``) and read with the gather kernel, whose
backward is the scatter-add kernel, so ``x[[0, 0]]`` sends two gradients to ``x[0]``.

Assignment goes through the same parse: a basic target is a view, written with
``copy_``/``fill_``; an advanced target is ``index_put_``. Both are in-place ops built on
``apply_inplace``, so the leaf, view and version rules live in one place.

Backward rules are written with ops from this module (``_embed``, ``_put``, ``_index``,
``gather``, ``scatter``), each recorded in turn, so higher-order gradients work.
"""
import numbers
import operator
import warnings

import numpy as np

from nbgrad.ops import index as kernels          # its host-side planning (layout, Plan, mask positions)
from nbgrad.ops.targets import common_target, target_of

from .. import _dtype
from ..autograd.graph import NoDerivative, Node
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, _wrap_dim, make_view, record
from . import tensor_method
from .inplace import apply_inplace, check_result
from .pointwise import broadcast_shapes, where

__all__ = ["select", "index_select", "index_put", "masked_fill", "masked_select", "gather", "scatter",
           "scatter_add", "take", "nonzero", "argwhere"]


# -- basic indexing: views ------------------------------------------------------------------------
def _at(dim, item):
    """A NumPy index applying ``item`` at ``dim``; the Ellipsis keeps 0-d results arrays (views)."""
    return (slice(None),) * dim + (item, Ellipsis)


class _ViewBackward(Node):
    """A view that keeps part of its input: the gradient goes into a zero tensor, in the view's place."""

    def backward(self, grad):
        return (_embed(grad, self._input_meta[0][0], self.step, self.embed_node),)


class _EmbedBackward(Node):
    def backward(self, grad):
        return (self.step(grad),)


class SelectBackwardBackward0(_EmbedBackward):
    pass


class SliceBackwardBackward0(_EmbedBackward):
    pass


class SelectBackward0(_ViewBackward):
    embed_node = SelectBackwardBackward0


class SliceBackward0(_ViewBackward):
    embed_node = SliceBackwardBackward0


class UnsqueezeBackward0(Node):
    def backward(self, grad):
        return (grad.squeeze(self.dim),)


class AliasBackward0(Node):
    def backward(self, grad):
        return (grad,)


def _embed(grad, shape, step, node_cls):
    """Zeros of ``shape`` holding ``grad`` where ``step`` of it is: a view op's backward."""
    target = target_of(grad._data)
    out = Tensor._wrap(target.zeros(shape, grad._data.dtype))
    with no_grad():
        target.copy_into(step(out)._data, grad._data)
    return record(node_cls, out._data, (grad,), step=step)


def _select(input, dim, index):
    step = lambda t: _select(t, dim, index)  # noqa: E731
    return make_view(input, _view(input, _at(dim, index)), SelectBackward0, step, step=step)


def _slice(input, dim, start, stop, step_):
    step = lambda t: _slice(t, dim, start, stop, step_)  # noqa: E731
    return make_view(input, _view(input, _at(dim, slice(start, stop, step_))), SliceBackward0, step, step=step)


def _unsqueeze(input, dim):
    return make_view(input, _view(input, _at(dim, None)), UnsqueezeBackward0, lambda t: _unsqueeze(t, dim), dim=dim)


def _alias(input):
    return make_view(input, _view(input, ...), AliasBackward0, _alias)


def _view(input, key):
    """The array of ``input[key]`` for a basic index ``key``: a view of its memory."""
    return target_of(input._data).slice(input._data, key)


@tensor_method()
def select(input, dim, index):
    if input.ndim == 0:
        raise IndexError("select() cannot be applied to a 0-dim tensor.")
    dim = _wrap_dim(dim, input.ndim)
    n = input.shape[dim]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size {list(input.shape)} "
                         f"at dimension {dim}")
    return _select(input, dim, index % n)


# -- parsing an index ------------------------------------------------------------------------------
_INVALID = ("only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are valid "
            "indices (got {})")
_NOT_INDEX_DTYPE = "tensors used as indices must be long, int, byte or bool tensors"


def _classify(obj):
    """One item of an index as (kind, value): int, bool, slice, none, ellipsis, array (int64) or mask."""
    if obj is None:
        return "none", None
    if obj is Ellipsis:
        return "ellipsis", None
    if isinstance(obj, (bool, np.bool_)):
        return "bool", bool(obj)
    if isinstance(obj, (int, np.integer)):
        return "int", int(obj)
    if isinstance(obj, slice):       # bounds may be anything with __index__ (0-d tensors too)
        return "slice", slice(*(None if v is None else operator.index(v) for v in (obj.start, obj.stop, obj.step)))
    if isinstance(obj, Tensor):               # an index is planned on the host
        arr = target_of(obj._data).to_host(obj._data)
    elif isinstance(obj, np.ndarray):
        arr = obj
    elif isinstance(obj, range):      # as PyTorch: a sequence of its integers
        arr = np.arange(obj.start, obj.stop, obj.step, dtype=np.int64)
    elif isinstance(obj, (list, tuple)):
        arr = np.array([target_of(o._data).to_host(o._data) if isinstance(o, Tensor) else o for o in obj]) \
            if obj else np.zeros(0, np.int64)
        if arr.dtype == object:
            raise IndexError(_INVALID.format("list"))
        if arr.dtype.kind == "f" and not any(isinstance(o, Tensor) for o in obj):
            arr = arr.astype(np.int64)    # a list of Python floats indexes by their integer parts, as in PyTorch
    else:
        raise IndexError(_INVALID.format(type(obj).__name__))
    if arr.dtype == np.bool_ or arr.dtype == np.uint8:
        arr = arr.astype(np.bool_, copy=False)
        return ("bool", bool(arr)) if arr.ndim == 0 else ("mask", arr)
    if arr.dtype.kind not in "iu":
        raise IndexError(_NOT_INDEX_DTYPE)
    return ("int", int(arr)) if arr.ndim == 0 else ("array", arr.astype(np.int64, copy=False))


def _as_tuple(index):
    """PyTorch's (NumPy's) rule for a list used as an index: it stands for a tuple if it
    holds a slice, Ellipsis, None, a tensor or a sequence; else it is one integer index."""
    if isinstance(index, tuple):
        return index, False
    if isinstance(index, list) and len(index) < 32 and any(
            o is None or o is Ellipsis or isinstance(o, (slice, Tensor, list, tuple, np.ndarray)) for o in index):
        warnings.warn("Using a non-tuple sequence for multidimensional indexing is deprecated and will be changed "
                      "in pytorch 2.9; use x[tuple(seq)] instead of x[seq]. In pytorch 2.9 this will be interpreted "
                      "as tensor index, x[torch.tensor(seq)], which will result either in an error or a different "
                      "result", UserWarning, stacklevel=3)
        return tuple(index), False
    return (index,), True


def _apply_basic(self, index, alias):
    """Apply the basic items of ``index`` as views; returns the view and the advanced
    items left for it, ``[(dim, int64 array or bool mask)]`` (``None`` if there are none)."""
    items, single = _as_tuple(index)
    parsed = [_classify(obj) for obj in items]
    ndim = self.ndim
    if single and parsed[0][0] == "int" and ndim == 0 and isinstance(items[0], (int, np.integer)):
        if parsed[0][1] != 0:                     # PyTorch reads the size of a dimension that is not there
            raise IndexError(f"index {parsed[0][1]} is out of bounds for dimension 0 with size 0")
        raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` "
                         "in C++ to convert a 0-dim tensor to a number")
    if single and parsed[0][0] == "slice" and ndim == 0:
        _slice_step(parsed[0][1])
        raise IndexError("slice() cannot be applied to a 0-dim tensor.")
    specified = sum(1 if kind in ("int", "slice", "array") else value.ndim if kind == "mask" else 0
                    for kind, value in parsed)
    if specified > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")
    result, dim, advanced = self, 0, []
    for position, (kind, value) in enumerate(parsed):
        # a second `...` can move past the last dim; PyTorch then reads a size of 0 there
        n = result.shape[dim] if dim < result.ndim else 0
        if kind == "int":
            if not -n <= value < n:
                raise IndexError(f"index {value} is out of bounds for dimension {position} with size {n}")
            result = _select(result, dim, value % n)
        elif kind == "slice":
            _slice_step(value)
            start, stop, step = value.indices(n)
            # PyTorch skips a slice that keeps everything, judging by the bounds as written
            whole = value.start in (None, 0) and (value.stop is None or value.stop >= n)
            if single or not (whole and step == 1):
                result = _slice(result, _wrap_dim(dim, result.ndim), start, stop, step)
            dim += 1
        elif kind in ("none", "bool"):
            result = _unsqueeze(result, _wrap_dim(dim, result.ndim + 1))
            if kind == "bool":
                advanced.append((dim, np.zeros(1 if value else 0, np.int64)))
            dim += 1
        elif kind == "ellipsis":
            dim += ndim - specified
        else:
            advanced.append((dim, value))
            dim += value.ndim if kind == "mask" else 1
    extent = max((d + (a.ndim if a.dtype == np.bool_ else 1) for d, a in advanced), default=0)
    if extent > result.ndim:                       # again only after a second `...`
        raise IndexError(f"too many indices for tensor of dimension {result.ndim} (got {extent})")
    if advanced:
        return result, advanced
    if result is self and alias:
        result = _alias(self)
    return result, None


def _slice_step(s):
    step = 1 if s.step is None else s.step
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if step < 0:
        raise ValueError("step must be greater than zero")


class _Index:
    """Advanced indices into a tensor of ``shape``: ``coords`` holds one row per indexed dim
    in ``dims``, the index arrays broadcast to ``bshape`` and flattened (negative entries
    count from the end). Their range is checked by the kernels, as they compute the offsets,
    and only when there is something to read or write, as PyTorch checks it."""
    __slots__ = ("shape", "dims", "coords", "bshape", "result_shape")

    def __init__(self, shape, dims, coords, bshape):
        self.shape, self.dims, self.coords, self.bshape = tuple(shape), list(dims), coords, tuple(bshape)
        self.result_shape = kernels.layout(self.shape, self.dims, self.bshape)[0]

    @classmethod
    def parse(cls, shape, items):
        """From ``[(dim, int64 array or bool mask)]``, with PyTorch's checks and messages."""
        dims, arrays = [], []
        for dim, arr in items:
            if arr.dtype == np.bool_:
                for j in range(arr.ndim):
                    if dim + j >= len(shape) or arr.shape[j] != shape[dim + j]:
                        raise IndexError(f"The shape of the mask {list(arr.shape)} at index {j} does not match "
                                         f"the shape of the indexed tensor {list(shape)} at index {dim + j}")
                positions = kernels.nonzero(arr)
                dims += range(dim, dim + arr.ndim)
                arrays += [positions[:, j] for j in range(arr.ndim)]
            else:
                dims.append(dim)
                arrays.append(arr)
        try:
            bshape = np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = ", ".join(str(list(a.shape)) for a in arrays)
            raise IndexError(f"shape mismatch: indexing tensors could not be broadcast together with shapes "
                             f"{shapes}") from None
        if len(items) == 1 and items[0][1].dtype == np.bool_:   # one mask: its positions as they are
            coords = positions.T
        elif len(arrays) == 1:                                   # a copy: the caller may change its index
            coords = np.array(arrays[0], np.int64).reshape(1, -1)
        else:
            coords = np.empty((len(arrays), int(np.prod(bshape))), np.int64)
            for row, a in zip(coords, arrays):
                row.reshape(bshape)[...] = a
        if coords.size and any(shape[d] == 0 for d in dims):
            raise IndexError("index is out of bounds for dimension with size 0")
        return cls(shape, dims, coords, bshape)

    def plan(self, data, strides=None):
        """The kernels' plan for ``data`` (of ``self.shape``, or 0-d standing for one element;
        ``strides`` overrides its strides, for a broadcast input)."""
        if strides is None:
            data = data.reshape(self.shape) if data.shape != self.shape else data
            strides = kernels.element_strides(data)
        return kernels.Plan(self.shape, self.dims, self.coords, self.bshape, strides), data


# -- advanced indexing: gather and scatter ---------------------------------------------------------
class _GatherBackward(Node):
    """Backward of a gather: the gradient scatter-added into zeros of the indexed shape
    (a 0-d input was indexed as one element; a broadcast one is summed down by the engine)."""

    def backward(self, grad):
        zeros = Tensor._wrap(target_of(grad._data).zeros(self.index.shape, grad._data.dtype))
        out = _put(zeros, self.index, grad, accumulate=True, fresh=True, node_cls=IndexPutImplBackward0)
        return (_select(out, 0, 0) if len(self._input_meta[0][0]) == 0 else out,)


class IndexBackward0(_GatherBackward):
    pass


class IndexSelectBackward0(_GatherBackward):
    pass


class TakeBackward0(_GatherBackward):
    pass


class MaskedSelectBackward0(_GatherBackward):
    pass


class IndexPutBackward0(Node):
    def backward(self, grad):
        need = self.needs_input_grad
        idx = self.index
        grad_input = grad_values = None
        if need[0]:
            grad_input = grad if self.accumulate else \
                _put(grad, idx, Tensor._wrap(target_of(grad._data).zeros((), grad._data.dtype)), False)
        if need[1]:
            grad_values = _index(grad, idx)
            for _ in range(len(self._input_meta[1][0]) - len(idx.result_shape)):
                grad_values = _unsqueeze(grad_values, 0)
        return grad_input, grad_values


class IndexPutImplBackward0(IndexPutBackward0):
    """The same step, as PyTorch names it when it is the backward of a gather."""


def _index(input, idx, node_cls=IndexBackward0, strides=None):
    """``input`` read at the positions of ``idx`` (a copy); ``strides`` overrides how
    ``input``'s memory is read (a broadcast input)."""
    plan, data = idx.plan(input._data, strides)
    target = target_of(data)
    out = target.empty(plan.shape, data.dtype)
    target.index.gather(out, data, plan)
    return record(node_cls, out, (input,), index=idx)


def _values_array(values, idx, dtype):
    """``values`` broadcast to the indexing result, C-contiguous, of ``dtype``."""
    v = values._data
    target = target_of(v)
    while v.ndim > len(idx.result_shape) and v.shape[0] == 1:
        v = target.slice(v, (0, Ellipsis))
    return target.copy_into(target.empty(idx.result_shape, dtype), v, fresh_out=True)


def _check_values(values, idx):
    shape = values.shape
    while len(shape) and shape[0] == 1:          # PyTorch drops leading 1s of the values first
        shape = shape[1:]
    try:
        ok = broadcast_shapes(tuple(shape), idx.result_shape) == idx.result_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(values.shape)} cannot be broadcast to "
                           f"indexing result of shape {list(idx.result_shape)}")


def _put(input, idx, values, accumulate, fresh=False, node_cls=IndexPutBackward0):
    """``input`` with ``values`` written (or added) at ``idx``; a copy unless ``fresh``
    says ``input`` is a new tensor nobody else sees."""
    data = input._data if fresh else target_of(input._data).copy(input._data)
    plan, dst = idx.plan(data)
    target_of(data).index.scatter(dst, _values_array(values, idx, data.dtype), plan, accumulate)
    return record(node_cls, data, (input, values), index=idx, accumulate=accumulate)


def _check_put_dtype(input, values):
    if values.dtype is not input.dtype:
        raise RuntimeError(f"Index put requires the source and destination dtypes match, got "
                           f"{input.dtype.legacy} for the destination and {values.dtype.legacy} for the source.")


def _put_(self, idx, values, accumulate):
    """``index_put_`` of a checked ``values`` at a parsed ``idx`` (an index out of range
    raises before anything is written)."""

    def direct():
        plan, dst = idx.plan(self._data)
        target_of(dst).index.scatter(dst, _values_array(values, idx, self._data.dtype), plan, accumulate)
    return apply_inplace(self, lambda old: _put(old, idx, values, accumulate), (values,), direct)


def _tensor_indices(self, indices):
    """``index_put``'s indices (a sequence of long or bool tensors) as an ``_Index``."""
    items, dim = [], 0
    for k, t in enumerate(indices):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected Tensor as element {k} in argument 1, but got {type(t).__name__}")
        kind, value = _classify(t)
        if kind in ("int", "bool"):
            value = np.array([value], np.int64 if kind == "int" else np.bool_)
        items.append((dim, value))
        dim += value.ndim if value.dtype == np.bool_ else 1
    if dim > self.ndim:
        raise IndexError(f"too many indices for tensor of dimension {self.ndim} (got {dim})")
    return _Index.parse(self.shape, items)


def _put_index(input, indices, values, name, position):
    """The checked index of ``index_put``/``index_put_`` (PyTorch counts ``self`` in the
    argument position of the function, not of the method)."""
    if not isinstance(values, Tensor):
        raise TypeError(f"{name}(): argument 'values' (position {position}) must be Tensor, not "
                        f"{type(values).__name__}")
    idx = _tensor_indices(input, indices)
    _check_values(values, idx)
    _check_put_dtype(input, values)
    return idx


@tensor_method()
def index_put(input, indices, values, accumulate=False):
    idx = _put_index(input, indices, values, "index_put", 3)
    return _put(input, idx, values, accumulate)


@tensor_method()
def index_put_(self, indices, values, accumulate=False):
    return _put_(self, _put_index(self, indices, values, "index_put_", 2), values, accumulate)


# -- x[index] and x[index] = value -------------------------------------------------------------------
@tensor_method("__getitem__")
def _getitem(self, index):
    view, advanced = _apply_basic(self, index, alias=True)
    if advanced is None:
        return view
    return _index(view, _Index.parse(view.shape, advanced))


@tensor_method("__setitem__")
def _setitem(self, index, value):
    if not isinstance(value, (Tensor, numbers.Number, np.bool_)):
        kind = type(value)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        raise TypeError(f"can't assign a {name} to a torch.{self.dtype.legacy}Tensor")
    if index is False:
        return
    view, advanced = _apply_basic(self, index, alias=False)
    if advanced is None:
        if not isinstance(value, Tensor):        # PyTorch fills with the number as a 0-d tensor
            view.fill_(Tensor._wrap(target_of(self._data).scalar(value, self._data.dtype)))
            return
        while value.ndim > view.ndim and value.shape[0] == 1:
            value = _select(value, 0, 0)
        _check_expand(value, view.shape)
        view.copy_(value)
        return
    if not isinstance(value, Tensor):
        value = Tensor._wrap(target_of(self._data).scalar(value, self._data.dtype))
    mask = advanced[0][1] if len(advanced) == 1 and advanced[0][1].dtype == np.bool_ else None
    if mask is not None and value.ndim == 0:
        value = value.to(self.dtype)      # a mask filled with one value casts, as masked_fill_ does
        if mask.shape == view.shape:      # and needs no positions unless it is recorded
            apply_inplace(view, lambda old: _put(old, _Index.parse(view.shape, advanced), value, False),
                          (value,), lambda: _where_into(view._data, mask, value._data))
            return
    idx = _Index.parse(view.shape, advanced)
    _check_values(value, idx)
    _check_put_dtype(self, value)
    _put_(view, idx, value, False)


def _where_into(data, mask, value):
    """``data[mask] = value`` for a host ``mask`` of ``data``'s shape and a 0-d ``value``."""
    target = target_of(data)
    target.run("where", data, target.asarray(mask), target.reshape(value, (1,)), data)


def _check_expand(value, shape):
    """PyTorch's messages for a value that does not broadcast to the assigned part."""
    vs = value.shape
    if len(vs) > len(shape):
        raise RuntimeError(f"expand(torch.{value.dtype.legacy}Tensor{{{list(vs)}}}, size={list(shape)}): the number "
                           f"of sizes provided ({len(shape)}) must be greater or equal to the number of dimensions "
                           f"in the tensor ({len(vs)})")
    for i in range(1, len(vs) + 1):
        if vs[-i] != 1 and vs[-i] != shape[-i]:
            d = len(shape) - i
            raise RuntimeError(f"The expanded size of the tensor ({shape[d]}) must match the existing size "
                               f"({vs[-i]}) at non-singleton dimension {d}.  Target sizes: {list(shape)}.  "
                               f"Tensor sizes: {list(vs)}")


# -- index_select and take ---------------------------------------------------------------------------
@tensor_method()
def index_select(input, dim, index):
    if index.dtype is not _dtype.int64:
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    dim = _wrap_dim(dim, input.ndim)
    shape = input.shape if input.ndim else (1,)
    arr = target_of(index._data).to_host(index._data).reshape(-1)      # planned on the host
    n = shape[dim]
    if arr.size and input.ndim > 1 and input.numel() == 0:       # PyTorch's own path, and texts
        if n == 0:
            raise RuntimeError("index_select(): self indexing axis dim should be positive")
        if arr.min() < 0 or arr.max() >= n:
            bad = arr[np.argmax((arr < 0) | (arr >= n))]
            raise RuntimeError(f"INDICES element is out of DATA bounds, id={bad} axis_dim={n}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise IndexError("index out of range in self")
    out = _index(input, _Index(shape, [dim], arr.reshape(1, -1).copy(), arr.shape), IndexSelectBackward0)
    if input.ndim == 0:            # PyTorch keeps a 0-d input's shape
        out._data = target_of(out._data).reshape(out._data, ())
    return out


@tensor_method()
def take(input, index):
    if index.dtype is not _dtype.int64:
        raise RuntimeError(f"take(): Expected a long tensor for index, but got {index.dtype.legacy}")
    n = input.numel()
    arr = target_of(index._data).to_host(index._data)                 # planned on the host
    if arr.size and n == 0:
        raise IndexError("take(): tried to take from an empty tensor")
    if arr.size and (arr.min() < -n or arr.max() >= n):
        bad = arr.reshape(-1)[np.argmax(((arr < -n) | (arr >= n)).reshape(-1))]
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} elements.")
    shape = input.shape if input.ndim else (1,)
    coords = np.stack(np.unravel_index(np.where(arr < 0, arr + n, arr).reshape(-1), shape))
    return _index(input, _Index(shape, range(len(shape)), coords, arr.shape), TakeBackward0)


@tensor_method()
def masked_select(input, mask):
    if not isinstance(mask, Tensor) or mask.dtype is not _dtype.bool:
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    shape = broadcast_shapes(input.shape, mask.shape)
    if not shape:                             # the result is 1-D: of a 0-d input, one element or none
        return masked_select(input.reshape(1), mask.reshape(1))
    mask_data = target_of(mask._data).to_host(mask._data)              # planned on the host
    if mask_data.shape != shape:
        mask_data = np.ascontiguousarray(np.broadcast_to(mask_data, shape))
    idx = _Index.parse(shape, [(0, mask_data)])          # positions of a mask are in bounds
    # a broadcast input is read through zero strides; the engine sums its gradient back down
    pad = len(shape) - input.ndim
    strides = [0 if d < pad or input.shape[d - pad] == 1 else input.stride(d - pad) for d in range(len(shape))]
    return _index(input, idx, MaskedSelectBackward0, strides)


# -- masked_fill ------------------------------------------------------------------------------------
class MaskedFillBackward0(Node):
    def backward(self, grad):
        mask, = self.saved_tensors
        return (where(mask, 0.0, grad),)


class MaskedFillBackward1(Node):
    def backward(self, grad):
        mask, = self.saved_tensors
        need = self.needs_input_grad
        return (where(mask, 0.0, grad) if need[0] else None,
                where(mask, grad, 0.0).sum() if need[1] else None)


_MASK_DTYPE_NAMES = {"int64": "long int", "float32": "float", "float64": "double"}


def _check_fill(mask, value):
    if mask.dtype is not _dtype.bool:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{_MASK_DTYPE_NAMES.get(mask.dtype.name, mask.dtype.name)}")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                           f"{value.ndim} dimension(s).")


def _fill_value(target, value, dtype):
    """The fill value as a one-element array of ``target`` (a kernel operand: never written)."""
    if isinstance(value, Tensor):
        return target.reshape(target.astype(value._data, dtype), (1,))
    return target.number(value, dtype)


@tensor_method()
def masked_fill(input, mask, value):
    _check_fill(mask, value)
    target = common_target([input._data, mask._data])
    out = target.empty(broadcast_shapes(mask.shape, input.shape), input._data.dtype)
    target.run("where", out, mask._data, _fill_value(target, value, out.dtype), input._data, fresh_out=True)
    if isinstance(value, Tensor):
        return record(MaskedFillBackward1, out, (input, value), saved=(mask,))
    return record(MaskedFillBackward0, out, (input,), saved=(mask,))


@tensor_method()
def masked_fill_(self, mask, value):
    _check_fill(mask, value)
    check_result(self, broadcast_shapes(self.shape, mask.shape), self.dtype)
    operands = (value,) if isinstance(value, Tensor) else ()
    return apply_inplace(self, lambda old: masked_fill(old, mask, value), operands,
                         lambda: target_of(self._data).run("where", self._data, mask._data,
                                                           _fill_value(target_of(self._data), value, self._data.dtype),
                                                           self._data))


# -- gather and scatter along a dimension -----------------------------------------------------------
def _dim_index_checks(name, input, dim, index, src=None):
    """PyTorch's checks for gather/scatter, in its order: dim, dtypes, ranks and sizes (an
    empty index skips all but the dim). The index's values are checked by the kernels, as
    they read them; the backward steps check again, since the saved index can change."""
    dim = _wrap_dim(dim, input.ndim)
    if index.numel() == 0:
        if isinstance(src, Tensor) and src.dtype is not input.dtype and name != "gather":
            raise RuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
        return dim
    if index.dtype is not _dtype.int64:
        raise RuntimeError(f"{'gather' if name == 'gather' else 'scatter'}(): Expected dtype int32/int64 for index")
    if isinstance(src, Tensor) and src.dtype is not input.dtype:
        raise RuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    ndim = max(input.ndim, 1)
    if max(index.ndim, 1) != ndim:
        which = "input" if name == "gather" else "self"
        raise RuntimeError(f"Index tensor must have the same number of dimensions as {which} tensor")
    in_shape = input.shape or (1,)
    ix_shape = index.shape or (1,)
    bad = next((d for d in range(ndim) if d != dim and ix_shape[d] > in_shape[d]), None)
    if name == "gather":
        if bad is not None:
            raise RuntimeError(f"Size does not match at dimension {bad} expected index {list(index.shape)} to be no "
                               f"larger than self {list(input.shape)} apart from dimension {dim}")
        return dim
    if isinstance(src, Tensor):
        src_shape = src.shape or (1,)
        if max(src.ndim, 1) != ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
        if bad is not None or any(ix_shape[d] > src_shape[d] for d in range(ndim)):
            raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than self {list(input.shape)} "
                               f"apart from dimension {dim} and to be no larger size than src {list(src.shape)}")
    elif bad is not None:
        raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than self {list(input.shape)} "
                           f"apart from dimension {dim}")
    return dim


def _at_least_1d(arr):
    return target_of(arr).reshape(arr, (1,)) if arr.ndim == 0 else arr


# The index is a saved tensor: changing it in place before backward is an error, as in PyTorch.
# Changed without a version bump (through ``.data`` or a NumPy alias), it is checked again as
# PyTorch checks it: its shape here, its values by the kernels.
class GatherBackward0(Node):
    _saved_names = ("index",)          # grad_fn._saved_self... (PyTorch's names)
    def backward(self, grad):
        index, = self.saved_tensors
        zeros = Tensor._wrap(target_of(grad._data).zeros(self._input_meta[0][0], grad._data.dtype))
        _dim_index_checks("scatter_add", zeros, self.dim, index, grad)
        return (_scatter(zeros, self.dim, index, grad, "add", fresh=True),)


def _scatter_grads(node, grad, index, need_src):
    """The input's gradient (``grad`` with zeros scattered in) and, with ``need_src``, the source's."""
    need = node.needs_input_grad
    grad_input = grad_src = None
    if need[0]:
        _dim_index_checks("scatter", grad, node.dim, index)
        grad_input = _scatter(grad, node.dim, index, 0)
    if need_src:
        grad_src = _gather_to(grad, node.dim, index, node._input_meta[1][0])
    return grad_input, grad_src


class ScatterBackward0(Node):
    def backward(self, grad):
        index, = self.saved_tensors
        return _scatter_grads(self, grad, index, self.needs_input_grad[1])


class ScatterBackward1(Node):
    def backward(self, grad):
        index, = self.saved_tensors
        return _scatter_grads(self, grad, index, False)[:1]


class ScatterAddBackward0(Node):
    def backward(self, grad):
        index, = self.saved_tensors
        need = self.needs_input_grad
        return (grad if need[0] else None,
                _gather_to(grad, self.dim, index, self._input_meta[1][0]) if need[1] else None)


def _gather(input, dim, index):
    target = common_target([input._data, index._data])
    out = target.empty(index.shape, input._data.dtype)
    target.index.gather_dim(_at_least_1d(out), _at_least_1d(input._data), dim, _at_least_1d(index._data))
    return record(GatherBackward0, out, (input,), saved=(index,), dim=dim)


def _gather_to(grad, dim, index, shape):
    """``grad.gather(dim, index)`` placed in zeros of ``shape`` (a ``src`` larger than the
    index); a 0-d index or ``src`` counts as 1-D, as in the forward."""
    _dim_index_checks("gather", grad, dim, index)
    out = _gather(grad, dim, index)
    shape = tuple(shape)
    if shape == out.shape:
        return out
    ix_shape, src_shape = index.shape or (1,), shape or (1,)
    if out.shape != ix_shape:
        out = out.reshape(ix_shape)
    if src_shape != ix_shape:
        out = _embed(out, src_shape, lambda t: _corner(t, ix_shape), SliceBackwardBackward0)
    return out.reshape(shape) if shape != src_shape else out


def _corner(t, shape):
    for d, n in enumerate(shape):
        t = _slice(t, d, 0, n, 1)
    return t


def _src_array(target, src, dtype):
    """A scatter source: a tensor's array, or a number as a 0-d array of ``target`` (read
    for every position)."""
    return _at_least_1d(src._data) if isinstance(src, Tensor) else target.scalar(src, dtype)


def _scatter(input, dim, index, src, reduce=None, fresh=False, legacy_reduce=False):
    """``scatter`` (``reduce`` None), ``scatter_add`` (``"add"``), or, with ``legacy_reduce``,
    ``scatter(..., reduce=)``, which PyTorch does not differentiate."""
    target = target_of(input._data)
    data = input._data if fresh else target.copy(input._data)
    target.index.scatter_dim(_at_least_1d(data), dim, _at_least_1d(index._data), _src_array(target, src, data.dtype),
                             reduce)
    if legacy_reduce:
        return record(NoDerivative, data, (input, src), op="aten::scatter")
    if reduce == "add":
        return record(ScatterAddBackward0, data, (input, src), saved=(index,), dim=dim)
    if isinstance(src, Tensor):
        return record(ScatterBackward0, data, (input, src), saved=(index,), dim=dim)
    return record(ScatterBackward1, data, (input,), saved=(index,), dim=dim)


def _check_scatter_reduce(reduce, src):
    if reduce not in ("add", "multiply"):
        raise RuntimeError("reduce argument must be either add or multiply.")
    if isinstance(src, Tensor):
        warnings.warn("The reduce argument of torch.scatter with Tensor src is deprecated and will be removed in "
                      "a future PyTorch release. Use torch.scatter_reduce instead for more reduction options.",
                      UserWarning, stacklevel=3)


@tensor_method()
def gather(input, dim, index, *, sparse_grad=False):
    return _gather(input, _dim_index_checks("gather", input, dim, index), index)


@tensor_method()
def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    src = value if src is None else src
    dim = _dim_index_checks("scatter", input, dim, index, src)
    if reduce is not None:
        _check_scatter_reduce(reduce, src)
        return _scatter(input, dim, index, src, reduce, legacy_reduce=True)
    return _scatter(input, dim, index, src)


@tensor_method()
def scatter_add(input, dim, index, src):
    dim = _dim_index_checks("scatter_add", input, dim, index, src)
    return _scatter(input, dim, index, src, "add")


@tensor_method()
def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
    src = value if src is None else src
    dim = _dim_index_checks("scatter", self, dim, index, src)
    if reduce is not None:
        _check_scatter_reduce(reduce, src)
    operands = (src,) if isinstance(src, Tensor) else ()
    return apply_inplace(self, lambda old: _scatter(old, dim, index, src, reduce, legacy_reduce=reduce is not None),
                         operands, lambda: target_of(self._data).index.scatter_dim(
                             _at_least_1d(self._data), dim, _at_least_1d(index._data),
                             _src_array(target_of(self._data), src, self._data.dtype), reduce, check_first=True))


@tensor_method()
def scatter_add_(self, dim, index, src):
    dim = _dim_index_checks("scatter_add", self, dim, index, src)
    return apply_inplace(self, lambda old: _scatter(old, dim, index, src, "add"), (src,),
                         lambda: target_of(self._data).index.scatter_dim(
                             _at_least_1d(self._data), dim, _at_least_1d(index._data), _at_least_1d(src._data), "add",
                             check_first=True))


# -- nonzero ----------------------------------------------------------------------------------------
@tensor_method()
def nonzero(input, *, as_tuple=False):
    target = target_of(input._data)
    coords = target.index.nonzero(input._data)
    if as_tuple:
        if input.ndim == 0:
            return (Tensor._wrap(target.zeros(coords.shape[0], np.int64)),)
        return tuple(Tensor._wrap(target.contiguous(target.slice(coords, (slice(None), d))))
                     for d in range(input.ndim))
    return Tensor._wrap(coords)


@tensor_method()
def argwhere(input):
    return nonzero(input)
