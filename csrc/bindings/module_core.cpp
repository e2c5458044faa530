// embkern._core: the compiled CPU kernels. Configuration (ISA tier, threads) at top level, one
// submodule per kernel family.
#include <algorithm>
#include <atomic>

#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"
#include "common/cpu_features.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace py = pybind11;

namespace {

// True when no element is NaN or +-inf: an exponent field of all ones. Integer bit tests (no
// float compares, so -ffast-math-free code vectorizes), chunks over the thread pool, the GIL
// released; a chunk that finds one stops the others early.
template <class Bits>
bool all_finite_bits(const Bits* v, int64_t n, Bits exponent) {
    constexpr int64_t chunk = int64_t(1) << 18;
    std::atomic<bool> bad{false};
    embkern::parallel_for((n + chunk - 1) / chunk, [&](int64_t t) {
        if (bad.load(std::memory_order_relaxed)) return;
        const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
        Bits hit = 0;
        for (int64_t i = lo; i < hi; ++i) hit |= static_cast<Bits>((v[i] & exponent) == exponent);
        if (hit) bad.store(true, std::memory_order_relaxed);
    });
    return !bad.load();
}

bool all_finite(const py::array& a) {
    if (!(a.flags() & py::array::c_style)) throw py::value_error("all_finite needs a C-contiguous array");
    const int64_t n = static_cast<int64_t>(a.size());
    const void* data = a.data();
    // Read the dtype while holding the GIL; only the scan runs without it.
    const bool f32 = a.dtype().equal(py::dtype::of<float>());
    const bool f64 = a.dtype().equal(py::dtype::of<double>());
    if (!f32 && !f64) throw py::type_error("all_finite takes float32 or float64 arrays");
    py::gil_scoped_release nogil;
    if (f32) return all_finite_bits(static_cast<const uint32_t*>(data), n, uint32_t(0x7f800000u));
    return all_finite_bits(static_cast<const uint64_t*>(data), n, uint64_t(0x7ff0000000000000ull));
}

}  // namespace

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
    m.doc() = "embkern compiled CPU kernels (private; use the embkern package)";
    // Choose the ISA tier now, at import, so an invalid EMBKERN_ISA fails loudly here.
    embkern::kernels();
    m.def("release_buffers", [] { embkern::buffer_pool().clear(); },
          "Free the buffers kept for reuse (see common/huge_alloc.hpp).");
    m.def("compiled_isas", &embkern::compiled_isas, "ISA tiers built into this module, narrow to wide");
    m.def("supported_isas", &embkern::supported_isas, "compiled tiers this CPU and OS can run");
    m.def("get_isa", &embkern::current_isa, "the tier whose kernels are in use");
    m.def("set_isa", [](const std::string& isa) {
        try {
            embkern::set_isa(isa);
        } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
        }
    }, py::arg("isa"), "use tier `isa` (or 'best'); process-wide, not while kernels run");
    m.def("cpu_features", [] { return embkern::cpu_features().summary(); });
    m.def("set_num_threads", [](int n) {
        if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
        embkern::set_num_threads(n);
    }, py::arg("n"));
    m.def("get_num_threads", &embkern::get_num_threads);
    m.def("all_finite", &all_finite, py::arg("a"),
          "True when a C-contiguous float32/float64 array holds no NaN or inf (threads, no GIL)");
    auto binary = m.def_submodule("binary", "binary-code kernels");
    embkern::bindings::register_binary(binary);
    auto pq = m.def_submodule("pq", "product-quantization kernels");
    embkern::bindings::register_pq(pq);
    auto projection = m.def_submodule("projection", "sparse random projection and FastRP kernels");
    embkern::bindings::register_projection(projection);
    auto fde = m.def_submodule("fde", "MUVERA fixed dimensional encoding kernels");
    embkern::bindings::register_fde(fde);
    auto lowrank = m.def_submodule("lowrank", "low-rank matmul kernels");
    embkern::bindings::register_lowrank(lowrank);
}
