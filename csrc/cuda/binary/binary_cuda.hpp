// Launchers of the binary-code CUDA kernels, as plain C++ for the g++-compiled bindings.
// Pointers are device pointers (or managed memory) on `device` (-1: the current device); `stream`
// follows to_stream() in common/check.cuh. Calls are asynchronous on that stream (scratch memory is
// stream-ordered, cudaMallocAsync/cudaFreeAsync) and never synchronise the device. Shapes are
// validated (std::invalid_argument); CUDA failures throw std::runtime_error naming the error.
// The emu:: functions run the very same kernel bodies on the host (see binary_blocks.hpp), on host
// pointers, with launch parameters that tests may shrink.
#pragma once
#include <cstdint>

namespace embkern::cuda {

// Launch choices of hamming_topk (the defaults are the production ones; tests shrink them).
struct TopkOptions {
    int path = 0;             // 0 auto, 1 filter, 2 histogram select
    int64_t partitions = 0;   // database partitions per query; 0 = auto
    int threads = 256;        // block size: a power of two in [32, 256]
    int items_per_thread = 4; // filter path: codes per thread per chunk
    int hist_bins = 2048;     // filter path: histogram size (>= 2)
    int64_t batch_bytes = int64_t(256) << 20;  // histogram-select scratch per query batch
};

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device);
void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device);

// out: na x nb int32.
void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, std::uintptr_t stream, int device);

// out_d / out_i: nq x k, ascending (distance, index). 1 <= k <= nb.
void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, std::uintptr_t stream, int device,
                  const TopkOptions& options);

namespace emu {
// sm_count: the "GPU size" the orchestration plans for (it caps grids, so small values exercise the
// grid-stride loops).
void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, int threads, int sm_count);
void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, int threads, int sm_count);
void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, int sm_count);
void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, const TopkOptions& options,
                  int sm_count);
}  // namespace emu

}  // namespace embkern::cuda
