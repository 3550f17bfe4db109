/* The former GEMM microkernel for AVX2 CPUs, which have no vector popcount (Haswell to Zen 3):
 * vpshufb nibble lookup on 16 columns of 3 rows, each product split into its nibbles in the
 * loop. The nibble-plane kernel (xn_avx2_planes.h) replaced it; it runs as XN_ISA_AVX2_LOOKUP
 * so the bench can still time the two side by side. (Counting 4 of the 16 columns with scalar
 * POPCNT beside the lookup, to keep both kinds of port busy, measured 0.78x of this on Zen 4.)
 * Same arguments as the other microkernels (xn_bgemm.h): `rows` <= MR rows (missing rows read
 * the last real one), `ncols` <= 16 real columns of the panel.
 */
#ifndef XN_MICRO_AVX2_H
#define XN_MICRO_AVX2_H

#include <stdint.h>

#include "xn_dispatch.h"

#ifdef XN_X86
/* Byte counts (<= 8 each) of a ymm: low and high nibbles looked up with vpshufb. Byte sums are
 * folded into 64-bit column counts by vpsadbw before they can overflow (31 words x 8). */
#define XN_AVX2_POPCNT8(x)                                                                     \
    _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256((x), low)),                      \
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16((x), 4), low)))
#define XN_AVX2_LUT                                                                            \
    _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, \
                     2, 2, 3, 2, 3, 3, 4)

XN_TARGET_AVX2 static void xn_micro_avx2(const uint64_t *a, int64_t lda, int rows,
                                         const uint64_t *panel, int64_t words, int64_t ncols,
                                             uint64_t *cnt) {
    const __m256i lut = XN_AVX2_LUT;
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    const uint64_t *r0 = a, *r1 = a + (rows > 1) * lda, *r2 = a + (rows > 2 ? 2 : rows - 1) * lda;
    const int halves = ncols > 8 ? 2 : 1;
    for (int half = 0; half < halves; ++half) {
        __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero, s20 = zero, s21 = zero;
        int64_t w = 0;
        while (w < words) {
            const int64_t stop = words - w > 31 ? w + 31 : words;
            __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
            for (; w < stop; ++w) {
                const uint64_t *b = panel + w * XN_NR + half * 8;
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 4));
                const __m256i a0 = _mm256_set1_epi64x((long long)r0[w]);
                const __m256i a1 = _mm256_set1_epi64x((long long)r1[w]);
                const __m256i a2 = _mm256_set1_epi64x((long long)r2[w]);
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

#endif /* XN_X86 */

#endif /* XN_MICRO_AVX2_H */
