/* The GEMM's output transform, applied to each MR x NR tile of counts as it leaves the
 * microkernel, so the int32 dots never make a round trip through memory: a portable row store
 * and an AVX-512 one (masked, so a short last panel needs no scalar tail loop).
 */
#ifndef XN_EPILOGUE_H
#define XN_EPILOGUE_H

#include <stdint.h>
#include <string.h>

#include "xn_dispatch.h"

/* Output transform fused into the GEMM, with dot' = dot - corr[m % P, n] (corr may be absent): */
/* either the int32 dot', or out[m, n] = alpha[n] * dot' * row_scale[m] + bias[n] + res[m, n]    */
/* as float32, where res is a residual branch added in the same pass (a ResNet shortcut).       */

typedef struct {
    int32_t *out_i32;
    float *out_f32;
    const float *alpha;
    const float *bias;      /* may be NULL */
    const float *row_scale; /* may be NULL */
    const float *residual;  /* may be NULL; M x N, added before the ReLU */
    const int32_t *corr;    /* may be NULL; P x N, zero-padding correction of a conv */
    int64_t corr_period;    /* P */
    int64_t n;
    int64_t k;
    int relu; /* clamp the float output at 0 (a ReLU that follows the layer) */
} xn_epilogue;

static inline void xn_store_row(const xn_epilogue *e, int64_t m, int64_t n0, int64_t ncols,
                                const uint64_t *cnt) {
    int32_t dot[XN_NR];
    const int32_t *corr = e->corr ? e->corr + (m % e->corr_period) * e->n + n0 : NULL;
    for (int64_t j = 0; j < ncols; ++j) dot[j] = (int32_t)(e->k - 2 * (int64_t)cnt[j]);
    if (corr)
        for (int64_t j = 0; j < ncols; ++j) dot[j] -= corr[j];
    if (e->out_i32) {
        memcpy(e->out_i32 + m * e->n + n0, dot, (size_t)ncols * sizeof(int32_t));
        return;
    }
    float *out = e->out_f32 + m * e->n + n0;
    const float *alpha = e->alpha + n0;
    const float rs = e->row_scale ? e->row_scale[m] : 1.0f;
    if (e->bias) {
        const float *bias = e->bias + n0;
        for (int64_t j = 0; j < ncols; ++j) out[j] = (float)dot[j] * alpha[j] * rs + bias[j];
    } else {
        for (int64_t j = 0; j < ncols; ++j) out[j] = (float)dot[j] * alpha[j] * rs;
    }
    if (e->residual) {
        const float *res = e->residual + m * e->n + n0;
        for (int64_t j = 0; j < ncols; ++j) out[j] += res[j];
    }
    if (e->relu)
        for (int64_t j = 0; j < ncols; ++j) out[j] = out[j] > 0.0f ? out[j] : 0.0f;
}

#ifdef XN_X86
/* xn_store_row for AVX2, 8 columns per instruction, with the arithmetic and order of the
 * AVX-512 store below. Full panels only: a short last panel takes the portable store, since
 * AMD's masked stores (vpmaskmovd) are microcoded and slower than the scalar loop. At 16 columns
 * per row and panel the portable store costs 10-30% of the nibble-plane GEMM's time. */
XN_TARGET_AVX2 static inline void xn_store_row_avx2(const xn_epilogue *e, int64_t m, int64_t n0,
                                                    int64_t ncols, const uint64_t *cnt) {
    if (ncols < XN_NR) {
        xn_store_row(e, m, n0, ncols, cnt);
        return;
    }
    const __m256i k = _mm256_set1_epi32((int32_t)e->k);
    const int32_t *corr = e->corr ? e->corr + (m % e->corr_period) * e->n + n0 : NULL;
    for (int h = 0; h < 2; ++h) {
        /* the low 32 bits of 8 counts, in order: k - 2 * cnt wraps like the scalar cast */
        const __m256 lo = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(cnt + 8 * h)));
        const __m256 hi = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(cnt + 8 * h + 4)));
        const __m256i c32 = _mm256_permute4x64_epi64(
            _mm256_castps_si256(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0));
        __m256i dot = _mm256_sub_epi32(k, _mm256_slli_epi32(c32, 1));
        if (corr) dot = _mm256_sub_epi32(dot, _mm256_loadu_si256((const __m256i *)(corr + 8 * h)));
        const int64_t j = n0 + 8 * h;
        if (e->out_i32) {
            _mm256_storeu_si256((__m256i *)(e->out_i32 + m * e->n + j), dot);
            continue;
        }
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(e->alpha + j));
        if (e->row_scale) y = _mm256_mul_ps(y, _mm256_set1_ps(e->row_scale[m]));
        if (e->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(e->bias + j));
        if (e->residual) y = _mm256_add_ps(y, _mm256_loadu_ps(e->residual + m * e->n + j));
        if (e->relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
        _mm256_storeu_ps(e->out_f32 + m * e->n + j, y);
    }
}

/* The same arithmetic in the same order, 16 columns per instruction: (float)dot * alpha, then
 * * row_scale (skipped when absent: x * 1.0f == x exactly), + bias, + residual, then
 * max(y, 0), which like y > 0 ? y : 0 returns +0 for -0 and NaN. The i64 -> i32 narrowing
 * wraps like the scalar cast. */
XN_TARGET_AVX512 static inline void xn_store_row_avx512(const xn_epilogue *e, int64_t m,
                                                        int64_t n0, int64_t ncols,
                                                        const uint64_t *cnt) {
    const __mmask16 mask = (__mmask16)((1u << ncols) - 1u);
    const __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)cnt));
    const __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)(cnt + 8)));
    const __m512i c32 = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    __m512i dot = _mm512_sub_epi32(_mm512_set1_epi32((int32_t)e->k), _mm512_slli_epi32(c32, 1));
    if (e->corr)
        dot = _mm512_sub_epi32(
            dot, _mm512_maskz_loadu_epi32(mask, e->corr + (m % e->corr_period) * e->n + n0));
    if (e->out_i32) {
        _mm512_mask_storeu_epi32(e->out_i32 + m * e->n + n0, mask, dot);
        return;
    }
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_maskz_loadu_ps(mask, e->alpha + n0));
    if (e->row_scale) y = _mm512_mul_ps(y, _mm512_set1_ps(e->row_scale[m]));
    if (e->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, e->bias + n0));
    if (e->residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, e->residual + m * e->n + n0));
    if (e->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(e->out_f32 + m * e->n + n0, mask, y);
}
#endif

#endif /* XN_EPILOGUE_H */
