"""DLPack for CUDA tensors, by ctypes over the DLPack ABI (no CuPy or PyTorch needed).

``export(arr, data_ptr)`` makes a ``"dltensor"`` capsule (device ``kDLCUDA``) describing a
``DeviceArray``'s view; the capsule keeps the array alive until its consumer calls the deleter
(or, never consumed, until the capsule is collected). ``interface(capsule)`` reads a CUDA
capsule back as a ``__cuda_array_interface__`` holder that owns it, which ``CudaTarget.wrap``
takes zero-copy (``from_dlpack`` of a CUDA producer without the CUDA Array Interface).
"""
import ctypes

import numpy as np

__all__ = ["KDLCUDA", "export", "interface", "device_type"]

KDLCUDA = 2
_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}          # DLDataTypeCode; bool is kDLBool
_KINDS = {v: k for k, v in _CODES.items()}


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int), ("dtype", _DataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Managed(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Managed))
_Managed._fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

_ALIVE = {}          # address of a DLManagedTensor -> what it points into, until its deleter runs


@_DELETER
def _delete(managed):
    _ALIVE.pop(ctypes.addressof(managed.contents), None)


_NAME = b"dltensor"
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_CAPSULE_DESTRUCTOR
def _capsule_gone(capsule):
    """A capsule collected unconsumed (still named "dltensor") frees its tensor itself."""
    obj = ctypes.cast(capsule, ctypes.py_object)
    if _api.PyCapsule_IsValid(obj, _NAME):
        managed = ctypes.cast(_api.PyCapsule_GetPointer(obj, _NAME), ctypes.POINTER(_Managed))
        _delete(managed)


def export(arr, data_ptr, device_id=0):
    """A DLPack capsule over ``arr``'s view (``data_ptr``: the address of its first element)."""
    if arr.dtype.kind not in _CODES:
        raise BufferError(f"DLPack: nbgrad cannot export CUDA arrays of dtype {arr.dtype} yet")
    managed = _Managed()
    ndim = arr.ndim
    shape = (ctypes.c_int64 * max(ndim, 1))(*arr.shape)
    strides = (ctypes.c_int64 * max(ndim, 1))(*(s // arr.itemsize for s in arr.strides))
    t = managed.dl_tensor
    t.data = data_ptr
    t.device = _Device(KDLCUDA, device_id)
    t.ndim = ndim
    t.dtype = _DataType(_CODES[arr.dtype.kind], arr.itemsize * 8, 1)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = 0
    managed.deleter = _delete
    address = ctypes.addressof(managed)
    _ALIVE[address] = (managed, shape, strides, arr)
    return _api.PyCapsule_New(address, _NAME, ctypes.cast(_capsule_gone, ctypes.c_void_p))


class _Imported:
    """A consumed CUDA capsule as the CUDA Array Interface; calls the producer's deleter when
    the last view of its memory is gone."""

    def __init__(self, capsule):
        if not _api.PyCapsule_IsValid(capsule, _NAME):
            raise ValueError("from_dlpack: expected a DLPack capsule named 'dltensor' (was it consumed already?)")
        self._managed = ctypes.cast(_api.PyCapsule_GetPointer(capsule, _NAME), ctypes.POINTER(_Managed))
        t = self._managed.contents.dl_tensor
        if t.device.device_type != KDLCUDA:
            raise BufferError(f"from_dlpack: a capsule of DLPack device type {t.device.device_type} is not on CUDA")
        if t.dtype.lanes != 1 or t.dtype.code not in _KINDS:
            raise BufferError(f"from_dlpack: unsupported DLPack dtype (code {t.dtype.code}, bits {t.dtype.bits}, "
                              f"lanes {t.dtype.lanes})")
        item = t.dtype.bits // 8
        shape = tuple(t.shape[d] for d in range(t.ndim))
        strides = None if not t.strides else tuple(t.strides[d] * item for d in range(t.ndim))
        typestr = np.dtype(f"{_KINDS[t.dtype.code]}{item}").str if t.dtype.code != 6 else "|b1"
        self.__cuda_array_interface__ = {"shape": shape, "strides": strides, "typestr": typestr,
                                         "data": ((t.data or 0) + t.byte_offset, False), "version": 3}
        _api.PyCapsule_SetName(capsule, b"used_dltensor")      # ours now: the capsule no longer frees it

    def __del__(self):
        managed = self._managed
        if managed and managed.contents.deleter:
            managed.contents.deleter(managed)


def interface(capsule):
    """An object with the CUDA Array Interface over a ``"dltensor"`` capsule's CUDA memory."""
    return _Imported(capsule)


def device_type(capsule):
    """The DLPack device type of an unconsumed ``"dltensor"`` capsule (``None``: not one)."""
    if not _api.PyCapsule_IsValid(capsule, _NAME):
        return None
    managed = ctypes.cast(_api.PyCapsule_GetPointer(capsule, _NAME), ctypes.POINTER(_Managed))
    return managed.contents.dl_tensor.device.device_type
