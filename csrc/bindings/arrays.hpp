// pybind11 glue helpers: typed C-contiguous array arguments and shape checks that must hold even
// when the private module is called directly (the Python wrappers validate first, with friendlier
// messages). No math here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace embkern::bindings {

namespace py = pybind11;

template <class T>
using carray = py::array_t<T, py::array::c_style>;

inline void require(bool ok, const std::string& message) {
    if (!ok) throw py::value_error(message);
}

template <class T>
inline void require_ndim(const carray<T>& a, py::ssize_t ndim, const char* name) {
    require(a.ndim() == ndim, std::string(name) + " must have " + std::to_string(ndim) +
                                  " dimensions, got " + std::to_string(a.ndim()));
}

void register_binary(py::module_& m);
void register_pq(py::module_& m);
void register_projection(py::module_& m);
void register_fde(py::module_& m);
void register_lowrank(py::module_& m);

}  // namespace embkern::bindings
