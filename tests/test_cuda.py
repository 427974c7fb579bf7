"""The CUDA target under Numba's CUDA simulator: ``tests/cuda_sim_checks.py`` (and
``tests/cuda_compile_checks.py``, nbgrad.compile on 'cuda') runs in a pytest process of its own, with ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported (the
simulator cannot be switched on in a process that has imported numba.cuda). On a machine
with a GPU, run ``python -m pytest tests/cuda_sim_checks.py`` directly to check the real device.
Without the simulator (this process), asking for 'cuda' where there is no GPU says why."""
import os
import pathlib
import subprocess
import sys

import pytest

import nbgrad
from nbgrad.ops.targets import CUDA_MISSING

ROOT = pathlib.Path(nbgrad.__file__).resolve().parent.parent
CHECKS = pathlib.Path(__file__).with_name("cuda_sim_checks.py")
LAYER_CHECKS = CHECKS.with_name("cuda_sim_layer_checks.py")     # conv, pool, norm, embedding


def test_every_cuda_check_passes_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(CHECKS),
                          str(LAYER_CHECKS)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert run.stdout.count(".") >= 250          # every check ran (none skipped or deselected)


def test_compiled_functions_run_on_cuda_under_the_simulator():
    """``nbgrad.compile`` on 'cuda' tensors (``tests/cuda_compile_checks.py``), in its own process too."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                          str(CHECKS.with_name("cuda_compile_checks.py"))],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert run.stdout.split()[0] == "." * 12, run.stdout[-2000:]   # every check ran and passed


def test_without_a_gpu_or_the_simulator_cuda_is_refused_with_the_reason():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or nbgrad.ops.targets.cuda_target() is not None:
        pytest.skip("a CUDA target is available in this process")
    with pytest.raises(RuntimeError) as info:
        nbgrad.ones(2, device="cuda")
    assert str(info.value) == CUDA_MISSING


def test_every_cuda_kernel_compiles_to_ptx():
    """Where numba-cuda is installed (nbgrad[cuda]), with or without a GPU: every kernel the
    CUDA target launches compiles for sm_90 (``tests/cuda_ptx_check.py``)."""
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install nbgrad[cuda]): kernels are checked in the simulator only")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    run = subprocess.run([sys.executable, str(CHECKS.with_name("cuda_ptx_check.py"))], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
