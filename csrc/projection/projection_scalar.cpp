// projection kernels, scalar tier: the generic bodies of kernel.hpp compiled with this tier's flags
// (the 16-lane row blocks and the FastRP row loops vectorise to the tier's width).
#include "projection/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_projection(ProjectionKernels& t) { projection_generic::register_projection_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
