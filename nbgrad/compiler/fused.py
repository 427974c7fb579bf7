"""Steps of a compiled program that replace a pattern of captured nodes by one kernel.

``CrossEntropy``: ``log_softmax`` over the classes of an ``(N, C)`` value that only
``nll_loss`` reads (what ``F.cross_entropy`` captures) runs as the target's fused
cross-entropy kernels: the forward reads the logits once and keeps two numbers a row, the
backward writes their gradient ``g * (softmax - onehot)`` in one pass, where the two steps
would write and read the log-probabilities and a dense one-hot gradient besides.
"""
import numpy as np

from nbgrad.ops.targets import CPU

__all__ = ["CrossEntropy", "fuse"]


class CrossEntropy:
    """One step for ``nll_loss(log_softmax(x, 1), target)``; its value is the nll's."""
    op = "cross_entropy"

    def __init__(self, softmax, nll):
        self.softmax, self.nll = softmax, nll
        self.index, self.shape, self.dtype = nll.index, nll.shape, nll.dtype
        self.logits, self.target = softmax.args[0], nll.args[1]
        self.reduction, self.ignore_index = nll.params["reduction"], nll.params["ignore_index"]

    def __repr__(self):
        return f"cross_entropy %{self.softmax.index}, %{self.nll.index} (one kernel each way)"

    def run(self, env):
        x = CPU.contiguous(env[self.logits.index])
        losses, total, count, saved = CPU.xent.forward(x, env[self.target.index], self.ignore_index)
        env[("xent", self.index)] = (x, count, saved)
        if self.reduction == "none":
            return losses
        with np.errstate(divide="ignore", invalid="ignore"):
            return CPU.scalar(total if self.reduction == "sum" else total / count, x.dtype)

    def backward(self, env, grad):
        """(logits node, its gradient) pairs, for ``grad`` of the loss."""
        if not self.logits.requires_grad:
            return []
        x, count, saved = env[("xent", self.index)]
        if self.reduction == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):
                grad = grad / count
        return [(self.logits, CPU.xent.backward(x, env[self.target.index], self.ignore_index, saved, grad))]


def fuse(units, consumers, outputs):
    """``units`` with each ``log_softmax`` (dim 1 of a 2-D value, read by one ``nll_loss``
    alone, not returned) and its ``nll_loss`` replaced by one ``CrossEntropy`` step."""
    out = []
    fused = set()
    for u in units:
        if getattr(u, "op", None) == "nll_loss":
            s = u.args[0]
            if (s.op == "softmax" and s.params["log"] and s.params["dim"] == 1 and len(s.shape) == 2
                    and [c.index for c in consumers.get(s.index, ())] == [u.index] and s.index not in outputs):
                fused.add(s.index)
                out.append(CrossEntropy(s, u))
                continue
        out.append(u)
    return [u for u in out if not (getattr(u, "op", None) == "softmax" and u.index in fused)]
