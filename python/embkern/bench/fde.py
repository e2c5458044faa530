"""Benchmark cases of the MUVERA FDE family (``embkern.fde``).

Acceptance sizes (``--full``), the paper's recommended config (R=20, k_sim=5, AMS d_proj=16 ->
10,240 dims, fill on for documents): 2,000 documents of 128 tokens x 128 dims and 1,000 queries
of 32 tokens, against Google's reference (PyPI ``muvera-fde``, one C++ call per cloud, as its API
takes them); the identity config (81,920 dims) on the same documents; and fastembed's MUVERA
(numpy, float64, its own RNG) on fewer documents, since it runs ~100 documents/s. The reference
produces the same vectors (checked: max |diff| <= 1e-6 x max |value| for AMS, equal for
identity); fastembed's vectors differ by construction (specs/fde.md §8), so only their shape is
checked. Tokens are unit-norm Gaussian vectors from a fixed seed.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from embkern import fde

from ._harness import Case, Peer

FAMILY = "fde"
_D = 128


def _config(ams: bool, r: int = 20, k: int = 5) -> fde.FDEConfig:
    return fde.FDEConfig(_D, num_repetitions=r, num_simhash_projections=k,
                         projection_type="ams_sketch" if ams else "identity",
                         projection_dimension=16 if ams else None, fill_empty_partitions=True)


def _setup(rng, *, n, tokens, ams, document):
    x = rng.standard_normal((n, tokens, _D), dtype=np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return {"x": x, "ams": ams, "document": document, "cfg": _config(ams)}


def _embkern(data, backend):
    x, cfg = data["x"], data["cfg"]
    f = fde.encode_documents if data["document"] else fde.encode_queries
    return lambda: ("google", f(x, cfg, backend=backend))


def _muvera(data, threads):
    from muvera_fde import (EncodingType, FixedDimensionalEncoder,
                            FixedDimensionalEncodingConfig, ProjectionType)

    doc = data["document"]
    kw = dict(dimension=_D, num_repetitions=20, num_simhash_projections=5, seed=1,
              fill_empty_partitions=doc,
              encoding_type=EncodingType.AVERAGE if doc else EncodingType.DEFAULT_SUM)
    if data["ams"]:
        kw.update(projection_type=ProjectionType.AMS_SKETCH, projection_dimension=16)
    enc = FixedDimensionalEncoder(FixedDimensionalEncodingConfig(**kw))
    one = enc.encode_document if doc else enc.encode_query
    x = data["x"]
    return lambda: ("google", np.stack([one(c) for c in x]))


def _fastembed(data, threads):
    from fastembed.postprocess.muvera import Muvera

    m = Muvera(dim=_D, k_sim=5, dim_proj=16, r_reps=20, random_seed=42)
    one = m.process_document if data["document"] else m.process_query
    x = data["x"]
    return lambda: ("fastembed", np.stack([one(c) for c in x]))


def _check(data, result, expected) -> Optional[str]:
    (kind_a, a), (kind_b, b) = result, expected
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if kind_a != kind_b:  # fastembed: another RNG and layout, so only the shape is comparable
        return None if np.isfinite(a).all() else "non-finite values"
    if not data["ams"]:
        bad = int(np.count_nonzero(a != b))
        return None if bad == 0 else f"{bad}/{a.size} values differ (identity must be bit-exact)"
    scale = float(np.abs(b).max() or 1.0)
    err = float(np.abs(a.astype(np.float64) - b).max())
    return None if err <= 1e-6 * scale else f"max |diff| {err:.3g} > 1e-6 x {scale:.3g}"


def _case(name, title, sizes, ams, document, tokens, peers):
    return Case(
        family=FAMILY, name=name, title=title,
        sizes={p: dict(n=n, tokens=tokens, ams=ams, document=document) for p, n in sizes.items()},
        setup=_setup, embkern=_embkern, items=lambda p: p["n"],
        unit="docs" if document else "queries", check=_check, peers=peers)


_MUVERA = Peer("muvera-fde (Google C++)", _muvera, ("muvera_fde",))
_FASTEMBED = Peer("fastembed.Muvera", _fastembed, ("fastembed.postprocess.muvera",))

CASES = [
    _case("documents_ams_10240", "documents, 128 tokens x 128 dims -> 10,240 dims (R=20, k=5, AMS 16, fill)",
          {"quick": 50, "default": 200, "full": 2000}, True, True, 128, [_MUVERA]),
    _case("queries_ams_10240", "queries, 32 tokens x 128 dims -> 10,240 dims (R=20, k=5, AMS 16)",
          {"quick": 100, "default": 400, "full": 1000}, True, False, 32, [_MUVERA]),
    _case("documents_identity_81920", "documents, 128 tokens x 128 dims -> 81,920 dims (R=20, k=5, identity, fill)",
          {"quick": 20, "default": 80, "full": 2000}, False, True, 128, [_MUVERA]),
    _case("documents_vs_fastembed", "documents, 128 tokens x 128 dims -> 10,240 dims, vs fastembed's MUVERA",
          {"quick": 8, "default": 20, "full": 200}, True, True, 128, [_FASTEMBED]),
]
