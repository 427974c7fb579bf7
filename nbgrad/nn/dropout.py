"""Channel-wise and alpha dropout (``F.dropout1d/2d/3d``, ``F.alpha_dropout``,
``F.feature_alpha_dropout`` and their modules), composed of Tensor ops as ``F.dropout`` is.

Channel-wise dropout draws one keep/drop per ``(sample, channel)`` and broadcasts it over the
spatial positions, so whole feature maps are zeroed (and the rest scaled by ``1/(1-p)``).
Alpha dropout keeps SELU's self-normalisation: dropped values become SELU's negative
saturation and the result is moved back to zero mean and unit variance (PyTorch's formula)."""
import warnings

from ..factories import rand
from .module import Module

__all__ = ["dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
           "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]

_SELU_SATURATION = 1.7580993408473766          # -alpha * scale of SELU: its value at -inf, negated


def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _keep(input, p, feature):
    """1.0 (kept) or 0.0 per element, or per (sample, channel) broadcast over the rest."""
    shape = tuple(input.shape[:2]) + (1,) * (input.dim() - 2) if feature else tuple(input.shape)
    return (rand(shape, dtype=input.dtype) >= p).to(input.dtype)


def _dropout(input, p, training, inplace, feature, alpha):
    _check_p(p)
    if not training or p == 0.0 or input.numel() == 0:
        return input
    keep = _keep(input, p, feature)
    if not alpha:
        noise = keep * (1.0 / (1.0 - p)) if p < 1.0 else keep
        return input.mul_(noise) if inplace else input * noise
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    a = 1.0 / ((_SELU_SATURATION ** 2 * p + 1) * (1 - p)) ** 0.5
    shift = (keep - 1) * (_SELU_SATURATION * a) + _SELU_SATURATION * a * p
    return input.mul_(keep * a).add_(shift) if inplace else input * (keep * a) + shift


def _channelwise(input, p, training, inplace, batched_dim):
    """``batched_dim``: the input's dimension with a batch; one less is one sample, run as a batch of one."""
    if input.dim() == batched_dim - 1:
        return _dropout(input.unsqueeze(0), p, training, inplace, True, False).squeeze(0)
    return _dropout(input, p, training, inplace, True, False)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input."""
    _check_p(p)
    if input.dim() not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.dim()}D input. Note that "
                           "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial dimension, a "
                           "channel dimension, and an optional batch dimension (i.e. 2D or 3D inputs).")
    return _channelwise(input, p, training, inplace, 3)


def _deprecated_dims(name, spatial, ndim):
    warnings.warn(f"{name}: Received a {ndim}-D input to {name}, which is deprecated and will result in an error "
                  f"in a future release. To retain the behavior and silence this warning, please use dropout "
                  f"instead. Note that {name} exists to provide channel-wise dropout on inputs with {spatial} "
                  f"spatial dimensions, a channel dimension, and an optional batch dimension (i.e. {spatial + 1}D or "
                  f"{spatial + 2}D inputs).", stacklevel=3)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of ``(N, C, H, W)`` input (a 3-D input is taken as ``(N, C, L)``,
    with PyTorch's warning)."""
    _check_p(p)
    if input.dim() not in (3, 4):
        _deprecated_dims("dropout2d", 2, input.dim())
    if input.dim() == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                      "switch to using dropout1d instead.", stacklevel=2)
    return _dropout(input, p, training, inplace, True, False)


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input."""
    _check_p(p)
    if input.dim() not in (4, 5):
        _deprecated_dims("dropout3d", 3, input.dim())
    return _channelwise(input, p, training, inplace, 5) if input.dim() == 4 else \
        _dropout(input, p, training, inplace, True, False)


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _dropout(input, p, training, inplace, False, True)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _dropout(input, p, training, inplace, True, True)


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        _check_p(p)
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return type(self)._fn(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    _fn = staticmethod(dropout1d)


class Dropout2d(_DropoutNd):
    _fn = staticmethod(dropout2d)


class Dropout3d(_DropoutNd):
    _fn = staticmethod(dropout3d)


class AlphaDropout(_DropoutNd):
    _fn = staticmethod(alpha_dropout)


class FeatureAlphaDropout(_DropoutNd):
    _fn = staticmethod(feature_alpha_dropout)

