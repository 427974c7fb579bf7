"""The device, thread and backend API scripts probe, answered as a CPU-only PyTorch build
answers it (errors included)."""
import numpy as np
import pytest

import nbgrad

torch = pytest.importorskip("torch")


def test_the_usual_device_line_picks_the_cpu():
    device = "cuda" if nbgrad.cuda.is_available() else "cpu"
    model = nbgrad.nn.Linear(3, 2).to(device)
    x = nbgrad.ones(4, 3).to(device)
    assert model(x).shape == (4, 2)
    assert x.to(nbgrad.device(device)) is x
    assert nbgrad.cuda.device_count() == 0


@pytest.mark.parametrize("name", ["is_available", "device_count", "is_initialized", "memory_allocated",
                                  "is_bf16_supported"])
def test_cuda_queries_match_torch(name):
    assert getattr(nbgrad.cuda, name)() == getattr(torch.cuda, name)()


@pytest.mark.parametrize("name", ["synchronize", "current_device", "get_device_name", "get_rng_state"])
def test_cuda_calls_that_need_a_device_raise_as_torch(name):
    with pytest.raises(AssertionError) as theirs:
        getattr(torch.cuda, name)()
    with pytest.raises(AssertionError, match=str(theirs.value)):
        getattr(nbgrad.cuda, name)()


def test_seeding_cuda_is_silent():
    assert nbgrad.cuda.manual_seed(0) is None
    assert nbgrad.cuda.manual_seed_all(0) is None
    nbgrad.cuda.empty_cache()


def test_accelerator():
    assert nbgrad.accelerator.is_available() is torch.accelerator.is_available() is False
    assert nbgrad.accelerator.current_accelerator() is None
    assert nbgrad.accelerator.device_count() == 0
    with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available."):
        nbgrad.accelerator.synchronize()


def test_backends():
    assert nbgrad.backends.mps.is_available() is torch.backends.mps.is_available()
    assert nbgrad.backends.cudnn.is_available() is torch.backends.cudnn.is_available()
    for flag in ("benchmark", "deterministic", "enabled"):
        assert getattr(nbgrad.backends.cudnn, flag) == getattr(torch.backends.cudnn, flag)
    nbgrad.backends.cudnn.benchmark = True
    try:
        assert nbgrad.backends.cudnn.benchmark is True
    finally:
        nbgrad.backends.cudnn.benchmark = False
    assert nbgrad.backends.cuda.matmul.allow_tf32 is False
    assert nbgrad.backends.cuda.is_built() is False


def test_default_device():
    assert nbgrad.get_default_device() == "cpu"
    assert str(nbgrad.get_default_device()) == str(torch.get_default_device())
    nbgrad.set_default_device("cpu")
    nbgrad.set_default_device(None)
    with pytest.raises(RuntimeError, match="numba.cuda finds no GPU here"):
        nbgrad.set_default_device("cuda")
    with pytest.raises(RuntimeError, match="numba.cuda finds no GPU here"):
        nbgrad.ones(2).to("cuda")


def test_threads():
    n = nbgrad.get_num_threads()
    assert n >= 1
    try:
        nbgrad.set_num_threads(1)
        assert nbgrad.get_num_threads() == 1
        x = nbgrad.tensor(np.arange(200_000, dtype=np.float64))
        assert float((x * 2).sum()) == float(np.arange(200_000).sum() * 2)    # a parallel loop on one thread
        nbgrad.set_num_threads(10_000)                                          # capped at the pool's size
        assert nbgrad.get_num_threads() >= 1
    finally:
        nbgrad.set_num_threads(n)
    assert nbgrad.get_num_interop_threads() >= 1
    for bad, text in ((0, "set_num_threads expects a positive integer"), (1.5, "set_num_threads expects an int, "
                                                                                 "but got float")):
        with pytest.raises(RuntimeError) as theirs:
            torch.set_num_threads(bad)
        assert str(theirs.value) == text
        with pytest.raises(RuntimeError, match=text):
            nbgrad.set_num_threads(bad)


def test_deterministic_flag():
    nbgrad.use_deterministic_algorithms(True)
    assert nbgrad.are_deterministic_algorithms_enabled()
    nbgrad.use_deterministic_algorithms(False)
    assert not nbgrad.are_deterministic_algorithms_enabled()
