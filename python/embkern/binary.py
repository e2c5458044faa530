"""Binary codes: sign binarization, Hamming distances, exact Hamming top-k and range search,
float-query-vs-binary rescoring, and multi-bit (BEBR-style) codes.

Codes are ``uint8`` arrays of packed bits, one row per vector (``ceil(d / 8)`` bytes). Hamming
distances are ``int32``, indices ``int64``, float scores ``float32``. Top-k results are sorted best
first, equal scores by smaller database index. Every function takes ``backend=None`` ("cpu",
"numba", "cuda" force one) and runs with ``embkern.get_num_threads()`` threads, without the GIL.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _dispatch as _d

__all__ = [
    "pack_signs",
    "hamming_distance",
    "hamming_topk",
    "hamming_range",
    "asymmetric_scores",
    "multibit_scores",
    "multibit_topk",
]


def _cuda_call(name: str, *args: Any):
    """Run `name` on the CUDA backend with the caller's own (device) arrays. The wrapper checks
    dtypes and shapes on the host first, then raises RuntimeError if no GPU is usable."""
    from ._cuda_ops import binary as cuda_ops  # plain Python: importable without CUDA

    fn = getattr(cuda_ops, name, None)
    if fn is None:
        raise RuntimeError(f"binary.{name} has no implementation on the 'cuda' backend")
    return fn(*args)


def _as_rows(x: Any, ndim: int = 2):
    """A device array with one dimension less than `ndim` viewed as one row: (array, was_single)."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == ndim - 1:
        return x.reshape(1, *tuple(shape)), True
    return x, False


def _on_device(*arrays: Any) -> bool:
    return any(_d._is_device_array(a) for a in arrays)


def _device_float32(x: Any, name: str):
    """CuPy / torch real queries as float32 on their device (as the CPU path converts them), checked
    for NaN and inf there (one device reduction, waited for); other producers pass unchanged."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch"):
        import torch

        if x.is_complex():
            return x  # the kernel wrapper rejects the dtype
        if x.dtype != torch.float32:
            x = x.float()
        finite = bool(torch.isfinite(x).all())
    elif mod.startswith("cupy"):
        import cupy

        if x.dtype.kind not in "fiub":
            return x
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        finite = bool(cupy.isfinite(x).all())
    else:
        return x
    if not finite:
        raise ValueError(f"{name} contains NaN or inf")
    return x


def pack_signs(x: Any, *, threshold: float = 0.0, bitorder: str = "big",
               backend: Optional[str] = None) -> np.ndarray:
    """Binarize vectors to packed sign bits.

    Bit ``j`` of a row is set where ``x[j] > threshold``; the result equals
    ``np.packbits(x > threshold, axis=-1, bitorder=bitorder)``. The default ``bitorder="big"``
    matches sentence-transformers' "ubinary" precision; faiss's converters use ``"little"``
    (and ``x >= 0``, i.e. pass ``threshold=-tiny`` or use ``np.nextafter``).
    NaN compares false, so a NaN value gives a clear bit, exactly as in numpy.

    Parameters
    ----------
    x : array (n, d) or (d,)
        float16/32/64 (integers and booleans are compared exactly as float64).
    Returns
    -------
    uint8 array (n, ceil(d/8)), or (ceil(d/8),) for 1-D input.
    """
    little = _d.check_bitorder(bitorder)
    if _d.choose_backend(backend, x) == "cuda" and _d._is_device_array(x):
        rows, one = _as_rows(x)
        name = "pack_signs_f64" if str(getattr(x, "dtype", "")).endswith("float64") else "pack_signs_f32"
        out = _cuda_call(name, rows, float(threshold), little)
        return out[0] if one else out
    arr = _d.as_array(x, "x")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a real number, got {threshold!r}")
    if np.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    # Compare in x's own float type, as numpy does (a Python float threshold is cast to it).
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore"):
            threshold = float(np.asarray(threshold).astype(arr.dtype))
    dtypes = (np.float32,) if arr.dtype in (np.float32, np.float16) else (np.float64,)
    arr, was_1d = _d.as_float(arr, "x", 2, dtypes=dtypes, allow_1d=True)
    if arr.shape[1] == 0:
        raise ValueError("x must have at least one column")
    name = "pack_signs_f32" if arr.dtype == np.float32 else "pack_signs_f64"
    out = _d.kernel("binary", name, backend, x)(arr, float(threshold), little)
    return out[0] if was_1d else out


def hamming_distance(a: Any, b: Any = None, *, backend: Optional[str] = None) -> np.ndarray:
    """All-pairs Hamming distances ``popcount(a_i XOR b_j)`` as int32 (na, nb).

    ``b=None`` compares ``a`` with itself. 1-D inputs are single codes (that axis is dropped).
    """
    if _d.choose_backend(backend, a, b) == "cuda" and (_d._is_device_array(a) or _d._is_device_array(b)):
        ra, a1 = _as_rows(a)
        rb, b1 = (ra, a1) if b is None else _as_rows(b)
        out = _cuda_call("hamming_distance", ra, rb)
        return out[0, 0] if (a1 and b1) else out[0] if a1 else out[:, 0] if b1 else out
    a_arr, a1 = _d.as_codes(a, "a", allow_1d=True)
    if b is None:
        b_arr, b1 = a_arr, a1
    else:
        b_arr, b1 = _d.as_codes(b, "b", allow_1d=True)
        _d.same_width(a_arr, b_arr, "a", "b")
    out = _d.kernel("binary", "hamming_distance", backend, a, b)(a_arr, b_arr)
    if a1 and b1:
        return out[0, 0]
    if a1:
        return out[0]
    if b1:
        return out[:, 0]
    return out


def hamming_topk(queries: Any, database: Any, k: int, *,
                 backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k nearest codes by Hamming distance.

    Streams over the database (memory O(nq*k), never the full matrix); the work is split over
    threads by queries and, when there are few queries, by database parts too.

    Returns ``(distances int32 (nq, k), indices int64 (nq, k))``, ascending, ties by smaller index.
    The distances equal faiss ``IndexBinaryFlat.search``'s. A 1-D query gives 1-D results.
    """
    if _d.choose_backend(backend, queries, database) == "cuda" and (
            _d._is_device_array(queries) or _d._is_device_array(database)):
        rq, q1 = _as_rows(queries)
        k = _d.check_k(k, int(database.shape[0]))
        dist, idx = _cuda_call("hamming_topk", rq, database, k)
        return (dist[0], idx[0]) if q1 else (dist, idx)
    q, q1 = _d.as_codes(queries, "queries", allow_1d=True)
    db, _ = _d.as_codes(database, "database")
    _d.same_width(q, db, "queries", "database")
    k = _d.check_k(k, db.shape[0])
    dist, idx = _d.kernel("binary", "hamming_topk", backend, queries, database)(q, db, k)
    return (dist[0], idx[0]) if q1 else (dist, idx)


def hamming_range(queries: Any, database: Any, radius: int, *,
                  backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code within ``radius`` (inclusive) of each query, in faiss's range-search layout.

    Returns ``(lims int64 (nq+1,), distances int32, indices int64)``: query ``i``'s results are
    ``distances[lims[i]:lims[i+1]]``, ascending by distance then index.
    """
    if _d.choose_backend(backend, queries, database) == "cuda" and _on_device(queries, database):
        rq, _ = _as_rows(queries)
        radius = _d.as_int(radius, "radius")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        return _cuda_call("hamming_range", rq, database, radius)
    q, _ = _d.as_codes(queries, "queries", allow_1d=True)
    db, _ = _d.as_codes(database, "database")
    _d.same_width(q, db, "queries", "database")
    radius = _d.as_int(radius, "radius")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    radius = min(radius, 8 * q.shape[1])
    return _d.kernel("binary", "hamming_range", backend, queries, database)(q, db, radius)


def asymmetric_scores(queries: Any, database: Any, *, bitorder: str = "big",
                      backend: Optional[str] = None) -> np.ndarray:
    """Float queries against binary codes read as +-1 per bit (set bit +1, clear bit -1).

    ``queries`` is float (nq, d) and ``database`` uint8 (n, ceil(d/8)) with bits in ``bitorder``;
    padding bits beyond ``d`` are ignored. Returns float32 (nq, n): the dot products used to
    rescore binary-retrieval candidates with the float query.
    """
    little = _d.check_bitorder(bitorder)
    if _d.choose_backend(backend, queries, database) == "cuda" and _on_device(queries, database):
        rq, q1 = _as_rows(_device_float32(queries, "queries"))
        out = _cuda_call("asymmetric_scores", rq, database, little)
        return out[0] if q1 else out
    q, q1 = _d.as_float(queries, "queries", 2, allow_1d=True, finite=True)
    db, _ = _d.as_codes(database, "database")
    d = q.shape[1]
    if d == 0:
        raise ValueError("queries must have at least one dimension")
    if db.shape[1] != (d + 7) // 8:
        raise ValueError(
            f"database must have ceil(d/8) = {(d + 7) // 8} bytes per code for d = {d}, got {db.shape[1]}")
    out = _d.kernel("binary", "asymmetric_scores", backend, queries, database)(q, db, little)
    return out[0] if q1 else out


def _multibit_args(queries, database, dim, weights):
    q, q1 = _d.as_codes(queries, "queries", ndim=3, allow_1d=True)
    db, _ = _d.as_codes(database, "database", ndim=3)
    _d.same_width(q, db, "queries", "database")
    dim = _d.as_int(dim, "dim")
    planes, nbytes = q.shape[1], q.shape[2]
    if planes == 0:
        raise ValueError("codes must have at least one plane")
    if dim < 1 or (dim + 7) // 8 != nbytes:
        raise ValueError(f"dim must satisfy ceil(dim/8) == {nbytes} (bytes per plane), got {dim}")
    if weights is None:
        w = 2.0 ** -np.arange(planes, dtype=np.float64)
    else:
        w, _ = _d.as_float(weights, "weights", 1, dtypes=(np.float64,), finite=True)
        if w.shape[0] != planes:
            raise ValueError(f"weights must have one value per plane ({planes}), got {w.shape[0]}")
    return q, q1, db, dim, w


def multibit_scores(queries: Any, database: Any, *, dim: int, weights: Any = None,
                    backend: Optional[str] = None) -> np.ndarray:
    """Inner products of multi-bit binary codes (BEBR recurrent binarization).

    Codes are uint8 (n, planes, ceil(dim/8)); plane t holds the signs of the t-th binary vector,
    and the composite vector is ``sum_t w_t * (+-1 plane t)`` with ``weights`` (planes,) defaulting
    to ``2**-t``. The score of a pair is ``sum_s sum_t w_s w_t (dim - 2 popcount(q_s XOR d_t))``,
    computed in float64 and rounded to float32. Padding bits beyond ``dim`` must be zero (as
    ``pack_signs`` writes them). Returns float32 (nq, n).
    """
    if _d.choose_backend(backend, queries, database) == "cuda" and _on_device(queries, database):
        rq, q1 = _as_rows(queries, 3)
        out = _cuda_call("multibit_scores", rq, database, _d.as_int(dim, "dim"), weights)
        return out[0] if q1 else out
    q, q1, db, dim, w = _multibit_args(queries, database, dim, weights)
    out = _d.kernel("binary", "multibit_scores", backend, queries, database)(q, db, dim, w)
    return out[0] if q1 else out


def multibit_topk(queries: Any, database: Any, k: int, *, dim: int, weights: Any = None,
                  backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The k largest ``multibit_scores`` per query: ``(scores float32 (nq, k), indices int64 (nq, k))``,
    descending, ties by smaller index; streams over the database."""
    if _d.choose_backend(backend, queries, database) == "cuda" and _on_device(queries, database):
        rq, q1 = _as_rows(queries, 3)
        k = _d.check_k(k, int(database.shape[0]))
        s, i = _cuda_call("multibit_topk", rq, database, k, _d.as_int(dim, "dim"), weights)
        return (s[0], i[0]) if q1 else (s, i)
    q, q1, db, dim, w = _multibit_args(queries, database, dim, weights)
    k = _d.check_k(k, db.shape[0])
    s, i = _d.kernel("binary", "multibit_topk", backend, queries, database)(q, db, k, dim, w)
    return (s[0], i[0]) if q1 else (s, i)
