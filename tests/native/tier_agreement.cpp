// Native check that every ISA tier compiled into this build gives the scalar tier's results, run
// without Python (for cross-compiled targets under an emulator: .ci/arm64_check.sh builds it for
// AArch64 and runs it with qemu-aarch64). Exits 1 on the first disagreement.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/dispatch.hpp"

namespace {

int failures = 0;

template <class T>
void expect_equal(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
    if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0) {
        std::printf("MISMATCH %s\n", what.c_str());
        ++failures;
    }
}

struct Outputs {
    std::vector<uint8_t> signs;
    std::vector<int32_t> hamming;
    std::vector<int32_t> labels;
    std::vector<float> tables, adc;
};

Outputs run_all(uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> byte(0, 255);
    const embkern::KernelTable& k = embkern::kernels();
    Outputs o;
    // binary: odd sizes, code widths that leave SIMD tails
    const int64_t n = 37, d = 203, cs = (d + 7) / 8;
    std::vector<float> x(static_cast<size_t>(n * d));
    for (float& v : x) v = normal(gen);
    o.signs.resize(static_cast<size_t>(n * cs));
    k.binary.pack_signs_f32(x.data(), n, d, 0.0f, false, o.signs.data());
    o.hamming.resize(static_cast<size_t>(n * n));
    k.binary.hamming_tile(o.signs.data(), n, o.signs.data(), n, cs, o.hamming.data(), n);
    // pq: 8-dim sub-vectors (fused tables) and 24-dim ones, 256 centroids
    for (int64_t dsub : {8, 24}) {
        const int64_t m = 3, ksub = 256, dim = m * dsub, nv = 21;
        std::vector<float> v(static_cast<size_t>(nv * dim)), ct(static_cast<size_t>(m * dsub * ksub));
        for (float& e : v) e = normal(gen);
        for (float& e : ct) e = normal(gen);
        std::vector<int32_t> lab(static_cast<size_t>(nv * m));
        k.pq.assign(v.data(), nv, dim, ct.data(), m, ksub, lab.data());
        o.labels.insert(o.labels.end(), lab.begin(), lab.end());
        std::vector<float> tab(static_cast<size_t>(nv * m * ksub));
        k.pq.distance_tables(v.data(), nv, dim, ct.data(), m, ksub, false, tab.data());
        o.tables.insert(o.tables.end(), tab.begin(), tab.end());
    }
    const int64_t m = 5, ncodes = 45, L = embkern::kPqLutLanes;
    std::vector<float> lut(static_cast<size_t>(m * 256 * L));
    for (float& e : lut) e = normal(gen);
    std::vector<uint8_t> codes(static_cast<size_t>(ncodes * m));
    for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(gen));
    o.adc.resize(static_cast<size_t>(L * ncodes));
    k.pq.adc_tile(lut.data(), L, codes.data(), ncodes, m, 8, o.adc.data(), ncodes);
    return o;
}

}  // namespace

int main() {
    const std::vector<std::string> tiers = embkern::supported_isas();
    std::printf("supported tiers:");
    for (const auto& t : tiers) std::printf(" %s", t.c_str());
    std::printf("\n");
    embkern::set_isa("scalar");
    const Outputs want = run_all(7);
    for (const auto& t : tiers) {
        embkern::set_isa(t);
        const Outputs got = run_all(7);
        expect_equal(got.signs, want.signs, t + " pack_signs");
        expect_equal(got.hamming, want.hamming, t + " hamming_tile");
        expect_equal(got.labels, want.labels, t + " pq assign");
        expect_equal(got.tables, want.tables, t + " pq distance_tables");
        expect_equal(got.adc, want.adc, t + " pq adc_tile");
        std::printf("tier %s: %s\n", t.c_str(), failures ? "FAILED" : "agrees with scalar");
    }
    return failures ? 1 : 0;
}
