// The fde family's entries in the kernel table (filled per tier by register_fde).
#pragma once
#include <cstdint>

namespace embkern {

// Everything one point cloud's encoding needs besides its tokens: the sizes and the config's
// random tables (built once per config by the driver, read-only while kernels run).
struct FdeParams {
    int64_t d = 0;           // token dimension
    int64_t reps = 1;        // R
    int64_t k = 0;           // SimHash projections; B = 2^k partitions
    int64_t p = 0;           // block width: d (identity) or the AMS projection dimension
    bool document = false;   // mean per partition (else sum)
    bool fill = false;       // documents only: empty partitions take the Hamming-nearest token
    bool ams = false;        // AMS sketch inner projection
    const float* gauss = nullptr;      // d x gauss_ld, row i = coordinate i, column r * k + j
    int64_t gauss_ld = 0;              // R * k rounded up to a multiple of 16 (zero columns)
    const int32_t* ams_col = nullptr;  // R x d: output column of input coordinate i
    const float* ams_sign = nullptr;   // R x d: +1 / -1
    // The same hash grouped by output column (built by the driver): per repetition, the input
    // coordinates of column c are ams_order[ams_start[c] .. ams_start[c + 1]) in ascending order,
    // with their signs in ams_osign (same positions).
    const int32_t* ams_order = nullptr;  // R x d
    const float* ams_osign = nullptr;    // R x d
    const int32_t* ams_start = nullptr;  // R x (p + 1)
    int64_t final_dim = 0;             // 0: no final projection
    const int32_t* fp_idx = nullptr;   // inner_dim: target coordinate of each FDE coordinate
    const float* fp_sign = nullptr;    // inner_dim: +1 / -1
    int64_t inner_dim() const { return reps * (int64_t(1) << k) * p; }
    int64_t out_dim() const { return final_dim > 0 ? final_dim : inner_dim(); }
};

struct FdeKernels {
    // Encodes one cloud of n tokens (x: n x d) into out (P.out_dim() floats, overwritten).
    // work: fde_work_floats(P, n) floats of scratch (see fde.hpp).
    // Returns false (out unspecified) when a token holds NaN or inf.
    bool (*encode_f32)(const FdeParams& P, const float* x, int64_t n, float* out, float* work);
};

// Scratch floats encode_f32 needs for a cloud of n tokens.
inline int64_t fde_work_floats(const FdeParams& P, int64_t n) {
    const int64_t B = int64_t(1) << P.k;
    int64_t w = n * P.gauss_ld;       // sketch
    w += n * P.reps;                  // partition per (token, repetition), stored as int32
    w += B;                           // counts
    w += B;                           // first token per partition (int32)
    w += B;                           // occupied partitions list (int32)
    if (P.ams) w += B * P.d;          // per-partition sums of raw tokens
    if (P.final_dim > 0) w += P.inner_dim();
    return w + 16;
}

}  // namespace embkern
