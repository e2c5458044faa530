// lowrank kernels, avx512 tier: the generic bodies of kernel.hpp, then the AVX2/FMA register-tile
// GEMM and SpMM (simd_avx2.hpp); a 512-bit tile is future work, the 256-bit one runs here.
#include "lowrank/kernel.hpp"
#include "lowrank/simd_avx2.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_lowrank(LowrankKernels& t) {
    register_lowrank_generic(t);
    register_lowrank_avx2(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
