// Binary kernels, scalar tier: the generic bodies of kernel.hpp compiled with this tier's flags.
#include "binary/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_binary(BinaryKernels& t) { register_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
