// A fixed-size max-heap of (key, id) pairs ordered lexicographically, used by every top-k: the
// root is the worst kept candidate, so a new candidate enters only if (key, id) < root, which
// makes ties go to the smaller id. Slots start as (max key, max id) sentinels. Compiled into each
// tier's own namespace (EMBKERN_ISA_NS) so no tier's code can be merged into another's.
#pragma once
#include <cstdint>

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {

template <class K>
inline bool pair_less(K k1, int64_t i1, K k2, int64_t i2) {
    return k1 < k2 || (k1 == k2 && i1 < i2);
}

// Replace the root by (key, id) and restore the heap property.
template <class K>
inline void heap_replace_top(K* keys, int64_t* ids, int64_t k, K key, int64_t id) {
    int64_t pos = 0;
    for (;;) {
        int64_t child = 2 * pos + 1;
        if (child >= k) break;
        if (child + 1 < k && pair_less(keys[child], ids[child], keys[child + 1], ids[child + 1]))
            ++child;
        if (!pair_less(key, id, keys[child], ids[child])) break;
        keys[pos] = keys[child];
        ids[pos] = ids[child];
        pos = child;
    }
    keys[pos] = key;
    ids[pos] = id;
}

// Offer a candidate; it enters only if it beats the root.
template <class K>
inline void heap_push(K* keys, int64_t* ids, int64_t k, K key, int64_t id) {
    if (pair_less(key, id, keys[0], ids[0])) heap_replace_top(keys, ids, k, key, id);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
