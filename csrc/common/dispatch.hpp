// The kernel table: one function pointer per kernel, filled once at import from the scalar tier
// upward for every tier that is compiled in and whose full feature set the CPU and OS support.
// EMBKERN_ISA (or set_isa) caps the tier. Only this file and dispatch.cpp know about tiers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fde/fde_kernels.hpp"
#include "lowrank/lowrank_kernels.hpp"
#include "projection/projection_kernels.hpp"

namespace embkern {

struct BinaryKernels {
    // Sign bits of n rows of d values: bit j set where x[j] > threshold; rows of ceil(d/8) bytes.
    void (*pack_signs_f32)(const float* x, int64_t n, int64_t d, float threshold, bool little,
                           uint8_t* out);
    void (*pack_signs_f64)(const double* x, int64_t n, int64_t d, double threshold, bool little,
                           uint8_t* out);
    // Hamming distances of na x nb codes of cs bytes into out (row stride ldo).
    void (*hamming_tile)(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                         int32_t* out, int64_t ldo);
    // Streams nb codes past nq queries and updates each query's k-slot max-heap
    // (heap_d/heap_i, row stride k, keyed by (distance, id)); ids are id0 + position.
    void (*hamming_topk_scan)(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                              int64_t cs, int64_t k, int64_t id0, int32_t* heap_d,
                              int64_t* heap_i);
    // Streams nb codes past nq queries and calls emit(ctx, query, distance, id0 + j) for every
    // distance <= radius, in ascending j per query.
    void (*hamming_range_scan)(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb,
                               int64_t cs, int32_t radius, int64_t id0,
                               void (*emit)(void*, int64_t, int32_t, int64_t), void* ctx);
};

// Queries per ADC LUT group: tables are laid out [m][ksub][lane] with this many lanes.
constexpr int64_t kPqLutLanes = 8;

struct PqKernels {
    // out (n, m, ksub): L2 (squared) or inner-product of each sub-vector with each centroid.
    // ct: centroids transposed per sub-space, [m][dsub][ksub].
    void (*distance_tables)(const float* x, int64_t n, int64_t dim, const float* ct, int64_t m,
                            int64_t ksub, bool ip, float* out);
    // out (n, m): nearest centroid per sub-vector (first on ties).
    void (*assign)(const float* x, int64_t n, int64_t dim, const float* ct, int64_t m, int64_t ksub,
                   int32_t* out);
    // One sub-space (x: n x dsub contiguous, ct: [dsub][ksub]): assign()'s label, its squared
    // distance d1 and the smallest squared distance to any other centroid d2.
    void (*assign_top2)(const float* x, int64_t n, int64_t dsub, const float* ct, int64_t ksub,
                        int32_t* label, float* d1, float* d2);
    // lut: [m][ksub][kPqLutLanes] for nl <= kPqLutLanes queries; out: nl rows of n, stride ldo.
    void (*adc_tile)(const float* lut, int64_t nl, const uint8_t* codes, int64_t n, int64_t m,
                     int nbits, float* out, int64_t ldo);
    // Streams n codes, updating nl k-slot (distance, id) max-heaps (row stride k); ids id0 + j.
    void (*adc_topk_scan)(const float* lut, int64_t nl, const uint8_t* codes, int64_t n, int64_t m,
                          int nbits, int64_t k, int64_t id0, float* heap_d, int64_t* heap_i);
    // 4-bit fast scan (specs/binary_pq.md §2). packed: nblocks blocks of 32 codes in faiss's
    // layout (m2 / 2 sub-quantizer pairs x 32 bytes per block, m2 even); lut: nl quantized tables
    // [m2][16] uint8, one after the other. Streams the blocks past the nl queries, keeping each
    // query's k smallest exact uint16 sums S = sum_s lut[s][code_s] in its (S, id) max-heap
    // (heap_s/heap_i, row stride k); codes id0 + j for j < nvalid only (the rest is padding).
    void (*fastscan_topk_scan)(const uint8_t* lut, int64_t nl, const uint8_t* packed,
                               int64_t nblocks, int64_t m2, int64_t nvalid,
                               int64_t k, int64_t id0, uint16_t* heap_s, int64_t* heap_i);
};

struct KernelTable {
    const char* isa = "scalar";
    BinaryKernels binary{};
    PqKernels pq{};
    ProjectionKernels projection{};
    FdeKernels fde{};
    LowrankKernels lowrank{};
};

// The table in use. Reads are lock-free; set_isa swaps it (not while kernels run).
const KernelTable& kernels();

std::vector<std::string> compiled_isas();   // tiers built into this module, narrow to wide
std::vector<std::string> supported_isas();  // compiled tiers this CPU and OS can run
std::string current_isa();
// Rebuild the table capped at `isa` ("best" = widest supported). Throws std::invalid_argument
// for an unknown or unsupported tier.
void set_isa(const std::string& isa);

}  // namespace embkern
