#include "common/cpu_features.hpp"

#include <mutex>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define EMBKERN_X86 1
#endif

namespace embkern {

#ifdef EMBKERN_X86
static unsigned long long read_xcr0() {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

static CpuFeatures detect() {
    CpuFeatures f;
#ifdef EMBKERN_X86
    unsigned int a = 0, b = 0, c = 0, d = 0;
    unsigned int max_leaf = __get_cpuid_max(0, nullptr);
    if (max_leaf >= 1) {
        __cpuid_count(1, 0, a, b, c, d);
        f.sse42 = c & (1u << 20);
        f.popcnt = c & (1u << 23);
        f.fma = c & (1u << 12);
        f.movbe = c & (1u << 22);
        f.f16c = c & (1u << 29);
        bool osxsave = c & (1u << 27);
        bool avx = c & (1u << 28);
        if (osxsave && avx) {
            unsigned long long xcr0 = read_xcr0();
            f.os_ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
            f.os_zmm = f.os_ymm && (xcr0 & 0xE0) == 0xE0;  // opmask + ZMM_Hi256 + Hi16_ZMM
        }
    }
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.bmi1 = b & (1u << 3);
        f.avx2 = b & (1u << 5);
        f.bmi2 = b & (1u << 8);
        f.avx512f = b & (1u << 16);
        f.avx512dq = b & (1u << 17);
        f.avx512cd = b & (1u << 28);
        f.avx512bw = b & (1u << 30);
        f.avx512vl = b & (1u << 31);
        f.avx512vbmi = c & (1u << 1);
        f.avx512vbmi2 = c & (1u << 6);
        f.avx512vnni = c & (1u << 11);
        f.avx512bitalg = c & (1u << 12);
        f.avx512vpopcntdq = c & (1u << 14);
    }
    if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000001u) {
        __cpuid(0x80000001u, a, b, c, d);
        f.lzcnt = c & (1u << 5);
    }
#elif defined(__aarch64__)
    f.neon = true;
#endif
    return f;
}

const CpuFeatures& cpu_features() {
    static CpuFeatures features;
    static std::once_flag once;
    std::call_once(once, [] { features = detect(); });
    return features;
}

std::string CpuFeatures::summary() const {
    std::string s;
    auto add = [&s](bool on, const char* name) {
        if (on) {
            if (!s.empty()) s += ' ';
            s += name;
        }
    };
    add(sse42, "sse4.2"); add(popcnt, "popcnt"); add(avx2, "avx2"); add(fma, "fma");
    add(bmi2, "bmi2"); add(avx512f, "avx512f"); add(avx512bw, "avx512bw");
    add(avx512vl, "avx512vl"); add(avx512dq, "avx512dq"); add(avx512vpopcntdq, "avx512vpopcntdq");
    add(avx512bitalg, "avx512bitalg"); add(avx512vbmi, "avx512vbmi"); add(avx512vnni, "avx512vnni");
    add(os_ymm, "os-ymm"); add(os_zmm, "os-zmm"); add(neon, "neon");
    return s;
}

}  // namespace embkern
