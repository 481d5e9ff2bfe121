// session: the generation loop: prompt evaluation, sampling, and streaming of
// text in whole UTF-8 characters.
#pragma once
#include "sampler.hpp"

MINIGPT_NS_BEGIN
namespace detail {

// Collects token bytes and hands out only whole UTF-8 characters.
class Utf8Stream {
public:
    // Appends bytes; returns the longest complete prefix and keeps the rest.
    std::string push(const std::string& bytes) {
        pending_ += bytes;
        size_t n = utf8_complete_prefix(pending_.data(), pending_.size());
        std::string out = pending_.substr(0, n);
        pending_.erase(0, n);
        return out;
    }
    // What is left at the end: an unfinished character becomes U+FFFD.
    std::string finish() {
        std::string out = pending_.empty() ? std::string() : std::string("\xEF\xBF\xBD");
        pending_.clear();
        return out;
    }

private:
    std::string pending_;
};

}  // namespace detail

Status generate(Context& ctx, Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateParams& params,
                const TextCallback& on_text, GenerateStats* stats) {
    using namespace detail;
    GenerateStats local;
    GenerateStats& s = stats ? *stats : local;
    s = GenerateStats();
    const Model& model = ctx.model();
    const int n_vocab = model.n_vocab();

    if (prompt.empty() && ctx.n_past() == 0)
        return error(StatusCode::invalid_argument, "generate: empty prompt and empty context");
    if (prompt.size() >= static_cast<size_t>(ctx.n_ctx()) - static_cast<size_t>(ctx.n_past()))
        return error(StatusCode::context_full, "generate: the prompt has %zu tokens but only %d of the %d context positions are free",
                     prompt.size(), ctx.n_ctx() - ctx.n_past(), ctx.n_ctx());

    for (int32_t t : prompt) sampler.accept(t);
    if (!prompt.empty()) {
        double t0 = now_seconds();
        Status st = ctx.eval(prompt);
        if (!st.ok()) return st;
        s.prompt_seconds = now_seconds() - t0;
        s.n_prompt = static_cast<int>(prompt.size());
    }

    Utf8Stream stream;
    bool keep_going = true;
    double t0 = now_seconds();
    for (int i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
        int32_t tok = sampler.sample(ctx.logits(), n_vocab);
        if (tok < 0) {
            s.generate_seconds = now_seconds() - t0;
            return error(StatusCode::internal, "generate: no token can be sampled (every logit is NaN or -inf)");
        }
        sampler.accept(tok);
        if (params.stop_at_eog && model.is_eog(tok)) {
            s.hit_eog = true;
            break;
        }
        ++s.n_generated;
        std::string text = stream.push(model.token_to_piece(tok));
        if (!text.empty() && on_text && !on_text(text)) {
            keep_going = false;
            break;
        }
        // The last requested token needs no evaluation; nor can one past the window.
        if (params.n_predict >= 0 && i + 1 == params.n_predict) break;
        if (ctx.n_past() >= ctx.n_ctx()) break;
        Status st = ctx.eval(&tok, 1);
        if (!st.ok()) {
            s.generate_seconds = now_seconds() - t0;
            return st;
        }
    }
    s.generate_seconds = now_seconds() - t0;
    if (keep_going) {
        std::string tail = stream.finish();
        if (!tail.empty() && on_text) on_text(tail);
    }
    return Status();
}

MINIGPT_NS_END
