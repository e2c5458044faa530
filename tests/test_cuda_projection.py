"""CUDA kernels of embkern.projection: host-side validation (no GPU needed), the kernel bodies under
the host emulator against the CPU backend (bit for bit: design.md promises the same bits on every
backend), and ``gpu`` tests of the real kernels (skipped without a device).

The emulator runs one OS thread per CUDA thread, so sizes here are small but awkward: row counts
that are not multiples of the 128-row tile, component counts that are not multiples of the 8 per
warp, several feature chunks with a partial last one, unsorted and duplicated CSR entries, grids
smaller than the work (``sm_count`` 1-3) so every grid-stride loop turns.
"""
import importlib

import numpy as np
import pytest

import embkern
from embkern import _cuda_backend as cb
from embkern import projection as P
from embkern._cuda_ops import projection as cproj

sp = pytest.importorskip("scipy.sparse")

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None

_emu = getattr(_cuda, "projection", None) if _cuda is not None else None
_cpu = importlib.import_module("embkern._core").projection

HAVE_GPU = cb.available()
needs_emu = pytest.mark.skipif(_emu is None, reason="embkern._cuda (projection) was not built")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")

DTYPES = [np.float32, np.float64]


# ---- helpers ------------------------------------------------------------------------------------


class FakeCAI:
    """An object exposing only a __cuda_array_interface__ dict (its pointer is never read)."""

    def __init__(self, shape, typestr="<f4", ptr=1 << 32, strides=None, version=3):
        self.shape = shape
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(ptr, False), strides=strides,
                                             version=version)


def csr_parts(m, dtype):
    m = m.tocsr()
    return (m.indptr.astype(np.int64), m.indices.astype(np.int32), np.ascontiguousarray(m.data, dtype=dtype))


def random_csr(rows, cols, density, seed, dtype):
    return csr_parts(sp.random(rows, cols, density=density, format="csr", random_state=seed), dtype)


def shuffled_rows(indptr, indices, values, seed, dup=0):
    """The same CSR rows with each row's entries permuted (and `dup` extra copies of some entries)."""
    rng = np.random.default_rng(seed)
    ptr, ind, val = [0], [], []
    for r in range(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        order = rng.permutation(hi - lo) + lo
        extra = rng.choice(order, size=min(dup, hi - lo), replace=False) if hi > lo else []
        order = np.concatenate([order, extra]).astype(np.int64)
        ind.append(indices[order])
        val.append(values[order])
        ptr.append(ptr[-1] + len(order))
    return (np.asarray(ptr, np.int64), np.concatenate(ind).astype(np.int32) if ind else np.zeros(0, np.int32),
            np.concatenate(val).astype(values.dtype) if val else np.zeros(0, values.dtype))


def transpose(indptr, indices, values, shape):
    return P._transpose_csr(indptr, indices, values, shape)


def misaligned(a, offset):
    """A C-contiguous copy of `a` whose data starts `offset` bytes past a 64-byte boundary."""
    buf = np.zeros(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def graph(n, avg_deg, seed, weighted=False, hubs=0):
    rng = np.random.default_rng(seed)
    m = n * avg_deg // 2
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    if hubs:  # a few nodes with many neighbours (unequal work per node)
        a = np.r_[a, np.repeat(np.arange(hubs), n // 2)]
        b = np.r_[b, rng.integers(0, n, hubs * (n // 2))]
    w = rng.uniform(0.5, 2.0, len(a)) if weighted else np.ones(len(a))
    g = sp.coo_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    g.sum_duplicates()
    return g


def degree_scale(indptr, strength):
    deg = np.diff(indptr).astype(np.float64)
    scale = np.ones(len(deg))
    scale[deg > 0] = np.power(deg[deg > 0], strength)
    return scale


def assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # bit for bit (NaN-free data)


# ---- host-side validation (no GPU needed) -------------------------------------------------------


def test_backend_defines_every_cpu_function():
    for name in ("csr_dense", "csr_sparse", "srp_sparse", "srp_columns", "fastrp"):
        assert callable(getattr(cproj, name))
        assert callable(getattr(_cpu, name))


def test_device_dtype_errors_name_the_argument():
    ptr, ind = FakeCAI((4,), "<i8"), FakeCAI((5,), "<i4")
    with pytest.raises(TypeError, match="x must be float32 or float64, got float16"):
        cproj.csr_dense(FakeCAI((2, 7), "<f2"), ptr, ind, FakeCAI((5,), "<f2"), 3)
    with pytest.raises(TypeError, match=r"values must be float32 \(the dtype of x\), got float64"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, FakeCAI((5,), "<f8"), 3)
    with pytest.raises(TypeError, match="indptr must be int64, got int32"):
        cproj.csr_dense(FakeCAI((2, 7)), FakeCAI((4,), "<i4"), ind, FakeCAI((5,)), 3)
    with pytest.raises(TypeError, match="indices must be int32, got int64"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, FakeCAI((5,), "<i8"), FakeCAI((5,)), 3)
    with pytest.raises(TypeError, match="xval must be float32 or float64, got int32"):
        cproj.csr_sparse(ptr, ind, FakeCAI((5,), "<i4"), 3, ptr, ind, FakeCAI((5,), "<i4"), 2)
    with pytest.raises(TypeError, match=r"cval must be float64 \(the dtype of xval\), got float32"):
        cproj.csr_sparse(ptr, ind, FakeCAI((5,), "<f8"), 3, ptr, ind, FakeCAI((5,)), 2)
    with pytest.raises(TypeError, match="xind must be int32, got uint32"):
        cproj.srp_sparse(ptr, FakeCAI((5,), "<u4"), FakeCAI((5,)), 3, 10, 0, 4, 0, 1 << 52, np.zeros(1), 0.5)
    with pytest.raises(TypeError, match="weights must be float32, got float64"):
        cproj.fastrp(ptr, ind, FakeCAI((5,), "<f8"), 3, 8, np.zeros(0), 0, [1.0], 0.0)
    with pytest.raises(TypeError, match="node_scale must be float64, got float32"):
        cproj.fastrp(ptr, ind, None, 3, 8, FakeCAI((3,)), 0, [1.0], 0.0)
    with pytest.raises(TypeError, match="cdf must be a host"):
        cproj.srp_sparse(ptr, ind, FakeCAI((5,)), 3, 10, 0, 4, 1, 0, FakeCAI((3,), "<f8"), 0.5)
    with pytest.raises(TypeError, match="k must be an int"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, FakeCAI((5,)), 3.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        cproj.srp_columns("1", 10, 4, 0, 1 << 52, np.zeros(1))


def test_device_shape_errors_name_the_argument():
    ptr, ind, val = FakeCAI((4,), "<i8"), FakeCAI((5,), "<i4"), FakeCAI((5,))
    with pytest.raises(ValueError, match="x must have 2 dimensions, got 1"):
        cproj.csr_dense(FakeCAI((7,)), ptr, ind, val, 3)
    with pytest.raises(ValueError, match=r"indptr must have rows \+ 1 = 5 entries, got 4"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, val, 4)
    with pytest.raises(ValueError, match="values and indices must have equal length, got 6 and 5"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, FakeCAI((6,)), 3)
    with pytest.raises(ValueError, match="indices must have 1 dimension, got 2"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, FakeCAI((5, 1), "<i4"), val, 3)
    with pytest.raises(ValueError, match="k must be >= 0"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, val, -1)
    with pytest.raises(ValueError, match="cptr must have d"):
        cproj.csr_sparse(ptr, ind, val, 3, FakeCAI((0,), "<i8"), ind, val, 2)
    with pytest.raises(ValueError, match=r"xptr must have rows \+ 1 = 3 entries"):
        cproj.csr_sparse(ptr, ind, val, 2, ptr, ind, val, 2)
    with pytest.raises(ValueError, match="weights and indices must have equal length"):
        cproj.fastrp(ptr, ind, FakeCAI((4,)), 3, 8, np.zeros(0), 0, [1.0], 0.0)
    with pytest.raises(ValueError, match=r"node_scale must have n = 3 \(or 0: all ones\) entries, got 2"):
        cproj.fastrp(ptr, ind, None, 3, 8, FakeCAI((2,), "<f8"), 0, [1.0], 0.0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        cproj.fastrp(ptr, ind, None, 3, 0, np.zeros(0), 0, [1.0], 0.0)
    with pytest.raises(ValueError, match="mode must be 0 or 1"):
        cproj.srp_sparse(ptr, ind, val, 3, 10, 0, 4, 2, 0, np.zeros(1), 0.5)
    with pytest.raises(ValueError, match="last cdf entry must exceed 1"):
        cproj.srp_sparse(ptr, ind, val, 3, 10, 0, 4, 1, 0, np.array([0.5, 0.9]), 0.5)
    with pytest.raises(ValueError, match="cdf must have 1 to k"):
        cproj.srp_columns(0, 10, 2, 1, 0, np.array([0.5, 0.9, 0.99, 2.0]))
    with pytest.raises(ValueError, match="d must be >= 1"):
        cproj.srp_columns(0, 0, 2, 0, 1 << 52, np.zeros(1))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        cproj.csr_dense(FakeCAI((2, 7), strides=(4, 8)), ptr, ind, val, 3)


def test_mixed_host_and_device_arguments_rejected():
    with pytest.raises(ValueError, match="indptr is a host array but x is a CUDA array"):
        cproj.csr_dense(FakeCAI((2, 7)), np.zeros(4, np.int64), FakeCAI((5,), "<i4"), FakeCAI((5,)), 3)


def test_host_csr_contents_checked_before_any_cuda_call():
    x = np.ones((2, 5), np.float32)
    ptr, ind, val = np.array([0, 2, 1], np.int64), np.array([0, 1], np.int32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="components: indptr must be non-decreasing"):
        cproj.csr_dense(x, ptr, ind, val, 2)
    with pytest.raises(ValueError, match="components: column index out of range"):
        cproj.csr_dense(x, np.array([0, 1, 2], np.int64), np.array([0, 5], np.int32), val, 2)
    with pytest.raises(ValueError, match="components: indptr out of range"):
        cproj.csr_dense(x, np.array([0, 1, 3], np.int64), ind, val, 2)
    with pytest.raises(ValueError, match="x: column index out of range"):
        cproj.csr_sparse(np.array([0, 2], np.int64), np.array([0, 3], np.int32), val, 1,
                         np.array([0, 1, 1, 1], np.int64), np.array([0], np.int32), val[:1], 2)
    with pytest.raises(ValueError, match="components: column index out of range"):
        cproj.csr_sparse(np.array([0, 1], np.int64), np.array([0], np.int32), val[:1], 1,
                         np.array([0, 1], np.int64), np.array([2], np.int32), val[:1], 2)
    with pytest.raises(ValueError, match="adjacency: column index out of range"):
        cproj.fastrp(np.array([0, 1, 2], np.int64), np.array([1, 2], np.int32), None, 2, 4, np.zeros(0), 0,
                     [1.0], 0.0)


@no_gpu_only
def test_valid_arguments_reach_the_availability_check():
    ptr, ind, val = FakeCAI((4,), "<i8"), FakeCAI((5,), "<i4"), FakeCAI((5,))
    with pytest.raises(RuntimeError, match="unavailable"):
        cproj.csr_dense(FakeCAI((2, 7)), ptr, ind, val, 3)
    with pytest.raises(RuntimeError, match="unavailable"):
        cproj.csr_sparse(ptr, ind, val, 3, ptr, ind, val, 2)
    with pytest.raises(RuntimeError, match="unavailable"):
        cproj.srp_sparse(ptr, ind, val, 3, 10, 0, 4, 0, 1 << 52, np.zeros(1), 0.5)
    with pytest.raises(RuntimeError, match="unavailable"):
        cproj.srp_columns(0, 10, 4, 0, 1 << 52, np.zeros(1))
    with pytest.raises(RuntimeError, match="unavailable"):
        cproj.fastrp(ptr, ind, FakeCAI((5,)), 3, 8, np.ones(3), 0, [1.0], 0.5)


@no_gpu_only
def test_public_api_sends_device_arrays_to_cuda():
    est = P.SparseRandomProjection(4, seed=1).fit(np.zeros((2, 7)))
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        est.transform(FakeCAI((3, 7)))
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        P.SparseRandomProjection(4).fit(FakeCAI((3, 7)))
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        P.sparse_project(FakeCAI((3, 7)), sp.eye(2, 7, format="csr"))
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        P.fastrp((FakeCAI((4,), "<i8"), FakeCAI((5,), "<i4")), 8)
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        est.transform(np.zeros((3, 7)), backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        est.transform(FakeCAI((3, 7)), backend="tpu")


# ---- kernel bodies under the host emulator ------------------------------------------------------


@needs_emu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d, k, density", [(1, 1, 1, 1.0), (5, 7, 3, 0.5), (130, 65, 19, 0.3),
                                              (37, 200, 70, 0.05), (129, 16, 9, 0.9)])
def test_emulated_csr_dense(dtype, n, d, k, density):
    rng = np.random.default_rng(n * d + k)
    x = rng.standard_normal((n, d)).astype(dtype)
    ptr, ind, val = random_csr(k, d, density, k, dtype)
    want = _cpu.csr_dense(x, ptr, ind, val, k)
    assert_same(_emu._emulate_csr_dense(x, ptr, ind, val, k), want)
    assert_same(_emu._emulate_csr_dense(x, ptr, ind, val, k, chunk=8, sm_count=2), want)  # vector fill
    assert_same(_emu._emulate_csr_dense(x, ptr, ind, val, k, chunk=5, max_warps=1), want)  # scalar fill
    assert_same(_emu._emulate_csr_dense(misaligned(x, 8), ptr, ind, val, k, chunk=4), want)


@needs_emu
@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_csr_dense_unsorted_and_duplicate_entries(dtype):
    rng = np.random.default_rng(3)
    n, d, k = 70, 41, 12
    x = rng.standard_normal((n, d)).astype(dtype)
    ptr, ind, val = shuffled_rows(*random_csr(k, d, 0.4, 3, dtype), seed=4, dup=2)
    want = _cpu.csr_dense(x, ptr, ind, val, k)
    for chunk in (0, 4, 7):  # entries whose feature lies in an earlier chunk are read from X itself
        assert_same(_emu._emulate_csr_dense(x, ptr, ind, val, k, chunk=chunk), want)


@needs_emu
def test_emulated_csr_dense_edges():
    x = np.ones((3, 4), np.float32)
    ptr = np.array([0, 0, 0], np.int64)  # two components without entries
    got = _emu._emulate_csr_dense(x, ptr, np.zeros(0, np.int32), np.zeros(0, np.float32), 2)
    assert_same(got, np.zeros((3, 2), np.float32))
    got = _emu._emulate_csr_dense(np.zeros((3, 0), np.float32), ptr, np.zeros(0, np.int32),
                                  np.zeros(0, np.float32), 2)
    assert_same(got, np.zeros((3, 2), np.float32))
    assert _emu._emulate_csr_dense(np.zeros((0, 4)), np.array([0, 1], np.int64), np.array([2], np.int32),
                                   np.ones(1), 1).shape == (0, 1)
    assert _emu._emulate_csr_dense(x, np.array([0], np.int64), np.zeros(0, np.int32),
                                   np.zeros(0, np.float32), 0).shape == (3, 0)
    # -0.0 products: the sum starts at +0.0 as on the CPU
    x = -np.ones((2, 3), np.float32)
    ptr, ind, val = np.array([0, 1], np.int64), np.array([1], np.int32), np.zeros(1, np.float32)
    got = _emu._emulate_csr_dense(x, ptr, ind, val, 1)
    assert_same(got, _cpu.csr_dense(x, ptr, ind, val, 1))
    assert not np.signbit(got).any()


@needs_emu
def test_emulated_validation_errors():
    x = np.ones((2, 5), np.float32)
    val = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="components: indptr must be non-decreasing"):
        _emu._emulate_csr_dense(x, np.array([0, 2, 1], np.int64), np.array([0, 1], np.int32), val, 2)
    with pytest.raises(ValueError, match="components: column index out of range"):
        _emu._emulate_csr_dense(x, np.array([0, 1, 2], np.int64), np.array([0, 5], np.int32), val, 2)
    with pytest.raises(ValueError, match="components: column index out of range"):
        _emu._emulate_csr_dense(x, np.array([0, 1, 2], np.int64), np.array([-1, 0], np.int32), val, 2)
    with pytest.raises(ValueError, match="components: indptr out of range"):
        _emu._emulate_csr_dense(x, np.array([0, 1, 3], np.int64), np.array([0, 1], np.int32), val, 2)
    with pytest.raises(ValueError, match="components: indptr out of range"):
        _emu._emulate_csr_dense(x, np.array([-1, 1, 2], np.int64), np.array([0, 1], np.int32), val, 2)
    with pytest.raises(ValueError, match="x: column index out of range"):
        _emu._emulate_csr_sparse(np.array([0, 2], np.int64), np.array([0, 3], np.int32), val, 1,
                                 np.array([0, 1, 1, 1], np.int64), np.array([0], np.int32), val[:1], 2)
    with pytest.raises(ValueError, match="components: column index out of range"):
        _emu._emulate_csr_sparse(np.array([0, 1], np.int64), np.array([0], np.int32), val[:1], 1,
                                 np.array([0, 1], np.int64), np.array([2], np.int32), val[:1], 2)
    with pytest.raises(ValueError, match="x: indptr must be non-decreasing"):
        _emu._emulate_srp_sparse(np.array([0, 2, 1], np.int64), np.array([0, 1], np.int32), val, 2, 0, 4, 0,
                                 1 << 52, np.zeros(1), np.float32(0.5))
    with pytest.raises(ValueError, match="adjacency: column index out of range"):
        _emu._emulate_fastrp(np.array([0, 1, 2], np.int64), np.array([1, 2], np.int32), None, 2, 4,
                             np.zeros(0), 0, [1.0], 0.0)
    with pytest.raises(ValueError, match="threads must be a power of two"):
        _emu._emulate_csr_sparse(np.array([0], np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 0,
                                 np.array([0], np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 2,
                                 threads=48)


@needs_emu
@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_csr_sparse(dtype):
    n, d, k = 300, 301, 33
    x = sp.random(n, d, density=0.03, format="csr", random_state=5, dtype=dtype).tolil()
    x[3] = 0  # an empty row
    x[7, :150] = 1.5  # a long one
    xptr, xind, xval = csr_parts(x, dtype)
    cptr, cind, cval = transpose(*random_csr(k, d, 0.1, 1, dtype), (k, d))
    want = _cpu.csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k)
    assert_same(_emu._emulate_csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k), want)
    assert_same(_emu._emulate_csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k, threads=64, sm_count=2), want)
    # Ct rows unsorted with repeated components (each output keeps the CPU's entry order)
    sptr, sind, sval = shuffled_rows(cptr, cind, cval, seed=2, dup=2)
    want = _cpu.csr_sparse(xptr, xind, xval, n, sptr, sind, sval, k)
    assert_same(_emu._emulate_csr_sparse(xptr, xind, xval, n, sptr, sind, sval, k), want)
    empty = _emu._emulate_csr_sparse(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, dtype), 0,
                                     cptr, cind, cval, k)
    assert empty.shape == (0, k)


@needs_emu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, density", [(33, None), (33, 0.2), (7, 1.0), (64, 0.01), (1, 0.5)])
def test_emulated_srp_sparse(dtype, k, density):
    n, d = 90, 2000
    x = sp.random(n, d, density=0.01, format="csr", random_state=k, dtype=dtype).tolil()
    x[2] = 0
    xptr, xind, xval = csr_parts(x, dtype)
    density = density or 1 / np.sqrt(d)
    mode, thr, cdf = P._generator(k, density)
    scale = dtype(np.sqrt(1 / density) / np.sqrt(k))
    want = _cpu.srp_sparse(xptr, xind, xval, n, d, 77, k, mode, thr, cdf, scale)
    assert_same(_emu._emulate_srp_sparse(xptr, xind, xval, n, 77, k, mode, thr, cdf, scale), want)
    # one block of 32 threads (the budget of the per-thread column buffers): rows by grid stride
    assert_same(_emu._emulate_srp_sparse(xptr, xind, xval, n, 77, k, mode, thr, cdf, scale, threads=32,
                                         sm_count=3, scratch_bytes=1), want)


@needs_emu
@pytest.mark.parametrize("d, k, density", [(1, 1, 1.0), (300, 33, 0.05), (2000, 64, None), (50, 7, 1.0),
                                           (3000, 40, 0.3), (777, 5, 0.001)])
def test_emulated_srp_columns(d, k, density):
    density = density or 1 / np.sqrt(d)
    mode, thr, cdf = P._generator(k, density)
    want = _cpu.srp_columns(123, d, k, mode, thr, cdf)
    for threads, sms in ((32, 1), (64, 3)):  # several scan ranges per block
        got = _emu._emulate_srp_columns(123, d, k, mode, thr, cdf, threads, sms)
        for a, b in zip(got, want):
            assert_same(a, b)


@needs_emu
@pytest.mark.parametrize("dim", [1, 7, 8, 64, 130])
@pytest.mark.parametrize("weighted", [False, True])
def test_emulated_fastrp(dim, weighted):
    g = graph(36, 6, dim, weighted).tolil()
    g[5] = 0  # an isolated node
    g = g.tocsr()
    g.eliminate_zeros()
    indptr, indices = g.indptr.astype(np.int64), g.indices.astype(np.int32)
    w = g.data.astype(np.float32) if weighted else None
    n = g.shape[0]
    iw = np.array([0.5, 1.0, 2.0], np.float32)
    scale = degree_scale(indptr, -0.5)
    threads = 32 if dim == 130 else 64  # dim 130 with 32 threads: two units per thread
    for si, ns in ((0.3, scale), (0.0, np.zeros(0))):
        want = _cpu.fastrp(indptr, indices, w, n, dim, ns, 9, iw, np.float32(si))
        for stage in (0, 2):  # rows staged in shared memory / in the state buffer
            got = _emu._emulate_fastrp(indptr, indices, w, n, dim, ns, 9, list(iw), si, threads=threads,
                                       sm_count=2, stage=stage)
            assert_same(got, want)


@needs_emu
@pytest.mark.parametrize("weights, si", [
    ((0.0, 1.0, 1.0), 0.0),       # out doubles as a state buffer, the sum formed in the last step
    ((0.0, 0.0, 1.0, 1.0), 0.0),  # the same with an even number of steps
    ((0.0, 0.0, 2.5), 0.0),       # only the last term
    ((-1.5,), 0.0),               # one step
    ((0.0, 1.0, 1.0), 0.5),       # self influence: two scratch buffers, out accumulates
    ((1.0, 0.0, 1.0), 0.0),       # an early nonzero weight: the same
])
def test_emulated_fastrp_memory_plans(weights, si):
    g = graph(40, 6, 4, weighted=True).tolil()
    g[7] = 0  # an isolated node: zero rows and signed zeros
    g = g.tocsr()
    g.eliminate_zeros()
    indptr, indices, w = g.indptr.astype(np.int64), g.indices.astype(np.int32), g.data.astype(np.float32)
    iw = np.asarray(weights, np.float32)
    scale = degree_scale(indptr, -0.3)
    for dim in (20, 24):
        want = _cpu.fastrp(indptr, indices, w, 40, dim, scale, 5, iw, np.float32(si))
        for stage in (0, 2):  # stage 2: the last step stages its sums in out's rows
            got = _emu._emulate_fastrp(indptr, indices, w, 40, dim, scale, 5, list(iw), si, threads=64,
                                       sm_count=2, stage=stage)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@needs_emu
def test_emulated_fastrp_edges():
    g = graph(40, 5, 1, hubs=2)
    indptr, indices = g.indptr.astype(np.int64), g.indices.astype(np.int32)
    want = _cpu.fastrp(indptr, indices, None, 40, 16, np.zeros(0), 3, np.zeros(0, np.float32), np.float32(1.5))
    assert_same(_emu._emulate_fastrp(indptr, indices, None, 40, 16, np.zeros(0), 3, [], 1.5), want)  # no iteration
    iw = np.array([1.0, 0.0, 1.0, 4.0], np.float32)
    want = _cpu.fastrp(indptr, indices, None, 40, 16, np.zeros(0), 2**64 - 1, iw, np.float32(0.0))
    got = _emu._emulate_fastrp(indptr, indices, None, 40, 16, np.zeros(0), 2**64 - 1, list(iw), 0.0,
                               threads=32, sm_count=1, stage=1)
    assert_same(got, want)
    # directed graph (upper triangle), every node in one block pass
    t = sp.triu(g).tocsr()
    tptr, tind = t.indptr.astype(np.int64), t.indices.astype(np.int32)
    want = _cpu.fastrp(tptr, tind, None, 40, 5, np.zeros(0), 0, iw, np.float32(0.1))
    assert_same(_emu._emulate_fastrp(tptr, tind, None, 40, 5, np.zeros(0), 0, list(iw), 0.1, threads=256), want)
    assert _emu._emulate_fastrp(np.zeros(1, np.int64), np.zeros(0, np.int32), None, 0, 8, np.zeros(0), 0,
                                [1.0], 0.0).shape == (0, 8)


# ---- the Python wrappers driving the real bindings' signatures (no GPU needed) -----------------
# A stand-in for _cuda_backend.Call keeps the host arrays where they are and hands out their host
# addresses; a stand-in module binds each positional call to the parameter names of the real
# device-pointer binding (read from its pybind11 signature) and runs the emulator on the arrays
# found at those addresses. A wrapper that passes arguments in the wrong order, a wrong count or
# the wrong dtype variant then fails here instead of on the GPU.


class _HostRegistry:
    def __init__(self):
        self.arrays = []

    def add(self, arr):
        self.arrays.append(arr)
        return arr.ctypes.data if arr.size else 0

    def get(self, ptr, dtype, shape):
        size = int(np.prod(shape, dtype=np.int64))
        if size == 0:
            return np.zeros(shape, dtype)
        for arr in self.arrays:
            if arr.size and arr.ctypes.data == ptr:
                assert arr.dtype == np.dtype(dtype) and arr.size == size, (arr.dtype, dtype, arr.shape, shape)
                return arr.reshape(shape)
        raise AssertionError(f"no array at {ptr:#x} ({dtype}, {shape})")


def _binding_params(fn):
    import re

    return re.findall(r"(?:\(|, )(\w+): ", fn.__doc__.splitlines()[0])


def _adapters(reg):
    em = _emu

    def csr_dense(a, dt):
        x = reg.get(a["x"], dt, (a["n"], a["d"]))
        got = em._emulate_csr_dense(x, reg.get(a["indptr"], np.int64, (a["k"] + 1,)),
                                    reg.get(a["indices"], np.int32, (a["nnz"],)),
                                    reg.get(a["values"], dt, (a["nnz"],)), a["k"], a["chunk"], a["max_warps"], 2,
                                    True)
        reg.get(a["out"], dt, (a["n"], a["k"]))[...] = got

    def csr_sparse(a, dt):
        got = em._emulate_csr_sparse(reg.get(a["xptr"], np.int64, (a["n"] + 1,)),
                                     reg.get(a["xind"], np.int32, (a["xnnz"],)), reg.get(a["xval"], dt, (a["xnnz"],)),
                                     a["n"], reg.get(a["cptr"], np.int64, (a["d"] + 1,)),
                                     reg.get(a["cind"], np.int32, (a["cnnz"],)), reg.get(a["cval"], dt, (a["cnnz"],)),
                                     a["k"], a["threads"] or 32, 2, True)
        reg.get(a["out"], dt, (a["n"], a["k"]))[...] = got

    def srp_sparse(a, dt):
        got = em._emulate_srp_sparse(reg.get(a["xptr"], np.int64, (a["n"] + 1,)),
                                     reg.get(a["xind"], np.int32, (a["xnnz"],)), reg.get(a["xval"], dt, (a["xnnz"],)),
                                     a["n"], a["seed"], a["k"], a["mode"], a["thr53"], a["cdf"], dt(a["scale"]),
                                     a["threads"] or 32, 2, a["scratch_bytes"], True)
        reg.get(a["out"], dt, (a["n"], a["k"]))[...] = got

    def columns(a):
        return em._emulate_srp_columns(a["seed"], a["d"], a["k"], a["mode"], a["thr53"], a["cdf"], a["threads"] or 32, 2)

    def counts(a, dt):
        reg.get(a["indptr"], np.int64, (a["d"] + 1,))[...] = columns(a)[0]

    def fill(a, dt):
        indptr, idx, neg = columns(a)
        np.testing.assert_array_equal(reg.get(a["indptr"], np.int64, (a["d"] + 1,)), indptr)
        reg.get(a["idx"], np.int32, idx.shape)[...] = idx
        reg.get(a["neg"], np.uint8, neg.shape)[...] = neg

    def fastrp(a, dt):
        n, nnz = a["n"], a["nnz"]
        w = reg.get(a["weights"], np.float32, (nnz,)) if a["weights"] else None
        ns = reg.get(a["node_scale"], np.float64, (n,)) if a["node_scale"] else np.zeros(0)
        got = em._emulate_fastrp(reg.get(a["indptr"], np.int64, (n + 1,)), reg.get(a["indices"], np.int32, (nnz,)), w,
                                 n, a["dim"], ns, a["seed"], a["iteration_weights"], a["self_influence"],
                                 a["threads"] or 64, 2, a["stage"], True)
        reg.get(a["out"], np.float32, (n, a["dim"]))[...] = got

    return {"csr_dense_f32": (csr_dense, np.float32), "csr_dense_f64": (csr_dense, np.float64),
            "csr_sparse_f32": (csr_sparse, np.float32), "csr_sparse_f64": (csr_sparse, np.float64),
            "srp_sparse_f32": (srp_sparse, np.float32), "srp_sparse_f64": (srp_sparse, np.float64),
            "srp_column_counts": (counts, None), "srp_column_fill": (fill, None), "fastrp": (fastrp, None)}


@pytest.fixture
def emulated_backend(monkeypatch):
    """cuda_ops.projection and the public API with backend="cuda", run by the emulator."""
    reg = _HostRegistry()
    adapters = _adapters(reg)
    real = _emu

    class Module:
        def __getattr__(self, name):
            fn, dt = adapters[name]
            params = _binding_params(getattr(real, name))

            def call(*args):
                assert len(args) == len(params), (name, len(args), params)
                fn(dict(zip(params, args)), dt)

            return call

    class Mod:
        projection = Module()

    class FakeCall:
        def __init__(self, ops):
            assert not any(op.on_device for op in ops)
            self.mod, self.host, self.stream, self.device = Mod(), True, 0, 0
            for op in ops:
                op.ptr = reg.add(op.host)

        def empty(self, shape, dtype):
            arr = np.full(shape, 0xFF, np.uint8).view(dtype) if np.dtype(dtype).itemsize == 1 else \
                np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -7, dtype)
            return arr, reg.add(arr)

        def result(self, out):
            return out

    monkeypatch.setattr(cproj, "Call", FakeCall)
    monkeypatch.setattr(cb, "available", lambda: True)
    return reg


@needs_emu
def test_wrappers_match_the_bindings_and_the_cpu(emulated_backend):
    rng = np.random.default_rng(5)
    for dt in DTYPES:
        x = rng.standard_normal((70, 33)).astype(dt)
        ptr, ind, val = random_csr(11, 33, 0.3, 2, dt)
        assert_same(cproj.csr_dense(x, ptr, ind, val, 11, chunk=8), _cpu.csr_dense(x, ptr, ind, val, 11))
        xs = sp.random(40, 33, density=0.1, format="csr", random_state=1, dtype=dt)
        xptr, xind, xval = csr_parts(xs, dt)
        cptr, cind, cval = transpose(ptr, ind, val, (11, 33))
        assert_same(cproj.csr_sparse(xptr, xind, xval, 40, cptr, cind, cval, 11),
                    _cpu.csr_sparse(xptr, xind, xval, 40, cptr, cind, cval, 11))
        for density in (0.05, 0.5):
            mode, thr, cdf = P._generator(11, density)
            args = (xptr, xind, xval, 40, 33, 3, 11, mode, thr, cdf, dt(0.7))
            assert_same(cproj.srp_sparse(*args), _cpu.srp_sparse(*args))
            for a, b in zip(cproj.srp_columns(3, 33, 11, mode, thr, cdf), _cpu.srp_columns(3, 33, 11, mode, thr, cdf)):
                assert_same(a, b)
    g = graph(30, 4, 1, weighted=True)
    indptr, indices, w = g.indptr.astype(np.int64), g.indices.astype(np.int32), g.data.astype(np.float32)
    iw = np.array([0.5, 2.0], np.float32)
    for weights, ns in ((w, degree_scale(indptr, -0.5)), (None, np.zeros(0))):
        want = _cpu.fastrp(indptr, indices, weights, 30, 12, ns, 4, iw, np.float32(0.25))
        assert_same(cproj.fastrp(indptr, indices, weights, 30, 12, ns, 4, iw, np.float32(0.25)), want)


@needs_emu
def test_public_api_with_backend_cuda_matches_cpu(emulated_backend):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((50, 40)).astype(np.float32)
    xs = sp.random(50, 40, density=0.1, format="csr", random_state=2, dtype=np.float64)
    for density in ("auto", 0.4):
        est = P.SparseRandomProjection(9, density=density, seed=3).fit(x)
        assert_same(est.transform(x, backend="cuda"), est.transform(x, backend="cpu"))
        assert_same(est.transform(xs, backend="cuda"), est.transform(xs, backend="cpu"))
    comp = sp.random(6, 40, density=0.3, format="csr", random_state=4)
    assert_same(P.sparse_project(x, comp, backend="cuda"), P.sparse_project(x, comp, backend="cpu"))
    assert_same(P.sparse_project(xs, comp, backend="cuda"), P.sparse_project(xs, comp, backend="cpu"))
    g = graph(40, 5, 2, weighted=True)
    kw = dict(iteration_weights=(0.0, 1.0, 1.0), normalization_strength=-0.5, self_influence=0.2, seed=5)
    assert_same(P.fastrp(g, 16, backend="cuda", **kw), P.fastrp(g, 16, backend="cpu", **kw))


@needs_emu
def test_gpu_check_smoke_case_on_the_emulator(emulated_backend):
    """bench/gpu_cases/projection.py's smoke() (run by gpu_check under compute-sanitizer)."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "gpu_cases",
                        "projection.py")
    spec = importlib.util.spec_from_file_location("gpu_case_projection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.smoke()
    assert callable(mod.bench)


# ---- the real kernels (need a CUDA device) ------------------------------------------------------


def poison(nbytes=64 << 20):
    """Fill freed device memory with NaN bytes so outputs that a kernel forgets to write show up
    (embkern's own buffers and torch's / CuPy's caching allocators reuse freed blocks)."""
    mod = importlib.import_module("embkern._cuda")
    buf = mod.DeviceBuffer(nbytes, -1)
    buf.copy_from_host(np.full(nbytes, 0xFF, np.uint8), 0)
    mod.stream_synchronize(0, -1)
    del buf
    for name in ("torch", "cupy"):
        try:
            fw = importlib.import_module(name)
        except ImportError:
            continue
        if name == "torch":
            t = fw.full((nbytes // 4,), float("nan"), device="cuda")
            fw.cuda.synchronize()
            del t
        else:
            a = fw.full((nbytes // 4,), np.nan, dtype=np.float32)
            fw.cuda.runtime.deviceSynchronize()
            del a


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d, k, density", [(1, 1, 1, 1.0), (131, 67, 19, 0.3), (1000, 300, 64, 0.05),
                                              (333, 1030, 257, 0.02), (5, 4096, 1, 0.01)])
def test_gpu_csr_dense(dtype, n, d, k, density):
    rng = np.random.default_rng(n + d + k)
    x = rng.standard_normal((n, d)).astype(dtype)
    ptr, ind, val = random_csr(k, d, density, k, dtype)
    want = _cpu.csr_dense(x, ptr, ind, val, k)
    poison()
    assert_same(cproj.csr_dense(x, ptr, ind, val, k), want)
    assert_same(cproj.csr_dense(x, ptr, ind, val, k, chunk=5, max_warps=2), want)
    uptr, uind, uval = shuffled_rows(ptr, ind, val, seed=1, dup=1)
    assert_same(cproj.csr_dense(x, uptr, uind, uval, k), _cpu.csr_dense(x, uptr, uind, uval, k))


@pytest.mark.gpu
@needs_gpu
def test_gpu_csr_dense_grid_stride_and_generated_matrix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40_003, 384)).astype(np.float32)  # 313 x 4 tiles: more than the grid
    est = P.SparseRandomProjection(200, seed=4).fit(x)
    want = est.transform(x, backend="cpu")
    poison()
    got = est.transform(x, backend="cuda")  # numpy in, numpy out; the matrix generated on the GPU
    assert isinstance(got, np.ndarray)
    assert_same(got, want)
    for a, b in zip(est._columns("cuda"), est._columns("cpu")):
        assert_same(a, b)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_csr_sparse_and_srp_sparse(dtype):
    n, d, k = 3001, 5000, 96
    x = sp.random(n, d, density=0.004, format="csr", random_state=1, dtype=dtype).tolil()
    x[10] = 0
    x[11, :2000] = 0.5
    xptr, xind, xval = csr_parts(x, dtype)
    cptr, cind, cval = transpose(*random_csr(k, d, 0.05, 2, dtype), (k, d))
    poison()
    assert_same(cproj.csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k),
                _cpu.csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k))
    sptr, sind, sval = shuffled_rows(cptr, cind, cval, seed=3, dup=1)
    assert_same(cproj.csr_sparse(xptr, xind, xval, n, sptr, sind, sval, k),
                _cpu.csr_sparse(xptr, xind, xval, n, sptr, sind, sval, k))
    for density in (1 / np.sqrt(d), 0.25, 1.0):
        mode, thr, cdf = P._generator(k, density)
        scale = dtype(np.sqrt(1 / density) / np.sqrt(k))
        want = _cpu.srp_sparse(xptr, xind, xval, n, d, 5, k, mode, thr, cdf, scale)
        assert_same(cproj.srp_sparse(xptr, xind, xval, n, d, 5, k, mode, thr, cdf, scale), want)
        assert_same(cproj.srp_sparse(xptr, xind, xval, n, d, 5, k, mode, thr, cdf, scale, scratch_bytes=1), want)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("d, k, density", [(1, 1, 1.0), (4096, 256, None), (100_003, 64, None), (3000, 500, 0.2)])
def test_gpu_srp_columns(d, k, density):
    mode, thr, cdf = P._generator(k, density or 1 / np.sqrt(d))
    got = cproj.srp_columns(2**63 + 5, d, k, mode, thr, cdf)
    for a, b in zip(got, _cpu.srp_columns(2**63 + 5, d, k, mode, thr, cdf)):
        assert_same(a, b)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dim", [1, 7, 64, 128, 130, 1024, 5000])
@pytest.mark.parametrize("weighted", [False, True])
def test_gpu_fastrp(dim, weighted):
    n = 3000 if dim <= 1024 else 300
    g = graph(n, 12, dim, weighted, hubs=3).tolil()
    g[7] = 0
    g = g.tocsr()
    g.eliminate_zeros()
    indptr, indices = g.indptr.astype(np.int64), g.indices.astype(np.int32)
    w = g.data.astype(np.float32) if weighted else None
    iw = np.array([0.0, 1.0, 1.0, 3.0], np.float32)
    scale = degree_scale(indptr, -0.628)
    poison()
    for si, ns in ((0.7, scale), (0.0, np.zeros(0))):
        want = _cpu.fastrp(indptr, indices, w, n, dim, ns, 42, iw, np.float32(si))
        assert_same(cproj.fastrp(indptr, indices, w, n, dim, ns, 42, iw, np.float32(si)), want)
        if dim in (7, 130):
            assert_same(cproj.fastrp(indptr, indices, w, n, dim, ns, 42, iw, np.float32(si), stage=2), want)


@pytest.mark.gpu
@needs_gpu
def test_gpu_public_fastrp_numpy_backend_cuda():
    g = graph(2000, 10, 2)
    want = P.fastrp(g, 64, backend="cpu")
    assert_same(P.fastrp(g, 64, backend="cuda"), want)
    kw = dict(iteration_weights=(0.5, 1.0), normalization_strength=-0.5, self_influence=0.3, seed=9)
    assert_same(P.fastrp(g, 33, backend="cuda", **kw), P.fastrp(g, 33, backend="cpu", **kw))


@pytest.mark.gpu
@needs_gpu
def test_gpu_empty_inputs():
    x = np.zeros((0, 9), np.float32)
    ptr, ind, val = random_csr(4, 9, 0.5, 1, np.float32)
    assert cproj.csr_dense(x, ptr, ind, val, 4).shape == (0, 4)
    assert cproj.csr_dense(np.ones((3, 9), np.float32), np.zeros(1, np.int64), np.zeros(0, np.int32),
                           np.zeros(0, np.float32), 0).shape == (3, 0)
    got = cproj.csr_dense(np.ones((3, 9), np.float32), np.zeros(5, np.int64), np.zeros(0, np.int32),
                          np.zeros(0, np.float32), 4)
    assert_same(got, np.zeros((3, 4), np.float32))
    assert cproj.csr_sparse(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 0,
                            np.zeros(10, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 3).shape == (0, 3)
    assert cproj.fastrp(np.zeros(1, np.int64), np.zeros(0, np.int32), None, 0, 8, np.zeros(0), 0, [1.0],
                        0.0).shape == (0, 8)
    got = cproj.fastrp(np.zeros(4, np.int64), np.zeros(0, np.int32), None, 3, 8, np.zeros(0), 0, [1.0, 1.0], 0.0)
    assert_same(got, np.zeros((3, 8), np.float32))


@pytest.mark.gpu
@needs_gpu
def test_gpu_device_csr_is_validated_on_the_device():
    cupy = pytest.importorskip("cupy")
    x = cupy.ones((3, 5), cupy.float32)
    ptr, val = cupy.asarray(np.array([0, 1, 2], np.int64)), cupy.ones(2, cupy.float32)
    with pytest.raises(ValueError, match="components: column index out of range"):
        cproj.csr_dense(x, ptr, cupy.asarray(np.array([0, 5], np.int32)), val, 2)
    with pytest.raises(ValueError, match="components: indptr must be non-decreasing"):
        cproj.csr_dense(x, cupy.asarray(np.array([0, 2, 1], np.int64)), cupy.asarray(np.array([0, 1], np.int32)),
                        val, 2)
    with pytest.raises(ValueError, match="adjacency: column index out of range"):
        P.fastrp((ptr, cupy.asarray(np.array([1, 2], np.int32))), 8)
    # the context is still usable
    got = cproj.csr_dense(x, ptr, cupy.asarray(np.array([0, 4], np.int32)), val, 2)
    np.testing.assert_array_equal(cupy.asnumpy(got), np.ones((3, 2), np.float32))


@pytest.mark.gpu
@needs_gpu
def test_gpu_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    cpx = pytest.importorskip("cupyx.scipy.sparse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((517, 300)).astype(np.float32)
    est = P.SparseRandomProjection(50, seed=2).fit(x)
    want = est.transform(x, backend="cpu")
    got = est.transform(cupy.asarray(x))
    assert isinstance(got, cupy.ndarray) and got.dtype == cupy.float32
    assert_same(cupy.asnumpy(got), want)
    got = P.SparseRandomProjection(50, seed=2).fit_transform(cupy.asarray(x))
    assert_same(cupy.asnumpy(got), want)
    # misaligned C-contiguous view: the scalar fill
    flat = cupy.zeros(x.size + 1, cupy.float32)
    flat[1:] = cupy.asarray(x.ravel())
    assert_same(cupy.asnumpy(est.transform(flat[1:].reshape(x.shape))), want)
    # float64 and integer input (computed in float64, as on the CPU)
    xi = rng.integers(-5, 5, (40, 300))
    assert_same(cupy.asnumpy(est.transform(cupy.asarray(xi))), est.transform(xi, backend="cpu"))
    # sparse input: cupyx CSR, generated matrix (srp_sparse) and sparse_project (csr_sparse)
    xs = sp.random(400, 300, density=0.02, format="csr", random_state=3, dtype=np.float32)
    got = est.transform(cpx.csr_matrix(xs))
    assert isinstance(got, cupy.ndarray)
    assert_same(cupy.asnumpy(got), est.transform(xs, backend="cpu"))
    comp = sp.random(17, 300, density=0.2, format="csr", random_state=4)
    assert_same(cupy.asnumpy(P.sparse_project(cpx.csr_matrix(xs), comp)), P.sparse_project(xs, comp, backend="cpu"))
    assert_same(cupy.asnumpy(P.sparse_project(cupy.asarray(x), comp)), P.sparse_project(x, comp, backend="cpu"))
    # FastRP on a cupyx adjacency and on a tuple of CuPy arrays (weighted)
    g = graph(500, 8, 5, weighted=True)
    kw = dict(iteration_weights=(0.0, 1.0, 2.0), normalization_strength=-0.3, self_influence=0.2, seed=3)
    want = P.fastrp(g, 48, backend="cpu", **kw)
    got = P.fastrp(cpx.csr_matrix(g), 48, **kw)
    assert isinstance(got, cupy.ndarray)
    assert_same(cupy.asnumpy(got), want)
    got = P.fastrp((cupy.asarray(g.indptr), cupy.asarray(g.indices), cupy.asarray(g.data)), 48, **kw)
    assert_same(cupy.asnumpy(got), want)


@pytest.mark.gpu
@needs_gpu
def test_gpu_torch_in_torch_out_on_a_side_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 129)).astype(np.float64)
    est = P.SparseRandomProjection(30, density=0.1, seed=8).fit(x)
    want = est.transform(x, backend="cpu")
    g = graph(400, 6, 8)
    want_rp = P.fastrp(g, 32, backend="cpu", self_influence=0.5)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        tx = torch.from_numpy(x).cuda()
        got = est.transform(tx)
        ptr, ind = torch.from_numpy(g.indptr.astype(np.int64)).cuda(), torch.from_numpy(g.indices).cuda()
        rp = P.fastrp((ptr, ind), 32, self_influence=0.5)
        tcsr = torch.sparse_csr_tensor(ptr, ind.to(torch.int64), torch.ones(len(g.indices), device="cuda"),
                                       size=g.shape)
        rp2 = P.fastrp(tcsr, 32, self_influence=0.5)
    side.synchronize()
    assert got.is_cuda and got.dtype == torch.float64
    assert_same(got.cpu().numpy(), want)
    assert rp.is_cuda and rp.dtype == torch.float32
    assert_same(rp.cpu().numpy(), want_rp)
    assert_same(rp2.cpu().numpy(), want_rp)
    assert embkern.get_num_threads() >= 1
