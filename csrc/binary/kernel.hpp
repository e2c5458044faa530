// Binary codes: the one generic algorithm of each binary kernel, compiled once per ISA tier.
//
// Layout. A code is cs = ceil(d/8) bytes; bit j of a vector is in byte j/8, at position j%8 from
// the least-significant bit ("little", faiss's converters) or from the most-significant bit
// ("big", numpy's packbits default and sentence-transformers' "ubinary"). Hamming distances do not
// depend on the bit order; pack_signs does.
//
// Popcounts. Codes are read as unaligned little-endian 64-bit words (memcpy loads) plus a byte
// tail. Common code sizes (8..256 bytes) get a fully unrolled word loop; the tier's compiler flags
// decide the instruction: POPCNT on x86-64-v2/v3, CNT on NEON, and VPOPCNTQ where the avx512_icl
// tier lets GCC vectorise the word loop. Distances fit int32 for any code below 2^28 bytes.
//
// Blocking. A tile is 4 queries x nb codes: each code's words are loaded once for 4 queries.
// hamming_topk_scan sweeps a database chunk of ~256 KiB (L2-resident) with every query of its
// block before moving on, so a code is read from memory once per query block, not once per query.
// Top-k keeps a k-slot max-heap per query; a tile row enters the heap loop only when its minimum
// beats the current k-th distance, so after warm-up almost all codes cost one compare.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>

#include "common/dispatch.hpp"
#include "common/heap.hpp"

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {

inline uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline int popcount64(uint64_t x) { return __builtin_popcountll(x); }

// ---- sign packing ---------------------------------------------------------------------------

// Bit-reverse of a byte, to turn a little-order byte into a big-order one.
inline uint8_t reverse_bits(uint8_t v) {
    v = static_cast<uint8_t>((v >> 4) | (v << 4));
    v = static_cast<uint8_t>(((v & 0xCC) >> 2) | ((v & 0x33) << 2));
    v = static_cast<uint8_t>(((v & 0xAA) >> 1) | ((v & 0x55) << 1));
    return v;
}

// Little-order sign byte of up to 8 values (NaN compares false: bit clear, as numpy's x > t).
template <class T>
inline uint8_t sign_byte(const T* x, int64_t count, T threshold) {
    unsigned v = 0;
    for (int64_t t = 0; t < count; ++t) v |= static_cast<unsigned>(x[t] > threshold) << t;
    return static_cast<uint8_t>(v);
}

template <class T>
void pack_signs(const T* x, int64_t n, int64_t d, T threshold, bool little, uint8_t* out) {
    const int64_t nbytes = (d + 7) / 8;
    for (int64_t i = 0; i < n; ++i) {
        const T* row = x + i * d;
        uint8_t* o = out + i * nbytes;
        for (int64_t b = 0; b < nbytes; ++b) {
            uint8_t v = sign_byte(row + 8 * b, std::min<int64_t>(8, d - 8 * b), threshold);
            o[b] = little ? v : reverse_bits(v);
        }
    }
}

// ---- Hamming distances ----------------------------------------------------------------------

template <int W>
inline int32_t hamming_words(const uint8_t* a, const uint8_t* b) {
    int32_t s = 0;
    for (int w = 0; w < W; ++w) s += popcount64(load_u64(a + 8 * w) ^ load_u64(b + 8 * w));
    return s;
}

inline int32_t hamming_any(const uint8_t* a, const uint8_t* b, int64_t cs) {
    int64_t s = 0;
    int64_t w = 0;
    for (; w + 8 <= cs; w += 8) s += popcount64(load_u64(a + w) ^ load_u64(b + w));
    for (; w < cs; ++w) s += popcount64(static_cast<uint64_t>(a[w] ^ b[w]));
    return static_cast<int32_t>(s);
}

template <class Dist>
inline void hamming_tile_with(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb,
                              int64_t cs, int32_t* out, int64_t ldo, Dist dist) {
    int64_t i = 0;
    for (; i + 4 <= na; i += 4) {
        const uint8_t* a0 = a + i * cs;
        const uint8_t* a1 = a0 + cs;
        const uint8_t* a2 = a1 + cs;
        const uint8_t* a3 = a2 + cs;
        int32_t* o = out + i * ldo;
        for (int64_t j = 0; j < nb; ++j) {
            const uint8_t* bj = b + j * cs;
            o[j] = dist(a0, bj);
            o[ldo + j] = dist(a1, bj);
            o[2 * ldo + j] = dist(a2, bj);
            o[3 * ldo + j] = dist(a3, bj);
        }
    }
    for (; i < na; ++i) {
        const uint8_t* ai = a + i * cs;
        int32_t* o = out + i * ldo;
        for (int64_t j = 0; j < nb; ++j) o[j] = dist(ai, b + j * cs);
    }
}

#define EMBKERN_HAMMING_FIXED(W)                                                       \
    case 8 * W:                                                                        \
        hamming_tile_with(a, na, b, nb, cs, out, ldo,                                  \
                          [](const uint8_t* x, const uint8_t* y) { return hamming_words<W>(x, y); }); \
        return;

inline void hamming_tile(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                         int32_t* out, int64_t ldo) {
    switch (cs) {
        EMBKERN_HAMMING_FIXED(1)
        EMBKERN_HAMMING_FIXED(2)
        EMBKERN_HAMMING_FIXED(3)
        EMBKERN_HAMMING_FIXED(4)
        EMBKERN_HAMMING_FIXED(6)
        EMBKERN_HAMMING_FIXED(8)
        EMBKERN_HAMMING_FIXED(12)
        EMBKERN_HAMMING_FIXED(16)
        EMBKERN_HAMMING_FIXED(24)
        EMBKERN_HAMMING_FIXED(32)
        default:
            hamming_tile_with(a, na, b, nb, cs, out, ldo,
                              [cs](const uint8_t* x, const uint8_t* y) { return hamming_any(x, y, cs); });
    }
}
#undef EMBKERN_HAMMING_FIXED

// ---- streaming top-k ------------------------------------------------------------------------

constexpr int64_t kTopkQueries = 4;   // queries per tile (share each code load)
constexpr int64_t kTopkTile = 256;    // codes per tile (the distance buffer stays in L1)

template <class Tile>
void hamming_topk_scan_with(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                            int64_t cs, int64_t k, int64_t id0, int32_t* heap_d, int64_t* heap_i,
                            Tile tile) {
    int32_t buf[kTopkQueries * kTopkTile];
    int64_t chunk = std::max<int64_t>(kTopkTile, (256 * 1024 / cs) / kTopkTile * kTopkTile);
    for (int64_t c0 = 0; c0 < nb; c0 += chunk) {
        const int64_t c1 = std::min(nb, c0 + chunk);
        for (int64_t qi = 0; qi < nq; qi += kTopkQueries) {
            const int64_t qn = std::min(kTopkQueries, nq - qi);
            for (int64_t t0 = c0; t0 < c1; t0 += kTopkTile) {
                const int64_t tn = std::min(kTopkTile, c1 - t0);
                tile(q + qi * cs, qn, db + t0 * cs, tn, cs, buf, kTopkTile);
                for (int64_t r = 0; r < qn; ++r) {
                    int32_t* hd = heap_d + (qi + r) * k;
                    int64_t* hi = heap_i + (qi + r) * k;
                    const int32_t* row = buf + r * kTopkTile;
                    int32_t lo = INT32_MAX;
                    for (int64_t j = 0; j < tn; ++j) lo = std::min(lo, row[j]);
                    if (lo >= hd[0]) continue;
                    for (int64_t j = 0; j < tn; ++j)
                        if (row[j] < hd[0]) heap_replace_top(hd, hi, k, row[j], id0 + t0 + j);
                }
            }
        }
    }
}

inline void hamming_topk_scan(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                              int64_t cs, int64_t k, int64_t id0, int32_t* heap_d,
                              int64_t* heap_i) {
    hamming_topk_scan_with(q, nq, db, nb, cs, k, id0, heap_d, heap_i, hamming_tile);
}

// ---- range search ---------------------------------------------------------------------------

template <class Tile>
void hamming_range_scan_with(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                             int64_t cs, int32_t radius, int64_t id0,
                             void (*emit)(void*, int64_t, int32_t, int64_t), void* ctx, Tile tile) {
    int32_t buf[kTopkQueries * kTopkTile];
    const int64_t chunk = std::max<int64_t>(kTopkTile, (256 * 1024 / cs) / kTopkTile * kTopkTile);
    for (int64_t qi0 = 0; qi0 < nq; qi0 += 64) {  // queries of one pass over a chunk
        const int64_t qi1 = std::min(nq, qi0 + 64);
        for (int64_t c0 = 0; c0 < nb; c0 += chunk) {
            const int64_t c1 = std::min(nb, c0 + chunk);
            for (int64_t qi = qi0; qi < qi1; qi += kTopkQueries) {
                const int64_t qn = std::min(kTopkQueries, qi1 - qi);
                for (int64_t t0 = c0; t0 < c1; t0 += kTopkTile) {
                    const int64_t tn = std::min(kTopkTile, c1 - t0);
                    tile(q + qi * cs, qn, db + t0 * cs, tn, cs, buf, kTopkTile);
                    for (int64_t r = 0; r < qn; ++r) {
                        const int32_t* row = buf + r * kTopkTile;
                        int32_t lo = INT32_MAX;
                        for (int64_t j = 0; j < tn; ++j) lo = std::min(lo, row[j]);
                        if (lo > radius) continue;
                        for (int64_t j = 0; j < tn; ++j)
                            if (row[j] <= radius) emit(ctx, qi + r, row[j], id0 + t0 + j);
                    }
                }
            }
        }
    }
}

inline void hamming_range_scan(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                               int64_t cs, int32_t radius, int64_t id0,
                               void (*emit)(void*, int64_t, int32_t, int64_t), void* ctx) {
    hamming_range_scan_with(q, nq, db, nb, cs, radius, id0, emit, ctx, hamming_tile);
}

// Fill a table with this tier's generic kernels; tier files then override what they hand-write.
inline void register_generic(BinaryKernels& t) {
    t.pack_signs_f32 = &pack_signs<float>;
    t.pack_signs_f64 = &pack_signs<double>;
    t.hamming_tile = &hamming_tile;
    t.hamming_topk_scan = &hamming_topk_scan;
    t.hamming_range_scan = &hamming_range_scan;
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
