"""``torch.testing.assert_close``: the same checks, tolerances and failure messages.

Tensors are compared elementwise (|actual - expected| <= atol + rtol * |expected|, NaN equal
only with ``equal_nan``), after their shape, dtype and device attributes; numbers as
scalars; sequences and mappings item by item, naming the item that failed.
"""
import collections.abc
import math
import numbers

import numpy as np

from .tensor import Tensor

__all__ = ["assert_close"]

_TOLERANCES = {np.dtype(np.float16): (1e-3, 1e-5), np.dtype(np.float32): (1.3e-6, 1e-5),
               np.dtype(np.float64): (1e-7, 1e-7)}


class _Failure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _tolerances(*dtypes):
    pairs = [_TOLERANCES.get(np.dtype(d), (0.0, 0.0)) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _index(flat_index, shape):
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _compare_tensors(actual, expected, rtol, atol, equal_nan, check_dtype):
    a, e = actual._data, expected._data
    if a.shape != e.shape:
        raise _Failure(AssertionError, f"The values for attribute 'shape' do not match: {actual.shape} != "
                                       f"{expected.shape}.")
    if check_dtype and a.dtype != e.dtype:
        raise _Failure(AssertionError, f"The values for attribute 'dtype' do not match: {actual.dtype} != "
                                       f"{expected.dtype}.")
    if rtol is None:
        rtol, atol = _tolerances(a.dtype, e.dtype)
    if a.dtype != e.dtype:
        common = np.result_type(a.dtype, e.dtype)
        a, e = a.astype(common), e.astype(common)
    if a.dtype == np.bool_:
        a, e = a.astype(np.int64), e.astype(np.int64)
    with np.errstate(all="ignore"):
        if a.dtype.kind == "f":
            close = (a == e) | ((np.abs(a - e) <= atol + rtol * np.abs(e)) & np.isfinite(a) & np.isfinite(e))
            if equal_nan:
                close |= np.isnan(a) & np.isnan(e)
        else:
            close = np.abs(a.astype(np.float64) - e) <= atol + rtol * np.abs(e.astype(np.float64))
    if close.all():
        return
    if a.ndim == 0:
        _scalar_failure(a.item(), e.item(), rtol, atol)
    equal = rtol == 0 and atol == 0
    flat_close = close.reshape(-1)
    with np.errstate(all="ignore"):
        diff = np.abs(a - e).reshape(-1)
        rel_dtype = a.dtype if a.dtype.kind == "f" else np.float32
        rel = (diff.astype(rel_dtype) / np.abs(e).reshape(-1).astype(rel_dtype))
    diff = np.where(flat_close, 0, diff)
    rel = np.where(flat_close, 0, rel)
    worst_abs = int(np.argmax(np.isnan(diff))) if np.isnan(diff).any() else int(np.argmax(diff))
    worst_rel = int(np.argmax(np.isnan(rel))) if np.isnan(rel).any() else int(np.argmax(rel))
    mismatched = int((~flat_close).sum())
    total = flat_close.size
    lines = [f"Tensor-likes are not {'equal' if equal else 'close'}!", "",
             f"Mismatched elements: {mismatched} / {total} ({100 * mismatched / total:.1f}%)",
             f"Greatest absolute difference: {diff[worst_abs].item()} at index {_index(worst_abs, a.shape)}"
             + ("" if equal else f" (up to {atol} allowed)"),
             f"Greatest relative difference: {rel[worst_rel].item()} at index {_index(worst_rel, a.shape)}"
             + ("" if equal else f" (up to {rtol} allowed)")]
    raise _Failure(AssertionError, "\n".join(lines))


def _scalar_failure(actual, expected, rtol, atol):
    equal = rtol == 0 and atol == 0
    diff = abs(actual - expected)
    rel = diff / abs(expected) if expected != 0 else (math.inf if diff else math.nan)
    lines = [f"Scalars are not {'equal' if equal else 'close'}!", "", f"Expected {expected} but got {actual}.",
             f"Absolute difference: {diff}" + ("" if equal else f" (up to {atol} allowed)"),
             f"Relative difference: {rel}" + ("" if equal else f" (up to {rtol} allowed)")]
    raise _Failure(AssertionError, "\n".join(lines))


def _compare_numbers(actual, expected, rtol, atol, equal_nan):
    if rtol is None:
        floating = isinstance(actual, float) or isinstance(expected, float)
        rtol, atol = (1e-7, 1e-7) if floating else (0.0, 0.0)
    if actual == expected or (equal_nan and actual != actual and expected != expected):
        return
    if math.isfinite(actual) and math.isfinite(expected) and abs(actual - expected) <= atol + rtol * abs(expected):
        return
    _scalar_failure(actual, expected, rtol, atol)


def _compare(actual, expected, rtol, atol, equal_nan, check_dtype, path):
    if isinstance(actual, Tensor) and isinstance(expected, Tensor):
        return _compare_tensors(actual, expected, rtol, atol, equal_nan, check_dtype)
    scalar = (numbers.Number, np.number, np.bool_)
    if isinstance(actual, scalar) and isinstance(expected, scalar) and not isinstance(actual, Tensor):
        if check_dtype and type(actual) is not type(expected):
            raise _Failure(AssertionError, f"The values for attribute 'dtype' do not match: {type(actual)} != "
                                           f"{type(expected)}.")
        return _compare_numbers(actual, expected, rtol, atol, equal_nan)
    if isinstance(actual, np.ndarray) and isinstance(expected, np.ndarray):
        return _compare_tensors(Tensor._wrap(actual), Tensor._wrap(expected), rtol, atol, equal_nan, check_dtype)
    sequence = (collections.abc.Sequence,)
    if isinstance(actual, sequence) and isinstance(expected, sequence) and not isinstance(actual, str):
        if len(actual) != len(expected):
            raise _Failure(AssertionError, f"The length of the sequences mismatch: {len(actual)} != "
                                           f"{len(expected)}{_where(path)}")
        for i, (x, y) in enumerate(zip(actual, expected)):
            _compare(x, y, rtol, atol, equal_nan, check_dtype, path + [i])
        return
    if isinstance(actual, collections.abc.Mapping) and isinstance(expected, collections.abc.Mapping):
        if set(actual) != set(expected):
            raise _Failure(AssertionError, f"The keys of the mappings do not match:{_where(path)}")
        for k in actual:
            _compare(actual[k], expected[k], rtol, atol, equal_nan, check_dtype, path + [k])
        return
    raise _Failure(TypeError, f"No comparison pair was able to handle inputs of type {type(actual)} and "
                              f"{type(expected)}.")


def _where(path):
    return "" if not path else "\n\nThe failure occurred for item " + "".join(f"[{p!r}]" for p in path)


def assert_close(actual, expected, *, allow_subclasses=True, rtol=None, atol=None, equal_nan=False,
                 check_device=True, check_dtype=True, check_layout=True, check_stride=False, msg=None):
    """Raise AssertionError unless ``actual`` and ``expected`` are close (PyTorch's rules and messages)."""
    if (rtol is None) != (atol is None):
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but got no "
                         f"{'atol' if atol is None else 'rtol'}.")
    path = []
    try:
        _compare(actual, expected, rtol, atol, equal_nan, check_dtype, path)
    except _Failure as failure:
        text = str(failure)
        if failure.kind is AssertionError:
            text += _where(_failing_path(actual, expected, rtol, atol, equal_nan, check_dtype))
            if msg is not None:
                text = msg(text) if callable(msg) else msg
        raise failure.kind(text) from None


def _failing_path(actual, expected, rtol, atol, equal_nan, check_dtype, path=()):
    """The item path of the first failing leaf (empty at the top)."""
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)) and len(actual) == len(expected):
        items = enumerate(zip(actual, expected))
    elif isinstance(actual, collections.abc.Mapping) and isinstance(expected, collections.abc.Mapping) \
            and set(actual) == set(expected):
        items = ((k, (actual[k], expected[k])) for k in actual)
    else:
        return list(path)
    for k, (x, y) in items:
        try:
            _compare(x, y, rtol, atol, equal_nan, check_dtype, [])
        except _Failure:
            return _failing_path(x, y, rtol, atol, equal_nan, check_dtype, path + (k,))
    return list(path)
