"""asv suites for the training plumbing: a DataLoader epoch, collation, checkpoint save/load.

Run beside PyTorch with ``python -m benchmarks.bench_data`` (prints both, same data)."""
import io

import numpy as np

import nbgrad

_X = np.random.default_rng(0).standard_normal((1797, 64)).astype(np.float32)   # digits-sized
_Y = np.arange(1797) % 10


def _loaders(lib):
    data = lib.utils.data
    tensors = data.DataLoader(data.TensorDataset(lib.tensor(_X), lib.tensor(_Y)), batch_size=64, shuffle=True)
    samples = data.DataLoader([(_X[i], int(_Y[i])) for i in range(len(_X))], batch_size=64)
    return tensors, samples


def _state_dict(lib):
    return {f"layer{i}.weight": lib.tensor(np.full((1000, 1000), i, np.float32)) for i in range(4)}


class DataLoading:
    def setup(self):
        self.tensors, self.samples = _loaders(nbgrad)
        for _ in self.tensors:
            pass

    def time_epoch_tensor_dataset_batch64(self):
        for _ in self.tensors:
            pass

    def time_epoch_array_samples_default_collate(self):
        for _ in self.samples:
            pass


class Checkpoint:
    """A 16 MB state dict (four 1000x1000 float32 tensors) to and from memory."""

    def setup(self):
        self.state = _state_dict(nbgrad)
        buf = io.BytesIO()
        nbgrad.save(self.state, buf)
        self.data = buf.getvalue()

    def time_save(self):
        nbgrad.save(self.state, io.BytesIO())

    def time_load(self):
        nbgrad.load(io.BytesIO(self.data))


def _compare():
    import timeit

    import torch
    for lib in (nbgrad, torch):
        tensors, samples = _loaders(lib)
        state = _state_dict(lib)
        buf = io.BytesIO()
        lib.save(state, buf)
        data = buf.getvalue()
        cases = {"epoch, TensorDataset, batch 64": lambda: [None for _ in tensors],
                 "epoch, (array, int) samples": lambda: [None for _ in samples],
                 "save 16 MB state dict": lambda: lib.save(state, io.BytesIO()),
                 "load 16 MB state dict": lambda: lib.load(io.BytesIO(data))}
        for name, fn in cases.items():
            fn()
            best = min(timeit.repeat(fn, number=1, repeat=15))
            print(f"{lib.__name__:7s} {name:32s} {best * 1e3:8.2f} ms")


if __name__ == "__main__":
    _compare()
