"""Forward-mode AD: ``dual_level``, ``make_dual``, ``unpack_dual``.

A dual tensor carries a tangent (``_fw_grad``) beside its value. Every op records through
``tensor.record`` (views through ``tensor.make_view``); while a dual level is open, those
hand the result here, which attaches the result's tangent from the op's JVP rule:

* an op of the table (``ops/table.py``): its gradient expression for each operand, ``g *
  f'(x)``, evaluated on Tensors with the operand's tangent in place of ``g``, summed over
  the operands (``functional/pointwise.py`` evaluates the same expressions for a recorded
  backward): nothing about an op's math is written again;
* a view (``make_view``): the same view of the input's tangent;
* matmul, sum/mean, cat/stack, flip, softmax, indexing...: the rules in ``_RULES``.

An op with no rule raises PyTorch's "Trying to use forward AD with ... that does not support
it" error. Tangent computations run with the level suspended (one level: nested levels
raise, as in PyTorch) and are themselves recorded for backward when grad mode is on.
"""
import collections
import re
import weakref


__all__ = ["dual_level", "enter_dual_level", "exit_dual_level", "make_dual", "unpack_dual", "UnpackedDualTensor"]


class _State:
    level = None                 # the open level (0), or None: checked by every op (tensor.record)
    duals = None                 # the tensors given a tangent at the open level (cleared on exit)


_state = _State()


def enter_dual_level():
    """Open a forward AD level (only one at a time, as in PyTorch) and return it."""
    if _state.level is not None:
        raise RuntimeError("Nested forward mode AD is not supported at the moment")
    _state.duals = weakref.WeakSet()
    _state.level = 0
    return 0


def exit_dual_level(*, level=None):
    """Close the level: every tangent made in it is dropped."""
    if level is not None and level != _state.level:
        raise RuntimeError("Trying to exit a forward AD level that was not the last one that was created. "
                           "This is not supported.")
    duals, _state.level, _state.duals = _state.duals, None, None
    for t in list(duals or ()):
        t.__dict__.pop("_fw_grad", None)


class dual_level:
    """``with dual_level():`` scopes the tangents made inside it."""

    def __enter__(self):
        return enter_dual_level()

    def __exit__(self, *exc):
        exit_dual_level()
        return False


UnpackedDualTensor = collections.namedtuple("UnpackedDualTensor", ["primal", "tangent"])


def make_dual(tensor, tangent, *, level=None):
    """A view of ``tensor`` (sharing its memory and autograd history) carrying ``tangent``."""
    if _state.level is None:
        raise RuntimeError("Trying to create a dual Tensor for forward AD but no level exists, make sure to "
                           "enter_dual_level() first.")
    if not tensor.is_floating_point():
        raise ValueError(f"Expected primal to be floating point or complex, but got: {tensor.dtype}")
    if not tangent.is_floating_point():
        raise ValueError(f"Expected tangent to be floating point or complex, but got: {tangent.dtype}")
    if tangent.shape != tensor.shape:
        raise RuntimeError("Trying to set a forward gradient that has a different size than that of the original "
                           f"Tensor, this is not supported. Tensor is of size {list(tensor.shape)} while the given "
                           f"forward gradient is of size {list(tangent.shape)}.")
    with _suspended():
        dual = tensor.view_as(tensor)
        _attach(dual, tangent.to(tensor.dtype))
    return dual


def unpack_dual(tensor, *, level=None):
    """``(primal, tangent)``: the primal a view without the tangent, the tangent None if none."""
    tangent = tensor.__dict__.get("_fw_grad") if _state.level is not None else None
    if tangent is None:
        return UnpackedDualTensor(tensor, None)
    with _suspended():
        primal = tensor.view_as(tensor)
    return UnpackedDualTensor(primal, tangent)


class _suspended:
    """Run ops without forward AD: inside a rule, and while making the primal of a dual."""

    def __enter__(self):
        self.level, _state.level = _state.level, None

    def __exit__(self, *exc):
        _state.level = self.level


def suspended(flag=True):
    """``_suspended()`` when ``flag``, else a context that does nothing."""
    return _suspended() if flag else _NOTHING


class _Nothing:
    def __enter__(self):
        pass

    def __exit__(self, *exc):
        return False


_NOTHING = _Nothing()


def custom_jvp(cls, ctx, args, output):
    """A custom Function's outputs get their tangents from its ``jvp(ctx, *input_tangents)``
    (a tensor input without a tangent passes zeros, a non-tensor None), in which
    ``ctx.saved_tensors`` gives what ``save_for_forward`` kept."""
    from ..factories import zeros_like
    from ..tensor import Tensor
    tangents = [None if not isinstance(a, Tensor) else _tangent(a) if _tangent(a) is not None else zeros_like(a)
                for a in args]
    kept = ctx.__dict__.get("saved_for_forward")
    previous = {k: ctx.__dict__[k] for k in ("_saved", "_saved_versions", "_saved_outputs", "_unpack_hook")
                if k in ctx.__dict__}
    if kept is not None:
        ctx._saved, ctx._saved_versions, ctx._saved_outputs, ctx._unpack_hook = tuple(kept), (None,) * len(kept), \
            None, None
    try:
        with _suspended():
            result = cls.jvp(ctx, *tangents)
    finally:
        for k in ("_saved", "_saved_versions", "_saved_outputs", "_unpack_hook"):
            ctx.__dict__.pop(k, None)
        ctx.__dict__.update(previous)
    outputs = output if isinstance(output, tuple) else (output,)
    results = result if isinstance(result, tuple) else (result,)
    for o, t in zip(outputs, results):
        if isinstance(o, Tensor) and t is not None and o.is_floating_point():
            with _suspended():
                _attach(o, _conform(t, o))


def _tangent(x):
    d = getattr(x, "__dict__", None)
    return d.get("_fw_grad") if d else None


def _attach(t, tangent):
    t._fw_grad = tangent
    _state.duals.add(t)


def has_tangent(tensors):
    return _state.level is not None and any(_tangent(x) is not None for x in tensors)


# -- the hooks of tensor.record / tensor.make_view -------------------------------------------------
def record(node_cls, data, inputs, saved, attrs):
    """``tensor.record`` while a level is open: the result, with its tangent if an input has one."""
    from ..tensor import record as plain_record
    tangents = [_tangent(x) for x in inputs]
    with _suspended():
        out = plain_record(node_cls, data, inputs, saved, **attrs)
        if any(t is not None for t in tangents) and data.dtype.kind == "f":
            rule = _rule(node_cls)
            tangent = rule(node_cls, out, inputs, tangents, saved, attrs)
            _attach(out, _conform(tangent, out))
    return out


def make_view(base, data, node_cls, view_fn, attrs):
    """``tensor.make_view`` while a level is open: a view's tangent is the same view of the
    base's tangent."""
    from ..tensor import make_view as plain_make_view
    tangent = _tangent(base)
    with _suspended():
        out = plain_make_view(base, data, node_cls, view_fn, **attrs)
        if tangent is not None:
            _attach(out, view_fn(tangent))
    return out


def inplace(self, functional, recorded, write, rebase_history):
    """An in-place update while a level is open and a tensor involved has a tangent: the op
    runs out of place on a copy of the old values carrying ``self``'s tangent, and the new
    tangent is written into ``self``'s tangent in place (so that the tangents of views of the
    same memory, views of one tangent, follow), or becomes its tangent if it had none."""
    from ..autograd.grad_mode import no_grad
    from ..tensor import Tensor
    from nbgrad.ops.targets import target_of
    old = Tensor._wrap(target_of(self._data).copy(self._data))
    old.grad_fn, old._output_nr, old._requires_grad = self.grad_fn, self._output_nr, self._requires_grad
    own = _tangent(self)
    if own is not None:
        _attach(old, own.clone())
    new = functional(old)
    write(self, new)
    self._version_counter.value += 1
    if recorded:
        rebase_history(self, new)
    tangent = _tangent(new)
    with _suspended():
        tangent = _conform(tangent, self)
        if own is not None:
            with no_grad():
                own.copy_(tangent)
        else:
            _attach(self, tangent)
    return self


def _conform(tangent, out):
    """A tangent of the output's shape and dtype (a sum of broadcast terms may be smaller)."""
    from ..factories import zeros_like
    if tangent is None:
        return zeros_like(out)
    if tangent.dtype is not out.dtype:
        tangent = tangent.to(out.dtype)
    if tangent.shape != out.shape:
        tangent = tangent.expand(out.shape).contiguous()
    return tangent


def _rule(node_cls):
    rule = _RULES.get(node_cls.__name__)
    if rule is None and getattr(node_cls, "_table_op", None) is not None:
        rule = _table_rule
    if rule is None:
        op = re.sub(r"Backward\d*$", "", node_cls.__name__)
        op = re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()
        raise NoForwardRule(f"Trying to use forward AD with {op} that does not support it because it has not "
                                  "been implemented yet.\nPlease file an issue to nbgrad so that we can prioritize "
                                  "its implementation.")
    return rule


class NoForwardRule(NotImplementedError):
    """An op without a forward AD rule was met (``autograd.functional.jvp`` then falls back)."""


def _table_rule(node_cls, out, inputs, tangents, saved, attrs):
    """Sum over the operands of their table gradient expressions with the tangent as ``g``."""
    from ..functional.pointwise import COMPOSED, _compiled
    from ..ops.table import TABLE
    rec = TABLE[node_cls._table_op]
    args = node_cls._table_args                 # the operands given as tensors (or numbers) to record
    kept = [n for n in rec.saved(args) if n != "y"]
    values = dict(zip(args, inputs))
    if saved:
        values.update(zip(kept, saved))
    values.update({p: attrs.get(p, default) for p, default in rec.params})
    values["y"] = out
    total = None
    for arg, x, t in zip(args, inputs, tangents):
        expr = rec.grads.get(arg)
        if t is None or expr is None or expr == "0":
            continue
        term = t if expr == "g" else eval(_compiled(expr), COMPOSED, {**values, "g": t})
        total = term if total is None else total + term
    return total


# -- the rules of the ops outside the table ------------------------------------------------------------
def _sum_terms(*terms):
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    return total


def _bilinear(fn):
    def rule(node_cls, out, inputs, tangents, saved, attrs):
        (a, b), (ta, tb) = inputs, tangents
        return _sum_terms(fn(ta, b) if ta is not None else None, fn(a, tb) if tb is not None else None)
    return rule


def _addmm(node_cls, out, inputs, tangents, saved, attrs):
    from ..functional.linalg import mm
    (_, a, b), (tc, ta, tb) = inputs, tangents
    alpha, beta = attrs.get("alpha", 1), attrs.get("beta", 1)
    product = _sum_terms(mm(ta, b) if ta is not None else None, mm(a, tb) if tb is not None else None)
    if product is not None and alpha != 1:
        product = product * alpha
    if tc is not None and beta != 0:
        product = _sum_terms(product, tc if beta == 1 else tc * beta)
    return product


def _summed(node_cls, out, inputs, tangents, saved, attrs):
    (t,) = tangents
    keep, shape = attrs["keep"], attrs["in_shape"]
    dims = [d for d in range(len(shape)) if keep[d] == 1 and shape[d] != 1]
    result = (t.sum(dim=dims, keepdim=True) if dims else t).reshape(out.shape)
    return result / attrs["count"] if "count" in attrs else result


def _expanded(node_cls, out, inputs, tangents, saved, attrs):
    (t,) = tangents
    kept = tuple(1 if d in attrs["dims"] else n for d, n in enumerate(out.shape))
    return t.reshape(kept).expand(out.shape)


def _same(node_cls, out, inputs, tangents, saved, attrs):
    return tangents[0]


def _reshaped(node_cls, out, inputs, tangents, saved, attrs):
    return tangents[0].reshape(out.shape)


def _joined(fn):
    def rule(node_cls, out, inputs, tangents, saved, attrs):
        from ..factories import zeros_like
        return fn([t if t is not None else zeros_like(x) for x, t in zip(inputs, tangents)], attrs["dim"])
    return rule


def _flip(node_cls, out, inputs, tangents, saved, attrs):
    return tangents[0].flip(attrs["dims"])


def _gathered(node_cls, out, inputs, tangents, saved, attrs):
    from ..functional.indexing import _index
    return _index(tangents[0], attrs["index"], node_cls)


def _gather(node_cls, out, inputs, tangents, saved, attrs):
    return tangents[0].gather(attrs["dim"], saved[0])


def _softmax(node_cls, out, inputs, tangents, saved, attrs):
    t, d = tangents[0], attrs["dim"]
    return out * (t - (out * t).sum(d, keepdim=True))


def _log_softmax(node_cls, out, inputs, tangents, saved, attrs):
    t, d = tangents[0], attrs["dim"]
    return t - (out.exp() * t).sum(d, keepdim=True)


def _masked_fill(node_cls, out, inputs, tangents, saved, attrs):
    from ..functional.pointwise import where
    (mask,) = saved
    value_tangent = tangents[1] if len(tangents) > 1 and tangents[1] is not None else 0.0
    t = tangents[0] if tangents[0] is not None else 0.0
    return where(mask, value_tangent, t)


def _filled(node_cls, out, inputs, tangents, saved, attrs):
    """fill_/zero_: the old values' tangent is gone; a 0-d tensor value's tangent everywhere."""
    return tangents[1] if len(tangents) > 1 and tangents[1] is not None else None


def _kept(t, keep, dims):
    """``t`` reduced over ``dims`` kept as size-1 dims (the shape ``keep``) by ``sum``."""
    return t.sum(dim=list(dims), keepdim=True) if dims else t


def _even(node_cls, out, inputs, tangents, saved, attrs):
    """max/min/amax/amin over dims: the tangent averaged over the tied extremes (as their
    backward splits the gradient evenly)."""
    (x,), (t,) = inputs, tangents
    dims, keep = attrs["dims"], attrs["keep"]
    hit = (x == out.reshape(keep)).to(out.dtype)
    return (_kept(t * hit, keep, dims) / _kept(hit, keep, dims)).reshape(out.shape)


def _along(node_cls, out, inputs, tangents, saved, attrs):
    """max/min along a dim with indices: the tangent at the chosen index."""
    (x,), (t,) = inputs, tangents
    d = attrs["dim"]
    if not x.ndim:
        return t
    index = (x.argmin if "Min" in node_cls.__name__ else x.argmax)(d, keepdim=True)
    return t.gather(d, index).reshape(out.shape)


def _logsumexp(node_cls, out, inputs, tangents, saved, attrs):
    (x,), (t,) = inputs, tangents
    keep, dims = attrs["keep"], attrs["dims"]
    return _kept((x - out.reshape(keep)).exp() * t, keep, dims).reshape(out.shape)


def _var(node_cls, out, inputs, tangents, saved, attrs):
    """var: 2/dof * sum((x - mean) * t); std: that over 2 std."""
    (x,), (t,) = inputs, tangents
    keep, dims = attrs["keep"], attrs["dims"]
    centred = x - x.mean(dim=list(dims), keepdim=True) if dims else x * 0
    dvar = (_kept(centred * t, keep, dims) * (2.0 / attrs["dof"])).reshape(out.shape)
    return dvar / (2 * out) if node_cls.__name__.startswith("Std") else dvar


def _copied(node_cls, out, inputs, tangents, saved, attrs):
    """copy_: the source's tangent (broadcast); the old values' is gone."""
    return tangents[1]


def _index_put(node_cls, out, inputs, tangents, saved, attrs):
    """x[idx] = v (or += with accumulate): the same put on the tangents."""
    from ..factories import zeros_like
    from ..functional.indexing import _put
    (x, v), (tx, tv) = inputs, tangents
    return _put(tx if tx is not None else zeros_like(x), attrs["index"], tv if tv is not None else zeros_like(v),
                attrs["accumulate"])


def _repeat(node_cls, out, inputs, tangents, saved, attrs):
    """repeat is linear: the tangent tiled the same way (the sizes read from the shapes)."""
    t = tangents[0]
    lead = out.ndim - t.ndim
    return t.repeat(*out.shape[:lead], *(n // m if m else n for n, m in zip(out.shape[lead:], t.shape)))


def _scattered(node_cls, out, inputs, tangents, saved, attrs):
    """scatter/scatter_add: the same scatter of the tangents (a number source's tangent is 0)."""
    from ..factories import zeros_like
    (index,), dim = saved, attrs["dim"]
    t = tangents[0] if tangents[0] is not None else zeros_like(inputs[0])
    if node_cls.__name__ == "ScatterBackward1":
        return t.scatter(dim, index, 0.0)
    src = tangents[1] if tangents[1] is not None else zeros_like(inputs[1])
    return t.scatter_add(dim, index, src) if node_cls.__name__ == "ScatterAddBackward0" else t.scatter(dim, index, src)


def _prod(node_cls, out, inputs, tangents, saved, attrs):
    """sum over the reduced elements of t times the product of the others (exact with zeros)."""
    from nbgrad.ops.targets import target_of
    from ..tensor import Tensor
    (x,), (t,) = inputs, tangents
    dims, keep = attrs["dims"], attrs["keep"]
    if not dims:
        return t
    target = target_of(x._data)
    others = Tensor._wrap(target.reduce.prod_backward(target.ones(keep, x._data.dtype), x._data, dims))
    return _kept(t * others, keep, dims).reshape(out.shape)


def _nll(node_cls, out, inputs, tangents, saved, attrs):
    """nll_loss is linear in its input: the same loss of the tangent."""
    from ..nn.functional import _nll as nll
    _, target, weight = saved
    return nll(tangents[0], target, weight, attrs["reduction"], attrs["ignore_index"], node_cls)


def _linalg(name):
    def fn(a, b):
        from ..functional import linalg
        return getattr(linalg, name)(a, b)
    return fn


_RULES = {
    "MmBackward0": _bilinear(_linalg("mm")), "BmmBackward0": _bilinear(_linalg("bmm")),
    "MvBackward0": _bilinear(_linalg("mv")), "DotBackward0": _bilinear(_linalg("dot")),
    "AddmmBackward0": _addmm,
    "SumBackward0": _summed, "SumBackward1": _summed, "MeanBackward0": _summed, "MeanBackward1": _summed,
    "ExpandBackward0": _expanded, "CloneBackward0": _same, "ToCopyBackward0": _same,
    "UnsafeViewBackward0": _reshaped,
    "CatBackward0": _joined(lambda ts, d: __import__("nbgrad").cat(ts, d)),
    "StackBackward0": _joined(lambda ts, d: __import__("nbgrad").stack(ts, d)),
    "FlipBackward0": _flip, "IndexBackward0": _gathered, "IndexSelectBackward0": _gathered,
    "TakeBackward0": _gathered, "GatherBackward0": _gather,
    "SoftmaxBackward0": _softmax, "LogSoftmaxBackward0": _log_softmax,
    "MaskedFillBackward0": _masked_fill, "MaskedFillBackward1": _masked_fill,
    "FillBackward2": _filled, "FillBackward3": _filled, "ZeroBackward0": _filled,
    "MaxBackward1": _even, "MinBackward1": _even, "AmaxBackward0": _even, "AminBackward0": _even,
    "MaxBackward0": _along, "MinBackward0": _along, "LogsumexpBackward0": _logsumexp,
    "VarBackward0": _var, "StdBackward0": _var, "CopyBackwards": _copied,
    "IndexPutBackward0": _index_put, "IndexPutImplBackward0": _index_put,
    "NllLossBackward0": _nll, "NllLoss2DBackward0": _nll, "RepeatBackward0": _repeat,
    "ScatterBackward0": _scattered, "ScatterBackward1": _scattered, "ScatterAddBackward0": _scattered,
    "ProdBackward0": _prod, "ProdBackward1": _prod,
}
