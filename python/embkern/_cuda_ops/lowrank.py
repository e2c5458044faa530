"""Low-rank kernels on the CUDA backend, with the signatures of ``embkern._core.lowrank``.

``lora_linear(x, w, a, b, scale, bias)``, ``lowrank_linear(x, u, v, s, bias)``,
``sparse_lowrank_linear(x, b, a, indptr, indices, values, bias)`` and
``multi_lora_linear(x, w, a, b, ids, s, bias)``: x is (M, K) float32 or float64 and every other
float array has x's dtype (no casts on the device: a mismatch is a TypeError naming the argument),
optional arguments may be None, the result is (M, N) of x's dtype in the caller's framework (numpy
in, numpy out). ``lora_linear_blas`` is a CPU-only variant and is not defined here.

Extras beyond the CPU signatures: ``multi_lora_linear(..., s=None, scale_value=1.0)`` scales every
adapter by ``scale_value`` when ``s`` is None; adapter ids may be int32 or int64; ``**launch``
(tests only) forwards shrink_tile / main_tile / shrink_splits / main_splits to the launcher.

Checked on the host before any CUDA call: dtypes, shapes, and, for host (numpy) arrays, the
contents of the CSR support and of the adapter ids. Contents of device arrays are not read: the
kernels never read outside the operands whatever they hold, adapter ids outside [0, n_adapters)
act as -1 (no adapter) and out-of-range or unsorted CSR entries are skipped.
A host CSR support (numpy indptr / indices / values) with device operands is copied to x's device.
"""

from __future__ import annotations

import numpy as np

from .._cuda_backend import Call, operands, require_2d, require_dtype

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _suffix(dt) -> str:
    return "_f64" if dt == np.float64 else "_f32"


def _float_x(op) -> np.dtype:
    if op.dtype not in _FLOATS:
        raise TypeError(f"{op.name} must be float32 or float64, got {op.dtype}")
    require_2d(op)
    return op.dtype


def _like_x(ops, dt) -> None:
    for op in ops:
        if op is not None:
            require_dtype(op, dt, f"{dt.name} (the dtype of x)")


def _shape(op, want) -> None:
    if op is not None and tuple(op.shape) != tuple(want):
        want_s = "(" + ", ".join(str(n) for n in want) + ("," if len(want) == 1 else "") + ")"
        raise ValueError(f"{op.name} must have shape {want_s}, got {tuple(op.shape)}")


def _ndim(op, nd: int) -> None:
    if len(op.shape) != nd:
        raise ValueError(f"{op.name} must have {nd} dimensions, got {len(op.shape)}")


def _described(*pairs):
    """operands() of the (object, name) pairs whose object is not None; None kept in place."""
    present = [(obj, name) for obj, name in pairs if obj is not None]
    ops = iter(operands(*present))
    return [next(ops) if obj is not None else None for obj, _ in pairs]


def _ptr(op) -> int:
    return 0 if op is None else op.ptr


def _call_ops(ops):
    return Call([op for op in ops if op is not None])


def lora_linear(x, w, a, b, scale, bias, **launch):
    """(M, N): x w^T + scale (x a^T) b^T (+ bias); w (N, K), a (r, K), b (N, r), bias (N,) or None."""
    ops = _described((x, "x"), (w, "weight"), (a, "lora_a"), (b, "lora_b"), (bias, "bias"))
    ox, ow, oa, ob, obias = ops
    dt = _float_x(ox)
    _like_x(ops[1:], dt)
    m, k = ox.shape
    require_2d(ow)
    n = ow.shape[0]
    _shape(ow, (n, k))
    require_2d(oa)
    r = oa.shape[0]
    _shape(oa, (r, k))
    _shape(ob, (n, r))
    _shape(obias, (n,))
    scale = float(scale)
    call = _call_ops(ops)
    y, y_ptr = call.empty((m, n), dt)
    if m and n:
        getattr(call.mod.lowrank, "lora_linear" + _suffix(dt))(
            ox.ptr, m, k, ow.ptr, n, oa.ptr, r, ob.ptr, scale, _ptr(obias), y_ptr, call.stream, call.device,
            **launch)
    return call.result(y)


def lowrank_linear(x, u, v, s, bias, **launch):
    """(M, N): ((x v^T) * s) u^T (+ bias); u (N, r), v (r, K), s (r,) or None, bias (N,) or None."""
    ops = _described((x, "x"), (u, "u"), (v, "v"), (s, "s"), (bias, "bias"))
    ox, ou, ov, os_, obias = ops
    dt = _float_x(ox)
    _like_x(ops[1:], dt)
    m, k = ox.shape
    require_2d(ov)
    r = ov.shape[0]
    _shape(ov, (r, k))
    require_2d(ou)
    n = ou.shape[0]
    _shape(ou, (n, r))
    _shape(os_, (r,))
    _shape(obias, (n,))
    call = _call_ops(ops)
    y, y_ptr = call.empty((m, n), dt)
    if m and n:
        getattr(call.mod.lowrank, "lowrank_linear" + _suffix(dt))(
            ox.ptr, m, k, ou.ptr, n, ov.ptr, r, _ptr(os_), _ptr(obias), y_ptr, call.stream, call.device, **launch)
    return call.result(y)


def check_csr_host(indptr: np.ndarray, indices: np.ndarray, n: int, k: int) -> None:
    """The CPU backend's CSR rules, on host arrays: indptr starts at 0, never decreases and ends at
    len(indices); indices sorted, unique and in [0, k) within each row."""
    if indptr[0] != 0:
        raise ValueError("indptr must start at 0")
    counts = np.diff(indptr)
    if counts.size and counts.min() < 0:
        raise ValueError("indptr must be non-decreasing")
    if indptr[-1] != indices.shape[0]:
        raise ValueError(f"indptr[-1] ({int(indptr[-1])}) must equal the number of indices ({indices.shape[0]})")
    if indices.size:
        if indices.min() < 0 or indices.max() >= k:
            raise ValueError(f"indices must be in [0, in_features={k})")
        rows = np.repeat(np.arange(n), counts)
        same_row = rows[1:] == rows[:-1]
        if np.any(np.diff(indices.astype(np.int64))[same_row] <= 0):
            raise ValueError("indices must be sorted and unique within each row")


def _to_device(op_x, arr: np.ndarray, name: str):
    """A copy of host array `arr` on x's device, in x's framework (ordered on x's stream)."""
    arr = np.ascontiguousarray(arr)
    call = Call([op_x])
    out, _ = call.empty(arr.shape, arr.dtype)
    if op_x.kind == "torch":
        import torch

        out.copy_(torch.from_numpy(arr))
    elif op_x.kind == "cupy":
        out.set(arr)
    else:
        out._buf.copy_from_host(arr, call.stream)
    return out


def sparse_lowrank_linear(x, b, a, indptr, indices, values, bias, **launch):
    """(M, N): x (b a + S)^T (+ bias); b (N, r), a (r, K), S (N, K) as CSR: indptr (N + 1,) int64,
    indices (nnz,) int32 sorted and unique per row, values (nnz,) of x's dtype."""
    ops = _described((x, "x"), (b, "b"), (a, "a"), (bias, "bias"))
    ox, ob, oa, obias = ops
    dt = _float_x(ox)
    _like_x(ops[1:], dt)
    m, k = ox.shape
    require_2d(oa)
    r = oa.shape[0]
    _shape(oa, (r, k))
    require_2d(ob)
    n = ob.shape[0]
    _shape(ob, (n, r))
    _shape(obias, (n,))
    host_csr = all(isinstance(v, np.ndarray) for v in (indptr, indices, values))
    if host_csr:
        if indptr.dtype != np.int64:
            raise TypeError(f"indptr must be int64, got {indptr.dtype}")
        if indices.dtype != np.int32:
            raise TypeError(f"indices must be int32, got {indices.dtype}")
        if values.dtype != dt:
            raise TypeError(f"values must be {dt.name} (the dtype of x), got {values.dtype}")
        if indptr.shape != (n + 1,):
            raise ValueError(f"indptr must have shape ({n + 1},), got {indptr.shape}")
        if indices.ndim != 1 or values.shape != indices.shape:
            raise ValueError(f"indices and values must be 1-D of equal length, got {indices.shape} and {values.shape}")
        check_csr_host(indptr, indices, n, k)
        if ox.on_device:
            indptr = _to_device(ox, indptr, "indptr")
            indices = _to_device(ox, indices, "indices")
            values = _to_device(ox, values, "values")
    oip, oix, ov = operands((indptr, "indptr"), (indices, "indices"), (values, "values"))
    require_dtype(oip, np.int64, "int64")
    require_dtype(oix, np.int32, "int32")
    require_dtype(ov, dt, f"{dt.name} (the dtype of x)")
    _shape(oip, (n + 1,))
    _ndim(oix, 1)
    _shape(ov, oix.shape)
    if ox.on_device != oip.on_device:
        raise ValueError("the CSR support must live where x does (or be host numpy arrays)")
    nnz = oix.shape[0]
    call = Call([op for op in (ox, ob, oa, obias, oip, oix, ov) if op is not None])
    y, y_ptr = call.empty((m, n), dt)
    if m and n:
        getattr(call.mod.lowrank, "sparse_lowrank_linear" + _suffix(dt))(
            ox.ptr, m, k, ob.ptr, n, oa.ptr, r, oip.ptr, oix.ptr, ov.ptr, nnz, _ptr(obias), y_ptr, call.stream,
            call.device, **launch)
    return call.result(y)


def multi_lora_linear(x, w, a, b, ids, s, bias, scale_value=1.0, **launch):
    """(M, N): per row i, (x[i] w^T if w) + s[q] (x[i] a[q]^T) b[q]^T (+ bias) with q = ids[i];
    rows with q == -1 get no delta. a (n, r, K), b (n, N, r), ids (M,) int64/int32, s (n,) or None
    (then every adapter is scaled by scale_value), w (N, K) or None, bias (N,) or None."""
    ops = _described((x, "x"), (w, "weight"), (a, "lora_a"), (b, "lora_b"), (ids, "adapter_ids"), (s, "scales"),
                     (bias, "bias"))
    ox, ow, oa, ob, oids, os_, obias = ops
    dt = _float_x(ox)
    _like_x((ow, oa, ob, os_, obias), dt)
    m, k = ox.shape
    _ndim(oa, 3)
    nad, r = oa.shape[0], oa.shape[1]
    _shape(oa, (nad, r, k))
    _ndim(ob, 3)
    n = ob.shape[1]
    _shape(ob, (nad, n, r))
    _shape(ow, (n, k))
    if oids.dtype not in (np.dtype(np.int64), np.dtype(np.int32)):
        raise TypeError(f"adapter_ids must be int64 or int32, got {oids.dtype}")
    _shape(oids, (m,))
    _shape(os_, (nad,))
    _shape(obias, (n,))
    if not oids.on_device and oids.host.size and (oids.host.min() < -1 or oids.host.max() >= nad):
        raise ValueError(f"adapter_ids must be in [-1, {nad}) (-1: no adapter), got values in "
                         f"[{oids.host.min()}, {oids.host.max()}]")
    call = _call_ops(ops)
    y, y_ptr = call.empty((m, n), dt)
    if m and n:
        getattr(call.mod.lowrank, "multi_lora_linear" + _suffix(dt))(
            ox.ptr, m, k, _ptr(ow), n, oa.ptr, nad, r, ob.ptr, oids.ptr, oids.dtype.itemsize * 8, _ptr(os_),
            float(scale_value), _ptr(obias), y_ptr, call.stream, call.device, **launch)
    return call.result(y)
