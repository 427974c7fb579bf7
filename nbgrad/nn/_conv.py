"""``conv1d`` and ``conv2d``: one recorded op (``ConvolutionBackward0``) over the im2col
kernels of ``ops/conv.py``.

The backward of a convolution is two more convolution-like products: the input gradient
(``W^T`` applied to the output gradient, a transposed convolution) and the weight gradient
(the output gradient correlated with the input). Each is a recorded op here too, and the
backward of each of the three is written with the three, so ``create_graph=True`` works to
any order without a second implementation:

- ``conv(x, W)``:             dx = input_grad(go, W),   dW = weight_grad(x, go)
- ``input_grad(go, W)``:      dgo = conv(gg, W),        dW = weight_grad(gg, go)
- ``weight_grad(x, go)``:     dx = input_grad(go, gg),  dgo = conv(x, gg)

A 1-D convolution runs as a 2-D one of height 1 (its arrays are viewed, never copied, and
its tensors keep their own shapes, so its node's edges lead to the caller's tensors).
The kernels are those of the tensors' target (``target.conv``): the same layer runs on the
CPU and on CUDA.
"""
from nbgrad.ops.targets import common_target, target_of

from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph import Node
from ..tensor import Tensor, record

__all__ = ["conv1d", "conv2d"]


def _kernels(*tensors):
    """The conv kernels of the target holding ``tensors`` (PyTorch's error if they are on two devices)."""
    return common_target([t._data for t in tensors if t is not None]).conv


def _as4(a, nd):
    """A raw array of a 1-D convolution, ``(N, C, L)``, seen as ``(N, C, 1, L)``."""
    return target_of(a).slice(a, (slice(None), slice(None), None)) if nd == 1 else a


def _back(a, nd):
    return target_of(a).slice(a, (slice(None), slice(None), 0)) if nd == 1 else a


class _Geometry:
    """stride, lower and upper padding, dilation (each two numbers), groups, and the number
    of spatial dims (1 or 2)."""
    __slots__ = ("stride", "lo", "hi", "dilation", "groups", "nd", "shown")

    def __init__(self, stride, lo, hi, dilation, groups, nd):
        one = (1,) if nd == 1 else ()
        zero = (0,) if nd == 1 else ()
        self.stride, self.lo, self.hi = one + tuple(stride), zero + tuple(lo), zero + tuple(hi)
        self.dilation, self.groups, self.nd = one + tuple(dilation), groups, nd
        # the node attributes that make_dot(show_attrs=True) lists, as PyTorch's node has them
        self.shown = dict(stride=tuple(stride), padding=tuple(lo), dilation=tuple(dilation), groups=groups,
                          transposed=False, output_padding=(0,) * nd)


class ConvolutionBackward0(Node):
    def backward(self, grad):
        x, w = self.saved_tensors
        geo = self._geometry
        need_dx, need_dw, need_db = (f[0] is not None for f in self.next_functions)
        cols, self._cols = self._cols, None          # read once: a retained graph recomputes it
        if is_grad_enabled():                      # create_graph: the gradients as recorded ops
            return (_input_grad(grad, w, x.shape, geo) if need_dx else None,
                    _weight_grad(x, grad, w.shape, geo, cols) if need_dw else None,
                    grad.sum([0] + list(range(2, grad.dim()))) if need_db else None)
        return _fused_backward(grad, x, w, geo, cols, need_dx, need_dw, need_db)


def _fused_backward(grad, x, w, geo, cols, need_dx, need_dw, need_db):
    """The three gradients, nothing recorded: the output gradient is transposed once for both
    products, with the bias gradient summed in that pass."""
    nd = geo.nd
    kernels = _kernels(grad, x, w)
    go = _as4(grad._data, nd)
    if not (need_dx or need_dw):
        return None, None, Tensor._wrap(kernels.bias_grad(go)) if need_db else None
    go_t, db = kernels.transposed(go, need_db)
    dx = dw = None
    w4 = _as4(w._data, nd)
    if need_dx:
        x4 = tuple(x.shape) if nd == 2 else (x.shape[0], x.shape[1], 1, x.shape[2])
        dx = Tensor._wrap(_back(kernels.input_grad(go, w4, x4, *_args(geo), geo.groups, go_t), nd))
    if need_dw:
        if cols is None:
            cols = kernels.im2col(_as4(x._data, nd), w4.shape, *_args(geo))
        dw = Tensor._wrap(_back(kernels.weight_grad(cols, go, w4.shape, geo.groups, go_t), nd))
    return dx, dw, (Tensor._wrap(db) if need_db else None)


class ConvolutionBackwardBackward0(Node):
    """The input gradient ``input_grad(go, W)`` as a recorded op."""

    def backward(self, gg):
        go, w = self.saved_tensors
        fns = self.next_functions
        return (_conv(gg, w, None, self._geometry) if fns[0][0] is not None else None,
                _weight_grad(gg, go, w.shape, self._geometry) if fns[1][0] is not None else None)


class _WeightGradBackward(Node):
    """The weight gradient ``weight_grad(x, go)`` as a recorded op."""

    def backward(self, gg):
        x, go = self.saved_tensors
        fns = self.next_functions
        return (_input_grad(go, gg, x.shape, self._geometry) if fns[0][0] is not None else None,
                _conv(x, gg, None, self._geometry) if fns[1][0] is not None else None)


_WeightGradBackward.__name__ = _WeightGradBackward.__qualname__ = "ConvolutionBackwardBackward0"


def _args(geo):
    return geo.stride, geo.lo, geo.hi, geo.dilation


def _conv(x, w, b, geo):
    nd = geo.nd
    out, cols = _kernels(x, w, b).forward(_as4(x._data, nd), _as4(w._data, nd), None if b is None else b._data,
                                *_args(geo), geo.groups)
    return record(ConvolutionBackward0, _back(out, nd), (x, w, b), saved=(x, w), _geometry=geo,
                  _cols=cols if w.requires_grad else None, **geo.shown)    # cols: for the weight gradient only


def _input_grad(go, w, x_shape, geo):
    nd = geo.nd
    x4 = tuple(x_shape) if nd == 2 else (x_shape[0], x_shape[1], 1, x_shape[2])
    dx = _kernels(go, w).input_grad(_as4(go._data, nd), _as4(w._data, nd), x4, *_args(geo), geo.groups)
    return record(ConvolutionBackwardBackward0, _back(dx, nd), (go, w), saved=(go, w), _geometry=geo, **geo.shown)


def _weight_grad(x, go, w_shape, geo, cols=None):
    nd = geo.nd
    w4 = tuple(w_shape) if nd == 2 else (w_shape[0], w_shape[1], 1, w_shape[2])
    kernels = _kernels(x, go)
    if cols is None:
        cols = kernels.im2col(_as4(x._data, nd), w4, *_args(geo))
    dw = kernels.weight_grad(cols, _as4(go._data, nd), w4, geo.groups)
    return record(_WeightGradBackward, _back(dw, nd), (x, go), saved=(x, go), _geometry=geo, **geo.shown)


# -- the checks, in PyTorch's order and words ----------------------------------------------------
def _expand(value, name, nd, k):
    """``value`` as ``nd`` numbers (an int or a one-element list repeated, as PyTorch's
    argument parser does), which must be as many as the weight's ``k`` spatial dims."""
    value = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(value) == 1:
        value = value * nd
    if len(value) != k:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {k} values to match the "
                           f"convolution dimensions, but got {name}={list(value)}")
    return value


def _padding(padding, stride, dilation, w_shape, nd, k):
    """Lower and upper padding per dim; ``'same'`` puts the odd one at the end, as PyTorch."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * k, (0,) * k
        if padding != "same":
            raise RuntimeError(f"Invalid padding string: '{padding}'")
        if any(s != 1 for s in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        total = [d * (size - 1) for d, size in zip(dilation, w_shape[2:])]
        lo = tuple(t // 2 for t in total)
        return lo, tuple(t - lo_ for t, lo_ in zip(total, lo))
    padding = _expand(padding, "padding", nd, k)
    return padding, padding


def _check(input, weight, bias, stride, lo, hi, dilation, groups, nd):
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(p < 0 for p in lo):
        raise RuntimeError("negative padding is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("non-positive dilation is not supported")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if weight.dim() != nd + 2:
        raise RuntimeError(f"Expected {weight.dim()}-dimensional input for {weight.dim()}-dimensional weight "
                           f"{list(weight.shape)}, but got {input.dim()}-dimensional input of size "
                           f"{list(input.shape)} instead")
    ws = list(weight.shape)
    if ws[0] < groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
                           f"weight of size {ws} instead")
    if ws[0] % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size [{ws}] instead")
    if input.shape[1] != ws[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {ws}, expected input{list(input.shape)} to have "
                           f"{ws[1] * groups} channels, but got {input.shape[1]} channels instead")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != ws[0]):
        raise RuntimeError(f"Given weight of size {ws}, expected bias to be 1-dimensional with {ws[0]} elements, "
                           f"but got bias of size {list(bias.shape)} instead")
    padded = [s + a + b for s, a, b in zip(input.shape[2:], lo, hi)]
    kernel = [d * (k - 1) + 1 for d, k in zip(dilation, ws[2:])]
    if any(p < k for p, k in zip(padded, kernel)):
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
                           f"size: ({' x '.join(map(str, kernel))}). Kernel size can't be greater than actual input "
                           "size")
    if not input.is_floating_point():
        raise NotImplementedError(f"nbgrad's convolution runs on float32 and float64 tensors, not {input.dtype}")
    if weight.dtype is not input.dtype or weight.is_cuda != input.is_cuda:
        raise RuntimeError(f"Input type ({_type(input)}) and weight type ({_type(weight)}) should be the same or input "
                           "should be a MKLDNN tensor and weight is a dense tensor")
    if bias is not None and bias.dtype is not input.dtype:
        c_name = {"float32": "float", "float64": "double", "int64": "long int", "bool": "bool"}
        raise RuntimeError(f"Input type ({c_name[input.dtype.name]}) and bias type ({c_name[bias.dtype.name]}) should "
                           "be the same")


def _type(t):
    """PyTorch's legacy type name, with the device (``torch.cuda.FloatTensor``)."""
    return f"torch.{'cuda.' if t.is_cuda else ''}{t.dtype.legacy}Tensor"


def _convolution(name, nd, input, weight, bias, stride, padding, dilation, groups):
    if input.dim() not in (nd + 1, nd + 2):
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, but got input "
                           f"of size: {list(input.shape)}")
    k = weight.dim() - 2
    stride = _expand(stride, "stride", nd, k)
    dilation = _expand(dilation, "dilation", nd, k)
    lo, hi = _padding(padding, stride, dilation, weight.shape, nd, k)
    unbatched = input.dim() == nd + 1
    if unbatched:
        input = input.unsqueeze(0)
    _check(input, weight, bias, stride, lo, hi, dilation, groups, nd)
    out = _conv(input, weight, bias, _Geometry(stride, lo, hi, dilation, groups, nd))
    return out.squeeze(0) if unbatched else out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of ``input`` (N, C, L) or (C, L) with ``weight`` (O, C/groups, k)."""
    return _convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of ``input`` (N, C, H, W) or (C, H, W) with ``weight``
    (O, C/groups, kh, kw); ``padding`` a number, a pair, ``'valid'`` or ``'same'``."""
    return _convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)
