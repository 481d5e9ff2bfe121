// Chat templates: family detection from template text, rendering of a
// conversation, template names, models with and without a template, and
// robustness against arbitrary roles and contents.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using minigpt::ChatMessage;
using minigpt::Model;
using minigpt::ModelParams;
using minigpt::Status;
using minigpt::StatusCode;

namespace {

// The conversation every family renders: system, user, assistant, user. The
// reply has spaces around it so that the trimming of each family shows.
const std::vector<ChatMessage>& conversation() {
    static const std::vector<ChatMessage> c = {
        {"system", "You are a helpful assistant"},
        {"user", "Hello"},
        {"assistant", "  Hi there  "},
        {"user", "Who are you"},
    };
    return c;
}

std::string render(std::string_view name, bool add_generation_prompt = true) {
    std::string out;
    Status st = minigpt::chat_apply(name, conversation(), add_generation_prompt, out);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return out;
}

std::string detected(std::string_view tmpl) {
    const char* n = minigpt::chat_template_name(tmpl);
    return n ? n : "(unknown)";
}

std::shared_ptr<Model> load_vocab(const std::string& rel) {
    ModelParams p;
    p.vocab_only = true;
    std::shared_ptr<Model> m;
    Status st = Model::load(test_util::data_path(rel), p, m);
    REQUIRE_MESSAGE(st.ok(), rel << ": " << st.to_string());
    REQUIRE(m);
    return m;
}

// Distinctive parts of the templates real models ship.
const char* const kQwen25 =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";
const char* const kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const char* const kPhi4 =
    "{% for message in messages %}{% if (message['role'] == 'system') %}"
    "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}"
    "{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|><|im_start|>assistant<|im_sep|>'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}";
const char* const kLlama2Chat =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const char* const kMistralV02 =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
const char* const kLlama2SysBos =
    "{%- for idx in range(0, messages|length) -%}{%- if messages[idx]['role'] == 'user' -%}{%- if idx > 1 -%}"
    "{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}{%- else -%}"
    "{{- messages[idx]['content'] + ' [/INST]' -}}{%- endif -%}{% elif messages[idx]['role'] == 'system' %}"
    "{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}{% endif %}{% endfor %}";
const char* const kLlama2Sys =
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '[INST] <<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}"
    "{{ message['content'] + ' [/INST]' }}{% endif %}{% endfor %}";
const char* const kMistralV1 =
    "{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n";
const char* const kMistralV3 =
    "{%- if tools is not none and (message == user_messages[-1]) %}\n"
    "    {{- \"[AVAILABLE_TOOLS] [\" }}\n{%- endif %}\n"
    "{%- if loop.last and system_message is defined %}\n"
    "    {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "{%- else %}\n    {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n{%- endif %}\n";
const char* const kMistralNemo =
    "{%- if tools is not none and (message == user_messages[-1]) %}\n"
    "    {{- \"[AVAILABLE_TOOLS][\" }}\n{%- endif %}\n"
    "{%- if loop.last and system_message is defined %}\n"
    "    {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "{%- else %}\n    {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n{%- endif %}\n";
const char* const kMistralV7 =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}"
    "{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";
const char* const kLlama31 =
    "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' }}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n";
const char* const kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
const char* const kZephyr7B =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const char* const kStableLMZephyr =
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<|user|>\n' + message['content'] + '<|endoftext|>' + '\n' }}{% elif message['role'] == 'system' %}"
    "{{ '<|system|>\n' + message['content'] + '<|endoftext|>' + '\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' + message['content'] + '<|endoftext|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";
const char* const kGemma2 =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
const char* const kDeepSeekCoder =
    "{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n"
    "    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n"
    "        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n"
    "        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}";
const char* const kDeepSeekLLM =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
const char* const kDeepSeekV3 =
    "{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}"
    "{% if add_generation_prompt %}{{'<｜Assistant｜>'}}{% endif %}";

}  // namespace

TEST_CASE("chat: every family is detected from its template's markers") {
    struct Case {
        const char* tmpl;
        const char* name;
    };
    const Case cases[] = {
        {kQwen25, "chatml"},           {kSmolLM2, "chatml"},          {kPhi4, "phi4"},
        {kLlama2Chat, "llama2-sys-strip"}, {kMistralV02, "llama2"},   {kLlama2SysBos, "llama2-sys-bos"},
        {kLlama2Sys, "llama2-sys"},    {kMistralV1, "mistral-v1"},    {kMistralV3, "mistral-v3"},
        {kMistralNemo, "mistral-v3-tekken"}, {kMistralV7, "mistral-v7"}, {kLlama31, "llama3"},
        {kPhi3, "phi3"},               {kZephyr7B, "zephyr"},         {kStableLMZephyr, "zephyr"},
        {kGemma2, "gemma"},            {kDeepSeekCoder, "deepseek"},  {kDeepSeekLLM, "deepseek2"},
        {kDeepSeekV3, "deepseek3"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.tmpl);
        CHECK(detected(c.tmpl) == c.name);
    }
}

TEST_CASE("chat: names are accepted as templates and listed") {
    const std::vector<std::string> names = minigpt::chat_template_names();
    for (const char* want : {"chatml", "llama2", "llama2-sys", "llama3", "mistral-v1", "mistral-v3", "mistral-v7",
                             "zephyr", "gemma", "phi3", "deepseek", "deepseek2", "deepseek3"}) {
        bool found = false;
        for (const std::string& n : names) found = found || n == want;
        CHECK_MESSAGE(found, want << " is not listed");
    }
    for (const std::string& n : names) {
        CAPTURE(n);
        CHECK(detected(n) == n);
        std::string out;
        CHECK(minigpt::chat_apply(n, conversation(), true, out).ok());
        CHECK(!out.empty());
    }
}

TEST_CASE("chat: templates of families not supported are unknown") {
    // Unknown text, and templates llama.cpp gives to families this library lacks.
    CHECK(minigpt::chat_template_name("") == nullptr);
    CHECK(minigpt::chat_template_name("{{ messages }}") == nullptr);
    CHECK(minigpt::chat_template_name("CHATML") == nullptr);
    // SmolVLM: <|im_start|> as BOS, but not ChatML.
    CHECK(minigpt::chat_template_name("<|im_start|>{% for m in messages %}{{ m['content'] }}<end_of_utterance>"
                                      "{% endfor %}") == nullptr);
    // Vicuna, Command-R, ChatGLM 3.
    CHECK(minigpt::chat_template_name("{{-'USER: ' + message['content']}}{{-'ASSISTANT: '}}") == nullptr);
    CHECK(minigpt::chat_template_name("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>") == nullptr);
    CHECK(minigpt::chat_template_name("[gMASK]sop<|{{ message['role'] }}|>") == nullptr);

    std::string out = "stale";
    Status st = minigpt::chat_apply("no-such-template", conversation(), true, out);
    CHECK(st.code() == StatusCode::unsupported);
    CHECK(st.message().find("no-such-template") != std::string::npos);
    CHECK(st.message().find("chatml") != std::string::npos);  // lists the supported names
    CHECK(out.empty());
    CHECK(minigpt::chat_apply("", conversation(), true, out).code() == StatusCode::unsupported);
}

TEST_CASE("chat: ChatML (Qwen 2.5, SmolLM 2)") {
    const std::string want =
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n  Hi there  <|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n";
    CHECK(render(kQwen25) == want);
    CHECK(render("chatml") == want);
    CHECK(render("chatml", false) == want.substr(0, want.size() - std::string("<|im_start|>assistant\n").size()));
}

TEST_CASE("chat: Phi-4") {
    CHECK(render(kPhi4) ==
          "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|>"
          "<|im_start|>user<|im_sep|>Hello<|im_end|>"
          "<|im_start|>assistant<|im_sep|>  Hi there  <|im_end|>"
          "<|im_start|>user<|im_sep|>Who are you<|im_end|>"
          "<|im_start|>assistant<|im_sep|>");
}

TEST_CASE("chat: Llama 2 variants (no BOS before the first [INST])") {
    CHECK(render(kMistralV02) == "[INST] You are a helpful assistant\nHello [/INST]  Hi there  </s>[INST] Who are you [/INST]");
    CHECK(render(kLlama2Sys) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]  Hi there  </s>[INST] Who are you [/INST]");
    CHECK(render(kLlama2SysBos) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]  Hi there  </s><s>[INST] Who are you [/INST]");
    CHECK(render(kLlama2Chat) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]");
    // No generation prompt exists for this family: the text ends with [/INST] either way.
    CHECK(render("llama2", false) == render("llama2", true));
}

TEST_CASE("chat: Mistral v1, v3, v3-tekken, v7, v7-tekken") {
    CHECK(render(kMistralV1) ==
          " [INST] You are a helpful assistant\n\nHello [/INST]   Hi there  </s> [INST] Who are you [/INST]");
    CHECK(render(kMistralV3) == "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST]");
    CHECK(render(kMistralNemo) == "[INST]You are a helpful assistant\n\nHello[/INST]  Hi there  </s>[INST]Who are you[/INST]");
    CHECK(render(kMistralV7) ==
          "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST]   Hi there  </s>"
          "[INST] Who are you[/INST]");
    CHECK(render("mistral-v7-tekken") ==
          "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]  Hi there  </s>"
          "[INST]Who are you[/INST]");
}

TEST_CASE("chat: Llama 3") {
    CHECK(render(kLlama31) ==
          "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("chat: Phi-3") {
    CHECK(render(kPhi3) ==
          "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
          "<|assistant|>\n  Hi there  <|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n");
}

TEST_CASE("chat: Zephyr ends turns with the EOS text") {
    CHECK(render(kZephyr7B) ==
          "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n"
          "<|assistant|>\n  Hi there  </s>\n<|user|>\nWho are you</s>\n<|assistant|>\n");
    CHECK(render(kStableLMZephyr) ==
          "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
          "<|assistant|>\n  Hi there  <|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n");
}

TEST_CASE("chat: Gemma folds the system text into the first user turn") {
    CHECK(render(kGemma2) ==
          "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
          "<start_of_turn>model\nHi there<end_of_turn>\n"
          "<start_of_turn>user\nWho are you<end_of_turn>\n"
          "<start_of_turn>model\n");
}

TEST_CASE("chat: DeepSeek Coder, DeepSeek LLM / V2, DeepSeek V3") {
    CHECK(render(kDeepSeekCoder) ==
          "You are a helpful assistant### Instruction:\nHello\n### Response:\n  Hi there  \n<|EOT|>\n"
          "### Instruction:\nWho are you\n### Response:\n");
    CHECK(render(kDeepSeekLLM) ==
          "You are a helpful assistant\n\nUser: Hello\n\nAssistant:   Hi there  <｜end▁of▁sentence｜>"
          "User: Who are you\n\nAssistant:");
    CHECK(render(kDeepSeekV3) ==
          "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>  Hi there  <｜end▁of▁sentence｜>"
          "<｜User｜>Who are you<｜Assistant｜>");
}

TEST_CASE("chat: a model without a template needs a name") {
    std::shared_ptr<Model> m;
    Status st = Model::load(test_util::data_path("models/stories260K.gguf"), ModelParams(), m);
    REQUIRE_MESSAGE(st.ok(), st.to_string());

    std::string out = "stale";
    st = minigpt::chat_apply(*m, conversation(), true, out);
    CHECK(st.code() == StatusCode::unsupported);
    CHECK(st.message().find("tokenizer.chat_template") != std::string::npos);
    CHECK(out.empty());

    REQUIRE(minigpt::chat_apply(*m, conversation(), true, out, "chatml").ok());
    CHECK(out == render("chatml"));
    CHECK(minigpt::chat_apply(*m, conversation(), true, out, "nope").code() == StatusCode::unsupported);
    // A Jinja text is accepted in place of a name.
    REQUIRE(minigpt::chat_apply(*m, conversation(), true, out, kGemma2).ok());
    CHECK(out == render("gemma"));
}

TEST_CASE("chat: the templates stored in real vocabularies") {
    struct Case {
        const char* file;
        const char* family;
    };
    for (const Case& c : {Case{"vocab/ggml-vocab-llama-bpe.gguf", "llama3"}, Case{"vocab/ggml-vocab-phi-3.gguf", "phi3"},
                          Case{"vocab/ggml-vocab-qwen2.gguf", "chatml"}}) {
        CAPTURE(c.file);
        std::shared_ptr<Model> m = load_vocab(c.file);
        std::string out;
        Status st = minigpt::chat_apply(*m, conversation(), true, out);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(out == render(c.family));
    }
    // Zephyr by name takes the model's EOS text: Phi-3's is <|endoftext|>.
    std::shared_ptr<Model> phi3 = load_vocab("vocab/ggml-vocab-phi-3.gguf");
    REQUIRE(phi3->token_to_piece(phi3->token_eos(), true) == "<|endoftext|>");
    std::string out;
    REQUIRE(minigpt::chat_apply(*phi3, conversation(), true, out, "zephyr").ok());
    CHECK(out == render(kStableLMZephyr));
}

TEST_CASE("chat: arbitrary roles and contents never crash") {
    uint64_t state = 0x9E3779B97F4A7C15ull;
    auto next = [&state]() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    auto random_text = [&next]() {
        std::string s;
        const size_t n = next() % 12;
        for (size_t i = 0; i < n; ++i) {
            switch (next() % 4) {
                case 0: s += static_cast<char>(next() & 0xFF); break;  // any byte, invalid UTF-8 included
                case 1: s += ' '; break;
                case 2: s += "\xC3"; break;  // a truncated two-byte sequence
                default: s += static_cast<char>('a' + next() % 26); break;
            }
        }
        return s;
    };
    const char* const roles[] = {"system", "user", "assistant", "tool", "", "\xFF\xFE"};
    const std::vector<std::string> names = minigpt::chat_template_names();
    size_t rendered = 0;
    for (int iter = 0; iter < 400; ++iter) {
        std::vector<ChatMessage> msgs(next() % 6);
        for (ChatMessage& m : msgs) {
            m.role = next() % 5 == 0 ? random_text() : roles[next() % 6];
            m.content = random_text();
        }
        for (const std::string& n : names) {
            std::string out;
            Status st = minigpt::chat_apply(n, msgs, (next() & 1) != 0, out);
            REQUIRE_MESSAGE(st.ok(), n << ": " << st.to_string());
            // The text of every user/assistant message is kept (some families trim
            // surrounding whitespace; DeepSeek drops other roles; Gemma, like
            // llama.cpp, drops system text that no user turn follows).
            size_t content_bytes = 0;
            for (const ChatMessage& m : msgs) {
                if (m.role == "user" || m.role == "assistant" || (m.role == "system" && n != "gemma"))
                    content_bytes += minigpt::detail::chat_trim(m.content).size();
            }
            CHECK_MESSAGE(out.size() >= content_bytes, n);
            ++rendered;
        }
        // Random template text must not crash detection either.
        const std::string junk = random_text();
        std::string out;
        Status st = minigpt::chat_apply(junk, msgs, true, out);
        if (!st.ok()) CHECK(st.code() == StatusCode::unsupported);
    }
    CHECK(rendered == 400 * names.size());
}
