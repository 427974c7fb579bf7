"""Shape ops. Where PyTorch returns a view, so do we: a NumPy view of the input's memory
(no kernel runs), made with ``make_view`` so that it shares the version counter and can
be replayed on another tensor by its ``view_fn``. ``cat``, ``stack`` and ``repeat`` copy
with the elementwise ``copy`` kernel into slices of their output; ``flip`` has its own.

Backward rules undo the reshaping: a view's gradient is reshaped back, a permutation's
permuted back, an expansion's gradient is summed by the engine (which reduces every
broadcast gradient), and cat and split are each other's backward, as are stack and unbind.
"""
import operator
import warnings

from nbgrad.ops.targets import common_target, target_of

from .._dtype import result_type
from ..autograd.graph import Node
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..tensor import Size, Tensor, _wrap_dim, make_view, record
from . import tensor_method
from .pointwise import TRACING, broadcast_shapes, clone

__all__ = ["reshape", "flatten", "unflatten", "transpose", "swapaxes", "swapdims", "permute", "t", "squeeze",
           "unsqueeze", "broadcast_to", "broadcast_tensors", "narrow", "cat", "concat", "concatenate", "stack",
           "split", "chunk", "unbind", "flip", "movedim", "moveaxis"]


def _sizes(args):
    """``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    try:
        return tuple(operator.index(n) for n in args)
    except TypeError:
        bad = next(n for n in args if not hasattr(n, "__index__"))
        raise TypeError(f"expected a sequence of ints, but got an element of type {type(bad).__name__}") from None


def _check_unique(dims):
    seen = set()
    for d in dims:
        if d in seen:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        seen.add(d)


# -- reshaping ------------------------------------------------------------------------------------
class _Reshaped(Node):
    """The gradient of any op that only changes the shape: reshaped back to ``self.shape``."""

    def backward(self, grad):
        return (grad.reshape(self.shape),)


class ViewBackward0(_Reshaped):
    pass


class ReshapeAliasBackward0(_Reshaped):
    pass


class UnsafeViewBackward0(_Reshaped):
    pass


class SqueezeBackward0(_Reshaped):
    pass


class SqueezeBackward1(_Reshaped):
    pass


class SqueezeBackward2(_Reshaped):
    pass


class UnsqueezeBackward0(_Reshaped):
    pass


def _infer_size(shape, numel):
    """``shape`` with its ``-1`` (if any) filled in, checked against ``numel``."""
    infer, known = None, 1
    for i, n in enumerate(shape):
        if n == -1:
            if infer is not None:
                raise RuntimeError("only one dimension can be inferred")
            infer = i
        elif n < 0:
            raise RuntimeError(f"invalid shape dimension {n} at index {i} of shape {list(shape)}")
        else:
            known *= n
    if infer is None:
        if known == numel:
            return shape
    elif known == 0 and numel == 0:
        raise RuntimeError(f"cannot reshape tensor of 0 elements into shape {list(shape)} because the "
                           "unspecified dimension size -1 can be any value and is ambiguous")
    elif known and numel % known == 0:
        return shape[:infer] + (numel // known,) + shape[infer + 1:]
    raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")


def _view_of(data, shape):
    """``data`` reshaped without a copy, or None where its strides don't allow it."""
    return target_of(data).view(data, shape)


@tensor_method()
def view(input, *shape):
    shape = _infer_size(_sizes(shape), input.numel())
    data = _view_of(input._data, shape)
    if data is None:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                           "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return make_view(input, data, ViewBackward0, lambda v: reshape(v, shape), shape=input.shape)


@tensor_method()
def reshape(input, *shape):
    """A view where the strides allow one, else a copy."""
    shape = _infer_size(_sizes(shape), input.numel())
    data = _view_of(input._data, shape)
    if data is None:
        return _unsafe_view(clone(input), shape)
    node = ViewBackward0 if target_of(input._data).is_contiguous(input._data) else ReshapeAliasBackward0
    return make_view(input, data, node, lambda v: reshape(v, shape), shape=input.shape)


def _unsafe_view(input, shape):
    """A fresh result nobody else sees, reshaped: not marked as a view, so that in-place
    changes to it are not replayed on ``input`` (PyTorch's ``_unsafe_view``)."""
    return record(UnsafeViewBackward0, target_of(input._data).reshape(input._data, shape), (input,),
                  shape=input.shape)


@tensor_method()
def view_as(input, other):
    return view(input, other.shape)


@tensor_method()
def reshape_as(input, other):
    return reshape(input, other.shape)


@tensor_method()
def flatten(input, start_dim=0, end_dim=-1):
    n = input.ndim
    if n == 0:
        return reshape(input, (1,))
    start, end = _wrap_dim(start_dim, n), _wrap_dim(end_dim, n)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if start == end:
        return input
    shape = input.shape
    return reshape(input, shape[:start] + (Size(shape[start:end + 1]).numel(),) + shape[end + 1:])


@tensor_method()
def unflatten(input, dim, sizes):
    d = _wrap_dim(dim, input.ndim)
    sizes = _sizes((sizes,))
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    n = input.shape[d]
    try:
        sizes = _infer_size(sizes, n)
    except RuntimeError:
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {dim} "
                           f"({n}) in the input tensor") from None
    return view(input, input.shape[:d] + sizes + input.shape[d + 1:])


@tensor_method()
def squeeze(input, dim=None):
    n = input.ndim
    if dim is None:
        dims, node = range(n), SqueezeBackward0
    elif isinstance(dim, (tuple, list)):
        dims, node = tuple(_wrap_dim(d, n) for d in dim), SqueezeBackward2
        _check_unique(dims)
    else:
        dims, node = (_wrap_dim(dim, n),), SqueezeBackward1
    axes = tuple(d for d in dims if d < n and input.shape[d] == 1)
    data = target_of(input._data).squeeze(input._data, axes)
    return make_view(input, data, node, lambda v: squeeze(v, dim), shape=input.shape)


@tensor_method()
def unsqueeze(input, dim):
    d = _wrap_dim(dim, input.ndim + 1)
    data = target_of(input._data).slice(input._data, (slice(None),) * d + (None,))
    return make_view(input, data, UnsqueezeBackward0, lambda v: unsqueeze(v, d), shape=input.shape)


# -- permuting ------------------------------------------------------------------------------------------
class TransposeBackward0(Node):
    def backward(self, grad):
        return (grad.transpose(self.dim0, self.dim1),)


class PermuteBackward0(Node):
    def backward(self, grad):
        return (grad.permute(self.inverse),)


class TBackward0(Node):
    def backward(self, grad):
        return (transposed_gradient(grad),)


def transposed_gradient(grad):
    """``grad.t()`` inside a backward step. Unless that step is recorded, the result is a
    plain tensor over the transposed memory (same version counter), not a view with a base
    to keep alive: then a gradient computed transposed (a linear layer's weight) reaches
    its leaf as the sole owner of its memory, and becomes ``.grad`` without a copy."""
    if is_grad_enabled():
        return grad.t()
    out = Tensor._wrap(target_of(grad._data).permute(grad._data))
    out._version_counter = grad._version_counter
    return out


@tensor_method("transpose", "swapdims")
def transpose(input, dim0, dim1):
    n = input.ndim
    d0, d1 = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    dims = list(range(n))
    if n:
        dims[d0], dims[d1] = d1, d0
    data = target_of(input._data).permute(input._data, dims)
    return make_view(input, data, TransposeBackward0, lambda v: transpose(v, d0, d1), dim0=d0, dim1=d1)


swapdims = transpose


@tensor_method()
def swapaxes(input, axis0, axis1):
    return transpose(input, axis0, axis1)


@tensor_method()
def permute(input, *dims):
    dims = _sizes(dims)
    n = input.ndim
    if len(dims) != n:
        raise RuntimeError("permute(sparse_coo): number of dimensions in the tensor input does not match the length "
                           f"of the desired ordering of dimensions i.e. input.dim() = {n} is not equal to "
                           f"len(dims) = {len(dims)}")
    dims = tuple(_wrap_dim(d, n) for d in dims)
    if len(set(dims)) != n:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    inverse = [0] * n
    for i, d in enumerate(dims):
        inverse[d] = i
    data = target_of(input._data).permute(input._data, dims)
    return make_view(input, data, PermuteBackward0, lambda v: permute(v, dims),
                     inverse=tuple(inverse))


@tensor_method()
def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return make_view(input, target_of(input._data).permute(input._data), TBackward0, t)


@tensor_method("movedim", "moveaxis")
def movedim(input, source, destination):
    n = input.ndim
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} dims) should "
                           f"contain the same number of dims as destination ({list(dst)} dims)")
    src, dst = [_wrap_dim(d, n) for d in src], [_wrap_dim(d, n) for d in dst]
    _check_unique(src)
    _check_unique(dst)
    order = [None] * n
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(n) if d not in src)
    return permute(input, [o if o is not None else next(rest) for o in order])


moveaxis = movedim


def _T(input):
    if input.ndim != 2:
        warnings.warn("The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated "
                      "and it will throw an error in a future release. Consider `x.mT` to transpose batches of "
                      "matrices or `x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the dimensions of a "
                      "tensor.", UserWarning, stacklevel=2)
    return permute(input, tuple(range(input.ndim - 1, -1, -1)))


Tensor.T = property(_T)


def _mT(input):
    if input.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. Got {input.ndim}-D tensor.")
    return transpose(input, -2, -1)


Tensor.mT = property(_mT)


# -- broadcasting -------------------------------------------------------------------------------------
class ExpandBackward0(Node):
    def backward(self, grad):
        return (grad,)          # the engine sums it back to the input's shape


@tensor_method()
def expand(input, *sizes):
    sizes = _sizes(sizes)
    shape, n = input.shape, len(sizes)
    lead = n - len(shape)
    if lead < 0:
        raise RuntimeError(f"expand(torch.{input.dtype.legacy}Tensor{{{list(shape)}}}, size={list(sizes)}): the "
                           f"number of sizes provided ({n}) must be greater or equal to the number of dimensions "
                           f"in the tensor ({len(shape)})")
    data = input._data
    target, strides = [], []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise RuntimeError(f"The expanded size of the tensor ({s}) isn't allowed in a leading, "
                                   f"non-existing dimension {i}")
            target.append(s)
            strides.append(0)
            continue
        have = shape[i - lead]
        if s == -1:
            s = have
        elif s != have and (have != 1 or s < 0):
            raise RuntimeError(f"The expanded size of the tensor ({s}) must match the existing size ({have}) at "
                               f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                               f"Tensor sizes: {list(shape)}")
        target.append(s)
        strides.append(data.strides[i - lead] if s == have else 0)
    target = tuple(target)
    out = target_of(data).as_strided(data, target, tuple(strides))
    return make_view(input, out, ExpandBackward0, lambda v: expand(v, target))


@tensor_method()
def expand_as(input, other):
    return expand(input, other.shape)


@tensor_method()
def broadcast_to(input, size):
    return expand(input, size)


def broadcast_tensors(*tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tensors[0]
    shape = broadcast_shapes(*(x.shape for x in tensors))
    return tuple(expand(x, shape) for x in tensors)


@tensor_method()
def contiguous(input, memory_format=None):
    return input if target_of(input._data).is_contiguous(input._data) else clone(input)


# -- pieces: narrow, split, chunk, unbind -----------------------------------------------------------------
class SliceBackward0(Node):
    """The gradient of a slice: zeros around it (a ``cat``, so it is differentiable itself)."""

    def backward(self, grad):
        d, start, size = self.dim, self.start, self.size
        stop = start + grad.shape[d]
        parts = [_zeros_like_along(grad, d, start), grad, _zeros_like_along(grad, d, size - stop)]
        return (cat([p for p in parts if p.shape[d]], d) if grad.shape[d] != size else grad,)


def _zeros_like_along(x, dim, n):
    shape = list(x.shape)
    shape[dim] = n
    return Tensor._wrap(target_of(x._data).zeros(shape, x._data.dtype))


@tensor_method()
def narrow(input, dim, start, length):
    if input.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    d = _wrap_dim(dim, input.ndim)
    size = input.shape[d]
    start, length = operator.index(start), operator.index(length)
    if not -size <= start <= size:
        raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], but got {start})")
    if start < 0:
        start += size
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if start + length > size:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    data = target_of(input._data).slice(input._data, (slice(None),) * d + (slice(start, start + length),))
    return make_view(input, data, SliceBackward0, lambda v: narrow(v, d, start, length), dim=d, start=start, size=size)


def _multi_view(base, arrays, node_cls, view_fns, **attrs):
    """Several views of ``base`` that are the outputs of one node (split, unbind)."""
    if not arrays:
        return ()
    outs = [make_view(base, arrays[0], node_cls, view_fns[0], **attrs)]
    with no_grad():
        outs += [make_view(base, a, node_cls, fn) for a, fn in zip(arrays[1:], view_fns[1:])]
    node = outs[0].grad_fn
    if node is not None:
        node._multi_output = True            # even with one piece, as PyTorch's split is
        node.num_outputs = len(outs)
        node._output_meta = tuple((a.shape, base.dtype, target_of(base._data)) for a in arrays)
        for k, out in enumerate(outs):
            out.grad_fn, out._output_nr = node, k
    return tuple(outs)


class SplitBackward0(Node):
    def backward(self, *grads):
        return (cat(grads, self.dim),)


class SplitWithSizesBackward0(SplitBackward0):
    pass


class UnbindBackward0(Node):
    def backward(self, *grads):
        return (stack(grads, self.dim),)


def _split(input, sizes, d, node_cls):
    arrays, fns, start = [], [], 0
    index = (slice(None),) * d
    target = target_of(input._data)
    for n in sizes:
        arrays.append(target.slice(input._data, index + (slice(start, start + n),)))
        fns.append(lambda v, start=start, n=n: narrow(v, d, start, n))
        start += n
    return _multi_view(input, arrays, node_cls, fns, dim=d)


@tensor_method()
def split(tensor, split_size_or_sections, dim=0):
    if tensor.ndim == 0:
        raise RuntimeError("split expects at least a 1-dimensional tensor")
    d = _wrap_dim(dim, tensor.ndim)
    size = tensor.shape[d]
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = _sizes((split_size_or_sections,))
        if sum(sizes) != size or any(n < 0 for n in sizes):
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                               f"size at dimension {d}), but got split_sizes={list(sizes)}")
        return _split(tensor, sizes, d, SplitWithSizesBackward0)
    n = operator.index(split_size_or_sections)
    if n < 0:
        raise RuntimeError(f"split expects split_size be non-negative, but got split_size={n}")
    if n == 0 and size != 0:
        raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {size}")
    count = max(-(-size // n), 1) if n else 1
    return _split(tensor, [n] * (count - 1) + [size - n * (count - 1)], d, SplitBackward0)


@tensor_method()
def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    if input.ndim == 0:
        raise RuntimeError("chunk expects at least a 1-dimensional tensor")
    d = _wrap_dim(dim, input.ndim)
    size = input.shape[d]
    if size == 0:
        return _split(input, [0] * chunks, d, SplitWithSizesBackward0)
    return split(input, -(-size // chunks), d)


@tensor_method()
def unbind(input, dim=0):
    if input.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    d = _wrap_dim(dim, input.ndim)
    index = (slice(None),) * d
    target = target_of(input._data)
    arrays = [target.slice(input._data, index + (i, Ellipsis)) for i in range(input.shape[d])]
    fns = [lambda v, i=i: squeeze(narrow(v, d, i, 1), d) for i in range(len(arrays))]
    return _multi_view(input, arrays, UnbindBackward0, fns, dim=d)


# -- copies: cat, stack, flip, repeat ---------------------------------------------------------------------
class CatBackward0(Node):
    def backward(self, grad):
        d, start, grads = self.dim, 0, []
        for n in self.sizes:
            if n is None:                           # a skipped legacy empty tensor
                grads.append(Tensor._wrap(target_of(grad._data).zeros((0,), grad._data.dtype)))
                continue
            grads.append(narrow(grad, d, start, n))
            start += n
        return tuple(grads)


def _skipped(x):
    """PyTorch's cat ignores 1-D empty tensors whatever the other shapes (a legacy rule)."""
    return x.shape == (0,)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if TRACING.ops and any(getattr(x, "_traced", False) for x in tensors):   # nbgrad.compile
        return TRACING.ops["cat"](tensors, dim)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got {type(x).__name__}")
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    dtype = result_type(tensors).numpy
    ref = next((x for x in tensors if not _skipped(x)), tensors[0])
    d = _wrap_dim(dim, ref.ndim)
    total = 0
    for i, x in enumerate(tensors):
        if _skipped(x) and x is not ref:
            continue
        if x.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {x.ndim}")
        for j in range(ref.ndim):
            if j != d and x.shape[j] != ref.shape[j]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{ref.shape[j]} but got size {x.shape[j]} for tensor number {i} in the list.")
        total += x.shape[d]
    shape = ref.shape[:d] + (total,) + ref.shape[d + 1:]
    target = common_target([x._data for x in tensors])
    result = target.empty(shape, dtype)
    sizes, start, index = [], 0, (slice(None),) * d
    for x in tensors:
        if _skipped(x) and x is not ref:
            sizes.append(None)
            continue
        n = x.shape[d]
        target.run("copy", target.slice(result, index + (slice(start, start + n),)), x._data, fresh_out=True)
        sizes.append(n)
        start += n
    return record(CatBackward0, result, tensors, dim=d, sizes=sizes)


concat = cat


def concatenate(tensors, axis=0):
    return cat(tensors, axis)


class StackBackward0(Node):
    def backward(self, grad):
        return unbind(grad, self.dim)


def stack(tensors, dim=0):
    tensors = list(tensors)
    if TRACING.ops and any(getattr(x, "_traced", False) for x in tensors):   # nbgrad.compile
        return TRACING.ops["stack"](tensors, dim)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape = tensors[0].shape
    for i, x in enumerate(tensors):
        if x.shape != shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape)} at entry 0 "
                               f"and {list(x.shape)} at entry {i}")
    d = _wrap_dim(dim, len(shape) + 1)
    target = common_target([x._data for x in tensors])
    result = target.empty(shape[:d] + (len(tensors),) + shape[d:], result_type(tensors).numpy)
    index = (slice(None),) * d
    for i, x in enumerate(tensors):
        target.run("copy", target.slice(result, index + (i, Ellipsis)), x._data, fresh_out=True)
    return record(StackBackward0, result, tensors, dim=d)


class FlipBackward0(Node):
    def backward(self, grad):
        return (flip(grad, self.dims),)


@tensor_method()
def flip(input, *dims):
    dims = tuple(_wrap_dim(d, input.ndim) for d in _sizes(dims))
    _check_unique(dims)
    data = input._data
    target = target_of(data)
    result = target.empty(data.shape, data.dtype)
    target.shape.flip(result, target.contiguous(data), dims)
    return record(FlipBackward0, result, (input,), dims=dims)


class RepeatBackward0(Node):
    def backward(self, grad):
        return (grad.reshape(self.tiled).sum_to_size(self.single).reshape(self.shape),)


@tensor_method()
def repeat(input, *repeats):
    """Each output dim ``r * n`` is a broadcast copy into the output viewed as ``(r, n)`` pairs."""
    repeats = _sizes(repeats)
    if len(repeats) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    shape = (1,) * (len(repeats) - input.ndim) + input.shape
    result_shape = tuple(r * n for r, n in zip(repeats, shape))
    bad = next((n for n in result_shape if n < 0), None)
    if bad is not None:
        raise RuntimeError(f"Trying to create tensor with negative dimension {bad}: {list(result_shape)}")
    tiled = sum(((r, n) for r, n in zip(repeats, shape)), ())
    single = sum(((1, n) for n in shape), ())
    data = input._data
    target = target_of(data)
    result = target.empty(result_shape, data.dtype)
    target.run("copy", target.reshape(result, tiled), target.reshape(data, single), fresh_out=True)
    return record(RepeatBackward0, result, (input,), tiled=tiled, single=single, shape=input.shape)
