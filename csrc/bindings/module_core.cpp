// embkern._core: the compiled CPU kernels. Configuration (ISA tier, threads) at top level, one
// submodule per kernel family.
#include "bindings/arrays.hpp"
#include "common/cpu_features.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
    m.doc() = "embkern compiled CPU kernels (private; use the embkern package)";
    // Choose the ISA tier now, at import, so an invalid EMBKERN_ISA fails loudly here.
    embkern::kernels();
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
