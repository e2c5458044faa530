"""CUDA backend of embkern.pq: host-side checks, the kernel bodies under the host emulator, and
``gpu`` tests of the real kernels.

Every CUDA PQ kernel promises the CPU backend's results bit for bit (same float operation order and
tie rules; fast scan: same table quantisation and integer sums), so all comparisons here are exact
(float32 compared as bit patterns). Without a GPU the emulator of ``embkern._cuda`` runs the very
kernel bodies and launch orchestration (tiny sizes, small blocks and ``sm_count`` so grid-stride
loops, partitions and every top-k path run); the ``gpu`` tests skip.
"""

import importlib

import numpy as np
import pytest

from embkern import _cuda_backend as cb
from embkern import pq as ekpq
from embkern._cuda_ops import pq as cpq

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None

try:
    _cpu = importlib.import_module("embkern._core").pq
except ImportError:
    _cpu = None

HAVE_GPU = cb.available()
needs_emu = pytest.mark.skipif(_cuda is None or _cpu is None,
                               reason="needs embkern._cuda (emulator) and the compiled CPU backend")
needs_gpu = pytest.mark.skipif(not HAVE_GPU or _cpu is None, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")


def same(got, want, what=""):
    """Exact equality, float32 compared bit for bit (so -0.0 != 0.0, and NaN == NaN)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.dtype, want.shape)
    if got.dtype.kind == "f":
        got, want = got.view(np.uint32 if got.itemsize == 4 else np.uint64), want.view(
            np.uint32 if want.itemsize == 4 else np.uint64)
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)[:5]
        raise AssertionError(f"{what}: {len(np.argwhere(got != want))} differences, first at {bad.tolist()}")


def same_pair(got, want, what=""):
    same(got[0], want[0], what + " distances")
    same(got[1], want[1], what + " ids")


def misaligned(a, offset):
    buf = np.zeros(a.nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def centroids(rng, m, nbits, dsub):
    return rng.standard_normal((m, 1 << nbits, dsub)).astype(np.float32)


def random_codes(rng, n, m, nbits):
    c = rng.integers(0, 256, (n, (m * nbits + 7) // 8), dtype=np.uint8)
    if nbits == 4 and m % 2:
        c[:, -1] &= 0x0F  # odd m: the unused high nibble is zero, as encode writes it
    return c


class FakeCAI:
    """An object exposing only a __cuda_array_interface__ dict (its pointer is never read)."""

    def __init__(self, shape, typestr="<f4", ptr=1 << 32, strides=None, version=3):
        self.shape = shape
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(ptr, False),
                                             strides=strides, version=version)


# ==== host-side checks (no GPU needed) ==========================================================


def test_backend_defines_every_cpu_kernel():
    names = ("train", "encode", "decode", "distance_tables", "adc_distances", "adc_topk", "pack_fastscan",
             "unpack_fastscan", "fastscan_topk")
    for name in names:
        assert callable(getattr(cpq, name)), name
    if _cpu is not None:
        for name in names:
            assert hasattr(_cpu, name), name
    assert cpq.fastscan_bytes(33, 5) == 64 * 3 and cpq.fastscan_bytes(0, 4) == 0


def test_dtype_errors_name_the_argument():
    c8 = FakeCAI((4, 256, 2))
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        cpq.encode(FakeCAI((3, 8), "<f8"), c8, 8)
    with pytest.raises(TypeError, match="centroids must be float32, got float16"):
        cpq.encode(FakeCAI((3, 8)), FakeCAI((4, 256, 2), "<f2"), 8)
    with pytest.raises(TypeError, match="codes must be uint8 codes, got int32"):
        cpq.decode(FakeCAI((3, 4), "<i4"), c8, 8)
    with pytest.raises(TypeError, match="queries must be float32, got int8"):
        cpq.distance_tables(FakeCAI((3, 8), "|i1"), c8, 8, False)
    with pytest.raises(TypeError, match="lut must be float32, got float64"):
        cpq.adc_distances(FakeCAI((2, 4, 256), "<f8"), FakeCAI((5, 4), "|u1"))
    with pytest.raises(TypeError, match="codes must be uint8 codes, got int8"):
        cpq.adc_topk(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|i1"), 1, False)
    with pytest.raises(TypeError, match="packed must be uint8 codes, got int16"):
        cpq.fastscan_topk(FakeCAI((2, 4, 16)), FakeCAI((64,), "<i2"), 10, 4, 1, False)
    with pytest.raises(TypeError, match="cand must be int64, got int32"):
        cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, FakeCAI((2, 3), "<i4"), 1, False)
    with pytest.raises(TypeError, match="codes must be uint8 codes, got float32"):
        cpq.pack_fastscan(FakeCAI((3, 2)), 4)
    with pytest.raises(TypeError, match="k must be an int"):
        cpq.adc_topk(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|u1"), 1.5, False)
    with pytest.raises(TypeError, match="nbits must be an int"):
        cpq.encode(FakeCAI((3, 8)), c8, "8")
    with pytest.raises(TypeError, match="iterations must be an int"):
        cpq.train(FakeCAI((3, 8)), c8, 8, None)


def test_shape_errors_name_the_argument():
    c8 = FakeCAI((4, 256, 2))
    with pytest.raises(ValueError, match="nbits must be 4 or 8, got 6"):
        cpq.encode(FakeCAI((3, 8)), c8, 6)
    with pytest.raises(ValueError, match=r"centroids must have 2\*\*nbits = 16 rows per sub-quantizer, got 256"):
        cpq.encode(FakeCAI((3, 8)), c8, 4)
    with pytest.raises(ValueError, match="centroids must have 3 dimensions, got 2"):
        cpq.decode(FakeCAI((3, 4), "|u1"), FakeCAI((256, 2)), 8)
    with pytest.raises(ValueError, match="x must have dim = m \\* dsub = 8 columns, got 9"):
        cpq.encode(FakeCAI((3, 9)), c8, 8)
    with pytest.raises(ValueError, match="x must have 2 dimensions, got 1"):
        cpq.train(FakeCAI((8,)), c8, 8, 1)
    with pytest.raises(ValueError, match="codes must have ceil\\(m \\* nbits / 8\\) = 4 bytes per row, got 5"):
        cpq.decode(FakeCAI((3, 5), "|u1"), c8, 8)
    with pytest.raises(ValueError, match="codes must have ceil\\(m \\* nbits / 8\\) = 2 bytes per row, got 4"):
        cpq.adc_distances(FakeCAI((2, 4, 16)), FakeCAI((5, 4), "|u1"))
    with pytest.raises(ValueError, match="lut must have 16 \\(4-bit\\) or 256 \\(8-bit\\) entries"):
        cpq.adc_distances(FakeCAI((2, 4, 32)), FakeCAI((5, 4), "|u1"))
    with pytest.raises(ValueError, match="lut must have 3 dimensions"):
        cpq.adc_topk(FakeCAI((2, 256)), FakeCAI((5, 1), "|u1"), 1, False)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 6"):
        cpq.adc_topk(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|u1"), 6, False)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 0"):
        cpq.adc_topk(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|u1"), 0, False)
    with pytest.raises(ValueError, match="packed must hold ceil\\(n / 32\\) \\* 32 \\* ceil\\(m / 2\\) = 64 bytes"):
        cpq.fastscan_topk(FakeCAI((2, 4, 16)), FakeCAI((63,), "|u1"), 10, 4, 1, False)
    with pytest.raises(ValueError, match="packed must have 1 dimensions, got 2"):
        cpq.unpack_fastscan(FakeCAI((2, 32), "|u1"), 10, 4)
    with pytest.raises(ValueError, match="lut must have shape \\(nq, m, 16\\) = \\(nq, 4, 16\\)"):
        cpq.fastscan_topk(FakeCAI((2, 5, 16)), FakeCAI((64,), "|u1"), 10, 4, 1, False)
    with pytest.raises(ValueError, match="fast-scan search takes 1 <= m <= 256 sub-quantizers, got 257"):
        cpq.fastscan_topk(FakeCAI((2, 257, 16)), FakeCAI((32 * 129,), "|u1"), 10, 257, 1, False)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        cpq.fastscan_topk(FakeCAI((2, 4, 16)), FakeCAI((0,), "|u1"), 0, 4, 1, False)
    with pytest.raises(ValueError, match=r"k must be in \[1, 10\], got 11"):
        cpq.fastscan_topk(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, 11, False)
    with pytest.raises(ValueError, match="cand must have one row per query \\(2\\), got 3"):
        cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, FakeCAI((3, 5), "<i8"), 1, False)
    with pytest.raises(ValueError, match="cand must hold between 1 and n=10 ids per query, got 11"):
        cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, FakeCAI((2, 11), "<i8"), 1, False)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 6"):
        cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, FakeCAI((2, 5), "<i8"), 6, False)
    with pytest.raises(ValueError, match="m must be >= 1, got 0"):
        cpq.pack_fastscan(FakeCAI((3, 2), "|u1"), 0)
    with pytest.raises(ValueError, match="iterations must be >= 0, got -1"):
        cpq.train(FakeCAI((3, 8)), c8, 8, -1)
    with pytest.raises(ValueError, match="x must not be empty"):
        cpq.train(FakeCAI((0, 8)), c8, 8, 1)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        cpq.encode(FakeCAI((3, 8), strides=(4, 12)), c8, 8)
    with pytest.raises(ValueError, match="codes is a host array but lut is a CUDA array"):
        cpq.adc_distances(FakeCAI((2, 4, 256)), np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="cand is a host array but lut is a CUDA array"):
        cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, np.zeros((2, 3), np.int64), 1, False)


def test_host_inputs_are_checked_like_device_ones():
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        cpq.encode(np.zeros((3, 8)), np.zeros((4, 256, 2), np.float32), 8)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 9"):
        cpq.adc_topk(np.zeros((1, 4, 256), np.float32), np.zeros((5, 4), np.uint8), 9, False)


@no_gpu_only
def test_valid_arguments_reach_the_availability_check():
    c8 = FakeCAI((4, 256, 2))
    calls = [
        lambda: cpq.encode(FakeCAI((3, 8)), c8, 8),
        lambda: cpq.decode(FakeCAI((3, 4), "|u1"), c8, 8),
        lambda: cpq.distance_tables(FakeCAI((3, 8)), c8, 8, True),
        lambda: cpq.adc_distances(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|u1")),
        lambda: cpq.adc_topk(FakeCAI((2, 4, 256)), FakeCAI((5, 4), "|u1"), 5, True),
        lambda: cpq.pack_fastscan(FakeCAI((3, 2), "|u1"), 4),
        lambda: cpq.unpack_fastscan(FakeCAI((64,), "|u1"), 10, 4),
        lambda: cpq.fastscan_topk(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, 10, False),
        lambda: cpq.fastscan_rerank(FakeCAI((2, 4, 16)), FakeCAI((64,), "|u1"), 10, 4, FakeCAI((2, 5), "<i8"), 5,
                                    True),
        lambda: cpq.train(FakeCAI((3, 8)), c8, 8, 0),
        lambda: cpq.encode(np.zeros((3, 8), np.float32), np.zeros((4, 256, 2), np.float32), 8),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
            call()


@no_gpu_only
def test_public_api_sends_device_arrays_to_cuda():
    pq = ekpq.ProductQuantizer(8, 4, 8)
    pq.centroids = np.zeros((4, 256, 2), np.float32)
    for call in (lambda: pq.encode(FakeCAI((3, 8))), lambda: pq.decode(FakeCAI((3, 4), "|u1")),
                 lambda: pq.lookup_table(FakeCAI((3, 8))), lambda: pq.search(FakeCAI((3, 8)), FakeCAI((9, 4), "|u1"), 2),
                 lambda: pq.fit(FakeCAI((300, 8))),
                 lambda: ekpq.adc_distances(FakeCAI((2, 4, 256)), np.zeros((5, 4), np.uint8)),
                 lambda: ekpq.adc_topk(np.zeros((2, 4, 256), np.float32), FakeCAI((5, 4), "|u1"), 2)):
        with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
            call()


# ==== kernel bodies under the host emulator =====================================================

E = _cuda.pq if _cuda is not None else None

# (dim, m, nbits): fused sums (dsub 2, 4, 8), plain sums (3, 5, 16, 33), faiss's 12-d form, odd m
ENCODE_CONFIGS = [(16, 8, 8), (32, 8, 8), (64, 8, 8), (15, 5, 8), (36, 3, 8), (33, 1, 8), (40, 5, 4),
                  (34, 17, 4), (48, 4, 4), (16, 4, 4), (64, 2, 4)]


@needs_emu
@pytest.mark.parametrize("dim,m,nbits", ENCODE_CONFIGS)
def test_emulated_encode_decode(dim, m, nbits):
    rng = np.random.default_rng(dim * 31 + m)
    dsub = dim // m
    cent = centroids(rng, m, nbits, dsub)
    cent[:, 7] = cent[:, 3]  # duplicate centroids: exact distance ties
    x = rng.standard_normal((45, dim)).astype(np.float32)
    x[0] = cent[np.arange(m), 3].reshape(-1)  # distance 0 to two centroids
    x[1] = 0.5 * (cent[np.arange(m), 1] + cent[np.arange(m), 2]).reshape(-1)
    want = _cpu.encode(x, cent, nbits)
    same(E._emulate_encode(x, cent, nbits, threads=32, sm_count=2), want, "encode staged")
    same(E._emulate_encode(x, cent, nbits, threads=64, sm_count=1, smem=0), want, "encode global")
    same(E._emulate_decode(want, cent, nbits, threads=32, sm_count=2), _cpu.decode(want, cent, nbits), "decode")


@needs_emu
def test_emulated_encode_decode_empty_and_misaligned():
    rng = np.random.default_rng(3)
    cent = centroids(rng, 4, 4, 3)
    assert E._emulate_encode(np.zeros((0, 12), np.float32), cent, 4).shape == (0, 2)
    assert E._emulate_decode(np.zeros((0, 2), np.uint8), cent, 4).shape == (0, 12)
    x = rng.standard_normal((33, 12)).astype(np.float32)
    same(E._emulate_encode(misaligned(x, 4), cent, 4, threads=32), _cpu.encode(x, cent, 4), "encode misaligned")
    codes = _cpu.encode(x, cent, 4)
    same(E._emulate_decode(misaligned(codes, 1), cent, 4, threads=32), _cpu.decode(codes, cent, 4), "decode")


@needs_emu
@pytest.mark.parametrize("dim,m,nbits", [(16, 8, 8), (32, 8, 4), (24, 6, 8), (36, 3, 8), (24, 2, 4),
                                         (30, 6, 4), (80, 2, 4), (70, 2, 8)])
def test_emulated_distance_tables(dim, m, nbits):
    # dsub 2 (8-bit fused, 4-bit plain), 4 (fused), 12 (faiss's form), 5, 35/40 (chunks of 32 dims)
    rng = np.random.default_rng(dim + m)
    cent = centroids(rng, m, nbits, dim // m)
    x = rng.standard_normal((11, dim)).astype(np.float32)
    for ip in (False, True):
        want = _cpu.distance_tables(x, cent, nbits, ip)
        same(E._emulate_distance_tables(x, cent, nbits, ip, threads=32, sm_count=1), want, f"tables ip={ip}")
    same(E._emulate_distance_tables(x[:5], cent, nbits, True, threads=64, queries_per_block=1, sm_count=1),
         _cpu.distance_tables(x[:5], cent, nbits, True), "tables qb=1")
    assert E._emulate_distance_tables(x[:0], cent, nbits, False).shape == (0, m, 1 << nbits)


@needs_emu
@pytest.mark.parametrize("m,nbits", [(8, 8), (5, 8), (16, 8), (4, 4), (7, 4), (31, 4), (3, 4)])
def test_emulated_adc_distances(m, nbits):
    rng = np.random.default_rng(m * 10 + nbits)
    lut = rng.standard_normal((6, m, 1 << nbits)).astype(np.float32)
    lut[0] = 0.0  # +0 sums, never -0
    lut[1, :, :3] = -0.0
    codes = random_codes(rng, 77, m, nbits)
    want = _cpu.adc_distances(lut, codes)
    same(E._emulate_adc_distances(lut, codes, threads=32, sm_count=2), want, "adc")  # 16-/4-byte loads if cs allows
    same(E._emulate_adc_distances(lut, misaligned(codes, 4), threads=32, sm_count=1), want, "adc 4-byte aligned")
    same(E._emulate_adc_distances(lut, misaligned(codes, 1), threads=32, sm_count=1, queries_per_block=3), want,
         "adc bytes")
    same(E._emulate_adc_distances(lut, codes, threads=64, smem=0, queries_per_block=2), want, "adc global tables")
    assert E._emulate_adc_distances(lut[:0], codes).shape == (0, 77)
    assert E._emulate_adc_distances(lut, codes[:0]).shape == (6, 0)


@needs_emu
@pytest.mark.parametrize("m,nbits,largest", [(4, 8, False), (7, 4, True), (32, 4, False)])
def test_emulated_adc_topk_paths(m, nbits, largest):
    rng = np.random.default_rng(m + 100 * largest)
    lut = rng.integers(-3, 4, (3, m, 1 << nbits)).astype(np.float32)  # small integers: many equal sums
    codes = random_codes(rng, 150, m, nbits)
    codes[100:120] = codes[10]  # duplicates
    for k in (1, 9, 150):
        want = _cpu.adc_topk(lut, codes, k, largest)
        same_pair(E._emulate_adc_topk(lut, codes, k, largest, path=1, threads=32, items_per_thread=1), want, f"k={k}")
        if k == 9:
            same_pair(E._emulate_adc_topk(lut, codes, k, largest, path=1, threads=32, partitions=3, sm_count=2),
                      want, f"k={k} parts")
        same_pair(E._emulate_adc_topk(lut, codes, k, largest, path=2, threads=32, run=64, smem=0), want,
                  f"k={k} sort")


@needs_emu
def test_emulated_adc_topk_compaction_auto_partitions_and_batches():
    rng = np.random.default_rng(8)
    lut = rng.standard_normal((5, 4, 256)).astype(np.float32)
    lut[:, 0] = -np.arange(256, dtype=np.float32)  # codes come in descending distance: buffer refills
    codes = np.zeros((200, 4), np.uint8)
    codes[:, 0] = np.arange(200)
    for k in (1, 33):
        want = _cpu.adc_topk(lut, codes, k, False)
        same_pair(E._emulate_adc_topk(lut, codes, k, False, path=1, threads=32, items_per_thread=1, partitions=1),
                  want, "compaction")
        same_pair(E._emulate_adc_topk(lut, codes, k, False, threads=32, items_per_thread=1, sm_count=3), want, "auto")
        same_pair(E._emulate_adc_topk(lut, codes, k, False, path=2, threads=32, run=64, batch_bytes=1), want,
                  "query batches of 1")


@needs_emu
def test_emulated_adc_topk_infinite_and_zero_sums():
    # Sums that overflow to +inf never enter the CPU's heaps: missing results are (inf, INT64_MAX).
    lut = np.zeros((2, 2, 16), np.float32)
    lut[0, :, 8:] = 3e38
    codes = np.array([[0x00], [0x88], [0x08], [0x80], [0x11]], np.uint8)  # sums 0, inf, 3e38, 3e38, 0
    for largest in (False, True):
        for k in (1, 4, 5):
            want = _cpu.adc_topk(lut, codes, k, largest)
            for path in (1, 2):
                same_pair(E._emulate_adc_topk(lut, codes, k, largest, path=path, threads=32, run=64), want,
                          f"largest={largest} k={k} path={path}")


@needs_emu
@pytest.mark.parametrize("m", [1, 2, 5, 8])
def test_emulated_pack_unpack_fastscan(m):
    rng = np.random.default_rng(m)
    for n in (0, 1, 31, 32, 70):
        codes = random_codes(rng, n, m, 4)
        packed = _cpu.pack_fastscan(codes, m) if n else np.zeros(0, np.uint8)
        got = E._emulate_pack_fastscan(codes, m, threads=32, sm_count=2)
        same(got, packed, f"pack n={n}")
        same(E._emulate_unpack_fastscan(packed, n, m, threads=32, sm_count=2),
             _cpu.unpack_fastscan(packed, n, m) if n else np.zeros((0, (m + 1) // 2), np.uint8), f"unpack n={n}")
    if m % 2:  # a set unused high nibble is dropped by pack, as the CPU does
        codes = random_codes(rng, 40, m, 4)
        codes[:, -1] |= 0xF0
        same(E._emulate_pack_fastscan(codes, m, threads=32), _cpu.pack_fastscan(codes, m), "dirty nibble")


@needs_emu
@pytest.mark.parametrize("m,largest", [(1, False), (4, True), (9, False), (3, True)])
def test_emulated_fastscan_topk(m, largest):
    rng = np.random.default_rng(m * 7 + largest)
    n = 133
    lut = rng.standard_normal((3, m, 16)).astype(np.float32)
    lut[2] = 1.25  # a constant table: scale 0, every sum 0, distance b
    codes = random_codes(rng, n, m, 4)
    codes[50:90] = codes[3]  # equal sums
    packed = _cpu.pack_fastscan(codes, m)
    for k in (1, 17, n):
        want = _cpu.fastscan_topk(lut, packed, n, m, k, largest)
        same_pair(E._emulate_fastscan_topk(lut, packed, n, m, k, largest, path=1, threads=32, items_per_thread=1,
                                           partitions=2 if k == 17 else 1, sm_count=2), want, f"k={k}")
        same_pair(E._emulate_fastscan_topk(lut, packed, n, m, k, largest, path=2, threads=32, run=64), want,
                  f"k={k} sort")


@needs_emu
@pytest.mark.parametrize("largest", [False, True])
def test_emulated_fastscan_rerank_equals_the_cpu_rerank(largest):
    rng = np.random.default_rng(11 + largest)
    dim, m, n = 20, 5, 90
    pq = ekpq.ProductQuantizer(dim, m, 4, metric="ip" if largest else "l2")
    pq.centroids = centroids(rng, m, 4, dim // m)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[40:60] = x[5]  # exact ties
    packed = pq.pack_fastscan(pq.encode(x, backend="cpu"), backend="cpu")
    q = rng.standard_normal((4, dim)).astype(np.float32)
    lut = pq.lookup_table(q, backend="cpu")
    for k, r in ((1, 2), (5, 30), (10, 90)):
        want = pq.search(q, packed, k, rerank=r, backend="cpu")
        _, cand = _cpu.fastscan_topk(lut, packed.packed, n, m, r, largest)
        same_pair(E._emulate_fastscan_rerank(lut, packed.packed, n, m, cand, k, largest, threads=32, run=64), want,
                  f"k={k} r={r}")
        same_pair(E._emulate_fastscan_rerank(lut, packed.packed, n, m, cand[:, ::-1].copy(), k, largest, threads=32,
                                             run=64, smem=0), want, f"k={k} r={r} reversed candidates")


@needs_emu
@pytest.mark.parametrize("dim,m,nbits", [(12, 3, 4), (12, 4, 4), (10, 2, 4), (16, 2, 8)])
def test_emulated_train(dim, m, nbits):
    rng = np.random.default_rng(dim * m)
    ksub, dsub = 1 << nbits, dim // m
    n = 300 if nbits == 8 else 150
    x = (rng.standard_normal((n, dim)) + 3 * rng.integers(0, 4, (n, 1))).astype(np.float32)
    init = np.stack([x[rng.choice(n, ksub, replace=False), s * dsub:(s + 1) * dsub] for s in range(m)])
    for iters in (0, 3):
        same(E._emulate_train(x, init, nbits, iters, threads=32, sm_count=2, train_part=64),
             _cpu.train(x, init, nbits, iters), f"iterations={iters}")


@needs_emu
def test_emulated_train_empty_clusters():
    # Five distinct points and centroids far away: clusters empty out and are split, as on the CPU.
    rng = np.random.default_rng(21)
    for scale in (1, 10, 100):
        base = rng.standard_normal((5, 6)).astype(np.float32)
        x = base[rng.integers(0, 5, 120)]
        init = (rng.standard_normal((2, 16, 3)) * scale).astype(np.float32)
        same(E._emulate_train(x, init, 4, 3, threads=32, sm_count=3, train_part=37), _cpu.train(x, init, 4, 3),
             f"scale={scale}")


@needs_emu
def test_emulated_launch_errors():
    lut = np.zeros((1, 2, 16), np.float32)
    codes = np.zeros((9000, 1), np.uint8)
    with pytest.raises(ValueError, match="too large for the filter path"):
        E._emulate_adc_topk(lut, codes, 8000, False, path=1)
    with pytest.raises(ValueError, match="threads must be a power of two"):
        E._emulate_adc_topk(lut, codes[:5], 1, False, threads=48)
    with pytest.raises(ValueError, match="run must be a power of two"):
        E._emulate_adc_topk(lut, codes[:5], 1, False, path=2, threads=32, run=48)
    with pytest.raises(ValueError, match="unknown launch option 'thread'"):
        E._emulate_adc_topk(lut, codes[:5], 1, False, thread=32)
    with pytest.raises(ValueError, match="nbits must be 4 or 8"):
        E._emulate_encode(np.zeros((1, 4), np.float32), np.zeros((1, 16, 4), np.float32), 5)
    d, i = E._emulate_adc_topk(np.zeros((0, 2, 16), np.float32), codes[:5], 2, False)
    assert d.shape == (0, 2) and i.shape == (0, 2)


# ==== the real kernels (need a CUDA device) =====================================================
# Host (numpy) inputs go through embkern._cuda_ops.pq; _poisoned() runs a kernel entry point on
# device buffers filled with 0xFF first, so unwritten outputs show up.

_PQ_CONFIGS = [(64, 8, 8), (63, 7, 8), (96, 8, 8), (40, 5, 4), (64, 16, 4), (34, 17, 4), (96, 3, 8)]


def _poisoned(fn_name, inputs, outputs, *args, **launch):
    """embkern._cuda.pq.<fn_name>(*args with inputs/outputs as device pointers); outputs are
    (shape, dtype) pairs, poisoned with 0xFF bytes before the call; returns them on the host."""
    bufs = []
    ptrs = {}
    for name, arr in inputs.items():
        arr = np.ascontiguousarray(arr)
        b = _cuda.DeviceBuffer(max(1, arr.nbytes))
        b.copy_from_host(arr)
        bufs.append(b)
        ptrs[name] = b.ptr
    outs = []
    for name, (shape, dtype) in outputs.items():
        host = np.full(int(np.prod(shape)) * np.dtype(dtype).itemsize, 0xFF, np.uint8)
        b = _cuda.DeviceBuffer(max(1, host.nbytes))
        b.copy_from_host(host)
        bufs.append(b)
        ptrs[name] = b.ptr
        outs.append((b, shape, dtype))
    call_args = [ptrs.get(a, a) if isinstance(a, str) else a for a in args]
    getattr(_cuda.pq, fn_name)(*call_args, stream=0, device=_cuda.get_device(), **launch)
    res = []
    for b, shape, dtype in outs:
        arr = np.empty(shape, dtype)
        b.copy_to_host(arr)
        res.append(arr)
    return res


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dim,m,nbits", _PQ_CONFIGS)
def test_gpu_encode_decode_tables(dim, m, nbits):
    rng = np.random.default_rng(dim * m + nbits)
    dsub = dim // m
    cent = centroids(rng, m, nbits, dsub)
    cent[:, 9] = cent[:, 4]
    x = rng.standard_normal((1037, dim)).astype(np.float32)
    x[0] = cent[np.arange(m), 4].reshape(-1)
    codes = _cpu.encode(x, cent, nbits)
    same(cpq.encode(x, cent, nbits), codes, "encode")
    (got,) = _poisoned("encode", {"x": x, "c": cent}, {"o": (codes.shape, np.uint8)}, "x", len(x), dim, "c", m,
                       nbits, "o")
    same(got, codes, "encode poisoned")
    (got,) = _poisoned("encode", {"x": x, "c": cent}, {"o": (codes.shape, np.uint8)}, "x", len(x), dim, "c", m,
                       nbits, "o", smem=0)
    same(got, codes, "encode from global memory")
    same(cpq.decode(codes, cent, nbits), _cpu.decode(codes, cent, nbits), "decode")
    for ip in (False, True):
        want = _cpu.distance_tables(x[:301], cent, nbits, ip)
        (got,) = _poisoned("distance_tables", {"x": x[:301], "c": cent}, {"o": (want.shape, np.float32)}, "x", 301,
                           dim, "c", m, nbits, ip, "o")
        same(got, want, f"tables ip={ip}")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("m,nbits", [(8, 8), (7, 8), (64, 8), (256, 8), (16, 4), (9, 4)])
def test_gpu_adc_distances_and_topk(m, nbits):
    rng = np.random.default_rng(m * 3 + nbits)
    nq, n = 13, 9001
    lut = rng.standard_normal((nq, m, 1 << nbits)).astype(np.float32)  # m = 256: tables stay in global memory
    lut[:, :, :4] = np.round(lut[:, :, :4])  # some equal sums
    codes = random_codes(rng, n, m, nbits)
    codes[1000:1100] = codes[7]
    same(cpq.adc_distances(lut, codes), _cpu.adc_distances(lut, codes), "adc_distances")
    (got,) = _poisoned("adc_distances", {"l": lut, "c": codes}, {"o": ((nq, n), np.float32)}, "l", nq, "c", n, m,
                       nbits, "o")
    same(got, _cpu.adc_distances(lut, codes), "adc_distances poisoned")
    for largest in (False, True):
        for k in (1, 10, 1000, 8500, n):  # 8500: beyond the filter path (sort path)
            want = _cpu.adc_topk(lut, codes, k, largest)
            same_pair(cpq.adc_topk(lut, codes, k, largest), want, f"k={k} largest={largest}")
        k = 64
        want = _cpu.adc_topk(lut, codes, k, largest)
        for launch in ({"path": 1, "partitions": 1}, {"path": 1, "partitions": 9}, {"path": 2},
                       {"path": 2, "batch_bytes": 1, "run": 512}, {"smem": 0}):
            got = _poisoned("adc_topk", {"l": lut, "c": codes}, {"d": ((nq, k), np.float32), "i": ((nq, k), np.int64)},
                            "l", nq, "c", n, m, nbits, k, largest, "d", "i", **launch)
            same_pair(tuple(got), want, f"launch {launch}")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("m", [1, 5, 8, 32, 255, 256])
def test_gpu_fastscan(m):
    rng = np.random.default_rng(m)
    nq, n = 9, 4099
    lut = rng.standard_normal((nq, m, 16)).astype(np.float32)
    lut[3] = 0.5  # constant table
    codes = random_codes(rng, n, m, 4)
    codes[2000:2300] = codes[11]
    packed = _cpu.pack_fastscan(codes, m)
    same(cpq.pack_fastscan(codes, m), packed, "pack")
    (got,) = _poisoned("pack_fastscan", {"c": codes}, {"o": (packed.shape, np.uint8)}, "c", n, m, "o")
    same(got, packed, "pack poisoned")
    same(cpq.unpack_fastscan(packed, n, m), _cpu.unpack_fastscan(packed, n, m), "unpack")
    for largest in (False, True):
        for k in (1, 20, 777, n):
            want = _cpu.fastscan_topk(lut, packed, n, m, k, largest)
            same_pair(cpq.fastscan_topk(lut, packed, n, m, k, largest), want, f"k={k} largest={largest}")
        k = 50
        want = _cpu.fastscan_topk(lut, packed, n, m, k, largest)
        for launch in ({"path": 1, "partitions": 1}, {"path": 1, "partitions": 7}, {"path": 2, "run": 1024}):
            got = _poisoned("fastscan_topk", {"l": lut, "p": packed},
                            {"d": ((nq, k), np.float32), "i": ((nq, k), np.int64)}, "l", nq, "p", n, m, k, largest,
                            "d", "i", **launch)
            same_pair(tuple(got), want, f"launch {launch}")
        _, cand = _cpu.fastscan_topk(lut, packed, n, m, 300, largest)
        exact = _cpu.adc_distances(lut, codes)
        key = -exact if largest else exact
        rows = np.arange(nq)[:, None]
        ck = key[rows, cand]
        order = np.lexsort((cand, ck), axis=1)[:, :25]
        want_i = np.take_along_axis(cand, order, 1)
        got_d, got_i = cpq.fastscan_rerank(lut, packed, n, m, cand, 25, largest)
        same(got_i, want_i, "rerank ids")
        same(got_d, exact[rows, want_i], "rerank distances")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dim,m,nbits", [(32, 8, 8), (30, 6, 4), (48, 4, 4)])
def test_gpu_train_and_fit(dim, m, nbits):
    rng = np.random.default_rng(dim)
    ksub, dsub = 1 << nbits, dim // m
    n = 5000
    x = (rng.standard_normal((n, dim)) + 4 * rng.integers(0, 6, (n, 1))).astype(np.float32)
    init = np.stack([x[rng.choice(n, ksub, replace=False), s * dsub:(s + 1) * dsub] for s in range(m)])
    for iters in (0, 1, 5):
        same(cpq.train(x, init, nbits, iters), _cpu.train(x, init, nbits, iters), f"iterations={iters}")
    same(cpq.train(x, init, nbits, 3, train_part=333, threads=64), _cpu.train(x, init, nbits, 3), "small partitions")
    few = x[rng.integers(0, 7, 2000)]  # 7 distinct points: empty clusters every iteration
    same(cpq.train(few, init * 5, nbits, 4), _cpu.train(few, init * 5, nbits, 4), "empty clusters")
    a = ekpq.ProductQuantizer(dim, m, nbits).fit(x, iterations=4, seed=3, backend="cuda")
    b = ekpq.ProductQuantizer(dim, m, nbits).fit(x, iterations=4, seed=3, backend="cpu")
    same(a.centroids, b.centroids, "fit")


@pytest.mark.gpu
@needs_gpu
def test_gpu_empty_inputs():
    rng = np.random.default_rng(0)
    cent = centroids(rng, 4, 8, 2)
    assert cpq.encode(np.zeros((0, 8), np.float32), cent, 8).shape == (0, 4)
    assert cpq.decode(np.zeros((0, 4), np.uint8), cent, 8).shape == (0, 8)
    assert cpq.distance_tables(np.zeros((0, 8), np.float32), cent, 8, False).shape == (0, 4, 256)
    lut = np.zeros((0, 4, 256), np.float32)
    codes = np.zeros((5, 4), np.uint8)
    assert cpq.adc_distances(lut, codes).shape == (0, 5)
    assert cpq.adc_distances(np.zeros((2, 4, 256), np.float32), codes[:0]).shape == (2, 0)
    d, i = cpq.adc_topk(lut, codes, 3, False)
    assert d.shape == (0, 3) and i.shape == (0, 3)
    assert cpq.pack_fastscan(np.zeros((0, 2), np.uint8), 4).shape == (0,)
    assert cpq.unpack_fastscan(np.zeros(0, np.uint8), 0, 4).shape == (0, 2)
    d, i = cpq.fastscan_topk(np.zeros((0, 4, 16), np.float32), np.zeros(64, np.uint8), 10, 4, 2, False)
    assert d.shape == (0, 2) and i.shape == (0, 2)


def _pq_and_data(rng, dim=40, m=5, nbits=4, metric="l2", n=2000):
    pq = ekpq.ProductQuantizer(dim, m, nbits, metric=metric)
    pq.centroids = centroids(rng, m, nbits, dim // m)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    q = rng.standard_normal((17, dim)).astype(np.float32)
    return pq, x, q


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_gpu_public_api_numpy_with_backend_cuda(metric):
    rng = np.random.default_rng(5)
    pq, x, q = _pq_and_data(rng, metric=metric)
    codes = pq.encode(x, backend="cpu")
    same(pq.encode(x, backend="cuda"), codes, "encode")
    same(pq.decode(codes, backend="cuda"), pq.decode(codes, backend="cpu"), "decode")
    same(pq.lookup_table(q, backend="cuda"), pq.lookup_table(q, backend="cpu"), "lookup_table")
    same_pair(pq.search(q, codes, 10, backend="cuda"), pq.search(q, codes, 10, backend="cpu"), "search")
    packed = pq.pack_fastscan(codes, backend="cpu")
    same(pq.pack_fastscan(codes, backend="cuda").packed, packed.packed, "pack_fastscan")
    same_pair(pq.search(q, packed, 10, backend="cuda"), pq.search(q, packed, 10, backend="cpu"), "fast scan")
    same_pair(pq.search(q, packed, 10, rerank=80, backend="cuda"), pq.search(q, packed, 10, rerank=80, backend="cpu"),
              "fast scan + rerank")
    lut = pq.lookup_table(q, backend="cpu")
    same_pair(ekpq.adc_topk(lut, codes, 7, largest=True, backend="cuda"),
              ekpq.adc_topk(lut, codes, 7, largest=True, backend="cpu"), "adc_topk")


def _poison_pool(alloc, sizes=(1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 26)):
    """Fill fresh framework allocations with 0xFF and free them: the caching allocator hands the
    same (now poisoned) memory to the outputs the next calls make."""
    blocks = [alloc(n) for n in sizes for _ in range(3)]
    del blocks


@pytest.mark.gpu
@needs_gpu
def test_gpu_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(6)
    pq, x, q = _pq_and_data(rng, dim=64, m=8, nbits=8)
    dx, dq = cupy.asarray(x), cupy.asarray(q)
    _poison_pool(lambda n: cupy.full(n, 0xFF, cupy.uint8))
    codes = pq.encode(dx)
    assert isinstance(codes, cupy.ndarray)
    want_codes = pq.encode(x, backend="cpu")
    same(cupy.asnumpy(codes), want_codes, "encode")
    d, i = pq.search(dq, codes, 9)
    assert isinstance(d, cupy.ndarray) and isinstance(i, cupy.ndarray)
    wd, wi = pq.search(q, want_codes, 9, backend="cpu")
    same(cupy.asnumpy(d), wd, "search distances")
    same(cupy.asnumpy(i), wi, "search ids")
    d, i = pq.search(q, codes, 9)  # host queries, device codes: results on the device
    assert isinstance(d, cupy.ndarray)
    same(cupy.asnumpy(i), wi, "host queries")
    flat = cupy.zeros(want_codes.size + 1, cupy.uint8)  # misaligned codes: byte loads
    flat[1:] = cupy.asarray(want_codes.ravel())
    lut = pq.lookup_table(dq)
    same(cupy.asnumpy(ekpq.adc_distances(lut, flat[1:].reshape(want_codes.shape))),
         _cpu.adc_distances(pq.lookup_table(q, backend="cpu"), want_codes), "misaligned codes")
    same(cupy.asnumpy(pq.decode(codes)), pq.decode(want_codes, backend="cpu"), "decode")


@pytest.mark.gpu
@needs_gpu
def test_gpu_torch_in_torch_out_on_a_side_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    pq, x, q = _pq_and_data(rng, dim=34, m=17, nbits=4, metric="ip")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        _poison_pool(lambda n: torch.full((n,), 0xFF, dtype=torch.uint8, device="cuda"))
        tx, tq = torch.from_numpy(x).cuda(), torch.from_numpy(q).cuda()
        codes = pq.encode(tx)
        packed = pq.pack_fastscan(codes)
        fs = pq.search(tq, packed, 12)
        rr = pq.search(tq, packed, 12, rerank=100)
        adc = pq.search(tq, codes, 12)
    side.synchronize()
    assert codes.is_cuda and codes.dtype == torch.uint8 and fs[0].is_cuda and fs[1].dtype == torch.int64
    want_codes = pq.encode(x, backend="cpu")
    cpacked = pq.pack_fastscan(want_codes, backend="cpu")
    same(codes.cpu().numpy(), want_codes, "encode")
    same(packed.packed.cpu().numpy(), cpacked.packed, "pack")
    for got, want, what in ((fs, pq.search(q, cpacked, 12, backend="cpu"), "fast scan"),
                            (rr, pq.search(q, cpacked, 12, rerank=100, backend="cpu"), "rerank"),
                            (adc, pq.search(q, want_codes, 12, backend="cpu"), "adc")):
        same_pair((got[0].cpu().numpy(), got[1].cpu().numpy()), want, what)
    tfit = torch.from_numpy(rng.standard_normal((3000, 34)).astype(np.float32)).cuda()
    a = ekpq.ProductQuantizer(34, 17, 4).fit(tfit, iterations=3, seed=1, max_samples=2500)
    b = ekpq.ProductQuantizer(34, 17, 4).fit(tfit.cpu().numpy(), iterations=3, seed=1, max_samples=2500,
                                             backend="cpu")
    same(a.centroids, b.centroids, "fit on the device")
    bad = tx.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        pq.encode(bad)


def test_device_helpers_follow_the_framework():
    # The helpers embkern.pq uses for device arrays, run on CPU torch tensors (same code paths).
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    rows = ekpq._take_rows(t, np.array([3, 1]))
    assert isinstance(rows, torch.Tensor) and rows.tolist() == [[9, 10, 11], [3, 4, 5]]
    up = cpq.to_device_like(np.ones((2, 2), np.float32), t)
    assert isinstance(up, torch.Tensor) and up.device == t.device and up.dtype == torch.float32
    same(cpq.to_host(t), t.numpy(), "to_host")
    ekpq._device_finite(t, "x")
    t[1, 1] = float("inf")
    with pytest.raises(ValueError, match="queries contains NaN or inf"):
        ekpq._device_finite(t, "queries")
    ekpq._device_finite(torch.zeros(3, dtype=torch.uint8), "codes")  # integers: nothing to check
    assert ekpq._framework_array(t) is t


# ==== the whole device path on a fake runtime (no GPU needed) ===================================
# "Device" memory is host memory: embkern._cuda is replaced by a fake whose DeviceBuffer is a numpy
# buffer and whose pq entry points first call the real binding with the very same arguments (its
# pybind11 signature, launch options and host-side checks; without a driver it then stops at the
# first CUDA call) and then compute the result with the CPU backend on the host pointers. So the
# wrappers' argument plumbing, outputs in the caller's framework and embkern.pq's routing of device
# arrays (uploads of host parameters, fit's sampling) are exercised end to end.

import ctypes  # noqa: E402

_NARGS = dict(encode=7, decode=7, distance_tables=8, adc_distances=7, adc_topk=10, pack_fastscan=4,
              unpack_fastscan=4, fastscan_topk=9, fastscan_rerank=11, train=8)


def _at(ptr, shape, dtype):
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes == 0:
        return np.zeros(shape, dtype)
    raw = (ctypes.c_char * nbytes).from_address(ptr)
    return np.frombuffer(raw, np.uint8, count=nbytes).view(dtype).reshape(shape)


class _FakeBuffer:
    def __init__(self, nbytes, device=-1):
        self._raw = np.zeros(int(nbytes) + 256, np.uint8)
        self._off = (-self._raw.ctypes.data) % 256
        self.nbytes, self.device = int(nbytes), 0

    @property
    def ptr(self):
        return self._raw.ctypes.data + self._off

    def copy_from_host(self, arr, stream=0):
        b = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        self._raw[self._off:self._off + b.size] = b

    def copy_to_host(self, arr, stream=0):
        b = arr.reshape(-1).view(np.uint8)
        b[...] = self._raw[self._off:self._off + b.size]


class _FakePq:
    calls: dict = {}

    @classmethod
    def _args(cls, name, args, kwargs):
        cls.calls[name] = cls.calls.get(name, 0) + 1
        try:
            getattr(_cuda.pq, name)(*args, **kwargs)
        except RuntimeError as e:  # the real launcher got past its checks to the first CUDA call
            assert "CUDA error" in str(e), e
        return args[:_NARGS[name]]

    @classmethod
    def encode(cls, *a, **kw):
        x, n, dim, c, m, nbits, out = cls._args("encode", a, kw)
        cent = _at(c, (m, 1 << nbits, dim // m), np.float32).copy()
        _at(out, (n, (m * nbits + 7) // 8), np.uint8)[...] = _cpu.encode(_at(x, (n, dim), np.float32).copy(), cent,
                                                                          nbits)

    @classmethod
    def decode(cls, *a, **kw):
        codes, n, c, dim, m, nbits, out = cls._args("decode", a, kw)
        cent = _at(c, (m, 1 << nbits, dim // m), np.float32).copy()
        _at(out, (n, dim), np.float32)[...] = _cpu.decode(_at(codes, (n, (m * nbits + 7) // 8), np.uint8).copy(),
                                                          cent, nbits)

    @classmethod
    def distance_tables(cls, *a, **kw):
        x, n, dim, c, m, nbits, ip, out = cls._args("distance_tables", a, kw)
        cent = _at(c, (m, 1 << nbits, dim // m), np.float32).copy()
        _at(out, (n, m, 1 << nbits), np.float32)[...] = _cpu.distance_tables(_at(x, (n, dim), np.float32).copy(),
                                                                             cent, nbits, ip)

    @classmethod
    def adc_distances(cls, *a, **kw):
        lut, nq, codes, n, m, nbits, out = cls._args("adc_distances", a, kw)
        _at(out, (nq, n), np.float32)[...] = _cpu.adc_distances(
            _at(lut, (nq, m, 1 << nbits), np.float32).copy(), _at(codes, (n, (m * nbits + 7) // 8), np.uint8).copy())

    @classmethod
    def adc_topk(cls, *a, **kw):
        lut, nq, codes, n, m, nbits, k, largest, od, oi = cls._args("adc_topk", a, kw)
        if nq:
            d, i = _cpu.adc_topk(_at(lut, (nq, m, 1 << nbits), np.float32).copy(),
                                 _at(codes, (n, (m * nbits + 7) // 8), np.uint8).copy(), k, largest)
            _at(od, (nq, k), np.float32)[...] = d
            _at(oi, (nq, k), np.int64)[...] = i

    @classmethod
    def pack_fastscan(cls, *a, **kw):
        codes, n, m, out = cls._args("pack_fastscan", a, kw)
        if n:
            packed = _cpu.pack_fastscan(_at(codes, (n, (m + 1) // 2), np.uint8).copy(), m)
            _at(out, packed.shape, np.uint8)[...] = packed

    @classmethod
    def unpack_fastscan(cls, *a, **kw):
        packed, n, m, out = cls._args("unpack_fastscan", a, kw)
        if n:
            _at(out, (n, (m + 1) // 2), np.uint8)[...] = _cpu.unpack_fastscan(
                _at(packed, (cpq.fastscan_bytes(n, m),), np.uint8).copy(), n, m)

    @classmethod
    def fastscan_topk(cls, *a, **kw):
        lut, nq, packed, n, m, k, largest, od, oi = cls._args("fastscan_topk", a, kw)
        if nq:
            d, i = _cpu.fastscan_topk(_at(lut, (nq, m, 16), np.float32).copy(),
                                      _at(packed, (cpq.fastscan_bytes(n, m),), np.uint8).copy(), n, m, k, largest)
            _at(od, (nq, k), np.float32)[...] = d
            _at(oi, (nq, k), np.int64)[...] = i

    @classmethod
    def fastscan_rerank(cls, *a, **kw):  # the CPU has no such kernel: the emulated one
        lut, nq, packed, n, m, cand, r, k, largest, od, oi = cls._args("fastscan_rerank", a, kw)
        if nq:
            d, i = _cuda.pq._emulate_fastscan_rerank(
                _at(lut, (nq, m, 16), np.float32).copy(), _at(packed, (cpq.fastscan_bytes(n, m),), np.uint8).copy(),
                n, m, _at(cand, (nq, r), np.int64).copy(), k, largest, threads=32, run=64)
            _at(od, (nq, k), np.float32)[...] = d
            _at(oi, (nq, k), np.int64)[...] = i

    @classmethod
    def train(cls, *a, **kw):
        x, n, dim, m, nbits, iterations, init, out = cls._args("train", a, kw)
        start = _at(init, (m, 1 << nbits, dim // m), np.float32).copy()
        _at(out, start.shape, np.float32)[...] = _cpu.train(_at(x, (n, dim), np.float32).copy(), start, nbits,
                                                            iterations)


class _FakeCuda:
    DeviceBuffer = _FakeBuffer
    pq = _FakePq

    @staticmethod
    def get_device():
        return 0

    @staticmethod
    def pointer_device(ptr):
        return 0

    @staticmethod
    def stream_wait(*args, **kwargs):
        pass


class _HostCAI:
    """A __cuda_array_interface__ over host memory (for the fake runtime only)."""

    def __init__(self, arr):
        self.arr = np.ascontiguousarray(arr)
        self.shape, self.dtype = self.arr.shape, self.arr.dtype
        self.__cuda_array_interface__ = dict(shape=self.arr.shape, typestr=self.arr.dtype.str, strides=None,
                                             data=(self.arr.ctypes.data if self.arr.size else 0, False), version=3)


def _host(a):
    return a.get() if isinstance(a, cb.CudaArray) else np.asarray(a)


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(cb, "_state", (_FakeCuda, 1, "fake device (host memory)"))
    monkeypatch.setattr(cpq, "to_device_like", lambda arr, like: _HostCAI(np.asarray(arr)))
    monkeypatch.setattr(cpq, "to_host", lambda a: a.arr if isinstance(a, _HostCAI) else _host(a))
    monkeypatch.setattr(ekpq, "_framework_array", lambda x: x)
    monkeypatch.setattr(ekpq, "_take_rows", lambda x, rows: _HostCAI(x.arr[rows]))
    _FakePq.calls = {}
    yield _FakePq.calls


@needs_emu
@no_gpu_only
def test_fake_runtime_wrappers(fake_gpu):
    rng = np.random.default_rng(31)
    for dim, m, nbits in ((24, 4, 8), (30, 5, 4)):
        cent = centroids(rng, m, nbits, dim // m)
        x = rng.standard_normal((70, dim)).astype(np.float32)
        codes = _cpu.encode(x, cent, nbits)
        lut = _cpu.distance_tables(x[:6], cent, nbits, True)
        for wrap in (lambda a: a, _HostCAI):  # host arrays (numpy out) and device arrays (CudaArray out)
            got = cpq.encode(wrap(x), wrap(cent), nbits, threads=64, smem=0)
            assert isinstance(got, np.ndarray if wrap is not _HostCAI else cb.CudaArray)
            same(_host(got), codes, "encode")
            same(_host(cpq.decode(wrap(codes), wrap(cent), nbits)), _cpu.decode(codes, cent, nbits), "decode")
            same(_host(cpq.distance_tables(wrap(x), wrap(cent), nbits, False, queries_per_block=2)),
                 _cpu.distance_tables(x, cent, nbits, False), "tables")
            same(_host(cpq.adc_distances(wrap(lut), wrap(codes))), _cpu.adc_distances(lut, codes), "adc")
            for k, launch in ((3, {}), (70, {"path": 2, "run": 512, "batch_bytes": 1}), (5, {"partitions": 4})):
                d, i = cpq.adc_topk(wrap(lut), wrap(codes), k, True, **launch)
                same_pair((_host(d), _host(i)), _cpu.adc_topk(lut, codes, k, True), f"adc_topk {launch}")
            init = np.stack([x[rng.choice(70, 1 << nbits, replace=nbits == 8), s * (dim // m):(s + 1) * (dim // m)]
                             for s in range(m)])
            same(_host(cpq.train(wrap(x), wrap(init), nbits, 2, train_part=33)), _cpu.train(x, init, nbits, 2),
                 "train")
            if nbits == 4:
                packed = _cpu.pack_fastscan(codes, m)
                same(_host(cpq.pack_fastscan(wrap(codes), m)), packed, "pack")
                same(_host(cpq.unpack_fastscan(wrap(packed), 70, m)), codes, "unpack")
                d, i = cpq.fastscan_topk(wrap(lut), wrap(packed), 70, m, 8, False, path=1, items_per_thread=2)
                same_pair((_host(d), _host(i)), _cpu.fastscan_topk(lut, packed, 70, m, 8, False), "fast scan")
                _, cand = _cpu.fastscan_topk(lut, packed, 70, m, 20, False)
                d, i = cpq.fastscan_rerank(wrap(lut), wrap(packed), 70, m, wrap(cand), 4, False)
                same_pair((_host(d), _host(i)), _cuda.pq._emulate_fastscan_rerank(lut, packed, 70, m, cand, 4, False,
                                                                                   threads=32, run=64), "rerank")
    assert set(fake_gpu) == set(_NARGS)


@needs_emu
@no_gpu_only
@pytest.mark.parametrize("metric,nbits", [("l2", 4), ("ip", 4), ("l2", 8)])
def test_fake_runtime_public_routing(fake_gpu, metric, nbits):
    rng = np.random.default_rng(2 + nbits)
    dim, m = 20, 5
    x = rng.standard_normal((1100, dim)).astype(np.float32)
    q = rng.standard_normal((6, dim)).astype(np.float32)
    a = ekpq.ProductQuantizer(dim, m, nbits, metric=metric).fit(_HostCAI(x), iterations=2, seed=4, max_samples=900)
    b = ekpq.ProductQuantizer(dim, m, nbits, metric=metric).fit(x, iterations=2, seed=4, max_samples=900,
                                                                backend="cpu")
    same(a.centroids, b.centroids, "fit: same sample, initial centroids and iterations")
    pq = b
    codes = pq.encode(_HostCAI(x))
    assert isinstance(codes, cb.CudaArray)
    want = pq.encode(x, backend="cpu")
    same(_host(codes), want, "encode")
    same(_host(pq.decode(_HostCAI(want))), pq.decode(want, backend="cpu"), "decode")
    same(_host(pq.lookup_table(_HostCAI(q))), pq.lookup_table(q, backend="cpu"), "lookup_table")
    ref = pq.search(q, want, 9, backend="cpu")
    for qq, cc in ((_HostCAI(q), _HostCAI(want)), (q, _HostCAI(want)), (_HostCAI(q), want)):
        d, i = pq.search(qq, cc, 9)  # host parameters are uploaded next to the device ones
        same_pair((_host(d), _host(i)), ref, "search")
    lut = pq.lookup_table(q, backend="cpu")
    d, i = ekpq.adc_topk(_HostCAI(lut), want, 5, largest=True)
    same_pair((_host(d), _host(i)), ekpq.adc_topk(lut, want, 5, largest=True, backend="cpu"), "adc_topk")
    same(_host(ekpq.adc_distances(lut, _HostCAI(want))), ekpq.adc_distances(lut, want, backend="cpu"), "adc")
    if nbits == 4:
        packed = pq.pack_fastscan(_HostCAI(want))
        cpacked = pq.pack_fastscan(want, backend="cpu")
        same(_host(packed.packed), cpacked.packed, "pack_fastscan")
        for rerank in (0, 40):
            ref = pq.search(q, cpacked, 6, rerank=rerank, backend="cpu")
            for qq, pk in ((_HostCAI(q), packed), (q, packed), (_HostCAI(q), cpacked)):
                d, i = pq.search(qq, pk, 6, rerank=rerank)
                same_pair((_host(d), _host(i)), ref, f"fast scan rerank={rerank}")
            same_pair(pq.search(q, cpacked, 6, rerank=rerank, backend="cuda"), ref, "numpy, backend='cuda'")
        with pytest.raises(ValueError, match="rerank must be 0 or > k"):
            pq.search(_HostCAI(q), packed, 6, rerank=3)
    with pytest.raises(ValueError, match="rerank applies to fast-scan codes"):
        pq.search(_HostCAI(q), _HostCAI(want), 3, rerank=9)
    with pytest.raises(ValueError, match="x must have 20 columns"):
        pq.fit(_HostCAI(x[:, :10]))
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        pq.encode(_HostCAI(x.astype(np.float64)))
