// kernels: picks the best compiled kernel set (AVX-512 > AVX2 > NEON > scalar) and
// provides the matrix product used by the forward pass.
#pragma once
#include "kernels_avx512.hpp"
#include "kernels_neon.hpp"

MINIGPT_NS_BEGIN
namespace detail {

#if defined(MINIGPT_AVX512)
namespace kernels_best = avx512;
#elif defined(MINIGPT_AVX2)
namespace kernels_best = avx2;
#elif defined(MINIGPT_NEON)
namespace kernels_best = neon;
#else
namespace kernels_best = scalar;
#endif

// The instruction set the kernels were compiled for.
inline const char* simd_name() {
#if defined(MINIGPT_AVX512)
    return "AVX512";
#elif defined(MINIGPT_AVX2)
    return "AVX2";
#elif defined(MINIGPT_NEON)
    return "NEON";
#else
    return "scalar";
#endif
}

// Row dot product for weight type wt (activation in vec_dot_type(wt) format);
// nullptr when wt is not supported. VecDotFn is declared in kernels_scalar.
inline VecDotFn vec_dot_fn(Type wt) { return kernels_best::vec_dot_fn(wt); }

inline float dot_f32(const float* a, const float* b, int64_t n) { return kernels_best::dot_f32(a, b, n); }
inline void axpy_f32(int64_t n, float a, const float* x, float* y) { kernels_best::axpy_f32(n, a, x, y); }
inline void scale_f32(int64_t n, float a, float* y) { kernels_best::scale_f32(n, a, y); }

#if defined(MINIGPT_AVX512)
// e^x for 16 floats: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor
// series to r^7 (truncation below 1e-8 relative), times 2^n with scalef (which
// gives inf and 0 at the ends). Within 2 ulp of std::exp; NaN stays NaN.
inline __m512 exp16(__m512 x) {
    // (zero-masking forms with a full mask: the plain ones start from an
    // "undefined" register that g++ 12 reports as uninitialized)
    const __mmask16 all = 0xFFFF;
    x = _mm512_maskz_max_ps(all, _mm512_set1_ps(-104.0f), _mm512_maskz_min_ps(all, _mm512_set1_ps(89.0f), x));
    const __m512 n = _mm512_maskz_roundscale_ps(all, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2, high part (exact product)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);     // ln2, the rest
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(all, p, n);
}
#endif

// out[j] = dot(q, k + j * stride) for j < 4: the attention scores of four keys,
// sharing the loads of q and one horizontal reduction.
inline void dot4_keys_f32(const float* q, const float* k, size_t stride, int64_t d, float* out) {
#if defined(MINIGPT_AVX512)
    if (d % 16 == 0) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t i = 0; i < d; i += 16) {
            const __m512 qv = _mm512_loadu_ps(q + i);
            a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + i), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + stride + i), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + 2 * stride + i), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + 3 * stride + i), a3);
        }
        const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
        // Halves of a0|a1 and a2|a3 added, then quarters, then within each
        // 128-bit lane: lane j ends up holding key j's sum in its first float.
        const __m512 h01 = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, a0, a1, 0x44), _mm512_maskz_shuffle_f32x4(all, a0, a1, 0xEE));
        const __m512 h23 = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, a2, a3, 0x44), _mm512_maskz_shuffle_f32x4(all, a2, a3, 0xEE));
        __m512 c = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, h01, h23, 0x88), _mm512_maskz_shuffle_f32x4(all, h01, h23, 0xDD));
        c = _mm512_add_ps(c, _mm512_maskz_shuffle_ps(all, c, c, 0x4E));
        c = _mm512_add_ps(c, _mm512_maskz_shuffle_ps(all, c, c, 0xB1));
        alignas(64) float t[16];
        _mm512_store_ps(t, c);
        out[0] = t[0], out[1] = t[4], out[2] = t[8], out[3] = t[12];
        return;
    }
#endif
    for (int j = 0; j < 4; ++j) out[j] = dot_f32(q, k + j * stride, d);
}

// o[i] += sum over j < n of w[j] * v[j * stride + i], for i < d: the
// attention's weighted sum of n value rows. The sums stay in registers over
// all the rows, in two sets (even and odd rows) so that consecutive rows do not
// wait on each other; one axpy per row would make each row wait on the stores
// of the one before. Elsewhere, one axpy per row.
inline void weighted_rows_f32(int64_t n, const float* w, const float* v, size_t stride, int64_t d, float* o) {
#if defined(MINIGPT_AVX512)
    if (d % 16 == 0) {
        // Columns [i, i + 16 * C) of all the rows.
        auto columns = [&](int64_t i, auto regs) {
            constexpr int C = decltype(regs)::value;
            // (unrolled, so that the sums stay in registers)
            __m512 a[C], b[C];
            MINIGPT_UNROLL(4)
            for (int k = 0; k < C; ++k) a[k] = _mm512_loadu_ps(o + i + 16 * k), b[k] = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 2 <= n; j += 2) {
                const __m512 w0 = _mm512_set1_ps(w[j]), w1 = _mm512_set1_ps(w[j + 1]);
                const float* r0 = v + static_cast<size_t>(j) * stride + i;
                const float* r1 = r0 + stride;
                MINIGPT_UNROLL(4)
                for (int k = 0; k < C; ++k) {
                    a[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(r0 + 16 * k), a[k]);
                    b[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(r1 + 16 * k), b[k]);
                }
            }
            if (j < n) {
                const __m512 w0 = _mm512_set1_ps(w[j]);
                const float* r0 = v + static_cast<size_t>(j) * stride + i;
                MINIGPT_UNROLL(4)
                for (int k = 0; k < C; ++k) a[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(r0 + 16 * k), a[k]);
            }
            MINIGPT_UNROLL(4)
            for (int k = 0; k < C; ++k) _mm512_storeu_ps(o + i + 16 * k, _mm512_add_ps(a[k], b[k]));
        };
        int64_t i = 0;
        for (; i + 64 <= d; i += 64) columns(i, std::integral_constant<int, 4>());
        for (; i < d; i += 16) columns(i, std::integral_constant<int, 1>());
        return;
    }
#endif
    for (int64_t j = 0; j < n; ++j) axpy_f32(d, w[j], v + static_cast<size_t>(j) * stride, o);
}

// y[i] = e^(x[i]) (y may be x).
inline void exp_f32(int64_t n, const float* x, float* y) {
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_maskz_loadu_ps(k, x + i)));
        return;
    }
#endif
    for (; i < n; ++i) y[i] = std::exp(x[i]);
}

// The online softmax's two passes over a block of scores. s[i] *= a for
// i < n; returns the largest (-inf when n = 0).
inline float scale_max_f32(int64_t n, float a, float* s) {
    float mx = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
    const __m512 av = _mm512_set1_ps(a);
    __m512 m = _mm512_set1_ps(mx);
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + i), av);
        _mm512_storeu_ps(s + i, v);
        m = _mm512_maskz_max_ps(all, m, v);
    }
    if (i < n) {
        const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + i), av);
        _mm512_mask_storeu_ps(s + i, k, v);
        m = _mm512_mask_max_ps(m, k, m, v);
        i = n;
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, m);
    for (float l : lanes) mx = std::max(mx, l);
#endif
    for (; i < n; ++i) {
        s[i] *= a;
        mx = std::max(mx, s[i]);
    }
    return mx;
}

// s[i] = e^(s[i] - m) for i < n; returns their sum, added up in double.
inline double exp_sum_f32(int64_t n, float m, float* s) {
    double sum = 0;
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __m512 mv = _mm512_set1_ps(m);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv)));
        _mm512_mask_storeu_ps(s + i, k, e);
        // (zero-masking forms: see exp16)
        const __m256 lower = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xF), _mm512_castps_pd(e), 0));
        const __m256 upper = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xF), _mm512_castps_pd(e), 1));
        lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(__mmask8(0xFF), lower));
        hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(__mmask8(0xFF), upper));
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, _mm512_add_pd(lo, hi));
    for (double l : lanes) sum += l;
#endif
    for (; i < n; ++i) {
        s[i] = std::exp(s[i] - m);
        sum += s[i];
    }
    return sum;
}

// g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i].
inline void silu_mul_f32(int64_t n, float* g, const float* u) {
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
#endif
    for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// For every weight row r in [r0, r1) and activation row j in [0, m):
//   Y[j*ldy + r] = dot(W row r, A row j)
// W rows are w_row_bytes apart and hold n elements of type wt; A rows are
// a_row_bytes apart and are already in vec_dot_type(wt) format. Threads may
// call this at the same time on disjoint row ranges (no shared state).
// Unsupported types leave Y untouched (callers check type_supported first).
// With one activation row, the read-ahead may run on to row ahead_end (rows
// the caller reads next), never past r1 when ahead_end is smaller.
inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    MINIGPT_ASSERT(type_supported(wt));
    kernels_best::matmul_rows(wt, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, ahead_end);
}

}  // namespace detail
MINIGPT_NS_END
