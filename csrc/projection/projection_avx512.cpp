// projection kernels, avx512 tier: the generic bodies of kernel.hpp compiled with this tier's flags,
// and the AVX2-intrinsics dense-rows kernel (dense_avx2.hpp).
#include "projection/dense_avx2.hpp"
#include "projection/kernel.hpp"

namespace embkern::cpu::EMBKERN_ISA_NS {

void register_projection(ProjectionKernels& t) {
    projection_generic::register_projection_generic(t);
    projection_avx2::register_dense_avx2(t);
}

}  // namespace embkern::cpu::EMBKERN_ISA_NS
