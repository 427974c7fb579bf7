"""asv suites for the tensor functions of issue 10: sort and topk (the merge-sort kernel),
cumsum/cumprod forward and backward (the scan kernels), einsum (a contraction through matmul)."""
import numpy as np

import nbgrad

from . import Steady

SIZES = [10 ** 3, 10 ** 5, 10 ** 6]


def _leaf(shape, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return nbgrad.tensor(data, requires_grad=True)


class Sorting(Steady):
    """sort / topk(k=10) along the last dim of a (rows, n / rows) float32 tensor, forward and backward."""
    params = (["sort", "topk"], [1, 64], SIZES)
    param_names = ["op", "rows", "n"]

    def build(self, op, rows, n):
        self.x = _leaf((rows, n // rows))
        self.fn = (lambda x: x.sort(1).values) if op == "sort" else (lambda x: x.topk(10, 1).values)
        self.time_forward_backward(op, rows, n)

    def time_forward_backward(self, op, rows, n):
        out = self.fn(self.x)
        out.backward(nbgrad.ones(out.shape))
        self.x.grad = None


class Scans(Steady):
    """cumsum / cumprod along the last dim of a (64, n / 64) float32 tensor, forward and backward."""
    params = (["cumsum", "cumprod"], SIZES)
    param_names = ["op", "n"]

    def build(self, op, n):
        self.x = _leaf((64, n // 64))
        self.fn = getattr(nbgrad, op)
        self.time_forward_backward(op, n)

    def time_forward_backward(self, op, n):
        out = self.fn(self.x, 1)
        out.backward(nbgrad.ones(out.shape))
        self.x.grad = None


class Einsum(Steady):
    """A batched contraction, bij,bjk->bik, n x n matrices in a batch of 8, forward and backward."""
    params = ([32, 128],)
    param_names = ["n"]

    def build(self, n):
        self.a, self.b = _leaf((8, n, n), 0), _leaf((8, n, n), 1)
        self.time_forward_backward(n)

    def time_forward_backward(self, n):
        out = nbgrad.einsum("bij,bjk->bik", self.a, self.b)
        out.backward(nbgrad.ones(out.shape))
        self.a.grad = self.b.grad = None
