// The smallest complete program: load a model, continue a prompt, stream it.
//   minigpt-minimal model.gguf "Once upon a time"
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"

#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2) { std::fprintf(stderr, "usage: %s MODEL.gguf [PROMPT]\n", argv[0]); return 1; }
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(argv[1], {}, model);
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, {}, ctx);
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::vector<int32_t> prompt;
    model->tokenize(argc > 2 ? argv[2] : "Once upon a time", prompt);
    minigpt::Sampler sampler;
    minigpt::GenerateParams gp;
    gp.n_predict = 64;
    st = minigpt::generate(*ctx, sampler, prompt, gp, [](std::string_view s) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        return true;
    });
    std::printf("\n");
    if (!st) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    return 0;
}
