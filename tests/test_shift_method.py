"""BinaryNet's cost-saving parts (shift-based BatchNorm and AdaMax) and binary gradients, each
against a plain reference: numpy for the BatchNorm, hand-computed for the gradient, torch's Adamax
for the optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose_config, tiny_overrides
from xnornet.builders import build_module, build_net
from xnornet.errors import XnornetError
from xnornet.nn.layers import QuantLinear
from xnornet.nn.quantizers import power_of_two, sign_ste, weight_quantizer
from xnornet.nn.shift_adamax import ShiftAdaMax
from xnornet.nn.shift_batchnorm import ShiftBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d


def ap2_reference(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(x == 0, 0.0, np.sign(x) * 2.0 ** np.round(np.log2(np.abs(x))))


def shift_bn_reference(
    x: np.ndarray, gamma, beta, eps: float, axes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BinaryNet Algorithm 3, written out in numpy float64: (y, batch mean, approximate variance)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    mean = x.mean(axis=axes)
    centred = x - mean.reshape(shape)
    var = (centred * ap2_reference(centred)).mean(axis=axes)
    x_hat = centred * ap2_reference(1 / np.sqrt(var + eps)).reshape(shape)
    return ap2_reference(gamma).reshape(shape) * x_hat + beta.reshape(shape), mean, var


def test_power_of_two_is_a_power_of_two_within_sqrt2():
    x = torch.randn(10_000, dtype=torch.float64) * 100
    p = power_of_two(x)
    exponent = torch.log2(p.abs())
    assert torch.equal(exponent, exponent.round())  # exactly 2^k
    assert torch.equal(torch.sign(p), torch.sign(x))
    ratio = (p / x).numpy()
    assert ratio.min() >= 2**-0.5 - 1e-12 and ratio.max() <= 2**0.5 + 1e-12
    np.testing.assert_array_equal(p.numpy(), ap2_reference(x.numpy()))
    assert power_of_two(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "cls,shape,axes", [(ShiftBatchNorm2d, (4, 3, 5, 5), (0, 2, 3)), (ShiftBatchNorm1d, (16, 7), (0,))]
)
def test_shift_batchnorm_matches_algorithm_3(cls, shape, axes):
    torch.manual_seed(0)
    bn = cls(shape[1], eps=1e-4).double()
    with torch.no_grad():
        bn.weight.uniform_(0.3, 3.0)
        bn.bias.normal_()
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    y = bn.train()(x)
    ref, mean, var = shift_bn_reference(
        x.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), 1e-4, axes
    )
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    n = x.numel() / shape[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-12)


def test_shift_batchnorm_trains_and_its_eval_form_is_one_affine_map():
    torch.manual_seed(0)
    bn = ShiftBatchNorm2d(3, eps=1e-4)
    x = torch.randn(8, 3, 4, 4, requires_grad=True)
    bn.train()(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and bn.weight.grad.abs().sum() > 0 and bn.bias.grad.abs().sum() > 0
    bn.eval()
    s, t = bn.inference_scale_shift()
    exponent = torch.log2(s.abs())
    assert torch.equal(exponent, exponent.round())  # the folded scale is itself a power of two
    expected = x.detach().double() * s.view(1, -1, 1, 1) + t.view(1, -1, 1, 1)
    torch.testing.assert_close(bn(x.detach()).double(), expected, rtol=1e-6, atol=1e-6)


def binary_linear(binary_gradients: bool) -> QuantLinear:
    gq = {"gradient_quantizer": None}
    if binary_gradients:
        from xnornet.nn.quantizers import binary_gradient

        gq["gradient_quantizer"] = binary_gradient
    layer = QuantLinear(
        3, 2, bias=False, weight_quantizer=weight_quantizer(True), input_quantizer=sign_ste, **gq
    )
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.5, 0.5], [-0.5, -0.5, 0.5]]))  # α = 0.5 per filter
    return layer


@pytest.mark.parametrize(
    "binary_gradients,expected",
    [
        # g_in = c @ (0.5·sign W): sample 0 → [-0.5, -1.5, 1.5], sample 1 → [-0.5, 0.5, -0.5];
        # binarized per sample: max|g| · sign(g) → [-1.5, -1.5, 1.5] and [-0.5, 0.5, -0.5];
        # then the STE keeps only |x| <= 1.
        (True, [[-1.5, 0.0, 1.5], [-0.5, 0.5, 0.0]]),
        (False, [[-0.5, 0.0, 1.5], [-0.5, 0.5, 0.0]]),
    ],
)
def test_binary_gradients_by_hand(binary_gradients, expected):
    x = torch.tensor([[0.2, -3.0, 0.7], [-0.1, 0.4, 2.0]], requires_grad=True)
    c = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    (binary_linear(binary_gradients)(x) * c).sum().backward()
    assert x.grad.tolist() == expected


def test_shift_adamax_is_adamax_when_every_scale_is_a_power_of_two():
    g = torch.tensor([0.25, -4.0, 1.0, -0.5])  # powers of two, so 1/u is one too
    ours, plain = (torch.zeros(4, requires_grad=True) for _ in range(2))
    for p, opt in (
        (ours, ShiftAdaMax([ours], lr=2**-5, betas=(0.5, 0.999), eps=1e-12)),
        (plain, torch.optim.Adamax([plain], lr=2**-5, betas=(0.5, 0.999), eps=1e-12)),
    ):
        p.grad = g.clone()
        opt.step()  # lr / (1 - β1) = 2^-4
    torch.testing.assert_close(ours.detach(), plain.detach(), rtol=1e-9, atol=0)
    torch.testing.assert_close(ours.detach(), -(2**-5) * torch.sign(g))


def test_shift_adamax_steps_like_adamax_within_a_factor_two():
    """Fed the same gradients, each step points where AdaMax's does, at 1/2 to 2 times its length
    (two AP2 roundings of at most √2 each); and it solves a toy least-squares problem."""
    torch.manual_seed(0)
    a, b = torch.randn(32, 8, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    ours = torch.zeros(8, dtype=torch.float64, requires_grad=True)  # float64: steps stay exact
    plain = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    opt_ours, opt_plain = ShiftAdaMax([ours], lr=0.05), torch.optim.Adamax([plain], lr=0.05)
    loss0 = (a @ ours - b).square().mean().item()
    for _ in range(300):
        g = torch.autograd.grad((a @ ours - b).square().mean(), ours)[0]
        before_ours, before_plain = ours.detach().clone(), plain.detach().clone()
        ours.grad, plain.grad = g.clone(), g.clone()  # the same gradient into both states
        opt_ours.step()
        opt_plain.step()
        step_ours, step_plain = ours.detach() - before_ours, plain.detach() - before_plain
        moving = step_plain.abs() > 1e-12
        ratio = step_ours[moving] / step_plain[moving]
        assert (ratio >= 0.5 - 1e-6).all() and (ratio <= 2 + 1e-6).all(), ratio
    best = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    loss_best = (a @ best - b).square().mean().item()
    assert (a @ ours - b).square().mean().item() - loss_best < 0.02 * (loss0 - loss_best)


def binary_grad(m) -> bool:
    return getattr(m, "gradient_quantizer", None) is not None


@pytest.mark.parametrize(
    "overrides,check",
    [
        (["model.bn=shift"], lambda net, opt: sum(isinstance(m, ShiftBatchNorm) for m in net.modules()) == 3),
        (["train/optimizer=shift_adamax"], lambda net, opt: isinstance(opt, ShiftAdaMax)),
        (
            ["model.binarization.binary_gradients=true"],
            lambda net, opt: sum(binary_grad(m) for m in net.modules()) == 2,
        ),
    ],
)
def test_switches_are_config(tmp_path, overrides, check):
    cfg = compose_config([*tiny_overrides(tmp_path, "xnor"), *overrides])
    net = build_net(cfg)
    module = build_module(cfg, net)
    opt = module.make_optimizer(module.parameters())  # the schedule needs a Trainer, the optimizer not
    assert check(net, opt)


def test_unknown_batchnorm_is_named(tmp_path):
    cfg = compose_config([*tiny_overrides(tmp_path, "xnor"), "model.bn=shfit"])
    with pytest.raises(XnornetError, match="model.bn must be one of"):
        build_net(cfg)
