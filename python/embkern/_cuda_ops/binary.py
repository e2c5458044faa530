"""Binary-code kernels on the CUDA backend, with the signatures of ``embkern._core.binary``.

``pack_signs_f32(x, threshold, little)``, ``pack_signs_f64(x, threshold, little)``,
``hamming_distance(a, b)`` and ``hamming_topk(q, db, k)``; the other binary kernels have no GPU
version yet and are not defined here.
"""

from __future__ import annotations

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
