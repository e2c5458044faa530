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

int64_t hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                      int32_t radius, int64_t* lims, const RangeAlloc& alloc, std::uintptr_t stream,
                      int device, const RangeOptions& options) {
    run_hamming_range_checks(nq, nb, cs, radius, options);
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    const cudaStream_t s = to_stream(stream);
    auto read = [s](const int64_t* ptr) {
        int64_t v = 0;
        EMBKERN_CUDA_CHECK(cudaMemcpyAsync(&v, ptr, sizeof v, cudaMemcpyDeviceToHost, s));
        EMBKERN_CUDA_CHECK(cudaStreamSynchronize(s));
        return v;
    };
    return run_hamming_range(ex, q, nq, db, nb, cs, radius, lims, read, alloc, options);
}

void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out, std::uintptr_t stream, int device,
                       const AsymOptions& options) {
    run_asymmetric_checks(nq, d, nb, options);
    if (nq == 0 || nb == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_asymmetric_scores(ex, q, nq, d, codes, nb, little, out, options);
}

void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out,
                     std::uintptr_t stream, int device, const MultibitOptions& options) {
    run_multibit_checks(nq, nb, planes, nbytes, dim, options);
    if (nq == 0 || nb == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_multibit_scores(ex, q, nq, db, nb, planes, nbytes, dim, weights, out, options);
}

void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i, std::uintptr_t stream, int device, const MultibitOptions& options) {
    run_multibit_checks(nq, nb, planes, nbytes, dim, options);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_multibit_topk(ex, q, nq, db, nb, planes, nbytes, dim, weights, k, out_s, out_i, options);
}

}  // namespace embkern::cuda
