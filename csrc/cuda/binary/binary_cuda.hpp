// Launchers of the binary-code CUDA kernels, as plain C++ for the g++-compiled bindings.
// Pointers are device pointers (or managed memory) on `device` (-1: the current device); `stream`
// follows to_stream() in common/check.cuh. Calls are asynchronous on that stream (scratch memory is
// stream-ordered, cudaMallocAsync/cudaFreeAsync) and never synchronise the device. Shapes are
// validated (std::invalid_argument); CUDA failures throw std::runtime_error naming the error.
// The emu:: functions run the very same kernel bodies on the host (see binary_blocks.hpp), on host
// pointers, with launch parameters that tests may shrink.
#pragma once
#include <cstdint>
#include <functional>

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

// Launch choices of hamming_range.
struct RangeOptions {
    int threads = 256;           // block size: a power of two in [32, 256]
    int items_per_thread = 2;    // fill pass: codes per thread per chunk (threads * this <= 512)
    int64_t partitions = 0;      // database partitions; 0 = auto
    int64_t batch_bytes = int64_t(256) << 20;  // cursor scratch per query batch
};

// Launch choices of asymmetric_scores.
struct AsymOptions {
    int threads = 256;           // a power of two in [32, 256]
    int codes_per_thread = 4;    // 1..4
    int64_t window = 128;        // table nibbles per shared-memory window: a multiple of 8, <= 128
    int64_t batch_bytes = int64_t(64) << 20;  // table scratch per query batch
};

// Launch choices of multibit_scores / multibit_topk.
struct MultibitOptions {
    int path = 0;                // top-k key buffer: 0 auto, 1 shared memory, 2 global memory
    int64_t partitions = 0;      // top-k database partitions per query; 0 = auto
    int threads = 256;           // a power of two in [32, 256]
    int items_per_thread = 4;    // top-k codes per thread per chunk
    int64_t batch_bytes = int64_t(256) << 20;  // bound on the global-memory key buffers
};

// hamming_range output allocator: called once, from the launching thread, with the number of hits
// (possibly 0) once it is known; sets the two output pointers (total int32 / int64 elements).
using RangeAlloc = std::function<void(int64_t total, int32_t** out_d, int64_t** out_i)>;

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

// lims: nq + 1 int64. Returns the number of hits. Waits for the stream once (to read the total).
int64_t hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                      int32_t radius, int64_t* lims, const RangeAlloc& alloc, std::uintptr_t stream,
                      int device, const RangeOptions& options);

// q: nq x d float32, codes: nb x ceil(d/8). out: nq x nb float32.
void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out, std::uintptr_t stream, int device,
                       const AsymOptions& options);

// q: nq x planes x nbytes, db: nb x planes x nbytes; weights: planes doubles in HOST memory.
void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out,
                     std::uintptr_t stream, int device, const MultibitOptions& options);
// out_s / out_i: nq x k, descending score, ties by smaller index. 1 <= k <= nb.
void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i, std::uintptr_t stream, int device, const MultibitOptions& options);

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
int64_t hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                      int32_t radius, int64_t* lims, const RangeAlloc& alloc,
                      const RangeOptions& options, int sm_count);
void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out, const AsymOptions& options, int sm_count);
void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out,
                     const MultibitOptions& options, int sm_count);
void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i, const MultibitOptions& options, int sm_count);
}  // namespace emu

}  // namespace embkern::cuda
