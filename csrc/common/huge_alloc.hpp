// Large buffers on transparent huge pages. A buffer read at random (a lookup table of a few MiB)
// or streamed through (a result of hundreds of MiB) on 4 KiB pages misses the TLB every few
// accesses; on 2 MiB pages it does not. Linux hands out huge pages only to aligned regions that ask
// for them (THP "madvise" mode is common), as numpy does for its own large arrays.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace embkern {

constexpr size_t kHugePage = size_t(2) << 20;

// At least `bytes` bytes, 64-byte aligned; from 4 MiB up, 2 MiB-aligned and advised onto huge
// pages. Freed with std::free.
inline void* huge_alloc(size_t bytes) {
    if (bytes < 2 * kHugePage) {
        void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!p) throw std::bad_alloc();
        return p;
    }
    const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, size);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, size, MADV_HUGEPAGE);  // advice only: on failure the pages are merely small
#endif
    return p;
}

// Buffers of 1 MiB and up that were released, kept for the next request of the same size. Memory
// fresh from the OS is zeroed page by page on first touch: for a 8,192 x 4,096 float32 low-rank
// output about as long as the product itself, for a 20,000 x 20,000 Hamming distance matrix three
// times the distance computation, and for the packed factors of 16 adapters about a tenth of the
// call. Exact-size reuse serves what repeats (a layer or a batch loop asks for the same shapes
// again and again); at most kPoolMaxBuffers buffers and kPoolMaxBytes are kept, the oldest freed
// first. embkern.release_buffers() frees them all.
constexpr size_t kPoolMin = size_t(1) << 20;
constexpr size_t kPoolMaxBuffers = 6;
constexpr size_t kPoolMaxBytes = size_t(2) << 30;

class BufferPool {
public:
    // At least `bytes` bytes (huge_alloc's alignment), uninitialised; give them back with put.
    void* get(size_t bytes) {
        if (bytes >= kPoolMin) {
            std::lock_guard<std::mutex> lock(mu_);
            for (size_t i = 0; i < free_.size(); ++i)
                if (free_[i].bytes == bytes) {
                    void* p = free_[i].ptr;
                    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
                    held_ -= bytes;
                    return p;
                }
        }
        return huge_alloc(bytes);
    }
    void put(void* p, size_t bytes) {
        if (!p) return;
        if (bytes < kPoolMin || bytes > kPoolMaxBytes) {
            std::free(p);
            return;
        }
        std::lock_guard<std::mutex> lock(mu_);
        while (!free_.empty() && (free_.size() >= kPoolMaxBuffers || held_ + bytes > kPoolMaxBytes)) {
            std::free(free_.front().ptr);  // the oldest goes first
            held_ -= free_.front().bytes;
            free_.erase(free_.begin());
        }
        free_.push_back({p, bytes});
        held_ += bytes;
    }
    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        for (const Block& b : free_) std::free(b.ptr);
        free_.clear();
        held_ = 0;
    }

private:
    struct Block {
        void* ptr;
        size_t bytes;
    };
    std::mutex mu_;
    std::vector<Block> free_;
    size_t held_ = 0;
};

// One pool per process, shared by every family (and by results handed to Python, which return
// their buffer when the array is freed).
inline BufferPool& buffer_pool() {
    static BufferPool* p = new BufferPool();  // never destroyed: arrays may outlive the module
    return *p;
}

// An array of T from the buffer pool (trivially copyable T, left uninitialised).
template <class T>
struct HugeArray {
    T* ptr = nullptr;
    size_t count = 0;
    HugeArray() = default;
    explicit HugeArray(size_t n) : ptr(static_cast<T*>(buffer_pool().get(bytes_of(n)))), count(n) {}
    HugeArray(const HugeArray&) = delete;
    HugeArray& operator=(const HugeArray&) = delete;
    HugeArray(HugeArray&& o) noexcept : ptr(o.ptr), count(o.count) { o.ptr = nullptr; o.count = 0; }
    HugeArray& operator=(HugeArray&& o) noexcept {
        std::swap(ptr, o.ptr);
        std::swap(count, o.count);
        return *this;
    }
    ~HugeArray() { buffer_pool().put(ptr, bytes_of(count)); }
    T* data() { return ptr; }
    const T* data() const { return ptr; }
    size_t size() const { return count; }
    T& operator[](size_t i) { return ptr[i]; }

private:
    static size_t bytes_of(size_t n) { return n ? n * sizeof(T) : 1; }
};

}  // namespace embkern
