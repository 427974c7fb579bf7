"""RNN / LSTM / GRU layers and cells against PyTorch: the same weights (copied through the
state dict, so the names and shapes must match), outputs, final states and every parameter's
gradient; batch_first, num_layers, bias=False, initial states, unbatched input, dropout
between layers, float64 gradcheck, init range, repr and error texts."""
import warnings

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
from helpers import assert_close, copy_state, nb, random_array, same_error, to_torch
from nbgrad.autograd import gradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def build(torch, name, dtype, *args, **kw):
    """The layer in both libraries with torch's initial weights copied into nbgrad's."""
    mt = getattr(torch.nn, name)(*args, **kw).to(torch.float64 if dtype == np.float64 else torch.float32)
    mn = getattr(nn, name)(*args, **kw)
    if dtype == np.float64:
        mn = mn.double()
    return copy_state(mn, mt), mt


def compare(mn, mt, outs_n, outs_t, dtype, seed):
    """Flattened outputs close; a random weighting of them back-propagated in both libraries
    gives the same gradients for inputs and every parameter."""
    loss_n, loss_t = 0, 0
    for k, (a, b) in enumerate(zip(outs_n, outs_t)):
        assert_close(a, b, **TOL[dtype])
        w = random_array(tuple(b.shape), dtype, seed + k)
        loss_n = loss_n + (a * nb(w)).sum()
        loss_t = loss_t + (b * to_torch(w)).sum()
    loss_n.backward()
    loss_t.backward()
    grads_t = dict(mt.named_parameters())
    for name, p in mn.named_parameters():
        assert_close(p.grad, grads_t[name].grad, **TOL[dtype])


def flat(out):
    if isinstance(out, tuple):
        return [x for o in out for x in flat(o)]
    return [out]


LAYERS = [("RNN", {}), ("RNN", dict(nonlinearity="relu")), ("LSTM", {}), ("GRU", {})]


@pytest.mark.parametrize("name,kw", LAYERS, ids=["RNN", "RNNrelu", "LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first,num_layers,bias", [(False, 1, True), (True, 2, True), (False, 3, False)])
def test_layer_matches_torch(torch, name, kw, dtype, batch_first, num_layers, bias):
    mn, mt = build(torch, name, dtype, 5, 4, num_layers=num_layers, bias=bias, batch_first=batch_first, **kw)
    x = random_array((3, 6, 5) if batch_first else (6, 3, 5), dtype, 1)
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    outs_n, outs_t = flat(mn(xn)), flat(mt(xt))
    compare(mn, mt, outs_n + [xn], outs_t + [xt], dtype, 2)
    assert_close(xn.grad, xt.grad, **TOL[dtype])


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_initial_states_and_their_gradients(torch, name):
    mn, mt = build(torch, name, np.float64, 3, 4, num_layers=2)
    x = random_array((5, 2, 3), np.float64, 3)
    states = [random_array((2, 2, 4), np.float64, 4 + k) for k in range(2 if name == "LSTM" else 1)]
    sn = [nb(s, requires_grad=True) for s in states]
    st = [to_torch(s, requires_grad=True) for s in states]
    hn, ht = (tuple(sn), tuple(st)) if name == "LSTM" else (sn[0], st[0])
    compare(mn, mt, flat(mn(nb(x), hn)), flat(mt(to_torch(x), ht)), np.float64, 5)
    for a, b in zip(sn, st):
        assert_close(a.grad, b.grad)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input(torch, name, batch_first):
    mn, mt = build(torch, name, np.float64, 3, 4, num_layers=2, batch_first=batch_first)
    x = random_array((5, 3), np.float64, 6)
    n_states = 2 if name == "LSTM" else 1
    states = [random_array((2, 4), np.float64, 7 + k) for k in range(n_states)]
    hn = tuple(nb(s) for s in states) if name == "LSTM" else nb(states[0])
    ht = tuple(to_torch(s) for s in states) if name == "LSTM" else to_torch(states[0])
    compare(mn, mt, flat(mn(nb(x), hn)), flat(mt(to_torch(x), ht)), np.float64, 8)
    outs = flat(mn(nb(x)))
    assert [tuple(o.shape) for o in outs] == [(5, 4)] + [(2, 4)] * n_states


CELLS = [("RNNCell", {}), ("RNNCell", dict(nonlinearity="relu")), ("LSTMCell", {}), ("GRUCell", {}),
         ("GRUCell", dict(bias=False))]


@pytest.mark.parametrize("name,kw", CELLS, ids=["RNNCell", "RNNCellrelu", "LSTMCell", "GRUCell", "GRUCellnobias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_matches_torch(torch, name, kw, dtype):
    mn, mt = build(torch, name, dtype, 5, 3, **kw)
    x = random_array((4, 5), dtype, 1)
    n_states = 2 if name == "LSTMCell" else 1
    states = [random_array((4, 3), dtype, 2 + k) for k in range(n_states)]
    hn = tuple(nb(s) for s in states) if n_states == 2 else nb(states[0])
    ht = tuple(to_torch(s) for s in states) if n_states == 2 else to_torch(states[0])
    compare(mn, mt, flat(mn(nb(x), hn)), flat(mt(to_torch(x), ht)), dtype, 3)
    # no state given: zeros; unbatched: 1-D in, 1-D out
    for a, b in zip(flat(mn(nb(x))), flat(mt(to_torch(x)))):
        assert_close(a, b, **TOL[dtype])
    for a, b in zip(flat(mn(nb(x[0]))), flat(mt(to_torch(x[0])))):
        assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_gradcheck(name):
    m = getattr(nn, name)(3, 2).double()
    x = nb(random_array((4, 2, 3) if "Cell" not in name else (2, 3), np.float64, 0), requires_grad=True)
    params = [p for _, p in m.named_parameters()]

    def fn(x, *weights):
        for (pname, _), w in zip(m.named_parameters(), weights):
            m._parameters[pname] = w
        return flat(m(x))[0]
    assert gradcheck(fn, (x, *params))


def test_dropout_between_layers():
    m = nn.LSTM(4, 8, num_layers=2, dropout=0.5)
    x = nbgrad.randn(3, 2, 4)
    m.eval()
    a, b = m(x)[0], m(x)[0]
    assert np.array_equal(a.detach().numpy(), b.detach().numpy())       # eval: no dropout
    m.train()
    nbgrad.manual_seed(0)
    c = m(x)[0]
    nbgrad.manual_seed(1)
    d = m(x)[0]
    assert not np.allclose(c.detach().numpy(), d.detach().numpy())       # train: dropout draws differ
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        nn.GRU(4, 3, dropout=0.2)
    assert "non-zero dropout expects num_layers greater than 1" in str(w[0].message)


def test_parameter_names_init_and_repr(torch):
    m = nn.LSTM(4, 3, num_layers=2)
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in torch.nn.LSTM(4, 3, num_layers=2).named_parameters()]
    big = nn.GRU(10, 100)
    w = np.concatenate([p.detach().numpy().ravel() for p in big.parameters()])
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.099 and abs(w.mean()) < 0.005
    cases = [("RNN", (4, 3), dict(num_layers=2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.1)),
             ("LSTM", (4, 3), {}), ("GRU", (2, 5), dict(num_layers=3)), ("LSTMCell", (4, 3), dict(bias=False)),
             ("RNNCell", (4, 3), dict(nonlinearity="relu")), ("GRUCell", (4, 3), {})]
    for name, args, kw in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert repr(getattr(nn, name)(*args, **kw)) == repr(getattr(torch.nn, name)(*args, **kw))
    assert nn.RNN(4, 3, 2, "relu").nonlinearity == "relu"


def test_errors(torch):
    def layer(name, *a, **k):
        return lambda lib: getattr(lib.nn, name)(*a, **k)
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(2, 3, 4, 5)))
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(2, 3, 5)))
    same_error(torch, lambda lib: lib.nn.GRU(4, 3)(lib.randn(2, 3, 4), lib.randn(1, 2, 3)))
    same_error(torch, lambda lib: lib.nn.GRU(4, 3)(lib.randn(2, 3, 4), lib.randn(2, 3)))
    same_error(torch, lambda lib: lib.nn.GRU(4, 3)(lib.randn(3, 4), lib.randn(1, 2, 3)))
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(2, 3, 4), (lib.randn(1, 2, 3), lib.randn(1, 3, 3))))
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(2, 3, 4), (lib.randn(1, 3, 3), lib.randn(1, 2, 3))))
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(2, 3, 4), (lib.randn(3, 3), lib.randn(3, 3))))
    same_error(torch, lambda lib: lib.nn.LSTM(4, 3)(lib.randn(3, 4), (lib.randn(1, 3, 3), lib.randn(1, 3, 3))))
    same_error(torch, layer("RNN", 4, 3, nonlinearity="gelu"))
    same_error(torch, layer("RNN", 4, 0))
    same_error(torch, layer("RNN", 4, 3.0))
    same_error(torch, layer("RNN", 4, 3, num_layers=0))
    same_error(torch, layer("RNN", 4, 3, dropout=1.5))
    same_error(torch, layer("LSTM", 4, 3, proj_size=3))
    same_error(torch, lambda lib: lib.nn.RNNCell(4, 3)(lib.randn(2, 3, 4)))
    same_error(torch, lambda lib: lib.nn.RNNCell(4, 3)(lib.randn(2, 4), lib.randn(2, 3, 3)))
    same_error(torch, lambda lib: lib.nn.RNNCell(4, 3)(lib.randn(2, 5)))
    same_error(torch, lambda lib: lib.nn.RNNCell(4, 3)(lib.randn(2, 4), lib.randn(3, 3)))
    same_error(torch, lambda lib: lib.nn.LSTMCell(4, 3)(lib.randn(2, 4), (lib.randn(3, 3), lib.randn(2, 3))))
    same_error(torch, lambda lib: lib.nn.RNNCell(4, 3, nonlinearity="x")(lib.randn(2, 4)))
    with pytest.raises(NotImplementedError, match="single-direction"):
        nn.LSTM(4, 3, bidirectional=True)


def test_training_trajectory_matches_torch(torch):
    """The benchmark's model (LSTM, Linear head on the last output, MSE, SGD), small: five
    steps from the same weights give the same losses in both libraries."""
    lstm_n, lstm_t = build(torch, "LSTM", np.float64, 3, 6, batch_first=True, num_layers=2)
    head_t = torch.nn.Linear(6, 1).double()
    head_n = copy_state(nn.Linear(6, 1).double(), head_t)
    x, y = random_array((4, 7, 3), np.float64, 1), random_array((4, 1), np.float64, 2)
    runs = []
    for lib, lstm, head in ((nbgrad, lstm_n, head_n), (torch, lstm_t, head_t)):
        opt = lib.optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=0.1)
        xs, ys = lib.tensor(x), lib.tensor(y)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = lib.nn.functional.mse_loss(head(lstm(xs)[0][:, -1]), ys)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append(losses)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10)
    assert runs[0][-1] < runs[0][0]


def test_flatten_parameters_and_all_weights(torch):
    m, mt = nn.GRU(3, 2, num_layers=2), torch.nn.GRU(3, 2, num_layers=2)
    m.flatten_parameters()
    assert [[tuple(p.shape) for p in layer] for layer in m.all_weights] == \
        [[tuple(p.shape) for p in layer] for layer in mt.all_weights]
