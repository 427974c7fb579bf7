"""Matrix products: ``mm``, ``bmm``, ``mv`` and ``dot`` are the primitive ops (one kernel,
``nbgrad.ops.linalg.bmm``); ``matmul`` is composed of them and of shape ops as PyTorch
composes it, so its gradients, batch broadcasting included, come from theirs.
"""
import math

from nbgrad.ops.targets import common_target, target_of

from .. import _dtype
from ..autograd.graph import Node
from ..tensor import Tensor, record
from . import tensor_method
from .pointwise import TRACING, broadcast_shapes
from .shape import _unsafe_view, transposed_gradient

__all__ = ["matmul", "mm", "addmm", "bmm", "mv", "dot", "outer", "ger"]

_C_NAMES = {"float32": "float", "float64": "double", "int64": "long int", "bool": "bool"}


class MmBackward0(Node):
    _saved_names = ("self", "mat2")           # grad_fn._saved_self...

    def backward(self, grad):
        a, b = self.saved_tensors
        need = self.needs_input_grad
        return _mm_grads(grad, a, b, need[0], need[1], self.transposed)


class AddmmBackward0(Node):
    """``beta * input + alpha * mat1 @ mat2``: the engine sums ``input``'s gradient down to
    its (broadcast) shape."""
    _saved_names = ("mat1", "mat2")           # grad_fn._saved_self...
    alpha = beta = 1

    def backward(self, grad):
        a, b = self.saved_tensors
        need = self.needs_input_grad
        g = grad if self.alpha == 1 else grad * self.alpha
        grad_input = (grad if self.beta == 1 else grad * self.beta) if need[0] else None
        return (grad_input,) + _mm_grads(g, a, b, need[1], need[2], self.transposed)


def _mm_grads(grad, a, b, need_a, need_b, transposed):
    """The gradients of ``a @ b``. An operand that is a transposed view (``W.t()`` in
    ``x @ W.t()``) gets its gradient computed transposed, ``(grad.t() @ a).t()``, as PyTorch
    does: then the gradient that reaches ``W`` through ``t()`` is C-contiguous, not a strided
    copy away from it."""
    grad_a = grad_b = None
    if need_a:
        grad_a = transposed_gradient(mm(b, grad.t())) if transposed[0] else mm(grad, b.t())
    if need_b:
        grad_b = transposed_gradient(mm(grad.t(), a)) if transposed[1] else mm(a.t(), grad)
    return grad_a, grad_b


class BmmBackward0(Node):
    _saved_names = ("self", "mat2")           # grad_fn._saved_self...

    def backward(self, grad):
        a, b = self.saved_tensors
        need = self.needs_input_grad
        return (bmm(grad, b.mT) if need[0] else None), (bmm(a.mT, grad) if need[1] else None)


class MvBackward0(Node):
    _saved_names = ("self", "vec")           # grad_fn._saved_self...

    def backward(self, grad):
        a, v = self.saved_tensors
        need = self.needs_input_grad
        return (outer(grad, v) if need[0] else None), (mv(a.t(), grad) if need[1] else None)


class DotBackward0(Node):
    _saved_names = ("self", "tensor")           # grad_fn._saved_self...

    def backward(self, grad):
        a, b = self.saved_tensors
        need = self.needs_input_grad
        return (grad * b if need[0] else None), (grad * a if need[1] else None)


def _product(node_cls, a, b, a3, b3, shape, **attrs):
    """Run the kernel on the 3-D forms ``a3``, ``b3`` of ``a``, ``b`` and record ``node_cls``."""
    return record(node_cls, _product_data(node_cls, a, b, a3, b3, shape), (a, b), saved=_saved_operands(a, b),
                  **attrs)


def _product_data(node_cls, a, b, a3, b3, shape):
    if a.dtype is _dtype.bool:
        name = "dot" if node_cls is DotBackward0 else "addmm_impl_cpu_"
        raise NotImplementedError(f"\"{name}\" not implemented for 'Bool'")
    target = common_target([a3, b3])
    if a3.dtype.itemsize == 2 and a3.dtype.kind != "i":    # float16: multiplied in float32, stored in 2 bytes (as PyTorch)
        f32 = _dtype.float32.numpy
        product = target.linalg.bmm(target.astype(a3, f32), target.astype(b3, f32))
        return target.reshape(target.astype(product, a3.dtype), shape)
    return target.reshape(target.linalg.bmm(a3, b3), shape)


def _saved_operands(a, b):
    """Each gradient needs only the other operand: keep just what will be used, so that an
    in-place change of the rest (an optimizer step on a weight) is no error."""
    return (a if b.requires_grad else None, b if a.requires_grad else None)


def _check_dim(t, ndim, what, detail=""):
    if not isinstance(t, Tensor):
        raise TypeError(f"expected Tensor as argument, but got {type(t).__name__}")
    if t.ndim != ndim:
        raise RuntimeError(f"{what} must be a {'matrix' if ndim == 2 else '3D tensor'}{detail}")


@tensor_method()
def mm(input, mat2):
    """The product of two matrices."""
    _check_dim(input, 2, "self")
    _check_dim(mat2, 2, "mat2")
    (n, k), (k2, m) = input.shape, mat2.shape
    if input.dtype is not mat2.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{_C_NAMES[input.dtype.name]} != {_C_NAMES[mat2.dtype.name]}")
    if k != k2:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({n}x{k} and {k2}x{m})")
    return _product(MmBackward0, input, mat2, _batch_of_one(input._data), _batch_of_one(mat2._data), (n, m),
                    transposed=(_is_transposed(input), _is_transposed(mat2)))


@tensor_method()
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``, one op as in PyTorch (a linear layer is
    ``addmm(bias, x, W.t())``): the bias is added into the product in place, and
    ``beta == 0`` ignores ``input``, NaNs included."""
    if TRACING.ops and any(getattr(x, "_traced", False) for x in (input, mat1, mat2)):  # nbgrad.compile
        return TRACING.ops["addmm"](input, mat1, mat2, beta, alpha)
    for t, name in ((mat1, "mat1"), (mat2, "mat2")):
        _check_dim(t, 2, name, f", got {t.ndim}-D tensor" if isinstance(t, Tensor) else "")
    (n, k), (k2, m) = mat1.shape, mat2.shape
    if k != k2:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({n}x{k} and {k2}x{m})")
    for other in (mat1, mat2):
        if input.dtype is not other.dtype:
            raise RuntimeError(f"self and mat2 must have the same dtype, but got {input.dtype.legacy} and "
                               f"{other.dtype.legacy}")
    _check_expandable(input.shape, (n, m))
    out = _product_data(AddmmBackward0, mat1, mat2, _batch_of_one(mat1._data), _batch_of_one(mat2._data), (n, m))
    target = common_target([out, input._data])
    if alpha != 1:
        target.run("mul", out, out, target.number(alpha, out.dtype))
    if beta != 0 and out.size:
        bias = input._data
        if beta != 1:
            bias = target.launch("mul", (bias, beta), bias.shape, out.dtype)
        if bias.ndim and bias.shape[-1] == m and bias.size == m and target.is_contiguous(bias):
            target.linalg.add_rows(out, target.reshape(bias, (-1,)))
        else:
            target.run("add", out, out, bias)
    attrs = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v != 1}
    return record(AddmmBackward0, out, (input, mat1, mat2), saved=_saved_operands(mat1, mat2),
                  transposed=(_is_transposed(mat1), _is_transposed(mat2)), **attrs)


def _batch_of_one(data):
    """A matrix as a batch of one, for the batched kernel (a view)."""
    return target_of(data).slice(data, (None,))


def _check_expandable(shape, target):
    """PyTorch's error for a tensor that cannot broadcast to ``target``."""
    for d in range(1, len(shape) + 1):
        if d > len(target) or shape[-d] not in (1, target[-d]):
            dim = len(target) - d
            raise RuntimeError(f"The expanded size of the tensor ({target[-d] if d <= len(target) else -1}) must "
                               f"match the existing size ({shape[-d]}) at non-singleton dimension {dim}.  "
                               f"Target sizes: {list(target)}.  Tensor sizes: {list(shape)}")


def _is_transposed(t):
    return target_of(t._data).is_transposed(t._data)


@tensor_method()
def bmm(input, mat2):
    """Batched products of matrices: ``out[i] = input[i] @ mat2[i]``."""
    _check_dim(input, 3, "batch1")
    _check_dim(mat2, 3, "batch2")
    (nb, n, k), (nb2, k2, m) = input.shape, mat2.shape
    if (nb2, k2) != (nb, k):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{nb}, {k}] "
                           f"but got: [{nb2}, {k2}].")
    if input.dtype is not mat2.dtype:
        raise RuntimeError(f"expected scalar type {input.dtype.legacy} but found {mat2.dtype.legacy}")
    return _product(BmmBackward0, input, mat2, input._data, mat2._data, (nb, n, m))


@tensor_method()
def mv(input, vec):
    """A matrix times a vector."""
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input.ndim}, {vec.ndim}")
    (n, k), (k2,) = input.shape, vec.shape
    if k != k2:
        raise RuntimeError(f"size mismatch, got input ({n}), mat ({n}x{k}), vec ({k2})")
    if input.dtype is not vec.dtype:
        raise RuntimeError(f"addmv input tensors must have the same dtype, but got "
                           f"{vec.dtype.legacy}, {input.dtype.legacy}, and {vec.dtype.legacy}")
    vec3 = target_of(vec._data).reshape(vec._data, (1, k, 1))
    return _product(MvBackward0, input, vec, _batch_of_one(input._data), vec3, (n,))


@tensor_method()
def dot(input, other):
    """The inner product of two vectors: a 0-d tensor."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    k, k2 = input.shape[0], other.shape[0]
    if k != k2:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{k}] and src [{k2}] to have the same "
                           f"number of elements, but got {k} and {k2} elements respectively")
    if input.dtype is not other.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{input.dtype.legacy} and {other.dtype.legacy}")
    target = common_target([input._data, other._data])
    return _product(DotBackward0, input, other, target.reshape(input._data, (1, 1, k)),
                    target.reshape(other._data, (1, k, 1)), ())


@tensor_method("outer", "ger")
def outer(input, vec2):
    """``input[i] * vec2[j]``: an elementwise product of broadcast views, not a BLAS call."""
    for name, v in (("self", input), ("vec2", vec2)):
        if v.dim() != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {v.dim()}-D")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


ger = outer


@tensor_method()
def matmul(input, other):
    """PyTorch's ``matmul``: vectors, matrices and batches of them with broadcast batch dims.

    A batch times one matrix is one ``mm`` over the batch folded into rows; otherwise
    both sides are broadcast to the common batch shape and flattened into one ``bmm``
    (a broadcast operand is copied there, as in PyTorch)."""
    for t in (input, other):
        if not isinstance(t, Tensor):
            raise TypeError(f"matmul(): argument must be Tensor, not {type(t).__name__}")
    da, db = input.ndim, other.ndim
    if da == 0 or db == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {da}D and {db}D")
    if da == 1 and db == 1:
        return dot(input, other)
    if da == 2 and db == 1:
        return mv(input, other)
    if da == 1 and db == 2:
        return mm(input.unsqueeze(0), other).squeeze(0)
    if da == 2 and db == 2:
        return mm(input, other)
    if da >= 3 and db <= 2:
        rows = input.shape[:-1]
        flat = input.reshape(math.prod(rows), input.shape[-1])
        out = mv(flat, other) if db == 1 else mm(flat, other)
        return _unsafe_view(out, rows + out.shape[1:])
    a = input.unsqueeze(0) if da == 1 else input
    b = other.unsqueeze(-1) if db == 1 else other
    (n, k), (k2, m) = a.shape[-2:], b.shape[-2:]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    nb = math.prod(batch)
    if k != k2:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{nb}, {k}] "
                           f"but got: [{nb}, {k2}].")
    out = bmm(a.expand(batch + (n, k)).reshape(nb, n, k), b.expand(batch + (k, m)).reshape(nb, k, m))
    shape = batch + ((n,) if da > 1 else ()) + ((m,) if db > 1 else ())
    return _unsafe_view(out, shape)


@tensor_method("__matmul__")
def _matmul_operator(input, other):
    return matmul(input, other) if isinstance(other, Tensor) else NotImplemented


@tensor_method("__rmatmul__")
def _rmatmul_operator(input, other):
    return matmul(other, input) if isinstance(other, Tensor) else NotImplemented
