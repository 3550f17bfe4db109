"""Shift-based BatchNorm (BinaryNet, Courbariaux, Hubara et al. 2016, Algorithm 3).

Every multiplication of BatchNorm becomes a multiplication by a power of two (AP2), which is a
bit shift in fixed-point hardware:

    C(x) = x - mean(x)                       centred input
    var  = mean(C(x) · AP2(C(x)))            approximate variance
    x̂    = C(x) · AP2(1 / sqrt(var + eps))   normalise
    y    = AP2(γ) · x̂ + β                    scale and shift

At inference the layer is still one affine map per channel, ``y = s·x + t`` with
``s = AP2(γ)·AP2(1/sqrt(running_var + eps))``, so the packer folds it into the same threshold
form as a standard BatchNorm (``inference_scale_shift``) and the engine needs nothing new.
The classes subclass torch's BatchNorm, so graph capture and the packer recognise them as such.
"""

from __future__ import annotations

import torch
from torch import nn

from xnornet.nn.quantizers import power_of_two, power_of_two_ste


class ShiftBatchNorm:
    """What the 1-d and 2-d variants share; ``_reduce_dims`` are the axes statistics run over."""

    _reduce_dims: tuple[int, ...]
    num_features: int
    eps: float
    affine: bool
    weight: nn.Parameter | None
    bias: nn.Parameter | None
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)  # broadcast a (C,) vector over (B, C, …)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        shape = self._shape(x)
        if self.training:
            mean = x.mean(dim=self._reduce_dims)  # (C,)
            centred = x - mean.view(shape)
            var = (centred * power_of_two_ste(centred)).mean(dim=self._reduce_dims)  # (C,)
            if self.track_running_stats:
                with torch.no_grad():
                    n = x.numel() / x.shape[1]
                    m = (
                        self.momentum
                        if self.momentum is not None
                        else 1 / (1 + int(self.num_batches_tracked))
                    )
                    self.running_mean.mul_(1 - m).add_(m * mean)
                    self.running_var.mul_(1 - m).add_(m * var * n / max(n - 1, 1))
                    self.num_batches_tracked.add_(1)
        else:
            centred, var = x - self.running_mean.view(shape), self.running_var
        y = centred * power_of_two_ste(torch.rsqrt(var + self.eps)).view(shape)
        if self.affine:
            y = power_of_two_ste(self.weight).view(shape) * y + self.bias.view(shape)
        return y

    @torch.no_grad()
    def inference_scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode as ``y = s·x + t`` per channel (float64): what the packer folds."""
        var, mean = self.running_var.double(), self.running_mean.double()
        s = power_of_two(torch.rsqrt(var + self.eps))
        if self.affine:
            s = power_of_two(self.weight.double()) * s
        t = -mean * s + (self.bias.double() if self.affine else 0.0)
        return s, t


class ShiftBatchNorm1d(ShiftBatchNorm, nn.BatchNorm1d):
    """Shift-based BatchNorm over (B, C) inputs."""

    _reduce_dims = (0,)


class ShiftBatchNorm2d(ShiftBatchNorm, nn.BatchNorm2d):
    """Shift-based BatchNorm over (B, C, H, W) inputs."""

    _reduce_dims = (0, 2, 3)
