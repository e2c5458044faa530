// The lowrank family's entries in the kernel table (filled per tier by register_lowrank).
#pragma once
#include <cstdint>

namespace embkern {

struct LowrankKernels {
};

}  // namespace embkern
