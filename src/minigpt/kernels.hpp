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

// For every weight row r in [r0, r1) and activation row j in [0, m):
//   Y[j*ldy + r] = dot(W row r, A row j)
// W rows are w_row_bytes apart and hold n elements of type wt; A rows are
// a_row_bytes apart and are already in vec_dot_type(wt) format. Threads may
// call this at the same time on disjoint row ranges (no shared state).
// Unsupported types leave Y untouched (callers check type_supported first).
inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy) {
    MINIGPT_ASSERT(type_supported(wt));
    kernels_best::matmul_rows(wt, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy);
}

}  // namespace detail
MINIGPT_NS_END
