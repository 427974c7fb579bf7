"""Norms: ``linalg.vector_norm``, ``linalg.matrix_norm``, ``linalg.norm`` and ``torch.norm``.

A vector norm is computed with the reductions (no gradient recorded) and recorded as one
``LinalgVectorNormBackward0`` node whose backward is PyTorch's rule written in Tensor ops
(zero where the norm is zero; for the inf norms, shared evenly among the extreme elements),
so double backward works. Matrix norms (1, -1, inf, -inf, 'fro') compose vector norms,
sums and amax/amin; 'nuc' and the spectral norms (2, -2) are the sum, largest and smallest
singular values (``svdvals``: LAPACK through Numba, ``ops/svd.py``), whose gradient is
``U diag(g) Vh`` (once differentiable: a recorded backward of it raises).
"""
import math
import numbers

from ..autograd.graph import Node
from ..autograd.grad_mode import no_grad
import numpy as np

from nbgrad.ops.targets import target_of

from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor, record
from . import tensor_method
from .linalg import matmul
from .pointwise import where
from .reduction import _dims, _result, amax, amin, keep_shape, sum as _sum

__all__ = ["vector_norm", "matrix_norm", "linalg_norm", "norm", "svdvals", "LinAlgError"]


class LinAlgError(RuntimeError):
    """``torch.linalg.LinAlgError``: a decomposition that cannot be computed."""


class LinalgVectorNormBackward0(Node):
    def backward(self, grad):
        x, y = self.saved_tensors
        p = self.ord
        g = grad.reshape(self.keep)
        n = _result(self, y).reshape(self.keep)     # recorded: second derivatives flow through it
        if p == 0:
            return (x * 0.0,)
        if p == 1:
            return (x.sign() * g,)
        if math.isinf(p):
            mask = x.abs() == n
            return (x.sign() * where(mask, 1.0, 0.0) * (g / _sum(mask, self.dims, keepdim=True)),)
        if p < 1:
            scaled = x.sign() * where(x == 0, 0.0, x.abs() ** (p - 1))
            return (scaled * g * n ** (1 - p),)
        scaled = x.sign() * x.abs() ** (p - 1) if p < 2 else (x if p == 2 else x * x.abs() ** (p - 2))
        scale = where(n == 0, 0.0, g / (n if p == 2 else n ** (p - 1)))
        return (scaled * scale,)


def _check_float(input, name):
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{name}: Expected a floating point or complex tensor as input. Got {input.dtype.legacy}")


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    """(sum |x|^ord)^(1/ord) over ``dim`` (all dims when None); ord 0, inf and -inf as PyTorch."""
    if not isinstance(ord, numbers.Number) or isinstance(ord, bool):
        raise TypeError(f"linalg_vector_norm(): argument 'ord' must be Number, not {type(ord).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    _check_float(x, "linalg.vector_norm")
    dims = _dims(dim, x.ndim, "linalg.vector_norm")
    p = float(ord)
    if math.isinf(p) and (x._data.size == 0 and (dim is None or any(x._data.shape[d] == 0 for d in dims))):
        raise RuntimeError("linalg.vector_norm cannot compute the inf norm on an empty tensor because the "
                           "operation does not have an identity")
    with no_grad():
        a = x.detach().abs()
        if p == math.inf:
            value = amax(a, dims, keepdim)
        elif p == -math.inf:
            value = amin(a, dims, keepdim)
        elif p == 0:
            value = _sum((a != 0).to(x.dtype), dims, keepdim)
        elif p == 1:
            value = _sum(a, dims, keepdim)
        elif p == 2:
            value = _sum(a * a, dims, keepdim).sqrt()
        else:
            value = _sum(a ** p, dims, keepdim) ** (1.0 / p)
    result = record(LinalgVectorNormBackward0, value._data, (x,), ord=p, dims=dims,
                    keep=keep_shape(x._data.shape, dims))
    if result.grad_fn is not None:
        result.grad_fn.save_for_backward(x, result.detach())
    return _out(result, out)


class LinalgSvdBackward0(Node):
    """The singular values' gradient: U diag(g) Vh (the singular vectors get no gradient)."""

    def backward(self, grad):
        if is_grad_enabled():
            raise NotImplementedError("the backward of svdvals (nuclear and spectral norms) cannot be recorded "
                                      "(create_graph=True): nbgrad has no differentiable SVD yet")
        u, vh = Tensor._wrap(self.u), Tensor._wrap(self.vh)
        g = grad.reshape(u.shape[0], 1, u.shape[2])        # one row per matrix of the flattened batch
        return (matmul(u * g, vh).reshape(self.in_shape).contiguous(),)


def svdvals(A, *, driver=None, out=None):
    """The singular values of each matrix in the last two dims, descending."""
    if A.ndim < 2:
        raise RuntimeError("linalg.svd: The input tensor A must have at least 2 dimensions.")
    _check_float(A, "linalg.svd")
    data = A._data
    target = target_of(data)
    batch_shape = data.shape[:-2]
    block = target.reshape(target.contiguous(data), (int(np.prod(batch_shape, dtype=np.int64)),) + data.shape[-2:])
    u, s, vh, bad = target.svd.svd_batch(block)
    if bad >= 0:
        raise LinAlgError("linalg.svd: The algorithm failed to converge because the input matrix contained "
                           "non-finite values.")
    result = record(LinalgSvdBackward0, target.reshape(s, batch_shape + s.shape[-1:]), (A,), u=u, vh=vh,
                    in_shape=data.shape)
    return _out(result, out)


def _out(result, out):
    if out is None:
        return result
    from .out import write_out
    return write_out(out, result)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, out=None):
    """The 'fro' norm, or the largest (smallest) absolute column (ord 1, -1) or row (inf, -inf) sum."""
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    _check_float(A, "linalg.matrix_norm")
    dims = tuple(dim)
    if len(dims) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dims))}")
    d0, d1 = sorted(_dims(dims, A.ndim, "linalg.matrix_norm")) if dims[0] % A.ndim != dims[1] % A.ndim else \
        (None, None)
    if d0 is None:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dims[0]}, {dims[1]})")
    r, c = dims[0] % A.ndim, dims[1] % A.ndim
    if ord == "fro":
        return _out(vector_norm(A, 2, (r, c), keepdim), out)
    if ord in ("nuc", 2, -2):
        moved = A.movedim((r, c), (-2, -1))
        values = svdvals(moved)
        if ord == "nuc" or (ord == 2 and values.shape[-1] == 0):      # no singular values: 0
            value = _sum(values, -1)
        else:
            value = (amax if ord == 2 else amin)(values, -1)
        if keepdim:
            value = value.unsqueeze(min(r, c)).unsqueeze(max(r, c))
        return _out(value, out)
    if ord not in (1, -1, math.inf, -math.inf):
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    summed, over = (r, c) if abs(ord) == 1 else (c, r)     # column sums for 1, row sums for inf
    sums = _sum(A.abs(), summed, keepdim=True)
    extreme = amax if ord > 0 else amin
    if ord > 0 and sums.shape[over] == 0:      # the largest of no sums: 0, as PyTorch gives
        sums = _sum(sums, over, keepdim=True)
        value = sums
    else:
        value = extreme(sums, over, keepdim=True)
    if not keepdim:
        value = value.squeeze((r, c))
    return _out(value, out)


def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None, out=None):
    """``vector_norm`` or ``matrix_norm`` by ``dim`` (one dim or two) and ``ord``."""
    if dim is not None:
        dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
        if len(dims) == 1:
            return vector_norm(A, 2 if ord is None else ord, dims[0], keepdim, dtype=dtype, out=out)
        return matrix_norm(A, "fro" if ord is None else ord, dims, keepdim, dtype=dtype, out=out)
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype, out=out)
    if A.ndim not in (1, 2):
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. "
                           f"Got {A.ndim}D.")
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype, out=out)
    return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype, out=out)


@tensor_method()
def norm(input, p="fro", dim=None, keepdim=False, dtype=None, *, out=None):
    """``torch.norm``: a vector norm over ``dim`` (all elements when None) for a number ``p``;
    'fro' is the 2-norm of the elements; 'nuc' a matrix norm."""
    if isinstance(dim, numbers.Integral):
        dim = (dim,)
    if p is None:
        p = "fro"
    if isinstance(p, str):
        if p == "fro" and (dim is None or len(dim) <= 2):
            return vector_norm(input, 2, dim, keepdim, dtype=dtype, out=out)
        if p == "nuc":
            return matrix_norm(input, "nuc", (-2, -1) if dim is None else dim, keepdim, dtype=dtype, out=out)
        raise RuntimeError(f"norm(): invalid norm type {p}")
    return vector_norm(input, p, dim, keepdim, dtype=dtype, out=out)
