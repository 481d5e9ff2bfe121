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
        case Type::Q4_K: case Type::Q5_K: return n % QK_K == 0 ? GemmKind::i8 : GemmKind::none;
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

// Int8 panel: per 32-block, 8 lines of [16 rows][4 bytes], then da[16], sa[16].
constexpr size_t kPanelBlockI8 = 8 * 64 + 64 + 64;
// Int8 weight tile: per 32-block, q[8 rows][32], corr[8], scale[8], min[8].
constexpr size_t kTileBlockI8 = 8 * 32 + 3 * 32;

// Bytes of the packed activations of m rows of n elements.
inline size_t gemm_panel_bytes(GemmKind k, int64_t n, int64_t m) {
    const size_t panels = static_cast<size_t>((m + kGemmCols - 1) / kGemmCols);
    switch (k) {
        case GemmKind::i8: return panels * static_cast<size_t>(n / 32) * kPanelBlockI8;
        case GemmKind::bf16: return panels * static_cast<size_t>(n / 2) * 64;
        case GemmKind::f32: return panels * static_cast<size_t>(n) * 64;
        default: return 0;
    }
}

// Bytes of one thread's weight tile for rows of n elements.
inline size_t gemm_tile_bytes(GemmKind k, int64_t n) {
    switch (k) {
        case GemmKind::i8: return static_cast<size_t>(n / 32) * kTileBlockI8;
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
    const size_t panel_bytes = gemm_panel_bytes(kind, n, kGemmCols);
    for (int64_t p = p0; p < p1; ++p) {
        uint8_t* dst = P + static_cast<size_t>(p) * panel_bytes;
        for (int c = 0; c < kGemmCols; ++c) {
            const int64_t j = p * kGemmCols + c;
            const uint8_t* row = j < m ? act + static_cast<size_t>(j) * a_row_bytes : nullptr;
            if (kind == GemmKind::i8) {
                const int64_t nb = n / 32;
                for (int64_t b = 0; b < nb; ++b) {
                    uint8_t* pb = dst + static_cast<size_t>(b) * kPanelBlockI8;
                    float* da = reinterpret_cast<float*>(pb + 512);
                    float* sa = reinterpret_cast<float*>(pb + 576);
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
                        } else {  // Q8_K: 8 blocks of 32 per super-block
                            const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(row) + b / 8;
                            const int sub = static_cast<int>(b % 8);
                            qs = x->qs + 32 * sub;
                            d = x->d;
                            s = d * static_cast<float>(x->bsums[2 * sub] + x->bsums[2 * sub + 1]);
                        }
                    }
                    for (int g = 0; g < 8; ++g) {
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
                    const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = fp16_to_fp32(h[k]);
                } else {
                    const float* x = reinterpret_cast<const float*>(row);
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = x[k];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Unpacking one 32-block of a weight row into signed bytes, a scale and a min
// coefficient: value = scale * q + min.
// ---------------------------------------------------------------------------
inline void unpack_block32(Type wt, const uint8_t* row, int64_t b, int8_t* q, float& scale, float& mn) {
    mn = 0.0f;
    switch (wt) {
        case Type::Q8_0: {
            const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
            std::memcpy(q, x->qs, 32);
            scale = fp16_to_fp32(x->d);
            return;
        }
        case Type::Q4_0: {
            const BlockQ4_0* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
            for (int j = 0; j < 16; ++j) {
                q[j] = static_cast<int8_t>((x->qs[j] & 0x0F) - 8);
                q[j + 16] = static_cast<int8_t>((x->qs[j] >> 4) - 8);
            }
            scale = fp16_to_fp32(x->d);
            return;
        }
        case Type::Q4_1: {
            const BlockQ4_1* x = reinterpret_cast<const BlockQ4_1*>(row) + b;
            for (int j = 0; j < 16; ++j) {
                q[j] = static_cast<int8_t>(x->qs[j] & 0x0F);
                q[j + 16] = static_cast<int8_t>(x->qs[j] >> 4);
            }
            scale = fp16_to_fp32(x->d);
            mn = fp16_to_fp32(x->m);
            return;
        }
        case Type::Q5_0: case Type::Q5_1: {
            const bool q50 = wt == Type::Q5_0;
            const uint8_t* qs = q50 ? reinterpret_cast<const BlockQ5_0*>(row)[b].qs : reinterpret_cast<const BlockQ5_1*>(row)[b].qs;
            const uint32_t qh = q50 ? load_u32(reinterpret_cast<const BlockQ5_0*>(row)[b].qh)
                                    : load_u32(reinterpret_cast<const BlockQ5_1*>(row)[b].qh);
            const int off = q50 ? 16 : 0;
            for (int j = 0; j < 16; ++j) {
                q[j] = static_cast<int8_t>(((qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4)) - off);
                q[j + 16] = static_cast<int8_t>(((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4)) - off);
            }
            if (q50) {
                scale = fp16_to_fp32(reinterpret_cast<const BlockQ5_0*>(row)[b].d);
            } else {
                scale = fp16_to_fp32(reinterpret_cast<const BlockQ5_1*>(row)[b].d);
                mn = fp16_to_fp32(reinterpret_cast<const BlockQ5_1*>(row)[b].m);
            }
            return;
        }
        case Type::IQ4_NL: {
            const BlockIQ4_NL* x = reinterpret_cast<const BlockIQ4_NL*>(row) + b;
            for (int j = 0; j < 16; ++j) {
                q[j] = kIQ4NLValues[x->qs[j] & 0x0F];
                q[j + 16] = kIQ4NLValues[x->qs[j] >> 4];
            }
            scale = fp16_to_fp32(x->d);
            return;
        }
        case Type::Q4_K: case Type::Q5_K: {
            const int sub = static_cast<int>(b % 8);
            const uint8_t* scales;
            const uint8_t* qs;
            uint16_t d, dmin;
            const uint8_t* qh = nullptr;
            if (wt == Type::Q4_K) {
                const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(row) + b / 8;
                scales = x->scales, qs = x->qs, d = x->d, dmin = x->dmin;
            } else {
                const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(row) + b / 8;
                scales = x->scales, qs = x->qs, d = x->d, dmin = x->dmin, qh = x->qh;
            }
            int sc, m;
            scale_min_k4(sub, scales, sc, m);
            const uint8_t* src = qs + 32 * (sub / 2);
            const int shift = (sub & 1) ? 4 : 0;
            for (int l = 0; l < 32; ++l) {
                int v = (src[l] >> shift) & 0x0F;
                if (qh && (qh[l] >> sub) & 1) v += 16;
                q[l] = static_cast<int8_t>(v);
            }
            scale = fp16_to_fp32(d) * static_cast<float>(sc);
            mn = -fp16_to_fp32(dmin) * static_cast<float>(m);
            return;
        }
        default:
            std::memset(q, 0, 32);
            scale = 0.0f;
            return;
    }
}

#if defined(MINIGPT_AVX512)
// The register tiles need their loops over the 8 rows unrolled, or the
// accumulators live in memory.
#if defined(__clang__)
#define MINIGPT_UNROLL8 _Pragma("unroll 8")
#elif defined(__GNUC__)
#define MINIGPT_UNROLL8 _Pragma("GCC unroll 8")
#else
#define MINIGPT_UNROLL8
#endif
namespace avx512 {

// One 32-block of a weight row as 32 signed bytes, a scale and a min
// coefficient (value = scale * q + min): unpack_block32 with SIMD.
inline __m256i unpack32(Type wt, const uint8_t* row, int64_t b, float& sc, float& mn) {
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
            const int sub = static_cast<int>(b % 8);
            const uint8_t *scales, *qs, *qh = nullptr;
            uint16_t d, dmin;
            if (wt == Type::Q4_K) {
                const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(row) + b / 8;
                scales = x->scales, qs = x->qs, d = x->d, dmin = x->dmin;
            } else {
                const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(row) + b / 8;
                scales = x->scales, qs = x->qs, d = x->d, dmin = x->dmin, qh = x->qh;
            }
            int s6, m6;
            scale_min_k4(sub, scales, s6, m6);
            sc = avx2::h2f(d) * static_cast<float>(s6);
            mn = -avx2::h2f(dmin) * static_cast<float>(m6);
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (sub / 2)));
            __m256i q = _mm256_and_si256((sub & 1) ? _mm256_srli_epi16(v, 4) : v, m4);
            if (qh) {
                const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
                const __mmask32 bit = _mm256_test_epi8_mask(h, _mm256_set1_epi8(static_cast<char>(1u << sub)));
                q = _mm256_or_si256(q, _mm256_maskz_mov_epi8(bit, _mm256_set1_epi8(0x10)));
            }
            return q;
        }
        default: {
            alignas(32) int8_t q[32];
            unpack_block32(wt, row, b, q, sc, mn);
            return _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
        }
    }
}

// Eight weight rows (rows past `rows` are zero) unpacked into the int8 tile.
inline void gemm_tile_i8(Type wt, const uint8_t* W, size_t w_row_bytes, int64_t n, int rows, uint8_t* T) {
    const int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; ++b) {
        uint8_t* tb = T + static_cast<size_t>(b) * kTileBlockI8;
        int32_t* corr = reinterpret_cast<int32_t*>(tb + 256);
        float* sc = reinterpret_cast<float*>(tb + 288);
        float* mn = reinterpret_cast<float*>(tb + 320);
        for (int r = 0; r < kGemmRows; ++r) {
            __m256i q = _mm256_setzero_si256();
            sc[r] = 0.0f, mn[r] = 0.0f;
            if (r < rows) q = unpack32(wt, W + static_cast<size_t>(r) * w_row_bytes, b, sc[r], mn[r]);
            _mm256_store_si256(reinterpret_cast<__m256i*>(tb + 32 * r), q);
            // sum(q) through unsigned bytes: sum(q + 128) - 32 * 128.
            const __m256i s4 = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
            const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
            const int64_t sum = _mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1) - 32 * 128;
            corr[r] = static_cast<int32_t>(-128 * sum);
        }
    }
}

inline int32_t load_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// The 8 x 16 results of a tile into Y (rows r < rows, columns c < cols).
inline void gemm_store(const __m512* f, int rows, int cols, float* Y, int64_t ldy) {
    alignas(64) float t[kGemmRows][kGemmCols];
    for (int r = 0; r < kGemmRows; ++r) _mm512_store_ps(t[r], f[r]);
    for (int c = 0; c < cols; ++c)
        for (int r = 0; r < rows; ++r) Y[c * ldy + r] = t[r][c];
}

template <bool Min>
inline void gemm_kernel_i8(const uint8_t* T, const uint8_t* Pn, int64_t nb, __m512* out) {
    __m512 f[kGemmRows];  // local, so that the accumulators stay in registers
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = T + static_cast<size_t>(b) * kTileBlockI8;
        const uint8_t* pb = Pn + static_cast<size_t>(b) * kPanelBlockI8;
        __m512i acc[kGemmRows];
        MINIGPT_UNROLL8
        for (int r = 0; r < kGemmRows; ++r) acc[r] = _mm512_set1_epi32(load_i32(tb + 256 + 4 * r));
        MINIGPT_UNROLL8
        for (int g = 0; g < 8; ++g) {
            const __m512i a = _mm512_load_si512(pb + 64 * g);
            MINIGPT_UNROLL8
            for (int r = 0; r < kGemmRows; ++r)
                acc[r] = _mm512_dpbusd_epi32(acc[r], a, _mm512_set1_epi32(load_i32(tb + 32 * r + 4 * g)));
        }
        const __m512 da = _mm512_load_ps(reinterpret_cast<const float*>(pb + 512));
        const float* sc = reinterpret_cast<const float*>(tb + 288);
        MINIGPT_UNROLL8
        for (int r = 0; r < kGemmRows; ++r)
            f[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), acc[r]), _mm512_mul_ps(da, _mm512_set1_ps(sc[r])), f[r]);
        if constexpr (Min) {
            const __m512 sa = _mm512_load_ps(reinterpret_cast<const float*>(pb + 576));
            const float* mn = reinterpret_cast<const float*>(tb + 320);
            MINIGPT_UNROLL8
            for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_fmadd_ps(sa, _mm512_set1_ps(mn[r]), f[r]);
        }
    }
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) out[r] = f[r];
}

#if defined(__AVX512BF16__)
inline void gemm_kernel_bf16(const uint8_t* const* rows, const uint8_t* Pn, int64_t n, __m512* out) {
    __m512 f[kGemmRows];
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n / 2; ++k) {
        const __m512bh a = (__m512bh)_mm512_load_si512(Pn + 64 * k);
        MINIGPT_UNROLL8
        for (int r = 0; r < kGemmRows; ++r)
            f[r] = _mm512_dpbf16_ps(f[r], a, (__m512bh)_mm512_set1_epi32(load_i32(rows[r] + 4 * k)));
    }
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) out[r] = f[r];
}
#endif

inline void gemm_kernel_f32(const float* const* rows, const uint8_t* Pn, int64_t n, __m512* out) {
    __m512 f[kGemmRows];
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_setzero_ps();
    const float* a = reinterpret_cast<const float*>(Pn);
    for (int64_t k = 0; k < n; ++k) {
        const __m512 av = _mm512_load_ps(a + k * kGemmCols);
        MINIGPT_UNROLL8
        for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_fmadd_ps(av, _mm512_set1_ps(rows[r][k]), f[r]);
    }
    MINIGPT_UNROLL8
    for (int r = 0; r < kGemmRows; ++r) out[r] = f[r];
}

// Weight rows [r0, r1) against all m packed activation rows.
inline void gemm_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1, const uint8_t* P,
                      int64_t m, float* Y, int64_t ldy, uint8_t* tile) {
    const GemmKind kind = gemm_kind(wt, n);
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t n_panels = (m + kGemmCols - 1) / kGemmCols;
    const size_t panel_bytes = gemm_panel_bytes(kind, n, kGemmCols);
    const bool has_min = wt == Type::Q4_1 || wt == Type::Q5_1 || wt == Type::Q4_K || wt == Type::Q5_K;
    __m512 f[kGemmRows];
    for (int64_t rt = r0; rt < r1; rt += kGemmRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kGemmRows, r1 - rt));
        const uint8_t* wr = w + static_cast<size_t>(rt) * w_row_bytes;
        const uint8_t* brow[kGemmRows];
        const float* frow[kGemmRows];
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
        for (int64_t p = 0; p < n_panels; ++p) {
            const uint8_t* Pn = P + static_cast<size_t>(p) * panel_bytes;
            if (kind == GemmKind::i8) {
                if (has_min) gemm_kernel_i8<true>(tile, Pn, n / 32, f);
                else gemm_kernel_i8<false>(tile, Pn, n / 32, f);
            } else if (kind == GemmKind::bf16) {
#if defined(__AVX512BF16__)
                gemm_kernel_bf16(brow, Pn, n, f);
#endif
            } else {
                gemm_kernel_f32(frow, Pn, n, f);
            }
            const int cols = static_cast<int>(std::min<int64_t>(kGemmCols, m - p * kGemmCols));
            gemm_store(f, rows, cols, Y + p * kGemmCols * ldy + rt, ldy);
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
