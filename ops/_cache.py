"""Where generated kernels live, so that Numba's ``cache=True`` can find them again.

Numba caches a function only when its source is a real file, and closures made by
factories are not reliably cached. So every generated kernel module is written, once,
into the cache directory under a name derived from a hash of its source, and imported
from there: a second process finds both the source and Numba's compiled code on disk.

Nothing found there is trusted: the module must match the generated source byte for
byte, and a damaged ``.pyc`` or Numba index/data file is cleared and rebuilt, each with
one warning. A cache directory that cannot be written is replaced, for this process, by
a private temporary one, so that ``cache=True`` still has a real file to work from.
"""
import atexit
import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import warnings

_lock = threading.Lock()
_modules = {}
_warned = set()
_private = None


def cache_dir():
    """The kernel cache: ``$NBGRAD_CACHE_DIR``, else ``~/.cache/nbgrad``."""
    path = os.environ.get("NBGRAD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nbgrad")
    return os.path.join(path, "kernels")


def load_module(stem, source):
    """Import generated ``source`` as a module, writing it into the cache if absent or different."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    name = f"nbgrad_kernels_{stem}_{digest}"
    module = _modules.get(name)
    if module is not None:
        return module
    with _lock:
        module = _modules.get(name)
        if module is None:
            module = _modules[name] = _import(name, source)
    return module


def _import(name, source):
    directory = cache_dir()
    try:
        return _exec(name, _place(directory, name, source))
    except (OSError, RuntimeError) as error:     # RuntimeError: Numba found nowhere to save
        _warn_once(("directory", directory), f"nbgrad: cannot use the kernel cache {directory} ({error}); "
                                             "compiling into a temporary directory for this process")
        return _exec(name, _place(_private_dir(), name, source))


def _place(directory, name, source):
    """The path of ``source`` in ``directory``, checked byte for byte and rewritten if it differs."""
    path = os.path.join(directory, name + ".py")
    data = source.encode()
    try:
        with open(path, "rb") as f:
            found = f.read()
    except OSError:
        found = None
    if found == data:
        return path     # left alone: its timestamp keeps Python's .pyc of it valid
    if found is not None:
        _warn_once(("source", path), f"nbgrad: the cached kernel module {path} differs from its generated "
                                     "source; rewriting it")
    os.makedirs(directory, exist_ok=True)
    # write-then-rename: a concurrent process never sees a half-written file
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _remove(importlib.util.cache_from_source(path))     # a .pyc of what was there before
    return path


def _exec(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (EOFError, ValueError, TypeError, ImportError) as error:     # what unmarshalling raises
        # Python checks a .pyc against the source's mtime and size only, not its contents
        pyc = importlib.util.cache_from_source(path)
        if not os.path.exists(pyc):
            raise
        _warn_once(("pyc", path), f"nbgrad: damaged {pyc} ({type(error).__name__}: {error}); removed it")
        _remove(pyc)
        spec.loader.exec_module(module)
    guard(vars(module))
    return module


def guard(namespace):
    """Make a damaged Numba cache of the cached kernels defined in ``namespace`` (a module's
    globals: generated or hand-written kernels) a miss instead of an error on every run."""
    from numba.core.dispatcher import Dispatcher
    for kernel in list(namespace.values()):
        if (isinstance(kernel, Dispatcher) and kernel.py_func.__module__ == namespace["__name__"]
                and kernel._cache.cache_path):
            kernel._cache.load_overload = functools.partial(_load_or_clear, kernel._cache, namespace["__file__"])


def _load_or_clear(cache, path, sig, target_context):
    """Numba's cache lookup, where a damaged index or data file (which Numba raises on, at
    the kernel's first call) counts as a miss: the index is emptied, so the kernel is
    compiled and saved afresh."""
    try:
        return type(cache).load_overload(cache, sig, target_context)
    except Exception as error:
        _warn_once(("numba", path), f"nbgrad: damaged Numba cache for {path} in {cache.cache_path} "
                                    f"({type(error).__name__}: {error}); cleared it, recompiling")
        try:
            cache.flush()
        except OSError:
            cache.disable()
        return None


def _private_dir():
    global _private
    if _private is None:
        _private = tempfile.mkdtemp(prefix="nbgrad-kernels-")
        atexit.register(shutil.rmtree, _private, ignore_errors=True)
    return _private


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
