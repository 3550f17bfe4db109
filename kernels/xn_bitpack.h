/* Sign-packing float32 rows into uint64 words, the first step of every binary operand, with
 * one 64-float compare per ISA; kept apart from the GEMM because it is also used alone
 * (pack_bits, pack_nhwc, the weights).
 */
#ifndef XN_BITPACK_H
#define XN_BITPACK_H

#include <stdint.h>

#include "xn_dispatch.h"
#include "xn_team.h"

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
    else if (xn_is_avx2(isa)) row = xn_pack_row_avx2;
    else if (isa == XN_ISA_SCALAR) row = xn_pack_row_scalar;
#endif
    (void)isa;
    XN_TEAM_FOR(threads, rows * k > (1 << 16), r, rows, row(x + r * k, k, words, out + r * words););
}

#endif /* XN_BITPACK_H */
