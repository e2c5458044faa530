// embkern._cuda: pybind11 glue for the CUDA kernels (compiled by the host compiler; no CUDA headers).
// Kernel entry points take raw device pointers, shapes and a stream as integers; the Python layer
// (embkern/_cuda_backend.py) turns CuPy / torch / __cuda_array_interface__ / numpy arguments into
// those. Nothing here touches the GPU at import, and device_count() reports a missing driver or
// device as (0, reason) instead of raising. Each kernel family is a submodule (embkern._cuda.<family>,
// bound by csrc/cuda/<family>/<family>_bindings.cpp); its _emulate_* functions run the kernel bodies
// on the host (tests without a GPU).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "cuda/common/bindings.hpp"
#include "cuda/common/runtime.hpp"

// One EMBKERN_CUDA_FAMILY(name) line per family with CUDA kernels, written by CMake.
#define EMBKERN_CUDA_FAMILY(name) namespace embkern::cuda { void bind_##name(pybind11::module_ m); }
#include "cuda_families.inc"
#undef EMBKERN_CUDA_FAMILY

namespace py = pybind11;
namespace ek = embkern::cuda;
using namespace embkern::cuda::bind;

PYBIND11_MODULE(_cuda, m, py::mod_gil_not_used()) {
    m.doc() = "embkern CUDA kernels (private; use the embkern package)";

    // ---- runtime -----------------------------------------------------------------------------
    m.def("device_count", [] {
        auto r = ek::device_count();
        return py::make_tuple(r.first, r.second);
    }, "(number of CUDA devices, '' or why there are none); never raises");
    m.def("runtime_version", &ek::runtime_version, "CUDA runtime version linked in, e.g. 13000");
    m.def("driver_version", &ek::driver_version, "CUDA driver version, 0 without a driver");
    m.def("get_device", &ek::current_device, "the current CUDA device of this thread");
    m.def("device_info", [](int device) {
        const ek::DeviceInfo i = ek::device_info(device);
        py::dict d;
        d["name"] = i.name;
        d["compute_capability"] = py::make_tuple(i.major, i.minor);
        d["multiprocessors"] = i.sm_count;
        d["total_memory"] = i.total_memory;
        return d;
    }, py::arg("device"));
    m.def("pointer_device", &ek::pointer_device, py::arg("ptr"),
          "device owning ptr (device or managed memory), -1 for host memory");
    m.def("stream_wait", [](uptr consumer, uptr producer, int device) {
        py::gil_scoped_release nogil;
        ek::stream_wait(consumer, producer, device);
    }, py::arg("consumer"), py::arg("producer"), py::arg("device") = -1,
       "order `consumer` after the work queued so far on `producer`");
    m.def("stream_synchronize", [](uptr stream, int device) {
        py::gil_scoped_release nogil;
        ek::stream_synchronize(stream, device);
    }, py::arg("stream"), py::arg("device") = -1);

    py::class_<ek::DeviceBuffer>(m, "DeviceBuffer", "device memory owned by this object")
        .def(py::init<std::size_t, int>(), py::arg("nbytes"), py::arg("device") = -1)
        .def_property_readonly("ptr", &ek::DeviceBuffer::ptr)
        .def_property_readonly("nbytes", &ek::DeviceBuffer::nbytes)
        .def_property_readonly("device", &ek::DeviceBuffer::device)
        .def("copy_from_host", [](ek::DeviceBuffer& self, const py::array& a, uptr stream) {
            require(a.flags() & py::array::c_style, "copy_from_host needs a C-contiguous array");
            require(static_cast<std::size_t>(a.nbytes()) <= self.nbytes(), "array larger than the buffer");
            py::gil_scoped_release nogil;
            self.copy_from_host(a.data(), static_cast<std::size_t>(a.nbytes()), stream);
        }, py::arg("array"), py::arg("stream") = 0)
        .def("copy_to_host", [](const ek::DeviceBuffer& self, py::array& a, uptr stream) {
            require(a.flags() & py::array::c_style, "copy_to_host needs a C-contiguous array");
            require(a.writeable(), "copy_to_host needs a writeable array");
            require(static_cast<std::size_t>(a.nbytes()) <= self.nbytes(), "array larger than the buffer");
            void* dst = a.mutable_data();
            const auto n = static_cast<std::size_t>(a.nbytes());
            py::gil_scoped_release nogil;
            self.copy_to_host(dst, n, stream);
        }, py::arg("array"), py::arg("stream") = 0, "copy into `array` and wait for it");

    // ---- kernel families ---------------------------------------------------------------------
    py::list families;
#define EMBKERN_CUDA_FAMILY(name)                                                                \
    ek::bind_##name(m.def_submodule(#name, "CUDA kernels of embkern." #name));                   \
    families.append(#name);
#include "cuda_families.inc"
#undef EMBKERN_CUDA_FAMILY
    m.attr("families") = py::tuple(families);
}
