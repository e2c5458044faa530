// CUDA error handling and small runtime helpers shared by the .cu files of embkern._cuda.
// Included only by nvcc-compiled sources; the g++-compiled bindings see plain C++ declarations.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace embkern::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
    (void)cudaGetLastError();  // clear a non-sticky error so it is not reported again elsewhere
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ") at " + file + ":" + std::to_string(line) +
                             ": " + expr);
}

}  // namespace embkern::cuda

#define EMBKERN_CUDA_CHECK(expr)                                                           \
    do {                                                                                   \
        const cudaError_t embkern_err_ = (expr);                                           \
        if (embkern_err_ != cudaSuccess)                                                   \
            ::embkern::cuda::throw_cuda_error(embkern_err_, #expr, __FILE__, __LINE__);    \
    } while (0)

namespace embkern::cuda {

// Stream handles from Python follow the array-API convention: 1 = legacy default stream,
// 2 = per-thread default stream, anything else is a cudaStream_t; 0 (CuPy's and torch's null
// stream) is the legacy default stream too.
inline cudaStream_t to_stream(std::uintptr_t s) {
    if (s == 0 || s == 1) return cudaStreamLegacy;
    if (s == 2) return cudaStreamPerThread;
    return reinterpret_cast<cudaStream_t>(s);
}

// Makes `device` current for the scope (device < 0: leave the current one).
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        if (device < 0) return;
        EMBKERN_CUDA_CHECK(cudaGetDevice(&previous_));
        if (previous_ != device) {
            EMBKERN_CUDA_CHECK(cudaSetDevice(device));
            restore_ = true;
        }
    }
    ~DeviceGuard() {
        if (restore_) (void)cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = 0;
    bool restore_ = false;
};

// After each launch: report launch-configuration errors now; with EMBKERN_CUDA_SYNC=1 also wait for
// the kernel, so an asynchronous fault is reported by the launch that caused it.
inline bool sync_after_launch() {
    static const bool on = [] {
        const char* v = std::getenv("EMBKERN_CUDA_SYNC");
        return v && *v && std::string(v) != "0";
    }();
    return on;
}

}  // namespace embkern::cuda

#define EMBKERN_CUDA_CHECK_LAUNCH(stream)                                                   \
    do {                                                                                   \
        EMBKERN_CUDA_CHECK(cudaGetLastError());                                            \
        if (::embkern::cuda::sync_after_launch()) EMBKERN_CUDA_CHECK(cudaStreamSynchronize(stream)); \
    } while (0)
