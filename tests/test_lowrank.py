"""Low-rank matmuls: every backend and ISA tier against float64 numpy references, against PEFT's
LoraLayer (optional: peft + torch), against a per-row loop for multiple adapters, thread-count
invariance, and bad input."""
import numpy as np
import pytest

import embkern
from embkern import lowrank

# (leading shape, in, out, rank): batch 1, rank 1, odd sizes, tails past the 6 x 16 register
# tile and the 256-long inner blocks, leading batch dimensions, 1-D x. The last two reach the
# packed-A GEMM (a B block of more than 320 KiB: the base weight, a rank of 170) and the A-in-place
# form cut into inner blocks (rank 70 over 1,500 inputs); the others read A in place in one pass.
SHAPES = [
    ((1,), 1, 1, 1),
    ((1,), 17, 33, 1),
    ((7,), 31, 5, 3),
    ((13,), 257, 65, 17),
    ((2, 3), 64, 48, 16),
    ((150,), 300, 129, 8),
    ((), 19, 23, 2),
    ((9,), 1500, 200, 70),
    ((5,), 700, 40, 170),
]
DTYPES = [np.float32, np.float64]


def tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


def rel_err(y, ref):
    """Largest error relative to the largest reference magnitude."""
    scale = float(np.abs(ref).max()) if ref.size else 1.0
    return float(np.abs(y.astype(np.float64) - ref).max() / (scale or 1.0)) if ref.size else 0.0


def assert_close(y, ref, dtype):
    assert y.dtype == dtype
    assert y.shape == ref.shape
    assert rel_err(y, ref) < tol(dtype)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,k,n,r", SHAPES)
def test_lora_linear(backend, rng, lead, k, n, r, dtype):
    x, w, a, b, bias = (randn(rng, s, dtype) for s in ((*lead, k), (n, k), (r, k), (n, r), (n,)))
    X, W, A, B, Bi = f64(x, w, a, b, bias)
    ref = X @ W.T + 0.37 * (X @ A.T) @ B.T
    assert_close(lowrank.lora_linear(x, w, a, b, scale=0.37, backend=backend), ref, dtype)
    assert_close(lowrank.lora_linear(x, w, a, b, scale=0.37, bias=bias, backend=backend), ref + Bi, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lora_linear_blas_base(backend, rng, dtype, monkeypatch):
    """The path that hands the base GEMM to scipy's BLAS (large layers), forced on small ones."""
    pytest.importorskip("scipy")
    pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(lowrank, "_BLAS_MIN_WORK", 0)
    for lead, k, n, r in SHAPES:
        x, w, a, b, bias = (randn(rng, s, dtype) for s in ((*lead, k), (n, k), (r, k), (n, r), (n,)))
        X, W, A, B, Bi = f64(x, w, a, b, bias)
        ref = X @ W.T + 0.37 * (X @ A.T) @ B.T + Bi
        assert_close(lowrank.lora_linear(x, w, a, b, scale=0.37, bias=bias, backend=backend), ref, dtype)
    if backend == "cpu":  # the BLAS runs under embkern's thread count, which changes no bit
        # (300, 90): one BLAS block; (4100, 2050): rows and columns past the fixed block sizes
        for m, n in ((300, 90), (4100, 2050)):
            x, w, a, b = (randn(rng, s, dtype) for s in ((m, 70), (n, 70), (5, 70), (n, 5)))
            X, W, A, B = f64(x, w, a, b)
            old = embkern.get_num_threads()
            try:
                outs = []
                for t in (1, 2):
                    embkern.set_num_threads(t)
                    outs.append(lowrank.lora_linear(x, w, a, b, scale=2.0, backend="cpu"))
            finally:
                embkern.set_num_threads(old)
            np.testing.assert_array_equal(outs[0], outs[1])
            assert_close(outs[0], X @ W.T + 2.0 * (X @ A.T) @ B.T, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,k,n,r", SHAPES)
def test_lowrank_linear(backend, rng, lead, k, n, r, dtype):
    x, u, v, s, bias = (randn(rng, sh, dtype) for sh in ((*lead, k), (n, r), (r, k), (r,), (n,)))
    X, U, V, S, Bi = f64(x, u, v, s, bias)
    assert_close(lowrank.lowrank_linear(x, u, v, backend=backend), (X @ V.T) @ U.T, dtype)
    assert_close(lowrank.lowrank_linear(x, u, v, s=s, bias=bias, backend=backend),
                 ((X @ V.T) * S) @ U.T + Bi, dtype)


def random_support(rng, n, k, density):
    nnz = max(1, int(density * n * k))
    flat = np.sort(rng.choice(n * k, size=min(nnz, n * k), replace=False))
    return flat // k, flat % k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,k,n,r", SHAPES)
def test_sparse_lowrank_linear(backend, rng, lead, k, n, r, dtype):
    x, b, a, bias = (randn(rng, sh, dtype) for sh in ((*lead, k), (n, r), (r, k), (n,)))
    rows, cols = random_support(rng, n, k, 0.1)
    vals = randn(rng, rows.shape, dtype)
    dense = np.zeros((n, k))
    np.add.at(dense, (rows, cols), vals.astype(np.float64))
    X, B, A, Bi = f64(x, b, a, bias)
    ref = X @ (B @ A + dense).T + Bi
    assert_close(lowrank.sparse_lowrank_linear(x, b, a, (rows, cols, vals), bias=bias,
                                               backend=backend), ref, dtype)


def test_sparse_formats_duplicates_and_order(backend, rng):
    pytest.importorskip("scipy")
    import scipy.sparse as sp

    n, k, r = 37, 53, 4
    x, b, a = randn(rng, (11, k), np.float32), randn(rng, (n, r), np.float32), randn(rng, (r, k), np.float32)
    rows, cols = random_support(rng, n, k, 0.2)
    vals = randn(rng, rows.shape, np.float32)
    # unsorted, with duplicated entries (summed, as scipy does)
    rows2 = np.concatenate([rows, rows[:9]])
    cols2 = np.concatenate([cols, cols[:9]])
    vals2 = np.concatenate([vals, vals[:9] * 2])
    perm = rng.permutation(rows2.size)
    coo = sp.coo_matrix((vals2[perm], (rows2[perm], cols2[perm])), shape=(n, k))
    dense = coo.toarray().astype(np.float64)
    ref = x.astype(np.float64) @ (b.astype(np.float64) @ a.astype(np.float64) + dense).T
    for s in [(rows2[perm], cols2[perm], vals2[perm]), coo, coo.tocsr(), coo.tocsc(),
              sp.csr_matrix(dense), sp.csr_array(dense)]:
        assert_close(lowrank.sparse_lowrank_linear(x, b, a, s, backend=backend), ref, np.float32)
    # an empty support is the pure low-rank product
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    ref0 = x.astype(np.float64) @ (b.astype(np.float64) @ a.astype(np.float64)).T
    assert_close(lowrank.sparse_lowrank_linear(x, b, a, empty, backend=backend), ref0, np.float32)


def loop_reference(x, w, a, b, ids, scales, bias):
    """One row at a time, adapter by adapter id (-1: none)."""
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    ids = np.asarray(ids).reshape(-1)
    n = b.shape[1]
    out = np.zeros((x2.shape[0], n))
    for i, row in enumerate(x2):
        y = row @ w.T.astype(np.float64) if w is not None else np.zeros(n)
        if ids[i] >= 0:
            q = ids[i]
            y = y + scales[q] * (row @ a[q].T.astype(np.float64)) @ b[q].T.astype(np.float64)
        if bias is not None:
            y = y + bias
        out[i] = y
    return out.reshape(*x.shape[:-1], n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,k,n,r", SHAPES)
def test_multi_lora_linear(backend, rng, lead, k, n, r, dtype):
    nad = 3
    x, w, a, b, bias = (randn(rng, sh, dtype) for sh in ((*lead, k), (n, k), (nad, r, k), (nad, n, r), (n,)))
    ids = rng.integers(-1, nad, size=lead)
    scales = rng.standard_normal(nad)
    sc = scales.astype(dtype)
    got = lowrank.multi_lora_linear(x, w, a, b, ids, scales=sc, bias=bias, backend=backend)
    assert_close(got, loop_reference(x, w, a, b, ids, sc.astype(np.float64), bias.astype(np.float64)), dtype)
    delta = lowrank.multi_lora_linear(x, None, a, b, ids, scales=sc, backend=backend)
    assert_close(delta, loop_reference(x, None, a, b, ids, sc.astype(np.float64), None), dtype)
    if np.ndim(ids) and (np.asarray(ids) == -1).any():
        assert not delta.reshape(-1, n)[np.asarray(ids).reshape(-1) == -1].any()


def test_multi_lora_all_none_and_single_adapter(backend, rng):
    k, n, r = 40, 24, 4
    x, w = randn(rng, (9, k), np.float32), randn(rng, (n, k), np.float32)
    a, b = randn(rng, (2, r, k), np.float32), randn(rng, (2, n, r), np.float32)
    none = np.full(9, -1)
    np.testing.assert_array_equal(lowrank.multi_lora_linear(x, None, a, b, none, backend=backend), 0)
    base = lowrank.multi_lora_linear(x, w, a, b, none, backend=backend)
    assert_close(base, x.astype(np.float64) @ w.T.astype(np.float64), np.float32)
    # every row on adapter 1 equals lora_linear with that adapter
    ones = np.ones(9, dtype=np.int32)
    got = lowrank.multi_lora_linear(x, w, a, b, ones, scales=0.5, backend=backend)
    want = lowrank.lora_linear(x, w, a[1], b[1], scale=0.5, backend=backend)
    assert rel_err(got, want.astype(np.float64)) < 1e-5


def test_threads_do_not_change_results(rng):
    """Compiled path: bit-identical for 1 and 2 threads (row blocks never change the sums)."""
    if "cpu" not in embkern.available_backends():
        pytest.skip("compiled module unavailable")
    m, k, n, r, nad = 333, 300, 70, 9, 4
    x, w = randn(rng, (m, k), np.float32), randn(rng, (n, k), np.float32)
    a, b = randn(rng, (r, k), np.float32), randn(rng, (n, r), np.float32)
    sa, sb = randn(rng, (nad, r, k), np.float32), randn(rng, (nad, n, r), np.float32)
    ids = rng.integers(-1, nad, m)
    rows, cols = random_support(rng, n, k, 0.05)
    vals = randn(rng, rows.shape, np.float32)
    calls = [
        lambda: lowrank.lora_linear(x, w, a, b, scale=2.0, backend="cpu"),
        lambda: lowrank.lowrank_linear(x, b, a, backend="cpu"),
        lambda: lowrank.sparse_lowrank_linear(x, b, a, (rows, cols, vals), backend="cpu"),
        lambda: lowrank.multi_lora_linear(x, w, sa, sb, ids, backend="cpu"),
        lambda: lowrank.multi_lora_linear(x, None, sa, sb, ids, backend="cpu"),
    ]
    old = embkern.get_num_threads()
    try:
        results = {}
        for t in (1, 2, 3):
            embkern.set_num_threads(t)
            results[t] = [f() for f in calls]
    finally:
        embkern.set_num_threads(old)
    for t in (2, 3):
        for got, want in zip(results[t], results[1]):
            np.testing.assert_array_equal(got, want)


def test_nan_passes_through(backend, rng):
    k, n, r = 20, 18, 3
    x, w = randn(rng, (5, k), np.float32), randn(rng, (n, k), np.float32)
    a, b = randn(rng, (r, k), np.float32), randn(rng, (n, r), np.float32)
    w[3, 4] = np.nan
    want = np.isnan(x.astype(np.float64) @ w.T.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(lowrank.lora_linear(x, w, a, b, backend=backend)), want)
    b2 = b.copy()
    b2[7, 1] = np.nan
    want = np.isnan((x.astype(np.float64) @ a.T.astype(np.float64)) @ b2.T.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(lowrank.lowrank_linear(x, b2, a, backend=backend)), want)
    vals = np.array([np.nan], np.float32)
    got = lowrank.sparse_lowrank_linear(x, b, a, (np.array([2]), np.array([5]), vals), backend=backend)
    assert np.isnan(got[:, 2]).all() and not np.isnan(np.delete(got, 2, axis=1)).any()
    sa, sb = randn(rng, (2, r, k), np.float32), randn(rng, (2, n, r), np.float32)
    sa[1, 0, 0] = np.nan
    ids = np.array([0, 1, -1, 1, 0])
    got = lowrank.multi_lora_linear(x, None, sa, sb, ids, backend=backend)
    assert np.isnan(got[[1, 3]]).all() and not np.isnan(got[[0, 2, 4]]).any()


def test_dtypes_follow_x(rng):
    x = rng.standard_normal((4, 6))
    u, v = rng.standard_normal((5, 2)).astype(np.float32), rng.standard_normal((2, 6)).astype(np.float32)
    assert lowrank.lowrank_linear(x, u, v).dtype == np.float64
    assert lowrank.lowrank_linear(x.astype(np.float32), u, v).dtype == np.float32
    assert lowrank.lowrank_linear(x.astype(np.float16), u, v).dtype == np.float32
    assert lowrank.lowrank_linear(x.astype(np.int32), u, v).dtype == np.float32
    # non-contiguous inputs are copied, never an error
    xt = np.asfortranarray(x)[:, :]
    np.testing.assert_allclose(lowrank.lowrank_linear(xt, u[::1], v.T.copy().T), (x @ v.T) @ u.T, rtol=1e-6)


def test_peft_lora_layer(rng):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    k, n, r, alpha = 48, 40, 8, 16
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(k, n, bias=True))
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], lora_dropout=0.0)
    layer = get_peft_model(model, config).base_model.model.proj  # a peft LoraLayer
    base = layer.base_layer
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # B starts at zero; make the adapter matter
    layer.eval()
    x = torch.randn(3, 5, k)
    with torch.no_grad():
        want = layer(x).numpy()
    got = lowrank.lora_linear(
        x.numpy(), base.weight.detach().numpy(), layer.lora_A["default"].weight.detach().numpy(),
        layer.lora_B["default"].weight.detach().numpy(), scale=layer.scaling["default"],
        bias=base.bias.detach().numpy())
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _bad_cases():
    f = np.float32
    x = np.ones((4, 6), f)
    w, a, b = np.ones((5, 6), f), np.ones((2, 6), f), np.ones((5, 2), f)
    sa, sb = np.ones((3, 2, 6), f), np.ones((3, 5, 2), f)
    ids = np.array([0, 1, -1, 2])
    L = lowrank
    return [
        ("inner", lambda: L.lora_linear(np.ones((4, 7), f), w, a, b), ValueError, "input features"),
        ("lora_a in", lambda: L.lora_linear(x, w, np.ones((2, 5), f), b), ValueError, "lora_a"),
        ("ranks", lambda: L.lora_linear(x, w, a, np.ones((5, 3), f)), ValueError, "ranks differ"),
        ("lora_b out", lambda: L.lora_linear(x, w, a, np.ones((4, 2), f)), ValueError, "lora_b"),
        ("bias", lambda: L.lora_linear(x, w, a, b, bias=np.ones(4, f)), ValueError, "bias"),
        ("scale", lambda: L.lora_linear(x, w, a, b, scale="2"), TypeError, "scale"),
        ("weight dim", lambda: L.lora_linear(x, np.ones(6, f), a, b), ValueError, "weight"),
        ("dtype", lambda: L.lora_linear(x, w.astype(complex), a, b), TypeError, "weight"),
        ("scalar x", lambda: L.lora_linear(np.float32(1), w, a, b), ValueError, "x"),
        ("lr inner", lambda: L.lowrank_linear(x, b, np.ones((2, 5), f)), ValueError, "input features"),
        ("lr ranks", lambda: L.lowrank_linear(x, np.ones((5, 3), f), a), ValueError, "ranks differ"),
        ("lr s", lambda: L.lowrank_linear(x, b, a, s=np.ones(3, f)), ValueError, "s must"),
        ("sp ranks", lambda: L.sparse_lowrank_linear(x, np.ones((5, 3), f), a, (ids[:0], ids[:0], x[0, :0])), ValueError, "ranks differ"),
        ("sp row range", lambda: L.sparse_lowrank_linear(x, b, a, (np.array([5]), np.array([0]), np.ones(1, f))), ValueError, "row indices"),
        ("sp col range", lambda: L.sparse_lowrank_linear(x, b, a, (np.array([0]), np.array([-1]), np.ones(1, f))), ValueError, "column indices"),
        ("sp lengths", lambda: L.sparse_lowrank_linear(x, b, a, (np.array([0, 1]), np.array([0]), np.ones(1, f))), ValueError, "equal lengths"),
        ("sp float idx", lambda: L.sparse_lowrank_linear(x, b, a, (np.array([0.0]), np.array([0]), np.ones(1, f))), TypeError, "rows"),
        ("sp type", lambda: L.sparse_lowrank_linear(x, b, a, np.ones((5, 6), f)), TypeError, "sparse"),
        ("sp shape", lambda: L.sparse_lowrank_linear(x, b, a, _scipy_eye(5, 7)), ValueError, "sparse must have shape"),
        ("ml ids range", lambda: L.multi_lora_linear(x, w, sa, sb, np.array([0, 1, 3, 0])), ValueError, "adapter_ids"),
        ("ml ids low", lambda: L.multi_lora_linear(x, w, sa, sb, np.array([0, -2, 0, 0])), ValueError, "adapter_ids"),
        ("ml ids dtype", lambda: L.multi_lora_linear(x, w, sa, sb, ids.astype(float)), TypeError, "adapter_ids"),
        ("ml ids shape", lambda: L.multi_lora_linear(x, w, sa, sb, ids[:3]), ValueError, "adapter_ids"),
        ("ml ranks", lambda: L.multi_lora_linear(x, w, sa, np.ones((3, 5, 3), f), ids), ValueError, "ranks differ"),
        ("ml count", lambda: L.multi_lora_linear(x, w, sa, np.ones((2, 5, 2), f), ids), ValueError, "adapters"),
        ("ml weight", lambda: L.multi_lora_linear(x, np.ones((5, 5), f), sa, sb, ids), ValueError, "weight"),
        ("ml scales", lambda: L.multi_lora_linear(x, w, sa, sb, ids, scales=np.ones(2, f)), ValueError, "scales"),
        ("ml inner", lambda: L.multi_lora_linear(np.ones((4, 5), f), w, sa, sb, ids), ValueError, "input features"),
        ("backend", lambda: L.lowrank_linear(x, b, a, backend="gpu"), ValueError, "backend"),
    ]


def _scipy_eye(n, k):
    sp = pytest.importorskip("scipy.sparse")
    return sp.eye(n, k, format="csr", dtype=np.float32)


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input(case):
    _, call, exc, words = case
    with pytest.raises(exc, match=words):
        call()


def test_core_rejects_bad_csr():
    """The compiled module re-checks what it relies on, even when called directly."""
    if "cpu" not in embkern.available_backends():
        pytest.skip("compiled module unavailable")
    from embkern import _core

    f = np.float32
    x, b, a = np.ones((2, 6), f), np.ones((3, 2), f), np.ones((2, 6), f)
    ip = np.array([0, 2, 2, 2], np.int64)
    with pytest.raises(ValueError, match="indices"):
        _core.lowrank.sparse_lowrank_linear(x, b, a, ip, np.array([3, 1], np.int32), np.ones(2, f), None)
    with pytest.raises(ValueError, match="indices"):
        _core.lowrank.sparse_lowrank_linear(x, b, a, ip, np.array([1, 6], np.int32), np.ones(2, f), None)
    with pytest.raises(ValueError, match="adapter_ids"):
        _core.lowrank.multi_lora_linear(x, None, np.ones((1, 2, 6), f), np.ones((1, 3, 2), f),
                                        np.array([0, 1], np.int64), np.ones(1, f), None)
    with pytest.raises(TypeError, match="dtype"):
        _core.lowrank.lowrank_linear(x, b.astype(np.float64), a, None, None)


def test_large_results_are_independent_arrays(rng):
    """Outputs of >= 1 MiB come from a cache of released buffers: each result still owns its
    memory, and a reused buffer never aliases a live result."""
    if "cpu" not in embkern.available_backends():
        pytest.skip("compiled module unavailable")
    from embkern import _core

    x = randn(rng, (600, 32), np.float32)
    u, v = randn(rng, (512, 4), np.float32), randn(rng, (4, 32), np.float32)
    ref = (x.astype(np.float64) @ v.T.astype(np.float64)) @ u.T.astype(np.float64)
    first = lowrank.lowrank_linear(x, u, v, backend="cpu")
    second = lowrank.lowrank_linear(x, u, v, backend="cpu")
    assert first.ctypes.data != second.ctypes.data and first.flags.owndata is False
    first[:] = 0  # writing one result leaves the other intact
    assert rel_err(second, ref) < 1e-5
    del first
    third = lowrank.lowrank_linear(x, u, v, backend="cpu")  # may reuse first's buffer
    assert third.ctypes.data != second.ctypes.data
    assert rel_err(third, ref) < 1e-5 and rel_err(second, ref) < 1e-5
    embkern.release_buffers()
    assert rel_err(third, ref) < 1e-5  # live results are never in the cache


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_outputs(backend, rng, dtype):
    """Outputs of tens of MiB, odd rows and a column tail past the register tile."""
    m, k, n, r = 1031, 9, 8200, 3  # odd rows, a column tail past the register tile
    x, u, v = randn(rng, (m, k), dtype), randn(rng, (n, r), dtype), randn(rng, (r, k), dtype)
    X, U, V = f64(x, u, v)
    assert_close(lowrank.lowrank_linear(x, u, v, backend=backend), (X @ V.T) @ U.T, dtype)
    sa, sb = randn(rng, (2, r, k), dtype), randn(rng, (2, n, r), dtype)
    ids = rng.integers(-1, 2, m)
    got = lowrank.multi_lora_linear(x, None, sa, sb, ids, backend=backend)
    assert_close(got, loop_reference(x, None, sa, sb, ids, np.ones(2), None), dtype)


def test_unpickled_arrays_are_accepted():
    # an unpickled array's dtype is a different object of the same type: checks compare by value
    import pickle

    rng = np.random.default_rng(0)
    x, w, a, b = (pickle.loads(pickle.dumps(rng.standard_normal(s).astype(np.float32)))
                  for s in ((5, 16), (8, 16), (2, 16), (8, 2)))
    y = lowrank.lora_linear(x, w, a, b, scale=0.5, backend="cpu")
    ref = x.astype(np.float64) @ w.T + 0.5 * (x.astype(np.float64) @ a.T) @ b.T
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
