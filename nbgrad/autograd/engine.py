"""The backward scheduler: plain Python, no recursion.

1. Walk the graph from the roots and count, for every node, the edges that lead into it.
2. Keep a ready queue of nodes whose every incoming gradient has arrived, ordered by
   creation (the latest operation first, as PyTorch does).
3. Run a node: its tensor hooks, then its backward step; sum what it sends into each
   input's buffer, reducing a broadcast gradient to the input's shape and casting it to the
   input's dtype here and only here.
4. Free each node's saved tensors after it ran, unless the graph is to be retained.

``autograd.grad`` runs the same loop, but only the nodes that lead to the requested inputs,
and it captures their gradients instead of accumulating them into ``.grad``.
"""
import heapq
import sys

from nbgrad.ops.targets import CPU, target_of

from . import anomaly_mode
from .anomaly_mode import _state as _anomaly
from .graph import AccumulateGrad, _accumulate_lock
from .grad_mode import set_grad_enabled

__all__ = ["run_backward"]


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None, accumulate=True):
    """Backpropagate ``grad_tensors`` from ``tensors``. With ``inputs``, only the nodes
    leading to them run, and their gradients are returned; ``accumulate`` says whether
    leaves among them also get their ``.grad`` (``backward(inputs=...)``) or not
    (``autograd.grad``)."""
    roots = [(_edge_of(t), g) for t, g in zip(tensors, grad_tensors)]
    captures = {}                         # node -> [(output number, input index)]
    if inputs is not None:
        for i, t in enumerate(inputs):
            fn, nr = _edge_of(t)
            captures.setdefault(fn, []).append((nr, i))
    nodes, dependencies = _discover([fn for (fn, _), _ in roots])
    needed = None
    if inputs is not None:
        needed = _needed(nodes, captures)
        dependencies = _count_dependencies(nodes, needed)
    captured = [None] * len(inputs) if inputs is not None else None

    buffers = {}
    for (fn, nr), grad in roots:          # the caller's gradients: ``roots`` holds them throughout
        if needed is None or fn in needed:
            _add_to_buffer(buffers, fn, nr, grad)
    ready = [(-fn._sequence_nr, id(fn), fn) for fn in buffers if dependencies.get(fn, 0) == 0]
    heapq.heapify(ready)

    with set_grad_enabled(create_graph):
        while ready:
            fn = heapq.heappop(ready)[2]
            grads = buffers.pop(fn, None)
            if grads is None:                 # every edge into it carried no gradient
                outputs = (None,) * len(fn.next_functions)
            else:
                if type(fn) is AccumulateGrad:
                    if fn.variable._hooks:
                        grads = _run_tensor_hooks(fn, grads)
                    for nr, i in captures.get(fn, ()):
                        captured[i] = grads[nr]
                    grad, grads = grads[0], None
                    if accumulate and grad is not None:
                        fresh = _is_fresh(grad, fn)     # while this loop's ``grad`` is its only name here
                        fn.apply(grad, fresh)
                    grad = None
                    continue
                if fn._pre_hooks or fn._retained:
                    grads = _run_tensor_hooks(fn, grads)
                if needed is not None:
                    for nr, i in captures.get(fn, ()):
                        captured[i] = grads[nr]
                    if not any(n in needed for n, _ in fn.next_functions):
                        continue
                if _anomaly.enabled:
                    outputs = _call_checked(fn, grads)
                else:
                    outputs = _call(fn, grads)
                if not retain_graph:
                    fn.release_saved()
            for (next_fn, nr), grad, meta in zip(fn.next_functions, outputs, fn._input_meta):
                if next_fn is None or (needed is not None and next_fn not in needed):
                    continue
                if grad is not None:
                    if grad._data.shape != meta[0] or grad._data.dtype != meta[1]:
                        grad = _conform(grad, meta)
                    _add_to_buffer(buffers, next_fn, nr, grad)
                remaining = dependencies[next_fn] - 1
                dependencies[next_fn] = remaining
                if remaining == 0:
                    heapq.heappush(ready, (-next_fn._sequence_nr, id(next_fn), next_fn))
            outputs = grad = None             # no stray names for gradients still on their way
    return captured


def _held_once():
    """What ``sys.getrefcount`` says of an object that one holder holds and a local variable
    names, as ``_is_fresh`` sees a gradient (held by the engine's loop, named by its own
    parameter) and its array (held by the gradient). Measured: it differs between Pythons."""
    holder = [object()]
    x = holder[0]
    return sys.getrefcount(x)


_HELD_ONCE = _held_once()


def _is_fresh(grad, fn):
    """Whether ``grad`` may become ``.grad`` without a copy, as PyTorch checks use counts:
    nothing but the engine's one name holds the gradient (no other edge's buffer, hook or
    caller), no hook of the leaf wants to see it, and its array is held by it alone (the
    target's ``is_private``: it may be a view, a transposed product, spanning all of a base
    held by it alone)."""
    if sys.getrefcount(grad) != _HELD_ONCE or fn.variable._hooks or grad.grad_fn is not None:
        return False
    return target_of(grad._data).is_private(grad._data)


def _edge_of(tensor):
    """The (node, output number) that receives ``tensor``'s gradient."""
    if tensor.grad_fn is not None:
        return tensor.grad_fn, tensor._output_nr
    return tensor._grad_accumulator(), 0


def _discover(roots):
    """Every node reachable from ``roots``, and how many edges lead into each."""
    counts = {}
    seen = set()
    stack = [fn for fn in roots if fn is not None]
    order = []
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        order.append(fn)
        for next_fn, _ in fn.next_functions:
            if next_fn is not None:
                counts[next_fn] = counts.get(next_fn, 0) + 1
                if next_fn not in seen:
                    stack.append(next_fn)
    return order, counts


def _needed(nodes, targets):
    """Nodes from which a target can be reached. Inputs are created before the operations
    that use them, so in order of creation every node comes after all it points to."""
    needed = set()
    for fn in sorted(nodes, key=lambda f: f._sequence_nr if not isinstance(f, AccumulateGrad) else -1):
        if fn in targets or any(n in needed for n, _ in fn.next_functions if n is not None):
            needed.add(fn)
    return needed


def _count_dependencies(nodes, needed):
    """Edges into each node from the ``needed`` ones."""
    counts = {}
    for fn in nodes:
        if fn in needed:
            for next_fn, _ in fn.next_functions:
                if next_fn is not None:
                    counts[next_fn] = counts.get(next_fn, 0) + 1
    return counts


def _add_to_buffer(buffers, fn, nr, grad):
    slots = buffers.get(fn)
    if slots is None:
        slots = buffers[fn] = [None] * fn.num_outputs
    slots[nr] = grad if slots[nr] is None else slots[nr] + grad


def _run_tensor_hooks(fn, grads):
    if isinstance(fn, AccumulateGrad):
        if grads[0] is None:
            return grads
        for hook in list((fn.variable._hooks or {}).values()):
            result = hook(grads[0])
            if result is not None:
                grads[0] = result
        return grads
    if fn._pre_hooks:
        for key, hook in list(fn._pre_hooks.values()):
            if key == "node":
                result = hook(tuple(grads))
                if result is not None:
                    grads = list(result)
            elif grads[key] is not None:
                result = hook(grads[key])
                if result is not None:
                    grads[key] = result
    if fn._retained:
        for nr, ref in fn._retained.items():
            tensor = ref()
            if tensor is not None and grads[nr] is not None:
                g = grads[nr]
                with _accumulate_lock:
                    tensor.grad = g.clone() if tensor.grad is None else tensor.grad + g
    return grads


def _call(fn, grads):
    if fn.num_outputs > 1 and getattr(fn, "materialize_grads", True) and any(g is None for g in grads):
        grads = [g if g is not None else _zeros(meta) for g, meta in zip(grads, fn._output_meta)]
    outputs = fn.apply(*grads)
    if not isinstance(outputs, tuple):
        outputs = (outputs,)
    if len(outputs) != len(fn.next_functions):
        raise RuntimeError(f"function {fn.name()} returned an incorrect number of gradients "
                           f"(expected {len(fn.next_functions)}, got {len(outputs)})")
    if fn._post_hooks:
        for hook in list(fn._post_hooks.values()):
            result = hook(outputs, tuple(grads))
            if result is not None:
                outputs = tuple(result)
    return outputs


def _call_checked(fn, grads):
    """``_call`` under anomaly detection: an error names the forward call that made the node;
    a NaN gradient is an error where it first appears."""
    try:
        outputs = _call(fn, grads)
    except Exception:
        anomaly_mode.report_error(fn)
        raise
    if _anomaly.check_nan:
        anomaly_mode.check_nan(fn, outputs)
    return outputs


def _conform(grad, meta):
    """Sum a broadcast gradient down to the input's shape and give it the input's dtype."""
    shape, dtype = meta
    data = grad._data
    if data.shape != shape:
        grad = grad.sum_to_size(shape)
    if data.dtype != dtype:
        grad = grad.to(dtype)
    return grad


def _zeros(meta):
    """Zeros for an output that got no gradient, made through that output's target (so on its
    device, whatever the default device is); a meta of (shape, dtype) alone: the CPU."""
    from ..factories import _filled
    shape, dtype, *where = meta
    return _filled((shape,), 0, dtype, False, where[0] if where else CPU)
