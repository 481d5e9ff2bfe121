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

// Holds back text that could be the beginning of a stop string.
class StopMatcher {
public:
    explicit StopMatcher(const std::vector<std::string>& stops) : stops_(stops) {}

    // Adds text; returns what can be emitted. Sets `stopped` when a stop string
    // appeared: the text before it is returned and the rest dropped.
    std::string push(const std::string& text, bool& stopped) {
        held_ += text;
        size_t first = std::string::npos;
        for (const std::string& s : stops_) {
            if (s.empty()) continue;
            size_t p = held_.find(s);
            if (p < first) first = p;
        }
        if (first != std::string::npos) {
            stopped = true;
            std::string out = held_.substr(0, first);
            held_.clear();
            return out;
        }
        // Keep the longest suffix that is a proper prefix of a stop string.
        size_t keep = 0;
        for (const std::string& s : stops_) {
            for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); k > keep; --k) {
                if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
                    keep = k;
                    break;
                }
            }
        }
        size_t cut = utf8_complete_prefix(held_.data(), held_.size() - keep);
        std::string out = held_.substr(0, cut);
        held_.erase(0, cut);
        return out;
    }
    std::string finish() {
        std::string out;
        out.swap(held_);
        return out;
    }

private:
    const std::vector<std::string>& stops_;
    std::string held_;
};

}  // namespace detail

Status generate(Context& ctx, Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateParams& params,
                const TextCallback& on_text, GenerateStats* stats) {
    return detail::guard("generate", [&]() -> Status {
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
        StopMatcher stops(params.stop);
        bool keep_going = true;
        double t0 = now_seconds();
        for (int i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
            int32_t tok = sampler.sample(ctx.logits(), n_vocab);
            if (tok < 0) {
                s.generate_seconds = now_seconds() - t0;
                return error(StatusCode::internal, "generate: no token can be sampled (every logit is NaN or -inf, or a grammar allows no token)");
            }
            sampler.accept(tok);
            if (params.stop_at_eog && model.is_eog(tok)) {
                s.hit_eog = true;
                break;
            }
            ++s.n_generated;
            bool stopped = false;
            std::string text = stops.push(stream.push(model.token_to_piece(tok)), stopped);
            if (!text.empty() && on_text && !on_text(text)) {
                keep_going = false;
                break;
            }
            if (stopped) {
                s.hit_stop = true;
                keep_going = false;
                break;
            }
            // The last requested token needs no evaluation.
            if (params.n_predict >= 0 && i + 1 == params.n_predict) break;
            Status st = ctx.eval(&tok, 1);
            if (st.code() == StatusCode::context_full) break;  // the window is full (and may not shift)
            if (!st.ok()) {
                s.generate_seconds = now_seconds() - t0;
                return st;
            }
        }
        s.generate_seconds = now_seconds() - t0;
        if (keep_going) {
            bool stopped = false;
            std::string tail = stops.push(stream.finish(), stopped);
            if (!stopped) tail += stops.finish();
            s.hit_stop = stopped;
            if (!tail.empty() && on_text) on_text(tail);
        }
        return Status();
    });
}

Status score_continuation(Context& ctx, const std::vector<int32_t>& prompt, const std::vector<int32_t>& continuation,
                          double& logprob, std::vector<double>* per_token) {
    return detail::guard("score_continuation", [&]() -> Status {
        using namespace detail;
        logprob = 0;
        if (per_token) per_token->clear();
        if (prompt.empty()) return error(StatusCode::invalid_argument, "score_continuation: empty prompt");
        if (continuation.empty()) return Status();
        std::vector<int32_t> all(prompt);
        all.insert(all.end(), continuation.begin(), continuation.end() - 1);
        ctx.reset();
        std::vector<float> logits;
        Status st = ctx.eval(all, &logits);
        ctx.reset();
        if (!st.ok()) return st;
        const int V = ctx.model().n_vocab();
        for (size_t i = 0; i < continuation.size(); ++i) {
            const int32_t tok = continuation[i];
            if (tok < 0 || tok >= V) return error(StatusCode::invalid_argument, "score_continuation: token %d out of range", tok);
            const float* row = logits.data() + (prompt.size() - 1 + i) * static_cast<size_t>(V);
            float mx = row[0];
            for (int v = 1; v < V; ++v) mx = std::max(mx, row[v]);
            double sum = 0;
            for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
            const double lp = static_cast<double>(row[tok]) - mx - std::log(sum);
            logprob += lp;
            if (per_token) per_token->push_back(lp);
        }
        return Status();
    });
}

std::vector<TokenProb> top_tokens(const Context& ctx, int n) {
    std::vector<TokenProb> out;
    const int V = ctx.model().n_vocab();
    if (n <= 0 || ctx.n_past() == 0) return out;
    const float* row = ctx.logits();
    float mx = row[0];
    for (int v = 1; v < V; ++v) mx = std::max(mx, row[v]);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    std::vector<int32_t> ids(static_cast<size_t>(V));
    for (int v = 0; v < V; ++v) ids[static_cast<size_t>(v)] = v;
    n = std::min(n, V);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (int i = 0; i < n; ++i)
        out.push_back({ids[static_cast<size_t>(i)], static_cast<float>(std::exp(static_cast<double>(row[ids[static_cast<size_t>(i)]]) - mx) / sum)});
    return out;
}

Status perplexity(Context& ctx, const std::vector<int32_t>& tokens, PerplexityResult& out,
                  const PerplexityProgress& progress) {
    return detail::guard("perplexity", [&]() -> Status {
        using namespace detail;
        out = PerplexityResult();
        const int n_ctx = ctx.n_ctx();
        const int n_vocab = ctx.model().n_vocab();
        if (n_ctx < 4) return error(StatusCode::invalid_argument, "perplexity: n_ctx %d is too small", n_ctx);
        const int n_chunks = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
        if (n_chunks == 0)
            return error(StatusCode::invalid_argument, "perplexity: %zu tokens are fewer than one chunk of %d", tokens.size(), n_ctx);
        const int32_t bos = ctx.model().token_bos();
        std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
        std::vector<float> logits;
        double nll_sum = 0, nll2_sum = 0;
        int count = 0;
        for (int c = 0; c < n_chunks; ++c) {
            std::copy(tokens.begin() + static_cast<size_t>(c) * n_ctx, tokens.begin() + static_cast<size_t>(c + 1) * n_ctx,
                      chunk.begin());
            if (bos >= 0) chunk[0] = bos;
            ctx.reset();
            Status st = ctx.eval(chunk, &logits);
            if (!st.ok()) return st;
            for (int j = n_ctx / 2; j < n_ctx - 1; ++j) {
                const float* row = logits.data() + static_cast<size_t>(j) * n_vocab;
                float mx = row[0];
                for (int v = 1; v < n_vocab; ++v) mx = std::max(mx, row[v]);
                double sum = 0;
                for (int v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
                const double nll = std::log(sum) + mx - row[chunk[static_cast<size_t>(j) + 1]];
                nll_sum += nll;
                nll2_sum += nll * nll;
                ++count;
            }
            const double running = std::exp(nll_sum / count);
            out.running.push_back(running);
            if (progress) progress(c + 1, n_chunks, running);
        }
        ctx.reset();
        const double mean = nll_sum / count, mean2 = nll2_sum / count;
        out.ppl = std::exp(mean);
        out.ppl_err = count > 1 ? out.ppl * std::sqrt(std::max(0.0, mean2 - mean * mean) / (count - 1)) : 0;
        out.n_chunks = n_chunks;
        out.count = count;
        return Status();
    });
}

MINIGPT_NS_END
