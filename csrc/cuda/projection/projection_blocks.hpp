// Projection GPU kernels, as block-level bodies compiled by nvcc (projection.cu) and by the host
// emulator (projection_emulator.cpp); see common/blocks.hpp for the convention.
//
// Exactness. design.md promises the same bits on every backend and thread count, so every output
// is owned by one thread, which accumulates it in the CPU's order with separately rounded
// operations (mul_rn / add_rn, IEEE division and square root): no float atomics, no reassociation.
// The random matrix and the FastRP initial vectors come from the counter-based hash of
// csrc/projection/srp_rng.hpp (restated below as host+device functions; integer-only, so exact).
//
// csr_dense (out = X C^T, X dense n x d, C CSR k x d): a GEMM-like tiling. A block owns BM rows
// (BM = 32 RPT: 128 for float, 64 for double) and BN = 8 W components (W warps of 32 threads). It
// walks d in chunks of `chunk` features: the X tile [BM x chunk] is staged transposed in shared
// memory (xs[feature][row], row stride BM + 4: the fill stores and the compute loads are both free
// of bank conflicts), loaded with 16-byte vector loads when rows and base allow. Lane l of a warp
// owns rows l + 32 m (m < RPT) and the warp owns 8 components, so every lane of a warp walks the
// same CSR entries (broadcast loads of index and value) and reads consecutive rows of xs (no
// conflict). Each component keeps a cursor into its CSR row: in a chunk it consumes entries while
// their feature is below the chunk end, so with sorted rows (the generated matrix, scipy's CSR)
// every entry is read from shared memory once, in stored order; an entry whose feature lies in an
// earlier chunk (unsorted rows) is read from global memory instead, so any order is exact.
// Register blocking: 8 components x RPT rows of accumulators per thread. Results go through
// shared memory so the stores of out's rows are coalesced. Row tiles x component tiles, grid-stride,
// with the component tiles of one row tile adjacent (they share the X tile in L2).
//
// csr_sparse / srp_sparse (sparse X rows, the CPU's scatter order): one thread per output row,
// grid-stride; the output is zeroed first (memset) and the thread applies X's entries in order,
// each entry's column of Ct (or of the generated R: mode 0 tests every component, mode 1 draws the
// column's count and Floyd's rows into a per-thread buffer) in order. Rows are independent, so
// the per-output chains are exactly the CPU's; rows of very sparse inputs touch few outputs, which
// is why a thread (not a block) per row is the right grain.
//
// srp_column_counts / fill (R^T as CSR): one thread per feature; counts, then a three-pass
// inclusive scan (per-range sums, one-block scan of the range sums, per-range block scans), then
// each thread writes its column's rows and signs at indptr[j].
//
// FastRP: a group of G threads (G = the power of two >= dim / 4, at most the block) owns a node;
// thread g owns 4-element units g, g + G, ... of the node's row. For each unit it walks the node's
// edges in order (4 edges per step: independent 16-byte gathers of neighbour rows in flight) with
// 4 accumulators, then stages the sums (shared memory, or the node's row of the state buffer when
// the block's rows do not fit). The norm takes the CPU's 8 fixed lanes: 8 threads per node sum
// lane t % 8 in ascending t, one folds ((0+1)+(2+3))+((4+5)+(6+7)) and takes the square root; then
// next = sum / norm and out += w_i next (fused epilogue: one pass over the row). Initial vectors:
// one 64-bit hash per unit gives its 4 entries; prev holds them, out = si * normalize(prev).
// Memory: the CPU's plans. With GDS's default weights (only the last two nonzero, no self
// influence) out doubles as a state buffer and the last step forms 0 + w_{L-1} e^{L-1} + w_L e^L
// without storing e^L: one n x dim scratch buffer besides out (else two).
// Block-wide barriers separate the phases (no warp intrinsics), so a block's nodes move together.
//
// Validation (optional, for operands that live on the device): a kernel checks indptr's bounds and
// order and the column ids, counting violations; the launcher reads the counts back and throws.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda/common/blocks.hpp"
#include "cuda/projection/projection_cuda.hpp"

#if defined(__CUDACC__)
#define EK_HD __host__ __device__ __forceinline__
#else
#define EK_HD inline
#endif

namespace embkern::cuda {
namespace proj {

// ---- counter-based randomness (csrc/projection/srp_rng.hpp) -----------------------------------

constexpr uint64_t kG1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kG2 = 0xD1B54A32D192ED03ull;
constexpr uint64_t kG3 = 0xA24BAED4963EE407ull;
constexpr uint32_t kInitPlus = 10923, kInitMinus = 21846;

EK_HD uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
EK_HD uint64_t hash3(uint64_t key, uint64_t a, uint64_t b) { return mix64(key ^ (a * kG1) ^ (b * kG2)); }
EK_HD uint64_t stream_key(uint64_t seed, uint64_t s) { return mix64(seed ^ (s * kG3)); }

// The generator as the kernels see it (cdf in device memory).
struct SrpDev {
    uint64_t kcount, kpick, ksign;
    int64_t k;
    int mode;
    uint64_t thr53;
    const double* cdf;
};

inline SrpDev make_srp_dev(const SrpSpec& g, const double* cdf_dev) {
    return SrpDev{stream_key(g.seed, 1), stream_key(g.seed, 2), stream_key(g.seed, 3), g.k, g.mode,
                  g.thr53, cdf_dev};
}

// Mode 1: the count of column j (the first c with u < cdf[c]; the last cdf entry exceeds 1).
EK_FN int64_t srp_want(const SrpDev& g, uint64_t uj) {
    const double u = static_cast<double>(hash3(g.kcount, uj, 0) >> 11) * 0x1p-53;
    int64_t want = 0;
    while (u >= g.cdf[want]) ++want;
    return want;
}

EK_FN int64_t srp_count(const SrpDev& g, int64_t j) {
    const uint64_t uj = static_cast<uint64_t>(j);
    if (g.mode == 1) return srp_want(g, uj);
    int64_t c = 0;
    for (int64_t i = 0; i < g.k; ++i) c += (hash3(g.kcount, uj, static_cast<uint64_t>(i)) >> 11) < g.thr53;
    return c;
}

// The rows of column j, ascending, into idx (room for the count). Returns the count.
EK_FN int64_t srp_rows(const SrpDev& g, int64_t j, int32_t* idx) {
    const uint64_t uj = static_cast<uint64_t>(j);
    int64_t c = 0;
    if (g.mode == 0) {
        for (int64_t i = 0; i < g.k; ++i)
            if ((hash3(g.kcount, uj, static_cast<uint64_t>(i)) >> 11) < g.thr53) idx[c++] = static_cast<int32_t>(i);
        return c;
    }
    const int64_t want = srp_want(g, uj);
    for (int64_t t = g.k - want; t < g.k; ++t) {  // Floyd's sampling, kept sorted by insertion
        const uint64_t h = hash3(g.kpick, uj, static_cast<uint64_t>(t));
        int32_t r = static_cast<int32_t>(((h >> 32) * static_cast<uint64_t>(t + 1)) >> 32);
        for (int64_t q = 0; q < c; ++q)
            if (idx[q] == r) {
                r = static_cast<int32_t>(t);
                break;
            }
        int64_t q = c++;
        while (q > 0 && idx[q - 1] > r) {
            idx[q] = idx[q - 1];
            --q;
        }
        idx[q] = r;
    }
    return c;
}

EK_FN bool srp_negative(const SrpDev& g, int64_t j, int32_t i) {
    return (hash3(g.ksign, static_cast<uint64_t>(j), static_cast<uint64_t>(static_cast<int64_t>(i))) >> 63) != 0;
}

// V consecutive values (16 bytes) from a 16-byte aligned address.
EK_FN void load16(const float* p, float* v) {
#if defined(__CUDACC__)
    const float4 a = *reinterpret_cast<const float4*>(p);
    v[0] = a.x;
    v[1] = a.y;
    v[2] = a.z;
    v[3] = a.w;
#else
    std::memcpy(v, p, 16);
#endif
}
EK_FN void load16(const double* p, double* v) {
#if defined(__CUDACC__)
    const double2 a = *reinterpret_cast<const double2*>(p);
    v[0] = a.x;
    v[1] = a.y;
#else
    std::memcpy(v, p, 16);
#endif
}

// ---- CSR validation -----------------------------------------------------------------------------

struct CsrCheckParams {
    const int64_t* ptr;
    int64_t rows;
    const int32_t* ind;
    int64_t nnz;
    int64_t limit;  // ids must be in [0, limit); < 0: ids not checked
    unsigned* flags;  // [0] bounds, [1] order, [2] ids
};

template <class Ctx>
EK_FN void csr_check_body(Ctx& ctx, const CsrCheckParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    const int64_t work = p.rows > p.nnz ? p.rows : p.nnz;
    const int64_t first = ctx.block() * ctx.nthreads() + ctx.tid();
    if (first == 0 && (p.ptr[0] < 0 || p.ptr[p.rows] > p.nnz)) atomic_add_u32(&p.flags[0], 1u);
    for (int64_t i = first; i < work; i += stride) {
        if (i < p.rows && p.ptr[i] > p.ptr[i + 1]) atomic_add_u32(&p.flags[1], 1u);
        if (p.limit >= 0 && i < p.nnz && (p.ind[i] < 0 || int64_t(p.ind[i]) >= p.limit))
            atomic_add_u32(&p.flags[2], 1u);
    }
}

// ---- inclusive scan of int64 (three passes) -----------------------------------------------------

struct ScanParams {
    int64_t* a;
    int64_t n;
    int64_t parts;     // equal ranges [n b / parts, n (b + 1) / parts)
    int64_t* partial;  // parts: range sums, then their exclusive prefix
};

EK_FN int64_t range_lo(int64_t n, int64_t b, int64_t parts) {
    const int64_t q = n / parts, r = n % parts;
    return b * q + (b < r ? b : r);
}

template <class Ctx>
EK_FN void scan_reduce_body(Ctx& ctx, unsigned char* smem, const ScanParams& p) {
    int64_t* sh = reinterpret_cast<int64_t*>(smem);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    for (int64_t b = ctx.block(); b < p.parts; b += ctx.nblocks()) {
        const int64_t lo = range_lo(p.n, b, p.parts), hi = range_lo(p.n, b + 1, p.parts);
        int64_t s = 0;
        for (int64_t i = lo + tid; i < hi; i += nt) s += p.a[i];
        sh[tid] = s;
        ctx.sync();
        for (int w = 1; w < nt; w <<= 1) {
            if (tid % (2 * w) == 0 && tid + w < nt) sh[tid] += sh[tid + w];
            ctx.sync();
        }
        if (tid == 0) p.partial[b] = sh[0];
        ctx.sync();
    }
}

template <class Ctx>
EK_FN void scan_partials_body(Ctx& ctx, const ScanParams& p) {
    if (ctx.block() != 0 || ctx.tid() != 0) return;
    int64_t run = 0;
    for (int64_t b = 0; b < p.parts; ++b) {
        const int64_t t = p.partial[b];
        p.partial[b] = run;
        run += t;
    }
}

template <class Ctx>
EK_FN void scan_apply_body(Ctx& ctx, unsigned char* smem, const ScanParams& p) {
    int64_t* sh = reinterpret_cast<int64_t*>(smem);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    for (int64_t b = ctx.block(); b < p.parts; b += ctx.nblocks()) {
        const int64_t lo = range_lo(p.n, b, p.parts), hi = range_lo(p.n, b + 1, p.parts);
        int64_t carry = p.partial[b];
        for (int64_t t0 = lo; t0 < hi; t0 += nt) {
            const int64_t i = t0 + tid;
            sh[tid] = i < hi ? p.a[i] : 0;
            ctx.sync();
            for (int off = 1; off < nt; off <<= 1) {  // Hillis-Steele
                const int64_t add = tid >= off ? sh[tid - off] : 0;
                ctx.sync();
                sh[tid] += add;
                ctx.sync();
            }
            if (i < hi) p.a[i] = sh[tid] + carry;
            carry += sh[nt - 1];
            ctx.sync();
        }
    }
}

// ---- csr_dense ----------------------------------------------------------------------------------

template <class T>
struct DenseShape {
    static constexpr int RPT = sizeof(T) == 4 ? 4 : 2;  // rows per thread
    static constexpr int CW = 8;                        // components per warp
    static constexpr int BM = 32 * RPT;                 // rows per block tile
    static constexpr int LDT = BM + 4;                  // row stride of the transposed X tile
    static constexpr int V = 16 / int(sizeof(T));       // values per 16-byte load
};

constexpr int32_t kNoFeature = 0x7FFFFFFF;

template <class T>
struct DenseParams {
    const T* x;
    int64_t n, d;
    const int64_t* ptr;
    const int32_t* ind;
    const T* val;
    int64_t k;
    T* out;
    int64_t chunk;                  // features per step (a multiple of V when vec)
    int warps;                      // warps per block; the block owns warps * CW components
    int64_t row_tiles, comp_tiles;
    bool vec;                       // d % V == 0, x 16-byte aligned, chunk % V == 0
};

// Stage X[r0 .. r0 + BM, c0 .. c0 + bk) transposed: xs[f * LDT + row] (rows past n are zeros).
template <class T, class Ctx>
EK_FN void dense_fill(Ctx& ctx, const DenseParams<T>& p, T* xs, int64_t r0, int64_t c0, int64_t bk) {
    using S = DenseShape<T>;
    constexpr int BM = S::BM, LDT = S::LDT, V = S::V;
    const int tid = ctx.tid(), nt = ctx.nthreads();
    if (p.vec) {
        // A warp takes 16 rows x 2 vectors (32 contiguous bytes of each row): full sectors, and
        // with LDT = 4 mod 32 the two vectors' scalar stores fall in disjoint bank halves.
        const int64_t units = bk / V;
        const int64_t total = int64_t(BM / 16) * ((units + 1) / 2) * 32;
        for (int64_t q = tid; q < total; q += nt) {
            const int64_t rest = q / 32;
            const int64_t unit = 2 * (rest / (BM / 16)) + (q % 2);
            if (unit >= units) continue;
            const int64_t row = (rest % (BM / 16)) * 16 + (q / 2) % 16;
            const int64_t col = unit * V;
            T v[V];
            if (r0 + row < p.n) {
                load16(p.x + (r0 + row) * p.d + c0 + col, v);
            } else {
                EK_UNROLL
                for (int s = 0; s < V; ++s) v[s] = T(0);
            }
            EK_UNROLL
            for (int s = 0; s < V; ++s) xs[(col + s) * LDT + row] = v[s];
        }
    } else {
        // A warp takes 4 rows x 8 consecutive features.
        const int64_t total = int64_t(BM / 4) * ((bk + 7) / 8) * 32;
        for (int64_t q = tid; q < total; q += nt) {
            const int64_t rest = q / 32;
            const int64_t col = (rest / (BM / 4)) * 8 + q % 8;
            if (col >= bk) continue;
            const int64_t row = (rest % (BM / 4)) * 4 + (q / 8) % 4;
            xs[col * LDT + row] = r0 + row < p.n ? p.x[(r0 + row) * p.d + c0 + col] : T(0);
        }
    }
}

template <class T, class Ctx>
EK_FN void csr_dense_body(Ctx& ctx, unsigned char* smem, const DenseParams<T>& p) {
    using S = DenseShape<T>;
    constexpr int RPT = S::RPT, CW = S::CW, BM = S::BM, LDT = S::LDT;
    T* xs = reinterpret_cast<T*>(smem);
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int lane = tid % 32, warp = tid / 32;
    const int BN = p.warps * CW;
    const int64_t tiles = p.row_tiles * p.comp_tiles;
    for (int64_t tile = ctx.block(); tile < tiles; tile += ctx.nblocks()) {
        const int64_t r0 = tile / p.comp_tiles * BM;
        const int64_t ib = tile % p.comp_tiles * BN;  // first component of the block
        const int64_t iw = ib + int64_t(warp) * CW;   // first component of the warp
        int64_t e[CW], end[CW];
        int32_t jn[CW];  // feature of entry e (kNoFeature past the end)
        T acc[CW][RPT];
        EK_UNROLL
        for (int c = 0; c < CW; ++c) {
            const bool ok = iw + c < p.k;
            e[c] = ok ? p.ptr[iw + c] : 0;
            end[c] = ok ? p.ptr[iw + c + 1] : 0;
            jn[c] = e[c] < end[c] ? p.ind[e[c]] : kNoFeature;
            EK_UNROLL
            for (int m = 0; m < RPT; ++m) acc[c][m] = T(0);
        }
        for (int64_t c0 = 0; c0 < p.d; c0 += p.chunk) {
            const int64_t bk = min64(p.chunk, p.d - c0);
            dense_fill(ctx, p, xs, r0, c0, bk);
            ctx.sync();
            const int64_t c1 = c0 + bk;
            EK_UNROLL
            for (int c = 0; c < CW; ++c) {
                while (jn[c] < c1) {
                    const int64_t j = jn[c];
                    const T v = p.val[e[c]];
                    if (j >= c0) {
                        const T* xc = xs + (j - c0) * LDT + lane;
                        EK_UNROLL
                        for (int m = 0; m < RPT; ++m) acc[c][m] = add_rn(acc[c][m], mul_rn(xc[32 * m], v));
                    } else {  // unsorted row: this feature's chunk is gone, read X itself
                        EK_UNROLL
                        for (int m = 0; m < RPT; ++m) {
                            const int64_t row = r0 + lane + 32 * m;
                            const T xv = row < p.n ? p.x[row * p.d + j] : T(0);
                            acc[c][m] = add_rn(acc[c][m], mul_rn(xv, v));
                        }
                    }
                    ++e[c];
                    jn[c] = e[c] < end[c] ? p.ind[e[c]] : kNoFeature;
                }
            }
            ctx.sync();
        }
        // Results through shared memory (row stride BN + 1), then coalesced row segments.
        T* ot = xs;
        const int ldo = BN + 1;
        EK_UNROLL
        for (int c = 0; c < CW; ++c)
            EK_UNROLL
            for (int m = 0; m < RPT; ++m) ot[(lane + 32 * m) * ldo + warp * CW + c] = acc[c][m];
        ctx.sync();
        const int bn = int(min64(BN, p.k - ib));
        const int bm = int(min64(BM, p.n - r0));
        for (int q = tid; q < bm * bn; q += nt) {
            const int rr = q / bn, cc = q % bn;
            p.out[(r0 + rr) * p.k + ib + cc] = ot[rr * ldo + cc];
        }
        ctx.sync();
    }
}

// ---- csr_sparse / srp_sparse (a thread per output row) ------------------------------------------

template <class T>
struct SparseParams {
    const int64_t* xptr;
    const int32_t* xind;
    const T* xval;
    int64_t n;
    const int64_t* cptr;
    const int32_t* cind;
    const T* cval;
    int64_t k;
    T* out;  // zeroed
};

template <class T, class Ctx>
EK_FN void csr_sparse_body(Ctx& ctx, const SparseParams<T>& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t r = ctx.block() * ctx.nthreads() + ctx.tid(); r < p.n; r += stride) {
        T* y = p.out + r * p.k;
        for (int64_t e = p.xptr[r]; e < p.xptr[r + 1]; ++e) {
            const int64_t j = p.xind[e];
            const T v = p.xval[e];
            for (int64_t c = p.cptr[j]; c < p.cptr[j + 1]; ++c) {
                T* yo = y + p.cind[c];
                *yo = add_rn(*yo, mul_rn(v, p.cval[c]));
            }
        }
    }
}

template <class T>
struct SrpSparseParams {
    const int64_t* xptr;
    const int32_t* xind;
    const T* xval;
    int64_t n;
    SrpDev g;
    T scale;
    T* out;         // zeroed
    int32_t* rows;  // mode 1: `room` row slots per thread of the grid
    int64_t room;
};

template <class T, class Ctx>
EK_FN void srp_sparse_body(Ctx& ctx, const SrpSparseParams<T>& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    const int64_t self = ctx.block() * ctx.nthreads() + ctx.tid();
    const int64_t k = p.g.k;
    int32_t* idx = p.rows ? p.rows + self * p.room : nullptr;
    for (int64_t r = self; r < p.n; r += stride) {
        T* y = p.out + r * k;
        for (int64_t e = p.xptr[r]; e < p.xptr[r + 1]; ++e) {
            const int64_t j = p.xind[e];
            const uint64_t uj = static_cast<uint64_t>(j);
            const T v = p.xval[e];
            if (p.g.mode == 0) {
                for (int64_t i = 0; i < k; ++i) {
                    if ((hash3(p.g.kcount, uj, static_cast<uint64_t>(i)) >> 11) >= p.g.thr53) continue;
                    const T s = srp_negative(p.g, j, static_cast<int32_t>(i)) ? -p.scale : p.scale;
                    y[i] = add_rn(y[i], mul_rn(v, s));
                }
            } else {
                const int64_t c = srp_rows(p.g, j, idx);
                for (int64_t q = 0; q < c; ++q) {
                    const T s = srp_negative(p.g, j, idx[q]) ? -p.scale : p.scale;
                    y[idx[q]] = add_rn(y[idx[q]], mul_rn(v, s));
                }
            }
        }
    }
}

// ---- srp columns (R^T as CSR) ---------------------------------------------------------------------

struct SrpColParams {
    SrpDev g;
    int64_t d;
    int64_t* indptr;
    int32_t* idx;
    uint8_t* neg;
};

template <class Ctx>
EK_FN void srp_counts_body(Ctx& ctx, const SrpColParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t j = ctx.block() * ctx.nthreads() + ctx.tid(); j < p.d; j += stride) {
        if (j == 0) p.indptr[0] = 0;
        p.indptr[j + 1] = srp_count(p.g, j);
    }
}

template <class Ctx>
EK_FN void srp_fill_body(Ctx& ctx, const SrpColParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t j = ctx.block() * ctx.nthreads() + ctx.tid(); j < p.d; j += stride) {
        int32_t* rows = p.idx + p.indptr[j];
        uint8_t* neg = p.neg + p.indptr[j];
        const int64_t c = srp_rows(p.g, j, rows);
        for (int64_t q = 0; q < c; ++q) neg[q] = srp_negative(p.g, j, rows[q]) ? 1 : 0;
    }
}

// ---- FastRP ---------------------------------------------------------------------------------------

// How a step forms out[u] (the CPU's kFastrp* modes): out += w_i e^i, or, when only the last two
// weights may be nonzero (the sum is formed in the last iteration), 0 + w_{L-1} e^{L-1} + w_L e^L
// ("pending", e^{L-1} = prev) or 0 + w_L e^L ("zero").
enum FastrpOutMode : int { kOutAccumulate = 0, kOutPending = 1, kOutZero = 2 };

struct FastrpParams {
    const int64_t* indptr;
    const int32_t* indices;
    const float* w;        // null: unweighted sums
    int64_t n, dim;
    const float* prev;     // step: the state e^{i-1}
    float* next;           // step: e^i (null: not stored, the last iteration); init: the initial vectors
    float* out;            // null: not written (init / steps before the last, two-buffer plan)
    float wi;              // step: iteration weight
    int out_mode;          // FastrpOutMode
    float pw;              // kOutPending: the previous iteration's weight
    int G, slots;          // threads per node, nodes per block pass (G * slots = block size)
    bool smem_stage;       // stage a node's row in shared memory (else in `next`)
    bool vec;              // dim % 4 == 0: 16-byte gathers (state buffers are 256-byte aligned)
    // init
    uint64_t key;          // stream 4
    double base;           // sqrt(3 / dim)
    const double* node_scale;  // null: 1
    float si;              // self influence
};

inline size_t fastrp_smem_bytes(int slots, int64_t dim, bool smem_stage) {
    return size_t(slots) * (9 + (smem_stage ? size_t(dim) : 0)) * sizeof(float);
}

// The 8-lane norm of the staged rows of the block's `slots` nodes (u0 + s < n), into nrm[s].
// Starts after a barrier that published the staged rows; ends synchronised.
template <class Ctx>
EK_FN void fastrp_norms(Ctx& ctx, const FastrpParams& p, int64_t u0, float* lanes, float* nrm, float* stg,
                        float* stage_global) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    for (int it = tid; it < p.slots * 8; it += nt) {
        const int s = it / 8, l = it % 8;
        if (u0 + s >= p.n) continue;
        const float* row = p.smem_stage ? stg + int64_t(s) * p.dim : stage_global + (u0 + s) * p.dim;
        float acc = 0.0f;
        for (int64_t t = l; t < p.dim; t += 8) acc = add_rn(acc, mul_rn(row[t], row[t]));
        lanes[it] = acc;
    }
    ctx.sync();
    for (int s = tid; s < p.slots; s += nt) {
        if (u0 + s >= p.n) continue;
        const float* q = lanes + 8 * s;
        nrm[s] = sqrt_rn(add_rn(add_rn(add_rn(q[0], q[1]), add_rn(q[2], q[3])),
                                add_rn(add_rn(q[4], q[5]), add_rn(q[6], q[7]))));
    }
    ctx.sync();
}

// Sums over the node's edges of unit q (4 elements at 4q) of the neighbours' rows, in edge order.
template <bool Weighted, bool Vec>
EK_FN void fastrp_gather(const FastrpParams& p, int64_t e0, int64_t e1, int64_t q, float* a) {
    const int64_t col = 4 * q;
    a[0] = a[1] = a[2] = a[3] = 0.0f;
    int64_t e = e0;
    for (; e + 4 <= e1; e += 4) {
        float x[4][4];
        float wv[4];
        EK_UNROLL
        for (int z = 0; z < 4; ++z) {
            const float* row = p.prev + int64_t(p.indices[e + z]) * p.dim + col;
            if (Vec) {
                load16(row, x[z]);
            } else {
                EK_UNROLL
                for (int s = 0; s < 4; ++s) x[z][s] = col + s < p.dim ? row[s] : 0.0f;
            }
            wv[z] = Weighted ? p.w[e + z] : 1.0f;
        }
        EK_UNROLL
        for (int z = 0; z < 4; ++z)
            EK_UNROLL
            for (int s = 0; s < 4; ++s) a[s] = Weighted ? add_rn(a[s], mul_rn(wv[z], x[z][s])) : add_rn(a[s], x[z][s]);
    }
    for (; e < e1; ++e) {
        const float* row = p.prev + int64_t(p.indices[e]) * p.dim + col;
        float x[4];
        if (Vec) {
            load16(row, x);
        } else {
            EK_UNROLL
            for (int s = 0; s < 4; ++s) x[s] = col + s < p.dim ? row[s] : 0.0f;
        }
        const float wv = Weighted ? p.w[e] : 1.0f;
        EK_UNROLL
        for (int s = 0; s < 4; ++s) a[s] = Weighted ? add_rn(a[s], mul_rn(wv, x[s])) : add_rn(a[s], x[s]);
    }
}

template <class Ctx>
EK_FN void fastrp_step_body(Ctx& ctx, unsigned char* smem, const FastrpParams& p) {
    float* lanes = reinterpret_cast<float*>(smem);
    float* nrm = lanes + 8 * p.slots;
    float* stg = nrm + p.slots;
    const int tid = ctx.tid();
    const int slot = tid / p.G, g = tid % p.G;
    const int64_t units = (p.dim + 3) / 4;
    // Without a shared-memory stage the sums wait in the node's row of next, or of out when next
    // is not stored (the two-buffer plan's last step: that row of out is not read before it is
    // written, and prev is another buffer).
    float* stage_global = p.next ? p.next : p.out;
    for (int64_t u0 = ctx.block() * p.slots; u0 < p.n; u0 += ctx.nblocks() * p.slots) {
        const int64_t u = u0 + slot;
        const bool active = u < p.n;
        float* stage = p.smem_stage ? stg + int64_t(slot) * p.dim : stage_global + u * p.dim;
        if (active) {
            const int64_t e0 = p.indptr[u], e1 = p.indptr[u + 1];
            for (int64_t q = g; q < units; q += p.G) {
                float a[4];
                if (p.w) {
                    if (p.vec) fastrp_gather<true, true>(p, e0, e1, q, a);
                    else fastrp_gather<true, false>(p, e0, e1, q, a);
                } else {
                    if (p.vec) fastrp_gather<false, true>(p, e0, e1, q, a);
                    else fastrp_gather<false, false>(p, e0, e1, q, a);
                }
                EK_UNROLL
                for (int s = 0; s < 4; ++s)
                    if (4 * q + s < p.dim) stage[4 * q + s] = a[s];
            }
        }
        ctx.sync();
        fastrp_norms(ctx, p, u0, lanes, nrm, stg, stage_global);
        if (active) {
            const float nv = nrm[slot];
            float* nx = p.next ? p.next + u * p.dim : nullptr;
            float* o = p.out ? p.out + u * p.dim : nullptr;
            const float* pr = p.prev + u * p.dim;
            for (int64_t t = g; t < p.dim; t += p.G) {
                const float x = nv > 0.0f ? div_rn(stage[t], nv) : 0.0f;
                if (nx) nx[t] = x;
                if (o) {
                    const float base = p.out_mode == kOutAccumulate ? o[t]
                                       : p.out_mode == kOutPending  ? add_rn(0.0f, mul_rn(p.pw, pr[t]))
                                                                    : 0.0f;
                    o[t] = add_rn(base, mul_rn(p.wi, x));
                }
            }
        }
        ctx.sync();
    }
}

template <class Ctx>
EK_FN void fastrp_init_body(Ctx& ctx, unsigned char* smem, const FastrpParams& p) {
    float* lanes = reinterpret_cast<float*>(smem);
    float* nrm = lanes + 8 * p.slots;
    float* stg = nrm + p.slots;
    const int tid = ctx.tid();
    const int slot = tid / p.G, g = tid % p.G;
    const int64_t units = (p.dim + 3) / 4;
    for (int64_t u0 = ctx.block() * p.slots; u0 < p.n; u0 += ctx.nblocks() * p.slots) {
        const int64_t u = u0 + slot;
        const bool active = u < p.n;
        float* r = p.next + u * p.dim;  // the initial vectors (prev of iteration 1)
        float* stage = p.smem_stage ? stg + int64_t(slot) * p.dim : r;
        if (active) {
            const float c = static_cast<float>(p.node_scale ? mul_rn(p.base, p.node_scale[u]) : p.base);
            for (int64_t q = g; q < units; q += p.G) {
                const uint64_t h = hash3(p.key, static_cast<uint64_t>(u), static_cast<uint64_t>(q));
                EK_UNROLL
                for (int s = 0; s < 4; ++s) {
                    const int64_t t = 4 * q + s;
                    if (t >= p.dim) break;
                    const uint32_t f = static_cast<uint32_t>((h >> (16 * s)) & 0xFFFFu);
                    const float v = f < kInitPlus ? c : (f < kInitMinus ? -c : 0.0f);
                    r[t] = v;
                    if (p.smem_stage) stage[t] = v;
                }
            }
        }
        if (p.si != 0.0f) {
            ctx.sync();
            fastrp_norms(ctx, p, u0, lanes, nrm, stg, p.next);
        }
        if (active && p.out) {
            const float nv = p.si != 0.0f ? nrm[slot] : 0.0f;
            float* o = p.out + u * p.dim;
            for (int64_t t = g; t < p.dim; t += p.G)
                o[t] = nv > 0.0f ? mul_rn(p.si, div_rn(stage[t], nv)) : 0.0f;
        }
        ctx.sync();
    }
}

// ---- kernels (tags for Exec::launch) -------------------------------------------------------------

EK_KERNEL(CsrCheckKernel, CsrCheckParams, csr_check_body(ctx, p);)
EK_KERNEL(ScanReduceKernel, ScanParams, scan_reduce_body(ctx, smem, p);)
EK_KERNEL(ScanPartialsKernel, ScanParams, scan_partials_body(ctx, p);)
EK_KERNEL(ScanApplyKernel, ScanParams, scan_apply_body(ctx, smem, p);)
struct CsrDenseKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx, class P>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const P& p) { csr_dense_body(ctx, smem, p); }
};
struct CsrSparseKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx, class P>
    static EK_FN void body(Ctx& ctx, unsigned char*, const P& p) { csr_sparse_body(ctx, p); }
};
struct SrpSparseKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx, class P>
    static EK_FN void body(Ctx& ctx, unsigned char*, const P& p) { srp_sparse_body(ctx, p); }
};
EK_KERNEL(SrpCountsKernel, SrpColParams, srp_counts_body(ctx, p);)
EK_KERNEL(SrpFillKernel, SrpColParams, srp_fill_body(ctx, p);)
EK_KERNEL(FastrpInitKernel, FastrpParams, fastrp_init_body(ctx, smem, p);)
EK_KERNEL(FastrpStepKernel, FastrpParams, fastrp_step_body(ctx, smem, p);)

// ---- orchestration (shared by the CUDA launchers and the host emulator) --------------------------
// Exec: common/blocks.hpp's executor plus wait() (block the host until the stream's work is done;
// only the validation read-back uses it).

inline int block_threads(const ProjOptions& o, int fallback) {
    const int t = o.threads ? o.threads : fallback;
    require_arg(t >= 32 && t <= 256 && (t & (t - 1)) == 0, "threads must be a power of two in [32, 256]");
    return t;
}

constexpr int64_t kMaxFeatures = 0x7FFFFFFF;  // features are int32 ids

template <class Exec>
void run_csr_check(Exec& ex, const int64_t* ptr, int64_t rows, const int32_t* ind, int64_t nnz, int64_t limit,
                   const std::string& name) {
    Scratch<Exec> flags(ex, 4 * sizeof(unsigned));
    ex.zero(flags.ptr, 4 * sizeof(unsigned));
    CsrCheckParams p{ptr, rows, ind, nnz, limit, flags.template as<unsigned>()};
    const int threads = 256;
    ex.template launch<CsrCheckKernel>(grid_for(std::max<int64_t>(1, std::max(rows, nnz)), threads, ex.sm_count(), 8),
                                       threads, 0, p);
    unsigned h[4] = {0, 0, 0, 0};
    ex.copy(h, flags.ptr, sizeof h);
    ex.wait();
    require_arg(h[0] == 0, name + ": indptr out of range");
    require_arg(h[1] == 0, name + ": indptr must be non-decreasing");
    require_arg(h[2] == 0, name + ": column index out of range");
}

template <class Exec>
void run_inclusive_scan(Exec& ex, int64_t* a, int64_t n, int threads) {
    if (n <= 0) return;
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, int64_t(threads) * 16), 1024));
    Scratch<Exec> partial(ex, size_t(parts) * sizeof(int64_t));
    ScanParams p{a, n, parts, partial.template as<int64_t>()};
    const int64_t grid = std::min<int64_t>(parts, int64_t(std::max(1, ex.sm_count())) * 8);
    const size_t smem = size_t(threads) * sizeof(int64_t);
    ex.template launch<ScanReduceKernel>(grid, threads, smem, p);
    ex.template launch<ScanPartialsKernel>(1, 32, 0, p);
    ex.template launch<ScanApplyKernel>(grid, threads, smem, p);
}

template <class T>
inline void dense_checks(int64_t n, int64_t d, int64_t k, int64_t nnz) {
    require_arg(n >= 0 && d >= 0 && nnz >= 0, "csr_dense: negative shape");
    require_arg(k >= 0, "k must be >= 0");
    require_arg(d <= kMaxFeatures, "x must have fewer than 2^31 columns");
}

template <class Exec, class T>
void run_csr_dense(Exec& ex, const T* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
                   const T* values, int64_t nnz, int64_t k, T* out, bool validate, const ProjOptions& o) {
    using S = DenseShape<T>;
    dense_checks<T>(n, d, k, nnz);
    require_arg(o.max_warps >= 0 && o.max_warps <= 8, "max_warps must be in [0, 8]");
    require_arg(o.chunk >= 0, "chunk must be >= 0");
    if (validate) run_csr_check(ex, indptr, k, indices, nnz, d, "components");
    if (n == 0 || k == 0) return;
    DenseParams<T> p{};
    p.x = x;
    p.n = n;
    p.d = d;
    p.ptr = indptr;
    p.ind = indices;
    p.val = values;
    p.k = k;
    p.out = out;
    p.warps = int(std::min<int64_t>(o.max_warps ? o.max_warps : 8, ceil_div(k, S::CW)));
    const int64_t bn = int64_t(p.warps) * S::CW;
    // Features per step: 128 by default, less when the device's shared memory is smaller.
    int64_t chunk = o.chunk;
    if (chunk == 0) {
        const int64_t fit = int64_t(ex.smem_optin() / sizeof(T)) / S::LDT;
        chunk = std::max<int64_t>(S::V, std::min<int64_t>(128, fit) / S::V * S::V);
    }
    p.chunk = chunk;
    p.vec = d % S::V == 0 && aligned_to(x, 16) && chunk % S::V == 0;
    p.row_tiles = ceil_div(n, S::BM);
    p.comp_tiles = ceil_div(k, bn);
    const size_t smem = std::max<size_t>(size_t(chunk) * S::LDT, size_t(S::BM) * size_t(bn + 1)) * sizeof(T);
    require_arg(smem <= ex.smem_optin(), "csr_dense: chunk too large for shared memory");
    const int64_t grid = std::min<int64_t>(p.row_tiles * p.comp_tiles, int64_t(std::max(1, ex.sm_count())) * 8);
    ex.template launch<CsrDenseKernel>(grid, 32 * p.warps, smem, p);
}

template <class Exec, class T>
void run_csr_sparse(Exec& ex, const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t xnnz,
                    const int64_t* cptr, const int32_t* cind, const T* cval, int64_t d, int64_t cnnz, int64_t k,
                    T* out, bool validate, const ProjOptions& o) {
    require_arg(n >= 0 && k >= 0, "sizes must be >= 0");
    require_arg(d >= 0 && xnnz >= 0 && cnnz >= 0, "csr_sparse: negative shape");
    const int threads = block_threads(o, 128);
    if (validate) {
        run_csr_check(ex, xptr, n, xind, xnnz, d, "x");
        run_csr_check(ex, cptr, d, cind, cnnz, k, "components");
    }
    if (n == 0 || k == 0) return;
    ex.zero(out, size_t(n) * size_t(k) * sizeof(T));
    SparseParams<T> p{xptr, xind, xval, n, cptr, cind, cval, k, out};
    ex.template launch<CsrSparseKernel>(grid_for(n, threads, ex.sm_count(), 16), threads, 0, p);
}

inline void srp_spec_checks(const SrpSpec& g) {
    require_arg(g.k >= 1, "n_components must be >= 1");
    require_arg(g.k <= kMaxFeatures, "n_components must be < 2^31");
    require_arg(g.mode == 0 || g.mode == 1, "mode must be 0 or 1");
    if (g.mode == 1) {
        require_arg(g.cdf != nullptr && g.ncdf >= 1 && g.ncdf <= g.k + 1, "cdf must have 1 to k + 1 entries");
        require_arg(g.cdf[g.ncdf - 1] > 1.0, "the last cdf entry must exceed 1");
    }
}

// The generator with its cdf table copied to device scratch.
template <class Exec>
struct SrpOnDevice {
    Scratch<Exec> cdf;
    SrpDev dev;
    SrpOnDevice(Exec& ex, const SrpSpec& g)
        : cdf(ex, g.mode == 1 ? size_t(g.ncdf) * sizeof(double) : 0),
          dev(make_srp_dev(g, cdf.template as<double>())) {
        if (g.mode == 1) ex.copy(cdf.ptr, g.cdf, size_t(g.ncdf) * sizeof(double));
    }
};

template <class Exec, class T>
void run_srp_sparse(Exec& ex, const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t xnnz,
                    const SrpSpec& g, T scale, T* out, bool validate, const ProjOptions& o) {
    require_arg(n >= 0 && xnnz >= 0, "sizes must be >= 0");
    srp_spec_checks(g);
    require_arg(o.scratch_bytes >= 0, "scratch_bytes must be >= 0");
    const int threads = block_threads(o, 128);
    if (validate) run_csr_check(ex, xptr, n, xind, xnnz, -1, "x");
    if (n == 0) return;
    ex.zero(out, size_t(n) * size_t(g.k) * sizeof(T));
    SrpOnDevice<Exec> gen(ex, g);
    const int64_t room = g.mode == 1 ? std::max<int64_t>(1, g.ncdf - 1) : 0;
    int64_t grid = grid_for(n, threads, ex.sm_count(), 16);
    if (room) {  // the per-thread row buffers must fit the scratch budget
        const int64_t budget = o.scratch_bytes ? o.scratch_bytes : (int64_t(64) << 20);
        const int64_t max_threads = budget / (room * int64_t(sizeof(int32_t)));
        grid = std::max<int64_t>(1, std::min(grid, max_threads / threads));
    }
    Scratch<Exec> rows(ex, size_t(room) * size_t(grid) * size_t(threads) * sizeof(int32_t));
    SrpSparseParams<T> p{xptr, xind, xval, n, gen.dev, scale, out, rows.template as<int32_t>(), room};
    ex.template launch<SrpSparseKernel>(grid, threads, 0, p);
}

template <class Exec>
void run_srp_column_counts(Exec& ex, const SrpSpec& g, int64_t d, int64_t* indptr, const ProjOptions& o) {
    srp_spec_checks(g);
    require_arg(d >= 1, "n_features must be >= 1");
    const int threads = block_threads(o, 128);
    SrpOnDevice<Exec> gen(ex, g);
    SrpColParams p{gen.dev, d, indptr, nullptr, nullptr};
    ex.template launch<SrpCountsKernel>(grid_for(d, threads, ex.sm_count(), 16), threads, 0, p);
    run_inclusive_scan(ex, indptr + 1, d, threads);
}

template <class Exec>
void run_srp_column_fill(Exec& ex, const SrpSpec& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg,
                         const ProjOptions& o) {
    srp_spec_checks(g);
    require_arg(d >= 1, "n_features must be >= 1");
    const int threads = block_threads(o, 128);
    SrpOnDevice<Exec> gen(ex, g);
    SrpColParams p{gen.dev, d, const_cast<int64_t*>(indptr), idx, neg};
    ex.template launch<SrpFillKernel>(grid_for(d, threads, ex.sm_count(), 16), threads, 0, p);
}

template <class Exec>
void run_fastrp(Exec& ex, const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t nnz,
                int64_t dim, const double* node_scale, uint64_t seed, const float* iteration_weights,
                int64_t iters, float si, float* out, bool validate, const ProjOptions& o) {
    require_arg(n >= 0 && dim >= 1, "n must be >= 0 and dim >= 1");
    require_arg(nnz >= 0 && iters >= 0, "fastrp: negative size");
    require_arg(n <= kMaxFeatures, "at most 2^31 - 1 nodes are supported");
    require_arg(o.stage >= 0 && o.stage <= 2, "stage must be 0, 1 or 2");
    const int threads = block_threads(o, 256);
    if (validate) run_csr_check(ex, indptr, n, indices, nnz, n, "adjacency");
    if (n == 0) return;
    FastrpParams p{};
    p.indptr = indptr;
    p.indices = indices;
    p.w = w;
    p.n = n;
    p.dim = dim;
    p.out = out;
    p.G = int(std::min<int64_t>(threads, pow2_at_least64(ceil_div(dim, 4))));
    p.slots = threads / p.G;
    p.smem_stage = o.stage == 1 || (o.stage == 0 && fastrp_smem_bytes(p.slots, dim, true) <= kSmemLimit);
    const size_t smem = fastrp_smem_bytes(p.slots, dim, p.smem_stage);
    require_arg(smem <= ex.smem_optin(), "fastrp: dim too large for a shared-memory stage");
    p.vec = dim % 4 == 0;
    p.key = stream_key(seed, 4);
    p.base = std::sqrt(3.0 / static_cast<double>(dim));
    p.node_scale = node_scale;
    p.si = si;
    const int64_t grid = grid_for(n, p.slots, ex.sm_count(), 16);
    const size_t row_bytes = size_t(n) * size_t(dim) * sizeof(float);
    // The CPU's memory plans (projection_driver.cpp), same bits: when self influence is 0 and only
    // the last two weights may be nonzero, out itself is one of the two state buffers and the sum
    // is formed in the last step (one scratch buffer); otherwise two scratch state buffers and out
    // accumulates every step.
    bool two = si == 0.0f;
    for (int64_t i = 0; i + 2 < iters; ++i) two = two && iteration_weights[i] == 0.0f;
    Scratch<Exec> a(ex, row_bytes);
    Scratch<Exec> b(ex, iters > 0 && !two ? row_bytes : 0);
    float* const sa = a.template as<float>();
    if (iters == 0 || !two) {
        float* prev = sa;
        float* next = b.template as<float>();
        p.next = prev;  // the initial vectors
        ex.template launch<FastrpInitKernel>(grid, threads, smem, p);
        p.out_mode = kOutAccumulate;
        for (int64_t i = 0; i < iters; ++i) {
            p.prev = prev;
            p.next = next;
            p.wi = iteration_weights[i];
            ex.template launch<FastrpStepKernel>(grid, threads, smem, p);
            std::swap(prev, next);
        }
        return;
    }
    // e^i lives in the scratch buffer when L - 1 - i is even, else in out (so e^{L-1}, read by the
    // last step, is never the buffer it writes).
    auto state = [&](int64_t i) { return (iters - 1 - i) % 2 == 0 ? sa : out; };
    p.next = state(0);
    p.out = nullptr;  // si == 0: nothing to add yet
    ex.template launch<FastrpInitKernel>(grid, threads, smem, p);
    for (int64_t i = 0; i < iters; ++i) {
        const bool last = i + 1 == iters;
        p.prev = state(i);
        p.next = last ? nullptr : state(i + 1);
        p.out = last ? out : nullptr;
        p.out_mode = i > 0 && iteration_weights[i - 1] != 0.0f ? kOutPending : kOutZero;
        p.pw = i > 0 ? iteration_weights[i - 1] : 0.0f;
        p.wi = iteration_weights[i];
        ex.template launch<FastrpStepKernel>(grid, threads, smem, p);
    }
}

}  // namespace proj
}  // namespace embkern::cuda
