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

// Q4_1 x Q8_1: sum(q * a) * dw * da + m * s, per block.
inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += (x[b].qs[j] & 0x0F) * int32_t(y[b].qs[j]);
            sumi += (x[b].qs[j] >> 4) * int32_t(y[b].qs[j + 16]);
        }
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
             fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
    }
    return s;
}

// The 32 five-bit values of a Q5_0 / Q5_1 block (0..31), in element order.
template <class Block>
inline void unpack_q5(const Block& blk, int q[32]) {
    const uint32_t qh = load_u32(blk.qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (blk.qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        q[j + 16] = (blk.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int q[32];
        unpack_q5(x[b], q);
        int32_t sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += (q[j] - 16) * int32_t(y[b].qs[j]);
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return s;
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int q[32];
        unpack_q5(x[b], q);
        int32_t sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += q[j] * int32_t(y[b].qs[j]);
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
             fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
    }
    return s;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += kIQ4NLValues[x[b].qs[j] & 0x0F] * int32_t(y[b].qs[j]);
            sumi += kIQ4NLValues[x[b].qs[j] >> 4] * int32_t(y[b].qs[j + 16]);
        }
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi);
    }
    return s;
}

// K-quants against Q8_K: per super-block, the integer sum over sub-blocks of
// scale * sum(q * a), times d_w * d_a, minus the min term dmin_w * d_a *
// sum(min * (sum of a over the sub-block)), accumulated in float.
inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t summs = 0;
        for (int k = 0; k < 16; ++k) summs += y[b].bsums[k] * (x[b].scales[k] >> 4);
        int32_t isum = 0;
        for (int k = 0; k < 16; ++k) {  // sub-block k: elements 16k .. 16k + 15
            const int h = k / 8, j = (k % 8) / 2, half = k % 2;
            const uint8_t* q = x[b].qs + 32 * h + 16 * half;
            const int8_t* q8 = y[b].qs + 16 * k;
            int32_t sub = 0;
            for (int l = 0; l < 16; ++l) sub += ((q[l] >> (2 * j)) & 3) * int32_t(q8[l]);
            isum += (x[b].scales[k] & 0x0F) * sub;
        }
        const float dall = y[b].d * fp16_to_fp32(x[b].d);
        const float dmin = y[b].d * fp16_to_fp32(x[b].dmin);
        s += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        int32_t isum = 0;
        for (int k = 0; k < 16; ++k) {
            const int h = k / 8, j = (k % 8) / 2, half = k % 2;
            const uint8_t* q = x[b].qs + 32 * h + 16 * half;
            const uint8_t* hm = x[b].hmask + 16 * half;
            const int hshift = 4 * h + j;
            const int8_t* q8 = y[b].qs + 16 * k;
            // The values go through a signed array first: g++ 12 -O2 with AVX-512
            // otherwise turns the loop into a dot product that treats them as unsigned.
            int8_t v[16];
            for (int l = 0; l < 16; ++l)
                v[l] = static_cast<int8_t>(((q[l] >> (2 * j)) & 3) - 4 + 4 * ((hm[l] >> hshift) & 1));
            int32_t sub = 0;
            for (int l = 0; l < 16; ++l) sub += int32_t(v[l]) * int32_t(q8[l]);
            isum += sc[k] * sub;
        }
        s += (fp16_to_fp32(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

// Q4_K and Q5_K share the scale layout; High selects the fifth bit.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, summs = 0;
        for (int k = 0; k < 8; ++k) {  // sub-block k: elements 32k .. 32k + 31
            int sc, m;
            scale_min_k4(k, x[b].scales, sc, m);
            const uint8_t* q = x[b].qs + 32 * (k / 2);
            const int shift = 4 * (k % 2);
            const int8_t* q8 = y[b].qs + 32 * k;
            int32_t sub = 0;
            for (int l = 0; l < 32; ++l) {
                int v = (q[l] >> shift) & 0x0F;
                if constexpr (High) v |= ((reinterpret_cast<const BlockQ5_K*>(x + b)->qh[l] >> k) & 1) << 4;
                sub += v * int32_t(q8[l]);
            }
            isum += sc * sub;
            summs += m * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        }
        const float d = y[b].d * fp16_to_fp32(x[b].d);
        const float dmin = y[b].d * fp16_to_fp32(x[b].dmin);
        s += d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[b].ql + 64 * h;
            const uint8_t* qh = x[b].qh + 32 * h;
            for (int g = 0; g < 4; ++g) {  // elements 128h + 32g + l
                for (int half = 0; half < 2; ++half) {
                    const int k = 8 * h + 2 * g + half;  // sub-block of 16
                    const int8_t* q8 = y[b].qs + 16 * k;
                    int32_t sub = 0;
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int lo = g & 1 ? ql[l + 32] : ql[l];
                        const int nib = g < 2 ? (lo & 0x0F) : (lo >> 4);
                        const int q = (nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
                        sub += q * int32_t(q8[l - 16 * half]);
                    }
                    isum += x[b].scales[k] * sub;
                }
            }
        }
        s += (fp16_to_fp32(x[b].d) * y[b].d) * static_cast<float>(isum);
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

// Asks for the cache lines of [p, p + bytes) (for writing: `write`) without
// waiting for them. (Written in asm where it can be: g++ 12 deletes a loop of
// nothing but __builtin_prefetch once it is inlined into a caller.)
inline void request_lines(const void* p, size_t bytes, bool write = false) {
    const char* c = static_cast<const char*>(p);
    const char* end = c + bytes;
    for (c -= reinterpret_cast<uintptr_t>(c) & 63; c < end; c += 64) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        if (write) __asm__ __volatile__("prefetchw %0" : : "m"(*c));
        else __asm__ __volatile__("prefetcht0 %0" : : "m"(*c));
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
        if (write) __asm__ __volatile__("prfm pstl1keep, %0" : : "Q"(*c));
        else __asm__ __volatile__("prfm pldl1keep, %0" : : "Q"(*c));
#elif defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(c, write ? 1 : 0, 3);
#else
        (void)write;
#endif
    }
}

// Software prefetch for one-row products, which stream their weights once: a
// core keeps only so many hardware-prefetched lines in flight, and asking for
// the lines a few KiB ahead of the row being read raises its share of the
// memory bandwidth. ahead(r) is called before row r and requests every line
// up to 6 KiB past the row's end, never past row r_end (the end of the range,
// or of the rows the caller reads next), with the non-temporal hint: the
// weights are read once per token, and lines fetched that way do not push the
// activations, the KV cache and the output rows out of the caches. Measured
// on smollm2-135m generation with 2 threads (variants alternating in one
// process; AVX-512): against 16 KiB ahead into all levels, Q8_0 1.06-1.12x,
// and 2-8 KiB ahead were within a few percent of 6; against no prefetch, Q4_0
// 1.15x, F16 1.06x, BF16 1.12x. Q4_K and Q5_K, whose kernels do more work per
// byte, gain nothing (1.00x, and 0.96x for llama-3.2-1b Q4_K): every one-row
// product asks prefetch_pays.
inline bool prefetch_pays(Type t) {
    return t == Type::Q8_0 || t == Type::Q4_0 || t == Type::F16 || t == Type::BF16;
}

struct RowPrefetch {
    static constexpr size_t kAhead = 6 << 10;
    const char* base;
    size_t stride;
    size_t end;   // offset of the end of row r_end - 1, r_end = max(r1, ahead_end)
    size_t next;  // offset of the first line not yet requested (end when off)
    RowPrefetch(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t ahead_end, bool on)
        : base(static_cast<const char*>(w)),
          stride(row_bytes),
          end(static_cast<size_t>(std::max(r1, ahead_end)) * row_bytes),
          next(on ? static_cast<size_t>(r0) * row_bytes : end) {}
    void ahead(int64_t r) {
        const size_t stop = std::min(end, (static_cast<size_t>(r) + 1) * stride + kAhead);
        for (; next < stop; next += 64) {
#if defined(__GNUC__) || defined(__clang__)
            __builtin_prefetch(base + next, 0, 0);
#endif
        }
    }
};

// Y[j*ldy + r] = dot(W row r, A row j) for r in [r0, r1), j in [0, m), with any
// row kernel. Tiles of weight rows are reused across all activation rows while
// they are hot in cache. Used by the scalar build and as the generic fallback.
// One activation row is one stream, read ahead when prefetch is set (up to
// row ahead_end when that is past r1: the rows the caller reads next).
inline void matmul_rows_generic(VecDotFn dot, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                                const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, bool prefetch,
                                int64_t ahead_end = 0) {
    if (!dot || r1 <= r0 || m <= 0) return;
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    if (m == 1) {  // one stream through the weights
        RowPrefetch pf(W, w_row_bytes, r0, r1, ahead_end, prefetch);
        for (int64_t r = r0; r < r1; ++r) {
            pf.ahead(r);
            Y[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, act);
        }
        return;
    }
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
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    matmul_rows_generic(vec_dot_fn(wt), W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
}
}  // namespace scalar

}  // namespace detail
MINIGPT_NS_END
