/* The binary GEMM: per-ISA XNOR-popcount microkernels, the row-block driver and the output
 * transform fused into it, so the int32 dots never make a round trip through memory.
 *
 * Layouts:
 *   A: M rows of `words` uint64 (one row per output pixel / sample).
 *   B: packed into panels of XN_NR columns, panel p holds B[p*NR + j][w] at [p][w][j]
 *      (zero columns pad the last panel), so the microkernels broadcast one A word and
 *      XOR it with NR columns at once, accumulating 64-bit counts per column.
 */
#ifndef XN_BGEMM_H
#define XN_BGEMM_H

#include <stdint.h>
#include <stdlib.h>
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

/* ------------------------------------------------------------------------------------------ */
/* Microkernels: counts[r][j] = sum_w popcount(a[r][w] ^ panel[w][j]) for MR rows, NR columns. */

#define XN_DEFINE_SCALAR_MICRO(NAME, ATTR)                                                     \
    ATTR static void NAME(const uint64_t *a, int64_t lda, const uint64_t *panel, int64_t words, \
                          uint64_t *cnt) {                                                     \
        (void)lda;                                                                             \
        uint64_t acc[XN_NR] = {0};                                                             \
        for (int64_t w = 0; w < words; ++w) {                                                  \
            const uint64_t x = a[w];                                                           \
            const uint64_t *b = panel + w * XN_NR;                                             \
            for (int j = 0; j < XN_NR; ++j) acc[j] += (uint64_t)__builtin_popcountll(x ^ b[j]); \
        }                                                                                      \
        memcpy(cnt, acc, sizeof acc);                                                          \
    }

XN_DEFINE_SCALAR_MICRO(xn_micro_generic, )
#ifdef XN_X86
XN_DEFINE_SCALAR_MICRO(xn_micro_scalar, XN_TARGET_POPCNT)

/* AVX2 has no vector popcount: nibble lookup with vpshufb gives byte counts (<= 8 each), summed
 * in bytes for up to 31 words, then vpsadbw folds the bytes of each 64-bit column into a count. */
#define XN_AVX2_POPCNT8(x)                                                                     \
    _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256((x), low)),                      \
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16((x), 4), low)))

XN_TARGET_AVX2 static void xn_micro_avx2(const uint64_t *a, int64_t lda, const uint64_t *panel,
                                         int64_t words, uint64_t *cnt) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
        __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero, s20 = zero, s21 = zero;
        int64_t w = 0;
        while (w < words) {
            const int64_t stop = words - w > 31 ? w + 31 : words;
            __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
            for (; w < stop; ++w) {
                const uint64_t *b = panel + w * XN_NR + half * 8;
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 4));
                const __m256i a0 = _mm256_set1_epi64x((long long)a[w]);
                const __m256i a1 = _mm256_set1_epi64x((long long)a[lda + w]);
                const __m256i a2 = _mm256_set1_epi64x((long long)a[2 * lda + w]);
                __m256i x;
                x = _mm256_xor_si256(a0, b0); c00 = _mm256_add_epi8(c00, XN_AVX2_POPCNT8(x));
                x = _mm256_xor_si256(a0, b1); c01 = _mm256_add_epi8(c01, XN_AVX2_POPCNT8(x));
                x = _mm256_xor_si256(a1, b0); c10 = _mm256_add_epi8(c10, XN_AVX2_POPCNT8(x));
                x = _mm256_xor_si256(a1, b1); c11 = _mm256_add_epi8(c11, XN_AVX2_POPCNT8(x));
                x = _mm256_xor_si256(a2, b0); c20 = _mm256_add_epi8(c20, XN_AVX2_POPCNT8(x));
                x = _mm256_xor_si256(a2, b1); c21 = _mm256_add_epi8(c21, XN_AVX2_POPCNT8(x));
            }
            s00 = _mm256_add_epi64(s00, _mm256_sad_epu8(c00, zero));
            s01 = _mm256_add_epi64(s01, _mm256_sad_epu8(c01, zero));
            s10 = _mm256_add_epi64(s10, _mm256_sad_epu8(c10, zero));
            s11 = _mm256_add_epi64(s11, _mm256_sad_epu8(c11, zero));
            s20 = _mm256_add_epi64(s20, _mm256_sad_epu8(c20, zero));
            s21 = _mm256_add_epi64(s21, _mm256_sad_epu8(c21, zero));
        }
        uint64_t *c = cnt + half * 8;
        _mm256_storeu_si256((__m256i *)(c), s00);
        _mm256_storeu_si256((__m256i *)(c + 4), s01);
        _mm256_storeu_si256((__m256i *)(c + XN_NR), s10);
        _mm256_storeu_si256((__m256i *)(c + XN_NR + 4), s11);
        _mm256_storeu_si256((__m256i *)(c + 2 * XN_NR), s20);
        _mm256_storeu_si256((__m256i *)(c + 2 * XN_NR + 4), s21);
    }
}

/* AVX-512 VPOPCNTDQ: 6 rows x 16 columns, twelve zmm accumulators of 64-bit counts. */
XN_TARGET_AVX512 static void xn_micro_avx512(const uint64_t *a, int64_t lda,
                                             const uint64_t *panel, int64_t words,
                                             uint64_t *cnt) {
    __m512i acc[6][2];
    for (int r = 0; r < 6; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (int64_t w = 0; w < words; ++w) {
        const __m512i b0 = _mm512_loadu_si512((const void *)(panel + w * XN_NR));
        const __m512i b1 = _mm512_loadu_si512((const void *)(panel + w * XN_NR + 8));
        for (int r = 0; r < 6; ++r) {
            const __m512i av = _mm512_set1_epi64((long long)a[r * lda + w]);
            acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_xor_si512(av, b0)));
            acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_xor_si512(av, b1)));
        }
    }
    for (int r = 0; r < 6; ++r) {
        _mm512_storeu_si512((void *)(cnt + r * XN_NR), acc[r][0]);
        _mm512_storeu_si512((void *)(cnt + r * XN_NR + 8), acc[r][1]);
    }
}
#endif /* XN_X86 */

/* One block of MR rows against every panel, compiled per ISA so the microkernel is inlined and
 * the epilogue is vectorized with that ISA too. */
#define XN_DEFINE_BLOCK(NAME, ATTR, MICRO)                                                      \
    ATTR static void NAME(const uint64_t *ablk, int64_t rows, int64_t m0, const uint64_t *panels, \
                          int64_t n, int64_t words, const xn_epilogue *e) {                      \
        uint64_t cnt[6 * XN_NR];                                                                \
        const int64_t npanels = (n + XN_NR - 1) / XN_NR;                                        \
        for (int64_t p = 0; p < npanels; ++p) {                                                 \
            MICRO(ablk, words, panels + p * words * XN_NR, words, cnt);                         \
            const int64_t n0 = p * XN_NR;                                                       \
            const int64_t ncols = n - n0 < XN_NR ? n - n0 : XN_NR;                              \
            for (int64_t r = 0; r < rows; ++r) xn_store_row(e, m0 + r, n0, ncols, cnt + r * XN_NR); \
        }                                                                                       \
    }

typedef void (*xn_block_fn)(const uint64_t *, int64_t, int64_t, const uint64_t *, int64_t, int64_t,
                            const xn_epilogue *);

XN_DEFINE_BLOCK(xn_block_generic, , xn_micro_generic)
#ifdef XN_X86
XN_DEFINE_BLOCK(xn_block_scalar, XN_TARGET_POPCNT, xn_micro_scalar)
XN_DEFINE_BLOCK(xn_block_avx2, XN_TARGET_AVX2, xn_micro_avx2)
XN_DEFINE_BLOCK(xn_block_avx512, XN_TARGET_AVX512, xn_micro_avx512)
#endif

static xn_block_fn xn_block_for(int isa) {
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) return xn_block_avx512;
    if (isa == XN_ISA_AVX2) return xn_block_avx2;
    if (isa == XN_ISA_SCALAR) return xn_block_scalar;
#endif
    (void)isa;
    return xn_block_generic;
}

/* C = A (m x words) "xnor-dot" B (n columns, packed in panels), with the fused epilogue.
 * Row blocks are split over `threads` OpenMP threads; returns -1 on allocation failure. */
static int xn_bgemm(int isa, const uint64_t *a, int64_t m, const uint64_t *panels, int64_t n,
                    int64_t words, const xn_epilogue *e, int threads) {
    const int mr = xn_micro_rows(isa);
    const xn_block_fn block = xn_block_for(isa);
    const int64_t blocks = (m + mr - 1) / mr;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t m0 = blk * mr;
        const int64_t rows = m - m0 < mr ? m - m0 : mr;
        if (rows == mr) {
            block(a + m0 * words, rows, m0, panels, n, words, e);
            continue;
        }
        /* the last partial block runs on zero-padded rows */
        uint64_t *tail = (uint64_t *)calloc((size_t)(mr * words + 1), sizeof(uint64_t));
        if (!tail) {
            failed = 1;
            continue;
        }
        memcpy(tail, a + m0 * words, (size_t)(rows * words) * sizeof(uint64_t));
        block(tail, rows, m0, panels, n, words, e);
        free(tail);
    }
    return failed ? -1 : 0;
}

#endif /* XN_BGEMM_H */
