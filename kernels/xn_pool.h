/* Max / average pooling on channels-last float32, so the packed inference engine, which keeps
 * activations NHWC throughout, pools without a transpose to NCHW and back.
 */
#ifndef XN_POOL_H
#define XN_POOL_H

#include <stdint.h>

#include "xn_team.h"

/* Pooling on channels-last float32 (B, H, W, C) -> (B, Ho, Wo, C), the inner loop over the      */
/* contiguous channels. Max ignores padded positions; average counts them as 0 (PyTorch's        */
/* count_include_pad=True).                                                                      */

/* Output row bo (image bo / ho, row bo % ho) of xn_pool_nhwc. */
static inline void xn_pool_row(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                               int64_t stride, int64_t pad, int is_max, int64_t ho, int64_t wo,
                               float *out, int64_t bo) {
    const float inv = 1.0f / (float)(k * k);
    const int64_t b = bo / ho, oh = bo % ho;
    for (int64_t ow = 0; ow < wo; ++ow) {
        float *o = out + (bo * wo + ow) * c;
        int first = 1;
        for (int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
        for (int64_t i = 0; i < k; ++i) {
            const int64_t ih = oh * stride - pad + i;
            if (ih < 0 || ih >= h) continue;
            for (int64_t j = 0; j < k; ++j) {
                const int64_t iw = ow * stride - pad + j;
                if (iw < 0 || iw >= w) continue;
                const float *p = x + ((b * h + ih) * w + iw) * c;
                if (is_max && first) {
                    for (int64_t ch = 0; ch < c; ++ch) o[ch] = p[ch];
                } else if (is_max) {
                    for (int64_t ch = 0; ch < c; ++ch) o[ch] = p[ch] > o[ch] ? p[ch] : o[ch];
                } else {
                    for (int64_t ch = 0; ch < c; ++ch) o[ch] += p[ch];
                }
                first = 0;
            }
        }
        if (!is_max)
            for (int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
    }
}

static void xn_pool_nhwc(const float *x, int64_t batch, int64_t h, int64_t w, int64_t c, int64_t k,
                         int64_t stride, int64_t pad, int is_max, int64_t ho, int64_t wo, float *out,
                         int threads) {
    XN_TEAM_FOR(threads, batch * ho * wo * c > (1 << 15), bo, batch * ho,
                xn_pool_row(x, h, w, c, k, stride, pad, is_max, ho, wo, out, bo););
}

#endif /* XN_POOL_H */
