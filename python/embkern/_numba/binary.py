"""Numba fallback for the binary-code kernels (same internal API as ``embkern._core.binary``).

Inputs arrive validated (C-contiguous, exact dtypes) from ``embkern.binary``; these functions
only shape the work and call the jitted kernels below.

Approach
* Codes are read as unaligned native-endian 64-bit words through a small LLVM intrinsic, so
  every code size takes the same path: ``cs // 8`` full words, then one overlapping word that
  ends at the last byte, shifted so only the ``cs % 8`` tail bytes count (sizes below 8 use a
  32-bit load or single bytes). Popcounts are ``llvm.ctpop.i64``, i.e. one POPCNT instruction.
  Word counts with a specialised variant (8, 16, 32, ... bytes) get a constant-trip-count,
  fully unrolled word loop; see ``_spec``.
* Distance kernels handle 4 queries per database code, so each code word is loaded once for
  four popcounts.
* Top-k streams over the database: tasks are (query block, database part) pairs, each with a
  bounded max-heap of (key, id) per query; a candidate enters only if it beats the root, and
  parts are scanned in ascending id order, so ties keep the smaller id. When there are fewer
  query blocks than threads the database is split into parts, so one query uses every thread;
  the per-part heaps of a query are merged and heap-sorted at the end. Within a task the
  database is swept in L2-sized chunks by all of the task's queries, 4 queries x 256 codes at
  a time: the tile's distances go to a small buffer and a query's heap is visited only when
  the tile's minimum beats its root (after warm-up, almost never).
* Range search marks hits in a bitmask (1 bit per query x code, built over database chunks so
  it stays small), counts them, then extracts ids per query (recomputing only the hits'
  distances) and orders each query's hits by distance with a stable counting sort.
* Asymmetric scores use a per-query table of the 256 possible +-1 sums of every 8-dimension
  byte (in float64), so a code costs one lookup per byte; the float64 sum is rounded once.
* Thread count is the caller's (``numba.set_num_threads``); it only shapes the task split.
"""

import sys

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ._heap import heap_sort, pair_less, replace_top

_INT32_MAX = np.int32(np.iinfo(np.int32).max)
_INT64_MAX = np.int64(np.iinfo(np.int64).max)
# Which end of a loaded word holds the first byte in memory (for dropping overlapped bytes).
_LITTLE_ENDIAN = sys.byteorder == "little"

# ------------------------------------------------------------------------------------------------
# LLVM intrinsics: unaligned word loads and popcount
# ------------------------------------------------------------------------------------------------


def _is_u8_vector(ty):
    return isinstance(ty, types.Array) and ty.ndim == 1 and ty.dtype == types.uint8


def _make_load(bits):
    @intrinsic
    def load(typingctx, buf, off):
        """Unaligned little-endian load of `bits` bits at byte offset `off` of a uint8 vector."""
        if not (_is_u8_vector(buf) and isinstance(off, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            pos = context.cast(builder, args[1], sig.args[1], types.intp)
            ptr = builder.bitcast(builder.gep(ary.data, [pos]), ir.IntType(bits).as_pointer())
            val = builder.load(ptr, align=1)
            if bits < 64:
                val = builder.zext(val, ir.IntType(64))
            return val

        return types.uint64(buf, off), codegen

    return load


_load64 = _make_load(64)
_load32 = _make_load(32)


@intrinsic
def _popcount(typingctx, x):
    """Population count of a uint64, as int64 (one POPCNT on x86-64-v2 and later)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return types.int64(types.uint64), codegen


_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


def _cdiv(a, b):
    return -(-a // b)


# ------------------------------------------------------------------------------------------------
# Hamming distance primitives (flat uint8 buffers, byte offsets)
# ------------------------------------------------------------------------------------------------


@njit(inline="always", **_JIT)
def _tail_word(a, ao, b, bo, cs):
    # XOR of the last cs % 8 bytes (cs >= 8): load the word that ends at the code's last byte
    # and drop its first 8 - cs % 8 bytes, which the full-word loop already counted.
    x = _load64(a, ao + cs - 8) ^ _load64(b, bo + cs - 8)
    drop = np.uint64(64 - 8 * (cs & 7))
    return x >> drop if _LITTLE_ENDIAN else x << drop


@njit(inline="always", **_JIT)
def _small_word(a, ao, b, bo, cs):
    # XOR of a whole code of 1..7 bytes, as one word (overlapping 32-bit loads for 4..7).
    if cs >= 4:
        lo = _load32(a, ao) ^ _load32(b, bo)
        # Bytes cs-4..cs-1; drop the first 8-cs of them, which `lo` already holds.
        hi = _load32(a, ao + cs - 4) ^ _load32(b, bo + cs - 4)
        drop = np.uint64(8 * (8 - cs))
        if _LITTLE_ENDIAN:
            hi >>= drop
        else:
            hi = (hi << drop) & np.uint64(0xFFFFFFFF)
        return lo | (hi << np.uint64(32))
    x = np.uint64(0)
    for t in range(cs):
        x |= np.uint64(a[ao + t] ^ b[bo + t]) << np.uint64(8 * t)
    return x


# Code sizes (in 64-bit words) with a specialised kernel: the word loop gets a constant trip
# count, so LLVM unrolls it and, with a constant row stride, can vectorise across codes.
_FIXED_WORDS = (1, 2, 4, 6, 8, 12, 16, 32)


def _spec(cs):
    """The size argument of the kernels: a tuple whose *length* is the word count of a code of
    cs bytes when that count is specialised (numba compiles one variant per tuple length and
    len() of it is a compile-time constant), else the empty tuple (generic loop)."""
    if cs % 8 == 0 and cs // 8 in _FIXED_WORDS:
        return (0,) * (cs // 8)
    return ()


@njit(inline="always", **_JIT)
def _code_bytes(cs, spec):
    # A compile-time constant in specialised variants (so strides such as j * cs are too).
    return 8 * len(spec) if len(spec) else cs


@njit(inline="always", **_JIT)
def _dist1(a, ao, b, bo, cs, spec):
    """popcount(a[ao:ao+cs] ^ b[bo:bo+cs])."""
    if len(spec):
        s = 0
        for w in range(len(spec)):
            s += _popcount(_load64(a, ao + 8 * w) ^ _load64(b, bo + 8 * w))
        return s
    if cs < 8:
        return _popcount(_small_word(a, ao, b, bo, cs))
    nw = cs >> 3
    s = 0
    for w in range(nw):
        s += _popcount(_load64(a, ao + 8 * w) ^ _load64(b, bo + 8 * w))
    if cs & 7:
        s += _popcount(_tail_word(a, ao, b, bo, cs))
    return s


@njit(**_JIT)
def _hamming1(a, ao, b, bo, cs, spec):
    # Out-of-line _dist1, for call sites that are not hot enough to inline the code-size paths.
    return _dist1(a, ao, b, bo, cs, spec)


@njit(inline="always", **_JIT)
def _dist4(a, a0, a1, a2, a3, b, bo, cs, spec):
    """Distances of four codes of `a` (offsets a0..a3) to one code of `b`; b is loaded once."""
    if len(spec):
        s0 = 0
        s1 = 0
        s2 = 0
        s3 = 0
        for w in range(len(spec)):
            bw = _load64(b, bo + 8 * w)
            s0 += _popcount(bw ^ _load64(a, a0 + 8 * w))
            s1 += _popcount(bw ^ _load64(a, a1 + 8 * w))
            s2 += _popcount(bw ^ _load64(a, a2 + 8 * w))
            s3 += _popcount(bw ^ _load64(a, a3 + 8 * w))
        return s0, s1, s2, s3
    if cs < 8:
        return (
            _popcount(_small_word(a, a0, b, bo, cs)),
            _popcount(_small_word(a, a1, b, bo, cs)),
            _popcount(_small_word(a, a2, b, bo, cs)),
            _popcount(_small_word(a, a3, b, bo, cs)),
        )
    nw = cs >> 3
    s0 = 0
    s1 = 0
    s2 = 0
    s3 = 0
    for w in range(nw):
        bw = _load64(b, bo + 8 * w)
        s0 += _popcount(bw ^ _load64(a, a0 + 8 * w))
        s1 += _popcount(bw ^ _load64(a, a1 + 8 * w))
        s2 += _popcount(bw ^ _load64(a, a2 + 8 * w))
        s3 += _popcount(bw ^ _load64(a, a3 + 8 * w))
    if cs & 7:
        s0 += _popcount(_tail_word(a, a0, b, bo, cs))
        s1 += _popcount(_tail_word(a, a1, b, bo, cs))
        s2 += _popcount(_tail_word(a, a2, b, bo, cs))
        s3 += _popcount(_tail_word(a, a3, b, bo, cs))
    return s0, s1, s2, s3


@njit(**_JIT)
def _ham_block(a, i0, i1, b, j0, j1, cs, spec, out, r0, c0):
    """out[i - r0, j - c0] = dist(a row i, b row j) for i0 <= i < i1, j0 <= j < j1; four rows
    of `a` per pass over the codes of `b`. Serves full matrices and top-k/range tiles alike."""
    cs = _code_bytes(cs, spec)
    i = i0
    while i + 4 <= i1:
        a0 = i * cs
        o = i - r0
        for j in range(j0, j1):
            s0, s1, s2, s3 = _dist4(a, a0, a0 + cs, a0 + 2 * cs, a0 + 3 * cs, b, j * cs, cs, spec)
            out[o, j - c0] = s0
            out[o + 1, j - c0] = s1
            out[o + 2, j - c0] = s2
            out[o + 3, j - c0] = s3
        i += 4
    while i < i1:
        for j in range(j0, j1):
            out[i - r0, j - c0] = _dist1(a, i * cs, b, j * cs, cs, spec)
        i += 1


@njit(**_JIT)
def _merge_query(hk, hi, nq, k, parts, sentinel, out_k, out_i, i):
    # The k best (key, id) of query i over its `parts` heaps, ascending, into out_k / out_i.
    ob = i * k
    if parts == 1:
        for s in range(k):
            out_k[ob + s] = hk[i * k + s]
            out_i[ob + s] = hi[i * k + s]
    else:
        for s in range(k):
            out_k[ob + s] = sentinel
            out_i[ob + s] = _INT64_MAX
        for p in range(parts):
            hb = (p * nq + i) * k
            for s in range(k):
                key = hk[hb + s]
                idx = hi[hb + s]
                if pair_less(key, idx, out_k[ob], out_i[ob]):
                    replace_top(out_k, out_i, ob, k, key, idx)
    heap_sort(out_k, out_i, ob, k)


@njit(**_PJIT)
def _merge_par(hk, hi, nq, k, parts, sentinel, out_k, out_i):
    for i in prange(nq):
        _merge_query(hk, hi, nq, k, parts, sentinel, out_k, out_i, i)


@njit(**_JIT)
def _merge_seq(hk, hi, nq, k, parts, sentinel, out_k, out_i):
    for i in range(nq):
        _merge_query(hk, hi, nq, k, parts, sentinel, out_k, out_i, i)


def _merge_heaps(hk, hi, nq, k, parts, sentinel, out_k, out_i):
    # Small merges run on the calling thread: waking the pool would cost more than the work.
    if nq * parts * k < 32768:
        _merge_seq(hk, hi, nq, k, parts, sentinel, out_k, out_i)
    else:
        _merge_par(hk, hi, nq, k, parts, sentinel, out_k, out_i)


def _plan(nq, nb, qblock, min_part):
    """Task split (mirrors the compiled driver): query blocks, plus database parts when the
    query blocks alone cannot keep every thread busy."""
    threads = numba.get_num_threads()
    qb = max(1, min(qblock, nq))
    nqb = _cdiv(nq, qb)
    if nqb < 2 * threads and threads > 1:
        qb = max(1, _cdiv(nq, threads))
        nqb = _cdiv(nq, qb)
    want = 1 if nqb >= threads else _cdiv(2 * threads, nqb)
    want = max(1, min(want, _cdiv(nb, min_part)))
    part_len = _cdiv(nb, want)
    parts = _cdiv(nb, part_len)
    return qb, nqb, parts, part_len


# ------------------------------------------------------------------------------------------------
# pack_signs
# ------------------------------------------------------------------------------------------------


@njit(**_PJIT)
def _pack_rows(x, th, little, out):
    n, d = x.shape
    nbytes = out.shape[1]
    for i in prange(n):
        for b in range(nbytes):
            t0 = 8 * b
            cnt = min(8, d - t0)
            v = 0
            if little:
                for t in range(cnt):
                    v |= int(x[i, t0 + t] > th) << t
            else:
                for t in range(cnt):
                    v |= int(x[i, t0 + t] > th) << (7 - t)
            out[i, b] = v


@njit(**_JIT)
def _pack_f32(x, threshold, little, out):
    # Compare in float32, as numpy does for a float32 array against a Python float.
    _pack_rows(x, np.float32(threshold), little, out)


@njit(**_JIT)
def _pack_f64(x, threshold, little, out):
    _pack_rows(x, np.float64(threshold), little, out)


def pack_signs_f32(x, threshold, little):
    n, d = x.shape
    out = np.empty((n, (d + 7) // 8), dtype=np.uint8)
    if n and d:
        _pack_f32(x, float(threshold), bool(little), out)
    return out


def pack_signs_f64(x, threshold, little):
    n, d = x.shape
    out = np.empty((n, (d + 7) // 8), dtype=np.uint8)
    if n and d:
        _pack_f64(x, float(threshold), bool(little), out)
    return out


# ------------------------------------------------------------------------------------------------
# hamming_distance
# ------------------------------------------------------------------------------------------------


@njit(**_PJIT)
def _hamming_matrix(a, na, b, nb, cs, spec, out):
    cs = _code_bytes(cs, spec)
    # Tiles of 64 rows x ~64 KiB of b, so a tile's b stays in L2 while its rows sweep it.
    rb = 64
    cb = max(64, 65536 // cs)
    nrb = (na + rb - 1) // rb
    ncb = (nb + cb - 1) // cb
    for t in prange(nrb * ncb):
        i0 = (t // ncb) * rb
        j0 = (t % ncb) * cb
        _ham_block(a, i0, min(na, i0 + rb), b, j0, min(nb, j0 + cb), cs, spec, out, 0, 0)


def hamming_distance(a, b):
    na, cs = a.shape
    nb = b.shape[0]
    out = np.empty((na, nb), dtype=np.int32)
    if na == 0 or nb == 0:
        return out
    if cs == 0:
        out.fill(0)
        return out
    _hamming_matrix(a.reshape(-1), na, b.reshape(-1), nb, cs, _spec(cs), out)
    return out


# ------------------------------------------------------------------------------------------------
# hamming_topk
# ------------------------------------------------------------------------------------------------

_TOPK_TILE = 256  # codes per distance tile (4 x 256 int32 stays in L1)


@njit(**_PJIT)
def _topk_scan(q, nq, db, nb, cs, spec, k, qblock, nqb, parts, part_len, hd, hi):
    cs = _code_bytes(cs, spec)
    tile = _TOPK_TILE
    # Codes per chunk: ~256 KiB, swept by all queries of the task before moving on (L2 reuse).
    chunk = max(tile, (262144 // cs) // tile * tile)
    for task in prange(nqb * parts):
        qb = task // parts
        p = task % parts
        q0 = qb * qblock
        q1 = min(nq, q0 + qblock)
        d0 = p * part_len
        d1 = min(nb, d0 + part_len)
        buf = np.empty((4, tile), dtype=np.int32)
        for c0 in range(d0, d1, chunk):
            c1 = min(d1, c0 + chunk)
            i = q0
            while i < q1:
                m = min(4, q1 - i)
                for t0 in range(c0, c1, tile):
                    tn = min(tile, c1 - t0)
                    _ham_block(q, i, i + m, db, t0, t0 + tn, cs, spec, buf, i, t0)
                    for r in range(m):
                        base = (p * nq + i + r) * k
                        # After warm-up most tiles hold nothing below the k-th distance: one
                        # vectorised min decides that, and the heap loop is skipped.
                        lo = _INT32_MAX
                        for jj in range(tn):
                            lo = min(lo, buf[r, jj])
                        if lo >= hd[base]:
                            continue
                        for jj in range(tn):
                            v = buf[r, jj]
                            # Ids ascend within a task, so a strictly smaller distance is the
                            # whole (distance, id) test: ties keep the smaller id.
                            if v < hd[base]:
                                replace_top(hd, hi, base, k, v, t0 + jj)
                i += m


def hamming_topk(q, db, k):
    nq, cs = q.shape
    nb = db.shape[0]
    k = int(k)
    out_d = np.empty((nq, k), dtype=np.int32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq == 0 or k == 0:
        return out_d, out_i
    if cs == 0:
        # Every distance is 0: the k smallest ids.
        out_d.fill(0)
        out_i[:] = np.arange(k, dtype=np.int64)
        return out_d, out_i
    qblock, nqb, parts, part_len = _plan(nq, nb, 64, 16384)
    hd = np.full(parts * nq * k, _INT32_MAX, dtype=np.int32)
    hi = np.full(parts * nq * k, _INT64_MAX, dtype=np.int64)
    _topk_scan(q.reshape(-1), nq, db.reshape(-1), nb, cs, _spec(cs), k, qblock, nqb, parts,
               part_len, hd, hi)
    _merge_heaps(hd, hi, nq, k, parts, _INT32_MAX, out_d.reshape(-1), out_i.reshape(-1))
    return out_d, out_i


# ------------------------------------------------------------------------------------------------
# hamming_range
# ------------------------------------------------------------------------------------------------


@njit(**_PJIT)
def _range_mask(q, nq, db, c0, c1, cs, spec, radius, qblock, nqb, parts, part_len, mask, counts):
    # Bit (i, j - c0) of `mask` is set where dist(q_i, db_j) <= radius, and counts[p, i] holds
    # the hits of query i in part p. Parts are multiples of 64 codes, so every 64-code tile
    # fills exactly one mask word and tasks write disjoint words.
    cs = _code_bytes(cs, spec)
    for task in prange(nqb * parts):
        qb = task // parts
        p = task % parts
        q0 = qb * qblock
        q1 = min(nq, q0 + qblock)
        d0 = c0 + p * part_len
        d1 = min(c1, d0 + part_len)
        buf = np.empty((4, 64), dtype=np.int32)
        i = q0
        while i < q1:
            m = min(4, q1 - i)
            for r in range(m):
                counts[p, i + r] = 0
            for t0 in range(d0, d1, 64):
                tn = min(64, d1 - t0)
                _ham_block(q, i, i + m, db, t0, t0 + tn, cs, spec, buf, i, t0)
                w = (t0 - c0) >> 6
                for r in range(m):
                    bits = np.uint64(0)
                    for jj in range(tn):
                        bits |= np.uint64(buf[r, jj] <= radius) << np.uint64(jj)
                    mask[i + r, w] = bits
                    counts[p, i + r] += _popcount(bits)
            i += m


@njit(**_PJIT)
def _range_extract(q, nq, db, c0, nwords, cs, spec, mask, starts, dist, ids):
    # Walk each query's mask in id order (first nwords words: this chunk), recomputing the
    # distance of hits only.
    cs = _code_bytes(cs, spec)
    for i in prange(nq):
        pos = starts[i]
        for w in range(nwords):
            bits = mask[i, w]
            while bits != 0:
                low = bits & (~bits + np.uint64(1))
                r = w * 64 + _popcount(low - np.uint64(1))
                j = c0 + r
                dist[pos] = _hamming1(q, i * cs, db, j * cs, cs, spec)
                ids[pos] = j
                pos += 1
                bits ^= low


@njit(**_PJIT)
def _range_gather(nq, chunk_lims, hit_dist, hit_ids, radius, lims, dist, ids):
    # Per query: concatenate its hits from every chunk (ids stay ascending), then a stable
    # counting sort by distance gives ascending (distance, id). chunk_lims[c, i] indexes the
    # concatenated hit arrays.
    nchunks = chunk_lims.shape[0]
    for i in prange(nq):
        lo = lims[i]
        if lims[i + 1] == lo:
            continue
        hist = np.zeros(radius + 2, dtype=np.int64)
        for c in range(nchunks):
            for e in range(chunk_lims[c, i], chunk_lims[c, i + 1]):
                hist[hit_dist[e] + 1] += 1
        for v in range(1, radius + 2):
            hist[v] += hist[v - 1]
        for c in range(nchunks):
            for e in range(chunk_lims[c, i], chunk_lims[c, i + 1]):
                v = hit_dist[e]
                at = lo + hist[v]
                hist[v] += 1
                dist[at] = v
                ids[at] = hit_ids[e]


def hamming_range(q, db, radius):
    nq, cs = q.shape
    nb = db.shape[0]
    radius = int(radius)
    lims = np.zeros(nq + 1, dtype=np.int64)
    if nq == 0 or nb == 0 or radius < 0:
        return lims, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
    # Every distance lies in [0, 8 cs]; a larger radius behaves like 8 cs (keeps tables small).
    radius = min(radius, 8 * cs)
    if cs == 0:
        lims[:] = np.arange(nq + 1, dtype=np.int64) * nb
        ids = np.tile(np.arange(nb, dtype=np.int64), nq)
        return lims, np.zeros(nq * nb, dtype=np.int32), ids
    qf = q.reshape(-1)
    dbf = db.reshape(-1)
    spec = _spec(cs)
    # The mask takes nq * chunk / 8 bytes: chunk the database so that it stays near 32 MiB.
    chunk = max(4096, (1 << 28) // nq) // 64 * 64
    chunk = min(chunk, _cdiv(nb, 64) * 64)
    qblock, nqb, _, part_len = _plan(nq, chunk, 64, 16384)
    part_len = _cdiv(part_len, 64) * 64  # parts own whole mask words
    mask = np.empty((nq, chunk // 64), dtype=np.uint64)
    c_lims, c_dist, c_ids = [], [], []
    offset = 0
    for c0 in range(0, nb, chunk):
        c1 = min(nb, c0 + chunk)
        parts = _cdiv(c1 - c0, part_len)
        counts = np.empty((parts, nq), dtype=np.int64)
        _range_mask(qf, nq, dbf, c0, c1, cs, spec, radius, qblock, nqb, parts, part_len, mask,
                    counts)
        cl = np.empty(nq + 1, dtype=np.int64)
        cl[0] = 0
        np.cumsum(counts.sum(axis=0), out=cl[1:])
        d = np.empty(cl[-1], dtype=np.int32)
        ids = np.empty(cl[-1], dtype=np.int64)
        _range_extract(qf, nq, dbf, c0, _cdiv(c1 - c0, 64), cs, spec, mask, cl, d, ids)
        c_lims.append(cl + offset)
        c_dist.append(d)
        c_ids.append(ids)
        offset += int(cl[-1])
    chunk_lims = np.stack(c_lims)
    hit_dist = c_dist[0] if len(c_dist) == 1 else np.concatenate(c_dist)
    hit_ids = c_ids[0] if len(c_ids) == 1 else np.concatenate(c_ids)
    np.sum(chunk_lims[:, 1:] - chunk_lims[:, :-1], axis=0, out=lims[1:])
    np.cumsum(lims, out=lims)
    dist = np.empty(lims[-1], dtype=np.int32)
    ids = np.empty(lims[-1], dtype=np.int64)
    _range_gather(nq, chunk_lims, hit_dist, hit_ids, radius, lims, dist, ids)
    return lims, dist, ids


# ------------------------------------------------------------------------------------------------
# asymmetric_scores
# ------------------------------------------------------------------------------------------------


@njit(**_JIT)
def _build_lut(q, i, d, little, lut):
    # lut[b, v] = sum over the 8 dimensions of byte b of q[t] * (+1 if bit set else -1), in
    # float64; padding dimensions (t >= d) weigh 0. Entry 0 is minus the byte's sum; setting
    # bit `pos` adds 2 q[t], so entries [2^pos, 2^(pos+1)) are entries [0, 2^pos) plus that.
    nbytes = lut.shape[0]
    for b in range(nbytes):
        base = 0.0
        for t in range(8 * b, min(d, 8 * b + 8)):
            base -= np.float64(q[i, t])
        lut[b, 0] = base
        for pos in range(8):
            t = 8 * b + (pos if little else 7 - pos)
            two_q = 2.0 * np.float64(q[i, t]) if t < d else 0.0
            step = 1 << pos
            for v in range(step):
                lut[b, step + v] = lut[b, v] + two_q


@njit(**_PJIT)
def _asym_lut(q, codes, little, nparts, part_len, out):
    nq, d = q.shape
    n, nbytes = codes.shape
    for task in prange(nq * nparts):
        i = task // nparts
        p = task % nparts
        j0 = p * part_len
        j1 = min(n, j0 + part_len)
        lut = np.empty((nbytes, 256), dtype=np.float64)
        _build_lut(q, i, d, little, lut)
        j = j0
        # Four codes at a time: four independent add chains hide the add latency.
        while j + 4 <= j1:
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for b in range(nbytes):
                s0 += lut[b, codes[j, b]]
                s1 += lut[b, codes[j + 1, b]]
                s2 += lut[b, codes[j + 2, b]]
                s3 += lut[b, codes[j + 3, b]]
            out[i, j] = s0
            out[i, j + 1] = s1
            out[i, j + 2] = s2
            out[i, j + 3] = s3
            j += 4
        while j < j1:
            s0 = 0.0
            for b in range(nbytes):
                s0 += lut[b, codes[j, b]]
            out[i, j] = s0
            j += 1


@njit(**_PJIT)
def _asym_direct(q, codes, little, out):
    # Few codes: a table (256 entries per byte) would cost more than reading the bits.
    nq, d = q.shape
    n = codes.shape[0]
    for task in prange(nq * n):
        i = task // n
        j = task % n
        s = 0.0
        for t in range(d):
            shift = (t & 7) if little else 7 - (t & 7)
            v = np.float64(q[i, t])
            if (codes[j, t >> 3] >> shift) & 1:
                s += v
            else:
                s -= v
        out[i, j] = s


def asymmetric_scores(q, codes, little):
    nq, d = q.shape
    n = codes.shape[0]
    out = np.empty((nq, n), dtype=np.float32)
    if nq == 0 or n == 0:
        return out
    if d == 0:
        out.fill(0)
        return out
    if n < 64:
        _asym_direct(q, codes, bool(little), out)
        return out
    threads = numba.get_num_threads()
    # Split the codes only as far as needed to feed every thread; each part rebuilds the table.
    nparts = 1 if nq >= 2 * threads else min(_cdiv(2 * threads, nq), _cdiv(n, 1024))
    part_len = _cdiv(n, nparts)
    nparts = _cdiv(n, part_len)
    _asym_lut(q, codes, bool(little), nparts, part_len, out)
    return out


# ------------------------------------------------------------------------------------------------
# multibit_scores / multibit_topk
# ------------------------------------------------------------------------------------------------


@njit(inline="always", **_JIT)
def _mb_score4(q, i, db, j, planes, cs, spec, ww, wsum):
    # Scores of queries i..i+3 against code j: sum_s sum_t ww[s,t] h_st summed in float64 in
    # (s, t) order, then wsum - 2 acc rounded once to float32 (as the compiled kernel does).
    pc = planes * cs
    a0 = i * pc
    acc0 = 0.0
    acc1 = 0.0
    acc2 = 0.0
    acc3 = 0.0
    for s in range(planes):
        ao = a0 + s * cs
        for t in range(planes):
            h0, h1, h2, h3 = _dist4(q, ao, ao + pc, ao + 2 * pc, ao + 3 * pc,
                                    db, j * pc + t * cs, cs, spec)
            wst = ww[s * planes + t]
            acc0 += wst * h0
            acc1 += wst * h1
            acc2 += wst * h2
            acc3 += wst * h3
    return (np.float32(wsum - 2.0 * acc0), np.float32(wsum - 2.0 * acc1),
            np.float32(wsum - 2.0 * acc2), np.float32(wsum - 2.0 * acc3))


@njit(inline="always", **_JIT)
def _mb_score1(q, i, db, j, planes, cs, spec, ww, wsum):
    pc = planes * cs
    acc = 0.0
    for s in range(planes):
        for t in range(planes):
            h = _dist1(q, i * pc + s * cs, db, j * pc + t * cs, cs, spec)
            acc += ww[s * planes + t] * h
    return np.float32(wsum - 2.0 * acc)


@njit(**_JIT)
def _mb_block(q, i0, i1, db, j0, j1, planes, cs, spec, ww, wsum, out, r0, c0):
    """out[i - r0, j - c0] = multi-bit score of query i and code j (cf. _ham_block)."""
    cs = _code_bytes(cs, spec)
    i = i0
    while i + 4 <= i1:
        o = i - r0
        for j in range(j0, j1):
            v0, v1, v2, v3 = _mb_score4(q, i, db, j, planes, cs, spec, ww, wsum)
            out[o, j - c0] = v0
            out[o + 1, j - c0] = v1
            out[o + 2, j - c0] = v2
            out[o + 3, j - c0] = v3
        i += 4
    while i < i1:
        for j in range(j0, j1):
            out[i - r0, j - c0] = _mb_score1(q, i, db, j, planes, cs, spec, ww, wsum)
        i += 1


def _mb_weights(w, dim):
    ww = np.multiply.outer(w, w).reshape(-1).astype(np.float64)
    wsum = 0.0
    for v in ww:  # sequential sum, same order as the compiled kernel
        wsum += float(v)
    return ww, wsum * float(dim)


@njit(**_PJIT)
def _mb_matrix(q, nq, db, nb, planes, cs, spec, ww, wsum, out):
    cs = _code_bytes(cs, spec)
    qbs = 64
    cb = 1024
    nqb = (nq + qbs - 1) // qbs
    ncb = (nb + cb - 1) // cb
    for t in prange(nqb * ncb):
        i0 = (t // ncb) * qbs
        j0 = (t % ncb) * cb
        _mb_block(q, i0, min(nq, i0 + qbs), db, j0, min(nb, j0 + cb), planes, cs, spec, ww,
                  wsum, out, 0, 0)


def multibit_scores(q, db, dim, w):
    nq, planes, cs = q.shape
    nb = db.shape[0]
    out = np.empty((nq, nb), dtype=np.float32)
    if nq == 0 or nb == 0:
        return out
    ww, wsum = _mb_weights(w, dim)
    _mb_matrix(q.reshape(-1), nq, db.reshape(-1), nb, planes, cs, _spec(cs), ww, wsum, out)
    return out


@njit(**_PJIT)
def _mb_topk_scan(q, nq, db, nb, planes, cs, spec, ww, wsum, k, qblock, nqb, parts, part_len,
                  hk, hi):
    # As _topk_scan, with heaps keyed by -score so that the root is the lowest kept score.
    cs = _code_bytes(cs, spec)
    tile = _TOPK_TILE
    chunk = max(tile, (262144 // (planes * cs)) // tile * tile)
    for task in prange(nqb * parts):
        qb = task // parts
        p = task % parts
        q0 = qb * qblock
        q1 = min(nq, q0 + qblock)
        d0 = p * part_len
        d1 = min(nb, d0 + part_len)
        buf = np.empty((4, tile), dtype=np.float32)
        for c0 in range(d0, d1, chunk):
            c1 = min(d1, c0 + chunk)
            i = q0
            while i < q1:
                m = min(4, q1 - i)
                for t0 in range(c0, c1, tile):
                    tn = min(tile, c1 - t0)
                    _mb_block(q, i, i + m, db, t0, t0 + tn, planes, cs, spec, ww, wsum, buf,
                              i, t0)
                    for r in range(m):
                        base = (p * nq + i + r) * k
                        top = -np.inf
                        for jj in range(tn):
                            top = max(top, buf[r, jj])
                        if -top >= hk[base]:
                            continue
                        for jj in range(tn):
                            key = -buf[r, jj]
                            if key < hk[base]:
                                replace_top(hk, hi, base, k, key, t0 + jj)
                i += m


def multibit_topk(q, db, k, dim, w):
    nq, planes, cs = q.shape
    nb = db.shape[0]
    k = int(k)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq == 0 or k == 0:
        return out_s, out_i
    ww, wsum = _mb_weights(w, dim)
    qblock, nqb, parts, part_len = _plan(nq, nb, 64, 4096)
    hk = np.full(parts * nq * k, np.inf, dtype=np.float32)
    hi = np.full(parts * nq * k, _INT64_MAX, dtype=np.int64)
    _mb_topk_scan(q.reshape(-1), nq, db.reshape(-1), nb, planes, cs, _spec(cs), ww, wsum, k,
                  qblock, nqb, parts, part_len, hk, hi)
    _merge_heaps(hk, hi, nq, k, parts, np.float32(np.inf), out_s.reshape(-1), out_i.reshape(-1))
    np.negative(out_s, out=out_s)
    return out_s, out_i
