"""The differential fuzzer's random programs (``fuzz_programs.programs``), run by
``nbgrad.compile`` and by eager nbgrad: values, dtypes, the final contents of every variable,
gradients, and whether and what each raises must agree. A program whose ops break the graph
must still give eager's results (the part captured before the break runs compiled, the rest
eagerly).

The program's steps become the body of a function of its inputs, which returns every variable
it made; the loss is taken outside it, as in the eager harness. CI runs a fixed set of
programs; ``NBGRAD_COMPILE_FUZZ_EXAMPLES=2000`` runs more.
"""
import math
import os
import warnings

import numpy as np
from hypothesis import HealthCheck, given, seed, settings

import fuzz_programs as fp
import nbgrad

EXAMPLES = int(os.environ.get("NBGRAD_COMPILE_FUZZ_EXAMPLES", "60"))


def _function(program):
    """The program's steps as a function of its inputs, returning the variables it made."""
    names = [i.name for i in program.inputs]
    made = list(dict.fromkeys(s.out for s in program.steps if s.out not in names))
    body = [f"    {s.line}" for s in program.steps] or ["    pass"]
    source = "\n".join([f"def program({', '.join(names)}):", *body, f"    return [{', '.join(made)}]"])
    scope = {"torch": nbgrad, "inf": math.inf, "nan": math.nan}
    exec(compile(source, "<fuzzed program>", "exec"), scope)
    return scope["program"], made, source


def _run(fn, program, made):
    """(values of the made variables, of the inputs after the call, gradients) or the exception."""
    scope = {"torch": nbgrad, "inf": math.inf, "nan": math.nan}
    env = {}
    for inp in program.inputs + program.loss:
        exec(inp.line(), scope, env)
    try:
        outs = fn(*(env[i.name] for i in program.inputs))
    except Exception as e:                      # noqa: BLE001 (compared)
        return ("raised", type(e).__name__, str(e))
    env.update(zip(made, outs))
    values = {n: _snap(env[n]) for n in made + [i.name for i in program.inputs]}
    grads = None
    if program.loss:
        try:
            for line in program.loss_lines():
                exec(line, scope, env)
            grads = {i.name: _snap(env[i.name].grad) for i in program.inputs if i.requires_grad}
        except Exception as e:                  # noqa: BLE001
            grads = ("raised", type(e).__name__, str(e))
    return values, grads


def _snap(t):
    if not isinstance(t, nbgrad.Tensor):
        return t
    return (np.array(t.detach().numpy(), copy=True), str(t.dtype), bool(t.requires_grad))


MODIFIED = "modified by an inplace operation"


def _same(a, b, where):
    if isinstance(b, tuple) and len(b) == 3 and isinstance(b[0], str) and b[0] == "raised" and MODIFIED in b[2]:
        # the tensor the text names depends on which node found it: the type and the cause must agree
        assert isinstance(a, tuple) and len(a) == 3 and isinstance(a[0], str) and a[:2] == b[:2] and MODIFIED in a[2], \
            f"{where}: {a!r} != {b!r}"
        return
    if isinstance(b, tuple) and len(b) == 3 and isinstance(b[0], np.ndarray):
        assert isinstance(a, tuple) and a[1:] == b[1:], f"{where}: {a[1:]} != {b[1:]}"
        x, y = a[0], b[0]
        assert x.shape == y.shape, f"{where}: shape {x.shape} != {y.shape}"
        if x.dtype.kind == "f":
            tol = dict(rtol=2e-4, atol=2e-5) if x.dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
            np.testing.assert_allclose(x, y, equal_nan=True, err_msg=where, **tol)
        else:
            np.testing.assert_array_equal(x, y, err_msg=where)
    elif isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), where
        for k in b:
            _same(a[k], b[k], f"{where} {k}")
    elif isinstance(b, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for k, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{k}]")
    elif isinstance(b, float) and math.isnan(b):
        assert isinstance(a, float) and math.isnan(a), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@seed(int(os.environ.get("NBGRAD_COMPILE_FUZZ_SEED", "20261201")))
@given(program=fp.programs(min_ops=2, max_ops=8))
def test_compiled_programs_agree_with_eager(program):
    fn, made, source = _function(program)
    eager = _run(fn, program, made)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = nbgrad.compile(fn)
        for call in ("capture", "cached"):
            ours, expected = _run(compiled, program, made), eager
            if _functionalized(ours, eager):
                ours, expected = ours[:1], eager[:1]
            _same(ours, expected, f"{call} call of\n{source}\nloss: {program.loss_lines()}\n")


def _functionalized(ours, eager):
    """The documented differences (README, ``nbgrad.compile``) of in-place ops and backward:
    an in-place op on a value computed in the function is functionalized by the capture, so
    backward has the values it needs where eager's refuses (its saved value was overwritten),
    as with ``torch.compile``; and an input changed in place after the compiled part ran is
    refused by its backward, which recomputes from the inputs, where eager's may not read it."""
    if len(eager) != 2 or len(ours) != 2:
        return False
    return (isinstance(eager[1], tuple) and MODIFIED in eager[1][2] and isinstance(ours[1], dict)) or \
        (isinstance(ours[1], tuple) and MODIFIED in ours[1][2] and isinstance(eager[1], dict))


def test_the_harness_sees_a_difference():
    program = fp.Program(inputs=[fp.Input("x0", (3,), "float64", [1.0, -2.0, 0.5], True)],
                         steps=[fp.Step("test", "v0 = x0 * 2", "v0")])
    program.loss = [fp.Input("wv0", (3,), "float64", [1.0, 2.0, -1.0], False)]
    fn, made, _ = _function(program)
    eager = _run(fn, program, made)
    _same(_run(nbgrad.compile(fn), program, made), eager, "same")
    other, _, _ = _function(fp.Program(inputs=program.inputs, steps=[fp.Step("test", "v0 = x0 * 3", "v0")]))
    try:
        _same(_run(other, program, made), eager, "different")
    except AssertionError:
        return
    raise AssertionError("a different value was not seen")
