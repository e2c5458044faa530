// Host emulation of the binary-code CUDA kernels: the bodies of binary_blocks.hpp run with one
// std::thread per CUDA thread and a real barrier for __syncthreads, blocks one after another, and
// the orchestration is the one the CUDA launcher uses. Shared memory is poisoned before each block,
// scratch allocations too, so reads of unwritten memory show up as wrong results. A barrier that
// not every thread reaches (a non-uniform __syncthreads) is reported instead of hanging.
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda/binary/binary_blocks.hpp"
#include "cuda/binary/binary_cuda.hpp"

namespace embkern::cuda::emu {

namespace {

struct BarrierBroken {};

class Barrier {
public:
    explicit Barrier(int n) : n_(n) {}
    void wait() {
        std::unique_lock<std::mutex> lock(m_);
        if (broken_) throw BarrierBroken{};
        const long gen = generation_;
        if (++arrived_ == n_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        if (!cv_.wait_for(lock, std::chrono::seconds(20),
                          [&] { return generation_ != gen || broken_; }) || broken_) {
            broken_ = true;
            cv_.notify_all();
            throw BarrierBroken{};
        }
    }
    void arrive_and_drop() {  // a thread finished: the others must not wait for it any more
        std::unique_lock<std::mutex> lock(m_);
        --n_;
        if (arrived_ > 0 && arrived_ == n_) {
            arrived_ = 0;
            ++generation_;
        }
        // A block whose threads leave at different barrier counts is a kernel bug.
        if (arrived_ > 0) broken_ = true;
        cv_.notify_all();
    }
    void brk() {
        std::unique_lock<std::mutex> lock(m_);
        broken_ = true;
        cv_.notify_all();
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    int n_;
    int arrived_ = 0;
    long generation_ = 0;
    bool broken_ = false;
};

struct HostCtx {
    int t, nt;
    int64_t b, nb;
    Barrier* bar;
    int tid() const { return t; }
    int nthreads() const { return nt; }
    int64_t block() const { return b; }
    int64_t nblocks() const { return nb; }
    void sync() const { bar->wait(); }
};

template <class Body>
void launch(int64_t grid, int threads, size_t smem_bytes, const Body& body) {
    std::vector<uint64_t> smem_words((smem_bytes + 7) / 8 + 1);
    unsigned char* smem = reinterpret_cast<unsigned char*>(smem_words.data());
    for (int64_t b = 0; b < grid; ++b) {
        std::fill(smem_words.begin(), smem_words.end(), 0xA5A5A5A5A5A5A5A5ull);
        Barrier bar(threads);
        std::mutex err_m;
        std::string error;
        bool deadlock = false;
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                HostCtx ctx{t, threads, b, grid, &bar};
                try {
                    body(ctx, smem);
                    bar.arrive_and_drop();
                } catch (const BarrierBroken&) {
                    std::lock_guard<std::mutex> lock(err_m);
                    deadlock = true;
                } catch (const std::exception& e) {
                    {
                        std::lock_guard<std::mutex> lock(err_m);
                        if (error.empty()) error = e.what();
                    }
                    bar.brk();
                }
            });
        }
        for (auto& th : pool) th.join();
        if (!error.empty()) throw std::runtime_error("emulated kernel failed: " + error);
        if (deadlock)
            throw std::runtime_error("emulated kernel: threads of a block disagreed at a barrier "
                                     "(non-uniform __syncthreads)");
    }
}

class HostExec {
public:
    explicit HostExec(int sm_count) : sms_(sm_count) {}
    ~HostExec() {
        for (void* p : live_) std::free(p);
    }
    int sm_count() const { return sms_; }
    void* alloc(size_t bytes) {
        void* p = std::malloc(bytes + 16);
        if (!p) throw std::bad_alloc();
        std::memset(p, 0xA5, bytes + 16);
        live_.push_back(p);
        return p;
    }
    void release(void* p) noexcept {
        for (auto& q : live_)
            if (q == p) {
                std::free(q);
                q = live_.back();
                live_.pop_back();
                return;
            }
    }
    void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }

    template <class T>
    void pack_signs(int64_t grid, int threads, const PackParams<T>& p) {
        launch(grid, threads, 0, [&](HostCtx& ctx, unsigned char*) { pack_signs_body(ctx, p); });
    }
    void hamming_distance(int64_t grid, int threads, size_t smem, const DistParams& p) {
        launch(grid, threads, smem,
               [&](HostCtx& ctx, unsigned char* sm) { hamming_distance_body(ctx, sm, p); });
    }
    void topk_partition(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        launch(grid, threads, smem,
               [&](HostCtx& ctx, unsigned char* sm) { topk_partition_body(ctx, sm, p); });
    }
    void topk_merge(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        launch(grid, threads, smem,
               [&](HostCtx& ctx, unsigned char* sm) { topk_merge_body(ctx, sm, p); });
    }
    void topk_hist(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        launch(grid, threads, smem,
               [&](HostCtx& ctx, unsigned char* sm) { topk_hist_body(ctx, sm, p); });
    }
    void topk_select(int64_t grid, int threads, const TopkParams& p) {
        launch(grid, threads, 0, [&](HostCtx& ctx, unsigned char*) { topk_select_body(ctx, p); });
    }
    void topk_emit(int64_t grid, int threads, size_t smem, const TopkParams& p) {
        launch(grid, threads, smem,
               [&](HostCtx& ctx, unsigned char* sm) { topk_emit_body(ctx, sm, p); });
    }

private:
    int sms_;
    std::vector<void*> live_;
};

}  // namespace

void pack_signs_f32(const float* x, int64_t n, int64_t d, float threshold, bool little,
                    uint8_t* out, int threads, int sm_count) {
    HostExec ex(sm_count);
    run_pack_signs(ex, x, n, d, threshold, little, out, threads);
}

void pack_signs_f64(const double* x, int64_t n, int64_t d, double threshold, bool little,
                    uint8_t* out, int threads, int sm_count) {
    HostExec ex(sm_count);
    run_pack_signs(ex, x, n, d, threshold, little, out, threads);
}

void hamming_distance(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int64_t cs,
                      int32_t* out, int sm_count) {
    HostExec ex(sm_count);
    run_hamming_distance(ex, a, na, b, nb, cs, out);
}

void hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* db, int64_t nb, int64_t cs,
                  int64_t k, int32_t* out_d, int64_t* out_i, const TopkOptions& options,
                  int sm_count) {
    HostExec ex(sm_count);
    run_hamming_topk(ex, q, nq, db, nb, cs, k, out_d, out_i, options);
}

}  // namespace embkern::cuda::emu
