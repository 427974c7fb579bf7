"""asv suites: op families forward+backward over sizes, reductions, matmul, the engine's cost per node.

Kernels compile in ``build`` (a warm-up call), so ``time_*`` figures are steady-state;
compile time has its own suite, ``ColdStart`` in ``bench_training.py``.
"""
import numpy as np

import nbgrad

from . import Steady

SIZES = [10 ** 2, 10 ** 4, 10 ** 6, 10 ** 7]


def _leaf(shape, seed=0, dtype=np.float32):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return nbgrad.tensor(data, requires_grad=True)


class Elementwise(Steady):
    """One op, forward and backward, on n float32 elements."""
    params = (["mul", "add", "tanh", "exp", "sigmoid", "relu", "pow3"], SIZES)
    param_names = ["op", "n"]

    OPS = {
        "mul": lambda x, y: x * y,
        "add": lambda x, y: x + y,
        "tanh": lambda x, y: x.tanh(),
        "exp": lambda x, y: x.exp(),
        "sigmoid": lambda x, y: x.sigmoid(),
        "relu": lambda x, y: x.relu(),
        "pow3": lambda x, y: x ** 3,
    }

    def build(self, op, n):
        self.x, self.y = _leaf(n, 0), _leaf(n, 1)
        self.grad = nbgrad.ones(n)
        self.fn = self.OPS[op]
        self.time_forward_backward(op, n)

    def time_forward(self, op, n):
        with nbgrad.no_grad():
            self.fn(self.x, self.y)

    def time_forward_backward(self, op, n):
        self.fn(self.x, self.y).backward(self.grad)
        self.x.grad = self.y.grad = None


class Reductions(Steady):
    params = (["sum", "mean", "max", "softmax", "log_softmax", "logsumexp", "var"], [10 ** 4, 10 ** 6])
    param_names = ["op", "n"]

    OPS = {
        "sum": lambda x: x.sum(),
        "mean": lambda x: x.mean(1).sum(),
        "max": lambda x: x.max(1)[0].sum(),
        "softmax": lambda x: (x.softmax(1) * x).sum(),
        "log_softmax": lambda x: x.log_softmax(1).sum(),
        "logsumexp": lambda x: x.logsumexp(1).sum(),
        "var": lambda x: x.var(1).sum(),
    }

    def build(self, op, n):
        self.x = _leaf((n // 1000 or 1, 1000 if n >= 1000 else n))
        self.fn = self.OPS[op]
        self.time_forward_backward(op, n)

    def time_forward_backward(self, op, n):
        self.fn(self.x).backward()
        self.x.grad = None


class Matmul(Steady):
    params = [16, 128, 512, 1024]
    param_names = ["n"]

    def build(self, n):
        self.a, self.b = _leaf((n, n), 0), _leaf((n, n), 1)
        self.time_forward_backward(n)

    def time_forward(self, n):
        with nbgrad.no_grad():
            self.a @ self.b

    def time_forward_backward(self, n):
        (self.a @ self.b).sum().backward()
        self.a.grad = self.b.grad = None


class BackwardOverhead(Steady):
    """The engine's fixed cost per node, on tiny tensors."""
    params = [10, 100, 1000]
    param_names = ["nodes"]

    def build(self, nodes):
        self.x = _leaf((5, 5))
        self.nodes = nodes
        self.time_chain(nodes)

    def time_chain(self, nodes):
        y = self.x
        for _ in range(nodes):
            y = y * 1.001
        y.sum().backward()
        self.x.grad = None

