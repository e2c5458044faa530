"""pytest-benchmark: embkern.projection on each backend, with its peers in the same group.

Each group holds ``embkern[cpu]``, ``embkern[numba]`` and the peers (torch ``sparse.mm``,
scikit-learn, a Numba SpMM / scipy FastRP) on the same inputs; every benchmark also checks its
result against a float64 numpy reference, so the file passes as a test (``pytest bench/
--benchmark-disable``). Sizes are small; ``python -m embkern.bench --family projection`` runs the
real workloads, and ``python -m embkern.bench.projection --memory N E`` FastRP's peak memory.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from embkern import projection as P

sp = pytest.importorskip("scipy.sparse")


def run(benchmark, fn, group):
    """Warm up once (Numba compiles on its first call), then benchmark."""
    benchmark.group = group
    fn()
    return benchmark(fn)


@pytest.fixture(scope="module")
def dense_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2_000, 4096), dtype=np.float32)
    est = P.SparseRandomProjection(256, seed=0).fit(x[:1])
    comp = est.components_
    return x, est, comp, x.astype(np.float64) @ comp.toarray().T


@pytest.mark.parametrize("backend", ["cpu", "numba"])
def test_srp_dense_embkern(benchmark, dense_data, backend):
    x, est, _, want = dense_data
    got = run(benchmark, lambda: est.transform(x, backend=backend), "srp dense 2000x4096->256")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_srp_dense_torch(benchmark, dense_data):
    torch = pytest.importorskip("torch")
    x, _, c, want = dense_data
    tc = torch.sparse_csr_tensor(torch.from_numpy(c.indptr.astype(np.int64)),
                                 torch.from_numpy(c.indices.astype(np.int64)),
                                 torch.from_numpy(c.data), size=c.shape)
    xt = torch.from_numpy(x)
    got = run(benchmark, lambda: torch.sparse.mm(tc, xt.T).T.contiguous().numpy(), "srp dense 2000x4096->256")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_srp_dense_sklearn(benchmark, dense_data):
    rp = pytest.importorskip("sklearn.random_projection")
    x, _, c, want = dense_data
    sk = rp.SparseRandomProjection(256, random_state=0).fit(x[:2])
    sk.components_ = c
    got = run(benchmark, lambda: sk.transform(x), "srp dense 2000x4096->256")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def sparse_data():
    rng = np.random.default_rng(1)
    n, d, nnz = 5_000, 1 << 20, 100
    x = sp.csr_matrix((rng.standard_normal(n * nnz, dtype=np.float32),
                       rng.integers(0, d, n * nnz).astype(np.int32),
                       np.arange(n + 1) * nnz), shape=(n, d))
    est = P.SparseRandomProjection(256, seed=0).fit(x[:1])
    comp = est.components_
    return x, est, comp, (x.astype(np.float64) @ comp.T.astype(np.float64)).toarray()


@pytest.mark.parametrize("backend", ["cpu", "numba"])
def test_srp_csr_embkern(benchmark, sparse_data, backend):
    x, est, _, want = sparse_data
    got = run(benchmark, lambda: est.transform(x, backend=backend), "srp csr 5000x2^20->256")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_srp_csr_sklearn(benchmark, sparse_data):
    rp = pytest.importorskip("sklearn.random_projection")
    x, _, c, want = sparse_data
    sk = rp.SparseRandomProjection(256, random_state=0).fit(x[:2])
    sk.components_ = c
    got = run(benchmark, lambda: sk.transform(x), "srp csr 5000x2^20->256")
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def graph_data():
    from embkern.bench.projection import _graph, initial_vectors

    g = _graph(np.random.default_rng(2), 20_000, 200_000)
    r0 = initial_vectors(20_000, 128)
    return g, r0


def _fastrp_numpy(g, r0, weights=(0.0, 1.0, 1.0)):
    out = np.zeros(r0.shape)
    x = r0.astype(np.float64)
    for w in weights:
        x = g @ x
        nrm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, nrm, out=np.zeros_like(x), where=nrm > 0)
        out += w * x
    return out


@pytest.mark.parametrize("backend", ["cpu", "numba"])
def test_fastrp_embkern(benchmark, graph_data, backend):
    g, r0 = graph_data
    got = run(benchmark, lambda: P.fastrp(g, 128, backend=backend), "fastrp 20k nodes dim 128")
    np.testing.assert_allclose(got, _fastrp_numpy(g, r0), rtol=1e-4, atol=1e-5)


def test_fastrp_scipy(benchmark, graph_data):
    g, r0 = graph_data
    from embkern.bench.projection import _scipy_peer

    got = run(benchmark, _scipy_peer({"g": g, "r0": r0, "weights": (0.0, 1.0, 1.0)}, 1), "fastrp 20k nodes dim 128")
    np.testing.assert_allclose(got, _fastrp_numpy(g, r0), rtol=1e-3, atol=1e-4)


def test_fastrp_numba_spmm(benchmark, graph_data):
    g, r0 = graph_data
    from embkern.bench.projection import _numba_peer

    got = run(benchmark, _numba_peer({"g": g, "r0": r0, "weights": (0.0, 1.0, 1.0)}, 1), "fastrp 20k nodes dim 128")
    np.testing.assert_allclose(got, _fastrp_numpy(g, r0), rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fastrp_peak_memory():
    """With GDS's default weights, two n x dim float32 buffers beyond the graph (plus O(n)
    bookkeeping); never more than three for any weights."""
    code = ("from embkern.bench.projection import fastrp_peak_memory as f; "
            "r = f(200_000, 1_000_000); print(r['extra_buffers'])")
    extra = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout.split()[-1])
    assert extra <= 2.2, extra
