"""embkern.projection: sparse random projection (against float64 numpy references and
scikit-learn), the CSR kernel, and FastRP (against a numpy/scipy re-statement of GDS's algorithm).
Every correctness test runs on each ISA tier this CPU can run and on Numba (``backend`` fixture)."""
import math
import warnings

import numpy as np
import pytest

import embkern
from embkern import _dispatch as _d
from embkern import projection as P

sp = pytest.importorskip("scipy.sparse")

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (3, 17), (33, 64), (17, 1000), (130, 65)]


def _tol(dtype, length):
    eps = np.finfo(dtype).eps
    return dict(rtol=64 * eps * math.sqrt(length + 1), atol=64 * eps * math.sqrt(length + 1))


def _ref(x, comp):
    dense = x.toarray() if sp.issparse(x) else np.asarray(x)
    return dense.astype(np.float64) @ comp.toarray().astype(np.float64).T


def _assert_close(got, want, dtype, length):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=_tol(dtype, length)["rtol"],
                               atol=_tol(dtype, length)["atol"] * scale)


# ----------------------------------------------------------------------------------------------
# the generated matrix
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("density", ["auto", 0.3, 1.0, 0.01])
def test_components_distribution(density):
    d, k = 40_000, 300
    est = P.SparseRandomProjection(k, density=density, seed=7).fit(np.zeros((2, d)))
    comp = est.components_
    p = est.density_
    assert comp.shape == (k, d) and comp.dtype == np.float64
    total = k * d
    nnz = comp.nnz
    sigma = math.sqrt(total * p * (1 - p)) + 1e-9
    assert abs(nnz - total * p) <= 6 * sigma, (nnz, total * p)
    scale = math.sqrt(1 / p) / math.sqrt(k)
    np.testing.assert_allclose(np.abs(comp.data), scale, rtol=1e-15)
    pos = int((comp.data > 0).sum())
    assert abs(pos - nnz / 2) <= 6 * math.sqrt(nnz / 4) + 1
    # columns: counts per feature follow Binomial(k, p) (mean and variance)
    per_col = np.diff(comp.tocsc().indptr)
    assert abs(per_col.mean() - k * p) <= 6 * math.sqrt(k * p * (1 - p) / d) + 1e-9
    if 0 < p < 1:
        assert abs(per_col.var() / (k * p * (1 - p)) - 1) < 0.1
    # entries are spread over all components (no row starved)
    per_row = np.diff(comp.indptr)
    assert abs(per_row.mean() - d * p) <= 6 * math.sqrt(d * p * (1 - p) / k) + 1e-9


def test_components_same_on_every_backend_and_thread_count(backend):
    est = P.SparseRandomProjection(64, density=0.02, seed=3).fit(np.zeros((1, 5000)))
    ref = P.SparseRandomProjection(64, density=0.02, seed=3).fit(np.zeros((1, 5000)))
    old = embkern.get_num_threads()
    try:
        embkern.set_num_threads(1)
        a = est._columns(backend)
        embkern.set_num_threads(2)
        b = ref._columns("numba")
    finally:
        embkern.set_num_threads(old)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    other = P.SparseRandomProjection(64, density=0.02, seed=4).fit(np.zeros((1, 5000)))
    assert (other.components_ != est.components_).nnz > 0


def test_jl_distances_preserved():
    rng = np.random.default_rng(0)
    n, d, eps = 60, 3000, 0.5
    x = rng.standard_normal((n, d))
    est = P.SparseRandomProjection(eps=eps, seed=1).fit(x)
    assert est.n_components_ == P.johnson_lindenstrauss_min_dim(n, eps=eps)
    y = est.transform(x)
    iu = np.triu_indices(n, 1)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)[iu]
    dy = ((y[:, None] - y[None]) ** 2).sum(-1)[iu]
    ratio = dy / dx
    assert ((ratio > 1 - eps) & (ratio < 1 + eps)).mean() > 0.99
    assert abs(ratio.mean() - 1) < 0.05


# ----------------------------------------------------------------------------------------------
# transform
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_transform_dense(backend, rng, dtype, shape):
    n, d = shape
    x = rng.standard_normal(shape).astype(dtype)
    for k, density in ((5, "auto"), (19, 0.5), (40, 1.0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", P.DataDimensionalityWarning)
            est = P.SparseRandomProjection(k, density=density, seed=11).fit(x)
        y = est.transform(x, backend=backend)
        assert y.dtype == dtype and y.shape == (n, k)
        _assert_close(y, _ref(x, est.components_), dtype, d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_transform_sparse(backend, rng, dtype, fmt):
    n, d, k = 45, 3001, 33
    x = sp.random(n, d, density=0.01, format=fmt, dtype=dtype, random_state=5)
    est = P.SparseRandomProjection(k, seed=2).fit(x)
    y = est.transform(x, backend=backend)
    assert y.dtype == dtype and y.shape == (n, k) and isinstance(y, np.ndarray)
    _assert_close(y, _ref(x, est.components_), dtype, d)
    # dense mode (density >= 1/16) and an empty row
    x = x.tocsr()
    x[3] = 0
    est = P.SparseRandomProjection(k, density=0.2, seed=2).fit(x)
    _assert_close(est.transform(x, backend=backend), _ref(x, est.components_), dtype, d)


def test_transform_integer_input_is_float64(backend):
    x = np.arange(40).reshape(4, 10)
    y = P.SparseRandomProjection(3, seed=0).fit(x).transform(x, backend=backend)
    assert y.dtype == np.float64


def test_identical_for_threads_and_backends(rng):
    x = rng.standard_normal((301, 700)).astype(np.float32)
    xs = sp.random(301, 20_000, density=0.003, format="csr", dtype=np.float32, random_state=1)
    est_d = P.SparseRandomProjection(48, seed=5).fit(x)
    est_s = P.SparseRandomProjection(48, seed=5).fit(xs)
    old = embkern.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            embkern.set_num_threads(threads)
            for b in ("cpu", "numba"):
                outs.append((est_d.transform(x, backend=b), est_s.transform(xs, backend=b)))
    finally:
        embkern.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(o[0], outs[0][0])
        np.testing.assert_array_equal(o[1], outs[0][1])


# ----------------------------------------------------------------------------------------------
# sparse_project
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 5), (40, 257, 17)])
def test_sparse_project(backend, rng, dtype, shape):
    n, d, k = shape
    comp = sp.random(k, d, density=0.3, format="csr", random_state=3)  # float64, cast to x's dtype
    x = rng.standard_normal((n, d)).astype(dtype)
    y = P.sparse_project(x, comp, backend=backend)
    assert y.dtype == dtype
    _assert_close(y, _ref(x, comp), dtype, d)
    xs = sp.csr_matrix(np.where(rng.random((n, d)) < 0.2, x, 0).astype(dtype))
    ys = P.sparse_project(xs, comp.tocoo(), backend=backend)
    assert ys.dtype == dtype
    _assert_close(ys, _ref(xs, comp), dtype, d)
    np.testing.assert_array_equal(P.sparse_project(x, comp, backend="numba"), y)


# ----------------------------------------------------------------------------------------------
# scikit-learn
# ----------------------------------------------------------------------------------------------
def test_check_estimator():
    """scikit-learn's own estimator checks. n_components=2 as scikit-learn's own test suite sets
    for its random projections (the checks use 20-30 samples of 3-10 features, for which "auto"
    asks for thousands of components and fit rightly raises). No check is skipped."""
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", P.DataDimensionalityWarning)
        check_estimator(P.SparseRandomProjection(n_components=2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_sklearn(rng, dtype):
    rp = pytest.importorskip("sklearn.random_projection")
    x = rng.standard_normal((50, 400)).astype(dtype)
    xs = sp.random(50, 400, density=0.05, format="csr", dtype=dtype, random_state=2)
    for est in (rp.SparseRandomProjection(20, random_state=0), rp.GaussianRandomProjection(20, random_state=0)):
        est.fit(x)
        ours = P.SparseRandomProjection.from_sklearn(est)
        want = est.transform(x)
        _assert_close(ours.transform(x), want, dtype, 400)
        want_s = est.transform(xs)
        want_s = want_s.toarray() if sp.issparse(want_s) else want_s
        _assert_close(ours.transform(xs), want_s, dtype, 400)
        assert (ours.components_ != est.components_).nnz == 0 if sp.issparse(est.components_) else True


def test_fit_matches_sklearn_parameters():
    rp = pytest.importorskip("sklearn.random_projection")
    x = np.zeros((1000, 10_000))
    ours = P.SparseRandomProjection(eps=0.2).fit(x)
    theirs = rp.SparseRandomProjection(eps=0.2).fit(x)
    assert ours.n_components_ == theirs.n_components_
    assert ours.density_ == theirs.density_
    assert P.johnson_lindenstrauss_min_dim(1000, eps=0.2) == rp.johnson_lindenstrauss_min_dim(1000, eps=0.2)


# ----------------------------------------------------------------------------------------------
# FastRP
# ----------------------------------------------------------------------------------------------
_U = np.uint64


def _mix64(z):
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


def _initial_vectors(n, dim, seed, node_scale):
    """GDS initial vectors from the documented counter-based hash (srp_rng.hpp), in numpy."""
    with np.errstate(over="ignore"):
        key = _mix64(_U(seed) ^ (_U(4) * _U(0xA24BAED4963EE407)))
        u = np.arange(n, dtype=np.uint64)[:, None]
        t4 = np.arange((dim + 3) // 4, dtype=np.uint64)[None, :]
        h = _mix64(key ^ (u * _U(0x9E3779B97F4A7C15)) ^ (t4 * _U(0xD1B54A32D192ED03)))
    fields = np.stack([(h >> _U(16 * s)) & _U(0xFFFF) for s in range(4)], axis=-1).reshape(n, -1)[:, :dim]
    c = np.sqrt(3.0 / dim) * node_scale[:, None]
    return np.where(fields < 10923, c, np.where(fields < 21846, -c, 0.0))


def _normalize(a):
    nrm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, nrm, out=np.zeros_like(a), where=nrm > 0)


def fastrp_reference(adj, dim, weights, beta=0.0, self_influence=0.0, seed=0, init=None):
    """FastRP as GDS defines it, in float64 numpy/scipy (``init``: initial vectors, else the
    counter-based ones)."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    deg = np.diff(adj.indptr).astype(np.float64)
    scale = np.where(deg > 0, np.power(np.where(deg > 0, deg, 1.0), beta), 1.0)
    r = _initial_vectors(adj.shape[0], dim, seed, scale) if init is None else init * scale[:, None]
    wsum = np.asarray(adj.sum(axis=1)).ravel()
    out = self_influence * _normalize(r)
    e = r
    for w in weights:
        e = _normalize((adj @ e) / np.where(wsum > 0, wsum, 1.0)[:, None])
        out = out + w * e
    return out


def _random_graph(n, avg_deg, seed, weighted=False):
    rng = np.random.default_rng(seed)
    m = n * avg_deg // 2
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.uniform(0.5, 2.0, m) if weighted else np.ones(m)
    g = sp.coo_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    g.sum_duplicates()
    return g


@pytest.mark.parametrize("dim", [1, 7, 64, 130])
@pytest.mark.parametrize("weighted", [False, True])
def test_fastrp_matches_reference(backend, dim, weighted):
    g = _random_graph(300, 6, 1, weighted)
    g[5] = 0  # an isolated row
    g.eliminate_zeros()
    kw = dict(iteration_weights=(0.5, 1.0, 2.0), normalization_strength=-0.5, self_influence=0.3, seed=9)
    got = P.fastrp(g, dim, backend=backend, **kw)
    want = fastrp_reference(g, dim, kw["iteration_weights"], -0.5, 0.3, 9)
    assert got.dtype == np.float32 and got.shape == (300, dim)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # tuple input, directed (non-symmetric) graph
    t = sp.triu(g).tocsr()
    got = P.fastrp((t.indptr, t.indices, t.data), dim, backend=backend, **kw)
    np.testing.assert_allclose(got, fastrp_reference(t, dim, kw["iteration_weights"], -0.5, 0.3, 9),
                               rtol=1e-4, atol=1e-5)


def test_fastrp_defaults_and_identity(rng):
    g = _random_graph(2000, 10, 2)
    outs = []
    old = embkern.get_num_threads()
    try:
        for threads in (1, 2):
            embkern.set_num_threads(threads)
            for b in ("cpu", "numba"):
                outs.append(P.fastrp(g, 64, backend=b))
    finally:
        embkern.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    np.testing.assert_allclose(outs[0], fastrp_reference(g, 64, (0.0, 1.0, 1.0)), rtol=1e-4, atol=1e-5)
    # initial density 1/3 and magnitudes sqrt(3 / dim)
    r = P.fastrp(g, 96, iteration_weights=(), self_influence=1.0)
    assert r.shape == (2000, 96)
    init = _initial_vectors(2000, 96, 0, np.ones(2000))
    np.testing.assert_allclose(r, _normalize(init), rtol=1e-5, atol=1e-6)
    assert abs((init != 0).mean() - 1 / 3) < 0.01
    assert np.allclose(np.abs(init[init != 0]), math.sqrt(3 / 96))


@pytest.mark.parametrize("weights, si", [
    ((0.0, 1.0, 1.0), 0.0),       # two-buffer plan: the sum formed in the last iteration
    ((0.0, 0.0, 1.0, 1.0), 0.0),  # two buffers, more iterations
    ((0.0, 0.0, 2.5), 0.0),       # two buffers, only the last term
    ((-1.5,), 0.0),               # two buffers, one iteration
    ((0.0, 1.0, 1.0), 0.5),       # self influence: three buffers
    ((1.0, 0.0, 1.0), 0.0),       # an early nonzero weight: three buffers
    ((), 1.0),                    # no iteration
])
@pytest.mark.parametrize("dim", [20, 24])  # 20: the generic kernel; 24: the SIMD one
def test_fastrp_memory_plans_are_bit_identical(weights, si, dim):
    """The compiled path stores only what later iterations read (two buffers when only the last two
    weights may be nonzero, three otherwise); Numba always keeps three. The bits must agree."""
    g = _random_graph(500, 8, 4, weighted=True)
    g[7] = 0  # an isolated node: zero rows and signed zeros
    g.eliminate_zeros()
    kw = dict(iteration_weights=weights, self_influence=si, normalization_strength=-0.3, seed=5)
    got = P.fastrp(g, dim, backend="cpu", **kw)
    want = P.fastrp(g, dim, backend="numba", **kw)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_allclose(got, fastrp_reference(g, dim, weights, -0.3, si, 5), rtol=1e-4, atol=1e-5)


def _community_score(emb, labels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return cross_val_score(LogisticRegression(max_iter=2000), emb, labels, cv=3).mean()


def test_fastrp_recovers_communities():
    pytest.importorskip("sklearn")
    nx = pytest.importorskip("networkx")
    # planted partition: 4 communities of 100 nodes
    g = nx.planted_partition_graph(4, 100, 0.12, 0.01, seed=3)
    labels = np.repeat(np.arange(4), 100)
    adj = nx.to_scipy_sparse_array(g, nodelist=range(400), format="csr")
    kw = dict(iteration_weights=(0.0, 1.0, 1.0), normalization_strength=-0.5)
    ours = _community_score(P.fastrp(adj, 64, **kw), labels)
    rng = np.random.default_rng(0)
    init = rng.choice([np.sqrt(3 / 64), 0, -np.sqrt(3 / 64)], p=[1 / 6, 2 / 3, 1 / 6], size=(400, 64))
    ref = _community_score(fastrp_reference(adj, 64, kw["iteration_weights"], -0.5, init=init), labels)
    assert ours > 0.9 and ours >= ref - 0.05, (ours, ref)
    # karate club: the two factions
    g = nx.karate_club_graph()
    labels = np.array([g.nodes[u]["club"] == "Officer" for u in range(34)], int)
    adj = nx.to_scipy_sparse_array(g, nodelist=range(34), weight=None, format="csr")
    ours = _community_score(P.fastrp(adj, 32, iteration_weights=(1.0, 1.0, 1.0), seed=1), labels)
    init = rng.choice([np.sqrt(3 / 32), 0, -np.sqrt(3 / 32)], p=[1 / 6, 2 / 3, 1 / 6], size=(34, 32))
    ref = _community_score(fastrp_reference(adj, 32, (1.0, 1.0, 1.0), init=init), labels)
    assert ours > 0.8 and ours >= ref - 0.1, (ours, ref)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
X = np.ones((5, 10))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_components=0), ValueError, "n_components"),
    (dict(n_components=-3), ValueError, "n_components"),
    (dict(n_components=2.5), TypeError, "n_components"),
    (dict(n_components="many"), ValueError, "n_components"),
    (dict(n_components="auto"), ValueError, "target dimension"),
    (dict(n_components=3, density=0.0), ValueError, "density"),
    (dict(n_components=3, density=1.5), ValueError, "density"),
    (dict(n_components=3, density="x"), ValueError, "density"),
    (dict(n_components=3, seed=1.5), TypeError, "seed"),
    (dict(eps=1.5), ValueError, "eps"),
])
def test_bad_estimator_params(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        P.SparseRandomProjection(**kwargs).fit(X)


def test_bad_inputs():
    est = P.SparseRandomProjection(3).fit(X)
    with pytest.warns(P.DataDimensionalityWarning):
        P.SparseRandomProjection(20).fit(X)
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.transform(bad)
    with pytest.raises(ValueError, match="NaN"):
        P.SparseRandomProjection(3).fit(bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="inf"):
        est.transform(sp.csr_matrix(bad))
    with pytest.raises(ValueError, match="features"):
        est.transform(np.ones((2, 9)))
    with pytest.raises(ValueError, match="2D"):
        est.transform(np.ones(10))
    with pytest.raises(P.NotFittedError):
        P.SparseRandomProjection(3).transform(X)
    with pytest.raises(ValueError, match="0 sample"):
        P.SparseRandomProjection(3).fit(np.ones((0, 4)))
    with pytest.raises((TypeError, ValueError)):
        est.transform(np.array([["a"] * 10], dtype=object))
    with pytest.raises(TypeError):
        est.transform(np.array([[{"a": 1}] * 10], dtype=object))
    with pytest.raises(ValueError, match="n_features"):
        P.sparse_project(np.ones((2, 4)), sp.eye(3, 5, format="csr"))
    with pytest.raises(ValueError, match="NaN"):
        P.sparse_project(np.ones((2, 3)), sp.csr_matrix(np.full((2, 3), np.nan)))
    with pytest.raises(ValueError, match="backend"):
        est.transform(X, backend="tpu")


@pytest.mark.parametrize("adj, kwargs, exc, match", [
    (sp.eye(3, 4, format="csr"), {}, ValueError, "square"),
    (sp.csr_matrix(np.array([[0, -1.0], [1.0, 0]])), {}, ValueError, "non-negative"),
    (sp.csr_matrix(np.array([[0, np.nan], [1.0, 0]])), {}, ValueError, "NaN"),
    ((np.array([0, 1, 2]), np.array([1, 2])), {}, ValueError, "node ids"),
    ((np.array([0, 1, 2]), np.array([1, -1])), {}, ValueError, "node ids"),
    ((np.array([0, 2, 1]), np.array([1, 0])), {}, ValueError, "indptr"),
    ((np.array([0, 1, 2]), np.array([1.0, 0.0])), {}, TypeError, "indices"),
    (np.eye(3), {}, TypeError, "adjacency"),
    (sp.eye(3, format="csr"), dict(dim=0), ValueError, "dim"),
    (sp.eye(3, format="csr"), dict(dim=2.0), TypeError, "dim"),
    (sp.eye(3, format="csr"), dict(iteration_weights=()), ValueError, "iteration_weights"),
    (sp.eye(3, format="csr"), dict(iteration_weights=(1.0, np.nan)), ValueError, "iteration_weights"),
    (sp.eye(3, format="csr"), dict(normalization_strength=np.inf), ValueError, "normalization_strength"),
    (sp.eye(3, format="csr"), dict(seed="a"), TypeError, "seed"),
])
def test_fastrp_bad_input(adj, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        P.fastrp(adj, **kwargs)


def test_fastrp_empty_and_self_only(backend):
    g = sp.csr_matrix((4, 4))
    out = P.fastrp(g, 8, backend=backend)
    assert out.shape == (4, 8) and not out.any()
    out = P.fastrp(g, 8, iteration_weights=(), self_influence=2.0, backend=backend)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 2.0, rtol=1e-6)


@pytest.mark.parametrize("k, density, d, xdensity", [
    (256, None, 5000, 0.02),      # "auto" density: columns of 0, 1, 2 and 3+ entries
    (256, 0.05, 3000, 0.02),      # ~13 entries a column: the packed table's overflow path
    (256, None, 40000, 0.005),    # several feature blocks (build tasks)
    (64, None, 20000, 0.05),      # rows of ~1,000 entries: several chunks of the AVX2 filter
    (16384, 0.0005, 600, 0.02),   # the most components a packed entry can name
    (16385, 0.0005, 600, 0.02),   # one more: on the fly only
    (7, 0.05, 61, 0.3),           # rows shorter than a vector, two bitmap words
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_srp_sparse_packed_table_equals_on_the_fly(backend, k, density, d, xdensity, dtype):
    """When X has at least as many stored entries as features, srp_sparse computes R's columns
    once into a packed table (cached for the next call); the bits must equal generating them on
    the fly (forced here by passing a larger n_features, which only that path ignores)."""
    rng = np.random.default_rng(k + d)
    n = int(np.ceil(1.5 / xdensity)) + 2  # xdensity x d x n >= d stored entries
    x = sp.random(n, d, density=xdensity, format="csr", random_state=rng, dtype=dtype)
    x.data = rng.standard_normal(x.nnz).astype(dtype)
    assert x.nnz >= d
    est = P.SparseRandomProjection(k, density="auto" if density is None else density, seed=3)
    est.fit(x)
    seed, kk, mode, thr, cdf = est._gen_args()
    assert mode == 1
    scale = dtype(est._scale())
    f = _d.kernel("projection", "srp_sparse", backend)
    xptr = x.indptr.astype(np.int64)
    packed = f(xptr, x.indices, x.data, n, d, seed, kk, mode, thr, cdf, scale)
    again = f(xptr, x.indices, x.data, n, d, seed, kk, mode, thr, cdf, scale)  # the cached table
    fly = f(xptr, x.indices, x.data, n, x.nnz + 1, seed, kk, mode, thr, cdf, scale)
    assert packed.dtype == dtype
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(packed.view(bits), fly.view(bits))
    np.testing.assert_array_equal(again.view(bits), fly.view(bits))
    want = (x @ est.components_.T.astype(np.float64)).toarray()
    np.testing.assert_allclose(packed, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [3, 400])  # X smaller / not smaller than R: both kernels
@pytest.mark.parametrize("problem", ["nan", "inf", "id", "negative id"])
def test_transform_checks_entries_in_the_kernel(backend, rows, problem, dtype):
    """The compiled srp_sparse checks X's ids and values as it reads them (no scans before the
    call); every backend raises the same ValueError, wherever in X the bad entry is."""
    rng = np.random.default_rng(rows)
    d = 300
    x = sp.random(rows, d, density=0.05, format="csr", random_state=rng, dtype=dtype)
    est = P.SparseRandomProjection(16, seed=1).fit(x)
    last = x.nnz - 1
    indices, data = x.indices.copy(), x.data.copy()
    if problem == "nan":
        data[last] = np.nan
    elif problem == "inf":
        data[last // 2] = -np.inf
    elif problem == "id":
        indices[last] = d
    else:
        indices[0] = -1
    bad = sp.csr_matrix((data, indices, x.indptr), shape=x.shape)
    match = "NaN or inf" if problem in ("nan", "inf") else r"column indices outside \[0, 300\)"
    with pytest.raises(ValueError, match=match):
        est.transform(bad, backend=backend)
    np.testing.assert_allclose(est.transform(x, backend=backend), est.transform(x, backend="numba"),
                               rtol=1e-6)


def test_int64_ids_outside_int32_are_rejected():
    """int64 column ids are checked before they are narrowed (2**32 + 5 must not become 5)."""
    x = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 2**32 + 5]), np.array([0, 1, 2])),
                      shape=(2, 10))
    est = P.SparseRandomProjection(4, seed=0).fit(sp.csr_matrix((1, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="column indices outside"):
        est.transform(x)
