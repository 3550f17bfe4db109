"""Binary conv2d on packed activations: bit-level im2col, then the XNOR-popcount GEMM.

Layout: activations NHWC, each image row (W pixels × C channels) one bit stream. A filter is
packed per kernel row as its kw·C bits (j-major, c-minor) padded to a word boundary, and each
im2col row takes the same segments from the input rows, so K = kh·kw·C with little padding
even for small C (LeNet's 20 channels: 2 words per kernel row instead of 5 channel words).

Zero padding: positions outside the image read as bit 0 (+1), contributing Σ_c sign(W) of that
kernel offset; a per-output-pixel correction, precomputed once per input size, removes it, so a
padded position contributes 0 exactly as in ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xnornet.kernels import _xnor
from xnornet.kernels.ops import (
    PackedColumns,
    _check,
    gemm_packed,
    n_words,
    pack_bits,
    resolve_threads,
)


@dataclass(frozen=True)
class PackedActivations:
    """Sign bits of an NHWC float batch, one bit stream per image row."""

    bits: np.ndarray  # (B·H, ceil(W·C/64)) uint64
    batch: int
    height: int
    width: int
    channels: int

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes


def pack_nhwc(x: np.ndarray, threads: int | None = None) -> PackedActivations:
    """Binarize and pack a float32 (B, H, W, C) batch for ``binary_conv2d``."""
    _check(x, "x", np.float32, ndim=4)
    b, h, w, c = x.shape
    if min(b, h, w, c) < 1:
        raise ValueError(f"x must have non-empty dimensions, got shape {x.shape}")
    return PackedActivations(pack_bits(x.reshape(b * h, w * c), threads), b, h, w, c)


def unpack_signs(bits: np.ndarray, k: int) -> np.ndarray:
    """(..., W) uint64 → (..., k) ±1 int8, the inverse of pack_bits on signs."""
    raw = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little")[..., :k]
    return (1 - 2 * raw.astype(np.int8)).astype(np.int8)


@dataclass(frozen=True)
class BinaryConvWeights:
    """sign(W) of a conv layer, packed once; the border corrections cached per input size."""

    columns: PackedColumns  # Cout rows of kh·ceil(kw·C/64) words
    bits: np.ndarray  # (Cout, kh·ceil(kw·C/64)) uint64, the storage form
    in_channels: int
    kernel_size: tuple[int, int]
    stride: int
    padding: int
    offset_sums: np.ndarray = field(repr=False)  # (Cout, kh, kw) int32: Σ_c sign(W)
    _corrections: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def out_channels(self) -> int:
        return self.columns.n

    @property
    def segment_words(self) -> int:
        return n_words(self.kernel_size[1] * self.in_channels)

    @classmethod
    def from_float(cls, weight: np.ndarray, stride: int = 1, padding: int = 0) -> BinaryConvWeights:
        """Pack sign(W) of a float32 (Cout, C, kh, kw) weight."""
        _check(weight, "weight", np.float32, ndim=4)
        if not np.isfinite(weight).all():  # sign(NaN) is neither +1 nor -1
            raise ValueError("weight has NaN or infinite values; expected finite float32 weights")
        cout, c, kh, kw = weight.shape
        rows = np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(cout * kh, kw * c)
        bits = pack_bits(rows, threads=1).reshape(cout, -1)
        return cls.from_bits(bits, c, (kh, kw), stride, padding)

    @classmethod
    def from_bits(
        cls, bits: np.ndarray, in_channels: int, kernel_size: tuple[int, int], stride: int,
        padding: int,
    ) -> BinaryConvWeights:  # fmt: skip
        """Rebuild from stored bits (the packed model file), checking the layout."""
        _check(bits, "bits", np.uint64, ndim=2)
        kh, kw = (int(v) for v in kernel_size)
        c = int(in_channels)
        if min(kh, kw, c) < 1 or stride < 1 or padding < 0:
            raise ValueError(f"bad conv geometry: C={c}, kernel={kernel_size}, "
                             f"stride={stride}, padding={padding}")  # fmt: skip
        sw = n_words(kw * c)
        if bits.shape[1] != kh * sw:
            raise ValueError(f"bits has {bits.shape[1]} words per filter, layout needs {kh * sw}")
        segments = bits.reshape(-1, kh, sw)
        signs = unpack_signs(segments, kw * c).reshape(-1, kh, kw, c)
        if np.any(unpack_signs(segments, 64 * sw)[..., kw * c :] != 1):
            raise ValueError("bits has nonzero padding bits in a kernel-row segment")
        offset_sums = signs.sum(axis=-1, dtype=np.int32)
        columns = PackedColumns.from_bits(bits, kh * kw * c)
        return cls(columns, bits, c, (kh, kw), int(stride), int(padding), offset_sums)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding - kh) // self.stride + 1
        wo = (w + 2 * self.padding - kw) // self.stride + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"input {h}×{w} is smaller than the kernel {kh}×{kw} (padding {self.padding})")
        return ho, wo

    def correction(self, h: int, w: int) -> np.ndarray | None:
        """(Ho·Wo, Cout) int32: what the out-of-image positions (read as +1) added to each dot;
        None without padding, where no position is outside."""
        if self.padding == 0:
            self.output_hw(h, w)
            return None
        if (h, w) not in self._corrections:
            kh, kw = self.kernel_size
            ho, wo = self.output_hw(h, w)
            ih = np.arange(ho)[:, None] * self.stride - self.padding + np.arange(kh)  # (Ho, kh)
            iw = np.arange(wo)[:, None] * self.stride - self.padding + np.arange(kw)  # (Wo, kw)
            out_h, out_w = (ih < 0) | (ih >= h), (iw < 0) | (iw >= w)
            outside = out_h[:, None, :, None] | out_w[None, :, None, :]  # (Ho, Wo, kh, kw)
            corr = np.einsum("pij,nij->pn", outside.reshape(ho * wo, kh, kw).astype(np.int32),
                             self.offset_sums)  # fmt: skip
            self._corrections[(h, w)] = np.ascontiguousarray(corr, dtype=np.int32)
        return self._corrections[(h, w)]


def im2col_bits(x: PackedActivations, weights: BinaryConvWeights, threads: int | None = None):
    """(B·Ho·Wo, kh·segment_words) uint64: every receptive field's bits, in the weights' layout."""
    if not isinstance(x, PackedActivations):
        raise TypeError(f"x must be PackedActivations (see pack_nhwc), got {type(x).__name__}")
    if not isinstance(weights, BinaryConvWeights):
        raise TypeError(f"weights must be BinaryConvWeights (see from_float), got {type(weights).__name__}")
    _check(x.bits, "x.bits", np.uint64, ndim=2)
    dims = (x.batch, x.height, x.width, x.channels)
    if not all(type(d) is int or isinstance(d, np.integer) for d in dims) or min(dims) < 1:
        raise ValueError(f"x has batch, height, width, channels {dims}; expected positive integers")
    if x.bits.shape != (x.batch * x.height, n_words(x.width * x.channels)):
        raise ValueError(f"x.bits has shape {x.bits.shape}, a {x.batch}×{x.height}×{x.width}×{x.channels} "
                         f"batch packs to {(x.batch * x.height, n_words(x.width * x.channels))}")  # fmt: skip
    if x.channels != weights.in_channels:
        raise ValueError(f"x has {x.channels} channels, the weights expect {weights.in_channels}")
    ho, wo = weights.output_hw(x.height, x.width)
    kh, kw = weights.kernel_size
    cols = np.empty((x.batch * ho * wo, kh * weights.segment_words), dtype=np.uint64)
    t = resolve_threads(threads, cols.size * 8)
    _xnor.im2col(x.bits, x.batch, x.height, x.channels, kh, kw, weights.stride, weights.padding,
                 ho, wo, cols, t)  # fmt: skip
    return cols


def binary_conv2d(
    x: PackedActivations,
    weights: BinaryConvWeights,
    alpha: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
    threads: int | None = None,
    relu: bool = False,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """conv2d(sign(x), sign(W)) with exact zero padding, NHWC out.

    Without ``alpha``: the int32 ±1 dot products (B, Ho, Wo, Cout). With it, the fused
    float32 output transform ``alpha[n]·dot·row_scale[b, oh, ow] + bias[n] + residual[b, oh, ow, n]``
    (XNOR-Net's α and K, and a residual branch), then a ReLU with ``relu``.
    """
    cols = im2col_bits(x, weights, threads)
    ho, wo = weights.output_hw(x.height, x.width)
    out = gemm_packed(cols, weights.columns, corr=weights.correction(x.height, x.width),
                      alpha=alpha, bias=bias, row_scale=row_scale, relu=relu, threads=threads,
                      residual=residual)  # fmt: skip
    return out.reshape(x.batch, ho, wo, weights.out_channels)
