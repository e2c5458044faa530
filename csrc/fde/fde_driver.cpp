// fde drivers: the random tables and task splitting around the current tier's kernel.
#include "fde/fde.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace embkern::fde {

namespace {

// libstdc++'s distributions on top of the standard-specified std::mt19937 (specs/fde.md §5).
struct Stream {
    std::mt19937 gen;
    explicit Stream(uint32_t seed) : gen(seed) {}
    uint32_t raw() { return static_cast<uint32_t>(gen()); }
    // generate_canonical<float>: one draw, rounded to float, clamped below 1.
    float canonical_f() {
        float u = static_cast<float>(raw()) / 4294967296.0f;
        if (u >= 1.0f) u = std::nextafter(1.0f, 0.0f);
        return u;
    }
    // generate_canonical<double>: two draws.
    double canonical_d() {
        double sum = static_cast<double>(raw());
        sum += static_cast<double>(raw()) * 4294967296.0;
        double u = sum / 18446744073709551616.0;
        if (u >= 1.0) u = std::nextafter(1.0, 0.0);
        return u;
    }
    bool bernoulli_half() { return canonical_d() < 0.5; }
    // uniform_int_distribution over [0, range) with a 32-bit engine: Lemire's multiply-shift.
    uint32_t below(uint32_t range) {
        uint64_t prod = static_cast<uint64_t>(raw()) * range;
        uint32_t low = static_cast<uint32_t>(prod);
        if (low < range) {
            const uint32_t threshold = static_cast<uint32_t>(-range) % range;
            while (low < threshold) {
                prod = static_cast<uint64_t>(raw()) * range;
                low = static_cast<uint32_t>(prod);
            }
        }
        return static_cast<uint32_t>(prod >> 32);
    }
    // normal_distribution<float>: Marsaglia polar method, returns y*m and keeps x*m.
    bool saved_ok = false;
    float saved = 0.0f;
    float normal() {
        if (saved_ok) {
            saved_ok = false;
            return saved;
        }
        float x, y, r2;
        do {
            x = static_cast<float>(static_cast<double>(2.0f * canonical_f()) - 1.0);
            y = static_cast<float>(static_cast<double>(2.0f * canonical_f()) - 1.0);
            r2 = x * x + y * y;
        } while (r2 > 1.0f || r2 == 0.0f);
        const float mult = std::sqrt(-2.0f * std::log(r2) / r2);
        saved = x * mult;
        saved_ok = true;
        return y * mult;
    }
};

}  // namespace

void simhash_matrix(uint32_t seed, int64_t d, int64_t k, float* out) {
    Stream s(seed);
    for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < d; ++i) {
            const float v = s.normal();
            out[i * k + j] = v * 1.0f + 0.0f;  // the distribution's "* stddev + mean"
        }
}

void ams_hash(uint32_t seed, int64_t d, int64_t p, int32_t* col, float* sign) {
    Stream s(seed);
    for (int64_t i = 0; i < d; ++i) {
        col[i] = static_cast<int32_t>(s.below(static_cast<uint32_t>(p)));
        sign[i] = s.bernoulli_half() ? 1.0f : -1.0f;
    }
}

void count_sketch(uint32_t seed, int64_t inner_dim, int64_t final_dim, int32_t* idx, float* sign) {
    Stream s(seed);
    for (int64_t i = 0; i < inner_dim; ++i) {
        idx[i] = static_cast<int32_t>(s.below(static_cast<uint32_t>(final_dim)));
        sign[i] = s.bernoulli_half() ? 1.0f : -1.0f;
    }
}

void encode(const FdeParams& P, const float* x, const int64_t* offsets, int64_t batch, float* out) {
    if (batch <= 0) return;
    auto kernel = kernels().fde.encode_f32;
    const int64_t D = P.out_dim();
    // Tasks of about 4096 token rows (whole clouds); scratch sized for the task's largest cloud.
    std::vector<int64_t> starts{0};
    int64_t rows = 0;
    for (int64_t c = 0; c < batch; ++c) {
        rows += offsets[c + 1] - offsets[c];
        if (rows >= 4096 || c + 1 == batch) {
            starts.push_back(c + 1);
            rows = 0;
        }
    }
    const int64_t ntasks = static_cast<int64_t>(starts.size()) - 1;
    std::atomic<int64_t> bad{-1};
    parallel_for(ntasks, [&](int64_t t) {
        int64_t nmax = 0;
        for (int64_t c = starts[t]; c < starts[t + 1]; ++c) nmax = std::max(nmax, offsets[c + 1] - offsets[c]);
        std::vector<float> work(static_cast<size_t>(fde_work_floats(P, nmax)));
        for (int64_t c = starts[t]; c < starts[t + 1]; ++c) {
            const int64_t n = offsets[c + 1] - offsets[c];
            if (!kernel(P, x + offsets[c] * P.d, n, out + c * D, work.data())) {
                int64_t expected = -1;
                bad.compare_exchange_strong(expected, c);
                std::memset(out + c * D, 0, static_cast<size_t>(D) * sizeof(float));
            }
        }
    });
    if (bad.load() >= 0)
        throw std::invalid_argument("points contains NaN or inf (point cloud " +
                                    std::to_string(bad.load()) + ")");
}

}  // namespace embkern::fde
