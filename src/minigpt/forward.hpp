// forward: the Context (KV cache, scratch, threads) and the transformer forward
// pass over a batch of tokens: every matrix product sees all the batch's rows
// at once, so a prompt is evaluated as matrices, and decode is the m = 1 case.
#pragma once
#include "model.hpp"

MINIGPT_NS_BEGIN
namespace detail {

// An activation matrix converted to the format a weight's dot product wants.
// `packed` says that the prompt GEMM's panels already hold it, packed for
// weights of packed_type with packed_cols columns (valid for the next product).
struct Act {
    const void* data = nullptr;
    size_t stride = 0;  // bytes per row
    Type type = Type::F32;
    bool packed = false;
    Type packed_type = Type::F32;
    int64_t packed_cols = 0;
};

// Parts laid one after the other, part k covering [first[k], first[k + 1]):
// f(k, lo, hi) for the piece [lo, hi) of part k (counted from the part's own
// start) that [b, e) overlaps.
template <class F>
inline void each_part(const int64_t* first, int parts, int64_t b, int64_t e, F&& f) {
    for (int k = 0; k < parts; ++k) {
        const int64_t lo = std::max(b, first[k]) - first[k], hi = std::min(e, first[k + 1]) - first[k];
        if (lo < hi) f(k, lo, hi);
    }
}

// y = x / sqrt(mean(x^2) + eps) * w, the sum accumulated in double (in four
// running sums, so that the adds do not wait on each other one by one).
inline void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const int64_t n4 = n / 4 * 4;
    for (int64_t i = 0; i < n4; i += 4) {
        s0 += static_cast<double>(x[i] * x[i]);
        s1 += static_cast<double>(x[i + 1] * x[i + 1]);
        s2 += static_cast<double>(x[i + 2] * x[i + 2]);
        s3 += static_cast<double>(x[i + 3] * x[i + 3]);
    }
    for (int64_t i = n4; i < n; ++i) s0 += static_cast<double>(x[i] * x[i]);
    const double sum = (s0 + s1) + (s2 + s3);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// In-place softmax over n values; returns nothing, values sum to 1.
// Keys per block of the attention's online softmax. Only tests change it (to
// check that the block size does not change the result).
inline int g_attn_block = 256;
// One token's keys are split between the threads from this many per thread on.
inline constexpr int kMinKeysPerRun = 16;

// y = (x - mean) / sqrt(var + eps) * w + b, sums in double.
inline void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += x[i];
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    double var = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float d = x[i] - mean;
        y[i] = d;
        var += static_cast<double>(d * d);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(var / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] * scale * w[i] + (b ? b[i] : 0.0f);
}


// GELU (tanh form) evaluated as y = f16(gelu(f16(x))) for |x| < 10, through a
// table over every half-precision value: the numbers GPT-2 models were
// validated with on CPUs.
inline float gelu_exact(float x) {
    const float k = 0.79788456080286535587989211986876f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(k * x * (1.0f + 0.044715f * x * x)));
}
inline const uint16_t* gelu_table() {
    static const std::vector<uint16_t> table = [] {
        std::vector<uint16_t> t(65536);
        for (uint32_t i = 0; i < 65536; ++i) t[i] = fp32_to_fp16(gelu_exact(fp16_to_fp32(static_cast<uint16_t>(i))));
        return t;
    }();
    return table.data();
}
inline float gelu(float x, const uint16_t* table) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return fp16_to_fp32(table[fp32_to_fp16(x)]);
}

// RoPE angles for one position: cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i)
// with theta_i = pos * base^(-2i/n_rot) (the power built up by repeated float
// multiplication), divided by the per-pair frequency factor when the model has
// one and scaled by freq_scale (linear RoPE scaling).
inline void rope_angles(int pos, int n_rot, float base, float freq_scale, const float* freq_factors, float* cs) {
    const float theta_scale = std::pow(base, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (int i = 0; i < n_rot / 2; ++i) {
        const float t = freq_scale * (freq_factors ? theta / freq_factors[i] : theta);
        cs[2 * i] = std::cos(t);
        cs[2 * i + 1] = std::sin(t);
        theta *= theta_scale;
    }
}

// Rotates the first n_rot values of each of n_heads heads of size head_dim.
inline void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cs, RopeKind kind) {
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + static_cast<size_t>(h) * head_dim;
        const int half = n_rot / 2;
        for (int i = 0; i < half; ++i) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int a = kind == RopeKind::normal ? 2 * i : i;
            const int b = kind == RopeKind::normal ? 2 * i + 1 : i + half;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

}  // namespace detail

struct Context::Impl {
    std::shared_ptr<const Model> model_ref;
    const Model::Impl* m = nullptr;
    detail::Hparams hp;
    ContextParams params;
    int n_ctx = 0, n_batch = 0, n_threads = 1;
    detail::ThreadPool pool;
    detail::Parallel par;

    // [n_layer][n_ctx][kv_dim] elements of kv_es bytes: F32, or F16 with kv_f16.
    detail::Buffer<uint8_t> kcache, vcache;
    size_t kv_es = 4;
    uint8_t* kv_at(detail::Buffer<uint8_t>& b, int layer, int t) {
        return b.data() + (static_cast<size_t>(layer) * n_ctx + static_cast<size_t>(t)) * hp.kv_dim() * kv_es;
    }
    // n floats into / out of the cache's element type.
    void kv_put(uint8_t* dst, const float* src, int64_t n) const {
        if (kv_es == 4) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        else detail::quantize_row(detail::Type::F16, src, dst, n);
    }
    void kv_get(const uint8_t* src, float* dst, int64_t n) const {
        if (kv_es == 4) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        else detail::dequantize_row(detail::Type::F16, src, dst, n);
    }
    detail::Buffer<float> x, xn, q, k, v, qkv, att, gate, up, out, rope_cs, scores;
    // One token's attention over runs of positions (one per thread): each
    // run's output and maximum per head, and its sums (see attention()).
    detail::Buffer<float> parts;
    detail::Buffer<double> part_sums;
    const uint16_t* gelu = nullptr;
    detail::Buffer<uint8_t> act_buf[3];
    size_t act_bytes_per_buf = 0;
    // Packed activations and per-chunk weight tiles of the prompt GEMM.
    detail::Buffer<uint8_t> gemm_panel, gemm_tiles;
    size_t gemm_tile_stride = 0;
    int n_chunks_max = 1;
    int attn_block = 256;  // keys per block of the online softmax (g_attn_block at creation)

    std::vector<float> last_logits;
    std::vector<int32_t> tokens;

    Status init();
    Status forward(const int32_t* toks, int m, float* logits_out, bool all_rows);
    detail::Act make_act(const float* src, int64_t m, int64_t n, detail::Type vt, int slot);
    // Where rows of n values of src go in format vt: in place for F32, else
    // act_buf[slot]; convert_row writes row i there.
    detail::Act act_layout(const float* src, int64_t n, detail::Type vt, int slot) {
        detail::Act a;
        a.type = vt;
        const bool f32 = vt == detail::Type::F32;
        a.stride = f32 ? static_cast<size_t>(n) * sizeof(float) : detail::row_bytes(vt, n);
        a.data = f32 ? static_cast<const void*>(src) : act_buf[slot].data();
        return a;
    }
    void convert_row(const detail::Act& a, const float* src, int64_t n, int slot, int64_t i) {
        if (a.type == detail::Type::F32) return;
        detail::quantize_row(a.type, src + i * n, act_buf[slot].data() + static_cast<size_t>(i) * a.stride, n);
    }
    bool gemm_takes(const detail::Weight& w, int64_t m) const {
        return m >= detail::kGemmMinRows && gemm_panel.data() != nullptr && detail::gemm_kind(w.type, w.cols) != detail::GemmKind::none;
    }
    // The input of a product with weight w, made in one pass on the threads:
    // make(i) writes float row i of src (a residual, a norm, an activation
    // function; cost: about its operations), which is then converted to w's
    // activation format in act_buf[slot] and, when the GEMM takes the batch,
    // packed into the panels right away. Threads take whole panels, so a row
    // is made, converted and packed by one thread.
    template <class F>
    detail::Act prepare(float* src, int64_t m, int64_t n, const detail::Weight& w, int slot, int64_t cost, F&& make) {
        using namespace detail;
        Act a = act_layout(src, n, vec_dot_type(w.type), slot);
        auto make_row = [&](int64_t i) {
            make(i);
            convert_row(a, src, n, slot, i);
        };
        if (!gemm_takes(w, m)) {
            each_row(m, cost, make_row);
            return a;
        }
        const int64_t panels = (m + kGemmCols - 1) / kGemmCols;
        par.for_range(panels, std::max<int64_t>(1, (int64_t(1) << 15) / (kGemmCols * std::max<int64_t>(1, cost))),
                      [&](int64_t b, int64_t e, int) {
                          for (int64_t i = b * kGemmCols; i < std::min(m, e * kGemmCols); ++i) make_row(i);
                          gemm_pack_panels(w.type, a.data, a.stride, n, m, b, e, gemm_panel.data());
                      });
        a.packed = true;
        a.packed_type = w.type;
        a.packed_cols = n;
        return a;
    }
    void matmul(const detail::Weight& w, const detail::Act& a, int64_t m, float* y);
    // f(i) for the rows i < m of a batch, on the threads when the rows hold
    // enough work (cost: about the operations of one row).
    template <class F>
    void each_row(int64_t m, int64_t cost, F&& f) {
        par.for_range(m, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, cost)), [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) f(i);
        });
    }
    void matmul_n(int count, const detail::Weight* const* ws, const detail::Act* const* as, int64_t m, float* const* ys);
    // How a one-pass product's rows split among the threads: the rows of
    // weight i are [first[i], first[i + 1]) of the whole, chunk c is rows
    // [c * grain, (c + 1) * grain).
    struct RowSplit {
        int64_t first[4] = {0, 0, 0, 0};
        int64_t grain = 1;
        int n_chunks = 1;
    };
    RowSplit row_split(int count, const detail::Weight* const* ws, int64_t rows_in) const;
    void read_next(int count, const detail::Weight* const* ws);
    void attention(int layer, int m, int n_past);
    // The attention of several tokens widens an F16 cache kWideRows keys or
    // values at a time. Each of its tasks has this many floats of scratch: a
    // block of scores and 2 x head_dim floats of slack (without it, with tasks
    // 256 floats apart, smollm2-135m pp512 was 2-5% slower), then those rows.
    static constexpr int kWideRows = 32;
    size_t attend_stride() const {
        const size_t D = static_cast<size_t>(hp.head_dim);
        return static_cast<size_t>(attn_block) + 2 * D + (kv_es == 2 ? static_cast<size_t>(kWideRows) * D : 0);
    }
    // One token's attention reads the cache kTokenRows positions at a time.
    // Each of its tasks has this many floats of scratch: a block of scores
    // for every head, then those rows widened from F16.
    static constexpr int kTokenRows = 8;
    size_t token_attention_stride() const {
        return static_cast<size_t>(hp.n_head) * static_cast<size_t>(attn_block) +
               static_cast<size_t>(kTokenRows) * static_cast<size_t>(hp.kv_dim());
    }
    struct alignas(64) Span {  // (a cache line each: the threads update them at once)
        std::atomic<uint64_t> v{0};
    };
    std::vector<Span> spans;  // matmul_n's row chunks, one per thread
    // The abort callback is polled between layers and inside attention; once it
    // says stop, the flag stays set until the forward pass returns.
    std::atomic<bool> abort_flag{false};
    bool aborted() {
        if (abort_flag.load(std::memory_order_relaxed)) return true;
        if (params.abort_callback && params.abort_callback(params.abort_user)) {
            abort_flag.store(true, std::memory_order_relaxed);
            return true;
        }
        return false;
    }
    size_t scratch_bytes() const;
};

Status Context::Impl::init() {
    using namespace detail;
    hp = m->hp;
    if (params.n_ctx < 0) return error(StatusCode::invalid_argument, "n_ctx %d is negative", params.n_ctx);
    n_ctx = params.n_ctx > 0 ? params.n_ctx : std::min(hp.n_ctx_train, 4096);
    if (hp.traits.pos_embd && n_ctx > hp.n_ctx_train)
        return error(StatusCode::invalid_argument, "n_ctx %d exceeds the %d positions this %s model has embeddings for",
                     n_ctx, hp.n_ctx_train, hp.traits.name);
    if (n_ctx > (1 << 20)) return error(StatusCode::invalid_argument, "n_ctx %d is larger than 1048576", n_ctx);
    if (params.n_batch < 0) return error(StatusCode::invalid_argument, "n_batch %d is negative", params.n_batch);
    n_batch = std::min(params.n_batch > 0 ? params.n_batch : 512, n_ctx);
    if (params.n_threads < 0 || params.n_threads > 1024)
        return error(StatusCode::invalid_argument, "n_threads %d is outside [0, 1024]", params.n_threads);
    n_threads = params.n_threads;
#if MINIGPT_THREADS
    if (n_threads == 0) n_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#else
    n_threads = 1;
#endif
    n_chunks_max = n_threads > 1 ? n_threads * 4 : 1;
    attn_block = std::max(1, std::min(n_ctx, g_attn_block));

    const size_t B = static_cast<size_t>(n_batch);
    const size_t E = static_cast<size_t>(hp.n_embd), Q = static_cast<size_t>(hp.q_dim()),
                 KV = static_cast<size_t>(hp.kv_dim()), F = static_cast<size_t>(hp.n_ff);
    uint64_t cache_elems;
    if (mul_overflows(static_cast<uint64_t>(hp.n_layer) * static_cast<uint64_t>(n_ctx), KV, &cache_elems) ||
        cache_elems > (uint64_t(1) << 40))
        return error(StatusCode::out_of_memory, "KV cache for n_ctx %d is too large", n_ctx);
    kv_es = params.kv_f16 ? 2 : 4;
    // Every buffer's size first, so that a memory limit is checked before
    // anything is allocated. B <= 2^20 and each width <= 2^24: no overflow.
    const size_t n_max = std::max({E, Q, F});
    const size_t out_elems = B * std::max(E, static_cast<size_t>(hp.n_vocab));
    const size_t rope_elems = B * static_cast<size_t>(std::max(hp.n_rot, 2));
    const size_t qkv_elems = hp.traits.fused_qkv ? B * (Q + 2 * KV) : 0;
    const size_t H = static_cast<size_t>(hp.n_head);
    const size_t scores_elems = std::max(static_cast<size_t>(n_chunks_max) * attend_stride(),
                                         static_cast<size_t>(n_threads) * token_attention_stride());
    const size_t parts_elems = static_cast<size_t>(n_threads) * (Q + H), sums_elems = static_cast<size_t>(n_threads) * H;
    act_bytes_per_buf = B * n_max * sizeof(float);
    // The prompt GEMM's buffers are sized for the widest input row and every
    // packing kind (F32 is the largest).
    gemm_tile_stride = B > 1 ? (n_max * 4 * detail::kGemmRows + 63) / 64 * 64 : 0;
    const size_t panel_bytes = B > 1 ? (B + detail::kGemmCols - 1) / detail::kGemmCols * detail::kGemmCols * n_max * 4 : 0;
    const size_t tiles_bytes = static_cast<size_t>(n_chunks_max) * gemm_tile_stride;
    const uint64_t kv_total = cache_elems * kv_es * 2;
    const uint64_t scratch_total =
        sizeof(float) * (2 * B * E + 2 * B * Q + 2 * B * KV + 2 * B * F + out_elems + rope_elems + qkv_elems + scores_elems + parts_elems) +
        sizeof(double) * sums_elems +
        3 * act_bytes_per_buf + panel_bytes + tiles_bytes;
    if (params.max_memory_bytes > 0 && kv_total + scratch_total > params.max_memory_bytes)
        return error(StatusCode::out_of_memory,
                     "n_ctx %d needs %llu bytes (KV cache %llu + scratch %llu), over the memory limit of %zu bytes", n_ctx,
                     static_cast<unsigned long long>(kv_total + scratch_total), static_cast<unsigned long long>(kv_total),
                     static_cast<unsigned long long>(scratch_total), params.max_memory_bytes);

    if (params.parallel_for) {
        par.host = params.parallel_for;
        par.host_user = params.parallel_for_user;
    } else {
        Status st = pool.start(n_threads);
        if (!st.ok()) return st;
        par.pool = &pool;
    }
    par.n_threads = n_threads;
    spans = std::vector<Span>(static_cast<size_t>(n_threads));

    bool ok = kcache.allocate(cache_elems * kv_es, true) && vcache.allocate(cache_elems * kv_es, true);
    ok = ok && x.allocate(B * E) && xn.allocate(B * E) && q.allocate(B * Q) && k.allocate(B * KV) &&
         v.allocate(B * KV) && att.allocate(B * Q) && gate.allocate(B * F) && up.allocate(B * F) &&
         out.allocate(out_elems) && rope_cs.allocate(rope_elems) && qkv.allocate(qkv_elems) &&
         scores.allocate(scores_elems) && parts.allocate(parts_elems) && part_sums.allocate(sums_elems);
    for (auto& b : act_buf) ok = ok && b.allocate(act_bytes_per_buf);
    ok = ok && gemm_panel.allocate(panel_bytes) && gemm_tiles.allocate(tiles_bytes);
    if (!ok)
        return error(StatusCode::out_of_memory, "cannot allocate the KV cache (%llu bytes) and scratch (%llu bytes) for n_ctx %d",
                     static_cast<unsigned long long>(kv_total), static_cast<unsigned long long>(scratch_total), n_ctx);
    last_logits.assign(static_cast<size_t>(hp.n_vocab), 0.0f);
    if (hp.traits.ffn == FfnKind::gelu) gelu = gelu_table();
    return Status();
}

size_t Context::Impl::scratch_bytes() const {
    size_t s = x.bytes() + xn.bytes() + qkv.bytes() + q.bytes() + k.bytes() + v.bytes() + att.bytes() + gate.bytes() + up.bytes() +
               out.bytes() + rope_cs.bytes() + scores.bytes() + parts.bytes() + part_sums.bytes() + gemm_panel.bytes() + gemm_tiles.bytes();
    for (auto& b : act_buf) s += b.bytes();
    return s;
}

detail::Act Context::Impl::make_act(const float* src, int64_t rows, int64_t n, detail::Type vt, int slot) {
    const detail::Act a = act_layout(src, n, vt, slot);
    if (vt == detail::Type::F32) return a;
    par.for_range(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, n)), [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) convert_row(a, src, n, slot, r);
    });
    return a;
}

void Context::Impl::matmul(const detail::Weight& w, const detail::Act& a, int64_t rows_in, float* y) {
    const detail::Weight* ws[1] = {&w};
    const detail::Act* as[1] = {&a};
    float* ys[1] = {y};
    matmul_n(1, ws, as, rows_in, ys);
}

// Several products of the same activation rows (Q, K, V; gate, up), each
// activation already in its weight's format. With a batch, the weights that
// share packed activations (same rows, type and width) are one GEMM pass over
// all their tiles; for one token, one parallel pass runs over the rows of all
// of them. Either way the threads meet once instead of once per matrix.
void Context::Impl::matmul_n(int count, const detail::Weight* const* ws, const detail::Act* const* as, int64_t rows_in,
                             float* const* ys) {
    using namespace detail;
    MINIGPT_ASSERT(count >= 1 && count <= 3);
    bool all_gemm = true;
    for (int i = 0; i < count; ++i) all_gemm = all_gemm && gemm_takes(*ws[i], rows_in);
    if (all_gemm) {
        uint8_t* P = gemm_panel.data();
        for (int i = 0; i < count;) {
            const Weight* w0 = ws[i];
            const Act& a = *as[i];
            int j = i + 1;
            while (j < count && as[j]->data == a.data && ws[j]->type == w0->type && ws[j]->cols == w0->cols) ++j;
            // prepare() may have packed the first input already.
            if (!(i == 0 && a.packed && a.packed_type == w0->type && a.packed_cols == w0->cols)) {
                const int64_t panels = (rows_in + kGemmCols - 1) / kGemmCols;
                // (chunks small enough to be worth a thread: 64K values packed)
                par.for_range(panels, std::max<int64_t>(1, (int64_t(1) << 16) / (kGemmCols * w0->cols)),
                              [&](int64_t b, int64_t e, int) { gemm_pack_panels(w0->type, a.data, a.stride, w0->cols, rows_in, b, e, P); });
            }
            // The 8-row tiles of weights i..j-1, one after the other.
            int64_t first[4] = {0, 0, 0, 0};
            for (int k = i; k < j; ++k) first[k - i + 1] = first[k - i] + (ws[k]->rows + kGemmRows - 1) / kGemmRows;
            uint8_t* T = gemm_tiles.data();
            const size_t ts = gemm_tile_stride;
            // (256K products per chunk at least)
            const int64_t tile_grain = std::max<int64_t>(1, (int64_t(1) << 18) / (kGemmRows * w0->cols * rows_in));
            par.for_range(first[j - i], tile_grain, [&](int64_t b, int64_t e, int chunk) {
                each_part(first, j - i, b, e, [&](int k, int64_t lo, int64_t hi) {
                    const Weight* wp = ws[i + k];
                    gemm_rows(wp->type, wp->data, wp->row_stride, wp->cols, lo * kGemmRows, std::min(wp->rows, hi * kGemmRows), P,
                              rows_in, ys[i + k], wp->rows, T + static_cast<size_t>(chunk) * ts);
                });
            });
            i = j;
        }
        return;
    }
    // The rows of all weights one after the other, one chunk per thread.
    const RowSplit split = row_split(count, ws, rows_in);
    const int64_t* first = split.first;
    const int64_t total = first[count], grain = split.grain;
    const int n_chunks = split.n_chunks;
    // Rows [b, e); the read-ahead may run on to row `ahead` (within each part).
    auto do_rows = [&](int64_t b, int64_t e, int64_t ahead) {
        each_part(first, count, b, e, [&](int k, int64_t lo, int64_t hi) {
            const Weight* wp = ws[k];
            matmul_rows(wp->type, wp->data, wp->row_stride, wp->cols, lo, hi, as[k]->data, as[k]->stride, rows_in, ys[k],
                        wp->rows, std::min(ahead, first[k + 1]) - first[k]);
        });
    };
    if (n_chunks <= 1 || static_cast<size_t>(n_chunks) > spans.size()) {
        par.for_range(total, grain, [&](int64_t b, int64_t e, int) { do_rows(b, e, e); });
        return;
    }
    // On a shared machine one core often streams slower than the other, so the
    // chunks are not handed out whole: the rows of chunk c not yet taken are
    // [front, back) of spans[c] (offsets in the chunk, one 64-bit word). The
    // thread running task c takes its rows from the front, about 128 KiB at a
    // time; once its chunk is gone it takes rows from the back of the others',
    // about 32 KiB at a time, so both threads read forward and end together.
    // No piece is more than half of what is left of its chunk (nor less than
    // 4 rows): the last rows split between the threads. A piece from the
    // front lets the read-ahead run on into the rows after it, which are most
    // likely the thread's next piece. (smollm2-135m generation, 2 threads,
    // alternating with whole chunks in one process: Q8_0 1.01-1.15x in six
    // runs, F16 1.08x, Q4_0 and Q4_K 1.00-1.02x; llama-3.2-1b Q4_K 0.98x. The
    // read-ahead into the next piece then gave Q8_0 1.03-1.04x, the halving
    // 0.99-1.06x.)
    size_t row_bytes = 1;
    for (int i = 0; i < count; ++i) row_bytes = std::max(row_bytes, ws[i]->row_stride);
    const auto rows_per = [&](size_t bytes) { return std::max<int64_t>(4, static_cast<int64_t>(bytes / row_bytes) / 4 * 4); };
    for (int c = 0; c < n_chunks; ++c)
        spans[static_cast<size_t>(c)].v.store(static_cast<uint64_t>(std::min(total, (c + 1) * grain) - c * grain), std::memory_order_relaxed);
    struct Job {
        decltype(do_rows)* rows;
        Span* spans;
        int n;
        int64_t grain, own, steal;
    } job{&do_rows, spans.data(), n_chunks, grain, rows_per(size_t(128) << 10), rows_per(size_t(32) << 10)};
    par.run(n_chunks, [](void* arg, int c) {
        const Job& j = *static_cast<const Job*>(arg);
        // Up to n rows of chunk ch, from its front or its back; false when none is left.
        auto take = [&](int ch, bool front, int64_t n) {
            std::atomic<uint64_t>& v = j.spans[ch].v;
            uint64_t cur = v.load(std::memory_order_relaxed);
            for (;;) {
                const int64_t f = static_cast<int64_t>(cur >> 32), b = static_cast<int64_t>(cur & 0xFFFFFFFFu);
                if (f >= b) return false;
                const int64_t half = std::max<int64_t>(4, (b - f) / 2 / 4 * 4), k = std::min(n, half);
                const int64_t lo = front ? f : std::max(f, b - k), hi = front ? std::min(b, f + k) : b;
                const uint64_t left = front ? static_cast<uint64_t>(hi) << 32 | static_cast<uint64_t>(b)
                                            : static_cast<uint64_t>(f) << 32 | static_cast<uint64_t>(lo);
                if (v.compare_exchange_weak(cur, left, std::memory_order_relaxed)) {
                    (*j.rows)(ch * j.grain + lo, ch * j.grain + hi, ch * j.grain + (front ? b : hi));
                    return true;
                }
            }
        };
        while (take(c, true, j.own)) {}
        for (int d = 1; d < j.n; ++d)
            while (take((c + d) % j.n, false, j.steal)) {}
    }, &job);
}

Context::Impl::RowSplit Context::Impl::row_split(int count, const detail::Weight* const* ws, int64_t rows_in) const {
    RowSplit s;
    int64_t cols = 1;
    for (int i = 0; i < count; ++i) {
        s.first[i + 1] = s.first[i] + ws[i]->rows;
        cols = std::max(cols, ws[i]->cols);
    }
    const int64_t total = s.first[count];
    // Enough work per chunk that handing it to another thread pays, and one
    // equal chunk per thread: each thread reads one stretch of memory. (Four
    // chunks per thread, claimed as the threads come, were 15-20% slower for
    // smollm2-135m Q8_0 and llama-3.2-1b Q4_K generation, and chunks shrinking
    // from a quarter of the rows to a sixteenth 10-20%: every chunk restarts a
    // memory stream, and every claim moves a shared cache line between the
    // cores.)
    const int64_t min_rows = std::max<int64_t>(4, (int64_t(1) << 14) / (cols * rows_in));
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(std::max(1, n_threads), total / min_rows));
    s.grain = std::max<int64_t>(4, ((total + chunks - 1) / chunks + 3) / 4 * 4);
    s.n_chunks = static_cast<int>((total + s.grain - 1) / s.grain);
    return s;
}

// Between two one-token products the caller works alone (norms, attention's
// merge, activations) while the memory sits idle. So before each product,
// worker c is told where the next product's chunk c starts (the caller claims
// chunk 0 first, and the workers then take the others), and reads its first
// 64 KiB once the current job leaves it idle: its share of the next product
// starts in its cache. No weights (count 0): nothing to read. (Generation,
// 2 threads, against no reads, alternating 64-token runs in one process,
// medians of 21-41 rounds: smollm2-135m Q8_0 in 13 runs 0.97-1.07x, median
// 1.02x; Q4_0 1.02x and 1.03x, Q4_K 0.98x and 1.02x, F16 1.06x; llama-3.2-1b
// Q4_K 1.05x. Reading 32 or 128 KiB: 1.00x and 1.01x of 64.)
void Context::Impl::read_next(int count, const detail::Weight* const* ws) {
    using namespace detail;
    constexpr size_t kBytes = size_t(64) << 10;
    bool row_pass = count > 0;
    for (int i = 0; i < count; ++i) row_pass = row_pass && !gemm_takes(*ws[i], 1);
    const RowSplit split = row_pass ? row_split(count, ws, 1) : RowSplit();
    for (int c = 1; c < n_threads; ++c) {
        const int64_t r = static_cast<int64_t>(c) * split.grain;
        const void* p = nullptr;
        size_t n = 0;
        for (int k = 0; row_pass && c < split.n_chunks && k < count; ++k) {
            if (r >= split.first[k + 1]) continue;
            const Weight& w = *ws[k];
            const int64_t row = r - split.first[k];
            p = w.data + static_cast<size_t>(row) * w.row_stride;
            n = std::min(kBytes, static_cast<size_t>(w.rows - row) * w.row_stride);
            break;
        }
        par.set_idle_read(c, p, n);
    }
}

void Context::Impl::attention(int layer, int m, int n_past) {
    using namespace detail;
    const int H = hp.n_head, D = hp.head_dim, KV = hp.kv_dim(), Qd = hp.q_dim();
    const int group = hp.n_head / hp.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    const uint8_t* K = kv_at(kcache, layer, 0);
    const uint8_t* V = kv_at(vcache, layer, 0);
    const size_t es = kv_es, row_bytes = static_cast<size_t>(KV) * es;
    // Small heads (a few floats) are done inline: a kernel call per key costs more than the key.
    const bool small = D < 32;
    const int block = attn_block;

    float* const s_base = scores.data();  // the tasks' scratch

    // The online softmax's step: a block of n raw scores s becomes the weights
    // e^(score * scale - mx) under the running maximum mx, added to the
    // running sum. What was summed under a smaller maximum (sum, and o: D
    // floats) is rescaled first, unless this is the first block.
    auto softmax_block = [&](float* s, int n, bool first, float* o, float& mx, double& sum) {
        const float bmax = scale_max_f32(n, scale, s);
        if (bmax > mx) {
            if (!first) {
                const float c = std::exp(mx - bmax);
                scale_f32(D, c, o);
                sum *= c;
            }
            mx = bmax;
        }
        sum += exp_sum_f32(n, mx, s);
    };
    // The raw scores of n keys (rows `stride` floats apart) for query qv into
    // out, four keys at a time; o += the n value rows weighted by w.
    auto key_scores = [&](const float* qv, const float* keys, size_t stride, int n, float* out) {
        int j = 0;
        if (!small)
            for (; j + 4 <= n; j += 4) dot4_keys_f32(qv, keys + static_cast<size_t>(j) * stride, stride, D, out + j);
        for (; j < n; ++j) {
            const float* kt = keys + static_cast<size_t>(j) * stride;
            float acc = 0;
            if (small) {
                for (int d = 0; d < D; ++d) acc += qv[d] * kt[d];
            } else {
                acc = dot_f32(qv, kt, D);
            }
            out[j] = acc;
        }
    };
    auto add_values = [&](const float* w, const float* values, size_t stride, int n, float* o) {
        if (!small) {
            weighted_rows_f32(n, w, values, stride, D, o);
            return;
        }
        for (int j = 0; j < n; ++j)
            for (int d = 0; d < D; ++d) o[d] += w[j] * values[static_cast<size_t>(j) * stride + d];
    };

    // One token: every head at once, over runs of the positions, one run per
    // thread when there are enough keys (the threads share the reads of the
    // cached keys and values, which a token's stream of weights has pushed out
    // of the caches). A position's keys, all KV heads, are one row of the
    // cache, as are its values: a run is read front to back, kTokenRows rows
    // at a time, the next rows requested, and each row serves every head. An
    // F16 cache is widened a few rows at a time. Each run leaves its output
    // per head, not yet divided by the sum, with its maxima and sums; they are
    // then merged per head. (smollm2-135m Q8_0, 2 threads, 32 tokens after
    // 2048, against a job per run and head (each reading strided slices of
    // the rows, an F16 cache widened key by key): 1.00x with an F32 cache,
    // 1.78x with F16.)
    if (m == 1) {
        const int keys = n_past + 1;
        const int runs = std::max(1, std::min(n_threads, keys / kMinKeysPerRun));
        const int per = (keys + runs - 1) / runs;
        float* const po = parts.data();                                // [runs][Qd]
        float* const pm = po + static_cast<size_t>(n_threads) * Qd;    // [runs][H] maxima
        double* const ps = part_sums.data();                           // [runs][H] sums
        const size_t stride = token_attention_stride();
        auto run = [&](int r, float* s) {
            const int t_begin = r * per, t_end = std::min(keys, (r + 1) * per);
            float* const o = po + static_cast<size_t>(r) * Qd;
            float* const mx = pm + static_cast<size_t>(r) * H;
            double* const sum = ps + static_cast<size_t>(r) * H;
            float* const wide = s + static_cast<size_t>(H) * block;
            // Cache rows [t, t + n) as floats, KV apart: in place for F32, widened for F16.
            auto rows_at = [&](const uint8_t* C, int t, int n) -> const float* {
                const uint8_t* p = C + static_cast<size_t>(t) * row_bytes;
                if (es == 4) return reinterpret_cast<const float*>(p);
                dequantize_row(Type::F16, p, wide, static_cast<int64_t>(n) * KV);
                return wide;
            };
            // Rows [a, b) of cache C requested (within the block ending at t1).
            auto request_rows = [&](const uint8_t* C, int a, int b, int t1) {
                b = std::min(b, t1);
                if (a < b) request_lines(C + static_cast<size_t>(a) * row_bytes, static_cast<size_t>(b - a) * row_bytes);
            };
            std::memset(o, 0, sizeof(float) * static_cast<size_t>(Qd));
            for (int h = 0; h < H; ++h) mx[h] = -std::numeric_limits<float>::infinity(), sum[h] = 0;
            for (int t0 = t_begin; t0 < t_end; t0 += block) {
                if (aborted()) return;
                const int t1 = std::min(t_end, t0 + block);
                request_rows(K, t0, t0 + kTokenRows, t1);
                for (int t = t0; t < t1; t += kTokenRows) {  // the block's scores, head h's at s + h * block
                    const int n = std::min(kTokenRows, t1 - t);
                    request_rows(K, t + kTokenRows, t + kTokenRows + n, t1);
                    const float* rows = rows_at(K, t, n);
                    for (int h = 0; h < H; ++h)
                        key_scores(q.data() + static_cast<size_t>(h) * D, rows + static_cast<size_t>(h / group) * D, KV, n,
                                   s + static_cast<size_t>(h) * block + (t - t0));
                }
                for (int h = 0; h < H; ++h)
                    softmax_block(s + static_cast<size_t>(h) * block, t1 - t0, t0 == t_begin, o + static_cast<size_t>(h) * D, mx[h], sum[h]);
                request_rows(V, t0, t0 + kTokenRows, t1);
                for (int t = t0; t < t1; t += kTokenRows) {  // the block's values
                    const int n = std::min(kTokenRows, t1 - t);
                    request_rows(V, t + kTokenRows, t + kTokenRows + n, t1);
                    const float* rows = rows_at(V, t, n);
                    for (int h = 0; h < H; ++h)
                        add_values(s + static_cast<size_t>(h) * block + (t - t0), rows + static_cast<size_t>(h / group) * D, KV, n,
                                   o + static_cast<size_t>(h) * D);
                }
            }
        };
        if (runs == 1) {
            run(0, s_base);
        } else {
            par.for_range(runs, 1, [&](int64_t b, int64_t e, int chunk) {
                for (int64_t r = b; r < e; ++r) run(static_cast<int>(r), s_base + static_cast<size_t>(chunk) * stride);
            });
        }
        if (abort_flag.load(std::memory_order_relaxed)) return;  // (some runs not done)
        for (int h = 0; h < H; ++h) {
            float mx = -std::numeric_limits<float>::infinity();
            for (int r = 0; r < runs; ++r) mx = std::max(mx, pm[static_cast<size_t>(r) * H + h]);
            float* o = att.data() + static_cast<size_t>(h) * D;
            std::memset(o, 0, sizeof(float) * D);
            double sum = 0;
            for (int r = 0; r < runs; ++r) {
                const size_t at = static_cast<size_t>(r) * H + static_cast<size_t>(h);
                const float c = std::exp(pm[at] - mx);
                sum += static_cast<double>(c) * ps[at];
                axpy_f32(D, c, po + static_cast<size_t>(r) * Qd + static_cast<size_t>(h) * D, o);
            }
            scale_f32(D, static_cast<float>(1.0 / sum), o);
        }
        return;
    }

    // Several tokens: one job per row and head. Keys [t_begin, t_end) of head
    // h for query qv, in blocks with a running maximum mx and sum (online
    // softmax): the scores of a whole context row are never stored. o gets
    // the values weighted by e^(score - mx), not yet divided by the sum. s
    // holds a block of scores, then (F16 cache) kWideRows widened rows (see
    // attend_stride).
    auto attend = [&](const float* qv, int h, int t_begin, int t_end, float* s, float* o, float& mx, double& sum) {
        const int kvh = h / group;
        const uint8_t* Kh = K + static_cast<size_t>(kvh) * D * es;
        const uint8_t* Vh = V + static_cast<size_t>(kvh) * D * es;
        // The head's rows [t, t + n) of the cache as floats, `stride` apart:
        // in place for F32, widened into the scratch for F16 (n <= kWideRows).
        auto head_rows = [&](const uint8_t* head, int t, int n, size_t& stride) -> const float* {
            if (es == 4) {
                stride = static_cast<size_t>(KV);
                return reinterpret_cast<const float*>(head + static_cast<size_t>(t) * row_bytes);
            }
            float* wide = s + block + 2 * D;
            for (int i = 0; i < n; ++i)
                dequantize_row(Type::F16, head + static_cast<size_t>(t + i) * row_bytes, wide + static_cast<size_t>(i) * D, D);
            stride = static_cast<size_t>(D);
            return wide;
        };
        const int piece = es == 4 ? block : kWideRows;  // rows per head_rows call
        std::memset(o, 0, sizeof(float) * D);
        mx = -std::numeric_limits<float>::infinity();
        sum = 0;
        for (int t0 = t_begin; t0 < t_end; t0 += block) {
            const int n = std::min(t_end, t0 + block) - t0;
            for (int j0 = 0; j0 < n; j0 += piece) {  // raw scores of the block's keys into s
                const int nj = std::min(piece, n - j0);
                size_t ks;
                const float* keys = head_rows(Kh, t0 + j0, nj, ks);
                key_scores(qv, keys, ks, nj, s + j0);
            }
            softmax_block(s, n, t0 == t_begin, o, mx, sum);
            for (int j0 = 0; j0 < n; j0 += piece) {  // the block's values
                const int nj = std::min(piece, n - j0);
                size_t vs;
                const float* values = head_rows(Vh, t0 + j0, nj, vs);
                add_values(s + j0, values, vs, nj, o);
            }
        }
    };
    // Enough work per chunk that handing it to another thread pays. Jobs run
    // from the last token back: the longest rows are claimed first, and the
    // short ones left at the end even out the threads' finishing times.
    const size_t s_stride = attend_stride();
    const int64_t jobs = static_cast<int64_t>(m) * H;
    const int64_t job_cost = static_cast<int64_t>(n_past + m) * D * 2;
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, job_cost));
    par.for_range(jobs, grain, [&](int64_t b, int64_t e, int chunk) {
        float* s = s_base + static_cast<size_t>(chunk) * s_stride;
        for (int64_t job = jobs - 1 - b; job > jobs - 1 - e; --job) {
            if ((job & 15) == 0 && aborted()) return;
            const int i = static_cast<int>(job / H), h = static_cast<int>(job % H);
            const size_t at = static_cast<size_t>(i) * Qd + static_cast<size_t>(h) * D;
            float* o = att.data() + at;
            float mx;
            double sum;
            attend(q.data() + at, h, 0, n_past + i + 1, s, o, mx, sum);
            scale_f32(D, static_cast<float>(1.0 / sum), o);
        }
    });
}

// Evaluates m tokens at positions n_past... Writes the logits of every row
// (all_rows) or of the last row only to logits_out.
Status Context::Impl::forward(const int32_t* toks, int n_tok, float* logits_out, bool all_rows) {
    const int m = n_tok;
    using namespace detail;
    const int n_past = static_cast<int>(tokens.size());
    const int E = hp.n_embd, Qd = hp.q_dim(), KVd = hp.kv_dim(), F = hp.n_ff;
    const Model::Impl& M = *this->m;

    const ArchTraits& arch = hp.traits;
    auto norm = [&](const float* src, const Weight& w, const Weight& b, float* dst) {
        const float* wp = reinterpret_cast<const float*>(w.data);
        if (arch.norm == NormKind::rms) rms_norm(src, wp, dst, E, hp.norm_eps);
        else layer_norm(src, wp, b ? reinterpret_cast<const float*>(b.data) : nullptr, dst, E, hp.norm_eps);
    };

    // Token embeddings (exact dequantization of the rows), plus learned
    // positions, and the RoPE angles of each row's position.
    const float* freq_factors = M.rope_freqs ? reinterpret_cast<const float*>(M.rope_freqs.data) : nullptr;
    each_row(m, 4 * E, [&](int64_t i) {
        const Weight& te = M.token_embd;
        float* xi = x.data() + static_cast<size_t>(i) * E;
        dequantize_row(te.type, te.data + static_cast<size_t>(toks[i]) * te.row_stride, xi, E);
        if (arch.pos_embd) {
            const Weight& pe = M.pos_embd;
            float* tmp = out.data() + static_cast<size_t>(i) * E;
            dequantize_row(pe.type, pe.data + static_cast<size_t>(n_past + i) * pe.row_stride, tmp, E);
            for (int j = 0; j < E; ++j) xi[j] += tmp[j];
        }
        if (hp.n_rot > 0)
            rope_angles(n_past + static_cast<int>(i), hp.n_rot, hp.rope_base, hp.rope_freq_scale, freq_factors,
                        rope_cs.data() + static_cast<size_t>(i) * hp.n_rot);
    });

    // Each pass over the rows between two products does all the per-row work
    // there is at that point. A product's output that adds to the residual
    // stream (attention output, FFN down) waits in `out` until the next pass
    // that reads x: residual_bias is then non-null (pointing at the product's
    // bias, which may be empty).
    const Weight* residual_bias = nullptr;
    auto add_residual = [&](int64_t i) {
        if (!residual_bias) return;
        float* xi = x.data() + static_cast<size_t>(i) * E;
        const float* oi = out.data() + static_cast<size_t>(i) * E;
        const float* b = *residual_bias ? reinterpret_cast<const float*>(residual_bias->data) : nullptr;
        for (int j = 0; j < E; ++j) xi[j] += b ? oi[j] + b[j] : oi[j];
    };
    auto add_row_bias = [](float* y, const Weight& b, int64_t n) {
        if (!b) return;
        const float* bb = reinterpret_cast<const float*>(b.data);
        for (int64_t j = 0; j < n; ++j) y[j] += bb[j];
    };

    // The norm weights and biases that the work between two products reads
    // lie in the memory-mapped file, cold by the time they are used again:
    // a whole token's weights went through the caches since. Each is requested
    // when the product before its use starts, so that its misses overlap the
    // product instead of the time between products, when the threads wait on
    // one another. With one token, so are the cache slots it writes K and V to.
    // (smollm2-135m Q8_0 generation: the FFN norm took 1.4 us per layer, then
    // 0.5.)
    auto request = [](std::initializer_list<const Weight*> ws) {
        for (const Weight* w : ws)
            if (*w) request_lines(w->data, static_cast<size_t>(std::max<int64_t>(1, w->rows)) * w->row_stride);
    };
    request({&M.layers[0].attn_norm, &M.layers[0].attn_norm_b});

    // With one token, each product names the one after it (read_next).
    auto next = [&](std::initializer_list<const Weight*> ws) {
        if (m == 1) read_next(static_cast<int>(ws.size()), ws.begin());
    };
    auto next_qkv = [&](int layer) {
        const LayerWeights& N = M.layers[static_cast<size_t>(layer)];
        if (arch.fused_qkv) next({&N.wqkv});
        else next({&N.wq, &N.wk, &N.wv});
    };
    if (m != 1) read_next(0, nullptr);

    for (int l = 0; l < hp.n_layer; ++l) {
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");
        const LayerWeights& L = M.layers[static_cast<size_t>(l)];

        // Residual, attention norm, Q/K/V input (converted once per format).
        const Weight& w_in = arch.fused_qkv ? L.wqkv : L.wq;
        Act aq = prepare(xn.data(), m, E, w_in, 0, 6 * E, [&](int64_t i) {
            add_residual(i);
            norm(x.data() + static_cast<size_t>(i) * E, L.attn_norm, L.attn_norm_b, xn.data() + static_cast<size_t>(i) * E);
        });
        residual_bias = nullptr;
        request({&L.bq, &L.bk, &L.bv, &L.bqkv, &L.q_norm, &L.k_norm});
        if (m == 1) {
            request_lines(kv_at(kcache, l, n_past), static_cast<size_t>(KVd) * kv_es, true);
            request_lines(kv_at(vcache, l, n_past), static_cast<size_t>(KVd) * kv_es, true);
        }
        next({&L.wo});
        if (arch.fused_qkv) {
            matmul(L.wqkv, aq, m, qkv.data());
        } else {
            const Type tq = aq.type, tk = vec_dot_type(L.wk.type), tv = vec_dot_type(L.wv.type);
            Act ak = tk == tq ? aq : make_act(xn.data(), m, E, tk, 1);
            Act av = tv == tq ? aq : tv == tk ? ak : make_act(xn.data(), m, E, tv, 2);
            const Weight* ws[3] = {&L.wq, &L.wk, &L.wv};
            const Act* as[3] = {&aq, &ak, &av};
            float* ys[3] = {q.data(), k.data(), v.data()};
            matmul_n(3, ws, as, m, ys);
        }
        // Per token: biases, Q/K norms, RoPE, then K and V appended to the cache.
        const float* qn = arch.qk_norm ? reinterpret_cast<const float*>(L.q_norm.data) : nullptr;
        const float* kn = arch.qk_norm ? reinterpret_cast<const float*>(L.k_norm.data) : nullptr;
        each_row(m, 4 * (Qd + 2 * KVd), [&](int64_t i) {
            float* qi = q.data() + static_cast<size_t>(i) * Qd;
            float* ki = k.data() + static_cast<size_t>(i) * KVd;
            float* vi = v.data() + static_cast<size_t>(i) * KVd;
            if (arch.fused_qkv) {
                float* row = qkv.data() + static_cast<size_t>(i) * (Qd + 2 * KVd);
                add_row_bias(row, L.bqkv, Qd + 2 * KVd);
                std::memcpy(qi, row, sizeof(float) * Qd);
                std::memcpy(ki, row + Qd, sizeof(float) * KVd);
                std::memcpy(vi, row + Qd + KVd, sizeof(float) * KVd);
            } else {
                add_row_bias(qi, L.bq, Qd);
                add_row_bias(ki, L.bk, KVd);
                add_row_bias(vi, L.bv, KVd);
            }
            const int D = hp.head_dim;
            if (arch.qk_norm) {  // each head on its own
                auto norm_heads = [&](float* v, int heads, const float* w) {
                    for (int h = 0; h < heads; ++h) rms_norm(v + static_cast<size_t>(h) * D, w, v + static_cast<size_t>(h) * D, D, hp.norm_eps);
                };
                norm_heads(qi, hp.n_head, qn);
                norm_heads(ki, hp.n_head_kv, kn);
            }
            if (arch.rope != RopeKind::none) {
                const float* cs = rope_cs.data() + static_cast<size_t>(i) * hp.n_rot;
                rope_apply(qi, hp.n_head, D, hp.n_rot, cs, arch.rope);
                rope_apply(ki, hp.n_head_kv, D, hp.n_rot, cs, arch.rope);
            }
            const int pos = n_past + static_cast<int>(i);
            kv_put(kv_at(kcache, l, pos), ki, KVd);
            kv_put(kv_at(vcache, l, pos), vi, KVd);
        });

        attention(l, m, n_past);
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");

        Act ao = prepare(att.data(), m, Qd, L.wo, 0, 2 * Qd, [](int64_t) {});
        request({&L.bo, &L.ffn_norm, &L.ffn_norm_b});
        if (arch.ffn == FfnKind::swiglu) next({&L.w_gate, &L.w_up});
        else next({&L.w_up});
        matmul(L.wo, ao, m, out.data());
        residual_bias = &L.bo;

        // Feed-forward: down(silu(gate(x)) * up(x)), or down(gelu(up(x) + b) + b),
        // its input made with the attention's residual and the FFN norm.
        const bool swiglu = arch.ffn == FfnKind::swiglu;
        Act ag = prepare(xn.data(), m, E, swiglu ? L.w_gate : L.w_up, 0, 6 * E, [&](int64_t i) {
            add_residual(i);
            norm(x.data() + static_cast<size_t>(i) * E, L.ffn_norm, L.ffn_norm_b, xn.data() + static_cast<size_t>(i) * E);
        });
        residual_bias = nullptr;
        Act ad;
        if (swiglu) {
            const Type tu = vec_dot_type(L.w_up.type);
            Act au = tu == ag.type ? ag : make_act(xn.data(), m, E, tu, 1);
            const Weight* ws[2] = {&L.w_gate, &L.w_up};
            const Act* as[2] = {&ag, &au};
            float* ys[2] = {gate.data(), up.data()};
            next({&L.w_down});
            matmul_n(2, ws, as, m, ys);
            ad = prepare(gate.data(), m, F, L.w_down, 0, 10 * F, [&](int64_t i) {
                silu_mul_f32(F, gate.data() + static_cast<size_t>(i) * F, up.data() + static_cast<size_t>(i) * F);
            });
        } else {
            request({&L.b_up});
            next({&L.w_down});
            matmul(L.w_up, ag, m, gate.data());
            ad = prepare(gate.data(), m, F, L.w_down, 0, 10 * F, [&](int64_t i) {
                float* gi = gate.data() + static_cast<size_t>(i) * F;
                add_row_bias(gi, L.b_up, F);
                for (int j = 0; j < F; ++j) gi[j] = detail::gelu(gi[j], gelu);
            });
        }
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");
        if (l + 1 < hp.n_layer) request({&L.b_down, &M.layers[static_cast<size_t>(l) + 1].attn_norm, &M.layers[static_cast<size_t>(l) + 1].attn_norm_b});
        else request({&L.b_down, &M.output_norm, &M.output_norm_b});
        if (l + 1 < hp.n_layer) next_qkv(l + 1);
        else next({&M.output});
        matmul(L.w_down, ad, m, out.data());
        residual_bias = &L.b_down;
    }
    if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");

    // Last residual, output norm and logits for the rows asked for.
    const int first = all_rows ? 0 : m - 1;
    const int rows = m - first;
    Act ao = prepare(xn.data(), rows, E, M.output, 0, 6 * E, [&](int64_t i) {
        add_residual(first + i);
        norm(x.data() + static_cast<size_t>(first + i) * E, M.output_norm, M.output_norm_b, xn.data() + static_cast<size_t>(i) * E);
    });
    next_qkv(0);  // (the next token's)
    matmul(M.output, ao, rows, logits_out);
    tokens.insert(tokens.end(), toks, toks + m);
    return Status();
}

namespace detail {
inline int n_past_of(const Context::Impl& c) { return static_cast<int>(c.tokens.size()); }
}  // namespace detail

Context::Context() : impl_(new Impl) {}
Context::~Context() = default;

Status Context::create(std::shared_ptr<const Model> model, const ContextParams& params, std::unique_ptr<Context>& out) {
    out.reset();
    return detail::guard("Context::create", [&]() -> Status {
        if (!model) return detail::error(StatusCode::invalid_argument, "Context::create: no model");
        if (model->impl().vocab_only)
            return detail::error(StatusCode::invalid_argument, "Context::create: the model was loaded with vocab_only");
        std::unique_ptr<Context> c(new Context());
        c->impl_->model_ref = model;
        c->impl_->m = &model->impl();
        c->impl_->params = params;
        Status st = c->impl_->init();
        if (!st.ok()) return st;
        detail::log_msg(LogLevel::info, "context: %d tokens, KV cache %.2f MB, scratch %.2f MB, %d threads", c->impl_->n_ctx,
                        static_cast<double>(c->kv_cache_bytes()) / 1e6, static_cast<double>(c->scratch_bytes()) / 1e6,
                        c->impl_->n_threads);
        out = std::move(c);
        return Status();
    });
}

Status Context::eval(const int32_t* toks, size_t n, std::vector<float>* all_logits) {
    return detail::guard("Context::eval", [&]() -> Status {
        Impl& c = *impl_;
        if (n == 0) return detail::error(StatusCode::invalid_argument, "eval: no tokens");
        if (!toks) return detail::error(StatusCode::invalid_argument, "eval: null token array");
        const int V = c.hp.n_vocab;
        for (size_t i = 0; i < n; ++i)
            if (toks[i] < 0 || toks[i] >= V)
                return detail::error(StatusCode::invalid_argument, "eval: token id %d at index %zu is outside [0, %d)", toks[i], i, V);
        if (!c.params.context_shift && n > static_cast<size_t>(c.n_ctx) - c.tokens.size())
            return detail::error(StatusCode::context_full, "eval: %zu tokens do not fit: %zu of %d context positions are used",
                                 n, c.tokens.size(), c.n_ctx);
        if (all_logits) all_logits->assign(n * static_cast<size_t>(V), 0.0f);
        size_t done = 0;
        while (done < n) {
            int m = static_cast<int>(std::min(n - done, static_cast<size_t>(c.n_batch)));
            if (c.params.context_shift) {
                // A batch must fit beside the kept prefix once the window has shifted.
                const int room = c.n_ctx - std::max(0, std::min(c.params.n_keep, detail::n_past_of(c)));
                if (room > 0) m = std::min(m, room);
            }
            const bool last = done + static_cast<size_t>(m) == n;
            if (c.tokens.size() + static_cast<size_t>(m) > static_cast<size_t>(c.n_ctx)) {
                // Context shift: drop the older half of what follows the kept prefix.
                const int n_past = detail::n_past_of(c), keep = std::max(0, std::min(c.params.n_keep, n_past));
                const int discard = std::max((n_past - keep) / 2, n_past + m - c.n_ctx);
                if (keep + discard > n_past)
                    return detail::error(StatusCode::context_full,
                                         "eval: no room for %d tokens: %d context positions, %d kept", m, c.n_ctx, keep);
                Status st = shift(keep, discard);
                if (!st.ok()) return st;
            }
            float* dst = all_logits ? all_logits->data() + done * V : c.out.data();
            c.abort_flag.store(false);
            Status st = c.forward(toks + done, m, dst, all_logits != nullptr);
            if (!st.ok()) return st;
            if (last) {
                const float* row = all_logits ? dst + static_cast<size_t>(m - 1) * V : dst;
                std::memcpy(c.last_logits.data(), row, sizeof(float) * V);
            }
            done += static_cast<size_t>(m);
        }
        return Status();
    });
}

Status Context::shift(int n_keep, int n_discard) {
    using namespace detail;
    Impl& c = *impl_;
    const int n_past = detail::n_past_of(c);
    if (n_keep < 0 || n_discard <= 0 || n_keep > n_past || n_discard > n_past - n_keep)
        return error(StatusCode::invalid_argument, "shift: keep %d and discard %d do not fit %d tokens", n_keep, n_discard,
                     n_past);
    const Hparams& hp = c.hp;
    if (hp.traits.pos_embd)
        return error(StatusCode::unsupported, "shift: %s models have absolute position embeddings", hp.traits.name);
    const int KV = hp.kv_dim();
    std::vector<float> cs(static_cast<size_t>(std::max(hp.n_rot, 2)));
    const float* ff = c.m->rope_freqs ? reinterpret_cast<const float*>(c.m->rope_freqs.data) : nullptr;
    if (hp.n_rot > 0) rope_angles(-n_discard, hp.n_rot, hp.rope_base, hp.rope_freq_scale, ff, cs.data());
    std::vector<float> row(static_cast<size_t>(KV));
    const size_t rb = static_cast<size_t>(KV) * c.kv_es;
    for (int l = 0; l < hp.n_layer; ++l) {
        for (int t = n_keep + n_discard; t < n_past; ++t) {
            std::memmove(c.kv_at(c.vcache, l, t - n_discard), c.kv_at(c.vcache, l, t), rb);
            c.kv_get(c.kv_at(c.kcache, l, t), row.data(), KV);
            if (hp.traits.rope != RopeKind::none) rope_apply(row.data(), hp.n_head_kv, hp.head_dim, hp.n_rot, cs.data(), hp.traits.rope);
            c.kv_put(c.kv_at(c.kcache, l, t - n_discard), row.data(), KV);
        }
    }
    c.tokens.erase(c.tokens.begin() + n_keep, c.tokens.begin() + n_keep + n_discard);
    return Status();
}

namespace detail {
constexpr uint32_t kStateMagic = 0x5453474Du;  // "MGST"
constexpr uint32_t kStateVersion = 2;
}  // namespace detail

Status Context::state_save(std::vector<uint8_t>& out) const {
    return detail::guard("Context::state_save", [&]() -> Status {
        const Impl& c = *impl_;
        const detail::Hparams& hp = c.hp;
        const uint32_t head[7] = {detail::kStateMagic, detail::kStateVersion, static_cast<uint32_t>(hp.n_layer),
                                  static_cast<uint32_t>(hp.kv_dim()), static_cast<uint32_t>(hp.n_vocab),
                                  static_cast<uint32_t>(c.tokens.size()), static_cast<uint32_t>(c.kv_es)};
        const size_t n = c.tokens.size(), KV = static_cast<size_t>(hp.kv_dim()) * c.kv_es;  // bytes per cached row
        out.clear();
        out.reserve(sizeof head + n * 4 + c.last_logits.size() * 4 + 2 * hp.n_layer * n * KV);
        auto put = [&](const void* p, size_t bytes) {
            const uint8_t* b = static_cast<const uint8_t*>(p);
            out.insert(out.end(), b, b + bytes);
        };
        put(head, sizeof head);
        put(c.tokens.data(), n * sizeof(int32_t));
        put(c.last_logits.data(), c.last_logits.size() * sizeof(float));
        for (int l = 0; l < hp.n_layer; ++l) {
            const size_t off = static_cast<size_t>(l) * c.n_ctx * KV;
            put(c.kcache.data() + off, n * KV);
            put(c.vcache.data() + off, n * KV);
        }
        return Status();
    });
}

Status Context::state_load(const uint8_t* data, size_t size) {
    return detail::guard("Context::state_load", [&]() -> Status {
        using namespace detail;
        Impl& c = *impl_;
        const Hparams& hp = c.hp;
        uint32_t head[7];
        if (!data || size < sizeof head) return error(StatusCode::bad_format, "state_load: the state is truncated");
        std::memcpy(head, data, sizeof head);
        if (head[0] != kStateMagic || head[1] != kStateVersion)
            return error(StatusCode::bad_format, "state_load: not a minigpt state (or another version)");
        if (head[2] != static_cast<uint32_t>(hp.n_layer) || head[3] != static_cast<uint32_t>(hp.kv_dim()) ||
            head[4] != static_cast<uint32_t>(hp.n_vocab))
            return error(StatusCode::invalid_argument, "state_load: the state belongs to a different model");
        if (head[6] != c.kv_es)
            return error(StatusCode::invalid_argument, "state_load: the state's KV cache is %s, this context's is %s",
                         head[6] == 2 ? "F16" : "F32", c.kv_es == 2 ? "F16" : "F32");
        const size_t n = head[5], KV = static_cast<size_t>(hp.kv_dim()) * c.kv_es;  // bytes per cached row
        if (n > static_cast<size_t>(c.n_ctx))
            return error(StatusCode::context_full, "state_load: %zu tokens do not fit a context of %d", n, c.n_ctx);
        const size_t need = sizeof head + n * 4 + static_cast<size_t>(hp.n_vocab) * 4 + 2 * static_cast<size_t>(hp.n_layer) * n * KV;
        if (size != need) return error(StatusCode::bad_format, "state_load: %zu bytes, expected %zu", size, need);
        const uint8_t* p = data + sizeof head;
        std::vector<int32_t> toks(n);
        std::memcpy(toks.data(), p, n * 4);
        p += n * 4;
        for (int32_t t : toks)
            if (t < 0 || t >= hp.n_vocab) return error(StatusCode::bad_format, "state_load: token id %d out of range", t);
        std::memcpy(c.last_logits.data(), p, static_cast<size_t>(hp.n_vocab) * 4);
        p += static_cast<size_t>(hp.n_vocab) * 4;
        for (int l = 0; l < hp.n_layer; ++l) {
            const size_t off = static_cast<size_t>(l) * c.n_ctx * KV;
            std::memcpy(c.kcache.data() + off, p, n * KV);
            p += n * KV;
            std::memcpy(c.vcache.data() + off, p, n * KV);
            p += n * KV;
        }
        c.tokens = std::move(toks);
        return Status();
    });
}

const float* Context::logits() const { return impl_->last_logits.data(); }
int Context::n_past() const { return static_cast<int>(impl_->tokens.size()); }
int Context::n_ctx() const { return impl_->n_ctx; }
int Context::n_threads() const { return impl_->n_threads; }
void Context::reset() { impl_->tokens.clear(); }
Status Context::truncate(int n) {
    if (n < 0 || n > n_past())
        return detail::error(StatusCode::invalid_argument, "truncate: %d is outside [0, %d]", n, n_past());
    impl_->tokens.resize(static_cast<size_t>(n));
    return Status();
}
const Model& Context::model() const { return *impl_->model_ref; }
const std::vector<int32_t>& Context::tokens() const { return impl_->tokens; }
size_t Context::kv_cache_bytes() const { return impl_->kcache.bytes() + impl_->vcache.bytes(); }
size_t Context::scratch_bytes() const { return impl_->scratch_bytes(); }

MINIGPT_NS_END
