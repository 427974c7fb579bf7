"""Pooling: ``max_pool1d/2d``, ``avg_pool1d/2d``, ``adaptive_avg_pool1d/2d``, each one recorded
op over the kernels of ``ops/pool.py`` (the 1-D forms pool a height-1 image, as PyTorch does,
so their node is ``SqueezeBackward1`` over the 2-D one).

Every backward here is linear in the gradient, and its own backward is the forward op again
(max: reading at the saved indices; average: the same windows), so each pair of node classes
is closed under differentiation and ``create_graph=True`` works to any order.

The kernels are those of the tensor's target (``target.pool``): the same layer runs on the CPU
and on CUDA.
"""
import numpy as np

from nbgrad.ops.targets import target_of

from ..autograd.graph import Node
from ..tensor import Tensor, record

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
           "max_pool1d_with_indices", "max_pool2d_with_indices"]


def _planes(a):
    """A raw ``(..., H, W)`` array as ``(P, H, W)``."""
    return target_of(a).reshape(a, (-1, *a.shape[-2:]))


def _shaped(a, shape):
    return target_of(a).reshape(a, tuple(shape))


# -- max ---------------------------------------------------------------------------------------
class MaxPool2DWithIndicesBackward0(Node):
    """The max pool's backward; also the backward of its own backward, which reads values at
    the same indices as the forward did."""

    def backward(self, grad):
        (idx,) = self.saved_tensors
        target = target_of(grad._data)
        go, ix = _planes(grad._data), _planes(idx._data)
        if self._empty is not None:            # windows wholly in the padding: -inf, no input to send to
            go, ix = target.copy(go), target.copy(ix)
            rows, cols = self._empty
            for key in [(slice(None), r) for r in rows] + [(slice(None), slice(None), c) for c in cols]:
                for a in (go, ix):
                    target.copy_into(target.slice(a, key), target.number(0, a.dtype))
        dx = target.pool.max_backward(go, ix, self._in_shape[-2:])
        return (record(MaxPool2DWithIndicesBackwardBackward0, _shaped(dx, self._in_shape), (grad,), saved=(idx,),
                       _out_shape=grad.shape),)


class MaxPool2DWithIndicesBackwardBackward0(Node):
    def backward(self, gg):
        (idx,) = self.saved_tensors
        out = target_of(gg._data).pool.max_gather(_planes(gg._data), _planes(idx._data))
        return (record(MaxPool2DWithIndicesBackward0, _shaped(out, self._out_shape), (gg,), saved=(idx,),
                       _in_shape=gg.shape),)


def _empty_windows(in_hw, out_hw, kernel, stride, padding, dilation):
    """The output rows and the output columns whose windows lie wholly in the padding (PyTorch
    gives them -inf and an index outside the plane, and no gradient), or None: planned on the host."""
    empty = [[o for o in range(out) if not any(0 <= o * s - p + j * d < size for j in range(k))]
             for size, out, k, s, p, d in zip(in_hw, out_hw, kernel, stride, padding, dilation)]
    if not empty[0] and not empty[1]:
        return None
    return empty[0], empty[1]


def _pair(value, name, what, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) == 0 and allow_none:
        return None
    if len(value) == 1:
        return value * 2
    if len(value) != 2:
        raise RuntimeError(f"{name}: {what}")
    return value


def _check_window(kernel, stride, padding, dilation):
    if stride[0] == 0 or stride[1] == 0:
        raise RuntimeError("stride should not be zero")
    if kernel[0] <= 0 or kernel[1] <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {kernel[0]} kW: {kernel[1]}")
    if stride[0] < 0 or stride[1] < 0:
        raise RuntimeError(f"stride should be greater than zero, but got dH: {stride[0]} dW: {stride[1]}")
    if dilation[0] <= 0 or dilation[1] <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dilation[0]} "
                           f"dilationW: {dilation[1]}")
    for k, p, d in zip(kernel, padding, dilation):
        if p < 0 or p > ((k - 1) * d + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={d}")


def _check_input(input):
    if input.dim() not in (3, 4) or any(s == 0 for s in input.shape[-3:]):
        raise RuntimeError(f"Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                           f"got:{list(input.shape)}")
    if not input.is_floating_point():
        raise NotImplementedError(f"nbgrad's pooling runs on float32 and float64 tensors, not {input.dtype}")


def _out_hw(input, kernel, stride, padding, dilation, ceil_mode):
    h, w = input.shape[-2:]
    size = target_of(input._data).pool.pool_out_size
    oh = size(h, kernel[0], padding[0], stride[0], dilation[0], ceil_mode)
    ow = size(w, kernel[1], padding[1], stride[1], dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        c = input.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{oh}x{ow}). Output "
                           "size is too small")
    return oh, ow


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    kernel = _pair(kernel_size, "max_pool2d", "kernel_size must either be a single int, or a tuple of two ints")
    stride = _pair(stride, "max_pool2d", "stride must either be omitted, a single int, or a tuple of two ints",
                   allow_none=True) or kernel
    padding = _pair(padding, "max_pool2d", "padding must either be a single int, or a tuple of two ints")
    dilation = _pair(dilation, "max_pool2d", "dilation must be either a single int, or a tuple of two ints")
    if input.dim() not in (3, 4):
        raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    _check_window(kernel, stride, padding, dilation)
    _check_input(input)
    out_hw = _out_hw(input, kernel, stride, padding, dilation, ceil_mode)
    out, idx = target_of(input._data).pool.max_forward(_planes(input._data), out_hw, kernel, stride, padding,
                                                       dilation)
    shape = (*input.shape[:-2], *out_hw)
    indices = Tensor._wrap(_shaped(idx, shape))
    out = record(MaxPool2DWithIndicesBackward0, _shaped(out, shape), (input,), saved=(indices,),
                 _in_shape=input.shape, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                 ceil_mode=ceil_mode, _empty=_empty_windows(input.shape[-2:], out_hw, kernel, stride, padding, dilation))
    return out, indices


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum of each window (``stride`` defaults to ``kernel_size``; padding is never
    picked); with ``return_indices`` also the flat index of each maximum within its plane."""
    out, indices = max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)
    return (out, indices) if return_indices else out


def _single(value, name, what, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, int):
        return (1, value)
    value = tuple(value)
    if len(value) == 0 and allow_none:
        return None
    if len(value) != 1:
        raise RuntimeError(f"{name}: {what}")
    return (1, value[0])


def _check_1d(input, name):
    if input.dim() not in (2, 3):
        raise RuntimeError(f"{name}() Expected 2D or 3D input tensor, but got {list(input.shape)}")


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    _check_1d(input, "max_pool1d")
    kernel = _single(kernel_size, "max_pool1d", "kernel_size must be a single int")
    stride = _single(stride, "max_pool1d", "stride must be a single int", allow_none=True) or kernel
    padding = (0, _single(padding, "max_pool1d", "padding must be a single int")[1])
    dilation = _single(dilation, "max_pool1d", "dilation must be a single int")
    out, indices = max_pool2d_with_indices(input.unsqueeze(-2), kernel, stride, padding, dilation, ceil_mode)
    return out.squeeze(-2), indices.squeeze(-2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    out, indices = max_pool1d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)
    return (out, indices) if return_indices else out


# -- average over windows ----------------------------------------------------------------------
def _avg_nodes(name):
    """The forward node ``name`` and its backward's node ``name``BackwardBackward0: each one's
    backward is the other op on the incoming gradient, over the same windows."""
    def forward_backward(self, grad):
        dx = target_of(grad._data).pool.avg_backward(_planes(grad._data), self._windows, self._in_shape[-2:])
        return (record(back, _shaped(dx, self._in_shape), (grad,), _windows=self._windows,
                       _in_shape=self._in_shape, _out_shape=grad.shape),)

    def backward_backward(self, gg):
        out = target_of(gg._data).pool.avg_forward(_planes(gg._data), self._windows)
        return (record(fwd, _shaped(out, self._out_shape), (gg,), _windows=self._windows,
                       _in_shape=self._in_shape),)

    fwd = type(f"{name}Backward0", (Node,), {"backward": forward_backward, "__module__": __name__})
    back = type(f"{name}BackwardBackward0", (Node,), {"backward": backward_backward, "__module__": __name__})
    return fwd, back


AvgPool2DBackward0, AvgPool2DBackwardBackward0 = _avg_nodes("AvgPool2D")
AdaptiveAvgPool2DBackward0, AdaptiveAvgPool2DBackwardBackward0 = _avg_nodes("AdaptiveAvgPool2D")


def _avg(node_cls, input, windows, **shown):
    out = target_of(input._data).pool.avg_forward(_planes(input._data), windows)
    return record(node_cls, _shaped(out, (*input.shape[:-2], *out.shape[-2:])), (input,), _windows=windows,
                  _in_shape=input.shape, **shown)


def _avg_windows(size, out, k, s, p, count_include_pad):
    start = np.arange(out, dtype=np.int64) * s - p
    end = np.minimum(start + k, size + p)
    divisor = (end - start) if count_include_pad else (np.minimum(end, size) - np.maximum(start, 0))
    return start, end, divisor.astype(np.float64)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """The mean of each window; ``count_include_pad`` counts the zero padding in the divisor,
    ``divisor_override`` replaces the divisor."""
    kernel = _pair(kernel_size, "avg_pool2d", "kernel_size must either be a single int, or a tuple of two ints")
    stride = _pair(stride, "avg_pool2d", "stride must either be omitted, a single int, or a tuple of two ints",
                   allow_none=True) or kernel
    padding = _pair(padding, "avg_pool2d", "padding must either be a single int, or a tuple of two ints")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    if input.dim() < 3:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-input.dim()}, {input.dim() - 1}], "
                         "but got -3)")
    _check_window(kernel, stride, padding, (1, 1))
    _check_input(input)
    oh, ow = _out_hw(input, kernel, stride, padding, (1, 1), ceil_mode)
    h, w = input.shape[-2:]
    hs, he, hd = _avg_windows(h, oh, kernel[0], stride[0], padding[0], count_include_pad)
    ws, we, wd = _avg_windows(w, ow, kernel[1], stride[1], padding[1], count_include_pad)
    if divisor_override is not None:
        hd, wd = np.full(oh, float(divisor_override)), np.ones(ow)
    return _avg(AvgPool2DBackward0, input, (hs, he, hd, ws, we, wd), kernel_size=kernel, stride=stride,
                padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                divisor_override=divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    _check_1d(input, "avg_pool1d")
    kernel = _single(kernel_size, "avg_pool1d", "kernel_size must be a single int")
    stride = _single(stride, "avg_pool1d", "stride must be a single int", allow_none=True) or kernel
    padding = (0, _single(padding, "avg_pool1d", "padding must be a single int")[1])
    return avg_pool2d(input.unsqueeze(-2), kernel, stride, padding, ceil_mode, count_include_pad).squeeze(-2)


def _adaptive_windows(size, out):
    o = np.arange(out, dtype=np.int64)
    start = (o * size) // out
    end = ((o + 1) * size + out - 1) // out
    return start, end, (end - start).astype(np.float64)


def adaptive_avg_pool2d(input, output_size):
    """The mean over ``output_size`` windows that tile the input as evenly as integers allow
    (``None`` keeps that dim's size); an output of 1x1 is the mean, as in PyTorch."""
    if isinstance(output_size, int) or output_size is None:
        output_size = (output_size, output_size)
    output_size = tuple(output_size)
    if len(output_size) != 2:
        raise RuntimeError("adaptive_avg_pool2d: output_size must be 2")
    if input.dim() not in (3, 4) or any(s == 0 for s in input.shape[-2:]):
        raise RuntimeError("adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got " + str(list(input.shape)))
    h, w = input.shape[-2:]
    oh, ow = (h if output_size[0] is None else output_size[0]), (w if output_size[1] is None else output_size[1])
    if oh < 0 or ow < 0:
        raise RuntimeError(f"adaptive_avg_pool2d: elements of output_size must be greater than or equal to 0 but "
                           f"received {[oh, ow]}")
    if (oh, ow) == (1, 1) and input.numel():
        return input.mean((-1, -2), keepdim=True)
    _check_input(input)
    return _avg(AdaptiveAvgPool2DBackward0, input, (*_adaptive_windows(h, oh), *_adaptive_windows(w, ow)))


def adaptive_avg_pool1d(input, output_size):
    _check_1d(input, "adaptive_avg_pool1d")
    size = output_size if isinstance(output_size, int) else tuple(output_size)[0]
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, size)).squeeze(-2)
