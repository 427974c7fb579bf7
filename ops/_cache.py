"""Where generated kernels live, so that Numba's ``cache=True`` can find them again.

Numba caches a function only when its source is a real file, and closures made by
factories are not reliably cached. So every generated kernel module is written, once,
into the cache directory under a name derived from a hash of its source, and imported
from there: a second process finds both the source and Numba's compiled code on disk.
"""
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading

_lock = threading.Lock()
_modules = {}


def cache_dir():
    """The kernel cache: ``$NBGRAD_CACHE_DIR``, else ``~/.cache/nbgrad``."""
    path = os.environ.get("NBGRAD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nbgrad")
    return os.path.join(path, "kernels")


def load_module(stem, source):
    """Import generated ``source`` as a module, writing it into the cache if absent."""
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
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".py")
    if not os.path.exists(path):
        # write-then-rename: a concurrent process never sees a half-written file,
        # and an existing file keeps its timestamp, which Numba's cache index checks.
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
