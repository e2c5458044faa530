// Launchers of the projection CUDA kernels, as plain C++ for the g++-compiled bindings.
// Pointers are device pointers (or managed memory) on `device` (-1: the current device), except
// where a comment says "host"; `stream` follows to_stream() in common/check.cuh. Work is queued on
// that stream (scratch is stream-ordered) and the device is never synchronised; the one exception
// is `validate`: the CSR operands are then checked by a kernel first and the stream is waited for
// (a few bytes read back) so a bad index becomes a ValueError instead of a memory fault.
// Shapes are validated (std::invalid_argument); CUDA failures throw std::runtime_error.
// The emu:: functions run the same kernel bodies and orchestrations on the host (see
// projection_blocks.hpp), on host pointers, with launch choices that tests may shrink.
//
// CSR operands: indptr int64 [rows + 1], indices int32 [nnz], values [nnz] (nnz = the length of
// the indices array), as in csrc/projection/projection_kernels.hpp.
#pragma once
#include <cstdint>

namespace embkern::cuda {

// The sparse random matrix generator of csrc/projection/srp_rng.hpp (SrpGen); cdf is host memory
// (the launchers copy it to the device), ncdf entries, used in mode 1.
struct SrpSpec {
    uint64_t seed = 0;
    int64_t k = 0;
    int mode = 0;
    uint64_t thr53 = 0;
    const double* cdf = nullptr;
    int64_t ncdf = 0;
};

// Launch choices (0 = the production default; tests shrink them to exercise every loop).
struct ProjOptions {
    int64_t chunk = 0;          // csr_dense: features of X staged in shared memory per step
    int max_warps = 0;          // csr_dense: warps (8 components each) per block, at most 8
    int threads = 0;            // block size of the other kernels (a power of two in [32, 256])
    int64_t scratch_bytes = 0;  // srp_sparse: budget of the per-thread column buffers
    int stage = 0;              // fastrp: 0 auto, 1 shared memory, 2 global (the state buffers)
};

// out[n, k] = x[n, d] @ C^T, C (k x d) in CSR; each output summed over C's row in stored order.
void csr_dense_f32(const float* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const float* values, int64_t nnz, int64_t k, float* out, bool validate,
                   std::uintptr_t stream, int device, const ProjOptions& o);
void csr_dense_f64(const double* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const double* values, int64_t nnz, int64_t k, double* out, bool validate,
                   std::uintptr_t stream, int device, const ProjOptions& o);

// out[n, k]: sparse rows X (xptr, xind, xval; xnnz entries) times Ct (d x k, CSR; cnnz entries).
void csr_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const float* cval, int64_t d, int64_t cnnz,
                    int64_t k, float* out, bool validate, std::uintptr_t stream, int device,
                    const ProjOptions& o);
void csr_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const double* cval, int64_t d, int64_t cnnz,
                    int64_t k, double* out, bool validate, std::uintptr_t stream, int device,
                    const ProjOptions& o);

// out[n, g.k]: sparse rows X times R^T, R's columns generated on the fly (values +-scale).
void srp_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, float scale, float* out, bool validate, std::uintptr_t stream,
                    int device, const ProjOptions& o);
void srp_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, double scale, double* out, bool validate, std::uintptr_t stream,
                    int device, const ProjOptions& o);

// R^T as CSR over d features, in two calls: srp_column_counts writes indptr[d + 1] (the prefix
// sums of the column counts; the caller reads indptr[d] to size the rest), srp_column_fill the
// rows (ascending) and sign flags of every column.
void srp_column_counts(const SrpSpec& g, int64_t d, int64_t* indptr, std::uintptr_t stream, int device,
                       const ProjOptions& o);
void srp_column_fill(const SrpSpec& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg,
                     std::uintptr_t stream, int device, const ProjOptions& o);

// FastRP (csrc/projection/projection.hpp): out[n, dim] float32. w: nnz weights or null;
// node_scale: n factors or null; iteration_weights: host memory, iters entries.
void fastrp(const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t nnz,
            int64_t dim, const double* node_scale, uint64_t seed, const float* iteration_weights,
            int64_t iters, float self_influence, float* out, bool validate, std::uintptr_t stream,
            int device, const ProjOptions& o);

namespace emu {
// The same launchers on the host emulator. sm_count: the "GPU size" the orchestration plans for.
void csr_dense_f32(const float* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const float* values, int64_t nnz, int64_t k, float* out, bool validate,
                   const ProjOptions& o, int sm_count);
void csr_dense_f64(const double* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const double* values, int64_t nnz, int64_t k, double* out, bool validate,
                   const ProjOptions& o, int sm_count);
void csr_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const float* cval, int64_t d, int64_t cnnz,
                    int64_t k, float* out, bool validate, const ProjOptions& o, int sm_count);
void csr_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const double* cval, int64_t d, int64_t cnnz,
                    int64_t k, double* out, bool validate, const ProjOptions& o, int sm_count);
void srp_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, float scale, float* out, bool validate, const ProjOptions& o,
                    int sm_count);
void srp_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, double scale, double* out, bool validate, const ProjOptions& o,
                    int sm_count);
void srp_column_counts(const SrpSpec& g, int64_t d, int64_t* indptr, const ProjOptions& o, int sm_count);
void srp_column_fill(const SrpSpec& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg,
                     const ProjOptions& o, int sm_count);
void fastrp(const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t nnz,
            int64_t dim, const double* node_scale, uint64_t seed, const float* iteration_weights,
            int64_t iters, float self_influence, float* out, bool validate, const ProjOptions& o,
            int sm_count);
}  // namespace emu

}  // namespace embkern::cuda
