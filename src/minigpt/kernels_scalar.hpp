// kernels_scalar: plain C++ kernels. They are the reference every SIMD kernel
// is tested against, and the fallback when no SIMD is compiled in.
#pragma once
#include "quant.hpp"

MINIGPT_NS_BEGIN
namespace detail {

// Dot product of one weight row (n elements) with one activation row that is
// already in vec_dot_type(weight type) format.
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);

namespace scalar {

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i] * y[i]);
    return static_cast<float>(s);
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
    return static_cast<float>(s);
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return static_cast<float>(s);
}

// Per block: an exact integer sum, times fp16(dw) * fp16(da), accumulated in float.
inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < QK8_0; ++j) sumi += int32_t(x[b].qs[j]) * int32_t(y[b].qs[j]);
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return s;
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < QK4_0 / 2; ++j) {
            sumi += ((x[b].qs[j] & 0x0F) - 8) * int32_t(y[b].qs[j]);
            sumi += ((x[b].qs[j] >> 4) - 8) * int32_t(y[b].qs[j + QK4_0 / 2]);
        }
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
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
        default: return nullptr;
    }
}

// Unsupported types give 0 (callers check type_supported first).
inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

}  // namespace scalar

// Y[j*ldy + r] = dot(W row r, A row j) for r in [r0, r1), j in [0, m), with any
// row kernel. Tiles of weight rows are reused across all activation rows while
// they are hot in cache. Used by the scalar build and as the generic fallback.
inline void matmul_rows_generic(VecDotFn dot, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                                const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy) {
    if (!dot || r1 <= r0 || m <= 0) return;
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    // About 64 KiB of weights per tile, at least 1 and at most 64 rows.
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(1, std::min<int64_t>(64, tile));
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const void* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            for (int64_t r = rt; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

namespace scalar {
inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy) {
    matmul_rows_generic(vec_dot_fn(wt), W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy);
}
}  // namespace scalar

}  // namespace detail
MINIGPT_NS_END
