// Counter-based randomness of the projection family, shared by the drivers (baseline target) and
// the tier kernels; the Numba fallback (python/embkern/_numba/projection.py) mirrors it bit for
// bit. Everything is integer arithmetic on uint64 (wrapping multiplies, shifts, xors) plus
// comparisons against tables computed once in Python, so no libm function can make two platforms
// or backends disagree.
//
//   mix64(z)          : the SplitMix64 finaliser (Stafford's variant 13).
//   hash3(key, a, b)  : mix64(key ^ a * G1 ^ b * G2), the draw number b of item a in stream key.
//   streams           : key_s = mix64(seed ^ s * G3) for s = 1 (counts / Bernoulli tests),
//                       2 (Floyd picks), 3 (signs), 4 (FastRP initial vectors).
//
// Sparse random matrix R (k x d), column j (feature j) at a time:
//   mode 0 (per entry): R[i, j] != 0 iff (hash3(key1, j, i) >> 11) < thr53, thr53 = floor(p 2^53)
//                       (p = 1 gives 2^53: every entry);
//   mode 1 (binomial) : u = (hash3(key1, j, 0) >> 11) 2^-53 (exact in a double); the count c is
//                       the first c with u < cdf[c] (cdf of Binomial(k, p), its last entry > 1);
//                       then c distinct rows by Floyd's algorithm: for t = k - c .. k - 1,
//                       r = ((hash3(key2, j, t) >> 32) (t + 1)) >> 32, take r unless already
//                       taken, else t; rows sorted ascending.
//   sign of R[i, j]   : negative iff hash3(key3, j, i) >> 63.
// Both modes give i.i.d. entries, nonzero with probability p (mode 1 exactly, mode 0 to 2^-53):
// the distribution of scikit-learn's SparseRandomProjection. Mode 1 costs O(1 + nnz) per column
// instead of O(k), which is what lets the sparse-input kernel generate columns on the fly.
//
// FastRP initial vector of node u (dim entries): 16-bit fields b of hash3(key4, u, t / 4)
// (field t % 4, low field first): +c if b < 10923, -c if b < 21846, else 0 (P = 0.16667 each).
#pragma once
#include <cstdint>

#include "projection/projection_kernels.hpp"

#ifndef EMBKERN_ISA_NS
#error "EMBKERN_ISA_NS must name the tier namespace"
#endif

namespace embkern::cpu::EMBKERN_ISA_NS {
namespace srp {

constexpr uint64_t kG1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kG2 = 0xD1B54A32D192ED03ull;
constexpr uint64_t kG3 = 0xA24BAED4963EE407ull;
constexpr uint32_t kInitPlus = 10923, kInitMinus = 21846;

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline uint64_t hash3(uint64_t key, uint64_t a, uint64_t b) { return mix64(key ^ (a * kG1) ^ (b * kG2)); }

inline uint64_t stream_key(uint64_t seed, uint64_t s) { return mix64(seed ^ (s * kG3)); }

struct Keys {
    uint64_t count, pick, sign;
    explicit Keys(uint64_t seed)
        : count(stream_key(seed, 1)), pick(stream_key(seed, 2)), sign(stream_key(seed, 3)) {}
};

// Rows of R's column j, ascending, into idx (room for k, or ncdf - 1 in mode 1); neg[t] = 1 for a
// negative entry. Returns the count.
inline int64_t column(const SrpGen& g, const Keys& keys, int64_t j, int32_t* idx, uint8_t* neg) {
    int64_t c = 0;
    const uint64_t uj = static_cast<uint64_t>(j);
    if (g.mode == 0) {
        for (int64_t i = 0; i < g.k; ++i)
            if ((hash3(keys.count, uj, static_cast<uint64_t>(i)) >> 11) < g.thr53) idx[c++] = static_cast<int32_t>(i);
    } else {
        const double u = static_cast<double>(hash3(keys.count, uj, 0) >> 11) * 0x1p-53;
        int64_t want = 0;
        while (u >= g.cdf[want]) ++want;
        for (int64_t t = g.k - want; t < g.k; ++t) {
            const uint64_t h = hash3(keys.pick, uj, static_cast<uint64_t>(t));
            int32_t r = static_cast<int32_t>(((h >> 32) * static_cast<uint64_t>(t + 1)) >> 32);
            for (int64_t q = 0; q < c; ++q)
                if (idx[q] == r) { r = static_cast<int32_t>(t); break; }
            // insertion into the sorted prefix
            int64_t q = c++;
            while (q > 0 && idx[q - 1] > r) { idx[q] = idx[q - 1]; --q; }
            idx[q] = r;
        }
    }
    for (int64_t q = 0; q < c; ++q)
        neg[q] = static_cast<uint8_t>(hash3(keys.sign, uj, static_cast<uint64_t>(idx[q])) >> 63);
    return c;
}

// Largest count column() can return.
inline int64_t max_column(const SrpGen& g) { return g.mode == 0 ? g.k : g.ncdf - 1; }

}  // namespace srp
}  // namespace embkern::cpu::EMBKERN_ISA_NS
