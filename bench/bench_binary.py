"""pytest-benchmark: embkern.binary on each backend, with its peer in the same group.

Each group holds ``embkern[cpu]``, ``embkern[numba]`` and the peer (faiss or numpy) on the same
inputs; every benchmark also checks its result against a plain-numpy reference, so the file passes
as a test (``pytest bench/ --benchmark-disable``). Sizes are small; ``python -m embkern.bench``
runs the real workloads.
"""
from __future__ import annotations

import numpy as np
import pytest

import embkern

POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def ref_distances(a, b):
    """All-pairs Hamming distances, plain numpy."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    for i in range(a.shape[0]):
        out[i] = POP8[np.bitwise_xor(a[i], b)].sum(axis=1)
    return out


def codes(rng, n, nbytes):
    return rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)


def run(benchmark, fn, group):
    """Warm up once (Numba compiles on its first call), then benchmark."""
    benchmark.group = group
    fn()
    return benchmark(fn)


def need_faiss():
    return pytest.importorskip("faiss")


# ------------------------------------------------------------------------------------------------
# Hamming top-k (1024-bit and 64-bit codes) vs faiss IndexBinaryFlat
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[1024, 64], ids=lambda b: f"{b}b")
def topk_data(request, rng_seed):
    rng = np.random.default_rng(rng_seed)
    nbytes = request.param // 8
    db, q = codes(rng, 20_000, nbytes), codes(rng, 16, nbytes)
    k = 10
    full = ref_distances(q, db)
    ref = np.sort(full, axis=1)[:, :k]
    return {"bits": request.param, "db": db, "q": q, "k": k, "ref": ref, "full": full}


def check_topk(data, dist, idx):
    np.testing.assert_array_equal(dist, data["ref"])
    np.testing.assert_array_equal(np.take_along_axis(data["full"], idx, axis=1), dist)


def test_hamming_topk(benchmark, backend, topk_data):
    d = topk_data
    dist, idx = run(benchmark, lambda: embkern.hamming_topk(d["q"], d["db"], d["k"], backend=backend),
                    f"hamming_topk {d['bits']}b")
    assert dist.dtype == np.int32 and idx.dtype == np.int64
    check_topk(d, dist, idx)


@pytest.mark.parametrize("use_heap", [True, False], ids=["heap", "counting"])
def test_hamming_topk_faiss(benchmark, topk_data, use_heap):
    faiss = need_faiss()
    d = topk_data
    index = faiss.IndexBinaryFlat(d["bits"])
    index.add(d["db"])
    index.use_heap = use_heap
    dist, idx = run(benchmark, lambda: index.search(d["q"], d["k"]), f"hamming_topk {d['bits']}b")
    check_topk(d, dist, idx)


# ------------------------------------------------------------------------------------------------
# all-pairs Hamming distances vs faiss.hammings
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs_data(rng_seed):
    a = codes(np.random.default_rng(rng_seed + 1), 1_000, 32)
    return {"a": a, "ref": ref_distances(a, a)}


def test_hamming_distance(benchmark, backend, pairs_data):
    a = pairs_data["a"]
    out = run(benchmark, lambda: embkern.hamming_distance(a, backend=backend), "hamming_distance 256b")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, pairs_data["ref"])


def test_hamming_distance_faiss(benchmark, pairs_data):
    faiss = need_faiss()
    a = pairs_data["a"]
    n, nbytes = a.shape

    def hammings():
        out = np.empty((n, n), dtype=np.int32)
        faiss.hammings(faiss.swig_ptr(a), faiss.swig_ptr(a), n, n, nbytes, faiss.swig_ptr(out))
        return out

    np.testing.assert_array_equal(run(benchmark, hammings, "hamming_distance 256b"), pairs_data["ref"])


# ------------------------------------------------------------------------------------------------
# Hamming range search vs faiss IndexBinaryFlat.range_search
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def range_data(rng_seed):
    rng = np.random.default_rng(rng_seed + 2)
    db, q = codes(rng, 20_000, 32), codes(rng, 16, 32)
    return {"db": db, "q": q, "radius": 100, "full": ref_distances(q, db)}


def range_pairs(lims, dist, idx):
    lims = np.asarray(lims, dtype=np.int64)
    qid = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
    return sorted(zip(qid.tolist(), np.asarray(dist, dtype=np.int64).tolist(), np.asarray(idx).tolist()))


def ref_range_pairs(data):
    qi, di = np.nonzero(data["full"] <= data["radius"])
    return sorted(zip(qi.tolist(), data["full"][qi, di].tolist(), di.tolist()))


def test_hamming_range(benchmark, backend, range_data):
    d = range_data
    lims, dist, idx = run(benchmark, lambda: embkern.hamming_range(d["q"], d["db"], d["radius"], backend=backend),
                          "hamming_range 256b")
    assert range_pairs(lims, dist, idx) == ref_range_pairs(d)


def test_hamming_range_faiss(benchmark, range_data):
    faiss = need_faiss()
    d = range_data
    index = faiss.IndexBinaryFlat(256)
    index.add(d["db"])
    # faiss keeps distances < radius, embkern <= radius
    lims, dist, idx = run(benchmark, lambda: index.range_search(d["q"], d["radius"] + 1), "hamming_range 256b")
    assert range_pairs(lims, dist, idx) == ref_range_pairs(d)


# ------------------------------------------------------------------------------------------------
# pack_signs vs np.packbits
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def float_data(rng_seed):
    return np.random.default_rng(rng_seed + 3).standard_normal((5_000, 1024), dtype=np.float32)


def test_pack_signs(benchmark, backend, float_data):
    x = float_data
    out = run(benchmark, lambda: embkern.pack_signs(x, backend=backend), "pack_signs f32 1024d")
    np.testing.assert_array_equal(out, np.packbits(x > 0, axis=-1))


def test_pack_signs_numpy(benchmark, float_data):
    x = float_data
    out = run(benchmark, lambda: np.packbits(x > 0, axis=-1), "pack_signs f32 1024d")
    assert out.shape == (x.shape[0], 128)


# ------------------------------------------------------------------------------------------------
# asymmetric scores vs numpy unpack + matmul
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def asym_data(rng_seed):
    rng = np.random.default_rng(rng_seed + 4)
    q = rng.standard_normal((16, 1024), dtype=np.float32)
    db = codes(rng, 5_000, 128)
    signs = np.unpackbits(db, axis=1).astype(np.float64) * 2 - 1
    return {"q": q, "db": db, "ref": q.astype(np.float64) @ signs.T}


def numpy_asym(q, db):
    signs = np.unpackbits(db, axis=1, count=q.shape[1]).astype(np.float32)
    signs *= 2.0
    signs -= 1.0
    return q @ signs.T


def test_asymmetric_scores(benchmark, backend, asym_data):
    d = asym_data
    out = run(benchmark, lambda: embkern.asymmetric_scores(d["q"], d["db"], backend=backend),
              "asymmetric_scores 1024d")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, d["ref"], rtol=0, atol=1e-3)


def test_asymmetric_scores_numpy(benchmark, asym_data):
    d = asym_data
    out = run(benchmark, lambda: numpy_asym(d["q"], d["db"]), "asymmetric_scores 1024d")
    np.testing.assert_allclose(out, d["ref"], rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# multi-bit codes: top-k vs a numpy composite-vector reference
# ------------------------------------------------------------------------------------------------
PLANES, DIM, K = 4, 256, 10


def composite(c):
    w = 2.0 ** -np.arange(c.shape[1])
    bits = np.unpackbits(c, axis=2, count=DIM).astype(np.float64) * 2 - 1
    return np.einsum("npd,p->nd", bits, w)


def numpy_multibit_topk(q, db, k):
    scores = composite(q).astype(np.float32) @ composite(db).astype(np.float32).T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)


@pytest.fixture(scope="module")
def multibit_data(rng_seed):
    rng = np.random.default_rng(rng_seed + 5)
    q = rng.integers(0, 256, size=(8, PLANES, DIM // 8), dtype=np.uint8)
    db = rng.integers(0, 256, size=(5_000, PLANES, DIM // 8), dtype=np.uint8)
    full = composite(q) @ composite(db).T
    return {"q": q, "db": db, "full": full, "ref": -np.sort(-full, axis=1)[:, :K]}


def test_multibit_topk(benchmark, backend, multibit_data):
    d = multibit_data
    scores, idx = run(benchmark, lambda: embkern.multibit_topk(d["q"], d["db"], K, dim=DIM, backend=backend),
                      "multibit_topk 4x256")
    np.testing.assert_allclose(scores, d["ref"], rtol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(d["full"], idx, axis=1), scores, rtol=1e-6)


def test_multibit_topk_numpy(benchmark, multibit_data):
    d = multibit_data
    scores, idx = run(benchmark, lambda: numpy_multibit_topk(d["q"], d["db"], K), "multibit_topk 4x256")
    np.testing.assert_allclose(scores, d["ref"], rtol=1e-6)
