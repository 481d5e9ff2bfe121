// Tests of the vocabulary loader, the SentencePiece tokenizer and the
// byte-level BPE tokenizer against the token ids llama.cpp produced for the
// vocabularies in the test data.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace minigpt;
using detail::Vocab;

namespace {

// A vocabulary loaded from a GGUF file in the data directory.
struct LoadedVocab {
    detail::FileBytes bytes;
    detail::GgufFile file;
    Vocab vocab;
};

void load(const std::string& rel, LoadedVocab& lv) {
    std::string path = test_util::data_path(rel);
    Status st = lv.bytes.open(path, true);
    REQUIRE_MESSAGE(st.ok(), path << ": " << st.to_string());
    st = lv.file.parse(lv.bytes.data(), lv.bytes.size());
    REQUIRE_MESSAGE(st.ok(), path << ": " << st.to_string());
    st = detail::load_vocab(lv.file, lv.vocab);
    REQUIRE_MESSAGE(st.ok(), path << ": " << st.to_string());
}

std::vector<int32_t> tok(const Vocab& v, std::string_view s, bool add_special, bool parse_special) {
    std::vector<int32_t> ids;
    Status st = detail::tokenize(v, s, add_special, parse_special, ids);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return ids;
}

std::string detok(const Vocab& v, const std::vector<int32_t>& ids, bool render_special) {
    return detail::detokenize(v, ids.data(), ids.size(), render_special);
}

std::string show_ids(const std::vector<int32_t>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s + "]";
}

// Text with every byte outside printable ASCII written as \xNN.
std::string show_text(std::string_view s) {
    std::string r = "\"";
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7F && c != '\\' && c != '"') {
            r += c;
        } else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02X", u);
            r += b;
        }
    }
    return r + "\"";
}

std::vector<int32_t> to_i32(const std::vector<int>& v) { return std::vector<int32_t>(v.begin(), v.end()); }

std::string from_hex(const std::string& h) {
    std::string out;
    REQUIRE_MESSAGE(h.size() % 2 == 0, "odd-length hex string " << h);
    for (size_t i = 0; i < h.size(); i += 2) {
        int hi = detail::hex_digit(h[i]), lo = detail::hex_digit(h[i + 1]);
        REQUIRE_MESSAGE((hi >= 0 && lo >= 0), "bad hex string " << h);
        out += static_cast<char>(hi * 16 + lo);
    }
    return out;
}

// The value of `"key": "..."` in a JSON text, with JSON escapes decoded.
std::string json_string(const std::string& json, const std::string& key) {
    size_t k = json.find("\"" + key + "\"");
    REQUIRE_MESSAGE(k != std::string::npos, "JSON key '" << key << "' not found");
    size_t i = json.find('"', json.find(':', k + key.size() + 2));
    REQUIRE(i != std::string::npos);
    std::string out;
    for (++i; i < json.size() && json[i] != '"'; ++i) {
        char c = json[i];
        if (c != '\\') {
            out += c;
            continue;
        }
        REQUIRE(i + 1 < json.size());
        char e = json[++i];
        switch (e) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u': {
                REQUIRE(i + 4 < json.size());
                uint32_t cp = static_cast<uint32_t>(std::stoul(json.substr(i + 1, 4), nullptr, 16));
                i += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < json.size() && json[i + 1] == '\\' && json[i + 2] == 'u') {
                    uint32_t lo = static_cast<uint32_t>(std::stoul(json.substr(i + 3, 4), nullptr, 16));
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                if (cp < 0x80) {
                    out += static_cast<char>(cp);
                } else if (cp < 0x800) {
                    out += static_cast<char>(0xC0 | (cp >> 6));
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    out += static_cast<char>(0xE0 | (cp >> 12));
                    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                } else {
                    out += static_cast<char>(0xF0 | (cp >> 18));
                    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
                    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                }
                break;
            }
            default: out += e; break;  // \" \\ \/
        }
    }
    return out;
}

void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Runs llama.cpp's tokenizer test vectors: the .inp file holds texts, each
// followed by "\n__ggml_vocab_test__\n"; line k of the .out file holds the ids
// of text k (no BOS/EOS, special tokens not parsed).
void check_vocab_vectors(const std::string& name) {
    LoadedVocab lv;
    load("vocab/" + name, lv);
    std::string inp = test_util::read_file(test_util::data_path("vocab/" + name + ".inp"));
    std::string outp = test_util::read_file(test_util::data_path("vocab/" + name + ".out"));

    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    size_t pos = 0;
    while (pos < inp.size()) {
        size_t e = inp.find(sep, pos);
        REQUIRE_MESSAGE(e != std::string::npos, name << ".inp: text " << texts.size() << " has no separator after it");
        texts.push_back(inp.substr(pos, e - pos));
        pos = e + sep.size();
    }
    std::vector<std::string> lines;
    pos = 0;
    while (pos < outp.size()) {
        size_t e = outp.find('\n', pos);
        if (e == std::string::npos) e = outp.size();
        lines.push_back(outp.substr(pos, e - pos));
        pos = e + 1;
    }
    REQUIRE(texts.size() == 46);
    REQUIRE_MESSAGE(texts.size() == lines.size(), name << ": " << texts.size() << " texts but " << lines.size() << " lines of ids");

    int failures = 0;
    for (size_t k = 0; k < texts.size(); ++k) {
        std::vector<int32_t> expect = to_i32(test_util::parse_ints(lines[k]));
        std::vector<int32_t> got = tok(lv.vocab, texts[k], false, false);
        if (got != expect) ++failures;
        CHECK_MESSAGE(got == expect, name << " text " << k << " " << show_text(texts[k]) << "\n  expected " << show_ids(expect)
                                          << "\n  got      " << show_ids(got));
        // And back: the text is rebuilt exactly (the prefix space is dropped again).
        CHECK_MESSAGE(detok(lv.vocab, got, false) == texts[k], name << " text " << k << " " << show_text(texts[k])
                                                               << " detokenizes to " << show_text(detok(lv.vocab, got, false)));
    }
    CHECK(failures == 0);
}

// The cases of vocab/extra_cases/<name>.tokens.json: one JSON object per line.
void check_extra_cases(const std::string& json_rel, const Vocab& v) {
    std::string json = test_util::read_file(test_util::data_path(json_rel));
    int n_cases = 0;
    size_t pos = 0;
    while ((pos = json.find("{\"text_hex\"", pos)) != std::string::npos) {
        size_t end = json.find('\n', pos);
        std::string line = json.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        pos = end == std::string::npos ? json.size() : end;
        ++n_cases;
        std::string text = from_hex(json_string(line, "text_hex"));
        const char* keys[4] = {"ids_add0_parse0", "ids_add1_parse0", "ids_add0_parse1", "ids_add1_parse1"};
        for (int m = 0; m < 4; ++m) {
            bool add = (m & 1) != 0, parse = (m & 2) != 0;
            REQUIRE_MESSAGE(line.find(std::string("\"") + keys[m] + "\"") != std::string::npos, "missing " << keys[m]);
            std::vector<int32_t> expect = to_i32(test_util::json_int_array(line, keys[m]));
            std::vector<int32_t> got = tok(v, text, add, parse);
            CHECK_MESSAGE(got == expect, json_rel << " " << show_text(text) << " add_special=" << add << " parse_special=" << parse
                                                  << "\n  expected " << show_ids(expect) << "\n  got      " << show_ids(got));
        }
        std::vector<int32_t> ids = to_i32(test_util::json_int_array(line, "ids_add1_parse1"));
        std::string want_special = from_hex(json_string(line, "detok_add1_parse1_hex"));
        std::string want_plain = from_hex(json_string(line, "detok_remove_special_hex"));
        CHECK_MESSAGE(detok(v, ids, true) == want_special, show_text(text) << ": detokenize(render_special) gives "
                                                                           << show_text(detok(v, ids, true)) << ", expected "
                                                                           << show_text(want_special));
        CHECK_MESSAGE(detok(v, ids, false) == want_plain, show_text(text) << ": detokenize gives "
                                                                          << show_text(detok(v, ids, false)) << ", expected "
                                                                          << show_text(want_plain));
    }
    CHECK_MESSAGE(n_cases >= 16, json_rel << ": only " << n_cases << " cases found");
}

// A hand-made SPM vocabulary: the given pieces (U+2581 for spaces) with scores.
Vocab small_vocab(const std::vector<std::pair<std::string, float>>& pieces, bool byte_tokens, bool with_unk) {
    Vocab v;
    v.model = "llama";
    auto add = [&](const std::string& t, float s, int32_t type) {
        v.text.push_back(t);
        v.score.push_back(s);
        v.type.push_back(type);
    };
    add(with_unk ? "<unk>" : "<pad>", 0, with_unk ? Vocab::unknown : Vocab::unused);
    add("<s>", 0, Vocab::control);
    add("</s>", 0, Vocab::control);
    if (byte_tokens) {
        for (int b = 0; b < 256; ++b) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            add(name, 0, Vocab::byte);
        }
    }
    for (const auto& p : pieces) add(p.first, p.second, Vocab::normal);
    v.unk = with_unk ? 0 : -1;
    v.bos = 1;
    v.eos = 2;
    return v;
}

// ---------------------------------------------------------------------------
// A minimal GGUF writer for malformed-metadata tests.
struct GgufBuilder {
    std::string kv;
    uint64_t n_kv = 0;
    template <typename T>
    static void put(std::string& s, T v) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        s.append(b, sizeof(T));
    }
    static void put_str(std::string& s, const std::string& t) {
        put<uint64_t>(s, t.size());
        s += t;
    }
    void key(const std::string& k, uint32_t type) {
        put_str(kv, k);
        put<uint32_t>(kv, type);
        ++n_kv;
    }
    void str(const std::string& k, const std::string& v) {
        key(k, 8);
        put_str(kv, v);
    }
    void u32(const std::string& k, uint32_t v) {
        key(k, 4);
        put<uint32_t>(kv, v);
    }
    void strings(const std::string& k, const std::vector<std::string>& v) {
        key(k, 9);
        put<uint32_t>(kv, 8);
        put<uint64_t>(kv, v.size());
        for (const auto& s : v) put_str(kv, s);
    }
    void floats(const std::string& k, const std::vector<float>& v) {
        key(k, 9);
        put<uint32_t>(kv, 6);
        put<uint64_t>(kv, v.size());
        for (float f : v) put<float>(kv, f);
    }
    void ints(const std::string& k, const std::vector<int32_t>& v) {
        key(k, 9);
        put<uint32_t>(kv, 5);
        put<uint64_t>(kv, v.size());
        for (int32_t i : v) put<int32_t>(kv, i);
    }
    std::string bytes() const {
        std::string s = "GGUF";
        put<uint32_t>(s, 3);
        put<uint64_t>(s, 0);
        put<uint64_t>(s, n_kv);
        return s + kv;
    }
};

Status load_built(const GgufBuilder& b, Vocab& v) {
    std::string bytes = b.bytes();
    detail::GgufFile f;
    Status st = f.parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return detail::load_vocab(f, v);
}

}  // namespace

TEST_CASE("llama-spm vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-llama-spm.gguf"); }

TEST_CASE("phi-3 vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-phi-3.gguf"); }

TEST_CASE("llama-spm vocab: metadata") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-llama-spm.gguf", lv);
    const Vocab& v = lv.vocab;
    CHECK(v.n_vocab() == 32000);
    CHECK(v.model == "llama");
    CHECK(v.bos == 1);
    CHECK(v.eos == 2);
    CHECK(v.unk == 0);
    CHECK(v.add_bos);
    CHECK_FALSE(v.add_eos);
    CHECK(v.add_space_prefix);
    CHECK(v.find("\xE2\x96\x81Hello") == 15043);
    CHECK(v.find("no-such-piece") == -1);
    CHECK(v.byte_token[0xE6] == 3 + 0xE6);
    CHECK(detail::is_eog(v, 2));
    CHECK_FALSE(detail::is_eog(v, 1));
    CHECK_FALSE(detail::is_eog(v, 15043));
    CHECK_FALSE(detail::is_eog(v, -1));
    CHECK_FALSE(detail::is_eog(v, 32000));
}

TEST_CASE("token_to_piece") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-llama-spm.gguf", lv);
    const Vocab& v = lv.vocab;
    CHECK(detail::token_to_piece(v, 15043, false) == " Hello");
    CHECK(detail::token_to_piece(v, 3186, false) == " world");
    CHECK(detail::token_to_piece(v, 13, false) == "\n");               // <0x0A>
    CHECK(detail::token_to_piece(v, 3 + 0xF0, false) == "\xF0");       // one byte of a character
    CHECK(detail::token_to_piece(v, 1, false).empty());                // control: hidden
    CHECK(detail::token_to_piece(v, 1, true) == "<s>");
    CHECK(detail::token_to_piece(v, 0, false).empty());                // unknown: hidden
    CHECK(detail::token_to_piece(v, 0, true) == "<unk>");
    CHECK(detail::token_to_piece(v, -1, true).empty());
    CHECK(detail::token_to_piece(v, 32000, true).empty());
    CHECK(detail::token_to_piece(v, 1 << 30, true).empty());
    // Byte tokens of one emoji rebuild it only when joined.
    std::vector<int32_t> ids = {243, 162, 169, 156};
    CHECK(detok(v, ids, false) == "\xF0\x9F\xA6\x99");
    // The first piece loses the prefix space; a BOS in front keeps it.
    CHECK(detok(v, {15043, 3186}, false) == "Hello world");
    CHECK(detok(v, {1, 15043, 3186}, false) == " Hello world");
    CHECK(detok(v, {1, 15043, 3186}, true) == "<s> Hello world");
    CHECK(detail::detokenize(v, nullptr, 0, true).empty());
}

TEST_CASE("stories260K: prompt ids and greedy text") {
    LoadedVocab lv;
    load("models/stories260K.gguf", lv);
    const Vocab& v = lv.vocab;
    CHECK(v.n_vocab() == 512);
    CHECK(tok(v, "Once upon a time", true, false) == std::vector<int32_t>{1, 403, 407, 261, 378});
    CHECK(tok(v, "Once upon a time", false, false) == std::vector<int32_t>{403, 407, 261, 378});

    std::string json = test_util::read_file(test_util::data_path("models/stories260K.greedy200.json"));
    std::vector<int32_t> prompt = to_i32(test_util::json_int_array(json, "prompt_ids"));
    std::vector<int32_t> gen = to_i32(test_util::json_int_array(json, "generated_ids"));
    std::string text = json_string(json, "generated_text");
    REQUIRE(gen.size() == 200);
    CHECK(prompt == tok(v, json_string(json, "prompt"), true, false));
    std::string got = detok(v, gen, false);
    CHECK_MESSAGE(got == text, "got " << show_text(got) << "\nexpected " << show_text(text));
    // llama-simple prints the prompt with BOS rendered, then the generated text.
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), gen.begin(), gen.end());
    CHECK(detok(v, all, true) == "<s> Once upon a time" + text);
    // Piece by piece gives the same bytes after the first token.
    std::string joined;
    for (int32_t id : gen) joined += detail::token_to_piece(v, id, false);
    CHECK(joined == text);
}

TEST_CASE("extra cases: llama-spm (all add_special / parse_special combinations)") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-llama-spm.gguf", lv);
    check_extra_cases("vocab/extra_cases/llama-spm.tokens.json", lv.vocab);
}

TEST_CASE("extra cases: tok512 (stories260K)") {
    LoadedVocab lv;
    load("models/stories260K.gguf", lv);
    check_extra_cases("vocab/extra_cases/tok512.tokens.json", lv.vocab);
}

TEST_CASE("round trip of random UTF-8 text (llama-spm)") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-llama-spm.gguf", lv);
    const Vocab& v = lv.vocab;
    std::mt19937 rng(20260822u);
    // Code point ranges: ASCII, whitespace, Latin-1/Greek/Cyrillic, CJK, emoji, astral planes.
    const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x20, 0x20}, {0x0A, 0x0A}, {0x09, 0x09}, {0xA0, 0x4FF},
                                  {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0x1F300, 0x1F6FF}, {0x10000, 0x10FFFF}};
    const size_t n_ranges = sizeof ranges / sizeof ranges[0];
    int failures = 0;
    for (int iter = 0; iter < 300 && failures < 5; ++iter) {
        std::string s;
        int len = static_cast<int>(rng() % 40);
        for (int i = 0; i < len; ++i) {
            const uint32_t* r = ranges[rng() % n_ranges];
            uint32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
            append_utf8(s, cp);
        }
        REQUIRE(utf8_valid(s));
        std::vector<int32_t> ids = tok(v, s, false, false);
        for (int32_t id : ids) REQUIRE((id >= 0 && id < v.n_vocab()));
        std::string back = detok(v, ids, false);
        if (back != s) ++failures;
        CHECK_MESSAGE(back == s, show_text(s) << " -> " << show_ids(ids) << " -> " << show_text(back));
        // With BOS in front the prefix space stays.
        std::vector<int32_t> with_bos = tok(v, s, true, false);
        REQUIRE(!with_bos.empty());
        CHECK(with_bos[0] == 1);
        CHECK(detok(v, with_bos, false) == (s.empty() ? std::string() : " " + s));
    }
}

TEST_CASE("invalid UTF-8 goes through byte tokens") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-llama-spm.gguf", lv);
    const Vocab& v = lv.vocab;
    // A lone continuation byte, a truncated 3-byte character, a bad lead byte.
    std::string s = std::string("a\x80") + "b" + "\xE6\x97" + " c\xFF";
    std::vector<int32_t> ids = tok(v, s, false, false);
    CHECK(detok(v, ids, false) == s);
    bool has_80 = false, has_ff = false;
    for (int32_t id : ids) {
        has_80 = has_80 || id == 3 + 0x80;
        has_ff = has_ff || id == 3 + 0xFF;
    }
    CHECK(has_80);
    CHECK(has_ff);
    // Text ending in the middle of a character.
    std::string t = "\xE6";
    CHECK(tok(v, t, false, false) == std::vector<int32_t>{29871, 3 + 0xE6});

    std::mt19937 rng(7u);
    for (int iter = 0; iter < 300; ++iter) {
        std::string r;
        int len = static_cast<int>(rng() % 24);
        for (int i = 0; i < len; ++i) r += static_cast<char>(rng() & 0xFF);
        std::vector<int32_t> out;
        Status st = detail::tokenize(v, r, true, true, out);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        for (int32_t id : out) REQUIRE((id >= 0 && id < v.n_vocab()));
        // Without special-token parsing nothing is lost.
        CHECK_MESSAGE(detok(v, tok(v, r, false, false), false) == r, show_text(r));
    }
}

TEST_CASE("special tokens: control only with parse_special, user-defined always") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-phi-3.gguf", lv);
    const Vocab& v = lv.vocab;
    CHECK(v.eos == 32000);
    CHECK(v.eot == 32007);  // <|end|>
    CHECK(detail::is_eog(v, 32000));
    CHECK(detail::is_eog(v, 32007));
    CHECK_FALSE(detail::is_eog(v, 32010));
    CHECK_FALSE(detail::is_eog(v, 100));

    // <|user|> is a control token: plain text unless parse_special.
    std::vector<int32_t> plain = tok(v, "<|user|>Hi", false, false);
    for (int32_t id : plain) CHECK(id < 32000);
    CHECK(detok(v, plain, false) == "<|user|>Hi");
    // Parsed: the text after it gets the prefix space again. Phi-3's special
    // tokens also swallow the whitespace after them (llama.cpp's rule).
    std::vector<int32_t> hi = tok(v, "Hi", false, false);
    std::vector<int32_t> expect = {32010};
    expect.insert(expect.end(), hi.begin(), hi.end());
    expect.push_back(32007);
    CHECK(tok(v, "<|user|>\nHi<|end|>", false, true) == expect);
    CHECK(detok(v, expect, true) == "<|user|> Hi<|end|>");
    // </s> is USER_DEFINED in this vocabulary, so it is matched even without parse_special.
    std::vector<int32_t> ud = tok(v, "a</s>b", false, false);
    REQUIRE(ud.size() >= 3);
    CHECK(std::count(ud.begin(), ud.end(), 2) == 1);
    CHECK(detok(v, ud, false) == "a</s> b");
}

TEST_CASE("special tokens: longest match first (hand-made vocab)") {
    Vocab v = small_vocab({{"a", -1}, {"b", -1}, {"<", -1}, {">", -1}, {"|", -1}}, true, true);
    v.text.push_back("<|a|>");
    v.score.push_back(0);
    v.type.push_back(Vocab::control);
    v.text.push_back("<|a|><|b|>");
    v.score.push_back(0);
    v.type.push_back(Vocab::control);
    v.add_space_prefix = false;
    REQUIRE(detail::init_vocab(v).ok());
    int32_t one = v.n_vocab() - 2, two = v.n_vocab() - 1;
    CHECK(tok(v, "<|a|><|b|><|a|>", false, true) == std::vector<int32_t>{two, one});
    std::vector<int32_t> off = tok(v, "<|a|>", false, false);
    CHECK(off.size() == 5);
}

TEST_CASE("SPM merges: best score first, ties to the leftmost pair") {
    // "ab" and "bc" score the same: the leftmost pair wins, then "c" is left alone.
    Vocab v = small_vocab({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -2}, {"\xE2\x96\x81", -5}}, true, true);
    v.add_space_prefix = false;
    REQUIRE(detail::init_vocab(v).ok());
    int32_t a = v.find("a"), c = v.find("c"), ab = v.find("ab"), bc = v.find("bc");
    CHECK(tok(v, "abc", false, false) == std::vector<int32_t>{ab, c});
    // A better-scored pair on the right wins over the leftmost one.
    v.score[static_cast<size_t>(bc)] = -1.5f;
    CHECK(tok(v, "abc", false, false) == std::vector<int32_t>{a, bc});
    // add_special adds BOS, and EOS when asked.
    v.add_eos = true;
    CHECK(tok(v, "abc", true, false) == std::vector<int32_t>{1, a, bc, 2});
    v.add_bos = false;
    CHECK(tok(v, "", true, false) == std::vector<int32_t>{2});
}

TEST_CASE("no byte tokens: unknown characters become UNK") {
    Vocab v = small_vocab({{"\xE2\x96\x81", -1}, {"a", -1}}, false, true);
    REQUIRE(detail::init_vocab(v).ok());
    int32_t sp = v.find("\xE2\x96\x81"), a = v.find("a");
    CHECK(tok(v, "a\xC3\xA9" "a", false, false) == std::vector<int32_t>{sp, a, 0, a});
    // Without UNK either, the text cannot be encoded: an error, not a crash.
    Vocab w = small_vocab({{"\xE2\x96\x81", -1}, {"a", -1}}, false, false);
    REQUIRE(detail::init_vocab(w).ok());
    std::vector<int32_t> out;
    Status st = detail::tokenize(w, "a\xC3\xA9", false, false, out);
    CHECK(st.code() == StatusCode::invalid_argument);
    CHECK(st.message().find("cannot encode") != std::string::npos);
}

TEST_CASE("bad vocabularies are rejected with a clear Status") {
    {
        Vocab v;
        v.model = "llama";
        Status st = detail::init_vocab(v);
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("empty") != std::string::npos);
    }
    {
        Vocab v = small_vocab({{"a", -1}}, false, true);
        v.score.pop_back();
        CHECK(detail::init_vocab(v).code() == StatusCode::bad_format);
    }
    {
        Vocab v = small_vocab({{"a", -1}}, false, true);
        v.bos = 1000;
        Status st = detail::init_vocab(v);
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("BOS") != std::string::npos);
    }
    {
        Vocab v;
        std::vector<int32_t> out;
        CHECK(detail::tokenize(v, "abc", true, false, out).code() == StatusCode::invalid_argument);
        CHECK(detail::token_to_piece(v, 0, true).empty());
        CHECK_FALSE(detail::is_eog(v, 0));
    }
    // A tokenizer model that is neither SPM nor BPE.
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "bert");
        b.strings("tokenizer.ggml.tokens", {"a", "b"});
        Vocab v;
        Status st = load_built(b, v);
        CHECK(st.code() == StatusCode::unsupported);
        CHECK(st.message().find("bert") != std::string::npos);
    }
    // Malformed metadata in a hand-built GGUF.
    std::vector<std::string> toks = {"<unk>", "<s>", "</s>", "a"};
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.strings("tokenizer.ggml.tokens", toks);
        b.floats("tokenizer.ggml.scores", {0, 0, 0, -1});
        b.ints("tokenizer.ggml.token_type", {2, 3, 3, 1});
        b.u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
        Vocab v;
        Status st = load_built(b, v);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(v.pad == -1);
        CHECK(v.bos == 1);
        // "\xE2\x96\x81" (the prefix space) is no token and there are no byte tokens: UNK.
        CHECK(tok(v, "a", true, false) == std::vector<int32_t>{1, 0, 3});
    }
    {
        GgufBuilder b;
        b.strings("tokenizer.ggml.tokens", toks);
        Vocab v;
        CHECK(load_built(b, v).code() == StatusCode::bad_format);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.strings("tokenizer.ggml.tokens", toks);
        b.floats("tokenizer.ggml.scores", {0, 0, 0});
        Vocab v;
        Status st = load_built(b, v);
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("scores") != std::string::npos);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.strings("tokenizer.ggml.tokens", toks);
        b.strings("tokenizer.ggml.token_type", toks);
        Vocab v;
        Status st = load_built(b, v);
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("token_type") != std::string::npos);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.floats("tokenizer.ggml.tokens", {1, 2});
        Vocab v;
        CHECK(load_built(b, v).code() == StatusCode::bad_format);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.strings("tokenizer.ggml.tokens", {});
        Vocab v;
        CHECK(load_built(b, v).code() == StatusCode::bad_format);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "llama");
        b.strings("tokenizer.ggml.tokens", toks);
        b.str("tokenizer.ggml.add_bos_token", "yes");
        Vocab v;
        CHECK(load_built(b, v).code() == StatusCode::bad_format);
    }
}

// ---------------------------------------------------------------------------
// Byte-level BPE.
// ---------------------------------------------------------------------------

TEST_CASE("gpt-2 vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-gpt-2.gguf"); }
TEST_CASE("llama-bpe vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-llama-bpe.gguf"); }
TEST_CASE("qwen2 vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-qwen2.gguf"); }
TEST_CASE("deepseek-llm vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-deepseek-llm.gguf"); }
TEST_CASE("deepseek-coder vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-deepseek-coder.gguf"); }
TEST_CASE("falcon vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-falcon.gguf"); }
TEST_CASE("mpt vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-mpt.gguf"); }
TEST_CASE("refact vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-refact.gguf"); }
TEST_CASE("starcoder vocab: every llama.cpp test vector") { check_vocab_vectors("ggml-vocab-starcoder.gguf"); }

TEST_CASE("extra cases: gpt-2, llama-bpe, qwen2 (all add_special / parse_special combinations)") {
    for (const char* name : {"gpt-2", "llama-bpe", "qwen2"}) {
        std::string vocab_name = name;
        CAPTURE(vocab_name);
        LoadedVocab lv;
        load(std::string("vocab/ggml-vocab-") + name + ".gguf", lv);
        check_extra_cases(std::string("vocab/extra_cases/") + name + ".tokens.json", lv.vocab);
    }
}

TEST_CASE("BPE vocab metadata: llama-bpe and qwen2") {
    {
        LoadedVocab lv;
        load("vocab/ggml-vocab-llama-bpe.gguf", lv);
        const Vocab& v = lv.vocab;
        CHECK(v.is_bpe);
        CHECK(v.n_vocab() == 128256);
        CHECK(v.merges.size() == 280147);
        CHECK(v.pre == "llama-bpe");
        CHECK(v.ignore_merges);
        CHECK(v.bos == 128000);
        CHECK(v.eos == 128001);
        CHECK(v.add_bos);
        CHECK_FALSE(v.add_eos);
        CHECK_FALSE(v.add_space_prefix);
        CHECK(detail::is_eog(v, 128001));
        CHECK(detail::is_eog(v, v.find("<|eot_id|>")));
        // " Hello" is one token whose text starts with U+0120 (the space byte).
        CHECK(detail::token_to_piece(v, 22691, false) == " Hello");
        CHECK(v.text[22691] == "\xC4\xA0Hello");
    }
    {
        LoadedVocab lv;
        load("vocab/ggml-vocab-qwen2.gguf", lv);
        const Vocab& v = lv.vocab;
        CHECK(v.n_vocab() == 151936);
        CHECK(v.merges.size() == 151387);
        CHECK_FALSE(v.ignore_merges);
        CHECK_FALSE(v.add_bos);
        CHECK(v.eos == 151645);
        // <think> is USER_DEFINED: matched without parse_special and rendered as text.
        int32_t think = v.find("<think>");
        REQUIRE(think >= 0);
        CHECK(v.type[static_cast<size_t>(think)] == Vocab::user_defined);
        std::vector<int32_t> ids = tok(v, "a<think>b", false, false);
        CHECK(std::count(ids.begin(), ids.end(), think) == 1);
        CHECK(detok(v, ids, false) == "a<think>b");
        // <|im_start|> is CONTROL: plain text unless parse_special; not rendered unless asked.
        int32_t im = v.find("<|im_start|>");
        REQUIRE(im >= 0);
        std::vector<int32_t> plain = tok(v, "<|im_start|>", false, false);
        CHECK(std::find(plain.begin(), plain.end(), im) == plain.end());
        CHECK(tok(v, "<|im_start|>", false, true) == std::vector<int32_t>{im});
        CHECK(detok(v, {im}, false).empty());
        CHECK(detok(v, {im}, true) == "<|im_start|>");
    }
}

TEST_CASE("byte <-> unicode map of byte-level BPE") {
    // The 188 printable bytes stand for themselves, the rest map to U+0100.. in order.
    CHECK(detail::bpe_byte_to_cp('A') == 'A');
    CHECK(detail::bpe_byte_to_cp(0) == 0x100);
    CHECK(detail::bpe_byte_to_cp(' ') == 0x120);
    CHECK(detail::bpe_byte_to_cp('\n') == 0x10A);
    CHECK(detail::bpe_byte_to_cp(0xAD) == 0x143);
    std::vector<bool> seen(400, false);
    for (int b = 0; b < 256; ++b) {
        uint32_t cp = detail::bpe_byte_to_cp(static_cast<unsigned char>(b));
        REQUIRE(cp < 400);
        CHECK_FALSE(seen[cp]);
        seen[cp] = true;
        CHECK(detail::bpe_cp_to_byte(cp) == b);
    }
    CHECK(detail::bpe_cp_to_byte(0x20) == -1);
    CHECK(detail::bpe_cp_to_byte(0x144) == -1);
    CHECK(detail::bpe_cp_to_byte(0x4E00) == -1);
}

namespace {
const char* const kAllVocabs[] = {"llama-spm", "phi-3", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm",
                                  "deepseek-coder", "falcon", "mpt", "refact", "starcoder"};

// Random valid UTF-8: letters of many scripts, digits, punctuation, symbols,
// emoji (with joiners and variation selectors) and runs of mixed whitespace.
std::string random_text(std::mt19937& rng) {
    static const uint32_t ranges[][2] = {
        {0x20, 0x7E},     {0x30, 0x39},     {0x20, 0x20},     {0x0A, 0x0A},     {0x09, 0x0D},     {0xA0, 0x24F},
        {0x370, 0x3FF},   {0x400, 0x4FF},   {0x590, 0x5FF},   {0x600, 0x6FF},   {0x900, 0x97F},   {0xE00, 0xE7F},
        {0x1100, 0x11FF}, {0x2000, 0x206F}, {0x3000, 0x303F}, {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3},
        {0xFF00, 0xFFEF}, {0x1F300, 0x1F6FF}, {0x1F900, 0x1F9FF}, {0x200D, 0x200D}, {0xFE0F, 0xFE0F},
        {0x10000, 0x10FFFF}, {0x80, 0x9F}, {0x2028, 0x2029},
    };
    const size_t n_ranges = sizeof ranges / sizeof ranges[0];
    std::string s;
    int len = static_cast<int>(rng() % 48);
    for (int i = 0; i < len; ++i) {
        const uint32_t* r = ranges[rng() % n_ranges];
        uint32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        int rep = (rng() % 8 == 0) ? 1 + static_cast<int>(rng() % 5) : 1;  // runs (e.g. of spaces)
        for (int k = 0; k < rep; ++k) append_utf8(s, cp);
    }
    return s;
}

// False when the text holds a byte the vocabulary has no token for (some BPE
// vocabularies lack a few, e.g. falcon's control bytes or starcoder's 0xF1).
bool encodable(const Vocab& v, std::string_view s) {
    for (char c : s)
        if (v.is_bpe && v.bpe_byte_token[static_cast<unsigned char>(c)] < 0) return false;
    return true;
}

// Tokenizes s; a text the vocabulary cannot encode must fail with a clear
// Status, any other must round-trip exactly.
void check_round_trip(const Vocab& v, const std::string& s, int* failures) {
    std::vector<int32_t> ids;
    Status st = detail::tokenize(v, s, false, false, ids);
    if (!encodable(v, s)) {
        CHECK_MESSAGE(st.code() == StatusCode::invalid_argument, show_text(s) << ": " << st.to_string());
        CHECK(st.message().find("cannot encode") != std::string::npos);
        CHECK(ids.empty());
        return;
    }
    REQUIRE_MESSAGE(st.ok(), show_text(s) << ": " << st.to_string());
    for (int32_t id : ids) REQUIRE((id >= 0 && id < v.n_vocab()));
    std::string back = detok(v, ids, false);
    if (back != s) ++*failures;
    CHECK_MESSAGE(back == s, show_text(s) << " -> " << show_ids(ids) << " -> " << show_text(back));
}
}  // namespace

TEST_CASE("bytes a BPE vocabulary has no token for are rejected") {
    LoadedVocab lv;
    load("vocab/ggml-vocab-falcon.gguf", lv);
    const Vocab& v = lv.vocab;
    CHECK(v.bpe_byte_token[3] < 0);
    CHECK(v.bpe_byte_token[static_cast<unsigned char>('a')] >= 0);
    std::vector<int32_t> out;
    Status st = detail::tokenize(v, "a\x03" "b", false, false, out);
    CHECK(st.code() == StatusCode::invalid_argument);
    CHECK(st.message().find("0x03") != std::string::npos);
    // deepseek-coder's user-defined "\xC3\xBA" (the character of byte 0xFA) does
    // not stand for the raw byte 0xFA, but the text "\xC3\xBA" is that token.
    LoadedVocab dc;
    load("vocab/ggml-vocab-deepseek-coder.gguf", dc);
    CHECK(dc.vocab.bpe_byte_token[0xFA] < 0);
    CHECK(detail::tokenize(dc.vocab, "i\xFA", false, false, out).code() == StatusCode::invalid_argument);
    CHECK(tok(dc.vocab, "\xC3\xBA", false, false) == std::vector<int32_t>{32007});
    CHECK(detok(dc.vocab, {32007}, false) == "\xC3\xBA");
}

TEST_CASE("round trip of random UTF-8 text, every vocabulary") {
    for (const char* name : kAllVocabs) {
        std::string vocab_name = name;
        CAPTURE(vocab_name);
        LoadedVocab lv;
        load(std::string("vocab/ggml-vocab-") + name + ".gguf", lv);
        const Vocab& v = lv.vocab;
        std::mt19937 rng(20260822u);
        int failures = 0;
        for (int iter = 0; iter < 300 && failures < 5; ++iter) {
            std::string s = random_text(rng);
            REQUIRE(utf8_valid(s));
            check_round_trip(v, s, &failures);
        }
    }
}

TEST_CASE("BPE: invalid UTF-8 goes through byte tokens and round-trips") {
    for (const char* name : {"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder"}) {
        std::string vocab_name = name;
        CAPTURE(vocab_name);
        LoadedVocab lv;
        load(std::string("vocab/ggml-vocab-") + name + ".gguf", lv);
        const Vocab& v = lv.vocab;
        int failures = 0;
        std::string s = std::string("a\x80") + "b" + "\xE6\x97" + " c\xFF" + "\xC0\xAF" + "\xED\xA0\x80" + "\xF4\x90\x80\x80";
        check_round_trip(v, s, &failures);
        std::mt19937 rng(7u);
        for (int iter = 0; iter < 200; ++iter) {
            std::string r;
            int len = static_cast<int>(rng() % 24);
            for (int i = 0; i < len; ++i) r += static_cast<char>(rng() & 0xFF);
            std::vector<int32_t> out;
            Status st = detail::tokenize(v, r, true, true, out);
            CHECK_MESSAGE((st.ok() || st.code() == StatusCode::invalid_argument), st.to_string());
            for (int32_t id : out) REQUIRE((id >= 0 && id < v.n_vocab()));
            check_round_trip(v, r, &failures);
        }
    }
}

namespace {
// The pre-tokens of `text` under the named pre-tokenizer.
std::vector<std::string> pre_split(const char* pre, std::string_view text) {
    int idx = detail::bpe_find_pre(pre);
    REQUIRE_MESSAGE(idx >= 0, "unknown pre-tokenizer " << pre);
    detail::BpeText t;
    std::vector<std::pair<uint32_t, uint32_t>> words;
    detail::bpe_pre_tokenize(idx, text, t, words);
    std::vector<std::string> out;
    size_t pos = 0;
    for (const auto& w : words) {
        CHECK(w.first == pos);  // the pieces cover the text in order
        pos = w.second;
        out.emplace_back(text.substr(w.first, w.second - w.first));
    }
    CHECK(pos == text.size());
    return out;
}
using Pieces = std::vector<std::string>;
}  // namespace

TEST_CASE("pre-tokenizers: every name in the table resolves, unknown names do not") {
    for (const char* name : {"default", "gpt-2", "llama-bpe", "llama3", "qwen2", "smollm", "deepseek-llm", "deepseek-coder",
                             "deepseek-v3", "falcon", "mpt", "starcoder", "refact", "gpt-neox", "dbrx", "olmo", "gpt-4o",
                             "tekken", "command-r", "poro", "poro-chat", "bloom", "viking", "stablelm2", "chatglm-bpe"}) {
        std::string vocab_name = name;
        CAPTURE(vocab_name);
        CHECK(detail::bpe_find_pre(name) >= 0);
    }
    CHECK(detail::bpe_find_pre("no-such-tokenizer") < 0);
    CHECK(detail::bpe_find_pre("") < 0);
    CHECK(detail::bpe_find_pre("gpt") < 0);
}

// Expected pieces from the pre-tokenizers' regular expressions (as llama.cpp
// writes them) run by a PCRE-style engine, for the rules that the vocabulary
// files do not cover and a few that they do.
TEST_CASE("pre-tokenizers: pieces of fixed texts") {
    CHECK(pre_split("gpt-4o", "HTTPRequest don'T CamelCaseWord \xC3\x84""BC 12345 a/b/\n/ x  \n\n y") ==
          Pieces{"HTTPRequest", " don'T", " Camel", "Case", "Word", " \xC3\x84", "BC", " ", "123", "45", " a", "/b", "/\n/", " x", "  \n\n", " y"});
    CHECK(pre_split("tekken", "HTTPRequest don'T 12345 a/b/\n  z") ==
          Pieces{"HTTPRequest", " don", "'T", " ", "1", "2", "3", "4", "5", " a", "/b", "/\n", " ", " z"});
    CHECK(pre_split("deepseek-v3", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88 \xE4\xB8\xAD\xE6\x96\x87""abc 1234567 ~x ~ +-*/ \x22quoted\x22!\n\n  end") ==
          Pieces{"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88", " ", "\xE4\xB8\xAD\xE6\x96\x87", "abc", " ", "123", "456", "7", " ", "~x", " ", "~", " +-*/", " \x22", "quoted", "\x22!\n\n", " ", " end"});
    CHECK(pre_split("bloom", "Hello, world! (a|b) 3.14 \xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8Cx  y") ==
          Pieces{"Hello", ",", " world", "! (", "a", "|", "b", ")", " 3", ".", "14", " \xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C", "x", " ", " y"});
    CHECK(pre_split("default", "a+=b; $x ~~ 1234567 don't") ==
          Pieces{"a", "+=", "b", ";", " ", "$", "x", " ", "~~", " ", "123", "456", "7", " don", "'", "t"});
    CHECK(pre_split("falcon", "a+=b; `x` 1234567 don't") ==
          Pieces{"a", "+=", "b", ";", " ", "`", "x", "`", " ", "123", "456", "7", " don", "'", "t"});
    CHECK(pre_split("starcoder", "x = 1234 + y's") ==
          Pieces{"x", " =", " ", "1", "2", "3", "4", " +", " y", "'s"});
    CHECK(pre_split("deepseek-llm", "Hello \xE4\xB8\x96\xE7\x95\x8C! 123 \xC2\xB5x\n\x09  ") ==
          Pieces{"Hello", " ", "\xE4\xB8\x96\xE7\x95\x8C", "!", " ", "123", " \xC2\xB5", "x", "\n", "\x09  "});
    CHECK(pre_split("deepseek-coder", "Hello \xE4\xB8\x96\xE7\x95\x8C! 123 foo_bar\n") ==
          Pieces{"Hello", " ", "\xE4\xB8\x96\xE7\x95\x8C", "!", " ", "1", "2", "3", " foo", "_", "bar", "\n"});
    CHECK(pre_split("qwen2", "Hello 123 I'M x\n\n  y") ==
          Pieces{"Hello", " ", "1", "2", "3", " I", "'M", " x", "\n\n", " ", " y"});
    CHECK(pre_split("llama-bpe", "Hello 12345 I'M x\n\n  y") ==
          Pieces{"Hello", " ", "123", "45", " I", "'M", " x", "\n\n", " ", " y"});
    CHECK(pre_split("gpt-2", "Hello 12345 I'M x\n\n  y") ==
          Pieces{"Hello", " 12345", " I", "'", "M", " x", "\n\n ", " y"});
    // Invalid bytes stay in the pieces, one symbol each.
    CHECK(pre_split("gpt-2", std::string("ab\xFF\xFE cd")) == Pieces{"ab", "\xFF\xFE", " cd"});
    CHECK(pre_split("gpt-2", "").empty());
}

namespace {
// A tiny byte-level BPE vocabulary: the 256 byte characters, "ab", "abc" and
// "<|end|>", with the merges "a b" and "ab c".
void tiny_bpe(GgufBuilder& b, const std::string& pre, const std::vector<std::string>& merges = {"a b", "ab c"}) {
    std::vector<std::string> toks;
    for (int c = 0; c < 256; ++c) {
        std::string s;
        detail::utf8_append(s, detail::bpe_byte_to_cp(static_cast<unsigned char>(c)));
        toks.push_back(s);
    }
    toks.push_back("ab");
    toks.push_back("abc");
    toks.push_back("<|end|>");
    std::vector<int32_t> types(toks.size(), 1);
    types.back() = 3;
    b.str("tokenizer.ggml.model", "gpt2");
    if (!pre.empty()) b.str("tokenizer.ggml.pre", pre);
    b.strings("tokenizer.ggml.tokens", toks);
    b.ints("tokenizer.ggml.token_type", types);
    b.strings("tokenizer.ggml.merges", merges);
}
}  // namespace

TEST_CASE("BPE: unknown pre-tokenizer names, defaults and malformed merges") {
    {
        GgufBuilder b;
        tiny_bpe(b, "no-such-pre");
        Vocab v;
        Status st = load_built(b, v);
        CHECK(st.code() == StatusCode::unsupported);
        CHECK(st.message().find("no-such-pre") != std::string::npos);
        CHECK(st.message().find("bpe_unknown_pre_as_default") != std::string::npos);
    }
    {
        GgufBuilder b;
        tiny_bpe(b, "no-such-pre");
        std::string bytes = b.bytes();
        detail::GgufFile f;
        REQUIRE(f.parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()).ok());
        Vocab v;
        Status st = detail::load_vocab(f, v, true);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(v.pre_index == detail::bpe_find_pre("default"));
        CHECK(tok(v, "abc", false, false) == std::vector<int32_t>{257});
    }
    {
        // No tokenizer.ggml.pre: llama.cpp's "default"; BPE defaults: no BOS added, no UNK.
        GgufBuilder b;
        tiny_bpe(b, "");
        Vocab v;
        Status st = load_built(b, v);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(v.is_bpe);
        CHECK_FALSE(v.add_bos);
        CHECK(v.unk == -1);
        CHECK(v.bos == 11);
        // Token c < 256 is the character of byte c, so printable ASCII ids equal their bytes.
        CHECK(tok(v, "abc", true, false) == std::vector<int32_t>{257});
        CHECK(tok(v, "abca", false, false) == std::vector<int32_t>{257, 'a'});
        CHECK(tok(v, "bc", false, false) == std::vector<int32_t>{'b', 'c'});
        CHECK(tok(v, " ab", false, false) == std::vector<int32_t>{' ', 256});  // token 32 is U+0120
        // The control token only with parse_special.
        CHECK(tok(v, "a<|end|>", false, true) == std::vector<int32_t>{'a', 258});
        CHECK(tok(v, "a<|end|>", false, false).size() > 2);
        CHECK(detok(v, {'a', 258, 257}, false) == "aabc");
        CHECK(detok(v, {'a', 258, 257}, true) == "a<|end|>abc");
    }
    {
        GgufBuilder b;
        tiny_bpe(b, "gpt-2", {"a b", "ab"});
        Vocab v;
        CHECK(load_built(b, v).code() == StatusCode::bad_format);
    }
    {
        GgufBuilder b;
        b.str("tokenizer.ggml.model", "gpt2");
        b.strings("tokenizer.ggml.tokens", {"a", "b"});
        Vocab v;
        Status st = load_built(b, v);
        CHECK(st.code() == StatusCode::bad_format);
        CHECK(st.message().find("merges") != std::string::npos);
    }
}

TEST_CASE("BPE merges: lowest rank first, then the leftmost pair") {
    GgufBuilder b;
    std::vector<std::string> toks;
    for (int c = 0; c < 256; ++c) {
        std::string s;
        detail::utf8_append(s, detail::bpe_byte_to_cp(static_cast<unsigned char>(c)));
        toks.push_back(s);
    }
    for (const char* t : {"ab", "bc", "abc", "aa", "aaa", "aaaa"}) toks.push_back(t);
    b.str("tokenizer.ggml.model", "gpt2");
    b.str("tokenizer.ggml.pre", "gpt-2");
    b.strings("tokenizer.ggml.tokens", toks);
    b.strings("tokenizer.ggml.merges", {"b c", "a b", "aa a", "a a", "aa aa"});
    Vocab v;
    Status st = load_built(b, v);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    // "b c" outranks "a b": a + bc, and "a bc" is no merge.
    CHECK(tok(v, "abc", false, false) == std::vector<int32_t>{'a', 257});
    // "aa a" has the better rank but needs "aa" first: a a a a -> aa a a (leftmost) -> aaa a.
    CHECK(tok(v, "aaaa", false, false) == std::vector<int32_t>{260, 'a'});
    CHECK(tok(v, "aaaaa", false, false) == std::vector<int32_t>{260, 259});
}

// The SentencePiece tokenizer cuts the text before "▁" where the vocabulary
// shows that no merge can cross; the cut must never change the ids. Random small
// vocabularies with many tokens holding "▁" inside (which block cuts), runs of
// "▁", ties in the scores; every text is tokenized with and without cutting.
TEST_CASE("SPM: cutting the text at safe points gives the same ids as one piece") {
    const std::string S = "\xE2\x96\x81";
    std::mt19937 rng(123);
    const char* alpha[] = {"a", "b", "c", " ", "  ", "\xE2\x96\x81", "\n", "\xC3\xA9"};
    long mismatches = 0, total = 0, split_vocabs = 0;
    for (int vi = 0; vi < 200; ++vi) {
        minigpt::detail::Vocab v;
        v.model = "llama";
        v.text = {"<unk>", "<s>", "</s>"};
        v.type = {2, 3, 3};
        for (int b = 0; b < 256; ++b) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            v.text.push_back(name);
            v.type.push_back(6);
        }
        for (const char* t : {"a", "b", "c", "\xE2\x96\x81", "\n", "\xC3\xA9"}) {
            v.text.push_back(t);
            v.type.push_back(1);
        }
        const int ntok = 10 + static_cast<int>(rng() % 60);
        for (int k = 0; k < ntok; ++k) {
            std::string t;
            const int len = 2 + static_cast<int>(rng() % 5);
            for (int i = 0; i < len; ++i) {
                const int c = static_cast<int>(rng() % 7);
                t += c == 3 ? S : std::string(alpha[c == 4 ? 5 : c]);
            }
            v.text.push_back(t);
            v.type.push_back(1);
        }
        v.score.resize(v.text.size());
        for (auto& s : v.score) s = -static_cast<float>(rng() % 50);  // many ties
        v.add_space_prefix = rng() % 2;
        const minigpt::Status st = minigpt::detail::init_vocab(v);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        if (v.spm_split) ++split_vocabs;
        minigpt::detail::Vocab whole = v;
        whole.spm_split = false;
        for (int ti = 0; ti < 200; ++ti) {
            std::string text;
            const int len = static_cast<int>(rng() % 60);
            for (int i = 0; i < len; ++i) text += alpha[rng() % 8];
            std::vector<int32_t> a, b;
            REQUIRE(minigpt::detail::tokenize(v, text, true, false, a).ok());
            REQUIRE(minigpt::detail::tokenize(whole, text, true, false, b).ok());
            ++total;
            if (a != b) {
                ++mismatches;
                if (mismatches < 5) MESSAGE("vocabulary " << vi << ", text [" << text << "]");
            }
        }
    }
    CHECK(mismatches == 0);
    CHECK(total == 40000);
    CHECK(split_vocabs > 100);  // most vocabularies do cut (fewer than 64 blocking tokens)
}
