// lowrank kernels, scalar tier: the generic bodies of kernel.hpp compiled with this tier's flags.
#include "lowrank/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_lowrank(LowrankKernels& t) { register_lowrank_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
