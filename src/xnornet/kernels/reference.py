"""Plain numpy twins of every kernel: slow, obvious, and what the tests hold the kernel to.

Same conventions as the kernel (DESIGN.md): bit 1 ⇔ x < 0, little-endian bits along the last
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
