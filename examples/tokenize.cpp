// minigpt-tokenize: shows how a model's tokenizer splits a text.
//
//   minigpt-tokenize -m model.gguf -p "Hello world"          one "id<TAB>piece" line per token
//   minigpt-tokenize -m model.gguf -f text.txt --ids         the ids, space-separated, on one line
//
// Only the vocabulary is loaded, so vocabulary-only GGUF files work too.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <vector>

namespace {

using namespace examples;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: minigpt-tokenize -m MODEL (-p TEXT | -f FILE) [options]\n"
                 "\n"
                 "Tokenizes a text with the model's vocabulary and prints the tokens.\n"
                 "\n"
                 "options:\n"
                 "  -h, --help            show this help and exit\n"
                 "  -m, --model FILE      model or vocabulary file (GGUF)\n"
                 "  -p, --prompt TEXT     the text to tokenize\n"
                 "  -f, --file FILE       read the text from FILE (its bytes as they are)\n"
                 "      --ids             print only the ids, space-separated on one line\n"
                 "      --no-bos          do not add the BOS/EOS tokens the model asks for\n"
                 "      --special         parse special tokens written in the text (e.g. <|im_start|>)\n"
                 "      --unknown-pre-default\n"
                 "                        use the default BPE pre-tokenizer for an unknown tokenizer.ggml.pre\n"
                 "\n"
                 "Without --ids each token is printed as \"id<TAB>piece\", the piece's bytes as they are\n"
                 "(control tokens as their text).\n");
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-tokenize";
    std::string model_path, prompt, file_path;
    bool have_prompt = false, ids_only = false, add_special = true, parse_special = false, pre_default = false;
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
        } else if (a == "-p" || a == "--prompt") {
            prompt = value();
            have_prompt = true;
        } else if (a == "-f" || a == "--file") {
            file_path = value();
        } else if (a == "--ids") {
            ids_only = true;
        } else if (a == "--no-bos") {
            add_special = false;
        } else if (a == "--special") {
            parse_special = true;
        } else if (a == "--unknown-pre-default") {
            pre_default = true;
        } else {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (model_path.empty()) fail("no model given: use -m FILE");
    if (have_prompt && !file_path.empty()) fail("give either -p TEXT or -f FILE, not both");
    if (!have_prompt && file_path.empty()) fail("no text given: use -p TEXT or -f FILE");
    std::string text = prompt;
    if (!file_path.empty() && !read_text_file(file_path, text))
        fail("cannot read '" + file_path + "': " + std::strerror(errno));

    minigpt::ModelParams mp;
    mp.vocab_only = true;
    mp.bpe_unknown_pre_as_default = pre_default;
    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load(model_path, mp, model);
    if (!st) fail("cannot load '" + model_path + "': " + st.to_string());

    std::vector<int32_t> ids;
    st = model->tokenize(text, ids, add_special, parse_special);
    if (!st) fail("cannot tokenize the text: " + st.to_string());

    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids_only) {
            if (i) out += ' ';
            out += std::to_string(ids[i]);
        } else {
            out += std::to_string(ids[i]);
            out += '\t';
            out += model->token_to_piece(ids[i], /*render_special=*/true);
            out += '\n';
        }
    }
    if (ids_only) out += '\n';
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0)
        fail("cannot write the output");
    return 0;
}
