// Fuzz target: byte-level BPE tokenization of arbitrary bytes (see
// fuzz_tokenize.hpp for the checks). The first input byte chooses the
// vocabulary, and with it the pre-tokenizer: GPT-2, Llama 3, Qwen2 or
// DeepSeek LLM; the rest is the text.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_tokenize.hpp"

namespace {
constexpr const char* kVocabs[] = {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-bpe.gguf",
                                   "vocab/ggml-vocab-qwen2.gguf", "vocab/ggml-vocab-deepseek-llm.gguf"};
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::run_tokenizer(kVocabs, nullptr, 0); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz::run_tokenizer(kVocabs, data, size); }
