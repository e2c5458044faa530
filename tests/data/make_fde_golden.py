"""Regenerates fde_golden.npz from Google's reference (PyPI ``muvera-fde`` 0.1.0, built as
specs/fde.md §10 says). Run: python tests/data/make_fde_golden.py. The inputs are stored too, so
the test does not depend on numpy's random streams."""
import json
import os

import numpy as np
from muvera_fde import (EncodingType, FixedDimensionalEncoder, FixedDimensionalEncodingConfig,
                        ProjectionType)


def reference(cfg, x, document):
    kw = dict(dimension=cfg["dimension"], num_repetitions=cfg["num_repetitions"],
              num_simhash_projections=cfg["num_simhash_projections"], seed=cfg["seed"],
              fill_empty_partitions=cfg["fill_empty_partitions"] and document,
              encoding_type=EncodingType.AVERAGE if document else EncodingType.DEFAULT_SUM)
    if cfg["projection_type"] == "ams_sketch":
        kw.update(projection_type=ProjectionType.AMS_SKETCH,
                  projection_dimension=cfg["projection_dimension"])
    if cfg["final_projection_dimension"] is not None:
        kw["final_projection_dimension"] = cfg["final_projection_dimension"]
    enc = FixedDimensionalEncoder(FixedDimensionalEncodingConfig(**kw))
    return np.asarray(enc.encode_document(x) if document else enc.encode_query(x), np.float32)


def main():
    rng = np.random.default_rng(20240529)
    configs, tokens, lengths, docs, queries = [], [], [], [], []
    token_counts = [1, 3, 1, 3, 300, 2, 7, 64]
    while len(configs) < 28:
        d = int(rng.choice([5, 8, 13, 16, 24]))
        k = int(rng.integers(0, 7))
        ams = bool(rng.integers(0, 2))
        p = int(rng.integers(2, 9)) if ams else d
        reps = int(rng.integers(1, 21))
        if reps * (1 << k) * p > 2048:
            continue
        cfg = dict(dimension=d, num_repetitions=reps, num_simhash_projections=k,
                   seed=int(rng.integers(-5, 1000)), projection_type="ams_sketch" if ams else "identity",
                   projection_dimension=p if ams else None,
                   fill_empty_partitions=bool(rng.integers(0, 2)) or k >= 5,
                   final_projection_dimension=int(rng.integers(16, 600)) if rng.random() < 0.3 else None)
        i = len(configs)
        n = token_counts[i] if i < len(token_counts) else int(rng.integers(1, 301))
        x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 3)).astype(np.float32)
        configs.append(cfg)
        tokens.append(x)
        lengths.append(n)
        docs.append(reference(cfg, x, True))
        queries.append(reference(cfg, x, False))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fde_golden.npz")
    np.savez_compressed(
        out, configs=np.array(json.dumps(configs)),
        tokens=np.concatenate([t.ravel() for t in tokens]), lengths=np.array(lengths),
        docs=np.concatenate(docs), queries=np.concatenate(queries),
        out_lengths=np.array([len(v) for v in docs]))
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
