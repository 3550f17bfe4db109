"""Small networks the packing, graph and int8 tests share: a residual graph with every fusion
case, and LeNet-5 with random weights and BatchNorm statistics of real use."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from conftest import compose_config
from xnornet.builders import build_net
from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantConv2d, QuantLinear

XNOR, BWN, FLOAT = Binarization(weights=True, inputs=True), Binarization(weights=True), Binarization()
SHAPE = (1, 28, 28)  # LeNet-5's MNIST input


class TinyResidual(nn.Module):
    """A stem, one downsampling residual block whose shortcut is a 1×1 conv (binary or float), and
    an identity block that adds with ``torch.add`` and flattens with ``torch.flatten``."""

    def __init__(self, b: Binarization, binary_shortcut: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(QuantConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.main = nn.Sequential(
            nn.BatchNorm2d(8), QuantConv2d(8, 16, 3, stride=2, padding=1, **b.quantizers()), nn.ReLU(),
            nn.BatchNorm2d(16), QuantConv2d(16, 16, 3, padding=1, **b.quantizers()),
        )  # fmt: skip
        if binary_shortcut:
            self.shortcut = nn.Sequential(
                nn.BatchNorm2d(8), QuantConv2d(8, 16, 1, stride=2, **b.quantizers())
            )
        else:
            self.shortcut = nn.Sequential(QuantConv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.inner = nn.Sequential(nn.BatchNorm2d(16), QuantConv2d(16, 16, 3, padding=1, **b.quantizers()))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = QuantLinear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.relu(self.main(x) + self.shortcut(x))
        x = self.relu(torch.add(self.inner(x), x))
        return self.fc(torch.flatten(self.pool(x), 1))


def random_lenet(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_net(compose_config([f"model={variant}"])).eval()
    with torch.no_grad():  # BN statistics of real use, so no sign sits at 0
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net


def calibration(n: int = 64, seed: int = 0) -> list[np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, *SHAPE), dtype=np.float32)
    return [x[: n // 2], x[n // 2 :]]
