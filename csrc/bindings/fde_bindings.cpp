// pybind11 glue of the fde family.
#include "bindings/arrays.hpp"

namespace embkern::bindings {

void register_fde(py::module_& m) { (void)m; }

}  // namespace embkern::bindings
