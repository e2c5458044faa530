// pybind11 glue of the lowrank family.
#include "bindings/arrays.hpp"

namespace embkern::bindings {

void register_lowrank(py::module_& m) { (void)m; }

}  // namespace embkern::bindings
