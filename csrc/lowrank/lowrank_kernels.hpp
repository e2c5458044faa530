// The lowrank family's entries in the kernel table (filled per tier by register_lowrank).
//
// Every product of the family is a GEMM "C = A B^T" with B in PyTorch's (out, in) layout, cut into
// BLIS-style blocks by the driver (lowrank_driver.cpp); the tier supplies only the two inner
// loops that carry the FLOPs:
// * gemm: an MR x NR register tile swept over a packed A block (mb x kc) and packed B panels.
//   A is packed [tile][k][MR] (rows past m are zero), B [panel][k][NR] (columns past n zero),
//   so the tile loop reads both operands contiguously. C rows come as pointers, which lets
//   multi-adapter LoRA scatter its output rows in place.
// * spmm: a sparse matrix S (CSR: out rows, in columns) times a transposed block of SW tokens,
//   xt [K][SW]: out[n][0..SW) = sum_p values[p] * xt[indices[p]][0..SW). SW values are one
//   64-byte line, so each non-zero costs one line read from the L2-resident block.
#pragma once
#include <cstdint>

namespace embkern {

constexpr int64_t kLrMR = 6;     // register tile rows (both dtypes)
constexpr int64_t kLrNR32 = 16;  // register tile columns, float32 (two 8-lane vectors)
constexpr int64_t kLrNR64 = 8;   // float64 (two 4-lane vectors)
constexpr int64_t kLrSW32 = 16;  // tokens per SpMM block, float32
constexpr int64_t kLrSW64 = 8;   // float64
// B blocks (kc x n) up to this size stay in L2 (512 KiB and up on current x86 and Arm cores) while
// the row tiles sweep them: the GEMM then walks rows outer, and the driver reads A in place.
constexpr int64_t kLrBlockL2Bytes = int64_t(320) << 10;

struct LowrankKernels {
    // For rows i < m and columns j < n:
    //   C[i][c0 + j] = (acc ? C[i][c0 + j] + s : s) (+ bias[j] when bias), s = sum_{k<kc} A[i][k] B[j][k]
    // ap: ceil(m / MR) packed tiles of kc * MR; bp: ceil(n / NR) panels, panel p at bp + p * bstride.
    void (*gemm_f32)(const float* ap, int64_t m, const float* bp, int64_t bstride, int64_t n,
                     int64_t kc, float* const* crows, int64_t c0, const float* bias, bool acc);
    void (*gemm_f64)(const double* ap, int64_t m, const double* bp, int64_t bstride, int64_t n,
                     int64_t kc, double* const* crows, int64_t c0, const double* bias, bool acc);
    // The same product with A read in place from row pointers (columns [k0, k0 + kc) of each row)
    // instead of a packed block: for operands used against one or few B panels, where packing
    // would cost a full extra pass over A that no FMA overlaps.
    void (*gemm_rows_f32)(const float* const* arows, int64_t m, int64_t k0, const float* bp,
                          int64_t bstride, int64_t n, int64_t kc, float* const* crows, int64_t c0,
                          const float* bias, bool acc);
    void (*gemm_rows_f64)(const double* const* arows, int64_t m, int64_t k0, const double* bp,
                          int64_t bstride, int64_t n, int64_t kc, double* const* crows, int64_t c0,
                          const double* bias, bool acc);
    // Packs rows [0, m) of an A operand (row pointers; columns [k0, k0 + kc)) into ceil(m / MR)
    // tiles [kk][MR] (rows past m zero) and prefetches the next `next` columns of each row.
    // ap needs ceil(m / MR) * MR * kc + 8 elements (the SIMD form writes 8 at a time).
    void (*pack_a_f32)(const float* const* rows, int64_t m, int64_t k0, int64_t kc, float* ap,
                       int64_t next);
    void (*pack_a_f64)(const double* const* rows, int64_t m, int64_t k0, int64_t kc, double* ap,
                       int64_t next);
    // Packs panels [p0, p1) of a B operand b (n x k, row-major), each element of inner index kk
    // times colscale[kk] (when given) and then *scalar (when given): panel p = rows
    // p * NR .. p * NR + NR - 1 as [k][NR] at out + p * k * NR, zeros for rows past n.
    void (*pack_b_f32)(const float* b, int64_t n, int64_t k, const float* colscale,
                       const float* scalar, int64_t p0, int64_t p1, float* out);
    void (*pack_b_f64)(const double* b, int64_t n, int64_t k, const double* colscale,
                       const double* scalar, int64_t p0, int64_t p1, double* out);
    // out[(i - n0) * SW + l] = sum_{p in row i} values[p] * xt[indices[p] * SW + l], i in [n0, n1).
    void (*spmm_f32)(const float* xt, const int64_t* indptr, const int32_t* indices,
                     const float* values, int64_t n0, int64_t n1, float* out);
    void (*spmm_f64)(const double* xt, const int64_t* indptr, const int32_t* indices,
                     const double* values, int64_t n0, int64_t n1, double* out);
};

}  // namespace embkern
