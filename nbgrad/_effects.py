"""The slot through which eager objects tell ``nbgrad.compile``'s capture about their side
effects (``.grad`` assignments, ``zero_grad``, optimizer and scheduler steps).

It lives apart from ``nbgrad.compiler`` so that ``tensor.py``, ``nn`` and ``optim`` can ask it
without importing the compiler. ``EFFECTS.hook`` stays None until a capture has run; after
that it is ``nbgrad.compiler.effects.hook``, which answers True when it recorded the effect
(a capture is running on this thread: the caller must then not make it) and False otherwise.
"""
import functools

__all__ = ["EFFECTS", "recorded"]


class EFFECTS:
    hook = None


def recorded(method):
    """``method``, except that inside a capture a call is recorded (to be made at every call of
    the compiled function, reading the object's state then) instead of made."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        hook = EFFECTS.hook
        if hook is not None and hook("call", self, method.__name__, args, kwargs):
            return None
        return method(self, *args, **kwargs)
    wrapper._recorded = True
    return wrapper
