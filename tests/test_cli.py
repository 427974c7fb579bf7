"""``python -m nbgrad info`` and ``precompile``."""
import os
import subprocess
import sys

from nbgrad._precompile import FAMILIES, workloads


def test_info_reports_versions_cache_and_threads(tmp_path):
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "nbgrad", "info"], capture_output=True, text=True, env=env,
                         check=True).stdout
    for key in ("nbgrad", "numba", "numpy", "threading layer", "threads", "kernel cache", "CUDA available"):
        assert key in out
    assert str(tmp_path) in out


def test_precompile_covers_every_family_in_both_dtypes_and_sizes():
    jobs = workloads()
    assert len(jobs) == len(FAMILIES) * 2 * 2
    names = [name for name, _ in jobs]
    assert any("float64 large" in n for n in names) and any("float32 small" in n for n in names)
    jobs[0][1]()                       # a job runs the public ops (small float32 pointwise)


def test_unknown_command_fails_with_usage():
    result = subprocess.run([sys.executable, "-m", "nbgrad", "bogus"], capture_output=True, text=True)
    assert result.returncode != 0 and "usage" in result.stderr
