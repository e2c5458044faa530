// 4-bit PQ fast scan, hand-written AVX2 kernel (same contract as fastscan.hpp's generic kernel).
// Included by every x86 tier with AVX2 (avx2, avx512, avx512_icl), inside that tier's namespace;
// the 512-bit tiers run it unchanged (faiss, too, keeps 256-bit fast scan on AVX-512 parts).
//
// Work order (tasks of >= kFsDecodeMinQueries queries; fewer use fs_scan_direct_avx2 below): a
// task's queries sweep its blocks in chunks of <= 16 KB of decoded codes. Each
// chunk is decoded once: the 32 packed bytes of a sub-quantizer pair become two 32-byte index
// vectors, one per sub-quantizer, whose lane 0 holds the low nibbles (vectors PERM0[j]) and lane
// 1 the high nibbles (vectors PERM0[j] + 16). Then each query scans the chunk with its table rows
// broadcast to both lanes, so one vpshufb yields that sub-quantizer's entry for all 32 vectors
// and every sub-quantizer accumulates in the same positions (no cross-lane combine at the end).
//
// 16-bit accumulation (as faiss): a shuffle result r holds two entries per 16-bit lane, u16 lane
// i = vectors (i, i + 8) in lane 0 and (i + 16, i + 24) in lane 1 (the PERM0 order). acc += r
// sums low + 256 * high (wrapping) and hacc += r >> 8 sums the high bytes exactly; then
// acc - (hacc << 8) is the exact low-byte sum (< 2^16). Two accumulator sets (even / odd
// sub-quantizers) keep four independent add chains. One query at a time: the loop is bound by
// its 8 vector ALU operations per sub-quantizer pair (the decode is paid once per chunk for all
// the task's queries), so sharing index loads between queries gains nothing.
//
// Not done, measured slower on this kernel: visiting sub-quantizers largest-first and dropping a
// block once its partial sums (lower bounds) reach the heap's root; the checks, mispredicted
// branches and indirect row addressing cost more than the skipped quarter of the work.
#pragma once
#include <immintrin.h>

#include "pq/fastscan.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

constexpr int64_t kFsChunkBytes = 16384;

// One block (m2 / 2 pairs x 32 packed bytes) -> m2 index vectors of 32 bytes.
inline void fs_decode_block_avx2(const uint8_t* blk, int64_t m2, uint8_t* dec) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    for (int64_t p = 0; p < m2 / 2; ++p) {
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 32));
        const __m256i lo = _mm256_and_si256(c, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), mask);
        _mm256_store_si256(reinterpret_cast<__m256i*>(dec + 2 * p * 32), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dec + (2 * p + 1) * 32), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}

// Exact sums of one decoded block: lo holds vectors 0..7 | 16..23, hi vectors 8..15 | 24..31.
inline void fs_block_sums_avx2(const uint8_t* t, const uint8_t* dec, int64_t m2, __m256i& lo,
                               __m256i& hi) {
    __m256i a0 = _mm256_setzero_si256(), h0 = a0, a1 = a0, h1 = a0;
#pragma GCC unroll 8
    for (int64_t s = 0; s < m2; s += 2) {
        const __m256i t0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t + s * 16)));
        const __m256i t1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t + s * 16 + 16)));
        const __m256i r0 = _mm256_shuffle_epi8(t0, _mm256_load_si256(reinterpret_cast<const __m256i*>(dec + s * 32)));
        const __m256i r1 = _mm256_shuffle_epi8(t1, _mm256_load_si256(reinterpret_cast<const __m256i*>(dec + s * 32 + 32)));
        a0 = _mm256_add_epi16(a0, r0);
        h0 = _mm256_add_epi16(h0, _mm256_srli_epi16(r0, 8));
        a1 = _mm256_add_epi16(a1, r1);
        h1 = _mm256_add_epi16(h1, _mm256_srli_epi16(r1, 8));
        // keeps each accumulator in one register across iterations (GCC otherwise adds copies)
        __asm__("" : "+x"(a0), "+x"(h0), "+x"(a1), "+x"(h1));
    }
    hi = _mm256_add_epi16(h0, h1);
    lo = _mm256_sub_epi16(_mm256_add_epi16(a0, a1), _mm256_slli_epi16(hi, 8));
}

// Is any of the 32 sums strictly below thr?
inline bool fs_any_below_avx2(__m256i lo, __m256i hi, __m256i thr) {
    const __m256i below = _mm256_or_si256(_mm256_subs_epu16(thr, lo), _mm256_subs_epu16(thr, hi));
    return !_mm256_testz_si256(below, below);
}

// One query (table t) over the decoded chunk (cn blocks starting at block b0 of the task).
inline void fs_scan_chunk_avx2(const uint8_t* t, const uint8_t* dec, int64_t cn, int64_t b0,
                               int64_t m2, int64_t nvalid, int64_t k, int64_t id0, uint16_t* hs,
                               int64_t* hi_ids) {
    __m256i thr = _mm256_set1_epi16(static_cast<short>(hs[0]));
    alignas(32) uint16_t keys[32];
    for (int64_t b = 0; b < cn; ++b) {
        __m256i lo, hi;
        fs_block_sums_avx2(t, dec + b * m2 * 32, m2, lo, hi);
        if (!fs_any_below_avx2(lo, hi, thr)) continue;
        _mm256_store_si256(reinterpret_cast<__m256i*>(keys), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_store_si256(reinterpret_cast<__m256i*>(keys + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
        const int64_t first = (b0 + b) * 32;
        const int64_t nv = nvalid - first < 32 ? nvalid - first : 32;
        fastscan_offer(keys, nv, id0 + first, k, hs, hi_ids);
        thr = _mm256_set1_epi16(static_cast<short>(hs[0]));
    }
}

// Few queries: the decode would not pay off, so the queries read the packed codes directly (as
// faiss does), NQ at a time sharing each code load: one 32-byte load per sub-quantizer pair, its
// low / high nibbles index a table whose lane 0 is row 2p and lane 1 row 2p + 1 (contiguous rows:
// one plain load), and the two lanes' partial sums are added at the end.
template <int NQ>
inline void fs_scan_direct_avx2(const uint8_t* lut, const uint8_t* packed, int64_t nblocks, int64_t m2,
                                int64_t nvalid, int64_t k, int64_t id0, uint16_t* heap_s,
                                int64_t* heap_i) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    __m256i thr[NQ];
    for (int q = 0; q < NQ; ++q) thr[q] = _mm256_set1_epi16(static_cast<short>(heap_s[q * k]));
    alignas(32) uint16_t keys[32];
    for (int64_t b = 0; b < nblocks; ++b) {
        const uint8_t* blk = packed + b * m2 * 16;
        __m256i a0[NQ], h0[NQ], a1[NQ], h1[NQ];
        for (int q = 0; q < NQ; ++q) a0[q] = h0[q] = a1[q] = h1[q] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int64_t p = 0; p < m2 / 2; ++p) {
            const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 32));
            const __m256i clo = _mm256_and_si256(c, mask);
            const __m256i chi = _mm256_and_si256(_mm256_srli_epi16(c, 4), mask);
            for (int q = 0; q < NQ; ++q) {
                const __m256i tp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + q * m2 * 16 + p * 32));
                const __m256i r0 = _mm256_shuffle_epi8(tp, clo);
                const __m256i r1 = _mm256_shuffle_epi8(tp, chi);
                a0[q] = _mm256_add_epi16(a0[q], r0);
                h0[q] = _mm256_add_epi16(h0[q], _mm256_srli_epi16(r0, 8));
                a1[q] = _mm256_add_epi16(a1[q], r1);
                h1[q] = _mm256_add_epi16(h1[q], _mm256_srli_epi16(r1, 8));
            }
            if constexpr (NQ == 1) {
                __asm__("" : "+x"(a0[0]), "+x"(h0[0]), "+x"(a1[0]), "+x"(h1[0]));
            } else {
                __asm__("" : "+x"(a0[0]), "+x"(h0[0]), "+x"(a1[0]), "+x"(h1[0]), "+x"(a0[1]),
                        "+x"(h0[1]), "+x"(a1[1]), "+x"(h1[1]));
            }
        }
        for (int q = 0; q < NQ; ++q) {
            // lane 0 / lane 1: even / odd sub-quantizers; u16 lane i: vector i (lo), i + 8 (hi)
            const __m256i lo0 = _mm256_sub_epi16(a0[q], _mm256_slli_epi16(h0[q], 8));
            const __m256i lo1 = _mm256_sub_epi16(a1[q], _mm256_slli_epi16(h1[q], 8));
            const __m256i v0 = _mm256_add_epi16(_mm256_permute2x128_si256(lo0, h0[q], 0x20),
                                                _mm256_permute2x128_si256(lo0, h0[q], 0x31));
            const __m256i v1 = _mm256_add_epi16(_mm256_permute2x128_si256(lo1, h1[q], 0x20),
                                                _mm256_permute2x128_si256(lo1, h1[q], 0x31));
            if (!fs_any_below_avx2(v0, v1, thr[q])) continue;  // v0: vectors 0..15, v1: 16..31
            _mm256_store_si256(reinterpret_cast<__m256i*>(keys), v0);
            _mm256_store_si256(reinterpret_cast<__m256i*>(keys + 16), v1);
            const int64_t first = b * 32;
            const int64_t nv = nvalid - first < 32 ? nvalid - first : 32;
            uint16_t* hs = heap_s + q * k;
            fastscan_offer(keys, nv, id0 + first, k, hs, heap_i + q * k);
            thr[q] = _mm256_set1_epi16(static_cast<short>(hs[0]));
        }
    }
}

// Below this many queries per task, fs_scan_direct_avx2 (decoding costs about a query's work).
constexpr int64_t kFsDecodeMinQueries = 8;

inline void fastscan_topk_scan_avx2(const uint8_t* lut, int64_t nl, const uint8_t* packed,
                                    int64_t nblocks, int64_t m2, int64_t nvalid, int64_t k,
                                    int64_t id0, uint16_t* heap_s, int64_t* heap_i) {
    if (nl < kFsDecodeMinQueries) {
        int64_t q = 0;
        for (; q + 2 <= nl; q += 2)
            fs_scan_direct_avx2<2>(lut + q * m2 * 16, packed, nblocks, m2, nvalid, k, id0,
                                   heap_s + q * k, heap_i + q * k);
        if (q < nl)
            fs_scan_direct_avx2<1>(lut + q * m2 * 16, packed, nblocks, m2, nvalid, k, id0,
                                   heap_s + q * k, heap_i + q * k);
        return;
    }
    alignas(32) uint8_t dec[kFsChunkBytes];
    const int64_t block_dec = m2 * 32;  // <= 8192 (m2 <= 256)
    const int64_t chunk = kFsChunkBytes / block_dec > 0 ? kFsChunkBytes / block_dec : 1;
    for (int64_t b0 = 0; b0 < nblocks; b0 += chunk) {
        const int64_t cn = nblocks - b0 < chunk ? nblocks - b0 : chunk;
        for (int64_t b = 0; b < cn; ++b)
            fs_decode_block_avx2(packed + (b0 + b) * m2 * 16, m2, dec + b * block_dec);
        for (int64_t q = 0; q < nl; ++q)
            fs_scan_chunk_avx2(lut + q * m2 * 16, dec, cn, b0, m2, nvalid, k, id0, heap_s + q * k,
                               heap_i + q * k);
    }
}

inline void register_fastscan_avx2(PqKernels& t) { t.fastscan_topk_scan = &fastscan_topk_scan_avx2; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
