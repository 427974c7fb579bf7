"""Elementwise ops: broadcasting and type promotion happen here once, then one kernel runs.

The ops of the table (``ops/table.py``) are generated from it below: each one's node class,
function, Tensor methods, and backward (``gradients``: the fused kernel of the table's
expression, or the same expression on Tensors when the backward is itself recorded).
"""
import functools
import linecache
import math
import numbers

import numpy as np

from nbgrad.ops.table import TABLE
from nbgrad.ops.targets import CPU, common_target, target_of

from .. import _dtype
from .._dtype import result_type
from ..autograd.graph import NoDerivative, Node
from ..autograd.grad_mode import _state as _grad_mode
from ..factories import full_like, zeros_like
from ..tensor import Tensor, needs_grad, record
from . import tensor_method

__all__ = [     # and the functions generated from the table (``_generate``)
    "add", "sub", "div", "true_divide", "pow", "clamp", "clip", "where", "square",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not",
    "broadcast_shapes", "clone", "rsub", "floor_divide",
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
    """The general launch: promotion, device check and broadcasting here, once; the target
    of the operands' data casts, allocates and runs."""
    if dtype is None:
        dtype = promote(operands)
    if dtype is _dtype.float16 or dtype is _dtype.bfloat16:
        return _compute_half(kernel, operands, dtype, out_dtype, out)
    arrays = []
    shapes = []
    kind = None                     # the one array type, or False when they are several
    for x in operands:
        if isinstance(x, Tensor):
            d = x._data
            shapes.append(d.shape)
            arrays.append(d)
            if kind is None:
                kind = type(d)
            elif type(d) is not kind:
                kind = False
        else:
            if type(x) not in (float, int, bool):
                _check_operand(x)
            arrays.append(x)
    target = CPU if kind is _ndarray else common_target(arrays)
    if out is not None:
        return target.launch(kernel, arrays, None, dtype.numpy, out=out)
    if not shapes:
        raise TypeError(f"{kernel}(): argument 'input' (position 1) must be Tensor, not {type(operands[0]).__name__}")
    shape = shapes[0] if len(shapes) == 1 else broadcast_shapes(*shapes)
    return target.launch(kernel, arrays, shape, dtype.numpy, None if out_dtype is None else out_dtype.numpy)


_alike = CPU.alike       # the small-tensor quick path is the CPU target's; other targets' arrays fail it
_ndarray = CPU.array_type


def _compute_half(kernel, operands, dtype, out_dtype, out):
    """A float16 (bfloat16) op computed in float32 and stored in 2 bytes, as PyTorch does on the CPU."""
    half = dtype.numpy              # tensor operands are first converted to it (70000 -> inf), as in PyTorch
    with np.errstate(over="ignore"):
        operands = tuple([Tensor._wrap(target_of(x._data).astype(x._data, half))
                          if isinstance(x, Tensor) and x._data.dtype != half else x for x in operands])
    result = _compute_any(kernel, operands, _dtype.float32,
                          _dtype.float32 if out_dtype is None or out_dtype is dtype else out_dtype, None)
    target = target_of(result)
    if out is not None:
        return target.copy_into(out, result)
    return target.astype(result, (out_dtype or dtype).numpy)


def _compute_alike(kernel, operands, dtype, out_dtype, floating=False):
    """``compute``'s quick path (the target's ``alike``): ``None`` when the operands need
    the general one."""
    return _alike(kernel, [x._data if isinstance(x, Tensor) else x if type(x) is float or type(x) is int else None
                           for x in operands],
                  None if dtype is None else dtype.numpy, None if out_dtype is None else out_dtype.numpy, floating)


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
    return tuple([derivative(record, arg, values) if fn is not None else None
                  for arg, (fn, _) in zip(wrt or record.args, node.next_functions)])


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
    if _grad_mode.enabled and needs_grad(operands):
        result = eval(_compiled(expr), COMPOSED, dict(zip(names, operands)))
        return result if isinstance(result, Tensor) else full_like(grad, result)
    arrays = []                     # a loop, not a comprehension: one call less per step
    for x in operands:
        arrays.append(x._data if isinstance(x, Tensor) else x if type(x) is float or type(x) is int else None)
    data = _alike(kernel, arrays)
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


# -- generated from the op table: node classes, functions, Tensor methods -------------------------
# For each record: a node class per variant (PyTorch's grad_fn name; a variant is the set of
# operands given as numbers, named in the record's ``numbers``), whose backward is the table's
# gradient expressions; ``RECORD[op](data, *operands)``, which records that node over ``data``
# and saves what its expressions read; and ``RUN[op](*operands)``, which computes ``data``
# first. Both are Python source generated per record, so that the path of a small op has no
# branch or lookup that its record does not need. Hand-written wrappers (``add``'s alpha,
# ``pow``'s special exponents, ``clamp``'s optional bounds...) call them.
NODES = {}
RECORD = {}
RUN = {}


class TRACING:
    """``trace(name, operands)``: set by ``nbgrad.compile``'s capture, asked by the generated
    functions on their general path (and by where and the comparisons); a traced result, or
    None to compute. ``ops``: capture's own ``cat``, ``stack``, ``addmm``, for their eager
    functions given a traced value."""
    trace = None
    ops = {}


def check_negation(input):
    if input.dtype is _dtype.bool:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")


def _check_divisor(a, b):
    """An integer division by zero is an error, as in PyTorch."""
    if _is_integral(a) and _is_integral(b) and _has_zero(b):
        raise RuntimeError("ZeroDivisionError")


def _has_zero(x):
    return bool((target_of(x._data).to_host(x._data) == 0).any()) if isinstance(x, Tensor) else x == 0


def _is_integral(x):
    return x.dtype.kind < 2 if isinstance(x, Tensor) else isinstance(x, numbers.Integral)


CHECKS = {"neg": check_negation, "remainder": _check_divisor, "fmod": _check_divisor}    # run on the operands before computing


def _exec(source, filename, namespace):
    """Run generated ``source``; its lines show in tracebacks."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def _node_class(rec, name, inputs):
    """``rec``'s backward node when ``inputs`` (the args given as tensors) are recorded."""
    saved, wrt = rec.saved(inputs), (None if inputs == rec.args else inputs)
    values = [f"{n}={n}" for n in saved] + [f"{p}=self.{p}" for p, _ in rec.params]
    steps = [_kernel_step(rec, arg, inputs, j) for j, arg in enumerate(inputs)]
    source = "\n    ".join(["def backward(self, grad):",
                            *([f"{', '.join(saved)}, = self.saved_tensors"] if saved else []),
                            "if _grad_mode.enabled:           # create_graph: maybe recorded",
                            f"    return gradients(self, {rec.name!r}, grad, {wrt!r}{''.join(', ' + v for v in values)})",
                            "nf = self.next_functions",
                            f"return ({''.join(step + ', ' for step in steps)})"])
    backward = _exec(source, f"<nbgrad node {name}>", {"gradients": gradients, "_grad_mode": _grad_mode,
                                                        "_kernel_gradient": _kernel_gradient,
                                                        "zeros_like": zeros_like, "Tensor": Tensor})["backward"]
    doc = "; ".join(f"d{a} = {rec.grads[a]}" for a in inputs if a in rec.grads)
    attrs = {"backward": backward, "__module__": __name__, "__qualname__": name,
             "_table_op": rec.name, "_table_args": inputs,         # forward AD's rule (autograd/forward_ad.py)
             "_saved_names": tuple(_torch_name(rec, n) for n in saved),   # grad_fn._saved_self...
             "__doc__": f"Backward of ``{rec.forward}`` (op table: {rec.name}): {doc}."}
    # a saved operand read by one input's gradient alone may change once that one is not wanted
    readers = [[a for a in rec.readers(n) if a in inputs] for n in saved if n != "y"]
    saved_for = tuple(inputs.index(r[0]) if len(r) == 1 else None for r in readers)
    if any(k is not None for k in saved_for):
        attrs["_saved_for"] = saved_for + (None,) * ("y" in saved)
    return type(name, (Node,), attrs)


def _kernel_step(rec, arg, inputs, j):
    """Source of input ``j``'s gradient (``arg``'s) when the step is not recorded: its fused
    kernel over the names its expression reads, written out for this node class, so that
    a backward step makes no lookups (what ``derivative`` does per call)."""
    expr = rec.grads.get(arg)
    if expr is None:
        return "None"
    if expr in ("g", "0"):
        value = "grad" if expr == "g" else "zeros_like(grad)"
    else:
        params = {p for p, _ in rec.params}
        arrays, operands = [], []
        for n in rec.grad_operands(arg):
            if n == "g":
                arrays.append("grad._data")
                operands.append("grad")
            elif n == "y":
                arrays.append("y._data")
                operands.append("y")
            elif n in inputs:                  # a tensor, or a number where the op took one
                arrays.append(f"({n}._data if isinstance({n}, Tensor) else {n} if type({n}) is float or "
                              f"type({n}) is int else None)")
                operands.append(n)
            else:                              # a number: a param, or an operand given as one
                ref = f"self.{n}" if n in params else n
                arrays.append(f"({ref} if type({ref}) is float or type({ref}) is int else None)")
                operands.append(ref)
        value = f"_kernel_gradient({rec.grad_kernel(arg)!r}, [{', '.join(arrays)}], ({', '.join(operands)},))"
    return f"({value} if nf[{j}][0] is not None else None)"


def _kernel_gradient(kernel, arrays, operands):
    data = _alike(kernel, arrays)
    return Tensor._wrap(data if data is not None else _compute_any(kernel, operands, None, None, None))


def _torch_name(rec, name):
    """PyTorch's name of a saved operand: ``self`` for the first input, ``result`` for the output."""
    if name == "y":
        return "result"
    name = rec.inputs[rec.args.index(name)]
    return "self" if name == "input" else name


def _recording(rec, key, names):
    """Source lines recording variant ``key``'s node over ``data`` and returning the result."""
    inputs = tuple(a for a in rec.args if a not in key)
    saved = rec.saved(inputs)
    node = f"_node_{key}"
    ins = ", ".join(names[a] for a in inputs)
    kept = [names[a] for a in saved if a != "y"]
    attrs = "".join(f", {p}={p}" for p, _ in rec.params)
    if "y" not in saved:
        keep = f", ({', '.join(kept)},)" if kept else ""
        return [f"return record({node}, data, ({ins},){keep}{attrs})"]
    save = f"save_for_backward({', '.join(kept)}, out)" if kept else "save_output(out)"
    # a number operand the gradient reads is passed to record as well (forward AD reads it there)
    keep = f", ({', '.join(kept)},)" if any(a in key for a in saved) else ""
    return [f"out = record({node}, data, ({ins},){keep}{attrs})", "if out.grad_fn is not None:",
            f"    out.grad_fn.{save}", "return out"]


def _write_out(out, result, name):
    from .out import write_out
    return write_out(out, result, name)


def _generate(rec):
    """``RUN[op]`` and ``RECORD[op]`` (and the node classes) of table record ``rec``."""
    names = dict(zip(rec.args, rec.inputs))
    namespace = {"Tensor": Tensor, "record": record, "_alike": _alike, "TRACING": TRACING,
                 "_compute_any": _compute_any, "_float_dtype": _float_dtype, "_check": CHECKS.get(rec.name),
                 "_write_out": _write_out}
    NODES[rec.name] = {}
    for key, name in {"": rec.node, **rec.numbers}.items():
        cls = NODES[rec.name][key] = namespace[f"_node_{key}"] = \
            _node_class(rec, name, tuple(a for a in rec.args if a not in key))
        globals().setdefault(name, cls)
    body = []
    for key in rec.numbers:
        body.append("if " + " and ".join(f"not isinstance({names[a]}, Tensor)" for a in key) + ":")
        body += ["    " + line for line in _recording(rec, key, names)]
    body += _recording(rec, "", names)
    params = [f"{p}={default!r}" for p, default in rec.params]
    signature = ", ".join([*rec.inputs, *(["*", *params] if params else [])])
    public = ", ".join([*rec.inputs, "*", *params, "out=None"])         # out=: the result written into a tensor
    call = ", ".join([*rec.inputs, *(f"{p}={p}" for p, _ in rec.params)])
    operands = ", ".join([*rec.inputs, *(p for p, _ in rec.params)])
    # the quick path's operands: tensors' arrays, written out per input (a loop costs 5% of a 5x5 op)
    # (anything but a tensor or a Python number, such as a NumPy array, goes to the general path)
    arrays = ", ".join([*(f"{x}._data if isinstance({x}, Tensor) else {x} if type({x}) is float or type({x}) is int "
                          "else None" for x in rec.inputs),
                        *(p for p, _ in rec.params)])
    floating = rec.result == "float"
    name = rec.api[0] if rec.api else f"_{rec.name}"
    source = "\n    ".join([
        f"def {name}({public}):",
        f'"""``{rec.forward}``, elementwise (generated from ops/table.py)."""',
        "if out is not None:",
        f"    return _write_out(out, {name}({call}), {name!r})",
        *([f"_check({', '.join(rec.inputs)})"] if namespace["_check"] else []),
        f"data = _alike({rec.name!r}, ({arrays},), None, None{', True' if floating else ''})",
        "if data is None:",
        f"    operands = ({operands},)",
        "    if TRACING.trace is not None:",
        f"        traced = TRACING.trace({rec.name!r}, operands)",
        "        if traced is not None:",
        "            return traced",
        f"    data = _compute_any({rec.name!r}, operands, {'_float_dtype(operands)' if floating else 'None'}, "
        "None, None)",
        *body])
    source += "\n\n\n" + "\n    ".join([f"def record_{rec.name}(data, {signature}):", *body]) + "\n"
    _exec(source, f"<nbgrad op {rec.name}>", namespace)
    RUN[rec.name], RECORD[rec.name] = namespace[name], namespace[f"record_{rec.name}"]
    RUN[rec.name].__module__ = __name__
    for alias in rec.api:
        setattr(Tensor, alias, RUN[rec.name])
        if not alias.startswith("__"):
            globals()[alias] = RUN[rec.name]
            __all__.append(alias)


for _rec in TABLE.values():
    if _rec.node is not None:
        _generate(_rec)


# -- the ops whose signature is their own ----------------------------------------------------------
@tensor_method("add", "__add__", "__radd__")
def add(input, other, *, alpha=1):
    if not isinstance(input, Tensor):          # number + tensor
        input, other = other, input
    _check_operand(other)
    if alpha == 1:
        return RUN["add"](input, other)
    return RUN["add_scaled"](input, other, alpha=alpha)


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
    return RUN["sub"](input, other)


@tensor_method("__rsub__")
def rsub(input, other):
    """``other - input``, for a number ``other``."""
    _check_operand(other)
    _check_subtraction(other, input)
    return RUN["sub"](other, input)


@tensor_method("div", "__truediv__", "divide", "true_divide")
def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        if rounding_mode not in ("floor", "trunc"):
            raise ValueError("div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                             f"'{rounding_mode}'")
        _check_divisor(input, other)
        return RUN[rounding_mode + "_divide"](input, other)
    return RUN["div"](input, other)


true_divide = div


@tensor_method("__rtruediv__")
def _rtruediv(input, other):
    return div(other, input)


@tensor_method("floor_divide", "__floordiv__")
def floor_divide(input, other):
    """Recorded without a derivative, as PyTorch records it (``div(rounding_mode='floor')``
    has one: zero)."""
    _check_divisor(input, other)
    return record(NoDerivative, compute("floor_divide", (input, other)), (input, other), op="aten::floor_divide")


@tensor_method("__rfloordiv__")
def _rfloordiv(input, other):
    return floor_divide(other, input)


@tensor_method("__rmod__")
def _rmod(input, other):
    return remainder(other, input)     # noqa: F821  (generated above)


@tensor_method("__pos__")
def _pos(input):
    return input


@tensor_method("pow", "__pow__")
def pow(input, exponent):
    if not isinstance(input, Tensor):
        return _rpow(exponent, input)
    if not isinstance(exponent, Tensor):
        if input.dtype.kind == 1 and isinstance(exponent, numbers.Integral) and exponent < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        if exponent in (0.5, -0.5):   # as PyTorch computes them: (-inf) ** 0.5 is NaN, (-0) ** 0.5 is -0
            data = compute("sqrt" if exponent > 0 else "rsqrt", (input,), _float_dtype((input, exponent)))
            return RECORD["pow"](data, input, exponent)
    return RUN["pow"](input, exponent)


@tensor_method("__rpow__")
def _rpow(input, other):
    """``other ** input`` for a number ``other``."""
    if isinstance(other, Tensor):
        return pow(other, input)
    _check_operand(other)
    return RUN["pow"](other, input)


_round = RUN["round"]


@tensor_method("round")
def round(input, *, decimals=0):
    """Half to even; with ``decimals``, at that many decimal places (negative: tens, hundreds...)."""
    return _round(input) if decimals == 0 else RUN["round_decimals"](input, decimals=decimals)


@tensor_method("square")
def square(input):
    return pow(input, 2)


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):
    if getattr(input, "_traced", False):                     # traced by nbgrad.compile
        return input.clamp(min, max)
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    bounds = [v for v in (min, max) if v is not None]
    dtype = result_type([input] + [v for v in bounds if isinstance(v, Tensor)],
                        [v for v in bounds if not isinstance(v, Tensor)])
    lo = min if min is not None else _lowest(dtype)
    hi = max if max is not None else _highest(dtype)
    return RECORD["clamp"](compute("clamp", (input, lo, hi), dtype), input, lo, hi)


clip = clamp


def _lowest(dtype):
    return -np.inf if dtype.is_floating_point else np.iinfo(np.int64).min if dtype.kind == 1 else False


def _highest(dtype):
    return np.inf if dtype.is_floating_point else np.iinfo(np.int64).max if dtype.kind == 1 else True


@tensor_method()
def where(condition, input, other):
    traced = TRACING.trace and TRACING.trace("where", (condition, input, other))
    if traced is not None:
        return traced
    if not isinstance(condition, Tensor) or condition.dtype is not _dtype.bool:
        raise RuntimeError("where expected condition to be a boolean tensor")
    values = (input, other)
    dtype = result_type([x for x in values if isinstance(x, Tensor)], [x for x in values if not isinstance(x, Tensor)])
    shape = broadcast_shapes(*(t._data.shape for t in (condition, *values) if isinstance(t, Tensor)))
    target = common_target([condition._data, *(x._data for x in values if isinstance(x, Tensor))])
    out = target.empty(shape, dtype.numpy)
    target.run("where", out, condition._data, *(target.astype(x._data, dtype.numpy) if isinstance(x, Tensor)
                                                 else target.number(x, dtype.numpy) for x in values), fresh_out=True)
    return RECORD["where"](out, condition, input, other)


# -- comparisons and logic: results are bool and never require grad ---------------------------------------
def _compare(kernel, input, other):
    traced = TRACING.trace and TRACING.trace(kernel, (input, other))
    if traced is not None:
        return traced
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
    traced = TRACING.trace and TRACING.trace(kernel, (input, other))
    if traced is not None:
        return traced
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
    traced = TRACING.trace and TRACING.trace("logical_not", (input,))
    if traced is not None:
        return traced
    return Tensor._wrap(compute("logical_not", (input,), out_dtype=_dtype.bool))


def _bitwise(kernel, name):
    def op(input, other):
        if not isinstance(input, Tensor):            # number & tensor
            input, other = other, input
        _check_operand(other)
        dtype = promote((input, other))
        if dtype.is_floating_point:
            raise NotImplementedError(f'"{name}_cpu" not implemented for \'{dtype.legacy}\'')
        if dtype is _dtype.bool:
            return _logical(kernel, input, other)
        return Tensor._wrap(compute(name, (input, other), dtype))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name} of integer or bool tensors (bools: the logical op)."
    return op


bitwise_and = Tensor.__and__ = Tensor.__rand__ = Tensor.bitwise_and = _bitwise("logical_and", "bitwise_and")
bitwise_or = Tensor.__or__ = Tensor.__ror__ = Tensor.bitwise_or = _bitwise("logical_or", "bitwise_or")
bitwise_xor = Tensor.__xor__ = Tensor.__rxor__ = Tensor.bitwise_xor = _bitwise("logical_xor", "bitwise_xor")
__all__ += ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"]


@tensor_method("__invert__", "bitwise_not")
def bitwise_not(input):
    """Elementwise bitwise not of an integer tensor (bools: logical not)."""
    if input.dtype is _dtype.bool:
        return logical_not(input)
    if input.dtype.is_floating_point:
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type tensors")
    return Tensor._wrap(compute("bitwise_not", (input,)))


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
    data = input._data
    target = target_of(data)
    out = target.copy_into(target.empty(data.shape, dtype.numpy), data, fresh_out=True)
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
    "__builtins__": {"abs": RUN["abs"]},
    "where": _where,
    "exp": _or_number(RUN["exp"], math.exp),
    "log": _or_number(RUN["log"], lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    "sqrt": RUN["sqrt"], "rsqrt": lambda x: x ** -0.5, "sign": RUN["sign"], "sin": RUN["sin"], "cos": RUN["cos"],
    "tanh": RUN["tanh"], "sigmoid": RUN["sigmoid"], "power": lambda a, b: a ** b,
    "floor_div": _or_number(lambda a, b: div(a, b, rounding_mode="floor"), lambda a, b: a // b),
    "trunc_divide": _or_number(lambda a, b: div(a, b, rounding_mode="trunc"), lambda a, b: math.trunc(a / b)),
    "remainder": RUN["remainder"], "clamp": clamp,
}
COMPOSED.update({name: RUN[name] for name in (
    "erf", "erfc", "erfinv", "expm1", "log1p", "log2", "log10", "exp2", "tan", "asin", "acos", "atan", "atan2", "sinh",
    "cosh", "asinh", "acosh", "atanh", "floor", "ceil", "round", "trunc", "hypot", "xlogy", "logaddexp", "copysign",
    "fmod")})
