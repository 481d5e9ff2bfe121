// minigpt-chat: an interactive chat on stdin/stdout that keeps the KV cache
// between turns, so only the new part of the conversation is evaluated.
//
//   minigpt-chat -m model.gguf [-sys "You are a helpful assistant."] [-n 256]
//   printf 'Hello\n/quit\n' | minigpt-chat -m model.gguf -n 16
//
// Each line on stdin is one user turn; "/quit" or the end of input ends the chat.
// The model's chat template is used (or --template NAME); a model without one
// gets a plain "User:/Assistant:" transcript.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <iostream>
#include <vector>

namespace {

using namespace examples;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: minigpt-chat -m MODEL [options]\n"
                 "\n"
                 "Chats on stdin/stdout: each input line is a user turn; /quit or end of input ends.\n"
                 "\n"
                 "options:\n"
                 "  -h, --help            show this help and exit\n"
                 "  -m, --model FILE      model file (GGUF)\n"
                 "  -sys, --system TEXT   system prompt\n"
                 "  -n, --n-predict N     at most N tokens per reply (default: 256)\n"
                 "  -c, --ctx-size N      context size (default: the model's, at most 4096)\n"
                 "  -t, --threads N       threads (default: all)\n"
                 "  -s, --seed N          sampling seed\n"
                 "      --temp T          temperature (default: 0.8; 0 = greedy)\n"
                 "      --template NAME   chat template name instead of the model's\n");
}

// The conversation as text: the model's template, or a plain transcript.
std::string render(const minigpt::Model& model, const std::vector<minigpt::ChatMessage>& msgs,
                   const std::string& template_name, bool& plain) {
    std::string out;
    minigpt::Status st = minigpt::chat_apply(model, msgs, true, out, template_name);
    if (st) {
        plain = false;
        return out;
    }
    if (!template_name.empty()) fail("chat template: " + st.to_string());
    plain = true;
    out.clear();
    for (const auto& m : msgs) {
        const char* who = m.role == "system" ? "System" : m.role == "user" ? "User" : "Assistant";
        out += std::string(who) + ": " + m.content + "\n";
    }
    out += "Assistant:";
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-chat";
    std::string model_path, system_prompt, template_name;
    int n_predict = 256, n_ctx = 0, n_threads = 0;
    minigpt::SamplerParams sp;
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
        } else if (a == "-sys" || a == "--system") {
            system_prompt = value();
        } else if (a == "-n" || a == "--n-predict") {
            n_predict = parse_int(a, value(), 1, 1 << 20);
        } else if (a == "-c" || a == "--ctx-size") {
            n_ctx = parse_int(a, value(), 0, 1 << 20);
        } else if (a == "-t" || a == "--threads") {
            n_threads = parse_int(a, value(), 0, 1024);
        } else if (a == "-s" || a == "--seed") {
            sp.seed = static_cast<uint64_t>(parse_int(a, value(), 0, INT_MAX));
        } else if (a == "--temp") {
            sp.temperature = parse_float(a, value(), 0.0, 1e6);
        } else if (a == "--template") {
            template_name = value();
        } else {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (model_path.empty()) fail("no model given: use -m FILE");

    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(model_path, {}, model);
    if (!st) fail("cannot load model '" + model_path + "': " + st.to_string());
    minigpt::ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    std::unique_ptr<minigpt::Context> ctx;
    st = minigpt::Context::create(model, cp, ctx);
    if (!st) fail("cannot create the context: " + st.to_string());

    std::vector<minigpt::ChatMessage> msgs;
    if (!system_prompt.empty()) msgs.push_back({"system", system_prompt});
    minigpt::Sampler sampler(sp);
    std::fprintf(stderr, "minigpt-chat: %s, context %d tokens. Type a message; /quit ends.\n", model_path.c_str(),
                 ctx->n_ctx());

    std::string line;
    int turn = 0;
    while (true) {
        std::fprintf(stdout, "> ");
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line == "/quit") break;
        if (line.empty()) continue;
        msgs.push_back({"user", line});
        bool plain = false;
        std::vector<int32_t> all;
        std::string text = render(*model, msgs, template_name, plain);
        // Template markers are special tokens; a plain transcript has none.
        st = model->tokenize(text, all, true, /*parse_special=*/!plain);
        if (!st) fail("cannot tokenize: " + st.to_string());
        if (all.size() + static_cast<size_t>(n_predict) >= static_cast<size_t>(ctx->n_ctx())) {
            // The history no longer fits: keep the system prompt and this turn.
            std::fprintf(stderr, "minigpt-chat: the context is full; older turns are dropped\n");
            std::vector<minigpt::ChatMessage> kept;
            if (!system_prompt.empty()) kept.push_back(msgs.front());
            kept.push_back(msgs.back());
            msgs.swap(kept);
            text = render(*model, msgs, template_name, plain);
            st = model->tokenize(text, all, true, !plain);
            if (!st) fail("cannot tokenize: " + st.to_string());
            if (all.size() + 1 >= static_cast<size_t>(ctx->n_ctx())) fail("the message does not fit in the context");
        }

        // Reuse the cached prefix; evaluate only what is new.
        const std::vector<int32_t>& cached = ctx->tokens();
        size_t common = 0;
        while (common < cached.size() && common < all.size() && cached[common] == all[common]) ++common;
        if (common == all.size()) --common;  // the last token must be evaluated for its logits
        if (common < cached.size()) ctx->truncate(static_cast<int>(common));
        const std::vector<int32_t> prompt(all.begin() + static_cast<long>(common), all.end());
        std::fprintf(stderr, "[turn %d: %zu prompt tokens evaluated, %d reused from the cache]\n", ++turn,
                     prompt.size(), ctx->n_past());

        minigpt::GenerateParams gp;
        gp.n_predict = n_predict;
        if (plain) gp.stop = {"\nUser:", "\nSystem:"};
        std::string reply;
        minigpt::GenerateStats stats;
        st = minigpt::generate(*ctx, sampler, prompt, gp,
                               [&](std::string_view s) {
                                   reply += s;
                                   std::fwrite(s.data(), 1, s.size(), stdout);
                                   std::fflush(stdout);
                                   return true;
                               },
                               &stats);
        std::fprintf(stdout, "\n");
        if (!st) fail("generation failed: " + st.to_string());
        std::fprintf(stderr, "[%d tokens, %.1f tokens/s]\n", stats.n_generated, stats.generate_tps());
        // Trim the leading space a plain transcript puts after "Assistant:".
        if (plain && !reply.empty() && reply[0] == ' ') reply.erase(0, 1);
        msgs.push_back({"assistant", reply});
    }
    return 0;
}
