"""``batch_norm``, ``layer_norm``, ``group_norm``: one recorded op each over the kernels of
``ops/norm.py`` (``NativeBatchNormBackward0``, ``NativeLayerNormBackward0``,
``NativeGroupNormBackward0``, as PyTorch names them).

The backward runs the kernels when nothing records. Under ``create_graph=True`` it is written
with Tensor ops instead (the same two-reduction formula, with the statistics recomputed from
the saved input), so that it is differentiable again; the kernels are the fast path, the
Tensor formula the differentiable one. The kernels are those of the tensors' target
(``target.norm``): the same layer runs on the CPU and on CUDA.
"""
import math

from nbgrad.ops.targets import common_target, target_of

from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph import Node
from ..tensor import Tensor, record

__all__ = ["batch_norm", "layer_norm", "group_norm"]


def _wrap(a, like):
    """Statistics ``a`` (float64, on ``like``'s target) as a tensor of ``like``'s dtype."""
    return Tensor._wrap(target_of(a).astype(a, like._data.dtype))


def _reshaped(t, shape):
    return target_of(t._data).reshape(t._data, shape)


def _shaped(a, shape):
    return target_of(a).reshape(a, tuple(shape))


def _kernels(*tensors):
    """The norm kernels of the target holding ``tensors`` (PyTorch's error if they are on two devices)."""
    return common_target([t._data for t in tensors if t is not None]).norm


def _flat(a):
    return None if a is None else a._data


# -- batch norm --------------------------------------------------------------------------------
class NativeBatchNormBackward0(Node):
    def backward(self, grad):
        x, w = self.saved_tensors
        fns = self.next_functions
        need_dx, need_w, need_b = (f[0] is not None for f in fns)
        if is_grad_enabled():
            return self._composed(grad, x, w, need_dx, need_w, need_b)
        ncl = _ncl(x)
        dx, dw, db = _kernels(grad, x, w).batch_backward(_reshaped(grad, ncl), _reshaped(x, ncl), _flat(w),
                                            self._mean, self._invstd, self.training, need_dx)
        return (Tensor._wrap(_shaped(dx, x.shape)) if need_dx else None,
                Tensor._wrap(dw) if need_w else None, Tensor._wrap(db) if need_b else None)

    def _composed(self, go, x, w, need_dx, need_w, need_b):
        dims = [0] + list(range(2, x.dim()))
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        if self.training:
            xmu = x - x.mean(dims, keepdim=True)
            invstd = ((xmu * xmu).mean(dims, keepdim=True) + self.eps).rsqrt()
        else:
            xmu = x - _wrap(self._mean, x).reshape(shape)
            invstd = _wrap(self._invstd, x).reshape(shape)
        xhat = xmu * invstd
        dx = None
        if need_dx:
            gy = go if w is None else go * w.reshape(shape)
            if self.training:
                gy = gy - gy.mean(dims, keepdim=True) - xhat * (gy * xhat).mean(dims, keepdim=True)
            dx = gy * invstd
        return (dx, (go * xhat).sum(dims) if need_w else None, go.sum(dims) if need_b else None)


def _ncl(x):
    """``(N, C, L)``: the dims after the channels taken as one."""
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def _check_vec(t, name, c):
    if t is not None and t.numel() != c:
        raise RuntimeError(f"{name} should contain {c} elements not {t.numel()}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-05):
    """Normalise each channel (dim 1) over the batch and the other dims. ``training`` uses the
    batch's statistics and updates the running ones in place (``momentum``, variance
    unbiased); otherwise the running statistics are used."""
    if input.dim() < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.dim()}")
    if training:
        size = input.numel() // input.shape[1] if input.shape[1] else 0
        if size == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
    c = input.shape[1]
    if not training and running_mean is None:
        raise RuntimeError("running_mean must be defined in evaluation mode")
    for t, name in ((running_mean, "running_mean"), (running_var, "running_var"), (weight, "weight"),
                    (bias, "bias")):
        _check_vec(t, name, c)
    if not input.is_floating_point():
        raise NotImplementedError(f"nbgrad's batch_norm runs on float32 and float64 tensors, not {input.dtype}")
    track = training and running_mean is not None
    kernels = _kernels(input, weight, bias, running_mean, running_var)
    out, mean, invstd = kernels.batch_forward(_reshaped(input, _ncl(input)), _flat(weight), _flat(bias),
                                              running_mean._data if track else _flat(running_mean),
                                              running_var._data if (track or not training) else None,
                                              training, 0.1 if momentum is None else momentum, eps)
    return record(NativeBatchNormBackward0, _shaped(out, input.shape), (input, weight, bias), saved=(input, weight),
                  _mean=mean, _invstd=invstd, training=training, eps=eps)


# -- layer norm and group norm: rows of (R, M), parameters indexed (r % G) * Cg + m // L ------------
class _RowNormBackward(Node):
    def backward(self, grad):
        x, w = self.saved_tensors
        fns = self.next_functions
        need_dx, need_w, need_b = (f[0] is not None for f in fns)
        if is_grad_enabled():
            return self._composed(grad, x, w, need_dx, need_w, need_b)
        rows = (self._mean.shape[0], self._cg * self._l)
        dx, dw, db = _kernels(grad, x, w).row_backward(_reshaped(grad, rows), _reshaped(x, rows), _flat(w),
                                                       self._mean, self._invstd, self._groups, self._cg, self._l,
                                                       need_dx, need_w or need_b)
        shape = self._param_shape
        return (Tensor._wrap(_shaped(dx, x.shape)) if need_dx else None,
                Tensor._wrap(_shaped(dw, shape)) if need_w else None,
                Tensor._wrap(_shaped(db, shape)) if need_b else None)

    def _composed(self, go, x, w, need_dx, need_w, need_b):
        g, cg, l_ = self._groups, self._cg, self._l
        rows = (-1, g, cg * l_)
        xr = x.reshape(rows)
        xmu = xr - xr.mean(-1, keepdim=True)
        invstd = ((xmu * xmu).mean(-1, keepdim=True) + self.eps).rsqrt()
        xhat = xmu * invstd
        gor = go.reshape(rows)
        dx = None
        if need_dx:
            gy = gor if w is None else gor * w.reshape(g, cg, 1).expand(g, cg, l_).reshape(1, g, cg * l_)
            dx = ((gy - gy.mean(-1, keepdim=True) - xhat * (gy * xhat).mean(-1, keepdim=True)) * invstd).reshape(
                x.shape)
        per_param = (-1, g, cg, l_)
        dw = (gor * xhat).reshape(per_param).sum((0, 3)).reshape(self._param_shape) if need_w else None
        db = gor.reshape(per_param).sum((0, 3)).reshape(self._param_shape) if need_b else None
        return dx, dw, db


class NativeLayerNormBackward0(_RowNormBackward):
    pass


class NativeGroupNormBackward0(_RowNormBackward):
    pass


def _row_norm(node_cls, input, weight, bias, groups, cg, l_, param_shape, eps, **shown):
    if not input.is_floating_point():
        raise NotImplementedError(f"nbgrad's normalisation runs on float32 and float64 tensors, not {input.dtype}")
    m = cg * l_                      # one row: a sample's group (layer norm: one group of all)
    rows = input.numel() // m if m else 0
    out, mean, invstd = _kernels(input, weight, bias).row_forward(_reshaped(input, (rows, m)), _flat(weight),
                                                                  _flat(bias), groups, cg, l_, eps)
    return record(node_cls, _shaped(out, input.shape), (input, weight, bias), saved=(input, weight), _mean=mean,
                  _invstd=invstd, _groups=groups, _cg=cg, _l=l_, _param_shape=tuple(param_shape), eps=eps, **shown)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """Normalise over the last ``len(normalized_shape)`` dims, then scale and shift per element."""
    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    k = len(shape)
    if weight is not None and list(weight.shape) != shape:
        raise RuntimeError(f"Expected weight to be of same shape as normalized_shape, but got weight of shape "
                           f"{list(weight.shape)} and normalized_shape = {shape}")
    if bias is not None and list(bias.shape) != shape:
        raise RuntimeError(f"Expected bias to be of same shape as normalized_shape, but got bias of shape "
                           f"{list(bias.shape)} and normalized_shape = {shape}")
    if input.dim() < k or list(input.shape[input.dim() - k:]) != shape:
        raise RuntimeError(f"Given normalized_shape={shape}, expected input with shape [*, {', '.join(map(str, shape))}"
                           f"], but got input of size{list(input.shape)}")
    m = math.prod(shape)
    return _row_norm(NativeLayerNormBackward0, input, weight, bias, 1, m, 1, shape, eps, normalized_shape=tuple(shape))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):
    """Normalise each sample's channels (dim 1) in ``num_groups`` groups, then scale and shift per channel."""
    if input.dim() < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.dim()}")
    c = input.shape[1]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is not None and (t.dim() != 1 or t.numel() != c):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, "
                               f"but got {name} of shape {list(t.shape)} and input of shape {list(input.shape)}")
    l_ = math.prod(input.shape[2:])
    return _row_norm(NativeGroupNormBackward0, input, weight, bias, num_groups, c // num_groups, l_, [c], eps,
                     N=input.shape[0], C=c, HxW=l_, group=num_groups)

