// minigpt-bench: prompt-processing and generation speed, in the style of
// llama-bench (the same test names and the same way of counting).
//
//   minigpt-bench -m model.gguf [-m other.gguf] -p 128 -n 64 -t 2 -r 5 [-o md|jsonl]
//
// ppN: N prompt tokens evaluated in one batch from an empty context.
// tgN: N tokens evaluated one at a time from an empty context.
// Token ids are drawn at random (the speed does not depend on them).
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <vector>

namespace {

using namespace examples;

struct Result {
    std::string model, type, test;
    int n_prompt = 0, n_gen = 0, threads = 0;
    double mean = 0, stddev = 0;
};

std::string model_type(const minigpt::ModelInfo& info) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s %.1fM %s", info.architecture.c_str(), info.n_params / 1e6,
                  info.type_summary.c_str());
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-bench";
    std::vector<std::string> models;
    int n_prompt = 128, n_gen = 64, threads = 0, reps = 5;
    std::string output = "md";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::printf("usage: minigpt-bench -m MODEL [-m MODEL...] [-p N_PROMPT] [-n N_GEN] [-t THREADS] "
                        "[-r REPETITIONS] [-o md|jsonl]\n");
            return 0;
        } else if (a == "-m" || a == "--model") {
            models.push_back(value());
        } else if (a == "-p" || a == "--n-prompt") {
            n_prompt = parse_int(a, value(), 0, 1 << 16);
        } else if (a == "-n" || a == "--n-gen") {
            n_gen = parse_int(a, value(), 0, 1 << 16);
        } else if (a == "-t" || a == "--threads") {
            threads = parse_int(a, value(), 0, 1024);
        } else if (a == "-r" || a == "--repetitions") {
            reps = parse_int(a, value(), 1, 1000);
        } else if (a == "-o" || a == "--output") {
            output = value();
            if (output != "md" && output != "jsonl") fail("output must be md or jsonl");
        } else {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (models.empty()) fail("no model given: use -m FILE");

    std::vector<Result> results;
    for (const std::string& path : models) {
        std::shared_ptr<minigpt::Model> model;
        minigpt::Status st = minigpt::Model::load(path, {}, model);
        if (!st) fail("cannot load model '" + path + "': " + st.to_string());
        minigpt::ContextParams cp;
        cp.n_ctx = std::max(n_prompt, n_gen) + 1;
        cp.n_batch = std::max(1, n_prompt);
        cp.n_threads = threads;
        std::unique_ptr<minigpt::Context> ctx;
        st = minigpt::Context::create(model, cp, ctx);
        if (!st) fail("cannot create the context: " + st.to_string());
        uint64_t rng = 42;
        std::vector<int32_t> toks(static_cast<size_t>(std::max(n_prompt, n_gen)));
        for (auto& t : toks) t = static_cast<int32_t>((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) % model->n_vocab();

        for (int kind = 0; kind < 2; ++kind) {
            const int n = kind == 0 ? n_prompt : n_gen;
            if (n == 0) continue;
            std::vector<double> tps;
            for (int r = -1; r < reps; ++r) {  // r = -1 is a warm-up
                ctx->reset();
                const auto t0 = std::chrono::steady_clock::now();
                if (kind == 0) {
                    st = ctx->eval(toks.data(), static_cast<size_t>(n));
                } else {
                    for (int i = 0; i < n && st; ++i) st = ctx->eval(&toks[static_cast<size_t>(i)], 1);
                }
                if (!st) fail("evaluation failed: " + st.to_string());
                const double s = ms_since(t0) / 1000.0;
                if (r >= 0) tps.push_back(n / s);
            }
            Result res;
            res.model = path;
            res.type = model_type(model->info());
            res.test = (kind == 0 ? "pp" : "tg") + std::to_string(n);
            res.n_prompt = kind == 0 ? n : 0;
            res.n_gen = kind == 1 ? n : 0;
            res.threads = ctx->n_threads();
            for (double v : tps) res.mean += v / tps.size();
            for (double v : tps) res.stddev += (v - res.mean) * (v - res.mean);
            res.stddev = tps.size() > 1 ? std::sqrt(res.stddev / (tps.size() - 1)) : 0;
            results.push_back(res);
        }
    }

    if (output == "md") {
        std::printf("| model | type | threads | test | t/s |\n|---|---|---:|---:|---:|\n");
        for (const Result& r : results)
            std::printf("| %s | %s | %d | %s | %.2f ± %.2f |\n", r.model.c_str(), r.type.c_str(), r.threads,
                        r.test.c_str(), r.mean, r.stddev);
    } else {
        for (const Result& r : results)
            std::printf("{\"model_filename\": \"%s\", \"model_type\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
                        "\"n_threads\": %d, \"avg_ts\": %.6f, \"stddev_ts\": %.6f}\n",
                        r.model.c_str(), r.type.c_str(), r.n_prompt, r.n_gen, r.threads, r.mean, r.stddev);
    }
    return 0;
}
