"""The Tensor: an array, its place in the autograd graph, and a version counter.

A tensor's data is an array of a target (``nbgrad.ops.targets``: on the CPU, a NumPy
array); everything that allocates, copies, views or launches on it asks ``target_of`` the
data, and ``device`` comes from that target. Views (``view``, ``transpose``, slicing) show
their base's memory and share its version counter, so that a saved tensor changed in place
through any alias is caught in backward. Operations live in
``nbgrad/functional/``: each computes with a kernel from ``nbgrad.ops`` and records a
node with ``record``; this file holds what every tensor has, whatever ops exist.
"""
import weakref

import numpy as np

from nbgrad.ops.targets import target_for, target_of

from . import _dtype
from ._effects import EFFECTS
from ._dtype import _BY_NUMPY, from_numpy_dtype, get_default_dtype, to_dtype
from .autograd.graph import AccumulateGrad, HookDict, _saved_hooks, add_hook
from .autograd.grad_mode import _state as _grad_mode
from .autograd.grad_mode import shared as _shared_mode
from .autograd import forward_ad as _forward_ad
from .autograd.forward_ad import _state as _fw

__all__ = ["Tensor", "Size", "device", "record", "is_tensor"]


_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad attribute won't be "
    "populated during autograd.backward(). If you indeed want the .grad field to be populated for a non-leaf Tensor, "
    "use .retain_grad() on the non-leaf Tensor. If you access the non-leaf Tensor by mistake, make sure you access "
    "the leaf Tensor instead. See github.com/pytorch/pytorch/pull/30531 for more information.")


class Size(tuple):
    """A tensor's shape: a tuple that prints as ``torch.Size([2, 3])``."""

    def __repr__(self):
        return f"torch.Size({list(self)})"

    def numel(self):
        n = 1
        for d in self:
            n *= d
        return n


class device:
    """Where a tensor's data lives. The CPU is built; CUDA arrives with its own issue."""
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        if ":" in type:
            type, index = type.split(":")
            index = int(index)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        self.type, self.index = type, index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


_DEVICES = {}


def _device_of(target):
    """The ``device`` of ``target``'s arrays (one object per target)."""
    d = _DEVICES.get(target)
    if d is None:
        d = _DEVICES[target] = device(getattr(target, "device_str", target.device_type))
    return d


_DEFAULT_DEVICE = [None]                 # set_default_device's; None: the CPU


def _check_device(d):
    """The target that makes arrays for device ``d`` (``None``: the default device); PyTorch's
    errors for a device string it does not know, nbgrad's for a device without a target."""
    if d is None:
        d = _DEFAULT_DEVICE[0]
    return target_for(None if d is None else device(d).type)


class _Version:
    """One counter per storage, shared by every view of it."""
    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


class Tensor:
    """A multi-dimensional array that can record the operations applied to it."""
    __slots__ = ("_data", "_version_counter", "_requires_grad", "grad_fn", "__dict__", "__weakref__")
    __array_priority__ = 1000          # ndarray op Tensor defers to Tensor's reflected op
    # Set on few tensors: class defaults, so that making a tensor sets four attributes only.
    _output_nr = 0
    _base = None                       # the tensor whose memory a view shows
    _view_fn = None                    # makes the same view of another tensor of _base's shape
    _hooks = None
    _post_accumulate_grad_hooks = None
    _accumulator = None
    _traced = False                    # True for nbgrad.compile's proxies (a subclass)

    def __init__(self, *args, dtype=None, device=None):
        """The legacy constructor: ``Tensor(2, 3)`` (sizes, zero-filled), ``Tensor([1, 2])``
        (data), or ``Tensor(6.7)`` (a 0-d tensor holding a number; PyTorch rejects this)."""
        target = _check_device(device)
        dtype = to_dtype(dtype) if dtype is not None else get_default_dtype()
        if len(args) == 1 and isinstance(args[0], (Size, tuple)) and all(isinstance(a, int) for a in args[0]):
            args = tuple(args[0])
        if args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            if any(a < 0 for a in args):
                raise RuntimeError(f"Trying to create tensor with negative dimension {min(args)}: {list(args)}")
            data = target.zeros(args, dtype.numpy)
        elif len(args) == 1 and isinstance(args[0], Tensor):
            data = target_of(args[0]._data).astype(args[0]._data, dtype.numpy)
        elif len(args) == 1:
            data = _array_from(args[0], dtype, target)
        elif not args:
            data = target.zeros((0,), dtype.numpy)
        else:
            raise TypeError(f"new(): invalid data type '{type(args[0]).__name__}'")
        _init(self, data)

    @staticmethod
    def _wrap(data, requires_grad=False):
        """A new tensor over ``data`` (not copied)."""
        t = object.__new__(Tensor)
        _init(t, data)
        t._requires_grad = requires_grad
        return t

    # -- what a tensor is ------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    @property
    def dtype(self):
        return _BY_NUMPY[self._data.dtype]

    @property
    def device(self):
        return _device_of(target_of(self._data))

    @property
    def is_cuda(self):
        return target_of(self._data).device_type == "cuda"

    is_sparse = False
    layout = "strided"

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    ndimension = dim

    def numel(self):
        return self._data.size

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    def stride(self, dim=None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[_wrap_dim(dim, self._data.ndim)]

    def is_contiguous(self):
        return target_of(self._data).is_contiguous(self._data)

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def data_ptr(self):
        return target_of(self._data).data_ptr(self._data)

    @property
    def _version(self):
        return self._version_counter.value

    # -- autograd state ----------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad or self.grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, flag):
        if self.grad_fn is not None:
            if flag:
                return
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a computed "
                "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().")
        if flag and self._data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        self._requires_grad = bool(flag)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.grad_fn is None and self._data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self):
        """The gradient backward accumulated here (leaves, and non-leaves that ``retain_grad``).
        Read on a non-leaf that keeps none, it warns as PyTorch does."""
        g = self.__dict__.get("grad")
        if g is None and self.grad_fn is not None and not self.retains_grad:
            import warnings
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, value):
        if EFFECTS.hook is not None and EFFECTS.hook("set_grad", self, value):    # inside nbgrad.compile
            return
        self.__dict__["grad"] = value

    @grad.deleter
    def grad(self):
        self.__dict__.pop("grad", None)

    def is_inference(self):
        """Whether this tensor was made by an op under ``inference_mode``."""
        return "_is_inference" in self.__dict__

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def output_nr(self):
        return self._output_nr

    @property
    def data(self):
        """The same memory without history; in-place changes through it are not tracked."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError("data must be a Tensor")
        self._data = value._data

    def detach(self):
        """The same memory and version counter, without history."""
        t = Tensor._wrap(self._data)
        t._version_counter = self._version_counter
        return t

    def detach_(self):
        if self._base is not None:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead. If you are using DistributedDataParallel (DDP) "
                "for training, and gradient_as_bucket_view is set as True, gradients are views of DDP buckets, and "
                "hence detach_() cannot be called on these gradients. To fix this error, please refer to the "
                "Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def _grad_accumulator(self):
        """The ``AccumulateGrad`` node of a leaf; kept alive only by the graphs that use it."""
        acc = self._accumulator() if self._accumulator is not None else None
        if acc is None:
            acc = AccumulateGrad(self)
            self._accumulator = weakref.ref(acc)
        return acc

    def retain_grad(self):
        if self.grad_fn is None:
            if not self.requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        self.grad_fn.retain_output(self._output_nr, self)

    @property
    def retains_grad(self):
        fn = self.grad_fn
        return fn is not None and bool(fn._retained) and self._output_nr in fn._retained

    def register_hook(self, hook):
        """``hook(grad) -> Tensor or None`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.add_tensor_hook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = HookDict()
        return add_hook(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor) -> None`` runs after backward accumulated a gradient into this leaf's
        ``.grad`` (data-parallel training starts a gradient's all-reduce from here)."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = HookDict()
        return add_hook(self._post_accumulate_grad_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd import backward
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # -- conversions ---------------------------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return target_of(self._data).item(self._data)

    def tolist(self):
        return target_of(self._data).tolist(self._data)

    def numpy(self, *, force=False):
        """The tensor's memory as an array. Refused, as in PyTorch, while writes through it
        could silently change what the graph recorded (grad mode on and requires grad)."""
        if not force and _grad_mode.enabled and self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        target = target_of(self._data)
        if target.device_type != "cpu":
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        return target.to_host(self._data)

    @property
    def __cuda_array_interface__(self):
        """CUDA tensors' memory for CuPy, PyTorch and numba (zero-copy); CPU tensors have none."""
        if not self.is_cuda:
            raise AttributeError("Can't get __cuda_array_interface__ on non-CUDA tensor type: "
                                 f"torch.{self.dtype.legacy}Tensor If CUDA data is required use "
                                 "tensor.cuda() to copy tensor to device memory.")
        if self.requires_grad:
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad. If gradients "
                               "aren't required, use var.detach() to get Variable that doesn't require grad.")
        return self._data.__cuda_array_interface__

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'more than one value' if self._data.size else 'no values'} "
                               "is ambiguous")
        return bool(target_of(self._data).item(self._data))

    def __float__(self):
        return float(self._scalar())

    def __int__(self):
        return int(self._scalar())

    def _scalar(self):
        if self._data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return target_of(self._data).item(self._data)

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __complex__(self):
        return complex(self.item())

    def __format__(self, spec):
        if self._data.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __repr__(self):
        from ._formatting import tensor_repr
        return tensor_repr(self)

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol):
        target = target_of(self._data)
        return (_rebuild, (target.to_host(target.copy(self._data)), self._requires_grad))

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                               "deepcopy protocol at the moment.")
        t = Tensor._wrap(target_of(self._data).copy(self._data), self._requires_grad)
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = t
        return t

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other_tensor)``."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, globals()["device"])):
                device = a
            else:
                dtype = a
        _check_device(device)
        t = self
        if device is not None and globals()["device"](device).type != target_of(self._data).device_type:
            from .functional.device import to_device
            t, copy = to_device(self, globals()["device"](device).type), False
        if dtype is None or to_dtype(dtype) is t.dtype:
            return t.clone() if copy else t
        from .functional.pointwise import cast
        return cast(t, to_dtype(dtype))

    def float(self):
        return self.to(_dtype.float32)

    def double(self):
        return self.to(_dtype.float64)

    def long(self):
        return self.to(_dtype.int64)

    def int(self):
        return self.to(_dtype.int32)

    def bool(self):
        return self.to(_dtype.bool)

    def type_as(self, other):
        return self.to(other.dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def new_tensor(self, data, dtype=None, requires_grad=False):
        from .factories import tensor
        return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _init(t, data):
    t._data = data
    t._version_counter = _Version()
    t._requires_grad = False
    t.grad_fn = None


def _rebuild(data, requires_grad):
    return Tensor._wrap(data, requires_grad)


def _array_from(obj, dtype=None, target=None):
    """A fresh array of ``target`` (default: the CPU) from Python data (numbers, nested
    sequences, arrays, tensors). Python data is read into a host NumPy array first, where
    its dtype is inferred; the target then takes that array."""
    if isinstance(obj, Tensor):
        source = target_of(obj._data)
        arr = source.astype(obj._data, (dtype or obj.dtype).numpy)
        return source.copy(arr) if arr is obj._data else arr
    if target is None:
        target = target_for(None)
    return target.asarray(_host_array_from(obj, dtype))


def _host_array_from(obj, dtype):
    if isinstance(obj, np.ndarray):
        arr = np.array(obj)
    else:
        if isinstance(obj, (list, tuple)) and any(isinstance(o, Tensor) for o in _flatten(obj)):
            obj = _tensors_to_values(obj)
        arr = np.array(obj)
        if arr.dtype == object:
            raise TypeError(f"Could not infer dtype of {type(obj).__name__}")
        if arr.dtype.kind == "f" and dtype is None and not _has_numpy_floats(obj):
            arr = arr.astype(get_default_dtype().numpy)     # Python floats take the default dtype
        if arr.dtype.kind == "U":
            raise TypeError("new(): invalid data type 'str'")
    if dtype is not None:
        return arr.astype(dtype.numpy, copy=False)
    return arr.astype(from_numpy_dtype(arr.dtype, copy=True).numpy, copy=False)


def _has_numpy_floats(obj):
    """NumPy float scalars keep their dtype, as in PyTorch; Python floats do not."""
    return any(isinstance(o, np.floating) for o in _flatten(obj))


def _flatten(obj):
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (list, tuple)):
            stack.extend(o)
        else:
            yield o


def _tensors_to_values(obj):
    if isinstance(obj, Tensor):
        return target_of(obj._data).to_host(obj._data)
    if isinstance(obj, (list, tuple)):
        return [_tensors_to_values(o) for o in obj]
    return obj


def _wrap_dim(dim, ndim):
    """A dimension index in ``[0, ndim)``, with PyTorch's error for one out of range."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim + n if dim < 0 else dim


def is_tensor(obj):
    return isinstance(obj, Tensor)


# -- recording operations ------------------------------------------------------------------------
def _edge(x):
    if isinstance(x, Tensor):
        if x.grad_fn is not None:
            return (x.grad_fn, x._output_nr)
        if x._requires_grad:
            return (x._grad_accumulator(), 0)
    return (None, 0)


def _meta(x):
    """What the engine needs to conform a gradient to an input: its shape and NumPy dtype."""
    return (x._data.shape, x._data.dtype) if isinstance(x, Tensor) else None


def needs_grad(inputs):
    """Whether an operation on ``inputs`` is to be recorded."""
    if not _grad_mode.enabled:
        return False
    for x in inputs:
        if isinstance(x, Tensor) and (x._requires_grad or x.grad_fn is not None):
            return True
    return False


def record(node_cls, data, inputs, saved=(), **attrs):
    """The result of an operation: ``data`` wrapped, with a ``node_cls`` node as its
    ``grad_fn`` if any input requires grad and grad mode is on. Every operation passes
    here, so it is written out flat: one pass over the inputs finds the edges and metadata."""
    if _fw.level is not None:            # forward-mode AD: the result gets its tangent too
        return _forward_ad.record(node_cls, data, inputs, saved, attrs)
    out = object.__new__(Tensor)
    out._data = data
    out._version_counter = _Version()
    out._requires_grad = False
    out.grad_fn = None
    if not _grad_mode.enabled:
        if _grad_mode.inference:
            out._is_inference = True
        return out
    edges = []
    meta = []
    live = False
    for x in inputs:
        if isinstance(x, Tensor):
            d = x._data
            meta.append((d.shape, d.dtype))
            fn = x.grad_fn
            if fn is not None:
                edges.append((fn, x._output_nr))
                live = True
            elif x._requires_grad:
                edges.append((x._grad_accumulator(), 0))
                live = True
            else:
                edges.append(_NO_EDGE)
        else:
            meta.append(None)
            edges.append(_NO_EDGE)
    if live:
        node = node_cls(tuple(edges), tuple(meta))
        if attrs:
            node.__dict__.update(attrs)
        if saved:            # inputs, never this node's own output: no cycle to break
            if _shared_mode.inference_made:
                _check_not_inference(saved)
            if _saved_hooks:
                node._pack(saved)
            else:
                node._saved = saved
                node._saved_versions = tuple([x._version_counter.value if isinstance(x, Tensor) else None
                                              for x in saved])
        out.grad_fn = node
    return out


_NO_EDGE = (None, 0)


def _check_not_inference(saved):
    for x in saved:
        if isinstance(x, Tensor) and "_is_inference" in x.__dict__:
            raise RuntimeError(
                "Inference tensors cannot be saved for backward. Please do not use Tensors created in inference mode "
                "in computation tracked by autograd. To work around this, you can make a clone to get a normal "
                "tensor and use it in autograd, or use `torch.no_grad()` instead of `torch.inference_mode()`.")


def make_view(base, data, node_cls, view_fn, **attrs):
    """A tensor over part of ``base``'s memory, sharing its version counter. ``view_fn``
    makes the same view of another tensor of ``base``'s shape (used by in-place updates
    of views and by the backward of views)."""
    if _fw.level is not None:            # forward-mode AD: the same view of the tangent
        return _forward_ad.make_view(base, data, node_cls, view_fn, attrs)
    out = record(node_cls, data, (base,), **attrs)
    root = base._base
    if root is None:
        as_view(out, base, view_fn)
    else:
        parent_fn = base._view_fn
        as_view(out, root, lambda t: view_fn(parent_fn(t)))
    return out


def as_view(t, base, view_fn):
    """Make ``t`` a view of the root tensor ``base`` (``t`` is ``view_fn(base)``): it shares
    the base's version counter and, when made under grad mode, follows the base's history."""
    t._version_counter = base._version_counter
    t._base, t._view_fn = base, view_fn
    if _grad_mode.enabled:
        t.__class__ = _View
        t._grad_fn_version = base._version_counter.value


_GRAD_FN = Tensor.__dict__["grad_fn"]          # the slot under _View's property


class _View(Tensor):
    """A view made under grad mode. When the memory it shares changed in place since its
    ``grad_fn`` was set (through the base or another view), its ``grad_fn`` no longer
    describes its values: it is re-derived from the base's current history on the next
    read, as PyTorch regenerates a view's ``grad_fn``."""
    __slots__ = ()

    @property
    def grad_fn(self):
        if self._version_counter.value != self._grad_fn_version:
            from .autograd.grad_mode import enable_grad
            with enable_grad():
                view = self._view_fn(self._base)
            self.grad_fn, self._output_nr = view.grad_fn, view._output_nr
        return _GRAD_FN.__get__(self)

    @grad_fn.setter
    def grad_fn(self, fn):
        _GRAD_FN.__set__(self, fn)
        self._grad_fn_version = self._version_counter.value

