"""In-place ops: one mechanism, ``apply_inplace``, for every ``op_`` method and ``x[i] = v``.

Nothing is written until every check has passed (leaf rules, broadcast shape, dtype),
so a refused update leaves the tensor as it was. Then:

* when nothing is recorded, a kernel writes straight into the tensor's memory;
* when the update must be recorded, the op runs out of place on a copy of the old values
  carrying the tensor's history, the result is written into the tensor's memory, and the
  tensor takes over the result's ``grad_fn``. A view's update is recorded on its base as
  ``CopySlices`` (the base's gradient, with the view's part replaced by the gradient that
  flows through the op), and the view is re-derived from the updated base.

Either way the version counter, shared by all views of the memory, goes up by one.
"""
import numbers
import re

import numpy as np

from nbgrad.ops.targets import target_of
from nbgrad.ops.table import TABLE

from .._dtype import result_type
from ..autograd import forward_ad
from ..autograd.forward_ad import _state as _fw
from ..autograd.graph import Node
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..factories import zeros_like
from ..tensor import Tensor, _edge, _meta, needs_grad, record
from . import pointwise, tensor_method
from .pointwise import broadcast_shapes

__all__ = []


def check_writable(self):
    """PyTorch's refusals of in-place updates under grad mode."""
    if not is_grad_enabled():
        return
    if self.grad_fn is None and self._requires_grad:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = self._base
    if base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    fn = self.grad_fn
    if base is not None and fn is not None and (fn._multi_output or fn.num_outputs > 1):
        name = re.sub(r"Backward[0-9]*$", "", fn.name())
        raise RuntimeError(
            f"Output {self._output_nr} of {name} is a view and is being modified inplace. This view is the output "
            "of a function that returns multiple views. Such functions do not allow the output views to be "
            "modified inplace. You should replace the inplace operation by an out-of-place one.")


def check_no_internal_overlap(self):
    """An update through a view in which several elements share memory (``expand``) would
    depend on the order of writes, and on grad mode: PyTorch refuses it."""
    data = self._data
    if 0 in data.strides and data.size > 1 and any(s == 0 and n > 1 for n, s in zip(data.shape, data.strides)):
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a "
                           "single memory location. Please clone() the tensor before performing the operation.")


def check_result(self, shape, dtype):
    """The result of an in-place op must fit the tensor: same shape, castable dtype."""
    if tuple(shape) != self._data.shape:
        raise RuntimeError(f"output with shape {list(self._data.shape)} doesn't match the broadcast shape "
                           f"{list(shape)}")
    if dtype.kind > self.dtype.kind:
        raise RuntimeError(f"result type {dtype.legacy} can't be cast to the desired output type "
                           f"{self.dtype.legacy}")


def apply_inplace(self, functional, operands=(), direct=None, overlap_ok=False):
    """Update ``self`` to ``functional(old_self)``.

    ``functional`` is the out-of-place op, used when the update is recorded; ``direct``,
    if given, writes the result into ``self._data`` itself when nothing is recorded.
    Callers check shapes and dtypes first (``check_result``) when ``direct`` is used.
    ``overlap_ok``: the update writes one value everywhere, so elements that share memory
    are no ambiguity (``fill_`` with a number, as PyTorch allows).
    """
    check_writable(self)
    if not overlap_ok:
        check_no_internal_overlap(self)
    recorded = needs_grad((self, *operands))
    dual = _fw.level is not None and forward_ad.has_tangent((self, *operands))
    if dual:                    # forward AD: the op runs out of place on a dual copy (forward_ad.inplace)
        return forward_ad.inplace(self, functional, recorded, _write, _rebase_history)
    if not recorded:
        if direct is not None:
            direct()
        else:
            with no_grad():
                new = functional(self.detach())
            _write(self, new)
        self._version_counter.value += 1
        return self
    old = Tensor._wrap(target_of(self._data).copy(self._data))
    old.grad_fn, old._output_nr, old._requires_grad = self.grad_fn, self._output_nr, self._requires_grad
    new = functional(old)
    _write(self, new)
    self._version_counter.value += 1
    _rebase_history(self, new)
    return self


def _write(self, new):
    check_result(self, new._data.shape, new.dtype)
    target_of(self._data).copy_into(self._data, new._data)


def _rebase_history(self, new):
    base = self._base
    if base is None:
        self.grad_fn, self._output_nr = new.grad_fn, new._output_nr
        return
    node = CopySlices((_edge(base), _edge(new)), (_meta(base), _meta(new)))
    node.view_fn = self._view_fn
    base.grad_fn, base._output_nr = node, 0
    view = self._view_fn(base)
    self.grad_fn, self._output_nr = view.grad_fn, view._output_nr


class CopySlices(Node):
    """The base after one of its views was updated in place."""

    def name(self):
        return "torch::autograd::CopySlices"

    def backward(self, grad):
        need = self.needs_input_grad
        grad_base = None
        if need[0]:              # zeros where the view was written, not ``grad * 0`` (NaN at inf)
            kept = Tensor._wrap(target_of(grad._data).ones(grad.shape, np.bool_))
            with no_grad():
                self.view_fn(kept).fill_(False)
            grad_base = pointwise.where(kept, grad, 0.0)
        return grad_base, (self.view_fn(grad) if need[1] else None)


# -- the in-place methods ----------------------------------------------------------------------
def _operands(self, args):
    tensors = [self] + [a for a in args if isinstance(a, Tensor)]
    numbers_ = [a for a in args if not isinstance(a, Tensor)]
    for a in numbers_:
        if not isinstance(a, (numbers.Number, np.bool_)):
            raise TypeError(f"unsupported operand type: '{type(a).__name__}'")
    return tensors, numbers_


def _elementwise_inplace(kernel, functional, float_result=False, params=(), check=None, node=None):
    """An ``op_`` method: ``functional`` out of place, ``kernel`` written straight in.
    ``params``: the op's (name, default) constants, keyword arguments after the operands;
    ``node``: the grad_fn class PyTorch names the in-place form with, if it has its own."""
    def method(self, *args, **kwargs):
        if check is not None:
            check(self, *args)
        tensors, scalars = _operands(self, args)
        constants = tuple([kwargs.pop(p, default) for p, default in params])
        if kwargs:
            raise TypeError(f"{method.__name__}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        dtype = result_type(tensors, scalars)
        if float_result and not dtype.is_floating_point:
            dtype = pointwise._float_dtype((self, *args))
        check_result(self, broadcast_shapes(*(t._data.shape for t in tensors)), dtype)
        named = dict(zip((p for p, _ in params), constants))
        out = apply_inplace(self, lambda old: functional(old, *args, **named), args,
                            direct=lambda: pointwise.compute(kernel, (self, *args, *constants), dtype, out=self._data))
        if node is not None and type(out.grad_fn) is node.__base__:
            out.grad_fn.__class__ = node       # the same backward, under the in-place name
        return out
    method.__name__ = functional.__name__ + "_"
    return method


INPLACE = {}          # op -> its in-place method, for the table's ops that have one


def _inplace_names(rec):
    """``tanh_`` for ``tanh``, ``__imul__`` for ``__mul__`` (reflected ``__rmul__``: none)."""
    for name in rec.api:
        if not name.startswith("__"):
            yield name + "_"
        elif len(rec.args) == 2 and not name.startswith("__r"):
            yield "__i" + name[2:]


for _rec in TABLE.values():
    if _rec.inplace:
        _base = pointwise.NODES[_rec.name][""]
        _node = type(_rec.inplace, (_base,), {"__qualname__": _rec.inplace, "__module__": _base.__module__}) \
            if isinstance(_rec.inplace, str) else None
        INPLACE[_rec.name] = _elementwise_inplace(_rec.name, pointwise.RUN[_rec.name], _rec.result == "float",
                                                  _rec.params, pointwise.CHECKS.get(_rec.name), _node)
        for _name in _inplace_names(_rec):
            setattr(Tensor, _name, INPLACE[_rec.name])
Tensor.div_ = Tensor.divide_ = Tensor.true_divide_ = Tensor.__itruediv__ = \
    _elementwise_inplace("div", pointwise.div, float_result=True)
Tensor.pow_ = Tensor.__ipow__ = _elementwise_inplace("pow", pointwise.pow)


@tensor_method("add_", "__iadd__")
def add_(self, other, *, alpha=1):
    return _add_(self, other, alpha, "add", pointwise.add)


@tensor_method("sub_", "__isub__", "subtract_")
def sub_(self, other, *, alpha=1):
    if alpha != 1:
        return _add_(self, other, -alpha, "add", pointwise.add)
    return _add_(self, other, 1, "sub", pointwise.sub)    # its own kernel: ``p -= lr * g`` in one plain loop


def _add_(self, other, alpha, kernel, functional):
    tensors, scalars = _operands(self, (other,))
    dtype = result_type(tensors, scalars + ([alpha] if alpha != 1 else []))
    check_result(self, broadcast_shapes(*(t._data.shape for t in tensors)), dtype)
    if alpha == 1:
        direct = lambda: pointwise.compute(kernel, (self, other), dtype, out=self._data)  # noqa: E731
    else:
        direct = lambda: pointwise.compute("add_scaled", (self, other, alpha), dtype, out=self._data)  # noqa: E731
    return apply_inplace(self, lambda old: functional(old, other, alpha=alpha), (other,), direct)


@tensor_method("clamp_", "clip_")
def clamp_(self, min=None, max=None):
    bounds = (min, max)
    tensors, scalars = _operands(self, [b for b in bounds if b is not None])
    check_result(self, broadcast_shapes(*(t._data.shape for t in tensors)), result_type(tensors, scalars))
    return apply_inplace(self, lambda old: pointwise.clamp(old, min, max), [b for b in bounds if b is not None])


class FillBackward2(Node):
    """Filled with a number."""

    def backward(self, grad):
        return (zeros_like(grad),)


class ZeroBackward0(FillBackward2):
    pass


class FillBackward3(Node):
    """Filled with a 0-d tensor: its gradient is the sum of all."""

    def backward(self, grad):
        return zeros_like(grad), grad.sum()


@tensor_method()
def fill_(self, value, _node=FillBackward2):
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.dim()} dimensions.")

        def filled(old):
            return record(FillBackward3, _filled_array(old, value._data), (old, value))
        return apply_inplace(self, filled, (value,),
                             direct=lambda: target_of(self._data).copy_into(self._data, value._data))

    def filled_with_number(old):
        return record(_node, _filled_array(old, value), (old,))
    return apply_inplace(self, filled_with_number, (), overlap_ok=True,
                         direct=lambda: _fill(self._data, value))


def _fill(data, value):
    target = target_of(data)
    target.copy_into(data, target.number(value, data.dtype))


def _filled_array(like, value):
    """A new array like ``like``'s, every element ``value`` (a number or a 0-d array)."""
    data = like._data
    target = target_of(data)
    return target.copy_into(target.empty(data.shape, data.dtype), value if type(value) is target.array_type
                            else target.number(value, data.dtype), fresh_out=True)


@tensor_method()
def zero_(self):
    return fill_(self, 0, _node=ZeroBackward0)


class CopyBackwards(Node):
    def backward(self, grad):
        return zeros_like(grad), grad


@tensor_method()
def copy_(self, src, non_blocking=False):
    """Copy ``src`` (broadcast, any dtype) into this tensor."""
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' must be Tensor, not {type(src).__name__}")
    shape = broadcast_shapes(self._data.shape, src._data.shape)
    if shape != self._data.shape:
        raise RuntimeError(f"output with shape {list(self._data.shape)} doesn't match the broadcast shape "
                           f"{list(shape)}")

    def copied(old):
        data = old._data
        target = target_of(data)
        out = target.copy_into(target.empty(data.shape, data.dtype), src._data, fresh_out=True)
        return record(CopyBackwards, out, (old, src))
    return apply_inplace(self, copied, (src,), direct=lambda: target_of(self._data).copy_into(self._data, src._data))


def _logical_inplace(kernel):
    """``m |= n``, ``m &= n``, ``m ^= n``: bool tensors updated in place, not rebound."""
    def method(self, other):
        return apply_inplace(self, lambda old: getattr(old, kernel)(other), (other,) if isinstance(other, Tensor) else ())
    return method


Tensor.__ior__ = _logical_inplace("__or__")
Tensor.__iand__ = _logical_inplace("__and__")
Tensor.__ixor__ = _logical_inplace("__xor__")
