"""The composed losses (``nn/_losses.py``) and ``cross_entropy``'s options against PyTorch:
values and gradients of every differentiable operand over the reductions, float32 and
float64, the loss modules, float64 gradcheck and gradgradcheck, and error texts."""
import warnings

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
import nbgrad.nn.functional as F
from helpers import assert_close, random_array, same_error
from nbgrad.autograd import gradcheck, gradgradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _signs(shape, seed):
    return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0)


def _probabilities(shape, seed):
    a = np.random.default_rng(seed).random(shape) + 0.05
    return a / a.sum(-1, keepdims=True)


# name -> (operands as (array, differentiable), keyword arguments); float64 arrays, cast per test
def cases():
    x, t = random_array((4, 5), np.float64, 0, -4, 4), random_array((4, 5), np.float64, 1, 0, 1)
    pw, w = random_array((5,), np.float64, 2, 0.5, 3), random_array((4, 5), np.float64, 3, 0.5, 2)
    y = random_array((4, 5), np.float64, 4)
    big = np.array([[-60.0, -20.0, 0.0, 30.0, 800.0]])            # where a naive formula overflows
    logp = np.log(_probabilities((4, 5), 5))
    q = _probabilities((4, 5), 6)
    a, b = random_array((6, 3), np.float64, 7), random_array((6, 3), np.float64, 8)
    sign6 = _signs((6,), 9)
    sign6[0] = 0                                                   # neither 1 nor -1: no loss
    return {
        "bce_logits": ("binary_cross_entropy_with_logits", [(x, True), (t, True)], {}),
        "bce_logits_weights": ("binary_cross_entropy_with_logits", [(x, True), (t, True)],
                               dict(weight=w, pos_weight=pw)),
        "bce_logits_pos_weight": ("binary_cross_entropy_with_logits", [(x, True), (t, False)], dict(pos_weight=pw)),
        "bce_logits_large": ("binary_cross_entropy_with_logits", [(big, True), (np.full((1, 5), 0.3), False)], {}),
        "smooth_l1": ("smooth_l1_loss", [(x, True), (y, True)], {}),
        "smooth_l1_beta": ("smooth_l1_loss", [(x, True), (y, True)], dict(beta=0.5)),
        "smooth_l1_beta0": ("smooth_l1_loss", [(x, True), (y, False)], dict(beta=0.0)),
        "huber": ("huber_loss", [(x, True), (y, True)], {}),
        "huber_delta": ("huber_loss", [(x, True), (y, True)], dict(delta=2.5)),
        "huber_weight": ("huber_loss", [(x, True), (y, False)], dict(delta=0.7, weight=w)),
        "kl_div": ("kl_div", [(logp, True), (q, True)], {}),
        "kl_div_zero_target": ("kl_div", [(logp, True), (np.where(q < 0.15, 0.0, q), False)], {}),
        "kl_div_log_target": ("kl_div", [(logp, True), (np.log(q), True)], dict(log_target=True)),
        "cosine_embedding": ("cosine_embedding_loss", [(a, True), (b, True), (sign6, False)], {}),
        "cosine_embedding_margin": ("cosine_embedding_loss", [(a, True), (b, True), (sign6, False)],
                                    dict(margin=0.2)),
        "cosine_embedding_1d": ("cosine_embedding_loss", [(a[0], True), (b[0], True), (np.array(-1.0), False)],
                                dict(margin=-0.5)),
        "margin_ranking": ("margin_ranking_loss", [(a[:, 0], True), (b[:, 0], True), (_signs((6,), 10), False)], {}),
        "margin_ranking_margin": ("margin_ranking_loss", [(a, True), (b, True), (_signs((6, 3), 11), False)],
                                  dict(margin=0.5)),
    }


CASES = cases()
REDUCTIONS = {"kl_div": ["none", "sum", "mean", "batchmean"]}


def params():
    for key, (fn, _, _) in CASES.items():
        for reduction in REDUCTIONS.get(fn, ["none", "sum", "mean"]):
            yield key, reduction


def run(lib, fn, operands, kw, reduction, dtype, grad_out=None):
    conv = (lambda a: lib.tensor(np.asarray(a, dtype)))
    ts = [conv(a).requires_grad_(req) for a, req in operands]
    kw = {k: conv(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # kl_div's 'mean' warning (tested below)
        loss = getattr(lib.nn.functional, fn)(*ts, reduction=reduction, **kw)
    g = random_array(tuple(loss.shape), dtype, 12) if grad_out is None else grad_out
    loss.backward(lib.tensor(g))
    return loss, [t.grad for t in ts]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("key,reduction", list(params()))
def test_matches_torch(torch, key, reduction, dtype):
    fn, operands, kw = CASES[key]
    loss, grads = run(nbgrad, fn, operands, kw, reduction, dtype)
    tloss, tgrads = run(torch, fn, operands, kw, reduction, dtype)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    assert_close(loss, tloss, **tol)
    for g, tg in zip(grads, tgrads):
        assert_close(g, tg, **tol)
    assert np.isfinite(loss.detach().numpy()).all()


@pytest.mark.parametrize("key", list(CASES))
def test_gradcheck_and_gradgradcheck(key):
    fn, operands, kw = CASES[key]
    if key == "bce_logits_large":                      # finite differences at 800: the point is finiteness
        operands = [(np.array([[-3.0, -1.0, 0.5, 2.0, 4.0]]), True), operands[1]]
    tensors = [nbgrad.tensor(a).requires_grad_(req) for a, req in operands]
    kw = {k: nbgrad.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    reduction = "batchmean" if fn == "kl_div" else "sum"

    def f(*ts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(F, fn)(*ts, reduction=reduction, **kw)
    assert gradcheck(f, tensors)
    assert gradgradcheck(f, tensors)


# -- cross_entropy's options -----------------------------------------------------------------------
CE = [dict(), dict(label_smoothing=0.2), dict(ignore_index=2), dict(ignore_index=2, label_smoothing=0.1),
      dict(weight=True), dict(weight=True, label_smoothing=0.3, ignore_index=1), dict(probabilities=True),
      dict(probabilities=True, label_smoothing=0.25), dict(probabilities=True, weight=True, label_smoothing=0.1),
      dict(spatial=True, label_smoothing=0.2, ignore_index=0)]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("opts", CE, ids=str)
def test_cross_entropy_options_match_torch(torch, opts, reduction):
    opts = dict(opts)
    shape = (4, 5, 3) if opts.pop("spatial", False) else (6, 5)
    x = random_array(shape, np.float64, 0)
    if opts.pop("probabilities", False):
        target = np.moveaxis(_probabilities(shape[:1] + shape[2:] + shape[1:2], 1), -1, 1)
    else:
        target = np.random.default_rng(1).integers(0, shape[1], shape[:1] + shape[2:])
    weight = random_array((shape[1],), np.float64, 2, 0.5, 2) if opts.pop("weight", False) else None
    out = []
    for lib in (nbgrad, torch):
        xt = lib.tensor(x, requires_grad=True)
        loss = lib.nn.functional.cross_entropy(xt, lib.tensor(target), None if weight is None else lib.tensor(weight),
                                               reduction=reduction, **opts)
        loss.backward(lib.tensor(random_array(tuple(loss.shape), np.float64, 3)))
        out.append((loss, xt.grad))
    assert_close(out[0][0], out[1][0], rtol=1e-10, atol=1e-12)
    assert_close(out[0][1], out[1][1], rtol=1e-10, atol=1e-12)


def test_cross_entropy_smoothing_gradcheck():
    x = nbgrad.tensor(random_array((4, 5), np.float64, 0), requires_grad=True)
    target = nbgrad.tensor(np.array([0, 2, 4, 2]))
    weight = nbgrad.tensor(random_array((5,), np.float64, 1, 0.5, 2))

    def f(x):
        return F.cross_entropy(x, target, weight, ignore_index=4, label_smoothing=0.2)
    assert gradcheck(f, [x]) and gradgradcheck(f, [x])


# -- modules ------------------------------------------------------------------------------------------
MODULES = [("BCEWithLogitsLoss", "bce_logits_weights", lambda kw: kw, ["weight", "pos_weight"]),
           ("SmoothL1Loss", "smooth_l1_beta", lambda kw: kw, []),
           ("HuberLoss", "huber_delta", lambda kw: kw, []),
           ("KLDivLoss", "kl_div_log_target", lambda kw: dict(kw, reduction="batchmean"), []),
           ("CosineEmbeddingLoss", "cosine_embedding_margin", lambda kw: kw, []),
           ("MarginRankingLoss", "margin_ranking_margin", lambda kw: kw, [])]


@pytest.mark.parametrize("name,key,make_kw,buffers", MODULES, ids=[m[0] for m in MODULES])
def test_modules_match_torch(torch, name, key, make_kw, buffers):
    _, operands, kw = CASES[key]
    out = []
    for lib in (nbgrad, torch):
        conv = {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in make_kw(kw).items()}
        module = getattr(lib.nn, name)(**conv)
        ts = [lib.tensor(a).requires_grad_(req) for a, req in operands]
        loss = module(*ts)
        loss.backward()
        out.append((loss, [t.grad for t in ts], repr(module), list(module.state_dict())))
    assert_close(out[0][0], out[1][0], rtol=1e-10, atol=1e-12)
    for g, tg in zip(out[0][1], out[1][1]):
        assert_close(g, tg, rtol=1e-10, atol=1e-12)
    assert out[0][2] == out[1][2] and out[0][3] == out[1][3] == buffers


def test_legacy_reduction_flags(torch):
    x, y = random_array((3, 4), np.float64, 0), random_array((3, 4), np.float64, 1)
    for lib in (nbgrad, torch):
        with pytest.warns(UserWarning):
            loss = lib.nn.SmoothL1Loss(size_average=False)(lib.tensor(x), lib.tensor(y))
        assert loss.shape == ()
    with pytest.warns(UserWarning):
        n = nbgrad.nn.SmoothL1Loss(reduce=False)(nbgrad.tensor(x), nbgrad.tensor(y))
    assert tuple(n.shape) == (3, 4)


def test_kl_div_mean_warns_like_torch(torch):
    x, y = np.log(_probabilities((2, 3), 0)), _probabilities((2, 3), 1)
    messages = []
    for lib in (nbgrad, torch):
        with pytest.warns(UserWarning) as record:
            lib.nn.functional.kl_div(lib.tensor(x), lib.tensor(y))
        messages.append(str(record[0].message))
    assert messages[0] == messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.kl_div(nbgrad.tensor(x), nbgrad.tensor(y), reduction="batchmean")


def test_size_mismatch_warns_like_torch(torch):
    for fn in ("smooth_l1_loss", "huber_loss"):
        messages = []
        for lib in (nbgrad, torch):
            with pytest.warns(UserWarning) as record:
                getattr(lib.nn.functional, fn)(lib.ones(3, 1, dtype=lib.float64), lib.ones(3, dtype=lib.float64))
            messages.append(str(record[0].message))
        assert messages[0] == messages[1].replace("torch.", "nbgrad.") or \
            messages[0].replace("nbgrad.", "torch.") == messages[1]


def _bad(fn, shapes, **kw):
    def call(lib):
        return getattr(lib.nn.functional, fn)(*[lib.ones(*s, dtype=lib.float64) for s in shapes], **kw)
    return call


BAD = [_bad("binary_cross_entropy_with_logits", [(3, 4), (2, 4)]),
       _bad("binary_cross_entropy_with_logits", [(3, 4), (3, 4)], reduction="x"),
       _bad("smooth_l1_loss", [(3,), (3,)], beta=-1.0),
       _bad("huber_loss", [(3,), (3,)], delta=0.0),
       _bad("huber_loss", [(3,), (3,)], weight=None, delta=-1.0),
       _bad("kl_div", [(3,), (3,)], reduction="bad"),
       _bad("cosine_embedding_loss", [(3, 4), (3, 4), (3, 1)]),
       _bad("cosine_embedding_loss", [(4,), (4,), (1,)]),
       _bad("cosine_embedding_loss", [(3, 2, 2), (3, 2, 2), (3,)]),
       lambda lib: lib.nn.functional.cosine_embedding_loss(lib.ones(3, 4), lib.ones(3, 4), lib.tensor(1.0)),
       _bad("margin_ranking_loss", [(3, 4), (3, 4), (3,)])]


@pytest.mark.parametrize("call", BAD)
def test_errors_match_torch(torch, call):
    same_error(torch, call)


def test_huber_weight_shape_error(torch):
    def call(lib):
        return lib.nn.functional.huber_loss(lib.ones(3), lib.ones(3), weight=lib.ones(2))
    same_error(torch, call)
