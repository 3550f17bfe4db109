"""The paper's ImageNet networks, AlexNet and ResNet-18, at 224×224 with 1000 classes, with the
same injected binarization as every other network here (conf/net/alexnet.yaml, resnet18.yaml)."""

from __future__ import annotations

import torch
from torch import nn

from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.nn.models import binary_conv_block


def binary_linear_block(cin: int, cout: int, b: Binarization) -> list[nn.Module]:
    """BN → (sign) → linear → ReLU: the paper's block for a hidden fully connected layer."""
    return [b.batchnorm1d(cin), QuantLinear(cin, cout, **b.quantizers()), nn.ReLU(inplace=True)]


class AlexNet(nn.Sequential):
    """XNOR-Net's AlexNet (as XNOR-Net-PyTorch's ImageNet model) at 224×224: a full-precision
    11×11 first conv, five binary blocks BN → sign → conv → ReLU (→ pool), two binary 4096-wide
    fully connected layers, and a full-precision classifier."""

    def __init__(self, binarization: Binarization, num_classes: int = 1000, in_channels: int = 3):
        b = binarization
        super().__init__(
            QuantConv2d(
                in_channels, 96, 11, stride=4, padding=2, **b.quantizers(hidden=False, raw_input=True)
            ),
            b.batchnorm2d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # (B, 96, 27, 27)
            *binary_conv_block(96, 256, 5, b, padding=2),
            nn.MaxPool2d(3, stride=2),  # (B, 256, 13, 13)
            *binary_conv_block(256, 384, 3, b, padding=1),
            *binary_conv_block(384, 384, 3, b, padding=1),
            *binary_conv_block(384, 256, 3, b, padding=1),
            nn.MaxPool2d(3, stride=2),  # (B, 256, 6, 6)
            nn.Flatten(),  # (B, 9216)
            *binary_linear_block(256 * 6 * 6, 4096, b),
            *binary_linear_block(4096, 4096, b),
            b.batchnorm1d(4096),
            QuantLinear(4096, num_classes, **b.quantizers(hidden=False)),
        )


class BasicBlock(nn.Module):
    """ResNet's basic block with binary 3×3 convs, each in the paper's order BN → sign → conv, and
    a real-valued shortcut: the identity, or where the shape changes a full-precision 1×1 conv + BN.

    The downsampling shortcut stays full precision (as in Bi-Real Net and most binary ResNets): it
    is three small layers (0.17 M of 11 M weights, ~1% of the operations), and binarizing it would
    put a sign on the only path that carries real-valued information between stages.
    """

    def __init__(self, cin: int, cout: int, stride: int, b: Binarization) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(
            b.batchnorm2d(cin),
            QuantConv2d(cin, cout, 3, stride=stride, padding=1, **b.quantizers()),
            nn.ReLU(inplace=True),
        )
        self.conv_b = nn.Sequential(
            b.batchnorm2d(cout),
            QuantConv2d(cout, cout, 3, padding=1, **b.quantizers()),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                QuantConv2d(cin, cout, 1, stride=stride, bias=False), b.batchnorm2d(cout)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv_b(self.conv_a(x)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 at 224×224 with binary 3×3 convs in every block; the 7×7 stem, the downsampling
    shortcuts and the classifier stay full precision, as in the paper."""

    def __init__(self, binarization: Binarization, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        b = binarization
        self.stem = nn.Sequential(
            QuantConv2d(
                in_channels,
                64,
                7,
                stride=2,
                padding=3,
                bias=False,
                **b.quantizers(hidden=False, raw_input=True),
            ),
            b.batchnorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 64, 56, 56)
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride, b), BasicBlock(cout, cout, 1, b)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)  # (B, 512, 7, 7)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, 512)
            *b.before_last(512),
            QuantLinear(512, num_classes, **b.quantizers(hidden=False)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
