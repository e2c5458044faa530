"""Bounded max-heap of (key, id) pairs for the Numba fallbacks (the twin of csrc/common/heap.hpp).

Pairs are ordered lexicographically; the root is the worst kept pair, so a candidate enters only if
(key, id) < root, which sends ties to the smaller id. Heaps live in flat arrays at a base offset.
"""
from numba import njit

_JIT = dict(cache=True, nogil=True)


@njit(inline="always", **_JIT)
def pair_less(k1, i1, k2, i2):
    return k1 < k2 or (k1 == k2 and i1 < i2)


@njit(**_JIT)
def replace_top(keys, ids, base, k, key, idx):
    """Replace the root of the k-slot heap at `base` by (key, idx) and restore the heap property."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and pair_less(keys[base + child], ids[base + child],
                                       keys[base + child + 1], ids[base + child + 1]):
            child += 1
        if not pair_less(key, idx, keys[base + child], ids[base + child]):
            break
        keys[base + pos] = keys[base + child]
        ids[base + pos] = ids[base + child]
        pos = child
    keys[base + pos] = key
    ids[base + pos] = idx


@njit(**_JIT)
def heap_sort(keys, ids, base, k):
    """Sort the k-slot heap at `base` in place, ascending (key, id)."""
    for end in range(k - 1, 0, -1):
        top_k = keys[base]
        top_i = ids[base]
        replace_top(keys, ids, base, end, keys[base + end], ids[base + end])
        keys[base + end] = top_k
        ids[base + end] = top_i
