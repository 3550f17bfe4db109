"""Binary layers built once and called many times, as the packed engine runs them.

``binary_conv2d`` and ``binary_linear`` validate every argument and allocate their outputs on
each call: right for tests and one-off use, but a network calls the same layer with the same
shapes again and again. A layer object checks its weights, α, bias and the sign's BatchNorm once,
keeps its workspaces (kernels.workspace) and, on the AVX2 path, its weights' nibble planes
(PackedColumns.operand), and runs pack → im2col (implicit: kernels/xn_rows.h) → GEMM → output
transform as one C call with one parallel region (kernels/xn_layer.h).

The array a call returns is the layer's own output buffer: the next call overwrites it (copy it
to keep it). One caller at a time per layer object. Everything a call needs besides its input
(workspace views, geometry, border correction, thread count) is planned once per input shape,
so a repeated call costs its argument checks and the C call: about 4 µs of Python, not 17.

``emit_sign`` fuses across layers: when the next layer is binary and reads this one's output
only through a BatchNorm or threshold and a sign, the layer returns the packed sign of
``y·scale + shift`` (what the next layer's ``sign`` would pack) instead of the float32 y, straight
from its output transform: 1 bit per value is written instead of 32, and the next layer's
``forward_packed`` skips its sign-pack pass. Bit for bit what the unfused pair computes.

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

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

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

# What an emitting layer returns (PackedActivations, or a linear layer's bit rows), by id: its
# padding bits are zero by construction, so the next layer need not check them on every call.
_EMITTED: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()


@dataclass
class _Plan:
    """One input shape's call, prepared: the workspace views (valid while the workspace keeps
    its buffers: `generation`) and every argument of the C call that is not the input, made into
    a LayerCall per kernel path on its first call."""

    m: int
    n: int
    bits: np.ndarray | None  # the packed input, filled by the call (float input), else None
    input_shape: tuple[int, int]  # (rows, words) of the packed input
    x_cols: int  # columns of the float input rows, 0 for packed input
    scale: np.ndarray | None
    shift: np.ndarray | None
    geometry: tuple | None
    cols: np.ndarray | None
    corr: np.ndarray | None
    out: np.ndarray
    threads: int
    emit: dict
    result: np.ndarray | PackedActivations
    generation: int = 0  # the workspace's, set by _plan once the views are taken
    calls: dict = field(default_factory=dict)  # kernel path code -> _xnor.LayerCall


__all__ = ["BinaryConv2dLayer", "BinaryLinearLayer"]


def _channel_affine(pair, channels: int, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A per-channel (scale, shift) whose sign(x·scale + shift) is packed, checked once."""
    if pair is None:
        return None
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError(f"{what} must be a (scale, shift) pair of float32 arrays")
    for arr, name in zip(pair, (f"{what} scale", f"{what} shift"), strict=True):
        _check(arr, name, np.float32, ndim=1)
        if arr.shape[0] != channels:
            raise ValueError(f"{name} must have {channels} values, got {arr.shape[0]}")
    return tuple(np.ascontiguousarray(a) for a in pair)


class _BinaryLayer:
    """What both layers share: the fused output transform, the sign's affine, the workspace."""

    def __init__(
        self, n: int, in_channels: int, alpha, bias, relu: bool, threads, sign, emit_sign=None
    ) -> None:
        if alpha is None and (bias is not None or relu):
            raise ValueError("bias and relu need alpha (without it the layer returns int32 dots)")
        if alpha is None and emit_sign is not None:
            raise ValueError("emit_sign needs alpha (the sign is taken of α·dot + bias)")
        self.alpha = _optional_f32(alpha, "alpha", n)
        self.bias = _optional_f32(bias, "bias", n)
        self.relu = bool(relu)
        self.threads = resolve_threads(threads)
        self.sign = _channel_affine(sign, in_channels, "sign")
        self.emit_sign = _channel_affine(emit_sign, n, "emit_sign")
        self._tiled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._plans: dict[tuple, _Plan] = {}
        self.workspace = Workspace()

    def _plan(self, key: tuple, build: Callable[[], _Plan]) -> _Plan:
        """The prepared call for this input shape; rebuilt when the workspace has grown since
        (a larger batch replaced a buffer that the plan's views point into)."""
        plan = self._plans.get(key)
        if plan is None or plan.generation != self.workspace.generation:
            plan = build()
            plan.generation = self.workspace.generation
            self._plans[key] = plan
        return plan

    def _call(self, plan: _Plan, rows, bits, row_scale, residual):
        """One forward pass: rows (float input, packed by the call into plan.bits) or bits."""
        if row_scale is not None or residual is not None:
            row_scale, residual = self._extras(plan.m, plan.n, row_scale, residual, plan.out)
        code = isa_code()
        call = plan.calls.get(code)
        if call is None:
            isa, panels = self.columns.path(code, plan.m)  # AVX2: the nibble planes, mostly
            call = plan.calls[code] = _xnor.LayerCall(
                isa, plan.scale, plan.shift, plan.bits, plan.input_shape, plan.x_cols, plan.geometry,
                plan.cols, panels, plan.n, self.columns.k, self.alpha, self.bias, plan.corr, plan.out,
                plan.threads, self.relu, **plan.emit)  # fmt: skip
        call(rows, bits, row_scale, residual)
        return plan.result

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
        if self.emit_sign is not None:  # the output transform writes bits, never this array
            return self.workspace.get("out", (1, 1), np.float32)
        return self.workspace.get("out", (m, n), np.int32 if self.alpha is None else np.float32)

    def _emit(self, streams: int, pixels: int, n: int) -> dict:
        """layer_forward's arguments for the emitted bits: `streams` rows of `pixels`·n bits."""
        if self.emit_sign is None:
            return {}
        bits = self.workspace.get("emit", (streams, n_words(pixels * n)), np.uint64)
        scale, shift = self.emit_sign
        return {"emit_scale": scale, "emit_shift": shift, "emit_bits": bits, "emit_pixels": pixels}

    def _threads(self, work: int) -> int:
        return self.threads if work >= SERIAL_WORK else 1


class BinaryConv2dLayer(_BinaryLayer):
    """conv2d(sign(x), sign(W)) with exact zero padding on NHWC float32 input, then
    ``alpha·dot·row_scale + bias + residual`` (and a ReLU with ``relu``), as ``binary_conv2d``.

    ``sign``: optional per-channel (scale, shift); the layer then packs sign(x·scale + shift),
    a BatchNorm or threshold before it, without writing its float output.
    ``emit_sign``: optional per-output-channel (scale, shift); the layer then returns
    PackedActivations of sign(y·scale + shift) instead of y (see the module docstring).
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
        emit_sign: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if not isinstance(weights, BinaryConvWeights):
            raise TypeError(f"weights must be BinaryConvWeights, got {type(weights).__name__}")
        _check_columns(weights.columns)
        self.weights, self.columns = weights, weights.columns
        n, c = weights.out_channels, weights.in_channels
        super().__init__(n, c, alpha, bias, relu, threads, sign, emit_sign)
        self.columns.operand(isa_code())  # AVX2: the nibble planes made now, not in a call

    def __call__(self, x: np.ndarray, *, row_scale=None, residual=None) -> np.ndarray | PackedActivations:
        """x (B, H, W, C) float32 → (B, Ho, Wo, Cout): float32 with alpha, else int32 dots;
        with ``emit_sign``, the PackedActivations of its sign."""
        _check(x, "x", np.float32, ndim=4)
        b, h, w, c = x.shape
        if min(x.shape) < 1:
            raise ValueError(f"x must have non-empty dimensions, got shape {x.shape}")
        if c != self.weights.in_channels:
            raise ValueError(f"x has {c} channels, the weights expect {self.weights.in_channels}")
        plan = self._plan((False, b, h, w), lambda: self._conv_plan(b, h, w, packed=False))
        return self._call(plan, x.reshape(b * h, w * c), plan.bits, row_scale, residual)

    def forward_packed(
        self, x: PackedActivations, *, row_scale=None, residual=None
    ) -> np.ndarray | PackedActivations:
        """The same on activations packed already (``pack_nhwc``, ``bn_sign_pack``, or another
        layer's ``emit_sign``)."""
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
        if _EMITTED.get(id(x)) is not x:  # emitted bits have zero padding by construction
            _check_padding_bits(x.bits, x.width * x.channels, "x.bits")
        b, h, w = x.batch, x.height, x.width
        plan = self._plan((True, b, h, w), lambda: self._conv_plan(b, h, w, packed=True))
        return self._call(plan, None, x.bits, row_scale, residual)

    def _conv_plan(self, b: int, h: int, w: int, packed: bool) -> _Plan:
        wt = self.weights
        ho, wo = wt.output_hw(h, w)
        kh, kw = wt.kernel_size
        m, n, c = b * ho * wo, wt.out_channels, wt.in_channels
        bits = None if packed else self.workspace.get("bits", (b * h, n_words(w * c)), np.uint64)
        scale, shift = (None, None) if packed else self._affine(w)
        geometry = (b, h, c, kh, kw, wt.stride, wt.padding, ho, wo)
        cols = self.workspace.get("cols", _xnor.conv_workspace_shape(*geometry, n_words(w * c)), np.uint64)
        out = self._out(m, n)
        emit = self._emit(b * ho, wo, n)
        if emit:
            result = PackedActivations(emit["emit_bits"], b, ho, wo, n)
            _EMITTED[id(result)] = result
        else:
            result = out.reshape(b, ho, wo, n)
        threads, corr = self._threads(m * n * kh * wt.segment_words), wt.correction(h, w)
        input_shape, x_cols = (b * h, n_words(w * c)), 0 if packed else w * c
        return _Plan(m=m, n=n, bits=bits, input_shape=input_shape, x_cols=x_cols, scale=scale, shift=shift,
                     geometry=geometry, cols=cols, corr=corr, out=out, threads=threads, emit=emit,
                     result=result)  # fmt: skip


class BinaryLinearLayer(_BinaryLayer):
    """XNOR linear layer on float32 (M, K) input: ``alpha·dot·row_scale + bias`` (then a ReLU
    with ``relu``), as ``binary_linear`` on ``pack_bits(x)``; ``sign`` as for the conv layer,
    and ``emit_sign`` too: the call then returns the packed (M, words) sign rows."""

    def __init__(
        self,
        columns: PackedColumns,
        alpha: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        relu: bool = False,
        threads: int | None = None,
        sign: tuple[np.ndarray, np.ndarray] | None = None,
        emit_sign: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        _check_columns(columns)
        if n_words(columns.k) != columns.words:
            raise ValueError(f"columns.k={columns.k} needs {n_words(columns.k)} words, panels have "
                             f"{columns.words}")  # fmt: skip
        self.columns = columns
        super().__init__(columns.n, columns.k, alpha, bias, relu, threads, sign, emit_sign)
        self.columns.operand(isa_code())  # AVX2: the nibble planes made now, not in a call

    def __call__(self, x: np.ndarray, *, row_scale=None) -> np.ndarray:
        """x (M, K) float32 → (M, N)."""
        _check(x, "x", np.float32, ndim=2)
        if x.shape[0] < 1 or x.shape[1] != self.columns.k:
            raise ValueError(f"x must have shape (M >= 1, {self.columns.k}), got {x.shape}")
        plan = self._plan((False, x.shape[0]), lambda: self._linear_plan(x.shape[0], packed=False))
        return self._call(plan, x, plan.bits, row_scale, None)

    def forward_packed(self, bits: np.ndarray, *, row_scale=None) -> np.ndarray:
        """The same on packed rows (M, words) uint64 (``pack_bits``, ``bn_sign_pack``)."""
        _check(bits, "bits", np.uint64, ndim=2)
        if bits.shape[0] < 1 or bits.shape[1] != self.columns.words:
            raise ValueError(f"bits must have shape (M >= 1, {self.columns.words}), got {bits.shape}")
        if _EMITTED.get(id(bits)) is not bits:
            _check_padding_bits(bits, self.columns.k, "bits")
        plan = self._plan((True, bits.shape[0]), lambda: self._linear_plan(bits.shape[0], packed=True))
        return self._call(plan, None, bits, row_scale, None)

    def _linear_plan(self, m: int, packed: bool) -> _Plan:
        n = self.columns.n
        bits = None if packed else self.workspace.get("bits", (m, self.columns.words), np.uint64)
        scale, shift = (None, None) if packed else self._affine(1)
        out = self._out(m, n)
        emit = self._emit(m, 1, n)
        result = emit["emit_bits"] if emit else out
        if emit:
            _EMITTED[id(result)] = result
        threads = self._threads(m * n * self.columns.words)
        input_shape, x_cols = (m, self.columns.words), 0 if packed else self.columns.k
        return _Plan(m=m, n=n, bits=bits, input_shape=input_shape, x_cols=x_cols, scale=scale, shift=shift,
                     geometry=None, cols=None, corr=None, out=out, threads=threads, emit=emit,
                     result=result)  # fmt: skip
