"""``inference_mode``: ``no_grad`` that also marks what ops make inside it as inference
tensors (``is_inference()``), which autograd then refuses to save for backward, as PyTorch
does. PyTorch also marks factory results and skips version counting inside; nbgrad marks
op results only (the cheap part), and inside it behaves exactly as ``no_grad``."""
import functools

from .grad_mode import _state, shared

__all__ = ["inference_mode", "is_inference_mode_enabled"]


def is_inference_mode_enabled():
    return _state.inference


class inference_mode:
    """Context manager and decorator (``@inference_mode``, ``@inference_mode()``,
    ``inference_mode(False)`` to leave it inside an enclosing one)."""

    def __new__(cls, mode=True):
        if callable(mode):                  # used bare as a decorator
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        self._prev = (_state.enabled, _state.inference)
        if self.mode:
            shared.inference_made = True    # from now on (in all threads), saved tensors are checked
            _state.enabled, _state.inference = False, True
        else:
            _state.inference = False

    def __exit__(self, *exc):
        _state.enabled, _state.inference = self._prev
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)
        return wrapper

    def clone(self):
        return inference_mode(self.mode)
