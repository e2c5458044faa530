// 4-bit PQ fast scan: the generic kernel, compiled once per ISA tier (plain C++, no intrinsics).
//
// Codes arrive in faiss's packed block layout (specs/binary_pq.md §2): per block of 32 vectors,
// per sub-quantizer pair p, 32 bytes; byte j < 16 holds sub-quantizer 2p of vectors PERM0[j]
// (low nibble) and PERM0[j] + 16 (high nibble), bytes 16..31 sub-quantizer 2p + 1 the same way.
// Tables arrive quantized by the driver: lut[s][c] uint8, rows s >= m zero, so the sum
// S = sum_s lut[s][code_s] <= 255 * 256 fits a uint16 exactly (the driver caps m2 at 256). The
// driver stores 255 - Tq for "largest" searches, so every kernel keeps the k smallest sums.
//
// Top-k: per query a k-slot (S, id) max-heap (common/heap.hpp). Keys are <= 65280 and empty
// slots hold 0xFFFF, so "S < root" needs no sentinel special case. A block is offered to the
// heap only when some sum is strictly below the root key: blocks come in ascending ids, so an
// equal sum from a later block could never displace the root (whose id is smaller); inside an
// offered block the full (S, id) comparison decides.
#pragma once
#include <cstdint>

#include "common/dispatch.hpp"
#include "common/heap.hpp"

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {

// Vector (inside a 32-group) whose code sits in the low nibble of byte j of a sub-quantizer's 16.
constexpr int kFsPerm0[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};

// Offers the sums of one block (keys[v] for vector v, v < nv valid) to a query's heap.
inline void fastscan_offer(const uint16_t* keys, int64_t nv, int64_t id_base, int64_t k,
                           uint16_t* hs, int64_t* hi) {
    for (int64_t v = 0; v < nv; ++v) heap_push(hs, hi, k, keys[v], id_base + v);
}

inline void fastscan_topk_scan_generic(const uint8_t* lut, int64_t nl, const uint8_t* packed,
                                       int64_t nblocks, int64_t m2, int64_t nvalid, int64_t k,
                                       int64_t id0, uint16_t* heap_s, int64_t* heap_i) {
    const int64_t block_bytes = m2 * 16;
    uint8_t idx[256 * 32];  // one block's codes: idx[s * 32 + v], v in natural order
    uint16_t keys[32];
    for (int64_t b = 0; b < nblocks; ++b) {
        const uint8_t* blk = packed + b * block_bytes;
        for (int64_t s = 0; s < m2; ++s) {
            const uint8_t* src = blk + (s >> 1) * 32 + (s & 1) * 16;
            uint8_t* dst = idx + s * 32;
            for (int j = 0; j < 16; ++j) {
                dst[kFsPerm0[j]] = src[j] & 0x0F;
                dst[kFsPerm0[j] + 16] = src[j] >> 4;
            }
        }
        const int64_t nv = nvalid - b * 32 < 32 ? nvalid - b * 32 : 32;
        for (int64_t q = 0; q < nl; ++q) {
            const uint8_t* t = lut + q * m2 * 16;
            for (int v = 0; v < 32; ++v) keys[v] = 0;
            for (int64_t s = 0; s < m2; ++s) {
                const uint8_t* row = t + s * 16;
                const uint8_t* code = idx + s * 32;
                for (int v = 0; v < 32; ++v) keys[v] = static_cast<uint16_t>(keys[v] + row[code[v]]);
            }
            uint16_t* hs = heap_s + q * k;
            int64_t* hi = heap_i + q * k;
            uint16_t low = keys[0];
            for (int v = 1; v < 32; ++v) low = keys[v] < low ? keys[v] : low;
            if (low < hs[0]) fastscan_offer(keys, nv, id0 + b * 32, k, hs, hi);
        }
    }
}

inline void register_fastscan_generic(PqKernels& t) {
    t.fastscan_topk_scan = &fastscan_topk_scan_generic;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
