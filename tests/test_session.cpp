// The embedding API on the real stories260K model: contexts on threads, stop
// strings, abort, state save/load, context shift, scoring, loading hooks.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"
#include "test_util.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

using namespace minigpt;

namespace {

std::shared_ptr<Model> stories() {
    static std::shared_ptr<Model> m;
    if (!m) {
        Status st = Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
    }
    return m;
}

std::unique_ptr<Context> context(int n_ctx, int n_threads = 1, bool shift = false) {
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.context_shift = shift;
    cp.n_keep = 1;
    std::unique_ptr<Context> c;
    Status st = Context::create(stories(), cp, c);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return c;
}

std::vector<int32_t> prompt_ids(const char* text = "Once upon a time") {
    std::vector<int32_t> p;
    REQUIRE(stories()->tokenize(text, p).ok());
    return p;
}

struct Run {
    std::string text;
    std::vector<int32_t> tokens;
    GenerateStats stats;
    Status status;
};

Run run(Context& ctx, const SamplerParams& sp, const GenerateParams& gp, const std::vector<int32_t>& prompt) {
    Run r;
    Sampler sampler(sp);
    r.status = generate(ctx, sampler, prompt, gp, [&](std::string_view s) { r.text += s; return true; }, &r.stats);
    r.tokens = ctx.tokens();
    return r;
}

SamplerParams sampling(uint64_t seed) {
    SamplerParams sp;
    sp.temperature = 0.9f;
    sp.seed = seed;
    return sp;
}

}  // namespace

TEST_CASE("4 contexts on one model from 4 threads give the tokens of 4 sequential runs") {
    auto m = stories();
    const std::vector<int32_t> prompt = prompt_ids();
    GenerateParams gp;
    gp.n_predict = 60;
    std::vector<Run> sequential;
    for (int i = 0; i < 4; ++i) {
        auto ctx = context(128, 1);
        sequential.push_back(run(*ctx, sampling(100 + i), gp, prompt));
        REQUIRE(sequential.back().status.ok());
    }
    std::vector<Run> parallel(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&, i] {
            ContextParams cp;
            cp.n_ctx = 128;
            cp.n_threads = 1 + (i % 2);
            std::unique_ptr<Context> ctx;
            parallel[i].status = Context::create(m, cp, ctx);
            if (parallel[i].status.ok()) parallel[i] = run(*ctx, sampling(100 + i), gp, prompt);
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 4; ++i) {
        CAPTURE(i);
        CHECK(parallel[i].status.ok());
        CHECK(parallel[i].tokens == sequential[i].tokens);
        CHECK(parallel[i].text == sequential[i].text);
    }
    CHECK(sequential[0].text != sequential[1].text);
}

TEST_CASE("a stop string split across tokens stops generation and is never emitted") {
    const std::vector<int32_t> prompt = prompt_ids();
    SamplerParams greedy;
    greedy.temperature = 0;
    GenerateParams gp;
    gp.n_predict = 60;
    auto c1 = context(128);
    Run full = run(*c1, greedy, gp, prompt);
    REQUIRE(full.status.ok());
    // ", there was a little girl named Lily. ..." : " little girl" spans several tokens.
    const std::string stop = " little girl";
    const size_t at = full.text.find(stop);
    REQUIRE(at != std::string::npos);
    std::vector<int32_t> stop_tokens;
    REQUIRE(stories()->tokenize(stop, stop_tokens, false).ok());
    CHECK(stop_tokens.size() >= 2);

    gp.stop = {"never appears", stop};
    auto c2 = context(128);
    Run r = run(*c2, greedy, gp, prompt);
    REQUIRE(r.status.ok());
    CHECK(r.stats.hit_stop);
    CHECK(r.text == full.text.substr(0, at));
    CHECK(r.text.find("little") == std::string::npos);

    // Text that only starts like a stop string is released when it diverges.
    gp.stop = {" little gnome"};
    auto c3 = context(128);
    Run r3 = run(*c3, greedy, gp, prompt);
    CHECK(!r3.stats.hit_stop);
    CHECK(r3.text == full.text);
}

TEST_CASE("abort during a long prefill returns promptly") {
    std::vector<int32_t> prompt(4000);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(3 + (i * 7919) % 500);
    struct AbortState {
        std::atomic<bool> requested{false};
        std::atomic<bool> said{false};
        std::chrono::steady_clock::time_point said_at;
    } st;
    ContextParams cp;
    cp.n_ctx = 4096;
    cp.n_threads = 2;
    cp.abort_user = &st;
    cp.abort_callback = [](void* u) {
        auto* s = static_cast<AbortState*>(u);
        if (!s->requested.load()) return false;
        if (!s->said.exchange(true)) s->said_at = std::chrono::steady_clock::now();
        return true;
    };
    std::unique_ptr<Context> c;
    REQUIRE(Context::create(stories(), cp, c).ok());
    Status result;
    std::chrono::steady_clock::time_point returned;
    std::thread worker([&] {
        result = c->eval(prompt);
        returned = std::chrono::steady_clock::now();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st.requested = true;
    worker.join();
    CHECK(result.code() == StatusCode::aborted);
    REQUIRE(st.said.load());
    const double ms = std::chrono::duration<double, std::milli>(returned - st.said_at).count();
    MESSAGE("eval returned " << ms << " ms after the callback asked to abort");
    CHECK(ms < 50.0);
    CHECK(c->n_past() < 4000);
    // The context stays usable.
    c->reset();
    CHECK(c->eval(prompt_ids()).ok() == false);  // the callback still says abort
}

TEST_CASE("state_save at token k and state_load into a fresh context continue exactly") {
    const std::vector<int32_t> prompt = prompt_ids();
    GenerateParams gp;
    gp.n_predict = 40;
    auto c1 = context(128);
    Run whole = run(*c1, sampling(7), gp, prompt);
    REQUIRE(whole.status.ok());

    // The same run in two halves, the state moved between contexts in the middle.
    auto c2 = context(128);
    Sampler sampler(sampling(7));
    gp.n_predict = 20;
    std::string text;
    REQUIRE(generate(*c2, sampler, prompt, gp, [&](std::string_view s) { text += s; return true; }).ok());
    std::vector<uint8_t> state;
    REQUIRE(c2->state_save(state).ok());
    auto c3 = context(128);
    REQUIRE(c3->state_load(state.data(), state.size()).ok());
    CHECK(c3->tokens() == c2->tokens());
    // generate() leaves the last sampled token unevaluated: feed it as the prompt.
    const std::vector<int32_t> last = {whole.tokens[c2->tokens().size()]};
    gp.n_predict = 20;
    REQUIRE(generate(*c3, sampler, last, gp, [&](std::string_view s) { text += s; return true; }).ok());
    CHECK(c3->tokens() == std::vector<int32_t>(whole.tokens.begin(), whole.tokens.begin() + c3->tokens().size()));

    // Corrupt or foreign states are rejected.
    std::vector<uint8_t> bad = state;
    bad.resize(bad.size() - 1);
    CHECK(c3->state_load(bad.data(), bad.size()).code() == StatusCode::bad_format);
    bad = state;
    bad[0] ^= 1;
    CHECK(c3->state_load(bad.data(), bad.size()).code() == StatusCode::bad_format);
    auto small = context(8);
    CHECK(small->state_load(state.data(), state.size()).code() == StatusCode::context_full);
}

TEST_CASE("a full context stops with a Status, or shifts when asked") {
    const std::vector<int32_t> prompt = prompt_ids();
    GenerateParams gp;
    gp.n_predict = 150;
    auto plain = context(64);
    Run r = run(*plain, sampling(3), gp, prompt);
    CHECK(r.status.ok());
    CHECK(r.stats.n_generated < 150);
    std::vector<int32_t> more(70, 5);
    CHECK(plain->eval(more).code() == StatusCode::context_full);

    auto shifting = context(64, 1, true);
    Run s = run(*shifting, sampling(3), gp, prompt);
    REQUIRE(s.status.ok());
    CHECK(s.stats.n_generated == 150);
    CHECK(shifting->n_past() <= 64);
    CHECK(shifting->tokens()[0] == 1);  // n_keep = 1 keeps BOS
    // Before the first shift both runs are the same.
    CHECK(s.text.substr(0, 100) == r.text.substr(0, 100));

    // A shift by hand moves the cache and re-rotates the keys: in layer 0 (whose
    // keys depend only on token and position) the shifted cache equals a fresh
    // evaluation of the kept tokens. Compared through state_save.
    auto a = context(64);
    std::vector<int32_t> seq = prompt_ids("Once upon a time, there was a little girl named Lily. She loved to play");
    REQUIRE(a->eval(seq).ok());
    REQUIRE(a->shift(1, 4).ok());
    std::vector<int32_t> kept(seq.begin(), seq.begin() + 1);
    kept.insert(kept.end(), seq.begin() + 5, seq.end());
    CHECK(a->tokens() == kept);
    auto b = context(64);
    REQUIRE(b->eval(kept).ok());
    std::vector<uint8_t> sa, sb;
    REQUIRE(a->state_save(sa).ok());
    REQUIRE(b->state_save(sb).ok());
    REQUIRE(sa.size() == sb.size());
    const ModelInfo& info = stories()->info();
    const size_t n = kept.size(), kv = size_t(info.n_head_kv) * info.head_dim;
    const size_t layer0 = 7 * 4 + n * 4 + size_t(stories()->n_vocab()) * 4;  // header of 7 uint32, tokens, logits
    double max_diff = 0;
    for (size_t i = 0; i < 2 * n * kv; ++i) {
        float x, y;
        std::memcpy(&x, sa.data() + layer0 + 4 * i, 4);
        std::memcpy(&y, sb.data() + layer0 + 4 * i, 4);
        max_diff = std::max(max_diff, double(std::fabs(x - y)));
    }
    CHECK(max_diff < 1e-4);
    CHECK(a->shift(0, 100).code() == StatusCode::invalid_argument);
}

TEST_CASE("score_continuation and top_tokens") {
    auto ctx = context(128);
    const std::vector<int32_t> prompt = prompt_ids();
    // The greedy continuation is more likely than a shuffled one.
    const std::vector<int32_t> greedy = {432, 383, 286, 261, 376};
    const std::vector<int32_t> other = {376, 261, 286, 383, 432};
    double lp_greedy = 0, lp_other = 0;
    std::vector<double> per;
    REQUIRE(score_continuation(*ctx, prompt, greedy, lp_greedy, &per).ok());
    REQUIRE(score_continuation(*ctx, prompt, other, lp_other).ok());
    CHECK(per.size() == greedy.size());
    CHECK(lp_greedy < 0);
    CHECK(lp_greedy > lp_other);
    double sum = 0;
    for (double p : per) sum += p;
    CHECK(sum == doctest::Approx(lp_greedy));
    // The first term is the log-softmax of the prompt's last logits.
    REQUIRE(ctx->eval(prompt).ok());
    std::vector<TokenProb> top = top_tokens(*ctx, 5);
    REQUIRE(top.size() == 5);
    CHECK(top[0].token == greedy[0]);
    CHECK(std::log(top[0].prob) == doctest::Approx(per[0]).epsilon(1e-4));
    for (size_t i = 1; i < top.size(); ++i) CHECK(top[i].prob <= top[i - 1].prob);
    std::vector<int32_t> bad = {9999};
    CHECK(score_continuation(*ctx, prompt, bad, lp_other).code() == StatusCode::invalid_argument);
}

namespace {
struct CountingAlloc {
    std::atomic<long> live{0};
    std::atomic<long> total{0};
};
CountingAlloc g_alloc;

// Allocator hooks that count into g_alloc.
Hooks counting_hooks() {
    Hooks h;
    h.alloc = [](void*, size_t n) { ++g_alloc.live; ++g_alloc.total; return std::malloc(n); };
    h.free = [](void*, void* p) { if (p) { --g_alloc.live; std::free(p); } };
    return h;
}

bool io_size(void* user, const char* path, uint64_t* size) {
    const std::string* bytes = static_cast<const std::string*>(user);
    if (std::string(path) != "virtual/stories.gguf") return false;
    *size = bytes->size();
    return true;
}
bool io_read(void* user, const char*, uint64_t off, void* dst, size_t n) {
    const std::string* bytes = static_cast<const std::string*>(user);
    if (off + n > bytes->size()) return false;
    std::memcpy(dst, bytes->data() + off, n);
    return true;
}
}  // namespace

TEST_CASE("loading from memory and through host file I/O; the allocator hook") {
    const std::string bytes = test_util::read_file(test_util::data_path("models/stories260K.gguf"));
    set_hooks(counting_hooks());
    std::vector<std::vector<float>> logits;
    {
        std::shared_ptr<Model> from_mem, from_io;
        REQUIRE(Model::load_from_memory(bytes.data(), bytes.size(), ModelParams(), from_mem).ok());
        FileIO io;
        io.user = const_cast<std::string*>(&bytes);
        io.size = io_size;
        io.read = io_read;
        ModelParams mp;
        mp.file_io = &io;
        REQUIRE(Model::load("virtual/stories.gguf", mp, from_io).ok());
        std::shared_ptr<Model> missing;
        CHECK(Model::load("virtual/none.gguf", mp, missing).code() == StatusCode::io_error);
        for (auto& m : {from_mem, from_io, stories()}) {
            std::unique_ptr<Context> c;
            REQUIRE(Context::create(m, ContextParams(), c).ok());
            REQUIRE(c->eval(prompt_ids()).ok());
            logits.emplace_back(c->logits(), c->logits() + m->n_vocab());
        }
    }
    set_hooks(Hooks());
    CHECK(g_alloc.total > 0);
    CHECK(g_alloc.live == 0);
    CHECK(logits[0] == logits[2]);
    CHECK(logits[1] == logits[2]);
}

TEST_CASE("large buffers in 2 MiB pages, and through the allocator hook when there is one") {
    const size_t n = (size_t(5) << 20) + 123;  // not a multiple of the page size
    {
        detail::Buffer<uint8_t> b;
        REQUIRE(b.allocate(n, true));
#if defined(__linux__)
        CHECK(reinterpret_cast<uintptr_t>(b.data()) % (size_t(2) << 20) == 0);
#endif
        std::memset(b.data(), 0x5A, n);  // writable to the last byte
        CHECK(b.data()[n - 1] == 0x5A);
        REQUIRE(b.allocate(100, true));  // small: the ordinary allocation, after releasing the mapping
        CHECK(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
        detail::Buffer<uint8_t> moved(std::move(b));
        CHECK(moved.size() == 100);
    }
    const long before = g_alloc.total;
    set_hooks(counting_hooks());
    {
        detail::Buffer<uint8_t> b;
        REQUIRE(b.allocate(n, true));
        std::memset(b.data(), 1, n);
        CHECK(g_alloc.total == before + 1);
    }
    set_hooks(Hooks());
    CHECK(g_alloc.live == 0);
}

namespace {
std::vector<std::pair<LogLevel, std::string>> g_log;
}

TEST_CASE("the logger hook receives load and context messages at the level asked for") {
    Hooks h;
    h.log = [](void*, LogLevel level, const char* msg) { g_log.emplace_back(level, msg); };
    h.log_level = LogLevel::info;
    set_hooks(h);
    std::shared_ptr<Model> m;
    REQUIRE(Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m).ok());
    std::unique_ptr<Context> c;
    REQUIRE(Context::create(m, ContextParams(), c).ok());
    h.log_level = LogLevel::error;  // nothing at this level happens below
    set_hooks(h);
    const size_t before = g_log.size();
    std::shared_ptr<Model> m2;
    REQUIRE(Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m2).ok());
    set_hooks(Hooks());
    bool loaded = false, context = false;
    for (auto& e : g_log) {
        loaded = loaded || (e.first == LogLevel::info && e.second.find("loaded") != std::string::npos);
        context = context || e.second.find("KV cache") != std::string::npos;
    }
    CHECK(loaded);
    CHECK(context);
    CHECK(g_log.size() == before);
}
