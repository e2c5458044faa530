// Block-wide sorting of 64-bit keys in shared memory (bitonic network), for the top-k kernels of
// every family: a key packs (score, index) so that one unsigned comparison is the result order.
#pragma once
#include <cstdint>

#include "cuda/common/blocks.hpp"

namespace embkern::cuda {

constexpr uint64_t kNoKey = ~uint64_t(0);  // an empty slot: sorts after every real key

EK_FN int pow2_at_least(int v) {
    int p = 1;
    while (p < v) p <<= 1;
    return p;
}

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

// Sorts keys[0, n) ascending in place (keys has room for pow2_at_least(n): the tail is padded with
// kNoKey for the bitonic network). Callers synchronise before; ends synchronised.
template <class Ctx>
EK_FN void sort_padded(Ctx& ctx, uint64_t* keys, int n) {
    const int m = pow2_at_least(n);
    for (int i = n + ctx.tid(); i < m; i += ctx.nthreads()) keys[i] = kNoKey;
    ctx.sync();
    block_sort(ctx, keys, m);
}

}  // namespace embkern::cuda
