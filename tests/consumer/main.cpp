// A program that uses an installed minigpt (find_package / pkg-config), as a
// user's project would: it loads a model, generates a few tokens greedily
// and checks that text came out. Usage: minigpt-consumer <model.gguf>
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"

#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s <model.gguf>\n", argv[0]);
        return 2;
    }
#ifdef CONSUMER_EXPECTED_VERSION
    if (std::strcmp(MINIGPT_VERSION_STRING, CONSUMER_EXPECTED_VERSION) != 0) {
        std::fprintf(stderr, "header version %s differs from package version %s\n", MINIGPT_VERSION_STRING,
                     CONSUMER_EXPECTED_VERSION);
        return 1;
    }
#endif
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(argv[1], {}, model);
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, {}, ctx);
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::vector<int32_t> prompt;
    st = model->tokenize("Once upon a time", prompt);
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }

    minigpt::SamplerParams sp;
    sp.temperature = 0;  // greedy: the output is deterministic
    minigpt::Sampler sampler(sp);
    minigpt::GenerateParams gp;
    gp.n_predict = 16;
    std::string text;
    st = minigpt::generate(*ctx, sampler, prompt, gp, [&](std::string_view s) {
        text.append(s.data(), s.size());
        return true;
    });
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::printf("minigpt %s: Once upon a time%s\n", MINIGPT_VERSION_STRING, text.c_str());
    if (text.empty()) {
        std::fprintf(stderr, "no text was generated\n");
        return 1;
    }
    return 0;
}
