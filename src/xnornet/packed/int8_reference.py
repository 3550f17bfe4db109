"""The trained torch network with its full-precision layers run by torch's own quantized modules,
holding the packed file's int8 numbers: what an engine with int8 layers is compared against.

Against the float model, an int8-layer engine differs by int8 rounding, which says nothing about
its binary layers; against this model, the only difference left is the engine's own (as for a
float32-layer engine against the float model). Both comparisons are reported (evaluate stage).

Each stored int8 layer replaces the output of the torch modules it stands for (the layer and the
BatchNorm folded into it) with ``torch.ao.nn.quantized.Conv2d`` / ``Linear`` applied to the
layer's own input; a BatchNorm whose shift the packer folded into the layer's bias returns x·s,
as the engine's ``scale`` step does. A ReLU that the engine fuses into the op stays a float ReLU
here: requantizing onto the same grid and then clamping at zero gives the same numbers as
clamping inside the op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.ao.nn.quantized as nnq
from torch import nn

from xnornet.errors import XnornetError
from xnornet.packed.file_format import PackedModel
from xnornet.packed.inference_form import bn_scale_shift, inference_form
from xnornet.packed.int8_ops import Int8Layer, exact_quantized_ops, quantize_input, quantized_engine
from xnornet.packed.layer_spec import LayerSpec


def quantized_module(spec: LayerSpec, q: Int8Layer) -> nn.Module:
    """torch's quantized Conv2d or Linear with ``q``'s weights, bias and output grid."""
    with quantized_engine():
        if spec.op == "conv":
            m = nnq.Conv2d(spec.in_channels, spec.out, spec.kernel, spec.stride, spec.padding)
        else:
            m = nnq.Linear(spec.in_channels, spec.out)
        m.set_weight_bias(q.qweight(), q.bias_tensor())
    m.scale, m.zero_point = q.output_scale, q.output_zero_point
    return m


def has_int8_layers(model: PackedModel) -> bool:
    """Whether ``model`` stores any layer in int8: without one, its torch reference is the float
    model itself, and a caller need not run that twice."""
    return any(spec.int8 for spec in model.architecture)


@contextlib.contextmanager
def int8_layers_in_torch(net: nn.Module, model: PackedModel) -> Iterator[nn.Module]:
    """``net`` (eval mode) running ``model``'s int8 layers through torch's quantized modules while
    the context lasts; its own float layers come back on exit."""
    _, origins = inference_form(net)
    if len(origins) != len(model.architecture):
        raise XnornetError("the packed model is not the inference form of this network")
    handles = []
    try:
        for i, (spec, origin) in enumerate(zip(model.architecture, origins, strict=True)):
            if not spec.int8:
                continue
            if origin.shifted_by is not None:  # it reads BN's s·x, its bias holds W·t
                handles.append(_scale_only(origin.shifted_by))
            q = Int8Layer.from_tensors(model.tensors, i)
            handles += _swap(origin.module, origin.folded, quantized_module(spec, q), q)
        yield net
    finally:
        for h in handles:
            h.remove()


def _scale_only(bn: nn.Module):
    """A hook that makes the BatchNorm whose shift was folded into the next layer's bias return
    x·s, as the engine's ``scale`` step computes it (float32 s), instead of x·s + t."""
    scale = torch.from_numpy(bn_scale_shift(bn)[0].astype(np.float32))

    def scaled(_module, inputs, _output):
        x = inputs[0]
        return x * scale.to(x.dtype).view(1, -1, *[1] * (x.ndim - 2))

    return bn.register_forward_hook(scaled)


def _swap(first: nn.Module, last: nn.Module | None, op: nn.Module, q: Int8Layer) -> list:
    """Hooks: remember ``first``'s input, and replace the output of ``last`` (``first`` when None)
    with ``op`` run on that input, quantized to and dequantized from ``q``'s grids."""
    seen: dict[str, torch.Tensor] = {}

    def remember(_module, inputs):
        seen["x"] = inputs[0]

    def replace(_module, _inputs, output):  # a float64 network gets float64 back
        with torch.no_grad(), exact_quantized_ops():
            return op(quantize_input(seen.pop("x").float().contiguous(), q)).dequantize().to(output.dtype)

    return [first.register_forward_pre_hook(remember), (last or first).register_forward_hook(replace)]
