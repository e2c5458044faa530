#include "pq/pq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace embkern::pq {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// [m][ksub][dsub] -> [m][dsub][ksub]
std::vector<float> transpose(const float* cent, int64_t m, int64_t ksub, int64_t dsub) {
    std::vector<float> ct(static_cast<size_t>(m * ksub * dsub));
    for (int64_t s = 0; s < m; ++s)
        for (int64_t j = 0; j < ksub; ++j)
            for (int64_t t = 0; t < dsub; ++t)
                ct[(s * dsub + t) * ksub + j] = cent[(s * ksub + j) * dsub + t];
    return ct;
}

int64_t code_size(int64_t m, int nbits) { return (m * nbits + 7) / 8; }

void pack_codes(const int32_t* idx, int64_t n, int64_t m, int nbits, uint8_t* codes) {
    const int64_t cs = code_size(m, nbits);
    for (int64_t i = 0; i < n; ++i) {
        uint8_t* row = codes + i * cs;
        const int32_t* id = idx + i * m;
        if (nbits == 8) {
            for (int64_t s = 0; s < m; ++s) row[s] = static_cast<uint8_t>(id[s]);
        } else {
            std::fill(row, row + cs, 0);
            for (int64_t s = 0; s < m; ++s) row[s >> 1] |= static_cast<uint8_t>(id[s] << ((s & 1) * 4));
        }
    }
}

int code_at(const uint8_t* row, int64_t s, int nbits) {
    return nbits == 8 ? row[s] : (row[s >> 1] >> ((s & 1) * 4)) & 0xF;
}

// Lane-major tables for queries [q0, q0 + nl): lut_t[s][j][lane] (negated when `negate`).
void lanes_lut(const float* lut, int64_t q0, int64_t nl, int64_t m, int64_t ksub, bool negate,
               float* lut_t) {
    const int64_t L = kPqLutLanes;
    std::fill(lut_t, lut_t + m * ksub * L, 0.0f);
    for (int64_t l = 0; l < nl; ++l) {
        const float* src = lut + (q0 + l) * m * ksub;
        for (int64_t e = 0; e < m * ksub; ++e) lut_t[e * L + l] = negate ? -src[e] : src[e];
    }
}

}  // namespace

void encode(const float* x, int64_t n, int64_t dim, const float* centroids, int64_t m, int nbits,
            uint8_t* codes) {
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m, cs = code_size(m, nbits);
    const std::vector<float> ct = transpose(centroids, m, ksub, dsub);
    auto assign = kernels().pq.assign;
    const int64_t rows = 1024;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows, rn = std::min(rows, n - r0);
        std::vector<int32_t> idx(static_cast<size_t>(rn * m));
        assign(x + r0 * dim, rn, dim, ct.data(), m, ksub, idx.data());
        pack_codes(idx.data(), rn, m, nbits, codes + r0 * cs);
    });
}

void decode(const uint8_t* codes, int64_t n, const float* centroids, int64_t dim, int64_t m,
            int nbits, float* out) {
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m, cs = code_size(m, nbits);
    const int64_t rows = 4096;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        for (int64_t i = t * rows; i < std::min(n, (t + 1) * rows); ++i)
            for (int64_t s = 0; s < m; ++s) {
                const float* c = centroids + (s * ksub + code_at(codes + i * cs, s, nbits)) * dsub;
                std::copy(c, c + dsub, out + i * dim + s * dsub);
            }
    });
}

void distance_tables(const float* x, int64_t n, int64_t dim, const float* centroids, int64_t m,
                     int nbits, bool ip, float* out) {
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m;
    const std::vector<float> ct = transpose(centroids, m, ksub, dsub);
    auto tables = kernels().pq.distance_tables;
    const int64_t rows = 64;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows, rn = std::min(rows, n - r0);
        tables(x + r0 * dim, rn, dim, ct.data(), m, ksub, ip, out + r0 * m * ksub);
    });
}

void adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                   int nbits, float* out) {
    const int64_t ksub = int64_t(1) << nbits, cs = code_size(m, nbits), L = kPqLutLanes;
    auto tile = kernels().pq.adc_tile;
    const int64_t ngroups = ceil_div(nq, L);
    const int64_t cb = 4096;
    const int64_t nparts = ceil_div(n, cb);
    parallel_for(ngroups * nparts, [&](int64_t t) {
        const int64_t g = t / nparts, p = t % nparts;
        const int64_t q0 = g * L, nl = std::min(L, nq - q0);
        const int64_t j0 = p * cb, jn = std::min(cb, n - j0);
        std::vector<float> lut_t(static_cast<size_t>(m * ksub * L));
        lanes_lut(lut, q0, nl, m, ksub, false, lut_t.data());
        tile(lut_t.data(), nl, codes + j0 * cs, jn, m, nbits, out + q0 * n + j0, n);
    });
}

void adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
              int64_t k, bool largest, float* out_d, int64_t* out_i) {
    if (nq == 0) return;
    const int64_t ksub = int64_t(1) << nbits, cs = code_size(m, nbits), L = kPqLutLanes;
    auto scan = kernels().pq.adc_topk_scan;
    const int64_t threads = get_num_threads();
    const int64_t ngroups = ceil_div(nq, L);
    // Split the database too when there are fewer lane groups than threads.
    int64_t parts = ngroups >= threads ? 1 : ceil_div(2 * threads, ngroups);
    parts = std::max<int64_t>(1, std::min(parts, ceil_div(n, 8192)));
    const int64_t part_len = ceil_div(n, parts);
    parts = ceil_div(n, part_len);
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> hd(static_cast<size_t>(parts * nq * k), inf);
    std::vector<int64_t> hi(static_cast<size_t>(parts * nq * k), std::numeric_limits<int64_t>::max());
    parallel_for(ngroups * parts, [&](int64_t t) {
        const int64_t g = t / parts, p = t % parts;
        const int64_t q0 = g * L, nl = std::min(L, nq - q0);
        const int64_t j0 = p * part_len, jn = std::min(part_len, n - j0);
        std::vector<float> lut_t(static_cast<size_t>(m * ksub * L));
        lanes_lut(lut, q0, nl, m, ksub, largest, lut_t.data());
        const size_t off = static_cast<size_t>((p * nq + q0) * k);
        scan(lut_t.data(), nl, codes + j0 * cs, jn, m, nbits, k, j0, hd.data() + off, hi.data() + off);
    });
    parallel_for(nq, [&](int64_t i) {
        std::vector<int64_t> order(static_cast<size_t>(parts * k));
        std::vector<float> keys(static_cast<size_t>(parts * k));
        std::vector<int64_t> ids(static_cast<size_t>(parts * k));
        for (int64_t p = 0; p < parts; ++p) {
            std::copy_n(hd.data() + (p * nq + i) * k, k, keys.data() + p * k);
            std::copy_n(hi.data() + (p * nq + i) * k, k, ids.data() + p * k);
        }
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
            return keys[a] < keys[b] || (keys[a] == keys[b] && ids[a] < ids[b]);
        });
        for (int64_t j = 0; j < k; ++j) {
            const float v = keys[order[j]];
            out_d[i * k + j] = largest ? -v : v;
            out_i[i * k + j] = ids[order[j]];
        }
    });
}

// ---- 4-bit fast scan --------------------------------------------------------------------------

namespace {

// Vector (inside a 32-group) whose code sits in the low nibble of byte j of a sub-quantizer's 16.
constexpr int kPerm0[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};
// Vectors in a packed block, and queries per fast-scan task (their tables stay in L1/L2).
constexpr int64_t kFsBlock = 32;
constexpr int64_t kFsQueryGroup = 32;

// faiss's round_uint8_per_column for one query's table t (m x 16): min_s and span_s per row,
// a = 255 / max span, b = sum of the mins in order, Tq = floor((t - min_s) * a + 0.5) (float32,
// no FMA: the driver is built with -ffp-contract=off). a = 0 (constant table, or a scale that
// overflows) makes every Tq 0. "largest" stores 255 - Tq, so the kernels always keep the smallest
// sums: key = S (l2) or 255 * m - S (largest). Rows m..m2-1 stay 0.
struct FsQueryScale {
    float b, one_a;
};

FsQueryScale quantize_fastscan_lut(const float* t, int64_t m, int64_t m2, bool largest,
                                   uint8_t* out) {
    float mins[kFastScanMaxM];
    float max_span = 0.0f;
    for (int64_t s = 0; s < m; ++s) {
        float lo = t[s * 16], hi = t[s * 16];
        for (int j = 1; j < 16; ++j) {
            lo = t[s * 16 + j] < lo ? t[s * 16 + j] : lo;
            hi = t[s * 16 + j] > hi ? t[s * 16 + j] : hi;
        }
        mins[s] = lo;
        const float span = hi - lo;
        if (span > max_span) max_span = span;
    }
    float a = max_span > 0.0f ? 255.0f / max_span : 0.0f;
    if (!std::isfinite(a)) a = 0.0f;
    FsQueryScale sc{0.0f, a > 0.0f ? 1.0f / a : 0.0f};
    for (int64_t s = 0; s < m; ++s) sc.b += mins[s];
    for (int64_t s = 0; s < m; ++s)
        for (int j = 0; j < 16; ++j) {
            const float scaled = (t[s * 16 + j] - mins[s]) * a;
            const float r = std::floor(scaled + 0.5f);
            const int v = r >= 0.0f ? (r <= 255.0f ? static_cast<int>(r) : 255) : 0;  // NaN -> 0
            out[s * 16 + j] = static_cast<uint8_t>(largest ? 255 - v : v);
        }
    std::fill(out + m * 16, out + m2 * 16, uint8_t(0));
    return sc;
}

}  // namespace

int64_t fastscan_bytes(int64_t n, int64_t m) { return ceil_div(n, kFsBlock) * kFsBlock * ((m + 1) / 2); }

// Byte p of a flat code holds sub-quantizers 2p (low nibble) and 2p + 1 (high nibble), so each
// byte feeds byte j of the pair's first 16 (low nibbles) and of its second 16 (high nibbles).
void pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed) {
    const int64_t cs = (m + 1) / 2, nblocks = ceil_div(n, kFsBlock), bb = kFsBlock * cs;
    const uint8_t last_mask = (m & 1) ? 0x0F : 0xFF;  // odd m: the last high nibble is unused
    const int64_t per_task = 256;
    parallel_for(ceil_div(nblocks, per_task), [&](int64_t t) {
        for (int64_t b = t * per_task; b < std::min(nblocks, (t + 1) * per_task); ++b) {
            uint8_t* out = packed + b * bb;
            for (int j = 0; j < 16; ++j) {
                const int64_t v0 = b * kFsBlock + kPerm0[j], v1 = v0 + 16;
                for (int64_t p = 0; p < cs; ++p) {
                    const uint8_t mask = p == cs - 1 ? last_mask : 0xFF;
                    const uint8_t x = v0 < n ? codes[v0 * cs + p] & mask : 0;
                    const uint8_t y = v1 < n ? codes[v1 * cs + p] & mask : 0;
                    out[p * 32 + j] = static_cast<uint8_t>((x & 0x0F) | (y << 4));
                    out[p * 32 + 16 + j] = static_cast<uint8_t>((x >> 4) | (y & 0xF0));
                }
            }
        }
    });
}

void unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes) {
    const int64_t cs = (m + 1) / 2, bb = kFsBlock * cs;
    const uint8_t last_mask = (m & 1) ? 0x0F : 0xFF;
    const int64_t rows = 8192;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        for (int64_t i = t * rows; i < std::min(n, (t + 1) * rows); ++i) {
            const int64_t v = i % kFsBlock, v16 = v % 16;
            const int64_t j = v16 < 8 ? 2 * v16 : 2 * (v16 - 8) + 1;  // kPerm0[j] == v16
            const int shift = v >= 16 ? 4 : 0;
            const uint8_t* blk = packed + (i / kFsBlock) * bb;
            uint8_t* row = codes + i * cs;
            for (int64_t p = 0; p < cs; ++p) {
                const int lo = (blk[p * 32 + j] >> shift) & 0x0F, hi = (blk[p * 32 + 16 + j] >> shift) & 0x0F;
                row[p] = static_cast<uint8_t>(lo | (hi << 4));
            }
            row[cs - 1] &= last_mask;
        }
    });
}

void fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                   int64_t k, bool largest, float* out_d, int64_t* out_i) {
    if (m < 1 || m > kFastScanMaxM)
        throw std::invalid_argument("fast-scan search takes 1 <= m <= 256 sub-quantizers");
    if (nq == 0) return;
    const int64_t m2 = m + (m & 1), nblocks = ceil_div(n, kFsBlock), bb = m2 * 16;
    std::vector<uint8_t> qlut(static_cast<size_t>(nq * m2 * 16));
    std::vector<FsQueryScale> scale(static_cast<size_t>(nq));
    parallel_for(ceil_div(nq, 64), [&](int64_t t) {
        for (int64_t q = t * 64; q < std::min(nq, (t + 1) * 64); ++q)
            scale[q] = quantize_fastscan_lut(lut + q * m * 16, m, m2, largest, qlut.data() + q * m2 * 16);
    });
    auto scan = kernels().pq.fastscan_topk_scan;
    const int64_t threads = get_num_threads();
    // Query groups share every code load; with fewer groups than threads the blocks are split
    // too. Results do not depend on the split: the merge below orders by (key, id).
    const int64_t group = std::max<int64_t>(1, std::min(kFsQueryGroup, ceil_div(nq, threads)));
    const int64_t ngroups = ceil_div(nq, group);
    int64_t parts = ngroups >= threads ? 1 : ceil_div(2 * threads, ngroups);
    parts = std::max<int64_t>(1, std::min(parts, ceil_div(nblocks, 64)));
    const int64_t part_blocks = ceil_div(nblocks, parts);
    parts = ceil_div(nblocks, part_blocks);
    std::vector<uint16_t> hs(static_cast<size_t>(parts * nq * k), uint16_t(0xFFFF));
    std::vector<int64_t> hi(static_cast<size_t>(parts * nq * k), std::numeric_limits<int64_t>::max());
    parallel_for(ngroups * parts, [&](int64_t t) {
        const int64_t g = t / parts, p = t % parts;
        const int64_t q0 = g * group, nl = std::min(group, nq - q0);
        const int64_t b0 = p * part_blocks, bn = std::min(part_blocks, nblocks - b0);
        const int64_t j0 = b0 * kFsBlock, nvalid = std::min(n - j0, bn * kFsBlock);
        const size_t off = static_cast<size_t>((p * nq + q0) * k);
        scan(qlut.data() + q0 * m2 * 16, nl, packed + b0 * bb, bn, m2, nvalid, k, j0,
             hs.data() + off, hi.data() + off);
    });
    parallel_for(nq, [&](int64_t q) {
        std::vector<std::pair<uint16_t, int64_t>> cand(static_cast<size_t>(parts * k));
        for (int64_t p = 0; p < parts; ++p)
            for (int64_t j = 0; j < k; ++j) {
                const size_t at = static_cast<size_t>((p * nq + q) * k + j);
                cand[static_cast<size_t>(p * k + j)] = {hs[at], hi[at]};
            }
        std::partial_sort(cand.begin(), cand.begin() + k, cand.end());
        for (int64_t j = 0; j < k; ++j) {
            const FsQueryScale& sc = scale[static_cast<size_t>(q)];
            const int64_t key = cand[static_cast<size_t>(j)].first;
            const int64_t sum = largest ? 255 * m - key : key;
            out_d[q * k + j] = std::fma(static_cast<float>(sum), sc.one_a, sc.b);
            out_i[q * k + j] = cand[static_cast<size_t>(j)].second;
        }
    });
}

// Lloyd's k-means on every sub-space at once, with Hamerly's bounds to skip the points whose
// nearest centroid cannot have changed. Each point keeps an upper bound u on its distance to its
// centroid and a lower bound l on its distance to every other one; when centroids move by delta,
// u grows by its centroid's move and l shrinks by the largest other move. A point is skipped only
// when u^2 (1 + eps) < l^2 (1 - eps), eps bounding the float32 rounding of the distances that
// assign() compares, so its float distances order the same way and the labels equal plain
// Lloyd's (the Numba fallback runs plain Lloyd and must agree). Sums stay in data order.
void train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
           float* centroids) {
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m;
    if (iterations <= 0 || n == 0) return;
    auto top2 = kernels().pq.assign_top2;
    // Sub-space-major copy of the data: xs[s] is n x dsub, contiguous.
    std::vector<float> xs(static_cast<size_t>(m * n * dsub));
    parallel_for(m, [&](int64_t s) {
        for (int64_t i = 0; i < n; ++i)
            std::copy(x + i * dim + s * dsub, x + i * dim + (s + 1) * dsub,
                      xs.data() + (s * n + i) * dsub);
    });
    // Relative error bound of a float32 squared distance (difference, square and dsub adds, each
    // rounded once), with a factor 4 to spare.
    const double eps = std::ldexp(static_cast<double>(dsub + 3), -22);
    std::vector<int32_t> labels(static_cast<size_t>(m * n));
    std::vector<double> upper(static_cast<size_t>(m * n)), lower(static_cast<size_t>(m * n));
    std::vector<double> move(static_cast<size_t>(m * ksub), 0.0);
    std::vector<double> move_max1(static_cast<size_t>(m), 0.0), move_max2(static_cast<size_t>(m), 0.0);
    std::vector<int64_t> move_arg(static_cast<size_t>(m), -1);
    std::vector<float> old(static_cast<size_t>(m * ksub * dsub));
    const int64_t rows = 2048, chunks = ceil_div(n, rows);

    for (int it = 0; it < iterations; ++it) {
        const std::vector<float> ct = transpose(centroids, m, ksub, dsub);
        parallel_for(m * chunks, [&](int64_t t) {
            const int64_t s = t / chunks, r0 = (t % chunks) * rows, rn = std::min(rows, n - r0);
            const float* xd = xs.data() + s * n * dsub;
            const float* cs = centroids + s * ksub * dsub;
            int32_t* lab = labels.data() + s * n;
            double* up = upper.data() + s * n;
            double* lo = lower.data() + s * n;
            // Points whose label may change; the first iteration recomputes every one.
            std::vector<int64_t> redo;
            redo.reserve(static_cast<size_t>(rn));
            for (int64_t i = r0; i < r0 + rn; ++i) {
                if (it == 0) {
                    redo.push_back(i);
                    continue;
                }
                const int32_t a = lab[i];
                const double u = up[i] + move[s * ksub + a];
                const double l = lo[i] - (a == move_arg[s] ? move_max2[s] : move_max1[s]);
                lo[i] = l;
                if (l > 0 && u * u * (1 + eps) < l * l * (1 - eps)) {
                    up[i] = u;
                    continue;
                }
                double du = 0;  // tighten u to the exact distance to the current centroid
                for (int64_t k = 0; k < dsub; ++k) {
                    const double diff = static_cast<double>(xd[i * dsub + k]) - cs[a * dsub + k];
                    du += diff * diff;
                }
                const double ut = std::sqrt(du) * (1 + 1e-12);
                up[i] = ut;
                if (l > 0 && ut * ut * (1 + eps) < l * l * (1 - eps)) continue;
                redo.push_back(i);
            }
            if (redo.empty()) return;
            const int64_t nr = static_cast<int64_t>(redo.size());
            std::vector<float> buf(static_cast<size_t>(nr * dsub)), d1(static_cast<size_t>(nr)),
                d2(static_cast<size_t>(nr));
            std::vector<int32_t> lr(static_cast<size_t>(nr));
            for (int64_t r = 0; r < nr; ++r)
                std::copy(xd + redo[r] * dsub, xd + (redo[r] + 1) * dsub, buf.data() + r * dsub);
            top2(buf.data(), nr, dsub, ct.data() + s * dsub * ksub, ksub, lr.data(), d1.data(), d2.data());
            for (int64_t r = 0; r < nr; ++r) {
                const int64_t i = redo[r];
                lab[i] = lr[r];
                up[i] = std::sqrt(static_cast<double>(d1[r]) / (1 - eps));
                lo[i] = std::sqrt(static_cast<double>(d2[r]) / (1 + eps));
            }
        });
        std::copy(centroids, centroids + m * ksub * dsub, old.begin());
        parallel_for(m, [&](int64_t s) {
            std::vector<double> sum(static_cast<size_t>(ksub * dsub), 0.0);
            std::vector<int64_t> count(static_cast<size_t>(ksub), 0);
            const float* xd = xs.data() + s * n * dsub;
            const int32_t* lab = labels.data() + s * n;
            for (int64_t i = 0; i < n; ++i) {
                ++count[lab[i]];
                for (int64_t t = 0; t < dsub; ++t) sum[lab[i] * dsub + t] += xd[i * dsub + t];
            }
            float* c = centroids + s * ksub * dsub;
            for (int64_t j = 0; j < ksub; ++j)
                if (count[j] > 0)
                    for (int64_t t = 0; t < dsub; ++t)
                        c[j * dsub + t] = static_cast<float>(sum[j * dsub + t] / count[j]);
            // Empty clusters: split the largest cluster in two, nudging the copies apart
            // (the usual k-means fix, as faiss does it).
            const float nudge = 1.0f / 1024;
            for (int64_t j = 0; j < ksub; ++j) {
                if (count[j] > 0) continue;
                const int64_t big = std::max_element(count.begin(), count.end()) - count.begin();
                for (int64_t t = 0; t < dsub; ++t) {
                    const float v = c[big * dsub + t];
                    const float up = (t % 2 == 0) ? 1 + nudge : 1 - nudge;
                    c[j * dsub + t] = v * up;
                    c[big * dsub + t] = v * (2 - up);
                }
                count[j] = count[big] / 2;
                count[big] -= count[j];
            }
            // How far each centroid moved (slightly over-estimated: bounds must stay bounds).
            double m1 = 0, m2 = 0;
            int64_t arg = -1;
            const float* o = old.data() + s * ksub * dsub;
            for (int64_t j = 0; j < ksub; ++j) {
                double d = 0;
                for (int64_t t = 0; t < dsub; ++t) {
                    const double diff = static_cast<double>(c[j * dsub + t]) - o[j * dsub + t];
                    d += diff * diff;
                }
                const double mv = std::sqrt(d) * (1 + 1e-12);
                move[s * ksub + j] = mv;
                if (mv > m1) {
                    m2 = m1;
                    m1 = mv;
                    arg = j;
                } else if (mv > m2) {
                    m2 = mv;
                }
            }
            move_max1[s] = m1;
            move_max2[s] = m2;
            move_arg[s] = arg;
        });
    }
}

}  // namespace embkern::pq
