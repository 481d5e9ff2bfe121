// kernels_neon: AArch64 NEON versions of the scalar kernels. The baseline is
// ARMv8.0 (Advanced SIMD); the int8 dot product instruction (SDOT) is used when
// the target has it (__ARM_FEATURE_DOTPROD), the widening fp16 multiply-add
// (FMLAL) for F16 rows when it has __ARM_FEATURE_FP16_FML, and the widening
// bf16 multiply-add (BFMLALB/T) for BF16 rows with
// __ARM_FEATURE_BF16_VECTOR_ARITHMETIC. Without them the halves are converted
// to float, which is exact. Plain fp16 vector arithmetic is not used for dot
// products: products and sums rounded to fp16 would lose far more precision
// than the float kernels keep.
#pragma once
#include "kernels_scalar.hpp"

#if defined(MINIGPT_NEON)
#include <arm_neon.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace neon {

// fp16 scale to float with the conversion instruction.
inline float h2f(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

// ---------------------------------------------------------------------------
// Float rows.
// ---------------------------------------------------------------------------
inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

// 8 fp16 values as two float vectors.
inline float32x4_t f16_lo(uint16x8_t v) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(v))); }
inline float32x4_t f16_hi(uint16x8_t v) { return vcvt_high_f32_f16(vreinterpretq_f16_u16(v)); }

// acc0 += products of elements 0..3, acc1 += products of elements 4..7 of 8
// fp16 pairs, with exact products and float sums.
inline void fma_f16x8(float32x4_t& acc0, float32x4_t& acc1, uint16x8_t x, uint16x8_t y) {
#if defined(__ARM_FEATURE_FP16_FML)
    const float16x8_t hx = vreinterpretq_f16_u16(x), hy = vreinterpretq_f16_u16(y);
    acc0 = vfmlalq_low_f16(acc0, hx, hy);
    acc1 = vfmlalq_high_f16(acc1, hx, hy);
#else
    acc0 = vfmaq_f32(acc0, f16_lo(x), f16_lo(y));
    acc1 = vfmaq_f32(acc1, f16_hi(x), f16_hi(y));
#endif
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        fma_f16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
        fma_f16x8(s2, s3, vld1q_u16(x + i + 8), vld1q_u16(y + i + 8));
    }
    for (; i + 8 <= n; i += 8) fma_f16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += h2f(x[i]) * h2f(y[i]);
    return s;
}

// 8 bf16 values: the bits shifted into the top half of a float are exact.
inline float32x4_t bf16_lo(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)); }
inline float32x4_t bf16_hi(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)); }

inline void fma_bf16x8(float32x4_t& acc0, float32x4_t& acc1, uint16x8_t x, uint16x8_t y) {
#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
    // Even elements into acc0, odd elements into acc1 (IEEE fused multiply-add
    // of the widened values, so the products are exact).
    const bfloat16x8_t bx = vreinterpretq_bf16_u16(x), by = vreinterpretq_bf16_u16(y);
    acc0 = vbfmlalbq_f32(acc0, bx, by);
    acc1 = vbfmlaltq_f32(acc1, bx, by);
#else
    acc0 = vfmaq_f32(acc0, bf16_lo(x), bf16_lo(y));
    acc1 = vfmaq_f32(acc1, bf16_hi(x), bf16_hi(y));
#endif
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        fma_bf16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
        fma_bf16x8(s2, s3, vld1q_u16(x + i + 8), vld1q_u16(y + i + 8));
    }
    for (; i + 8 <= n; i += 8) fma_bf16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
    return s;
}

// ---------------------------------------------------------------------------
// Integer helpers. All weight codes are brought into int8 range first (with
// their offsets applied where that keeps them in range), so one signed
// 8-bit dot product serves every type.
// ---------------------------------------------------------------------------

// acc (4 x int32) += the 16 products of a and b, summed in groups of four.
inline int32x4_t dot_acc(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    // |int8 * int8| <= 16384 fits int16; pairs are added in int32.
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

// Sum of the 16 products of a and b.
inline int32_t dot16(int8x16_t a, int8x16_t b) { return vaddvq_s32(dot_acc(vdupq_n_s32(0), a, b)); }

// Dot of 32 weight codes (two vectors) with 32 activations, as 4 int32 lanes.
inline int32x4_t dot32(int8x16_t w0, int8x16_t w1, const int8_t* q8) {
    return dot_acc(dot_acc(vdupq_n_s32(0), w0, vld1q_s8(q8)), w1, vld1q_s8(q8 + 16));
}

inline int8x16_t low_nibbles(uint8x16_t b) { return vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F))); }
inline int8x16_t high_nibbles(uint8x16_t b) { return vreinterpretq_s8_u8(vshrq_n_u8(b, 4)); }

// Byte e is 0x10 when bit (16 * part + e) of the little-endian 32 bits at qh is set.
inline uint8x16_t fifth_bits(const uint8_t* qh, int part) {
    const uint8x8_t bytes = vreinterpret_u8_u32(vdup_n_u32(load_u32(qh)));
    static const uint8_t idx[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                       {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t spread = vqtbl1q_u8(vcombine_u8(bytes, bytes), vld1q_u8(idx[part]));
    return vandq_u8(vtstq_u8(spread, vld1q_u8(bit)), vdupq_n_u8(0x10));
}

// ---------------------------------------------------------------------------
// 32-element block types.
// ---------------------------------------------------------------------------
inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const int32x4_t p0 = dot32(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        const int32x4_t p1 = dot32(vld1q_s8(x[b + 1].qs), vld1q_s8(x[b + 1].qs + 16), y[b + 1].qs);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), h2f(x[b].d) * h2f(y[b].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p1), h2f(x[b + 1].d) * h2f(y[b + 1].d));
    }
    for (; b < nb; ++b) {
        const int32x4_t p0 = dot32(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

// The 32 nibbles of a Q4_0 block as int8 in [-8, 7]: elements 0..15, 16..31.
inline void unpack_q4_0(const uint8_t* qs, int8x16_t& lo, int8x16_t& hi) {
    const uint8x16_t b = vld1q_u8(qs);
    const int8x16_t eight = vdupq_n_s8(8);
    lo = vsubq_s8(low_nibbles(b), eight);
    hi = vsubq_s8(high_nibbles(b), eight);
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    int8x16_t l0, h0, l1, h1;
    for (; b + 2 <= nb; b += 2) {
        unpack_q4_0(x[b].qs, l0, h0);
        unpack_q4_0(x[b + 1].qs, l1, h1);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(dot32(l0, h0, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(dot32(l1, h1, y[b + 1].qs)), h2f(x[b + 1].d) * h2f(y[b + 1].d));
    }
    for (; b < nb; ++b) {
        unpack_q4_0(x[b].qs, l0, h0);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(dot32(l0, h0, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        const int32x4_t p = dot32(low_nibbles(q), high_nibbles(q), y[b].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return vaddvq_f32(acc) + summs;
}

// Five-bit codes (0..31) of a Q5_0 / Q5_1 block, elements 0..15 and 16..31.
inline void codes_q5(const uint8_t* qs, const uint8_t* qh, int8x16_t& lo, int8x16_t& hi) {
    const uint8x16_t q = vld1q_u8(qs);
    lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), fifth_bits(qh, 0)));
    hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), fifth_bits(qh, 1)));
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int8x16_t sixteen = vdupq_n_s8(16);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / 32; ++b) {
        int8x16_t lo, hi;
        codes_q5(x[b].qs, x[b].qh, lo, hi);
        const int32x4_t p = dot32(vsubq_s8(lo, sixteen), vsubq_s8(hi, sixteen), y[b].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(acc);
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int8x16_t lo, hi;
        codes_q5(x[b].qs, x[b].qh, lo, hi);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot32(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return vaddvq_f32(acc) + summs;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int8x16_t table = vld1q_s8(kIQ4NLValues);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        const int8x16_t lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0F)));
        const int8x16_t hi = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot32(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(acc);
}

// ---------------------------------------------------------------------------
// K-quants against Q8_K. Sub-block sums are exact integers, combined with the
// integer scales in int32 exactly as the scalar kernels do.
// ---------------------------------------------------------------------------
inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m3 = vdupq_n_u8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* sc = x[b].scales;
        // Sum of min * bsum over the 16 sub-blocks.
        const uint8x16_t scv = vld1q_u8(sc);
        const int16x8_t mins_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(vshrq_n_u8(scv, 4))));
        const int16x8_t mins_hi = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(scv, 4)));
        const int16x8_t bs_lo = vld1q_s16(y[b].bsums), bs_hi = vld1q_s16(y[b].bsums + 8);
        int32x4_t mm = vmull_s16(vget_low_s16(mins_lo), vget_low_s16(bs_lo));
        mm = vmlal_high_s16(mm, mins_lo, bs_lo);
        mm = vmlal_s16(mm, vget_low_s16(mins_hi), vget_low_s16(bs_hi));
        mm = vmlal_high_s16(mm, mins_hi, bs_hi);
        const int32_t summs = vaddvq_s32(mm);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            uint8x16_t v0 = vld1q_u8(x[b].qs + 32 * h), v1 = vld1q_u8(x[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {  // sub-blocks k = 8h + 2j (v0) and 8h + 2j + 1 (v1)
                const int k = 8 * h + 2 * j;
                const int8_t* q8 = y[b].qs + 16 * k;
                const int32_t s0 = dot16(vreinterpretq_s8_u8(vandq_u8(v0, m3)), vld1q_s8(q8));
                const int32_t s1 = dot16(vreinterpretq_s8_u8(vandq_u8(v1, m3)), vld1q_s8(q8 + 16));
                isum += (sc[k] & 0x0F) * s0 + (sc[k + 1] & 0x0F) * s1;
                v0 = vshrq_n_u8(v0, 2);
                v1 = vshrq_n_u8(v1, 2);
            }
        }
        const float dall = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x[b].hmask), hm1 = vld1q_u8(x[b].hmask + 16);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            uint8x16_t v0 = vld1q_u8(x[b].qs + 32 * h), v1 = vld1q_u8(x[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1u << (4 * h + j)));
                // value = low 2 bits - 4, plus 4 when the high bit is set:
                // subtract 4 only where the bit is clear.
                const int8x16_t q0 = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(v0, m3), vbicq_u8(four, vtstq_u8(hm0, bit))));
                const int8x16_t q1 = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(v1, m3), vbicq_u8(four, vtstq_u8(hm1, bit))));
                const int8_t* q8 = y[b].qs + 16 * k;
                isum += sc[k] * dot16(q0, vld1q_s8(q8)) + sc[k + 1] * dot16(q1, vld1q_s8(q8 + 16));
                v0 = vshrq_n_u8(v0, 2);
                v1 = vshrq_n_u8(v1, 2);
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

// Q4_K and Q5_K share the scale layout; High adds the fifth bit.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if constexpr (High) {
            const BlockQ5_K* x5 = reinterpret_cast<const BlockQ5_K*>(x + b);
            qh0 = vld1q_u8(x5->qh);
            qh1 = vld1q_u8(x5->qh + 16);
        }
        int32_t isum = 0, summs = 0;
        for (int j = 0; j < 4; ++j) {  // sub-blocks 2j (low nibbles) and 2j + 1 (high nibbles)
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * j), q1 = vld1q_u8(x[b].qs + 32 * j + 16);
            int8x16_t l0 = low_nibbles(q0), l1 = low_nibbles(q1);
            int8x16_t h0 = high_nibbles(q0), h1 = high_nibbles(q1);
            if constexpr (High) {
                const uint8x16_t bl = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * j)));
                const uint8x16_t bh = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * j + 1)));
                const uint8x16_t x10 = vdupq_n_u8(0x10);
                l0 = vorrq_s8(l0, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh0, bl), x10)));
                l1 = vorrq_s8(l1, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh1, bl), x10)));
                h0 = vorrq_s8(h0, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh0, bh), x10)));
                h1 = vorrq_s8(h1, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh1, bh), x10)));
            }
            const int8_t* q8 = y[b].qs + 64 * j;
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * j, x[b].scales, sc0, m0);
            scale_min_k4(2 * j + 1, x[b].scales, sc1, m1);
            isum += sc0 * vaddvq_s32(dot32(l0, l1, q8)) + sc1 * vaddvq_s32(dot32(h0, h1, q8 + 32));
            const int16_t* bs = y[b].bsums + 4 * j;
            summs += m0 * (bs[0] + bs[1]) + m1 * (bs[2] + bs[3]);
        }
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[b].ql + 64 * h;
            const uint8_t* qhp = x[b].qh + 32 * h;
            const uint8x16_t la0 = vld1q_u8(ql), la1 = vld1q_u8(ql + 16);       // elements l and l + 64
            const uint8x16_t lb0 = vld1q_u8(ql + 32), lb1 = vld1q_u8(ql + 48);  // elements l + 32 and l + 96
            uint8x16_t qh0 = vld1q_u8(qhp), qh1 = vld1q_u8(qhp + 16);
            for (int g = 0; g < 4; ++g) {  // elements 128h + 32g + l, l < 32
                const uint8x16_t s0 = g & 1 ? lb0 : la0, s1 = g & 1 ? lb1 : la1;
                const uint8x16_t n0 = g < 2 ? vandq_u8(s0, m4) : vshrq_n_u8(s0, 4);
                const uint8x16_t n1 = g < 2 ? vandq_u8(s1, m4) : vshrq_n_u8(s1, 4);
                const int8x16_t q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(n0, vshlq_n_u8(vandq_u8(qh0, m3), 4))), off);
                const int8x16_t q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(n1, vshlq_n_u8(vandq_u8(qh1, m3), 4))), off);
                const int k = 8 * h + 2 * g;  // sub-blocks k (l < 16) and k + 1
                const int8_t* q8 = y[b].qs + 16 * k;
                isum += x[b].scales[k] * dot16(q0, vld1q_s8(q8)) + x[b].scales[k + 1] * dot16(q1, vld1q_s8(q8 + 16));
                qh0 = vshrq_n_u8(qh0, 2);
                qh1 = vshrq_n_u8(qh1, 2);
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_1: return vec_dot_q4_1;
        case Type::Q5_0: return vec_dot_q5_0;
        case Type::Q5_1: return vec_dot_q5_1;
        case Type::IQ4_NL: return vec_dot_iq4_nl;
        case Type::Q2_K: return vec_dot_q2_k;
        case Type::Q3_K: return vec_dot_q3_k;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        case Type::Q6_K: return vec_dot_q6_k;
        default: return scalar::vec_dot_fn(wt);
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
    for (; i < n; ++i) y[i] *= a;
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row at once (F32, Q8_0, Q4_0): the
// activation block is loaded once for four rows.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(y + i);
        s0 = vfmaq_f32(s0, vld1q_f32(x0 + i), v);
        s1 = vfmaq_f32(s1, vld1q_f32(x1 + i), v);
        s2 = vfmaq_f32(s2, vld1q_f32(x2 + i), v);
        s3 = vfmaq_f32(s3, vld1q_f32(x3 + i), v);
    }
    float r0 = vaddvq_f32(s0), r1 = vaddvq_f32(s1), r2 = vaddvq_f32(s2), r3 = vaddvq_f32(s3);
    for (; i < n; ++i) {
        r0 += x0[i] * y[i];
        r1 += x1[i] * y[i];
        r2 += x2[i] * y[i];
        r3 += x3[i] * y[i];
    }
    out[0] = r0, out[1] = r1, out[2] = r2, out[3] = r3;
}

template <bool Q4>
inline void dot4_q(int64_t n, const uint8_t* w, size_t ws, const BlockQ8_0* y, float* out) {
    const int64_t nb = n / 32;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t b = 0; b < nb; ++b) {
        const int8x16_t a0 = vld1q_s8(y[b].qs), a1 = vld1q_s8(y[b].qs + 16);
        const float da = h2f(y[b].d);
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            int8x16_t x0, x1;
            float dw;
            if constexpr (Q4) {
                const BlockQ4_0* xb = reinterpret_cast<const BlockQ4_0*>(row) + b;
                unpack_q4_0(xb->qs, x0, x1);
                dw = h2f(xb->d);
            } else {
                const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(row) + b;
                x0 = vld1q_s8(xb->qs);
                x1 = vld1q_s8(xb->qs + 16);
                dw = h2f(xb->d);
            }
            const int32x4_t p = dot_acc(dot_acc(vdupq_n_s32(0), x0, a0), x1, a1);
            acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(p), dw * da);
        }
    }
    for (int k = 0; k < 4; ++k) out[k] = vaddvq_f32(acc[k]);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (a single stream through memory); several:
    // four weight rows share each activation load.
    if (m == 1 || (wt != Type::F32 && wt != Type::Q8_0 && wt != Type::Q4_0)) {
        matmul_rows_generic(dot, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(4, std::min<int64_t>(64, tile & ~int64_t(3)));
    float out[4];
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const uint8_t* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            int64_t r = rt;
            for (; r + 4 <= re; r += 4) {
                const uint8_t* wr = w + static_cast<size_t>(r) * w_row_bytes;
                if (wt == Type::F32) dot4_f32(n, wr, w_row_bytes, reinterpret_cast<const float*>(aj), out);
                else if (wt == Type::Q8_0) dot4_q<false>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                else dot4_q<true>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                yj[r] = out[0], yj[r + 1] = out[1], yj[r + 2] = out[2], yj[r + 3] = out[3];
            }
            for (; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

}  // namespace neon
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_NEON
