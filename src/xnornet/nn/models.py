"""The networks of the XNOR-Net-PyTorch anchors, as plain nn.Modules with injected binarization.

Every variant (fp, bwn, xnor) builds the same architecture; only the ``Binarization`` differs.
Binary blocks follow the paper's order BatchNorm → sign → conv → ReLU (→ pool); the first
and last layers stay full precision unless ``first_last_binary`` is set.
"""

from __future__ import annotations

from torch import nn

from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantConv2d, QuantLinear


def binary_conv_block(
    cin: int, cout: int, k: int, b: Binarization, padding: int = 0, stride: int = 1
) -> list[nn.Module]:
    """BN → (sign) → conv → ReLU: the paper's block, full precision when ``b`` binarizes nothing."""
    return [
        b.batchnorm2d(cin),
        QuantConv2d(cin, cout, k, stride=stride, padding=padding, **b.quantizers()),
        nn.ReLU(inplace=True),
    ]


class LeNet5(nn.Sequential):
    """LeNet-5 of XNOR-Net-PyTorch: conv 1→20 5×5, conv 20→50 5×5, fc 800→500, fc 500→10."""

    def __init__(self, binarization: Binarization, num_classes: int = 10, in_channels: int = 1):
        b = binarization
        super().__init__(
            QuantConv2d(in_channels, 20, 5, **b.quantizers(hidden=False, raw_input=True)),
            b.batchnorm2d(20),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 20, 12, 12)
            *binary_conv_block(20, 50, 5, b),
            nn.MaxPool2d(2),  # (B, 50, 4, 4)
            nn.Flatten(),  # (B, 800)
            b.batchnorm1d(800),
            QuantLinear(800, 500, **b.quantizers()),
            nn.ReLU(inplace=True),
            *b.before_last(500),
            QuantLinear(500, num_classes, **b.quantizers(hidden=False)),
        )


class NIN(nn.Sequential):
    """Network-in-Network for CIFAR-10 as in XNOR-Net-PyTorch: seven binary convs in between."""

    def __init__(self, binarization: Binarization, num_classes: int = 10, in_channels: int = 3):
        b = binarization
        super().__init__(
            QuantConv2d(in_channels, 192, 5, padding=2, **b.quantizers(hidden=False, raw_input=True)),
            b.batchnorm2d(192),
            nn.ReLU(inplace=True),  # (B, 192, 32, 32)
            *binary_conv_block(192, 160, 1, b),
            *binary_conv_block(160, 96, 1, b),
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 96, 16, 16)
            *binary_conv_block(96, 192, 5, b, padding=2),
            *binary_conv_block(192, 192, 1, b),
            *binary_conv_block(192, 192, 1, b),
            nn.AvgPool2d(3, stride=2, padding=1),  # (B, 192, 8, 8)
            *binary_conv_block(192, 192, 3, b, padding=1),
            *binary_conv_block(192, 192, 1, b),
            b.batchnorm2d(192),
            QuantConv2d(192, num_classes, 1, **b.quantizers(hidden=False)),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, num_classes)
        )
