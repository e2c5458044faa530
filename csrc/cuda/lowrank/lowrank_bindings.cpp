// Python bindings of the low-rank CUDA kernels (embkern._cuda.lowrank): launchers on device
// pointers (validated by the Python wrappers in embkern/_cuda_ops/lowrank.py first), and their host
// emulation (numpy in, numpy out) for tests without a GPU. Pointers travel as integers, 0 = none.
#include <string>

#include "cuda/common/bindings.hpp"
#include "cuda/lowrank/lowrank_cuda.hpp"

namespace embkern::cuda {

using namespace bind;
namespace lr = embkern::cuda::lowrank;

namespace {

lr::LowrankOptions options(int shrink_tile, int main_tile, int shrink_splits, int main_splits) {
    lr::LowrankOptions o;
    o.shrink_tile = shrink_tile;
    o.main_tile = main_tile;
    o.shrink_splits = shrink_splits;
    o.main_splits = main_splits;
    return o;
}

#define EK_LR_OPTION_ARGS                                                                          \
    py::arg("shrink_tile") = 0, py::arg("main_tile") = 0, py::arg("shrink_splits") = 0,           \
        py::arg("main_splits") = 0

// ---- emulation helpers: numpy arrays of exactly T ----------------------------------------------

template <class T>
carray<T> exact(const py::object& o, const char* name) {
    if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(o);
    if (!a.dtype().equal(py::dtype::of<T>()))
        throw py::type_error(std::string(name) + " must have the dtype of x (" +
                             std::string(py::str(py::dtype::of<T>())) + "), got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    return py::reinterpret_borrow<carray<T>>(a);
}

template <class T>
const T* maybe(const py::object& o, const char* name, carray<T>& keep) {
    if (o.is_none()) return nullptr;
    keep = exact<T>(o, name);
    return keep.data();
}

bool is_f64(const py::array& x) {
    if (x.dtype().equal(py::dtype::of<double>())) return true;
    if (x.dtype().equal(py::dtype::of<float>())) return false;
    throw py::type_error("x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

void dims(const py::array& a, int nd, const char* name) {
    require(a.ndim() == nd, std::string(name) + " must have " + std::to_string(nd) + " dimensions, got " +
                                std::to_string(a.ndim()));
}

template <class T>
py::array emulate_lora(const py::array& xo, const py::object& wo, const py::object& ao, const py::object& bo,
                       double scale, const py::object& biaso, int sm_count, const lr::LowrankOptions& o) {
    auto x = exact<T>(xo, "x");
    auto w = exact<T>(wo, "weight");
    auto a = exact<T>(ao, "lora_a");
    auto b = exact<T>(bo, "lora_b");
    dims(x, 2, "x");
    dims(w, 2, "weight");
    dims(a, 2, "lora_a");
    dims(b, 2, "lora_b");
    const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0), r = a.shape(0);
    require(w.shape(1) == K && a.shape(1) == K && b.shape(0) == N && b.shape(1) == r, "shapes differ");
    carray<T> bias_keep;
    const T* bias = maybe<T>(biaso, "bias", bias_keep);
    require(!bias || (bias_keep.ndim() == 1 && bias_keep.shape(0) == N), "bias must have shape (N,)");
    py::array_t<T> y({M, N});
    py::gil_scoped_release nogil;
    lr::emu::lora_linear<T>(x.data(), M, K, w.data(), N, a.data(), r, b.data(), scale, bias, y.mutable_data(),
                            o, sm_count);
    return y;
}

template <class T>
py::array emulate_lowrank(const py::array& xo, const py::object& uo, const py::object& vo, const py::object& so,
                          const py::object& biaso, int sm_count, const lr::LowrankOptions& o) {
    auto x = exact<T>(xo, "x");
    auto u = exact<T>(uo, "u");
    auto v = exact<T>(vo, "v");
    dims(x, 2, "x");
    dims(u, 2, "u");
    dims(v, 2, "v");
    const int64_t M = x.shape(0), K = x.shape(1), N = u.shape(0), r = v.shape(0);
    require(v.shape(1) == K && u.shape(1) == r, "shapes differ");
    carray<T> s_keep, bias_keep;
    const T* s = maybe<T>(so, "s", s_keep);
    const T* bias = maybe<T>(biaso, "bias", bias_keep);
    require(!s || (s_keep.ndim() == 1 && s_keep.shape(0) == r), "s must have shape (r,)");
    require(!bias || (bias_keep.ndim() == 1 && bias_keep.shape(0) == N), "bias must have shape (N,)");
    py::array_t<T> y({M, N});
    py::gil_scoped_release nogil;
    lr::emu::lowrank_linear<T>(x.data(), M, K, u.data(), N, v.data(), r, s, bias, y.mutable_data(), o, sm_count);
    return y;
}

template <class T>
py::array emulate_sparse(const py::array& xo, const py::object& bo, const py::object& ao,
                         const carray<int64_t>& indptr, const carray<int32_t>& indices, const py::object& valueso,
                         const py::object& biaso, int sm_count, const lr::LowrankOptions& o) {
    auto x = exact<T>(xo, "x");
    auto b = exact<T>(bo, "b");
    auto a = exact<T>(ao, "a");
    auto values = exact<T>(valueso, "values");
    dims(x, 2, "x");
    dims(b, 2, "b");
    dims(a, 2, "a");
    const int64_t M = x.shape(0), K = x.shape(1), N = b.shape(0), r = a.shape(0);
    require(a.shape(1) == K && b.shape(1) == r, "shapes differ");
    require(indptr.ndim() == 1 && indptr.shape(0) == N + 1, "indptr must have shape (N + 1,)");
    require(indices.ndim() == 1 && values.ndim() == 1 && indices.shape(0) == values.shape(0),
            "indices and values must be 1-D of equal length");
    carray<T> bias_keep;
    const T* bias = maybe<T>(biaso, "bias", bias_keep);
    require(!bias || (bias_keep.ndim() == 1 && bias_keep.shape(0) == N), "bias must have shape (N,)");
    py::array_t<T> y({M, N});
    py::gil_scoped_release nogil;
    lr::emu::sparse_lowrank_linear<T>(x.data(), M, K, b.data(), N, a.data(), r, indptr.data(), indices.data(),
                                      values.data(), indices.shape(0), bias, y.mutable_data(), o, sm_count);
    return y;
}

template <class T>
py::array emulate_multi(const py::array& xo, const py::object& wo, const py::object& ao, const py::object& bo,
                        const py::array& ids, const py::object& so, double scale_value, const py::object& biaso,
                        int sm_count, const lr::LowrankOptions& o) {
    auto x = exact<T>(xo, "x");
    auto a = exact<T>(ao, "lora_a");
    auto b = exact<T>(bo, "lora_b");
    dims(x, 2, "x");
    dims(a, 3, "lora_a");
    dims(b, 3, "lora_b");
    const int64_t M = x.shape(0), K = x.shape(1), nad = a.shape(0), r = a.shape(1), N = b.shape(1);
    require(a.shape(2) == K && b.shape(0) == nad && b.shape(2) == r, "shapes differ");
    carray<T> w_keep, s_keep, bias_keep;
    const T* w = maybe<T>(wo, "weight", w_keep);
    require(!w || (w_keep.ndim() == 2 && w_keep.shape(0) == N && w_keep.shape(1) == K), "weight must be (N, K)");
    const T* s = maybe<T>(so, "scales", s_keep);
    require(!s || (s_keep.ndim() == 1 && s_keep.shape(0) == nad), "scales must have shape (n_adapters,)");
    const T* bias = maybe<T>(biaso, "bias", bias_keep);
    require(!bias || (bias_keep.ndim() == 1 && bias_keep.shape(0) == N), "bias must have shape (N,)");
    require(ids.ndim() == 1 && ids.shape(0) == M, "adapter_ids must have shape (M,)");
    require(ids.flags() & py::array::c_style, "adapter_ids must be C-contiguous");
    const int64_t* ids64 = nullptr;
    const int32_t* ids32 = nullptr;
    if (ids.dtype().equal(py::dtype::of<int64_t>())) ids64 = static_cast<const int64_t*>(ids.data());
    else if (ids.dtype().equal(py::dtype::of<int32_t>())) ids32 = static_cast<const int32_t*>(ids.data());
    else throw py::type_error("adapter_ids must be int64 or int32");
    py::array_t<T> y({M, N});
    py::gil_scoped_release nogil;
    lr::emu::multi_lora_linear<T>(x.data(), M, K, w, N, a.data(), nad, r, b.data(), ids64, ids32, s, scale_value,
                                  bias, y.mutable_data(), o, sm_count);
    return y;
}

template <class T>
void bind_dtype(py::module_& m, const std::string& sfx) {
    m.def(("lora_linear" + sfx).c_str(),
          [](uptr x, int64_t M, int64_t K, uptr w, int64_t N, uptr a, int64_t r, uptr b, double scale, uptr bias,
             uptr y, uptr stream, int device, int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              py::gil_scoped_release nogil;
              lr::lora_linear<T>(in_ptr<T>(x), M, K, in_ptr<T>(w), N, in_ptr<T>(a), r, in_ptr<T>(b), scale,
                                 in_ptr<T>(bias), out_ptr<T>(y), stream, device, o);
          },
          py::arg("x"), py::arg("M"), py::arg("K"), py::arg("weight"), py::arg("N"), py::arg("lora_a"),
          py::arg("r"), py::arg("lora_b"), py::arg("scale"), py::arg("bias"), py::arg("y"), py::arg("stream") = 0,
          py::arg("device") = -1, EK_LR_OPTION_ARGS,
          "y[M, N] = x w^T + scale (x a^T) b^T (+ bias); bias 0 = none");
    m.def(("lowrank_linear" + sfx).c_str(),
          [](uptr x, int64_t M, int64_t K, uptr u, int64_t N, uptr v, int64_t r, uptr s, uptr bias, uptr y,
             uptr stream, int device, int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              py::gil_scoped_release nogil;
              lr::lowrank_linear<T>(in_ptr<T>(x), M, K, in_ptr<T>(u), N, in_ptr<T>(v), r, in_ptr<T>(s),
                                    in_ptr<T>(bias), out_ptr<T>(y), stream, device, o);
          },
          py::arg("x"), py::arg("M"), py::arg("K"), py::arg("u"), py::arg("N"), py::arg("v"), py::arg("r"),
          py::arg("s"), py::arg("bias"), py::arg("y"), py::arg("stream") = 0, py::arg("device") = -1,
          EK_LR_OPTION_ARGS, "y[M, N] = ((x v^T) * s) u^T (+ bias); s, bias 0 = none");
    m.def(("sparse_lowrank_linear" + sfx).c_str(),
          [](uptr x, int64_t M, int64_t K, uptr b, int64_t N, uptr a, int64_t r, uptr indptr, uptr indices,
             uptr values, int64_t nnz, uptr bias, uptr y, uptr stream, int device, int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              py::gil_scoped_release nogil;
              lr::sparse_lowrank_linear<T>(in_ptr<T>(x), M, K, in_ptr<T>(b), N, in_ptr<T>(a), r,
                                           in_ptr<int64_t>(indptr), in_ptr<int32_t>(indices), in_ptr<T>(values),
                                           nnz, in_ptr<T>(bias), out_ptr<T>(y), stream, device, o);
          },
          py::arg("x"), py::arg("M"), py::arg("K"), py::arg("b"), py::arg("N"), py::arg("a"), py::arg("r"),
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("nnz"), py::arg("bias"), py::arg("y"),
          py::arg("stream") = 0, py::arg("device") = -1, EK_LR_OPTION_ARGS,
          "y[M, N] = x (b a + S)^T (+ bias), S as CSR (int64 indptr, int32 indices)");
    m.def(("multi_lora_linear" + sfx).c_str(),
          [](uptr x, int64_t M, int64_t K, uptr w, int64_t N, uptr a, int64_t nad, int64_t r, uptr b, uptr ids,
             int ids_bits, uptr scales, double scale_value, uptr bias, uptr y, uptr stream, int device, int st,
             int mt, int ss, int ms) {
              require(ids_bits == 64 || ids_bits == 32, "ids_bits must be 64 or 32");
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              py::gil_scoped_release nogil;
              lr::multi_lora_linear<T>(in_ptr<T>(x), M, K, in_ptr<T>(w), N, in_ptr<T>(a), nad, r, in_ptr<T>(b),
                                       ids_bits == 64 ? in_ptr<int64_t>(ids) : nullptr,
                                       ids_bits == 32 ? in_ptr<int32_t>(ids) : nullptr, in_ptr<T>(scales),
                                       scale_value, in_ptr<T>(bias), out_ptr<T>(y), stream, device, o);
          },
          py::arg("x"), py::arg("M"), py::arg("K"), py::arg("weight"), py::arg("N"), py::arg("lora_a"),
          py::arg("n_adapters"), py::arg("r"), py::arg("lora_b"), py::arg("ids"), py::arg("ids_bits"),
          py::arg("scales"), py::arg("scale_value"), py::arg("bias"), py::arg("y"), py::arg("stream") = 0,
          py::arg("device") = -1, EK_LR_OPTION_ARGS,
          "y[i] = (x[i] w^T) + s_q (x[i] a[q]^T) b[q]^T (+ bias), q = ids[i]; weight/scales/bias 0 = none");
}

}  // namespace

void bind_lowrank(py::module_ m) {
    bind_dtype<float>(m, "_f32");
    bind_dtype<double>(m, "_f64");

    // ---- host emulation of the same kernels (numpy in, numpy out; dtype of x) ------------------
    m.def("_emulate_lora_linear",
          [](const py::array& x, const py::object& w, const py::object& a, const py::object& b, double scale,
             const py::object& bias, int sm_count, int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              return is_f64(x) ? emulate_lora<double>(x, w, a, b, scale, bias, sm_count, o)
                               : emulate_lora<float>(x, w, a, b, scale, bias, sm_count, o);
          },
          py::arg("x"), py::arg("weight"), py::arg("lora_a"), py::arg("lora_b"), py::arg("scale") = 1.0,
          py::arg("bias") = py::none(), py::arg("sm_count") = 1, EK_LR_OPTION_ARGS);
    m.def("_emulate_lowrank_linear",
          [](const py::array& x, const py::object& u, const py::object& v, const py::object& s,
             const py::object& bias, int sm_count, int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              return is_f64(x) ? emulate_lowrank<double>(x, u, v, s, bias, sm_count, o)
                               : emulate_lowrank<float>(x, u, v, s, bias, sm_count, o);
          },
          py::arg("x"), py::arg("u"), py::arg("v"), py::arg("s") = py::none(), py::arg("bias") = py::none(),
          py::arg("sm_count") = 1, EK_LR_OPTION_ARGS);
    m.def("_emulate_sparse_lowrank_linear",
          [](const py::array& x, const py::object& b, const py::object& a, const carray<int64_t>& indptr,
             const carray<int32_t>& indices, const py::object& values, const py::object& bias, int sm_count,
             int st, int mt, int ss, int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              return is_f64(x) ? emulate_sparse<double>(x, b, a, indptr, indices, values, bias, sm_count, o)
                               : emulate_sparse<float>(x, b, a, indptr, indices, values, bias, sm_count, o);
          },
          py::arg("x"), py::arg("b"), py::arg("a"), py::arg("indptr"), py::arg("indices"), py::arg("values"),
          py::arg("bias") = py::none(), py::arg("sm_count") = 1, EK_LR_OPTION_ARGS);
    m.def("_emulate_multi_lora_linear",
          [](const py::array& x, const py::object& w, const py::object& a, const py::object& b, const py::array& ids,
             const py::object& s, double scale_value, const py::object& bias, int sm_count, int st, int mt, int ss,
             int ms) {
              const lr::LowrankOptions o = options(st, mt, ss, ms);
              return is_f64(x) ? emulate_multi<double>(x, w, a, b, ids, s, scale_value, bias, sm_count, o)
                               : emulate_multi<float>(x, w, a, b, ids, s, scale_value, bias, sm_count, o);
          },
          py::arg("x"), py::arg("weight"), py::arg("lora_a"), py::arg("lora_b"), py::arg("adapter_ids"),
          py::arg("scales") = py::none(), py::arg("scale_value") = 1.0, py::arg("bias") = py::none(),
          py::arg("sm_count") = 1, EK_LR_OPTION_ARGS);
}

#undef EK_LR_OPTION_ARGS

}  // namespace embkern::cuda
