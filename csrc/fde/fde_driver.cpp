// fde drivers: task splitting around the current tier's kernels (baseline target).
#include "common/dispatch.hpp"
