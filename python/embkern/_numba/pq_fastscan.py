"""Numba fallback for the 4-bit fast-scan kernels (same internal API and results as
``embkern._core.pq``'s ``pack_fastscan``, ``unpack_fastscan`` and ``fastscan_topk``).

Layout (specs/binary_pq.md §2, faiss's ``IndexPQFastScan.codes``): blocks of 32 codes; per block
and sub-quantizer pair p, 32 bytes: byte j < 16 holds sub-quantizer 2p of vectors PERM0[j] (low
nibble) and PERM0[j] + 16 (high nibble), bytes 16..31 sub-quantizer 2p + 1 the same way. m is
padded to even m2, n to a multiple of 32; padding is 0.

Search, as the compiled driver does it:
* Each query's float table is quantized as faiss's ``round_uint8_per_column``: a = 255 / max row
  span, b = sum of the row minima (float32, in order), Tq = floor((t - min) * a + 0.5) in float32
  without FMA (Numba never contracts without fast-math). a = 0 (constant table or an overflowing
  scale) gives Tq = 0 and distance b for every code (faiss would return NaN).
* S = exact integer sum of Tq over the sub-quantizers; the k smallest (largest) S are kept, ties
  by smaller id. S < 2**24, so it is exact in float32: the quantized tables (255 - Tq for largest)
  go through the float ADC top-k of ``pq.py`` (8 queries in SIMD lanes) on the unpacked codes,
  which selects exactly what the 16-bit kernel selects.
* Distance = fma(S, 1 / a, b) with one rounding (``llvm.fma.f32``).
Results do not depend on the thread count.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

_BLOCK = 32
_MAX_M = 256  # 16-bit sums stay exact: 255 * 256 < 2**16
_PERM0 = np.array([0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15], dtype=np.int64)


def _cdiv(a, b):
    return -(-a // b)


def fastscan_bytes(n, m):
    return _cdiv(n, _BLOCK) * _BLOCK * ((m + 1) // 2)


@intrinsic
def _fmaf(typingctx, x, y, z):
    """float32 fused multiply-add x * y + z, rounded once."""
    f32 = types.float32
    if not all(a == f32 for a in (x, y, z)):
        return None

    def codegen(context, builder, sig, args):
        f = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f, [f, f, f]), "llvm.fma.f32")
        return builder.call(fn, args)

    return f32(f32, f32, f32), codegen


# ------------------------------------------------------------------------------------------------
# packing
# ------------------------------------------------------------------------------------------------


@njit(**_JIT)
def _nibble(codes, i, s):
    return (codes[i, s >> 1] >> ((s & 1) * 4)) & 0xF


@njit(**_PJIT)
def _pack(codes, n, m, out):
    cs = (m + 1) // 2
    bb = _BLOCK * cs
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for b in prange(nblocks):
        for s in range(2 * cs):
            base = b * bb + (s >> 1) * 32 + (s & 1) * 16
            for j in range(16):
                v0 = b * _BLOCK + _PERM0[j]
                v1 = v0 + 16
                lo = _nibble(codes, v0, s) if (v0 < n and s < m) else 0
                hi = _nibble(codes, v1, s) if (v1 < n and s < m) else 0
                out[base + j] = np.uint8(lo | (hi << 4))


@njit(**_PJIT)
def _unpack(packed, n, m, out):
    cs = (m + 1) // 2
    bb = _BLOCK * cs
    for i in prange(n):
        v = i % _BLOCK
        v16 = v % 16
        j = 2 * v16 if v16 < 8 else 2 * (v16 - 8) + 1  # _PERM0[j] == v16
        shift = 4 if v >= 16 else 0
        blk = (i // _BLOCK) * bb
        for t in range(cs):
            out[i, t] = 0
        for s in range(m):
            c = (packed[blk + (s >> 1) * 32 + (s & 1) * 16 + j] >> shift) & 0xF
            out[i, s >> 1] |= np.uint8(c << ((s & 1) * 4))


def _check_m(m):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an int >= 1, got {m!r}")
    return int(m)


def _check_packed(packed, n, m):
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8:
        raise TypeError("packed must be a uint8 numpy array")
    want = fastscan_bytes(n, m)
    if packed.ndim != 1 or packed.shape[0] != want:
        raise ValueError(f"packed must hold ceil(n / 32) * 32 * ceil(m / 2) = {want} bytes for "
                         f"n={n}, m={m}, got shape {packed.shape}")
    return np.ascontiguousarray(packed)


def pack_fastscan(codes, m):
    m = _check_m(m)
    codes = np.ascontiguousarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != (m + 1) // 2:
        raise ValueError(f"codes must be uint8 (n, ceil(m / 2) = {(m + 1) // 2}), got "
                         f"{codes.dtype} {codes.shape}")
    n = codes.shape[0]
    out = np.zeros(fastscan_bytes(n, m), dtype=np.uint8)
    if n:
        _pack(codes, n, m, out)
    return out


def unpack_fastscan(packed, n, m):
    m = _check_m(m)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    packed = _check_packed(packed, n, m)
    out = np.zeros((n, (m + 1) // 2), dtype=np.uint8)
    if n:
        _unpack(packed, n, m, out)
    return out


# ------------------------------------------------------------------------------------------------
# search
# ------------------------------------------------------------------------------------------------


@njit(**_JIT)
def _quantize(lut, q, m, largest, out):
    """Query q's quantized table into out (m2, 16) (rows >= m stay 0); returns (b, 1 / a)."""
    mins = np.empty(m, dtype=np.float32)
    max_span = np.float32(0.0)
    for s in range(m):
        lo = lut[q, s, 0]
        hi = lo
        for j in range(1, 16):
            v = lut[q, s, j]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        mins[s] = lo
        span = hi - lo
        if span > max_span:
            max_span = span
    a = np.float32(0.0)
    if max_span > np.float32(0.0):
        a = np.float32(np.float32(255.0) / max_span)
    if not np.isfinite(a):
        a = np.float32(0.0)
    b = np.float32(0.0)
    for s in range(m):
        b = np.float32(b + mins[s])
    for s in range(m):
        for j in range(16):
            scaled = np.float32((lut[q, s, j] - mins[s]) * a)
            y = np.float32(scaled + np.float32(0.5))
            if y >= np.float32(255.0):
                v = 255
            elif y >= np.float32(1.0):
                v = int(y)  # floor of a positive value
            else:
                v = 0  # also NaN
            out[s, j] = np.uint8(255 - v) if largest else np.uint8(v)
    one_a = np.float32(np.float32(1.0) / a) if a > np.float32(0.0) else np.float32(0.0)
    return b, one_a


@njit(**_PJIT)
def _key_tables(lut, m, largest, keys, bs, one_as):
    # keys[q] = the quantized table as float32 (exact small integers; 255 - Tq when largest, so
    # that the k smallest keys are the k largest sums S).
    for q in prange(lut.shape[0]):
        t = np.zeros((m + (m & 1), 16), dtype=np.uint8)
        b, one_a = _quantize(lut, q, m, largest, t)
        bs[q] = b
        one_as[q] = one_a
        for s in range(m):
            for j in range(16):
                keys[q, s, j] = np.float32(t[s, j])


@njit(**_PJIT)
def _distances(skeys, m, largest, bs, one_as, out_d):
    for q in prange(skeys.shape[0]):
        for j in range(skeys.shape[1]):
            kj = np.float32(skeys[q, j])
            s_val = np.float32(255 * m) - kj if largest else kj
            out_d[q, j] = _fmaf(s_val, one_as[q], bs[q])


def fastscan_topk(lut, packed, n, m, k, largest):
    m = _check_m(m)
    if m > _MAX_M:
        raise ValueError(f"fast-scan search takes 1 <= m <= {_MAX_M} sub-quantizers (16-bit "
                         f"accumulators), got {m}")
    lut = np.ascontiguousarray(lut, dtype=np.float32)
    if lut.ndim != 3 or lut.shape[1] != m or lut.shape[2] != 16:
        raise ValueError(f"lut must have shape (nq, m, 16) = (nq, {m}, 16), got {lut.shape}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    packed = _check_packed(packed, n, m)
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    nq = lut.shape[0]
    out_d = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq:
        # The sums S are exact integers below 2**24, so the float ADC scan of the quantized
        # tables (queries in SIMD lanes, ties by smaller id) selects exactly what the 16-bit
        # fast-scan kernel selects.
        from .pq import adc_topk

        keys = np.zeros((nq, m, 16), dtype=np.float32)
        bs = np.empty(nq, dtype=np.float32)
        one_as = np.empty(nq, dtype=np.float32)
        _key_tables(lut, m, bool(largest), keys, bs, one_as)
        skeys, ids = adc_topk(keys, unpack_fastscan(packed, n, m), k, False)
        _distances(skeys, m, bool(largest), bs, one_as, out_d)
        out_i[:] = ids
    return out_d, out_i
