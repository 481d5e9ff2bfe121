// Fuzz target: chat template detection and application. The input is split
// at '\x1e' bytes: the first piece is the template (a Jinja text, or, when it
// is one byte long, the index of a built-in template name), the others are
// messages whose first byte picks the role (system, user, assistant, or the
// odd role "tool") and whose remaining bytes are the content. Every
// rendering is checked for what must hold: it either succeeds or says why.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_util.hpp"

#include <string>
#include <vector>

namespace {

const std::vector<std::string>& names() {
    static const std::vector<std::string> n = minigpt::chat_template_names();
    return n;
}

// A small vocabulary so that the model overload (whose EOS text some
// families use) is covered too.
const std::shared_ptr<minigpt::Model>& model() {
    static const std::shared_ptr<minigpt::Model> m = fuzz::load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    return m;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    model();
    FUZZ_CHECK(!names().empty(), "no chat templates");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (;;) {
        size_t sep = in.find('\x1e', start);
        if (sep == std::string_view::npos) {
            parts.push_back(in.substr(start));
            break;
        }
        parts.push_back(in.substr(start, sep - start));
        start = sep + 1;
    }
    if (parts.size() > 64) parts.resize(64);

    std::string tmpl(parts[0]);
    bool add_generation_prompt = true;
    if (tmpl.size() == 1) {
        unsigned char c = static_cast<unsigned char>(tmpl[0]);
        add_generation_prompt = (c & 0x80) == 0;
        tmpl = names()[(c & 0x7f) % names().size()];
        FUZZ_CHECK(minigpt::chat_template_name(tmpl) != nullptr, "template name '%s' is not recognised",
                   tmpl.c_str());
    }
    static const char* const roles[] = {"system", "user", "assistant", "tool"};
    std::vector<minigpt::ChatMessage> msgs;
    size_t content_bytes = 0;
    for (size_t i = 1; i < parts.size(); ++i) {
        std::string_view p = parts[i];
        minigpt::ChatMessage m;
        m.role = p.empty() ? "user" : roles[static_cast<unsigned char>(p[0]) % 4];
        if (!p.empty()) m.content = std::string(p.substr(1));
        content_bytes += m.content.size();
        msgs.push_back(std::move(m));
    }

    const char* family = minigpt::chat_template_name(tmpl);
    std::string out;
    minigpt::Status st = minigpt::chat_apply(tmpl, msgs, add_generation_prompt, out);
    if (family) {
        FUZZ_CHECK(st.ok(), "template family '%s' was detected but chat_apply failed: %s", family,
                   st.to_string().c_str());
    } else {
        FUZZ_CHECK(!st.ok() && st.code() == minigpt::StatusCode::unsupported,
                   "an unrecognised template gave %s", st.to_string().c_str());
    }
    if (st.ok()) {
        // Formatting adds markers and may trim whitespace, but never more than
        // a bounded amount of text per message.
        FUZZ_CHECK(out.size() <= 2 * content_bytes + 256 * (msgs.size() + 1),
                   "%zu bytes of output for %zu bytes of content in %zu messages", out.size(), content_bytes,
                   msgs.size());
    }

    std::string out2;
    minigpt::Status st2 = minigpt::chat_apply(*model(), msgs, add_generation_prompt, out2, tmpl);
    FUZZ_CHECK(st2.ok() == st.ok(), "the model overload disagrees: %s vs %s", st2.to_string().c_str(),
               st.to_string().c_str());
    return 0;
}
