// Hand-written AVX2 Hamming tile (GCC does not synthesise a vpshufb popcount from the word loop).
//
// Popcount: Mula's nibble lookup. Each 32-byte chunk of (query XOR code) is split into low and
// high nibbles, two vpshufb look up their bit counts, and byte counts accumulate for up to 31
// chunks (31 * 8 = 248 < 256) before vpsadbw folds them into four 64-bit lanes.
// Blocking: one query against 4 codes at a time, so the query chunk is loaded once per 4 codes and
// the 4 codes' lane sums reduce together (hsum4) into one 128-bit store of 4 distances.
// 64-bit codes: 4 codes per register, the vpsadbw lanes are the distances themselves.
// Bytes past the last whole 32-byte chunk are counted with scalar POPCNT.
// Included by every x86 tier that has AVX2 but no VPOPCNTDQ, inside that tier's namespace.
#pragma once
#include <immintrin.h>

#include "binary/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

inline __m256i popcount_bytes(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// Four vectors of four 64-bit partial sums (each < 2^32) -> their four totals as int32.
inline __m128i hsum4(__m256i r0, __m256i r1, __m256i r2, __m256i r3) {
    const __m256i t0 = _mm256_or_si256(r0, _mm256_slli_epi64(r1, 32));
    const __m256i t1 = _mm256_or_si256(r2, _mm256_slli_epi64(r3, 32));
    const __m256i u = _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1));
    return _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

inline void hamming_tile_u64_avx2(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb,
                                  int32_t* out, int64_t ldo) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int64_t i = 0; i < na; ++i) {
        const uint64_t qw = load_u64(a + 8 * i);
        const __m256i q = _mm256_set1_epi64x(static_cast<long long>(qw));
        int32_t* o = out + i * ldo;
        int64_t j = 0;
        for (; j + 8 <= nb; j += 8) {
            const __m256i x0 = _mm256_xor_si256(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 8 * j)));
            const __m256i x1 = _mm256_xor_si256(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 8 * j + 32)));
            const __m256i p0 = _mm256_sad_epu8(popcount_bytes(x0), zero);
            const __m256i p1 = _mm256_sad_epu8(popcount_bytes(x1), zero);
            const __m256i both = _mm256_or_si256(p0, _mm256_slli_epi64(p1, 32));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j), _mm256_permutevar8x32_epi32(both, order));
        }
        for (; j < nb; ++j) o[j] = popcount64(qw ^ load_u64(b + 8 * j));
    }
}

// Codes of W words (W a multiple of 4): of every 8 codes, 4 go through the vector nibble-LUT
// popcount and 4 through scalar POPCNT. The two streams use different execution units (vector
// pipes vs integer ALUs), so out-of-order execution overlaps them.
template <int W>
inline void hamming_tile_hybrid(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb,
                                int32_t* out, int64_t ldo) {
    constexpr int64_t cs = 8 * W, NV = W / 4;
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t i = 0; i < na; ++i) {
        const uint8_t* ai = a + i * cs;
        int32_t* o = out + i * ldo;
        __m256i qv[NV];
        for (int64_t v = 0; v < NV; ++v) qv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ai + 32 * v));
        int64_t j = 0;
        for (; j + 8 <= nb; j += 8) {
            const uint8_t* bj = b + j * cs;
            __m256i c[4];
            for (int r = 0; r < 4; ++r) {
                c[r] = zero;
                for (int64_t v = 0; v < NV; ++v)
                    c[r] = _mm256_add_epi8(c[r], popcount_bytes(_mm256_xor_si256(
                        qv[v], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bj + r * cs + 32 * v)))));
            }
            for (int r = 4; r < 8; ++r) o[j + r] = hamming_words<W>(ai, bj + r * cs);
            const __m128i d = hsum4(_mm256_sad_epu8(c[0], zero), _mm256_sad_epu8(c[1], zero),
                                    _mm256_sad_epu8(c[2], zero), _mm256_sad_epu8(c[3], zero));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(o + j), d);
        }
        for (; j < nb; ++j) o[j] = hamming_words<W>(ai, b + j * cs);
    }
}

inline void hamming_tile_avx2(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb,
                              int64_t cs, int32_t* out, int64_t ldo) {
    switch (cs) {
        case 8: hamming_tile_u64_avx2(a, na, b, nb, out, ldo); return;
        case 32: hamming_tile_hybrid<4>(a, na, b, nb, out, ldo); return;
        case 64: hamming_tile_hybrid<8>(a, na, b, nb, out, ldo); return;
        case 96: hamming_tile_hybrid<12>(a, na, b, nb, out, ldo); return;
        case 128: hamming_tile_hybrid<16>(a, na, b, nb, out, ldo); return;
        case 256: hamming_tile_hybrid<32>(a, na, b, nb, out, ldo); return;
        default: break;
    }
    const int64_t nv = cs / 32;
    if (nv == 0) {
        hamming_tile(a, na, b, nb, cs, out, ldo);
        return;
    }
    const int64_t vec_bytes = 32 * nv;
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t i = 0; i < na; ++i) {
        const uint8_t* ai = a + i * cs;
        int32_t* o = out + i * ldo;
        int64_t j = 0;
        for (; j + 4 <= nb; j += 4) {
            const uint8_t* b0 = b + j * cs;
            const uint8_t* b1 = b0 + cs;
            const uint8_t* b2 = b1 + cs;
            const uint8_t* b3 = b2 + cs;
            __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
            for (int64_t v0 = 0; v0 < nv; v0 += 31) {
                const int64_t v1 = std::min(nv, v0 + 31);
                __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
                for (int64_t v = v0; v < v1; ++v) {
                    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ai + 32 * v));
#define EMBKERN_ACC(c, bp) \
    c = _mm256_add_epi8(c, popcount_bytes(_mm256_xor_si256(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 32 * v)))))
                    EMBKERN_ACC(c0, b0);
                    EMBKERN_ACC(c1, b1);
                    EMBKERN_ACC(c2, b2);
                    EMBKERN_ACC(c3, b3);
#undef EMBKERN_ACC
                }
                s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(c0, zero));
                s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(c1, zero));
                s2 = _mm256_add_epi64(s2, _mm256_sad_epu8(c2, zero));
                s3 = _mm256_add_epi64(s3, _mm256_sad_epu8(c3, zero));
            }
            __m128i d = hsum4(s0, s1, s2, s3);
            if (vec_bytes < cs) {
                const int64_t rest = cs - vec_bytes;
                d = _mm_add_epi32(d, _mm_setr_epi32(hamming_any(ai + vec_bytes, b0 + vec_bytes, rest),
                                                    hamming_any(ai + vec_bytes, b1 + vec_bytes, rest),
                                                    hamming_any(ai + vec_bytes, b2 + vec_bytes, rest),
                                                    hamming_any(ai + vec_bytes, b3 + vec_bytes, rest)));
            }
            _mm_storeu_si128(reinterpret_cast<__m128i*>(o + j), d);
        }
        for (; j < nb; ++j) o[j] = hamming_any(ai, b + j * cs, cs);
    }
}

inline void hamming_topk_scan_avx2(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                                   int64_t cs, int64_t k, int64_t id0, int32_t* heap_d,
                                   int64_t* heap_i) {
    hamming_topk_scan_with(q, nq, db, nb, cs, k, id0, heap_d, heap_i, hamming_tile_avx2);
}

inline void hamming_range_scan_avx2(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                                    int64_t cs, int32_t radius, int64_t id0,
                                    void (*emit)(void*, int64_t, int32_t, int64_t), void* ctx) {
    hamming_range_scan_with(q, nq, db, nb, cs, radius, id0, emit, ctx, hamming_tile_avx2);
}

// Sign packing: 8 floats -> one compare mask -> one little-order byte.
inline void pack_signs_f32_avx2(const float* x, int64_t n, int64_t d, float threshold, bool little,
                                uint8_t* out) {
    const int64_t nbytes = (d + 7) / 8;
    const __m256 t = _mm256_set1_ps(threshold);
    for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * d;
        uint8_t* o = out + i * nbytes;
        int64_t b = 0;
        for (; 8 * b + 8 <= d; ++b) {
            // _CMP_GT_OQ: false for NaN, as numpy's x > t
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + 8 * b), t, _CMP_GT_OQ));
            const uint8_t v = static_cast<uint8_t>(m);
            o[b] = little ? v : reverse_bits(v);
        }
        for (; b < nbytes; ++b) {
            const uint8_t v = sign_byte(row + 8 * b, d - 8 * b, threshold);
            o[b] = little ? v : reverse_bits(v);
        }
    }
}

inline void register_avx2_kernels(BinaryKernels& t) {
    t.hamming_tile = &hamming_tile_avx2;
    t.hamming_topk_scan = &hamming_topk_scan_avx2;
    t.hamming_range_scan = &hamming_range_scan_avx2;
    t.pack_signs_f32 = &pack_signs_f32_avx2;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
