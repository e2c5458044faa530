// The device side of the kernel convention in common/blocks.hpp: the context a body sees, the one
// __global__ template that runs a body, and the stream-ordered executor orchestrations drive.
// Included only by nvcc-compiled sources.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cuda/common/blocks.hpp"
#include "cuda/common/check.cuh"

namespace embkern::cuda {

struct DeviceCtx {
    __device__ __forceinline__ int tid() const { return int(threadIdx.x); }
    __device__ __forceinline__ int nthreads() const { return int(blockDim.x); }
    __device__ __forceinline__ int64_t block() const { return int64_t(blockIdx.x); }
    __device__ __forceinline__ int64_t nblocks() const { return int64_t(gridDim.x); }
    __device__ __forceinline__ void sync() const { __syncthreads(); }
};

extern __shared__ __align__(16) unsigned char ek_smem[];

// A tag may also ask for kMinBlocks resident blocks per SM (the register cap follows).
template <class K, class = void>
struct MinBlocks {
    static constexpr int value = 1;
};
template <class K>
struct MinBlocks<K, std::void_t<decltype(K::kMinBlocks)>> {
    static constexpr int value = K::kMinBlocks;
};

template <class K, class P>
__global__ void __launch_bounds__(K::kMaxThreads, MinBlocks<K>::value) ek_kernel(const P p) {
    DeviceCtx ctx;
    K::body(ctx, ek_smem, p);
}

class DeviceExec {
public:
    explicit DeviceExec(std::uintptr_t stream) : stream_(to_stream(stream)) {
        int dev = 0;
        EMBKERN_CUDA_CHECK(cudaGetDevice(&dev));
        EMBKERN_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
        EMBKERN_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin_, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    }
    int sm_count() const { return sms_; }
    // The most dynamic shared memory one block may ask for on this device.
    size_t smem_optin() const { return size_t(smem_optin_); }

    void* alloc(size_t bytes) {
        void* p = nullptr;
        EMBKERN_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream_));
        return p;
    }
    void release(void* p) noexcept {
        if (cudaFreeAsync(p, stream_) != cudaSuccess) (void)cudaGetLastError();
    }
    void zero(void* p, size_t bytes) { EMBKERN_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_)); }
    void copy(void* dst, const void* src, size_t bytes) {
        EMBKERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    }
    void wait() { EMBKERN_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
    cudaStream_t stream() const { return stream_; }

    template <class K, class P>
    void launch(int64_t grid, int threads, size_t smem, const P& p) {
        if (smem > kSmemLimit)
            EMBKERN_CUDA_CHECK(cudaFuncSetAttribute(ek_kernel<K, P>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    int(smem)));
        ek_kernel<K, P><<<dim(grid), unsigned(threads), smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }

private:
    static unsigned dim(int64_t grid) {  // grids are capped by the orchestrations (SMs x a few)
        return static_cast<unsigned>(grid < 1 ? 1 : (grid > 0x7FFFFFFF ? 0x7FFFFFFF : grid));
    }
    cudaStream_t stream_;
    int sms_ = 1;
    int smem_optin_ = 48 * 1024;
};

}  // namespace embkern::cuda
