"""asv suites: the comparison's workloads (nbgrad alone), an MLP's memory, cold start."""
import os
import subprocess
import sys
import tempfile

import nbgrad

from . import Steady
from .workloads import WORKLOADS


class Workloads(Steady):
    """One whole iteration of each workload of ``workloads.py``, as ``compare.py`` times it."""
    params = [list(WORKLOADS)]
    param_names = ["workload"]

    def build(self, workload):
        self.run = WORKLOADS[workload].make(nbgrad)
        self.run()

    def time_iteration(self, workload):
        self.run()


class MLP:
    def setup(self):
        self.step = WORKLOADS["mlp_step"].make(nbgrad)
        self.step()

    def peakmem_200_steps(self):
        for _ in range(200):
            self.step()


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
