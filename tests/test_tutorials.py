"""The tutorial programs (examples/tutorials.py): gradients against closed forms, and the
very same code run with PyTorch on the same random inputs."""
import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import nbgrad
from helpers import assert_close

_PATH = pathlib.Path(__file__).resolve().parent.parent / "examples" / "tutorials.py"
_spec = importlib.util.spec_from_file_location("nbgrad_tutorials", _PATH)
tutorials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorials)

_RANDOM = ("randn", "rand", "randint")


class Recording:
    """``nbgrad`` as seen by a program, remembering what its random factories returned."""

    def __init__(self):
        self.draws = []

    def __getattr__(self, name):
        attr = getattr(nbgrad, name)
        if name not in _RANDOM:
            return attr

        def draw(*args, **kwargs):
            t = attr(*args, **kwargs)
            self.draws.append(t.detach().numpy().copy())
            return t
        return draw


class Replay:
    """``torch`` whose random factories hand back, in order, what nbgrad's returned."""

    def __init__(self, torch, draws):
        self.torch, self.draws = torch, list(draws)

    def __getattr__(self, name):
        attr = getattr(self.torch, name)
        if name not in _RANDOM:
            return attr

        def draw(*args, requires_grad=False, **kwargs):
            expected = attr(*args, **kwargs)                # same call, for its shape and dtype
            value = self.draws.pop(0)
            assert tuple(expected.shape) == value.shape
            return self.torch.from_numpy(value.copy()).requires_grad_(requires_grad)
        return draw


def run_both(program, **kwargs):
    """``program`` on nbgrad, then on PyTorch with the same random draws."""
    torch = pytest.importorskip("torch")
    recording = Recording()
    mine = program(recording, **kwargs)
    replay = Replay(torch, recording.draws)
    theirs = program(replay, **kwargs)
    assert not replay.draws, "the programs drew different numbers of random tensors"
    return mine, theirs


def numpy_of(t):
    return t.detach().numpy().astype(np.float64)


# -- (a) the 5x5 graph -----------------------------------------------------------------------------
def check_graph_5x5(r):
    a, x1, x2, x3, x4 = (numpy_of(r[k]) for k in ("a", "x1", "x2", "x3", "x4"))
    assert r["L"].shape == () and r["L"].grad_fn.name() == "SumBackward0"
    np.testing.assert_allclose(r["L"].item(), (10 - (x3 * x1 * a + x4 * x2 * a)).sum(), rtol=1e-5)
    expected = {"a": -(x3 * x1 + x4 * x2), "x1": -x3 * a, "x2": -x4 * a, "x3": -x1 * a, "x4": -x2 * a}
    for name, grad in expected.items():
        assert r[name].grad.shape == (5, 5) and r[name].grad.dtype is nbgrad.float32
        np.testing.assert_allclose(r[name].grad.numpy(), grad, rtol=1e-5, atol=1e-6)


def test_graph_5x5_closed_form():
    nbgrad.manual_seed(0)
    check_graph_5x5(tutorials.graph_5x5())


def test_graph_5x5_matches_torch():
    mine, theirs = run_both(tutorials.graph_5x5)
    check_graph_5x5(mine)
    assert_close(mine["L"], theirs["L"])
    for name in ("a", "x1", "x2", "x3", "x4"):
        assert_close(mine[name].grad, theirs[name].grad)


# -- (b) linear regression ---------------------------------------------------------------------------
def test_linear_regression_first_gradient_closed_form():
    r = tutorials.linear_regression(steps=1, lr=0.0)
    x, y = numpy_of(r["x"]), numpy_of(r["y"])
    w, b = r["w"].item(), r["b"].item()
    assert r["losses"][0] == pytest.approx(np.mean((w * x + b - y) ** 2), rel=1e-5)
    assert r["w"].grad.tolist() == [0.0] and r["b"].grad.tolist() == [0.0]       # zeroed after the step


def test_linear_regression_converges_to_least_squares():
    r = tutorials.linear_regression()
    x, y = numpy_of(r["x"]), numpy_of(r["y"])
    (w_ls, b_ls), *_ = np.linalg.lstsq(np.hstack([x, np.ones_like(x)]), y[:, 0], rcond=None)
    assert r["w"].item() == pytest.approx(w_ls, abs=2e-3) and r["b"].item() == pytest.approx(b_ls, abs=2e-3)
    assert abs(w_ls - 3) < 0.05 and abs(b_ls - 2) < 0.05
    assert r["w"].is_leaf and r["w"].requires_grad and r["w"].grad.tolist() == [0.0]
    assert all(later <= earlier + 1e-7 for earlier, later in zip(r["losses"], r["losses"][1:]))


def test_linear_regression_matches_torch():
    mine, theirs = run_both(tutorials.linear_regression, steps=100)
    np.testing.assert_allclose(mine["losses"], theirs["losses"], rtol=1e-4)
    assert_close(mine["w"], theirs["w"], rtol=1e-4, atol=1e-5)
    assert_close(mine["b"], theirs["b"], rtol=1e-4, atol=1e-5)


# -- (c) the two-layer network ---------------------------------------------------------------------------
def test_two_layer_network_first_gradients_closed_form():
    r = tutorials.two_layer_network(steps=1, lr=0.0)
    X, Y = numpy_of(r["X"]), numpy_of(r["Y"])
    W1, b1, W2, b2 = (numpy_of(p) for p in r["params"])
    pre = X @ W1 + b1
    h = np.maximum(pre, 0)
    out = 1 / (1 + np.exp(-(h @ W2 + b2)))
    assert r["losses"][0] == pytest.approx(np.mean((out - Y) ** 2), rel=1e-5)
    d_out = 2 * (out - Y) / out.size
    d_z2 = d_out * out * (1 - out)
    d_h = d_z2 @ W2.T * (pre > 0)
    expected = [X.T @ d_h, d_h.sum(0), h.T @ d_z2, d_z2.sum(0)]
    for got, want in zip(r["first_grads"], expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-7)


def test_two_layer_network_learns():
    r = tutorials.two_layer_network()
    assert r["losses"][-1] < r["losses"][0] / 10
    for p in r["params"]:
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
        assert not p.grad.numpy().any()                # zeroed after each step


def test_two_layer_network_matches_torch():
    mine, theirs = run_both(tutorials.two_layer_network, steps=50)
    np.testing.assert_allclose(mine["losses"], theirs["losses"], rtol=1e-4)
    for got, want in zip(mine["first_grads"], theirs["first_grads"]):
        assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(mine["params"], theirs["params"]):
        assert_close(got, want, rtol=1e-3, atol=1e-5)


# -- (d), (e): closed forms ------------------------------------------------------------------------------
def test_square_plus_three():
    r = tutorials.square_plus_three()
    assert r["x"].grad.item() == 14.0 and r["x"].grad.shape == ()
    assert r["f"].item() == 52.0
    mine, theirs = run_both(tutorials.square_plus_three)
    assert_close(mine["x"].grad, theirs["x"].grad)


def test_cubic_polynomial():
    r = tutorials.cubic_polynomial()
    x = numpy_of(r["x"])
    np.testing.assert_allclose(r["y"].detach().numpy(), x ** 3 + 7 * x ** 2 + 5 * x + 10, rtol=1e-6)
    np.testing.assert_allclose(r["x"].grad.numpy(), 3 * x ** 2 + 14 * x + 5, rtol=1e-6)
    mine, theirs = run_both(tutorials.cubic_polynomial)
    assert_close(mine["x"].grad, theirs["x"].grad)


# -- (f) the RNN cell ---------------------------------------------------------------------------------
def check_rnn_cell(r):
    x, prev_h, W_h, W_x = (numpy_of(r[k]) for k in ("x", "prev_h", "W_h", "W_x"))
    h = np.tanh(W_x @ x.T + W_h @ prev_h.T)
    np.testing.assert_allclose(r["next_h"].detach().numpy(), h, rtol=1e-5, atol=1e-6)
    d = 1 - h ** 2                                   # (20, 1)
    np.testing.assert_allclose(r["W_h"].grad.numpy(), d @ prev_h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["W_x"].grad.numpy(), d @ x, rtol=1e-4, atol=1e-6)
    assert r["x"].grad is None and not r["x"].requires_grad and r["prev_h"].grad is None


def test_rnn_cell_closed_form():
    nbgrad.manual_seed(0)
    check_rnn_cell(tutorials.rnn_cell())


def test_rnn_cell_matches_torch():
    torch = pytest.importorskip("torch")
    recording = Recording()
    mine = tutorials.rnn_cell(recording, nbgrad.autograd.Variable)
    theirs = tutorials.rnn_cell(Replay(torch, recording.draws), torch.autograd.Variable)
    check_rnn_cell(mine)
    for name in ("W_h", "W_x"):
        assert_close(mine[name].grad, theirs[name].grad, rtol=1e-5, atol=1e-6)


# -- the script --------------------------------------------------------------------------------------
def test_script_runs_and_prints_gradients():
    proc = subprocess.run([sys.executable, str(_PATH)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "df/dx = 14.0" in out
    for tag in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        assert tag in out
    assert "import nbgrad as torch" in _PATH.read_text().splitlines()
