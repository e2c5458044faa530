"""Plain numpy oracles for the binary family: slow, obviously correct, independent of embkern."""
import numpy as np


def hamming(a, b):
    """int (na, nb) popcount of XOR via unpackbits."""
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=-1).sum(-1, dtype=np.int64)


def topk_smallest(scores, k):
    """k smallest per row, ties by smaller column index: (values, indices)."""
    n = scores.shape[1]
    order = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


def range_search(dist, radius):
    lims, ds, ids = [0], [], []
    for row in dist:
        sel = np.nonzero(row <= radius)[0]
        sel = sel[np.lexsort((sel, row[sel]))]
        ds.append(row[sel])
        ids.append(sel)
        lims.append(lims[-1] + len(sel))
    return (np.array(lims, np.int64), np.concatenate(ds) if ds else np.zeros(0),
            np.concatenate(ids) if ids else np.zeros(0))


def signs_pm1(codes, d, bitorder):
    """Codes -> float64 +-1 matrix (n, d)."""
    bits = np.unpackbits(codes, axis=-1, bitorder=bitorder)[..., :d]
    return bits.astype(np.float64) * 2 - 1


def asymmetric(q, codes, bitorder):
    return q.astype(np.float64) @ signs_pm1(codes, q.shape[1], bitorder).T


def multibit(q, db, dim, w):
    """Composite +-1 vectors, inner product, in float64."""
    def composite(c):
        planes = np.unpackbits(c, axis=-1)[..., :dim].astype(np.float64) * 2 - 1  # (n, P, dim)
        return np.einsum("p,npd->nd", w, planes)
    return composite(q) @ composite(db).T
