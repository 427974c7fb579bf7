"""More losses for ``nn.functional``, composed of differentiable Tensor ops (so their
gradients, double backward included, come from those ops' rules). Each follows the formula
of PyTorch's ATen kernel, in its order of operations, so that values agree to rounding;
PyTorch's checks and error texts come first."""
import warnings

from ..factories import zeros_like
from ..functional.pointwise import RUN, where
from .functional import _check_same_size, _reduce, _reduction

__all__ = ["binary_cross_entropy_with_logits", "smooth_l1_loss", "huber_loss", "kl_div", "cosine_embedding_loss",
           "margin_ranking_loss"]


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """``(1 - t) * x - w_p * log_sigmoid(x)`` with ``w_p = 1 + (pos_weight - 1) * t``: the
    log-sigmoid never overflows, whatever the size of ``x``."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    log_sigmoid = RUN["log_sigmoid"](input)
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input - log_sigmoid
    return _reduce(loss if weight is None else loss * weight, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 * z**2 / beta`` where ``z = |x - t| < beta``, else ``z - 0.5 * beta``; ``beta=0``
    is the L1 loss."""
    _check_same_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    z = (input - target).abs()
    if beta == 0.0:
        return _reduce(z, reduction)
    return _reduce(where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 * z**2`` where ``z = |x - t| < delta``, else ``delta * (z - 0.5 * delta)``:
    ``smooth_l1_loss`` times ``delta``."""
    _check_same_size(input, target)
    reduction = _reduction(None, None, reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    if weight is not None and weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    z = (input - target).abs()
    loss = where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
    return _reduce(loss if weight is None else loss * weight, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Pointwise ``t * (log t - x)`` (``input`` holds log-probabilities; 0 where ``t`` is 0),
    or ``exp(t) * (t - x)`` with ``log_target``. ``batchmean`` divides the sum by the batch
    size: the KL divergence per sample; ``mean`` divides by every element, with PyTorch's
    warning."""
    if size_average is not None or reduce is not None:
        reduction = _reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    elif reduction != "batchmean":
        _reduction(None, None, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = target.xlogy(target) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.dim() else loss.sum()
    return _reduce(loss, reduction)


_EPSILON = 1e-12


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """``1 - cos(x1, x2)`` where the target is 1, ``max(0, cos - margin)`` where it is -1,
    0 elsewhere; the cosine over the last dimension of 2-D inputs (of 1-D ones for a 0-d
    target), each squared norm plus 1e-12 as in PyTorch."""
    reduction = _reduction(size_average, reduce, reduction)
    dim = target.dim()
    if dim not in (0, 1):
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    want = 2 if dim == 1 else 1
    if input1.dim() != want or input2.dim() != want:
        raise RuntimeError(f"{dim}D target tensor expects {want}D input tensors, but found inputs with sizes "
                           f"{list(input1.shape)} and {list(input2.shape)}.")
    prod = (input1 * input2).sum(dim)
    mag1 = (input1 * input1).sum(dim) + _EPSILON
    mag2 = (input2 * input2).sum(dim) + _EPSILON
    cos = prod / (mag1 * mag2).sqrt()
    zeros = zeros_like(cos)
    loss = where(target == 1, 1 - cos, zeros) + where(target == -1, (cos - margin).clamp(min=0), zeros)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """``max(0, -y * (x1 - x2) + margin)``: zero once ``x1`` ranks above ``x2`` by ``margin``
    where ``y = 1`` (below, where ``y = -1``)."""
    reduction = _reduction(size_average, reduce, reduction)
    if input1.dim() != input2.dim() or input1.dim() != target.dim():
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
                           f"input1: {input1.shape}, input2: {input2.shape}, target: {target.shape} ")
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0), reduction)
