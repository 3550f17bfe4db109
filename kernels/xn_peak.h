/* The measured per-core ceiling of the binary MAC step, the roofline the benchmarks compare
 * the GEMM against. Each path uses its GEMM's own popcount (for AVX2 the nibble-plane lookup of
 * xn_avx2_planes.h; for the former AVX2 kernel XN_AVX2_POPCNT8 of xn_micro_avx2.h) so the
 * ceiling is of the same instruction mix.
 */
#ifndef XN_PEAK_H
#define XN_PEAK_H

#include <stdint.h>
#include <time.h>

#include "xn_avx2_planes.h"
#include "xn_dispatch.h"
#include "xn_micro_avx2.h"

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

/* The nibble-plane kernel itself (xn_avx2_planes.h) on operands that stay in L1: 31 words of
 * 3 rows x 16 columns per call, so the limit has its loads, broadcasts and folds too. */
XN_TARGET_AVX2 static double xn_peak_avx2_planes(int64_t iters) {
    uint64_t stage[31 * XN_PR * 2], planes[31 * 2 * XN_NR], cnt[XN_PR * XN_NR] = {0};
    uint64_t v = 0x9E3779B97F4A7C15ull ^ xn_sink;
    for (int i = 0; i < 31 * XN_PR * 2; ++i) stage[i] = (v = v * 0x5851F42D4C957F2Dull + 1) & XN_NIBBLES;
    for (int i = 0; i < 31 * 2 * XN_NR; ++i) planes[i] = (v = v * 0x5851F42D4C957F2Dull + 1) & XN_NIBBLES;
    const int64_t calls = iters / 31 + 1;
    const double t0 = xn_now();
    for (int64_t c = 0; c < calls; ++c) xn_micro_avx2_planes(stage, planes, 31, XN_NR, cnt);
    const double dt = xn_now() - t0;
    uint64_t t = 0;
    for (int i = 0; i < XN_PR * XN_NR; ++i) t += cnt[i];
    xn_sink = t;
    return 2.0 * 64.0 * XN_PR * XN_NR * 31.0 * (double)calls / dt;
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
    if (isa == XN_ISA_AVX2) return xn_peak_avx2_planes(iters);
    if (isa == XN_ISA_AVX2_LOOKUP) return xn_peak_avx2(iters);
    if (isa == XN_ISA_SCALAR) return xn_peak_scalar(iters);
#endif
    (void)isa;
    return xn_peak_generic(iters);
}

#endif /* XN_PEAK_H */
