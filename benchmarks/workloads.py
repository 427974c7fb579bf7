"""The workloads, written once: ``compare.py`` times them against PyTorch, JAX and NumPy, and
the asv suites (``bench_*.py``) track nbgrad's own figures over commits.

``WORKLOADS[name].make(lib)`` builds a workload for nbgrad or PyTorch (the same API) and returns
a zero-argument callable that runs one whole iteration; ``make(torch, torch.compile)`` compiles
its forward. ``.jax(jax)`` is the same computation as ``jax.grad`` under ``jit``, ``.numpy()``
its forward alone, as a floor; either may be ``None``.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np


class Workload(NamedTuple):
    make: Callable
    jax: Optional[Callable] = None
    numpy: Optional[Callable] = None


def _eager(fn):
    return fn


def _data(seed, shape, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _poly(x):
    return x ** 3 + 7 * x ** 2 + 5 * x + 10


def poly(n):
    """``x**3 + 7*x**2 + 5*x + 10``, sum, backward, on ``n`` float32 elements."""
    def make(lib, compile=_eager):
        x = lib.tensor(_data(0, n), requires_grad=True)
        f = compile(lambda x: _poly(x).sum())

        def run():
            f(x).backward()
            x.grad = None
        return run

    def jax(jax):
        g, x = jax.jit(jax.grad(lambda x: _poly(x).sum())), jax.numpy.asarray(_data(0, n))
        return lambda: g(x).block_until_ready()

    def numpy():
        x = _data(0, n)
        return lambda: _poly(x).sum()
    return Workload(make, jax, numpy)


def _graph(a, x1, x2, x3, x4):
    return (10 - (x3 * (x1 * a) + x4 * (x2 * a))).sum()


def _tutorial_make(lib, compile=_eager):
    f = compile(_graph)

    def run():
        f(*(lib.randn((5, 5), requires_grad=True) for _ in range(5))).backward()
    return run


def _tutorial_jax(jax):
    g = jax.jit(jax.grad(_graph, argnums=(0, 1, 2, 3, 4)))
    key = [jax.random.PRNGKey(0)]

    def run():
        key[0], *ks = jax.random.split(key[0], 6)
        jax.block_until_ready(g(*(jax.random.normal(k, (5, 5)) for k in ks)))
    return run


tutorial_5x5 = Workload(_tutorial_make, _tutorial_jax)
"""The tutorial's 5x5 graph, whole iteration (its five leaves made inside)."""


def chain(body):
    """``body(x, tanh)`` on a 5x5 leaf, sum, backward."""
    def make(lib, compile=_eager):
        x = lib.tensor(_data(1, (5, 5)), requires_grad=True)
        f = compile(lambda x: body(x, lib.Tensor.tanh).sum())

        def run():
            f(x).backward()
            x.grad = None
        return run

    def jax(jax):
        g = jax.jit(jax.grad(lambda x: body(x, jax.numpy.tanh).sum()))
        x = jax.numpy.asarray(_data(1, (5, 5)))
        return lambda: g(x).block_until_ready()

    def numpy():
        x = _data(1, (5, 5))
        return lambda: body(x, np.tanh).sum()
    return Workload(make, jax, numpy)


def _chain_100(x, tanh):
    """100 elementwise ops in a line."""
    for _ in range(25):
        x = tanh(x * 1.01 + 0.1) - 0.05
    return x


def _fan_in(x, tanh):
    """25 steps that each read the leaf again: its gradient gathers 26 contributions."""
    y = x
    for _ in range(25):
        y = tanh(y * 1.01 + 0.1) - x
    return y


def _mlp_data(tensor):
    """Inputs, targets and one-hot targets of the MLP workloads: batch 256 of 784 features, 10
    classes."""
    x, y = _data(3, (256, 784)), np.random.default_rng(0).integers(0, 10, 256)
    return tensor(x), tensor(y), tensor(np.eye(10, dtype=np.float32)[y])


def _mlp_params():
    return [_data(4, (784, 256), 0.05), np.zeros(256, np.float32), _data(5, (256, 10), 0.05),
            np.zeros(10, np.float32)]


def _mlp_loss(log_softmax, relu, x, onehot, w1, b1, w2, b2):
    return -(log_softmax(relu(x @ w1 + b1) @ w2 + b2, 1) * onehot).sum(1).mean()


def _mlp_jax(jax):
    """Both MLP workloads in JAX: one jitted SGD step."""
    x, _, onehot = _mlp_data(jax.numpy.asarray)
    loss = lambda ps: _mlp_loss(jax.nn.log_softmax, jax.nn.relu, x, onehot, *ps)  # noqa: E731
    step = jax.jit(lambda ps: [p - 0.01 * g for p, g in zip(ps, jax.grad(loss)(ps))])
    state = [[jax.numpy.asarray(p) for p in _mlp_params()]]

    def run():
        state[0] = jax.block_until_ready(step(state[0]))
    return run


def _mlp_step_make(lib, compile=_eager):
    nn = lib.nn
    lib.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x, y, _ = _mlp_data(lib.tensor)
    loss = compile(lambda x, y: nn.functional.cross_entropy(model(x), y))

    def run():
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    return run


mlp_step = Workload(_mlp_step_make, _mlp_jax)
"""MLP 784-256-10, batch 256, the tuned way: nn.Linear, F.cross_entropy, optim.SGD."""


def _mlp_train_step_make(lib, compile=_eager):
    nn = lib.nn
    lib.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x, y, _ = _mlp_data(lib.tensor)

    def train_step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    step = compile(train_step)
    return lambda: step(x, y)


mlp_train_step = Workload(_mlp_train_step_make, _mlp_jax)
"""``mlp_step`` as one function, ``zero_grad``, loss, ``backward`` and ``opt.step()``: compiled
whole (``nbgrad.compile``, ``torch.compile``) when the comparison's compiled side runs."""


def _mlp_plain_make(lib, compile=_eager):
    x, _, onehot = _mlp_data(lib.tensor)
    params = [lib.tensor(p, requires_grad=True) for p in _mlp_params()]
    loss = compile(lambda *ps: _mlp_loss(lib.log_softmax, lib.relu, x, onehot, *ps))

    def run():
        loss(*params).backward()
        with lib.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None
    return run


mlp_plain_ops = Workload(_mlp_plain_make, _mlp_jax)
"""The same MLP written with plain ops: ``relu(X @ W1 + b1) @ W2 + b2``, loss
``-(log_softmax(z, 1) * onehot).sum(1).mean()``, update ``p -= 0.01 * p.grad`` under no_grad."""


def _ce_data():
    return _data(2, (4096, 1000)), np.random.default_rng(2).integers(0, 1000, 4096)


def _ce_make(lib, compile=_eager):
    z0, t0 = _ce_data()
    z, t = lib.tensor(z0, requires_grad=True), lib.tensor(t0)
    f = compile(lib.nn.functional.cross_entropy)

    def run():
        f(z, t).backward()
        z.grad = None
    return run


def _ce_jax(jax):
    z0, t0 = _ce_data()
    g = jax.jit(jax.grad(lambda z: -jax.nn.log_softmax(z)[np.arange(4096), t0].mean()))
    z = jax.numpy.asarray(z0)
    return lambda: g(z).block_until_ready()


def _ce_numpy():
    z, t = _ce_data()

    def run():
        m = z.max(1, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(1, keepdims=True))
        return -logp[np.arange(4096), t].mean()
    return run


cross_entropy = Workload(_ce_make, _ce_jax, _ce_numpy)
"""log-softmax cross-entropy forward and backward on 4096x1000 logits."""


def _cnn_data(tensor):
    """Batch 64 of 1x28x28 images and their 10-class labels."""
    return tensor(_data(6, (64, 1, 28, 28))), tensor(np.random.default_rng(6).integers(0, 10, 64))


def _cnn_step_make(lib, compile=_eager):
    nn = lib.nn
    lib.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x, y = _cnn_data(lib.tensor)
    loss = compile(lambda x, y: nn.functional.cross_entropy(model(x), y))

    def run():
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    return run


cnn_step = Workload(_cnn_step_make)
"""Small CNN step: Conv2d(1,8,3)-ReLU-MaxPool2d(2)-Conv2d(8,16,3)-ReLU-MaxPool2d(2)-Flatten-Linear(400,10),
cross_entropy, batch 64 of 1x28x28, forward + backward + SGD step."""

WORKLOADS = {
    "poly_1e6": poly(10 ** 6),
    "poly_1e7": poly(10 ** 7),
    "tutorial_5x5": tutorial_5x5,
    "chain_100": chain(_chain_100),
    "fan_in_chain": chain(_fan_in),
    "mlp_step": mlp_step,
    "mlp_plain_ops": mlp_plain_ops,
    "mlp_train_step": mlp_train_step,
    "cross_entropy": cross_entropy,
    "cnn_step": cnn_step,
}


# -- lstm_step: a recurrent model's training step -------------------------------------------------------
def _lstm_step_make(lib, compile=_eager):
    nn = lib.nn
    lib.manual_seed(0)
    lstm, head = nn.LSTM(32, 128, batch_first=True), nn.Linear(128, 1)
    opt = lib.optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=0.01)
    x, target = lib.tensor(_data(6, (32, 50, 32))), lib.tensor(_data(7, (32, 1)))
    loss = compile(lambda x, target: nn.functional.mse_loss(head(lstm(x)[0][:, -1]), target))

    def run():
        opt.zero_grad()
        loss(x, target).backward()
        opt.step()
    return run


lstm_step = Workload(_lstm_step_make)
"""nn.LSTM(32, 128, batch_first=True) over 50 steps of a batch of 32, a Linear head on the last
output, MSE loss, backward, SGD step."""

WORKLOADS["lstm_step"] = lstm_step
