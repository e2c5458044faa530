// CUDA launchers of the PQ family: the orchestrations of pq_blocks.hpp on the stream-ordered
// device executor. Arguments are checked before any CUDA call.
#include "cuda/common/device.cuh"
#include "cuda/pq/pq_blocks.hpp"
#include "cuda/pq/pq_cuda.hpp"

namespace embkern::cuda {

using namespace embkern::cuda::pq;

void pq_encode(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
               uint8_t* codes, std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_encode_checks(n, dim, m, nbits);
    if (n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_encode(ex, x, n, dim, cent, m, nbits, codes, launch);
}

void pq_decode(const uint8_t* codes, int64_t n, const float* cent, int64_t dim, int64_t m, int nbits,
               float* out, std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_decode_checks(n, dim, m, nbits);
    if (n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_decode(ex, codes, n, cent, dim, m, nbits, out, launch);
}

void pq_distance_tables(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m,
                        int nbits, bool ip, float* out, std::uintptr_t stream, int device,
                        const PqLaunch& launch) {
    run_tables_checks(n, dim, m, nbits);
    if (n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_distance_tables(ex, x, n, dim, cent, m, nbits, ip, out, launch);
}

void pq_adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                      int nbits, float* out, std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_adc_checks(nq, n, m, nbits);
    if (nq == 0 || n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_adc_distances(ex, lut, nq, codes, n, m, nbits, out, launch);
}

void pq_adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
                 int64_t k, bool largest, float* out_d, int64_t* out_i, std::uintptr_t stream,
                 int device, const PqLaunch& launch) {
    run_adc_topk_checks(nq, n, m, nbits, k);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_adc_topk(ex, lut, nq, codes, n, m, nbits, k, largest, out_d, out_i, launch);
}

int64_t pq_fastscan_bytes(int64_t n, int64_t m) { return fastscan_bytes(n, m); }

void pq_pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed,
                      std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_fs_pack_checks(n, m);
    if (n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_pack_fastscan(ex, codes, n, m, packed, launch);
}

void pq_unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes,
                        std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_fs_pack_checks(n, m);
    if (n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_unpack_fastscan(ex, packed, n, m, codes, launch);
}

void pq_fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                      int64_t k, bool largest, float* out_d, int64_t* out_i, std::uintptr_t stream,
                      int device, const PqLaunch& launch) {
    run_fs_topk_checks(nq, n, m, k);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_fastscan_topk(ex, lut, nq, packed, n, m, k, largest, out_d, out_i, launch);
}

void pq_fastscan_rerank(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                        const int64_t* cand, int64_t r, int64_t k, bool largest, float* out_d,
                        int64_t* out_i, std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_fs_rerank_checks(nq, n, m, r, k);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_fastscan_rerank(ex, lut, nq, packed, n, m, cand, r, k, largest, out_d, out_i, launch);
}

void pq_train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
              const float* init, float* out, std::uintptr_t stream, int device, const PqLaunch& launch) {
    run_train_checks(n, dim, m, nbits, iterations);
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_train(ex, x, n, dim, m, nbits, iterations, init, out, launch);
}

}  // namespace embkern::cuda
