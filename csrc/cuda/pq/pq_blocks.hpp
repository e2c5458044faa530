// Product-quantization GPU kernels, as block-level bodies compiled by nvcc (pq.cu) and by the host
// emulator (pq_emulator.cpp); see common/blocks.hpp for the convention and pq_select.hpp for top-k.
//
// Layouts are faiss's (specs/binary_pq.md): centroids [m][ksub][dsub]; codes n x cs, cs =
// ceil(m * nbits / 8), sub-quantizer s in byte s (8 bits) or in byte s / 2, even s in the low
// nibble (4 bits); tables [nq][m][ksub]; fast-scan codes in blocks of 32 vectors x m2 / 2
// sub-quantizer pairs x 32 bytes (PERM0 order). Every result equals the CPU backend's (csrc/pq)
// bit for bit: each float sum is done in the CPU's order with separately rounded mul_rn / add_rn
// (or fma_rn where the CPU fuses), ties follow the CPU's rules, and nothing uses float atomics.
//
// encode (and the assignment step of train). One thread per sub-vector; a work item is a tile of
// `threads` points x one output byte (1 sub-space; 2 for 4-bit codes, so a thread writes whole
// bytes). The sub-space's centroids are staged transposed ([dsub][ksub]: the threads of a warp read
// the same centroid, a broadcast) with the tile's sub-vectors ([dsub][threads], conflict-free), in
// shared memory when they fit, else read through L1. Distances run over 8 centroids at a time, in
// dimension order, exactly as csrc/pq/kernel.hpp's l2_partial: fma chains for dsub 2, 4, 8, else
// separate multiply and add; the argmin keeps 8 lanes (centroid j in lane j % 8) with the CPU's
// lane tie rules (fused: each lane keeps its last minimum, then the lowest lane wins; else the
// first minimum).
//
// decode. One thread per output float (coalesced stores, centroid reads cached).
//
// distance_tables. A work item is (sub-space, tile of queries): centroid j per thread column,
// several queries per thread (register blocking); centroids and query sub-vectors staged in chunks
// of 32 dimensions (the per-output sum keeps the CPU's order across chunks: plain, fma, or faiss's
// 12-dimension form).
//
// adc_distances. A work item is (tile of codes, group of <= 4 queries): the group's tables are
// staged in shared memory (in global memory when too large), each thread sums the m entries of its
// code for every query of the group (one read of the code; 16- or 4-byte loads when the rows
// allow), in order s = 0..m-1 from +0, so the distances equal the CPU's. Consecutive blocks take
// the same code tile for different query groups (L2 reuse).
//
// adc_topk / fastscan_topk / rerank. Candidates are keys (pq_select.hpp) made by a per-query
// policy: ADC sums the query's table (staged per block) in the CPU's order (negated entries for
// "largest", as the CPU does), never keeping +inf or NaN sums (the CPU's heaps reject them; missing
// results are (+-inf, INT64_MAX) like its sentinels); fast scan quantises each table exactly as
// the CPU (faiss's round_uint8_per_column, float32 ops in the same order), stages the m2 x 16 uint8
// table (each row spans 4 banks: conflict-free) and sums 4-bit entries exactly in integers; a warp
// reads one 32-vector block (32 contiguous bytes per sub-quantizer pair). A final pass turns keys
// into (distance, id): ADC values back to floats, fast-scan sums rescaled with fma(S, 1/a, b).
//
// train. Lloyd iterations as the CPU's (csrc/pq/pq_driver.cpp train, which skips points by
// Hamerly bounds but returns plain Lloyd's labels): full assignment with the encode body; then a
// deterministic centroid update: a stable counting sort of the point ids by label per sub-space
// (partition histograms, prefix sums, in-chunk ranks), and one thread per centroid coordinate
// summing its cluster's points in ascending point order in double, as the CPU does; empty
// clusters are split from the largest one in the CPU's order.
//
// Limits (checked on the host): top-k over fewer than 2^32 - 1 codes (ids ride in 32 bits of a
// key), train on fewer than 2^31 points, fast scan with m <= 256 (16-bit sums, as the CPU). Not
// done: top-k blocks serving several queries per code load (one query per block; the batched scan
// is LUT-lookup bound, gpu.md §2), fp16 / uint8 tables for the exact ADC (they would change the
// distances), staging code rows through shared memory (rows are read per thread through L1).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/common/blocks.hpp"
#include "cuda/pq/pq_cuda.hpp"
#include "cuda/pq/pq_select.hpp"

namespace embkern::cuda::pq {

// ---- arithmetic with the CPU's rounding ---------------------------------------------------------

EK_FN float fma_rn(float a, float b, float c) {
#if defined(__CUDACC__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}
EK_FN float sub_rn(float a, float b) {
#if defined(__CUDACC__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
EK_FN bool finite_f(float a) {
#if defined(__CUDACC__)
    return isfinite(a);
#else
    return std::isfinite(a);
#endif
}
EK_FN float floor_f(float a) {
#if defined(__CUDACC__)
    return floorf(a);
#else
    return std::floor(a);
#endif
}

EK_FN float inf_f() { return bits_float(0x7F800000u); }

EK_FN uint32_t load_u32(const uint8_t* p) {  // p is 4-byte aligned
#if defined(__CUDACC__)
    return *reinterpret_cast<const uint32_t*>(p);
#else
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

struct U32x4 {
    uint32_t w[4];
};

EK_FN U32x4 load_u32x4(const uint8_t* p) {  // p is 16-byte aligned
#if defined(__CUDACC__)
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    return U32x4{{v.x, v.y, v.z, v.w}};
#else
    U32x4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

// Widest load every code row allows: 16 bytes, 4 bytes, or single bytes.
enum RowLoad : int { kRowBytes = 1, kRowWords = 4, kRowVec16 = 16 };

// Code of sub-quantizer s in a flat code row.
EK_FN int code_at(const uint8_t* row, int64_t s, int nbits) {
    return nbits == 8 ? row[s] : (row[s >> 1] >> ((s & 1) * 4)) & 0xF;
}

// Vector (inside a 32-group) whose code sits in the low nibble of byte j of a sub-quantizer's 16.
EK_FN int fs_perm0(int j) { return (j >> 1) + ((j & 1) << 3); }
// Byte (0..15) of a sub-quantizer's 16 holding vector v (0..31) of a block, and its nibble shift.
EK_FN int fs_byte(int v) {
    const int v16 = v & 15;
    return v16 < 8 ? 2 * v16 : 2 * (v16 - 8) + 1;
}

// ---- encode / train assignment --------------------------------------------------------------

struct EncodeParams {
    const float* x;
    int64_t n, dim;
    const float* cent;
    int64_t m, ksub, dsub;
    int nbits;
    int staged;       // centroids and sub-vectors staged in shared memory
    int spg;          // sub-spaces per work item (2 for 4-bit codes: whole bytes)
    int64_t groups, tiles;
    uint8_t* codes;   // n x cs, or null
    int64_t cs;
    int32_t* labels;  // m x n (train), or null
};

inline size_t encode_smem(int64_t ksub, int64_t dsub, int threads) {
    return size_t(ksub * dsub + dsub * threads) * sizeof(float);
}

// Nearest of ksub centroids; x_t = xv[t * xst], centroid j coordinate t = c[t * cst + j * csj].
template <bool Fused>
EK_FN int32_t nearest_centroid(const float* xv, int64_t xst, const float* c, int64_t cst, int64_t csj,
                               int64_t dsub, int64_t ksub) {
    float bv[8];
    int32_t bi[8];
    EK_UNROLL
    for (int l = 0; l < 8; ++l) {
        bv[l] = inf_f();
        bi[l] = l;
    }
    for (int64_t j0 = 0; j0 < ksub; j0 += 8) {
        float acc[8];
        EK_UNROLL
        for (int l = 0; l < 8; ++l) acc[l] = 0.0f;
        const float* cj = c + j0 * csj;
        for (int64_t t = 0; t < dsub; ++t) {
            const float xt = xv[t * xst];
            const float* ct = cj + t * cst;
            EK_UNROLL
            for (int l = 0; l < 8; ++l) {
                const float diff = sub_rn(xt, ct[l * csj]);
                if constexpr (Fused)
                    acc[l] = fma_rn(diff, diff, acc[l]);
                else
                    acc[l] = add_rn(acc[l], mul_rn(diff, diff));
            }
        }
        EK_UNROLL
        for (int l = 0; l < 8; ++l) {
            const bool take = Fused ? acc[l] <= bv[l] : acc[l] < bv[l];
            if (take) {
                bv[l] = acc[l];
                bi[l] = int32_t(j0 + l);
            }
        }
    }
    float mv = bv[0];
    EK_UNROLL
    for (int l = 1; l < 8; ++l) mv = bv[l] < mv ? bv[l] : mv;
    int32_t win = 0x7FFFFFFF;
    if constexpr (Fused) {  // the lowest lane holding the minimum
        for (int l = 7; l >= 0; --l)
            if (bv[l] == mv) win = bi[l];
    } else {  // the smallest index holding the minimum
        EK_UNROLL
        for (int l = 0; l < 8; ++l)
            if (bv[l] == mv && bi[l] < win) win = bi[l];
    }
    return win;
}

template <bool Fused, class Ctx>
EK_FN void encode_body(Ctx& ctx, unsigned char* smem, const EncodeParams& p) {
    const int nt = ctx.nthreads(), tid = ctx.tid();
    float* sc = reinterpret_cast<float*>(smem);  // [dsub][ksub]
    float* sx = sc + p.ksub * p.dsub;            // [dsub][nt]
    for (int64_t w = ctx.block(); w < p.groups * p.tiles; w += ctx.nblocks()) {
        const int64_t g = w / p.tiles, tile = w - g * p.tiles;
        const int64_t i = tile * nt + tid;
        const bool valid = i < p.n;
        unsigned byte = 0;
        for (int h = 0; h < p.spg; ++h) {
            const int64_t s = g * p.spg + h;
            if (s >= p.m) break;  // uniform
            const float* cs0 = p.cent + s * p.ksub * p.dsub;
            int32_t label = 0;
            if (p.staged) {
                ctx.sync();  // the previous sub-space's readers are done
                for (int64_t e = tid; e < p.ksub * p.dsub; e += nt) {
                    const int64_t j = e / p.dsub, t = e - j * p.dsub;
                    sc[t * p.ksub + j] = cs0[e];
                }
                for (int64_t e = tid; e < nt * p.dsub; e += nt) {
                    const int64_t r = e / p.dsub, t = e - r * p.dsub;
                    const int64_t ii = tile * nt + r;
                    sx[t * nt + r] = ii < p.n ? p.x[ii * p.dim + s * p.dsub + t] : 0.0f;
                }
                ctx.sync();
                if (valid) label = nearest_centroid<Fused>(sx + tid, nt, sc, p.ksub, 1, p.dsub, p.ksub);
            } else if (valid) {
                label = nearest_centroid<Fused>(p.x + i * p.dim + s * p.dsub, 1, cs0, 1, p.dsub, p.dsub,
                                                p.ksub);
            }
            if (p.labels) {
                if (valid) p.labels[s * p.n + i] = label;
            } else {
                byte |= unsigned(label) << (h * p.nbits);
            }
        }
        if (p.codes && valid) p.codes[i * p.cs + g] = uint8_t(byte);
    }
}

struct EncodeKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const EncodeParams& p) {
        if (p.dsub == 2 || p.dsub == 4 || p.dsub == 8)
            encode_body<true>(ctx, smem, p);
        else
            encode_body<false>(ctx, smem, p);
    }
};

// ---- decode ---------------------------------------------------------------------------------

struct DecodeParams {
    const uint8_t* codes;
    int64_t n, dim, m, ksub, dsub, cs;
    int nbits;
    const float* cent;
    float* out;
};

template <class Ctx>
EK_FN void decode_body(Ctx& ctx, const DecodeParams& p) {
    const int64_t total = p.n * p.dim;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        const int64_t i = e / p.dim, r = e - i * p.dim;
        const int64_t s = r / p.dsub, t = r - s * p.dsub;
        const int c = code_at(p.codes + i * p.cs, s, p.nbits);
        p.out[e] = p.cent[(s * p.ksub + c) * p.dsub + t];
    }
}

EK_KERNEL(DecodeKernel, DecodeParams, decode_body(ctx, p);)

// ---- distance tables ------------------------------------------------------------------------

constexpr int kTabDims = 32;   // dimensions staged per chunk (>= 12: faiss's 12-d form in one chunk)
constexpr int kTabMaxQb = 4;   // queries per thread
enum TabMode : int { kTabPlain = 0, kTabFused = 1, kTabDot12 = 2 };

struct TablesParams {
    const float* x;
    int64_t n, dim;
    const float* cent;
    int64_t m, ksub, dsub;
    int ip, mode, qb;
    int64_t qtiles;
    float* out;
};

inline size_t tables_smem(int64_t ksub, int threads, int qb) {
    const int64_t lanes = threads / ksub;
    return size_t(kTabDims * ksub + lanes * qb * (kTabDims + 1)) * sizeof(float);
}

template <bool IP>
EK_FN float tab_dot12(const float* xq, const float* ct, int64_t ksub) {
    float u[12], v[12];
    EK_UNROLL
    for (int t = 0; t < 12; ++t) {
        const float c = ct[t * ksub];
        u[t] = IP ? xq[t] : sub_rn(xq[t], c);
        v[t] = IP ? c : u[t];
    }
    float a[4];
    EK_UNROLL
    for (int i = 0; i < 4; ++i) {
        a[i] = fma_rn(u[i], v[i], mul_rn(u[4 + i], v[4 + i]));
        a[i] = fma_rn(u[8 + i], v[8 + i], a[i]);
    }
    return add_rn(add_rn(a[0], a[2]), add_rn(a[1], a[3]));
}

template <bool IP, int Mode, class Ctx>
EK_FN void tables_body(Ctx& ctx, unsigned char* smem, const TablesParams& p) {
    const int nt = ctx.nthreads(), tid = ctx.tid();
    const int64_t lanes = nt / p.ksub;
    const int64_t j = tid % p.ksub, r = tid / p.ksub;
    const int64_t qt = lanes * p.qb;  // queries per tile
    constexpr int xs = kTabDims + 1;  // padded row of a staged query
    float* ct = reinterpret_cast<float*>(smem);  // [kTabDims][ksub]
    float* xq = ct + kTabDims * p.ksub;          // [qt][xs]
    for (int64_t w = ctx.block(); w < p.m * p.qtiles; w += ctx.nblocks()) {
        const int64_t s = w / p.qtiles, q0 = (w - s * p.qtiles) * qt;
        float acc[kTabMaxQb];
        EK_UNROLL
        for (int b = 0; b < kTabMaxQb; ++b) acc[b] = 0.0f;
        for (int64_t t0 = 0; t0 < p.dsub; t0 += kTabDims) {
            const int64_t nd = std::min<int64_t>(kTabDims, p.dsub - t0);
            ctx.sync();
            for (int64_t e = tid; e < p.ksub * nd; e += nt) {
                const int64_t jj = e / nd, t = e - jj * nd;
                ct[t * p.ksub + jj] = p.cent[(s * p.ksub + jj) * p.dsub + t0 + t];
            }
            for (int64_t e = tid; e < qt * nd; e += nt) {
                const int64_t qq = e / nd, t = e - qq * nd;
                const int64_t q = q0 + qq;
                xq[qq * xs + t] = q < p.n ? p.x[q * p.dim + s * p.dsub + t0 + t] : 0.0f;
            }
            ctx.sync();
            EK_UNROLL
            for (int b = 0; b < kTabMaxQb; ++b) {
                if (b >= p.qb) break;
                const float* xv = xq + (r + lanes * b) * xs;
                if constexpr (Mode == kTabDot12) {
                    acc[b] = tab_dot12<IP>(xv, ct + j, p.ksub);
                } else {
                    float a = acc[b];
                    for (int64_t t = 0; t < nd; ++t) {
                        const float c = ct[t * p.ksub + j];
                        const float u = IP ? xv[t] : sub_rn(xv[t], c);
                        const float v = IP ? c : u;
                        a = Mode == kTabFused ? fma_rn(u, v, a) : add_rn(a, mul_rn(u, v));
                    }
                    acc[b] = a;
                }
            }
        }
        EK_UNROLL
        for (int b = 0; b < kTabMaxQb; ++b) {
            const int64_t q = q0 + r + lanes * b;
            if (b < p.qb && q < p.n) p.out[(q * p.m + s) * p.ksub + j] = acc[b];
        }
    }
}

struct TablesKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const TablesParams& p) {
        if (p.ip) {
            if (p.mode == kTabDot12) tables_body<true, kTabDot12>(ctx, smem, p);
            else if (p.mode == kTabFused) tables_body<true, kTabFused>(ctx, smem, p);
            else tables_body<true, kTabPlain>(ctx, smem, p);
        } else {
            if (p.mode == kTabDot12) tables_body<false, kTabDot12>(ctx, smem, p);
            else if (p.mode == kTabFused) tables_body<false, kTabFused>(ctx, smem, p);
            else tables_body<false, kTabPlain>(ctx, smem, p);
        }
    }
};

// ---- ADC sums ---------------------------------------------------------------------------------

constexpr int kAdcMaxQg = 4;

// Sums of the m table entries a code row selects, for nq (<= kAdcMaxQg) tables L + q * lstride,
// in order s = 0..m-1 from +0 (the CPU's order). flip = 0x80000000 adds negated entries.
// load: RowLoad the row allows (its alignment and cs).
template <int NBITS>
EK_FN void adc_sums(const uint8_t* row, int64_t m, const float* L, int64_t lstride, int nq, int load,
                    uint32_t flip, float* acc) {
    constexpr int ksub = 1 << NBITS;
    constexpr int per_word = 32 / NBITS;
    EK_UNROLL
    for (int q = 0; q < kAdcMaxQg; ++q) acc[q] = 0.0f;
    auto add = [&](int64_t s, int c) {
        const float* e = L + s * ksub + c;
        EK_UNROLL
        for (int q = 0; q < kAdcMaxQg; ++q)
            if (q < nq) acc[q] = add_rn(acc[q], bits_float(float_bits(e[q * lstride]) ^ flip));
    };
    auto word = [&](uint32_t v, int64_t s0) {
        EK_UNROLL
        for (int e = 0; e < per_word; ++e)
            if (s0 + e < m) add(s0 + e, int((v >> (e * NBITS)) & (ksub - 1)));
    };
    if (load == kRowVec16) {
        for (int64_t s0 = 0; s0 < m; s0 += 4 * per_word) {
            const U32x4 v = load_u32x4(row + s0 * NBITS / 8);
            EK_UNROLL
            for (int w = 0; w < 4; ++w) word(v.w[w], s0 + w * per_word);
        }
    } else if (load == kRowWords) {
        for (int64_t s0 = 0; s0 < m; s0 += per_word) word(load_u32(row + s0 * NBITS / 8), s0);
    } else {
        for (int64_t s = 0; s < m; ++s) add(s, code_at(row, s, NBITS));
    }
}

struct AdcParams {
    const float* lut;
    int64_t nq;
    const uint8_t* codes;
    int64_t n, m, cs;
    int nbits;
    int load, staged, qg;
    int64_t tile, tiles, groups;
    float* out;
};

template <int NBITS, class Ctx>
EK_FN void adc_distances_body(Ctx& ctx, unsigned char* smem, const AdcParams& p) {
    constexpr int64_t ksub = 1 << NBITS;
    const int nt = ctx.nthreads(), tid = ctx.tid();
    const int64_t lsize = p.m * ksub;
    float* sl = reinterpret_cast<float*>(smem);
    for (int64_t w = ctx.block(); w < p.tiles * p.groups; w += ctx.nblocks()) {
        const int64_t tile = w / p.groups, g = w - tile * p.groups;
        const int64_t q0 = g * p.qg;
        const int nqg = int(std::min<int64_t>(p.qg, p.nq - q0));
        const float* L = p.lut + q0 * lsize;
        if (p.staged) {
            ctx.sync();
            for (int64_t e = tid; e < nqg * lsize; e += nt) sl[e] = L[e];
            ctx.sync();
            L = sl;
        }
        const int64_t end = std::min(p.n, (tile + 1) * p.tile);
        for (int64_t j = tile * p.tile + tid; j < end; j += nt) {
            float acc[kAdcMaxQg];
            adc_sums<NBITS>(p.codes + j * p.cs, p.m, L, lsize, nqg, p.load, 0u, acc);
            EK_UNROLL
            for (int q = 0; q < kAdcMaxQg; ++q)
                if (q < nqg) p.out[(q0 + q) * p.n + j] = acc[q];
        }
    }
}

struct AdcDistancesKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const AdcParams& p) {
        if (p.nbits == 8)
            adc_distances_body<8>(ctx, smem, p);
        else
            adc_distances_body<4>(ctx, smem, p);
    }
};

// ---- selection policies: per-query candidate keys -------------------------------------------
// A policy stages what one query needs in shared memory (smem_bytes(), stage()) and hands out a
// getter whose get(j, key) makes item j's key (false: no candidate).

struct AdcPolicy {
    const float* lut;  // nq x m x ksub
    const uint8_t* codes;
    int64_t m, cs;
    int nbits, load, staged;
    uint32_t flip;     // largest: sums of negated entries

    size_t smem_bytes() const { return staged ? size_t(m << nbits) * sizeof(float) : 0; }
    template <class Ctx>
    EK_FN void stage(Ctx& ctx, unsigned char* sm, int64_t q) const {
        if (!staged) return;
        const int64_t lsize = m << nbits;
        float* dst = reinterpret_cast<float*>(sm);
        const float* src = lut + q * lsize;
        for (int64_t e = ctx.tid(); e < lsize; e += ctx.nthreads()) dst[e] = src[e];
    }
    struct Getter {
        const uint8_t* codes;
        const float* L;
        int64_t m, cs;
        int nbits, load;
        uint32_t flip;
        EK_FN bool get(int64_t j, uint64_t& key) const {
            float acc[kAdcMaxQg];
            const uint8_t* row = codes + j * cs;
            if (nbits == 8)
                adc_sums<8>(row, m, L, 0, 1, load, flip, acc);
            else
                adc_sums<4>(row, m, L, 0, 1, load, flip, acc);
            if (!(acc[0] < inf_f())) return false;  // +inf and NaN never enter the CPU's heaps
            key = make_key(float_order(acc[0]), j);
            return true;
        }
    };
    EK_FN Getter getter(const unsigned char* sm, int64_t q) const {
        return Getter{codes, staged ? reinterpret_cast<const float*>(sm) : lut + q * (m << nbits), m, cs, nbits,
                      load, flip};
    }
};

struct FastScanPolicy {
    const uint8_t* qlut;  // nq x m2 x 16 quantised tables
    const uint8_t* packed;
    int64_t m2;

    size_t smem_bytes() const { return size_t(m2) * 16; }
    template <class Ctx>
    EK_FN void stage(Ctx& ctx, unsigned char* sm, int64_t q) const {
        const uint8_t* src = qlut + q * m2 * 16;
        for (int64_t e = ctx.tid(); e < m2 * 16; e += ctx.nthreads()) sm[e] = src[e];
    }
    struct Getter {
        const uint8_t* packed;
        const uint8_t* T;
        int64_t m2;
        EK_FN bool get(int64_t j, uint64_t& key) const {
            const int v = int(j & 31);
            const int at = fs_byte(v), shift = v >= 16 ? 4 : 0;
            const uint8_t* blk = packed + (j >> 5) * m2 * 16;
            uint32_t s = 0;
            for (int64_t p = 0; p < m2 / 2; ++p) {
                const int lo = (blk[p * 32 + at] >> shift) & 0xF;
                const int hi = (blk[p * 32 + 16 + at] >> shift) & 0xF;
                s += uint32_t(T[p * 32 + lo]) + uint32_t(T[p * 32 + 16 + hi]);
            }
            key = make_key(s, j);
            return true;
        }
    };
    EK_FN Getter getter(const unsigned char* sm, int64_t) const { return Getter{packed, sm, m2}; }
};

// Exact ADC of fast-scan candidates (rerank): key = (exact, or -exact for largest; NaN last).
struct RerankPolicy {
    const float* lut;  // nq x m x 16
    const uint8_t* packed;
    const int64_t* cand;  // nq x r
    int64_t n, m, m2, r;
    int staged;
    uint32_t flip;

    size_t smem_bytes() const { return staged ? size_t(m) * 16 * sizeof(float) : 0; }
    template <class Ctx>
    EK_FN void stage(Ctx& ctx, unsigned char* sm, int64_t q) const {
        if (!staged) return;
        float* dst = reinterpret_cast<float*>(sm);
        const float* src = lut + q * m * 16;
        for (int64_t e = ctx.tid(); e < m * 16; e += ctx.nthreads()) dst[e] = src[e];
    }
    struct Getter {
        const uint8_t* packed;
        const float* L;
        const int64_t* ids;
        int64_t n, m, m2;
        uint32_t flip;
        EK_FN bool get(int64_t i, uint64_t& key) const {
            const int64_t id = ids[i];
            if (id < 0 || id >= n) return false;
            const int v = int(id & 31);
            const int at = fs_byte(v), shift = v >= 16 ? 4 : 0;
            const uint8_t* blk = packed + (id >> 5) * m2 * 16;
            float acc = 0.0f;
            for (int64_t s = 0; s < m; ++s) {
                const int c = (blk[(s >> 1) * 32 + (s & 1) * 16 + at] >> shift) & 0xF;
                acc = add_rn(acc, L[s * 16 + c]);
            }
            float val = bits_float(float_bits(acc) ^ flip);
            if (val != val) val = bits_float(0x7FC00000u);  // one NaN, after +inf (numpy's order)
            key = make_key(float_order(val), id);
            return true;
        }
    };
    EK_FN Getter getter(const unsigned char* sm, int64_t q) const {
        return Getter{packed, staged ? reinterpret_cast<const float*>(sm) : lut + q * m * 16, cand + q * r, n, m,
                      m2, flip};
    }
};

// ---- selection kernels over a policy ----------------------------------------------------------

template <class Pol>
struct SelectParams {
    Pol pol;
    FilterShape f;
    int64_t nq, len;
    // filter path
    int64_t parts;
    uint64_t* out;  // parts == 1: nq x k final keys; else nq x parts x k partition keys
    // sort path
    int run;
    int64_t q0, nqb, runs;  // batch of queries [q0, q0 + nqb), runs per query
    uint64_t* runs_out;     // nqb x runs x run keys
};

constexpr size_t align16(size_t b) { return (b + 15) / 16 * 16; }

template <class Ctx, class Pol>
EK_FN void select_filter_body(Ctx& ctx, unsigned char* smem, const SelectParams<Pol>& p) {
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
    unsigned char* psm = smem + align16(filter_smem(p.f.cap));
    for (int64_t w = ctx.block(); w < p.nq * p.parts; w += ctx.nblocks()) {
        const int64_t q = w / p.parts, g = w - q * p.parts;
        const int64_t begin = p.len * g / p.parts, end = p.len * (g + 1) / p.parts;
        ctx.sync();
        p.pol.stage(ctx, psm, q);
        ctx.sync();
        const auto src = p.pol.getter(psm, q);
        filter_topk(ctx, keys, p.f, src, begin, end, p.out + w * p.f.k);
    }
}

template <class Ctx, class Pol>
EK_FN void select_runs_body(Ctx& ctx, unsigned char* smem, const SelectParams<Pol>& p) {
    uint64_t* keys = reinterpret_cast<uint64_t*>(smem);
    unsigned char* psm = smem + align16(size_t(p.run) * sizeof(uint64_t));
    const int nt = ctx.nthreads(), tid = ctx.tid();
    for (int64_t w = ctx.block(); w < p.nqb * p.runs; w += ctx.nblocks()) {
        const int64_t qb = w / p.runs, r = w - qb * p.runs;
        const int64_t q = p.q0 + qb;
        ctx.sync();
        p.pol.stage(ctx, psm, q);
        ctx.sync();
        const auto src = p.pol.getter(psm, q);
        for (int e = tid; e < p.run; e += nt) {
            const int64_t i = r * p.run + e;
            uint64_t key = kNoKey;
            if (i < p.len && !src.get(i, key)) key = kNoKey;
            keys[e] = key;
        }
        ctx.sync();
        block_sort(ctx, keys, p.run);
        uint64_t* dst = p.runs_out + w * p.run;
        for (int e = tid; e < p.run; e += nt) dst[e] = keys[e];
    }
}

template <class Pol>
struct SelectFilterKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const SelectParams<Pol>& p) {
        select_filter_body(ctx, smem, p);
    }
};

template <class Pol>
struct SelectRunsKernel {
    static constexpr int kMaxThreads = 256;
    template <class Ctx>
    static EK_FN void body(Ctx& ctx, unsigned char* smem, const SelectParams<Pol>& p) {
        select_runs_body(ctx, smem, p);
    }
};

// ---- keys -> (distance, id) -------------------------------------------------------------------

enum FinishMode : int { kFinishFloat = 0, kFinishFastScan = 1 };

struct FinishParams {
    const uint64_t* keys;  // nq x k
    int64_t nq, k, m;
    int mode, largest;
    int64_t pad_id;        // id of a missing result
    const float* scale;    // fast scan: nq x (b, 1/a)
    float* out_d;
    int64_t* out_i;
};

template <class Ctx>
EK_FN void finish_body(Ctx& ctx, const FinishParams& p) {
    const int64_t all = p.nq * p.k;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < all; e += stride) {
        const uint64_t key = p.keys[e];
        if (key == kNoKey) {
            p.out_d[e] = p.largest ? -inf_f() : inf_f();
            p.out_i[e] = p.pad_id;
            continue;
        }
        float d;
        if (p.mode == kFinishFastScan) {
            const int64_t q = e / p.k;
            const int64_t s = key_value(key);
            const int64_t sum = p.largest ? 255 * p.m - s : s;
            d = fma_rn(float(sum), p.scale[2 * q + 1], p.scale[2 * q]);
        } else {
            const float v = order_float(key_value(key));
            d = p.largest ? -v : v;
        }
        p.out_d[e] = d;
        p.out_i[e] = key_id(key);
    }
}

EK_KERNEL(FinishKernel, FinishParams, finish_body(ctx, p);)

// ---- fast scan: table quantisation, pack, unpack -----------------------------------------------

struct FsQuantParams {
    const float* lut;  // nq x m x 16
    int64_t nq, m, m2;
    int largest;
    uint8_t* qlut;     // nq x m2 x 16
    float* scale;      // nq x (b, 1/a)
};

inline size_t fs_quant_smem(int64_t m) { return size_t(2 * m + 2) * sizeof(float); }

// faiss's round_uint8_per_column, as csrc/pq/pq_driver.cpp's quantize_fastscan_lut.
template <class Ctx>
EK_FN void fs_quant_body(Ctx& ctx, unsigned char* smem, const FsQuantParams& p) {
    float* mins = reinterpret_cast<float*>(smem);
    float* spans = mins + p.m;
    float* sh_a = spans + p.m;
    const int nt = ctx.nthreads(), tid = ctx.tid();
    for (int64_t q = ctx.block(); q < p.nq; q += ctx.nblocks()) {
        const float* t = p.lut + q * p.m * 16;
        ctx.sync();
        for (int64_t s = tid; s < p.m; s += nt) {
            float lo = t[s * 16], hi = t[s * 16];
            for (int j = 1; j < 16; ++j) {
                const float v = t[s * 16 + j];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            mins[s] = lo;
            spans[s] = sub_rn(hi, lo);
        }
        ctx.sync();
        if (tid == 0) {
            float max_span = 0.0f;
            for (int64_t s = 0; s < p.m; ++s)
                if (spans[s] > max_span) max_span = spans[s];
            float a = max_span > 0.0f ? div_rn(255.0f, max_span) : 0.0f;
            if (!finite_f(a)) a = 0.0f;
            float b = 0.0f;
            for (int64_t s = 0; s < p.m; ++s) b = add_rn(b, mins[s]);
            *sh_a = a;
            p.scale[2 * q] = b;
            p.scale[2 * q + 1] = a > 0.0f ? div_rn(1.0f, a) : 0.0f;
        }
        ctx.sync();
        const float a = *sh_a;
        uint8_t* out = p.qlut + q * p.m2 * 16;
        for (int64_t e = tid; e < p.m2 * 16; e += nt) {
            const int64_t s = e >> 4;
            int v = 0;
            if (s < p.m) {
                const float r = floor_f(add_rn(mul_rn(sub_rn(t[e], mins[s]), a), 0.5f));
                v = r >= 0.0f ? (r <= 255.0f ? int(r) : 255) : 0;  // NaN -> 0
                if (p.largest) v = 255 - v;
            }
            out[e] = uint8_t(v);
        }
    }
}

EK_KERNEL(FsQuantKernel, FsQuantParams, fs_quant_body(ctx, smem, p);)

struct FsPackParams {
    const uint8_t* in;  // pack: n x cs flat 4-bit codes; unpack: the packed bytes
    uint8_t* out;       // pack: the packed bytes; unpack: n x cs flat codes
    int64_t n, cs, blocks;
    unsigned last_mask;    // odd m: the unused high nibble of a row's last byte is ignored / zero
};

// One thread per packed byte: byte j < 16 of pair p in block b holds sub-quantizer 2p of vectors
// PERM0[j] (low nibble) and PERM0[j] + 16 (high), bytes 16..31 sub-quantizer 2p + 1.
template <class Ctx>
EK_FN void fs_pack_body(Ctx& ctx, const FsPackParams& p) {
    const int64_t per_block = 32 * p.cs, total = p.blocks * per_block;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        const int64_t b = e / per_block, rem = e - b * per_block;
        const int64_t pp = rem >> 5;
        const int jj = int(rem & 31), j = jj & 15;
        const int64_t v0 = b * 32 + fs_perm0(j), v1 = v0 + 16;
        const unsigned mask = pp == p.cs - 1 ? p.last_mask : 0xFFu;
        const unsigned x = v0 < p.n ? p.in[v0 * p.cs + pp] & mask : 0u;
        const unsigned y = v1 < p.n ? p.in[v1 * p.cs + pp] & mask : 0u;
        p.out[e] = uint8_t(jj < 16 ? ((x & 0x0Fu) | (y << 4)) : ((x >> 4) | (y & 0xF0u)));
    }
}

template <class Ctx>
EK_FN void fs_unpack_body(Ctx& ctx, const FsPackParams& p) {
    const int64_t total = p.n * p.cs;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        const int64_t i = e / p.cs, pp = e - i * p.cs;
        const int v = int(i & 31);
        const int at = fs_byte(v), shift = v >= 16 ? 4 : 0;
        const uint8_t* blk = p.in + (i >> 5) * 32 * p.cs;
        const unsigned lo = (blk[pp * 32 + at] >> shift) & 0xFu, hi = (blk[pp * 32 + 16 + at] >> shift) & 0xFu;
        unsigned byte = lo | (hi << 4);
        if (pp == p.cs - 1) byte &= p.last_mask;
        p.out[e] = uint8_t(byte);
    }
}

EK_KERNEL(FsPackKernel, FsPackParams, fs_pack_body(ctx, p);)
EK_KERNEL(FsUnpackKernel, FsPackParams, fs_unpack_body(ctx, p);)

// ---- train: deterministic centroid update ------------------------------------------------------

struct TrainParams {
    const float* x;
    int64_t n, dim, m, ksub, dsub;
    const int32_t* labels;  // m x n
    int64_t part, parts;    // points per counting-sort partition, partitions
    int32_t* counts;        // m x parts x ksub
    int64_t* starts;        // m x parts x ksub: first sorted slot of each label in a partition
    int64_t* offsets;       // m x (ksub + 1): first sorted slot of each label
    int32_t* perm;          // m x n: point ids sorted by label, stable
    float* cent;            // m x ksub x dsub, updated in place
};

template <class Ctx>
EK_FN void train_count_body(Ctx& ctx, unsigned char* smem, const TrainParams& p) {
    int* hist = reinterpret_cast<int*>(smem);
    const int nt = ctx.nthreads(), tid = ctx.tid();
    for (int64_t w = ctx.block(); w < p.m * p.parts; w += ctx.nblocks()) {
        const int64_t s = w / p.parts, pp = w - s * p.parts;
        const int64_t end = std::min(p.n, (pp + 1) * p.part);
        ctx.sync();
        for (int64_t j = tid; j < p.ksub; j += nt) hist[j] = 0;
        ctx.sync();
        for (int64_t i = pp * p.part + tid; i < end; i += nt) atomic_add_i32(&hist[p.labels[s * p.n + i]], 1);
        ctx.sync();
        for (int64_t j = tid; j < p.ksub; j += nt) p.counts[w * p.ksub + j] = hist[j];
    }
}

template <class Ctx>
EK_FN void train_scan_body(Ctx& ctx, unsigned char* smem, const TrainParams& p) {
    int64_t* tot = reinterpret_cast<int64_t*>(smem);
    int64_t* base = tot + p.ksub;
    const int nt = ctx.nthreads(), tid = ctx.tid();
    for (int64_t s = ctx.block(); s < p.m; s += ctx.nblocks()) {
        ctx.sync();
        for (int64_t j = tid; j < p.ksub; j += nt) {
            int64_t run = 0;
            for (int64_t pp = 0; pp < p.parts; ++pp) {
                const int64_t at = (s * p.parts + pp) * p.ksub + j;
                p.starts[at] = run;
                run += p.counts[at];
            }
            tot[j] = run;
        }
        ctx.sync();
        if (tid == 0) {
            int64_t off = 0;
            for (int64_t j = 0; j < p.ksub; ++j) {
                base[j] = off;
                p.offsets[s * (p.ksub + 1) + j] = off;
                off += tot[j];
            }
            p.offsets[s * (p.ksub + 1) + p.ksub] = off;
        }
        ctx.sync();
        for (int64_t j = tid; j < p.ksub; j += nt)
            for (int64_t pp = 0; pp < p.parts; ++pp) p.starts[(s * p.parts + pp) * p.ksub + j] += base[j];
    }
}

// Stable scatter of a partition's point ids: a chunk's point lands at its label's cursor plus its
// rank among the chunk's earlier points with the same label.
template <class Ctx>
EK_FN void train_scatter_body(Ctx& ctx, unsigned char* smem, const TrainParams& p) {
    int64_t* cursor = reinterpret_cast<int64_t*>(smem);
    int* lab = reinterpret_cast<int*>(cursor + p.ksub);
    const int nt = ctx.nthreads(), tid = ctx.tid();
    for (int64_t w = ctx.block(); w < p.m * p.parts; w += ctx.nblocks()) {
        const int64_t s = w / p.parts, pp = w - s * p.parts;
        const int64_t end = std::min(p.n, (pp + 1) * p.part);
        ctx.sync();
        for (int64_t j = tid; j < p.ksub; j += nt) cursor[j] = p.starts[w * p.ksub + j];
        for (int64_t c0 = pp * p.part; c0 < end; c0 += nt) {
            const int64_t i = c0 + tid;
            const int label = i < end ? p.labels[s * p.n + i] : -1;
            lab[tid] = label;
            ctx.sync();
            int rank = 0;
            bool last = true;
            if (label >= 0) {
                for (int u = 0; u < nt; ++u)
                    if (lab[u] == label) {
                        if (u < tid) ++rank;
                        else if (u > tid) last = false;
                    }
                p.perm[s * p.n + cursor[label] + rank] = int32_t(i);
            }
            ctx.sync();
            if (label >= 0 && last) cursor[label] += rank + 1;
            ctx.sync();
        }
    }
}

// One thread per centroid coordinate: the mean of its cluster in ascending point order, in double.
template <class Ctx>
EK_FN void train_update_body(Ctx& ctx, const TrainParams& p) {
    const int64_t total = p.m * p.ksub * p.dsub;
    const int64_t stride = ctx.nblocks() * ctx.nthreads();
    for (int64_t e = ctx.block() * ctx.nthreads() + ctx.tid(); e < total; e += stride) {
        const int64_t s = e / (p.ksub * p.dsub), rem = e - s * p.ksub * p.dsub;
        const int64_t j = rem / p.dsub, t = rem - j * p.dsub;
        const int64_t lo = p.offsets[s * (p.ksub + 1) + j], hi = p.offsets[s * (p.ksub + 1) + j + 1];
        if (hi == lo) continue;
        const int32_t* ids = p.perm + s * p.n;
        const float* xs = p.x + s * p.dsub + t;
        double sum = 0.0;
        for (int64_t at = lo; at < hi; ++at) sum = add_rn(sum, double(xs[int64_t(ids[at]) * p.dim]));
        p.cent[e] = float(div_rn(sum, double(hi - lo)));
    }
}

// Empty clusters, as the CPU: in label order, split the (first) largest cluster, nudging the copies.
template <class Ctx>
EK_FN void train_fix_body(Ctx& ctx, unsigned char* smem, const TrainParams& p) {
    int64_t* cnt = reinterpret_cast<int64_t*>(smem);
    int* pairs = reinterpret_cast<int*>(cnt + p.ksub);  // (empty, big) pairs
    int* npairs = pairs + 2 * p.ksub;
    const int nt = ctx.nthreads(), tid = ctx.tid();
    const float nudge = 1.0f / 1024;
    for (int64_t s = ctx.block(); s < p.m; s += ctx.nblocks()) {
        ctx.sync();
        if (tid == 0) {
            const int64_t* off = p.offsets + s * (p.ksub + 1);
            for (int64_t j = 0; j < p.ksub; ++j) cnt[j] = off[j + 1] - off[j];
            int np = 0;
            for (int64_t j = 0; j < p.ksub; ++j) {
                if (cnt[j] > 0) continue;
                int64_t big = 0;
                for (int64_t u = 1; u < p.ksub; ++u)
                    if (cnt[u] > cnt[big]) big = u;
                pairs[2 * np] = int(j);
                pairs[2 * np + 1] = int(big);
                ++np;
                cnt[j] = cnt[big] / 2;
                cnt[big] -= cnt[j];
            }
            *npairs = np;
        }
        ctx.sync();
        const int np = *npairs;
        float* c = p.cent + s * p.ksub * p.dsub;
        for (int64_t t = tid; t < p.dsub; t += nt) {  // each coordinate owned by one thread: in order
            const float up = (t % 2 == 0) ? 1 + nudge : 1 - nudge;
            for (int e = 0; e < np; ++e) {
                const int64_t j = pairs[2 * e], big = pairs[2 * e + 1];
                const float v = c[big * p.dsub + t];
                c[j * p.dsub + t] = mul_rn(v, up);
                c[big * p.dsub + t] = mul_rn(v, 2 - up);
            }
        }
    }
}

EK_KERNEL(TrainCountKernel, TrainParams, train_count_body(ctx, smem, p);)
EK_KERNEL(TrainScanKernel, TrainParams, train_scan_body(ctx, smem, p);)
EK_KERNEL(TrainScatterKernel, TrainParams, train_scatter_body(ctx, smem, p);)
EK_KERNEL(TrainUpdateKernel, TrainParams, train_update_body(ctx, p);)
EK_KERNEL(TrainFixKernel, TrainParams, train_fix_body(ctx, smem, p);)

// ==== orchestration (shared by the CUDA launchers and the host emulator) ==========================

constexpr int64_t kMaxDim = int64_t(1) << 31;
constexpr size_t kStageBudget = 96 * 1024;  // shared memory one block stages (two blocks per SM)

inline int64_t code_size(int64_t m, int nbits) { return (m * nbits + 7) / 8; }

inline int block_threads(const PqLaunch& l, int fallback) {
    const int t = l.threads > 0 ? l.threads : fallback;
    require_arg(t >= 32 && t <= 256 && (t & (t - 1)) == 0, "threads must be a power of two in [32, 256]");
    return t;
}

inline int64_t grid_cap(int sms, int64_t per_sm) { return int64_t(std::max(1, sms)) * per_sm; }

inline void check_pq_shape(int64_t dim, int64_t m, int nbits) {
    require_arg(nbits == 4 || nbits == 8, "nbits must be 4 or 8");
    require_arg(m >= 1, "m must be >= 1");
    require_arg(dim >= m && dim % m == 0, "dim must be a positive multiple of m");
    require_arg(dim < kMaxDim, "dim must be < 2^31");
}

// -- encode -----------------------------------------------------------------------------------

inline void run_encode_checks(int64_t n, int64_t dim, int64_t m, int nbits) {
    require_arg(n >= 0, "encode: negative shape");
    check_pq_shape(dim, m, nbits);
}

// Writes codes (n x cs) or, with labels, the m x n labels (train).
template <class Exec>
void run_assign(Exec& ex, const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
                uint8_t* codes, int32_t* labels, const PqLaunch& l) {
    if (n == 0) return;
    const int threads = block_threads(l, 128);
    EncodeParams p{};
    p.x = x;
    p.n = n;
    p.dim = dim;
    p.cent = cent;
    p.m = m;
    p.ksub = int64_t(1) << nbits;
    p.dsub = dim / m;
    p.nbits = nbits;
    p.spg = (codes && nbits == 4) ? 2 : 1;
    p.groups = ceil_div(m, p.spg);
    p.tiles = ceil_div(n, threads);
    p.codes = codes;
    p.cs = code_size(m, nbits);
    p.labels = labels;
    const size_t smem = encode_smem(p.ksub, p.dsub, threads);
    p.staged = l.smem == 0 ? 0 : (l.smem == 1 ? 1 : (smem <= std::min(kStageBudget, ex.smem_optin()) ? 1 : 0));
    require_arg(!p.staged || smem <= ex.smem_optin(), "encode: sub-space too large to stage in shared memory");
    const int64_t grid = std::min(p.groups * p.tiles, grid_cap(ex.sm_count(), 16));
    ex.template launch<EncodeKernel>(grid, threads, p.staged ? smem : 0, p);
}

template <class Exec>
void run_encode(Exec& ex, const float* x, int64_t n, int64_t dim, const float* cent, int64_t m, int nbits,
                uint8_t* codes, const PqLaunch& l) {
    run_encode_checks(n, dim, m, nbits);
    run_assign(ex, x, n, dim, cent, m, nbits, codes, nullptr, l);
}

// -- decode -----------------------------------------------------------------------------------

inline void run_decode_checks(int64_t n, int64_t dim, int64_t m, int nbits) {
    require_arg(n >= 0, "decode: negative shape");
    check_pq_shape(dim, m, nbits);
}

template <class Exec>
void run_decode(Exec& ex, const uint8_t* codes, int64_t n, const float* cent, int64_t dim, int64_t m,
                int nbits, float* out, const PqLaunch& l) {
    run_decode_checks(n, dim, m, nbits);
    if (n == 0) return;
    const int threads = block_threads(l, 256);
    DecodeParams p{codes, n, dim, m, int64_t(1) << nbits, dim / m, code_size(m, nbits), nbits, cent, out};
    const int64_t grid = std::min(ceil_div(n * dim, threads), grid_cap(ex.sm_count(), 32));
    ex.template launch<DecodeKernel>(grid, threads, 0, p);
}

// -- distance tables --------------------------------------------------------------------------

inline void run_tables_checks(int64_t n, int64_t dim, int64_t m, int nbits) {
    require_arg(n >= 0, "distance_tables: negative shape");
    check_pq_shape(dim, m, nbits);
}

template <class Exec>
void run_distance_tables(Exec& ex, const float* x, int64_t n, int64_t dim, const float* cent, int64_t m,
                         int nbits, bool ip, float* out, const PqLaunch& l) {
    run_tables_checks(n, dim, m, nbits);
    if (n == 0) return;
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m;
    const int threads = std::max<int>(block_threads(l, 256), int(ksub));  // a column per centroid
    const int qb = l.queries_per_block > 0 ? std::min(l.queries_per_block, kTabMaxQb) : kTabMaxQb;
    TablesParams p{};
    p.x = x;
    p.n = n;
    p.dim = dim;
    p.cent = cent;
    p.m = m;
    p.ksub = ksub;
    p.dsub = dsub;
    p.ip = ip ? 1 : 0;
    p.mode = dsub == 12 ? kTabDot12 : ((dsub == 4 || dsub == 8 || (dsub == 2 && ksub == 256)) ? kTabFused : kTabPlain);
    p.qb = qb;
    p.qtiles = ceil_div(n, (threads / ksub) * qb);
    p.out = out;
    const int64_t grid = std::min(m * p.qtiles, grid_cap(ex.sm_count(), 16));
    ex.template launch<TablesKernel>(grid, threads, tables_smem(ksub, threads, qb), p);
}

// -- adc_distances ----------------------------------------------------------------------------

inline void run_adc_checks(int64_t nq, int64_t n, int64_t m, int nbits) {
    require_arg(nq >= 0 && n >= 0, "adc: negative shape");
    require_arg(nbits == 4 || nbits == 8, "nbits must be 4 or 8");
    require_arg(m >= 1, "m must be >= 1");
}

inline int row_load(const uint8_t* codes, int64_t cs) {
    if (cs % 16 == 0 && aligned_to(codes, 16)) return kRowVec16;
    if (cs % 4 == 0 && aligned_to(codes, 4)) return kRowWords;
    return kRowBytes;
}

template <class Exec>
void run_adc_distances(Exec& ex, const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                       int nbits, float* out, const PqLaunch& l) {
    run_adc_checks(nq, n, m, nbits);
    if (nq == 0 || n == 0) return;
    const int threads = block_threads(l, 256);
    const size_t lbytes = size_t(m << nbits) * sizeof(float);
    const size_t budget = std::min(kStageBudget, ex.smem_optin());
    AdcParams p{};
    p.lut = lut;
    p.nq = nq;
    p.codes = codes;
    p.n = n;
    p.m = m;
    p.cs = code_size(m, nbits);
    p.nbits = nbits;
    p.load = row_load(codes, p.cs);
    p.staged = l.smem == 0 ? 0 : (l.smem == 1 ? 1 : (lbytes <= budget ? 1 : 0));
    int qg = l.queries_per_block > 0 ? std::min(l.queries_per_block, kAdcMaxQg) : kAdcMaxQg;
    if (p.staged) qg = int(std::max<int64_t>(1, std::min<int64_t>(qg, int64_t(budget / lbytes))));
    else if (l.queries_per_block <= 0) qg = 1;
    qg = int(std::min<int64_t>(qg, nq));
    p.qg = qg;
    require_arg(!p.staged || size_t(qg) * lbytes <= ex.smem_optin(), "adc: tables too large for shared memory");
    p.groups = ceil_div(nq, qg);
    // enough tiles to fill the GPU, each long enough to pay for staging its tables
    const int64_t want = ceil_div(grid_cap(ex.sm_count(), 4), p.groups);
    p.tile = std::max<int64_t>(threads, std::max<int64_t>(ceil_div(n, std::max<int64_t>(1, want)), int64_t(threads) * 16));
    p.tile = std::min<int64_t>(p.tile, ceil_div(n, threads) * threads);
    p.tiles = ceil_div(n, p.tile);
    p.out = out;
    const int64_t grid = std::min(p.tiles * p.groups, grid_cap(ex.sm_count(), 8));
    ex.template launch<AdcDistancesKernel>(grid, threads, p.staged ? size_t(qg) * lbytes : 0, p);
}

// -- top-k selection over a policy -------------------------------------------------------------

constexpr int kFilterMaxCap = 8192;  // filter path: key buffer (64 KB)

struct SelectPlan {
    int path, threads, ipt, cap, run;
    int64_t parts, batch;
    size_t smem;
};

// len items per query; out_keys: nq x k (ascending keys, kNoKey-padded).
template <class Exec, class Pol>
void run_select(Exec& ex, const Pol& pol, int64_t nq, int64_t len, int64_t k, uint32_t tau0,
                uint64_t* out_keys, const PqLaunch& l, bool ordered) {
    const int sms = std::max(1, ex.sm_count());
    const int threads = block_threads(l, 256);
    const int ipt = l.items_per_thread > 0 ? l.items_per_thread : 4;
    require_arg(ipt <= 64, "items_per_thread must be in [1, 64]");
    require_arg(l.path >= 0 && l.path <= 2, "path must be 0, 1 or 2");
    require_arg(l.partitions >= 0 && l.partitions <= (int64_t(1) << 20), "partitions must be in [0, 2^20]");
    const int64_t chunk = int64_t(threads) * ipt;
    const int64_t cap = pow2_at_least64(k + chunk);
    const size_t psm = pol.smem_bytes();
    const size_t fsmem = align16(filter_smem(int(std::min<int64_t>(cap, 1 << 30)))) + psm;
    const bool filter_ok = ordered && cap <= kFilterMaxCap && fsmem <= ex.smem_optin();
    int path = l.path ? l.path : (filter_ok ? 1 : 2);
    require_arg(path == 2 || filter_ok, "k = " + std::to_string(k) + " is too large for the filter path");

    if (path == 1) {
        const int64_t target = int64_t(sms) * 4;
        int64_t parts = l.partitions;
        if (parts == 0) {
            parts = 1;
            if (nq < target)
                parts = std::max<int64_t>(1, std::min(ceil_div(target, nq), len / std::max(4 * chunk, 8 * k)));
        }
        SelectParams<Pol> p{};
        p.pol = pol;
        p.f = FilterShape{int(cap), ipt, k, tau0};
        p.nq = nq;
        p.len = len;
        p.parts = parts;
        const int64_t grid_max = grid_cap(sms, 8);
        if (parts == 1) {
            p.out = out_keys;
            ex.template launch<SelectFilterKernel<Pol>>(std::min(nq, grid_max), threads, fsmem, p);
            return;
        }
        Scratch<Exec> keys(ex, size_t(nq) * size_t(parts) * size_t(k) * sizeof(uint64_t));
        p.out = keys.template as<uint64_t>();
        ex.template launch<SelectFilterKernel<Pol>>(std::min(nq * parts, grid_max), threads, fsmem, p);
        MergeParams mp{FilterShape{int(cap), ipt, k, 0xFFFFFFFFu}, nq, parts, p.out, out_keys};
        ex.template launch<FilterMergeKernel>(std::min(nq, grid_max), threads, align16(filter_smem(int(cap))), mp);
        return;
    }

    // runs of 2048 keys (16 KB), or fewer when there are fewer items (rerank candidate lists)
    const int run = l.run > 0 ? l.run : int(std::min<int64_t>(2048, std::max<int64_t>(2 * threads, pow2_at_least64(len))));
    require_arg(run >= 2 * threads && run <= 8192 && (run & (run - 1)) == 0,
                "run must be a power of two in [2 * threads, 8192]");
    const size_t rsmem = align16(size_t(run) * sizeof(uint64_t)) + psm;
    require_arg(rsmem <= ex.smem_optin(), "top-k: tables too large for shared memory");
    const int64_t runs = pow2_at_least64(ceil_div(len, run));
    const int64_t total = runs * run;
    const int64_t budget = l.batch_bytes > 0 ? l.batch_bytes : (int64_t(256) << 20);
    const int64_t nqb_max = std::max<int64_t>(1, std::min<int64_t>(nq, budget / (2 * total * 8)));
    Scratch<Exec> bufa(ex, size_t(nqb_max) * size_t(total) * sizeof(uint64_t));
    Scratch<Exec> bufb(ex, size_t(nqb_max) * size_t(total) * sizeof(uint64_t));
    const int64_t grid_max = grid_cap(sms, 8);
    for (int64_t q0 = 0; q0 < nq; q0 += nqb_max) {
        const int64_t nqb = std::min(nqb_max, nq - q0);
        SelectParams<Pol> p{};
        p.pol = pol;
        p.f = FilterShape{0, 0, k, tau0};
        p.nq = nq;
        p.len = len;
        p.run = run;
        p.q0 = q0;
        p.nqb = nqb;
        p.runs = runs;
        p.runs_out = bufa.template as<uint64_t>();
        ex.template launch<SelectRunsKernel<Pol>>(std::min(nqb * runs, grid_max), threads, rsmem, p);
        uint64_t* src = bufa.template as<uint64_t>();
        uint64_t* dst = bufb.template as<uint64_t>();
        for (int64_t width = run; width < total; width *= 2) {
            const int64_t all = nqb * total;
            const int64_t g = std::min(ceil_div(all, threads), grid_cap(sms, 32));
            ex.template launch<FillKernel>(g, threads, 0, FillParams{dst, all});
            ex.template launch<RankMergeKernel>(g, threads, 0, RankMergeParams{src, dst, nqb, total, width, k});
            std::swap(src, dst);
        }
        const int64_t g = std::min(ceil_div(nqb * k, threads), grid_cap(sms, 32));
        ex.template launch<TakeKernel>(g, threads, 0, TakeParams{src, nqb, total, k, out_keys + q0 * k});
    }
}

template <class Exec>
void run_finish(Exec& ex, const uint64_t* keys, int64_t nq, int64_t k, int64_t m, int mode, bool largest,
                int64_t pad_id, const float* scale, float* out_d, int64_t* out_i) {
    FinishParams p{keys, nq, k, m, mode, largest ? 1 : 0, pad_id, scale, out_d, out_i};
    const int64_t grid = std::min(ceil_div(nq * k, 256), grid_cap(ex.sm_count(), 32));
    ex.template launch<FinishKernel>(grid, 256, 0, p);
}

// -- adc_topk ---------------------------------------------------------------------------------

inline void run_adc_topk_checks(int64_t nq, int64_t n, int64_t m, int nbits, int64_t k) {
    run_adc_checks(nq, n, m, nbits);
    require_arg(n < kPqMaxTopkItems, "the CUDA PQ top-k takes fewer than 2^32 - 1 codes");
    require_arg(k >= 1 && k <= n, "k must be in [1, " + std::to_string(n) + "]");
}

template <class Exec>
void run_adc_topk(Exec& ex, const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                  int nbits, int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& l) {
    run_adc_topk_checks(nq, n, m, nbits, k);
    if (nq == 0) return;
    AdcPolicy pol{};
    pol.lut = lut;
    pol.codes = codes;
    pol.m = m;
    pol.cs = code_size(m, nbits);
    pol.nbits = nbits;
    pol.load = row_load(codes, pol.cs);
    pol.flip = largest ? 0x80000000u : 0u;
    const size_t lbytes = size_t(m << nbits) * sizeof(float);
    // the table next to a filter buffer of up to 32 KB (or a sort run)
    pol.staged = l.smem == 0 ? 0 : (l.smem == 1 ? 1 : (lbytes + 33 * 1024 <= ex.smem_optin() ? 1 : 0));
    Scratch<Exec> keys(ex, size_t(nq) * size_t(k) * sizeof(uint64_t));
    run_select(ex, pol, nq, n, k, 0xFFFFFFFFu, keys.template as<uint64_t>(), l, true);
    run_finish(ex, keys.template as<uint64_t>(), nq, k, m, kFinishFloat, largest,
               std::numeric_limits<int64_t>::max(), nullptr, out_d, out_i);
}

// -- fast scan ---------------------------------------------------------------------------------

inline int64_t fastscan_bytes(int64_t n, int64_t m) { return ceil_div(n, 32) * 32 * ((m + 1) / 2); }

inline void run_fs_pack_checks(int64_t n, int64_t m) {
    require_arg(n >= 0, "fast scan: n must be >= 0");
    require_arg(m >= 1, "m must be >= 1");
}

template <class Exec>
void run_pack_fastscan(Exec& ex, const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed,
                       const PqLaunch& l) {
    run_fs_pack_checks(n, m);
    const int64_t total = fastscan_bytes(n, m);
    if (total == 0) return;
    const int threads = block_threads(l, 256);
    FsPackParams p{codes, packed, n, (m + 1) / 2, ceil_div(n, 32), (m & 1) ? 0x0Fu : 0xFFu};
    ex.template launch<FsPackKernel>(std::min(ceil_div(total, threads), grid_cap(ex.sm_count(), 32)), threads, 0, p);
}

template <class Exec>
void run_unpack_fastscan(Exec& ex, const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes,
                         const PqLaunch& l) {
    run_fs_pack_checks(n, m);
    if (n == 0) return;
    const int threads = block_threads(l, 256);
    FsPackParams p{packed, codes, n, (m + 1) / 2, ceil_div(n, 32), (m & 1) ? 0x0Fu : 0xFFu};
    ex.template launch<FsUnpackKernel>(std::min(ceil_div(n * p.cs, threads), grid_cap(ex.sm_count(), 32)),
                                       threads, 0, p);
}

inline void run_fs_topk_checks(int64_t nq, int64_t n, int64_t m, int64_t k) {
    require_arg(nq >= 0, "fast scan: negative shape");
    require_arg(m >= 1 && m <= 256, "fast-scan search takes 1 <= m <= 256 sub-quantizers");
    require_arg(n >= 1, "n must be >= 1");
    require_arg(n < kPqMaxTopkItems, "the CUDA PQ top-k takes fewer than 2^32 - 1 codes");
    require_arg(k >= 1 && k <= n, "k must be in [1, " + std::to_string(n) + "]");
}

template <class Exec>
void run_fastscan_topk(Exec& ex, const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                       int64_t k, bool largest, float* out_d, int64_t* out_i, const PqLaunch& l) {
    run_fs_topk_checks(nq, n, m, k);
    if (nq == 0) return;
    const int64_t m2 = m + (m & 1);
    Scratch<Exec> qlut(ex, size_t(nq) * size_t(m2) * 16);
    Scratch<Exec> scale(ex, size_t(nq) * 2 * sizeof(float));
    FsQuantParams qp{lut, nq, m, m2, largest ? 1 : 0, qlut.template as<uint8_t>(), scale.template as<float>()};
    ex.template launch<FsQuantKernel>(std::min(nq, grid_cap(ex.sm_count(), 16)), 64, fs_quant_smem(m), qp);
    FastScanPolicy pol{qlut.template as<uint8_t>(), packed, m2};
    Scratch<Exec> keys(ex, size_t(nq) * size_t(k) * sizeof(uint64_t));
    run_select(ex, pol, nq, n, k, 0xFFFFFFFFu, keys.template as<uint64_t>(), l, true);
    run_finish(ex, keys.template as<uint64_t>(), nq, k, m, kFinishFastScan, largest, -1,
               scale.template as<float>(), out_d, out_i);
}

inline void run_fs_rerank_checks(int64_t nq, int64_t n, int64_t m, int64_t r, int64_t k) {
    require_arg(nq >= 0, "rerank: negative shape");
    require_arg(m >= 1 && m <= 256, "fast-scan search takes 1 <= m <= 256 sub-quantizers");
    require_arg(n >= 1 && n < kPqMaxTopkItems, "n must be in [1, 2^32 - 1)");
    require_arg(r >= 1 && r <= n, "the candidate lists must hold between 1 and n ids");
    require_arg(k >= 1 && k <= r, "k must be in [1, " + std::to_string(r) + "]");
}

template <class Exec>
void run_fastscan_rerank(Exec& ex, const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                         const int64_t* cand, int64_t r, int64_t k, bool largest, float* out_d,
                         int64_t* out_i, const PqLaunch& l) {
    run_fs_rerank_checks(nq, n, m, r, k);
    if (nq == 0) return;
    RerankPolicy pol{};
    pol.lut = lut;
    pol.packed = packed;
    pol.cand = cand;
    pol.n = n;
    pol.m = m;
    pol.m2 = m + (m & 1);
    pol.r = r;
    pol.staged = l.smem == 0 ? 0 : 1;
    pol.flip = largest ? 0x80000000u : 0u;
    PqLaunch ls = l;
    ls.path = 2;  // candidate ids are not ascending: the sort path
    Scratch<Exec> keys(ex, size_t(nq) * size_t(k) * sizeof(uint64_t));
    run_select(ex, pol, nq, r, k, 0xFFFFFFFFu, keys.template as<uint64_t>(), ls, false);
    run_finish(ex, keys.template as<uint64_t>(), nq, k, m, kFinishFloat, largest, -1, nullptr, out_d, out_i);
}

// -- train ------------------------------------------------------------------------------------

inline void run_train_checks(int64_t n, int64_t dim, int64_t m, int nbits, int iterations) {
    require_arg(n >= 1, "train: x must not be empty");
    require_arg(n < (int64_t(1) << 31), "train: the CUDA k-means takes fewer than 2^31 points");
    require_arg(iterations >= 0, "iterations must be >= 0");
    check_pq_shape(dim, m, nbits);
}

template <class Exec>
void run_train(Exec& ex, const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
               const float* init, float* out, const PqLaunch& l) {
    run_train_checks(n, dim, m, nbits, iterations);
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m;
    ex.copy(out, init, size_t(m * ksub * dsub) * sizeof(float));
    if (iterations == 0) return;
    const int threads = block_threads(l, 256);
    TrainParams p{};
    p.x = x;
    p.n = n;
    p.dim = dim;
    p.m = m;
    p.ksub = ksub;
    p.dsub = dsub;
    p.part = l.train_part > 0 ? l.train_part : 4096;
    p.parts = ceil_div(n, p.part);
    Scratch<Exec> labels(ex, size_t(m * n) * sizeof(int32_t));
    Scratch<Exec> counts(ex, size_t(m * p.parts * ksub) * sizeof(int32_t));
    Scratch<Exec> starts(ex, size_t(m * p.parts * ksub) * sizeof(int64_t));
    Scratch<Exec> offsets(ex, size_t(m * (ksub + 1)) * sizeof(int64_t));
    Scratch<Exec> perm(ex, size_t(m * n) * sizeof(int32_t));
    p.labels = labels.template as<int32_t>();
    p.counts = counts.template as<int32_t>();
    p.starts = starts.template as<int64_t>();
    p.offsets = offsets.template as<int64_t>();
    p.perm = perm.template as<int32_t>();
    p.cent = out;
    const int sms = ex.sm_count();
    const int64_t work = m * p.parts;
    for (int it = 0; it < iterations; ++it) {
        run_assign(ex, x, n, dim, out, m, nbits, nullptr, labels.template as<int32_t>(), l);
        ex.template launch<TrainCountKernel>(std::min(work, grid_cap(sms, 8)), threads, size_t(ksub) * sizeof(int), p);
        ex.template launch<TrainScanKernel>(std::min(m, grid_cap(sms, 8)), threads, size_t(2 * ksub) * sizeof(int64_t), p);
        ex.template launch<TrainScatterKernel>(std::min(work, grid_cap(sms, 8)), threads,
                                               size_t(ksub) * sizeof(int64_t) + size_t(threads) * sizeof(int), p);
        ex.template launch<TrainUpdateKernel>(std::min(ceil_div(m * ksub * dsub, threads), grid_cap(sms, 32)),
                                              threads, 0, p);
        ex.template launch<TrainFixKernel>(std::min(m, grid_cap(sms, 8)), std::min(threads, 64),
                                           size_t(ksub) * sizeof(int64_t) + size_t(2 * ksub + 1) * sizeof(int), p);
    }
}

}  // namespace embkern::cuda::pq
