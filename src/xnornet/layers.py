"""Quantized conv/linear layers: plain nn.Conv2d/nn.Linear whose forward quantizes on the fly.

The quantizers come in as arguments, so one layer class serves full precision, BWN and XNOR.
The latent float weights stay the parameters; only ``forward`` sees their binarized form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xnornet.quant import Quantizer, activation_scale


class QuantConv2d(nn.Conv2d):
    """conv2d(input_quantizer(x), weight_quantizer(W)) ⊙ K + bias."""

    def __init__(
        self,
        *args,
        weight_quantizer: Quantizer | None = None,
        input_quantizer: Quantizer | None = None,
        scale_activations: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.scale_activations = scale_activations

    @property
    def is_binary(self) -> bool:
        return self.weight_quantizer is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)
        xq = x if self.input_quantizer is None else self.input_quantizer(x)
        y = F.conv2d(xq, w, None, self.stride, self.padding, self.dilation, self.groups)
        if self.scale_activations:
            y = y * activation_scale(x, self.kernel_size, self.stride, self.padding)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


class QuantLinear(nn.Linear):
    """linear(input_quantizer(x), weight_quantizer(W)) ⊙ β + bias, β = mean |x| per sample."""

    def __init__(
        self,
        *args,
        weight_quantizer: Quantizer | None = None,
        input_quantizer: Quantizer | None = None,
        scale_activations: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.scale_activations = scale_activations

    @property
    def is_binary(self) -> bool:
        return self.weight_quantizer is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)
        xq = x if self.input_quantizer is None else self.input_quantizer(x)
        y = F.linear(xq, w)  # (B, out)
        if self.scale_activations:
            y = y * x.abs().mean(dim=1, keepdim=True)
        if self.bias is not None:
            y = y + self.bias
        return y


def binary_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights are binarized (their latent weights get clipped after a step)."""
    return [m for m in model.modules() if isinstance(m, QuantConv2d | QuantLinear) and m.is_binary]
