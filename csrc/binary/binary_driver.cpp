#include "binary/binary.hpp"

#include <algorithm>
#include <cstdint>
#include <climits>
#include <limits>
#include <numeric>

#include "common/dispatch.hpp"
#include "pq/pq.hpp"
#include "common/heap.hpp"
#include "common/parallel.hpp"
#include "common/stream_store.hpp"

namespace embkern::binary {

using cpu::baseline::heap_push;

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How to cut a (queries x database) scan into tasks: query blocks of at most `qblock`, and, when
// there are too few query blocks to feed every thread, database parts too, so that a single query
// still uses every core. Parts are never smaller than `min_part` codes.
struct Split {
    int64_t qblock, nqb, parts, part_len;
};
Split plan(int64_t nq, int64_t nb, int64_t qblock, int64_t min_part) {
    const int64_t threads = get_num_threads();
    Split s;
    s.qblock = std::max<int64_t>(1, std::min(qblock, nq));
    s.nqb = ceil_div(nq, s.qblock);
    if (s.nqb < 2 * threads && threads > 1) {
        s.qblock = std::max<int64_t>(1, ceil_div(nq, threads));
        s.nqb = ceil_div(nq, s.qblock);
    }
    int64_t want = (s.nqb == 0 || s.nqb >= threads) ? 1 : ceil_div(2 * threads, s.nqb);
    want = std::max<int64_t>(1, std::min(want, ceil_div(nb, min_part)));
    s.part_len = std::max<int64_t>(1, ceil_div(nb, want));
    s.parts = std::max<int64_t>(1, ceil_div(nb, s.part_len));
    return s;
}

// Rows of (key, id) pairs from several heaps of one query, merged into the k best, ascending.
template <class K>
void merge_rows(const K* keys, const int64_t* ids, int64_t count, int64_t k, K* out_k,
                int64_t* out_i) {
    std::vector<int64_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    auto less = [&](int64_t a, int64_t b) {
        return keys[a] < keys[b] || (keys[a] == keys[b] && ids[a] < ids[b]);
    };
    if (k < count) {
        std::partial_sort(order.begin(), order.begin() + k, order.end(), less);
    } else {
        std::sort(order.begin(), order.end(), less);
    }
    for (int64_t j = 0; j < k; ++j) {
        out_k[j] = keys[order[j]];
        out_i[j] = ids[order[j]];
    }
}

template <class T, class Fn>
void pack_rows(const T* x, int64_t n, int64_t d, uint8_t* out, Fn fn) {
    const int64_t nbytes = (d + 7) / 8;
    const int64_t rows = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, d));
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows, rn = std::min(rows, n - r0);
        fn(x + r0 * d, rn, out + r0 * nbytes);
    });
}

}  // namespace

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little, uint8_t* out) {
    auto kern = kernels().binary.pack_signs_f32;
    pack_rows(x, n, d, out, [&](const float* xs, int64_t rn, uint8_t* o) { kern(xs, rn, d, threshold, little, o); });
}

void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little, uint8_t* out) {
    auto kern = kernels().binary.pack_signs_f64;
    pack_rows(x, n, d, out, [&](const double* xs, int64_t rn, uint8_t* o) { kern(xs, rn, d, threshold, little, o); });
}

void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out) {
    auto tile = kernels().binary.hamming_tile;
    const int64_t rb = 64;
    const int64_t cb = std::max<int64_t>(64, (64 * 1024) / cs);  // ~64 KiB of b per tile
    const int64_t nrb = ceil_div(na, rb), ncb = ceil_div(nb, cb);
    // Small matrices stay in cache for the caller: write them directly.
    const bool stream = na * nb >= (int64_t(1) << 24);
    parallel_for(nrb * ncb, [&](int64_t t) {
        const int64_t i0 = (t / ncb) * rb, j0 = (t % ncb) * cb;
        const int64_t in = std::min(rb, na - i0), jn = std::min(cb, nb - j0);
        if (!stream) {
            tile(a + i0 * cs, in, b + j0 * cs, jn, cs, out + i0 * nb + j0, nb);
            return;
        }
        constexpr int64_t R = 4;  // rows per pass through an L1-resident buffer
        std::vector<int32_t> buf(static_cast<size_t>(R * jn));
        for (int64_t r0 = 0; r0 < in; r0 += R) {
            const int64_t rn = std::min(R, in - r0);
            tile(a + (i0 + r0) * cs, rn, b + j0 * cs, jn, cs, buf.data(), jn);
            for (int64_t r = 0; r < rn; ++r) stream_copy(out + (i0 + r0 + r) * nb + j0, buf.data() + r * jn, jn * 4);
        }
    });
    if (stream) stream_fence();
}

void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i) {
    if (nq == 0) return;
    auto scan = kernels().binary.hamming_topk_scan;
    const Split s = plan(nq, nb, 64, 16384);
    // heaps[part][query][k]
    std::vector<int32_t> hd(static_cast<size_t>(s.parts * nq * k), INT32_MAX);
    std::vector<int64_t> hi(static_cast<size_t>(s.parts * nq * k), INT64_MAX);
    parallel_for(s.nqb * s.parts, [&](int64_t t) {
        const int64_t qb = t / s.parts, p = t % s.parts;
        const int64_t q0 = qb * s.qblock, qn = std::min(s.qblock, nq - q0);
        const int64_t d0 = p * s.part_len, dn = std::min(s.part_len, nb - d0);
        const size_t off = static_cast<size_t>((p * nq + q0) * k);
        scan(q + q0 * cs, qn, db + d0 * cs, dn, cs, k, d0, hd.data() + off, hi.data() + off);
    });
    parallel_for(ceil_div(nq, 64), [&](int64_t t) {
        std::vector<int32_t> keys(static_cast<size_t>(s.parts * k));
        std::vector<int64_t> ids(static_cast<size_t>(s.parts * k));
        for (int64_t i = t * 64; i < std::min(nq, (t + 1) * 64); ++i) {
            for (int64_t p = 0; p < s.parts; ++p) {
                std::copy_n(hd.data() + (p * nq + i) * k, k, keys.data() + p * k);
                std::copy_n(hi.data() + (p * nq + i) * k, k, ids.data() + p * k);
            }
            merge_rows(keys.data(), ids.data(), s.parts * k, k, out_d + i * k, out_i + i * k);
        }
    });
}

RangeResult hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                          int32_t radius) {
    auto scan = kernels().binary.hamming_range_scan;
    const Split s = plan(nq, nb, 64, 16384);
    using Hits = std::vector<std::pair<int32_t, int64_t>>;
    // hits[task][local query]: (distance, id), ascending id
    std::vector<std::vector<Hits>> hits(s.nqb * s.parts);
    auto emit = [](void* ctx, int64_t qi, int32_t d, int64_t id) {
        (*static_cast<std::vector<Hits>*>(ctx))[qi].emplace_back(d, id);
    };
    parallel_for(s.nqb * s.parts, [&](int64_t t) {
        const int64_t qb = t / s.parts, p = t % s.parts;
        const int64_t q0 = qb * s.qblock, qn = std::min(s.qblock, nq - q0);
        const int64_t d0 = p * s.part_len, dn = std::min(s.part_len, nb - d0);
        hits[t].resize(qn);
        scan(q + q0 * cs, qn, db + d0 * cs, dn, cs, radius, d0, emit, &hits[t]);
    });
    RangeResult res;
    res.lims.assign(nq + 1, 0);
    for (int64_t i = 0; i < nq; ++i) {
        const int64_t qb = i / s.qblock;
        int64_t c = 0;
        for (int64_t p = 0; p < s.parts; ++p) c += hits[qb * s.parts + p][i - qb * s.qblock].size();
        res.lims[i + 1] = res.lims[i] + c;
    }
    res.distances.resize(res.lims[nq]);
    res.ids.resize(res.lims[nq]);
    parallel_for(nq, [&](int64_t i) {
        const int64_t qb = i / s.qblock;
        Hits all;
        all.reserve(res.lims[i + 1] - res.lims[i]);
        for (int64_t p = 0; p < s.parts; ++p) {
            auto& h = hits[qb * s.parts + p][i - qb * s.qblock];
            all.insert(all.end(), h.begin(), h.end());
        }
        // parts are in id order, so a stable sort by distance keeps ids ascending among ties
        std::stable_sort(all.begin(), all.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (size_t j = 0; j < all.size(); ++j) {
            res.distances[res.lims[i] + j] = all[j].first;
            res.ids[res.lims[i] + j] = all[j].second;
        }
    });
    return res;
}

// Float query vs +-1 codes is 4-bit ADC: every nibble of a code is a 4-bit sub-quantizer index
// (even sub-quantizer = low nibble, as PQ packs them) and its table holds, for each of the 16
// nibble values, the +-q sum over the 4 dimensions that nibble covers. The PQ scan then adds
// 2 * ceil(d/8) table entries per code, several queries per SIMD register.
void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out) {
    const int64_t nbytes = (d + 7) / 8, m = 2 * nbytes;
    std::vector<float> lut(static_cast<size_t>(nq * m * 16));
    parallel_for(nq, [&](int64_t i) {
        const float* qi = q + i * d;
        for (int64_t s = 0; s < m; ++s) {
            const int64_t byte = s / 2, half = s % 2;
            float* e = lut.data() + (i * m + s) * 16;
            for (int v = 0; v < 16; ++v) {
                float acc = 0.0f;
                for (int t = 0; t < 4; ++t) {
                    const int64_t pos = 4 * half + t;  // bit position in the byte, from the LSB
                    const int64_t dim = 8 * byte + (little ? pos : 7 - pos);
                    if (dim < d) acc += ((v >> t) & 1) ? qi[dim] : -qi[dim];
                }
                e[v] = acc;
            }
        }
    });
    pq::adc_distances(lut.data(), nq, codes, nb, m, 4, out);
}

namespace {

// Multi-bit codes: every (query plane, database plane) Hamming distance comes from one tile over
// the codes viewed as (rows x planes) single-plane codes; the epilogue weights them:
// score = sum_s sum_t w_s w_t (dim - 2 h_st), summed in double, rounded once to float32.
constexpr int64_t kMbQ = 8, kMbN = 128;

template <class Sink>
void multibit_blocks(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* w, int64_t q0, int64_t qn,
                     int64_t d0, int64_t dn, Sink sink) {
    auto tile = kernels().binary.hamming_tile;
    (void)nq;
    (void)nb;
    const int64_t P = planes;
    std::vector<int32_t> h(static_cast<size_t>(kMbQ * P * kMbN * P));
    std::vector<double> ww(static_cast<size_t>(P * P));
    for (int64_t s = 0; s < P; ++s)
        for (int64_t t = 0; t < P; ++t) ww[s * P + t] = w[s] * w[t];
    const double wsum = std::accumulate(ww.begin(), ww.end(), 0.0) * static_cast<double>(dim);
    for (int64_t j0 = d0; j0 < d0 + dn; j0 += kMbN) {
        const int64_t jn = std::min(kMbN, d0 + dn - j0);
        for (int64_t i0 = q0; i0 < q0 + qn; i0 += kMbQ) {
            const int64_t in = std::min(kMbQ, q0 + qn - i0);
            const int64_t ld = kMbN * P;
            tile(q + i0 * P * nbytes, in * P, db + j0 * P * nbytes, jn * P, nbytes, h.data(), ld);
            for (int64_t r = 0; r < in; ++r)
                for (int64_t j = 0; j < jn; ++j) {
                    double acc = 0.0;
                    for (int64_t s = 0; s < P; ++s) {
                        const int32_t* hr = h.data() + (r * P + s) * ld + j * P;
                        for (int64_t t = 0; t < P; ++t) acc += ww[s * P + t] * hr[t];
                    }
                    sink(i0 + r, j0 + j, static_cast<float>(wsum - 2.0 * acc));
                }
        }
    }
}

}  // namespace

void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out) {
    const int64_t qb = 64, cb = 1024;
    const int64_t nqb = ceil_div(nq, qb), ncb = ceil_div(nb, cb);
    parallel_for(nqb * ncb, [&](int64_t t) {
        const int64_t i0 = (t / ncb) * qb, j0 = (t % ncb) * cb;
        multibit_blocks(q, nq, db, nb, planes, nbytes, dim, weights, i0, std::min(qb, nq - i0), j0,
                        std::min(cb, nb - j0),
                        [&](int64_t i, int64_t j, float v) { out[i * nb + j] = v; });
    });
}

void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i) {
    if (nq == 0) return;
    const Split s = plan(nq, nb, 64, 4096);
    // Heaps keyed by -score so that the max-heap root is the lowest kept score.
    std::vector<float> hk(static_cast<size_t>(s.parts * nq * k), std::numeric_limits<float>::infinity());
    std::vector<int64_t> hi(static_cast<size_t>(s.parts * nq * k), INT64_MAX);
    parallel_for(s.nqb * s.parts, [&](int64_t t) {
        const int64_t qb = t / s.parts, p = t % s.parts;
        const int64_t q0 = qb * s.qblock, qn = std::min(s.qblock, nq - q0);
        const int64_t d0 = p * s.part_len, dn = std::min(s.part_len, nb - d0);
        multibit_blocks(q, nq, db, nb, planes, nbytes, dim, weights, q0, qn, d0, dn,
                        [&](int64_t i, int64_t j, float v) {
                            const size_t off = static_cast<size_t>((p * nq + i) * k);
                            heap_push(hk.data() + off, hi.data() + off, k, -v, j);
                        });
    });
    parallel_for(nq, [&](int64_t i) {
        std::vector<float> keys(static_cast<size_t>(s.parts * k));
        std::vector<int64_t> ids(static_cast<size_t>(s.parts * k));
        for (int64_t p = 0; p < s.parts; ++p) {
            std::copy_n(hk.data() + (p * nq + i) * k, k, keys.data() + p * k);
            std::copy_n(hi.data() + (p * nq + i) * k, k, ids.data() + p * k);
        }
        merge_rows(keys.data(), ids.data(), s.parts * k, k, out_s + i * k, out_i + i * k);
        for (int64_t j = 0; j < k; ++j) out_s[i * k + j] = -out_s[i * k + j];
    });
}

}  // namespace embkern::binary
