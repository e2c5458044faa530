"""MUVERA FDE on the CUDA backend.

Without a GPU: host-side validation of the CUDA wrappers and of the public routing of CUDA arrays
(fake ``__cuda_array_interface__`` objects: errors name the argument and come before any CUDA
call), and the CUDA kernel bodies themselves run by the host emulator of ``embkern._cuda`` against
the CPU backend (``embkern._core.fde``), bit for bit, on awkward sizes and launch shapes, plus
Google's golden vectors. With a GPU (``gpu`` marker): the real kernels against the CPU backend,
through the internal wrappers and the public API (CuPy in/out, torch in/out on a side stream).

Exactness: the GPU performs the CPU's float operations in the CPU's order for every output value
(fde_blocks.hpp), so every comparison with the CPU backend here is bit for bit (uint32 views, which
also distinguishes -0.0 from 0.0).
"""

import ctypes
import importlib
import json
import os

import numpy as np
import pytest

from embkern import _cuda_backend as cb
from embkern import fde
from embkern._cuda_ops import fde as cfde
from embkern.fde import FDEConfig, encode_documents, encode_queries

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None

try:
    _cpu = importlib.import_module("embkern._core").fde
except ImportError:
    _cpu = None

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_GPU = cb.available()
needs_emulator = pytest.mark.skipif(_cuda is None or _cpu is None,
                                    reason="embkern._cuda or embkern._core was not built")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")


class FakeCAI:
    """An object exposing only a __cuda_array_interface__ dict (its pointer is never read)."""

    def __init__(self, shape, typestr="<f4", ptr=1 << 32, strides=None, version=3):
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(ptr, False),
                                             strides=strides, version=version)


# ---- configurations and references ------------------------------------------------------------


def config(d, reps=1, k=0, ams=False, p=None, fill=False, final=None, seed=1):
    return FDEConfig(d, num_repetitions=reps, num_simhash_projections=k, seed=seed,
                     projection_type="ams_sketch" if ams else "identity",
                     projection_dimension=p if ams else None, fill_empty_partitions=fill,
                     final_projection_dimension=final)


def args(cfg, document):
    """encode()'s table and shape arguments for cfg (the CPU backend's tables)."""
    gauss, col, sign, fidx, fsign = fde._tables(cfg, "cpu", _cpu)
    return (gauss, col, sign, fidx, fsign, cfg.num_repetitions, cfg.num_simhash_projections,
            cfg.block_dimension, cfg.final_projection_dimension or 0, document,
            cfg.fill_empty_partitions, cfg.projection_type == "ams_sketch")


def offsets_of(sizes):
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def clouds(rng, sizes, d, zeros=False):
    x = rng.standard_normal((int(sum(sizes)), d)).astype(np.float32)
    if zeros and len(x) > 3:
        x[1] = 0.0        # exactly on every hyperplane: all sign bits clear
        x[2] = x[0]       # duplicate token
        x[3] = -0.0
    return x


def assert_bits_equal(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def emulate_vs_cpu(rng, cfg, sizes, *, zeros=True, **launch):
    x = clouds(rng, sizes, cfg.dimension, zeros)
    off = offsets_of(sizes)
    for document in (True, False):
        a = args(cfg, document)
        want = _cpu.encode(x, off, *a)
        got = cfde._emulate_encode(x, off, *a, **launch)
        assert_bits_equal(got, want)
    return x, off


# ---- host-side validation (no GPU needed) ------------------------------------------------------


def _dev_args(d=8, reps=2, k=3, ams=False, p=None, final=0):
    cfg = config(d, reps, k, ams, p or d, final=final or None)
    gauss, col, sign, fidx, fsign = fde._tables(cfg, "cuda", cfde)
    return [gauss, col, sign, fidx, fsign, reps, k, cfg.block_dimension, final, True, True, ams]


def test_table_functions_are_the_cpu_backends():
    ref = _cpu if _cpu is not None else importlib.import_module("embkern._numba.fde")
    np.testing.assert_array_equal(cfde.simhash_matrices(3, 2, 9, 5), ref.simhash_matrices(3, 2, 9, 5))
    for a, b in zip(cfde.ams_tables(3, 2, 9, 4), ref.ams_tables(3, 2, 9, 4)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(cfde.count_sketch(3, 100, 7), ref.count_sketch(3, 100, 7)):
        np.testing.assert_array_equal(a, b)


def test_wrapper_dtype_and_shape_errors_name_the_argument():
    off = np.array([0, 2, 6])
    with pytest.raises(TypeError, match="points must be float32, got float64"):
        cfde.encode(FakeCAI((6, 8), "<f8"), off, *_dev_args())
    with pytest.raises(TypeError, match="points must be float32, got int32"):
        cfde.encode(np.zeros((6, 8), np.int32), off, *_dev_args())
    with pytest.raises(ValueError, match="points must have 2 dimensions, got 3"):
        cfde.encode(FakeCAI((2, 3, 8)), off, *_dev_args())
    with pytest.raises(ValueError, match="points must be C-contiguous"):
        cfde.encode(FakeCAI((6, 8), strides=(4, 24)), off, *_dev_args())
    with pytest.raises(ValueError, match="offsets must run from 0"):
        cfde.encode(FakeCAI((6, 8)), [0, 2, 5], *_dev_args())
    with pytest.raises(ValueError, match="offsets must not decrease"):
        cfde.encode(FakeCAI((6, 8)), [0, 4, 2, 6], *_dev_args())
    with pytest.raises(TypeError, match="offsets must be an integer array"):
        cfde.encode(FakeCAI((6, 8)), [0.0, 6.0], *_dev_args())
    with pytest.raises(ValueError, match="offsets must hold batch"):
        cfde.encode(FakeCAI((0, 8)), np.zeros(0, np.int64), *_dev_args())
    with pytest.raises(ValueError, match="begin <= end"):
        cfde.encode_ranges(FakeCAI((6, 8)), [0, 4], [3, 7], *_dev_args())
    with pytest.raises(ValueError, match="begin and end"):
        cfde.encode_ranges(FakeCAI((6, 8)), [0, 4], [3], *_dev_args())


def test_wrapper_config_and_table_errors():
    x = FakeCAI((6, 8))
    off = [0, 6]
    a = _dev_args()
    with pytest.raises(ValueError, match="num_repetitions must be >= 1"):
        cfde.encode(x, off, *a[:5], 0, *a[6:])
    with pytest.raises(ValueError, match="num_simhash_projections must be in 0..30"):
        cfde.encode(x, off, *a[:6], 31, *a[7:])
    with pytest.raises(ValueError, match="identity projection needs p == dimension"):
        cfde.encode(x, off, *a[:7], 5, *a[8:])
    with pytest.raises(ValueError, match="dimension must be >= 1"):
        cfde.encode(FakeCAI((6, 0)), off, *a)
    with pytest.raises(ValueError, match="gauss must be"):
        cfde.encode(FakeCAI((6, 7)), off, *a[:7], 7, *a[8:])
    with pytest.raises(ValueError, match="would have"):
        cfde.encode(FakeCAI((6, 1)), off, np.zeros((1, 90), np.float32), *a[1:5], 3, 30, 1, *a[8:])
    ams = _dev_args(ams=True, p=4)
    bad_col = ams[1].copy()
    bad_col[0, 0] = 4
    with pytest.raises(ValueError, match="ams column out of range"):
        cfde.encode(x, off, ams[0], bad_col, *ams[2:])
    with pytest.raises(ValueError, match="ams tables must be"):
        cfde.encode(x, off, ams[0], ams[1][:1], *ams[2:])
    fin = _dev_args(final=10)
    bad_idx = fin[3].copy()
    bad_idx[5] = 10
    with pytest.raises(ValueError, match="final projection index out of range"):
        cfde.encode(x, off, *fin[:3], bad_idx, *fin[4:])
    with pytest.raises(ValueError, match="final projection tables must have"):
        cfde.encode(x, off, *fin[:3], fin[3][:-1], *fin[4:])
    with pytest.raises(TypeError, match="unknown launch options"):
        cfde.encode(x, off, *a, warp_size=32)


def test_wrapper_mixed_host_and_device_points_list():
    cfg = config(8)
    with pytest.raises(ValueError, match=r"points\[0\] is a host array"):
        encode_documents([np.zeros((2, 8), np.float32), FakeCAI((3, 8))], cfg)


@no_gpu_only
def test_valid_device_arguments_reach_the_availability_check():
    with pytest.raises(RuntimeError, match="unavailable"):
        cfde.encode(FakeCAI((6, 8)), [0, 2, 6], *_dev_args())
    with pytest.raises(RuntimeError, match="unavailable"):
        cfde.encode(np.zeros((6, 8), np.float32), [0, 6], *_dev_args())
    cfg = config(8, 2, 3, fill=True)
    with pytest.raises(RuntimeError, match="unavailable"):
        encode_documents(FakeCAI((6, 8)), cfg)  # device array: routed to CUDA
    with pytest.raises(RuntimeError, match="unavailable"):
        encode_queries(FakeCAI((2, 3, 8)), cfg, lengths=[3, 1])
    with pytest.raises(RuntimeError, match="unavailable"):
        encode_documents(np.zeros((6, 8), np.float32), cfg, backend="cuda")


def test_public_routing_validates_device_arrays_first():
    cfg = config(8, 2, 3)
    with pytest.raises(ValueError, match="token dimension 9, but config.dimension is 8"):
        encode_documents(FakeCAI((6, 9)), cfg)
    with pytest.raises(ValueError, match="token dimension 7"):
        encode_queries(FakeCAI((2, 3, 7)), cfg)
    with pytest.raises(ValueError, match="padded length 3"):
        encode_documents(FakeCAI((2, 3, 8)), cfg, lengths=[4, 1])
    with pytest.raises(ValueError, match="one entry per point cloud"):
        encode_documents(FakeCAI((2, 3, 8)), cfg, lengths=[1, 1, 1])
    with pytest.raises(ValueError, match="lengths must sum"):
        encode_documents(FakeCAI((6, 8)), cfg, lengths=[2, 3])
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        encode_documents(FakeCAI((6, 8)), cfg, lengths=[7, -1])
    with pytest.raises(TypeError, match="lengths must be an integer array"):
        encode_documents(FakeCAI((6, 8)), cfg, lengths=[2.0, 4.0])
    with pytest.raises(ValueError, match="points must be a list"):
        encode_documents(FakeCAI((8,)), cfg)
    with pytest.raises(TypeError, match="points must be float32"):
        encode_documents(FakeCAI((6, 8), "<f8"), cfg)
    with pytest.raises(ValueError, match="points must be C-contiguous"):
        encode_documents(FakeCAI((2, 3, 8), strides=(4, 64, 8)), cfg)
    with pytest.raises(TypeError, match="list of CUDA arrays must be all CuPy"):
        encode_documents([FakeCAI((2, 8)), FakeCAI((3, 8))], cfg)
    with pytest.raises(ValueError, match="lengths must be None"):
        encode_documents([FakeCAI((2, 8))], cfg, lengths=[2])
    with pytest.raises(TypeError, match="config must be an FDEConfig"):
        encode_documents(FakeCAI((6, 8)), {"dimension": 8})


# ---- kernel bodies under the host emulator, against the CPU backend ------------------------------


@needs_emulator
@pytest.mark.parametrize("d, reps, k, ams, p", [
    (1, 1, 0, False, None), (3, 2, 1, False, None), (7, 3, 4, False, None), (33, 2, 5, False, None),
    (16, 1, 3, True, 1), (17, 2, 5, True, 5), (9, 3, 0, True, 3), (20, 2, 2, True, 24),
])
@pytest.mark.parametrize("fill", [False, True])
def test_emulated_matches_cpu(rng, d, reps, k, ams, p, fill):
    cfg = config(d, reps, k, ams, p, fill, seed=int(rng.integers(0, 2**31 - 10)))
    emulate_vs_cpu(rng, cfg, [5, 0, 1, 70, 2, 17])


@needs_emulator
@pytest.mark.parametrize("ams", [False, True])
def test_emulated_final_projection(rng, ams):
    cfg = config(12, 3, 3, ams, 5, True, final=37)
    emulate_vs_cpu(rng, cfg, [9, 0, 30, 1])
    cfg = config(6, 1, 2, ams, 6, False, final=500)  # more outputs than inputs: empty targets
    emulate_vs_cpu(rng, cfg, [4, 11])


@needs_emulator
def test_emulated_many_partitions_and_column_tiles(rng):
    # R * k = 70 columns: two column tiles of the sketch; 1024 partitions, mostly empty (fill scan)
    cfg = config(1, 7, 10, fill=True)
    emulate_vs_cpu(rng, cfg, [3, 66], zeros=False)
    cfg = config(2, 1, 12, ams=True, p=1, fill=True)  # 4096 partitions: several tiles
    emulate_vs_cpu(rng, cfg, [5, 1], zeros=False)


@needs_emulator
def test_emulated_sketch_tiles_and_chunks(rng):
    # 130 tokens: three 64-token tiles; d = 37: three d-chunks, the last partial
    cfg = config(37, 4, 6, fill=True)
    emulate_vs_cpu(rng, cfg, [130])


@needs_emulator
@pytest.mark.parametrize("launch", [
    dict(threads=32, sm_count=1),
    dict(threads=32, sm_count=3, tile=1),
    dict(threads=32, tile=3, keys=1),                   # sort keys in global scratch
    dict(threads=64, stage=0),                          # tokens read from global memory
    dict(threads=64, stage=1, keys=0),
    dict(threads=32, group_rows=7, sm_count=2),         # many groups; clouds larger than a group
    dict(threads=64, max_grid=1),
    dict(threads=64, scratch_bytes=1, keys=1),          # grid of one block (scratch budget)
    dict(threads=32, sm_count=1, vbuf_floats=1),
    dict(threads=48, keys_bytes=0, stage_bytes=0),      # not a power of two; nothing in smem
])
def test_emulated_launch_shapes(rng, launch):
    for cfg in (config(10, 3, 4, True, 6, True, final=23), config(10, 2, 3, False, None, True)):
        emulate_vs_cpu(rng, cfg, [6, 0, 19, 1, 40, 3], **launch)


@needs_emulator
def test_emulated_production_block_size(rng):
    emulate_vs_cpu(rng, config(10, 3, 4, True, 6, True, final=23), [6, 19], threads=256)


@needs_emulator
def test_emulated_padded_ranges_equal_ragged(rng):
    cfg = config(8, 3, 4, True, 4, True)
    sizes = [3, 0, 7, 5]
    x = clouds(rng, sizes, 8)
    padded = np.full((4, 7, 8), np.nan, np.float32)  # padding is never read as points
    for i, (s, e) in enumerate(zip(offsets_of(sizes)[:-1], offsets_of(sizes)[1:])):
        padded[i, :e - s] = x[s:e]
    begin = np.arange(4) * 7
    for document in (True, False):
        a = args(cfg, document)
        want = _cpu.encode(x, offsets_of(sizes), *a)
        got = cfde._emulate_encode(padded.reshape(28, 8), None, *a, begin=begin, end=begin + sizes)
        assert_bits_equal(got, want)
        # ranges in any order, overlapping, repeated
        b2, e2 = np.array([14, 0, 14]), np.array([21, 3, 21])
        got = cfde._emulate_encode(padded.reshape(28, 8), None, *a, begin=b2, end=e2, group_rows=3)
        assert_bits_equal(got, want[[2, 0, 2]])


@needs_emulator
def test_emulated_empty_batch_and_empty_clouds(rng):
    for cfg in (config(8, 2, 3, True, 4, True, final=9), config(8, 2, 0), config(8, 1, 3, fill=True)):
        a = args(cfg, True)
        out = cfde._emulate_encode(np.zeros((0, 8), np.float32), [0], *a)
        assert out.shape == (0, cfg.output_dimension)
        out = cfde._emulate_encode(np.zeros((0, 8), np.float32), [0, 0, 0], *a)
        assert out.shape == (2, cfg.output_dimension)
        assert_bits_equal(out, np.zeros_like(out))


@needs_emulator
def test_emulated_non_finite_points(rng):
    cfg = config(8, 2, 3, True, 4, True)
    x = clouds(rng, [3, 4, 5, 2], 8)
    x[9, 2] = np.inf
    x[4, 0] = np.nan
    for document in (True, False):
        with pytest.raises(ValueError, match=r"NaN or inf \(point cloud 1\)"):
            cfde._emulate_encode(x, offsets_of([3, 4, 5, 2]), *args(cfg, document), threads=32)
    # padding rows holding NaN are not points
    x[4, 0] = 0.0
    x[9, 2] = 0.0
    x[14:] = np.nan
    got = cfde._emulate_encode(np.concatenate([x[:14], np.full((3, 8), np.nan, np.float32)]),
                               None, *args(cfg, True), begin=[0, 3, 7, 12], end=[3, 7, 12, 14])
    assert_bits_equal(got, _cpu.encode(x[:14], offsets_of([3, 4, 5, 2]), *args(cfg, True)))


@needs_emulator
def test_emulated_ties_and_duplicates(rng):
    # every token equal: one occupied partition per repetition, all empties fill from token 0
    cfg = config(5, 3, 4, False, None, True)
    x = np.tile(rng.standard_normal((1, 5)).astype(np.float32), (9, 1))
    for document in (True, False):
        a = args(cfg, document)
        assert_bits_equal(cfde._emulate_encode(x, [0, 9], *a), _cpu.encode(x, np.array([0, 9]), *a))
    # tokens on +-1 grid points: many exact ties in the Hamming search
    x = rng.integers(-1, 2, (40, 6)).astype(np.float32)
    cfg = config(6, 2, 5, True, 3, True)
    for document in (True, False):
        a = args(cfg, document)
        assert_bits_equal(cfde._emulate_encode(x, [0, 13, 40], *a), _cpu.encode(x, np.array([0, 13, 40]), *a))


def _golden():
    z = np.load(os.path.join(HERE, "data", "fde_golden.npz"))
    configs = json.loads(str(z["configs"]))
    tok_off = np.concatenate([[0], np.cumsum([n * c["dimension"] for n, c in zip(z["lengths"], configs)])])
    out_off = np.concatenate([[0], np.cumsum(z["out_lengths"])])
    for i, c in enumerate(configs):
        x = z["tokens"][tok_off[i]:tok_off[i + 1]].reshape(-1, c["dimension"])
        yield c, x, z["docs"][out_off[i]:out_off[i + 1]], z["queries"][out_off[i]:out_off[i + 1]]


def _assert_reference(got, want, cfg):
    if cfg.projection_type == "identity":
        np.testing.assert_array_equal(got, want)
    else:  # the reference sums a dense matrix product in another order (specs/fde.md)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(float(np.abs(want).max()), 1e-30))


@needs_emulator
def test_emulated_golden_vectors():
    """Google's reference output (muvera-fde 0.1.0), for the cases small enough to emulate."""
    ran = 0
    for c, x, want_doc, want_query in _golden():
        cfg = FDEConfig(**c)
        if len(x) * cfg.num_repetitions > 1000:
            continue
        off = np.array([0, len(x)])
        _assert_reference(cfde._emulate_encode(x, off, *args(cfg, True))[0], want_doc, cfg)
        _assert_reference(cfde._emulate_encode(x, off, *args(cfg, False))[0], want_query, cfg)
        ran += 1
    assert ran >= 10


# ---- the whole device path on a fake runtime (no GPU needed) -----------------------------------------
# "Device" memory is host memory: a fake embkern._cuda whose DeviceBuffer is a numpy buffer and whose
# fde.encode reads the pointers it is given and runs the emulated kernels. Generic
# __cuda_array_interface__ objects over host memory then travel the real Python path (routing,
# validation, table upload and caching, argument order of the launcher, the bad-cloud flag, output
# objects), which the GPU session will run for real.


class _FakeBuffer:
    def __init__(self, nbytes, device=-1):
        self._a = np.zeros(max(int(nbytes), 1) + 16, np.uint8)
        self.nbytes, self.device = int(nbytes), 0
        self.ptr = self._a.ctypes.data + (-self._a.ctypes.data) % 16

    def _view(self, n):
        return np.ctypeslib.as_array((ctypes.c_uint8 * max(n, 1)).from_address(self.ptr))[:n]

    def copy_from_host(self, arr, stream=0):
        self._view(arr.nbytes)[...] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)

    def copy_to_host(self, arr, stream=0):
        arr.reshape(-1).view(np.uint8)[...] = self._view(arr.nbytes)


def _host_view(ptr, count, dtype):
    dtype = np.dtype(dtype)
    if ptr == 0 or count == 0:
        return np.zeros(0, dtype)
    raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(ptr)
    return np.ctypeslib.as_array(raw).view(dtype)


class _FakeFde:
    calls = []

    @staticmethod
    def encode(x, rows, begin, end, d, reps, k, p, final_dim, document, fill, ams, gauss, ams_order,
               ams_osign, ams_start, fp_order, fp_osign, fp_start, out, bad, stream, device, **launch):
        inner = reps * (1 << k) * p
        xs = _host_view(x, rows * d, np.float32).reshape(rows, d)
        res, code = _cuda.fde._emulate_encode(
            xs, begin, end, _host_view(gauss, d * reps * k, np.float32),
            _host_view(ams_order, reps * d if ams else 0, np.int32),
            _host_view(ams_osign, reps * d if ams else 0, np.float32),
            _host_view(ams_start, reps * (p + 1) if ams else 0, np.int32),
            _host_view(fp_order, inner if final_dim else 0, np.int32),
            _host_view(fp_osign, inner if final_dim else 0, np.float32),
            _host_view(fp_start, final_dim + 1 if final_dim else 0, np.int32),
            reps, k, p, final_dim, document, fill, ams, threads=32)
        _host_view(out, res.size, np.float32)[...] = res.reshape(-1)
        _host_view(bad, 1, np.uint32)[0] = code
        _FakeFde.calls.append(dict(stream=stream, device=device, **launch))


class _FakeCuda:
    DeviceBuffer = _FakeBuffer
    fde = _FakeFde

    @staticmethod
    def get_device():
        return 0

    @staticmethod
    def pointer_device(ptr):
        return 0

    @staticmethod
    def stream_synchronize(stream, device=-1):
        pass

    @staticmethod
    def stream_wait(consumer, producer, device=-1):
        pass


class HostCAI:
    """A __cuda_array_interface__ over host memory (for the fake runtime only)."""

    def __init__(self, arr):
        self.arr = np.ascontiguousarray(arr)
        self.__cuda_array_interface__ = dict(shape=self.arr.shape, typestr=self.arr.dtype.str,
                                             data=(self.arr.ctypes.data, False), strides=None,
                                             version=3, stream=7)


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(cb, "_state", (_FakeCuda, 1, "fake device (host memory)"))
    monkeypatch.setattr(cfde, "_cache", type(cfde._cache)())
    _FakeFde.calls.clear()
    yield


@needs_emulator
def test_fake_runtime_internal_wrapper(fake_gpu, rng):
    cfg = config(12, 3, 4, True, 5, True, final=41)
    sizes = [4, 0, 9, 1]
    x = clouds(rng, sizes, 12)
    off = offsets_of(sizes)
    for document in (True, False):
        a = args(cfg, document)
        want = _cpu.encode(x, off, *a)
        assert_bits_equal(cfde.encode(x, off, *a), want)              # numpy in, numpy out
        got = cfde.encode(HostCAI(x), off, *a, tile=2, keys=1)        # CAI in, CudaArray out
        assert isinstance(got, cb.CudaArray)
        assert_bits_equal(np.asarray(got), want)
    assert _FakeFde.calls[-1]["stream"] == 7 and _FakeFde.calls[-1]["tile"] == 2
    assert len(cfde._cache) == 1  # tables uploaded once per config (both sides) and reused
    bad = x.copy()
    bad[10, 3] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf \(point cloud 2\)"):
        cfde.encode(HostCAI(bad), off, *args(cfg, True))


@needs_emulator
def test_fake_runtime_public_routing(fake_gpu, rng):
    cfg = config(8, 2, 3, False, None, True, final=None)
    sizes = [3, 0, 6]
    x = clouds(rng, sizes, 8)
    want = encode_documents(x, cfg, lengths=sizes, backend="cpu")
    assert_bits_equal(np.asarray(encode_documents(HostCAI(x), cfg, lengths=sizes)), want)
    padded = np.full((3, 6, 8), np.nan, np.float32)
    for i, (s, e) in enumerate(zip(offsets_of(sizes)[:-1], offsets_of(sizes)[1:])):
        padded[i, :e - s] = x[s:e]
    got = encode_documents(HostCAI(padded), cfg, lengths=np.array(sizes))
    assert isinstance(got, cb.CudaArray) and got.shape == want.shape
    assert_bits_equal(np.asarray(got), want)
    one = encode_queries(HostCAI(x[3:9]), cfg)
    assert one.shape == (cfg.output_dimension,)
    assert_bits_equal(np.asarray(one), encode_queries(x[3:9], cfg, backend="cpu"))
    assert_bits_equal(encode_queries(x[3:9], cfg, backend="cuda"), encode_queries(x[3:9], cfg, backend="cpu"))
    with pytest.raises(ValueError, match=r"NaN or inf \(point cloud 0\)"):
        encode_documents(HostCAI(padded), cfg)  # without lengths the NaN padding rows are points


# ---- the real kernels (need a CUDA device) -------------------------------------------------------


def _poison_torch_allocator(torch, nbytes):
    """Fill freed memory of torch's caching allocator with NaN, so unwritten outputs show up."""
    junk = torch.full((max(1, nbytes // 4),), float("nan"), device="cuda")
    del junk


GPU_CONFIGS = [
    (1, 1, 0, False, None, False, None),
    (7, 3, 4, False, None, True, None),
    (33, 2, 5, False, None, True, None),
    (128, 4, 5, False, None, True, None),
    (17, 2, 5, True, 5, True, None),
    (128, 20, 5, True, 16, True, None),
    (128, 10, 4, True, 8, False, None),
    (64, 5, 6, False, None, True, 1000),
    (12, 3, 3, True, 5, True, 37),
    (3, 7, 10, False, None, True, None),
]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("d, reps, k, ams, p, fill, final", GPU_CONFIGS)
def test_gpu_matches_cpu(rng, d, reps, k, ams, p, fill, final):
    cfg = config(d, reps, k, ams, p, fill, final, seed=int(rng.integers(0, 2**31 - 30)))
    sizes = [5, 0, 1, 70, 2, 17, 300, 129, 64, 65]
    x = clouds(rng, sizes, d)
    off = offsets_of(sizes)
    for document in (True, False):
        a = args(cfg, document)
        want = _cpu.encode(x, off, *a)
        assert_bits_equal(cfde.encode(x, off, *a), want)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("launch", [
    dict(keys=1), dict(stage=0), dict(tile=1), dict(tile=7, threads=64), dict(group_rows=50),
    dict(max_grid=1), dict(threads=32, keys=1, stage=0, scratch_bytes=1), dict(vbuf_floats=1),
])
def test_gpu_forced_launch_shapes(rng, launch):
    sizes = [int(n) for n in rng.integers(0, 200, 60)]
    x = clouds(rng, sizes, 40)
    off = offsets_of(sizes)
    for cfg in (config(40, 6, 5, True, 8, True, final=301), config(40, 3, 4, False, None, True)):
        for document in (True, False):
            a = args(cfg, document)
            assert_bits_equal(cfde.encode(x, off, *a, **launch), _cpu.encode(x, off, *a))


@pytest.mark.gpu
@needs_gpu
def test_gpu_large_batch_and_big_clouds(rng):
    cfg = config(128, 20, 5, True, 16, True)
    sizes = [int(n) for n in rng.integers(0, 300, 3000)] + [5000, 0, 1]  # one cloud beyond smem
    x = clouds(rng, sizes, 128)
    off = offsets_of(sizes)
    for document in (True, False):
        a = args(cfg, document)
        assert_bits_equal(cfde.encode(x, off, *a), _cpu.encode(x, off, *a))


@pytest.mark.gpu
@needs_gpu
def test_gpu_golden_vectors():
    for c, x, want_doc, want_query in _golden():
        cfg = FDEConfig(**c)
        _assert_reference(encode_documents(x, cfg, backend="cuda"), want_doc, cfg)
        _assert_reference(encode_queries(x, cfg, backend="cuda"), want_query, cfg)


@pytest.mark.gpu
@needs_gpu
def test_gpu_public_numpy_backend_cuda(rng):
    cfg = config(24, 5, 4, True, 8, True, final=100)
    cl = [rng.standard_normal((n, 24)).astype(np.float32) for n in (5, 1, 0, 40, 3)]
    for f in (encode_documents, encode_queries):
        got = f(cl, cfg, backend="cuda")
        assert isinstance(got, np.ndarray)
        assert_bits_equal(got, f(cl, cfg, backend="cpu"))
        assert_bits_equal(f(cl[3], cfg, backend="cuda"), f(cl[3], cfg, backend="cpu"))


@pytest.mark.gpu
@needs_gpu
def test_gpu_empty_inputs_and_nan():
    cfg = config(8, 2, 3, True, 4, True)
    assert encode_documents([], cfg, backend="cuda").shape == (0, cfg.output_dimension)
    v = encode_documents(np.zeros((0, 8), np.float32), cfg, backend="cuda")
    assert v.shape == (cfg.output_dimension,)
    assert_bits_equal(v, np.zeros_like(v))
    x = np.ones((6, 8), np.float32)
    x[4, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(point cloud 1\)"):
        encode_documents([x[:2], x], cfg, backend="cuda")


@pytest.mark.gpu
@needs_gpu
def test_gpu_cupy_in_cupy_out(rng):
    cupy = pytest.importorskip("cupy")
    cfg = config(32, 6, 4, True, 8, True)
    sizes = [7, 0, 33, 1, 12]
    x = clouds(rng, sizes, 32)
    want = encode_documents(x, cfg, lengths=sizes, backend="cpu")
    got = encode_documents(cupy.asarray(x), cfg, lengths=sizes)
    assert isinstance(got, cupy.ndarray)
    assert_bits_equal(cupy.asnumpy(got), want)
    # 3-D padded with lengths (padding holds NaN: never read), float64 converted on the device
    padded = np.full((5, 33, 32), np.nan, np.float32)
    for i, (s, e) in enumerate(zip(offsets_of(sizes)[:-1], offsets_of(sizes)[1:])):
        padded[i, :e - s] = x[s:e]
    got = encode_documents(cupy.asarray(padded).astype(cupy.float64), cfg, lengths=cupy.asarray(sizes))
    assert_bits_equal(cupy.asnumpy(got), want)
    # a list of CuPy clouds; a single cloud -> 1-D; non-contiguous input
    got = encode_queries([cupy.asarray(x[s:e]) for s, e in zip(offsets_of(sizes)[:-1], offsets_of(sizes)[1:])], cfg)
    assert_bits_equal(cupy.asnumpy(got), encode_queries(x, cfg, lengths=sizes, backend="cpu"))
    one = encode_queries(cupy.asarray(x[:7].T.copy()).T, cfg)
    assert one.shape == (cfg.output_dimension,)
    assert_bits_equal(cupy.asnumpy(one), encode_queries(x[:7], cfg, backend="cpu"))


@pytest.mark.gpu
@needs_gpu
def test_gpu_torch_in_torch_out_on_a_side_stream(rng):
    torch = pytest.importorskip("torch")
    cfg = config(16, 4, 5, False, None, True, final=333)
    sizes = [3, 50, 0, 9]
    x = clouds(rng, sizes, 16)
    want = encode_documents(x, cfg, lengths=sizes, backend="cpu")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        _poison_torch_allocator(torch, 64 << 20)  # the caching allocator keeps blocks per stream
        tx = torch.from_numpy(x).cuda()
        got = encode_documents(tx, cfg, lengths=sizes)
        lst = encode_documents([tx[:3], tx[3:53], tx[53:53], tx[53:]], cfg)
        tg = torch.from_numpy(x[:3]).cuda().requires_grad_(True)
        one = encode_queries(tg, cfg)
    side.synchronize()
    assert got.is_cuda and got.dtype == torch.float32 and got.shape == want.shape
    assert_bits_equal(got.cpu().numpy(), want)
    assert_bits_equal(lst.cpu().numpy(), want)
    assert_bits_equal(one.detach().cpu().numpy(), encode_queries(x[:3], cfg, backend="cpu"))


@pytest.mark.gpu
@needs_gpu
def test_gpu_generic_cai_gives_cuda_array(rng):
    cupy = pytest.importorskip("cupy")

    class Plain:
        def __init__(self, arr):
            self.arr = arr
            self.__cuda_array_interface__ = arr.__cuda_array_interface__

    cfg = config(8, 2, 3, True, 4, True)
    x = clouds(rng, [4, 6], 8)
    out = encode_documents(Plain(cupy.asarray(x)), cfg, lengths=[4, 6])
    assert isinstance(out, cb.CudaArray)
    assert_bits_equal(np.asarray(out), encode_documents(x, cfg, lengths=[4, 6], backend="cpu"))
    one = encode_documents(Plain(cupy.asarray(x[:4])), cfg)
    assert one.shape == (cfg.output_dimension,)
    assert_bits_equal(np.asarray(one), encode_documents(x[:4], cfg, backend="cpu"))
    padded = cupy.asarray(np.stack([x[:4], x[4:8]]))
    out = encode_documents(Plain(padded), cfg, lengths=[4, 3])
    assert_bits_equal(np.asarray(out), encode_documents([x[:4], x[4:7]], cfg, backend="cpu"))
