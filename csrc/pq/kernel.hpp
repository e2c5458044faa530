// Product quantization: the generic body of each PQ kernel, compiled once per ISA tier.
//
// Layouts (faiss's, see specs/binary_pq.md §1): centroids [m][ksub][dsub]; codes are the m
// indices as a little-endian bit stream: 8 bits -> byte i is index i; 4 bits -> byte i/2, even i
// in the low nibble. The driver hands the kernels centroids transposed per sub-space,
// [m][dsub][ksub], so that every distance loop runs over contiguous centroids (SIMD lanes).
//
// Distances to centroids are computed as sum over the sub-vector of (x - c)^2, dimension by
// dimension in order, in float32 with separate multiply and add (the build disables FP
// contraction), so every tier and backend produce the same bits.
//
// ADC scans keep LUT_LANES queries in SIMD lanes: the table is laid out [m][ksub][lane], so one
// code byte selects one vector of LUT_LANES partial distances and a single add advances all those
// queries at once. Each lane still sums its m entries in order 0..m-1, so a lane's result is the
// plain sequential sum, whichever tier runs it. Tables stay in L1/L2 (m*ksub*32 bytes).
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__FMA__)
#include <immintrin.h>
#endif

#include "common/dispatch.hpp"
#include "common/heap.hpp"

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {

constexpr int64_t kLanes = kPqLutLanes;

// ---- distances to centroids -----------------------------------------------------------------

// Lookup tables round like faiss's (so fast-scan's quantized tables, and hence its distances,
// agree with IndexPQFastScan): for dsub 2, 4 and 8 faiss sums the products as a chain of fused
// multiply-adds (dsub 2 with 4-bit codes excepted); otherwise as separate multiply and add.
// std::fma rounds once on every tier (an FMA instruction where the tier has one, libm otherwise).
inline bool fused_tables(int64_t dsub, int64_t ksub) {
    return dsub == 4 || dsub == 8 || (dsub == 2 && ksub == 256);
}

// faiss's 12-dimension form: four lanes a_i = fma(p_{8+i}, fma(p_i, ., p_{4+i})), folded as
// (a0 + a2) + (a1 + a3), where p_t is (x_t - c_t) squared for L2 or x_t * c_t for IP.
template <bool IP>
inline float dot12(const float* x, const float* ct, int64_t ksub, int64_t j) {
    float u[12], v[12];
    for (int t = 0; t < 12; ++t) {
        const float c = ct[t * ksub + j];
        u[t] = IP ? x[t] : x[t] - c;
        v[t] = IP ? c : x[t] - c;
    }
    float a[4];
    for (int i = 0; i < 4; ++i) {
        a[i] = std::fma(u[i], v[i], u[4 + i] * v[4 + i]);
        a[i] = std::fma(u[8 + i], v[8 + i], a[i]);
    }
    return (a[0] + a[2]) + (a[1] + a[3]);
}

// Squared L2 distances (IP: inner products) of one sub-vector to ksub centroids (transposed:
// ct[t * ksub + j]): a sum over t of u_t * v_t with u = v = x - c for L2, u = x, v = c for IP.
template <bool IP>
inline void table_row(const float* x, const float* ct, int64_t dsub, int64_t ksub, float* out) {
    if (dsub == 12) {
        for (int64_t j = 0; j < ksub; ++j) out[j] = dot12<IP>(x, ct, ksub, j);
        return;
    }
    const bool fused = fused_tables(dsub, ksub);
    for (int64_t j = 0; j < ksub; ++j) out[j] = 0.0f;
    for (int64_t t = 0; t < dsub; ++t) {
        const float xt = x[t];
        const float* c = ct + t * ksub;
        for (int64_t j = 0; j < ksub; ++j) {
            const float u = IP ? xt : xt - c[j];
            const float v = IP ? c[j] : u;
            out[j] = fused ? std::fma(u, v, out[j]) : out[j] + u * v;
        }
    }
}

// out[i][s][j]: distance (L2 or IP) of x_i's sub-vector s to centroid j.
inline void distance_tables(const float* x, int64_t n, int64_t dim, const float* ct, int64_t m,
                            int64_t ksub, bool ip, float* out) {
    const int64_t dsub = dim / m;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t s = 0; s < m; ++s) {
            const float* xs = x + i * dim + s * dsub;
            const float* cs = ct + s * dsub * ksub;
            float* o = out + (i * m + s) * ksub;
            if (ip)
                table_row<true>(xs, cs, dsub, ksub, o);
            else
                table_row<false>(xs, cs, dsub, ksub, o);
        }
}

// 8-float vectors (GCC/Clang vector extensions): element-wise IEEE arithmetic, so every tier
// computes the same bits; the tier's flags decide the registers (2 x SSE, AVX, NEON).
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

// Unaligned access through a 4-byte-aligned vector type: one vmovups, no stack round trip.
typedef float v8f_unaligned __attribute__((vector_size(32), aligned(4), __may_alias__));

inline v8f load8(const float* p) { return *reinterpret_cast<const v8f_unaligned*>(p); }
inline void store8(float* p, v8f v) { *reinterpret_cast<v8f_unaligned*>(p) = v; }

// a * b + c rounded once, per lane: the FMA instruction where the tier has one; elsewhere an exact
// emulation (the product is exact in double; a double rounding of the sum is caught with the
// error of the double addition and nudged toward the true value before rounding to float).
inline float fma_exact(float a, float b, float c) {
    const double p = static_cast<double>(a) * b, s = p + c;
    const double bb = s - p, err = (p - (s - bb)) + (c - bb);
    const float f = static_cast<float>(s);
    if (err != 0.0 && static_cast<double>(f) != s) {
        // s is inexact and not a float: only a tie between two floats can round wrongly
        const double lo = static_cast<double>(std::nextafter(f, -HUGE_VALF));
        const double hi = static_cast<double>(std::nextafter(f, HUGE_VALF));
        const double other = static_cast<double>(f) < s ? hi : lo;
        if (s - static_cast<double>(f) == other - s || static_cast<double>(f) - s == s - other)
            return static_cast<float>(std::nextafter(s, err > 0 ? HUGE_VAL : -HUGE_VAL));
    }
    return f;
}

inline v8f fma8(v8f a, v8f b, v8f c) {
#if defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = fma_exact(a[l], b[l], c[l]);
    return r;
#endif
}

// Squared L2 distances of P sub-vectors to centroids j0 .. j0 + 8G - 1 (ct: [dsub][ksub]):
// acc[p][g] lane l for centroid j0 + 8g + l. Fused: dimensions summed as a chain of FMAs, as
// faiss encodes sub-vectors of 2, 4 or 8 dims. The P*G partial sums are independent chains, which
// hides the add latency (each chain must sum dimensions in order, so the order cannot be split).
template <int P, int64_t G, bool Fused>
inline void l2_partial(const float* const* xs, const float* ct, int64_t dsub, int64_t ksub, int64_t j0,
                       v8f (&acc)[P][G]) {
    for (int p = 0; p < P; ++p)
        for (int64_t g = 0; g < G; ++g) acc[p][g] = v8f{};
    for (int64_t t = 0; t < dsub; ++t) {
        const float* c = ct + t * ksub + j0;
        v8f cv[G];
        for (int64_t g = 0; g < G; ++g) cv[g] = load8(c + 8 * g);
        for (int p = 0; p < P; ++p) {
            const v8f xv = v8f{} + xs[p][t];
            for (int64_t g = 0; g < G; ++g) {
                const v8f diff = xv - cv[g];
                if constexpr (Fused)
                    acc[p][g] = fma8(diff, diff, acc[p][g]);
                else
                    acc[p][g] += diff * diff;
            }
        }
    }
}

// Squared L2 distances of P sub-vectors (of one sub-space) to its ksub centroids: out[p][j].
template <int P, int64_t G, bool Fused>
inline void l2_block(const float* const* xs, const float* ct, int64_t dsub, int64_t ksub, float* out) {
    for (int64_t j0 = 0; j0 < ksub; j0 += 8 * G) {
        v8f acc[P][G];
        l2_partial<P, G, Fused>(xs, ct, dsub, ksub, j0, acc);
        for (int p = 0; p < P; ++p)
            for (int64_t g = 0; g < G; ++g) store8(out + p * ksub + j0 + 8 * g, acc[p][g]);
    }
}

// Lowest lane holding the smallest of v's eight values (branch-free: the winner is random, so a
// branch per lane would mispredict).
inline int32_t lowest_min_lane(const v8f& v) {
    float mv = v[0];
    for (int l = 1; l < 8; ++l) mv = std::min(mv, v[l]);
    unsigned mask = 0;
    for (int l = 0; l < 8; ++l) mask |= static_cast<unsigned>(v[l] == mv) << l;
    return __builtin_ctz(mask);
}

// Lane-wise (value, index) minima of d[0..n), n a multiple of 32, over four groups of eight lanes
// (lane l of group g sees j = j0 + 8g + l); LAST keeps the last of equal values in a lane (<=),
// else the first (<). The four groups are then merged lane-wise: the smaller value wins, equal
// values go to the larger index (LAST) or the smaller one.
template <bool LAST>
inline void lane_minima(const float* d, int64_t n, v8f& bv, v8i& bi) {
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    v8f best[4];
    v8i besti[4];
    for (int g = 0; g < 4; ++g) {
        best[g] = v8f{} + HUGE_VALF;
        besti[g] = lane + 8 * g;
    }
    for (int64_t j0 = 0; j0 < n; j0 += 32)
        for (int g = 0; g < 4; ++g) {
            const v8f v = load8(d + j0 + 8 * g);
            v8i take;
            if constexpr (LAST)
                take = v <= best[g];
            else
                take = v < best[g];
            best[g] = take ? v : best[g];
            besti[g] = take ? lane + static_cast<int32_t>(j0 + 8 * g) : besti[g];
        }
    bv = best[0];
    bi = besti[0];
    for (int g = 1; g < 4; ++g) {
        const v8i tie = best[g] == bv;
        v8i later;
        if constexpr (LAST)
            later = besti[g] > bi;
        else
            later = besti[g] < bi;
        const v8i take = (best[g] < bv) | (tie & later);
        bv = take ? best[g] : bv;
        bi = take ? besti[g] : bi;
    }
}

// Index of the first minimum of d[0..n), n a multiple of 32.
inline int32_t argmin_first(const float* d, int64_t n) {
    v8f bv;
    v8i bi;
    lane_minima<false>(d, n, bv, bi);
    // Lanes hold distinct residues mod 8; among equal minima the smallest index wins.
    float mv = bv[0];
    for (int l = 1; l < 8; ++l) mv = std::min(mv, bv[l]);
    int32_t win = INT32_MAX;
    for (int l = 0; l < 8; ++l) win = std::min(win, bv[l] == mv ? bi[l] : INT32_MAX);
    return win;
}

// faiss's nearest-centroid rule for 2-, 4- and 8-dimensional sub-vectors (its SIMD argmin): lane
// l = j % 8 keeps its last minimum (<=), then the lowest lane with a strictly smaller value wins.
// It differs from the first minimum only on exact ties. n is a multiple of 8.
inline int32_t argmin_faiss_lanes(const float* d, int64_t n) {
    if (n % 32 == 0) {
        v8f bv;
        v8i bi;
        lane_minima<true>(d, n, bv, bi);
        return bi[lowest_min_lane(bv)];
    }
    float bv[8];
    int32_t bi[8];
    for (int l = 0; l < 8; ++l) {
        bv[l] = HUGE_VALF;
        bi[l] = l;
    }
    for (int64_t j = 0; j < n; ++j)
        if (d[j] <= bv[j % 8]) {
            bv[j % 8] = d[j];
            bi[j % 8] = static_cast<int32_t>(j);
        }
    int w = 0;
    for (int l = 1; l < 8; ++l)
        if (bv[l] < bv[w]) w = l;
    return bi[w];
}

inline int32_t argmin_first_any(const float* d, int64_t n) {
    if (n % 32 == 0) return argmin_first(d, n);
    int32_t b = 0;
    for (int64_t j = 1; j < n; ++j)
        if (d[j] < d[b]) b = static_cast<int32_t>(j);
    return b;
}

// Nearest centroid of P sub-vectors (of one sub-space) among its ksub centroids, without storing
// the distances: each block of 8*G distances is folded at once into a lane-wise running (value,
// index) minimum, in ascending centroid order, so the result is exactly argmin_faiss_lanes (Fused:
// each lane keeps its last minimum, then the lowest lane with the smallest value) or
// argmin_first_any (each lane keeps its first minimum, then the smallest index) of the row.
template <int P, int64_t G, bool Fused>
inline void l2_argmin_block(const float* const* xs, const float* ct, int64_t dsub, int64_t ksub,
                            int32_t* const* out) {
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    v8f bv[P];
    v8i bi[P];
    for (int p = 0; p < P; ++p) {
        bv[p] = v8f{} + HUGE_VALF;
        bi[p] = lane;
    }
    for (int64_t j0 = 0; j0 < ksub; j0 += 8 * G) {
        v8f acc[P][G];
        l2_partial<P, G, Fused>(xs, ct, dsub, ksub, j0, acc);
        for (int64_t g = 0; g < G; ++g) {
            const v8i idx = lane + static_cast<int32_t>(j0 + 8 * g);
            for (int p = 0; p < P; ++p) {
                v8i take;
                if constexpr (Fused)
                    take = acc[p][g] <= bv[p];
                else
                    take = acc[p][g] < bv[p];
                bv[p] = take ? acc[p][g] : bv[p];
                bi[p] = take ? idx : bi[p];
            }
        }
    }
    for (int p = 0; p < P; ++p) {
        if constexpr (Fused) {
            *out[p] = bi[p][lowest_min_lane(bv[p])];
        } else {
            float mv = bv[p][0];
            for (int l = 1; l < 8; ++l) mv = std::min(mv, bv[p][l]);
            int32_t win = INT32_MAX;
            for (int l = 0; l < 8; ++l) win = std::min(win, bv[p][l] == mv ? bi[p][l] : INT32_MAX);
            *out[p] = win;
        }
    }
}

// Nearest centroid (first on ties) of each sub-vector: out[i * m + s]. Two vectors at a time.
// ksub must be a multiple of 16 (PQ: 16 or 256).
template <bool Fused>
inline void assign_with(const float* x, int64_t n, int64_t dim, const float* ct, int64_t m,
                        int64_t ksub, int32_t* out) {
    const int64_t dsub = dim / m;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2)
        for (int64_t s = 0; s < m; ++s) {
            const float* xs[2] = {x + i * dim + s * dsub, x + (i + 1) * dim + s * dsub};
            int32_t* dst[2] = {out + i * m + s, out + (i + 1) * m + s};
            const float* cs = ct + s * dsub * ksub;
            if (ksub % 32 == 0)
                l2_argmin_block<2, 4, Fused>(xs, cs, dsub, ksub, dst);
            else
                l2_argmin_block<2, 2, Fused>(xs, cs, dsub, ksub, dst);
        }
    for (; i < n; ++i)
        for (int64_t s = 0; s < m; ++s) {
            const float* xs[1] = {x + i * dim + s * dsub};
            int32_t* dst[1] = {out + i * m + s};
            l2_argmin_block<1, 2, Fused>(xs, ct + s * dsub * ksub, dsub, ksub, dst);
        }
}

// Nearest centroid (first on ties) of each sub-vector: out[i * m + s]. Two vectors at a time.
// ksub must be a multiple of 16 (PQ: 16 or 256). Sub-vectors of 2, 4 or 8 dimensions are summed
// with FMAs and faiss's lane tie rule, others with separate multiply and add and the first
// minimum, which is how faiss rounds and breaks ties.
inline void assign(const float* x, int64_t n, int64_t dim, const float* ct, int64_t m,
                   int64_t ksub, int32_t* out) {
    const int64_t dsub = dim / m;
    if (dsub == 2 || dsub == 4 || dsub == 8)
        assign_with<true>(x, n, dim, ct, m, ksub, out);
    else
        assign_with<false>(x, n, dim, ct, m, ksub, out);
}

// Training's full assignment of n sub-vectors (dsub floats each, contiguous) to ksub centroids
// (ct: [dsub][ksub]): the label exactly as assign() picks it, its squared distance d1 and the
// smallest squared distance to any other centroid d2 (the k-means bounds start from these).
template <bool Fused>
inline void assign_top2_with(const float* x, int64_t n, int64_t dsub, const float* ct, int64_t ksub,
                             int32_t* label, float* d1, float* d2) {
    alignas(64) float dist[2 * 256];
    auto finish = [&](float* d, int64_t i) {
        const int32_t a = Fused ? argmin_faiss_lanes(d, ksub) : argmin_first_any(d, ksub);
        const float da = d[a];
        d[a] = HUGE_VALF;  // the smallest of the others: a plain vector minimum (ksub % 8 == 0)
        v8f mn = v8f{} + HUGE_VALF;
        for (int64_t j = 0; j < ksub; j += 8) {
            const v8f v = load8(d + j);
            mn = v < mn ? v : mn;
        }
        float second = mn[0];
        for (int l = 1; l < 8; ++l) second = std::min(second, mn[l]);
        label[i] = a;
        d1[i] = da;
        d2[i] = second;
    };
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const float* xs[2] = {x + i * dsub, x + (i + 1) * dsub};
        if (ksub % 32 == 0)
            l2_block<2, 4, Fused>(xs, ct, dsub, ksub, dist);
        else
            l2_block<2, 2, Fused>(xs, ct, dsub, ksub, dist);
        finish(dist, i);
        finish(dist + ksub, i + 1);
    }
    for (; i < n; ++i) {
        const float* xs[1] = {x + i * dsub};
        l2_block<1, 2, Fused>(xs, ct, dsub, ksub, dist);
        finish(dist, i);
    }
}

inline void assign_top2(const float* x, int64_t n, int64_t dsub, const float* ct, int64_t ksub,
                        int32_t* label, float* d1, float* d2) {
    if (dsub == 2 || dsub == 4 || dsub == 8)
        assign_top2_with<true>(x, n, dsub, ct, ksub, label, d1, d2);
    else
        assign_top2_with<false>(x, n, dsub, ct, ksub, label, d1, d2);
}

// ---- ADC scans --------------------------------------------------------------------------------

// Code index of sub-quantizer s in a code row.
template <int NBITS>
inline int code_at(const uint8_t* row, int64_t s) {
    if constexpr (NBITS == 8) {
        return row[s];
    } else {
        return (row[s >> 1] >> ((s & 1) * 4)) & 0xF;
    }
}

// acc[lane] = sum_s lut[s][code_s][lane] for one code row (kLanes == 8 == one v8f).
// acc[r][lane] = sum_s lut[s][code_s(row r)][lane] for R consecutive code rows. The R sums are
// independent dependency chains (one per code), so the adds of several codes overlap; each chain
// still adds its m entries in order.
template <int NBITS, int R>
inline void adc_rows(const float* lut, const uint8_t* rows, int64_t cs, int64_t m, v8f* acc) {
    constexpr int64_t ksub = int64_t(1) << NBITS;
    static_assert(kLanes == 8, "one v8f per table entry");
    for (int r = 0; r < R; ++r) acc[r] = v8f{};
    for (int64_t s = 0; s < m; ++s) {
        const float* e = lut + s * ksub * kLanes;
        for (int r = 0; r < R; ++r) acc[r] += load8(e + code_at<NBITS>(rows + r * cs, s) * kLanes);
    }
}

constexpr int kAdcRows = 4;

// Distances of n codes for the nl (<= kLanes) queries of a lane-major LUT; out row stride ldo.
template <int NBITS>
inline void adc_tile_n(const float* lut, int64_t nl, const uint8_t* codes, int64_t n, int64_t m,
                       float* out, int64_t ldo) {
    const int64_t cs = (m * NBITS + 7) / 8;
    v8f acc[kAdcRows];
    int64_t j = 0;
    for (; j + kAdcRows <= n; j += kAdcRows) {
        adc_rows<NBITS, kAdcRows>(lut, codes + j * cs, cs, m, acc);
        for (int r = 0; r < kAdcRows; ++r)
            for (int64_t l = 0; l < nl; ++l) out[l * ldo + j + r] = acc[r][l];
    }
    for (; j < n; ++j) {
        adc_rows<NBITS, 1>(lut, codes + j * cs, cs, m, acc);
        for (int64_t l = 0; l < nl; ++l) out[l * ldo + j] = acc[0][l];
    }
}

inline void adc_tile(const float* lut, int64_t nl, const uint8_t* codes, int64_t n, int64_t m,
                     int nbits, float* out, int64_t ldo) {
    if (nbits == 8)
        adc_tile_n<8>(lut, nl, codes, n, m, out, ldo);
    else
        adc_tile_n<4>(lut, nl, codes, n, m, out, ldo);
}

// Offer one code's 8 lane distances to the lanes' heaps; thr mirrors each heap's root.
inline void adc_offer(const v8f& acc, v8f& thr, int64_t nl, int64_t k, int64_t id, float* heap_d,
                      int64_t* heap_i) {
    const v8i below = acc < thr;
    uint64_t words[4];  // any lane below its threshold? (one vector test, not 8 extracts)
    std::memcpy(words, &below, sizeof words);
    if ((words[0] | words[1] | words[2] | words[3]) == 0) return;
    for (int64_t l = 0; l < nl; ++l)
        if (acc[l] < thr[l]) {
            heap_replace_top(heap_d + l * k, heap_i + l * k, k, acc[l], id);
            thr[l] = heap_d[l * k];
        }
}

// Streams n codes past nl queries, keeping each query's k smallest in its (distance, id) max-heap
// (heap rows of stride k). A code enters the heap loop only if some lane beats its threshold.
template <int NBITS>
inline void adc_topk_scan_n(const float* lut, int64_t nl, const uint8_t* codes, int64_t n,
                            int64_t m, int64_t k, int64_t id0, float* heap_d, int64_t* heap_i) {
    const int64_t cs = (m * NBITS + 7) / 8;
    v8f thr;
    for (int64_t l = 0; l < kLanes; ++l) thr[l] = l < nl ? heap_d[l * k] : -HUGE_VALF;
    v8f acc[kAdcRows];
    int64_t j = 0;
    for (; j + kAdcRows <= n; j += kAdcRows) {
        adc_rows<NBITS, kAdcRows>(lut, codes + j * cs, cs, m, acc);
        for (int r = 0; r < kAdcRows; ++r) adc_offer(acc[r], thr, nl, k, id0 + j + r, heap_d, heap_i);
    }
    for (; j < n; ++j) {
        adc_rows<NBITS, 1>(lut, codes + j * cs, cs, m, acc);
        adc_offer(acc[0], thr, nl, k, id0 + j, heap_d, heap_i);
    }
}

inline void adc_topk_scan(const float* lut, int64_t nl, const uint8_t* codes, int64_t n, int64_t m,
                          int nbits, int64_t k, int64_t id0, float* heap_d, int64_t* heap_i) {
    if (nbits == 8)
        adc_topk_scan_n<8>(lut, nl, codes, n, m, k, id0, heap_d, heap_i);
    else
        adc_topk_scan_n<4>(lut, nl, codes, n, m, k, id0, heap_d, heap_i);
}

inline void register_pq_generic(PqKernels& t) {
    t.distance_tables = &distance_tables;
    t.assign = &assign;
    t.assign_top2 = &assign_top2;
    t.adc_tile = &adc_tile;
    t.adc_topk_scan = &adc_topk_scan;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
