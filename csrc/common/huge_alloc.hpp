// Large buffers on transparent huge pages. A buffer read at random (a lookup table of a few MiB)
// or streamed through (a result of hundreds of MiB) on 4 KiB pages misses the TLB every few
// accesses; on 2 MiB pages it does not. Linux hands out huge pages only to aligned regions that ask
// for them (THP "madvise" mode is common), as numpy does for its own large arrays.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>

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

// An array of T on huge_alloc's memory (trivially copyable T, left uninitialised).
template <class T>
struct HugeArray {
    T* ptr = nullptr;
    size_t count = 0;
    HugeArray() = default;
    explicit HugeArray(size_t n) : ptr(static_cast<T*>(huge_alloc(n * sizeof(T) + !n))), count(n) {}
    HugeArray(const HugeArray&) = delete;
    HugeArray& operator=(const HugeArray&) = delete;
    HugeArray(HugeArray&& o) noexcept : ptr(o.ptr), count(o.count) { o.ptr = nullptr; o.count = 0; }
    HugeArray& operator=(HugeArray&& o) noexcept {
        std::swap(ptr, o.ptr);
        std::swap(count, o.count);
        return *this;
    }
    ~HugeArray() { std::free(ptr); }
    T* data() { return ptr; }
    const T* data() const { return ptr; }
    size_t size() const { return count; }
    T& operator[](size_t i) { return ptr[i]; }
};

}  // namespace embkern
