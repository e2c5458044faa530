"""MUVERA FDE kernels on the CUDA backend, with the signatures of ``embkern._core.fde``.

``simhash_matrices``, ``ams_tables`` and ``count_sketch`` build the config's random tables on the
host (the CPU backend's exact libstdc++ emulation; they are data independent and built once per
config); ``encode(x, offsets, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim,
document, fill, ams)`` runs the encoding on the GPU and equals the CPU backend bit for bit (see
csrc/cuda/fde/fde_blocks.hpp). ``x`` may be a host array (copied to the current device, numpy out)
or a CUDA array (CuPy / torch / ``__cuda_array_interface__``; the result comes back in the caller's
framework). ``encode_ranges`` takes per-cloud row ranges instead of offsets (padded batches).

The tables derived for the GPU (the AMS hash and the final count sketch grouped by output column)
are uploaded once per (config tables, device) and cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .._cuda_backend import Call, operands, require_2d, require_dtype

__all__ = ["simhash_matrices", "ams_tables", "count_sketch", "encode", "encode_ranges"]

_MAX_INNER = 2**31 - 1
_LAUNCH = ("threads", "group_rows", "stage", "keys", "tile", "vbuf_floats", "keys_bytes",
           "stage_bytes", "scratch_bytes", "max_grid")


# ---------------------------------------------------------------------------------------------
# random tables: the CPU backend's (host, numpy)


def _host_module():
    from .. import _dispatch

    if _dispatch.core_available():
        return _dispatch.backend_module("fde", "cpu")
    return _dispatch.backend_module("fde", "numba")


def simhash_matrices(seed, reps, d, k):
    """float32 (d, reps * k): column r * k + j is hyperplane j of repetition r (seed + r)."""
    return _host_module().simhash_matrices(seed, reps, d, k)


def ams_tables(seed, reps, d, p):
    """(col int32 (reps, d), sign float32 (reps, d)): the AMS hash of each repetition."""
    return _host_module().ams_tables(seed, reps, d, p)


def count_sketch(seed, inner_dim, final_dim):
    """(idx int32 (inner_dim,), sign float32 (inner_dim,)): the final projection."""
    return _host_module().count_sketch(seed, inner_dim, final_dim)


# ---------------------------------------------------------------------------------------------
# host-side validation (before anything touches CUDA)


def _check_sizes(d, reps, k, p):
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    if reps < 1:
        raise ValueError(f"num_repetitions must be >= 1, got {reps}")
    if not 0 <= k <= 30:
        raise ValueError(f"num_simhash_projections must be in 0..30, got {k}")
    if p < 1:
        raise ValueError(f"projection dimension must be >= 1, got {p}")


def _int_array(a, name):
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _table(a, dtype, name):
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _grouped(targets, signs, width):
    """(order int32, osign float32, start int32 (width + 1,)): entries grouped by target, each
    group in ascending source order (a stable sort), the CPU's summation order per target."""
    order = np.argsort(targets, kind="stable").astype(np.int32)
    start = np.zeros(width + 1, np.int64)
    np.cumsum(np.bincount(targets, minlength=width), out=start[1:])
    return order, np.ascontiguousarray(signs[order], np.float32), start.astype(np.int32)


def _prepare(d, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim, ams):
    """Validated sizes and the host tables the kernels read (all numpy, C order)."""
    reps, k, p, final_dim = int(reps), int(k), int(p), int(final_dim)
    _check_sizes(d, reps, k, p)
    if not ams and p != d:
        raise ValueError(f"identity projection needs p == dimension ({d}), got p = {p}")
    inner = reps * (1 << k) * p
    if inner > _MAX_INNER:
        raise ValueError(f"the encoding would have {inner} dimensions; at most {_MAX_INNER} are supported")
    if not 0 <= final_dim <= _MAX_INNER:
        raise ValueError(f"final_projection_dimension must be in [0, {_MAX_INNER}], got {final_dim}")
    tables = {}
    if k > 0:
        g = _table(gauss, np.float32, "gauss")
        if g.shape != (d, reps * k):
            raise ValueError(f"gauss must be (dimension, reps * k) = ({d}, {reps * k}), got {g.shape}")
        tables["gauss"] = g
    if ams:
        col = _table(ams_col, np.int32, "ams_col").reshape(-1)
        sign = _table(ams_sign, np.float32, "ams_sign").reshape(-1)
        if col.size != reps * d or sign.size != reps * d:
            raise ValueError(f"ams tables must be (reps, dimension) = ({reps}, {d})")
        if col.size and (col.min() < 0 or col.max() >= p):
            raise ValueError(f"ams column out of range [0, {p})")
        parts = [_grouped(col[r * d:(r + 1) * d], sign[r * d:(r + 1) * d], p) for r in range(reps)]
        tables["ams_order"] = np.concatenate([o for o, _, _ in parts])
        tables["ams_osign"] = np.concatenate([s for _, s, _ in parts])
        tables["ams_start"] = np.concatenate([st for _, _, st in parts])
    if final_dim > 0:
        idx = _table(fp_idx, np.int32, "fp_idx").reshape(-1)
        sign = _table(fp_sign, np.float32, "fp_sign").reshape(-1)
        if idx.size != inner or sign.size != inner:
            raise ValueError(f"final projection tables must have the FDE's length ({inner})")
        if idx.min() < 0 or idx.max() >= final_dim:
            raise ValueError(f"final projection index out of range [0, {final_dim})")
        tables["fp_order"], tables["fp_osign"], tables["fp_start"] = _grouped(idx, sign, final_dim)
    out_dim = final_dim if final_dim > 0 else inner
    return (reps, k, p, final_dim), tables, out_dim


def _check_offsets(offsets, rows):
    off = _int_array(offsets, "offsets")
    if off.size < 1:
        raise ValueError("offsets must hold batch + 1 entries")
    if off[0] != 0 or off[-1] != rows:
        raise ValueError(f"offsets must run from 0 to the number of rows ({rows})")
    if off.size > 1 and (np.diff(off) < 0).any():
        raise ValueError("offsets must not decrease")
    return off[:-1].copy(), off[1:].copy()


def _check_ranges(begin, end, rows):
    b, e = _int_array(begin, "begin"), _int_array(end, "end")
    if b.shape != e.shape:
        raise ValueError(f"begin and end must have one entry per point cloud, got {b.size} and {e.size}")
    if b.size and (b.min() < 0 or (e < b).any() or e.max() > rows):
        raise ValueError(f"every point cloud's rows must satisfy 0 <= begin <= end <= {rows}")
    return b, e


def _launch_options(launch):
    unknown = set(launch) - set(_LAUNCH)
    if unknown:
        raise TypeError(f"unknown launch options: {sorted(unknown)}")
    return {name: int(v) for name, v in launch.items()}


def _bad_message(code: int) -> str:
    return f"points contains NaN or inf (point cloud {0xFFFFFFFF - code})"


# ---------------------------------------------------------------------------------------------
# device tables, cached per (tables, device)

_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 8
_NAMES = ("gauss", "ams_order", "ams_osign", "ams_start", "fp_order", "fp_osign", "fp_start")


def _device_tables(call, key_arrays, key_sizes, tables) -> dict:
    key = (call.device, key_sizes) + tuple(id(a) for a in key_arrays)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit[1]
    ptrs, keep = {}, []
    for name in _NAMES:
        arr = tables.get(name)
        if arr is None or arr.size == 0:
            ptrs[name] = 0
            continue
        buf = call.mod.DeviceBuffer(arr.nbytes, call.device)
        buf.copy_from_host(arr, call.stream)
        keep.append(buf)
        ptrs[name] = buf.ptr
    call.mod.stream_synchronize(call.stream, call.device)  # usable from any stream from now on
    with _cache_lock:
        # the key's arrays are kept alive with the entry, so their ids stay unique while cached
        _cache[key] = (tuple(key_arrays), ptrs, keep)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ptrs


# ---------------------------------------------------------------------------------------------
# kernels


def _read_code(call, bad) -> int:
    """The kernel's bad-cloud code (waits for the stream)."""
    res = call.result(bad)
    if isinstance(res, np.ndarray):
        arr = res
    elif hasattr(res, "get") and not hasattr(res, "cpu"):  # CuPy or CudaArray
        arr = np.asarray(res.get())
    elif hasattr(res, "cpu"):  # torch
        arr = res.cpu().numpy()
    else:
        arr = np.asarray(res)
    return int(arr.reshape(-1).view(np.uint32)[0])


def _run(op, b, e, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim, document, fill,
         ams, launch):
    rows, d = op.shape
    (reps, k, p, final_dim), tables, out_dim = _prepare(d, gauss, ams_col, ams_sign, fp_idx, fp_sign,
                                                        reps, k, p, final_dim, bool(ams))
    b, e = _check_ranges(b, e, rows)
    opts = _launch_options(launch)
    call = Call([op])
    ptrs = _device_tables(call, (gauss, ams_col, ams_sign, fp_idx, fp_sign),
                          (d, reps, k, p, final_dim, bool(ams)), tables)
    out, out_ptr = call.empty((b.size, out_dim), np.float32)
    bad, bad_ptr = call.empty((1,), np.int32)
    call.mod.fde.encode(op.ptr, rows, b, e, d, reps, k, p, final_dim, bool(document), bool(fill), bool(ams),
                        ptrs["gauss"], ptrs["ams_order"], ptrs["ams_osign"], ptrs["ams_start"],
                        ptrs["fp_order"], ptrs["fp_osign"], ptrs["fp_start"], out_ptr, bad_ptr,
                        call.stream, call.device, **opts)
    code = _read_code(call, bad)
    if code:
        raise ValueError(_bad_message(code))
    return call.result(out)


def _points(x):
    (op,) = operands((x, "points"))
    require_dtype(op, np.float32, "float32")
    require_2d(op)
    return op


def encode_ranges(x, begin, end, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim,
                  document, fill, ams, **launch):
    """float32 (batch, out_dim): FDEs of the clouds x[begin[c]:end[c]] (begin/end host ints)."""
    return _run(_points(x), begin, end, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p,
                final_dim, document, fill, ams, launch)


def encode(x, offsets, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim, document,
           fill, ams, **launch):
    """float32 (batch, out_dim): the FDE of each cloud x[offsets[c]:offsets[c + 1]] (the CPU
    backend's signature; ``launch`` forwards launch choices, for tests)."""
    op = _points(x)
    b, e = _check_offsets(offsets, op.shape[0])
    return _run(op, b, e, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim, document,
                fill, ams, launch)


def _emulate_encode(x, offsets, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim,
                    document, fill, ams, *, begin=None, end=None, sm_count=1, **launch):
    """The GPU kernels run by the host emulator (numpy in, numpy out), for tests without a GPU:
    ``encode``'s arguments (or ``begin``/``end`` row ranges instead of ``offsets``)."""
    from .. import _cuda_backend as cb

    mod = cb._probe()[0]
    if mod is None:
        raise RuntimeError(cb.status())
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"points must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"points must have 2 dimensions, got {x.ndim}")
    x = np.ascontiguousarray(x)
    rows, d = x.shape
    (reps, k, p, final_dim), tables, _ = _prepare(d, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p,
                                                  final_dim, bool(ams))
    if begin is None:
        b, e = _check_offsets(offsets, rows)
    else:
        b, e = _check_ranges(begin, end, rows)
    empty_f, empty_i = np.zeros(0, np.float32), np.zeros(0, np.int32)
    t = {n: tables.get(n, empty_i if n.endswith(("order", "start")) else empty_f) for n in _NAMES}
    out, code = mod.fde._emulate_encode(
        x, b, e, t["gauss"], t["ams_order"], t["ams_osign"], t["ams_start"], t["fp_order"],
        t["fp_osign"], t["fp_start"], reps, k, p, final_dim, bool(document), bool(fill), bool(ams),
        sm_count=sm_count, **_launch_options(launch))
    if code:
        raise ValueError(_bad_message(int(code)))
    return out
