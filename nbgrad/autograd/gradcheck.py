"""Finite-difference checks of gradients, as ``torch.autograd.gradcheck``.

The numerical Jacobian comes from central differences, one input element at a time; the
analytical one from ``autograd.grad`` with a one-hot ``grad_outputs``, one output element
at a time, computed twice to catch a backward that is not deterministic. Both are laid
out as PyTorch lays them out (rows: input elements, columns: output elements), so the
error text can be compared with PyTorch's. The arithmetic runs through Tensor ops (hence
the op library's kernels); arrays are only allocated and filled here, through their target.
"""
import warnings

import numpy as np

from nbgrad.ops.targets import target_of

from .grad_mode import no_grad

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """Raised by :func:`gradcheck` and :func:`gradgradcheck`."""


def _as_tuple(x):
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _is_tensor(x):
    from ..tensor import Tensor
    return isinstance(x, Tensor)


def _differentiable_outputs(out):
    return tuple(o for o in _as_tuple(out) if _is_tensor(o) and o.requires_grad)


def _check_inputs(inputs):
    found = False
    for i, x in enumerate(inputs):
        if _is_tensor(x) and x.requires_grad:
            if x.dtype.name != "float64":
                warnings.warn(f"Input #{i} requires gradient and is not a double precision floating point or "
                              "complex. This check will likely fail if all the inputs are not of double precision "
                              "floating point or complex. ", stacklevel=4)
            if not all(st > 0 or n <= 1 for st, n in zip(x.stride(), x.shape)):
                raise RuntimeError(f"The {i}th input has a dimension with stride 0. gradcheck only supports inputs "
                                   "that are non-overlapping to be able to compute the numerical gradients "
                                   "correctly. You should call .contiguous on the input before passing it to "
                                   "gradcheck.")
            found = True
    if not found:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of them have "
                         "requires_grad=True.")


def _jacobian_tensor(target, rows, cols, dtype):
    from ..tensor import Tensor
    return Tensor._wrap(target.zeros((rows, cols), dtype.numpy))


def _set(data, index, value):
    """``data[index] = value`` (``index`` a tuple of ints or slices) through ``data``'s target."""
    target = target_of(data)
    target.copy_into(target.slice(data, index + (Ellipsis,)), target.reshape(value, (-1,))
                     if type(value) is target.array_type else target.number(value, data.dtype))


def _numerical_jacobian(func, inputs, outputs=None, eps=1e-3):
    """``jac[i][j]``: d(output j)/d(input i) by central differences, for every
    differentiable input i; each a (input numel, output numel) tensor."""
    inputs = _as_tuple(inputs)
    if outputs is None:
        outputs = _as_tuple(func(*inputs))
    outputs = [o for o in outputs if _is_tensor(o)]
    result = []
    for x in inputs:
        if not (_is_tensor(x) and x.requires_grad):
            continue
        jac = [_jacobian_tensor(target_of(o._data), x.numel(), o.numel(),
                                o.dtype if o.is_floating_point() else x.dtype) for o in outputs]
        data = x._data                     # perturbed in place, as PyTorch perturbs ``.data``
        target = target_of(data)
        for k, index in enumerate(np.ndindex(data.shape)):       # positions: planned on the host
            orig = target.item(target.slice(data, index + (Ellipsis,)))
            _set(data, index, orig - eps)
            before = [o.detach().clone() for o in _tensor_outputs(func, inputs)]
            _set(data, index, orig + eps)
            after = [o.detach().clone() for o in _tensor_outputs(func, inputs)]
            _set(data, index, orig)
            with no_grad():
                for j, (a, b) in enumerate(zip(before, after)):
                    _set(jac[j]._data, (k, slice(None)), ((b - a) / (2 * eps))._data)
        result.append(jac)
    return result


def _tensor_outputs(func, inputs):
    return [o for o in _as_tuple(func(*inputs)) if _is_tensor(o)]


def _analytical_jacobian(inputs, output):
    """d(output)/d(input) for each differentiable input by backpropagating each one-hot
    ``grad_outputs``; returns the Jacobians and whether every gradient had its input's
    dtype and shape."""
    from . import grad
    from ..tensor import Tensor
    diff_inputs = [x for x in _as_tuple(inputs) if _is_tensor(x) and x.requires_grad]
    jacs = [_jacobian_tensor(target_of(x._data), x.numel(), output.numel(), x.dtype) for x in diff_inputs]
    types_ok = sizes_ok = True
    target = target_of(output._data)
    for j in range(output.numel()):
        onehot = target.zeros(output.numel(), output._data.dtype)
        _set(onehot, (j,), 1)
        grads = grad(output, diff_inputs, Tensor._wrap(target.reshape(onehot, output.shape)), retain_graph=True,
                     allow_unused=True)
        for jac, g, x in zip(jacs, grads, diff_inputs):
            if g is None:
                continue
            types_ok &= g.dtype is x.dtype
            if g.shape != x.shape:
                sizes_ok = False
                continue
            _set(jac._data, (slice(None), j), g._data)
    return jacs, types_ok, sizes_ok


def _allclose(a, b, rtol, atol):
    """``|a - b| <= atol + rtol * |b|`` everywhere (NaN never passes), with Tensor ops."""
    with no_grad():
        ok = (a - b).abs() <= b.abs() * rtol + atol
    return all(_flat_list(ok))


def _max_abs_diff(a, b):
    with no_grad():
        return max([0.0] + _flat_list((a - b).abs()))


def _flat_list(t):
    return t.reshape(-1).tolist()


def _check_analytical(inputs, output, nondet_tol, check_grad_dtypes):
    jacs, types_ok, sizes_ok = _analytical_jacobian(inputs, output)
    again, _, _ = _analytical_jacobian(inputs, output)
    if not types_ok and check_grad_dtypes:
        raise GradcheckError("Gradient has dtype mismatch")
    if not sizes_ok:
        raise GradcheckError("Analytical gradient has incorrect size")
    if any(_max_abs_diff(a, b) > nondet_tol for a, b in zip(jacs, again)):
        raise GradcheckError("Backward is not reentrant, i.e., running backward with same input and grad_output "
                             "multiple times gives different values, although analytical gradient matches "
                             f"numerical gradient.The tolerance for nondeterminism was {nondet_tol}.")
    return jacs


def _check_zero_grad_outputs(inputs, outputs):
    """With all output gradients zero, every input gradient must be zero (nbgrad has no
    undefined gradients: the engine passes zeros where PyTorch would pass none)."""
    from . import grad
    from ..factories import zeros_like
    diff_inputs = [x for x in inputs if _is_tensor(x) and x.requires_grad]
    grads = grad(outputs, diff_inputs, [zeros_like(o) for o in outputs], allow_unused=True)
    for g, x in zip(grads, diff_inputs):
        if g is None:
            continue
        if _max_abs_diff(g, zeros_like(g)) != 0:
            raise GradcheckError("backward not multiplied by grad_output")
        if g.dtype is not x.dtype:
            raise GradcheckError("grad is incorrect type")
        if g.shape != x.shape:
            raise GradcheckError("grad is incorrect size")


def _gradcheck(func, inputs, eps, atol, rtol, nondet_tol, check_grad_dtypes):
    inputs = _as_tuple(inputs)
    _check_inputs(inputs)
    func_out = _as_tuple(func(*inputs))
    outputs = _differentiable_outputs(func_out)
    numerical = _numerical_jacobian(func, inputs, func_out, eps)
    if not outputs:
        for per_input in numerical:
            for n in per_input:
                if _max_abs_diff(n, n * 0) != 0:
                    raise GradcheckError("Numerical gradient for function expected to be zero")
        return True
    tensor_outputs = [o for o in func_out if _is_tensor(o)]
    for i, o in enumerate(outputs):
        k = next(k for k, t in enumerate(tensor_outputs) if t is o)
        analytical = _check_analytical(inputs, o, nondet_tol, check_grad_dtypes)
        for j, (a, per_input) in enumerate(zip(analytical, numerical)):
            n = per_input[k]
            if not _allclose(a, n.to(a.dtype), rtol, atol):
                raise GradcheckError(f"Jacobian mismatch for output {i:d} with respect to input {j:d},\n"
                                     f"numerical:{n}\nanalytical:{a}\n")
    _check_zero_grad_outputs(inputs, outputs)
    return True


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, nondet_tol=0.0,
              check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
              check_batched_forward_grad=False, check_forward_ad=False, check_backward_ad=True, fast_mode=False,
              masked=None):
    """Check the gradients of ``func`` at ``inputs`` (float64 tensors with ``requires_grad``)
    against central finite differences. Returns True, or raises :class:`GradcheckError`
    (returns False with ``raise_exception=False``).

    Forward-mode and batched checks are not available in nbgrad: asking for them raises.
    ``fast_mode`` computes the full Jacobians anyway (same verdict, slower)."""
    if check_forward_ad or check_batched_grad or check_batched_forward_grad:
        raise NotImplementedError("nbgrad has no forward-mode AD or vmap: check_forward_ad, check_batched_grad "
                                  "and check_batched_forward_grad must be False")
    if not check_backward_ad:
        raise AssertionError("Expected at least one of check_forward_ad or check_backward_ad to be True")
    try:
        return _gradcheck(func, inputs, eps, atol, rtol, nondet_tol, check_grad_dtypes)
    except GradcheckError:
        if raise_exception:
            raise
        return False


# ``nbgrad.autograd.gradcheck`` is this function (the package imports it over the module's name),
# so the error class is reachable from it too
gradcheck.GradcheckError = GradcheckError


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False, masked=False):
    """Check second derivatives: ``gradcheck`` of the map from (inputs, grad_outputs) to
    the gradients of ``func`` computed with ``create_graph=True``. ``grad_outputs``
    default to random values in [-1, 1) that require grad, as in PyTorch."""
    from . import grad
    from ..factories import rand
    inputs = _as_tuple(inputs)
    if grad_outputs is None:
        outs = _differentiable_outputs(func(*inputs))
        grad_outputs = tuple((rand(*o.shape, dtype=o.dtype if o.is_floating_point() else None)
                              .mul(2).sub(1).detach().requires_grad_()) for o in outs)
    grad_outputs = _as_tuple(grad_outputs)
    n = len(grad_outputs)
    diff_inputs = [i for i, x in enumerate(inputs) if _is_tensor(x) and x.requires_grad]

    def first_derivatives(*args):
        ins, gos = args[:len(args) - n], args[len(args) - n:]
        outs = _differentiable_outputs(func(*ins))
        grads = grad(outs, [ins[i] for i in diff_inputs], gos, create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivatives, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol, check_grad_dtypes=check_grad_dtypes)
