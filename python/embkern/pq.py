"""Product quantization, interchangeable with faiss.

``ProductQuantizer`` trains per-sub-space k-means codebooks on embkern's own kernels, encodes to
faiss's code layout (byte-identical codes for the same centroids), decodes, builds ADC lookup
tables and searches 8-bit and 4-bit codes exactly (asymmetric distance computation), or 4-bit codes
packed for fast scan (faiss's ``IndexPQFastScan`` block layout, 8-bit quantized tables, 16-bit
accumulators) with optional exact re-ranking. ``adc_distances`` and ``adc_topk`` are the scan
kernels on their own, for callers that build tables themselves (IVF lists, OPQ).

Conventions: centroids float32 (m, 2**nbits, dim // m); codes uint8 (n, ceil(m * nbits / 8)),
sub-quantizer i in byte i (8 bits) or in byte i // 2, even i in the low nibble (4 bits); L2
distances are squared; "l2" results ascend, "ip" results descend; ties go to the smaller index.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _dispatch as _d

__all__ = ["ProductQuantizer", "FastScanCodes", "adc_distances", "adc_topk"]


def _positive_int(value: Any, name: str) -> int:
    value = _d.as_int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _as_lut(lut: Any, name: str = "lut") -> np.ndarray:
    arr, _ = _d.as_float(lut, name, 3, finite=True)
    if arr.shape[2] not in (16, 256):
        raise ValueError(f"{name} must have 16 (4-bit) or 256 (8-bit) entries per sub-quantizer, "
                         f"got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sub-quantizer")
    return arr


def _check_codes(codes: Any, m: int, nbits: int, name: str = "codes") -> np.ndarray:
    arr, _ = _d.as_codes(codes, name)
    width = (m * nbits + 7) // 8
    if arr.shape[1] != width:
        raise ValueError(f"{name} must have ceil(m * nbits / 8) = {width} bytes per row "
                         f"(m={m}, nbits={nbits}), got {arr.shape[1]}")
    return arr


# ---- CUDA device arrays (CuPy, torch, __cuda_array_interface__) ---------------------------------
# Device inputs go straight to embkern._cuda_ops.pq (results in the caller's framework); host
# parameters next to them (centroids, tables, codes) are checked as on the CPU path and copied to
# the same device. numpy inputs with backend="cuda" take the normal path below.


def _is_dev(*arrays: Any) -> bool:
    return any(a is not None and _d._is_device_array(a) for a in arrays)


def _cuda_ops():
    return _d.backend_module("pq", "cuda")


def _on_device(arr: Any, like: Any, check):
    """arr itself when it is a device array, else check(arr) copied next to `like`."""
    if _d._is_device_array(arr):
        return arr
    return _cuda_ops().to_device_like(check(arr), like)


def _device_finite(x: Any, name: str) -> None:
    """ValueError for NaN/inf in a CuPy or torch float array (others cannot be read here)."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch"):
        import torch

        ok = not x.is_floating_point() or bool(torch.isfinite(x.detach()).all())
    elif mod.startswith("cupy"):
        import cupy

        ok = x.dtype.kind != "f" or bool(cupy.isfinite(x).all())
    else:
        return
    if not ok:
        raise ValueError(f"{name} contains NaN or inf")


def _framework_array(x: Any):
    """A CuPy array or torch tensor viewing device array x (indexable with framework indices)."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch") or mod.startswith("cupy"):
        return x
    try:
        import cupy

        return cupy.asarray(x)
    except ImportError:
        import torch

        return torch.as_tensor(x, device="cuda")


def _take_rows(x: Any, rows: np.ndarray):
    """x[rows] for a CuPy array or torch tensor, rows a host int array."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch"):
        import torch

        return x[torch.as_tensor(rows, device=x.device)]
    import cupy

    return x[cupy.asarray(rows)]


def adc_distances(lut: Any, codes: Any, *, backend: Optional[str] = None) -> np.ndarray:
    """Distances of every code to every query from precomputed tables: ``out[q, j] = sum_i
    lut[q, i, codes[j, i]]``. ``lut`` is float32 (nq, m, 16 or 256) (the last axis fixes 4- or
    8-bit codes); ``codes`` uint8 (n, ceil(m * nbits / 8)). Returns float32 (nq, n)."""
    if _d.choose_backend(backend, lut, codes) == "cuda" and _is_dev(lut, codes):
        like = lut if _is_dev(lut) else codes
        _device_finite(lut, "lut")
        t = _on_device(lut, like, _as_lut)
        return _cuda_ops().adc_distances(t, _on_device(codes, like, lambda c: _d.as_codes(c, "codes")[0]))
    t = _as_lut(lut)
    nbits = 4 if t.shape[2] == 16 else 8
    c = _check_codes(codes, t.shape[1], nbits)
    return _d.kernel("pq", "adc_distances", backend, lut, codes)(t, c)


def adc_topk(lut: Any, codes: Any, k: int, *, largest: bool = False,
             backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The k smallest (``largest=True``: largest) ``adc_distances`` per query without the full
    matrix: ``(float32 (nq, k), int64 (nq, k))``, best first, ties by smaller index."""
    if _d.choose_backend(backend, lut, codes) == "cuda" and _is_dev(lut, codes):
        like = lut if _is_dev(lut) else codes
        _device_finite(lut, "lut")
        t = _on_device(lut, like, _as_lut)
        c = _on_device(codes, like, lambda a: _d.as_codes(a, "codes")[0])
        k = _d.check_k(k, int(c.shape[0]))
        return _cuda_ops().adc_topk(t, c, k, bool(largest))
    t = _as_lut(lut)
    nbits = 4 if t.shape[2] == 16 else 8
    c = _check_codes(codes, t.shape[1], nbits)
    k = _d.check_k(k, c.shape[0])
    return _d.kernel("pq", "adc_topk", backend, lut, codes)(t, c, k, bool(largest))


@dataclass(frozen=True)
class FastScanCodes:
    """4-bit PQ codes packed in faiss's fast-scan block layout (``IndexPQFastScan.codes``):
    blocks of ``bbs`` = 32 vectors, sub-quantizer pairs, 32 bytes per pair and block."""

    packed: np.ndarray  # uint8, ceil(n / 32) * 32 * ceil(m / 2) ... bytes
    n: int
    m: int
    bbs: int = 32

    def __len__(self) -> int:
        return self.n


class ProductQuantizer:
    """A product quantizer: ``m`` sub-quantizers of ``2**nbits`` centroids over ``dim // m``
    dimensions each.

    Parameters
    ----------
    dim : int
        Vector dimension, divisible by ``m``.
    m : int
        Number of sub-quantizers.
    nbits : {4, 8}
        Bits per sub-quantizer code.
    metric : {"l2", "ip"}
        Distance used by ``search``/``lookup_table`` (centroids are always L2-trained, as in faiss).
    """

    def __init__(self, dim: int, m: int, nbits: int = 8, *, metric: str = "l2"):
        self.dim = _positive_int(dim, "dim")
        self.m = _positive_int(m, "m")
        self.nbits = _d.as_int(nbits, "nbits")
        if self.nbits not in (4, 8):
            raise ValueError(f"nbits must be 4 or 8, got {self.nbits}")
        if metric not in ("l2", "ip"):
            raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
        if self.dim % self.m:
            raise ValueError(f"dim ({self.dim}) must be divisible by m ({self.m})")
        self.metric = metric
        self.dsub = self.dim // self.m
        self.ksub = 1 << self.nbits
        self.code_size = (self.m * self.nbits + 7) // 8
        self._centroids: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        state = "trained" if self.is_trained else "untrained"
        return (f"ProductQuantizer(dim={self.dim}, m={self.m}, nbits={self.nbits}, "
                f"metric={self.metric!r}, {state})")

    # ---- codebook ----------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self._centroids is not None

    @property
    def centroids(self) -> np.ndarray:
        """float32 (m, 2**nbits, dim // m); raises if the quantizer is not trained."""
        return self._trained_centroids()

    @centroids.setter
    def centroids(self, value: Any) -> None:
        arr, _ = _d.as_float(value, "centroids", 3, finite=True)
        want = (self.m, self.ksub, self.dsub)
        if arr.shape != want:
            raise ValueError(f"centroids must have shape {want}, got {arr.shape}")
        self._centroids = arr.copy()

    def _trained_centroids(self) -> np.ndarray:
        if self._centroids is None:
            raise RuntimeError("this ProductQuantizer is not trained: call fit() or set centroids")
        return self._centroids

    def _vectors(self, x: Any, name: str) -> np.ndarray:
        arr, _ = _d.as_float(x, name, 2, finite=True)
        if arr.shape[1] != self.dim:
            raise ValueError(f"{name} must have {self.dim} columns, got shape {arr.shape}")
        return arr

    def fit(self, x: Any, *, iterations: int = 25, seed: int = 0,
            max_samples: Optional[int] = None, backend: Optional[str] = None) -> "ProductQuantizer":
        """Train the codebooks with k-means per sub-space (Lloyd iterations from ``2**nbits``
        distinct random training vectors; empty clusters are re-seeded by splitting the largest).

        At most ``max_samples`` vectors are used (default ``256 * 2**nbits``, as faiss), drawn with
        ``seed``. Training data must be finite and hold at least ``2**nbits`` vectors.
        """
        if _d.choose_backend(backend, x) == "cuda" and _is_dev(x):
            return self._fit_device(x, iterations, seed, max_samples)
        arr = self._vectors(x, "x")
        iterations = _d.as_int(iterations, "iterations")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        seed = _d.as_int(seed, "seed")
        n = arr.shape[0]
        if n < self.ksub:
            raise ValueError(f"x must hold at least 2**nbits = {self.ksub} training vectors, got {n}")
        limit = 256 * self.ksub if max_samples is None else _positive_int(max_samples, "max_samples")
        rng = np.random.default_rng(seed)
        if n > limit:
            arr = arr[np.sort(rng.choice(n, size=limit, replace=False))]
        init = np.empty((self.m, self.ksub, self.dsub), np.float32)
        for s in range(self.m):
            rows = rng.choice(arr.shape[0], size=self.ksub, replace=False)
            init[s] = arr[rows, s * self.dsub:(s + 1) * self.dsub]
        train = _d.kernel("pq", "train", backend)
        self._centroids = np.ascontiguousarray(train(np.ascontiguousarray(arr), init, self.nbits, iterations))
        return self

    def _fit_device(self, x: Any, iterations: Any, seed: Any, max_samples: Any) -> "ProductQuantizer":
        """fit() for a CUDA array x: the same sample and initial centroids as the CPU path (the
        same generator draws), Lloyd iterations on the GPU; the centroids come back to the host."""
        ops = _cuda_ops()
        iterations = _d.as_int(iterations, "iterations")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        seed = _d.as_int(seed, "seed")
        shape = tuple(int(v) for v in x.shape)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} columns, got shape {shape}")
        _device_finite(x, "x")
        n = shape[0]
        if n < self.ksub:
            raise ValueError(f"x must hold at least 2**nbits = {self.ksub} training vectors, got {n}")
        limit = 256 * self.ksub if max_samples is None else _positive_int(max_samples, "max_samples")
        rng = np.random.default_rng(seed)
        arr = _framework_array(x)
        if n > limit:
            arr = _take_rows(arr, np.sort(rng.choice(n, size=limit, replace=False)))
        rows = [rng.choice(int(arr.shape[0]), size=self.ksub, replace=False) for _ in range(self.m)]
        init = np.empty((self.m, self.ksub, self.dsub), np.float32)
        for s in range(self.m):
            sub = ops.to_host(_take_rows(arr, rows[s]))
            init[s] = sub[:, s * self.dsub:(s + 1) * self.dsub]
        cent = ops.train(arr, ops.to_device_like(init, arr), self.nbits, iterations)
        self._centroids = np.ascontiguousarray(ops.to_host(cent), dtype=np.float32)
        return self

    # ---- codes -------------------------------------------------------------------------------
    def encode(self, x: Any, *, backend: Optional[str] = None) -> np.ndarray:
        """uint8 codes (n, ceil(m * nbits / 8)), byte-identical to faiss's ``compute_codes``."""
        cent = self._trained_centroids()
        if _d.choose_backend(backend, x) == "cuda" and _is_dev(x):
            _device_finite(x, "x")
            ops = _cuda_ops()
            return ops.encode(x, ops.to_device_like(cent, x), self.nbits)
        arr = self._vectors(x, "x")
        return _d.kernel("pq", "encode", backend, x)(arr, cent, self.nbits)

    def decode(self, codes: Any, *, backend: Optional[str] = None) -> np.ndarray:
        """float32 (n, dim): each sub-vector replaced by its centroid."""
        cent = self._trained_centroids()
        if _d.choose_backend(backend, codes) == "cuda" and _is_dev(codes):
            ops = _cuda_ops()
            return ops.decode(codes, ops.to_device_like(cent, codes), self.nbits)
        c = _check_codes(codes, self.m, self.nbits)
        return _d.kernel("pq", "decode", backend, codes)(c, cent, self.nbits)

    def lookup_table(self, queries: Any, *, backend: Optional[str] = None) -> np.ndarray:
        """float32 (nq, m, 2**nbits): squared L2 distance ("l2") or inner product ("ip") of each
        query sub-vector with each centroid."""
        cent = self._trained_centroids()
        if _d.choose_backend(backend, queries) == "cuda" and _is_dev(queries):
            _device_finite(queries, "queries")
            ops = _cuda_ops()
            return ops.distance_tables(queries, ops.to_device_like(cent, queries), self.nbits, self.metric == "ip")
        q = self._vectors(queries, "queries")
        return _d.kernel("pq", "distance_tables", backend, queries)(q, cent, self.nbits, self.metric == "ip")

    # ---- search ------------------------------------------------------------------------------
    def search(self, queries: Any, codes: Union[Any, FastScanCodes], k: int, *, rerank: int = 0,
               backend: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
        """k nearest codes per query: ``(float32 (nq, k), int64 (nq, k))``.

        ``codes`` as uint8 rows: exact ADC, the same distances as faiss ``IndexPQ.search``.
        ``codes`` as :class:`FastScanCodes` (from :meth:`pack_fastscan`): the fast-scan kernel,
        the same distances as faiss ``IndexPQFastScan``; ``rerank > k`` re-scores that many best
        fast-scan candidates with the exact float tables and returns exact distances.
        """
        data = codes.packed if isinstance(codes, FastScanCodes) else codes
        if _d.choose_backend(backend, queries, data) == "cuda" and _is_dev(queries, data):
            return self._search_device(queries, codes, k, rerank)
        lut = self.lookup_table(queries, backend=backend)
        largest = self.metric == "ip"
        if isinstance(codes, FastScanCodes):
            return self._search_fastscan(lut, codes, k, rerank, backend)
        if _d.as_int(rerank, "rerank"):
            raise ValueError("rerank applies to fast-scan codes (pack_fastscan) only")
        return adc_topk(lut, codes, k, largest=largest, backend=backend)

    def _search_device(self, queries: Any, codes: Union[Any, FastScanCodes], k: int, rerank: Any):
        """search() when the queries or the codes are CUDA arrays (results on that device)."""
        ops = _cuda_ops()
        data = codes.packed if isinstance(codes, FastScanCodes) else codes
        like = queries if _is_dev(queries) else data
        q = _on_device(queries, like, lambda a: self._vectors(a, "queries"))
        lut = self.lookup_table(q, backend="cuda")
        largest = self.metric == "ip"
        rerank = _d.as_int(rerank, "rerank")
        if not isinstance(codes, FastScanCodes):
            if rerank:
                raise ValueError("rerank applies to fast-scan codes (pack_fastscan) only")
            c = _on_device(codes, like, lambda a: _check_codes(a, self.m, self.nbits))
            return ops.adc_topk(lut, c, _d.check_k(k, int(c.shape[0])), largest)
        if self.nbits != 4:
            raise ValueError("fast-scan search needs a 4-bit quantizer")
        if codes.m != self.m:
            raise ValueError(f"packed codes have m={codes.m}, the quantizer m={self.m}")
        k = _d.check_k(k, codes.n)
        if rerank and rerank <= k:
            raise ValueError(f"rerank must be 0 or > k ({k}), got {rerank}")
        packed = _on_device(codes.packed, like, lambda a: _d.as_codes(a, "packed", ndim=1)[0])
        if not rerank:
            return ops.fastscan_topk(lut, packed, codes.n, self.m, k, largest)
        r = min(rerank, codes.n)
        _, cand = ops.fastscan_topk(lut, packed, codes.n, self.m, r, largest)
        return ops.fastscan_rerank(lut, packed, codes.n, self.m, cand, k, largest)

    def pack_fastscan(self, codes: Any, *, backend: Optional[str] = None) -> FastScanCodes:
        """Pack 4-bit codes into faiss's fast-scan block layout (byte-identical to
        ``IndexPQFastScan.codes``)."""
        if self.nbits != 4:
            raise ValueError("pack_fastscan needs 4-bit codes (nbits=4)")
        if _d.choose_backend(backend, codes) == "cuda" and _is_dev(codes):
            packed = _cuda_ops().pack_fastscan(codes, self.m)
            return FastScanCodes(packed=packed, n=int(codes.shape[0]), m=self.m)
        c = _check_codes(codes, self.m, 4)
        packed = _d.kernel("pq", "pack_fastscan", backend, codes)(c, self.m)
        return FastScanCodes(packed=packed, n=c.shape[0], m=self.m)

    def _search_fastscan(self, lut, packed: FastScanCodes, k, rerank, backend):
        if self.nbits != 4:
            raise ValueError("fast-scan search needs a 4-bit quantizer")
        if packed.m != self.m:
            raise ValueError(f"packed codes have m={packed.m}, the quantizer m={self.m}")
        k = _d.check_k(k, packed.n)
        rerank = _d.as_int(rerank, "rerank")
        largest = self.metric == "ip"
        if rerank and rerank <= k:
            raise ValueError(f"rerank must be 0 or > k ({k}), got {rerank}")
        fastscan = _d.kernel("pq", "fastscan_topk", backend)
        if not rerank:
            return fastscan(lut, packed.packed, packed.n, self.m, k, largest)
        r = min(rerank, packed.n)
        _, cand = fastscan(lut, packed.packed, packed.n, self.m, r, largest)
        if _d.choose_backend(backend) == "cuda":  # the same re-scoring in one kernel call
            return _cuda_ops().fastscan_rerank(lut, packed.packed, packed.n, self.m, cand, k, largest)
        codes = _d.kernel("pq", "unpack_fastscan", backend)(packed.packed, packed.n, self.m)
        # exact ADC of each query's r candidates only (never the full nq x n matrix)
        exact = np.empty(cand.shape, np.float32)
        for i in range(cand.shape[0]):
            exact[i] = adc_distances(lut[i:i + 1], codes[cand[i]], backend=backend)[0]
        key = -exact if largest else exact
        order = np.lexsort((cand, key), axis=1)[:, :k]
        return np.take_along_axis(exact, order, 1), np.take_along_axis(cand, order, 1)

    def sdc_distances(self, codes_a: Any, codes_b: Any, *, backend: Optional[str] = None) -> np.ndarray:
        """Symmetric distances between two sets of codes (both sides quantized; l2 only):
        ``sum_i ||c_i[a_i] - c_i[b_i]||^2``, float32 (na, nb)."""
        if self.metric != "l2":
            raise ValueError("sdc_distances is defined for metric='l2' only")
        cent = self._trained_centroids()
        a = _check_codes(codes_a, self.m, self.nbits, "codes_a")
        b = _check_codes(codes_b, self.m, self.nbits, "codes_b")
        diff = cent[:, :, None, :] - cent[:, None, :, :]
        table = np.einsum("mijd,mijd->mij", diff, diff, dtype=np.float32)  # (m, ksub, ksub)
        idx = _unpack_indices(a, self.m, self.nbits)  # (na, m)
        lut = np.ascontiguousarray(table[np.arange(self.m)[None, :], idx])  # (na, m, ksub)
        return adc_distances(lut, b, backend=backend)

    # ---- faiss interop -----------------------------------------------------------------------
    @classmethod
    def from_faiss(cls, obj: Any) -> "ProductQuantizer":
        """From a faiss ``ProductQuantizer``, ``IndexPQ`` or ``IndexPQFastScan`` (its centroids,
        and the index's metric)."""
        import faiss

        pq = getattr(obj, "pq", obj)
        if not hasattr(pq, "centroids") or not hasattr(pq, "M"):
            raise TypeError(f"expected a faiss ProductQuantizer, IndexPQ or IndexPQFastScan, got {type(obj).__name__}")
        metric = "l2"
        if hasattr(obj, "metric_type"):
            if obj.metric_type == faiss.METRIC_INNER_PRODUCT:
                metric = "ip"
            elif obj.metric_type != faiss.METRIC_L2:
                raise ValueError("only METRIC_L2 and METRIC_INNER_PRODUCT indexes are supported")
        self = cls(int(pq.d), int(pq.M), int(pq.nbits), metric=metric)
        cent = faiss.vector_to_array(pq.centroids)
        if cent.size:
            self.centroids = cent.reshape(self.m, self.ksub, self.dsub)
        return self

    def to_faiss(self, *, fastscan: bool = False):
        """A trained, empty faiss ``IndexPQ`` (``IndexPQFastScan`` with ``fastscan=True``) holding
        these centroids; add codes with ``index.sa_decode``/``index.add`` as usual."""
        import faiss

        cent = self._trained_centroids()
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        if fastscan:
            if self.nbits != 4:
                raise ValueError("IndexPQFastScan needs nbits=4")
            index = faiss.IndexPQFastScan(self.dim, self.m, 4, metric)
        else:
            index = faiss.IndexPQ(self.dim, self.m, self.nbits, metric)
        faiss.copy_array_to_vector(cent.ravel(), index.pq.centroids)
        index.is_trained = True
        return index


def _unpack_indices(codes: np.ndarray, m: int, nbits: int) -> np.ndarray:
    """(n, m) int64 sub-quantizer indices of packed codes."""
    if nbits == 8:
        return codes[:, :m].astype(np.int64)
    lo = codes & 0x0F
    hi = codes >> 4
    return np.stack([lo, hi], axis=2).reshape(codes.shape[0], -1)[:, :m].astype(np.int64)
