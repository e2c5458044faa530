// CUDA launchers of the binary-code family: the orchestrations of binary_blocks.hpp on the
// stream-ordered device executor.
#include "cuda/binary/binary_blocks.hpp"
#include "cuda/binary/binary_cuda.hpp"
#include "cuda/common/device.cuh"

namespace embkern::cuda {

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device) {
    run_pack_signs_checks(n, d);
    if (n * d == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_pack_signs(ex, x, n, d, threshold, little, out);
}

void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device) {
    run_pack_signs_checks(n, d);
    if (n * d == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_pack_signs(ex, x, n, d, threshold, little, out);
}

void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, std::uintptr_t stream, int device) {
    run_hamming_distance_checks(na, nb, cs);
    if (na == 0 || nb == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_hamming_distance(ex, a, na, b, nb, cs, out);
}

void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, std::uintptr_t stream, int device,
                  const TopkOptions& options) {
    run_hamming_topk_checks(nq, nb, cs, k, options);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_hamming_topk(ex, q, nq, db, nb, cs, k, out_d, out_i, options);
}

}  // namespace embkern::cuda
