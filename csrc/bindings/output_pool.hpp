// A cache of large output buffers shared by the bindings of every family (see below).
#pragma once
#include <cstdlib>
#include <mutex>
#include <vector>

#include "bindings/arrays.hpp"
#include "common/huge_alloc.hpp"

namespace embkern::bindings::output_pool {

// Output buffers of large results. A result written into fresh memory costs the OS's page zeroing
// first: for a 8,192 x 4,096 float32 low-rank output about as long as the product itself, for a
// 20,000 x 20,000 Hamming distance matrix three times the distance computation. So outputs of at
// least kPoolMin bytes come from a small cache of buffers that earlier results released: exact-size
// reuse (a layer or a batch loop asks for the same shape again and again), at most kPoolMaxBuffers
// buffers and kPoolMaxBytes held, the oldest freed first. Every result is still a fresh array that
// owns its buffer; a buffer returns to the cache only when its array is freed.
// embkern.release_buffers() frees the cache.
constexpr size_t kPoolMin = size_t(1) << 20;
constexpr size_t kPoolMaxBuffers = 4;
constexpr size_t kPoolMaxBytes = size_t(2) << 30;

struct Block {
    void* ptr;
    size_t bytes;
};

struct OutputPool {
    std::mutex mu;
    std::vector<Block> free;
    size_t held = 0;

    void* get(size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mu);
            for (size_t i = 0; i < free.size(); ++i)
                if (free[i].bytes == bytes) {
                    void* p = free[i].ptr;
                    free.erase(free.begin() + static_cast<std::ptrdiff_t>(i));
                    held -= bytes;
                    return p;
                }
        }
        return huge_alloc(bytes);
    }
    void put(void* p, size_t bytes) {
        std::lock_guard<std::mutex> lock(mu);
        if (bytes <= kPoolMaxBytes) {
            while (!free.empty() && (free.size() >= kPoolMaxBuffers || held + bytes > kPoolMaxBytes)) {
                std::free(free.front().ptr);  // the oldest goes first
                held -= free.front().bytes;
                free.erase(free.begin());
            }
            free.push_back({p, bytes});
            held += bytes;
        } else {
            std::free(p);
        }
    }
    void clear() {
        std::lock_guard<std::mutex> lock(mu);
        for (const Block& b : free) std::free(b.ptr);
        free.clear();
        held = 0;
    }
};

inline OutputPool& pool() {
    static OutputPool* p = new OutputPool();  // never destroyed: arrays may outlive the module
    return *p;
}

// A fresh (M, N) result array.
template <class T>
py::array_t<T> new_output(int64_t M, int64_t N) {
    const size_t bytes = static_cast<size_t>(M) * static_cast<size_t>(N) * sizeof(T);
    if (bytes < kPoolMin) return py::array_t<T>({M, N});
    Block* blk = new Block{pool().get(bytes), bytes};
    py::capsule owner(blk, [](void* b) {
        Block* blk = static_cast<Block*>(b);
        pool().put(blk->ptr, blk->bytes);
        delete blk;
    });
    return py::array_t<T>({M, N}, static_cast<T*>(blk->ptr), owner);
}

}  // namespace embkern::bindings::output_pool
