"""CUDA backend: availability and the array-protocol layer between the dispatcher and ``embkern._cuda``.

The kernels themselves are wrapped per family in ``embkern._cuda_ops.<family>``, with the internal
signatures of the CPU backend (``embkern._core.<family>``); a kernel without a GPU version is simply
not defined there. Those wrappers use :func:`operands` to describe their arguments, check dtypes and
shapes with the ``require_*`` helpers, and run through one :class:`Call`.

Inputs
  * CuPy arrays and torch CUDA tensors (read through ``__cuda_array_interface__``); non-contiguous
    ones are made C-contiguous with their own framework;
  * any other object with ``__cuda_array_interface__`` (version 0-3; masks rejected; must be
    C-contiguous);
  * objects exposing only DLPack on a CUDA device, converted (zero-copy) with CuPy or torch;
  * everything else (numpy, lists, CPU tensors) is a host array: copied to the current device and
    the results copied back.
  All operands of one call must live in the same place (one device, or all on the host).

Results follow the first operand: CuPy in, CuPy out; torch in, torch out (on the same device, made
on the framework's current stream, which is also the stream the kernels run on); numpy in, numpy out;
a generic ``__cuda_array_interface__`` producer gets a :class:`CudaArray`, which any framework can
wrap without a copy.

Validation (dtype -> TypeError, shape/layout -> ValueError, naming the argument) happens on the host
before anything touches CUDA, so it works and is tested on machines without a GPU.
"""

from __future__ import annotations

import importlib
import sys
import threading

import numpy as np

__all__ = [
    "available",
    "status",
    "built",
    "device_count",
    "CudaArray",
    "Call",
    "operands",
]

_NOT_BUILT = (
    "embkern._cuda was not built (no CUDA compiler at build time, or EMBKERN_CUDA=OFF)"
)

# DLPack device types (dlpack.h).
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13

_lock = threading.Lock()
_state: tuple | None = None  # (module or None, device count, status text)


# ---------------------------------------------------------------------------------------------
# availability


def _probe() -> tuple:
    global _state
    if _state is None:
        with _lock:
            if _state is None:
                _state = _load()
    return _state


def _load() -> tuple:
    try:
        mod = importlib.import_module("._cuda", __package__ or "embkern")
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("_cuda"):
            return None, 0, _NOT_BUILT
        return None, 0, f"embkern._cuda failed to import: {e}"
    except ImportError as e:
        return None, 0, f"embkern._cuda failed to import: {e}"
    try:
        count, reason = mod.device_count()
    except Exception as e:  # a broken runtime must never break `import embkern`
        return mod, 0, f"no CUDA device: {type(e).__name__}: {e}"
    if count <= 0:
        return mod, 0, f"no CUDA device: {reason}"
    try:
        info = mod.device_info(0)
        major, minor = info["compute_capability"]
        first = f"{info['name']} (sm_{major}{minor})"
    except Exception as e:
        first = f"device 0 unreadable: {e}"
    return mod, int(count), f"{count} CUDA device(s), device 0: {first}, {_versions(mod)}"


def _versions(mod) -> str:
    def fmt(v: int) -> str:
        return f"{v // 1000}.{v % 1000 // 10}"

    try:
        return f"driver {fmt(mod.driver_version())}, runtime {fmt(mod.runtime_version())}"
    except Exception:
        return "versions unknown"


def built() -> bool:
    """True when ``embkern._cuda`` was compiled into this installation."""
    return _probe()[0] is not None


def available() -> bool:
    """True when ``embkern._cuda`` imports and sees at least one CUDA device."""
    return _probe()[1] > 0


def device_count() -> int:
    return _probe()[1]


def status() -> str:
    """Why the CUDA backend is or is not usable, in words."""
    return _probe()[2]


def _module():
    mod, count, text = _probe()
    if mod is None or count <= 0:
        raise RuntimeError(f"the CUDA backend is unavailable: {text}")
    return mod


# ---------------------------------------------------------------------------------------------
# operands


class _Operand:
    """One argument, described without touching CUDA: where it lives and its raw layout."""

    __slots__ = ("name", "kind", "obj", "host", "ptr", "shape", "dtype", "device", "stream")

    def __init__(self, name, kind, obj=None, host=None, ptr=0, shape=(), dtype=None,
                 device=None, stream=None):
        self.name = name
        self.kind = kind  # "host", "cupy", "torch" or "cai"
        self.obj = obj  # the (possibly made contiguous) device object, kept alive for the call
        self.host = host  # numpy array for kind == "host"
        self.ptr = ptr
        self.shape = shape
        self.dtype = dtype
        self.device = device  # None: resolve from the pointer
        self.stream = stream  # producer stream to wait for (CAI v3), or None

    @property
    def on_device(self) -> bool:
        return self.kind != "host"


def _c_contiguous(shape, strides, itemsize) -> bool:
    if strides is None:
        return True
    if len(strides) != len(shape):
        return False
    if any(s == 0 for s in shape):
        return True
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _parse_cai(cai, name: str) -> dict:
    """Check a ``__cuda_array_interface__`` dict; return ptr, shape, dtype, contiguous, stream."""
    if not isinstance(cai, dict):
        raise TypeError(f"{name}: __cuda_array_interface__ must be a dict, got {type(cai).__name__}")
    missing = [key for key in ("shape", "typestr", "data") if key not in cai]
    if missing:
        raise ValueError(f"{name}: __cuda_array_interface__ lacks {', '.join(missing)}")
    version = cai.get("version", 0)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"{name}: __cuda_array_interface__ has an invalid version {version!r}")
    if cai.get("mask") is not None:
        raise ValueError(f"{name}: masked CUDA arrays (__cuda_array_interface__ 'mask') are not supported")
    try:
        shape = tuple(int(n) for n in cai["shape"])
    except (TypeError, ValueError):
        raise ValueError(f"{name}: __cuda_array_interface__ shape {cai['shape']!r} is not a tuple of ints") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}: negative extent in shape {shape}")
    try:
        dtype = np.dtype(cai["typestr"])
    except TypeError:
        raise TypeError(f"{name}: unsupported element type {cai['typestr']!r}") from None
    if not dtype.isnative:
        raise TypeError(f"{name}: non-native byte order {cai['typestr']!r} is not supported")
    data = cai["data"]
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name}: __cuda_array_interface__ 'data' must be (pointer, read_only)")
    ptr = data[0]
    if not isinstance(ptr, int) or ptr < 0:
        raise ValueError(f"{name}: invalid device pointer {ptr!r}")
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if ptr == 0 and size > 0:
        raise ValueError(f"{name}: null device pointer for a non-empty array")
    strides = cai.get("strides")
    if strides is not None:
        try:
            strides = tuple(int(s) for s in strides)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: __cuda_array_interface__ strides {cai['strides']!r} are not ints") from None
    stream = cai.get("stream") if version >= 3 else None
    if stream is not None:
        if not isinstance(stream, int) or isinstance(stream, bool) or stream < 0:
            raise ValueError(f"{name}: invalid __cuda_array_interface__ stream {stream!r}")
        if stream == 0:
            raise ValueError(f"{name}: __cuda_array_interface__ stream 0 is disallowed by the protocol")
    return {
        "ptr": ptr,
        "shape": shape,
        "dtype": dtype,
        "contiguous": _c_contiguous(shape, strides, dtype.itemsize),
        "readonly": bool(data[1]),
        "stream": stream,
        "version": version,
    }


def _framework(obj) -> str | None:
    mod = type(obj).__module__ or ""
    if mod == "torch" or mod.startswith("torch."):
        return "torch"
    if mod == "cupy" or mod.startswith("cupy."):
        return "cupy"
    return None


def _device_operand(obj, name: str, kind: str) -> _Operand:
    try:
        cai = obj.__cuda_array_interface__
    except (AttributeError, TypeError, RuntimeError, ValueError) as e:
        raise TypeError(f"{name}: cannot read __cuda_array_interface__: {e}") from None
    info = _parse_cai(cai, name)
    if not info["contiguous"]:
        raise ValueError(f"{name} must be C-contiguous (got strides {cai.get('strides')})")
    if info["ptr"] % info["dtype"].itemsize:
        raise ValueError(f"{name}: device pointer is not aligned to its {info['dtype'].itemsize}-byte elements")
    device = None
    if kind == "torch":
        device = obj.device.index
    elif kind == "cupy":
        device = obj.device.id
    return _Operand(name, kind, obj=obj, ptr=info["ptr"], shape=info["shape"], dtype=info["dtype"],
                    device=device, stream=info["stream"])


def _host_operand(arr, name: str) -> _Operand:
    arr = np.ascontiguousarray(arr)
    return _Operand(name, "host", host=arr, shape=arr.shape, dtype=arr.dtype)


def _from_dlpack_cuda(obj, name: str):
    """A CUDA DLPack producer without __cuda_array_interface__ -> a CuPy array or torch tensor."""
    for modname in ("cupy", "torch"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        return mod.from_dlpack(obj)
    raise TypeError(
        f"{name}: a CUDA DLPack array can only be read with CuPy or PyTorch installed; "
        "pass an object with __cuda_array_interface__ instead"
    )


def _has_cai(obj) -> bool:
    try:
        getattr(obj, "__cuda_array_interface__")
    except AttributeError:
        return False
    except Exception:  # present but failing (e.g. torch for tensors that require grad)
        return True
    return True


def _operand(obj, name: str) -> _Operand:
    if isinstance(obj, np.ndarray):
        return _host_operand(obj, name)
    fw = _framework(obj)
    if fw == "torch" and hasattr(obj, "is_cuda"):
        if not obj.is_cuda:
            return _host_operand(obj.detach().numpy(), name)
        t = obj.detach()
        if not t.is_contiguous():
            t = t.contiguous()
        return _device_operand(t, name, "torch")
    if _has_cai(obj):
        if fw == "cupy":
            if not obj.flags.c_contiguous:
                obj = sys.modules["cupy"].ascontiguousarray(obj)
            return _device_operand(obj, name, "cupy")
        return _device_operand(obj, name, "cai")
    if hasattr(obj, "__dlpack_device__") and hasattr(obj, "__dlpack__"):
        dev_type = int(obj.__dlpack_device__()[0])
        if dev_type in (_DL_CUDA, _DL_CUDA_MANAGED):
            return _operand(_from_dlpack_cuda(obj, name), name)
        if dev_type == _DL_CPU:
            return _host_operand(np.from_dlpack(obj), name)
        raise TypeError(f"{name}: DLPack device type {dev_type} is not supported (CPU or CUDA only)")
    return _host_operand(np.asarray(obj), name)


def operands(*pairs) -> list:
    """Describe every (object, name) pair and check they live in the same place (host only)."""
    ops = [_operand(obj, name) for obj, name in pairs]
    dev = [op for op in ops if op.on_device]
    host = [op for op in ops if not op.on_device]
    if dev and host:
        raise ValueError(
            f"{host[0].name} is a host array but {dev[0].name} is a CUDA array; "
            "pass both on the same device (or both as host arrays)"
        )
    known = {op.device for op in dev if op.device is not None}
    if len(known) > 1:
        raise ValueError(f"arguments are on different CUDA devices: {sorted(known)}")
    return ops


def require_dtype(op: _Operand, dtype, what: str) -> None:
    if op.dtype != np.dtype(dtype):
        raise TypeError(f"{op.name} must be {what}, got {op.dtype}")


def require_2d(op: _Operand) -> None:
    if len(op.shape) != 2:
        raise ValueError(f"{op.name} must have 2 dimensions, got {len(op.shape)}")


def require_codes(a: _Operand, b: _Operand) -> None:
    for op in (a, b):
        require_dtype(op, np.uint8, "uint8 codes")
        require_2d(op)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"code widths differ: {a.shape[1]} vs {b.shape[1]} bytes")
    if a.shape[1] <= 0:
        raise ValueError("codes must have at least one byte")


# ---------------------------------------------------------------------------------------------
# one call: device, stream, staging of host inputs, outputs in the caller's framework


class CudaArray:
    """Device memory owned by embkern, returned for generic ``__cuda_array_interface__`` inputs.

    Exposes ``__cuda_array_interface__`` (v3), so ``cupy.asarray``, ``torch.as_tensor``,
    ``numba.cuda.as_cuda_array`` and friends wrap it without a copy; ``get()`` / ``np.asarray``
    copy it to the host.
    """

    def __init__(self, shape, dtype, device: int, stream: int):
        mod = _module()
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self._stream = stream
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._buf = mod.DeviceBuffer(nbytes, device)

    @property
    def ptr(self) -> int:
        return self._buf.ptr

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self._buf.ptr, False),
            "strides": None,
            "version": 3,
            "stream": self._stream if self._stream else 1,
        }

    def get(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        self._buf.copy_to_host(out, self._stream)
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.get()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"CudaArray(shape={self.shape}, dtype={self.dtype}, device={self.device})"


def _framework_stream(op: _Operand) -> int:
    if op.kind == "torch":
        import torch

        return int(torch.cuda.current_stream(op.obj.device).cuda_stream)
    if op.kind == "cupy":
        import cupy

        with cupy.cuda.Device(op.device):
            return int(cupy.cuda.get_current_stream().ptr)
    return op.stream if op.stream is not None else 0


class Call:
    """Resolves device and stream for one kernel call and makes outputs of the right kind."""

    def __init__(self, ops: list):
        self.mod = _module()
        self.ops = ops
        self.host = not any(op.on_device for op in ops)
        self._keep = []
        if self.host:
            self.device = self.mod.get_device()
            self.stream = 0  # legacy default stream; results are waited for before returning
            self.lead = None
            for op in ops:
                buf = self.mod.DeviceBuffer(op.host.nbytes, self.device)
                buf.copy_from_host(op.host, self.stream)
                op.ptr = buf.ptr
                self._keep.append(buf)
            return
        for op in ops:
            if op.device is None:
                dev = self.mod.pointer_device(op.ptr) if op.ptr else self.mod.get_device()
                if dev < 0:
                    raise ValueError(f"{op.name}: __cuda_array_interface__ pointer is not CUDA device memory")
                op.device = dev
        devices = {op.device for op in ops}
        if len(devices) > 1:
            raise ValueError(f"arguments are on different CUDA devices: {sorted(devices)}")
        self.device = ops[0].device
        self.lead = ops[0]
        self.stream = _framework_stream(self.lead)
        for op in ops:  # CAI v3: order our stream after each producer's
            if op.stream is not None and op.stream != self.stream:
                self.mod.stream_wait(self.stream, op.stream, self.device)

    def empty(self, shape, dtype):
        """A new output: (object to return or copy back, device pointer)."""
        dtype = np.dtype(dtype)
        if self.host:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            buf = self.mod.DeviceBuffer(nbytes, self.device)
            return (buf, shape, dtype), buf.ptr
        if self.lead.kind == "torch":
            import torch

            t = torch.empty(shape, dtype=getattr(torch, dtype.name), device=self.lead.obj.device)
            return t, int(t.data_ptr())
        if self.lead.kind == "cupy":
            import cupy

            with cupy.cuda.Device(self.device):
                a = cupy.empty(shape, dtype)
            return a, int(a.data.ptr)
        a = CudaArray(shape, dtype, self.device, self.stream)
        return a, a.ptr

    def result(self, out):
        if not self.host:
            return out
        buf, shape, dtype = out
        arr = np.empty(shape, dtype)
        buf.copy_to_host(arr, self.stream)
        return arr
