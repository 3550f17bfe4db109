"""Every conf/model × conf/net builds, runs forward and backward, and trains every parameter."""

from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from xnornet.builders import build_net
from xnornet.errors import XnornetError
from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import binary_layers, count_params

NET_INPUTS = {"lenet5": (4, 1, 28, 28), "nin": (2, 3, 32, 32), "alexnet": (2, 3, 224, 224),
              "resnet18": (2, 3, 224, 224)}  # fmt: skip
NET_CLASSES = {"lenet5": 10, "nin": 10, "alexnet": 1000, "resnet18": 1000}


@pytest.mark.parametrize(
    "net",
    [
        "lenet5",
        "nin",
        pytest.param("alexnet", marks=pytest.mark.slow),
        pytest.param("resnet18", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("variant", ["fp", "bwn", "xnor"])
def test_every_parameter_gets_a_gradient(net, variant):
    torch.manual_seed(0)
    model = build_net(compose_config([f"model={variant}", f"net={net}"]))
    x = torch.randn(*NET_INPUTS[net])
    logits = model(x)
    assert logits.shape == (x.shape[0], NET_CLASSES[net])
    logits.logsumexp(1).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("variant,binary_layers_expected", [("fp", 0), ("bwn", 2), ("xnor", 2)])
def test_lenet5_binarizes_only_hidden_layers(variant, binary_layers_expected):
    model = build_net(compose_config([f"model={variant}"]))
    assert len(binary_layers(model)) == binary_layers_expected
    total, binary = count_params(model)
    assert binary == (20 * 50 * 25 + 800 * 500 if binary_layers_expected else 0)
    assert total > binary


def test_first_last_binary_option_binarizes_all_four_layers():
    model = build_net(compose_config(["model=xnor", "model.binarization.first_last_binary=true"]))
    layers = binary_layers(model)
    assert len(layers) == 4
    assert layers[0].input_quantizer is None  # raw pixels are never binarized
    assert layers[-1].input_quantizer is not None


@pytest.mark.parametrize("net", ["lenet5", "resnet18"])
def test_a_binary_last_layer_sees_both_signs(net):
    """Its input comes through a ReLU: without the BatchNorm before it, sign would be +1 for every
    feature of every sample, and the logits the same whatever the image (an 11% classifier)."""
    torch.manual_seed(0)
    cfg = compose_config(["model=xnor", "model.binarization.first_last_binary=true", f"net={net}"])
    model = build_net(cfg).train()
    last = binary_layers(model)[-1]
    seen = []
    last.register_forward_hook(lambda m, inputs, out: seen.append(last.input_quantizer(inputs[0])))
    size = 28 if net == "lenet5" else 64
    logits = model(torch.randn(4, cfg.net.in_channels, size, size))
    assert (seen[0] < 0).any() and (seen[0] > 0).any()
    assert not torch.allclose(logits[0], logits[1])


def test_variants_differ_only_in_model_config():
    shapes = {
        v: [p.shape for p in build_net(compose_config([f"model={v}"])).parameters()]
        for v in ("fp", "bwn", "xnor")
    }
    assert shapes["fp"] == shapes["bwn"] == shapes["xnor"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"weights": True, "weight_grad": "approx"}, "weight_grad"),
        ({"inputs": True}, "needs weights"),
        ({"weights": True, "scale_activations": True}, "needs inputs"),
    ],
)
def test_bad_binarization_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Binarization(**kwargs)


def test_bad_model_config_names_the_problem():
    with pytest.raises(XnornetError, match=r"model\.binarization\.weight_grad must be one of"):
        build_net(compose_config(["model=xnor", "model.binarization.weight_grad=bogus"]))


@pytest.mark.parametrize("net,convs,linears", [("alexnet", 4, 2), ("resnet18", 16, 0)])
def test_the_papers_networks_binarize_hidden_layers_only(net, convs, linears):
    """AlexNet: 4 binary convs and 2 binary fc; ResNet-18: the 16 3×3 convs of its 8 blocks. The
    first conv, the classifier and ResNet's 1×1 downsampling shortcuts stay full precision."""
    model = build_net(compose_config(["model=xnor", f"net={net}"]))
    layers = binary_layers(model)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in layers) == convs
    assert sum(isinstance(m, torch.nn.Linear) for m in layers) == linears
    assert all(m.input_quantizer is not None for m in layers)
    if net == "resnet18":
        shortcuts = [m for name, m in model.named_modules() if name.endswith("shortcut.0")]
        assert len(shortcuts) == 3 and all(not m.is_binary and m.kernel_size == (1, 1) for m in shortcuts)
