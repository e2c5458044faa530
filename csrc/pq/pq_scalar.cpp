// PQ kernels, scalar tier: the generic bodies of kernel.hpp compiled with this tier's flags
// (fast scan: the generic kernel of fastscan.hpp).
#include "pq/fastscan.hpp"
#include "pq/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_pq(PqKernels& t) {
    register_pq_generic(t);
    register_fastscan_generic(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
