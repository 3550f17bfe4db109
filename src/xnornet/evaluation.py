"""Packed engine vs the trained PyTorch model: predictions, memory, and speed side by side."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xnornet.benchmarking import time_interleaved
from xnornet.engine import PackedEngine
from xnornet.models import NIN, Binarization
from xnornet.packing import PackedModel, pack_network, weight_shape


def batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def agreement(engine: np.ndarray, reference: np.ndarray, labels: np.ndarray, tol: float) -> dict:
    """Accuracy of both, and where their predicted classes differ, whether it is an exact tie
    (the top two logits of either within ``tol``), the only difference allowed."""
    pe, pr = engine.argmax(1), reference.argmax(1)
    differ = np.flatnonzero(pe != pr)

    def gap(logits: np.ndarray) -> np.ndarray:
        top2 = np.sort(logits[differ], axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    ties = int(np.sum((gap(engine) <= tol) | (gap(reference) <= tol))) if len(differ) else 0
    return {
        "test_acc": round(float(np.mean(pe == labels)), 6),
        "torch_test_acc": round(float(np.mean(pr == labels)), 6),
        "agreement": round(float(np.mean(pe == pr)), 6),
        "disagreements": len(differ),
        "tie_disagreements": ties,
        "max_abs_logit_diff": float(np.abs(engine - reference).max()),
        # BN → sign as a float32 threshold rounds differently from torch's BN arithmetic: an input
        # within ~1e-7 of the threshold can flip one bit, moving that image's logits by 2α·|w|
        "images_logit_diff_over_1e-3": int(np.sum(np.abs(engine - reference).max(axis=1) > 1e-3)),
    }


def memory_table(model: PackedModel) -> list[dict]:
    """Per inference layer: 1-bit and 32-bit parameter counts and bytes, packed vs all float32."""
    rows = []
    for i, spec in enumerate(model.architecture):
        fields = {k.split(".", 1)[1]: v for k, v in model.tensors.items() if k.split(".", 1)[0] == str(i)}
        if not fields:
            continue
        bits = fields.pop("weight_bits", None)
        n_binary = int(np.prod(weight_shape(spec))) if bits is not None else 0
        n_float = int(sum(v.size for v in fields.values()))
        packed = (bits.nbytes if bits is not None else 0) + 4 * n_float
        rows.append({
            "layer": i, "op": spec["op"] + (" (binary)" if bits is not None else ""),
            "params_1bit": n_binary, "params_32bit": n_float, "packed_bytes": packed,
            "float32_bytes": 4 * (n_binary + n_float),
        })  # fmt: skip
    total = {
        k: sum(r[k] for r in rows) for k in ("params_1bit", "params_32bit", "packed_bytes", "float32_bytes")
    }
    rows.append({"layer": "total", "op": "", **total})
    return rows


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
