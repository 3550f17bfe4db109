"""One bench shape as OpenVINO models: fp32, int8 and binary convolution (or fully connected).

The int8 graph is what NNCF's post-training quantization leaves for one layer: a symmetric
FakeQuantize of the input (256 levels) and per-channel int8 weights (Constant i8 → Convert →
Multiply), which OpenVINO's low-precision transformations run as an int8 convolution; the
compiled graph's precision is read back, so an int8 row is never a float layer in disguise. The
binary model is the exporter's (``xnornet.peers``): FakeQuantize(levels=2) → BinaryConvolution.
Only this module and the worker import openvino.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.preprocess import PrePostProcessor

from xnornet.benchmark.layer_data import weight_signs
from xnornet.benchmark.shapes import LayerShape


def _weights_op(shape: LayerShape, w: np.ndarray, int8: bool):
    """float32 weights as a constant, or int8 per output channel times a float scale."""
    if not int8:
        return ops.constant(w)
    per_channel = np.abs(w).reshape(shape.c_out, -1).max(axis=1).clip(1e-12) / 127  # (C_out,)
    q = np.clip(np.round(w / per_channel.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
    scale = per_channel.reshape(-1, *[1] * (w.ndim - 1)).astype(np.float32)
    return ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale))


def float_layer_model(shape: LayerShape, w: np.ndarray, x_absmax: float | None = None) -> ov.Model:
    """fp32 (``x_absmax`` None) or int8 (input range ±``x_absmax``) conv/matmul, NCHW or (B, C)."""
    int8 = x_absmax is not None
    if shape.kind == "linear":
        p = ops.parameter([shape.batch, shape.c_in], ov.Type.f32, name="x")
    else:
        p = ops.parameter([shape.batch, shape.c_in, shape.h, shape.w], ov.Type.f32, name="x")
    x = p
    if int8:
        lo, hi = ops.constant(np.float32(-x_absmax)), ops.constant(np.float32(x_absmax * 127 / 128))
        x = ops.fake_quantize(p, lo, hi, lo, hi, 256)
    wop = _weights_op(shape, w, int8)
    if shape.kind == "linear":
        y = ops.matmul(x, wop, transpose_a=False, transpose_b=True)
    else:
        s, pad = [shape.stride] * 2, [shape.padding] * 2
        y = ops.convolution(x, wop, s, pad, pad, [1, 1])
    return ov.Model([y], [p], "int8_layer" if int8 else "fp32_layer")


def binary_layer_model(shape: LayerShape, w: np.ndarray) -> ov.Model:
    """The exporter's BinaryConvolution of sign(w); a linear layer as a 1×1 conv on (B, C, 1, 1)."""
    from xnornet.peers.openvino_binary import binary_conv_model

    if shape.kind == "linear":
        return binary_conv_model(weight_signs(w)[:, :, None, None], 1, 0, (shape.batch, shape.c_in, 1, 1))
    return binary_conv_model(weight_signs(w), shape.stride, shape.padding,
                             (shape.batch, shape.c_in, shape.h, shape.w))  # fmt: skip


def channels_last(model: ov.Model) -> ov.Model:
    """The same NCHW model taking and returning NHWC tensors (the layout the binary layer takes):
    OpenVINO folds the transposes into the reorders to its own blocked layouts."""
    ppp = PrePostProcessor(model.clone())  # build() changes the model it was given
    ppp.input().tensor().set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.output().tensor().set_layout(ov.Layout("NHWC"))
    ppp.output().model().set_layout(ov.Layout("NCHW"))
    return ppp.build()


def layout_variants(model: ov.Model, x: np.ndarray) -> dict[str, tuple[ov.Model, np.ndarray]]:
    """Each layout the model may be fed in, with the bench's input (NHWC or (B, C)) in it; the
    caller keeps the faster. A linear layer's input is reshaped to what its model takes."""
    dims = model.inputs[0].get_shape()
    if x.ndim == 2:  # linear: (B, C), or (B, C, 1, 1) for the binary model's 1×1 conv
        return {"nc": (model, x.reshape(tuple(dims)))}
    return {"nchw": (model, np.ascontiguousarray(x.transpose(0, 3, 1, 2))), "nhwc": (channels_last(model), x)}


def to_reference_layout(y: np.ndarray, layout: str, ref_shape: tuple[int, ...]) -> np.ndarray:
    """The output in the references' layout: NCHW → NHWC, a 1×1 conv's (B, C, 1, 1) → (B, C)."""
    return (y.transpose(0, 2, 3, 1) if layout == "nchw" else y).reshape(ref_shape)


OPENVINO_LAYER_TYPES = ("Convolution", "FullyConnected", "BinaryConvolution")


def compiled_precisions(compiled: ov.CompiledModel, layer_types: tuple[str, ...]) -> list[str]:
    """The runtime precisions the compiled graph gives its conv / fully-connected nodes."""
    found = []
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if str(info["layerType"].astype(str)) in layer_types:
            found.append(str(info["runtimePrecision"].astype(str)))
    return found
