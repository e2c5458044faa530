// Launchers of the MUVERA FDE CUDA kernels, as plain C++ for the g++-compiled bindings.
// Array pointers are device pointers (or managed memory) on `device` (-1: the current device), except
// the per-cloud row ranges `begin` / `end`, which are host arrays (the launcher validates them, plans
// the launch from the cloud sizes and copies them to stream-ordered scratch). `stream` follows
// to_stream() in common/check.cuh. Calls are asynchronous on that stream and never synchronise the
// device. Shapes are validated (std::invalid_argument); CUDA failures throw std::runtime_error.
// The emu:: function runs the very same kernel bodies on the host (see fde_blocks.hpp), on host
// pointers, with launch parameters that tests may shrink.
#pragma once
#include <cstdint>

namespace embkern::cuda {

// The configuration of one encoding (see embkern.fde.FDEConfig).
struct FdeShape {
    int64_t d = 0;          // token dimension
    int64_t reps = 1;       // R
    int64_t k = 0;          // SimHash projections: B = 2^k partitions
    int64_t p = 0;          // block width: d (identity) or the AMS projection dimension
    int64_t final_dim = 0;  // 0: no final projection
    bool document = false;  // means per partition (else sums)
    bool fill = false;      // documents: empty partitions take the Hamming-nearest token
    bool ams = false;       // AMS sketch inner projection
};

// The config's random tables, on the device (built once per config on the host).
struct FdeTables {
    const float* gauss = nullptr;      // d x (R * k): column r * k + j = hyperplane j of repetition r
    // AMS hash of each repetition grouped by output column: the input coordinates of column c are
    // ams_order[r * d + ams_start[r * (p + 1) + c] ...] in ascending order, signs in ams_osign.
    const int32_t* ams_order = nullptr;  // R x d
    const float* ams_osign = nullptr;    // R x d
    const int32_t* ams_start = nullptr;  // R x (p + 1)
    // Final count sketch grouped by target: the FDE coordinates summed into output j are
    // fp_order[fp_start[j] .. fp_start[j + 1]) in ascending order, signs in fp_osign.
    const int32_t* fp_order = nullptr;   // inner_dim
    const float* fp_osign = nullptr;     // inner_dim
    const int32_t* fp_start = nullptr;   // final_dim + 1
};

// Launch choices (the defaults are the production ones; tests shrink them).
struct FdeOptions {
    int threads = 256;                        // encode block size, 32..256
    int64_t group_rows = int64_t(1) << 20;    // token rows per group (bounds the partition scratch)
    int stage = -1;                           // tokens in shared memory: -1 auto, 0 never, 1 always
    int keys = -1;                            // sort keys: -1 auto, 0 shared memory, 1 global scratch
    int64_t tile = 0;                         // (repetition, partition) blocks per tile; 0 = auto
    int64_t vbuf_floats = 4096;               // AMS: shared floats for a tile's raw sums (auto tile)
    int64_t keys_bytes = 48 * 1024;           // auto: sort keys in shared memory up to this size
    int64_t stage_bytes = 64 * 1024;          // auto: tokens staged up to this size
    int64_t scratch_bytes = int64_t(256) << 20;  // global scratch per block set (keys, inner FDE)
    int64_t max_grid = 0;                     // cap on encode blocks; 0 = from the SM count
};

// out: batch x out_dim float32 (out_dim = final_dim, or R * 2^k * p), every value written.
// bad: one uint32 on the device; 0 when every cloud is finite, else 0xFFFFFFFF - (the smallest
// cloud index holding NaN or inf); such clouds' rows are zeros.
void fde_encode(const float* x, int64_t rows, const int64_t* begin, const int64_t* end, int64_t batch,
                const FdeShape& shape, const FdeTables& tables, float* out, uint32_t* bad,
                std::uintptr_t stream, int device, const FdeOptions& options);

namespace emu {
// sm_count: the "GPU size" the orchestration plans for (it caps grids, so small values exercise the
// grid-stride loops).
void fde_encode(const float* x, int64_t rows, const int64_t* begin, const int64_t* end, int64_t batch,
                const FdeShape& shape, const FdeTables& tables, float* out, uint32_t* bad,
                const FdeOptions& options, int sm_count);
}  // namespace emu

}  // namespace embkern::cuda
