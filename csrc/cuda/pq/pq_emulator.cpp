// Host emulation of the PQ CUDA kernels (see common/emulator.hpp): the orchestrations of pq.cu with
// the host executor, on host pointers, with launch choices tests may shrink.
#include "cuda/common/emulator.hpp"
#include "cuda/pq/pq_blocks.hpp"
#include "cuda/pq/pq_cuda.hpp"

namespace embkern::cuda::emu {

using namespace embkern::cuda::pq;

void pq_encode(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
               uint8_t* codes, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_encode(ex, x, n, dim, cent, m, nbits, codes, launch);
}

void pq_decode(const uint8_t* codes, int64_t n, const float* cent, int64_t dim, int64_t m, int nbits,
               float* out, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_decode(ex, codes, n, cent, dim, m, nbits, out, launch);
}

void pq_distance_tables(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m,
                        int nbits, bool ip, float* out, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_distance_tables(ex, x, n, dim, cent, m, nbits, ip, out, launch);
}

void pq_adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                      int nbits, float* out, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_adc_distances(ex, lut, nq, codes, n, m, nbits, out, launch);
}

void pq_adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
                 int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& launch,
                 int sm_count) {
    HostExec ex(sm_count);
    run_adc_topk(ex, lut, nq, codes, n, m, nbits, k, largest, out_d, out_i, launch);
}

void pq_pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed,
                      const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_pack_fastscan(ex, codes, n, m, packed, launch);
}

void pq_unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes,
                        const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_unpack_fastscan(ex, packed, n, m, codes, launch);
}

void pq_fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                      int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& launch,
                      int sm_count) {
    HostExec ex(sm_count);
    run_fastscan_topk(ex, lut, nq, packed, n, m, k, largest, out_d, out_i, launch);
}

void pq_fastscan_rerank(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                        const int64_t* cand, int64_t r, int64_t k, bool largest, float* out_d,
                        int64_t* out_i, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_fastscan_rerank(ex, lut, nq, packed, n, m, cand, r, k, largest, out_d, out_i, launch);
}

void pq_train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
              const float* init, float* out, const PqLaunch& launch, int sm_count) {
    HostExec ex(sm_count);
    run_train(ex, x, n, dim, m, nbits, iterations, init, out, launch);
}

}  // namespace embkern::cuda::emu
