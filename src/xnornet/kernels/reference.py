"""Plain numpy twins of every kernel: slow, obvious, and what the tests hold the kernel to.

Same conventions as the kernel (docs/kernel.md): bit 1 ⇔ x < 0, little-endian bits along the last
axis in uint64 words, padding bits 0, dot = k − 2·popcount(a XOR b).
"""

from __future__ import annotations

import numpy as np


def pack_bits_ref(x: np.ndarray) -> np.ndarray:
    """(..., K) float → (..., ceil(K/64)) uint64."""
    k = x.shape[-1]
    words = -(-k // 64)
    bits = np.zeros((*x.shape[:-1], words * 64), dtype=np.uint64)
    bits[..., :k] = x < 0
    bits = bits.reshape(*x.shape[:-1], words, 64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)


def xnor_gemm_ref(a_bits: np.ndarray, b_bits: np.ndarray, k: int) -> np.ndarray:
    """(M, W) × (N, W) words → (M, N) int32 ±1 dot products."""
    pop = np.bitwise_count(a_bits[:, None, :] ^ b_bits[None, :, :]).sum(axis=-1, dtype=np.int64)
    return (k - 2 * pop).astype(np.int32)


def sign(x: np.ndarray) -> np.ndarray:
    """sign with sign(0) = +1, as float64 so that products and sums are exact."""
    return np.where(x < 0, -1.0, 1.0)


def sign_matmul_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float computation xnor_gemm replaces: sign(A) @ sign(B).T."""
    return sign(a) @ sign(b).T


def binary_conv2d_ref(x_nhwc: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """conv2d(sign(x), sign(W)) with zero padding (a padded position contributes 0).

    x (B, H, W, C), weight (Cout, C, kh, kw) → (B, Ho, Wo, Cout) float64.
    """
    b, h, w, c = x_nhwc.shape
    cout, _, kh, kw = weight.shape
    xs = np.pad(sign(x_nhwc), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    cols = np.empty((b, ho, wo, kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xs[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
    ws = sign(weight).transpose(0, 2, 3, 1).reshape(cout, -1)  # (Cout, kh·kw·C)
    return cols.reshape(b, ho, wo, -1) @ ws.T


def im2col_bits_ref(
    x_nhwc: np.ndarray, kernel_size: tuple[int, int], stride: int, padding: int
) -> np.ndarray:
    """The bits im2col_bits gathers, built from the floats instead of from packed rows.

    x (B, H, W, C) float → (B·Ho·Wo, kh·ceil(kw·C/64)) uint64: per kernel row, the kw·C signs of
    the receptive field (j-major, c-minor) packed on their own, so each row starts a new word.
    Out-of-image positions are padded with 0, which packs to bit 0 (+1) as in the kernel.
    """
    b, h, w, c = x_nhwc.shape
    kh, kw = kernel_size
    xp = np.pad(x_nhwc, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    cols = np.empty((b, ho, wo, kh, kw, c), dtype=x_nhwc.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
    return pack_bits_ref(cols.reshape(b, ho, wo, kh, kw * c)).reshape(b * ho * wo, -1)


def affine_sign_pack_ref(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """sign(x·scale + shift) per channel (last axis), packed per sample (first axis).

    float32, a rounded multiply then a rounded add (numpy never fuses them): the kernel is built
    without FMA so that a threshold (scale 1, shift −t) stays the exact test x < t, and this
    twin rounds the same way, so the two agree bit for bit even where y is within an ulp of 0.
    """
    y = x.astype(np.float32) * scale.astype(np.float32)
    y = y + shift.astype(np.float32)
    return pack_bits_ref(y.reshape(x.shape[0], -1))


def bn_sign_pack_ref(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bits, absmean) as ``bn_sign_pack(..., with_absmean=True)``: absmean = mean_c |y| per pixel.

    The channel sum runs one channel at a time in float32, the kernel's order, rather than
    numpy's pairwise sum, so absmean matches bit for bit and not only to a tolerance.
    """
    c = x.shape[-1]
    y = x.astype(np.float32) * scale.astype(np.float32) + shift.astype(np.float32)
    y = y.reshape(x.shape[0], -1, c)  # (samples, pixels, channels)
    acc = np.zeros(y.shape[:2], dtype=np.float32)
    for ch in range(c):
        acc += np.abs(y[..., ch])
    return pack_bits_ref(y.reshape(x.shape[0], -1)), acc / np.float32(c)


def pool2d_nhwc_ref(x: np.ndarray, kind: str, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Max or average pooling of float32 (B, H, W, C), square window.

    Max ignores padded positions (they are −inf, so never win); average counts them as 0
    (torch's count_include_pad=True). Window positions are visited row by row in float32 and the
    sum is scaled by the float32 reciprocal 1/k², as the kernel does, so results are bit-exact;
    torch divides by k² instead, which can differ in the last bit.
    """
    b, h, w, c = x.shape
    fill = -np.inf if kind == "max" else 0.0
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    xp = np.pad(x.astype(np.float32), pad, constant_values=fill)
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    out = np.full((b, ho, wo, c), fill, dtype=np.float32)
    for i in range(kernel):
        for j in range(kernel):
            window = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
            if kind == "max":
                out = np.where(window > out, window, out)  # ties keep the earlier value
            else:
                out += window
    if kind == "avg":
        out *= np.float32(1.0) / np.float32(kernel * kernel)
    return out
