"""The full-precision layers (first, last, ResNet's 1×1 shortcuts) in int8 on torch's x86 engine.

XNOR-Net keeps these layers in full precision while training; at inference they cost more than
all the binary layers together when run in float32. torch's own quantized conv/linear (the x86
engine: fbgemm/oneDNN) runs them several times faster. A layer stored with ``int8: true`` holds:

- ``weight_int8`` (int8, the weight's shape) and ``weight_scale`` (float32 per output channel):
  symmetric per-channel qint8, W ≈ weight_int8 · weight_scale (zero point 0);
- ``input_scale`` / ``input_zero_point`` (float32[1] / uint8[1]): the quint8 grid its input is
  rounded to, calibrated on real inputs when packing (xnornet.packed.int8_calibration);
- ``output_scale`` / ``output_zero_point``: the quint8 grid torch's op requantizes its output to
  (after the fused ReLU, if any); the engine turns it back into float32 for the next step.

Every number is torch's own: the step calls ``quantized::conv2d`` / ``linear`` (``_relu``) with
prepacked parameters, so its integers equal ``torch.ao.nn.quantized.Conv2d`` / ``Linear`` with
the same scales, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

ENGINE = "x86"  # torch's quantized backend for x86 CPUs (fbgemm and oneDNN behind one name)
INT8_FIELDS = ("weight_int8", "weight_scale", "input_scale", "input_zero_point", "output_scale",
               "output_zero_point")  # fmt: skip


@contextlib.contextmanager
def quantized_engine() -> Iterator[None]:
    """torch's x86 quantized engine while prepacking: the packed parameters carry their backend,
    so the choice is not left as a process-wide side effect."""
    saved = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        yield
    finally:
        torch.backends.quantized.engine = saved


@contextlib.contextmanager
def exact_quantized_ops() -> Iterator[None]:
    """Deterministic-algorithms mode off while a quantized op runs, then restored. torch refuses
    its quantized ops under ``torch.use_deterministic_algorithms(True)`` (set process-wide by
    Lightning's ``deterministic=True``) only because their output allocation
    (``quantized_resize_cpu_``) is unflagged; the integer arithmetic itself is exact."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@dataclass(frozen=True)
class Int8Layer:
    """One int8 layer's stored numbers, as torch's quantized ops take them."""

    weight: np.ndarray  # int8 (out, in[, kh, kw])
    weight_scale: np.ndarray  # float32 (out,)
    bias: np.ndarray | None  # float32 (out,)
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], i: int) -> Int8Layer:
        return cls(
            t[f"{i}.weight_int8"], t[f"{i}.weight_scale"], t.get(f"{i}.bias"),
            float(t[f"{i}.input_scale"][0]), int(t[f"{i}.input_zero_point"][0]),
            float(t[f"{i}.output_scale"][0]), int(t[f"{i}.output_zero_point"][0]),
        )  # fmt: skip

    def qweight(self) -> torch.Tensor:
        """The weight as torch's per-channel qint8 tensor (float64 scales hold the float32 ones exactly)."""
        w = torch.from_numpy(np.ascontiguousarray(self.weight))
        scales = torch.from_numpy(self.weight_scale.astype(np.float64))
        zeros = torch.zeros(len(scales), dtype=torch.int64)
        return torch._make_per_channel_quantized_tensor(w, scales, zeros, 0)

    def dequantized_weight(self) -> np.ndarray:
        """weight_int8 · weight_scale in float32: what the int8 layer computes with (exporters)."""
        return self.weight.astype(np.float32) * self.weight_scale.reshape(-1, *[1] * (self.weight.ndim - 1))

    def bias_tensor(self) -> torch.Tensor | None:
        return torch.from_numpy(self.bias) if self.bias is not None else None


def quantize_input(x: torch.Tensor, q: Int8Layer) -> torch.Tensor:
    return torch.quantize_per_tensor(x, q.input_scale, q.input_zero_point, torch.quint8)


def dequantize_nhwc(y: torch.Tensor) -> np.ndarray:
    """quint8 output → float32 (q − zero point) · scale in the engine's layout, by torch's own
    dequantize: one pass, and channels-last memory read as NHWC without a copy. The integer
    view (``int_repr``) followed by numpy arithmetic gave the same bits in five passes: on
    ResNet-18's 1×1 shortcuts (batch 16, Zen 4, 1 thread) 2.2 ms against 0.14 ms."""
    out = y.dequantize()
    if out.ndim == 4:
        out = out.permute(0, 2, 3, 1)  # channels-last NCHW memory is NHWC
    return out.numpy()


# torch's quantized max pool on channels-last memory takes the channels in vector blocks of 32 and
# the rest one at a time: LeNet-5's conv1 (20 channels, batch 256, Zen 4, 1 thread) pooled in
# 8.0 ms where its conv took 2.3 ms; 32 channels pool in 0.3 ms.
POOL_BLOCK = 32


def with_zero_filters(q: Int8Layer, extra: int) -> Int8Layer:
    """``q`` with ``extra`` all-zero output filters (scale 1, bias 0) after its own: their outputs
    are the zero point, and the real channels are the same integers, so a caller drops them after."""
    zeros = np.zeros((extra, *q.weight.shape[1:]), np.int8)
    return replace(
        q,
        weight=np.concatenate([q.weight, zeros]),
        weight_scale=np.concatenate([q.weight_scale, np.ones(extra, np.float32)]),
        bias=None if q.bias is None else np.concatenate([q.bias, np.zeros(extra, np.float32)]),
    )


def int8_conv(
    q: Int8Layer, stride: int, pad: int, relu: bool = False, maxpool: tuple[int, int, int] | None = None
) -> Callable[..., np.ndarray]:
    """A full-precision conv in int8: quantize the NHWC input (seen as channels-last NCHW), torch's
    quantized conv2d (ReLU fused when nothing is added first), float32 NHWC out. A residual is
    added in float32 after the op (then the ReLU), as the float step does. ``maxpool`` (kernel,
    stride, padding): the max pool that follows, on the quint8 output before it becomes float32;
    dequantizing is monotonic, so the result is the same bits, and the stem's 51 MB float32
    output (ResNet-18, batch 16) is never written, only the pooled quarter of it. A strided 1×1
    conv without padding (ResNet's shortcuts) reads every stride-th pixel only: those are
    quantized and convolved at stride 1, the same numbers for a quarter of the quantizing. Before
    a max pool, a channel count that is not a multiple of POOL_BLOCK is padded with zero filters."""
    subsample = stride if q.weight.shape[2:] == (1, 1) and pad == 0 and stride > 1 else 1
    channels = q.weight.shape[0]
    if maxpool is not None and channels % POOL_BLOCK:
        q = with_zero_filters(q, -channels % POOL_BLOCK)
    with quantized_engine():
        packed = torch.ops.quantized.conv2d_prepack(
            q.qweight(), q.bias_tensor(), [stride // subsample] * 2, [pad] * 2, [1, 1], 1
        )

    def run(x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        if subsample > 1:  # (B, H/s, W/s, C): the pixels a strided 1×1 conv reads
            x = np.ascontiguousarray(x[:, ::subsample, ::subsample])
        b, h, w, c = x.shape  # (B, H, W, C) memory as channels-last (B, C, H, W)
        xt = torch.from_numpy(x).as_strided((b, c, h, w), (h * w * c, 1, w * c, c))
        with torch.no_grad(), exact_quantized_ops():
            qx = quantize_input(xt, q)
            fused = relu and residual is None
            op = torch.ops.quantized.conv2d_relu if fused else torch.ops.quantized.conv2d
            y = op(qx, packed, q.output_scale, q.output_zero_point)
            if maxpool is not None:
                y = F.max_pool2d(y, *maxpool)
            y = dequantize_nhwc(y)
        if y.shape[-1] != channels:  # the zero filters' channels, each the zero point, dropped
            y = np.ascontiguousarray(y[..., :channels])
        if residual is not None:
            y += residual
            if relu:
                np.maximum(y, 0, out=y)
        return y

    return run


def int8_linear(q: Int8Layer, relu: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A full-precision linear layer in int8 on torch's quantized linear (ReLU fused)."""
    with quantized_engine():
        packed = torch.ops.quantized.linear_prepack(q.qweight(), q.bias_tensor())
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), exact_quantized_ops():
            qx = quantize_input(torch.from_numpy(np.ascontiguousarray(x)), q)
            return dequantize_nhwc(op(qx, packed, q.output_scale, q.output_zero_point))

    return run
