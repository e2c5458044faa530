"""pytest-benchmark: embkern.lowrank on each backend, with its peers in the same group.

Each group holds ``embkern[cpu]``, ``embkern[numba]`` and numpy's (or torch's) form of the same
product on the same float32 inputs; every benchmark also checks its result against a float64 numpy
reference, so the file passes as a test (``pytest bench/ --benchmark-disable``). Sizes are small;
``python -m embkern.bench --family lowrank --full`` runs the acceptance workloads.
"""
from __future__ import annotations

import numpy as np
import pytest

from embkern import lowrank


def run(benchmark, fn, group):
    """Warm up once (Numba compiles on its first call), then benchmark."""
    benchmark.group = group
    fn()
    return benchmark(fn)


def check(y, ref):
    y = np.asarray(y, dtype=np.float64)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.fixture(scope="module")
def data(rng_seed):
    rng = np.random.default_rng(rng_seed)
    m, k, n, r, nad = 512, 1024, 1024, 32, 8
    f = np.float32
    d = {
        "x": rng.standard_normal((m, k)).astype(f),
        "w": (rng.standard_normal((n, k)) / np.sqrt(k)).astype(f),
        "a": (rng.standard_normal((r, k)) / np.sqrt(k)).astype(f),
        "b": (rng.standard_normal((n, r)) / np.sqrt(r)).astype(f),
        "sa": (rng.standard_normal((nad, r, k)) / np.sqrt(k)).astype(f),
        "sb": (rng.standard_normal((nad, n, r)) / np.sqrt(r)).astype(f),
        "ids": rng.integers(-1, nad, m),
    }
    flat = np.sort(rng.choice(n * k, size=int(0.03 * n * k), replace=False))
    d["rows"], d["cols"] = flat // k, flat % k
    d["vals"] = (rng.uniform(-1, 1, flat.size) / np.sqrt(k)).astype(f)
    X, W, A, B = (d[key].astype(np.float64) for key in ("x", "w", "a", "b"))
    dense = np.zeros((n, k))
    dense[d["rows"], d["cols"]] = d["vals"]
    d["ref_lora"] = X @ W.T + 2.0 * (X @ A.T) @ B.T
    d["ref_lowrank"] = (X @ A.T) @ B.T
    d["ref_sparse"] = X @ (B @ A + dense).T
    ref = np.zeros((m, n))
    for q in range(nad):
        rows = np.flatnonzero(d["ids"] == q)
        ref[rows] = (X[rows] @ d["sa"][q].T.astype(np.float64)) @ d["sb"][q].T.astype(np.float64)
    d["ref_multi"] = ref
    return d


def test_lora_linear(benchmark, backend, data):
    x, w, a, b = data["x"], data["w"], data["a"], data["b"]
    check(run(benchmark, lambda: lowrank.lora_linear(x, w, a, b, scale=2.0, backend=backend), "lora"),
          data["ref_lora"])


def test_lora_numpy_unfused(benchmark, data):
    x, w, a, b = data["x"], data["w"], data["a"], data["b"]
    check(run(benchmark, lambda: x @ w.T + np.float32(2.0) * (x @ a.T) @ b.T, "lora"), data["ref_lora"])


def test_lowrank_linear(benchmark, backend, data):
    x, a, b = data["x"], data["a"], data["b"]
    check(run(benchmark, lambda: lowrank.lowrank_linear(x, b, a, backend=backend), "lowrank"),
          data["ref_lowrank"])


def test_lowrank_numpy(benchmark, data):
    x, a, b = data["x"], data["a"], data["b"]
    check(run(benchmark, lambda: (x @ a.T) @ b.T, "lowrank"), data["ref_lowrank"])


def test_sparse_lowrank_linear(benchmark, backend, data):
    x, a, b = data["x"], data["a"], data["b"]
    s = (data["rows"], data["cols"], data["vals"])
    check(run(benchmark, lambda: lowrank.sparse_lowrank_linear(x, b, a, s, backend=backend), "sparse"),
          data["ref_sparse"])


def test_sparse_numpy_scipy(benchmark, data):
    sp = pytest.importorskip("scipy.sparse")
    x, a, b = data["x"], data["a"], data["b"]
    s = sp.csr_matrix((data["vals"], (data["rows"], data["cols"])), shape=(b.shape[0], a.shape[1]))
    check(run(benchmark, lambda: (x @ a.T) @ b.T + (s @ x.T).T, "sparse"), data["ref_sparse"])


def test_multi_lora_linear(benchmark, backend, data):
    x, sa, sb, ids = data["x"], data["sa"], data["sb"], data["ids"]
    check(run(benchmark, lambda: lowrank.multi_lora_linear(x, None, sa, sb, ids, backend=backend), "multi"),
          data["ref_multi"])


def test_multi_numpy_loop(benchmark, data):
    x, sa, sb, ids = data["x"], data["sa"], data["sb"], data["ids"]

    def loop():
        y = np.zeros((x.shape[0], sb.shape[1]), np.float32)
        for q in range(sa.shape[0]):
            rows = np.flatnonzero(ids == q)
            y[rows] = (x[rows] @ sa[q].T) @ sb[q].T
        return y

    check(run(benchmark, loop, "multi"), data["ref_multi"])
