"""The kernel cache is checked, not trusted: a wrong or damaged module, a damaged ``.pyc`` or
Numba index/data file is rebuilt with one warning; a cache that cannot be written is replaced
by a private temporary one. Each run is a fresh process with its own ``NBGRAD_CACHE_DIR``."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# Two kernels of one module (add): the contiguous loop and the strided one.
_PROGRAM = """
import json, nbgrad
x = nbgrad.tensor([[1., 2.], [3., 4.]])
print(json.dumps([(x + x).tolist(), (x.t() + x).tolist()]))
"""
_X = np.array([[1., 2.], [3., 4.]])
_EXPECTED = [(_X + _X).tolist(), (_X.T + _X).tolist()]


def _run(cache, tmp=None, bytecode=False, debug_cache=False):
    """Run ``_PROGRAM``; check its results; return its stdout and stderr."""
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(cache), PYTHONWARNINGS="default")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    if debug_cache:
        env["NUMBA_DEBUG_CACHE"] = "1"
    proc = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == _EXPECTED
    return proc.stdout, proc.stderr


def _module(cache):
    [path] = (cache / "kernels").glob("nbgrad_kernels_add_*.py")
    return path


def test_a_fresh_cache_is_filled_without_a_warning(tmp_path):
    _, err = _run(tmp_path)
    assert "Warning" not in err
    assert not list((tmp_path / "kernels").glob("*.tmp"))


def test_a_wrong_module_under_the_hash_name_is_rewritten(tmp_path):
    _run(tmp_path)
    path = _module(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good.replace(b"return a + b", b"return a - b"))     # valid Python, wrong op
    _, err = _run(tmp_path)
    assert f"the cached kernel module {path} differs from its generated source" in err
    assert err.count("RuntimeWarning: nbgrad:") == 1
    assert path.read_bytes() == good
    _, err = _run(tmp_path)
    assert "Warning" not in err


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_module_is_rewritten(tmp_path, damage):
    _run(tmp_path)
    path = _module(tmp_path)
    good = path.read_bytes()
    path.write_bytes({"truncated": good[:len(good) // 2], "empty": b"", "garbage": b"\x00\xff garbage ("}[damage])
    _, err = _run(tmp_path)
    assert f"{path} differs from its generated source" in err
    assert path.read_bytes() == good
    _, err = _run(tmp_path)
    assert "Warning" not in err


@pytest.mark.parametrize("damage", ["garbage", "empty", "data only"])
def test_a_damaged_numba_cache_is_cleared_and_rebuilt(tmp_path, damage):
    """Numba raises on a damaged index or data file at the kernel's first call (not at import):
    both kernels' files are damaged, one warning is given, and the rebuilt cache is used next."""
    _run(tmp_path)
    files = [f for f in (tmp_path / "kernels" / "__pycache__").iterdir() if f.suffix in (".nbi", ".nbc")]
    assert len(files) == 4
    for f in files:
        if damage == "garbage":
            f.write_bytes(b"garbage\n")
        elif damage == "empty":
            f.write_bytes(b"")
        elif f.suffix == ".nbc":            # the index is intact and points at garbage
            f.write_bytes(os.urandom(300))
    _, err = _run(tmp_path)
    assert f"damaged Numba cache for {_module(tmp_path)}" in err
    assert err.count("RuntimeWarning: nbgrad:") == 1
    out, err = _run(tmp_path, debug_cache=True)
    assert "Warning" not in err
    assert out.count("data loaded") == 2 and "data saved" not in out


def test_a_damaged_pyc_is_removed(tmp_path):
    """Python checks a .pyc against its source's mtime and size only: cut after its header,
    it would make every import fail."""
    _run(tmp_path, bytecode=True)
    [pyc] = (tmp_path / "kernels" / "__pycache__").glob("*.pyc")
    pyc.write_bytes(pyc.read_bytes()[:100])
    _, err = _run(tmp_path, bytecode=True)
    assert f"damaged {pyc}" in err
    _, err = _run(tmp_path, bytecode=True)
    assert "Warning" not in err


@pytest.mark.parametrize("where", ["file", "/dev/null"])
def test_an_unwritable_cache_compiles_in_a_private_temporary_directory(tmp_path, where):
    cache = tmp_path / "a_file" if where == "file" else where
    if where == "file":
        cache.write_text("not a directory")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _, err = _run(cache, tmp=tmp)
    assert f"cannot use the kernel cache {os.path.join(cache, 'kernels')}" in err
    assert err.count("RuntimeWarning: nbgrad:") == 1
    assert not list(tmp.iterdir())                       # removed at exit
    if where == "file":
        assert cache.read_text() == "not a directory"


@pytest.mark.parametrize("where", ["file", "/dev/null"])
def test_info_works_with_an_unusable_cache(tmp_path, where):
    cache = tmp_path / "a_file" if where == "file" else where
    if where == "file":
        cache.write_text("not a directory")
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-m", "nbgrad", "info"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert os.path.join(str(cache), "kernels") in proc.stdout and "0 files" in proc.stdout


def test_processes_compiling_into_one_empty_cache_at_once(tmp_path):
    """Writes are write-then-rename: four processes starting together all load whole modules."""
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(tmp_path), PYTHONWARNINGS="default")
    procs = [subprocess.Popen([sys.executable, "-c", _PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
        assert json.loads(out.splitlines()[-1]) == _EXPECTED
        assert "Warning" not in err
    assert not list((tmp_path / "kernels").glob("*.tmp"))
    _, err = _run(tmp_path)
    assert "Warning" not in err


_HAND_PROGRAM = """
import nbgrad
x = nbgrad.arange(4.0, requires_grad=True)
y = x.gather(0, nbgrad.tensor([3, 0]))
y.sum().backward()
assert y.tolist() == [3.0, 0.0] and x.grad.tolist() == [1.0, 0.0, 0.0, 1.0], (y, x.grad)
"""


def test_a_damaged_numba_cache_of_hand_written_kernels_is_rebuilt(tmp_path):
    """The kernels written in ops/*.py are cached by Numba beside the package (here in
    ``NUMBA_CACHE_DIR``): damage there is a miss too, not an error on every run."""
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(tmp_path / "nbgrad"), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONWARNINGS="default")

    def run():
        proc = subprocess.run([sys.executable, "-c", _HAND_PROGRAM], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stderr
    run()
    damaged = [f for f in (tmp_path / "numba").rglob("index.*") if f.suffix in (".nbi", ".nbc")]
    assert damaged
    for f in damaged:
        f.write_bytes(b"garbage\n")
    err = run()
    assert "damaged Numba cache for" in err and "index.py" in err
    assert "Warning" not in run()
