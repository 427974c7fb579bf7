"""Tensor printing, character for character as PyTorch prints (``torch/_tensor_str.py``).

Users compare printed tensors with PyTorch's output, so we keep its rules: one width for
every element, fixed or scientific notation chosen from the range of the nonzero finite
values, integers in float tensors printed as ``1.``, ``...`` past ``threshold`` elements,
and ``dtype=``/``grad_fn=``/``requires_grad=`` suffixes wrapped at ``linewidth``.
Printing only formats numbers that already exist, so it works on plain Python values
(``ndarray.tolist()``), never on tensors: it records nothing and runs no kernel.
"""
import dataclasses
import math

__all__ = ["tensor_repr", "set_printoptions", "get_printoptions"]


@dataclasses.dataclass
class _PrintOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: object = None


PRINT_OPTS = _PrintOptions()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """As ``torch.set_printoptions``; ``profile`` is ``"default"``, ``"short"`` or ``"full"``."""
    if profile == "default":
        PRINT_OPTS.precision, PRINT_OPTS.threshold, PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 4, 1000, 3, 80
    elif profile == "short":
        PRINT_OPTS.precision, PRINT_OPTS.threshold, PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 2, 1000, 2, 80
    elif profile == "full":
        PRINT_OPTS.precision, PRINT_OPTS.threshold, PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 4, math.inf, 3, 80
    for name, value in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                        ("linewidth", linewidth)):
        if value is not None:
            setattr(PRINT_OPTS, name, value)
    PRINT_OPTS.sci_mode = sci_mode


def get_printoptions():
    return dataclasses.asdict(PRINT_OPTS)


class _Formatter:
    """Decides, from all the values that will be shown, one notation and one width."""

    def __init__(self, values, floating):
        self.floating = floating
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        precision = PRINT_OPTS.precision
        if not floating:
            self.max_width = max([1] + [len(f"{v}") for v in values])
            return
        finite = [v for v in values if v != 0 and math.isfinite(v)]
        if not finite:
            return
        low = min(abs(v) for v in finite)
        high = max(abs(v) for v in finite)
        self.int_mode = all(v == math.ceil(v) for v in finite)
        self.sci_mode = (high / low > 1000.0 or high > 1.0e8 or low < 1.0e-4) if PRINT_OPTS.sci_mode is None \
            else PRINT_OPTS.sci_mode
        if self.sci_mode:
            widths = [len(f"{v:.{precision}e}") for v in finite]
        elif self.int_mode:
            widths = [len(f"{v:.0f}") + 1 for v in finite]       # + 1 for the trailing "."
        else:
            widths = [len(f"{v:.{precision}f}") for v in finite]
        self.max_width = max(widths)

    def format(self, value):
        if not self.floating:
            text = f"{value}"
        elif self.sci_mode:
            text = f"{value:{self.max_width}.{PRINT_OPTS.precision}e}"
        elif self.int_mode:
            text = f"{value:.0f}"
            if math.isfinite(value):
                text += "."
        else:
            text = f"{value:.{PRINT_OPTS.precision}f}"
        return " " * (self.max_width - len(text)) + text


def _summarized_values(arr):
    """The values that a summarized print shows: ``edgeitems`` at each end of every dim."""
    if arr.ndim == 0:
        return [arr.item()]
    e = PRINT_OPTS.edgeitems
    n = arr.shape[0]
    if arr.ndim == 1:
        return arr.tolist() if n <= 2 * e else arr[:e].tolist() + arr[-e:].tolist()
    if not e:
        return []
    rows = range(n) if n <= 2 * e else [*range(e), *range(n - e, n)]
    return [v for i in rows for v in _summarized_values(arr[i])]


def _vector_str(arr, indent, summarize, fmt):
    per_line = max(1, math.floor((PRINT_OPTS.linewidth - indent) / (fmt.max_width + 2)))
    e = PRINT_OPTS.edgeitems
    if summarize and not e:
        data = ["..."]
    elif summarize and arr.shape[0] > 2 * e:
        data = [fmt.format(v) for v in arr[:e].tolist()] + [" ..."] + [fmt.format(v) for v in arr[-e:].tolist()]
    else:
        data = [fmt.format(v) for v in arr.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _array_str(arr, indent, summarize, fmt):
    if arr.ndim == 0:
        return fmt.format(arr.item())
    if arr.ndim == 1:
        return _vector_str(arr, indent, summarize, fmt)
    e = PRINT_OPTS.edgeitems
    n = arr.shape[0]
    if summarize and n > 2 * e:
        slices = [_array_str(arr[i], indent + 1, summarize, fmt) for i in range(e)] + ["..."] + \
                 [_array_str(arr[i], indent + 1, summarize, fmt) for i in range(n - e, n)]
    else:
        slices = [_array_str(arr[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (arr.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def _tensor_str(arr, indent):
    summarize = arr.size > PRINT_OPTS.threshold
    values = _summarized_values(arr) if summarize else arr.reshape(-1).tolist()
    return _array_str(arr, indent, summarize, _Formatter(values, arr.dtype.kind == "f"))


def _add_suffixes(text, suffixes, indent):
    parts = [text]
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(t):
    """``repr(t)`` (and ``str(t)``) exactly as PyTorch writes it for the same values."""
    from . import _dtype
    from .tensor import Tensor
    plain = type(t).__module__.partition(".")[0] == "nbgrad"      # not a user's subclass
    prefix = "tensor(" if plain else f"{type(t).__name__}("
    indent = len(prefix)
    from nbgrad.ops.targets import target_of
    arr = target_of(t._data).to_host(t._data)          # printed from host memory
    dtype = t.dtype
    default = _dtype.get_default_dtype()
    suffixes = []
    if t.device.type != "cpu":                         # PyTorch names a non-default device first
        suffixes.append(f"device='{t.device}'")
    if arr.size == 0:
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dtype is not default:
            suffixes.append(f"dtype=torch.{dtype.name}")
        text = "[]"
    else:
        if not PRINT_OPTS.edgeitems:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dtype not in (default, _dtype.int64, _dtype.bool):
            suffixes.append(f"dtype=torch.{dtype.name}")
        text = _tensor_str(arr, indent)
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{type(t.grad_fn).__name__}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + text, suffixes, indent)
