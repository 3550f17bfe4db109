"""Binary layers built once and called many times, as the packed engine runs them.

``binary_conv2d`` and ``binary_linear`` validate every argument and allocate their outputs on
each call: right for tests and one-off use, but a network calls the same layer with the same
shapes again and again. A layer object checks its weights, α, bias and the sign's BatchNorm once,
keeps its workspaces (kernels.workspace) and, on the AVX2 path, its weights' nibble planes
(PackedColumns.operand), and runs pack → im2col → GEMM → output transform as one C call with
one parallel region (kernels/xn_layer.h).

The array a call returns is the layer's own output buffer: the next call overwrites it (copy it
to keep it). One caller at a time per layer object.

Examples:
    >>> from xnornet.kernels import binary_conv2d, pack_nhwc
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((8, 3, 3, 3), dtype=np.float32)
    >>> layer = BinaryConv2dLayer(BinaryConvWeights.from_float(w, padding=1), threads=1)
    >>> x = rng.standard_normal((2, 5, 5, 3), dtype=np.float32)
    >>> bool((layer(x) == binary_conv2d(pack_nhwc(x), layer.weights, threads=1)).all())
    True
"""

from __future__ import annotations

import numpy as np

from xnornet.kernels import _xnor
from xnornet.kernels.conv import BinaryConvWeights, PackedActivations
from xnornet.kernels.isa import isa_code
from xnornet.kernels.ops import (
    SERIAL_WORK,
    PackedColumns,
    _check,
    _check_columns,
    _check_padding_bits,
    _optional_f32,
    n_words,
    resolve_threads,
)
from xnornet.kernels.workspace import Workspace

__all__ = ["BinaryConv2dLayer", "BinaryLinearLayer"]


class _BinaryLayer:
    """What both layers share: the fused output transform, the sign's affine, the workspace."""

    def __init__(self, n: int, in_channels: int, alpha, bias, relu: bool, threads, sign) -> None:
        if alpha is None and (bias is not None or relu):
            raise ValueError("bias and relu need alpha (without it the layer returns int32 dots)")
        self.alpha = _optional_f32(alpha, "alpha", n)
        self.bias = _optional_f32(bias, "bias", n)
        self.relu = bool(relu)
        self.threads = resolve_threads(threads)
        self.sign = None
        if sign is not None:  # per-channel (scale, shift) whose sign(x·scale + shift) is packed
            scale, shift = sign
            for arr, name in ((scale, "sign scale"), (shift, "sign shift")):
                _check(arr, name, np.float32, ndim=1)
                if arr.shape[0] != in_channels:
                    raise ValueError(f"{name} must have {in_channels} values, got {arr.shape[0]}")
            self.sign = (scale, shift)
        self._tiled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.workspace = Workspace()

    def _affine(self, reps: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The sign's scale/shift tiled over the `reps` pixels of a packed row, made once."""
        if self.sign is None:
            return None, None
        if reps not in self._tiled:
            self._tiled[reps] = tuple(np.ascontiguousarray(np.tile(v, reps)) for v in self.sign)
        return self._tiled[reps]

    def _extras(self, m: int, n: int, row_scale, residual, out: np.ndarray):
        if self.alpha is None and (row_scale is not None or residual is not None):
            raise ValueError("row_scale and residual need alpha (the layer returns int32 dots)")
        row_scale = _optional_f32(row_scale, "row_scale", m)
        if residual is not None:
            _check(residual, "residual", np.float32)
            if residual.size != m * n:
                raise ValueError(f"residual must have {m}×{n} values, got shape {residual.shape}")
            residual = residual.reshape(m, n)
            if np.may_share_memory(residual, out):  # the row store writes out before adding it
                residual = residual.copy()
        return row_scale, residual

    def _out(self, m: int, n: int) -> np.ndarray:
        return self.workspace.get("out", (m, n), np.int32 if self.alpha is None else np.float32)

    def _threads(self, work: int) -> int:
        return self.threads if work >= SERIAL_WORK else 1


class BinaryConv2dLayer(_BinaryLayer):
    """conv2d(sign(x), sign(W)) with exact zero padding on NHWC float32 input, then
    ``alpha·dot·row_scale + bias + residual`` (and a ReLU with ``relu``), as ``binary_conv2d``.

    ``sign``: optional per-channel (scale, shift); the layer then packs sign(x·scale + shift),
    a BatchNorm or threshold before it, without writing its float output.
    """

    def __init__(
        self,
        weights: BinaryConvWeights,
        alpha: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        relu: bool = False,
        threads: int | None = None,
        sign: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if not isinstance(weights, BinaryConvWeights):
            raise TypeError(f"weights must be BinaryConvWeights, got {type(weights).__name__}")
        _check_columns(weights.columns)
        self.weights = weights
        super().__init__(weights.out_channels, weights.in_channels, alpha, bias, relu, threads, sign)
        weights.columns.operand(isa_code())  # AVX2: the nibble planes made now, not in a call

    def __call__(self, x: np.ndarray, *, row_scale=None, residual=None) -> np.ndarray:
        """x (B, H, W, C) float32 → (B, Ho, Wo, Cout): float32 with alpha, else int32 dots."""
        _check(x, "x", np.float32, ndim=4)
        b, h, w, c = x.shape
        if min(x.shape) < 1:
            raise ValueError(f"x must have non-empty dimensions, got shape {x.shape}")
        if c != self.weights.in_channels:
            raise ValueError(f"x has {c} channels, the weights expect {self.weights.in_channels}")
        bits = self.workspace.get("bits", (b * h, n_words(w * c)), np.uint64)
        scale, shift = self._affine(w)
        return self._run(x.reshape(b * h, w * c), scale, shift, bits, b, h, w, row_scale, residual)

    def forward_packed(self, x: PackedActivations, *, row_scale=None, residual=None) -> np.ndarray:
        """The same on activations packed already (``pack_nhwc``, ``bn_sign_pack``)."""
        if not isinstance(x, PackedActivations):
            raise TypeError(f"x must be PackedActivations (see pack_nhwc), got {type(x).__name__}")
        _check(x.bits, "x.bits", np.uint64, ndim=2)
        dims = (x.batch, x.height, x.width, x.channels)
        if not all(isinstance(d, int | np.integer) for d in dims) or min(dims) < 1:
            raise ValueError(f"x has batch, height, width, channels {dims}; expected positive integers")
        words = n_words(x.width * x.channels)
        if x.bits.shape != (x.batch * x.height, words):
            raise ValueError(f"x.bits has shape {x.bits.shape}, expected {(x.batch * x.height, words)}")
        if x.channels != self.weights.in_channels:
            raise ValueError(f"x has {x.channels} channels, the weights expect {self.weights.in_channels}")
        _check_padding_bits(x.bits, x.width * x.channels, "x.bits")
        return self._run(None, None, None, x.bits, x.batch, x.height, x.width, row_scale, residual)

    def _run(self, rows, scale, shift, bits, b, h, w, row_scale, residual) -> np.ndarray:
        wt = self.weights
        ho, wo = wt.output_hw(h, w)
        kh, kw = wt.kernel_size
        m, n = b * ho * wo, wt.out_channels
        cols = self.workspace.get("cols", (m, kh * wt.segment_words), np.uint64)
        out = self._out(m, n)
        row_scale, residual = self._extras(m, n, row_scale, residual, out)
        geometry = (b, h, wt.in_channels, kh, kw, wt.stride, wt.padding, ho, wo)
        isa = isa_code()
        _xnor.layer_forward(isa, rows, scale, shift, bits, geometry, cols, wt.columns.operand(isa), n,
                            wt.columns.k, self.alpha, self.bias, row_scale, wt.correction(h, w), out,
                            self._threads(m * n * cols.shape[1]), self.relu, residual)  # fmt: skip
        return out.reshape(b, ho, wo, n)


class BinaryLinearLayer(_BinaryLayer):
    """XNOR linear layer on float32 (M, K) input: ``alpha·dot·row_scale + bias`` (then a ReLU
    with ``relu``), as ``binary_linear`` on ``pack_bits(x)``; ``sign`` as for the conv layer."""

    def __init__(
        self,
        columns: PackedColumns,
        alpha: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        relu: bool = False,
        threads: int | None = None,
        sign: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        _check_columns(columns)
        if n_words(columns.k) != columns.words:
            raise ValueError(f"columns.k={columns.k} needs {n_words(columns.k)} words, panels have "
                             f"{columns.words}")  # fmt: skip
        self.columns = columns
        super().__init__(columns.n, columns.k, alpha, bias, relu, threads, sign)
        columns.operand(isa_code())  # AVX2: the nibble planes made now, not in a call

    def __call__(self, x: np.ndarray, *, row_scale=None) -> np.ndarray:
        """x (M, K) float32 → (M, N)."""
        _check(x, "x", np.float32, ndim=2)
        if x.shape[0] < 1 or x.shape[1] != self.columns.k:
            raise ValueError(f"x must have shape (M >= 1, {self.columns.k}), got {x.shape}")
        bits = self.workspace.get("bits", (x.shape[0], self.columns.words), np.uint64)
        scale, shift = self._affine(1)
        return self._run(x, scale, shift, bits, row_scale)

    def forward_packed(self, bits: np.ndarray, *, row_scale=None) -> np.ndarray:
        """The same on packed rows (M, words) uint64 (``pack_bits``, ``bn_sign_pack``)."""
        _check(bits, "bits", np.uint64, ndim=2)
        if bits.shape[0] < 1 or bits.shape[1] != self.columns.words:
            raise ValueError(f"bits must have shape (M >= 1, {self.columns.words}), got {bits.shape}")
        _check_padding_bits(bits, self.columns.k, "bits")
        return self._run(None, None, None, bits, row_scale)

    def _run(self, x, scale, shift, bits, row_scale) -> np.ndarray:
        m, n = bits.shape[0], self.columns.n
        out = self._out(m, n)
        row_scale, _ = self._extras(m, n, row_scale, None, out)
        isa = isa_code()
        _xnor.layer_forward(isa, x, scale, shift, bits, None, None, self.columns.operand(isa), n,
                            self.columns.k, self.alpha, self.bias, row_scale, None, out,
                            self._threads(m * n * self.columns.words), self.relu)  # fmt: skip
        return out
