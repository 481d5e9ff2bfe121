// Limits: values outside what the library supports must give a clear Status
// (or a documented fallback), never a crash, a hang or an assertion.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <string>
#include <vector>

using minigpt::Context;
using minigpt::ContextParams;
using minigpt::Model;
using minigpt::ModelParams;
using minigpt::Status;
using minigpt::StatusCode;
using minigpt::detail::GgufWriter;

namespace {

std::shared_ptr<Model> load_stories() {
    std::shared_ptr<Model> m;
    Status st = Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return m;
}

// The status must have `code` and a message containing `needle`.
void expect(const Status& st, StatusCode code, const char* needle) {
    INFO("status: " << st.to_string() << ", expected code " << minigpt::status_code_name(code) << " and '" << needle
                    << "'");
    CHECK(st.code() == code);
    CHECK(st.message().find(needle) != std::string::npos);
}

Status create(const std::shared_ptr<Model>& m, const ContextParams& cp, std::unique_ptr<Context>& ctx) {
    return Context::create(m, cp, ctx);
}

}  // namespace

TEST_CASE("n_ctx: 0 is the training context, negative or absurd values are refused") {
    auto m = load_stories();
    std::unique_ptr<Context> ctx;
    ContextParams cp;
    cp.n_threads = 1;
    cp.n_ctx = 0;
    REQUIRE(create(m, cp, ctx).ok());
    CHECK(ctx->n_ctx() == m->info().n_ctx_train);
    CHECK(ctx->n_ctx() == 128);

    cp.n_ctx = -1;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "-1");
    CHECK(ctx == nullptr);
    cp.n_ctx = 1 << 30;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "1073741824");
    CHECK(ctx == nullptr);
    cp.n_ctx = 0x7fffffff;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "2147483647");

    // A window of one token works: one token fits, a second does not.
    cp.n_ctx = 1;
    REQUIRE(create(m, cp, ctx).ok());
    const int32_t one = 1;
    CHECK(ctx->eval(&one, 1).ok());
    expect(ctx->eval(&one, 1), StatusCode::context_full, "context");
    CHECK(ctx->n_past() == 1);
}

TEST_CASE("n_threads: 0 means the hardware threads, 10000 and negatives are refused") {
    auto m = load_stories();
    std::unique_ptr<Context> ctx;
    ContextParams cp;
    cp.n_ctx = 32;
    cp.n_threads = 0;
    REQUIRE(create(m, cp, ctx).ok());
    CHECK(ctx->n_threads() >= 1);
    cp.n_threads = 10000;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "10000");
    CHECK(ctx == nullptr);
    cp.n_threads = -1;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "n_threads");
}

TEST_CASE("n_batch: 0 is the default, negative is refused, larger than n_ctx is capped") {
    auto m = load_stories();
    std::unique_ptr<Context> ctx;
    ContextParams cp;
    cp.n_ctx = 32;
    cp.n_threads = 1;
    cp.n_batch = 0;
    REQUIRE(create(m, cp, ctx).ok());
    std::vector<int32_t> toks(20, 300);
    CHECK(ctx->eval(toks).ok());
    cp.n_batch = -5;
    expect(create(m, cp, ctx), StatusCode::invalid_argument, "n_batch");
    cp.n_batch = 1 << 30;
    REQUIRE(create(m, cp, ctx).ok());
    CHECK(ctx->eval(toks).ok());
}

TEST_CASE("a prompt longer than the context gives context_full") {
    auto m = load_stories();
    std::unique_ptr<Context> ctx;
    ContextParams cp;
    cp.n_ctx = 16;
    cp.n_threads = 1;
    REQUIRE(create(m, cp, ctx).ok());
    std::vector<int32_t> prompt(40, 300);
    prompt[0] = 1;
    minigpt::Sampler sampler;
    minigpt::GenerateParams gp;
    gp.n_predict = 4;
    int calls = 0;
    Status st = minigpt::generate(*ctx, sampler, prompt, gp, [&](std::string_view) {
        ++calls;
        return true;
    });
    expect(st, StatusCode::context_full, "40");
    CHECK(calls == 0);
    CHECK(ctx->n_past() == 0);
    expect(ctx->eval(prompt), StatusCode::context_full, "do not fit");
    CHECK(ctx->n_past() == 0);
    // Exactly n_ctx tokens fit eval, but generate needs one position to predict into.
    prompt.resize(16);
    expect(minigpt::generate(*ctx, sampler, prompt, gp, nullptr), StatusCode::context_full, "16");
    CHECK(ctx->eval(prompt).ok());
    CHECK(ctx->n_past() == 16);
    // With context_shift the window slides instead (llama architecture).
    // With context_shift the window slides instead (llama architecture), also
    // when a batch is as large as the window and a prefix is kept.
    cp.context_shift = true;
    cp.n_keep = 1;
    for (int n_batch : {4, 16}) {
        INFO("n_batch " << n_batch);
        cp.n_batch = n_batch;
        REQUIRE(create(m, cp, ctx).ok());
        prompt.assign(40, 300);
        prompt[0] = 1;
        st = ctx->eval(prompt);
        CHECK_MESSAGE(st.ok(), st.to_string());
        CHECK(ctx->n_past() <= 16);
        CHECK(ctx->n_past() >= 2);
        CHECK(ctx->tokens()[0] == 1);  // the kept prefix
    }
    // n_keep as large as the window leaves no room: a Status, not a loop.
    cp.n_keep = 16;
    REQUIRE(create(m, cp, ctx).ok());
    expect(ctx->eval(prompt), StatusCode::context_full, "no room");
}

TEST_CASE("token ids out of range from the caller") {
    auto m = load_stories();
    const int V = m->n_vocab();
    REQUIRE(V == 512);
    std::unique_ptr<Context> ctx;
    ContextParams cp;
    cp.n_ctx = 32;
    cp.n_threads = 1;
    REQUIRE(create(m, cp, ctx).ok());

    for (int32_t bad : {-1, V, 1 << 30, -2147483647 - 1}) {
        INFO("token " << bad);
        std::vector<int32_t> toks = {1, 300, bad};
        expect(ctx->eval(toks), StatusCode::invalid_argument, "outside [0, 512)");
        CHECK(ctx->n_past() == 0);
        CHECK(m->token_to_piece(bad).empty());
        CHECK(m->token_to_piece(bad, true).empty());
        CHECK_FALSE(m->is_eog(bad));
        CHECK(m->detokenize({bad}).empty());
        CHECK(m->detokenize({300, bad, 300}) == m->detokenize({300, 300}));

        minigpt::Sampler sampler;
        sampler.accept(bad);  // kept in the history; ignored by the repetition penalty
        std::vector<float> logits(static_cast<size_t>(V), 0.0f);
        logits[7] = 10;
        const int32_t t = sampler.sample(logits.data(), V);
        CHECK(t >= 0);
        CHECK(t < V);

        minigpt::GenerateParams gp;
        gp.n_predict = 2;
        expect(minigpt::generate(*ctx, sampler, toks, gp, nullptr), StatusCode::invalid_argument, "outside");
        CHECK(ctx->n_past() == 0);

        double lp = 0;
        expect(minigpt::score_continuation(*ctx, {1, 300}, {300, bad}, lp), StatusCode::invalid_argument, "out of range");
    }
    expect(ctx->eval(nullptr, 3), StatusCode::invalid_argument, "null");
    expect(ctx->eval(nullptr, 0), StatusCode::invalid_argument, "no tokens");
    expect(ctx->truncate(-1), StatusCode::invalid_argument, "truncate");
    expect(ctx->truncate(5), StatusCode::invalid_argument, "truncate");
    expect(ctx->shift(0, 1), StatusCode::invalid_argument, "shift");
    CHECK(minigpt::top_tokens(*ctx, 1 << 30).empty());  // nothing evaluated yet
    REQUIRE(ctx->eval(std::vector<int32_t>{1, 300}).ok());
    CHECK(minigpt::top_tokens(*ctx, 1 << 30).size() == static_cast<size_t>(V));
    CHECK(minigpt::top_tokens(*ctx, -3).empty());
    // A sampler asked about no logits, or a negative vocabulary, returns no token.
    minigpt::Sampler sampler;
    CHECK(sampler.sample(nullptr, V) < 0);
    CHECK(sampler.sample(ctx->logits(), 0) < 0);
    CHECK(sampler.sample(ctx->logits(), -1) < 0);
}

TEST_CASE("an empty vocabulary is refused at load") {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array("tokenizer.ggml.tokens", std::vector<std::string>{});
    w.set_array("tokenizer.ggml.scores", std::vector<float>{});
    w.set_array("tokenizer.ggml.token_type", std::vector<int32_t>{});
    const std::vector<uint8_t> bytes = w.bytes();
    for (bool vocab_only : {true, false}) {
        INFO("vocab_only " << vocab_only);
        ModelParams mp;
        mp.vocab_only = vocab_only;
        std::shared_ptr<Model> m;
        Status st = Model::load_from_memory(bytes.data(), bytes.size(), mp, m);
        INFO(st.to_string());
        CHECK_FALSE(st.ok());
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("token") != std::string::npos);
        CHECK(m == nullptr);
    }
    // No tokens array at all.
    GgufWriter w2;
    w2.set_string("general.architecture", "llama");
    w2.set_string("tokenizer.ggml.model", "llama");
    const std::vector<uint8_t> b2 = w2.bytes();
    std::shared_ptr<Model> m;
    Status st = Model::load_from_memory(b2.data(), b2.size(), ModelParams(), m);
    CHECK(st.code() == StatusCode::bad_format);
    CHECK(m == nullptr);
}

TEST_CASE("other bad arguments at the API boundary") {
    std::shared_ptr<Model> m;
    expect(Model::load("/nonexistent/dir/model.gguf", ModelParams(), m), StatusCode::io_error, "/nonexistent/dir/model.gguf");
    CHECK(m == nullptr);
    expect(Model::load_from_memory(nullptr, 0, ModelParams(), m), StatusCode::invalid_argument, "empty");
    const char junk[] = "not a gguf file at all";
    CHECK(Model::load_from_memory(junk, sizeof junk, ModelParams(), m).code() == StatusCode::bad_format);
    std::unique_ptr<Context> ctx;
    expect(Context::create(nullptr, ContextParams(), ctx), StatusCode::invalid_argument, "no model");

    // vocab_only models have no weights to run.
    ModelParams vp;
    vp.vocab_only = true;
    REQUIRE(Model::load(test_util::data_path("models/stories260K.gguf"), vp, m).ok());
    expect(Context::create(m, ContextParams(), ctx), StatusCode::invalid_argument, "vocab_only");

    // A state from nowhere.
    auto sm = load_stories();
    ContextParams cp;
    cp.n_ctx = 16;
    cp.n_threads = 1;
    REQUIRE(Context::create(sm, cp, ctx).ok());
    const uint8_t garbage[64] = {1, 2, 3};
    CHECK(ctx->state_load(garbage, sizeof garbage).code() == StatusCode::bad_format);
    CHECK(ctx->state_load(nullptr, 0).code() == StatusCode::bad_format);
}
