// pybind11 glue of the lowrank family: shape checks that must hold even when the private module
// is called directly (embkern.lowrank validates first, with friendlier messages), dtype dispatch
// (float32 / float64, all arrays of x's dtype), GIL release. No math here.
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"
#include "lowrank/lowrank.hpp"

namespace embkern::bindings {

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_shape(const py::array& a, std::initializer_list<int64_t> want, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
    int64_t i = 0;
    for (int64_t w : want) {
        if (ok && a.shape(i) != w) ok = false;
        ++i;
    }
    if (!ok) {
        std::string ws = "(";
        i = 0;
        for (int64_t w : want) ws += (i++ ? ", " : "") + std::to_string(w);
        ws += want.size() == 1 ? ",)" : ")";
        throw py::value_error(std::string(name) + " must have shape " + ws + ", got " + shape_str(a));
    }
}

// A C-contiguous array of exactly T (no conversion: the wrapper has cast already).
template <class T>
carray<T> exact(const py::object& o, const char* name) {
    if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(o);
    if (!a.dtype().equal(py::dtype::of<T>()))
        throw py::type_error(std::string(name) + " must have dtype " +
                             std::string(py::str(py::dtype::of<T>())) + " (that of x), got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous");
    return py::reinterpret_borrow<carray<T>>(a);
}

template <class T>
const T* optional(const py::object& o, int64_t n, const char* name) {
    if (o.is_none()) return nullptr;
    carray<T> a = exact<T>(o, name);
    check_shape(a, {n}, name);
    return a.data();  // owned by the caller's object, alive for the call
}

bool is_f64(const py::array& x) {
    // equal, not is: an unpickled array's dtype is a different object of the same type
    if (x.dtype().equal(py::dtype::of<double>())) return true;
    if (x.dtype().equal(py::dtype::of<float>())) return false;
    throw py::type_error("x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

// The checked arguments of a LoRA layer (x (M, K), weight (N, K), lora_a (r, K), lora_b (N, r)).
template <class T>
struct LoraArgs {
    carray<T> x, w, a, b;
    const T* bias;
    int64_t M, K, N, r;

    LoraArgs(const py::object& xo, const py::object& wo, const py::object& ao,
             const py::object& bo, const py::object& biaso)
        : x(exact<T>(xo, "x")) {
        require_ndim(x, 2, "x");
        M = x.shape(0);
        K = x.shape(1);
        w = exact<T>(wo, "weight");
        require_ndim(w, 2, "weight");
        N = w.shape(0);
        check_shape(w, {N, K}, "weight");
        a = exact<T>(ao, "lora_a");
        require_ndim(a, 2, "lora_a");
        r = a.shape(0);
        check_shape(a, {r, K}, "lora_a");
        b = exact<T>(bo, "lora_b");
        check_shape(b, {N, r}, "lora_b");
        bias = optional<T>(biaso, N, "bias");
    }
};

template <class T>
py::array lora(const py::object& xo, const py::object& wo, const py::object& ao,
               const py::object& bo, double scale, const py::object& biaso) {
    const LoraArgs<T> g(xo, wo, ao, bo, biaso);
    py::array_t<T> y = output_pool::new_output<T>(g.M, g.N);
    {
        py::gil_scoped_release nogil;
        lowrank::lora_linear<T>(g.x.data(), g.M, g.K, g.w.data(), g.N, g.a.data(), g.r, g.b.data(),
                                static_cast<T>(scale), g.bias, y.mutable_data());
    }
    return y;
}

template <class T>
py::array lora_blas(const py::object& xo, const py::object& wo, const py::object& ao,
                    const py::object& bo, double scale, const py::object& biaso,
                    const py::capsule& gemm) {
    const LoraArgs<T> g(xo, wo, ao, bo, biaso);
    const int64_t lim = 2147483647;
    require(g.M < lim && g.N < lim && g.K < lim && g.N * g.K < lim * 64,
            "shape too large for a 32-bit BLAS");
    const void* fn = PyCapsule_GetPointer(gemm.ptr(), PyCapsule_GetName(gemm.ptr()));
    if (!fn) throw py::error_already_set();
    py::array_t<T> y = output_pool::new_output<T>(g.M, g.N);
    {
        py::gil_scoped_release nogil;
        lowrank::lora_linear_blas<T>(g.x.data(), g.M, g.K, g.w.data(), g.N, g.a.data(), g.r,
                                     g.b.data(), static_cast<T>(scale), g.bias, y.mutable_data(), fn);
    }
    return y;
}

template <class T>
py::array lowrank_fn(const py::object& xo, const py::object& uo, const py::object& vo,
                     const py::object& so, const py::object& biaso) {
    auto x = exact<T>(xo, "x");
    require_ndim(x, 2, "x");
    const int64_t M = x.shape(0), K = x.shape(1);
    auto v = exact<T>(vo, "v");
    require_ndim(v, 2, "v");
    const int64_t r = v.shape(0);
    check_shape(v, {r, K}, "v");
    auto u = exact<T>(uo, "u");
    require_ndim(u, 2, "u");
    const int64_t N = u.shape(0);
    check_shape(u, {N, r}, "u");
    const T* s = optional<T>(so, r, "s");
    const T* bias = optional<T>(biaso, N, "bias");
    py::array_t<T> y = output_pool::new_output<T>(M, N);
    {
        py::gil_scoped_release nogil;
        lowrank::lowrank_linear<T>(x.data(), M, K, u.data(), N, v.data(), r, s, bias, y.mutable_data());
    }
    return y;
}

template <class T>
py::array sparse_fn(const py::object& xo, const py::object& bo, const py::object& ao,
                    const carray<int64_t>& indptr, const carray<int32_t>& indices,
                    const py::object& valueso, const py::object& biaso) {
    auto x = exact<T>(xo, "x");
    require_ndim(x, 2, "x");
    const int64_t M = x.shape(0), K = x.shape(1);
    auto a = exact<T>(ao, "a");
    require_ndim(a, 2, "a");
    const int64_t r = a.shape(0);
    check_shape(a, {r, K}, "a");
    auto b = exact<T>(bo, "b");
    require_ndim(b, 2, "b");
    const int64_t N = b.shape(0);
    check_shape(b, {N, r}, "b");
    check_shape(indptr, {N + 1}, "indptr");
    const int64_t* ip = indptr.data();
    require(ip[0] == 0, "indptr must start at 0");
    for (int64_t i = 0; i < N; ++i) require(ip[i + 1] >= ip[i], "indptr must be non-decreasing");
    const int64_t nnz = ip[N];
    check_shape(indices, {nnz}, "indices");
    auto values = exact<T>(valueso, "values");
    check_shape(values, {nnz}, "values");
    const int32_t* ix = indices.data();
    for (int64_t i = 0; i < N; ++i)
        for (int64_t p = ip[i]; p < ip[i + 1]; ++p)
            require(ix[p] >= 0 && ix[p] < K && (p == ip[i] || ix[p] > ix[p - 1]),
                    "indices must be sorted, unique and in [0, in_features) within each row");
    const T* bias = optional<T>(biaso, N, "bias");
    py::array_t<T> y = output_pool::new_output<T>(M, N);
    {
        py::gil_scoped_release nogil;
        lowrank::sparse_lowrank_linear<T>(x.data(), M, K, b.data(), N, a.data(), r, ip, ix,
                                          values.data(), bias, y.mutable_data());
    }
    return y;
}

template <class T>
py::array multi_fn(const py::object& xo, const py::object& wo, const py::object& ao,
                   const py::object& bo, const carray<int64_t>& ids, const py::object& so,
                   const py::object& biaso) {
    auto x = exact<T>(xo, "x");
    require_ndim(x, 2, "x");
    const int64_t M = x.shape(0), K = x.shape(1);
    auto a = exact<T>(ao, "lora_a");
    require_ndim(a, 3, "lora_a");
    const int64_t nad = a.shape(0), r = a.shape(1);
    check_shape(a, {nad, r, K}, "lora_a");
    auto b = exact<T>(bo, "lora_b");
    require_ndim(b, 3, "lora_b");
    const int64_t N = b.shape(1);
    check_shape(b, {nad, N, r}, "lora_b");
    const T* w = nullptr;
    carray<T> wa;
    if (!wo.is_none()) {
        wa = exact<T>(wo, "weight");
        check_shape(wa, {N, K}, "weight");
        w = wa.data();
    }
    check_shape(ids, {M}, "adapter_ids");
    for (int64_t i = 0; i < M; ++i)
        require(ids.data()[i] >= -1 && ids.data()[i] < nad,
                "adapter_ids must be in [-1, " + std::to_string(nad) + ")");
    const T* s = optional<T>(so, nad, "scales");
    const T* bias = optional<T>(biaso, N, "bias");
    py::array_t<T> y = output_pool::new_output<T>(M, N);
    {
        py::gil_scoped_release nogil;
        lowrank::multi_lora_linear<T>(x.data(), M, K, w, N, a.data(), nad, r, b.data(), ids.data(),
                                      s, bias, y.mutable_data());
    }
    return y;
}

}  // namespace

void register_lowrank(py::module_& m) {
    m.def("lora_linear", [](const py::array& x, const py::object& w, const py::object& a,
                            const py::object& b, double scale, const py::object& bias) {
        return is_f64(x) ? lora<double>(x, w, a, b, scale, bias) : lora<float>(x, w, a, b, scale, bias);
    });
    m.def("lora_linear_blas", [](const py::array& x, const py::object& w, const py::object& a,
                                 const py::object& b, double scale, const py::object& bias,
                                 const py::capsule& sgemm, const py::capsule& dgemm) {
        return is_f64(x) ? lora_blas<double>(x, w, a, b, scale, bias, dgemm)
                         : lora_blas<float>(x, w, a, b, scale, bias, sgemm);
    }, "lora_linear with the base GEMM by the given Fortran ?gemm capsules (scipy.linalg.cython_blas)");
    m.def("lowrank_linear", [](const py::array& x, const py::object& u, const py::object& v,
                               const py::object& s, const py::object& bias) {
        return is_f64(x) ? lowrank_fn<double>(x, u, v, s, bias) : lowrank_fn<float>(x, u, v, s, bias);
    });
    m.def("sparse_lowrank_linear", [](const py::array& x, const py::object& b, const py::object& a,
                                      const carray<int64_t>& indptr, const carray<int32_t>& indices,
                                      const py::object& values, const py::object& bias) {
        return is_f64(x) ? sparse_fn<double>(x, b, a, indptr, indices, values, bias)
                         : sparse_fn<float>(x, b, a, indptr, indices, values, bias);
    });
    m.def("multi_lora_linear", [](const py::array& x, const py::object& w, const py::object& a,
                                  const py::object& b, const carray<int64_t>& ids,
                                  const py::object& s, const py::object& bias) {
        return is_f64(x) ? multi_fn<double>(x, w, a, b, ids, s, bias)
                         : multi_fn<float>(x, w, a, b, ids, s, bias);
    });
}

}  // namespace embkern::bindings
