// Launchers of the product-quantization CUDA kernels, as plain C++ for the g++-compiled bindings.
// Pointers are device pointers (or managed memory) on `device` (-1: the current device); `stream`
// follows to_stream() in common/check.cuh. Calls are asynchronous on that stream (scratch memory is
// stream-ordered) and never synchronise the device. Shapes are validated (std::invalid_argument);
// CUDA failures throw std::runtime_error naming the error. The emu:: functions run the very same
// kernel bodies on the host (see pq_blocks.hpp), on host pointers, with launch choices tests shrink.
//
// Every function has the contract of the CPU kernel of the same name (csrc/pq/pq.hpp); results are
// bit-identical to it (see pq_blocks.hpp for how).
#pragma once
#include <cstdint>

namespace embkern::cuda {

// Launch choices (0 / -1 = the production default; tests shrink them to exercise every path).
struct PqLaunch {
    int threads = 0;            // block size (power of two, 32..256; the kernels' own default when 0)
    int smem = -1;              // -1 auto; 0 keep centroids / tables in global memory; 1 stage them in smem
    int path = 0;               // top-k: 0 auto, 1 filter (small k), 2 sort (any k)
    int64_t partitions = 0;     // top-k filter: database partitions per query (0 auto)
    int items_per_thread = 0;   // top-k filter: items per thread per chunk
    int run = 0;                // top-k sort: keys per sorted run (power of two >= 2 * threads)
    int64_t batch_bytes = 0;    // top-k sort: scratch per query batch
    int queries_per_block = 0;  // adc_distances / distance_tables: queries sharing a block (1..4)
    int64_t train_part = 0;     // train: points per counting-sort partition
};

// Fewer than this many database codes per top-k call (ids travel in 32 bits of a sort key).
constexpr int64_t kPqMaxTopkItems = int64_t(0xFFFFFFFF);

// codes: n x ceil(m * nbits / 8), nearest centroid per sub-vector (faiss's arithmetic and ties).
void pq_encode(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
               uint8_t* codes, std::uintptr_t stream, int device, const PqLaunch& launch);
void pq_decode(const uint8_t* codes, int64_t n, const float* cent, int64_t dim, int64_t m, int nbits,
               float* out, std::uintptr_t stream, int device, const PqLaunch& launch);
// out: n x m x 2**nbits.
void pq_distance_tables(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m,
                        int nbits, bool ip, float* out, std::uintptr_t stream, int device,
                        const PqLaunch& launch);
// lut: nq x m x 2**nbits; out: nq x n.
void pq_adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                      int nbits, float* out, std::uintptr_t stream, int device, const PqLaunch& launch);
void pq_adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
                 int64_t k, bool largest, float* out_d, int64_t* out_i, std::uintptr_t stream,
                 int device, const PqLaunch& launch);
// packed: fastscan_bytes(n, m) = ceil(n / 32) * 32 * ceil(m / 2) bytes.
int64_t pq_fastscan_bytes(int64_t n, int64_t m);
void pq_pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed,
                      std::uintptr_t stream, int device, const PqLaunch& launch);
void pq_unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes,
                        std::uintptr_t stream, int device, const PqLaunch& launch);
// lut: nq x m x 16.
void pq_fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                      int64_t k, bool largest, float* out_d, int64_t* out_i, std::uintptr_t stream,
                      int device, const PqLaunch& launch);
// Re-scoring of fast-scan candidates (embkern.pq's rerank): for each query the r candidate ids
// cand[q] (from pq_fastscan_topk) get their exact ADC distance (lut: nq x m x 16, codes read from
// the packed layout); the k best by (distance, id) are returned (ascending, or descending with
// largest), with the exact distances. Ids outside [0, n) are ignored.
void pq_fastscan_rerank(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                        const int64_t* cand, int64_t r, int64_t k, bool largest, float* out_d,
                        int64_t* out_i, std::uintptr_t stream, int device, const PqLaunch& launch);
// Lloyd iterations; init (m x ksub x dsub) is copied to out, which receives the result.
void pq_train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
              const float* init, float* out, std::uintptr_t stream, int device,
              const PqLaunch& launch);

namespace emu {
// sm_count: the "GPU size" the orchestration plans for (it caps grids, so small values exercise
// the grid-stride loops).
void pq_encode(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
               uint8_t* codes, const PqLaunch& launch, int sm_count);
void pq_decode(const uint8_t* codes, int64_t n, const float* cent, int64_t dim, int64_t m, int nbits,
               float* out, const PqLaunch& launch, int sm_count);
void pq_distance_tables(const float* x, int64_t n, int64_t dim, const float* cent, int64_t m,
                        int nbits, bool ip, float* out, const PqLaunch& launch, int sm_count);
void pq_adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                      int nbits, float* out, const PqLaunch& launch, int sm_count);
void pq_adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
                 int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& launch,
                 int sm_count);
void pq_pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed,
                      const PqLaunch& launch, int sm_count);
void pq_unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes,
                        const PqLaunch& launch, int sm_count);
void pq_fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                      int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& launch,
                      int sm_count);
void pq_fastscan_rerank(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                        const int64_t* cand, int64_t r, int64_t k, bool largest, float* out_d,
                        int64_t* out_i, const PqLaunch& launch, int sm_count);
void pq_train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
              const float* init, float* out, const PqLaunch& launch, int sm_count);
}  // namespace emu

}  // namespace embkern::cuda
