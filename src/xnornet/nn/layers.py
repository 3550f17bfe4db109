"""Quantized conv/linear layers: plain nn.Conv2d/nn.Linear whose forward quantizes on the fly.

The quantizers come in as arguments, so one layer class serves full precision, BWN and XNOR.
The latent float weights stay the parameters; only ``forward`` sees their binarized form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xnornet.nn.quantizers import Quantizer, activation_scale


class QuantMixin:
    """What conv and linear share: the quantizers, and ``op(xq, wq) ⊙ scale + bias`` in forward.

    A subclass supplies the float op (``_float_op``), the per-output activation scale
    (XNOR-Net's K for conv, β for linear) and how the bias broadcasts.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(
        self,
        *args,
        weight_quantizer: Quantizer | None = None,
        weight_transform: Quantizer | None = None,
        input_quantizer: Quantizer | None = None,
        scale_activations: bool = False,
        gradient_quantizer: Quantizer | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)  # the torch layer's own arguments
        self.weight_quantizer = weight_quantizer
        self.weight_transform = weight_transform  # before the quantizer (the reference's centring)
        self.input_quantizer = input_quantizer
        self.scale_activations = scale_activations
        self.gradient_quantizer = gradient_quantizer  # acts on the gradient into this layer's input

    @property
    def is_binary(self) -> bool:
        return self.weight_quantizer is not None

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _activation_scale(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _bias(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.weight_transform is None else self.weight_transform(self.weight)
        w = w if self.weight_quantizer is None else self.weight_quantizer(w)
        xq = x if self.input_quantizer is None else self.input_quantizer(x)
        if self.gradient_quantizer is not None:
            xq = self.gradient_quantizer(xq)  # identity forward; binarizes g_in before the STE
        y = self._float_op(xq, w)
        if self.scale_activations:
            y = y * self._activation_scale(x)
        if self.bias is not None:
            y = y + self._bias()
        return y


class QuantConv2d(QuantMixin, nn.Conv2d):
    """conv2d(input_quantizer(x), weight_quantizer(W)) ⊙ K + bias."""

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def _activation_scale(self, x: torch.Tensor) -> torch.Tensor:
        return activation_scale(x, self.kernel_size, self.stride, self.padding)  # (B, 1, Ho, Wo)

    def _bias(self) -> torch.Tensor:
        return self.bias.view(1, -1, 1, 1)


class QuantLinear(QuantMixin, nn.Linear):
    """linear(input_quantizer(x), weight_quantizer(W)) ⊙ β + bias, β = mean |x| per sample."""

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)  # (B, out)

    def _activation_scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().mean(dim=1, keepdim=True)  # (B, 1)

    def _bias(self) -> torch.Tensor:
        return self.bias


def binary_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights are binarized (their latent weights get clipped after a step)."""
    return [m for m in model.modules() if isinstance(m, QuantMixin) and m.is_binary]


def count_params(net: nn.Module) -> tuple[int, int]:
    """(all parameters, weights that are binarized)."""
    total = sum(p.numel() for p in net.parameters())
    binary = sum(layer.weight.numel() for layer in binary_layers(net))
    return total, binary
