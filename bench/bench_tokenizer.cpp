// Tokenizer throughput (Google Benchmark): about 1 MB of mixed text (English
// prose, C++ source, Chinese, emoji), generated deterministically, tokenized
// with each vocabulary of the test data. bytes_per_second is input bytes.
//
//   g++ -O2 -march=native -std=c++17 -I. -DMINIGPT_TEST_DATA_DIR='"/path/to/data"'
//       bench/bench_tokenizer.cpp -o bench_tokenizer -lbenchmark -lpthread
//
// The data directory is $MINIGPT_DATA_DIR, else MINIGPT_TEST_DATA_DIR, else ../shared/data.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace md = minigpt::detail;

std::string data_dir() {
    if (const char* e = std::getenv("MINIGPT_DATA_DIR"))
        if (*e) return e;
#ifdef MINIGPT_TEST_DATA_DIR
    return MINIGPT_TEST_DATA_DIR;
#else
    return "../shared/data";
#endif
}

struct Rng {
    uint64_t s;
    uint32_t next() {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<uint32_t>(s >> 33);
    }
    template <size_t N>
    const char* pick(const char* const (&a)[N]) { return a[next() % N]; }
};

// About `target` bytes: paragraphs of English, C++ code, Chinese and emoji in turn.
std::string mixed_text(size_t target) {
    static const char* const words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "a",
                                        "village", "where", "nobody", "remembered", "why", "lanterns", "were", "lit",
                                        "every", "evening", "It's", "they'll", "Sarah's", "merchant", "HTTPServer",
                                        "1984", "3.14159", "twenty-one", "(quietly)", "\"yes\"", "well,", "again."};
    static const char* const code[] = {
        "for (size_t i = 0; i < n; ++i) {\n    out[i] = a[i] * b[i] + c;\n}\n",
        "template <typename T>\nstatic inline T clamp(T x, T lo, T hi) { return x < lo ? lo : (x > hi ? hi : x); }\n",
        "    if (!st.ok()) return error(StatusCode::bad_format, \"tensor '%s': %zu bytes\", name, n);\n",
        "std::vector<std::pair<int, std::string>> items{{1, \"one\"}, {2, \"two\"}};  // 0x7fffffff\n",
        "\t// TODO: handle the \\r\\n case\n\tconst auto& [key, value] = *map.find(\"k\");\n"};
    static const char* const zh[] = {"我们", "今天", "天气", "很好", "学习", "中文", "模型", "的", "是", "在",
                                     "人工智能", "，", "。", "这个", "问题", "非常", "有趣"};
    static const char* const emoji[] = {"\xF0\x9F\x98\x80", "\xF0\x9F\x9A\x80", "\xF0\x9F\xA6\x99",
                                        "\xE2\x9C\x85", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                        "\xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F", " "};
    Rng rng{20260822u};
    std::string s;
    s.reserve(target + 1024);
    while (s.size() < target) {
        switch (rng.next() % 4) {
            case 0:
                for (int i = 0, n = 40 + static_cast<int>(rng.next() % 80); i < n; ++i) {
                    s += rng.pick(words);
                    s += (rng.next() % 12 == 0) ? ".  " : " ";
                }
                s += "\n\n";
                break;
            case 1:
                for (int i = 0, n = 3 + static_cast<int>(rng.next() % 6); i < n; ++i) s += rng.pick(code);
                s += "\n";
                break;
            case 2:
                for (int i = 0, n = 30 + static_cast<int>(rng.next() % 60); i < n; ++i) s += rng.pick(zh);
                s += "\n";
                break;
            default:
                for (int i = 0, n = 5 + static_cast<int>(rng.next() % 20); i < n; ++i) {
                    s += rng.pick(emoji);
                    if (rng.next() % 3 == 0) s += rng.pick(words);
                }
                s += "\n";
                break;
        }
    }
    return s;
}

struct LoadedVocab {
    md::FileBytes bytes;
    md::GgufFile file;
    md::Vocab vocab;
};

void bm_tokenize(benchmark::State& state, std::shared_ptr<LoadedVocab> lv, const std::string* text) {
    std::vector<int32_t> ids;
    for (auto _ : state) {
        minigpt::Status st = md::tokenize(lv->vocab, *text, false, false, ids);
        if (!st.ok()) {
            state.SkipWithError(st.to_string().c_str());
            break;
        }
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text->size()));
    state.counters["tokens"] = static_cast<double>(ids.size());
    state.counters["bytes_per_token"] = ids.empty() ? 0.0 : static_cast<double>(text->size()) / ids.size();
}

}  // namespace

int main(int argc, char** argv) {
    static const std::string text = mixed_text(1 << 20);
    const char* const vocabs[] = {"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon",
                                  "mpt", "refact", "starcoder", "llama-spm", "phi-3"};
    int registered = 0;
    for (const char* name : vocabs) {
        auto lv = std::make_shared<LoadedVocab>();
        std::string path = data_dir() + "/vocab/ggml-vocab-" + name + ".gguf";
        minigpt::Status st = lv->bytes.open(path, true);
        if (st.ok()) st = lv->file.parse(lv->bytes.data(), lv->bytes.size());
        if (st.ok()) st = md::load_vocab(lv->file, lv->vocab);
        if (!st.ok()) {
            std::fprintf(stderr, "bench_tokenizer: skipping %s: %s\n", path.c_str(), st.to_string().c_str());
            continue;
        }
        benchmark::RegisterBenchmark((std::string("tokenize_1MB/") + name).c_str(), bm_tokenize, lv, &text)
            ->Unit(benchmark::kMillisecond);
        ++registered;
    }
    if (registered == 0) {
        std::fprintf(stderr, "bench_tokenizer: no vocabulary found under %s/vocab (set MINIGPT_DATA_DIR)\n",
                     data_dir().c_str());
        return 1;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
