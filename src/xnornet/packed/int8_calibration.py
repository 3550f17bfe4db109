"""Pack-time calibration of the full-precision layers for int8 (xnornet.packed.int8_ops).

The scales come from torch's own observers (``int8_qconfig``): a histogram observer for the
activations and per-channel symmetric weights, with the bits placed as x86 needs. The activations observed
are the fp32 engine's own: the exact tensor each layer's int8 step will quantize (after any
BatchNorm scale kept before it), and the float output its op requantizes, on real inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig

from xnornet.errors import XnornetError
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import PackedModel
from xnornet.packed.layer_spec import LayerSpec

WEIGHT_LEVELS = 64  # int8 weights within ±64 (the observer's ±63.5, rounded)


def int8_qconfig() -> QConfig:
    """Activation grids on all 256 levels and weights within ±64, where torch's x86 default has
    7-bit activations and full int8 weights. Either keeps a u8·s8 pair sum within int16 (255·64·2
    = 32,640), so x86 kernels without VNNI (fbgemm's 16-bit pair sums) do not saturate; but 7-bit
    activations round away every other level of an 8-bit image and coarsen what a threshold then
    binarizes: with them, packed XNOR LeNet-5 lost 0.17 pp of MNIST top-1 to its int8 conv1
    (99.34 → 99.17), with this split 0.00–0.04 (2,048 calibration images, Zen 4)."""
    return QConfig(
        activation=HistogramObserver.with_args(dtype=torch.quint8, reduce_range=False),
        weight=PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
            quant_min=-WEIGHT_LEVELS, quant_max=WEIGHT_LEVELS - 1,
        ),
    )  # fmt: skip


def float_layers(model: PackedModel) -> list[int]:
    """The conv/linear layers XNOR-Net keeps in full precision (float weights, float inputs) and
    still in float32: quantizing a model twice leaves its int8 layers as they are."""
    arch = model.architecture
    return [i for i, s in enumerate(arch) if s.has_weights and not s.binary and not s.int8]


def _float_output(
    spec: LayerSpec, w: torch.Tensor, b: torch.Tensor | None, x: np.ndarray, relu: bool
) -> torch.Tensor:
    """The layer's own float output (before any residual add), as the int8 op will produce it."""
    if spec.op == "conv":
        y = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), w, b, spec.stride, spec.padding)
    else:
        y = F.linear(torch.from_numpy(np.ascontiguousarray(x)), w, b)
    return y.relu_() if relu else y


def _observe(model: PackedModel, batches: Iterable[np.ndarray]) -> dict[int, tuple]:
    """Run the fp32 engine over ``batches``, feeding each float layer's input and output to observers."""
    qconfig = int8_qconfig()
    targets = set(float_layers(model))
    engine = PackedEngine(model)
    observers: dict[int, tuple] = {}
    for step in engine.steps:
        i = int(step.name.split(":")[0])
        if i not in targets:
            continue
        spec, t = model.architecture[i], model.tensors
        w = torch.from_numpy(t[f"{i}.weight"])
        b = torch.from_numpy(t[f"{i}.bias"]) if spec.bias else None
        relu = "+relu" in step.name and len(step.inputs) == 1  # with a residual, ReLU follows the add
        seen_in, seen_out = qconfig.activation(), qconfig.activation()
        observers[i] = (seen_in, seen_out)

        def observed(
            x, *rest, run=step.run, spec=spec, w=w, b=b, relu=relu, seen_in=seen_in, seen_out=seen_out
        ):
            with torch.no_grad():
                seen_in(torch.from_numpy(x))
                seen_out(_float_output(spec, w, b, x, relu))
            return run(x, *rest)

        step.run = observed
    count = 0
    for batch in batches:
        engine(np.ascontiguousarray(batch, dtype=np.float32))
        count += len(batch)
    if not count:
        raise XnornetError("int8 calibration needs at least one input image, got none")
    return observers


def _qparams(observer) -> tuple[np.ndarray, np.ndarray]:
    scale, zero_point = observer.calculate_qparams()
    return scale.numpy().astype(np.float32).reshape(1), zero_point.numpy().astype(np.uint8).reshape(1)


def quantize_float_layers(model: PackedModel, batches: Iterable[np.ndarray]) -> PackedModel:
    """``model`` with every full-precision layer in int8, its activation grids calibrated on
    ``batches`` (float32 NCHW, normalized as the engine's input); binary layers untouched."""
    observers = _observe(model, batches)
    arch = list(model.architecture)
    tensors = dict(model.tensors)
    qconfig = int8_qconfig()
    for i, (seen_in, seen_out) in observers.items():
        w = torch.from_numpy(tensors.pop(f"{i}.weight"))
        weight_observer = qconfig.weight()
        weight_observer(w)
        scales, zeros = weight_observer.calculate_qparams()
        qw = torch.quantize_per_channel(w, scales.double(), zeros, 0, torch.qint8)
        tensors[f"{i}.weight_int8"] = qw.int_repr().numpy()
        tensors[f"{i}.weight_scale"] = scales.numpy().astype(np.float32)
        tensors[f"{i}.input_scale"], tensors[f"{i}.input_zero_point"] = _qparams(seen_in)
        tensors[f"{i}.output_scale"], tensors[f"{i}.output_zero_point"] = _qparams(seen_out)
        arch[i] = replace(arch[i], int8=True)
    return PackedModel(arch, tensors, {**model.info, "float_layers": "int8"})


FLOAT_LAYERS = ("fp32", "int8")  # the pack stage's choice for the full-precision layers


def training_batches(datamodule, images: int, batch: int = 256) -> list[np.ndarray]:
    """The first ``images`` of the training split, unaugmented (the split is already shuffled, so
    they are a random sample), as float32 NCHW batches normalized like the engine's input."""
    if not isinstance(images, int) or images < 1:
        raise XnornetError(f"pack.calibration_images must be a positive integer, got {images!r}")
    datamodule.setup("fit")
    x = datamodule.train_set.x[:images].numpy()
    return [np.ascontiguousarray(x[i : i + batch], dtype=np.float32) for i in range(0, len(x), batch)]
