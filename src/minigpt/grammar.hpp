// grammar: a parser for a subset of GBNF (the grammar notation of llama.cpp)
// and a matcher that follows the text produced so far through the grammar.
//
// A grammar is a list of rules; each rule is a list of alternatives separated
// by `alt` and closed by `end`; an alternative is a sequence of elements that
// are either a reference to a rule or a character class (a literal "abc" is
// three one-character classes). Repetitions and parenthesised groups become
// generated rules. The matcher keeps a set of stacks of element positions:
// the top of each stack is the character class that may come next, the
// positions below it are where to go on when the referenced rules end. An
// empty stack means the text so far is a whole sentence.
#pragma once
#include "base.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

MINIGPT_NS_BEGIN
namespace detail {

enum class GrammarOp : uint8_t { end, alt, ref, cls };

struct GrammarElem {
    GrammarOp op;
    uint32_t value;  // rule index for ref, class index for cls
};

// A set of code points: sorted, disjoint, non-adjacent closed ranges, or the
// complement of such a set.
struct GrammarClass {
    bool negated = false;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
};

// Limits that keep hostile grammar text from using unbounded time or memory.
constexpr uint32_t kGrammarMaxRepeat = 1000;          // m and n of {m,n}
constexpr size_t kGrammarMaxElems = size_t(1) << 20;  // elements after expansion
constexpr int kGrammarMaxNesting = 200;               // depth of ( ... )
constexpr size_t kGrammarMaxStacks = 4096;            // stacks a state may hold
constexpr size_t kGrammarMaxExpand = 100000;          // expansion steps per character

struct GrammarData {
    std::vector<GrammarElem> elems;               // every rule, one after another
    std::vector<std::vector<uint32_t>> alt_starts;  // per rule: first element of each alternative
    std::vector<std::string> rule_names;
    std::vector<GrammarClass> classes;
    uint32_t root = 0;
};

inline bool grammar_class_has(const GrammarClass& c, uint32_t cp) {
    bool in = false;
    for (const auto& r : c.ranges) {
        if (cp < r.first) break;
        if (cp <= r.second) {
            in = true;
            break;
        }
    }
    return in != c.negated;
}

// Whether some code point in [lo, hi] belongs to the class.
inline bool grammar_class_meets(const GrammarClass& c, uint32_t lo, uint32_t hi) {
    if (!c.negated) {
        for (const auto& r : c.ranges) {
            if (r.first <= hi && lo <= r.second) return true;
        }
        return false;
    }
    // Ranges are merged, so [lo, hi] is excluded only when one range covers it.
    for (const auto& r : c.ranges) {
        if (r.first <= lo && hi <= r.second) return false;
    }
    return true;
}

inline void grammar_class_normalize(GrammarClass& c) {
    auto& v = c.ranges;
    std::sort(v.begin(), v.end());
    size_t w = 0;
    for (size_t r = 0; r < v.size(); ++r) {
        if (w > 0 && v[r].first <= v[w - 1].second + 1) {
            v[w - 1].second = std::max(v[w - 1].second, v[r].second);
        } else {
            v[w++] = v[r];
        }
    }
    v.resize(w);
}

class GbnfParser {
public:
    explicit GbnfParser(std::string_view src) : s_(src) {}

    Status run(std::string_view root_name, GrammarData& out) {
        skip_space();
        if (p_ >= s_.size()) return fail(p_, "the grammar has no rules");
        while (p_ < s_.size()) {
            const size_t name_at = p_;
            std::string name;
            if (!parse_name(name)) return fail(p_, "expected a rule name, found %s", what_is_here().c_str());
            skip_space();
            if (s_.compare(p_, 3, "::=") != 0)
                return fail(p_, "expected '::=' after rule name '%s'", name.c_str());
            p_ += 3;
            const uint32_t id = rule_id(name, name_at);
            if (defined_[id]) return fail(name_at, "rule '%s' is defined twice", name.c_str());
            defined_[id] = true;
            Status st = parse_alternates(id, 0);
            if (!st.ok()) return st;
            skip_space();
            if (p_ < s_.size() && !is_name_char(s_[p_]))
                return fail(p_, "unexpected %s", what_is_here().c_str());
        }
        for (size_t i = 0; i < rules_.size(); ++i) {
            if (!defined_[i])
                return fail(first_use_[i], "undefined rule '%s'", names_[i].c_str());
        }
        auto it = ids_.find(std::string(root_name));
        if (it == ids_.end())
            return error(StatusCode::bad_format, "grammar: no rule named '%.*s' (the start rule)",
                         static_cast<int>(std::min<size_t>(root_name.size(), 100)), root_name.data());
        Status st = check_left_recursion();
        if (!st.ok()) return st;

        out = GrammarData();
        out.root = it->second;
        out.rule_names = names_;
        out.classes = std::move(classes_);
        out.alt_starts.resize(rules_.size());
        size_t total = 0;
        for (const auto& r : rules_) total += r.size();
        out.elems.reserve(total);
        for (size_t i = 0; i < rules_.size(); ++i) {
            const uint32_t base = static_cast<uint32_t>(out.elems.size());
            out.alt_starts[i].push_back(base);
            for (size_t k = 0; k < rules_[i].size(); ++k) {
                if (rules_[i][k].op == GrammarOp::alt) out.alt_starts[i].push_back(base + static_cast<uint32_t>(k) + 1);
                out.elems.push_back(rules_[i][k]);
            }
        }
        return Status();
    }

private:
    std::string_view s_;
    size_t p_ = 0;
    std::vector<std::vector<GrammarElem>> rules_;
    std::vector<std::string> names_;
    std::vector<bool> defined_;
    std::vector<size_t> first_use_;
    std::unordered_map<std::string, uint32_t> ids_;
    std::vector<GrammarClass> classes_;
    std::unordered_map<uint32_t, uint32_t> char_classes_;  // one-character classes, shared
    size_t n_elems_ = 0;

    static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }

    // "line L, column C" of a byte offset; columns count characters.
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    Status fail(size_t at, const char* fmt, ...) const {
        int line = 1, col = 1;
        for (size_t i = 0; i < at && i < s_.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(s_[i]);
            if (c == '\n') {
                ++line;
                col = 1;
            } else if ((c & 0xC0) != 0x80) {
                ++col;
            }
        }
        char buf[400];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        return error(StatusCode::bad_format, "grammar: line %d, column %d: %s", line, col, buf);
    }

    std::string what_is_here() const {
        if (p_ >= s_.size()) return "the end of the text";
        const unsigned char c = static_cast<unsigned char>(s_[p_]);
        char buf[32];
        if (c >= 0x20 && c < 0x7F) std::snprintf(buf, sizeof buf, "'%c'", c);
        else std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
        return buf;
    }

    void skip_space() {
        while (p_ < s_.size()) {
            const char c = s_[p_];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                ++p_;
            } else if (c == '#') {
                while (p_ < s_.size() && s_[p_] != '\n') ++p_;
            } else {
                break;
            }
        }
    }

    bool parse_name(std::string& name) {
        const size_t b = p_;
        while (p_ < s_.size() && is_name_char(s_[p_])) ++p_;
        name.assign(s_.data() + b, p_ - b);
        return p_ > b;
    }

    uint32_t rule_id(const std::string& name, size_t used_at) {
        auto it = ids_.find(name);
        if (it != ids_.end()) return it->second;
        const uint32_t id = static_cast<uint32_t>(rules_.size());
        ids_.emplace(name, id);
        names_.push_back(name);
        rules_.emplace_back();
        defined_.push_back(false);
        first_use_.push_back(used_at);
        return id;
    }

    uint32_t new_rule(const std::string& base) {
        std::string name;
        for (int k = static_cast<int>(rules_.size());; ++k) {
            name = base + "_" + std::to_string(k);
            if (ids_.find(name) == ids_.end()) break;
        }
        const uint32_t id = rule_id(name, p_);
        defined_[id] = true;
        return id;
    }

    uint32_t add_class(GrammarClass c) {
        grammar_class_normalize(c);
        classes_.push_back(std::move(c));
        return static_cast<uint32_t>(classes_.size() - 1);
    }

    uint32_t char_class(uint32_t cp) {
        auto it = char_classes_.find(cp);
        if (it != char_classes_.end()) return it->second;
        GrammarClass c;
        c.ranges.emplace_back(cp, cp);
        const uint32_t id = add_class(std::move(c));
        char_classes_.emplace(cp, id);
        return id;
    }

    static int hex_value(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // One character of a literal or class at p_: an escape or a UTF-8 sequence.
    Status parse_char(uint32_t& cp) {
        const size_t at = p_;
        const unsigned char c = static_cast<unsigned char>(s_[p_]);
        if (c == '\\') {
            if (p_ + 1 >= s_.size()) return fail(at, "unfinished escape at the end of the text");
            const char e = s_[p_ + 1];
            p_ += 2;
            int digits = 0;
            switch (e) {
                case 'n': cp = '\n'; return Status();
                case 't': cp = '\t'; return Status();
                case 'r': cp = '\r'; return Status();
                case '\\': case '"': case '[': case ']': case '-': case '/': case '\'': case '^':
                    cp = static_cast<unsigned char>(e);
                    return Status();
                case 'x': digits = 2; break;
                case 'u': digits = 4; break;
                case 'U': digits = 8; break;
                default:
                    return fail(at, "unknown escape '\\%c'", (e >= 0x20 && e < 0x7F) ? e : '?');
            }
            uint64_t v = 0;
            for (int i = 0; i < digits; ++i) {
                const int h = p_ < s_.size() ? hex_value(s_[p_]) : -1;
                if (h < 0) return fail(at, "escape '\\%c' needs %d hex digits", e, digits);
                v = v * 16 + static_cast<uint64_t>(h);
                ++p_;
            }
            if (v > 0x10FFFF) return fail(at, "escape names code point 0x%llX, past U+10FFFF",
                                          static_cast<unsigned long long>(v));
            cp = static_cast<uint32_t>(v);
            return Status();
        }
        if (c < 0x80) {
            cp = c;
            ++p_;
            return Status();
        }
        int len = 0;
        uint32_t v = 0;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1Fu; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0Fu; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07u; }
        else return fail(at, "invalid UTF-8 byte 0x%02X", c);
        if (p_ + static_cast<size_t>(len) > s_.size()) return fail(at, "truncated UTF-8 sequence");
        for (int i = 1; i < len; ++i) {
            const unsigned char d = static_cast<unsigned char>(s_[p_ + static_cast<size_t>(i)]);
            if ((d & 0xC0) != 0x80) return fail(at, "invalid UTF-8 sequence");
            v = (v << 6) | (d & 0x3Fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (v < min_cp[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return fail(at, "invalid UTF-8 sequence");
        p_ += static_cast<size_t>(len);
        cp = v;
        return Status();
    }

    Status push(std::vector<GrammarElem>& out, GrammarElem e) {
        if (++n_elems_ > kGrammarMaxElems) return fail(p_, "the grammar is too large");
        out.push_back(e);
        return Status();
    }

    Status parse_alternates(uint32_t rule, int depth) {
        if (depth > kGrammarMaxNesting) return fail(p_, "groups are nested too deeply");
        std::vector<GrammarElem> out;
        const std::string base = names_[rule];
        Status st = parse_sequence(out, base, depth);
        if (!st.ok()) return st;
        while (p_ < s_.size() && s_[p_] == '|') {
            ++p_;
            st = push(out, GrammarElem{GrammarOp::alt, 0});
            if (!st.ok()) return st;
            st = parse_sequence(out, base, depth);
            if (!st.ok()) return st;
        }
        st = push(out, GrammarElem{GrammarOp::end, 0});
        if (!st.ok()) return st;
        rules_[rule] = std::move(out);
        return Status();
    }

    Status parse_sequence(std::vector<GrammarElem>& out, const std::string& base, int depth) {
        size_t last_sym = static_cast<size_t>(-1);
        for (;;) {
            skip_space();
            if (p_ >= s_.size()) break;
            const char c = s_[p_];
            const size_t at = p_;
            Status st;
            if (c == '"') {
                last_sym = out.size();
                ++p_;
                for (;;) {
                    if (p_ >= s_.size() || s_[p_] == '\n') return fail(at, "unterminated literal");
                    if (s_[p_] == '"') {
                        ++p_;
                        break;
                    }
                    uint32_t cp = 0;
                    st = parse_char(cp);
                    if (!st.ok()) return st;
                    st = push(out, GrammarElem{GrammarOp::cls, char_class(cp)});
                    if (!st.ok()) return st;
                }
            } else if (c == '[') {
                last_sym = out.size();
                ++p_;
                GrammarClass cls;
                if (p_ < s_.size() && s_[p_] == '^') {
                    cls.negated = true;
                    ++p_;
                }
                for (;;) {
                    if (p_ >= s_.size()) return fail(at, "unterminated character class");
                    if (s_[p_] == ']') {
                        ++p_;
                        break;
                    }
                    uint32_t lo = 0, hi = 0;
                    st = parse_char(lo);
                    if (!st.ok()) return st;
                    hi = lo;
                    if (p_ + 1 < s_.size() && s_[p_] == '-' && s_[p_ + 1] != ']') {
                        const size_t range_at = p_;
                        ++p_;
                        st = parse_char(hi);
                        if (!st.ok()) return st;
                        if (hi < lo) return fail(range_at, "character range ends before it starts");
                    }
                    cls.ranges.emplace_back(lo, hi);
                }
                if (cls.ranges.empty()) return fail(at, "empty character class");
                st = push(out, GrammarElem{GrammarOp::cls, add_class(std::move(cls))});
                if (!st.ok()) return st;
            } else if (c == '.') {
                last_sym = out.size();
                ++p_;
                GrammarClass any;
                any.negated = true;
                st = push(out, GrammarElem{GrammarOp::cls, add_class(std::move(any))});
                if (!st.ok()) return st;
            } else if (c == '(') {
                last_sym = out.size();
                ++p_;
                const uint32_t sub = new_rule(base);
                st = parse_alternates(sub, depth + 1);
                if (!st.ok()) return st;
                skip_space();
                if (p_ >= s_.size() || s_[p_] != ')')
                    return fail(p_, "expected ')' to close the group opened at %s", where(at).c_str());
                ++p_;
                st = push(out, GrammarElem{GrammarOp::ref, sub});
                if (!st.ok()) return st;
            } else if (is_name_char(c)) {
                std::string name;
                parse_name(name);
                const size_t after = p_;
                skip_space();
                if (s_.compare(p_, 3, "::=") == 0) {  // the next rule begins
                    p_ = at;
                    break;
                }
                p_ = after;
                last_sym = out.size();
                st = push(out, GrammarElem{GrammarOp::ref, rule_id(name, at)});
                if (!st.ok()) return st;
            } else if (c == '*' || c == '+' || c == '?' || c == '{') {
                if (last_sym == static_cast<size_t>(-1))
                    return fail(at, "'%c' repeats nothing (it must follow an item)", c);
                uint32_t lo = 0, hi = 0;
                const uint32_t inf = static_cast<uint32_t>(-1);
                ++p_;
                if (c == '*') { lo = 0; hi = inf; }
                else if (c == '+') { lo = 1; hi = inf; }
                else if (c == '?') { lo = 0; hi = 1; }
                else {
                    st = parse_bounds(at, lo, hi);
                    if (!st.ok()) return st;
                }
                st = repeat(out, last_sym, lo, hi, base);
                if (!st.ok()) return st;
                last_sym = static_cast<size_t>(-1);  // "a**" is not allowed
            } else {
                break;  // '|', ')' or something the caller reports
            }
        }
        return Status();
    }

    std::string where(size_t at) const {
        Status s = fail(at, "x");
        // "grammar: line L, column C: x" -> "line L, column C"
        const std::string& m = s.message();
        const size_t b = m.find("line");
        const size_t e = m.rfind(':');
        return (b != std::string::npos && e != std::string::npos && e > b) ? m.substr(b, e - b) : m;
    }

    Status parse_number(size_t at, uint32_t& v) {
        skip_space();
        if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') return fail(at, "expected a number in '{...}'");
        uint64_t x = 0;
        while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') {
            x = x * 10 + static_cast<uint64_t>(s_[p_] - '0');
            if (x > kGrammarMaxRepeat) return fail(at, "repetition count is larger than %u", kGrammarMaxRepeat);
            ++p_;
        }
        v = static_cast<uint32_t>(x);
        skip_space();
        return Status();
    }

    Status parse_bounds(size_t at, uint32_t& lo, uint32_t& hi) {
        Status st = parse_number(at, lo);
        if (!st.ok()) return st;
        if (p_ < s_.size() && s_[p_] == '}') {
            ++p_;
            hi = lo;
            return Status();
        }
        if (p_ >= s_.size() || s_[p_] != ',') return fail(at, "expected ',' or '}' in '{...}'");
        ++p_;
        skip_space();
        if (p_ < s_.size() && s_[p_] == '}') {
            ++p_;
            hi = static_cast<uint32_t>(-1);
            return Status();
        }
        st = parse_number(at, hi);
        if (!st.ok()) return st;
        if (p_ >= s_.size() || s_[p_] != '}') return fail(at, "expected '}' to close '{...}'");
        ++p_;
        if (hi < lo) return fail(at, "repetition {%u,%u} has its maximum below its minimum", lo, hi);
        return Status();
    }

    // Replaces out[from..] (one item: a literal, a class or a reference) by
    // lo copies of it followed by a generated rule for the optional part.
    Status repeat(std::vector<GrammarElem>& out, size_t from, uint32_t lo, uint32_t hi, const std::string& base) {
        const std::vector<GrammarElem> item(out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
        out.resize(from);
        if (item.empty()) return Status();  // a repeated "" is still ""
        const uint64_t copies = static_cast<uint64_t>(lo) + (hi == static_cast<uint32_t>(-1) ? 1 : hi - lo);
        if (copies * (item.size() + 3) > kGrammarMaxElems - n_elems_) return fail(p_, "the grammar is too large");
        Status st;
        for (uint32_t i = 0; i < lo; ++i) {
            for (const GrammarElem& e : item) {
                st = push(out, e);
                if (!st.ok()) return st;
            }
        }
        if (hi == static_cast<uint32_t>(-1)) {
            // r ::= item r |
            const uint32_t r = new_rule(base);
            std::vector<GrammarElem> body(item);
            body.push_back(GrammarElem{GrammarOp::ref, r});
            body.push_back(GrammarElem{GrammarOp::alt, 0});
            body.push_back(GrammarElem{GrammarOp::end, 0});
            n_elems_ += body.size();
            rules_[r] = std::move(body);
            return push(out, GrammarElem{GrammarOp::ref, r});
        }
        // r1 ::= item | ; rk ::= item r(k-1) | ; then a reference to r(hi-lo).
        uint32_t prev = 0;
        for (uint32_t k = 0; k < hi - lo; ++k) {
            const uint32_t r = new_rule(base);
            std::vector<GrammarElem> body(item);
            if (k > 0) body.push_back(GrammarElem{GrammarOp::ref, prev});
            body.push_back(GrammarElem{GrammarOp::alt, 0});
            body.push_back(GrammarElem{GrammarOp::end, 0});
            n_elems_ += body.size();
            rules_[r] = std::move(body);
            prev = r;
        }
        if (hi > lo) return push(out, GrammarElem{GrammarOp::ref, prev});
        return Status();
    }

    // A rule that can reach itself without consuming a character would make
    // the matcher expand forever; such grammars are refused.
    Status check_left_recursion() const {
        const size_t n = rules_.size();
        std::vector<char> nullable(n, 0);
        for (bool changed = true; changed;) {
            changed = false;
            for (size_t r = 0; r < n; ++r) {
                if (nullable[r]) continue;
                bool all = true;  // every element of the current alternative so far is nullable
                for (const GrammarElem& e : rules_[r]) {
                    if (e.op == GrammarOp::alt || e.op == GrammarOp::end) {
                        if (all) {
                            nullable[r] = 1;
                            changed = true;
                            break;
                        }
                        all = true;
                    } else if (all) {
                        if (e.op == GrammarOp::cls || !nullable[e.value]) all = false;
                    }
                }
            }
        }
        // Edges r -> s when s can come first in r; look for a cycle.
        std::vector<std::vector<uint32_t>> first(n);
        for (size_t r = 0; r < n; ++r) {
            bool lead = true;
            for (const GrammarElem& e : rules_[r]) {
                if (e.op == GrammarOp::alt || e.op == GrammarOp::end) {
                    lead = true;
                } else if (lead) {
                    if (e.op == GrammarOp::ref) first[r].push_back(e.value);
                    if (e.op == GrammarOp::cls || !nullable[e.value]) lead = false;
                }
            }
        }
        std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
        std::vector<std::pair<uint32_t, size_t>> path;
        for (size_t s = 0; s < n; ++s) {
            if (color[s]) continue;
            path.emplace_back(static_cast<uint32_t>(s), 0);
            color[s] = 1;
            while (!path.empty()) {
                auto& top = path.back();
                if (top.second < first[top.first].size()) {
                    const uint32_t nx = first[top.first][top.second++];
                    if (color[nx] == 1)
                        return error(StatusCode::bad_format,
                                     "grammar: rule '%s' is left-recursive (it can reach itself without "
                                     "matching a character; a repetition of something that can be empty does this)",
                                     names_[nx].c_str());
                    if (color[nx] == 0) {
                        color[nx] = 1;
                        path.emplace_back(nx, 0);
                    }
                } else {
                    color[top.first] = 2;
                    path.pop_back();
                }
            }
        }
        return Status();
    }
};

// ---------------------------------------------------------------------------
// Matcher state.
// ---------------------------------------------------------------------------
using GrammarStack = std::vector<uint32_t>;

struct GrammarState {
    std::vector<GrammarStack> stacks;
    // An unfinished UTF-8 character: its bits so far, bytes still to come,
    // and its total length.
    uint32_t partial = 0;
    uint8_t remain = 0;
    uint8_t length = 0;
};

inline bool grammar_is_stop(const GrammarData& g, uint32_t pos) {
    const GrammarOp op = g.elems[pos].op;
    return op == GrammarOp::end || op == GrammarOp::alt;
}

struct GrammarStackHash {
    size_t operator()(const GrammarStack& s) const {
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint32_t v : s) h = (h ^ v) * 0x100000001b3ull;
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

// Expands stacks for one step of the matcher. Stacks met before in the same
// step are skipped, so ambiguous grammars do not repeat work, and the total
// number of steps is bounded (a pathological grammar then loses some stacks
// instead of taking unbounded time).
struct GrammarExpander {
    const GrammarData& g;
    std::vector<GrammarStack>& out;
    // Stacks met so far: a short list while few (the usual case), a hash set after.
    std::vector<GrammarStack> seen_few;
    std::unordered_set<GrammarStack, GrammarStackHash> seen_many;
    std::vector<GrammarStack> todo;
    size_t steps = 0;

    GrammarExpander(const GrammarData& gd, std::vector<GrammarStack>& o) : g(gd), out(o) {}

    // Adds to `out` every stack reachable from `stack` by entering rules until
    // a character class (or nothing) is on top. False when the budget is spent.
    bool expand(GrammarStack stack);
    // True the first time a stack is offered.
    bool first_visit(const GrammarStack& st) {
        if (seen_many.empty()) {
            for (const GrammarStack& s : seen_few) {
                if (s == st) return false;
            }
            if (seen_few.size() < 16) {
                seen_few.push_back(st);
                return true;
            }
            seen_many.insert(seen_few.begin(), seen_few.end());
        }
        return seen_many.insert(st).second;
    }
};

inline bool GrammarExpander::expand(GrammarStack stack) {
    todo.clear();
    todo.push_back(std::move(stack));
    while (!todo.empty()) {
        if (++steps > kGrammarMaxExpand) return false;
        GrammarStack st = std::move(todo.back());
        todo.pop_back();
        if (!first_visit(st)) continue;
        if (st.empty() || g.elems[st.back()].op == GrammarOp::cls) {
            out.push_back(std::move(st));
            continue;
        }
        const uint32_t pos = st.back();
        const GrammarElem e = g.elems[pos];
        st.pop_back();
        if (!grammar_is_stop(g, pos + 1)) st.push_back(pos + 1);
        const auto& alts = g.alt_starts[e.value];
        for (size_t i = 0; i < alts.size(); ++i) {
            if (i + 1 == alts.size()) {
                if (!grammar_is_stop(g, alts[i])) st.push_back(alts[i]);
                todo.push_back(std::move(st));
            } else {
                GrammarStack ns = st;
                if (!grammar_is_stop(g, alts[i])) ns.push_back(alts[i]);
                todo.push_back(std::move(ns));
            }
        }
    }
    return true;
}

inline void grammar_dedupe(std::vector<GrammarStack>& stacks) {
    std::sort(stacks.begin(), stacks.end());
    stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
    if (stacks.size() > kGrammarMaxStacks) stacks.resize(kGrammarMaxStacks);
}

inline void grammar_initial(const GrammarData& g, GrammarState& s) {
    s = GrammarState();
    GrammarExpander ex(g, s.stacks);
    for (uint32_t a : g.alt_starts[g.root]) {
        GrammarStack st;
        if (!grammar_is_stop(g, a)) st.push_back(a);
        if (!ex.expand(std::move(st))) break;
    }
    grammar_dedupe(s.stacks);
}

// The stacks after the code point cp, into out (partial state cleared).
inline void grammar_advance_cp(const GrammarData& g, const std::vector<GrammarStack>& in, uint32_t cp,
                               GrammarState& out) {
    out.stacks.clear();
    out.partial = 0;
    out.remain = 0;
    out.length = 0;
    GrammarExpander ex(g, out.stacks);
    for (const GrammarStack& st : in) {
        if (st.empty()) continue;
        const uint32_t pos = st.back();
        if (!grammar_class_has(g.classes[g.elems[pos].value], cp)) continue;
        GrammarStack ns(st.begin(), st.end() - 1);
        if (!grammar_is_stop(g, pos + 1)) ns.push_back(pos + 1);
        if (!ex.expand(std::move(ns))) break;
    }
    grammar_dedupe(out.stacks);
}

inline uint32_t grammar_min_cp(int length) {
    return length == 2 ? 0x80u : length == 3 ? 0x800u : length == 4 ? 0x10000u : 0u;
}

// Whether the state can still go on (or end).
inline bool grammar_alive(const GrammarData& g, const GrammarState& s) {
    if (s.remain == 0) return !s.stacks.empty();
    const unsigned shift = 6u * s.remain;
    uint32_t lo = s.partial << shift;
    uint32_t hi = lo | ((1u << shift) - 1u);
    lo = std::max(lo, grammar_min_cp(s.length));
    hi = std::min(hi, 0x10FFFFu);
    if (lo > hi) return false;
    for (const GrammarStack& st : s.stacks) {
        if (!st.empty() && grammar_class_meets(g.classes[g.elems[st.back()].value], lo, hi)) return true;
    }
    return false;
}

// The state after one more byte, into out; returns whether it is alive.
inline bool grammar_advance_byte(const GrammarData& g, const GrammarState& in, unsigned char b, GrammarState& out) {
    if (in.remain == 0) {
        if (b < 0x80) {
            grammar_advance_cp(g, in.stacks, b, out);
            return !out.stacks.empty();
        }
        uint8_t len = 0;
        uint32_t v = 0;
        if (b >= 0xC2 && b <= 0xDF) { len = 2; v = b & 0x1Fu; }
        else if (b >= 0xE0 && b <= 0xEF) { len = 3; v = b & 0x0Fu; }
        else if (b >= 0xF0 && b <= 0xF4) { len = 4; v = b & 0x07u; }
        else return false;  // not a lead byte
        out.stacks = in.stacks;
        out.partial = v;
        out.remain = static_cast<uint8_t>(len - 1);
        out.length = len;
        return grammar_alive(g, out);
    }
    if ((b & 0xC0) != 0x80) return false;
    const uint32_t v = (in.partial << 6) | (b & 0x3Fu);
    if (in.remain == 1) {
        if (v < grammar_min_cp(in.length) || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
        grammar_advance_cp(g, in.stacks, v, out);
        return !out.stacks.empty();
    }
    out.stacks = in.stacks;
    out.partial = v;
    out.remain = static_cast<uint8_t>(in.remain - 1);
    out.length = in.length;
    return grammar_alive(g, out);
}

// The state after the bytes; false (out unspecified) when they do not fit.
inline bool grammar_advance_bytes(const GrammarData& g, const GrammarState& in, std::string_view bytes,
                                  GrammarState& out) {
    if (bytes.empty()) {
        out = in;
        return true;
    }
    GrammarState tmp[2];
    const GrammarState* cur = &in;
    for (size_t i = 0; i < bytes.size(); ++i) {
        GrammarState& nx = (i + 1 == bytes.size()) ? out : tmp[i & 1];
        if (!grammar_advance_byte(g, *cur, static_cast<unsigned char>(bytes[i]), nx)) return false;
        cur = &nx;
    }
    return true;
}

inline bool grammar_accepting(const GrammarState& s) {
    if (s.remain != 0) return false;
    for (const GrammarStack& st : s.stacks) {
        if (st.empty()) return true;
    }
    return false;
}

inline bool grammar_complete(const GrammarState& s) {
    return s.remain == 0 && s.stacks.size() == 1 && s.stacks[0].empty();
}

// Marks in `allowed` (indexed by token id) the tokens of `order` whose bytes
// can follow state `cur`. `order` lists token ids sorted by their bytes, so
// tokens that share a prefix share the work for it: the states after each
// byte of the previous token are kept and reused, and once a prefix is dead
// every token that starts with it is rejected without further work.
inline void grammar_allowed_tokens(const GrammarData& g, const GrammarState& cur,
                                   const std::vector<std::string>& pieces, const std::vector<int32_t>& order,
                                   std::vector<uint8_t>& allowed) {
    allowed.assign(pieces.size(), 0);
    std::vector<GrammarState> level(1, cur);  // level[d]: the state after d bytes of the previous token
    std::vector<uint8_t> alive(1, grammar_alive(g, cur) ? 1 : 0);
    size_t computed = 0;  // level[0..computed] hold the states for the previous token
    const std::string* prev = nullptr;
    for (int32_t id : order) {
        if (id < 0 || static_cast<size_t>(id) >= pieces.size()) continue;
        const std::string& p = pieces[static_cast<size_t>(id)];
        size_t d = 0;
        if (prev) {
            const size_t m = std::min(std::min(prev->size(), p.size()), computed);
            while (d < m && (*prev)[d] == p[d]) ++d;
        }
        bool ok = alive[d] != 0;
        while (ok && d < p.size()) {
            if (level.size() < d + 2) {
                level.resize(d + 2);
                alive.resize(d + 2);
            }
            ok = grammar_advance_byte(g, level[d], static_cast<unsigned char>(p[d]), level[d + 1]);
            alive[d + 1] = ok ? 1 : 0;
            ++d;
        }
        computed = d;
        allowed[static_cast<size_t>(id)] = (ok && d == p.size()) ? 1 : 0;
        prev = &p;
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Public classes.
// ---------------------------------------------------------------------------
struct Grammar::Impl {
    detail::GrammarData data;
};

Grammar::Grammar() : impl_(new Impl()) {}
Grammar::~Grammar() = default;

Status Grammar::parse(std::string_view gbnf, std::shared_ptr<const Grammar>& out, std::string_view root) {
    out.reset();
    return detail::guard("Grammar::parse", [&]() -> Status {
        std::shared_ptr<Grammar> g(new (std::nothrow) Grammar());
        if (!g || !g->impl_) return detail::error(StatusCode::out_of_memory, "grammar: out of memory");
        detail::GbnfParser parser(gbnf);
        Status st = parser.run(root, g->impl_->data);
        if (!st.ok()) return st;
        out = std::move(g);
        return Status();
    });
}

size_t Grammar::n_rules() const { return impl_->data.alt_starts.size(); }

const char* Grammar::json_gbnf() {
    return R"GBNF(# JSON (RFC 8259) text: one value, optionally followed by whitespace.
root   ::= value
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::= "{" ws ( member ( "," ws member )* )? "}" ws
member ::= string ":" ws value
array  ::= "[" ws ( value ( "," ws value )* )? "]" ws

string ::= "\"" char* "\"" ws
char   ::= [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )

number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )? ws

# Whitespace is bounded so that a model cannot pad forever.
ws     ::= | " " | "\n" [ \t]{0,20}
)GBNF";
}

std::string Grammar::json_object_gbnf(const std::vector<std::string>& string_keys, int max_string_chars) {
    if (max_string_chars < 0) max_string_chars = 0;
    if (max_string_chars > static_cast<int>(detail::kGrammarMaxRepeat))
        max_string_chars = static_cast<int>(detail::kGrammarMaxRepeat);
    // A key as a GBNF literal of the JSON string "key".
    auto key_literal = [](const std::string& k) {
        std::string s = "\"\\\"";
        for (unsigned char c : k) {
            if (c == '"' || c == '\\') {
                // JSON needs \" or \\ in the key, and GBNF needs each of those escaped again.
                s += "\\\\";
                s += c == '"' ? "\\\"" : "\\\\";
            } else if (c < 0x20) {
                char buf[16];
                std::snprintf(buf, sizeof buf, "\\\\u%04x", c);
                s += buf;
            } else {
                s += static_cast<char>(c);
            }
        }
        s += "\\\"\"";
        return s;
    };
    std::string g = "root   ::= \"{\" ws ";
    for (size_t i = 0; i < string_keys.size(); ++i) {
        if (i > 0) g += "\",\" ws ";
        g += key_literal(string_keys[i]);
        g += " ws \":\" ws string ws ";
    }
    g += "\"}\"\n";
    g += "string ::= \"\\\"\" char{0," + std::to_string(max_string_chars) + "} \"\\\"\"\n";
    g += "char   ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n";
    g += "ws     ::= \" \"?\n";
    return g;
}

struct GrammarMatcher::Impl {
    std::shared_ptr<const Grammar> grammar;
    detail::GrammarState state;
};

GrammarMatcher::GrammarMatcher() : impl_(new Impl()) {}
GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar) : impl_(new Impl()) {
    impl_->grammar = std::move(grammar);
    reset();
}
GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(const GrammarMatcher& o) : impl_(new Impl(*o.impl_)) {}
GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& o) {
    if (this != &o) *impl_ = *o.impl_;
    return *this;
}

bool GrammarMatcher::has_grammar() const { return impl_->grammar != nullptr; }
const std::shared_ptr<const Grammar>& GrammarMatcher::grammar() const { return impl_->grammar; }

void GrammarMatcher::reset() {
    if (impl_->grammar) detail::grammar_initial(impl_->grammar->impl().data, impl_->state);
    else impl_->state = detail::GrammarState();
}

bool GrammarMatcher::can_accept(std::string_view bytes) const {
    if (!impl_->grammar) return false;
    detail::GrammarState next;
    return detail::grammar_advance_bytes(impl_->grammar->impl().data, impl_->state, bytes, next);
}

bool GrammarMatcher::accept(std::string_view bytes) {
    if (!impl_->grammar) return false;
    detail::GrammarState next;
    if (!detail::grammar_advance_bytes(impl_->grammar->impl().data, impl_->state, bytes, next)) return false;
    impl_->state = std::move(next);
    return true;
}

bool GrammarMatcher::is_accepting() const { return detail::grammar_accepting(impl_->state); }
bool GrammarMatcher::is_complete() const { return detail::grammar_complete(impl_->state); }

MINIGPT_NS_END
