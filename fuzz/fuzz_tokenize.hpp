// The checks shared by fuzz_tokenize_spm.cpp and fuzz_tokenize_bpe.cpp:
// tokenize arbitrary bytes with and without special-token parsing, check
// every id, detokenize, and require the round trip
// detokenize(tokenize(text)) == text where it must hold. The two targets
// differ only in their list of vocabularies (see run_tokenizer).
#pragma once

#include "fuzz_util.hpp"

#include <string>
#include <vector>

namespace fuzz {

// Whether the round trip must hold for this text and these ids: valid UTF-8,
// no SentencePiece space character (U+2581 decodes to ' '), and no token that
// is not plain text (unknown, control, user-defined: those split the text and
// a SentencePiece vocabulary then adds a space prefix after them).
inline bool round_trip_expected(const minigpt::Model& model, std::string_view text, const std::vector<int32_t>& ids) {
    if (!minigpt::utf8_valid(text)) return false;
    const minigpt::detail::Vocab& v = model.impl().vocab;
    if (!v.is_bpe && text.find("\xE2\x96\x81") != std::string_view::npos) return false;
    for (int32_t id : ids) {
        int32_t t = v.type[static_cast<size_t>(id)];
        if (t != minigpt::detail::Vocab::normal && t != minigpt::detail::Vocab::byte) return false;
    }
    return true;
}

inline void check_tokenizer(const minigpt::Model& model, std::string_view text) {
    const int n_vocab = model.n_vocab();
    std::vector<int32_t> ids;
    for (int mode = 0; mode < 4; ++mode) {
        const bool add_special = (mode & 1) != 0, parse_special = (mode & 2) != 0;
        minigpt::Status st = model.tokenize(text, ids, add_special, parse_special);
        if (!st.ok()) {
            // Only texts a byte-level vocabulary cannot encode may fail.
            FUZZ_CHECK(!st.message().empty(), "tokenize failed without a message");
            continue;
        }
        for (int32_t id : ids)
            FUZZ_CHECK(id >= 0 && id < n_vocab, "tokenize(add_special=%d, parse_special=%d) gave id %d of %d",
                       add_special, parse_special, id, n_vocab);
        FUZZ_CHECK(!text.empty() || ids.size() <= 2, "the empty text gave %zu tokens", ids.size());
        std::string plain = model.detokenize(ids, false);
        std::string rendered = model.detokenize(ids, true);
        FUZZ_CHECK(rendered.size() >= plain.size(), "rendering specials made the text shorter");
        if (mode == 0 && round_trip_expected(model, text, ids)) {
            FUZZ_CHECK(plain == text, "round trip failed: text %s came back as %s (%zu tokens)", hex(text).c_str(),
                       hex(plain).c_str(), ids.size());
        }
        std::string joined;
        for (int32_t id : ids) joined += model.token_to_piece(id, false);
        FUZZ_CHECK(joined.size() + 1 >= plain.size(), "detokenize longer than its pieces");
    }
}

// One fuzz input against a list of N vocabularies (N a power of two): the
// first byte chooses the vocabulary, the rest is the text. The vocabularies
// are loaded at the first call (the targets call it from
// LLVMFuzzerInitialize with an empty input, so that loading is not timed).
template <size_t N>
inline int run_tokenizer(const char* const (&paths)[N], const uint8_t* data, size_t size) {
    static_assert(N > 0 && (N & (N - 1)) == 0, "a power of two, so that one byte's low bits choose evenly");
    static const std::vector<std::shared_ptr<minigpt::Model>> vocabs = [&] {
        std::vector<std::shared_ptr<minigpt::Model>> v;
        for (const char* p : paths) v.push_back(load_vocab(p));
        return v;
    }();
    if (size == 0) return 0;
    check_tokenizer(*vocabs[data[0] & (N - 1)], std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    return 0;
}

}  // namespace fuzz
