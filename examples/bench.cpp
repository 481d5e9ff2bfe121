// minigpt-bench: prompt-processing and generation speed, in the style of
// llama-bench (the same test names and the same way of counting), plus the
// machine's memory read bandwidth and how much of it generation uses.
//
//   minigpt-bench -m model.gguf [-m other.gguf] -p 128 -n 64 -t 2 -r 5 [-o md|jsonl]
//                 [-d N_DEPTH] [-ctk f32|f16] [-mmp 0|1] [--no-bandwidth]
//
// ppN: N prompt tokens evaluated in one batch from an empty context.
// tgN: N tokens evaluated one at a time from an empty context.
// Token ids are drawn at random (the speed does not depend on them).
// -t takes a list (-t 1,2): the thread counts then take turns within each
// repetition, so that all of them see the same machine conditions (the way
// to measure thread scaling on a shared machine).
//
// Generating one token reads every weight matrix once (and one row of the
// token embedding), so its speed is bounded by memory bandwidth. Before the
// tests the bench measures the read bandwidth with each number of threads
// (the best of several reads of a large buffer, with the hardware's prefetch
// alone and with lines requested ahead as the library's products do), and
// again before every repetition of a tg test; for each tg test it reports
// the weight bytes read per token and the fraction of the bandwidth used:
// bytes/token x tokens/s / the bandwidth measured just before, averaged over
// the repetitions (jsonl adds weight_bytes_per_token, mem_bandwidth_gbs and
// bandwidth_fraction to llama-bench's fields). -mmp 0 reads the weights into
// memory instead of mapping the file. -ctk f16 (or -ctv) stores the KV cache
// in F16 (llama-bench's type_k / type_v; its default is f16, ours f32). The
// KV cache and scratch sizes are printed at load. On Linux, after a mapped
// model's tests, the bench prints how much of the mapping is in 2 MiB pages
// (streaming weights through 4 KiB pages walks the page tables at every page;
// see the loader's reread_small_pages).
//
//   minigpt-bench --make-model SHAPE --type TYPE -o OUT.gguf [--seed N] [--mix] [-t N]
//
// writes a model of a real shape with random weights, for benchmarking
// without a download (the values of the weights do not change the speed; the
// model's output is meaningless). SHAPE: stories15M smollm2-135m smollm2-360m
// qwen3-0.6b llama-3.2-1b. TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K
// Q3_K Q4_K Q5_K Q6_K IQ4_NL, given to every 2-D weight (token embedding and
// output included; norms stay F32), as llama-quantize --pure does; with --mix,
// llama.cpp's default mixture for the type (Q4_K means Q4_K_M...). Rows whose
// length is not a multiple of the type's block fall back as llama-quantize
// does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0). The file
// has a synthetic SentencePiece vocabulary of the real size, so llama.cpp
// loads it too. Weights are generated and quantized a slice at a time and
// written in place, so memory use stays small even for the 1B shape.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <cctype>
#include <thread>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <climits>
#include <cstdlib>
#endif

namespace {

using namespace examples;
namespace md = minigpt::detail;

struct Result {
    std::string model, type, test;
    int n_prompt = 0, n_gen = 0, n_depth = 0, threads = 0;
    double mean = 0, stddev = 0;
    uint64_t weight_bytes_per_token = 0;
    double bandwidth_gbs = 0;  // measured with the same number of threads (0: not measured)
    double fraction = 0;       // tg: mean of bytes/token x tokens/s / bandwidth over the repetitions
};

std::string model_type(const minigpt::ModelInfo& info) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s %.1fM %s", info.architecture.c_str(), info.n_params / 1e6,
                  info.type_summary.c_str());
    return buf;
}

int hardware_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

// Runs fn(i) for i in [0, n) on n threads (the calling thread takes i = 0).
template <typename Fn>
void run_threads(int n, const Fn& fn) {
    std::vector<std::thread> pool;
    for (int i = 1; i < n; ++i) pool.emplace_back([&fn, i]() { fn(i); });
    fn(0);
    for (std::thread& t : pool) t.join();
}

#if defined(__linux__)
// KiB of this process's mappings of file `path` that are resident, and of them
// mapped in 2 MiB pages (Rss and FilePmdMapped in /proc/self/smaps); false
// when that cannot be read.
bool mapped_pages(const std::string& path, double& resident_kib, double& huge_kib) {
    char real[PATH_MAX];
    if (!realpath(path.c_str(), real)) return false;
    std::FILE* f = std::fopen("/proc/self/smaps", "r");
    if (!f) return false;
    const std::string tail = std::string(" ") + real + "\n";
    resident_kib = huge_kib = 0;
    char line[4096];
    bool in = false;
    while (std::fgets(line, sizeof line, f)) {
        unsigned long a = 0, b = 0;
        const std::string l = line;
        if (std::sscanf(line, "%lx-%lx ", &a, &b) == 2) {  // a mapping's first line: addresses ... path
            in = l.size() >= tail.size() && l.compare(l.size() - tail.size(), tail.size(), tail) == 0;
        } else if (in && l.compare(0, 4, "Rss:") == 0) {
            resident_kib += std::strtod(line + 4, nullptr);
        } else if (in && l.compare(0, 14, "FilePmdMapped:") == 0) {
            huge_kib += std::strtod(line + 14, nullptr);
        }
    }
    std::fclose(f);
    return true;
}
#endif

// ---------------------------------------------------------------------------
// Memory read bandwidth
// ---------------------------------------------------------------------------

// Sums n 64-bit words (n a multiple of 16, p 32-byte aligned) so that the
// compiler cannot drop the loads. With `ahead` > 0 the loop also asks for
// the line `ahead` bytes on (non-temporal hint, as the library's one-row
// products do; a request past the buffer is harmless, prefetches never fault).
uint64_t sum_words(const uint64_t* p, size_t n, size_t ahead) {
    const char* const pf = reinterpret_cast<const char*>(p) + ahead;
#if defined(__AVX2__)
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 16) {
#  if defined(__GNUC__) || defined(__clang__)
        if (ahead) __builtin_prefetch(pf + i * 8, 0, 0), __builtin_prefetch(pf + i * 8 + 64, 0, 0);
#  endif
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
#else
    uint64_t s[8] = {};
    for (size_t i = 0; i < n; i += 8) {
#  if defined(__GNUC__) || defined(__clang__)
        if (ahead) __builtin_prefetch(pf + i * 8, 0, 0);
#  endif
        for (int k = 0; k < 8; ++k) s[k] += p[i + k];
    }
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
#endif
}

// Rounds of the bandwidth test before the tests, and before each repetition
// of a tg test; each keeps its best read.
constexpr int kBandwidthRounds = 8, kRepetitionRounds = 3;

// Reads a buffer much larger than any cache (256 MiB, eight times a large L3)
// with a number of threads, each its own slice. The buffer is made once.
class BandwidthProbe {
public:
    static constexpr size_t kBytes = size_t(256) << 20;

    bool init() {
        const size_t huge = (size_t(2) << 20) / 8;
        if (!buf_.allocate(kWords + huge)) return false;
        // Start at a 2 MiB boundary so that the kernel may back the buffer with
        // huge pages: touching fresh memory page by page would cost more than the test.
        const uintptr_t addr = reinterpret_cast<uintptr_t>(buf_.data());
        base_ = buf_.data() + (huge * 8 - addr % (huge * 8)) % (huge * 8) / 8;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        madvise(base_, kBytes, MADV_HUGEPAGE);
#endif
        // Touch every page first (and give the words a value) so the passes measure reads only.
        std::memset(base_, 1, kBytes);
        return true;
    }

    // Best GB/s (1 GB = 1e9 bytes) of `rounds` rounds of reads with `threads`
    // threads; 0 if the sums do not prove that every word was read. Each
    // round reads the buffer once per way of reading it (kAhead): with the
    // hardware's prefetch alone, which is the fastest while the memory
    // answers quickly, and with lines requested 6 or 12 KiB ahead, which keep
    // more reads in flight and are the fastest while it answers slowly. (On
    // this kind of shared machine the two phases alternate by the minute; with
    // only the first, generation measured over 100% of the "bandwidth" in the
    // slow phase.)
    double measure(int threads, int rounds) {
        const size_t per_thread = kWords / static_cast<size_t>(threads) / 16 * 16;
        std::vector<uint64_t> sinks(static_cast<size_t>(threads) * 8, 0);
        double best = 0;
        for (int round = 0; round < rounds; ++round) {
            for (size_t ahead : kAhead) {
                const auto t0 = std::chrono::steady_clock::now();
                run_threads(threads, [&](int i) {
                    sinks[static_cast<size_t>(i) * 8] += sum_words(base_ + static_cast<size_t>(i) * per_thread, per_thread, ahead);
                });
                const double s = ms_since(t0) / 1000.0;
                best = std::max(best, static_cast<double>(per_thread * static_cast<size_t>(threads) * 8) / s / 1e9);
            }
        }
        uint64_t check = 0;
        for (uint64_t v : sinks) check += v;
        // Every byte is 1, so every word is 0x0101..01.
        const uint64_t reads = static_cast<uint64_t>(rounds) * kWays;
        if (check != reads * per_thread * static_cast<size_t>(threads) * 0x0101010101010101ull) return 0;
        return best;
    }

    static constexpr size_t kAhead[] = {0, size_t(6) << 10, size_t(12) << 10};
    static constexpr int kWays = static_cast<int>(sizeof kAhead / sizeof kAhead[0]);

private:
    static constexpr size_t kWords = kBytes / 8;
    md::Buffer<uint64_t> buf_;
    uint64_t* base_ = nullptr;
};

// Bytes of weights that generating one token reads: every tensor, except the
// token (and position) embedding of which only one row is read; a model
// without output.weight reads the whole token embedding as its output matrix.
bool weight_bytes_per_token(const std::string& path, uint64_t& out, std::string& err) {
    md::FileBytes bytes;
    minigpt::Status st = bytes.open(path, true);
    md::GgufFile g;
    if (st.ok()) st = g.parse(bytes.data(), bytes.size());
    if (!st.ok()) {
        err = st.to_string();
        return false;
    }
    const bool tied = g.find_tensor("output.weight") == nullptr;
    out = 0;
    for (const md::GgufTensor& t : g.tensors) {
        if (t.name == "token_embd.weight" || t.name == "position_embd.weight") {
            const int64_t rows = t.n_dims >= 2 ? t.ne[1] * t.ne[2] * t.ne[3] : 1;
            out += rows > 0 ? t.nbytes / static_cast<uint64_t>(rows) : 0;
            if (t.name == "token_embd.weight" && tied) out += t.nbytes;
        } else {
            out += t.nbytes;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------
// --make-model
// ---------------------------------------------------------------------------

// The hyperparameters of real models (from their published configurations).
struct Shape {
    const char* name;
    const char* arch;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_base, norm_eps;
    bool tied;         // the output matrix is the token embedding
    bool qk_norm;      // per-head RMS norms of q and k (qwen3)
    bool llama3_rope;  // llama 3.x frequency scaling (factor 32, low 1, high 4, original context 8192)
};

const Shape kShapes[] = {
    {"stories15M", "llama", 288, 6, 6, 6, 48, 768, 32000, 256, 10000.0f, 1e-5f, true, false, false},
    {"smollm2-135m", "llama", 576, 30, 9, 3, 64, 1536, 49152, 8192, 100000.0f, 1e-5f, true, false, false},
    {"smollm2-360m", "llama", 960, 32, 15, 5, 64, 2560, 49152, 8192, 100000.0f, 1e-5f, true, false, false},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000.0f, 1e-6f, true, true, false},
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0f, 1e-5f, true, false, true},
};

std::string shape_names() {
    std::string s;
    for (const Shape& sh : kShapes) s += (s.empty() ? "" : " ") + std::string(sh.name);
    return s;
}

enum class Init { random, ones, rope_llama3 };

struct TensorPlan {
    std::string name;
    std::vector<int64_t> ne;
    md::Type type = md::Type::F32;
    Init init = Init::random;
    size_t nbytes = 0;
    uint64_t file_offset = 0;
};

uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Approximately normal values with the given standard deviation: the sum of
// four 16-bit uniforms (one random word per value), centred and scaled.
void fill_random(float* x, int64_t n, uint64_t seed, float stddev) {
    uint64_t s = seed;
    const float scale = stddev / 37837.23f;  // 65536 * sqrt(4 / 12)
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = splitmix64(s);
        const uint32_t sum = static_cast<uint32_t>(r & 0xFFFF) + static_cast<uint32_t>((r >> 16) & 0xFFFF) +
                             static_cast<uint32_t>((r >> 32) & 0xFFFF) + static_cast<uint32_t>(r >> 48);
        x[i] = (static_cast<float>(sum) - 131070.0f) * scale;
    }
}

// llama 3.x rope_freqs: the divisor of each rotary frequency.
void fill_rope_llama3(float* x, int64_t n, int n_rot, float base) {
    const double factor = 32, low_freq_factor = 1, high_freq_factor = 4, old_ctx = 8192;
    const double pi = 3.14159265358979323846;
    const double low_freq_wavelen = old_ctx / low_freq_factor, high_freq_wavelen = old_ctx / high_freq_factor;
    for (int64_t i = 0; i < n; ++i) {
        const double freq = 1.0 / std::pow(static_cast<double>(base), 2.0 * static_cast<double>(i) / n_rot);
        const double wavelen = 2 * pi / freq;
        double f;
        if (wavelen < high_freq_wavelen) {
            f = 1;
        } else if (wavelen > low_freq_wavelen) {
            f = factor;
        } else {
            const double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        x[i] = static_cast<float>(f);
    }
}

// llama.cpp's file type number for a model made of `t` (the _S variants of the
// K-quants unless the mixture is used).
uint32_t file_type_of(md::Type t, bool mix) {
    if (!mix) {
        if (t == md::Type::Q3_K) return 11;  // Q3_K_S
        if (t == md::Type::Q4_K) return 14;  // Q4_K_S
        if (t == md::Type::Q5_K) return 16;  // Q5_K_S
    }
    return static_cast<uint32_t>(md::quant_ftype_of(t));
}

// A SentencePiece-style vocabulary of n tokens: <unk>, <s>, </s>, the 256 byte
// tokens, then filler pieces ("▁a", "a", "▁b", ...) with decreasing scores.
void add_vocabulary(md::GgufWriter& w, int n) {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;  // 1 normal, 2 unknown, 3 control, 6 byte
    tokens.reserve(static_cast<size_t>(n));
    tokens = {"<unk>", "<s>", "</s>"};
    scores = {0.0f, 0.0f, 0.0f};
    types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        tokens.push_back(buf);
        scores.push_back(0.0f);
        types.push_back(6);
    }
    for (int k = 0; static_cast<int>(tokens.size()) < n; ++k) {
        std::string word;
        for (int v = k / 2 + 1; v > 0; v = (v - 1) / 26) word.insert(word.begin(), static_cast<char>('a' + (v - 1) % 26));
        tokens.push_back((k % 2 == 0 ? "\xE2\x96\x81" : "") + word);
        scores.push_back(-static_cast<float>(k + 1));
        types.push_back(1);
    }
    tokens.resize(static_cast<size_t>(n));
    scores.resize(static_cast<size_t>(n));
    types.resize(static_cast<size_t>(n));
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.scores", scores);
    w.set_array("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
}

// The tensors of the shape, in llama.cpp's order (by layer, then by name), with
// the type each one gets.
std::vector<TensorPlan> plan_tensors(const Shape& s, md::Type type, bool mix) {
    const int64_t E = s.n_embd, V = s.n_vocab, F = s.n_ff, D = s.head_dim;
    const int64_t Q = D * s.n_head, KV = D * s.n_head_kv;
    std::vector<TensorPlan> out;
    auto add = [&](std::string name, std::vector<int64_t> ne, Init init) {
        TensorPlan t;
        t.name = std::move(name);
        t.ne = std::move(ne);
        t.init = init;
        out.push_back(std::move(t));
    };
    if (!s.tied) add("output.weight", {E, V}, Init::random);
    add("output_norm.weight", {E}, Init::ones);
    if (s.llama3_rope) add("rope_freqs.weight", {D / 2}, Init::rope_llama3);
    add("token_embd.weight", {E, V}, Init::random);
    for (int l = 0; l < s.n_layer; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_k.weight", {E, KV}, Init::random);
        if (s.qk_norm) add(b + "attn_k_norm.weight", {D}, Init::ones);
        add(b + "attn_norm.weight", {E}, Init::ones);
        add(b + "attn_output.weight", {Q, E}, Init::random);
        add(b + "attn_q.weight", {E, Q}, Init::random);
        if (s.qk_norm) add(b + "attn_q_norm.weight", {D}, Init::ones);
        add(b + "attn_v.weight", {E, KV}, Init::random);
        add(b + "ffn_down.weight", {F, E}, Init::random);
        add(b + "ffn_gate.weight", {E, F}, Init::random);
        add(b + "ffn_norm.weight", {E}, Init::ones);
        add(b + "ffn_up.weight", {E, F}, Init::random);
    }

    const bool quantized = type != md::Type::F32 && type != md::Type::F16 && type != md::Type::BF16;
    md::qref::MixState ms;
    ms.ftype = md::quant_ftype_of(type);
    ms.tied = s.tied;
    ms.n_gqa = s.n_head / s.n_head_kv;
    ms.n_layer = s.n_layer;
    ms.n_attention_wv = s.n_layer;
    for (TensorPlan& t : out) {
        md::GgufTensor g;
        g.name = t.name;
        g.n_dims = static_cast<int>(t.ne.size());
        for (size_t d = 0; d < t.ne.size(); ++d) g.ne[d] = t.ne[d];
        t.type = md::Type::F32;
        if (md::qref::tensor_allows_quantization(g)) {
            t.type = type;
            if (quantized && mix) t.type = md::qref::mixture_type(ms, t.type, g, md::qref::tensor_category(g.name));
            t.type = md::qref::fallback_type(g, t.type);
        }
        int64_t rows = 1;
        for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
        t.nbytes = static_cast<size_t>(rows) * md::row_bytes(t.type, t.ne[0]);
    }
    return out;
}

// Generates, converts and writes one tensor at its place in the open file, a
// slice of rows at a time, on `threads` threads. The values of a row depend
// only on the seed, the tensor and the row.
minigpt::Status write_tensor(std::FILE* f, const TensorPlan& t, size_t index, uint64_t seed, int threads,
                             const Shape& s) {
    const int64_t n = t.ne[0];
    int64_t rows = 1;
    for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
    const size_t rb = md::row_bytes(t.type, n);
    const int64_t rows_per_slice = std::max<int64_t>(1, (int64_t(1) << 22) / n);
    std::vector<float> x(static_cast<size_t>(std::min(rows, rows_per_slice) * n));
    std::vector<uint8_t> q(static_cast<size_t>(std::min(rows, rows_per_slice)) * rb);
    if (t.file_offset > static_cast<uint64_t>(LONG_MAX) || std::fseek(f, static_cast<long>(t.file_offset), SEEK_SET) != 0)
        return md::error(minigpt::StatusCode::io_error, "cannot seek to tensor '%s'", t.name.c_str());
    for (int64_t r0 = 0; r0 < rows; r0 += rows_per_slice) {
        const int64_t nr = std::min(rows_per_slice, rows - r0);
        const int nt = static_cast<int>(std::min<int64_t>(threads, nr));
        std::vector<minigpt::Status> st(static_cast<size_t>(nt));
        run_threads(nt, [&](int ti) {
            const int64_t a = nr * ti / nt, b = nr * (ti + 1) / nt;
            for (int64_t r = a; r < b; ++r) {
                float* row = x.data() + r * n;
                if (t.init == Init::ones) {
                    std::fill(row, row + n, 1.0f);
                } else if (t.init == Init::rope_llama3) {
                    fill_rope_llama3(row, n, s.head_dim, s.rope_base);
                } else {
                    uint64_t h = seed ^ (0xA0761D6478BD642Full * (index + 1));
                    h ^= splitmix64(h) + static_cast<uint64_t>(r0 + r) * 0xE7037ED1A0B428DBull;
                    fill_random(row, n, splitmix64(h), 0.02f);
                }
            }
            st[static_cast<size_t>(ti)] = md::quantize_weights(t.type, x.data() + a * n, q.data() + a * rb, b - a, n);
        });
        for (const minigpt::Status& e : st)
            if (!e.ok()) return md::error(e.code(), "tensor '%s': %s", t.name.c_str(), e.message().c_str());
        const size_t nbytes = static_cast<size_t>(nr) * rb;
        if (std::fwrite(q.data(), 1, nbytes, f) != nbytes)
            return md::error(minigpt::StatusCode::io_error, "write failed in tensor '%s'", t.name.c_str());
    }
    return minigpt::Status();
}

int make_model(const std::string& shape_name, const std::string& type_name, const std::string& path, uint64_t seed,
               bool mix, int threads) {
    const Shape* s = nullptr;
    for (const Shape& sh : kShapes) {
        std::string a = sh.name, b = shape_name;
        for (char& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (char& c : b) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (a == b) s = &sh;
    }
    if (!s) fail("unknown shape '" + shape_name + "' (use " + shape_names() + ")");
    md::Type type;
    if (type_name.empty()) fail("--make-model needs --type TYPE");
    if (!md::parse_quant_type(type_name, type))
        fail("unknown type '" + type_name + "' (use F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL)");
    if (path.empty()) fail("--make-model needs -o OUT.gguf");
    const auto t0 = std::chrono::steady_clock::now();

    md::GgufWriter w;
    const std::string a = s->arch;
    w.set_string("general.architecture", a);
    w.set_string("general.name", std::string(s->name) + " (random weights)");
    w.set_string("general.description",
                 "Random weights in the shape of " + std::string(s->name) + ", for speed tests only; the output is meaningless.");
    w.set_u32("general.quantization_version", 2);
    w.set_u32("general.file_type", file_type_of(type, mix));
    w.set_u32(a + ".context_length", static_cast<uint32_t>(s->n_ctx));
    w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s->n_embd));
    w.set_u32(a + ".block_count", static_cast<uint32_t>(s->n_layer));
    w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s->n_ff));
    w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(s->n_head));
    w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s->n_head_kv));
    w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(s->head_dim));
    w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(s->head_dim));
    w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(s->head_dim));
    w.set_f32(a + ".rope.freq_base", s->rope_base);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", s->norm_eps);
    w.set_u32(a + ".vocab_size", static_cast<uint32_t>(s->n_vocab));
    add_vocabulary(w, s->n_vocab);

    std::vector<TensorPlan> plan = plan_tensors(*s, type, mix);
    // The writer lays the file out; every tensor is first written as zeros
    // (from one shared zero-filled block that is never touched, so it takes no
    // memory), then filled in place below, one slice at a time.
    size_t max_bytes = 0;
    uint64_t total_bytes = 0, n_params = 0;
    for (const TensorPlan& t : plan) {
        max_bytes = std::max(max_bytes, t.nbytes);
        total_bytes += t.nbytes;
        int64_t n = 1;
        for (int64_t d : t.ne) n *= d;
        n_params += static_cast<uint64_t>(n);
    }
    void* zeros = std::calloc(max_bytes, 1);
    if (!zeros) fail("cannot allocate " + std::to_string(max_bytes) + " bytes");
    minigpt::Status st;
    for (const TensorPlan& t : plan) {
        st = w.add_tensor_view(t.name, t.type, t.ne, zeros, t.nbytes);
        if (!st.ok()) fail(st.to_string());
    }
    st = w.write_file(path);
    std::free(zeros);
    if (!st.ok()) fail(st.to_string());
    {
        md::FileBytes bytes;
        st = bytes.open(path, true);
        md::GgufFile g;
        if (st.ok()) st = g.parse(bytes.data(), bytes.size());
        if (!st.ok()) fail(path + ": " + st.to_string());
        if (g.tensors.size() != plan.size()) fail(path + ": the written file has a different tensor count");
        for (TensorPlan& t : plan) {
            const md::GgufTensor* gt = g.find_tensor(t.name);
            if (!gt || gt->nbytes != t.nbytes) fail(path + ": tensor '" + t.name + "' is not where it should be");
            t.file_offset = g.data_offset + gt->offset;
        }
    }

    std::printf("%s: %s, %s%s, %.1fM parameters, %.2f MiB of tensor data, seed %llu\n", prog_name(), s->name,
                md::type_name(type), mix ? " (llama.cpp mixture)" : "", n_params / 1e6, mib(total_bytes),
                (unsigned long long)seed);
    // Say which weights did not get the requested type, and why.
    std::vector<std::pair<std::pair<md::Type, int64_t>, int>> others;  // (type, row length) -> tensor count
    for (const TensorPlan& t : plan) {
        if (t.ne.size() < 2 || t.type == type) continue;
        const std::pair<md::Type, int64_t> k(t.type, t.ne[0]);
        auto it = std::find_if(others.begin(), others.end(), [&](const auto& o) { return o.first == k; });
        if (it != others.end())
            ++it->second;
        else
            others.push_back({k, 1});
    }
    for (const auto& o : others) {
        const long long row = static_cast<long long>(o.first.second);
        if (!mix)
            std::printf("%s: %d tensors with rows of %lld are %s: %lld is not a multiple of the %s block size, "
                        "so they fall back as in llama-quantize\n",
                        prog_name(), o.second, row, md::type_name(o.first.first), row, md::type_name(type));
        else
            std::printf("%s: %d tensors with rows of %lld are %s (the mixture or a fallback)\n", prog_name(), o.second,
                        row, md::type_name(o.first.first));
    }

    std::FILE* f = std::fopen(path.c_str(), "r+b");
    if (!f) fail(path + ": cannot open for writing: " + std::strerror(errno));
    for (size_t i = 0; i < plan.size(); ++i) {
        st = write_tensor(f, plan[i], i, seed, threads, *s);
        if (!st.ok()) {
            std::fclose(f);
            fail(path + ": " + st.to_string());
        }
    }
    if (std::fclose(f) != 0) fail(path + ": write failed");

    // Check that the library loads what was written.
    std::shared_ptr<minigpt::Model> model;
    st = minigpt::Model::load(path, {}, model);
    if (!st) fail("the written model does not load: " + st.to_string());
    std::printf("%s: wrote %s: %s, %.2f MiB, %.1f s\n", prog_name(), path.c_str(), model_type(model->info()).c_str(),
                mib(model->info().weight_bytes), ms_since(t0) / 1000.0);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-bench";
    std::vector<std::string> models;
    int n_prompt = 128, n_gen = 64, n_depth = 0, reps = 5;
    std::vector<int> thread_list;
    std::string output = "md", make_shape, make_type;
    CacheTypeArgs cache_args;
    bool output_set = false, make = false, mix = false, seed_set = false, bandwidth = true, use_mmap = true;
    uint64_t seed = 42;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::printf(
                "usage: minigpt-bench -m MODEL [-m MODEL...] [-p N_PROMPT] [-n N_GEN] [-d N_DEPTH] [-t THREADS[,THREADS...]] "
                "[-r REPETITIONS] [-ctk f32|f16] [-mmp 0|1] [-o md|jsonl] [--no-bandwidth]\n"
                "       minigpt-bench --make-model SHAPE --type TYPE -o OUT.gguf [--seed N] [--mix] [-t THREADS]\n"
                "\n"
                "Measures prompt processing (ppN) and generation (tgN) speed, the memory read\n"
                "bandwidth (skipped with --no-bandwidth) and, for tgN, the weight bytes read per\n"
                "token and the fraction of the bandwidth that generation uses (the bandwidth\n"
                "measured again before each tgN repetition). With a list of thread counts\n"
                "(-t 1,2), they take turns within each repetition. -d N first fills the context\n"
                "with N tokens (not timed) before each repetition: tests named 'tg64 @ d512'.\n"
                "-ctk / -ctv: the KV cache's type, f32 (default) or f16 (keys and values share it).\n"
                "\n"
                "--make-model writes a model of a real shape with RANDOM weights (for speed\n"
                "tests; its output is meaningless). SHAPE: %s.\n"
                "TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL, given\n"
                "to every 2-D weight (rows that do not fit the type's block fall back as in\n"
                "llama-quantize); --mix uses llama.cpp's default mixture for TYPE instead.\n",
                shape_names().c_str());
            return 0;
        } else if (a == "-m" || a == "--model") {
            models.push_back(value());
        } else if (a == "-p" || a == "--n-prompt") {
            n_prompt = parse_int(a, value(), 0, 1 << 16);
        } else if (a == "-n" || a == "--n-gen") {
            n_gen = parse_int(a, value(), 0, 1 << 16);
        } else if (a == "-d" || a == "--n-depth") {
            n_depth = parse_int(a, value(), 0, 1 << 20);
        } else if (a == "-t" || a == "--threads") {
            const std::string list = value();
            thread_list.clear();
            for (size_t b = 0; b <= list.size();) {
                size_t e = list.find(',', b);
                if (e == std::string::npos) e = list.size();
                thread_list.push_back(parse_int(a, list.substr(b, e - b).c_str(), 0, 1024));
                b = e + 1;
            }
        } else if (a == "-r" || a == "--repetitions") {
            reps = parse_int(a, value(), 1, 1000);
        } else if (a == "-o" || a == "--output") {
            output = value();
            output_set = true;
        } else if (a == "-mmp" || a == "--mmap") {
            use_mmap = parse_int(a, value(), 0, 1) != 0;
        } else if (a == "--no-bandwidth") {
            bandwidth = false;
        } else if (a == "--make-model") {
            make = true;
            make_shape = value();
        } else if (a == "--type") {
            make_type = value();
        } else if (a == "--seed") {
            const char* v = value();
            long long s = 0;
            if (parse_long_long(v, s) != IntParse::ok || s < 0) fail("invalid seed '" + std::string(v) + "'");
            seed = static_cast<uint64_t>(s);
            seed_set = true;
        } else if (a == "--mix") {
            mix = true;
        } else if (!cache_args.parse(a, value)) {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (make) {
        if (!models.empty()) fail("--make-model does not take -m");
        if (thread_list.size() > 1) fail("--make-model takes one thread count");
        const int threads = thread_list.empty() || thread_list[0] == 0 ? hardware_threads() : thread_list[0];
        return make_model(make_shape, make_type, output_set ? output : std::string(), seed, mix, threads);
    }
    if (!make_type.empty() || seed_set || mix) fail("--type, --seed and --mix go with --make-model");
    if (output != "md" && output != "jsonl") fail("output must be md or jsonl");
    if (models.empty()) fail("no model given: use -m FILE");
    const std::string& cache = cache_args.type();

    if (thread_list.empty()) thread_list.push_back(0);
    for (int& t : thread_list)
        if (t == 0) t = hardware_threads();
    BandwidthProbe probe;
    if (bandwidth && !probe.init()) fail("the memory bandwidth test could not run (out of memory)");
    auto measure = [&](int threads, int rounds) {
        const double gbs = probe.measure(threads, rounds);
        if (gbs <= 0) fail("the memory bandwidth test read wrong values");
        return gbs;
    };
    std::vector<double> bws(thread_list.size(), 0.0);  // before the tests, one per thread count
    for (size_t c = 0; bandwidth && c < thread_list.size(); ++c) bws[c] = measure(thread_list[c], kBandwidthRounds);

    std::vector<Result> results;
    for (const std::string& path : models) {
        std::shared_ptr<minigpt::Model> model;
        minigpt::ModelParams mp;
        mp.use_mmap = use_mmap;
        minigpt::Status st = minigpt::Model::load(path, mp, model);
        if (!st) fail("cannot load model '" + path + "': " + st.to_string());
        uint64_t per_token = 0;
        std::string err;
        if (!weight_bytes_per_token(path, per_token, err)) fail("cannot read model '" + path + "': " + err);
        // One context per thread count.
        std::vector<std::unique_ptr<minigpt::Context>> ctxs;
        for (int t : thread_list) {
            minigpt::ContextParams cp;
            cp.n_ctx = n_depth + std::max(n_prompt, n_gen) + 1;
            cp.n_batch = std::max({1, n_prompt, std::min(n_depth, 512)});
            cp.n_threads = t;
            cp.kv_f16 = cache == "f16";
            ctxs.emplace_back();
            st = minigpt::Context::create(model, cp, ctxs.back());
            if (!st) fail("cannot create the context: " + st.to_string());
            const minigpt::Context& ctx = *ctxs.back();
            std::fprintf(stderr,
                         "%s: %s: %.2f MiB of weights (%s), %.2f MiB read per generated token; "
                         "context %d tokens: KV cache %.2f MiB (%s), scratch %.2f MiB, %d threads\n",
                         prog_name(), path.c_str(), mib(model->info().weight_bytes), use_mmap ? "memory-mapped" : "read into memory",
                         mib(per_token), ctx.n_ctx(), mib(ctx.kv_cache_bytes()), cache.c_str(), mib(ctx.scratch_bytes()),
                         ctx.n_threads());
        }
        uint64_t rng = 42;
        std::vector<int32_t> toks(static_cast<size_t>(n_depth + std::max(n_prompt, n_gen)));
        for (auto& t : toks) t = static_cast<int32_t>((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) % model->n_vocab();

        for (int kind = 0; kind < 2; ++kind) {
            const int n = kind == 0 ? n_prompt : n_gen;
            if (n == 0) continue;
            // tg: the bandwidth is measured again right before each repetition,
            // which then counts against that figure (the machine's conditions drift).
            const bool per_rep_bw = bandwidth && kind == 1;
            std::vector<std::vector<double>> tps(ctxs.size()), bw(ctxs.size()), used(ctxs.size());
            for (int r = -1; r < reps; ++r) {  // r = -1 is a warm-up
                for (size_t c = 0; c < ctxs.size(); ++c) {
                    minigpt::Context& ctx = *ctxs[c];
                    if (per_rep_bw && r >= 0) bw[c].push_back(measure(ctx.n_threads(), kRepetitionRounds));
                    ctx.reset();
                    if (n_depth > 0) st = ctx.eval(toks.data(), static_cast<size_t>(n_depth));
                    if (!st) fail("evaluation failed: " + st.to_string());
                    const int32_t* tt = toks.data() + n_depth;
                    const auto t0 = std::chrono::steady_clock::now();
                    if (kind == 0) {
                        st = ctx.eval(tt, static_cast<size_t>(n));
                    } else {
                        for (int i = 0; i < n && st; ++i) st = ctx.eval(&tt[i], 1);
                    }
                    if (!st) fail("evaluation failed: " + st.to_string());
                    const double s = ms_since(t0) / 1000.0;
                    if (r < 0) continue;
                    tps[c].push_back(n / s);
                    if (per_rep_bw) used[c].push_back(static_cast<double>(per_token) * (n / s) / (bw[c].back() * 1e9));
                }
            }
            for (size_t c = 0; c < ctxs.size(); ++c) {
                Result res;
                res.model = path;
                res.type = model_type(model->info());
                res.test = (kind == 0 ? "pp" : "tg") + std::to_string(n);
                if (n_depth > 0) res.test += " @ d" + std::to_string(n_depth);
                res.n_depth = n_depth;
                res.n_prompt = kind == 0 ? n : 0;
                res.n_gen = kind == 1 ? n : 0;
                res.threads = ctxs[c]->n_threads();
                res.weight_bytes_per_token = per_token;
                res.bandwidth_gbs = bws[c];
                if (per_rep_bw) {
                    res.bandwidth_gbs = 0;
                    for (size_t i = 0; i < bw[c].size(); ++i) {
                        res.bandwidth_gbs += bw[c][i] / bw[c].size();
                        res.fraction += used[c][i] / used[c].size();
                    }
                }
                const std::vector<double>& v = tps[c];
                for (double x : v) res.mean += x / v.size();
                for (double x : v) res.stddev += (x - res.mean) * (x - res.mean);
                res.stddev = v.size() > 1 ? std::sqrt(res.stddev / (v.size() - 1)) : 0;
                results.push_back(res);
            }
        }
#if defined(__linux__)
        double resident = 0, huge = 0;
        if (use_mmap && mapped_pages(path, resident, huge))
            std::fprintf(stderr, "%s: %s: %.2f of the %.2f MiB of the file in memory are mapped in 2 MiB pages\n", prog_name(),
                         path.c_str(), huge / 1024, resident / 1024);
#endif
    }

    if (output == "md") {
        for (size_t c = 0; bandwidth && c < thread_list.size(); ++c)
            std::printf("memory read bandwidth: %.2f GB/s (%d threads, %.0f MiB buffer, best of %d rounds of %d ways of reading)\n",
                        bws[c], thread_list[c], mib(BandwidthProbe::kBytes), kBandwidthRounds, BandwidthProbe::kWays);
        if (bandwidth)
            std::printf("(tg tests: measured again before each repetition, best of %d rounds; the table gives the mean\n"
                        "of those and the mean fraction of them that the repetitions used)\n\n",
                        kRepetitionRounds);
        if (cache != "f32") std::printf("KV cache: %s\n\n", cache.c_str());
        std::printf("| model | type | threads | test | t/s | weights/token | bandwidth used |\n"
                    "|---|---|---:|---:|---:|---:|---:|\n");
        for (const Result& r : results) {
            char per_tok[32] = "", used[64] = "";
            if (r.n_gen > 0) std::snprintf(per_tok, sizeof per_tok, "%.2f MiB", mib(r.weight_bytes_per_token));
            if (r.n_gen > 0 && r.bandwidth_gbs > 0)
                std::snprintf(used, sizeof used, "%.1f%% of %.2f GB/s", 100.0 * r.fraction, r.bandwidth_gbs);
            std::printf("| %s | %s | %d | %s | %.2f ± %.2f | %s | %s |\n", r.model.c_str(), r.type.c_str(), r.threads,
                        r.test.c_str(), r.mean, r.stddev, per_tok, used);
        }
    } else {
        for (const Result& r : results) {
            std::printf("{\"model_filename\": \"%s\", \"model_type\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, "
                        "\"n_threads\": %d, \"type_k\": \"%s\", \"type_v\": \"%s\", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, "
                        "\"weight_bytes_per_token\": %llu",
                        r.model.c_str(), r.type.c_str(), r.n_prompt, r.n_gen, r.n_depth, r.threads, cache.c_str(),
                        cache.c_str(), r.mean, r.stddev,
                        (unsigned long long)r.weight_bytes_per_token);
            if (r.bandwidth_gbs > 0) {
                std::printf(", \"mem_bandwidth_gbs\": %.6f", r.bandwidth_gbs);
                if (r.n_gen > 0) std::printf(", \"bandwidth_fraction\": %.6f", r.fraction);
            }
            std::printf("}\n");
        }
    }
    return 0;
}
