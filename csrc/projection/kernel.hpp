// Projection family: the generic kernels, compiled once per ISA tier (included by every
// projection_<tier>.cpp inside namespace embkern::cpu::<tier>).
//
// Design note
// * Dense rows times a sparse matrix (csr_dense): x @ C^T with C in CSR (k x d). Rows are taken
//   kLanes = 16 at a time and transposed into a [d][16] block, so one stored entry of C (column
//   j, value v) updates 16 rows with two 8-wide multiply/add pairs: acc[l] = acc[l] + x[l][j] * v.
//   Every lane is a plain sequential sum over C's row in stored order, with separate multiply and
//   add (-ffp-contract=off), so the scalar tier, the vector tiers and the Numba fallback (one row
//   at a time, the same operations) give identical bits, for any thread count.
// * Sparse rows (csr_sparse, srp_sparse): out[r] = 0, then for each stored entry (j, v) of row r,
//   for each entry (i, c) of Ct's row j: out[r, i] += v * c. srp_sparse generates Ct's row j
//   (= column j of R, values +-scale) on the fly from the seed (srp_rng.hpp), so no table of
//   n_features entries is touched; in the default binomial mode most columns of a very sparse R
//   are empty and cost one hash. Same numbers as csr_sparse on the generated table.
// * srp_packed: srp_sparse reading R's columns from a table (SrpPacked) instead of the generator.
//   A row is taken in two passes: a branch-free filter keeps the entries whose column is non-empty
//   (one bit each, from a bitmap that stays in L2), then those are applied in stored order. Rows
//   are pipelined: row r's hits are found and their table lines requested before row r - 1 is
//   applied, so the lines have a row's work to arrive. The row is summed in L1 and streamed out.
// * FastRP propagation: for each node, the sum of its neighbours' rows (times the edge weight
//   when there are weights) in edge order, L2-normalised: the sum of squares is taken in 8
//   fixed lanes (lane t % 8), folded ((0+1)+(2+3))+((4+5)+(6+7)), sqrt, then each entry divided
//   by the norm (a zero vector stays zero). Neighbour rows are prefetched a few edges ahead:
//   the gathers from an n x dim state that does not fit in cache are the whole cost.
// Accumulators are T (float for float32 inputs, double for float64); counts and offsets int64.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/dispatch.hpp"
#include "common/stream_store.hpp"
#include "projection/srp_rng.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {
namespace projection_generic {

constexpr int64_t kLanes = 16;

template <class T>
void csr_dense(const T* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
               const T* values, int64_t k, T* out) {
    std::vector<T> xt(static_cast<size_t>(d * kLanes));
    for (int64_t r0 = 0; r0 < n; r0 += kLanes) {
        const int64_t nl = std::min(kLanes, n - r0);
        for (int64_t l = 0; l < kLanes; ++l) {
            if (l < nl) {
                const T* row = x + (r0 + l) * d;
                for (int64_t j = 0; j < d; ++j) xt[j * kLanes + l] = row[j];
            } else {
                for (int64_t j = 0; j < d; ++j) xt[j * kLanes + l] = T(0);
            }
        }
        for (int64_t i = 0; i < k; ++i) {
            T acc[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) acc[l] = T(0);
            for (int64_t e = indptr[i]; e < indptr[i + 1]; ++e) {
                const T v = values[e];
                const T* xr = xt.data() + static_cast<int64_t>(indices[e]) * kLanes;
                for (int64_t l = 0; l < kLanes; ++l) acc[l] = acc[l] + xr[l] * v;
            }
            for (int64_t l = 0; l < nl; ++l) out[(r0 + l) * k + i] = acc[l];
        }
    }
}

template <class T>
void csr_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n,
                const int64_t* cptr, const int32_t* cind, const T* cval, int64_t k, T* out) {
    for (int64_t r = 0; r < n; ++r) {
        T* y = out + r * k;
        for (int64_t i = 0; i < k; ++i) y[i] = T(0);
        for (int64_t e = xptr[r]; e < xptr[r + 1]; ++e) {
            const int64_t j = xind[e];
            const T v = xval[e];
            for (int64_t c = cptr[j]; c < cptr[j + 1]; ++c) y[cind[c]] += v * cval[c];
        }
    }
}

// X is validated where it is read, instead of in passes of its own over all of it before the call:
// a column id outside [0, d) or a NaN/inf value is an std::invalid_argument (a ValueError).
[[noreturn]] inline void throw_bad_ids(int64_t d) {
    throw std::invalid_argument("X has column indices outside [0, " + std::to_string(d) + ")");
}
[[noreturn]] inline void throw_bad_values() {
    throw std::invalid_argument("X contains NaN or inf (Input contains NaN or infinity)");
}

template <class T>
using FloatBits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
template <class T>
constexpr FloatBits<T> kExponent = sizeof(T) == 4 ? FloatBits<T>(0x7F800000u)
                                                  : FloatBits<T>(0x7FF0000000000000ull);

// 1 when some value is NaN or inf (all exponent bits set).
template <class T>
uint32_t any_nonfinite(const T* val, int64_t len) {
    uint32_t bad = 0;
    for (int64_t e = 0; e < len; ++e) {
        FloatBits<T> b;
        std::memcpy(&b, val + e, sizeof b);
        bad |= (b & kExponent<T>) == kExponent<T>;
    }
    return bad;
}

template <class T>
void check_row(const int32_t* ind, const T* val, int64_t len, int64_t d) {
    const uint32_t lim = static_cast<uint32_t>(d);
    uint32_t bad_id = 0;
    for (int64_t e = 0; e < len; ++e) bad_id |= static_cast<uint32_t>(ind[e]) >= lim;
    if (bad_id) throw_bad_ids(d);
    if (any_nonfinite(val, len)) throw_bad_values();
}

template <class T>
void srp_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t d,
                const SrpGen& g, T scale, T* out) {
    const srp::Keys keys(g.seed);
    const int64_t k = g.k;
    std::vector<int32_t> idx(static_cast<size_t>(std::max<int64_t>(1, srp::max_column(g))));
    std::vector<uint8_t> neg(idx.size());
    std::vector<int64_t> hit;
    // Binomial mode: column j is empty iff (hash >> 11) < ceil(cdf[0] 2^53) (the same test as
    // u < cdf[0] in srp::column, on integers). A first branch-free pass keeps the entries whose
    // column is not empty; only those are expanded, in stored order (empty columns add nothing,
    // so the sums are the ones of the plain loop).
    const bool skip = g.mode == 1;
    const uint64_t empty_below = skip ? static_cast<uint64_t>(std::ceil(g.cdf[0] * 0x1p53)) : 0;
    for (int64_t r = 0; r < n; ++r) {
        T* y = out + r * k;
        for (int64_t i = 0; i < k; ++i) y[i] = T(0);
        const int64_t e0 = xptr[r], e1 = xptr[r + 1];
        check_row(xind + e0, xval + e0, e1 - e0, d);
        if (skip) {
            hit.resize(static_cast<size_t>(e1 - e0));
            int64_t m = 0;
            for (int64_t e = e0; e < e1; ++e) {
                const uint64_t h = srp::hash3(keys.count, static_cast<uint64_t>(static_cast<int64_t>(xind[e])), 0);
                hit[static_cast<size_t>(m)] = e;
                m += (h >> 11) >= empty_below;
            }
            for (int64_t q0 = 0; q0 < m; ++q0) {
                const int64_t e = hit[static_cast<size_t>(q0)];
                const int64_t c = srp::column(g, keys, xind[e], idx.data(), neg.data());
                const T v = xval[e];
                for (int64_t q = 0; q < c; ++q) y[idx[q]] += v * (neg[q] ? -scale : scale);
            }
        } else {
            for (int64_t e = e0; e < e1; ++e) {
                const int64_t c = srp::column(g, keys, xind[e], idx.data(), neg.data());
                const T v = xval[e];
                for (int64_t q = 0; q < c; ++q) y[idx[q]] += v * (neg[q] ? -scale : scale);
            }
        }
    }
}

inline void fastrp_propagate(const int64_t* indptr, const int32_t* indices, const float* w,
                             int64_t u0, int64_t u1, const float* prev, int64_t dim, float* next,
                             float wi, float* out, int base_mode, float pw) {
    constexpr int64_t kAhead = 4;
    std::vector<float> acc(static_cast<size_t>(dim));
    for (int64_t u = u0; u < u1; ++u) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const int64_t e0 = indptr[u], e1 = indptr[u + 1];
        for (int64_t e = e0; e < e1; ++e) {
            if (e + kAhead < e1) {
                const char* p = reinterpret_cast<const char*>(prev + static_cast<int64_t>(indices[e + kAhead]) * dim);
                for (int64_t b = 0; b < dim * 4; b += 64) __builtin_prefetch(p + b);
            }
            const float* pm = prev + static_cast<int64_t>(indices[e]) * dim;
            if (w) {
                const float wv = w[e];
                for (int64_t t = 0; t < dim; ++t) acc[t] = acc[t] + wv * pm[t];
            } else {
                for (int64_t t = 0; t < dim; ++t) acc[t] = acc[t] + pm[t];
            }
        }
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const int64_t d8 = dim - dim % 8;
        for (int64_t t = 0; t < d8; t += 8)
            for (int64_t l = 0; l < 8; ++l) s[l] = s[l] + acc[t + l] * acc[t + l];
        for (int64_t t = d8; t < dim; ++t) s[t - d8] = s[t - d8] + acc[t] * acc[t];
        const float nrm = std::sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
        if (nrm > 0.0f) {
            for (int64_t t = 0; t < dim; ++t) acc[t] = acc[t] / nrm;
        } else {
            std::fill(acc.begin(), acc.end(), 0.0f);
        }
        if (next) std::copy(acc.begin(), acc.end(), next + u * dim);
        if (!out) continue;
        float* o = out + u * dim;
        const float* pr = prev + u * dim;
        for (int64_t t = 0; t < dim; ++t) {
            const float base = base_mode == kFastrpAccumulate ? o[t]
                               : base_mode == kFastrpPending  ? 0.0f + pw * pr[t]
                                                              : 0.0f;
            o[t] = base + wi * acc[t];
        }
    }
}

// The 8-lane norm of the design note.
inline float norm8(const float* a, int64_t dim) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t d8 = dim - dim % 8;
    for (int64_t t = 0; t < d8; t += 8)
        for (int64_t l = 0; l < 8; ++l) s[l] = s[l] + a[t + l] * a[t + l];
    for (int64_t t = d8; t < dim; ++t) s[t - d8] = s[t - d8] + a[t] * a[t];
    return std::sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
}

// Initial vectors: the 16-bit fields of the node's hashes are unpacked into a small array first
// (low field first), so the select loop is a plain element-wise loop the vector tiers vectorise.
inline void fastrp_init(uint64_t key, int64_t u0, int64_t u1, int64_t dim, const double* node_scale,
                        float si, float* prev, float* out) {
    const int64_t nh = (dim + 3) / 4;
    std::vector<uint16_t> f(static_cast<size_t>(nh * 4));
    const double base = std::sqrt(3.0 / static_cast<double>(dim));
    for (int64_t u = u0; u < u1; ++u) {
        for (int64_t t4 = 0; t4 < nh; ++t4) {
            const uint64_t h = srp::hash3(key, static_cast<uint64_t>(u), static_cast<uint64_t>(t4));
            for (int64_t s = 0; s < 4; ++s) f[t4 * 4 + s] = static_cast<uint16_t>(h >> (16 * s));
        }
        const float c = static_cast<float>(node_scale ? base * node_scale[u] : base);
        float* r = prev + u * dim;
        const uint16_t* fp = f.data();
        for (int64_t t = 0; t < dim; ++t)
            r[t] = fp[t] < srp::kInitPlus ? c : (fp[t] < srp::kInitMinus ? -c : 0.0f);
        if (!out) continue;
        float* o = out + u * dim;
        const float nrm = si != 0.0f ? norm8(r, dim) : 0.0f;
        if (nrm > 0.0f) {
            for (int64_t t = 0; t < dim; ++t) o[t] = si * (r[t] / nrm);
        } else {
            for (int64_t t = 0; t < dim; ++t) o[t] = 0.0f;
        }
    }
}

// srp_packed's filter, one entry at a time (branch-free: about a fifth of the entries hit at "auto"
// density, so a branch would mispredict): writes the column ids and values of the entries whose
// column is non-empty to jids and vals (room for len + 8 each) and returns their count. It checks
// the row as it goes: bad_id / bad_value become 1 for an id outside [0, d) (read as id 0) or a
// NaN/inf value.
template <class T>
int64_t filter_hits(const int32_t* ind, const T* val, int64_t len, int64_t d, const uint32_t* bits,
                    uint32_t* jids, T* vals, uint32_t& bad_id, uint32_t& bad_value) {
    const uint32_t lim = static_cast<uint32_t>(d);
    int64_t m = 0;
    for (int64_t e = 0; e < len; ++e) {
        const uint32_t j = static_cast<uint32_t>(ind[e]);
        const uint32_t ok = j < lim;
        const uint32_t jc = j & (0u - ok);
        bad_id |= ok ^ 1u;
        jids[m] = jc;
        vals[m] = val[e];
        m += (bits[jc >> 5] >> (jc & 31)) & ok;
    }
    bad_value |= any_nonfinite(val, len);
    return m;
}

template <class T>
int64_t packed_hits(const int32_t* ind, const T* val, int64_t len, int64_t d, const uint32_t* bits,
                    uint32_t* jids, T* vals) {
    uint32_t bad_id = 0, bad_value = 0;
    const int64_t m = filter_hits(ind, val, len, d, bits, jids, vals, bad_id, bad_value);
    if (bad_id) throw_bad_ids(d);
    if (bad_value) throw_bad_values();
    return m;
}

// y[i] += v * signed_scale[negative] for the entries (i, negative) of R's column j, from the
// generator: srp_packed's rare columns of three or more entries, out of line so that the hot loop
// keeps its state in registers (no call to save them around).
template <class T>
__attribute__((noinline, cold)) void apply_column(const SrpGen& g, const srp::Keys& keys, int64_t j,
                                                  T v, const T* signed_scale, T* y, int32_t* idx,
                                                  uint8_t* neg) {
    const int64_t cnt = srp::column(g, keys, j, idx, neg);
    for (int64_t i = 0; i < cnt; ++i) y[idx[i]] += v * signed_scale[neg[i] != 0];
}

template <class T, int64_t (*Hits)(const int32_t*, const T*, int64_t, int64_t, const uint32_t*,
                                  uint32_t*, T*) = packed_hits<T>>
void srp_packed(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t d,
                const SrpGen& g, const SrpPacked& p, T scale, T* out) {
    if (n <= 0) return;
    const srp::Keys keys(g.seed);
    const int64_t k = g.k;
    std::vector<int32_t> idx(static_cast<size_t>(std::max<int64_t>(1, srp::max_column(g))));
    std::vector<uint8_t> neg(idx.size());
    const T signed_scale[2] = {scale, -scale};  // indexed by the sign flag: a load, not a branch
    std::vector<T> row(static_cast<size_t>(k));
    // A row's hits, packed to the front by the filter: column ids and values. The loops over hits
    // read them in order, with no load of an offset first.
    std::vector<uint32_t> jid[2];
    std::vector<T> hval[2];
    int64_t nhit[2] = {0, 0};
    auto find_hits = [&](int64_t r, int b) {
        const int64_t e0 = xptr[r], len = xptr[r + 1] - e0;
        if (jid[b].size() < static_cast<size_t>(len + 8)) {
            jid[b].resize(static_cast<size_t>(len + 8));
            hval[b].resize(static_cast<size_t>(len + 8));
        }
        const int64_t m = Hits(xind + e0, xval + e0, len, d, p.bits, jid[b].data(), hval[b].data());
        const uint32_t* j = jid[b].data();
        for (int64_t q = 0; q < m; ++q) __builtin_prefetch(p.code + j[q]);
        nhit[b] = m;
    };
    find_hits(0, 0);
    for (int64_t r = 0; r < n; ++r) {
        const int b = static_cast<int>(r & 1);
        if (r + 1 < n) find_hits(r + 1, b ^ 1);
        T* y = row.data();
        for (int64_t i = 0; i < k; ++i) y[i] = T(0);
        const uint32_t* j = jid[b].data();
        const T* hv = hval[b].data();
        const uint32_t* codes = p.code;
        const int64_t nh = nhit[b];
        for (int64_t q = 0; q < nh; ++q) {
            const uint32_t code = codes[j[q]];
            const T v = hv[q];
            if (__builtin_expect((code & 3u) == 3u, 0)) {  // rare: more than two entries
                apply_column(g, keys, j[q], v, signed_scale, y, idx.data(), neg.data());
                continue;
            }
            y[(code >> 2) & 0x3FFFu] += v * signed_scale[(code >> 16) & 1u];
            // A branch for the second entry (about 1 hit in 9 has one): an unconditional update
            // of a spare row for one-entry columns measured 3-4 % slower (process-level A/B).
            if (code & 2u) y[(code >> 17) & 0x3FFFu] += v * signed_scale[code >> 31];
        }
        stream_copy(out + r * k, y, k * static_cast<int64_t>(sizeof(T)));
    }
    stream_fence();
}

inline void register_projection_generic(ProjectionKernels& t) {
    t.fastrp_init = &fastrp_init;
    t.csr_dense_f32 = &csr_dense<float>;
    t.csr_dense_f64 = &csr_dense<double>;
    t.csr_sparse_f32 = &csr_sparse<float>;
    t.csr_sparse_f64 = &csr_sparse<double>;
    t.srp_sparse_f32 = &srp_sparse<float>;
    t.srp_sparse_f64 = &srp_sparse<double>;
    t.srp_packed_f32 = &srp_packed<float>;
    t.srp_packed_f64 = &srp_packed<double>;
    t.fastrp_propagate = &fastrp_propagate;
}

}  // namespace projection_generic
}  // namespace embkern::cpu::EMBKERN_ISA_NS
