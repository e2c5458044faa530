// Launchers of the low-rank CUDA kernels, as plain C++ for the g++-compiled bindings.
// Pointers are device pointers (or managed memory) on `device` (-1: the current device); `stream`
// follows to_stream() in common/check.cuh. Calls are asynchronous on that stream (scratch memory is
// stream-ordered) and never synchronise. Shapes are validated (std::invalid_argument); CUDA failures
// throw std::runtime_error naming the error. T is float or double (explicit instantiations only).
// The emu:: functions run the very same kernel bodies on the host (see lowrank_blocks.hpp), on host
// pointers, with launch parameters that tests may shrink.
//
// Semantics are those of the CPU backend (csrc/lowrank/lowrank.hpp): x (M, K), y (M, N), weights
// (out, in) row-major, every optional pointer may be null.
#pragma once
#include <cstdint>

namespace embkern::cuda::lowrank {

// Launch choices (the defaults are the production ones; tests force the others).
struct LowrankOptions {
    int shrink_tile = 0;    // t = x a^T GEMM: 0 auto, 1 wide tile, 2 narrow tile (rank <= 32 per tile)
    int main_tile = 0;      // output GEMM: 0 auto, 1 wide tile, 2 small-M tile (32 rows)
    int shrink_splits = 0;  // split-K of the shrink GEMM: 0 auto, else that many parts
    int main_splits = 0;    // split-K of the output GEMM: 0 auto (always 1 with a sparse part)
};

// y = x w^T + scale * (x a^T) b^T (+ bias); w (N, K), a (r, K), b (N, r).
template <class T>
void lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                 const T* b, double scale, const T* bias, T* y, std::uintptr_t stream, int device,
                 const LowrankOptions& options);

// y = ((x v^T) * s) u^T (+ bias); u (N, r), v (r, K), s (r,) or null.
template <class T>
void lowrank_linear(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                    const T* s, const T* bias, T* y, std::uintptr_t stream, int device,
                    const LowrankOptions& options);

// y = x (b a + S)^T (+ bias); b (N, r), a (r, K), S (N, K) as CSR: indptr (N + 1) int64, indices
// (nnz) int32 sorted and unique per row in [0, K), values (nnz). Contents are not read on the host;
// the kernel never reads outside [0, nnz) of indices/values or outside x whatever they hold.
template <class T>
void sparse_lowrank_linear(const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a,
                           int64_t r, const int64_t* indptr, const int32_t* indices, const T* values,
                           int64_t nnz, const T* bias, T* y, std::uintptr_t stream, int device,
                           const LowrankOptions& options);

// y[i] = (x[i] w^T if w) + scale_q * (x[i] a[q]^T) b[q]^T for q = ids[i] in [0, nad) (+ bias), with
// scale_q = scales[q] (scales non-null) or scale_value; rows whose id is outside [0, nad) (-1 by
// convention) get no delta. a (nad, r, K), b (nad, N, r); ids int64 (ids64) or int32 (ids32).
template <class T>
void multi_lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a,
                       int64_t nad, int64_t r, const T* b, const int64_t* ids64, const int32_t* ids32,
                       const T* scales, double scale_value, const T* bias, T* y, std::uintptr_t stream,
                       int device, const LowrankOptions& options);

namespace emu {
// sm_count: the "GPU size" the orchestration plans for (it caps grids and picks split-K, so small
// values exercise the grid-stride loops).
template <class T>
void lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                 const T* b, double scale, const T* bias, T* y, const LowrankOptions& options,
                 int sm_count);
template <class T>
void lowrank_linear(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                    const T* s, const T* bias, T* y, const LowrankOptions& options, int sm_count);
template <class T>
void sparse_lowrank_linear(const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a,
                           int64_t r, const int64_t* indptr, const int32_t* indices, const T* values,
                           int64_t nnz, const T* bias, T* y, const LowrankOptions& options,
                           int sm_count);
template <class T>
void multi_lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a,
                       int64_t nad, int64_t r, const T* b, const int64_t* ids64, const int32_t* ids32,
                       const T* scales, double scale_value, const T* bias, T* y,
                       const LowrankOptions& options, int sm_count);
}  // namespace emu

}  // namespace embkern::cuda::lowrank
