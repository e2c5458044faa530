// Low-rank GPU kernels, as block-level bodies compiled by nvcc (lowrank.cu) and by the host emulator
// (lowrank_emulator.cpp); see common/blocks.hpp for the convention.
//
// One GEMM body does all the dense work. Every product here contracts two row-major operands over
// their contiguous dimension (x (M, K) against weights (out, in)), so the body computes
//     C[p, n] = sum_k A1[row(p), k] B1[n, k]  +  sum_k A2[p, k] (B2[n, k] colscale[k] scale)
//               (+ sum over S's row n: S[n, c] A1[p, c])  + bias[n]
// i.e. a GEMM over the concatenated inner dimension [A1 | A2] [B1 | B2]^T, as gpu.md §5 suggests
// (y = [x | t] [W | s B]^T), with an optional CSR SpMM of A1 against a fixed sparse S before the
// one write of C. Each op is two launches of it (plus one reduction kernel per GEMM that runs
// split-K; multi adds three small segment kernels):
//   lora    shrink t = x a^T (M x r, scratch), then y = [x | t] [w | s b]^T + bias
//   lowrank shrink t = x v^T, then y = t (u diag(s))^T + bias
//   sparse  shrink t = x a^T, then y = t b^T + x S^T + bias (SpMM fused, one write)
//   multi   rows sorted into segments by adapter (counting sort on the device: count, scan, scatter),
//           shrink t[p] = x[order[p]] a[q]^T per segment tile, then
//           y[order[p]] = x[order[p]] w^T + t[p] (s_q b[q])^T + bias per segment tile (SGMV).
// Why the rank-r intermediate goes through a small scratch instead of being recomputed per output
// tile: every output tile of a row block needs the same t rows, and recomputing them costs r / BN
// more FLOPs per tile (12 % at r = 16, BN = 128) while the scratch costs M r values, read back from
// L2 into shared memory (it is the last few k-steps of the fused GEMM) and never re-written.
//
// Tiling (per dtype, 256 threads, BK = 8): a block owns a BM x BN output tile; each thread a TM x TN
// micro-tile of accumulators in registers, as two halves of TM/2 rows (and TN/2 columns) BM/2 (BN/2)
// apart, so its shared-memory reads are 16-byte vectors and a quarter-warp's reads are contiguous
// (conflict-free) and its global stores are runs of TN/2 columns. Operand tiles are staged
// transposed, [k][row] with rows padded by 16 bytes, double-buffered: the next k-step's global loads
// are issued into registers before the current step's FMAs and stored to the other buffer after
// them, one barrier per step. Global loads are 16-byte vectors when the operand's base is 16-byte
// aligned and its row stride a multiple of 16 bytes (chosen on the host), else scalar; everything out
// of range reads as 0 (scale factors are applied only to in-range values, so 0 * inf never enters).
//   wide   BM = BN = 128, 8 x 8 (float);   64 x 64, 4 x 4 (double)
//   narrow BM = 128, BN = 32, 8 x 2;       64 x 32, 4 x 2  (shrink GEMMs: N = rank)
//   small  BM = 32, BN = 128, 2 x 8;       32 x 64, 2 x 4  (few rows: decode, small segments)
// Work items (tile, split) are walked grid-stride; the grid is capped by the SM count. Row tiles are
// visited in groups of 8 (all column tiles of 8 row tiles, then the next 8) so concurrently running
// blocks share operand tiles in L2. When the tiles cannot fill the GPU (few rows), the k-steps are
// split into contiguous ranges (split-K): each part writes its partial tile to scratch and a second
// kernel adds the parts in order (and the bias): deterministic, no atomics on results.
// SpMM part: the A1 row tile is staged KC columns at a time ([KC][BM] in the freed operand buffers,
// the next chunk already loading into registers); each thread walks the CSR rows of its TN output
// columns with one cursor per column whose (index, value) is loaded a step ahead, adding
// value * x for its TM rows from shared memory. Cursors are clamped to [0, nnz) and indices outside
// the chunk or out of order are skipped, so bad CSR contents cannot read outside memory. The block's
// x tile is re-read once per column tile (N / BN times, from L2), like a GEMM's A operand.
//
// Accumulation is in T (float32 for float) with FMAs on the device; results differ from the CPU
// backend by summation order only (within float rounding: tests bound the error by 1e-5 (float) /
// 1e-12 (double) of the largest |output|).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/common/blocks.hpp"
#include "cuda/lowrank/lowrank_cuda.hpp"

// Registers: the GEMM tags ask for two resident blocks per SM (kMinBlocks = 2), so
// __launch_bounds__ caps a thread at 128 registers and two blocks fit an SM (ptxas otherwise takes
// ~150-180 for the 128 x 128 float tile: one block, 8 warps per SM). Under that cap the k loop of a
// staged step is not unrolled on the device (unrolled, ptxas keeps fragments of several k in flight
// and spills); 0 spills for every tile (checked with -Xptxas -v).
#if defined(__CUDACC__)
#define EK_KK_UNROLL _Pragma("unroll 1")
#else
#define EK_KK_UNROLL
#endif

namespace embkern::cuda::lowrank {

// ---- loads and stores of N consecutive values (vectors where the size allows) -------------------

template <int N, class T>
EK_FN void load_n(const T* p, T* v) {  // p aligned to the vector used
#if defined(__CUDACC__)
    if constexpr (sizeof(T) == 4 && N % 4 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 4; ++c) {
            const float4 q = reinterpret_cast<const float4*>(p)[c];
            v[4 * c] = q.x;
            v[4 * c + 1] = q.y;
            v[4 * c + 2] = q.z;
            v[4 * c + 3] = q.w;
        }
    } else if constexpr (sizeof(T) == 4 && N % 2 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 2; ++c) {
            const float2 q = reinterpret_cast<const float2*>(p)[c];
            v[2 * c] = q.x;
            v[2 * c + 1] = q.y;
        }
    } else if constexpr (sizeof(T) == 8 && N % 2 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 2; ++c) {
            const double2 q = reinterpret_cast<const double2*>(p)[c];
            v[2 * c] = q.x;
            v[2 * c + 1] = q.y;
        }
    } else {
        EK_UNROLL
        for (int i = 0; i < N; ++i) v[i] = p[i];
    }
#else
    for (int i = 0; i < N; ++i) v[i] = p[i];
#endif
}

template <int N, class T>
EK_FN void store_n(T* p, const T* v) {
#if defined(__CUDACC__)
    if constexpr (sizeof(T) == 4 && N % 4 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 4; ++c)
            reinterpret_cast<float4*>(p)[c] = make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]);
    } else if constexpr (sizeof(T) == 4 && N % 2 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 2; ++c) reinterpret_cast<float2*>(p)[c] = make_float2(v[2 * c], v[2 * c + 1]);
    } else if constexpr (sizeof(T) == 8 && N % 2 == 0) {
        EK_UNROLL
        for (int c = 0; c < N / 2; ++c) reinterpret_cast<double2*>(p)[c] = make_double2(v[2 * c], v[2 * c + 1]);
    } else {
        EK_UNROLL
        for (int i = 0; i < N; ++i) p[i] = v[i];
    }
#else
    for (int i = 0; i < N; ++i) p[i] = v[i];
#endif
}

// P consecutive values row[k .. k + P), 0 past `len` or for a null row. `vec`: the row starts on a
// 16-byte boundary (base aligned, stride a multiple of 16 bytes), so a whole run loads as vectors
// (k is a multiple of P).
template <int P, class T>
EK_FN void load_run(const T* row, int64_t k, int64_t len, bool vec, T* v) {
    if (row != nullptr && vec && k + P <= len) {
        load_n<P>(row + k, v);
        return;
    }
    EK_UNROLL
    for (int i = 0; i < P; ++i) v[i] = (row != nullptr && k + i < len) ? row[k + i] : T(0);
}


// ---- tile shapes ---------------------------------------------------------------------------------

template <class T, int BM_, int BN_, int TM_, int TN_>
struct Cfg {
    using type = T;
    static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, BK = 8;
    static constexpr int TX = BN / TN, TY = BM / TM, THREADS = TX * TY;
    static constexpr int GM = TM / 2, GN = TN / 2;  // the two halves of a micro-tile
    static constexpr int V = 16 / int(sizeof(T));   // values per 16-byte vector
    // Rows padded by one vector: stores of the transposed tiles spread over the banks, and every
    // [k] line stays 16-byte aligned.
    static constexpr int LDA = BM + V, LDB = BN + V;
    static constexpr int PA = BM * BK / THREADS, PB = BN * BK / THREADS;  // staged values per thread
    static constexpr int SMEM_ELEMS = 2 * BK * (LDA + LDB);
    static constexpr size_t SMEM_BYTES = size_t(SMEM_ELEMS) * sizeof(T);
    static constexpr int kc_fit() {
        int kc = 64;
        while (kc > 1 && kc * LDA > SMEM_ELEMS) kc /= 2;
        return kc;
    }
    static constexpr int KC = kc_fit();               // SpMM: x columns staged per chunk
    static constexpr int PX = BM * KC / THREADS;      // staged x values per thread per chunk

    static_assert(THREADS == 256, "tiles are laid out for 256 threads");
    static_assert(TM % 2 == 0 && TN % 2 == 0, "micro-tiles are two halves");
    static_assert(PA >= 1 && PB >= 1 && BK % PA == 0 && BK % PB == 0, "operand staging");
    static_assert(PX >= 1 && KC % PX == 0, "x chunk staging");
    static_assert((LDA * sizeof(T)) % 16 == 0 && (LDB * sizeof(T)) % 16 == 0, "aligned lines");
    static_assert(GM <= V && GN <= V, "a half micro-tile is at most one vector");
};

template <class T>
struct Tiles;
template <>
struct Tiles<float> {
    using Wide = Cfg<float, 128, 128, 8, 8>;
    using Narrow = Cfg<float, 128, 32, 8, 2>;
    using Small = Cfg<float, 32, 128, 2, 8>;
};
template <>
struct Tiles<double> {
    using Wide = Cfg<double, 64, 64, 4, 4>;
    using Narrow = Cfg<double, 64, 32, 4, 2>;
    using Small = Cfg<double, 32, 64, 2, 4>;
};

// ---- the GEMM body ---------------------------------------------------------------------------------

template <class T>
struct GemmParams {
    int64_t M = 0, N = 0;  // logical rows, columns of C
    // segment 1: A1 rows (gathered through a1_rows when set) against B1 (N x k1, ldb1); B1 of
    // group g (grouped launches) at b1 + (g - 1) * b1_gstride when b1_gstride != 0. Off when b1 is
    // null. A1 is also the SpMM operand.
    const T* a1 = nullptr;
    int64_t lda1 = 0;
    const int64_t* a1_rows = nullptr;
    const T* b1 = nullptr;
    int64_t ldb1 = 0, b1_gstride = 0, k1 = 0;
    // segment 2: A2 (logical rows) against B2 * colscale2[k] * scale (group g: b2 + (g - 1) *
    // b2_gstride, scales2[g - 1]; group 0 has no segment 2). Off when a2 is null.
    const T* a2 = nullptr;
    int64_t lda2 = 0;
    const T* b2 = nullptr;
    int64_t ldb2 = 0, b2_gstride = 0, k2 = 0;
    const T* colscale2 = nullptr;
    const T* scales2 = nullptr;
    T scale2 = T(1);
    int scale_mode = 0;  // 0 none, 1 scale2, 2 scales2[adapter]
    // sparse part (C += A1 S^T, S (N x k1) CSR), splits == 1 only
    const int64_t* sp_indptr = nullptr;
    const int32_t* sp_indices = nullptr;
    const T* sp_values = nullptr;
    int64_t sp_nnz = 0;
    // groups (multi): logical rows [seg_start[g], seg_start[g + 1]) form group g, cut into
    // tile_start[g + 1] - tile_start[g] row tiles; null: one group of all rows
    const unsigned long long* seg_start = nullptr;
    const unsigned long long* tile_start = nullptr;
    int64_t ngroups = 0;
    // output: C row of logical row p is c_rows[p] (or p)
    const T* bias = nullptr;
    T* c = nullptr;
    int64_t ldc = 0;
    const int64_t* c_rows = nullptr;
    // split-K: partial tiles [splits][M][N]; the reduction skips logical rows below *reduce_from
    T* part = nullptr;
    const unsigned long long* reduce_from = nullptr;
    int splits = 1;
    int64_t tiles_m = 0, tiles_n = 0;
    bool va1 = false, vb1 = false, va2 = false, vb2 = false, vc = false, vpart = false;
};

// Steps [s0, s1) of one segment: acc += A[rows, k] B[cols, k] (B scaled by colscale[k] and
// `scale` when asked) over k in [BK s0, BK s1) clipped to klen, double-buffered through shared
// memory (one barrier per step). Starts and ends with the operand buffers free.
template <class C, class Ctx, class T = typename C::type>
EK_FN void gemm_steps(Ctx& ctx, T* As, T* Bs, T (&acc)[C::TM][C::TN], const T* arow, const T* brow,
                      int64_t klen, bool va, bool vb, const T* colscale, bool scaled, T scale, int64_t s0,
                      int64_t s1) {
    constexpr int BM = C::BM, BN = C::BN, BK = C::BK, TM = C::TM, TN = C::TN, GM = C::GM, GN = C::GN;
    constexpr int LDA = C::LDA, LDB = C::LDB, PA = C::PA, PB = C::PB;
    const int tid = ctx.tid();
    const int tx = tid % C::TX, ty = tid / C::TX;
    const int ra = tid * PA / BK, ka = tid * PA % BK;  // this thread's staging: row, first k
    const int rb = tid * PB / BK, kb = tid * PB % BK;
    const bool rescale = brow != nullptr && (colscale != nullptr || scaled);
    T sa[PA], sb[PB];
    auto fetch = [&](int64_t s) {  // global -> registers
        const int64_t k = s * BK;
        load_run<PA>(arow, k + ka, klen, va, sa);
        load_run<PB>(brow, k + kb, klen, vb, sb);
        if (rescale) {
            EK_UNROLL
            for (int i = 0; i < PB; ++i) {
                const int64_t kk = k + kb + i;
                if (kk < klen) {  // as the CPU packs it: (b * colscale) * scale
                    T v = sb[i];
                    if (colscale != nullptr) v = mul_rn(v, colscale[kk]);
                    if (scaled) v = mul_rn(v, scale);
                    sb[i] = v;
                }
            }
        }
    };
    auto stash = [&](int buf) {  // registers -> shared memory, transposed
        T* as = As + buf * BK * LDA;
        T* bs = Bs + buf * BK * LDB;
        EK_UNROLL
        for (int i = 0; i < PA; ++i) as[(ka + i) * LDA + ra] = sa[i];
        EK_UNROLL
        for (int i = 0; i < PB; ++i) bs[(kb + i) * LDB + rb] = sb[i];
    };
    if (s0 >= s1) return;
    fetch(s0);
    stash(0);
    ctx.sync();
    for (int64_t s = s0; s < s1; ++s) {
        const int buf = int((s - s0) & 1);
        const bool more = s + 1 < s1;
        if (more) fetch(s + 1);
        const T* as = As + buf * BK * LDA;
        const T* bs = Bs + buf * BK * LDB;
        EK_KK_UNROLL
        for (int kk = 0; kk < BK; ++kk) {
            T af[TM], bf[TN];
            load_n<GM>(as + kk * LDA + ty * GM, af);
            load_n<GM>(as + kk * LDA + BM / 2 + ty * GM, af + GM);
            load_n<GN>(bs + kk * LDB + tx * GN, bf);
            load_n<GN>(bs + kk * LDB + BN / 2 + tx * GN, bf + GN);
            EK_UNROLL
            for (int i = 0; i < TM; ++i)
                EK_UNROLL
                for (int j = 0; j < TN; ++j) acc[i][j] += af[i] * bf[j];
        }
        if (more) stash(buf ^ 1);
        ctx.sync();
    }
}

template <class C, class Ctx>
EK_FN void gemm_body(Ctx& ctx, unsigned char* smem, const GemmParams<typename C::type>& p) {
    using T = typename C::type;
    constexpr int BM = C::BM, BN = C::BN, BK = C::BK, TM = C::TM, TN = C::TN, GM = C::GM, GN = C::GN;
    constexpr int LDA = C::LDA, PA = C::PA, PB = C::PB, KC = C::KC, PX = C::PX;
    T* As = reinterpret_cast<T*>(smem);  // [2][BK][LDA]
    T* Bs = As + 2 * BK * LDA;           // [2][BK][LDB]
    const int tid = ctx.tid();
    const int tx = tid % C::TX, ty = tid / C::TX;
    const int ra = tid * PA / BK;  // the operand rows this thread stages (see gemm_steps)
    const int rb = tid * PB / BK;
    const bool grouped = p.seg_start != nullptr;
    const int64_t row_tiles = grouped ? int64_t(p.tile_start[p.ngroups]) : p.tiles_m;
    const int64_t per_split = row_tiles * p.tiles_n;
    const int64_t work = per_split * p.splits;

    for (int64_t w = ctx.block(); w < work; w += ctx.nblocks()) {
        const int64_t split = w / per_split;
        const int64_t rem = w - split * per_split;
        int64_t tn, row0, row_end, adapter = -1;
        if (grouped) {
            const int64_t gt = rem / p.tiles_n;
            tn = rem - gt * p.tiles_n;
            int64_t lo = 0, hi = p.ngroups;  // the group holding row tile gt
            while (hi - lo > 1) {
                const int64_t mid = (lo + hi) / 2;
                if (int64_t(p.tile_start[mid]) <= gt) lo = mid; else hi = mid;
            }
            row0 = int64_t(p.seg_start[lo]) + (gt - int64_t(p.tile_start[lo])) * BM;
            row_end = min64(row0 + BM, int64_t(p.seg_start[lo + 1]));
            adapter = lo - 1;
        } else {
            constexpr int64_t kGroup = 8;  // row tiles per L2 group
            const int64_t width = kGroup * p.tiles_n;
            const int64_t grp = rem / width;
            const int64_t first = grp * kGroup;
            const int64_t gsize = min64(p.tiles_m - first, kGroup);
            const int64_t in = rem - grp * width;
            const int64_t tm = first + in % gsize;
            tn = in / gsize;
            row0 = tm * BM;
            row_end = min64(row0 + BM, p.M);
        }
        const int64_t col0 = tn * BN;
        const bool seg1 = p.b1 != nullptr && p.k1 > 0 && !(p.b1_gstride != 0 && adapter < 0);
        const bool seg2 = p.a2 != nullptr && p.k2 > 0 && !(grouped && adapter < 0);
        const int64_t n1 = seg1 ? (p.k1 + BK - 1) / BK : 0;
        const int64_t n2 = seg2 ? (p.k2 + BK - 1) / BK : 0;
        const int64_t per = (n1 + n2 + p.splits - 1) / p.splits;
        const int64_t s_begin = min64(split * per, n1 + n2);
        const int64_t s_end = min64(s_begin + per, n1 + n2);

        const T* a1row = nullptr;
        const T* a2row = nullptr;
        const T* b1row = nullptr;
        const T* b2row = nullptr;
        if (row0 + ra < row_end) {
            const int64_t lr = row0 + ra;
            if (seg1) a1row = p.a1 + (p.a1_rows ? p.a1_rows[lr] : lr) * p.lda1;
            if (seg2) a2row = p.a2 + lr * p.lda2;
        }
        if (col0 + rb < p.N) {
            const int64_t n = col0 + rb;
            if (seg1) b1row = p.b1 + (p.b1_gstride ? adapter * p.b1_gstride : 0) + n * p.ldb1;
            if (seg2) b2row = p.b2 + (grouped ? adapter * p.b2_gstride : 0) + n * p.ldb2;
        }
        T scale = T(1);
        if (p.scale_mode == 1) scale = p.scale2;
        else if (p.scale_mode == 2 && adapter >= 0) scale = p.scales2[adapter];

        T acc[TM][TN];
        EK_UNROLL
        for (int i = 0; i < TM; ++i)
            EK_UNROLL
            for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
        // Segment 1 steps [0, n1), segment 2 steps [n1, n1 + n2) of this split's range.
        if (s_begin < n1)
            gemm_steps<C, Ctx, T>(ctx, As, Bs, acc, a1row, b1row, p.k1, p.va1, p.vb1, nullptr, false, T(1),
                          s_begin, min64(s_end, n1));
        if (s_end > n1)
            gemm_steps<C, Ctx, T>(ctx, As, Bs, acc, a2row, b2row, p.k2, p.va2, p.vb2, p.colscale2,
                          p.scale_mode != 0, scale, (s_begin > n1 ? s_begin : n1) - n1, s_end - n1);

        if (p.sp_indptr != nullptr && p.k1 > 0) {
            // SpMM: acc[i][j] += sum over S's row (column j of C) of value * A1[row i, index], the A1
            // row tile staged KC columns at a time. Per column a cursor into the CSR arrays and the
            // (index, value) it points at, loaded one step ahead, so no load waits inside a chunk's
            // loop; the next x chunk is loaded into registers before the current one is used.
            int32_t cur[TN], end[TN], nc[TN];
            T nv[TN];
            constexpr int32_t kDone = 0x7FFFFFFF;
            EK_UNROLL
            for (int j = 0; j < TN; ++j) {
                const int64_t n = col0 + (j < GN ? tx * GN + j : BN / 2 + tx * GN + j - GN);
                int64_t b0 = 0, b1 = 0;
                if (n < p.N) {
                    b0 = min64(p.sp_indptr[n] < 0 ? 0 : p.sp_indptr[n], p.sp_nnz);
                    b1 = min64(p.sp_indptr[n + 1] < b0 ? b0 : p.sp_indptr[n + 1], p.sp_nnz);
                }
                cur[j] = int32_t(b0);
                end[j] = int32_t(b1);
                nc[j] = b0 < b1 ? p.sp_indices[b0] : kDone;
                nv[j] = b0 < b1 ? p.sp_values[b0] : T(0);
            }
            const int rx = tid * PX / KC, kx = tid * PX % KC;
            const T* xrow = nullptr;
            if (row0 + rx < row_end) {
                const int64_t lr = row0 + rx;
                xrow = p.a1 + (p.a1_rows ? p.a1_rows[lr] : lr) * p.lda1;
            }
            T* xs = As;  // [KC][LDA], over the operand buffers (free: gemm_steps ends synchronised)
            T xv[PX];
            load_run<PX>(xrow, kx, p.k1, p.va1, xv);
            for (int64_t k0 = 0; k0 < p.k1; k0 += KC) {
                EK_UNROLL
                for (int i = 0; i < PX; ++i) xs[(kx + i) * LDA + rx] = xv[i];
                ctx.sync();
                if (k0 + KC < p.k1) load_run<PX>(xrow, k0 + KC + kx, p.k1, p.va1, xv);
                const int64_t k1 = k0 + KC;
                EK_UNROLL
                for (int j = 0; j < TN; ++j) {
                    while (nc[j] < k1) {  // kDone never is (k1 < 2^31 - KC, checked on the host)
                        if (nc[j] >= k0) {  // entries out of order are skipped
                            T af[TM];
                            load_n<GM>(xs + (nc[j] - k0) * LDA + ty * GM, af);
                            load_n<GM>(xs + (nc[j] - k0) * LDA + BM / 2 + ty * GM, af + GM);
                            EK_UNROLL
                            for (int i = 0; i < TM; ++i) acc[i][j] += nv[j] * af[i];
                        }
                        const int32_t q = ++cur[j];
                        nc[j] = q < end[j] ? p.sp_indices[q] : kDone;
                        nv[j] = q < end[j] ? p.sp_values[q] : T(0);
                    }
                }
                ctx.sync();  // the chunk is consumed: the next one may overwrite it
            }
        }

        // Epilogue: bias and the one write of the tile (or its partial sums).
        const bool to_part = p.splits > 1;
        EK_UNROLL
        for (int i = 0; i < TM; ++i) {
            const int64_t lr = row0 + (i < GM ? ty * GM + i : BM / 2 + ty * GM + i - GM);
            if (lr >= row_end) continue;
            T* dst = to_part ? p.part + (split * p.M + lr) * p.N
                             : p.c + (p.c_rows ? p.c_rows[lr] : lr) * p.ldc;
            const bool vec = to_part ? p.vpart : p.vc;
            EK_UNROLL
            for (int h = 0; h < 2; ++h) {
                const int64_t c0 = col0 + h * (BN / 2) + tx * GN;
                T v[GN];
                EK_UNROLL
                for (int j = 0; j < GN; ++j) {
                    T s = acc[i][h * GN + j];
                    if (!to_part && p.bias != nullptr && c0 + j < p.N) s = s + p.bias[c0 + j];
                    v[j] = s;
                }
                if (vec && c0 + GN <= p.N) {
                    store_n<GN>(dst + c0, v);
                } else {
                    EK_UNROLL
                    for (int j = 0; j < GN; ++j)
                        if (c0 + j < p.N) dst[c0 + j] = v[j];
                }
            }
        }
    }
}

// ---- split-K reduction: C = sum of the parts, in order, + bias ----------------------------------

template <class T>
struct ReduceParams {
    const T* part;
    int64_t splits, M, N;
    const T* bias;
    T* c;
    int64_t ldc;
    const int64_t* c_rows;
    const unsigned long long* from;  // first logical row to write (null: 0)
};

template <class Ctx, class T>
EK_FN void reduce_body(Ctx& ctx, const ReduceParams<T>& p) {
    const int64_t total = p.M * p.N;
    const int64_t first = p.from ? int64_t(*p.from) * p.N : 0;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = first + ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        T s = p.part[e];
        for (int64_t q = 1; q < p.splits; ++q) s = s + p.part[q * total + e];
        const int64_t r = e / p.N, n = e - r * p.N;
        if (p.bias) s = s + p.bias[n];
        p.c[(p.c_rows ? p.c_rows[r] : r) * p.ldc + n] = s;
    }
}

// ---- multi-adapter segments: counting sort of the rows by adapter on the device ------------------
// Group g = 0 holds the rows without an adapter (id outside [0, nad)), group g = q + 1 adapter q.
// The order inside a group depends on the scheduling of the atomics, but every row's result is
// computed from its own values in a fixed order wherever it lands, so results are deterministic.

struct SegParams {
    const int64_t* ids64;
    const int32_t* ids32;
    int64_t M, nad;
    unsigned long long* counts;        // nad + 1, zeroed
    unsigned long long* seg_start;     // nad + 2
    unsigned long long* tiles_main;    // nad + 2: row tiles of the output GEMM, per group
    unsigned long long* tiles_shrink;  // nad + 2: row tiles of the shrink GEMM (none for group 0)
    unsigned long long* cursor;        // nad + 1
    int64_t* order;                    // M: logical row -> row of x / y
    int64_t bm_main, bm_shrink;
};

EK_FN int64_t seg_group(const SegParams& p, int64_t i) {
    const int64_t id = p.ids64 ? p.ids64[i] : int64_t(p.ids32[i]);
    return (id >= 0 && id < p.nad) ? id + 1 : 0;
}

template <class Ctx>
EK_FN void seg_count_body(Ctx& ctx, const SegParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t i = ctx.block() * ctx.nthreads() + ctx.tid(); i < p.M; i += stride)
        atomic_add_u64(&p.counts[seg_group(p, i)], 1ull);
}

// One block: exclusive scans of the counts and of the tile counts (chunk per thread, then a serial
// scan of the nthreads chunk sums).
template <class Ctx>
EK_FN void seg_scan_body(Ctx& ctx, unsigned char* smem, const SegParams& p) {
    unsigned long long* sums = reinterpret_cast<unsigned long long*>(smem);  // [3][nthreads]
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t G = p.nad + 1;
    const int64_t chunk = (G + nt - 1) / nt;
    const int64_t g0 = min64(G, tid * chunk), g1 = min64(G, g0 + chunk);
    unsigned long long s0 = 0, s1 = 0, s2 = 0;
    for (int64_t g = g0; g < g1; ++g) {
        const unsigned long long c = p.counts[g];
        s0 += c;
        s1 += (c + p.bm_main - 1) / p.bm_main;
        s2 += g == 0 ? 0 : (c + p.bm_shrink - 1) / p.bm_shrink;
    }
    sums[tid] = s0;
    sums[nt + tid] = s1;
    sums[2 * nt + tid] = s2;
    ctx.sync();
    if (tid == 0) {
        unsigned long long o0 = 0, o1 = 0, o2 = 0;
        for (int t = 0; t < nt; ++t) {
            const unsigned long long a = sums[t], b = sums[nt + t], c = sums[2 * nt + t];
            sums[t] = o0;
            sums[nt + t] = o1;
            sums[2 * nt + t] = o2;
            o0 += a;
            o1 += b;
            o2 += c;
        }
        p.seg_start[G] = o0;
        p.tiles_main[G] = o1;
        p.tiles_shrink[G] = o2;
    }
    ctx.sync();
    unsigned long long o0 = sums[tid], o1 = sums[nt + tid], o2 = sums[2 * nt + tid];
    for (int64_t g = g0; g < g1; ++g) {
        const unsigned long long c = p.counts[g];
        p.seg_start[g] = o0;
        p.cursor[g] = o0;
        p.tiles_main[g] = o1;
        p.tiles_shrink[g] = o2;
        o0 += c;
        o1 += (c + p.bm_main - 1) / p.bm_main;
        o2 += g == 0 ? 0 : (c + p.bm_shrink - 1) / p.bm_shrink;
    }
}

template <class Ctx>
EK_FN void seg_scatter_body(Ctx& ctx, const SegParams& p) {
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t i = ctx.block() * ctx.nthreads() + ctx.tid(); i < p.M; i += stride)
        p.order[atomic_add_u64(&p.cursor[seg_group(p, i)], 1ull)] = i;
}

// ---- kernels (tags for Exec::launch) ---------------------------------------------------------------

template <class C>
struct GemmKernel {
    static constexpr int kMaxThreads = C::THREADS;
    static constexpr int kMinBlocks = 2;  // 128 registers a thread; see EK_KK_UNROLL
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const GemmParams<typename C::type>& p) {
        gemm_body<C>(ctx, smem, p);
    }
};
struct ReduceKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx, class T>
    static EK_FN void body(Ctx& ctx, unsigned char*, const ReduceParams<T>& p) { reduce_body(ctx, p); }
};
EK_KERNEL(SegCountKernel, SegParams, seg_count_body(ctx, p);)
EK_KERNEL(SegScanKernel, SegParams, seg_scan_body(ctx, smem, p);)
EK_KERNEL(SegScatterKernel, SegParams, seg_scatter_body(ctx, p);)

// ---- orchestration (shared by the CUDA launchers and the host emulator) -------------------------

constexpr int64_t kMinSplitSteps = 16;  // k-steps (of BK) per split-K part at least
constexpr int64_t kMaxSplits = 64;
constexpr int64_t kBlocksPerSm = 8;     // grid cap of the GEMM (grid-stride beyond)

inline int64_t auto_splits(int64_t tiles, int64_t steps, int sms) {
    const int64_t target = 2 * int64_t(std::max(1, sms));
    if (tiles >= target || steps < 2 * kMinSplitSteps) return 1;
    return std::max<int64_t>(1, std::min({ceil_div(target, tiles), steps / kMinSplitSteps, kMaxSplits}));
}

template <class C, class Exec, class T>
void run_gemm(Exec& ex, GemmParams<T> p, int splits) {
    p.tiles_m = ceil_div(p.M, C::BM);
    p.tiles_n = ceil_div(p.N, C::BN);
    const bool grouped = p.seg_start != nullptr;
    // Grouped: each group adds at most one partial row tile.
    const int64_t row_tiles = grouped ? p.tiles_m + p.ngroups : p.tiles_m;
    const int64_t steps = (p.b1 && p.k1 > 0 ? ceil_div(p.k1, C::BK) : 0) +
                          (p.a2 && p.k2 > 0 ? ceil_div(p.k2, C::BK) : 0);
    int64_t s = splits > 0 ? splits : auto_splits(row_tiles * p.tiles_n, steps, ex.sm_count());
    s = std::min<int64_t>(s, std::max<int64_t>(1, steps));
    if (p.sp_indptr != nullptr) s = 1;
    p.splits = int(s);
    constexpr int64_t V = 16 / int64_t(sizeof(T));
    p.va1 = aligned_to(p.a1, 16) && p.lda1 % V == 0;
    p.vb1 = aligned_to(p.b1, 16) && p.ldb1 % V == 0 && p.b1_gstride % V == 0;
    p.va2 = aligned_to(p.a2, 16) && p.lda2 % V == 0;
    p.vb2 = aligned_to(p.b2, 16) && p.ldb2 % V == 0 && p.b2_gstride % V == 0;
    p.vc = aligned_to(p.c, 16) && p.ldc % V == 0;
    Scratch<Exec> part(ex, s > 1 ? size_t(s) * size_t(p.M) * size_t(p.N) * sizeof(T) : 0);
    p.part = part.template as<T>();
    p.vpart = aligned_to(p.part, 16) && p.N % V == 0;
    const int64_t sms = std::max(1, ex.sm_count());
    const int64_t work = row_tiles * p.tiles_n * s;
    ex.template launch<GemmKernel<C>>(std::max<int64_t>(1, std::min(work, sms * kBlocksPerSm)), C::THREADS,
                                      C::SMEM_BYTES, p);
    if (s > 1) {
        const ReduceParams<T> rp{p.part, s, p.M, p.N, p.bias, p.c, p.ldc, p.c_rows, p.reduce_from};
        ex.template launch<ReduceKernel>(grid_for(p.M * p.N, 256 * 4, int(sms)), 256, 0, rp);
    }
}

// The shrink GEMM (N = rank): narrow tiles unless the rank is large.
template <class Exec, class T>
void gemm_shrink(Exec& ex, const GemmParams<T>& p, const LowrankOptions& o) {
    const int tile = o.shrink_tile ? o.shrink_tile : (p.N <= 64 ? 2 : 1);
    if (tile == 2) run_gemm<typename Tiles<T>::Narrow>(ex, p, o.shrink_splits);
    else run_gemm<typename Tiles<T>::Wide>(ex, p, o.shrink_splits);
}

// The output GEMM: 32-row tiles when row blocks are short (decode, small adapter segments).
template <class Exec, class T>
void gemm_main(Exec& ex, const GemmParams<T>& p, const LowrankOptions& o, int64_t rows_per_block) {
    const int tile = o.main_tile ? o.main_tile : (rows_per_block <= 64 ? 2 : 1);
    if (tile == 2) run_gemm<typename Tiles<T>::Small>(ex, p, o.main_splits);
    else run_gemm<typename Tiles<T>::Wide>(ex, p, o.main_splits);
}

inline void check_options(const LowrankOptions& o) {
    require_arg(o.shrink_tile >= 0 && o.shrink_tile <= 2, "shrink_tile must be 0, 1 or 2");
    require_arg(o.main_tile >= 0 && o.main_tile <= 2, "main_tile must be 0, 1 or 2");
    require_arg(o.shrink_splits >= 0 && o.shrink_splits <= 1024, "shrink_splits must be in [0, 1024]");
    require_arg(o.main_splits >= 0 && o.main_splits <= 1024, "main_splits must be in [0, 1024]");
}

inline void check_dims(int64_t M, int64_t K, int64_t N, int64_t r, const LowrankOptions& o) {
    require_arg(M >= 0 && K >= 0 && N >= 0 && r >= 0, "lowrank: negative shape");
    check_options(o);
}

// t = x a^T (M x r) into scratch-owned `t`.
template <class Exec, class T>
void run_shrink(Exec& ex, const T* x, int64_t M, int64_t K, const T* a, int64_t r, T* t,
                const LowrankOptions& o) {
    GemmParams<T> s;
    s.M = M;
    s.N = r;
    s.a1 = x;
    s.lda1 = K;
    s.b1 = a;
    s.ldb1 = K;
    s.k1 = K;
    s.c = t;
    s.ldc = r;
    gemm_shrink(ex, s, o);
}

template <class Exec, class T>
void run_lora(Exec& ex, const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
              const T* b, double scale, const T* bias, T* y, const LowrankOptions& o) {
    check_dims(M, K, N, r, o);
    if (M == 0 || N == 0) return;
    Scratch<Exec> tbuf(ex, size_t(M) * size_t(r) * sizeof(T));
    T* t = tbuf.template as<T>();
    if (r > 0) run_shrink(ex, x, M, K, a, r, t, o);
    GemmParams<T> m;
    m.M = M;
    m.N = N;
    m.a1 = x;
    m.lda1 = K;
    m.b1 = w;
    m.ldb1 = K;
    m.k1 = K;
    m.a2 = r > 0 ? t : nullptr;
    m.lda2 = r;
    m.b2 = b;
    m.ldb2 = r;
    m.k2 = r;
    m.scale_mode = 1;
    m.scale2 = T(scale);
    m.bias = bias;
    m.c = y;
    m.ldc = N;
    gemm_main(ex, m, o, M);
}

template <class Exec, class T>
void run_lowrank(Exec& ex, const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                 const T* s, const T* bias, T* y, const LowrankOptions& o) {
    check_dims(M, K, N, r, o);
    if (M == 0 || N == 0) return;
    Scratch<Exec> tbuf(ex, size_t(M) * size_t(r) * sizeof(T));
    T* t = tbuf.template as<T>();
    if (r > 0) run_shrink(ex, x, M, K, v, r, t, o);
    GemmParams<T> m;
    m.M = M;
    m.N = N;
    m.a2 = r > 0 ? t : nullptr;
    m.lda2 = r;
    m.b2 = u;
    m.ldb2 = r;
    m.k2 = r;
    m.colscale2 = s;
    m.bias = bias;
    m.c = y;
    m.ldc = N;
    gemm_main(ex, m, o, M);
}

template <class Exec, class T>
void run_sparse(Exec& ex, const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a, int64_t r,
                const int64_t* indptr, const int32_t* indices, const T* values, int64_t nnz,
                const T* bias, T* y, const LowrankOptions& o) {
    check_dims(M, K, N, r, o);
    require_arg(nnz >= 0, "sparse: negative number of non-zeros");
    require_arg(nnz < (int64_t(1) << 31) - 1 && K < (int64_t(1) << 31) - 256,
                "sparse: the CUDA kernel needs fewer than 2^31 - 1 non-zeros and in_features < 2^31 - 256");
    if (M == 0 || N == 0) return;
    Scratch<Exec> tbuf(ex, size_t(M) * size_t(r) * sizeof(T));
    T* t = tbuf.template as<T>();
    if (r > 0) run_shrink(ex, x, M, K, a, r, t, o);
    GemmParams<T> m;
    m.M = M;
    m.N = N;
    m.a1 = x;  // the SpMM operand (no dense segment 1: b1 stays null)
    m.lda1 = K;
    m.k1 = K;
    m.a2 = r > 0 ? t : nullptr;
    m.lda2 = r;
    m.b2 = b;
    m.ldb2 = r;
    m.k2 = r;
    if (nnz > 0 && K > 0) {
        m.sp_indptr = indptr;
        m.sp_indices = indices;
        m.sp_values = values;
        m.sp_nnz = nnz;
    }
    m.bias = bias;
    m.c = y;
    m.ldc = N;
    gemm_main(ex, m, o, M);
}

template <class Exec, class T>
void run_multi(Exec& ex, const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t nad,
               int64_t r, const T* b, const int64_t* ids64, const int32_t* ids32, const T* scales,
               double scale_value, const T* bias, T* y, const LowrankOptions& o) {
    check_dims(M, K, N, r, o);
    require_arg(nad >= 0, "multi_lora: negative number of adapters");
    if (M == 0 || N == 0) return;
    require_arg(ids64 != nullptr || ids32 != nullptr, "multi_lora: adapter ids missing");
    const int64_t G = nad + 1;
    // Tile choices first: the scan counts row tiles of the tiles actually used.
    const int64_t rows_per_group = ceil_div(M, std::min(G, M));
    const int main_tile = o.main_tile ? o.main_tile : (rows_per_group <= 64 ? 2 : 1);
    const int shrink_tile = o.shrink_tile ? o.shrink_tile : (r <= 64 ? 2 : 1);
    LowrankOptions oo = o;
    oo.main_tile = main_tile;
    oo.shrink_tile = shrink_tile;
    const int64_t bm_main = main_tile == 2 ? Tiles<T>::Small::BM : Tiles<T>::Wide::BM;
    const int64_t bm_shrink = shrink_tile == 2 ? Tiles<T>::Narrow::BM : Tiles<T>::Wide::BM;

    const size_t nseg = size_t(G) * 5 + 3;  // counts G, seg_start G+1, tiles x2 G+1, cursor G
    Scratch<Exec> segs(ex, nseg * sizeof(unsigned long long));
    Scratch<Exec> order_buf(ex, size_t(M) * sizeof(int64_t));
    SegParams sp;
    sp.ids64 = ids64;
    sp.ids32 = ids32;
    sp.M = M;
    sp.nad = nad;
    sp.counts = segs.template as<unsigned long long>();
    sp.seg_start = sp.counts + G;
    sp.tiles_main = sp.seg_start + G + 1;
    sp.tiles_shrink = sp.tiles_main + G + 1;
    sp.cursor = sp.tiles_shrink + G + 1;
    sp.order = order_buf.template as<int64_t>();
    sp.bm_main = bm_main;
    sp.bm_shrink = bm_shrink;
    const int sms = std::max(1, ex.sm_count());
    ex.zero(sp.counts, size_t(G) * sizeof(unsigned long long));
    ex.template launch<SegCountKernel>(grid_for(M, 256, sms), 256, 0, sp);
    ex.template launch<SegScanKernel>(1, 256, 3 * 256 * sizeof(unsigned long long), sp);
    ex.template launch<SegScatterKernel>(grid_for(M, 256, sms), 256, 0, sp);

    Scratch<Exec> tbuf(ex, size_t(M) * size_t(r) * sizeof(T));
    T* t = tbuf.template as<T>();
    if (r > 0 && nad > 0) {
        GemmParams<T> s;
        s.M = M;
        s.N = r;
        s.a1 = x;
        s.lda1 = K;
        s.a1_rows = sp.order;
        s.b1 = a;
        s.ldb1 = K;
        s.b1_gstride = r * K;
        s.k1 = K;
        s.seg_start = sp.seg_start;
        s.tile_start = sp.tiles_shrink;
        s.ngroups = G;
        s.c = t;
        s.ldc = r;
        s.reduce_from = sp.seg_start + 1;  // t rows of group 0 are never read
        gemm_shrink(ex, s, oo);
    }
    GemmParams<T> m;
    m.M = M;
    m.N = N;
    m.a1 = x;
    m.lda1 = K;
    m.a1_rows = sp.order;
    m.b1 = w;
    m.ldb1 = K;
    m.k1 = K;
    m.a2 = (r > 0 && nad > 0) ? t : nullptr;
    m.lda2 = r;
    m.b2 = b;
    m.ldb2 = r;
    m.b2_gstride = N * r;
    m.k2 = r;
    m.scale_mode = scales ? 2 : 1;
    m.scales2 = scales;
    m.scale2 = T(scale_value);
    m.seg_start = sp.seg_start;
    m.tile_start = sp.tiles_main;
    m.ngroups = G;
    m.bias = bias;
    m.c = y;
    m.ldc = N;
    m.c_rows = sp.order;
    gemm_main(ex, m, oo, rows_per_group);
}

}  // namespace embkern::cuda::lowrank
