// Fused low-rank linear layers (specs/lowrank.md). Shapes follow PyTorch/PEFT: weights are
// (out, in) row-major; x is (M, K) row-major, y (M, N). All pointers are C-contiguous; optional
// ones may be null. T is float or double; every product accumulates in T.
#pragma once
#include <cstdint>

namespace embkern::lowrank {

// y = x w^T + scale * (x a^T) b^T (+ bias); w (N, K), a (r, K), b (N, r).
template <class T>
void lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                 const T* b, T scale, const T* bias, T* y);

// lora_linear with the base product x w^T done by a BLAS ?gemm (Fortran interface, 32-bit ints;
// `gemm` points at sgemm for float, dgemm for double): y = scale (x a^T) b^T (+ bias) by the fused
// kernels first, then gemm("T", "N", N, M, K, 1, w, K, x, K, 1, y, N) adds x w^T in place.
template <class T>
void lora_linear_blas(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                      const T* b, T scale, const T* bias, T* y, const void* gemm);

// y = ((x v^T) * s) u^T (+ bias); u (N, r), v (r, K), s (r,) or null.
template <class T>
void lowrank_linear(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                    const T* s, const T* bias, T* y);

// y = x (b a + S)^T (+ bias); b (N, r), a (r, K), S (N, K) in CSR (indptr N + 1, indices sorted
// and unique per row, all in [0, K)).
template <class T>
void sparse_lowrank_linear(const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a,
                           int64_t r, const int64_t* indptr, const int32_t* indices,
                           const T* values, const T* bias, T* y);

// y[i] = (x[i] w^T if w) + scales[id] * (x[i] a[id]^T) b[id]^T (if id = ids[i] >= 0) (+ bias);
// a (nad, r, K), b (nad, N, r), ids in [-1, nad), scales (nad,).
template <class T>
void multi_lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a,
                       int64_t nad, int64_t r, const T* b, const int64_t* ids, const T* scales,
                       const T* bias, T* y);

}  // namespace embkern::lowrank
