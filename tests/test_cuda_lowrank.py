"""CUDA low-rank kernels: host-side validation (no GPU), the kernel bodies under the host emulator
against the CPU backend, and ``gpu`` tests of the real kernels (skipped without a device).

Tolerance: results may differ from the CPU backend only by summation order (FMAs, split-K, tile
order), so the largest error relative to the largest |output| must stay below 1e-5 (float32) or
1e-12 (float64), as tests/test_lowrank.py asks of every CPU backend; NaN positions must match and
infinite outputs must be equal.
"""

import importlib

import numpy as np
import pytest

import embkern
from embkern import _cuda_backend as cb
from embkern import lowrank as lr
from embkern._cuda_ops import lowrank as clr

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None
_emu = getattr(_cuda, "lowrank", None)

try:
    _cpu = importlib.import_module("embkern._core").lowrank
except ImportError:
    _cpu = None

HAVE_GPU = cb.available()
needs_emu = pytest.mark.skipif(_emu is None, reason="embkern._cuda (lowrank) was not built")
needs_cpu = pytest.mark.skipif(_cpu is None, reason="embkern._core was not built")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


# ---- helpers --------------------------------------------------------------------------------------


def assert_close(got, ref, what=""):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert got.dtype == ref.dtype, (what, got.dtype, ref.dtype)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN positions")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(got[inf], ref[inf], err_msg=f"{what}: infinities")
    fin = ~(nan | inf)
    if not fin.any():
        return
    scale = float(np.abs(ref[fin]).max()) or 1.0
    err = float(np.abs(got[fin].astype(np.float64) - ref[fin]).max()) / scale
    assert err < TOL[ref.dtype], f"{what}: relative error {err:.3g}"


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def misaligned(a, offset_elems=1):
    """A C-contiguous copy of `a` starting `offset_elems` elements past a 64-byte boundary."""
    item = a.dtype.itemsize
    buf = np.zeros(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset_elems * item
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def csr(rng, n, k, density, dtype):
    """A canonical CSR support (int64 indptr, int32 indices, values) of an (n, k) random matrix."""
    mask = rng.random((n, k)) < density
    rows, cols = np.nonzero(mask)
    vals = randn(rng, rows.size, dtype)
    return lr._csr((rows, cols, vals), n, k, np.dtype(dtype))


def lora_args(rng, m, k, n, r, dtype, bias=True):
    return (randn(rng, (m, k), dtype), randn(rng, (n, k), dtype), randn(rng, (r, k), dtype),
            randn(rng, (n, r), dtype), randn(rng, (n,), dtype) if bias else None)


def multi_args(rng, m, k, n, r, nad, dtype, with_weight=True, ids=None):
    x = randn(rng, (m, k), dtype)
    w = randn(rng, (n, k), dtype) if with_weight else None
    a = randn(rng, (nad, r, k), dtype)
    b = randn(rng, (nad, n, r), dtype)
    if ids is None:
        ids = rng.integers(-1, nad, m).astype(np.int64) if nad else np.full(m, -1, np.int64)
    s = rng.uniform(0.5, 2.0, nad).astype(dtype)
    bias = randn(rng, (n,), dtype)
    return x, w, a, b, ids, s, bias


class FakeCAI:
    """An object exposing only a __cuda_array_interface__ dict (its pointer is never read)."""

    def __init__(self, shape, typestr="<f4", ptr=1 << 32, strides=None, version=3):
        self.shape = tuple(shape)
        self.__cuda_array_interface__ = dict(shape=tuple(shape), typestr=typestr, data=(ptr, False),
                                             strides=strides, version=version)


def fake(*shape, t="<f4"):
    return FakeCAI(shape, t)


# ---- host-side validation (no GPU needed) ---------------------------------------------------------


def test_backend_defines_the_cpu_signatures():
    for name in ("lora_linear", "lowrank_linear", "sparse_lowrank_linear", "multi_lora_linear"):
        assert callable(getattr(clr, name))
    assert not hasattr(clr, "lora_linear_blas")  # CPU-only variant


def test_device_dtype_errors_name_the_argument():
    with pytest.raises(TypeError, match="x must be float32 or float64, got float16"):
        clr.lora_linear(fake(4, 8, t="<f2"), fake(5, 8), fake(2, 8), fake(5, 2), 1.0, None)
    with pytest.raises(TypeError, match=r"weight must be float32 \(the dtype of x\), got float64"):
        clr.lora_linear(fake(4, 8), fake(5, 8, t="<f8"), fake(2, 8), fake(5, 2), 1.0, None)
    with pytest.raises(TypeError, match=r"bias must be float64 \(the dtype of x\), got float32"):
        clr.lora_linear(fake(4, 8, t="<f8"), fake(5, 8, t="<f8"), fake(2, 8, t="<f8"), fake(5, 2, t="<f8"),
                        1.0, fake(5))
    with pytest.raises(TypeError, match=r"s must be float32"):
        clr.lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(2, t="<f8"), None)
    with pytest.raises(TypeError, match="adapter_ids must be int64 or int32, got uint8"):
        clr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2), fake(4, t="|u1"), None, None)
    with pytest.raises(TypeError, match=r"lora_b must be float32"):
        clr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2, t="<f8"), fake(4, t="<i8"), None,
                              None)
    with pytest.raises(TypeError, match="indices must be int32, got int64"):
        clr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(6, t="<i8"), fake(3, t="<i8"),
                                  fake(3), None)
    with pytest.raises(TypeError, match="indptr must be int64, got int32"):
        clr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(6, t="<i4"), fake(3, t="<i4"),
                                  fake(3), None)


def test_device_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="x must have 2 dimensions, got 3"):
        clr.lora_linear(fake(2, 4, 8), fake(5, 8), fake(2, 8), fake(5, 2), 1.0, None)
    with pytest.raises(ValueError, match=r"weight must have shape \(5, 8\), got \(5, 7\)"):
        clr.lora_linear(fake(4, 8), fake(5, 7), fake(2, 8), fake(5, 2), 1.0, None)
    with pytest.raises(ValueError, match=r"lora_a must have shape \(2, 8\), got \(2, 9\)"):
        clr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 9), fake(5, 2), 1.0, None)
    with pytest.raises(ValueError, match=r"lora_b must have shape \(5, 2\), got \(5, 3\)"):
        clr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 3), 1.0, None)
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\), got \(4,\)"):
        clr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 2), 1.0, fake(4))
    with pytest.raises(ValueError, match=r"u must have shape \(5, 2\), got \(5, 3\)"):
        clr.lowrank_linear(fake(4, 8), fake(5, 3), fake(2, 8), None, None)
    with pytest.raises(ValueError, match=r"s must have shape \(2,\), got \(3,\)"):
        clr.lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(3), None)
    with pytest.raises(ValueError, match="lora_a must have 3 dimensions, got 2"):
        clr.multi_lora_linear(fake(4, 8), None, fake(2, 8), fake(3, 5, 2), fake(4, t="<i8"), None, None)
    with pytest.raises(ValueError, match=r"lora_b must have shape \(3, 5, 2\), got \(3, 5, 4\)"):
        clr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 4), fake(4, t="<i8"), None, None)
    with pytest.raises(ValueError, match=r"weight must have shape \(5, 8\), got \(8, 5\)"):
        clr.multi_lora_linear(fake(4, 8), fake(8, 5), fake(3, 2, 8), fake(3, 5, 2), fake(4, t="<i8"), None, None)
    with pytest.raises(ValueError, match=r"adapter_ids must have shape \(4,\), got \(5,\)"):
        clr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2), fake(5, t="<i8"), None, None)
    with pytest.raises(ValueError, match=r"scales must have shape \(3,\), got \(2,\)"):
        clr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2), fake(4, t="<i8"), fake(2), None)
    with pytest.raises(ValueError, match=r"indptr must have shape \(6,\), got \(5,\)"):
        clr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(5, t="<i8"), fake(3, t="<i4"),
                                  fake(3), None)
    with pytest.raises(ValueError, match=r"values must have shape \(3,\), got \(4,\)"):
        clr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), fake(6, t="<i8"), fake(3, t="<i4"),
                                  fake(4), None)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        clr.lowrank_linear(FakeCAI((4, 8), strides=(4, 16)), fake(5, 2), fake(2, 8), None, None)


def test_host_csr_contents_are_checked_before_any_cuda_call():
    x, b, a = np.zeros((3, 6), np.float32), np.zeros((4, 2), np.float32), np.zeros((2, 6), np.float32)
    ip = np.array([0, 1, 1, 3, 3], np.int64)
    ok = np.array([2, 0, 5], np.int32)
    v = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="indptr must start at 0"):
        clr.sparse_lowrank_linear(x, b, a, ip + 1, ok, v, None)
    with pytest.raises(ValueError, match="non-decreasing"):
        clr.sparse_lowrank_linear(x, b, a, np.array([0, 2, 1, 3, 3], np.int64), ok, v, None)
    with pytest.raises(ValueError, match="must equal the number of indices"):
        clr.sparse_lowrank_linear(x, b, a, np.array([0, 1, 1, 2, 2], np.int64), ok, v, None)
    with pytest.raises(ValueError, match=r"indices must be in \[0, in_features=6\)"):
        clr.sparse_lowrank_linear(x, b, a, ip, np.array([2, 0, 6], np.int32), v, None)
    with pytest.raises(ValueError, match="sorted and unique within each row"):
        clr.sparse_lowrank_linear(x, b, a, ip, np.array([2, 5, 0], np.int32), v, None)
    with pytest.raises(ValueError, match="sorted and unique within each row"):
        clr.sparse_lowrank_linear(x, b, a, ip, np.array([2, 3, 3], np.int32), v, None)
    with pytest.raises(TypeError, match=r"values must be float32 \(the dtype of x\), got float64"):
        clr.sparse_lowrank_linear(x, b, a, ip, ok, v.astype(np.float64), None)


def test_host_adapter_ids_are_checked():
    x = np.zeros((3, 4), np.float32)
    a, b = np.zeros((2, 1, 4), np.float32), np.zeros((2, 5, 1), np.float32)
    with pytest.raises(ValueError, match=r"adapter_ids must be in \[-1, 2\)"):
        clr.multi_lora_linear(x, None, a, b, np.array([0, 2, -1]), None, None)
    with pytest.raises(ValueError, match=r"adapter_ids must be in \[-1, 2\)"):
        clr.multi_lora_linear(x, None, a, b, np.array([0, -2, -1]), None, None)


def test_mixed_host_and_device_arguments_rejected():
    with pytest.raises(ValueError, match="bias is a host array but x is a CUDA array"):
        clr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 2), 1.0, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="x is a host array but weight is a CUDA array"):
        lr.lora_linear(np.zeros((4, 8), np.float32), fake(5, 8), fake(2, 8), fake(5, 2))
    with pytest.raises(ValueError, match="CSR support must live where x does"):
        clr.sparse_lowrank_linear(np.zeros((4, 8), np.float32), np.zeros((5, 2), np.float32),
                                  np.zeros((2, 8), np.float32), fake(6, t="<i8"), fake(3, t="<i4"), fake(3), None)


def test_public_api_routes_device_arrays_and_validates_first():
    # Device arrays go to the CUDA wrappers (validation before any CUDA call) ...
    with pytest.raises(TypeError, match=r"lora_a must be float32 \(the dtype of x\)"):
        lr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8, t="<f8"), fake(5, 2))
    with pytest.raises(ValueError, match=r"lora_b must have shape \(5, 2\)"):
        lr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 3), scale=2.0)
    with pytest.raises(TypeError, match="scale must be a real number"):
        lr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 2), scale="2")
    with pytest.raises(ValueError, match=r"u must have shape"):
        lr.lowrank_linear(fake(4, 8), fake(5, 3), fake(2, 8))
    with pytest.raises(ValueError, match="adapter_ids must have x's leading shape"):
        lr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2), fake(3, t="<i8"))
    with pytest.raises(ValueError, match="scales must be a scalar or a CUDA array"):
        lr.multi_lora_linear(fake(4, 8), None, fake(3, 2, 8), fake(3, 5, 2), fake(4, t="<i8"),
                             scales=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64, got float16"):
        lr.sparse_lowrank_linear(fake(4, 8, t="<f2"), fake(5, 2), fake(2, 8), (np.array([0]), np.array([1]),
                                                                               np.array([1.0])))
    with pytest.raises(ValueError, match=r"sparse column indices must be in \[0, 8\)"):
        lr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), (np.array([0]), np.array([8]),
                                                                      np.array([1.0])))
    with pytest.raises(ValueError, match="x must be 2-D for a CUDA array"):
        lr.lowrank_linear(fake(2, 4, 8), fake(5, 2), fake(2, 8))
    # ... but never when the CPU backend is asked for explicitly.
    with pytest.raises((TypeError, ValueError)):
        lr.lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), backend="cpu")


@no_gpu_only
def test_valid_device_arguments_reach_the_availability_check():
    with pytest.raises(RuntimeError, match="unavailable"):
        lr.lora_linear(fake(4, 8), fake(5, 8), fake(2, 8), fake(5, 2), scale=0.5, bias=fake(5))
    with pytest.raises(RuntimeError, match="unavailable"):
        lr.lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), s=fake(2))
    with pytest.raises(RuntimeError, match="unavailable"):
        lr.multi_lora_linear(fake(4, 8), fake(5, 8), fake(3, 2, 8), fake(3, 5, 2), fake(4, t="<i4"), scales=0.5)
    with pytest.raises(RuntimeError, match="unavailable"):  # host support: staged after validation
        lr.sparse_lowrank_linear(fake(4, 8), fake(5, 2), fake(2, 8), (np.array([0]), np.array([1]),
                                                                      np.array([1.0])))
    with pytest.raises(RuntimeError, match="unavailable"):  # numpy in, backend="cuda"
        lr.lora_linear(np.ones((2, 3)), np.ones((4, 3)), np.ones((1, 3)), np.ones((4, 1)), backend="cuda")


def test_host_sparse_forms():
    rows, cols, vals = np.array([0, 2, 2]), np.array([1, 0, 1]), np.array([1.0, 2.0, 3.0])
    assert lr._host_sparse((rows, cols, vals), 3, 2)[0] is rows
    torch = pytest.importorskip("torch")
    t = torch.sparse_coo_tensor(np.stack([rows, cols]), vals, (3, 2))
    r2, c2, v2 = lr._host_sparse(t.to_sparse_csr(), 3, 2)
    np.testing.assert_array_equal(r2, rows)
    np.testing.assert_array_equal(c2, cols)
    np.testing.assert_array_equal(v2, vals)
    with pytest.raises(ValueError, match=r"sparse must have shape \(out_features, in_features\) = \(3, 3\)"):
        lr._host_sparse(t, 3, 3)


# ---- the kernel bodies under the host emulator -----------------------------------------------------

# (M, K, N, r): one of everything, tails of every tile (128 / 32 rows, 128 / 64 / 32 columns, BK = 8),
# an inner dimension that is not a multiple of the vector width.
LORA_SHAPES = [(1, 1, 1, 1), (5, 9, 7, 3), (37, 70, 33, 5), (33, 16, 65, 8), (70, 24, 130, 40)]


@needs_emu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LORA_SHAPES)
def test_emulated_lora(shape, dtype):
    m, k, n, r = shape
    rng = np.random.default_rng(m * 1000 + k)
    x, w, a, b, bias = lora_args(rng, m, k, n, r, dtype)
    ref = _cpu.lora_linear(x, w, a, b, 0.37, bias)
    assert_close(_emu._emulate_lora_linear(x, w, a, b, 0.37, bias), ref, "default")
    assert_close(_emu._emulate_lora_linear(x, w, a, b, 0.37, None, sm_count=3),
                 _cpu.lora_linear(x, w, a, b, 0.37, None), "no bias")


@needs_emu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "launch",
    [
        dict(main_tile=1, shrink_tile=1),  # wide tiles for both GEMMs
        dict(main_tile=2, shrink_tile=2, shrink_splits=3, main_splits=2),  # split-K both
        dict(main_tile=1, main_splits=5, sm_count=2),  # more parts than steps of some tiles
    ],
)
def test_emulated_lora_launch_shapes(launch, dtype):
    rng = np.random.default_rng(5)
    x, w, a, b, bias = lora_args(rng, 45, 67, 70, 11, dtype)
    assert_close(_emu._emulate_lora_linear(x, w, a, b, -1.5, bias, **launch),
                 _cpu.lora_linear(x, w, a, b, -1.5, bias), str(launch))


@needs_emu
@needs_cpu
def test_emulated_lora_misaligned_and_degenerate():
    rng = np.random.default_rng(3)
    x, w, a, b, bias = lora_args(rng, 21, 36, 20, 4, np.float32)
    ref = _cpu.lora_linear(x, w, a, b, 0.5, bias)
    # scalar loads and stores for operands that are not 16-byte aligned
    got = _emu._emulate_lora_linear(misaligned(x), misaligned(w, 2), misaligned(a, 3), misaligned(b), 0.5,
                                    misaligned(bias), main_tile=1)
    assert_close(got, ref, "misaligned")
    # K = 0: the base and the update are 0 (plus bias); r = 0: no update; empty outputs
    z = np.zeros((21, 0), np.float32)
    assert_close(_emu._emulate_lora_linear(z, w[:, :0], a[:, :0], b, 0.5, bias),
                 _cpu.lora_linear(z, w[:, :0].copy(), a[:, :0].copy(), b, 0.5, bias), "K = 0")
    a0, b0 = np.zeros((0, 36), np.float32), np.zeros((20, 0), np.float32)
    assert_close(_emu._emulate_lora_linear(x, w, a0, b0, 0.5, bias), _cpu.lora_linear(x, w, a0, b0, 0.5, bias), "r=0")
    assert _emu._emulate_lora_linear(x[:0], w, a, b, 0.5, bias).shape == (0, 20)
    assert _emu._emulate_lora_linear(x, w[:0], a, b[:0], 0.5, None).shape == (21, 0)


@needs_emu
@needs_cpu
def test_emulated_lora_nan_and_inf_propagate():
    rng = np.random.default_rng(4)
    x, w, a, b, bias = lora_args(rng, 40, 19, 36, 3, np.float32)
    x[3, 5] = np.nan
    w[7, 2] = np.inf  # one infinite term per output of column 7: +-inf
    b[11, 1] = np.nan
    for launch in (dict(), dict(main_tile=1, shrink_splits=2)):
        assert_close(_emu._emulate_lora_linear(x, w, a, b, 2.0, bias, **launch),
                     _cpu.lora_linear(x, w, a, b, 2.0, bias), str(launch))


@needs_emu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_lowrank(dtype):
    rng = np.random.default_rng(8)
    for m, k, n, r in ((9, 13, 17, 5), (66, 40, 33, 70)):
        x, u, v = randn(rng, (m, k), dtype), randn(rng, (n, r), dtype), randn(rng, (r, k), dtype)
        s, bias = rng.uniform(0.1, 3, r).astype(dtype), randn(rng, (n,), dtype)
        assert_close(_emu._emulate_lowrank_linear(x, u, v, s, bias), _cpu.lowrank_linear(x, u, v, s, bias), "s, bias")
        assert_close(_emu._emulate_lowrank_linear(x, u, v, None, None, shrink_splits=2, main_tile=1),
                     _cpu.lowrank_linear(x, u, v, None, None), "plain")


@needs_emu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("launch", [dict(), dict(main_tile=1), dict(main_tile=2, sm_count=2, shrink_splits=2)])
def test_emulated_sparse_lowrank(launch, dtype):
    rng = np.random.default_rng(11)
    m, k, n, r = 35, 150, 41, 6  # K spans several staged x chunks (32 or 64 columns)
    x, b, a = randn(rng, (m, k), dtype), randn(rng, (n, r), dtype), randn(rng, (r, k), dtype)
    ip, ix, vals = csr(rng, n, k, 0.08, dtype)
    bias = randn(rng, (n,), dtype)
    got = _emu._emulate_sparse_lowrank_linear(x, b, a, ip, ix, vals, bias, **launch)
    assert_close(got, _cpu.sparse_lowrank_linear(x, b, a, ip, ix, vals, bias), str(launch))


@needs_emu
@needs_cpu
def test_emulated_sparse_special_supports():
    rng = np.random.default_rng(12)
    m, k, n, r = 19, 70, 23, 3
    x, b, a = randn(rng, (m, k), np.float32), randn(rng, (n, r), np.float32), randn(rng, (r, k), np.float32)
    empty = (np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    assert_close(_emu._emulate_sparse_lowrank_linear(x, b, a, *empty), _cpu.sparse_lowrank_linear(x, b, a, *empty,
                 None), "nnz = 0")
    dense = np.ones((n, k), bool)
    dense[3] = False  # one empty row, the others full
    rows, cols = np.nonzero(dense)
    sup = lr._csr((rows, cols, randn(rng, rows.size, np.float32)), n, k, np.dtype(np.float32))
    assert_close(_emu._emulate_sparse_lowrank_linear(misaligned(x), b, a, *sup, main_tile=1),
                 _cpu.sparse_lowrank_linear(x, b, a, *sup, None), "full rows, misaligned x")
    a0, b0 = np.zeros((0, k), np.float32), np.zeros((n, 0), np.float32)
    assert_close(_emu._emulate_sparse_lowrank_linear(x, b0, a0, *sup), _cpu.sparse_lowrank_linear(x, b0, a0, *sup,
                 None), "r = 0")


@needs_emu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_multi_lora(dtype):
    rng = np.random.default_rng(21)
    cases = [((50, 20, 37, 4, 5), True), ((7, 9, 130, 2, 1), False), ((40, 33, 20, 35, 3), True),
             ((40, 33, 20, 35, 3), False)]
    for (m, k, n, r, nad), with_weight in cases:
        x, w, a, b, ids, s, bias = multi_args(rng, m, k, n, r, nad, dtype, with_weight)
        ref = _cpu.multi_lora_linear(x, w, a, b, ids, s, bias)
        what = f"{m}x{k}x{n} r={r} weight={with_weight}"
        assert_close(_emu._emulate_multi_lora_linear(x, w, a, b, ids, s, bias=bias), ref, what)
    for with_weight in (True, False):
        x, w, a, b, ids, s, bias = multi_args(rng, 50, 20, 37, 4, 5, dtype, with_weight)
        assert_close(_emu._emulate_multi_lora_linear(x, w, a, b, ids.astype(np.int32), None, 0.75, None,
                                                     main_tile=1, shrink_splits=2, main_splits=2, sm_count=2),
                     _cpu.multi_lora_linear(x, w, a, b, ids, np.full(5, 0.75, dtype), None),
                     f"int32 ids, one scale, split-K, weight={with_weight}")


@needs_emu
@needs_cpu
def test_emulated_multi_lora_segments():
    rng = np.random.default_rng(31)
    m, k, n, r, nad = 70, 16, 24, 3, 6
    cases = {
        "all -1": np.full(m, -1),
        "one adapter": np.full(m, 4),
        "sorted runs": np.repeat(np.arange(nad), [30, 0, 1, 0, 38, 1])[:m],
        "every row its own": np.arange(m) % nad,
        "unused adapters": np.where(np.arange(m) % 2, 5, -1),
    }
    for c, (name, ids) in enumerate(cases.items()):
        ids = ids.astype(np.int64)
        with_weight = c % 2 == 0
        x, w, a, b, _, s, bias = multi_args(rng, m, k, n, r, nad, np.float32, with_weight, ids=ids)
        assert_close(_emu._emulate_multi_lora_linear(x, w, a, b, ids, s, bias=bias),
                     _cpu.multi_lora_linear(x, w, a, b, ids, s, bias), f"{name}, weight={with_weight}")
    # no adapters at all, and empty outputs
    x, w, a, b, ids, s, bias = multi_args(rng, 9, 5, 6, 2, 0, np.float32)
    assert_close(_emu._emulate_multi_lora_linear(x, w, a, b, ids, s, bias=bias),
                 _cpu.multi_lora_linear(x, w, a, b, ids, s, bias), "n_adapters = 0")
    assert _emu._emulate_multi_lora_linear(x[:0], w, a, b, ids[:0], s).shape == (0, 6)


@needs_emu
def test_emulated_launch_option_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="main_tile must be 0, 1 or 2"):
        _emu._emulate_lora_linear(x, np.zeros((4, 3), np.float32), np.zeros((1, 3), np.float32),
                                  np.zeros((4, 1), np.float32), main_tile=3)
    with pytest.raises(ValueError, match="shrink_splits"):
        _emu._emulate_lowrank_linear(x, np.zeros((4, 1), np.float32), np.zeros((1, 3), np.float32),
                                     shrink_splits=-1)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _emu._emulate_lowrank_linear(x.astype(np.int32), np.zeros((4, 1), np.float32), np.zeros((1, 3), np.float32))


# ---- the real kernels (need a CUDA device) -----------------------------------------------------------


def _poison_torch(shape, dtype):
    """Fill the torch caching allocator's next block of this size with NaN, so outputs a kernel
    forgets to write show up (the freed block is handed out again for the same size)."""
    import torch

    t = torch.full(shape, float("nan"), dtype=getattr(torch, np.dtype(dtype).name), device="cuda")
    del t


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 257, 129, 1), (130, 300, 257, 16), (16, 4096, 512, 16),
                                   (777, 129, 200, 64)])
def test_gpu_lora_numpy(shape, dtype):
    m, k, n, r = shape
    rng = np.random.default_rng(m + k)
    x, w, a, b, bias = lora_args(rng, m, k, n, r, dtype)
    assert_close(clr.lora_linear(x, w, a, b, 0.25, bias), _cpu.lora_linear(x, w, a, b, 0.25, bias), "numpy")
    assert_close(lr.lora_linear(x, w, a, b, scale=0.25, backend="cuda"), _cpu.lora_linear(x, w, a, b, 0.25, None),
                 "public, numpy, backend=cuda")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize(
    "launch",
    [dict(main_tile=1, shrink_tile=1), dict(main_tile=2, shrink_tile=2), dict(shrink_splits=7, main_splits=3),
     dict(main_tile=1, main_splits=64)],
)
def test_gpu_forced_launch_shapes(launch):
    rng = np.random.default_rng(2)
    x, w, a, b, bias = lora_args(rng, 200, 1000, 300, 24, np.float32)
    assert_close(clr.lora_linear(x, w, a, b, 1.5, bias, **launch), _cpu.lora_linear(x, w, a, b, 1.5, bias), "lora")
    x, w, a, b, ids, s, bias = multi_args(rng, 150, 300, 70, 8, 7, np.float32)
    assert_close(clr.multi_lora_linear(x, w, a, b, ids, s, bias, **launch),
                 _cpu.multi_lora_linear(x, w, a, b, ids, s, bias), "multi")
    ip, ix, vals = csr(rng, 70, 300, 0.05, np.float32)
    b2, a2 = randn(rng, (70, 8), np.float32), randn(rng, (8, 300), np.float32)
    assert_close(clr.sparse_lowrank_linear(x, b2, a2, ip, ix, vals, bias, **launch),
                 _cpu.sparse_lowrank_linear(x, b2, a2, ip, ix, vals, bias), "sparse")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_lowrank_sparse_multi_numpy(dtype):
    rng = np.random.default_rng(3)
    for m, k, n, r in ((1, 64, 33, 1), (129, 513, 255, 64), (40, 100, 1000, 130)):
        x, u, v = randn(rng, (m, k), dtype), randn(rng, (n, r), dtype), randn(rng, (r, k), dtype)
        s, bias = rng.uniform(0.1, 2, r).astype(dtype), randn(rng, (n,), dtype)
        assert_close(clr.lowrank_linear(x, u, v, s, bias), _cpu.lowrank_linear(x, u, v, s, bias), "lowrank")
        assert_close(clr.lowrank_linear(x, u, v, None, None), _cpu.lowrank_linear(x, u, v, None, None), "lowrank")
        ip, ix, vals = csr(rng, n, k, 0.03, dtype)
        assert_close(clr.sparse_lowrank_linear(x, u, v, ip, ix, vals, bias),
                     _cpu.sparse_lowrank_linear(x, u, v, ip, ix, vals, bias), "sparse")
    for m, k, n, r, nad in ((64, 256, 512, 16, 64), (1000, 96, 200, 8, 3), (5, 40, 30, 4, 9)):
        for with_weight in (True, False):
            x, w, a, b, ids, s, bias = multi_args(rng, m, k, n, r, nad, dtype, with_weight)
            assert_close(clr.multi_lora_linear(x, w, a, b, ids, s, bias),
                         _cpu.multi_lora_linear(x, w, a, b, ids, s, bias), f"multi weight={with_weight}")
    # the public functions with numpy input and backend="cuda": CPU validation, numpy out
    x, u, v = randn(rng, (2, 5, 70), dtype), randn(rng, (40, 6), dtype), randn(rng, (6, 70), dtype)
    x2 = x.reshape(10, 70)
    assert_close(lr.lowrank_linear(x, u, v, backend="cuda").reshape(10, 40),
                 _cpu.lowrank_linear(x2, u, v, None, None), "public lowrank")
    rows, cols = np.nonzero(rng.random((40, 70)) < 0.1)
    vals = randn(rng, rows.size, dtype)
    ip, ix, vv = lr._csr((rows, cols, vals), 40, 70, np.dtype(dtype))
    assert_close(lr.sparse_lowrank_linear(x, u, v, (rows, cols, vals), backend="cuda").reshape(10, 40),
                 _cpu.sparse_lowrank_linear(x2, u, v, ip, ix, vv, None), "public sparse")
    xm, w, a, b, ids, s, bias = multi_args(rng, 10, 70, 40, 3, 4, dtype)
    assert_close(lr.multi_lora_linear(xm.reshape(2, 5, 70), w, a, b, ids.reshape(2, 5), scales=s, bias=bias,
                                      backend="cuda").reshape(10, 40),
                 _cpu.multi_lora_linear(xm, w, a, b, ids, s, bias), "public multi")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_empty_and_degenerate():
    rng = np.random.default_rng(4)
    x, w, a, b, bias = lora_args(rng, 5, 7, 6, 2, np.float32)
    assert clr.lora_linear(x[:0], w, a, b, 1.0, bias).shape == (0, 6)
    assert clr.lora_linear(x, w[:0], a, b[:0], 1.0, None).shape == (5, 0)
    z = np.zeros((5, 0), np.float32)
    assert_close(clr.lora_linear(z, np.zeros((6, 0), np.float32), np.zeros((2, 0), np.float32), b, 1.0, bias),
                 _cpu.lora_linear(z, np.zeros((6, 0), np.float32), np.zeros((2, 0), np.float32), b, 1.0, bias), "K=0")
    a0, b0 = np.zeros((0, 7), np.float32), np.zeros((6, 0), np.float32)
    assert_close(clr.lora_linear(x, w, a0, b0, 1.0, bias), _cpu.lora_linear(x, w, a0, b0, 1.0, bias), "r = 0")
    x, w, a, b, ids, s, bias = multi_args(rng, 9, 5, 6, 2, 3, np.float32, ids=np.full(9, -1, np.int64))
    assert_close(clr.multi_lora_linear(x, None, a, b, ids, s, bias), _cpu.multi_lora_linear(x, None, a, b, ids, s, bias),
                 "all rows without adapter")
    empty = (np.zeros(7, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    xs, bs, as_ = randn(rng, (4, 9), np.float32), randn(rng, (6, 2), np.float32), randn(rng, (2, 9), np.float32)
    assert_close(clr.sparse_lowrank_linear(xs, bs, as_, *empty, None),
                 _cpu.sparse_lowrank_linear(xs, bs, as_, *empty, None), "nnz = 0")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_torch_in_torch_out_on_a_side_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, a, b, bias = lora_args(rng, 2 * 3 * 37, 200, 150, 8, np.float32)
    ref = _cpu.lora_linear(x, w, a, b, 0.5, bias)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        tx, tw, ta, tb, tbias = (torch.from_numpy(v).cuda() for v in (x, w, a, b, bias))
        _poison_torch((2 * 3 * 37, 150), np.float32)
        y = lr.lora_linear(tx.reshape(2, 3, 37, 200), tw, ta, tb, scale=0.5, bias=tbias)
        y1 = lr.lora_linear(tx[0], tw, ta, tb, scale=0.5, bias=tbias)  # 1-D x -> 1-D y
    side.synchronize()
    assert y.is_cuda and y.dtype == torch.float32 and tuple(y.shape) == (2, 3, 37, 150)
    assert_close(y.reshape(-1, 150).cpu().numpy(), ref, "torch lora")
    assert tuple(y1.shape) == (150,)
    assert_close(y1.cpu().numpy(), ref[0], "1-D")
    # multi with int32 device ids, a device scale vector, no base weight; lowrank with requires_grad
    xm, wm, am, bm, ids, s, biasm = multi_args(rng, 300, 64, 96, 4, 5, np.float32, with_weight=False)
    with torch.cuda.stream(side):
        _poison_torch((300, 96), np.float32)
        ym = lr.multi_lora_linear(torch.from_numpy(xm).cuda(), None, torch.from_numpy(am).cuda(),
                                  torch.from_numpy(bm).cuda(), torch.from_numpy(ids.astype(np.int32)).cuda(),
                                  scales=torch.from_numpy(s).cuda(), bias=torch.from_numpy(biasm).cuda())
        u = torch.randn(96, 4, device="cuda", requires_grad=True)
        v = torch.randn(4, 64, device="cuda")
        yl = lr.lowrank_linear(torch.from_numpy(xm).cuda(), u, v)
    side.synchronize()
    assert_close(ym.cpu().numpy(), _cpu.multi_lora_linear(xm, None, am, bm, ids, s, biasm), "torch multi")
    assert_close(yl.cpu().numpy(), _cpu.lowrank_linear(xm, u.detach().cpu().numpy(), v.cpu().numpy(), None, None),
                 "torch lowrank")
    # device ids outside [0, n) act as -1 (documented; not range-checked on the device)
    bad = ids.copy()
    bad[::7] = 99
    yb = lr.multi_lora_linear(torch.from_numpy(xm).cuda(), None, torch.from_numpy(am).cuda(),
                              torch.from_numpy(bm).cuda(), torch.from_numpy(bad).cuda(), scales=2.0)
    torch.cuda.synchronize()
    assert_close(yb.cpu().numpy(), _cpu.multi_lora_linear(xm, None, am, bm, np.where(bad == 99, -1, bad),
                                                          np.full(5, 2.0, np.float32), None), "bad ids")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_torch_sparse_supports():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    m, k, n, r = 77, 300, 90, 6
    x, b, a = randn(rng, (m, k), np.float64), randn(rng, (n, r), np.float64), randn(rng, (r, k), np.float64)
    ip, ix, vals = csr(rng, n, k, 0.05, np.float64)
    ref = _cpu.sparse_lowrank_linear(x, b, a, ip, ix, vals, None)
    tx, tb, ta = (torch.from_numpy(v).cuda() for v in (x, b, a))
    rows = np.repeat(np.arange(n), np.diff(ip))
    import scipy.sparse as sps

    forms = {
        "scipy": sps.csr_matrix((vals, ix, ip), shape=(n, k)),
        "host tuple": (rows, ix, vals),
        "device tuple": (torch.from_numpy(rows).cuda(), torch.from_numpy(ix.astype(np.int64)).cuda(),
                         torch.from_numpy(vals).cuda()),
        "torch sparse csr": torch.sparse_csr_tensor(torch.from_numpy(ip), torch.from_numpy(ix.astype(np.int64)),
                                                    torch.from_numpy(vals), (n, k)).cuda(),
    }
    for name, sup in forms.items():
        y = lr.sparse_lowrank_linear(tx, tb, ta, sup)
        assert y.is_cuda and y.dtype == torch.float64
        assert_close(y.cpu().numpy(), ref, name)
    # the CSR arrays straight on the device (the wrapper's fast path: no host round trip)
    dev = [torch.from_numpy(v).cuda() for v in (ip, ix, vals)]
    y = clr.sparse_lowrank_linear(tx, tb, ta, *dev, None)
    torch.cuda.synchronize()
    assert_close(y.cpu().numpy(), ref, "device CSR")


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(7)
    x, u, v = randn(rng, (100, 64), np.float32), randn(rng, (70, 12), np.float32), randn(rng, (12, 64), np.float32)
    s = rng.uniform(0.5, 1.5, 12).astype(np.float32)
    y = lr.lowrank_linear(cupy.asarray(x), cupy.asarray(u), cupy.asarray(v), s=cupy.asarray(s))
    assert isinstance(y, cupy.ndarray)
    assert_close(cupy.asnumpy(y), _cpu.lowrank_linear(x, u, v, s, None), "cupy lowrank")
    # a misaligned, C-contiguous x: scalar loads
    flat = cupy.zeros(x.size + 1, cupy.float32)
    flat[1:] = cupy.asarray(x.ravel())
    y = lr.lowrank_linear(flat[1:].reshape(x.shape), cupy.asarray(u), cupy.asarray(v))
    assert_close(cupy.asnumpy(y), _cpu.lowrank_linear(x, u, v, None, None), "cupy misaligned")
    # a non-contiguous x: made contiguous by CuPy
    xt = cupy.asarray(x.T.copy()).T
    xs, w, a, b, bias = lora_args(rng, 100, 64, 30, 3, np.float32)
    y = lr.lora_linear(xt, cupy.asarray(w), cupy.asarray(a), cupy.asarray(b), scale=3.0)
    assert_close(cupy.asnumpy(y), _cpu.lora_linear(x, w, a, b, 3.0, None), "cupy transposed")
    try:
        import cupyx.scipy.sparse as csp
    except ImportError:
        return
    ip, ix, vals = csr(rng, 70, 64, 0.1, np.float32)
    sup = csp.csr_matrix((cupy.asarray(vals), cupy.asarray(ix), cupy.asarray(ip.astype(np.int32))), shape=(70, 64))
    y = lr.sparse_lowrank_linear(cupy.asarray(x), cupy.asarray(u), cupy.asarray(v), sup)
    assert_close(cupy.asnumpy(y), _cpu.sparse_lowrank_linear(x, u, v, ip, ix, vals, None), "cupyx support")
