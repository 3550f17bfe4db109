# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Typed entry points into xnor_kernels.h. Callers (xnornet.kernels) validate and allocate;
these only take the matching typed memoryviews and release the GIL around the C call."""

from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t

import numpy as np


cdef extern from "xnor_kernels.h" nogil:
    ctypedef struct xn_epilogue:
        int32_t *out_i32
        float *out_f32
        const float *alpha
        const float *bias
        const float *row_scale
        const float *residual
        const int32_t *corr
        int64_t corr_period
        const uint8_t *corr_used
        int64_t n
        int64_t k
        int relu
        const float *emit_scale
        const float *emit_shift
        uint64_t *emit_bits
        int64_t emit_pixels
        int64_t emit_row_words
        int emit_atomic
        int emit_halfwords

    ctypedef struct xn_conv_geom:
        int64_t batch, h, c, row_words, kh, kw, stride, pad, ho, wo

    ctypedef struct xn_layer_io:
        const float *x
        const float *scale
        const float *shift
        int64_t rows, k
        uint64_t *bits
        int64_t row_words
        const xn_conv_geom *conv
        uint64_t *cols

    void xn_conv_workspace(const xn_conv_geom *g, int64_t *rows, int64_t *words)

    int xn_cpu_isa()
    int xn_panel_width(int isa)
    void xn_nibble_planes(const uint64_t *panels, int64_t npanels, int64_t words, uint64_t *planes)
    enum: XN_NR, XN_PLANES_CHUNK
    void xn_bgemm(int isa, const uint64_t *a, int64_t m, const uint64_t *panels, int64_t n,
                  int64_t words, const xn_epilogue *e, int threads)
    void xn_layer_forward(int isa, const xn_layer_io *io, const uint64_t *panels, int64_t n,
                          int64_t words, const xn_epilogue *e, int threads)
    void xn_pack_rows(int isa, const float *x, int64_t rows, int64_t k, int64_t words,
                      uint64_t *out, int threads)
    void xn_im2col(const uint64_t *x, int64_t batch, int64_t h, int64_t c, int64_t row_words,
                   int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t ho, int64_t wo,
                   uint64_t *out, int threads)
    double xn_popcount_peak(int isa, int64_t iters)
    void xn_affine_pack_rows(int isa, const float *x, int64_t rows, int64_t k, const float *sc,
                             const float *sh, int64_t words, uint64_t *out, int threads)
    void xn_pool_nhwc(const float *x, int64_t batch, int64_t h, int64_t w, int64_t c, int64_t k,
                      int64_t stride, int64_t pad, int is_max, int64_t ho, int64_t wo, float *out,
                      int threads)
    void xn_bn_sign_pack(const float *x, int64_t rows, int64_t pixels, int64_t c,
                         const float *scale, const float *shift, int64_t words, uint64_t *out,
                         float *absmean, int threads)


PLANES_CHUNK_WORDS = XN_PLANES_CHUNK  # words of K the AVX2 GEMM stages at once


def cpu_isa() -> int:
    return xn_cpu_isa()


def panel_width(int isa) -> int:
    """uint64 per word of a B panel as the GEMM of ``isa`` reads it (16, or 32 nibble planes)."""
    return xn_panel_width(isa)


def nibble_planes(const uint64_t[:, :, ::1] panels, uint64_t[:, :, ::1] out):
    """(P, W, 16) panels -> their (P, W, 32) nibble planes, the B operand of the AVX2 GEMM."""
    if out.shape[0] != panels.shape[0] or out.shape[1] != panels.shape[1] or out.shape[2] != 2 * XN_NR \
            or panels.shape[2] != XN_NR:
        raise ValueError(f"nibble planes of panels {tuple(panels.shape)[:3]} need shape "
                         f"{(panels.shape[0], panels.shape[1], 2 * XN_NR)}, got {tuple(out.shape)[:3]}")
    if panels.shape[0] == 0 or panels.shape[1] == 0:
        return
    with nogil:
        xn_nibble_planes(&panels[0, 0, 0], panels.shape[0], panels.shape[1], &out[0, 0, 0])


cdef _check_operand(int isa, const uint64_t[:, :, ::1] panels, int64_t n, int64_t words):
    """The B operand must have the layout the ISA's GEMM reads, or the C code would read past it."""
    cdef int64_t width = xn_panel_width(isa)
    if panels.shape[2] != width or panels.shape[1] != words or panels.shape[0] * XN_NR < n:
        raise ValueError(f"panels of shape {tuple(panels.shape)[:3]} for {n} columns of {words} words: "
                         f"this path reads ({(n + XN_NR - 1) // XN_NR}, {words}, {width})"
                         + (" nibble planes (PackedColumns.operand)" if width != XN_NR else ""))


def pack_rows(int isa, const float[:, ::1] x, int64_t k, uint64_t[:, ::1] out, int threads):
    if x.shape[0] == 0:
        return
    with nogil:
        xn_pack_rows(isa, &x[0, 0], x.shape[0], k, out.shape[1], &out[0, 0], threads)


def im2col(const uint64_t[:, ::1] x, int64_t batch, int64_t h, int64_t c, int64_t kh, int64_t kw,
           int64_t stride, int64_t pad, int64_t ho, int64_t wo, uint64_t[:, ::1] out, int threads):
    if out.shape[0] == 0:
        return
    with nogil:
        xn_im2col(&x[0, 0], batch, h, c, x.shape[1], kh, kw, stride, pad, ho, wo, &out[0, 0],
                  threads)


cdef _bgemm(int isa, const uint64_t[:, ::1] a, const uint64_t[:, :, ::1] panels, int64_t n,
            xn_epilogue *e, int threads):
    _check_operand(isa, panels, n, a.shape[1])
    if a.shape[0] == 0 or n == 0:
        return
    e.emit_scale = NULL  # the plain GEMM writes its output; only a layer emits sign bits
    e.emit_shift = NULL
    e.emit_bits = NULL
    e.emit_pixels = 1
    e.emit_row_words = 0
    e.emit_atomic = 0
    e.emit_halfwords = 0
    with nogil:
        xn_bgemm(isa, &a[0, 0], a.shape[0], &panels[0, 0, 0], n, a.shape[1], e, threads)


def bgemm_i32(int isa, const uint64_t[:, ::1] a, const uint64_t[:, :, ::1] panels, int64_t n,
              int64_t k, const int32_t[:, ::1] corr, int32_t[:, ::1] out, int threads):
    cdef xn_epilogue e
    e.out_i32 = &out[0, 0] if out.shape[0] and out.shape[1] else NULL
    e.out_f32 = NULL
    e.alpha = NULL
    e.bias = NULL
    e.row_scale = NULL
    e.residual = NULL
    e.corr = &corr[0, 0] if corr is not None else NULL
    e.corr_period = corr.shape[0] if corr is not None else 1
    e.corr_used = NULL
    e.n = n
    e.k = k
    e.relu = 0
    _bgemm(isa, a, panels, n, &e, threads)


def bgemm_f32(int isa, const uint64_t[:, ::1] a, const uint64_t[:, :, ::1] panels, int64_t n,
              int64_t k, const float[::1] alpha, const float[::1] bias,
              const float[::1] row_scale, const int32_t[:, ::1] corr, float[:, ::1] out,
              int threads, bint relu=False, const float[:, ::1] residual=None):
    cdef xn_epilogue e
    e.out_i32 = NULL
    e.out_f32 = &out[0, 0] if out.shape[0] and out.shape[1] else NULL
    e.alpha = &alpha[0]
    e.bias = &bias[0] if bias is not None else NULL
    e.row_scale = &row_scale[0] if row_scale is not None else NULL
    e.residual = &residual[0, 0] if residual is not None and residual.shape[0] else NULL
    e.corr = &corr[0, 0] if corr is not None else NULL
    e.corr_period = corr.shape[0] if corr is not None else 1
    e.corr_used = NULL
    e.n = n
    e.k = k
    e.relu = relu
    _bgemm(isa, a, panels, n, &e, threads)


def popcount_peak(int isa, int64_t iters) -> float:
    cdef double r
    with nogil:
        r = xn_popcount_peak(isa, iters)
    return r


def bn_sign_pack(const float[:, ::1] x, int64_t c, const float[::1] scale, const float[::1] shift,
                 uint64_t[:, ::1] out, float[:, ::1] absmean, int threads):
    cdef float *am = &absmean[0, 0] if absmean is not None else NULL
    if x.shape[0] == 0:
        return
    with nogil:
        xn_bn_sign_pack(&x[0, 0], x.shape[0], x.shape[1] // c, c, &scale[0], &shift[0],
                        out.shape[1], &out[0, 0], am, threads)


def affine_pack_rows(int isa, const float[:, ::1] x, const float[::1] scale, const float[::1] shift,
                     uint64_t[:, ::1] out, int threads):
    if x.shape[0] == 0:
        return
    with nogil:
        xn_affine_pack_rows(isa, &x[0, 0], x.shape[0], x.shape[1], &scale[0], &shift[0],
                            out.shape[1], &out[0, 0], threads)


def pool_nhwc(const float[:, :, :, ::1] x, int64_t k, int64_t stride, int64_t pad, bint is_max,
              float[:, :, :, ::1] out, int threads):
    if out.shape[0] == 0 or out.shape[3] == 0:
        return
    with nogil:
        xn_pool_nhwc(&x[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2], x.shape[3], k, stride, pad,
                     is_max, out.shape[1], out.shape[2], &out[0, 0, 0, 0], threads)


def conv_workspace_shape(int64_t batch, int64_t h, int64_t c, int64_t kh, int64_t kw,
                         int64_t stride, int64_t pad, int64_t ho, int64_t wo, int64_t row_words) -> tuple:
    """The (rows, words) uint64 workspace LayerCall needs for this conv (row_words: words of a
    packed input row): the zero-padded input its GEMM reads in place (C a multiple of 64), the
    implicit im2col's window table, or the im2col matrix (xn_conv_workspace)."""
    cdef xn_conv_geom g
    cdef int64_t rows, words
    g.batch, g.h, g.c, g.kh, g.kw, g.stride, g.pad, g.ho, g.wo = batch, h, c, kh, kw, stride, pad, ho, wo
    g.row_words = row_words
    xn_conv_workspace(&g, &rows, &words)
    return (rows, words)


cdef class LayerCall:
    """One binary layer's call (xn_layer.h), every argument but the input checked and converted
    once: a layer object's plan keeps one per path, so a forward pass costs a memoryview of its
    input and the C call, not twenty argument conversions (a tiny layer's call: 5.6 -> 2 us).

    bits: the (rows, row_words) workspace a float input is packed into, or None when every call
    brings its packed input of that shape. x_cols: the float input's columns (0: packed input).
    conv: (batch, h, c, kh, kw, stride, pad, ho, wo) with `cols` the workspace of
    conv_workspace_shape, or None for a linear layer. out: int32 (M, N) without alpha, else
    float32 (M, N). emit_bits given: the packed sign(y·emit_scale + emit_shift) of the float
    output y, in M / emit_pixels streams, is written there instead of out."""

    cdef xn_layer_io io
    cdef xn_conv_geom g
    cdef xn_epilogue e
    cdef int isa, threads
    cdef int64_t n, words, m
    cdef const uint64_t *panels
    cdef object keep  # the arrays behind every pointer above

    def __init__(self, int isa, scale, shift, bits, tuple input_shape, int64_t x_cols, tuple conv,
                 cols, panels, int64_t n, int64_t k, alpha, bias, corr, out, int threads,
                 bint relu=False, emit_scale=None, emit_shift=None, emit_bits=None,
                 int64_t emit_pixels=1):
        cdef const float[::1] f1
        cdef const uint64_t[:, ::1] u2
        cdef uint64_t[:, ::1] w2
        cdef const uint64_t[:, :, ::1] pn = panels
        cdef const int32_t[:, ::1] cr
        cdef const uint8_t[::1] u1
        cdef int32_t[:, ::1] out_i32
        cdef float[:, ::1] out_f32
        _check_operand(isa, pn, n, pn.shape[1])
        self.keep = (scale, shift, bits, cols, panels, alpha, bias, corr, out, emit_scale, emit_shift,
                     emit_bits)
        self.isa, self.threads, self.n, self.words = isa, threads, n, pn.shape[1]
        self.panels = &pn[0, 0, 0]
        self.io.rows, self.io.row_words = input_shape
        self.io.k = x_cols
        self.io.x = NULL
        self.io.bits = NULL
        if bits is not None:
            w2 = bits
            if (w2.shape[0], w2.shape[1]) != input_shape:
                raise ValueError(f"bits has shape {(w2.shape[0], w2.shape[1])}, the input packs to {input_shape}")
            self.io.bits = &w2[0, 0]
        f1 = scale
        self.io.scale = &f1[0] if scale is not None else NULL
        f1 = shift
        self.io.shift = &f1[0] if shift is not None else NULL
        self.io.conv = NULL
        self.io.cols = NULL
        self.m = self.io.rows
        if conv is not None:
            self.g.batch, self.g.h, self.g.c, self.g.kh, self.g.kw, self.g.stride, self.g.pad, \
                self.g.ho, self.g.wo = conv
            self.g.row_words = self.io.row_words
            w2 = cols
            need = conv_workspace_shape(*conv, self.io.row_words)
            if (w2.shape[0], w2.shape[1]) != need:
                raise ValueError(f"cols has shape {(w2.shape[0], w2.shape[1])}, this conv needs "
                                 f"{need} (conv_workspace_shape)")
            self.io.conv = &self.g
            self.io.cols = &w2[0, 0]
            self.m = self.g.batch * self.g.ho * self.g.wo
        self.e.out_i32 = NULL
        self.e.out_f32 = NULL
        if alpha is None:
            out_i32 = out
            self.e.out_i32 = &out_i32[0, 0]
            self.e.alpha = NULL
        else:
            out_f32 = out
            self.e.out_f32 = &out_f32[0, 0]
            f1 = alpha
            self.e.alpha = &f1[0]
        f1 = bias
        self.e.bias = &f1[0] if bias is not None else NULL
        self.e.row_scale = NULL  # per call (run)
        self.e.residual = NULL
        cr = corr
        self.e.corr = &cr[0, 0] if corr is not None else NULL
        self.e.corr_period = cr.shape[0] if corr is not None else 1
        self.e.corr_used = NULL
        if corr is not None:  # the rows with something to subtract (the border pixels)
            used = np.ascontiguousarray((np.asarray(corr) != 0).any(axis=1), dtype=np.uint8)
            u1 = used
            self.e.corr_used = &u1[0]
            self.keep += (used,)
        self.e.n = n
        self.e.k = k
        self.e.relu = relu
        self.e.emit_scale = NULL
        self.e.emit_shift = NULL
        self.e.emit_bits = NULL
        if emit_bits is not None:
            f1 = emit_scale
            self.e.emit_scale = &f1[0]
            f1 = emit_shift
            self.e.emit_shift = &f1[0]
            w2 = emit_bits
            self.e.emit_bits = &w2[0, 0]
            self.e.emit_row_words = w2.shape[1]
        else:
            self.e.emit_row_words = 0
        self.e.emit_pixels = emit_pixels
        self.e.emit_atomic = 0  # xn_layer_forward decides these two from N, the streams and its threads
        self.e.emit_halfwords = 0

    def __call__(self, x, bits, row_scale=None, residual=None):
        """x: the (rows, x_cols) float32 input, or None and `bits` the packed (rows, row_words)
        input; row_scale (M,) and residual (M, N) float32, or None."""
        cdef xn_layer_io io = self.io
        cdef xn_epilogue e = self.e
        cdef const float[:, ::1] xv
        cdef const uint64_t[:, ::1] bv
        cdef const float[::1] rs
        cdef const float[:, ::1] rv
        if x is not None:
            if io.bits == NULL:
                raise ValueError("this call takes packed input (bits), not x")
            xv = x
            if xv.shape[0] != io.rows or xv.shape[1] != io.k:
                raise ValueError(f"x has shape {(xv.shape[0], xv.shape[1])}, this call takes {(io.rows, io.k)}")
            io.x = &xv[0, 0]
        else:
            bv = bits
            if bv.shape[0] != io.rows or bv.shape[1] != io.row_words:
                raise ValueError(f"bits has shape {(bv.shape[0], bv.shape[1])}, this call takes "
                                 f"{(io.rows, io.row_words)}")
            io.bits = <uint64_t *>&bv[0, 0]
            io.k = 0
        if row_scale is not None:
            rs = row_scale
            if rs.shape[0] != self.m:
                raise ValueError(f"row_scale has {rs.shape[0]} values, this call has {self.m} rows")
            e.row_scale = &rs[0]
        if residual is not None:
            rv = residual
            if rv.shape[0] != self.m or rv.shape[1] != self.n:
                raise ValueError(f"residual has shape {(rv.shape[0], rv.shape[1])}, expected {(self.m, self.n)}")
            e.residual = &rv[0, 0]
        with nogil:
            xn_layer_forward(self.isa, &io, self.panels, self.n, self.words, &e, self.threads)


cdef extern from "xnor_kernels.h" nogil:
    int xn_team_adaptive
    int64_t xn_team_counts[3]
    void xn_team_reset()
    int64_t xn_team_judge(int64_t wall, double alone, int64_t streak, int64_t window)
    int64_t XN_TEAM_MIN_NS, XN_TEAM_MAX_NS, XN_TEAM_SLACK_NS, XN_TEAM_STREAK, XN_TEAM_COST


def team_judgement(int64_t wall_ns, double alone_ns, int64_t streak, int64_t window_ns) -> int:
    """The back-off (ns) one team call calls for, 0 if it was not held up (xn_team_judge)."""
    return xn_team_judge(wall_ns, alone_ns, streak, window_ns)


def team_policy() -> dict:
    """The back-off policy's constants (kernels/xn_team.h)."""
    return {"min_ns": XN_TEAM_MIN_NS, "max_ns": XN_TEAM_MAX_NS, "slack_ns": XN_TEAM_SLACK_NS,
            "streak": XN_TEAM_STREAK, "cost": XN_TEAM_COST}


def team_adaptive(flag=None) -> bool:
    """Whether a held-up team call makes the next ones run on one thread (kernels/xn_team.h);
    with ``flag``, set it first. Returns the setting in force."""
    global xn_team_adaptive
    if flag is not None:
        xn_team_adaptive = 1 if flag else 0
    return bool(xn_team_adaptive)


def team_counts() -> dict:
    """Team calls since the last reset, how many were held up, and calls that ran on one thread
    because an earlier one was."""
    return {"team_calls": xn_team_counts[0], "held_up": xn_team_counts[1],
            "ran_alone": xn_team_counts[2]}


def team_reset():
    """Forget the learned back-off and zero the counts."""
    xn_team_reset()
