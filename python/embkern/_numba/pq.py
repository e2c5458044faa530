"""Numba fallback for the product-quantization kernels (same internal API as ``embkern._core.pq``).

Inputs arrive validated (C-contiguous, exact dtypes) from ``embkern.pq``; these functions only
shape the work and call the jitted kernels below. Results are bit-identical to the compiled path.

Approach
* Distances to centroids are summed exactly as the compiled kernels sum them: per centroid,
  ``acc = 0f; acc = acc + (x[t] - c[t]) * (x[t] - c[t])`` for t in order, float32, separate
  multiply and add (no fast-math flags anywhere, so LLVM never contracts to FMA); inner products
  likewise with ``x[t] * c[t]``. Centroids are transposed per sub-space to ``[m][dsub][ksub]``
  so the centroid loop is contiguous.
* Numba does not run LLVM's SLP vectoriser, so the hot loops whose vector form cannot come from
  the loop vectoriser are written as small LLVM intrinsics over ``<8 x float>`` (below). Vector
  arithmetic is element-wise IEEE, so each lane still computes the plain sequential sum.
  - encode/train: a block of 8 * G centroids for two sub-vectors at once (2 G independent vector
    chains over the dimensions, each centroid load shared by both sub-vectors), then a vector
    first-minimum (per-lane (value, index) with a strict test, merged by (value, index)).
  - ADC scans keep 8 queries in lanes: the tables of a query group are re-laid ``[m][ksub][8]``,
    so one code index selects one vector of 8 partial distances and one add advances all 8
    queries; lane l sums its m entries in order 0..m-1.
* Top-k streams over the database with a bounded (key, id) max-heap per query (root = worst kept;
  a code enters only if strictly below the root, and ids ascend within a task, so ties keep the
  smaller id). The scan intrinsic compares all 8 lanes with their thresholds at once and returns
  a bit mask, so the heap code runs only for codes that beat some lane. Tasks are (query group,
  database part) pairs; the database is split into parts when there are fewer groups than
  threads (as the compiled driver does), and a query's part heaps are merged exactly by
  (key, id). ``largest`` negates the tables (exact), so the same min-heap serves.
* Training mirrors ``pq::train``: assignment as encode, float64 per-cluster sums in data order,
  ``float32(sum / count)``, and the same empty-cluster split of the largest cluster.
* Thread count is the caller's (``numba.set_num_threads``); it only shapes the task split.
"""

import sys

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._heap import heap_sort, pair_less, replace_top
from .pq_fastscan import _fmaf

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

_LANES = 8
_INT64_MAX = np.int64(np.iinfo(np.int64).max)
# Bit order of a <8 x i1> mask bitcast to i8 (lane 0 in bit 0 on little-endian targets).
_LITTLE_ENDIAN = sys.byteorder == "little"


def _cdiv(a, b):
    return -(-a // b)


def _code_size(m, nbits):
    return (m * nbits + 7) // 8


# ------------------------------------------------------------------------------------------------
# LLVM helpers and intrinsics (<8 x float> loops)
# ------------------------------------------------------------------------------------------------

_F32 = ir.FloatType()
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V8F = ir.VectorType(_F32, 8)
_V8I = ir.VectorType(_I32, 8)


def _is_array(ty, dtype):
    return isinstance(ty, types.Array) and ty.ndim == 1 and ty.dtype == dtype and ty.layout == "C"


def _data(context, builder, ty, val):
    return context.make_array(ty)(context, builder, val).data


def _i64(context, builder, val, ty):
    return context.cast(builder, val, ty, types.int64)


def _c64(v):
    return ir.Constant(_I64, v)


def _vload(builder, base, off):
    """<8 x float> at float pointer base + off (unaligned)."""
    ptr = builder.bitcast(builder.gep(base, [off]), _V8F.as_pointer())
    return builder.load(ptr, align=4)


def _vstore(builder, val, base, off):
    ptr = builder.bitcast(builder.gep(base, [off]), _V8F.as_pointer())
    builder.store(val, ptr, align=4)


def _splat(builder, scalar):
    vec = builder.insert_element(ir.Constant(_V8F, ir.Undefined), scalar, _c64(0))
    return builder.shuffle_vector(vec, ir.Constant(_V8F, ir.Undefined),
                                  ir.Constant(_V8I, [0] * 8))


def _counted_loop(builder, count, carried, body):
    """for i in range(count) with loop-carried values (initial values `carried`); `body(i, vals)`
    returns the next values. Returns the final values (the initial ones when count <= 0)."""
    pre = builder.block
    loop = builder.append_basic_block("loop")
    done = builder.append_basic_block("done")
    builder.cbranch(builder.icmp_signed(">", count, _c64(0)), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(_I64)
    phis = [builder.phi(v.type) for v in carried]
    i.add_incoming(_c64(0), pre)
    for p, v in zip(phis, carried):
        p.add_incoming(v, pre)
    nxt = body(i, phis)
    i2 = builder.add(i, _c64(1))
    end = builder.block
    i.add_incoming(i2, end)
    for p, v in zip(phis, nxt):
        p.add_incoming(v, end)
    builder.cbranch(builder.icmp_signed("<", i2, count), loop, done)
    builder.position_at_end(done)
    out = []
    for v0, v1 in zip(carried, nxt):
        ph = builder.phi(v0.type)
        ph.add_incoming(v0, pre)
        ph.add_incoming(v1, end)
        out.append(ph)
    return out


def _make_l2_block(G, fused=False):
    @intrinsic
    def l2_block(typingctx, x, xa, xb, ct, cb, dsub, ksub, dist, j0):
        """dist[j0 + e] / dist[ksub + j0 + e], e < 8 G: squared L2 of the sub-vectors at x[xa]
        and x[xb] to centroids j0..j0+8G (transposed columns: ct[cb + t * ksub + e])."""
        ints = (xa, xb, cb, dsub, ksub, j0)
        if not (_is_array(x, types.float32) and _is_array(ct, types.float32)
                and _is_array(dist, types.float32)
                and all(isinstance(v, types.Integer) for v in ints)):
            return None

        def codegen(context, builder, sig, args):
            tys = sig.args
            xp = _data(context, builder, tys[0], args[0])
            cp = _data(context, builder, tys[3], args[3])
            dp = _data(context, builder, tys[7], args[7])
            xa_, xb_, cb_, dsub_, ksub_, j0_ = (
                _i64(context, builder, args[i], tys[i]) for i in (1, 2, 4, 5, 6, 8))
            zero = ir.Constant(_V8F, None)

            def body(t, acc):
                xv = _splat(builder, builder.load(builder.gep(xp, [builder.add(xa_, t)])))
                yv = _splat(builder, builder.load(builder.gep(xp, [builder.add(xb_, t)])))
                row = builder.add(builder.add(cb_, builder.mul(t, ksub_)), j0_)
                out = list(acc)
                fma = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32")

                def madd(d, a):  # a + d * d: one rounding (fused) or two
                    return builder.call(fma, [d, d, a]) if fused else builder.fadd(a, builder.fmul(d, d))

                for g in range(G):
                    cv = _vload(builder, cp, builder.add(row, _c64(8 * g)))
                    out[g] = madd(builder.fsub(xv, cv), acc[g])
                    out[G + g] = madd(builder.fsub(yv, cv), acc[G + g])
                return out

            acc = _counted_loop(builder, dsub_, [zero] * (2 * G), body)
            for g in range(G):
                _vstore(builder, acc[g], dp, builder.add(j0_, _c64(8 * g)))
                _vstore(builder, acc[G + g], dp, builder.add(builder.add(ksub_, j0_), _c64(8 * g)))
            return context.get_dummy_value()

        return types.none(x, xa, xb, ct, cb, dsub, ksub, dist, j0), codegen

    return l2_block


_l2_block2 = _make_l2_block(2)  # 16 centroids per block
_l2_block4 = _make_l2_block(4)  # 32 centroids per block
# 2-, 4- and 8-dimensional sub-vectors: dimensions summed with FMAs, as faiss (and _core) encode them
_l2_block2f = _make_l2_block(2, True)
_l2_block4f = _make_l2_block(4, True)


@intrinsic
def _argmin_first(typingctx, dist, off, n):
    """Index of the first minimum of dist[off:off + n], n a positive multiple of 8: per lane the
    first minimum of its entries (strict test, ascending index), then the lanes merged by
    (value, index). All entries inf gives 0."""
    if not (_is_array(dist, types.float32) and isinstance(off, types.Integer)
            and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        dp = _data(context, builder, sig.args[0], args[0])
        off_ = _i64(context, builder, args[1], sig.args[1])
        n_ = _i64(context, builder, args[2], sig.args[2])
        lanes = ir.Constant(_V8I, list(range(8)))
        inf = ir.Constant(_V8F, [float("inf")] * 8)
        eight = ir.Constant(_V8I, [8] * 8)

        def body(c, st):
            best, besti, cur = st
            v = _vload(builder, dp, builder.add(off_, builder.shl(c, _c64(3))))
            lt = builder.fcmp_ordered("<", v, best)
            return [builder.select(lt, v, best), builder.select(lt, cur, besti),
                    builder.add(cur, eight)]

        nvec = builder.ashr(n_, _c64(3))
        best, besti, _ = _counted_loop(builder, nvec, [inf, lanes, lanes], body)
        wv = builder.extract_element(best, _c64(0))
        wi = builder.extract_element(besti, _c64(0))
        for lane in range(1, 8):
            v = builder.extract_element(best, _c64(lane))
            i = builder.extract_element(besti, _c64(lane))
            better = builder.or_(builder.fcmp_ordered("<", v, wv),
                                 builder.and_(builder.fcmp_ordered("==", v, wv),
                                              builder.icmp_signed("<", i, wi)))
            wv = builder.select(better, v, wv)
            wi = builder.select(better, i, wi)
        return builder.sext(wi, _I64)

    return types.int64(dist, off, n), codegen


def _make_adc(nbits, with_thr):
    @intrinsic
    def adc(typingctx, lut, codes, row, m, dst, doff, thr):
        """dst[doff:doff + 8] = sum over s = 0..m-1 (in order) of lut[(s * ksub + code_s) * 8 :
        + 8] for the code row at codes[row]. With thresholds: returns the bit mask of lanes l
        with result[l] < thr[l] (else 0)."""
        if not (_is_array(lut, types.float32) and _is_array(codes, types.uint8)
                and _is_array(dst, types.float32) and _is_array(thr, types.float32)
                and all(isinstance(v, types.Integer) for v in (row, m, doff))):
            return None

        def codegen(context, builder, sig, args):
            tys = sig.args
            lp = _data(context, builder, tys[0], args[0])
            cp = _data(context, builder, tys[1], args[1])
            dp = _data(context, builder, tys[4], args[4])
            row_ = _i64(context, builder, args[2], tys[2])
            m_ = _i64(context, builder, args[3], tys[3])
            doff_ = _i64(context, builder, args[5], tys[5])
            rp = builder.gep(cp, [row_])

            def body(s, acc):
                if nbits == 8:
                    code = builder.zext(builder.load(builder.gep(rp, [s])), _I64)
                    e = builder.add(builder.shl(s, _c64(8)), code)
                else:
                    at = builder.gep(rp, [builder.lshr(s, _c64(1))])
                    byte = builder.zext(builder.load(at), _I64)
                    sh = builder.shl(builder.and_(s, _c64(1)), _c64(2))
                    code = builder.and_(builder.lshr(byte, sh), _c64(15))
                    e = builder.add(builder.shl(s, _c64(4)), code)
                v = _vload(builder, lp, builder.shl(e, _c64(3)))
                return [builder.fadd(acc[0], v)]

            (acc,) = _counted_loop(builder, m_, [ir.Constant(_V8F, None)], body)
            _vstore(builder, acc, dp, doff_)
            if not with_thr:
                return _c64(0)
            tp = _data(context, builder, tys[6], args[6])
            below = builder.fcmp_ordered("<", acc, _vload(builder, tp, _c64(0)))
            if _LITTLE_ENDIAN:  # lane l -> bit l (one movmsk on x86)
                return builder.zext(builder.bitcast(below, _I8), _I64)
            mask = _c64(0)
            for lane in range(8):
                bit = builder.zext(builder.extract_element(below, _c64(lane)), _I64)
                mask = builder.or_(mask, builder.shl(bit, _c64(lane)))
            return mask

        return types.int64(lut, codes, row, m, dst, doff, thr), codegen

    return adc


_adc_8 = _make_adc(8, False)
_adc_4 = _make_adc(4, False)
_adc_thr_8 = _make_adc(8, True)
_adc_thr_4 = _make_adc(4, True)


# ------------------------------------------------------------------------------------------------
# encode / decode / distance tables
# ------------------------------------------------------------------------------------------------


def _transpose(centroids):
    """[m][ksub][dsub] -> flat [m][dsub][ksub] (contiguous centroid loops)."""
    return np.ascontiguousarray(centroids.transpose(0, 2, 1)).reshape(-1)


@njit(inline="always", **_JIT)
def _argmin_faiss_lanes(dist, off, n):
    """faiss's rule for 2/4/8-dim sub-vectors: lane j % 8 keeps its last minimum (<=), then the
    lowest lane with a strictly smaller value wins (differs from the first minimum on exact ties)."""
    bv = np.full(8, np.inf, dtype=np.float32)
    bi = np.arange(8)
    for j in range(n):
        v = dist[off + j]
        if v <= bv[j & 7]:
            bv[j & 7] = v
            bi[j & 7] = j
    w = 0
    for lane in range(1, 8):
        if bv[lane] < bv[w]:
            w = lane
    return bi[w]


@njit(inline="always", **_JIT)
def _assign_pair(x, xa, xb, ct, cb, dsub, ksub, dist):
    """Nearest centroids of the sub-vectors at x[xa] and x[xb] (xb may equal xa), rounded and
    tie-broken as faiss does; dist is scratch of 2 * ksub floats."""
    if dsub == 2 or dsub == 4 or dsub == 8:
        if ksub % 32 == 0:
            for j0 in range(0, ksub, 32):
                _l2_block4f(x, xa, xb, ct, cb, dsub, ksub, dist, j0)
        else:
            for j0 in range(0, ksub, 16):
                _l2_block2f(x, xa, xb, ct, cb, dsub, ksub, dist, j0)
        return _argmin_faiss_lanes(dist, 0, ksub), _argmin_faiss_lanes(dist, ksub, ksub)
    if ksub % 32 == 0:
        for j0 in range(0, ksub, 32):
            _l2_block4(x, xa, xb, ct, cb, dsub, ksub, dist, j0)
    else:
        for j0 in range(0, ksub, 16):
            _l2_block2(x, xa, xb, ct, cb, dsub, ksub, dist, j0)
    return _argmin_first(dist, 0, ksub), _argmin_first(dist, ksub, ksub)


@njit(**_PJIT)
def _encode_kernel(x, n, dim, ct, m, ksub, dsub, rows, idx):
    # idx: (n, m) nearest-centroid indices; tasks are blocks of rows, two rows at a time.
    ntask = (n + rows - 1) // rows
    for task in prange(ntask):
        dist = np.empty(2 * ksub, dtype=np.float32)
        r0 = task * rows
        r1 = min(n, r0 + rows)
        for i in range(r0, r1, 2):
            two = i + 1 < r1
            for s in range(m):
                xa = i * dim + s * dsub
                xb = xa + dim if two else xa
                ia, ib = _assign_pair(x, xa, xb, ct, s * dsub * ksub, dsub, ksub, dist)
                idx[i, s] = ia
                if two:
                    idx[i + 1, s] = ib


@njit(**_PJIT)
def _pack_codes(idx, n, m, nbits, codes):
    # idx (n, m) -> codes (n, code_size) as faiss packs them.
    for i in prange(n):
        if nbits == 8:
            for s in range(m):
                codes[i, s] = np.uint8(idx[i, s])
        else:
            for b in range(codes.shape[1]):
                codes[i, b] = 0
            for s in range(m):
                codes[i, s >> 1] |= np.uint8(idx[i, s] << ((s & 1) * 4))


def encode(x, centroids, nbits):
    nbits = int(nbits)
    x = np.ascontiguousarray(x, dtype=np.float32)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    n, dim = x.shape
    m, ksub, dsub = centroids.shape
    codes = np.empty((n, _code_size(m, nbits)), dtype=np.uint8)
    if n == 0:
        return codes
    idx = np.empty((n, m), dtype=np.int32)
    _encode_kernel(x.reshape(-1), n, dim, _transpose(centroids), m, ksub, dsub, 256, idx)
    _pack_codes(idx, n, m, nbits, codes)
    return codes


@njit(**_PJIT)
def _decode_kernel(codes, n, cent, m, dsub, nbits, out):
    for i in prange(n):
        for s in range(m):
            if nbits == 8:
                j = codes[i, s]
            else:
                j = (codes[i, s >> 1] >> ((s & 1) * 4)) & 15
            for t in range(dsub):
                out[i, s * dsub + t] = cent[s, j, t]


def decode(codes, centroids, nbits):
    nbits = int(nbits)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    m, ksub, dsub = centroids.shape
    n = codes.shape[0]
    out = np.empty((n, m * dsub), dtype=np.float32)
    if n:
        _decode_kernel(codes, n, centroids, m, dsub, nbits, out)
    return out


@njit(**_PJIT)
def _tables_kernel(x, n, ct, m, ksub, dsub, ip, out):
    # out[i, s, j]: L2 (or IP) of x_i's sub-vector s to centroid j, summed over t in order; for
    # dsub 2 (8-bit), 4 and 8 as a chain of fused multiply-adds, as the compiled path (and faiss).
    fused = dsub == 4 or dsub == 8 or (dsub == 2 and ksub == 256)
    for task in prange(n * m):
        i = task // m
        s = task % m
        o = out[i, s]
        if dsub == 12:  # faiss's 12-dim form: 4 lanes of 2 chained FMAs, folded (a0+a2)+(a1+a3)
            for j in range(ksub):
                a = np.empty(4, dtype=np.float32)
                for lane in range(4):
                    u0 = x[i, s * 12 + lane]
                    u1 = x[i, s * 12 + 4 + lane]
                    u2 = x[i, s * 12 + 8 + lane]
                    c0 = ct[s, lane, j]
                    c1 = ct[s, 4 + lane, j]
                    c2 = ct[s, 8 + lane, j]
                    if ip:
                        t = _fmaf(u0, c0, u1 * c1)
                        a[lane] = _fmaf(u2, c2, t)
                    else:
                        d0 = u0 - c0
                        d1 = u1 - c1
                        d2 = u2 - c2
                        t = _fmaf(d0, d0, d1 * d1)
                        a[lane] = _fmaf(d2, d2, t)
                o[j] = (a[0] + a[2]) + (a[1] + a[3])
            continue
        for j in range(ksub):
            o[j] = np.float32(0.0)
        for t in range(dsub):
            xt = x[i, s * dsub + t]
            c = ct[s, t]
            if ip:
                if fused:
                    for j in range(ksub):
                        o[j] = _fmaf(xt, c[j], o[j])
                else:
                    for j in range(ksub):
                        o[j] = o[j] + xt * c[j]
            else:
                if fused:
                    for j in range(ksub):
                        d = xt - c[j]
                        o[j] = _fmaf(d, d, o[j])
                else:
                    for j in range(ksub):
                        d = xt - c[j]
                        o[j] = o[j] + d * d


def distance_tables(x, centroids, nbits, ip):
    x = np.ascontiguousarray(x, dtype=np.float32)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    m, ksub, dsub = centroids.shape
    n = x.shape[0]
    out = np.empty((n, m, ksub), dtype=np.float32)
    if n:
        ct = np.ascontiguousarray(centroids.transpose(0, 2, 1))
        _tables_kernel(x, n, ct, m, ksub, dsub, bool(ip), out)
    return out


# ------------------------------------------------------------------------------------------------
# ADC scans
# ------------------------------------------------------------------------------------------------


@njit(**_JIT)
def _lanes_lut(lut, q0, nl, mk, negate, lut_t):
    # lut (nq, m * ksub) -> lut_t[e * 8 + lane] for queries q0..q0+nl; empty lanes hold 0.
    for e in range(mk * _LANES):
        lut_t[e] = np.float32(0.0)
    for lane in range(nl):
        for e in range(mk):
            v = lut[q0 + lane, e]
            lut_t[e * _LANES + lane] = -v if negate else v


_TILE = 64  # codes per distance tile in adc_distances


@njit(**_PJIT)
def _adc_dist_kernel(lut, nq, codes, n, m, ksub, nbits, ngroups, nparts, part_len, out):
    cs = (m * nbits + 7) // 8
    for task in prange(ngroups * nparts):
        g = task // nparts
        p = task % nparts
        q0 = g * _LANES
        nl = min(_LANES, nq - q0)
        j0 = p * part_len
        j1 = min(n, j0 + part_len)
        lut_t = np.empty(m * ksub * _LANES, dtype=np.float32)
        _lanes_lut(lut, q0, nl, m * ksub, False, lut_t)
        buf = np.empty(_TILE * _LANES, dtype=np.float32)
        for t0 in range(j0, j1, _TILE):
            tn = min(_TILE, j1 - t0)
            if nbits == 8:
                for jj in range(tn):
                    _adc_8(lut_t, codes, (t0 + jj) * cs, m, buf, jj * _LANES, buf)
            else:
                for jj in range(tn):
                    _adc_4(lut_t, codes, (t0 + jj) * cs, m, buf, jj * _LANES, buf)
            for lane in range(nl):
                for jj in range(tn):
                    out[q0 + lane, t0 + jj] = buf[jj * _LANES + lane]


def _lut_nbits(lut):
    return 4 if lut.shape[2] == 16 else 8


def adc_distances(lut, codes):
    lut = np.ascontiguousarray(lut, dtype=np.float32)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    nq, m, ksub = lut.shape
    nbits = _lut_nbits(lut)
    n = codes.shape[0]
    out = np.empty((nq, n), dtype=np.float32)
    if nq == 0 or n == 0:
        return out
    ngroups = _cdiv(nq, _LANES)
    part_len = 4096
    nparts = _cdiv(n, part_len)
    _adc_dist_kernel(lut.reshape(nq, m * ksub), nq, codes.reshape(-1), n, m, ksub, nbits,
                     ngroups, nparts, part_len, out)
    return out


@njit(inline="always", **_JIT)
def _topk_range(lut_t, codes, cs, m, nbits, j0, j1, k, base, nl, acc, thr, hd, hi):
    # Stream codes j0..j1 past the 8 lanes; lane l's heap is at hd/hi[base + l * k] and thr[l]
    # mirrors its root (-inf for empty lanes, which never accept).
    for j in range(j0, j1):
        if nbits == 8:
            mask = _adc_thr_8(lut_t, codes, j * cs, m, acc, 0, thr)
        else:
            mask = _adc_thr_4(lut_t, codes, j * cs, m, acc, 0, thr)
        if mask == 0:
            continue
        for lane in range(nl):
            if (mask >> lane) & 1:
                hb = base + lane * k
                replace_top(hd, hi, hb, k, acc[lane], j)
                thr[lane] = hd[hb]


@njit(**_PJIT)
def _adc_topk_kernel(lut, nq, codes, n, m, ksub, nbits, k, negate, ngroups, parts, part_len,
                     hd, hi):
    cs = (m * nbits + 7) // 8
    for task in prange(ngroups * parts):
        g = task // parts
        p = task % parts
        q0 = g * _LANES
        nl = min(_LANES, nq - q0)
        j0 = p * part_len
        j1 = min(n, j0 + part_len)
        lut_t = np.empty(m * ksub * _LANES, dtype=np.float32)
        _lanes_lut(lut, q0, nl, m * ksub, negate, lut_t)
        acc = np.empty(_LANES, dtype=np.float32)
        thr = np.full(_LANES, -np.inf, dtype=np.float32)
        base = (p * nq + q0) * k
        for lane in range(nl):
            thr[lane] = hd[base + lane * k]
        _topk_range(lut_t, codes, cs, m, nbits, j0, j1, k, base, nl, acc, thr, hd, hi)


@njit(inline="always", **_JIT)
def _merge_one(hd, hi, nq, k, parts, i, negate, keys, ids, out_d, out_i):
    # The k smallest (key, id) pairs of query i's part heaps, ascending, into out rows i.
    for e in range(k):
        keys[e] = np.float32(np.inf)
        ids[e] = _INT64_MAX
    for p in range(parts):
        src = (p * nq + i) * k
        for e in range(k):
            key = hd[src + e]
            idx = hi[src + e]
            if pair_less(key, idx, keys[0], ids[0]):
                replace_top(keys, ids, 0, k, key, idx)
    heap_sort(keys, ids, 0, k)
    for e in range(k):
        out_d[i, e] = -keys[e] if negate else keys[e]
        out_i[i, e] = ids[e]


@njit(**_JIT)
def _merge_seq(hd, hi, nq, k, parts, negate, out_d, out_i):
    keys = np.empty(k, dtype=np.float32)
    ids = np.empty(k, dtype=np.int64)
    for i in range(nq):
        _merge_one(hd, hi, nq, k, parts, i, negate, keys, ids, out_d, out_i)


@njit(**_PJIT)
def _merge_par(hd, hi, nq, k, parts, negate, out_d, out_i):
    for i in prange(nq):
        keys = np.empty(k, dtype=np.float32)
        ids = np.empty(k, dtype=np.int64)
        _merge_one(hd, hi, nq, k, parts, i, negate, keys, ids, out_d, out_i)


def adc_topk(lut, codes, k, largest):
    lut = np.ascontiguousarray(lut, dtype=np.float32)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    nq, m, ksub = lut.shape
    nbits = _lut_nbits(lut)
    n = codes.shape[0]
    k = int(k)
    largest = bool(largest)
    out_d = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq == 0 or k == 0:
        return out_d, out_i
    threads = numba.get_num_threads()
    ngroups = _cdiv(nq, _LANES)
    # Split the database too when there are fewer lane groups than threads.
    parts = 1 if ngroups >= threads else _cdiv(2 * threads, ngroups)
    parts = max(1, min(parts, _cdiv(n, 8192)))
    part_len = _cdiv(n, parts)
    parts = _cdiv(n, part_len)
    hd = np.full(parts * nq * k, np.inf, dtype=np.float32)
    hi = np.full(parts * nq * k, _INT64_MAX, dtype=np.int64)
    _adc_topk_kernel(lut.reshape(nq, m * ksub), nq, codes.reshape(-1), n, m, ksub, nbits, k,
                     largest, ngroups, parts, part_len, hd, hi)
    if nq * parts * k < 32768:
        _merge_seq(hd, hi, nq, k, parts, largest, out_d, out_i)
    else:
        _merge_par(hd, hi, nq, k, parts, largest, out_d, out_i)
    return out_d, out_i


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


@njit(**_PJIT)
def _train_assign(xs, n, m, ksub, dsub, ct, rows, chunks, labels):
    # labels[s, i]: nearest centroid of sub-vector i of sub-space s (xs sub-space-major).
    for task in prange(m * chunks):
        s = task // chunks
        r0 = (task % chunks) * rows
        r1 = min(n, r0 + rows)
        dist = np.empty(2 * ksub, dtype=np.float32)
        xoff = s * n * dsub
        for i in range(r0, r1, 2):
            two = i + 1 < r1
            xa = xoff + i * dsub
            xb = xa + dsub if two else xa
            ia, ib = _assign_pair(xs, xa, xb, ct, s * dsub * ksub, dsub, ksub, dist)
            labels[s, i] = ia
            if two:
                labels[s, i + 1] = ib


@njit(**_PJIT)
def _train_update(xs, n, m, ksub, dsub, labels, cent):
    eps = np.float32(1.0) / np.float32(1024.0)
    up_even = np.float32(1.0) + eps
    up_odd = np.float32(1.0) - eps
    two = np.float32(2.0)
    for s in prange(m):
        total = np.zeros((ksub, dsub), dtype=np.float64)
        count = np.zeros(ksub, dtype=np.int64)
        base = s * n * dsub
        for i in range(n):
            lab = labels[s, i]
            count[lab] += 1
            for t in range(dsub):
                total[lab, t] += np.float64(xs[base + i * dsub + t])
        for j in range(ksub):
            if count[j] > 0:
                for t in range(dsub):
                    cent[s, j, t] = np.float32(total[j, t] / count[j])
        # Empty clusters: split the largest (first on ties) in two, nudging the copies apart.
        for j in range(ksub):
            if count[j] > 0:
                continue
            big = 0
            for e in range(1, ksub):
                if count[e] > count[big]:
                    big = e
            for t in range(dsub):
                v = cent[s, big, t]
                up = up_even if t % 2 == 0 else up_odd
                cent[s, j, t] = v * up
                cent[s, big, t] = v * (two - up)
            count[j] = count[big] // 2
            count[big] -= count[j]


def train(x, init_centroids, nbits, iterations):
    x = np.ascontiguousarray(x, dtype=np.float32)
    cent = np.array(init_centroids, dtype=np.float32, order="C", copy=True)
    m, ksub, dsub = cent.shape
    n = x.shape[0]
    iterations = int(iterations)
    if n == 0 or iterations <= 0:
        return cent
    # Sub-space-major copy of the data: xs[s] is n x dsub, contiguous.
    xs = np.ascontiguousarray(x.reshape(n, m, dsub).transpose(1, 0, 2)).reshape(-1)
    labels = np.empty((m, n), dtype=np.int32)
    rows = 2048
    chunks = _cdiv(n, rows)
    for _ in range(iterations):
        _train_assign(xs, n, m, ksub, dsub, _transpose(cent), rows, chunks, labels)
        _train_update(xs, n, m, ksub, dsub, labels, cent)
    return cent


# ------------------------------------------------------------------------------------------------
# fast scan (sibling module)
# ------------------------------------------------------------------------------------------------

try:
    from .pq_fastscan import pack_fastscan, unpack_fastscan, fastscan_topk  # noqa: F401
except ImportError:
    pass
