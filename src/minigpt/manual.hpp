/* minigpt.hpp - run GPT-style language models (GGUF files) on the CPU.
   One C++17 header, no dependency beyond the standard library and the OS.

QUICK START
    // In exactly one .cpp file:
    #define MINIGPT_IMPLEMENTATION
    #include "minigpt.hpp"

    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load("model.gguf", {}, model);
    if (!st) { fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::unique_ptr<minigpt::Context> ctx;
    minigpt::Context::create(model, {}, ctx);
    std::vector<int32_t> prompt;
    model->tokenize("Once upon a time", prompt);
    minigpt::Sampler sampler;
    minigpt::generate(*ctx, sampler, prompt, {}, [](std::string_view s) {
        fwrite(s.data(), 1, s.size(), stdout); return true; });

CONFIGURATION (define before including)
    MINIGPT_IMPLEMENTATION   compile the implementation (one translation unit only)
    MINIGPT_NO_SIMD          scalar kernels only
    MINIGPT_NO_AVX512        do not use AVX-512 even when the compiler targets it
    MINIGPT_NO_NEON          do not use NEON even when the compiler targets it (aarch64)
    MINIGPT_NO_THREADS       no thread pool: everything runs on the calling thread
    MINIGPT_ASSERT(x)        internal invariant checks (default: assert)
    MINIGPT_MALLOC(n)/MINIGPT_FREE(p)
                             allocator for the large buffers (KV cache, scratch);
                             define both or neither
    SIMD kernels are chosen from the compiler's target flags (-mavx2 -mfma -mf16c,
    -mavx512f ..., -march=native; NEON on aarch64).

THREAD SAFETY
    A Model is immutable after load: share it between any number of Contexts and
    threads. A Context is used by one thread at a time. A Sampler is not shared.
    set_hooks() is called once, before any other call.

ERRORS
    Every fallible call returns a Status (code + message). Nothing throws, exits
    or aborts on bad input: GGUF files are untrusted and every offset, count and
    size in them is checked. Builds with -fno-exceptions -fno-rtti.

VERSION
    MINIGPT_VERSION_MAJOR / _MINOR / _PATCH, MINIGPT_VERSION_STRING.
    The license (MIT) is at the end of this file.
*/
