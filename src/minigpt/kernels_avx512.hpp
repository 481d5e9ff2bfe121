// kernels_avx512: AVX-512 (F/BW/VL/DQ) versions of the scalar kernels, using
// VNNI integer dot products and BF16 dot products when the target has them.
// Conversions use the zero-masking forms with a full mask: the plain forms
// start from an "undefined" register that g++ 12 reports as uninitialized.
#pragma once
#include "kernels_avx2.hpp"

#if defined(MINIGPT_AVX512)
#include <immintrin.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace avx512 {

// Horizontal sum through memory (the compiler turns it into register moves);
// this avoids a spurious -Wuninitialized that g++ 12 gives for the reduce intrinsic.
inline float hsum(__m512 v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    return avx2::hsum(_mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8)));
}

inline __mmask16 tail_mask16(int64_t left) {
    return left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

inline __m512 load_f16(__mmask16 k, const uint16_t* p) { return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm256_maskz_loadu_epi16(k, p)); }
inline __m512 load_f16(const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
        s1 = _mm512_fmadd_ps(load_f16(x + i + 16), load_f16(y + i + 16), s1);
        s2 = _mm512_fmadd_ps(load_f16(x + i + 32), load_f16(y + i + 32), s2);
        s3 = _mm512_fmadd_ps(load_f16(x + i + 48), load_f16(y + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(load_f16(k, x + i), load_f16(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

#if defined(__AVX512BF16__)
// 32 bf16 pairs per instruction; the products are exact, the pair sums round once.
inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_dpbf16_ps(s0, as_bh(_mm512_loadu_si512(x + i)), as_bh(_mm512_loadu_si512(y + i)));
        s1 = _mm512_dpbf16_ps(s1, as_bh(_mm512_loadu_si512(x + i + 32)), as_bh(_mm512_loadu_si512(y + i + 32)));
    }
    for (; i < n; i += 32) {
        const int64_t left = n - i;
        const __mmask32 k = left >= 32 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << left) - 1u);
        s0 = _mm512_dpbf16_ps(s0, as_bh(_mm512_maskz_loadu_epi16(k, x + i)), as_bh(_mm512_maskz_loadu_epi16(k, y + i)));
    }
    return hsum(_mm512_add_ps(s0, s1));
}
#else
inline __m512 load_bf16(__mmask16 k, const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xFFFF), _mm512_maskz_cvtepu16_epi32(__mmask16(0xFFFF), _mm256_maskz_loadu_epi16(k, p)), 16));
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(load_bf16(0xFFFF, x + i), load_bf16(0xFFFF, y + i), s0);
        s1 = _mm512_fmadd_ps(load_bf16(0xFFFF, x + i + 16), load_bf16(0xFFFF, y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(load_bf16(k, x + i), load_bf16(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(s0, s1));
}
#endif

// Two 32-byte halves into one 512-bit register.
inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_maskz_inserti64x4(__mmask8(0xFF), _mm512_castsi256_si512(lo), hi, 1);
}

// Sums of products of unsigned bytes u (0..255) and signed bytes s, 4 at a time,
// into 16 int32 lanes.
inline __m512i dot_u8s8(__m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

// Signed x signed byte products: |x| times y with x's sign.
inline __m512i dot_i8(__m512i x, __m512i y) {
    const __m512i ax = _mm512_abs_epi8(x);
    const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
    return dot_u8s8(ax, sy);
}

// The 32 nibbles of a Q4_0 block, unsigned (0..15), in element order.
inline __m256i nibbles_q4_0(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo_mask = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), lo_mask), _mm_and_si128(b, lo_mask));
}

inline __m256i load_q8(const int8_t* qs) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)); }

// Per-lane scales: lanes 0..7 get d0 (first block), lanes 8..15 get d1.
inline __m512 scales2(float d0, float d1) {
    return _mm512_mask_blend_ps(__mmask16(0xFF00), _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m512i p0 = dot_i8(join(load_q8(x[b].qs), load_q8(x[b + 1].qs)), join(load_q8(y[b].qs), load_q8(y[b + 1].qs)));
        const __m512i p1 =
            dot_i8(join(load_q8(x[b + 2].qs), load_q8(x[b + 3].qs)), join(load_q8(y[b + 2].qs), load_q8(y[b + 3].qs)));
        const __m512 d0 = scales2(avx2::h2f(x[b].d) * avx2::h2f(y[b].d),
                                  avx2::h2f(x[b + 1].d) * avx2::h2f(y[b + 1].d));
        const __m512 d1 = scales2(avx2::h2f(x[b + 2].d) * avx2::h2f(y[b + 2].d),
                                  avx2::h2f(x[b + 3].d) * avx2::h2f(y[b + 3].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p0), acc0);
        acc1 = _mm512_fmadd_ps(d1, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p1), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    // 0..3 leftover blocks with 256-bit integer dots.
    __m256 acc = _mm256_setzero_ps();
    for (; b < nb; ++b) {
        const __m256 d = _mm256_set1_ps(avx2::h2f(x[b].d) * avx2::h2f(y[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(avx2::dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc);
    }
    return s + avx2::hsum(acc);
}

// The nibbles of two Q4_0 blocks in element order (block b: low nibbles then
// high nibbles, then block b + 1), unsigned: both 16-byte halves are broadcast
// to two 128-bit lanes each, and lanes 1 and 3 take the bytes shifted right by 4.
inline __m512i nibbles2_q4_0(const uint8_t* qs0, const uint8_t* qs1) {
    const __m512i v = _mm512_mask_broadcast_i32x4(_mm512_maskz_broadcast_i32x4(__mmask16(0xFFFF), _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0))),
                                                  __mmask16(0xFF00), _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)));
    return _mm512_and_si512(_mm512_mask_blend_epi64(__mmask8(0xCC), v, _mm512_srli_epi16(v, 4)), _mm512_set1_epi8(0x0F));
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    // sum((q - 8) * a) = sum(q * a) - sum(8 * a), with q unsigned: no sign fix-up needed.
    for (; b + 4 <= nb; b += 4) {
        const __m512i a0 = join(load_q8(y[b].qs), load_q8(y[b + 1].qs));
        const __m512i a1 = join(load_q8(y[b + 2].qs), load_q8(y[b + 3].qs));
        const __m512i q0 = nibbles2_q4_0(x[b].qs, x[b + 1].qs);
        const __m512i q1 = nibbles2_q4_0(x[b + 2].qs, x[b + 3].qs);
        const __m512i p0 = _mm512_sub_epi32(dot_u8s8(q0, a0), dot_u8s8(eight, a0));
        const __m512i p1 = _mm512_sub_epi32(dot_u8s8(q1, a1), dot_u8s8(eight, a1));
        const __m512 d0 = scales2(avx2::h2f(x[b].d) * avx2::h2f(y[b].d),
                                  avx2::h2f(x[b + 1].d) * avx2::h2f(y[b + 1].d));
        const __m512 d1 = scales2(avx2::h2f(x[b + 2].d) * avx2::h2f(y[b + 2].d),
                                  avx2::h2f(x[b + 3].d) * avx2::h2f(y[b + 3].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p0), acc0);
        acc1 = _mm512_fmadd_ps(d1, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p1), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    __m256 acc = _mm256_setzero_ps();
    for (; b < nb; ++b) {
        const __m256 d = _mm256_set1_ps(avx2::h2f(x[b].d) * avx2::h2f(y[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(avx2::dot_i8(avx2::unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc);
    }
    return s + avx2::hsum(acc);
}

// Q4_K / Q5_K: a pair of sub-blocks (64 values: low nibbles, then high) per
// 512-bit step; 16-bit products scaled by the sub-block scales in madd, one
// float update per super-block, one horizontal sum at the end.
// The 8 six-bit scales (bytes 0..7 of the result) and mins (bytes 8..15) of a
// Q4_K / Q5_K super-block, unpacked four at a time (same fields as scale_min_k4).
inline void scales_mins_k4(const uint8_t* q, uint8_t out[16]) {
    uint32_t u[3];
    std::memcpy(u, q, 12);
    const uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, low2 = 0x03030303u;
    const uint32_t v[4] = {u[0] & low6, (u[2] & low4) | (((u[0] >> 6) & low2) << 4), u[1] & low6,
                           ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4)};
    std::memcpy(out, v, 16);
}

// Q4_K / Q5_K: a pair of sub-blocks (64 values: low nibbles, then high) per
// 512-bit step; 16-bit products scaled by the sub-block scales in madd, one
// float update per super-block, one horizontal sum at the end.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        alignas(16) uint8_t sm[16];
        scales_mins_k4(x[b].scales, sm);
        // sum over sub-blocks of min * (sum of its 32 activations), from the 16-value sums.
        const __m128i mins8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8));
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * avx2::h2f(x[b].dmin)), _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins16)), acc_min);
        __m256i hb = _mm256_setzero_si256();
        if constexpr (High) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh));
        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j));
            __m256i lo = _mm256_and_si256(qv, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            if constexpr (High) {
                const __m256i h16 = _mm256_set1_epi8(0x10);
                lo = _mm256_or_si256(lo, _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(hb, _mm256_set1_epi8(static_cast<char>(1u << (2 * j)))), h16));
                hi = _mm256_or_si256(hi, _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(hb, _mm256_set1_epi8(static_cast<char>(2u << (2 * j)))), h16));
            }
            const __m512i p = _mm512_maddubs_epi16(join(lo, hi), _mm512_loadu_si512(y[b].qs + 64 * j));
            const __m512i scv = _mm512_mask_blend_epi16(__mmask32(0xFFFF0000u), _mm512_set1_epi16(sm[2 * j]), _mm512_set1_epi16(sm[2 * j + 1]));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p, scv));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[b].d * avx2::h2f(x[b].d)), _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), sumi), acc);
    }
    return hsum(acc) - avx2::hsum(acc_min);
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

// Q4_K / Q5_K weight rows against one Q8_K activation row. The activation is
// rearranged once for all rows: a 64-byte load of a weight's nibbles holds
// sub-blocks 4h, 4h+2 in its low nibbles and 4h+1, 4h+3 in its high ones, so
// the activation bytes are stored in that order, with each sub-block's sum for
// the min term. Per super-block and row: the scales and mins unpacked with
// vector shifts, two maddubs and two word dot products (dpwssd, the sub-block
// scale per lane) per 128 values, one float update.
constexpr int64_t kKBlocks = 64;  // longest row of the matvec path: 64 super-blocks

struct ActK {
    __m512i a[4];  // per half h: the bytes under the low nibbles, then under the high
    __m128i sums;  // the 8 sub-block sums (int16)
    float d;
};

// Scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K / Q5_K super-block: the
// four 32-bit words of scales_mins_k4 in vector lanes.
inline __m128i scales_mins_k4v(const uint8_t* q) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));  // 12 bytes + 4 of the block after them
    __m128i lo = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));           // u0 u2 u1 u2
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4)), _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    __m128i hi = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));           // u0 u0 u1 u1: bits 6-7 to 4-5
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hi);
}

inline __m512i dot_i16_acc(__m512i acc, __m512i a, __m512i b) {
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

template <bool High, class Block>
inline void matvec_q45_k(int64_t n, const uint8_t* w, size_t ws, int64_t r0, int64_t r1, const BlockQ8_K* y,
                         float* out) {
    const int64_t nb = n / QK_K;
    if (nb > kKBlocks) {
        matmul_rows_generic(vec_dot_q45_k<High, Block>, w, ws, n, r0, r1, y, 0, 1, out, 0,
                            prefetch_pays(High ? Type::Q5_K : Type::Q4_K));
        return;
    }
    ActK act[kKBlocks];
    for (int64_t b = 0; b < nb; ++b) {
        for (int h = 0; h < 2; ++h) {
            const int8_t* q = y[b].qs + 128 * h;
            act[b].a[2 * h] = join(load_q8(q), load_q8(q + 64));
            act[b].a[2 * h + 1] = join(load_q8(q + 32), load_q8(q + 96));
        }
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
        act[b].sums = _mm256_cvtepi32_epi16(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)));
        act[b].d = y[b].d;
    }
    // Word permutes that spread the scales of the sub-blocks under each vector.
    __m512i idx[4];
    for (int h = 0; h < 2; ++h) {
        for (int k = 0; k < 2; ++k)
            idx[2 * h + k] = _mm512_mask_blend_epi16(__mmask32(0xFFFF0000u), _mm512_set1_epi16(static_cast<short>(4 * h + k)),
                                                     _mm512_set1_epi16(static_cast<short>(4 * h + k + 2)));
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; ++r) {
        const Block* x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * ws);
        __m512 acc = _mm512_setzero_ps();
        __m128 acc_min = _mm_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            const ActK& A = act[b];
            const __m128i sm = scales_mins_k4v(x[b].scales);
            const __m512i sc = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(sm));
            const __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
            uint32_t dbits;
            std::memcpy(&dbits, &x[b].d, 4);  // d, dmin
            const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dbits))), _mm_set1_ps(A.d));
            acc_min = _mm_fmadd_ps(_mm_shuffle_ps(dd, dd, 0x55), _mm_cvtepi32_ps(_mm_madd_epi16(mins, A.sums)), acc_min);
            __m512i hb = _mm512_setzero_si512();
            if constexpr (High) hb = _mm512_maskz_broadcast_i64x4(__mmask8(0xFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh)));
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int h = 0; h < 2; ++h) {
                const __m512i q = _mm512_loadu_si512(x[b].qs + 64 * h);
                __m512i lo = _mm512_and_si512(q, m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                if constexpr (High) {
                    // bits 4h, 4h+2 (low nibbles of the two halves) and 4h+1, 4h+3 (high ones)
                    const __m512i bl = _mm512_mask_blend_epi8(__mmask64(0xFFFFFFFF00000000ull), _mm512_set1_epi8(static_cast<char>(1u << (4 * h))),
                                                              _mm512_set1_epi8(static_cast<char>(1u << (4 * h + 2))));
                    const __m512i sixteen = _mm512_set1_epi8(0x10);
                    lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hb, bl), lo, sixteen);
                    hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hb, _mm512_add_epi8(bl, bl)), hi, sixteen);
                }
                s0 = dot_i16_acc(s0, _mm512_maddubs_epi16(lo, A.a[2 * h]), _mm512_permutexvar_epi16(idx[2 * h], sc));
                s1 = dot_i16_acc(s1, _mm512_maddubs_epi16(hi, A.a[2 * h + 1]), _mm512_permutexvar_epi16(idx[2 * h + 1], sc));
            }
            acc = _mm512_fmadd_ps(_mm512_maskz_broadcastss_ps(__mmask16(0xFFFF), dd), _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), _mm512_add_epi32(s0, s1)), acc);
        }
        const __m128 m2 = _mm_add_ps(acc_min, _mm_movehl_ps(acc_min, acc_min));
        out[r] = hsum(acc) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
    }
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        default: return avx2::vec_dot_fn(wt);  // the 256-bit kernels (nullptr if unsupported)
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i)));
    }
}

inline void scale_f32(int64_t n, float a, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, y + i)));
    }
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row: the activation is loaded once
// per step and used four times.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(k, y + i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x0 + i), v, s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x1 + i), v, s1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x2 + i), v, s2);
        s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x3 + i), v, s3);
    }
    out[0] = hsum(s0), out[1] = hsum(s1);
    out[2] = hsum(s2), out[3] = hsum(s3);
}

// Q8_0 / Q4_0 weights, two blocks per step.
template <bool Q4>
inline __m512i load2_w(const uint8_t* row, int64_t b) {
    if constexpr (Q4) {
        const BlockQ4_0* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
        return join(nibbles_q4_0(x[0].qs), nibbles_q4_0(x[1].qs));
    }
    const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
    return join(load_q8(x[0].qs), load_q8(x[1].qs));
}
template <bool Q4>
inline float load_wd(const uint8_t* row, int64_t b) {
    if constexpr (Q4) return avx2::h2f((reinterpret_cast<const BlockQ4_0*>(row) + b)->d);
    return avx2::h2f((reinterpret_cast<const BlockQ8_0*>(row) + b)->d);
}

template <bool Q4>
inline void dot4_q(int64_t n, const uint8_t* w, size_t ws, const BlockQ8_0* y, float* out) {
    const int64_t nb = n / 32;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i eight = _mm512_set1_epi8(8);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i av = join(load_q8(y[b].qs), load_q8(y[b + 1].qs));
        const float da0 = avx2::h2f(y[b].d), da1 = avx2::h2f(y[b + 1].d);
        // For Q4_0 weights, (q - 8) * a = q * a - 8 * a; 8 * a is shared by the four rows.
        __m512i a8 = _mm512_setzero_si512();
        if constexpr (Q4) a8 = dot_u8s8(eight, av);
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            const __m512i xv = load2_w<Q4>(row, b);
            __m512i p;
            if constexpr (Q4) {
                p = _mm512_sub_epi32(dot_u8s8(xv, av), a8);
            } else {
                p = dot_i8(xv, av);
            }
            const __m512 d = scales2(load_wd<Q4>(row, b) * da0, load_wd<Q4>(row, b + 1) * da1);
            acc[k] = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p), acc[k]);
        }
    }
    MINIGPT_UNROLL(4)
    for (int k = 0; k < 4; ++k) out[k] = hsum(acc[k]);
    if (b < nb) {  // one leftover block
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            const float d = load_wd<Q4>(row, b) * avx2::h2f(y[b].d);
            __m256i xv;
            if constexpr (Q4) xv = avx2::unpack_q4_0((reinterpret_cast<const BlockQ4_0*>(row) + b)->qs);
            else xv = load_q8((reinterpret_cast<const BlockQ8_0*>(row) + b)->qs);
            out[k] += d * avx2::hsum(_mm256_cvtepi32_ps(avx2::dot_i8(xv, load_q8(y[b].qs))));
        }
    }
}

// Q8_0 / Q5_0 / Q4_0 weight rows against one Q8_0 activation row, and Q4_1 /
// Q5_1 rows against one Q8_1 row, two blocks per step. What depends only on
// the activation is computed once for all rows: its 64 bytes per pair of
// blocks, the two scales, and a correction that the integer dot product
// starts from. The weight bytes enter vpdpbusd unsigned: Q4_0 nibbles q are,
// and (q - 8) * a = q * a - 8 * a; so are Q5_0 codes (a nibble plus 16 where
// the block's 32 high bits have a one, one bit per byte: a byte-masked add),
// with (q - 16) * a; Q8_0 bytes get their sign bit flipped, and
// (w + 128) * a = w * a + 128 * a. The -8a, -16a or -128a of each 4-byte lane
// is the starting value. Q4_1 / Q5_1 codes need no correction: their value is
// d * q + m, so a block adds d * da * sum(q * a) + m * s, with s = da * sum(a)
// from the Q8_1 block, m * s / 8 in each of its 8 lanes. The weight scales
// (and minima) of a pair are spread over lanes 0..7 and 8..15 by one word
// permute. An odd number of blocks ends in a half pair: the block against the
// activation block and zeros, its scale in lanes 0..7 and zeros above.
// Rows longer than kPairs * 64 values use the vec_dot kernels.
inline constexpr int64_t kPairs = 64;  // (inline: only VNNI builds read it)

// Words k and sizeof(Block) / 2 + k of v (the scales of a pair at v for k = 0,
// the minima for k = 1) over lanes 0..7 and 8..15.
template <class Block, unsigned k>
inline __m512 pair_halves_of(__m512i v) {
    constexpr unsigned w1 = sizeof(Block) / 2 + k;  // word index in the second block
    static_assert(sizeof(Block) % 2 == 0 && w1 < 32, "both words within 64 bytes");
    const __m512i idx = _mm512_mask_blend_epi16(__mmask32(0xFF00), _mm512_set1_epi16(k), _mm512_set1_epi16(w1));
    return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm512_maskz_extracti64x4_epi64(__mmask8(0xF), _mm512_permutexvar_epi16(idx, v), 0));
}

// One pair of weight blocks (or a half pair: the block alone) as the kernel
// reads it: codes() gives the unsigned bytes of the first block in lanes 0..7
// and of the second in lanes 8..15, scales() and mins() the two scales and
// minima (zero above lane 7 for a half pair, where the activation is zero
// too).
//
// A pair of 4- or 5-bit blocks (36 to 48 bytes) is one masked load when the
// CPU has byte permutes (VBMI): one vpermb puts each block's 16 nibble bytes
// in two 128-bit lanes, a shift of the second lane by 4 and a mask of 0x0F
// make them the codes in element order, and the scales come from the same
// register. The masked load reads no byte past the pair (or the block).
// Otherwise, and for Q8_0 (68 bytes), the blocks' parts are loaded apart.
template <class Block, bool half>
struct PairReader {
    static constexpr bool q8 = std::is_same_v<Block, BlockQ8_0>;
    static constexpr bool q5 = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
#if defined(__AVX512VBMI__)
    static constexpr bool one_load = !q8;
#else
    static constexpr bool one_load = false;
#endif
    const Block* x;
    __m512i v;  // the pair's bytes (one_load)

    explicit PairReader(const Block* x_) : x(x_) {
        if constexpr (one_load) {
            const unsigned n = (half ? 1 : 2) * sizeof(Block);
            v = _mm512_maskz_loadu_epi8(__mmask64((uint64_t(1) << n) - 1), x);
        } else {
            v = _mm512_setzero_si512();
        }
    }

    __m512i codes() const {
        const Block* x1 = half ? x : x + 1;
        if constexpr (q8) {
            return _mm512_xor_si512(join(load_q8(x->qs), load_q8(x1->qs)), _mm512_set1_epi8(static_cast<char>(0x80)));
        } else {
            __m512i lo;
            if constexpr (one_load) {
                constexpr unsigned q0 = offsetof(Block, qs), q1 = sizeof(Block) + q0;
                alignas(64) static constexpr uint8_t idx[64] = {
#define MINIGPT_IDX16(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15
                    MINIGPT_IDX16(q0), MINIGPT_IDX16(q0), MINIGPT_IDX16(q1), MINIGPT_IDX16(q1)
#undef MINIGPT_IDX16
                };
                // (zero-masking forms: see exp16)
                const __m512i bytes = _mm512_maskz_permutexvar_epi8(~__mmask64(0), _mm512_load_si512(idx), v);
                lo = _mm512_and_si512(_mm512_maskz_srlv_epi64(__mmask8(0xFF), bytes, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0x0F));
            } else {
                lo = nibbles2_q4_0(x->qs, x1->qs);
            }
            if constexpr (!q5) {
                return lo;
            } else {
                uint32_t h0, h1 = 0;
                std::memcpy(&h0, x->qh, 4);
                if constexpr (!half) std::memcpy(&h1, x1->qh, 4);
                return _mm512_mask_add_epi8(lo, __mmask64(uint64_t(h0) | uint64_t(h1) << 32), lo, _mm512_set1_epi8(16));
            }
        }
    }

    // Words k of the two blocks (k = 0: the scales, 1: the minima).
    template <unsigned k>
    __m512 halves() const {
        if constexpr (half) {
            uint16_t h;
            std::memcpy(&h, reinterpret_cast<const uint16_t*>(x) + k, 2);
            return _mm512_maskz_mov_ps(__mmask16(0x00FF), _mm512_set1_ps(avx2::h2f(h)));
        } else if constexpr (one_load) {
            return pair_halves_of<Block, k>(v);
        } else {
            constexpr unsigned w1 = sizeof(Block) / 2 + k;
            return pair_halves_of<Block, k>(_mm512_maskz_loadu_epi16(__mmask32((1u << k) | (1u << w1)), x));
        }
    }
    __m512 scales() const { return halves<0>(); }
    __m512 mins() const { return halves<1>(); }
};

template <class Block> inline constexpr Type kPairType = Type::Q8_0;
template <> inline constexpr Type kPairType<BlockQ4_0> = Type::Q4_0;
template <> inline constexpr Type kPairType<BlockQ5_0> = Type::Q5_0;
template <> inline constexpr Type kPairType<BlockQ4_1> = Type::Q4_1;
template <> inline constexpr Type kPairType<BlockQ5_1> = Type::Q5_1;

template <class Block>
inline void matvec_q_pairs(int64_t n, const uint8_t* w, size_t ws, int64_t r0, int64_t r1, const void* a,
                           float* out, int64_t ahead_end) {
    constexpr Type wt = kPairType<Block>;
    VecDotFn dot = vec_dot_fn(wt);
#if defined(__AVX512VNNI__)  // (unsigned bytes up to 255 would saturate maddubs)
    constexpr bool with_min = wt == Type::Q4_1 || wt == Type::Q5_1;
    using ActBlock = std::conditional_t<with_min, BlockQ8_1, BlockQ8_0>;
    const ActBlock* y = static_cast<const ActBlock*>(a);
    const int64_t nb = n / 32, pairs = nb / 2, odd = nb % 2;
    if (pairs + odd <= kPairs) {
        __m512i act[kPairs], start[kPairs];
        __m512 da[kPairs], sa[with_min ? kPairs : 1];
        const char offset = wt == Type::Q4_0 ? 8 : wt == Type::Q5_0 ? 16 : wt == Type::Q8_0 ? static_cast<char>(0x80) : 0;
        for (int64_t p = 0; p < pairs + odd; ++p) {
            const bool half = p == pairs;
            act[p] = join(load_q8(y[2 * p].qs), half ? _mm256_setzero_si256() : load_q8(y[2 * p + 1].qs));
            start[p] = _mm512_sub_epi32(_mm512_setzero_si512(), dot_u8s8(_mm512_set1_epi8(offset), act[p]));
            da[p] = scales2(avx2::h2f(y[2 * p].d), half ? 0.0f : avx2::h2f(y[2 * p + 1].d));
            if constexpr (with_min) sa[p] = scales2(avx2::h2f(y[2 * p].s) / 8, half ? 0.0f : avx2::h2f(y[2 * p + 1].s) / 8);
        }
        RowPrefetch pf(w, ws, r0, r1, ahead_end, prefetch_pays(wt));
        for (int64_t r = r0; r < r1; ++r) {
            pf.ahead(r);
            const Block* x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * ws);
            // Block pair p of the row into an accumulator (two accumulators
            // alternate, so that consecutive pairs do not wait on each other).
            auto pair = [&](int64_t p, __m512 acc, auto half) {
                const PairReader<Block, decltype(half)::value> pr(x + 2 * p);
                const __m512i i = _mm512_dpbusd_epi32(start[p], pr.codes(), act[p]);
                const __m512 d = _mm512_mul_ps(da[p], pr.scales());
                acc = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), i), acc);
                if constexpr (with_min) acc = _mm512_fmadd_ps(pr.mins(), sa[p], acc);
                return acc;
            };
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            int64_t p = 0;
            for (; p + 2 <= pairs; p += 2) {
                acc0 = pair(p, acc0, std::false_type());
                acc1 = pair(p + 1, acc1, std::false_type());
            }
            if (p < pairs) acc0 = pair(p, acc0, std::false_type());
            if (odd) acc1 = pair(pairs, acc1, std::true_type());
            out[r] = hsum(_mm512_add_ps(acc0, acc1));
        }
        return;
    }
#endif
    matmul_rows_generic(dot, w, ws, n, r0, r1, a, 0, 1, out, 0, prefetch_pays(wt), ahead_end);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (one stream through memory reads at full
    // bandwidth; four interleaved rows do not). Several: four rows share each
    // activation load.
    if (m == 1 && (wt == Type::Q4_0 || wt == Type::Q5_0 || wt == Type::Q8_0 || wt == Type::Q4_1 || wt == Type::Q5_1)) {
        const uint8_t* w = static_cast<const uint8_t*>(W);
        if (wt == Type::Q4_0) matvec_q_pairs<BlockQ4_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q5_0) matvec_q_pairs<BlockQ5_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q4_1) matvec_q_pairs<BlockQ4_1>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q5_1) matvec_q_pairs<BlockQ5_1>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else matvec_q_pairs<BlockQ8_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        return;
    }
    if (m == 1 && (wt == Type::Q4_K || wt == Type::Q5_K)) {
        const uint8_t* w = static_cast<const uint8_t*>(W);
        const BlockQ8_K* a = static_cast<const BlockQ8_K*>(A);
        if (wt == Type::Q4_K) matvec_q45_k<false, BlockQ4_K>(n, w, w_row_bytes, r0, r1, a, Y);
        else matvec_q45_k<true, BlockQ5_K>(n, w, w_row_bytes, r0, r1, a, Y);
        return;
    }
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

}  // namespace avx512
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_AVX512
