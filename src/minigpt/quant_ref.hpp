// quant_ref: weight quantizers that give the same bytes as llama.cpp's
// reference quantizers (no importance matrix), and the model conversion used by
// minigpt-quantize.
//
// Bit-exactness depends on doing every float operation in the same order and
// precision as the reference, so fused multiply-add contraction is switched off
// for this part (GCC: an optimize pragma around it; clang: a pragma in each
// function body).
#pragma once
#include "gguf_writer.hpp"
#include "quant.hpp"

#include <functional>

#if defined(__clang__)
#  define MINIGPT_QREF_EXACT _Pragma("clang fp contract(off)")
#else
#  define MINIGPT_QREF_EXACT
#endif
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC push_options
#  pragma GCC optimize("fp-contract=off")
#endif

MINIGPT_NS_BEGIN
namespace detail {
namespace qref {

constexpr int kQK = 32;        // elements per block of the 32-element types
constexpr int kQKK = 256;      // elements per K-quant super-block
constexpr float kGroupMaxEps = 1e-15f;

// The 16 levels of IQ4_NL.
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

inline void put_f16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}
inline float get_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

// Round to nearest (ties to even) through the float mantissa: adding 1.5*2^23
// leaves the rounded integer in the low mantissa bits. Valid for |f| < 2^22.
inline int nearest_int(float f) {
    MINIGPT_QREF_EXACT
    const float v = f + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &v, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

// C's float -> integer conversion (truncation toward zero), made total: values
// outside the int range (which finite, checked input never produces) saturate.
inline int trunc_int(float v) {
    if (!(v > -2147483520.0f)) return v < 0.0f ? -2147483647 : 0;
    if (!(v < 2147483520.0f)) return 2147483647;
    return static_cast<int>(v);
}

// ---------------------------------------------------------------------------
// 32-element types.
// ---------------------------------------------------------------------------

// Q4_0 (18 bytes: d, 16 bytes of nibbles).
inline void q4_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const int q0 = std::min(15, trunc_int(x0 + 8.5f));
            const int q1 = std::min(15, trunc_int(x1 + 8.5f));
            y[2 + j] = static_cast<uint8_t>((q0 & 0xFF) | ((q1 & 0xFF) << 4));
        }
    }
}

// Q4_1 (20 bytes: d, m, nibbles).
inline void q4_1(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 20) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, min);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[kQK / 2 + j] - min) * id;
            const int q0 = std::min(15, trunc_int(x0 + 0.5f));
            const int q1 = std::min(15, trunc_int(x1 + 0.5f));
            y[4 + j] = static_cast<uint8_t>((q0 & 0xFF) | ((q1 & 0xFF) << 4));
        }
    }
}

// Q5_0 (22 bytes: d, 32 high bits, nibbles).
inline void q5_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const uint32_t q0 = static_cast<uint32_t>(std::min(31, trunc_int(x0 + 16.5f))) & 0xFFu;
            const uint32_t q1 = static_cast<uint32_t>(std::min(31, trunc_int(x1 + 16.5f))) & 0xFFu;
            y[6 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y + 2, &qh, 4);
    }
}

// Q5_1 (24 bytes: d, m, 32 high bits, nibbles).
inline void q5_1(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 24) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[kQK / 2 + j] - min) * id;
            const uint32_t q0 = static_cast<uint32_t>(trunc_int(x0 + 0.5f)) & 0xFFu;
            const uint32_t q1 = static_cast<uint32_t>(trunc_int(x1 + 0.5f)) & 0xFFu;
            y[8 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y + 4, &qh, 4);
    }
}

// Q8_0 (34 bytes: d, 32 signed bytes). Unlike the activation quantizer in
// quant.hpp, the reference rounds half away from zero.
inline void q8_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < kQK; ++j) {
            const int q = std::max(-128, std::min(127, trunc_int(std::round(x[j] * id))));
            y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
        }
    }
}

// Index of the level nearest to v in a sorted table of n (a power of two)
// levels; a value exactly half-way goes to the upper level. The comparison is
// made on doubled values, which is exact.
inline int best_index_int8(int n, const int8_t* val, float v) {
    MINIGPT_QREF_EXACT
    const float v2 = v + v;
    int idx = 0;
    for (int step = n >> 1; step > 0; step >>= 1) {
        const int j = idx + step;
        idx = (v2 >= static_cast<float>(val[j - 1] + val[j])) ? j : idx;
    }
    return idx;
}

// IQ4_NL (18 bytes: d, nibbles that index kIq4nlValues), as llama.cpp's
// quantize_iq4_nl without an importance matrix: weights x^2 and a search over
// 15 candidate scales.
inline void iq4_nl(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    const int8_t* values = kIq4nlValues;
    const int ntry = 7;
    for (int64_t ib = 0; ib < nb; ++ib, x += kQK, y += 18) {
        float weight[kQK];
        uint8_t L[kQK];
        for (int j = 0; j < kQK; ++j) weight[j] = x[j] * x[j];
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        float scale = 0.0f;
        if (!(amax < kGroupMaxEps)) {
            float d = -max / static_cast<float>(values[0]);
            float id = 1.0f / d;
            float sumqx = 0.0f, sumq2 = 0.0f;
            for (int j = 0; j < kQK; ++j) {
                const float al = id * x[j];
                const int l = best_index_int8(16, values, al);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry) {
                id = static_cast<float>(itry + values[0]) / max;
                sumqx = sumq2 = 0.0f;
                for (int j = 0; j < kQK; ++j) {
                    const float al = id * x[j];
                    const int l = best_index_int8(16, values, al);
                    const float q = values[l];
                    const float w = weight[j];
                    sumqx += w * q * x[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scale = d;
        }
        put_f16(y, scale);
        const float id = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(best_index_int8(16, values, id * x[j]));
        for (int j = 0; j < 16; ++j) y[2 + j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
    }
}

// ---------------------------------------------------------------------------
// K-quant helpers.
// ---------------------------------------------------------------------------

// Symmetric levels in [-nmax, nmax-1] with x^2 weights and a search over 19
// scales (make_qx_quants with rmse_type 1 and no importance weights). L gets
// the levels offset by nmax.
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    MINIGPT_QREF_EXACT
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Symmetric 3-bit levels refined by coordinate descent (make_q3_quants with
// do_rmse). L gets the levels offset by nmax.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    MINIGPT_QREF_EXACT
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0.0f) {
                float sl2 = suml2 - w * li * li;
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::max(-nmax, std::min(nmax - 1, new_l));
                if (new_l != L[i]) {
                    const float nl = static_cast<float>(new_l);
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric levels [0, nmax] with a minimum: a weighted least-squares fit
// tried at nstep+1 scales (make_qkx2_quants). Returns the scale; *the_min gets
// the (non-negative) offset to subtract.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                              uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    MINIGPT_QREF_EXACT
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// The 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K/Q5_K.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// ---------------------------------------------------------------------------
// K-quants (256-element super-blocks).
// ---------------------------------------------------------------------------

// Q2_K (84 bytes: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin).
inline void q2_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 84) {
        uint8_t L[kQKK], Laux[16];
        float weights[16], mins[16], scales[16];
        uint8_t* sc = y;
        uint8_t* qs = y + 16;
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            put_f16(y + 80, max_scale / 15.0f);
        } else {
            for (int j = 0; j < 16; ++j) sc[j] = 0;
            put_f16(y + 80, 0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(sc[j] | (nearest_int(iscale * mins[j]) << 4));
            put_f16(y + 82, max_min / 15.0f);
        } else {
            put_f16(y + 82, 0.0f);
        }
        const float dd = get_f16(y + 80), dmin = get_f16(y + 82);
        for (int j = 0; j < 16; ++j) {
            const float d = dd * static_cast<float>(sc[j] & 0xF);
            if (d == 0.0f) continue;
            const float dm = dmin * static_cast<float>(sc[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
            }
        }
        for (int j = 0; j < kQKK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                     (L[j + l + 96] << 6));
            }
        }
    }
}

// Q3_K (110 bytes: hmask[32], qs[64], scales[12] (6-bit, offset 32), d).
inline void q3_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 110) {
        int8_t L[kQKK];
        float scales[16];
        uint8_t* hmask = y;
        uint8_t* qs = y + 32;
        uint8_t* sc = y + 96;
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        std::memset(sc, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
                l = std::max(-32, std::min(31, l)) + 32;
                if (j < 8) {
                    sc[j] = static_cast<uint8_t>(l & 0xF);
                } else {
                    sc[j - 8] = static_cast<uint8_t>(sc[j - 8] | ((l & 0xF) << 4));
                }
                l >>= 4;
                sc[j % 4 + 8] = static_cast<uint8_t>(sc[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            put_f16(y + 108, 1.0f / iscale);
        } else {
            put_f16(y + 108, 0.0f);
        }
        const float dd = get_f16(y + 108);
        for (int j = 0; j < 16; ++j) {
            int s = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
            s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = dd * static_cast<float>(s);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = std::max(-4, std::min(3, l));
                L[16 * j + ii] = static_cast<int8_t>(l + 4);
            }
        }
        std::memset(hmask, 0, 32);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < kQKK; ++j) {
            if (L[j] > 3) {
                hmask[m] = static_cast<uint8_t>(hmask[m] | hm);
                L[j] = static_cast<int8_t>(L[j] - 4);
            }
            if (++m == 32) {
                m = 0;
                hm = static_cast<uint8_t>(hm << 1);
            }
        }
        for (int j = 0; j < kQKK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                     (L[j + l + 96] << 6));
            }
        }
    }
}

// Shared by Q4_K and Q5_K: eight 32-element sub-blocks fitted with a scale and
// a min, then both quantized to 6 bits and packed into 12 bytes. Fills L with
// levels in [0, nmax] and writes d (y[0..1]), dmin (y[2..3]) and scales (y[4..15]).
inline void qk_scales_mins(const float* x, uint8_t* y, uint8_t* L, int nmax, float rmin, float rdelta, int nstep) {
    MINIGPT_QREF_EXACT
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    uint8_t* sc = y + 4;
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32.0f);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] = static_cast<uint8_t>(sc[j - 4] | ((ls >> 4) << 6));
            sc[j] = static_cast<uint8_t>(sc[j] | ((lm >> 4) << 6));
        }
    }
    put_f16(y, max_scale / 63.0f);
    put_f16(y + 2, max_min / 63.0f);
    const float dd = get_f16(y), dmin = get_f16(y + 2);
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        get_scale_min_k4(j, sc, &s, &m);
        const float d = dd * static_cast<float>(s);
        if (d == 0.0f) continue;
        const float dm = dmin * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        }
    }
}

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]).
inline void q4_K(const float* x, uint8_t* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 144) {
        uint8_t L[kQKK];
        qk_scales_mins(x, y, L, 15, -1.0f, 0.1f, 20);
        uint8_t* q = y + 16;
        for (int j = 0; j < kQKK; j += 64, q += 32) {
            for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

// Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]).
inline void q5_K(const float* x, uint8_t* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 176) {
        uint8_t L[kQKK];
        qk_scales_mins(x, y, L, 31, -0.5f, 0.1f, 15);
        uint8_t* qh = y + 16;
        uint8_t* ql = y + 48;
        std::memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < kQKK; n += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m1);
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m2);
                }
                ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
            m1 = static_cast<uint8_t>(m1 << 2);
            m2 = static_cast<uint8_t>(m2 << 2);
        }
    }
}

// Q6_K (210 bytes: ql[128], qh[64], scales[16] (int8), d).
inline void q6_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 210) {
        int8_t L[kQKK];
        float scales[16];
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(y, 0, 210);
            continue;
        }
        int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
        const float iscale = -128.0f / max_scale;
        put_f16(y + 208, 1.0f / iscale);
        for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        const float dd = get_f16(y + 208);
        for (int j = 0; j < 16; ++j) {
            const float d = dd * static_cast<float>(sc[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = std::max(-32, std::min(31, l));
                L[16 * j + ii] = static_cast<int8_t>(l + 32);
            }
        }
        uint8_t* ql = y;
        uint8_t* qh = y + 128;
        for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
                ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
                qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                             ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

}  // namespace qref

// Types quantize_weights can produce.
inline bool quantize_weights_supported(Type t) {
    switch (t) {
        case Type::F32: case Type::F16: case Type::BF16: case Type::Q8_0: case Type::Q4_0: case Type::Q4_1:
        case Type::Q5_0: case Type::Q5_1: case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K:
        case Type::Q6_K: case Type::IQ4_NL:
            return true;
        default:
            return false;
    }
}

// Converts n_rows rows of n_per_row floats to type t, exactly as llama.cpp's
// llama-quantize does without an importance matrix. y receives
// n_rows * row_bytes(t, n_per_row) bytes.
inline Status quantize_weights(Type t, const float* x, void* y, int64_t n_rows, int64_t n_per_row) {
    if (!quantize_weights_supported(t))
        return error(StatusCode::unsupported, "quantizing to %s is not supported", type_name(t));
    if (n_rows < 0 || n_per_row < 0)
        return error(StatusCode::invalid_argument, "quantize: negative shape %lld x %lld", (long long)n_rows,
                     (long long)n_per_row);
    const TypeInfo ti = type_info(t);
    if (n_per_row % ti.block_size != 0)
        return error(StatusCode::invalid_argument, "quantize: row length %lld is not a multiple of the %s block size %lld",
                     (long long)n_per_row, ti.name, (long long)ti.block_size);
    uint64_t n = 0;
    if (mul_overflows(static_cast<uint64_t>(n_rows), static_cast<uint64_t>(n_per_row), &n) || n > (uint64_t(1) << 50))
        return error(StatusCode::invalid_argument, "quantize: element count overflows");
    if (n == 0) return Status();
    if (!x || !y) return error(StatusCode::invalid_argument, "quantize: null buffer");
    const bool is_float = t == Type::F32 || t == Type::F16 || t == Type::BF16;
    if (!is_float) {
        // The block quantizers convert scaled values to integers; NaN or inf
        // would make those conversions meaningless.
        for (uint64_t i = 0; i < n; ++i) {
            if (!std::isfinite(x[i]))
                return error(StatusCode::invalid_argument, "quantize: value %llu (row %llu) is not finite",
                             (unsigned long long)i, (unsigned long long)(i / static_cast<uint64_t>(n_per_row)));
        }
    }
    uint8_t* out = static_cast<uint8_t*>(y);
    const int64_t nb = static_cast<int64_t>(n / static_cast<uint64_t>(ti.block_size));
    switch (t) {
        case Type::F32: std::memcpy(out, x, static_cast<size_t>(n) * 4); break;
        case Type::F16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_fp16(x[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            break;
        case Type::BF16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_bf16(x[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            break;
        case Type::Q4_0: qref::q4_0(x, out, nb); break;
        case Type::Q4_1: qref::q4_1(x, out, nb); break;
        case Type::Q5_0: qref::q5_0(x, out, nb); break;
        case Type::Q5_1: qref::q5_1(x, out, nb); break;
        case Type::Q8_0: qref::q8_0(x, out, nb); break;
        case Type::IQ4_NL: qref::iq4_nl(x, out, nb); break;
        case Type::Q2_K: qref::q2_K(x, out, nb); break;
        case Type::Q3_K: qref::q3_K(x, out, nb); break;
        case Type::Q4_K: qref::q4_K(x, out, nb); break;
        case Type::Q5_K: qref::q5_K(x, out, nb); break;
        case Type::Q6_K: qref::q6_K(x, out, nb); break;
        default: return error(StatusCode::internal, "quantize: unhandled type %s", type_name(t));
    }
    return Status();
}

// ---------------------------------------------------------------------------
// Whole-model quantization (minigpt-quantize).
// ---------------------------------------------------------------------------

// llama.cpp's llama_ftype number for a file whose weights are mostly of type t
// (the K-quants map to their _M mixtures); -1 when t is not a target type.
inline int quant_ftype_of(Type t) {
    switch (t) {
        case Type::F32: return 0;
        case Type::F16: return 1;
        case Type::Q4_0: return 2;
        case Type::Q4_1: return 3;
        case Type::Q8_0: return 7;
        case Type::Q5_0: return 8;
        case Type::Q5_1: return 9;
        case Type::Q2_K: return 10;
        case Type::Q3_K: return 12;
        case Type::Q4_K: return 15;
        case Type::Q5_K: return 17;
        case Type::Q6_K: return 18;
        case Type::IQ4_NL: return 25;
        case Type::BF16: return 32;
        default: return -1;
    }
}

// Parses a target type name (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K
// Q4_K Q5_K Q6_K IQ4_NL), ignoring case.
inline bool parse_quant_type(std::string_view s, Type& out) {
    static const Type targets[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q8_0, Type::Q4_0,
                                   Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q2_K, Type::Q3_K,
                                   Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::IQ4_NL};
    for (Type t : targets) {
        const char* n = type_name(t);
        if (std::strlen(n) != s.size()) continue;
        bool same = true;
        for (size_t i = 0; i < s.size() && same; ++i) {
            char c = s[i];
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
            same = c == n[i];
        }
        if (same) {
            out = t;
            return true;
        }
    }
    return false;
}

// What quantize_model did with one tensor, for progress output.
struct QuantizeTensorReport {
    std::string name;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    Type type_in = Type::F32;
    Type type_out = Type::F32;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    int index = 0;   // 0-based position in the output file
    int count = 0;   // number of tensors
};

namespace qref {

// llama.cpp's rule for which tensors are quantized at all: weights of two or
// more dimensions, except norms, positional / token-type embeddings and a few
// small special-purpose tensors.
inline bool tensor_allows_quantization(const GgufTensor& t) {
    if (t.n_dims < 2) return false;
    const std::string& n = t.name;
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
    static const char* const excluded[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d",
        "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger"};
    for (const char* e : excluded) {
        if (n.find(e) != std::string::npos) return false;
    }
    return n != "position_embd.weight" && n != "token_types.weight";
}

// The layer of "blk.N...." names, -1 for the others (llama.cpp's tensor order
// is by this number, then by name).
inline int tensor_layer(const std::string& name) {
    if (name.compare(0, 4, "blk.") != 0) return -1;
    size_t i = 4;
    long v = 0;
    if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && v < 100000000) v = v * 10 + (name[i++] - '0');
    if (i >= name.size() || name[i] != '.') return -1;
    return static_cast<int>(v);
}

enum class Category { token_embd, attn_q, attn_v, attn_k, attn_qkv, attn_kv_b, attn_output, ffn_up, ffn_gate,
                      ffn_down, output, other };

inline Category tensor_category(const std::string& n) {
    auto has = [&n](const char* s) { return n.find(s) != std::string::npos; };
    if (n == "output.weight") return Category::output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return Category::token_embd;
    if (has("attn_qkv.weight")) return Category::attn_qkv;
    if (has("attn_kv_b.weight")) return Category::attn_kv_b;
    if (has("attn_v.weight")) return Category::attn_v;
    if (has("attn_k.weight")) return Category::attn_k;
    if (has("attn_q.weight")) return Category::attn_q;
    if (has("attn_output.weight")) return Category::attn_output;
    if (has("ffn_up")) return Category::ffn_up;
    if (has("ffn_gate")) return Category::ffn_gate;
    if (has("ffn_down")) return Category::ffn_down;
    return Category::other;
}

// Model facts the mixture rules look at.
struct MixState {
    int ftype = 0;
    bool falcon = false;
    bool tied = true;          // no output.weight: token_embd doubles as the output
    int n_gqa = 1;
    int n_expert = 1;
    int n_layer = 0;
    int n_attention_wv = 0;
    int i_attention_wv = 0;
    int i_ffn_down = 0;
};

inline bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama.cpp's default mixture for the file types minigpt-quantize offers
// (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K and the 32-element types).
inline Type mixture_type(MixState& s, Type new_type, const GgufTensor& t, Category cat) {
    enum { Q2_K = 10, Q3_K_M = 12, Q4_K_M = 15, Q5_K_M = 17, IQ4_NL = 25 };
    const int ft = s.ftype;
    if (cat == Category::output || (s.tied && cat == Category::token_embd)) {
        if (s.falcon || t.ne[0] % type_info(new_type).block_size != 0) return Type::Q8_0;
        return new_type != Type::Q8_0 ? Type::Q6_K : new_type;
    }
    if (cat == Category::token_embd) return new_type;
    if (cat == Category::attn_v || cat == Category::attn_qkv || cat == Category::attn_kv_b) {
        if (ft == Q2_K) new_type = s.n_gqa >= 4 ? Type::Q4_K : Type::Q3_K;
        else if (ft == Q3_K_M) new_type = s.i_attention_wv < 2 ? Type::Q5_K : Type::Q4_K;
        else if (ft == IQ4_NL && s.n_gqa >= 4) new_type = Type::Q5_K;
        else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(s.i_attention_wv, s.n_attention_wv)) new_type = Type::Q6_K;
        if (s.n_expert == 8) new_type = Type::Q8_0;
        ++s.i_attention_wv;
        return new_type;
    }
    if (cat == Category::attn_k) return s.n_expert == 8 ? Type::Q8_0 : new_type;
    if (cat == Category::ffn_down) {
        int i_layer = s.i_ffn_down;
        const int n_layer = s.n_layer;
        if (s.n_expert > 1) i_layer = tensor_layer(t.name);
        if (ft == Q2_K) new_type = Type::Q3_K;
        else if (ft == Q3_K_M)
            new_type = i_layer < n_layer / 16 ? Type::Q5_K
                       : (!s.falcon || use_more_bits(i_layer, n_layer)) ? Type::Q4_K : Type::Q3_K;
        else if (ft == Q4_K_M) {
            if (s.falcon) new_type = i_layer < n_layer / 16 ? Type::Q6_K : use_more_bits(i_layer, n_layer) ? Type::Q5_K : Type::Q4_K;
            else if (use_more_bits(i_layer, n_layer)) new_type = Type::Q6_K;
        } else if (i_layer < n_layer / 8 && ft == IQ4_NL) new_type = Type::Q5_K;
        else if (ft == Q5_K_M && use_more_bits(i_layer, n_layer)) new_type = Type::Q6_K;
        ++s.i_ffn_down;
        return new_type;
    }
    if (cat == Category::attn_output) {
        if (!s.falcon) {
            if (s.n_expert == 8) {
                if (ft == Q2_K || ft == Q3_K_M || ft == IQ4_NL || ft == Q4_K_M) new_type = Type::Q5_K;
            } else {
                if (ft == Q2_K) new_type = Type::Q3_K;
                else if (ft == Q3_K_M) new_type = Type::Q4_K;
            }
        }
        return new_type;
    }
    return new_type;
}

// llama.cpp's fallback for rows that do not fit the chosen type's block.
inline Type fallback_type(const GgufTensor& t, Type target) {
    if (t.ne[0] % type_info(target).block_size == 0) return target;
    Type r;
    switch (target) {
        case Type::Q2_K: case Type::Q3_K: r = Type::Q4_0; break;
        case Type::Q4_K: r = Type::Q5_0; break;
        case Type::Q5_K: r = Type::Q5_1; break;
        case Type::Q6_K: r = Type::Q8_0; break;
        default: r = Type::F16; break;  // the 32-element types (llama.cpp has no fallback for them)
    }
    if (t.ne[0] % type_info(r).block_size != 0) r = Type::F16;
    return r;
}

}  // namespace qref

// Quantizes every weight of `in` to t (llama.cpp's --pure when `pure`, else
// its default mixture for the file type of t) and adds metadata and tensors to
// `out`, in llama.cpp's tensor order. Tensors that are not quantized (norms,
// biases, 1-D tensors) are copied unchanged. Inputs must be F32, F16 or BF16
// for the tensors that change type. `out` owns copies of everything it gets.
inline Status quantize_model(const GgufFile& in, Type t, bool pure, GgufWriter& out,
                             const std::function<void(const QuantizeTensorReport&)>& on_tensor = nullptr) {
    const int ftype = quant_ftype_of(t);
    if (ftype < 0) return error(StatusCode::unsupported, "quantize: %s is not a target type", type_name(t));

    for (const GgufKV& kv : in.kvs) {
        if (kv.key == "split.no" || kv.key == "split.count" || kv.key == "split.tensors.count") continue;
        Status st = out.copy_kv(in, kv);
        if (!st.ok()) return st;
    }
    out.set_u32("general.quantization_version", 2);
    out.set_u32("general.file_type", static_cast<uint32_t>(ftype));

    qref::MixState ms;
    ms.ftype = ftype;
    Status st;
    std::string_view arch;
    if (in.get_string("general.architecture", arch, st)) {
        ms.falcon = arch == "falcon";
        const std::string a(arch);
        int64_t v = 0, heads = 0;
        Status ignore;
        if (in.get_int(a + ".block_count", v, ignore) && v > 0 && v < (1 << 20)) ms.n_layer = static_cast<int>(v);
        if (in.get_int(a + ".expert_count", v, ignore) && v > 1 && v < (1 << 20)) ms.n_expert = static_cast<int>(v);
        if (in.get_int(a + ".attention.head_count", heads, ignore) && heads > 0 &&
            in.get_int(a + ".attention.head_count_kv", v, ignore) && v > 0 && heads % v == 0 && heads / v < (1 << 20))
            ms.n_gqa = static_cast<int>(heads / v);
    } else if (!st.ok()) {
        return st;
    }

    std::vector<size_t> order(in.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const std::string& na = in.tensors[a].name;
        const std::string& nb = in.tensors[b].name;
        const int la = qref::tensor_layer(na), lb = qref::tensor_layer(nb);
        if (la != lb) return la < lb;
        return na < nb;
    });
    int n_ffn_down = 0;
    for (const GgufTensor& tt : in.tensors) {
        const qref::Category c = qref::tensor_category(tt.name);
        if (c == qref::Category::attn_v || c == qref::Category::attn_qkv || c == qref::Category::attn_kv_b) ++ms.n_attention_wv;
        if (c == qref::Category::ffn_down) ++n_ffn_down;
        if (c == qref::Category::output) ms.tied = false;
    }
    if (ms.n_layer == 0) ms.n_layer = n_ffn_down;

    const bool quantized_target = t != Type::F32 && t != Type::F16 && t != Type::BF16;
    Buffer<float> f32;
    Buffer<uint8_t> q;
    for (size_t k = 0; k < order.size(); ++k) {
        const GgufTensor& ten = in.tensors[order[k]];
        const Type tin = static_cast<Type>(ten.type);
        Type tout = tin;
        if (qref::tensor_allows_quantization(ten)) {
            tout = t;
            if (quantized_target) {
                if (!pure) tout = qref::mixture_type(ms, tout, ten, qref::tensor_category(ten.name));
                tout = qref::fallback_type(ten, tout);
            } else if (ten.ne[0] % type_info(tout).block_size != 0) {
                tout = Type::F16;
            }
        }
        std::vector<int64_t> ne(ten.ne, ten.ne + ten.n_dims);
        QuantizeTensorReport rep;
        rep.name = ten.name;
        rep.n_dims = ten.n_dims;
        for (int d = 0; d < 4; ++d) rep.ne[d] = ten.ne[d];
        rep.type_in = tin;
        rep.type_out = tout;
        rep.bytes_in = ten.nbytes;
        rep.index = static_cast<int>(k);
        rep.count = static_cast<int>(order.size());
        if (tout == tin) {
            st = out.add_tensor(ten.name, tin, ne, ten.data, static_cast<size_t>(ten.nbytes));
            if (!st.ok()) return st;
            rep.bytes_out = ten.nbytes;
        } else {
            if (tin != Type::F32 && tin != Type::F16 && tin != Type::BF16)
                return error(StatusCode::unsupported, "tensor '%s': converting %s to %s is not supported (inputs must be F32, F16 or BF16)",
                             ten.name.c_str(), type_name(tin), type_name(tout));
            if (!quantize_weights_supported(tout))
                return error(StatusCode::unsupported, "tensor '%s': quantizing to %s is not supported", ten.name.c_str(),
                             type_name(tout));
            const uint64_t n = static_cast<uint64_t>(ten.n_elements());
            const int64_t n_per_row = ten.ne[0];
            const int64_t n_rows = n_per_row > 0 ? static_cast<int64_t>(n / static_cast<uint64_t>(n_per_row)) : 0;
            const size_t out_bytes = static_cast<size_t>(n_rows) * row_bytes(tout, n_per_row);
            if (f32.size() < n && !f32.allocate(static_cast<size_t>(n)))
                return error(StatusCode::out_of_memory, "tensor '%s': cannot allocate %llu floats", ten.name.c_str(),
                             (unsigned long long)n);
            if (q.size() < out_bytes && !q.allocate(out_bytes))
                return error(StatusCode::out_of_memory, "tensor '%s': cannot allocate %zu bytes", ten.name.c_str(), out_bytes);
            if (tin == Type::F32) {
                if (n) std::memcpy(f32.data(), ten.data, static_cast<size_t>(n) * 4);
            } else {
                for (uint64_t i = 0; i < n; ++i) {
                    uint16_t h;
                    std::memcpy(&h, ten.data + 2 * i, 2);
                    f32[i] = tin == Type::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
                }
            }
            st = quantize_weights(tout, f32.data(), q.data(), n_rows, n_per_row);
            if (!st.ok()) return error(st.code(), "tensor '%s': %s", ten.name.c_str(), st.message().c_str());
            st = out.add_tensor(ten.name, tout, ne, q.data(), out_bytes);
            if (!st.ok()) return st;
            rep.bytes_out = out_bytes;
        }
        if (on_tensor) on_tensor(rep);
    }
    return Status();
}

}  // namespace detail
MINIGPT_NS_END

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC pop_options
#endif
