// projection kernels, avx2 tier.
#include "common/dispatch.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_projection(ProjectionKernels& t) { (void)t; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
