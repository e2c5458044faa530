"""Numba fallback for the MUVERA FDE kernels (same internal API as ``embkern._core.fde``).

Inputs arrive validated from ``embkern.fde``. The random tables come from the same emulation of
libstdc++'s ``std::mt19937`` and its ``normal_distribution<float>``, ``uniform_int_distribution``
and ``bernoulli_distribution`` as the compiled driver (specs/fde.md §5), written here over a
uint64 array holding the 624-word state. The per-cloud encoder follows ``csrc/fde/kernel.hpp``
step for step and rounds identically: the sketch sums over the token coordinates in order in
float32 with separate multiply and add (no fast-math anywhere, so LLVM never contracts), blocks
add tokens in token order, documents divide by float counts, the AMS projection scatters each
partition's summed tokens with coordinates in order, fill picks the Hamming-nearest first token
of an occupied partition. Clouds are independent ``prange`` iterations, so results do not depend
on the thread count.
"""
import math

import numpy as np
from numba import njit, prange

_M32 = np.uint64(0xFFFFFFFF)


# ---- std::mt19937 ------------------------------------------------------------------------------
@njit(cache=False, nogil=True)
def _mt_new(seed):
    st = np.zeros(625, np.uint64)  # 624 state words, then the read position
    st[0] = np.uint64(seed) & _M32
    for i in range(1, 624):
        prev = st[i - 1]
        st[i] = (np.uint64(1812433253) * (prev ^ (prev >> np.uint64(30))) + np.uint64(i)) & _M32
    st[624] = np.uint64(624)
    return st


@njit(cache=False, nogil=True)
def _mt_next(st):
    if st[624] >= np.uint64(624):
        for i in range(624):
            y = (st[i] & np.uint64(0x80000000)) | (st[(i + 1) % 624] & np.uint64(0x7FFFFFFF))
            v = st[(i + 397) % 624] ^ (y >> np.uint64(1))
            if y & np.uint64(1):
                v ^= np.uint64(0x9908B0DF)
            st[i] = v
        st[624] = np.uint64(0)
    y = st[st[624]]
    st[624] += np.uint64(1)
    y ^= y >> np.uint64(11)
    y ^= (y << np.uint64(7)) & np.uint64(0x9D2C5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    y ^= y >> np.uint64(18)
    return y & _M32


@njit(cache=False, nogil=True)
def _canonical_f(st):
    u = np.float32(_mt_next(st)) / np.float32(4294967296.0)
    if u >= np.float32(1.0):
        u = np.float32(0.99999994)
    return u


@njit(cache=False, nogil=True)
def _bernoulli_half(st):
    s = np.float64(_mt_next(st))
    s = s + np.float64(_mt_next(st)) * 4294967296.0
    u = s / 18446744073709551616.0
    if u >= 1.0:
        u = 0.9999999999999999
    return u < 0.5


@njit(cache=False, nogil=True)
def _below(st, rng):
    r = np.uint64(rng)
    prod = _mt_next(st) * r
    low = prod & _M32
    if low < r:
        threshold = ((np.uint64(4294967296) - r) & _M32) % r
        while low < threshold:
            prod = _mt_next(st) * r
            low = prod & _M32
    return np.int32(prod >> np.uint64(32))


@njit(cache=False, nogil=True)
def _simhash_into(seed, d, k, out, col0, ld):
    """normal_distribution<float> draws, hyperplane by hyperplane, into out[i, col0 + j]."""
    st = _mt_new(seed)
    have = False
    saved = np.float32(0.0)
    two = np.float32(2.0)
    for j in range(k):
        for i in range(d):
            if have:
                v = saved
                have = False
            else:
                while True:
                    x = np.float32(np.float64(two * _canonical_f(st)) - 1.0)
                    y = np.float32(np.float64(two * _canonical_f(st)) - 1.0)
                    r2 = x * x + y * y
                    if not (r2 > np.float32(1.0) or r2 == np.float32(0.0)):
                        break
                mult = np.float32(math.sqrt(np.float32(np.float32(-2.0) * np.float32(math.log(r2))) / r2))
                saved = x * mult
                have = True
                v = y * mult
            out[i, col0 + j] = v * np.float32(1.0) + np.float32(0.0)


@njit(cache=False, nogil=True)
def _simhash_all(seed, reps, d, k):
    out = np.empty((d, reps * k), np.float32)
    for r in range(reps):
        _simhash_into((seed + r) & 0xFFFFFFFF, d, k, out, r * k, reps * k)
    return out


@njit(cache=False, nogil=True)
def _ams_all(seed, reps, d, p):
    col = np.empty((reps, d), np.int32)
    sign = np.empty((reps, d), np.float32)
    for r in range(reps):
        st = _mt_new((seed + r) & 0xFFFFFFFF)
        for i in range(d):
            col[r, i] = _below(st, p)
            sign[r, i] = np.float32(1.0) if _bernoulli_half(st) else np.float32(-1.0)
    return col, sign


@njit(cache=False, nogil=True)
def _count_sketch(seed, inner, final):
    idx = np.empty(inner, np.int32)
    sign = np.empty(inner, np.float32)
    st = _mt_new(seed & 0xFFFFFFFF)
    for i in range(inner):
        idx[i] = _below(st, final)
        sign[i] = np.float32(1.0) if _bernoulli_half(st) else np.float32(-1.0)
    return idx, sign


def simhash_matrices(seed, reps, d, k):
    return _simhash_all(int(seed), int(reps), int(d), int(k))


def ams_tables(seed, reps, d, p):
    return _ams_all(int(seed), int(reps), int(d), int(p))


def count_sketch(seed, inner_dim, final_dim):
    return _count_sketch(int(seed), int(inner_dim), int(final_dim))


# ---- encoding ----------------------------------------------------------------------------------
@njit(cache=False, nogil=True)
def _encode_one(x, n, d, reps, k, p, gauss, col, sign, document, fill, ams, fde):
    B = 1 << k
    M = reps * k
    parts = np.zeros((n, reps), np.int32)
    if k > 0:
        s = np.zeros(M, np.float32)
        for t in range(n):
            s[:] = np.float32(0.0)
            for i in range(d):
                a = x[t, i]
                for m in range(M):
                    s[m] = s[m] + a * gauss[i, m]
            for r in range(reps):
                code = 0
                for j in range(k):
                    code = (code << 1) | (1 if s[r * k + j] > np.float32(0.0) else 0)
                code ^= code >> 1
                code ^= code >> 2
                code ^= code >> 4
                code ^= code >> 8
                code ^= code >> 16
                parts[t, r] = code
    counts = np.zeros(B, np.float32)
    first = np.empty(B, np.int32)
    occ = np.empty(B, np.int32)
    agg = np.zeros((B, d) if ams else (1, 1), np.float32)
    for r in range(reps):
        base = r * B * p
        counts[:] = np.float32(0.0)
        first[:] = -1
        nocc = 0
        for t in range(n):
            b = parts[t, r]
            if first[b] < 0:
                first[b] = t
                occ[nocc] = b
                nocc += 1
                if ams:
                    agg[b, :] = np.float32(0.0)
            if ams:
                for i in range(d):
                    agg[b, i] = agg[b, i] + x[t, i]
            else:
                o = base + b * p
                for i in range(d):
                    fde[o + i] = fde[o + i] + x[t, i]
            counts[b] = counts[b] + np.float32(1.0)
        if ams:
            for q in range(nocc):
                b = occ[q]
                o = base + b * p
                for i in range(d):
                    c = o + col[r, i]
                    fde[c] = fde[c] + sign[r, i] * agg[b, i]
        if not document:
            continue
        for q in range(nocc):
            b = occ[q]
            o = base + b * p
            c = counts[b]
            for j in range(p):
                fde[o + j] = fde[o + j] / c
        if not fill or k == 0 or nocc == 0 or nocc == B:
            continue
        for b in range(B):
            if first[b] >= 0:
                continue
            target = b ^ (b >> 1)
            best = 64
            tok = -1
            for q in range(nocc):
                ob = occ[q]
                v = (ob ^ (ob >> 1)) ^ target
                dist = 0
                while v:
                    v &= v - 1
                    dist += 1
                if dist < best:
                    best = dist
                    tok = first[ob]
            o = base + b * p
            if ams:
                for j in range(p):
                    fde[o + j] = np.float32(0.0)
                for i in range(d):
                    c = o + col[r, i]
                    fde[c] = fde[c] + sign[r, i] * x[tok, i]
            else:
                for i in range(d):
                    fde[o + i] = x[tok, i]


@njit(cache=False, nogil=True)
def _finite(x):
    for v in x.ravel():
        if v - v != np.float32(0.0):
            return False
    return True


@njit(cache=False, nogil=True, parallel=True)
def _encode_batch(x, offsets, gauss, col, sign, fidx, fsign, reps, k, p, final_dim, document,
                  fill, ams, out, bad):
    batch = len(offsets) - 1
    d = x.shape[1]
    inner = reps * (1 << k) * p
    for c in prange(batch):
        lo = offsets[c]
        hi = offsets[c + 1]
        xc = x[lo:hi]
        if not _finite(xc):
            bad[c] = 1
            continue
        if final_dim > 0:
            fde = np.zeros(inner, np.float32)
        else:
            fde = out[c]  # out comes zeroed from np.zeros: no second pass over it
        _encode_one(xc, hi - lo, d, reps, k, p, gauss, col, sign, document, fill, ams, fde)
        if final_dim > 0:
            o = out[c]
            for i in range(inner):
                t = fidx[i]
                o[t] = o[t] + fsign[i] * fde[i]


def encode(x, offsets, gauss, ams_col, ams_sign, fp_idx, fp_sign, reps, k, p, final_dim,
           document, fill, ams):
    batch = len(offsets) - 1
    reps, k, p, final_dim = int(reps), int(k), int(p), int(final_dim)
    out_dim = final_dim if final_dim > 0 else reps * (1 << k) * p
    out = np.zeros((batch, out_dim), np.float32)
    if batch == 0:
        return out
    if k == 0:
        gauss = np.zeros((x.shape[1], 0), np.float32)
    col = ams_col if ams else np.zeros((reps, x.shape[1]), np.int32)
    sign = ams_sign if ams else np.zeros((reps, x.shape[1]), np.float32)
    fidx = fp_idx if final_dim > 0 else np.zeros(1, np.int32)
    fsign = fp_sign if final_dim > 0 else np.zeros(1, np.float32)
    bad = np.zeros(batch, np.uint8)
    _encode_batch(x, offsets, np.ascontiguousarray(gauss, np.float32), col, sign, fidx, fsign,
                  reps, k, p, final_dim, bool(document), bool(fill and document), bool(ams),
                  out, bad)
    if bad.any():
        raise ValueError(f"points contains NaN or inf (point cloud {int(np.argmax(bad))})")
    return out
