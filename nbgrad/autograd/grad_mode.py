"""Whether operations record the graph: a per-thread switch, as in PyTorch."""
import functools
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


class _State(threading.local):
    enabled = True
    inference = False             # inside inference_mode (autograd/inference_mode.py)


class _Shared:
    """Flags of all threads, read on hot paths (a plain object: cheaper than a thread-local)."""
    inference_made = False        # inference_mode was ever entered: saved tensors are checked


shared = _Shared()


_state = _State()


def is_grad_enabled():
    return _state.enabled


class _GradMode:
    """Base of the switches: usable as a context manager and as a decorator."""
    _mode = None

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _state.enabled
            _state.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _state.enabled = prev
        return wrapper


class _NoParamMode(_GradMode):
    """Also usable bare, as ``@no_grad`` without parentheses."""

    def __new__(cls, orig_func=None):
        self = super().__new__(cls)
        return self if orig_func is None else self(orig_func)

    def __init__(self, orig_func=None):
        pass


class no_grad(_NoParamMode):
    """Operations inside do not record the graph (their results have ``requires_grad=False``)."""
    _mode = False


class enable_grad(_NoParamMode):
    """Turn recording back on inside a ``no_grad`` region."""
    _mode = True


class set_grad_enabled(_GradMode):
    """Set recording on or off; takes effect at once, and is undone on leaving a ``with``."""

    def __init__(self, mode):
        self._prev = _state.enabled
        self._mode = bool(mode)
        _state.enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        _state.enabled = self._prev     # as a decorator, it acts only inside the call
        return super().__call__(fn)
