#include "common/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace embkern {

namespace {
int default_threads() {
    if (const char* env = std::getenv("EMBKERN_NUM_THREADS")) {
        int n = std::atoi(env);
        if (n >= 1) return n;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
}
std::atomic<int> g_threads{0};
}  // namespace

void set_num_threads(int n) { g_threads.store(std::max(1, n)); }

int get_num_threads() {
    int n = g_threads.load();
    if (n == 0) {
        n = default_threads();
        g_threads.store(n);
    }
    return n;
}

void parallel_for(int64_t ntasks, const std::function<void(int64_t)>& fn, int num_threads) {
    if (ntasks <= 0) return;
    int nt = num_threads > 0 ? num_threads : get_num_threads();
    nt = static_cast<int>(std::min<int64_t>(nt, ntasks));
    if (nt <= 1) {
        for (int64_t t = 0; t < ntasks; ++t) fn(t);
        return;
    }
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&] {
        for (;;) {
            int64_t t = next.fetch_add(1);
            if (t >= ntasks) return;
            try {
                fn(t);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(ntasks);  // stop handing out tasks
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(nt - 1);
    for (int i = 1; i < nt; ++i) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace embkern
