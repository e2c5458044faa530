"""Benchmark cases of the product-quantization family (``embkern.pq``).

Acceptance sizes (``--full``): d=128 with 1,000,000 codes (m=16 x 8 bits exact ADC against faiss
``IndexPQ``; m=32 x 4 bits fast scan against ``IndexPQFastScan``), d=768 with 200,000 codes
(m=32 x 8 bits, m=64 x 4 bits fast scan), 1,000 queries, top-10; ``encode`` of 1,000,000 vectors
against faiss ``compute_codes``; ``fit`` against faiss ``ProductQuantizer.train`` (100,000 vectors).
Both libraries search the same codes with the same centroids (trained once by faiss, untimed), so
their distances must agree. Fast-scan cases also time ScaNN's LUT16 asymmetric hashing where it
is installed (its own 4-bit quantizer, so its results are not compared). Gaussian data from a
fixed seed.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from embkern.pq import ProductQuantizer

from ._harness import Case, Peer

FAMILY = "pq"


def _vectors(rng, n, d):
    return rng.standard_normal((n, d), dtype=np.float32)


def _trained(data_x, d, m, nbits, fastscan=False):
    """A faiss index trained on a sample, and embkern's quantizer with the same centroids."""
    import faiss

    index = faiss.IndexPQFastScan(d, m, 4) if fastscan else faiss.IndexPQ(d, m, nbits)
    index.train(data_x[: min(len(data_x), 20_000)])
    return index, ProductQuantizer.from_faiss(index)


def _search_setup(rng, *, d, m, nbits, n, nq, k, fastscan=False):
    import faiss  # noqa: F401  (the codes and centroids come from faiss, untimed)

    xb = _vectors(rng, n, d)
    index, pq = _trained(xb, d, m, nbits, fastscan)
    index.add(xb)
    codes = pq.encode(xb)
    data = {"index": index, "pq": pq, "q": _vectors(rng, nq, d), "k": k, "codes": codes, "xb": xb}
    if fastscan:
        data["packed"] = pq.pack_fastscan(codes)
    return data


def _search_embkern(data, backend):
    pq, q, k = data["pq"], data["q"], data["k"]
    codes = data.get("packed", data["codes"])
    return lambda: pq.search(q, codes, k, backend=backend)


def _faiss_search(data, threads):
    index, q, k = data["index"], data["q"], data["k"]
    return lambda: index.search(q, k)


def _scann_search(data, threads):
    """ScaNN's brute-force asymmetric hashing with 4-bit LUT16 codes (its fast scan) on the same
    vectors: m = d / dims_per_block sub-quantizers of 16 centroids, trained by ScaNN (untimed),
    no re-ordering; one thread (search_batched) or its own pool (search_batched_parallel)."""
    import scann

    xb, q, k, m = data["xb"], data["q"], data["k"], data["pq"].m
    searcher = (scann.scann_ops_pybind.builder(xb, k, "squared_l2")
                .score_ah(xb.shape[1] // m, anisotropic_quantization_threshold=float("nan"),
                          training_sample_size=min(len(xb), 20_000))
                .build())
    search = searcher.search_batched if threads == 1 else searcher.search_batched_parallel
    return lambda: search(q, final_num_neighbors=k)


def _search_check(data, result, expected) -> Optional[str]:
    d, i = (np.asarray(a) for a in result)
    ed, _ = (np.asarray(a) for a in expected)
    if d.shape != ed.shape:
        return f"shape {d.shape} != {ed.shape}"
    close = np.isclose(d, ed, rtol=1e-5, atol=1e-5 * float(np.abs(ed).max() or 1))
    if not close.all():
        return f"{int((~close).sum())}/{d.size} distances differ"
    if i.min() < 0 or i.max() >= len(data["codes"]):
        return "indices out of range"
    return None


def _search_case(name, title, d, m, nbits, sizes, fastscan=False):
    return Case(
        family=FAMILY, name=name, title=title,
        sizes={p: dict(d=d, m=m, nbits=nbits, k=10, fastscan=fastscan, **s) for p, s in sizes.items()},
        setup=_search_setup, embkern=_search_embkern,
        items=lambda p: p["nq"], unit="queries", check=_search_check,
        peers=[Peer("faiss.IndexPQFastScan" if fastscan else "faiss.IndexPQ", _faiss_search, ("faiss",))]
        + ([Peer("scann.lut16", _scann_search, ("scann",), comparable=False)] if fastscan else []),
    )


def _encode_setup(rng, *, d, m, nbits, n):
    xb = _vectors(rng, n, d)
    index, pq = _trained(xb, d, m, nbits)
    return {"x": xb, "index": index, "pq": pq}


def _encode_embkern(data, backend):
    pq, x = data["pq"], data["x"]
    return lambda: pq.encode(x, backend=backend)


def _faiss_encode(data, threads):
    pq, x = data["index"].pq, data["x"]
    return lambda: pq.compute_codes(x)


def _codes_check(data, result, expected) -> Optional[str]:
    bad = int(np.count_nonzero(np.asarray(result) != np.asarray(expected)))
    return None if bad == 0 else f"{bad} code bytes differ"


def _fit_setup(rng, *, d, m, nbits, n):
    return {"x": _vectors(rng, n, d), "d": d, "m": m, "nbits": nbits}


def _fit_embkern(data, backend):
    x, d, m, nbits = data["x"], data["d"], data["m"], data["nbits"]
    return lambda: ProductQuantizer(d, m, nbits).fit(x, backend=backend).centroids


def _faiss_fit(data, threads):
    import faiss

    x, d, m, nbits = data["x"], data["d"], data["m"], data["nbits"]

    def train():
        pq = faiss.ProductQuantizer(d, m, nbits)
        pq.train(x)
        return faiss.vector_to_array(pq.centroids).reshape(m, 1 << nbits, d // m)

    return train


def _fit_check(data, result, expected) -> Optional[str]:
    """Different k-means runs give different codebooks: compare their quantization error."""
    x, m = data["x"][:20_000], data["m"]

    def mse(cent):
        pq = ProductQuantizer(data["d"], m, data["nbits"])
        pq.centroids = cent
        return float(((pq.decode(pq.encode(x)) - x) ** 2).sum(1).mean())

    mine, theirs = mse(np.asarray(result)), mse(np.asarray(expected))
    return None if mine <= theirs * 1.02 else f"quantization error {mine:.4g} vs {theirs:.4g}"


CASES = [
    _search_case("search_d128_m16x8", "exact ADC top-10, d=128, m=16 x 8 bits, vs faiss IndexPQ",
                 128, 16, 8, {"quick": dict(n=20_000, nq=20), "default": dict(n=200_000, nq=200),
                              "full": dict(n=1_000_000, nq=1_000)}),
    _search_case("fastscan_d128_m32x4", "4-bit fast scan top-10, d=128, m=32, vs faiss IndexPQFastScan",
                 128, 32, 4, {"quick": dict(n=20_000, nq=50), "default": dict(n=200_000, nq=500),
                              "full": dict(n=1_000_000, nq=1_000)}, fastscan=True),
    _search_case("search_d768_m32x8", "exact ADC top-10, d=768, m=32 x 8 bits, vs faiss IndexPQ",
                 768, 32, 8, {"quick": dict(n=5_000, nq=10), "default": dict(n=50_000, nq=100),
                              "full": dict(n=200_000, nq=1_000)}),
    _search_case("fastscan_d768_m64x4", "4-bit fast scan top-10, d=768, m=64, vs faiss IndexPQFastScan",
                 768, 64, 4, {"quick": dict(n=5_000, nq=20), "default": dict(n=50_000, nq=200),
                              "full": dict(n=200_000, nq=1_000)}, fastscan=True),
    Case(family=FAMILY, name="encode_d128_m16x8",
         title="encode to 8-bit codes, d=128, m=16, vs faiss ProductQuantizer.compute_codes",
         sizes={"quick": dict(d=128, m=16, nbits=8, n=20_000), "default": dict(d=128, m=16, nbits=8, n=200_000),
                "full": dict(d=128, m=16, nbits=8, n=1_000_000)},
         setup=_encode_setup, embkern=_encode_embkern, items=lambda p: p["n"], unit="vec",
         check=_codes_check, peers=[Peer("faiss.ProductQuantizer.compute_codes", _faiss_encode, ("faiss",))]),
    Case(family=FAMILY, name="fit_d128_m16x8",
         title="train 16 x 256 codebooks (25 k-means iterations), d=128, vs faiss ProductQuantizer.train",
         sizes={"quick": dict(d=128, m=16, nbits=8, n=10_000), "default": dict(d=128, m=16, nbits=8, n=30_000),
                "full": dict(d=128, m=16, nbits=8, n=100_000)},
         setup=_fit_setup, embkern=_fit_embkern, items=lambda p: p["n"], unit="vec",
         check=_fit_check, peers=[Peer("faiss.ProductQuantizer.train", _faiss_fit, ("faiss",))]),
]
