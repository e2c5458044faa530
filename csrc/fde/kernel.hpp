// MUVERA fixed dimensional encoding: the generic body of the per-cloud kernel, compiled once per
// ISA tier (specs/fde.md is the definition; Google's graph-mining sketching/point_cloud is the
// reference whose output this reproduces).
//
// Layout. Tokens are n rows of d float32. The FDE is R repetitions x B = 2^k partitions x p
// coordinates, offset (r, b, j) = r*B*p + b*p + j; with a final projection it is count-sketched
// to final_dim coordinates afterwards.
//
// Steps per cloud:
//  1. SimHash sketch for all repetitions at once: S (n x R*k) = X . G, G the d x R*k matrix of
//     the repetitions' Gaussian hyperplanes side by side. Every S[t, m] is a float32 sum over
//     i = 0..d-1 in order with separate multiply and add (no contraction), so the sign bits are
//     the same on every tier; the loop runs over m (contiguous), which is what the avx2/avx512
//     tiers vectorise, four tokens at a time so each G row is loaded once per four tokens.
//  2. Partition of token t in repetition r: the sign bits b_j = S[t, r*k+j] > 0 (strictly),
//     hyperplane 0 the most significant bit, form a Gray code; the partition is its inverse
//     (a prefix XOR), exactly Google's AppendToGrayCode fold.
//  3. Aggregation in token order (bit-exactness with the reference needs that order):
//     identity: block[b] += x_t (d floats, vectorised over coordinates, no reassociation);
//     AMS: the raw tokens are summed per partition first, and each occupied partition's sum is
//     projected once (a signed scatter of its d coordinates into p), which is the reference's
//     "project every token, then sum" up to float rounding at n*d instead of n*d*p cost.
//  4. Documents: blocks are divided by their counts (a float division, as the reference).
//     Empty partitions, when filling: the token whose sign bits are Hamming-nearest to the
//     partition's bit string (the Gray code of b), ties to the lowest token index. Tokens with
//     equal bits tie, so only the first token of each occupied partition is a candidate: the
//     search runs over the occupied partitions in order of first appearance (<= min(n, B)).
//  5. Final projection: out[idx[i]] += sign[i] * fde[i] for i in order (sequential scatter).
//
// Integers: partitions are uint32 (k <= 30); counts are float32 like the reference's (exact up
// to 2^24 tokens per cloud). No heap allocation and no library templates here: all scratch comes
// from the caller (so nothing compiled with a wide tier's flags can be shared with baseline code).
#pragma once
#include <cstdint>
#include <cstring>

#include "common/dispatch.hpp"

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {

// Eight float lanes with element-wise IEEE arithmetic (GCC vector extensions): ymm on the AVX
// tiers, two xmm on the scalar x86 tier, two q registers on NEON. Lane l of a + b * c rounds
// exactly as the scalar a + b * c (no contraction), so every tier gives the same bits.
typedef float fde_v8f __attribute__((vector_size(32)));

inline fde_v8f fde_load(const float* p) {
    fde_v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void fde_store(float* p, fde_v8f v) { std::memcpy(p, &v, sizeof v); }

// s (n x ld) = x (n x d) . g (d x ld), ld a multiple of 16 (the driver pads G with zero columns):
// each element summed over i = 0..d-1 in order. Register tiles of 4 tokens x 16 columns: per i,
// two G loads and four broadcasts feed eight independent multiply-add chains.
inline void fde_sketch(const float* __restrict x, int64_t n, int64_t d, const float* __restrict g,
                       int64_t ld, float* __restrict s) {
    // Column chunks outside, tokens inside: a 16-column slice of G (d x 64 bytes) stays in L1
    // while every token passes over it.
    for (int64_t m = 0; m < ld; m += 16) {
        const float* gm = g + m;
        int64_t t = 0;
        for (; t + 4 <= n; t += 4) {
            const float* x0 = x + t * d;
            fde_v8f a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
            for (int64_t i = 0; i < d; ++i) {
                const fde_v8f g0 = fde_load(gm + i * ld), g1 = fde_load(gm + i * ld + 8);
                const float b0 = x0[i], b1 = x0[d + i], b2 = x0[2 * d + i], b3 = x0[3 * d + i];
                a00 = a00 + b0 * g0;
                a01 = a01 + b0 * g1;
                a10 = a10 + b1 * g0;
                a11 = a11 + b1 * g1;
                a20 = a20 + b2 * g0;
                a21 = a21 + b2 * g1;
                a30 = a30 + b3 * g0;
                a31 = a31 + b3 * g1;
            }
            float* s0 = s + t * ld + m;
            fde_store(s0, a00);
            fde_store(s0 + 8, a01);
            fde_store(s0 + ld, a10);
            fde_store(s0 + ld + 8, a11);
            fde_store(s0 + 2 * ld, a20);
            fde_store(s0 + 2 * ld + 8, a21);
            fde_store(s0 + 3 * ld, a30);
            fde_store(s0 + 3 * ld + 8, a31);
        }
        for (; t < n; ++t) {
            const float* x0 = x + t * d;
            fde_v8f a00 = {}, a01 = {};
            for (int64_t i = 0; i < d; ++i) {
                const float b0 = x0[i];
                a00 = a00 + b0 * fde_load(gm + i * ld);
                a01 = a01 + b0 * fde_load(gm + i * ld + 8);
            }
            fde_store(s + t * ld + m, a00);
            fde_store(s + t * ld + m + 8, a01);
        }
    }
}

// dst[0..len) += src[0..len)
inline void fde_add_row(float* __restrict dst, const float* __restrict src, int64_t len) {
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        fde_store(dst + i, fde_load(dst + i) + fde_load(src + i));
        fde_store(dst + i + 8, fde_load(dst + i + 8) + fde_load(src + i + 8));
    }
    for (; i + 8 <= len; i += 8) fde_store(dst + i, fde_load(dst + i) + fde_load(src + i));
    for (; i < len; ++i) dst[i] = dst[i] + src[i];
}

// dst[0..len) /= c (a true division, as the reference)
inline void fde_div_row(float* __restrict dst, float c, int64_t len) {
    int64_t i = 0;
    const fde_v8f cv = fde_v8f{} + c;
    for (; i + 8 <= len; i += 8) fde_store(dst + i, fde_load(dst + i) / cv);
    for (; i < len; ++i) dst[i] = dst[i] / c;
}

// Inverse Gray code of the k sign bits (bit k-1 = hyperplane 0).
inline uint32_t fde_partition(const float* s, int64_t k) {
    uint32_t code = 0;
    for (int64_t j = 0; j < k; ++j) code = (code << 1) | (s[j] > 0.0f ? 1u : 0u);
    code ^= code >> 1;
    code ^= code >> 2;
    code ^= code >> 4;
    code ^= code >> 8;
    code ^= code >> 16;
    return code;
}

// dst (p) = the AMS projection of v (d): column c sums sign * v over its input coordinates in
// ascending order -- the same additions, in the same order, as the scatter
// dst[col[i]] += sign[i] * v[i] for i = 0..d-1, but each column's chain stays in a register
// (the scatter's chains run through memory, a store-to-load forward per element).
inline void fde_project(const float* __restrict v, const int32_t* __restrict order,
                        const float* __restrict osign, const int32_t* __restrict start,
                        float* __restrict dst, int64_t p) {
    // Two columns per step: two independent chains in flight (GCC would otherwise "vectorise"
    // the single in-order chain into shuffles, which is slower than scalar code).
    int64_t c = 0;
    for (; c + 2 <= p; c += 2) {
        float a0 = 0.0f, a1 = 0.0f;
        int32_t e0 = start[c], e1 = start[c + 1];
        const int32_t end0 = start[c + 1], end1 = start[c + 2];
        for (; e0 < end0 && e1 < end1; ++e0, ++e1) {
            a0 = a0 + osign[e0] * v[order[e0]];
            a1 = a1 + osign[e1] * v[order[e1]];
        }
        for (; e0 < end0; ++e0) a0 = a0 + osign[e0] * v[order[e0]];
        for (; e1 < end1; ++e1) a1 = a1 + osign[e1] * v[order[e1]];
        dst[c] = a0;
        dst[c + 1] = a1;
    }
    for (; c < p; ++c) {
        float acc = 0.0f;
        for (int32_t e = start[c]; e < start[c + 1]; ++e) acc = acc + osign[e] * v[order[e]];
        dst[c] = acc;
    }
}

// True when every value is finite (an integer test on the exponent bits, so it vectorises).
inline bool fde_all_finite(const float* x, int64_t count) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < count; ++i) {
        uint32_t u;
        std::memcpy(&u, x + i, sizeof u);
        bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

// Encodes one cloud; false (and out untouched) when a token holds NaN or inf.
inline bool fde_encode_f32(const FdeParams& P, const float* x, int64_t n, float* out,
                           float* work) {
    const int64_t d = P.d, R = P.reps, k = P.k, p = P.p, B = int64_t(1) << k, M = P.gauss_ld;
    if (!fde_all_finite(x, n * d)) return false;
    // scratch layout: see fde_work_floats
    float* sketch = work;
    int32_t* parts = reinterpret_cast<int32_t*>(sketch + n * M);
    float* counts = reinterpret_cast<float*>(parts + n * R);
    int32_t* first = reinterpret_cast<int32_t*>(counts + B);
    int32_t* occ = first + B;
    float* agg = reinterpret_cast<float*>(occ + B);
    float* inner = P.ams ? agg + B * d : agg;
    float* fde = P.final_dim > 0 ? inner : out;
    const int64_t inner_dim = R * B * p;
    for (int64_t i = 0; i < inner_dim; ++i) fde[i] = 0.0f;

    if (k > 0) {
        fde_sketch(x, n, d, P.gauss, M, sketch);
        for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < R; ++r)
                parts[t * R + r] = static_cast<int32_t>(fde_partition(sketch + t * M + r * k, k));
    } else {
        for (int64_t t = 0; t < n * R; ++t) parts[t] = 0;
    }

    for (int64_t r = 0; r < R; ++r) {
        float* blocks = fde + r * B * p;
        const int32_t* order = P.ams ? P.ams_order + r * d : nullptr;
        const float* osign = P.ams ? P.ams_osign + r * d : nullptr;
        const int32_t* start = P.ams ? P.ams_start + r * (p + 1) : nullptr;
        for (int64_t b = 0; b < B; ++b) {
            counts[b] = 0.0f;
            first[b] = -1;
        }
        int64_t nocc = 0;
        for (int64_t t = 0; t < n; ++t) {
            const int32_t b = parts[t * R + r];
            const float* __restrict xt = x + t * d;
            if (first[b] < 0) {
                first[b] = static_cast<int32_t>(t);
                occ[nocc++] = b;
                if (P.ams)
                    for (int64_t i = 0; i < d; ++i) agg[b * d + i] = 0.0f;
            }
            float* __restrict dst = P.ams ? agg + b * d : blocks + b * p;
            fde_add_row(dst, xt, d);
            counts[b] = counts[b] + 1.0f;
        }
        if (P.ams)
            for (int64_t q = 0; q < nocc; ++q) {
                const int64_t b = occ[q];
                fde_project(agg + b * d, order, osign, start, blocks + b * p, p);
            }
        if (!P.document) continue;
        for (int64_t q = 0; q < nocc; ++q) {
            const int64_t b = occ[q];
            const float c = counts[b];
            float* __restrict dst = blocks + b * p;
            fde_div_row(dst, c, p);
        }
        if (!P.fill || k == 0 || nocc == 0 || nocc == B) continue;
        for (int64_t b = 0; b < B; ++b) {
            if (first[b] >= 0) continue;
            const uint32_t target = static_cast<uint32_t>(b ^ (b >> 1));
            int best = 64;
            int32_t tok = -1;
            for (int64_t q = 0; q < nocc; ++q) {
                const uint32_t o = static_cast<uint32_t>(occ[q]);
                const int dist = __builtin_popcount((o ^ (o >> 1)) ^ target);
                if (dist < best) {
                    best = dist;
                    tok = first[o];
                }
            }
            const float* xt = x + static_cast<int64_t>(tok) * d;
            if (P.ams)
                fde_project(xt, order, osign, start, blocks + b * p, p);
            else
                std::memcpy(blocks + b * p, xt, static_cast<size_t>(d) * sizeof(float));
        }
    }

    if (P.final_dim > 0) {
        for (int64_t j = 0; j < P.final_dim; ++j) out[j] = 0.0f;
        for (int64_t i = 0; i < inner_dim; ++i) out[P.fp_idx[i]] = out[P.fp_idx[i]] + P.fp_sign[i] * fde[i];
    }
    return true;
}

inline void register_fde_generic(FdeKernels& t) { t.encode_f32 = fde_encode_f32; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
