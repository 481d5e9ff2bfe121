// Tests for the number formats (fp16, bf16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL, Q2_K..Q6_K, Q8_1, Q8_K) and the compute
// kernels: every SIMD kernel compiled into this build is checked against the
// scalar reference.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"
#include "test_util.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace minigpt::detail;
using minigpt::detail::Type;

namespace {

float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
bool fp16_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }

// One set of kernels (one instruction set).
struct KernelSet {
    const char* name;
    VecDotFn (*vec_dot_fn)(Type);
    float (*dot_f32)(const float*, const float*, int64_t);
    void (*axpy_f32)(int64_t, float, const float*, float*);
    void (*scale_f32)(int64_t, float, float*);
    void (*matmul_rows)(Type, const void*, size_t, int64_t, int64_t, int64_t, const void*, size_t, int64_t, float*,
                        int64_t, int64_t);
};

std::vector<KernelSet> kernel_sets() {
    std::vector<KernelSet> v;
    v.push_back({"scalar", scalar::vec_dot_fn, scalar::dot_f32, scalar::axpy_f32, scalar::scale_f32,
                 scalar::matmul_rows});
#if defined(MINIGPT_AVX2)
    v.push_back({"avx2", avx2::vec_dot_fn, avx2::dot_f32, avx2::axpy_f32, avx2::scale_f32, avx2::matmul_rows});
#endif
#if defined(MINIGPT_AVX512)
    v.push_back({"avx512", avx512::vec_dot_fn, avx512::dot_f32, avx512::axpy_f32, avx512::scale_f32,
                 avx512::matmul_rows});
#endif
#if defined(MINIGPT_NEON)
    v.push_back({"neon", neon::vec_dot_fn, neon::dot_f32, neon::axpy_f32, neon::scale_f32, neon::matmul_rows});
#endif
    v.push_back({"dispatch", vec_dot_fn, dot_f32, axpy_f32, scale_f32, matmul_rows});
    return v;
}

const Type kTypes[] = {Type::F32, Type::F16, Type::BF16, Type::Q8_0, Type::Q4_0};

std::vector<float> random_floats(std::mt19937& rng, int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng);
    return v;
}

std::vector<uint8_t> quantized(Type t, const std::vector<float>& x) {
    std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(x.size())));
    quantize_row(t, x.data(), out.data(), static_cast<int64_t>(x.size()));
    return out;
}

// Sum of |w_i * a_i| over the dequantized rows: the scale of the rounding error
// any accumulation order can make.
double abs_dot(Type wt, const void* w, const void* a, int64_t n) {
    std::vector<float> fw(static_cast<size_t>(n)), fa(static_cast<size_t>(n));
    dequantize_row(wt, w, fw.data(), n);
    dequantize_row(vec_dot_type(wt), a, fa.data(), n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::fabs(double(fw[i]) * fa[i]);
    return s;
}

// Exact dot of the dequantized rows, in double.
double exact_dot(Type wt, const void* w, const void* a, int64_t n) {
    std::vector<float> fw(static_cast<size_t>(n)), fa(static_cast<size_t>(n));
    dequantize_row(wt, w, fw.data(), n);
    dequantize_row(vec_dot_type(wt), a, fa.data(), n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(fw[i]) * fa[i];
    return s;
}

float get_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

// Tolerance for a float-accumulated dot against the exact one: relative to the
// sum of |products|; Q4_1 / Q5_1 also carry the fp16 rounding of Q8_1's s.
double dot_tol(Type t, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a, int64_t n, double rel) {
    double tol = rel * abs_dot(t, w.data(), a.data(), n) + 1e-30;
    if (t == Type::Q4_1 || t == Type::Q5_1) {
        const size_t wb = type_info(t).block_bytes;
        for (int64_t b = 0; b < n / 32; ++b) {
            const BlockQ8_1* y = reinterpret_cast<const BlockQ8_1*>(a.data()) + b;
            tol += std::fabs(get_f16(w.data() + b * wb + 2)) * std::fabs(fp16_to_fp32(y->s)) * 1e-3;
        }
    }
    return tol;
}

// The wrong values of Y (m rows of ldy values, filled with -999 before) after
// the product of weight rows [r0, r1) of W with the activation rows of A:
// inside the range each must equal the scalar row dot product within
// dot_tol(rel), outside it nothing may be written. The first few are printed.
int count_bad_products(Type t, int64_t n, const std::vector<uint8_t>& W, const std::vector<uint8_t>& A, int64_t m,
                       int64_t ldy, int64_t r0, int64_t r1, const std::vector<float>& Y, double rel = 2e-5) {
    const size_t wrb = row_bytes(t, n), arb = row_bytes(vec_dot_type(t), n);
    int bad = 0;
    for (int64_t j = 0; j < m; ++j) {
        for (int64_t r = 0; r < ldy; ++r) {
            const float got = Y[static_cast<size_t>(j * ldy + r)];
            if (r < r0 || r >= r1) {
                if (got != -999.0f) ++bad;  // outside the range: untouched
                continue;
            }
            const std::vector<uint8_t> wr(W.begin() + r * wrb, W.begin() + (r + 1) * wrb);
            const std::vector<uint8_t> aj(A.begin() + j * arb, A.begin() + (j + 1) * arb);
            const float ref = scalar::vec_dot(t, n, wr.data(), aj.data());
            if (!(std::fabs(double(got) - ref) <= dot_tol(t, wr, aj, n, rel)) && ++bad < 4)
                MESSAGE("row " << r << " col " << j << ": " << got << " vs " << ref);
        }
    }
    return bad;
}

std::vector<int64_t> lengths_for(Type t) {
    if (type_info(t).block_size == 1)
        return {1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 255, 256, 257, 1000, 1023, 1024, 4096, 4097};
    return {32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 512, 576, 1024, 1056, 4096, 4128};
}

}  // namespace

// ---------------------------------------------------------------------------
// fp16 / bf16
// ---------------------------------------------------------------------------
TEST_CASE("fp16: exhaustive round trip of all 65536 values") {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const uint16_t hh = static_cast<uint16_t>(h);
        const float f = fp16_to_fp32(hh);
        const uint16_t back = fp32_to_fp16(f);
        if (fp16_is_nan(hh)) {
            // A NaN stays a NaN with the same sign; a signalling NaN becomes quiet.
            if (!(f != f) || !fp16_is_nan(back) || (back & 0x8000) != (hh & 0x8000) ||
                back != static_cast<uint16_t>(hh | 0x0200)) {
                if (bad++ < 5) FAIL_CHECK("nan " << h << " -> " << back);
            }
        } else if (back != hh) {
            if (bad++ < 5) FAIL_CHECK("fp16 " << h << " -> " << f << " -> " << back);
        }
    }
    CHECK(bad == 0);
}

TEST_CASE("fp16: known values") {
    CHECK(fp16_to_fp32(0x3C00) == 1.0f);
    CHECK(fp16_to_fp32(0xC000) == -2.0f);
    CHECK(fp16_to_fp32(0x7BFF) == 65504.0f);
    CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(fp16_to_fp32(0x03FF) == 1023.0f * std::ldexp(1.0f, -24));
    CHECK(fp16_to_fp32(0x0400) == std::ldexp(1.0f, -14));
    CHECK(fp16_to_fp32(0x3555) == 0.333251953125f);
    CHECK(std::isinf(fp16_to_fp32(0x7C00)));
    CHECK(fp16_to_fp32(0xFC00) < 0);
    CHECK(std::isnan(fp16_to_fp32(0x7E00)));
    CHECK(float_to_bits(fp16_to_fp32(0x8000)) == 0x80000000u);

    CHECK(fp32_to_fp16(1.0f) == 0x3C00);
    CHECK(fp32_to_fp16(-2.0f) == 0xC000);
    CHECK(fp32_to_fp16(0.1f) == 0x2E66);
    CHECK(fp32_to_fp16(65504.0f) == 0x7BFF);
    CHECK(fp32_to_fp16(65519.99f) == 0x7BFF);
    CHECK(fp32_to_fp16(65520.0f) == 0x7C00);  // tie with an odd mantissa rounds up to inf
    CHECK(fp32_to_fp16(1e10f) == 0x7C00);
    CHECK(fp32_to_fp16(-1e10f) == 0xFC00);
    CHECK(fp32_to_fp16(INFINITY) == 0x7C00);
    CHECK(fp16_is_nan(fp32_to_fp16(NAN)));
    CHECK(fp32_to_fp16(-0.0f) == 0x8000);
    CHECK(fp32_to_fp16(1e-10f) == 0x0000);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -14)) == 0x0400);
    CHECK(fp32_to_fp16(-std::ldexp(1.0f, -24)) == 0x8001);
}

TEST_CASE("fp16: rounding ties go to even") {
    // Between 1 and 1 + 2^-10, halfway is 1 + 2^-11.
    CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
    CHECK(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
    CHECK(fp32_to_fp16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3C01);
    CHECK(fp32_to_fp16(std::nextafter(1.0f + 3 * std::ldexp(1.0f, -11), 0.0f)) == 0x3C01);
    // Subnormal ties: 2^-25 is halfway between 0 and the smallest subnormal.
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);
    CHECK(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
    CHECK(fp32_to_fp16(3 * std::ldexp(1.0f, -25)) == 0x0002);
    CHECK(fp32_to_fp16(5 * std::ldexp(1.0f, -25)) == 0x0002);
    CHECK(fp32_to_fp16(7 * std::ldexp(1.0f, -25)) == 0x0004);
    // The largest subnormal rounds up into the smallest normal.
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);
}

#if defined(MINIGPT_AVX2)
TEST_CASE("fp16: agrees with the F16C instructions on random bit patterns") {
    std::mt19937 rng(123);
    int bad = 0;
    for (int i = 0; i < 2000000; ++i) {
        uint32_t u = rng();
        if (i & 1) u = (u & 0x8FFFFFFFu) | 0x30000000u;  // concentrate on the half range
        const float f = bits_to_float(u);
        const uint16_t hw = static_cast<uint16_t>(
            _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0));
        const uint16_t sw = fp32_to_fp16(f);
        if (hw != sw && bad++ < 5) FAIL_CHECK("f32 bits " << u << ": F16C " << hw << " ours " << sw);
    }
    for (uint32_t h = 0; h < 65536; ++h) {
        const float hw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h))));
        const float sw = fp16_to_fp32(static_cast<uint16_t>(h));
        if (float_to_bits(hw) != float_to_bits(sw) && bad++ < 5) FAIL_CHECK("fp16 " << h);
    }
    CHECK(bad == 0);
}
#endif

TEST_CASE("bf16: conversions") {
    CHECK(bf16_to_fp32(0x3F80) == 1.0f);
    CHECK(bf16_to_fp32(0xC000) == -2.0f);
    CHECK(fp32_to_bf16(1.0f) == 0x3F80);
    CHECK(fp32_to_bf16(-2.0f) == 0xC000);
    // Ties to even.
    CHECK(fp32_to_bf16(bits_to_float(0x3F808000u)) == 0x3F80);
    CHECK(fp32_to_bf16(bits_to_float(0x3F818000u)) == 0x3F82);
    CHECK(fp32_to_bf16(bits_to_float(0x3F808001u)) == 0x3F81);
    CHECK(fp32_to_bf16(bits_to_float(0x3F807FFFu)) == 0x3F80);
    CHECK(fp32_to_bf16(bits_to_float(0x7F7FFFFFu)) == 0x7F80);  // largest float rounds to inf
    CHECK(fp32_to_bf16(INFINITY) == 0x7F80);
    CHECK(fp32_to_bf16(-INFINITY) == 0xFF80);
    // NaN stays NaN, even one whose payload lives only in the low 16 bits.
    for (uint32_t nan_bits : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu}) {
        uint16_t b = fp32_to_bf16(bits_to_float(nan_bits));
        CHECK((b & 0x7F80) == 0x7F80);
        CHECK((b & 0x007F) != 0);
        CHECK((b & 0x8000) == ((nan_bits >> 16) & 0x8000));
    }
    // Every bf16 value survives a round trip.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const uint16_t hh = static_cast<uint16_t>(h);
        const float f = bf16_to_fp32(hh);
        CHECK(float_to_bits(f) == (h << 16));
        const bool nan = (hh & 0x7F80) == 0x7F80 && (hh & 0x7F) != 0;
        const uint16_t back = fp32_to_bf16(f);
        if (nan ? !((back & 0x7F80) == 0x7F80 && (back & 0x7F) != 0) : back != hh) ++bad;
    }
    CHECK(bad == 0);
}

// ---------------------------------------------------------------------------
// Block formats and row conversion.
// ---------------------------------------------------------------------------
TEST_CASE("types: support table and vec_dot_type") {
    for (Type t : kTypes) CHECK(type_supported(t));
    CHECK_FALSE(type_supported(Type::IQ4_XS));
    CHECK_FALSE(type_supported(Type::Q8_K));
    CHECK_FALSE(type_supported(Type::I32));
    CHECK(vec_dot_type(Type::F32) == Type::F32);
    CHECK(vec_dot_type(Type::F16) == Type::F16);
    CHECK(vec_dot_type(Type::BF16) == Type::BF16);
    CHECK(vec_dot_type(Type::Q8_0) == Type::Q8_0);
    CHECK(vec_dot_type(Type::Q4_0) == Type::Q8_0);
    CHECK(sizeof(BlockQ8_0) == type_info(Type::Q8_0).block_bytes);
    CHECK(sizeof(BlockQ4_0) == type_info(Type::Q4_0).block_bytes);
    CHECK((vec_dot_fn(Type::IQ4_XS) == nullptr));
    CHECK((vec_dot_fn(Type::I8) == nullptr));
    for (Type t : kTypes) CHECK((vec_dot_fn(t) != nullptr));
}

TEST_CASE("quantize/dequantize round trips stay within their error bounds") {
    std::mt19937 rng(7);
    const int64_t n = 4096;
    std::vector<float> x = random_floats(rng, n, 3.0f);
    x[5] = 0;  // include zeros and a whole zero block
    for (int j = 64; j < 96; ++j) x[j] = 0;
    std::vector<float> y(n);

    SUBCASE("F32 is a copy") {
        auto q = quantized(Type::F32, x);
        dequantize_row(Type::F32, q.data(), y.data(), n);
        CHECK(std::memcmp(x.data(), y.data(), n * sizeof(float)) == 0);
    }
    SUBCASE("F16") {
        auto q = quantized(Type::F16, x);
        dequantize_row(Type::F16, q.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            REQUIRE(std::fabs(x[i] - y[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -11));
            REQUIRE(fp32_to_fp16(x[i]) == reinterpret_cast<const uint16_t*>(q.data())[i]);
        }
    }
    SUBCASE("BF16") {
        auto q = quantized(Type::BF16, x);
        dequantize_row(Type::BF16, q.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) REQUIRE(std::fabs(x[i] - y[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -8));
    }
    SUBCASE("Q8_0") {
        auto q = quantized(Type::Q8_0, x);
        dequantize_row(Type::Q8_0, q.data(), y.data(), n);
        for (int64_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            const float d = amax / 127.0f;
            for (int j = 0; j < 32; ++j) REQUIRE(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= 0.56f * d + 1e-30f);
        }
        for (int j = 64; j < 96; ++j) CHECK(y[j] == 0.0f);
    }
    SUBCASE("Q4_0") {
        auto q = quantized(Type::Q4_0, x);
        dequantize_row(Type::Q4_0, q.data(), y.data(), n);
        double err2 = 0, ref2 = 0;
        for (int64_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            const float d = amax / 8.0f;
            for (int j = 0; j < 32; ++j) {
                const float e = std::fabs(x[b * 32 + j] - y[b * 32 + j]);
                REQUIRE(e <= 1.01f * d + 1e-30f);
                err2 += double(e) * e;
                ref2 += double(x[b * 32 + j]) * x[b * 32 + j];
            }
        }
        CHECK(std::sqrt(err2 / ref2) < 0.12);  // 4-bit: about 8-10% relative RMS error on Gaussian data
        for (int j = 64; j < 96; ++j) CHECK(y[j] == 0.0f);
    }
}

TEST_CASE("Q4_0: layout and the reference quantizer's rounding") {
    // Block with values -16..15: the largest magnitude is -16, so d = -16 / -8 = 2.
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
    BlockQ4_0 b;
    quantize_row(Type::Q4_0, x, &b, 32);
    CHECK(fp16_to_fp32(b.d) == 2.0f);
    // q = min(15, trunc(x / 2 + 8.5)); element j is the low nibble of qs[j], j + 16 the high one.
    for (int j = 0; j < 32; ++j) {
        const int expect = std::min(15, static_cast<int>(x[j] / 2.0f + 8.5f));
        const int got = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
        CHECK_MESSAGE(got == expect, "element " << j);
    }
    CHECK((b.qs[0] & 0x0F) == 0);   // -16 -> -8 * 2
    CHECK((b.qs[15] >> 4) == 15);   // 15 -> clamped to 7 * 2 = 14
    float y[32];
    dequantize_row(Type::Q4_0, &b, y, 32);
    CHECK(y[0] == -16.0f);
    CHECK(y[31] == 14.0f);
    CHECK(y[16] == 0.0f);
    CHECK(y[17] == 2.0f);  // 1 -> trunc(9.0) = 9 -> (9 - 8) * 2

    // Hand-made block: qs[0] = 0x1F holds element 0 = 15 and element 16 = 1.
    BlockQ4_0 h{};
    h.d = fp32_to_fp16(0.5f);
    for (int j = 0; j < 16; ++j) h.qs[j] = 0x88;
    h.qs[0] = 0x1F;
    dequantize_row(Type::Q4_0, &h, y, 32);
    CHECK(y[0] == 3.5f);
    CHECK(y[16] == -3.5f);
    CHECK(y[1] == 0.0f);

    // All-zero block: d = 0 / -8 = -0 (as in llama.cpp) and every value dequantizes to 0.
    float z[32] = {};
    quantize_row(Type::Q4_0, z, &b, 32);
    CHECK(fp16_to_fp32(b.d) == 0.0f);
    dequantize_row(Type::Q4_0, &b, y, 32);
    for (float v : y) CHECK(v == 0.0f);
}

TEST_CASE("Q8_0: activation quantization matches llama.cpp's x86 formula exactly") {
    std::mt19937 rng(99);
    std::vector<int64_t> sizes = {32, 64, 4096};
    for (int64_t n : sizes) {
        std::vector<float> x = random_floats(rng, n, 0.7f);
        if (n == 64)
            for (int j = 32; j < 64; ++j) x[j] = 0;  // an all-zero block
        std::vector<BlockQ8_0> q(n / 32), r(n / 32);
        quantize_row(Type::Q8_0, x.data(), q.data(), n);
        quantize_row_q8_0_ref(x.data(), r.data(), n);
        CHECK(std::memcmp(q.data(), r.data(), q.size() * sizeof(BlockQ8_0)) == 0);
        for (int64_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            CHECK(q[b].d == fp32_to_fp16(amax / 127.0f));
            const float id = amax != 0 ? 127.0f / amax : 0.0f;
            for (int j = 0; j < 32; ++j) {
                const int expect = static_cast<int>(std::nearbyint(x[b * 32 + j] * id));
                if (q[b].qs[j] != expect) {
                    FAIL_CHECK("n=" << n << " block " << b << " element " << j << ": " << int(q[b].qs[j]) << " vs "
                                    << expect);
                }
            }
        }
    }
    // Ties round half to even: with amax = 127 the scale is exactly 1.
    float t[32] = {};
    t[0] = 127.0f;
    t[1] = 2.5f;
    t[2] = 3.5f;
    t[3] = -2.5f;
    t[4] = -3.5f;
    t[5] = 0.5f;
    t[6] = 1.5f;
    t[7] = -126.5f;
    BlockQ8_0 b;
    quantize_row(Type::Q8_0, t, &b, 32);
    CHECK(fp16_to_fp32(b.d) == 1.0f);
    CHECK(b.qs[0] == 127);
    CHECK(b.qs[1] == 2);
    CHECK(b.qs[2] == 4);
    CHECK(b.qs[3] == -2);
    CHECK(b.qs[4] == -4);
    CHECK(b.qs[5] == 0);
    CHECK(b.qs[6] == 2);
    CHECK(b.qs[7] == -126);
    // All-zero block.
    float z[32] = {};
    quantize_row(Type::Q8_0, z, &b, 32);
    CHECK(b.d == 0);
    for (int8_t v : b.qs) CHECK(v == 0);
    // Non-finite input does not produce garbage outside [-127, 127].
    t[9] = NAN;
    quantize_row(Type::Q8_0, t, &b, 32);
    for (int8_t v : b.qs) CHECK(v >= -127);
}

// ---------------------------------------------------------------------------
// Kernels against the scalar reference.
// ---------------------------------------------------------------------------
TEST_CASE("scalar vec_dot equals the exact dot of the dequantized rows") {
    std::mt19937 rng(1);
    for (Type t : kTypes) {
        for (int64_t n : lengths_for(t)) {
            auto w = quantized(t, random_floats(rng, n));
            auto a = quantized(vec_dot_type(t), random_floats(rng, n));
            const double ref = exact_dot(t, w.data(), a.data(), n);
            const double tol = 1e-5 * abs_dot(t, w.data(), a.data(), n) + 1e-30;
            const float got = scalar::vec_dot(t, n, w.data(), a.data());
            CHECK_MESSAGE(std::fabs(got - ref) <= tol, type_name(t) << " n=" << n << " got " << got << " ref " << ref);
        }
    }
}

TEST_CASE("SIMD vec_dot matches scalar for every type and length") {
    std::mt19937 rng(2);
    for (const KernelSet& ks : kernel_sets()) {
        for (Type t : kTypes) {
            VecDotFn f = ks.vec_dot_fn(t);
            REQUIRE((f != nullptr));
            for (int64_t n : lengths_for(t)) {
                for (int rep = 0; rep < 3; ++rep) {
                    std::vector<uint8_t> w;
                    if (rep == 2 && t == Type::Q8_0) {
                        // Raw weight bytes, including -128, which quantizers never write.
                        w.resize(row_bytes(t, n));
                        for (int64_t b = 0; b < n / 32; ++b) {
                            BlockQ8_0 blk;
                            blk.d = fp32_to_fp16(0.01f * static_cast<float>(rng() % 100 + 1));
                            for (int j = 0; j < 32; ++j) blk.qs[j] = static_cast<int8_t>(rng() & 0xFF);
                            if (b == 0) blk.qs[0] = -128;
                            std::memcpy(w.data() + b * sizeof(BlockQ8_0), &blk, sizeof blk);
                        }
                    } else {
                        w = quantized(t, random_floats(rng, n, rep == 1 ? 100.0f : 1.0f));
                    }
                    auto a = quantized(vec_dot_type(t), random_floats(rng, n));
                    const float ref = scalar::vec_dot(t, n, w.data(), a.data());
                    const float got = f(n, w.data(), a.data());
                    const double tol = 2e-5 * abs_dot(t, w.data(), a.data(), n) + 1e-30;
                    if (!(std::fabs(double(got) - ref) <= tol)) {
                        FAIL_CHECK(std::string(ks.name) << " " << std::string(type_name(t)) << " n=" << n << " rep " << rep << ": " << got
                                           << " vs scalar " << ref << " (tol " << tol << ")");
                    }
                }
            }
        }
    }
}

TEST_CASE("SIMD dot_f32 / axpy_f32 / scale_f32 match scalar") {
    std::mt19937 rng(3);
    for (const KernelSet& ks : kernel_sets()) {
        for (int64_t n : lengths_for(Type::F32)) {
            auto x = random_floats(rng, n), y = random_floats(rng, n);
            double sabs = 0;
            for (int64_t i = 0; i < n; ++i) sabs += std::fabs(double(x[i]) * y[i]);
            const float ref = scalar::dot_f32(x.data(), y.data(), n);
            const float got = ks.dot_f32(x.data(), y.data(), n);
            CHECK_MESSAGE(std::fabs(double(got) - ref) <= 2e-5 * sabs, ks.name << " dot_f32 n=" << n);

            // Guard elements after the end must stay untouched.
            std::vector<float> y1(y), y2(y);
            y1.push_back(1234.5f);
            y2.push_back(1234.5f);
            scalar::axpy_f32(n, 0.37f, x.data(), y1.data());
            ks.axpy_f32(n, 0.37f, x.data(), y2.data());
            int bad = 0;
            for (int64_t i = 0; i < n; ++i) {
                const double tol = 1e-6 * (std::fabs(0.37 * x[i]) + std::fabs(y[i])) + 1e-30;
                if (std::fabs(double(y1[i]) - y2[i]) > tol) ++bad;
            }
            CHECK_MESSAGE(bad == 0, ks.name << " axpy_f32 n=" << n);
            CHECK(y2[n] == 1234.5f);

            std::vector<float> s1(y), s2(y);
            s2.push_back(-7.0f);
            scalar::scale_f32(n, -1.7f, s1.data());
            ks.scale_f32(n, -1.7f, s2.data());
            CHECK_MESSAGE(std::memcmp(s1.data(), s2.data(), n * sizeof(float)) == 0, ks.name << " scale_f32 n=" << n);
            CHECK(s2[n] == -7.0f);
            CHECK(s1[0] == -1.7f * y[0]);
        }
    }
}

TEST_CASE("matmul_rows matches a naive loop for odd m and row ranges") {
    std::mt19937 rng(4);
    const int64_t R = 37;  // weight rows
    for (Type t : kTypes) {
        const Type at = vec_dot_type(t);
        const int64_t nlist_f[] = {67, 1, 256, 130, 2000, 288, 3};
        // 192: an odd number of block pairs; 96, 32 and 288: an odd number of
        // blocks; 4096 and 4160: 64 and 65 pairs (the one-row path's stack
        // holds 64); 4064: 63 pairs and a half
        const int64_t nlist_q[] = {96, 32, 4096, 192, 4160, 288, 4064};
        for (int ni = 0; ni < 7; ++ni) {
            const int64_t n = type_info(t).block_size == 1 ? nlist_f[ni] : nlist_q[ni];
            const size_t wrb = row_bytes(t, n), arb = row_bytes(at, n);
            std::vector<uint8_t> W(wrb * R);
            for (int64_t r = 0; r < R; ++r) {
                auto row = quantized(t, random_floats(rng, n));
                std::memcpy(W.data() + r * wrb, row.data(), wrb);
            }
            for (int64_t m : {1, 2, 3, 5, 7}) {
                std::vector<uint8_t> A(arb * m);
                for (int64_t j = 0; j < m; ++j) {
                    auto row = quantized(at, random_floats(rng, n));
                    std::memcpy(A.data() + j * arb, row.data(), arb);
                }
                const int64_t ldy = R + 3;
                // {r0, r1, ahead_end}: the read-ahead limit (the rows after r1
                // that the caller reads next) never changes what is written.
                const int64_t ranges[][3] = {{0, R, 0}, {3, R - 2, R}, {5, 6, 0}, {0, 4, R}, {1, 10, 20}, {8, 8, R}};
                for (const KernelSet& ks : kernel_sets()) {
                    for (const auto& rg : ranges) {
                        std::vector<float> Y(ldy * m, -999.0f);
                        ks.matmul_rows(t, W.data(), wrb, n, rg[0], rg[1], A.data(), arb, m, Y.data(), ldy, rg[2]);
                        const int bad = count_bad_products(t, n, W, A, m, ldy, rg[0], rg[1], Y);
                        CHECK_MESSAGE(bad == 0, std::string(ks.name) << " " << std::string(type_name(t)) << " n=" << n << " m=" << m << " rows ["
                                                        << rg[0] << "," << rg[1] << ") ahead to " << rg[2]);
                    }
                }
            }
        }
    }
}

TEST_CASE("dispatch names the compiled instruction set") {
    const std::string name = simd_name();
#if defined(MINIGPT_AVX512)
    CHECK(name == "AVX512");
    CHECK((vec_dot_fn(Type::Q8_0) == avx512::vec_dot_fn(Type::Q8_0)));
#elif defined(MINIGPT_AVX2)
    CHECK(name == "AVX2");
    CHECK((vec_dot_fn(Type::Q8_0) == avx2::vec_dot_fn(Type::Q8_0)));
#elif defined(MINIGPT_NEON)
    CHECK(name == "NEON");
    CHECK((vec_dot_fn(Type::Q8_0) == neon::vec_dot_fn(Type::Q8_0)));
#else
    CHECK(name == "scalar");
    CHECK((vec_dot_fn(Type::Q8_0) == scalar::vec_dot_fn(Type::Q8_0)));
#endif
    MESSAGE("kernels: " << name);
}

// ---------------------------------------------------------------------------
// Types without a weight quantizer here: Q4_1, Q5_0, Q5_1, IQ4_NL and the
// K-quants. Weights are random bytes with sane fp16 scales.
// ---------------------------------------------------------------------------
namespace {

const Type kNewTypes[] = {Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::IQ4_NL, Type::Q2_K,
                          Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K};

void put_f16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}

// Byte offsets of the fp16 scale (and min) inside a block, -1 when absent.
void scale_offsets(Type t, int& d, int& m) {
    m = -1;
    switch (t) {
        case Type::Q8_0: d = offsetof(BlockQ8_0, d); break;
        case Type::Q4_0: d = offsetof(BlockQ4_0, d); break;
        case Type::Q4_1: d = offsetof(BlockQ4_1, d), m = offsetof(BlockQ4_1, m); break;
        case Type::Q5_0: d = offsetof(BlockQ5_0, d); break;
        case Type::Q5_1: d = offsetof(BlockQ5_1, d), m = offsetof(BlockQ5_1, m); break;
        case Type::IQ4_NL: d = offsetof(BlockIQ4_NL, d); break;
        case Type::Q2_K: d = offsetof(BlockQ2_K, d), m = offsetof(BlockQ2_K, dmin); break;
        case Type::Q3_K: d = offsetof(BlockQ3_K, d); break;
        case Type::Q4_K: d = offsetof(BlockQ4_K, d), m = offsetof(BlockQ4_K, dmin); break;
        case Type::Q5_K: d = offsetof(BlockQ5_K, d), m = offsetof(BlockQ5_K, dmin); break;
        case Type::Q6_K: d = offsetof(BlockQ6_K, d); break;
        default: d = -1; break;
    }
}

// A row of random blocks: random bytes, then fp16 scales of either sign with
// magnitudes spread over about two decades.
std::vector<uint8_t> random_blocks(std::mt19937& rng, Type t, int64_t n) {
    std::vector<uint8_t> v(row_bytes(t, n));
    for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xFF);
    int od, om;
    scale_offsets(t, od, om);
    const size_t bb = type_info(t).block_bytes;
    std::uniform_real_distribution<float> mag(0.002f, 0.2f);
    for (size_t off = 0; off < v.size(); off += bb) {
        put_f16(v.data() + off + od, (rng() & 1 ? -1.0f : 1.0f) * mag(rng));
        if (om >= 0) put_f16(v.data() + off + om, (rng() & 1 ? -1.0f : 1.0f) * mag(rng));
    }
    return v;
}

std::vector<int64_t> lengths_new(Type t) {
    if (type_info(t).block_size == 32) return {32, 64, 96, 128, 160, 256, 288, 512, 1024, 4096, 4128};
    return {256, 512, 768, 1024, 2048, 4096, 4352};
}

// Value of element e of one block, written from the format description
// element by element (independent of the loop structure of dequantize_row).
double element_value(Type t, const uint8_t* blk, int e) {
    switch (t) {
        case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::IQ4_NL: {
            const int qs_off = t == Type::Q4_1 ? 4 : t == Type::Q5_0 ? 6 : t == Type::Q5_1 ? 8 : 2;
            const uint8_t byte = blk[qs_off + e % 16];
            int q = e < 16 ? (byte & 15) : (byte >> 4);
            if (t == Type::Q5_0 || t == Type::Q5_1) {
                const int qh_off = t == Type::Q5_0 ? 2 : 4;
                q += ((blk[qh_off + e / 8] >> (e % 8)) & 1) * 16;
            }
            const double d = get_f16(blk);
            if (t == Type::Q4_1 || t == Type::Q5_1) return d * q + get_f16(blk + 2);
            if (t == Type::Q5_0) return d * (q - 16);
            return d * kIQ4NLValues[q];
        }
        case Type::Q2_K: {
            const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
            const int q = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int sc = b->scales[e / 16];
            return double(fp16_to_fp32(b->d)) * (sc & 15) * q - double(fp16_to_fp32(b->dmin)) * (sc >> 4);
        }
        case Type::Q3_K: {
            const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
            const int q2 = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int hbit = (b->hmask[e % 32] >> (e / 32)) & 1;
            const int sub = e / 16;
            const int lo = sub < 8 ? (b->scales[sub] & 15) : (b->scales[sub - 8] >> 4);
            const int hi = (b->scales[8 + sub % 4] >> (2 * (sub / 4))) & 3;
            return double(fp16_to_fp32(b->d)) * ((lo | (hi << 4)) - 32) * (q2 - (hbit ? 0 : 4));
        }
        case Type::Q4_K: case Type::Q5_K: {
            const uint8_t* scales = t == Type::Q4_K ? reinterpret_cast<const BlockQ4_K*>(blk)->scales
                                                    : reinterpret_cast<const BlockQ5_K*>(blk)->scales;
            const uint8_t* qs = t == Type::Q4_K ? reinterpret_cast<const BlockQ4_K*>(blk)->qs
                                                : reinterpret_cast<const BlockQ5_K*>(blk)->qs;
            const int sub = e / 32;
            int q = (qs[32 * (e / 64) + e % 32] >> (4 * (sub % 2))) & 15;
            if (t == Type::Q5_K) q |= ((reinterpret_cast<const BlockQ5_K*>(blk)->qh[e % 32] >> sub) & 1) << 4;
            int sc, m;
            if (sub < 4) {
                sc = scales[sub] & 63;
                m = scales[sub + 4] & 63;
            } else {
                sc = (scales[sub + 4] & 15) | ((scales[sub - 4] >> 6) << 4);
                m = (scales[sub + 4] >> 4) | ((scales[sub] >> 6) << 4);
            }
            return double(get_f16(blk)) * sc * q - double(get_f16(blk + 2)) * m;
        }
        case Type::Q6_K: {
            const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
            const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
            const int lo = (b->ql[64 * h + 32 * (g & 1) + l] >> (4 * (g / 2))) & 15;
            const int hi = (b->qh[32 * h + l] >> (2 * g)) & 3;
            return double(fp16_to_fp32(b->d)) * b->scales[e / 16] * ((lo | (hi << 4)) - 32);
        }
        default: return 0;
    }
}

// Rows of activations in vec_dot_type(t), from Gaussian floats; some blocks zero.
std::vector<uint8_t> random_act(std::mt19937& rng, Type t, int64_t n, float scale = 1.0f) {
    std::vector<float> x = random_floats(rng, n, scale);
    if (n >= 512)
        for (int j = 256; j < 512; ++j) x[j] = 0;
    return quantized(vec_dot_type(t), x);
}

}  // namespace

TEST_CASE("new types: sizes, support and activation formats") {
    CHECK(sizeof(BlockQ4_1) == type_info(Type::Q4_1).block_bytes);
    CHECK(sizeof(BlockQ5_0) == type_info(Type::Q5_0).block_bytes);
    CHECK(sizeof(BlockQ5_1) == type_info(Type::Q5_1).block_bytes);
    CHECK(sizeof(BlockQ8_1) == type_info(Type::Q8_1).block_bytes);
    CHECK(sizeof(BlockIQ4_NL) == type_info(Type::IQ4_NL).block_bytes);
    CHECK(sizeof(BlockQ2_K) == type_info(Type::Q2_K).block_bytes);
    CHECK(sizeof(BlockQ3_K) == type_info(Type::Q3_K).block_bytes);
    CHECK(sizeof(BlockQ4_K) == type_info(Type::Q4_K).block_bytes);
    CHECK(sizeof(BlockQ5_K) == type_info(Type::Q5_K).block_bytes);
    CHECK(sizeof(BlockQ6_K) == type_info(Type::Q6_K).block_bytes);
    CHECK(sizeof(BlockQ8_K) == type_info(Type::Q8_K).block_bytes);
    for (Type t : kNewTypes) {
        CHECK(type_supported(t));
        for (const KernelSet& ks : kernel_sets()) CHECK_MESSAGE((ks.vec_dot_fn(t) != nullptr), std::string(ks.name) << " " << std::string(type_name(t)));
    }
    CHECK(vec_dot_type(Type::Q5_0) == Type::Q8_0);
    CHECK(vec_dot_type(Type::IQ4_NL) == Type::Q8_0);
    CHECK(vec_dot_type(Type::Q4_1) == Type::Q8_1);
    CHECK(vec_dot_type(Type::Q5_1) == Type::Q8_1);
    for (Type t : {Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K}) CHECK(vec_dot_type(t) == Type::Q8_K);
}

TEST_CASE("new types: dequantize hand-made blocks") {
    float y[256];
    SUBCASE("Q4_1") {
        BlockQ4_1 b{};
        b.d = fp32_to_fp16(0.5f);
        b.m = fp32_to_fp16(-1.0f);
        b.qs[0] = 0x3A;  // element 0 = 10, element 16 = 3
        dequantize_row(Type::Q4_1, &b, y, 32);
        CHECK(y[0] == 4.0f);
        CHECK(y[16] == 0.5f);
        CHECK(y[1] == -1.0f);
        CHECK(y[31] == -1.0f);
    }
    SUBCASE("Q5_0") {
        BlockQ5_0 b{};
        b.d = fp32_to_fp16(1.0f);
        b.qs[0] = 0xF1;
        const uint32_t qh = (1u << 0) | (1u << 16) | (1u << 17);
        std::memcpy(b.qh, &qh, 4);
        dequantize_row(Type::Q5_0, &b, y, 32);
        CHECK(y[0] == 1.0f);    // 1 | 16, minus 16
        CHECK(y[16] == 15.0f);  // 15 | 16, minus 16
        CHECK(y[17] == 0.0f);   // 0 | 16
        CHECK(y[1] == -16.0f);
    }
    SUBCASE("Q5_1") {
        BlockQ5_1 b{};
        b.d = fp32_to_fp16(2.0f);
        b.m = fp32_to_fp16(0.25f);
        b.qs[3] = 0x2F;
        const uint32_t qh = (1u << 3) | (1u << 30);
        std::memcpy(b.qh, &qh, 4);
        dequantize_row(Type::Q5_1, &b, y, 32);
        CHECK(y[3] == 62.25f);  // 31 * 2 + 0.25
        CHECK(y[19] == 4.25f);  // 2 * 2 + 0.25
        CHECK(y[30] == 32.25f);
        CHECK(y[0] == 0.25f);
    }
    SUBCASE("IQ4_NL") {
        BlockIQ4_NL b{};
        b.d = fp32_to_fp16(0.5f);
        b.qs[0] = 0x8F;
        dequantize_row(Type::IQ4_NL, &b, y, 32);
        CHECK(y[0] == 56.5f);   // 113 / 2
        CHECK(y[16] == 0.5f);   // level 8 is 1
        CHECK(y[1] == -63.5f);  // level 0 is -127
    }
    SUBCASE("Q2_K") {
        BlockQ2_K b{};
        b.d = fp32_to_fp16(1.0f);
        b.dmin = fp32_to_fp16(0.5f);
        for (int k = 0; k < 16; ++k) b.scales[k] = static_cast<uint8_t>(((k + 1) & 15) | (2 << 4));
        b.qs[0] = 0xE4;  // 2-bit fields 0, 1, 2, 3 for elements 0, 32, 64, 96
        b.qs[32] = 0x03;  // element 128
        dequantize_row(Type::Q2_K, &b, y, 256);
        CHECK(y[0] == -1.0f);   // 0 * 1 - 0.5 * 2
        CHECK(y[32] == 2.0f);   // scale 3: 3 * 1 - 1
        CHECK(y[64] == 9.0f);   // scale 5: 5 * 2 - 1
        CHECK(y[96] == 20.0f);  // scale 7: 7 * 3 - 1
        CHECK(y[128] == 26.0f); // scale 9: 9 * 3 - 1
        CHECK(y[255] == -1.0f);
    }
    SUBCASE("Q3_K") {
        BlockQ3_K b{};
        b.d = fp32_to_fp16(0.5f);
        // Every scale 33 (= 1 after the offset) except scale 0 = 40 and scale 15 = 0.
        for (int k = 0; k < 8; ++k) b.scales[k] = 0x11;
        for (int k = 8; k < 12; ++k) b.scales[k] = 0xAA;  // top bits 2 for every scale: 2 << 4 | 1 = 33
        b.scales[0] = 0x18;                                // scale 0: low 8 -> 40; scale 8: low 1 -> 33
        b.scales[7] = 0x01;                                // scale 15: low 0, top bits of byte 11 >> 6
        b.scales[11] = 0x2A;                               // bits 6-7 = 0: scale 15 = 0 -> -32
        b.qs[0] = 0x03;                                    // element 0: low bits 3
        b.hmask[0] = 0x01;                                 // element 0: high bit set -> value 3
        b.qs[63] = 0xC0;                                   // element 255: low bits 3, high bit clear -> -1
        dequantize_row(Type::Q3_K, &b, y, 256);
        CHECK(y[0] == 0.5f * 8 * 3);
        CHECK(y[1] == 0.5f * 8 * -4);
        CHECK(y[16] == 0.5f * 1 * -4);
        CHECK(y[255] == 0.5f * -32 * -1);
        CHECK(y[240] == 0.5f * -32 * -4);
    }
    SUBCASE("Q4_K") {
        BlockQ4_K b{};
        b.d = fp32_to_fp16(1.0f);
        b.dmin = fp32_to_fp16(0.25f);
        b.scales[0] = 2 | (1 << 6);   // scale 0 = 2; top bits of scale 4 = 1
        b.scales[4] = 4 | (2 << 6);   // min 0 = 4; top bits of min 4 = 2
        b.scales[8] = 0x53;           // scale 4 low = 3, min 4 low = 5
        b.qs[0] = 0x71;               // element 0 = 1, element 32 = 7
        b.qs[64] = 0x09;              // element 128 = 9 (sub-block 4)
        dequantize_row(Type::Q4_K, &b, y, 256);
        CHECK(y[0] == 2.0f * 1 - 0.25f * 4);
        CHECK(y[32] == 0.0f);                     // sub-block 1: scale 0, min 0
        CHECK(y[128] == 19.0f * 9 - 0.25f * 37);  // scale 3 | 1 << 4, min 5 | 2 << 4
        CHECK(y[1] == -1.0f);
    }
    SUBCASE("Q5_K") {
        BlockQ5_K b{};
        b.d = fp32_to_fp16(1.0f);
        b.dmin = fp32_to_fp16(1.0f);
        for (int k = 0; k < 4; ++k) b.scales[k] = 1;  // scales 0..3 = 1, mins 0
        b.qs[0] = 0x21;                               // element 0 = 1, element 32 = 2
        b.qh[0] = 0x06;                               // bit 1: element 32 +16; bit 2: element 64 +16
        dequantize_row(Type::Q5_K, &b, y, 256);
        CHECK(y[0] == 1.0f);
        CHECK(y[32] == 18.0f);
        CHECK(y[64] == 16.0f);
        CHECK(y[96] == 0.0f);
    }
    SUBCASE("Q6_K") {
        BlockQ6_K b{};
        b.d = fp32_to_fp16(0.5f);
        for (int k = 0; k < 16; ++k) b.scales[k] = static_cast<int8_t>(k - 8);
        b.ql[0] = 0xF1;   // element 0 low 1, element 64 low 15
        b.ql[32] = 0x2E;  // element 32 low 14, element 96 low 2
        b.qh[0] = 0xE4;   // high bits: element 0: 0, 32: 1, 64: 2, 96: 3
        dequantize_row(Type::Q6_K, &b, y, 256);
        CHECK(y[0] == 0.5f * -8 * (1 - 32));
        CHECK(y[32] == 0.5f * -6 * (14 + 16 - 32));
        CHECK(y[64] == 0.5f * -4 * (15 + 32 - 32));
        CHECK(y[96] == 0.5f * -2 * (2 + 48 - 32));
        CHECK(y[128] == 0.5f * 0 * -32);
        CHECK(y[255] == 0.5f * 7 * -32);
    }
}

TEST_CASE("new types: dequantize_row matches the element-wise format description on random blocks") {
    std::mt19937 rng(11);
    for (Type t : kNewTypes) {
        const int64_t n = 4 * type_info(t).block_size;
        auto w = random_blocks(rng, t, n);
        std::vector<float> y(static_cast<size_t>(n));
        dequantize_row(t, w.data(), y.data(), n);
        int bad = 0;
        for (int64_t i = 0; i < n; ++i) {
            const int64_t bs = type_info(t).block_size;
            const double ref = element_value(t, w.data() + (i / bs) * type_info(t).block_bytes, static_cast<int>(i % bs));
            if (!(std::fabs(y[i] - ref) <= 1e-6 * (std::fabs(ref) + 1.0))) {
                if (bad++ < 5) FAIL_CHECK(type_name(t) << " element " << i << ": " << y[i] << " vs " << ref);
            }
        }
        CHECK_MESSAGE(bad == 0, type_name(t));
    }
}

TEST_CASE("Q8_1 activation quantization matches llama.cpp's x86 formula exactly") {
    std::mt19937 rng(21);
    for (int64_t n : {32, 64, 1024}) {
        std::vector<float> x = random_floats(rng, n, 0.9f);
        if (n == 64)
            for (int j = 32; j < 64; ++j) x[j] = 0;
        std::vector<BlockQ8_1> q(n / 32);
        quantize_row(Type::Q8_1, x.data(), q.data(), n);
        for (int64_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            const float d = amax / 127.0f;
            const float id = amax != 0 ? 127.0f / amax : 0.0f;
            CHECK(q[b].d == fp32_to_fp16(d));
            int sum = 0;
            for (int j = 0; j < 32; ++j) {
                const int expect = static_cast<int>(std::nearbyint(x[b * 32 + j] * id));
                sum += expect;
                if (q[b].qs[j] != expect) FAIL_CHECK("block " << b << " element " << j);
            }
            CHECK(q[b].s == fp32_to_fp16(d * static_cast<float>(sum)));
        }
    }
    // amax = 127: scale 1, ties to even, s = sum.
    float t[32] = {};
    t[0] = -127.0f;
    t[1] = 2.5f;
    t[2] = 3.5f;
    BlockQ8_1 b;
    quantize_row(Type::Q8_1, t, &b, 32);
    CHECK(fp16_to_fp32(b.d) == 1.0f);
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[1] == 2);
    CHECK(b.qs[2] == 4);
    CHECK(fp16_to_fp32(b.s) == -121.0f);
}

TEST_CASE("Q8_K activation quantization matches llama.cpp's formula exactly") {
    std::mt19937 rng(22);
    for (int64_t n : {256, 512, 2048}) {
        std::vector<float> x = random_floats(rng, n, 1.3f);
        if (n == 512)
            for (int j = 256; j < 512; ++j) x[j] = 0;
        std::vector<BlockQ8_K> q(n / 256);
        quantize_row(Type::Q8_K, x.data(), q.data(), n);
        for (int64_t b = 0; b < n / 256; ++b) {
            const float* xb = x.data() + b * 256;
            float amax = 0, max = 0;
            for (int j = 0; j < 256; ++j)
                if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), max = xb[j];
            if (amax == 0) {
                CHECK(q[b].d == 0.0f);
                for (int j = 0; j < 256; ++j) CHECK(q[b].qs[j] == 0);
                for (int k = 0; k < 16; ++k) CHECK(q[b].bsums[k] == 0);
                continue;
            }
            const float iscale = -127.0f / max;
            CHECK(q[b].d == 1.0f / iscale);
            int bad = 0;
            for (int j = 0; j < 256; ++j) {
                const int expect = std::min(127, static_cast<int>(std::nearbyint(iscale * xb[j])));
                if (q[b].qs[j] != expect) ++bad;
            }
            CHECK(bad == 0);
            for (int k = 0; k < 16; ++k) {
                int s = 0;
                for (int j = 0; j < 16; ++j) s += q[b].qs[16 * k + j];
                CHECK(q[b].bsums[k] == s);
            }
        }
    }
    // The sign of the largest-magnitude value decides the sign of d; ties to even.
    float t[256] = {};
    t[3] = 127.0f;
    t[4] = 2.5f;
    t[5] = -3.5f;
    t[17] = 1.0f;
    BlockQ8_K b;
    quantize_row(Type::Q8_K, t, &b, 256);
    CHECK(b.d == -1.0f);
    CHECK(b.qs[3] == -127);
    CHECK(b.qs[4] == -2);
    CHECK(b.qs[5] == 4);
    CHECK(b.qs[17] == -1);
    CHECK(b.bsums[0] == -125);
    CHECK(b.bsums[1] == -1);
    t[3] = -127.0f;
    quantize_row(Type::Q8_K, t, &b, 256);
    CHECK(b.d == 1.0f);
    CHECK(b.qs[3] == -127);
    CHECK(b.qs[5] == -4);
}

TEST_CASE("new types: scalar vec_dot equals the exact dot of the dequantized rows") {
    std::mt19937 rng(31);
    for (Type t : kNewTypes) {
        for (int64_t n : lengths_new(t)) {
            auto w = random_blocks(rng, t, n);
            auto a = random_act(rng, t, n);
            const double ref = exact_dot(t, w.data(), a.data(), n);
            const double tol = dot_tol(t, w, a, n, 1e-5);
            const float got = scalar::vec_dot(t, n, w.data(), a.data());
            CHECK_MESSAGE(std::fabs(got - ref) <= tol, type_name(t) << " n=" << n << " got " << got << " ref " << ref);
        }
    }
}

TEST_CASE("new types: SIMD vec_dot matches scalar") {
    std::mt19937 rng(32);
    for (const KernelSet& ks : kernel_sets()) {
        for (Type t : kNewTypes) {
            VecDotFn f = ks.vec_dot_fn(t);
            REQUIRE((f != nullptr));
            for (int64_t n : lengths_new(t)) {
                for (int rep = 0; rep < 3; ++rep) {
                    auto w = random_blocks(rng, t, n);
                    auto a = random_act(rng, t, n, rep == 2 ? 50.0f : 1.0f);
                    const float ref = scalar::vec_dot(t, n, w.data(), a.data());
                    const float got = f(n, w.data(), a.data());
                    const double tol = dot_tol(t, w, a, n, 2e-5);
                    if (!(std::fabs(double(got) - ref) <= tol))
                        FAIL_CHECK(std::string(ks.name) << " " << std::string(type_name(t)) << " n=" << n << " rep " << rep << ": " << got
                                           << " vs scalar " << ref << " (tol " << tol << ")");
                }
            }
            // Extreme bytes: all 0x00 and all 0xFF weights against +-127 activations.
            for (uint8_t fill : {uint8_t(0x00), uint8_t(0xFF)}) {
                const int64_t n = 2 * type_info(t).block_size;
                auto w = random_blocks(rng, t, n);
                int od, om;
                scale_offsets(t, od, om);
                const size_t bb = type_info(t).block_bytes;
                for (size_t off = 0; off < w.size(); off += bb)
                    for (size_t i = 0; i < bb; ++i)
                        if (int(i) != od && int(i) != od + 1 && int(i) != om && int(i) != om + 1) w[off + i] = fill;
                std::vector<float> x(static_cast<size_t>(n));
                for (int64_t i = 0; i < n; ++i) x[i] = (i % 3 == 0) ? -1.0f : 1.0f;
                auto a = quantized(vec_dot_type(t), x);
                const float ref = scalar::vec_dot(t, n, w.data(), a.data());
                const float got = f(n, w.data(), a.data());
                CHECK_MESSAGE(std::fabs(double(got) - ref) <= dot_tol(t, w, a, n, 2e-5),
                              std::string(ks.name) << " " << std::string(type_name(t)) << " fill " << int(fill) << ": " << got << " vs " << ref);
            }
        }
    }
}

TEST_CASE("new types: matmul_rows matches vec_dot for odd m and row ranges") {
    std::mt19937 rng(33);
    const int64_t R = 13;
    for (Type t : kNewTypes) {
        const Type at = vec_dot_type(t);
        const bool b32 = type_info(t).block_size == 32;
        // A short row, one longer than the one-row paths keep on the stack (65
        // pairs of blocks, 65 super-blocks), and for blocks of 32 one that just
        // fits (63 pairs and a half).
        for (const int64_t n : {b32 ? int64_t(160) : int64_t(512), b32 ? int64_t(32 * 130) : int64_t(256 * 65), b32 ? int64_t(32 * 127) : int64_t(768)}) {
            const size_t wrb = row_bytes(t, n), arb = row_bytes(at, n);
            std::vector<uint8_t> W = random_blocks(rng, t, n * R);
            for (const int64_t m : {int64_t(1), int64_t(3)}) {
                std::vector<uint8_t> A;
                for (int64_t j = 0; j < m; ++j) {
                    auto row = random_act(rng, t, n);
                    A.insert(A.end(), row.begin(), row.end());
                }
                for (const KernelSet& ks : kernel_sets()) {
                    const int64_t ldy = R + 1;
                    std::vector<float> Y(ldy * m, -999.0f);
                    ks.matmul_rows(t, W.data(), wrb, n, 1, R, A.data(), arb, m, Y.data(), ldy, 0);
                    const int bad = count_bad_products(t, n, W, A, m, ldy, 1, R, Y);
                    CHECK_MESSAGE(bad == 0, std::string(ks.name) << " " << std::string(type_name(t)) << " n=" << n << " m=" << m);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The packed GEMM of prompt processing against the scalar row dot products.
// ---------------------------------------------------------------------------
TEST_CASE("gemm_rows matches scalar vec_dot for every type it handles, odd m and row ranges") {
    std::mt19937 rng(71);
    std::vector<Type> types(std::begin(kTypes), std::end(kTypes));
    types.insert(types.end(), std::begin(kNewTypes), std::end(kNewTypes));
    int covered = 0;
    for (Type t : types) {
        for (int64_t n : {256, 512, 1536}) {
            const GemmKind kind = gemm_kind(t, n);
            if (kind == GemmKind::none) continue;
            ++covered;
            const Type at = vec_dot_type(t);
            const int64_t R = 29;
            const size_t wrb = row_bytes(t, n), arb = row_bytes(at, n);
            std::vector<uint8_t> W;
            if (type_info(t).block_size == 1) {
                for (int64_t r = 0; r < R; ++r) {
                    auto row = quantized(t, random_floats(rng, n));
                    W.insert(W.end(), row.begin(), row.end());
                }
            } else {
                W = random_blocks(rng, t, n * R);
            }
            for (int64_t m : {1, 7, 16, 17, 40}) {
                std::vector<uint8_t> A;
                for (int64_t j = 0; j < m; ++j) {
                    auto row = random_act(rng, t, n);
                    A.insert(A.end(), row.begin(), row.end());
                }
                Buffer<uint8_t> P, tile;
                REQUIRE(P.allocate(gemm_panel_bytes(t, n, m)));
                REQUIRE(tile.allocate(gemm_tile_bytes(t, n)));
                const int64_t panels = (m + kGemmCols - 1) / kGemmCols;
                gemm_pack_panels(t, A.data(), arb, n, m, 0, panels, P.data());
                const int64_t ldy = R + 2;
                const int64_t ranges[][2] = {{0, R}, {3, R - 2}, {8, 16}, {5, 6}};
                for (const auto& rg : ranges) {
                    std::vector<float> Y(static_cast<size_t>(ldy * m), -999.0f);
                    gemm_rows(t, W.data(), wrb, n, rg[0], rg[1], P.data(), m, Y.data(), ldy, tile.data());
                    const int bad = count_bad_products(t, n, W, A, m, ldy, rg[0], rg[1], Y);
                    CHECK_MESSAGE(bad == 0, std::string(type_name(t)) << " n=" << n << " m=" << m << " rows [" << rg[0] << "," << rg[1] << ")");
                }
            }
        }
    }
#if defined(MINIGPT_AVX512) && defined(__AVX512VNNI__) && defined(__AVX512BF16__)
    CHECK(covered == 3 * 14);  // every supported type (the K-quants: n % 256 == 0)
#else
    MESSAGE("gemm kinds covered: " << covered);
#endif
}

TEST_CASE("scale_max_f32 and exp_sum_f32 (the online softmax's passes) agree with plain loops, tails included") {
    std::mt19937 rng(11);
    for (int n : {0, 1, 5, 15, 16, 17, 31, 32, 33, 40, 255, 1000}) {
        CAPTURE(n);
        const std::vector<float> x = random_floats(rng, static_cast<size_t>(n) + 1, 8.0f);  // (one past the end: untouched)
        std::vector<float> s = x;
        const float mx = scale_max_f32(n, 0.125f, s.data());
        float want_mx = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < n; ++i) {
            CHECK(s[static_cast<size_t>(i)] == x[static_cast<size_t>(i)] * 0.125f);
            want_mx = std::max(want_mx, x[static_cast<size_t>(i)] * 0.125f);
        }
        CHECK(mx == want_mx);
        CHECK(s[static_cast<size_t>(n)] == x[static_cast<size_t>(n)]);

        std::vector<float> e = s;
        const double sum = exp_sum_f32(n, mx, e.data());
        double want_sum = 0;
        int bad = 0;
        for (int i = 0; i < n; ++i) {
            const double ref = std::exp(static_cast<double>(s[static_cast<size_t>(i)]) - mx);
            want_sum += ref;
            bad += std::fabs(e[static_cast<size_t>(i)] - ref) > 4e-7 * ref;
        }
        CHECK(bad == 0);
        CHECK(std::fabs(sum - want_sum) <= 1e-6 * std::max(1.0, want_sum));
        CHECK(e[static_cast<size_t>(n)] == s[static_cast<size_t>(n)]);
    }
}

TEST_CASE("exp_f32 and silu_mul_f32 agree with std::exp") {
    std::vector<float> x;
    for (int i = -870000; i <= 887000; i += 7) x.push_back(static_cast<float>(i) * 1e-4f);
    for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.34657f, -0.34657f, 88.72f, -87.33f}) x.push_back(v);
    std::vector<float> y(x.size());
    exp_f32(static_cast<int64_t>(x.size()), x.data(), y.data());
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double ref = std::exp(static_cast<double>(x[i]));
        worst = std::max(worst, std::fabs(y[i] - ref) / ref);
    }
    MESSAGE("exp_f32: worst relative error " << worst << " over " << x.size() << " values");
    CHECK(worst < 4e-7);  // about 3 ulp
    // Ends: underflow to 0, overflow to inf, NaN kept; odd lengths use the tail path.
    float ends[5] = {-200.0f, -1e30f, 100.0f, std::numeric_limits<float>::infinity(), std::nanf("")};
    exp_f32(5, ends, ends);
    CHECK(ends[0] == 0.0f);
    CHECK(ends[1] == 0.0f);
    CHECK(std::isinf(ends[2]));
    CHECK(std::isinf(ends[3]));
    CHECK(std::isnan(ends[4]));

    std::mt19937 rng(5);
    std::vector<float> g = random_floats(rng, 1001, 6.0f), u = random_floats(rng, 1001);
    std::vector<float> out = g;
    silu_mul_f32(1001, out.data(), u.data());
    int bad = 0;
    for (size_t i = 0; i < g.size(); ++i) {
        const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
        if (!(std::fabs(out[i] - ref) <= 1e-6 * std::fabs(ref) + 1e-30)) ++bad;
    }
    CHECK(bad == 0);
}

TEST_CASE("weighted_rows_f32 adds the weighted rows to o") {
    std::mt19937 rng(10);
    for (int64_t d : {16, 48, 64, 80, 128, 7}) {
        for (int64_t n : {0, 1, 2, 3, 8, 257}) {
            const size_t stride = static_cast<size_t>(d) + 32;
            std::vector<float> w = random_floats(rng, std::max<int64_t>(1, n)), v = random_floats(rng, n * static_cast<int64_t>(stride) + 1),
                               o = random_floats(rng, d), o0 = o;
            weighted_rows_f32(n, w.data(), v.data(), stride, d, o.data());
            int bad = 0;
            for (int64_t i = 0; i < d; ++i) {
                double ref = o0[i], mag = std::fabs(o0[i]);
                for (int64_t j = 0; j < n; ++j) {
                    ref += double(w[j]) * v[j * stride + i];
                    mag += std::fabs(double(w[j]) * v[j * stride + i]);
                }
                if (!(std::fabs(o[i] - ref) <= 1e-5 * mag)) ++bad;
            }
            CHECK_MESSAGE(bad == 0, "d=" << d << " n=" << n);
        }
    }
}

TEST_CASE("dot4_keys_f32 equals four dot_f32") {
    std::mt19937 rng(9);
    for (int64_t d : {16, 64, 128, 80, 7}) {
        const size_t stride = static_cast<size_t>(d) + 5;
        std::vector<float> q = random_floats(rng, d), k = random_floats(rng, static_cast<int64_t>(4 * stride));
        float out[4];
        dot4_keys_f32(q.data(), k.data(), stride, d, out);
        for (int j = 0; j < 4; ++j) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < d; ++i) {
                ref += double(q[i]) * k[j * stride + i];
                mag += std::fabs(double(q[i]) * k[j * stride + i]);
            }
            CHECK_MESSAGE(std::fabs(out[j] - ref) <= 1e-6 * mag, "d=" << d << " key " << j);
        }
    }
}
