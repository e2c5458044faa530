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
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda/binary/binary_cuda.hpp"
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
constexpr uint64_t kNoKey = ~uint64_t(0);

EK_FN uint64_t make_key(int32_t d, int64_t j) {
    return (uint64_t(uint32_t(d)) << kKeyIndexBits) | uint64_t(j);
}
EK_FN int32_t key_dist(uint64_t key) { return int32_t(key >> kKeyIndexBits); }
EK_FN int64_t key_index(uint64_t key) { return int64_t(key & kKeyIndexMask); }

// Ascending bitonic sort of keys[0, n), n a power of two. Callers synchronise before; ends synced.
template <class Ctx>
EK_FN void block_sort(Ctx& ctx, uint64_t* keys, int n) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < n / 2; i += nt) {
                const int lo = 2 * i - (i & (stride - 1));
                const int hi = lo + stride;
                const bool up = (lo & size) == 0;
                const uint64_t a = keys[lo], b = keys[hi];
                if ((a > b) == up) {
                    keys[lo] = b;
                    keys[hi] = a;
                }
            }
            ctx.sync();
        }
    }
}

EK_FN int pow2_at_least(int v) {
    int p = 1;
    while (p < v) p <<= 1;
    return p;
}

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
    const int m = pow2_at_least(n);
    for (int i = n + ctx.tid(); i < m; i += ctx.nthreads()) keys[i] = kNoKey;
    ctx.sync();
    block_sort(ctx, keys, m);
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
    const int m = pow2_at_least(n);
    for (int i = n + tid; i < m; i += nt) keys[i] = kNoKey;
    ctx.sync();
    block_sort(ctx, keys, m);
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
struct TopkPartitionKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const TopkParams& p) { topk_partition_body(ctx, smem, p); }
};
struct TopkMergeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const TopkParams& p) { topk_merge_body(ctx, smem, p); }
};
struct TopkHistKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const TopkParams& p) { topk_hist_body(ctx, smem, p); }
};
struct TopkSelectKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char*, const TopkParams& p) { topk_select_body(ctx, p); }
};
struct TopkEmitKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const TopkParams& p) { topk_emit_body(ctx, smem, p); }
};

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

}  // namespace embkern::cuda
