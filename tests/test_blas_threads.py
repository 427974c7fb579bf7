"""BLAS threads of matrix products (ops/blas_threads.py): products give NumPy's values on one
thread and on several (shapes with 0 and 1, transposed, strided and batched operands,
float32 and float64), small products set one thread, large ones the count BLAS had, and a
count set by the user or a busy machine is respected."""
import numpy as np
import pytest

from nbgrad.ops import blas_threads, linalg

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture
def blas(monkeypatch):
    """The module's state and BLAS's thread count put back afterwards; not busy."""
    if not blas_threads.available():
        pytest.skip("the BLAS behind Numba's np.dot is not a threaded OpenBLAS")
    count = blas_threads._get()
    monkeypatch.setattr(blas_threads, "BUSY_MARGIN", None)
    monkeypatch.setattr(blas_threads, "_busy_at", -2.0)
    monkeypatch.setattr(blas_threads, "_last", None)
    monkeypatch.setattr(blas_threads, "_large", None)
    yield count
    blas_threads._set(count)


def _layout(x, how):
    """``x`` (3-D) laid out contiguous, as a transposed view, or as a strided slice."""
    if how == "transposed":
        return np.ascontiguousarray(x.swapaxes(1, 2)).swapaxes(1, 2)
    if how == "strided":
        wide = np.zeros(x.shape[:2] + (2 * x.shape[2],), x.dtype)
        wide[:, :, ::2] = x
        return wide[:, :, ::2]
    return x


SHAPES = [(1, 1, 1, 1), (1, 3, 1, 4), (1, 1, 5, 1), (2, 4, 3, 5), (1, 0, 3, 4), (1, 3, 0, 4),
          (1, 3, 4, 0), (0, 2, 3, 4), (3, 17, 33, 9), (1, 64, 64, 128), (1, 130, 70, 66)]


@pytest.mark.parametrize("policy", ["one", "threaded"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("lb", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("shape", SHAPES)
def test_products_match_numpy_on_any_thread_count(blas, monkeypatch, policy, dtype, la, lb, shape):
    monkeypatch.setattr(blas_threads, "SMALL_FLOPS", float("inf") if policy == "one" else 0)
    nb, n, k, m = shape
    rng = np.random.default_rng(sum(shape))
    a = _layout(rng.standard_normal((nb, n, k)).astype(dtype), la)
    b = _layout(rng.standard_normal((nb, k, m)).astype(dtype), lb)
    out = linalg.bmm(a, b)
    assert out.shape == (nb, n, m) and out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_allclose(out, np.matmul(a.astype(np.float64), b.astype(np.float64)), **TOL[dtype])
    assert blas_threads._get() == (1 if policy == "one" else blas)


def test_products_match_torch_across_the_threshold(blas):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for n, k, m in [(64, 64, 128), (256, 256, 256)]:      # below and above SMALL_FLOPS
        a, b = rng.standard_normal((1, n, k)), rng.standard_normal((1, k, m))
        np.testing.assert_allclose(linalg.bmm(a, b), torch.bmm(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                                   rtol=1e-12, atol=1e-12)


def _product(flops_side):
    a = np.ones((1, flops_side, flops_side), np.float32)
    linalg.bmm(a, a)


def test_small_products_on_one_thread_large_ones_on_blas_count(blas, monkeypatch):
    monkeypatch.setattr(blas_threads, "BUSY_MARGIN", None)     # as on a quiet machine, whatever the load now
    monkeypatch.setattr(blas_threads, "_busy_at", -2.0)
    small = int(round((blas_threads.SMALL_FLOPS / 2 / 8) ** (1 / 3)))   # 2*n**3 well below
    large = int(round((blas_threads.SMALL_FLOPS / 2 * 2) ** (1 / 3)))   # 2*n**3 above
    _product(small)
    assert blas_threads._get() == 1
    _product(large)
    assert blas_threads._get() == blas
    _product(small)
    assert blas_threads._get() == 1


def test_a_count_the_user_sets_is_kept_for_large_products(blas, monkeypatch):
    monkeypatch.setattr(blas_threads, "BUSY_MARGIN", None)     # as on a quiet machine, whatever the load now
    monkeypatch.setattr(blas_threads, "_busy_at", -2.0)
    large = int(round(blas_threads.SMALL_FLOPS ** (1 / 3))) + 1
    blas_threads._set(2)                     # BLAS's count as a process starts (earlier products may have left 1)
    _product(large)
    blas_threads._set(3)                     # as threadpoolctl or the user would
    _product(8)
    assert blas_threads._get() == 1
    _product(large)
    assert blas_threads._get() == 3


def test_a_busy_machine_runs_large_products_on_one_thread(blas, monkeypatch):
    monkeypatch.setattr(blas_threads, "BUSY_MARGIN", 1.0)
    monkeypatch.setattr(blas_threads.os, "getloadavg", lambda: (blas_threads._CPUS + 1.0, 0.0, 0.0))
    _product(int(round(blas_threads.SMALL_FLOPS ** (1 / 3))) + 1)
    assert blas_threads._get() == 1
    monkeypatch.setattr(blas_threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(blas_threads, "_busy_at", -2.0)
    _product(int(round(blas_threads.SMALL_FLOPS ** (1 / 3))) + 1)
    assert blas_threads._get() == blas


def test_without_thread_control_products_still_run(monkeypatch):
    monkeypatch.setattr(blas_threads, "_found", True)
    monkeypatch.setattr(blas_threads, "_set", None)
    monkeypatch.setattr(blas_threads, "_last", None)
    a = np.arange(6.0).reshape(1, 2, 3)
    np.testing.assert_array_equal(linalg.bmm(a, a.swapaxes(1, 2)), a @ a.swapaxes(1, 2))
    assert blas_threads.available() is False
