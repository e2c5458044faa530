// The projection family's entries in the kernel table (filled per tier by register_projection).
#pragma once
#include <cstdint>

namespace embkern {

struct ProjectionKernels {
};

}  // namespace embkern
