"""``Tensor.register_post_accumulate_grad_hook``: runs after a leaf's ``.grad`` got its sum,
once per backward (every path into the leaf summed first), with the leaf as argument; not
for ``autograd.grad``. Compared with PyTorch's calls."""
import numpy as np
import pytest
import torch

import nbgrad


def _run(lib):
    x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
    seen = []
    handle = x.register_post_accumulate_grad_hook(lambda t: seen.append((t is x, t.grad.clone())))
    y = x * x + x * 3.0                       # two paths into x: one call, with the sum
    y.backward(lib.ones(3, dtype=lib.float64))
    (x * 2.0).backward(lib.ones(3, dtype=lib.float64))   # accumulates onto the first .grad
    lib.autograd.grad((x * x).sum(), x)      # no accumulation: no call
    handle.remove()
    (x * 2.0).backward(lib.ones(3, dtype=lib.float64))
    return [(same, g.detach().numpy().copy()) for same, g in seen], x.grad.detach().numpy().copy()


def test_calls_match_pytorch():
    ours, our_grad = _run(nbgrad)
    theirs, their_grad = _run(torch)
    assert len(ours) == len(theirs) == 2
    for (a_same, a), (b_same, b) in zip(ours, theirs):
        assert a_same and b_same
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(our_grad, their_grad)


def test_hook_runs_after_the_other_leaves_of_its_step_and_can_read_grad():
    a = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    b = nbgrad.tensor([3.0, 4.0], requires_grad=True)
    order = []
    a.register_post_accumulate_grad_hook(lambda t: order.append(("a", t.grad.tolist())))
    b.register_post_accumulate_grad_hook(lambda t: order.append(("b", t.grad.tolist())))
    (a * b).sum().backward()
    assert sorted(order) == [("a", [3.0, 4.0]), ("b", [1.0, 2.0])]


@pytest.mark.parametrize("lib", [nbgrad, torch])
def test_errors(lib):
    x = lib.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="post accumulate grad hooks cannot be registered on non-leaf tensors"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        lib.ones(2).register_post_accumulate_grad_hook(lambda t: None)
