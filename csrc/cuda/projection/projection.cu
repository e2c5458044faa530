// CUDA launchers of the projection family: the orchestrations of projection_blocks.hpp on the
// stream-ordered device executor.
#include "cuda/common/device.cuh"
#include "cuda/projection/projection_blocks.hpp"
#include "cuda/projection/projection_cuda.hpp"

namespace embkern::cuda {

void csr_dense_f32(const float* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const float* values, int64_t nnz, int64_t k, float* out, bool validate,
                   std::uintptr_t stream, int device, const ProjOptions& o) {
    proj::dense_checks<float>(n, d, k, nnz);
    if (!validate && (n == 0 || k == 0)) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_csr_dense(ex, x, n, d, indptr, indices, values, nnz, k, out, validate, o);
}

void csr_dense_f64(const double* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const double* values, int64_t nnz, int64_t k, double* out, bool validate,
                   std::uintptr_t stream, int device, const ProjOptions& o) {
    proj::dense_checks<double>(n, d, k, nnz);
    if (!validate && (n == 0 || k == 0)) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_csr_dense(ex, x, n, d, indptr, indices, values, nnz, k, out, validate, o);
}

void csr_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const float* cval, int64_t d, int64_t cnnz,
                    int64_t k, float* out, bool validate, std::uintptr_t stream, int device,
                    const ProjOptions& o) {
    if (!validate && (n == 0 || k == 0)) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_csr_sparse(ex, xptr, xind, xval, n, xnnz, cptr, cind, cval, d, cnnz, k, out, validate, o);
}

void csr_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const double* cval, int64_t d, int64_t cnnz,
                    int64_t k, double* out, bool validate, std::uintptr_t stream, int device,
                    const ProjOptions& o) {
    if (!validate && (n == 0 || k == 0)) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_csr_sparse(ex, xptr, xind, xval, n, xnnz, cptr, cind, cval, d, cnnz, k, out, validate, o);
}

void srp_sparse_f32(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, float scale, float* out, bool validate, std::uintptr_t stream,
                    int device, const ProjOptions& o) {
    proj::srp_spec_checks(g);
    if (!validate && n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_srp_sparse(ex, xptr, xind, xval, n, xnnz, g, scale, out, validate, o);
}

void srp_sparse_f64(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, double scale, double* out, bool validate, std::uintptr_t stream,
                    int device, const ProjOptions& o) {
    proj::srp_spec_checks(g);
    if (!validate && n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_srp_sparse(ex, xptr, xind, xval, n, xnnz, g, scale, out, validate, o);
}

void srp_column_counts(const SrpSpec& g, int64_t d, int64_t* indptr, std::uintptr_t stream, int device,
                       const ProjOptions& o) {
    proj::srp_spec_checks(g);
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_srp_column_counts(ex, g, d, indptr, o);
}

void srp_column_fill(const SrpSpec& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg,
                     std::uintptr_t stream, int device, const ProjOptions& o) {
    proj::srp_spec_checks(g);
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_srp_column_fill(ex, g, d, indptr, idx, neg, o);
}

void fastrp(const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t nnz,
            int64_t dim, const double* node_scale, uint64_t seed, const float* iteration_weights,
            int64_t iters, float self_influence, float* out, bool validate, std::uintptr_t stream,
            int device, const ProjOptions& o) {
    if (!validate && n == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    proj::run_fastrp(ex, indptr, indices, w, n, nnz, dim, node_scale, seed, iteration_weights, iters,
                     self_influence, out, validate, o);
}

}  // namespace embkern::cuda
