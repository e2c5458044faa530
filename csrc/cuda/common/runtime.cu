#include "cuda/common/check.cuh"
#include "cuda/common/runtime.hpp"

namespace embkern::cuda {

std::pair<int, std::string> device_count() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return {0, std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"};
    }
    if (n == 0) return {0, "the CUDA driver reports no device"};
    return {n, ""};
}

int runtime_version() {
    int v = 0;
    EMBKERN_CUDA_CHECK(cudaRuntimeGetVersion(&v));
    return v;
}

int driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return v;
}

int current_device() {
    int d = 0;
    EMBKERN_CUDA_CHECK(cudaGetDevice(&d));
    return d;
}

DeviceInfo device_info(int device) {
    cudaDeviceProp prop{};
    EMBKERN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    DeviceInfo info;
    info.name = prop.name;
    info.major = prop.major;
    info.minor = prop.minor;
    info.sm_count = prop.multiProcessorCount;
    info.total_memory = prop.totalGlobalMem;
    return info;
}

int pointer_device(std::uintptr_t ptr) {
    cudaPointerAttributes attr{};
    const cudaError_t e = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr));
    if (e == cudaErrorInvalidValue) {  // some drivers still answer this for unregistered host memory
        (void)cudaGetLastError();
        return -1;
    }
    EMBKERN_CUDA_CHECK(e);
    if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) return attr.device;
    return -1;
}

void stream_wait(std::uintptr_t consumer, std::uintptr_t producer, int device) {
    const cudaStream_t c = to_stream(consumer), p = to_stream(producer);
    if (c == p) return;
    DeviceGuard guard(device);
    cudaEvent_t ev;
    EMBKERN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, p);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(c, ev, 0);
    (void)cudaEventDestroy(ev);  // released once the wait is satisfied
    EMBKERN_CUDA_CHECK(e);
}

void stream_synchronize(std::uintptr_t stream, int device) {
    DeviceGuard guard(device);
    EMBKERN_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream)));
}

DeviceBuffer::DeviceBuffer(std::size_t nbytes, int device) : nbytes_(nbytes) {
    if (device < 0) device = current_device();
    device_ = device;
    if (nbytes == 0) return;
    DeviceGuard guard(device);
    EMBKERN_CUDA_CHECK(cudaMalloc(&ptr_, nbytes));
}

DeviceBuffer::~DeviceBuffer() {
    if (!ptr_) return;
    int previous = 0;
    const bool have = cudaGetDevice(&previous) == cudaSuccess;
    if (have && previous != device_) (void)cudaSetDevice(device_);
    (void)cudaFree(ptr_);
    if (have && previous != device_) (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
}

void DeviceBuffer::copy_from_host(const void* src, std::size_t nbytes, std::uintptr_t stream) {
    if (nbytes > nbytes_) throw std::invalid_argument("copy larger than the device buffer");
    if (nbytes == 0) return;
    DeviceGuard guard(device_);
    // From pageable memory this returns once the source has been staged, so `src` may go away.
    EMBKERN_CUDA_CHECK(cudaMemcpyAsync(ptr_, src, nbytes, cudaMemcpyHostToDevice, to_stream(stream)));
}

void DeviceBuffer::copy_to_host(void* dst, std::size_t nbytes, std::uintptr_t stream) const {
    if (nbytes > nbytes_) throw std::invalid_argument("copy larger than the device buffer");
    if (nbytes == 0) return;
    DeviceGuard guard(device_);
    const cudaStream_t s = to_stream(stream);
    EMBKERN_CUDA_CHECK(cudaMemcpyAsync(dst, ptr_, nbytes, cudaMemcpyDeviceToHost, s));
    EMBKERN_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace embkern::cuda
