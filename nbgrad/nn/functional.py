"""``nn.functional``: activations, ``linear``, ``dropout`` and the losses, composed of Tensor
ops (so their gradients come from those ops' backward rules, and need no code here)."""
import math
import warnings

from .. import _dtype
from ..factories import rand
from ..functional.linalg import addmm
from ..functional.pointwise import where

__all__ = ["relu", "relu_", "sigmoid", "tanh", "softmax", "log_softmax", "linear", "dropout", "mse_loss",
           "l1_loss", "nll_loss", "cross_entropy", "binary_cross_entropy"]


# -- activations ---------------------------------------------------------------------------------
def relu(input, inplace=False):
    return input.relu_() if inplace else input.relu()


def relu_(input):
    return input.relu_()


def sigmoid(input):
    return input.sigmoid()


def tanh(input):
    return input.tanh()


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


def _class_dim(input):
    if input.dim() == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    return 0 if input.dim() == 1 else 1


def _check_batch(input, target):
    if input.dim() > 1 and (target.dim() == 0 or input.shape[0] != target.shape[0]):
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0] if target.dim() else 0}).")
    if target.dtype is not _dtype.int64:
        raise RuntimeError(f"expected scalar type Long but found {target.dtype.legacy}")


def _targets(target, weight, ignore_index, dtype):
    """The targets made valid indices (0 where ``ignore_index``), which of them count, and
    each one's weight: ``weight[target]`` (1 without ``weight``), 0 where it does not count.

    Losses mask with ``where``, not by multiplying with the weights, so that an ignored
    sample gives an exact zero (no ``0 * inf``) and no gradient, even when every sample is
    ignored and the mean is ``0/0``."""
    keep = target != ignore_index
    target = where(keep, target, 0)
    w = keep.to(dtype)
    if weight is not None:
        w = w * weight.gather(0, target.reshape(-1)).reshape(target.shape)
    return target, keep, w


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """``-input[n, target[n]]`` weighted by ``weight[target[n]]``; the mean divides by the sum
    of those weights (the count of targets not equal to ``ignore_index`` without ``weight``)."""
    reduction = _reduction(size_average, reduce, reduction)
    cdim = _class_dim(input)
    _check_batch(input, target)
    target, keep, w = _targets(target, weight, ignore_index, input.dtype)
    picked = input.gather(cdim, target.unsqueeze(cdim)).squeeze(cdim)
    loss = where(keep, -picked if weight is None else -picked * w, 0.0)
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """``nll_loss(log_softmax(input))`` for class indices; ``-sum(target * log_softmax(input))``
    for class probabilities (a float ``target`` of ``input``'s shape). ``label_smoothing``
    mixes the target with the uniform distribution over the classes."""
    reduction = _reduction(size_average, reduce, reduction)
    cdim = _class_dim(input)
    logp = input.log_softmax(cdim)
    n_classes = input.shape[cdim]
    weight_b = None if weight is None else weight.reshape([-1 if d == cdim else 1 for d in range(input.dim())])
    if target.is_floating_point():
        if target.shape != input.shape:
            raise RuntimeError(f"Expected floating point type target to have the same shape as input "
                               f"{input.shape}, got {target.shape}")
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        picked = logp * target if weight is None else logp * target * weight_b
        if reduction == "mean":
            return -picked.sum() / (input.numel() // n_classes) if input.numel() else -picked.sum() * math.nan
        return -picked.sum() if reduction == "sum" else -picked.sum(cdim)
    loss = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing <= 0:
        return loss
    _, keep, w = _targets(target, weight, ignore_index, input.dtype)
    smooth = where(keep, -(logp if weight is None else logp * weight_b).sum(cdim), 0.0)
    if reduction == "mean":
        smooth = smooth.sum() / w.sum()
    else:
        smooth = _reduce(smooth, reduction)
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)
