"""``Optimizer``: parameter groups, per-parameter state, and their ``state_dict``.

Subclasses implement ``step``: under ``no_grad``, each parameter with a gradient is updated
in place, with its state, by one fused kernel call (the target's ``optim`` family,
``nbgrad.ops.optim`` on the CPU, through ``fused_update``), so a parameter keeps its identity, memory and place in the module, the
update is not recorded in any graph, and its version counter moves as for an in-place op."""
import copy
from collections import defaultdict
from itertools import chain

from nbgrad.ops.targets import target_for, target_of

from .. import _dtype
from .._effects import recorded
from ..autograd.grad_mode import enable_grad
from ..nn.module import _typename
from ..nn.module import _zero_grad as zero_param_grad
from ..tensor import Tensor

__all__ = ["Optimizer", "required", "fused_update", "new_step", "advance"]


class _RequiredParameter:
    """The default of a setting every group must give (e.g. SGD's ``lr`` in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got " + _typename(params))
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of parameters with its own settings (the defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        param_group["params"] = params
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = names
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + _typename(p))
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        seen = set()
        for group in self.param_groups:
            seen.update(group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if not seen.isdisjoint(params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                zero_param_grad(p, set_to_none)

    def __init_subclass__(cls, **kwargs):
        """Each ``step`` is recorded, not made, inside ``nbgrad.compile``'s capture."""
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_recorded", False):
            cls.step = recorded(step)

    def step(self, closure=None):
        raise NotImplementedError

    def _closure_loss(self, closure):
        """The loss from ``closure`` (which recomputes it, gradients included), in grad mode
        even though ``step`` itself runs under ``no_grad``."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self):
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}``: each
        parameter replaced by its position across the groups, so the dict can be loaded into
        an optimizer over other (equally shaped) parameters. State tensors are not copied."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(k)] if isinstance(k, Tensor) else k: v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Take the settings and (copies of the) state of ``state_dict``; floating point state
        tensors are cast to their parameter's dtype, except the step counts."""
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        params = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in params:
                p = params[k]
                state[p] = {key: _cast(p, key, value) for key, value in v.items()}
            else:
                state[k] = copy.deepcopy(v)
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.state = state
        self.param_groups = saved_groups

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"


def _cast(param, key, value):
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    if key != "step" and param.is_floating_point() and value.is_floating_point():
        return value.to(param.dtype, copy=True)
    return value.clone()


# -- what every step uses -------------------------------------------------------------------------
def _scalar_dtype():
    """The dtype of ``step`` counts (and NAdam's ``mu_product``): float64 under a float64
    default dtype, else float32, as PyTorch keeps them."""
    return _dtype.float64 if _dtype.get_default_dtype() is _dtype.float64 else _dtype.float32


def new_step(value=0.0):
    """A 0-d tensor holding a step count (or another per-parameter scalar)."""
    return Tensor._wrap(target_for().scalar(value, _scalar_dtype().numpy))      # host-side, as in PyTorch


def advance(state, key="step", by=None):
    """``state[key] += 1`` (or ``*= by``) in the counter's own dtype, returned as a float."""
    data = state[key]._data
    if by is None:
        data += 1
    else:
        data *= data.dtype.type(by)
    state[key]._version_counter.value += 1
    return float(data)


def fused_update(family, p, grad, states, hyper):
    """Update ``p`` and its ``states`` (tensors, or None for unused ones) in place by one call
    of ``family``'s kernel; their version counters move as for an in-place op."""
    target_of(p._data).optim.step(family, p._data, grad._data, [None if s is None else s._data for s in states], hyper)
    p._version_counter.value += 1
    for s in states:
        if s is not None:
            s._version_counter.value += 1
