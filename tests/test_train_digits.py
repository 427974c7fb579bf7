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
