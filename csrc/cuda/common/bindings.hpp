// pybind11 helpers shared by the family bindings of embkern._cuda (compiled by the host compiler;
// no CUDA headers). Device pointers and streams travel as integers.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

namespace embkern::cuda::bind {

namespace py = pybind11;

using uptr = std::uintptr_t;

template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
inline const T* in_ptr(uptr p) {
    return reinterpret_cast<const T*>(p);
}
template <class T>
inline T* out_ptr(uptr p) {
    return reinterpret_cast<T*>(p);
}

inline void require(bool ok, const std::string& message) {
    if (!ok) throw py::value_error(message);
}

template <class T>
void require_2d(const carray<T>& a, const char* name) {
    require(a.ndim() == 2, std::string(name) + " must have 2 dimensions, got " + std::to_string(a.ndim()));
}

}  // namespace embkern::cuda::bind
