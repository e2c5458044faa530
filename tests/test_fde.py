"""MUVERA FDE: every backend and ISA tier against Google's reference (golden vectors from PyPI
``muvera-fde``, and live where it is installed), against an independent numpy float64 oracle
(random tables re-derived from numpy's raw MT19937 stream), batching, threads and bad input."""
import json
import math
import os

import numpy as np
import pytest

import embkern
from embkern import fde
from embkern.fde import FDEConfig, encode_documents, encode_queries

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import muvera_fde
except ImportError:  # optional test dependency
    muvera_fde = None


def golden():
    z = np.load(os.path.join(HERE, "data", "fde_golden.npz"))
    configs = json.loads(str(z["configs"]))
    tok_off = np.concatenate([[0], np.cumsum([n * c["dimension"] for n, c in zip(z["lengths"], configs)])])
    out_off = np.concatenate([[0], np.cumsum(z["out_lengths"])])
    for i, c in enumerate(configs):
        x = z["tokens"][tok_off[i]:tok_off[i + 1]].reshape(-1, c["dimension"])
        yield c, x, z["docs"][out_off[i]:out_off[i + 1]], z["queries"][out_off[i]:out_off[i + 1]]


def assert_matches_reference(got, want, cfg):
    exact = cfg.projection_type == "identity"
    if exact:  # bit for bit (identity, with or without the final projection)
        np.testing.assert_array_equal(got, want)
    else:  # AMS: the reference sums a dense matrix product in another order
        scale = max(float(np.abs(want).max()), 1e-30)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)


def test_golden_vectors(backend):
    cases = list(golden())
    assert len(cases) >= 20
    for c, x, want_doc, want_query in cases:
        cfg = FDEConfig(**c)
        assert cfg.output_dimension == len(want_doc)
        assert_matches_reference(encode_documents(x, cfg, backend=backend), want_doc, cfg)
        assert_matches_reference(encode_queries(x, cfg, backend=backend), want_query, cfg)
    # the same clouds as one ragged batch per config give the same rows
    c, x, want_doc, _ = cases[4]
    cfg = FDEConfig(**c)
    out = encode_documents([x, x[:1], x], cfg, backend=backend)
    assert_matches_reference(out[0], want_doc, cfg)
    assert_matches_reference(out[2], want_doc, cfg)


@pytest.mark.skipif(muvera_fde is None, reason="muvera-fde (Google's reference) is not installed")
def test_live_reference(backend, rng):
    from muvera_fde import (EncodingType, FixedDimensionalEncoder,
                            FixedDimensionalEncodingConfig, ProjectionType)

    for trial in range(14):
        d = int(rng.choice([3, 16, 33, 64]))
        k = trial % 7
        ams = bool(trial % 2)
        p = int(rng.integers(1, 20)) if ams else d
        reps = int(rng.integers(1, 21)) if k < 5 else int(rng.integers(1, 5))
        fill = bool(rng.integers(0, 2))
        fp = int(rng.integers(10, 3000)) if trial % 3 == 0 else None
        seed = int(rng.integers(0, 2**31 - 30))
        cfg = FDEConfig(d, num_repetitions=reps, num_simhash_projections=k, seed=seed,
                        projection_type="ams_sketch" if ams else "identity",
                        projection_dimension=p if ams else None, fill_empty_partitions=fill,
                        final_projection_dimension=fp)
        clouds = [rng.standard_normal((n, d)).astype(np.float32) for n in (1, 3, int(rng.integers(1, 301)))]
        for document in (True, False):
            kw = dict(dimension=d, num_repetitions=reps, num_simhash_projections=k, seed=seed,
                      fill_empty_partitions=fill and document,
                      encoding_type=EncodingType.AVERAGE if document else EncodingType.DEFAULT_SUM)
            if ams:
                kw.update(projection_type=ProjectionType.AMS_SKETCH, projection_dimension=p)
            if fp is not None:
                kw["final_projection_dimension"] = fp
            enc = FixedDimensionalEncoder(FixedDimensionalEncodingConfig(**kw))
            ref = np.stack([np.asarray(enc.encode_document(c) if document else enc.encode_query(c),
                                       np.float32) for c in clouds])
            f = encode_documents if document else encode_queries
            assert_matches_reference(f(clouds, cfg, backend=backend), ref, cfg)


# ---- independent numpy oracle --------------------------------------------------------------------
class _Raw:
    """std::mt19937(seed)'s raw outputs through numpy's legacy MT19937 (same seeding routine)."""

    def __init__(self, seed):
        self.rs = np.random.RandomState(seed & 0xFFFFFFFF)
        self.buf, self.pos = [], 0

    def __call__(self):
        if self.pos == len(self.buf):
            self.buf = [int(v) for v in self.rs.randint(0, 2**32, size=4096, dtype=np.uint32)]
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]


def _find_logf():
    """The C library's logf (what libstdc++'s normal_distribution<float> calls); numpy's float32
    log is a different approximation. None where no C math library can be loaded."""
    import ctypes
    import ctypes.util

    try:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fn = lib.logf
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


_LIBM_LOGF = _find_logf()


def _logf(v):
    if _LIBM_LOGF is not None:
        return np.float32(_LIBM_LOGF(float(v)))
    return np.float32(math.log(float(v)))


def _ref_normal_matrix(seed, d, k):
    raw = _Raw(seed)
    f32 = np.float32
    vals, saved = [], None
    while len(vals) < d * k:
        if saved is not None:
            vals.append(saved)
            saved = None
            continue
        while True:
            u1 = min(f32(raw()) / f32(2**32), f32(np.nextafter(f32(1), f32(0))))
            u2 = min(f32(raw()) / f32(2**32), f32(np.nextafter(f32(1), f32(0))))
            x = f32(float(f32(2) * u1) - 1.0)
            y = f32(float(f32(2) * u2) - 1.0)
            r2 = f32(x * x) + f32(y * y)
            if not (r2 > 1 or r2 == 0):
                break
        m = f32(math.sqrt(f32(f32(-2) * _logf(r2)) / r2))
        vals.append(f32(y * m))
        saved = f32(x * m)
    return np.array(vals, np.float32).reshape(k, d).T  # column-major fill


def _ref_uniform(raw, n):
    prod = raw() * n
    while (prod & 0xFFFFFFFF) < n and (prod & 0xFFFFFFFF) < (2**32 - n) % n:
        prod = raw() * n
    return prod >> 32


def _ref_bernoulli(raw):
    return (raw() + raw() * 2.0**32) / 2.0**64 < 0.5


def numpy_fde(x, cfg, document):
    """Plain float64 FDE from specs/fde.md §4 (sums in float64; tables re-derived here)."""
    d, R, k = cfg.dimension, cfg.num_repetitions, cfg.num_simhash_projections
    B, p = 1 << k, cfg.block_dimension
    x = x.astype(np.float64)
    out = np.zeros((R, B, p))
    for r in range(R):
        seed = cfg.seed + r
        if cfg.projection_type == "ams_sketch":
            raw = _Raw(seed)
            A = np.zeros((d, p))
            for i in range(d):
                c = _ref_uniform(raw, p)
                A[i, c] = 1.0 if _ref_bernoulli(raw) else -1.0
            proj = x @ A
        else:
            proj = x
        if k:
            bits = (x @ _ref_normal_matrix(seed, d, k).astype(np.float64)) > 0
            part = np.zeros(len(x), np.int64)
            for j in range(k):
                part = (part << 1) | (bits[:, j].astype(np.int64) ^ (part & 1))
        else:
            bits = np.zeros((len(x), 0), bool)
            part = np.zeros(len(x), np.int64)
        for b in range(B):
            members = part == b
            if members.any():
                out[r, b] = proj[members].sum(0) / (members.sum() if document else 1)
            elif document and cfg.fill_empty_partitions and k and len(x):
                g = b ^ (b >> 1)
                target = np.array([(g >> (k - 1 - j)) & 1 for j in range(k)], bool)
                out[r, b] = proj[int(np.argmin((bits != target).sum(1)))]
    v = out.ravel()
    if cfg.final_projection_dimension is not None:
        raw = _Raw(cfg.seed)
        fin = np.zeros(cfg.final_projection_dimension)
        for i in range(len(v)):
            t = _ref_uniform(raw, cfg.final_projection_dimension)
            fin[t] += v[i] if _ref_bernoulli(raw) else -v[i]
        v = fin
    return v


@pytest.mark.parametrize("d,R,k,ams,p,fp", [
    (7, 3, 4, False, None, None), (17, 2, 5, True, 5, None), (9, 4, 0, True, 3, None),
    (33, 1, 3, False, None, 101), (8, 5, 6, True, 8, None), (16, 2, 2, True, 16, 37),
])
def test_against_numpy_oracle(backend, rng, d, R, k, ams, p, fp):
    cfg = FDEConfig(d, num_repetitions=R, num_simhash_projections=k, seed=int(rng.integers(0, 10**6)),
                    projection_type="ams_sketch" if ams else "identity", projection_dimension=p,
                    fill_empty_partitions=True, final_projection_dimension=fp)
    clouds = [rng.standard_normal((n, d)).astype(np.float32) for n in (1, 2, 3, 17, 130)]
    for document, f in ((True, encode_documents), (False, encode_queries)):
        got = f(clouds, cfg, backend=backend)
        assert got.dtype == np.float32 and got.shape == (len(clouds), cfg.output_dimension)
        for c, row in zip(clouds, got):
            want = numpy_fde(c, cfg, document)
            np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_tables_identical_across_backends():
    from embkern import _dispatch

    if not _dispatch.core_available():
        pytest.skip("compiled module unavailable")
    from embkern._numba import fde as nf
    from embkern._core import fde as cf

    for seed, R, d, k in ((1, 3, 128, 5), (-7, 2, 9, 6), (2**31 - 2, 3, 4, 1)):
        a, b = cf.simhash_matrices(seed, R, d, k), nf.simhash_matrices(seed, R, d, k)
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
        want = _ref_normal_matrix(seed, d, k)
        if _LIBM_LOGF is not None:
            np.testing.assert_array_equal(a[:, :k], want)
        else:  # a correctly rounded log may differ from the platform's logf by an ulp
            np.testing.assert_allclose(a[:, :k], want, rtol=3e-7)
        for x, y in zip(cf.ams_tables(seed, R, d, 11), nf.ams_tables(seed, R, d, 11)):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(cf.count_sketch(3, 4000, 999), nf.count_sketch(3, 4000, 999)):
        np.testing.assert_array_equal(x, y)


# ---- batching, padding, empty clouds, threads ------------------------------------------------------
def _config(d=24, **kw):
    base = dict(num_repetitions=5, num_simhash_projections=4, projection_type="ams_sketch",
                projection_dimension=8, fill_empty_partitions=True)
    base.update(kw)
    return FDEConfig(d, **base)


@pytest.mark.parametrize("ams", [False, True])
def test_batch_forms_agree(backend, rng, ams):
    cfg = _config(projection_type="ams_sketch" if ams else "identity",
                  projection_dimension=8 if ams else None, final_projection_dimension=None)
    sizes = [5, 1, 0, 40, 3, 17]
    clouds = [rng.standard_normal((n, 24)).astype(np.float32) for n in sizes]
    for f in (encode_documents, encode_queries):
        one = np.stack([f(c, cfg, backend=backend) for c in clouds])
        assert f(clouds[0], cfg, backend=backend).ndim == 1
        np.testing.assert_array_equal(f(clouds, cfg, backend=backend), one)
        flat = np.concatenate(clouds)
        np.testing.assert_array_equal(f(flat, cfg, lengths=sizes, backend=backend), one)
        padded = np.full((len(sizes), max(sizes), 24), 7.5, np.float32)  # padding is not zero
        for i, c in enumerate(clouds):
            padded[i, :len(c)] = c
        np.testing.assert_array_equal(f(padded, cfg, lengths=np.array(sizes), backend=backend), one)
        np.testing.assert_array_equal(one[2], 0)  # empty cloud
        full = padded[:, :3]
        np.testing.assert_array_equal(f(full, cfg, backend=backend),
                                      np.stack([f(c, cfg, backend=backend) for c in full]))
        np.testing.assert_array_equal(f(clouds[3].astype(np.float64), cfg, backend=backend), one[3])
        np.testing.assert_array_equal(f(np.asfortranarray(clouds[3]), cfg, backend=backend), one[3])
        assert f([], cfg, backend=backend).shape == (0, cfg.output_dimension)


def test_empty_cloud_is_zero_everywhere(backend):
    for cfg in (_config(), _config(final_projection_dimension=50),
                _config(num_simhash_projections=0)):
        for f in (encode_documents, encode_queries):
            v = f(np.zeros((0, 24), np.float32), cfg, backend=backend)
            assert v.shape == (cfg.output_dimension,)
            np.testing.assert_array_equal(v, 0)


def test_threads_do_not_change_results(backend, rng):
    cfg = _config(num_repetitions=3)
    clouds = [rng.standard_normal((int(n), 24)).astype(np.float32) for n in rng.integers(0, 200, 300)]
    old = embkern.get_num_threads()
    try:
        embkern.set_num_threads(1)
        a = encode_documents(clouds, cfg, backend=backend)
        embkern.set_num_threads(2)
        b = encode_documents(clouds, cfg, backend=backend)
    finally:
        embkern.set_num_threads(old)
    np.testing.assert_array_equal(a, b)


def test_config_fields_and_dimensions():
    cfg = FDEConfig(128)
    assert (cfg.num_repetitions, cfg.num_simhash_projections, cfg.seed) == (1, 0, 1)
    assert cfg.projection_type == "identity" and not cfg.fill_empty_partitions
    assert cfg.output_dimension == 128
    paper = FDEConfig(128, num_repetitions=20, num_simhash_projections=5,
                      projection_type="ams_sketch", projection_dimension=16)
    assert paper.output_dimension == 10240
    assert FDEConfig(128, num_repetitions=20, num_simhash_projections=5).output_dimension == 81920
    assert FDEConfig(8, final_projection_dimension=3).output_dimension == 3


def test_fill_is_ignored_for_queries(backend, rng):
    x = rng.standard_normal((3, 16)).astype(np.float32)
    a = encode_queries(x, FDEConfig(16, num_simhash_projections=5, fill_empty_partitions=True), backend=backend)
    b = encode_queries(x, FDEConfig(16, num_simhash_projections=5), backend=backend)
    np.testing.assert_array_equal(a, b)


# ---- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(dimension=0), ValueError, "dimension"),
    (dict(dimension=8, num_simhash_projections=31), ValueError, "num_simhash_projections"),
    (dict(dimension=8, num_simhash_projections=-1), ValueError, "num_simhash_projections"),
    (dict(dimension=8, num_repetitions=0), ValueError, "num_repetitions"),
    (dict(dimension=8, projection_type="ams_sketch"), ValueError, "projection_dimension"),
    (dict(dimension=8, projection_type="ams_sketch", projection_dimension=0), ValueError, "projection_dimension"),
    (dict(dimension=8, projection_type="dense"), ValueError, "projection_type"),
    (dict(dimension=8, final_projection_dimension=0), ValueError, "final_projection_dimension"),
    (dict(dimension=8.5), TypeError, "dimension"),
    (dict(dimension=8, fill_empty_partitions="yes"), TypeError, "fill_empty_partitions"),
    (dict(dimension=128, num_repetitions=20, num_simhash_projections=30), ValueError, "dimensions"),
])
def test_bad_config(kwargs, exc, word):
    d = kwargs.pop("dimension")
    with pytest.raises(exc, match=word):
        FDEConfig(d, **kwargs)


def test_bad_input(backend):
    cfg = _config(d=8)
    x = np.ones((6, 8), np.float32)
    cases = [
        (lambda: encode_documents(np.ones((6, 9), np.float32), cfg, backend=backend), ValueError, "dimension"),
        (lambda: encode_documents([x, np.ones((2, 7))], cfg, backend=backend), ValueError, "points\\[1\\]"),
        (lambda: encode_documents(x, cfg, lengths=[2, 3], backend=backend), ValueError, "sum"),
        (lambda: encode_documents(x, cfg, lengths=[7, -1], backend=backend), ValueError, "lengths"),
        (lambda: encode_documents(x, cfg, lengths=[2.0, 4.0], backend=backend), TypeError, "lengths"),
        (lambda: encode_documents(x[None], cfg, lengths=[7], backend=backend), ValueError, "padded"),
        (lambda: encode_documents(x[None], cfg, lengths=[1, 2], backend=backend), ValueError, "lengths"),
        (lambda: encode_documents([x], cfg, lengths=[6], backend=backend), ValueError, "lengths"),
        (lambda: encode_documents(np.ones(8, np.float32), cfg, backend=backend), ValueError, "points"),
        (lambda: encode_documents(x.astype(np.complex64), cfg, backend=backend), TypeError, "points"),
        (lambda: encode_documents(x, {"dimension": 8}, backend=backend), TypeError, "config"),
        (lambda: encode_documents(x, cfg, backend="gpu0"), ValueError, "backend"),
    ]
    for nonfinite in (np.nan, np.inf):
        bad = x.copy()
        bad[4, 3] = nonfinite
        cases.append((lambda b=bad: encode_documents([x, b], cfg, backend=backend), ValueError, "NaN"))
        cases.append((lambda b=bad: encode_queries(b, cfg, backend=backend), ValueError, "NaN"))
    for fn, exc, word in cases:
        with pytest.raises(exc, match=word):
            fn()


# ---- quality: FDE retrieval recall equals the reference's -------------------------------------------
@pytest.mark.skipif(muvera_fde is None, reason="muvera-fde (Google's reference) is not installed")
def test_recall_equals_reference(rng):
    from muvera_fde import (EncodingType, FixedDimensionalEncoder,
                            FixedDimensionalEncodingConfig, ProjectionType)

    d, ndocs, ntok, nq = 32, 300, 24, 30
    docs = rng.standard_normal((ndocs, ntok, d)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=-1, keepdims=True)
    src = rng.integers(0, ndocs, nq)
    qs = docs[src][:, :8] + 0.3 * rng.standard_normal((nq, 8, d)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=-1, keepdims=True)
    chamfer = np.einsum("qid,njd->qnij", qs, docs).max(-1).sum(-1)
    truth = np.argsort(-chamfer, 1, kind="stable")[:, :10]
    cfg = FDEConfig(d, num_repetitions=10, num_simhash_projections=4, projection_type="ams_sketch",
                    projection_dimension=8, fill_empty_partitions=True)
    kw = dict(dimension=d, num_repetitions=10, num_simhash_projections=4, seed=1,
              projection_type=ProjectionType.AMS_SKETCH, projection_dimension=8)
    denc = FixedDimensionalEncoder(FixedDimensionalEncodingConfig(
        fill_empty_partitions=True, encoding_type=EncodingType.AVERAGE, **kw))
    qenc = FixedDimensionalEncoder(FixedDimensionalEncodingConfig(encoding_type=EncodingType.DEFAULT_SUM, **kw))

    def recall(dv, qv):
        top = np.argsort(-(qv.astype(np.float64) @ dv.astype(np.float64).T), 1, kind="stable")[:, :100]
        return np.mean([len(set(t) & set(r)) / 10 for t, r in zip(truth, top)])

    ours = recall(encode_documents(docs, cfg), encode_queries(qs, cfg))
    ref = recall(np.stack([denc.encode_document(x) for x in docs]), np.stack([qenc.encode_query(q) for q in qs]))
    assert ours == ref
    assert ours > 0.5
