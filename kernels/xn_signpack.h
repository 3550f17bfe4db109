/* BatchNorm / affine threshold -> sign -> pack, fused, so the float activations between two
 * binary layers are never written: a per-element scale/shift version (vectorized like
 * bitpack) and a per-channel BatchNorm one that can also return XNOR-Net's mean |y|.
 */
#ifndef XN_SIGNPACK_H
#define XN_SIGNPACK_H

#include <stdint.h>
#include <string.h>

#include "xn_dispatch.h"
#include "xn_team.h"

/* sign(x * scale + shift) packed, with scale/shift given per element of a row (the per-channel
 * BatchNorm or threshold, tiled over the pixels of a row): the same vectorized compare as
 * pack_rows, so BN -> sign -> pack is one pass that never writes the float BN output. */
#define XN_DEFINE_AFFINE_ROW(NAME, ATTR, BODY64)                                                \
    ATTR static void NAME(const float *x, const float *sc, const float *sh, int64_t k,          \
                          int64_t words, uint64_t *out) {                                        \
        const int64_t full = k / 64;                                                            \
        for (int64_t q = 0; q < full; ++q) {                                                    \
            const float *xq = x + 64 * q, *sq = sc + 64 * q, *tq = sh + 64 * q;                 \
            uint64_t bits = 0;                                                                  \
            BODY64                                                                              \
            out[q] = bits;                                                                      \
        }                                                                                       \
        int64_t q = full;                                                                       \
        if (k % 64) {                                                                           \
            uint64_t bits = 0;                                                                  \
            for (int64_t i = 0; i < k % 64; ++i) {                                              \
                const int64_t j = 64 * q + i;                                                   \
                const float y = x[j] * sc[j];                                                   \
                bits |= (uint64_t)(y + sh[j] < 0.0f) << i;                                      \
            }                                                                                   \
            out[q++] = bits;                                                                    \
        }                                                                                       \
        for (; q < words; ++q) out[q] = 0;                                                      \
    }

#define XN_AFFINE_GENERIC_BODY                                                                  \
    for (int i = 0; i < 64; ++i) {                                                              \
        const float y = xq[i] * sq[i];                                                          \
        bits |= (uint64_t)(y + tq[i] < 0.0f) << i;                                              \
    }

XN_DEFINE_AFFINE_ROW(xn_affine_row_generic, , XN_AFFINE_GENERIC_BODY)
#ifdef XN_X86
#define XN_AFFINE_AVX2_BODY                                                                      \
    for (int g = 0; g < 8; ++g) {                                                               \
        const __m256 y = _mm256_add_ps(                                                         \
            _mm256_mul_ps(_mm256_loadu_ps(xq + 8 * g), _mm256_loadu_ps(sq + 8 * g)),             \
            _mm256_loadu_ps(tq + 8 * g));                                                       \
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ));    \
        bits |= (uint64_t)(uint32_t)m << (8 * g);                                               \
    }
#define XN_AFFINE_AVX512_BODY                                                                    \
    for (int g = 0; g < 4; ++g) {                                                               \
        const __m512 y = _mm512_add_ps(                                                         \
            _mm512_mul_ps(_mm512_loadu_ps(xq + 16 * g), _mm512_loadu_ps(sq + 16 * g)),           \
            _mm512_loadu_ps(tq + 16 * g));                                                      \
        bits |= (uint64_t)_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ) << (16 * g);   \
    }
XN_DEFINE_AFFINE_ROW(xn_affine_row_scalar, XN_TARGET_POPCNT, XN_AFFINE_GENERIC_BODY)
XN_DEFINE_AFFINE_ROW(xn_affine_row_avx2, XN_TARGET_AVX2, XN_AFFINE_AVX2_BODY)
XN_DEFINE_AFFINE_ROW(xn_affine_row_avx512, XN_TARGET_AVX512, XN_AFFINE_AVX512_BODY)
#endif

static void xn_affine_pack_rows(int isa, const float *x, int64_t rows, int64_t k, const float *sc,
                                const float *sh, int64_t words, uint64_t *out, int threads) {
    void (*row)(const float *, const float *, const float *, int64_t, int64_t, uint64_t *) =
        xn_affine_row_generic;
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) row = xn_affine_row_avx512;
    else if (xn_is_avx2(isa)) row = xn_affine_row_avx2;
    else if (isa == XN_ISA_SCALAR) row = xn_affine_row_scalar;
#endif
    (void)isa;
    XN_TEAM_FOR(threads, rows * k > (1 << 16), r, rows, row(x + r * k, sc, sh, k, words, out + r * words););
}

/* BatchNorm -> sign -> pack in one pass, so the activations between binary layers never exist
 * as a float tensor. x is (rows, pixels, c) channels-last; y = x * scale[ch] + shift[ch];
 * bit = y < 0, packed per row as one stream of pixels*c bits. If absmean is given it receives
 * mean_c |y| per pixel (XNOR-Net's A, from which K = box-filter(A)). */
/* Row r of xn_bn_sign_pack. */
static inline void xn_bn_sign_row(const float *x, int64_t r, int64_t pixels, int64_t c,
                                  const float *scale, const float *shift, int64_t words,
                                  uint64_t *out, float *absmean) {
    const float *xr = x + r * pixels * c;
    uint64_t *o = out + r * words;
    memset(o, 0, (size_t)words * sizeof(uint64_t));
    for (int64_t p = 0; p < pixels; ++p) {
        float acc = 0.0f;
        const int64_t base = p * c;
        for (int64_t ch = 0; ch < c; ++ch) {
            const float y = xr[base + ch] * scale[ch] + shift[ch];
            const int64_t bit = base + ch;
            o[bit >> 6] |= (uint64_t)(y < 0.0f) << (bit & 63);
            acc += y < 0.0f ? -y : y;
        }
        if (absmean) absmean[r * pixels + p] = acc / (float)c;
    }
}

static void xn_bn_sign_pack(const float *x, int64_t rows, int64_t pixels, int64_t c,
                            const float *scale, const float *shift, int64_t words, uint64_t *out,
                            float *absmean, int threads) {
    XN_TEAM_FOR(threads, rows * pixels * c > (1 << 16), r, rows,
                xn_bn_sign_row(x, r, pixels, c, scale, shift, words, out, absmean););
}

#endif /* XN_SIGNPACK_H */
