"""Random in-place fillers (uniform_, normal_, bernoulli_, random_, exponential_), bernoulli,
normal, multinomial and randperm, drawing from nbgrad's generator (``manual_seed``).

A fill is an in-place update like any other (refused on a leaf that requires grad, version
bumped); when recorded, its node passes no gradient, as PyTorch's ``UniformBackward0`` etc.
Values are drawn on the host by NumPy's generator and handed to the tensor's target.
"""
import numpy as np

from nbgrad.ops.targets import common_target, target_for, target_of

from .. import _dtype
from ..autograd.graph import Node
from ..factories import _check_device, _float_dtype, _rng, _sizes
from ..tensor import Tensor, record
from . import inplace, tensor_method

__all__ = ["bernoulli", "normal", "multinomial", "randperm", "poisson"]


class _NoGradient(Node):
    def backward(self, grad):
        return (grad * 0,)


_NODES = {name: type(f"{name}Backward0", (_NoGradient,), {})
          for name in ("Uniform", "Normal", "Bernoulli", "Random", "Exponential")}


def _drawn(target, values, dtype):
    """``values`` drawn on the host (an array or a NumPy number) as an array of ``target`` in ``dtype``."""
    return target.asarray(np.asarray(values, dtype))


def _host(t):
    """A tensor's values in host memory, to draw from."""
    return target_of(t._data).to_host(t._data)


def _fill(self, node, draw):
    """Fill ``self`` in place with ``draw(shape, np_dtype)``."""
    def filled(old):
        shape, dtype = old._data.shape, old._data.dtype
        return record(_NODES[node], _drawn(target_of(old._data), draw(shape, dtype), dtype), (old,))
    return inplace.apply_inplace(self, filled)


def _need_float(self, name):
    if not self.dtype.is_floating_point:
        raise NotImplementedError(f"\"{name}\" not implemented for '{self.dtype.legacy}'")


@tensor_method()
def uniform_(self, from_=0.0, to=1.0, *, generator=None, **kwargs):
    """Uniform values in [from, to)."""
    from_ = kwargs.pop("from", from_)
    _need_float(self, "check_uniform_bounds")
    if from_ > to:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={from_} > to={to}")
    rng = _rng(generator)
    return _fill(self, "Uniform", lambda shape, dt: from_ + (to - from_) * rng.random(shape, np.float64))


@tensor_method()
def normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Samples of N(``mean``, ``std``), in place."""
    _need_float(self, "normal_kernel_cpu")
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    rng = _rng(generator)
    return _fill(self, "Normal", lambda shape, dt: rng.normal(mean, std, shape))


@tensor_method()
def exponential_(self, lambd=1.0, *, generator=None):
    """Samples of Exp(``lambd``), in place."""
    _need_float(self, "exponential_cpu")
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
    rng = _rng(generator)
    return _fill(self, "Exponential", lambda shape, dt: rng.exponential(1.0 / lambd, shape))


@tensor_method()
def bernoulli_(self, p=0.5, *, generator=None):
    """Each element 1 with probability ``p`` (a number or a tensor broadcast to this one), else 0."""
    rng = _rng(generator)
    if isinstance(p, Tensor):
        probs = _host(p.detach().expand(self.shape))
    else:
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
        probs = p
    return _fill(self, "Bernoulli", lambda shape, dt: rng.random(shape) < probs)


@tensor_method()
def bernoulli(input, p=None, *, generator=None, out=None):
    """Samples 1 with the probabilities in ``input`` (or ``p``), of ``input``'s dtype."""
    probs = _host(input) if p is None else p
    if np.any((probs < 0) | (probs > 1)) or np.any(np.isnan(probs)):
        raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.  (Could this error message "
                           "be improved?  If so, please report an enhancement request to PyTorch.)")
    data = _drawn(target_of(input._data), _rng(generator).random(input._data.shape) < probs, input._data.dtype)
    result = Tensor._wrap(data)
    if out is not None:
        from .out import write_out
        return write_out(out, result, "bernoulli")
    return result


@tensor_method()
def random_(self, from_=None, to=None, *, generator=None, **kwargs):
    """Integers in [from, to): ``random_(to)`` is [0, to); ``random_()`` [0, 2**mantissa] for floats."""
    from_ = kwargs.pop("from", from_)
    if from_ is not None and to is None:
        from_, to = 0, from_
    if from_ is None:
        from_ = 0
        if self.dtype.is_floating_point:
            to = 2 ** (np.finfo(self._data.dtype).nmant + 1) + 1
        elif self.dtype is _dtype.bool:
            to = 2
        else:
            to = np.iinfo(self._data.dtype).max
    if from_ >= to:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={from_} >= to={to}")
    rng = _rng(generator)
    return _fill(self, "Random", lambda shape, dt: rng.integers(from_, to, shape))


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, out=None, requires_grad=False):
    """Samples of N(mean, std): ``mean``/``std`` tensors broadcast, or numbers with ``size``."""
    rng = _rng(generator)
    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if tensors:
        target = common_target([t._data for t in tensors])
        m = _host(mean) if isinstance(mean, Tensor) else mean
        s = _host(std) if isinstance(std, Tensor) else std
        if np.any(s < 0):
            raise RuntimeError("normal expects all elements of std >= 0.0")
        shape = np.broadcast_shapes(*(t._data.shape for t in tensors))
        data = _drawn(target, rng.normal(m, s, shape), tensors[0]._data.dtype)
    else:
        if size is None:
            raise TypeError("normal() received an invalid combination of arguments: size is needed when mean and "
                            "std are numbers")
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
        data = _drawn(target_for(None), rng.normal(mean, std, _sizes((size,))), _float_dtype(dtype).numpy)
    result = Tensor._wrap(data, requires_grad)
    if out is not None:
        from .out import write_out
        return write_out(out, result, "normal")
    return result


@tensor_method()
def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices drawn from each row's distribution (weights need not sum to 1)."""
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not input.dtype.is_floating_point:
        raise RuntimeError("multinomial only supports floating-point dtypes for input, got: " f"{input.dtype.legacy}")
    host = _host(input)
    probs = host.reshape(-1, host.shape[-1]).astype(np.float64)
    n = probs.shape[1]
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    if not replacement and num_samples > n:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if np.any(probs.sum(axis=1) <= 0):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    rng = _rng(generator)
    if replacement:
        cdf = np.cumsum(probs, axis=1)
        u = rng.random((probs.shape[0], num_samples)) * cdf[:, -1:]
        out = np.stack([np.searchsorted(c, row, side="right") for c, row in zip(cdf, u)]).astype(np.int64)
        out = np.minimum(out, n - 1)
    else:    # Efraimidis-Spirakis keys: log(u) / p, the largest first (weight 0: never before a positive one)
        with np.errstate(divide="ignore"):
            keys = np.log(rng.random(probs.shape)) / probs
        out = np.argsort(-keys, axis=1, kind="stable")[:, :num_samples].astype(np.int64)
    return Tensor._wrap(_drawn(target_of(input._data), out.reshape(input._data.shape[:-1] + (num_samples,)),
                               np.int64))


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """A random permutation of 0..n-1."""
    target = _check_device(device)
    if n < 0:
        raise RuntimeError(f"n must be non-negative, got{n}")
    dtype = _dtype.to_dtype(dtype) if dtype is not None else _dtype.int64
    result = Tensor._wrap(_drawn(target, _rng(generator).permutation(n), dtype.numpy), requires_grad)
    if out is not None:
        from .out import write_out
        return write_out(out, result, "randperm")
    return result


@tensor_method()
def poisson(input, generator=None):
    """Samples of Poisson(rate) for each rate in ``input``."""
    return Tensor._wrap(_drawn(target_of(input._data), _rng(generator).poisson(_host(input)), input._data.dtype))
