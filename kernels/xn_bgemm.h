/* The binary GEMM: per-ISA XNOR-popcount microkernels, the row-block driver and the output
 * transform (xn_epilogue.h) fused into it, so the int32 dots never make a round trip through
 * memory.
 *
 * Layouts:
 *   A: M rows of `words` uint64 (one row per output pixel / sample): a matrix, or a conv's
 *      implicit im2col, whose rows are kh windows in a table (xn_rows.h). The AVX-512 block
 *      reads them in place; the others gather (or stage) a block's rows first.
 *   B: packed into panels of XN_NR columns, panel p holds B[p*NR + j][w] at [p][w][j]
 *      (zero columns pad the last panel), so the microkernels broadcast one A word and
 *      XOR it with NR columns at once, accumulating 64-bit counts per column. The AVX2 path
 *      reads the panels split into nibble planes instead (xn_avx2_planes.h, xn_panel_width).
 *
 * A microkernel computes `rows` <= MR rows: the missing rows of a last, short row block read
 * the last real row again (their counts are never stored), so no row block needs a zero-padded
 * copy and the GEMM allocates nothing. `ncols` (<= NR) lets a wide kernel skip the zero columns
 * of a short last panel (N = 50 is 3 panels and 2 columns, not 4 panels).
 */
#ifndef XN_BGEMM_H
#define XN_BGEMM_H

#include <stdint.h>
#include <string.h>

#include "xn_avx2_planes.h"
#include "xn_dispatch.h"
#include "xn_epilogue.h"
#include "xn_micro_avx2.h"
#include "xn_rows.h"
#include "xn_team.h"

/* ------------------------------------------------------------------------------------------ */
/* Microkernels: counts[r][j] = sum_w popcount(a[r][w] ^ panel[w][j]) for MR rows, NR columns. */

#define XN_DEFINE_SCALAR_MICRO(NAME, ATTR)                                                     \
    ATTR static void NAME(const uint64_t *a, int64_t lda, int rows, const uint64_t *panel,     \
                          int64_t words, int64_t ncols, uint64_t *cnt) {                       \
        (void)lda;                                                                             \
        (void)rows;                                                                            \
        (void)ncols;                                                                           \
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

/* AVX-512 VPOPCNTDQ: 6 rows x 16 columns, twelve zmm accumulators of 64-bit counts; a last
 * panel of at most 8 real columns runs the 6 x 8 half, which does half the work, and one of at
 * most 4 the 6 x 4 quarter on ymm (LeNet's N = 50 ends in 2 columns: a ymm popcount costs half a
 * zmm one on Zen 4, which splits zmm ops in two, and issues on two ports on Intel). The block
 * applies the output transform to the accumulators in registers (xn_store_counts_avx512), so
 * no tile of counts is stored and loaded back (about 1.5% of a K = 2304 layer on a Zen 4). */
#define XN_STEP(acc, row, b) \
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64((long long)row[o]), b)))
#define XN_STEP4(acc, row, b) \
    acc = _mm256_add_epi64(acc, _mm256_popcnt_epi64(_mm256_xor_si256(_mm256_set1_epi64x((long long)row[o]), b)))
/* The K loop over a row block's words, BODY run for each with bp + w * XN_NR the panel's
 * words and o the word's offset in the rows (xn_rows.h: an implicit im2col's segments). Two
 * loops, one per kind of rows: GCC left the test of `off` inside a single one (two of the ~50
 * instructions a word, felt at K = 9 words). */
#define XN_WALK(BODY)                                                      \
    if (off) {                                                             \
        for (int64_t w = 0; w < words; ++w) {                              \
            const int64_t o = off[w];                                      \
            BODY                                                           \
        }                                                                  \
    } else {                                                               \
        for (int64_t w = 0; w < words; ++w) {                              \
            const int64_t o = w;                                           \
            BODY                                                           \
        }                                                                  \
    }
#define XN_STORE6(C0, C1)                                                        \
    do {                                                                         \
        const xn_panel_avx512 pc = xn_panel_consts_avx512(e, n0, ncols);           \
        xn_store_counts_avx512(e, &pc, m0, crow[0], n0, C0##0, C1##0);                     \
        if (rows > 1) xn_store_counts_avx512(e, &pc, m0 + 1, crow[1], n0, C0##1, C1##1);  \
        if (rows > 2) xn_store_counts_avx512(e, &pc, m0 + 2, crow[2], n0, C0##2, C1##2);  \
        if (rows > 3) xn_store_counts_avx512(e, &pc, m0 + 3, crow[3], n0, C0##3, C1##3);  \
        if (rows > 4) xn_store_counts_avx512(e, &pc, m0 + 4, crow[4], n0, C0##4, C1##4);  \
        if (rows > 5) xn_store_counts_avx512(e, &pc, m0 + 5, crow[5], n0, C0##5, C1##5);  \
    } while (0)

/* Word w of row r is a_r[off[w]] (xn_rows.h: a conv's implicit im2col) or a_r[w] (a matrix);
 * the panel is read straight through. */
XN_TARGET_AVX512 static void xn_block_avx512(const xn_arows *A, int64_t rows, int64_t m0,
                                             const uint64_t *panels, int64_t n, int64_t words,
                                             const xn_epilogue *e, int64_t p0, int64_t p1) {
    const uint64_t *base[6];
    xn_row_bases(A, m0, rows, 6, base);
    const int32_t *crow[6];
    xn_corr_rows(e, m0, rows, crow);
    const int64_t *off = A->off;
    const __m512i z = _mm512_setzero_si512();
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t n0 = p * XN_NR;
        const int64_t ncols = n - n0 < XN_NR ? n - n0 : XN_NR;
        const uint64_t *bp = panels + p * words * XN_NR;
        const uint64_t *a0 = base[0], *a1 = base[1], *a2 = base[2], *a3 = base[3], *a4 = base[4],
                       *a5 = base[5];
        if (ncols <= 4) {
            const __m256i y = _mm256_setzero_si256();
            __m256i q0 = y, q1 = y, q2 = y, q3 = y, q4 = y, q5 = y;
            XN_WALK(const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + w * XN_NR));
                    XN_STEP4(q0, a0, b0); XN_STEP4(q1, a1, b0); XN_STEP4(q2, a2, b0);
                    XN_STEP4(q3, a3, b0); XN_STEP4(q4, a4, b0); XN_STEP4(q5, a5, b0);)
            const __m512i c0 = _mm512_zextsi256_si512(q0), c1 = _mm512_zextsi256_si512(q1),
                          c2 = _mm512_zextsi256_si512(q2), c3 = _mm512_zextsi256_si512(q3),
                          c4 = _mm512_zextsi256_si512(q4), c5 = _mm512_zextsi256_si512(q5);
            const __m512i h0 = z, h1 = z, h2 = z, h3 = z, h4 = z, h5 = z;
            XN_STORE6(c, h);
            continue;
        }
        if (ncols <= 8) {
            __m512i c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z;
            const __m512i h0 = z, h1 = z, h2 = z, h3 = z, h4 = z, h5 = z;
            XN_WALK(const __m512i b0 = _mm512_loadu_si512((const void *)(bp + w * XN_NR));
                    XN_STEP(c0, a0, b0); XN_STEP(c1, a1, b0); XN_STEP(c2, a2, b0);
                    XN_STEP(c3, a3, b0); XN_STEP(c4, a4, b0); XN_STEP(c5, a5, b0);)
            XN_STORE6(c, h);
            continue;
        }
        __m512i l0 = z, l1 = z, l2 = z, l3 = z, l4 = z, l5 = z;
        __m512i h0 = z, h1 = z, h2 = z, h3 = z, h4 = z, h5 = z;
        XN_WALK(const __m512i b0 = _mm512_loadu_si512((const void *)(bp + w * XN_NR));
                const __m512i b1 = _mm512_loadu_si512((const void *)(bp + w * XN_NR + 8));
                XN_STEP(l0, a0, b0); XN_STEP(h0, a0, b1);
                XN_STEP(l1, a1, b0); XN_STEP(h1, a1, b1);
                XN_STEP(l2, a2, b0); XN_STEP(h2, a2, b1);
                XN_STEP(l3, a3, b0); XN_STEP(h3, a3, b1);
                XN_STEP(l4, a4, b0); XN_STEP(h4, a4, b1);
                XN_STEP(l5, a5, b0); XN_STEP(h5, a5, b1);)
        XN_STORE6(l, h);
    }
}
#undef XN_STORE6
#undef XN_WALK
#undef XN_STEP4
#undef XN_STEP
#endif /* XN_X86 */

/* One block of `rows` <= MR rows against panels [p0, p1), compiled per ISA so the microkernel
 * and the row store are inlined into it. */
#define XN_DEFINE_BLOCK(NAME, ATTR, MICRO, STORE, MR)                                           \
    ATTR static void NAME(const xn_arows *A, int64_t rows, int64_t m0, const uint64_t *panels,  \
                          int64_t n, int64_t words, const xn_epilogue *e, int64_t p0, int64_t p1) { \
        uint64_t cnt[6 * XN_NR];                                                                \
        uint64_t gathered[A->nseg > 1 ? MR * XN_MAX_IMPLICIT_WORDS : 1];                        \
        const uint64_t *ablk = xn_gather_rows(A, m0, rows, MR, gathered);                       \
        const int32_t *crow[MR];                                                                \
        xn_corr_rows(e, m0, rows, crow);                                                        \
        for (int64_t p = p0; p < p1; ++p) {                                                     \
            const int64_t n0 = p * XN_NR;                                                       \
            const int64_t ncols = n - n0 < XN_NR ? n - n0 : XN_NR;                              \
            MICRO(ablk, words, (int)rows, panels + p * words * XN_NR, words, ncols, cnt);       \
            for (int64_t r = 0; r < rows; ++r) STORE(e, m0 + r, crow[r], n0, ncols, cnt + r * XN_NR); \
        }                                                                                       \
    }

typedef void (*xn_block_fn)(const xn_arows *, int64_t, int64_t, const uint64_t *, int64_t, int64_t,
                            const xn_epilogue *, int64_t, int64_t);

XN_DEFINE_BLOCK(xn_block_generic, , xn_micro_generic, xn_store_row, 1)
#ifdef XN_X86
XN_DEFINE_BLOCK(xn_block_scalar, XN_TARGET_POPCNT, xn_micro_scalar, xn_store_row, 1)
XN_DEFINE_BLOCK(xn_block_avx2, XN_TARGET_AVX2, xn_micro_avx2, xn_store_row, 3)
#endif

static xn_block_fn xn_block_for(int isa) {
#ifdef XN_X86
    if (isa == XN_ISA_AVX512) return xn_block_avx512;
    if (isa == XN_ISA_AVX2) return xn_block_avx2_planes; /* reads nibble planes, not panels */
    if (isa == XN_ISA_AVX2_LOOKUP) return xn_block_avx2;
    if (isa == XN_ISA_SCALAR) return xn_block_scalar;
#endif
    (void)isa;
    return xn_block_generic;
}

/* The GEMM's parallel work is a grid of tiles: row blocks × groups of panels. Row blocks alone
 * leave cores idle when a small batch has fewer of them than there are threads (ResNet's 7×7
 * layers at batch 1: 9 blocks of 6 rows) or not many more (uneven shares); so N is split as well
 * until each thread has about 4 tiles, and the shares are even or many. Consecutive tiles share
 * their row block. One thread, or enough row blocks: one group, the plain row split. The threads
 * claim tiles in chunks (xn_team.h), so a thread that comes late or is preempted leaves its
 * tiles to the others instead of holding the call up. */
static inline int64_t xn_panel_groups(int64_t blocks, int64_t n, int threads) {
    const int64_t npanels = (n + XN_NR - 1) / XN_NR;
    int64_t groups = 1;
    while (threads > 1 && groups * 2 <= npanels) {
        const int64_t tiles = blocks * groups;
        /* few tiles, or a share that is uneven by more than ~3%: 33 row blocks (ResNet's 7 x 7 at
         * batch 4) on 2 threads are 17 and 16, a 1.94x ceiling, where 66 tiles split evenly */
        if (tiles >= 4 * (int64_t)threads && (tiles % threads == 0 || tiles >= 32 * (int64_t)threads)) break;
        groups *= 2;
    }
    return groups;
}

/* Tile `t` of the grid: row block t / groups against its group of panels. */
static inline void xn_bgemm_tile(xn_block_fn block, int mr, const xn_arows *A, int64_t m,
                                 const uint64_t *panels, int64_t n, int64_t words,
                                 const xn_epilogue *e, int64_t groups, int64_t t) {
    const int64_t npanels = (n + XN_NR - 1) / XN_NR;
    const int64_t blk = t / groups, grp = t % groups;
    const int64_t m0 = blk * mr;
    const int64_t rows = m - m0 < mr ? m - m0 : mr;
    block(A, rows, m0, panels, n, words, e, grp * npanels / groups,
          (grp + 1) * npanels / groups);
}

/* C = A (m x words) "xnor-dot" B (n columns, packed in panels), with the fused epilogue,
 * its tiles claimed one at a time by up to `threads` OpenMP threads (xn_team.h). */
static void xn_bgemm(int isa, const uint64_t *a, int64_t m, const uint64_t *panels, int64_t n,
                     int64_t words, const xn_epilogue *e, int threads) {
    const int mr = xn_micro_rows(isa);
    const xn_block_fn block = xn_block_for(isa);
    const int64_t blocks = (m + mr - 1) / mr;
    xn_team_call call;
    xn_team_begin(&call, threads, 1);
    const int64_t groups = xn_panel_groups(blocks, n, call.team), tiles = blocks * groups;
    const int64_t chunk = xn_team_chunk(tiles, call.team);
    const xn_arows A = xn_explicit_rows(a, words);
#pragma omp parallel num_threads(call.team) if (call.team > 1)
    {
        const int64_t t0 = xn_team_now(&call);
        int64_t mine = 0;
#pragma omp for schedule(dynamic, chunk) nowait
        for (int64_t t = 0; t < tiles; ++t) {
            xn_bgemm_tile(block, mr, &A, m, panels, n, words, e, groups, t);
            ++mine;
        }
        xn_team_leave(&call, xn_team_now(&call) - t0, mine);
    }
    xn_team_end(&call, tiles);
}

#endif /* XN_BGEMM_H */
