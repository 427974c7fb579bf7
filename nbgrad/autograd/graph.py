"""The backward graph: one ``Node`` (a tensor's ``grad_fn``) per recorded operation.

A node holds what its backward step needs (saved tensors, with the version each had
when saved), one edge per input (``next_functions``: the input's own ``grad_fn``, the
``AccumulateGrad`` of a leaf, or ``None``), and the shape and dtype of every input, so
that the engine can reduce a broadcast gradient and cast it back in one place.
"""
import itertools
import re
import threading
import weakref

from .anomaly_mode import _state as _anomaly, forward_trace
from .grad_mode import is_grad_enabled

__all__ = ["Node", "AccumulateGrad", "NoDerivative", "RemovableHandle", "saved_tensors_hooks", "save_on_cpu"]

_sequence = itertools.count()

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward.")


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook away again."""
    _ids = itertools.count()

    def __init__(self, hooks):
        self.id = next(self._ids)
        self._hooks = weakref.ref(hooks) if hasattr(hooks, "__weakref__") else (lambda: hooks)

    def remove(self):
        hooks = self._hooks()
        if hooks is not None:
            hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class HookDict(dict):
    """A dict that a ``RemovableHandle`` may refer to weakly."""
    __slots__ = ("__weakref__",)


def add_hook(hooks, fn):
    handle = RemovableHandle(hooks)
    hooks[handle.id] = fn
    return handle


class Node:
    """A backward step. Subclasses define ``backward(self, *grads)`` returning one gradient
    per input (``None`` where none is needed), and are named as PyTorch names them."""
    __slots__ = ("next_functions", "_sequence_nr", "_input_meta", "__dict__", "__weakref__")
    num_outputs = 1
    # Set on few nodes: class defaults, so that making a node sets three attributes only.
    _saved = ()
    _saved_versions = ()
    _saved_outputs = None
    _pre_hooks = None
    _post_hooks = None
    _retained = None
    # _saved_for[k], where not None, is the input whose gradient alone reads saved item k: a
    # change to it after saving is no error while that gradient is not wanted (PyTorch saves
    # the other factor of a product only for this factor's gradient)
    _saved_for = None
    _multi_output = False         # one of several views made at once (split, unbind)
    _unpack_hook = None           # set when the saved tensors were packed by saved_tensors_hooks
    _saved_names = None           # PyTorch's names of the saved items: ``_saved_self``, ``_saved_result``...

    def __init__(self, next_functions=(), input_meta=()):
        self.next_functions = next_functions
        self._input_meta = input_meta
        self._sequence_nr = next(_sequence)
        if _anomaly.enabled:
            self._forward_trace = forward_trace()

    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {id(self):#x}>"

    @property
    def needs_input_grad(self):
        return tuple([fn is not None for fn, _ in self.next_functions])

    # -- saved tensors -------------------------------------------------------------------
    def save_for_backward(self, *items):
        """Keep ``items`` for backward; tensors remember their version to catch in-place changes.

        An output of this node is kept without its ``grad_fn`` (which is this node: a
        reference cycle that would keep both alive) and a weak reference to the output;
        unpacking gives the output itself while it lives, else a tensor of its data with
        this node as ``grad_fn``, so that a recorded backward differentiates through it."""
        if _saved_hooks:
            return self._pack(items)
        saved = []
        versions = []
        for i, t in enumerate(items):
            counter = getattr(t, "_version_counter", None)
            if counter is not None:
                versions.append(counter.value)
                if t.grad_fn is self:
                    if self._saved_outputs is None:
                        self._saved_outputs = {}
                    self._saved_outputs[i] = (t._output_nr, weakref.ref(t))
                    t = t.detach()
            else:
                versions.append(None)
            saved.append(t)
        self._saved = tuple(saved)
        self._saved_versions = tuple(versions)

    def save_output(self, output):
        """``save_for_backward(output)`` for this node's one output (exp, tanh...), which
        every unary op whose derivative is written in its result does: its output branch
        without the loop, on the path of every small op."""
        if _saved_hooks:
            return self._pack((output,))
        self._saved_outputs = {0: (output._output_nr, weakref.ref(output))}
        self._saved = (output.detach(),)
        self._saved_versions = (output._version_counter.value,)

    def _pack(self, items):
        """Save ``items`` through the innermost ``saved_tensors_hooks``: tensors are kept as
        what ``pack_hook`` returns, and given back by ``unpack_hook`` (no version check: the
        hooks decide what is kept)."""
        pack, self._unpack_hook = _saved_hooks[-1]
        self._saved = tuple([_Packed(pack(t.detach() if t.grad_fn is self else t))
                             if hasattr(t, "_version_counter") else t for t in items])
        self._saved_versions = (None,) * len(items)

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is None:
            raise RuntimeError(_FREED_MESSAGE)
        if self._unpack_hook is not None:
            unpack = self._unpack_hook
            return tuple([unpack(t.value) if isinstance(t, _Packed) else t for t in saved])
        outputs = self._saved_outputs
        for i, (item, version) in enumerate(zip(saved, self._saved_versions)):
            if version is not None and item._version_counter.value != version:
                reader = self._saved_for[i] if self._saved_for else None
                if reader is not None and self.next_functions[reader][0] is None:
                    continue
                fn = self if outputs and i in outputs else item.grad_fn
                raise RuntimeError(_modified_message(item, item._version_counter.value, version, fn))
        if outputs:
            saved = tuple([self._unpack_output(t, *outputs[i]) if i in outputs else t for i, t in enumerate(saved)])
        return saved

    def _unpack_output(self, data, output_nr, ref):
        output = ref()
        if output is not None and output.grad_fn is self:
            return output
        if not is_grad_enabled():
            return data
        t = data.detach()
        t.grad_fn, t._output_nr = self, output_nr
        return t

    def _alias_output(self, output):
        t = output.detach()
        t.grad_fn, t._output_nr = self, output._output_nr
        return t

    def __getattr__(self, name):
        """``_saved_self``, ``_saved_other``, ``_saved_result``...: a saved item by PyTorch's name;
        ``_saved_dim``, ``_saved_alpha``...: the op's attribute of that name."""
        if name.startswith("_saved_"):
            names = type(self)._saved_names
            if names and name[7:] in names:
                i = names.index(name[7:])
                item = self.saved_tensors[i]
                if self._saved_outputs and i in self._saved_outputs and item.grad_fn is self:
                    # a saved output unpacks to a new tensor object, as in PyTorch
                    # (``y.grad_fn._saved_result is y`` is False): same storage, same grad_fn
                    item = self._alias_output(item)
                return item
            attr = name[7:]
            if attr in self.__dict__:
                return self.__dict__[attr]
            default = getattr(type(self), attr, None)
            if attr and not attr.startswith("_") and isinstance(default, (int, float, str, tuple)):
                return default
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __dir__(self):
        return [*super().__dir__(), *(f"_saved_{n}" for n in type(self)._saved_names or ())]

    def release_saved(self):
        if self._saved:
            self._saved = None

    # -- hooks ---------------------------------------------------------------------------
    def register_prehook(self, fn):
        """``fn(grad_outputs) -> grad_outputs or None``, before this step runs."""
        if self._pre_hooks is None:
            self._pre_hooks = HookDict()
        return add_hook(self._pre_hooks, ("node", fn))

    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs) -> grad_inputs or None``, after this step runs."""
        if self._post_hooks is None:
            self._post_hooks = HookDict()
        return add_hook(self._post_hooks, fn)

    def add_tensor_hook(self, output_nr, fn):
        if self._pre_hooks is None:
            self._pre_hooks = HookDict()
        return add_hook(self._pre_hooks, (output_nr, fn))

    def retain_output(self, output_nr, tensor):
        if self._retained is None:
            self._retained = {}
        self._retained[output_nr] = weakref.ref(tensor)

    def apply(self, *grads):
        return self.backward(*grads)

    def __init_subclass__(cls, **kwargs):
        """A node whose ``apply`` only calls ``backward`` gets ``backward`` itself as
        ``apply``: the engine calls it once per node, one Python frame fewer."""
        super().__init_subclass__(**kwargs)
        if "apply" not in cls.__dict__ and (cls.apply is Node.apply or cls._apply_is_backward):
            cls.apply = cls.backward
            cls._apply_is_backward = True

    _apply_is_backward = False

    def backward(self, *grads):
        raise RuntimeError(f"{self.name()} has no backward step")


class _Packed:
    """What a pack hook returned for one saved tensor (which may be anything, even a tensor)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


_saved_hooks = []          # the (pack, unpack) pairs in force, innermost last


class saved_tensors_hooks:
    """``with saved_tensors_hooks(pack_hook, unpack_hook):`` every tensor an operation saves
    for backward is kept as ``pack_hook(tensor)`` and given back as ``unpack_hook(packed)``."""

    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook, self.unpack_hook = pack_hook, unpack_hook

    def __enter__(self):
        _saved_hooks.append((self.pack_hook, self.unpack_hook))
        return self

    def __exit__(self, *exc):
        _saved_hooks.pop()
        return False


class save_on_cpu(saved_tensors_hooks):
    """Keep saved tensors in CPU memory (copies), as PyTorch's ``save_on_cpu`` does to free
    GPU memory; nbgrad's tensors are already on the CPU, so this only copies them."""

    def __init__(self, pin_memory=False, device_type="cuda"):
        def pack(tensor):
            return tensor.device, tensor.detach().clone()

        def unpack(packed):
            return packed[1]
        super().__init__(pack, unpack)


class NoDerivative(Node):
    """An op PyTorch records without a derivative (``floor_divide``, ``scatter`` with
    ``reduce``): backward through it fails with PyTorch's text. Named as PyTorch names it,
    ``NotImplemented`` (not the Python name, which would hide the builtin)."""

    def backward(self, grad):
        raise RuntimeError(f"derivative for {self.op} is not implemented")


NoDerivative.__name__ = NoDerivative.__qualname__ = "NotImplemented"


class AccumulateGrad(Node):
    """The end of the graph for a leaf tensor: adds the gradient into ``variable.grad``."""
    __slots__ = ("variable",)

    def __init__(self, variable):
        super().__init__()
        self.variable = variable
        self._sequence_nr = float("inf")     # as in PyTorch: run as soon as it is ready

    def apply(self, grad, fresh=False):
        variable = self.variable
        accumulate_into(variable, grad, fresh)
        if variable._post_accumulate_grad_hooks:
            for hook in list(variable._post_accumulate_grad_hooks.values()):
                hook(variable)
        return ()


# Threads that backpropagate into one leaf must not lose each other's sums: the check for
# a first gradient and the in-place add are one step. One lock for all leaves: it is held
# for one add, and a per-leaf lock would cost every leaf an object.
_accumulate_lock = threading.Lock()


def accumulate_into(variable, grad, fresh=False):
    """``variable.grad += grad`` in place. The first gradient is taken as it is when the
    engine knows nobody else holds it (``fresh``), else copied. With ``create_graph``
    the sum is recorded."""
    with _accumulate_lock:
        if variable.__dict__.get("grad") is None:      # (not .grad: it warns on a non-leaf input)
            variable.grad = grad if fresh and not is_grad_enabled() else grad.clone()
        elif is_grad_enabled():
            variable.grad = variable.grad + grad
        else:
            variable.grad.add_(grad)


def _modified_message(tensor, version, expected, fn):
    shape = ", ".join(str(n) for n in tensor.shape)
    which = f", which is output 0 of {re.sub(r'Backward[0-9]*$', '', fn.name())}," if fn is not None else ""
    return ("one of the variables needed for gradient computation has been modified by an inplace "
            f"operation: [torch.{tensor.dtype.legacy}Tensor [{shape}]]{which} is at version {version}; "
            f"expected version {expected} instead. Hint: enable anomaly detection to find the operation "
            "that failed to compute its gradient, with torch.autograd.set_detect_anomaly(True, check_nan=False).")
