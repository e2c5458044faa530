// Python bindings of the projection CUDA kernels (embkern._cuda.projection): launchers on device
// pointers, and their host emulation (numpy in, numpy out) for tests without a GPU.
#include <string>
#include <vector>

#include "cuda/common/bindings.hpp"
#include "cuda/projection/projection_cuda.hpp"

namespace embkern::cuda {

using namespace bind;
namespace ek = embkern::cuda;

namespace {

ek::ProjOptions options(int64_t chunk, int max_warps, int threads, int64_t scratch_bytes, int stage) {
    ek::ProjOptions o;
    o.chunk = chunk;
    o.max_warps = max_warps;
    o.threads = threads;
    o.scratch_bytes = scratch_bytes;
    o.stage = stage;
    return o;
}

ek::SrpSpec spec(uint64_t seed, int64_t k, int mode, uint64_t thr53, const carray<double>& cdf) {
    require(cdf.ndim() == 1, "cdf must have 1 dimension, got " + std::to_string(cdf.ndim()));
    ek::SrpSpec g;
    g.seed = seed;
    g.k = k;
    g.mode = mode;
    g.thr53 = thr53;
    g.cdf = cdf.shape(0) ? cdf.data() : nullptr;
    g.ncdf = cdf.shape(0);
    return g;
}

// Shapes of a CSR operand passed to an emulated kernel (contents: the kernel's validation pass).
void csr_shapes(const carray<int64_t>& ptr, const carray<int32_t>& ind, py::ssize_t nvals, int64_t rows,
                const std::string& name) {
    require(ptr.ndim() == 1 && ind.ndim() == 1, name + ": indptr and indices must be 1-D");
    require(rows >= 0 && ptr.shape(0) == rows + 1, name + ": indptr must have rows + 1 entries");
    require(ind.shape(0) == nvals, name + ": indices and values must have equal length");
}

template <class T>
py::array_t<T> emulate_csr_dense(const carray<T>& x, const carray<int64_t>& indptr, const carray<int32_t>& indices,
                                 const carray<T>& values, int64_t k, int64_t chunk, int max_warps, int sm_count,
                                 bool validate) {
    require_2d(x, "x");
    require(values.ndim() == 1, "values must be 1-D");
    require(k >= 0, "k must be >= 0");
    csr_shapes(indptr, indices, values.shape(0), k, "components");
    py::array_t<T> out({x.shape(0), static_cast<py::ssize_t>(k)});
    const ek::ProjOptions o = options(chunk, max_warps, 0, 0, 0);
    py::gil_scoped_release nogil;
    if constexpr (sizeof(T) == 4)
        ek::emu::csr_dense_f32(x.data(), x.shape(0), x.shape(1), indptr.data(), indices.data(), values.data(),
                               indices.shape(0), k, out.mutable_data(), validate, o, sm_count);
    else
        ek::emu::csr_dense_f64(x.data(), x.shape(0), x.shape(1), indptr.data(), indices.data(), values.data(),
                               indices.shape(0), k, out.mutable_data(), validate, o, sm_count);
    return out;
}

template <class T>
py::array_t<T> emulate_csr_sparse(const carray<int64_t>& xptr, const carray<int32_t>& xind, const carray<T>& xval,
                                  int64_t n, const carray<int64_t>& cptr, const carray<int32_t>& cind,
                                  const carray<T>& cval, int64_t k, int threads, int sm_count, bool validate) {
    require(n >= 0 && k >= 0, "sizes must be >= 0");
    require(xval.ndim() == 1 && cval.ndim() == 1, "values must be 1-D");
    require(cptr.ndim() == 1 && cptr.shape(0) >= 1, "components: indptr must have rows + 1 entries");
    const int64_t d = cptr.shape(0) - 1;
    csr_shapes(xptr, xind, xval.shape(0), n, "x");
    csr_shapes(cptr, cind, cval.shape(0), d, "components");
    py::array_t<T> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
    const ek::ProjOptions o = options(0, 0, threads, 0, 0);
    py::gil_scoped_release nogil;
    if constexpr (sizeof(T) == 4)
        ek::emu::csr_sparse_f32(xptr.data(), xind.data(), xval.data(), n, xind.shape(0), cptr.data(), cind.data(),
                                cval.data(), d, cind.shape(0), k, out.mutable_data(), validate, o, sm_count);
    else
        ek::emu::csr_sparse_f64(xptr.data(), xind.data(), xval.data(), n, xind.shape(0), cptr.data(), cind.data(),
                                cval.data(), d, cind.shape(0), k, out.mutable_data(), validate, o, sm_count);
    return out;
}

template <class T>
py::array_t<T> emulate_srp_sparse(const carray<int64_t>& xptr, const carray<int32_t>& xind, const carray<T>& xval,
                                  int64_t n, uint64_t seed, int64_t k, int mode, uint64_t thr53,
                                  const carray<double>& cdf, T scale, int threads, int sm_count,
                                  int64_t scratch_bytes, bool validate) {
    require(n >= 0 && k >= 1, "sizes must be positive");
    require(xval.ndim() == 1, "values must be 1-D");
    csr_shapes(xptr, xind, xval.shape(0), n, "x");
    const ek::SrpSpec g = spec(seed, k, mode, thr53, cdf);
    py::array_t<T> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
    const ek::ProjOptions o = options(0, 0, threads, scratch_bytes, 0);
    py::gil_scoped_release nogil;
    if constexpr (sizeof(T) == 4)
        ek::emu::srp_sparse_f32(xptr.data(), xind.data(), xval.data(), n, xind.shape(0), g, scale,
                                out.mutable_data(), validate, o, sm_count);
    else
        ek::emu::srp_sparse_f64(xptr.data(), xind.data(), xval.data(), n, xind.shape(0), g, scale,
                                out.mutable_data(), validate, o, sm_count);
    return out;
}

// The float32 and float64 launchers, bound as <name>_f32 / <name>_f64.
template <class T>
struct Launchers;
template <>
struct Launchers<float> {
    static constexpr auto dense = &ek::csr_dense_f32;
    static constexpr auto sparse = &ek::csr_sparse_f32;
    static constexpr auto srp = &ek::srp_sparse_f32;
};
template <>
struct Launchers<double> {
    static constexpr auto dense = &ek::csr_dense_f64;
    static constexpr auto sparse = &ek::csr_sparse_f64;
    static constexpr auto srp = &ek::srp_sparse_f64;
};

template <class T>
void bind_float(py::module_& m, const std::string& sfx) {
    using L = Launchers<T>;
    m.def(("csr_dense" + sfx).c_str(), [](uptr x, int64_t n, int64_t d, uptr indptr, uptr indices, uptr values, int64_t nnz,
                              int64_t k, uptr out, bool validate, uptr stream, int device, int64_t chunk,
                              int max_warps) {
        const ek::ProjOptions o = options(chunk, max_warps, 0, 0, 0);
        py::gil_scoped_release nogil;
        L::dense(in_ptr<T>(x), n, d, in_ptr<int64_t>(indptr), in_ptr<int32_t>(indices),
                          in_ptr<T>(values), nnz, k, out_ptr<T>(out), validate, stream, device, o);
    }, py::arg("x"), py::arg("n"), py::arg("d"), py::arg("indptr"), py::arg("indices"), py::arg("values"),
       py::arg("nnz"), py::arg("k"), py::arg("out"), py::arg("validate"), py::arg("stream") = 0,
       py::arg("device") = -1, py::arg("chunk") = 0, py::arg("max_warps") = 0,
       "out[n, k] = x[n, d] @ C^T for C (k x d) in CSR; validate: check C on the device first");
    m.def(("csr_sparse" + sfx).c_str(), [](uptr xptr, uptr xind, uptr xval, int64_t n, int64_t xnnz, uptr cptr, uptr cind,
                               uptr cval, int64_t d, int64_t cnnz, int64_t k, uptr out, bool validate, uptr stream,
                               int device, int threads) {
        const ek::ProjOptions o = options(0, 0, threads, 0, 0);
        py::gil_scoped_release nogil;
        L::sparse(in_ptr<int64_t>(xptr), in_ptr<int32_t>(xind), in_ptr<T>(xval), n, xnnz,
                           in_ptr<int64_t>(cptr), in_ptr<int32_t>(cind), in_ptr<T>(cval), d, cnnz, k,
                           out_ptr<T>(out), validate, stream, device, o);
    }, py::arg("xptr"), py::arg("xind"), py::arg("xval"), py::arg("n"), py::arg("xnnz"), py::arg("cptr"),
       py::arg("cind"), py::arg("cval"), py::arg("d"), py::arg("cnnz"), py::arg("k"), py::arg("out"),
       py::arg("validate"), py::arg("stream") = 0, py::arg("device") = -1, py::arg("threads") = 0,
       "out[n, k]: CSR rows x (n x d) times Ct (d x k, CSR)");
    m.def(("srp_sparse" + sfx).c_str(), [](uptr xptr, uptr xind, uptr xval, int64_t n, int64_t xnnz, uint64_t seed, int64_t k,
                               int mode, uint64_t thr53, const carray<double>& cdf, T scale, uptr out,
                               bool validate, uptr stream, int device, int threads, int64_t scratch_bytes) {
        const ek::SrpSpec g = spec(seed, k, mode, thr53, cdf);
        const ek::ProjOptions o = options(0, 0, threads, scratch_bytes, 0);
        py::gil_scoped_release nogil;
        L::srp(in_ptr<int64_t>(xptr), in_ptr<int32_t>(xind), in_ptr<T>(xval), n, xnnz, g, scale,
                           out_ptr<T>(out), validate, stream, device, o);
    }, py::arg("xptr"), py::arg("xind"), py::arg("xval"), py::arg("n"), py::arg("xnnz"), py::arg("seed"),
       py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"), py::arg("scale"), py::arg("out"),
       py::arg("validate"), py::arg("stream") = 0, py::arg("device") = -1, py::arg("threads") = 0,
       py::arg("scratch_bytes") = 0, "out[n, k]: CSR rows x times the generated R^T (cdf: host numpy)");
}

}  // namespace

void bind_projection(py::module_ m) {
    // ---- kernels on device pointers ----------------------------------------------------------
    bind_float<float>(m, "_f32");
    bind_float<double>(m, "_f64");
    m.def("srp_column_counts", [](uint64_t seed, int64_t d, int64_t k, int mode, uint64_t thr53,
                                  const carray<double>& cdf, uptr indptr, uptr stream, int device, int threads) {
        const ek::SrpSpec g = spec(seed, k, mode, thr53, cdf);
        const ek::ProjOptions o = options(0, 0, threads, 0, 0);
        py::gil_scoped_release nogil;
        ek::srp_column_counts(g, d, out_ptr<int64_t>(indptr), stream, device, o);
    }, py::arg("seed"), py::arg("d"), py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"),
       py::arg("indptr"), py::arg("stream") = 0, py::arg("device") = -1, py::arg("threads") = 0,
       "indptr[d + 1] of R^T (the prefix sums of the column counts)");
    m.def("srp_column_fill", [](uint64_t seed, int64_t d, int64_t k, int mode, uint64_t thr53,
                                const carray<double>& cdf, uptr indptr, uptr idx, uptr neg, uptr stream, int device,
                                int threads) {
        const ek::SrpSpec g = spec(seed, k, mode, thr53, cdf);
        const ek::ProjOptions o = options(0, 0, threads, 0, 0);
        py::gil_scoped_release nogil;
        ek::srp_column_fill(g, d, in_ptr<int64_t>(indptr), out_ptr<int32_t>(idx), out_ptr<uint8_t>(neg), stream,
                            device, o);
    }, py::arg("seed"), py::arg("d"), py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"),
       py::arg("indptr"), py::arg("idx"), py::arg("neg"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("threads") = 0, "rows (ascending) and sign flags of every column of R");
    m.def("fastrp", [](uptr indptr, uptr indices, uptr weights, int64_t n, int64_t nnz, int64_t dim,
                       uptr node_scale, uint64_t seed, const std::vector<float>& iteration_weights,
                       float self_influence, uptr out, bool validate, uptr stream, int device, int threads,
                       int stage) {
        const ek::ProjOptions o = options(0, 0, threads, 0, stage);
        py::gil_scoped_release nogil;
        ek::fastrp(in_ptr<int64_t>(indptr), in_ptr<int32_t>(indices), weights ? in_ptr<float>(weights) : nullptr,
                   n, nnz, dim, node_scale ? in_ptr<double>(node_scale) : nullptr, seed, iteration_weights.data(),
                   static_cast<int64_t>(iteration_weights.size()), self_influence, out_ptr<float>(out), validate,
                   stream, device, o);
    }, py::arg("indptr"), py::arg("indices"), py::arg("weights"), py::arg("n"), py::arg("nnz"), py::arg("dim"),
       py::arg("node_scale"), py::arg("seed"), py::arg("iteration_weights"), py::arg("self_influence"),
       py::arg("out"), py::arg("validate"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("threads") = 0, py::arg("stage") = 0,
       "out[n, dim] float32: FastRP; weights / node_scale: 0 for none");

    // ---- host emulation of the same kernels (numpy in, numpy out) ----------------------------
    m.def("_emulate_csr_dense", &emulate_csr_dense<float>, py::arg("x"), py::arg("indptr"), py::arg("indices"),
          py::arg("values"), py::arg("k"), py::arg("chunk") = 0, py::arg("max_warps") = 0, py::arg("sm_count") = 1,
          py::arg("validate") = true);
    m.def("_emulate_csr_dense", &emulate_csr_dense<double>, py::arg("x"), py::arg("indptr"), py::arg("indices"),
          py::arg("values"), py::arg("k"), py::arg("chunk") = 0, py::arg("max_warps") = 0, py::arg("sm_count") = 1,
          py::arg("validate") = true);
    m.def("_emulate_csr_sparse", &emulate_csr_sparse<float>, py::arg("xptr"), py::arg("xind"), py::arg("xval"),
          py::arg("n"), py::arg("cptr"), py::arg("cind"), py::arg("cval"), py::arg("k"), py::arg("threads") = 32,
          py::arg("sm_count") = 1, py::arg("validate") = true);
    m.def("_emulate_csr_sparse", &emulate_csr_sparse<double>, py::arg("xptr"), py::arg("xind"), py::arg("xval"),
          py::arg("n"), py::arg("cptr"), py::arg("cind"), py::arg("cval"), py::arg("k"), py::arg("threads") = 32,
          py::arg("sm_count") = 1, py::arg("validate") = true);
    m.def("_emulate_srp_sparse", &emulate_srp_sparse<float>, py::arg("xptr"), py::arg("xind"), py::arg("xval"),
          py::arg("n"), py::arg("seed"), py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"),
          py::arg("scale"), py::arg("threads") = 32, py::arg("sm_count") = 1, py::arg("scratch_bytes") = 0,
          py::arg("validate") = true);
    m.def("_emulate_srp_sparse", &emulate_srp_sparse<double>, py::arg("xptr"), py::arg("xind"), py::arg("xval"),
          py::arg("n"), py::arg("seed"), py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"),
          py::arg("scale"), py::arg("threads") = 32, py::arg("sm_count") = 1, py::arg("scratch_bytes") = 0,
          py::arg("validate") = true);
    m.def("_emulate_srp_columns", [](uint64_t seed, int64_t d, int64_t k, int mode, uint64_t thr53,
                                     const carray<double>& cdf, int threads, int sm_count) {
        const ek::SrpSpec g = spec(seed, k, mode, thr53, cdf);
        require(d >= 1, "n_features must be >= 1");
        const ek::ProjOptions o = options(0, 0, threads, 0, 0);
        py::array_t<int64_t> indptr(static_cast<py::ssize_t>(d + 1));
        {
            py::gil_scoped_release nogil;
            ek::emu::srp_column_counts(g, d, indptr.mutable_data(), o, sm_count);
        }
        const int64_t nnz = indptr.data()[d];
        py::array_t<int32_t> idx(static_cast<py::ssize_t>(nnz));
        py::array_t<uint8_t> neg(static_cast<py::ssize_t>(nnz));
        {
            py::gil_scoped_release nogil;
            ek::emu::srp_column_fill(g, d, indptr.data(), idx.mutable_data(), neg.mutable_data(), o, sm_count);
        }
        return py::make_tuple(indptr, idx, neg);
    }, py::arg("seed"), py::arg("d"), py::arg("k"), py::arg("mode"), py::arg("thr53"), py::arg("cdf"),
       py::arg("threads") = 32, py::arg("sm_count") = 1);
    m.def("_emulate_fastrp", [](const carray<int64_t>& indptr, const carray<int32_t>& indices, py::object weights,
                                int64_t n, int64_t dim, const carray<double>& node_scale, uint64_t seed,
                                const std::vector<float>& iteration_weights, float self_influence, int threads,
                                int sm_count, int stage, bool validate) {
        require(n >= 0 && dim >= 1, "n must be >= 0 and dim >= 1");
        require(node_scale.ndim() == 1 && (node_scale.shape(0) == n || node_scale.shape(0) == 0),
                "node_scale must have n (or 0: all ones) entries");
        carray<float> w;
        const float* wp = nullptr;
        if (!weights.is_none()) {
            w = weights.cast<carray<float>>();
            require(w.ndim() == 1, "weights must be 1-D");
            wp = w.data();
        }
        csr_shapes(indptr, indices, wp ? w.shape(0) : indices.shape(0), n, "adjacency");
        const ek::ProjOptions o = options(0, 0, threads, 0, stage);
        py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(dim)});
        py::gil_scoped_release nogil;
        ek::emu::fastrp(indptr.data(), indices.data(), wp, n, indices.shape(0), dim,
                        node_scale.shape(0) ? node_scale.data() : nullptr, seed, iteration_weights.data(),
                        static_cast<int64_t>(iteration_weights.size()), self_influence, out.mutable_data(),
                        validate, o, sm_count);
        return out;
    }, py::arg("indptr"), py::arg("indices"), py::arg("weights"), py::arg("n"), py::arg("dim"),
       py::arg("node_scale"), py::arg("seed"), py::arg("iteration_weights"), py::arg("self_influence"),
       py::arg("threads") = 64, py::arg("sm_count") = 1, py::arg("stage") = 0, py::arg("validate") = true);
}

}  // namespace embkern::cuda
