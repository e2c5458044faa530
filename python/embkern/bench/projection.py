"""Benchmark cases of the projection family (``embkern.projection``).

Acceptance sizes (``--full``):
* dense X 100,000 x 4,096 float32 -> 256 components (density "auto"), against torch ``sparse.mm``
  of the same CSR matrix and scikit-learn's ``transform`` (given embkern's matrix as its
  ``components_``, so all three compute the same product);
* CSR X 200,000 x 1,048,576 (100 nonzeros per row) -> 256 dense components, against
  scikit-learn's ``transform`` (its default sparse output; densified only for the check);
* FastRP (GDS semantics, dim 128, weights (0, 1, 1)) on 1,000,000 nodes with 10,000,000 random
  undirected edges, against a plain Numba SpMM and a scipy implementation of the same algorithm
  started from embkern's initial vectors (so results must agree), and the Rust ``fastrp`` package
  when installed (its own semantics: shape check only).
Peers run with the measured thread count (torch.set_num_threads, numba.set_num_threads,
threadpoolctl for BLAS/scipy). Inputs come from a fixed seed.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from embkern import projection as P

from ._harness import Case, Peer

FAMILY = "projection"


def _close(result, expected, rtol=1e-4) -> Optional[str]:
    a = np.asarray(result.toarray() if hasattr(result, "toarray") else result, dtype=np.float64)
    b = np.asarray(expected.toarray() if hasattr(expected, "toarray") else expected, dtype=np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    scale = float(np.abs(b).max(initial=0.0)) or 1.0
    bad = ~np.isclose(a, b, rtol=rtol, atol=rtol * scale)
    return None if not bad.any() else f"{int(bad.sum())}/{a.size} values differ"


# ---------------------------------------------------------------------------------------------
# sparse random projection
# ---------------------------------------------------------------------------------------------
def _dense_setup(rng, *, n, d, k):
    x = rng.standard_normal((n, d), dtype=np.float32)
    est = P.SparseRandomProjection(k, seed=0).fit(x[:1])
    return {"x": x, "est": est, "components": est.components_}


def _sparse_setup(rng, *, n, d, k, nnz):
    import scipy.sparse as sp

    indptr = np.arange(n + 1, dtype=np.int64) * nnz
    indices = np.sort(rng.integers(0, d, (n, nnz), dtype=np.int64).astype(np.int32), axis=1).ravel()
    data = rng.standard_normal(n * nnz, dtype=np.float32)
    x = sp.csr_matrix((data, indices, indptr.astype(np.int32)), shape=(n, d))
    est = P.SparseRandomProjection(k, seed=0).fit(x[:1])
    return {"x": x, "est": est, "components": est.components_}


def _srp_embkern(data, backend):
    est, x = data["est"], data["x"]
    return lambda: est.transform(x, backend=backend)


def _sklearn(data, threads):
    from sklearn.random_projection import SparseRandomProjection as SK

    x = data["x"]
    sk = SK(data["est"].n_components_, random_state=0).fit(x[:2])
    sk.components_ = data["components"]  # the same matrix as embkern's
    return lambda: sk.transform(x)


def _torch_mm(data, threads):
    import torch

    torch.set_num_threads(threads)
    c = data["components"]
    tc = torch.sparse_csr_tensor(torch.from_numpy(c.indptr.astype(np.int64)),
                                 torch.from_numpy(c.indices.astype(np.int64)),
                                 torch.from_numpy(c.data), size=c.shape)
    xt = torch.from_numpy(data["x"])
    return lambda: torch.sparse.mm(tc, xt.T).T.contiguous().numpy()


# ---------------------------------------------------------------------------------------------
# FastRP
# ---------------------------------------------------------------------------------------------
def _graph(rng, n, edges):
    import scipy.sparse as sp

    a = rng.integers(0, n, edges, dtype=np.int64).astype(np.int32)
    b = rng.integers(0, n, edges, dtype=np.int64).astype(np.int32)
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    g = sp.csr_matrix((np.ones(2 * edges, np.float32), (rows, cols)), shape=(n, n))
    g.sum_duplicates()
    g.data[:] = 1.0
    return g


_U = np.uint64


def _mix64(z):
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


def initial_vectors(n, dim, seed=0, chunk=65_536):
    """embkern's FastRP initial vectors (srp_rng.hpp's documented hash), float32, in numpy."""
    out = np.empty((n, dim), np.float32)
    c = np.float32(np.sqrt(3.0 / dim))
    with np.errstate(over="ignore"):
        key = _mix64(_U(seed) ^ (_U(4) * _U(0xA24BAED4963EE407)))
        t4 = np.arange((dim + 3) // 4, dtype=np.uint64)[None, :] * _U(0xD1B54A32D192ED03)
        for u0 in range(0, n, chunk):
            u = np.arange(u0, min(n, u0 + chunk), dtype=np.uint64)[:, None]
            h = _mix64(key ^ (u * _U(0x9E3779B97F4A7C15)) ^ t4)
            f = np.stack([(h >> _U(16 * s)) & _U(0xFFFF) for s in range(4)], -1).reshape(len(u), -1)[:, :dim]
            out[u0:u0 + len(u)] = np.where(f < 10923, c, np.where(f < 21846, -c, np.float32(0)))
    return out


def _fastrp_setup(rng, *, n, edges, dim):
    g = _graph(rng, n, edges)
    return {"g": g, "dim": dim, "weights": (0.0, 1.0, 1.0), "r0": initial_vectors(n, dim)}


def _fastrp_embkern(data, backend):
    g, dim, w = data["g"], data["dim"], data["weights"]
    return lambda: P.fastrp(g, dim, iteration_weights=w, backend=backend)


_NUMBA_SPMM = None


def _numba_spmm():
    global _NUMBA_SPMM
    if _NUMBA_SPMM is None:
        from numba import njit, prange

        @njit(parallel=True, nogil=True, cache=False)
        def step(indptr, indices, x, nxt, out, w):
            """nxt = row-normalised (A x); out += w * nxt, a plain SpMM over CSR rows."""
            dim = x.shape[1]
            for u in prange(len(indptr) - 1):
                acc = np.zeros(dim, np.float32)
                for e in range(indptr[u], indptr[u + 1]):
                    m = indices[e]
                    for t in range(dim):
                        acc[t] += x[m, t]
                s = np.float32(0.0)
                for t in range(dim):
                    s += acc[t] * acc[t]
                nrm = np.sqrt(s)
                for t in range(dim):
                    v = acc[t] / nrm if nrm > 0 else np.float32(0.0)
                    nxt[u, t] = v
                    out[u, t] += w * v

        _NUMBA_SPMM = step
    return _NUMBA_SPMM


def _numba_peer(data, threads):
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    step = _numba_spmm()
    g, r0, weights = data["g"], data["r0"], data["weights"]

    def run():
        out = np.zeros_like(r0)
        x, nxt = r0.copy(), np.empty_like(r0)
        for w in weights:
            step(g.indptr, g.indices, x, nxt, out, np.float32(w))
            x, nxt = nxt, x
        return out

    return run


def _scipy_peer(data, threads):
    g, r0, weights = data["g"], data["r0"], data["weights"]

    def run():
        out = np.zeros_like(r0)
        x = r0
        for w in weights:
            x = g @ x
            nrm = np.linalg.norm(x, axis=1, keepdims=True)
            np.divide(x, nrm, out=x, where=nrm > 0)
            out += np.float32(w) * x
        return out

    return run


class _OwnSemantics(np.ndarray):
    """A peer result computed with other conventions: only its shape is checked."""


def _rust_peer(data, threads):
    """The PyPI ``fastrp`` package (Rust + rayon), its own conventions (weights over powers 0..k,
    no per-iteration normalisation): weights [0, 0, 1, 1] are GDS's (0, 1, 1). Rayon's pool is
    sized by RAYON_NUM_THREADS when it first starts, so it keeps the first thread count measured."""
    import os

    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    import fastrp

    g, dim = data["g"], data["dim"]
    return lambda: np.asarray(fastrp.fit_csr(g.indptr, g.indices, g.data, g.shape[0], dim,
                                             weights=[0.0, 0.0, 1.0, 1.0], seed=0,
                                             undirected=False)).view(_OwnSemantics)


def _fastrp_check(data, result, expected) -> Optional[str]:
    a, b = np.asarray(result), np.asarray(expected)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if isinstance(result, _OwnSemantics) or isinstance(expected, _OwnSemantics):
        return None if np.isfinite(a).all() else "non-finite values"
    return _close(a, b, rtol=2e-3)


CASES = [
    Case(family=FAMILY, name="srp_dense_4096to256",
         title="sparse random projection, dense float32 X (d=4096) -> 256, density auto",
         sizes={"quick": dict(n=2_000, d=4096, k=256), "default": dict(n=20_000, d=4096, k=256),
                "full": dict(n=100_000, d=4096, k=256)},
         setup=_dense_setup, embkern=_srp_embkern, items=lambda p: p["n"], unit="rows",
         check=lambda data, r, e: _close(r, e),
         peers=[Peer("torch.sparse.mm", _torch_mm, ("torch",)),
                Peer("sklearn.SparseRandomProjection.transform", _sklearn, ("sklearn",))]),
    Case(family=FAMILY, name="srp_csr_1Mto256",
         title="sparse random projection, CSR X (d=2^20, 100 nnz/row) -> 256 dense",
         sizes={"quick": dict(n=5_000, d=1 << 20, k=256, nnz=100),
                "default": dict(n=40_000, d=1 << 20, k=256, nnz=100),
                "full": dict(n=200_000, d=1 << 20, k=256, nnz=100)},
         setup=_sparse_setup, embkern=_srp_embkern, items=lambda p: p["n"], unit="rows",
         check=lambda data, r, e: _close(r, e),
         peers=[Peer("sklearn.SparseRandomProjection.transform", _sklearn, ("sklearn", "scipy"))]),
    Case(family=FAMILY, name="fastrp_dim128",
         title="FastRP (GDS semantics), dim 128, 3 iterations, random graph with 10 edges per node",
         sizes={"quick": dict(n=10_000, edges=100_000, dim=128),
                "default": dict(n=100_000, edges=1_000_000, dim=128),
                "full": dict(n=1_000_000, edges=10_000_000, dim=128)},
         setup=_fastrp_setup, embkern=_fastrp_embkern, items=lambda p: p["n"], unit="nodes",
         check=_fastrp_check,
         peers=[Peer("numba SpMM", _numba_peer, ("numba", "scipy")),
                Peer("scipy", _scipy_peer, ("scipy",)),
                Peer("fastrp (Rust, PyPI)", _rust_peer, ("fastrp",))]),
]


# ---------------------------------------------------------------------------------------------
# FastRP peak memory (run in a fresh process: python -m embkern.bench.projection --memory N E)
# ---------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def fastrp_peak_memory(n: int, edges: int, dim: int = 128, backend: str = "cpu") -> Dict[str, Any]:
    """Peak resident memory of one ``fastrp`` call beyond the graph, in units of one n x dim
    float32 buffer (Linux: VmHWM is reset through /proc/self/clear_refs after the graph is built,
    so C++ allocations count too)."""
    import gc

    g = _graph(np.random.default_rng(0), n, edges)
    if backend == "numba":  # compile first, so the JIT's own memory is not counted
        P.fastrp(_graph(np.random.default_rng(1), 100, 300), dim, backend=backend)
    gc.collect()
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    out = P.fastrp(g, dim, backend=backend)
    peak = _status_kib("VmHWM")
    buf = n * dim * 4 / 1024
    return {"n": n, "edges": edges, "dim": dim, "backend": backend,
            "graph_MiB": (g.indptr.nbytes + g.indices.nbytes + g.data.nbytes) / 2**20,
            "baseline_MiB": base / 1024, "peak_MiB": peak / 1024,
            "extra_buffers": (peak - base) / buf, "out_shape": out.shape}


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 4 and sys.argv[1] == "--memory":
        print(fastrp_peak_memory(int(sys.argv[2]), int(sys.argv[3]),
                                 backend=sys.argv[4] if len(sys.argv) > 4 else "cpu"))
    else:
        print("usage: python -m embkern.bench.projection --memory N_NODES N_EDGES [cpu|numba]")
