"""Automatic differentiation: ``backward``, ``grad``, grad modes, ``Function`` and ``gradcheck``."""
from .anomaly_mode import detect_anomaly, is_anomaly_check_nan_enabled, is_anomaly_enabled, set_detect_anomaly
from .engine import run_backward
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .inference_mode import inference_mode, is_inference_mode_enabled
from .graph import Node

__all__ = ["backward", "grad", "Variable", "Function", "gradcheck", "gradgradcheck", "no_grad",
           "enable_grad", "set_grad_enabled", "is_grad_enabled", "Node", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled", "is_anomaly_check_nan_enabled", "forward_ad", "functional", "graph",
           "inference_mode", "is_inference_mode_enabled"]


def _as_tuple(x):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return tuple(x)
    return (x,)


def _make_grads(outputs, grad_outputs):
    from ..factories import ones_like
    from ..tensor import Tensor
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.requires_grad and out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if out.requires_grad and not out.is_floating_point():
                raise RuntimeError(f"grad can be implicitly created only for real scalar outputs but got {out.dtype}")
            g = ones_like(out)
        elif not isinstance(g, Tensor):
            g = Tensor._wrap(__import__("numpy").full(out.shape, g, out._data.dtype))
        elif g.shape != out.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                               f"has a shape of {out.shape}.")
        grads.append(g)
    return grads


def _check_outputs(outputs):
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the leaves (or only of ``inputs``)."""
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors) or (None,) * len(tensors)
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(f"grad_tensors has {len(grad_tensors)} elements but tensors has {len(tensors)}")
    _check_outputs(tensors)
    grads = _make_grads(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    inputs = _as_tuple(inputs)
    if inputs is not None and not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    captured = run_backward(tensors, grads, retain_graph, create_graph, inputs=inputs, accumulate=True)
    if inputs is not None:                  # non-leaf inputs get their .grad too
        from .graph import accumulate_into
        for t, g in zip(inputs, captured):
            if t.grad_fn is not None and g is not None:
                with set_grad_enabled(create_graph):
                    accumulate_into(t, g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """The gradients of ``outputs`` with respect to ``inputs``, returned, not accumulated."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    grad_outputs = _as_tuple(grad_outputs) or (None,) * len(outputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad requires one grad_output per output: got {len(grad_outputs)} for "
                           f"{len(outputs)} outputs")
    _check_outputs(outputs)
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _make_grads(outputs, grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    captured = run_backward(outputs, grads, retain_graph, create_graph, inputs=inputs, accumulate=False)
    result = []
    for i, (t, g) in enumerate(zip(inputs, captured)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(f"The differentiated Tensor at index {i} appears to not have been used in the "
                                   "graph. Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:
                from ..factories import zeros_like
                g = zeros_like(t)
        result.append(g)
    return tuple(result)


def Variable(data, requires_grad=False, volatile=False):
    """The legacy wrapper: today a ``Variable`` is just a Tensor."""
    from ..tensor import Tensor
    if not isinstance(data, Tensor):
        raise TypeError("Variable data has to be a tensor, but got " + type(data).__name__)
    t = data.detach()
    if requires_grad:
        t.requires_grad_(True)
    return t


from .function import Function  # noqa: E402  (needs the names above)
from .gradcheck import gradcheck, gradgradcheck  # noqa: E402
from . import forward_ad, functional, graph  # noqa: E402,F401
