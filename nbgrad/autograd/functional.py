"""``autograd.functional``: Jacobians, Hessians and their products with vectors, of a
function of tensors, with PyTorch's signatures, output structure and errors.

``vjp``, ``vhp``, ``hvp``, ``jacobian`` (reverse mode) and ``hessian`` use the backward
engine as PyTorch does; ``jvp`` uses forward-mode AD (``forward_ad``: one forward pass with
tangents, no double backward; PyTorch's double backward trick only where ``func`` meets an op
without a forward rule), as does ``jacobian(strategy="forward-mode")``. nbgrad has no
``vmap``: ``vectorize=True`` computes the same result one row (or column) at a time.
"""
from .forward_ad import NoForwardRule, dual_level, make_dual, unpack_dual
from .grad_mode import enable_grad, is_grad_enabled, set_grad_enabled

__all__ = ["vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"]


def _as_tuple(inp, arg_name, fn_name):
    """``(was_a_tuple, tuple_of_tensors)``, with PyTorch's TypeError for anything else."""
    from ..tensor import Tensor
    is_tuple = isinstance(inp, tuple)
    items = inp if is_tuple else (inp,)
    for i, el in enumerate(items):
        if not isinstance(el, Tensor):
            if is_tuple:
                raise TypeError(f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple of Tensors but "
                                f"the value at index {i} has type {type(el)}.")
            raise TypeError(f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple of Tensors but the "
                            f"given {arg_name} has type {type(el)}.")
    return is_tuple, items


def _tuple_postprocess(res, to_unpack):
    """Undo ``_as_tuple``: ``to_unpack`` is one flag, or two for a nested (output, input) result."""
    if isinstance(to_unpack, tuple):
        if not to_unpack[1]:
            res = tuple(el[0] for el in res)
        if not to_unpack[0]:
            res = res[0]
    elif not to_unpack:
        res = res[0]
    return res


def _grad_preprocess(inputs, create_graph, need_graph):
    """Fresh leaves to differentiate against (views keeping the history with ``create_graph``)."""
    return tuple(inp.view_as(inp) if create_graph and inp.requires_grad else inp.detach().requires_grad_(need_graph)
                 for inp in inputs)


def _grad_postprocess(inputs, create_graph):
    if isinstance(inputs[0], tuple):
        return tuple(_grad_postprocess(inp, create_graph) for inp in inputs)
    return inputs if create_graph else tuple(inp.detach() for inp in inputs)


def _validate_v(v, other, is_other_tuple):
    if len(other) != len(v):
        if is_other_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(other)} but got {len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for idx, (el_v, el_other) in enumerate(zip(v, other)):
        if el_v.size() != el_other.size():
            prepend = f"Entry {idx} in " if len(v) > 1 else ""
            raise RuntimeError(f"{prepend}v has invalid size: should be {el_other.size()} but got {el_v.size()}.")


def _check_requires_grad(inputs, input_type, strict):
    if not strict:
        return
    for i, inp in enumerate(inputs):
        if inp is None:
            raise RuntimeError(f"The output of the user-provided function is independent of input {i}. This is not "
                               "allowed in strict mode.")
        if not inp.requires_grad:
            if input_type == "hessian":
                raise RuntimeError(f"The hessian of the user-provided function with respect to input {i} is "
                                   "independent of the input. This is not allowed in strict mode. You should ensure "
                                   "that your function is thrice differentiable and that the hessian depends on the "
                                   "inputs.")
            if input_type == "jacobian":
                raise RuntimeError("While computing the hessian, found that the jacobian of the user-provided function "
                                   f"with respect to input {i} is independent of the input. This is not allowed in "
                                   "strict mode. You should ensure that your function is twice differentiable and "
                                   "that the jacobian depends on the inputs (this would be violated by a linear "
                                   "function for example).")
            raise RuntimeError(f"Output {i} of the user-provided function does not require gradients. The outputs must "
                               "be computed in a differentiable manner from the input when running in strict mode.")


def _autograd_grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None):
    """``autograd.grad`` over the outputs that require grad (None for inputs not reached)."""
    from . import grad
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    pairs = [(out, g) for out, g in zip(outputs, grad_outputs) if out is not None and out.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    return grad(tuple(o for o, _ in pairs), inputs, tuple(g for _, g in pairs), allow_unused=True,
                create_graph=create_graph, retain_graph=retain_graph)


_STAGE_MESSAGES = {
    "back": "The output of the user-provided function is independent of input {i}. This is not allowed in strict mode.",
    "back_trick": "The gradient with respect to the input is independent of entry {i} in the grad_outputs when using "
                  "the double backward trick to compute forward mode gradients. This is not allowed in strict mode.",
    "double_back": "The jacobian of the user-provided function is independent of input {i}. This is not allowed in "
                   "strict mode.",
    "double_back_trick": "The hessian of the user-provided function is independent of entry {i} in the grad_jacobian. "
                         "This is not allowed in strict mode as it prevents from using the double backward trick to "
                         "replace forward mode AD.",
}
_CREATE_GRAPH_MESSAGES = {
    "back": "The jacobian of the user-provided function is independent of input {i}. This is not allowed in strict "
            "mode when create_graph=True.",
    "double_back": "The hessian of the user-provided function is independent of input {i}. This is not allowed in "
                   "strict mode when create_graph=True.",
}


def _fill_in_zeros(grads, refs, strict, create_graph, stage):
    """Zeros where an input was not reached (an error in strict mode)."""
    from ..factories import zeros_like
    res = []
    for i, (g, ref) in enumerate(zip(grads, refs)):
        if g is None:
            if strict:
                raise RuntimeError(_STAGE_MESSAGES[stage].format(i=i))
            g = zeros_like(ref)
        elif strict and create_graph and not g.requires_grad and stage in _CREATE_GRAPH_MESSAGES:
            raise RuntimeError(_CREATE_GRAPH_MESSAGES[stage].format(i=i))
        res.append(g)
    return tuple(res)


def _single_element_v(inputs, fn_name):
    if len(inputs) != 1 or inputs[0].nelement() != 1:
        raise RuntimeError("The vector v can only be None if the input to the user-provided function is a single "
                           "Tensor with a single element.")


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), v^T J)``: the vector-Jacobian product, by one backward pass."""
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _grad_preprocess(inputs, create_graph, True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", "vjp")
        _check_requires_grad(outputs, "outputs", strict)
        if v is not None:
            _, v = _as_tuple(v, "v", "vjp")
            v = _grad_preprocess(v, create_graph, False)
            _validate_v(v, outputs, is_outputs_tuple)
        elif len(outputs) != 1 or outputs[0].nelement() != 1:
            raise RuntimeError("The vector v can only be None if the user-provided function returns a single Tensor "
                               "with a single element.")
        grad_res = _autograd_grad(outputs, inputs, v, create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "back")
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, is_outputs_tuple), _tuple_postprocess(result, is_inputs_tuple)


def _forward(func, inputs, tangents, create_graph, strict):
    """``func``'s outputs and their tangents for input tangents ``tangents``, by forward AD."""
    from ..factories import zeros_like
    with set_grad_enabled(create_graph or is_grad_enabled()), dual_level():
        outputs = func(*[make_dual(x, t) for x, t in zip(inputs, tangents)])
        is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", "jvp")
        primals, result = [], []
        for i, out in enumerate(outputs):
            primal, tangent = unpack_dual(out)
            if tangent is None:
                if strict:
                    raise RuntimeError(f"Output {i} of the user-provided function does not require gradients. The "
                                       "outputs must be computed in a differentiable manner from the input when "
                                       "running in strict mode.")
                tangent = zeros_like(primal)
            primals.append(primal)
            result.append(tangent)
    return is_outputs_tuple, tuple(primals), tuple(result)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), J v)``: the Jacobian-vector product, by one forward pass of forward AD
    (where ``func`` meets an op without a forward rule, by PyTorch's double backward trick)."""
    try:
        return _jvp_forward(func, inputs, v, create_graph, strict)
    except NoForwardRule:
        return _jvp_double_backward(func, inputs, v, create_graph, strict)


def _jvp_double_backward(func, inputs, v, create_graph, strict):
    """``J v`` as the gradient, with respect to ``u``, of ``u^T J`` (itself a backward pass)."""
    from ..factories import zeros_like
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
        inputs = _grad_preprocess(inputs, create_graph, True)
        v = _jvp_vector(v, inputs, is_inputs_tuple, create_graph)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", "jvp")
        _check_requires_grad(outputs, "outputs", strict)
        grad_outputs = tuple(zeros_like(out).requires_grad_(True) for out in outputs)
        grad_inputs = _autograd_grad(outputs, inputs, grad_outputs, create_graph=True)
        _check_requires_grad(grad_inputs, "grad_inputs", strict)
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        grad_res = _autograd_grad(grad_inputs, grad_outputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, outputs, strict, create_graph, "back_trick")
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, is_outputs_tuple), _tuple_postprocess(result, is_outputs_tuple)


def _jvp_vector(v, inputs, is_inputs_tuple, create_graph):
    if v is not None:
        _, v = _as_tuple(v, "v", "jvp")
        v = _grad_preprocess(v, create_graph, False)
        _validate_v(v, inputs, is_inputs_tuple)
        return v
    _single_element_v(inputs, "jvp")
    from ..factories import ones_like
    return (ones_like(inputs[0]),)


def _jvp_forward(func, inputs, v, create_graph, strict):
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
    inputs = _grad_preprocess(inputs, create_graph, create_graph)
    v = _jvp_vector(v, inputs, is_inputs_tuple, create_graph)
    is_outputs_tuple, outputs, result = _forward(func, inputs, v, create_graph, strict)
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, is_outputs_tuple), _tuple_postprocess(result, is_outputs_tuple)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """The Jacobian of ``func`` at ``inputs``: for each output and input, a tensor of shape
    ``output.shape + input.shape``. Reverse mode takes one backward pass per output element,
    forward mode one forward pass per input element."""
    from ..functional.shape import stack
    if strategy not in ("forward-mode", "reverse-mode"):
        raise AssertionError('Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If your function '
                             'has more outputs than inputs, "forward-mode" tends to be more performant. Otherwise, '
                             'prefer to use "reverse-mode".')
    if strategy == "forward-mode":
        if create_graph:
            raise NotImplementedError("torch.autograd.functional.jacobian: `create_graph=True` and `strategy="
                                      "\"forward-mode\"` are not supported together (yet). Please either set "
                                      "`create_graph=False` or `strategy=\"reverse-mode\"`.")
        return _jacfwd(func, inputs, strict)
    if vectorize and strict:
        raise RuntimeError("torch.autograd.functional.jacobian: `strict=True` and `vectorized=True` are not supported "
                           "together. Please either set `strict=False` or `vectorize=False`.")
    from ..factories import zeros_like
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        inputs = _grad_preprocess(inputs, create_graph, True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", "jacobian")
        _check_requires_grad(outputs, "outputs", strict)
        jac = []
        for i, out in enumerate(outputs):
            rows = [[] for _ in inputs]
            flat = out.reshape(-1)
            for j in range(flat.numel()):
                grads = _autograd_grad((flat[j],), inputs, retain_graph=True, create_graph=create_graph)
                for k, (g, inp) in enumerate(zip(grads, inputs)):
                    if g is None:
                        if strict:
                            raise RuntimeError(f"Output {i} of the user-provided function is independent of input "
                                               f"{k}. This is not allowed in strict mode.")
                        g = zeros_like(inp)
                    elif strict and create_graph and not g.requires_grad:
                        raise RuntimeError(f"The jacobian of the user-provided function is independent of input {k}. "
                                           "This is not allowed in strict mode when create_graph=True.")
                    rows[k].append(g)
            jac.append(tuple(_stacked(stack, r, out.shape, inp) for r, inp in zip(rows, inputs)))
        jac = _grad_postprocess(tuple(jac), create_graph)
    return _tuple_postprocess(jac, (is_outputs_tuple, is_inputs_tuple))


def _stacked(stack, rows, out_shape, inp):
    from ..factories import zeros
    if not rows:
        return zeros(*out_shape, *inp.shape, dtype=inp.dtype)
    return stack(rows, 0).reshape(*out_shape, *inp.shape)


def _jacfwd(func, inputs, strict):
    from ..factories import zeros_like
    from ..functional.shape import stack
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
    inputs = _grad_preprocess(inputs, False, False)
    columns = None                       # [output][input] -> list of tangents
    is_outputs_tuple, outputs = False, ()
    for k, inp in enumerate(inputs):
        for j in range(inp.numel()):
            tangents = [zeros_like(x) for x in inputs]
            tangents[k].reshape(-1)[j] = 1
            is_outputs_tuple, outputs, result = _forward(func, inputs, tangents, False, strict)
            if columns is None:
                columns = [[[] for _ in inputs] for _ in outputs]
            for i, t in enumerate(result):
                columns[i][k].append(t.reshape(-1))
    jac = []
    for i, out in enumerate(outputs):
        jac.append(tuple(stack(columns[i][k], 1).reshape(*out.shape, *inp.shape) if columns[i][k]
                         else __import__("nbgrad").zeros(*out.shape, *inp.shape, dtype=out.dtype)
                         for k, inp in enumerate(inputs)))
    return _tuple_postprocess(tuple(jac), (is_outputs_tuple, is_inputs_tuple))


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """The Hessian of a scalar function: the Jacobian of its gradient."""
    from ..tensor import Tensor
    if outer_jacobian_strategy not in ("forward-mode", "reverse-mode"):
        raise AssertionError('Expected strategy to be either "forward-mode" or "reverse-mode".')
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")

    def single_output(*inp):
        out = func(*inp)
        is_out_tuple, t_out = _as_tuple(out, "outputs of the user-provided function", "hessian")
        _check_requires_grad(t_out, "outputs", strict)
        if is_out_tuple or not isinstance(out, Tensor):
            raise RuntimeError("The function given to hessian should return a single Tensor")
        if out.nelement() != 1:
            raise RuntimeError("The Tensor returned by the function given to hessian should contain a single element")
        return out.squeeze()

    def jac_func(*inp):
        jac = jacobian(single_output, inp, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict)
        return jac

    if outer_jacobian_strategy == "forward-mode":
        raise NotImplementedError("hessian: outer_jacobian_strategy='forward-mode' needs forward AD over the "
                                  "backward pass, which nbgrad's forward AD does not cover")
    res = jacobian(jac_func, inputs, create_graph=create_graph, strict=strict, vectorize=vectorize)
    return _tuple_postprocess(res, (is_inputs_tuple, is_inputs_tuple))


def _hessian_setup(func, inputs, v, create_graph, strict, fn_name):
    from ..tensor import Tensor
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", fn_name)
    inputs = _grad_preprocess(inputs, create_graph, True)
    if v is not None:
        _, v = _as_tuple(v, "v", fn_name)
        v = _grad_preprocess(v, create_graph, False)
        _validate_v(v, inputs, is_inputs_tuple)
    else:
        _single_element_v(inputs, fn_name)
    outputs = func(*inputs)
    is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", fn_name)
    _check_requires_grad(outputs, "outputs", strict)
    if is_outputs_tuple or not isinstance(outputs[0], Tensor):
        raise RuntimeError(f"The function given to {fn_name} should return a single Tensor")
    if outputs[0].nelement() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn_name} should contain a single element")
    jac = _autograd_grad(outputs, inputs, create_graph=True)
    _check_requires_grad(jac, "jacobian", strict)
    return is_inputs_tuple, inputs, v, outputs, is_outputs_tuple, jac


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), v^T H)`` for a scalar ``func``: the gradient's vector-Jacobian product."""
    with enable_grad():
        is_inputs_tuple, inputs, v, outputs, is_outputs_tuple, jac = _hessian_setup(func, inputs, v, create_graph,
                                                                                    strict, "vhp")
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        grad_res = _autograd_grad(jac, inputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "double_back")
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, is_outputs_tuple), _tuple_postprocess(result, is_inputs_tuple)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), H v)`` for a scalar ``func``, by PyTorch's double backward trick (for a
    twice continuously differentiable function, H is symmetric and this equals ``vhp``)."""
    from ..factories import zeros_like
    with enable_grad():
        is_inputs_tuple, inputs, v, outputs, is_outputs_tuple, jac = _hessian_setup(func, inputs, v, create_graph,
                                                                                    strict, "hvp")
        grad_jac = tuple(zeros_like(inp).requires_grad_(True) for inp in inputs)
        double_back = _autograd_grad(jac, inputs, grad_jac, create_graph=True)
        _check_requires_grad(jac, "hessian", strict)
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        grad_res = _autograd_grad(double_back, grad_jac, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "double_back_trick")
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, is_outputs_tuple), _tuple_postprocess(result, is_inputs_tuple)
