// Runtime services of embkern._cuda as plain C++ (no CUDA headers): device discovery that never
// throws for a missing driver, device buffers and copies for numpy inputs, stream ordering.
// Streams and pointers travel as integers (see to_stream in check.cuh for the stream convention).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace embkern::cuda {

// (number of devices, "" or the reason there are none, e.g. "cudaErrorInsufficientDriver (...)").
std::pair<int, std::string> device_count();
int runtime_version();
int driver_version();  // 0 when there is no driver
int current_device();

struct DeviceInfo {
    std::string name;
    int major = 0, minor = 0, sm_count = 0;
    std::size_t total_memory = 0;
};
DeviceInfo device_info(int device);

// The device owning `ptr` (device or managed memory), or -1 for host memory.
int pointer_device(std::uintptr_t ptr);

// Make `consumer` wait for the work queued so far on `producer` (no-op when they are the same).
void stream_wait(std::uintptr_t consumer, std::uintptr_t producer, int device);
void stream_synchronize(std::uintptr_t stream, int device);

// Device memory owned by the object (cudaMalloc / cudaFree on `device`).
class DeviceBuffer {
public:
    DeviceBuffer(std::size_t nbytes, int device);
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    std::uintptr_t ptr() const { return reinterpret_cast<std::uintptr_t>(ptr_); }
    std::size_t nbytes() const { return nbytes_; }
    int device() const { return device_; }
    // Copies of nbytes <= this->nbytes(). to_host waits for the copy (stream-synchronous).
    void copy_from_host(const void* src, std::size_t nbytes, std::uintptr_t stream);
    void copy_to_host(void* dst, std::size_t nbytes, std::uintptr_t stream) const;

private:
    void* ptr_ = nullptr;
    std::size_t nbytes_ = 0;
    int device_ = 0;
};

}  // namespace embkern::cuda
