"""Bad input: every entry point answers with a clear ValueError/TypeError naming the argument,
never a crash; plus a hypothesis fuzz over shapes and dtypes."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embkern
from embkern import binary

import reference as ref

U8 = np.zeros((4, 8), np.uint8)
F32 = np.zeros((4, 64), np.float32)
MB = np.zeros((4, 2, 8), np.uint8)

BAD_CALLS = [
    # (call, exception, text the message must contain)
    (lambda: binary.hamming_distance(U8.astype(np.int8)), TypeError, "uint8"),
    (lambda: binary.hamming_distance(U8.astype(np.int64)), TypeError, "a must be uint8"),
    (lambda: binary.hamming_distance(U8, U8.astype(np.float32)), TypeError, "b must be uint8"),
    (lambda: binary.hamming_distance(U8, np.zeros((3, 9), np.uint8)), ValueError, "same code shape"),
    (lambda: binary.hamming_distance(np.zeros((3, 0), np.uint8)), ValueError, "at least one byte"),
    (lambda: binary.hamming_distance(np.zeros((2, 2, 2), np.uint8)), ValueError, "2-D"),
    (lambda: binary.hamming_distance([[1, 2], [3]]), (TypeError, ValueError), ""),
    (lambda: binary.hamming_distance(None), TypeError, "a must be an array"),
    (lambda: binary.hamming_topk(U8, U8, 0), ValueError, "1 <= k <= 4"),
    (lambda: binary.hamming_topk(U8, U8, 5), ValueError, "1 <= k <= 4"),
    (lambda: binary.hamming_topk(U8, U8, -1), ValueError, "k"),
    (lambda: binary.hamming_topk(U8, U8, 2.0), TypeError, "k must be an int"),
    (lambda: binary.hamming_topk(U8, U8, True), TypeError, "k must be an int"),
    (lambda: binary.hamming_topk(U8, np.zeros((0, 8), np.uint8), 1), ValueError, "k"),
    (lambda: binary.hamming_topk(U8, U8[:, :7], 1), ValueError, "same code shape"),
    (lambda: binary.hamming_topk(U8.astype(np.uint16), U8, 1), TypeError, "queries must be uint8"),
    (lambda: binary.hamming_range(U8, U8, -1), ValueError, "radius"),
    (lambda: binary.hamming_range(U8, U8, 1.5), TypeError, "radius"),
    (lambda: binary.pack_signs(F32, bitorder="middle"), ValueError, "bitorder"),
    (lambda: binary.pack_signs(F32, threshold=float("nan")), ValueError, "threshold"),
    (lambda: binary.pack_signs(F32, threshold="0"), TypeError, "threshold"),
    (lambda: binary.pack_signs(F32.astype(np.complex64)), TypeError, "real"),
    (lambda: binary.pack_signs(np.zeros((3, 0), np.float32)), ValueError, "at least one column"),
    (lambda: binary.pack_signs(np.zeros((2, 2, 2), np.float32)), ValueError, "x must be 2-D"),
    (lambda: binary.asymmetric_scores(F32, U8[:, :7]), ValueError, "ceil(d/8)"),
    (lambda: binary.asymmetric_scores(np.full((1, 64), np.nan, np.float32), U8), ValueError, "NaN"),
    (lambda: binary.asymmetric_scores(F32, U8.astype(np.int8)), TypeError, "database must be uint8"),
    (lambda: binary.multibit_scores(MB, MB, dim=100), ValueError, "dim"),
    (lambda: binary.multibit_scores(MB, MB[:, :1], dim=64), ValueError, "same code shape"),
    (lambda: binary.multibit_scores(MB, MB, dim=64, weights=[1.0]), ValueError, "weights"),
    (lambda: binary.multibit_scores(MB, MB, dim=64, weights=[1.0, np.inf]), ValueError, "NaN or inf"),
    (lambda: binary.multibit_scores(U8, U8, dim=64), ValueError, "3-D"),
    (lambda: binary.multibit_topk(MB, MB, 9, dim=64), ValueError, "k"),
    (lambda: binary.hamming_topk(U8, U8, 1, backend="gpu"), ValueError, "backend"),
    (lambda: embkern.set_num_threads(0), ValueError, "num_threads"),
    (lambda: embkern.set_isa("sse9"), ValueError, "sse9"),
]


@pytest.mark.parametrize("call,exc,text", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_input(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)


def test_forced_cuda_without_gpu_says_why():
    if embkern.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda"):
        binary.hamming_topk(U8, U8, 1, backend="cuda")


def test_private_module_checks_shapes_too():
    core = pytest.importorskip("embkern._core")
    with pytest.raises(ValueError):
        core.binary.hamming_topk(U8, U8, 10)
    with pytest.raises(ValueError):
        core.binary.hamming_distance(U8, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError):
        core.binary.asymmetric_scores(F32, U8[:, :3], False)
    with pytest.raises((TypeError, ValueError)):
        core.binary.hamming_distance(F32, F32)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    nq=st.integers(0, 5), nb=st.integers(1, 40), cs=st.integers(1, 70),
    k=st.integers(-2, 45), radius=st.integers(-1, 600),
    dtype=st.sampled_from(["uint8", "int8", "int32", "float32", "bool"]),
    backend=st.sampled_from([None, "cpu", "numba"]), seed=st.integers(0, 2**31 - 1),
)
def test_fuzz_binary_entry_points(nq, nb, cs, k, radius, dtype, backend, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, (nq, cs)).astype(dtype)
    db = rng.integers(0, 256, (nb, cs)).astype(dtype)
    if dtype != "uint8":
        for fn in (lambda: binary.hamming_distance(q, db, backend=backend),
                   lambda: binary.hamming_topk(q, db, max(k, 1), backend=backend)):
            with pytest.raises(TypeError):
                fn()
        return
    h = ref.hamming(q, db)
    np.testing.assert_array_equal(binary.hamming_distance(q, db, backend=backend), h)
    if 1 <= k <= nb:
        d, i = binary.hamming_topk(q, db, k, backend=backend)
        wd, wi = ref.topk_smallest(h, k)
        np.testing.assert_array_equal(d, wd)
        np.testing.assert_array_equal(i, wi)
    else:
        with pytest.raises((ValueError, TypeError)):
            binary.hamming_topk(q, db, k, backend=backend)
    if radius >= 0:
        lims, d, i = binary.hamming_range(q, db, radius, backend=backend)
        wl, wd, wi = ref.range_search(h, radius)
        np.testing.assert_array_equal(lims, wl)
        np.testing.assert_array_equal(d, wd)
        np.testing.assert_array_equal(i, wi)
    x = rng.standard_normal((nq, cs)).astype(np.float32)
    np.testing.assert_array_equal(binary.pack_signs(x, backend=backend), np.packbits(x > 0, axis=-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_every_non_finite_value(dtype, bad):
    from embkern import _dispatch

    rng = np.random.default_rng(0)
    x = rng.standard_normal(3 * (1 << 18) + 5).astype(dtype)  # several chunks and a tail
    assert _dispatch.all_finite(x)
    assert _dispatch.all_finite(np.array([np.finfo(dtype).max, -np.finfo(dtype).max,
                                          np.finfo(dtype).tiny / 4, -0.0], dtype))
    for at in (0, 1 << 18, x.size - 1):
        y = x.copy()
        y[at] = bad
        assert not _dispatch.all_finite(y)
    assert not _dispatch.all_finite(np.full((3, 7), bad, dtype)[:, ::2])  # strided: numpy's check


def test_all_finite_takes_unpickled_and_non_native_dtypes():
    import pickle

    from embkern import _dispatch

    x = pickle.loads(pickle.dumps(np.ones((4, 3), np.float32)))  # dtype object not the singleton
    assert _dispatch.all_finite(x)
    y = np.ones(5, dtype=">f8")
    y[2] = np.nan
    assert not _dispatch.all_finite(y)
