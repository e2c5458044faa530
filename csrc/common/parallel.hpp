// Threads: a process-wide thread count and a parallel_for over independent tasks. Workers are
// plain std::threads started per call (no persistent pool, so nothing to break across fork and no
// idle spinning next to BLAS or OpenMP pools); tasks are claimed from an atomic counter, so uneven
// tasks balance themselves. The first exception thrown by a task is re-thrown on the caller.
#pragma once
#include <cstdint>
#include <functional>

namespace embkern {

void set_num_threads(int n);  // n >= 1
int get_num_threads();        // default: EMBKERN_NUM_THREADS, else the CPU count

// Runs fn(t) for t in [0, ntasks) on up to min(num_threads, ntasks) threads (the caller is one).
void parallel_for(int64_t ntasks, const std::function<void(int64_t)>& fn, int num_threads = 0);

}  // namespace embkern
