// Fuzz target: model loading (Model::load_from_memory) over mutated GGUF
// files. The seeds in corpus/model are tiny valid models of every supported
// architecture (written by make_seeds.cpp). A file that loads is then used:
// tokenize, detokenize, the chat template, a context, a two-token forward
// pass and grammar-constrained sampling, all of which must cope with
// whatever the mutated metadata and weights say.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_util.hpp"

#include <cstdint>
#include <vector>

namespace {

void use_model(const std::shared_ptr<minigpt::Model>& model) {
    const minigpt::Model& m = *model;
    const int n_vocab = m.n_vocab();
    FUZZ_CHECK(n_vocab > 0, "a loaded model with %d tokens", n_vocab);

    std::vector<int32_t> ids;
    // A byte-level vocabulary without tokens for some bytes refuses text
    // holding them: an error is fine, a bad id is not.
    minigpt::Status st = m.tokenize("ab a<|im_start|>user\nhi!\n", ids, true, true);
    FUZZ_CHECK(st.ok() || !st.message().empty(), "tokenize failed without a message");
    for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < n_vocab, "tokenize gave id %d of %d", id, n_vocab);
    std::string text = m.detokenize(ids, true);
    for (int32_t id = -1; id <= n_vocab && id < 64; ++id) text += m.token_to_piece(id, true);
    (void)m.is_eog(m.token_eos());

    std::vector<minigpt::ChatMessage> msgs = {{"system", "be brief"}, {"user", "hi"}, {"assistant", "ab"}};
    std::string chat;
    st = minigpt::chat_apply(m, msgs, true, chat);  // the model's own template, if any
    (void)st;

    minigpt::ContextParams cp;
    cp.n_ctx = 8;
    cp.n_batch = 4;
    cp.n_threads = 1;
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, cp, ctx);
    if (!st.ok()) return;
    std::vector<int32_t> prompt;
    prompt.push_back(m.token_bos() >= 0 ? m.token_bos() : 0);
    prompt.push_back(n_vocab - 1);
    std::vector<float> all;
    st = ctx->eval(prompt, &all);
    FUZZ_CHECK(st.ok(), "eval of two valid tokens failed: %s", st.to_string().c_str());
    FUZZ_CHECK(all.size() == 2 * static_cast<size_t>(n_vocab), "eval gave %zu logits", all.size());
    FUZZ_CHECK(ctx->n_past() == 2, "n_past is %d after two tokens", ctx->n_past());

    static std::shared_ptr<const minigpt::Grammar> grammar = [] {
        std::shared_ptr<const minigpt::Grammar> g;
        minigpt::Status gs = minigpt::Grammar::parse("root ::= \"a\"+ | [b-c] \"!\"", g);
        FUZZ_CHECK(gs.ok(), "the grammar does not parse: %s", gs.to_string().c_str());
        return g;
    }();
    minigpt::SamplerParams sp;
    sp.seed = 7;
    minigpt::Sampler sampler(sp);
    st = sampler.set_grammar(grammar, m);
    if (st.ok()) {
        int32_t tok = sampler.sample(ctx->logits(), n_vocab);
        FUZZ_CHECK(tok >= -1 && tok < n_vocab, "sampled token %d of %d", tok, n_vocab);
        if (tok >= 0) sampler.accept(tok);
    }
    // The one-token path after the batch, and a truncate back.
    int32_t one = n_vocab / 2;
    st = ctx->eval(&one, 1);
    FUZZ_CHECK(st.ok(), "eval of a third token failed: %s", st.to_string().c_str());
    st = ctx->truncate(1);
    FUZZ_CHECK(st.ok(), "truncate(1) failed: %s", st.to_string().c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    minigpt::ModelParams mp;
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load_from_memory(data, size, mp, model);
    if (!st.ok()) {
        FUZZ_CHECK(!model, "a failed load returned a model");
        FUZZ_CHECK(!st.message().empty(), "a failed load without a message");
        // The vocabulary alone may still load when the weights are broken.
        mp.vocab_only = true;
        st = minigpt::Model::load_from_memory(data, size, mp, model);
        if (st.ok()) {
            std::vector<int32_t> ids;
            if (model->tokenize("a b<s>", ids, true, true).ok()) {
                for (int32_t id : ids)
                    FUZZ_CHECK(id >= 0 && id < model->n_vocab(), "tokenize gave id %d of %d", id, model->n_vocab());
                (void)model->detokenize(ids, true);
            }
        }
        return 0;
    }
    use_model(model);
    return 0;
}
