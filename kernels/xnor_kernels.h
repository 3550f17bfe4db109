/* XNOR-popcount CPU kernels with runtime ISA dispatch.
 *
 * Bit convention (DESIGN.md): bit 1 <=> value < 0 (sign(0) = +1), bits packed little-endian
 * along the reduction axis into uint64 words, padding bits 0 in every operand, so a ±1 dot
 * product of length k is k - 2*popcount(a XOR b).
 *
 * Every ISA variant is compiled with a per-function target attribute and chosen at run time:
 * the library itself is built for the baseline x86-64, so it loads on any CPU.
 *
 * Layouts:
 *   A: M rows of `words` uint64 (one row per output pixel / sample).
 *   B: packed into panels of XN_NR columns, panel p holds B[p*NR + j][w] at [p][w][j]
 *      (zero columns pad the last panel), so the microkernels broadcast one A word and
 *      XOR it with NR columns at once, accumulating 64-bit counts per column.
 */
#ifndef XNOR_KERNELS_H
#define XNOR_KERNELS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define XN_X86 1
#include <immintrin.h>
#define XN_TARGET_POPCNT __attribute__((target("popcnt")))
#define XN_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define XN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt")))
#endif

#define XN_NR 16

enum { XN_ISA_GENERIC = 0, XN_ISA_SCALAR = 1, XN_ISA_AVX2 = 2, XN_ISA_AVX512 = 3 };

/* The best path this CPU (and OS) can run. */
static int xn_cpu_isa(void) {
#ifdef XN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt"))
        return XN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return XN_ISA_AVX2;
    if (__builtin_cpu_supports("popcnt")) return XN_ISA_SCALAR;
#endif
    return XN_ISA_GENERIC;
}

static int xn_micro_rows(int isa) {
    return isa == XN_ISA_AVX512 ? 6 : isa == XN_ISA_AVX2 ? 3 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Output transform fused into the GEMM, with dot' = dot - corr[m % P, n] (corr may be absent): */
/* either the int32 dot', or out[m, n] = alpha[n] * dot' * row_scale[m] + bias[n] as float32.   */

typedef struct {
    int32_t *out_i32;
    float *out_f32;
    const float *alpha;
    const float *bias;      /* may be NULL */
    const float *row_scale; /* may be NULL */
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

/* ------------------------------------------------------------------------------------------ */
/* Sign-packing float32 rows: bit i of word q is x[64q + i] < 0; bits past k are 0.            */

static inline uint64_t xn_pack64_generic(const float *x) {
    uint64_t bits = 0;
    for (int i = 0; i < 64; ++i) bits |= (uint64_t)(x[i] < 0.0f) << i;
    return bits;
}

#ifdef XN_X86
XN_TARGET_POPCNT static inline uint64_t xn_pack64_scalar(const float *x) {
    return xn_pack64_generic(x);
}

XN_TARGET_AVX2 static inline uint64_t xn_pack64_avx2(const float *x) {
    const __m256 zero = _mm256_setzero_ps();
    uint64_t bits = 0;
    for (int g = 0; g < 8; ++g) {
        const __m256 v = _mm256_loadu_ps(x + 8 * g);
        bits |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)) << (8 * g);
    }
    return bits;
}

XN_TARGET_AVX512 static inline uint64_t xn_pack64_avx512(const float *x) {
    const __m512 zero = _mm512_setzero_ps();
    uint64_t bits = 0;
    for (int g = 0; g < 4; ++g) {
        const __m512 v = _mm512_loadu_ps(x + 16 * g);
        bits |= (uint64_t)_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ) << (16 * g);
    }
    return bits;
}
#endif

#define XN_DEFINE_PACK_ROW(NAME, ATTR, PACK64)                                                  \
    ATTR static void NAME(const float *x, int64_t k, int64_t words, uint64_t *out) {            \
        const int64_t full = k / 64;                                                            \
        for (int64_t q = 0; q < full; ++q) out[q] = PACK64(x + 64 * q);                         \
        int64_t q = full;                                                                       \
        if (k % 64) {                                                                           \
            uint64_t bits = 0;                                                                  \
            for (int64_t i = 0; i < k % 64; ++i) bits |= (uint64_t)(x[64 * q + i] < 0.0f) << i; \
            out[q++] = bits;                                                                    \
        }                                                                                       \
        for (; q < words; ++q) out[q] = 0;                                                      \
    }

XN_DEFINE_PACK_ROW(xn_pack_row_generic, , xn_pack64_generic)
#ifdef XN_X86
XN_DEFINE_PACK_ROW(xn_pack_row_scalar, XN_TARGET_POPCNT, xn_pack64_scalar)
XN_DEFINE_PACK_ROW(xn_pack_row_avx2, XN_TARGET_AVX2, xn_pack64_avx2)
XN_DEFINE_PACK_ROW(xn_pack_row_avx512, XN_TARGET_AVX512, xn_pack64_avx512)
#endif

static void xn_pack_rows(int isa, const float *x, int64_t rows, int64_t k, int64_t words,
                         uint64_t *out, int threads) {
    void (*row)(const float *, int64_t, int64_t, uint64_t *) = xn_pack_row_generic;
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) row = xn_pack_row_avx512;
    else if (isa == XN_ISA_AVX2) row = xn_pack_row_avx2;
    else if (isa == XN_ISA_SCALAR) row = xn_pack_row_scalar;
#endif
    (void)isa;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * k > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) row(x + r * k, k, words, out + r * words);
}

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
    else if (isa == XN_ISA_AVX2) row = xn_affine_row_avx2;
    else if (isa == XN_ISA_SCALAR) row = xn_affine_row_scalar;
#endif
    (void)isa;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * k > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) row(x + r * k, sc, sh, k, words, out + r * words);
}

/* BatchNorm -> sign -> pack in one pass, so the activations between binary layers never exist
 * as a float tensor. x is (rows, pixels, c) channels-last; y = x * scale[ch] + shift[ch];
 * bit = y < 0, packed per row as one stream of pixels*c bits. If absmean is given it receives
 * mean_c |y| per pixel (XNOR-Net's A, from which K = box-filter(A)). */
static void xn_bn_sign_pack(const float *x, int64_t rows, int64_t pixels, int64_t c,
                            const float *scale, const float *shift, int64_t words, uint64_t *out,
                            float *absmean, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows * pixels * c > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
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
}

/* ------------------------------------------------------------------------------------------ */
/* Pooling on channels-last float32 (B, H, W, C) -> (B, Ho, Wo, C), the inner loop over the      */
/* contiguous channels. Max ignores padded positions; average counts them as 0 (PyTorch's        */
/* count_include_pad=True).                                                                      */

static void xn_pool_nhwc(const float *x, int64_t batch, int64_t h, int64_t w, int64_t c, int64_t k,
                         int64_t stride, int64_t pad, int is_max, int64_t ho, int64_t wo, float *out,
                         int threads) {
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && batch * ho * wo * c > (1 << 15))
    for (int64_t bo = 0; bo < batch * ho; ++bo) {
        const int64_t b = bo / ho, oh = bo % ho;
        for (int64_t ow = 0; ow < wo; ++ow) {
            float *o = out + (bo * wo + ow) * c;
            int first = 1;
            for (int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
            for (int64_t i = 0; i < k; ++i) {
                const int64_t ih = oh * stride - pad + i;
                if (ih < 0 || ih >= h) continue;
                for (int64_t j = 0; j < k; ++j) {
                    const int64_t iw = ow * stride - pad + j;
                    if (iw < 0 || iw >= w) continue;
                    const float *p = x + ((b * h + ih) * w + iw) * c;
                    if (is_max && first) {
                        for (int64_t ch = 0; ch < c; ++ch) o[ch] = p[ch];
                    } else if (is_max) {
                        for (int64_t ch = 0; ch < c; ++ch) o[ch] = p[ch] > o[ch] ? p[ch] : o[ch];
                    } else {
                        for (int64_t ch = 0; ch < c; ++ch) o[ch] += p[ch];
                    }
                    first = 0;
                }
            }
            if (!is_max)
                for (int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Bit-level im2col. The input is packed NHWC: each image row (W pixels x C channels) is one     */
/* bit stream of `row_words` words. Output row (b, oh, ow) holds, for each kernel row i, the     */
/* kw*C bits of its receptive field, padded to a word boundary. Positions outside the image read */
/* as bit 0 (+1); the caller removes their contribution with a precomputed correction.           */

static inline uint64_t xn_get_bits(const uint64_t *row, int64_t nwords, int64_t bit) {
    const int64_t wi = bit >= 0 ? bit / 64 : -((-bit + 63) / 64);
    const int r = (int)(bit - wi * 64);
    const uint64_t lo = (wi >= 0 && wi < nwords) ? row[wi] : 0;
    if (r == 0) return lo;
    const uint64_t hi = (wi + 1 >= 0 && wi + 1 < nwords) ? row[wi + 1] : 0;
    return (lo >> r) | (hi << (64 - r));
}

static void xn_im2col(const uint64_t *x, int64_t batch, int64_t h, int64_t c, int64_t row_words,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t ho, int64_t wo,
                      uint64_t *out, int threads) {
    const int64_t seg_bits = kw * c;
    const int64_t sw = (seg_bits + 63) / 64;
    const uint64_t last_mask = seg_bits % 64 ? (((uint64_t)1 << (seg_bits % 64)) - 1) : ~(uint64_t)0;
    const int64_t out_words = kh * sw;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && batch * ho > 8)
    for (int64_t bo = 0; bo < batch * ho; ++bo) {
        const int64_t b = bo / ho, oh = bo % ho;
        for (int64_t ow = 0; ow < wo; ++ow) {
            uint64_t *dst = out + (bo * wo + ow) * out_words;
            for (int64_t i = 0; i < kh; ++i) {
                const int64_t ih = oh * stride - pad + i;
                uint64_t *seg = dst + i * sw;
                if (ih < 0 || ih >= h) {
                    memset(seg, 0, (size_t)sw * sizeof(uint64_t));
                    continue;
                }
                const uint64_t *src = x + (b * h + ih) * row_words;
                const int64_t start = (ow * stride - pad) * c;
                for (int64_t q = 0; q < sw; ++q) seg[q] = xn_get_bits(src, row_words, start + 64 * q);
                seg[sw - 1] &= last_mask;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The per-core limit of the binary MAC step acc += popcount(a XOR b), measured with the same    */
/* instruction mix as the microkernels but no memory traffic. Returns binary ops per second      */
/* (2 per bit: the XNOR "multiply" and the popcount "add", as FLOPs count FMA as 2).            */

static volatile uint64_t xn_sink;

static double xn_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define XN_DEFINE_SCALAR_PEAK(NAME, ATTR)                                                      \
    ATTR static double NAME(int64_t iters) {                                                   \
        uint64_t acc[8] = {0}, v[8];                                                           \
        for (int i = 0; i < 8; ++i) v[i] = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);           \
        uint64_t s = xn_sink;                                                                  \
        const double t0 = xn_now();                                                            \
        for (int64_t it = 0; it < iters; ++it) {                                               \
            for (int i = 0; i < 8; ++i) acc[i] += (uint64_t)__builtin_popcountll(v[i] ^ s);    \
            s += 0x5851F42D4C957F2Dull;                                                        \
        }                                                                                      \
        const double dt = xn_now() - t0;                                                       \
        uint64_t t = 0;                                                                        \
        for (int i = 0; i < 8; ++i) t += acc[i];                                               \
        xn_sink = t;                                                                           \
        return 2.0 * 64.0 * 8.0 * (double)iters / dt;                                          \
    }

XN_DEFINE_SCALAR_PEAK(xn_peak_generic, )
#ifdef XN_X86
XN_DEFINE_SCALAR_PEAK(xn_peak_scalar, XN_TARGET_POPCNT)

XN_TARGET_AVX2 static double xn_peak_avx2(int64_t iters) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const __m256i step = _mm256_set1_epi64x(0x5851F42D4C957F2Dll);
    __m256i v[6], c[6], acc[6];
    for (int i = 0; i < 6; ++i) {
        v[i] = _mm256_set1_epi64x((long long)(0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
        acc[i] = zero;
    }
    __m256i s = _mm256_set1_epi64x((long long)xn_sink);
    const int64_t rounds = iters / 31 + 1;
    const double t0 = xn_now();
    for (int64_t r = 0; r < rounds; ++r) {
        for (int i = 0; i < 6; ++i) c[i] = zero;
        for (int it = 0; it < 31; ++it) {
            for (int i = 0; i < 6; ++i) {
                const __m256i x = _mm256_xor_si256(v[i], s);
                c[i] = _mm256_add_epi8(c[i], XN_AVX2_POPCNT8(x));
            }
            s = _mm256_add_epi64(s, step);
        }
        for (int i = 0; i < 6; ++i) acc[i] = _mm256_add_epi64(acc[i], _mm256_sad_epu8(c[i], zero));
    }
    const double dt = xn_now() - t0;
    uint64_t out[4], t = 0;
    for (int i = 0; i < 6; ++i) {
        _mm256_storeu_si256((__m256i *)out, acc[i]);
        t += out[0] + out[1] + out[2] + out[3];
    }
    xn_sink = t;
    return 2.0 * 256.0 * 6.0 * 31.0 * (double)rounds / dt;
}

XN_TARGET_AVX512 static double xn_peak_avx512(int64_t iters) {
    const __m512i step = _mm512_set1_epi64(0x5851F42D4C957F2Dll);
    __m512i v[12], acc[12];
    for (int i = 0; i < 12; ++i) {
        v[i] = _mm512_set1_epi64((long long)(0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
        acc[i] = _mm512_setzero_si512();
    }
    __m512i s = _mm512_set1_epi64((long long)xn_sink);
    const double t0 = xn_now();
    for (int64_t it = 0; it < iters; ++it) {
        for (int i = 0; i < 12; ++i)
            acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(v[i], s)));
        s = _mm512_add_epi64(s, step);
    }
    const double dt = xn_now() - t0;
    uint64_t t = 0;
    for (int i = 0; i < 12; ++i) t += (uint64_t)_mm512_reduce_add_epi64(acc[i]);
    xn_sink = t;
    return 2.0 * 512.0 * 12.0 * (double)iters / dt;
}
#endif

static double xn_popcount_peak(int isa, int64_t iters) {
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) return xn_peak_avx512(iters);
    if (isa == XN_ISA_AVX2) return xn_peak_avx2(iters);
    if (isa == XN_ISA_SCALAR) return xn_peak_scalar(iters);
#endif
    (void)isa;
    return xn_peak_generic(iters);
}

#endif /* XNOR_KERNELS_H */
