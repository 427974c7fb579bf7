"""The main job, as the README runs it: trains to at least 97% test accuracy, saves a
checkpoint that reloads with the same accuracy, and writes its two pictures."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_digits_reaches_97_percent_and_writes_its_pictures(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_digits.py"), "--no-compare",
                             "--no-progress", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "test accuracy" in line)
    accuracy = float(line.split("test accuracy ")[1].split("%")[0])
    reloaded = float(line.split(": ")[-1].rstrip("%"))
    assert accuracy >= 97.0 and reloaded == accuracy
    assert (tmp_path / "digits_curves.png").stat().st_size > 10_000
    assert (tmp_path / "digits_mlp.safetensors").exists()
    from shutil import which
    if which("dot"):
        assert "<svg" in (tmp_path / "digits_graph.svg").read_text()


def _final(stdout):
    loss = float(next(l for l in stdout.splitlines() if "final training loss" in l).split()[-1])
    accuracy = next(l for l in stdout.splitlines() if "test accuracy" in l).split("test accuracy ")[1].split("%")[0]
    return loss, float(accuracy)


def test_train_digits_data_parallel_on_two_ranks_matches_one_process(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'nbgrad[mpi]')")
    pytest.importorskip("sklearn")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("no mpiexec beside the Python executable (the mpich wheel provides one)")
    script = os.path.join(ROOT, "examples", "train_digits.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    args = ["--ddp", "--no-progress"]
    one = subprocess.run([sys.executable, script, *args, "--out", str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=600, env=env)
    two = subprocess.run([mpiexec, "-n", "2", sys.executable, script, *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    (loss1, acc1), (loss2, acc2) = _final(one.stdout), _final(two.stdout)
    assert "over 2 rank(s)" in two.stdout
    assert loss2 == pytest.approx(loss1, rel=1e-4) and acc1 == acc2
