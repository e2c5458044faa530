// The projection family's entries in the kernel table (filled per tier by register_projection).
// Layouts (all row-major, int64 offsets, int32 column ids):
//   * a CSR matrix C with `rows` rows is (indptr[rows + 1], indices[nnz], values[nnz]);
//   * the sparse-random-projection generator is SrpGen (projection/srp_rng.hpp): it yields, for a
//     feature j, the sorted components i with R[i, j] != 0 and their signs.
#pragma once
#include <cstdint>

namespace embkern {

// Counter-based generator of the sparse random matrix R (k x n_features), column by column.
// mode 0: per entry, nonzero when (hash >> 11) < thr53 (thr53 = floor(density * 2^53));
// mode 1: per column, count c from the binomial CDF table cdf[0..ncdf) (last entry > 1), then
//         c distinct rows by Floyd's sampling. Signs: top bit of a third hash (set = negative).
struct SrpGen {
    uint64_t seed;
    int64_t k;
    int32_t mode;
    uint64_t thr53;
    const double* cdf;
    int64_t ncdf;
};

// R's columns precomputed for srp_sparse (built by the driver for a generator and d features, when
// X has at least as many stored entries as features): one code per feature, read directly at the
// column id (no rank to compute per hit), and a bitmap of the non-empty columns (about 1 in 5 at
// "auto" density) that the filter tests every entry of X against. The bitmap (d / 8 bytes) stays
// in L2; the code table (4 d bytes) in L3 while X streams past, its lines prefetched a row ahead.
// (A table of the non-empty columns only, a quarter the size, needs each hit's rank in the bitmap
// first: about 10 % slower over the whole kernel at 2^20 features, process-level A/B.)
//   bits[j / 32] bit j % 32     column j has entries
//   code[j]                     0 when column j is empty; else its count (1, 2; 3: more, expanded
//                               from the generator) in bits 0-1, then up to two entries
//                               (negative << 14 | row) of 15 bits each (k <= 2^14)
struct SrpPacked {
    const uint32_t* bits;
    const uint32_t* code;
};

enum FastrpBase : int { kFastrpAccumulate = 0, kFastrpZero = 1, kFastrpPending = 2 };

struct ProjectionKernels {
    // out[r, i] = sum_e x[r, indices[e]] * values[e] over C's row i (e in stored order), for
    // n rows of x (row stride d); C has k rows. out has row stride k.
    void (*csr_dense_f32)(const float* x, int64_t n, int64_t d, const int64_t* indptr,
                          const int32_t* indices, const float* values, int64_t k, float* out);
    void (*csr_dense_f64)(const double* x, int64_t n, int64_t d, const int64_t* indptr,
                          const int32_t* indices, const double* values, int64_t k, double* out);
    // Sparse rows of X (xptr[n + 1] absolute offsets, xind, xval) times Ct (n_features x k, CSR):
    // out[r, :] = 0, then for each stored x entry (j, v) in order, for each Ct entry (i, c) of
    // row j in order: out[r, i] += v * c.
    void (*csr_sparse_f32)(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n,
                           const int64_t* cptr, const int32_t* cind, const float* cval, int64_t k,
                           float* out);
    void (*csr_sparse_f64)(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n,
                           const int64_t* cptr, const int32_t* cind, const double* cval, int64_t k,
                           double* out);
    // As csr_sparse with Ct = R^T generated on the fly from g (values +-scale), for X with d
    // columns: the same numbers as csr_sparse on the table srp_columns builds. X's column ids and
    // values are checked as they are read: an id outside [0, d) or a NaN/inf value throws
    // std::invalid_argument.
    void (*srp_sparse_f32)(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n,
                           int64_t d, const SrpGen& g, float scale, float* out);
    void (*srp_sparse_f64)(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n,
                           int64_t d, const SrpGen& g, double scale, double* out);
    // srp_sparse on the packed table p of the same generator (the same numbers, the same checks).
    // Every row has fewer than 2^31 stored entries.
    void (*srp_packed_f32)(const int64_t* xptr, const int32_t* xind, const float* xval, int64_t n,
                           int64_t d, const SrpGen& g, const SrpPacked& p, float scale, float* out);
    void (*srp_packed_f64)(const int64_t* xptr, const int32_t* xind, const double* xval, int64_t n,
                           int64_t d, const SrpGen& g, const SrpPacked& p, double scale, double* out);
    // FastRP start for nodes u in [u0, u1): prev[u] = initial vector (srp_rng.hpp, key = stream 4,
    // entries +-float(sqrt(3 / dim) * node_scale[u]); node_scale null: 1), and unless out is null,
    // out[u] = si * normalize(prev[u]) (zeros when si == 0 or the vector is zero).
    void (*fastrp_init)(uint64_t key, int64_t u0, int64_t u1, int64_t dim, const double* node_scale,
                        float si, float* prev, float* out);
    // FastRP step for nodes u in [u0, u1): e = normalize(sum_e w[e] * prev[indices[e]]) (edges of u
    // in stored order; w null: plain sums); next[u] = e unless next is null; unless out is null,
    // out[u] = base + wi * e with base = out[u] (base_mode kFastrpAccumulate), 0.0f (kFastrpZero), or
    // 0.0f + pw * prev[u] (kFastrpPending: the previous iteration's term, not yet added to a buffer).
    void (*fastrp_propagate)(const int64_t* indptr, const int32_t* indices, const float* w,
                             int64_t u0, int64_t u1, const float* prev, int64_t dim, float* next,
                             float wi, float* out, int base_mode, float pw);
};

}  // namespace embkern
