// CUDA launcher of the MUVERA FDE family: the orchestration of fde_blocks.hpp on the stream-ordered
// device executor.
#include "cuda/common/device.cuh"
#include "cuda/fde/fde_blocks.hpp"
#include "cuda/fde/fde_cuda.hpp"

namespace embkern::cuda {

void fde_encode(const float* x, int64_t rows, const int64_t* begin, const int64_t* end, int64_t batch,
                const FdeShape& shape, const FdeTables& tables, float* out, uint32_t* bad,
                std::uintptr_t stream, int device, const FdeOptions& options) {
    run_fde_encode_checks(rows, begin, end, batch, shape, tables);
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_fde_encode(ex, x, rows, begin, end, batch, shape, tables, out, bad, options);
}

}  // namespace embkern::cuda
