// minigpt-perplexity: perplexity of a text file, computed as llama.cpp's
// llama-perplexity does (non-overlapping chunks of CTX tokens, each evaluated
// from an empty cache with BOS first, the second half of each chunk scored).
//
//   minigpt-perplexity -m model.gguf -f text.txt -c 128
//
// Progress goes to stderr; the last line on stdout is "PPL = <value> +/- <error>".
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <vector>

namespace {

using namespace examples;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: minigpt-perplexity -m MODEL -f TEXT [options]\n"
                 "\n"
                 "Computes the perplexity of a model on a text file.\n"
                 "\n"
                 "options:\n"
                 "  -h, --help            show this help and exit\n"
                 "  -m, --model FILE      model file (GGUF)\n"
                 "  -f, --file FILE       the text (read as it is)\n"
                 "  -c, --ctx-size N      chunk length in tokens (default: 512, or the model's context if smaller)\n"
                 "  -b, --batch-size N    tokens per forward pass (default: the chunk length)\n"
                 "  -t, --threads N       threads (default: 0 = all hardware threads)\n"
                 "      --no-mmap         read the model into memory instead of mapping it\n");
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-perplexity";
    std::string model_path, text_path;
    int n_ctx = 0, n_batch = 0, n_threads = 0;
    bool use_mmap = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else if (a == "-m" || a == "--model") {
            model_path = value();
        } else if (a == "-f" || a == "--file") {
            text_path = value();
        } else if (a == "-c" || a == "--ctx-size") {
            n_ctx = parse_int(a, value(), 4, 1 << 20);
        } else if (a == "-b" || a == "--batch-size") {
            n_batch = parse_int(a, value(), 1, INT_MAX);
        } else if (a == "-t" || a == "--threads") {
            n_threads = parse_int(a, value(), -1, 1024);
            if (n_threads < 0) n_threads = 0;
        } else if (a == "--no-mmap") {
            use_mmap = false;
        } else {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (model_path.empty()) fail("no model given: use -m FILE");
    if (text_path.empty()) fail("no text given: use -f FILE");
    std::string text;
    if (!read_text_file(text_path, text)) fail("cannot read '" + text_path + "': " + std::strerror(errno));

    minigpt::ModelParams mp;
    mp.use_mmap = use_mmap;
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(model_path, mp, model);
    if (!st) fail("cannot load model '" + model_path + "': " + st.to_string());
    if (n_ctx == 0) n_ctx = std::min(512, model->info().n_ctx_train > 0 ? model->info().n_ctx_train : 512);

    std::vector<int32_t> tokens;
    st = model->tokenize(text, tokens, /*add_special=*/true);
    if (!st) fail("cannot tokenize the text: " + st.to_string());
    if (tokens.size() < static_cast<size_t>(n_ctx))
        fail("the text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
             std::to_string(n_ctx) + " (use a smaller -c)");

    minigpt::ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch > 0 ? n_batch : n_ctx;
    cp.n_threads = n_threads;
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, cp, ctx);
    if (!st) fail("cannot create the context: " + st.to_string());

    const int n_chunks = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
    std::fprintf(stderr, "minigpt: %zu tokens, %d chunks of %d, batch %d, %d threads\n", tokens.size(), n_chunks,
                 n_ctx, cp.n_batch, ctx->n_threads());
    const auto t0 = std::chrono::steady_clock::now();
    minigpt::PerplexityResult r;
    st = minigpt::perplexity(*ctx, tokens, r, [&](int chunk, int total, double running) {
        const double s = ms_since(t0) / 1000.0;
        std::fprintf(stderr, "[%d/%d] %.4f  (%.1f s, %.0f tokens/s)\n", chunk, total, running, s,
                     s > 0 ? chunk * static_cast<double>(n_ctx) / s : 0.0);
    });
    if (!st) fail("evaluation failed: " + st.to_string());
    std::printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    return 0;
}
