"""Whole networks on the packed engine against torch float32, timed side by side."""

from __future__ import annotations

import numpy as np
import torch

from xnornet.benchmark.timing import time_interleaved
from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantMixin
from xnornet.nn.models import NIN
from xnornet.packed.engine import PackedEngine
from xnornet.packed.inference_form import pack_network


def time_engine_vs_torch(
    engine: PackedEngine, net: torch.nn.Module, x: np.ndarray, threads: int, warmup: int, repeats: int
) -> dict:
    """Median ms per batch of both, measured interleaved with the same thread count."""
    xt = torch.from_numpy(x)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            sec = time_interleaved({"engine": lambda: engine(x), "torch": lambda: net(xt)}, warmup, repeats,
                                   lambda: None)  # fmt: skip
            profile = engine.profile(x)
    finally:
        torch.set_num_threads(saved)
    return {
        "engine_ms_per_batch": round(1e3 * sec["engine"], 3),
        "torch_ms_per_batch": round(1e3 * sec["torch"], 3),
        "speedup": round(sec["torch"] / sec["engine"], 2),
        "first_layer_share": round(first_layer_share(engine, profile), 3),
    }


def first_layer_share(engine: PackedEngine, profile: dict[str, float]) -> float:
    """Fraction of one forward pass spent before the second weight layer: the full-precision first
    layer with what is fused into it or follows it (BN, ReLU, pool), the bound on any speedup."""
    weight_steps = [k for k, s in enumerate(engine.steps) if "conv" in s.name or "linear" in s.name]
    second = weight_steps[1] if len(weight_steps) > 1 else len(engine.steps)
    return sum(v for k, v in enumerate(profile.values()) if k < second) / sum(profile.values())


def calibrate_batchnorm(net: torch.nn.Module, input_shape: tuple[int, ...], batches: int, batch_size: int,
                        seed: int) -> torch.nn.Module:  # fmt: skip
    """Give a randomly initialised network the BatchNorm statistics of real use: a few forward passes
    in train mode on random inputs (with BN's default statistics every sign would sit at 0)."""
    net.train()
    with torch.no_grad():
        for batch in calibration_inputs(input_shape, batches, batch_size, seed):
            net(torch.from_numpy(batch))
    return net.eval()


def calibration_inputs(input_shape: tuple[int, ...], batches: int, batch_size: int, seed: int) -> np.ndarray:
    """The calibration batches (batches, batch_size, *input_shape): standard normal from ``seed``;
    also what the OpenVINO int8 peer is calibrated on."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(batch_size, *input_shape, generator=gen) for _ in range(batches)]).numpy()


def counted_speedup(net: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """XNOR-Net's operation count for the whole network: every multiply-accumulate of the float
    network, against the float layers' MACs plus, for each binary-input layer, its MACs / 64 (64
    binary ops per instruction) and one scaling multiply per output, as in the paper's
    S = 64·c·N_W / (c·N_W + 64)."""
    float_macs, binary_macs, binary_outputs = 0, 0, 0

    def count(layer: torch.nn.Module, inputs, output) -> None:
        nonlocal float_macs, binary_macs, binary_outputs
        per_output = layer.weight[0].numel()  # c·kh·kw or in_features
        macs = output[0].numel() * per_output  # one image
        if layer.input_quantizer is not None:
            binary_macs, binary_outputs = binary_macs + macs, binary_outputs + output[0].numel()
        else:
            float_macs += macs

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, QuantMixin)]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    total = float_macs + binary_macs
    counted = total / (float_macs + binary_macs / 64 + binary_outputs)
    return {
        "macs": total,
        "binary_macs_share": round(binary_macs / total, 4),
        "counted_speedup": round(counted, 2),
    }


def random_nin(seed: int = 0) -> torch.nn.Module:
    """A NIN-shaped XNOR network with random weights and BN statistics (for speed only)."""
    torch.manual_seed(seed)
    net = NIN(Binarization(weights=True, inputs=True))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def nin_speed(threads: int, batch: int, warmup: int, repeats: int) -> dict:
    net = random_nin()
    engine = PackedEngine(pack_network(net, (3, 32, 32)), threads)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        same = bool(np.array_equal(engine(x).argmax(1), net(torch.from_numpy(x)).numpy().argmax(1)))
    timing = time_engine_vs_torch(engine, net, x, threads, warmup, repeats)
    return {f"nin_{k}": v for k, v in {**timing, "batch_size": batch, "same_predictions": same}.items()}
