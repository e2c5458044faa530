"""Backend choice and input normalisation: the one place that turns user input into what a kernel
accepts.

Every public kernel goes through here: arrays are normalised (``np.asarray``, DLPack CPU tensors,
non-contiguous input copied to C order), validated (dtype, shape, ranges; errors name the argument)
and handed to one backend module that implements the family's internal API:

* ``"cpu"``   -- ``embkern._core.<family>``, the compiled kernels (runtime ISA dispatch),
* ``"numba"`` -- ``embkern._numba.<family>``, the JIT fallback, same functions and results,
* ``"cuda"``  -- ``embkern._cuda_backend``, when the CUDA module was built and a device is visible.
"""
from __future__ import annotations

import importlib
import numbers
import os
import threading
from contextlib import contextmanager
from typing import Any, Optional

import numpy as np

BACKENDS = ("cpu", "numba", "cuda")

# ---------------------------------------------------------------------------------------------
# compiled CPU module
# ---------------------------------------------------------------------------------------------
try:
    from . import _core  # noqa: F401
    _CORE_ERROR: Optional[str] = None
except ImportError as exc:  # no compiler at install time, or an unsupported CPU
    if "ISA tier" in str(exc):  # a bad EMBKERN_ISA is the user's error: say so, don't fall back
        raise ImportError(f"EMBKERN_ISA={os.environ.get('EMBKERN_ISA')!r}: {exc}") from None
    _core = None
    _CORE_ERROR = f"embkern._core could not be imported ({exc})"

_numba_lock = threading.Lock()


def core_available() -> bool:
    return _core is not None


def core_error() -> Optional[str]:
    return _CORE_ERROR


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------
def _default_threads() -> int:
    env = os.environ.get("EMBKERN_NUM_THREADS")
    if env:
        try:
            n = int(env)
            if n >= 1:
                return n
        except ValueError:
            pass
    return os.cpu_count() or 1


_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Set how many threads every embkern kernel may use (process-wide)."""
    global _threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    _threads = int(n)
    if _core is not None:
        _core.set_num_threads(_threads)


def get_num_threads() -> int:
    """The number of threads embkern kernels use."""
    return _threads


if _core is not None:
    _core.set_num_threads(_threads)


# ---------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------
def _cuda_module():
    from . import _cuda_backend  # lazy: CPU users never load CUDA

    return _cuda_backend


def cuda_available() -> bool:
    try:
        return bool(_cuda_module().available())
    except ImportError:
        return False


def cuda_status() -> str:
    try:
        return str(_cuda_module().status())
    except ImportError as exc:
        return f"CUDA backend unavailable ({exc})"


def _is_device_array(x: Any) -> bool:
    try:  # torch raises (not AttributeError) for tensors that require grad
        if getattr(x, "__cuda_array_interface__", None) is not None:
            return True
    except Exception:
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None and not isinstance(x, np.ndarray):
        try:
            return int(dev()[0]) in (2, 13)  # kDLCUDA, kDLCUDAManaged
        except Exception:
            return False
    return False


class _NumbaFamily:
    """Wraps a Numba family module so each call runs with embkern's thread count."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)

        def call(*args, **kwargs):
            import numba

            want = max(1, min(get_num_threads(), numba.config.NUMBA_NUM_THREADS))
            with _numba_lock:
                old = numba.get_num_threads()
                numba.set_num_threads(want)
                try:
                    return fn(*args, **kwargs)
                finally:
                    numba.set_num_threads(old)

        return call


def choose_backend(backend: Optional[str], *arrays: Any) -> str:
    """The backend name for this call.

    None picks CUDA when an input lives on a GPU, else the compiled CPU path, else Numba.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend is not None:
        return backend
    if any(_is_device_array(a) for a in arrays):
        return "cuda"
    return "cpu" if _core is not None else "numba"


def backend_module(family: str, backend: str):
    """The module implementing `family` on `backend`; RuntimeError saying why if unavailable."""
    if backend == "cpu":
        if _core is None:
            raise RuntimeError(f"backend 'cpu' is unavailable: {_CORE_ERROR}")
        return getattr(_core, family)
    if backend == "numba":
        try:
            module = importlib.import_module(f"embkern._numba.{family}")
        except ImportError as exc:
            raise RuntimeError(f"backend 'numba' is unavailable: {exc}") from exc
        return _NumbaFamily(module)
    try:
        cuda = _cuda_module()
    except ImportError as exc:
        raise RuntimeError(f"backend 'cuda' is unavailable: {exc}") from exc
    if not cuda.available():
        raise RuntimeError(f"backend 'cuda' is unavailable: {cuda.status()}")
    try:
        return importlib.import_module(f"embkern._cuda_ops.{family}")
    except ModuleNotFoundError:
        raise RuntimeError(f"embkern.{family} has no kernels on the 'cuda' backend") from None


def kernel(family: str, name: str, backend: Optional[str], *arrays: Any):
    """The function `name` of `family` on the chosen backend (RuntimeError if it lacks it)."""
    chosen = choose_backend(backend, *arrays)
    module = backend_module(family, chosen)
    try:
        return getattr(module, name)
    except AttributeError:
        raise RuntimeError(f"{family}.{name} has no implementation on the {chosen!r} backend") from None


# ---------------------------------------------------------------------------------------------
# input normalisation and validation
# ---------------------------------------------------------------------------------------------
_INDEX_LIMIT = 2**62  # element counts beyond this cannot be indexed safely even in int64


def as_array(x: Any, name: str) -> np.ndarray:
    """Anything np.asarray accepts, and CPU tensors through DLPack."""
    if isinstance(x, np.ndarray):
        return x
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
        try:
            return np.from_dlpack(x)
        except Exception as exc:
            raise TypeError(f"{name}: cannot read this array through DLPack ({exc})") from exc
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like ({exc})") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array (ragged input?)")
    return arr


def _check_size(arr: np.ndarray, name: str) -> None:
    if arr.size > _INDEX_LIMIT:
        raise ValueError(f"{name} has {arr.size} elements, more than embkern can index")


def as_codes(x: Any, name: str, ndim: int = 2, allow_1d: bool = False):
    """uint8 packed codes in C order. Returns (array, was_1d)."""
    arr = as_array(x, name)
    if arr.dtype != np.uint8:
        hint = ""
        if arr.dtype == np.int8:
            hint = " (int8 'binary' codes: pass the 'ubinary' codes, or arr.view(np.uint8) on both sides)"
        elif arr.dtype == np.bool_:
            hint = " (pack boolean arrays first with embkern.pack_signs or np.packbits)"
        raise TypeError(f"{name} must be uint8 packed codes, got dtype {arr.dtype}{hint}")
    was_1d = False
    if allow_1d and arr.ndim == ndim - 1:
        arr = arr[None]
        was_1d = True
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of codes, got shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one byte per code, got shape {arr.shape}")
    _check_size(arr, name)
    return np.ascontiguousarray(arr), was_1d


def as_float(x: Any, name: str, ndim: int, dtypes=(np.float32,), allow_1d: bool = False,
             finite: bool = False):
    """A float array of one of `dtypes` (others are converted to the first), C order."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "fiub" or arr.dtype.kind == "c":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in dtypes:
        arr = arr.astype(dtypes[0])
    was_1d = False
    if allow_1d and arr.ndim == ndim - 1:
        arr = arr[None]
        was_1d = True
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    _check_size(arr, name)
    arr = np.ascontiguousarray(arr)
    if finite and not all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf")
    return arr, was_1d


def all_finite(arr: np.ndarray) -> bool:
    """No NaN or inf in a float array: the compiled check (threads, no temporary) where it
    applies, else numpy's."""
    if arr.size == 0:
        return True
    if _core is not None and arr.dtype in (np.float32, np.float64) and arr.flags.c_contiguous:
        return bool(_core.all_finite(arr))
    return bool(np.isfinite(arr).all())


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def check_k(k: Any, n: int, name: str = "k") -> int:
    k = as_int(k, name)
    if not 1 <= k <= n:
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {n} (database size), got {k}")
    return k


def same_width(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same code shape, got {a.shape[1:]} and {b.shape[1:]}"
        )


def check_bitorder(bitorder: Any) -> bool:
    """True for 'little'."""
    if bitorder not in ("big", "little"):
        raise ValueError(f"bitorder must be 'big' or 'little', got {bitorder!r}")
    return bitorder == "little"


@contextmanager
def use_isa(isa: str):
    """Temporarily run the compiled kernels at ISA tier `isa` (process-wide; for tests/benchmarks)."""
    if _core is None:
        raise RuntimeError(f"the compiled CPU module is unavailable: {_CORE_ERROR}")
    old = _core.get_isa()
    _core.set_isa(isa)
    try:
        yield
    finally:
        _core.set_isa(old)
