"""The steps of a compiled program that are not fused loops: matrix products (BLAS),
views, reductions over some dims, softmax and nll_loss (the CPU target's own kernels), and
the bookkeeping of gradients (summing contributions, reducing broadcast operands).

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
    a = env[node.args[0].index]
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
            if _transposed(a):                 # (a.T)'s gradient, made C-contiguous: b @ grad.T
                out.append((a.args[0], _matmul(env[b.index], CPU.permute(grad))))
            else:
                out.append((a, _matmul(grad, CPU.permute(env[b.index]))))
        if b.requires_grad:
            if _transposed(b):                 # F.linear's weight: grad.T @ a, not a transposed (a.T @ grad)
                out.append((b.args[0], _matmul(CPU.permute(grad), env[a.index])))
            else:
                out.append((b, _matmul(CPU.permute(env[a.index]), grad)))
        return out
    if not a.requires_grad:
        return []
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


def _transposed(node):
    """Whether ``node`` is a transpose of a 2-D value (its gradient goes to that value)."""
    return node.op == "permute" and node.params["perm"] == (1, 0)


def _matmul(a, b):
    """A product of 2-D arrays (any strides: transposes are read in place), through the
    target's BLAS kernel."""
    return CPU.reshape(CPU.linalg.bmm(CPU.reshape(a, (1, *a.shape)), CPU.reshape(b, (1, *b.shape))),
                       (a.shape[0], b.shape[1]))


