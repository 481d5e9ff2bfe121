// Fuzz target: byte-level BPE tokenization of arbitrary bytes (see
// fuzz_tokenize.hpp for the checks). The first input byte chooses the
// vocabulary, and with it the pre-tokenizer: GPT-2, Llama 3, Qwen2 or
// DeepSeek LLM; the rest is the text.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_tokenize.hpp"

namespace {
const std::shared_ptr<minigpt::Model>& vocab(int i) {
    static const std::shared_ptr<minigpt::Model> v[4] = {
        fuzz::load_vocab("vocab/ggml-vocab-gpt-2.gguf"), fuzz::load_vocab("vocab/ggml-vocab-llama-bpe.gguf"),
        fuzz::load_vocab("vocab/ggml-vocab-qwen2.gguf"), fuzz::load_vocab("vocab/ggml-vocab-deepseek-llm.gguf")};
    return v[i];
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    vocab(0);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const minigpt::Model& model = *vocab(data[0] & 3);
    fuzz::check_tokenizer(model, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    return 0;
}
