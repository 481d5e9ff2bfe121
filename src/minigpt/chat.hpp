// chat: chat templates. The Jinja template a model ships in
// tokenizer.chat_template is not interpreted; its family is recognised from
// marker substrings (the rules llama.cpp's llm_chat_detect_template uses) and
// the conversation is rendered by a fixed formatter for that family, with the
// same output as llama.cpp's llm_chat_apply_template.
#pragma once
#include "api.hpp"
#include "base.hpp"
#include "gguf.hpp"
#include "model.hpp"

#include <string>

MINIGPT_NS_BEGIN

namespace detail {

enum class ChatFamily {
    chatml,
    llama2,
    llama2_sys,
    llama2_sys_bos,
    llama2_sys_strip,
    mistral_v1,
    mistral_v3,
    mistral_v3_tekken,
    mistral_v7,
    mistral_v7_tekken,
    llama3,
    phi3,
    phi4,
    zephyr,
    gemma,
    deepseek,
    deepseek2,
    deepseek3,
    unknown,
};

struct ChatFamilyName {
    const char* name;
    ChatFamily family;
};

inline const ChatFamilyName* chat_family_table(size_t& n) {
    static const ChatFamilyName table[] = {
        {"chatml", ChatFamily::chatml},
        {"llama2", ChatFamily::llama2},
        {"llama2-sys", ChatFamily::llama2_sys},
        {"llama2-sys-bos", ChatFamily::llama2_sys_bos},
        {"llama2-sys-strip", ChatFamily::llama2_sys_strip},
        {"mistral-v1", ChatFamily::mistral_v1},
        {"mistral-v3", ChatFamily::mistral_v3},
        {"mistral-v3-tekken", ChatFamily::mistral_v3_tekken},
        {"mistral-v7", ChatFamily::mistral_v7},
        {"mistral-v7-tekken", ChatFamily::mistral_v7_tekken},
        {"llama3", ChatFamily::llama3},
        {"phi3", ChatFamily::phi3},
        {"phi4", ChatFamily::phi4},
        {"zephyr", ChatFamily::zephyr},
        {"gemma", ChatFamily::gemma},
        {"deepseek", ChatFamily::deepseek},
        {"deepseek2", ChatFamily::deepseek2},
        {"deepseek3", ChatFamily::deepseek3},
    };
    n = sizeof(table) / sizeof(table[0]);
    return table;
}

inline const char* chat_family_name(ChatFamily f) {
    size_t n = 0;
    const ChatFamilyName* t = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (t[i].family == f) return t[i].name;
    }
    return nullptr;
}

// DeepSeek's markers use U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER ONE
// EIGHTH BLOCK (as the word separator). Literals are split after each \x
// escape so that a following hex-digit letter does not extend the escape.
#define MINIGPT_CHAT_BAR "\xef\xbd\x9c"
#define MINIGPT_CHAT_SEP "\xe2\x96\x81"
constexpr const char* kDsUser = "<" MINIGPT_CHAT_BAR "User" MINIGPT_CHAT_BAR ">";
constexpr const char* kDsAssistant = "<" MINIGPT_CHAT_BAR "Assistant" MINIGPT_CHAT_BAR ">";
constexpr const char* kDsEos = "<" MINIGPT_CHAT_BAR "end" MINIGPT_CHAT_SEP "of" MINIGPT_CHAT_SEP "sentence" MINIGPT_CHAT_BAR ">";
#undef MINIGPT_CHAT_BAR
#undef MINIGPT_CHAT_SEP

// What detection found: the family and, for Zephyr, the end-of-turn text when
// the template writes it literally ("" means: the model's EOS text).
struct ChatDetected {
    ChatFamily family = ChatFamily::unknown;
    std::string_view zephyr_eot;
};

inline ChatDetected chat_detect(std::string_view tmpl) {
    ChatDetected d;
    // A template name is accepted wherever a template is.
    size_t n = 0;
    const ChatFamilyName* table = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (tmpl == table[i].name) {
            d.family = table[i].family;
            return d;
        }
    }
    auto has = [tmpl](const char* s) { return tmpl.find(s) != std::string_view::npos; };

    if (has("<|im_start|>")) {
        if (has("<|im_sep|>")) d.family = ChatFamily::phi4;
        // SmolVLM uses <|im_start|> as its BOS but is not ChatML: unsupported.
        else if (!has("<end_of_utterance>")) d.family = ChatFamily::chatml;
        return d;
    }
    if (tmpl.substr(0, 7) == "mistral" || has("[INST]")) {
        if (has("[SYSTEM_PROMPT]")) {
            d.family = ChatFamily::mistral_v7;
        } else if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
            // Mistral's official v1 / v3 / v3-tekken templates.
            if (has(" [INST]")) d.family = ChatFamily::mistral_v1;
            else if (has("\"[INST]\"")) d.family = ChatFamily::mistral_v3_tekken;
            else d.family = ChatFamily::mistral_v3;
        } else if (has("content.strip()")) {
            d.family = ChatFamily::llama2_sys_strip;
        } else if (has("bos_token + '[INST]")) {
            d.family = ChatFamily::llama2_sys_bos;
        } else if (has("<<SYS>>")) {
            d.family = ChatFamily::llama2_sys;
        } else {
            d.family = ChatFamily::llama2;
        }
        return d;
    }
    if (has("<|assistant|>") && has("<|end|>")) {
        d.family = ChatFamily::phi3;
        return d;
    }
    if (has("[gMASK]<sop>")) return d;  // ChatGLM 4: unsupported
    if (has("<|assistant|>") && has("<|user|>")) {
        // llama.cpp reads this as Falcon 3 (with a literal "</s>") or GLM-Edge.
        // Zephyr templates have the same markers and end every turn with EOS:
        // literally "<|endoftext|>" (StableLM 2 Zephyr) or eos_token (Zephyr 7B).
        if (has("<|endoftext|>")) {
            d.family = ChatFamily::zephyr;
            d.zephyr_eot = "<|endoftext|>";
        } else if (!has("</s>") && has("eos_token")) {
            d.family = ChatFamily::zephyr;
        }
        return d;
    }
    if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return d;  // GLM-Edge
    if (has("<|user|>") && has("<|endoftext|>")) {
        d.family = ChatFamily::zephyr;
        d.zephyr_eot = "<|endoftext|>";
        return d;
    }
    if (has("bos_token + message['role']")) return d;  // Monarch: unsupported
    if (has("<start_of_turn>")) {
        d.family = ChatFamily::gemma;
        return d;
    }
    if (has("'\\n\\nAssistant: ' + eos_token")) return d;  // Orion: unsupported
    if (has("GPT4 Correct ")) return d;                     // OpenChat: unsupported
    if (has("USER: ") && has("ASSISTANT: ")) return d;      // Vicuna: unsupported
    if (has("### Instruction:") && has("<|EOT|>")) {
        d.family = ChatFamily::deepseek;  // DeepSeek Coder
        return d;
    }
    if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return d;  // Command-R: unsupported
    if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
        d.family = ChatFamily::llama3;
        return d;
    }
    if (has("[gMASK]sop")) return d;  // ChatGLM 3: unsupported
    if (has("'Assistant: ' + message['content'] + eos_token")) {
        d.family = ChatFamily::deepseek2;  // DeepSeek LLM chat, DeepSeek V2
        return d;
    }
    if (has(kDsAssistant) && has(kDsUser) && has(kDsEos)) {
        d.family = ChatFamily::deepseek3;
        return d;
    }
    return d;
}

inline bool chat_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Whitespace trimmed from both ends (the C locale's isspace set).
inline std::string_view chat_trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && chat_is_space(s[b])) ++b;
    while (e > b && chat_is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

inline void chat_render_llama2(ChatFamily f, const std::vector<ChatMessage>& msgs, std::string& out) {
    const bool system_block = f != ChatFamily::llama2;
    const bool bos_inside = f == ChatFamily::llama2_sys_bos;
    const bool strip = f == ChatFamily::llama2_sys_strip;
    // The first [INST] has no BOS before it: the tokenizer adds that one.
    out += "[INST] ";
    bool in_turn = true;
    for (const ChatMessage& m : msgs) {
        std::string_view content = strip ? chat_trim(m.content) : std::string_view(m.content);
        if (!in_turn) {
            out += bos_inside ? "<s>[INST] " : "[INST] ";
            in_turn = true;
        }
        if (m.role == "system") {
            if (system_block) {
                out += "<<SYS>>\n";
                out += content;
                out += "\n<</SYS>>\n\n";
            } else {
                out += content;
                out += '\n';
            }
        } else if (m.role == "user") {
            out += content;
            out += " [/INST]";
        } else {
            out += content;
            out += "</s>";
            in_turn = false;
        }
    }
}

inline void chat_render_mistral(ChatFamily f, const std::vector<ChatMessage>& msgs, std::string& out) {
    const char* lead = f == ChatFamily::mistral_v1 ? " " : "";
    const char* gap = f == ChatFamily::mistral_v3_tekken ? "" : " ";
    const bool trim_reply = f == ChatFamily::mistral_v3;
    bool in_turn = false;
    for (const ChatMessage& m : msgs) {
        if (!in_turn) {
            out += lead;
            out += "[INST]";
            out += gap;
            in_turn = true;
        }
        if (m.role == "system") {
            out += m.content;
            out += "\n\n";
        } else if (m.role == "user") {
            out += m.content;
            out += lead;
            out += "[/INST]";
        } else {
            out += gap;
            out += trim_reply ? chat_trim(m.content) : std::string_view(m.content);
            out += "</s>";
            in_turn = false;
        }
    }
}

inline void chat_render(ChatFamily f, const std::vector<ChatMessage>& msgs, bool add_ass, std::string_view eot,
                        std::string& out) {
    out.clear();
    switch (f) {
        case ChatFamily::chatml:
            for (const ChatMessage& m : msgs) {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
            }
            if (add_ass) out += "<|im_start|>assistant\n";
            break;
        case ChatFamily::llama2:
        case ChatFamily::llama2_sys:
        case ChatFamily::llama2_sys_bos:
        case ChatFamily::llama2_sys_strip:
            chat_render_llama2(f, msgs, out);
            break;
        case ChatFamily::mistral_v1:
        case ChatFamily::mistral_v3:
        case ChatFamily::mistral_v3_tekken:
            chat_render_mistral(f, msgs, out);
            break;
        case ChatFamily::mistral_v7:
        case ChatFamily::mistral_v7_tekken: {
            const char* gap = f == ChatFamily::mistral_v7 ? " " : "";
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") {
                    out += std::string("[SYSTEM_PROMPT]") + gap + m.content + "[/SYSTEM_PROMPT]";
                } else if (m.role == "user") {
                    out += std::string("[INST]") + gap + m.content + "[/INST]";
                } else {
                    out += gap + m.content + "</s>";
                }
            }
            break;
        }
        case ChatFamily::llama3:
            for (const ChatMessage& m : msgs) {
                out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
                out += chat_trim(m.content);
                out += "<|eot_id|>";
            }
            if (add_ass) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            break;
        case ChatFamily::phi3:
            for (const ChatMessage& m : msgs) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
            if (add_ass) out += "<|assistant|>\n";
            break;
        case ChatFamily::phi4:
            for (const ChatMessage& m : msgs) out += "<|im_start|>" + m.role + "<|im_sep|>" + m.content + "<|im_end|>";
            if (add_ass) out += "<|im_start|>assistant<|im_sep|>";
            break;
        case ChatFamily::zephyr:
            for (const ChatMessage& m : msgs) {
                out += "<|" + m.role + "|>\n" + m.content;
                out += eot;
                out += '\n';
            }
            if (add_ass) out += "<|assistant|>\n";
            break;
        case ChatFamily::gemma: {
            // Gemma has no system turn: system text goes at the top of the next user turn.
            std::string system;
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") {
                    system += chat_trim(m.content);
                    continue;
                }
                const bool model = m.role == "assistant";
                out += "<start_of_turn>";
                out += model ? std::string("model") : m.role;
                out += '\n';
                if (!system.empty() && !model) {
                    out += system + "\n\n";
                    system.clear();
                }
                out += chat_trim(m.content);
                out += "<end_of_turn>\n";
            }
            if (add_ass) out += "<start_of_turn>model\n";
            break;
        }
        case ChatFamily::deepseek:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content;
                else if (m.role == "user") out += "### Instruction:\n" + m.content + "\n";
                else if (m.role == "assistant") out += "### Response:\n" + m.content + "\n<|EOT|>\n";
            }
            if (add_ass) out += "### Response:\n";
            break;
        case ChatFamily::deepseek2:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content + "\n\n";
                else if (m.role == "user") out += "User: " + m.content + "\n\n";
                else if (m.role == "assistant") out += "Assistant: " + m.content + kDsEos;
            }
            if (add_ass) out += "Assistant:";
            break;
        case ChatFamily::deepseek3:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content + "\n\n";
                else if (m.role == "user") out += kDsUser + m.content;
                else if (m.role == "assistant") out += kDsAssistant + m.content + kDsEos;
            }
            if (add_ass) out += kDsAssistant;
            break;
        case ChatFamily::unknown:
            break;
    }
}

// A short, printable excerpt of a template or name for error messages.
inline std::string chat_excerpt(std::string_view s) {
    std::string e;
    for (size_t i = 0; i < s.size() && e.size() < 48; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\n') e += "\\n";
        else if (c < 0x20 || c >= 0x7f) e += '?';
        else e += static_cast<char>(c);
    }
    if (s.size() > 48) e += "...";
    return e;
}

inline std::string chat_name_list() {
    std::string s;
    size_t n = 0;
    const ChatFamilyName* t = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (i) s += ", ";
        s += t[i].name;
    }
    return s;
}

inline Status chat_apply_detected(const ChatDetected& d, std::string_view model_eos,
                                  const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                  std::string& out) {
    std::string_view eot = d.zephyr_eot;
    if (eot.empty()) eot = model_eos.empty() ? std::string_view("</s>") : model_eos;
    chat_render(d.family, messages, add_generation_prompt, eot, out);
    return Status();
}

}  // namespace detail

const char* chat_template_name(std::string_view jinja_template) {
    return detail::chat_family_name(detail::chat_detect(jinja_template).family);
}

std::vector<std::string> chat_template_names() {
    std::vector<std::string> names;
    size_t n = 0;
    const detail::ChatFamilyName* t = detail::chat_family_table(n);
    for (size_t i = 0; i < n; ++i) names.emplace_back(t[i].name);
    return names;
}

Status chat_apply(std::string_view template_name, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt, std::string& out) {
    out.clear();
    return detail::guard("chat_apply", [&]() -> Status {
        const detail::ChatDetected d = detail::chat_detect(template_name);
        if (d.family == detail::ChatFamily::unknown) {
            return detail::error(StatusCode::unsupported, "unknown chat template '%s' (supported: %s)",
                                 detail::chat_excerpt(template_name).c_str(), detail::chat_name_list().c_str());
        }
        return detail::chat_apply_detected(d, {}, messages, add_generation_prompt, out);
    });
}

Status chat_apply(const Model& model, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::string& out, std::string_view template_name) {
    out.clear();
    return detail::guard("chat_apply", [&]() -> Status {
        std::string_view tmpl = template_name;
        const bool from_model = tmpl.empty();
        if (from_model) {
            Status st;
            if (!model.impl().gguf.get_string("tokenizer.chat_template", tmpl, st)) {
                if (!st.ok()) return st;
                return detail::error(StatusCode::unsupported,
                                     "the model has no chat template (tokenizer.chat_template); pass a template name "
                                     "(supported: %s)",
                                     detail::chat_name_list().c_str());
            }
        }
        const detail::ChatDetected d = detail::chat_detect(tmpl);
        if (d.family == detail::ChatFamily::unknown) {
            if (from_model) {
                return detail::error(StatusCode::unsupported,
                                     "the model's chat template is not a known family ('%s'); pass a template name "
                                     "(supported: %s)",
                                     detail::chat_excerpt(tmpl).c_str(), detail::chat_name_list().c_str());
            }
            return detail::error(StatusCode::unsupported, "unknown chat template '%s' (supported: %s)",
                                 detail::chat_excerpt(tmpl).c_str(), detail::chat_name_list().c_str());
        }
        // Templates that write eos_token get the model's own EOS text.
        std::string eos;
        if (model.token_eos() >= 0) eos = model.token_to_piece(model.token_eos(), true);
        return detail::chat_apply_detected(d, eos, messages, add_generation_prompt, out);
    });
}

MINIGPT_NS_END
