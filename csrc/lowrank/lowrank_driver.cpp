// lowrank drivers: BLIS-style blocking and task splitting around the current tier's register-tile
// GEMM and SpMM kernels (baseline target).
//
// Dense GEMM choice. Every product of the family runs on embkern's own packed AVX2/FMA
// microkernel (6 x 16 tile): one blocked pass in which the low-rank intermediate t = x a^T
// (M x r) stays in L1/L2 next to the x block it came from and the output block is written once,
// with the low-rank update added while the tile is in registers, on embkern's own threads, with
// results independent of the thread count. On the skinny shapes of low-rank layers it beats
// OpenBLAS (whose copy routines and fixed blocking are tuned for square GEMMs). The one dense,
// square GEMM -- lora_linear's base weight x w^T -- is different: there our kernel measured
// 5-20 % behind OpenBLAS's Haswell sgemm on this Zen 3 machine (2048 x 4096 x 4096, 1 thread),
// so when scipy is installed the Python layer passes scipy's own BLAS (cython_blas ?gemm, the
// scipy-openblas32 build numpy and scipy ship) and lora_linear_blas lets it add x w^T into the
// output our fused kernel wrote (beta = 1: one extra read of y), in fixed blocks on
// embkern's threads with the BLAS held at one thread (threadpoolctl). Without scipy/threadpoolctl, or for small layers,
// lora_linear is fused end to end on our kernel.
//
// Stores: results are written with ordinary stores. Non-temporal stores of the final output (an
// earlier choice, for outputs of 32 MiB and more) measured 4-20 % slower at 1 and 2 threads once
// outputs came from the buffer pool (common/huge_alloc.hpp): six row streams of 64-byte
// pieces drain poorly through the write-combining buffers, where cached stores overlap the
// write-back with the next tiles' FMAs.
//
// Blocking (per dtype): row blocks of up to MB rows are the parallel tasks; the inner dimension
// is cut into KC-long blocks; for each block the rows' A panel (MB x KC) is packed once
// [tile][k][6] and swept against every packed B panel [panel][k][NR], except when B is
// rank-sized (a block that stays in L2): then the tiles read their A rows in place (gemm_rows).
// B operands (weights, factors) are packed once per call, in parallel, and shared by all tasks;
// their buffers come from the buffer pool, so a repeated call does not fault in fresh pages. A
// row block's result is the same whatever MB is, so thread count never changes a bit of the
// output.
#include "lowrank/lowrank.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/dispatch.hpp"
#include "common/huge_alloc.hpp"
#include "common/parallel.hpp"

namespace embkern::lowrank {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class T>
struct Kern;

template <>
struct Kern<float> {
    static constexpr int64_t NR = kLrNR32, SW = kLrSW32, MB = 144, KC = 512;
    static auto gemm() { return kernels().lowrank.gemm_f32; }
    static auto gemm_rows() { return kernels().lowrank.gemm_rows_f32; }
    static auto pack_b() { return kernels().lowrank.pack_b_f32; }
    static auto spmm() { return kernels().lowrank.spmm_f32; }
};

template <>
struct Kern<double> {
    static constexpr int64_t NR = kLrNR64, SW = kLrSW64, MB = 72, KC = 256;
    static auto gemm() { return kernels().lowrank.gemm_f64; }
    static auto gemm_rows() { return kernels().lowrank.gemm_rows_f64; }
    static auto pack_b() { return kernels().lowrank.pack_b_f64; }
    static auto spmm() { return kernels().lowrank.spmm_f64; }
};

// Packed operands live in 64-byte aligned buffers (malloc's 16-byte alignment would split every
// other 32-byte panel load across two cache lines), left uninitialised: the packing routines
// write every element the kernels read, padding included.

// A packed B operand: n rows of k (row-major, as weights are stored) laid out as
// ceil(n / NR) panels [k][NR], padded with zeros.
template <class T>
struct Packed {
    HugeArray<T> own;  // the panels' storage, unless pack_into was given a place for them
    const T* base = nullptr;
    int64_t n = 0, k = 0;
    const T* panels() const { return base; }
    int64_t stride() const { return k * Kern<T>::NR; }
    static int64_t size(int64_t n, int64_t k) { return ceil_div(n, Kern<T>::NR) * k * Kern<T>::NR; }
};

template <class T>
using same_t = typename std::common_type<T>::type;  // a non-deduced T

// Packs b (n x k) into pk, in dst (Packed<T>::size(n, k) elements) when given, else in pk's own
// buffer.
template <class T>
void pack_into(Packed<T>& pk, const same_t<T>* b, int64_t n, int64_t k, const same_t<T>* colscale,
               const same_t<T>* scalar, bool parallel, T* dst = nullptr) {
    constexpr int64_t NR = Kern<T>::NR;
    const int64_t np = ceil_div(n, NR);
    pk.n = n;
    pk.k = k;
    if (!dst) {
        pk.own = HugeArray<T>(static_cast<size_t>(Packed<T>::size(n, k)));
        dst = pk.own.data();
    }
    pk.base = dst;
    auto pack = Kern<T>::pack_b();
    if (!parallel) {
        pack(b, n, k, colscale, scalar, 0, np, dst);
        return;
    }
    const int64_t chunk = std::max<int64_t>(1, ceil_div(16384, std::max<int64_t>(k, 1)));
    parallel_for(ceil_div(np, chunk), [&](int64_t t) {
        pack(b, n, k, colscale, scalar, t * chunk, std::min(np, (t + 1) * chunk), dst);
    });
}

// Packs an A block with the tier's kernel (see LowrankKernels::pack_a_*); `next` (the next
// block's length, 0 for none) is prefetched row by row: a row block reads up to MB rows that
// lie a whole row apart, more streams than the hardware prefetcher follows.
inline void pack_a(const float* const* rows, int64_t m, int64_t k0, int64_t kc, float* ap, int64_t next) {
    kernels().lowrank.pack_a_f32(rows, m, k0, kc, ap, next);
}
inline void pack_a(const double* const* rows, int64_t m, int64_t k0, int64_t kc, double* ap, int64_t next) {
    kernels().lowrank.pack_a_f64(rows, m, k0, kc, ap, next);
}

// Per-task scratch: the packed A block.
template <class T>
struct Scratch {
    HugeArray<T> ap;
    T* a_block(int64_t m, int64_t kc) {
        const size_t n = static_cast<size_t>(ceil_div(m, kLrMR) * kLrMR * kc + 8);
        if (n > ap.size()) ap = HugeArray<T>(n);
        return ap.data();
    }
};

// C rows (m of them) = [C +] A B^T [+ bias] with A given by row pointers (each K long) and B
// packed. The inner dimension is walked in KC blocks; only the last block adds the bias.
template <class T>
void product(const T* const* arows, int64_t m, const Packed<T>& b, T* const* crows, bool acc,
             const T* bias, Scratch<T>& sc) {
    const int64_t K = b.k, N = b.n;
    if (m == 0 || N == 0) return;
    if (K == 0) {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < N; ++j) {
                T v = acc ? crows[i][j] : T(0);
                crows[i][j] = bias ? v + bias[j] : v;
            }
        return;
    }
    // A small B block (a rank-sized side: the shrink x a^T, or the expand t b^T of a low rank)
    // stays in L2 while the row tiles sweep it, so each tile reads its A rows in place (L1 after
    // the first panel); packing them would be a pass over A that no FMA overlaps. In-process A/B
    // (1 thread): multi-adapter 16 x r16 20.7 -> 15.4 ms, rank-64 low-rank 107 -> 95 ms.
    const int64_t kc_rows = std::min(K, Kern<T>::KC);
    if (N * kc_rows * static_cast<int64_t>(sizeof(T)) <= kLrBlockL2Bytes) {
        auto gemm_rows = Kern<T>::gemm_rows();
        // all of B at once when it fits: one pass, no re-reads of C
        const int64_t kb = N * K * static_cast<int64_t>(sizeof(T)) <= kLrBlockL2Bytes ? K : kc_rows;
        for (int64_t k0 = 0; k0 < K; k0 += kb) {
            const int64_t kc = std::min(kb, K - k0);
            const bool last = k0 + kc >= K;
            gemm_rows(arows, m, k0, b.panels() + k0 * Kern<T>::NR, b.stride(), N, kc, crows, 0,
                      last ? bias : nullptr, acc || k0 > 0);
        }
        return;
    }
    auto gemm = Kern<T>::gemm();
    for (int64_t k0 = 0; k0 < K; k0 += Kern<T>::KC) {
        const int64_t kc = std::min(Kern<T>::KC, K - k0);
        T* ap = sc.a_block(m, kc);
        pack_a(arows, m, k0, kc, ap, std::min(Kern<T>::KC, K - k0 - kc));
        const bool last = k0 + kc >= K;
        gemm(ap, m, b.panels() + k0 * Kern<T>::NR, b.stride(), N, kc, crows, 0,
             last ? bias : nullptr, acc || k0 > 0);
    }
}

// Row-block size for M rows: at most MB, small enough that every thread gets a block,
// a multiple of `quantum`.
int64_t row_block(int64_t M, int64_t MB, int64_t quantum) {
    const int64_t threads = std::max(1, get_num_threads());
    int64_t mb = ceil_div(ceil_div(M, threads), quantum) * quantum;
    return std::max<int64_t>(quantum, std::min(mb, MB));
}

template <class T>
void row_pointers(const T* base, int64_t r0, int64_t m, int64_t ld, std::vector<const T*>& out) {
    out.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) out[i] = base + (r0 + i) * ld;
}

template <class T>
void row_pointers(T* base, int64_t r0, int64_t m, int64_t ld, std::vector<T*>& out) {
    out.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) out[i] = base + (r0 + i) * ld;
}

}  // namespace

template <class T>
void lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                 const T* b, T scale, const T* bias, T* y) {
    if (M == 0 || N == 0) return;
    Packed<T> wp, ap, bp;
    pack_into(wp, w, N, K, nullptr, nullptr, true);
    pack_into(ap, a, r, K, nullptr, nullptr, false);
    pack_into(bp, b, N, r, nullptr, &scale, true);
    const int64_t mb = row_block(M, Kern<T>::MB, kLrMR);
    auto gemm = Kern<T>::gemm();
    parallel_for(ceil_div(M, mb), [&](int64_t task) {
        const int64_t r0 = task * mb, m = std::min(mb, M - r0);
        std::vector<const T*> xr;
        std::vector<T*> yr, tr;
        std::vector<const T*> tcr;
        row_pointers(x, r0, m, K, xr);
        row_pointers(y, r0, m, N, yr);
        std::vector<T> t(static_cast<size_t>(m * r));
        row_pointers(t.data(), 0, m, r, tr);
        row_pointers(static_cast<const T*>(t.data()), 0, m, r, tcr);
        Scratch<T> sc;
        if (K == 0) {
            for (int64_t i = 0; i < m; ++i) std::fill(yr[i], yr[i] + N, T(0));
            std::fill(t.begin(), t.end(), T(0));
        }
        // One packed x block feeds both t = x a^T and y = x w^T.
        for (int64_t k0 = 0; k0 < K; k0 += Kern<T>::KC) {
            const int64_t kc = std::min(Kern<T>::KC, K - k0);
            T* apk = sc.a_block(m, kc);
            pack_a(xr.data(), m, k0, kc, apk, std::min(Kern<T>::KC, K - k0 - kc));
            const bool acc = k0 > 0;
            gemm(apk, m, ap.panels() + k0 * Kern<T>::NR, ap.stride(), r, kc, tr.data(), 0, nullptr, acc);
            gemm(apk, m, wp.panels() + k0 * Kern<T>::NR, wp.stride(), N, kc, yr.data(), 0, nullptr, acc);
        }
        // y += t (scale b)^T (+ bias) while this block is still in cache.
        product(tcr.data(), m, bp, yr.data(), true, bias, sc);
    });
}

namespace {

template <class T>
void lowrank_impl(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                  const T* s, const T* bias, T* y) {
    if (M == 0 || N == 0) return;
    Packed<T> vp, up;
    pack_into(vp, v, r, K, nullptr, nullptr, false);
    pack_into(up, u, N, r, s, nullptr, true);
    const int64_t mb = row_block(M, Kern<T>::MB, kLrMR);
    parallel_for(ceil_div(M, mb), [&](int64_t task) {
        const int64_t r0 = task * mb, m = std::min(mb, M - r0);
        std::vector<const T*> xr, tcr;
        std::vector<T*> yr, tr;
        row_pointers(x, r0, m, K, xr);
        row_pointers(y, r0, m, N, yr);
        std::vector<T> t(static_cast<size_t>(m * r));
        row_pointers(t.data(), 0, m, r, tr);
        row_pointers(static_cast<const T*>(t.data()), 0, m, r, tcr);
        Scratch<T> sc;
        product(xr.data(), m, vp, tr.data(), false, static_cast<const T*>(nullptr), sc);
        product(tcr.data(), m, up, yr.data(), false, bias, sc);
    });
}

}  // namespace

template <class T>
void lora_linear_blas(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a, int64_t r,
                      const T* b, T scale, const T* bias, T* y, const void* gemm) {
    using Gemm = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                          const T*, const int*, const T*, const int*, const T*, T*, const int*);
    if (M == 0 || N == 0) return;
    const std::vector<T> s(static_cast<size_t>(r), scale);
    lowrank_impl<T>(x, M, K, b, N, a, r, s.data(), bias, y);  // y = scale (x a^T) b^T + bias; BLAS re-reads it
    if (K == 0) return;
    // Fixed blocks of y, one single-threaded BLAS call each (the caller holds the BLAS at one
    // thread) on embkern's threads: OpenBLAS's own threading splits by thread count, which changes
    // the rounding of some entries; fixed blocks give the same bits for every thread count. Blocks
    // are wide column strips (a slice of w each, which the call packs once) before row strips (each
    // of which re-packs its whole w slice): at 2 threads, 2 strips of 2,048 columns ran 10 % faster
    // than 2 strips of 1,024 rows, each packing all of w.
    constexpr int64_t RB = 4096, CB = 2048;
    const Gemm fn = reinterpret_cast<Gemm>(const_cast<void*>(gemm));
    const int64_t ncb = ceil_div(N, CB);
    parallel_for(ceil_div(M, RB) * ncb, [&](int64_t task) {
        const int64_t r0 = task / ncb * RB, c0 = task % ncb * CB;
        const int m = static_cast<int>(std::min(CB, N - c0)), n = static_cast<int>(std::min(RB, M - r0)),
                  k = static_cast<int>(K), ldc = static_cast<int>(N);
        const T one(1);
        fn("T", "N", &m, &n, &k, &one, w + c0 * K, &k, x + r0 * K, &k, &one, y + r0 * N + c0, &ldc);
    });
}

template <class T>
void lowrank_linear(const T* x, int64_t M, int64_t K, const T* u, int64_t N, const T* v, int64_t r,
                    const T* s, const T* bias, T* y) {
    lowrank_impl<T>(x, M, K, u, N, v, r, s, bias, y);
}

template <class T>
void sparse_lowrank_linear(const T* x, int64_t M, int64_t K, const T* b, int64_t N, const T* a,
                           int64_t r, const int64_t* indptr, const int32_t* indices,
                           const T* values, const T* bias, T* y) {
    if (M == 0 || N == 0) return;
    constexpr int64_t SW = Kern<T>::SW;
    Packed<T> apk, bpk;
    pack_into(apk, a, r, K, nullptr, nullptr, false);
    pack_into(bpk, b, N, r, nullptr, nullptr, true);
    const bool has_sparse = indptr[N] > 0;
    const int64_t mb = row_block(M, Kern<T>::MB, 3 * SW);  // 3 SW = lcm(MR, SW) for both dtypes
    auto spmm = Kern<T>::spmm();
    constexpr int64_t NB = 128;  // output columns per SpMM call (an NB x SW result block)
    parallel_for(ceil_div(M, mb), [&](int64_t task) {
        const int64_t r0 = task * mb, m = std::min(mb, M - r0);
        std::vector<const T*> xr, tcr;
        std::vector<T*> yr, tr;
        row_pointers(x, r0, m, K, xr);
        row_pointers(y, r0, m, N, yr);
        std::vector<T> t(static_cast<size_t>(m * r));
        row_pointers(t.data(), 0, m, r, tr);
        row_pointers(static_cast<const T*>(t.data()), 0, m, r, tcr);
        Scratch<T> sc;
        product(xr.data(), m, apk, tr.data(), false, static_cast<const T*>(nullptr), sc);
        product(tcr.data(), m, bpk, yr.data(), false, bias, sc);
        if (!has_sparse) return;
        // y += x S^T, SW tokens at a time: the tokens' x block transposed to [K][SW] (L2), one
        // SpMM pass over S's rows, the NB x SW result added into y column block by block.
        std::vector<T> xt(static_cast<size_t>(K * SW)), out(static_cast<size_t>(NB * SW));
        for (int64_t c0 = 0; c0 < m; c0 += SW) {
            const int64_t cw = std::min(SW, m - c0);
            for (int64_t l = 0; l < SW; ++l) {
                if (l < cw) {
                    const T* src = xr[c0 + l];
                    for (int64_t k = 0; k < K; ++k) xt[k * SW + l] = src[k];
                } else {
                    for (int64_t k = 0; k < K; ++k) xt[k * SW + l] = T(0);
                }
            }
            for (int64_t n0 = 0; n0 < N; n0 += NB) {
                const int64_t n1 = std::min(N, n0 + NB);
                spmm(xt.data(), indptr, indices, values, n0, n1, out.data());
                for (int64_t l = 0; l < cw; ++l) {
                    T* dst = yr[c0 + l];
                    for (int64_t j = n0; j < n1; ++j) dst[j] = dst[j] + out[(j - n0) * SW + l];
                }
            }
        }
    });
}

template <class T>
void multi_lora_linear(const T* x, int64_t M, int64_t K, const T* w, int64_t N, const T* a,
                       int64_t nad, int64_t r, const T* b, const int64_t* ids, const T* scales,
                       const T* bias, T* y) {
    if (M == 0 || N == 0) return;
    const int64_t MB = Kern<T>::MB;
    // Phase 1: the base product (every row), or bias/zeros for rows that no adapter writes.
    if (w) {
        Packed<T> wp;
        pack_into(wp, w, N, K, nullptr, nullptr, true);
        const int64_t mb = row_block(M, MB, kLrMR);
        parallel_for(ceil_div(M, mb), [&](int64_t task) {
            const int64_t r0 = task * mb, m = std::min(mb, M - r0);
            std::vector<const T*> xr;
            std::vector<T*> yr;
            row_pointers(x, r0, m, K, xr);
            row_pointers(y, r0, m, N, yr);
            Scratch<T> sc;
            product(xr.data(), m, wp, yr.data(), false, bias, sc);
        });
    } else {
        const int64_t rows = 256;
        parallel_for(ceil_div(M, rows), [&](int64_t task) {
            for (int64_t i = task * rows; i < std::min(M, (task + 1) * rows); ++i) {
                if (ids[i] >= 0) continue;
                T* dst = y + i * N;
                if (bias) std::copy(bias, bias + N, dst);
                else std::fill(dst, dst + N, T(0));
            }
        });
    }
    // Segments: rows grouped by adapter (counting sort, stable), as Punica's SGMV takes them.
    std::vector<int64_t> start(static_cast<size_t>(nad + 1), 0);
    for (int64_t i = 0; i < M; ++i)
        if (ids[i] >= 0) ++start[ids[i] + 1];
    for (int64_t q = 0; q < nad; ++q) start[q + 1] += start[q];
    std::vector<int64_t> order(static_cast<size_t>(start[nad]));
    {
        std::vector<int64_t> pos(start.begin(), start.end() - 1);
        for (int64_t i = 0; i < M; ++i)
            if (ids[i] >= 0) order[pos[ids[i]]++] = i;
    }
    if (order.empty()) return;
    // Each used adapter's factors are packed once (its scale folded into b), all into one buffer.
    std::vector<Packed<T>> ap(static_cast<size_t>(nad)), bp(static_cast<size_t>(nad));
    std::vector<int64_t> used;
    for (int64_t q = 0; q < nad; ++q)
        if (start[q + 1] > start[q]) used.push_back(q);
    const int64_t asize = Packed<T>::size(r, K), bsize = Packed<T>::size(N, r);
    HugeArray<T> packed(static_cast<size_t>(static_cast<int64_t>(used.size()) * (asize + bsize)));
    parallel_for(static_cast<int64_t>(used.size()), [&](int64_t u) {
        const int64_t q = used[u];
        T* dst = packed.data() + u * (asize + bsize);
        pack_into(ap[q], a + q * r * K, r, K, nullptr, nullptr, false, dst);
        pack_into(bp[q], b + q * N * r, N, r, nullptr, scales ? scales + q : nullptr, false, dst + asize);
    });
    // Tasks: (adapter, chunk of up to MB of its rows).
    struct Task { int64_t q, s, m; };
    std::vector<Task> tasks;
    const int64_t threads = std::max(1, get_num_threads());
    const int64_t mb = std::max<int64_t>(kLrMR, std::min(MB, ceil_div(ceil_div(M, threads), kLrMR) * kLrMR));
    for (int64_t q : used)
        for (int64_t s = start[q]; s < start[q + 1]; s += mb)
            tasks.push_back({q, s, std::min(mb, start[q + 1] - s)});
    const bool acc = w != nullptr;
    parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t ti) {
        const Task tk = tasks[ti];
        std::vector<const T*> xr(static_cast<size_t>(tk.m)), tcr;
        std::vector<T*> yr(static_cast<size_t>(tk.m)), tr;
        for (int64_t i = 0; i < tk.m; ++i) {
            xr[i] = x + order[tk.s + i] * K;
            yr[i] = y + order[tk.s + i] * N;
        }
        std::vector<T> t(static_cast<size_t>(tk.m * r));
        row_pointers(t.data(), 0, tk.m, r, tr);
        row_pointers(static_cast<const T*>(t.data()), 0, tk.m, r, tcr);
        Scratch<T> sc;
        product(xr.data(), tk.m, ap[tk.q], tr.data(), false, static_cast<const T*>(nullptr), sc);
        product(tcr.data(), tk.m, bp[tk.q], yr.data(), acc, acc ? nullptr : bias, sc);
    });
}

#define EMBKERN_LR_INSTANTIATE(T)                                                                  \
    template void lora_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*, int64_t, \
                                 const T*, T, const T*, T*);                                       \
    template void lora_linear_blas<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*,     \
                                      int64_t, const T*, T, const T*, T*, const void*);            \
    template void lowrank_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*,       \
                                    int64_t, const T*, const T*, T*);                              \
    template void sparse_lowrank_linear<T>(const T*, int64_t, int64_t, const T*, int64_t,          \
                                           const T*, int64_t, const int64_t*, const int32_t*,      \
                                           const T*, const T*, T*);                                \
    template void multi_lora_linear<T>(const T*, int64_t, int64_t, const T*, int64_t, const T*,    \
                                       int64_t, int64_t, const T*, const int64_t*, const T*,       \
                                       const T*, T*);
EMBKERN_LR_INSTANTIATE(float)
EMBKERN_LR_INSTANTIATE(double)
#undef EMBKERN_LR_INSTANTIATE

}  // namespace embkern::lowrank
