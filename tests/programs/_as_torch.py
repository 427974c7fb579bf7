"""Run a PyTorch program with ``torch`` mapped to nbgrad: ``python _as_torch.py PROGRAM.py``.

Every ``torch`` / ``torch.X`` module the programs import is replaced in ``sys.modules`` by
nbgrad's, so the program's own ``import torch`` lines stay untouched.
"""
import importlib
import os
import runpy
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _ROOT)

import nbgrad  # noqa: E402

_SUBMODULES = ("nn", "nn.functional", "nn.init", "nn.utils", "nn.parameter", "optim", "optim.lr_scheduler",
               "utils", "utils.data", "autograd", "autograd.function", "cuda", "backends", "linalg", "testing")


def install():
    """Point ``torch`` and its submodules at nbgrad's (those nbgrad has)."""
    sys.modules["torch"] = nbgrad
    for name in _SUBMODULES:
        try:
            sys.modules["torch." + name] = importlib.import_module("nbgrad." + name)
        except ImportError:
            pass


if __name__ == "__main__":
    install()
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    runpy.run_path(program, run_name="__main__")
