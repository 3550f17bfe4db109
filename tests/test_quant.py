"""Quantizers against numpy and against the closed-form gradients of the method (README.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.nn.quantizers import (
    activation_scale,
    binarize,
    bwn_weight,
    bwn_weight_paper,
    centre_and_clamp,
    centred_weights,
    sign_ste,
)


def np_sign(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, -1.0, 1.0)


def test_sign_forward_matches_numpy_with_sign0_plus_one():
    x = torch.tensor([-3.0, -1.0, -1e-8, -0.0, 0.0, 1e-8, 1.0, 2.0])
    assert sign_ste(x).tolist() == np_sign(x.numpy()).tolist()
    assert binarize(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_sign_gradient_is_clipped_straight_through():
    x = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.01], requires_grad=True)
    g = torch.arange(1.0, 8.0)
    sign_ste(x).backward(g)
    expected = g.numpy() * (np.abs(x.detach().numpy()) <= 1)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def random_weight(shape, seed=0) -> torch.Tensor:
    # spread around ±1 so both sides of the STE clip are exercised; no exact zeros
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.9
    return w.double().requires_grad_(True)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (5, 7), (1, 1, 1, 1)])
def test_bwn_forward_is_alpha_times_sign_per_filter(shape):
    w = random_weight(shape)
    wn = w.detach().numpy().reshape(shape[0], -1)
    alpha = np.abs(wn).mean(axis=1, keepdims=True)
    expected = (alpha * np_sign(wn)).reshape(shape)
    np.testing.assert_allclose(bwn_weight(w).detach().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(bwn_weight_paper(w).detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (6, 10)])
def test_bwn_exact_gradient_equals_closed_form(shape):
    w = random_weight(shape, seed=1)
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(2)).double()
    bwn_weight(w).backward(g)
    wn, gn = w.detach().numpy().reshape(shape[0], -1), g.numpy().reshape(shape[0], -1)
    n = wn.shape[1]
    alpha = np.abs(wn).mean(axis=1, keepdims=True)
    s = np_sign(wn)
    expected = alpha * (np.abs(wn) <= 1) * gn + s / n * (gn * s).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(w.grad.numpy().reshape(shape[0], -1), expected, rtol=1e-10)


def test_bwn_paper_gradient_equals_simplified_formula_and_differs_from_exact():
    shape = (3, 2, 3, 3)
    w = random_weight(shape, seed=3)
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(4)).double()
    bwn_weight_paper(w).backward(g)
    wn, gn = w.detach().numpy().reshape(3, -1), g.numpy().reshape(3, -1)
    alpha = np.abs(wn).mean(axis=1, keepdims=True)
    expected = gn * (1.0 / wn.shape[1] + alpha * (np.abs(wn) <= 1))
    np.testing.assert_allclose(w.grad.numpy().reshape(3, -1), expected, rtol=1e-10)
    w2 = w.detach().clone().requires_grad_(True)
    bwn_weight(w2).backward(g)
    assert not torch.allclose(w.grad, w2.grad)


def test_activation_scale_is_box_filtered_channel_mean_with_zero_padding():
    x = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(5))
    k = activation_scale(x, (3, 3), (2, 1), (1, 1))
    a = np.pad(np.abs(x.numpy()).mean(axis=1), ((0, 0), (1, 1), (1, 1)))
    ho, wo = (6 + 2 - 3) // 2 + 1, (5 + 2 - 3) // 1 + 1
    expected = np.zeros((2, 1, ho, wo), np.float32)
    for i in range(ho):
        for j in range(wo):
            expected[:, 0, i, j] = a[:, 2 * i : 2 * i + 3, j : j + 3].mean(axis=(1, 2))
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 2)])
@pytest.mark.parametrize("scale", [False, True])
def test_quant_conv_equals_float_conv_of_signs(stride, padding, scale):
    torch.manual_seed(0)
    layer = QuantConv2d(4, 6, 3, stride=stride, padding=padding, weight_quantizer=bwn_weight,
                        input_quantizer=sign_ste, scale_activations=scale)  # fmt: skip
    x = torch.randn(2, 4, 7, 9)
    w = layer.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    y = F.conv2d(binarize(x), alpha * binarize(w), None, stride, padding)
    if scale:
        y = y * activation_scale(x, (3, 3), (stride, stride), (padding, padding))
    y = y + layer.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)


def test_quant_linear_equals_float_linear_of_signs():
    torch.manual_seed(0)
    layer = QuantLinear(13, 5, weight_quantizer=bwn_weight, input_quantizer=sign_ste,
                        scale_activations=True)  # fmt: skip
    x = torch.randn(3, 13)
    w = layer.weight.detach()
    alpha = w.abs().mean(dim=1, keepdim=True)
    beta = x.abs().mean(dim=1, keepdim=True)
    y = F.linear(binarize(x), alpha * binarize(w)) * beta + layer.bias.detach()
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)


def test_full_precision_layer_is_plain_conv():
    torch.manual_seed(0)
    layer = QuantConv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))


def reference_centred_binary_weights(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net-PyTorch's steps, written as its MNIST/util.py writes them: meancenterConvParams,
    clampConvParams, then binarizeConvParams (α from the L1 norm over everything but axis 0)."""
    w = w.add(w.mean(1, keepdim=True).mul(-1).expand_as(w))
    w = w.clamp(-1.0, 1.0)
    n = w[0].nelement()
    dims = tuple(range(1, w.dim()))
    m = w.abs().sum(dim=dims, keepdim=True).div(n)
    return w.sign().mul(m)


def test_centred_weights_by_hand():
    """One filter over 2 input channels of 1×2: channel means (2, -1) are subtracted, 3.5 clamps."""
    w = torch.tensor([[[[5.5, 2.0]], [[-1.5, -2.0]]]])  # (1, 2, 1, 2)
    # mean over axis 1: [[2.0, 0.0]] → centred [[3.5, 2.0]], [[-3.5, -2.0]] → clamped ±1
    assert centre_and_clamp(w).tolist() == [[[[1.0, 1.0]], [[-1.0, -1.0]]]]
    w = torch.tensor([[0.2, 0.6], [0.9, -0.1]])  # linear (out, in): mean per output row
    assert torch.allclose(centre_and_clamp(w), torch.tensor([[-0.2, 0.2], [0.5, -0.5]]))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (10, 800), (3, 1, 3, 3), (2, 65, 1, 1)])
def test_centred_binary_weights_equal_the_reference_formula(shape):
    torch.manual_seed(0)
    w = torch.randn(*shape) * 0.7
    binarization = Binarization(weights=True, center_weights=True)
    q = binarization.quantizers()
    ours = q["weight_quantizer"](q["weight_transform"](w))
    expected = reference_centred_binary_weights(w.clone())
    assert torch.allclose(ours, expected, atol=1e-7)
    assert not torch.equal(binarize(ours), binarize(bwn_weight(w)))  # the switch changes signs
    assert Binarization(weights=True).quantizers()["weight_transform"] is None  # off by default


def test_centred_weights_pass_the_gradient_straight_through():
    w = (torch.randn(4, 3, 3, 3) * 3).requires_grad_()
    g = torch.randn(4, 3, 3, 3)
    (centred_weights(w) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_centring_needs_binary_weights():
    with pytest.raises(ValueError, match="center_weights needs a binary variant"):
        Binarization(weights=False, center_weights=True)
