"""pytest-benchmark: embkern.fde on each backend, with Google's reference (muvera-fde) in the
same group when it is installed.

Every benchmark checks its result (identity: bit-exact against the reference; AMS: within 1e-6 of
the largest value), so the file passes as a test (``pytest bench/ --benchmark-disable``). Sizes
are small; ``python -m embkern.bench --family fde --full`` runs the acceptance workloads.
"""
from __future__ import annotations

import numpy as np
import pytest

from embkern import fde

D = 128


def run(benchmark, fn, group):
    """Warm up once (Numba compiles on its first call), then benchmark."""
    benchmark.group = group
    fn()
    return benchmark(fn)


def config(ams):
    return fde.FDEConfig(D, num_repetitions=20, num_simhash_projections=5,
                         projection_type="ams_sketch" if ams else "identity",
                         projection_dimension=16 if ams else None, fill_empty_partitions=True)


def reference(ams, document):
    mf = pytest.importorskip("muvera_fde")
    kw = dict(dimension=D, num_repetitions=20, num_simhash_projections=5, seed=1,
              fill_empty_partitions=document,
              encoding_type=mf.EncodingType.AVERAGE if document else mf.EncodingType.DEFAULT_SUM)
    if ams:
        kw.update(projection_type=mf.ProjectionType.AMS_SKETCH, projection_dimension=16)
    enc = mf.FixedDimensionalEncoder(mf.FixedDimensionalEncodingConfig(**kw))
    return enc.encode_document if document else enc.encode_query


@pytest.fixture(scope="module")
def clouds(rng_seed):
    rng = np.random.default_rng(rng_seed)
    docs = rng.standard_normal((64, 128, D), dtype=np.float32)
    queries = rng.standard_normal((128, 32, D), dtype=np.float32)
    return {"documents": docs, "queries": queries}


def check(out, want, ams):
    if ams:
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))
    else:
        np.testing.assert_array_equal(out, want)


CASES = [("documents", True), ("queries", True), ("documents", False)]
IDS = ["documents-ams", "queries-ams", "documents-identity"]


@pytest.mark.parametrize("kind,ams", CASES, ids=IDS)
def test_fde_embkern(benchmark, backend, clouds, kind, ams):
    x, cfg = clouds[kind], config(ams)
    f = fde.encode_documents if kind == "documents" else fde.encode_queries
    out = run(benchmark, lambda: f(x, cfg, backend=backend), f"fde-{kind}-{'ams' if ams else 'identity'}")
    one = reference(ams, kind == "documents") if _has_reference() else None
    if one is not None:
        check(out, np.stack([one(c) for c in x]), ams)
    else:  # batched equals one cloud at a time
        np.testing.assert_array_equal(out[:3], np.stack([f(c, cfg, backend=backend) for c in x[:3]]))


@pytest.mark.parametrize("kind,ams", CASES, ids=IDS)
def test_fde_muvera_reference(benchmark, clouds, kind, ams):
    one = reference(ams, kind == "documents")
    x = clouds[kind]
    out = run(benchmark, lambda: np.stack([one(c) for c in x]), f"fde-{kind}-{'ams' if ams else 'identity'}")
    f = fde.encode_documents if kind == "documents" else fde.encode_queries
    check(f(x, config(ams)), out, ams)


def _has_reference():
    try:
        import muvera_fde  # noqa: F401
    except ImportError:
        return False
    return True
