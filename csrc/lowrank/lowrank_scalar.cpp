// lowrank kernels, scalar tier.
#include "common/dispatch.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_lowrank(LowrankKernels& t) { (void)t; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
