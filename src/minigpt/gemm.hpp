// gemm: the matrix-matrix product of prompt processing (several activation rows
// at once) on AVX-512, with packed operands and register tiles.
//
// Y[j][r] = dot(W row r, A row j) for 8 weight rows x 16 activation rows at a
// time. The 16 activation rows are packed once per product into a panel where
// each 64-byte line holds the same 4 bytes (one 32-bit group) of all 16 rows; a
// weight group of 4 bytes is broadcast against that line, so one instruction
// does 16 rows x 4 products and nothing is reduced horizontally until the end.
//
//  - Integer types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K): the
//    activations are already 8-bit blocks (Q8_0/Q8_1/Q8_K); the panel stores
//    them as unsigned bytes (a + 128) with each 32-block's scale and scaled sum.
//    Eight weight rows are unpacked per 32-block into signed bytes with a float
//    scale, a float "min" coefficient and the correction -128 * sum(q), so that
//    a block's integer dot product is exact: sum((a + 128) q) - 128 sum(q).
//    Result per block: d_w d_a dot + min_w * (d_a sum(a)).
//  - BF16: pairs of bf16 with the AVX512-BF16 pair dot product.
//  - F32 / F16: float FMA; F16 weights are widened into the tile (exactly).
// Every result equals the row dot product of kernels_scalar up to the order of
// the float additions (tests/test_kernels.cpp compares them).
#pragma once
#include "kernels.hpp"

MINIGPT_NS_BEGIN
namespace detail {

enum class GemmKind { none, i8, bf16, f32 };

constexpr int kGemmRows = 8;   // weight rows per register tile
constexpr int kGemmCols = 16;  // activation rows per panel
constexpr int kGemmMinRows = 6;  // fewer activation rows use matmul_rows

// The packed product used for weight type wt, or none (use matmul_rows).
inline GemmKind gemm_kind(Type wt, int64_t n) {
#if defined(MINIGPT_AVX512)
    if (n <= 0 || n % 32 != 0) return GemmKind::none;
    switch (wt) {
#if defined(__AVX512VNNI__)
        case Type::Q8_0: case Type::Q4_0: case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::IQ4_NL:
            return GemmKind::i8;
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K:
            return n % QK_K == 0 ? GemmKind::i8 : GemmKind::none;
#endif
#if defined(__AVX512BF16__)
        case Type::BF16: return GemmKind::bf16;
#endif
        case Type::F32: case Type::F16: return GemmKind::f32;
        default: return GemmKind::none;
    }
#else
    (void)wt;
    (void)n;
    return GemmKind::none;
#endif
}

// Integer types share one scale per block of 32 values, or of 16 for the
// K-quants with 16-value sub-blocks (Q2_K, Q3_K, Q6_K).
inline int gemm_block(Type wt) { return wt == Type::Q2_K || wt == Type::Q3_K || wt == Type::Q6_K ? 16 : 32; }
// Int8 panel, per block of B values: B/4 lines of [16 rows][4 bytes], then
// da[16] (activation scales) and sa[16] (scale times the block's sum).
inline size_t panel_block_i8(int B) { return static_cast<size_t>(B / 4) * 64 + 64 + 64; }
// Int8 weight tile, per block: q[8 rows][B], corr[8] (-128 sum q), scale[8], min[8].
inline size_t tile_block_i8(int B) { return static_cast<size_t>(kGemmRows) * B + 3 * 32; }

// Bytes of the packed activations of m rows of n elements.
inline size_t gemm_panel_bytes(Type wt, int64_t n, int64_t m) {
    const size_t panels = static_cast<size_t>((m + kGemmCols - 1) / kGemmCols);
    const int B = gemm_block(wt);
    switch (gemm_kind(wt, n)) {
        case GemmKind::i8: return panels * static_cast<size_t>(n / B) * panel_block_i8(B);
        case GemmKind::bf16: return panels * static_cast<size_t>(n / 2) * 64;
        case GemmKind::f32: return panels * static_cast<size_t>(n) * 64;
        default: return 0;
    }
}

// Bytes of one thread's weight tile for rows of n elements.
inline size_t gemm_tile_bytes(Type wt, int64_t n) {
    const int B = gemm_block(wt);
    switch (gemm_kind(wt, n)) {
        case GemmKind::i8: return static_cast<size_t>(n / B) * tile_block_i8(B);
        case GemmKind::bf16: return static_cast<size_t>(n) * 2;  // a zero row for missing rows
        case GemmKind::f32: return static_cast<size_t>(n) * kGemmRows * 4;
        default: return 0;
    }
}

// ---------------------------------------------------------------------------
// Packing the activations: panels [p0, p1) of A (m rows in vec_dot_type(wt)
// format, a_row_bytes apart). Rows past m are zero.
// ---------------------------------------------------------------------------
inline void gemm_pack_panels(Type wt, const void* A, size_t a_row_bytes, int64_t n, int64_t m, int64_t p0, int64_t p1,
                             uint8_t* P) {
    const GemmKind kind = gemm_kind(wt, n);
    const Type at = vec_dot_type(wt);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    const size_t panel_bytes = gemm_panel_bytes(wt, n, kGemmCols);
    const int B = gemm_block(wt), G = B / 4;
    const size_t pbb = panel_block_i8(B);
    for (int64_t p = p0; p < p1; ++p) {
        uint8_t* dst = P + static_cast<size_t>(p) * panel_bytes;
        for (int c = 0; c < kGemmCols; ++c) {
            const int64_t j = p * kGemmCols + c;
            const uint8_t* row = j < m ? act + static_cast<size_t>(j) * a_row_bytes : nullptr;
            if (kind == GemmKind::i8) {
                const int64_t nb = n / B;
                for (int64_t b = 0; b < nb; ++b) {
                    uint8_t* pb = dst + static_cast<size_t>(b) * pbb;
                    float* da = reinterpret_cast<float*>(pb + 64 * G);
                    float* sa = reinterpret_cast<float*>(pb + 64 * G + 64);
                    const int8_t* qs = nullptr;
                    float d = 0.0f, s = 0.0f;
                    if (row) {
                        if (at == Type::Q8_0) {
                            const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
                            qs = x->qs;
                            d = fp16_to_fp32(x->d);
                        } else if (at == Type::Q8_1) {
                            const BlockQ8_1* x = reinterpret_cast<const BlockQ8_1*>(row) + b;
                            qs = x->qs;
                            d = fp16_to_fp32(x->d);
                            s = fp16_to_fp32(x->s);
                        } else if (B == 32) {  // Q8_K: 8 blocks of 32 per super-block
                            const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(row) + b / 8;
                            const int sub = static_cast<int>(b % 8);
                            qs = x->qs + 32 * sub;
                            d = x->d;
                            s = d * static_cast<float>(x->bsums[2 * sub] + x->bsums[2 * sub + 1]);
                        } else {  // Q8_K: 16 blocks of 16
                            const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(row) + b / 16;
                            const int sub = static_cast<int>(b % 16);
                            qs = x->qs + 16 * sub;
                            d = x->d;
                            s = d * static_cast<float>(x->bsums[sub]);
                        }
                    }
                    for (int g = 0; g < G; ++g) {
                        uint32_t v = 0x80808080u;
                        if (qs) {
                            std::memcpy(&v, qs + 4 * g, 4);
                            v ^= 0x80808080u;
                        }
                        std::memcpy(pb + 64 * g + 4 * c, &v, 4);
                    }
                    da[c] = d;
                    sa[c] = s;
                }
            } else if (kind == GemmKind::bf16) {
                for (int64_t k = 0; k < n / 2; ++k) {
                    uint32_t v = 0;
                    if (row) std::memcpy(&v, row + 4 * k, 4);
                    std::memcpy(dst + 64 * k + 4 * c, &v, 4);
                }
            } else if (kind == GemmKind::f32) {
                float* out = reinterpret_cast<float*>(dst);
                if (!row) {
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = 0.0f;
                } else if (at == Type::F16) {
                    // Widened a slice at a time with the vector conversion of dequantize_row.
                    float tmp[256];
                    for (int64_t k0 = 0; k0 < n; k0 += 256) {
                        const int64_t len = std::min<int64_t>(256, n - k0);
                        dequantize_row(Type::F16, row + 2 * k0, tmp, len);
                        for (int64_t k = 0; k < len; ++k) out[(k0 + k) * kGemmCols + c] = tmp[k];
                    }
                } else {
                    const float* x = reinterpret_cast<const float*>(row);
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = x[k];
                }
            }
        }
    }
}

// Sub-block b % 8 of Q4_K / Q5_K super-block b / 8: its 32 nibbles are the low
// (shift 0) or high (shift 4) halves of qs[0..31]; Q5_K's fifth bit is bit
// `sub` of qh[l]; value = scale * q + min.
struct KSubBlock {
    const uint8_t* qs;
    const uint8_t* qh;  // nullptr for Q4_K
    int sub, shift;
    float scale, min;
};
inline KSubBlock k_sub_block(Type wt, const uint8_t* row, int64_t b) {
    KSubBlock k;
    k.sub = static_cast<int>(b % 8);
    k.shift = (k.sub & 1) ? 4 : 0;
    const uint8_t* scales;
    uint16_t d, dmin;
    if (wt == Type::Q4_K) {
        const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(row) + b / 8;
        scales = x->scales, k.qs = x->qs, d = x->d, dmin = x->dmin, k.qh = nullptr;
    } else {
        const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(row) + b / 8;
        scales = x->scales, k.qs = x->qs, d = x->d, dmin = x->dmin, k.qh = x->qh;
    }
    k.qs += 32 * (k.sub / 2);
    int sc, m;
    scale_min_k4(k.sub, scales, sc, m);
    k.scale = fp16_to_fp32(d) * static_cast<float>(sc);
    k.min = -fp16_to_fp32(dmin) * static_cast<float>(m);
    return k;
}

// One 16-block (sub-block b % 16 of super-block b / 16) of Q2_K, Q3_K or Q6_K
// as signed bytes, a scale and a min coefficient: value = scale * q + min.
inline void unpack_block16(Type wt, const uint8_t* row, int64_t b, int8_t* q, float& scale, float& mn) {
    const int sub = static_cast<int>(b % 16);
    // Element e = 16 * sub + i of the super-block sits in 32-lane group (e % 128) / 32
    // of half e / 128, at lane e % 32.
    const int h = sub / 8, g = (sub % 8) / 2, l0 = 16 * (sub % 2);
    mn = 0.0f;
    if (wt == Type::Q6_K) {
        const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(row) + b / 16;
        const uint8_t* ql = x->ql + 64 * h + 32 * (g & 1) + l0;
        const uint8_t* qh = x->qh + 32 * h + l0;
        for (int i = 0; i < 16; ++i)
            q[i] = static_cast<int8_t>((((ql[i] >> (4 * (g / 2))) & 15) | (((qh[i] >> (2 * g)) & 3) << 4)) - 32);
        scale = fp16_to_fp32(x->d) * static_cast<float>(x->scales[sub]);
    } else if (wt == Type::Q3_K) {
        const BlockQ3_K* x = reinterpret_cast<const BlockQ3_K*>(row) + b / 16;
        const uint8_t* qs = x->qs + 32 * h + l0;
        const uint8_t* hm = x->hmask + l0;
        for (int i = 0; i < 16; ++i)
            q[i] = static_cast<int8_t>(((qs[i] >> (2 * g)) & 3) - (((hm[i] >> (4 * h + g)) & 1) ? 0 : 4));
        int8_t sc[16];
        scales_q3_k(x->scales, sc);
        scale = fp16_to_fp32(x->d) * static_cast<float>(sc[sub]);
    } else {  // Q2_K
        const BlockQ2_K* x = reinterpret_cast<const BlockQ2_K*>(row) + b / 16;
        const uint8_t* qs = x->qs + 32 * h + l0;
        for (int i = 0; i < 16; ++i) q[i] = static_cast<int8_t>((qs[i] >> (2 * g)) & 3);
        scale = fp16_to_fp32(x->d) * static_cast<float>(x->scales[sub] & 15);
        mn = -fp16_to_fp32(x->dmin) * static_cast<float>(x->scales[sub] >> 4);
    }
}

#if defined(MINIGPT_AVX512)
#if defined(_MSC_VER)
#define MINIGPT_GEMM_INLINE __forceinline
#else
#define MINIGPT_GEMM_INLINE inline __attribute__((always_inline))
#endif
namespace avx512 {

// One 32-block of a weight row as 32 signed bytes, a scale and a min
// coefficient: value = scale * q + min.
MINIGPT_GEMM_INLINE __m256i unpack32(Type wt, const uint8_t* row, int64_t b, float& sc, float& mn) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    mn = 0.0f;
    switch (wt) {
        case Type::Q8_0: {
            const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
            sc = avx2::h2f(x->d);
            return load_q8(x->qs);
        }
        case Type::Q4_0: {
            const BlockQ4_0* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
            sc = avx2::h2f(x->d);
            return _mm256_sub_epi8(nibbles_q4_0(x->qs), _mm256_set1_epi8(8));
        }
        case Type::Q4_1: {
            const BlockQ4_1* x = reinterpret_cast<const BlockQ4_1*>(row) + b;
            sc = avx2::h2f(x->d), mn = avx2::h2f(x->m);
            return nibbles_q4_0(x->qs);
        }
        case Type::Q5_0: {
            const BlockQ5_0* x = reinterpret_cast<const BlockQ5_0*>(row) + b;
            sc = avx2::h2f(x->d);
            const __m256i hi = _mm256_maskz_mov_epi8(static_cast<__mmask32>(load_u32(x->qh)), _mm256_set1_epi8(0x10));
            return _mm256_sub_epi8(_mm256_or_si256(nibbles_q4_0(x->qs), hi), _mm256_set1_epi8(16));
        }
        case Type::Q5_1: {
            const BlockQ5_1* x = reinterpret_cast<const BlockQ5_1*>(row) + b;
            sc = avx2::h2f(x->d), mn = avx2::h2f(x->m);
            const __m256i hi = _mm256_maskz_mov_epi8(static_cast<__mmask32>(load_u32(x->qh)), _mm256_set1_epi8(0x10));
            return _mm256_or_si256(nibbles_q4_0(x->qs), hi);
        }
        case Type::IQ4_NL: {
            const BlockIQ4_NL* x = reinterpret_cast<const BlockIQ4_NL*>(row) + b;
            sc = avx2::h2f(x->d);
            const __m256i table = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
            return _mm256_shuffle_epi8(table, nibbles_q4_0(x->qs));
        }
        case Type::Q4_K: case Type::Q5_K: {
            const KSubBlock k = k_sub_block(wt, row, b);
            sc = k.scale, mn = k.min;
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs));
            __m256i q = _mm256_and_si256(k.shift ? _mm256_srli_epi16(v, 4) : v, m4);
            if (k.qh) {
                const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh));
                const __mmask32 bit = _mm256_test_epi8_mask(h, _mm256_set1_epi8(static_cast<char>(1u << k.sub)));
                q = _mm256_or_si256(q, _mm256_maskz_mov_epi8(bit, _mm256_set1_epi8(0x10)));
            }
            return q;
        }
        default:  // not a 32-block type (gemm_kind never gives one here)
            sc = 0.0f;
            return _mm256_setzero_si256();
    }
}

// -128 * sum(q) of 16 or 32 signed bytes, through unsigned bytes: sum(q + 128) - 128 n.
inline int32_t neg128_sum(__m256i q) {
    const __m256i s4 = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
    const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    return static_cast<int32_t>(-128 * (_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1) - 32 * 128));
}

// Q6_K 16-block with SIMD (unpack_block16 is the reference).
inline __m128i unpack16_q6_k(const uint8_t* row, int64_t b, float& sc) {
    const int sub = static_cast<int>(b % 16), h = sub / 8, g = (sub % 8) / 2, l0 = 16 * (sub % 2);
    const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(row) + b / 16;
    const __m128i ql = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->ql + 64 * h + 32 * (g & 1) + l0));
    const __m128i qh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qh + 32 * h + l0));
    const __m128i lo = _mm_and_si128(_mm_srl_epi16(ql, _mm_cvtsi32_si128(4 * (g / 2))), _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), _mm_set1_epi8(3));
    sc = avx2::h2f(x->d) * static_cast<float>(x->scales[sub]);
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

// Eight weight rows (rows past `rows` are zero) unpacked into the int8 tile;
// instantiated per type so that the unpacking is inlined without a switch.
template <Type wt>
inline void gemm_tile_i8_t(const uint8_t* W, size_t w_row_bytes, int64_t n, int rows, uint8_t* T) {
    const int B = gemm_block(wt);
    const int64_t nb = n / B;
    const size_t tbb = tile_block_i8(B);
    for (int64_t b = 0; b < nb; ++b) {
        uint8_t* tb = T + static_cast<size_t>(b) * tbb;
        int32_t* corr = reinterpret_cast<int32_t*>(tb + kGemmRows * B);
        float* sc = reinterpret_cast<float*>(tb + kGemmRows * B + 32);
        float* mn = reinterpret_cast<float*>(tb + kGemmRows * B + 64);
        for (int r = 0; r < kGemmRows; ++r) {
            const uint8_t* row = W + static_cast<size_t>(r) * w_row_bytes;
            sc[r] = 0.0f, mn[r] = 0.0f;
            if (B == 32) {
                __m256i q = _mm256_setzero_si256();
                if (r < rows) q = unpack32(wt, row, b, sc[r], mn[r]);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(tb + 32 * r), q);
                corr[r] = neg128_sum(q);
            } else {
                __m128i q = _mm_setzero_si128();
                if (r < rows && wt == Type::Q6_K) {
                    q = unpack16_q6_k(row, b, sc[r]);
                } else if (r < rows) {
                    alignas(16) int8_t t[16];
                    unpack_block16(wt, row, b, t, sc[r], mn[r]);
                    q = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
                }
                _mm_storeu_si128(reinterpret_cast<__m128i*>(tb + 16 * r), q);
                corr[r] = neg128_sum(_mm256_zextsi128_si256(q));  // the zero upper half adds nothing
            }
        }
    }
}

inline void gemm_tile_i8(Type wt, const uint8_t* W, size_t w_row_bytes, int64_t n, int rows, uint8_t* T) {
    switch (wt) {
        case Type::Q8_0: gemm_tile_i8_t<Type::Q8_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_0: gemm_tile_i8_t<Type::Q4_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_1: gemm_tile_i8_t<Type::Q4_1>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_0: gemm_tile_i8_t<Type::Q5_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_1: gemm_tile_i8_t<Type::Q5_1>(W, w_row_bytes, n, rows, T); break;
        case Type::IQ4_NL: gemm_tile_i8_t<Type::IQ4_NL>(W, w_row_bytes, n, rows, T); break;
        case Type::Q2_K: gemm_tile_i8_t<Type::Q2_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q3_K: gemm_tile_i8_t<Type::Q3_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_K: gemm_tile_i8_t<Type::Q4_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_K: gemm_tile_i8_t<Type::Q5_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q6_K: gemm_tile_i8_t<Type::Q6_K>(W, w_row_bytes, n, rows, T); break;
        default: break;
    }
}

inline int32_t load_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// The 8 x 16 results of a tile into Y (rows r < rows, columns c < cols):
// f[r] holds row r's 16 columns, and Y takes each column's 8 rows in a run,
// so the tile is transposed in registers (within each 128-bit lane, then
// across lanes) and stored 8 floats at a time. (Stored one float at a time,
// the tile's 128 values took a fifth of gemm_rows' time in prompt processing.)
inline void gemm_store(const __m512* f, int rows, int cols, float* Y, int64_t ldy) {
    static_assert(kGemmRows == 8 && kGemmCols == 16, "the transpose is for 8 x 16 tiles");
    // t: rows 2i and 2i + 1 interleaved; u[k], u[k + 4]: in lane L, column
    // 4L + k of rows 0..3 and 4..7.
    const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
    __m512 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_maskz_unpacklo_ps(all, f[2 * i], f[2 * i + 1]);
        t[2 * i + 1] = _mm512_maskz_unpackhi_ps(all, f[2 * i], f[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        const __m512* th = t + 4 * h;
        u[4 * h] = _mm512_maskz_shuffle_ps(all, th[0], th[2], 0x44);
        u[4 * h + 1] = _mm512_maskz_shuffle_ps(all, th[0], th[2], 0xEE);
        u[4 * h + 2] = _mm512_maskz_shuffle_ps(all, th[1], th[3], 0x44);
        u[4 * h + 3] = _mm512_maskz_shuffle_ps(all, th[1], th[3], 0xEE);
    }
    // Lanes 0 and 1 (2 and 3) of u[k] and u[k + 4]: columns k and 4 + k (8 + k
    // and 12 + k), rows 0..7 each.
    const __m512i lanes01 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i lanes23 = _mm512_add_epi32(lanes01, _mm512_set1_epi32(8));
    const __mmask8 m = static_cast<__mmask8>(rows >= 8 ? 0xFF : (1u << rows) - 1);
    auto put = [&](int c, __m256 v) {
        if (c < cols) _mm256_mask_storeu_ps(Y + c * ldy, m, v);
    };
    for (int k = 0; k < 4; ++k) {
        const __m512 a = _mm512_maskz_permutex2var_ps(all, u[k], lanes01, u[k + 4]);
        const __m512 b = _mm512_maskz_permutex2var_ps(all, u[k], lanes23, u[k + 4]);
        put(k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), a, 0));
        put(4 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), a, 1));
        put(8 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), b, 0));
        put(12 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), b, 1));
    }
}

template <int B, bool Min>
inline void gemm_kernel_i8(const uint8_t* T, const uint8_t* Pn, int64_t nb, __m512* out) {
    constexpr int G = B / 4;
    constexpr size_t tbb = static_cast<size_t>(kGemmRows) * B + 96, pbb = static_cast<size_t>(G) * 64 + 128;
    __m512 f[kGemmRows];  // local, so that the accumulators stay in registers
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = T + static_cast<size_t>(b) * tbb;
        const uint8_t* pb = Pn + static_cast<size_t>(b) * pbb;
        __m512i acc[kGemmRows];
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r) acc[r] = _mm512_set1_epi32(load_i32(tb + kGemmRows * B + 4 * r));
        MINIGPT_UNROLL(8)
        for (int g = 0; g < G; ++g) {
            const __m512i a = _mm512_load_si512(pb + 64 * g);
            MINIGPT_UNROLL(8)
            for (int r = 0; r < kGemmRows; ++r)
                acc[r] = _mm512_dpbusd_epi32(acc[r], a, _mm512_set1_epi32(load_i32(tb + B * r + 4 * g)));
        }
        const __m512 da = _mm512_load_ps(reinterpret_cast<const float*>(pb + 64 * G));
        const float* sc = reinterpret_cast<const float*>(tb + kGemmRows * B + 32);
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r)
            f[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), acc[r]), _mm512_mul_ps(da, _mm512_set1_ps(sc[r])), f[r]);
        if constexpr (Min) {
            const __m512 sa = _mm512_load_ps(reinterpret_cast<const float*>(pb + 64 * G + 64));
            const float* mn = reinterpret_cast<const float*>(tb + kGemmRows * B + 64);
            MINIGPT_UNROLL(8)
            for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_fmadd_ps(sa, _mm512_set1_ps(mn[r]), f[r]);
        }
    }
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r) out[r] = f[r];
}

// The float kernels: 8 weight rows against one or two panels (Panels == 2:
// 32 activation rows share each weight broadcast, and the 16 accumulators
// hide the FMA latency that 8 leave exposed). Each step k reads 64 bytes of
// every panel: one value of 16 rows (F32) or a pair of bf16 values (BF16).
// Step gives the weight broadcast of row r at step k and the product.
struct GemmStepF32 {
    using Row = const float*;
    using Vec = __m512;
    static Vec load(const uint8_t* p) { return _mm512_load_ps(reinterpret_cast<const float*>(p)); }
    static Vec weight(Row row, int64_t k) { return _mm512_set1_ps(row[k]); }
    static __m512 madd(__m512 acc, Vec a, Vec w) { return _mm512_fmadd_ps(a, w, acc); }
};
#if defined(__AVX512BF16__)
struct GemmStepBF16 {
    using Row = const uint8_t*;
    using Vec = __m512bh;
    static Vec load(const uint8_t* p) { return (__m512bh)_mm512_load_si512(p); }
    static Vec weight(Row row, int64_t k) { return (__m512bh)_mm512_set1_epi32(load_i32(row + 4 * k)); }
    static __m512 madd(__m512 acc, Vec a, Vec w) { return _mm512_dpbf16_ps(acc, a, w); }
};
#endif

template <int Panels, class Step>
inline void gemm_kernel_float(const typename Step::Row* rows, const uint8_t* Pn, size_t panel_bytes, int64_t steps,
                              __m512* out) {
    __m512 f[Panels][kGemmRows];  // local, so that the accumulators stay in registers
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r)
        for (int q = 0; q < Panels; ++q) f[q][r] = _mm512_setzero_ps();
    const uint8_t* P1 = Pn + (Panels > 1 ? panel_bytes : 0);
    for (int64_t k = 0; k < steps; ++k) {
        const typename Step::Vec a0 = Step::load(Pn + 64 * k);
        const typename Step::Vec a1 = Step::load(P1 + 64 * k);
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r) {
            const typename Step::Vec wv = Step::weight(rows[r], k);
            f[0][r] = Step::madd(f[0][r], a0, wv);
            if (Panels > 1) f[Panels - 1][r] = Step::madd(f[Panels - 1][r], a1, wv);
        }
    }
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r)
        for (int q = 0; q < Panels; ++q) out[q * kGemmRows + r] = f[q][r];
}

// Weight rows [r0, r1) against all m packed activation rows.
inline void gemm_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1, const uint8_t* P,
                      int64_t m, float* Y, int64_t ldy, uint8_t* tile) {
    const GemmKind kind = gemm_kind(wt, n);
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t n_panels = (m + kGemmCols - 1) / kGemmCols;
    const size_t panel_bytes = gemm_panel_bytes(wt, n, kGemmCols);
    const bool has_min = wt == Type::Q4_1 || wt == Type::Q5_1 || wt == Type::Q2_K || wt == Type::Q4_K || wt == Type::Q5_K;
    __m512 f[2 * kGemmRows];
    for (int64_t rt = r0; rt < r1; rt += kGemmRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kGemmRows, r1 - rt));
        const uint8_t* wr = w + static_cast<size_t>(rt) * w_row_bytes;
        const uint8_t* brow[kGemmRows];  // (read only by the BF16 kernel)
        const float* frow[kGemmRows];
#if !defined(__AVX512BF16__)
        (void)brow;
#endif
#if !defined(__AVX512VNNI__)
        (void)has_min;
#endif
        // The next tile's rows are requested now and arrive while this one's
        // panels are computed. (Unpacking a tile waited on its rows: 14% of
        // smollm2-135m Q8_0 prompt processing. Requested: pp128 1.054x with
        // 1 thread, 1.042x with 2; Q4_K 1.057x, F16 1.025x.)
        if (rt + kGemmRows < r1)
            request_lines(wr + kGemmRows * w_row_bytes, static_cast<size_t>(std::min<int64_t>(kGemmRows, r1 - rt - kGemmRows)) * w_row_bytes);
        if (kind == GemmKind::i8) {
            gemm_tile_i8(wt, wr, w_row_bytes, n, rows, tile);
        } else if (kind == GemmKind::bf16) {
            std::memset(tile, 0, static_cast<size_t>(n) * 2);
            for (int r = 0; r < kGemmRows; ++r) brow[r] = r < rows ? wr + static_cast<size_t>(r) * w_row_bytes : tile;
        } else {
            float* t = reinterpret_cast<float*>(tile);
            for (int r = 0; r < kGemmRows; ++r) {
                float* dst = t + static_cast<size_t>(r) * n;
                if (r >= rows) {
                    std::memset(dst, 0, static_cast<size_t>(n) * 4);
                } else if (wt == Type::F16) {
                    dequantize_row(Type::F16, wr + static_cast<size_t>(r) * w_row_bytes, dst, n);
                } else {
                    std::memcpy(dst, wr + static_cast<size_t>(r) * w_row_bytes, static_cast<size_t>(n) * 4);
                }
                frow[r] = dst;
            }
        }
        // The tile's results against panel p.
        auto store = [&](const __m512* acc, int64_t p) {
            const int cols = static_cast<int>(std::min<int64_t>(kGemmCols, m - p * kGemmCols));
            gemm_store(acc, rows, cols, Y + p * kGemmCols * ldy + rt, ldy);
        };
        int64_t p = 0;
        if (kind == GemmKind::f32 || kind == GemmKind::bf16) {  // pairs of panels
            for (; p + 2 <= n_panels; p += 2) {
                const uint8_t* Pn = P + static_cast<size_t>(p) * panel_bytes;
#if defined(__AVX512BF16__)
                if (kind == GemmKind::bf16) gemm_kernel_float<2, GemmStepBF16>(brow, Pn, panel_bytes, n / 2, f);
                else
#endif
                    gemm_kernel_float<2, GemmStepF32>(frow, Pn, panel_bytes, n, f);
                store(f, p);
                store(f + kGemmRows, p + 1);
            }
        }
        for (; p < n_panels; ++p) {
            const uint8_t* Pn = P + static_cast<size_t>(p) * panel_bytes;
            if (kind == GemmKind::i8) {
#if defined(__AVX512VNNI__)  // (gemm_kind gives i8 only there: the kernel is vpdpbusd)
                if (gemm_block(wt) == 16) {
                    if (has_min) gemm_kernel_i8<16, true>(tile, Pn, n / 16, f);
                    else gemm_kernel_i8<16, false>(tile, Pn, n / 16, f);
                } else {
                    if (has_min) gemm_kernel_i8<32, true>(tile, Pn, n / 32, f);
                    else gemm_kernel_i8<32, false>(tile, Pn, n / 32, f);
                }
#endif
            } else if (kind == GemmKind::bf16) {
#if defined(__AVX512BF16__)
                gemm_kernel_float<1, GemmStepBF16>(brow, Pn, panel_bytes, n / 2, f);
#endif
            } else {
                gemm_kernel_float<1, GemmStepF32>(frow, Pn, panel_bytes, n, f);
            }
            store(f, p);
        }
    }
}

}  // namespace avx512
#endif  // MINIGPT_AVX512

// For every weight row r in [r0, r1) and activation row j < m:
//   Y[j*ldy + r] = dot(W row r, A row j)
// with A packed by gemm_pack_panels; `tile` holds gemm_tile_bytes. Only for
// gemm_kind(wt, n) != none.
inline void gemm_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1, const uint8_t* P,
                      int64_t m, float* Y, int64_t ldy, uint8_t* tile) {
#if defined(MINIGPT_AVX512)
    avx512::gemm_rows(wt, W, w_row_bytes, n, r0, r1, P, m, Y, ldy, tile);
#else
    (void)wt, (void)W, (void)w_row_bytes, (void)n, (void)r0, (void)r1, (void)P, (void)m, (void)Y, (void)ldy, (void)tile;
#endif
}

}  // namespace detail
MINIGPT_NS_END
