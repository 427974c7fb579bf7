"""The steps of a compiled program that are not fused loops: matrix products (BLAS),
views (reshapes, transposes, basic-index slices, expands), copies (``cat``, dtype casts),
reductions over some dims (sums, extreme values), softmax and nll_loss (the CPU target's own
kernels), and the bookkeeping of gradients (summing contributions, reducing broadcast operands).

``_run_op(node, env)`` computes a node's value from the values in ``env``;
``_op_backward(node, env, grad)`` gives its operands' gradient contributions.
"""
import numpy as np

from nbgrad.ops.targets import CPU

def _total(parts, shape, dtype):
    """The sum of gradient contributions (broadcasting to ``shape`` when given)."""
    if len(parts) == 1 and (shape is None or parts[0].shape == tuple(shape)):
        return parts[0]
    if shape is None:
        shape = np.broadcast_shapes(*(p.shape for p in parts))
    out = CPU.copy_into(CPU.empty(shape, dtype.numpy), parts[0], fresh_out=True)
    for p in parts[1:]:
        CPU.run("add", out, out, p)
    return out


def _reduce_to(array, shape):
    """A gradient of a broadcast operand, summed down to the operand's ``shape``."""
    shape = tuple(shape)
    if array.shape == shape:
        return array
    lead = array.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(d + lead for d, n in enumerate(shape) if n == 1 and array.shape[d + lead] != 1)
    return CPU.reshape(CPU.reduce.sum(array, dims, array.dtype), shape)


def _run_op(node, env):
    if node.op == "cat":
        return _cat([env[a.index] for a in node.args], node.shape, node.dtype, node.params["dim"])
    a = env[node.args[0].index]
    if node.op == "view":
        return CPU.slice(a, node.params["key"])
    if node.op == "expand":
        return CPU.as_strided(a, node.shape, _expand_strides(a, node.shape), writeable=False)
    if node.op == "cast":
        return CPU.astype(a, node.dtype.numpy)
    if node.op == "max":
        p = node.params
        values, indices = CPU.reduce.max(a, p["dims"], p["smallest"])
        env[("indices", node.index)] = indices
        return CPU.reshape(values, node.shape)
    if node.op == "indices":
        return CPU.reshape(env[("indices", node.args[0].index)], node.shape)
    if node.op == "matmul":
        return _matmul(a, env[node.args[1].index])
    if node.op == "permute":
        return CPU.permute(a, node.params["perm"])
    if node.op == "reshape":
        return CPU.reshape(a, node.shape)
    if node.op == "sum":
        p = node.params
        return CPU.reshape(CPU.reduce.sum(a, p["dims"], a.dtype, p["scale"]), node.shape)
    if node.op == "softmax":
        return CPU.reduce.softmax(a, node.params["dim"], node.params["log"])
    if node.op == "nll_loss":
        losses, total, total_weight = CPU.loss.nll_forward(a, env[node.args[1].index], None,
                                                           node.params["ignore_index"])
        env[("total_weight", node.index)] = total_weight
        reduction = node.params["reduction"]
        if reduction == "none":
            return losses
        with np.errstate(divide="ignore", invalid="ignore"):
            return CPU.scalar(total if reduction == "sum" else total / total_weight, a.dtype)
    raise AssertionError(node.op)


def _op_backward(node, env, grad):
    """(operand node, gradient contribution) pairs of a non-fused node."""
    a = node.args[0]
    if node.op == "matmul":
        b = node.args[1]
        out = []
        if a.requires_grad:
            out.append((a, _matmul(grad, CPU.permute(env[b.index]))))
        if b.requires_grad:
            out.append((b, _matmul(CPU.permute(env[a.index]), grad)))
        return out
    if node.op == "cat":                       # the operands' parts of the gradient (views)
        out, start, d = [], 0, node.params["dim"]
        for x in node.args:
            n = x.shape[d]
            if x.requires_grad:
                out.append((x, CPU.slice(grad, (slice(None),) * d + (slice(start, start + n),))))
            start += n
        return out
    if not a.requires_grad:
        return []
    if node.op == "view":                      # zeros around the slice
        g = CPU.zeros(a.shape, a.dtype.numpy)
        CPU.copy_into(CPU.slice(g, node.params["key"]), grad)
        return [(a, g)]
    if node.op == "expand":
        return [(a, _reduce_to(grad, a.shape))]
    if node.op == "cast":
        return [(a, CPU.astype(grad, a.dtype.numpy))]
    if node.op == "max":
        p = node.params
        g = CPU.reshape(CPU.contiguous(grad), p["keep"])
        if p["dim"] is not None:               # max(dim): to the position of the index
            return [(a, CPU.reduce.index_backward(g, env[("indices", node.index)], a.shape, p["dim"],
                                                  a.dtype.numpy))]
        x = CPU.contiguous(env[a.index])       # amax, max(): shared evenly among the ties
        m = CPU.reshape(CPU.contiguous(env[node.index]), p["keep"])
        return [(a, CPU.reduce.distribute_backward(g, x, m, p["dims"], p["nan_too"]))]
    if node.op == "permute":
        return [(a, CPU.permute(grad, tuple(np.argsort(node.params["perm"]))))]
    if node.op == "reshape":
        return [(a, CPU.reshape(grad, a.shape))]
    if node.op == "softmax":
        y = env[node.index]
        return [(a, CPU.reduce.softmax_backward(CPU.contiguous(grad), y, node.params["dim"], node.params["log"]))]
    if node.op == "nll_loss":
        g = grad
        if node.params["reduction"] == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):
                g = grad / env[("total_weight", node.index)]
        return [(a, CPU.loss.nll_backward(a.shape, a.dtype.numpy, env[node.args[1].index], None, g,
                                          node.params["ignore_index"]))]
    if node.op == "sum":                       # the keepdim gradient: readers broadcast it
        g = CPU.reshape(grad, node.params["keep"])
        if node.params["scale"] != 1.0:
            g = CPU.launch("mul", (g, node.params["scale"]), g.shape, g.dtype)
        return [(a, g)]
    raise AssertionError(node.op)


def _cat(arrays, shape, dtype, d):
    out = CPU.empty(shape, dtype.numpy)
    start = 0
    for a in arrays:
        n = a.shape[d]
        CPU.copy_into(CPU.slice(out, (slice(None),) * d + (slice(start, start + n),)), a, fresh_out=True)
        start += n
    return out


def _expand_strides(a, shape):
    """Byte strides of ``a`` broadcast to ``shape`` (0 along the new and the broadcast dims)."""
    lead = len(shape) - a.ndim
    return tuple(0 if i < lead or a.shape[i - lead] != n else a.strides[i - lead] for i, n in enumerate(shape))


def _matmul(a, b):
    """A product of 2-D arrays (any strides: transposes are read in place), through the
    target's BLAS kernel."""
    return CPU.reshape(CPU.linalg.bmm(CPU.reshape(a, (1, *a.shape)), CPU.reshape(b, (1, *b.shape))),
                       (a.shape[0], b.shape[1]))


