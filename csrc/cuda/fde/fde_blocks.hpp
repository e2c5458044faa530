// MUVERA FDE GPU kernels, as block-level bodies compiled by nvcc (fde.cu) and by the host emulator
// (fde_emulator.cpp); see common/blocks.hpp for the convention and specs/fde.md for the algorithm.
//
// Goal: the same bits as the CPU backend (csrc/fde/kernel.hpp) for every configuration. The CPU
// fixes every float operation's order, so each kernel below performs the very same separately
// rounded multiplies and adds (mul_rn / add_rn / div_rn), in the same order, per output value;
// parallelism only ever runs across values that the CPU computes independently. No float atomics.
//
// Layout. Tokens x: rows x d float32; cloud c is rows begin[c] .. end[c] (ragged CSR or padded:
// padding rows are never read as points). The inner FDE of a cloud is R x B x p floats, B = 2^k,
// offset (r, b, j) = (r * B + b) * p + j; with a final projection it is count-sketched to final_dim.
//
// Launches per group of clouds (groups bound the scratch: about group_rows token rows each):
//  1. SketchKernel (k > 0): S = X . G for the group's rows, G = the d x R*k matrix of all
//     repetitions' hyperplanes. GEMM tiling: a 256-thread block owns 64 tokens x (whole
//     repetitions, <= 64 columns); d is walked in chunks of 16 staged in shared memory (transposed,
//     rows padded to 68 floats so 4-wide loads stay aligned), each thread keeps a 4 x 4 register
//     tile. Every S value is the CPU's chain ((0 + x0 g0) + x1 g1) + ... over i = 0..d-1, so the
//     sign bits agree exactly. The epilogue writes the tile to shared memory and turns each
//     (token, repetition)'s k sign bits (hyperplane 0 = most significant, strictly > 0) into the
//     partition index, the inverse Gray code (a prefix XOR), stored rep-major (coalesced).
//  2. EncodeKernel: one block per cloud (grid-stride over the group's clouds, grid capped).
//     a. Reads the cloud once: checks every value is finite (a non-finite cloud gets zeros and
//        is reported through `bad`, the CPU's ValueError) and stages it in shared memory when it
//        fits (else later reads go to global memory / L1).
//     b. Sort keys (partition << 32 | token) for all R repetitions: one segmented bitonic sort of
//        R sub-arrays in shared memory (global scratch for clouds too large for it). Equal
//        partitions keep token order, so each partition's members form a run in token order.
//     c. Walks the R x B blocks in tiles: one thread per (r, b) finds its run by binary search.
//        An empty partition of a document with fill takes the Hamming-nearest token, the smallest
//        (popcount(gray(part ^ b)), token) over the cloud (the CPU's choice): all threads search
//        together, per-thread minima over a share of the tokens combined by a 64-bit shared
//        atomicMin (candidates are unique, so the order of the atomics does not matter).
//        Then threads take (block, coordinate) items, consecutive coordinates on consecutive
//        threads (coalesced stores):
//          identity: acc = 0; acc += x[m][i] over the run in token order; documents divide by
//                    the count (float, as the CPU's counter); fill copies x[tok]; else 0.
//          AMS:      the run's raw token sums (or x[tok]) go to a shared buffer first, then each
//                    output column is its signed input coordinates summed in ascending order
//                    (the CPU's fde_project: ams_order/ams_osign/ams_start tables), / count.
//        Every inner-FDE value is written exactly once (empty partitions included).
//     d. Final projection (optional): the inner FDE goes to a per-block scratch row, then each
//        output j sums sign * inner[i] over its source coordinates in ascending i (a CSR of the
//        count sketch grouped by target: fp_order/fp_osign/fp_start), which is the order of the
//        CPU's sequential scatter out[idx[i]] += sign[i] * fde[i].
//
// Integers: 64-bit row and element offsets; token indices, run positions and table entries are
// int32 (a cloud has < 2^31 tokens, inner_dim < 2^31); partitions uint32 (k <= 30). Counts follow
// the CPU's float counter, which saturates at 2^24.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/common/blocks.hpp"
#include "cuda/fde/fde_cuda.hpp"

namespace embkern::cuda {

// ---- helpers this family needs beyond common/blocks.hpp ---------------------------------------

// Four consecutive floats from a 16-byte aligned address.
EK_FN void fde_ld4(const float* p, float* v) {
#if defined(__CUDACC__)
    const float4 a = *reinterpret_cast<const float4*>(p);
    v[0] = a.x;
    v[1] = a.y;
    v[2] = a.z;
    v[3] = a.w;
#else
    std::memcpy(v, p, 4 * sizeof(float));
#endif
}

// Partition index of k sign bits packed MSB-first: the inverse Gray code (prefix XOR).
EK_FN uint32_t fde_gray_inverse(uint32_t code) {
    code ^= code >> 1;
    code ^= code >> 2;
    code ^= code >> 4;
    code ^= code >> 8;
    code ^= code >> 16;
    return code;
}

constexpr uint32_t kTokenMask = 0xFFFFFFFFu;
constexpr float kCountCap = 16777216.0f;  // a float counter stops growing at 2^24

EK_FN float fde_count(int32_t members) {
    return members >= (1 << 24) ? kCountCap : float(members);
}

// ---- 1. sketch + partitions ------------------------------------------------------------------

constexpr int kSkTokens = 64;   // tokens per tile
constexpr int kSkCols = 64;     // at most this many columns (whole repetitions) per tile
constexpr int kSkChunk = 16;    // d values staged per step
constexpr int kSkLd = 68;       // staged row length (16-byte aligned rows)
constexpr int kSkSLd = kSkCols + 1;
constexpr int kSkThreads = 256; // 16 x 16 threads, 4 x 4 outputs each
constexpr size_t kSkSmem = (2 * kSkChunk * kSkLd + kSkTokens * kSkSLd) * sizeof(float);

struct SketchParams {
    const float* x;        // token rows (absolute)
    int64_t row0, rows;    // rows row0 .. row0 + rows of x
    int64_t d;
    const float* g;        // d x (R * k)
    int64_t reps, k;
    int64_t reps_per_tile; // floor(64 / k), capped at reps
    uint32_t* parts;       // reps x rows, rep-major: parts[r * rows + (row - row0)]
};

struct SketchKernel {
    static constexpr int kMaxThreads = kSkThreads;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const SketchParams& p) {
        float* xs = reinterpret_cast<float*>(smem);  // [chunk][token], ld kSkLd
        float* gs = xs + kSkChunk * kSkLd;            // [chunk][column], ld kSkLd
        float* ss = gs + kSkChunk * kSkLd;            // [token][column], ld kSkSLd
        const int tid = ctx.tid(), tx = tid % 16, ty = tid / 16;
        const int64_t M = p.reps * p.k;
        const int64_t rep_tiles = (p.reps + p.reps_per_tile - 1) / p.reps_per_tile;
        const int64_t tiles = (p.rows + kSkTokens - 1) / kSkTokens * rep_tiles;
        for (int64_t tile = ctx.block(); tile < tiles; tile += ctx.nblocks()) {
            const int64_t t0 = tile / rep_tiles * kSkTokens;
            const int64_t rep0 = tile % rep_tiles * p.reps_per_tile;
            const int64_t nrep = min64(p.reps_per_tile, p.reps - rep0);
            const int64_t col0 = rep0 * p.k;
            const int ncols = int(nrep * p.k);
            float acc[4][4];
            EK_UNROLL
            for (int a = 0; a < 4; ++a)
                EK_UNROLL
                for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
            for (int64_t i0 = 0; i0 < p.d; i0 += kSkChunk) {
                const int kc = int(min64(kSkChunk, p.d - i0));
                for (int e = tid; e < kSkTokens * kSkChunk; e += kSkThreads) {
                    const int r = e / kSkChunk, kk = e % kSkChunk;
                    const int64_t row = t0 + r;
                    xs[kk * kSkLd + r] = (row < p.rows && kk < kc) ? p.x[(p.row0 + row) * p.d + i0 + kk] : 0.0f;
                }
                for (int e = tid; e < kSkChunk * kSkCols; e += kSkThreads) {
                    const int kk = e / kSkCols, c = e % kSkCols;
                    gs[kk * kSkLd + c] = (kk < kc && c < ncols) ? p.g[(i0 + kk) * M + col0 + c] : 0.0f;
                }
                ctx.sync();
                for (int kk = 0; kk < kc; ++kk) {
                    float xv[4], gv[4];
                    fde_ld4(xs + kk * kSkLd + 4 * ty, xv);
                    fde_ld4(gs + kk * kSkLd + 4 * tx, gv);
                    EK_UNROLL
                    for (int a = 0; a < 4; ++a)
                        EK_UNROLL
                        for (int b = 0; b < 4; ++b) acc[a][b] = add_rn(acc[a][b], mul_rn(xv[a], gv[b]));
                }
                ctx.sync();
            }
            EK_UNROLL
            for (int a = 0; a < 4; ++a)
                EK_UNROLL
                for (int b = 0; b < 4; ++b) ss[(4 * ty + a) * kSkSLd + 4 * tx + b] = acc[a][b];
            ctx.sync();
            for (int e = tid; e < kSkTokens * int(nrep); e += kSkThreads) {
                const int r = e % kSkTokens, rl = e / kSkTokens;
                const int64_t row = t0 + r;
                if (row >= p.rows) continue;
                uint32_t code = 0;
                const float* s = ss + r * kSkSLd + rl * int(p.k);
                for (int j = 0; j < int(p.k); ++j) code = (code << 1) | (s[j] > 0.0f ? 1u : 0u);
                p.parts[(rep0 + rl) * p.rows + row] = fde_gray_inverse(code);
            }
            ctx.sync();
        }
    }
};

// ---- 2. per-cloud encoding -------------------------------------------------------------------

struct EncodeParams {
    const float* x;
    int64_t d;
    const int64_t* begin;  // per cloud (absolute rows of x)
    const int64_t* end;
    int64_t c0, c1;        // the group's clouds
    const uint32_t* parts; // reps x parts_rows (k > 0)
    int64_t parts_row0, parts_rows;
    int64_t reps, k, p;
    bool document, fill, ams;
    const int32_t* ams_order;  // reps x d
    const float* ams_osign;    // reps x d
    const int32_t* ams_start;  // reps x (p + 1)
    int64_t final_dim;
    const int32_t* fp_order;   // inner_dim
    const float* fp_osign;     // inner_dim
    const int32_t* fp_start;   // final_dim + 1
    float* inner;              // grid x inner_dim scratch (final_dim > 0)
    float* out;                // batch x out_dim
    int64_t out_dim;
    uint32_t* bad;             // max over bad clouds c of (0xFFFFFFFF - c); 0 = none
    // shared-memory plan (byte offsets) and modes
    int64_t tile;              // (r, b) blocks per tile
    bool keys_smem;
    uint64_t* keys_global;     // grid x keys_per_block (when !keys_smem)
    int64_t keys_per_block;    // reps x pow2(n_max)
    bool stage;                // tokens staged in shared memory
    size_t off_tab, off_keys, off_vbuf, off_tok;
};

// First position in sorted keys[0, n) whose key is >= target.
EK_FN int32_t fde_lower_bound(const uint64_t* keys, int32_t n, uint64_t target) {
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        const int32_t mid = (lo + hi) >> 1;
        if (keys[mid] < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// Ascending bitonic sort of each of the `total / seg` sub-arrays of `seg` keys (seg a power of
// two). Callers synchronise before; ends synchronised.
template <class Ctx>
EK_FN void fde_segmented_sort(Ctx& ctx, uint64_t* keys, int64_t total, int64_t seg) {
    const int tid = ctx.tid(), nt = ctx.nthreads();
    const int64_t half = total / 2;
    for (int64_t size = 2; size <= seg; size <<= 1) {
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
            for (int64_t i = tid; i < half; i += nt) {
                const int64_t lo = 2 * i - (i & (stride - 1));
                const int64_t hi = lo + stride;
                const bool up = ((lo & (seg - 1)) & size) == 0;
                const uint64_t a = keys[lo], b = keys[hi];
                if ((a > b) == up) {
                    keys[lo] = b;
                    keys[hi] = a;
                }
            }
            ctx.sync();
        }
    }
}

// A document's empty partition b takes the token with the smallest (Hamming distance between its
// sign bits and b's, token index). Sign bits are the Gray code of the partition, and
// gray(u) ^ gray(v) = gray(u ^ v). The candidate key of the token in sort key `key`:
EK_FN uint64_t fde_fill_candidate(uint64_t key, uint32_t b) {
    const uint32_t x = uint32_t(key >> 32) ^ b;
    return (uint64_t(popc32(x ^ (x >> 1))) << 32) | (key & kTokenMask);
}

struct EncodeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const EncodeParams& p) {
        const int tid = ctx.tid(), nt = ctx.nthreads();
        const int64_t d = p.d, R = p.reps, k = p.k, B = int64_t(1) << k, P = p.p;
        const int64_t RB = R * B, inner_dim = RB * P;
        int* flag = reinterpret_cast<int*>(smem);
        int* nfill = flag + 1;
        uint64_t* best = reinterpret_cast<uint64_t*>(smem + p.off_tab);  // fill: best candidate
        int32_t* tab_s = reinterpret_cast<int32_t*>(best + p.tile);
        int32_t* tab_e = tab_s + p.tile;
        int32_t* flist = tab_e + p.tile;  // fill: the tile's entries that need a token
        uint64_t* keys = p.keys_smem ? reinterpret_cast<uint64_t*>(smem + p.off_keys)
                                     : p.keys_global + ctx.block() * p.keys_per_block;
        float* vbuf = reinterpret_cast<float*>(smem + p.off_vbuf);
        float* tok = reinterpret_cast<float*>(smem + p.off_tok);
        float* inner = p.final_dim > 0 ? p.inner + ctx.block() * inner_dim : nullptr;
        const bool fill = p.document && p.fill && k > 0;

        for (int64_t c = p.c0 + ctx.block(); c < p.c1; c += ctx.nblocks()) {
            const int64_t row = p.begin[c];
            const int32_t n = int32_t(p.end[c] - row);
            const float* xc = p.x + row * d;
            const float* src = p.stage ? tok : xc;  // the cloud's tokens, n x d
            float* orow = p.out + c * p.out_dim;
            float* dst = inner ? inner : orow;
            if (tid == 0) {
                *flag = 0;
                *nfill = 0;
            }
            ctx.sync();

            // a. finite check (and staging)
            bool ok = true;
            for (int64_t e = tid; e < int64_t(n) * d; e += nt) {
                const float v = xc[e];
                ok = ok && finite_bits(v);
                if (p.stage) tok[e] = v;
            }
            if (!ok) atomic_add_i32(flag, 1);
            ctx.sync();
            if (*flag) {
                for (int64_t j = tid; j < p.out_dim; j += nt) orow[j] = 0.0f;
                if (tid == 0) atomic_max_u32(p.bad, 0xFFFFFFFFu - uint32_t(c));
                ctx.sync();
                continue;
            }

            // b. sort keys (partition << 32 | token) per repetition
            int lg = 0;
            while ((int64_t(1) << lg) < n) ++lg;
            const int64_t seg = int64_t(1) << lg;  // sub-array length of this cloud
            for (int64_t e = tid; e < R * seg; e += nt) {
                const int64_t r = e >> lg, t = e & (seg - 1);
                uint64_t key = ~uint64_t(0);
                if (t < n) {
                    const uint32_t part =
                        k > 0 ? p.parts[r * p.parts_rows + (row - p.parts_row0) + t] : 0u;
                    key = (uint64_t(part) << 32) | uint64_t(t);
                }
                keys[e] = key;
            }
            ctx.sync();
            if (k > 0 && n > 1) fde_segmented_sort(ctx, keys, R * seg, seg);

            // c. the R x B blocks, a tile of (r, b) at a time
            for (int64_t rb0 = 0; rb0 < RB; rb0 += p.tile) {
                const int tn = int(min64(p.tile, RB - rb0));
                for (int j = tid; j < tn; j += nt) {
                    const int64_t rb = rb0 + j;
                    const uint64_t b = uint64_t(rb & (B - 1));
                    const uint64_t* kr = keys + (rb >> k) * seg;
                    const int32_t s = fde_lower_bound(kr, n, b << 32);
                    const int32_t e = fde_lower_bound(kr, n, (b + 1) << 32);
                    if (e > s) {  // occupied: run kr[s, e)
                        tab_s[j] = s;
                        tab_e[j] = e;
                    } else if (fill && n > 0) {  // filled from one token: searched below
                        tab_s[j] = 0;
                        tab_e[j] = -1;
                        best[j] = ~uint64_t(0);
                        flist[atomic_add_i32(nfill, 1)] = j;
                    } else {  // zeros
                        tab_s[j] = 0;
                        tab_e[j] = 0;
                    }
                }
                ctx.sync();
                if (fill) {
                    // every thread takes a share of the cloud's tokens for every entry to fill; the
                    // minimum of unique candidates does not depend on the order of the atomics
                    const int nf = *nfill;
                    for (int f = 0; f < nf; ++f) {
                        const int32_t j = flist[f];
                        const uint64_t* kr = keys + ((rb0 + j) >> k) * seg;
                        const uint32_t b = uint32_t((rb0 + j) & (B - 1));
                        uint64_t mine = ~uint64_t(0);
                        for (int32_t q = tid; q < n; q += nt) {
                            const uint64_t cand = fde_fill_candidate(kr[q], b);
                            if (cand < mine) mine = cand;
                        }
                        if (mine != ~uint64_t(0)) atomic_min_u64(best + j, mine);
                    }
                    ctx.sync();
                    if (tid == 0) *nfill = 0;  // every thread has read it (the sync above)
                    for (int j = tid; j < tn; j += nt)
                        if (tab_e[j] < 0) tab_s[j] = int32_t(best[j] & kTokenMask);
                    ctx.sync();
                }
                if (p.ams) {
                    // raw token sums of each block (or its fill token) -> vbuf[j][0..d)
                    const uint32_t items = uint32_t(tn) * uint32_t(d);
                    for (uint32_t e = uint32_t(tid); e < items; e += uint32_t(nt)) {
                        const uint32_t j = e / uint32_t(d), i = e - j * uint32_t(d);
                        const int32_t s = tab_s[j], en = tab_e[j];
                        if (en > s) {
                            const uint64_t* kr = keys + ((rb0 + j) >> k) * seg;
                            float v = 0.0f;
                            for (int32_t q = s; q < en; ++q)
                                v = add_rn(v, src[int64_t(kr[q] & kTokenMask) * d + i]);
                            vbuf[e] = v;
                        } else if (en < 0) {
                            vbuf[e] = src[int64_t(s) * d + i];
                        }
                    }
                    ctx.sync();
                }
                const uint32_t items = uint32_t(tn) * uint32_t(P);
                for (uint32_t e = uint32_t(tid); e < items; e += uint32_t(nt)) {
                    const uint32_t j = e / uint32_t(P), o = e - j * uint32_t(P);
                    const int64_t rb = rb0 + j;
                    const int32_t s = tab_s[j], en = tab_e[j];
                    float v = 0.0f;
                    if (p.ams) {
                        if (en > s || en < 0) {
                            const int64_t r = rb >> k;
                            const int32_t* ord = p.ams_order + r * d;
                            const float* sg = p.ams_osign + r * d;
                            const int32_t* st = p.ams_start + r * (P + 1);
                            const float* vb = vbuf + int64_t(j) * d;
                            for (int32_t q = st[o]; q < st[o + 1]; ++q) v = add_rn(v, mul_rn(sg[q], vb[ord[q]]));
                            if (en > s && p.document) v = div_rn(v, fde_count(en - s));
                        }
                    } else if (en > s) {
                        const uint64_t* kr = keys + (rb >> k) * seg;
                        for (int32_t q = s; q < en; ++q) v = add_rn(v, src[int64_t(kr[q] & kTokenMask) * d + o]);
                        if (p.document) v = div_rn(v, fde_count(en - s));
                    } else if (en < 0) {
                        v = src[int64_t(s) * d + o];
                    }
                    dst[rb * P + o] = v;
                }
                ctx.sync();
            }

            // d. final count-sketch projection
            if (inner) {
                for (int64_t j = tid; j < p.final_dim; j += nt) {
                    float v = 0.0f;
                    for (int32_t q = p.fp_start[j]; q < p.fp_start[j + 1]; ++q)
                        v = add_rn(v, mul_rn(p.fp_osign[q], inner[p.fp_order[q]]));
                    orow[j] = v;
                }
                ctx.sync();
            }
        }
    }
};

// ---- orchestration ---------------------------------------------------------------------------

inline int64_t fde_inner_dim(const FdeShape& s) { return s.reps * (int64_t(1) << s.k) * s.p; }
inline int64_t fde_out_dim(const FdeShape& s) { return s.final_dim > 0 ? s.final_dim : fde_inner_dim(s); }

// Host-side checks of everything a launch depends on (std::invalid_argument -> ValueError).
inline void run_fde_encode_checks(int64_t rows, const int64_t* begin, const int64_t* end, int64_t batch,
                                  const FdeShape& s, const FdeTables& t) {
    require_arg(s.d >= 1, "dimension must be >= 1, got " + std::to_string(s.d));
    require_arg(s.reps >= 1, "num_repetitions must be >= 1, got " + std::to_string(s.reps));
    require_arg(s.k >= 0 && s.k <= 30, "num_simhash_projections must be in 0..30, got " + std::to_string(s.k));
    require_arg(s.p >= 1, "projection dimension must be >= 1, got " + std::to_string(s.p));
    require_arg(s.ams || s.p == s.d, "identity projection needs p == dimension");
    require_arg(s.reps <= (int64_t(1) << 31) && (int64_t(0x7FFFFFFF) >> s.k) / s.reps >= s.p,
                "the encoding would have more than 2^31 - 1 dimensions");
    require_arg(s.final_dim >= 0 && s.final_dim <= 0x7FFFFFFF, "final_projection_dimension must fit int32");
    require_arg(rows >= 0, "points must have >= 0 rows");
    require_arg(batch >= 0 && batch < 0x7FFFFFFF, "batch must be in [0, 2^31 - 1)");
    require_arg(batch == 0 || (begin && end), "cloud ranges missing");
    for (int64_t c = 0; c < batch; ++c) {
        require_arg(begin[c] >= 0 && begin[c] <= end[c] && end[c] <= rows,
                    "point cloud " + std::to_string(c) + " has an invalid row range");
        require_arg(end[c] - begin[c] < 0x7FFFFFFF, "point cloud " + std::to_string(c) + " has too many points");
    }
    require_arg(s.k == 0 || t.gauss, "SimHash matrices missing");
    require_arg(!s.ams || (t.ams_order && t.ams_osign && t.ams_start), "AMS tables missing");
    require_arg(s.final_dim == 0 || (t.fp_order && t.fp_osign && t.fp_start), "final projection tables missing");
}

struct EncodePlan {
    int64_t tile = 1;
    bool keys_smem = true, stage = false;
    int64_t keys_per_block = 0;
    size_t off_tab = 0, off_keys = 0, off_vbuf = 0, off_tok = 0, smem = 0;
};

inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// Shared-memory plan for clouds of at most n_max tokens.
inline EncodePlan plan_encode(const FdeShape& s, int64_t n_max, const FdeOptions& o, size_t smem_optin) {
    EncodePlan pl;
    const int64_t RB = s.reps * (int64_t(1) << s.k);
    if (o.tile > 0) pl.tile = o.tile;
    else if (s.ams) pl.tile = std::max<int64_t>(1, int64_t(o.vbuf_floats) / s.d);
    else pl.tile = 1024;
    pl.tile = std::max<int64_t>(1, std::min(pl.tile, RB));
    const int64_t seg = pow2_at_least64(std::max<int64_t>(n_max, 1));
    pl.keys_per_block = s.reps * seg;
    const size_t tab = align_up(16 + size_t(pl.tile) * (sizeof(uint64_t) + 3 * sizeof(int32_t)), 16);
    const size_t vbuf = s.ams ? align_up(size_t(pl.tile * s.d) * sizeof(float), 16) : 0;
    const size_t keys = size_t(pl.keys_per_block) * sizeof(uint64_t);
    const size_t toks = align_up(size_t(n_max) * size_t(s.d) * sizeof(float), 16);
    const size_t base = tab + vbuf;
    require_arg(base <= smem_optin, "dimension too large for the CUDA FDE kernel's shared memory");
    pl.keys_smem = o.keys == 0 || (o.keys < 0 && keys <= size_t(o.keys_bytes) && base + keys <= smem_optin);
    require_arg(!pl.keys_smem || base + keys <= smem_optin, "sort keys do not fit shared memory");
    const size_t with_keys = base + (pl.keys_smem ? keys : 0);
    pl.stage = o.stage == 1 || (o.stage < 0 && n_max > 0 && toks <= size_t(o.stage_bytes) && with_keys + toks <= smem_optin);
    require_arg(!pl.stage || with_keys + toks <= smem_optin, "tokens do not fit shared memory");
    pl.off_tab = 16;  // after the flag words; `tab` covers both
    pl.off_vbuf = tab;
    pl.off_keys = tab + vbuf;
    pl.off_tok = pl.off_keys + (pl.keys_smem ? keys : 0);
    pl.smem = pl.off_tok + (pl.stage ? toks : 0);
    return pl;
}

template <class Exec>
void run_fde_encode(Exec& ex, const float* x, int64_t rows, const int64_t* begin, const int64_t* end,
                    int64_t batch, const FdeShape& s, const FdeTables& t, float* out, uint32_t* bad,
                    const FdeOptions& o) {
    run_fde_encode_checks(rows, begin, end, batch, s, t);
    require_arg(o.threads >= 32 && o.threads <= EncodeKernel::kMaxThreads, "threads must be in [32, 256]");
    ex.zero(bad, sizeof(uint32_t));
    if (batch == 0) return;
    const int64_t inner_dim = fde_inner_dim(s), out_dim = fde_out_dim(s);
    const int64_t group_rows = std::max<int64_t>(1, o.group_rows);
    const int64_t budget = std::max<int64_t>(1, o.scratch_bytes);

    Scratch<Exec> ranges(ex, size_t(2 * batch) * sizeof(int64_t));
    int64_t* d_begin = ranges.template as<int64_t>();
    int64_t* d_end = d_begin + batch;
    ex.copy(d_begin, begin, size_t(batch) * sizeof(int64_t));
    ex.copy(d_end, end, size_t(batch) * sizeof(int64_t));

    for (int64_t c0 = 0; c0 < batch;) {
        // the group: consecutive clouds whose row span stays within group_rows (at least one)
        int64_t lo = begin[c0], hi = end[c0], n_max = end[c0] - begin[c0], c1 = c0 + 1;
        while (c1 < batch) {
            const int64_t nlo = std::min(lo, begin[c1]), nhi = std::max(hi, end[c1]);
            if (nhi - nlo > group_rows) break;
            lo = nlo;
            hi = nhi;
            n_max = std::max(n_max, end[c1] - begin[c1]);
            ++c1;
        }
        const int64_t span = hi - lo;

        Scratch<Exec> parts(ex, s.k > 0 ? size_t(s.reps * span) * sizeof(uint32_t) : 0);
        if (s.k > 0 && span > 0) {
            SketchParams sp{x, lo, span, s.d, t.gauss, s.reps, s.k,
                            std::min<int64_t>(s.reps, kSkCols / s.k), parts.template as<uint32_t>()};
            const int64_t tiles = ceil_div(span, kSkTokens) * ceil_div(s.reps, sp.reps_per_tile);
            ex.template launch<SketchKernel>(grid_for(tiles, 1, ex.sm_count(), 8), kSkThreads, kSkSmem, sp);
        }

        const EncodePlan pl = plan_encode(s, n_max, o, ex.smem_optin());
        int64_t grid = grid_for(c1 - c0, 1, ex.sm_count(),
                                std::max<int64_t>(1, std::min<int64_t>(8, int64_t(200 * 1024) / int64_t(std::max<size_t>(pl.smem, 1)))));
        if (o.max_grid > 0) grid = std::min(grid, o.max_grid);
        int64_t per_block = 0;  // global scratch bytes per block
        if (!pl.keys_smem) per_block += pl.keys_per_block * int64_t(sizeof(uint64_t));
        if (s.final_dim > 0) per_block += inner_dim * int64_t(sizeof(float));
        if (per_block > 0) grid = std::max<int64_t>(1, std::min(grid, budget / per_block));
        Scratch<Exec> keys(ex, pl.keys_smem ? 0 : size_t(grid * pl.keys_per_block) * sizeof(uint64_t));
        Scratch<Exec> inner(ex, s.final_dim > 0 ? size_t(grid * inner_dim) * sizeof(float) : 0);

        EncodeParams ep{};
        ep.x = x;
        ep.d = s.d;
        ep.begin = d_begin;
        ep.end = d_end;
        ep.c0 = c0;
        ep.c1 = c1;
        ep.parts = parts.template as<uint32_t>();
        ep.parts_row0 = lo;
        ep.parts_rows = span;
        ep.reps = s.reps;
        ep.k = s.k;
        ep.p = s.p;
        ep.document = s.document;
        ep.fill = s.fill;
        ep.ams = s.ams;
        ep.ams_order = t.ams_order;
        ep.ams_osign = t.ams_osign;
        ep.ams_start = t.ams_start;
        ep.final_dim = s.final_dim;
        ep.fp_order = t.fp_order;
        ep.fp_osign = t.fp_osign;
        ep.fp_start = t.fp_start;
        ep.inner = inner.template as<float>();
        ep.out = out;
        ep.out_dim = out_dim;
        ep.bad = bad;
        ep.tile = pl.tile;
        ep.keys_smem = pl.keys_smem;
        ep.keys_global = keys.template as<uint64_t>();
        ep.keys_per_block = pl.keys_per_block;
        ep.stage = pl.stage;
        ep.off_tab = pl.off_tab;
        ep.off_keys = pl.off_keys;
        ep.off_vbuf = pl.off_vbuf;
        ep.off_tok = pl.off_tok;
        ex.template launch<EncodeKernel>(grid, o.threads, pl.smem, ep);
        c0 = c1;
    }
}

}  // namespace embkern::cuda
