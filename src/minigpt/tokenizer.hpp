// tokenizer: the vocabulary stored in GGUF metadata (tokenizer.ggml.*) and the
// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"), with the same
// results as llama.cpp's SPM tokenizer, plus token -> text conversion.
#pragma once
#include "gguf.hpp"

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

    std::string model;                 // tokenizer.ggml.model; only "llama" (SPM) is supported
    std::string name;                  // general.name in lower case (a few rules depend on it)
    std::vector<std::string> text;     // tokenizer.ggml.tokens
    std::vector<float> score;          // tokenizer.ggml.scores (0 if absent)
    std::vector<int32_t> type;         // tokenizer.ggml.token_type (normal if absent)
    int32_t bos = -1, eos = -1, unk = -1, eot = -1, eom = -1, pad = -1;
    bool add_bos = true, add_eos = false, add_space_prefix = true;

    // Indexes, built by init_vocab.
    std::vector<int32_t> slots;        // open-addressing hash table of ids keyed by text; -1 = empty
    std::vector<uint8_t> flags;        // TokenFlag bits per token
    std::vector<int16_t> byte_value;   // the byte of a <0xNN> byte token, else -1
    std::vector<int32_t> specials;     // control / user-defined / unknown tokens, longest text first
    int32_t byte_token[256];           // token for a raw byte in byte fallback, -1 if none
    bool ready = false;                // init_vocab succeeded

    Vocab() { std::fill(byte_token, byte_token + 256, -1); }

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

// Validates the fields of `v` (text, score, type, special ids, model) and builds
// its indexes. load_vocab calls it; tests may fill a Vocab by hand and call it.
inline Status init_vocab(Vocab& v) {
    v.ready = false;
    if (v.model != "llama") {
        if (v.model.empty()) return error(StatusCode::bad_format, "tokenizer model is not set (tokenizer.ggml.model)");
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported yet (only 'llama', the SentencePiece tokenizer)",
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
    v.ready = true;
    return Status();
}

// Reads the tokenizer.ggml.* keys of a GGUF file (a vocab-only file works too).
inline Status load_vocab(const GgufFile& f, Vocab& v) {
    v = Vocab();
    Status st;
    std::string_view sv;
    if (!f.get_string("tokenizer.ggml.model", sv, st)) {
        if (!st.ok()) return st;
        return error(StatusCode::bad_format, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    }
    v.model.assign(sv.data(), sv.size());
    if (v.model != "llama")
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported yet (only 'llama', the SentencePiece tokenizer)",
                     v.model.c_str());
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
    uint32_t off, n;  // bytes [off, off+n) of the text; n = 0 once merged away
};
struct SpmBigram {
    float score;
    int32_t left, right;
    uint32_t size;
};
// Highest score first; on equal scores the leftmost pair first.
struct SpmBigramOrder {
    bool operator()(const SpmBigram& a, const SpmBigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

// Tokenizes one piece of text whose spaces are already written as U+2581.
inline Status spm_tokenize_piece(const Vocab& v, std::string_view text, std::vector<int32_t>& out) {
    if (text.empty()) return Status();
    std::vector<SpmSymbol> sym;
    sym.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        size_t len = utf8_char_at(text, off);
        int32_t idx = static_cast<int32_t>(sym.size());
        sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, static_cast<uint32_t>(off),
                       static_cast<uint32_t>(len)});
        off += len;
    }

    std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmBigramOrder> queue;
    auto try_pair = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const SpmSymbol& l = sym[static_cast<size_t>(left)];
        const SpmSymbol& r = sym[static_cast<size_t>(right)];
        std::string_view piece = text.substr(l.off, l.n + r.n);
        int32_t id = v.find(piece);
        if (id < 0) return;
        queue.push({v.score[static_cast<size_t>(id)], left, right, static_cast<uint32_t>(piece.size())});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

    while (!queue.empty()) {
        SpmBigram b = queue.top();
        queue.pop();
        SpmSymbol& l = sym[static_cast<size_t>(b.left)];
        SpmSymbol& r = sym[static_cast<size_t>(b.right)];
        // Stale: one side was merged into something else since the pair was queued.
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
        try_pair(l.prev, b.left);
        try_pair(b.left, l.next);
    }

    for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
        const SpmSymbol& s = sym[static_cast<size_t>(i)];
        std::string_view piece = text.substr(s.off, s.n);
        int32_t id = v.find(piece);
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
        for (const TextFragment& fr : frags) {
            if (fr.id >= 0) {
                out.push_back(fr.id);
                prev_special = true;
                continue;
            }
            piece.clear();
            if (v.add_space_prefix && prev_special) piece += kSpace;
            for (char c : text.substr(fr.off, fr.len)) {
                if (c == ' ') piece += kSpace;
                else piece += c;
            }
            Status st = spm_tokenize_piece(v, piece, out);
            if (!st.ok()) return st;
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
