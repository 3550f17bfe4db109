"""Graphs, not just chains: residual networks captured with torch.fx, packed, and run on the engine
with the same predictions as PyTorch; anything the engine cannot run is refused at pack time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch import nn

from small_nets import BWN, FLOAT, XNOR, TinyResidual
from xnornet.benchmark.network import calibrate_batchnorm, counted_speedup
from xnornet.errors import XnornetError
from xnornet.nn.imagenet_models import AlexNet, ResNet18
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.packed.agreement import agreement
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import FORMAT, VERSION, digest, load_packed, save_packed
from xnornet.packed.inference_form import pack_network


def engine_vs_torch(net: nn.Module, shape: tuple[int, ...], n: int, seed: int = 0) -> dict:
    model = pack_network(net, shape)
    x = np.random.default_rng(seed).standard_normal((n, *shape), dtype=np.float32)
    with torch.no_grad():
        reference = net(torch.from_numpy(x)).numpy()
    ours = PackedEngine(model, threads=2)(x)
    return {**agreement(ours, reference, reference.argmax(1), tol=1e-5), "ours": ours, "reference": reference}


@pytest.mark.parametrize("binarization", [XNOR, BWN, FLOAT], ids=["xnor", "bwn", "fp"])
@pytest.mark.parametrize("binary_shortcut", [True, False], ids=["binary_1x1", "float_1x1"])
def test_residual_graph_runs_like_pytorch(binarization, binary_shortcut):
    torch.manual_seed(0)
    net = calibrate_batchnorm(TinyResidual(binarization, binary_shortcut), (3, 12, 12), 3, 16, seed=0)
    result = engine_vs_torch(net, (3, 12, 12), 64)
    assert result["disagreements"] == result["tie_disagreements"]
    assert result["images_logit_diff_over_1e-3"] == 0
    np.testing.assert_allclose(result["ours"], result["reference"], rtol=1e-4, atol=1e-4)


def test_the_packed_file_records_the_graph(tmp_path):
    torch.manual_seed(0)
    net = calibrate_batchnorm(TinyResidual(XNOR, binary_shortcut=False), (3, 12, 12), 2, 8, seed=0)
    save_packed(pack_network(net, (3, 12, 12)), tmp_path / "g.packed")
    arch = load_packed(tmp_path / "g.packed").architecture
    adds = [i for i, spec in enumerate(arch) if spec.op == "add"]
    assert len(adds) == 2
    assert all(len(arch[i].inputs) == 2 and max(arch[i].inputs) < i for i in adds)
    # the second block adds the first block's output (after its ReLU) to its own branch
    first_relu = arch[adds[0] + 1]
    assert first_relu.op == "relu" and adds[0] + 1 in arch[adds[1]].inputs


@pytest.mark.slow
@pytest.mark.parametrize("network", [ResNet18, AlexNet])
def test_the_papers_networks_run_like_pytorch(network):
    torch.manual_seed(0)
    net = calibrate_batchnorm(network(XNOR), (3, 224, 224), 2, 8, seed=0)
    result = engine_vs_torch(net, (3, 224, 224), 6)
    assert result["agreement"] == 1.0 or result["disagreements"] == result["tie_disagreements"]
    # sign flips from threshold rounding can move a logit slightly; the argmax must not move
    assert np.abs(result["ours"] - result["reference"]).max() < 0.25 * np.abs(result["reference"]).max()


class WithSigmoid(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(QuantConv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), QuantLinear(4 * 6 * 6, 2))


class WithConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = QuantConv2d(1, 2, 3), QuantConv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


class WithPlainConv(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(1, 4, 3), nn.Flatten())


class WithBranchOnData(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = QuantConv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) if x.sum() > 0 else -self.a(x)


@pytest.mark.parametrize(
    "net,match",
    [(WithSigmoid(), "cannot pack a Sigmoid layer"), (WithConcat(), "unsupported operation 'cat'"),
     (WithPlainConv(), "cannot pack a Conv2d layer"), (WithBranchOnData(), "cannot be traced")],
)  # fmt: skip
def test_an_unknown_layer_is_refused_at_pack_time(net, match):
    with pytest.raises(XnornetError, match=match):
        pack_network(net.eval(), (1, 8, 8))


@pytest.mark.parametrize("inputs", [[5], [-2], [0, 1], "x"])
def test_a_file_whose_graph_reads_ahead_or_nowhere_is_refused(tmp_path, inputs):
    torch.manual_seed(0)
    model = pack_network(TinyResidual(XNOR, binary_shortcut=True).eval(), (3, 12, 12))
    arch = [spec.to_json() for spec in model.architecture]
    relu = next(i for i, spec in enumerate(arch) if spec["op"] == "relu" and i > 2)
    arch[relu]["inputs"] = inputs
    arch_json, info = json.dumps(arch, sort_keys=True), json.dumps(model.info)
    meta = {"format": FORMAT, "version": str(VERSION), "architecture": arch_json, "info": info,
            "sha256": digest(arch_json, info, model.tensors)}  # fmt: skip
    save_file(model.tensors, str(tmp_path / "bad.packed"), metadata=meta)
    with pytest.raises(XnornetError, match="must read 1 earlier layer"):
        load_packed(tmp_path / "bad.packed")


def test_counted_speedup_is_the_papers_formula_on_one_binary_layer():
    """A float layer of n MACs and a binary one of n MACs and o outputs count as 2n / (n + n/64 + o);
    for one 3×3 conv of c = 256 the paper's S = 64·c·9 / (c·9 + 64) = 62.3× follows."""
    layer = QuantConv2d(256, 256, 3, padding=1, **XNOR.quantizers())
    counted = counted_speedup(nn.Sequential(nn.BatchNorm2d(256), layer), (256, 8, 8))
    assert counted["counted_speedup"] == pytest.approx(64 * 256 * 9 / (256 * 9 + 64), rel=1e-3)
    assert counted["binary_macs_share"] == 1.0
