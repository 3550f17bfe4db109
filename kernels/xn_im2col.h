/* Bit-level im2col, so a binary conv2d is one binary GEMM on packed activations without
 * unpacking them to floats first.
 */
#ifndef XN_IM2COL_H
#define XN_IM2COL_H

#include <stdint.h>
#include <string.h>

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

#endif /* XN_IM2COL_H */
