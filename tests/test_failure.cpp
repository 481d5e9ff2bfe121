// Failure injection: allocations that fail at every index of a load, a context
// creation and a generation. Each failure must give a Status (never a crash),
// and nothing may leak: the hook allocator counts what is outstanding, and the
// sanitizer builds run LeakSanitizer over the whole binary.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>

using minigpt::Context;
using minigpt::ContextParams;
using minigpt::Model;
using minigpt::ModelParams;
using minigpt::Status;
using minigpt::StatusCode;

namespace {

// ---------------------------------------------------------------------------
// Hooks::alloc that fails at the fail_at-th call (1-based; 0: never).
// ---------------------------------------------------------------------------
struct HookCounter {
    long calls = 0;
    long fail_at = 0;
    long outstanding = 0;
};
HookCounter g_hook;

void* hook_alloc(void* user, size_t n) {
    HookCounter& h = *static_cast<HookCounter*>(user);
    ++h.calls;
    if (h.fail_at > 0 && h.calls == h.fail_at) return nullptr;
    void* p = std::malloc(n ? n : 1);
    if (p) ++h.outstanding;
    return p;
}
void hook_free(void* user, void* p) {
    HookCounter& h = *static_cast<HookCounter*>(user);
    if (!p) return;
    --h.outstanding;
    std::free(p);
}

struct HookScope {
    HookScope() {
        g_hook = HookCounter();
        minigpt::Hooks hk;
        hk.alloc = hook_alloc;
        hk.free = hook_free;
        hk.alloc_user = &g_hook;
        minigpt::set_hooks(hk);
    }
    ~HookScope() { minigpt::set_hooks(minigpt::Hooks()); }
};

void arm_hook(long fail_at) {
    g_hook.calls = 0;
    g_hook.fail_at = fail_at;
}

ContextParams small_ctx_params() {
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.n_threads = 1;
    return cp;
}

std::vector<int32_t> prompt_ids() { return {1, 403, 407, 261, 378}; }  // BOS + "Once upon a time" (stories260K)

// A status from an injected failure must say out_of_memory.
void check_oom_status(const Status& st, const char* phase, long k) {
    INFO(phase << ": failing allocation " << k << ": " << st.to_string());
    CHECK(st.code() == StatusCode::out_of_memory);
    CHECK_FALSE(st.message().empty());
}

// Runs every allocation index of one phase; returns how many indices were tried.
// `run` performs the phase and returns its Status; objects it creates must be
// destroyed before it returns.
long sweep_hook_phase(const char* phase, const std::function<Status()>& run) {
    const long held = g_hook.outstanding;  // buffers of objects made before the phase (a loaded model)
    arm_hook(0);
    Status st = run();
    REQUIRE_MESSAGE(st.ok(), phase << ": the run without failures failed: " << st.to_string());
    CHECK(g_hook.outstanding == held);
    const long n = g_hook.calls;
    long failed = 0;
    for (long k = 1; k <= n; ++k) {
        arm_hook(k);
        st = run();
        if (!st.ok()) {
            ++failed;
            check_oom_status(st, phase, k);
        }
        INFO(phase << ": failing allocation " << k);
        CHECK(g_hook.outstanding == held);
    }
    arm_hook(0);
    std::printf("hook allocator, %s: %ld allocations in a successful run, every index 1..%ld tried, %ld gave out_of_memory\n",
                phase, n, n, failed);
    return n;
}

}  // namespace

TEST_CASE("hook allocator failing at every index: load, context creation, generation") {
    const std::string models[] = {test_util::data_path("models/stories260K.gguf"),
                                  test_util::data_path("golden/models/quant-base-Q4_K.gguf")};
    HookScope scope;
    for (const std::string& path : models) {
        INFO("model " << path);
        ModelParams mp;
        mp.use_mmap = false;  // the file is read into a hook-allocated buffer
        const long n_load = sweep_hook_phase("Model::load (read into memory)", [&] {
            std::shared_ptr<Model> m;
            return Model::load(path, mp, m);
        });
        CHECK(n_load >= 1);  // the file buffer

        std::shared_ptr<Model> model;
        arm_hook(0);
        REQUIRE(Model::load(path, mp, model).ok());
        const long base = g_hook.outstanding;

        for (int n_batch : {1, 16}) {
            ContextParams cp = small_ctx_params();
            cp.n_batch = n_batch;
            const long n_ctx_allocs = sweep_hook_phase(n_batch == 1 ? "Context::create (n_batch 1)" : "Context::create (n_batch 16)", [&] {
                std::unique_ptr<Context> ctx;
                Status st = Context::create(model, cp, ctx);
                if (st.ok()) CHECK(ctx != nullptr); else CHECK(ctx == nullptr);
                return st;
            });
            CHECK(n_ctx_allocs >= 2);  // at least the K and V caches
        }

        // Generation and evaluation: the context is created unhooked-failure-free,
        // then eval/generate run with the failing allocator armed.
        std::unique_ptr<Context> ctx;
        arm_hook(0);
        REQUIRE(Context::create(model, small_ctx_params(), ctx).ok());
        const std::vector<int32_t> prompt = prompt_ids();
        sweep_hook_phase("Context::eval + generate", [&] {
            ctx->reset();
            Status st = ctx->eval(prompt);
            if (!st.ok()) return st;
            ctx->reset();
            minigpt::SamplerParams sp;
            sp.temperature = 0;
            minigpt::Sampler sampler(sp);
            minigpt::GenerateParams gp;
            gp.n_predict = 8;
            return minigpt::generate(*ctx, sampler, prompt, gp, nullptr);
        });
        ctx.reset();
        model.reset();
        CHECK(g_hook.outstanding == 0);
        CHECK(base >= 1);
    }
}

TEST_CASE("memory limit: refused before any allocation") {
    HookScope scope;
    std::shared_ptr<Model> model;
    REQUIRE(Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), model).ok());
    ContextParams cp = small_ctx_params();
    std::unique_ptr<Context> ctx;
    REQUIRE(Context::create(model, cp, ctx).ok());
    const size_t need = ctx->kv_cache_bytes() + ctx->scratch_bytes();
    ctx.reset();
    REQUIRE(g_hook.outstanding == 0);

    cp.max_memory_bytes = need;
    Status st = Context::create(model, cp, ctx);
    CHECK_MESSAGE(st.ok(), st.to_string());
    ctx.reset();

    cp.max_memory_bytes = need - 1;
    arm_hook(0);
    st = Context::create(model, cp, ctx);
    INFO(st.to_string());
    CHECK(st.code() == StatusCode::out_of_memory);
    CHECK(ctx == nullptr);
    CHECK(st.message().find("memory limit") != std::string::npos);
    CHECK(st.message().find(std::to_string(need)) != std::string::npos);
    CHECK(st.message().find(std::to_string(need - 1)) != std::string::npos);
    CHECK(g_hook.calls == 0);  // nothing was allocated

    // A large window under a small limit: refused with the sizes, nothing allocated.
    cp.n_ctx = 1 << 20;
    cp.max_memory_bytes = size_t(64) << 20;
    arm_hook(0);
    st = Context::create(model, cp, ctx);
    CHECK(st.code() == StatusCode::out_of_memory);
    CHECK(st.message().find("KV cache") != std::string::npos);
    CHECK(g_hook.calls == 0);
}

#if defined(__cpp_exceptions)
// ---------------------------------------------------------------------------
// Global operator new that throws std::bad_alloc at the g_new_fail_at-th call
// made while armed (this binary only). The library must turn it into a Status.
// ---------------------------------------------------------------------------
namespace {
bool g_new_armed = false;
long g_new_calls = 0;
long g_new_fail_at = 0;
}  // namespace

void* operator new(size_t n) {
    if (g_new_armed) {
        ++g_new_calls;
        if (g_new_calls == g_new_fail_at) throw std::bad_alloc();
    }
    void* p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
}
void* operator new[](size_t n) { return ::operator new(n); }
// The nothrow forms (std::stable_sort's temporary buffer uses them) fail by
// returning nullptr at the same index.
void* operator new(size_t n, const std::nothrow_t&) noexcept {
    if (g_new_armed) {
        ++g_new_calls;
        if (g_new_calls == g_new_fail_at) return nullptr;
    }
    return std::malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t& nt) noexcept { return ::operator new(n, nt); }
// Called through a pointer: the memory comes from malloc above, which the
// compiler cannot see at the call sites of delete.
namespace {
void (*volatile g_release)(void*) = std::free;
}  // namespace
void operator delete(void* p) noexcept { g_release(p); }
void operator delete[](void* p) noexcept { g_release(p); }
void operator delete(void* p, size_t) noexcept { g_release(p); }
void operator delete[](void* p, size_t) noexcept { g_release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { g_release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { g_release(p); }

namespace {

struct PipelineResult {
    Status st;
    const char* phase = "";
    std::string text;
};

// Load, context, tokenize, generate: every allocation inside is armed. The
// objects the test itself needs are made before arming.
void run_pipeline(const std::string& path, long fail_at, PipelineResult& r, const minigpt::TextCallback& cb,
                  std::vector<int32_t>& prompt) {
    std::shared_ptr<Model> model;
    std::unique_ptr<Context> ctx;
    minigpt::SamplerParams sp;
    sp.temperature = 0;
    minigpt::Sampler sampler(sp);
    minigpt::GenerateParams gp;
    gp.n_predict = 8;
    const ContextParams cp = small_ctx_params();
    ModelParams mp;
    g_new_calls = 0;
    g_new_fail_at = fail_at;
    g_new_armed = true;
    r.phase = "Model::load";
    r.st = Model::load(path, mp, model);
    if (r.st.ok()) {
        r.phase = "Context::create";
        r.st = Context::create(model, cp, ctx);
    }
    if (r.st.ok()) {
        r.phase = "Model::tokenize";
        r.st = model->tokenize("Once upon a time", prompt);
    }
    if (r.st.ok()) {
        r.phase = "generate";
        r.st = minigpt::generate(*ctx, sampler, prompt, gp, cb);
    }
    g_new_armed = false;
}

}  // namespace

TEST_CASE("operator new throwing at every index of load + context + generate gives out_of_memory") {
    const std::string paths[] = {test_util::data_path("models/stories260K.gguf"),
                                 test_util::data_path("golden/models/quant-base-Q4_K.gguf")};
    for (const std::string& path : paths) {
        INFO("model " << path);
        std::string text;
        text.reserve(4096);
        const minigpt::TextCallback cb = [&text](std::string_view t) {
            if (text.size() + t.size() <= text.capacity()) text.append(t.data(), t.size());
            return true;
        };
        std::vector<int32_t> prompt;
        prompt.reserve(256);

        // Warm-up (function-local statics are built once), then the count.
        PipelineResult r;
        run_pipeline(path, 0, r, cb, prompt);
        REQUIRE_MESSAGE(r.st.ok(), r.phase << ": " << r.st.to_string());
        const std::string want = text;
        CHECK(!want.empty());
        text.clear();
        run_pipeline(path, 0, r, cb, prompt);
        REQUIRE(r.st.ok());
        CHECK(text == want);
        const long n = g_new_calls;
        CHECK(n > 100);

        // Every index up to 4000, then a stride so that about 1000 more are tried.
        const long dense = 4000;
        const long stride = n > dense ? std::max(1L, (n - dense) / 1000) : 1;
        long tried = 0, failed = 0;
        long per_phase[4] = {0, 0, 0, 0};
        const char* phase_names[4] = {"Model::load", "Context::create", "Model::tokenize", "generate"};
        for (long k = 1; k <= n; k += (k < dense ? 1 : stride)) {
            text.clear();
            PipelineResult rk;
            run_pipeline(path, k, rk, cb, prompt);
            ++tried;
            if (!rk.st.ok()) {
                ++failed;
                for (int i = 0; i < 4; ++i)
                    if (std::string(rk.phase) == phase_names[i]) ++per_phase[i];
                INFO("operator new failing at " << k << " of " << n << ", in " << rk.phase);
                CHECK(rk.st.code() == StatusCode::out_of_memory);
            } else {
                INFO("operator new failing at " << k << " (not needed): the output must be unchanged");
                CHECK(text == want);
            }
        }
        std::printf("operator new, %s: %ld allocations in a successful load+context+generate run; %ld indices tried "
                    "(every one up to %ld, then every %ld-th); %ld gave out_of_memory (load %ld, context %ld, "
                    "tokenize %ld, generate %ld), %ld succeeded\n",
                    path.c_str(), n, tried, std::min(n, dense), stride, failed, per_phase[0], per_phase[1], per_phase[2], per_phase[3],
                    tried - failed);
        CHECK(tried >= std::min(n, dense));
        CHECK(failed > 0);
    }
}
TEST_CASE("operator new throwing at every index of grammar parsing, set_grammar and chat_apply") {
    std::shared_ptr<Model> model;
    REQUIRE(Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), model).ok());
    const std::string gbnf = minigpt::Grammar::json_object_gbnf({"action", "line"}, 8);
    const std::vector<minigpt::ChatMessage> messages = {{"system", "You are a guard."}, {"user", "Who goes there?"}};
    std::string chat;
    chat.reserve(4096);
    auto run = [&](long fail_at, const char*& phase) {
        std::shared_ptr<const minigpt::Grammar> grammar;
        minigpt::Sampler sampler;
        g_new_calls = 0;
        g_new_fail_at = fail_at;
        g_new_armed = true;
        phase = "Grammar::parse";
        Status st = minigpt::Grammar::parse(gbnf, grammar);
        if (st.ok()) {
            phase = "Sampler::set_grammar";
            st = sampler.set_grammar(grammar, *model);
        }
        if (st.ok()) {
            phase = "chat_apply";
            st = minigpt::chat_apply("chatml", messages, true, chat);
        }
        g_new_armed = false;
        return st;
    };
    const char* phase = "";
    REQUIRE(run(0, phase).ok());
    const std::string want = chat;
    REQUIRE(run(0, phase).ok());
    const long n = g_new_calls;
    CHECK(n > 10);
    long failed = 0;
    for (long k = 1; k <= n; ++k) {
        Status st = run(k, phase);
        if (!st.ok()) {
            ++failed;
            INFO("operator new failing at " << k << " of " << n << ", in " << phase << ": " << st.to_string());
            CHECK(st.code() == StatusCode::out_of_memory);
        } else {
            CHECK(chat == want);
        }
    }
    std::printf("operator new, Grammar::parse + Sampler::set_grammar + chat_apply: %ld allocations, every index tried, "
                "%ld gave out_of_memory, %ld succeeded\n", n, failed, n - failed);
    CHECK(failed > 0);
}
#endif
