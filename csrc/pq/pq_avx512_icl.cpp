// PQ kernels, avx512_icl tier: the generic bodies of kernel.hpp compiled with this tier's flags,
// and the hand-written AVX2 fast-scan kernel.
#include "pq/kernel.hpp"
#include "pq/fastscan_avx2.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_pq(PqKernels& t) {
    register_pq_generic(t);
    register_fastscan_avx2(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
