#include "common/dispatch.hpp"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "common/cpu_features.hpp"

namespace embkern {

// Per-tier registration functions, defined in the tier object files.
#define EMBKERN_DECLARE_TIER(tier) \
    namespace cpu::tier {          \
    void register_binary(BinaryKernels&); \
    void register_pq(PqKernels&);         \
    void register_projection(ProjectionKernels&); \
    void register_fde(FdeKernels&);       \
    void register_lowrank(LowrankKernels&); \
    }
#ifdef EMBKERN_HAVE_SCALAR
EMBKERN_DECLARE_TIER(scalar)
#endif
#ifdef EMBKERN_HAVE_AVX2
EMBKERN_DECLARE_TIER(avx2)
#endif
#ifdef EMBKERN_HAVE_AVX512
EMBKERN_DECLARE_TIER(avx512)
#endif
#ifdef EMBKERN_HAVE_AVX512_ICL
EMBKERN_DECLARE_TIER(avx512_icl)
#endif
#ifdef EMBKERN_HAVE_NEON
EMBKERN_DECLARE_TIER(neon)
#endif

namespace {

struct Tier {
    const char* name;
    bool (*supported)(const CpuFeatures&);
    void (*register_binary)(BinaryKernels&);
    void (*register_pq)(PqKernels&);
    void (*register_projection)(ProjectionKernels&);
    void (*register_fde)(FdeKernels&);
    void (*register_lowrank)(LowrankKernels&);
};

// Each requirement lists every feature the tier's compiler flags allow, plus the OS state.
bool need_scalar(const CpuFeatures& f) {
#if defined(__x86_64__) || defined(_M_X64)
    return f.sse42 && f.popcnt;  // the scalar tier is built for x86-64-v2
#else
    (void)f;
    return true;
#endif
}
bool need_avx2(const CpuFeatures& f) {
    return need_scalar(f) && f.avx2 && f.fma && f.bmi1 && f.bmi2 && f.f16c && f.lzcnt && f.movbe &&
           f.os_ymm;
}
bool need_avx512(const CpuFeatures& f) {
    return need_avx2(f) && f.avx512f && f.avx512bw && f.avx512cd && f.avx512dq && f.avx512vl &&
           f.os_zmm;
}
bool need_avx512_icl(const CpuFeatures& f) {
    return need_avx512(f) && f.avx512vpopcntdq && f.avx512bitalg && f.avx512vbmi &&
           f.avx512vbmi2 && f.avx512vnni;
}
bool need_neon(const CpuFeatures& f) { return f.neon; }

const std::vector<Tier>& tiers() {
    static const std::vector<Tier> list = {
#ifdef EMBKERN_HAVE_SCALAR
        {"scalar", need_scalar, cpu::scalar::register_binary, cpu::scalar::register_pq,
         cpu::scalar::register_projection, cpu::scalar::register_fde, cpu::scalar::register_lowrank},
#endif
#ifdef EMBKERN_HAVE_AVX2
        {"avx2", need_avx2, cpu::avx2::register_binary, cpu::avx2::register_pq,
         cpu::avx2::register_projection, cpu::avx2::register_fde, cpu::avx2::register_lowrank},
#endif
#ifdef EMBKERN_HAVE_AVX512
        {"avx512", need_avx512, cpu::avx512::register_binary, cpu::avx512::register_pq,
         cpu::avx512::register_projection, cpu::avx512::register_fde, cpu::avx512::register_lowrank},
#endif
#ifdef EMBKERN_HAVE_AVX512_ICL
        {"avx512_icl", need_avx512_icl, cpu::avx512_icl::register_binary, cpu::avx512_icl::register_pq,
         cpu::avx512_icl::register_projection, cpu::avx512_icl::register_fde, cpu::avx512_icl::register_lowrank},
#endif
#ifdef EMBKERN_HAVE_NEON
        {"neon", need_neon, cpu::neon::register_binary, cpu::neon::register_pq,
         cpu::neon::register_projection, cpu::neon::register_fde, cpu::neon::register_lowrank},
#endif
    };
    return list;
}

KernelTable g_table;
std::string g_isa;
std::once_flag g_once;

KernelTable build(const std::string& cap) {
    const CpuFeatures& f = cpu_features();
    KernelTable t;
    bool found_cap = (cap == "best");
    bool any = false;
    for (const Tier& tier : tiers()) {
        if (!tier.supported(f)) {
            for (const Tier& later : tiers())
                if (later.name == cap && !later.supported(f))
                    throw std::invalid_argument("ISA tier '" + cap +
                                                "' is compiled in but this CPU/OS cannot run it");
            break;
        }
        tier.register_binary(t.binary);
        tier.register_pq(t.pq);
        tier.register_projection(t.projection);
        tier.register_fde(t.fde);
        tier.register_lowrank(t.lowrank);
        t.isa = tier.name;
        any = true;
        if (tier.name == cap) {
            found_cap = true;
            break;
        }
    }
    if (!any)
        throw std::runtime_error("this CPU lacks the baseline features (SSE4.2 + POPCNT) of embkern's compiled kernels");
    if (!found_cap) {
        std::string names;
        for (const Tier& tier : tiers()) names += std::string(names.empty() ? "" : ", ") + tier.name;
        throw std::invalid_argument("unknown ISA tier '" + cap + "'; compiled tiers: " + names);
    }
    return t;
}

void init_once() {
    std::call_once(g_once, [] {
        const char* env = std::getenv("EMBKERN_ISA");
        std::string cap = (env && *env) ? env : "best";
        g_table = build(cap);
        g_isa = g_table.isa;
    });
}

}  // namespace

const KernelTable& kernels() {
    init_once();
    return g_table;
}

std::vector<std::string> compiled_isas() {
    std::vector<std::string> out;
    for (const Tier& t : tiers()) out.push_back(t.name);
    return out;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const Tier& t : tiers()) {
        if (!t.supported(cpu_features())) break;
        out.push_back(t.name);
    }
    return out;
}

std::string current_isa() {
    init_once();
    return g_isa;
}

void set_isa(const std::string& isa) {
    init_once();
    KernelTable t = build(isa);
    g_table = t;
    g_isa = t.isa;
}

}  // namespace embkern
