// CUDA kernels of the binary-code family: __global__ wrappers around the bodies of
// binary_blocks.hpp and the stream-ordered executor the shared orchestration drives.
#include "cuda/binary/binary_blocks.hpp"
#include "cuda/binary/binary_cuda.hpp"
#include "cuda/common/check.cuh"

namespace embkern::cuda {

namespace {

struct DeviceCtx {
    __device__ __forceinline__ int tid() const { return int(threadIdx.x); }
    __device__ __forceinline__ int nthreads() const { return int(blockDim.x); }
    __device__ __forceinline__ int64_t block() const { return int64_t(blockIdx.x); }
    __device__ __forceinline__ int64_t nblocks() const { return int64_t(gridDim.x); }
    __device__ __forceinline__ void sync() const { __syncthreads(); }
};

extern __shared__ __align__(16) unsigned char ek_smem[];

template <class T>
__global__ void __launch_bounds__(256) pack_signs_kernel(const PackParams<T> p) {
    DeviceCtx ctx;
    pack_signs_body(ctx, p);
}

__global__ void __launch_bounds__(kDistThreads) hamming_distance_kernel(const DistParams p) {
    DeviceCtx ctx;
    hamming_distance_body(ctx, ek_smem, p);
}

__global__ void __launch_bounds__(256) topk_partition_kernel(const TopkParams p) {
    DeviceCtx ctx;
    topk_partition_body(ctx, ek_smem, p);
}

__global__ void __launch_bounds__(256) topk_merge_kernel(const TopkParams p) {
    DeviceCtx ctx;
    topk_merge_body(ctx, ek_smem, p);
}

__global__ void __launch_bounds__(256) topk_hist_kernel(const TopkParams p) {
    DeviceCtx ctx;
    topk_hist_body(ctx, ek_smem, p);
}

__global__ void __launch_bounds__(256) topk_select_kernel(const TopkParams p) {
    DeviceCtx ctx;
    topk_select_body(ctx, p);
}

__global__ void __launch_bounds__(256) topk_emit_kernel(const TopkParams p) {
    DeviceCtx ctx;
    topk_emit_body(ctx, ek_smem, p);
}

class DeviceExec {
public:
    explicit DeviceExec(std::uintptr_t stream) : stream_(to_stream(stream)) {
        int dev = 0;
        EMBKERN_CUDA_CHECK(cudaGetDevice(&dev));
        EMBKERN_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
    }
    int sm_count() const { return sms_; }

    void* alloc(size_t bytes) {
        void* p = nullptr;
        EMBKERN_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream_));
        return p;
    }
    void release(void* p) noexcept {
        if (cudaFreeAsync(p, stream_) != cudaSuccess) (void)cudaGetLastError();
    }
    void zero(void* p, size_t bytes) { EMBKERN_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_)); }

    template <class T>
    void pack_signs(int64_t grid, int threads, const PackParams<T>& p) {
        pack_signs_kernel<T><<<dim(grid), threads, 0, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void hamming_distance(int64_t grid, int threads, size_t smem, const DistParams& p) {
        hamming_distance_kernel<<<dim(grid), threads, smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void topk_partition(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        topk_partition_kernel<<<dim(grid), threads, smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void topk_merge(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        topk_merge_kernel<<<dim(grid), threads, smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void topk_hist(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        topk_hist_kernel<<<dim(grid), threads, smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void topk_select(int64_t grid, int threads, const TopkParams& p) {
        topk_select_kernel<<<dim(grid), threads, 0, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }
    void topk_emit(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        topk_emit_kernel<<<dim(grid), threads, smem, stream_>>>(p);
        EMBKERN_CUDA_CHECK_LAUNCH(stream_);
    }

private:
    static unsigned dim(int64_t grid) {  // grids are capped by the orchestration (SMs x 32)
        return static_cast<unsigned>(grid < 1 ? 1 : (grid > 0x7FFFFFFF ? 0x7FFFFFFF : grid));
    }
    cudaStream_t stream_;
    int sms_ = 1;
};

}  // namespace

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device) {
    run_pack_signs_checks(n, d);
    if (n * d == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_pack_signs(ex, x, n, d, threshold, little, out);
}

void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, std::uintptr_t stream, int device) {
    run_pack_signs_checks(n, d);
    if (n * d == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_pack_signs(ex, x, n, d, threshold, little, out);
}

void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, std::uintptr_t stream, int device) {
    run_hamming_distance_checks(na, nb, cs);
    if (na == 0 || nb == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_hamming_distance(ex, a, na, b, nb, cs, out);
}

void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, std::uintptr_t stream, int device,
                  const TopkOptions& options) {
    run_hamming_topk_checks(nq, nb, cs, k, options);
    if (nq == 0) return;
    DeviceGuard guard(device);
    DeviceExec ex(stream);
    run_hamming_topk(ex, q, nq, db, nb, cs, k, out_d, out_i, options);
}

}  // namespace embkern::cuda
