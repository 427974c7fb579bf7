"""``einsum``: a contraction written as permutes, reshapes, diagonals, sums and batched
matrix products, so it is as differentiable (to any order) as those ops are.

Operands are combined left to right. Before each product, a subscript that no later
operand and not the output needs is summed away; the two operands are then laid out as
(batch, kept, contracted) and (batch, contracted, kept) and multiplied with ``matmul``.
A subscript repeated in one operand takes that operand's diagonal.
"""
import string

from ..tensor import Tensor
from .linalg import matmul
from .reduction import sum as _sum
from .shape import permute, reshape

__all__ = ["einsum"]

_LETTERS = set(string.ascii_letters)


def _parse(equation, operands):
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) < len(operands):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation")
    if len(terms) > len(operands):
        raise RuntimeError("einsum(): fewer operands were provided than specified in the equation")
    ell = max([op.ndim - len(t.replace("...", "")) for t, op in zip(terms, operands) if "..." in t] or [0])
    ell_labels = [chr(0x100 + i) for i in range(ell)]
    labels = []
    for i, (t, op) in enumerate(zip(terms, operands)):
        for c in t.replace("...", ""):
            if c not in _LETTERS:
                raise RuntimeError(f"einsum(): invalid subscript given at index {equation.index(c)} in the equation "
                                 f"string, subscripts must be in [a-zA-Z]")
        if "..." in t:
            head, _, tail = t.partition("...")
            n = op.ndim - len(head) - len(tail)
            if n < 0:
                raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(head) + len(tail)}) "
                                   f"is more than the number of dimensions ({op.ndim}) for operand {i}")
            labels.append(list(head) + ell_labels[ell - n:] + list(tail))
        else:
            if len(t) != op.ndim:
                raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(t)}) does not match "
                                   f"the number of dimensions ({op.ndim}) for operand {i} and no ellipsis was given")
            labels.append(list(t))
    if arrow:
        head, dots, tail = rhs.partition("...")
        out = list(head) + (ell_labels if dots else []) + list(tail)
        for c in out:
            if c in ell_labels:
                continue
            if c not in _LETTERS:
                raise RuntimeError(f"einsum(): invalid subscript given at index {equation.index(c)} in the equation "
                                 "string, subscripts must be in [a-zA-Z]")
            if out.count(c) > 1:
                raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
            if not any(c in ls for ls in labels):
                raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                                 "operand")
    else:
        counts = {}
        for ls in labels:
            for c in ls:
                counts[c] = counts.get(c, 0) + 1
        out = ell_labels + sorted(c for c, n in counts.items() if n == 1 and c not in ell_labels)
    return labels, out


def _take_diagonals(x, labels):
    """A subscript repeated within one operand: the diagonal of those dims (last dim)."""
    labels = list(labels)
    while True:
        repeated = next((c for c in labels if labels.count(c) > 1), None)
        if repeated is None:
            return x, labels
        d1 = labels.index(repeated)
        d2 = labels.index(repeated, d1 + 1)
        x = x.diagonal(0, d1, d2)
        labels = [c for i, c in enumerate(labels) if i not in (d1, d2)] + [repeated]


def _sum_unneeded(x, labels, needed):
    dims = [i for i, c in enumerate(labels) if c not in needed]
    if not dims:
        return x, labels
    return _sum(x, tuple(dims)), [c for c in labels if c in needed]


def _sizes(pairs):
    sizes = {}
    for i, (x, labels) in enumerate(pairs):
        for c, n in zip(labels, x.shape):
            if sizes.get(c, 1) == 1:
                sizes[c] = n
            elif n != 1 and n != sizes[c]:
                raise RuntimeError(f"einsum(): subscript {c} has size {n} for operand {i} which does not broadcast "
                                   f"with previously seen size {sizes[c]}")
    return sizes


def _product(a, la, b, lb, needed):
    """``a`` (subscripts ``la``) times ``b``, contracted over the shared subscripts not ``needed``."""
    sizes = _sizes(((a, la), (b, lb)))
    batch = [c for c in la if c in lb and c in needed]
    contract = [c for c in la if c in lb and c not in needed]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    a = permute(a, [la.index(c) for c in batch + left + contract])
    b = permute(b, [lb.index(c) for c in batch + contract + right])
    a = a.expand(*[sizes[c] for c in batch + left + contract])
    b = b.expand(*[sizes[c] for c in batch + contract + right])
    prod_ = lambda cs: _count(sizes[c] for c in cs)   # noqa: E731
    a3 = reshape(a, (prod_(batch), prod_(left), prod_(contract)))
    b3 = reshape(b, (prod_(batch), prod_(contract), prod_(right)))
    out = matmul(a3, b3)
    return reshape(out, tuple(sizes[c] for c in batch + left + right)), batch + left + right


def _count(ns):
    n = 1
    for m in ns:
        n *= m
    return n


def einsum(equation, *operands):
    """Sums of products of ``operands``' elements as the subscripts of ``equation`` say."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, op in enumerate(operands):
        if not isinstance(op, Tensor):
            raise TypeError(f"einsum(): argument 'operands' (position 2) must be tuple of Tensors, not "
                            f"{type(op).__name__}")
    labels, out = _parse(equation, operands)
    pairs = [_take_diagonals(x, ls) for x, ls in zip(operands, labels)]
    _sizes(pairs)
    x, lx = None, None
    for i, (y, ly) in enumerate(pairs):
        needed = set(out).union(*(ls for _, ls in pairs[i + 1:]))
        if x is None:
            x, lx = _sum_unneeded(y, ly, needed)
            continue
        y, ly = _sum_unneeded(y, ly, needed | set(lx))
        x, lx = _sum_unneeded(x, lx, needed | set(ly))
        x, lx = _product(x, lx, y, ly, needed)
    x, lx = _sum_unneeded(x, lx, set(out))
    sizes = _sizes([(x, lx)])
    x = permute(x, [lx.index(c) for c in out])
    return x if x.shape == tuple(sizes[c] for c in out) else x.expand(*[sizes[c] for c in out])
