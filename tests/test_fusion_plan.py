"""The engine's fusion decisions as a table: an architecture in, the planned steps out, with no
kernel object built (packed.fusion_plan)."""

from __future__ import annotations

import pytest

from xnornet.packed.fusion_plan import PlannedStep, fusion_plan


def conv(inputs, binary=True, binary_input=True, int8=False, c=(8, 8)):
    spec = {"op": "conv", "in": c[0], "out": c[1], "kernel": [3, 3], "stride": 1, "padding": 1,
            "bias": False, "binary": binary, "binary_input": binary_input, "scale_activations": False,
            "inputs": inputs}  # fmt: skip
    return {**spec, "int8": True} if int8 else spec


def linear(inputs, binary=True, binary_input=True, int8=False):
    spec = {"op": "linear", "in": 8, "out": 4, "bias": True, "binary": binary, "binary_input": binary_input,
            "scale_activations": False, "inputs": inputs}  # fmt: skip
    return {**spec, "int8": True} if int8 else spec


def op(name, inputs, **extra):
    return {"op": name, "inputs": inputs, **extra}


FLOAT = {"binary": False, "binary_input": False}
POOL = {"kernel": 2, "stride": 2, "padding": 0}


def lenet(first_int8: bool, bwn: bool = False) -> list[dict]:
    """LeNet-5 as the pack stage stores it: float conv1 (int8 or not), BN as thresholds (XNOR) or
    scales (BWN) before the binary layers, the last fc in full precision."""
    bn = "scale" if bwn else "threshold"
    return [
        conv([-1], **FLOAT, int8=first_int8), op("relu", [0]), op("maxpool", [1], **POOL),
        op(bn, [2], channels=8), conv([3], binary_input=not bwn), op("relu", [4]), op("maxpool", [5], **POOL),
        op("flatten", [6]), op(bn, [7], channels=8), linear([8], binary_input=not bwn), op("relu", [9]),
        linear([10], **FLOAT, int8=first_int8),
    ]  # fmt: skip


def chain() -> list[dict]:
    """Two XNOR convs with ReLU and BatchNorm → sign between them (AlexNet's conv3 → conv4)."""
    return [op("threshold", [-1], channels=8), conv([0]), op("relu", [1]), op("threshold", [2], channels=8),
            conv([3]), op("relu", [4])]  # fmt: skip


def residual() -> list[dict]:
    """A float 1×1 shortcut computed first, then the XNOR main branch, the add and the ReLU."""
    return [conv([-1], **FLOAT, c=(8, 16)), op("threshold", [-1], channels=8), conv([1], c=(8, 16)),
            op("add", [2, 0]), op("relu", [3])]  # fmt: skip


def add_first() -> list[dict]:
    """The main branch listed before its float shortcut (as torch.fx captures ResNet-18)."""
    return [op("threshold", [-1], channels=8), conv([0]), conv([-1], **FLOAT), op("add", [1, 2])]


def add_first_binary_shortcut() -> list[dict]:
    """The main branch listed before a binary shortcut, which cannot run first on its own."""
    return [op("threshold", [-1], channels=8), conv([0]), op("threshold", [-1], channels=8), conv([2]),
            op("add", [1, 3])]  # fmt: skip


CASES = {
    "lenet xnor, int8 layers": (lenet(True), True, [
        ("0:int8_conv+relu+maxpool", (-1,), 2), ("4:xnor_conv+relu", (2,), 5), ("6:maxpool", (5,), 6),
        ("7:flatten", (6,), 7), ("9:xnor_linear+relu", (7,), 10), ("11:int8_linear", (10,), 11)]),
    "lenet xnor, fp32 layers: no int8 pooling": (lenet(False), True, [
        ("0:float_conv+relu", (-1,), 1), ("2:maxpool", (1,), 2), ("4:xnor_conv+relu", (2,), 5),
        ("6:maxpool", (5,), 6), ("7:flatten", (6,), 7), ("9:xnor_linear+relu", (7,), 10),
        ("11:float_linear", (10,), 11)]),
    "lenet bwn: BatchNorm kept as a scale": (lenet(True, bwn=True), True, [
        ("0:int8_conv+relu+maxpool", (-1,), 2), ("3:scale", (2,), 3), ("4:bwn_conv+relu", (3,), 5),
        ("6:maxpool", (5,), 6), ("7:flatten", (6,), 7), ("8:scale", (7,), 8), ("9:bwn_linear+relu", (8,), 10),
        ("11:int8_linear", (10,), 11)]),
    "xnor chain: the first emits the second's bits": (chain(), True, [
        ("1:xnor_conv+relu+sign", (-1,), 2), ("4:xnor_conv+relu", (2,), 5)]),
    "xnor chain, fusion off": (chain(), False, [
        ("1:xnor_conv+relu", (-1,), 2), ("4:xnor_conv+relu", (2,), 5)]),
    "residual: add and ReLU in the conv": (residual(), True, [
        ("0:float_conv", (-1,), 0), ("2:xnor_conv+relu+add", (-1, 0), 4)]),
    "residual, main branch listed first: the float shortcut runs first": (add_first(), True, [
        ("2:float_conv", (-1,), 2), ("1:xnor_conv+add", (-1, 2), 3)]),
    "residual, binary shortcut listed second: added by it": (add_first_binary_shortcut(), True, [
        ("1:xnor_conv", (-1,), 1), ("3:xnor_conv+add", (-1, 1), 4)]),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_plan_table(case):
    arch, fuse, want = CASES[case]
    got = [(p.name, p.inputs, p.output) for p in fusion_plan(arch, fuse)]
    assert got == want


def test_what_a_planned_step_carries():
    lenet_steps = {p.layer: p for p in fusion_plan(lenet(True))}
    assert lenet_steps[0].maxpool == 2 and lenet_steps[0].relu and lenet_steps[0].sign_of is None
    assert lenet_steps[4] == PlannedStep("4:xnor_conv+relu", 4, (2,), 5, sign_of=3, relu=True)
    first, second = fusion_plan(chain())
    assert first.emits == 3 and not first.sign_packed and first.sign_of == 0
    assert second.sign_of == 3 and second.sign_packed  # its sign arrives packed from the first
    unfused = fusion_plan(chain(), fuse_layers=False)[1]
    assert unfused.sign_of == 3 and not unfused.sign_packed
    assert fusion_plan(residual())[1].inputs == (-1, 0)  # the shortcut's value, added in the conv
