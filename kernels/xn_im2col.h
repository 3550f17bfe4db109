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

typedef struct {
    int64_t batch, h, c, row_words, kh, kw, stride, pad, ho, wo;
} xn_conv_geom;

/* The im2col rows of output image row `bo` = (b, oh): wo rows of kh segments. A segment that
 * lies inside its source row takes the fast path (a copy when it starts on a word boundary, as
 * with C % 64 == 0, else one funnel shift per word without bounds checks); only segments at the
 * image border go through xn_get_bits, which reads outside words as 0. */
static inline void xn_im2col_row(const uint64_t *x, const xn_conv_geom *g, int64_t bo,
                                 uint64_t *out) {
    const int64_t seg_bits = g->kw * g->c;
    const int64_t sw = (seg_bits + 63) / 64;
    const uint64_t last_mask = seg_bits % 64 ? (((uint64_t)1 << (seg_bits % 64)) - 1) : ~(uint64_t)0;
    const int64_t out_words = g->kh * sw;
    const int64_t b = bo / g->ho, oh = bo % g->ho;
    for (int64_t ow = 0; ow < g->wo; ++ow) {
        uint64_t *dst = out + (bo * g->wo + ow) * out_words;
        const int64_t start = (ow * g->stride - g->pad) * g->c;
        const int64_t wi = start >= 0 ? start / 64 : -1, r = start & 63;
        /* inside: every word read (wi .. wi + sw, the last only when r > 0) exists */
        const int inside = start >= 0 && wi + sw + (r > 0) <= g->row_words;
        for (int64_t i = 0; i < g->kh; ++i) {
            const int64_t ih = oh * g->stride - g->pad + i;
            uint64_t *seg = dst + i * sw;
            if (ih < 0 || ih >= g->h) {
                memset(seg, 0, (size_t)sw * sizeof(uint64_t));
                continue;
            }
            const uint64_t *src = x + (b * g->h + ih) * g->row_words;
            if (inside && r == 0) {
                memcpy(seg, src + wi, (size_t)sw * sizeof(uint64_t));
            } else if (inside) {
                const uint64_t *s = src + wi;
                for (int64_t q = 0; q < sw; ++q) seg[q] = (s[q] >> r) | (s[q + 1] << (64 - r));
            } else {
                for (int64_t q = 0; q < sw; ++q)
                    seg[q] = xn_get_bits(src, g->row_words, start + 64 * q);
            }
            seg[sw - 1] &= last_mask;
        }
    }
}

static void xn_im2col(const uint64_t *x, int64_t batch, int64_t h, int64_t c, int64_t row_words,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t ho, int64_t wo,
                      uint64_t *out, int threads) {
    const xn_conv_geom g = {batch, h, c, row_words, kh, kw, stride, pad, ho, wo};
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && batch * ho > 8)
    for (int64_t bo = 0; bo < batch * ho; ++bo) xn_im2col_row(x, &g, bo, out);
}

#endif /* XN_IM2COL_H */
