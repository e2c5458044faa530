"""Benchmark cases of the binary family (``embkern.binary``).

Acceptance sizes (``--full``): exact Hamming top-10 of 1,000 queries over 1,000,000 codes of 1,024
bits and of 64 bits against faiss ``IndexBinaryFlat`` (both of its selectors, heap and
counting-sort, the faster one being the peer); all pairs of 20,000 codes of 256 bits against
``faiss.hammings``; ``pack_signs`` of 100,000 x 1,024 float32 against ``np.packbits(x > 0)``;
``asymmetric_scores`` of 100 queries x 100,000 codes x 1,024 dims against numpy (unpack to +-1
float32 and matmul); ``multibit_topk`` against a numpy reference (composite +-1 vectors, matmul,
argpartition); ``hamming_range`` against faiss's range search. The default and quick profiles
shrink the databases. Codes are uniform random bytes from a fixed seed. NumKong/SimSIMD and
USearch join as peers when they are importable.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import embkern

from ._harness import Case, Peer

FAMILY = "binary"

# popcount of every byte value, for the independent re-computation of distances in the checks
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _hamming_rows(q: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """popcount(q[i] ^ codes[i, j]) for q (nq, nbytes) and codes (nq, k, nbytes)."""
    return _POP8[np.bitwise_xor(q[:, None, :], codes)].sum(axis=-1)


def _codes(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Hamming top-k
# ------------------------------------------------------------------------------------------------
def _topk_setup(rng, *, bits: int, nq: int, n: int, k: int) -> Dict[str, Any]:
    nbytes = bits // 8
    return {"bits": bits, "k": k, "db": _codes(rng, n, nbytes), "q": _codes(rng, nq, nbytes)}


def _topk_embkern(data, backend):
    q, db, k = data["q"], data["db"], data["k"]
    return lambda: embkern.hamming_topk(q, db, k, backend=backend)


def _faiss_flat(use_heap: bool) -> Callable:
    def make(data, threads):
        import faiss

        index = data.get("faiss_index")
        if index is None:  # building the index (a copy of the codes) is not part of the search
            index = faiss.IndexBinaryFlat(data["bits"])
            index.add(data["db"])
            data["faiss_index"] = index
        q, k = data["q"], data["k"]

        def search():
            index.use_heap = use_heap
            return index.search(q, k)

        return search

    return make


def _usearch_topk(data, threads):
    from usearch.index import MetricKind, search

    q, db, k = data["q"], data["db"], data["k"]

    def fn():
        m = search(db, q, k, MetricKind.Hamming, exact=True, threads=threads)
        return np.asarray(m.distances).astype(np.int32), np.asarray(m.keys).astype(np.int64)

    return fn


def _topk_check(data, result, expected) -> Optional[str]:
    dist, idx = (np.asarray(a) for a in result)
    e_dist, _ = (np.asarray(a) for a in expected)
    if dist.shape != e_dist.shape:
        return f"shape {dist.shape} != {e_dist.shape}"
    bad = int(np.count_nonzero(dist.astype(np.int64) != e_dist.astype(np.int64)))
    if bad:
        return f"{bad}/{dist.size} top-k distances differ"
    if idx.min() < 0 or idx.max() >= data["db"].shape[0]:
        return "indices out of range"
    # the indices must point at codes at exactly those distances (ties may be ordered differently)
    actual = _hamming_rows(data["q"], data["db"][idx])
    bad = int(np.count_nonzero(actual != dist))
    if bad:
        return f"{bad}/{dist.size} returned indices are not at their returned distance"
    if np.any(np.diff(dist.astype(np.int64), axis=1) < 0):
        return "distances not ascending"
    return None


def _topk_case(bits: int, sizes: Dict[str, Dict[str, Any]], title: str) -> Case:
    return Case(
        family=FAMILY,
        name=f"hamming_topk_{bits}b",
        title=title,
        sizes={p: dict(bits=bits, k=10, **s) for p, s in sizes.items()},
        setup=_topk_setup,
        embkern=_topk_embkern,
        items=lambda p: p["nq"] * p["n"],
        unit="pairs",
        check=_topk_check,
        peers=[
            Peer("faiss.IndexBinaryFlat(heap)", _faiss_flat(True), ("faiss",)),
            Peer("faiss.IndexBinaryFlat(counting)", _faiss_flat(False), ("faiss",)),
            Peer("usearch.search(exact)", _usearch_topk, ("usearch",)),
        ],
    )


# ------------------------------------------------------------------------------------------------
# all-pairs Hamming distances
# ------------------------------------------------------------------------------------------------
def _distance_setup(rng, *, bits: int, n: int) -> Dict[str, Any]:
    return {"a": _codes(rng, n, bits // 8)}


def _distance_embkern(data, backend):
    a = data["a"]
    return lambda: embkern.hamming_distance(a, backend=backend)


def _faiss_hammings(data, threads):
    import faiss

    a = data["a"]
    n, nbytes = a.shape
    ptr = faiss.swig_ptr(a)

    def fn():
        out = np.empty((n, n), dtype=np.int32)  # allocated inside the timed call, as embkern does
        faiss.hammings(ptr, ptr, n, n, nbytes, faiss.swig_ptr(out))
        return out

    return fn


def _cdist_peer(module_name: str) -> Callable:
    """NumKong / SimSIMD ``cdist(a, b, metric="hamming")`` over packed bits (guarded: their
    packed-bit dtype name differs between releases, so the first one that works is used)."""

    def make(data, threads):
        module = importlib.import_module(module_name)
        a = data["a"]
        last: Optional[BaseException] = None
        for dtype in ("bin8", "b8", "u1", "uint1"):
            try:
                probe = np.asarray(module.cdist(a[:3], a[:3], metric="hamming", dtype=dtype, threads=threads))
                expected = _POP8[np.bitwise_xor(a[:3, None, :], a[None, :3, :])].sum(-1)
                if not np.array_equal(probe.astype(np.int64), expected):
                    raise ValueError(f"dtype {dtype!r} does not count packed bits")
            except Exception as exc:
                last = exc
                continue
            return lambda: np.asarray(module.cdist(a, a, metric="hamming", dtype=dtype, threads=threads))
        raise RuntimeError(f"{module_name}.cdist(metric='hamming') on packed bits is unavailable here ({last})")

    return make


def _distance_check(data, result, expected) -> Optional[str]:
    result, expected = np.asarray(result), np.asarray(expected)
    if result.shape != expected.shape:
        return f"shape {result.shape} != {expected.shape}"
    bad = int(np.count_nonzero(result.astype(np.int64, copy=False) != expected.astype(np.int64, copy=False)))
    return f"{bad}/{result.size} distances differ" if bad else None


# ------------------------------------------------------------------------------------------------
# pack_signs
# ------------------------------------------------------------------------------------------------
def _pack_setup(rng, *, n: int, d: int) -> Dict[str, Any]:
    return {"x": rng.standard_normal((n, d), dtype=np.float32)}


def _pack_embkern(data, backend):
    x = data["x"]
    return lambda: embkern.pack_signs(x, backend=backend)


def _numpy_packbits(data, threads):
    x = data["x"]
    return lambda: np.packbits(x > 0, axis=-1)


def _exact_check(data, result, expected) -> Optional[str]:
    result, expected = np.asarray(result), np.asarray(expected)
    if result.shape != expected.shape:
        return f"shape {result.shape} != {expected.shape}"
    bad = int(np.count_nonzero(result != expected))
    return f"{bad}/{result.size} bytes differ" if bad else None


# ------------------------------------------------------------------------------------------------
# asymmetric (float query vs +-1 code) scores
# ------------------------------------------------------------------------------------------------
def _asym_setup(rng, *, nq: int, n: int, d: int) -> Dict[str, Any]:
    return {"d": d, "q": rng.standard_normal((nq, d), dtype=np.float32),
            "db": _codes(rng, n, (d + 7) // 8)}


def _asym_embkern(data, backend):
    q, db = data["q"], data["db"]
    return lambda: embkern.asymmetric_scores(q, db, backend=backend)


def _numpy_asym(data, threads):
    q, db, d = data["q"], data["db"], data["d"]

    def fn():
        signs = np.unpackbits(db, axis=1, count=d).astype(np.float32)
        signs *= 2.0
        signs -= 1.0
        return q @ signs.T

    return fn


def _asym_check(data, result, expected) -> Optional[str]:
    result, expected = np.asarray(result, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if result.shape != expected.shape:
        return f"shape {result.shape} != {expected.shape}"
    # float32 sums of d terms in different orders: allow 1e-5 of sum|q| (one wrong bit costs 2|q_j|)
    tol = 1e-5 * np.abs(data["q"]).sum(axis=1, dtype=np.float64)[:, None] + 1e-6
    err = np.abs(result - expected)
    bad = int(np.count_nonzero(err > tol))
    return f"{bad}/{result.size} scores differ (max error {err.max():.3g})" if bad else None


# ------------------------------------------------------------------------------------------------
# multi-bit (BEBR) codes: top-k by composite inner product
# ------------------------------------------------------------------------------------------------
def _multibit_setup(rng, *, nq: int, n: int, planes: int, dim: int, k: int) -> Dict[str, Any]:
    nbytes = (dim + 7) // 8

    def codes(m):
        c = rng.integers(0, 256, size=(m, planes, nbytes), dtype=np.uint8)
        if dim % 8:  # padding bits must be zero, as pack_signs writes them
            c[..., -1] &= np.uint8((0xFF << (8 - dim % 8)) & 0xFF)
        return c

    return {"q": codes(nq), "db": codes(n), "dim": dim, "k": k, "planes": planes,
            "w": (2.0 ** -np.arange(planes)).astype(np.float32)}


def _composite(codes: np.ndarray, dim: int, w: np.ndarray) -> np.ndarray:
    """sum_t w_t * (+-1 vector of plane t), float32 (n, dim)."""
    out = np.zeros((codes.shape[0], dim), dtype=np.float32)
    for t in range(codes.shape[1]):
        signs = np.unpackbits(codes[:, t, :], axis=1, count=dim).astype(np.float32)
        signs *= 2.0 * w[t]
        signs -= w[t]
        out += signs
    return out


def _multibit_embkern(data, backend):
    q, db, k, dim = data["q"], data["db"], data["k"], data["dim"]
    return lambda: embkern.multibit_topk(q, db, k, dim=dim, backend=backend)


def _numpy_multibit(data, threads):
    q, db, k, dim, w = data["q"], data["db"], data["k"], data["dim"], data["w"]

    def fn():
        scores = _composite(q, dim, w) @ _composite(db, dim, w).T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -top), axis=1)  # descending score, then smaller index
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1).astype(np.int64)

    return fn


def _multibit_check(data, result, expected) -> Optional[str]:
    scores, idx = (np.asarray(a) for a in result)
    e_scores, _ = (np.asarray(a) for a in expected)
    if scores.shape != e_scores.shape:
        return f"shape {scores.shape} != {e_scores.shape}"
    if not np.allclose(scores, e_scores, rtol=1e-5, atol=1e-5):
        bad = int(np.count_nonzero(~np.isclose(scores, e_scores, rtol=1e-5, atol=1e-5)))
        return f"{bad}/{scores.size} top-k scores differ"
    if idx.min() < 0 or idx.max() >= data["db"].shape[0]:
        return "indices out of range"
    dim, w = data["dim"], data["w"]
    cq = _composite(data["q"], dim, w)
    cd = _composite(data["db"][idx.ravel()], dim, w).reshape(idx.shape + (dim,))
    actual = np.einsum("qd,qkd->qk", cq, cd)
    if not np.allclose(actual, scores, rtol=1e-5, atol=1e-5):
        return "returned indices do not score their returned scores"
    return None


# ------------------------------------------------------------------------------------------------
# Hamming range search
# ------------------------------------------------------------------------------------------------
def _range_setup(rng, *, bits: int, nq: int, n: int, radius: int) -> Dict[str, Any]:
    data = _topk_setup(rng, bits=bits, nq=nq, n=n, k=1)
    data["radius"] = radius
    return data


def _range_embkern(data, backend):
    q, db, radius = data["q"], data["db"], data["radius"]
    return lambda: embkern.hamming_range(q, db, radius, backend=backend)


def _faiss_range(data, threads):
    import faiss

    index = data.get("faiss_index")
    if index is None:
        index = faiss.IndexBinaryFlat(data["bits"])
        index.add(data["db"])
        data["faiss_index"] = index
    q, radius = data["q"], data["radius"]
    # faiss keeps distances < radius; embkern's radius is inclusive
    return lambda: index.range_search(q, radius + 1)


def _range_keys(result, n: int, bits: int) -> tuple:
    lims, dist, idx = (np.asarray(a) for a in result)
    lims = lims.astype(np.int64)
    qid = np.repeat(np.arange(len(lims) - 1, dtype=np.int64), np.diff(lims))
    keys = (qid * (bits + 1) + dist.astype(np.int64)) * n + idx.astype(np.int64)
    return lims, keys


def _range_check(data, result, expected) -> Optional[str]:
    n, bits = data["db"].shape[0], data["bits"]
    lims, keys = _range_keys(result, n, bits)
    e_lims, e_keys = _range_keys(expected, n, bits)
    if lims.shape != e_lims.shape or not np.array_equal(lims, e_lims):
        return f"result counts differ ({int(lims[-1])} vs {int(e_lims[-1])} in all)"
    if not np.array_equal(np.sort(keys), np.sort(e_keys)):
        return "different (distance, index) pairs"
    return None


# ------------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------------
_TOPK_SIZES = {
    "quick": dict(nq=50, n=20_000),
    "default": dict(nq=200, n=200_000),
    "full": dict(nq=1_000, n=1_000_000),
}

CASES: List[Case] = [
    _topk_case(1024, _TOPK_SIZES, "exact Hamming top-10, 1,024-bit codes, vs faiss IndexBinaryFlat"),
    _topk_case(64, _TOPK_SIZES, "exact Hamming top-10, 64-bit codes, vs faiss IndexBinaryFlat"),
    Case(
        family=FAMILY,
        name="hamming_distance_256b",
        title="all-pairs Hamming distances of one set of 256-bit codes, vs faiss.hammings",
        sizes={"quick": dict(bits=256, n=2_000), "default": dict(bits=256, n=8_000),
               "full": dict(bits=256, n=20_000)},
        setup=_distance_setup,
        embkern=_distance_embkern,
        items=lambda p: p["n"] * p["n"],
        unit="pairs",
        check=_distance_check,
        peers=[Peer("faiss.hammings", _faiss_hammings, ("faiss",)),
               Peer("numkong.cdist", _cdist_peer("numkong"), ("numkong",)),
               Peer("simsimd.cdist", _cdist_peer("simsimd"), ("simsimd",))],
    ),
    Case(
        family=FAMILY,
        name="pack_signs_f32",
        title="sign binarization of float32 vectors, vs np.packbits(x > 0, axis=-1)",
        sizes={"quick": dict(n=5_000, d=1024), "default": dict(n=50_000, d=1024),
               "full": dict(n=100_000, d=1024)},
        setup=_pack_setup,
        embkern=_pack_embkern,
        items=lambda p: p["n"],
        unit="vec",
        check=_exact_check,
        peers=[Peer("numpy.packbits", _numpy_packbits)],
    ),
    Case(
        family=FAMILY,
        name="asymmetric_scores",
        title="float query . +-1 code scores, vs numpy unpackbits + float32 matmul",
        sizes={"quick": dict(nq=20, n=5_000, d=1024), "default": dict(nq=100, n=50_000, d=1024),
               "full": dict(nq=100, n=100_000, d=1024)},
        setup=_asym_setup,
        embkern=_asym_embkern,
        items=lambda p: p["nq"] * p["n"],
        unit="pairs",
        check=_asym_check,
        peers=[Peer("numpy unpack+matmul", _numpy_asym)],
    ),
    Case(
        family=FAMILY,
        name="multibit_topk",
        title="multi-bit (4-plane BEBR) codes, top-10 by inner product, vs numpy composite matmul",
        sizes={"quick": dict(nq=10, n=5_000, planes=4, dim=256, k=10),
               "default": dict(nq=50, n=50_000, planes=4, dim=256, k=10),
               "full": dict(nq=100, n=200_000, planes=4, dim=256, k=10)},
        setup=_multibit_setup,
        embkern=_multibit_embkern,
        items=lambda p: p["nq"] * p["n"],
        unit="pairs",
        check=_multibit_check,
        peers=[Peer("numpy composite+matmul", _numpy_multibit)],
    ),
    Case(
        family=FAMILY,
        name="hamming_range_256b",
        title="Hamming range search (radius 96 of 256 bits), vs faiss IndexBinaryFlat.range_search",
        sizes={"quick": dict(bits=256, nq=50, n=20_000, radius=96),
               "default": dict(bits=256, nq=200, n=200_000, radius=96),
               "full": dict(bits=256, nq=1_000, n=1_000_000, radius=96)},
        setup=_range_setup,
        embkern=_range_embkern,
        items=lambda p: p["nq"] * p["n"],
        unit="pairs",
        check=_range_check,
        peers=[Peer("faiss.IndexBinaryFlat.range_search", _faiss_range, ("faiss",))],
    ),
]
