// model: hyperparameters from the GGUF metadata, weights bound by name and
// checked against them, and the Model object (weights + vocabulary).
#pragma once
#include "tokenizer.hpp"

MINIGPT_NS_BEGIN
namespace detail {

// A weight: a view into the mapped file.
struct Weight {
    const GgufTensor* t = nullptr;
    Type type = Type::F32;
    const uint8_t* data = nullptr;
    int64_t cols = 0;        // ne[0]: the length of a row (the input size of a matmul)
    int64_t rows = 0;        // ne[1]: the number of rows (the output size)
    size_t row_stride = 0;   // bytes per row
    explicit operator bool() const { return data != nullptr; }
};

struct LayerWeights {
    Weight attn_norm, attn_norm_b;           // norm weight (and LayerNorm bias)
    Weight wq, wk, wv, wqkv, wo;             // separate or fused (rows Q, K, V) projections
    Weight bq, bk, bv, bqkv, bo;             // projection biases
    Weight q_norm, k_norm;                   // per-head RMSNorm of q and k
    Weight ffn_norm, ffn_norm_b;
    Weight w_gate, w_up, w_down, b_up, b_down;
};

enum class Arch { llama, qwen2, qwen3, gpt2 };
enum class NormKind { rms, layer };
enum class RopeKind { none, normal, neox };
enum class FfnKind { swiglu, gelu };

// What distinguishes the supported architectures: data for one forward pass.
struct ArchTraits {
    const char* name;
    Arch arch;
    NormKind norm;
    RopeKind rope;
    FfnKind ffn;
    bool qkv_bias;     // biases on the q, k, v projections
    bool qk_norm;      // per-head RMSNorm on q and k before RoPE
    bool fused_qkv;    // one attn_qkv matrix
    bool pos_embd;     // learned absolute position embeddings
    bool all_bias;     // biases on norms, attention output and FFN (GPT-2)
};

inline const ArchTraits* find_arch(std::string_view name) {
    static const ArchTraits table[] = {
        {"llama", Arch::llama, NormKind::rms, RopeKind::normal, FfnKind::swiglu, false, false, false, false, false},
        {"qwen2", Arch::qwen2, NormKind::rms, RopeKind::neox, FfnKind::swiglu, true, false, false, false, false},
        {"qwen3", Arch::qwen3, NormKind::rms, RopeKind::neox, FfnKind::swiglu, false, true, false, false, false},
        {"gpt2", Arch::gpt2, NormKind::layer, RopeKind::none, FfnKind::gelu, false, false, true, true, true},
    };
    for (const ArchTraits& a : table)
        if (name == a.name) return &a;
    return nullptr;
}

struct Hparams {
    ArchTraits traits{};
    int n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
    int head_dim = 0, n_rot = 0, n_ff = 0;
    float rope_base = 10000.0f, rope_freq_scale = 1.0f, norm_eps = 1e-5f;
    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_head_kv * head_dim; }
};

}  // namespace detail

struct Model::Impl {
    detail::FileBytes bytes;
    detail::GgufFile gguf;
    detail::Vocab vocab;
    detail::Hparams hp;
    ModelInfo info;
    bool vocab_only = false;
    detail::Weight token_embd, pos_embd, output_norm, output_norm_b, output, rope_freqs;
    std::vector<detail::LayerWeights> layers;

    Status load(const ModelParams& params);
    Status load_hparams();
    Status bind_weights();
    Status bind(const std::string& name, std::initializer_list<int64_t> shape, bool matrix, detail::Weight& w,
                bool required = true);
};

namespace detail {

inline Status missing_key(const std::string& key) {
    return error(StatusCode::bad_format, "required key '%s' is missing", key.c_str());
}

// Reads a positive integer hyperparameter `<arch>.<name>`.
inline Status read_hp_int(const GgufFile& f, const std::string& key, int& out, bool required, int64_t lo = 1,
                          int64_t hi = (int64_t(1) << 24)) {
    Status st;
    int64_t v;
    if (!f.get_int(key, v, st)) {
        if (!st.ok()) return st;
        return required ? missing_key(key) : Status();
    }
    if (v < lo || v > hi)
        return error(StatusCode::bad_format, "key '%s' is %lld, outside [%lld, %lld]", key.c_str(), (long long)v,
                     (long long)lo, (long long)hi);
    out = static_cast<int>(v);
    return Status();
}

inline Status read_hp_float(const GgufFile& f, const std::string& key, float& out) {
    Status st;
    double v;
    if (!f.get_float(key, v, st)) return st;
    if (!(v > 0) || !std::isfinite(v))
        return error(StatusCode::bad_format, "key '%s' is %g, which is not a positive number", key.c_str(), v);
    out = static_cast<float>(v);
    return Status();
}

}  // namespace detail

Status Model::Impl::load_hparams() {
    using namespace detail;
    Status st;
    std::string_view arch_sv;
    if (!gguf.get_string("general.architecture", arch_sv, st)) {
        if (!st.ok()) return st;
        return missing_key("general.architecture");
    }
    std::string arch(arch_sv);
    info.architecture = arch;
    std::string_view name;
    if (gguf.get_string("general.name", name, st)) info.name = std::string(name);
    const ArchTraits* traits = find_arch(arch);
    if (!traits)
        return error(StatusCode::unsupported, "architecture '%s' is not supported (supported: llama, qwen2, qwen3, gpt2)",
                     arch.c_str());

    const std::string p = arch + ".";
    Hparams h;
    h.traits = *traits;
    if (!(st = read_hp_int(gguf, p + "embedding_length", h.n_embd, true)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "block_count", h.n_layer, true, 1, 4096)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "attention.head_count", h.n_head, true, 1, 4096)).ok()) return st;
    h.n_head_kv = h.n_head;
    if (!(st = read_hp_int(gguf, p + "attention.head_count_kv", h.n_head_kv, false, 1, 4096)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "feed_forward_length", h.n_ff, true)).ok()) return st;
    h.n_ctx_train = 2048;
    if (!(st = read_hp_int(gguf, p + "context_length", h.n_ctx_train, false)).ok()) return st;
    if (h.n_embd % h.n_head != 0)
        return error(StatusCode::bad_format, "%s.embedding_length %d is not a multiple of %s.attention.head_count %d",
                     arch.c_str(), h.n_embd, arch.c_str(), h.n_head);
    h.head_dim = h.n_embd / h.n_head;
    if (!(st = read_hp_int(gguf, p + "attention.key_length", h.head_dim, false, 1, 65536)).ok()) return st;
    int v_len = h.head_dim;
    if (!(st = read_hp_int(gguf, p + "attention.value_length", v_len, false, 1, 65536)).ok()) return st;
    if (v_len != h.head_dim)
        return error(StatusCode::unsupported, "%s.attention.value_length %d differs from the key length %d",
                     arch.c_str(), v_len, h.head_dim);
    if (h.n_head % h.n_head_kv != 0)
        return error(StatusCode::bad_format, "%s.attention.head_count %d is not a multiple of head_count_kv %d",
                     arch.c_str(), h.n_head, h.n_head_kv);
    h.n_rot = h.head_dim;
    if (!(st = read_hp_int(gguf, p + "rope.dimension_count", h.n_rot, false, 2, 65536)).ok()) return st;
    if (h.n_rot > h.head_dim || h.n_rot % 2 != 0)
        return error(StatusCode::bad_format, "%s.rope.dimension_count %d does not fit the head size %d", arch.c_str(),
                     h.n_rot, h.head_dim);
    if (!(st = read_hp_float(gguf, p + "rope.freq_base", h.rope_base)).ok()) return st;
    const char* eps_key = h.traits.norm == NormKind::rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";
    if (!(st = read_hp_float(gguf, p + eps_key, h.norm_eps)).ok()) return st;
    // RoPE scaling: linear (positions divided by the factor), or per-dimension
    // frequency factors in a rope_freqs tensor (Llama 3.x); nothing else.
    std::string_view scaling;
    double factor = 1;
    if (gguf.get_string(p + "rope.scaling.type", scaling, st)) {
        if (scaling == "linear") {
            if (gguf.get_float(p + "rope.scaling.factor", factor, st) && factor > 0) h.rope_freq_scale = float(1 / factor);
        } else if (scaling != "none" && scaling != "llama3") {
            return error(StatusCode::unsupported, "%s.rope.scaling.type '%.*s' is not supported", arch.c_str(),
                         (int)scaling.size(), scaling.data());
        }
    } else if (gguf.get_float(p + "rope.scale_linear", factor, st) && factor > 0) {
        h.rope_freq_scale = float(1 / factor);
    }
    if (!st.ok()) return st;
    if (h.traits.rope == RopeKind::none) h.n_rot = 0;
    hp = h;
    return Status();
}

Status Model::Impl::bind(const std::string& name, std::initializer_list<int64_t> shape, bool matrix,
                         detail::Weight& w, bool required) {
    using namespace detail;
    const GgufTensor* t = gguf.find_tensor(name);
    if (!t) {
        if (!required) return Status();
        return error(StatusCode::bad_format, "tensor '%s' is missing", name.c_str());
    }
    int64_t want[4] = {1, 1, 1, 1};
    int k = 0;
    for (int64_t d : shape) want[k++] = d;
    for (int d = 0; d < 4; ++d) {
        if (t->ne[d] != want[d])
            return error(StatusCode::bad_format,
                         "tensor '%s' has shape [%lld, %lld, %lld, %lld] but the metadata says [%lld, %lld, %lld, %lld]",
                         name.c_str(), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)want[0], (long long)want[1], (long long)want[2],
                         (long long)want[3]);
    }
    Type type = static_cast<Type>(t->type);
    if (matrix ? !type_supported(type) : type != Type::F32)
        return error(StatusCode::unsupported, "tensor '%s' has type %s, which is not supported%s", name.c_str(),
                     type_name(t->type), matrix ? "" : " for a norm or bias (F32 only)");
    w.t = t;
    w.type = type;
    w.data = t->data;
    w.cols = t->ne[0];
    w.rows = t->ne[1];
    w.row_stride = row_bytes(type, w.cols);
    return Status();
}

Status Model::Impl::bind_weights() {
    const detail::Hparams& h = hp;
    const detail::ArchTraits& a = h.traits;
    const int64_t E = h.n_embd, V = h.n_vocab, Q = h.q_dim(), KV = h.kv_dim(), F = h.n_ff, D = h.head_dim;
    Status st;
#define MINIGPT_BIND(...) \
    if (!(st = bind(__VA_ARGS__)).ok()) return st
    MINIGPT_BIND("token_embd.weight", {E, V}, true, token_embd);
    if (a.pos_embd) MINIGPT_BIND("position_embd.weight", {E, h.n_ctx_train}, true, pos_embd);
    MINIGPT_BIND("output_norm.weight", {E}, false, output_norm);
    if (a.all_bias) MINIGPT_BIND("output_norm.bias", {E}, false, output_norm_b);
    MINIGPT_BIND("output.weight", {E, V}, true, output, false);
    if (!output) output = token_embd;  // tied embeddings
    if (h.n_rot > 0) MINIGPT_BIND("rope_freqs.weight", {h.n_rot / 2}, false, rope_freqs, false);
    layers.resize(static_cast<size_t>(h.n_layer));
    for (int l = 0; l < h.n_layer; ++l) {
        detail::LayerWeights& L = layers[static_cast<size_t>(l)];
        const std::string b = "blk." + std::to_string(l) + ".";
        MINIGPT_BIND(b + "attn_norm.weight", {E}, false, L.attn_norm);
        if (a.all_bias) MINIGPT_BIND(b + "attn_norm.bias", {E}, false, L.attn_norm_b);
        if (a.fused_qkv) {
            MINIGPT_BIND(b + "attn_qkv.weight", {E, Q + 2 * KV}, true, L.wqkv);
            if (a.all_bias) MINIGPT_BIND(b + "attn_qkv.bias", {Q + 2 * KV}, false, L.bqkv);
        } else {
            MINIGPT_BIND(b + "attn_q.weight", {E, Q}, true, L.wq);
            MINIGPT_BIND(b + "attn_k.weight", {E, KV}, true, L.wk);
            MINIGPT_BIND(b + "attn_v.weight", {E, KV}, true, L.wv);
            if (a.qkv_bias) {
                MINIGPT_BIND(b + "attn_q.bias", {Q}, false, L.bq);
                MINIGPT_BIND(b + "attn_k.bias", {KV}, false, L.bk);
                MINIGPT_BIND(b + "attn_v.bias", {KV}, false, L.bv);
            }
        }
        if (a.qk_norm) {
            MINIGPT_BIND(b + "attn_q_norm.weight", {D}, false, L.q_norm);
            MINIGPT_BIND(b + "attn_k_norm.weight", {D}, false, L.k_norm);
        }
        MINIGPT_BIND(b + "attn_output.weight", {Q, E}, true, L.wo);
        if (a.all_bias) MINIGPT_BIND(b + "attn_output.bias", {E}, false, L.bo);
        MINIGPT_BIND(b + "ffn_norm.weight", {E}, false, L.ffn_norm);
        if (a.all_bias) MINIGPT_BIND(b + "ffn_norm.bias", {E}, false, L.ffn_norm_b);
        if (a.ffn == detail::FfnKind::swiglu) MINIGPT_BIND(b + "ffn_gate.weight", {E, F}, true, L.w_gate);
        MINIGPT_BIND(b + "ffn_up.weight", {E, F}, true, L.w_up);
        MINIGPT_BIND(b + "ffn_down.weight", {F, E}, true, L.w_down);
        if (a.all_bias) {
            MINIGPT_BIND(b + "ffn_up.bias", {F}, false, L.b_up);
            MINIGPT_BIND(b + "ffn_down.bias", {E}, false, L.b_down);
        }
    }
#undef MINIGPT_BIND
    return Status();
}

Status Model::Impl::load(const ModelParams& params) {
    using namespace detail;
    vocab_only = params.vocab_only;
    Status st = gguf.parse(bytes.data(), bytes.size());
    if (!st.ok()) return st;
    if (!(st = load_vocab(gguf, vocab, params.bpe_unknown_pre_as_default)).ok()) return st;
    info.n_vocab = vocab.n_vocab();
    std::string_view arch;
    Status ignored;
    if (gguf.get_string("general.architecture", arch, ignored)) info.architecture = std::string(arch);
    if (vocab_only) return Status();

    if (!(st = load_hparams()).ok()) return st;
    hp.n_vocab = vocab.n_vocab();
    int64_t v = 0;
    if (gguf.get_int(info.architecture + ".vocab_size", v, st) && v != hp.n_vocab)
        return error(StatusCode::bad_format, "%s.vocab_size is %lld but the vocabulary has %d tokens",
                     info.architecture.c_str(), (long long)v, hp.n_vocab);
    if (!(st = bind_weights()).ok()) return st;

    info.n_ctx_train = hp.n_ctx_train;
    info.n_embd = hp.n_embd;
    info.n_layer = hp.n_layer;
    info.n_head = hp.n_head;
    info.n_head_kv = hp.n_head_kv;
    info.head_dim = hp.head_dim;
    info.n_ff = hp.n_ff;
    info.rope_freq_base = hp.rope_base;
    info.norm_eps = hp.norm_eps;
    // Parameter count and a per-type summary.
    std::vector<std::pair<std::string, int>> counts;
    for (const GgufTensor& t : gguf.tensors) {
        info.n_params += static_cast<uint64_t>(t.n_elements());
        info.weight_bytes += t.nbytes;
        const char* tn = type_name(t.type);
        auto it = std::find_if(counts.begin(), counts.end(), [&](const std::pair<std::string, int>& c) { return c.first == tn; });
        if (it == counts.end()) counts.emplace_back(tn, 1); else ++it->second;
    }
    for (size_t i = 0; i < counts.size(); ++i) {
        if (i) info.type_summary += ", ";
        info.type_summary += counts[i].first + ": " + std::to_string(counts[i].second);
    }
    return Status();
}

Model::Model() : impl_(new Impl) {}
Model::~Model() = default;

Status Model::load(const std::string& path, const ModelParams& params, std::shared_ptr<Model>& out) {
    out.reset();
    return detail::guard("Model::load", [&]() -> Status {
        std::shared_ptr<Model> m(new Model());
        Status st = params.file_io ? m->impl_->bytes.open_with(path, *params.file_io)
                                   : m->impl_->bytes.open(path, params.use_mmap, params.reread_small_pages);
        if (!st.ok()) return st;
        st = m->impl_->load(params);
        if (!st.ok()) return Status(st.code(), path + ": " + st.message());
        const ModelInfo& info = m->impl_->info;
        detail::log_msg(LogLevel::info, "loaded %s: %s, %llu parameters, %.2f MB of weights (%s)%s", path.c_str(),
                        info.architecture.c_str(), static_cast<unsigned long long>(info.n_params),
                        static_cast<double>(info.weight_bytes) / 1e6, info.type_summary.c_str(),
                        m->impl_->bytes.mapped() ? ", memory-mapped" : "");
        out = std::move(m);
        return Status();
    });
}

Status Model::load_from_memory(const void* data, size_t size, const ModelParams& params, std::shared_ptr<Model>& out) {
    out.reset();
    return detail::guard("Model::load_from_memory", [&]() -> Status {
        if (!data || size == 0) return detail::error(StatusCode::invalid_argument, "load_from_memory: empty buffer");
        std::shared_ptr<Model> m(new Model());
        m->impl_->bytes.borrow(data, size);
        Status st = m->impl_->load(params);
        if (!st.ok()) return st;
        out = std::move(m);
        return Status();
    });
}

const ModelInfo& Model::info() const { return impl_->info; }

Status Model::tokenize(std::string_view text, std::vector<int32_t>& out, bool add_special, bool parse_special) const {
    return detail::guard("Model::tokenize", [&]() -> Status {
        return detail::tokenize(impl_->vocab, text, add_special, parse_special, out);
    });
}
std::string Model::token_to_piece(int32_t token, bool render_special) const {
    return detail::token_to_piece(impl_->vocab, token, render_special);
}
std::string Model::detokenize(const std::vector<int32_t>& tokens, bool render_special) const {
    return detail::detokenize(impl_->vocab, tokens.data(), tokens.size(), render_special);
}
int32_t Model::token_bos() const { return impl_->vocab.bos; }
int32_t Model::token_eos() const { return impl_->vocab.eos; }
bool Model::is_eog(int32_t token) const { return detail::is_eog(impl_->vocab, token); }
int Model::n_vocab() const { return impl_->vocab.n_vocab(); }

MINIGPT_NS_END
