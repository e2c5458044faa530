// Projection kernels for the AVX2 and AVX-512 tiers, hand-written with AVX2 intrinsics: csr_dense,
// FastRP propagation and srp_packed's filter (see each). csr_dense: GCC 12 left the 16-lane
// generic loop scalar. Same arithmetic as kernel.hpp lane for lane: per C entry, a
// broadcast of the value, one multiply and one add per 8 (float) or 4 (double) rows, in C's stored
// order (no FMA), so results equal the scalar tier's bits.
//   _mm256_set1_ps / _pd   broadcast the entry's value
//   _mm256_mul_ps, _add_ps acc = acc + x * v (two roundings, as the scalar tier)
// Two components are accumulated at once (four independent chains per 16 rows) to hide the add
// latency; each component's chain still runs over its own entries in order.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "projection/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {
namespace projection_avx2 {

constexpr int64_t kLanes = projection_generic::kLanes;  // 16 rows per block

// Transposes rows [r0, r0 + nl) of x into xt[j][16] (missing rows zero): 8 x 8 (float) or
// 4 x 4 (double) register transposes (unpack / shuffle / permute2f128), scalar column tail.
inline void transpose_tile(const float* const* rows, int64_t j, float* dst) {
    __m256 r[8], t[8];
    for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(rows[q] + j);
    for (int q = 0; q < 4; ++q) {
        t[2 * q] = _mm256_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm256_unpackhi_ps(r[2 * q], r[2 * q + 1]);
    }
    // t0 = a0 b0 a1 b1 | a4 b4 a5 b5, t1 = a2 b2 a3 b3 | a6 b6 a7 b7, t2/t3 likewise for c, d ...
    __m256 u[8];
    u[0] = _mm256_shuffle_ps(t[0], t[2], 0x44);  // a0 b0 c0 d0 | a4 b4 c4 d4
    u[1] = _mm256_shuffle_ps(t[0], t[2], 0xEE);  // a1 b1 c1 d1 | a5 ...
    u[2] = _mm256_shuffle_ps(t[1], t[3], 0x44);  // a2 ...      | a6 ...
    u[3] = _mm256_shuffle_ps(t[1], t[3], 0xEE);  // a3 ...      | a7 ...
    u[4] = _mm256_shuffle_ps(t[4], t[6], 0x44);  // e0 f0 g0 h0 | e4 ...
    u[5] = _mm256_shuffle_ps(t[4], t[6], 0xEE);
    u[6] = _mm256_shuffle_ps(t[5], t[7], 0x44);
    u[7] = _mm256_shuffle_ps(t[5], t[7], 0xEE);
    for (int q = 0; q < 4; ++q) {
        _mm256_storeu_ps(dst + q * kLanes, _mm256_permute2f128_ps(u[q], u[q + 4], 0x20));
        _mm256_storeu_ps(dst + (q + 4) * kLanes, _mm256_permute2f128_ps(u[q], u[q + 4], 0x31));
    }
}

inline void transpose_tile(const double* const* rows, int64_t j, double* dst) {
    __m256d r[4];
    for (int q = 0; q < 4; ++q) r[q] = _mm256_loadu_pd(rows[q] + j);
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]);  // a0 b0 | a2 b2
    const __m256d t1 = _mm256_unpackhi_pd(r[0], r[1]);  // a1 b1 | a3 b3
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]);
    const __m256d t3 = _mm256_unpackhi_pd(r[2], r[3]);
    _mm256_storeu_pd(dst + 0 * kLanes, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + 1 * kLanes, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * kLanes, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * kLanes, _mm256_permute2f128_pd(t1, t3, 0x31));
}

template <class T>
inline void transpose_block(const T* x, int64_t r0, int64_t nl, int64_t d, T* xt,
                            const T* zeros) {
    constexpr int64_t W = 32 / sizeof(T);  // rows (and columns) per register tile
    const T* rows[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) rows[l] = l < nl ? x + (r0 + l) * d : zeros;
    const int64_t dw = d - d % W;
    for (int64_t j = 0; j < dw; j += W)
        for (int64_t g = 0; g < kLanes; g += W) transpose_tile(rows + g, j, xt + j * kLanes + g);
    for (int64_t j = dw; j < d; ++j)
        for (int64_t l = 0; l < kLanes; ++l) xt[j * kLanes + l] = rows[l][j];
}

struct F32 {
    using T = float;
    using V = __m256;
    static constexpr int W = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(T v) { return _mm256_set1_ps(v); }
    static V load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
    static V madd(V acc, V x, V v) { return _mm256_add_ps(acc, _mm256_mul_ps(x, v)); }
};
struct F64 {
    using T = double;
    using V = __m256d;
    static constexpr int W = 4;
    static V zero() { return _mm256_setzero_pd(); }
    static V set1(T v) { return _mm256_set1_pd(v); }
    static V load(const T* p) { return _mm256_loadu_pd(p); }
    static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
    static V madd(V acc, V x, V v) { return _mm256_add_pd(acc, _mm256_mul_pd(x, v)); }
};

template <class S>
void csr_dense(const typename S::T* x, int64_t n, int64_t d, const int64_t* indptr,
               const int32_t* indices, const typename S::T* values, int64_t k, typename S::T* out) {
    using T = typename S::T;
    using V = typename S::V;
    constexpr int NV = kLanes / S::W;  // vectors per 16 rows
    std::vector<T> xt(static_cast<size_t>(d * kLanes));
    const std::vector<T> zeros(static_cast<size_t>(d), T(0));
    alignas(64) T buf[2][kLanes];
    for (int64_t r0 = 0; r0 < n; r0 += kLanes) {
        const int64_t nl = std::min(kLanes, n - r0);
        transpose_block(x, r0, nl, d, xt.data(), zeros.data());
        const T* xb = xt.data();
        for (int64_t i = 0; i < k; i += 2) {
            const bool two = i + 1 < k;
            V a[NV], b[NV];
            for (int q = 0; q < NV; ++q) a[q] = b[q] = S::zero();
            int64_t ea = indptr[i];
            const int64_t ea1 = indptr[i + 1];
            int64_t eb = two ? indptr[i + 1] : 0;
            const int64_t eb1 = two ? indptr[i + 2] : 0;
            while (ea < ea1 && eb < eb1) {
                const V va = S::set1(values[ea]), vb = S::set1(values[eb]);
                const T* pa = xb + static_cast<int64_t>(indices[ea]) * kLanes;
                const T* pb = xb + static_cast<int64_t>(indices[eb]) * kLanes;
                for (int q = 0; q < NV; ++q) {
                    a[q] = S::madd(a[q], S::load(pa + q * S::W), va);
                    b[q] = S::madd(b[q], S::load(pb + q * S::W), vb);
                }
                ++ea;
                ++eb;
            }
            for (; ea < ea1; ++ea) {
                const V va = S::set1(values[ea]);
                const T* pa = xb + static_cast<int64_t>(indices[ea]) * kLanes;
                for (int q = 0; q < NV; ++q) a[q] = S::madd(a[q], S::load(pa + q * S::W), va);
            }
            for (; eb < eb1; ++eb) {
                const V vb = S::set1(values[eb]);
                const T* pb = xb + static_cast<int64_t>(indices[eb]) * kLanes;
                for (int q = 0; q < NV; ++q) b[q] = S::madd(b[q], S::load(pb + q * S::W), vb);
            }
            for (int q = 0; q < NV; ++q) {
                S::store(buf[0] + q * S::W, a[q]);
                S::store(buf[1] + q * S::W, b[q]);
            }
            for (int64_t l = 0; l < nl; ++l) {
                out[(r0 + l) * k + i] = buf[0][l];
                if (two) out[(r0 + l) * k + i + 1] = buf[1][l];
            }
        }
    }
}

// FastRP propagation with the neighbour sums in registers: dim is cut into chunks of up to 64
// floats (8 ymm accumulators) and the node's edge list is walked once per chunk (the second walk
// finds the rows in L1). Per element the same chain as kernel.hpp (acc + w * x, or acc + x, in edge
// order); the norm's 8 lanes are the 8 lanes of one vector; then a division per element.
// _mm_prefetch pulls every line of the row kFastrpAhead edges ahead on the first walk.
constexpr int64_t kFastrpAhead = 10;

template <int CN>
inline void fastrp_chunk(const int32_t* ind, const float* w, int64_t e0, int64_t e1, int64_t e_end,
                         const float* prev, int64_t dim, int64_t col, bool first, float* acc) {
    __m256 a[CN];
    for (int q = 0; q < CN; ++q) a[q] = _mm256_setzero_ps();
    for (int64_t e = e0; e < e1; ++e) {
        // Prefetch the row kFastrpAhead edges ahead in the task's edge range (the next nodes'
        // edges follow in CSR order), so the gathers overlap DRAM latency across node boundaries.
        if (first && e + kFastrpAhead < e_end) {
            const char* p = reinterpret_cast<const char*>(prev + static_cast<int64_t>(ind[e + kFastrpAhead]) * dim);
            for (int64_t b = 0; b < dim * 4; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
        }
        const float* pm = prev + static_cast<int64_t>(ind[e]) * dim + col;
        if (w) {
            const __m256 wv = _mm256_set1_ps(w[e]);
            for (int q = 0; q < CN; ++q) a[q] = _mm256_add_ps(a[q], _mm256_mul_ps(wv, _mm256_loadu_ps(pm + 8 * q)));
        } else {
            for (int q = 0; q < CN; ++q) a[q] = _mm256_add_ps(a[q], _mm256_loadu_ps(pm + 8 * q));
        }
    }
    for (int q = 0; q < CN; ++q) _mm256_storeu_ps(acc + col + 8 * q, a[q]);
}

inline void fastrp_propagate(const int64_t* indptr, const int32_t* indices, const float* w,
                             int64_t u0, int64_t u1, const float* prev, int64_t dim, float* next,
                             float wi, float* out, int base_mode, float pw) {
    if (dim % 8 != 0) {
        projection_generic::fastrp_propagate(indptr, indices, w, u0, u1, prev, dim, next, wi, out,
                                             base_mode, pw);
        return;
    }
    std::vector<float> acc(static_cast<size_t>(dim));
    const __m256 wiv = _mm256_set1_ps(wi), pwv = _mm256_set1_ps(pw);
    const int64_t e_end = indptr[u1];
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t e0 = indptr[u], e1 = indptr[u + 1];
        for (int64_t col = 0; col < dim; col += 64) {
            const bool first = col == 0;
            switch (std::min<int64_t>(8, (dim - col) / 8)) {
                case 8: fastrp_chunk<8>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 7: fastrp_chunk<7>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 6: fastrp_chunk<6>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 5: fastrp_chunk<5>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 4: fastrp_chunk<4>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 3: fastrp_chunk<3>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                case 2: fastrp_chunk<2>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
                default: fastrp_chunk<1>(indices, w, e0, e1, e_end, prev, dim, col, first, acc.data()); break;
            }
        }
        __m256 sv = _mm256_setzero_ps();
        for (int64_t t = 0; t < dim; t += 8) {
            const __m256 v = _mm256_loadu_ps(acc.data() + t);
            sv = _mm256_add_ps(sv, _mm256_mul_ps(v, v));
        }
        alignas(32) float s[8];
        _mm256_store_ps(s, sv);
        const float nrm = std::sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
        float* nx = next ? next + u * dim : nullptr;
        float* o = out ? out + u * dim : nullptr;
        const float* pr = prev + u * dim;
        const __m256 nv = _mm256_set1_ps(nrm);
        for (int64_t t = 0; t < dim; t += 8) {
            const __m256 x = nrm > 0.0f ? _mm256_div_ps(_mm256_loadu_ps(acc.data() + t), nv) : _mm256_setzero_ps();
            if (nx) _mm256_storeu_ps(nx + t, x);
            if (!o) continue;
            const __m256 base = base_mode == kFastrpAccumulate ? _mm256_loadu_ps(o + t)
                                : base_mode == kFastrpPending
                                    ? _mm256_add_ps(_mm256_setzero_ps(), _mm256_mul_ps(pwv, _mm256_loadu_ps(pr + t)))
                                    : _mm256_setzero_ps();
            _mm256_storeu_ps(o + t, _mm256_add_ps(base, _mm256_mul_ps(wiv, x)));
        }
    }
}

// srp_packed's filter, 8 entries at a time: gather the 8 bitmap words, shift each entry's bit to
// the top, movemask, and write the hits' column ids and values packed to the front with one lane
// permutation from a 256-entry table (the lanes of each mask, as bytes).
//   _mm256_i32gather_epi32       the bitmap words of 8 column ids (SrpPacked: j / 32)
//   _mm256_sllv_epi32            each id's bit to bit 31: word << (31 - j % 32), the count being
//                                ~j & 31
//   _mm256_permutevar8x32_epi32  the hit lanes to the front (float64 values: 4 at a time, with a
//                                16-entry table of lane pairs)
// The row is checked on the way (as filter_hits does): ids against d, values for NaN/inf.

// Lane permutations that pack the set lanes of a mask to the front, as bytes: for each mask of
// Lanes bits, the Width 32-bit lanes of every set lane (Width 2: a float64 as two halves).
template <int Lanes, int Width>
struct CompressTable {
    alignas(64) uint8_t lanes[1 << Lanes][8];
    constexpr CompressTable() : lanes() {
        for (int m = 0; m < (1 << Lanes); ++m) {
            int q = 0;
            for (int l = 0; l < Lanes; ++l)
                if (m >> l & 1)
                    for (int h = 0; h < Width; ++h) lanes[m][q++] = static_cast<uint8_t>(Width * l + h);
        }
    }
};
inline constexpr CompressTable<8, 1> kCompressLanes{};
inline constexpr CompressTable<4, 2> kCompressPairs{};

inline __m256i lane_perm(const uint8_t* lanes) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(lanes)));
}

// All-ones lanes where a value is NaN or inf, 8 values at a time.
inline __m256i nonfinite8(const float* v) {
    const __m256i e = _mm256_set1_epi32(0x7F800000);
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
    return _mm256_cmpeq_epi32(_mm256_and_si256(b, e), e);
}
inline __m256i nonfinite8(const double* v) {
    const __m256i e = _mm256_set1_epi64x(0x7FF0000000000000ll);
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 4));
    return _mm256_or_si256(_mm256_cmpeq_epi64(_mm256_and_si256(b0, e), e),
                           _mm256_cmpeq_epi64(_mm256_and_si256(b1, e), e));
}

// The 8 values at v of the lanes set in mask, packed to dst (perm: kCompressLanes of mask).
inline void compress_values(const float* v, int /*mask*/, __m256i perm, float* dst) {
    _mm256_storeu_ps(dst, _mm256_permutevar8x32_ps(_mm256_loadu_ps(v), perm));
}
inline void compress_values(const double* v, int mask, __m256i, double* dst) {
    const int lo = mask & 15;
    const __m256 a = _mm256_castpd_ps(_mm256_loadu_pd(v)), b = _mm256_castpd_ps(_mm256_loadu_pd(v + 4));
    _mm256_storeu_ps(reinterpret_cast<float*>(dst), _mm256_permutevar8x32_ps(a, lane_perm(kCompressPairs.lanes[lo])));
    _mm256_storeu_ps(reinterpret_cast<float*>(dst + __builtin_popcount(static_cast<unsigned>(lo))),
                     _mm256_permutevar8x32_ps(b, lane_perm(kCompressPairs.lanes[mask >> 4])));
}

// Ids are clamped to d - 1 before the gather (a lane that changed marks the row bad), so a bad id
// never reads outside the bitmap.
template <class T>
int64_t packed_hits(const int32_t* ind, const T* val, int64_t len, int64_t d, const uint32_t* bits,
                    uint32_t* jids, T* vals) {
    const __m256i low5 = _mm256_set1_epi32(31);
    const __m256i last = _mm256_set1_epi32(static_cast<int>(d - 1));
    __m256i clamped = _mm256_setzero_si256(), nonfinite = _mm256_setzero_si256();
    // Two passes per chunk of vectors: the gathers and bit tests first (independent of each
    // other, so several gathers are in flight), then the packing, whose stores wait on the count
    // of hits so far. One loop doing both measured 8 % slower over the whole kernel (process-level
    // A/B, 200,000 x 2^20 rows of 100 entries).
    constexpr int64_t kChunk = 32;  // vectors per pass
    uint8_t masks[kChunk];
    const int64_t nv = len / 8;
    int64_t m = 0;
    for (int64_t c0 = 0; c0 < nv; c0 += kChunk) {
        const int64_t c1 = std::min(nv, c0 + kChunk);
        for (int64_t c = c0; c < c1; ++c) {
            const __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ind + 8 * c));
            const __m256i j = _mm256_min_epu32(id, last);
            clamped = _mm256_or_si256(clamped, _mm256_xor_si256(j, id));
            const __m256i w = _mm256_i32gather_epi32(reinterpret_cast<const int*>(bits), _mm256_srli_epi32(j, 5), 4);
            const __m256i top = _mm256_sllv_epi32(w, _mm256_andnot_si256(j, low5));
            masks[c - c0] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(top)));
        }
        for (int64_t c = c0; c < c1; ++c) {
            const int mask = masks[c - c0];
            const __m256i j = _mm256_min_epu32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ind + 8 * c)), last);
            nonfinite = _mm256_or_si256(nonfinite, nonfinite8(val + 8 * c));
            const __m256i perm = lane_perm(kCompressLanes.lanes[mask]);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(jids + m), _mm256_permutevar8x32_epi32(j, perm));
            compress_values(val + 8 * c, mask, perm, vals + m);
            m += __builtin_popcount(static_cast<unsigned>(mask));
        }
    }
    const int64_t e = 8 * nv;
    uint32_t bad_id = !_mm256_testz_si256(clamped, clamped);
    uint32_t bad_value = !_mm256_testz_si256(nonfinite, nonfinite);
    m += projection_generic::filter_hits(ind + e, val + e, len - e, d, bits, jids + m, vals + m,
                                         bad_id, bad_value);
    if (bad_id) projection_generic::throw_bad_ids(d);
    if (bad_value) projection_generic::throw_bad_values();
    return m;
}

inline void register_dense_avx2(ProjectionKernels& t) {
    t.csr_dense_f32 = &csr_dense<F32>;
    t.csr_dense_f64 = &csr_dense<F64>;
    t.fastrp_propagate = &fastrp_propagate;
    t.srp_packed_f32 = &projection_generic::srp_packed<float, packed_hits<float>>;
    t.srp_packed_f64 = &projection_generic::srp_packed<double, packed_hits<double>>;
}

}  // namespace projection_avx2
}  // namespace embkern::cpu::EMBKERN_ISA_NS
