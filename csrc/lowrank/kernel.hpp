// Generic lowrank kernels (plain C++), compiled once per ISA tier; tiers with hand-written SIMD
// (simd_avx2.hpp) override the entries after register_lowrank_generic.
//
// Accumulation: float32 in float32, float64 in float64, separate multiply and add (the tier
// files build with -ffp-contract=off). Each output element is a sum over k in increasing order
// within one kc block; blocks are added to C in order by the driver, so a result never depends
// on how rows are split among threads. The SpMM sums the non-zeros of a row in four interleaved
// partial sums (p mod 4), combined as (s0 + s1) + (s2 + s3), like the SIMD kernels.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/dispatch.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

namespace lowrank_detail {

// Writes the valid mv x nv part of an MR x NR tile (row stride NR) into C.
template <class T, int NR>
inline void store_tile(const T* tile, int64_t mv, int64_t nv, T* const* crows, int64_t col,
                       const T* bias, bool acc) {
    for (int64_t i = 0; i < mv; ++i) {
        T* c = crows[i] + col;
        for (int64_t j = 0; j < nv; ++j) {
            T v = tile[i * NR + j];
            if (acc) v = c[j] + v;
            if (bias) v = v + bias[j];
            c[j] = v;
        }
    }
}

template <class T, int NR>
void gemm_generic(const T* ap, int64_t m, const T* bp, int64_t bstride, int64_t n, int64_t kc,
                  T* const* crows, int64_t c0, const T* bias, bool acc) {
    constexpr int MR = static_cast<int>(kLrMR);
    const int64_t npanels = (n + NR - 1) / NR, ntiles = (m + MR - 1) / MR;
    for (int64_t p = 0; p < npanels; ++p) {
        const T* b = bp + p * bstride;
        const int64_t nv = std::min<int64_t>(NR, n - p * NR);
        for (int64_t t = 0; t < ntiles; ++t) {
            const T* a = ap + t * kc * MR;
            T c[MR * NR] = {};
            for (int64_t k = 0; k < kc; ++k)
                for (int i = 0; i < MR; ++i) {
                    const T ai = a[k * MR + i];
                    for (int j = 0; j < NR; ++j) c[i * NR + j] = c[i * NR + j] + ai * b[k * NR + j];
                }
            const int64_t mv = std::min<int64_t>(MR, m - t * MR);
            store_tile<T, NR>(c, mv, nv, crows + t * MR, c0 + p * NR, bias ? bias + p * NR : nullptr,
                              acc);
        }
    }
}

template <class T, int NR>
void gemm_rows_generic(const T* const* arows, int64_t m, int64_t k0, const T* bp, int64_t bstride,
                       int64_t n, int64_t kc, T* const* crows, int64_t c0, const T* bias, bool acc) {
    constexpr int MR = static_cast<int>(kLrMR);
    const int64_t npanels = (n + NR - 1) / NR, ntiles = (m + MR - 1) / MR;
    for (int64_t t = 0; t < ntiles; ++t) {
        const int64_t mv = std::min<int64_t>(MR, m - t * MR);
        for (int64_t p = 0; p < npanels; ++p) {
            const T* b = bp + p * bstride;
            const int64_t nv = std::min<int64_t>(NR, n - p * NR);
            T c[MR * NR] = {};
            for (int64_t i = 0; i < mv; ++i) {
                const T* a = arows[t * MR + i] + k0;
                for (int64_t k = 0; k < kc; ++k)
                    for (int j = 0; j < NR; ++j) c[i * NR + j] = c[i * NR + j] + a[k] * b[k * NR + j];
            }
            store_tile<T, NR>(c, mv, nv, crows + t * MR, c0 + p * NR, bias ? bias + p * NR : nullptr,
                              acc);
        }
    }
}

// Packs panels [p0, p1) of b (n x k, row-major) scaled by colscale[kk] (per inner index) and
// `scalar`: panel p holds rows p * NR .. p * NR + NR - 1 as [k][NR], zero past n. The transpose
// goes 64 inner indices at a time so its writes stay in L1.
template <class T, int NR>
void pack_b_generic(const T* b, int64_t n, int64_t k, const T* colscale, const T* scalar, int64_t p0,
                    int64_t p1, T* out) {
    constexpr int64_t KB = 64;
    for (int64_t p = p0; p < p1; ++p) {
        T* dst = out + p * k * NR;
        for (int64_t kb = 0; kb < k; kb += KB) {
            const int64_t ke = std::min(k, kb + KB);
            for (int64_t j = 0; j < NR; ++j) {
                const int64_t row = p * NR + j;
                if (row >= n) {
                    for (int64_t kk = kb; kk < ke; ++kk) dst[kk * NR + j] = T(0);
                    continue;
                }
                const T* src = b + row * k;
                if (colscale && scalar) {
                    for (int64_t kk = kb; kk < ke; ++kk) dst[kk * NR + j] = (src[kk] * colscale[kk]) * *scalar;
                } else if (colscale) {
                    for (int64_t kk = kb; kk < ke; ++kk) dst[kk * NR + j] = src[kk] * colscale[kk];
                } else if (scalar) {
                    for (int64_t kk = kb; kk < ke; ++kk) dst[kk * NR + j] = src[kk] * *scalar;
                } else {
                    for (int64_t kk = kb; kk < ke; ++kk) dst[kk * NR + j] = src[kk];
                }
            }
        }
    }
}

template <class T, int SW>
void spmm_generic(const T* xt, const int64_t* indptr, const int32_t* indices, const T* values,
                  int64_t n0, int64_t n1, T* out) {
    for (int64_t r = n0; r < n1; ++r) {
        T s[4][SW] = {};
        const int64_t p0 = indptr[r], p1 = indptr[r + 1];
        int64_t p = p0;
        for (; p + 4 <= p1; p += 4)
            for (int u = 0; u < 4; ++u) {
                const T v = values[p + u];
                const T* x = xt + static_cast<int64_t>(indices[p + u]) * SW;
                for (int l = 0; l < SW; ++l) s[u][l] = s[u][l] + v * x[l];
            }
        for (; p < p1; ++p) {
            const T v = values[p];
            const T* x = xt + static_cast<int64_t>(indices[p]) * SW;
            for (int l = 0; l < SW; ++l) s[0][l] = s[0][l] + v * x[l];
        }
        T* o = out + (r - n0) * SW;
        for (int l = 0; l < SW; ++l) o[l] = (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]);
    }
}

template <class T>
void pack_a_generic(const T* const* rows, int64_t m, int64_t k0, int64_t kc, T* ap, int64_t next) {
    constexpr int64_t MR = kLrMR;
    constexpr int64_t line = 64 / sizeof(T);
    const int64_t ntiles = (m + MR - 1) / MR;
    for (int64_t t = 0; t < ntiles; ++t) {
        T* dst = ap + t * kc * MR;
        for (int64_t i = 0; i < MR; ++i) {
            const int64_t row = t * MR + i;
            if (row < m) {
                const T* src = rows[row] + k0;
                for (int64_t l = 0; l < next; l += line) __builtin_prefetch(src + kc + l, 0, 2);
                for (int64_t kk = 0; kk < kc; ++kk) dst[kk * MR + i] = src[kk];
            } else {
                for (int64_t kk = 0; kk < kc; ++kk) dst[kk * MR + i] = T(0);
            }
        }
    }
}

}  // namespace lowrank_detail

inline void register_lowrank_generic(LowrankKernels& t) {
    t.pack_a_f32 = lowrank_detail::pack_a_generic<float>;
    t.pack_a_f64 = lowrank_detail::pack_a_generic<double>;
    t.gemm_f32 = lowrank_detail::gemm_generic<float, static_cast<int>(kLrNR32)>;
    t.gemm_f64 = lowrank_detail::gemm_generic<double, static_cast<int>(kLrNR64)>;
    t.gemm_rows_f32 = lowrank_detail::gemm_rows_generic<float, static_cast<int>(kLrNR32)>;
    t.gemm_rows_f64 = lowrank_detail::gemm_rows_generic<double, static_cast<int>(kLrNR64)>;
    t.pack_b_f32 = lowrank_detail::pack_b_generic<float, static_cast<int>(kLrNR32)>;
    t.pack_b_f64 = lowrank_detail::pack_b_generic<double, static_cast<int>(kLrNR64)>;
    t.spmm_f32 = lowrank_detail::spmm_generic<float, static_cast<int>(kLrSW32)>;
    t.spmm_f64 = lowrank_detail::spmm_generic<double, static_cast<int>(kLrSW64)>;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
