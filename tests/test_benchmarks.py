"""The comparison's arithmetic and table (benchmarks/compare.py), and where it writes."""
import json
import os

import pytest

from benchmarks import compare


def test_ratio_stats_are_per_round_ratios():
    stats = compare.ratio_stats([2.0, 4.0, 9.0, 8.0, 10.0], [1.0, 1.0, 3.0, 2.0, 2.0])   # ratios 2, 4, 3, 4, 5
    assert stats == {"median": 4.0, "q1": 3.0, "q3": 4.0, "rounds": 5}
    assert compare.spread(stats) == 0.25
    assert compare.spread(compare.ratio_stats([3.0], [2.0])) is None


def test_rounds_alternate_libraries():
    calls = []
    values = compare.rounds({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0},
                            repeats=3, budget_s=0)
    assert calls == ["a", "b"] * 3 and values == {"a": [1.0] * 3, "b": [2.0] * 3}


def _report(workloads, load=(0.0, 1.0)):
    return {"machine": {"cpus": 2}, "load_average": list(load), "workloads": workloads}


def test_table_aligns_long_names_and_marks_missing_cells():
    steady = compare.summarize("tutorial_5x5", {"nbgrad": [1e-4] * 4, "torch": [2e-4] * 4},
                               {"torch.compile": "BackendCompilerFailed: no compiler"})
    name = "a_workload_with_a_long_name"
    noisy = compare.summarize(name, {"nbgrad": [1.0, 1.0, 1.0, 1.0], "jax": [1.0, 2.0, 1.0, 2.0]})
    memory = compare.summarize("peak_memory", {"nbgrad": [2 ** 20], "torch": [2 ** 21]},
                               growth_bytes={"nbgrad": 0})
    width = len(name)
    lines = [compare.header(width)] + compare.rows("tutorial_5x5", steady, width) + \
        compare.rows(name, noisy, width) + compare.rows("peak_memory", memory, width)
    text = "\n".join(lines)
    assert "nan" not in text
    peer_column = lines[0].index("peer")
    assert all(line[peer_column - 2:peer_column] == "  " and line[peer_column] != " " for line in lines)
    torch_row, failed_row = lines[1], lines[2]
    assert "0.50" in torch_row and "<= 1.3 ok" in torch_row
    assert failed_row.count("—") == 3 and "failed: BackendCompilerFailed" in failed_row
    assert "noisy" in lines[3] and "0.50–1.00" in lines[3]
    memory_row = lines[4]
    assert "1.0 MiB" in memory_row and "2.0 MiB" in memory_row and "—" in memory_row   # one round: no IQR


def test_warnings_name_noisy_workloads_and_a_busy_machine():
    noisy = compare.summarize("mlp_step", {"nbgrad": [1.0, 1.0, 1.0, 1.0], "torch": [1.0, 2.0, 1.0, 2.0]})
    steady = compare.summarize("poly_1e6", {"nbgrad": [1.0] * 4, "torch": [2.0] * 4})
    assert compare.warnings(_report({"poly_1e6": steady})) == []
    out = compare.warnings(_report({"mlp_step": noisy, "poly_1e6": steady}, load=(1.5, 1.0)))
    assert len(out) == 2 and out[0].startswith("mlp_step vs torch") and "busy" in out[1]


@pytest.mark.parametrize("isolated", [False, True])
def test_a_run_writes_only_where_asked(tmp_path, isolated):
    """Results go to --out; the tracked snapshot is untouched without --snapshot."""
    snapshot = os.stat(compare.SNAPSHOT).st_mtime_ns
    out = tmp_path / "r.json"
    compare.main(["--quick", "--only", "chain_100", "--peers", "numpy", "--out", str(out)]
                 + ["--isolated"] * isolated)
    report = json.loads(out.read_text())
    entry = report["workloads"]["chain_100"]
    assert report["mode"] == ("isolated" if isolated else "in-process")
    assert set(entry["median"]) == {"nbgrad", "numpy"} and entry["ratio"]["numpy"]["rounds"] == 3
    assert os.stat(compare.SNAPSHOT).st_mtime_ns == snapshot
    with pytest.raises(SystemExit):
        compare.main(["--snapshot", "--only", "chain_100"])
