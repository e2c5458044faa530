// fde kernels, avx2 tier.
#include "common/dispatch.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_fde(FdeKernels& t) { (void)t; }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
