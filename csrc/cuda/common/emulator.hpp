// Host emulation of a CUDA launch, for testing kernel bodies (common/blocks.hpp) without a GPU:
// one std::thread per CUDA thread and a real barrier for __syncthreads, blocks one after another, and
// the same orchestration templates the CUDA launchers use. Shared memory is poisoned before each
// block, scratch allocations too, so reads of unwritten memory show up as wrong results. A barrier
// that not every thread reaches (a non-uniform __syncthreads) is reported instead of hanging.
// Included only by g++-compiled sources.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cuda/common/blocks.hpp"

namespace embkern::cuda::emu {

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
inline void emu_launch(int64_t grid, int threads, size_t smem_bytes, const Body& body) {
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
    explicit HostExec(int sm_count, size_t smem_optin = 227 * 1024) : sms_(sm_count), smem_optin_(smem_optin) {}
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
    void copy(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }
    void wait() {}  // every emulated launch has finished when it returns
    size_t smem_optin() const { return smem_optin_; }

    template <class K, class P>
    void launch(int64_t grid, int threads, size_t smem, const P& p) {
        if (threads < 1 || threads > K::kMaxThreads)
            throw std::runtime_error("emulated launch: " + std::to_string(threads) +
                                     " threads exceed the kernel's launch bounds");
        if (smem > smem_optin_) throw std::runtime_error("emulated launch: too much shared memory");
        emu_launch(grid < 1 ? 1 : grid, threads, smem,
                   [&](HostCtx& ctx, unsigned char* sm) { K::body(ctx, sm, p); });
    }

private:
    int sms_;
    size_t smem_optin_;
    std::vector<void*> live_;
};

}  // namespace embkern::cuda::emu
