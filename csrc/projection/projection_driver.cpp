// projection drivers: task splitting around the current tier's kernels (baseline target).
#include "projection/projection.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <utility>

#include "common/dispatch.hpp"
#include "common/huge_alloc.hpp"
#include "common/parallel.hpp"
#include "projection/srp_rng.hpp"

namespace embkern::projection {

namespace {

namespace rng = embkern::cpu::baseline::srp;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kFeatureBlock = 8192;

template <class T>
struct Kern;
template <>
struct Kern<float> {
    static auto dense() { return kernels().projection.csr_dense_f32; }
    static auto sparse() { return kernels().projection.csr_sparse_f32; }
    static auto srp() { return kernels().projection.srp_sparse_f32; }
    static auto packed() { return kernels().projection.srp_packed_f32; }
};
template <>
struct Kern<double> {
    static auto dense() { return kernels().projection.csr_dense_f64; }
    static auto sparse() { return kernels().projection.csr_sparse_f64; }
    static auto srp() { return kernels().projection.srp_sparse_f64; }
    static auto packed() { return kernels().projection.srp_packed_f64; }
};

}  // namespace

void srp_counts(const SrpGen& g, int64_t d, int64_t* counts) {
    const rng::Keys keys(g.seed);
    parallel_for(ceil_div(d, kFeatureBlock), [&](int64_t t) {
        std::vector<int32_t> idx(static_cast<size_t>(std::max<int64_t>(1, rng::max_column(g))));
        std::vector<uint8_t> neg(idx.size());
        for (int64_t j = t * kFeatureBlock; j < std::min(d, (t + 1) * kFeatureBlock); ++j)
            counts[j] = rng::column(g, keys, j, idx.data(), neg.data());
    });
}

void srp_fill(const SrpGen& g, int64_t d, const int64_t* indptr, int32_t* idx, uint8_t* neg) {
    const rng::Keys keys(g.seed);
    parallel_for(ceil_div(d, kFeatureBlock), [&](int64_t t) {
        std::vector<int32_t> bi(static_cast<size_t>(std::max<int64_t>(1, rng::max_column(g))));
        std::vector<uint8_t> bn(bi.size());
        for (int64_t j = t * kFeatureBlock; j < std::min(d, (t + 1) * kFeatureBlock); ++j) {
            const int64_t c = rng::column(g, keys, j, bi.data(), bn.data());
            std::copy_n(bi.data(), c, idx + indptr[j]);
            std::copy_n(bn.data(), c, neg + indptr[j]);
        }
    });
}

template <class T>
void csr_dense(const T* x, int64_t n, int64_t d, const int64_t* indptr, const int32_t* indices,
               const T* values, int64_t k, T* out) {
    auto fn = Kern<T>::dense();
    const int64_t rows = 128;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows;
        fn(x + r0 * d, std::min(rows, n - r0), d, indptr, indices, values, k, out + r0 * k);
    });
}

template <class T>
void csr_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n,
                const int64_t* cptr, const int32_t* cind, const T* cval, int64_t k, T* out) {
    auto fn = Kern<T>::sparse();
    const int64_t rows = 1024;
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows;
        fn(xptr + r0, xind, xval, std::min(rows, n - r0), cptr, cind, cval, k, out + r0 * k);
    });
}

// srp_sparse with a packed column table (SrpPacked, projection_kernels.hpp). On the fly, each stored
// entry of X costs a hash (is R's column empty?) and each non-empty column about four more plus a
// small sort; when X has at least as many entries as features, computing every column once is
// cheaper. Entries are added in the same order with the same operations, so the bits equal the
// on-the-fly path's.
namespace {

constexpr int64_t kPackedRows = int64_t(1) << 14;  // components a packed entry can name (14 bits)

struct PackedColumns {
    HugeArray<uint32_t> bits;  // bitmap of the non-empty columns (SrpPacked)
    HugeArray<uint32_t> code;  // every feature's code
    SrpPacked view() const { return SrpPacked{bits.data(), code.data()}; }
};

PackedColumns build_packed_columns(const SrpGen& g, int64_t d) {
    static_assert(kFeatureBlock % 32 == 0, "a feature block owns whole bitmap words");
    HugeArray<uint32_t> code(static_cast<size_t>(d));
    HugeArray<uint32_t> bits(static_cast<size_t>(ceil_div(d, 32)));
    const rng::Keys keys(g.seed);
    parallel_for(ceil_div(d, kFeatureBlock), [&](int64_t t) {
        std::vector<int32_t> idx(static_cast<size_t>(std::max<int64_t>(1, rng::max_column(g))));
        std::vector<uint8_t> neg(idx.size());
        const int64_t j0 = t * kFeatureBlock, j1 = std::min(d, j0 + kFeatureBlock);
        for (int64_t q = j0 / 32; q < ceil_div(j1, 32); ++q) {
            uint32_t word = 0;
            for (int64_t j = 32 * q; j < std::min(j1, 32 * q + 32); ++j) {
                const int64_t c = rng::column(g, keys, j, idx.data(), neg.data());
                uint32_t cj = static_cast<uint32_t>(std::min<int64_t>(c, 3));
                if (c <= 2)
                    for (int64_t e = 0; e < c; ++e)
                        cj |= ((uint32_t(neg[e]) << 14) | uint32_t(idx[e])) << (2 + 15 * e);
                code[static_cast<size_t>(j)] = cj;  // 0 when c == 0
                word |= uint32_t(c > 0) << (j & 31);
            }
            bits[static_cast<size_t>(q)] = word;
        }
    });
    return PackedColumns{std::move(bits), std::move(code)};
}

// The last table built, for the next call with the same generator (a transform called batch after
// batch): rebuilt in a few percent of a 200,000-row batch's time.
std::shared_ptr<const PackedColumns> packed_columns(const SrpGen& g, int64_t d) {
    static std::mutex mu;
    static std::vector<double> last_key;
    static std::shared_ptr<const PackedColumns> last;
    std::vector<double> key{double(g.seed >> 32), double(g.seed & 0xFFFFFFFFu), double(g.k),
                            double(g.mode), double(g.thr53 >> 32), double(g.thr53 & 0xFFFFFFFFu),
                            double(d)};
    key.insert(key.end(), g.cdf, g.cdf + g.ncdf);
    {
        std::lock_guard<std::mutex> lock(mu);
        if (last && key == last_key) return last;
    }
    auto cols = std::make_shared<const PackedColumns>(build_packed_columns(g, d));
    std::lock_guard<std::mutex> lock(mu);
    last_key = std::move(key);
    last = cols;
    return cols;
}

}  // namespace

template <class T>
void srp_sparse(const int64_t* xptr, const int32_t* xind, const T* xval, int64_t n, int64_t d,
                const SrpGen& g, T scale, T* out) {
    const int64_t rows = 1024;
    bool short_rows = true;  // the packed kernel keeps a row's hit offsets in 32 bits
    for (int64_t r = 0; r < n; ++r) short_rows &= xptr[r + 1] - xptr[r] < (int64_t(1) << 31) - 8;
    if (g.mode == 1 && g.k <= kPackedRows && n > 0 && xptr[n] >= d && short_rows) {
        const auto cols = packed_columns(g, d);
        const SrpPacked p = cols->view();
        auto fn = Kern<T>::packed();
        parallel_for(ceil_div(n, rows), [&](int64_t t) {
            const int64_t r0 = t * rows;
            fn(xptr + r0, xind, xval, std::min(rows, n - r0), d, g, p, scale, out + r0 * g.k);
        });
        return;
    }
    auto fn = Kern<T>::srp();
    parallel_for(ceil_div(n, rows), [&](int64_t t) {
        const int64_t r0 = t * rows;
        fn(xptr + r0, xind, xval, std::min(rows, n - r0), d, g, scale, out + r0 * g.k);
    });
}

template void csr_dense<float>(const float*, int64_t, int64_t, const int64_t*, const int32_t*,
                               const float*, int64_t, float*);
template void csr_dense<double>(const double*, int64_t, int64_t, const int64_t*, const int32_t*,
                                const double*, int64_t, double*);
template void csr_sparse<float>(const int64_t*, const int32_t*, const float*, int64_t,
                                const int64_t*, const int32_t*, const float*, int64_t, float*);
template void csr_sparse<double>(const int64_t*, const int32_t*, const double*, int64_t,
                                 const int64_t*, const int32_t*, const double*, int64_t, double*);
template void srp_sparse<float>(const int64_t*, const int32_t*, const float*, int64_t, int64_t,
                                const SrpGen&, float, float*);
template void srp_sparse<double>(const int64_t*, const int32_t*, const double*, int64_t, int64_t,
                                 const SrpGen&, double, double*);

int64_t fastrp_buffers(const float* iteration_weights, int64_t iters, float self_influence) {
    if (iters == 0) return 2;  // the initial vectors and the result
    if (self_influence != 0.0f) return 3;
    for (int64_t i = 0; i + 2 < iters; ++i)
        if (iteration_weights[i] != 0.0f) return 3;
    return 2;
}

float* fastrp(const int64_t* indptr, const int32_t* indices, const float* w, int64_t n, int64_t dim,
              const double* node_scale, uint64_t seed, const float* iteration_weights, int64_t iters,
              float self_influence, float* const* buf) {
    const uint64_t key = rng::stream_key(seed, 4);
    const int64_t nodes = 2048;
    const int64_t ntasks = ceil_div(n, nodes);
    const bool two = fastrp_buffers(iteration_weights, iters, self_influence) == 2;
    float* prev = buf[0];
    float* next = buf[1];
    float* out = two ? nullptr : buf[2];  // two buffers: the sum is formed in the last iteration
    if (two && iters == 0) out = buf[1];
    auto init = kernels().projection.fastrp_init;
    parallel_for(ntasks, [&](int64_t t) {
        init(key, t * nodes, std::min(n, (t + 1) * nodes), dim, node_scale, self_influence, prev, out);
    });
    auto step = kernels().projection.fastrp_propagate;
    for (int64_t i = 0; i < iters; ++i) {
        const bool last = i + 1 == iters;
        float* dst = last ? nullptr : next;  // e^L is only added to the sum
        int mode = kFastrpAccumulate;
        float pw = 0.0f;
        if (two) {
            if (!last) {
                out = nullptr;
            } else {
                out = next;  // e^{L-2}'s buffer (the initial vectors' when L == 1)
                mode = i > 0 && iteration_weights[i - 1] != 0.0f ? kFastrpPending : kFastrpZero;
                pw = i > 0 ? iteration_weights[i - 1] : 0.0f;
            }
        }
        const float wi = iteration_weights[i];
        parallel_for(ntasks, [&](int64_t t) {
            step(indptr, indices, w, t * nodes, std::min(n, (t + 1) * nodes), prev, dim, dst, wi,
                 out, mode, pw);
        });
        std::swap(prev, next);
    }
    return out;
}

}  // namespace embkern::projection
