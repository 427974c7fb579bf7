"""``nbgrad.autograd.gradcheck`` and ``gradgradcheck``: they pass right gradients and catch wrong ones."""
import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import Function, gradcheck, gradgradcheck
from nbgrad.autograd.gradcheck import GradcheckError

from helpers import noncontiguous


def dbl(*shape, seed=0, requires_grad=True):
    a = np.random.default_rng(seed).uniform(-2, 2, shape)
    return nbgrad.tensor(a, dtype=nbgrad.float64, requires_grad=requires_grad)


def wrong_backward(scale=0.5, which=0):
    """``x * y`` whose backward scales the gradient of input ``which``."""
    class WrongMul(Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * y

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            gx, gy = grad * y, grad * x
            return (gx * scale, gy) if which == 0 else (gx, gy * scale)
    return WrongMul


def test_right_gradients_pass():
    x, y = dbl(3), dbl(3, seed=1)
    assert gradcheck(lambda a, b: (a * b).sin() + a.exp(), (x, y))
    assert gradcheck(lambda a: a.tanh() / (a * a + 1), (dbl(2, 3),))
    assert gradcheck(lambda a: a * 3, (dbl(),))                  # 0-d


def test_broadcasting_inputs():
    assert gradcheck(lambda a, b, c: a * b + c, (dbl(3), dbl(2, 3, seed=1), dbl(2, 1, seed=2)))
    assert not gradcheck(wrong_backward().apply, (dbl(3), dbl(2, 3, seed=1)), raise_exception=False)


def test_non_contiguous_inputs():
    a = nbgrad.from_numpy(noncontiguous(np.random.default_rng(2).uniform(-1, 1, (3, 4)), "transposed"))
    b = nbgrad.from_numpy(noncontiguous(np.random.default_rng(3).uniform(-1, 1, (3, 4)), "sliced"))
    assert not a.is_contiguous() and not b.is_contiguous()
    assert gradcheck(lambda p, q: p * q.sigmoid(), (a.requires_grad_(), b.requires_grad_()))


def test_inputs_that_need_no_gradient_and_non_tensors():
    x, w = dbl(4), dbl(4, seed=1, requires_grad=False)
    assert gradcheck(lambda a, b, k: a * b * k, (x, w, 2.5))
    assert gradcheck(lambda a: a.exp(), x)                       # a lone tensor, not a tuple


def test_several_outputs():
    assert gradcheck(lambda a, b: (a * b, a.sin(), b * 2), (dbl(3), dbl(3, seed=1)))


def test_outputs_without_gradient():
    x = dbl(3)
    const = nbgrad.ones(2, dtype=nbgrad.float64)
    assert gradcheck(lambda a: (a * 2, const), (x,))             # an output without grad is skipped
    assert gradcheck(lambda a: const * 3, (x,))                  # none differentiable, numerically flat
    with pytest.raises(GradcheckError, match="Numerical gradient for function expected to be zero"):
        gradcheck(lambda a: a.detach() * 2, (x,))


@pytest.mark.parametrize("which", [0, 1])
def test_catches_a_wrong_backward(which):
    x, y = dbl(3), dbl(3, seed=1)
    fn = wrong_backward(which=which).apply
    with pytest.raises(GradcheckError) as info:
        gradcheck(fn, (x, y))
    text = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert text.startswith(f"Jacobian mismatch for output 0 with respect to input {which},\nnumerical:tensor(")
    assert "\nanalytical:tensor(" in text and text.endswith("dtype=torch.float64)\n")
    assert gradcheck(fn, (x, y), raise_exception=False) is False


def test_error_text_matches_torch():
    torch = pytest.importorskip("torch")

    def failure(lib):
        class WrongSquare(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):
                x, = ctx.saved_tensors
                return grad * x

        x = lib.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=lib.float64, requires_grad=True)
        with pytest.raises(RuntimeError) as info:
            lib.autograd.gradcheck(WrongSquare.apply, (x,))
        return type(info.value).__name__, str(info.value)

    assert failure(nbgrad) == failure(torch)


def test_small_errors_within_tolerance_pass():
    x, y = dbl(3), dbl(3, seed=1)
    assert gradcheck(wrong_backward(scale=1 + 1e-5).apply, (x, y))
    assert not gradcheck(wrong_backward(scale=1 + 1e-5).apply, (x, y), rtol=1e-7, atol=1e-9,
                         raise_exception=False)


def test_single_precision_input_warns():
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="Input #0 requires gradient and is not a double precision floating point"):
        gradcheck(lambda a: a * 2, (x,), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_no_input_requires_grad():
    with pytest.raises(ValueError, match="gradcheck expects at least one input tensor to require gradient"):
        gradcheck(lambda a: a * 2, (dbl(3, requires_grad=False),))


def test_overlapping_input_memory_is_refused():
    x = nbgrad.from_numpy(np.broadcast_to(np.ones(3), (2, 3)).copy())
    x._data = np.broadcast_to(np.ones(3), (2, 3))             # stride 0, as expand() makes
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="The 0th input has a dimension with stride 0"):
        gradcheck(lambda a: a * 2, (x,))


def test_nondeterministic_backward():
    calls = []

    class Noisy(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            calls.append(1)
            return grad * (2 + 1e-9 * len(calls))

    x = dbl(3)
    with pytest.raises(GradcheckError, match="Backward is not reentrant"):
        gradcheck(Noisy.apply, (x,))
    assert gradcheck(Noisy.apply, (x,), nondet_tol=1e-6)


def test_backward_must_scale_with_grad_output():
    class Leaky(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            out = grad * 2
            return out + 1 if not grad._data.any() else out    # wrong only for a zero grad_output

    with pytest.raises(GradcheckError, match="backward not multiplied by grad_output"):
        gradcheck(Leaky.apply, (dbl(3),))


def test_gradgradcheck():
    x, y = dbl(3), dbl(3, seed=1)
    assert gradgradcheck(lambda a, b: (a * b).sin(), (x, y))
    assert gradgradcheck(lambda a: a * a * a, (x,), (dbl(3, seed=5),))


def test_gradgradcheck_catches_a_wrong_second_derivative():
    class CubeFirstOrderOnly(Function):
        """Right first derivative, but its backward hides x from the graph."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, grad):
            x, = ctx.saved_tensors
            x = x.detach()
            return grad * 3 * x * x

    x = dbl(3)
    assert gradcheck(CubeFirstOrderOnly.apply, (x,))
    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to input 0"):
        gradgradcheck(CubeFirstOrderOnly.apply, (x,))


def test_inputs_are_left_unchanged():
    x = dbl(2, 2)
    before = x.detach().numpy().copy()
    gradcheck(lambda a: a.exp(), (x,))
    np.testing.assert_array_equal(x.detach().numpy(), before)
    assert x.grad is None


def test_error_class_paths():
    import sys
    module = sys.modules["nbgrad.autograd.gradcheck"]
    assert nbgrad.autograd.gradcheck.GradcheckError is module.GradcheckError is GradcheckError
    assert issubclass(GradcheckError, RuntimeError)
