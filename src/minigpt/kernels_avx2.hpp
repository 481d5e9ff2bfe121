// kernels_avx2: AVX2 + FMA + F16C versions of the scalar kernels.
#pragma once
#include "kernels_scalar.hpp"

#if defined(MINIGPT_AVX2)
#include <immintrin.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace avx2 {

// fp16 scale to float with the F16C instruction.
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 bf16 values to 8 floats.
inline __m256 load_bf16(const uint16_t* p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
inline __m256 load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
        s1 = _mm256_fmadd_ps(load_f16(x + i + 8), load_f16(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16(x + i + 16), load_f16(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16(x + i + 24), load_f16(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += h2f(x[i]) * h2f(y[i]);
    return s;
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(x + i + 8), load_bf16(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16(x + i + 16), load_bf16(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16(x + i + 24), load_bf16(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
    return s;
}

// Sum of the 32 products of signed bytes x and y, as 8 int32 lanes:
// |x| (unsigned) times y with x's sign (signed) fits maddubs.
inline __m256i dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The 32 nibbles of a Q4_0 block as signed bytes in [-8, 7], in element order.
inline __m256i unpack_q4_0(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo_mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, lo_mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask);
    const __m256i v = _mm256_set_m128i(hi, lo);
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

inline __m256i load_q8(const int8_t* qs) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)); }

inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b + 1].qs), load_q8(y[b + 1].qs))), acc1);
    }
    for (; b < nb; ++b) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b + 1].qs), load_q8(y[b + 1].qs))), acc1);
    }
    for (; b < nb; ++b) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// ---------------------------------------------------------------------------
// Q4_1, Q5_0, Q5_1, IQ4_NL and the K-quants. Integer products of unsigned
// weight codes and signed activations go through maddubs (two products summed
// into int16, no saturation for these ranges) and madd (into int32); offsets
// such as Q5_0's -16 or Q6_K's -32 are taken out with activation sums.
// ---------------------------------------------------------------------------
inline __m256i mul_sum_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The 32 nibbles of a 16-byte Q4-style array, unsigned, in element order
// (low nibbles are elements 0..15, high nibbles 16..31).
inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// Byte e is 0xFF when bit e of bits is set, else 0.
inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                          _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                                             0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i sel = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

// Five-bit codes (0..31) of a Q5_0 / Q5_1 block.
inline __m256i codes_q5(const uint8_t* qs, const uint8_t* qh) {
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bits_to_bytes(load_u32(qh)), _mm256_set1_epi8(0x10)));
}

inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i p = mul_sum_u8s8(nibbles32(x[b].qs), load_q8(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return hsum(acc) + summs;
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i av = load_q8(y[b].qs);
        const __m256i p = _mm256_sub_epi32(mul_sum_u8s8(codes_q5(x[b].qs, x[b].qh), av), mul_sum_u8s8(sixteen, av));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i p = mul_sum_u8s8(codes_q5(x[b].qs, x[b].qh), load_q8(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return hsum(acc) + summs;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const __m128i t = _mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
    const __m256i table = _mm256_set_m128i(t, t);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i v = _mm256_shuffle_epi8(table, nibbles32(x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(dot_i8(v, load_q8(y[b].qs))),
                              acc);
    }
    return hsum(acc);
}

// Two int16 scales: the first for bytes 0..15 of a 32-byte product, the second
// for bytes 16..31 (two sub-blocks of 16).
inline __m256i scales_pair(int s0, int s1) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(s1)), _mm_set1_epi16(static_cast<int16_t>(s0)));
}
inline __m256i shr16(__m256i v, int k) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(k)); }

inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m3 = _mm256_set1_epi8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* sc = x[b].scales;
        int32_t summs = 0;
        for (int k = 0; k < 16; ++k) summs += y[b].bsums[k] * (sc[k] >> 4);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const __m256i q = _mm256_and_si256(shr16(qv, 2 * j), m3);
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 32 * (k / 2)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k] & 15, sc[k + 1] & 15)));
            }
        }
        const float dall = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += dall * static_cast<float>(hsum_i32(sumi)) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        // Codes are stored as q + 4 (0..7): take 4 * sum(scale * a) back out.
        int32_t corr = 0;
        for (int k = 0; k < 16; ++k) corr += sc[k] * y[b].bsums[k];
        const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].hmask));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(shr16(hm, 4 * h + j), m1), 2);
                const __m256i q = _mm256_or_si256(_mm256_and_si256(shr16(qv, 2 * j), m3), hi);
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 16 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k], sc[k + 1])));
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(hsum_i32(sumi) - 4 * corr);
    }
    return s;
}

template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int sc[8], mn[8];
        int32_t summs = 0;
        for (int k = 0; k < 8; ++k) {
            scale_min_k4(k, x[b].scales, sc[k], mn[k]);
            summs += mn[k] * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        }
        __m256i hb = _mm256_setzero_si256();
        if constexpr (High) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh));
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j));
            __m256i lo = _mm256_and_si256(qv, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            if constexpr (High) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(shr16(hb, 2 * j), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(shr16(hb, 2 * j + 1), m1), 4));
            }
            const __m256i p0 = _mm256_maddubs_epi16(lo, load_q8(y[b].qs + 64 * j));
            const __m256i p1 = _mm256_maddubs_epi16(hi, load_q8(y[b].qs + 64 * j + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j]))));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j + 1]))));
        }
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += d * static_cast<float>(hsum_i32(sumi)) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const int8_t* sc = x[b].scales;
        // Codes are stored as q + 32 (0..63): take 32 * sum(scale * a) back out.
        int32_t corr = 0;
        for (int k = 0; k < 16; ++k) corr += sc[k] * y[b].bsums[k];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh + 32 * h));
            for (int g = 0; g < 4; ++g) {
                const int k = 8 * h + 2 * g;
                const __m256i lo = (g & 1) ? l1 : l0;
                const __m256i nib = g < 2 ? _mm256_and_si256(lo, m4) : _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
                const __m256i q = _mm256_or_si256(nib, _mm256_slli_epi16(_mm256_and_si256(shr16(qh, 2 * g), m3), 4));
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 16 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k], sc[k + 1])));
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(hsum_i32(sumi) - 32 * corr);
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
        default: return nullptr;
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] *= a;
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row at once: each activation block
// is loaded and prepared once for four rows.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(y + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), v, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), v, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), v, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), v, s3);
    }
    float r0 = hsum(s0), r1 = hsum(s1), r2 = hsum(s2), r3 = hsum(s3);
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
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i av = load_q8(y[b].qs);
        const float da = h2f(y[b].d);
        __m256 acc[4] = {s0, s1, s2, s3};
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            __m256i xv;
            float dw;
            if constexpr (Q4) {
                const BlockQ4_0* xb = reinterpret_cast<const BlockQ4_0*>(row) + b;
                xv = unpack_q4_0(xb->qs);
                dw = h2f(xb->d);
            } else {
                const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(row) + b;
                xv = load_q8(xb->qs);
                dw = h2f(xb->d);
            }
            const __m256i p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(av, xv)), ones);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), _mm256_cvtepi32_ps(p), acc[k]);
        }
        s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    }
    out[0] = hsum(s0), out[1] = hsum(s1), out[2] = hsum(s2), out[3] = hsum(s3);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (one stream through memory reads at full
    // bandwidth; four interleaved rows do not). Several: four rows share each
    // activation load.
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

}  // namespace avx2
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_AVX2
