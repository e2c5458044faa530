// Copies to memory that will not be read soon. A large result written once is far bigger than the
// caches: non-temporal stores skip the read-for-ownership of each line (half the memory traffic).
// A thread issues stream_fence() after its last streamed copy (before the result is handed on).
// The functions are static: ISA-tier kernels include this header too, and each translation unit
// must keep its own copy, compiled with its own flags (an inline function would be merged into one).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace embkern {

// One non-temporal store of the widest vector this translation unit may use.
#if defined(__AVX__)
constexpr int64_t kStreamBytes = 32;
static inline void stream_piece(unsigned char* d, const unsigned char* s) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
}
#elif defined(__SSE2__)
constexpr int64_t kStreamBytes = 16;
static inline void stream_piece(unsigned char* d, const unsigned char* s) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}
#else
constexpr int64_t kStreamBytes = 16;
static inline void stream_piece(unsigned char* d, const unsigned char* s) {
    std::memcpy(d, s, 16);  // no streaming stores on this target: a plain copy
}
#endif

static inline void stream_copy(void* dst, const void* src, int64_t nbytes) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    const int64_t head = std::min<int64_t>(
        nbytes, (kStreamBytes - static_cast<int64_t>(reinterpret_cast<uintptr_t>(d) % kStreamBytes)) % kStreamBytes);
    std::memcpy(d, s, static_cast<size_t>(head));
    int64_t j = head;
    for (; j + kStreamBytes <= nbytes; j += kStreamBytes) stream_piece(d + j, s + j);
    std::memcpy(d + j, s + j, static_cast<size_t>(nbytes - j));
}

static inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

}  // namespace embkern
