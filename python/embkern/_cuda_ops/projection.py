"""Projection kernels on the CUDA backend, with the signatures of ``embkern._core.projection``.

``csr_dense(x, indptr, indices, values, k)``, ``csr_sparse(xptr, xind, xval, n, cptr, cind, cval,
k)``, ``srp_sparse(xptr, xind, xval, n, d, seed, k, mode, thr53, cdf, scale)``,
``srp_columns(seed, d, k, mode, thr53, cdf)`` and ``fastrp(indptr, indices, weights, n, dim,
node_scale, seed, iteration_weights, self_influence)``: the same numbers as the CPU backend, bit for
bit (csrc/cuda/projection/projection_blocks.hpp says how).

Array operands are numpy arrays (copied to the device; numpy results) or CUDA arrays (results in
the caller's framework, on its stream); all in one place. ``cdf`` and ``iteration_weights`` are small
host tables; ``node_scale`` may stay on the host when the graph is on the device (it is uploaded).
Dtypes (TypeError) and shapes (ValueError) are checked on the host before any CUDA call, naming the
argument. CSR contents (indptr bounds and order, column ids) are checked with numpy for host arrays
and, for device arrays, by a device pass when ``validate`` is true (the default; it waits for the
stream to read the verdict). Keyword-only launch choices (``chunk``, ``max_warps``, ``threads``,
``scratch_bytes``, ``stage``) are for tests.

The helpers at the end (``dense_input``, ``csr_input``, ``upload``, ...) are what
``embkern.projection`` uses to route CuPy / torch / ``__cuda_array_interface__`` inputs here.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _cuda_backend as cb
from .. import _dispatch as _d
from .._cuda_backend import Call, CudaArray, operands, require_2d, require_dtype

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_IDS = 2**31 - 1  # column and node ids are int32


# ---------------------------------------------------------------------------------------------
# argument checks (host only)


def _size(value, name: str, low: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _u64(value, name: str) -> int:
    value = _size(value, name)
    if value >= 2**64:
        raise ValueError(f"{name} must be < 2**64, got {value}")
    return value


def _require_float(op) -> None:
    if op.dtype not in _FLOATS:
        raise TypeError(f"{op.name} must be float32 or float64, got {op.dtype}")


def _require_1d(op) -> None:
    if len(op.shape) != 1:
        raise ValueError(f"{op.name} must have 1 dimension, got {len(op.shape)}")


def _require_same_dtype(op, lead) -> None:
    if op.dtype != lead.dtype:
        raise TypeError(f"{op.name} must be {lead.dtype} (the dtype of {lead.name}), got {op.dtype}")


def _csr_shapes(ptr, ind, val, rows: int) -> None:
    """indptr int64 [rows + 1], indices int32 [nnz], values [nnz] (val may be None)."""
    require_dtype(ptr, np.int64, "int64")
    _require_1d(ptr)
    if ptr.shape[0] != rows + 1:
        raise ValueError(f"{ptr.name} must have rows + 1 = {rows + 1} entries, got {ptr.shape[0]}")
    require_dtype(ind, np.int32, "int32")
    _require_1d(ind)
    if val is not None:
        _require_1d(val)
        if val.shape[0] != ind.shape[0]:
            raise ValueError(f"{val.name} and {ind.name} must have equal length, got {val.shape[0]} and "
                             f"{ind.shape[0]}")


def _host_csr_contents(ptr, ind, rows: int, limit, name: str) -> None:
    """The CPU bindings' checks (csrc/bindings/projection_bindings.cpp) on host operands."""
    p, i = ptr.host, ind.host
    if p[0] < 0 or p[rows] > i.shape[0]:
        raise ValueError(f"{name}: indptr out of range")
    if rows and bool(np.any(p[1:] < p[:-1])):
        raise ValueError(f"{name}: indptr must be non-decreasing")
    if limit is not None and i.shape[0] and (int(i.min()) < 0 or int(i.max()) >= limit):
        raise ValueError(f"{name}: column index out of range")


def _generator_args(seed, d, k, mode, thr53, cdf):
    seed = _u64(seed, "seed")
    d = _size(d, "d", 1)
    k = _size(k, "k", 1)
    if k > _MAX_IDS:
        raise ValueError(f"k must be < 2**31, got {k}")
    mode = _size(mode, "mode")
    if mode not in (0, 1):
        raise ValueError(f"mode must be 0 or 1, got {mode}")
    thr53 = _u64(thr53, "thr53")
    if hasattr(cdf, "__cuda_array_interface__"):
        raise TypeError("cdf must be a host (numpy) array")
    cdf = np.ascontiguousarray(cdf, dtype=np.float64)
    if cdf.ndim != 1:
        raise ValueError(f"cdf must have 1 dimension, got {cdf.ndim}")
    if mode == 1:
        if not 1 <= cdf.shape[0] <= k + 1:
            raise ValueError("cdf must have 1 to k + 1 entries")
        if not cdf[-1] > 1.0:
            raise ValueError("the last cdf entry must exceed 1")
    return seed, d, k, mode, thr53, cdf


# ---------------------------------------------------------------------------------------------
# kernels (the CPU backend's signatures)


def csr_dense(x, indptr, indices, values, k, *, validate=True, chunk=0, max_warps=0):
    """(n, k) = x (n, d) @ C^T for C = (indptr, indices, values), k rows; x's float dtype."""
    k = _size(k, "k")
    ox, op, oi, ov = operands((x, "x"), (indptr, "indptr"), (indices, "indices"), (values, "values"))
    _require_float(ox)
    require_2d(ox)
    _require_same_dtype(ov, ox)
    _csr_shapes(op, oi, ov, k)
    n, d = ox.shape
    if d > _MAX_IDS:
        raise ValueError(f"x must have fewer than 2**31 columns, got {d}")
    if not ox.on_device and validate:
        _host_csr_contents(op, oi, k, d, "components")
    call = Call([ox, op, oi, ov])
    out, out_ptr = call.empty((n, k), ox.dtype)
    fn = call.mod.projection.csr_dense_f32 if ox.dtype == np.float32 else call.mod.projection.csr_dense_f64
    fn(ox.ptr, n, d, op.ptr, oi.ptr, ov.ptr, oi.shape[0], k, out_ptr, bool(validate and ox.on_device),
       call.stream, call.device, int(chunk), int(max_warps))
    return call.result(out)


def csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k, *, validate=True, threads=0):
    """(n, k): CSR rows (xptr, xind, xval) times Ct = (cptr, cind, cval) (d x k, CSR)."""
    n = _size(n, "n")
    k = _size(k, "k")
    ops = operands((xptr, "xptr"), (xind, "xind"), (xval, "xval"), (cptr, "cptr"), (cind, "cind"),
                   (cval, "cval"))
    oxp, oxi, oxv, ocp, oci, ocv = ops
    _require_float(oxv)
    _require_same_dtype(ocv, oxv)
    _csr_shapes(oxp, oxi, oxv, n)
    require_dtype(ocp, np.int64, "int64")
    _require_1d(ocp)
    if ocp.shape[0] < 1:
        raise ValueError("cptr must have d + 1 >= 1 entries")
    d = ocp.shape[0] - 1
    _csr_shapes(ocp, oci, ocv, d)
    if not oxp.on_device and validate:
        _host_csr_contents(oxp, oxi, n, d, "x")
        _host_csr_contents(ocp, oci, d, k, "components")
    call = Call(ops)
    out, out_ptr = call.empty((n, k), oxv.dtype)
    fn = call.mod.projection.csr_sparse_f32 if oxv.dtype == np.float32 else call.mod.projection.csr_sparse_f64
    fn(oxp.ptr, oxi.ptr, oxv.ptr, n, oxi.shape[0], ocp.ptr, oci.ptr, ocv.ptr, d, oci.shape[0], k, out_ptr,
       bool(validate and oxp.on_device), call.stream, call.device, int(threads))
    return call.result(out)


def srp_sparse(xptr, xind, xval, n, d, seed, k, mode, thr53, cdf, scale, *, validate=True, threads=0,
               scratch_bytes=0):
    """(n, k): CSR rows times R^T, R generated from (seed, k, mode, thr53, cdf), values +-scale."""
    n = _size(n, "n")
    seed, d, k, mode, thr53, cdf = _generator_args(seed, d, k, mode, thr53, cdf)
    oxp, oxi, oxv = operands((xptr, "xptr"), (xind, "xind"), (xval, "xval"))
    _require_float(oxv)
    _csr_shapes(oxp, oxi, oxv, n)
    if not oxp.on_device and validate:
        _host_csr_contents(oxp, oxi, n, None, "x")
    call = Call([oxp, oxi, oxv])
    out, out_ptr = call.empty((n, k), oxv.dtype)
    fn = call.mod.projection.srp_sparse_f32 if oxv.dtype == np.float32 else call.mod.projection.srp_sparse_f64
    fn(oxp.ptr, oxi.ptr, oxv.ptr, n, oxi.shape[0], seed, k, mode, thr53, cdf, float(scale), out_ptr,
       bool(validate and oxp.on_device), call.stream, call.device, int(threads), int(scratch_bytes))
    return call.result(out)


def srp_columns(seed, d, k, mode, thr53, cdf, *, threads=0):
    """R^T as CSR over the d features, generated on the GPU: (indptr int64, rows int32, neg uint8),
    numpy arrays (the matrix is built once per estimator and cached on the host)."""
    seed, d, k, mode, thr53, cdf = _generator_args(seed, d, k, mode, thr53, cdf)
    call = Call([])
    ptr_out, ptr_ptr = call.empty((d + 1,), np.int64)
    call.mod.projection.srp_column_counts(seed, d, k, mode, thr53, cdf, ptr_ptr, call.stream, call.device,
                                          int(threads))
    indptr = call.result(ptr_out)
    nnz = int(indptr[-1])
    idx_out, idx_ptr = call.empty((nnz,), np.int32)
    neg_out, neg_ptr = call.empty((nnz,), np.uint8)
    call.mod.projection.srp_column_fill(seed, d, k, mode, thr53, cdf, ptr_ptr, idx_ptr, neg_ptr, call.stream,
                                        call.device, int(threads))
    return indptr, call.result(idx_out), call.result(neg_out)


def fastrp(indptr, indices, weights, n, dim, node_scale, seed, iteration_weights, self_influence, *,
           validate=True, threads=0, stage=0):
    """float32 (n, dim): FastRP over the CSR adjacency (weights float32 or None; node_scale float64,
    n or 0 entries)."""
    n = _size(n, "n")
    dim = _size(dim, "dim", 1)
    seed = _u64(seed, "seed")
    if n > _MAX_IDS:
        raise ValueError(f"at most 2**31 - 1 nodes are supported, got {n}")
    pairs = [(indptr, "indptr"), (indices, "indices")]
    if weights is not None:
        pairs.append((weights, "weights"))
    ops = operands(*pairs)
    op, oi = ops[0], ops[1]
    ow = ops[2] if weights is not None else None
    if ow is not None:
        require_dtype(ow, np.float32, "float32")
    _csr_shapes(op, oi, ow, n)
    iw = np.asarray(iteration_weights, dtype=np.float32)
    if iw.ndim != 1:
        raise ValueError(f"iteration_weights must have 1 dimension, got {iw.ndim}")
    si = float(np.float32(self_influence))
    ns_op = None
    if node_scale is not None:
        if op.on_device and not _d._is_device_array(node_scale):
            ns_host = np.ascontiguousarray(node_scale, dtype=np.float64)
            node_scale = upload(ns_host, op) if ns_host.shape[0] else None
        if node_scale is not None:
            (ns_op,) = operands((node_scale, "node_scale"))
            if op.on_device != ns_op.on_device:
                raise ValueError("node_scale must live where the adjacency does")
            require_dtype(ns_op, np.float64, "float64")
            _require_1d(ns_op)
            if ns_op.shape[0] not in (0, n):
                raise ValueError(f"node_scale must have n = {n} (or 0: all ones) entries, got {ns_op.shape[0]}")
            if ns_op.shape[0] == 0:
                ns_op = None
    if not op.on_device and validate:
        _host_csr_contents(op, oi, n, n, "adjacency")
    call = Call(ops + ([ns_op] if ns_op is not None else []))
    out, out_ptr = call.empty((n, dim), np.float32)
    call.mod.projection.fastrp(op.ptr, oi.ptr, ow.ptr if ow is not None else 0, n, oi.shape[0], dim,
                               ns_op.ptr if ns_op is not None else 0, seed, [float(v) for v in iw], si, out_ptr,
                               bool(validate and op.on_device), call.stream, call.device, int(threads), int(stage))
    return call.result(out)


# ---------------------------------------------------------------------------------------------
# helpers for embkern.projection's routing of device arrays


def framework(a):
    """The array module of a device array: cupy or torch (a generic __cuda_array_interface__
    producer is wrapped by whichever is installed), with the array."""
    fw = cb._framework(a)
    if fw == "cupy":
        import cupy

        return cupy, a
    if fw == "torch":
        import torch

        return torch, a
    try:
        import cupy

        return cupy, cupy.asarray(a)
    except ImportError:
        pass
    try:
        import torch

        return torch, torch.as_tensor(a, device="cuda")
    except ImportError:
        raise TypeError("reading this CUDA array needs CuPy or PyTorch") from None


def dtype_of(a, name: str) -> np.dtype:
    dt = getattr(a, "dtype", None)
    if isinstance(dt, np.dtype):
        return dt
    if dt is not None and (type(dt).__module__ or "").startswith("torch"):
        try:
            return np.dtype(str(dt).rsplit(".", 1)[-1])
        except TypeError:
            raise TypeError(f"{name} has unsupported dtype {dt}") from None
    return cb._operand(a, name).dtype


def astype(a, dtype, name: str):
    """a in `dtype` (a copy by a's own framework when it differs)."""
    dtype = np.dtype(dtype)
    if dtype_of(a, name) == dtype:
        return a
    mod, arr = framework(a)
    if mod.__name__ == "torch":
        return arr.to(getattr(mod, dtype.name))
    return arr.astype(dtype)


def upload(arr, like):
    """A copy of host array `arr` on the device of operand `like`, in like's framework."""
    arr = np.ascontiguousarray(arr)
    if like.kind == "torch":
        import torch

        return torch.as_tensor(arr, device=like.obj.device)
    if like.kind == "cupy":
        import cupy

        with cupy.cuda.Device(like.device):
            return cupy.asarray(arr)
    mod = cb._module()
    dev = like.device if like.device is not None else mod.pointer_device(like.ptr)
    out = CudaArray(arr.shape, arr.dtype, dev if dev >= 0 else mod.get_device(), like.stream or 0)
    out._buf.copy_from_host(arr, out._stream)
    return out


def lead(a, name: str):
    """The operand description of a device array (where results of a call with it will live)."""
    (op,) = operands((a, name))
    return op


def to_host(a, name: str) -> np.ndarray:
    """A numpy copy of a device array."""
    mod, arr = framework(a)
    if mod.__name__ == "torch":
        return arr.detach().cpu().numpy()
    return mod.asnumpy(arr)


def device_csr(x):
    """(indptr, indices, data, shape) of a CSR matrix on a CUDA device (cupyx.scipy.sparse, or a
    torch sparse CSR tensor), or None for anything else."""
    mod = type(x).__module__ or ""
    if mod.startswith("cupyx.scipy.sparse"):
        m = x if getattr(x, "format", None) == "csr" else x.tocsr()
        return m.indptr, m.indices, m.data, tuple(int(s) for s in m.shape)
    if mod == "torch" or mod.startswith("torch."):
        layout = str(getattr(x, "layout", ""))
        if layout.endswith("sparse_csr") and getattr(x, "is_cuda", False):
            return x.crow_indices(), x.col_indices(), x.values(), tuple(int(s) for s in x.shape)
    return None


def _float_like(a, name: str):
    """float32 / float64 kept, other numeric device arrays converted to float64 (the CPU rule)."""
    dt = dtype_of(a, name)
    if dt.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {dt}")
    if dt.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {dt}")
    return a if dt in _FLOATS else astype(a, np.float64, name)


def dense_input(x, name: str):
    """A dense 2-D device array with a float dtype; (array, (n, d), dtype). NaN/inf are not
    scanned for on the device (that would cost another full read of x): they propagate."""
    x = _float_like(x, name)
    op = lead(x, name)
    if len(op.shape) != 2:
        raise ValueError(f"{name} must be 2-D, got shape {op.shape}")
    return x, tuple(op.shape), op.dtype


def csr_input(parts, name: str):
    """Device CSR parts (indptr, indices, data, shape) in the kernels' dtypes:
    (indptr int64, indices int32, data float, (n, d))."""
    indptr, indices, data, shape = parts
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D, got shape {shape}")
    if shape[1] > _MAX_IDS:
        raise ValueError(f"{name} has {shape[1]} columns; at most 2**31 - 1 are supported")
    for a, what in ((indptr, "indptr"), (indices, "indices")):
        if dtype_of(a, f"{name} {what}").kind not in "iu":
            raise TypeError(f"{name} {what} must be integers, got dtype {dtype_of(a, name)}")
    data = _float_like(data, f"{name} data")
    return (astype(indptr, np.int64, f"{name} indptr"), astype(indices, np.int32, f"{name} indices"), data,
            (int(shape[0]), int(shape[1])))
