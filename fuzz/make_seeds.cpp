// Writes the binary seed corpora of the fuzz targets (tiny but valid GGUF
// models and metadata files), built with the library's own GgufWriter:
//
//     make_seeds <directory>
//
// writes <dir>/model/*.gguf and <dir>/gguf/*.gguf. The output is
// deterministic; tools/test-fuzz.sh runs it before every fuzzing run.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace md = minigpt::detail;

namespace {

// Deterministic weights in [-0.5, 0.5).
struct Rng {
    uint64_t s;
    float next() {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<float>((s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
    }
};

bool g_ok = true;

void check(const minigpt::Status& st, const char* what) {
    if (!st.ok()) {
        std::fprintf(stderr, "make_seeds: %s: %s\n", what, st.to_string().c_str());
        g_ok = false;
    }
}

// Adds a tensor of shape ne (ne[0] = row length) filled with deterministic
// values (or with `fill` when it is not 0), stored as `type`.
void add(md::GgufWriter& w, const std::string& name, md::Type type, std::vector<int64_t> ne, uint64_t seed,
         float fill = 0.0f) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::vector<float> x(static_cast<size_t>(n));
    Rng r{seed * 7919 + 17};
    for (float& v : x) v = fill != 0.0f ? fill : r.next();
    const int64_t rows = ne[0] ? n / ne[0] : 0;
    size_t nbytes = md::row_bytes(type, ne[0]) * static_cast<size_t>(rows);
    std::vector<uint8_t> buf(nbytes);
    if (type == md::Type::F32) {
        std::memcpy(buf.data(), x.data(), nbytes);
    } else if (type == md::Type::F16) {
        for (size_t i = 0; i < x.size(); ++i) {
            uint16_t h = md::fp32_to_fp16(x[i]);
            std::memcpy(buf.data() + 2 * i, &h, 2);
        }
    } else {
        check(md::quantize_weights(type, x.data(), buf.data(), rows, ne[0]), name.c_str());
    }
    check(w.add_tensor(name, type, std::move(ne), buf.data(), nbytes), name.c_str());
}

// A 16-token SentencePiece vocabulary with control, unknown, byte and
// user-defined tokens and a ChatML template.
void spm_vocab(md::GgufWriter& w) {
    const std::vector<std::string> tokens = {
        "<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "\xE2\x96\x81", "\xE2\x96\x81" "a", "a",
        "b", "\xE2\x96\x81" "b", "ab", "<|im_start|>", "<|im_end|>", "user", "assistant", "<tool>"};
    const std::vector<int32_t> types = {2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 3, 3, 1, 1, 4};
    std::vector<float> scores;
    for (size_t i = 0; i < tokens.size(); ++i) scores.push_back(-static_cast<float>(i));
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.scores", scores);
    w.set_array("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
    w.set_string("tokenizer.chat_template",
                 "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}");
}

// A 16-token byte-level BPE vocabulary with merges.
void bpe_vocab(md::GgufWriter& w, const char* pre) {
    const std::vector<std::string> tokens = {
        "<|endoftext|>", "a", "b", "c", "h", "i", "\xC4\xA0", "\xC4\xA0" "a", "ab", "abc", "hi",
        "\xC4\xA0" "hi", "\xC4\x8A", "<|im_start|>", "<|im_end|>", "!"};
    const std::vector<int32_t> types = {3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 1};
    const std::vector<std::string> merges = {"a b", "ab c", "\xC4\xA0 a", "h i", "\xC4\xA0 hi"};
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", pre);
    w.set_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.token_type", types);
    w.set_array("tokenizer.ggml.merges", merges);
    w.set_u32("tokenizer.ggml.bos_token_id", 0);
    w.set_u32("tokenizer.ggml.eos_token_id", 0);
    w.set_string("tokenizer.chat_template", "{{ bos_token }}{% for m in messages %}<|im_start|>{% endfor %}");
}

void hparams(md::GgufWriter& w, const std::string& arch, int embd, int layers, int heads, int heads_kv, int ff,
             int ctx) {
    w.set_string("general.architecture", arch);
    w.set_string("general.name", "fuzz-seed-" + arch);
    w.set_u32(arch + ".embedding_length", static_cast<uint32_t>(embd));
    w.set_u32(arch + ".block_count", static_cast<uint32_t>(layers));
    w.set_u32(arch + ".attention.head_count", static_cast<uint32_t>(heads));
    w.set_u32(arch + ".attention.head_count_kv", static_cast<uint32_t>(heads_kv));
    w.set_u32(arch + ".feed_forward_length", static_cast<uint32_t>(ff));
    w.set_u32(arch + ".context_length", static_cast<uint32_t>(ctx));
    w.set_u32(arch + ".vocab_size", 16);
}

// llama-style layers (llama, qwen2, qwen3): separate q/k/v, SwiGLU FFN.
void llama_layers(md::GgufWriter& w, md::Type mt, int embd, int layers, int q_dim, int kv_dim, int head_dim, int ff,
                  bool bias, bool qk_norm, bool tied) {
    const int64_t E = embd, V = 16;
    uint64_t seed = 1;
    add(w, "token_embd.weight", mt, {E, V}, seed++);
    add(w, "output_norm.weight", md::Type::F32, {E}, seed++, 1.0f);
    if (!tied) add(w, "output.weight", mt, {E, V}, seed++);
    for (int l = 0; l < layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        add(w, b + "attn_norm.weight", md::Type::F32, {E}, seed++, 1.0f);
        add(w, b + "attn_q.weight", mt, {E, q_dim}, seed++);
        add(w, b + "attn_k.weight", mt, {E, kv_dim}, seed++);
        add(w, b + "attn_v.weight", mt, {E, kv_dim}, seed++);
        if (bias) {
            add(w, b + "attn_q.bias", md::Type::F32, {q_dim}, seed++);
            add(w, b + "attn_k.bias", md::Type::F32, {kv_dim}, seed++);
            add(w, b + "attn_v.bias", md::Type::F32, {kv_dim}, seed++);
        }
        if (qk_norm) {
            add(w, b + "attn_q_norm.weight", md::Type::F32, {head_dim}, seed++, 1.0f);
            add(w, b + "attn_k_norm.weight", md::Type::F32, {head_dim}, seed++, 1.0f);
        }
        add(w, b + "attn_output.weight", mt, {q_dim, E}, seed++);
        add(w, b + "ffn_norm.weight", md::Type::F32, {E}, seed++, 1.0f);
        add(w, b + "ffn_gate.weight", mt, {E, ff}, seed++);
        add(w, b + "ffn_up.weight", mt, {E, ff}, seed++);
        add(w, b + "ffn_down.weight", mt, {ff, E}, seed++);
    }
}

void write(const md::GgufWriter& w, const std::string& path) {
    check(w.write_file(path), path.c_str());
    if (g_ok) std::printf("wrote %s (%zu bytes)\n", path.c_str(), w.bytes().size());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    std::error_code ec;
    for (const char* sub : {"/model", "/gguf"}) {
        std::filesystem::create_directories(dir + sub, ec);
        if (ec) {
            std::fprintf(stderr, "make_seeds: cannot create %s%s: %s\n", dir.c_str(), sub, ec.message().c_str());
            return 1;
        }
    }

    // llama, F32, GQA, SentencePiece vocabulary with a chat template.
    md::GgufWriter llama;
    hparams(llama, "llama", 8, 1, 2, 1, 16, 32);
    llama.set_f32("llama.rope.freq_base", 10000.0f);
    llama.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    spm_vocab(llama);
    llama_layers(llama, md::Type::F32, 8, 1, 8, 4, 4, 16, false, false, false);
    write(llama, dir + "/model/llama-f32.gguf");
    write(llama, dir + "/gguf/llama-f32.gguf");

    // llama, Q8_0 weights, two layers, tied output.
    md::GgufWriter q8;
    hparams(q8, "llama", 32, 2, 4, 2, 64, 16);
    q8.set_u32("llama.rope.dimension_count", 8);
    spm_vocab(q8);
    llama_layers(q8, md::Type::Q8_0, 32, 2, 32, 16, 8, 64, false, false, true);
    write(q8, dir + "/model/llama-q8_0.gguf");

    // qwen2: q/k/v biases, BPE vocabulary, F16 weights.
    md::GgufWriter qwen2;
    hparams(qwen2, "qwen2", 8, 1, 2, 2, 16, 32);
    qwen2.set_f32("qwen2.rope.freq_base", 1000000.0f);
    bpe_vocab(qwen2, "qwen2");
    llama_layers(qwen2, md::Type::F16, 8, 1, 8, 8, 4, 16, true, false, false);
    write(qwen2, dir + "/model/qwen2-f16.gguf");

    // qwen3: per-head q/k norms, key_length larger than n_embd / n_head, tied.
    md::GgufWriter qwen3;
    hparams(qwen3, "qwen3", 8, 1, 2, 1, 16, 32);
    qwen3.set_u32("qwen3.attention.key_length", 8);
    qwen3.set_u32("qwen3.attention.value_length", 8);
    spm_vocab(qwen3);
    llama_layers(qwen3, md::Type::F32, 8, 1, 16, 8, 8, 16, false, true, true);
    write(qwen3, dir + "/model/qwen3-f32.gguf");

    // gpt2: LayerNorm with biases, learned positions, fused qkv, GELU MLP.
    md::GgufWriter gpt2;
    hparams(gpt2, "gpt2", 8, 1, 2, 2, 16, 8);
    gpt2.set_f32("gpt2.attention.layer_norm_epsilon", 1e-5f);
    bpe_vocab(gpt2, "gpt-2");
    {
        const int64_t E = 8, V = 16, F = 16, C = 8;
        uint64_t s = 100;
        add(gpt2, "token_embd.weight", md::Type::F32, {E, V}, s++);
        add(gpt2, "position_embd.weight", md::Type::F32, {E, C}, s++);
        add(gpt2, "output_norm.weight", md::Type::F32, {E}, s++, 1.0f);
        add(gpt2, "output_norm.bias", md::Type::F32, {E}, s++);
        add(gpt2, "blk.0.attn_norm.weight", md::Type::F32, {E}, s++, 1.0f);
        add(gpt2, "blk.0.attn_norm.bias", md::Type::F32, {E}, s++);
        add(gpt2, "blk.0.attn_qkv.weight", md::Type::F16, {E, 3 * E}, s++);
        add(gpt2, "blk.0.attn_qkv.bias", md::Type::F32, {3 * E}, s++);
        add(gpt2, "blk.0.attn_output.weight", md::Type::F32, {E, E}, s++);
        add(gpt2, "blk.0.attn_output.bias", md::Type::F32, {E}, s++);
        add(gpt2, "blk.0.ffn_norm.weight", md::Type::F32, {E}, s++, 1.0f);
        add(gpt2, "blk.0.ffn_norm.bias", md::Type::F32, {E}, s++);
        add(gpt2, "blk.0.ffn_up.weight", md::Type::F32, {E, F}, s++);
        add(gpt2, "blk.0.ffn_up.bias", md::Type::F32, {F}, s++);
        add(gpt2, "blk.0.ffn_down.weight", md::Type::F32, {F, E}, s++);
        add(gpt2, "blk.0.ffn_down.bias", md::Type::F32, {E}, s++);
    }
    write(gpt2, dir + "/model/gpt2.gguf");

    // Metadata of every value type, nested arrays, an empty tensor and a
    // non-default alignment.
    md::GgufWriter meta;
    meta.set_u32("general.alignment", 64);
    meta.set_u8("t.u8", 200);
    meta.set_i8("t.i8", -100);
    meta.set_u16("t.u16", 60000);
    meta.set_i16("t.i16", -30000);
    meta.set_u32("t.u32", 4000000000u);
    meta.set_i32("t.i32", -2000000000);
    meta.set_u64("t.u64", 0xFFFFFFFFFFFFFFFFull);
    meta.set_i64("t.i64", -1);
    meta.set_f32("t.f32", 1.5f);
    meta.set_f64("t.f64", -2.25);
    meta.set_bool("t.bool", true);
    meta.set_string("t.string", "text \xE2\x96\x81 with UTF-8");
    meta.set_string("t.empty", "");
    meta.set_array("t.arr_i32", std::vector<int32_t>{1, -2, 3});
    meta.set_array("t.arr_f32", std::vector<float>{0.5f, -1.0f});
    meta.set_array("t.arr_bool", std::vector<bool>{true, false});
    meta.set_array("t.arr_str", std::vector<std::string>{"a", "", "ccc"});
    meta.set_array("t.arr_empty", std::vector<uint64_t>{});
    {
        // An array of two arrays of u16: [[1, 2], [3]].
        std::vector<uint8_t> p;
        auto put32 = [&](uint32_t v) { for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(v >> (8 * i))); };
        auto put64 = [&](uint64_t v) { for (int i = 0; i < 8; ++i) p.push_back(static_cast<uint8_t>(v >> (8 * i))); };
        auto put16 = [&](uint16_t v) { p.push_back(static_cast<uint8_t>(v)); p.push_back(static_cast<uint8_t>(v >> 8)); };
        put32(static_cast<uint32_t>(md::GgufType::array));
        put64(2);
        put32(static_cast<uint32_t>(md::GgufType::u16));
        put64(2);
        put16(1);
        put16(2);
        put32(static_cast<uint32_t>(md::GgufType::u16));
        put64(1);
        put16(3);
        meta.set_raw("t.nested", md::GgufType::array, p.data(), p.size());
    }
    add(meta, "a", md::Type::F32, {4, 2}, 1);
    add(meta, "empty", md::Type::F32, {0}, 2);
    add(meta, "h", md::Type::F16, {3}, 3);
    add(meta, "q", md::Type::Q8_0, {32}, 4);
    write(meta, dir + "/gguf/metadata.gguf");

    md::GgufWriter vocab_only;
    spm_vocab(vocab_only);
    write(vocab_only, dir + "/gguf/vocab-only.gguf");

    md::GgufWriter empty;
    write(empty, dir + "/gguf/empty.gguf");
    return g_ok ? 0 : 1;
}
