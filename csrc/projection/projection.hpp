// Projection drivers: task splitting (row or node blocks, so every thread count computes the same
// numbers) around the current tier's kernels. Compiled at the baseline target; sizes int64.
#pragma once
#include <cstdint>
#include <vector>

#include "projection/projection_kernels.hpp"

namespace embkern::projection {

// R^T of the generated matrix as CSR over the d features: counts[j] = nnz of column j, then
// (with indptr the prefix sums of counts) the rows and sign flags of every column.
void srp_counts(const SrpGen& g, int64_t d, int64_t* counts);
void srp_fill(const SrpGen& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg);

template <class T>
void csr_dense(const T* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
               const T* values, int64_t k, T* out);
template <class T>
void csr_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n,
                const int64_t* cptr, const int32_t* cind, const T* cval, int64_t k, T* out);
// X's indices and values are checked as they are read (std::invalid_argument names X).
template <class T>
void srp_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t d,
                const SrpGen& g, T scale, T* out);

// FastRP (GDS semantics): out (n x dim) = self_influence * normalize(r) + sum_i w_i e^i with
// e^0 = r (initial vectors, scaled by node_scale[u]) and e^i = normalize(A e^{i-1}).
// The caller allocates fastrp_buffers(...) n x dim buffers (so numpy's huge-page allocator serves
// them) and passes them as buf[0..]; fastrp returns the one that holds the result.
//
// Memory. Each iteration reads e^{i-1} at random and writes e^i, and the sum needs a buffer of its
// own once two terms are in it: three buffers in general. But the last iteration's e^L is only ever
// added to the sum, so it is never stored; and while self_influence and the weights are zero the sum
// is exactly zero. So when only the last two weights may be nonzero (GDS's default (0, 1, 1)), the
// sum is formed in the last iteration, in the buffer that e^{L-2} held, as
// (0 + w_{L-1} e^{L-1}) + w_L e^L -- the same operations, in the same order, as the three-buffer
// schedule, so the bits do not depend on the plan -- and two buffers suffice.
int64_t fastrp_buffers(const float* iteration_weights, int64_t iters, float self_influence);
float* fastrp(const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t dim,
              const double* node_scale, uint64_t seed, const float* iteration_weights, int64_t iters,
              float self_influence, float* const* buf);

}  // namespace embkern::projection
