// Binary kernels, avx512 tier: the generic bodies of kernel.hpp, with the hand-written AVX2 Hamming
// tile and sign packing (this tier has no VPOPCNTDQ).
#include "binary/kernel.hpp"
#include "binary/simd_avx2.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_binary(BinaryKernels& t) {
    register_generic(t);
    register_avx2_kernels(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
