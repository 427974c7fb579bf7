"""Moving a tensor between devices: ``to(device)``, ``.cuda()``, ``.cpu()``.

A move is one copy through host memory (the only host round trip a CUDA tensor makes
besides ``item``/``numpy``/printing), recorded as PyTorch's ``ToCopyBackward0``, whose
backward moves the gradient back, so a gradient lives on the device of its tensor.
"""
from nbgrad.ops.targets import target_for, target_of

from ..autograd.graph import Node
from ..tensor import _DEFAULT_DEVICE, device as _device, record

__all__ = ["to_device", "set_default_device", "get_default_device"]


class ToCopyBackward0(Node):
    def backward(self, grad):
        return (to_device(grad, self.source),)


def to_device(t, device_type):
    """``t`` on ``device_type`` (``"cpu"``/``"cuda"``): ``t`` itself when already there."""
    source = target_of(t._data)
    dest = target_for(device_type)
    if dest is source:
        return t
    data = dest.asarray(source.to_host(t._data))
    return record(ToCopyBackward0, data, (t,), source=source.device_type)


def set_default_device(device):
    """The device factories use when given none (``None``: the CPU again), as PyTorch's."""
    if device is not None:
        device = _device(device)
        target_for(device.type)                # refused now, not at the next factory call
    _DEFAULT_DEVICE[0] = device


def get_default_device():
    d = _DEFAULT_DEVICE[0]
    return _device("cpu") if d is None else (_device("cuda", 0) if d.type == "cuda" else d)
