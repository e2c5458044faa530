"""4-bit fast scan (faiss IndexPQFastScan layout and LUT quantization): every backend and ISA tier
against faiss and against a numpy oracle of the integer sums."""
import numpy as np
import pytest

import embkern
from embkern import _dispatch as _d
from embkern.pq import FastScanCodes, ProductQuantizer, adc_distances, adc_topk

PERM0 = np.array([0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15])


def kern(name, backend):
    return _d.kernel("pq", name, backend)


def random_pq(rng, m, dsub, metric="l2"):
    pq = ProductQuantizer(m * dsub, m, 4, metric=metric)
    pq.centroids = rng.standard_normal((m, 16, dsub)).astype(np.float32)
    return pq


def faiss_index(pq, x):
    index = pq.to_faiss(fastscan=True)
    index.add(x)
    return index


def faiss_packed(faiss, index):
    return faiss.rev_swig_ptr(index.codes.get(), index.codes.size()).copy()


def faiss_tables(faiss, index, q):
    """The float tables IndexPQFastScan quantizes (its compute_float_LUT)."""
    t = np.empty((len(q), index.pq.M, 16), np.float32)
    f = index.pq.compute_inner_prod_tables if index.metric_type == faiss.METRIC_INNER_PRODUCT \
        else index.pq.compute_distance_tables
    f(len(q), faiss.swig_ptr(np.ascontiguousarray(q)), faiss.swig_ptr(t))
    return t


def np_pack(codes, m):
    """Oracle of the packed layout, straight from specs/binary_pq.md §2."""
    n = codes.shape[0]
    m2, n2 = m + (m & 1), -(-n // 32) * 32
    idx = np.zeros((n2, m2), np.uint8)
    idx[:n, :m] = np.stack([codes & 15, codes >> 4], 2).reshape(n, -1)[:, :m]
    out = np.zeros((n2 // 32, m2 // 2, 2, 16), np.uint8)
    for b in range(n2 // 32):
        blk = idx[b * 32:(b + 1) * 32]
        for s in range(m2):
            out[b, s // 2, s % 2] = blk[PERM0, s] | (blk[PERM0 + 16, s] << 4)
    return out.ravel()


def np_sums(lut, codes, m, largest):
    """faiss's LUT quantization and the exact integer sums S (nq, n), plus (a, b) per query."""
    nq = lut.shape[0]
    idx = np.stack([codes & 15, codes >> 4], 2).reshape(codes.shape[0], -1)[:, :m].astype(np.int64)
    sums = np.zeros((nq, codes.shape[0]), np.int64)
    scales = []
    for q in range(nq):
        t = lut[q]
        mins = t.min(1)
        span = (t.max(1) - mins).astype(np.float32)
        a = np.float32(255) / span.max() if span.max() > 0 else np.float32(0)
        b = np.float32(0)
        for v in mins:
            b = np.float32(b + v)
        tq = np.floor(((t - mins[:, None]) * a).astype(np.float32) + np.float32(0.5)).astype(np.int64)
        sums[q] = tq[np.arange(m)[None], idx].sum(1)
        scales.append((a, b))
    return sums, scales


def np_topk_ids(sums, k, largest):
    key = -sums if largest else sums
    ids = np.arange(sums.shape[1])
    return np.stack([np.lexsort((ids, key[q]))[:k] for q in range(len(sums))])


# ---- layout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [8, 5, 16, 32])
@pytest.mark.parametrize("n", [1, 33, 100])
def test_pack_byte_identical_to_faiss(backend, rng, m, n):
    faiss = pytest.importorskip("faiss")
    pq = random_pq(rng, m, 2)
    x = rng.standard_normal((n, pq.dim)).astype(np.float32)
    index = faiss_index(pq, x)
    codes = index.sa_encode(x)
    packed = pq.pack_fastscan(codes, backend=backend)
    assert isinstance(packed, FastScanCodes) and (packed.n, packed.m, len(packed)) == (n, m, n)
    assert packed.packed.dtype == np.uint8 and packed.packed.ndim == 1
    np.testing.assert_array_equal(packed.packed, faiss_packed(faiss, index))
    np.testing.assert_array_equal(packed.packed, np_pack(codes, m))
    np.testing.assert_array_equal(kern("unpack_fastscan", backend)(packed.packed, n, m), codes)


@pytest.mark.parametrize("m", [1, 7, 12])
def test_pack_unpack_round_trip(backend, rng, m):
    n = 70
    codes = rng.integers(0, 256, (n, (m + 1) // 2), dtype=np.uint8)
    packed = kern("pack_fastscan", backend)(codes, m)
    assert packed.shape == (96 * ((m + 1) // 2),)
    np.testing.assert_array_equal(packed, np_pack(codes, m))
    want = codes.copy()
    if m % 2:
        want[:, -1] &= 0x0F  # the unused high nibble is dropped, as faiss drops it
    np.testing.assert_array_equal(kern("unpack_fastscan", backend)(packed, n, m), want)
    empty = kern("pack_fastscan", backend)(np.zeros((0, (m + 1) // 2), np.uint8), m)
    assert empty.shape == (0,)


# ---- search against faiss --------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("m,dsub", [(8, 2), (5, 4), (6, 8)])
def test_search_equals_faiss(backend, rng, metric, m, dsub):
    faiss = pytest.importorskip("faiss")
    n = 3000
    pq = random_pq(rng, m, dsub, metric)
    x = rng.standard_normal((n, pq.dim)).astype(np.float32)
    index = faiss_index(pq, x)
    codes = index.sa_encode(x)
    packed = pq.pack_fastscan(codes, backend=backend)
    q = rng.standard_normal((17, pq.dim)).astype(np.float32)
    lut = faiss_tables(faiss, index, q)
    sums, _ = np_sums(lut, codes, m, metric == "ip")
    for k in (1, 10):
        fd, _ = index.search(q, k)
        d, i = kern("fastscan_topk", backend)(lut, packed.packed, n, m, k, metric == "ip")
        assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == i.shape == (17, k)
        np.testing.assert_array_equal(d, fd)  # bit-identical distances
        # the ids are the k best integer sums, ties by smaller id
        np.testing.assert_array_equal(i, np_topk_ids(sums, k, metric == "ip"))
    # the public path: lookup_table rounds as faiss does (dsub < 16), so distances are identical
    np.testing.assert_array_equal(pq.lookup_table(q, backend=backend), lut)
    fd, _ = index.search(q, 10)
    d, i = pq.search(q, packed, 10, backend=backend)
    np.testing.assert_array_equal(d, fd)


def test_same_result_every_backend_tier_and_thread_count(rng):
    m, n = 10, 3001
    lut = rng.standard_normal((5, m, 16)).astype(np.float32)
    codes = rng.integers(0, 256, (n, m // 2), dtype=np.uint8)
    packed = kern("pack_fastscan", "numba")(codes, m)
    runs = []
    old = embkern.get_num_threads()
    try:
        for threads in (1, 2, 3):
            embkern.set_num_threads(threads)
            for largest in (False, True):
                for nq in (1, 5):
                    runs.append(((threads, largest, nq, "numba"),
                                 kern("fastscan_topk", "numba")(lut[:nq], packed, n, m, 50, largest)))
                    if _d.core_available():
                        for isa in embkern.available_isas():
                            with embkern.use_isa(isa):
                                runs.append(((threads, largest, nq, isa),
                                             kern("fastscan_topk", "cpu")(lut[:nq], packed, n, m, 50, largest)))
    finally:
        embkern.set_num_threads(old)
    for largest in (False, True):
        sums, scales = np_sums(lut, codes, m, largest)
        want_i = np_topk_ids(sums, 50, largest)
        want_d = np.stack([np.float32(np.take(sums[q], want_i[q]) * np.float64(1 / np.float64(scales[q][0]))
                                      + np.float64(scales[q][1])) for q in range(5)])
        ref = None
        for (threads, lg, nq, who), (d, i) in runs:
            if lg != largest:
                continue
            np.testing.assert_array_equal(i, want_i[:nq], err_msg=str((threads, nq, who)))
            np.testing.assert_allclose(d, want_d[:nq], rtol=1e-6)
            if nq == 5:
                if ref is None:
                    ref = d
                np.testing.assert_array_equal(d, ref, err_msg=str((threads, who)))


def test_extremes_of_the_16bit_range(backend):
    # m2 = 256 sub-quantizers whose chosen entries all quantize to 255: S = 255 * 255 (odd m)
    m, n = 255, 40
    lut = np.zeros((2, m, 16), np.float32)
    lut[:, :, 3] = 1.0
    lut[1] *= -1
    codes = np.full((n, 128), 0x33, np.uint8)
    codes[5] = 0
    packed = kern("pack_fastscan", backend)(codes, m)
    d, i = kern("fastscan_topk", backend)(lut, packed, n, m, 3, True)
    # query 0 (largest): every code but #5 has S = 255 * 255, distance S / a = 255 (a = 255)
    np.testing.assert_array_equal(i[0], [0, 1, 2])
    np.testing.assert_allclose(d[0], [255.0] * 3, atol=1e-4)
    # query 1: row minima -1 (b = -255), code #5 avoids them all: S = 255 * 255 -> about 0
    np.testing.assert_array_equal(i[1], [5, 0, 1])
    np.testing.assert_allclose(d[1], [0.0, -255.0, -255.0], atol=1e-4)
    d, i = kern("fastscan_topk", backend)(lut, packed, n, m, 2, False)
    np.testing.assert_array_equal(i, [[5, 0], [0, 1]])
    np.testing.assert_allclose(d, [[0.0, 255.0], [-255.0, -255.0]], atol=1e-4)


def test_constant_table_gives_the_bias(backend, rng):
    # faiss divides by a zero scale here (NaN); embkern returns b = sum of the row minima
    m, n = 4, 50
    lut = np.full((1, m, 16), 0.25, np.float32)
    codes = rng.integers(0, 256, (n, 2), dtype=np.uint8)
    packed = kern("pack_fastscan", backend)(codes, m)
    for largest in (False, True):
        d, i = kern("fastscan_topk", backend)(lut, packed, n, m, 5, largest)
        np.testing.assert_array_equal(d, np.ones((1, 5), np.float32))
        np.testing.assert_array_equal(i, [[0, 1, 2, 3, 4]])


# ---- re-ranking ------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_rerank_returns_exact_distances(backend, rng, metric):
    m, n, k = 8, 2000, 10
    pq = random_pq(rng, m, 4, metric)
    codes = pq.encode(rng.standard_normal((n, pq.dim)).astype(np.float32), backend=backend)
    packed = pq.pack_fastscan(codes, backend=backend)
    q = rng.standard_normal((6, pq.dim)).astype(np.float32)
    exact_d, exact_i = pq.search(q, codes, k, backend=backend)
    d, i = pq.search(q, packed, k, rerank=n, backend=backend)  # every code re-scored: exact search
    np.testing.assert_array_equal(d, exact_d)
    np.testing.assert_array_equal(i, exact_i)
    d, i = pq.search(q, packed, k, rerank=200, backend=backend)
    full = adc_distances(pq.lookup_table(q), codes)
    np.testing.assert_array_equal(np.take_along_axis(full, i, 1), d)
    assert np.all(np.diff(d, axis=1) >= 0) if metric == "l2" else np.all(np.diff(d, axis=1) <= 0)
    assert np.mean(i == exact_i) > 0.8


# ---- bad input -------------------------------------------------------------------------------

def test_bad_input(backend, rng):
    pq = random_pq(rng, 4, 2)
    codes = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    packed = pq.pack_fastscan(codes, backend=backend)
    q = rng.standard_normal((2, 8)).astype(np.float32)
    for k in (0, 41):
        with pytest.raises(ValueError, match="k"):
            pq.search(q, packed, k, backend=backend)
    with pytest.raises(ValueError, match="rerank"):
        pq.search(q, packed, 5, rerank=3, backend=backend)
    short = FastScanCodes(packed=packed.packed[:-1], n=40, m=4)
    with pytest.raises(ValueError, match="packed must hold"):
        pq.search(q, short, 5, backend=backend)
    with pytest.raises(ValueError, match="packed must hold"):
        pq.search(q, FastScanCodes(packed=packed.packed, n=100, m=4), 5, backend=backend)
    with pytest.raises(ValueError, match="m=4"):
        random_pq(rng, 2, 4).search(q, packed, 5, backend=backend)
    with pytest.raises(ValueError, match="bytes per row"):
        pq.pack_fastscan(np.zeros((3, 3), np.uint8), backend=backend)
    with pytest.raises(TypeError, match="uint8"):
        pq.pack_fastscan(np.zeros((3, 2), np.int16), backend=backend)
    with pytest.raises(ValueError, match="packed must hold"):
        kern("unpack_fastscan", backend)(packed.packed[:-32], 40, 4)
    lut = pq.lookup_table(q)
    with pytest.raises(ValueError, match="lut must have shape"):
        kern("fastscan_topk", backend)(lut[:, :3], packed.packed, 40, 4, 5, False)
    with pytest.raises(ValueError, match="at most|<= 256"):
        kern("fastscan_topk", backend)(np.zeros((1, 258, 16), np.float32),
                                       np.zeros(32 * 129, np.uint8), 1, 258, 1, False)
    with pytest.raises(ValueError, match="k must be in"):
        kern("fastscan_topk", backend)(lut, packed.packed, 40, 4, 41, False)
