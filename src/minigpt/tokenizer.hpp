// tokenizer: the vocabulary stored in GGUF metadata (tokenizer.ggml.*), the
// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama") and the
// byte-level BPE tokenizer (model "gpt2") with the pre-tokenizers selected by
// tokenizer.ggml.pre, with the same results as llama.cpp, plus token -> text.
#pragma once
#include "gguf.hpp"
#include "unicode.hpp"

#include <queue>

MINIGPT_NS_BEGIN
namespace detail {

// ---------------------------------------------------------------------------
// Vocabulary.
// ---------------------------------------------------------------------------
struct Vocab {
    // GGUF tokenizer.ggml.token_type values. Other values are kept and act like
    // `undefined`: such tokens are never produced as text.
    enum TokenAttr : int32_t {
        undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6
    };
    // Per-token flags computed by init_vocab.
    enum TokenFlag : uint8_t {
        flag_eog = 1,     // ends generation (EOS, EOT, EOM and end-of-turn texts)
        flag_lstrip = 2,  // when parsed as a special token, eats the whitespace before it
        flag_rstrip = 4,  // ... and after it
    };

    std::string model;                 // tokenizer.ggml.model: "llama" (SPM) or "gpt2" (byte-level BPE)
    std::string name;                  // general.name in lower case (a few rules depend on it)
    std::vector<std::string> text;     // tokenizer.ggml.tokens
    std::vector<float> score;          // tokenizer.ggml.scores (0 if absent)
    std::vector<int32_t> type;         // tokenizer.ggml.token_type (normal if absent)
    int32_t bos = -1, eos = -1, unk = -1, eot = -1, eom = -1, pad = -1;
    bool add_bos = true, add_eos = false, add_space_prefix = true;

    // Byte-level BPE (model "gpt2") only.
    std::string pre;                   // tokenizer.ggml.pre: selects the pre-tokenizer ("" = "default")
    std::vector<std::string> merges;   // tokenizer.ggml.merges, "left right", highest priority first
    bool unknown_pre_as_default = false;  // an unknown `pre` uses the "default" rules instead of failing

    // Indexes, built by init_vocab.
    std::vector<int32_t> slots;        // open-addressing hash table of ids keyed by text; -1 = empty
    std::vector<uint8_t> flags;        // TokenFlag bits per token
    std::vector<int16_t> byte_value;   // the byte of a <0xNN> byte token, else -1
    std::vector<int32_t> specials;     // control / user-defined / unknown tokens, longest text first
    int32_t byte_token[256];           // token for a raw byte in byte fallback, -1 if none
    bool is_bpe = false;               // model "gpt2"
    int pre_index = -1;                // the entry of bpe_pre_tokenizers() in use
    bool ignore_merges = false;        // a pre-token that is itself a token is not merged (Llama 3)
    int32_t bpe_byte_token[256];       // normal token of each byte's byte-to-unicode character, -1 if none
    std::vector<uint64_t> merge_keys;  // open-addressing table (left id << 32 | right id) -> merge
    std::vector<int32_t> merge_rank;   // priority of the merge (index in `merges`)
    std::vector<int32_t> merge_result; // id of the merged token
    // SentencePiece only: where a text may be cut into pieces that are merged
    // independently (see spm_init_split).
    bool spm_split = false;            // a text may be cut before a U+2581
    bool spm_space_runs = false;       // some token holds U+2581 U+2581: never cut between two U+2581
    std::vector<int32_t> spm_cross;    // other tokens holding U+2581 after their first byte
    bool ready = false;                // init_vocab succeeded

    Vocab() {
        std::fill(byte_token, byte_token + 256, -1);
        std::fill(bpe_byte_token, bpe_byte_token + 256, -1);
    }

    int n_vocab() const { return static_cast<int>(text.size()); }
    // Id of the token whose text is exactly `piece`, or -1. With duplicate texts the last id wins.
    int32_t find(std::string_view piece) const;
};

inline uint64_t vocab_hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

inline int32_t Vocab::find(std::string_view piece) const {
    if (slots.empty()) return -1;
    size_t mask = slots.size() - 1;
    for (size_t i = static_cast<size_t>(vocab_hash(piece)) & mask;; i = (i + 1) & mask) {
        int32_t id = slots[i];
        if (id < 0) return -1;
        if (text[static_cast<size_t>(id)] == piece) return id;
    }
}

// The texts llama.cpp treats as end of turn, in order of preference, and the
// wider set of texts that end generation.
inline int32_t vocab_find_eot(const Vocab& v) {
    static const char* const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<EOT>", "_<EOT>", "<\xEF\xBD\x9C\x65nd\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
    for (const char* n : names) {
        int32_t id = v.find(n);
        if (id >= 0) return id;
    }
    return -1;
}
inline bool vocab_is_eog_text(std::string_view t) {
    static const char* const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                        "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                        "<|end_of_text|>", "<end_of_utterance>"};
    for (const char* n : names)
        if (t == n) return true;
    return false;
}

inline int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// ---------------------------------------------------------------------------
// Byte-level BPE: the byte <-> unicode mapping, pre-tokenizers, merge table.
// ---------------------------------------------------------------------------

// GPT-2's reversible byte -> code point map: printable bytes (0x21-0x7E,
// 0xA1-0xAC, 0xAE-0xFF) stand for themselves; the other 68 bytes, in order,
// become U+0100, U+0101, ... so that every token text is printable.
inline uint32_t bpe_byte_to_cp(unsigned char b) {
    static const std::vector<uint32_t> table = [] {
        std::vector<uint32_t> t(256);
        uint32_t next = 256;
        for (int c = 0; c < 256; ++c) {
            bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
            t[static_cast<size_t>(c)] = printable ? static_cast<uint32_t>(c) : next++;
        }
        return t;
    }();
    return table[b];
}
// The byte a code point of a token text stands for, or -1 if it is not one of the 256.
inline int bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) {
        bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
        return printable ? static_cast<int>(cp) : -1;
    }
    if (cp < 256 + 68) {
        static const std::vector<int16_t> back = [] {
            std::vector<int16_t> t(68, -1);
            for (int c = 0; c < 256; ++c) {
                uint32_t m = bpe_byte_to_cp(static_cast<unsigned char>(c));
                if (m >= 256) t[m - 256] = static_cast<int16_t>(c);
            }
            return t;
        }();
        return back[cp - 256];
    }
    return -1;
}
// Appends the byte-to-unicode form of raw bytes (what token texts are made of).
inline void bpe_encode_bytes(std::string_view bytes, std::string& out) {
    for (char c : bytes) utf8_append(out, bpe_byte_to_cp(static_cast<unsigned char>(c)));
}
// Appends the raw bytes a BPE token text stands for. A code point outside the
// map (not produced by the converter) is copied as it is.
inline void bpe_decode_text(std::string_view text, std::string& out) {
    for (size_t i = 0; i < text.size();) {
        size_t len;
        uint32_t cp = utf8_decode(text.data(), text.size(), i, &len);
        int b = len == 1 && cp == 0xFFFD ? -1 : bpe_cp_to_byte(cp);
        if (b >= 0) out += static_cast<char>(b);
        else out.append(text.data() + i, len);
        i += len;
    }
}

// The split rules. Each one is a hand-written matcher of one regular
// expression of the pre-tokenizers (the expressions as llama.cpp applies
// them); a pre-tokenizer applies its rules in order, each one splitting every
// piece left by the previous rules into its matches and the gaps between them.
enum class BpeRule : uint8_t {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
    gpt2,
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    llama3,
    // the same with \p{N} (one digit per piece)
    qwen2,
    // [^\r\n\p{L}\p{N}]?U*W+C?|[^\r\n\p{L}\p{N}]?U+W*C?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
    // with U = a letter but not a-z, W = a letter but not A-Z, C = an optional
    // (?i:'s|'t|'re|'ve|'m|'ll|'d) (llama.cpp's form of the GPT-4o expression)
    gpt4o,
    // the same without C and with \p{N}
    tekken,
    // [!-/:-@\[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    deepseek3,
    digit,          // \p{N}
    digits3,        // \p{N}{1,3}
    digits,         // \p{N}+
    ascii_digits3,  // [0-9][0-9][0-9]
    newline,        // [\r\n]
    ws_letters,     // \s?\p{L}+
    ws_punct,       // \s?\p{P}+
    dsllm_letters,  // \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (DeepSeek LLM's explicit letter ranges)
    dsllm_punct,    // \s?[!-/:-~！-／：-～‘-‟　-。]+
    trailing_space, // \s+$
    cjk,            // [一-龥ࠀ-一가-퟿]+
    cjk_kana,       // [一-龥぀-ゟ゠-ヿ]+
    punct_default,  // [\p{P}\$\+<=>\^~\|]+
    punct_falcon,   // [\p{P}\$\+<=>\^~\|`]+
    bloom,          //  ?[^(\s|.,!?…。，、।۔،)]+
};

struct BpePreTokenizer {
    const char* names;      // the tokenizer.ggml.pre values, separated by '|'
    BpeRule rules[6];
    int n_rules;
    bool ignore_merges;     // whole-token pre-tokens skip the merges
    bool add_bos;           // add_bos default (tokenizer.ggml.add_bos_token overrides it)
};

inline const std::vector<BpePreTokenizer>& bpe_pre_tokenizers() {
    using R = BpeRule;
    static const std::vector<BpePreTokenizer> table = {
        {"default", {R::punct_default, R::gpt2, R::digits, R::ascii_digits3}, 4, false, false},
        {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", {R::llama3}, 1, true, true},
        {"dbrx|smaug-bpe|chatglm-bpe|glm4", {R::llama3}, 1, false, false},
        {"qwen2|deepseek-r1-qwen|kormo|megrez|stablelm2|hunyuan|grok-2", {R::qwen2}, 1, false, false},
        {"gpt-2|gpt2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|jina-v1-en|jina-v2-code|"
         "roberta-bpe|exaone4|mpt|olmo|gpt-neox|jais|trillion|granite-docling",
         {R::gpt2}, 1, false, false},
        {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {R::digit, R::gpt2}, 2, false, false},
        {"falcon", {R::punct_falcon, R::gpt2, R::ascii_digits3}, 3, false, false},
        {"deepseek-llm",
         {R::newline, R::dsllm_letters, R::dsllm_punct, R::trailing_space, R::cjk, R::digits}, 6, false, false},
        {"deepseek-coder", {R::newline, R::ws_letters, R::ws_punct, R::cjk, R::digit}, 5, false, false},
        {"deepseek-v3|hunyuan-dense", {R::digits3, R::cjk_kana, R::deepseek3}, 3, false, false},
        {"gpt-4o|llama4|minimax-m2", {R::gpt4o}, 1, false, false},
        {"tekken", {R::tekken}, 1, true, true},
        {"bloom|poro|poro-chat|gpt3-finnish", {R::bloom}, 1, false, false},
        {"viking", {R::bloom, R::digit}, 2, false, false},
    };
    return table;
}

// Index of the pre-tokenizer for a tokenizer.ggml.pre value, or -1.
inline int bpe_find_pre(std::string_view name) {
    const auto& t = bpe_pre_tokenizers();
    for (size_t i = 0; i < t.size(); ++i) {
        std::string_view names = t[i].names;
        while (!names.empty()) {
            size_t bar = names.find('|');
            if (names.substr(0, bar) == name) return static_cast<int>(i);
            if (bar == std::string_view::npos) break;
            names.remove_prefix(bar + 1);
        }
    }
    return -1;
}

// The text being pre-tokenized, as code points with their flags. An invalid
// UTF-8 byte is one code point U+FFFD (a symbol) that stands for that byte.
struct BpeText {
    std::vector<uint32_t> cp;
    std::vector<uint16_t> fl;
    std::vector<uint32_t> off;     // byte offset of each code point; off[n] = text size
    std::vector<uint32_t> ws_end;  // end of the run of White_Space starting at i (i if none)
    size_t n = 0;

    void assign(std::string_view s) {
        cp.clear();
        fl.clear();
        off.clear();
        for (size_t i = 0; i < s.size();) {
            size_t len;
            uint32_t c = utf8_decode(s.data(), s.size(), i, &len);
            cp.push_back(c);
            fl.push_back(unicode_flags(c));
            off.push_back(static_cast<uint32_t>(i));
            i += len;
        }
        n = cp.size();
        off.push_back(static_cast<uint32_t>(s.size()));
        ws_end.assign(n + 1, 0);
        ws_end[n] = static_cast<uint32_t>(n);
        for (size_t i = n; i-- > 0;)
            ws_end[i] = (fl[i] & uf_space) ? ws_end[i + 1] : static_cast<uint32_t>(i);
    }
    bool L(size_t i) const { return (fl[i] & uf_letter) != 0; }
    bool N(size_t i) const { return (fl[i] & uf_number) != 0; }
    bool P(size_t i) const { return (fl[i] & uf_punct) != 0; }
    bool M(size_t i) const { return (fl[i] & uf_mark) != 0; }
    bool S(size_t i) const { return (fl[i] & uf_symbol) != 0; }
    bool WS(size_t i) const { return (fl[i] & uf_space) != 0; }
    // [^\s\p{L}\p{N}]
    bool other(size_t i) const { return (fl[i] & (uf_space | uf_letter | uf_number)) == 0; }
    bool crlf(size_t i) const { return cp[i] == '\r' || cp[i] == '\n'; }
    size_t wsrun(size_t i, size_t end) const { return std::min<size_t>(ws_end[i], end); }
};

inline bool ascii_lower_eq(uint32_t c, char lower) { return c == static_cast<uint32_t>(lower) || c + 32 == static_cast<uint32_t>(lower); }

// 's 't 're 've 'm 'll 'd at i (t.cp[i] == '\''); returns the end or i.
inline size_t bpe_contraction(const BpeText& t, size_t i, size_t end, bool any_case) {
    if (i + 1 >= end || t.cp[i] != '\'') return i;
    auto is = [&](size_t k, char c) { return any_case ? ascii_lower_eq(t.cp[k], c) : t.cp[k] == static_cast<uint32_t>(c); };
    if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return i + 2;
    if (i + 2 < end && ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
                        (is(i + 1, 'l') && is(i + 2, 'l'))))
        return i + 3;
    return i;
}

// \s*[\r\n]+|\s+(?!\S)|\s+ at a White_Space code point i.
inline size_t bpe_match_space_tail(const BpeText& t, size_t i, size_t end) {
    size_t e = t.wsrun(i, end);
    for (size_t k = e; k-- > i;)
        if (t.crlf(k)) return k + 1;
    if (e == end || e - i < 2) return e;
    return e - 1;
}

// DeepSeek LLM's letter class (the explicit ranges of its expression).
inline bool dsllm_letter(uint32_t c) {
    static const uint32_t r[][2] = {
        {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF},
        {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D}, {0x37F, 0x37F},
        {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
        {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA},
        {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15},
        {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
        {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
        {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
        {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107},
        {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126},
        {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
        {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4},
        {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F},
        {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
        {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
        {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
    };
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    // The ranges are sorted: binary search for the last one starting at or before c.
    size_t lo = 0, hi = sizeof r / sizeof r[0];
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid][0] <= c) lo = mid;
        else hi = mid;
    }
    return c >= r[lo][0] && c <= r[lo][1];
}

// Matches rule r at code point i of the piece [.., end); returns the end of
// the match, or i when the rule does not match there.
inline size_t bpe_rule_match(BpeRule r, const BpeText& t, size_t i, size_t end) {
    const uint32_t c = t.cp[i];
    const bool has_next = i + 1 < end;
    auto run = [&](size_t k, auto pred) {
        while (k < end && pred(k)) ++k;
        return k;
    };
    auto isL = [&](size_t k) { return t.L(k); };
    auto isN = [&](size_t k) { return t.N(k); };
    auto isOther = [&](size_t k) { return t.other(k); };
    switch (r) {
        case BpeRule::gpt2: {
            size_t e = bpe_contraction(t, i, end, false);
            if (e > i) return e;
            size_t p = (c == ' ' && has_next) ? i + 1 : i;
            if (t.L(p)) return run(p, isL);
            if (t.N(p)) return run(p, isN);
            if (t.other(p)) return run(p, isOther);
            if (t.WS(i)) {
                e = t.wsrun(i, end);
                if (e == end) return e;
                return e - i >= 2 ? e - 1 : i;
            }
            return i;
        }
        case BpeRule::llama3:
        case BpeRule::qwen2: {
            size_t e = bpe_contraction(t, i, end, true);
            if (e > i) return e;
            if (t.L(i)) return run(i, isL);
            if (!t.crlf(i) && !t.N(i) && has_next && t.L(i + 1)) return run(i + 1, isL);
            if (t.N(i)) {
                size_t lim = r == BpeRule::llama3 ? 3 : 1;
                size_t k = i;
                while (k < end && k - i < lim && t.N(k)) ++k;
                return k;
            }
            size_t p = (c == ' ' && has_next && t.other(i + 1)) ? i + 1 : i;
            if (t.other(p)) {
                size_t k = run(p, isOther);
                while (k < end && t.crlf(k)) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::gpt4o:
        case BpeRule::tekken: {
            // U: a letter other than a-z; W: a letter other than A-Z.
            auto U = [&](size_t k) { return t.L(k) && !(t.cp[k] >= 'a' && t.cp[k] <= 'z'); };
            auto W = [&](size_t k) { return t.L(k) && !(t.cp[k] >= 'A' && t.cp[k] <= 'Z'); };
            const bool contr = r == BpeRule::gpt4o;
            size_t p = (!t.crlf(i) && !t.L(i) && !t.N(i) && has_next && t.L(i + 1)) ? i + 1 : i;
            if (t.L(p)) {
                size_t q = run(p, isL);
                size_t u = p;
                while (u < q && U(u)) ++u;
                for (size_t k = u;; --k) {
                    if (k < q && W(k)) {
                        size_t e = k;
                        while (e < q && W(e)) ++e;
                        return contr ? bpe_contraction(t, e, end, true) : e;
                    }
                    if (k == p) break;
                }
                if (u > p) {
                    size_t e = u;
                    while (e < q && W(e)) ++e;
                    return contr ? bpe_contraction(t, e, end, true) : e;
                }
            }
            if (t.N(i)) {
                size_t lim = r == BpeRule::gpt4o ? 3 : 1;
                size_t k = i;
                while (k < end && k - i < lim && t.N(k)) ++k;
                return k;
            }
            p = (c == ' ' && has_next && t.other(i + 1)) ? i + 1 : i;
            if (t.other(p)) {
                size_t k = run(p, isOther);
                while (k < end && (t.crlf(k) || t.cp[k] == '/')) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::deepseek3: {
            // llama.cpp matches \p{S} on ASCII as [$+<=>^`|]: '~' is no symbol here.
            auto PS = [&](size_t k) { return (t.P(k) || t.S(k)) && t.cp[k] != '~'; };
            auto LM = [&](size_t k) { return t.L(k) || t.M(k); };
            auto ascii_alpha = [&](size_t k) { return (t.cp[k] >= 'A' && t.cp[k] <= 'Z') || (t.cp[k] >= 'a' && t.cp[k] <= 'z'); };
            bool ascii_punct = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                               (c >= 0x7B && c <= 0x7E);
            if (ascii_punct && has_next && ascii_alpha(i + 1)) return run(i + 1, ascii_alpha);
            if (LM(i)) return run(i, LM);
            if (!t.crlf(i) && !t.L(i) && !PS(i) && has_next && LM(i + 1)) return run(i + 1, LM);
            size_t p = (c == ' ' && has_next && PS(i + 1)) ? i + 1 : i;
            if (PS(p)) {
                size_t k = run(p, PS);
                while (k < end && t.crlf(k)) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::digit: return t.N(i) ? i + 1 : i;
        case BpeRule::digits3: {
            size_t k = i;
            while (k < end && k - i < 3 && t.N(k)) ++k;
            return k;
        }
        case BpeRule::digits: return run(i, isN);
        case BpeRule::ascii_digits3: {
            auto d = [&](size_t k) { return t.cp[k] >= '0' && t.cp[k] <= '9'; };
            return (i + 2 < end && d(i) && d(i + 1) && d(i + 2)) ? i + 3 : i;
        }
        case BpeRule::newline: return t.crlf(i) ? i + 1 : i;
        case BpeRule::ws_letters:
        case BpeRule::ws_punct:
        case BpeRule::dsllm_letters:
        case BpeRule::dsllm_punct: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                switch (r) {
                    case BpeRule::ws_letters: return t.L(k);
                    case BpeRule::ws_punct: return t.P(k);
                    case BpeRule::dsllm_letters: return dsllm_letter(x);
                    default:
                        // U+3000 is White_Space, which llama.cpp turns into \v before matching.
                        return (x >= 0x21 && x <= 0x2F) || (x >= 0x3A && x <= 0x7E) || (x >= 0xFF01 && x <= 0xFF0F) ||
                               (x >= 0xFF1A && x <= 0xFF5E) || (x >= 0x2018 && x <= 0x201F) || (x >= 0x3001 && x <= 0x3002);
                }
            };
            size_t p = (t.WS(i) && has_next && in(i + 1)) ? i + 1 : i;
            return in(p) ? run(p, in) : i;
        }
        case BpeRule::trailing_space: return (t.WS(i) && t.wsrun(i, end) == end) ? end : i;
        case BpeRule::cjk:
        case BpeRule::cjk_kana: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                if (x >= 0x4E00 && x <= 0x9FA5) return true;
                if (r == BpeRule::cjk) return ((x >= 0x0800 && x <= 0x4E00) || (x >= 0xAC00 && x <= 0xD7FF)) && !t.WS(k);
                return x >= 0x3040 && x <= 0x30FF;
            };
            return run(i, in);
        }
        case BpeRule::punct_default:
        case BpeRule::punct_falcon: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                return t.P(k) || x == '$' || x == '+' || x == '<' || x == '=' || x == '>' || x == '^' || x == '~' ||
                       x == '|' || (r == BpeRule::punct_falcon && x == '`');
            };
            return run(i, in);
        }
        case BpeRule::bloom: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                return !(t.WS(k) || x == '(' || x == ')' || x == '|' || x == '.' || x == ',' || x == '!' || x == '?' ||
                         x == 0x2026 || x == 0x3002 || x == 0xFF0C || x == 0x3001 || x == 0x0964 || x == 0x06D4 ||
                         x == 0x060C);
            };
            size_t p = (c == ' ' && has_next && in(i + 1)) ? i + 1 : i;
            return in(p) ? run(p, in) : i;
        }
    }
    return i;
}

// Splits text into pre-tokens (byte ranges [first, second)) with the rules of
// pre-tokenizer `pre`.
inline void bpe_pre_tokenize(int pre, std::string_view text, BpeText& t,
                             std::vector<std::pair<uint32_t, uint32_t>>& words) {
    const BpePreTokenizer& pt = bpe_pre_tokenizers()[static_cast<size_t>(pre)];
    t.assign(text);
    std::vector<std::pair<uint32_t, uint32_t>> cur(1, {0u, static_cast<uint32_t>(t.n)}), next;
    if (t.n == 0) cur.clear();
    for (int ri = 0; ri < pt.n_rules; ++ri) {
        next.clear();
        for (const auto& piece : cur) {
            size_t i = piece.first, end = piece.second, gap = i;
            while (i < end) {
                size_t e = bpe_rule_match(pt.rules[ri], t, i, end);
                if (e > i) {
                    if (gap < i) next.push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(i)});
                    next.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(e)});
                    i = gap = e;
                } else {
                    ++i;
                }
            }
            if (gap < end) next.push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(end)});
        }
        cur.swap(next);
    }
    words.clear();
    for (const auto& piece : cur) words.push_back({t.off[piece.first], t.off[piece.second]});
}

inline uint64_t bpe_pair_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}
inline size_t bpe_pair_slot(uint64_t key, size_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h ^ (h >> 31)) & mask;
}

// The merge of tokens l and r: its rank (-1 if none) and the merged token.
inline int32_t bpe_find_merge(const Vocab& v, int32_t l, int32_t r, int32_t* merged) {
    if (v.merge_keys.empty() || l < 0 || r < 0) return -1;
    uint64_t key = bpe_pair_key(l, r);
    size_t mask = v.merge_keys.size() - 1;
    for (size_t i = bpe_pair_slot(key, mask);; i = (i + 1) & mask) {
        uint64_t k = v.merge_keys[i];
        if (k == key) {
            *merged = v.merge_result[i];
            return v.merge_rank[i];
        }
        if (k == ~0ull) return -1;
    }
}

// Builds the BPE part of a vocabulary: pre-tokenizer, byte tokens, merge table.
inline Status bpe_init(Vocab& v) {
    v.is_bpe = true;
    std::string pre = v.pre.empty() ? "default" : v.pre;
    v.pre_index = bpe_find_pre(pre);
    if (v.pre_index < 0) {
        if (!v.unknown_pre_as_default)
            return error(StatusCode::unsupported,
                         "BPE pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported; set "
                         "ModelParams::bpe_unknown_pre_as_default to use the 'default' rules instead",
                         pre.c_str());
        log_msg(LogLevel::warn, "unknown BPE pre-tokenizer '%s': using 'default'", pre.c_str());
        v.pre_index = bpe_find_pre("default");
    }
    v.ignore_merges = bpe_pre_tokenizers()[static_cast<size_t>(v.pre_index)].ignore_merges;
    std::string ch;
    for (int b = 0; b < 256; ++b) {
        ch.clear();
        utf8_append(ch, bpe_byte_to_cp(static_cast<unsigned char>(b)));
        // Only normal tokens: some vocabularies add user-defined tokens with the
        // characters of bytes that never occur in UTF-8 (C0, C1, F5-FF); those
        // render as their text, so they cannot stand for a raw byte.
        int32_t id = v.find(ch);
        v.bpe_byte_token[b] = (id >= 0 && v.type[static_cast<size_t>(id)] == Vocab::normal) ? id : -1;
    }
    if (v.merges.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "too many BPE merges (%zu)", v.merges.size());
    size_t cap = 16;
    while (cap < 2 * v.merges.size()) cap *= 2;
    v.merge_keys.assign(cap, ~0ull);
    v.merge_rank.assign(cap, -1);
    v.merge_result.assign(cap, -1);
    std::string joined;
    size_t skipped = 0;
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
        const std::string& m = v.merges[rank];
        size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
        if (sp == std::string::npos)
            return error(StatusCode::bad_format, "BPE merge %zu ('%.60s') is not two tokens separated by a space", rank,
                         m.c_str());
        std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
        int32_t l = v.find(a), r = v.find(b);
        joined.assign(a.data(), a.size());
        joined.append(b.data(), b.size());
        int32_t res = v.find(joined);
        if (l < 0 || r < 0 || res < 0) {
            ++skipped;  // such a merge can never apply to tokens
            continue;
        }
        uint64_t key = bpe_pair_key(l, r);
        size_t mask = cap - 1;
        for (size_t i = bpe_pair_slot(key, mask);; i = (i + 1) & mask) {
            if (v.merge_keys[i] == key) break;  // a repeated merge keeps its first rank
            if (v.merge_keys[i] == ~0ull) {
                v.merge_keys[i] = key;
                v.merge_rank[i] = static_cast<int32_t>(rank);
                v.merge_result[i] = res;
                break;
            }
        }
    }
    if (skipped) log_msg(LogLevel::debug, "%zu BPE merges name texts that are not tokens; ignored", skipped);
    return Status();
}

// Validates the fields of `v` (text, score, type, special ids, model) and builds
// its indexes. load_vocab calls it; tests may fill a Vocab by hand and call it.
// SentencePiece merges only join neighbours whose joined text is a token, so a
// text can be cut at a point that no token can span, and the pieces merged
// independently give the same tokens as the whole. A token spanning the point
// just before a U+2581 holds that U+2581 after its first byte; such tokens are
// found here. Runs of U+2581 (tokens for indentation) are handled by never
// cutting between two U+2581; any other such token blocks the cut points
// inside each of its occurrences. With too many of them the text is not cut.
inline void spm_init_split(Vocab& v) {
    static const char kSpace[] = "\xE2\x96\x81";
    v.spm_split = false;
    v.spm_space_runs = false;
    v.spm_cross.clear();
    for (size_t id = 0; id < v.text.size(); ++id) {
        std::string_view t = v.text[id];
        if (t.size() < 4 || t.find(kSpace, 1) == std::string_view::npos) continue;
        bool run = t.size() % 3 == 0;
        for (size_t k = 0; run && k < t.size(); k += 3) run = t.compare(k, 3, kSpace) == 0;
        if (run) v.spm_space_runs = true;
        else v.spm_cross.push_back(static_cast<int32_t>(id));
    }
    v.spm_split = v.spm_cross.size() <= 64;
    if (!v.spm_split) v.spm_cross.clear();
}

inline Status init_vocab(Vocab& v) {
    v.ready = false;
    v.is_bpe = false;
    if (v.model != "llama" && v.model != "gpt2") {
        if (v.model.empty()) return error(StatusCode::bad_format, "tokenizer model is not set (tokenizer.ggml.model)");
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported (only 'llama', the SentencePiece tokenizer, and "
                     "'gpt2', byte-level BPE)",
                     v.model.c_str());
    }
    size_t n = v.text.size();
    if (n == 0) return error(StatusCode::bad_format, "the vocabulary is empty (tokenizer.ggml.tokens has no entries)");
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "the vocabulary has too many tokens (%zu)", n);
    if (v.score.empty()) v.score.assign(n, 0.0f);
    if (v.type.empty()) v.type.assign(n, Vocab::normal);
    if (v.score.size() != n)
        return error(StatusCode::bad_format, "tokenizer.ggml.scores has %zu entries but there are %zu tokens",
                     v.score.size(), n);
    if (v.type.size() != n)
        return error(StatusCode::bad_format, "tokenizer.ggml.token_type has %zu entries but there are %zu tokens",
                     v.type.size(), n);
    const struct { const char* what; int32_t id; } ids[] = {
        {"BOS", v.bos}, {"EOS", v.eos}, {"UNK", v.unk}, {"EOT", v.eot}, {"EOM", v.eom}, {"PAD", v.pad}};
    for (const auto& s : ids) {
        if (s.id < -1 || s.id >= static_cast<int32_t>(n))
            return error(StatusCode::bad_format, "%s token id %d is out of range (the vocabulary has %zu tokens)",
                         s.what, s.id, n);
    }

    // Text -> id hash table, at most half full.
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    v.slots.assign(cap, -1);
    size_t mask = cap - 1;
    for (size_t id = 0; id < n; ++id) {
        for (size_t i = static_cast<size_t>(vocab_hash(v.text[id])) & mask;; i = (i + 1) & mask) {
            int32_t cur = v.slots[i];
            if (cur < 0 || v.text[static_cast<size_t>(cur)] == v.text[id]) {
                v.slots[i] = static_cast<int32_t>(id);
                break;
            }
        }
    }

    // End of generation. An end-of-turn-looking token that is not marked as
    // control is made control, as llama.cpp does.
    v.flags.assign(n, 0);
    if (v.eot < 0) v.eot = vocab_find_eot(v);
    if (v.eom < 0) v.eom = v.find("<|eom_id|>");
    for (size_t id = 0; id < n; ++id) {
        if (vocab_is_eog_text(v.text[id])) {
            v.flags[id] |= Vocab::flag_eog;
            if (v.type[id] != Vocab::control) {
                log_msg(LogLevel::warn, "token %zu '%s' looks like a control token but is not marked so; treating it as control",
                        id, v.text[id].c_str());
                v.type[id] = Vocab::control;
            }
        }
    }
    for (int32_t id : {v.eos, v.eot, v.eom})
        if (id >= 0) v.flags[static_cast<size_t>(id)] |= Vocab::flag_eog;

    // Tokens matched in the text before the SPM split, longest first.
    v.specials.clear();
    for (size_t id = 0; id < n; ++id) {
        int32_t t = v.type[id];
        if ((t == Vocab::control || t == Vocab::user_defined || t == Vocab::unknown) && !v.text[id].empty())
            v.specials.push_back(static_cast<int32_t>(id));
    }
    std::stable_sort(v.specials.begin(), v.specials.end(), [&](int32_t a, int32_t b) {
        return v.text[static_cast<size_t>(a)].size() > v.text[static_cast<size_t>(b)].size();
    });
    // Phi-3's special tokens swallow the whitespace that follows them (as in llama.cpp).
    if (v.name.find("phi-3") != std::string::npos || v.name.find("phi3") != std::string::npos) {
        for (int32_t id : v.specials) v.flags[static_cast<size_t>(id)] |= Vocab::flag_rstrip;
        int32_t eos_text = v.find("</s>");
        if (eos_text >= 0) v.flags[static_cast<size_t>(eos_text)] |= Vocab::flag_rstrip;
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
            int32_t id = v.find(t);
            if (id >= 0) v.flags[static_cast<size_t>(id)] &= static_cast<uint8_t>(~Vocab::flag_rstrip);
        }
    }

    // Byte tokens: <0xNN> -> NN, and the reverse table for byte fallback.
    v.byte_value.assign(n, -1);
    for (size_t id = 0; id < n; ++id) {
        const std::string& t = v.text[id];
        if (v.type[id] == Vocab::byte && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
            int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
            if (hi >= 0 && lo >= 0) v.byte_value[id] = static_cast<int16_t>(hi * 16 + lo);
        }
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = v.find(name);
        if (id < 0) {
            char c = static_cast<char>(b);
            id = v.find(std::string_view(&c, 1));
        }
        v.byte_token[b] = id;
    }
    if (v.model == "gpt2") {
        Status st = bpe_init(v);
        if (!st.ok()) return st;
    } else {
        spm_init_split(v);
    }
    v.ready = true;
    return Status();
}

// Reads the tokenizer.ggml.* keys of a GGUF file (a vocab-only file works too).
// With unknown_pre_as_default, a BPE vocabulary whose tokenizer.ggml.pre is not
// known gets llama.cpp's "default" pre-tokenizer instead of an error.
inline Status load_vocab(const GgufFile& f, Vocab& v, bool unknown_pre_as_default = false) {
    v = Vocab();
    v.unknown_pre_as_default = unknown_pre_as_default;
    Status st;
    std::string_view sv;
    if (!f.get_string("tokenizer.ggml.model", sv, st)) {
        if (!st.ok()) return st;
        return error(StatusCode::bad_format, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    }
    v.model.assign(sv.data(), sv.size());
    if (v.model != "llama" && v.model != "gpt2")
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported (only 'llama', the SentencePiece tokenizer, and "
                     "'gpt2', byte-level BPE)",
                     v.model.c_str());
    const bool bpe = v.model == "gpt2";
    if (bpe) {
        if (f.get_string("tokenizer.ggml.pre", sv, st)) v.pre.assign(sv.data(), sv.size());
        if (!st.ok()) return st;
        const GgufKV* merges = f.get_array("tokenizer.ggml.merges", st);
        if (!st.ok()) return st;
        if (!merges) return error(StatusCode::bad_format, "BPE vocabulary without merges (tokenizer.ggml.merges is missing)");
        if (merges->elem != GgufType::string)
            return error(StatusCode::bad_format, "tokenizer.ggml.merges should be an array of strings but holds %s",
                         gguf_type_name(merges->elem));
        v.merges.reserve(merges->strings.size());
        for (std::string_view m : merges->strings) v.merges.emplace_back(m.data(), m.size());
        // llama.cpp's defaults for BPE: no space prefix, BOS only for the
        // pre-tokenizers that want it, no UNK.
        v.add_space_prefix = false;
        int pre = bpe_find_pre(v.pre.empty() ? "default" : v.pre);
        v.add_bos = pre >= 0 && bpe_pre_tokenizers()[static_cast<size_t>(pre)].add_bos;
    }
    if (f.get_string("general.name", sv, st)) {
        v.name.assign(sv.data(), sv.size());
        for (char& c : v.name)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    st = Status();

    const GgufKV* tokens = f.get_array("tokenizer.ggml.tokens", st);
    if (!st.ok()) return st;
    if (!tokens) return error(StatusCode::bad_format, "tokenizer.ggml.tokens is missing");
    if (tokens->elem != GgufType::string)
        return error(StatusCode::bad_format, "tokenizer.ggml.tokens should be an array of strings but holds %s",
                     gguf_type_name(tokens->elem));
    size_t n = tokens->strings.size();
    if (n == 0) return error(StatusCode::bad_format, "the vocabulary is empty (tokenizer.ggml.tokens has no entries)");
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "the vocabulary has too many tokens (%zu)", n);
    v.text.reserve(n);
    for (std::string_view s : tokens->strings) v.text.emplace_back(s.data(), s.size());

    auto numeric = [](GgufType t) { return gguf_scalar_size(t) != 0 && t != GgufType::boolean; };
    if (const GgufKV* scores = f.get_array("tokenizer.ggml.scores", st)) {
        if (!numeric(scores->elem))
            return error(StatusCode::bad_format, "tokenizer.ggml.scores should be an array of numbers but holds %s",
                         gguf_type_name(scores->elem));
        if (scores->length != n)
            return error(StatusCode::bad_format, "tokenizer.ggml.scores has %llu entries but there are %zu tokens",
                         (unsigned long long)scores->length, n);
        v.score.resize(n);
        for (size_t i = 0; i < n; ++i) v.score[i] = static_cast<float>(GgufFile::array_number(*scores, i));
    }
    if (!st.ok()) return st;
    if (const GgufKV* types = f.get_array("tokenizer.ggml.token_type", st)) {
        if (!numeric(types->elem) || types->elem == GgufType::f32 || types->elem == GgufType::f64)
            return error(StatusCode::bad_format, "tokenizer.ggml.token_type should be an array of integers but holds %s",
                         gguf_type_name(types->elem));
        if (types->length != n)
            return error(StatusCode::bad_format, "tokenizer.ggml.token_type has %llu entries but there are %zu tokens",
                         (unsigned long long)types->length, n);
        v.type.resize(n);
        for (size_t i = 0; i < n; ++i) {
            int64_t t = GgufFile::array_int(*types, i);
            v.type[i] = (t >= 0 && t <= 6) ? static_cast<int32_t>(t) : static_cast<int32_t>(Vocab::undefined);
        }
    }
    if (!st.ok()) return st;

    // Special ids. SentencePiece defaults: UNK 0, BOS 1, EOS 2. An id outside the
    // vocabulary (often 0xFFFFFFFF for "none") is ignored with a warning and the
    // default is kept, as llama.cpp does.
    v.unk = n > 0 ? 0 : -1;
    v.bos = n > 1 ? 1 : -1;
    v.eos = n > 2 ? 2 : -1;
    if (bpe) {  // llama.cpp's BPE defaults
        v.unk = -1;
        v.bos = v.eos = n > 11 ? 11 : -1;
    }
    const struct { const char* key; int32_t* dst; } keys[] = {
        {"tokenizer.ggml.bos_token_id", &v.bos},     {"tokenizer.ggml.eos_token_id", &v.eos},
        {"tokenizer.ggml.unknown_token_id", &v.unk}, {"tokenizer.ggml.eot_token_id", &v.eot},
        {"tokenizer.ggml.eom_token_id", &v.eom},     {"tokenizer.ggml.padding_token_id", &v.pad},
    };
    for (const auto& k : keys) {
        int64_t id;
        if (!f.get_int(k.key, id, st)) {
            if (!st.ok()) return st;
            continue;
        }
        if (id < 0 || id >= static_cast<int64_t>(n)) {
            log_msg(LogLevel::warn, "%s = %lld is not a token id (the vocabulary has %zu tokens); using %d", k.key,
                    (long long)id, n, *k.dst);
            continue;
        }
        *k.dst = static_cast<int32_t>(id);
    }
    const struct { const char* key; bool* dst; } bools[] = {
        {"tokenizer.ggml.add_bos_token", &v.add_bos},
        {"tokenizer.ggml.add_eos_token", &v.add_eos},
        {"tokenizer.ggml.add_space_prefix", &v.add_space_prefix},
    };
    for (const auto& b : bools) {
        f.get_bool(b.key, *b.dst, st);
        if (!st.ok()) return st;
    }
    return init_vocab(v);
}

// ---------------------------------------------------------------------------
// SentencePiece (BPE mode) tokenization.
// ---------------------------------------------------------------------------

// Length of the UTF-8 character at s[i]: 1 for ASCII and for any byte that does
// not start a complete sequence (those go through byte fallback one by one).
inline size_t utf8_char_at(std::string_view s, size_t i) {
    size_t len = static_cast<size_t>(utf8_len(static_cast<unsigned char>(s[i])));
    if (len == 1 || i + len > s.size()) return 1;
    for (size_t k = 1; k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
    return len;
}

struct SpmSymbol {
    int32_t prev, next;
    uint32_t off, n;  // bytes [off, off+n) of the piece; n = 0 once merged away
    int32_t id;       // token of a merged symbol; -1 for a single character (looked up at the end)
};
struct SpmBigram {
    float score;
    int32_t left, right;
    uint32_t size;
    int32_t id;
};
// Highest score first; on equal scores the leftmost pair first.
struct SpmBigramOrder {
    bool operator()(const SpmBigram& a, const SpmBigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

// The tokens of the short SentencePiece pieces seen so far in one tokenize
// call (words repeat a lot in real text, and a piece's tokens depend on its
// bytes only).
struct PieceCache {
    struct Entry {
        uint64_t hash;
        uint32_t key_off, key_len, ids_off, ids_len;
    };
    static constexpr size_t kMaxKey = 64;             // longer pieces are not cached
    static constexpr size_t kMaxEntries = size_t(1) << 16;
    std::vector<uint32_t> slots;  // open addressing: entry index + 1, 0 = empty
    std::vector<Entry> entries;
    std::string keys;
    std::vector<int32_t> ids;

    // Appends the cached tokens of `key` (hash h) to out; false if not cached.
    bool get(std::string_view key, uint64_t h, std::vector<int32_t>& out) const {
        if (slots.empty()) return false;
        size_t mask = slots.size() - 1;
        for (size_t i = static_cast<size_t>(h) & mask;; i = (i + 1) & mask) {
            uint32_t e = slots[i];
            if (e == 0) return false;
            const Entry& c = entries[e - 1];
            if (c.hash == h && c.key_len == key.size() &&
                std::memcmp(keys.data() + c.key_off, key.data(), key.size()) == 0) {
                out.insert(out.end(), ids.begin() + c.ids_off, ids.begin() + c.ids_off + c.ids_len);
                return true;
            }
        }
    }
    void put(std::string_view key, uint64_t h, const int32_t* tok, size_t n_tok) {
        if (entries.size() >= kMaxEntries) return;
        if (2 * (entries.size() + 1) > slots.size()) {
            size_t cap = slots.empty() ? 1024 : slots.size() * 2;
            slots.assign(cap, 0);
            for (size_t k = 0; k < entries.size(); ++k) place(entries[k].hash, static_cast<uint32_t>(k + 1));
        }
        entries.push_back({h, static_cast<uint32_t>(keys.size()), static_cast<uint32_t>(key.size()),
                           static_cast<uint32_t>(ids.size()), static_cast<uint32_t>(n_tok)});
        keys.append(key.data(), key.size());
        ids.insert(ids.end(), tok, tok + n_tok);
        place(h, static_cast<uint32_t>(entries.size()));
    }

private:
    void place(uint64_t h, uint32_t entry) {
        size_t mask = slots.size() - 1;
        size_t i = static_cast<size_t>(h) & mask;
        while (slots[i] != 0) i = (i + 1) & mask;
        slots[i] = entry;
    }
};

// Buffers reused across the pieces of one text.
struct SpmScratch {
    std::vector<SpmSymbol> sym;
    std::vector<SpmBigram> heap;
    std::vector<uint8_t> blocked;  // 1 where a cut is forbidden (occurrences of Vocab::spm_cross tokens)
    PieceCache cache;
};

// Tokenizes one piece of text whose spaces are already written as U+2581:
// SentencePiece's BPE, which repeatedly joins the neighbouring pair whose
// joined text is the token with the highest score (the leftmost on ties).
inline Status spm_tokenize_piece(const Vocab& v, std::string_view text, SpmScratch& s, std::vector<int32_t>& out) {
    if (text.empty()) return Status();
    std::vector<SpmSymbol>& sym = s.sym;
    sym.clear();
    for (size_t off = 0; off < text.size();) {
        size_t len = utf8_char_at(text, off);
        int32_t idx = static_cast<int32_t>(sym.size());
        sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, static_cast<uint32_t>(off),
                       static_cast<uint32_t>(len), -1});
        off += len;
    }

    std::vector<SpmBigram>& heap = s.heap;
    heap.clear();
    SpmBigramOrder order;
    auto try_pair = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const SpmSymbol& l = sym[static_cast<size_t>(left)];
        const SpmSymbol& r = sym[static_cast<size_t>(right)];
        std::string_view piece = text.substr(l.off, l.n + r.n);
        int32_t id = v.find(piece);
        if (id < 0) return;
        heap.push_back({v.score[static_cast<size_t>(id)], left, right, static_cast<uint32_t>(piece.size()), id});
        std::push_heap(heap.begin(), heap.end(), order);
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), order);
        SpmBigram b = heap.back();
        heap.pop_back();
        SpmSymbol& l = sym[static_cast<size_t>(b.left)];
        SpmSymbol& r = sym[static_cast<size_t>(b.right)];
        // Stale: one side was merged into something else since the pair was
        // queued (sizes only grow, so equal sizes mean unchanged symbols).
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        l.id = b.id;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
        try_pair(l.prev, b.left);
        try_pair(b.left, l.next);
    }

    for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
        const SpmSymbol& x = sym[static_cast<size_t>(i)];
        std::string_view piece = text.substr(x.off, x.n);
        int32_t id = x.id >= 0 ? x.id : v.find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Not a token: one byte token per byte, or UNK when a byte has no token.
        bool bytes_ok = true;
        for (char c : piece) bytes_ok = bytes_ok && v.byte_token[static_cast<unsigned char>(c)] >= 0;
        if (bytes_ok) {
            for (char c : piece) out.push_back(v.byte_token[static_cast<unsigned char>(c)]);
        } else if (v.unk >= 0) {
            out.push_back(v.unk);
        } else {
            return error(StatusCode::invalid_argument,
                         "the text holds a character (first byte 0x%02X) that the vocabulary cannot encode: "
                         "it has neither byte tokens nor an unknown token",
                         static_cast<unsigned>(static_cast<unsigned char>(piece[0])));
        }
    }
    return Status();
}

// A piece through the cache.
inline Status spm_tokenize_cached(const Vocab& v, std::string_view piece, SpmScratch& s, std::vector<int32_t>& out) {
    if (piece.size() > PieceCache::kMaxKey) return spm_tokenize_piece(v, piece, s, out);
    uint64_t h = vocab_hash(piece);
    if (s.cache.get(piece, h, out)) return Status();
    size_t before = out.size();
    Status st = spm_tokenize_piece(v, piece, s, out);
    if (st.ok()) s.cache.put(piece, h, out.data() + before, out.size() - before);
    return st;
}

// Tokenizes a text whose spaces are already written as U+2581: cut before each
// U+2581 that no token can span (see spm_init_split), each piece merged alone.
// A cut there is also a character boundary: utf8_char_at never lets a
// character run into the 0xE2 that starts U+2581, which is not a continuation byte.
inline Status spm_tokenize_text(const Vocab& v, std::string_view text, SpmScratch& s, std::vector<int32_t>& out) {
    if (!v.spm_split) return spm_tokenize_piece(v, text, s, out);
    static const char kSpace[] = "\xE2\x96\x81";
    s.blocked.clear();
    if (!v.spm_cross.empty()) {
        s.blocked.assign(text.size(), 0);
        for (int32_t id : v.spm_cross) {
            std::string_view t = v.text[static_cast<size_t>(id)];
            for (size_t pos = text.find(t); pos != std::string_view::npos; pos = text.find(t, pos + 1))
                for (size_t k = t.find(kSpace, 1); k != std::string_view::npos; k = t.find(kSpace, k + 1))
                    s.blocked[pos + k] = 1;
        }
    }
    size_t start = 0;
    for (size_t p = text.find(kSpace, 1); p != std::string_view::npos; p = text.find(kSpace, p + 3)) {
        if (v.spm_space_runs && p >= 3 && text.compare(p - 3, 3, kSpace) == 0) continue;
        if (!s.blocked.empty() && s.blocked[p]) continue;
        if (p == start) continue;
        Status st = spm_tokenize_cached(v, text.substr(start, p - start), s, out);
        if (!st.ok()) return st;
        start = p;
    }
    return spm_tokenize_cached(v, text.substr(start), s, out);
}

inline bool is_space_byte(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// A run of the input: a token found by special-token matching (id >= 0) or raw text.
struct TextFragment {
    int32_t id;
    size_t off, len;
};

// Splits text at every occurrence of a special token's text, longest tokens
// first. Control and unknown tokens are only matched with parse_special;
// user-defined tokens always are.
inline void split_special(const Vocab& v, std::string_view text, bool parse_special, std::vector<TextFragment>& frags) {
    frags.assign(1, TextFragment{-1, 0, text.size()});
    std::vector<TextFragment> next;
    for (int32_t sid : v.specials) {
        int32_t t = v.type[static_cast<size_t>(sid)];
        if (!parse_special && (t == Vocab::control || t == Vocab::unknown)) continue;
        const std::string& st = v.text[static_cast<size_t>(sid)];
        if (text.find(st) == std::string_view::npos) continue;
        uint8_t fl = v.flags[static_cast<size_t>(sid)];
        next.clear();
        for (const TextFragment& fr : frags) {
            if (fr.id >= 0) {
                next.push_back(fr);
                continue;
            }
            size_t base = fr.off, len = fr.len;
            while (len > 0) {
                size_t m = text.substr(base, len).find(st);
                if (m == std::string_view::npos) {
                    next.push_back({-1, base, len});
                    break;
                }
                size_t left = m;
                if (fl & Vocab::flag_lstrip)
                    while (left > 0 && is_space_byte(text[base + left - 1])) --left;
                if (left > 0) next.push_back({-1, base, left});
                next.push_back({sid, base + m, st.size()});
                size_t roff = base + m + st.size(), rlen = len - m - st.size();
                if (fl & Vocab::flag_rstrip)
                    while (rlen > 0 && is_space_byte(text[roff])) { ++roff; --rlen; }
                base = roff;
                len = rlen;
            }
        }
        frags.swap(next);
    }
}

// ---------------------------------------------------------------------------
// Byte-level BPE tokenization.
// ---------------------------------------------------------------------------

struct BpeSymbol {
    int32_t id;          // token of the bytes so far, -1 if none
    int32_t prev, next;
    uint32_t off, n;     // bytes [off, off+n) of the word; n = 0 once merged away
};
struct BpePair {
    int32_t rank, left, right, left_id, right_id, merged;
};
// Lowest rank first; on equal ranks the leftmost pair first.
struct BpePairOrder {
    bool operator()(const BpePair& a, const BpePair& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

struct BpeScratch {
    BpeText text;
    std::vector<std::pair<uint32_t, uint32_t>> words;
    std::vector<BpeSymbol> sym;
    std::vector<BpePair> heap;
    std::string enc;
};

// Merges one pre-token (raw bytes) and appends its tokens.
inline void bpe_tokenize_word(const Vocab& v, std::string_view word, BpeScratch& s, std::vector<int32_t>& out) {
    if (word.size() == 1) {
        int32_t id = v.bpe_byte_token[static_cast<unsigned char>(word[0])];
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    if (v.ignore_merges) {
        s.enc.clear();
        bpe_encode_bytes(word, s.enc);
        int32_t id = v.find(s.enc);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    std::vector<BpeSymbol>& sym = s.sym;
    sym.clear();
    for (size_t i = 0; i < word.size(); ++i) {
        int32_t idx = static_cast<int32_t>(i);
        sym.push_back({v.bpe_byte_token[static_cast<unsigned char>(word[i])], idx - 1,
                       i + 1 == word.size() ? -1 : idx + 1, static_cast<uint32_t>(i), 1u});
    }
    std::vector<BpePair>& heap = s.heap;
    heap.clear();
    BpePairOrder order;
    auto try_pair = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        int32_t lid = sym[static_cast<size_t>(l)].id, rid = sym[static_cast<size_t>(r)].id, merged = -1;
        int32_t rank = bpe_find_merge(v, lid, rid, &merged);
        if (rank < 0) return;
        heap.push_back({rank, l, r, lid, rid, merged});
        std::push_heap(heap.begin(), heap.end(), order);
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), order);
        BpePair p = heap.back();
        heap.pop_back();
        BpeSymbol& l = sym[static_cast<size_t>(p.left)];
        BpeSymbol& r = sym[static_cast<size_t>(p.right)];
        // Stale: a side was merged since the pair was queued (ids only grow, so
        // equal ids mean unchanged symbols).
        if (l.n == 0 || r.n == 0 || l.next != p.right || l.id != p.left_id || r.id != p.right_id) continue;
        l.n += r.n;
        l.id = p.merged;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = p.left;
        try_pair(l.prev, p.left);
        try_pair(p.left, l.next);
    }
    for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
        const BpeSymbol& x = sym[static_cast<size_t>(i)];
        if (x.id >= 0) {
            out.push_back(x.id);
            continue;
        }
        // Not a token (cannot happen after bpe_tokenize_text's byte check): as
        // llama.cpp, emit the single-character tokens of its text that exist.
        s.enc.clear();
        bpe_encode_bytes(word.substr(x.off, x.n), s.enc);
        for (char ch : s.enc) {
            int32_t id = v.find(std::string_view(&ch, 1));
            if (id >= 0) out.push_back(id);
        }
    }
}

// Tokenizes a run of raw text (no special tokens in it). A byte whose
// character is not a token cannot be encoded: an error (llama.cpp drops such
// bytes silently; some vocabularies lack e.g. control bytes or 0xF1).
inline Status bpe_tokenize_text(const Vocab& v, std::string_view text, BpeScratch& s, std::vector<int32_t>& out) {
    for (size_t i = 0; i < text.size(); ++i) {
        unsigned char b = static_cast<unsigned char>(text[i]);
        if (v.bpe_byte_token[b] < 0)
            return error(StatusCode::invalid_argument,
                         "the text holds byte 0x%02X (at offset %zu of a text run) that the vocabulary cannot encode: "
                         "its byte-level BPE has no token for that byte",
                         static_cast<unsigned>(b), i);
    }
    bpe_pre_tokenize(v.pre_index, text, s.text, s.words);
    for (const auto& w : s.words) bpe_tokenize_word(v, text.substr(w.first, w.second - w.first), s, out);
    return Status();
}

// Text -> ids; `out` is replaced. add_special adds BOS (when add_bos) and EOS
// (when add_eos). Every run of raw text that starts the input or follows a
// special token gets a leading space when add_space_prefix is set; the empty
// text gives no tokens besides BOS/EOS.
inline Status tokenize(const Vocab& v, std::string_view text, bool add_special, bool parse_special,
                       std::vector<int32_t>& out) {
    out.clear();
    if (!v.ready) return error(StatusCode::invalid_argument, "the vocabulary is not loaded");
    if (text.size() > (size_t(1) << 29))
        return error(StatusCode::invalid_argument, "text of %zu bytes is too long to tokenize", text.size());
    if (add_special && v.add_bos && v.bos >= 0) out.push_back(v.bos);
    if (!text.empty()) {
        std::vector<TextFragment> frags;
        split_special(v, text, parse_special, frags);
        static const char kSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's space
        std::string piece;
        bool prev_special = true;
        BpeScratch bpe;
        SpmScratch spm;
        for (const TextFragment& fr : frags) {
            if (fr.id >= 0) {
                out.push_back(fr.id);
                prev_special = true;
                continue;
            }
            if (v.is_bpe) {
                Status st = bpe_tokenize_text(v, text.substr(fr.off, fr.len), bpe, out);
                if (!st.ok()) {
                    out.clear();
                    return st;
                }
                continue;
            }
            piece.clear();
            if (v.add_space_prefix && prev_special) piece += kSpace;
            for (char c : text.substr(fr.off, fr.len)) {
                if (c == ' ') piece += kSpace;
                else piece += c;
            }
            Status st = spm_tokenize_text(v, piece, spm, out);
            if (!st.ok()) {
                out.clear();
                return st;
            }
            prev_special = false;
        }
    }
    if (add_special && v.add_eos && v.eos >= 0) out.push_back(v.eos);
    return Status();
}

// Appends the bytes of token `id` to out (see token_to_piece).
inline void append_piece(const Vocab& v, int32_t id, bool render_special, std::string& out) {
    if (id < 0 || id >= v.n_vocab()) return;
    size_t i = static_cast<size_t>(id);
    const std::string& t = v.text[i];
    switch (v.type[i]) {
        case Vocab::normal: {
            if (v.is_bpe) {
                bpe_decode_text(t, out);
                break;
            }
            // U+2581 -> ' '
            for (size_t k = 0; k < t.size(); ++k) {
                if (k + 2 < t.size() && t[k] == '\xE2' && t[k + 1] == '\x96' && t[k + 2] == '\x81') {
                    out += ' ';
                    k += 2;
                } else {
                    out += t[k];
                }
            }
            break;
        }
        case Vocab::control:
        case Vocab::unknown:
            if (render_special) out += t;
            break;
        case Vocab::user_defined:
            out += t;
            break;
        case Vocab::byte:
            if (v.byte_value[i] >= 0) out += static_cast<char>(v.byte_value[i]);
            break;
        default:
            break;  // unused and undefined tokens have no text
    }
}

// The bytes of one token: U+2581 becomes ' ' in normal tokens, a <0xNN> token
// is that single raw byte (possibly part of a UTF-8 character), control and
// unknown tokens give "" unless render_special, user-defined tokens give their
// text, unused tokens and out-of-range ids give "".
inline std::string token_to_piece(const Vocab& v, int32_t id, bool render_special) {
    std::string s;
    append_piece(v, id, render_special, s);
    return s;
}

// Ids -> text: the pieces joined, so byte tokens rebuild whole characters. When
// add_space_prefix is set, one leading space of the FIRST token's piece is
// dropped (the space tokenize added). A leading BOS has no space to drop, so the
// text after it keeps its space: this matches llama.cpp's detokenizer with
// remove_special = false. Hence detokenize(tokenize(s, add_special=false)) == s,
// and with BOS first the result is " " + s (or "<s> " + s with render_special).
inline std::string detokenize(const Vocab& v, const int32_t* ids, size_t n, bool render_special) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        size_t before = out.size();
        append_piece(v, ids[i], render_special, out);
        if (i == 0 && v.add_space_prefix && out.size() > before && out[before] == ' ') out.erase(before, 1);
    }
    return out;
}

// True for tokens that end generation: EOS, EOT, EOM and tokens such as <|end|> or <|im_end|>.
inline bool is_eog(const Vocab& v, int32_t id) {
    return id >= 0 && id < v.n_vocab() && (v.flags[static_cast<size_t>(id)] & Vocab::flag_eog) != 0;
}

}  // namespace detail
MINIGPT_NS_END
