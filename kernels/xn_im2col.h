/* Bit-level im2col, so a binary conv2d is one binary GEMM on packed activations without
 * unpacking them to floats first.
 */
#ifndef XN_IM2COL_H
#define XN_IM2COL_H

#include <stdint.h>
#include <string.h>

#include "xn_team.h"

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

/* One segment at the image border, through xn_get_bits, which reads outside words as 0. */
static inline void xn_im2col_border(const uint64_t *src, const xn_conv_geom *g, int64_t start,
                                    int64_t sw, uint64_t last_mask, uint64_t *seg) {
    for (int64_t q = 0; q < sw; ++q) seg[q] = xn_get_bits(src, g->row_words, start + 64 * q);
    seg[sw - 1] &= last_mask;
}

/* Whether every window starts on a word boundary (C a multiple of 64, as in ResNet, AlexNet and
 * NIN): then windows are copies; otherwise funnel shifts. */
static inline int xn_windows_aligned(const xn_conv_geom *g) {
    return (g->stride * g->c) % 64 == 0 && (g->pad * g->c) % 64 == 0;
}

/* The output columns whose window lies inside the source row, [lo, hi): start >= 0 and every
 * word read exists: the window's words, and for the funnel shifts the word after them too. */
static inline void xn_inside_columns(const xn_conv_geom *g, int64_t sw, int64_t *lo, int64_t *hi) {
    const int64_t reads = sw + !xn_windows_aligned(g);
    int64_t ow_lo = 0, ow_hi = g->wo;
    while (ow_lo < g->wo && ow_lo * g->stride - g->pad < 0) ++ow_lo;
    while (ow_hi > ow_lo) {
        const int64_t start = ((ow_hi - 1) * g->stride - g->pad) * g->c;
        if (start / 64 + reads <= g->row_words) break;
        --ow_hi;
    }
    *lo = ow_lo, *hi = ow_hi;
}

/* Bits [r, r + 64) of the 128 bits hi:lo, for 0 <= r < 64 (r = 0 too: no branch, no UB). */
static inline uint64_t xn_funnel(uint64_t lo, uint64_t hi, int r) {
    return (lo >> r) | ((hi << 1) << (63 - r));
}

/* The wo windows (kw pixels, sw words each, `out_words` apart from seg0 on) of source row `src`:
 * the pixels whose window lies inside it (ow_lo <= ow < ow_hi) run a tight loop of copies or
 * funnel shifts without bounds checks or branches; only those at the image border, on either
 * side, go through xn_im2col_border. Each word is stored once, the last one masked in a register
 * (a masking read-modify-write of the stored word stalled on the store). */
static inline void xn_row_windows(const uint64_t *src, const xn_conv_geom *g, int64_t ow_lo,
                                  int64_t ow_hi, uint64_t *seg0, int64_t out_words) {
    const int64_t seg_bits = g->kw * g->c;
    const int64_t sw = (seg_bits + 63) / 64;
    const uint64_t last_mask = seg_bits % 64 ? (((uint64_t)1 << (seg_bits % 64)) - 1) : ~(uint64_t)0;
    const int64_t step = g->stride * g->c; /* bits from one pixel's window to the next */
    for (int64_t ow = 0; ow < ow_lo; ++ow)
        xn_im2col_border(src, g, (ow * g->stride - g->pad) * g->c, sw, last_mask, seg0 + ow * out_words);
    int64_t start = (ow_lo * g->stride - g->pad) * g->c;
    if (xn_windows_aligned(g)) {
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow, start += step) {
            const uint64_t *s = src + start / 64;
            uint64_t *seg = seg0 + ow * out_words;
            for (int64_t q = 0; q < sw - 1; ++q) seg[q] = s[q];
            seg[sw - 1] = s[sw - 1] & last_mask;
        }
    } else if (sw == 2) { /* LeNet's 5 x 20 channels */
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow, start += step) {
            const uint64_t *s = src + start / 64;
            const int r = (int)(start & 63);
            uint64_t *seg = seg0 + ow * out_words;
            seg[0] = xn_funnel(s[0], s[1], r);
            seg[1] = xn_funnel(s[1], s[2], r) & last_mask;
        }
    } else {
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow, start += step) {
            const uint64_t *s = src + start / 64;
            const int r = (int)(start & 63);
            uint64_t *seg = seg0 + ow * out_words;
            for (int64_t q = 0; q < sw - 1; ++q) seg[q] = xn_funnel(s[q], s[q + 1], r);
            seg[sw - 1] = xn_funnel(s[sw - 1], s[sw], r) & last_mask;
        }
    }
    for (int64_t ow = ow_hi; ow < g->wo; ++ow)
        xn_im2col_border(src, g, (ow * g->stride - g->pad) * g->c, sw, last_mask, seg0 + ow * out_words);
}

/* The im2col rows of output image row `bo` = (b, oh): wo rows of kh segments, written kernel
 * row by kernel row, so each source row is found once. */
static inline void xn_im2col_row(const uint64_t *x, const xn_conv_geom *g, int64_t bo,
                                 uint64_t *out) {
    const int64_t sw = (g->kw * g->c + 63) / 64;
    const int64_t out_words = g->kh * sw;
    const int64_t b = bo / g->ho, oh = bo % g->ho;
    uint64_t *rows = out + bo * g->wo * out_words;
    int64_t ow_lo, ow_hi;
    xn_inside_columns(g, sw, &ow_lo, &ow_hi);
    for (int64_t i = 0; i < g->kh; ++i) {
        const int64_t ih = oh * g->stride - g->pad + i;
        uint64_t *seg0 = rows + i * sw;
        if (ih < 0 || ih >= g->h) {
            for (int64_t ow = 0; ow < g->wo; ++ow) memset(seg0 + ow * out_words, 0, (size_t)sw * sizeof(uint64_t));
            continue;
        }
        xn_row_windows(x + (b * g->h + ih) * g->row_words, g, ow_lo, ow_hi, seg0, out_words);
    }
}

/* Padded input rows per image of the implicit im2col's window table (xn_rows.h). */
static inline int64_t xn_padded_rows(const xn_conv_geom *g) { return g->h + 2 * g->pad; }

/* Row b * hp + ihp of the window table: the wo windows of input row ihp - pad of image b, or
 * zeros (bit 0 reads as +1, which the border correction removes) in a padding row. [lo, hi):
 * xn_inside_columns, the same for every row. */
static inline void xn_window_row(const uint64_t *x, const xn_conv_geom *g, int64_t b, int64_t ihp,
                                 int64_t lo, int64_t hi, uint64_t *table) {
    const int64_t sw = (g->kw * g->c + 63) / 64, ih = ihp - g->pad;
    uint64_t *seg0 = table + (b * xn_padded_rows(g) + ihp) * g->wo * sw;
    if (ih < 0 || ih >= g->h)
        memset(seg0, 0, (size_t)(g->wo * sw) * sizeof(uint64_t));
    else
        xn_row_windows(x + (b * g->h + ih) * g->row_words, g, lo, hi, seg0, sw);
}

static void xn_im2col(const uint64_t *x, int64_t batch, int64_t h, int64_t c, int64_t row_words,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t ho, int64_t wo,
                      uint64_t *out, int threads) {
    const xn_conv_geom g = {batch, h, c, row_words, kh, kw, stride, pad, ho, wo};
    XN_TEAM_FOR(threads, batch * ho > 8, bo, batch * ho, xn_im2col_row(x, &g, bo, out););
}

#endif /* XN_IM2COL_H */
