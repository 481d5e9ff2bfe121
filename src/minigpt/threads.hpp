// threads: a persistent pool that runs parallel_for jobs. Workers spin for a
// short while after a job (the next one usually follows within microseconds
// during a forward pass), then sleep on a condition variable, so an idle
// host never pays for them. Before it spins, a worker may read a stretch of
// memory it was given (set_idle_read): the start of its share of the next
// product, which the caller's serial work would otherwise leave unread.
#pragma once
#include "kernels.hpp"

#if MINIGPT_THREADS
#  include <condition_variable>
#  include <mutex>
#  include <thread>
#endif

MINIGPT_NS_BEGIN
namespace detail {

using TaskFn = void (*)(void* arg, int i);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

class ThreadPool {
public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { stop(); }

    // Starts n_threads - 1 workers (the caller of run() is the n-th thread).
    Status start(int n_threads) {
        stop();
#if MINIGPT_THREADS
        n_threads_ = n_threads < 1 ? 1 : n_threads;
        idle_.reset(new IdleRead[static_cast<size_t>(n_threads_)]);
        workers_.reserve(static_cast<size_t>(n_threads_ - 1));
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
#else
        (void)n_threads;
        n_threads_ = 1;
#endif
        return Status();
    }

    int size() const { return n_threads_; }

    // Worker `slot` (1 ... size() - 1) reads bytes [p, p + n) once it has no
    // task left in a job, until the next job starts; n = 0: nothing; other
    // slots: ignored. Called by the thread that calls run(). The range must
    // stay readable while the pool runs. It holds until set again. (The
    // caller of run() reads nothing while it waits for the workers' last
    // tasks: its reads take bandwidth from them, and smollm2-135m Q8_0
    // generation was 0.93-0.96x as fast with them.)
    void set_idle_read(int slot, const void* p, size_t n) {
#if MINIGPT_THREADS
        if (slot < 1 || slot >= n_threads_) return;
        // A worker may be reading the old range: the sequence number, odd
        // while the two words change, lets it tell a torn pair (seqlock).
        IdleRead& r = idle_[slot];
        const uint32_t s = r.seq.load(std::memory_order_relaxed);
        r.seq.store(s + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        r.p.store(static_cast<const uint8_t*>(p), std::memory_order_relaxed);
        r.n.store(n, std::memory_order_relaxed);
        r.seq.store(s + 2, std::memory_order_release);
#else
        (void)slot, (void)p, (void)n;
#endif
    }

    // Runs fn(arg, i) for every i in [0, n_tasks) and returns when all are done.
    void run(int n_tasks, TaskFn fn, void* arg) {
        if (n_tasks <= 0) return;
#if MINIGPT_THREADS
        if (n_threads_ > 1 && n_tasks > 1) {
            // No task of the previous job is pending here, so no worker can be
            // running one. A worker may still be in its claim loop, though, and
            // take a task of this job the moment next_ is published: the
            // function, its argument and the pending count are stored first.
            job_fn_.store(fn, std::memory_order_relaxed);
            job_arg_.store(arg, std::memory_order_relaxed);
            pending_.store(n_tasks, std::memory_order_relaxed);
            ++job_id_;
            next_.store(pack(job_id_, static_cast<uint64_t>(n_tasks), 0), std::memory_order_release);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                generation_.fetch_add(1, std::memory_order_release);
            }
            wake_.notify_all();
            work();
            // Wait for the tasks the workers took.
            int spins = 0;
            while (pending_.load(std::memory_order_acquire) != 0) {
                if (++spins < 100000) {
                    cpu_relax();
                } else {
                    std::unique_lock<std::mutex> lock(mutex_);
                    done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
                }
            }
            return;
        }
#endif
        for (int i = 0; i < n_tasks; ++i) fn(arg, i);
    }

private:
#if MINIGPT_THREADS
    // The task counter packs the job id, the task count and the next index, so
    // that a compare-exchange made from a stale view of a finished job fails
    // (different job, or no task left); the worker then reads the counter again
    // and may take a task of the new job, whose count run() set beforehand.
    static constexpr int kIndexBits = 22;
    static uint64_t pack(uint64_t job, uint64_t tasks, uint64_t index) {
        return (job << (2 * kIndexBits)) | (tasks << kIndexBits) | index;
    }
    bool claim(int& index) {
        uint64_t v = next_.load(std::memory_order_acquire);
        const uint64_t mask = (uint64_t(1) << kIndexBits) - 1;
        for (;;) {
            const uint64_t tasks = (v >> kIndexBits) & mask, i = v & mask;
            if (i >= tasks) return false;
            if (next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                index = static_cast<int>(i);
                return true;
            }
        }
    }

    void work() {
        int i;
        while (claim(i)) {
            job_fn_.load(std::memory_order_relaxed)(job_arg_.load(std::memory_order_relaxed), i);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_all();
            }
        }
    }

    // One load per cache line, four lines per look at the job counter. A range
    // being set meanwhile is not read.
    void idle_read(int slot, uint64_t seen) {
        IdleRead& r = idle_[slot];
        const uint32_t s = r.seq.load(std::memory_order_acquire);
        const uint8_t* p = r.p.load(std::memory_order_relaxed);
        size_t n = r.n.load(std::memory_order_relaxed) & ~size_t(255);
        std::atomic_thread_fence(std::memory_order_acquire);
        if ((s & 1) != 0 || r.seq.load(std::memory_order_relaxed) != s) n = 0;
        unsigned sum = 0;
        for (size_t o = 0; o < n && generation_.load(std::memory_order_relaxed) == seen; o += 256)
            sum += unsigned(p[o]) + unsigned(p[o + 64]) + unsigned(p[o + 128]) + unsigned(p[o + 192]);
        r.sink = sum;  // (keeps the loads)
    }

    void worker_loop(int slot) {
        uint64_t seen = generation_.load(std::memory_order_acquire);
        for (;;) {
            // Spin briefly for the next job, then sleep.
            int spins = 0;
            while (generation_.load(std::memory_order_acquire) == seen && !quit_.load(std::memory_order_acquire)) {
                if (++spins < 20000) {
                    cpu_relax();
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] {
                    return generation_.load(std::memory_order_acquire) != seen || quit_.load(std::memory_order_acquire);
                });
            }
            if (quit_.load(std::memory_order_acquire)) return;
            seen = generation_.load(std::memory_order_acquire);
            work();
            idle_read(slot, seen);
        }
    }
#endif

    void stop() {
#if MINIGPT_THREADS
        if (!workers_.empty()) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                quit_.store(true, std::memory_order_release);
            }
            wake_.notify_all();
            for (auto& t : workers_) t.join();
            workers_.clear();
        }
        quit_.store(false);
#endif
        n_threads_ = 1;
    }

    int n_threads_ = 1;
#if MINIGPT_THREADS
    std::vector<std::thread> workers_;
    struct alignas(64) IdleRead {  // (a cache line each: written by the caller, read by one worker)
        std::atomic<uint32_t> seq{0};
        std::atomic<const uint8_t*> p{nullptr};
        std::atomic<size_t> n{0};
        volatile unsigned sink = 0;
    };
    std::unique_ptr<IdleRead[]> idle_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> quit_{false};
    std::atomic<uint64_t> next_{0};
    std::atomic<int> pending_{0};
    std::atomic<TaskFn> job_fn_{nullptr};
    std::atomic<void*> job_arg_{nullptr};
    uint64_t job_id_ = 0;  // written by the thread that calls run()
#endif
};

// Runs tasks on the host's parallel_for when one is set, else on the pool.
struct Parallel {
    ThreadPool* pool = nullptr;
    ParallelForFn host = nullptr;
    void* host_user = nullptr;
    int n_threads = 1;

    // The pool's idle reads (see ThreadPool::set_idle_read); a host's job
    // system gets none.
    void set_idle_read(int slot, const void* p, size_t n) const {
        if (pool && !host) pool->set_idle_read(slot, p, n);
    }

    void run(int n_tasks, TaskFn fn, void* arg) const {
        if (n_tasks <= 0) return;
        if (n_tasks == 1) { fn(arg, 0); return; }
        if (host) { host(host_user, n_tasks, fn, arg); return; }
        if (pool) { pool->run(n_tasks, fn, arg); return; }
        for (int i = 0; i < n_tasks; ++i) fn(arg, i);
    }

    // Calls f(begin, end, chunk) on chunks of [0, n) in parallel; chunk sizes are
    // multiples of `grain` and there are at most 4 * n_threads chunks.
    template <typename F>
    void for_range(int64_t n, int64_t grain, F&& f) const {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        int64_t max_chunks = (n + grain - 1) / grain;
        int64_t chunks = std::min<int64_t>(max_chunks, n_threads > 1 ? n_threads * 4 : 1);
        if (chunks <= 1) { f(int64_t(0), n, 0); return; }
        int64_t per = ((n + chunks - 1) / chunks + grain - 1) / grain * grain;
        chunks = (n + per - 1) / per;
        struct Ctx { F* f; int64_t n, per; } c{&f, n, per};
        run(static_cast<int>(chunks), [](void* a, int i) {
            Ctx* c = static_cast<Ctx*>(a);
            int64_t b = static_cast<int64_t>(i) * c->per;
            int64_t e = std::min(c->n, b + c->per);
            if (b < e) (*c->f)(b, e, i);
        }, &c);
    }
};

}  // namespace detail
MINIGPT_NS_END
