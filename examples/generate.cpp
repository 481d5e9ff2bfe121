// minigpt-generate: continue a prompt with a GGUF model, streaming the text
// to stdout. The flags follow llama.cpp's llama-cli / llama-simple.
//
//   minigpt-generate -m model.gguf -p "Once upon a time" -n 64 --temp 0
//
// stdout receives exactly the prompt followed by the generated text; the load
// report, the statistics and errors go to stderr.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace examples;

struct Options {
    std::string model;
    std::string prompt = "Once upon a time";
    int n_predict = 128;
    int n_threads = 0;
    int n_ctx = 0;
    int n_batch = 512;
    bool use_mmap = true;
    CacheTypeArgs cache;
    bool random_seed = false;
    minigpt::SamplerParams sampling;
};

void usage(FILE* out) {
    const minigpt::SamplerParams d;
#ifdef MINIGPT_DEFAULT_MODEL
    const std::string model_default = std::string(" (default: ") + MINIGPT_DEFAULT_MODEL + ")";
#else
    const std::string model_default;
#endif
    std::fprintf(out,
                 "usage: %s [options]\n"
                 "\n"
                 "Continues a prompt with a GGUF language model and prints the text.\n"
                 "\n"
                 "options:\n"
                 "  -h, --help                show this help and exit\n"
                 "  -m, --model FILE          model file (GGUF)%s\n"
                 "  -p, --prompt TEXT         prompt (default: \"Once upon a time\")\n"
                 "  -f, --file FILE           read the prompt from a file (one trailing newline is dropped)\n"
                 "  -n, --n-predict N         tokens to generate (default: 128; -1 = until end of text or full context)\n"
                 "  -t, --threads N           threads (default: 0 = all hardware threads)\n"
                 "  -c, --ctx-size N          context size in tokens (default: 0 = the model's training context)\n"
                 "  -b, --batch-size N        prompt tokens per forward pass (default: 512)\n"
                 "  -s, --seed N              sampling seed (default: %llu; -1 = random)\n"
                 "      --temp T              temperature (default: %.2f; 0 = greedy)\n"
                 "      --top-k N             top-k sampling (default: %d; 0 = off)\n"
                 "      --top-p P             top-p sampling (default: %.2f; 1.0 = off)\n"
                 "      --min-p P             min-p sampling (default: %.2f; 0.0 = off)\n"
                 "      --repeat-penalty X    penalty for repeated tokens (default: %.2f; 1.0 = off)\n"
                 "      --repeat-last-n N     tokens the penalty looks back at (default: %d; 0 = off, -1 = all)\n"
                 "      --no-mmap             read the model into memory instead of mapping it\n"
                 "  -ctk, --cache-type-k T    KV cache type, f32 or f16 (default: f32; keys and values share it)\n"
                 "  -ctv, --cache-type-v T    the same setting, for llama.cpp's spelling\n",
                 "minigpt-generate", model_default.c_str(), static_cast<unsigned long long>(d.seed),
                 static_cast<double>(d.temperature), d.top_k, static_cast<double>(d.top_p),
                 static_cast<double>(d.min_p), static_cast<double>(d.repeat_penalty), d.repeat_last_n);
}

Options parse_args(int argc, char** argv) {
    Options o;
#ifdef MINIGPT_DEFAULT_MODEL
    o.model = MINIGPT_DEFAULT_MODEL;
#endif
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        } else if (a == "-m" || a == "--model") {
            o.model = value();
        } else if (a == "-p" || a == "--prompt") {
            o.prompt = value();
        } else if (a == "-f" || a == "--file") {
            const std::string path = value();
            if (!read_text_file(path, o.prompt)) fail("cannot read prompt file '" + path + "': " + std::strerror(errno));
            if (!o.prompt.empty() && o.prompt.back() == '\n') o.prompt.pop_back();
        } else if (a == "-n" || a == "--n-predict") {
            o.n_predict = parse_int(a, value(), -1, INT_MAX);
        } else if (a == "-t" || a == "--threads") {
            o.n_threads = parse_int(a, value(), -1, 1024);
            if (o.n_threads < 0) o.n_threads = 0;  // llama.cpp's -1: automatic
        } else if (a == "-c" || a == "--ctx-size") {
            o.n_ctx = parse_int(a, value(), 0, INT_MAX);
        } else if (a == "-b" || a == "--batch-size") {
            o.n_batch = parse_int(a, value(), 1, INT_MAX);
        } else if (a == "-s" || a == "--seed") {
            const char* s = value();
            if (std::strcmp(s, "-1") == 0) {
                o.random_seed = true;
            } else {
                errno = 0;
                char* end = nullptr;
                unsigned long long v = (*s >= '0' && *s <= '9') ? std::strtoull(s, &end, 10) : 0;
                if (!(*s >= '0' && *s <= '9') || *end != '\0') fail("invalid seed '" + std::string(s) + "' for " + a);
                if (errno == ERANGE) fail("value " + std::string(s) + " for " + a + " is out of range");
                o.sampling.seed = v;
                o.random_seed = false;
            }
        } else if (a == "--temp") {
            o.sampling.temperature = parse_float(a, value(), 0.0, 1e6);
        } else if (a == "--top-k") {
            o.sampling.top_k = parse_int(a, value(), 0, INT_MAX);
        } else if (a == "--top-p") {
            o.sampling.top_p = parse_float(a, value(), 0.0, 1.0);
        } else if (a == "--min-p") {
            o.sampling.min_p = parse_float(a, value(), 0.0, 1.0);
        } else if (a == "--repeat-penalty") {
            o.sampling.repeat_penalty = parse_float(a, value(), 0.0, 1e6, true);
        } else if (a == "--repeat-last-n") {
            o.sampling.repeat_last_n = parse_int(a, value(), -1, INT_MAX);
        } else if (a == "--no-mmap") {
            o.use_mmap = false;
        } else if (!o.cache.parse(a, value)) {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (o.model.empty()) fail("no model given: use -m FILE");
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    examples::prog_name() = "minigpt-generate";
    Options opt = parse_args(argc, argv);
    if (opt.random_seed) {
        const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        opt.sampling.seed = t ^ (static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) << 1);
    }

    // Load.
    minigpt::ModelParams mp;
    mp.use_mmap = opt.use_mmap;
    std::shared_ptr<minigpt::Model> model;
    const auto t_load = std::chrono::steady_clock::now();
    minigpt::Status st = minigpt::Model::load(opt.model, mp, model);
    if (!st) fail("cannot load model '" + opt.model + "': " + st.to_string());

    // Tokenize the prompt (with BOS when the model wants one).
    std::vector<int32_t> prompt;
    st = model->tokenize(opt.prompt, prompt, /*add_special=*/true);
    if (!st) fail("cannot tokenize the prompt: " + st.to_string());
    if (prompt.empty()) fail("the prompt is empty (it gives no tokens)");

    // Without -c: the training context, enlarged when prompt + n_predict need more.
    minigpt::ContextParams cp;
    cp.n_ctx = opt.n_ctx;
    if (opt.n_ctx == 0 && opt.n_predict > 0) {
        const long long need = static_cast<long long>(prompt.size()) + opt.n_predict;
        const int train = model->info().n_ctx_train > 0 ? std::min(model->info().n_ctx_train, 4096) : 4096;
        if (need > train) cp.n_ctx = static_cast<int>(std::min<long long>(need, 1 << 20));
    }
    cp.n_batch = opt.n_batch;
    cp.kv_f16 = opt.cache.type() == "f16";
    cp.n_threads = opt.n_threads;
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, cp, ctx);
    if (!st) fail("cannot create the context: " + st.to_string());
    const double load_ms = ms_since(t_load);

    if (prompt.size() >= static_cast<size_t>(ctx->n_ctx())) {
        fail("the prompt has " + std::to_string(prompt.size()) + " tokens but the context holds only " +
             std::to_string(ctx->n_ctx()) + " (the prompt must be shorter; use -c to enlarge the context)");
    }
    // Report only once nothing can fail any more: an error is always one line.
    const minigpt::ModelInfo& info = model->info();
    std::fprintf(stderr, "minigpt: loaded %s (%s, %llu params, %.2f MB) in %.2f ms\n", opt.model.c_str(),
                 info.architecture.c_str(), static_cast<unsigned long long>(info.n_params), mib(info.weight_bytes),
                 load_ms);
    std::fprintf(stderr, "minigpt: context %d tokens (trained %d), KV cache %.2f MB (%s), scratch %.2f MB, %d threads\n",
                 ctx->n_ctx(), info.n_ctx_train, mib(ctx->kv_cache_bytes()), cp.kv_f16 ? "f16" : "f32",
                 mib(ctx->scratch_bytes()), ctx->n_threads());
    const minigpt::SamplerParams& sp = opt.sampling;
    std::fprintf(stderr,
                 "minigpt: sampling: temp %.3f, top_k %d, top_p %.3f, min_p %.3f, repeat_penalty %.3f, "
                 "repeat_last_n %d, seed %llu\n",
                 static_cast<double>(sp.temperature), sp.top_k, static_cast<double>(sp.top_p),
                 static_cast<double>(sp.min_p), static_cast<double>(sp.repeat_penalty), sp.repeat_last_n,
                 static_cast<unsigned long long>(sp.seed));
    std::fprintf(stderr, "minigpt: prompt %zu tokens, generating %d%s\n\n", prompt.size(), opt.n_predict,
                 opt.n_predict < 0 ? " (until end of text)" : "");

    // Generate.
    std::fwrite(opt.prompt.data(), 1, opt.prompt.size(), stdout);
    std::fflush(stdout);
    minigpt::Sampler sampler(opt.sampling);
    minigpt::GenerateParams gp;
    gp.n_predict = opt.n_predict;
    minigpt::GenerateStats stats;
    st = minigpt::generate(*ctx, sampler, prompt, gp,
                           [](std::string_view text) {
                               std::fwrite(text.data(), 1, text.size(), stdout);
                               std::fflush(stdout);
                               return true;
                           },
                           &stats);
    std::fflush(stdout);
    if (!st) fail("generation failed: " + st.to_string());

    std::fprintf(stderr, "\n\n");
    std::fprintf(stderr, "minigpt: load time        = %10.2f ms\n", load_ms);
    std::fprintf(stderr, "minigpt: prompt eval time = %10.2f ms / %5d tokens (%8.2f tokens/s)\n",
                 stats.prompt_seconds * 1000.0, stats.n_prompt, stats.prompt_tps());
    std::fprintf(stderr, "minigpt: generation time  = %10.2f ms / %5d tokens (%8.2f tokens/s)\n",
                 stats.generate_seconds * 1000.0, stats.n_generated, stats.generate_tps());
    if (stats.hit_eog) std::fprintf(stderr, "minigpt: stopped at end of text\n");
    return 0;
}
