"""nbgrad's operations on Tensors: each module holds one family of ops, their forward
(a kernel from ``nbgrad.ops``) and their backward rule (the node they record)."""
from ..tensor import Tensor

__all__ = ["tensor_method"]


def tensor_method(*names):
    """Also make the decorated function a ``Tensor`` method under ``names``."""
    def attach(fn):
        for name in names or (fn.__name__,):
            setattr(Tensor, name, fn)
        return fn
    return attach
