"""MUVERA fixed dimensional encodings (FDE), output-compatible with Google's reference.

An FDE turns a point cloud (the token vectors of a multi-vector model such as ColBERT) into one
vector whose inner product with another cloud's FDE approximates their Chamfer similarity
(Dhulipala et al., "MUVERA", NeurIPS 2024). This module reproduces Google's implementation
(graph-mining ``sketching/point_cloud``, as shipped in the PyPI package ``muvera-fde``): the same
configuration fields and defaults, the same random matrices (an exact emulation of libstdc++'s
``std::mt19937`` distributions, identical on every backend, platform and thread count), and the
same output -- bit for bit for identity projections, to float rounding for AMS sketches and the
final count-sketch projection. See ``specs/fde.md``.

Batches are ragged: a list of ``(n_i, dimension)`` arrays, one ``(total, dimension)`` array with
``lengths``, or a padded ``(batch, n, dimension)`` array (``lengths`` marks the real rows; padding
rows are never treated as points). Clouds are encoded in parallel (``embkern.set_num_threads``).

CUDA arrays (CuPy, torch, ``__cuda_array_interface__``) in any of these forms are encoded on their
GPU (``backend=None`` or ``"cuda"``) and the result comes back in the caller's framework; numpy input
with ``backend="cuda"`` returns numpy. The GPU result equals the CPU backend's bit for bit. A call
with CUDA input waits for its kernels (it must read back whether some cloud held NaN or inf).

Example::

    from embkern import fde
    cfg = fde.FDEConfig(128, num_repetitions=20, num_simhash_projections=5,
                        projection_type="ams_sketch", projection_dimension=16,
                        fill_empty_partitions=True)          # 10,240 dimensions
    docs = fde.encode_documents(list_of_token_matrices, cfg)  # (n_docs, 10240) float32
    qs = fde.encode_queries(query_tokens, cfg)                # one 2-D cloud -> (10240,)
    scores = docs @ qs
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _dispatch as _d

__all__ = ["FDEConfig", "encode_queries", "encode_documents"]

_PROJECTIONS = ("identity", "ams_sketch")
_MAX_OUTPUT = 2**31 - 1  # the reference indexes the FDE with int32


def _int_field(value: Any, name: str, low: int, high: Optional[int] = None) -> int:
    value = _d.as_int(value, name)
    if value < low or (high is not None and value > high):
        bound = f"{low} <= {name} <= {high}" if high is not None else f"{name} >= {low}"
        raise ValueError(f"{name} must satisfy {bound}, got {value}")
    return value


@dataclass(frozen=True)
class FDEConfig:
    """The reference's ``FixedDimensionalEncodingConfig`` (same fields and defaults).

    ``dimension``: token dimension d. ``num_repetitions`` R (default 1). ``num_simhash_projections``
    k in 0..30 (2**k partitions per repetition; 0 = one partition). ``seed`` (default 1):
    repetition r uses ``seed + r``; queries and documents must share it. ``projection_type``
    "identity" (blocks of d) or "ams_sketch" (blocks of ``projection_dimension``, required then).
    ``fill_empty_partitions``: documents only (queries ignore it, so one config serves both
    sides). ``final_projection_dimension``: if set, the FDE is count-sketched to that length.
    """

    dimension: int
    num_repetitions: int = 1
    num_simhash_projections: int = 0
    seed: int = 1
    projection_type: str = "identity"
    projection_dimension: Optional[int] = None
    fill_empty_partitions: bool = False
    final_projection_dimension: Optional[int] = None

    def __init__(self, dimension: int, *, num_repetitions: int = 1,
                 num_simhash_projections: int = 0, seed: int = 1,
                 projection_type: str = "identity", projection_dimension: Optional[int] = None,
                 fill_empty_partitions: bool = False,
                 final_projection_dimension: Optional[int] = None):
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        put("dimension", _int_field(dimension, "dimension", 1))
        put("num_repetitions", _int_field(num_repetitions, "num_repetitions", 1))
        put("num_simhash_projections",
            _int_field(num_simhash_projections, "num_simhash_projections", 0, 30))
        put("seed", _int_field(seed, "seed", -(2**31), 2**32 - 1))
        if projection_type not in _PROJECTIONS:
            raise ValueError(f"projection_type must be one of {_PROJECTIONS}, got {projection_type!r}")
        put("projection_type", projection_type)
        if projection_type == "ams_sketch":
            if projection_dimension is None:
                raise ValueError("projection_dimension must be set (> 0) when "
                                 "projection_type='ams_sketch'")
            projection_dimension = _int_field(projection_dimension, "projection_dimension", 1)
        elif projection_dimension is not None:
            projection_dimension = _int_field(projection_dimension, "projection_dimension", 1)
        put("projection_dimension", projection_dimension)
        if not isinstance(fill_empty_partitions, (bool, np.bool_)):
            raise TypeError(f"fill_empty_partitions must be a bool, got "
                            f"{type(fill_empty_partitions).__name__}")
        put("fill_empty_partitions", bool(fill_empty_partitions))
        if final_projection_dimension is not None:
            final_projection_dimension = _int_field(
                final_projection_dimension, "final_projection_dimension", 1, _MAX_OUTPUT)
        put("final_projection_dimension", final_projection_dimension)
        if self.inner_dimension > _MAX_OUTPUT:
            raise ValueError(f"the encoding would have {self.inner_dimension} dimensions "
                             f"(num_repetitions * 2**num_simhash_projections * block width); "
                             f"at most {_MAX_OUTPUT} are supported")

    @property
    def block_dimension(self) -> int:
        """Coordinates per partition: d (identity) or projection_dimension (AMS)."""
        return self.projection_dimension if self.projection_type == "ams_sketch" else self.dimension

    @property
    def num_partitions(self) -> int:
        return 1 << self.num_simhash_projections

    @property
    def inner_dimension(self) -> int:
        """R * 2**k * block width: the length before the optional final projection."""
        return self.num_repetitions * self.num_partitions * self.block_dimension

    @property
    def output_dimension(self) -> int:
        """Length of every encoding."""
        if self.final_projection_dimension is not None:
            return self.final_projection_dimension
        return self.inner_dimension


# ------------------------------------------------------------------------------------------------
# random tables: generated once per (config, backend) and cached (they do not depend on the data)
# ------------------------------------------------------------------------------------------------
_EMPTY_F = np.zeros(0, np.float32)
_EMPTY_I = np.zeros(0, np.int32)
_EMPTY_G = np.zeros((0, 0), np.float32)
_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 16


def _tables(cfg: FDEConfig, backend: str, module) -> tuple:
    """(gauss (d, R*k), ams_col (R, d), ams_sign (R, d), fp_idx, fp_sign) for this config."""
    ams = cfg.projection_type == "ams_sketch"
    key = (backend, cfg.seed, cfg.dimension, cfg.num_repetitions, cfg.num_simhash_projections,
           cfg.block_dimension if ams else 0, cfg.final_projection_dimension)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    d, R, k = cfg.dimension, cfg.num_repetitions, cfg.num_simhash_projections
    gauss = module.simhash_matrices(cfg.seed, R, d, k) if k > 0 else _EMPTY_G
    col, sign = module.ams_tables(cfg.seed, R, d, cfg.block_dimension) if ams else (_EMPTY_I, _EMPTY_F)
    if cfg.final_projection_dimension is not None:
        fidx, fsign = module.count_sketch(cfg.seed, cfg.inner_dimension, cfg.final_projection_dimension)
    else:
        fidx, fsign = _EMPTY_I, _EMPTY_F
    tables = (gauss, col, sign, fidx, fsign)
    with _cache_lock:
        _cache[key] = tables
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return tables


# ------------------------------------------------------------------------------------------------
# input normalisation
# ------------------------------------------------------------------------------------------------
def _as_tokens(x: Any, name: str, d: int, ndim: int) -> np.ndarray:
    arr = _d.as_array(x, name)
    if arr.dtype.kind not in "fiu" and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D (..., dimension), got shape {arr.shape}")
    if arr.shape[-1] != d:
        raise ValueError(f"{name} has token dimension {arr.shape[-1]}, but config.dimension is {d}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_lengths(lengths: Any, count: Optional[int]) -> np.ndarray:
    arr = _d.as_array(lengths, "lengths")
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {arr.shape}")
    if count is not None and len(arr) != count:
        raise ValueError(f"lengths must have one entry per point cloud ({count}), got {len(arr)}")
    if arr.size and arr.min() < 0:
        raise ValueError("lengths must be >= 0")
    return arr.astype(np.int64)


def _normalise(points: Any, lengths: Any, d: int) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(tokens (total, d) float32, offsets (batch + 1,) int64, single) from any accepted form."""
    if isinstance(points, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths must be None when points is a list of arrays")
        clouds = [_as_tokens(c, f"points[{i}]", d, 2) for i, c in enumerate(points)]
        sizes = np.array([len(c) for c in clouds], dtype=np.int64)
        flat = np.concatenate(clouds, axis=0) if clouds else np.zeros((0, d), np.float32)
        return np.ascontiguousarray(flat), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), False
    arr = _d.as_array(points, "points")
    if arr.ndim == 3:
        x = _as_tokens(arr, "points", d, 3)
        b, n = x.shape[:2]
        if lengths is None:
            return x.reshape(b * n, d), np.arange(b + 1, dtype=np.int64) * n, False
        ln = _as_lengths(lengths, b)
        if ln.size and ln.max() > n:
            raise ValueError(f"lengths must be <= the padded length {n}, got {int(ln.max())}")
        if ln.size and (ln == n).all():
            flat = x.reshape(b * n, d)
        else:
            flat = x[np.arange(n)[None, :] < ln[:, None]]
        return np.ascontiguousarray(flat), np.concatenate([[0], np.cumsum(ln)]).astype(np.int64), False
    if arr.ndim == 2:
        x = _as_tokens(arr, "points", d, 2)
        if lengths is None:
            return x, np.array([0, len(x)], dtype=np.int64), True
        ln = _as_lengths(lengths, None)
        if int(ln.sum()) != len(x):
            raise ValueError(f"lengths must sum to the number of rows of points ({len(x)}), "
                             f"got {int(ln.sum())}")
        return x, np.concatenate([[0], np.cumsum(ln)]).astype(np.int64), False
    raise ValueError(f"points must be a list of (n, dimension) arrays, a 2-D (total, dimension) "
                     f"array or a 3-D (batch, n, dimension) array, got shape {arr.shape}")


# ------------------------------------------------------------------------------------------------
# CUDA arrays (CuPy, torch, __cuda_array_interface__): encoded on the GPU, results in the caller's
# framework; the same accepted forms and checks as for host arrays
# ------------------------------------------------------------------------------------------------
def _framework(x: Any) -> str:
    mod = type(x).__module__ or ""
    if mod == "torch" or mod.startswith("torch."):
        return "torch"
    if mod == "cupy" or mod.startswith("cupy."):
        return "cupy"
    return "cai"


def _device_shape(x: Any) -> tuple:
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            shape = x.__cuda_array_interface__["shape"]
        except Exception as exc:
            raise TypeError(f"points: cannot read the shape of this CUDA array ({exc})") from None
    return tuple(int(n) for n in shape)


def _device_float32(x: Any, name: str) -> Any:
    """x as float32: CuPy / torch arrays of any real dtype converted on their device; other CUDA
    arrays must already be float32."""
    fw = _framework(x)
    if fw == "torch":
        import torch

        if x.dtype.is_complex:
            raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
        return x.detach() if x.dtype == torch.float32 else x.detach().to(torch.float32)
    if fw == "cupy":
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
        return x if x.dtype == np.float32 else x.astype(np.float32)
    try:
        typestr = x.__cuda_array_interface__["typestr"]
        dtype = np.dtype(typestr)
    except Exception as exc:
        raise TypeError(f"{name}: cannot read the element type of this CUDA array ({exc})") from None
    if dtype != np.float32:
        raise TypeError(f"{name} must be float32 (other dtypes: pass a CuPy array or a torch "
                        f"tensor, converted on the device), got {dtype}")
    return x


def _host_ints(lengths: Any) -> Any:
    """lengths given as a CUDA array, copied to the host (they are small)."""
    if _d._is_device_array(lengths):
        fw = _framework(lengths)
        if fw == "torch":
            return lengths.detach().cpu().numpy()
        if fw == "cupy":
            return lengths.get()
        from ._cuda_backend import CudaArray

        if isinstance(lengths, CudaArray):
            return lengths.get()
        raise TypeError("lengths: pass a host array, a CuPy array or a torch tensor")
    return lengths


class _RowsView:
    """A C-contiguous (batch, n, d) CUDA array seen as (batch * n, d) rows."""

    def __init__(self, x: Any, rows: int, d: int):
        from ._cuda_backend import _parse_cai

        self._x = x
        cai = dict(x.__cuda_array_interface__)
        if not _parse_cai(cai, "points")["contiguous"]:
            raise ValueError(f"points must be C-contiguous (got strides {cai.get('strides')})")
        cai["shape"] = (rows, d)
        cai["strides"] = None
        self.__cuda_array_interface__ = cai


def _encode_device(points: Any, config: FDEConfig, lengths: Any, document: bool):
    d = config.dimension
    if isinstance(points, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths must be None when points is a list of arrays")
        host = [i for i, c in enumerate(points) if not _d._is_device_array(c)]
        if host:
            raise ValueError(f"points[{host[0]}] is a host array but other point clouds are CUDA "
                             f"arrays; pass all on the same device (or all as host arrays)")
        fws = {_framework(c) for c in points}
        if len(fws) != 1 or fws == {"cai"}:
            raise TypeError("points: a list of CUDA arrays must be all CuPy arrays or all torch "
                            "tensors (concatenate other arrays into one (total, dimension) array "
                            "and pass lengths)")
        clouds = []
        for i, c in enumerate(points):
            shape = _device_shape(c)
            if len(shape) != 2 or shape[1] != d:
                raise ValueError(f"points[{i}] must be (n, dimension={d}), got shape {shape}")
            clouds.append(_device_float32(c, f"points[{i}]"))
        sizes = np.array([c.shape[0] for c in clouds], dtype=np.int64)
        if fws == {"torch"}:
            import torch

            x = torch.cat(clouds, 0)
        else:
            import cupy

            x = cupy.concatenate(clouds, 0)
        ends = np.cumsum(sizes)
        return x, ends - sizes, ends, False
    shape = _device_shape(points)
    if len(shape) == 3:
        b, n, dd = shape
        if dd != d:
            raise ValueError(f"points has token dimension {dd}, but config.dimension is {d}")
        begin = np.arange(b, dtype=np.int64) * n
        if lengths is None:
            end = begin + n
        else:
            ln = _as_lengths(_host_ints(lengths), b)
            if ln.size and ln.max() > n:
                raise ValueError(f"lengths must be <= the padded length {n}, got {int(ln.max())}")
            end = begin + ln
        x = _device_float32(points, "points")
        fw = _framework(x)
        x = x.reshape(b * n, d) if fw in ("torch", "cupy") else _RowsView(x, b * n, d)
        return x, begin, end, False
    if len(shape) == 2:
        rows, dd = shape
        if dd != d:
            raise ValueError(f"points has token dimension {dd}, but config.dimension is {d}")
        x = _device_float32(points, "points")
        if lengths is None:
            return x, np.zeros(1, np.int64), np.array([rows], np.int64), True
        ln = _as_lengths(_host_ints(lengths), None)
        if int(ln.sum()) != rows:
            raise ValueError(f"lengths must sum to the number of rows of points ({rows}), "
                             f"got {int(ln.sum())}")
        ends = np.cumsum(ln)
        return x, ends - ln, ends, False
    raise ValueError(f"points must be a list of (n, dimension) arrays, a 2-D (total, dimension) "
                     f"array or a 3-D (batch, n, dimension) array, got shape {shape}")


def _on_device(points: Any) -> bool:
    if isinstance(points, (list, tuple)):
        return any(_d._is_device_array(c) for c in points)
    return _d._is_device_array(points)


def _encode(points: Any, config: FDEConfig, lengths: Any, backend: Optional[str],
            document: bool) -> np.ndarray:
    if not isinstance(config, FDEConfig):
        raise TypeError(f"config must be an FDEConfig, got {type(config).__name__}")
    candidates = list(points) if isinstance(points, (list, tuple)) else [points]
    if _on_device(points) and _d.choose_backend(backend, *candidates) == "cuda":
        x, begin, end, single = _encode_device(points, config, lengths, document)
        module = _d.backend_module("fde", "cuda")
        gauss, col, sign, fidx, fsign = _tables(config, "cuda", module)
        out = module.encode_ranges(x, begin, end, gauss, col, sign, fidx, fsign,
                                   config.num_repetitions, config.num_simhash_projections,
                                   config.block_dimension, config.final_projection_dimension or 0,
                                   document, config.fill_empty_partitions,
                                   config.projection_type == "ams_sketch")
        if not single:
            return out
        if hasattr(out, "__getitem__"):
            return out[0]
        out.shape = out.shape[1:]  # a CudaArray of one row: the same memory as a vector
        return out
    x, offsets, single = _normalise(points, lengths, config.dimension)
    chosen = _d.choose_backend(backend)
    module = _d.backend_module("fde", chosen)
    gauss, col, sign, fidx, fsign = _tables(config, chosen, module)
    out = module.encode(x, offsets, gauss, col, sign, fidx, fsign, config.num_repetitions,
                        config.num_simhash_projections, config.block_dimension,
                        config.final_projection_dimension or 0, document,
                        config.fill_empty_partitions, config.projection_type == "ams_sketch")
    return out[0] if single else out


def encode_queries(points: Any, config: FDEConfig, *, lengths: Any = None,
                   backend: Optional[str] = None) -> np.ndarray:
    """Query FDEs (per-partition sums of the tokens): float32 (batch, config.output_dimension),
    or 1-D for a single 2-D cloud given without ``lengths``. An empty cloud encodes to zeros.
    ``fill_empty_partitions`` does not apply to queries."""
    return _encode(points, config, lengths, backend, False)


def encode_documents(points: Any, config: FDEConfig, *, lengths: Any = None,
                     backend: Optional[str] = None) -> np.ndarray:
    """Document FDEs (per-partition means; empty partitions filled with the Hamming-nearest
    token when ``config.fill_empty_partitions``): float32 (batch, config.output_dimension), or
    1-D for a single 2-D cloud given without ``lengths``. An empty cloud encodes to zeros."""
    return _encode(points, config, lengths, backend, True)
