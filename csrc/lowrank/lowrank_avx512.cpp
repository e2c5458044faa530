// lowrank kernels, avx512 tier.
#include "common/dispatch.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_lowrank(LowrankKernels& t) { (void)t; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
