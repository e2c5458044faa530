// fde kernels, avx512 tier: the generic body of kernel.hpp compiled with this tier's flags (the
// sketch and the row adds are the loops that vectorise; see kernel.hpp).
#include "fde/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_fde(FdeKernels& t) { register_fde_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
