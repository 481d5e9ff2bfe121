// Sampler tests: determinism, greedy, the drawn distribution, and the exact
// token sets kept by each filter. No model needed.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"
#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

using minigpt::Sampler;
using minigpt::SamplerParams;

namespace {

// Only the filter under test is on; temperature 1.
SamplerParams plain(float temperature = 1.0f) {
    SamplerParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 1234;
    return p;
}

std::vector<int32_t> kept_ids(const SamplerParams& p, const std::vector<float>& logits) {
    Sampler s(p);
    std::vector<int32_t> ids;
    std::vector<float> probs;
    s.apply_filters(logits.data(), static_cast<int>(logits.size()), ids, probs);
    return ids;
}

std::vector<int32_t> sorted_copy(std::vector<int32_t> v) {
    std::sort(v.begin(), v.end());
    return v;
}

// A small deterministic generator for test logits, independent of the sampler's.
struct Lcg {
    uint64_t s;
    explicit Lcg(uint64_t seed) : s(seed) {}
    float next(float lo, float hi) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = static_cast<double>(s >> 11) / 9007199254740992.0;
        return static_cast<float>(lo + (hi - lo) * u);
    }
};

std::vector<float> random_logits(int n, uint64_t seed, float lo = -8.0f, float hi = 8.0f) {
    Lcg g(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = g.next(lo, hi);
    return v;
}

std::vector<double> softmax(const std::vector<float>& logits, double t) {
    double m = -std::numeric_limits<double>::infinity();
    for (float l : logits) m = std::max(m, static_cast<double>(l));
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp((logits[i] - m) / t);
    for (double& x : p) x /= sum;
    return p;
}

std::vector<int32_t> draws(Sampler& s, const std::vector<float>& logits, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(logits.data(), static_cast<int>(logits.size())));
    return out;
}

double chi_square(const std::vector<long>& counts, const std::vector<double>& probs, long n) {
    double chi = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        double e = probs[i] * static_cast<double>(n);
        double d = static_cast<double>(counts[i]) - e;
        chi += d * d / e;
    }
    return chi;
}

}  // namespace

TEST_CASE("same seed gives the same draws, a different seed different ones") {
    std::vector<float> logits = random_logits(300, 7, -3.0f, 3.0f);
    for (int variant = 0; variant < 2; ++variant) {
        SamplerParams p = variant == 0 ? plain(1.0f) : SamplerParams();  // pure temperature / defaults
        p.seed = 42;
        Sampler a(p), b(p);
        std::vector<int32_t> da = draws(a, logits, 1000);
        std::vector<int32_t> db = draws(b, logits, 1000);
        CHECK(da == db);
        // The draws really vary (not one token over and over).
        CHECK(sorted_copy(da).front() != sorted_copy(da).back());

        p.seed = 43;
        Sampler c(p);
        std::vector<int32_t> dc = draws(c, logits, 1000);
        CHECK(da != dc);

        // reset() reseeds: the sequence starts over.
        a.reset();
        CHECK(draws(a, logits, 1000) == da);
    }
}

TEST_CASE("the draws follow splitmix64 from the seed") {
    // 64 equal logits: each token has probability exactly 1/64, so the token
    // drawn is the top 6 bits of each 64-bit output. Seed 0 gives outputs
    // 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, ...
    std::vector<float> logits(64, 0.5f);
    SamplerParams p = plain(1.0f);
    p.seed = 0;
    Sampler s(p);
    std::vector<int32_t> expected = {56, 27, 1, 62, 6, 20, 11, 49, 15, 60, 25, 48};
    CHECK(draws(s, logits, 12) == expected);
}

TEST_CASE("greedy picks the argmax, the first index on ties") {
    std::vector<float> logits = {0.5f, 2.0f, -1.0f, 7.25f, 3.0f, 7.25f, 7.0f};
    for (float t : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()}) {
        SamplerParams p;  // default filters stay on: greedy ignores them
        p.temperature = t;
        Sampler s(p);
        for (int i = 0; i < 5; ++i) CHECK(s.sample(logits.data(), 7) == 3);
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(logits.data(), 7, ids, probs);
        REQUIRE(ids.size() == 1);
        CHECK(ids[0] == 3);
        CHECK(probs[0] == 1.0f);
    }
    std::vector<float> all_equal(10, -2.0f);
    Sampler g(plain(0.0f));
    CHECK(g.sample(all_equal.data(), 10) == 0);
    std::vector<float> big = random_logits(5000, 99);
    big[4321] = 100.0f;
    CHECK(g.sample(big.data(), 5000) == 4321);
}

TEST_CASE("temperature sampling matches softmax(logits / T) (chi-square)") {
    const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.3f, 1.5f};
    const double t = 0.7;
    const long n = 200000;
    SamplerParams p = plain(static_cast<float>(t));
    p.seed = 20240601;
    Sampler s(p);
    std::vector<long> counts(8, 0);
    for (long i = 0; i < n; ++i) {
        int32_t tok = s.sample(logits.data(), 8);
        REQUIRE(tok >= 0);
        REQUIRE(tok < 8);
        ++counts[static_cast<size_t>(tok)];
    }
    // 7 degrees of freedom; the 0.999 quantile of chi-square(7) is 24.322.
    const double critical = 24.322;
    double chi = chi_square(counts, softmax(logits, t), n);
    INFO("chi-square = " << chi);
    CHECK(chi < critical);
    // The test has power: the same counts are far from the T = 1 distribution.
    CHECK(chi_square(counts, softmax(logits, 1.0), n) > 10 * critical);

    // apply_filters reports the same probabilities, most likely first.
    std::vector<int32_t> ids;
    std::vector<float> probs;
    s.apply_filters(logits.data(), 8, ids, probs);
    std::vector<double> ref = softmax(logits, t);
    REQUIRE(ids.size() == 8);
    CHECK(ids == std::vector<int32_t>({4, 7, 0, 1, 6, 2, 3, 5}));
    for (size_t i = 0; i < 8; ++i) CHECK(probs[i] == doctest::Approx(ref[static_cast<size_t>(ids[i])]).epsilon(1e-6));
}

TEST_CASE("top-k keeps exactly the k highest logits") {
    const std::vector<float> logits = {0.1f, 3.0f, 2.0f, 5.0f, 4.0f, -1.0f};
    SamplerParams p = plain();
    p.top_k = 3;
    CHECK(kept_ids(p, logits) == std::vector<int32_t>({3, 4, 1}));
    p.top_k = 1;
    CHECK(kept_ids(p, logits) == std::vector<int32_t>({3}));
    p.top_k = 5;
    CHECK(kept_ids(p, logits) == std::vector<int32_t>({3, 4, 1, 2, 0}));
    p.top_k = 6;  // k = n: everything
    CHECK(kept_ids(p, logits).size() == 6);
    p.top_k = 100;  // k > n: everything
    CHECK(kept_ids(p, logits).size() == 6);
    p.top_k = 0;  // off
    CHECK(kept_ids(p, logits).size() == 6);
    p.top_k = -3;  // off
    CHECK(kept_ids(p, logits).size() == 6);

    // Ties at the cut: the lower ids stay.
    const std::vector<float> ties = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
    p.top_k = 2;
    CHECK(kept_ids(p, ties) == std::vector<int32_t>({1, 2}));

    // A large vocabulary against a full sort.
    std::vector<float> big = random_logits(32000, 5);
    p.top_k = 40;
    std::vector<int32_t> order(32000);
    for (int i = 0; i < 32000; ++i) order[static_cast<size_t>(i)] = i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return big[static_cast<size_t>(a)] > big[static_cast<size_t>(b)] ||
               (big[static_cast<size_t>(a)] == big[static_cast<size_t>(b)] && a < b);
    });
    order.resize(40);
    CHECK(kept_ids(p, big) == order);

    // Sampling only ever returns kept tokens.
    p.top_k = 3;
    Sampler s(p);
    for (int i = 0; i < 2000; ++i) {
        int32_t t = s.sample(logits.data(), 6);
        CHECK((t == 3 || t == 4 || t == 1));
    }
}

TEST_CASE("top-p keeps the smallest prefix reaching top_p") {
    SamplerParams p = plain();
    // Four equal logits: probabilities exactly 0.25, cumulative 0.25, 0.5, 0.75, 1.
    const std::vector<float> eq(4, 1.5f);
    p.top_p = 0.5f;  // reached exactly at 2 tokens
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0, 1}));
    p.top_p = 0.75f;
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0, 1, 2}));
    p.top_p = 0.7500001f;
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0, 1, 2, 3}));
    p.top_p = 0.25f;
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0}));
    p.top_p = 0.0f;  // at least one token
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0}));
    p.top_p = -1.0f;
    CHECK(kept_ids(p, eq) == std::vector<int32_t>({0}));
    p.top_p = 1.0f;  // off
    CHECK(kept_ids(p, eq).size() == 4);

    // Probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled).
    const std::vector<float> l = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
    p.top_p = 0.49f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1}));
    p.top_p = 0.51f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 3}));
    p.top_p = 0.79f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 3}));
    p.top_p = 0.81f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 3, 0}));
    p.top_p = 0.96f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 3, 0, 2}));

    // 1024 equal logits: 1/1024 is exact, so 0.5 is reached at exactly 512
    // tokens (more than the first sorted slice).
    const std::vector<float> many(1024, -0.25f);
    p.top_p = 0.5f;
    std::vector<int32_t> first512(512);
    for (int i = 0; i < 512; ++i) first512[static_cast<size_t>(i)] = i;
    CHECK(kept_ids(p, many) == first512);

    // A large random vocabulary against a straightforward reference.
    std::vector<float> big = random_logits(20000, 11, -4.0f, 4.0f);
    for (float top_p : {0.3f, 0.9f, 0.99f}) {
        p.top_p = top_p;
        std::vector<double> prob = softmax(big, 1.0);
        std::vector<int32_t> order(big.size());
        for (size_t i = 0; i < big.size(); ++i) order[i] = static_cast<int32_t>(i);
        std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
            return big[static_cast<size_t>(a)] > big[static_cast<size_t>(b)] ||
                   (big[static_cast<size_t>(a)] == big[static_cast<size_t>(b)] && a < b);
        });
        double cum = 0;
        size_t keep = 0;
        while (keep < order.size()) {
            cum += prob[static_cast<size_t>(order[keep++])];
            if (cum >= top_p) break;
        }
        order.resize(keep);
        CHECK(kept_ids(p, big) == order);
    }

    // After top-k: the probabilities are over the k survivors. With all 42
    // tokens, p = 0.526, 0.263 ...: 0.6 needs two tokens; over the top 2
    // alone, p = 0.667, 0.333: one token is enough.
    std::vector<float> mix = {0.0f, std::log(0.5f)};
    for (int i = 0; i < 10; ++i) mix.push_back(std::log(0.04f));
    for (int i = 0; i < 30; ++i) mix.push_back(std::log(0.01f));
    p.top_p = 0.6f;
    CHECK(kept_ids(p, mix) == std::vector<int32_t>({0, 1}));
    p.top_k = 2;
    CHECK(kept_ids(p, mix) == std::vector<int32_t>({0}));
}

TEST_CASE("min-p keeps tokens with probability >= min_p * top probability") {
    SamplerParams p = plain();
    // Ratios to the top: 1, e^-1 = 0.368, e^-2 = 0.135, e^-3 = 0.0498, e^-5 = 0.0067.
    const std::vector<float> l = {-1.0f, 2.0f, -3.0f, 0.0f, 1.0f};
    p.min_p = 0.1f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 4, 3}));
    p.min_p = 0.05f;  // e^-3 = 0.0498 just misses
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 4, 3}));
    p.min_p = 0.049f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 4, 3, 0}));
    p.min_p = 0.4f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1}));
    p.min_p = 0.3f;
    CHECK(kept_ids(p, l) == std::vector<int32_t>({1, 4}));
    p.min_p = 0.0f;  // off
    CHECK(kept_ids(p, l).size() == 5);

    // min_p = 1 keeps exactly the tokens tied for the top; so does min_p > 1.
    const std::vector<float> ties = {3.0f, 1.0f, 3.0f, 2.999f};
    p.min_p = 1.0f;
    CHECK(kept_ids(p, ties) == std::vector<int32_t>({0, 2}));
    p.min_p = 5.0f;
    CHECK(kept_ids(p, ties) == std::vector<int32_t>({0, 2}));
    p.min_p = 0.999f;  // e^-0.001 = 0.9990005 stays
    CHECK(kept_ids(p, ties) == std::vector<int32_t>({0, 2, 3}));

    // Order: top-p first (on all tokens), then min-p. On the mixture below,
    // top-p 0.8 keeps 9 tokens (0.4545 + 0.2273 + 7 * 0.01818 = 0.8091) and
    // min-p 0.03 then keeps all 9; min-p first would drop the 0.01 tokens and
    // top-p would then stop at 3.
    std::vector<float> mix = {0.0f, std::log(0.5f)};
    for (int i = 0; i < 10; ++i) mix.push_back(std::log(0.04f));
    for (int i = 0; i < 30; ++i) mix.push_back(std::log(0.01f));
    p.top_p = 0.8f;
    p.min_p = 0.03f;
    CHECK(kept_ids(p, mix) == std::vector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7, 8}));
    // Top-p and min-p look at the probabilities before temperature.
    p.temperature = 0.1f;
    CHECK(kept_ids(p, mix).size() == 9);
    p.temperature = 10.0f;
    CHECK(kept_ids(p, mix).size() == 9);
    p.min_p = 0.05f;
    CHECK(kept_ids(p, mix) == std::vector<int32_t>({0, 1}));
}

TEST_CASE("temperature reshapes the kept probabilities") {
    const std::vector<float> l = {2.0f, 1.0f, 0.0f, -1.0f, -6.0f};
    for (float t : {0.25f, 1.0f, 3.0f}) {
        SamplerParams p = plain(t);
        p.top_k = 4;
        Sampler s(p);
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(l.data(), 5, ids, probs);
        REQUIRE(ids == std::vector<int32_t>({0, 1, 2, 3}));
        std::vector<double> ref = softmax(std::vector<float>(l.begin(), l.begin() + 4), t);
        double sum = 0;
        for (size_t i = 0; i < 4; ++i) {
            CHECK(probs[i] == doctest::Approx(ref[i]).epsilon(1e-6));
            sum += probs[i];
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    }
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits, once per token") {
    const std::vector<float> l = {2.0f, -2.0f, 0.0f, 1.0f, 3.0f};
    // The logits implied by the kept probabilities, relative to token 4 (never penalized).
    auto implied = [&](const Sampler& s) {
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(l.data(), 5, ids, probs);
        std::vector<double> out(5, 0.0);
        REQUIRE(ids.size() == 5);
        std::vector<double> byid(5);
        for (size_t i = 0; i < 5; ++i) byid[static_cast<size_t>(ids[i])] = probs[i];
        for (size_t i = 0; i < 5; ++i) out[i] = std::log(byid[i] / byid[4]) + 3.0;
        return out;
    };
    SamplerParams p = plain();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 64;
    Sampler s(p);
    for (int32_t t : {0, 1, 2, 0, 0}) s.accept(t);
    std::vector<double> got = implied(s);
    std::vector<double> want = {1.0, -4.0, 0.0, 1.0, 3.0};  // token 0 once: 2 / 2, not 2 / 8
    for (size_t i = 0; i < 5; ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));

    // A window of 2 looks at the last two accepted tokens {0, 0} only.
    p.repeat_last_n = 2;
    Sampler w(p);
    for (int32_t t : {1, 2, 0, 0}) w.accept(t);
    got = implied(w);
    want = {1.0, -2.0, 0.0, 1.0, 3.0};
    for (size_t i = 0; i < 5; ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));

    // Window 0 or penalty 1: no change. Out-of-range history is ignored.
    for (int variant = 0; variant < 2; ++variant) {
        SamplerParams q = p;
        if (variant == 0) q.repeat_last_n = 0;
        else q.repeat_penalty = 1.0f;
        Sampler o(q);
        for (int32_t t : {0, 1, 3, -7, 99999}) o.accept(t);
        got = implied(o);
        for (size_t i = 0; i < 5; ++i) CHECK(got[i] == doctest::Approx(l[i]).epsilon(1e-5));
    }
    Sampler junk(p);
    junk.accept(-1);
    junk.accept(5);
    junk.accept(1 << 30);
    got = implied(junk);
    for (size_t i = 0; i < 5; ++i) CHECK(got[i] == doctest::Approx(l[i]).epsilon(1e-5));

    // Greedy sees the penalty: 3.0 / 1.1 < 2.9.
    const std::vector<float> close = {3.0f, 2.9f};
    SamplerParams g = plain(0.0f);
    g.repeat_penalty = 1.1f;
    Sampler gs(g);
    CHECK(gs.sample(close.data(), 2) == 0);
    gs.accept(0);
    CHECK(gs.sample(close.data(), 2) == 1);
    gs.reset();  // forgets the history
    CHECK(gs.sample(close.data(), 2) == 0);
}

TEST_CASE("the penalty window follows a long history exactly") {
    const std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f};
    for (int last_n : {64, -1}) {
        SamplerParams p = plain(0.0f);
        p.repeat_penalty = 4.0f;
        p.repeat_last_n = last_n;
        Sampler s(p);
        // Token 0 just outside a 64-token window, token 1 just inside, after
        // enough tokens that the history has been trimmed several times.
        for (int i = 0; i < 500; ++i) s.accept(3);
        s.accept(0);
        s.accept(1);
        for (int i = 0; i < 63; ++i) s.accept(3);
        // With the window token 0 is unpenalized (1.0) and wins; with the
        // whole history (-1) both 0 and 1 are penalized and 2 wins.
        CHECK(s.sample(l.data(), 4) == (last_n == 64 ? 0 : 2));
        std::vector<int32_t> ids;
        std::vector<float> probs;
        SamplerParams q = p;
        q.temperature = 1.0f;
        Sampler t(q);
        for (int i = 0; i < 500; ++i) t.accept(3);
        t.accept(0);
        t.accept(1);
        for (int i = 0; i < 63; ++i) t.accept(3);
        t.apply_filters(l.data(), 4, ids, probs);
        REQUIRE(ids.size() == 4);
        if (last_n == 64) CHECK(ids == std::vector<int32_t>({0, 2, 1, 3}));
        else CHECK(ids == std::vector<int32_t>({2, 0, 1, 3}));
    }
}

TEST_CASE("bad input never crashes") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    Sampler s(SamplerParams{});
    std::vector<int32_t> ids = {7};
    std::vector<float> probs = {1.0f};
    float one = 1.0f;
    CHECK(s.sample(&one, 0) == -1);
    CHECK(s.sample(&one, -5) == -1);
    CHECK(s.sample(nullptr, 10) == -1);
    s.apply_filters(nullptr, 10, ids, probs);
    CHECK(ids.empty());
    CHECK(probs.empty());

    std::vector<float> bad = {nan, -inf, nan};
    CHECK(s.sample(bad.data(), 3) == -1);
    Sampler greedy(plain(0.0f));
    CHECK(greedy.sample(bad.data(), 3) == -1);

    // NaN and -inf are never drawn, even when they would be "first".
    std::vector<float> mixed = {nan, -inf, 0.0f, nan, -1.0f, -inf};
    CHECK(greedy.sample(mixed.data(), 6) == 2);
    SamplerParams p = plain(1.0f);
    Sampler m(p);
    for (int i = 0; i < 5000; ++i) {
        int32_t t = m.sample(mixed.data(), 6);
        CHECK((t == 2 || t == 4));
    }
    m.apply_filters(mixed.data(), 6, ids, probs);
    CHECK(ids == std::vector<int32_t>({2, 4}));

    // +inf tokens share the probability equally.
    std::vector<float> pinf = {1.0f, inf, 50.0f, inf, nan};
    m.apply_filters(pinf.data(), 5, ids, probs);
    CHECK(ids == std::vector<int32_t>({1, 3}));
    REQUIRE(probs.size() == 2);
    CHECK(probs[0] == 0.5f);
    CHECK(probs[1] == 0.5f);
    CHECK(greedy.sample(pinf.data(), 5) == 1);
    int count1 = 0;
    for (int i = 0; i < 4000; ++i) {
        int32_t t = m.sample(pinf.data(), 5);
        REQUIRE((t == 1 || t == 3));
        count1 += t == 1;
    }
    CHECK(count1 > 1800);
    CHECK(count1 < 2200);

    // Tiny temperatures and huge logits stay finite.
    SamplerParams cold = plain(1e-30f);
    Sampler c(cold);
    std::vector<float> huge = {3e38f, -3e38f, 2.9e38f};
    CHECK(c.sample(huge.data(), 3) == 0);
    SamplerParams hot = plain(1e30f);
    Sampler h(hot);
    h.apply_filters(huge.data(), 3, ids, probs);
    CHECK(ids == std::vector<int32_t>({0}));  // gaps of 1e37 stay decisive even at T = 1e30
    std::vector<float> small = {1.0f, 2.0f, 3.0f};
    h.apply_filters(small.data(), 3, ids, probs);
    REQUIRE(ids.size() == 3);
    for (float q : probs) CHECK(q == doctest::Approx(1.0 / 3.0));

    // Odd parameter values: NaN top_p / min_p / penalty are off.
    SamplerParams odd = plain(1.0f);
    odd.top_p = nan;
    odd.min_p = nan;
    odd.repeat_penalty = nan;
    Sampler o(odd);
    o.accept(0);
    std::vector<float> l = {1.0f, 2.0f, 3.0f};
    o.apply_filters(l.data(), 3, ids, probs);
    CHECK(ids.size() == 3);
}
