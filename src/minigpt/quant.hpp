// quant: half-precision conversions, block formats (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL, the K-quants Q2_K..Q6_K, and the activation formats Q8_1 and
// Q8_K), and row quantization / dequantization. Everything here is portable scalar code; the
// one exception is the Q8_0 activation quantizer, which has an AVX2 / AVX-512
// path that produces bit-identical blocks.
#pragma once
#include "gguf.hpp"

#if defined(MINIGPT_AVX2) || defined(MINIGPT_AVX512)
#  include <immintrin.h>
#endif

MINIGPT_NS_BEGIN
namespace detail {

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---------------------------------------------------------------------------
// IEEE half (binary16) and bfloat16.
// ---------------------------------------------------------------------------
inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24 is exact in float.
        float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) {  // inf, or NaN: payload kept and made quiet, as the F16C instructions do
        return bits_f32(sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest, ties to even. Overflow gives inf; NaN stays a (quiet) NaN.
inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) {  // inf or nan
        if (ax == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u);
        return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    }
    if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
    if (ax >= 0x38800000u) {                                              // normal half
        uint32_t r = ax - 0x38000000u + 0xFFFu + ((ax >> 13) & 1u);
        return static_cast<uint16_t>(sign | (r >> 13));
    }
    // Subnormal half (or zero): count units of 2^-24.
    const uint32_t e = ax >> 23;
    if (e < 102) return static_cast<uint16_t>(sign);  // below 2^-25 (a tie at 2^-25 goes to 0)
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t s = 126u - e;  // 14..24
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u);
    const uint32_t half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | q);
}

inline float bf16_to_fp32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

inline uint16_t fp32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
    return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------
// Block formats (ggml layout).
// ---------------------------------------------------------------------------
constexpr int QK8_0 = 32;
constexpr int QK4_0 = 32;

// 32 values: value[j] = qs[j] * d.
struct BlockQ8_0 {
    uint16_t d;  // fp16 scale
    int8_t qs[QK8_0];
};
// 32 values: element j < 16 is the low nibble of qs[j], element j + 16 the high
// nibble; value = (nibble - 8) * d.
struct BlockQ4_0 {
    uint16_t d;  // fp16 scale
    uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(BlockQ8_0) == 34, "BlockQ8_0 must be 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "BlockQ4_0 must be 18 bytes");
static_assert(alignof(BlockQ8_0) == 2 && alignof(BlockQ4_0) == 2, "blocks are 2-byte aligned");

// 32 values: element j < 16 is the low nibble of qs[j], j + 16 the high
// nibble; value = nibble * d + m.
struct BlockQ4_1 {
    uint16_t d;  // fp16 scale
    uint16_t m;  // fp16 minimum
    uint8_t qs[16];
};
// 32 values of 5 bits: the low 4 bits as in Q4_0, bit 4 of element j is bit j
// of the little-endian 32-bit qh; value = (q - 16) * d.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
// As Q5_0 without the offset: value = q * d + m.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};
// Activation format for Q4_1 / Q5_1: value = qs[j] * d; s = fp16(d * sum(qs))
// with d the unrounded float scale.
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[32];
};
// 32 values; the nibbles (placed as in Q4_0) index a fixed non-linear table:
// value = d * kIQ4NLValues[nibble].
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[16];
};

constexpr int QK_K = 256;

// K-quant super-blocks of 256 values.
// Q2_K: 16 sub-blocks of 16; scales[k] has a 4-bit scale (low) and a 4-bit min
// (high). The 2-bit values are in qs: element 128*h + 32*j + l is bits 2j..2j+1
// of qs[32*h + l]; value = d * (sc & 15) * q - dmin * (sc >> 4).
struct BlockQ2_K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;
    uint16_t dmin;
};
// Q3_K: 16 sub-blocks of 16 with 6-bit scales (offset 32) packed in 12 bytes;
// low 2 bits as in Q2_K, the third bit of element 128*h + 32*j + l is bit
// 4*h + j of hmask[l]; value = d * (scale - 32) * (q2 - (bit ? 0 : 4)).
struct BlockQ3_K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes.
// Element 64*j + l (l < 32) is the low nibble of qs[32*j + l], element
// 64*j + 32 + l the high nibble; value = d * sc * q - dmin * m.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
// Q5_K: Q4_K plus a fifth bit: bit 2j of qh[l] for element 64*j + l, bit 2j+1
// for element 64*j + 32 + l.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales. In each half h of 128
// values, element l (< 32) is low nibble of ql[64h + l] | bits 0-1 of
// qh[32h + l] << 4, element l + 32: low nibble of ql[64h + 32 + l] | bits 2-3,
// element l + 64: high nibble of ql[64h + l] | bits 4-5, element l + 96: high
// nibble of ql[64h + 32 + l] | bits 6-7; value = d * scale * (q - 32).
struct BlockQ6_K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
// Activation format for the K-quants: value = qs[j] * d; bsums[k] is the sum
// of qs[16k .. 16k + 15].
struct BlockQ8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(BlockQ4_1) == 20, "BlockQ4_1 must be 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "BlockQ5_0 must be 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "BlockQ5_1 must be 24 bytes");
static_assert(sizeof(BlockQ8_1) == 36, "BlockQ8_1 must be 36 bytes");
static_assert(sizeof(BlockIQ4_NL) == 18, "BlockIQ4_NL must be 18 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "BlockQ2_K must be 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "BlockQ3_K must be 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "BlockQ4_K must be 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "BlockQ5_K must be 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "BlockQ6_K must be 210 bytes");
static_assert(sizeof(BlockQ8_K) == 292, "BlockQ8_K must be 292 bytes");

// The 16 levels of IQ4_NL.
alignas(16) constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113};

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K / Q5_K:
// j < 4: low 6 bits of bytes j and j + 4; j >= 4: nibbles of byte j + 4 with the
// top 2 bits of bytes j - 4 (scale) and j (min) on top.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 16 six-bit scales of Q3_K, minus 32: byte k holds the low 4 bits of scale
// k (k < 8) or of scale k - 8 in its high nibble; bytes 8..11 hold the top 2
// bits, those of scale k at bits 2*(k/4) and 2*(k/4)+1 of byte 8 + k % 4.
inline void scales_q3_k(const uint8_t* s, int8_t out[16]) {
    for (int k = 0; k < 16; ++k) {
        const int low = k < 8 ? (s[k] & 0x0F) : (s[k - 8] >> 4);
        const int high = (s[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
        out[k] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
}

// Types the kernels can compute with.
inline bool type_supported(Type t) {
    switch (t) {
        case Type::F32: case Type::F16: case Type::BF16: case Type::Q8_0: case Type::Q4_0:
        case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::IQ4_NL:
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K: return true;
        default: return false;
    }
}

// The format an activation row is converted to before its dot product with a
// weight row of type `weight` (what llama.cpp does, so results match it).
inline Type vec_dot_type(Type weight) {
    switch (weight) {
        case Type::F16: return Type::F16;
        case Type::BF16: return Type::BF16;
        case Type::Q8_0: case Type::Q4_0: case Type::Q5_0: case Type::IQ4_NL: return Type::Q8_0;
        case Type::Q4_1: case Type::Q5_1: return Type::Q8_1;
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K: return Type::Q8_K;
        default: return Type::F32;
    }
}

// ---------------------------------------------------------------------------
// Quantization.
// ---------------------------------------------------------------------------

// Q8_0 the way llama.cpp's x86 build quantizes activations:
// d = fp16(amax / 127), q = rint(x * (127 / amax)) with ties to even; an
// all-zero block gives d = 0, q = 0.
inline void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) {
            float v = std::nearbyint(xb[j] * id);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);  // also maps NaN to 0 below
            y[b].qs[j] = (v == v) ? static_cast<int8_t>(v) : int8_t(0);
        }
    }
}

#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
// Same result as quantize_row_q8_0_ref, 8 floats at a time.
inline void quantize_row_q8_0_simd(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256 lim = _mm256_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v0), _mm256_andnot_ps(sign_mask, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign_mask, v2), _mm256_andnot_ps(sign_mask, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (!(amax == amax) || amax > 3.0e38f) {  // NaN or inf inside: take the careful path
            quantize_row_q8_0_ref(xb, y + b, QK8_0);
            continue;
        }
        y[b].d = fp32_to_fp16(amax / 127.0f);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        const int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        v0 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v0, id), r), lim);
        v1 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v1, id), r), lim);
        v2 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v2, id), r), lim);
        v3 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v3, id), r), lim);
        v0 = _mm256_max_ps(v0, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v1 = _mm256_max_ps(v1, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v2 = _mm256_max_ps(v2, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v3 = _mm256_max_ps(v3, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        __m256i i0 = _mm256_cvtps_epi32(v0), i1 = _mm256_cvtps_epi32(v1);
        __m256i i2 = _mm256_cvtps_epi32(v2), i3 = _mm256_cvtps_epi32(v3);
        // Pack 32-bit -> 16-bit -> 8-bit; packs interleave 128-bit lanes, so fix the order after.
        __m256i p01 = _mm256_packs_epi32(i0, i1);
        __m256i p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), p);
    }
}
#endif

inline void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
    quantize_row_q8_0_simd(x, y, n);
#else
    quantize_row_q8_0_ref(x, y, n);
#endif
}

// Q4_0 as llama.cpp's reference quantizer: d = (signed value of largest
// magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
inline void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
    const int64_t nb = n / QK4_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        auto q = [id](float v) -> uint8_t {
            float t = v * id + 8.5f;
            if (!(t >= 0.0f)) return 0;  // also NaN
            if (t >= 15.0f) return 15;
            return static_cast<uint8_t>(t);
        };
        for (int j = 0; j < QK4_0 / 2; ++j)
            y[b].qs[j] = static_cast<uint8_t>(q(xb[j]) | (q(xb[j + QK4_0 / 2]) << 4));
    }
}

// Q8_1 as llama.cpp's x86 build quantizes activations: the Q8_0 rounding, and
// s = fp16(d * sum(q)) with d = amax / 127 as a float.
inline void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        BlockQ8_0 t;
        quantize_row_q8_0(xb, &t, QK8_0);
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        int sum = 0;
        for (int j = 0; j < QK8_0; ++j) sum += t.qs[j];
        y[b].d = t.d;
        y[b].s = fp32_to_fp16(d * static_cast<float>(sum));
        std::memcpy(y[b].qs, t.qs, sizeof t.qs);
    }
}

// Q8_K as llama.cpp quantizes activations for the K-quants: the value of
// largest magnitude keeps its sign (the first one on ties), iscale = -127 / max,
// q = min(127, rint(iscale * x)) with ties to even, d = 1 / iscale. An all-zero
// block gives d = 0 and q = 0.
inline void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / QK_K;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (!(amax > 0.0f) || amax > 3.0e38f) {  // all zero (or not finite): a zero block
            y[b].d = 0.0f;
            std::memset(y[b].qs, 0, sizeof y[b].qs);
            std::memset(y[b].bsums, 0, sizeof y[b].bsums);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; ++j) {
            float v = std::nearbyint(iscale * xb[j]);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            y[b].qs[j] = (v == v) ? static_cast<int8_t>(v) : int8_t(0);
        }
        for (int k = 0; k < QK_K / 16; ++k) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += y[b].qs[16 * k + j];
            y[b].bsums[k] = static_cast<int16_t>(sum);
        }
        y[b].d = 1.0f / iscale;
    }
}

// Converts n floats to type t (n a multiple of the block size).
inline void quantize_row(Type t, const float* x, void* y, int64_t n) {
    switch (t) {
        case Type::F32:
            if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Type::F16: {
            uint16_t* o = static_cast<uint16_t*>(y);
            int64_t i = 0;
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
            for (; i + 8 <= n; i += 8) {
                __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), h);
            }
#endif
            for (; i < n; ++i) o[i] = fp32_to_fp16(x[i]);
            break;
        }
        case Type::BF16: {
            uint16_t* o = static_cast<uint16_t*>(y);
            for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_bf16(x[i]);
            break;
        }
        case Type::Q8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(y), n); break;
        case Type::Q4_0: quantize_row_q4_0(x, static_cast<BlockQ4_0*>(y), n); break;
        case Type::Q8_1: quantize_row_q8_1(x, static_cast<BlockQ8_1*>(y), n); break;
        case Type::Q8_K: quantize_row_q8_k(x, static_cast<BlockQ8_K*>(y), n); break;
        default: MINIGPT_ASSERT(false && "quantize_row: unsupported type"); break;
    }
}

// Converts n values of type t to floats.
inline void dequantize_row(Type t, const void* x, float* y, int64_t n) {
    switch (t) {
        case Type::F32:
            if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Type::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            int64_t i = 0;
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
#endif
            for (; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
            break;
        }
        case Type::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
            break;
        }
        case Type::Q8_0: {
            const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
            for (int64_t i = 0; i < n / QK8_0; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = b[i].qs[j] * d;
            }
            break;
        }
        case Type::Q4_0: {
            const BlockQ4_0* b = static_cast<const BlockQ4_0*>(x);
            for (int64_t i = 0; i < n / QK4_0; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * QK4_0;
                for (int j = 0; j < QK4_0 / 2; ++j) {
                    o[j] = static_cast<float>((b[i].qs[j] & 0x0F) - 8) * d;
                    o[j + QK4_0 / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
                }
            }
            break;
        }
        case Type::Q4_1: {
            const BlockQ4_1* b = static_cast<const BlockQ4_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    o[j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
                    o[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
                }
            }
            break;
        }
        case Type::Q5_0: {
            const BlockQ5_0* b = static_cast<const BlockQ5_0*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                const uint32_t qh = load_u32(b[i].qh);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    const int q0 = (b[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                    const int q1 = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                    o[j] = static_cast<float>(q0 - 16) * d;
                    o[j + 16] = static_cast<float>(q1 - 16) * d;
                }
            }
            break;
        }
        case Type::Q5_1: {
            const BlockQ5_1* b = static_cast<const BlockQ5_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
                const uint32_t qh = load_u32(b[i].qh);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    const int q0 = (b[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                    const int q1 = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                    o[j] = static_cast<float>(q0) * d + m;
                    o[j + 16] = static_cast<float>(q1) * d + m;
                }
            }
            break;
        }
        case Type::Q8_1: {
            const BlockQ8_1* b = static_cast<const BlockQ8_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int j = 0; j < 32; ++j) y[i * 32 + j] = b[i].qs[j] * d;
            }
            break;
        }
        case Type::IQ4_NL: {
            const BlockIQ4_NL* b = static_cast<const BlockIQ4_NL*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    o[j] = d * kIQ4NLValues[b[i].qs[j] & 0x0F];
                    o[j + 16] = d * kIQ4NLValues[b[i].qs[j] >> 4];
                }
            }
            break;
        }
        case Type::Q2_K: {
            const BlockQ2_K* b = static_cast<const BlockQ2_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* q = b[i].qs + 32 * h;
                    for (int j = 0; j < 4; ++j) {
                        for (int half = 0; half < 2; ++half) {
                            const uint8_t sc = b[i].scales[8 * h + 2 * j + half];
                            const float dl = d * static_cast<float>(sc & 0x0F);
                            const float ml = dmin * static_cast<float>(sc >> 4);
                            for (int l = 0; l < 16; ++l)
                                *o++ = dl * static_cast<float>((q[16 * half + l] >> (2 * j)) & 3) - ml;
                        }
                    }
                }
            }
            break;
        }
        case Type::Q3_K: {
            const BlockQ3_K* b = static_cast<const BlockQ3_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                int8_t sc[16];
                scales_q3_k(b[i].scales, sc);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* q = b[i].qs + 32 * h;
                    for (int j = 0; j < 4; ++j) {
                        const int hshift = 4 * h + j;
                        for (int half = 0; half < 2; ++half) {
                            const float dl = d * static_cast<float>(sc[8 * h + 2 * j + half]);
                            for (int l = 16 * half; l < 16 * half + 16; ++l) {
                                const int v = ((q[l] >> (2 * j)) & 3) - 4 + 4 * ((b[i].hmask[l] >> hshift) & 1);
                                *o++ = dl * static_cast<float>(v);
                            }
                        }
                    }
                }
            }
            break;
        }
        case Type::Q4_K: {
            const BlockQ4_K* b = static_cast<const BlockQ4_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int j = 0; j < 4; ++j) {
                    int sc0, m0, sc1, m1;
                    scale_min_k4(2 * j, b[i].scales, sc0, m0);
                    scale_min_k4(2 * j + 1, b[i].scales, sc1, m1);
                    const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
                    const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
                    const uint8_t* q = b[i].qs + 32 * j;
                    for (int l = 0; l < 32; ++l) *o++ = d0 * static_cast<float>(q[l] & 0x0F) - mm0;
                    for (int l = 0; l < 32; ++l) *o++ = d1 * static_cast<float>(q[l] >> 4) - mm1;
                }
            }
            break;
        }
        case Type::Q5_K: {
            const BlockQ5_K* b = static_cast<const BlockQ5_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int j = 0; j < 4; ++j) {
                    int sc0, m0, sc1, m1;
                    scale_min_k4(2 * j, b[i].scales, sc0, m0);
                    scale_min_k4(2 * j + 1, b[i].scales, sc1, m1);
                    const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
                    const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
                    const uint8_t* q = b[i].qs + 32 * j;
                    const uint8_t u0 = static_cast<uint8_t>(1u << (2 * j)), u1 = static_cast<uint8_t>(2u << (2 * j));
                    for (int l = 0; l < 32; ++l)
                        *o++ = d0 * static_cast<float>((q[l] & 0x0F) + ((b[i].qh[l] & u0) ? 16 : 0)) - mm0;
                    for (int l = 0; l < 32; ++l)
                        *o++ = d1 * static_cast<float>((q[l] >> 4) + ((b[i].qh[l] & u1) ? 16 : 0)) - mm1;
                }
            }
            break;
        }
        case Type::Q6_K: {
            const BlockQ6_K* b = static_cast<const BlockQ6_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* ql = b[i].ql + 64 * h;
                    const uint8_t* qh = b[i].qh + 32 * h;
                    const int8_t* sc = b[i].scales + 8 * h;
                    for (int l = 0; l < 32; ++l) {
                        const int is = l / 16;
                        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        o[128 * h + l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
                        o[128 * h + l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                        o[128 * h + l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                        o[128 * h + l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
                    }
                }
            }
            break;
        }
        case Type::Q8_K: {
            const BlockQ8_K* b = static_cast<const BlockQ8_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i)
                for (int j = 0; j < QK_K; ++j) y[i * QK_K + j] = b[i].d * b[i].qs[j];
            break;
        }
        default: MINIGPT_ASSERT(false && "dequantize_row: unsupported type"); break;
    }
}

}  // namespace detail
MINIGPT_NS_END
