"""Whole networks on the packed engine against torch float32, timed side by side."""

from __future__ import annotations

import numpy as np
import torch

from xnornet.benchmark.timing import time_interleaved
from xnornet.nn.binarization import Binarization
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
    weight_steps = [k for k, s in enumerate(engine.steps) if "conv" in s.name or "linear" in s.name]
    second = weight_steps[1] if len(weight_steps) > 1 else len(engine.steps)
    before = sum(v for k, v in enumerate(profile.values()) if k < second)  # the first layer's steps
    return {
        "engine_ms_per_batch": round(1e3 * sec["engine"], 3),
        "torch_ms_per_batch": round(1e3 * sec["torch"], 3),
        "speedup": round(sec["torch"] / sec["engine"], 2),
        "first_layer_share": round(before / sum(profile.values()), 3),
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
