"""Elementwise ops: broadcasting and type promotion happen here once, then one kernel runs.

Every op is ``elementwise(kernel_name, node, operands)``; its backward rule is the
node's ``backward``, written with Tensor ops so that it is itself differentiable (the
fused ``*_backward`` kernels are used where nothing needs to record them).
"""
import functools
import math
import numbers

import numpy as np

from nbgrad.ops.elementwise import OPS, PARALLEL_MIN
from nbgrad.ops.table import TABLE

from .. import _dtype
from .._dtype import result_type
from ..autograd.graph import NoDerivative, Node
from ..autograd.grad_mode import is_grad_enabled
from ..factories import full_like, zeros_like
from ..tensor import Tensor, needs_grad, record
from . import tensor_method

__all__ = [
    "add", "sub", "mul", "div", "true_divide", "neg", "pow", "exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos",
    "tanh", "sigmoid", "relu", "clamp", "clip", "maximum", "minimum", "where", "sign", "square",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not",
    "broadcast_shapes", "clone", "rsub", "floor_divide", "remainder",
]


def broadcast_shapes(*shapes):
    """NumPy's broadcasting, with PyTorch's error naming both sizes."""
    first = shapes[0]
    if all(s == first for s in shapes):
        return tuple(first)
    ndim = max(len(s) for s in shapes)
    result = [1] * ndim
    for d in range(ndim - 1, -1, -1):          # from the last dimension, as PyTorch reports
        for k, shape in enumerate(shapes):
            n, r = _size_at(shape, d, ndim), result[d]
            if n != r and n != 1:
                if r != 1:
                    other = next(i for i in range(k) if _size_at(shapes[i], d, ndim) == r)
                    raise RuntimeError(
                        f"The size of tensor {_letter(other)} ({r}) must match the size of tensor "
                        f"{_letter(k)} ({n}) at non-singleton dimension {d}")
                result[d] = n
    return tuple(result)


def _size_at(shape, d, ndim):
    d -= ndim - len(shape)
    return shape[d] if d >= 0 else 1


def _letter(k):
    return "abcdefgh"[k] if k < 8 else f"#{k}"


def _as_array(x, np_dtype):
    """An operand as an array of the compute dtype: tensors cast if needed, numbers as one element."""
    if isinstance(x, Tensor):
        data = x._data
        if data.dtype != np_dtype:
            out = np.empty(data.shape, np_dtype)
            OPS["copy"](out, data, fresh_out=True)
            return out
        return data
    return _number_array(x, np_dtype)


_NUMBERS = {}


def _number_array(x, np_dtype):
    """A number as a one-element array; the same few numbers recur (``x * 2``, ``1 - y``),
    so their arrays are kept (never written to) instead of made on every call."""
    if type(x) not in (float, int, bool):
        _check_operand(x)
    key = (x, np_dtype)
    arr = _NUMBERS.get(key)
    if arr is None:
        if len(_NUMBERS) > 4096:
            _NUMBERS.clear()
        arr = _NUMBERS[key] = np.array((x,), np_dtype)
    return arr


def promote(operands):
    """The dtype to compute ``operands`` in: PyTorch's promotion, with a quick answer for
    the usual case of tensors of one dtype, and numbers that cannot raise it."""
    first = None
    numbers_ = False
    for x in operands:
        if isinstance(x, Tensor):
            d = x._data.dtype
            if first is None:
                first = d
            elif d != first:
                break
        else:
            numbers_ = True
    else:
        if first is not None:
            dtype = _dtype._BY_NUMPY[first]
            if not numbers_ or dtype.kind == 2:
                return dtype
    return result_type([x for x in operands if isinstance(x, Tensor)],
                       [x for x in operands if not isinstance(x, Tensor)])


def _check_operand(x):
    if not isinstance(x, (Tensor, numbers.Number, np.bool_)):
        raise TypeError(f"unsupported operand type: '{type(x).__name__}'")


def compute(kernel, operands, dtype=None, out_dtype=None, out=None):
    """Run ``kernel`` over broadcast ``operands`` in ``dtype`` (default: promoted); returns an array."""
    if out is None:
        result = _compute_alike(kernel, operands, dtype, out_dtype)
        if result is not None:
            return result
    return _compute_any(kernel, operands, dtype, out_dtype, out)


def _compute_any(kernel, operands, dtype, out_dtype, out):
    if dtype is None:
        dtype = promote(operands)
    np_dtype = dtype.numpy
    arrays = []
    shapes = []
    for x in operands:
        if isinstance(x, Tensor):
            shapes.append(x._data.shape)
            arrays.append(_as_array(x, np_dtype))
        else:
            arrays.append(_number_array(x, np_dtype))
    if out is not None:
        OPS[kernel](out, *arrays)
        return out
    out = np.empty(shapes[0] if len(shapes) == 1 else broadcast_shapes(*shapes), (out_dtype or dtype).numpy)
    OPS[kernel](out, *arrays, fresh_out=True)
    return out


def _compute_alike(kernel, operands, dtype, out_dtype):
    """``compute``'s quick path, for the usual case that skips promotion, broadcasting and
    strides: C-contiguous tensors of one shape and dtype, and numbers that cannot change a
    floating dtype. ``None`` when the operands are not that case."""
    data = None
    pattern = ""
    flat = []
    for x in operands:
        if isinstance(x, Tensor):
            d = x._data
            if data is None:
                data = d
            elif d.dtype != data.dtype or d.shape != data.shape:
                return None
            if not d.flags.c_contiguous:
                return None
            pattern += "c"
            flat.append(d.reshape(-1))
        elif type(x) is float or type(x) is int:
            pattern += "s"
            flat.append(x)
        else:
            return None
    if data is None:
        return None
    np_dtype = data.dtype
    if dtype is not None and dtype.numpy != np_dtype:
        return None
    if "s" in pattern:
        if np_dtype.kind != "f":
            return None
        for i, p in enumerate(pattern):
            if p == "s":
                arr = _NUMBERS.get((flat[i], np_dtype))
                flat[i] = arr if arr is not None else _number_array(flat[i], np_dtype)
    out = np.empty(data.shape, np_dtype if out_dtype is None else out_dtype.numpy)
    size = out.size
    # Elementwise.contiguous and _number_array written out here: going through them cost the
    # chain-of-100-ops workload 7% (commit be87910)
    if size and size < PARALLEL_MIN:
        key = (kernel, pattern)
        loop = _SERIAL_LOOPS.get(key)
        if loop is None:
            loop = _SERIAL_LOOPS[key] = OPS[kernel].kernel(pattern, False)
        loop(out.reshape(-1), *flat)
    elif size:
        OPS[kernel].contiguous(out, pattern, flat)
    return out


_SERIAL_LOOPS = {}


def elementwise(kernel, node_cls, operands, saved=(), dtype=None, out_dtype=None, **attrs):
    """Compute ``kernel`` and record ``node_cls`` for it (``compute`` checks the operands)."""
    data = _compute_alike(kernel, operands, dtype, out_dtype)
    if data is None:
        data = _compute_any(kernel, operands, dtype, out_dtype, None)
    return record(node_cls, data, operands, saved, **attrs)


def _float_dtype(operands):
    """The promoted dtype, raised to the default float for integer inputs (``/``, ``exp``...)."""
    d = promote(operands)
    return d if d.is_floating_point else _dtype.get_default_dtype()


def gradients(node, op, grad, wrt=None, **values):
    """The gradients ``node`` sends to its inputs, from the table's expressions for ``op``:
    one per operand of ``wrt`` (default: all of the op's, in order), None where the input
    needs none. ``values`` binds the names the expressions read (``y``, the operands)."""
    record = TABLE[op]
    values["g"] = grad
    return tuple([derivative(record, arg, values) if need else None
                  for arg, need in zip(wrt or record.args, node.needs_input_grad)])


def derivative(record, arg, values):
    """The gradient of operand ``arg``: the fused kernel of its expression, or, when the step
    itself is recorded (``create_graph``), the same expression evaluated on Tensors."""
    expr, names, kernel = _STEPS.get((record.name, arg)) or _step(record, arg)
    if expr is None:
        return None
    grad = values["g"]
    if expr == "g":
        return grad
    if expr == "0":
        return zeros_like(grad)
    operands = tuple([values[n] for n in names])
    if is_grad_enabled() and needs_grad(operands):
        result = eval(_compiled(expr), COMPOSED, dict(zip(names, operands)))
        return result if isinstance(result, Tensor) else full_like(grad, result)
    data = _compute_alike(kernel, operands, None, None)
    return Tensor._wrap(data if data is not None else _compute_any(kernel, operands, None, None, None))


_STEPS = {}


def _step(record, arg):
    """What a backward step needs of ``arg``'s gradient, worked out once: its expression, the
    names it reads, its fused kernel."""
    expr = record.grads.get(arg)
    names = record.grad_operands(arg) if expr not in (None, "g", "0") else ()
    step = _STEPS[record.name, arg] = (expr, names, record.grad_kernel(arg))
    return step


@functools.lru_cache(maxsize=None)
def _compiled(expr):
    return compile(expr, f"<{expr}>", "eval")


# -- arithmetic ---------------------------------------------------------------------------------
class AddBackward0(Node):
    alpha = 1

    def backward(self, grad):
        if self.alpha == 1:
            return gradients(self, "add", grad)
        return gradients(self, "add_scaled", grad, alpha=self.alpha)


class SubBackward0(Node):
    def backward(self, grad):
        return gradients(self, "sub", grad)


class RsubBackward1(Node):
    """A number minus a tensor."""

    def backward(self, grad):
        return gradients(self, "sub", grad, wrt="b")


class MulBackward0(Node):
    _saved_for = (1, 0)           # each operand serves the other's gradient only

    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "mul", grad, a=a, b=b)


class DivBackward0(Node):
    _saved_for = (1, None)

    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "div", grad, a=a, b=b)


class NegBackward0(Node):
    def backward(self, grad):
        return gradients(self, "neg", grad)


class PowBackward0(Node):
    """Tensor base, number exponent."""

    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "pow", grad, a=a, b=b)


class PowBackward1(Node):
    """Tensor base, tensor exponent."""

    def backward(self, grad):
        a, b, y = self.saved_tensors
        return gradients(self, "pow", grad, a=a, b=b, y=y)


class PowBackward2(Node):
    """Number base, tensor exponent."""

    def backward(self, grad):
        x, y = self.saved_tensors
        return gradients(self, "pow", grad, wrt="b", a=self.base, b=x, y=y)


@tensor_method("add", "__add__", "__radd__")
def add(input, other, *, alpha=1):
    if not isinstance(input, Tensor):          # number + tensor
        input, other = other, input
    _check_operand(other)
    if alpha == 1:
        return record(AddBackward0, compute("add", (input, other)), (input, other))
    return record(AddBackward0, compute("add_scaled", (input, other, alpha)), (input, other), alpha=alpha)


def _check_subtraction(a, b):
    """PyTorch refuses to subtract with a bool tensor on either side."""
    a_bool, b_bool = _is_bool(a), _is_bool(b)
    if a_bool and b_bool:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if (a_bool and isinstance(a, Tensor)) or (b_bool and isinstance(b, Tensor)):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")


def _is_bool(x):
    return x._data.dtype.kind == "b" if isinstance(x, Tensor) else isinstance(x, (bool, np.bool_))


@tensor_method("sub", "__sub__", "subtract")
def sub(input, other, *, alpha=1):
    _check_subtraction(input, other)
    if alpha != 1:
        return add(input, other, alpha=-alpha)
    return elementwise("sub", SubBackward0, (input, other))


@tensor_method("__rsub__")
def rsub(input, other):
    """``other - input``, for a number ``other``."""
    _check_operand(other)
    _check_subtraction(other, input)
    return record(RsubBackward1, compute("sub", (other, input)), (input,))


@tensor_method("mul", "__mul__", "__rmul__", "multiply")
def mul(input, other):
    return elementwise("mul", MulBackward0, (input, other), saved=(input, other))


@tensor_method("div", "__truediv__", "divide", "true_divide")
def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        if rounding_mode not in ("floor", "trunc"):
            raise ValueError("div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                             f"'{rounding_mode}'")
        return _rounding_op(rounding_mode + "_divide", input, other)
    return elementwise("div", DivBackward0, (input, other), saved=(input, other),
                       dtype=_float_dtype((input, other)))


class DivBackward1(Node):
    """A rounding division: zero gradients (not ``grad * 0``, NaN where it is infinite)."""

    def backward(self, grad):
        return gradients(self, "trunc_divide", grad)


class RemainderBackward0(Node):
    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "remainder", grad, a=a, b=b)


def _rounding_op(kernel, a, b, node_cls=DivBackward1, **attrs):
    if _is_integral(a) and _is_integral(b) and _has_zero(b):
        raise RuntimeError("ZeroDivisionError")
    return elementwise(kernel, node_cls, (a, b), saved=(a, b), **attrs)


def _has_zero(x):
    return bool((x._data == 0).any()) if isinstance(x, Tensor) else x == 0


def _is_integral(x):
    return x.dtype.kind < 2 if isinstance(x, Tensor) else isinstance(x, numbers.Integral)


@tensor_method("floor_divide", "__floordiv__")
def floor_divide(input, other):
    """Recorded without a derivative, as PyTorch records it (``div(rounding_mode='floor')``
    has one: zero)."""
    return _rounding_op("floor_divide", input, other, NoDerivative, op="aten::floor_divide")


@tensor_method("__rfloordiv__")
def _rfloordiv(input, other):
    return _rounding_op("floor_divide", other, input, NoDerivative, op="aten::floor_divide")


@tensor_method("remainder", "__mod__")
def remainder(input, other):
    return _rounding_op("remainder", input, other, RemainderBackward0)


@tensor_method("__rmod__")
def _rmod(input, other):
    return _rounding_op("remainder", other, input, RemainderBackward0)


true_divide = div


@tensor_method("__rtruediv__")
def _rtruediv(input, other):
    return div(other, input) if isinstance(other, Tensor) else \
        elementwise("div", DivBackward0, (other, input), saved=(other, input), dtype=_float_dtype((other, input)))


def check_negation(input):
    if input.dtype is _dtype.bool:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")


@tensor_method("neg", "__neg__", "negative")
def neg(input):
    check_negation(input)
    return elementwise("neg", NegBackward0, (input,))


@tensor_method("__pos__")
def _pos(input):
    return input


@tensor_method("pow", "__pow__")
def pow(input, exponent):
    if not isinstance(input, Tensor):
        return _rpow(exponent, input)
    if isinstance(exponent, Tensor):
        out = elementwise("pow", PowBackward1, (input, exponent))
        if out.grad_fn is not None:
            out.grad_fn.save_for_backward(input, exponent, out)
        return out
    _check_integer_power(input, exponent)
    if exponent in (0.5, -0.5):       # as PyTorch computes them: (-inf) ** 0.5 is NaN, (-0) ** 0.5 is -0
        data = compute("sqrt" if exponent > 0 else "rsqrt", (input,), _float_dtype((input, exponent)))
        return record(PowBackward0, data, (input, exponent), saved=(input, exponent))
    return elementwise("pow", PowBackward0, (input, exponent), saved=(input, exponent))


@tensor_method("__rpow__")
def _rpow(input, other):
    """``other ** input`` for a number ``other``."""
    if isinstance(other, Tensor):
        return pow(other, input)
    _check_operand(other)
    out = record(PowBackward2, compute("pow", (other, input)), (input,), base=other)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(input, out)
    return out


def _check_integer_power(input, exponent):
    if input.dtype.kind == 1 and isinstance(exponent, numbers.Integral) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")


@tensor_method("square")
def square(input):
    return pow(input, 2)


# -- unary math -----------------------------------------------------------------------------------
class ExpBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "exp", grad, y=y)


class LogBackward0(Node):
    def backward(self, grad):
        x, = self.saved_tensors
        return gradients(self, "log", grad, x=x)


class SqrtBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "sqrt", grad, y=y)


class AbsBackward0(Node):
    def backward(self, grad):
        x, = self.saved_tensors
        return gradients(self, "abs", grad, x=x)


class SinBackward0(Node):
    def backward(self, grad):
        x, = self.saved_tensors
        return gradients(self, "sin", grad, x=x)


class CosBackward0(Node):
    def backward(self, grad):
        x, = self.saved_tensors
        return gradients(self, "cos", grad, x=x)


class RsqrtBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "rsqrt", grad, y=y)


class TanhBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "tanh", grad, y=y)


class SigmoidBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "sigmoid", grad, y=y)


class ReluBackward0(Node):
    def backward(self, grad):
        y, = self.saved_tensors
        return gradients(self, "relu", grad, y=y)


def _unary(kernel, node_cls, input, save, float_result=True):
    """A unary op; ``save`` is 'input', 'output' or None."""
    _check_operand(input)
    data = None
    if not float_result or input._data.dtype.kind == "f":        # computed in the input's dtype
        data = _compute_alike(kernel, (input,), None, None)
    if data is None:
        data = _compute_any(kernel, (input,), _float_dtype((input,)) if float_result else input.dtype, None, None)
    out = record(node_cls, data, (input,))
    node = out.grad_fn
    if node is not None and save is not None:
        if save == "input":
            node.save_for_backward(input)
        else:
            node.save_output(out)
    return out


@tensor_method()
def exp(input):
    return _unary("exp", ExpBackward0, input, "output")


@tensor_method()
def log(input):
    return _unary("log", LogBackward0, input, "input")


@tensor_method()
def sqrt(input):
    return _unary("sqrt", SqrtBackward0, input, "output")


@tensor_method("abs", "__abs__", "absolute")
def abs(input):
    return _unary("abs", AbsBackward0, input, "input", float_result=False)


@tensor_method()
def sin(input):
    return _unary("sin", SinBackward0, input, "input")


@tensor_method()
def cos(input):
    return _unary("cos", CosBackward0, input, "input")


@tensor_method()
def rsqrt(input):
    return _unary("rsqrt", RsqrtBackward0, input, "output")


@tensor_method()
def tanh(input):
    return _unary("tanh", TanhBackward0, input, "output")


@tensor_method()
def sigmoid(input):
    return _unary("sigmoid", SigmoidBackward0, input, "output")


@tensor_method()
def relu(input):
    return _unary("relu", ReluBackward0, input, "output", float_result=False)


@tensor_method()
def sign(input):
    return record(SignBackward0, compute("sign", (input,), out_dtype=input.dtype), (input,))


class SignBackward0(Node):
    def backward(self, grad):
        return gradients(self, "sign", grad)


# -- clamp, maximum, minimum, where -------------------------------------------------------------------
class ClampBackward1(Node):
    """Number bounds."""

    def backward(self, grad):
        x, = self.saved_tensors
        lo, hi = self.bounds
        return gradients(self, "clamp", grad, x=x, l=lo, h=hi)


class ClampBackward0(Node):
    """Tensor bounds (an absent one is infinite)."""

    def backward(self, grad):
        x, lo, hi = self.saved_tensors
        return gradients(self, "clamp", grad, x=x, l=-math.inf if lo is None else lo,
                         h=math.inf if hi is None else hi)


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    bounds = [v for v in (min, max) if v is not None]
    dtype = result_type([input] + [v for v in bounds if isinstance(v, Tensor)],
                        [v for v in bounds if not isinstance(v, Tensor)])
    lo = min if min is not None else _lowest(dtype)
    hi = max if max is not None else _highest(dtype)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = record(ClampBackward0, compute("clamp", (input, lo, hi), dtype), (input, min, max))
        if out.grad_fn is not None:
            out.grad_fn.save_for_backward(input, min, max)
        return out
    out = record(ClampBackward1, compute("clamp", (input, lo, hi), dtype), (input,), bounds=(lo, hi))
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(input)
    return out


clip = clamp


def _lowest(dtype):
    return -np.inf if dtype.is_floating_point else np.iinfo(np.int64).min if dtype.kind == 1 else False


def _highest(dtype):
    return np.inf if dtype.is_floating_point else np.iinfo(np.int64).max if dtype.kind == 1 else True


class MaximumBackward0(Node):
    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "maximum", grad, a=a, b=b)


class MinimumBackward0(Node):
    def backward(self, grad):
        a, b = self.saved_tensors
        return gradients(self, "minimum", grad, a=a, b=b)


@tensor_method()
def maximum(input, other):
    return elementwise("maximum", MaximumBackward0, (input, other), saved=(input, other))


@tensor_method()
def minimum(input, other):
    return elementwise("minimum", MinimumBackward0, (input, other), saved=(input, other))


class WhereBackward0(Node):
    def backward(self, grad):
        c, = self.saved_tensors
        return gradients(self, "where", grad, c=c)


@tensor_method()
def where(condition, input, other):
    if not isinstance(condition, Tensor) or condition.dtype is not _dtype.bool:
        raise RuntimeError("where expected condition to be a boolean tensor")
    values = (input, other)
    dtype = result_type([x for x in values if isinstance(x, Tensor)], [x for x in values if not isinstance(x, Tensor)])
    shape = broadcast_shapes(*(t._data.shape for t in (condition, *values) if isinstance(t, Tensor)))
    out = np.empty(shape, dtype.numpy)
    OPS["where"](out, condition._data, _as_array(input, dtype.numpy), _as_array(other, dtype.numpy))
    return record(WhereBackward0, out, (condition, input, other), saved=(condition,))


# -- comparisons and logic: results are bool and never require grad ---------------------------------------
def _compare(kernel, input, other):
    _check_operand(other)
    return Tensor._wrap(compute(kernel, (input, other), out_dtype=_dtype.bool))


@tensor_method("eq", "__eq__")
def eq(input, other):
    if not isinstance(other, (Tensor, numbers.Number, np.bool_)):
        return False
    return _compare("eq", input, other)


@tensor_method("ne", "__ne__")
def ne(input, other):
    if not isinstance(other, (Tensor, numbers.Number, np.bool_)):
        return True
    return _compare("ne", input, other)


@tensor_method("lt", "__lt__", "less")
def lt(input, other):
    return _compare("lt", input, other)


@tensor_method("le", "__le__", "less_equal")
def le(input, other):
    return _compare("le", input, other)


@tensor_method("gt", "__gt__", "greater")
def gt(input, other):
    return _compare("gt", input, other)


@tensor_method("ge", "__ge__", "greater_equal")
def ge(input, other):
    return _compare("ge", input, other)


def _logical(kernel, input, other):
    return Tensor._wrap(compute(kernel, (input, other), out_dtype=_dtype.bool))


@tensor_method()
def logical_and(input, other):
    return _logical("logical_and", input, other)


@tensor_method()
def logical_or(input, other):
    return _logical("logical_or", input, other)


@tensor_method()
def logical_xor(input, other):
    return _logical("logical_xor", input, other)


@tensor_method()
def logical_not(input):
    return Tensor._wrap(compute("logical_not", (input,), out_dtype=_dtype.bool))


def _bitwise(kernel, name):
    def op(input, other):
        if input.dtype.kind == 2 or (isinstance(other, Tensor) and other.dtype.kind == 2):
            raise RuntimeError(f'"{name}_cpu" not implemented for \'Float\'')
        if input.dtype is _dtype.bool and (not isinstance(other, Tensor) or other.dtype is _dtype.bool):
            return _logical(kernel, input, other)
        raise RuntimeError(f"{name} is only supported on bool tensors in nbgrad")
    return op


Tensor.__and__ = Tensor.__rand__ = _bitwise("logical_and", "bitwise_and")
Tensor.__or__ = Tensor.__ror__ = _bitwise("logical_or", "bitwise_or")
Tensor.__xor__ = Tensor.__rxor__ = _bitwise("logical_xor", "bitwise_xor")


@tensor_method("__invert__", "bitwise_not")
def _invert(input):
    if input.dtype is not _dtype.bool:
        raise RuntimeError("~ (bitwise_not) is only supported on bool tensors in nbgrad")
    return logical_not(input)


# -- copies and casts ------------------------------------------------------------------------------
class CloneBackward0(Node):
    def backward(self, grad):
        return (grad,)


class ToCopyBackward0(Node):
    def backward(self, grad):
        return (grad,)          # the engine casts it back to the input's dtype


@tensor_method()
def clone(input, *, memory_format=None):
    return record(CloneBackward0, compute("copy", (input,)), (input,))


def cast(input, dtype):
    out = np.empty(input._data.shape, dtype.numpy)
    OPS["copy"](out, input._data)
    if dtype.is_floating_point:
        return record(ToCopyBackward0, out, (input,))
    return Tensor._wrap(out)


# -- the table's expressions on Tensors ------------------------------------------------------------
def _or_number(tensor_fn, number_fn):
    """A function of the expression language that also takes a plain number (a number
    operand, such as the base of ``2 ** x``)."""
    return lambda *xs: tensor_fn(*xs) if any(isinstance(x, Tensor) for x in xs) else number_fn(*xs)


def _where(c, a, b):
    return where(c, a, b) if isinstance(c, Tensor) else (a if c else b)


# The names of ops/scalar.py, as Tensor ops: one expression, read here, is differentiable.
COMPOSED = {
    "__builtins__": {"abs": abs},
    "where": _where,
    "exp": _or_number(exp, math.exp),
    "log": _or_number(log, lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    "sqrt": sqrt, "rsqrt": lambda x: x ** -0.5, "sign": sign, "sin": sin, "cos": cos, "tanh": tanh,
    "sigmoid": sigmoid, "power": lambda a, b: a ** b,
    "floor_div": _or_number(lambda a, b: div(a, b, rounding_mode="floor"), lambda a, b: a // b),
}
