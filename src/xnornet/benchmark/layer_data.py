"""One bench shape's input, weights and the two references a peer is checked against, in numpy
only: a peer's worker process computes them without starting another library's thread pool."""

from __future__ import annotations

import numpy as np

from xnornet.benchmark.shapes import LayerShape
from xnornet.kernels.reference import binary_conv2d_ref, sign, sign_matmul_ref


def layer_data(shape: LayerShape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 input in the binary layer's own layout (NHWC for a conv, (B, C) for a linear layer)
    and float32 weights ((C_out, C_in, k, k) or (C_out, C_in)), standard normal from ``seed``."""
    rng = np.random.default_rng(seed)
    if shape.kind == "linear":
        x = rng.standard_normal((shape.batch, shape.c_in), dtype=np.float32)
        return x, rng.standard_normal((shape.c_out, shape.c_in), dtype=np.float32)
    x = rng.standard_normal((shape.batch, shape.h, shape.w, shape.c_in), dtype=np.float32)
    return x, rng.standard_normal((shape.c_out, shape.c_in, shape.k, shape.k), dtype=np.float32)


def float_reference(shape: LayerShape, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The float layer in float64: (B, C_out) or NHWC (B, Ho, Wo, C_out)."""
    if shape.kind == "linear":
        return x.astype(np.float64) @ w.astype(np.float64).T
    b, p, k, s = shape.batch, shape.padding, shape.k, shape.stride
    ho, wo = shape.out_hw
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))  # (B, H+2p, W+2p, C)
    cols = np.empty((b, ho, wo, k, k, shape.c_in))
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = xp[:, i : i + s * ho : s, j : j + s * wo : s]
    wm = w.astype(np.float64).transpose(0, 2, 3, 1).reshape(shape.c_out, -1)  # (C_out, k·k·C)
    return cols.reshape(b, ho, wo, -1) @ wm.T


def binary_reference(shape: LayerShape, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact ±1 dots of sign(x) and sign(w), zero padding contributing 0 (the kernel's numpy
    twin): what a binary convolution must return, every value an integer."""
    if shape.kind == "linear":
        return sign_matmul_ref(x, w)
    return binary_conv2d_ref(x, w, shape.stride, shape.padding)


def weight_signs(w: np.ndarray) -> np.ndarray:
    """±1 float32 weights, sign(0) = +1."""
    return sign(w).astype(np.float32)
