// Hand-written AVX2/FMA lowrank kernels (used by the avx2 and avx512 tiers).
//
// | kernel | tile                    | per k / per non-zero                              |
// |--------|-------------------------|---------------------------------------------------|
// | gemm   | 6 x 16 f32, 6 x 8 f64   | 2 panel loads, 6 broadcasts, 12 vfmadd (12 accs) |
// | gemm_rows | the same tile        | the same, broadcasts from 6 row pointers          |
// | spmm   | 16 f32 / 8 f64 tokens   | 1 broadcast, 2 loads, 2 vfmadd; 4 partial sums    |
// | pack_b | 16 rows x 8 inner (f32) | two 8 x 8 in-register transposes                  |
//
// The FMA is explicit (_mm256_fmadd_*), so these tiers round a fused multiply-add where the
// scalar tier rounds twice; the lowrank contract is closeness to the float64 reference, not
// bit-equality across tiers. Within a tier results do not depend on the thread count.
#pragma once
#include <immintrin.h>

#include "lowrank/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

namespace lowrank_avx2 {

struct F32 {
    using T = float;
    using R = __m256;
    static constexpr int W = 8;
    static R zero() { return _mm256_setzero_ps(); }
    static R load(const T* p) { return _mm256_loadu_ps(p); }
    static R bcast(const T* p) { return _mm256_broadcast_ss(p); }
    static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
    static R add(R a, R b) { return _mm256_add_ps(a, b); }
    static void store(T* p, R v) { _mm256_storeu_ps(p, v); }
};

struct F64 {
    using T = double;
    using R = __m256d;
    static constexpr int W = 4;
    static R zero() { return _mm256_setzero_pd(); }
    static R load(const T* p) { return _mm256_loadu_pd(p); }
    static R bcast(const T* p) { return _mm256_broadcast_sd(p); }
    static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
    static R add(R a, R b) { return _mm256_add_pd(a, b); }
    static void store(T* p, R v) { _mm256_storeu_pd(p, v); }
};

// A operands of the register tile: the packed block ([k][MR], one tile) or MR rows read in
// place. at(i, k) is row i's element k.
template <class T>
struct PackedTileA {
    const T* a;
    const T* at(int i, int64_t k) const { return a + k * kLrMR + i; }
};

template <class T>
struct RowsTileA {
    const T* r[kLrMR];
    const T* at(int i, int64_t k) const { return r[i] + k; }
};

#define EMBKERN_LR_ROW(i)                        \
    x = V::bcast(a.at(i, k));                    \
    c##i##0 = V::fma(x, b0, c##i##0);            \
    c##i##1 = V::fma(x, b1, c##i##1);

// One MR x NR tile: sum over k < kc of A rows times the B panel b ([k][NR]), stored (mv x nv
// valid) into C rows cr at column col, added to C when acc, plus bias when given.
template <class V, class A>
__attribute__((always_inline)) inline void tile(const A& a, const typename V::T* b, int64_t kc,
                                                typename V::T* const* cr, int64_t col, int64_t mv,
                                                int64_t nv, const typename V::T* bias_p, bool acc) {
    using T = typename V::T;
    using R = typename V::R;
    constexpr int NR = 2 * V::W;
    constexpr int MR = static_cast<int>(kLrMR);
    if (acc)  // the tile's C lines arrive while the k loop runs
        for (int64_t i = 0; i < mv; ++i) _mm_prefetch(reinterpret_cast<const char*>(cr[i] + col), _MM_HINT_T0);
    R c00 = V::zero(), c01 = V::zero(), c10 = V::zero(), c11 = V::zero();
    R c20 = V::zero(), c21 = V::zero(), c30 = V::zero(), c31 = V::zero();
    R c40 = V::zero(), c41 = V::zero(), c50 = V::zero(), c51 = V::zero();
    auto step = [&](int64_t k) __attribute__((always_inline)) {
        const R b0 = V::load(b + k * NR), b1 = V::load(b + k * NR + V::W);
        R x;
        EMBKERN_LR_ROW(0)
        EMBKERN_LR_ROW(1)
        EMBKERN_LR_ROW(2)
        EMBKERN_LR_ROW(3)
        EMBKERN_LR_ROW(4)
        EMBKERN_LR_ROW(5)
    };
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) step(k);
    if (nv == NR) {
        // Row by row straight from the accumulators (an indexed array of them would be
        // spilled to the stack, which costs as much as the k loop when kc is a rank).
#define EMBKERN_LR_STORE(i)                                                  \
    if (i < mv) {                                                            \
        T* c = cr[i] + col;                                                  \
        R v0 = c##i##0, v1 = c##i##1;                                        \
        if (acc) {                                                           \
            v0 = V::add(V::load(c), v0);                                     \
            v1 = V::add(V::load(c + V::W), v1);                              \
        }                                                                    \
        if (bias_p) {                                                        \
            v0 = V::add(v0, V::load(bias_p));                                \
            v1 = V::add(v1, V::load(bias_p + V::W));                         \
        }                                                                    \
        V::store(c, v0);                                                     \
        V::store(c + V::W, v1);                                              \
    }
        EMBKERN_LR_STORE(0)
        EMBKERN_LR_STORE(1)
        EMBKERN_LR_STORE(2)
        EMBKERN_LR_STORE(3)
        EMBKERN_LR_STORE(4)
        EMBKERN_LR_STORE(5)
#undef EMBKERN_LR_STORE
    } else {
        alignas(64) T t[MR * NR];
#define EMBKERN_LR_SPILL(i)                    \
    V::store(t + i * NR, c##i##0);             \
    V::store(t + i * NR + V::W, c##i##1);
        EMBKERN_LR_SPILL(0)
        EMBKERN_LR_SPILL(1)
        EMBKERN_LR_SPILL(2)
        EMBKERN_LR_SPILL(3)
        EMBKERN_LR_SPILL(4)
        EMBKERN_LR_SPILL(5)
#undef EMBKERN_LR_SPILL
        lowrank_detail::store_tile<T, NR>(t, mv, nv, cr, col, bias_p, acc);
    }
}
#undef EMBKERN_LR_ROW

template <class V>
void gemm(const typename V::T* ap, int64_t m, const typename V::T* bp, int64_t bstride, int64_t n,
          int64_t kc, typename V::T* const* crows, int64_t c0, const typename V::T* bias, bool acc) {
    using T = typename V::T;
    constexpr int NR = 2 * V::W;
    constexpr int MR = static_cast<int>(kLrMR);
    const int64_t npanels = (n + NR - 1) / NR, ntiles = (m + MR - 1) / MR;
    auto one = [&](int64_t p, int64_t t) __attribute__((always_inline)) {
        tile<V>(PackedTileA<T>{ap + t * kc * MR}, bp + p * bstride, kc, crows + t * MR, c0 + p * NR,
                std::min<int64_t>(MR, m - t * MR), std::min<int64_t>(NR, n - p * NR),
                bias ? bias + p * NR : nullptr, acc);
    };
    // Panels outer keeps one B panel in L1 across the row tiles (the usual order). When all of
    // B fits in L2 (a rank-sized kc), rows outer instead: each tile's C rows are then written
    // front to back, a handful of streams the prefetcher follows, not one line per row per panel.
    if (kc * npanels * NR * static_cast<int64_t>(sizeof(T)) <= kLrBlockL2Bytes) {
        for (int64_t t = 0; t < ntiles; ++t)
            for (int64_t p = 0; p < npanels; ++p) one(p, t);
    } else {
        for (int64_t p = 0; p < npanels; ++p)
            for (int64_t t = 0; t < ntiles; ++t) one(p, t);
    }
}

// Rows outer: a tile's A rows (MR x kc) stay in L1/L2 across the panels. Rows past m repeat
// the last row (their results are not stored).
template <class V>
void gemm_rows(const typename V::T* const* arows, int64_t m, int64_t k0, const typename V::T* bp,
               int64_t bstride, int64_t n, int64_t kc, typename V::T* const* crows, int64_t c0,
               const typename V::T* bias, bool acc) {
    using T = typename V::T;
    constexpr int NR = 2 * V::W;
    constexpr int MR = static_cast<int>(kLrMR);
    const int64_t npanels = (n + NR - 1) / NR, ntiles = (m + MR - 1) / MR;
    for (int64_t t = 0; t < ntiles; ++t) {
        const int64_t mv = std::min<int64_t>(MR, m - t * MR);
        RowsTileA<T> a;
        for (int64_t i = 0; i < MR; ++i) a.r[i] = arows[t * MR + std::min(i, mv - 1)] + k0;
        for (int64_t p = 0; p < npanels; ++p)
            tile<V>(a, bp + p * bstride, kc, crows + t * MR, c0 + p * NR, mv,
                    std::min<int64_t>(NR, n - p * NR), bias ? bias + p * NR : nullptr, acc);
    }
}

template <class V>
void spmm(const typename V::T* xt, const int64_t* indptr, const int32_t* indices,
          const typename V::T* values, int64_t n0, int64_t n1, typename V::T* out) {
    using T = typename V::T;
    using R = typename V::R;
    constexpr int SW = 2 * V::W;
    for (int64_t r = n0; r < n1; ++r) {
        R s00 = V::zero(), s01 = V::zero(), s10 = V::zero(), s11 = V::zero();
        R s20 = V::zero(), s21 = V::zero(), s30 = V::zero(), s31 = V::zero();
        const int64_t p1 = indptr[r + 1];
        int64_t p = indptr[r];
        for (; p + 4 <= p1; p += 4) {
            const T* x0 = xt + static_cast<int64_t>(indices[p]) * SW;
            const T* x1 = xt + static_cast<int64_t>(indices[p + 1]) * SW;
            const T* x2 = xt + static_cast<int64_t>(indices[p + 2]) * SW;
            const T* x3 = xt + static_cast<int64_t>(indices[p + 3]) * SW;
            R v = V::bcast(values + p);
            s00 = V::fma(v, V::load(x0), s00);
            s01 = V::fma(v, V::load(x0 + V::W), s01);
            v = V::bcast(values + p + 1);
            s10 = V::fma(v, V::load(x1), s10);
            s11 = V::fma(v, V::load(x1 + V::W), s11);
            v = V::bcast(values + p + 2);
            s20 = V::fma(v, V::load(x2), s20);
            s21 = V::fma(v, V::load(x2 + V::W), s21);
            v = V::bcast(values + p + 3);
            s30 = V::fma(v, V::load(x3), s30);
            s31 = V::fma(v, V::load(x3 + V::W), s31);
        }
        for (; p < p1; ++p) {
            const T* x0 = xt + static_cast<int64_t>(indices[p]) * SW;
            const R v = V::bcast(values + p);
            s00 = V::fma(v, V::load(x0), s00);
            s01 = V::fma(v, V::load(x0 + V::W), s01);
        }
        T* o = out + (r - n0) * SW;
        V::store(o, V::add(V::add(s00, s10), V::add(s20, s30)));
        V::store(o + V::W, V::add(V::add(s01, s11), V::add(s21, s31)));
    }
}

// Packs 6 rows x 8 columns at a time with an 8 x 8 transpose (rows 6 and 7 zero): column j
// (6 values + 2 zeros) is stored at dst + (k + j) * 6, each store's 2 extra lanes overwritten by
// the next one (the last spills into the buffer's 8-element tail or the next tile, packed later).
inline void pack_a_f32(const float* const* rows, int64_t m, int64_t k0, int64_t kc, float* ap,
                       int64_t next) {
    constexpr int64_t MR = kLrMR;
    const int64_t ntiles = (m + MR - 1) / MR;
    const int64_t full = kc < 8 ? 0 : m / MR;  // tiles packed here; the generic loop does the rest
    const __m256 z = _mm256_setzero_ps();
    for (int64_t t = 0; t < full; ++t) {
        const float* r[MR];
        for (int64_t i = 0; i < MR; ++i) {
            r[i] = rows[t * MR + i] + k0;
            for (int64_t l = 0; l < next; l += 16) _mm_prefetch(reinterpret_cast<const char*>(r[i] + kc + l), _MM_HINT_T1);
        }
        float* dst = ap + t * kc * MR;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            const __m256 a0 = _mm256_loadu_ps(r[0] + k), a1 = _mm256_loadu_ps(r[1] + k);
            const __m256 a2 = _mm256_loadu_ps(r[2] + k), a3 = _mm256_loadu_ps(r[3] + k);
            const __m256 a4 = _mm256_loadu_ps(r[4] + k), a5 = _mm256_loadu_ps(r[5] + k);
            const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
            const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
            const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
            const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 s4 = _mm256_shuffle_ps(t4, z, 0x44), s5 = _mm256_shuffle_ps(t4, z, 0xEE);
            const __m256 s6 = _mm256_shuffle_ps(t5, z, 0x44), s7 = _mm256_shuffle_ps(t5, z, 0xEE);
            float* d = dst + k * MR;
            _mm256_storeu_ps(d + 0 * MR, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_storeu_ps(d + 1 * MR, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_storeu_ps(d + 2 * MR, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_storeu_ps(d + 3 * MR, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_storeu_ps(d + 4 * MR, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_storeu_ps(d + 5 * MR, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_storeu_ps(d + 6 * MR, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_storeu_ps(d + 7 * MR, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
        for (; k < kc; ++k)
            for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = r[i][k];
    }
    // After the SIMD tiles, whose last store spills 2 lanes into the next tile's start.
    if (full < ntiles)
        lowrank_detail::pack_a_generic<float>(rows + full * MR, m - full * MR, k0, kc,
                                              ap + full * kc * MR, next);
}

// In-register transpose of 8 rows of 8 floats: on return v[j] holds column j.
__attribute__((always_inline)) inline void transpose8(__m256 v[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Full panels 8 inner indices at a time: two 8 x 8 transposes (rows 0-7 and 8-15 of the
// panel), then the scaling in the generic form's order ((v * colscale) * scalar, so the bits
// match it). Partial panels and the last k % 8 indices go through the generic loop.
inline void pack_b_f32(const float* b, int64_t n, int64_t k, const float* colscale,
                       const float* scalar, int64_t p0, int64_t p1, float* out) {
    constexpr int64_t NR = kLrNR32;
    const int64_t k8 = k / 8 * 8;
    const int64_t full = std::min(p1, n / NR);  // panels [p0, full) have all NR rows
    for (int64_t p = p0; p < full; ++p) {
        float* dst = out + p * k * NR;
        const float* src = b + p * NR * k;
        for (int64_t kk = 0; kk < k8; kk += 8) {
            for (int64_t h = 0; h < 2; ++h) {
                __m256 v[8];
                for (int j = 0; j < 8; ++j) v[j] = _mm256_loadu_ps(src + (h * 8 + j) * k + kk);
                transpose8(v);
                for (int j = 0; j < 8; ++j) {
                    __m256 w = v[j];
                    if (colscale) w = _mm256_mul_ps(w, _mm256_set1_ps(colscale[kk + j]));
                    if (scalar) w = _mm256_mul_ps(w, _mm256_set1_ps(*scalar));
                    _mm256_storeu_ps(dst + (kk + j) * NR + h * 8, w);
                }
            }
        }
        for (int64_t j = 0; j < NR; ++j)
            for (int64_t kk = k8; kk < k; ++kk) {
                float v = src[j * k + kk];
                if (colscale) v = v * colscale[kk];
                if (scalar) v = v * *scalar;
                dst[kk * NR + j] = v;
            }
    }
    if (std::max(p0, full) < p1)
        lowrank_detail::pack_b_generic<float, static_cast<int>(NR)>(b, n, k, colscale, scalar,
                                                                     std::max(p0, full), p1, out);
}

}  // namespace lowrank_avx2

inline void register_lowrank_avx2(LowrankKernels& t) {
    t.pack_a_f32 = lowrank_avx2::pack_a_f32;
    t.gemm_f32 = lowrank_avx2::gemm<lowrank_avx2::F32>;
    t.gemm_f64 = lowrank_avx2::gemm<lowrank_avx2::F64>;
    t.gemm_rows_f32 = lowrank_avx2::gemm_rows<lowrank_avx2::F32>;
    t.gemm_rows_f64 = lowrank_avx2::gemm_rows<lowrank_avx2::F64>;
    t.pack_b_f32 = lowrank_avx2::pack_b_f32;
    t.spmm_f32 = lowrank_avx2::spmm<lowrank_avx2::F32>;
    t.spmm_f64 = lowrank_avx2::spmm<lowrank_avx2::F64>;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
