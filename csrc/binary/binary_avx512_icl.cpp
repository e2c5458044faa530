// Binary kernels, avx512_icl tier: the generic bodies of kernel.hpp. With VPOPCNTDQ in the flags,
// GCC vectorises the word loops of hamming_words/hamming_any into VPOPCNTQ on ZMM registers.
#include "binary/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_binary(BinaryKernels& t) { register_generic(t); }

}  // namespace embkern::cpu::EMBKERN_ISA_NS
