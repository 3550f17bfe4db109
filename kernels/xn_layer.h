/* A whole binary layer in one call and one parallel region: sign-pack (optionally after a
 * per-element affine, the fused BatchNorm/threshold), bit-im2col, then the GEMM with its output
 * transform. One region means one thread-team wake-up per layer instead of one per step, and the
 * workspaces come from the caller (a layer object keeps them across calls), so a call allocates
 * nothing and touches no fresh page. The team and its work split follow xn_team.h: work claimed
 * in chunks, one thread while the machine holds teams up.
 */
#ifndef XN_LAYER_H
#define XN_LAYER_H

#include <stdint.h>
#include <string.h>

#include "xn_bgemm.h"
#include "xn_bitpack.h"
#include "xn_dispatch.h"
#include "xn_im2col.h"
#include "xn_rows.h"
#include "xn_signpack.h"

typedef struct {
    const float *x;     /* (rows, k) float32 to sign-pack into `bits`, or NULL: bits are given */
    const float *scale; /* NULL, or (k) per-element scale and shift applied before the sign */
    const float *shift;
    int64_t rows, k;
    uint64_t *bits; /* (rows, row_words) */
    int64_t row_words;
    const xn_conv_geom *conv; /* NULL for a linear layer: the GEMM reads `bits` itself */
    uint64_t *cols; /* a conv's workspace (xn_conv_workspace): its padded input read in place,
                       its window table, or its (M, words) im2col */
} xn_layer_io;

/* Whether a conv runs the implicit im2col (xn_rows.h): always but for 1-row kernels, where the
 * table would be the im2col matrix itself, and rows too long for the gathering kernels. */
static inline int xn_conv_implicit(int64_t kh, int64_t kw, int64_t c) {
    return kh > 1 && kh * ((kw * c + 63) / 64) <= XN_MAX_IMPLICIT_WORDS;
}

/* Whether an implicit conv reads its rows in place (xn_rows.h): every pixel whole words (C a
 * multiple of 64), so a window is a run of words of its input row, and the GEMM reads a copy of
 * the packed input with `pad` zero pixels left and right and `pad` zero rows above and below each
 * image instead of a table of every window (ResNet-18's 64 x 56 x 56 at batch 2: the table cost
 * as much time as a tenth of the GEMM, and at batch 16 it left the L2). */
static inline int xn_conv_in_place(const xn_conv_geom *g) {
    return xn_conv_implicit(g->kh, g->kw, g->c) && g->c % 64 == 0;
}

/* Words of one padded input row read in place: row_words (W * C / 64) and pad pixels each side. */
static inline int64_t xn_padded_row_words(const xn_conv_geom *g) {
    return g->row_words + 2 * g->pad * (g->c / 64);
}

/* The (rows, words) uint64 workspace of a conv: the padded input it reads in place, the implicit
 * im2col's window table (wo windows of every padded input row), or the explicit im2col matrix. */
static inline void xn_conv_workspace(const xn_conv_geom *g, int64_t *rows, int64_t *words) {
    const int64_t sw = (g->kw * g->c + 63) / 64;
    if (xn_conv_in_place(g))
        *rows = g->batch * xn_padded_rows(g), *words = xn_padded_row_words(g);
    else if (xn_conv_implicit(g->kh, g->kw, g->c))
        *rows = g->batch * xn_padded_rows(g) * g->wo, *words = sw;
    else
        *rows = g->batch * g->ho * g->wo, *words = g->kh * sw;
}

/* Where packed input row r = (b, ih) lies in the padded copy of xn_conv_in_place: past its
 * row's left padding. */
static inline uint64_t *xn_in_place_row(const xn_conv_geom *g, uint64_t *cols, int64_t r) {
    const int64_t b = r / g->h, ih = r - b * g->h;
    return cols + (b * xn_padded_rows(g) + g->pad + ih) * xn_padded_row_words(g) + g->pad * (g->c / 64);
}

/* The left and right zero padding of a row placed at `row` (xn_in_place_row). */
static inline void xn_zero_row_sides(const xn_conv_geom *g, uint64_t *row) {
    const size_t side = (size_t)(g->pad * (g->c / 64)) * sizeof(uint64_t);
    if (!side) return;
    memset(row - g->pad * (g->c / 64), 0, side);
    memset(row + g->row_words, 0, side);
}

/* Row b * hp + ihp of the padded copy: zeros in a padding row; else, for packed input (`bits`
 * given: a float input was packed into place already), input row ihp - pad copied into place. */
static inline void xn_place_row(const uint64_t *bits, const xn_conv_geom *g, int64_t b, int64_t ihp,
                                uint64_t *cols) {
    const int64_t ih = ihp - g->pad;
    if (ih < 0 || ih >= g->h) {
        memset(cols + (b * xn_padded_rows(g) + ihp) * xn_padded_row_words(g), 0,
               (size_t)xn_padded_row_words(g) * sizeof(uint64_t));
    } else if (bits) {
        uint64_t *row = xn_in_place_row(g, cols, b * g->h + ih);
        memcpy(row, bits + (b * g->h + ih) * g->row_words, (size_t)g->row_words * sizeof(uint64_t));
        xn_zero_row_sides(g, row);
    }
}

/* Whether two threads' tiles can OR into one word of the emitted bits: rows of different row
 * blocks can when a pixel's n bits are not whole words, one row's panel groups can when a group
 * starts inside a word (a panel is 16 columns, a word 64). Then the ORs must be atomic, which
 * costs little beside the rest of a tile, but is not needed at all in the common case. */
static inline int xn_emit_shared(int64_t n, int64_t groups, int threads) {
    if (threads <= 1) return 0;
    if (n % 64) return 1;
    const int64_t npanels = (n + XN_NR - 1) / XN_NR;
    for (int64_t g = 1; g < groups; ++g)
        if ((g * npanels / groups) % 4) return 1;
    return 0;
}

/* Run the layer; M = batch*ho*wo rows for a conv, `rows` for a linear layer. */
static void xn_layer_forward(int isa, const xn_layer_io *io, const uint64_t *panels, int64_t n,
                             int64_t words, const xn_epilogue *e, int threads) {
    void (*pack)(const float *, int64_t, int64_t, uint64_t *) = xn_pack_row_generic;
    void (*affine)(const float *, const float *, const float *, int64_t, int64_t, uint64_t *) =
        xn_affine_row_generic;
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) pack = xn_pack_row_avx512, affine = xn_affine_row_avx512;
    else if (xn_is_avx2(isa)) pack = xn_pack_row_avx2, affine = xn_affine_row_avx2;
    else if (isa == XN_ISA_SCALAR) pack = xn_pack_row_scalar, affine = xn_affine_row_scalar;
#endif
    const xn_conv_geom *g = io->conv;
    xn_arows A = xn_explicit_rows(g ? io->cols : io->bits, words);
    const int64_t table_rows = g && xn_conv_implicit(g->kh, g->kw, g->c) ? g->batch * xn_padded_rows(g) : 0;
    const int in_place = table_rows && xn_conv_in_place(g);
    int64_t offsets[XN_MAX_IMPLICIT_WORDS]; /* read by every thread */
    if (table_rows) {
        A.nseg = g->kh, A.seg_words = (g->kw * g->c + 63) / 64;
        A.seg_stride = in_place ? xn_padded_row_words(g) : g->wo * A.seg_words;
        A.col_step = in_place ? g->stride * (g->c / 64) : A.seg_words;
        A.ho = g->ho, A.wo = g->wo, A.hp = xn_padded_rows(g), A.stride = g->stride;
        xn_word_offsets(&A, offsets);
        A.off = offsets;
    }
    int64_t inside_lo = 0, inside_hi = 0;
    if (table_rows) xn_inside_columns(g, A.seg_words, &inside_lo, &inside_hi);
    const int64_t m = g ? g->batch * g->ho * g->wo : io->rows;
    const int mr = xn_micro_rows(isa);
    const xn_block_fn block = xn_block_for(isa);
    const int64_t blocks = (m + mr - 1) / mr;
    xn_team_call call; /* the team, its tile split and its emission all follow call.team */
    xn_team_begin(&call, threads, 1);
    const int team = call.team;
    const int64_t groups = xn_panel_groups(blocks, n, team), tiles = blocks * groups;
    xn_epilogue ep = *e;
    ep.emit_halfwords = ep.emit_bits && n % 16 == 0 && ep.emit_row_words * 64 == ep.emit_pixels * n;
    ep.emit_atomic = ep.emit_bits && !ep.emit_halfwords ? xn_emit_shared(n, groups, team) : 0;
    const int64_t emit_streams = ep.emit_bits && !ep.emit_halfwords ? m / ep.emit_pixels : 0;
    const int64_t pack_chunk = xn_team_chunk(io->rows, team), tile_chunk = xn_team_chunk(tiles, team);
    const int64_t row_chunk = g ? xn_team_chunk(table_rows ? table_rows : g->batch * g->ho, team) : 1;
    /* Every step's work is claimed in chunks (xn_team.h), and each thread times only its loops:
     * the barriers between the steps are waits, not work. */
#pragma omp parallel num_threads(team) if (team > 1)
    {
        int64_t work = 0, mine = 0, t0 = xn_team_now(&call);
        if (emit_streams) { /* the store ORs bits in: start from zeros, padding bits included */
#pragma omp for schedule(dynamic, xn_team_chunk(emit_streams, team)) nowait
            for (int64_t r = 0; r < emit_streams; ++r)
                memset(ep.emit_bits + r * ep.emit_row_words, 0, (size_t)ep.emit_row_words * sizeof(uint64_t));
        }
        if (io->x) {
#pragma omp for schedule(dynamic, pack_chunk) nowait
            for (int64_t r = 0; r < io->rows; ++r) { /* in place: straight into the padded copy */
                uint64_t *dst = in_place ? xn_in_place_row(g, io->cols, r) : io->bits + r * io->row_words;
                if (io->scale)
                    affine(io->x + r * io->k, io->scale, io->shift, io->k, io->row_words, dst);
                else
                    pack(io->x + r * io->k, io->k, io->row_words, dst);
                if (in_place) xn_zero_row_sides(g, dst);
            }
            work += xn_team_now(&call) - t0;
#pragma omp barrier
            t0 = xn_team_now(&call);
        }
        if (in_place) {
#pragma omp for schedule(dynamic, row_chunk) collapse(2) nowait
            for (int64_t b = 0; b < g->batch; ++b)
                for (int64_t ihp = 0; ihp < A.hp; ++ihp) xn_place_row(io->x ? NULL : io->bits, g, b, ihp, io->cols);
        } else if (table_rows) {
#pragma omp for schedule(dynamic, row_chunk) collapse(2) nowait
            for (int64_t b = 0; b < g->batch; ++b)
                for (int64_t ihp = 0; ihp < A.hp; ++ihp)
                    xn_window_row(io->bits, g, b, ihp, inside_lo, inside_hi, io->cols);
        } else if (g) {
#pragma omp for schedule(dynamic, row_chunk) nowait
            for (int64_t bo = 0; bo < g->batch * g->ho; ++bo) xn_im2col_row(io->bits, g, bo, io->cols);
        }
        if (g || emit_streams) { /* the GEMM reads the im2col; the zeros must be in before any OR */
            work += xn_team_now(&call) - t0;
#pragma omp barrier
            t0 = xn_team_now(&call);
        }
#pragma omp for schedule(dynamic, tile_chunk) nowait
        for (int64_t t = 0; t < tiles; ++t) {
            xn_bgemm_tile(block, mr, &A, m, panels, n, words, &ep, groups, t);
            ++mine;
        }
        xn_team_leave(&call, work + xn_team_now(&call) - t0, mine);
    }
    xn_team_end(&call, tiles);
}

#endif /* XN_LAYER_H */
