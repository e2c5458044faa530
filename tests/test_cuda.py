"""CUDA backend: tests that run everywhere, and ``gpu`` tests that compare every kernel with the CPU.

Without a GPU this checks that ``embkern._cuda`` (when built) imports and reports why no device is
usable, the array-protocol layer's parsing and errors (fake ``__cuda_array_interface__`` objects),
and the CUDA kernel bodies themselves, run by the host emulator of ``embkern._cuda`` (one thread per
CUDA thread, the same source and launch orchestration as on the GPU). The ``gpu`` tests run the
real kernels and skip when no device is available.
"""

import importlib

import numpy as np
import pytest

from embkern import _cuda_backend as cb
from embkern._cuda_ops import binary as cbin

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None

try:
    _cpu = importlib.import_module("embkern._core").binary  # the CPU path
except ImportError:
    _cpu = None

HAVE_GPU = cb.available()
needs_module = pytest.mark.skipif(_cuda is None, reason="embkern._cuda was not built")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")


# ---- references ---------------------------------------------------------------------------------

_POP = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.int32)


def ref_pack(x, threshold, little):
    return np.packbits(x > threshold, axis=-1, bitorder="little" if little else "big")


def ref_distance(a, b):
    return _POP[a[:, None, :] ^ b[None, :, :]].sum(-1, dtype=np.int32)


def ref_topk(q, db, k):
    dist = ref_distance(q, db)
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]  # stable: ties by smaller index
    return np.take_along_axis(dist, idx, 1), idx.astype(np.int64)


def codes(rng, n, cs, levels=256):
    return rng.integers(0, levels, (n, cs), dtype=np.uint8)


def misaligned(a, offset=1):
    """A C-contiguous copy of `a` whose data starts `offset` bytes past an aligned address."""
    buf = np.zeros(a.nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


# ---- module and availability (no GPU needed) ----------------------------------------------------


def test_status_is_readable_and_never_raises():
    text = cb.status()
    assert isinstance(text, str) and text
    assert isinstance(cb.available(), bool)
    if not cb.available():
        assert ("was not built" in text) or text.startswith("no CUDA device: ") or (
            "failed to import" in text
        )


@needs_module
def test_module_reports_devices_without_raising():
    count, reason = _cuda.device_count()
    assert isinstance(count, int) and isinstance(reason, str)
    assert cb.built()
    if count == 0:
        assert reason  # e.g. "cudaErrorInsufficientDriver (...)" or "cudaErrorNoDevice (...)"
    assert _cuda.runtime_version() >= 12000
    assert _cuda.driver_version() >= 0


@needs_module
@no_gpu_only
def test_no_device_status_names_the_cuda_error():
    assert not cb.available()
    assert cb.status().startswith("no CUDA device: ")
    assert "cudaError" in cb.status() or "no device" in cb.status()


@no_gpu_only
def test_calls_without_gpu_raise_runtime_error_with_reason():
    a = np.zeros((2, 4), np.uint8)
    with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
        cbin.hamming_distance(a, a)
    with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
        cbin.hamming_topk(a, a, 1)
    with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
        cbin.pack_signs_f32(np.zeros((2, 9), np.float32), 0.0, False)


def test_backend_defines_only_gpu_kernels():
    for name in ("pack_signs_f32", "pack_signs_f64", "hamming_distance", "hamming_topk",
                 "hamming_range", "asymmetric_scores", "multibit_scores", "multibit_topk"):
        assert callable(getattr(cbin, name))


# ---- array-protocol parsing (no GPU needed) ----------------------------------------------------


class FakeCAI:
    """An object exposing only a __cuda_array_interface__ dict (its pointer is never read)."""

    def __init__(self, shape, typestr="|u1", ptr=1 << 32, strides=None, version=3, **extra):
        self.__cuda_array_interface__ = dict(
            shape=shape, typestr=typestr, data=(ptr, False), strides=strides, version=version, **extra
        )


def test_parse_cai_fields():
    info = cb._parse_cai(
        {"shape": (3, 5), "typestr": "<f4", "data": (4096, True), "version": 3, "stream": 7}, "x"
    )
    assert info["ptr"] == 4096 and info["shape"] == (3, 5)
    assert info["dtype"] == np.float32 and info["readonly"] and info["stream"] == 7
    assert info["contiguous"]


@pytest.mark.parametrize(
    "shape, strides, itemsize, expected",
    [
        ((3, 4), None, 1, True),
        ((3, 4), (4, 1), 1, True),
        ((3, 4), (1, 3), 1, False),
        ((3, 4), (8, 1), 1, False),
        ((3, 4), (16, 4), 4, True),
        ((1, 4), (999, 4), 4, True),  # extent-1 axes may have any stride
        ((0, 4), (1, 7), 1, True),  # empty
        ((3, 4), (4,), 1, False),
    ],
)
def test_c_contiguity(shape, strides, itemsize, expected):
    assert cb._c_contiguous(shape, strides, itemsize) is expected


def test_cai_mask_rejected():
    a = FakeCAI((2, 4), mask=FakeCAI((2, 4), typestr="|b1"))
    with pytest.raises(ValueError, match="a: masked"):
        cbin.hamming_distance(a, FakeCAI((2, 4)))


def test_cai_missing_keys_and_bad_values():
    with pytest.raises(ValueError, match="lacks typestr"):
        cb._parse_cai({"shape": (2,), "data": (1, False)}, "x")
    with pytest.raises(TypeError, match="must be a dict"):
        cb._parse_cai([1, 2], "x")
    with pytest.raises(ValueError, match="null device pointer"):
        cb._parse_cai({"shape": (2,), "typestr": "|u1", "data": (0, False)}, "x")
    assert cb._parse_cai({"shape": (0, 3), "typestr": "|u1", "data": (0, False)}, "x")["ptr"] == 0
    with pytest.raises(ValueError, match="stream 0"):
        cb._parse_cai({"shape": (2,), "typestr": "|u1", "data": (8, False), "version": 3, "stream": 0}, "x")
    with pytest.raises(ValueError, match="data"):
        cb._parse_cai({"shape": (2,), "typestr": "|u1", "data": 8}, "x")
    with pytest.raises(ValueError, match="shape"):
        cb._parse_cai({"shape": ("a",), "typestr": "|u1", "data": (8, False)}, "x")
    # Versions before 3 carry no stream: nothing to wait for.
    assert cb._parse_cai({"shape": (2,), "typestr": "|u1", "data": (8, False), "version": 2,
                          "stream": 5}, "x")["stream"] is None


def test_cai_dtype_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"a must be uint8 codes, got float32"):
        cbin.hamming_distance(FakeCAI((2, 4), "<f4"), FakeCAI((2, 4)))
    with pytest.raises(TypeError, match=r"database must be uint8 codes, got int64"):
        cbin.hamming_topk(FakeCAI((2, 4)), FakeCAI((3, 4), "<i8"), 1)
    with pytest.raises(TypeError, match=r"x must be float32, got float64"):
        cbin.pack_signs_f32(FakeCAI((2, 9), "<f8"), 0.0, False)
    with pytest.raises(TypeError, match=r"x must be float64, got float32"):
        cbin.pack_signs_f64(FakeCAI((2, 9), "<f4"), 0.0, False)
    with pytest.raises(TypeError, match="non-native byte order"):
        cbin.pack_signs_f32(FakeCAI((2, 9), ">f4"), 0.0, False)
    with pytest.raises(TypeError, match="unsupported element type"):
        cbin.pack_signs_f32(FakeCAI((2, 9), "<zz"), 0.0, False)


def test_cai_shape_and_layout_errors():
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        cbin.hamming_distance(FakeCAI((3, 4), strides=(1, 3)), FakeCAI((2, 4)))
    with pytest.raises(ValueError, match="queries must have 2 dimensions, got 1"):
        cbin.hamming_topk(FakeCAI((4,)), FakeCAI((3, 4)), 1)
    with pytest.raises(ValueError, match="code widths differ: 4 vs 5 bytes"):
        cbin.hamming_distance(FakeCAI((3, 4)), FakeCAI((3, 5)))
    with pytest.raises(ValueError, match="at least one byte"):
        cbin.hamming_distance(FakeCAI((3, 0)), FakeCAI((3, 0)))
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\], got 4"):
        cbin.hamming_topk(FakeCAI((2, 4)), FakeCAI((3, 4)), 4)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\], got 0"):
        cbin.hamming_topk(FakeCAI((2, 4)), FakeCAI((3, 4)), 0)
    with pytest.raises(ValueError, match="not aligned"):
        cbin.pack_signs_f32(FakeCAI((2, 9), "<f4", ptr=(1 << 32) + 2), 0.0, False)


def test_cai_property_that_raises_is_a_type_error():
    class Broken:
        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("Can't export tensors that require grad")

    with pytest.raises(TypeError, match="a: cannot read __cuda_array_interface__"):
        cbin.hamming_distance(Broken(), FakeCAI((2, 4)))


def test_mixed_host_and_device_arguments_rejected():
    with pytest.raises(ValueError, match="a is a host array but b is a CUDA array"):
        cbin.hamming_distance(np.zeros((2, 4), np.uint8), FakeCAI((2, 4)))
    with pytest.raises(ValueError, match="database is a host array but queries is a CUDA array"):
        cbin.hamming_topk(FakeCAI((2, 4)), np.zeros((3, 4), np.uint8), 1)


def test_host_inputs_are_checked_like_device_ones():
    with pytest.raises(TypeError, match="a must be uint8 codes, got int64"):
        cbin.hamming_distance([[1, 2]], np.zeros((1, 2), np.uint8))
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        cbin.pack_signs_f32(np.zeros((2, 3)), 0.0, False)
    op = cb._operand(np.zeros((4, 6), np.uint8)[:, ::2], "a")  # non-contiguous host: copied
    assert op.kind == "host" and op.host.flags.c_contiguous and op.shape == (4, 3)


@no_gpu_only
def test_valid_device_arguments_reach_the_availability_check():
    with pytest.raises(RuntimeError, match="unavailable"):
        cbin.hamming_topk(FakeCAI((2, 4)), FakeCAI((3, 4)), 2)
    with pytest.raises(RuntimeError, match="unavailable"):
        cbin.pack_signs_f32(FakeCAI((2, 9), "<f4", strides=(36, 4)), 0.0, True)


class _DLPackOnly:
    def __init__(self, arr, device=None):
        self._arr, self._device = arr, device

    def __dlpack__(self, *args, **kwargs):
        return self._arr.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._device or self._arr.__dlpack_device__()


def test_dlpack_cpu_producers_are_host_arrays():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    op = cb._operand(_DLPackOnly(arr), "a")
    assert op.kind == "host"
    np.testing.assert_array_equal(op.host, arr)


def test_dlpack_cuda_producer_needs_cupy_or_torch():
    for name in ("cupy", "torch"):
        try:
            importlib.import_module(name)
            pytest.skip(f"{name} is installed")
        except ImportError:
            pass
    with pytest.raises(TypeError, match="a: a CUDA DLPack array can only be read with CuPy or PyTorch"):
        cb._operand(_DLPackOnly(np.zeros((2, 2), np.uint8), device=(2, 0)), "a")
    with pytest.raises(TypeError, match="DLPack device type 14"):
        cb._operand(_DLPackOnly(np.zeros((2, 2), np.uint8), device=(14, 0)), "a")


def test_torch_cpu_tensors_are_host_arrays():
    torch = pytest.importorskip("torch")
    t = torch.arange(8, dtype=torch.uint8).reshape(2, 4)
    op = cb._operand(t, "a")
    assert op.kind == "host"
    np.testing.assert_array_equal(op.host, t.numpy())


# ---- CUDA kernel bodies under the host emulator (no GPU needed) --------------------------------


@needs_module
@pytest.mark.parametrize("d", [1, 7, 8, 9, 16, 31, 64, 65])
@pytest.mark.parametrize("little", [False, True])
def test_emulated_pack_signs(d, little):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((37, d)).astype(np.float32)
    x[0, 0] = np.nan
    x[1, : min(d, 3)] = 0.25  # == threshold: bit clear
    for f32 in (x, misaligned(x, 4)):  # the 16-byte vector path and the scalar one
        np.testing.assert_array_equal(_cuda.binary._emulate_pack_signs_f32(f32, 0.25, little, 32, 1),
                                      ref_pack(f32, np.float32(0.25), little))
    x64 = x.astype(np.float64) + 1e-12
    np.testing.assert_array_equal(_cuda.binary._emulate_pack_signs_f64(x64, 0.25, little, 64, 2),
                                  ref_pack(x64, 0.25, little))


@needs_module
def test_emulated_pack_signs_empty():
    assert _cuda.binary._emulate_pack_signs_f32(np.zeros((0, 5), np.float32), 0.0, False).shape == (0, 1)
    assert _cuda.binary._emulate_pack_signs_f32(np.zeros((3, 0), np.float32), 0.0, False).shape == (3, 0)


@needs_module
@pytest.mark.parametrize("cs", [1, 3, 4, 12, 16, 33, 64, 80])
def test_emulated_hamming_distance(cs):
    rng = np.random.default_rng(cs)
    a, b = codes(rng, 67, cs), codes(rng, 70, cs)
    np.testing.assert_array_equal(_cuda.binary._emulate_hamming_distance(a, b, 1), ref_distance(a, b))
    am = misaligned(a, 1)  # byte loads for one operand
    np.testing.assert_array_equal(_cuda.binary._emulate_hamming_distance(am, b, 2), ref_distance(a, b))


@needs_module
def test_emulated_hamming_distance_empty_and_errors():
    a = np.zeros((0, 4), np.uint8)
    assert _cuda.binary._emulate_hamming_distance(a, np.zeros((5, 4), np.uint8)).shape == (0, 5)
    with pytest.raises(ValueError, match="at least one byte"):
        _cuda.binary._emulate_hamming_distance(np.zeros((2, 0), np.uint8), np.zeros((2, 0), np.uint8))


def _check_topk(q, db, k, **kw):
    d, i = _cuda.binary._emulate_hamming_topk(q, db, k, **kw)
    rd, ri = ref_topk(q, db, k)
    assert d.dtype == np.int32 and i.dtype == np.int64 and d.shape == (len(q), k)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)


@needs_module
@pytest.mark.parametrize("path", [1, 2])
@pytest.mark.parametrize("partitions", [0, 1, 3])
@pytest.mark.parametrize("k", [1, 5, 64, 151])
def test_emulated_topk_paths(path, partitions, k):
    rng = np.random.default_rng(k + 10 * path)
    q = codes(rng, 4, 5)
    db = codes(rng, 151, 5, levels=4)  # few distinct distances: many ties
    _check_topk(q, db, k, path=path, partitions=partitions)


@needs_module
@pytest.mark.parametrize("cs", [1, 4, 12, 16, 33])
def test_emulated_topk_code_widths_and_alignment(cs):
    rng = np.random.default_rng(cs)
    q, db = codes(rng, 3, cs), codes(rng, 97, cs)
    _check_topk(q, db, 10)
    _check_topk(misaligned(q, 1), db, 10, partitions=2)
    _check_topk(q, misaligned(db, 3), 97, path=2)


@needs_module
def test_emulated_topk_all_equal_and_duplicates():
    db = np.zeros((130, 4), np.uint8)
    q = np.zeros((2, 4), np.uint8)
    for path in (1, 2):
        for k in (1, 33, 130):
            _check_topk(q, db, k, path=path)
    rng = np.random.default_rng(3)
    db = np.repeat(codes(rng, 10, 4), 13, axis=0)  # each code 13 times
    _check_topk(codes(rng, 3, 4), db, 20, partitions=4)


@needs_module
def test_emulated_topk_compaction():
    # Distances fall with the index, so the bound never rejects anything and the candidate buffer
    # (cap = next power of two >= k + chunk = 64) fills and is cut back to k over and over.
    cs = 8
    nb = 8 * cs + 1
    db = np.zeros((nb * 3, cs), np.uint8)
    for j in range(nb * 3):
        ones = max(0, 8 * cs - j // 3)
        bits = np.zeros(8 * cs, np.uint8)
        bits[:ones] = 1
        db[j] = np.packbits(bits)
    q = np.zeros((2, cs), np.uint8)
    for k in (1, 7, 31):
        _check_topk(q, db, k, path=1, threads=32, items_per_thread=1, partitions=1)
        _check_topk(q, db, k, path=1, threads=32, items_per_thread=1, partitions=3)


@needs_module
@pytest.mark.parametrize("hist_bins", [2, 3, 9, 40])
def test_emulated_topk_clamped_histogram(hist_bins):
    # Fewer bins than distances: the top bin collects "this or more".
    rng = np.random.default_rng(hist_bins)
    q, db = codes(rng, 3, 6), codes(rng, 200, 6)
    for k in (1, 12, 200):
        _check_topk(q, db, k, path=1, hist_bins=hist_bins, partitions=2)


@needs_module
def test_emulated_topk_launch_shapes():
    rng = np.random.default_rng(7)
    q, db = codes(rng, 9, 7), codes(rng, 300, 7, levels=8)
    _check_topk(q, db, 17, threads=64, items_per_thread=3)
    _check_topk(q, db, 17, threads=32, items_per_thread=2, sm_count=3)  # auto partitions
    _check_topk(q, db, 250, path=2, threads=64, batch_bytes=2 * 57 * 8)  # query batches of 2
    _check_topk(q, db, 250, path=2, threads=32, batch_bytes=1, sm_count=4)  # batches of 1
    # 8 * cs + 1 > 12288 bins do not fit shared memory: histogram straight in global memory.
    qb, dbb = codes(rng, 2, 1600), codes(rng, 40, 1600)
    _check_topk(qb, dbb, 25, path=2)


@needs_module
def test_emulated_topk_errors():
    q = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        _cuda.binary._emulate_hamming_topk(q, np.zeros((3, 4), np.uint8), 4)
    with pytest.raises(ValueError, match="too large for the filter path"):
        _cuda.binary._emulate_hamming_topk(q, np.zeros((5000, 4), np.uint8), 4500, path=1)
    with pytest.raises(ValueError, match="threads"):
        _cuda.binary._emulate_hamming_topk(q, np.zeros((3, 4), np.uint8), 1, threads=48)
    d, i = _cuda.binary._emulate_hamming_topk(np.zeros((0, 4), np.uint8), np.zeros((3, 4), np.uint8), 2)
    assert d.shape == (0, 2) and i.shape == (0, 2)


# ---- the real kernels (need a CUDA device) ------------------------------------------------------


def _cpu_topk(q, db, k):
    if _cpu is not None:
        return _cpu.hamming_topk(q, db, k)
    return ref_topk(q, db, k)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("d", [1, 7, 8, 33, 64, 100, 1025])
def test_gpu_pack_signs(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((131, d)).astype(np.float32)
    x[0, 0] = np.nan
    for little in (False, True):
        got = cbin.pack_signs_f32(x, 0.1, little)
        np.testing.assert_array_equal(got, ref_pack(x, np.float32(0.1), little))
        if _cpu is not None:
            np.testing.assert_array_equal(got, _cpu.pack_signs_f32(x, 0.1, little))
        x64 = x.astype(np.float64)
        np.testing.assert_array_equal(cbin.pack_signs_f64(x64, 0.1, little), ref_pack(x64, 0.1, little))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("cs", [1, 3, 4, 16, 32, 33, 128])
def test_gpu_hamming_distance(cs):
    rng = np.random.default_rng(cs)
    a, b = codes(rng, 130, cs), codes(rng, 67, cs)
    got = cbin.hamming_distance(a, b)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref_distance(a, b))
    if _cpu is not None:
        np.testing.assert_array_equal(got, _cpu.hamming_distance(a, b))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("cs", [4, 16, 32, 33])
@pytest.mark.parametrize("k", [1, 10, 333])
def test_gpu_hamming_topk(cs, k):
    rng = np.random.default_rng(cs * 1000 + k)
    q, db = codes(rng, 37, cs), codes(rng, 333, cs, levels=3)  # many ties
    d, i = cbin.hamming_topk(q, db, k)
    rd, ri = _cpu_topk(q, db, k)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(
    "launch",
    [
        {"path": 1, "partitions": 1},
        {"path": 1, "partitions": 7},
        {"path": 1, "hist_bins": 16},
        {"path": 2},
        {"path": 2, "partitions": 5, "batch_bytes": 1},
        {"path": 1, "threads": 32, "items_per_thread": 1},
    ],
)
def test_gpu_hamming_topk_forced_paths(launch):
    rng = np.random.default_rng(11)
    q, db = codes(rng, 5, 32), codes(rng, 5000, 32, levels=2)
    for k in (1, 100, 2000):
        d, i = cbin.hamming_topk(q, db, k, **launch)
        rd, ri = ref_topk(q, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)


@pytest.mark.gpu
@needs_gpu
def test_gpu_hamming_topk_large_k_and_all_equal():
    rng = np.random.default_rng(5)
    q, db = codes(rng, 3, 16), codes(rng, 5000, 16)
    for k in (4000, 5000):  # beyond the filter path: histogram select
        d, i = cbin.hamming_topk(q, db, k)
        rd, ri = ref_topk(q, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
    z = np.zeros((4000, 8), np.uint8)
    d, i = cbin.hamming_topk(z[:2], z, 50)
    np.testing.assert_array_equal(i, np.tile(np.arange(50), (2, 1)))
    np.testing.assert_array_equal(d, 0)


@pytest.mark.gpu
@needs_gpu
def test_gpu_empty_inputs():
    a = np.zeros((0, 4), np.uint8)
    assert cbin.hamming_distance(a, np.zeros((3, 4), np.uint8)).shape == (0, 3)
    d, i = cbin.hamming_topk(a, np.zeros((3, 4), np.uint8), 2)
    assert d.shape == (0, 2) and i.shape == (0, 2)
    assert cbin.pack_signs_f32(np.zeros((0, 9), np.float32), 0.0, False).shape == (0, 2)


@pytest.mark.gpu
@needs_gpu
def test_gpu_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(1)
    q, db = codes(rng, 20, 33), codes(rng, 999, 33)
    dq, ddb = cupy.asarray(q), cupy.asarray(db)
    d, i = cbin.hamming_topk(dq, ddb, 7)
    assert isinstance(d, cupy.ndarray) and isinstance(i, cupy.ndarray)
    rd, ri = ref_topk(q, db, 7)
    np.testing.assert_array_equal(cupy.asnumpy(d), rd)
    np.testing.assert_array_equal(cupy.asnumpy(i), ri)
    # A misaligned, C-contiguous view: byte loads.
    flat = cupy.zeros(db.size + 1, cupy.uint8)
    flat[1:] = cupy.asarray(db.ravel())
    view = flat[1:].reshape(db.shape)
    np.testing.assert_array_equal(cupy.asnumpy(cbin.hamming_distance(dq, view)), ref_distance(q, db))
    # Non-contiguous input: made contiguous by CuPy.
    x = rng.standard_normal((40, 70)).astype(np.float32)
    got = cbin.pack_signs_f32(cupy.asarray(x.T.copy()).T, 0.0, False)
    np.testing.assert_array_equal(cupy.asnumpy(got), ref_pack(x, 0.0, False))


@pytest.mark.gpu
@needs_gpu
def test_gpu_torch_in_torch_out_on_a_side_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    q, db = codes(rng, 9, 16), codes(rng, 777, 16)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        tq, tdb = torch.from_numpy(q).cuda(), torch.from_numpy(db).cuda()
        d, i = cbin.hamming_topk(tq, tdb, 11)
        dist = cbin.hamming_distance(tq, tdb)
    side.synchronize()
    assert d.is_cuda and d.dtype == torch.int32 and i.dtype == torch.int64
    rd, ri = ref_topk(q, db, 11)
    np.testing.assert_array_equal(d.cpu().numpy(), rd)
    np.testing.assert_array_equal(i.cpu().numpy(), ri)
    np.testing.assert_array_equal(dist.cpu().numpy(), ref_distance(q, db))
    x = torch.randn(33, 65, device="cuda", requires_grad=True)
    got = cbin.pack_signs_f32(x, 0.0, True)
    np.testing.assert_array_equal(got.cpu().numpy(), ref_pack(x.detach().cpu().numpy(), 0.0, True))


@pytest.mark.gpu
@needs_gpu
def test_gpu_generic_cai_gives_cuda_array():
    cupy = pytest.importorskip("cupy")

    class Plain:
        def __init__(self, arr):
            self.arr = arr
            self.__cuda_array_interface__ = arr.__cuda_array_interface__

    rng = np.random.default_rng(4)
    a, b = codes(rng, 5, 8), codes(rng, 6, 8)
    out = cbin.hamming_distance(Plain(cupy.asarray(a)), Plain(cupy.asarray(b)))
    assert isinstance(out, cb.CudaArray)
    np.testing.assert_array_equal(np.asarray(out), ref_distance(a, b))
    np.testing.assert_array_equal(cupy.asnumpy(cupy.asarray(out)), ref_distance(a, b))
