// Fuzz target: SentencePiece tokenization of arbitrary bytes (see
// fuzz_tokenize.hpp for the checks). The first input byte chooses the
// vocabulary: llama's, or Phi-3's (whose special tokens strip whitespace);
// the rest is the text.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_tokenize.hpp"

namespace {
constexpr const char* kVocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf"};
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::run_tokenizer(kVocabs, nullptr, 0); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz::run_tokenizer(kVocabs, data, size); }
