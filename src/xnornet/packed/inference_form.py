"""A trained network → the inference layers the packed file stores and the engine runs.

The network is captured as a graph (graph_capture), so chains and residual graphs take one path;
"the consumer" below is a layer's only consumer in that graph.

Eval-mode BatchNorm (standard or shift-based) is an affine map y = s·x + t, so it is rewritten into
its inference form:
- after a full-precision conv/linear: folded into that layer's weights and bias;
- before a binary-input layer without K/β scaling: sign(s·x + t) is the test x < −t/s, one float
  per channel; channels with s < 0 flip the consumer's weight signs for that input instead;
- before a binary-input layer with K/β scaling: kept as scale and shift (K needs |BN(x)|);
- before a float-input layer (BWN) without zero padding: the scale kept, the shift folded into
  that layer's bias (with zero padding a padded 0 would not be shifted, so it stays an affine).
Binary weights become one dense bit stream of sign(W), exactly 1/32 of float32, plus α per filter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from xnornet.errors import XnornetError
from xnornet.kernels import pack_bits
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.nn.shift_batchnorm import ShiftBatchNorm
from xnornet.packed.file_format import PackedModel
from xnornet.packed.graph_capture import capture
from xnornet.packed.layer_spec import LayerSpec

Layer = tuple[dict, dict[str, np.ndarray]]  # (spec, tensors by field name)
BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d
Quant = QuantConv2d | QuantLinear


def _single(value, what: str) -> int:
    values = set(value) if isinstance(value, tuple) else {value}
    if len(values) != 1:
        raise XnornetError(f"cannot pack {what}={value}: only square values are supported")
    return int(values.pop())


def bn_scale_shift(bn: BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = x·s + t (float64, cast when stored)."""
    if isinstance(bn, ShiftBatchNorm):  # its own powers-of-two scale, still one affine map
        return tuple(v.numpy() for v in bn.inference_scale_shift())
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    c = bn.num_features
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones(c)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros(c)
    s = gamma / np.sqrt(var + bn.eps)
    return s, beta - mean * s


def _padding(layer: nn.Module) -> int:
    return _single(layer.padding, "padding") if isinstance(layer, QuantConv2d) else 0


def _weight_layer(layer: Quant, flip, shift, fold: BatchNorm | None) -> Layer:
    w = layer.weight.detach().float()
    if layer.weight_transform is not None:  # folded into the stored weights: no engine change
        w = layer.weight_transform(w)
    w = w.numpy()  # (out, in[, kh, kw]) float32
    binary = layer.weight_quantizer is not None
    bias = layer.bias.detach().double().numpy() if layer.bias is not None else None
    spec: dict = {"op": "linear", "in": layer.in_features, "out": layer.out_features} if isinstance(
        layer, QuantLinear
    ) else {
        "op": "conv", "in": layer.in_channels, "out": layer.out_channels, "kernel": list(layer.kernel_size),
        "stride": _single(layer.stride, "stride"), "padding": _single(layer.padding, "padding"),
    }  # fmt: skip
    if isinstance(layer, QuantConv2d) and (layer.groups != 1 or _single(layer.dilation, "dilation") != 1):
        raise XnornetError("cannot pack a grouped or dilated conv")
    spec.update(binary=binary, binary_input=layer.input_quantizer is not None,
                scale_activations=bool(layer.scale_activations))  # fmt: skip
    tensors: dict[str, np.ndarray] = {}
    if binary:
        alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1, dtype=np.float32)
        signs = np.where(w < 0, -1.0, 1.0)
        if flip is not None:
            signs[:, flip] *= -1.0
        effective = signs * alpha.reshape(-1, *[1] * (w.ndim - 1))
        tensors["alpha"] = alpha.astype(np.float32)
        tensors["weight_bits"] = pack_bits(signs.astype(np.float32).reshape(-1))
    else:
        effective = w.astype(np.float64)
    if shift is not None:  # the previous BatchNorm's shift, pushed through this layer
        added = effective.reshape(effective.shape[0], effective.shape[1], -1).sum(axis=2) @ shift
        bias = added if bias is None else bias + added
    if fold is not None:  # the next BatchNorm, folded into this full-precision layer
        s, t = bn_scale_shift(fold)
        effective = effective * s.reshape(-1, *[1] * (w.ndim - 1))
        bias = t if bias is None else bias * s + t
    if not binary:
        tensors["weight"] = effective.astype(np.float32)
    spec["bias"] = bias is not None
    if bias is not None:
        tensors["bias"] = bias.astype(np.float32)
    return spec, tensors


def _bn_layer(bn: BatchNorm, nxt: nn.Module | None) -> tuple[Layer, dict]:
    """The inference form of a BatchNorm, and what it hands on to the next layer."""
    s, t = bn_scale_shift(bn)
    c = bn.num_features
    feeds_sign = isinstance(nxt, Quant) and nxt.input_quantizer is not None
    if feeds_sign and not nxt.scale_activations:
        safe = np.where(s != 0, s, 1.0)
        threshold = np.where(s != 0, -t / safe, np.where(t < 0, np.inf, -np.inf))
        return ({"op": "threshold", "channels": c}, {"threshold": threshold.astype(np.float32)}), {
            "flip": s < 0
        }
    if isinstance(nxt, Quant) and not feeds_sign and _padding(nxt) == 0:
        return ({"op": "scale", "channels": c}, {"scale": s.astype(np.float32)}), {"shift": t}
    return ({"op": "affine", "channels": c},
            {"scale": s.astype(np.float32), "shift": t.astype(np.float32)}), {}  # fmt: skip


def _plain_layer(layer: nn.Module) -> dict:
    if isinstance(layer, nn.ReLU):
        return {"op": "relu"}
    if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        if isinstance(layer, nn.AvgPool2d) and not layer.count_include_pad:
            raise XnornetError("cannot pack AvgPool2d(count_include_pad=False)")
        return {
            "op": "maxpool" if isinstance(layer, nn.MaxPool2d) else "avgpool",
            "kernel": _single(layer.kernel_size, "kernel_size"),
            "stride": _single(layer.stride, "stride"),
            "padding": _single(layer.padding, "padding"),
        }
    if isinstance(layer, nn.AdaptiveAvgPool2d) and _single(layer.output_size, "output_size") == 1:
        return {"op": "global_avgpool"}
    if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) == (1, -1):
        return {"op": "flatten"}
    raise XnornetError(f"cannot pack a {type(layer).__name__} layer")


@dataclass(frozen=True)
class Origin:
    """The torch modules one stored layer stands for: the layer itself, the BatchNorm folded into
    it (its output is the stored layer's output), and the BatchNorm before it that handed it its
    shift (then the stored layer reads that BatchNorm's s·x, kept as a ``scale`` step, where
    torch's layer reads s·x + t)."""

    module: nn.Module | None
    folded: nn.Module | None = None
    shifted_by: nn.Module | None = None


def inference_layers(net: nn.Module) -> list[Layer]:
    """The inference form of an eval-mode network, in execution order; each spec names the
    layers it reads (``inputs``, -1 for the network input), so residual graphs pack like chains."""
    return inference_form(net)[0]


def inference_form(net: nn.Module) -> tuple[list[Layer], list[Origin]]:
    """``inference_layers`` and, per stored layer, the torch modules it came from."""
    nodes, output = capture(net)
    out: list[Layer] = []
    origins: list[Origin] = []
    value_of: dict[int, int] = {}  # graph node → the spec index that holds its value
    handoff: dict[int, dict] = {}  # graph node → flip/shift that its BatchNorm hands it
    for node in nodes:
        if node.index in value_of:  # a BatchNorm already folded into its producer
            continue
        if node.kind == "input":
            value_of[node.index] = -1
            continue
        inputs = [value_of[i] for i in node.inputs]
        if node.kind == "identity":
            value_of[node.index] = inputs[0]
            continue
        only_user = nodes[node.users[0]] if len(node.users) == 1 else None
        layer = node.module
        origin = Origin(layer)
        if isinstance(layer, BatchNorm):
            entry, give = _bn_layer(layer, only_user.module if only_user else None)
            if give:
                handoff[only_user.index] = {**give, "from": layer}
        elif isinstance(layer, Quant):
            fold = only_user if only_user and isinstance(only_user.module, BatchNorm) else None
            fold = fold if layer.weight_quantizer is None else None
            given = handoff.pop(node.index, {})
            entry = _weight_layer(layer, given.get("flip"), given.get("shift"), fold and fold.module)
            origin = Origin(layer, fold and fold.module, given.get("from") if "shift" in given else None)
            if fold:
                value_of[fold.index] = len(out)
        elif node.kind in ("add", "flatten"):
            entry = ({"op": node.kind}, {})
        else:
            entry = (_plain_layer(layer), {})
        entry[0]["inputs"] = inputs
        value_of[node.index] = len(out)
        out.append(entry)
        origins.append(origin)
    if value_of[output] != len(out) - 1:
        raise XnornetError(f"cannot pack {type(net).__name__}: its output is not its last layer")
    return out, origins


def pack_network(net: nn.Module, input_shape: tuple[int, ...], **info) -> PackedModel:
    """Pack an eval-mode network (any graph of the layers inference_layers knows) in its
    inference form: bits + float32."""
    arch, tensors = [], {}
    for i, (spec, fields) in enumerate(inference_layers(net)):
        arch.append(spec)
        tensors.update({f"{i}.{name}": value for name, value in fields.items()})
    return PackedModel(arch, tensors, {**info, "input_shape": list(input_shape)})


def check_architecture(
    net: nn.Module, architecture: list[LayerSpec], input_shape, path, variant: str
) -> None:
    """The packed file must be the inference form of the model this config trains (its
    full-precision layers in float32 or int8, a choice made when packing)."""
    stored = [replace(spec, int8=False) for spec in architecture]
    if pack_network(net, input_shape).architecture != stored:
        raise XnornetError(f"{path}: its architecture is not the {variant} model of this config")
