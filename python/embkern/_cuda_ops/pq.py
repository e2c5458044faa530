"""Product-quantization kernels on the CUDA backend, with the signatures of ``embkern._core.pq``.

``encode(x, centroids, nbits)``, ``decode(codes, centroids, nbits)``,
``distance_tables(x, centroids, nbits, ip)``, ``adc_distances(lut, codes)``,
``adc_topk(lut, codes, k, largest)``, ``pack_fastscan(codes, m)``, ``unpack_fastscan(packed, n, m)``,
``fastscan_topk(lut, packed, n, m, k, largest)`` and ``train(x, centroids, nbits, iterations)``
return what the CPU backend returns, bit for bit (csrc/cuda/pq/pq_blocks.hpp says how). Extra:
``fastscan_rerank(lut, packed, n, m, cand, k, largest)`` (the exact re-scoring of fast-scan
candidates that ``ProductQuantizer.search(..., rerank=r)`` does) and the helpers ``to_device_like``
/ ``to_host`` used by ``embkern.pq`` to bring host parameters (centroids, tables) next to device data.

Arguments are all host arrays or all arrays of one CUDA device; results come back in the framework
of the first argument (see ``embkern._cuda_backend``). Every check (dtype -> TypeError, shape or
value -> ValueError, naming the argument) runs before anything touches CUDA. ``**launch`` (tests
only) forwards launch choices (threads, smem, path, partitions, items_per_thread, run,
batch_bytes, queries_per_block, train_part) to the kernels.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._cuda_backend import Call, operands, require_2d, require_dtype

MAX_TOPK_ITEMS = 0xFFFFFFFF - 1  # top-k candidates carry their id in 32 bits
MAX_FASTSCAN_M = 256  # 16-bit accumulators (255 * 256 < 2^16)


def _int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _nbits(nbits) -> int:
    nbits = _int(nbits, "nbits")
    if nbits not in (4, 8):
        raise ValueError(f"nbits must be 4 or 8, got {nbits}")
    return nbits


def _ndim(op, nd: int) -> None:
    if len(op.shape) != nd:
        raise ValueError(f"{op.name} must have {nd} dimensions, got {len(op.shape)}")


def _centroids(op, nbits: int):
    require_dtype(op, np.float32, "float32")
    _ndim(op, 3)
    m, ksub, dsub = op.shape
    if ksub != 1 << nbits:
        raise ValueError(f"{op.name} must have 2**nbits = {1 << nbits} rows per sub-quantizer, got {ksub}")
    if m < 1 or dsub < 1:
        raise ValueError(f"{op.name} must not be empty, got shape {op.shape}")
    return m, dsub


def _vectors(op, dim: int) -> None:
    require_dtype(op, np.float32, "float32")
    require_2d(op)
    if op.shape[1] != dim:
        raise ValueError(f"{op.name} must have dim = m * dsub = {dim} columns, got {op.shape[1]}")


def _codes(op, m: int, nbits: int) -> None:
    require_dtype(op, np.uint8, "uint8 codes")
    require_2d(op)
    width = (m * nbits + 7) // 8
    if op.shape[1] != width:
        raise ValueError(f"{op.name} must have ceil(m * nbits / 8) = {width} bytes per row, got {op.shape[1]}")


def _lut(op) -> int:
    """float32 (nq, m, 16 | 256) -> nbits."""
    require_dtype(op, np.float32, "float32")
    _ndim(op, 3)
    if op.shape[2] not in (16, 256):
        raise ValueError(f"{op.name} must have 16 (4-bit) or 256 (8-bit) entries per sub-quantizer, got {op.shape[2]}")
    if op.shape[1] < 1:
        raise ValueError(f"{op.name} must have at least one sub-quantizer")
    return 4 if op.shape[2] == 16 else 8


def _k(k, n: int) -> int:
    k = _int(k, "k")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    return k


def fastscan_bytes(n: int, m: int) -> int:
    """Bytes of the packed fast-scan form of n codes of m sub-quantizers."""
    return (n + 31) // 32 * 32 * ((m + 1) // 2)


def _packed(op, n: int, m: int) -> None:
    require_dtype(op, np.uint8, "uint8 codes")
    _ndim(op, 1)
    want = fastscan_bytes(n, m)
    if op.shape[0] != want:
        raise ValueError(f"{op.name} must hold ceil(n / 32) * 32 * ceil(m / 2) = {want} bytes for n={n}, m={m}, "
                         f"got {op.shape[0]}")


def _fastscan_args(n, m, *pairs):
    """Checks of the fast-scan arguments; operands of (lut, packed, ...) in that order."""
    n, m = _int(n, "n"), _int(m, "m")
    if not 1 <= m <= MAX_FASTSCAN_M:
        raise ValueError(f"fast-scan search takes 1 <= m <= {MAX_FASTSCAN_M} sub-quantizers, got {m}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > MAX_TOPK_ITEMS:
        raise ValueError(f"the CUDA top-k takes at most {MAX_TOPK_ITEMS} codes, got n={n}")
    ops = operands(*pairs)
    ol, op = ops[0], ops[1]
    require_dtype(ol, np.float32, "float32")
    _ndim(ol, 3)
    if tuple(ol.shape[1:]) != (m, 16):
        raise ValueError(f"lut must have shape (nq, m, 16) = (nq, {m}, 16), got {ol.shape}")
    _packed(op, n, m)
    return ops, n, m


# ---- kernels ----------------------------------------------------------------------------------


def encode(x, centroids, nbits, **launch):
    """uint8 codes (n, ceil(m * nbits / 8)) of float32 x (n, m * dsub): nearest centroid per
    sub-vector, byte-identical to the CPU backend (and faiss)."""
    nbits = _nbits(nbits)
    ox, oc = operands((x, "x"), (centroids, "centroids"))
    m, dsub = _centroids(oc, nbits)
    _vectors(ox, m * dsub)
    n = ox.shape[0]
    call = Call([ox, oc])
    out, ptr = call.empty((n, (m * nbits + 7) // 8), np.uint8)
    call.mod.pq.encode(ox.ptr, n, m * dsub, oc.ptr, m, nbits, ptr, call.stream, call.device, **launch)
    return call.result(out)


def decode(codes, centroids, nbits, **launch):
    """float32 (n, dim): each sub-vector replaced by its centroid."""
    nbits = _nbits(nbits)
    ok, oc = operands((codes, "codes"), (centroids, "centroids"))
    m, dsub = _centroids(oc, nbits)
    _codes(ok, m, nbits)
    n = ok.shape[0]
    call = Call([ok, oc])
    out, ptr = call.empty((n, m * dsub), np.float32)
    call.mod.pq.decode(ok.ptr, n, oc.ptr, m * dsub, m, nbits, ptr, call.stream, call.device, **launch)
    return call.result(out)


def distance_tables(x, centroids, nbits, ip, **launch):
    """float32 (n, m, 2**nbits): squared L2 distances (ip: inner products) of each sub-vector of
    x to each centroid, in the CPU's float order."""
    nbits = _nbits(nbits)
    ox, oc = operands((x, "queries"), (centroids, "centroids"))
    m, dsub = _centroids(oc, nbits)
    _vectors(ox, m * dsub)
    n = ox.shape[0]
    call = Call([ox, oc])
    out, ptr = call.empty((n, m, 1 << nbits), np.float32)
    call.mod.pq.distance_tables(ox.ptr, n, m * dsub, oc.ptr, m, nbits, bool(ip), ptr, call.stream, call.device,
                                **launch)
    return call.result(out)


def adc_distances(lut, codes, **launch):
    """float32 (nq, n): ``sum_s lut[q, s, code_s]`` of every code for every query."""
    ol, ok = operands((lut, "lut"), (codes, "codes"))
    nbits = _lut(ol)
    nq, m = ol.shape[0], ol.shape[1]
    _codes(ok, m, nbits)
    n = ok.shape[0]
    call = Call([ol, ok])
    out, ptr = call.empty((nq, n), np.float32)
    call.mod.pq.adc_distances(ol.ptr, nq, ok.ptr, n, m, nbits, ptr, call.stream, call.device, **launch)
    return call.result(out)


def adc_topk(lut, codes, k, largest, **launch):
    """(float32 (nq, k), int64 (nq, k)): the k smallest (largest) ADC distances per query, best
    first, ties by smaller index; equal to the CPU backend's."""
    ol, ok = operands((lut, "lut"), (codes, "codes"))
    nbits = _lut(ol)
    nq, m = ol.shape[0], ol.shape[1]
    _codes(ok, m, nbits)
    n = ok.shape[0]
    k = _k(k, n)
    if n > MAX_TOPK_ITEMS:
        raise ValueError(f"the CUDA top-k takes at most {MAX_TOPK_ITEMS} codes, got {n}")
    call = Call([ol, ok])
    out_d, d_ptr = call.empty((nq, k), np.float32)
    out_i, i_ptr = call.empty((nq, k), np.int64)
    call.mod.pq.adc_topk(ol.ptr, nq, ok.ptr, n, m, nbits, k, bool(largest), d_ptr, i_ptr, call.stream, call.device,
                         **launch)
    return call.result(out_d), call.result(out_i)


def pack_fastscan(codes, m, **launch):
    """uint8 (fastscan_bytes(n, m),): 4-bit codes (n, ceil(m / 2)) in faiss's fast-scan layout."""
    m = _int(m, "m")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    (ok,) = operands((codes, "codes"))
    _codes(ok, m, 4)
    n = ok.shape[0]
    call = Call([ok])
    out, ptr = call.empty((fastscan_bytes(n, m),), np.uint8)
    call.mod.pq.pack_fastscan(ok.ptr, n, m, ptr, call.stream, call.device, **launch)
    return call.result(out)


def unpack_fastscan(packed, n, m, **launch):
    """uint8 (n, ceil(m / 2)): the inverse of pack_fastscan."""
    n, m = _int(n, "n"), _int(m, "m")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    (op,) = operands((packed, "packed"))
    _packed(op, n, m)
    call = Call([op])
    out, ptr = call.empty((n, (m + 1) // 2), np.uint8)
    call.mod.pq.unpack_fastscan(op.ptr, n, m, ptr, call.stream, call.device, **launch)
    return call.result(out)


def fastscan_topk(lut, packed, n, m, k, largest, **launch):
    """(float32 (nq, k), int64 (nq, k)): faiss's fast scan (uint8 tables, 16-bit sums, top-k on
    the sums, distances b + S / a), equal to the CPU backend's."""
    (ol, op), n, m = _fastscan_args(n, m, (lut, "lut"), (packed, "packed"))
    k = _k(k, n)
    nq = ol.shape[0]
    call = Call([ol, op])
    out_d, d_ptr = call.empty((nq, k), np.float32)
    out_i, i_ptr = call.empty((nq, k), np.int64)
    call.mod.pq.fastscan_topk(ol.ptr, nq, op.ptr, n, m, k, bool(largest), d_ptr, i_ptr, call.stream, call.device,
                              **launch)
    return call.result(out_d), call.result(out_i)


def fastscan_rerank(lut, packed, n, m, cand, k, largest, **launch):
    """(float32 (nq, k), int64 (nq, k)): the k best of each query's candidate ids cand (nq, r)
    by exact ADC distance (ties by smaller id), with those exact distances; what
    ``ProductQuantizer.search(..., rerank=r)`` computes after the fast scan."""
    (ol, op, oc), n, m = _fastscan_args(n, m, (lut, "lut"), (packed, "packed"), (cand, "cand"))
    require_dtype(oc, np.int64, "int64")
    require_2d(oc)
    nq = ol.shape[0]
    if oc.shape[0] != nq:
        raise ValueError(f"cand must have one row per query ({nq}), got {oc.shape[0]}")
    r = oc.shape[1]
    if not 1 <= r <= n:
        raise ValueError(f"cand must hold between 1 and n={n} ids per query, got {r}")
    k = _k(k, r)
    call = Call([ol, op, oc])
    out_d, d_ptr = call.empty((nq, k), np.float32)
    out_i, i_ptr = call.empty((nq, k), np.int64)
    call.mod.pq.fastscan_rerank(ol.ptr, nq, op.ptr, n, m, oc.ptr, r, k, bool(largest), d_ptr, i_ptr, call.stream,
                                call.device, **launch)
    return call.result(out_d), call.result(out_i)


def train(x, centroids, nbits, iterations, **launch):
    """float32 (m, 2**nbits, dsub): ``iterations`` Lloyd iterations per sub-space from the initial
    ``centroids`` (not modified), with the CPU backend's assignment, update and empty-cluster rule."""
    nbits = _nbits(nbits)
    iterations = _int(iterations, "iterations")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    ox, oc = operands((x, "x"), (centroids, "centroids"))
    m, dsub = _centroids(oc, nbits)
    _vectors(ox, m * dsub)
    n = ox.shape[0]
    if n < 1:
        raise ValueError("x must not be empty")
    if n >= 2**31:
        raise ValueError(f"the CUDA k-means takes fewer than 2^31 points, got {n}")
    call = Call([ox, oc])
    out, ptr = call.empty(tuple(oc.shape), np.float32)
    call.mod.pq.train(ox.ptr, n, m * dsub, m, nbits, iterations, oc.ptr, ptr, call.stream, call.device, **launch)
    return call.result(out)


# ---- helpers for embkern.pq ------------------------------------------------------------------


def to_device_like(arr, like):
    """A copy of host array ``arr`` on the device of ``like`` (a CuPy array or torch tensor; any
    other CUDA array gets a CuPy array, or a torch tensor when CuPy is missing)."""
    arr = np.ascontiguousarray(arr)
    mod = type(like).__module__ or ""
    if mod.startswith("torch"):
        import torch

        return torch.from_numpy(arr).to(like.device)
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        dev = getattr(getattr(like, "device", None), "id", None)
        if dev is None:
            return cupy.asarray(arr)
        with cupy.cuda.Device(dev):
            return cupy.asarray(arr)
    import torch

    return torch.from_numpy(arr).cuda()


def to_host(arr) -> np.ndarray:
    """A numpy copy of a device array (CuPy, torch, or anything numpy can read)."""
    if isinstance(arr, np.ndarray):
        return arr
    mod = type(arr).__module__ or ""
    if mod.startswith("torch"):
        return arr.detach().cpu().numpy()
    if hasattr(arr, "get"):
        return arr.get()
    return np.asarray(arr)
