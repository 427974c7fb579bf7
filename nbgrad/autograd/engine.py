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
import weakref

import numpy as np

from .graph import AccumulateGrad
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
    deliveries = {}                       # id(gradient) -> (edges it was handed to, weak reference)
    for (fn, nr), grad in roots:
        _deliver(deliveries, grad, 2)     # the caller's own gradient is never taken over
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
                    if accumulate and grads[0] is not None:
                        fn.apply(grads[0], _is_fresh(grads[0], deliveries, fn))
                    continue
                if fn._pre_hooks or fn._retained:
                    grads = _run_tensor_hooks(fn, grads)
                if needed is not None:
                    for nr, i in captures.get(fn, ()):
                        captured[i] = grads[nr]
                    if not any(n in needed for n, _ in fn.next_functions):
                        continue
                outputs = _call(fn, grads)
                if not retain_graph:
                    fn.release_saved()
            hooked = 2 if fn._post_hooks else 1
            for (next_fn, nr), grad, meta in zip(fn.next_functions, outputs, fn._input_meta):
                if next_fn is None or (needed is not None and next_fn not in needed):
                    continue
                if grad is not None:
                    if grad._data.shape != meta[0] or grad._data.dtype != meta[1]:
                        grad = _conform(grad, meta)
                    _deliver(deliveries, grad, hooked)
                    _add_to_buffer(buffers, next_fn, nr, grad)
                remaining = dependencies[next_fn] - 1
                dependencies[next_fn] = remaining
                if remaining == 0:
                    heapq.heappush(ready, (-next_fn._sequence_nr, id(next_fn), next_fn))
    return captured


def _held_once():
    """What ``sys.getrefcount`` says of an array held by one owner and named by a local
    variable, as ``_is_fresh`` sees its arrays (measured: it differs between Pythons)."""
    owner = [np.empty(1)]
    data = owner[0]
    return sys.getrefcount(data)


_HELD_ONCE = _held_once()


def _deliver(deliveries, grad, count):
    """Count one more edge that ``grad`` went to. Entries are checked by a weak reference,
    since the id of a gradient freed on the way may come back for a new one."""
    deliveries[id(grad)] = (_delivered(deliveries, grad) + count, weakref.ref(grad))


def _delivered(deliveries, grad):
    entry = deliveries.get(id(grad))
    return entry[0] if entry is not None and entry[1]() is grad else 0


def _is_fresh(grad, deliveries, fn):
    """Whether ``grad`` may become ``.grad`` without a copy: handed to this edge alone, no
    hook saw it, and nothing else holds its memory (as PyTorch checks use counts). Its
    array may be a view (a transposed product) if it spans all of a base held by it alone."""
    data = grad._data
    if not (_delivered(deliveries, grad) <= 1 and not fn.variable._hooks and grad.grad_fn is None
            and data.flags.writeable and data.flags.c_contiguous and sys.getrefcount(data) == _HELD_ONCE):
        return False
    base = data.base
    return base is None or (type(base) is np.ndarray and base.base is None and base.size == data.size
                            and sys.getrefcount(base) == _HELD_ONCE)


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
    from ..factories import zeros
    shape, dtype = meta
    return zeros(shape, dtype=dtype)
