"""ops.vmath inside Numba loops. exp against e^x computed in a wider type (float64 for
float32, x87 long double for float64): error in ulps of the result over dense sweeps of
the whole finite range, special values, the overflow and underflow edges; that it keeps
float32 in float32, vectorizes, and loads from Numba's on-disk cache. sigmoid the same
way; maximum, vsum and vdot against NumPy."""
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit, types
from numba.np import numpy_support

from nbgrad.ops.vmath import exp, maximum, sigmoid, vdot, vsum

# The worst errors over these sweeps (10.5M points each): 0.96 ulp (float32), 1.04 ulp
# (float64: the final 1 + (r + r^2 q) and r's own rounding, 0.5 + 0.25 + 0.18 ulp, plus
# the polynomial's 0.1).
MAX_ULP = {np.dtype(np.float32): 1.0, np.dtype(np.float64): 1.1}
WIDE = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}
# x beyond which e^x overflows / is below half the least denormal (so rounds to 0)
RANGE = {np.dtype(np.float32): (-104.0, 89.0), np.dtype(np.float64): (-746.0, 710.0)}

needs_long_double = pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63,
                                       reason="the float64 reference needs an 80-bit long double")


@njit(error_model="numpy")
def _exp_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = exp(x[i])


@njit(error_model="numpy")
def _exp_scalar(x):
    return exp(x)


def vexp(x):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _exp_loop(x, out)
    return out


def ulp_error(x):
    """|exp(x) - e^x| in units of the spacing of the result's dtype at e^x (the least
    denormal below the normal range). Overflow counts as the float after the largest finite
    one, for both: returning inf where e^x rounds to the largest float costs 1 ulp."""
    dtype = x.dtype
    wide = WIDE[dtype]
    big = np.finfo(dtype).max
    step = wide(big - np.nextafter(big, 0))
    over = wide(big) + step
    with np.errstate(over="ignore"):
        ref = np.minimum(np.exp(x.astype(wide)), over)
        rounded = ref.astype(dtype)
    got = np.minimum(vexp(x).astype(wide), over)
    spacing = np.where(np.isinf(rounded), step, np.spacing(np.abs(rounded)).astype(wide))
    return np.abs(got - ref) / spacing


def _near_switches(dtype, ulps=40):
    """The floats within ``ulps`` of every multiple of ln2 / 2 in range, where the
    reduction's k = round(x / ln2) changes and r reaches +-ln2 / 2."""
    lo, hi = RANGE[np.dtype(dtype)]
    halves = np.arange(math.floor(2 * lo / math.log(2)), math.ceil(2 * hi / math.log(2)) + 1)
    centers = (halves[halves != 0] * (math.log(2) / 2)).astype(dtype)
    steps = np.arange(-ulps, ulps + 1)
    bits = centers.view(np.int32 if dtype == np.float32 else np.int64)
    # float bits count away from zero on either side: add the same steps to both signs
    return (bits[:, None] + steps[None, :]).astype(bits.dtype).reshape(-1).view(dtype)


def sweep(dtype, n=1 << 22, seed=0):
    lo, hi = RANGE[np.dtype(dtype)]
    rng = np.random.default_rng(seed)
    return np.concatenate([np.linspace(lo, hi, n).astype(dtype), rng.uniform(lo, hi, n).astype(dtype),
                           rng.uniform(-1, 1, n // 4).astype(dtype),
                           (rng.uniform(-1, 1, n // 4) * 1e-6).astype(dtype), _near_switches(dtype)])


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=needs_long_double)])
def test_exp_error_over_the_whole_range(dtype):
    x = sweep(dtype)
    err = ulp_error(x)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[np.dtype(dtype)], f"{err[worst]:.3f} ulp at x = {x[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=needs_long_double)])
def test_overflow_underflow_and_denormal_edges(dtype):
    """Around ln(largest finite), ln(smallest normal) and ln(least denormal / 2), float by
    float: within 1 ulp, and inf exactly where the rounded e^x is inf, 0 exactly where it is 0."""
    info = np.finfo(dtype)
    edges = [math.log(float(info.max)), math.log(float(info.smallest_normal)),
             math.log(float(info.smallest_subnormal)), math.log(float(info.smallest_subnormal)) - math.log(2)]
    itype = np.int32 if dtype == np.float32 else np.int64
    x = (np.array(edges, dtype).view(itype)[:, None] + np.arange(-2000, 2001)[None, :]).astype(itype).reshape(-1).view(dtype)
    got = vexp(x)
    with np.errstate(over="ignore"):
        rounded = np.exp(x.astype(WIDE[np.dtype(dtype)])).astype(dtype)
    assert (np.isinf(got) == np.isinf(rounded)).all()
    assert ((got == 0) == (rounded == 0)).all()
    assert ulp_error(x).max() <= MAX_ULP[np.dtype(dtype)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    cases = {np.nan: np.nan, np.inf: np.inf, -np.inf: 0.0, 0.0: 1.0, -0.0: 1.0, float(info.max): np.inf,
             float(-info.max): 0.0, float(tiny): 1.0, float(-tiny): 1.0,
             RANGE[np.dtype(dtype)][1]: np.inf, RANGE[np.dtype(dtype)][0]: 0.0, 1000.0: np.inf, -1000.0: 0.0}
    x = np.array(list(cases), dtype)
    want = np.array(list(cases.values()), dtype)
    np.testing.assert_array_equal(vexp(x), want)
    # NaN payloads and signs stay NaN; exp(-0.0) is exactly 1 either way
    assert np.isnan(vexp(np.array([-np.nan, np.nan], dtype))).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_bit_patterns(dtype):
    """Any float at all, huge, tiny or NaN: NaN stays NaN, the rest within 1 ulp."""
    itype = np.int32 if dtype == np.float32 else np.int64
    x = np.random.default_rng(1).integers(np.iinfo(itype).min, np.iinfo(itype).max, 1 << 18, itype).view(dtype)
    got = vexp(x)
    assert (np.isnan(got) == np.isnan(x)).all()
    if dtype == np.float64 and np.finfo(np.longdouble).nmant < 63:
        return
    finite = x[~np.isnan(x)]
    assert ulp_error(finite).max() <= MAX_ULP[np.dtype(dtype)]


def test_float32_stays_float32_integers_widen_and_python_falls_back_to_math():
    _exp_scalar(np.float32(1))
    _exp_scalar(1.0)
    assert _exp_scalar(3) == _exp_scalar(3.0) and _exp_scalar(True) == _exp_scalar(1.0)
    returns = {sig[0]: _exp_scalar.overloads[sig].signature.return_type for sig in _exp_scalar.signatures}
    assert returns == {types.float32: types.float32, types.float64: types.float64, types.int64: types.float64,
                       types.boolean: types.float64}
    assert exp(1.5) == math.exp(1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loop_vectorizes(dtype):
    """The point of the module: LLVM turns the loop into vector code with no call to exp."""
    vexp(np.zeros(4, dtype))
    sig = next(s for s in _exp_loop.signatures if s[0].dtype == numpy_support.from_dtype(np.dtype(dtype)))
    ir = _exp_loop.inspect_llvm(sig)
    name = "float" if dtype == np.float32 else "double"
    assert f" x {name}>" in ir
    assert "@exp" not in ir and "llvm.exp" not in ir


_CACHED = """\
import numpy as np
from numba import njit
from nbgrad.ops.vmath import exp, maximum, sigmoid, vdot, vsum

@njit(cache=True)
def f(x, out):
    for i in range(x.shape[0]):
        out[i] = exp(x[i])

x = np.linspace(-3, 3, 7, dtype=np.float32)
out = np.empty_like(x)
f(x, out)
assert np.allclose(out, np.exp(x), rtol=2e-7), out
"""


def test_kernels_using_it_load_from_the_cache(tmp_path):
    """A cache=True kernel calling exp (the intrinsic inlined into it) is saved by the first
    process and loaded, not compiled, by the second."""
    (tmp_path / "cached_exp.py").write_text(_CACHED)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBA_DEBUG_CACHE="1")
    runs = [subprocess.run([sys.executable, "cached_exp.py"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert "data saved" in runs[0].stdout
    assert "data loaded" in runs[1].stdout and "data saved" not in runs[1].stdout, textwrap.shorten(runs[1].stdout, 500)


@njit(error_model="numpy")
def _sigmoid_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = sigmoid(x[i])


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=needs_long_double)])
def test_sigmoid_error_and_special_values(dtype):
    """Within 2.5 ulp (worst seen 2.34 in float32, 2.40 in float64: the rounding of 1 + e and
    of the division on top of exp's); exact at the ends, NaN kept."""
    lim = 110.0 if dtype == np.float32 else 760.0
    rng = np.random.default_rng(2)
    x = np.concatenate([np.linspace(-lim, lim, 1 << 21), rng.uniform(-20, 20, 1 << 21)]).astype(dtype)
    out = np.empty_like(x)
    _sigmoid_loop(x, out)
    wide = WIDE[np.dtype(dtype)]
    with np.errstate(over="ignore"):
        ref = 1 / (1 + np.exp(-x.astype(wide)))
    spacing = np.spacing(ref.astype(dtype)).astype(wide)
    err = np.abs(out - ref) / np.maximum(spacing, wide(np.finfo(dtype).smallest_subnormal))
    assert err.max() <= 2.5, f"{err.max():.3f} ulp at x = {x[np.argmax(err)]!r}"
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, lim, -lim], dtype)
    _sigmoid_loop(special, out[:7])
    np.testing.assert_array_equal(out[:7], np.array([np.nan, 1, 0, 0.5, 0.5, 1, 0], dtype))


@njit(error_model="numpy")
def _reductions(a, b):
    m = a[0]
    for i in range(a.shape[0]):
        m = maximum(m, a[i])
    return m, vsum(a), vdot(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maximum_vsum_vdot(dtype):
    """maximum propagates NaN wherever it is; vsum and vdot add in float64 (any order), so
    float32 rows sum to the exact float64 sum's precision, far below float32's."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 1001)).astype(dtype)
    m, s, d = _reductions(a, b)
    assert m == a.max()
    sig = next(s for s in _reductions.signatures if s[0].dtype == numpy_support.from_dtype(np.dtype(dtype)))
    assert _reductions.overloads[sig].signature.return_type[0] == sig[0].dtype      # the max keeps the dtype
    wide = a.astype(np.longdouble)
    assert abs(s - wide.sum()) <= 1e-13 and abs(d - (wide * b).sum()) <= 1e-13
    for at in (0, 500, 1000):
        nan = a.copy()
        nan[at] = np.nan
        assert np.isnan(_reductions(nan, b)[0])
    assert _reductions(np.array([-0.0, 0.0], dtype), b[:2])[0] == 0.0
