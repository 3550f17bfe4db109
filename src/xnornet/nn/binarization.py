"""What a variant binarizes: the one object that tells fp, BWN and XNOR apart.

Built by Hydra from conf/model/<variant>.yaml; the networks ask it for each layer's quantizers,
so a variant is a config file, never a code edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from xnornet.nn.quantizers import sign_ste, weight_quantizer


@dataclass(frozen=True)
class Binarization:
    """What a variant binarizes; built by Hydra from conf/model/<variant>.yaml."""

    weights: bool = False
    inputs: bool = False
    scale_activations: bool = False
    weight_grad: str = "exact"
    first_last_binary: bool = False

    def __post_init__(self) -> None:
        weight_quantizer(self.weights, self.weight_grad)  # validates weight_grad early
        if self.inputs and not self.weights:
            raise ValueError("model.binarization.inputs=true needs weights=true (XNOR)")
        if self.scale_activations and not self.inputs:
            raise ValueError("model.binarization.scale_activations needs inputs=true")

    def quantizers(self, *, hidden: bool = True, raw_input: bool = False) -> dict:
        """Keyword arguments for a Quant layer: binary when hidden (or first/last binary)."""
        binary = hidden or self.first_last_binary
        binarize_input = binary and self.inputs and not raw_input
        return {
            "weight_quantizer": weight_quantizer(binary and self.weights, self.weight_grad),
            "input_quantizer": sign_ste if binarize_input else None,
            "scale_activations": binarize_input and self.scale_activations,
        }
