// Binary-code drivers: split work into tasks over query blocks and database parts, run the
// current tier's kernels on them in parallel, and merge. Compiled at the baseline target.
// All counts and offsets are int64; the caller (bindings) has validated shapes.
#pragma once
#include <cstdint>
#include <vector>

namespace embkern::binary {

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little, uint8_t* out);
void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little, uint8_t* out);

// out: na x nb int32.
void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out);

// out_d/out_i: nq x k, ascending (distance, id). Requires 1 <= k <= nb.
void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i);

struct RangeResult {
    std::vector<int64_t> lims;
    std::vector<int32_t> distances;
    std::vector<int64_t> ids;
};
RangeResult hamming_range(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                          int32_t radius);

// out: nq x nb float32.
void asymmetric_scores(const float* q, int64_t nq, int64_t d, const uint8_t* codes, int64_t nb,
                       bool little, float* out);

// q: nq x planes x nbytes, db: nb x planes x nbytes, weights: planes. out: nq x nb float32.
void multibit_scores(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                     int64_t nbytes, int64_t dim, const double* weights, float* out);
// out_s/out_i: nq x k, descending score, ties by smaller id.
void multibit_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t planes,
                   int64_t nbytes, int64_t dim, const double* weights, int64_t k, float* out_s,
                   int64_t* out_i);

}  // namespace embkern::binary
