// Host emulation of the low-rank CUDA kernels (see common/emulator.hpp): the launchers of
// lowrank.cu with the host executor, on host pointers, with launch parameters tests may shrink.
#include "cuda/common/emulator.hpp"
#include "cuda/lowrank/lowrank_blocks.hpp"
#include "cuda/lowrank/lowrank_cuda.hpp"

namespace embkern::cuda::lowrank::emu {

using embkern::cuda::emu::HostExec;

template <class T>
void lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                 const T* b, double scale, const T* bias, T* y, const LowrankOptions& options,
                 int sm_count) {
    HostExec ex(sm_count);
    run_lora(ex, x, M, K, w, N, a, r, b, scale, bias, y, options);
}

template <class T>
void lowrank_linear(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                    const T* s, const T* bias, T* y, const LowrankOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_lowrank(ex, x, M, K, u, N, v, r, s, bias, y, options);
}

template <class T>
void sparse_lowrank_linear(const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a,
                           int64_t r, const int64_t* indptr, const int32_t* indices, const T* values,
                           int64_t nnz, const T* bias, T* y, const LowrankOptions& options,
                           int sm_count) {
    HostExec ex(sm_count);
    run_sparse(ex, x, M, K, b, N, a, r, indptr, indices, values, nnz, bias, y, options);
}

template <class T>
void multi_lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a,
                       int64_t nad, int64_t r, const T* b, const int64_t* ids64, const int32_t* ids32,
                       const T* scales, double scale_value, const T* bias, T* y,
                       const LowrankOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_multi(ex, x, M, K, w, N, a, nad, r, b, ids64, ids32, scales, scale_value, bias, y, options);
}

#define EMBKERN_LOWRANK_EMU_INSTANTIATE(T)                                                          \
    template void lora_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*, int64_t,  \
                                 const T*, double, const T*, T*, const LowrankOptions&, int);       \
    template void lowrank_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*,        \
                                    int64_t, const T*, const T*, T*, const LowrankOptions&, int);   \
    template void sparse_lowrank_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*, \
                                           int64_t, const int64_t*, const int32_t*, const T*,       \
                                           int64_t, const T*, T*, const LowrankOptions&, int);      \
    template void multi_lora_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*,     \
                                       int64_t, int64_t, const T*, const int64_t*, const int32_t*,  \
                                       const T*, double, const T*, T*, const LowrankOptions&, int);
EMBKERN_LOWRANK_EMU_INSTANTIATE(float)
EMBKERN_LOWRANK_EMU_INSTANTIATE(double)
#undef EMBKERN_LOWRANK_EMU_INSTANTIATE

}  // namespace embkern::cuda::lowrank::emu
