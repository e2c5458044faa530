// lowrank kernels, avx2 tier: the generic bodies of kernel.hpp, then the AVX2/FMA register-tile
// GEMM and SpMM (simd_avx2.hpp).
#include "lowrank/kernel.hpp"
#include "lowrank/simd_avx2.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_lowrank(LowrankKernels& t) {
    register_lowrank_generic(t);
    register_lowrank_avx2(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
