// PQ kernels, avx512_icl tier: the generic bodies of kernel.hpp compiled with this tier's flags.
#include "pq/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_pq(PqKernels& t) { register_pq_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
