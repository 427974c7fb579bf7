"""The differential fuzzer's programs: drawn at random, run in nbgrad and in PyTorch, compared.

A program is data: input records (name, shape, dtype, values, requires_grad) and steps (op
name, one line of Python). Each line is written against the name ``torch``, so the same text
runs under ``import torch`` and ``import nbgrad as torch`` (the README's promise), and a
mismatch prints as a script that reproduces it. Steps are drawn by hypothesis from ``OPS``, one
record per op (name, line template, how to draw its arguments); a PyTorch "shadow" runs each
step as it is drawn, so the next draw knows the shapes and dtypes it works on, and a step that
raises ends the program.

Running: PyTorch runs in this process; nbgrad runs in a worker process (``Worker``), so that a
crash (a kernel writing out of bounds) is reported with its program instead of killing pytest.
``python tests/fuzz_programs.py N`` runs N programs and prints every distinct mismatch class.
"""
import math
import multiprocessing
import re
import sys
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

NUMBERS = (0, 1, 2, -1, 3, 0.5, -1.5, 2.5, 1e-3)        # Python numbers as operands
SPECIALS = (0.0, -0.0, math.inf, -math.inf, math.nan)   # edge values mixed into some inputs
MAX_NUMEL = 256                                          # keep every tensor small


# -- programs ----------------------------------------------------------------------------------
@dataclass
class Input:
    name: str
    shape: tuple
    dtype: str                  # "float32", "float64", "int64", "bool"
    values: list                # nested lists (Python numbers), or None for a size-0 tensor
    requires_grad: bool

    def line(self):
        rg = ", requires_grad=True" if self.requires_grad else ""
        if self.values is None:
            return f"{self.name} = torch.zeros({self.shape}, dtype=torch.{self.dtype}{rg})"
        return f"{self.name} = torch.tensor({self.values!r}, dtype=torch.{self.dtype}{rg})"


@dataclass
class Step:
    op: str                     # the name of the OPS record that drew it
    line: str                   # Python, against the module name ``torch``
    out: str                    # the variable to look at after the step
    note: str = ""              # "overlap": an in-place update whose operand shares memory with its target


@dataclass
class Program:
    inputs: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)     # Input records of weights: loss = sum((v * w).sum())

    def loss_lines(self):
        if not self.loss:
            return []
        terms = " + ".join(f"({w.name[1:]} * {w.name}).sum()" for w in self.loss)
        return [w.line() for w in self.loss] + [f"loss = {terms}", "loss.backward()"]

    def source(self, module="torch"):
        head = "import torch" if module == "torch" else "import nbgrad as torch"
        grads = [i.name for i in self.inputs if i.requires_grad]
        lines = [head, "from math import inf, nan", *(i.line() for i in self.inputs),
                 *(s.line for s in self.steps), *self.loss_lines()]
        if grads:
            lines.append(f"print({', '.join(g + '.grad' for g in grads)})")
        return "\n".join(lines)


# -- drawing -----------------------------------------------------------------------------------
def _nested(a):
    """``a`` as nested lists of Python numbers, or None when it has no elements."""
    return None if a.size == 0 else a.tolist()


class Gen:
    """Draws a program step by step, running each step in PyTorch to know what it made."""

    def __init__(self, draw, torch):
        self.draw, self.torch = draw, torch
        self.env = {}                                    # name -> torch tensor (the shadow)
        self.program = Program()
        self.float = draw(st.sampled_from(["float64", "float32"]))
        self.inexact = set()                             # names whose float32 value may differ by ulps

    # basic draws
    def choice(self, options):
        return self.draw(st.sampled_from(options))

    def chance(self, p):
        """True with probability ``p`` (st.integers would favour its bounds)."""
        return self.draw(st.sampled_from(range(100))) < 100 * p

    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def pick(self, pred=None):
        """An existing variable for which ``pred(tensor)`` holds (hypothesis shrinks towards the latest)."""
        names = [n for n, t in self.env.items() if pred is None or pred(t)]
        return names[-1 - self.int(0, len(names) - 1)] if names else None

    def shape(self, max_dims=3):
        """A small shape: 0-d to 3-d, sides 1..4, sometimes 0."""
        sides = self.draw(st.lists(st.sampled_from([1, 2, 3, 4, 2, 3]), max_size=max_dims))
        if sides and self.chance(0.08):
            sides[self.int(0, len(sides) - 1)] = 0
        return tuple(sides)

    def dim(self, t, bad=0.02):
        """A valid dim of ``t`` (negative ones too); rarely an invalid one."""
        n = max(t.dim(), 1)
        return n if self.chance(bad) else self.int(-n, n - 1)

    def dims(self, t, empty=True):
        """An int, a tuple of distinct dims, or (if ``empty``) an empty tuple, which means all
        dims to sum and mean but breaks PyTorch's var backward (inf) and logsumexp (raises)."""
        n = max(t.dim(), 1)
        if self.chance(0.5):
            return self.dim(t)
        picked = self.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=0 if empty else 1, max_size=n))
        return tuple(d - n if self.chance(0.3) else d for d in picked)

    def number(self):
        return self.choice(NUMBERS)

    # inputs
    def leaf(self, shape, dtype=None, kind=None, requires_grad=None, low=0, high=4):
        """A new input tensor; floats are mostly in [-2, 2] with 3 decimals, sometimes positive or
        with edge values (0, -0, +-inf, nan); ints in [low, high)."""
        dtype = dtype or self.float
        shape = tuple(shape)
        rng = np.random.default_rng(self.int(0, 2**32 - 1))
        if dtype == "bool":
            a = rng.random(shape) < 0.5
        elif dtype == "int64":
            a = rng.integers(low, high, shape)
        else:
            kind = kind or self.choice(["normal", "normal", "normal", "positive", "special"])
            a = np.round(rng.uniform(0.1 if kind == "positive" else -2, 2, shape), 3)
            if kind == "special" and a.size:
                a.flat[rng.integers(0, a.size, max(1, a.size // 4))] = rng.choice(SPECIALS, max(1, a.size // 4))
        if requires_grad is None:
            requires_grad = dtype.startswith("float") and self.chance(0.8)
        inp = Input(f"x{len(self.program.inputs)}", shape, dtype, _nested(np.asarray(a)), requires_grad)
        self.program.inputs.append(inp)
        exec(inp.line(), self.globals(), self.env)
        return inp.name

    def index_leaf(self, shape, size, negative=False):
        """An int64 tensor of indices into a dim of ``size``; rarely one out of range."""
        low = -size if negative else 0
        if size == 0 and self.chance(0.8):
            shape = (0,) * len(shape)
        name = self.leaf(shape, "int64", low=low, high=max(size, 1))
        t = self.env[name]
        if t.numel() and (size == 0 or self.chance(0.03)):
            t.view(-1)[0] = size                       # out of range
            self.program.inputs[-1].values = _nested(t.numpy())
        return name

    def globals(self):
        return {"torch": self.torch, "inf": math.inf, "nan": math.nan}

    # operands
    def tensor(self, kinds="f"):
        """An existing variable of one of the dtype kinds (f float, i int64, b bool), or a new input."""
        want = {"f": lambda t: t.is_floating_point(), "i": lambda t: t.dtype == self.torch.int64,
                "b": lambda t: t.dtype == self.torch.bool}
        name = self.pick(lambda t: any(want[k](t) for k in kinds) and t.numel() <= MAX_NUMEL)
        if name is None or self.chance(0.1):
            kind = self.choice(list(kinds))
            name = self.leaf(self.shape(), {"f": self.float, "i": "int64", "b": "bool"}[kind])
        return name

    def bshape(self, shape, grow=True):
        """A shape that broadcasts with ``shape`` (to it, unless ``grow``); rarely one that does not."""
        shape = list(shape)
        how = self.choice(["same", "ones", "suffix", "extra", "scalar", "bad"] if grow else
                          ["same", "ones", "suffix", "scalar", "bad"])
        if how == "ones":
            return tuple(1 if self.chance(0.5) else s for s in shape)
        if how == "suffix":
            return tuple(shape[self.int(0, len(shape)):])
        if how == "extra":
            return (self.choice([1, 2]), *shape)
        if how == "scalar":
            return ()
        if how == "bad" and self.chance(0.1) and shape:
            i = self.int(0, len(shape) - 1)
            shape[i] = shape[i] + 1 if shape[i] != 1 else 2
        return tuple(shape)

    def operand(self, a, grow=True, numbers=True):
        """The other operand of a binary op with ``a``: a number, an existing variable that
        broadcasts with it, or a new input of a broadcastable shape (sometimes another dtype)."""
        t = self.env[a]
        how = self.choice(["number", "var", "new", "new"] if numbers else ["var", "new", "new"])
        if how == "number":
            return repr(self.number())
        if how == "var":
            def fits(o):
                try:
                    s = self.torch.broadcast_shapes(o.shape, t.shape)
                except RuntimeError:
                    return False
                return o.dtype != self.torch.bool and (grow or s == t.shape)
            name = self.pick(fits)
            if name is not None:
                return name
        dtype = self.choice([t.dtype if t.is_floating_point() else self.float] * 6 + ["float32", "float64", "int64"])
        return self.leaf(self.bshape(t.shape, grow), str(dtype).replace("torch.", ""))

    def target(self):
        """A float variable to update in place: mostly a non-leaf or a view."""
        def ok(t):
            return t.is_floating_point() and t.numel() <= MAX_NUMEL
        def writable(t):         # what PyTorch lets you update under grad mode
            base = t._base if t._base is not None else t
            try:
                return t.grad_fn is not None or not base.requires_grad
            except RuntimeError:     # a split's output whose base changed: PyTorch refuses it
                return False
        return self.pick(lambda t: ok(t) and writable(t)) if self.chance(0.95) else self.pick(ok)

    def shape_of(self, numel, dims=None):
        """A random shape with ``numel`` elements (one side may be -1)."""
        dims = self.int(0, 3) if dims is None else dims
        if numel == 0:
            sides = [self.choice([0, 1, 2]) for _ in range(max(dims, 1))]
            sides[self.int(0, len(sides) - 1)] = 0
            return tuple(sides)
        sides, left = [], numel
        for _ in range(dims - 1):
            divisors = [d for d in range(1, left + 1) if left % d == 0]
            sides.append(self.choice(divisors))
            left //= sides[-1]
        if dims:
            sides.append(left)
        elif numel != 1:
            return (numel,)
        if sides and self.chance(0.3):
            sides[self.int(0, len(sides) - 1)] = -1
        return tuple(sides)

    def index(self, t):
        """An index expression for ``t[...]``: ints, slices with steps, None, ..., int lists or
        tensors, a boolean mask."""
        parts, d, ellipsis = [], 0, False
        n = t.dim()
        for _ in range(self.int(1, max(n, 1))):
            kind = self.choice(["int", "slice", "slice", "none", "ellipsis", "list", "tensor", "mask"])
            size = t.shape[d] if d < n else 0
            if kind == "none":
                parts.append("None")
                continue
            if kind == "ellipsis":
                if not ellipsis:
                    parts.append("...")
                    ellipsis, d = True, n            # the rest index from the end: keep it simple
                continue
            if d >= n:
                break
            if kind == "int":
                parts.append(str(self.int(-size, size) if size else 0))
            elif kind == "slice":
                start = self.choice(["", str(self.int(-size, size))])
                stop = self.choice(["", str(self.int(-size, size + 1))])
                step = self.choice(["", "", "2", "3"])
                parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
            elif kind == "list":
                parts.append(repr([self.int(-size, size - 1) for _ in range(self.int(1, 3))]) if size else "[0]")
            elif kind == "tensor":
                parts.append(self.index_leaf((self.int(0, 3),), size, negative=True))
            else:
                parts.append(self.leaf(t.shape[d:d + self.int(1, n - d)], "bool"))
                d = n
                continue
            d += 1
        return ", ".join(parts) if parts else "..."

    # running the shadow
    def overlaps(self, target, names):
        """Whether a variable of ``names`` shares memory with ``target`` (in PyTorch, before the step)."""
        t = self.env[target]
        ptr = t.untyped_storage().data_ptr()
        return t.numel() > 0 and any(n != target and isinstance(self.env.get(n), self.torch.Tensor)
                                     and self.env[n].untyped_storage().data_ptr() == ptr for n in names)

    def add(self, op, line, out, note=""):
        """Run ``line`` in PyTorch and add it as a step; False when it raised (the program ends)."""
        self.program.steps.append(Step(op, line, out, note))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(line, self.globals(), self.env)
        except Exception:
            return False
        if not isinstance(self.env.get(out), self.torch.Tensor) or self.env[out].numel() > 4 * MAX_NUMEL:
            return False
        return True

    def new(self):
        return f"v{len(self.program.steps)}"


# -- the op table ------------------------------------------------------------------------------
@dataclass
class Op:
    """One op: ``line`` is a template of the fields that ``args(g)`` draws (variable names and
    literals); an expression is assigned to a new variable, a statement (``stmt``) updates ``{a}``."""
    name: str
    line: str
    args: object                # Gen -> dict of template fields (strings), or None if not applicable
    stmt: bool = False
    discontinuous: bool = False  # a jump in its value: not applied to float32 values that may differ by ulps
    weight: int = 2             # how often it is drawn, relative to the others


def _unary(kinds="f"):
    return lambda g: dict(a=g.tensor(kinds))


def _binary(kinds="f", numbers=True):
    def args(g):
        a = g.tensor(kinds)
        return dict(a=a, b=g.operand(a, numbers=numbers))
    return args


def _ndim(lo, hi):
    """A float variable of ``lo``..``hi`` dims (any one, rarely)."""
    return lambda g: dict(a=g.pick(lambda t: t.is_floating_point() and lo <= t.dim() <= hi) or g.tensor())


def _number_left(g):
    a = g.tensor("f")
    return dict(a=a, n=repr(g.number()))


def _div_mode(g):
    return dict(_binary("fi")(g), mode=repr(g.choice(["trunc", "floor", None])))


def _alpha(g):
    return dict(_binary("fi")(g), alpha=repr(g.choice([2, -1, 0.5])))


def _clamp(g):
    a = g.tensor("f")
    bound = lambda: g.choice(["None", repr(g.number()), g.operand(a, numbers=False)])
    lo, hi = bound(), bound()
    if lo == hi == "None":
        lo = "-0.5"
    return dict(a=a, lo=lo, hi=hi)


def _where(g):
    a = g.tensor("f")
    c = g.pick(lambda t: t.dtype == g.torch.bool) or g.leaf(g.bshape(g.env[a].shape), "bool")
    return dict(c=c, a=a, b=g.operand(a))


def _bools(g):
    c = g.tensor("b")
    return dict(c=c, d=g.pick(lambda t: t.dtype == g.torch.bool and t.shape == g.env[c].shape) or c)


def _compare(g):
    return dict(_binary("fi")(g), cmp=g.choice(["<", "<=", ">", ">=", "==", "!="]))


def _reduce_dims(empty=True):
    def args(g):
        a = g.tensor("f")
        return dict(a=a, dims=repr(g.dims(g.env[a], empty)), kd=repr(g.chance(0.4)))
    return args


def _reduce_dim(g):
    a = g.tensor("f")
    return dict(a=a, d=g.dim(g.env[a]), kd=repr(g.chance(0.4)), i=g.int(0, 1))


def _dim(g):
    a = g.tensor("f")
    return dict(a=a, d=g.dim(g.env[a]))


def _sum_to_size(g):
    a = g.tensor("f")
    shape = g.bshape(g.env[a].shape, grow=False)
    return dict(a=a, shape=repr(shape))


def _matmul_b_shape(g, sa):
    """A shape for the right operand of ``matmul`` with a left operand of shape ``sa``."""
    k = sa[-1] if g.chance(0.97) else sa[-1] + 1
    m = g.choice([1, 2, 3])
    if len(sa) == 1:
        return g.choice([(k,), (k, m), (2, k, m)])
    return g.choice([(k,), (k, m), (*sa[:-2], k, m), (1, k, m)])


def _matmul(ndim_a=None, b_shape=_matmul_b_shape):
    def args(g):
        pred = lambda t: t.is_floating_point() and (t.dim() >= 1 if ndim_a is None else t.dim() == ndim_a)
        a = g.pick(pred) or g.leaf([g.choice([1, 2, 3, 0]) for _ in range(ndim_a or g.int(1, 3))])
        sb = b_shape(g, tuple(g.env[a].shape))
        b = g.pick(lambda t: t.is_floating_point() and tuple(t.shape) == sb) or g.leaf(sb)
        return dict(a=a, b=b)
    return args


def _addmm(g):
    ab = _matmul(2, lambda g, sa: (sa[1], g.choice([1, 2, 3])))(g)
    n, m = g.env[ab["a"]].shape[0], g.env[ab["b"]].shape[1]
    return dict(ab, c=g.leaf(g.bshape((n, m), grow=False)))


def _view(g):
    a = g.tensor("f")
    return dict(a=a, shape=repr(g.shape_of(g.env[a].numel())))


def _flatten(g):
    a = g.tensor("f")
    t = g.env[a]
    s = g.dim(t)
    return dict(a=a, s=s, e=g.choice([-1, s, g.dim(t)]))


def _unflatten(g):
    a = g.tensor("f")
    t = g.env[a]
    if t.dim() == 0:
        return None
    d = g.dim(t, bad=0)
    return dict(a=a, d=d, sizes=repr(g.shape_of(t.shape[d], g.int(1, 2))))


def _two_dims(g):
    a = g.tensor("f")
    return dict(a=a, d0=g.dim(g.env[a]), d1=g.dim(g.env[a]))


def _permute(g):
    a = g.tensor("f")
    n = g.env[a].dim()
    return dict(a=a, perm=repr(tuple(g.draw(st.permutations(range(n))))))


def _unsqueeze(g):
    a = g.tensor("f")
    n = g.env[a].dim()
    return dict(a=a, d=g.int(-n - 1, n))


def _expand(g):
    a = g.tensor("f")
    shape = tuple(-1 if s != 1 and g.chance(0.3) else (g.choice([1, 2, 3]) if s == 1 else s)
                  for s in g.env[a].shape)
    return dict(a=a, shape=repr((g.choice([2, 3]),) * g.int(0, 1) + shape))


def _narrow(g):
    a = g.tensor("f")
    t = g.env[a]
    if t.dim() == 0:
        return None
    d = g.dim(t, bad=0)
    start = g.int(0, t.shape[d])
    return dict(a=a, d=d, start=start, length=g.int(0, t.shape[d] - start))


def _split(g):
    a = g.tensor("f")
    t = g.env[a]
    if t.dim() == 0:
        return None
    d = g.dim(t, bad=0)
    return dict(a=a, d=d, n=g.int(1, 3), i=g.int(0, max(t.shape[d] - 1, 0)) // 2)


def _unbind(g):
    a = g.tensor("f")
    t = g.env[a]
    if t.dim() == 0 or 0 in t.shape:
        return None
    d = g.dim(t, bad=0)
    return dict(a=a, d=d, i=g.int(0, t.shape[d] - 1))


def _movedim(g):
    a = g.tensor("f")
    return dict(a=a, s=g.dim(g.env[a]), d=g.dim(g.env[a]))


def _cat(g):
    a = g.tensor("f")
    t = g.env[a]
    d = g.dim(t)
    shape = list(t.shape)
    if shape and -len(shape) <= d < len(shape):
        shape[d] = g.choice([0, 1, 2])
    b = g.pick(lambda o: o.is_floating_point() and list(o.shape) == shape) or g.leaf(shape)
    return dict(a=a, b=b, d=d)


def _stack(g):
    a = g.tensor("f")
    t = g.env[a]
    b = g.pick(lambda o: o.is_floating_point() and o.shape == t.shape) or g.leaf(t.shape)
    return dict(a=a, b=b, d=g.int(-t.dim() - 1, t.dim()))


def _flip(g):
    a = g.tensor("f")
    d = g.dims(g.env[a])
    return dict(a=a, dims=repr(d if isinstance(d, tuple) else (d,)))


def _repeat(g):
    a = g.tensor("f")
    return dict(a=a, reps=repr(tuple(g.choice([1, 2]) for _ in range(g.env[a].dim() + g.int(0, 1)))))


def _getitem(g):
    a = g.tensor("f")
    return dict(a=a, idx=g.index(g.env[a]))


def _index_select(g):
    a = g.tensor("f")
    t = g.env[a]
    d = g.dim(t)
    size = t.shape[d] if -t.dim() <= d < t.dim() else 1
    return dict(a=a, d=d, idx=g.index_leaf((g.int(0, 4),), size))


def _gather_index(g, t, d):
    """An index for ``gather``/``scatter`` along ``d``: same ndim, no side larger than ``t``'s."""
    size = t.shape[d] if -t.dim() <= d < t.dim() else 1
    shape = tuple(g.int(0, s) if s else 0 for s in t.shape)
    return g.index_leaf(shape, size)


def _gather(g):
    a = g.tensor("f")
    d = g.dim(g.env[a])
    return dict(a=a, d=d, idx=_gather_index(g, g.env[a], d))


def _scatter(g):
    a = g.tensor("f")
    t = g.env[a]
    d = g.dim(t)
    idx = _gather_index(g, t, d)
    src = repr(g.number()) if g.chance(0.3) else g.leaf(g.env[idx].shape if g.chance(0.8) else t.shape)
    return dict(a=a, d=d, idx=idx, src=src)


def _take(g):
    a = g.tensor("f")
    n = g.env[a].numel()
    if n == 0 and g.chance(0.8):
        return None
    return dict(a=a, idx=g.index_leaf(g.shape(2), n, negative=True))


def _mask(g):
    a = g.tensor("f")
    shape = g.bshape(g.env[a].shape, grow=False)
    m = g.pick(lambda t: t.dtype == g.torch.bool and tuple(t.shape) == shape) or g.leaf(shape, "bool")
    return dict(a=a, m=m, v=g.choice([repr(g.number()), g.leaf((), requires_grad=False)]))


def _index_put(g):
    a = g.tensor("f")
    t = g.env[a]
    if t.dim() == 0:
        return None
    idx = g.index_leaf((g.int(0, 3),), t.shape[0], negative=True)
    v = g.leaf(g.bshape((g.env[idx].shape[0], *t.shape[1:]), grow=False))
    return dict(a=a, idx=idx, v=v, acc=repr(g.chance(0.5)))


# in place: the target is drawn by Gen.target (mostly a non-leaf or a view)
def _inplace(operand=False):
    def args(g):
        a = g.target()
        if a is None:
            return None
        return dict(a=a, b=g.operand(a, grow=False)) if operand else dict(a=a)
    return args


def _index_update(g):
    """An in-place change of an int tensor (an index already used by gather, scatter, ...), through
    the tensor (PyTorch's version check must catch it) or through ``.data`` (nothing can: the
    backward must check the index)."""
    i = g.pick(lambda t: t.dtype == g.torch.int64)
    return i and dict(i=i, k=g.choice([1, -1, 2, 100]))


def _inplace_clamp(g):
    a = g.target()
    return a and dict(a=a, lo=repr(g.number()), hi=g.choice(["None", "1.5"]))


def _fill(g):
    a = g.target()
    return a and dict(a=a, v=repr(g.number()))


def _setitem(g):
    a = g.target()
    if a is None:
        return None
    idx = g.index(g.env[a])
    try:
        shape = eval(f"{a}[{idx}]", g.globals(), g.env).shape
    except Exception:
        shape = ()
    v = g.choice([repr(g.number()), g.leaf(g.bshape(shape, grow=False), requires_grad=g.chance(0.5))])
    return dict(a=a, idx=idx, v=v)


def _inplace_mask(g):
    d = _mask(g)
    a = g.target()
    return a and dict(d, a=a, m=g.leaf(g.env[a].shape, "bool"))


def _inplace_scatter(g):
    a = g.target()
    if a is None:
        return None
    t = g.env[a]
    d = g.dim(t)
    idx = _gather_index(g, t, d)
    return dict(a=a, d=d, idx=idx, src=g.leaf(g.env[idx].shape))


def _inplace_index_put(g):
    a = g.target()
    if a is None or g.env[a].dim() == 0:
        return None
    t = g.env[a]
    idx = g.index_leaf((g.int(0, 3),), t.shape[0], negative=True)
    v = g.leaf(g.bshape((g.env[idx].shape[0], *t.shape[1:]), grow=False))
    return dict(a=a, idx=idx, v=v, acc=repr(g.chance(0.5)))


UNARY = "exp log sqrt abs sin cos tanh sigmoid relu square neg".split()
INPLACE_UNARY = "exp_ log_ sqrt_ abs_ sin_ cos_ tanh_ sigmoid_ relu_ neg_ zero_".split()
INPLACE_BINARY = "add_ sub_ mul_ div_ pow_ copy_".split()

OPS = [
    # arithmetic: tensor with tensor (broadcast) or number, both sides
    Op("add", "{a} + {b}", _binary("fi")),
    Op("radd", "{n} + {a}", _number_left),
    Op("add_alpha", "torch.add({a}, {b}, alpha={alpha})", _alpha),
    Op("sub", "{a} - {b}", _binary("fi")),
    Op("rsub", "{n} - {a}", _number_left),
    Op("mul", "{a} * {b}", _binary("fi")),
    Op("rmul", "{n} * {a}", _number_left),
    Op("div", "{a} / {b}", _binary("fi")),
    Op("rdiv", "{n} / {a}", _number_left),
    Op("div_mode", "torch.div({a}, {b}, rounding_mode={mode})", _div_mode, discontinuous=True),
    Op("floordiv", "{a} // {b}", _binary("fi"), discontinuous=True),
    Op("remainder", "{a} % {b}", _binary("fi"), discontinuous=True),
    Op("pow", "{a} ** {b}", _binary("fi")),
    Op("rpow", "{n} ** {a}", _number_left),
    Op("sign", "{a}.sign()", _unary(), discontinuous=True),
    *(Op(f, f"{{a}}.{f}()", _unary()) for f in UNARY),
    Op("torch_exp", "torch.exp({a})", _unary()),
    Op("neg_op", "-{a}", _unary("fi")),
    Op("clamp", "{a}.clamp({lo}, {hi})", _clamp),
    Op("maximum", "torch.maximum({a}, {b})", _binary(numbers=False)),
    Op("minimum", "torch.minimum({a}, {b})", _binary(numbers=False)),
    Op("where", "torch.where({c}, {a}, {b})", _where),
    # comparisons and logic (bool results)
    Op("compare", "{a} {cmp} {b}", _compare, discontinuous=True),
    Op("logical", "torch.logical_and({c}, {d})", _bools),
    Op("logical_or", "torch.logical_or({c}, torch.logical_not({d}))", _bools),
    Op("bitwise", "({c} ^ {d}) | ~{c}", _bools),
    # dtype conversions
    Op("double", "{a}.double()", _unary("fib")),
    Op("float", "{a}.float()", _unary("fib")),
    Op("long", "{a}.long()", _unary("fb"), discontinuous=True),
    Op("to_bool", "{a}.bool()", _unary("fi"), discontinuous=True),
    # reductions
    Op("sum", "{a}.sum()", _unary("fi")),
    Op("sum_dim", "{a}.sum({dims}, keepdim={kd})", _reduce_dims()),
    Op("mean", "{a}.mean()", _unary()),
    Op("mean_dim", "{a}.mean({dims}, keepdim={kd})", _reduce_dims()),
    Op("prod", "{a}.prod()", _unary()),
    Op("prod_dim", "{a}.prod({d}, keepdim={kd})", _reduce_dim),
    Op("amax", "{a}.amax({dims}, keepdim={kd})", _reduce_dims()),
    Op("amin", "{a}.amin({dims}, keepdim={kd})", _reduce_dims()),
    Op("max", "{a}.max()", _unary()),
    Op("min", "torch.min({a})", _unary()),
    Op("max_dim", "{a}.max({d}, keepdim={kd})[{i}]", _reduce_dim, discontinuous=True),
    Op("min_dim", "{a}.min({d}, keepdim={kd})[{i}]", _reduce_dim, discontinuous=True),
    Op("argmax", "{a}.argmax({d}, keepdim={kd})", _reduce_dim, discontinuous=True),
    Op("argmin", "{a}.argmin()", _unary(), discontinuous=True),
    Op("var", "{a}.var({dims}, keepdim={kd})", _reduce_dims(empty=False)),
    Op("std", "{a}.std()", _unary()),
    Op("var_biased", "{a}.var({dims}, correction=0)", _reduce_dims(empty=False)),
    Op("logsumexp", "{a}.logsumexp({dims}, keepdim={kd})", _reduce_dims(empty=False)),
    Op("softmax", "{a}.softmax({d})", _dim),
    Op("log_softmax", "torch.log_softmax({a}, {d})", _dim),
    Op("sum_to_size", "{a}.sum_to_size({shape})", _sum_to_size),
    # linear algebra
    Op("matmul", "{a} @ {b}", _matmul()),
    Op("mm", "torch.mm({a}, {b})", _matmul(2, lambda g, sa: (sa[1], g.choice([1, 2, 3])))),
    Op("addmm", "torch.addmm({c}, {a}, {b})", _addmm),
    Op("bmm", "torch.bmm({a}, {b})", _matmul(3, lambda g, sa: (sa[0], sa[2], g.choice([1, 2, 3])))),
    Op("mv", "torch.mv({a}, {b})", _matmul(2, lambda g, sa: (sa[1],))),
    Op("dot", "torch.dot({a}, {b})", _matmul(1, lambda g, sa: sa)),
    Op("outer", "torch.outer({a}, {b})", _matmul(1, lambda g, sa: (g.choice([0, 1, 2, 3]),))),
    # views and shapes
    Op("view", "{a}.view({shape})", _view),
    Op("reshape", "{a}.reshape({shape})", _view),
    Op("flatten", "{a}.flatten({s}, {e})", _flatten),
    Op("unflatten", "{a}.unflatten({d}, {sizes})", _unflatten),
    Op("transpose", "{a}.transpose({d0}, {d1})", _two_dims),
    Op("swapaxes", "torch.swapaxes({a}, {d0}, {d1})", _two_dims),
    Op("permute", "{a}.permute({perm})", _permute),
    Op("t", "{a}.t()", _ndim(0, 2)),
    Op("mT", "{a}.mT", _ndim(2, 4)),
    Op("squeeze", "{a}.squeeze()", _unary()),
    Op("squeeze_dim", "{a}.squeeze({d})", _dim),
    Op("unsqueeze", "{a}.unsqueeze({d})", _unsqueeze),
    Op("expand", "{a}.expand({shape})", _expand),
    Op("broadcast_to", "torch.broadcast_to({a}, {shape})", _expand),
    Op("narrow", "{a}.narrow({d}, {start}, {length})", _narrow),
    Op("split", "{a}.split({n}, {d})[{i}]", _split),
    Op("chunk", "{a}.chunk({n}, {d})[{i}]", _split),
    Op("unbind", "{a}.unbind({d})[{i}]", _unbind),
    Op("select", "{a}.select({d}, {i})", _unbind),
    Op("movedim", "{a}.movedim({s}, {d})", _movedim),
    Op("contiguous", "{a}.contiguous()", _unary()),
    Op("cat", "torch.cat([{a}, {b}], {d})", _cat),
    Op("stack", "torch.stack([{a}, {b}], {d})", _stack),
    Op("flip", "{a}.flip({dims})", _flip),
    Op("repeat", "{a}.repeat({reps})", _repeat),
    Op("clone", "{a}.clone()", _unary()),
    # indexing
    Op("getitem", "{a}[{idx}]", _getitem),
    Op("getitem2", "{a}[{idx}]", _getitem),
    Op("index_select", "{a}.index_select({d}, {idx})", _index_select),
    Op("gather", "{a}.gather({d}, {idx})", _gather),
    Op("scatter", "{a}.scatter({d}, {idx}, {src})", _scatter),
    Op("scatter_add", "{a}.scatter_add({d}, {idx}, {src})", _inplace_scatter),
    Op("take", "{a}.take({idx})", _take),
    Op("masked_fill", "{a}.masked_fill({m}, {v})", _mask),
    Op("masked_select", "{a}.masked_select({m})", _mask),
    Op("index_put", "{a}.index_put(({idx},), {v}, accumulate={acc})", _index_put),
    # in place, on non-leaves and on views
    *(Op(f, f"{{a}}.{f}()", _inplace()) for f in INPLACE_UNARY),
    *(Op(f, f"{{a}}.{f}({{b}})", _inplace(operand=True)) for f in INPLACE_BINARY),
    Op("clamp_", "{a}.clamp_({lo}, {hi})", _inplace_clamp),
    Op("index_add_", "{i}.add_({k})", _index_update),
    Op("index_data", "{i}.data.add_({k})", _index_update, weight=1),
    Op("fill_", "{a}.fill_({v})", _fill),
    Op("iadd", "{a} += {b}", _inplace(operand=True), stmt=True),
    Op("isub", "{a} -= {b}", _inplace(operand=True), stmt=True),
    Op("imul", "{a} *= {b}", _inplace(operand=True), stmt=True),
    Op("idiv", "{a} /= {b}", _inplace(operand=True), stmt=True),
    Op("setitem", "{a}[{idx}] = {v}", _setitem, stmt=True),
    Op("setitem2", "{a}[{idx}] = {v}", _setitem, stmt=True),
    Op("masked_fill_", "{a}.masked_fill_({m}, {v})", _inplace_mask),
    Op("scatter_", "{a}.scatter_({d}, {idx}, {src})", _inplace_scatter),
    Op("scatter_add_", "{a}.scatter_add_({d}, {idx}, {src})", _inplace_scatter),
    Op("index_put_", "{a}.index_put_(({idx},), {v}, accumulate={acc})", _inplace_index_put),
]
for op in OPS:
    if op.stmt or op.name.endswith("_"):
        op.weight = 1
WEIGHTED = [op for op in OPS for _ in range(op.weight)]
INPLACE = {op.name for op in OPS if op.stmt or op.name.endswith("_")}
INEXACT = set(UNARY) - {"abs", "relu", "square", "neg"} | {
    "torch_exp", "pow", "rpow", "sum", "sum_dim", "mean", "mean_dim", "prod", "prod_dim", "var", "std",
    "var_biased", "logsumexp", "softmax", "log_softmax", "sum_to_size", "matmul", "mm", "addmm", "bmm", "mv",
    "dot", "outer", "scatter_add", "index_put", "div", "rdiv", "exp_", "log_", "sqrt_", "sin_", "cos_", "tanh_",
    "sigmoid_", "div_", "pow_", "idiv", "scatter_add_", "index_put_"}


@st.composite
def programs(draw, min_ops=3, max_ops=12):
    """A random program of ``min_ops``..``max_ops`` steps and its loss (a weighted sum of some
    of the variables that require grad, always including the last)."""
    import torch
    g = Gen(draw, torch)
    for _ in range(draw(st.integers(1, 2))):
        g.leaf(g.shape())
    for _ in range(draw(st.integers(min_ops, max_ops))):
        for _attempt in range(20):
            op = draw(st.sampled_from(WEIGHTED))
            fields = op.args(g)
            if fields is None:
                continue
            # in float32, ulp differences between libraries must not meet a jump (a comparison...)
            if g.float == "float32" and op.discontinuous and any(v in g.inexact for v in fields.values()):
                continue
            break
        else:
            continue
        out = fields.get("a") if op.stmt else g.new()
        line = op.line.format(**fields)
        note = "overlap" if op.name in INPLACE and "a" in fields and g.overlaps(fields["a"], fields.values()) else ""
        if not g.add(op.name, line if op.stmt else f"{out} = {line}", out, note):
            return g.program
        if op.name in INEXACT or any(v in g.inexact for v in fields.values() if isinstance(v, str)):
            g.inexact.add(out)
    names = [n for n, t in g.env.items() if t.requires_grad and t.is_floating_point() and n.startswith("v")]
    if names:
        chosen = [names[-1]] + [n for n in names[:-1] if draw(st.booleans())]
        for n in chosen:
            t = g.env[n]
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            w = rng.choice([-1.5, -1.0, -0.5, 0.5, 1.0, 2.0], t.shape)
            g.program.loss.append(Input("w" + n, tuple(t.shape), str(t.dtype)[6:], _nested(w), False))
    return g.program


# -- running -----------------------------------------------------------------------------------
@dataclass
class Snap:
    """What a variable holds: values, dtype, shape, whether it requires grad, its grad_fn's name."""
    value: np.ndarray
    dtype: str
    requires_grad: bool
    grad_fn: str


@dataclass
class Raised:
    type: str
    message: str


@dataclass
class Outcome:
    steps: list                                    # a Snap per step, or a Raised for the last
    final: dict = field(default_factory=dict)      # name -> Snap after the last step
    backward: object = None                        # None, a Raised, or {input name: grad Snap or None}


def snap(t):
    if t is None:
        return None
    try:
        fn = t.grad_fn
        fn = None if fn is None else fn.name()
    except RuntimeError as e:          # PyTorch: a view of a multi-output op whose base changed
        fn = f"(raises {type(e).__name__})"
    return Snap(np.array(t.detach().numpy(), copy=True), str(t.dtype), bool(t.requires_grad), fn)


def run(lib, program):
    """Run ``program`` with ``lib`` as ``torch``: every step's result, the final values, the
    leaves' gradients of the loss (or where it raised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _run(lib, program)


def _run(lib, program):
    env, scope = {}, {"torch": lib, "inf": math.inf, "nan": math.nan}
    for inp in program.inputs:
        exec(inp.line(), scope, env)
    out = Outcome([])
    for step in program.steps:
        try:
            exec(step.line, scope, env)
        except Exception as e:                                   # noqa: BLE001 (compared)
            out.steps.append(Raised(type(e).__name__, str(e)))
            break
        out.steps.append(snap(env[step.out]))
    out.final = {n: snap(t) for n, t in env.items() if isinstance(t, lib.Tensor)}
    if isinstance(out.steps[-1:] and out.steps[-1], Raised) or not program.loss:
        return out
    try:
        for line in program.loss_lines():
            exec(line, scope, env)
    except Exception as e:                                       # noqa: BLE001
        out.backward = Raised(type(e).__name__, str(e))
        return out
    out.backward = {i.name: snap(env[i.name].grad) for i in program.inputs if i.requires_grad}
    return out


class Crash(Exception):
    """The nbgrad worker died (a segfault) or hung on a program."""


def _serve(conn):
    """The worker's loop: run programs in nbgrad, send back outcomes (or a Python traceback)."""
    import nbgrad
    while True:
        program = conn.recv()
        try:
            conn.send(run(nbgrad, program))
        except BaseException:                                    # noqa: BLE001 (a harness error)
            conn.send(traceback.format_exc())


class Worker:
    """nbgrad in a child process, restarted after a crash."""

    def __init__(self, timeout=300):
        self.timeout, self.process = timeout, None

    def start(self):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def run(self, program):
        if self.process is None or not self.process.is_alive():
            self.start()
        self.conn.send(program)
        if self.conn.poll(self.timeout):
            try:
                out = self.conn.recv()
            except EOFError:
                out = None
        else:
            self.process.kill()
            out = f"no answer within {self.timeout} s"
        if out is None or isinstance(out, str) and not out.startswith("Traceback"):
            self.process.join(5)
            code = self.process.exitcode
            self.process = None
            raise Crash(out or f"the nbgrad worker died (exit code {code})")
        if isinstance(out, str):
            raise RuntimeError(out)
        return out

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None


# -- comparing ---------------------------------------------------------------------------------
@dataclass
class Mismatch:
    kind: str       # raises, error_type, message, shape, dtype, value, requires_grad, grad_fn, crash
    where: str      # "step 3 (v3, add_)", "final v2", "grad x0", "backward"
    detail: str
    op: str = ""    # the op of the step where it was seen (the last step for final/grad)


TOLERANCE = {"float32": (2e-4, 2e-5), "float64": (1e-9, 1e-12)}   # rtol, atol (x magnitude)


def _tolerance(program):
    """float32's tolerance for every value of a program that has float32 values anywhere (a float64
    result may have gone through float32 on its way), float64's otherwise."""
    f32 = any(i.dtype == "float32" for i in program.inputs) or any(".float()" in s.line for s in program.steps)
    return TOLERANCE["float32" if f32 else "float64"]


def _values_differ(a, b, tol):
    """Why arrays ``a`` (nbgrad) and ``b`` (PyTorch) differ, or None. NaNs must sit in the same
    places, infinities must agree, finite values must agree within the dtype's tolerance, scaled
    by the largest finite magnitude in ``b`` (sums of mixed signs lose digits in both libraries)."""
    if a.dtype.kind not in "fc":
        return None if np.array_equal(a, b) else "values differ"
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return "NaN where PyTorch has a number" if (np.isnan(a) & ~np.isnan(b)).any() else \
            "a number where PyTorch has NaN"
    fin = np.isfinite(b)
    if not np.array_equal(fin, np.isfinite(a)) or not np.array_equal(np.where(fin, 0, a), np.where(fin, 0, b),
                                                                      equal_nan=True):
        return "infinities differ"
    rtol, atol = tol if b.dtype == np.float64 else TOLERANCE["float32"]
    scale = np.abs(b[fin]).max() if fin.any() else 0.0
    if not np.allclose(a[fin], b[fin], rtol=rtol, atol=atol * max(1.0, scale)):
        worst = np.argmax(np.abs(a[fin] - b[fin]))
        return f"values differ (e.g. {a[fin][worst]!r} vs {b[fin][worst]!r})"
    return None


def _same_message(a, b):
    return a.replace("nbgrad.", "torch.") == b


def compare_snaps(where, got, ref, op="", grad_fn=True, tol=TOLERANCE["float64"]):
    if (got is None) != (ref is None):
        return [Mismatch("none", where, f"nbgrad {got is not None and 'a tensor' or None}, "
                                        f"PyTorch {ref is not None and 'a tensor' or None}", op)]
    if got is None:
        return []
    if got.value.shape != ref.value.shape:
        return [Mismatch("shape", where, f"nbgrad {list(got.value.shape)}, PyTorch {list(ref.value.shape)}", op)]
    if got.dtype != ref.dtype:
        return [Mismatch("dtype", where, f"nbgrad {got.dtype}, PyTorch {ref.dtype}", op)]
    why = _values_differ(got.value, ref.value, tol)
    if why:
        return [Mismatch("value", where, f"{why}\n  nbgrad:  {_short(got.value)}\n  PyTorch: {_short(ref.value)}", op)]
    if got.requires_grad != ref.requires_grad:
        return [Mismatch("requires_grad", where, f"nbgrad {got.requires_grad}, PyTorch {ref.requires_grad}", op)]
    if grad_fn and got.grad_fn != ref.grad_fn:
        return [Mismatch("grad_fn", where, f"nbgrad {got.grad_fn}, PyTorch {ref.grad_fn}", op)]
    return []


def _short(a):
    return np.array2string(a, precision=6, threshold=40).replace("\n", " ")


def _compare_raised(where, got, ref, op):
    if not isinstance(got, Raised) or not isinstance(ref, Raised):
        r, n = (ref if isinstance(ref, Raised) else None), (got if isinstance(got, Raised) else None)
        return [Mismatch("raises", where, f"nbgrad {_said(n)}; PyTorch {_said(r)}", op)]
    if got.type != ref.type:
        return [Mismatch("error_type", where, f"nbgrad {_said(got)}; PyTorch {_said(ref)}", op)]
    if not _same_message(got.message, ref.message):
        return [Mismatch("message", where, f"nbgrad {_said(got)}; PyTorch {_said(ref)}", op)]
    return []


def _said(r):
    return "raised nothing" if r is None else f"raised {r.type}: {r.message[:300]}"


def compare(program, got, ref):
    """The mismatches between nbgrad's outcome ``got`` and PyTorch's ``ref``: the first step
    that differs; if none, the final values; then the backward pass."""
    for k, (g, r) in enumerate(zip(got.steps, ref.steps)):
        step = program.steps[k]
        where = f"step {k} ({step.out}, {step.op})"
        if isinstance(g, Raised) or isinstance(r, Raised):
            found = _compare_raised(where, g, r, step.op)
            if found and found[0].kind != "message" or step.op in PARTIAL_WRITES:
                return found
            return found + _compare_finals(program, got, ref, step.op, after_error=True)
        found = compare_snaps(where, g, r, step.op, tol=_tolerance(program))
        if found:
            return found
    if len(got.steps) != len(ref.steps):
        return [Mismatch("harness", "steps", f"{len(got.steps)} vs {len(ref.steps)} steps")]
    last = program.steps[-1].op if program.steps else ""
    found = _compare_finals(program, got, ref, last)
    if isinstance(got.backward, Raised) or isinstance(ref.backward, Raised):
        return found + _compare_raised("backward", got.backward, ref.backward, last)
    if got.backward is not None:
        for name, r in ref.backward.items():
            found += compare_snaps(f"grad {name}", got.backward[name], r, last, grad_fn=False, tol=_tolerance(program))
    return found


# after a failed x[i] = v, PyTorch may have written part of x (README: nbgrad leaves it untouched)
PARTIAL_WRITES = {"setitem", "setitem2", "index_put_", "scatter_", "scatter_add_", "masked_fill_"}


def _compare_finals(program, got, ref, op, after_error=False):
    for name, r in ref.final.items():
        g = got.final.get(name)
        found = compare_snaps(f"final {name}" + (" (after the error)" if after_error else ""), g, r, op,
                              tol=_tolerance(program))
        if found:
            return found
    return []


# -- the allow-list of known differences -------------------------------------------------------
@dataclass
class Known:
    """A known class of mismatch. ``why`` says where it is documented or tracked; a mismatch
    belongs to it when its kind is one of ``kinds``, its op matches ``op``, its place matches
    ``where`` and its detail matches ``detail`` (regular expressions, searched), and the
    program uses one of the ops in ``uses`` (if given)."""
    why: str
    kinds: str                  # space-separated Mismatch kinds
    op: str = ""
    where: str = ""
    detail: str = ""
    uses: tuple = ()
    note: str = ""              # a step of the program must have this note

    def match(self, program, m):
        return (m.kind in self.kinds.split() and re.search(self.op, m.op) is not None
                and re.search(self.where, m.where) is not None and re.search(self.detail, m.detail) is not None
                and (not self.uses or any(s.op in self.uses for s in program.steps))
                and (not self.note or any(s.note == self.note for s in program.steps)))


# Each entry is a class of mismatch seen in long runs; remove it when its fix lands (a long run,
# `python tests/fuzz_programs.py 20000 SEED`, prints how many mismatches each entry explained).
NEW = "new (not in issue 7), found by this fuzzer"
KNOWN = [
    # documented in the README ("Where nbgrad differs from PyTorch")
    Known("README: overlapping in-place updates read from a copy; PyTorch refuses them", "raises",
          detail=r"^nbgrad raised nothing; PyTorch raised RuntimeError: unsupported operation: some elements of the "
                 r"input tensor and the written-to tensor refer to a single memory location"),
    Known("README: an in-place update that reads memory it writes (x *= x[:, 1], broadcast) reads a copy in "
          "nbgrad; PyTorch's result depends on its loop order", "value", where=r"^(step|final|grad)",
          note="overlap"),
    # PyTorch's own bugs and quirks: nothing for nbgrad to follow
    Known("PyTorch bug: clamp's backward fails when a tensor bound is larger than the input "
          "('output with shape [] doesn't match the broadcast shape [2]')", "raises message", where="backward",
          detail=r"PyTorch raised RuntimeError: output with shape \[[\d, ]*\] doesn't match the broadcast shape",
          uses=("clamp",)),
    Known("PyTorch bug: scatter's backward returns a gradient of the index's shape for a larger src",
          "raises message", where="backward", detail="ScatterBackward0 returned an invalid gradient"),
    Known("PyTorch quirk: bmm of an empty batch does not check the dtypes", "raises", op="^bmm$",
          detail=r"^nbgrad raised RuntimeError: expected scalar type \w+ but found \w+; PyTorch raised nothing"),
    Known("PyTorch quirk: index_select's out-of-range index along some dims is a RuntimeError 'INDICES element "
          "is out of DATA bounds' (elsewhere IndexError 'index out of range in self', as in nbgrad)", "error_type",
          op="index_select", detail=r"PyTorch raised RuntimeError: INDICES element is out of DATA bounds"),
    # issue 7: what is left of items whose main fix has landed
    Known("issue 7 item 2 (gradients fixed in c4da276): a view whose base changed in place gets the right "
          "history, but keeps its own grad_fn name; PyTorch's regenerated one is AsStridedBackward0", "grad_fn",
          detail=r"PyTorch AsStridedBackward0$"),
    Known("issue 7 item 6 (the edge of its fix): integer division of an empty tensor by 0 raises "
          "ZeroDivisionError (PyTorch: an empty result; it raises only when an element is divided)", "raises",
          op="^(div_mode|floordiv|remainder|div_|idiv)$", detail=r"^nbgrad raised RuntimeError: ZeroDivisionError"),
    Known("issue 7 item 1 (related; no out-of-bounds access): index_select's, take's and index_put's backward "
          "use the index as it was in the forward, so a change through .data is ignored; PyTorch reads the changed "
          "index (and raises 'out of bounds', or routes the gradient by the new index)", "raises value",
          where="^(backward|grad)",
          detail=r"^nbgrad raised nothing; PyTorch raised (RuntimeError|IndexError): (index -?\d+ is out of bounds|"
                 r"out of range: tried to access index|index out of range in self)|^values differ",
          uses=("index_data",)),
    Known("issue 7 item 4 (by design): a zero branch gives 0 even for an infinite incoming gradient: the "
          "exponent's gradient of 0 ** e under sqrt is 0 in nbgrad, NaN in PyTorch", "value", where="^grad",
          detail="^a number where PyTorch has NaN", uses=("pow", "rpow", "pow_")),
    Known("issue 7 item 7 (edge): the gradient of x ** 0.5 at x = -0.0 is +inf (PyTorch -inf, as sqrt's)",
          "value", where="^grad", detail="^infinities differ", uses=("pow", "pow_")),
    Known("issue 7 item 5 (edge): masked_fill_ and x[index_tensor] = v on an expanded view are refused; PyTorch "
          "refuses add_ and the like there, but not masked_fill_ and index_put_", "raises",
          op=r"^(masked_fill_|setitem\d?|index_put_)$",
          detail=r"^nbgrad raised RuntimeError: unsupported operation: more than one element"),
    # new classes, reported to the lead with their reproducers
    Known("issue 7 item 9 (its edge): an op keeps for backward a tensor that its gradient does not read "
          "(x % 3 keeps x; scatter_add keeps its index when src needs no gradient), so a later in-place change of "
          "it fails nbgrad's backward (PyTorch: fine)", "raises", where="backward",
          detail=r"^nbgrad raised RuntimeError: one of the variables needed for gradient computation.*"
                 r"PyTorch raised nothing$", uses=("remainder", "index_add_")),
    Known("README: elementwise results are C-contiguous where PyTorch keeps a permuted input's strides, so a "
          ".view() PyTorch refuses on them works in nbgrad (same values)", "raises", op="^view$",
          detail=r"^nbgrad raised nothing; PyTorch raised RuntimeError: view size is not compatible with input "
                 r"tensor's size and stride"),
    Known("README: elementwise results are C-contiguous where PyTorch keeps a permuted input's strides, so "
          "reshape/flatten of them is a view in nbgrad (ViewBackward0) and a copy or an alias in PyTorch "
          "(UnsafeViewBackward0, ReshapeAliasBackward0)", "grad_fn", op="^(reshape|reshape_as|flatten|view_as)$",
          detail=r"^nbgrad ViewBackward0, PyTorch (UnsafeViewBackward0|ReshapeAliasBackward0)$"),
    Known(NEW + ": sum_to_size's grad_fn differs (PyTorch ViewBackward0 where it only drops leading dims of "
          "size 1)", "grad_fn", where=r"^(step|final)", uses=("sum_to_size",)),
    Known(NEW + ": an in-place op keeps the old values it needs (it runs out of place on a copy), so a backward "
          "through y.exp_() followed by y.mul_(2) computes the right gradient where PyTorch raises 'modified by an "
          "inplace operation'", "raises", where="^backward$",
          detail=r"^nbgrad raised nothing; PyTorch raised RuntimeError: one of the variables needed for gradient "
                 r"computation has been modified by an inplace operation", uses=INPLACE),
    Known(NEW + ": a split/chunk/unbind output whose base changed in place: PyTorch cannot regenerate its "
          "grad_fn and refuses to use it; nbgrad goes on with the old one (right values)", "raises grad_fn message",
          detail=r"Output \d+ of \w+ is a view and its base or another view of its base has been modified|"
                 r"PyTorch \(raises RuntimeError\)$"),
    Known(NEW + ": a split/chunk/unbind output of a tensor that got a history later (x no grad; v = x.unbind(0)[2]; "
          "x.pow_(w) with w requiring grad): PyTorch's v requires grad (and refuses to give its grad_fn); nbgrad's "
          "does not", "requires_grad", detail=r"^nbgrad False, PyTorch True$", uses=("split", "chunk", "unbind")),
    Known(NEW + ": elementwise results of a transposed input are C-contiguous (PyTorch keeps the input's strides: "
          "x.t().neg().stride() is (1, 3)), so .contiguous() returns them as they are (PyTorch copies, "
          "CloneBackward0)", "grad_fn", op="^contiguous$", detail=r"PyTorch CloneBackward0$"),
    Known(NEW + ": a split/chunk output made where nothing required grad, updated in place with an operand "
          "that requires grad: PyTorch refuses ('A view was created in no_grad mode')", "raises",
          detail="^nbgrad raised nothing; PyTorch raised RuntimeError: A view was created in no_grad mode"),
    Known(NEW + ": the multi-output view error names nbgrad's node (Split where PyTorch's chunk says "
          "SplitWithSizes)", "message", detail=r"Output \d+ of (Split\w*|Unbind) is a view and is being"),
    Known(NEW + ": a view made before its base got a history (x no grad; v = x[0]; x.copy_(w) with w requiring "
          "grad): PyTorch treats v as a leaf that requires grad and refuses v.neg_(); nbgrad updates it", "raises",
          op=r"_$|^i(add|sub|mul|div)$|^setitem",
          detail=r"^nbgrad raised nothing; PyTorch raised RuntimeError: a leaf Variable that requires grad"),
    Known(NEW + ": movedim of a 0-d tensor raises IndexError", "raises", op="movedim",
          detail="list assignment index out of range"),
    Known(NEW + ": index_select of a 0-d tensor with other than one index raises ValueError or IndexError "
          "(PyTorch RuntimeError: 'Index to scalar can have only 1 value')", "error_type", op="index_select",
          detail=r"PyTorch raised RuntimeError: index_select\(\): Index to scalar can have only 1 value"),
    Known(NEW + ": 0-d .mT is the tensor itself in PyTorch; nbgrad raises", "raises", op="mT",
          detail="Got 0-D tensor"),
    Known(NEW + ": flatten of a 0-d tensor accepts any start/end dims", "raises", op="flatten",
          detail=r"^nbgrad raised nothing; PyTorch raised IndexError: Dimension out of range"),
    Known(NEW + ": copy_(number) is refused (PyTorch accepts a number)", "raises error_type", op="copy_",
          detail=r"argument 'src' must be Tensor, not"),
    Known(NEW + ": clamp with a tensor and a number as bounds is accepted (PyTorch: TypeError)", "raises error_type",
          op="clamp", detail=r"PyTorch raised TypeError: clamp\(\) received an invalid combination"),
    Known(NEW + ": add of int tensors with a float alpha is accepted (PyTorch refuses)", "raises",
          op="add_alpha", detail=r"For integral input tensors, argument alpha must not be a floating point"),
    # new: names and messages
    Known(NEW + ": grad_fn names differ (n / t MulBackward0, t % t RemainderBackward1, div rounding_mode "
          "DivBackward2, -=/sub_ SubBackward0, x // y torch::autograd::NotImplemented, 1-D @ 2-D SqueezeBackward4, "
          "clamp(number, 0-d tensor) ClampBackward1, t ** t PowBackward1); a version error names the node the same "
          "way ('output 0 of Pow1')", "grad_fn message",
          detail=r"nbgrad (DivBackward\d|RemainderBackward0|AddBackward0|NotImplemented|SqueezeBackward1|"
                 r"ClampBackward0|PowBackward0), PyTorch (MulBackward0|DivBackward2|RemainderBackward1|SubBackward0|"
                 r"SqueezeBackward4|ClampBackward1|PowBackward1|torch::autograd::NotImplemented)$|"
                 r"which is output 0 of (?P<node>\w+?)\d*, is at version (?P<v>\d+).*PyTorch raised .* which is output "
                 r"0 of (?P=node)\d*, is at version (?P=v)"),
    Known(NEW + ": copy_'s and x[i] = v's grad_fn: PyTorch's are torch::autograd::CopyBackwards (copy_, x[i] = "
          "number) and FillBackward3 (a 0-d tensor v, or x[:] that selects all of x)", "grad_fn",
          op="^(setitem|copy_)",
          detail=r"nbgrad (CopyBackwards|FillBackward\d|torch::autograd::CopySlices), "
                 r"PyTorch (FillBackward\d|torch::autograd::CopyBackwards|torch::autograd::CopySlices)$"),
    Known(NEW + ": matmul's grad_fn differs where PyTorch folds batch dims or squeezes 1-D operands "
          "(UnsafeViewBackward0 where PyTorch has TransposeBackward0, ...)", "grad_fn", op="^matmul$"),
    Known(NEW + ": the version error names another saved tensor or node than PyTorch's: none for an output "
          "saved by amax, amin, max, softmax, logsumexp (PyTorch: ', which is output 0 of Amax,'), View for a "
          "regenerated view (AsStrided), the first of several in-place updates (PyTorch: the last)", "message",
          where="backward", detail=r"^nbgrad raised RuntimeError: one of the variables needed for gradient "
                                   r"computation.*PyTorch raised RuntimeError: one of the variables needed"),
    Known(NEW + ": an in-place update of a split/chunk output of a leaf says 'a view of a leaf Variable' (PyTorch "
          "checks for multi-output views first)", "message",
          detail=r"^nbgrad raised RuntimeError: a view of a leaf Variable.*PyTorch raised RuntimeError: Output \d+ of "
                 r"\w+ is a view and is being modified inplace"),
    Known(NEW + ": the writability checks of in-place ops (leaf, view of a leaf, multi-output view made in "
          "no_grad mode) come after the argument checks (PyTorch checks them first)", "error_type message",
          detail=r"PyTorch raised RuntimeError: ((a view of )?a leaf Variable that requires grad|A view was created "
                 r"in no_grad mode)"),
    Known(NEW + ": an in-place update of an expanded view with an operand of the wrong shape reports the shape "
          "(PyTorch: the overlap error comes first)", "message",
          detail=r"PyTorch raised RuntimeError: unsupported operation: more than one element of the written-to"),
    Known(NEW + ": matmul's size error for 1-D @ N-D with a tensor that requires grad says 'Expected size for "
          "first two dimensions of batch2 tensor' (PyTorch: 'size mismatch, got input (6), mat (6x3), vec (2)')",
          "message", op="^matmul$", detail=r"Expected size for first two dimensions of batch2 tensor"),
    Known(NEW + ": masked_select's broadcast error swaps a and b", "message", op="masked_select",
          detail=r"must match the size of tensor b"),
    Known(NEW + ": torch.where's and clamp's broadcast errors name the tensors 'a' and 'c' (PyTorch: 'a' and "
          "'b') and another dimension (issue 7 item 9 fixed it for binary ops)", "message", op="^(where|clamp)$",
          detail=r"must match the size of tensor"),
    Known(NEW + ": dtype errors of addmm and matmul ('self and mat2 must have the same dtype, but got Double and "
          "Float', 'expected scalar type Double but found Float'; PyTorch: 'mat1 and mat2 ... Float and Double', "
          "'expected m1 and m2 to have the same dtype, but got: double != float')", "message",
          op="^(addmm|matmul|mm|bmm|mv|dot|outer)$", detail=r"dtype|scalar type"),
]


HITS = [0] * len(KNOWN)          # how many mismatches each entry explained (the survey prints them)


def explained_by(program, m):
    """The index of the first entry of ``KNOWN`` that explains mismatch ``m``, or None."""
    return next((k for k, known in enumerate(KNOWN) if known.match(program, m)), None)


def unexplained(program, mismatches):
    """The mismatches that no entry of ``KNOWN`` explains (and a count for those explained)."""
    left = []
    for m in mismatches:
        k = explained_by(program, m)
        if k is None:
            left.append(m)
        else:
            HITS[k] += 1
    return left


def check(program, worker, torch):
    """Run ``program`` in both libraries; the mismatches (a crash is one)."""
    ref = run(torch, program)
    try:
        got = worker.run(program)
    except Crash as e:
        return [Mismatch("crash", "worker", str(e), program.steps[-1].op if program.steps else "")]
    return compare(program, got, ref)


def report(program, mismatches):
    lines = ["nbgrad and PyTorch differ on this program:", ""]
    lines += [f"  {m.kind} at {m.where}: {m.detail}" for m in mismatches]
    lines += ["", "# PyTorch:", program.source("torch"), "", "# nbgrad: the same lines after", "import nbgrad as torch"]
    return "\n".join(lines)


def minimize(program, mismatch, worker, torch):
    """A shorter program with an unexplained mismatch of the same kind and detail: steps, loss
    terms and inputs are dropped one at a time while the mismatch stays (greedy, like a shrinker)."""
    import copy

    def key(m):
        return m.kind, m.where.split(" ")[0], m.detail.split(";")[0][:40]

    def same(p):
        try:
            found = check(p, worker, torch)
        except Exception:                                        # noqa: BLE001
            return False
        return any(key(m) == key(mismatch) and explained_by(p, m) is None for m in found)

    changed = True
    while changed:
        changed = False
        for attr in ("steps", "loss", "inputs"):
            k = len(getattr(program, attr)) - 1
            while k >= 0:
                trial = copy.deepcopy(program)
                del getattr(trial, attr)[k]
                if same(trial):
                    program, changed = trial, True
                k -= 1
    return program


# -- a long local run: every distinct class, with its shortest program -----------------------
def survey(n, seed=0, max_ops=12, show_known=False):
    """Run ``n`` programs; print each class (kind, op, first words of the detail) with its count
    and its shortest program."""
    import torch
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    worker, classes = Worker(), {}

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(programs(max_ops=max_ops))
    def one(program):
        try:
            found = check(program, worker, torch)
        except Exception as e:                                   # noqa: BLE001 (a harness error: listed)
            found = [Mismatch("harness", "", f"{type(e).__name__}: {e}")]
        if not show_known:
            found = unexplained(program, found)
        for m in found:
            key = (m.kind, m.op, re.sub(r"-?\d[\d.e+-]*|\(.*", "#", m.detail.split("\n")[0])[:80])
            count, best = classes.get(key, (0, None))
            if best is None or len(program.steps) < len(best[0].steps):
                best = (program, m)
            classes[key] = (count + 1, best)

    try:
        one()
        for key, (count, (program, m)) in sorted(classes.items(), key=lambda kv: -kv[1][0]):
            print(f"=== {count} x {key}")
            program = minimize(program, m, worker, torch) if m.kind != "crash" else program
            found = [f for f in check(program, worker, torch) if explained_by(program, f) is None]
            print(report(program, found or [m]))
            print(flush=True)
    finally:
        worker.close()
    print("=== known differences seen (mismatches explained by each KNOWN entry):")
    for hits, known in zip(HITS, KNOWN):
        print(f"{hits:6d}  {known.why}")
    return classes


if __name__ == "__main__":
    survey(int(sys.argv[1]) if len(sys.argv) > 1 else 200, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
