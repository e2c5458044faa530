"""Fused low-rank matmuls: LoRA, factorized (SVD-form) layers, sparse plus low-rank (SLTrain) and
many LoRA adapters in one batch (Punica/S-LoRA semantics).

Layouts follow PyTorch and PEFT (specs/lowrank.md): every weight is ``(out, in)``; ``lora_a`` is
``(r, in)``, ``lora_b`` ``(out, r)``; stacked adapters are ``(n_adapters, r, in)`` and
``(n_adapters, out, r)`` as Punica stacks them. ``x`` may have any leading dimensions (``(..., in)``
in, ``(..., out)`` out). float32 and float64 are computed natively and the result dtype follows
``x`` (other dtypes compute in float32); the weights are cast to ``x``'s dtype.

The compiled kernels are fused: per block of rows the low-rank intermediate ``x a^T`` stays in
cache, the output is written once with the update added in registers, adapters are grouped by
segment (never gathered per row) and the sparse part is an SpMM over a CSR copy of the support.
NaN/inf in any input propagate as numpy's matmul would.

CUDA: when any array argument is a CUDA array (CuPy, torch CUDA tensors, ``__cuda_array_interface__``
objects) and ``backend`` is None or "cuda", the call runs on that device and returns an array of the
same framework (on its current stream). There every array must already be on the device with x's
dtype, float32 or float64 (no casts; a mismatch is a TypeError naming the argument); only the sparse
support of ``sparse_lowrank_linear`` may be given in host form (it is canonicalised on the host and
copied over). Device ``adapter_ids`` are not range-checked (values outside [0, n_adapters) act as -1).
numpy input with ``backend="cuda"`` is validated and cast as for the CPU, run on the current device
and returned as numpy.

Large results (1 MiB and up) are written into buffers that earlier results of the same size
released, when there are any (at most 6 buffers, 2 GiB, are kept; the packed factors reuse them
too): a layer called again and again
then skips the operating system's page zeroing of a fresh output, which for a low-rank layer costs
about as much as the product. Each result is still a fresh array owning its memory;
``embkern.release_buffers()`` frees the kept buffers.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from . import _dispatch as _d

__all__ = ["lora_linear", "lowrank_linear", "sparse_lowrank_linear", "multi_lora_linear"]

_INT32_MAX = 2**31 - 1

# lora_linear's base GEMM x @ weight.T goes to scipy's BLAS (see _base_blas) from this many
# multiply-adds (M * N * K) up; below it the fused kernel alone is faster (no BLAS start-up).
_BLAS_MIN_WORK = 1 << 27
_blas_cache: Any = None


def _base_blas():
    """(sgemm capsule, dgemm capsule, threadpoolctl controller) for lora_linear's base GEMM, or
    None without scipy or threadpoolctl.

    The base weight product is a square dense GEMM, where OpenBLAS's tuned kernel measured 5-20 %
    ahead of embkern's own tile on the development machine; scipy's cython_blas hands out the
    Fortran ?gemm of the OpenBLAS build scipy ships (scipy-openblas32), which the compiled kernel
    calls with beta = 1 to add x w^T into the output the fused low-rank pass wrote, one fixed
    block of rows per call on embkern's threads with the BLAS held at one thread (threadpoolctl),
    so set_num_threads holds and the thread count changes no bit of the result.
    """
    global _blas_cache
    if _blas_cache is None:
        try:
            from scipy.linalg import cython_blas
            from threadpoolctl import ThreadpoolController

            capi = cython_blas.__pyx_capi__
            _blas_cache = (capi["sgemm"], capi["dgemm"], ThreadpoolController())
        except Exception:  # scipy or threadpoolctl missing or unusable: own kernel only
            _blas_cache = False
    return _blas_cache or None


def _x_dtype(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)


def _input(x: Any) -> Tuple[np.ndarray, tuple]:
    """x as a C-contiguous 2-D float32/float64 array, and its leading shape."""
    arr = _d.as_array(x, "x")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension (..., in_features), got a scalar")
    dtype = _x_dtype(arr)
    lead = arr.shape[:-1]
    arr2 = np.ascontiguousarray(arr.reshape(-1, arr.shape[-1]), dtype=dtype)
    return arr2, lead


def _matrix(a: Any, name: str, ndim: int, dtype: np.dtype) -> np.ndarray:
    arr, _ = _d.as_float(a, name, ndim, dtypes=(dtype,))
    return arr


def _vector(a: Any, name: str, n: int, dtype: np.dtype) -> Optional[np.ndarray]:
    if a is None:
        return None
    arr, _ = _d.as_float(a, name, 1, dtypes=(dtype,))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _scalar(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            return float(value)
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _in_features(x: np.ndarray, k: int, what: str) -> None:
    if x.shape[1] != k:
        raise ValueError(f"x has {x.shape[1]} input features (last dimension) but {what} expects {k}")


def _out(y: np.ndarray, lead: tuple) -> np.ndarray:
    return y.reshape(*lead, y.shape[-1])


# ---- CUDA arrays: straight to the CUDA kernels, results in the caller's framework ----------------


def _device_call(backend: Optional[str], *arrays: Any) -> bool:
    """True when this call goes to the CUDA path with the caller's device arrays."""
    if backend not in (None, "cuda"):
        return False
    return any(a is not None and _d._is_device_array(a) for a in arrays)


def _cuda_ops():
    """embkern._cuda_ops.lowrank: its wrappers validate (on the host) before any CUDA call."""
    import importlib

    return importlib.import_module("embkern._cuda_ops.lowrank")


def _device_rows(x: Any) -> Tuple[Any, tuple]:
    """A device x (..., in) as 2-D (M, in), and its leading shape."""
    shape = tuple(int(n) for n in getattr(x, "shape", ()))
    if not shape:
        raise ValueError("x must have at least one dimension (..., in_features), got a scalar")
    if len(shape) == 2:
        return x, shape[:-1]
    if not hasattr(x, "reshape"):
        raise ValueError(f"x must be 2-D for a CUDA array of type {type(x).__name__}, got shape {shape}")
    return x.reshape(-1, shape[-1]), shape[:-1]


def _device_out(y: Any, lead: tuple) -> Any:
    if len(lead) == 1:
        return y
    return y.reshape(*lead, y.shape[-1])


def _host_array(v: Any, name: str) -> Any:
    """A device array copied to the host (numpy); anything else unchanged."""
    if v is None or not _d._is_device_array(v):
        return v
    if hasattr(v, "get") and not hasattr(v, "cpu"):  # CuPy
        return v.get()
    if hasattr(v, "cpu"):  # torch
        return v.detach().cpu().numpy()
    try:
        return np.asarray(v)
    except Exception as exc:
        raise TypeError(f"{name}: cannot copy this CUDA array to the host ({exc})") from exc


def _host_sparse(sparse: Any, n: int, k: int) -> Any:
    """The sparse support in a host form _csr accepts (device forms are copied to the host once)."""
    if isinstance(sparse, tuple) and len(sparse) == 3:
        return tuple(_host_array(v, name) for v, name in zip(sparse, ("sparse rows", "sparse cols",
                                                                        "sparse values")))
    mod = type(sparse).__module__ or ""
    if mod.startswith("cupyx") and hasattr(sparse, "get"):
        return sparse.get()
    if mod.startswith("torch") and str(getattr(sparse, "layout", "torch.strided")) != "torch.strided":
        if tuple(sparse.shape) != (n, k):
            raise ValueError(f"sparse must have shape (out_features, in_features) = ({n}, {k}), "
                             f"got {tuple(sparse.shape)}")
        coo = sparse.detach().cpu().to_sparse_coo().coalesce()
        idx = coo.indices().numpy()
        return idx[0], idx[1], coo.values().numpy()
    return sparse


def _device_dtype(x: Any) -> np.dtype:
    """numpy dtype of a CUDA array: its __cuda_array_interface__ typestr, else its dtype
    (torch.float32 -> float32)."""
    try:
        cai = x.__cuda_array_interface__
    except Exception:  # absent, or torch refusing for tensors that require grad
        cai = None
    try:
        if isinstance(cai, dict) and "typestr" in cai:
            return np.dtype(cai["typestr"])
        dt = getattr(x, "dtype", None)
        if dt is not None:
            return np.dtype(str(dt).replace("torch.", "")) if "torch" in str(dt) else np.dtype(dt)
    except TypeError:
        pass
    raise TypeError(f"x must be float32 or float64, got {getattr(x, 'dtype', 'an unknown dtype')}")


def lora_linear(x: Any, weight: Any, lora_a: Any, lora_b: Any, *, scale: float = 1.0,
                bias: Any = None, backend: Optional[str] = None) -> np.ndarray:
    """A LoRA-adapted linear layer, unmerged: ``x @ weight.T + scale * (x @ lora_a.T) @ lora_b.T
    (+ bias)``, as PEFT's ``LoraLayer`` forward (``scale`` = lora_alpha / r, or / sqrt(r) for
    rsLoRA).

    ``weight`` (out, in), ``lora_a`` (r, in), ``lora_b`` (out, r), ``bias`` (out,) or None.
    Returns (..., out) in x's dtype. One fused pass: the base GEMM and the low-rank update share
    the packed x block, and the update is added while each output tile is in registers.
    """
    if _device_call(backend, x, weight, lora_a, lora_b, bias):
        s = _scalar(scale, "scale")
        x2, lead = _device_rows(x)
        return _device_out(_cuda_ops().lora_linear(x2, weight, lora_a, lora_b, s, bias), lead)
    x2, lead = _input(x)
    dt = x2.dtype
    w = _matrix(weight, "weight", 2, dt)
    a = _matrix(lora_a, "lora_a", 2, dt)
    b = _matrix(lora_b, "lora_b", 2, dt)
    n, k = w.shape
    _in_features(x2, k, f"weight of shape {w.shape}")
    if a.shape[1] != k:
        raise ValueError(f"lora_a must have shape (r, in_features={k}), got {a.shape}")
    if b.shape[0] != n:
        raise ValueError(f"lora_b must have shape (out_features={n}, r), got {b.shape}")
    if b.shape[1] != a.shape[0]:
        raise ValueError(f"ranks differ: lora_a has r={a.shape[0]} rows but lora_b has "
                         f"{b.shape[1]} columns")
    s = _scalar(scale, "scale")
    bv = _vector(bias, "bias", n, dt)
    chosen = _d.choose_backend(backend, x, weight)
    blas = _base_blas() if chosen == "cpu" and x2.shape[0] * n * k >= _BLAS_MIN_WORK else None
    if blas is not None and _d.core_available():
        sgemm, dgemm, controller = blas
        with controller.limit(limits=1, user_api="blas"):  # embkern's threads run the blocks
            y = _d._core.lowrank.lora_linear_blas(x2, w, a, b, s, bv, sgemm, dgemm)
        return _out(y, lead)
    y = _d.kernel("lowrank", "lora_linear", chosen, x, weight)(x2, w, a, b, s, bv)
    return _out(y, lead)


def lowrank_linear(x: Any, u: Any, v: Any, *, s: Any = None, bias: Any = None,
                   backend: Optional[str] = None) -> np.ndarray:
    """A factorized linear layer: ``((x @ v.T) * s) @ u.T (+ bias)``.

    ``v`` (r, in), ``u`` (out, r), ``s`` (r,) singular values or None (ones), ``bias`` (out,).
    SVD form ``W ~= u diag(s) v``. Returns (..., out) in x's dtype; useful FLOPs 2 M r (in + out).
    """
    if _device_call(backend, x, u, v, s, bias):
        x2, lead = _device_rows(x)
        return _device_out(_cuda_ops().lowrank_linear(x2, u, v, s, bias), lead)
    x2, lead = _input(x)
    dt = x2.dtype
    u_ = _matrix(u, "u", 2, dt)
    v_ = _matrix(v, "v", 2, dt)
    r, k = v_.shape
    _in_features(x2, k, f"v of shape {v_.shape}")
    if u_.shape[1] != r:
        raise ValueError(f"ranks differ: v has r={r} rows but u has {u_.shape[1]} columns")
    sv = _vector(s, "s", r, dt)
    bv = _vector(bias, "bias", u_.shape[0], dt)
    y = _d.kernel("lowrank", "lowrank_linear", backend, x, u)(x2, u_, v_, sv, bv)
    return _out(y, lead)


def _int_array(a: Any, name: str) -> np.ndarray:
    arr = _d.as_array(a, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _csr(sparse: Any, n: int, k: int, dt: np.dtype):
    """S (n, k) as canonical CSR: (indptr int64, indices int32 sorted and unique per row, values).
    Duplicates are summed and unsorted entries sorted, as scipy does."""
    if k > _INT32_MAX:
        raise ValueError(f"in_features={k} is too large for int32 column indices")
    if isinstance(sparse, tuple) and len(sparse) == 3:
        rows = _int_array(sparse[0], "sparse rows")
        cols = _int_array(sparse[1], "sparse cols")
        vals, _ = _d.as_float(sparse[2], "sparse values", 1, dtypes=(dt,))
        if not rows.shape == cols.shape == vals.shape:
            raise ValueError(f"sparse (rows, cols, values) must have equal lengths, got "
                             f"{rows.shape[0]}, {cols.shape[0]}, {vals.shape[0]}")
        if rows.size:
            if rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"sparse row indices must be in [0, {n}) (out_features), got "
                                 f"[{rows.min()}, {rows.max()}]")
            if cols.min() < 0 or cols.max() >= k:
                raise ValueError(f"sparse column indices must be in [0, {k}) (in_features), got "
                                 f"[{cols.min()}, {cols.max()}]")
        flat = rows.astype(np.int64) * k + cols.astype(np.int64)
        step = np.diff(flat)
        if step.size and not (step > 0).all():
            order = np.argsort(flat, kind="stable")
            flat = flat[order]
            vals = vals[order]
            first = np.ones(flat.size, dtype=bool)
            first[1:] = flat[1:] != flat[:-1]
            starts = np.flatnonzero(first)
            vals = np.add.reduceat(vals, starts) if vals.size else vals
            flat = flat[starts]
        r_sorted = flat // k
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r_sorted, minlength=n), out=indptr[1:])
        indices = (flat - r_sorted * k).astype(np.int32)
        return indptr, indices, np.ascontiguousarray(vals, dtype=dt)
    if hasattr(sparse, "tocsr") and hasattr(sparse, "shape"):
        if tuple(sparse.shape) != (n, k):
            raise ValueError(f"sparse must have shape (out_features, in_features) = ({n}, {k}), "
                             f"got {tuple(sparse.shape)}")
        csr = sparse.tocsr()
        if csr.dtype.kind not in "fiub":
            raise TypeError(f"sparse must have real values, got dtype {csr.dtype}")
        if csr.indices.size and (csr.indices.min() < 0 or csr.indices.max() >= k):
            raise ValueError(f"sparse column indices must be in [0, {k})")
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        return (np.ascontiguousarray(csr.indptr, dtype=np.int64),
                np.ascontiguousarray(csr.indices, dtype=np.int32),
                np.ascontiguousarray(csr.data, dtype=dt))
    raise TypeError("sparse must be a scipy sparse matrix or a (rows, cols, values) tuple, got "
                    f"{type(sparse).__name__}")


def sparse_lowrank_linear(x: Any, b: Any, a: Any, sparse: Any, *, bias: Any = None,
                          backend: Optional[str] = None) -> np.ndarray:
    """Sparse plus low-rank (SLTrain): ``x @ (b @ a + S).T (+ bias)`` without forming the dense
    weight.

    ``b`` (out, r), ``a`` (r, in) (fold SLTrain's scale into ``a``), ``sparse`` S (out, in) as a
    scipy sparse matrix (any format) or ``(rows, cols, values)``; from SLTrain's flat index buffer
    use ``(idx // in, idx % in, values)``. Duplicate entries are summed, as scipy does. Returns
    (..., out) in x's dtype. With CUDA arrays, ``sparse`` may also be a CuPy sparse matrix, a torch
    sparse tensor or a tuple of device arrays: it is canonicalised on the host (one copy there) and
    the CSR arrays copied to x's device on every call.
    """
    if _device_call(backend, x, b, a, bias):
        x2, lead = _device_rows(x)
        dt = _device_dtype(x2)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"x must be float32 or float64, got {dt}")
        n, k = int(b.shape[0]), int(x2.shape[1])
        indptr, indices, values = _csr(_host_sparse(sparse, n, k), n, k, dt)
        return _device_out(_cuda_ops().sparse_lowrank_linear(x2, b, a, indptr, indices, values, bias), lead)
    x2, lead = _input(x)
    dt = x2.dtype
    b_ = _matrix(b, "b", 2, dt)
    a_ = _matrix(a, "a", 2, dt)
    r, k = a_.shape
    _in_features(x2, k, f"a of shape {a_.shape}")
    if b_.shape[1] != r:
        raise ValueError(f"ranks differ: a has r={r} rows but b has {b_.shape[1]} columns")
    n = b_.shape[0]
    indptr, indices, values = _csr(sparse, n, k, dt)
    bv = _vector(bias, "bias", n, dt)
    y = _d.kernel("lowrank", "sparse_lowrank_linear", backend, x, b)(
        x2, b_, a_, indptr, indices, values, bv)
    return _out(y, lead)


def multi_lora_linear(x: Any, weight: Any, lora_a: Any, lora_b: Any, adapter_ids: Any, *,
                      scales: Any = None, bias: Any = None,
                      backend: Optional[str] = None) -> np.ndarray:
    """Many LoRA adapters in one batch (Punica's BGMV/SGMV semantics):
    ``y[i] = x[i] @ weight.T + scales[id] * (x[i] @ lora_a[id].T) @ lora_b[id].T (+ bias)``
    with ``id = adapter_ids[i]``; ``id == -1`` means no adapter for that row.

    ``lora_a`` (n_adapters, r, in), ``lora_b`` (n_adapters, out, r), ``adapter_ids`` int with
    x's leading shape (values in [-1, n_adapters)), ``scales`` (n_adapters,) or a scalar (default
    1). ``weight=None`` returns only the adapters' delta (plus ``bias`` if given), to add to a base
    output computed elsewhere. Rows are grouped by adapter (segments), so each adapter's factors
    are read once per call.
    """
    if _device_call(backend, x, weight, lora_a, lora_b, adapter_ids, scales, bias):
        x2, lead = _device_rows(x)
        ids = adapter_ids
        ishape = tuple(int(v) for v in getattr(ids, "shape", ()))
        if ishape != lead and not (len(ishape) == 1 and ishape[0] == x2.shape[0]):
            raise ValueError(f"adapter_ids must have x's leading shape {lead}, got {ishape}")
        if len(ishape) != 1:
            ids = ids.reshape(-1)
        svec, svalue = None, 1.0
        if scales is not None:
            if _d._is_device_array(scales):
                svec = scales
            elif np.ndim(scales) == 0:
                svalue = _scalar(scales, "scales")
            else:
                raise ValueError("scales must be a scalar or a CUDA array of shape (n_adapters,) when x is "
                                 "a CUDA array")
        y = _cuda_ops().multi_lora_linear(x2, weight, lora_a, lora_b, ids, svec, bias, scale_value=svalue)
        return _device_out(y, lead)
    x2, lead = _input(x)
    dt = x2.dtype
    a = _matrix(lora_a, "lora_a", 3, dt)
    b = _matrix(lora_b, "lora_b", 3, dt)
    nad, r, k = a.shape
    _in_features(x2, k, f"lora_a of shape {a.shape}")
    if b.shape[0] != nad:
        raise ValueError(f"lora_a has {nad} adapters but lora_b has {b.shape[0]}")
    if b.shape[2] != r:
        raise ValueError(f"ranks differ: lora_a has r={r} but lora_b has {b.shape[2]} columns")
    n = b.shape[1]
    w = None
    if weight is not None:
        w = _matrix(weight, "weight", 2, dt)
        if w.shape != (n, k):
            raise ValueError(f"weight must have shape (out_features={n}, in_features={k}), "
                             f"got {w.shape}")
    ids_arr = _d.as_array(adapter_ids, "adapter_ids")
    if ids_arr.dtype.kind not in "iu":
        raise TypeError(f"adapter_ids must be an integer array, got dtype {ids_arr.dtype}")
    if ids_arr.shape != lead and not (ids_arr.ndim == 1 and ids_arr.size == x2.shape[0]):
        raise ValueError(f"adapter_ids must have x's leading shape {lead}, got {ids_arr.shape}")
    ids = np.ascontiguousarray(ids_arr.reshape(-1), dtype=np.int64)
    if ids.size and (ids.min() < -1 or ids.max() >= nad):
        raise ValueError(f"adapter_ids must be in [-1, {nad}) (-1: no adapter), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    if scales is None:
        sv = np.ones(nad, dtype=dt)
    elif np.ndim(scales) == 0:
        sv = np.full(nad, _scalar(scales, "scales"), dtype=dt)
    else:
        sv = _vector(scales, "scales", nad, dt)
    bv = _vector(bias, "bias", n, dt)
    y = _d.kernel("lowrank", "multi_lora_linear", backend, x, lora_a)(x2, w, a, b, ids, sv, bv)
    return _out(y, lead)
