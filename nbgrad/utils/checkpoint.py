"""Activation checkpointing: ``checkpoint(fn, *args)`` keeps none of the tensors ``fn``'s
ops save for backward, and recomputes ``fn`` when backward first needs one.

It is PyTorch's non-reentrant form (``use_reentrant=False``), built on
``saved_tensors_hooks``: the forward's pack hook keeps only a position; the first unpack
reruns ``fn`` on the same inputs (same grad mode, and the random state it started with, so
dropout draws the same mask) and collects what that run saves, in order. nbgrad has no
reentrant form: ``use_reentrant=True`` gives the same gradients by the same mechanism."""
import warnings

from ..autograd.grad_mode import is_grad_enabled, set_grad_enabled
from ..autograd.graph import saved_tensors_hooks

__all__ = ["checkpoint", "checkpoint_sequential"]

_PASS_EXPLICITLY = (
    "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. Starting in PyTorch 2.9, "
    "calling checkpoint without use_reentrant will raise an exception. use_reentrant=False is recommended, but if "
    "you need to preserve the current default behavior, you can pass use_reentrant=True. Refer to docs for more "
    "details on the differences between the two variants.")


class _Recomputation:
    """One checkpointed call: how to rerun it, and what the rerun saved."""

    def __init__(self, function, args, kwargs, preserve_rng_state):
        from ..factories import default_generator
        self.function, self.args, self.kwargs = function, args, kwargs
        self.grad_enabled = is_grad_enabled()
        self.rng = default_generator._rng.bit_generator.state if preserve_rng_state else None
        self.count = 0
        self.saved = None

    def pack(self, tensor):
        self.count += 1
        return self.count - 1

    def unpack(self, position):
        if self.saved is None:
            self.recompute()
        return self.saved[position]

    def recompute(self):
        from ..factories import default_generator
        saved = []

        def collect(tensor):
            saved.append(tensor)
            return tensor
        state = default_generator._rng.bit_generator.state
        if self.rng is not None:
            default_generator._rng.bit_generator.state = self.rng
        try:
            with saved_tensors_hooks(collect, lambda t: t), set_grad_enabled(self.grad_enabled):
                self.function(*self.args, **self.kwargs)
        finally:
            default_generator._rng.bit_generator.state = state
        if len(saved) != self.count:
            raise RuntimeError("torch.utils.checkpoint: A different number of tensors was saved during the original "
                               f"forward and recomputation.\nNumber of tensors saved during forward: {self.count}\n"
                               f"Number of tensors saved during recomputation: {len(saved)}.")
        self.saved = saved


def checkpoint(function, *args, use_reentrant=None, context_fn=None, determinism_check="default", debug=False,
               preserve_rng_state=True, **kwargs):
    """``function(*args, **kwargs)``, keeping no saved tensors: backward recomputes them."""
    if use_reentrant is None:
        warnings.warn(_PASS_EXPLICITLY, UserWarning, stacklevel=2)
    if context_fn is not None:
        raise NotImplementedError("nbgrad's checkpoint takes no context_fn")
    frame = _Recomputation(function, args, kwargs, preserve_rng_state)
    with saved_tensors_hooks(frame.pack, frame.unpack):
        return function(*args, **kwargs)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Run ``functions`` (a Sequential or a list of modules) in ``segments`` checkpointed chunks."""
    if use_reentrant is None:
        warnings.warn(_PASS_EXPLICITLY, UserWarning, stacklevel=2)
    functions = list(functions.children()) if hasattr(functions, "children") else list(functions)
    size = (len(functions) + segments - 1) // segments

    def run(chunk):
        def forward(x):
            for f in chunk:
                x = f(x)
            return x
        return forward
    for start in range(0, len(functions), size):
        input = checkpoint(run(functions[start:start + size]), input, use_reentrant=False, **kwargs)
    return input
