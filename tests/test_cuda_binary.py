"""CUDA kernels of embkern.binary beyond pack/distance/top-k: hamming_range, asymmetric_scores,
multibit_scores and multibit_topk.

Three kinds of tests, as in test_cuda.py:
  * no GPU needed: argument checks of the CUDA wrappers (fake ``__cuda_array_interface__`` objects:
    dtype -> TypeError, shape -> ValueError, naming the argument, before any CUDA call) and the
    routing of device arrays by the public functions;
  * the kernel bodies run by the host emulator of ``embkern._cuda`` against the CPU backend, on
    awkward sizes with shrunken launch shapes (small blocks, few "SMs", forced paths);
  * ``gpu``: the real kernels against the CPU backend (skipped without a device).

Exactness: Hamming results (lims, distances, indices) are compared exactly. asymmetric_scores and
the multibit scores are compared bit for bit (float32 bit patterns) with ``embkern._core``: the
kernels use the CPU's operation order with separately rounded float32 / float64 operations.
"""

import importlib

import numpy as np
import pytest

from embkern import _cuda_backend as cb
from embkern import binary
from embkern._cuda_ops import binary as cbin

try:
    _cuda = importlib.import_module("embkern._cuda")
except ImportError:
    _cuda = None

try:
    _cpu = importlib.import_module("embkern._core").binary
except ImportError:
    _cpu = None

HAVE_GPU = cb.available()
needs_module = pytest.mark.skipif(_cuda is None, reason="embkern._cuda was not built")
needs_cpu = pytest.mark.skipif(_cpu is None, reason="embkern._core was not built")
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=cb.status())
no_gpu_only = pytest.mark.skipif(HAVE_GPU, reason="checks the behaviour without a usable GPU")

NEW_KERNELS = ("hamming_range", "asymmetric_scores", "multibit_scores", "multibit_topk")


# ---- helpers --------------------------------------------------------------------------------------

_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int32)


def distances(q, db):
    return _POPCOUNT[q[:, None, :] ^ db[None, :, :]].sum(-1, dtype=np.int32)


def range_reference(q, db, radius):
    """faiss layout, each query ascending by (distance, index): a stable sort of the in-range ids."""
    dist = distances(q, db) if len(q) and len(db) else np.zeros((len(q), len(db)), np.int32)
    lims, ds, ids = [0], [], []
    for row in dist:
        hit = np.flatnonzero(row <= radius)
        order = hit[np.argsort(row[hit], kind="stable")]
        ds.append(row[order])
        ids.append(order)
        lims.append(lims[-1] + len(order))
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    return np.array(lims, np.int64), cat(ds, np.int32), cat(ids, np.int64)


def random_codes(rng, shape, levels=256):
    return rng.integers(0, levels, shape, dtype=np.uint8)


def shifted(a, offset):
    """A C-contiguous copy of `a` whose data starts `offset` bytes past a 64-byte boundary."""
    raw = np.zeros(a.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def same_bits(got, want):
    """Equal float32 arrays bit for bit (so -0.0 != +0.0 and NaN patterns count)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    bad = got.view(np.uint32) != want.astype(np.float32).view(np.uint32)
    assert not bad.any(), f"{int(bad.sum())} differing values, first at {np.argwhere(bad)[0]}: " \
                          f"{got[tuple(np.argwhere(bad)[0])]!r} vs {want[tuple(np.argwhere(bad)[0])]!r}"


def check_range(got, q, db, radius):
    lims, dist, idx = got
    want = range_reference(q, db, radius)
    assert lims.dtype == np.int64 and dist.dtype == np.int32 and idx.dtype == np.int64
    np.testing.assert_array_equal(lims, want[0])
    np.testing.assert_array_equal(dist, want[1])
    np.testing.assert_array_equal(idx, want[2])
    if _cpu is not None and len(db):
        for a, b in zip(got, _cpu.hamming_range(q, db, int(radius))):
            np.testing.assert_array_equal(a, b)


def multibit_codes(rng, n, planes, dim, levels=2):
    """Codes whose padding bits beyond dim are zero (as pack_signs writes them)."""
    bits = rng.integers(0, levels, (n, planes, dim)) > 0
    return np.packbits(bits, axis=-1)


class FakeDevice:
    """Only a __cuda_array_interface__ (and a shape); its pointer is never dereferenced."""

    def __init__(self, shape, typestr="|u1", ptr=1 << 33, strides=None):
        self.shape = tuple(shape)
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3}


# ---- no GPU needed: wrappers, argument checks, routing -------------------------------------------


def test_wrappers_exist_with_cpu_signatures():
    import inspect

    for name in NEW_KERNELS:
        assert callable(getattr(cbin, name))
    assert list(inspect.signature(cbin.hamming_range).parameters)[:3] == ["q", "db", "radius"]
    assert list(inspect.signature(cbin.asymmetric_scores).parameters)[:3] == ["q", "codes", "little"]
    assert list(inspect.signature(cbin.multibit_scores).parameters)[:4] == ["q", "db", "dim", "w"]
    assert list(inspect.signature(cbin.multibit_topk).parameters)[:5] == ["q", "db", "k", "dim", "w"]
    if _cuda is not None:
        for name in NEW_KERNELS:
            assert callable(getattr(_cuda.binary, name)) and callable(getattr(_cuda.binary, "_emulate_" + name))


def test_range_argument_errors():
    good = FakeDevice((3, 4))
    with pytest.raises(TypeError, match="queries must be uint8 codes, got float32"):
        cbin.hamming_range(FakeDevice((2, 4), "<f4"), good, 1)
    with pytest.raises(TypeError, match="database must be uint8 codes, got int16"):
        cbin.hamming_range(good, FakeDevice((3, 4), "<i2"), 1)
    with pytest.raises(ValueError, match="queries must have 2 dimensions, got 1"):
        cbin.hamming_range(FakeDevice((4,)), good, 1)
    with pytest.raises(ValueError, match="code widths differ: 4 vs 5 bytes"):
        cbin.hamming_range(good, FakeDevice((3, 5)), 1)
    with pytest.raises(ValueError, match="at least one byte"):
        cbin.hamming_range(FakeDevice((3, 0)), FakeDevice((3, 0)), 1)
    with pytest.raises(ValueError, match="radius must be >= 0, got -1"):
        cbin.hamming_range(good, good, -1)
    with pytest.raises(TypeError, match="radius must be an int, got float"):
        cbin.hamming_range(good, good, 1.5)
    with pytest.raises(ValueError, match="database must be C-contiguous"):
        cbin.hamming_range(good, FakeDevice((3, 4), strides=(1, 3)), 1)


def test_asymmetric_argument_errors():
    codes = FakeDevice((3, 2))
    with pytest.raises(TypeError, match="queries must be float32, got float64"):
        cbin.asymmetric_scores(FakeDevice((2, 9), "<f8"), codes, False)
    with pytest.raises(TypeError, match="database must be uint8 codes, got int64"):
        cbin.asymmetric_scores(FakeDevice((2, 9), "<f4"), FakeDevice((3, 2), "<i8"), False)
    with pytest.raises(ValueError, match=r"database must have ceil\(d/8\) = 2 bytes per code for d = 9, got 3"):
        cbin.asymmetric_scores(FakeDevice((2, 9), "<f4"), FakeDevice((3, 3)), False)
    with pytest.raises(ValueError, match="queries must have at least one dimension"):
        cbin.asymmetric_scores(FakeDevice((2, 0), "<f4"), FakeDevice((3, 0)), False)
    with pytest.raises(ValueError, match="queries must have 2 dimensions, got 3"):
        cbin.asymmetric_scores(FakeDevice((2, 9, 1), "<f4"), codes, False)
    with pytest.raises(ValueError, match="not aligned"):
        cbin.asymmetric_scores(FakeDevice((2, 9), "<f4", ptr=(1 << 33) + 2), codes, False)


def test_multibit_argument_errors():
    q, db = FakeDevice((2, 2, 8)), FakeDevice((5, 2, 8))
    with pytest.raises(TypeError, match="database must be uint8 codes, got int32"):
        cbin.multibit_scores(q, FakeDevice((5, 2, 8), "<i4"), 64, None)
    with pytest.raises(ValueError, match=r"queries must have 3 dimensions \(n, planes, bytes per plane\), got 2"):
        cbin.multibit_scores(FakeDevice((2, 8)), db, 64, None)
    with pytest.raises(ValueError, match="same planes and bytes per plane"):
        cbin.multibit_scores(FakeDevice((2, 3, 8)), db, 64, None)
    with pytest.raises(ValueError, match="at least one plane"):
        cbin.multibit_scores(FakeDevice((2, 0, 8)), FakeDevice((5, 0, 8)), 64, None)
    with pytest.raises(ValueError, match=r"dim must satisfy ceil\(dim/8\) == 8"):
        cbin.multibit_scores(q, db, 65, None)
    with pytest.raises(TypeError, match="dim must be an int, got float"):
        cbin.multibit_scores(q, db, 64.0, None)
    with pytest.raises(ValueError, match=r"weights must have one value per plane \(2\)"):
        cbin.multibit_scores(q, db, 64, [1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="weights contains NaN or inf"):
        cbin.multibit_topk(q, db, 1, 64, [1.0, np.inf])
    with pytest.raises(TypeError, match="weights must be a real numeric array"):
        cbin.multibit_scores(q, db, 64, ["a", "b"])
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 6"):
        cbin.multibit_topk(q, db, 6, 64, None)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 0"):
        cbin.multibit_topk(q, db, 0, 64, None)
    with pytest.raises(TypeError, match="k must be an int"):
        cbin.multibit_topk(q, db, 2.0, 64, None)


def test_mixed_host_and_device_operands_rejected():
    with pytest.raises(ValueError, match="database is a host array but queries is a CUDA array"):
        cbin.hamming_range(FakeDevice((2, 4)), np.zeros((3, 4), np.uint8), 1)
    with pytest.raises(ValueError, match="queries is a host array but database is a CUDA array"):
        cbin.asymmetric_scores(np.zeros((2, 9), np.float32), FakeDevice((3, 2)), False)


@no_gpu_only
def test_valid_arguments_reach_the_availability_check():
    q2, q3 = FakeDevice((2, 4)), FakeDevice((2, 2, 4))
    calls = [
        lambda: cbin.hamming_range(q2, FakeDevice((7, 4)), 3),
        lambda: cbin.asymmetric_scores(FakeDevice((2, 30), "<f4"), q2, True),
        lambda: cbin.multibit_scores(q3, FakeDevice((7, 2, 4)), 30, None),
        lambda: cbin.multibit_topk(q3, FakeDevice((7, 2, 4)), 7, 30, np.ones(2)),
        lambda: cbin.hamming_range(np.zeros((2, 4), np.uint8), np.zeros((3, 4), np.uint8), 1),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
            call()


@no_gpu_only
def test_public_functions_send_device_arrays_to_cuda():
    db2, db3 = FakeDevice((7, 4)), FakeDevice((7, 2, 4))
    for call in (
        lambda: binary.hamming_range(FakeDevice((2, 4)), db2, 3),
        lambda: binary.asymmetric_scores(FakeDevice((2, 30), "<f4"), db2, bitorder="little"),
        lambda: binary.multibit_scores(FakeDevice((2, 2, 4)), db3, dim=30),
        lambda: binary.multibit_topk(FakeDevice((2, 2, 4)), db3, 3, dim=30, weights=[1.0, 0.5]),
    ):
        with pytest.raises(RuntimeError, match="unavailable"):
            call()
    # Host-side checks still come first, and numpy with backend="cuda" is validated as usual.
    with pytest.raises(TypeError, match="queries must be uint8 codes"):
        binary.hamming_range(FakeDevice((2, 4), "<f4"), db2, 3)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        binary.hamming_range(FakeDevice((2, 4)), db2, -2)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= 7"):
        binary.multibit_topk(FakeDevice((2, 2, 4)), db3, 8, dim=30)
    with pytest.raises(ValueError, match="bitorder"):
        binary.asymmetric_scores(FakeDevice((2, 30), "<f4"), db2, bitorder="middle")
    with pytest.raises(RuntimeError, match="cuda"):
        binary.multibit_scores(np.zeros((2, 2, 4), np.uint8), np.zeros((3, 2, 4), np.uint8), dim=30,
                               backend="cuda")
    with pytest.raises(ValueError, match="queries contains NaN or inf"):
        binary.asymmetric_scores(np.full((1, 9), np.nan, np.float32), np.zeros((2, 2), np.uint8),
                                 backend="cuda")


# ---- kernel bodies under the host emulator --------------------------------------------------------


@needs_module
@pytest.mark.parametrize("cs", [1, 3, 4, 16, 33])
def test_emulated_range_widths_and_radii(cs):
    rng = np.random.default_rng(100 + cs)
    q, db = random_codes(rng, (9, cs)), random_codes(rng, (70, cs))
    bits = 8 * cs
    for radius in sorted({0, bits // 2, bits}):
        check_range(_cuda.binary._emulate_hamming_range(q, db, radius), q, db, radius)


@needs_module
@pytest.mark.parametrize(
    "launch",
    [
        dict(partitions=1),
        dict(partitions=3, items_per_thread=2),
        dict(partitions=5, items_per_thread=3, sm_count=2),
        dict(threads=64, items_per_thread=1, partitions=2),
        dict(batch_bytes=1, partitions=2),           # one query per batch: count passes rerun
        dict(batch_bytes=8 * 13 * 2 * 2, sm_count=3),  # batches of 8 queries
        dict(sm_count=4),                          # automatic partitions
    ],
)
def test_emulated_range_launch_shapes_and_ties(launch):
    rng = np.random.default_rng(7)
    q = random_codes(rng, (11, 2), levels=4)
    db = random_codes(rng, (133, 2), levels=4)  # few distinct distances: many ties
    for radius in (3, 12):
        check_range(_cuda.binary._emulate_hamming_range(q, db, radius, **launch), q, db, radius)


@needs_module
def test_emulated_range_alignment_and_duplicates():
    rng = np.random.default_rng(3)
    q, db = random_codes(rng, (5, 16)), random_codes(rng, (60, 16))
    db[::3] = q[0]  # exact matches at distance 0
    check_range(_cuda.binary._emulate_hamming_range(q, db, 60), q, db, 60)          # 16-byte loads
    check_range(_cuda.binary._emulate_hamming_range(shifted(q, 4), db, 60), q, db, 60)  # words
    check_range(_cuda.binary._emulate_hamming_range(q, shifted(db, 1), 60, partitions=2), q, db, 60)
    dup = np.repeat(random_codes(rng, (4, 4)), 12, axis=0)
    check_range(_cuda.binary._emulate_hamming_range(dup[:3], dup, 32, partitions=3), dup[:3], dup, 32)


@needs_module
def test_emulated_range_scans_over_several_chunks():
    # Scan chunks are threads x 8 = 256 counters here: (radius + 1) x partitions = 101 x 4 cursors per
    # query, and 300 query totals for lims, each take more than one chunk.
    rng = np.random.default_rng(8)
    q, db = random_codes(rng, (3, 16)), random_codes(rng, (90, 16))
    check_range(_cuda.binary._emulate_hamming_range(q, db, 100, partitions=4, sm_count=2), q, db, 100)
    q, db = random_codes(rng, (300, 1)), random_codes(rng, (6, 1))
    check_range(_cuda.binary._emulate_hamming_range(q, db, 3, sm_count=2), q, db, 3)


@needs_module
def test_emulated_range_histograms_in_global_memory():
    # radius + 1 > 1536 bins do not fit 8 shared-memory histograms: global 64-bit atomics instead.
    rng = np.random.default_rng(5)
    q, db = random_codes(rng, (3, 200)), random_codes(rng, (40, 200))
    for radius in (790, 1600):
        check_range(_cuda.binary._emulate_hamming_range(q, db, radius, partitions=2), q, db, radius)


@needs_module
def test_emulated_range_empty_and_errors():
    db = np.zeros((5, 4), np.uint8)
    lims, d, i = _cuda.binary._emulate_hamming_range(np.zeros((0, 4), np.uint8), db, 3)
    assert lims.tolist() == [0] and d.size == 0 and i.size == 0
    lims, d, i = _cuda.binary._emulate_hamming_range(np.ones((3, 4), np.uint8), np.zeros((0, 4), np.uint8), 3)
    assert lims.tolist() == [0, 0, 0, 0] and d.size == 0 and i.size == 0
    lims, d, i = _cuda.binary._emulate_hamming_range(np.full((2, 4), 255, np.uint8), db, 31)  # no hit
    assert lims.tolist() == [0, 0, 0] and d.size == 0
    with pytest.raises(ValueError, match="radius must be >= 0"):
        _cuda.binary._emulate_hamming_range(db, db, -1)
    with pytest.raises(ValueError, match="threads"):
        _cuda.binary._emulate_hamming_range(db, db, 1, threads=48)
    with pytest.raises(ValueError, match="items_per_thread"):
        _cuda.binary._emulate_hamming_range(db, db, 1, threads=256, items_per_thread=3)


@needs_module
@needs_cpu
@pytest.mark.parametrize("d", [1, 7, 8, 9, 33, 64, 100, 300])
@pytest.mark.parametrize("little", [False, True])
def test_emulated_asymmetric_bit_identical(d, little):
    rng = np.random.default_rng(d + 1000 * little)
    q = rng.standard_normal((6, d)).astype(np.float32)
    q[0, : min(d, 5)] = [1e-30, -0.0, 3e38, -3e38, 0.5][: min(d, 5)]  # tiny, -0, near overflow
    codes = random_codes(rng, (37, (d + 7) // 8))
    want = _cpu.asymmetric_scores(q, codes, little)
    same_bits(_cuda.binary._emulate_asymmetric_scores(q, codes, little), want)
    same_bits(_cuda.binary._emulate_asymmetric_scores(q, codes, little, codes_per_thread=3, window=8,
                                                      sm_count=2), want)


@needs_module
@needs_cpu
def test_emulated_asymmetric_launch_shapes_and_alignment():
    rng = np.random.default_rng(11)
    d = 260  # 33 bytes: m = 66 nibbles; byte loads only
    q = rng.standard_normal((9, d)).astype(np.float32)
    codes = random_codes(rng, (70, (d + 7) // 8))
    want = _cpu.asymmetric_scores(q, codes, False)
    for launch in (dict(codes_per_thread=1, window=16), dict(codes_per_thread=4, threads=64),
                   dict(batch_bytes=1, window=24), dict(codes_per_thread=2, sm_count=3)):
        same_bits(_cuda.binary._emulate_asymmetric_scores(q, codes, False, **launch), want)
    d = 256  # 32-byte codes: word loads when aligned, bytes when not
    q = rng.standard_normal((5, d)).astype(np.float32)
    codes = random_codes(rng, (41, 32))
    want = _cpu.asymmetric_scores(q, codes, True)
    same_bits(_cuda.binary._emulate_asymmetric_scores(q, codes, True, window=16), want)
    same_bits(_cuda.binary._emulate_asymmetric_scores(q, shifted(codes, 1), True, window=16), want)
    # padding bits beyond d are ignored
    d = 13
    q = rng.standard_normal((3, d)).astype(np.float32)
    codes = random_codes(rng, (20, 2))
    flipped = codes.copy()
    flipped[:, 1] ^= 0xFF >> (d % 8)
    same_bits(_cuda.binary._emulate_asymmetric_scores(q, flipped, False), _cpu.asymmetric_scores(q, codes, False))


@needs_module
def test_emulated_asymmetric_empty_and_errors():
    q = np.zeros((0, 9), np.float32)
    assert _cuda.binary._emulate_asymmetric_scores(q, np.zeros((4, 2), np.uint8), False).shape == (0, 4)
    assert _cuda.binary._emulate_asymmetric_scores(np.ones((3, 9), np.float32), np.zeros((0, 2), np.uint8),
                                                   False).shape == (3, 0)
    with pytest.raises(ValueError, match="window"):
        _cuda.binary._emulate_asymmetric_scores(np.ones((1, 9), np.float32), np.zeros((2, 2), np.uint8),
                                                False, window=12)
    with pytest.raises(ValueError, match="codes_per_thread"):
        _cuda.binary._emulate_asymmetric_scores(np.ones((1, 9), np.float32), np.zeros((2, 2), np.uint8),
                                                False, codes_per_thread=5)


def _weights_cases(rng, planes):
    return [2.0 ** -np.arange(planes), rng.random(planes), rng.standard_normal(planes) * 3,
            np.linspace(-1, 1, planes)]


@needs_module
@needs_cpu
@pytest.mark.parametrize("planes,dim", [(1, 8), (2, 37), (2, 128), (3, 100), (9, 24)])
def test_emulated_multibit_scores_bit_identical(planes, dim):
    rng = np.random.default_rng(planes * 100 + dim)
    q, db = multibit_codes(rng, 5, planes, dim), multibit_codes(rng, 45, planes, dim)
    for w in _weights_cases(rng, planes):
        want = _cpu.multibit_scores(q, db, dim, np.ascontiguousarray(w))
        same_bits(_cuda.binary._emulate_multibit_scores(q, db, dim, w), want)
    w = rng.random(planes)
    want = _cpu.multibit_scores(q, db, dim, w)
    same_bits(_cuda.binary._emulate_multibit_scores(shifted(q, 3), db, dim, w, threads=64, sm_count=2), want)


@needs_module
@needs_cpu
@pytest.mark.parametrize(
    "launch",
    [
        dict(path=1, partitions=1),
        dict(path=1, partitions=3, items_per_thread=2),
        dict(path=2, partitions=1),
        dict(path=2, partitions=4, batch_bytes=1),  # one global key buffer: blocks take turns
        dict(sm_count=4),                           # automatic partitions
        dict(threads=64, items_per_thread=3),
    ],
)
def test_emulated_multibit_topk(launch):
    rng = np.random.default_rng(21)
    planes, dim = 2, 20
    q = multibit_codes(rng, 3, planes, dim)
    db = multibit_codes(rng, 150, planes, dim)
    db[40:60] = db[7]  # equal scores: ties by smaller index
    w = np.array([1.0, 0.5])
    for k in (1, 9, 64, 150):
        got = _cuda.binary._emulate_multibit_topk(q, db, k, dim, w, **launch)
        want = _cpu.multibit_topk(q, db, k, dim, w)
        same_bits(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@needs_module
@needs_cpu
def test_emulated_multibit_topk_signed_zeros_many_planes_and_alignment():
    rng = np.random.default_rng(4)
    dim = 64
    q, db = multibit_codes(rng, 2, 1, dim), multibit_codes(rng, 90, 1, dim)
    # w = 1e-30: every score underflows to +0.0 or -0.0, which rank equal (ties by index) and keep
    # their sign, as on the CPU
    w = np.array([1e-30])
    for k in (1, 40, 90):
        got = _cuda.binary._emulate_multibit_topk(q, db, k, dim, w, partitions=2)
        want = _cpu.multibit_topk(q, db, k, dim, w)
        same_bits(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert (np.signbit(want[0]) & (want[0] == 0)).any()
    planes = 9  # weight products in device memory
    q, db = multibit_codes(rng, 2, planes, 16), multibit_codes(rng, 50, planes, 16)
    w = rng.random(planes)
    want = _cpu.multibit_topk(q, db, 7, 16, w)
    got = _cuda.binary._emulate_multibit_topk(shifted(q, 1), db, 7, 16, w)
    same_bits(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@needs_module
def test_emulated_multibit_empty_and_errors():
    q, db = np.zeros((0, 2, 3), np.uint8), np.zeros((4, 2, 3), np.uint8)
    w = np.ones(2)
    assert _cuda.binary._emulate_multibit_scores(q, db, 20, w).shape == (0, 4)
    s, i = _cuda.binary._emulate_multibit_topk(q, db, 2, 20, w)
    assert s.shape == (0, 2) and i.shape == (0, 2)
    assert _cuda.binary._emulate_multibit_scores(db, q, 20, w).shape == (4, 0)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        _cuda.binary._emulate_multibit_topk(db, db, 5, 20, w)
    with pytest.raises(ValueError, match="too large for the shared-memory path"):
        _cuda.binary._emulate_multibit_topk(db[:1], np.zeros((9000, 2, 3), np.uint8), 8000, 20, w, path=1)
    with pytest.raises(ValueError, match="dim must satisfy"):
        _cuda.binary._emulate_multibit_scores(db, db, 25, w)
    with pytest.raises(ValueError, match="weights must have one value per plane"):
        _cuda.binary._emulate_multibit_scores(db, db, 20, np.ones(3))


# ---- the real kernels (need a CUDA device) --------------------------------------------------------


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("cs", [1, 4, 16, 33, 128])
def test_gpu_hamming_range(cs):
    rng = np.random.default_rng(cs)
    q, db = random_codes(rng, (37, cs)), random_codes(rng, (1001, cs))
    db[::50] = q[0]
    bits = 8 * cs
    for radius in sorted({0, bits // 2 - 3, bits // 2, bits}):
        got = cbin.hamming_range(q, db, max(radius, 0))
        check_range(got, q, db, max(radius, 0))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(
    "launch",
    [
        {},
        {"partitions": 1},
        {"partitions": 13, "items_per_thread": 1},
        {"batch_bytes": 1},
        {"threads": 32, "items_per_thread": 3},
    ],
)
def test_gpu_hamming_range_launch_shapes_and_ties(launch):
    rng = np.random.default_rng(9)
    q, db = random_codes(rng, (19, 32), levels=2), random_codes(rng, (3000, 32), levels=2)
    for radius in (0, 10, 40, 256):
        check_range(cbin.hamming_range(q, db, radius, **launch), q, db, radius)


@pytest.mark.gpu
@needs_gpu
def test_gpu_hamming_range_single_query_global_histograms_and_empty():
    rng = np.random.default_rng(12)
    q, db = random_codes(rng, (1, 16)), random_codes(rng, (20000, 16))
    check_range(cbin.hamming_range(q, db, 50), q, db, 50)  # many partitions for one query
    q, db = random_codes(rng, (3, 256)), random_codes(rng, (500, 256))
    check_range(cbin.hamming_range(q, db, 2048), q, db, 2048)  # 2049 bins: global histograms
    lims, d, i = cbin.hamming_range(np.zeros((0, 4), np.uint8), db[:, :4], 3)
    assert lims.tolist() == [0] and d.size == 0 and i.size == 0
    lims, d, i = cbin.hamming_range(q[:, :4], np.zeros((0, 4), np.uint8), 3)
    assert lims.tolist() == [0, 0, 0, 0] and d.size == 0 and i.size == 0


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize("d", [1, 7, 33, 256, 300, 1024, 1500])
def test_gpu_asymmetric_scores(d):
    rng = np.random.default_rng(d)
    q = rng.standard_normal((13, d)).astype(np.float32)
    codes = random_codes(rng, (1001, (d + 7) // 8))
    for little in (False, True):
        same_bits(cbin.asymmetric_scores(q, codes, little), _cpu.asymmetric_scores(q, codes, little))
    same_bits(cbin.asymmetric_scores(q, codes, True, codes_per_thread=1, window=8, batch_bytes=1),
              _cpu.asymmetric_scores(q, codes, True))


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize("planes,dim", [(1, 64), (2, 512), (3, 37), (9, 16)])
def test_gpu_multibit_scores_and_topk(planes, dim):
    rng = np.random.default_rng(planes * dim)
    q, db = multibit_codes(rng, 11, planes, dim), multibit_codes(rng, 2001, planes, dim)
    db[100:150] = db[3]
    for w in _weights_cases(rng, planes):
        w = np.ascontiguousarray(w)
        same_bits(cbin.multibit_scores(q, db, dim, w), _cpu.multibit_scores(q, db, dim, w))
        for k in (1, 10, 2001):
            s, i = cbin.multibit_topk(q, db, k, dim, w)
            ws, wi = _cpu.multibit_topk(q, db, k, dim, w)
            same_bits(s, ws)
            np.testing.assert_array_equal(i, wi)


@pytest.mark.gpu
@needs_gpu
@needs_cpu
@pytest.mark.parametrize(
    "launch",
    [{"path": 1, "partitions": 1}, {"path": 1, "partitions": 9}, {"path": 2}, {"path": 2, "partitions": 5},
     {"threads": 32, "items_per_thread": 1}],
)
def test_gpu_multibit_topk_forced_paths(launch):
    rng = np.random.default_rng(17)
    q, db = multibit_codes(rng, 4, 2, 64), multibit_codes(rng, 6000, 2, 64, levels=2)
    w = np.array([1.0, 0.5])
    for k in (1, 100, 3000):
        s, i = cbin.multibit_topk(q, db, k, 64, w, **launch)
        ws, wi = _cpu.multibit_topk(q, db, k, 64, w)
        same_bits(s, ws)
        np.testing.assert_array_equal(i, wi)
    s, i = cbin.multibit_topk(q, db, 6000, 64, w)  # beyond the shared-memory buffer: global path
    ws, wi = _cpu.multibit_topk(q, db, 6000, 64, w)
    same_bits(s, ws)
    np.testing.assert_array_equal(i, wi)


@pytest.mark.gpu
@needs_gpu
def test_gpu_new_kernels_empty_inputs():
    w = np.ones(2)
    assert cbin.asymmetric_scores(np.zeros((0, 9), np.float32), np.zeros((4, 2), np.uint8), False).shape == (0, 4)
    assert cbin.asymmetric_scores(np.ones((2, 9), np.float32), np.zeros((0, 2), np.uint8), False).shape == (2, 0)
    assert cbin.multibit_scores(np.zeros((0, 2, 3), np.uint8), np.zeros((4, 2, 3), np.uint8), 20, w).shape == (0, 4)
    s, i = cbin.multibit_topk(np.zeros((0, 2, 3), np.uint8), np.zeros((4, 2, 3), np.uint8), 4, 20, w)
    assert s.shape == (0, 4) and i.shape == (0, 4)


def _poison_torch_pool(torch, nbytes=1 << 24):
    """Fill (then free) a block of torch's caching allocator, so new outputs start as garbage."""
    torch.full((nbytes // 8,), -1, dtype=torch.int64, device="cuda")
    torch.cuda.synchronize()


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_torch_in_torch_out_on_a_side_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    q, db = random_codes(rng, (9, 16)), random_codes(rng, (777, 16))
    qf = rng.standard_normal((9, 128)).astype(np.float32)
    mq, mdb = multibit_codes(rng, 5, 2, 50), multibit_codes(rng, 333, 2, 50)
    w = np.array([1.0, 0.25])
    _poison_torch_pool(torch)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        tq, tdb = torch.from_numpy(q).cuda(), torch.from_numpy(db).cuda()
        lims, dist, idx = binary.hamming_range(tq, tdb, 55)
        asym = binary.asymmetric_scores(torch.from_numpy(qf).cuda().double(), tdb, bitorder="little")
        tmq, tmdb = torch.from_numpy(mq).cuda(), torch.from_numpy(mdb).cuda()
        ms = binary.multibit_scores(tmq, tmdb, dim=50, weights=torch.from_numpy(w).cuda())
        ts, ti = binary.multibit_topk(tmq[0], tmdb, 17, dim=50, weights=w)  # one query: 1-D results
    side.synchronize()
    for t in (lims, dist, idx, asym, ms, ts, ti):
        assert isinstance(t, torch.Tensor) and t.is_cuda
    assert lims.dtype == torch.int64 and dist.dtype == torch.int32 and idx.dtype == torch.int64
    check_range((lims.cpu().numpy(), dist.cpu().numpy(), idx.cpu().numpy()), q, db, 55)
    same_bits(asym.cpu().numpy(), _cpu.asymmetric_scores(qf, db, True))
    same_bits(ms.cpu().numpy(), _cpu.multibit_scores(mq, mdb, 50, w))
    ws, wi = _cpu.multibit_topk(mq[:1], mdb, 17, 50, w)
    assert ts.shape == (17,) and ti.shape == (17,)
    same_bits(ts.cpu().numpy(), ws[0])
    np.testing.assert_array_equal(ti.cpu().numpy(), wi[0])
    with pytest.raises(ValueError, match="queries contains NaN or inf"):
        binary.asymmetric_scores(torch.full((2, 128), float("nan"), device="cuda"), tdb)


@pytest.mark.gpu
@needs_gpu
@needs_cpu
def test_gpu_cupy_in_cupy_out_and_misaligned_views():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(6)
    q, db = random_codes(rng, (20, 33)), random_codes(rng, (999, 33))
    dq, ddb = cupy.asarray(q), cupy.asarray(db)
    lims, dist, idx = cbin.hamming_range(dq, ddb, 120)
    assert all(isinstance(a, cupy.ndarray) for a in (lims, dist, idx))
    check_range((cupy.asnumpy(lims), cupy.asnumpy(dist), cupy.asnumpy(idx)), q, db, 120)
    flat = cupy.zeros(db.size + 3, cupy.uint8)  # a C-contiguous view 3 bytes off alignment
    flat[3:] = cupy.asarray(db.ravel())
    view = flat[3:].reshape(db.shape)
    got = cbin.hamming_range(dq, view, 120)
    check_range(tuple(cupy.asnumpy(a) for a in got), q, db, 120)
    qf = rng.standard_normal((5, 264)).astype(np.float32)
    same_bits(cupy.asnumpy(cbin.asymmetric_scores(cupy.asarray(qf), view, False)),
              _cpu.asymmetric_scores(qf, db, False))
    mq, mdb = multibit_codes(rng, 3, 3, 88), multibit_codes(rng, 500, 3, 88)
    w = np.array([1.0, 0.5, 0.25])
    s, i = cbin.multibit_topk(cupy.asarray(mq), cupy.asarray(mdb), 500, 88, w)
    assert isinstance(s, cupy.ndarray) and isinstance(i, cupy.ndarray)
    ws, wi = _cpu.multibit_topk(mq, mdb, 500, 88, w)
    same_bits(cupy.asnumpy(s), ws)
    np.testing.assert_array_equal(cupy.asnumpy(i), wi)
