"""The op table: every elementwise op, written once.

A record holds an op's forward, a scalar expression of its operands, and for each operand the
gradient it receives: an expression of ``g`` (the gradient of the output), ``y`` (the output),
the operands and the parameters; ``None`` where the operand has no gradient, ``"0"`` where it
is zero.

Each expression is read two ways. As the body of generated Numba loops (``elementwise.py``),
where its function names are ``scalar.py``'s; and, when a backward pass is itself recorded
(``create_graph=True``), evaluated on Tensors, where the same names are nbgrad's ops: so a
second derivative comes from the same formula as the first, and nothing about an op's math is
written twice. Expressions therefore use only what both readings have: arithmetic,
comparisons, ``& | ~`` on comparisons, and the functions of ``scalar.__all__``, with
``where(c, a, b)`` for a branch.

The rest of a record is what the Tensor layer generates from it (``functional/pointwise.py``):
the backward node (``node``, PyTorch's ``grad_fn`` name; ``numbers`` names the node used when
that operand is a number, as PyTorch's ``PowBackward0`` for ``x ** 2``), what it saves (the
names its gradient expressions read), the function and Tensor methods (``api``: the function's
name, then aliases; ``inputs``: its parameter names), the in-place method (``inplace``), and the
dtype rule (``result="float"``: integer inputs give the default float dtype). ``params`` are
constants (``negative_slope``, ``alpha``): numbers that are scalar operands of the kernels and
attributes of the node, never tensors, never differentiated.
"""
import ast
import functools
from dataclasses import dataclass, field, replace

__all__ = ["Pointwise", "TABLE", "Accumulation", "ACCUMULATIONS", "names_in"]


@dataclass(frozen=True)
class Pointwise:
    name: str
    args: tuple                            # operand names
    forward: str                           # a scalar expression of ``args`` and ``params``
    grads: dict = field(default_factory=dict)   # operand -> gradient expression (or "0")
    params: tuple = ()                     # constant operands: (name, default) pairs
    node: str = None                       # PyTorch's grad_fn name
    numbers: dict = field(default_factory=dict)  # operand -> grad_fn name when it is a number
    result: str = "same"                   # "float": integer inputs compute in the default float
    api: tuple = ()                        # function name, then Tensor-method aliases
    inputs: tuple = ()                     # the function's parameter names for ``args``
    inplace: bool = False                  # a ``name_`` method (and ``__imul__`` for ``__mul__``); or the
                                           # grad_fn name PyTorch gives the in-place form (``EluBackward1``)

    @property
    def operands(self):
        """The kernels' operands: the args, then the params."""
        return self.args + tuple(p for p, _ in self.params)

    def grad_kernel(self, arg):
        """The name of the fused kernel for ``arg``'s gradient."""
        return f"{self.name}_d{arg}"

    def grad_operands(self, arg):
        """The names the gradient of ``arg`` reads, in a fixed order: ``g``, ``y``, operands
        (asked by every backward step: parsed once)."""
        return _read_in_order(self.grads[arg], ("g", "y", *self.operands))

    def saved(self, wrt):
        """What the backward saves when the args ``wrt`` need gradients: the args and ``y``
        that their gradient expressions read, args first."""
        used = set()
        for arg in wrt:
            expr = self.grads.get(arg)
            if expr is not None:
                used |= names_in(expr)
        return tuple(n for n in (*self.args, "y") if n in used)

    def readers(self, name):
        """The args whose gradient expressions read ``name``."""
        return tuple(a for a in self.args if self.grads.get(a) is not None and name in names_in(self.grads[a]))


@functools.lru_cache(maxsize=None)
def names_in(expr):
    return frozenset(node.id for node in ast.walk(ast.parse(expr, mode="eval")) if isinstance(node, ast.Name))


@functools.lru_cache(maxsize=None)
def _read_in_order(expr, candidates):
    used = names_in(expr)
    return tuple(n for n in candidates if n in used)


TABLE = {}


def _op(name, args, forward, *, params=(), node=None, numbers=None, result="same", api=(), inputs=None,
        inplace=False, **grads):
    args = tuple(args)
    if node is None and grads:
        node = "".join(part.title() for part in name.split("_")) + "Backward0"     # PyTorch's rule
    api = (api,) if isinstance(api, str) else tuple(api)
    inputs = tuple(inputs or ("input", "other", "third")[:len(args)])
    TABLE[name] = Pointwise(name, args, forward, grads, tuple(params), node, numbers or {}, result, api,
                            inputs, inplace)


def _math(name, forward, grad, aliases=()):
    """A unary op of floating result with a function, methods and an in-place method."""
    _op(name, "x", forward, result="float", api=(name, *aliases), inplace=True, x=grad)


# identity: copies and dtype casts (the output's dtype decides the cast)
_op("copy", "x", "x")
_op("neg", "x", "-x", api=("neg", "__neg__", "negative"), inplace=True, x="-g")
_op("add", "ab", "a + b", a="g", b="g")
_op("add_scaled", "ab", "a + alpha * b", params=[("alpha", 1)], node="AddBackward0", a="g", b="g * alpha")
_op("sub", "ab", "a - b", numbers={"a": "RsubBackward1"}, a="g", b="-g")
_op("mul", "ab", "a * b", api=("mul", "__mul__", "__rmul__", "multiply"), inplace=True, a="g * b", b="g * a")
# b * b would overflow (float32 b = 1e20) where the quotients do not
_op("div", "ab", "a / b", result="float", a="g / b", b="-(g / b) * (a / b)")
# piecewise constant: zero gradients (``//`` itself is recorded without one, as in PyTorch)
_op("floor_divide", "ab", "floor_div(a, b)", node="DivBackward1", a="0", b="0")
_op("trunc_divide", "ab", "trunc_divide(a, b)", node="DivBackward1", a="0", b="0")
_op("remainder", "ab", "remainder(a, b)", node="RemainderBackward1", numbers={"b": "RemainderBackward0"},
    api=("remainder", "__mod__"), a="g", b="-g * floor_div(a, b)")
_op("pow", "ab", "power(a, b)", node="PowBackward1", numbers={"b": "PowBackward0", "a": "PowBackward2"},
    a="where(b == 0, 0, g * b * power(a, b - 1))", b="where((a == 0) & (b >= 0), 0, g * y * log(a))")
_math("exp", "exp(x)", "g * y")
_math("log", "log(x)", "g / x")
_math("sqrt", "sqrt(x)", "g / (2 * y)")
_math("rsqrt", "rsqrt(x)", "-0.5 * g * y * y * y")
_op("abs", "x", "abs(x)", api=("abs", "__abs__", "absolute"), inplace=True, x="g * sign(x)")
_op("sign", "x", "sign(x)", api="sign", inplace=True, x="0")
_math("sin", "sin(x)", "g * cos(x)")
_math("cos", "cos(x)", "-g * sin(x)")
_math("tanh", "tanh(x)", "g * (1 - y * y)")
_math("sigmoid", "sigmoid(x)", "g * y * (1 - y)")
# a NaN passes its gradient through relu, maximum and minimum, as in PyTorch; where the
# derivative is zero the gradient is 0, also when the incoming one is infinite (sqrt(0))
_op("relu", "x", "where(x < 0, 0, x)", api="relu", inplace=True, x="where(y <= 0, 0, g)")
# the bounds' gradients: where they won (the upper one where the bounds cross)
_op("clamp", "xlh", "clamp(x, l, h)", inputs=("input", "min", "max"), numbers={"lh": "ClampBackward1"}, x="where((x >= l) & (x <= h), g, 0)",
    l="where((x < l) & (l < h), g, 0)", h="where((x > h) | (h < l), g, 0)")
# maximum/minimum split the gradient evenly where both operands are equal, as PyTorch does
# (``maximum_`` is nbgrad's own: Adam's amsgrad keeps its running maximum in place)
_op("maximum", "ab", "where((a > b) | (a != a), a, b)", api="maximum", inplace=True,
    a="where(a == b, g / 2, where(a < b, 0, g))", b="where(a == b, g / 2, where(b < a, 0, g))")
_op("minimum", "ab", "where((a < b) | (a != a), a, b)", api="minimum", inplace=True,
    a="where(a == b, g / 2, where(a > b, 0, g))", b="where(a == b, g / 2, where(b > a, 0, g))")
_op("where", "cab", "where(c, a, b)", inputs=("condition", "input", "other"), a="where(c, g, 0)", b="where(c, 0, g)")
_op("eq", "ab", "a == b")
_op("ne", "ab", "a != b")
_op("lt", "ab", "a < b")
_op("le", "ab", "a <= b")
_op("gt", "ab", "a > b")
_op("ge", "ab", "a >= b")
_op("logical_and", "ab", "(a != 0) & (b != 0)")
_op("logical_or", "ab", "(a != 0) | (b != 0)")
_op("logical_xor", "ab", "(a != 0) != (b != 0)")
_op("logical_not", "x", "x == 0")

# -- math functions; derivatives written as PyTorch's derivatives.yaml writes them
_math("erf", "erf(x)", "1.1283791670955126 * exp(-(x * x)) * g")
_math("erfc", "erfc(x)", "-1.1283791670955126 * exp(-(x * x)) * g")
_math("erfinv", "erfinv(x)", "0.886226925452758 * exp(y * y) * g")
_math("expm1", "expm1(x)", "g * (y + 1)")
_math("log1p", "log1p(x)", "g / (x + 1)")
_math("log2", "log2(x)", "g / (x * 0.6931471805599453)")
_math("log10", "log10(x)", "g / (x * 2.302585092994046)")
_math("exp2", "exp2(x)", "g * y * 0.6931471805599453")
_math("reciprocal", "1 / x", "-g * (y * y)")
_math("tan", "tan(x)", "g * (1 + y * y)")
_math("asin", "asin(x)", "g * rsqrt(1 - x * x)", ["arcsin"])
_math("acos", "acos(x)", "-g * rsqrt(1 - x * x)", ["arccos"])
_math("atan", "atan(x)", "g / (x * x + 1)", ["arctan"])
_math("sinh", "sinh(x)", "g * cosh(x)")
_math("cosh", "cosh(x)", "g * sinh(x)")
_math("asinh", "asinh(x)", "g * rsqrt(x * x + 1)", ["arcsinh"])
_math("acosh", "acosh(x)", "g * rsqrt(x * x - 1)", ["arccosh"])
_math("atanh", "atanh(x)", "g / (1 - x * x)", ["arctanh"])
_op("floor", "x", "floor(x)", api="floor", inplace=True, x="0")
_op("ceil", "x", "ceil(x)", api="ceil", inplace=True, x="0")
_op("round", "x", "round(x)", api="round", inplace=True, x="0")
# round(x, decimals=d), as PyTorch computes it: scaled by 10**d (by 10**-d for d < 0), rounded, scaled back
_op("round_decimals", "x", "where(decimals >= 0, round(x * power(10.0, decimals)) / power(10.0, decimals), "
    "round(x / power(10.0, -decimals)) * power(10.0, -decimals))", params=[("decimals", 0)], node="RoundBackward1",
    x="0")
_op("trunc", "x", "trunc(x)", api=("trunc", "fix"), inplace=True, x="0")
_op("frac", "x", "x - trunc(x)", api="frac", inplace=True, x="g")
_op("atan2", "ab", "atan2(a, b)", result="float", api=("atan2", "arctan2"), inplace=True,
    a="g * b * where(a * a + b * b == 0, 0, 1 / (a * a + b * b))",
    b="g * -a * where(a * a + b * b == 0, 0, 1 / (a * a + b * b))")
_op("hypot", "ab", "hypot(a, b)", api="hypot", inplace=True, a="g * a / y", b="g * b / y")
# |w| < 0.5 or not: PyTorch's two forms, each exact at its end
_op("lerp", "abw", "where(abs(w) < 0.5, a + w * (b - a), b - (b - a) * (1 - w))", inputs=("input", "end", "weight"),
    node="LerpBackward1", numbers={"w": "LerpBackward0"}, api="lerp", inplace=True,
    a="g * (1 - w)", b="g * w", w="g * (b - a)")
_op("addcmul", "abc", "a + value * b * c", params=[("value", 1)], inputs=("input", "tensor1", "tensor2"),
    api="addcmul", inplace=True, a="g", b="g * (c * value)", c="g * (b * value)")
_op("addcdiv", "abc", "a + value * b / c", params=[("value", 1)], inputs=("input", "tensor1", "tensor2"),
    api="addcdiv", inplace=True, a="g", b="g * (value / c)", c="-g * (value * b / (c * c))")
_op("xlogy", "ab", "xlogy(a, b)", result="float", numbers={"a": "XlogyBackward1", "b": "XlogyBackward2"},
    api="xlogy", inplace=True, a="where((a == 0) & (b <= 0), 0, xlogy(g, b))", b="g * a / b")
_op("logaddexp", "ab", "logaddexp(a, b)", result="float", api="logaddexp",
    a="g / (1 + exp(b - a))", b="g / (1 + exp(a - b))")
_op("copysign", "ab", "copysign(a, b)", result="float", numbers={"b": "CopysignBackward1"}, api="copysign",
    inplace=True, a="g * where(a == 0, 0, y / a)", b="0")
_op("fmod", "ab", "fmod(a, b)", node="FmodBackward1", numbers={"b": "FmodBackward0"}, api="fmod", inplace=True,
    a="g", b="-g * trunc_divide(a, b)")

# -- activations (nn.functional); their constants are params
_op("softplus", "x", "where(x * beta > threshold, x, log1p(exp(x * beta)) / beta)", result="float",
    params=[("beta", 1), ("threshold", 20)], inplace=False, x="where(x * beta > threshold, g, g * sigmoid(x * beta))")
_op("silu", "x", "x / (1 + exp(-x))", result="float", inplace=True, x="g * sigmoid(x) * (1 + x * (1 - sigmoid(x)))")
_op("gelu", "x", "x * 0.5 * (1 + erf(x * 0.7071067811865476))", result="float", inplace=False,
    x="g * (0.5 * (1 + erf(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327)")
_TANH = "tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))"
_op("gelu_tanh", "x", f"0.5 * x * (1 + {_TANH})", result="float", node="GeluBackward0",
    x=f"g * (0.5 * (1 + {_TANH}) + 0.5 * x * (1 - {_TANH} * {_TANH}) * (0.7978845608028654 * (1 + 0.134145 * x * x)))")
# elu, selu (both EluBackward0) and celu: one formula with PyTorch's scale and input scale
_op("elu", "x", "where(x <= 0, expm1(x * input_scale) * (alpha * scale), x * scale)", result="float",
    params=[("alpha", 1), ("scale", 1), ("input_scale", 1)], inplace="EluBackward1",
    x="where(x <= 0, g * input_scale * (alpha * scale) * exp(x * input_scale), g * scale)")
TABLE["celu"] = replace(TABLE["elu"], name="celu", node="CeluBackward0", inplace="CeluBackward1")
_op("leaky_relu", "x", "where(x > 0, x, x * negative_slope)", params=[("negative_slope", 0.01)],
    inplace="LeakyReluBackward1",
    x="where(x > 0, g, g * negative_slope)")
_op("hardtanh", "x", "clamp(x, min_val, max_val)", params=[("min_val", -1), ("max_val", 1)], inplace=True,
    x="where((x <= min_val) | (x >= max_val), 0, g)")
_op("hardsigmoid", "x", "clamp(x + 3, 0, 6) / 6", result="float", inplace=True, x="where((x > -3) & (x < 3), g / 6, 0)")
_op("hardswish", "x", "x * clamp(x + 3, 0, 6) / 6", result="float", inplace=True,
    x="where(x <= -3, 0, where(x < 3, g * (x / 3 + 0.5), g))")
_op("log_sigmoid", "x", "where(x < 0, x, 0) - log1p(exp(-abs(x)))", result="float", x="g * sigmoid(-x)")
_op("mish", "x", "x * tanh(log1p(exp(x)))", result="float", inplace=True,
    x="g * (tanh(log1p(exp(x))) + x * sigmoid(x) * (1 - tanh(log1p(exp(x))) * tanh(log1p(exp(x)))))")

# -- tests of values (bool results, no gradient) and nan_to_num; ``x - x`` is NaN exactly at
# infinities and NaNs, and 0 elsewhere (integers included)
_op("isnan", "x", "x != x")
_op("isinf", "x", "(x == x) & (x - x != x - x)")
_op("isfinite", "x", "x - x == x - x")
_op("nan_to_num", "x", "where(x != x, nan, where(x - x != x - x, where(x > 0, posinf, neginf), x))",
    params=[("nan", 0), ("posinf", 0), ("neginf", 0)], x="where(x - x == x - x, g, 0)")
# bitwise ops of integer (and bool) tensors
_op("bitwise_and", "ab", "a & b")
_op("bitwise_or", "ab", "a | b")
_op("bitwise_xor", "ab", "a ^ b")
_op("bitwise_not", "x", "~x")

# -- accumulating reductions ----------------------------------------------------------------------
@dataclass(frozen=True)
class Accumulation:
    """A reduction that accumulates one term per element: ``acc = zero (op) term(v, c)`` over
    the reduced elements ``v`` of each output, which is then ``finish(acc, c, scale)``; ``c``
    is a per-output center (the mean for a variance, the maximum for logsumexp) that the caller
    computes first, read as ``cs[j]`` by ``center``. These four are kernel text
    (``ops/reduce.py`` pastes them into its loops).

    ``grads["x"]`` is the input's gradient, read both ways as a pointwise record's: an
    expression of ``g`` (the output's gradient), ``y`` (the output), ``m`` (the center),
    ``x``, ``s`` (a scale) and ``n`` (the count of reduced elements), where every name but ``x``
    has the keepdim shape and broadcasts. ``kernel`` names the accumulation whose loops an op
    shares (mean is a scaled sum)."""
    name: str
    op: str = "+"
    term: str = "v"
    center: str = "zero"
    finish: str = "acc"
    grads: dict = field(default_factory=dict)
    node: tuple = ()                       # PyTorch's grad_fn names: (all dims, given dims)
    kernel: str = None
    args = ("x",)
    operands = ("x", "m", "s", "n")

    def grad_kernel(self, arg):
        return f"{self.name}_d{arg}"

    def grad_operands(self, arg):
        return _read_in_order(self.grads[arg], ("g", "y", *self.operands))


ACCUMULATIONS = {}


def _accumulation(name, *, node=None, **fields):
    grads = {"x": fields.pop("dx")} if "dx" in fields else {}
    base = "".join(part.title() for part in name.split("_"))
    node = (f"{base}Backward0", f"{base}Backward1") if node is None and grads else (node or ())
    ACCUMULATIONS[name] = Accumulation(name, grads=grads, node=tuple(node), **fields)


_accumulation("sum", finish="acc * scale", dx="g")
_accumulation("mean", kernel="sum", dx="g / n")
_accumulation("prod", op="*", dx="g * (y / x)")      # where x has no zero; ops/reduce.py's prod_backward where it has
_accumulation("var", term="(v - c) * (v - c)", center="cs[j]", finish="acc * scale", node=("VarBackward0",) * 2,
              dx="g * s * (x - m)")
# the root in float64, so that a float32 std stays finite where its variance would not
_accumulation("std", term="(v - c) * (v - c)", center="cs[j]", finish="math.sqrt(acc * scale)",
              node=("StdBackward0",) * 2, dx="where(y == 0, 0, g / y) * s * (x - m)")
# an infinite maximum shifts by 0, as in PyTorch
_accumulation("logsumexp", term="math.exp(v - c)", center="(cs[j] if abs(cs[j]) != INF else 0.0)",
              finish="math.log(acc) + c", node=("LogsumexpBackward0",) * 2, dx="g * exp(x - y)")
_accumulation("count_zeros", term="(v == 0)")
