// Host emulation of the MUVERA FDE CUDA kernels (see common/emulator.hpp): the launcher of fde.cu
// with the host executor, on host pointers, with launch parameters tests may shrink.
#include "cuda/common/emulator.hpp"
#include "cuda/fde/fde_blocks.hpp"
#include "cuda/fde/fde_cuda.hpp"

namespace embkern::cuda::emu {

void fde_encode(const float* x, int64_t rows, const int64_t* begin, const int64_t* end, int64_t batch,
                const FdeShape& shape, const FdeTables& tables, float* out, uint32_t* bad,
                const FdeOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_fde_encode(ex, x, rows, begin, end, batch, shape, tables, out, bad, options);
}

}  // namespace embkern::cuda::emu
