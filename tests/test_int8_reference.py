"""The torch model that runs the packed file's int8 layers through torch's own quantized modules:
the engine with int8 layers must give its logits, on chains and on residual graphs with a folded
BatchNorm; the float model comes back after the context; what it cannot mirror is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from small_nets import FLOAT, SHAPE, XNOR, TinyResidual, calibration, random_lenet
from xnornet.benchmark.network import calibrate_batchnorm
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.packed.agreement import agreement
from xnornet.packed.engine import PackedEngine
from xnornet.packed.inference_form import pack_network
from xnornet.packed.int8_calibration import quantize_float_layers
from xnornet.packed.int8_reference import int8_layers_in_torch


def logits(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def check_same_layers(net: nn.Module, shape: tuple[int, ...], calib: list[np.ndarray], x: np.ndarray) -> None:
    int8 = quantize_float_layers(pack_network(net, shape), calib)
    assert any(s.int8 for s in int8.architecture)
    before = logits(net, x)
    ours = PackedEngine(int8)(x)
    with int8_layers_in_torch(net, int8) as same:
        theirs = logits(same, x)
    result = agreement(ours, theirs, theirs.argmax(1), tol=1e-5)
    assert result["agreement"] == 1.0
    # the int8 layers are the same integers; what is left is float32 rounding elsewhere
    assert result["max_abs_logit_diff"] <= 1e-4 * max(1.0, np.abs(theirs).max())
    assert not np.allclose(theirs, before, atol=1e-6)  # the int8 layers did run
    np.testing.assert_array_equal(logits(net, x), before)  # and the float ones are back


@pytest.mark.parametrize("variant", ["bwn", "xnor"])
def test_lenet_engine_with_int8_layers_equals_torch_with_the_same_int8_layers(variant):
    net = random_lenet(variant)
    x = calibration(32, seed=5)[0]
    check_same_layers(net, SHAPE, calibration(), x)


@pytest.mark.parametrize("b", [XNOR, FLOAT], ids=["xnor", "float"])
def test_residual_graph_with_a_folded_batchnorm_shortcut(b):
    """The stem's and the float 1×1 shortcut's BatchNorm are folded into their int8 layers; the
    shortcut's output is added in float after its requantization, in both."""
    torch.manual_seed(1)
    shape = (3, 12, 12)
    net = calibrate_batchnorm(TinyResidual(b, binary_shortcut=False), shape, 2, 8, seed=0)
    calib = [np.random.default_rng(0).standard_normal((16, *shape), dtype=np.float32)]
    x = np.random.default_rng(1).standard_normal((16, *shape), dtype=np.float32)
    check_same_layers(net, shape, calib, x)


class ShiftIntoFloatLayer(nn.Sequential):
    """A BatchNorm before a full-precision conv without padding, and one before the last linear
    layer (AlexNet's classifier): each shift is folded into the next layer's bias, and the engine
    keeps only its scale."""

    def __init__(self) -> None:
        super().__init__(QuantConv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), QuantConv2d(4, 4, 3),
                         nn.Flatten(), nn.BatchNorm1d(64), QuantLinear(4 * 4 * 4, 2))  # fmt: skip


def test_layers_with_a_folded_batchnorm_shift():
    torch.manual_seed(2)
    net = calibrate_batchnorm(ShiftIntoFloatLayer(), (1, 8, 8), 2, 16, seed=0)
    arch = pack_network(net, (1, 8, 8)).architecture
    assert [s.op for s in arch].count("scale") == 2  # both shifts handed on
    check_same_layers(net, (1, 8, 8), calibration_8x8(), calibration_8x8(seed=3)[0])


def calibration_8x8(seed: int = 2) -> list[np.ndarray]:
    return [np.random.default_rng(seed).standard_normal((16, 1, 8, 8), dtype=np.float32)]


def test_a_float_model_is_its_own_reference():
    net = random_lenet("xnor")
    fp32 = pack_network(net, SHAPE)
    x = calibration(8, seed=4)[0]
    with int8_layers_in_torch(net, fp32) as same:
        assert same is net
        np.testing.assert_array_equal(logits(same, x), logits(net, x))
