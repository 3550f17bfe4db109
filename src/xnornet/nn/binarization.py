"""What a variant binarizes: the one object that tells fp, BWN and XNOR apart.

Built by Hydra from conf/model/<variant>.yaml; the networks ask it for each layer's quantizers,
so a variant is a config file, never a code edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from xnornet.nn.quantizers import binary_gradient, centred_weights, sign_ste, weight_quantizer
from xnornet.nn.shift_batchnorm import ShiftBatchNorm1d, ShiftBatchNorm2d

BATCHNORMS = {
    "standard": (nn.BatchNorm1d, nn.BatchNorm2d),
    "shift": (ShiftBatchNorm1d, ShiftBatchNorm2d),  # BinaryNet's powers-of-two BatchNorm
}
BN_EPS = 1e-4  # XNOR-Net-PyTorch's value


@dataclass(frozen=True)
class Binarization:
    """What a variant binarizes; built by Hydra from conf/model/<variant>.yaml."""

    weights: bool = False
    inputs: bool = False
    scale_activations: bool = False
    weight_grad: str = "exact"
    first_last_binary: bool = False
    binary_gradients: bool = False
    batchnorm: str = "standard"
    center_weights: bool = False

    def __post_init__(self) -> None:
        if self.batchnorm not in BATCHNORMS:
            raise ValueError(f"model.bn must be one of {sorted(BATCHNORMS)}, got {self.batchnorm!r}")
        if self.binary_gradients and not self.weights:
            raise ValueError("model.binarization.binary_gradients needs a binary variant (weights=true)")
        weight_quantizer(self.weights, self.weight_grad)  # validates weight_grad early
        if self.inputs and not self.weights:
            raise ValueError("model.binarization.inputs=true needs weights=true (XNOR)")
        if self.scale_activations and not self.inputs:
            raise ValueError("model.binarization.scale_activations needs inputs=true")
        if self.center_weights and not self.weights:
            raise ValueError("model.binarization.center_weights needs a binary variant (weights=true)")

    def quantizers(self, *, hidden: bool = True, raw_input: bool = False) -> dict:
        """Keyword arguments for a Quant layer: binary when hidden (or first/last binary)."""
        binary = hidden or self.first_last_binary
        binarize_input = binary and self.inputs and not raw_input
        return {
            "weight_quantizer": weight_quantizer(binary and self.weights, self.weight_grad),
            "weight_transform": centred_weights if binary and self.weights and self.center_weights else None,
            "input_quantizer": sign_ste if binarize_input else None,
            "scale_activations": binarize_input and self.scale_activations,
            "gradient_quantizer": binary_gradient if binary and self.binary_gradients else None,
        }

    def before_last(self, num_features: int) -> list[nn.Module]:
        """What a binary-input last layer needs first: a BatchNorm, since its input comes from a
        ReLU (or a residual sum through one) and sign(≥ 0) would be +1 everywhere. Nothing when the
        last layer stays full precision, so the default networks are the paper's."""
        return [self.batchnorm1d(num_features)] if self.first_last_binary and self.inputs else []

    def batchnorm1d(self, num_features: int) -> nn.Module:
        """The variant's BatchNorm over (B, C): torch's, or the shift-based one."""
        return BATCHNORMS[self.batchnorm][0](num_features, eps=BN_EPS)

    def batchnorm2d(self, num_features: int) -> nn.Module:
        """The variant's BatchNorm over (B, C, H, W): torch's, or the shift-based one."""
        return BATCHNORMS[self.batchnorm][1](num_features, eps=BN_EPS)
