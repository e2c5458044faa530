// MUVERA FDE drivers: the reference's random tables (an exact emulation of libstdc++'s mt19937
// distributions, specs/fde.md §5) and batch encoding split over threads. Baseline target.
#pragma once
#include <cstdint>

#include "fde/fde_kernels.hpp"

namespace embkern::fde {

// std::normal_distribution<float>(0, 1) of libstdc++ over std::mt19937(seed): d x k values in
// column-major fill order (hyperplane 0's d entries first), stored row-major: out[i * k + j].
void simhash_matrix(uint32_t seed, int64_t d, int64_t k, float* out);
// AMS sketch of one repetition: for each input coordinate i in order, column =
// uniform_int_distribution<size_t>(0, p - 1), then sign = bernoulli_distribution(0.5) ? +1 : -1.
void ams_hash(uint32_t seed, int64_t d, int64_t p, int32_t* col, float* sign);
// Final count sketch: for each of the inner_dim coordinates, target =
// uniform_int_distribution<int32_t>(0, final_dim - 1), then a bernoulli(0.5) sign.
void count_sketch(uint32_t seed, int64_t inner_dim, int64_t final_dim, int32_t* idx, float* sign);

// Encodes batch clouds: cloud c is rows offsets[c] .. offsets[c + 1] of x (n_total x P.d);
// out: batch x P.out_dim(). Throws std::invalid_argument naming the cloud on NaN / inf.
void encode(const FdeParams& P, const float* x, const int64_t* offsets, int64_t batch, float* out);

}  // namespace embkern::fde
