"""Run a packed model with numpy and the XNOR-popcount kernel, no torch.

The architecture is compiled once into a list of steps on channels-last (NHWC) arrays:
- BatchNorm → sign → binary conv/linear (XNOR): one fused pass packs the BN output's signs
  (and, with K/β scaling, its per-pixel mean |·|), then the kernel's GEMM applies α, K and bias;
  the activations between BN and the binary layer are never a float tensor. Each is a layer
  object (kernels.layers) that keeps its workspaces and output buffer across forward passes.
- binary layer → (ReLU) → BatchNorm → sign → binary layer (ResNet's conv_a → conv_b, AlexNet's
  conv3 → conv4 → conv5 and fc6 → fc7): the first layer's output transform emits the second's
  packed input bits directly (``emit_sign``); no float tensor and no sign-pack pass between them.
- binary weights with float inputs (BWN): α·sign(W) is unpacked to float32 once, at load.
- full-precision conv/linear: torch's float32 conv2d/linear, the ops the baseline runs too
  (one thread pool: numpy's BLAS, whose idle threads spin, is not used); or, packed with
  ``int8: true``, torch's quantized int8 conv/linear on its x86 engine (xnornet.packed.int8_ops).
  BatchNorm arrives folded or as thresholds (see inference_form).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

from xnornet.errors import XnornetError
from xnornet.kernels import (
    BinaryConv2dLayer,
    BinaryConvWeights,
    BinaryLinearLayer,
    PackedActivations,
    PackedColumns,
    pack_bits,
)
from xnornet.kernels.ops import bn_sign_pack, pool2d_nhwc
from xnornet.packed.file_format import PackedModel, load_packed, unpack_weight_signs
from xnornet.packed.fusion_plan import PlannedStep, fusion_plan, weight_kind
from xnornet.packed.int8_ops import Int8Layer, int8_conv, int8_linear

Step = Callable[[np.ndarray], np.ndarray]


@dataclass
class NamedStep:
    name: str
    run: Step
    inputs: list[int]  # the spec indices it reads (-1: the network input)
    output: int  # the spec index whose value it produces


def weight_signs(model: PackedModel, i: int) -> np.ndarray:
    return unpack_weight_signs(model.tensors[f"{i}.weight_bits"], model.architecture[i], f"layer {i}")


def float_weight(model: PackedModel, i: int) -> np.ndarray:
    """Float weights of layer i: stored float32, α·sign(W) unpacked from the bits (BWN), or an
    int8 layer's weight_int8 · weight_scale."""
    spec, t = model.architecture[i], model.tensors
    if spec.int8:
        return Int8Layer.from_tensors(t, i).dequantized_weight()
    if not spec.binary:
        return t[f"{i}.weight"]
    signs = weight_signs(model, i).astype(np.float32)
    return signs * t[f"{i}.alpha"].reshape(-1, *[1] * (signs.ndim - 1))


def float_conv(w: np.ndarray, b: np.ndarray | None, stride: int, pad: int, relu: bool = False) -> Step:
    """A full-precision conv (the first layer, or BWN's α·sign(W)) as torch's float32 conv2d on
    channels-last memory: the same plain float op the baseline runs, shared zero-copy."""
    weight = torch.from_numpy(np.ascontiguousarray(w)).contiguous(memory_format=torch.channels_last)
    bias = torch.from_numpy(b) if b is not None else None

    def run(x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        b, h, w, c = x.shape  # NHWC memory seen as channels-last NCHW (explicit strides, even for C=1)
        xt = torch.from_numpy(x).as_strided((b, c, h, w), (h * w * c, 1, w * c, c))
        with torch.no_grad():
            y = F.conv2d(xt, weight, bias, stride, pad)
            if residual is not None:  # a shortcut branch: NHWC memory, channels-last like y
                y.add_(torch.from_numpy(residual).permute(0, 3, 1, 2))
            if relu:
                y.relu_()
        return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())

    return run


def float_linear(w: np.ndarray, b: np.ndarray | None, relu: bool = False) -> Step:
    """A full-precision linear layer on torch's float32 GEMM (its thread pool, like float_conv)."""
    weight = torch.from_numpy(np.ascontiguousarray(w))
    bias = torch.from_numpy(b) if b is not None else None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = F.linear(torch.from_numpy(np.ascontiguousarray(x)), weight, bias)
            return (y.relu_() if relu else y).numpy()

    return run


def box_filter(a: np.ndarray, k: tuple[int, int], stride: int, pad: int) -> np.ndarray:
    """K = A ⊛ box(kh×kw) with zero padding: the mean of A over each receptive field."""
    ap = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(ap, k, axis=(1, 2))[:, ::stride, ::stride]
    return win.mean(axis=(-2, -1), dtype=np.float32)


PACKED = "packed"  # a binary layer's input arrives packed, emitted by the layer before it


def xnor_conv(model: PackedModel, i: int, bn, threads: int | None, relu: bool = False, emit=None) -> Step:
    """The binary conv as a layer object built once (kernels.layers): its workspaces and output
    buffer are reused by every forward pass, so a pass allocates nothing for it.
    ``bn``: the (scale, shift) whose sign it packs, or PACKED; ``emit``: the next layer's."""
    spec, t = model.architecture[i], model.tensors
    kh, kw = spec.kernel
    stride, pad = spec.stride, spec.padding
    weights = BinaryConvWeights.from_float(weight_signs(model, i).astype(np.float32), stride, pad)
    alpha, bias = t[f"{i}.alpha"], t.get(f"{i}.bias")
    own_sign = bn is not PACKED and not spec.scale_activations  # BN → sign packed in its call
    layer = BinaryConv2dLayer(weights, alpha, bias, relu=relu, threads=threads,
                              sign=bn if own_sign else None, emit_sign=emit)  # fmt: skip
    if bn is PACKED:
        return lambda x, residual=None: layer.forward_packed(x, residual=residual)
    if own_sign:
        return lambda x, residual=None: layer(x, residual=residual)
    scale, shift = bn

    def run(x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        bsz, h, w, c = x.shape
        rows = x.reshape(bsz * h, w, c)  # one bit stream per image row
        bits, absmean = bn_sign_pack(rows, scale, shift, True, threads)
        k = np.ascontiguousarray(box_filter(absmean.reshape(bsz, h, w), (kh, kw), stride, pad))
        return layer.forward_packed(PackedActivations(bits, bsz, h, w, c), row_scale=k, residual=residual)

    return run


def xnor_linear(model: PackedModel, i: int, bn, threads: int | None, relu: bool = False, emit=None) -> Step:
    spec, t = model.architecture[i], model.tensors
    columns = PackedColumns.from_bits(pack_bits(weight_signs(model, i).astype(np.float32)), spec.in_channels)
    alpha, bias = t[f"{i}.alpha"], t.get(f"{i}.bias")
    own_sign = bn is not PACKED and not spec.scale_activations
    layer = BinaryLinearLayer(columns, alpha, bias, relu=relu, threads=threads,
                              sign=bn if own_sign else None, emit_sign=emit)  # fmt: skip
    if bn is PACKED:
        return layer.forward_packed
    if own_sign:
        return lambda x: layer(np.ascontiguousarray(x))
    scale, shift = bn

    def run(x: np.ndarray) -> np.ndarray:
        bits, beta = bn_sign_pack(np.ascontiguousarray(x), scale, shift, True, threads)
        return layer.forward_packed(bits, row_scale=beta)

    return run


def pool(kind: str, k: int, stride: int, pad: int, threads: int | None) -> Step:
    """Max/avg pooling on the kernel's channels-last loop."""
    return lambda x: pool2d_nhwc(x, kind[:3], k, stride, pad, threads)


def flatten(x: np.ndarray) -> np.ndarray:
    """torch flattens NCHW (C, H, W order); the engine is NHWC, so transpose first."""
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.reshape(x.shape[0], -1))


def sign_input(model: PackedModel, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) whose sign feeds binary-input layer i+1: from a threshold (x < thr ⇔
    x − thr < 0, exactly, in floating point) or an affine BatchNorm."""
    spec, t = model.architecture[i], model.tensors
    if spec.op == "threshold":
        thr = t[f"{i}.threshold"]
        return np.ones_like(thr), (-thr).astype(np.float32)
    return t[f"{i}.scale"], t[f"{i}.shift"]


def weight_step(
    model: PackedModel, i: int, sign, threads: int | None, relu: bool, emit=None, maxpool=None
) -> Step:
    """Layer i (conv/linear) as fusion_plan.weight_kind says: XNOR on the kernel (``sign`` gives
    the per-channel scale/shift whose sign is packed, or PACKED), int8, or a float op; a following
    ReLU fused in; ``emit``: the next layer's scale/shift, whose sign it returns packed;
    ``maxpool``: an int8 conv's following max pool (kernel, stride, padding), pooled in int8."""
    spec = model.architecture[i]
    kind = weight_kind(spec)
    if kind == "xnor":
        if sign is None:
            c = spec.in_channels
            sign = (np.ones(c, np.float32), np.zeros(c, np.float32))
        return (xnor_conv if spec.op == "conv" else xnor_linear)(model, i, sign, threads, relu, emit)
    if kind == "int8":
        q = Int8Layer.from_tensors(model.tensors, i)
        if spec.op == "linear":
            return int8_linear(q, relu)
        return int8_conv(q, spec.stride, spec.padding, relu, maxpool)
    w, b = float_weight(model, i), model.tensors.get(f"{i}.bias")
    return (
        float_conv(w, b, spec.stride, spec.padding, relu) if spec.op == "conv" else float_linear(w, b, relu)
    )


def plain_step(model: PackedModel, i: int, threads: int | None) -> Step:
    """A layer without weights (BatchNorm forms, activations, pools, flatten, add)."""
    spec, t = model.architecture[i], model.tensors
    op = spec.op
    if op == "scale":
        return lambda x, s=t[f"{i}.scale"]: x * s
    if op == "affine":
        return lambda x, s=t[f"{i}.scale"], b=t[f"{i}.shift"]: x * s + b
    if op == "relu":
        return lambda x: np.maximum(x, 0)  # not in place: a graph may read x again
    if op in ("maxpool", "avgpool"):
        return pool(op, spec.window, spec.stride, spec.padding, threads)
    if op == "global_avgpool":
        return lambda x: x.mean(axis=(1, 2), keepdims=True)
    if op == "flatten":
        return flatten
    if op == "add":
        return np.add
    raise XnornetError(f"layer {i}: a {op} must feed a binary-input layer")


def build_step(model: PackedModel, p: PlannedStep, threads: int | None) -> Step:
    """One planned step as the function the engine calls."""
    arch = model.architecture
    if not arch[p.layer].has_weights:
        return plain_step(model, p.layer, threads)
    sign = PACKED if p.sign_packed else sign_input(model, p.sign_of) if p.sign_of is not None else None
    emit = sign_input(model, p.emits) if p.emits is not None else None
    pool_spec = arch[p.maxpool] if p.maxpool is not None else None
    maxpool = (pool_spec.window, pool_spec.stride, pool_spec.padding) if pool_spec else None
    return weight_step(model, p.layer, sign, threads, p.relu, emit, maxpool)


def compile_steps(model: PackedModel, threads: int | None, fuse_layers: bool = True) -> list[NamedStep]:
    """The graph as steps in execution order, fused as packed.fusion_plan decides."""
    return [
        NamedStep(p.name, build_step(model, p, threads), list(p.inputs), p.output)
        for p in fusion_plan(model.architecture, fuse_layers)
    ]


ACTIVATION_BUDGET = 24 << 20  # bytes of activations one chunk of a batch may produce per layer


class PackedEngine:
    """Inference on float32 NCHW batches (normalized like the training data) → float32 logits.

    A large batch runs in chunks whose largest activation stays within ACTIVATION_BUDGET (about
    what the last-level cache of one core complex holds): ResNet-18's first layer writes 3.2 MB per
    image, and at batch 16 the layers after it would read 51 MB back from memory.
    """

    def __init__(
        self,
        model: PackedModel,
        threads: int | None = None,
        chunk: int | None = None,
        fuse_layers: bool = True,
    ) -> None:
        """``fuse_layers=False`` keeps every binary layer's float output (no ``emit_sign``): the
        same logits bit for bit, for measuring what the fusion buys."""
        self.model = model
        self.input_shape = tuple(model.info.get("input_shape", ()))
        self.steps = compile_steps(model, threads, fuse_layers)
        self.reads = {
            i: sum(s.inputs.count(i) for s in self.steps) for i in range(-1, len(model.architecture))
        }
        self.chunk = chunk or self._chunk_within_budget()

    @classmethod
    def from_file(cls, path: Path | str, threads: int | None = None) -> PackedEngine:
        return cls(load_packed(path), threads)

    def _chunk_within_budget(self) -> int:
        if not self.input_shape:
            return 1 << 30
        largest: list[int] = []
        self._run(np.zeros((1, *self.input_shape), np.float32), largest=largest)
        return max(1, ACTIVATION_BUDGET // max(largest))

    def _check_input(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise TypeError(f"input must be a float32 numpy array, got {getattr(x, 'dtype', type(x))}")
        if x.ndim != 4 or (self.input_shape and tuple(x.shape[1:]) != self.input_shape):
            raise ValueError(
                f"input must have shape (B, {', '.join(map(str, self.input_shape))}), got {x.shape}"
            )
        if not np.isfinite(x).all():  # sign(NaN) is no ±1: the prediction would be meaningless
            bad = int(x.size - np.isfinite(x).sum())
            raise ValueError(f"input has {bad} NaN or infinite values; expected finite float32 images")

    def _run(self, x: np.ndarray, seconds: dict[str, float] | None = None, largest: list[int] | None = None):
        """Every step in order on one chunk; a value is dropped as soon as its last reader has run."""
        values = {-1: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}  # NCHW → NHWC
        left = dict(self.reads)
        for step in self.steps:
            start = time.perf_counter()
            values[step.output] = step.run(*(values[i] for i in step.inputs))
            if seconds is not None:
                seconds[step.name] = time.perf_counter() - start
            if largest is not None:
                largest.append(values[step.output].nbytes)
            for i in step.inputs:
                left[i] -= 1
                if not left[i]:
                    del values[i]
        out = values[len(self.model.architecture) - 1]
        return out.reshape(out.shape[0], -1).copy()  # a binary layer's output buffer is reused

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if len(x) <= self.chunk:
            return self._run(x)
        return np.concatenate([self._run(x[i : i + self.chunk]) for i in range(0, len(x), self.chunk)])

    def profile(self, x: np.ndarray) -> dict[str, float]:
        """Seconds spent in each step for one chunk of the batch (e.g., for the first layer's share)."""
        self._check_input(x)
        seconds: dict[str, float] = {}
        self._run(x[: self.chunk], seconds)
        return seconds


def load_engine(path: Path | str, threads: int | None = None) -> PackedEngine:
    try:
        return PackedEngine.from_file(path, threads)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:  # a graph that does not fit
        raise XnornetError(f"{path}: cannot build the engine ({e})") from e
