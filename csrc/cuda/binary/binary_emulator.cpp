// Host emulation of the binary-code CUDA kernels (see common/emulator.hpp): the launchers of
// binary.cu with the host executor, on host pointers, with launch parameters tests may shrink.
#include "cuda/binary/binary_blocks.hpp"
#include "cuda/binary/binary_cuda.hpp"
#include "cuda/common/emulator.hpp"

namespace embkern::cuda::emu {

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, int threads, int sm_count) {
    HostExec ex(sm_count);
    run_pack_signs(ex, x, n, d, threshold, little, out, threads);
}

void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, int threads, int sm_count) {
    HostExec ex(sm_count);
    run_pack_signs(ex, x, n, d, threshold, little, out, threads);
}

void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, int sm_count) {
    HostExec ex(sm_count);
    run_hamming_distance(ex, a, na, b, nb, cs, out);
}

void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, const TopkOptions& options,
                  int sm_count) {
    HostExec ex(sm_count);
    run_hamming_topk(ex, q, nq, db, nb, cs, k, out_d, out_i, options);
}

int64_t hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                      int32_t radius, int64_t* lims, const RangeAlloc& alloc,
                      const RangeOptions& options, int sm_count) {
    HostExec ex(sm_count);
    auto read = [](const int64_t* ptr) { return *ptr; };
    return run_hamming_range(ex, q, nq, db, nb, cs, radius, lims, read, alloc, options);
}

void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out, const AsymOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_asymmetric_scores(ex, q, nq, d, codes, nb, little, out, options);
}

void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out,
                     const MultibitOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_multibit_scores(ex, q, nq, db, nb, planes, nbytes, dim, weights, out, options);
}

void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i, const MultibitOptions& options, int sm_count) {
    HostExec ex(sm_count);
    run_multibit_topk(ex, q, nq, db, nb, planes, nbytes, dim, weights, k, out_s, out_i, options);
}

}  // namespace embkern::cuda::emu
