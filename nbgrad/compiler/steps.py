"""The steps of a compiled program that are not fused loops: matrix products (BLAS),
views (reshapes, transposes, basic-index slices, expands), copies (``cat``, dtype casts),
reductions over some dims (sums, extreme values), softmax and nll_loss (the CPU target's own
kernels), and the bookkeeping of gradients (summing contributions, reducing broadcast operands).

``_run_op(node, env)`` computes a node's value from the values in ``env``;
``_op_backward(node, env, grad)`` gives its operands' gradient contributions. Each runs on
the target of the arrays it is given (``target_of``): the CPU's, or the CUDA target's for a
program over CUDA tensors.
"""
import numpy as np

from nbgrad.nn.functional import nll_reduced
from nbgrad.ops.targets import target_of

def _total(parts, shape, dtype):
    """The sum of gradient contributions (broadcasting to ``shape`` when given)."""
    if len(parts) == 1 and (shape is None or parts[0].shape == tuple(shape)):
        return parts[0]
    if shape is None:
        shape = np.broadcast_shapes(*(p.shape for p in parts))
    T = target_of(parts[0])
    out = T.copy_into(T.empty(shape, dtype.numpy), parts[0], fresh_out=True)
    for p in parts[1:]:
        T.run("add", out, out, p)
    return out


def _reduce_to(array, shape):
    """A gradient of a broadcast operand, summed down to the operand's ``shape``."""
    shape = tuple(shape)
    if array.shape == shape:
        return array
    lead = array.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(d + lead for d, n in enumerate(shape) if n == 1 and array.shape[d + lead] != 1)
    T = target_of(array)
    return T.reshape(T.reduce.sum(array, dims, array.dtype), shape)


def _run_op(node, env):
    if node.op == "cat":
        return _cat([env[a.index] for a in node.args], node.shape, node.dtype, node.params["dim"])
    a = env[node.args[0].index]
    T = target_of(a)
    if node.op == "view":
        return T.slice(a, node.params["key"])
    if node.op == "expand":
        return T.as_strided(a, node.shape, _expand_strides(a, node.shape), writeable=False)
    if node.op == "cast":
        return T.astype(a, node.dtype.numpy)
    if node.op == "max":
        p = node.params
        values, indices = T.reduce.max(a, p["dims"], p["smallest"])
        env[("indices", node.index)] = indices
        return T.reshape(values, node.shape)
    if node.op == "indices":
        return T.reshape(env[("indices", node.args[0].index)], node.shape)
    if node.op == "matmul":
        return _matmul(a, env[node.args[1].index])
    if node.op == "permute":
        return T.permute(a, node.params["perm"])
    if node.op == "reshape":
        return T.reshape(a, node.shape)
    if node.op == "sum":
        p = node.params
        return T.reshape(T.reduce.sum(a, p["dims"], a.dtype, p["scale"]), node.shape)
    if node.op == "softmax":
        return T.reduce.softmax(a, node.params["dim"], node.params["log"])
    if node.op == "nll_loss":
        losses, total, total_weight = T.loss.nll_forward(a, env[node.args[1].index], None,
                                                           node.params["ignore_index"])
        env[("total_weight", node.index)] = total_weight
        return nll_reduced(losses, total, total_weight, node.params["reduction"])
    raise AssertionError(node.op)


def _op_backward(node, env, grad):
    """(operand node, gradient contribution) pairs of a non-fused node."""
    a = node.args[0]
    T = target_of(grad)
    if node.op == "matmul":
        b = node.args[1]
        out = []
        if a.requires_grad:
            if _transposed(a):                 # (a.T)'s gradient, made C-contiguous: b @ grad.T
                out.append((a.args[0], _matmul(env[b.index], T.permute(grad))))
            else:
                out.append((a, _matmul(grad, T.permute(env[b.index]))))
        if b.requires_grad:
            if _transposed(b):                 # F.linear's weight: grad.T @ a, not a transposed (a.T @ grad)
                out.append((b.args[0], _matmul(T.permute(grad), env[a.index])))
            else:
                out.append((b, _matmul(T.permute(env[a.index]), grad)))
        return out
    if node.op == "cat":                       # the operands' parts of the gradient (views)
        out, start, d = [], 0, node.params["dim"]
        for x in node.args:
            n = x.shape[d]
            if x.requires_grad:
                out.append((x, T.slice(grad, (slice(None),) * d + (slice(start, start + n),))))
            start += n
        return out
    if not a.requires_grad:
        return []
    if node.op == "view":                      # zeros around the slice
        g = T.zeros(a.shape, a.dtype.numpy)
        T.copy_into(T.slice(g, node.params["key"]), grad)
        return [(a, g)]
    if node.op == "expand":
        return [(a, _reduce_to(grad, a.shape))]
    if node.op == "cast":
        return [(a, T.astype(grad, a.dtype.numpy))]
    if node.op == "max":
        p = node.params
        g = T.reshape(T.contiguous(grad), p["keep"])
        if p["dim"] is not None:               # max(dim): to the position of the index
            return [(a, T.reduce.index_backward(g, env[("indices", node.index)], a.shape, p["dim"],
                                                  a.dtype.numpy))]
        x = T.contiguous(env[a.index])       # amax, max(): shared evenly among the ties
        m = T.reshape(T.contiguous(env[node.index]), p["keep"])
        return [(a, T.reduce.distribute_backward(g, x, m, p["dims"], p["nan_too"]))]
    if node.op == "permute":
        return [(a, T.permute(grad, tuple(np.argsort(node.params["perm"]))))]
    if node.op == "reshape":
        return [(a, T.reshape(grad, a.shape))]
    if node.op == "softmax":
        y = env[node.index]
        return [(a, T.reduce.softmax_backward(T.contiguous(grad), y, node.params["dim"], node.params["log"]))]
    if node.op == "nll_loss":
        g = grad
        if node.params["reduction"] == "mean":        # a kernel: the gradient may be on a device
            g = T.launch("div", (grad, env[("total_weight", node.index)]), grad.shape, grad.dtype)
        return [(a, T.loss.nll_backward(a.shape, a.dtype.numpy, env[node.args[1].index], None, g,
                                          node.params["ignore_index"]))]
    if node.op == "sum":                       # the keepdim gradient: readers broadcast it
        g = T.reshape(grad, node.params["keep"])
        if node.params["scale"] != 1.0:
            g = T.launch("mul", (g, node.params["scale"]), g.shape, g.dtype)
        return [(a, g)]
    raise AssertionError(node.op)


def _transposed(node):
    """Whether ``node`` is a transpose of a 2-D value (its gradient goes to that value)."""
    return node.op == "permute" and node.params["perm"] == (1, 0)


def _cat(arrays, shape, dtype, d):
    T = target_of(arrays[0])
    out = T.empty(shape, dtype.numpy)
    start = 0
    for a in arrays:
        n = a.shape[d]
        T.copy_into(T.slice(out, (slice(None),) * d + (slice(start, start + n),)), a, fresh_out=True)
        start += n
    return out


def _expand_strides(a, shape):
    """Byte strides of ``a`` broadcast to ``shape`` (0 along the new and the broadcast dims)."""
    lead = len(shape) - a.ndim
    return tuple(0 if i < lead or a.shape[i - lead] != n else a.strides[i - lead] for i, n in enumerate(shape))


def _matmul(a, b):
    """A product of 2-D arrays (any strides: transposes are read in place), through the
    target's product kernel (BLAS on the CPU)."""
    T = target_of(a)
    return T.reshape(T.linalg.bmm(T.reshape(a, (1, *a.shape)), T.reshape(b, (1, *b.shape))),
                     (a.shape[0], b.shape[1]))


