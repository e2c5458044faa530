// pybind11 glue of the projection family.
#include "bindings/arrays.hpp"

namespace embkern::bindings {

void register_projection(py::module_& m) { (void)m; }

}  // namespace embkern::bindings
