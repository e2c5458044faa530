// Exact top-k selection for the PQ scans (adc_topk, fastscan_topk, fastscan rerank), as block-level
// bodies for the kernel convention of common/blocks.hpp (no warp intrinsics; shared memory only).
//
// Keys. A candidate is one uint64: (value << 32) | id, value a 32-bit unsigned whose order is the
// score order (an order-preserving image of a float32 distance, or a 16-bit fast-scan sum), id the
// database index (< 2^32 - 1, checked by the launchers). All keys of a query are distinct, so
// "(distance, id) ascending, ties by smaller id" is plain uint64 order, and every selection below
// is deterministic whatever the order in which threads found the candidates. kNoKey (all ones)
// pads buffers and never equals a real key.
//
// Two paths, chosen by the launcher:
//  * filter (k + chunk <= 8192 keys): one block per (query, database partition) walks its
//    partition in index order, `chunk` = threads * items_per_thread items at a time, and keeps the
//    candidates that can still be in the top k in a shared-memory key buffer. The bound tau is the
//    value of the k-th best kept key, refreshed whenever the buffer is compacted (bitonic sort, cut
//    to k); an item whose value is >= tau is dropped: k kept keys are no worse and have smaller
//    ids (items come in ascending id). Each partition emits its k best keys; with several
//    partitions a merge pass runs the same filter over the parts * k keys of a query, which list
//    equal values by ascending id (partition order, then sorted order), all the rule needs.
//  * sort (any k): items are turned into keys in runs of `run` keys, each sorted in shared memory
//    (bitonic) and written to global scratch; runs are then merged pairwise, truncated to k, by
//    ranking: the output slot of a key is its rank in its own run plus the number of keys of the
//    partner run below it (one binary search; keys are distinct, so slots never collide). log2
//    (runs) passes of O(n log k) work per query; queries are processed in batches that fit the
//    scratch budget. This path also sorts candidate lists whose ids are not in ascending order
//    (the rerank), which the filter could not.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cuda/common/block_sort.hpp"
#include "cuda/common/blocks.hpp"

namespace embkern::cuda::pq {

EK_FN uint64_t make_key(uint32_t value, int64_t id) { return (uint64_t(value) << 32) | uint64_t(uint32_t(id)); }
EK_FN uint32_t key_value(uint64_t key) { return uint32_t(key >> 32); }
EK_FN int64_t key_id(uint64_t key) { return int64_t(key & 0xFFFFFFFFull); }

// Order-preserving map of a (non-NaN) float to uint32: negative values reversed below positives.
EK_FN uint32_t float_order(float f) {
    const uint32_t u = float_bits(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
EK_FN float order_float(uint32_t v) { return bits_float((v & 0x80000000u) ? (v & 0x7FFFFFFFu) : ~v); }



// Number of keys in sorted keys[0, n) that are < key.
EK_FN int64_t count_below(const uint64_t* keys, int64_t n, uint64_t key) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        if (keys[mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// ---- filter path ----------------------------------------------------------------------------

struct FilterShape {
    int cap;   // key buffer (power of two >= k + chunk)
    int ipt;   // items per thread per chunk
    int64_t k;
    uint32_t tau0;  // initial bound: values >= tau0 are never candidates
};

// Shared memory: cap keys, then 4 ints. `keys` must be 8-byte aligned.
constexpr size_t filter_smem(int cap) { return size_t(cap) * sizeof(uint64_t) + 4 * sizeof(int); }

// The k best keys of items [begin, end) of `src` (src.get(j, key) -> false: no candidate) into
// out[0, k), kNoKey-padded. Items must come with ascending ids for equal values (see above).
// Starts and ends synchronised.
template <class Ctx, class Src>
EK_FN void filter_topk(Ctx& ctx, uint64_t* keys, const FilterShape& f, const Src& src, int64_t begin,
                       int64_t end, uint64_t* out) {
    int* sh = reinterpret_cast<int*>(keys + f.cap);
    int& nbuf = sh[0];
    int& compact = sh[1];
    unsigned& tau = *reinterpret_cast<unsigned*>(sh + 2);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int k = int(f.k);
    const int chunk = nt * f.ipt;
    if (tid == 0) {
        nbuf = 0;
        compact = 0;
        tau = f.tau0;
    }
    ctx.sync();
    for (int64_t c0 = begin; c0 < end; c0 += chunk) {
        if (compact) {  // sort, keep the best k, tighten the bound
            const int n = nbuf;
            sort_padded(ctx, keys, n);
            if (tid == 0) {
                nbuf = n < k ? n : k;
                if (n >= k && key_value(keys[k - 1]) < tau) tau = key_value(keys[k - 1]);
                compact = 0;
            }
            ctx.sync();
        }
        const uint32_t t = tau;
        for (int it = 0; it < f.ipt; ++it) {
            const int64_t j = c0 + int64_t(it) * nt + tid;
            uint64_t key;
            if (j < end && src.get(j, key) && key_value(key) < t) keys[atomic_add_i32(&nbuf, 1)] = key;
        }
        ctx.sync();
        if (tid == 0) compact = nbuf + chunk > f.cap;
        ctx.sync();
    }
    const int n = nbuf;
    sort_padded(ctx, keys, n);
    for (int i = tid; i < k; i += nt) out[i] = i < n ? keys[i] : kNoKey;
    ctx.sync();
}

// Keys listed by the partitions of one query (the merge pass).
struct KeyList {
    const uint64_t* keys;
    EK_FN bool get(int64_t j, uint64_t& key) const {
        key = keys[j];
        return key != kNoKey;
    }
};

struct MergeParams {
    FilterShape f;
    int64_t nq, parts;
    const uint64_t* part_keys;  // nq x parts x k
    uint64_t* out;              // nq x k
};

template <class Ctx>
EK_FN void filter_merge_body(Ctx& ctx, unsigned char* smem, const MergeParams& p) {
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
    const int64_t len = p.parts * p.f.k;
    for (int64_t q = ctx.block(); q < p.nq; q += ctx.nblocks())
        filter_topk(ctx, keys, p.f, KeyList{p.part_keys + q * len}, 0, len, p.out + q * p.f.k);
}

struct FilterMergeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const MergeParams& p) { filter_merge_body(ctx, smem, p); }
};

// ---- sort path ------------------------------------------------------------------------------

struct RankMergeParams {
    const uint64_t* src;
    uint64_t* dst;
    int64_t nq;       // queries of this batch
    int64_t total;    // keys per query (runs * run length, a power of two times `run`)
    int64_t width;    // length of the input runs
    int64_t k;
};

// One thread per input key: slot = own rank + keys of the partner run below it; truncated to k.
template <class Ctx>
EK_FN void rank_merge_body(Ctx& ctx, const RankMergeParams& p) {
    const int64_t all = p.nq * p.total;
    const int64_t keep = p.width < p.k ? p.width : p.k;  // valid prefix of a run
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < all; e += stride) {
        const int64_t q = e / p.total, off = e - q * p.total;
        const int64_t run = off / p.width, pos = off - run * p.width;
        if (pos >= keep) continue;
        const uint64_t key = p.src[e];
        if (key == kNoKey) continue;
        const int64_t pair = run >> 1;
        const uint64_t* partner = p.src + q * p.total + ((run ^ 1) * p.width);
        const int64_t slot = pos + count_below(partner, keep, key);
        if (slot < p.k) p.dst[q * p.total + pair * 2 * p.width + slot] = key;
    }
}

struct FillParams {
    uint64_t* dst;
    int64_t n;
};

template <class Ctx>
EK_FN void fill_body(Ctx& ctx, const FillParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < p.n; e += stride) p.dst[e] = kNoKey;
}

struct TakeParams {
    const uint64_t* src;  // nq runs of `total` keys
    int64_t nq, total, k;
    uint64_t* out;        // nq x k
};

template <class Ctx>
EK_FN void take_body(Ctx& ctx, const TakeParams& p) {
    const int64_t all = p.nq * p.k;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < all; e += stride) {
        const int64_t q = e / p.k, r = e - q * p.k;
        p.out[e] = p.src[q * p.total + r];
    }
}

struct RankMergeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char*, const RankMergeParams& p) { rank_merge_body(ctx, p); }
};
struct FillKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char*, const FillParams& p) { fill_body(ctx, p); }
};
struct TakeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char*, const TakeParams& p) { take_body(ctx, p); }
};

}  // namespace embkern::cuda::pq
