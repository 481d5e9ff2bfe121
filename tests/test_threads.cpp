// The thread pool on its own: every task of every job runs exactly once, jobs
// follow each other without a gap (a worker still leaving one job may take a
// task of the next), a worker's idle reads stay inside the range it was given,
// and idle workers sleep instead of spinning.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#  include <sys/mman.h>
#  include <sys/resource.h>
#  include <unistd.h>
#  define MINIGPT_TEST_HAS_RUSAGE 1
#endif

using minigpt::detail::ThreadPool;

namespace {

// Sanitizers slow every job down; fewer of them keep the test short there.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kJobScale = 10;
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr int kJobScale = 10;
#  else
constexpr int kJobScale = 1;
#  endif
#else
constexpr int kJobScale = 1;
#endif

// Runs f on another thread; a job that has not finished after `seconds` means
// the pool lost a wakeup or a task, and waiting longer would hang the test run.
template <class F>
void within(int seconds, const char* what, F f) {
    auto done = std::async(std::launch::async, f);
    if (done.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready) {
        std::fprintf(stderr, "test_threads: %s did not finish within %d s (a lost task or wakeup)\n", what, seconds);
        std::fflush(stderr);
        std::_Exit(1);
    }
    done.get();
}

// Task i of a job writes only slot i, so plain ints suffice when the pool
// orders the jobs correctly.
struct Counts {
    std::vector<int> per_task;
    explicit Counts(int n) : per_task(static_cast<size_t>(n), 0) {}
};

}  // namespace

TEST_CASE("thread pool: back-to-back jobs run every task exactly once") {
    for (int threads : {2, 3, 4}) {
        ThreadPool pool;
        REQUIRE(pool.start(threads).ok());
        CHECK(pool.size() == threads);
        for (int tasks : {2, 3, 7, 64}) {
            Counts c(tasks);
            // Jobs that take almost no time make the window between two jobs as narrow as it gets.
            const int jobs = (tasks > 8 ? 5000 : tasks > 3 ? 100000 : 1000000) / kJobScale;
            within(120, "back-to-back jobs", [&] {
                for (int j = 0; j < jobs; ++j)
                    pool.run(tasks, [](void* a, int i) { ++static_cast<Counts*>(a)->per_task[static_cast<size_t>(i)]; }, &c);
            });
            int wrong = 0;
            for (int n : c.per_task) wrong += n != jobs;
            CHECK_MESSAGE(wrong == 0, threads << " threads, " << tasks << " tasks: " << wrong << " tasks ran a wrong number of times");
        }
    }
}

TEST_CASE("thread pool: a job sees the writes of the job before it") {
    ThreadPool pool;
    REQUIRE(pool.start(2).ok());
    std::vector<int> v(64, 0);
    within(120, "dependent jobs", [&] {
        for (int round = 1; round <= 2000; ++round) {
            struct Arg { std::vector<int>* v; int round; bool ok; } arg{&v, round, true};
            // Each task checks that the previous job's write of its slot is visible, then writes its own.
            pool.run(64, [](void* p, int i) {
                Arg* a = static_cast<Arg*>(p);
                int& slot = (*a->v)[static_cast<size_t>(i)];
                if (slot != a->round - 1) a->ok = false;
                slot = a->round;
            }, &arg);
            REQUIRE(arg.ok);
        }
    });
}

#if defined(MINIGPT_TEST_HAS_RUSAGE)
TEST_CASE("thread pool: idle reads stay inside the range they were given") {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE)), bytes = size_t(1) << 20;
    // Every range ends where an unreadable page starts: a read past one ends
    // the test run with SIGSEGV.
    void* mem = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    uint8_t* base = static_cast<uint8_t*>(mem);
    std::memset(base, 1, bytes);
    REQUIRE(mprotect(base + bytes, page, PROT_NONE) == 0);
    for (int threads : {2, 3}) {
        ThreadPool pool;
        REQUIRE(pool.start(threads).ok());
        // Slots that are not workers are ignored (the caller reads nothing).
        for (int slot : {-1, 0, threads}) pool.set_idle_read(slot, base, bytes + page);
        Counts c(threads);
        const int jobs = 20000 / kJobScale;
        within(120, "jobs with idle reads", [&] {
            for (int j = 0; j < jobs; ++j) {
                // The ranges change before every job, as in a forward pass,
                // while the workers may still read the previous ones: 1 MiB
                // and a few hundred bytes (not a whole number of lines), all
                // ending at the unreadable page. A torn pair (the long
                // length from the short start) would run past it.
                for (int s = 1; s < threads; ++s) {
                    const size_t n = j % 2 ? bytes : 100 + static_cast<size_t>(j % 300);
                    pool.set_idle_read(s, base + bytes - n, n);
                }
                pool.run(threads, [](void* a, int i) { ++static_cast<Counts*>(a)->per_task[static_cast<size_t>(i)]; }, &c);
            }
        });
        for (int s = 1; s < threads; ++s) pool.set_idle_read(s, nullptr, 0);
        int wrong = 0;
        for (int n : c.per_task) wrong += n != jobs;
        CHECK_MESSAGE(wrong == 0, threads << " threads: " << wrong << " tasks ran a wrong number of times");
    }
    munmap(mem, bytes + page);
}

TEST_CASE("thread pool: idle workers sleep") {
    auto cpu_seconds = [] {
        rusage u{};
        getrusage(RUSAGE_SELF, &u);
        return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    ThreadPool pool;
    REQUIRE(pool.start(2).ok());
    std::atomic<int> sink{0};
    pool.run(4, [](void* a, int) { static_cast<std::atomic<int>*>(a)->fetch_add(1); }, &sink);
    // Let the workers' short spin run out, then measure half a second of idling.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const double before = cpu_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double used = cpu_seconds() - before;
    CHECK(sink.load() == 4);
    CHECK_MESSAGE(used < 0.05, "the process used " << used << " s of CPU while its pool was idle for 0.5 s");
}
#endif
