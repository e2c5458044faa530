#include "pq/pq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

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

void train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
           float* centroids) {
    const int64_t ksub = int64_t(1) << nbits, dsub = dim / m;
    auto assign = kernels().pq.assign;
    // Sub-space-major copy of the data: xs[s] is n x dsub, contiguous.
    std::vector<float> xs(static_cast<size_t>(m * n * dsub));
    parallel_for(m, [&](int64_t s) {
        for (int64_t i = 0; i < n; ++i)
            std::copy(x + i * dim + s * dsub, x + i * dim + (s + 1) * dsub,
                      xs.data() + (s * n + i) * dsub);
    });
    std::vector<int32_t> labels(static_cast<size_t>(m * n));
    const int64_t rows = 2048, chunks = ceil_div(n, rows);
    for (int it = 0; it < iterations; ++it) {
        std::vector<float> ct = transpose(centroids, m, ksub, dsub);
        parallel_for(m * chunks, [&](int64_t t) {
            const int64_t s = t / chunks, r0 = (t % chunks) * rows, rn = std::min(rows, n - r0);
            assign(xs.data() + (s * n + r0) * dsub, rn, dsub, ct.data() + s * dsub * ksub, 1, ksub,
                   labels.data() + s * n + r0);
        });
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
            const float eps = 1.0f / 1024;
            for (int64_t j = 0; j < ksub; ++j) {
                if (count[j] > 0) continue;
                const int64_t big = std::max_element(count.begin(), count.end()) - count.begin();
                for (int64_t t = 0; t < dsub; ++t) {
                    const float v = c[big * dsub + t];
                    const float up = (t % 2 == 0) ? 1 + eps : 1 - eps;
                    c[j * dsub + t] = v * up;
                    c[big * dsub + t] = v * (2 - up);
                }
                count[j] = count[big] / 2;
                count[big] -= count[j];
            }
        });
    }
}

}  // namespace embkern::pq
