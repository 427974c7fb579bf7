"""``save`` / ``load``: checkpoints whose loading runs no code.

A checkpoint is a safetensors file: an 8-byte little-endian header length, a JSON header
giving each stored tensor's dtype, shape and byte range, then the raw little-endian bytes.
Other tools (``safetensors.numpy.load_file``, Hugging Face) read its tensors. Everything
else in the saved object (dicts, OrderedDicts, Counters, lists, tuples, numbers, strings,
None, bools, dtypes) is tagged JSON in the header's ``__metadata__``, with tensors replaced by their
names; loading parses JSON and copies bytes, nothing more (no pickle).

Tensors that overlap in memory (a tensor and its views) are stored once: when one of them
covers the others contiguously it is stored under its own name and shape, and the others are
recorded as (offset, shape, stride) views of it; otherwise the span they share is stored as
an extra ``__storage_N__`` entry. Loaded views share memory with their owner, as after
``torch.load``. Each entry's CRC32 is kept in the metadata, so corrupted bytes are reported.
"""
import json
import math
import os
import tempfile
import zlib
from collections import Counter, OrderedDict

import numpy as np

from . import _dtype
from .tensor import Size, Tensor, device

__all__ = ["save", "load"]

_FORMAT_KEY = "nbgrad"          # our metadata entry; "format": "pt" marks the tensor layout (row-major, named)
_VERSION = 1
_MAX_HEADER = 100_000_000      # the safetensors library's limit: a longer "header" means a foreign file
# safetensors dtype names; the last two are only read (widened to a type nbgrad has)
_ST_DTYPE = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_,
             "F16": np.float16, "I32": np.int32, "I16": np.int16, "I8": np.int8,
             "U8": np.uint8, "U16": np.uint16, "U32": np.uint32}
_DICT_TAGS = {dict: "dict", OrderedDict: "odict", Counter: "counter"}   # Counter: MultiStepLR's milestones
_ST_NAME = {np.dtype(v): k for k, v in list(_ST_DTYPE.items())[:-2]}


# -- save ----------------------------------------------------------------------------------------
def save(obj, f, pickle_module=None, pickle_protocol=2, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Write ``obj`` to ``f`` (a path or a binary file-like object).

    To a path, the file is written under a temporary name in the same directory and renamed
    over ``f`` only once it is complete, so a failed save never replaces a good file. The
    pickle arguments are accepted for PyTorch's signature and ignored: nothing is pickled."""
    if pickle_module is not None:
        raise ValueError("nbgrad.save writes safetensors checkpoints and never pickles: pickle_module must be None")
    header, arrays = _encode(obj)
    if hasattr(f, "write"):
        for chunk in _chunks(header, arrays):
            f.write(chunk)
        return
    path = os.fspath(f)
    if os.path.islink(path):                   # write through the link, as open() would
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RuntimeError(f"Parent directory {directory} does not exist.")
    _write_atomic(path, directory, _chunks(header, arrays))


def _chunks(header, arrays):
    yield len(header).to_bytes(8, "little")
    yield header
    for a in arrays:
        yield memoryview(a).cast("B") if a.size else b""


def _write_atomic(path, directory, chunks):
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _file_mode(path):
    """The replaced file's mode, or what ``open`` would give a new file (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


class _Encoder:
    """Walks the object once: the tagged JSON structure, and the tensors met, by identity."""

    def __init__(self):
        self.names = {}          # id(tensor) -> name
        self.tensors = []        # (name, tensor) in the order met
        self.used = {"__metadata__"}

    def name_for(self, t, path):
        if id(t) in self.names:
            return self.names[id(t)]
        base = ".".join(path) or "tensor"
        if base.startswith("__storage_"):          # reserved for shared spans
            base = "_" + base
        name, n = base, 1
        while name in self.used:
            name, n = f"{base}.{n}", n + 1
        self.used.add(name)
        self.names[id(t)] = name
        self.tensors.append((name, t))
        return name

    def encode(self, x, path):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, Tensor):
            return {"tensor": self.name_for(x, path)}
        if isinstance(x, (int, np.integer)) and not isinstance(x, np.bool_):
            return int(x)
        if isinstance(x, (float, np.floating)):
            x = float(x)
            return x if math.isfinite(x) else {"float": repr(x)}
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, _dtype.dtype):
            return {"dtype": x.name}
        if isinstance(x, device):
            return {"device": str(x)}
        if isinstance(x, Size):
            return {"size": [int(n) for n in x]}
        if isinstance(x, dict) and type(x) in _DICT_TAGS:
            tag = _DICT_TAGS[type(x)]
            return {tag: [[self.encode(k, path + ["key"]), self.encode(v, path + [str(k)])] for k, v in x.items()]}
        if type(x) is list:
            return [self.encode(v, path + [str(i)]) for i, v in enumerate(x)]
        if type(x) is tuple:
            return {"tuple": [self.encode(v, path + [str(i)]) for i, v in enumerate(x)]}
        where = ".".join(path) or "the top level"
        raise TypeError(f"nbgrad.save cannot store an object of type {type(x).__module__}.{type(x).__qualname__} "
                        f"(at {where}): checkpoints hold tensors, dicts, OrderedDicts, Counters, lists, tuples, "
                        "numbers, strings, bools, None, dtypes and devices, so that loading them runs no code")


def _extent(a):
    """Byte range [lo, hi) of memory that array ``a`` reads (empty for size 0)."""
    ptr = _ptr(a)
    if a.size == 0:
        return ptr, ptr
    lo = hi = ptr
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    return lo, hi + a.itemsize


def _groups(tensors):
    """Lists of (lo, hi, name, array) whose memory overlaps; size-0 tensors stand alone."""
    spans = sorted(((*_extent(t._data), name, t._data) for name, t in tensors), key=lambda s: s[:2])
    groups, empty, end = [], [], None
    for span in spans:
        lo, hi = span[:2]
        if lo == hi:
            empty.append([span])
        elif groups and lo < end:
            groups[-1].append(span)
            end = max(end, hi)
        else:
            groups.append([span])
            end = hi
    return groups + empty


def _ptr(a):
    return a.__array_interface__["data"][0]


def _encode(obj):
    enc = _Encoder()
    structure = enc.encode(obj, [])
    meta = {}
    entries = []                 # (name, contiguous little-endian array)
    storages = 0
    for group in _groups(enc.tensors):
        lo, hi = group[0][0], max(g[1] for g in group)
        itemsize = group[0][3].itemsize
        shared = len(group) > 1 and all(a.dtype == group[0][3].dtype and (_ptr(a) - lo) % itemsize == 0
                                        and all(s % itemsize == 0 for s in a.strides)
                                        for _, _, _, a in group)
        if not shared:           # stored apart (copies if they overlapped with another dtype)
            for _, _, name, a in group:
                entries.append((name, a))
            continue
        owner = next((name for g_lo, g_hi, name, a in group
                      if a.flags.c_contiguous and (g_lo, g_hi) == (lo, hi) and a.size * itemsize == hi - lo), None)
        if owner is None:
            owner = f"__storage_{storages}__"
            storages += 1
            first = min(group, key=lambda g: _ptr(g[3]))[3]
            flat = np.lib.stride_tricks.as_strided(first, shape=((hi - lo) // itemsize,), strides=(itemsize,),
                                                   writeable=False)
            entries.append((owner, flat))
        for _, _, name, a in group:
            if name == owner:
                entries.append((name, a))
            else:
                meta[name] = {"view_of": owner, "offset": (_ptr(a) - lo) // itemsize,
                              "shape": list(a.shape), "stride": [s // itemsize for s in a.strides]}
    tensors = dict(enc.tensors)
    for name, t in tensors.items():
        info = meta.setdefault(name, {})
        if t.requires_grad:
            info["requires_grad"] = True
        if type(t) is not Tensor:
            from .nn.parameter import Parameter
            if isinstance(t, Parameter):
                info["parameter"] = True
    header, arrays, offset, crcs = {}, [], 0, {}
    for name, a in entries:
        a = a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)
        header[name] = {"dtype": _ST_NAME[np.dtype(a.dtype.type)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        crcs[name] = zlib.crc32(memoryview(a).cast("B")) if a.size else 0
        offset += a.nbytes
        arrays.append(a)
    header["__metadata__"] = {"format": "pt", _FORMAT_KEY: json.dumps(
        {"version": _VERSION, "object": structure, "tensors": meta, "crc32": crcs}, allow_nan=False,
        separators=(",", ":"))}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return text, arrays


# -- load ----------------------------------------------------------------------------------------
class _Corrupt(Exception):
    """What is wrong with the file; ``load`` adds its name."""


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **pickle_load_args):
    """Read an object saved by ``save`` (or the tensors of any safetensors file, as a dict).

    Only ``weights_only=True`` exists: the file is JSON and raw bytes, so nothing in it can
    run code. ``map_location`` may be None, ``'cpu'``, a device, a dict of locations or a
    callable ``(tensor, 'cpu') -> tensor``; nbgrad has only the CPU target so far."""
    if weights_only is False:
        raise ValueError("nbgrad.load supports only weights_only=True: checkpoints are safetensors files whose "
                         "loading runs no code, and there is no pickle-based mode to fall back to")
    if pickle_module is not None or pickle_load_args:
        raise ValueError("nbgrad.load never unpickles: pickle_module and pickle arguments are not accepted")
    if mmap:
        raise ValueError("nbgrad.load does not memory-map checkpoints (mmap=True): tensors are read into memory")
    location = _location(map_location)
    try:
        if hasattr(f, "read"):
            name = getattr(f, "name", None) or repr(f)
            obj = _decode(_Source(data=f.read()))
        else:
            name = os.fspath(f)
            with open(name, "rb") as fh:
                obj = _decode(_Source(fh=fh))
    except _Corrupt as e:
        raise RuntimeError(f"nbgrad.load: cannot read {name!s}: {e}") from None
    except RecursionError:
        raise RuntimeError(f"nbgrad.load: cannot read {name!s}: the saved structure is nested too deeply") from None
    return _relocate(obj, location) if location is not None else obj


def _location(map_location):
    if map_location is None or callable(map_location):
        return map_location
    targets = map_location.values() if isinstance(map_location, dict) else [map_location]
    for target in targets:
        if device(target).type != "cpu":
            raise RuntimeError("nbgrad.load: map_location asks for a CUDA device, but only the CPU target is "
                               "built so far")
    return None


def _relocate(obj, fn):
    if isinstance(obj, Tensor):
        out = fn(obj, "cpu")
        return obj if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _relocate(v, fn)
        return obj
    if isinstance(obj, list):
        return [_relocate(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_relocate(v, fn) for v in obj)
    return obj


def _header(src):
    data = src.bytes(0, min(src.size, 9))
    if data[:4] == b"PK\x03\x04":
        raise _Corrupt("it is a zip archive (a torch.save checkpoint, which holds a pickle), not a safetensors "
                       "checkpoint; nbgrad.load reads only safetensors files, because unpickling can run "
                       "arbitrary code")
    if len(data) < 8:
        raise _Corrupt(f"the file is truncated or empty: {len(data)} bytes, fewer than the 8-byte header length "
                       "of a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > src.size - 8 or data[8:9] != b"{":
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise _Corrupt("it is a pickle file (e.g. written by torch.save with the legacy format), not a "
                           "safetensors checkpoint; nbgrad.load reads only safetensors files, because unpickling "
                           "can run arbitrary code")
        if data[8:9] in (b"{", b"") and n <= _MAX_HEADER:
            raise _Corrupt(f"the file is truncated: the header length says {n} bytes but only {src.size - 8} "
                           "follow")
        raise _Corrupt("it is not a safetensors file (no JSON header after the 8-byte length)")
    try:
        header = json.loads(src.bytes(8, 8 + n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _Corrupt(f"the header is corrupted (not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise _Corrupt("the header is corrupted (not a JSON object)")
    return header, _Body(src, 8 + n)


def _entry(name, info, body):
    if not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPE:
        kind = info.get("dtype") if isinstance(info, dict) else info
        raise _Corrupt(f"tensor {name!r} has an unsupported or missing dtype ({kind!r})")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Corrupt(f"tensor {name!r} has a malformed shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise _Corrupt(f"tensor {name!r} has malformed data_offsets {offsets!r}")
    dt = np.dtype(_ST_DTYPE[info["dtype"]]).newbyteorder("<")
    if offsets[1] - offsets[0] != math.prod(shape) * dt.itemsize:
        raise _Corrupt(f"tensor {name!r} of shape {shape} and dtype {info['dtype']} should take "
                       f"{math.prod(shape) * dt.itemsize} bytes but its data_offsets span "
                       f"{offsets[1] - offsets[0]}")
    if offsets[1] > len(body):
        raise _Corrupt(f"the file is truncated: tensor {name!r} ends at byte {offsets[1]} of the data section, "
                       f"which has only {len(body)} bytes")
    return dt, shape, offsets


class _Source:
    """The file's bytes: in memory (a file object's contents) or read as needed from an open file."""

    def __init__(self, data=None, fh=None):
        self.data, self.fh = data, fh
        self.size = len(data) if fh is None else os.fstat(fh.fileno()).st_size

    def bytes(self, lo, hi):
        if self.fh is None:
            return bytes(self.data[lo:hi])
        self.fh.seek(lo)
        return self.fh.read(hi - lo)

    def array(self, lo, hi, dt):
        """A fresh aligned array of ``dt`` holding bytes [lo, hi)."""
        if self.fh is None:
            return np.frombuffer(self.data, dt, (hi - lo) // dt.itemsize, lo).copy()
        a = np.empty((hi - lo) // dt.itemsize, dt)
        self.fh.seek(lo)
        if hi > lo and self.fh.readinto(memoryview(a).cast("B")) != hi - lo:
            raise _Corrupt("the file is truncated (it changed while being read)")
        return a


class _Body:
    """The data section: offsets relative to its start."""

    def __init__(self, src, start):
        self.src, self.start = src, start

    def __len__(self):
        return self.src.size - self.start

    def array(self, lo, hi, dt):
        return self.src.array(self.start + lo, self.start + hi, dt)


def _decode(src):
    header, body = _header(src)
    metadata = header.pop("__metadata__", None) or {}
    layout = {name: _entry(name, info, body) for name, info in header.items()}
    spans = sorted(off for _, _, off in layout.values())
    end = 0
    for lo, hi in spans:
        if lo != end:
            raise _Corrupt("the header is corrupted: tensor data ranges overlap or leave gaps")
        end = hi
    if end != len(body):
        raise _Corrupt(f"the data section has {len(body)} bytes but the tensors take {end}: the file is corrupted")
    ours = metadata.get(_FORMAT_KEY) if isinstance(metadata, dict) else None
    if ours is None:                      # a safetensors file from another tool: its tensors, by name
        return OrderedDict((name, Tensor._wrap(_array(name, layout[name], body))) for name in layout)
    try:
        ours = json.loads(ours)
        meta, crcs, structure = ours["tensors"], ours["crc32"], ours["object"]
    except (ValueError, KeyError, TypeError) as e:
        raise _Corrupt(f"the nbgrad metadata is corrupted ({type(e).__name__}: {e})") from None
    if ours.get("version") != _VERSION:
        raise _Corrupt(f"it was written by a newer nbgrad (format version {ours.get('version')!r}; this one "
                       f"reads {_VERSION})")
    arrays = {}
    for name, spec in layout.items():
        arrays[name] = a = _array(name, spec, body)
        if crcs.get(name) != (zlib.crc32(memoryview(a).cast("B")) if a.size else 0):
            raise _Corrupt(f"the data of tensor {name!r} is corrupted (CRC32 mismatch)")
    return _Decoder(arrays, meta).decode(structure)


def _array(name, spec, body):
    """An owned, aligned, native-order copy of one entry's bytes."""
    dt, shape, (lo, hi) = spec
    a = body.array(lo, hi, dt).astype(dt.newbyteorder("="), copy=False).reshape(shape)
    if a.dtype == np.bool_:
        a = a.view(np.uint8).astype(np.bool_)   # a foreign file's bool bytes may be other than 0 and 1 (and
                                                # a comparison would make a 0-d array a NumPy scalar)
    elif a.dtype not in _dtype._BY_NUMPY:
        a = a.astype(_dtype.from_numpy_dtype(a.dtype, copy=True).numpy)
    return a


class _Decoder:
    def __init__(self, arrays, meta):
        self.arrays, self.meta, self.made = arrays, meta, {}

    def tensor(self, name):
        if name in self.made:
            return self.made[name]
        info = self.meta.get(name, {})
        if not isinstance(info, dict):
            raise _Corrupt(f"the nbgrad metadata of tensor {name!r} is corrupted")
        if "view_of" in info:
            t = self.view(name, info)
        elif name in self.arrays:
            t = Tensor._wrap(self.arrays[name])
        else:
            raise _Corrupt(f"the structure refers to tensor {name!r}, which the file does not hold")
        if info.get("parameter"):
            from .nn.parameter import Parameter
            t = Parameter(t, bool(info.get("requires_grad")))
        elif info.get("requires_grad"):
            t.requires_grad_(True)
        self.made[name] = t
        return t

    def view(self, name, info):
        owner = info["view_of"]
        if owner not in self.arrays or "view_of" in self.meta.get(owner, {}):
            raise _Corrupt(f"tensor {name!r} is a view of {owner!r}, which the file does not hold")
        flat = self.arrays[owner].reshape(-1)
        shape, stride, offset = info.get("shape"), info.get("stride"), info.get("offset")
        ok = isinstance(shape, list) and isinstance(stride, list) and len(shape) == len(stride) and \
            type(offset) is int and all(type(n) is int and n >= 0 for n in shape) and \
            all(type(s) is int for s in stride)
        if ok and math.prod(shape):
            lo = offset + sum(s * (n - 1) for n, s in zip(shape, stride) if s < 0)
            hi = offset + sum(s * (n - 1) for n, s in zip(shape, stride) if s > 0)
            ok = 0 <= lo and hi < flat.size
        if not ok:
            raise _Corrupt(f"the view {name!r} of {owner!r} is malformed or reaches outside it")
        base = flat[offset:] if math.prod(shape) else flat[:0]
        a = np.lib.stride_tricks.as_strided(base, shape=shape, strides=[s * flat.itemsize for s in stride])
        t = Tensor._wrap(a)
        t._version_counter = self.tensor(owner)._version_counter      # one storage, one version counter
        return t

    def decode(self, x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [self.decode(v) for v in x]
        if not (isinstance(x, dict) and len(x) == 1):
            raise _Corrupt(f"the saved structure is corrupted (unexpected {type(x).__name__})")
        (tag, v), = x.items()
        try:
            if tag == "tensor":
                return self.tensor(v)
            if tag == "dict":
                return {self.decode(k): self.decode(val) for k, val in v}
            if tag in ("odict", "counter"):
                items = OrderedDict((self.decode(k), self.decode(val)) for k, val in v)
                return items if tag == "odict" else Counter(items)
            if tag == "tuple":
                return tuple(self.decode(val) for val in v)
            if tag == "float":
                return float(v)
            if tag == "dtype":
                if v not in ("float32", "float64", "int64", "bool"):
                    raise ValueError(f"unknown dtype {v!r}")
                return getattr(_dtype, v)
            if tag == "device":
                return device(v)
            if tag == "size":
                return Size(int(n) for n in v)
        except (TypeError, ValueError, RuntimeError) as e:
            raise _Corrupt(f"the saved structure is corrupted ({tag}: {e})") from None
        raise _Corrupt(f"the saved structure is corrupted (unknown tag {tag!r})")


