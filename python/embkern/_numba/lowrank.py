"""Numba fallback for the low-rank kernels (same internal API as ``embkern._core.lowrank``).

Inputs arrive validated from ``embkern.lowrank``: 2-D C-contiguous x, weights of x's dtype
(float32 or float64), CSR support canonical (int64 indptr, int32 sorted unique indices), ids int64.

Approach
* The dense products go through ``np.dot`` inside the jitted code, i.e. the BLAS that Numba binds
  (scipy's); each call runs under a BLAS thread limit equal to the Numba thread count embkern set
  (threadpoolctl, when installed), so embkern's thread setting holds here too. BLAS splits rows
  and columns, never the inner dimension, so results do not depend on the thread count.
* Multi-adapter LoRA groups rows by adapter with a counting sort (segments, as the compiled path
  and Punica's SGMV), gathers each segment once and runs two small GEMMs per adapter, on one BLAS
  thread (a thread pool's start-up costs more than these GEMMs on a busy machine).
* The sparse part is the compiled path's SpMM: 16 tokens at a time (8 in float64) transposed to
  [in][16], each output row summing its non-zeros' lines in four interleaved partial sums,
  parallel over token blocks (prange).
"""
import contextlib

import numba
import numpy as np
from numba import njit, prange

_JIT = dict(cache=True, nogil=True)

_controller = None


def _blas_limit(threads=None):
    """Limit the BLAS that np.dot calls inside Numba to `threads` (default: Numba's count)."""
    global _controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot binds)

        _controller = ThreadpoolController()
    return _controller.limit(limits=threads or numba.get_num_threads(), user_api="blas")


@njit(**_JIT)
def _lora(x, w, a, b, scale, bias, has_bias):
    y = np.dot(x, w.T)
    t = np.dot(x, a.T) * scale
    y += np.dot(t, b.T)
    if has_bias:
        y += bias
    return y


@njit(**_JIT)
def _lowrank(x, u, v, s, has_s, bias, has_bias):
    t = np.dot(x, v.T)
    if has_s:
        t *= s
    y = np.dot(t, u.T)
    if has_bias:
        y += bias
    return y


@njit(parallel=True, **_JIT)
def _spmm_add(x, indptr, indices, values, y, sw):
    """y += x S^T, S in CSR (rows = outputs)."""
    m, k = x.shape
    n = y.shape[1]
    nb = 128
    nchunks = (m + sw - 1) // sw
    for c in prange(nchunks):
        m0 = c * sw
        cw = min(sw, m - m0)
        xt = np.zeros((k, sw), dtype=x.dtype)
        for l in range(cw):
            for kk in range(k):
                xt[kk, l] = x[m0 + l, kk]
        out = np.empty((nb, sw), dtype=x.dtype)
        s = np.empty((4, sw), dtype=x.dtype)
        for n0 in range(0, n, nb):
            n1 = min(n, n0 + nb)
            for r in range(n0, n1):
                s[:] = 0
                p = indptr[r]
                p1 = indptr[r + 1]
                while p + 4 <= p1:
                    for u in range(4):
                        v = values[p + u]
                        row = xt[indices[p + u]]
                        for l in range(sw):
                            s[u, l] += v * row[l]
                    p += 4
                while p < p1:
                    v = values[p]
                    row = xt[indices[p]]
                    for l in range(sw):
                        s[0, l] += v * row[l]
                    p += 1
                for l in range(sw):
                    out[r - n0, l] = (s[0, l] + s[1, l]) + (s[2, l] + s[3, l])
            for l in range(cw):
                for r in range(n0, n1):
                    y[m0 + l, r] += out[r - n0, l]


@njit(**_JIT)
def _multi(x, w, has_w, a, b, ids, scales, bias, has_bias):
    m, k = x.shape
    nad, n = b.shape[0], b.shape[1]
    if has_w:
        y = np.dot(x, w.T)
        if has_bias:
            y += bias
    else:
        y = np.empty((m, n), dtype=x.dtype)
        for i in range(m):
            if ids[i] < 0:
                for j in range(n):
                    y[i, j] = bias[j] if has_bias else 0.0
    start = np.zeros(nad + 1, dtype=np.int64)
    for i in range(m):
        if ids[i] >= 0:
            start[ids[i] + 1] += 1
    for q in range(nad):
        start[q + 1] += start[q]
    order = np.empty(start[nad], dtype=np.int64)
    pos = start[:nad].copy()
    for i in range(m):
        q = ids[i]
        if q >= 0:
            order[pos[q]] = i
            pos[q] += 1
    # one gather buffer, one shrink and one expand buffer, sized for the largest segment and reused
    # by every adapter (the loop itself allocates nothing)
    seg = 0
    for q in range(nad):
        seg = max(seg, start[q + 1] - start[q])
    xa = np.empty((seg, k), dtype=x.dtype)
    t = np.empty((seg, a.shape[1]), dtype=x.dtype)
    d = np.empty((seg, n), dtype=x.dtype)
    for q in range(nad):
        s0, s1 = start[q], start[q + 1]
        if s0 == s1:
            continue
        cnt = s1 - s0
        for j in range(cnt):
            xa[j] = x[order[s0 + j]]
        np.dot(xa[:cnt], a[q].T, t[:cnt])
        t[:cnt] *= scales[q]
        np.dot(t[:cnt], b[q].T, d[:cnt])
        for j in range(cnt):
            row = order[s0 + j]
            if has_w:
                y[row] += d[j]
            elif has_bias:
                y[row] = d[j] + bias
            else:
                y[row] = d[j]
    return y


def _opt(v, dtype, n=0):
    return (v, True) if v is not None else (np.zeros(n, dtype=dtype), False)


def lora_linear(x, w, a, b, scale, bias):
    bias_, hb = _opt(bias, x.dtype)
    with _blas_limit():
        return _lora(x, w, a, b, x.dtype.type(scale), bias_, hb)


def lowrank_linear(x, u, v, s, bias):
    s_, hs = _opt(s, x.dtype)
    bias_, hb = _opt(bias, x.dtype)
    with _blas_limit():
        return _lowrank(x, u, v, s_, hs, bias_, hb)


def sparse_lowrank_linear(x, b, a, indptr, indices, values, bias):
    bias_, hb = _opt(bias, x.dtype)
    with _blas_limit():
        y = _lowrank(x, b, a, bias_[:0], False, bias_, hb)
    if values.size and y.size:
        _spmm_add(x, indptr, indices, values, y, 16 if x.dtype == np.float32 else 8)
    return y


def multi_lora_linear(x, w, a, b, ids, scales, bias):
    bias_, hb = _opt(bias, x.dtype)
    w_, hw = (w, True) if w is not None else (np.zeros((0, 0), dtype=x.dtype), False)
    with _blas_limit(1):  # per-adapter GEMMs are too small to share between BLAS threads
        return _multi(x, w_, hw, a, b, ids, scales, bias_, hb)
