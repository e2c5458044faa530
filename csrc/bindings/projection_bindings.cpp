// pybind11 glue of the projection family: shape checks that keep a direct call from reading out of
// bounds, GIL release, result allocation. embkern.projection validates first (values, ranges),
// except X's entries for srp_sparse: its kernels check those as they read them.
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"
#include "projection/projection.hpp"

namespace embkern::bindings {

namespace {

SrpGen make_gen(uint64_t seed, int64_t k, int mode, uint64_t thr53, const carray<double>& cdf) {
    require(k >= 1, "n_components must be >= 1");
    require(mode == 0 || mode == 1, "mode must be 0 or 1");
    require_ndim(cdf, 1, "cdf");
    if (mode == 1) {
        require(cdf.shape(0) >= 1 && cdf.shape(0) <= k + 1, "cdf must have 1 to k + 1 entries");
        require(cdf.data()[cdf.shape(0) - 1] > 1.0, "the last cdf entry must exceed 1");
    }
    return SrpGen{seed, k, mode, thr53, cdf.data(), static_cast<int64_t>(cdf.shape(0))};
}

void check_csr(const carray<int64_t>& ptr, const carray<int32_t>& ind, py::ssize_t nvals,
               int64_t rows, const char* name) {
    require_ndim(ptr, 1, name);
    require_ndim(ind, 1, name);
    require(ptr.shape(0) == rows + 1, std::string(name) + ": indptr must have rows + 1 entries");
    require(ind.shape(0) == nvals, std::string(name) + ": indices and values must have equal length");
    const int64_t* p = ptr.data();
    require(p[0] >= 0 && p[rows] <= ind.shape(0), std::string(name) + ": indptr out of range");
    bool sorted = true;
    for (int64_t r = 0; r < rows; ++r) sorted &= p[r] <= p[r + 1];
    require(sorted, std::string(name) + ": indptr must be non-decreasing");
}

void check_ids(const carray<int32_t>& ind, int64_t limit, const char* name) {
    const int32_t* p = ind.data();
    const uint32_t lim = static_cast<uint32_t>(limit);
    bool ok = true;
    for (py::ssize_t e = 0; e < ind.shape(0); ++e) ok &= static_cast<uint32_t>(p[e]) < lim;
    require(ok, std::string(name) + ": column index out of range");
}

template <class T>
void define_float(py::module_& m) {
    m.def("csr_dense", [](const carray<T>& x, const carray<int64_t>& indptr, const carray<int32_t>& indices,
                          const carray<T>& values, int64_t k) {
        require_ndim(x, 2, "x");
        require_ndim(values, 1, "values");
        require(k >= 0, "k must be >= 0");
        check_csr(indptr, indices, values.shape(0), k, "components");
        check_ids(indices, x.shape(1), "components");
        py::array_t<T> out = output_pool::new_output<T>(x.shape(0), k);
        {
            py::gil_scoped_release nogil;
            projection::csr_dense<T>(x.data(), x.shape(0), x.shape(1), indptr.data(), indices.data(),
                                     values.data(), k, out.mutable_data());
        }
        return out;
    });
    m.def("csr_sparse", [](const carray<int64_t>& xptr, const carray<int32_t>& xind, const carray<T>& xval,
                           int64_t n, const carray<int64_t>& cptr, const carray<int32_t>& cind,
                           const carray<T>& cval, int64_t k) {
        require(n >= 0 && k >= 0, "sizes must be >= 0");
        check_csr(xptr, xind, xval.shape(0), n, "x");
        const int64_t d = cptr.shape(0) - 1;
        check_csr(cptr, cind, cval.shape(0), d, "components");
        check_ids(xind, d, "x");
        check_ids(cind, k, "components");
        py::array_t<T> out = output_pool::new_output<T>(n, k);
        {
            py::gil_scoped_release nogil;
            projection::csr_sparse<T>(xptr.data(), xind.data(), xval.data(), n, cptr.data(),
                                      cind.data(), cval.data(), k, out.mutable_data());
        }
        return out;
    });
    m.def("srp_sparse", [](const carray<int64_t>& xptr, const carray<int32_t>& xind, const carray<T>& xval,
                           int64_t n, int64_t d, uint64_t seed, int64_t k, int mode, uint64_t thr53,
                           const carray<double>& cdf, T scale) {
        require(n >= 0 && d >= 1, "sizes must be positive");
        const SrpGen g = make_gen(seed, k, mode, thr53, cdf);
        check_csr(xptr, xind, xval.shape(0), n, "x");  // the kernel checks the indices and values
        py::array_t<T> out = output_pool::new_output<T>(n, k);
        {
            py::gil_scoped_release nogil;
            projection::srp_sparse<T>(xptr.data(), xind.data(), xval.data(), n, d, g, scale,
                                      out.mutable_data());
        }
        return out;
    });
}

}  // namespace

void register_projection(py::module_& m) {
    m.def("srp_columns", [](uint64_t seed, int64_t d, int64_t k, int mode, uint64_t thr53,
                            const carray<double>& cdf) {
        require(d >= 1, "n_features must be >= 1");
        const SrpGen g = make_gen(seed, k, mode, thr53, cdf);
        py::array_t<int64_t> indptr(static_cast<py::ssize_t>(d + 1));
        int64_t* p = indptr.mutable_data();
        {
            py::gil_scoped_release nogil;
            p[0] = 0;
            projection::srp_counts(g, d, p + 1);
            for (int64_t j = 0; j < d; ++j) p[j + 1] += p[j];
        }
        py::array_t<int32_t> idx(static_cast<py::ssize_t>(p[d]));
        py::array_t<uint8_t> neg(static_cast<py::ssize_t>(p[d]));
        {
            py::gil_scoped_release nogil;
            projection::srp_fill(g, d, p, idx.mutable_data(), neg.mutable_data());
        }
        return py::make_tuple(indptr, idx, neg);
    });
    define_float<float>(m);
    define_float<double>(m);
    m.def("fastrp", [](const carray<int64_t>& indptr, const carray<int32_t>& indices, py::object weights,
                       int64_t n, int64_t dim, const carray<double>& node_scale, uint64_t seed,
                       const carray<float>& iteration_weights, float self_influence) {
        require(n >= 0 && dim >= 1, "n must be >= 0 and dim >= 1");
        require_ndim(node_scale, 1, "node_scale");
        require(node_scale.shape(0) == n || node_scale.shape(0) == 0, "node_scale must have n (or 0: all ones) entries");
        require_ndim(iteration_weights, 1, "iteration_weights");
        carray<float> w;
        const float* wp = nullptr;
        if (!weights.is_none()) {
            w = weights.cast<carray<float>>();
            require_ndim(w, 1, "weights");
            wp = w.data();
        }
        check_csr(indptr, indices, wp ? w.shape(0) : indices.shape(0), n, "adjacency");
        check_ids(indices, n, "adjacency");
        const int64_t iters = iteration_weights.shape(0);
        const int64_t nbuf = projection::fastrp_buffers(iteration_weights.data(), iters, self_influence);
        std::vector<py::array_t<float>> bufs;
        float* ptrs[3] = {nullptr, nullptr, nullptr};
        for (int64_t i = 0; i < nbuf; ++i) {
            bufs.push_back(output_pool::new_output<float>(n, dim));
            ptrs[i] = bufs.back().mutable_data();
        }
        float* result = nullptr;
        {
            py::gil_scoped_release nogil;
            result = projection::fastrp(indptr.data(), indices.data(), wp, n, dim,
                                        node_scale.shape(0) ? node_scale.data() : nullptr, seed,
                                        iteration_weights.data(), iters, self_influence, ptrs);
        }
        for (auto& b : bufs)
            if (b.mutable_data() == result) return b;
        throw std::logic_error("fastrp: result buffer not found");
    });
}

}  // namespace embkern::bindings
