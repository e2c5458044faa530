// gpu_ceilings.cu: the machine ceilings embkern's CUDA kernels are judged against (cuda.md §5).
//
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o gpu_ceilings bench/gpu_ceilings.cu
//   ./gpu_ceilings [--quick]      -> CSV on stdout: name,value,unit,note
//
// Measured: HBM copy and read bandwidth (16-byte loads), xor+popc+add on 32-bit words, shared-memory
// LUT lookups with random 8-bit (K=256) and 4-bit (K=16) codes, and mma.sync rates for b1 AND.POPC
// (BMMA), s8 (IMMA) and bf16 (HMMA). Each number is the median of several CUDA-event-timed launches
// after a warm-up; per-clock-per-SM figures use the device's reported maximum SM clock (the clock
// actually held may be lower, so they are lower bounds of the true per-clock rate).
// Every kernel stores its accumulators under a condition the compiler cannot prove false, so no work
// is optimised away. Errors: message on stderr, exit code 1.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(expr)                                                                                \
    do {                                                                                        \
        cudaError_t e_ = (expr);                                                                \
        if (e_ != cudaSuccess) {                                                                \
            std::fprintf(stderr, "CUDA error %s (%s) at %s:%d: %s\n", cudaGetErrorName(e_),      \
                         cudaGetErrorString(e_), __FILE__, __LINE__, #expr);                    \
            std::exit(1);                                                                       \
        }                                                                                       \
    } while (0)

static int g_sms = 0;
static double g_clock_hz = 0;  // max SM clock reported by the device

// ---- memory ---------------------------------------------------------------------------------

__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
    size_t stride = size_t(gridDim.x) * blockDim.x;
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = src[i];
}

__global__ void read_kernel(const uint4* __restrict__ src, size_t n, unsigned* out) {
    size_t stride = size_t(gridDim.x) * blockDim.x;
    unsigned acc = 0;
    size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {  // four independent 16-byte loads in flight
        uint4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = src[i];
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}

__global__ void fill_kernel(uint4* p, size_t n) {
    size_t stride = size_t(gridDim.x) * blockDim.x;
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned h = unsigned(i) * 2654435761u + 12345u;
        p[i] = make_uint4(h, h ^ 0x5bd1e995u, h * 7u, ~h);
    }
}

// ---- popcount: acc += popc(q ^ d) on 32-bit words --------------------------------------------

__global__ void popc_kernel(int iters, unsigned* out) {
    unsigned q[8], d[8], acc[8];
    unsigned s = blockIdx.x * blockDim.x + threadIdx.x;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        q[j] = s * 2654435761u + j;
        d[j] = s ^ (0x9e3779b9u * (j + 1));
        acc[j] = 0;
    }
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            acc[j] += __popc(q[j] ^ d[j]);
            d[j] += acc[j];  // the next word depends on this one: nothing can be hoisted
        }
    }
    unsigned t = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) t += acc[j];
    if (t == 0x12345678u) out[0] = t;
}

// ---- shared-memory LUT lookups with random codes ---------------------------------------------
// K = 256: codes are bytes, LUT[m][256] floats; K = 16: nibbles, LUT[m][16]. M subspaces, the same
// subspace for the whole warp at each step (as in a PQ scan), codes random per thread.

template <int K>
__global__ void lut_kernel(int iters, float* out) {
    constexpr int M = 32;
    constexpr int BITS = K == 256 ? 8 : 4;
    constexpr int PER_WORD = 32 / BITS;
    __shared__ float lut[M * K];
    for (int i = threadIdx.x; i < M * K; i += blockDim.x) lut[i] = float((i * 37) % 101) * 0.01f;
    __syncthreads();
    unsigned r = (blockIdx.x * blockDim.x + threadIdx.x) * 2654435761u + 1u;
    float acc0 = 0.f, acc1 = 0.f;
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int m0 = 0; m0 < M; m0 += PER_WORD) {
            r ^= r << 13;  // xorshift32: a fresh random code word
            r ^= r >> 17;
            r ^= r << 5;
#pragma unroll
            for (int j = 0; j < PER_WORD; ++j) {
                unsigned c = (r >> (j * BITS)) & (K - 1);
                float v = lut[(m0 + j) * K + c];
                if (j & 1) acc1 += v; else acc0 += v;
            }
        }
    }
    if (acc0 + acc1 == -1.f) out[0] = acc0 + acc1;
}

// ---- tensor-core mma.sync rates ---------------------------------------------------------------

constexpr int CHAINS = 4;  // independent accumulators per warp

__global__ void bmma_kernel(int iters, int* out) {
    unsigned s = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned a0 = s * 2654435761u, a1 = a0 ^ 0x5bd1e995u, a2 = a0 * 7u, a3 = ~a0;
    unsigned b0 = s * 40503u + 1u, b1 = ~b0;
    int c[CHAINS][4] = {};
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int k = 0; k < CHAINS; ++k) {
            asm volatile(
                "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+r"(c[k][0]), "+r"(c[k][1]), "+r"(c[k][2]), "+r"(c[k][3])
                : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
    }
    int t = 0;
#pragma unroll
    for (int k = 0; k < CHAINS; ++k) t += c[k][0] + c[k][1] + c[k][2] + c[k][3];
    if (t == 0x12345678) out[0] = t;
}

__global__ void imma_kernel(int iters, int* out) {
    unsigned s = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned a0 = s * 2654435761u, a1 = a0 ^ 0x5bd1e995u, a2 = a0 * 7u, a3 = ~a0;
    unsigned b0 = s * 40503u + 1u, b1 = ~b0;
    int c[CHAINS][4] = {};
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int k = 0; k < CHAINS; ++k) {
            asm volatile(
                "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+r"(c[k][0]), "+r"(c[k][1]), "+r"(c[k][2]), "+r"(c[k][3])
                : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
    }
    int t = 0;
#pragma unroll
    for (int k = 0; k < CHAINS; ++k) t += c[k][0] + c[k][1] + c[k][2] + c[k][3];
    if (t == 0x12345678) out[0] = t;
}

__global__ void hmma_kernel(int iters, float* out) {
    unsigned s = blockIdx.x * blockDim.x + threadIdx.x;
    // bf16 pairs with small random-ish values (exponent in range, no NaN/Inf)
    unsigned base = 0x3c003c00u | ((s * 2654435761u) & 0x007f007fu);
    unsigned a0 = base, a1 = base ^ 0x00010001u, a2 = base ^ 0x00020002u, a3 = base ^ 0x00040004u;
    unsigned b0 = base ^ 0x00080008u, b1 = base ^ 0x00100010u;
    float c[CHAINS][4] = {};
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int k = 0; k < CHAINS; ++k) {
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[k][0]), "+f"(c[k][1]), "+f"(c[k][2]), "+f"(c[k][3])
                : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
    }
    float t = 0;
#pragma unroll
    for (int k = 0; k < CHAINS; ++k) t += c[k][0] + c[k][1] + c[k][2] + c[k][3];
    if (t == -1.f) out[0] = t;
}

// ---- timing -------------------------------------------------------------------------------------

template <class F>
static double median_ms(F&& launch, int reps) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    launch();  // warm-up
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
        CK(cudaEventRecord(a));
        launch();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaGetLastError());
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

static void row(const char* name, double value, const char* unit, const char* note) {
    std::printf("%s,%.6g,%s,%s\n", name, value, unit, note);
    std::fflush(stdout);
}

// ops = per-second count of the unit; also reported per clock per SM
static void rate_rows(const char* name, double ops_per_s, const char* unit, const char* note) {
    char n2[128], u2[64];
    row(name, ops_per_s, unit, note);
    std::snprintf(n2, sizeof n2, "%s_per_clk_sm", name);
    std::snprintf(u2, sizeof u2, "%s/clk/SM", unit);
    row(n2, ops_per_s / (g_clock_hz * g_sms), u2, "at the max SM clock");
}

int main(int argc, char** argv) {
    bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    int dev = 0;
    CK(cudaSetDevice(dev));
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    int clk_khz = 0;
    CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev));
    g_clock_hz = clk_khz * 1e3;
    std::printf("name,value,unit,note\n");
    row("device_sms", g_sms, "SMs", p.name);
    row("device_max_sm_clock", clk_khz / 1e3, "MHz", "cudaDevAttrClockRate");
    row("device_l2", p.l2CacheSize / 1048576.0, "MiB", "");
    row("device_smem_per_sm", p.sharedMemPerMultiprocessor / 1024.0, "KiB", "");
    const int reps = quick ? 3 : 10;

    // HBM: 2 GiB per buffer (well past the L2)
    size_t bytes = size_t(quick ? 256 : 2048) << 20;
    size_t n = bytes / sizeof(uint4);
    uint4 *src = nullptr, *dst = nullptr;
    unsigned* uout = nullptr;
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMalloc(&uout, 64));
    fill_kernel<<<g_sms * 8, 256>>>(src, n);
    CK(cudaGetLastError());
    int grid_mem = g_sms * 8;
    double ms = median_ms([&] { copy_kernel<<<grid_mem, 256>>>(src, dst, n); }, reps);
    row("hbm_copy", 2.0 * bytes / (ms * 1e-3) / 1e12, "TB/s", "16-byte loads+stores, read+write counted");
    ms = median_ms([&] { read_kernel<<<grid_mem, 256>>>(src, n, uout); }, reps);
    row("hbm_read", bytes / (ms * 1e-3) / 1e12, "TB/s", "16-byte loads, 4 in flight per thread");
    CK(cudaFree(src));
    CK(cudaFree(dst));

    const int grid = g_sms * 8, threads = 256;
    const double nthreads = double(grid) * threads;
    int iters = quick ? 512 : 16384;
    ms = median_ms([&] { popc_kernel<<<grid, threads>>>(iters, uout); }, reps);
    rate_rows("popc_words", nthreads * iters * 8 / (ms * 1e-3), "words", "xor+popc+add, 32-bit words");

    float* fout = nullptr;
    CK(cudaMalloc(&fout, 64));
    iters = quick ? 64 : 2048;
    ms = median_ms([&] { lut_kernel<256><<<grid, threads>>>(iters, fout); }, reps);
    rate_rows("smem_lut_K256_M32", nthreads * iters * 32 / (ms * 1e-3), "lookups",
              "fp32 LUT, random 8-bit codes, warp on one subspace");
    ms = median_ms([&] { lut_kernel<16><<<grid, threads>>>(iters, fout); }, reps);
    rate_rows("smem_lut_K16_M32", nthreads * iters * 32 / (ms * 1e-3), "lookups",
              "fp32 LUT, random 4-bit codes, warp on one subspace");

    // mma.sync: each warp runs iters*CHAINS mmas
    const int mgrid = g_sms * 4, mthreads = 256;
    const double warps = double(mgrid) * mthreads / 32;
    int* iout = nullptr;
    CK(cudaMalloc(&iout, 64));
    iters = quick ? 256 : 16384;
    ms = median_ms([&] { bmma_kernel<<<mgrid, mthreads>>>(iters, iout); }, reps);
    double macs = warps * iters * CHAINS * 16.0 * 8 * 256 / (ms * 1e-3);
    row("bmma_b1_and_popc", 2 * macs / 1e12, "TOPS", "mma.sync m16n8k256 b1 and.popc, 2 ops per bit-MAC");
    row("bmma_1024bit_pairs", macs / 1024, "pairs/s", "1024-bit Hamming pairs/s at that rate (AND form)");
    ms = median_ms([&] { imma_kernel<<<mgrid, mthreads>>>(iters, iout); }, reps);
    row("imma_s8", 2 * warps * iters * CHAINS * 16.0 * 8 * 32 / (ms * 1e-3) / 1e12, "TOPS",
        "mma.sync m16n8k32 s8 (not wgmma)");
    ms = median_ms([&] { hmma_kernel<<<mgrid, mthreads>>>(iters, fout); }, reps);
    row("hmma_bf16", 2 * warps * iters * CHAINS * 16.0 * 8 * 16 / (ms * 1e-3) / 1e12, "TFLOP/s",
        "mma.sync m16n8k16 bf16->f32 (not wgmma)");

    CK(cudaFree(uout));
    CK(cudaFree(fout));
    CK(cudaFree(iout));
    CK(cudaDeviceSynchronize());
    return 0;
}
