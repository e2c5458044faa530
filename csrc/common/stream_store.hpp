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

static inline void stream_copy(void* dst, const void* src, int64_t nbytes) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
#if defined(__AVX__)
    int64_t j = 0;
    const int64_t head = std::min<int64_t>(nbytes, (32 - reinterpret_cast<uintptr_t>(d) % 32) % 32);
    std::memcpy(d, s, static_cast<size_t>(head));
    for (j = head; j + 32 <= nbytes; j += 32)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(d + j), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + j)));
    std::memcpy(d + j, s + j, static_cast<size_t>(nbytes - j));
#elif defined(__SSE2__)
    int64_t j = 0;
    const int64_t head = std::min<int64_t>(nbytes, (16 - reinterpret_cast<uintptr_t>(d) % 16) % 16);
    std::memcpy(d, s, static_cast<size_t>(head));
    for (j = head; j + 16 <= nbytes; j += 16)
        _mm_stream_si128(reinterpret_cast<__m128i*>(d + j), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + j)));
    std::memcpy(d + j, s + j, static_cast<size_t>(nbytes - j));
#else
    std::memcpy(d, s, static_cast<size_t>(nbytes));
#endif
}

static inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

}  // namespace embkern
