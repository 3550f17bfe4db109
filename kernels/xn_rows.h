/* Where the GEMM reads its A rows: a matrix of explicit rows, or a conv's implicit im2col.
 *
 * An im2col row of a kh x kw conv is kh segments, one per kernel row, each the kw-pixel window
 * of one input row. Materialising all of them writes every window kh times over (M x kh x sw
 * words) and reads it back from memory. The implicit form writes each input row's windows once,
 * into a table with `pad` zero rows above and below each image (xn_im2col.h, xn_window_row), and
 * the microkernels walk a row's kh segments there: segment i of output pixel (b, oh, ow) is window
 * ow of padded input row b * hp + oh * stride + i, so a row is a base pointer and kh segments
 * `seg_stride` words apart. The kernels walk it through a table of word offsets (word w of a row
 * at base + off[w]), so the K loop runs straight over all the words, not over segments of two
 * words each (LeNet's conv2: restarting the loop per segment cost a fifth of its GEMM). Explicit
 * rows have no table (off NULL): word w at base + w.
 * The table is a third of an im2col matrix for a 3 x 3 conv (and less for 5 x 5).
 * When every pixel is whole words (C a multiple of 64: ResNet, AlexNet, NIN), a window is a run of
 * words of its input row, so there is no table at all: the rows are read in place in the packed
 * input, stored with `pad` zero pixels on both sides and `pad` zero rows above and below each image
 * (xn_layer.h, xn_conv_in_place), a row's base `col_step` = stride * C / 64 words from the next
 * pixel's and its segments one padded input row (`seg_stride` words) apart.
 */
#ifndef XN_ROWS_H
#define XN_ROWS_H

#include <stdint.h>
#include <string.h>

/* Rows longer than this (words) keep the explicit im2col: the gathering block kernels stage a few
 * rows on the stack. 1024 words is a 3 x 3 conv over about 7270 channels. */
#define XN_MAX_IMPLICIT_WORDS 1024

typedef struct {
    const uint64_t *a; /* explicit: row m at a + m * seg_words; implicit: the window table */
    int64_t nseg;      /* segments per row: 1 for explicit rows, kh for a conv's windows */
    int64_t seg_words; /* words per segment */
    int64_t seg_stride; /* words from one segment of a row to the next, one (padded) input row:
                           wo * seg_words in the table, (w + 2 pad) * C / 64 in place */
    int64_t ho, wo, hp, stride; /* implicit only: output size, padded input rows per image */
    const int64_t *off;         /* implicit only: nseg * seg_words word offsets, xn_word_offsets */
    int64_t col_step; /* implicit only: words from output pixel ow's row to ow + 1's */
} xn_arows;

static inline xn_arows xn_explicit_rows(const uint64_t *a, int64_t words) {
    xn_arows s = {a, 1, words, words, 1, 1, 1, 1, NULL, words};
    return s;
}

/* off[i * seg_words + q] = i * seg_stride + q: where word w of an implicit row lies. */
static inline void xn_word_offsets(const xn_arows *s, int64_t *off) {
    for (int64_t i = 0; i < s->nseg; ++i)
        for (int64_t q = 0; q < s->seg_words; ++q) off[i * s->seg_words + q] = i * s->seg_stride + q;
}

/* The base pointers of rows m0 .. m0 + mr - 1, the missing rows of a short block (rows < mr)
 * clamped to the last real one. One division for the block, then steps: a LeNet conv2 block of
 * six rows is only about 250 vector instructions long. */
static inline void xn_row_bases(const xn_arows *s, int64_t m0, int64_t rows, int mr,
                                const uint64_t **base) {
    if (s->nseg == 1) {
        for (int r = 0; r < mr; ++r) base[r] = s->a + (m0 + (r < rows ? r : rows - 1)) * s->seg_words;
        return;
    }
    const int64_t img = s->ho * s->wo;
    int64_t b = m0 / img, oh = (m0 - b * img) / s->wo, ow = m0 - b * img - oh * s->wo;
    for (int r = 0; r < rows; ++r) {
        base[r] = s->a + (b * s->hp + oh * s->stride) * s->seg_stride + ow * s->col_step;
        if (++ow == s->wo) {
            ow = 0;
            if (++oh == s->ho) oh = 0, ++b;
        }
    }
    for (int r = (int)rows; r < mr; ++r) base[r] = base[rows - 1];
}

/* The rows' words as a plain (mr, nseg * seg_words) matrix, for the kernels that read rows whole:
 * `buf` must hold mr * XN_MAX_IMPLICIT_WORDS words. Explicit rows need no copy. */
static inline const uint64_t *xn_gather_rows(const xn_arows *s, int64_t m0, int64_t rows, int mr,
                                             uint64_t *buf) {
    if (s->nseg == 1) return s->a + m0 * s->seg_words;
    const uint64_t *base[32];
    const int64_t words = s->nseg * s->seg_words;
    xn_row_bases(s, m0, rows, mr, base);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t w = 0; w < words; ++w) buf[r * words + w] = base[r][s->off[w]];
    return buf;
}

#endif /* XN_ROWS_H */
