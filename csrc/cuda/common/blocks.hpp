// Portable building blocks of embkern's CUDA kernels. Every kernel is written once as a block-level
// body and compiled twice:
//   * by nvcc: the body runs inside ek_kernel<K> (common/device.cuh), Ctx = DeviceCtx;
//   * by g++: the body runs in the host emulator (common/emulator.hpp), one std::thread per CUDA
//     thread and a real barrier for __syncthreads, so the algorithm, the index math and the launch
//     orchestration are tested on machines without a GPU.
// A kernel is a tag type:
//     struct MyKernel {
//         static constexpr int kMaxThreads = 256;            // __launch_bounds__
//         static constexpr int kMinBlocks = 2;               // optional: blocks per SM
//         template <class Ctx, class P>
//         static EK_FN void body(Ctx& ctx, unsigned char* smem, const P& p);
//     };
// (EK_KERNEL(Name, Params, statement) declares the common case: at most 256 threads, one statement
// with ctx, smem and p in scope) launched by an orchestration template `run_x(Exec& ex, ...)` with
// `ex.template launch<MyKernel>(grid, threads, smem_bytes, params)`. Exec (DeviceExec or HostExec)
// also provides sm_count(), alloc(bytes) / release(ptr) (stream-ordered scratch), zero(ptr, bytes),
// copy(dst, src, bytes) and wait() (the queued work has finished: before reading a result back).
// Bodies use only what both sides provide: ctx.tid()/nthreads()/block()/nblocks()/sync(), the atomic_*
// and popc32 helpers below, and plain loads and stores (no warp intrinsics).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define EK_FN __device__ __forceinline__
#define EK_UNROLL _Pragma("unroll")
#else
#define EK_FN inline
#define EK_UNROLL
#endif

#define EK_KERNEL(Name, Params, statement)                                        \
    struct Name {                                                                \
        static constexpr int kMaxThreads = 256;                                  \
        template <class Ctx>                                                     \
        static EK_FN void body(Ctx& ctx, unsigned char* smem, const Params& p) { \
            (void)smem;                                                          \
            statement                                                            \
        }                                                                        \
    };

namespace embkern::cuda {

EK_FN int popc32(uint32_t x) {
#if defined(__CUDACC__)
    return __popc(x);
#else
    return __builtin_popcount(x);
#endif
}

EK_FN int popc64(uint64_t x) {
#if defined(__CUDACC__)
    return __popcll(x);
#else
    return __builtin_popcountll(x);
#endif
}

EK_FN int atomic_add_i32(int* p, int v) {
#if defined(__CUDACC__)
    return atomicAdd(p, v);
#else
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

EK_FN void atomic_add_u32(unsigned* p, unsigned v) {
#if defined(__CUDACC__)
    atomicAdd(p, v);
#else
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

// Returns the previous value.
EK_FN unsigned long long atomic_add_u64(unsigned long long* p, unsigned long long v) {
#if defined(__CUDACC__)
    return atomicAdd(p, v);
#else
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

EK_FN void atomic_max_u32(uint32_t* p, uint32_t v) {
#if defined(__CUDACC__)
    atomicMax(reinterpret_cast<unsigned*>(p), unsigned(v));
#else
    uint32_t old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
#endif
}

EK_FN void atomic_min_u64(uint64_t* p, uint64_t v) {
#if defined(__CUDACC__)
    atomicMin(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
#else
    uint64_t old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
#endif
}

// Floating-point atomic add. The summation order of atomics is not fixed, so kernels whose results
// must be bit-identical across runs avoid them on results (they may use them for counters).
template <class T>
EK_FN void atomic_add_float(T* p, T v) {
#if defined(__CUDACC__)
    atomicAdd(p, v);
#else
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    T want;
    do {
        want = old + v;
    } while (!__atomic_compare_exchange(p, &old, &want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
#endif
}

EK_FN int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Separately rounded multiply and add. nvcc contracts a * b + c into one FMA, whose rounding differs
// from the CPU kernels' (compiled with -ffp-contract=off); kernels that promise bit-identical results
// across backends spell their arithmetic with these.
EK_FN float mul_rn(float a, float b) {
#if defined(__CUDACC__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
EK_FN float add_rn(float a, float b) {
#if defined(__CUDACC__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
EK_FN double mul_rn(double a, double b) {
#if defined(__CUDACC__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
EK_FN double add_rn(double a, double b) {
#if defined(__CUDACC__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
// IEEE division and square root (nvcc's defaults are IEEE too, but -use_fast_math would change them).
EK_FN float div_rn(float a, float b) {
#if defined(__CUDACC__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
EK_FN double div_rn(double a, double b) {
#if defined(__CUDACC__)
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}
EK_FN float sqrt_rn(float a) {
#if defined(__CUDACC__)
    return __fsqrt_rn(a);
#else
    return std::sqrt(a);
#endif
}

// The bits of a float and back.
EK_FN uint32_t float_bits(float f) {
#if defined(__CUDACC__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
#endif
}
EK_FN float bits_float(uint32_t u) {
#if defined(__CUDACC__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// True unless v is NaN or infinite (a bit test: immune to fast-math folding).
EK_FN bool finite_bits(float v) { return (float_bits(v) & 0x7f800000u) != 0x7f800000u; }

// ---- host-side helpers of the orchestration --------------------------------------------------

constexpr size_t kSmemLimit = 48 * 1024;  // dynamic shared memory per block without opt-in

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int64_t pow2_at_least64(int64_t v) {
    int64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

inline void require_arg(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

inline bool aligned_to(const void* p, std::uintptr_t n) {
    return reinterpret_cast<std::uintptr_t>(p) % n == 0;
}

// Grid size for a grid-stride loop over `work` items with `per_block` items per block pass.
inline int64_t grid_for(int64_t work, int64_t per_block, int sm_count, int64_t blocks_per_sm = 32) {
    return std::max<int64_t>(1, std::min(ceil_div(work, per_block), int64_t(std::max(1, sm_count)) * blocks_per_sm));
}

// Scratch that is handed back to the stream when the launcher returns or throws.
template <class Exec>
struct Scratch {
    Exec& ex;
    void* ptr = nullptr;
    Scratch(Exec& e, size_t bytes) : ex(e), ptr(bytes ? e.alloc(bytes) : nullptr) {}
    ~Scratch() {
        if (ptr) ex.release(ptr);
    }
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

}  // namespace embkern::cuda
