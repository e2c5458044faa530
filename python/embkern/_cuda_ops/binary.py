"""Binary-code kernels on the CUDA backend, with the signatures of ``embkern._core.binary``.

``pack_signs_f32(x, threshold, little)``, ``pack_signs_f64(x, threshold, little)``,
``hamming_distance(a, b)``, ``hamming_topk(q, db, k)``, ``hamming_range(q, db, radius)``,
``asymmetric_scores(q, codes, little)``, ``multibit_scores(q, db, dim, w)`` and
``multibit_topk(q, db, k, dim, w)``. Results equal the CPU backend's exactly (integers, indices,
and the float32 scores, which the kernels compute in the CPU's operation order).
"""

from __future__ import annotations

import numbers

import numpy as np

from .._cuda_backend import Call, operands, require_2d, require_codes, require_dtype

def _pack_signs(x, threshold, little, dtype, fn_name):
    (op,) = operands((x, "x"))
    require_dtype(op, dtype, np.dtype(dtype).name)
    require_2d(op)
    n, d = op.shape
    call = Call([op])
    out, out_ptr = call.empty((n, (d + 7) // 8), np.uint8)
    getattr(call.mod.binary, fn_name)(op.ptr, n, d, threshold, bool(little), out_ptr, call.stream, call.device)
    return call.result(out)


def pack_signs_f32(x, threshold, little):
    """uint8 (n, ceil(d/8)): bits of float32 x (n, d) > threshold, little or big bit order."""
    return _pack_signs(x, float(threshold), little, np.float32, "pack_signs_f32")


def pack_signs_f64(x, threshold, little):
    """As pack_signs_f32 for float64 x (compared in float64)."""
    return _pack_signs(x, float(threshold), little, np.float64, "pack_signs_f64")


def hamming_distance(a, b):
    """int32 (na, nb): all-pairs Hamming distances of uint8 codes a (na, cs) and b (nb, cs)."""
    oa, ob = operands((a, "a"), (b, "b"))
    require_codes(oa, ob)
    na, nb, cs = oa.shape[0], ob.shape[0], oa.shape[1]
    call = Call([oa, ob])
    out, out_ptr = call.empty((na, nb), np.int32)
    call.mod.binary.hamming_distance(oa.ptr, na, ob.ptr, nb, cs, out_ptr, call.stream, call.device)
    return call.result(out)


def hamming_topk(q, db, k, **launch):
    """(int32 (nq, k), int64 (nq, k)): the k nearest codes, ascending (distance, index), exact.

    ``launch`` (tests only) forwards path/partitions/threads/items_per_thread/hist_bins/batch_bytes
    to the kernel launcher.
    """
    oq, odb = operands((q, "queries"), (db, "database"))
    require_codes(oq, odb)
    nq, nb, cs = oq.shape[0], odb.shape[0], oq.shape[1]
    k = int(k)
    if not 1 <= k <= nb:
        raise ValueError(f"k must be in [1, {nb}], got {k}")
    call = Call([oq, odb])
    out_d, d_ptr = call.empty((nq, k), np.int32)
    out_i, i_ptr = call.empty((nq, k), np.int64)
    call.mod.binary.hamming_topk(oq.ptr, nq, odb.ptr, nb, cs, k, d_ptr, i_ptr, call.stream, call.device,
                          **launch)
    return call.result(out_d), call.result(out_i)


def _int_arg(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def hamming_range(q, db, radius, **launch):
    """(lims int64 (nq+1,), distances int32, indices int64): every code within ``radius``
    (inclusive) of each query, faiss's range-search layout, ascending (distance, index) per query.

    The number of hits is read back from the device once (one stream synchronisation) to size the
    outputs. ``launch`` (tests only): threads/items_per_thread/partitions/batch_bytes.
    """
    oq, odb = operands((q, "queries"), (db, "database"))
    require_codes(oq, odb)
    radius = _int_arg(radius, "radius")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    nq, nb, cs = oq.shape[0], odb.shape[0], oq.shape[1]
    radius = min(radius, 8 * cs)  # no distance is larger; also keeps it in int32
    call = Call([oq, odb])
    lims, lims_ptr = call.empty((nq + 1,), np.int64)
    made = []

    def alloc(total):
        dist, d_ptr = call.empty((int(total),), np.int32)
        idx, i_ptr = call.empty((int(total),), np.int64)
        made[:] = [dist, idx]
        return d_ptr, i_ptr

    call.mod.binary.hamming_range(oq.ptr, nq, odb.ptr, nb, cs, radius, lims_ptr, alloc, call.stream,
                                  call.device, **launch)
    return call.result(lims), call.result(made[0]), call.result(made[1])


def asymmetric_scores(q, codes, little, **launch):
    """float32 (nq, n): float32 queries (nq, d) . codes (n, ceil(d/8)) read as +-1 per bit
    (padding bits ignored); bit-identical to the CPU backend.

    ``launch`` (tests only): threads/codes_per_thread/window/batch_bytes.
    """
    oq, oc = operands((q, "queries"), (codes, "database"))
    require_dtype(oq, np.float32, "float32")
    require_2d(oq)
    require_dtype(oc, np.uint8, "uint8 codes")
    require_2d(oc)
    nq, d = oq.shape
    nb = oc.shape[0]
    if d == 0:
        raise ValueError("queries must have at least one dimension")
    if oc.shape[1] != (d + 7) // 8:
        raise ValueError(
            f"database must have ceil(d/8) = {(d + 7) // 8} bytes per code for d = {d}, got {oc.shape[1]}")
    call = Call([oq, oc])
    out, out_ptr = call.empty((nq, nb), np.float32)
    call.mod.binary.asymmetric_scores(oq.ptr, nq, d, oc.ptr, nb, bool(little), out_ptr, call.stream,
                                      call.device, **launch)
    return call.result(out)


def _host_weights(w, planes):
    """Weights as a host float64 (planes,) array; None -> 2**-t. Device arrays are copied back."""
    if w is None:
        return 2.0 ** -np.arange(planes, dtype=np.float64)
    if hasattr(w, "get") and type(w).__module__.startswith("cupy"):
        w = w.get()
    elif hasattr(w, "detach") and hasattr(w, "cpu"):
        w = w.detach().cpu().numpy()
    try:
        arr = np.asarray(w)
    except Exception as exc:
        raise TypeError(f"weights must be a real numeric array ({exc})") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"weights must be a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != planes:
        raise ValueError(f"weights must have one value per plane ({planes}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("weights contains NaN or inf")
    return arr


def _multibit_operands(q, db, dim, w):
    oq, odb = operands((q, "queries"), (db, "database"))
    for op in (oq, odb):
        require_dtype(op, np.uint8, "uint8 codes")
        if len(op.shape) != 3:
            raise ValueError(f"{op.name} must have 3 dimensions (n, planes, bytes per plane), got {len(op.shape)}")
    if oq.shape[1:] != odb.shape[1:]:
        raise ValueError(
            f"queries and database must have the same planes and bytes per plane, got {oq.shape[1:]} and {odb.shape[1:]}")
    planes, nbytes = oq.shape[1], oq.shape[2]
    if planes == 0 or nbytes == 0:
        raise ValueError("codes must have at least one plane and one byte per plane")
    dim = _int_arg(dim, "dim")
    if dim < 1 or (dim + 7) // 8 != nbytes:
        raise ValueError(f"dim must satisfy ceil(dim/8) == {nbytes} (bytes per plane), got {dim}")
    return oq, odb, planes, nbytes, dim, _host_weights(w, planes)


def multibit_scores(q, db, dim, w, **launch):
    """float32 (nq, n): sum_s sum_t w_s w_t (dim - 2 popcount(q_s ^ d_t)) of uint8 codes
    (n, planes, ceil(dim/8)); bit-identical to the CPU backend. ``w`` is a host array (or None)."""
    oq, odb, planes, nbytes, dim, w = _multibit_operands(q, db, dim, w)
    nq, nb = oq.shape[0], odb.shape[0]
    call = Call([oq, odb])
    out, out_ptr = call.empty((nq, nb), np.float32)
    call.mod.binary.multibit_scores(oq.ptr, nq, odb.ptr, nb, planes, nbytes, dim, w, out_ptr, call.stream,
                                    call.device, **launch)
    return call.result(out)


def multibit_topk(q, db, k, dim, w, **launch):
    """(float32 (nq, k), int64 (nq, k)): the k largest multibit scores, descending, ties by
    smaller index. ``launch`` (tests only): path/partitions/threads/items_per_thread/batch_bytes."""
    oq, odb, planes, nbytes, dim, w = _multibit_operands(q, db, dim, w)
    nq, nb = oq.shape[0], odb.shape[0]
    k = _int_arg(k, "k")
    if not 1 <= k <= nb:
        raise ValueError(f"k must be in [1, {nb}], got {k}")
    call = Call([oq, odb])
    out_s, s_ptr = call.empty((nq, k), np.float32)
    out_i, i_ptr = call.empty((nq, k), np.int64)
    call.mod.binary.multibit_topk(oq.ptr, nq, odb.ptr, nb, planes, nbytes, dim, w, k, s_ptr, i_ptr,
                                  call.stream, call.device, **launch)
    return call.result(out_s), call.result(out_i)
