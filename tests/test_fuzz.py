"""The differential fuzzer (issue 7): random programs of 3-12 ops, drawn from the whole op list
(``fuzz_programs.OPS``), run in nbgrad and in PyTorch; values, gradients, and whether and what
each raises must agree, except for the documented differences of ``fuzz_programs.KNOWN``.

CI runs a fixed, reproducible set of programs (about 30 s); ``NBGRAD_FUZZ_EXAMPLES=20000`` runs
more, and ``.venv/bin/python tests/fuzz_programs.py 20000 SEED`` lists every mismatch class of a
long run with a shortened program for each, instead of stopping at the first. nbgrad runs in a
worker process, so a crash fails the test with the program that caused it.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

import fuzz_programs as fp

EXAMPLES = int(os.environ.get("NBGRAD_FUZZ_EXAMPLES", "1500"))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def worker():
    w = fp.Worker()
    yield w
    w.close()


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@seed(int(os.environ.get("NBGRAD_FUZZ_SEED", "20261201")))     # the same programs wherever the checkout is
@given(program=fp.programs())
def test_programs_run_as_in_pytorch(program, worker, torch):
    found = fp.unexplained(program, fp.check(program, worker, torch))
    if found:
        program = fp.minimize(program, found[0], worker, torch)
        found = fp.unexplained(program, fp.check(program, worker, torch)) or found
    assert not found, fp.report(program, found)


# -- the harness itself: it must be able to fail ----------------------------------------------
def program_of(*lines, inputs=()):
    return fp.Program(inputs=list(inputs), steps=[fp.Step("test", line, line.split(" =")[0]) for line in lines])


X = fp.Input("x0", (3,), "float64", [1.0, -2.0, 0.5], True)


def test_a_different_value_is_a_mismatch(worker, torch):
    program = program_of("v0 = x0 * 2", inputs=[X])
    got = fp.run(torch, program)
    got.steps[0].value = got.steps[0].value + np.array([0, 1e-6, 0])
    (m,) = fp.compare(program, got, fp.run(torch, program))
    assert m.kind == "value" and m.where.startswith("step 0")


def test_a_nan_in_another_place_and_a_missing_error_are_mismatches(torch):
    program = program_of("v0 = x0.sqrt()", inputs=[X])
    ref = fp.run(torch, program)
    assert np.isnan(ref.steps[0].value[1])
    got = fp.run(torch, program)
    got.steps[0].value[1] = 0.0
    assert fp.compare(program, got, ref)[0].detail.startswith("a number where PyTorch has NaN")
    raising = program_of("v0 = x0.sum(5)", inputs=[X])
    ref = fp.run(torch, raising)
    assert isinstance(ref.steps[0], fp.Raised) and ref.steps[0].type == "IndexError"
    (m,) = fp.compare(raising, fp.run(torch, program), ref)
    assert m.kind == "raises"


def test_gradients_are_compared(worker, torch):
    program = program_of("v0 = x0 * x0", inputs=[X])
    program.loss = [fp.Input("wv0", (3,), "float64", [1.0, 2.0, -1.0], False)]
    ref = fp.run(torch, program)
    np.testing.assert_allclose(ref.backward["x0"].value, [2.0, -8.0, -1.0])
    assert fp.compare(program, worker.run(program), ref) == []
    ref.backward["x0"].value[0] = 3.0
    (m,) = fp.compare(program, worker.run(program), ref)
    assert m.kind == "value" and m.where == "grad x0"


def test_a_crash_is_reported_with_its_program(worker, torch):
    os = "__import__('os')"
    crash = f"v1 = v0 if torch.__name__ == 'torch' else {os}.kill({os}.getpid(), 11)"    # a segfault in nbgrad
    program = program_of("v0 = x0 * 2", crash, inputs=[X])
    (m,) = fp.check(program, worker, torch)
    assert m.kind == "crash" and "exit code -11" in m.detail
    assert crash in fp.report(program, [m])
    assert fp.check(program_of("v0 = x0 * 2", inputs=[X]), worker, torch) == []    # restarted


def test_the_printed_program_runs_in_both_libraries(torch):
    import nbgrad
    program = program_of("v0 = x0.exp()", "v1 = v0[1:].sum()", inputs=[X])
    program.loss = [fp.Input("wv1", (), "float64", 2.0, False)]
    for name, lib in (("torch", torch), ("nbgrad", nbgrad)):
        scope = {}
        exec(program.source(name), scope)
        np.testing.assert_allclose(scope["x0"].grad.numpy(), [0, 2 * np.exp(-2.0), 2 * np.exp(0.5)])
