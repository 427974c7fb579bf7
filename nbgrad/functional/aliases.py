"""NumPy-style keyword aliases PyTorch accepts (``axis=`` for ``dim=``, ``keepdims=`` for
``keepdim=``) on the reductions and joins, and ``out=`` on the common functions.

The functions are wrapped where they are exported (``nbgrad.f`` and ``Tensor.f``); a call
without keywords goes straight through, so the aliases cost nothing on the usual path. The
operators (``x + y``) are not wrapped.
"""
import functools

from ..tensor import Tensor
from .out import write_out

__all__ = []

_DIM = ("sum", "mean", "prod", "std", "var", "amax", "amin", "max", "min", "argmax", "argmin", "logsumexp",
        "softmax", "log_softmax", "squeeze", "unsqueeze", "cat", "concat", "stack", "flatten", "narrow", "select",
        "index_select", "gather", "split", "chunk", "unbind", "count_nonzero", "all", "any", "median", "mode",
        "kthvalue", "sort", "argsort", "topk", "nanmedian", "cummax", "cummin", "std_mean", "var_mean")
# (the op table's functions, exp, mul, ..., take out= themselves: ``pointwise._generate``)
_OUT = ("add", "sub", "div", "matmul", "mm", "bmm", "sum", "mean", "prod", "cat", "concat", "stack", "max", "min",
        "amax", "amin", "argmax", "argmin", "sort", "topk", "where", "clamp", "pow", "eq", "ne", "lt", "le", "gt",
        "ge")


def _aliased(fn, takes_out):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not kwargs:
            return fn(*args)
        if "axis" in kwargs:
            if "dim" in kwargs:
                raise TypeError(f"{fn.__name__}() got multiple values for argument 'dim'")
            kwargs["dim"] = kwargs.pop("axis")
        if "keepdims" in kwargs:
            kwargs["keepdim"] = kwargs.pop("keepdims")
        out = kwargs.pop("out", None) if takes_out else None
        result = fn(*args, **kwargs)
        if out is None:
            return result
        if isinstance(result, tuple):
            if not isinstance(out, (tuple, list)) or len(out) != len(result):
                raise TypeError(f"{fn.__name__}(): argument 'out' must be tuple of Tensors")
            for o, r in zip(out, result):
                write_out(o, r, fn.__name__)
            return type(result)(*out) if hasattr(result, "values") else tuple(out)
        return write_out(out, result, fn.__name__)
    wrapper.__wrapped__ = fn
    return wrapper


def install(namespace):
    """Wrap the functions named above in ``namespace`` (nbgrad's) and the matching Tensor methods."""
    for name in set(_DIM) | set(_OUT):
        fn = namespace.get(name)
        if fn is None:
            continue
        wrapped = _aliased(fn, name in _OUT)
        namespace[name] = wrapped
        method = Tensor.__dict__.get(name)
        if name in _DIM and method is fn:
            setattr(Tensor, name, _aliased(fn, False))
