"""embkern on Dask: corpus-scale encoding and exact sharded search (optional extra ``embkern[dask]``).

Encoders map embkern's in-memory kernels over row blocks of a dask array and return dask arrays
equal to the in-memory call (row blocks only: a block split along columns is rechunked first):

* ``pack_signs(x, **kw)``, ``pq_encode(pq, x)``, ``project(srp, x)`` (the projection's matrix is
  regenerated from its seed on each worker, never shipped),
* ``encode_documents(points, lengths, config)``, ``encode_queries(points, lengths, config)``: a
  row-blocked dask array of tokens with per-cloud lengths; blocks are moved to cloud boundaries
  first, so no cloud is ever split.

Exact sharded search returns numpy ``(distances, indices)`` identical to the single-process call:
``hamming_topk(queries, database, k)`` and ``pq_search(pq, queries, codes, k)``. Each block is
searched on its worker for its own top-min(k, block) (ids made global), then the partial lists
are merged in a tree by (distance, global id), so ties resolve to the smaller index as in one
process, and k may exceed any block's size.

Threads: each task sets embkern's thread count from its worker (the cores the worker was given,
shared among the worker's task threads), so a cluster never runs more kernel threads than cores.
Progress shows in Dask's own diagnostics (dashboard, ``dask.diagnostics.ProgressBar``,
``distributed.progress``): the tasks are named ``embkern-<kernel>``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("embkern.dask needs dask: pip install 'embkern[dask]'") from exc

from . import _dispatch as _d

__all__ = [
    "pack_signs",
    "pq_encode",
    "project",
    "encode_documents",
    "encode_queries",
    "hamming_topk",
    "pq_search",
    "worker_threads",
]

_MERGE_FAN_IN = 8


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------
def worker_threads() -> int:
    """embkern threads for one task on the current Dask worker.

    Dask's parallelism is its task threads, and its nannies start workers with one BLAS/OpenMP
    thread per task for the same reason; embkern follows: a task's kernels use the worker's
    declared ``cores`` (or ``CPU``) resource divided among its task threads, else
    ``EMBKERN_NUM_THREADS`` from the worker's environment, else one thread. So a cluster sized to
    its cores never runs more kernel threads than cores. Outside a worker: embkern's setting.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return _d.get_num_threads()
    slots = max(1, int(getattr(worker.state, "nthreads", 0) or 1))
    resources = getattr(worker.state, "total_resources", None) or {}
    for key in ("cores", "CPU", "cpu"):
        if key in resources:
            return max(1, int(resources[key]) // slots)
    env = os.environ.get("EMBKERN_NUM_THREADS", "")
    return max(1, int(env)) if env.isdigit() else 1


def _in_worker(fn: Callable, *args, **kwargs):
    """Run an embkern call with the worker's share of threads (set per process, once)."""
    n = worker_threads()
    if n != _d.get_num_threads():
        _d.set_num_threads(n)
    return fn(*args, **kwargs)


def _on_block(block: np.ndarray, fn: Callable, **kwargs):
    """map_blocks adaptor: the block comes first."""
    return _in_worker(fn, block, **kwargs)


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def _as_dask(x: Any, name: str, ndim: Optional[int] = None) -> "da.Array":
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array (use the embkern functions directly "
                        f"for in-memory arrays), got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if any(math.isnan(c) for c in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    return x


def _row_blocks(x: "da.Array") -> "da.Array":
    """One block per row range: whole rows in every block."""
    if x.ndim >= 2 and any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    return x


def _local(x: Any) -> np.ndarray:
    return np.asarray(x.compute() if isinstance(x, da.Array) else x)


# ---------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------
def pack_signs(x: "da.Array", **kwargs: Any) -> "da.Array":
    """:func:`embkern.binary.pack_signs` over row blocks: uint8 (n, ceil(d / 8)) codes."""
    from . import binary

    x = _as_dask(x, "x")
    if x.ndim == 1:
        x = x.rechunk(-1)
        return x.map_blocks(_on_block, binary.pack_signs, **kwargs, dtype=np.uint8,
                            chunks=((x.shape[0] + 7) // 8,), token="embkern-pack-signs")
    if x.ndim != 2:
        raise ValueError(f"x must be 1-D or 2-D, got shape {x.shape}")
    x = _row_blocks(x)
    width = (x.shape[1] + 7) // 8
    return x.map_blocks(_on_block, binary.pack_signs, **kwargs, dtype=np.uint8,
                        chunks=(x.chunks[0], (width,)), token="embkern-pack-signs")


def pq_encode(pq: Any, x: "da.Array") -> "da.Array":
    """``pq.encode`` over row blocks (a trained :class:`embkern.pq.ProductQuantizer`)."""
    x = _row_blocks(_as_dask(x, "x", 2))
    if x.shape[1] != pq.dim:
        raise ValueError(f"x must have {pq.dim} columns, got shape {x.shape}")
    pq._trained_centroids()  # fail here, not on a worker, when pq is untrained
    width = (pq.m * pq.nbits + 7) // 8
    return x.map_blocks(_on_block, pq.encode, dtype=np.uint8, chunks=(x.chunks[0], (width,)),
                        token="embkern-pq-encode")


def project(srp: Any, x: "da.Array") -> "da.Array":
    """``srp.transform`` over row blocks (a fitted :class:`embkern.projection.SparseRandomProjection`).

    The estimator travels to the workers as its parameters and seed; each worker's kernel
    regenerates the matrix, so no matrix is shipped or stored."""
    x = _row_blocks(_as_dask(x, "x", 2))
    n_out = int(srp.n_components_)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return x.map_blocks(_on_block, srp.transform, dtype=dtype, chunks=(x.chunks[0], (n_out,)),
                        token="embkern-project")


def _cloud_blocks(points: "da.Array", lengths: np.ndarray) -> Tuple["da.Array", List[np.ndarray]]:
    """Rechunk the token rows so every block boundary is a cloud boundary, near the original
    boundaries; returns the rechunked array and each block's cloud lengths."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    if total != points.shape[0]:
        raise ValueError(f"lengths sum to {total} but points has {points.shape[0]} rows")
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    # Cut before the first cloud that starts at or after each original block boundary.
    bounds = np.cumsum(points.chunks[0])[:-1]
    cuts = sorted({int(c) for c in np.searchsorted(starts, bounds, side="left") if 0 < c < len(lengths)})
    cloud_edges = [0] + cuts + [len(lengths)]
    row_chunks, block_lengths = [], []
    for a, b in zip(cloud_edges[:-1], cloud_edges[1:]):
        row_chunks.append(int(ends[b - 1] - (starts[a] if a < len(starts) else 0)))
        block_lengths.append(lengths[a:b])
    return points.rechunk({0: tuple(row_chunks), 1: -1}), block_lengths


def _encode_clouds(kind: str, points: Any, lengths: Any, config: Any) -> "da.Array":
    from . import fde

    points = _as_dask(points, "points", 2)
    lengths = _local(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (one length per cloud), got shape {lengths.shape}")
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"lengths must be integers, got {lengths.dtype}")
    if lengths.size and lengths.min() < 0:
        raise ValueError("lengths must be >= 0")
    lengths = lengths.astype(np.int64)
    if points.shape[1] != config.dimension:
        raise ValueError(f"points must have {config.dimension} columns (config.dimension), got {points.shape[1]}")
    if lengths.size == 0:
        raise ValueError("lengths is empty: no clouds to encode")
    encode = fde.encode_documents if kind == "documents" else fde.encode_queries
    points, block_lengths = _cloud_blocks(points, lengths)
    out_dim = int(config.output_dimension)
    blocks = points.to_delayed().ravel()
    parts = []
    for block, lens in zip(blocks, block_lengths):
        enc = dask.delayed(_in_worker, pure=True, name=None)(encode, block, config, lengths=lens)
        parts.append(da.from_delayed(enc, shape=(len(lens), out_dim), dtype=np.float32))
    return da.concatenate(parts, axis=0)


def encode_documents(points: "da.Array", lengths: Any, config: Any) -> "da.Array":
    """:func:`embkern.fde.encode_documents` of ragged clouds: ``points`` (total, dimension) as a
    row-blocked dask array, ``lengths`` one count per cloud (numpy, list or a small dask array).
    Returns a dask array (n_clouds, config.output_dimension), one block per block of clouds."""
    return _encode_clouds("documents", points, lengths, config)


def encode_queries(points: "da.Array", lengths: Any, config: Any) -> "da.Array":
    """:func:`embkern.fde.encode_queries` of ragged clouds (see :func:`encode_documents`)."""
    return _encode_clouds("queries", points, lengths, config)


# ---------------------------------------------------------------------------------------------
# exact sharded search
# ---------------------------------------------------------------------------------------------
def _block_topk(search: Callable, queries: np.ndarray, block: np.ndarray, k: int, offset: int,
                largest: bool):
    kb = min(k, block.shape[0])
    if kb == 0:
        return (np.empty((queries.shape[0], 0), np.float64), np.empty((queries.shape[0], 0), np.int64), largest)
    d, i = _in_worker(search, queries, block, kb)
    return d, np.asarray(i, np.int64) + offset, largest


def _merge(k: int, *parts):
    """Exact merge of partial top-k lists: by distance (descending when largest), then by
    global id."""
    largest = parts[0][2]
    d = np.concatenate([p[0] for p in parts], axis=1)
    i = np.concatenate([p[1] for p in parts], axis=1)
    key = -d.astype(np.float64) if largest else d
    order = np.lexsort((i, key), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1), largest


def _sharded_topk(search: Callable, queries: np.ndarray, database: "da.Array", k: int,
                  largest: bool, name: str):
    database = _row_blocks(database)
    n = database.shape[0]
    k = _d.check_k(k, n)
    offsets = np.concatenate([[0], np.cumsum(database.chunks[0])[:-1]]).astype(np.int64)
    blocks = database.to_delayed().ravel()
    q = dask.delayed(queries, name=f"{name}-queries-{dask.base.tokenize(queries)}")
    level = [dask.delayed(_block_topk, pure=True)(search, q, b, k, int(off), largest)
             for b, off in zip(blocks, offsets)]
    while len(level) > 1:
        level = [dask.delayed(_merge, pure=True)(k, *level[j:j + _MERGE_FAN_IN])
                 for j in range(0, len(level), _MERGE_FAN_IN)]
    d, i, _ = level[0].compute()  # one block: its own top-k is already the answer
    return d, i


def hamming_topk(queries: Any, database: "da.Array", k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact :func:`embkern.binary.hamming_topk` against a row-sharded dask array of codes:
    numpy ``(int32 (nq, k), int64 (nq, k))`` with global ids, identical to the in-memory call."""
    from . import binary

    database = _as_dask(database, "database", 2)
    if database.dtype != np.uint8:
        raise TypeError(f"database must hold uint8 codes, got {database.dtype}")
    q, _ = _d.as_codes(_local(queries), "queries")
    _d.same_width(q, np.empty((0, database.shape[1]), np.uint8), "queries", "database")
    d, i = _sharded_topk(binary.hamming_topk, q, database, k, False, "embkern-hamming-topk")
    return d.astype(np.int32), i


def pq_search(pq: Any, queries: Any, codes: "da.Array", k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact ``pq.search(queries, codes, k)`` (ADC) against row-sharded dask codes: numpy
    ``(float32 (nq, k), int64 (nq, k))`` with global ids, identical to the in-memory call."""
    codes = _as_dask(codes, "codes", 2)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {codes.dtype}")
    width = (pq.m * pq.nbits + 7) // 8
    if codes.shape[1] != width:
        raise ValueError(f"codes must have {width} bytes per row for m={pq.m}, nbits={pq.nbits}, "
                         f"got {codes.shape[1]}")
    q = np.ascontiguousarray(_local(queries))
    if q.ndim != 2 or q.shape[1] != pq.dim:
        raise ValueError(f"queries must be 2-D with {pq.dim} columns, got shape {q.shape}")
    pq.lookup_table(q[:1])  # dtype and training checked here rather than on a worker
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or inf")
    d, i = _sharded_topk(pq.search, q, codes, k, pq.metric == "ip", "embkern-pq-search")
    return d.astype(np.float32), i
