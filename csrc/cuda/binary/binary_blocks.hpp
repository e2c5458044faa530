// Binary-code GPU kernels, as block-level bodies compiled by nvcc (binary.cu) and by the host
// emulator (binary_emulator.cpp); see common/blocks.hpp for the convention.
//
// Layout. A code is cs bytes (cs = ceil(d/8)); rows are contiguous. Hamming distances do not depend
// on the bit order, so codes are read as little-endian 32-bit words: 16-byte vector loads when cs and
// both base pointers are multiples of 16, 4-byte loads when they are multiples of 4, else bytes (the
// host picks the widest legal width once per call: `load`). Distances fit int32 for cs < 2^28.
//
// pack_signs. One thread per output byte (grid-stride, 64-bit index). When d % 8 == 0 and x is
// 16-byte aligned the matrix is a flat run of 8-value groups and each thread issues two (float) or
// four (double) 16-byte loads. NaN compares false (bit clear), as numpy's x > t.
//
// hamming_distance. GEMM-like: a 256-thread block owns a 64 x 64 output tile and walks the code in
// chunks of 16 words staged (transposed, padded) in shared memory; each thread keeps a 4 x 4 micro-tile
// of int32 accumulators (rows ty + 16i, columns tx + 16j, so stores are coalesced).
//
// hamming_topk (exact; ascending (distance, index), ties by smaller index). Keys are packed as
// (distance << 40) | index, so one uint64 comparison is the (distance, index) order; this needs
// nb < 2^40 and 8 * cs < 2^24, checked by the launcher.
//   Filter path (k + chunk fits a 4096-key buffer, i.e. k <= ~3000): one block per (query, database
//   partition) scans its partition in index order, `chunk` = threads * items_per_thread codes at a
//   time. It keeps every candidate that might still be in the top k in a shared-memory key buffer,
//   and a histogram of the kept distances. tau = the smallest distance t such that at least k kept
//   codes have distance <= t; a later code with distance >= tau is rejected: k codes that are no
//   worse and have smaller indices were already seen (codes of a chunk are compared with the tau of
//   the chunks before it, which all have smaller indices). tau only decreases, so the histogram is
//   only ever read below tau and the bound is updated by one thread walking down. When the buffer
//   cannot take another chunk it is sorted (bitonic) and cut to its best k; at the end the buffer is
//   sorted and the first k keys are the answer. For codes wider than hist_bins - 2 bits the top
//   histogram bin collects all larger distances and tau stays "unbounded" until the exact bins alone
//   reach k. With few queries the database is split into `parts` partitions per query (enough
//   blocks to fill the GPU); each partition emits its best k keys (padded with kNoKey), and a merge
//   pass runs the same filter over the parts * k keys, which are in an order where equal distances
//   appear by increasing index (partition order, then sorted order), the one property the filter needs.
//   Histogram-select path (larger k): pass 1 builds the exact distance histogram of each query
//   (partitioned, shared-memory bins flushed with 64-bit atomics); pass 2 finds the k-th distance T
//   and turns bins 0..T into output offsets (a counting sort); pass 3 scans the database once more in
//   index order, one block per query: each chunk's codes with distance <= T are sorted by key, so a
//   code's slot is offset[d] + its rank among equal distances; it stops once k slots are written.
//   Scratch: nq * (8 cs + 1) counters, processed in query batches of at most batch_bytes.
//
// hamming_range (faiss layout; each query's hits ascending by (distance, index), as the CPU).
// A work item is (database partition, tile of 8 queries): every database word loaded is XORed with
// the 8 query rows (L1 broadcasts), and items are partition-major, so blocks running together share
// a partition in L2. It is a counting sort with 64-bit offsets, no float and no output atomics:
//   count   cnt[query][d][partition] = hits at distance d <= radius (shared-memory histograms,
//           8 x (radius + 1) bins, written out whole; global 64-bit atomics when they do not fit);
//   offsets each query's counts, in (d, partition) order, are prefix-summed in place: they become
//           output cursors relative to the query's first slot, and the query's total goes to lims;
//           the scan cuts rows into chunks (chunk sums, scan of those, chunk scans), so a single
//           query with many partitions still spreads over the GPU;
//   lims    the same scan over the totals gives lims; the host reads lims[nq] (the only
//           synchronisation), has the outputs allocated, then
//   fill    each work item rescans its partition in index order, a chunk (threads x ipt codes) at a
//           time: a query's hits in the chunk are sorted by (distance, index) key in shared memory,
//           hit -> lims[q] + cursor[q][d][partition] + its rank among the chunk's hits at distance d,
//           and the first hit of each distance advances that cursor.
//   Scratch is batch x (radius + 1) x partitions counters; with more than one query batch the count
//   and offsets passes run again per batch before its fill.
//
// asymmetric_scores (float32, bit-identical to the CPU). The CPU reads a code as 4-bit sub-codes
// (nibble s = bits 4(s%2).. of byte s/2) with a 16-entry table per nibble holding the +-q sum of its
// 4 dimensions (added in bit order from 0.0f), and sums the m = 2 cs table entries in nibble order.
// A first kernel builds those tables, [4-query group][nibble][value][query], in global memory; the
// scan kernel's work item is (code tile, 4-query group), tile-major. The group's table passes
// through shared memory in windows of 128 nibbles (32 KB); each thread keeps 4 codes x 4 queries of
// float accumulators and adds one 16-byte table entry (4 queries) per nibble, in nibble order with
// separately rounded adds, so each query's score is the CPU's sequential float32 sum.
//
// multibit_scores / multibit_topk (float32, bit-identical to the CPU). Per pair, the planes x planes
// Hamming distances h_st are combined as the CPU does: acc = sum of (w_s w_t) * h_st in (s, t) order
// in double from 0.0, score = float(dim * sum(w_s w_t) - 2 acc), each operation rounded separately
// (the weight products and their sum are computed on the host, in the CPU's order). The weight
// products reach the kernels as parameters (<= 8 planes, staged in shared memory) or in device
// memory. Scores: work item = (tile of threads codes, 8 queries), tile-major; a thread scores one
// code against the 8 queries (its code stays in L1). Top-k: a uint64 key orders (score descending,
// index ascending) ([~monotone(score) : 32][index : 31][-0.0 flag : 1]), so the exact filter of
// hamming_topk applies without a histogram: candidates below tau (the k-th key at the last
// compaction; keys are unique) enter a buffer that is sorted and cut to k when it cannot take
// another chunk. Partitions per query when there are few queries, then the same filter merges their
// k keys each. The buffer is in shared memory up to 48 KB (k + chunk <= ~5000), else in global
// memory (one buffer per block).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/binary/binary_cuda.hpp"
#include "cuda/common/block_sort.hpp"
#include "cuda/common/blocks.hpp"

namespace embkern::cuda {

// Bit-reverse of the low byte (little bit order -> big bit order).
EK_FN unsigned reverse_byte(unsigned v) {
#if defined(__CUDACC__)
    return __brev(v) >> 24;
#else
    v = ((v >> 4) | (v << 4)) & 0xFFu;
    v = ((v & 0xCCu) >> 2) | ((v & 0x33u) << 2);
    v = ((v & 0xAAu) >> 1) | ((v & 0x55u) << 1);
    return v;
#endif
}

struct Words4 {
    uint32_t x, y, z, w;
};

EK_FN Words4 load16(const uint8_t* p) {  // p is 16-byte aligned
#if defined(__CUDACC__)
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    return {v.x, v.y, v.z, v.w};
#else
    Words4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

EK_FN uint32_t load4(const uint8_t* p) {  // p is 4-byte aligned
#if defined(__CUDACC__)
    return *reinterpret_cast<const uint32_t*>(p);
#else
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

// Eight consecutive values from a 16-byte aligned address.
EK_FN void load8(const float* p, float* v) {
#if defined(__CUDACC__)
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
#else
    std::memcpy(v, p, 8 * sizeof(float));
#endif
}

EK_FN void load8(const double* p, double* v) {
#if defined(__CUDACC__)
    EK_UNROLL
    for (int i = 0; i < 4; ++i) {
        const double2 a = reinterpret_cast<const double2*>(p)[i];
        v[2 * i] = a.x;
        v[2 * i + 1] = a.y;
    }
#else
    std::memcpy(v, p, 8 * sizeof(double));
#endif
}

// ---- Hamming distance of two codes --------------------------------------------------------------

enum LoadWidth : int { kLoadBytes = 1, kLoadWords = 4, kLoadVec16 = 16 };

// The widest load that every row of both code arrays allows.
inline int choose_load(const void* a, const void* b, int64_t cs) {
    if (cs % 16 == 0 && aligned_to(a, 16) && aligned_to(b, 16)) return kLoadVec16;
    if (cs % 4 == 0 && aligned_to(a, 4) && aligned_to(b, 4)) return kLoadWords;
    return kLoadBytes;
}

EK_FN int32_t code_distance(const uint8_t* a, const uint8_t* b, int64_t cs, int load) {
    int32_t s = 0;
    if (load == kLoadVec16) {
        for (int64_t o = 0; o < cs; o += 16) {
            const Words4 x = load16(a + o), y = load16(b + o);
            s += popc32(x.x ^ y.x) + popc32(x.y ^ y.y) + popc32(x.z ^ y.z) + popc32(x.w ^ y.w);
        }
    } else if (load == kLoadWords) {
        for (int64_t o = 0; o < cs; o += 4) s += popc32(load4(a + o) ^ load4(b + o));
    } else {
        int64_t o = 0;
        for (; o + 4 <= cs; o += 4) {
            const uint32_t x = uint32_t(a[o] ^ b[o]) | (uint32_t(a[o + 1] ^ b[o + 1]) << 8) |
                               (uint32_t(a[o + 2] ^ b[o + 2]) << 16) |
                               (uint32_t(a[o + 3] ^ b[o + 3]) << 24);
            s += popc32(x);
        }
        for (; o < cs; ++o) s += popc32(uint32_t(a[o] ^ b[o]));
    }
    return s;
}

// Word w (bytes 4w..4w+3, zero past the end) of a code row; `aligned` = cs % 4 == 0 and the base
// pointer is 4-byte aligned, so the word can be loaded whole.
EK_FN uint32_t load_word(const uint8_t* row, int64_t cs, int64_t byte, bool aligned) {
    if (aligned) return load4(row + byte);
    uint32_t v = 0;
    EK_UNROLL
    for (int t = 0; t < 4; ++t)
        if (byte + t < cs) v |= uint32_t(row[byte + t]) << (8 * t);
    return v;
}

// ---- pack_signs ---------------------------------------------------------------------------------

template <class T>
struct PackParams {
    const T* x;
    int64_t n, d;
    T threshold;
    bool little;
    bool vec;  // d % 8 == 0 and x 16-byte aligned
    uint8_t* out;
};

template <class Ctx, class T>
EK_FN void pack_signs_body(Ctx& ctx, const PackParams<T>& p) {
    const int64_t nbytes = (p.d + 7) / 8;
    const int64_t total = p.n * nbytes;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t t = ctx.block() * ctx.nthreads() + ctx.tid(); t < total; t += stride) {
        unsigned v = 0;
        if (p.vec) {
            T buf[8];
            load8(p.x + 8 * t, buf);
            EK_UNROLL
            for (int e = 0; e < 8; ++e) v |= unsigned(buf[e] > p.threshold) << e;
        } else {
            const int64_t i = t / nbytes, b = t - i * nbytes;
            const T* row = p.x + i * p.d + 8 * b;
            const int cnt = int(min64(8, p.d - 8 * b));
            for (int e = 0; e < cnt; ++e) v |= unsigned(row[e] > p.threshold) << e;
        }
        p.out[t] = uint8_t(p.little ? v : reverse_byte(v));
    }
}

// ---- hamming_distance (all pairs) ---------------------------------------------------------------

constexpr int kDistTile = 64;     // output tile is kDistTile x kDistTile
constexpr int kDistK = 16;        // words staged per step
constexpr int kDistThreads = 256; // 16 x 16 threads, 4 x 4 outputs each
constexpr int kDistLd = kDistTile + 1;
constexpr size_t kDistSmem = 2 * kDistK * kDistLd * sizeof(uint32_t);

struct DistParams {
    const uint8_t* a;
    const uint8_t* b;
    int64_t na, nb, cs;
    bool a_aligned, b_aligned;  // cs % 4 == 0 and base pointer 4-byte aligned
    int32_t* out;
};

template <class Ctx>
EK_FN void hamming_distance_body(Ctx& ctx, unsigned char* smem, const DistParams& p) {
    uint32_t* as = reinterpret_cast<uint32_t*>(smem);
    uint32_t* bs = as + kDistK * kDistLd;
    const int tid = ctx.tid(), tx = tid % 16, ty = tid / 16;
    const int64_t tiles_n = (p.nb + kDistTile - 1) / kDistTile;
    const int64_t tiles = (p.na + kDistTile - 1) / kDistTile * tiles_n;
    const int64_t words = (p.cs + 3) / 4;
    for (int64_t tile = ctx.block(); tile < tiles; tile += ctx.nblocks()) {
        const int64_t i0 = tile / tiles_n * kDistTile, j0 = tile % tiles_n * kDistTile;
        int32_t acc[4][4];
        EK_UNROLL
        for (int i = 0; i < 4; ++i)
            EK_UNROLL
            for (int j = 0; j < 4; ++j) acc[i][j] = 0;
        for (int64_t w0 = 0; w0 < words; w0 += kDistK) {
            for (int e = tid; e < kDistTile * kDistK; e += kDistThreads) {
                const int r = e / kDistK, kw = e % kDistK;
                const int64_t w = w0 + kw;
                const bool in_w = w < words;
                as[kw * kDistLd + r] = (in_w && i0 + r < p.na)
                    ? load_word(p.a + (i0 + r) * p.cs, p.cs, 4 * w, p.a_aligned) : 0u;
                bs[kw * kDistLd + r] = (in_w && j0 + r < p.nb)
                    ? load_word(p.b + (j0 + r) * p.cs, p.cs, 4 * w, p.b_aligned) : 0u;
            }
            ctx.sync();
            EK_UNROLL
            for (int kw = 0; kw < kDistK; ++kw) {
                uint32_t av[4], bv[4];
                EK_UNROLL
                for (int i = 0; i < 4; ++i) av[i] = as[kw * kDistLd + ty + 16 * i];
                EK_UNROLL
                for (int j = 0; j < 4; ++j) bv[j] = bs[kw * kDistLd + tx + 16 * j];
                EK_UNROLL
                for (int i = 0; i < 4; ++i)
                    EK_UNROLL
                    for (int j = 0; j < 4; ++j) acc[i][j] += popc32(av[i] ^ bv[j]);
            }
            ctx.sync();
        }
        EK_UNROLL
        for (int i = 0; i < 4; ++i) {
            const int64_t r = i0 + ty + 16 * i;
            EK_UNROLL
            for (int j = 0; j < 4; ++j) {
                const int64_t c = j0 + tx + 16 * j;
                if (r < p.na && c < p.nb) p.out[r * p.nb + c] = acc[i][j];
            }
        }
    }
}

// ---- top-k: keys, block sort ------------------------------------------------------------------

constexpr int kKeyIndexBits = 40;
constexpr uint64_t kKeyIndexMask = (uint64_t(1) << kKeyIndexBits) - 1;

EK_FN uint64_t make_key(int32_t d, int64_t j) {
    return (uint64_t(uint32_t(d)) << kKeyIndexBits) | uint64_t(j);
}
EK_FN int32_t key_dist(uint64_t key) { return int32_t(key >> kKeyIndexBits); }
EK_FN int64_t key_index(uint64_t key) { return int64_t(key & kKeyIndexMask); }




// First position in sorted keys[0, n) whose key is >= target.
EK_FN int lower_bound_key(const uint64_t* keys, int n, uint64_t target) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (keys[mid] < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

struct TopkParams {
    const uint8_t* q;
    const uint8_t* db;
    int64_t nq, nb, cs, k;
    int load;                 // LoadWidth for (q, db)
    int64_t parts;            // database partitions per query
    // filter path
    int cap;                  // key buffer size (power of two, >= k + threads * ipt)
    int ipt;                  // codes per thread per chunk
    int hist_e;               // E: exact bins 0..E-1, bin E = "E or more" (E = 8 cs + 1 when exact)
    uint64_t* part_keys;      // parts > 1: nq x parts x k keys (partition pass out, merge in)
    // histogram-select path
    unsigned long long* hist; // nq x (8 cs + 1): counts, then output cursors
    int32_t* thresh;          // nq: the k-th distance
    int hist_in_smem;
    // results, nq x k
    int32_t* out_d;
    int64_t* out_i;
};

inline size_t filter_smem_bytes(int64_t cap, int64_t hist_e) {
    return size_t(cap) * sizeof(uint64_t) + size_t(hist_e + 1) * sizeof(unsigned) + 8 * sizeof(int);
}

struct CodeSource {  // key of database code j for one query
    const uint8_t* q;
    const uint8_t* db;
    int64_t cs;
    int load;
    EK_FN bool get(int64_t j, uint64_t& key) const {
        key = make_key(code_distance(q, db + j * cs, cs, load), j);
        return true;
    }
};

struct ListSource {  // keys emitted by the partitions of one query
    const uint64_t* keys;
    EK_FN bool get(int64_t j, uint64_t& key) const {
        key = keys[j];
        return key != kNoKey;
    }
};

// Sort the candidate buffer and keep its best k (nbuf > k here). Starts and ends synchronised.
template <class Ctx>
EK_FN void filter_compact(Ctx& ctx, uint64_t* keys, int* nbuf, int k) {
    const int n = *nbuf;
    sort_padded(ctx, keys, n);
    if (ctx.tid() == 0) *nbuf = n < k ? n : k;
    ctx.sync();
}

// The filter (see the header note) over source items [begin, end). Writes k keys to keys_out, or
// k (distance, index) pairs to out_d/out_i. Starts and ends synchronised.
template <class Ctx, class Source>
EK_FN void topk_filter(Ctx& ctx, unsigned char* smem, const TopkParams& p, const Source& src,
                       int64_t begin, int64_t end, uint64_t* keys_out, int32_t* out_d,
                       int64_t* out_i) {
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
    unsigned* hist = reinterpret_cast<unsigned*>(keys + p.cap);
    int* sh = reinterpret_cast<int*>(hist + p.hist_e + 1);
    int& nbuf = sh[0];    // keys in the buffer
    int& tau = sh[1];     // reject distances >= tau (tau == E: reject nothing)
    int& below = sh[2];   // kept codes with distance < tau
    int& added = sh[3];   // this chunk's kept codes with distance < tau
    int& compact = sh[4]; // the buffer cannot take another chunk
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int e = p.hist_e, k = int(p.k);
    const int chunk = nt * p.ipt;
    for (int i = tid; i <= e; i += nt) hist[i] = 0;
    if (tid == 0) {
        nbuf = 0;
        tau = e;
        below = 0;
        added = 0;
        compact = 0;
    }
    ctx.sync();
    for (int64_t c0 = begin; c0 < end; c0 += chunk) {
        if (compact) filter_compact(ctx, keys, &nbuf, k);
        const int t = tau;
        for (int it = 0; it < p.ipt; ++it) {
            const int64_t j = c0 + int64_t(it) * nt + tid;
            uint64_t key;
            if (j < end && src.get(j, key)) {
                const int d = key_dist(key);
                if (d < t || t == e) {
                    keys[atomic_add_i32(&nbuf, 1)] = key;
                    atomic_add_u32(&hist[d < e ? d : e], 1u);
                    if (d < t) atomic_add_i32(&added, 1);
                }
            }
        }
        ctx.sync();
        if (tid == 0) {
            int nt_tau = tau, s = below + added;
            while (nt_tau > 0 && s >= k) {
                --nt_tau;
                s -= int(hist[nt_tau]);
            }
            tau = nt_tau;
            below = s;
            added = 0;
            compact = nbuf + chunk > p.cap;
        }
        ctx.sync();
    }
    const int n = nbuf;
    sort_padded(ctx, keys, n);
    for (int i = tid; i < k; i += nt) {
        const uint64_t key = i < n ? keys[i] : kNoKey;
        if (keys_out) {
            keys_out[i] = key;
        } else {
            const bool ok = key != kNoKey;  // always true for a whole database (k <= nb)
            out_d[i] = ok ? key_dist(key) : -1;
            out_i[i] = ok ? key_index(key) : -1;
        }
    }
    ctx.sync();
}

// Filter pass: one work item per (query, partition).
template <class Ctx>
EK_FN void topk_partition_body(Ctx& ctx, unsigned char* smem, const TopkParams& p) {
    const int64_t work = p.nq * p.parts;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        const int64_t qi = w / p.parts, g = w - qi * p.parts;
        const int64_t begin = p.nb * g / p.parts, end = p.nb * (g + 1) / p.parts;
        const CodeSource src{p.q + qi * p.cs, p.db, p.cs, p.load};
        if (p.parts == 1)
            topk_filter(ctx, smem, p, src, begin, end, nullptr, p.out_d + qi * p.k,
                        p.out_i + qi * p.k);
        else
            topk_filter(ctx, smem, p, src, begin, end, p.part_keys + w * p.k, nullptr, nullptr);
    }
}

// Merge pass: one work item per query, over its parts * k partition keys.
template <class Ctx>
EK_FN void topk_merge_body(Ctx& ctx, unsigned char* smem, const TopkParams& p) {
    const int64_t len = p.parts * p.k;
    for (int64_t qi = ctx.block(); qi < p.nq; qi += ctx.nblocks()) {
        const ListSource src{p.part_keys + qi * len};
        topk_filter(ctx, smem, p, src, 0, len, nullptr, p.out_d + qi * p.k, p.out_i + qi * p.k);
    }
}

// Histogram-select pass 1: distance counts per query (hist zeroed by the caller).
template <class Ctx>
EK_FN void topk_hist_body(Ctx& ctx, unsigned char* smem, const TopkParams& p) {
    const int64_t bins = 8 * p.cs + 1;
    unsigned* local = reinterpret_cast<unsigned*>(smem);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t work = p.nq * p.parts;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        const int64_t qi = w / p.parts, g = w - qi * p.parts;
        const int64_t begin = p.nb * g / p.parts, end = p.nb * (g + 1) / p.parts;
        const uint8_t* qrow = p.q + qi * p.cs;
        unsigned long long* h = p.hist + qi * bins;
        if (p.hist_in_smem) {
            for (int64_t b = tid; b < bins; b += nt) local[b] = 0;
            ctx.sync();
        }
        for (int64_t j = begin + tid; j < end; j += nt) {
            const int d = code_distance(qrow, p.db + j * p.cs, p.cs, p.load);
            if (p.hist_in_smem) atomic_add_u32(&local[d], 1u);
            else atomic_add_u64(&h[d], 1ull);
        }
        if (p.hist_in_smem) {
            ctx.sync();
            for (int64_t b = tid; b < bins; b += nt)
                if (local[b]) atomic_add_u64(&h[b], local[b]);
            ctx.sync();
        }
    }
}

// Histogram-select pass 2, one thread per query: T = the k-th smallest distance; bins 0..T become
// the first output slot of each distance.
template <class Ctx>
EK_FN void topk_select_body(Ctx& ctx, const TopkParams& p) {
    const int64_t bins = 8 * p.cs + 1;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    const unsigned long long k = static_cast<unsigned long long>(p.k);
    for (int64_t qi = ctx.block() * ctx.nthreads() + ctx.tid(); qi < p.nq; qi += stride) {
        unsigned long long* h = p.hist + qi * bins;
        unsigned long long before = 0;
        int64_t t = 0;
        for (; t < bins - 1; ++t) {
            if (before + h[t] >= k) break;
            before += h[t];
        }
        unsigned long long off = 0;
        for (int64_t u = 0; u <= t; ++u) {
            const unsigned long long c = h[u];
            h[u] = off;
            off += c;
        }
        p.thresh[qi] = int32_t(t);
    }
}

// Histogram-select pass 3: one block per query, chunks of nthreads codes in index order.
template <class Ctx>
EK_FN void topk_emit_body(Ctx& ctx, unsigned char* smem, const TopkParams& p) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
    int* sh = reinterpret_cast<int*>(keys + nt);
    int& count = sh[0];    // candidates in this chunk
    int& written = sh[1];  // output slots filled for this query
    const int64_t bins = 8 * p.cs + 1;
    for (int64_t qi = ctx.block(); qi < p.nq; qi += ctx.nblocks()) {
        const int thr = p.thresh[qi];
        unsigned long long* cursor = p.hist + qi * bins;
        const uint8_t* qrow = p.q + qi * p.cs;
        int32_t* od = p.out_d + qi * p.k;
        int64_t* oi = p.out_i + qi * p.k;
        if (tid == 0) {
            count = 0;
            written = 0;
        }
        ctx.sync();
        for (int64_t c0 = 0; c0 < p.nb; c0 += nt) {
            if (written >= p.k) break;
            const int64_t j = c0 + tid;
            if (j < p.nb) {
                const int d = code_distance(qrow, p.db + j * p.cs, p.cs, p.load);
                if (d <= thr) keys[atomic_add_i32(&count, 1)] = make_key(d, j);
            }
            ctx.sync();
            const int n = count;
            if (n == 0) {
                ctx.sync();
                continue;
            }
            if (tid >= n) keys[tid] = kNoKey;
            ctx.sync();
            block_sort(ctx, keys, nt);
            int start = 0, d = 0;
            if (tid < n) {
                const uint64_t key = keys[tid];
                d = key_dist(key);
                start = lower_bound_key(keys, n, make_key(d, 0));
                const unsigned long long slot = cursor[d] + static_cast<unsigned long long>(tid - start);
                if (slot < static_cast<unsigned long long>(p.k)) {
                    od[slot] = d;
                    oi[slot] = key_index(key);
                    atomic_add_i32(&written, 1);
                }
            }
            ctx.sync();
            if (tid < n && tid == start)
                cursor[d] += static_cast<unsigned long long>(lower_bound_key(keys, n, make_key(d + 1, 0)) - start);
            if (tid == 0) count = 0;
            ctx.sync();
        }
        ctx.sync();
    }
}

// ---- orchestration (shared by the CUDA launcher and the host emulator) --------------------------
// Exec provides: sm_count(); alloc(bytes) / release(ptr) / zero(ptr, bytes) (stream-ordered);
// pack_signs(grid, threads, PackParams<T>), hamming_distance(grid, threads, smem, DistParams),
// topk_partition / topk_merge / topk_hist / topk_emit(grid, threads, smem, TopkParams),
// topk_select(grid, threads, TopkParams).

// ---- kernels (tags for Exec::launch) -------------------------------------------------------------

struct PackSignsKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx, class P>
    static EK_FN void body(Ctx& ctx, unsigned char*, const P& p) { pack_signs_body(ctx, p); }
};
struct HammingDistanceKernel {
    static constexpr int kMaxThreads = kDistThreads;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const DistParams& p) { hamming_distance_body(ctx, smem, p); }
};
EK_KERNEL(TopkPartitionKernel, TopkParams, topk_partition_body(ctx, smem, p);)
EK_KERNEL(TopkMergeKernel, TopkParams, topk_merge_body(ctx, smem, p);)
EK_KERNEL(TopkHistKernel, TopkParams, topk_hist_body(ctx, smem, p);)
EK_KERNEL(TopkSelectKernel, TopkParams, topk_select_body(ctx, p);)
EK_KERNEL(TopkEmitKernel, TopkParams, topk_emit_body(ctx, smem, p);)

constexpr int64_t kMaxIndex = int64_t(1) << kKeyIndexBits;
constexpr int64_t kMaxCodeBytes = int64_t(1) << 20;
constexpr int64_t kMaxParts = int64_t(1) << 20;

inline void run_pack_signs_checks(int64_t n, int64_t d) {
    require_arg(n >= 0 && d >= 0, "pack_signs: negative shape");
}

template <class Exec, class T>
void run_pack_signs(Exec& ex, const T* x, int64_t n, int64_t d, T threshold, bool little,
                    uint8_t* out, int threads = 256) {
    run_pack_signs_checks(n, d);
    require_arg(threads >= 1 && threads <= 256, "threads must be in [1, 256]");
    const int64_t total = n * ((d + 7) / 8);
    if (total == 0) return;
    PackParams<T> p{x, n, d, threshold, little, d % 8 == 0 && aligned_to(x, 16), out};
    const int64_t grid = std::min<int64_t>(ceil_div(total, threads), int64_t(ex.sm_count()) * 32);
    ex.template launch<PackSignsKernel>(grid, threads, 0, p);
}

inline void run_hamming_distance_checks(int64_t na, int64_t nb, int64_t cs) {
    require_arg(na >= 0 && nb >= 0, "hamming_distance: negative shape");
    require_arg(cs >= 1, "codes must have at least one byte");
    require_arg(cs < kMaxCodeBytes, "codes must be shorter than 2^20 bytes");
}

template <class Exec>
void run_hamming_distance(Exec& ex, const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb,
                          int64_t cs, int32_t* out) {
    run_hamming_distance_checks(na, nb, cs);
    if (na == 0 || nb == 0) return;
    DistParams p{a, b, na, nb, cs, cs % 4 == 0 && aligned_to(a, 4), cs % 4 == 0 && aligned_to(b, 4), out};
    const int64_t tiles = ceil_div(na, kDistTile) * ceil_div(nb, kDistTile);
    const int64_t grid = std::min<int64_t>(tiles, int64_t(ex.sm_count()) * 16);
    ex.template launch<HammingDistanceKernel>(grid, kDistThreads, kDistSmem, p);
}

inline void run_hamming_topk_checks(int64_t nq, int64_t nb, int64_t cs, int64_t k,
                                   const TopkOptions& o) {
    require_arg(nq >= 0 && nb >= 0, "hamming_topk: negative shape");
    require_arg(cs >= 1, "codes must have at least one byte");
    require_arg(cs < kMaxCodeBytes, "codes must be shorter than 2^20 bytes");
    require_arg(nb < kMaxIndex, "the database must have fewer than 2^40 codes");
    require_arg(k >= 1 && k <= nb, "k must be in [1, " + std::to_string(nb) + "]");
    require_arg(o.threads >= 32 && o.threads <= 256 && (o.threads & (o.threads - 1)) == 0,
                "threads must be a power of two in [32, 256]");
    require_arg(o.items_per_thread >= 1 && o.items_per_thread <= 64, "items_per_thread must be in [1, 64]");
    require_arg(o.hist_bins >= 2, "hist_bins must be >= 2");
    require_arg(o.path >= 0 && o.path <= 2, "path must be 0, 1 or 2");
    require_arg(o.partitions >= 0 && o.partitions <= kMaxParts, "partitions must be in [0, 2^20]");
}

template <class Exec>
void run_hamming_topk(Exec& ex, const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                      int64_t cs, int64_t k, int32_t* out_d, int64_t* out_i,
                      const TopkOptions& o = TopkOptions()) {
    run_hamming_topk_checks(nq, nb, cs, k, o);
    if (nq == 0) return;

    const int sms = std::max(1, ex.sm_count());
    const int64_t grid_cap = int64_t(sms) * 8;
    const int64_t target = int64_t(sms) * 4;  // blocks wanted for one pass over the database
    const int64_t bits = 8 * cs;
    const int64_t chunk = int64_t(o.threads) * o.items_per_thread;
    const int64_t cap = pow2_at_least64(k + chunk);
    const int64_t hist_e = std::min<int64_t>(bits + 1, o.hist_bins - 1);
    const size_t fsmem = filter_smem_bytes(cap, hist_e);
    const int path = o.path ? o.path : (fsmem <= kSmemLimit ? 1 : 2);
    require_arg(path == 2 || fsmem <= kSmemLimit,
                "k = " + std::to_string(k) + " is too large for the filter path");

    TopkParams p{};
    p.q = q;
    p.db = db;
    p.nq = nq;
    p.nb = nb;
    p.cs = cs;
    p.k = k;
    p.load = choose_load(q, db, cs);
    p.out_d = out_d;
    p.out_i = out_i;

    if (path == 1) {
        int64_t parts = o.partitions;
        if (parts == 0) {
            parts = 1;
            if (nq < target)
                parts = std::max<int64_t>(1, std::min(ceil_div(target, nq),
                                                      nb / std::max(4 * chunk, 8 * k)));
        }
        p.parts = parts;
        p.cap = int(cap);
        p.ipt = o.items_per_thread;
        p.hist_e = int(hist_e);
        if (parts == 1) {
            ex.template launch<TopkPartitionKernel>(std::min(nq, grid_cap), o.threads, fsmem, p);
            return;
        }
        Scratch<Exec> keys(ex, size_t(nq) * size_t(parts) * size_t(k) * sizeof(uint64_t));
        p.part_keys = static_cast<uint64_t*>(keys.ptr);
        ex.template launch<TopkPartitionKernel>(std::min(nq * parts, grid_cap), o.threads, fsmem, p);
        ex.template launch<TopkMergeKernel>(std::min(nq, grid_cap), o.threads, fsmem, p);
        return;
    }

    const int64_t bins = bits + 1;
    const int64_t batch = std::max<int64_t>(1, std::min<int64_t>(nq, o.batch_bytes / (bins * 8)));
    int64_t parts = o.partitions;
    if (parts == 0)
        parts = batch >= target ? 1
                                : std::max<int64_t>(1, std::min(ceil_div(target, batch),
                                                                nb / (4 * int64_t(o.threads))));
    const bool smem_hist = size_t(bins) * sizeof(unsigned) <= kSmemLimit;
    Scratch<Exec> hist(ex, size_t(batch) * size_t(bins) * sizeof(unsigned long long));
    Scratch<Exec> thresh(ex, size_t(batch) * sizeof(int32_t));
    p.parts = parts;
    p.hist = static_cast<unsigned long long*>(hist.ptr);
    p.thresh = static_cast<int32_t*>(thresh.ptr);
    p.hist_in_smem = smem_hist ? 1 : 0;
    for (int64_t q0 = 0; q0 < nq; q0 += batch) {
        const int64_t n = std::min(batch, nq - q0);
        p.q = q + q0 * cs;
        p.nq = n;
        p.out_d = out_d + q0 * k;
        p.out_i = out_i + q0 * k;
        ex.zero(p.hist, size_t(n) * size_t(bins) * sizeof(unsigned long long));
        ex.template launch<TopkHistKernel>(std::min(n * parts, grid_cap), o.threads,
                     smem_hist ? size_t(bins) * sizeof(unsigned) : 0, p);
        ex.template launch<TopkSelectKernel>(std::min(ceil_div(n, o.threads), grid_cap), o.threads, 0, p);
        ex.template launch<TopkEmitKernel>(std::min(n, grid_cap), o.threads,
                     size_t(o.threads) * sizeof(uint64_t) + 2 * sizeof(int), p);
    }
}


// =================================================================================================
// hamming_range, asymmetric_scores, multibit_scores, multibit_topk (see the header note)
// =================================================================================================

// ---- block-wide prefix sums -------------------------------------------------------------------

// Exclusive prefix sum of one value per thread over the block (s: nthreads() slots of shared
// memory, Hillis-Steele). Every thread calls it; `total` gets the block's sum. Ends synchronised.
template <class Ctx>
EK_FN unsigned long long block_exclusive_scan(Ctx& ctx, unsigned long long* s, unsigned long long v,
                                              unsigned long long& total) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    s[tid] = v;
    ctx.sync();
    for (int off = 1; off < nt; off <<= 1) {
        const unsigned long long add = tid >= off ? s[tid - off] : 0ull;
        ctx.sync();
        s[tid] += add;
        ctx.sync();
    }
    const unsigned long long incl = s[tid];
    total = s[nt - 1];
    ctx.sync();
    return incl - v;
}

constexpr int kScanItems = 8;  // consecutive elements per thread per step of block_scan_array

// data[0, len) := base + exclusive prefix sums of data, in place, by one block; returns base + the
// sum of all elements. Every thread calls it. Ends synchronised.
template <class Ctx, class T>
EK_FN T block_scan_array(Ctx& ctx, unsigned long long* s, T* data, int64_t len, T base) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    for (int64_t c0 = 0; c0 < len; c0 += int64_t(nt) * kScanItems) {
        const int64_t lo = c0 + int64_t(tid) * kScanItems;
        T v[kScanItems];
        T sum = 0;
        EK_UNROLL
        for (int e = 0; e < kScanItems; ++e) {
            v[e] = lo + e < len ? data[lo + e] : T(0);
            sum += v[e];
        }
        unsigned long long total;
        T run = base + T(block_exclusive_scan(ctx, s, static_cast<unsigned long long>(sum), total));
        EK_UNROLL
        for (int e = 0; e < kScanItems; ++e) {
            if (lo + e < len) data[lo + e] = run;
            run += v[e];
        }
        base += T(total);
    }
    return base;
}

// ---- hamming_range ------------------------------------------------------------------------------

constexpr int kRangeQ = 8;  // queries per work item: each database word loaded serves all of them

// Distances of one database code to qn <= Q query codes (qs: Q consecutive rows).
template <int Q>
EK_FN void code_distances(const uint8_t* qs, int qn, const uint8_t* b, int64_t cs, int load,
                          int32_t (&d)[Q]) {
    EK_UNROLL
    for (int u = 0; u < Q; ++u) d[u] = 0;
    if (load == kLoadVec16) {
        for (int64_t o = 0; o < cs; o += 16) {
            const Words4 y = load16(b + o);
            EK_UNROLL
            for (int u = 0; u < Q; ++u)
                if (u < qn) {
                    const Words4 x = load16(qs + u * cs + o);
                    d[u] += popc32(x.x ^ y.x) + popc32(x.y ^ y.y) + popc32(x.z ^ y.z) + popc32(x.w ^ y.w);
                }
        }
    } else if (load == kLoadWords) {
        for (int64_t o = 0; o < cs; o += 4) {
            const uint32_t y = load4(b + o);
            EK_UNROLL
            for (int u = 0; u < Q; ++u)
                if (u < qn) d[u] += popc32(load4(qs + u * cs + o) ^ y);
        }
    } else {
        for (int64_t o = 0; o < cs; o += 4) {
            const uint32_t y = load_word(b, cs, o, false);
            EK_UNROLL
            for (int u = 0; u < Q; ++u)
                if (u < qn) d[u] += popc32(load_word(qs + u * cs, cs, o, false) ^ y);
        }
    }
}

struct RangeParams {
    const uint8_t* q;          // the batch's queries
    const uint8_t* db;
    int64_t nq, nb, cs;        // nq: queries of the batch
    int load;                  // LoadWidth for (q, db)
    int32_t radius;            // <= 8 cs
    int64_t bins;              // radius + 1
    int64_t parts;             // database partitions
    int64_t qtiles;            // ceil(nq / kRangeQ)
    int ipt;                   // fill: codes per thread per chunk
    int seg;                   // fill: key slots per query, a power of two >= threads * ipt
    int hist_in_smem;          // count: histograms in shared memory (else atomics on cnt)
    unsigned long long* cnt;   // nq x bins x parts: counts, then output cursors (from the query's start)
    int64_t* lims;             // the batch's first entry of lims
    int32_t* out_d;
    int64_t* out_i;
};

// Work item w -> (query tile, partition), partition-major so that blocks running together share a
// database partition in L2.
EK_FN void range_work(const RangeParams& p, int64_t w, int64_t& qt, int64_t& g, int64_t& begin,
                      int64_t& end) {
    g = w / p.qtiles;
    qt = w - g * p.qtiles;
    begin = p.nb * g / p.parts;
    end = p.nb * (g + 1) / p.parts;
}

// Pass 1: cnt[query][d][partition] = hits at distance d (zeroed by the caller when the histograms
// are not in shared memory).
template <class Ctx>
EK_FN void range_count_body(Ctx& ctx, unsigned char* smem, const RangeParams& p) {
    unsigned* hist = reinterpret_cast<unsigned*>(smem);  // kRangeQ x bins
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t work = p.qtiles * p.parts;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        int64_t qt, g, begin, end;
        range_work(p, w, qt, g, begin, end);
        const int64_t q0 = qt * kRangeQ;
        const int qn = int(min64(kRangeQ, p.nq - q0));
        const uint8_t* qs = p.q + q0 * p.cs;
        if (p.hist_in_smem) {
            for (int64_t i = tid; i < int64_t(kRangeQ) * p.bins; i += nt) hist[i] = 0;
            ctx.sync();
        }
        for (int64_t j = begin + tid; j < end; j += nt) {
            int32_t d[kRangeQ];
            code_distances(qs, qn, p.db + j * p.cs, p.cs, p.load, d);
            EK_UNROLL
            for (int u = 0; u < kRangeQ; ++u)
                if (u < qn && d[u] <= p.radius) {
                    if (p.hist_in_smem)
                        atomic_add_u32(&hist[u * p.bins + d[u]], 1u);
                    else
                        atomic_add_u64(&p.cnt[((q0 + u) * p.bins + d[u]) * p.parts + g], 1ull);
                }
        }
        if (p.hist_in_smem) {
            ctx.sync();
            for (int64_t i = tid; i < int64_t(qn) * p.bins; i += nt) {
                const int64_t u = i / p.bins, d = i - u * p.bins;
                p.cnt[((q0 + u) * p.bins + d) * p.parts + g] = hist[i];
            }
            ctx.sync();
        }
    }
}

// Passes 2-4: exclusive prefix sums of the rows of a u64 matrix in place, every row cut into chunks
// of threads x kScanItems elements so that one long row (one query, many partitions) still uses
// the whole GPU: chunk sums, a scan of each row's chunk sums (the row total goes to totals[row]),
// then each chunk's scan from its base. For hamming_range the rows are the queries' counts in
// (distance, partition) order, which become output cursors from the query's first slot, and then
// the single row of per-query totals, which becomes lims.
struct ScanParams {
    unsigned long long* data;    // rows x len
    int64_t rows, len, nch;      // nch = ceil(len / (threads * kScanItems))
    unsigned long long* part;    // rows x nch chunk sums, then chunk bases
    unsigned long long* totals;  // rows (may be null)
};

template <class Ctx>
EK_FN void scan_reduce_body(Ctx& ctx, unsigned char* smem, const ScanParams& p) {
    unsigned long long* s = reinterpret_cast<unsigned long long*>(smem);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t chunk = int64_t(nt) * kScanItems;
    for (int64_t w = ctx.block(); w < p.rows * p.nch; w += ctx.nblocks()) {
        const int64_t row = w / p.nch, c0 = (w - row * p.nch) * chunk;
        const unsigned long long* d = p.data + row * p.len;
        const int64_t lo = c0 + int64_t(tid) * kScanItems, hi = min64(p.len, c0 + chunk);
        unsigned long long sum = 0;
        EK_UNROLL
        for (int e = 0; e < kScanItems; ++e)
            if (lo + e < hi) sum += d[lo + e];
        unsigned long long total;
        block_exclusive_scan(ctx, s, sum, total);
        if (tid == 0) p.part[w] = total;
    }
}

template <class Ctx>
EK_FN void scan_parts_body(Ctx& ctx, unsigned char* smem, const ScanParams& p) {
    unsigned long long* s = reinterpret_cast<unsigned long long*>(smem);
    for (int64_t row = ctx.block(); row < p.rows; row += ctx.nblocks()) {
        const unsigned long long total = block_scan_array(ctx, s, p.part + row * p.nch, p.nch, 0ull);
        if (ctx.tid() == 0 && p.totals) p.totals[row] = total;
    }
}

template <class Ctx>
EK_FN void scan_apply_body(Ctx& ctx, unsigned char* smem, const ScanParams& p) {
    unsigned long long* s = reinterpret_cast<unsigned long long*>(smem);
    const int64_t chunk = int64_t(ctx.nthreads()) * kScanItems;
    for (int64_t w = ctx.block(); w < p.rows * p.nch; w += ctx.nblocks()) {
        const int64_t row = w / p.nch, c0 = (w - row * p.nch) * chunk;
        block_scan_array(ctx, s, p.data + row * p.len + c0, min64(chunk, p.len - c0), p.part[w]);
    }
}

// Pass 4: a work item rescans its partition in index order, chunk by chunk; a chunk's hits of one
// query are sorted by (distance, index) in shared memory, and hit i goes to slot
// lims[query] + cursor[query][d][partition] + (its rank among the chunk's hits at distance d).
template <class Ctx>
EK_FN void range_fill_body(Ctx& ctx, unsigned char* smem, const RangeParams& p) {
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);          // kRangeQ x seg
    int* count = reinterpret_cast<int*>(keys + kRangeQ * p.seg);  // kRangeQ
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t chunk = int64_t(nt) * p.ipt;
    const int64_t work = p.qtiles * p.parts;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        int64_t qt, g, begin, end;
        range_work(p, w, qt, g, begin, end);
        const int64_t q0 = qt * kRangeQ;
        const int qn = int(min64(kRangeQ, p.nq - q0));
        const uint8_t* qs = p.q + q0 * p.cs;
        if (tid < kRangeQ) count[tid] = 0;
        ctx.sync();
        for (int64_t c0 = begin; c0 < end; c0 += chunk) {
            for (int it = 0; it < p.ipt; ++it) {
                const int64_t j = c0 + int64_t(it) * nt + tid;
                if (j >= end) continue;
                int32_t d[kRangeQ];
                code_distances(qs, qn, p.db + j * p.cs, p.cs, p.load, d);
                EK_UNROLL
                for (int u = 0; u < kRangeQ; ++u)
                    if (u < qn && d[u] <= p.radius)
                        keys[u * p.seg + atomic_add_i32(&count[u], 1)] = make_key(d[u], j);
            }
            ctx.sync();
            for (int u = 0; u < qn; ++u) {
                const int n = count[u];
                if (n == 0) continue;  // block-uniform
                uint64_t* ks = keys + u * p.seg;
                sort_padded(ctx, ks, n);
                const int64_t qi = q0 + u;
                unsigned long long* cur = p.cnt + qi * p.bins * p.parts + g;  // cursor of d: cur[d * parts]
                const int64_t base = p.lims[qi];
                for (int i = tid; i < n; i += nt) {
                    const uint64_t key = ks[i];
                    const int32_t d = key_dist(key);
                    const int start = lower_bound_key(ks, n, make_key(d, 0));
                    const int64_t slot = base + int64_t(cur[int64_t(d) * p.parts]) + (i - start);
                    p.out_d[slot] = d;
                    p.out_i[slot] = key_index(key);
                }
                ctx.sync();
                for (int i = tid; i < n; i += nt) {  // the first hit of each distance moves its cursor
                    const int32_t d = key_dist(ks[i]);
                    if (i == 0 || key_dist(ks[i - 1]) != d)
                        cur[int64_t(d) * p.parts] +=
                            static_cast<unsigned long long>(lower_bound_key(ks, n, make_key(d + 1, 0)) - i);
                }
            }
            ctx.sync();
            if (tid < kRangeQ) count[tid] = 0;
            ctx.sync();
        }
    }
}

// ---- asymmetric_scores --------------------------------------------------------------------------

constexpr int kAsymLanes = 4;      // queries per work item (one 16-byte table entry)
constexpr int kAsymMaxCodes = 4;   // codes per thread
constexpr int64_t kAsymWindow = 128;  // nibbles of table per shared-memory window (32 KB)

struct AsymParams {
    const float* q;       // the batch's queries, nq x d
    int64_t nq, d;        // nq: queries of the batch
    const uint8_t* codes;
    int64_t nb, cs, m;    // m = 2 cs nibbles
    int little;
    int code_aligned;     // cs % 4 == 0 and codes 4-byte aligned
    int cpt;              // codes per thread (<= kAsymMaxCodes)
    int64_t window;       // nibbles per window, a multiple of 8
    int64_t groups;       // ceil(nq / 4)
    float* lut;           // groups x m x 16 x 4 (lane fastest)
    float* out;           // the batch's first output row, nq x nb
};

// Table entry (group g, nibble s, value v, lane l) = sum over the nibble's 4 bits t of +-q[dim],
// added in t order from 0.0f, exactly as the CPU builds it (dimensions >= d add nothing).
template <class Ctx>
EK_FN void asym_lut_body(Ctx& ctx, const AsymParams& p) {
    const int64_t total = p.groups * p.m * 16 * kAsymLanes;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        const int lane = int(e % kAsymLanes);
        const int v = int((e / kAsymLanes) % 16);
        const int64_t gs = e / (16 * kAsymLanes);
        const int64_t s = gs % p.m, g = gs / p.m;
        const int64_t qi = g * kAsymLanes + lane;
        float acc = 0.0f;
        if (qi < p.nq) {
            const float* row = p.q + qi * p.d;
            const int64_t byte = s / 2;
            const int half = int(s % 2);
            for (int t = 0; t < 4; ++t) {
                const int pos = 4 * half + t;  // bit position in the byte, from the LSB
                const int64_t dim = 8 * byte + (p.little ? pos : 7 - pos);
                if (dim < p.d) acc = add_rn(acc, ((v >> t) & 1) ? row[dim] : -row[dim]);
            }
        }
        p.lut[e] = acc;
    }
}

EK_FN void copy4(float* dst, const float* src) {  // both 16-byte aligned
#if defined(__CUDACC__)
    *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(src);
#else
    std::memcpy(dst, src, 4 * sizeof(float));
#endif
}

EK_FN void add4(float* acc, const float* e) {  // e 16-byte aligned
#if defined(__CUDACC__)
    const float4 v = *reinterpret_cast<const float4*>(e);
    acc[0] = add_rn(acc[0], v.x);
    acc[1] = add_rn(acc[1], v.y);
    acc[2] = add_rn(acc[2], v.z);
    acc[3] = add_rn(acc[3], v.w);
#else
    for (int l = 0; l < 4; ++l) acc[l] = add_rn(acc[l], e[l]);
#endif
}

// Work item = (4-query group, tile of threads x cpt codes), tile-major (blocks running together
// share codes). The group's table goes through shared memory window by window; each code adds its
// entries nibble by nibble in order, so every lane is the CPU's sequential float32 sum.
template <class Ctx>
EK_FN void asym_scan_body(Ctx& ctx, unsigned char* smem, const AsymParams& p) {
    float* lw = reinterpret_cast<float*>(smem);  // window x 16 x 4
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t tile = int64_t(nt) * p.cpt;
    const int64_t work = (p.nb + tile - 1) / tile * p.groups;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        const int64_t ct = w / p.groups, g = w - ct * p.groups;
        const int64_t j0 = ct * tile;
        const float* glut = p.lut + g * p.m * 16 * kAsymLanes;
        float acc[kAsymMaxCodes][kAsymLanes];
        EK_UNROLL
        for (int c = 0; c < kAsymMaxCodes; ++c)
            EK_UNROLL
            for (int l = 0; l < kAsymLanes; ++l) acc[c][l] = 0.0f;
        for (int64_t s0 = 0; s0 < p.m; s0 += p.window) {
            const int64_t wn = min64(p.window, p.m - s0);  // even: m and window are
            ctx.sync();  // the previous window is no longer read
            for (int64_t i = tid; i < wn * 16; i += nt) copy4(lw + 4 * i, glut + (s0 * 16 + i) * kAsymLanes);
            ctx.sync();
            const int64_t b0 = s0 / 2, b1 = (s0 + wn) / 2;  // code bytes of the window; b0 % 4 == 0
            EK_UNROLL
            for (int c = 0; c < kAsymMaxCodes; ++c) {
                const int64_t j = j0 + tid + int64_t(c) * nt;
                if (c >= p.cpt || j >= p.nb) continue;
                const uint8_t* row = p.codes + j * p.cs;
                for (int64_t b = b0; b < b1; b += 4) {
                    const uint32_t word = load_word(row, p.cs, b, p.code_aligned != 0);
                    const int64_t lb = 2 * (b - b0);  // local nibble of the word's first byte
                    EK_UNROLL
                    for (int e = 0; e < 4; ++e) {
                        if (b + e >= b1) break;
                        const uint32_t byte = (word >> (8 * e)) & 0xFFu;
                        add4(acc[c], lw + ((lb + 2 * e) * 16 + (byte & 15u)) * kAsymLanes);
                        add4(acc[c], lw + ((lb + 2 * e + 1) * 16 + (byte >> 4)) * kAsymLanes);
                    }
                }
            }
        }
        EK_UNROLL
        for (int c = 0; c < kAsymMaxCodes; ++c) {
            const int64_t j = j0 + tid + int64_t(c) * nt;
            if (c >= p.cpt || j >= p.nb) continue;
            EK_UNROLL
            for (int l = 0; l < kAsymLanes; ++l) {
                const int64_t qi = g * kAsymLanes + l;
                if (qi < p.nq) p.out[qi * p.nb + j] = acc[c][l];
            }
        }
    }
}

// ---- multibit_scores / multibit_topk -----------------------------------------------------------

constexpr int kMbInline = 8;  // planes whose weight products travel in the kernel parameters
constexpr size_t kMbWeightBytes = size_t(kMbInline) * kMbInline * sizeof(double);
constexpr int kMbQ = 8;       // queries per scores work item (a code's planes stay in L1 for them)

struct MultibitParams {
    const uint8_t* q;
    const uint8_t* db;
    int64_t nq, nb, planes, nbytes;
    int load;                  // LoadWidth for (q, db) rows of nbytes
    double ww[kMbInline * kMbInline];  // planes <= kMbInline: ww[s * planes + t] = w_s w_t
    const double* ww_dev;      // planes > kMbInline: the same products in device memory
    double wsum;               // dim * sum of ww, summed in order
    float* out;                // scores: nq x nb
    // top-k
    int64_t k, parts;
    int cap;                   // key buffer size, a power of two >= k + threads * ipt
    int ipt;                   // codes per thread per chunk
    uint64_t* part_keys;       // parts > 1: nq x parts x k keys
    uint64_t* gkeys;           // global-memory key buffers, one of cap keys per block (else shared)
    float* out_s;
    int64_t* out_i;
};

// The weight products, in shared memory (first kMbWeightBytes) or device memory. Block-uniform.
template <class Ctx>
EK_FN const double* mb_weights(Ctx& ctx, unsigned char* smem, const MultibitParams& p) {
    if (p.ww_dev) return p.ww_dev;
    double* s = reinterpret_cast<double*>(smem);
    const int pp = int(p.planes * p.planes), tid = ctx.tid(), nt = ctx.nthreads();
    EK_UNROLL
    for (int i = 0; i < kMbInline * kMbInline; ++i)  // constant indices into the parameters
        if (i < pp && i % nt == tid) s[i] = p.ww[i];
    ctx.sync();
    return s;
}

// sum_s sum_t w_s w_t (dim - 2 h_st), as the CPU: acc = sum of ww[s,t] * h_st in (s, t) order in
// double from 0.0, then float(wsum - 2 acc), every operation rounded on its own.
EK_FN float mb_score(const uint8_t* qrow, const uint8_t* drow, const MultibitParams& p, const double* ww) {
    const int64_t P = p.planes, nb = p.nbytes;
    double acc = 0.0;
    for (int64_t s = 0; s < P; ++s)
        for (int64_t t = 0; t < P; ++t) {
            const int32_t h = code_distance(qrow + s * nb, drow + t * nb, nb, p.load);
            acc = add_rn(acc, mul_rn(ww[s * P + t], double(h)));
        }
    return static_cast<float>(add_rn(p.wsum, -mul_rn(2.0, acc)));
}

template <class Ctx>
EK_FN void mb_scores_body(Ctx& ctx, unsigned char* smem, const MultibitParams& p) {
    const double* ww = mb_weights(ctx, smem, p);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t row = p.planes * p.nbytes;
    const int64_t qtiles = (p.nq + kMbQ - 1) / kMbQ, ctiles = (p.nb + nt - 1) / nt;
    for (int64_t w = ctx.block(); w < qtiles * ctiles; w += ctx.nblocks()) {
        const int64_t ct = w / qtiles, qt = w - ct * qtiles;  // tile-major: blocks share codes
        const int64_t j = ct * nt + tid;
        if (j >= p.nb) continue;
        const uint8_t* drow = p.db + j * row;
        const int64_t i0 = qt * kMbQ;
        const int qn = int(min64(kMbQ, p.nq - i0));
        for (int u = 0; u < qn; ++u) p.out[(i0 + u) * p.nb + j] = mb_score(p.q + (i0 + u) * row, drow, p, ww);
    }
}

// Top-k keys: one uint64 comparison orders (score descending, index ascending):
// [~ordered(score) : 32][index : 31][score is -0.0 : 1]. -0.0 ranks as +0.0 (the CPU compares them
// equal) and comes back as -0.0; NaN ranks after every number. Needs nb < 2^31.
EK_FN uint64_t mb_key(float score, int64_t j) {
    uint32_t u = float_bits(score);
    uint32_t neg0 = 0;
    if (u == 0x80000000u) {
        u = 0;
        neg0 = 1;
    }
    uint32_t asc;  // increases with the score
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) asc = 0;  // NaN: worst
    else asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t(~asc) << 32) | (uint64_t(j) << 1) | neg0;
}
EK_FN float mb_key_score(uint64_t key) {
    const uint32_t asc = ~uint32_t(key >> 32);
    uint32_t u = asc == 0 ? 0x7FC00000u : (asc & 0x80000000u) ? (asc & 0x7FFFFFFFu) : ~asc;
    if (key & 1u) u = 0x80000000u;
    return bits_float(u);
}
EK_FN int64_t mb_key_index(uint64_t key) { return int64_t((key & 0xFFFFFFFFull) >> 1); }

// Key of item j: database code j scored against qrow, or entry j of a list of partition keys.
EK_FN bool mb_get(const MultibitParams& p, const double* ww, const uint8_t* qrow, const uint64_t* list,
                  int64_t j, uint64_t& key) {
    if (list) {
        key = list[j];
        return key != kNoKey;
    }
    key = mb_key(mb_score(qrow, p.db + j * p.planes * p.nbytes, p, ww), j);
    return true;
}

// Sort the buffer, keep its best k and make tau the k-th key. Starts and ends synchronised.
template <class Ctx>
EK_FN void mb_compact(Ctx& ctx, uint64_t* keys, int* nbuf, uint64_t* tau, int k) {
    const int n = *nbuf;
    sort_padded(ctx, keys, n);
    if (ctx.tid() == 0) {
        if (n >= k) *tau = keys[k - 1];
        *nbuf = n < k ? n : k;
    }
    ctx.sync();
}

// Exact top-k of items [begin, end) by key: candidates below tau (the k-th best key of the last
// compaction; keys are unique, so anything above it has k better keys already) are appended to the
// buffer; when the buffer cannot take another chunk it is sorted and cut to k. Writes k keys to
// keys_out, or (score, index) pairs. Starts and ends synchronised.
template <class Ctx>
EK_FN void mb_filter(Ctx& ctx, unsigned char* smem, const MultibitParams& p, const double* ww,
                     const uint8_t* qrow, const uint64_t* list, int64_t begin, int64_t end,
                     uint64_t* keys_out, float* out_s, int64_t* out_i) {
    uint64_t* tau = reinterpret_cast<uint64_t*>(smem + kMbWeightBytes);
    int* sh = reinterpret_cast<int*>(tau + 1);
    int& nbuf = sh[0];
    int& compact = sh[1];
    uint64_t* keys = p.gkeys ? p.gkeys + ctx.block() * int64_t(p.cap) : reinterpret_cast<uint64_t*>(sh + 4);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int k = int(p.k);
    const int chunk = nt * p.ipt;
    if (tid == 0) {
        nbuf = 0;
        compact = 0;
        *tau = kNoKey;
    }
    ctx.sync();
    for (int64_t c0 = begin; c0 < end; c0 += chunk) {
        if (compact) mb_compact(ctx, keys, &nbuf, tau, k);
        const uint64_t t = *tau;
        for (int it = 0; it < p.ipt; ++it) {
            const int64_t j = c0 + int64_t(it) * nt + tid;
            uint64_t key;
            if (j < end && mb_get(p, ww, qrow, list, j, key) && key < t) keys[atomic_add_i32(&nbuf, 1)] = key;
        }
        ctx.sync();
        if (tid == 0) compact = nbuf + chunk > p.cap;
        ctx.sync();
    }
    const int n = nbuf;
    sort_padded(ctx, keys, n);
    for (int i = tid; i < k; i += nt) {
        const uint64_t key = i < n ? keys[i] : kNoKey;
        if (keys_out) {
            keys_out[i] = key;
        } else {
            const bool ok = key != kNoKey;  // always true for a whole database (k <= nb)
            out_s[i] = ok ? mb_key_score(key) : -bits_float(0x7F800000u);
            out_i[i] = ok ? mb_key_index(key) : -1;
        }
    }
    ctx.sync();
}

// Filter pass: work item = (partition, query), partition-major.
template <class Ctx>
EK_FN void mb_topk_partition_body(Ctx& ctx, unsigned char* smem, const MultibitParams& p) {
    const double* ww = mb_weights(ctx, smem, p);
    const int64_t work = p.nq * p.parts, row = p.planes * p.nbytes;
    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        const int64_t g = w / p.nq, qi = w - g * p.nq;
        const int64_t begin = p.nb * g / p.parts, end = p.nb * (g + 1) / p.parts;
        if (p.parts == 1)
            mb_filter(ctx, smem, p, ww, p.q + qi * row, nullptr, begin, end, nullptr, p.out_s + qi * p.k,
                      p.out_i + qi * p.k);
        else
            mb_filter(ctx, smem, p, ww, p.q + qi * row, nullptr, begin, end,
                      p.part_keys + (qi * p.parts + g) * p.k, nullptr, nullptr);
    }
}

// Merge pass: one work item per query over its parts * k partition keys.
template <class Ctx>
EK_FN void mb_topk_merge_body(Ctx& ctx, unsigned char* smem, const MultibitParams& p) {
    const int64_t len = p.parts * p.k;
    for (int64_t qi = ctx.block(); qi < p.nq; qi += ctx.nblocks())
        mb_filter(ctx, smem, p, nullptr, nullptr, p.part_keys + qi * len, 0, len, nullptr,
                  p.out_s + qi * p.k, p.out_i + qi * p.k);
}

// ---- kernels -------------------------------------------------------------------------------------

EK_KERNEL(RangeCountKernel, RangeParams, range_count_body(ctx, smem, p);)
EK_KERNEL(ScanReduceKernel, ScanParams, scan_reduce_body(ctx, smem, p);)
EK_KERNEL(ScanPartsKernel, ScanParams, scan_parts_body(ctx, smem, p);)
EK_KERNEL(ScanApplyKernel, ScanParams, scan_apply_body(ctx, smem, p);)
EK_KERNEL(RangeFillKernel, RangeParams, range_fill_body(ctx, smem, p);)
EK_KERNEL(AsymLutKernel, AsymParams, asym_lut_body(ctx, p);)
EK_KERNEL(AsymScanKernel, AsymParams, asym_scan_body(ctx, smem, p);)
EK_KERNEL(MultibitScoresKernel, MultibitParams, mb_scores_body(ctx, smem, p);)
EK_KERNEL(MultibitPartitionKernel, MultibitParams, mb_topk_partition_body(ctx, smem, p);)
EK_KERNEL(MultibitMergeKernel, MultibitParams, mb_topk_merge_body(ctx, smem, p);)

// ---- orchestration ----------------------------------------------------------------------------

inline void require_block(int threads) {
    require_arg(threads >= 32 && threads <= 256 && (threads & (threads - 1)) == 0,
                "threads must be a power of two in [32, 256]");
}

inline void run_hamming_range_checks(int64_t nq, int64_t nb, int64_t cs, int32_t radius,
                                     const RangeOptions& o) {
    require_arg(nq >= 0 && nb >= 0, "hamming_range: negative shape");
    require_arg(cs >= 1, "codes must have at least one byte");
    require_arg(cs < kMaxCodeBytes, "codes must be shorter than 2^20 bytes");
    require_arg(nb < kMaxIndex, "the database must have fewer than 2^40 codes");
    require_arg(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    require_block(o.threads);
    require_arg(o.items_per_thread >= 1 && int64_t(o.threads) * o.items_per_thread <= 512,
                "items_per_thread must be >= 1 with threads * items_per_thread <= 512");
    require_arg(o.partitions >= 0 && o.partitions <= kMaxParts, "partitions must be in [0, 2^20]");
    require_arg(o.batch_bytes >= 1, "batch_bytes must be >= 1");
}

// Exclusive prefix sums of each row of data (rows x len) in place; row totals to `totals` when it
// is not null. Three launches (see ScanParams), all grids capped.
template <class Exec>
void run_scan_rows(Exec& ex, unsigned long long* data, int64_t rows, int64_t len, int threads,
                   unsigned long long* totals, int64_t grid_cap) {
    if (rows == 0) return;
    const int64_t nch = std::max<int64_t>(1, ceil_div(len, int64_t(threads) * kScanItems));
    const size_t smem = size_t(threads) * sizeof(unsigned long long);
    if (nch == 1) {  // short rows: one block scans a whole row (the "chunk sums" are the row)
        const ScanParams p{data, rows, len, len, data, totals};
        ex.template launch<ScanPartsKernel>(std::min(rows, grid_cap), threads, smem, p);
        return;
    }
    Scratch<Exec> part(ex, size_t(rows) * size_t(nch) * sizeof(unsigned long long));
    ScanParams p{data, rows, len, nch, part.template as<unsigned long long>(), totals};
    ex.template launch<ScanReduceKernel>(std::min(rows * nch, grid_cap), threads, smem, p);
    ex.template launch<ScanPartsKernel>(std::min(rows, grid_cap), threads, smem, p);
    ex.template launch<ScanApplyKernel>(std::min(rows * nch, grid_cap), threads, smem, p);
}

// Returns the number of hits. `lims` (nq + 1 int64) is filled; `read_i64(device pointer)` reads one
// int64 back to the host (waiting for the stream); `alloc(total, &out_d, &out_i)` provides the
// outputs once their size is known (called exactly once, also for total == 0).
template <class Exec, class Read, class Alloc>
int64_t run_hamming_range(Exec& ex, const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                          int64_t cs, int32_t radius, int64_t* lims, Read&& read_i64, Alloc&& alloc,
                          const RangeOptions& o = RangeOptions()) {
    run_hamming_range_checks(nq, nb, cs, radius, o);
    int32_t* out_d = nullptr;
    int64_t* out_i = nullptr;
    if (nq == 0 || nb == 0) {
        ex.zero(lims, size_t(nq + 1) * sizeof(int64_t));
        alloc(int64_t(0), &out_d, &out_i);
        return 0;
    }
    const int sms = std::max(1, ex.sm_count());
    const int64_t grid_cap = int64_t(sms) * 8;
    const int64_t target = int64_t(sms) * 4;
    const int64_t bins = std::min<int64_t>(radius, 8 * cs) + 1;
    const int64_t per_query = bins * int64_t(sizeof(unsigned long long));  // cursor bytes per partition
    int64_t batch = std::max<int64_t>(1, std::min<int64_t>(nq, o.batch_bytes / per_query));
    if (batch > kRangeQ) batch -= batch % kRangeQ;
    int64_t parts = o.partitions;
    if (parts == 0) {
        const int64_t qtiles = ceil_div(batch, kRangeQ);
        parts = qtiles >= target ? 1
                                 : std::max<int64_t>(1, std::min(ceil_div(target, qtiles),
                                                                 nb / (4 * int64_t(o.threads))));
        parts = std::max<int64_t>(1, std::min(parts, o.batch_bytes / (batch * per_query)));
    }
    parts = std::min(parts, nb);
    const bool smem_hist = size_t(kRangeQ) * size_t(bins) * sizeof(unsigned) <= kSmemLimit;
    const int seg = int(pow2_at_least64(int64_t(o.threads) * o.items_per_thread));
    const size_t fill_smem = size_t(kRangeQ) * seg * sizeof(uint64_t) + kRangeQ * sizeof(int);
    Scratch<Exec> cnt(ex, size_t(batch) * size_t(bins) * size_t(parts) * sizeof(unsigned long long));

    RangeParams p{};
    p.db = db;
    p.nb = nb;
    p.cs = cs;
    p.load = choose_load(q, db, cs);
    p.radius = int32_t(bins - 1);
    p.bins = bins;
    p.parts = parts;
    p.ipt = o.items_per_thread;
    p.seg = seg;
    p.hist_in_smem = smem_hist ? 1 : 0;
    p.cnt = cnt.template as<unsigned long long>();

    // lims holds non-negative values: scanned as unsigned 64-bit integers
    unsigned long long* ulims = reinterpret_cast<unsigned long long*>(lims);
    auto count_pass = [&](int64_t q0, int64_t n, bool write_counts) {
        p.q = q + q0 * cs;
        p.nq = n;
        p.qtiles = ceil_div(n, kRangeQ);
        p.lims = lims + q0;
        if (!smem_hist) ex.zero(p.cnt, size_t(n) * size_t(bins) * size_t(parts) * sizeof(unsigned long long));
        ex.template launch<RangeCountKernel>(std::min(p.qtiles * parts, grid_cap), o.threads,
                                             smem_hist ? size_t(kRangeQ) * size_t(bins) * sizeof(unsigned) : 0, p);
        // counts in (distance, partition) order -> cursors; the query totals go to lims[q0, q0 + n)
        run_scan_rows(ex, p.cnt, n, bins * parts, o.threads, write_counts ? ulims + q0 : nullptr, grid_cap);
    };
    const int64_t nbatches = ceil_div(nq, batch);
    for (int64_t q0 = 0; q0 < nq; q0 += batch) count_pass(q0, std::min(batch, nq - q0), true);
    run_scan_rows(ex, ulims, 1, nq, o.threads, ulims + nq, grid_cap);  // totals -> lims
    const int64_t total = read_i64(lims + nq);
    alloc(total, &out_d, &out_i);
    if (total == 0) return 0;
    p.out_d = out_d;
    p.out_i = out_i;
    for (int64_t q0 = 0; q0 < nq; q0 += batch) {
        const int64_t n = std::min(batch, nq - q0);
        if (nbatches > 1) count_pass(q0, n, false);  // the cursors of this batch again
        p.q = q + q0 * cs;
        p.nq = n;
        p.qtiles = ceil_div(n, kRangeQ);
        p.lims = lims + q0;
        ex.template launch<RangeFillKernel>(std::min(p.qtiles * parts, grid_cap), o.threads, fill_smem, p);
    }
    return total;
}

inline void run_asymmetric_checks(int64_t nq, int64_t d, int64_t nb, const AsymOptions& o) {
    require_arg(nq >= 0 && nb >= 0, "asymmetric_scores: negative shape");
    require_arg(d >= 1, "queries must have at least one dimension");
    require_arg(d < 8 * kMaxCodeBytes, "queries must have fewer than 2^23 dimensions");
    require_block(o.threads);
    require_arg(o.codes_per_thread >= 1 && o.codes_per_thread <= kAsymMaxCodes,
                "codes_per_thread must be in [1, 4]");
    require_arg(o.window >= 8 && o.window % 8 == 0 && o.window <= kAsymWindow,
                "window must be a multiple of 8 in [8, 128]");
    require_arg(o.batch_bytes >= 1, "batch_bytes must be >= 1");
}

template <class Exec>
void run_asymmetric_scores(Exec& ex, const float* q, int64_t nq, int64_t d, const uint8_t* codes,
                           int64_t nb, bool little, float* out, const AsymOptions& o = AsymOptions()) {
    run_asymmetric_checks(nq, d, nb, o);
    if (nq == 0 || nb == 0) return;
    const int sms = std::max(1, ex.sm_count());
    const int64_t cs = (d + 7) / 8, m = 2 * cs;
    const int64_t window = std::min<int64_t>(o.window, (m + 7) / 8 * 8);
    const int64_t group_bytes = m * 16 * kAsymLanes * int64_t(sizeof(float));
    const int64_t groups = std::max<int64_t>(1, std::min(ceil_div(nq, kAsymLanes), o.batch_bytes / group_bytes));
    Scratch<Exec> lut(ex, size_t(groups) * size_t(group_bytes));
    AsymParams p{};
    p.d = d;
    p.codes = codes;
    p.nb = nb;
    p.cs = cs;
    p.m = m;
    p.little = little ? 1 : 0;
    p.code_aligned = (cs % 4 == 0 && aligned_to(codes, 4)) ? 1 : 0;
    p.cpt = o.codes_per_thread;
    p.window = window;
    p.lut = lut.template as<float>();
    const int64_t batch = groups * kAsymLanes;
    const int64_t tile = int64_t(o.threads) * o.codes_per_thread;
    for (int64_t q0 = 0; q0 < nq; q0 += batch) {
        p.q = q + q0 * d;
        p.nq = std::min(batch, nq - q0);
        p.groups = ceil_div(p.nq, kAsymLanes);
        p.out = out + q0 * nb;
        const int64_t entries = p.groups * m * 16 * kAsymLanes;
        ex.template launch<AsymLutKernel>(grid_for(entries, o.threads, sms), o.threads, 0, p);
        ex.template launch<AsymScanKernel>(std::min(ceil_div(nb, tile) * p.groups, int64_t(sms) * 16), o.threads,
                                           size_t(window) * 16 * kAsymLanes * sizeof(float), p);
    }
}

constexpr int64_t kMbMaxIndex = int64_t(1) << 31;
constexpr int64_t kMbMaxK = int64_t(1) << 28;

inline void run_multibit_checks(int64_t nq, int64_t nb, int64_t planes, int64_t nbytes, int64_t dim,
                                const MultibitOptions& o) {
    require_arg(nq >= 0 && nb >= 0, "multibit: negative shape");
    require_arg(planes >= 1 && nbytes >= 1, "codes must have at least one plane and one byte");
    require_arg(nbytes < kMaxCodeBytes, "planes must be shorter than 2^20 bytes");
    require_arg(dim >= 1 && (dim + 7) / 8 == nbytes, "dim must satisfy ceil(dim/8) == bytes per plane");
    require_block(o.threads);
    require_arg(o.items_per_thread >= 1 && o.items_per_thread <= 64, "items_per_thread must be in [1, 64]");
    require_arg(o.path >= 0 && o.path <= 2, "path must be 0, 1 or 2");
    require_arg(o.partitions >= 0 && o.partitions <= kMaxParts, "partitions must be in [0, 2^20]");
    require_arg(o.batch_bytes >= 1, "batch_bytes must be >= 1");
}

// Fills the weight products of p (inline or in `dev`, which must outlive the launches).
template <class Exec>
void multibit_weights(Exec& ex, MultibitParams& p, const double* w, int64_t dim, Scratch<Exec>& dev) {
    const int64_t P = p.planes;
    std::vector<double> ww(size_t(P * P));
    for (int64_t s = 0; s < P; ++s)
        for (int64_t t = 0; t < P; ++t) ww[size_t(s * P + t)] = w[s] * w[t];
    double sum = 0.0;  // std::accumulate's order, as the CPU
    for (double v : ww) sum = sum + v;
    p.wsum = sum * static_cast<double>(dim);
    if (P <= kMbInline) {
        std::copy(ww.begin(), ww.end(), p.ww);
        p.ww_dev = nullptr;
    } else {
        ex.copy(dev.ptr, ww.data(), ww.size() * sizeof(double));
        p.ww_dev = dev.template as<double>();
    }
}

template <class Exec>
void run_multibit_scores(Exec& ex, const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                         int64_t planes, int64_t nbytes, int64_t dim, const double* w, float* out,
                         const MultibitOptions& o = MultibitOptions()) {
    run_multibit_checks(nq, nb, planes, nbytes, dim, o);
    if (nq == 0 || nb == 0) return;
    MultibitParams p{};
    p.q = q;
    p.db = db;
    p.nq = nq;
    p.nb = nb;
    p.planes = planes;
    p.nbytes = nbytes;
    p.load = choose_load(q, db, nbytes);
    Scratch<Exec> wdev(ex, planes > kMbInline ? size_t(planes * planes) * sizeof(double) : 0);
    multibit_weights(ex, p, w, dim, wdev);
    p.out = out;
    const int64_t work = ceil_div(nq, kMbQ) * ceil_div(nb, o.threads);
    ex.template launch<MultibitScoresKernel>(std::min(work, int64_t(std::max(1, ex.sm_count())) * 16),
                                             o.threads, kMbWeightBytes, p);
}

inline size_t mb_filter_smem(int64_t cap, bool global_keys) {
    return kMbWeightBytes + sizeof(uint64_t) + 4 * sizeof(int) + (global_keys ? 0 : size_t(cap) * sizeof(uint64_t));
}

template <class Exec>
void run_multibit_topk(Exec& ex, const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                       int64_t planes, int64_t nbytes, int64_t dim, const double* w, int64_t k,
                       float* out_s, int64_t* out_i, const MultibitOptions& o = MultibitOptions()) {
    run_multibit_checks(nq, nb, planes, nbytes, dim, o);
    require_arg(nb < kMbMaxIndex, "the database must have fewer than 2^31 codes on the CUDA backend");
    require_arg(k >= 1 && k <= nb, "k must be in [1, " + std::to_string(nb) + "]");
    require_arg(k <= kMbMaxK, "k must be <= 2^28 on the CUDA backend");
    if (nq == 0) return;
    const int sms = std::max(1, ex.sm_count());
    const int64_t grid_cap = int64_t(sms) * 8;
    const int64_t target = int64_t(sms) * 4;
    const int64_t chunk = int64_t(o.threads) * o.items_per_thread;
    const int64_t cap = pow2_at_least64(k + chunk);
    const int path = o.path ? o.path : (mb_filter_smem(cap, false) <= kSmemLimit ? 1 : 2);
    require_arg(path == 2 || mb_filter_smem(cap, false) <= kSmemLimit,
                "k = " + std::to_string(k) + " is too large for the shared-memory path");
    int64_t parts = o.partitions;
    if (parts == 0) {
        parts = 1;
        if (nq < target)
            parts = std::max<int64_t>(1, std::min(ceil_div(target, nq), nb / std::max(4 * chunk, 8 * k)));
    }
    parts = std::min(parts, nb);

    MultibitParams p{};
    p.q = q;
    p.db = db;
    p.nq = nq;
    p.nb = nb;
    p.planes = planes;
    p.nbytes = nbytes;
    p.load = choose_load(q, db, nbytes);
    Scratch<Exec> wdev(ex, planes > kMbInline ? size_t(planes * planes) * sizeof(double) : 0);
    multibit_weights(ex, p, w, dim, wdev);
    p.k = k;
    p.parts = parts;
    p.cap = int(cap);
    p.ipt = o.items_per_thread;
    p.out_s = out_s;
    p.out_i = out_i;
    int64_t blocks = grid_cap;
    const bool global_keys = path == 2;
    if (global_keys)  // one buffer of cap keys per block
        blocks = std::max<int64_t>(1, std::min<int64_t>(grid_cap, o.batch_bytes / (cap * int64_t(sizeof(uint64_t)))));
    Scratch<Exec> gkeys(ex, global_keys ? size_t(blocks) * size_t(cap) * sizeof(uint64_t) : 0);
    p.gkeys = global_keys ? gkeys.template as<uint64_t>() : nullptr;
    const size_t smem = mb_filter_smem(cap, global_keys);
    if (parts == 1) {
        ex.template launch<MultibitPartitionKernel>(std::min(nq, blocks), o.threads, smem, p);
        return;
    }
    Scratch<Exec> keys(ex, size_t(nq) * size_t(parts) * size_t(k) * sizeof(uint64_t));
    p.part_keys = keys.template as<uint64_t>();
    ex.template launch<MultibitPartitionKernel>(std::min(nq * parts, blocks), o.threads, smem, p);
    ex.template launch<MultibitMergeKernel>(std::min(nq, blocks), o.threads, smem, p);
}

}  // namespace embkern::cuda
