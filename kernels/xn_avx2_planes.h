/* The AVX2 GEMM on nibble planes, for CPUs without a vector popcount (Haswell to Zen 3).
 *
 * vpshufb counts 4 bits per byte, so a byte of a XOR b takes two lookups. Looking up whole bytes
 * (xn_micro_avx2.h) also splits every product into its nibbles: xor, srli, and, and, 2 vpshufb,
 * 2 adds = 8 vector ops per ymm. Split once instead, ahead of the GEMM, into a low plane
 * v & 0x0f.. and a high plane (v >> 4) & 0x0f.. of both operands: XOR commutes with the split,
 * so popcount(a ^ b) per byte = lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi], 6 ops per ymm.
 *
 *   B: split once per weight matrix (xn_nibble_planes): panel p, word w holds the 16 columns'
 *      low nibbles then their high nibbles, [p][w][2][XN_NR] (xn_panel_width(XN_ISA_AVX2) = 32).
 *   A: split per row block (XN_MR_AVX2_PLANES = 24 rows) into a stack buffer and reused against
 *      every panel of the block; K is staged at most XN_PLANES_CHUNK words at a time, so the
 *      buffer stays near L1 size (30 KiB at most) whatever K is (a VGG fc layer has 392 words).
 *      80 words measured faster than 40 on Zen 4 (ResNet's 4608-bit K is then one chunk, and
 *      the counts need no round trip between chunks) though buffer and panel overflow L1.
 *
 * Byte counts: each lookup is <= 4, so a word adds <= 8 per byte, as before; vpsadbw folds them
 * into 64-bit column counts every 31 words (31 x 8 = 248 <= 255).
 *
 * Measured on Zen 4 (1 core): the microkernel alone runs at 1.67 cycles per ymm product against
 * 2.15 for the byte lookup (6 vs 8 ops on 4 vector pipes, 2 of them for vpshufb); in the GEMM,
 * with the A staging and the row stores (xn_store_row_avx2), about 1.9 against 2.35.
 */
#ifndef XN_AVX2_PLANES_H
#define XN_AVX2_PLANES_H

#include <stdint.h>
#include <string.h>

#include "xn_dispatch.h"
#include "xn_epilogue.h"
#include "xn_rows.h"

#define XN_PLANES_CHUNK 80 /* at most this many words of K staged at once (K split evenly) */
#define XN_PLANES_GROUP 4  /* panels whose counts are kept while K goes by chunk */
#define XN_NIBBLES 0x0f0f0f0f0f0f0f0full

/* B panels [npanels][words][XN_NR] -> nibble planes [npanels][words][2][XN_NR], once per matrix. */
static void xn_nibble_planes(const uint64_t *panels, int64_t npanels, int64_t words, uint64_t *planes) {
    for (int64_t i = 0; i < npanels * words; ++i) {
        const uint64_t *v = panels + i * XN_NR;
        uint64_t *lo = planes + i * 2 * XN_NR, *hi = lo + XN_NR;
        for (int j = 0; j < XN_NR; ++j) {
            lo[j] = v[j] & XN_NIBBLES;
            hi[j] = (v[j] >> 4) & XN_NIBBLES;
        }
    }
}

#ifdef XN_X86
#define XN_PR 3 /* rows of one microkernel call (XN_MR_AVX2_PLANES is a multiple) */

/* Words [w0, w0 + cw) of the block's rows as planes, micro-block by micro-block:
 * [rows / XN_PR][cw][XN_PR][2], so each microkernel call reads one contiguous stream. The missing
 * rows of a short block repeat the last real one (their counts are never stored). */
static inline void xn_stage_planes(const xn_arows *A, const uint64_t *const *base, int64_t rows,
                                   int64_t w0, int64_t cw, uint64_t *stage) {
    for (int64_t mb = 0; mb * XN_PR < rows; ++mb) {
        const uint64_t *const *src = base + mb * XN_PR;
        uint64_t *dst = stage + mb * cw * XN_PR * 2;
        for (int64_t w = w0; w < w0 + cw; ++w, dst += XN_PR * 2) { /* in order, 48 bytes a word */
            const int64_t at = A->off ? A->off[w] : w;
            for (int r = 0; r < XN_PR; ++r) {
                const uint64_t v = src[r][at];
                dst[2 * r] = v & XN_NIBBLES;
                dst[2 * r + 1] = (v >> 4) & XN_NIBBLES;
            }
        }
    }
}

/* cnt[r][j] += sum over the cw staged words of popcount(a[r][w] ^ b[w][j]), XN_PR rows x 16
 * columns, 8 columns (two ymm) per pass over the words; a last panel of <= 8 real columns
 * runs one pass. */
XN_TARGET_AVX2 static inline void xn_micro_avx2_planes(const uint64_t *stage, const uint64_t *bp,
                                                       int64_t cw, int64_t ncols, uint64_t *cnt) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i zero = _mm256_setzero_si256();
    const int halves = ncols > 8 ? 2 : 1;
    for (int half = 0; half < halves; ++half) {
        int64_t w = 0;
        while (w < cw) {
            const int64_t stop = cw - w > 31 ? w + 31 : cw;
            __m256i c[XN_PR][2];
#pragma GCC unroll 8
            for (int r = 0; r < XN_PR; ++r) c[r][0] = c[r][1] = zero;
            for (; w < stop; ++w) {
                const uint64_t *b = bp + w * 2 * XN_NR + half * 8;
                const __m256i lo0 = _mm256_loadu_si256((const __m256i *)b);
                const __m256i lo1 = _mm256_loadu_si256((const __m256i *)(b + 4));
                const __m256i hi0 = _mm256_loadu_si256((const __m256i *)(b + XN_NR));
                const __m256i hi1 = _mm256_loadu_si256((const __m256i *)(b + XN_NR + 4));
                const uint64_t *s = stage + w * XN_PR * 2;
#pragma GCC unroll 8
                for (int r = 0; r < XN_PR; ++r) {
                    const __m256i alo = _mm256_set1_epi64x((long long)s[2 * r]);
                    const __m256i ahi = _mm256_set1_epi64x((long long)s[2 * r + 1]);
                    c[r][0] = _mm256_add_epi8(c[r][0], _mm256_shuffle_epi8(lut, _mm256_xor_si256(alo, lo0)));
                    c[r][0] = _mm256_add_epi8(c[r][0], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ahi, hi0)));
                    c[r][1] = _mm256_add_epi8(c[r][1], _mm256_shuffle_epi8(lut, _mm256_xor_si256(alo, lo1)));
                    c[r][1] = _mm256_add_epi8(c[r][1], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ahi, hi1)));
                }
            }
            /* fold through memory: the 64-bit sums stay out of the registers the loop needs */
#pragma GCC unroll 8
            for (int r = 0; r < XN_PR; ++r)
                for (int j = 0; j < 2; ++j) {
                    __m256i *dst = (__m256i *)(cnt + r * XN_NR + half * 8 + 4 * j);
                    _mm256_storeu_si256(dst, _mm256_add_epi64(_mm256_loadu_si256(dst),
                                                              _mm256_sad_epu8(c[r][j], zero)));
                }
        }
    }
}

/* One block of `rows` <= XN_MR_AVX2_PLANES rows (several microkernel row blocks) against
 * panels [p0, p1) of nibble planes `bplanes`, in the shape of the other block functions
 * (xn_bgemm.h). A panel's chunk of planes stays in L1 while every micro row block of the block
 * runs against it, and the staged A chunk stays there while XN_PLANES_GROUP panels go by: both
 * operands are read from L1, not the B panels streamed from L2 per 3 rows. */
XN_TARGET_AVX2 static void xn_block_avx2_planes(const xn_arows *A, int64_t rows, int64_t m0,
                                                const uint64_t *bplanes, int64_t n, int64_t words,
                                                const xn_epilogue *e, int64_t p0, int64_t p1) {
    uint64_t stage[XN_MR_AVX2_PLANES * XN_PLANES_CHUNK * 2] __attribute__((aligned(64)));
    uint64_t cnt[XN_PLANES_GROUP][XN_MR_AVX2_PLANES * XN_NR] __attribute__((aligned(64)));
    const int64_t chunks = (words + XN_PLANES_CHUNK - 1) / XN_PLANES_CHUNK;
    const int64_t micro_blocks = (rows + XN_PR - 1) / XN_PR;
    const uint64_t *base[XN_MR_AVX2_PLANES];
    xn_row_bases(A, m0, rows, XN_MR_AVX2_PLANES, base);
    const int32_t *crow[XN_MR_AVX2_PLANES];
    xn_corr_rows(e, m0, rows, crow);
    for (int64_t g0 = p0; g0 < p1; g0 += XN_PLANES_GROUP) {
        const int64_t g1 = p1 - g0 < XN_PLANES_GROUP ? p1 : g0 + XN_PLANES_GROUP;
        for (int64_t p = g0; p < g1; ++p)
            memset(cnt[p - g0], 0, (size_t)(micro_blocks * XN_PR * XN_NR) * sizeof(uint64_t));
        for (int64_t ch = 0; ch < chunks; ++ch) {
            const int64_t w0 = words * ch / chunks, cw = words * (ch + 1) / chunks - w0;
            if (chunks > 1 || g0 == p0) xn_stage_planes(A, base, rows, w0, cw, stage);
            for (int64_t p = g0; p < g1; ++p) {
                const int64_t ncols = n - p * XN_NR < XN_NR ? n - p * XN_NR : XN_NR;
                const uint64_t *bp = bplanes + (p * words + w0) * 2 * XN_NR;
                for (int64_t mb = 0; mb < micro_blocks; ++mb)
                    xn_micro_avx2_planes(stage + mb * cw * XN_PR * 2, bp, cw, ncols,
                                         cnt[p - g0] + mb * XN_PR * XN_NR);
            }
        }
        for (int64_t p = g0; p < g1; ++p) {
            const int64_t ncols = n - p * XN_NR < XN_NR ? n - p * XN_NR : XN_NR;
            for (int64_t r = 0; r < rows; ++r)
                xn_store_row_avx2(e, m0 + r, crow[r], p * XN_NR, ncols, cnt[p - g0] + r * XN_NR);
        }
    }
}

#endif /* XN_X86 */

#endif /* XN_AVX2_PLANES_H */
