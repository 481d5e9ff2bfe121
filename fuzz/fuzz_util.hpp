// Helpers shared by the libFuzzer targets in this directory. Each target is
// one .cpp file that defines MINIGPT_IMPLEMENTATION, includes minigpt.hpp and
// then this header, and provides LLVMFuzzerTestOneInput.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

// Where the test data lives when MINIGPT_DATA_DIR is not set in the
// environment (CMake passes its MINIGPT_DATA_DIR here).
#ifndef MINIGPT_FUZZ_DATA_DIR
#define MINIGPT_FUZZ_DATA_DIR "../shared/data"
#endif

namespace fuzz {

// Reports a broken invariant and aborts, which libFuzzer records as a crash.
[[noreturn]] inline void fail(const char* file, int line, const char* fmt, ...) {
    std::fprintf(stderr, "\n%s:%d: invariant violated: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    std::abort();
}

#define FUZZ_CHECK(cond, ...)                                     \
    do {                                                          \
        if (!(cond)) ::fuzz::fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

inline std::string data_dir() {
    const char* env = std::getenv("MINIGPT_DATA_DIR");
    return (env && *env) ? std::string(env) : std::string(MINIGPT_FUZZ_DATA_DIR);
}

// Loads the tokenizer of a vocabulary file under the data directory, or exits
// with a message that names the path (a fuzzer without its vocabulary must not
// pass silently).
inline std::shared_ptr<minigpt::Model> load_vocab(const char* relative) {
    std::string path = data_dir() + "/" + relative;
    minigpt::ModelParams mp;
    mp.vocab_only = true;
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(path, mp, model);
    if (!st.ok()) {
        std::fprintf(stderr,
                     "fuzz: cannot load the vocabulary %s (%s); set MINIGPT_DATA_DIR to the test data directory\n",
                     path.c_str(), st.to_string().c_str());
        std::exit(2);
    }
    return model;
}

// Hex of a byte string, for messages about invariants.
inline std::string hex(std::string_view s, size_t max = 96) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    if (s.size() > max) out += "...";
    return out;
}

}  // namespace fuzz
