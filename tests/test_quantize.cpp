// Weight quantizers and minigpt-quantize's model conversion, checked against
// files made by llama.cpp's llama-quantize from the same F32 model.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <cmath>
#include <cstring>

using minigpt::Status;
using minigpt::StatusCode;
using namespace minigpt::detail;

namespace {

const char* const kTypes[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                              "IQ4_NL", "Q6_K", "Q4_K", "Q5_K", "Q3_K", "Q2_K"};

struct OpenGguf {
    FileBytes bytes;
    GgufFile file;
};

void open_gguf(const std::string& path, OpenGguf& g) {
    Status st = g.bytes.open(path, true);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    st = g.file.parse(g.bytes.data(), g.bytes.size());
    REQUIRE_MESSAGE(st.ok(), path << ": " << st.to_string());
}

std::string model_path(const std::string& tag) {
    return test_util::data_path("golden/models/quant-base-" + tag + ".gguf");
}

// Fraction of identical blocks between two tensors of the same type and size.
double identical_blocks(const uint8_t* a, const uint8_t* b, uint64_t nbytes, uint64_t block_bytes) {
    const uint64_t nb = nbytes / block_bytes;
    uint64_t same = 0;
    for (uint64_t i = 0; i < nb; ++i) same += std::memcmp(a + i * block_bytes, b + i * block_bytes, block_bytes) == 0;
    return nb ? static_cast<double>(same) / static_cast<double>(nb) : 1.0;
}

// Every tensor of `ours` has the type and bytes of the same-named tensor of `ref`.
void check_same_tensors(const GgufFile& ours, const GgufFile& ref, const std::string& what) {
    CHECK_MESSAGE(ours.tensors.size() == ref.tensors.size(), what);
    for (size_t i = 0; i < ours.tensors.size(); ++i) {
        const GgufTensor& t = ours.tensors[i];
        const GgufTensor* r = ref.find_tensor(t.name);
        REQUIRE_MESSAGE(r != nullptr, what << ": llama.cpp's file has no tensor " << t.name);
        CHECK_MESSAGE(t.type == r->type, what << " " << t.name << ": " << type_name(t.type) << " vs " << type_name(r->type));
        if (i < ref.tensors.size()) CHECK_MESSAGE(t.name == ref.tensors[i].name, what << ": tensor order differs at " << i);
        if (t.type != r->type || t.nbytes != r->nbytes) continue;
        const bool same = std::memcmp(t.data, r->data, t.nbytes) == 0;
        CHECK_MESSAGE(same, what << " " << t.name << ": only "
                                 << 100.0 * identical_blocks(t.data, r->data, t.nbytes, type_info(t.type).block_bytes)
                                 << "% of the blocks are identical");
    }
}

}  // namespace

TEST_CASE("quantize_weights gives llama.cpp's bytes for every weight of every type") {
    OpenGguf base;
    open_gguf(model_path("F32"), base);
    for (const char* tag_c : kTypes) {
        const std::string tag = tag_c;
        CAPTURE(tag);
        OpenGguf ref;
        open_gguf(model_path(tag), ref);
        Type want;
        REQUIRE(parse_quant_type(tag, want));
        int n_checked = 0;
        for (const GgufTensor& t : base.file.tensors) {
            if (t.n_dims < 2) continue;
            CAPTURE(t.name);
            const GgufTensor* r = ref.file.find_tensor(t.name);
            REQUIRE_MESSAGE(r != nullptr, "no tensor " << t.name << " in quant-base-" << tag);
            REQUIRE(t.type == static_cast<uint32_t>(Type::F32));
            REQUIRE(r->type == static_cast<uint32_t>(want));  // the reference files are --pure
            const int64_t n_rows = t.ne[1] * t.ne[2] * t.ne[3];
            std::vector<uint8_t> out(static_cast<size_t>(n_rows) * row_bytes(want, t.ne[0]), 0xAB);
            REQUIRE(out.size() == r->nbytes);
            Status st = quantize_weights(want, reinterpret_cast<const float*>(t.data), out.data(), n_rows, t.ne[0]);
            REQUIRE_MESSAGE(st.ok(), st.to_string());
            const bool same = std::memcmp(out.data(), r->data, out.size()) == 0;
            CHECK_MESSAGE(same, tag << " " << t.name << ": "
                                    << 100.0 * identical_blocks(out.data(), r->data, out.size(), type_info(want).block_bytes)
                                    << "% of the blocks are identical");
            ++n_checked;
        }
        CHECK(n_checked == 16);
    }
}

TEST_CASE("quantize_model --pure reproduces llama-quantize's files and their logits") {
    OpenGguf base;
    open_gguf(model_path("F32"), base);
    const std::vector<int> tokens = test_util::json_int_array(test_util::read_file(test_util::data_path("golden/tokens.json")), "tokens");
    REQUIRE(tokens.size() == 40);
    std::vector<int32_t> ids(tokens.begin(), tokens.end());
    for (const char* tag_c : kTypes) {
        const std::string tag = tag_c;
        CAPTURE(tag);
        Type t;
        REQUIRE(parse_quant_type(tag, t));
        GgufWriter w;
        int n_reports = 0;
        Status st = quantize_model(base.file, t, true, w, [&](const QuantizeTensorReport& r) {
            ++n_reports;
            CHECK(r.count == 21);
        });
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(n_reports == 21);
        std::vector<uint8_t> bytes = w.bytes();
        GgufFile ours;
        st = ours.parse(bytes.data(), bytes.size());
        REQUIRE_MESSAGE(st.ok(), st.to_string());

        OpenGguf ref;
        open_gguf(model_path(tag), ref);
        check_same_tensors(ours, ref.file, tag);
        int64_t ft = -1, ref_ft = -2, qv = -1;
        Status ignore;
        CHECK(ours.get_int("general.file_type", ft, ignore));
        CHECK(ref.file.get_int("general.file_type", ref_ft, ignore));
        CHECK(ft == ref_ft);
        CHECK(ours.get_int("general.quantization_version", qv, ignore));
        CHECK(qv == 2);
        CHECK(ours.find("tokenizer.ggml.tokens") != nullptr);

        if (!type_supported(t)) {
            MESSAGE("logits not compared for " << tag << ": the kernels do not support it yet");
            continue;
        }
        std::shared_ptr<minigpt::Model> model;
        st = minigpt::Model::load_from_memory(bytes.data(), bytes.size(), minigpt::ModelParams(), model);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        minigpt::ContextParams cp;
        cp.n_ctx = 256;
        cp.n_threads = 1;
        std::unique_ptr<minigpt::Context> ctx;
        st = minigpt::Context::create(model, cp, ctx);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        std::vector<float> logits;
        st = ctx->eval(ids, &logits);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        const std::vector<float> want =
            test_util::read_f32(test_util::data_path("golden/dumps/quant-base-" + tag + "/logits_batch.f32"));
        REQUIRE(want.size() == 40 * 512);
        REQUIRE(logits.size() == want.size());
        double mean = 0, var = 0, mean_abs = 0, max_abs = 0;
        for (float v : want) mean += v;
        mean /= static_cast<double>(want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            var += (want[i] - mean) * (want[i] - mean);
            const double d = std::fabs(static_cast<double>(logits[i]) - want[i]);
            mean_abs += d;
            max_abs = std::max(max_abs, d);
        }
        const double sd = std::sqrt(var / static_cast<double>(want.size()));
        mean_abs /= static_cast<double>(want.size());
        MESSAGE(tag << ": logits mean_abs " << mean_abs << ", max_abs " << max_abs << ", std " << sd);
        CHECK(mean_abs <= 0.01 * sd);
    }
}

TEST_CASE("quantize_model without --pure follows llama.cpp's Q4_K_M mixture") {
    OpenGguf base, ref;
    open_gguf(model_path("F32"), base);
    open_gguf(model_path("Q4_K_M-mix"), ref);
    GgufWriter w;
    Status st = quantize_model(base.file, Type::Q4_K, false, w);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    std::vector<uint8_t> bytes = w.bytes();
    GgufFile ours;
    st = ours.parse(bytes.data(), bytes.size());
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    check_same_tensors(ours, ref.file, "Q4_K_M");
    const GgufTensor* out = ours.find_tensor("output.weight");
    REQUIRE(out != nullptr);
    CHECK(out->type == static_cast<uint32_t>(Type::Q6_K));
}

TEST_CASE("quantize_weights and quantize_model reject bad input") {
    std::vector<float> x(256, 0.5f);
    std::vector<uint8_t> y(1024);
    CHECK(quantize_weights(Type::Q4_K, x.data(), y.data(), 1, 128).code() == StatusCode::invalid_argument);
    CHECK(quantize_weights(Type::Q4_0, x.data(), y.data(), 1, 48).code() == StatusCode::invalid_argument);
    CHECK(quantize_weights(Type::Q4_0, x.data(), y.data(), -1, 32).code() == StatusCode::invalid_argument);
    CHECK(quantize_weights(Type::IQ2_XXS, x.data(), y.data(), 1, 256).code() == StatusCode::unsupported);
    CHECK(quantize_weights(Type::Q8_0, nullptr, y.data(), 1, 32).code() == StatusCode::invalid_argument);
    x[7] = std::nanf("");
    Status st = quantize_weights(Type::Q6_K, x.data(), y.data(), 1, 256);
    CHECK(st.code() == StatusCode::invalid_argument);
    CHECK(st.message().find("not finite") != std::string::npos);
    x[7] = 0.5f;
    CHECK(quantize_weights(Type::Q6_K, x.data(), y.data(), 1, 256).ok());
    CHECK(quantize_weights(Type::Q4_0, x.data(), y.data(), 0, 32).ok());

    Type t = Type::F32;
    CHECK(parse_quant_type("q4_k", t));
    CHECK(t == Type::Q4_K);
    CHECK(parse_quant_type("iq4_nl", t));
    CHECK(t == Type::IQ4_NL);
    CHECK_FALSE(parse_quant_type("Q4_K_M", t));
    CHECK_FALSE(parse_quant_type("", t));
    CHECK(quant_ftype_of(Type::Q5_K) == 17);
    CHECK(quant_ftype_of(Type::Q8_K) == -1);

    GgufFile empty;
    GgufWriter w;
    CHECK(quantize_model(empty, Type::IQ2_XS, true, w).code() == StatusCode::unsupported);
}

TEST_CASE("an all-zero row quantizes to zero scales in every type") {
    std::vector<float> x(256, 0.0f);
    for (const char* tag_c : kTypes) {
        const std::string tag = tag_c;
        CAPTURE(tag);
        Type t;
        REQUIRE(parse_quant_type(tag, t));
        std::vector<uint8_t> y(row_bytes(t, 256), 0xCD);
        REQUIRE(quantize_weights(t, x.data(), y.data(), 1, 256).ok());
        std::vector<float> back(256, 1.0f);
        if (t == Type::F16 || t == Type::BF16 || t == Type::Q8_0 || t == Type::Q4_0) {
            dequantize_row(t, y.data(), back.data(), 256);
            for (float v : back) CHECK(v == 0.0f);
        } else {
            // The scale d (first two bytes, last two for Q3_K / Q6_K, bytes 80-81 for Q2_K) is zero.
            size_t off = t == Type::Q3_K ? 108 : t == Type::Q6_K ? 208 : t == Type::Q2_K ? 80 : 0;
            const TypeInfo ti = type_info(t);
            for (size_t b = 0; b < y.size() / ti.block_bytes; ++b) {
                uint16_t h;
                std::memcpy(&h, y.data() + b * ti.block_bytes + off, 2);
                CHECK(fp16_to_fp32(h) == 0.0f);
            }
        }
    }
}
