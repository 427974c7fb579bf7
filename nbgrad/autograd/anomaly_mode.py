"""Anomaly detection: each node remembers the forward code that made it, so that an error
in its backward step names that code, and backward steps that return NaN are caught
where they happen. For debugging: it costs a stack capture per recorded op."""
import os
import traceback
import warnings

from nbgrad.ops.targets import target_of

__all__ = ["detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled", "is_anomaly_check_nan_enabled"]


class _State:
    enabled = False
    check_nan = True


_state = _State()          # process-wide, as in PyTorch


def is_anomaly_enabled():
    return _state.enabled


def is_anomaly_check_nan_enabled():
    return _state.check_nan


class set_detect_anomaly:
    """Turn anomaly detection on or off; as a context manager, for a block only."""

    def __init__(self, mode, check_nan=True):
        self._prev = (_state.enabled, _state.check_nan)
        _state.enabled, _state.check_nan = bool(mode), bool(check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled, _state.check_nan = self._prev
        return False


class detect_anomaly:
    """A context manager (or decorator) with anomaly detection on."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime and should only be "
                      "enabled for debugging.", stacklevel=2)

    def __enter__(self):
        self._switch = set_detect_anomaly(True, self.check_nan)

    def __exit__(self, *exc):
        self._switch.__exit__()
        return False

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with self.__class__(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def forward_trace():
    """Where the op being recorded was called from: the frames outside nbgrad."""
    frames = [f for f in traceback.extract_stack() if not os.path.abspath(f.filename).startswith(_PACKAGE)]
    return "".join(traceback.format_list(frames))


def report_error(node):
    """Name the forward call of the node whose backward step failed."""
    trace = getattr(node, "_forward_trace", None)
    if trace is not None:
        warnings.warn(f"Error detected in {node.name()}. Traceback of forward call that caused the error:\n{trace}",
                      stacklevel=2)


def check_nan(node, outputs):
    for i, g in enumerate(outputs):
        if g is not None and g._data.dtype.kind == "f" and g._data.size and _has_nan(g._data):
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")


def _has_nan(data):
    """Whether ``data`` holds a NaN: checked in host memory."""
    host = target_of(data).to_host(data)
    return bool((host != host).any())
