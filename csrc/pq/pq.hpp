// Product-quantization drivers: layout conversions, task splitting and merging around the
// current tier's PQ kernels. Compiled at the baseline target; all sizes int64.
#pragma once
#include <cstdint>
#include <vector>

namespace embkern::pq {

// Nearest-centroid codes, packed as faiss packs them (nbits 8: a byte per sub-quantizer;
// nbits 4: two per byte, first in the low nibble). codes: n x ceil(m * nbits / 8).
void encode(const float* x, int64_t n, int64_t dim, const float* centroids, int64_t m, int nbits,
            uint8_t* codes);
void decode(const uint8_t* codes, int64_t n, const float* centroids, int64_t dim, int64_t m,
            int nbits, float* out);
// out: n x m x ksub (squared L2, or inner products when ip).
void distance_tables(const float* x, int64_t n, int64_t dim, const float* centroids, int64_t m,
                     int nbits, bool ip, float* out);
// lut: nq x m x ksub; out: nq x n.
void adc_distances(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m,
                   int nbits, float* out);
// k smallest (or largest) per query, ties by smaller id.
void adc_topk(const float* lut, int64_t nq, const uint8_t* codes, int64_t n, int64_t m, int nbits,
              int64_t k, bool largest, float* out_d, int64_t* out_i);
// ---- 4-bit fast scan (faiss IndexPQFastScan layout and LUT quantization, specs/binary_pq.md §2)
// Bytes of the packed form of n codes of m sub-quantizers: ceil(n / 32) * 32 * ceil(m / 2).
int64_t fastscan_bytes(int64_t n, int64_t m);
// codes (n x ceil(m / 2), 4-bit flat codes) -> packed (fastscan_bytes(n, m)), byte-identical to
// IndexPQFastScan.codes (bbs = 32; padding vectors and sub-quantizer are 0). unpack is the
// inverse (for odd m the unused high nibble of each row's last byte is 0).
void pack_fastscan(const uint8_t* codes, int64_t n, int64_t m, uint8_t* packed);
void unpack_fastscan(const uint8_t* packed, int64_t n, int64_t m, uint8_t* codes);
// Largest m the 16-bit accumulators take exactly (255 * 256 < 2^16).
constexpr int64_t kFastScanMaxM = 256;
// lut: nq x m x 16 float tables. Quantizes each query's table as faiss does, keeps the k
// smallest (largest) integer sums S per query, ties by smaller id, and returns
// fma(S, 1 / a, b). A query whose table is constant (or whose scale overflows) gets S = 0 and
// distance b for every code (faiss would return NaN).
void fastscan_topk(const float* lut, int64_t nq, const uint8_t* packed, int64_t n, int64_t m,
                   int64_t k, bool largest, float* out_d, int64_t* out_i);
// Lloyd iterations on every sub-space at once. centroids (m x ksub x dsub) hold the initial
// centroids and receive the result. Empty clusters are re-seeded by splitting the largest one.
void train(const float* x, int64_t n, int64_t dim, int64_t m, int nbits, int iterations,
           float* centroids);

}  // namespace embkern::pq
