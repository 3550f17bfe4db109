"""A packed network (models/<variant>.packed) as an OpenVINO IR: the model a user deploys there.

OpenVINO has no converter from PyTorch for binary networks, so the IR is built from the packed
file's inference layers, the same ones the engine runs, in NCHW:

- BatchNorm → sign → binary conv/linear (XNOR): FakeQuantize(levels=2) at the BN's threshold,
  BinaryConvolution (xnor-popcount, padded pixels contribute 0), × α, × K or β (the mean |BN(x)|,
  box-filtered for a conv) where the layer scales activations, + bias (openvino_binary);
- binary weights on float inputs (BWN): a float Convolution/MatMul whose weights α·sign(W) are
  stored as 1-bit constants and decompressed at compile time, so the IR is as small as the bits;
- full-precision layers as float32 (their folded BatchNorm with them), BatchNorm left as a
  scale/affine as float32 Multiply/Add, pools, ReLU, flatten and residual adds as themselves;
  packed in int8 (xnornet.packed.int8_ops): the dequantized int8 weights, with FakeQuantize
  (levels=256) at the stored quint8 grids on the input and on the output (before the ReLU, which
  commutes with it, since 0 is on the grid), so OpenVINO sees what the engine computes and may
  run it in int8 itself.

The IR has a dynamic batch; OpenVINO's CPU BinaryConvolution needs a static one, so compile with
``compile_for_latency(model, threads, batch=N)`` (``load_openvino`` does).

Public: ``packed_to_openvino(model) -> openvino.Model``, ``export_openvino(packed, path)`` (writes
``path`` (.xml) and its .bin atomically), ``load_openvino(path, threads, batch)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from xnornet.errors import XnornetError
from xnornet.files import atomic_path
from xnornet.packed.engine import float_weight, sign_input, weight_signs
from xnornet.packed.file_format import PackedModel, load_packed
from xnornet.packed.fusion_plan import consumers
from xnornet.packed.layer_spec import SIGN_OPS, LayerSpec
from xnornet.peers.openvino_binary import binary_conv, binary_linear, compile_for_latency, per_channel

Value = ov.Output


def decompressed_signs(signs: np.ndarray, alpha: np.ndarray) -> ov.Node:
    """α·sign(W) as float32, stored as a 1-bit constant: u1 b ∈ {0, 1} → 2α·b − α (both exact).

    Convert reads u1 elements most significant bit first (OpenVINO's own order, unlike the CPU
    BinaryConvolution's weights): the bytes are packed big-endian here."""
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(signs.shape)))
    tensor.data[:] = np.packbits((signs > 0).astype(np.uint8).reshape(-1), bitorder="big")
    bits = ops.convert(ov.op.Constant(tensor), ov.Type.f32)
    a = np.asarray(alpha, np.float32).reshape(-1, *[1] * (signs.ndim - 1))
    return ops.add(ops.multiply(bits, ops.constant(2 * a)), ops.constant(-a))


def float_weight_node(model: PackedModel, i: int) -> ov.Node:
    spec, t = model.architecture[i], model.tensors
    if spec.binary:
        return decompressed_signs(weight_signs(model, i), t[f"{i}.alpha"])
    return ops.constant(np.ascontiguousarray(float_weight(model, i), dtype=np.float32))


def quint8_grid(x: Value, scale: np.ndarray, zero_point: np.ndarray) -> ov.Node:
    """FakeQuantize onto torch's quint8 grid: (q − zero point)·scale for q in 0…255."""
    s, z = float(scale[0]), int(zero_point[0])
    low, high = ops.constant(np.float32(-z * s)), ops.constant(np.float32((255 - z) * s))
    return ops.fake_quantize(x, low, high, low, high, 256)


def float_layer(model: PackedModel, i: int, x: Value) -> ov.Node:
    """A conv/linear on float inputs (full precision, or BWN's α·sign(W))."""
    spec = model.architecture[i]
    w = float_weight_node(model, i)
    if spec.op == "conv":
        s, p = spec.stride, spec.padding
        return ops.convolution(x, w, [s, s], [p, p], [p, p], [1, 1])
    return ops.matmul(x, w, transpose_a=False, transpose_b=True)


def abs_mean_over_channels(y: Value) -> ov.Node:
    """mean_c |y| per pixel (B, 1, H, W), or per sample (B, 1): XNOR-Net's A before K / its β."""
    return ops.reduce_mean(ops.abs(y), ops.constant(np.array([1], np.int64)), keep_dims=True)


def xnor_layer(model: PackedModel, i: int, x: Value, sign: tuple[np.ndarray, np.ndarray] | None,
               threshold: np.ndarray | None) -> ov.Node:  # fmt: skip
    """Binary-input layer i on float ``x``: sign(x·scale + shift) (``sign``), or x ≥ ``threshold``
    per channel, or sign(x); then α, K/β where the layer scales activations."""
    spec, t = model.architecture[i], model.tensors
    if sign is not None:  # an affine BatchNorm in float32, then its sign
        rank = x.get_partial_shape().rank.get_length()
        x = ops.add(ops.multiply(x, per_channel(sign[0], rank)), per_channel(sign[1], rank)).output(0)
    elif threshold is not None and spec.scale_activations:  # K needs |x − threshold|
        rank = x.get_partial_shape().rank.get_length()
        x, threshold = ops.subtract(x, per_channel(threshold, rank)).output(0), None
    signs = weight_signs(model, i)
    if spec.op == "conv":
        s, p = spec.stride, spec.padding
        y = binary_conv(x, signs, s, p, threshold)
    else:
        y = binary_linear(x, signs, threshold)
    rank = 4 if spec.op == "conv" else 2
    y = ops.multiply(y, per_channel(t[f"{i}.alpha"], rank))
    if spec.scale_activations:
        a = abs_mean_over_channels(x)
        if spec.op == "conv":  # K = A box-filtered over each receptive field, zero padded
            kh, kw = spec.kernel
            pads = [spec.padding] * 2
            a = ops.avg_pool(a, [spec.stride] * 2, pads, pads, [kh, kw], exclude_pad=False,
                             rounding_type="floor")  # fmt: skip
        y = ops.multiply(y, a)
    return y


def plain_layer(spec: LayerSpec, fields: dict[str, np.ndarray], x: Value, other: Value | None) -> ov.Node:
    """A layer without weights, as the engine's plain_step."""
    op = spec.op
    rank = x.get_partial_shape().rank.get_length()
    if op == "scale":
        return ops.multiply(x, per_channel(fields["scale"], rank))
    if op == "affine":
        return ops.add(
            ops.multiply(x, per_channel(fields["scale"], rank)), per_channel(fields["shift"], rank)
        )
    if op == "relu":
        return ops.relu(x)
    if op in ("maxpool", "avgpool"):
        k, s, p = spec.window, spec.stride, spec.padding
        if op == "maxpool":  # padded positions never win, as the engine's −inf
            return ops.max_pool(x, [s, s], [1, 1], [p, p], [p, p], [k, k], rounding_type="floor")
        return ops.avg_pool(x, [s, s], [p, p], [p, p], [k, k], exclude_pad=False, rounding_type="floor")
    if op == "global_avgpool":
        return ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=True)
    if op == "flatten":  # NCHW order, as torch flattens
        return ops.reshape(x, ops.constant(np.array([0, -1], np.int64)), special_zero=True)
    if op == "add":
        return ops.add(x, other)
    raise XnornetError(f"a {op} layer must feed a binary-input layer")


def packed_to_openvino(model: PackedModel) -> ov.Model:
    """The packed network as an OpenVINO model: float32 NCHW images (batch dynamic) → logits."""
    arch, tensors = model.architecture, model.tensors
    shape = model.info.get("input_shape")
    if not shape:
        raise XnornetError("packed model has no input_shape in its info; cannot build a static graph")
    image = ops.parameter([-1, *(int(d) for d in shape)], np.float32, name="input")
    users = consumers(arch)
    values: dict[int, Value] = {-1: image.output(0)}
    feeds: dict[int, tuple[int, str]] = {}  # binary-input layer → (BatchNorm layer it binarizes, op)
    for i, spec in enumerate(arch):
        op = spec.op
        j = users[i][0] if len(users[i]) == 1 else None
        if op in SIGN_OPS and j is not None and arch[j].binary_input:
            feeds[j] = (i, op)  # the consumer binarizes this BatchNorm's output itself
            continue
        inputs = [] if i in feeds else [values[k] for k in spec.inputs]
        try:
            if spec.has_weights and spec.binary_input:
                bn = feeds.get(i)
                if bn is None:
                    node = xnor_layer(model, i, inputs[0], None, None)
                else:
                    k, kind = bn
                    src = values[arch[k].inputs[0]]
                    thr = tensors[f"{k}.threshold"] if kind == "threshold" else None
                    node = xnor_layer(model, i, src, sign_input(model, k) if kind == "affine" else None, thr)
            elif spec.int8:
                x = quint8_grid(inputs[0], tensors[f"{i}.input_scale"], tensors[f"{i}.input_zero_point"])
                node = float_layer(model, i, x.output(0))
            elif spec.has_weights:
                node = float_layer(model, i, inputs[0])
            else:
                fields = {n.split(".", 1)[1]: v for n, v in tensors.items() if n.split(".", 1)[0] == str(i)}
                node = plain_layer(spec, fields, inputs[0], inputs[1] if len(inputs) > 1 else None)
            if spec.bias:
                rank = 4 if op == "conv" else 2
                node = ops.add(node, per_channel(tensors[f"{i}.bias"], rank))
            if spec.int8:
                node = quint8_grid(
                    node.output(0), tensors[f"{i}.output_scale"], tensors[f"{i}.output_zero_point"]
                )
        except (RuntimeError, ValueError) as e:  # OpenVINO's shape inference on a graph that does not fit
            raise XnornetError(f"layer {i} ({op}): cannot build the OpenVINO graph ({e})") from e
        values[i] = node.output(0)
    out = values[len(arch) - 1]
    if out.get_partial_shape().rank.get_length() != 2:
        out = ops.reshape(out, ops.constant(np.array([0, -1], np.int64)), special_zero=True).output(0)
    result = ops.result(out)
    result.get_output_tensor(0).set_names({"logits"})
    return ov.Model([result], [image], str(model.info.get("variant", "packed")))


def export_openvino(packed: PackedModel | Path | str, path: Path | str) -> Path:
    """Write the OpenVINO IR of a packed network (or packed file) to ``path`` (.xml) and its .bin,
    float32 weights kept float32; both appear only once both are written and read back."""
    model = packed if isinstance(packed, PackedModel) else load_packed(packed)
    path = Path(path)
    if path.suffix != ".xml":
        raise XnornetError(f"{path}: an OpenVINO IR path must end in .xml")
    graph = packed_to_openvino(model)
    with atomic_path(path.with_suffix(".bin")) as tmp_bin, atomic_path(path) as tmp_xml:
        ov.save_model(graph, str(tmp_xml), compress_to_fp16=False)
        ov.Core().read_model(str(tmp_xml))  # a file that does not read back is no output
        os.replace(tmp_xml.with_suffix(".bin"), tmp_bin)
    return path


def load_openvino(path: Path | str, threads: int, batch: int) -> ov.CompiledModel:
    """An exported IR compiled for latency at a static batch (the CPU's BinaryConvolution needs one)."""
    path = Path(path)
    if not path.is_file() or not path.with_suffix(".bin").is_file():
        raise XnornetError(
            f"{path}: OpenVINO IR not found (expected {path.name} and its .bin; run `xnornet export`)"
        )
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as e:
        raise XnornetError(f"{path}: not a readable OpenVINO IR ({str(e).splitlines()[0]})") from e
    return compile_for_latency(model, threads, batch=batch)
