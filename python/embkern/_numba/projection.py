"""Numba fallback for the projection kernels (same internal API as ``embkern._core.projection``).

Inputs arrive validated (C-contiguous, exact dtypes) from ``embkern.projection``. Every result is
bit-identical to the compiled path:

* the random matrix and FastRP's initial vectors come from the same counter-based hash
  (``csrc/projection/srp_rng.hpp``: SplitMix64's finaliser on uint64, wrapping multiplies), and the
  binomial table is computed once in Python and shared by both backends;
* the float work is done in the same order with the same operations: per output, a sequential
  ``acc = acc + x * v`` (no fast-math, so LLVM never fuses multiply and add), FastRP norms in 8
  fixed lanes folded ``((0+1)+(2+3))+((4+5)+(6+7))``, then a division by the norm.

The sparse-input projection generates R's columns on the fly, or, when X has at least as many
entries as features, reads them from the compiled path's table (``_packed_fill``), with the same
numbers either way.
Threads: the caller sets ``numba.set_num_threads``; blocks of rows/nodes are the parallel unit.
"""
import numpy as np
from numba import njit, prange

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G1 = np.uint64(0x9E3779B97F4A7C15)
_G2 = np.uint64(0xD1B54A32D192ED03)
_G3 = np.uint64(0xA24BAED4963EE407)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S63 = np.uint64(63)
_S16 = np.uint64(16)
_MASK16 = np.uint64(0xFFFF)
_TWO_M53 = 2.0 ** -53
_INIT_PLUS = np.uint64(10923)
_INIT_MINUS = np.uint64(21846)
_BLOCK = 1024


@njit(inline="always", **_JIT)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", **_JIT)
def _hash3(key, a, b):
    return _mix64(key ^ (np.uint64(a) * _G1) ^ (np.uint64(b) * _G2))


@njit(inline="always", **_JIT)
def _stream_key(seed, s):
    return _mix64(seed ^ (np.uint64(s) * _G3))


@njit(**_JIT)
def _column(kc, kp, ks, k, mode, thr53, cdf, j, idx, neg):
    c = 0
    if mode == 0:
        for i in range(k):
            if (_hash3(kc, j, i) >> _S11) < thr53:
                idx[c] = i
                c += 1
    else:
        u = np.float64(_hash3(kc, j, 0) >> _S11) * _TWO_M53
        want = 0
        while u >= cdf[want]:
            want += 1
        for t in range(k - want, k):
            h = _hash3(kp, j, t)
            r = np.int32(((h >> _S32) * np.uint64(t + 1)) >> _S32)
            for q in range(c):
                if idx[q] == r:
                    r = np.int32(t)
                    break
            q = c
            c += 1
            while q > 0 and idx[q - 1] > r:
                idx[q] = idx[q - 1]
                q -= 1
            idx[q] = r
    for q in range(c):
        neg[q] = np.uint8(_hash3(ks, j, idx[q]) >> _S63)
    return c


@njit(**_PJIT)
def _srp_fill(seed, d, k, mode, thr53, cdf, indptr, idx, neg, count_only):
    kc = _stream_key(seed, 1)
    kp = _stream_key(seed, 2)
    ks = _stream_key(seed, 3)
    room = k if mode == 0 else cdf.shape[0] - 1
    room = max(room, 1)
    nb = (d + 8191) // 8192
    for b in prange(nb):
        bi = np.empty(room, np.int32)
        bn = np.empty(room, np.uint8)
        for j in range(b * 8192, min(d, (b + 1) * 8192)):
            c = _column(kc, kp, ks, k, mode, thr53, cdf, j, bi, bn)
            if count_only:
                indptr[j + 1] = c
            else:
                o = indptr[j]
                for q in range(c):
                    idx[o + q] = bi[q]
                    neg[o + q] = bn[q]


def srp_columns(seed, d, k, mode, thr53, cdf):
    seed = np.uint64(seed)
    thr53 = np.uint64(thr53)
    indptr = np.zeros(d + 1, np.int64)
    empty_i = np.empty(0, np.int32)
    empty_n = np.empty(0, np.uint8)
    _srp_fill(seed, d, k, mode, thr53, cdf, indptr, empty_i, empty_n, True)
    np.cumsum(indptr, out=indptr)
    idx = np.empty(indptr[-1], np.int32)
    neg = np.empty(indptr[-1], np.uint8)
    _srp_fill(seed, d, k, mode, thr53, cdf, indptr, idx, neg, False)
    return indptr, idx, neg


@njit(**_PJIT)
def _csr_dense(x, indptr, indices, values, k, out):
    """16 rows at a time, transposed to [d][16] so one entry of C updates 16 rows (the compiled
    kernels' layout; each lane is still the plain sequential sum of its row)."""
    n, d = x.shape
    L = 16
    nb = (n + L - 1) // L
    zero = values.dtype.type(0)
    for b in prange(nb):
        r0 = b * L
        nl = min(L, n - r0)
        xt = np.zeros((d, L), x.dtype)
        for lane in range(nl):
            xr = x[r0 + lane]
            for j in range(d):
                xt[j, lane] = xr[j]
        acc = np.empty(L, x.dtype)
        for i in range(k):
            for lane in range(L):
                acc[lane] = zero
            for e in range(indptr[i], indptr[i + 1]):
                v = values[e]
                xj = xt[indices[e]]
                for lane in range(L):
                    acc[lane] = acc[lane] + xj[lane] * v
            for lane in range(nl):
                out[r0 + lane, i] = acc[lane]


def csr_dense(x, indptr, indices, values, k):
    out = np.empty((x.shape[0], k), x.dtype)
    _csr_dense(x, indptr, indices, values, k, out)
    return out


@njit(**_PJIT)
def _csr_sparse(xptr, xind, xval, n, cptr, cind, cval, out):
    nb = (n + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        for r in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            y = out[r]
            y[:] = 0
            for e in range(xptr[r], xptr[r + 1]):
                j = xind[e]
                v = xval[e]
                for c in range(cptr[j], cptr[j + 1]):
                    y[cind[c]] += v * cval[c]


def csr_sparse(xptr, xind, xval, n, cptr, cind, cval, k):
    out = np.empty((n, k), xval.dtype)
    _csr_sparse(xptr, xind, xval, n, cptr, cind, cval, out)
    return out


@njit(**_PJIT)
def _srp_sparse(xptr, xind, xval, n, seed, k, mode, thr53, cdf, scale, empty_below, out):
    """The compiled srp_sparse: R's columns generated on the fly; in binomial mode a first pass
    keeps the entries whose column is not empty (an integer test equal to u >= cdf[0])."""
    kc = _stream_key(seed, 1)
    kp = _stream_key(seed, 2)
    ks = _stream_key(seed, 3)
    room = max(k if mode == 0 else cdf.shape[0] - 1, 1)
    nb = (n + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        idx = np.empty(room, np.int32)
        neg = np.empty(room, np.uint8)
        for r in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            y = out[r]
            y[:] = 0
            for e in range(xptr[r], xptr[r + 1]):
                j = xind[e]
                if mode == 1 and (_hash3(kc, j, 0) >> _S11) < empty_below:
                    continue
                c = _column(kc, kp, ks, k, mode, thr53, cdf, j, idx, neg)
                v = xval[e]
                for q in range(c):
                    y[idx[q]] += v * (-scale if neg[q] else scale)


@njit(**_PJIT)
def _packed_fill(seed, d, k, cdf, bits, code):
    """The compiled kernel's table of R's columns (projection_kernels.hpp, SrpPacked): bit j % 32
    of bits[j // 32] set when column j has entries; code[j] its count (1, 2; 3: more) in bits
    0-1, then up to two entries (negative << 14 | row) of 15 bits each."""
    kc = _stream_key(seed, 1)
    kp = _stream_key(seed, 2)
    ks = _stream_key(seed, 3)
    room = max(cdf.shape[0] - 1, 1)
    nb = (d + 8191) // 8192
    for b in prange(nb):
        bi = np.empty(room, np.int32)
        bn = np.empty(room, np.uint8)
        for q in range(b * 256, min(bits.shape[0], (b + 1) * 256)):
            word = 0
            for j in range(32 * q, min(d, 32 * q + 32)):
                c = _column(kc, kp, ks, k, 1, np.uint64(0), cdf, j, bi, bn)
                cj = min(c, 3)
                if c <= 2:
                    for e in range(c):
                        cj |= ((np.int64(bn[e]) << 14) | np.int64(bi[e])) << (2 + 15 * e)
                code[j] = cj
                if c > 0:
                    word |= 1 << (j & 31)
            bits[q] = word


@njit(**_PJIT)
def _srp_packed(xptr, xind, xval, n, seed, k, cdf, scale, bits, code, out):
    """srp_sparse reading R's columns from the table, as the compiled srp_packed: a branch-free
    first pass keeps the entries whose column is not empty (a branch there would mispredict on
    about a fifth of them), then those are added in stored order; columns of three or more
    entries are generated. With the hits' codes loaded in a loop of their own, 1.8x faster than
    generating every column on the fly (200,000 x 2^20, 1 thread)."""
    kc = _stream_key(seed, 1)
    kp = _stream_key(seed, 2)
    ks = _stream_key(seed, 3)
    room = max(cdf.shape[0] - 1, 1)
    nb = (n + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        idx = np.empty(room, np.int32)
        neg = np.empty(room, np.uint8)
        hit = np.empty(64, np.int64)
        hcode = np.empty(64, np.uint32)
        for r in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            y = out[r]
            y[:] = 0
            e0 = xptr[r]
            e1 = xptr[r + 1]
            if hit.shape[0] < e1 - e0:
                hit = np.empty(e1 - e0, np.int64)
                hcode = np.empty(e1 - e0, np.uint32)
            m = 0
            for e in range(e0, e1):
                j = xind[e]
                hit[m] = e
                m += (bits[j >> 5] >> (j & 31)) & 1
            # the hits' codes first, in a loop of independent loads (no branch waits on them)
            for q in range(m):
                hcode[q] = code[xind[hit[q]]]
            for q in range(m):
                e = hit[q]
                j = xind[e]
                cj = np.int64(hcode[q])
                v = xval[e]
                if (cj & 3) == 3:
                    c = _column(kc, kp, ks, k, 1, np.uint64(0), cdf, j, idx, neg)
                    for t in range(c):
                        y[idx[t]] += v * (-scale if neg[t] else scale)
                    continue
                y[(cj >> 2) & 0x3FFF] += v * (-scale if (cj >> 16) & 1 else scale)
                if cj & 2:
                    y[(cj >> 17) & 0x3FFF] += v * (-scale if (cj >> 31) & 1 else scale)


# The last table built, for the next call with the same generator (as the compiled path keeps it);
# one (key, table) pair, replaced whole, so concurrent callers never see a key with another table.
_packed_last = [None]


def _packed_table(seed, d, k, cdf):
    key = (int(seed), int(d), int(k), cdf.tobytes())
    last = _packed_last[0]
    if last is None or last[0] != key:
        bits = np.empty((d + 31) // 32, np.uint32)
        code = np.empty(d, np.uint32)
        _packed_fill(np.uint64(seed), d, k, cdf, bits, code)
        last = (key, (bits, code))
        _packed_last[0] = last
    return last[1]


def srp_sparse(xptr, xind, xval, n, d, seed, k, mode, thr53, cdf, scale):
    out = np.empty((n, k), xval.dtype)
    scale = xval.dtype.type(scale)
    # As the compiled path: R's columns computed once into a table when X has at least as many
    # entries as R has columns (binomial mode, at most 2^14 components: a packed entry's 14 bits).
    if mode == 1 and k <= 1 << 14 and n > 0 and xptr[n] >= d:
        bits, code = _packed_table(seed, d, k, cdf)
        _srp_packed(xptr, xind, xval, n, np.uint64(seed), k, cdf, scale, bits, code, out)
        return out
    empty_below = np.uint64(np.ceil(cdf[0] * 2.0**53)) if mode == 1 else np.uint64(0)
    _srp_sparse(xptr, xind, xval, n, np.uint64(seed), k, mode, np.uint64(thr53), cdf, scale,
                empty_below, out)
    return out


@njit(inline="always", **_JIT)
def _norm8(a, dim):
    s = np.zeros(8, np.float32)
    d8 = dim - dim % 8
    for t in range(0, d8, 8):
        for lane in range(8):
            s[lane] = s[lane] + a[t + lane] * a[t + lane]
    for t in range(d8, dim):
        s[t - d8] = s[t - d8] + a[t] * a[t]
    return np.sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])))


@njit(**_PJIT)
def _fastrp_init(n, dim, node_scale, seed, self_influence, prev, out):
    key = _stream_key(seed, 4)
    nb = (n + 2047) // 2048
    for b in prange(nb):
        for u in range(b * 2048, min(n, (b + 1) * 2048)):
            c = np.float32(np.sqrt(3.0 / dim) * node_scale[u]) if node_scale.shape[0] else np.float32(np.sqrt(3.0 / dim))
            r = prev[u]
            for t4 in range((dim + 3) // 4):
                h = _hash3(key, u, t4)
                for s in range(4):
                    t = t4 * 4 + s
                    if t < dim:
                        f = (h >> (_S16 * np.uint64(s))) & _MASK16
                        if f < _INIT_PLUS:
                            r[t] = c
                        elif f < _INIT_MINUS:
                            r[t] = -c
                        else:
                            r[t] = np.float32(0.0)
            nrm = _norm8(r, dim) if self_influence != 0.0 else np.float32(0.0)
            o = out[u]
            for t in range(dim):
                o[t] = self_influence * (r[t] / nrm) if nrm > 0 else np.float32(0.0)


@njit(**_PJIT)
def _fastrp_step(indptr, indices, w, weighted, n, dim, prev, nxt, wi, out):
    nb = (n + 2047) // 2048
    for b in prange(nb):
        acc = np.empty(dim, np.float32)
        for u in range(b * 2048, min(n, (b + 1) * 2048)):
            acc[:] = 0
            for e in range(indptr[u], indptr[u + 1]):
                pm = prev[indices[e]]
                if weighted:
                    wv = w[e]
                    for t in range(dim):
                        acc[t] = acc[t] + wv * pm[t]
                else:
                    for t in range(dim):
                        acc[t] = acc[t] + pm[t]
            nrm = _norm8(acc, dim)
            nx = nxt[u]
            o = out[u]
            if nrm > 0:
                for t in range(dim):
                    nx[t] = acc[t] / nrm
            else:
                nx[:] = 0
            for t in range(dim):
                o[t] = o[t] + wi * nx[t]


def fastrp(indptr, indices, weights, n, dim, node_scale, seed, iteration_weights, self_influence):
    out = np.empty((n, dim), np.float32)
    prev = np.empty((n, dim), np.float32)
    si = np.float32(self_influence)
    _fastrp_init(n, dim, node_scale, np.uint64(seed), si, prev, out)
    if len(iteration_weights) == 0:
        return out
    nxt = np.empty((n, dim), np.float32)
    weighted = weights is not None
    w = weights if weighted else np.empty(0, np.float32)
    for wi in iteration_weights:
        _fastrp_step(indptr, indices, w, weighted, n, dim, prev, nxt, np.float32(wi), out)
        prev, nxt = nxt, prev
    return out
