"""The op table: the math of every elementwise op, written once.

A record holds an op's forward, a scalar expression of its operands, and for each operand the
gradient it receives: an expression of ``g`` (the gradient of the output), ``y`` (the output)
and the operands; ``None`` where the operand has no gradient, ``"0"`` where it is zero.

Each expression is read two ways. As the body of generated Numba loops (``elementwise.py``),
where its function names are ``scalar.py``'s; and, when a backward pass is itself recorded
(``create_graph=True``), evaluated on Tensors, where the same names are nbgrad's ops: so a
second derivative comes from the same formula as the first, and nothing about an op's math is
written twice. Expressions therefore use only what both readings have: arithmetic,
comparisons, ``& | ~`` on comparisons, and the functions of ``scalar.__all__``, with
``where(c, a, b)`` for a branch.
"""
import ast
import functools
from dataclasses import dataclass, field

__all__ = ["Pointwise", "TABLE", "names_in"]


@dataclass(frozen=True)
class Pointwise:
    name: str
    args: tuple                            # operand names
    forward: str                           # a scalar expression of ``args``
    grads: dict = field(default_factory=dict)   # operand -> gradient expression (or "0")

    def grad_kernel(self, arg):
        """The name of the fused kernel for ``arg``'s gradient."""
        return f"{self.name}_d{arg}"

    def grad_operands(self, arg):
        """The names the gradient of ``arg`` reads, in a fixed order: ``g``, ``y``, operands
        (asked by every backward step: parsed once)."""
        return _read_in_order(self.grads[arg], ("g", "y", *self.args))


@functools.lru_cache(maxsize=None)
def names_in(expr):
    return frozenset(node.id for node in ast.walk(ast.parse(expr, mode="eval")) if isinstance(node, ast.Name))


@functools.lru_cache(maxsize=None)
def _read_in_order(expr, candidates):
    used = names_in(expr)
    return tuple(n for n in candidates if n in used)


TABLE = {}


def _op(name, args, forward, **grads):
    TABLE[name] = Pointwise(name, tuple(args), forward, grads)


# identity: copies and dtype casts (the output's dtype decides the cast)
_op("copy", "x", "x")
_op("neg", "x", "-x", x="-g")
_op("add", "ab", "a + b", a="g", b="g")
_op("add_scaled", ("a", "b", "alpha"), "a + alpha * b", a="g", b="g * alpha")
_op("sub", "ab", "a - b", a="g", b="-g")
_op("mul", "ab", "a * b", a="g * b", b="g * a")
# b * b would overflow (float32 b = 1e20) where the quotients do not
_op("div", "ab", "a / b", a="g / b", b="-(g / b) * (a / b)")
# piecewise constant: zero gradients (``//`` itself is recorded without one, as in PyTorch)
_op("floor_divide", "ab", "floor_div(a, b)", a="0", b="0")
_op("trunc_divide", "ab", "trunc_divide(a, b)", a="0", b="0")
_op("remainder", "ab", "remainder(a, b)", a="g", b="-g * floor_div(a, b)")
_op("pow", "ab", "power(a, b)", a="where(b == 0, 0, g * b * power(a, b - 1))",
    b="where((a == 0) & (b >= 0), 0, g * y * log(a))")
_op("exp", "x", "exp(x)", x="g * y")
_op("log", "x", "log(x)", x="g / x")
_op("sqrt", "x", "sqrt(x)", x="g / (2 * y)")
_op("rsqrt", "x", "rsqrt(x)", x="-0.5 * g * y * y * y")
_op("abs", "x", "abs(x)", x="g * sign(x)")
_op("sign", "x", "sign(x)", x="0")
_op("sin", "x", "sin(x)", x="g * cos(x)")
_op("cos", "x", "cos(x)", x="-g * sin(x)")
_op("tanh", "x", "tanh(x)", x="g * (1 - y * y)")
_op("sigmoid", "x", "sigmoid(x)", x="g * y * (1 - y)")
# a NaN passes its gradient through relu, maximum and minimum, as in PyTorch; where the
# derivative is zero the gradient is 0, also when the incoming one is infinite (sqrt(0))
_op("relu", "x", "where(x < 0, 0, x)", x="where(y <= 0, 0, g)")
# the bounds' gradients: where they won (the upper one where the bounds cross)
_op("clamp", "xlh", "clamp(x, l, h)", x="where((x >= l) & (x <= h), g, 0)",
    l="where((x < l) & (l < h), g, 0)", h="where((x > h) | (h < l), g, 0)")
# maximum/minimum split the gradient evenly where both operands are equal, as PyTorch does
_op("maximum", "ab", "where((a > b) | (a != a), a, b)",
    a="where(a == b, g / 2, where(a < b, 0, g))", b="where(a == b, g / 2, where(b < a, 0, g))")
_op("minimum", "ab", "where((a < b) | (a != a), a, b)",
    a="where(a == b, g / 2, where(a > b, 0, g))", b="where(a == b, g / 2, where(b > a, 0, g))")
_op("where", "cab", "where(c, a, b)", a="where(c, g, 0)", b="where(c, 0, g)")
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
