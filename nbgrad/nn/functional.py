"""``nn.functional``: activations, ``linear``, ``dropout`` and the losses. The activations that
PyTorch records as one node are ops of the table (``ops/table.py``: ``RUN`` and, for
``inplace=True``, ``INPLACE``); the others, and the losses, are composed of Tensor ops (so their
gradients come from those ops' backward rules); ``nll_loss``, the core of ``cross_entropy``, is
one op with its own kernels and backward node, as in PyTorch."""
import math
import warnings

import numpy as np

from nbgrad.ops.targets import target_of

from .. import _dtype
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph import Node
from ..factories import rand
from ..functional.inplace import INPLACE
from ..functional.linalg import addmm
from ..functional.pad import one_hot, pad  # noqa: F401
from ..functional.pointwise import RUN
from ..tensor import Tensor, record

__all__ = ["relu", "relu_", "sigmoid", "tanh", "softplus", "silu", "gelu", "elu", "elu_", "selu", "selu_", "celu",
           "celu_", "leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "hardsigmoid", "hardswish", "relu6",
           "logsigmoid", "mish", "softsign", "tanhshrink", "softmax", "log_softmax", "linear", "dropout",
           "mse_loss", "l1_loss", "nll_loss", "pad", "one_hot", "cross_entropy", "binary_cross_entropy"]


# -- activations ---------------------------------------------------------------------------------
def relu(input, inplace=False):
    return input.relu_() if inplace else input.relu()


def relu_(input):
    return input.relu_()


def sigmoid(input):
    return input.sigmoid()


def tanh(input):
    return input.tanh()


def _table_op(op, input, inplace=False, **params):
    if inplace and input._traced:                      # traced by nbgrad.compile
        return getattr(input, op + "_")(**params)
    return (INPLACE if inplace else RUN)[op](input, **params)


def softplus(input, beta=1.0, threshold=20.0):
    return RUN["softplus"](input, beta=beta, threshold=threshold)


def silu(input, inplace=False):
    return _table_op("silu", input, inplace)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return RUN["gelu" if approximate == "none" else "gelu_tanh"](input)


def elu(input, alpha=1.0, inplace=False):
    return _table_op("elu", input, inplace, alpha=alpha)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(input, inplace=False):
    return _table_op("elu", input, inplace, alpha=_SELU_ALPHA, scale=_SELU_SCALE)


def selu_(input):
    return selu(input, inplace=True)


def celu(input, alpha=1.0, inplace=False):
    """``elu`` of ``x / alpha``, times ``alpha``."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    return _table_op("celu", input, inplace, alpha=alpha, input_scale=1.0 / alpha)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _table_op("leaky_relu", input, inplace, negative_slope=negative_slope)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _table_op("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):
    return _table_op("hardsigmoid", input, inplace)


def hardswish(input, inplace=False):
    return _table_op("hardswish", input, inplace)


def logsigmoid(input):
    return RUN["log_sigmoid"](input)


def mish(input, inplace=False):
    return _table_op("mish", input, inplace)


def softsign(input):
    """Composed, as in PyTorch (its node is ``DivBackward0``)."""
    return input / (input.abs() + 1)


def tanhshrink(input):
    """Composed, as in PyTorch (its node is ``SubBackward0``)."""
    return input - input.tanh()


def _softmax_dim(name, ndim, stacklevel):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
                  "dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim("softmax", input.dim(), _stacklevel)
    return (input if dtype is None else input.to(dtype)).softmax(dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim("log_softmax", input.dim(), _stacklevel)
    return (input if dtype is None else input.to(dtype)).log_softmax(dim)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``: ``weight.t()`` is a view that the matmul kernel reads
    transposed in place, so no copy of the weight is made. A batch of vectors with a bias
    is one ``addmm``, as in PyTorch."""
    if getattr(input, "_traced", False):       # traced by nbgrad.compile
        return input._linear(weight, bias)
    if bias is not None and input.dim() == 2:
        return addmm(bias, input, weight.t())
    out = input.matmul(weight.t())
    return out if bias is None else out + bias


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``, so that the
    expected value is unchanged and ``eval()`` needs no rescaling."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    keep = rand(input.shape, dtype=input.dtype) >= p
    scale = keep.to(input.dtype) * (1.0 / (1.0 - p)) if p < 1.0 else keep.to(input.dtype)
    return input.mul_(scale) if inplace else input * scale


# -- losses ----------------------------------------------------------------------------------------
def _reduction(size_average, reduce, reduction):
    """The ``reduction`` string, from the legacy ``size_average``/``reduce`` flags when given."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
        warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' "
                      "instead.", stacklevel=3)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _check_same_size(input, target):
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      "This will likely lead to incorrect results due to broadcasting. Please ensure they have "
                      "the same size.", stacklevel=3)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target)
    loss = (input - target).square()
    return _reduce(loss if weight is None else loss * weight, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target)
    loss = (input - target).abs()
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-(t log x + (1-t) log(1-x))`` with each log clamped at -100, as PyTorch does, so that
    a probability of exactly 0 or 1 gives a large finite loss instead of ``inf``."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    loss = -(target * input.log().clamp(min=-100) + (1 - target) * (1 - input).log().clamp(min=-100))
    return _reduce(loss if weight is None else loss * weight, reduction)


# -- nll_loss: one recorded op, as in PyTorch ---------------------------------------------------------
# The loss is linear in the input: its gradient is a constant (zero except at the targets)
# times the incoming gradient, so the backward step is again one op, whose own backward is
# the forward op applied to the gradient; that makes every order of derivative one node.
class _NllLossBackwardBackward(Node):
    """The backward step recorded (``create_graph``): linear in ``grad``, constant in ``input``."""

    def backward(self, grad):
        target, weight = self.saved_tensors
        need = self.needs_input_grad
        return (_nll(grad, target, weight, self.reduction, self.ignore_index, self.forward_node) if need[0] else None,
                Tensor._wrap(target_of(grad._data).zeros(*self._input_meta[1])) if need[1] else None)


class NllLossBackwardBackward0(_NllLossBackwardBackward):
    pass


class NllLoss2DBackwardBackward0(_NllLossBackwardBackward):
    pass


class _NllLossBackward(Node):
    _saved_names = ("self", "target", "weight")          # grad_fn._saved_self... (PyTorch's names)
    def backward(self, grad):
        input, target, weight = self.saved_tensors
        g = grad._data
        if self.reduction == "mean":                 # every target ignored: 0/0, NaN
            tw = self.total_weight                   # a host number, or a 0-d array left on the device
            g = target_of(g).launch("div", (g, tw if type(tw) is target_of(g).array_type else float(tw)), g.shape,
                                    g.dtype)
        data = target_of(input._data).loss.nll_backward(input._data.shape, input._data.dtype, target._data,
                                                        None if weight is None else weight._data, g,
                                                        self.ignore_index)
        return (record(self.backward_node, data, (grad, input), saved=(target, weight), reduction=self.reduction,
                       ignore_index=self.ignore_index),)


class NllLossBackward0(_NllLossBackward):
    """1-D and 2-D input."""
    backward_node = NllLossBackwardBackward0


class NllLoss2DBackward0(_NllLossBackward):
    """4-D input (and 3-D or more than 4-D, viewed as 4-D)."""
    backward_node = NllLoss2DBackwardBackward0


NllLossBackwardBackward0.forward_node = NllLossBackward0
NllLoss2DBackwardBackward0.forward_node = NllLoss2DBackward0


def nll_reduced(losses, total, total_weight, reduction):
    """The loss as ``reduction`` asks, from ``nll_forward``'s per-position losses, total and total
    weight (host numbers on the CPU, 0-d arrays kept on the device on CUDA); an all-ignored mean
    is 0/0, NaN, as in PyTorch. ``nbgrad.compile``'s nll step shares it."""
    place = target_of(losses)
    if reduction == "none":
        return losses
    if type(total) is place.array_type:
        return total if reduction == "sum" else place.launch("div", (total, total_weight), (), losses.dtype)
    if reduction == "sum":
        return place.scalar(total, losses.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return place.scalar(total / total_weight, losses.dtype)


def _nll(input, target, weight, reduction, ignore_index, node_cls):
    """The op on checked operands: ``input`` 1-D, 2-D or 4-D, ``target`` of the loss's shape."""
    losses, total, total_weight = target_of(input._data).loss.nll_forward(
        input._data, target._data, None if weight is None else weight._data, ignore_index)
    data = nll_reduced(losses, total, total_weight, reduction)
    return record(node_cls, data, (input,), saved=(input, target, weight), reduction=reduction,
                  ignore_index=ignore_index, total_weight=total_weight)


def _check_batch(input, target):
    if input.dim() == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    if input.dim() > 1 and (target.dim() == 0 or input.shape[0] != target.shape[0]):
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0] if target.dim() else 0}).")


def _check_target_dtype(target):
    if target.dtype is not _dtype.int64:
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got {target.dtype.legacy}")


def _check_weight_and_input(input, weight, name):
    if not input.is_floating_point():
        raise NotImplementedError(f'"{name}" not implemented for \'{input.dtype.legacy}\'')
    if weight is not None and weight.dtype is not input.dtype:
        raise RuntimeError(f"expected scalar type {input.dtype.legacy} but found {weight.dtype.legacy}")


def _nll_1d_2d(input, target, weight, reduction, ignore_index):
    """PyTorch's ``nll_loss``: its checks, in its order."""
    if target.dim() > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    _check_target_dtype(target)
    if input.dim() == 1 and target.dim() == 1:
        if target.numel() != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.numel()}")
        target = target.reshape(())
    n_classes = input.shape[-1]
    if weight is not None and (weight.dim() != 1 or weight.numel() != n_classes):
        raise RuntimeError(f"weight tensor should be defined either for all {n_classes} classes or no classes but "
                           f"got weight tensor of shape: {list(weight.shape)}")
    _check_weight_and_input(input, weight, "nll_loss_out_frame")
    return _nll(input, target, weight, reduction, ignore_index, NllLossBackward0)


def _nll_2d(input, target, weight, reduction, ignore_index):
    """PyTorch's ``nll_loss2d`` (4-D input): its checks, in its order."""
    if target.dim() != 3:
        raise RuntimeError(f"only batches of spatial targets supported (3D tensors) but got targets of dimension: "
                           f"{target.dim()}")
    _check_target_dtype(target)
    if weight is not None and weight.numel() != input.shape[1]:
        raise RuntimeError("weight tensor should be defined either for all or no classes")
    if target.shape[0] != input.shape[0] or target.shape[1:] != input.shape[2:]:
        raise RuntimeError(f"size mismatch (got input: {list(input.shape)} , target: {list(target.shape)}")
    _check_weight_and_input(input, weight, "nll_loss2d_forward_out_frame")
    if weight is not None and weight.ndim != 1:      # the tensor itself where it can: backward reads it again
        weight = weight.reshape(-1)
    return _nll(input, target, weight, reduction, ignore_index, NllLoss2DBackward0)


def _check_weight_grad(weight, name):
    if weight is not None and weight.requires_grad and is_grad_enabled():
        raise RuntimeError(f"The function '{name}' is not differentiable with respect to argument 'weight'. "
                           "This input cannot have requires_grad True.")


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """``-weight[t] * input[n, t]`` for each target ``t`` not equal to ``ignore_index``; the
    mean divides by the sum of those weights (their count without ``weight``).

    One recorded op (``NllLossBackward0``; ``NllLoss2DBackward0`` for 4-D input), as in
    PyTorch, which also runs a 3-D or more than 4-D input as 4-D: ``(N, C, 1, -1)``."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_batch(input, target)
    if getattr(input, "_traced", False):       # traced by nbgrad.compile
        return input._nll_loss(target, weight, reduction, ignore_index)
    if input.dim() <= 2:
        _check_weight_grad(weight, "nll_loss_forward")
        return _nll_1d_2d(input, target, weight, reduction, ignore_index)
    if input.dim() == 4:
        _check_weight_grad(weight, "nll_loss2d_forward")
        return _nll_2d(input, target, weight, reduction, ignore_index)
    n, c = input.shape[:2]
    out_size = [n, *input.shape[2:]]
    if target.shape[1:] != input.shape[2:]:
        raise RuntimeError(f"Expected target size {out_size}, got {list(target.shape)}")
    _check_weight_grad(weight, "nll_loss2d_forward")
    empty = input.numel() == 0
    input = input.contiguous().view(n, c, *((0, 0) if empty else (1, -1)))
    target = target.contiguous().view(n, *((0, 0) if target.numel() == 0 else (1, -1)))
    loss = _nll_2d(input, target, weight, reduction, ignore_index)
    return loss.view(out_size) if reduction == "none" else loss


# -- cross_entropy ------------------------------------------------------------------------------------
def _check_smoothing(label_smoothing):
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """``nll_loss(log_softmax(input))`` for class indices; ``-sum(target * log_softmax(input))``
    for class probabilities (a ``target`` of ``input``'s shape, as PyTorch decides).
    ``label_smoothing`` mixes the target with the uniform distribution over the classes."""
    reduction = _reduction(size_average, reduce, reduction)
    cdim = 0 if input.dim() == 1 else 1
    if target.shape == input.shape:
        return _cross_entropy_probabilities(input, target, weight, ignore_index, reduction, label_smoothing, cdim)
    if label_smoothing > 0:
        _check_smoothing(label_smoothing)
    logp = input.log_softmax(cdim)
    loss = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing <= 0:
        return loss
    # PyTorch's composition: the smoothing term is the (weighted) sum over classes
    n_classes = input.shape[cdim]
    if weight is not None:
        smooth = -(logp * weight.reshape([-1 if d == cdim else 1 for d in range(input.dim())])).sum(cdim)
    else:
        smooth = -logp.sum(cdim)
    ignored = target == ignore_index
    smooth = smooth.masked_fill(ignored, 0.0)
    if reduction == "mean":
        if weight is not None:
            smooth = smooth.sum() / weight.gather(0, target.masked_select(~ignored).reshape(-1)).sum()
        else:
            smooth = smooth.sum() / (~ignored).sum()
    else:
        smooth = _reduce(smooth, reduction)
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)


def _cross_entropy_probabilities(input, target, weight, ignore_index, reduction, label_smoothing, cdim):
    if not target.is_floating_point():
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                           f"{target.dtype.legacy}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    n_classes = input.size(cdim)
    if weight is not None and (weight.dim() != 1 or weight.numel() != n_classes):
        raise RuntimeError(f"cross_entropy: weight tensor should be defined either for all {n_classes} classes or "
                           f"no classes but got weight tensor of shape: {list(weight.shape)}")
    logp = input.log_softmax(cdim)
    if label_smoothing > 0:
        _check_smoothing(label_smoothing)
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    picked = logp * target
    if weight is not None:
        picked = picked * weight.reshape([-1 if d == cdim else 1 for d in range(input.dim())])
    if reduction == "mean":
        return -picked.sum() / (input.numel() // n_classes) if input.numel() else -picked.sum() * math.nan
    return -picked.sum() if reduction == "sum" else -picked.sum(cdim)


# -- the layers with their own kernels, each in its own module --------------------------------------
from . import _conv, _norm, _pool  # noqa: E402
from ._conv import *  # noqa: E402,F401,F403
from ._norm import *  # noqa: E402,F401,F403
from ._pool import *  # noqa: E402,F401,F403

__all__ += _conv.__all__ + _pool.__all__ + _norm.__all__

# -- layers whose functional forms live in their own modules ------------------------------------------
from ._attention import scaled_dot_product_attention  # noqa: E402
from ._embedding import embedding  # noqa: E402
from .dropout import alpha_dropout, dropout1d, dropout2d, dropout3d, feature_alpha_dropout  # noqa: E402

__all__ += ["embedding", "scaled_dot_product_attention", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
            "feature_alpha_dropout"]

# more losses, composed (at the end: they use this module's reduction helpers)
from ._losses import *  # noqa: E402,F401,F403
from ._losses import __all__ as _losses  # noqa: E402

__all__ += _losses
