"""Graph breaks "from there": a signature whose capture breaks (an op the compiler does not
know, data-dependent Python) still runs its captured part compiled.

Each call traces the function again (on proxies, computing nothing) up to the break; there,
the graph captured so far is run by its program (looked up by the graph's text, so it is
generated once), the proxies still alive become the real tensors they stand for, and the
rest of the function runs eagerly on them (``capture.materialize``). The compiled part
records one ``CompiledFunctionBackward`` node, so gradients flow through both parts.
"""
from .capture import GraphBreak, capture
from .codegen import Program

__all__ = ["Breaks", "call"]


class Breaks:
    """The entry of a signature whose capture breaks."""

    def valid(self):
        return True


def _key(graph):
    """The graph's text: its ops, shapes, dtypes, constants, what requires grad, and outputs."""
    lines = [f"{n!r} grad={n.requires_grad} {n.source or ''}" for n in graph.nodes]
    lines.append(" ".join(str(n.index) for n in graph.outputs))
    return "\n".join(lines)


def call(compiled, entry_cls, args, kwargs):
    """``compiled``'s function on ``args``, compiled up to its graph break, eager from there."""
    programs = compiled._prefixes

    def run(graph, message):
        key = _key(graph)
        program = programs.get(key)
        if program is None:
            program = programs[key] = Program(graph)
        entry = entry_cls(graph, program)
        entry.prefix = message is not None
        return compiled._run(entry, args, kwargs)
    try:
        return capture(compiled._fn, args, kwargs, resume=run).value
    except GraphBreak:                         # a break this call where the first capture had none
        return compiled._fn(*args, **kwargs)
