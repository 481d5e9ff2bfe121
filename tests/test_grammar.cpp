// Grammar tests: the GBNF parser (accepted and refused text, error positions),
// the matcher (literals, classes, repetition bounds, alternation, recursion,
// UTF-8 split across pieces), the built-in JSON grammars, the sampler's token
// mask, and constrained generation on stories260K that must always give JSON.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"
#include "test_util.hpp"

#include <chrono>
#include <cmath>
#include <random>
#include <set>

using namespace minigpt;

namespace {

std::shared_ptr<const Grammar> parse_ok(const std::string& text, const char* root = "root") {
    std::shared_ptr<const Grammar> g;
    Status st = Grammar::parse(text, g, root);
    REQUIRE_MESSAGE(st.ok(), st.to_string() << "\n--- grammar:\n" << text);
    REQUIRE(g != nullptr);
    return g;
}

// The parse error message (empty when the text parses).
std::string parse_error(const std::string& text) {
    std::shared_ptr<const Grammar> g;
    Status st = Grammar::parse(text, g);
    if (st.ok()) return "";
    CHECK(g == nullptr);
    CHECK(st.code() == StatusCode::bad_format);
    return st.message();
}

// Whether the whole text is a sentence of the grammar.
bool matches(const std::shared_ptr<const Grammar>& g, std::string_view text) {
    GrammarMatcher m(g);
    return m.accept(text) && m.is_accepting();
}

// Whether the text can be continued into a sentence.
bool prefix_ok(const std::shared_ptr<const Grammar>& g, std::string_view text) {
    GrammarMatcher m(g);
    return m.can_accept(text);
}

// A strict JSON (RFC 8259) validator for one value with optional whitespace around it.
struct JsonCheck {
    std::string_view s;
    size_t p = 0;
    int depth = 0;

    void ws() {
        while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) ++p;
    }
    bool lit(const char* w) {
        const size_t n = std::strlen(w);
        if (s.compare(p, n, w) != 0) return false;
        p += n;
        return true;
    }
    bool digits() {
        const size_t b = p;
        while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
        return p > b;
    }
    bool number() {
        if (p < s.size() && s[p] == '-') ++p;
        if (p >= s.size()) return false;
        if (s[p] == '0') ++p;
        else if (s[p] >= '1' && s[p] <= '9') digits();
        else return false;
        if (p < s.size() && s[p] == '.') {
            ++p;
            if (!digits()) return false;
        }
        if (p < s.size() && (s[p] == 'e' || s[p] == 'E')) {
            ++p;
            if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
            if (!digits()) return false;
        }
        return true;
    }
    bool string() {
        if (p >= s.size() || s[p] != '"') return false;
        const size_t b = ++p;
        for (;;) {
            if (p >= s.size()) return false;
            const unsigned char c = static_cast<unsigned char>(s[p]);
            if (c == '"') break;
            if (c < 0x20) return false;
            if (c == '\\') {
                ++p;
                if (p >= s.size()) return false;
                const char e = s[p];
                if (e == 'u') {
                    for (int i = 0; i < 4; ++i) {
                        ++p;
                        if (p >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[p]))) return false;
                    }
                } else if (!std::strchr("\"\\/bfnrt", e) || e == 0) {
                    return false;
                }
            }
            ++p;
        }
        const bool valid = utf8_valid(s.substr(b, p - b));
        ++p;
        return valid;
    }
    bool value() {
        if (++depth > 200) return false;
        ws();
        bool ok = false;
        if (p >= s.size()) ok = false;
        else if (s[p] == '{') {
            ++p;
            ws();
            if (p < s.size() && s[p] == '}') {
                ++p;
                ok = true;
            } else {
                for (;;) {
                    ws();
                    if (!string()) break;
                    ws();
                    if (p >= s.size() || s[p] != ':') break;
                    ++p;
                    if (!value()) break;
                    ws();
                    if (p < s.size() && s[p] == ',') { ++p; continue; }
                    if (p < s.size() && s[p] == '}') { ++p; ok = true; }
                    break;
                }
            }
        } else if (s[p] == '[') {
            ++p;
            ws();
            if (p < s.size() && s[p] == ']') {
                ++p;
                ok = true;
            } else {
                for (;;) {
                    if (!value()) break;
                    ws();
                    if (p < s.size() && s[p] == ',') { ++p; continue; }
                    if (p < s.size() && s[p] == ']') { ++p; ok = true; }
                    break;
                }
            }
        } else if (s[p] == '"') ok = string();
        else if (s[p] == 't') ok = lit("true");
        else if (s[p] == 'f') ok = lit("false");
        else if (s[p] == 'n') ok = lit("null");
        else ok = number();
        --depth;
        return ok;
    }
};

bool valid_json(std::string_view text) {
    JsonCheck c{text};
    if (!c.value()) return false;
    c.ws();
    return c.p == text.size();
}

std::shared_ptr<Model> stories() {
    static std::shared_ptr<Model> m;
    if (!m) {
        Status st = Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
    }
    return m;
}

}  // namespace

TEST_CASE("the test's JSON validator itself") {
    CHECK(valid_json("{}"));
    CHECK(valid_json(" [1, -2.5e+3, \"a\\u00e9\\n\", true, false, null, {\"k\": []}] "));
    CHECK_FALSE(valid_json("{"));
    CHECK_FALSE(valid_json("[1,]"));
    CHECK_FALSE(valid_json("01"));
    CHECK_FALSE(valid_json("\"a\nb\""));
    CHECK_FALSE(valid_json("{} {}"));
}

TEST_CASE("parser accepts GBNF") {
    auto g = parse_ok("root ::= \"a\"");
    CHECK(g->n_rules() == 1);
    parse_ok(Grammar::json_gbnf());
    parse_ok(Grammar::json_object_gbnf({"action", "line"}));
    parse_ok(Grammar::json_object_gbnf({}));
    // Comments, rules over several lines, blank lines, every repetition form.
    parse_ok("# a comment\n"
             "root ::= item+ # trailing comment\n"
             "\n"
             "item ::=\n"
             "   [a-z]{2} | [0-9]{1,} \n"
             "   | \"x\"{0,3} (\"y\" | \"z\")* [^\\n]? .{3}\n");
    // Another start rule.
    auto h = parse_ok("a ::= \"1\" b\nb ::= \"2\"", "a");
    CHECK(matches(h, "12"));
    // Names with dashes and digits, escapes of every kind.
    auto e = parse_ok("root ::= my-rule2\nmy-rule2 ::= \"\\x41\\u00e9\\U0001F600\\t\\\"\\\\\" [\\]\\[]");
    CHECK(matches(e, "A\xC3\xA9\xF0\x9F\x98\x80\t\"\\]"));
    CHECK(matches(e, "A\xC3\xA9\xF0\x9F\x98\x80\t\"\\["));
    // Empty alternatives.
    auto o = parse_ok("root ::= \"a\" | ");
    CHECK(matches(o, ""));
    CHECK(matches(o, "a"));
}

TEST_CASE("parser refuses bad GBNF with line and column") {
    CHECK(parse_error("root ::= \"abc").find("line 1, column 10: unterminated literal") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"\nfoo ::= bar").find("line 2, column 9: undefined rule 'bar'") !=
          std::string::npos);
    CHECK(parse_error("root \"a\"").find("line 1, column 6: expected '::='") != std::string::npos);
    CHECK(parse_error("root ::= [a-").find("line 1, column 10: unterminated character class") != std::string::npos);
    CHECK(parse_error("root ::= []").find("empty character class") != std::string::npos);
    CHECK(parse_error("root ::= [z-a]").find("line 1, column 12: character range ends") != std::string::npos);
    CHECK(parse_error("root ::=\n  (\"a\" | \"b\"").find("line 2, column 13: expected ')'") != std::string::npos);
    CHECK(parse_error("root ::= \"a\")").find("line 1, column 13: unexpected ')'") != std::string::npos);
    CHECK(parse_error("root ::= * \"a\"").find("line 1, column 10: '*' repeats nothing") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"{3,1}").find("maximum below its minimum") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"{5000}").find("larger than 1000") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"{2").find("line 1, column 13") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"{x}").find("expected a number") != std::string::npos);
    CHECK(parse_error("root ::= \"\\q\"").find("line 1, column 11: unknown escape '\\q'") != std::string::npos);
    CHECK(parse_error("root ::= \"\\x4\"").find("needs 2 hex digits") != std::string::npos);
    CHECK(parse_error("root ::= \"\\U00110000\"").find("past U+10FFFF") != std::string::npos);
    CHECK(parse_error("root ::= \"a\"\nroot ::= \"b\"").find("line 2, column 1: rule 'root' is defined twice") !=
          std::string::npos);
    CHECK(parse_error("start ::= \"a\"").find("no rule named 'root'") != std::string::npos);
    CHECK(parse_error("").find("no rules") != std::string::npos);
    CHECK(parse_error("root ::= root \"a\" | \"b\"").find("left-recursive") != std::string::npos);
    CHECK(parse_error("root ::= x \"a\"\nx ::= \"\" | root").find("left-recursive") != std::string::npos);
    CHECK(parse_error("root ::= (\"a\"?)*").find("left-recursive") != std::string::npos);
    CHECK(parse_error("root ::= \"\xFF\"").find("invalid UTF-8") != std::string::npos);
    // Columns count characters, not bytes.
    CHECK(parse_error("root ::= \"\xC3\xA9\" %").find("line 1, column 14: unexpected '%'") != std::string::npos);
    // Nesting is bounded instead of overflowing the stack.
    CHECK(parse_error("root ::= " + std::string(5000, '(')).find("nested too deeply") != std::string::npos);
}

TEST_CASE("matcher: literals, classes, alternation") {
    auto g = parse_ok("root ::= \"cat\" | \"car\" | \"dog\" [s]?");
    CHECK(matches(g, "cat"));
    CHECK(matches(g, "car"));
    CHECK(matches(g, "dog"));
    CHECK(matches(g, "dogs"));
    CHECK_FALSE(matches(g, "ca"));
    CHECK_FALSE(matches(g, "cats"));
    CHECK_FALSE(matches(g, "cow"));
    CHECK_FALSE(matches(g, ""));
    CHECK(prefix_ok(g, "ca"));
    CHECK_FALSE(prefix_ok(g, "cx"));

    auto c = parse_ok("root ::= [a-cx] [^a-z\"] [0-9A-F_]");
    CHECK(matches(c, "a0_"));
    CHECK(matches(c, "xZF"));
    CHECK(matches(c, "c\xE2\x82\xAC" "9"));  // the negated class takes the euro sign
    CHECK_FALSE(matches(c, "d0_"));
    CHECK_FALSE(matches(c, "aq_"));
    CHECK_FALSE(matches(c, "a\"_"));
    CHECK_FALSE(matches(c, "a0g"));

    auto dot = parse_ok("root ::= \"<\" . \">\"");
    CHECK(matches(dot, "<x>"));
    CHECK(matches(dot, "<\xE4\xB8\xAD>"));
    CHECK_FALSE(matches(dot, "<>"));
    CHECK_FALSE(matches(dot, "<ab>"));

    // is_complete: nothing may follow.
    GrammarMatcher m(g);
    REQUIRE(m.accept("dog"));
    CHECK(m.is_accepting());
    CHECK_FALSE(m.is_complete());
    REQUIRE(m.accept("s"));
    CHECK(m.is_complete());
    CHECK_FALSE(m.accept("s"));
    CHECK(m.is_complete());  // a refused accept() leaves the state as it was
    m.reset();
    CHECK_FALSE(m.is_accepting());
    CHECK(m.accept("car"));
}

TEST_CASE("matcher: repetition bounds") {
    auto g = parse_ok("root ::= \"a\"{2,4} \"b\"{3} \"c\"{2,} \"d\"* \"e\"+ \"f\"?");
    CHECK(matches(g, "aabbbcce"));
    CHECK(matches(g, "aaaabbbcccccdddeeef"));
    CHECK_FALSE(matches(g, "abbbcce"));       // a{2,4}: one is too few
    CHECK_FALSE(matches(g, "aaaaabbbcce"));   // five is too many
    CHECK_FALSE(matches(g, "aabbcce"));       // b{3}
    CHECK_FALSE(matches(g, "aabbbbcce"));
    CHECK_FALSE(matches(g, "aabbbce"));       // c{2,}
    CHECK_FALSE(matches(g, "aabbbcc"));       // e+
    CHECK_FALSE(matches(g, "aabbbccceff"));   // f?
    auto z = parse_ok("root ::= [0-9]{0} \"x\" ([a-z] \"-\"){0,2}");
    CHECK(matches(z, "x"));
    CHECK(matches(z, "xa-b-"));
    CHECK_FALSE(matches(z, "xa-b-c-"));
    CHECK_FALSE(matches(z, "0x"));
    auto big = parse_ok("root ::= [a]{1000}");
    CHECK(matches(big, std::string(1000, 'a')));
    CHECK_FALSE(matches(big, std::string(999, 'a')));
    CHECK_FALSE(matches(big, std::string(1001, 'a')));
}

TEST_CASE("matcher: recursion (nested arrays, balanced parentheses)") {
    auto g = parse_ok("root ::= arr\narr ::= \"[\" ( item (\",\" item)* )? \"]\"\nitem ::= arr | [0-9]+");
    CHECK(matches(g, "[]"));
    CHECK(matches(g, "[1,22,[3,[4,[]]],5]"));
    CHECK(matches(g, std::string(30, '[') + "1" + std::string(30, ']')));
    CHECK_FALSE(matches(g, std::string(30, '[') + "1" + std::string(29, ']')));
    CHECK_FALSE(matches(g, "[[1]"));
    CHECK_FALSE(matches(g, "[1]]"));
    CHECK_FALSE(matches(g, "[1,]"));
    CHECK_FALSE(matches(g, "[,1]"));
    CHECK(prefix_ok(g, "[[1,[2"));
    auto p = parse_ok("root ::= (\"(\" root \")\")*");
    CHECK(matches(p, ""));
    CHECK(matches(p, "(()())()"));
    CHECK_FALSE(matches(p, "(()"));
    CHECK_FALSE(matches(p, ")("));
}

TEST_CASE("matcher: UTF-8 characters split across pieces") {
    auto g = parse_ok("root ::= \"\xC3\xA9\" [\xD0\xB0-\xD1\x8F]+ \"!\"");  // é then Cyrillic a..ya
    GrammarMatcher m(g);
    CHECK(m.accept("\xC3"));   // half of é
    CHECK_FALSE(m.is_accepting());
    CHECK_FALSE(m.can_accept("\x80"));  // \xC3\x80 is À, not é
    CHECK(m.accept("\xA9\xD0"));
    CHECK_FALSE(m.can_accept("\x80"));  // U+0400 is below the range
    CHECK(m.can_accept("\xB0"));
    CHECK(m.accept("\xB1\xD1"));
    CHECK(m.accept("\x8F!"));
    CHECK(m.is_complete());

    // A partial character is accepted only if some completion fits a class.
    auto ascii = parse_ok("root ::= [a-z]+");
    CHECK_FALSE(prefix_ok(ascii, "ab\xC3"));
    auto neg = parse_ok("root ::= [^\\x00-\\u07FF]");  // 3- and 4-byte characters only
    CHECK_FALSE(prefix_ok(neg, "\xC3"));
    CHECK(prefix_ok(neg, "\xE4"));
    CHECK(prefix_ok(neg, "\xF0\x9F"));
    // Invalid UTF-8 never matches, even a negated class.
    auto any = parse_ok("root ::= [^a]*");
    CHECK_FALSE(prefix_ok(any, "\xFF"));
    CHECK_FALSE(prefix_ok(any, "\x80"));
    CHECK_FALSE(prefix_ok(any, "\xC0\x80"));       // overlong
    CHECK_FALSE(prefix_ok(any, "\xED\xA0\x80"));   // surrogate
    CHECK_FALSE(prefix_ok(any, "\xC3" "a"));       // lead byte without continuation
    CHECK(matches(any, "\xF0\x9F\x98\x80"));
}

TEST_CASE("JSON grammar accepts JSON and refuses the rest") {
    auto g = parse_ok(Grammar::json_gbnf());
    const char* good[] = {
        "{}",
        "[]",
        "\"\"",
        "0",
        "-0.5e-10",
        "123456",
        "true",
        "null",
        "{\"a\": 1, \"b\": [true, false, null], \"c\": {\"d\": \"e\\\"\\\\\\n\\u00e9\"}}",
        "[1, [2, [3, [4]]], {\"x\": -1.25E+3}]",
        "{\n  \"name\": \"Bob\",\n  \"age\": 42\n}",
        "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"",
    };
    for (const char* s : good) {
        CAPTURE(s);
        CHECK(valid_json(s));
        CHECK(matches(g, s));
    }
    const char* bad[] = {
        "{",
        "{\"a\"}",
        "{\"a\": }",
        "{a: 1}",
        "[1,]",
        "[1 2]",
        "01",
        "1.",
        ".5",
        "+1",
        "tru",
        "nul",
        "'x'",
        "\"a\nb\"",
        "\"\\x\"",
        "\"\\u12g4\"",
        "{} {}",
        "[1]]",
    };
    for (const char* s : bad) {
        CAPTURE(s);
        CHECK_FALSE(valid_json(s));
        CHECK_FALSE(matches(g, s));
    }
}

TEST_CASE("json_object_gbnf: keys in order, bounded strings") {
    const std::string text = Grammar::json_object_gbnf({"action", "line"}, 5);
    auto g = parse_ok(text);
    CHECK(matches(g, "{\"action\": \"wave\", \"line\": \"Hi!\"}"));
    CHECK(matches(g, "{\"action\":\"\",\"line\":\"12345\"}"));
    CHECK(matches(g, "{\"action\": \"a\\\"b\", \"line\": \"\\u00e9\"}"));
    CHECK_FALSE(matches(g, "{\"action\": \"wave\", \"line\": \"123456\"}"));  // six characters
    CHECK_FALSE(matches(g, "{\"line\": \"x\", \"action\": \"y\"}"));       // order
    CHECK_FALSE(matches(g, "{\"action\": \"wave\"}"));                    // missing key
    CHECK_FALSE(matches(g, "{\"action\": 1, \"line\": \"x\"}"));           // not a string
    GrammarMatcher m(g);
    REQUIRE(m.accept("{\"action\": \"x\", \"line\": \"y\"}"));
    CHECK(m.is_complete());
    // Keys that need escaping in JSON.
    auto q = parse_ok(Grammar::json_object_gbnf({"a\"b", "c\\d", "e\nf"}));
    const char* s = "{\"a\\\"b\": \"1\", \"c\\\\d\": \"2\", \"e\\u000af\": \"3\"}";
    CHECK(valid_json(s));
    CHECK(matches(q, s));
    CHECK(matches(parse_ok(Grammar::json_object_gbnf({})), "{}"));
}

TEST_CASE("bad grammar text never crashes (random mutations)") {
    std::mt19937 rng(1234);
    const std::string seeds[] = {
        Grammar::json_gbnf(),
        Grammar::json_object_gbnf({"action", "line"}),
        "root ::= (\"a\" | [b-d]{1,3} x)* \"\\u00e9\"\nx ::= \"(\" root \")\" | [^\\n]?",
    };
    const char alphabet[] = "()[]{}|*+?.,:=\"\\^-#\n x0129aZ\xC3\xA9\xFF";
    int parsed = 0, refused = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int iter = 0; iter < 20000; ++iter) {
        std::string s = seeds[iter % 3];
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits && !s.empty(); ++e) {
            const size_t pos = rng() % s.size();
            const char c = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
                case 0: s[pos] = c; break;
                case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c); break;
                default: s.erase(pos, 1 + rng() % 4); break;
            }
        }
        std::shared_ptr<const Grammar> g;
        Status st = Grammar::parse(s, g);
        if (!st.ok()) {
            ++refused;
            CHECK(g == nullptr);
            CHECK(st.message().find("grammar: ") == 0);
            continue;
        }
        ++parsed;
        REQUIRE(g != nullptr);
        // Drive a matcher with random bytes: it must stay consistent.
        GrammarMatcher m(g);
        for (int k = 0; k < 40; ++k) {
            std::string piece(1 + rng() % 3, ' ');
            for (char& ch : piece) ch = alphabet[rng() % (sizeof alphabet - 1)];
            const bool can = m.can_accept(piece);
            CHECK(m.accept(piece) == can);
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("mutations: " << parsed << " parsed, " << refused << " refused, " << secs << " s");
    CHECK(parsed > 0);
    CHECK(refused > 0);
}

TEST_CASE("pathological grammars take bounded time") {
    const char* texts[] = {
        "root ::= ((\"a\"{0,1000}){0,1000}){0,1000}",
        "root ::= ((\"a\"?){0,1000} \"b\"){0,1000}",
        "root ::= ([a-z]{0,100} [a-z]{0,100}){0,100}",
    };
    for (const char* text : texts) {
        CAPTURE(text);
        const auto t0 = std::chrono::steady_clock::now();
        auto g = parse_ok(text);
        GrammarMatcher m(g);
        m.accept("aaaaaaaa");
        m.can_accept("b");
        // Termination is what is checked (ctest's timeout catches a hang); the time is informational.
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        MESSAGE("matched in " << secs << " s");
    }
    // Deep nesting in the text being matched is fine (the stacks grow, not the C++ stack).
    auto nest = parse_ok("root ::= \"[\" root? \"]\"");
    CHECK(matches(nest, std::string(5000, '[') + std::string(5000, ']')));
}

TEST_CASE("sampler mask equals a token-by-token check; prompt tokens do not move the grammar") {
    auto model = stories();
    auto g = parse_ok(Grammar::json_gbnf());
    const int n_vocab = model->n_vocab();
    SamplerParams sp;
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    Sampler s(sp);
    REQUIRE(s.set_grammar(g, *model).ok());
    CHECK(s.grammar().has_grammar());
    std::vector<float> logits(static_cast<size_t>(n_vocab), 0.0f);

    // Prompt tokens accepted before any sample() leave the grammar where it was.
    std::vector<int32_t> prompt;
    REQUIRE(model->tokenize("Once upon a time", prompt).ok());
    for (int32_t t : prompt) s.accept(t);

    const std::string texts[] = {"", "{", "{\"a", "{\"a\": [1", "{\"a\": [1, \"x\xC3", "[tr"};
    for (const std::string& prefix : texts) {
        CAPTURE(prefix);
        s.reset_grammar();
        GrammarMatcher ref(g);
        REQUIRE(ref.accept(prefix));
        // Drive the sampler's grammar through the prefix with forced tokens (byte tokens exist).
        for (unsigned char b : prefix) {
            std::vector<int32_t> ids;
            std::string one(1, static_cast<char>(b));
            int32_t tok = -1;
            for (int t = 0; t < n_vocab && tok < 0; ++t) {
                if (model->token_to_piece(t) == one) tok = t;
            }
            REQUIRE_MESSAGE(tok >= 0, "no token for byte " << int(b));
            REQUIRE(s.accept(tok, true));
        }
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(logits.data(), n_vocab, ids, probs);
        std::set<int32_t> got(ids.begin(), ids.end());
        std::set<int32_t> want;
        for (int t = 0; t < n_vocab; ++t) {
            const std::string piece = model->token_to_piece(t);
            if (model->is_eog(t)) {
                if (ref.is_accepting()) want.insert(t);
            } else if (!piece.empty() && ref.can_accept(piece)) {
                want.insert(t);
            }
        }
        CHECK(!want.empty());
        CHECK(got == want);
        if (prefix == "{") {
            // '}' fits, 'x' does not.
            CHECK(ref.can_accept("}"));
            CHECK_FALSE(ref.can_accept("x"));
        }
    }

    // accept(token) moves the grammar only for the token sample() returned.
    s.reset_grammar();
    const int32_t tok = s.sample(logits.data(), n_vocab);
    REQUIRE(tok >= 0);
    const std::string piece = model->token_to_piece(tok);
    GrammarMatcher before = s.grammar();
    s.accept(tok);
    GrammarMatcher expect(g);
    REQUIRE(expect.accept(piece));
    CHECK(s.grammar().can_accept("\"") == expect.can_accept("\""));
    CHECK(s.grammar().can_accept("{") == expect.can_accept("{"));
    s.accept(tok);  // not sampled again: no effect on the grammar
    CHECK(s.grammar().can_accept("{") == expect.can_accept("{"));

    // Once the grammar is complete, sample() returns EOS.
    auto one = parse_ok("root ::= \"a\"");
    REQUIRE(s.set_grammar(one, *model).ok());
    const int32_t a = s.sample(logits.data(), n_vocab);
    REQUIRE(a >= 0);
    CHECK(model->token_to_piece(a) == "a");
    s.accept(a);
    CHECK(s.grammar().is_complete());
    CHECK(s.sample(logits.data(), n_vocab) == model->token_eos());
    // nullptr removes the grammar: the sampler is unconstrained again.
    REQUIRE(s.set_grammar(nullptr, *model).ok());
    CHECK_FALSE(s.grammar().has_grammar());
    std::vector<int32_t> ids;
    std::vector<float> probs;
    s.apply_filters(logits.data(), n_vocab, ids, probs);
    CHECK(ids.size() == static_cast<size_t>(n_vocab));
}

TEST_CASE("constrained generation on stories260K always gives JSON (100 seeds)") {
    auto model = stories();
    ContextParams cp;
    cp.n_ctx = 512;
    cp.n_threads = 1;
    std::unique_ptr<Context> ctx;
    Status st = Context::create(model, cp, ctx);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    const int max_chars = 32;
    auto g = parse_ok(Grammar::json_object_gbnf({"action", "line"}, max_chars));
    std::vector<int32_t> prompt;
    REQUIRE(model->tokenize("Once upon a time", prompt).ok());

    GenerateParams gp;
    // Every sentence is at most ~2*32 four-byte characters plus ~30 bytes, and
    // each token has at least one byte: this bound is never reached.
    gp.n_predict = 400;
    std::set<std::string> distinct;
    const auto t0 = std::chrono::steady_clock::now();
    for (int seed = 0; seed < 100; ++seed) {
        SamplerParams sp;
        sp.temperature = 1.0f;
        sp.seed = 1000u + static_cast<uint64_t>(seed);
        Sampler sampler(sp);
        REQUIRE(sampler.set_grammar(g, *model).ok());
        ctx->reset();
        std::string text;
        GenerateStats stats;
        st = generate(*ctx, sampler, prompt, gp, [&](std::string_view t) { text += t; return true; }, &stats);
        CAPTURE(seed);
        CAPTURE(text);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(stats.hit_eog);
        CHECK(valid_json(text));
        REQUIRE(!text.empty());
        CHECK(text[0] == '{');
        const size_t action = text.find("\"action\"");
        CHECK(action != std::string::npos);
        CHECK(text.find("\"line\"", action) != std::string::npos);
        CHECK(sampler.grammar().is_complete());
        distinct.insert(text);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("100 constrained generations in " << secs << " s, " << distinct.size() << " distinct");
    CHECK(distinct.size() > 50);  // temperature sampling with different seeds varies
}

TEST_CASE("a large vocabulary is masked quickly") {
    const std::string path = test_util::data_path("vocab/ggml-vocab-qwen2.gguf");
    ModelParams mp;
    mp.vocab_only = true;
    std::shared_ptr<Model> model;
    Status st = Model::load(path, mp, model);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    const int n_vocab = model->n_vocab();
    REQUIRE(n_vocab > 100000);
    auto g = parse_ok(Grammar::json_gbnf());
    SamplerParams sp;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    Sampler s(sp);
    REQUIRE(s.set_grammar(g, *model).ok());
    std::vector<float> logits(static_cast<size_t>(n_vocab), 0.0f);
    // Inside a string most tokens fit; at the start only a few do.
    GrammarMatcher ref(g);
    size_t n_start = 0, n_string = 0;
    const auto t0 = std::chrono::steady_clock::now();
    {
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(logits.data(), n_vocab, ids, probs);
        n_start = ids.size();
        // Spot-check against the matcher.
        for (size_t i = 0; i < ids.size(); i += 97) CHECK(ref.can_accept(model->token_to_piece(ids[i])));
    }
    // Enter a string: find tokens for '{' and '"' and accept them.
    for (const char* piece : {"{", "\""}) {
        int32_t tok = -1;
        for (int t = 0; t < n_vocab && tok < 0; ++t) {
            if (model->token_to_piece(t) == piece) tok = t;
        }
        REQUIRE(tok >= 0);
        REQUIRE(s.accept(tok, true));
    }
    {
        std::vector<int32_t> ids;
        std::vector<float> probs;
        s.apply_filters(logits.data(), n_vocab, ids, probs);
        n_string = ids.size();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("qwen2 vocabulary (" << n_vocab << " tokens): " << n_start << " allowed at the start, " << n_string
                                 << " inside a string, 2 masks in " << secs << " s");
    CHECK(n_start > 10);
    CHECK(n_start < 5000);
    CHECK(n_string > 50000);
}
