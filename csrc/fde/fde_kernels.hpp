// The fde family's entries in the kernel table (filled per tier by register_fde).
#pragma once
#include <cstdint>

namespace embkern {

struct FdeKernels {
};

}  // namespace embkern
