"""Binarization as in XNOR-Net (Rastegari et al., 2016), each op one autograd Function.

Conventions shared with the packed engine and the kernel: sign(0) = +1; the gradient of sign is
the clipped straight-through estimator 1{|x| <= 1}; α is the mean |W| of each output filter.
Quantization happens inside ``forward``: the latent float weights are never swapped in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Quantizer = Callable[[torch.Tensor], torch.Tensor]


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, so every value has a bit (bit 1 ⇔ x < 0 when packed).

    Examples:
        >>> binarize(torch.tensor([-2.0, -0.0, 0.0, 0.5])).tolist()
        [-1.0, 1.0, 1.0, 1.0]
    """
    return torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))


def filter_mean_abs(w: torch.Tensor) -> torch.Tensor:
    """α of each output filter: mean |W| over all but the first axis, shaped to broadcast."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class _SignSTE(torch.autograd.Function):
    """sign forward; hard-tanh straight-through backward, so gradients die where |x| > 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return binarize(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def centre_and_clamp(w: torch.Tensor) -> torch.Tensor:
    """Each filter's weights minus their mean over the input channels (axis 1), clamped to [-1, 1].

    What both reference codes (XNOR-Net-PyTorch ``MNIST/util.py``, allenai ``util.lua``) do to
    the weights before every binarization, in training and at test time; the paper omits it.

    Examples:
        >>> centre_and_clamp(torch.tensor([[3.0, 1.0], [0.5, -0.5]])).tolist()
        [[1.0, -1.0], [0.5, -0.5]]
    """
    return (w - w.mean(dim=1, keepdim=True)).clamp(-1.0, 1.0)


class _CentreClampSTE(torch.autograd.Function):
    """``centre_and_clamp`` forward; identity backward. The reference codes centre the stored
    weights in place, outside autograd, so their optimizer sees the gradient unchanged."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        return centre_and_clamp(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def centred_weights(w: torch.Tensor) -> torch.Tensor:
    """The reference codes' weight centring before α and sign, with a straight-through gradient.

    Examples:
        >>> w = torch.tensor([[2.0, 0.0]], requires_grad=True)
        >>> centred_weights(w).sum().backward()
        >>> w.grad.tolist()
        [[1.0, 1.0]]
    """
    return _CentreClampSTE.apply(w)


class _PaperBWNWeight(torch.autograd.Function):
    """α·sign(W) with the paper's simplified gradient g·(1/n + α·1{|W| ≤ 1}).

    The paper drops the cross terms that come from α depending on all of W; this Function
    exists so that users can compare it with the exact gradient autograd derives.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        alpha = filter_mean_abs(w)
        ctx.save_for_backward(w, alpha)
        return alpha * binarize(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        w, alpha = ctx.saved_tensors
        n = w[0].numel()
        return grad * (1.0 / n + alpha * (w.abs() <= 1).to(grad.dtype))


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Binarize activations (XNOR inputs) with the clipped straight-through gradient.

    Examples:
        >>> x = torch.tensor([-2.0, -0.5, 0.0, 3.0], requires_grad=True)
        >>> sign_ste(x).sum().backward()
        >>> x.grad.tolist()
        [0.0, 1.0, 1.0, 0.0]
    """
    return _SignSTE.apply(x)


def bwn_weight(w: torch.Tensor) -> torch.Tensor:
    """BWN weights α·sign(W); α stays differentiable so autograd gives the exact gradient

    ∂C/∂W_i = α·1{|W_i|≤1}·g_i + (1/n)·sign(W_i)·Σ_j g_j·sign(W_j)   (per filter).
    """
    return filter_mean_abs(w) * sign_ste(w)


def bwn_weight_paper(w: torch.Tensor) -> torch.Tensor:
    """BWN weights with the paper's simplified gradient (see ``_PaperBWNWeight``)."""
    return _PaperBWNWeight.apply(w)


def activation_scale(
    x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """XNOR-Net's K: the mean over channels of |I|, box-filtered over each receptive field.

    Zero padding counts as 0 in the box, matching the zero contribution of padded positions.
    Returns (B, 1, H_out, W_out), to multiply the binary convolution's output by.
    """
    a = x.abs().mean(dim=1, keepdim=True)  # (B, 1, H, W)
    box = a.new_full((1, 1, *kernel_size), 1.0 / (kernel_size[0] * kernel_size[1]))
    return F.conv2d(a, box, stride=stride, padding=padding)


class _BinaryGradient(torch.autograd.Function):
    """Identity forward; backward sends s·sign(g) with s = max|g| of each sample.

    The scale is per sample, not per layer: a sample's gradient then does not depend on which
    other samples share its batch, and one sample with a large gradient cannot drown the rest.
    An exact zero stays zero (sign(0) = 0 here, unlike the forward convention): a gradient the
    straight-through estimator cut off carries no information, and giving it ±s would add noise.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        flat = grad.reshape(grad.shape[0], -1)  # (B, everything else)
        scale = flat.abs().amax(dim=1).view(-1, *([1] * (grad.dim() - 1)))
        return scale * torch.sign(grad)


def binary_gradient(x: torch.Tensor) -> torch.Tensor:
    """Pass ``x`` on unchanged, and binarize the gradient that flows back into it.

    Examples:
        >>> x = torch.zeros(2, 3, requires_grad=True)
        >>> (binary_gradient(x) * torch.tensor([[0.5, -2.0, 0.0], [1.0, 1.0, -3.0]])).sum().backward()
        >>> x.grad.tolist()
        [[2.0, -2.0, 0.0], [3.0, 3.0, -3.0]]
    """
    return _BinaryGradient.apply(x)


def power_of_two(x: torch.Tensor) -> torch.Tensor:
    """AP2(x) = sign(x)·2^round(log2|x|), the nearest power of two (0 stays 0): a multiplication by
    it is a bit shift, which is what BinaryNet's shift-based BatchNorm and AdaMax rely on.

    Examples:
        >>> power_of_two(torch.tensor([3.0, -0.3, 0.0, 1.0])).tolist()
        [4.0, -0.25, 0.0, 1.0]
    """
    exponent = torch.round(torch.log2(x.abs().clamp_min(torch.finfo(x.dtype).tiny)))
    return torch.sign(x) * torch.exp2(exponent)


class _PowerOfTwoSTE(torch.autograd.Function):
    """AP2 forward; identity backward (rounding the exponent has no useful derivative)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return power_of_two(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def power_of_two_ste(x: torch.Tensor) -> torch.Tensor:
    """AP2 with a straight-through gradient, for the shift-based BatchNorm's training graph."""
    return _PowerOfTwoSTE.apply(x)


WEIGHT_QUANTIZERS: dict[str, Quantizer] = {"exact": bwn_weight, "paper": bwn_weight_paper}


def weight_quantizer(binary: bool, weight_grad: str = "exact") -> Quantizer | None:
    """The weight quantizer named by a model config, or None for full precision."""
    if not binary:
        return None
    if weight_grad not in WEIGHT_QUANTIZERS:
        raise ValueError(
            f"model.binarization.weight_grad must be one of {sorted(WEIGHT_QUANTIZERS)}, got {weight_grad!r}"
        )
    return WEIGHT_QUANTIZERS[weight_grad]
