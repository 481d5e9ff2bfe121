// quant: half-precision conversions, block formats (Q8_0, Q4_0), and row
// quantization / dequantization. Everything here is portable scalar code; the
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

// Types the kernels can compute with.
inline bool type_supported(Type t) {
    switch (t) {
        case Type::F32: case Type::F16: case Type::BF16: case Type::Q8_0: case Type::Q4_0: return true;
        default: return false;
    }
}

// The format an activation row is converted to before its dot product with a
// weight row of type `weight` (what llama.cpp does, so results match it).
inline Type vec_dot_type(Type weight) {
    switch (weight) {
        case Type::F16: return Type::F16;
        case Type::BF16: return Type::BF16;
        case Type::Q8_0: return Type::Q8_0;
        case Type::Q4_0: return Type::Q8_0;
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
        default: MINIGPT_ASSERT(false && "dequantize_row: unsupported type"); break;
    }
}

}  // namespace detail
MINIGPT_NS_END
