// CPU feature detection, compiled at the baseline target (no wide instruction runs before the
// check). x86: cpuid + xgetbv (the OS must have enabled YMM / ZMM / opmask state); AArch64:
// ASIMD is architectural, so the NEON tier needs no probe.
#pragma once
#include <string>

namespace embkern {

struct CpuFeatures {
    bool sse42 = false, popcnt = false;
    bool avx2 = false, fma = false, bmi1 = false, bmi2 = false, f16c = false, lzcnt = false, movbe = false;
    bool avx512f = false, avx512bw = false, avx512cd = false, avx512dq = false, avx512vl = false;
    bool avx512vpopcntdq = false, avx512bitalg = false, avx512vbmi = false, avx512vbmi2 = false,
         avx512vnni = false;
    bool os_ymm = false, os_zmm = false;
    bool neon = false;
    std::string summary() const;  // space-separated list of the flags found
};

const CpuFeatures& cpu_features();  // detected once

}  // namespace embkern
