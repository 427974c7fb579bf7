"""asv suites: an MLP training step, its memory, and cold start (import + first gradient)."""
import os
import subprocess
import sys
import tempfile

import numpy as np

import nbgrad

from .compare import mlp_training_step


def _mlp_step():
    return mlp_training_step(nbgrad)


class MLP:
    def setup(self):
        self.step = _mlp_step()
        self.step()

    def time_sgd_step(self):
        self.step()

    def peakmem_200_steps(self):
        for _ in range(200):
            self.step()


class CrossEntropy:
    def setup(self):
        rng = np.random.default_rng(2)
        self.z = nbgrad.tensor(rng.standard_normal((4096, 1000)).astype(np.float32), requires_grad=True)
        self.t = nbgrad.tensor(rng.integers(0, 1000, 4096))
        self.time_forward_backward()

    def time_forward_backward(self):
        nbgrad.nn.functional.cross_entropy(self.z, self.t).backward()
        self.z.grad = None


_FIRST_GRADIENT = (
    "import nbgrad as torch\n"
    "x = torch.randn((5, 5), requires_grad=True)\n"
    "((10 - x * x).sum()).backward()\n")


class ColdStart:
    """Import plus first gradient in a fresh process (asv times the whole ``timeraw`` code)."""
    timeout = 300

    def timeraw_import_first_gradient_warm_cache(self):
        return _FIRST_GRADIENT

    def timeraw_import(self):
        return "import nbgrad"

    def time_first_gradient_empty_cache(self):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NBGRAD_CACHE_DIR=cache)
            subprocess.run([sys.executable, "-c", _FIRST_GRADIENT], env=env, check=True)
