"""nbgrad's benchmarks: the asv suites (``bench_*.py``) and the comparison with its peers
(``compare.py``), over the workloads of ``workloads.py``."""


class Steady:
    """Base of the steady-state asv suites: subclasses define ``build(*params)`` instead of ``setup``.

    asv runs ``setup`` again before every sample (so that samples see fresh state) and, for that
    reason, times one call per sample. These benchmarks leave their state as they found it, so
    ``build`` (inputs, plus one call that compiles or loads the kernels) runs once per process, and
    many samples are taken instead: their median moves by a few per cent between runs."""
    warmup_time = 0.5
    repeat = (20, 500, 4.0)     # per process: at least 20 samples, at most 500, stop after about 4 s
    rounds = 2                  # processes, interleaved with the other benchmarks'
    timeout = 120

    def setup(self, *params):
        if getattr(self, "_built_for", None) != params:
            self.build(*params)
            self._built_for = params
