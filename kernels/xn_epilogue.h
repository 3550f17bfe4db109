/* The GEMM's output transform, applied to each MR x NR tile of counts as it leaves the
 * microkernel, so the int32 dots never make a round trip through memory: a portable row store
 * and an AVX-512 one (masked, so a short last panel needs no scalar tail loop).
 *
 * Cross-layer fusion: when the next layer is binary and reads this one's output only through a
 * BatchNorm/threshold and a sign, the store can emit sign(y * scale + shift) straight into the
 * next layer's packed input (its NHWC bit streams) instead of writing y as float32: 1 bit per
 * value instead of 32, and the next layer skips its sign-pack pass.
 */
#ifndef XN_EPILOGUE_H
#define XN_EPILOGUE_H

#include <stdint.h>
#include <string.h>

#include "xn_dispatch.h"

/* Output transform fused into the GEMM, with dot' = dot - corr[m % P, n] (corr may be absent): */
/* either the int32 dot', or out[m, n] = alpha[n] * dot' * row_scale[m] + bias[n] + res[m, n]    */
/* as float32, where res is a residual branch added in the same pass (a ResNet shortcut).       */

typedef struct {
    int32_t *out_i32;
    float *out_f32;
    const float *alpha;
    const float *bias;      /* may be NULL */
    const float *row_scale; /* may be NULL */
    const float *residual;  /* may be NULL; M x N, added before the ReLU */
    const int32_t *corr;    /* may be NULL; P x N, zero-padding correction of a conv */
    int64_t corr_period;    /* P */
    const uint8_t *corr_used; /* may be NULL; P flags: row p of corr is not all zero */
    int64_t n;
    int64_t k;
    int relu; /* clamp the float output at 0 (a ReLU that follows the layer) */
    /* Emission (may be absent): bits of sign(y * emit_scale[n] + emit_shift[n]) instead of y.
     * Row m is pixel m % emit_pixels of bit stream m / emit_pixels (emit_pixels = Wo for a conv,
     * 1 for a linear layer), which holds emit_row_words words, zeroed before the GEMM (all but
     * the emit_halfwords case, where every bit is stored, never ORed).
     * emit_atomic: two threads may write the same word (a pixel's bits not word-aligned, or a
     * panel group ending inside a word), so the OR must be atomic. */
    const float *emit_scale;
    const float *emit_shift;
    uint64_t *emit_bits;
    int64_t emit_pixels;
    int64_t emit_row_words;
    int emit_atomic;
    /* emit_halfwords: N % 16 == 0 and streams without padding bits, so each panel's 16 bits of a
     * row are one aligned uint16 of one flat stream: a plain 16-bit store, written exactly once,
     * with no zeroing beforehand, no read-modify-write and nothing shared between threads. */
    int emit_halfwords;
} xn_epilogue;

/* The correction rows of rows m0 .. m0 + rows - 1 (rows m % P of corr), NULL where there is
 * nothing to subtract: one division for a row block rather than one per row and panel, whose
 * latency was about 3% of a ResNet 14 x 14 layer on a Zen 4, and no load of the all-zero rows
 * (the interior pixels: 144 of ResNet's 196 at 14 x 14), which kept the table in the caches. */
static inline void xn_corr_rows(const xn_epilogue *e, int64_t m0, int64_t rows, const int32_t **out) {
    if (!e->corr) {
        for (int64_t r = 0; r < rows; ++r) out[r] = NULL;
        return;
    }
    int64_t p = m0 % e->corr_period;
    for (int64_t r = 0; r < rows; ++r) { /* pixels away from the border have nothing to remove */
        out[r] = e->corr_used && !e->corr_used[p] ? NULL : e->corr + p * e->n;
        if (++p == e->corr_period) p = 0;
    }
}

/* OR `mask` (bit j: column n0 + j of row m is negative) into the emitted bit streams. A mask of
 * at most 16 bits spans at most two words, both inside the row's stream. */
static inline void xn_emit_mask(const xn_epilogue *e, int64_t m, int64_t n0, uint64_t mask) {
    if (e->emit_halfwords) { /* little-endian: halfword j of a word holds its bits 16j..16j+15 */
        const uint16_t half = (uint16_t)mask;
        memcpy((uint16_t *)e->emit_bits + ((m * e->n + n0) >> 4), &half, sizeof half);
        return;
    }
    uint64_t *w = e->emit_bits;
    int64_t bit = m * e->n + n0; /* streams without padding bits are one flat stream */
    if (e->emit_row_words * 64 != e->emit_pixels * e->n) { /* else find row m's stream: a division */
        const int64_t stream = m / e->emit_pixels;
        bit = (m - stream * e->emit_pixels) * e->n + n0;
        w += stream * e->emit_row_words;
    }
    w += bit >> 6;
    const int r = (int)(bit & 63);
    const uint64_t lo = mask << r, hi = r ? mask >> (64 - r) : 0;
    if (e->emit_atomic) {
        if (lo) __atomic_fetch_or(w, lo, __ATOMIC_RELAXED);
        if (hi) __atomic_fetch_or(w + 1, hi, __ATOMIC_RELAXED);
    } else {
        w[0] |= lo;
        if (hi) w[1] |= hi;
    }
}

static inline void xn_store_row(const xn_epilogue *e, int64_t m, const int32_t *corr_row, int64_t n0,
                                int64_t ncols, const uint64_t *cnt) {
    int32_t dot[XN_NR];
    const int32_t *corr = corr_row ? corr_row + n0 : NULL; /* xn_corr_rows */
    for (int64_t j = 0; j < ncols; ++j) dot[j] = (int32_t)(e->k - 2 * (int64_t)cnt[j]);
    if (corr)
        for (int64_t j = 0; j < ncols; ++j) dot[j] -= corr[j];
    if (e->out_i32) {
        memcpy(e->out_i32 + m * e->n + n0, dot, (size_t)ncols * sizeof(int32_t));
        return;
    }
    float emitted[XN_NR]; /* y of an emitting store, which never writes it to memory */
    float *out = e->emit_bits ? emitted : e->out_f32 + m * e->n + n0;
    const float *alpha = e->alpha + n0;
    const float rs = e->row_scale ? e->row_scale[m] : 1.0f;
    if (e->bias) {
        const float *bias = e->bias + n0;
        for (int64_t j = 0; j < ncols; ++j) out[j] = (float)dot[j] * alpha[j] * rs + bias[j];
    } else {
        for (int64_t j = 0; j < ncols; ++j) out[j] = (float)dot[j] * alpha[j] * rs;
    }
    if (e->residual) {
        const float *res = e->residual + m * e->n + n0;
        for (int64_t j = 0; j < ncols; ++j) out[j] += res[j];
    }
    if (e->relu)
        for (int64_t j = 0; j < ncols; ++j) out[j] = out[j] > 0.0f ? out[j] : 0.0f;
    if (e->emit_bits) { /* the same two roundings as the next layer's sign-pack (xn_signpack.h) */
        uint64_t mask = 0;
        for (int64_t j = 0; j < ncols; ++j) {
            const float p = out[j] * e->emit_scale[n0 + j];
            mask |= (uint64_t)(p + e->emit_shift[n0 + j] < 0.0f) << j;
        }
        xn_emit_mask(e, m, n0, mask);
    }
}

#ifdef XN_X86
/* xn_store_row for AVX2, 8 columns per instruction, with the arithmetic and order of the
 * AVX-512 store below. Full panels only: a short last panel takes the portable store, since
 * AMD's masked stores (vpmaskmovd) are microcoded and slower than the scalar loop. At 16 columns
 * per row and panel the portable store costs 10-30% of the nibble-plane GEMM's time. */
XN_TARGET_AVX2 static inline void xn_store_row_avx2(const xn_epilogue *e, int64_t m,
                                                    const int32_t *corr_row, int64_t n0,
                                                    int64_t ncols, const uint64_t *cnt) {
    if (ncols < XN_NR || e->emit_bits) { /* emitting stores take the portable path too */
        xn_store_row(e, m, corr_row, n0, ncols, cnt);
        return;
    }
    const __m256i k = _mm256_set1_epi32((int32_t)e->k);
    const int32_t *corr = corr_row ? corr_row + n0 : NULL;
    for (int h = 0; h < 2; ++h) {
        /* the low 32 bits of 8 counts, in order: k - 2 * cnt wraps like the scalar cast */
        const __m256 lo = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(cnt + 8 * h)));
        const __m256 hi = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(cnt + 8 * h + 4)));
        const __m256i c32 = _mm256_permute4x64_epi64(
            _mm256_castps_si256(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0));
        __m256i dot = _mm256_sub_epi32(k, _mm256_slli_epi32(c32, 1));
        if (corr) dot = _mm256_sub_epi32(dot, _mm256_loadu_si256((const __m256i *)(corr + 8 * h)));
        const int64_t j = n0 + 8 * h;
        if (e->out_i32) {
            _mm256_storeu_si256((__m256i *)(e->out_i32 + m * e->n + j), dot);
            continue;
        }
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(e->alpha + j));
        if (e->row_scale) y = _mm256_mul_ps(y, _mm256_set1_ps(e->row_scale[m]));
        if (e->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(e->bias + j));
        if (e->residual) y = _mm256_add_ps(y, _mm256_loadu_ps(e->residual + m * e->n + j));
        if (e->relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
        _mm256_storeu_ps(e->out_f32 + m * e->n + j, y);
    }
}

/* What the AVX-512 store needs of one panel, loaded once for the block's six rows rather than per
 * row: at K = 640 (LeNet conv2) the stores were a third of the GEMM, half of it reloading these
 * (the compiler cannot keep them across stores to `out`, which might alias them). */
typedef struct {
    __mmask16 mask;
    __m512i k;
    __m512 alpha, bias, emit_scale, emit_shift;
} xn_panel_avx512;

XN_TARGET_AVX512 static inline __attribute__((always_inline)) xn_panel_avx512
xn_panel_consts_avx512(const xn_epilogue *e, int64_t n0, int64_t ncols) {
    xn_panel_avx512 pc;
    pc.mask = (__mmask16)((1u << ncols) - 1u);
    pc.k = _mm512_set1_epi32((int32_t)e->k);
    pc.alpha = e->alpha ? _mm512_maskz_loadu_ps(pc.mask, e->alpha + n0) : _mm512_setzero_ps();
    pc.bias = e->bias ? _mm512_maskz_loadu_ps(pc.mask, e->bias + n0) : _mm512_setzero_ps();
    pc.emit_scale = e->emit_bits ? _mm512_maskz_loadu_ps(pc.mask, e->emit_scale + n0) : _mm512_setzero_ps();
    pc.emit_shift = e->emit_bits ? _mm512_maskz_loadu_ps(pc.mask, e->emit_shift + n0) : _mm512_setzero_ps();
    return pc;
}

/* The same arithmetic in the same order, 16 columns per instruction, taken straight from the
 * microkernel's count registers (columns 0-7 and 8-15; the high half is ignored for ncols <= 8),
 * so no tile of counts goes through memory: (float)dot * alpha, then
 * * row_scale (skipped when absent: x * 1.0f == x exactly), + bias, + residual, then
 * max(y, 0), which like y > 0 ? y : 0 returns +0 for -0 and NaN. The i64 -> i32 narrowing
 * (the low dword of each count, one permute of both halves) wraps like the scalar cast. */
XN_TARGET_AVX512 static inline __attribute__((always_inline)) void xn_store_counts_avx512(
    const xn_epilogue *e, const xn_panel_avx512 *pc, int64_t m, const int32_t *corr_row, int64_t n0,
    __m512i cnt_lo, __m512i cnt_hi) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i c32 = _mm512_permutex2var_epi32(cnt_lo, even, cnt_hi);
    __m512i dot = _mm512_sub_epi32(pc->k, _mm512_slli_epi32(c32, 1));
    if (corr_row) dot = _mm512_sub_epi32(dot, _mm512_maskz_loadu_epi32(pc->mask, corr_row + n0));
    if (e->out_i32) {
        _mm512_mask_storeu_epi32(e->out_i32 + m * e->n + n0, pc->mask, dot);
        return;
    }
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), pc->alpha);
    if (e->row_scale) y = _mm512_mul_ps(y, _mm512_set1_ps(e->row_scale[m]));
    if (e->bias) y = _mm512_add_ps(y, pc->bias);
    if (e->residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(pc->mask, e->residual + m * e->n + n0));
    if (e->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
    if (e->emit_bits) { /* mul, then add, then < 0: as the AVX-512 sign-pack rounds */
        const __m512 z = _mm512_add_ps(_mm512_mul_ps(y, pc->emit_scale), pc->emit_shift);
        xn_emit_mask(e, m, n0, _mm512_mask_cmp_ps_mask(pc->mask, z, _mm512_setzero_ps(), _CMP_LT_OQ));
        return;
    }
    if (pc->mask == 0xFFFF) /* a full panel: a plain store */
        _mm512_storeu_ps(e->out_f32 + m * e->n + n0, y);
    else
        _mm512_mask_storeu_ps(e->out_f32 + m * e->n + n0, pc->mask, y);
}
#endif

#endif /* XN_EPILOGUE_H */
