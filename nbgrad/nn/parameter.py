"""``Parameter``: a tensor that a ``Module`` registers when it is assigned as an attribute."""
from ..tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf tensor over ``data``'s memory (and version counter) that requires grad by default.

    Ops on a parameter return plain tensors, as in PyTorch: only the class of the leaf
    itself marks it for ``Module.parameters()``."""
    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..factories import empty
            data = empty(0)
        if requires_grad and not data.is_floating_point():
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t = data.detach()
        t.__class__ = cls
        t.requires_grad_(requires_grad)
        return t

    def __init__(self, data=None, requires_grad=True):
        """Everything was done in ``__new__`` (``Tensor.__init__`` would start afresh)."""

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(self.detach().clone(), self.requires_grad)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        return type(self), (self.detach(), self.requires_grad)
