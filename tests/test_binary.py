"""Binary family: every backend and ISA tier against the numpy oracles and against faiss."""
import threading

import numpy as np
import pytest

import embkern
from embkern import binary

import reference as ref

CODE_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 96, 100,
              127, 128, 129, 192, 200, 256]


def random_codes(rng, n, cs, alphabet=None):
    if alphabet is None:
        return rng.integers(0, 256, (n, cs), dtype=np.uint8)
    # few distinct codes -> many ties
    pool = rng.integers(0, 256, (alphabet, cs), dtype=np.uint8)
    return pool[rng.integers(0, alphabet, n)]


# ---- pack_signs -----------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 7, 8, 9, 31, 64, 100, 1023])
@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_pack_signs_equals_packbits(backend, rng, d, bitorder):
    for dtype in (np.float32, np.float64, np.float16):
        x = rng.standard_normal((13, d)).astype(dtype)
        x[0, : min(d, 3)] = 0.0  # exactly at the threshold: bit clear
        got = binary.pack_signs(x, bitorder=bitorder, backend=backend)
        want = np.packbits(x > 0, axis=-1, bitorder=bitorder)
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_pack_signs_threshold_ints_1d_and_nan(backend, rng):
    x = rng.standard_normal((5, 20)).astype(np.float32)
    np.testing.assert_array_equal(binary.pack_signs(x, threshold=0.3, backend=backend),
                                  np.packbits(x > 0.3, axis=-1))
    xi = rng.integers(-5, 5, (4, 11))
    np.testing.assert_array_equal(binary.pack_signs(xi, threshold=1, backend=backend),
                                  np.packbits(xi > 1, axis=-1))
    np.testing.assert_array_equal(binary.pack_signs(x[0], backend=backend), np.packbits(x[0] > 0))
    # Documented: NaN compares false, so its bit is clear (exactly numpy's x > threshold).
    x[1, 3] = np.nan
    np.testing.assert_array_equal(binary.pack_signs(x, bitorder="little", backend=backend),
                                  np.packbits(x > 0, axis=-1, bitorder="little"))


# ---- Hamming distances ----------------------------------------------------------------------

@pytest.mark.parametrize("cs", CODE_SIZES)
def test_hamming_distance(backend, rng, cs):
    a = random_codes(rng, 11, cs)
    b = random_codes(rng, 37, cs)
    got = binary.hamming_distance(a, b, backend=backend)
    assert got.dtype == np.int32 and got.shape == (11, 37)
    np.testing.assert_array_equal(got, ref.hamming(a, b))
    np.testing.assert_array_equal(binary.hamming_distance(a, backend=backend), ref.hamming(a, a))
    np.testing.assert_array_equal(binary.hamming_distance(a[3], b, backend=backend), ref.hamming(a[3:4], b)[0])


@pytest.mark.parametrize("cs", CODE_SIZES)
@pytest.mark.parametrize("k", [1, 5, 64])
def test_hamming_topk(backend, rng, cs, k):
    q = random_codes(rng, 9, cs)
    db = random_codes(rng, 700, cs, alphabet=None if cs % 2 else 40)
    dist, idx = binary.hamming_topk(q, db, k, backend=backend)
    assert dist.dtype == np.int32 and idx.dtype == np.int64 and dist.shape == (9, k)
    want_d, want_i = ref.topk_smallest(ref.hamming(q, db), k)
    np.testing.assert_array_equal(dist, want_d)
    np.testing.assert_array_equal(idx, want_i)


def test_hamming_topk_k_equals_n_and_single_query(backend, rng):
    q = random_codes(rng, 1, 3)
    db = random_codes(rng, 257, 3, alphabet=5)
    dist, idx = binary.hamming_topk(q[0], db, 257, backend=backend)
    want_d, want_i = ref.topk_smallest(ref.hamming(q, db), 257)
    np.testing.assert_array_equal(dist, want_d[0])
    np.testing.assert_array_equal(idx, want_i[0])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_hamming_topk_split_database(backend, rng, threads):
    # Few queries and several threads: the database is cut into parts and merged exactly.
    q = random_codes(rng, 2, 16)
    db = random_codes(rng, 70_000, 16, alphabet=300)
    old = embkern.get_num_threads()
    embkern.set_num_threads(threads)
    try:
        dist, idx = binary.hamming_topk(q, db, 50, backend=backend)
    finally:
        embkern.set_num_threads(old)
    want_d, want_i = ref.topk_smallest(ref.hamming(q, db), 50)
    np.testing.assert_array_equal(dist, want_d)
    np.testing.assert_array_equal(idx, want_i)


@pytest.mark.parametrize("radius", [0, 10, 40])
@pytest.mark.parametrize("cs", [1, 8, 13])
def test_hamming_range(backend, rng, cs, radius):
    q = random_codes(rng, 6, cs)
    db = random_codes(rng, 500, cs, alphabet=60)
    lims, dist, idx = binary.hamming_range(q, db, radius, backend=backend)
    wl, wd, wi = ref.range_search(ref.hamming(q, db), radius)
    assert lims.dtype == np.int64 and dist.dtype == np.int32 and idx.dtype == np.int64
    np.testing.assert_array_equal(lims, wl)
    np.testing.assert_array_equal(dist, wd)
    np.testing.assert_array_equal(idx, wi)


# ---- faiss compatibility --------------------------------------------------------------------

@pytest.mark.parametrize("cs", CODE_SIZES)
def test_hamming_topk_equals_faiss(backend, rng, cs):
    faiss = pytest.importorskip("faiss")
    q = random_codes(rng, 20, cs)
    db = random_codes(rng, 3000, cs)
    index = faiss.IndexBinaryFlat(8 * cs)
    index.add(db)
    fd, fi = index.search(q, 10)
    dist, idx = binary.hamming_topk(q, db, 10, backend=backend)
    np.testing.assert_array_equal(dist, fd)
    # faiss orders ties arbitrarily; every id we return must have the distance we report
    np.testing.assert_array_equal(np.take_along_axis(ref.hamming(q, db), idx, 1), dist)


def test_hamming_range_and_distance_equal_faiss(backend, rng):
    faiss = pytest.importorskip("faiss")
    q = random_codes(rng, 7, 32)
    db = random_codes(rng, 2000, 32)
    index = faiss.IndexBinaryFlat(256)
    index.add(db)
    # faiss's binary range search keeps distance < radius; embkern's keeps <= radius
    flims, fd, fi = index.range_search(q, 111)
    lims, dist, idx = binary.hamming_range(q, db, 110, backend=backend)
    np.testing.assert_array_equal(lims, flims)
    for i in range(7):
        s = slice(lims[i], lims[i + 1])
        order = np.lexsort((fi[s], fd[s]))
        np.testing.assert_array_equal(dist[s], fd[s][order])
        np.testing.assert_array_equal(idx[s], fi[s][order])
    out = np.empty((7, 2000), np.int32)
    faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(db), 7, 2000, 32, faiss.swig_ptr(out))
    np.testing.assert_array_equal(binary.hamming_distance(q, db, backend=backend), out)


def test_pack_signs_matches_faiss_converter(backend, rng):
    faiss = pytest.importorskip("faiss")
    x = rng.standard_normal((9, 64)).astype(np.float32)
    want = np.empty((9, 8), np.uint8)
    faiss.fvecs2bitvecs(faiss.swig_ptr(x), faiss.swig_ptr(want), 64, 9)
    # faiss sets bit j for x >= 0, LSB first; with no exact zeros that is x > 0
    np.testing.assert_array_equal(binary.pack_signs(x, bitorder="little", backend=backend), want)


# ---- asymmetric and multi-bit scores --------------------------------------------------------

@pytest.mark.parametrize("d", [1, 7, 8, 33, 256, 300, 1024])
@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_asymmetric_scores(backend, rng, d, bitorder):
    q = rng.standard_normal((5, d)).astype(np.float32)
    codes = random_codes(rng, 41, (d + 7) // 8)
    got = binary.asymmetric_scores(q, codes, bitorder=bitorder, backend=backend)
    want = ref.asymmetric(q, codes, bitorder)
    assert got.dtype == np.float32 and got.shape == (5, 41)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.sqrt(d) * 4)
    # padding bits beyond d are ignored
    if d % 8:
        flipped = codes.copy()
        flipped[:, -1] ^= (0xFF >> (d % 8)) if bitorder == "big" else (0xFF << (d % 8)) & 0xFF
        np.testing.assert_array_equal(
            binary.asymmetric_scores(q, flipped, bitorder=bitorder, backend=backend), got)


@pytest.mark.parametrize("planes,dim", [(1, 64), (2, 512), (3, 37), (4, 8)])
def test_multibit(backend, rng, planes, dim):
    x = rng.standard_normal((60, planes, dim)).astype(np.float32)
    codes = binary.pack_signs(x.reshape(-1, dim)).reshape(60, planes, -1)
    q, db = codes[:7], codes[7:]
    for w in (None, rng.random(planes)):
        wv = 2.0 ** -np.arange(planes) if w is None else w
        want = ref.multibit(q, db, dim, wv)
        got = binary.multibit_scores(q, db, dim=dim, weights=w, backend=backend)
        assert got.dtype == np.float32 and got.shape == (7, 53)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * dim)
        s, i = binary.multibit_topk(q, db, 5, dim=dim, weights=w, backend=backend)
        want_s, want_i = ref.topk_smallest(-got.astype(np.float64), 5)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(s, -want_s.astype(np.float32))


# ---- layouts, threads, GIL ------------------------------------------------------------------

def test_non_contiguous_and_fortran_inputs(backend, rng):
    a = random_codes(rng, 20, 24)
    b = random_codes(rng, 50, 48)[:, ::2]           # strided columns
    f = np.asfortranarray(random_codes(rng, 30, 24))
    assert not b.flags.c_contiguous and not f.flags.c_contiguous
    np.testing.assert_array_equal(binary.hamming_distance(a, b, backend=backend), ref.hamming(a, np.ascontiguousarray(b)))
    d, i = binary.hamming_topk(a[::-1], f, 3, backend=backend)
    wd, wi = ref.topk_smallest(ref.hamming(a[::-1].copy(), np.ascontiguousarray(f)), 3)
    np.testing.assert_array_equal(d, wd)
    np.testing.assert_array_equal(i, wi)
    x = np.asfortranarray(rng.standard_normal((9, 21)).astype(np.float32))
    np.testing.assert_array_equal(binary.pack_signs(x, backend=backend), np.packbits(x > 0, axis=-1))


def test_empty_query_batches(backend, rng):
    db = random_codes(rng, 10, 4)
    q = np.zeros((0, 4), np.uint8)
    d, i = binary.hamming_topk(q, db, 3, backend=backend)
    assert d.shape == (0, 3) and i.shape == (0, 3)
    assert binary.hamming_distance(q, db, backend=backend).shape == (0, 10)
    lims, dist, idx = binary.hamming_range(q, db, 3, backend=backend)
    assert lims.tolist() == [0] and dist.size == 0 and idx.size == 0
    assert binary.pack_signs(np.zeros((0, 5), np.float32), backend=backend).shape == (0, 1)


def test_same_results_from_concurrent_python_threads(rng):
    q = random_codes(rng, 40, 32)
    db = random_codes(rng, 20_000, 32)
    want = binary.hamming_topk(q, db, 10)
    results = [None] * 4

    def work(t):
        results[t] = binary.hamming_topk(q, db, 10)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_kernel_releases_the_gil(rng):
    # A Python thread keeps ticking while a long kernel runs (it would stall if the GIL were held).
    q = random_codes(rng, 200, 128)
    db = random_codes(rng, 100_000, 128)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    before = len(ticks)
    binary.hamming_topk(q, db, 10, backend="cpu")
    during = len(ticks) - before
    stop.set()
    t.join()
    assert during >= 5


def test_results_independent_of_thread_count(rng):
    q = random_codes(rng, 5, 8)
    db = random_codes(rng, 50_000, 8, alphabet=1000)
    old = embkern.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 4):
            embkern.set_num_threads(n)
            outs.append(binary.hamming_topk(q, db, 30))
    finally:
        embkern.set_num_threads(old)
    for d, i in outs[1:]:
        np.testing.assert_array_equal(d, outs[0][0])
        np.testing.assert_array_equal(i, outs[0][1])


@pytest.mark.slow
def test_indices_beyond_int32(rng):
    # 2**31 + 300 one-byte codes: ids past 2**31 must come back exact (int64 index math).
    n = 2**31 + 300
    db = np.full((n, 1), 0xFF, np.uint8)
    db[n - 7, 0] = 0x00
    db[n - 3, 0] = 0x01
    dist, idx = binary.hamming_topk(np.zeros((1, 1), np.uint8), db, 2)
    assert idx.tolist() == [[n - 7, n - 3]] and dist.tolist() == [[0, 1]]


def test_large_distance_matrices_reuse_released_buffers_safely():
    """Results of 1 MiB and up may live in buffers that released results left behind; live results
    never share memory, and release_buffers() leaves live results intact."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (700, 5), dtype=np.uint8)
    b = rng.integers(0, 256, (600, 5), dtype=np.uint8)
    ref = embkern.hamming_distance(a, b, backend="numba")
    first = embkern.hamming_distance(a, b, backend="cpu")  # 1.6 MiB: from the cache
    second = embkern.hamming_distance(a, b, backend="cpu")
    assert first.ctypes.data != second.ctypes.data
    first[:] = -1  # writing one result leaves the other intact
    np.testing.assert_array_equal(second, ref)
    del first
    third = embkern.hamming_distance(b, a, backend="cpu")  # same size: may reuse first's buffer
    np.testing.assert_array_equal(third, ref.T)
    np.testing.assert_array_equal(second, ref)
    embkern.release_buffers()
    np.testing.assert_array_equal(third, ref.T)
    np.testing.assert_array_equal(second, ref)
