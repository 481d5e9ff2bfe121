// sampler: repetition penalty, top-k, top-p, min-p, temperature and a seeded
// draw, in that order. The result depends only on the logits, the history and
// the seed: no threads, no clocks, no global state. An optional grammar
// (grammar.hpp) masks the tokens that cannot continue it before the filters.
#pragma once
#include "base.hpp"
#include "grammar.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

MINIGPT_NS_BEGIN
namespace detail {

// A candidate is (value, token id). The value is a logit until the last step,
// then the token's probability.
using SamplerCandidate = std::pair<float, int32_t>;

// Descending value; on equal values the lower id first. A strict total order
// on finite values, so every sort and selection below gives the same result
// with every standard library. A function object so that it is inlined.
struct SamplerBefore {
    bool operator()(const SamplerCandidate& a, const SamplerCandidate& b) const {
        if (a.first != b.first) return a.first > b.first;
        return a.second < b.second;
    }
};

// splitmix64: a 64-bit state advanced by a constant and mixed on output.
inline uint64_t splitmix64_next(uint64_t& state) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Keeps the candidates for which keep(c) is true, in their current order.
template <typename Pred>
inline void sampler_keep_if(std::vector<SamplerCandidate>& cand, Pred keep) {
    size_t w = 0;
    for (size_t r = 0; r < cand.size(); ++r) {
        if (keep(cand[r])) cand[w++] = cand[r];
    }
    cand.resize(w);
}

inline float sampler_max_value(const std::vector<SamplerCandidate>& cand) {
    float m = cand[0].first;
    for (const SamplerCandidate& c : cand) m = std::max(m, c.first);
    return m;
}

// Applies every filter of `p` to the logits and leaves in `cand` the tokens
// that may be drawn, each with its probability (> 0; they sum to 1 up to
// rounding). Returns true when `cand` is sorted most likely first; when no
// filter needed an ordering, the tokens stay in id order. `cand` is empty when
// no token can be drawn (n_vocab <= 0, or every logit is NaN or -inf).
inline bool sampler_filter(const SamplerParams& p, const std::vector<int32_t>& history,
                           const float* logits, int n_vocab, std::vector<SamplerCandidate>& cand) {
    cand.clear();
    if (!logits || n_vocab <= 0) return true;
    cand.resize(static_cast<size_t>(n_vocab));
    for (int i = 0; i < n_vocab; ++i) cand[static_cast<size_t>(i)] = SamplerCandidate(logits[i], i);

    // 1. Repetition penalty over the last repeat_last_n accepted tokens, each
    // distinct token once: a positive logit is divided by the penalty, any
    // other multiplied by it.
    const float penalty = p.repeat_penalty;
    if (p.repeat_last_n != 0 && penalty > 0.0f && std::isfinite(penalty) && penalty != 1.0f &&
        !history.empty()) {
        size_t n = history.size();
        if (p.repeat_last_n > 0 && static_cast<size_t>(p.repeat_last_n) < n) n = static_cast<size_t>(p.repeat_last_n);
        std::vector<int32_t> recent(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
        std::sort(recent.begin(), recent.end());
        recent.erase(std::unique(recent.begin(), recent.end()), recent.end());
        for (int32_t t : recent) {
            if (t < 0 || t >= n_vocab) continue;
            float& l = cand[static_cast<size_t>(t)].first;
            if (l > 0.0f) l /= penalty;
            else l *= penalty;
        }
    }

    // 2. NaN and -inf can never be drawn. If some logits are +inf (the
    // penalty keeps +inf as it is), those tokens share all the probability.
    bool any_pos_inf = false;
    size_t w = 0;
    for (size_t r = 0; r < cand.size(); ++r) {
        const float l = cand[r].first;
        if (l - l == 0.0f) cand[w++] = cand[r];  // finite: inf - inf and NaN - NaN are NaN
        else if (l > 0.0f) any_pos_inf = true;
    }
    cand.resize(w);
    if (any_pos_inf) {
        cand.clear();
        for (int i = 0; i < n_vocab; ++i) {
            if (std::isinf(logits[i]) && logits[i] > 0.0f) cand.push_back(SamplerCandidate(0.0f, i));
        }
    }
    if (cand.empty()) return true;

    // 3. Greedy: the highest logit, the lowest id on ties.
    if (!(p.temperature > 0.0f)) {
        SamplerCandidate best = cand[0];
        for (const SamplerCandidate& c : cand) {
            if (c.first > best.first) best = c;
        }
        cand.assign(1, SamplerCandidate(1.0f, best.second));
        return true;
    }

    bool sorted = false;

    // 4. Top-k: the k highest logits (lowest ids on ties), without sorting
    // the whole vocabulary.
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < cand.size()) {
        const auto kth = cand.begin() + p.top_k;
        std::nth_element(cand.begin(), kth - 1, cand.end(), SamplerBefore());
        cand.resize(static_cast<size_t>(p.top_k));
        std::sort(cand.begin(), cand.end(), SamplerBefore());
        sorted = true;
    }

    // 5. Top-p: the smallest most-likely-first prefix whose probability
    // (softmax over the remaining candidates, before temperature) reaches
    // top_p; at least one token. The prefix is sorted in growing slices so a
    // large vocabulary is not fully sorted when a few tokens carry the mass.
    if (p.top_p < 1.0f && cand.size() > 1) {
        const double top_p = static_cast<double>(p.top_p);
        const double lmax = static_cast<double>(sampler_max_value(cand));
        double sum = 0.0;
        for (const SamplerCandidate& c : cand) sum += std::exp(static_cast<double>(c.first) - lmax);
        // cand[0, done) is sorted and holds the `done` best candidates.
        size_t done = sorted ? cand.size() : 0;
        size_t m = std::min<size_t>(cand.size(), 64);
        size_t keep = cand.size();
        double cum = 0.0;
        size_t i = 0;
        for (;;) {
            if (m > done) {
                const auto first = cand.begin() + static_cast<std::ptrdiff_t>(done);
                const auto mid = cand.begin() + static_cast<std::ptrdiff_t>(m);
                std::nth_element(first, mid - 1, cand.end(), SamplerBefore());
                std::sort(first, mid, SamplerBefore());
                done = m;
            }
            bool found = false;
            for (; i < m; ++i) {
                cum += std::exp(static_cast<double>(cand[i].first) - lmax) / sum;
                if (cum >= top_p) {
                    keep = i + 1;
                    found = true;
                    break;
                }
            }
            if (found || m == cand.size()) break;  // rounding may leave the total below top_p: keep all
            m = std::min(cand.size(), m * 4);
        }
        cand.resize(keep);
        sorted = true;
    }

    // 6. Min-p: keep tokens whose probability is at least min_p times the
    // top probability, i.e. exp(logit - max logit) >= min_p. The top token
    // always stays.
    if (p.min_p > 0.0f && cand.size() > 1) {
        const float lmax = sampler_max_value(cand);
        const double min_p = static_cast<double>(p.min_p);
        sampler_keep_if(cand, [&](const SamplerCandidate& c) {
            return c.first == lmax ||
                   std::exp(static_cast<double>(c.first) - static_cast<double>(lmax)) >= min_p;
        });
    }

    // 7. Temperature, then the softmax. Tokens whose probability rounds to 0
    // can never be drawn and are dropped.
    {
        const double t = static_cast<double>(p.temperature);
        const double lmax = static_cast<double>(sampler_max_value(cand));
        double sum = 0.0;
        for (const SamplerCandidate& c : cand) sum += std::exp((static_cast<double>(c.first) - lmax) / t);
        for (SamplerCandidate& c : cand) {
            c.first = static_cast<float>(std::exp((static_cast<double>(c.first) - lmax) / t) / sum);
        }
        sampler_keep_if(cand, [](const SamplerCandidate& c) { return c.first > 0.0f; });
    }
    return sorted;
}

}  // namespace detail

// The vocabulary as the grammar sees it, read once by set_grammar.
struct Sampler::GrammarVocab {
    std::vector<std::string> pieces;  // bytes of each token (control tokens: empty)
    std::vector<uint8_t> is_eog;      // end-of-generation tokens
    std::vector<int32_t> order;       // tokens with bytes that are not EOG, sorted by bytes
    std::vector<int32_t> eog;         // the EOG tokens, allowed where the grammar may end
    int32_t eos = -1;                 // returned by sample() once the grammar is complete
};

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_state_(params.seed) {}

Status Sampler::set_grammar(std::shared_ptr<const Grammar> grammar, const Model& model) {
    return detail::guard("Sampler::set_grammar", [&]() -> Status {
        grammar_pending_ = -1;
        if (!grammar) {
            grammar_ = GrammarMatcher();
            grammar_vocab_.reset();
            return Status();
        }
        const int n = model.n_vocab();
        if (n <= 0) return detail::error(StatusCode::invalid_argument, "set_grammar: the model has no vocabulary");
        std::shared_ptr<GrammarVocab> v = std::make_shared<GrammarVocab>();
        v->pieces.resize(static_cast<size_t>(n));
        v->is_eog.assign(static_cast<size_t>(n), 0);
        for (int i = 0; i < n; ++i) {
            const size_t k = static_cast<size_t>(i);
            v->pieces[k] = model.token_to_piece(i, false);
            if (model.is_eog(i)) {
                v->is_eog[k] = 1;
                v->eog.push_back(i);
            } else if (!v->pieces[k].empty()) {
                v->order.push_back(i);
            }
        }
        const std::vector<std::string>& pieces = v->pieces;
        std::stable_sort(v->order.begin(), v->order.end(),
                         [&](int32_t a, int32_t b) { return pieces[static_cast<size_t>(a)] < pieces[static_cast<size_t>(b)]; });
        const int32_t eos = model.token_eos();
        if (eos >= 0 && eos < n) v->eos = eos;
        else if (!v->eog.empty()) v->eos = v->eog[0];
        grammar_ = GrammarMatcher(std::move(grammar));
        grammar_vocab_ = std::move(v);
        return Status();
    });
}

void Sampler::reset_grammar() {
    grammar_.reset();
    grammar_pending_ = -1;
}

// Copies the logits into buf with -inf for every token the grammar rules out.
const float* Sampler::grammar_mask(const float* logits, int n_vocab, std::vector<float>& buf) const {
    const GrammarVocab& v = *grammar_vocab_;
    const detail::GrammarData& g = grammar_.grammar()->impl().data;
    const detail::GrammarState& state = grammar_.impl().state;
    buf.assign(static_cast<size_t>(n_vocab), -std::numeric_limits<float>::infinity());
    std::vector<uint8_t> allowed;
    detail::grammar_allowed_tokens(g, state, v.pieces, v.order, allowed);
    for (int32_t id : v.order) {
        if (id < n_vocab && allowed[static_cast<size_t>(id)]) buf[static_cast<size_t>(id)] = logits[id];
    }
    if (detail::grammar_accepting(state)) {
        for (int32_t id : v.eog) {
            if (id < n_vocab) buf[static_cast<size_t>(id)] = logits[id];
        }
    }
    return buf.data();
}

double Sampler::next_uniform() {
    // The top 53 bits give a double in [0, 1) with every value equally likely.
    return static_cast<double>(detail::splitmix64_next(rng_state_) >> 11) * (1.0 / 9007199254740992.0);
}

void Sampler::accept(int32_t token) {
    const bool sampled = grammar_pending_ >= 0 && token == grammar_pending_;
    accept(token, sampled);
}

bool Sampler::accept(int32_t token, bool advance_grammar) {
    grammar_pending_ = -1;
    history_.push_back(token);
    // With a window, drop old tokens now and then so that the history stays
    // small without shifting it on every call. A negative window keeps all.
    if (params_.repeat_last_n >= 0) {
        const size_t window = static_cast<size_t>(params_.repeat_last_n);
        if (history_.size() >= 2 * window + 64) {
            history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(window));
        }
    }
    if (!advance_grammar || !grammar_vocab_ || !grammar_.has_grammar()) return true;
    const GrammarVocab& v = *grammar_vocab_;
    if (token < 0 || static_cast<size_t>(token) >= v.pieces.size()) return false;
    const size_t k = static_cast<size_t>(token);
    // An end-of-generation token ends the text: it fits where the grammar may end.
    if (v.is_eog[k]) return grammar_.is_accepting();
    if (v.pieces[k].empty()) return false;
    return grammar_.accept(v.pieces[k]);
}

void Sampler::reset() {
    history_.clear();
    rng_state_ = params_.seed;
    reset_grammar();
}

void Sampler::apply_filters(const float* logits, int n_vocab, std::vector<int32_t>& ids,
                            std::vector<float>& probs) const {
    std::vector<detail::SamplerCandidate> cand;
    std::vector<float> masked;
    const float* lp = logits;
    if (grammar_vocab_ && grammar_.has_grammar() && logits && n_vocab > 0) lp = grammar_mask(logits, n_vocab, masked);
    const bool sorted = detail::sampler_filter(params_, history_, lp, n_vocab, cand);
    if (!sorted) std::sort(cand.begin(), cand.end(), detail::SamplerBefore());
    ids.resize(cand.size());
    probs.resize(cand.size());
    for (size_t i = 0; i < cand.size(); ++i) {
        ids[i] = cand[i].second;
        probs[i] = cand[i].first;
    }
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
    const float* lp = logits;
    if (grammar_vocab_ && grammar_.has_grammar() && logits && n_vocab > 0) {
        if (grammar_.is_complete()) {  // nothing can follow: end the text
            grammar_pending_ = grammar_vocab_->eos;
            return grammar_pending_;
        }
        lp = grammar_mask(logits, n_vocab, grammar_logits_);
    }
    const int32_t tok = sample_filtered(lp, n_vocab);
    if (grammar_vocab_) grammar_pending_ = tok;
    return tok;
}

int32_t Sampler::sample_filtered(const float* logits, int n_vocab) {
    detail::sampler_filter(params_, history_, logits, n_vocab, scratch_);
    if (scratch_.empty()) return -1;
    if (!(params_.temperature > 0.0f)) return scratch_[0].second;  // greedy: no draw
    double total = 0.0;
    for (const detail::SamplerCandidate& c : scratch_) total += static_cast<double>(c.first);
    const double u = next_uniform() * total;
    double cum = 0.0;
    for (const detail::SamplerCandidate& c : scratch_) {
        cum += static_cast<double>(c.first);
        if (u < cum) return c.second;
    }
    return scratch_.back().second;  // u landed on the rounding slack at the end
}

MINIGPT_NS_END
