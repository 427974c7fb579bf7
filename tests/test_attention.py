"""F.scaled_dot_product_attention and nn.MultiheadAttention against PyTorch: values and the
gradients of query, key, value and every parameter (weights copied across), over masks
(bool, float, causal, key padding, fully masked rows), batch_first, kdim/vdim, bias=False,
need_weights / average_attn_weights, unbatched input; float64 gradcheck; dropout's scaling;
error texts."""
import math

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
import nbgrad.nn.functional as F
from helpers import assert_close, copy_state, nb, random_array, same_error, to_torch
from nbgrad.autograd import gradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def mask_for(kind, shape, seed):
    if kind is None:
        return None
    rng = np.random.default_rng(seed)
    if kind == "bool":
        m = rng.random(shape) < 0.7
        m[..., 0] = True                       # every row may attend somewhere
        return m
    if kind == "bool_dead":
        m = rng.random(shape) < 0.5
        m[..., 0, :] = False                   # the first query attends to nothing
        return m
    return rng.standard_normal(shape)          # float: added to the scores


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [((2, 3, 4), (2, 5, 4), (2, 5, 6)), ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)),
                                   ((3, 4), (5, 4), (5, 2))])
@pytest.mark.parametrize("mask,causal,scale", [(None, False, None), ("bool", False, None), ("float", False, 0.3),
                                               (None, True, None), ("bool_dead", False, None)])
def test_sdpa_matches_torch(torch, dtype, shape, mask, causal, scale):
    qs, ks, vs = shape
    arrays = [random_array(s, dtype, i) for i, s in enumerate(shape)]
    m = mask_for(mask, (qs[-2], ks[-2]), 9)
    if m is not None and m.dtype != bool:
        m = m.astype(dtype)
    ins_n = [nb(a, requires_grad=True) for a in arrays]
    ins_t = [to_torch(a, requires_grad=True) for a in arrays]
    y = F.scaled_dot_product_attention(*ins_n, attn_mask=None if m is None else nbgrad.tensor(m), is_causal=causal,
                                       scale=scale)
    yt = torch.nn.functional.scaled_dot_product_attention(*ins_t, attn_mask=None if m is None else torch.tensor(m),
                                                          is_causal=causal, scale=scale)
    assert_close(y, yt, **TOL[dtype])
    g = random_array(tuple(yt.shape), dtype, 7)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    for a, b in zip(ins_n, ins_t):
        assert_close(a.grad, b.grad, **TOL[dtype])


def test_sdpa_fully_masked_row_is_zero():
    q, k, v = nbgrad.randn(1, 2, 3), nbgrad.randn(1, 4, 3), nbgrad.randn(1, 4, 5)
    mask = nbgrad.tensor([[False] * 4, [True] * 4])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out[0, 0].tolist() == [0.0] * 5 and not np.isnan(out.numpy()).any()


def test_sdpa_gradcheck():
    q = nb(random_array((2, 3, 4), np.float64, 0), requires_grad=True)
    k = nb(random_array((2, 5, 4), np.float64, 1), requires_grad=True)
    v = nb(random_array((2, 5, 2), np.float64, 2), requires_grad=True)
    m = nbgrad.tensor(random_array((3, 5), np.float64, 3))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m), (q, k, v))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))


def test_sdpa_dropout_scales_kept_weights():
    """Uniform weights ``1/S`` over values of 1: each output is ``(kept count) * 2 / S``."""
    nbgrad.manual_seed(0)
    S = 400
    out = F.scaled_dot_product_attention(nbgrad.zeros(50, 1, 4), nbgrad.zeros(50, S, 4), nbgrad.ones(50, S, 1),
                                         dropout_p=0.5).numpy().ravel()
    kept = out * S / 2
    assert np.allclose(kept, np.round(kept)) and abs(out.mean() - 1.0) < 0.02 and out.std() > 0.01
    assert (F.scaled_dot_product_attention(nbgrad.zeros(2, 4), nbgrad.zeros(3, 4), nbgrad.ones(3, 2),
                                           dropout_p=1.0).numpy() == 0).all()


def test_sdpa_errors(torch):
    same_error(torch, lambda lib: lib.nn.functional.scaled_dot_product_attention(
        lib.ones(2, 3, 4), lib.ones(2, 5, 4), lib.ones(2, 5, 6), attn_mask=lib.ones(3, 5, dtype=lib.bool),
        is_causal=True))
    same_error(torch, lambda lib: lib.nn.functional.scaled_dot_product_attention(
        lib.ones(2, 3, 4, dtype=lib.float64), lib.ones(2, 5, 4), lib.ones(2, 5, 6)))


# -- MultiheadAttention ---------------------------------------------------------------------------------
def build(torch, dtype, *args, **kw):
    mt = torch.nn.MultiheadAttention(*args, **kw).to(torch.float64 if dtype == np.float64 else torch.float32)
    mn = nn.MultiheadAttention(*args, **kw)
    if dtype == np.float64:
        mn = mn.double()
    assert [n for n, _ in mn.named_parameters()] == [n for n, _ in mt.named_parameters()]
    return copy_state(mn, mt), mt


def run_both(torch, mn, mt, inputs, dtype, seed=0, **call):
    """Call both modules on ``inputs`` (arrays; equal arrays passed as the same tensor), compare
    output, weights, and the gradients of inputs and parameters."""
    made_n, made_t, ins_n, ins_t = {}, {}, [], []
    for a in inputs:
        if id(a) not in made_n:
            made_n[id(a)], made_t[id(a)] = nb(a, requires_grad=True), to_torch(a, requires_grad=True)
        ins_n.append(made_n[id(a)])
        ins_t.append(made_t[id(a)])
    kw_n = {k: (nbgrad.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in call.items()}
    kw_t = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in call.items()}
    (out, w), (out_t, w_t) = mn(*ins_n, **kw_n), mt(*ins_t, **kw_t)
    assert_close(out, out_t, **TOL[dtype])
    assert_close(w, w_t, **TOL[dtype])
    g = random_array(tuple(out_t.shape), dtype, seed)
    loss, loss_t = (out * nb(g)).sum(), (out_t * to_torch(g)).sum()
    if w is not None:
        gw = random_array(tuple(w_t.shape), dtype, seed + 1)
        loss, loss_t = loss + (w * nb(gw)).sum(), loss_t + (w_t * to_torch(gw)).sum()
    loss.backward()
    loss_t.backward()
    for k in made_n:
        assert_close(made_n[k].grad, made_t[k].grad, **TOL[dtype])
    params_t = dict(mt.named_parameters())
    for name, p in mn.named_parameters():
        assert_close(p.grad, params_t[name].grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_self_attention(torch, dtype, need_weights, average, batch_first):
    mn, mt = build(torch, dtype, 8, 2, batch_first=batch_first)
    x = random_array((2, 5, 8) if batch_first else (5, 2, 8), dtype, 1)
    run_both(torch, mn, mt, [x, x, x], dtype, need_weights=need_weights, average_attn_weights=average)


@pytest.mark.parametrize("masks", ["kpm_bool", "kpm_float", "attn2d_bool", "attn3d_float", "both_bool", "causal"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_masks(torch, masks, need_weights):
    dtype = np.float64
    mn, mt = build(torch, dtype, 6, 3)
    L, S, N, H = 4, 5, 2, 3
    q, kv = random_array((L, N, 6), dtype, 1), random_array((S, N, 6), dtype, 2)
    call = dict(need_weights=need_weights)
    if masks.startswith("kpm") or masks == "both_bool":
        kpm = np.zeros((N, S), bool)
        kpm[:, -2:] = True                    # the last two keys are padding
        call["key_padding_mask"] = kpm if masks != "kpm_float" else np.where(kpm, -1e9, 0.0)
    if masks.startswith("attn") or masks == "both_bool":
        shape = (L, S) if masks != "attn3d_float" else (N * H, L, S)
        m = mask_for("float" if masks.endswith("float") else "bool", shape, 3)
        call["attn_mask"] = ~m if m.dtype == bool else m        # MHA's True means "masked"
    if masks == "causal":
        q = kv = random_array((S, N, 6), dtype, 4)
        call["attn_mask"] = np.triu(np.ones((S, S), bool), 1)
        call["is_causal"] = True
    run_both(torch, mn, mt, [q, kv, kv], dtype, **call)


def test_mha_kdim_vdim_no_bias_and_unbatched(torch):
    dtype = np.float64
    mn, mt = build(torch, dtype, 4, 2, kdim=3, vdim=5, bias=False)
    q, k, v = random_array((3, 2, 4), dtype, 1), random_array((6, 2, 3), dtype, 2), random_array((6, 2, 5), dtype, 3)
    run_both(torch, mn, mt, [q, k, v], dtype)
    run_both(torch, mn, mt, [q[:, 0], k[:, 0], v[:, 0]], dtype, average_attn_weights=False,
             key_padding_mask=np.array([False, True, False, False, False, False]))


def test_mha_init_repr_dropout(torch):
    m = nn.MultiheadAttention(16, 4, dropout=0.5)
    assert repr(m) == repr(torch.nn.MultiheadAttention(16, 4, dropout=0.5))
    assert m.in_proj_bias.tolist() == [0.0] * 48 and m.out_proj.bias.tolist() == [0.0] * 16
    bound = math.sqrt(6.0 / (16 + 48))
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    x = nbgrad.randn(5, 2, 16)
    m.eval()
    a = m(x, x, x)[0]
    assert np.array_equal(a.detach().numpy(), m(x, x, x)[0].detach().numpy())          # no dropout in eval
    m.train()
    assert not np.allclose(m(x, x, x)[0].detach().numpy(), a.detach().numpy())


def test_mha_errors(torch):
    x = lambda lib, *s: lib.ones(*s)                          # noqa: E731
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(5, 2))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 4), x(lib, 3, 2, 4), x(lib, 3, 2, 4),
                                                                  is_causal=True))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 4), x(lib, 3, 2, 4), x(lib, 3, 2, 4),
                                                                  attn_mask=lib.ones(2, 3, dtype=lib.bool)))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 4), x(lib, 3, 2, 4), x(lib, 3, 2, 4),
                                                                  key_padding_mask=lib.ones(3, 3, dtype=lib.bool)))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 4), x(lib, 3, 2, 4), x(lib, 3, 2, 4),
                                                                  attn_mask=lib.ones(3, 3, dtype=lib.int64)))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 4), x(lib, 3, 2, 4), x(lib, 3, 2, 3)))
    same_error(torch, lambda lib: lib.nn.MultiheadAttention(4, 2)(x(lib, 3, 2, 2, 4), x(lib, 3, 2, 4),
                                                                  x(lib, 3, 2, 4)))


@pytest.mark.parametrize("bias_kv,zero_attn", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_bias_kv_and_zero_attn(torch, bias_kv, zero_attn, need_weights):
    dtype = np.float64
    mn, mt = build(torch, dtype, 6, 2, add_bias_kv=bias_kv, add_zero_attn=zero_attn)
    q, kv = random_array((4, 3, 6), dtype, 1), random_array((5, 3, 6), dtype, 2)
    kpm = np.zeros((3, 5), bool)
    kpm[0, -1] = True
    run_both(torch, mn, mt, [q, kv, kv], dtype, need_weights=need_weights, key_padding_mask=kpm,
             attn_mask=~mask_for("bool", (4, 5), 5))
    if bias_kv:
        assert tuple(mn.bias_k.shape) == (1, 1, 6) and float(mn.bias_k.abs().sum()) > 0


def test_sdpa_grouped_query_attention(torch):
    arrays = [random_array((2, 4, 3, 8), np.float64, 0), random_array((2, 2, 5, 8), np.float64, 1),
              random_array((2, 2, 5, 6), np.float64, 2)]
    ins_n = [nb(a, requires_grad=True) for a in arrays]
    ins_t = [to_torch(a, requires_grad=True) for a in arrays]
    y = F.scaled_dot_product_attention(*ins_n, enable_gqa=True)
    yt = torch.nn.functional.scaled_dot_product_attention(*ins_t, enable_gqa=True)
    assert_close(y, yt)
    y.sum().backward()
    yt.sum().backward()
    for a, b in zip(ins_n, ins_t):
        assert_close(a.grad, b.grad)
    same_error(torch, lambda lib: lib.nn.functional.scaled_dot_product_attention(
        lib.ones(2, 4, 3, 8), lib.ones(2, 3, 5, 8), lib.ones(2, 3, 5, 8), enable_gqa=True))


def test_sdpa_mask_dtype_errors(torch):
    for dtype in ("float64", "int64"):
        same_error(torch, lambda lib: lib.nn.functional.scaled_dot_product_attention(
            lib.ones(2, 3, 4), lib.ones(2, 3, 4), lib.ones(2, 3, 4),
            attn_mask=lib.zeros(3, 3, dtype=getattr(lib, dtype))))
