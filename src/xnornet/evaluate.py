"""DVC stage `evaluate@<variant>`: run the packed model on the kernel; compare with PyTorch.

python -m xnornet.evaluate model=xnor [packed=any/file.packed]
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from xnornet.benchmarking import resolve_thread_counts
from xnornet.cli import stage_main
from xnornet.engine import load_engine
from xnornet.errors import XnornetError
from xnornet.evaluation import (
    agreement,
    batched,
    markdown_table,
    memory_table,
    nin_speed,
    time_engine_vs_torch,
    torch_logits,
)
from xnornet.files import atomic_path
from xnornet.pack import input_shape, load_trained_net
from xnornet.packing import pack_network
from xnornet.tracking import record, run_tags, start_run
from xnornet.training import build_datamodule


def write_memory_reports(rows: list[dict], stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    with atomic_path(paths[0]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown_table(rows))
    return paths


def check_architecture(net, architecture: list[dict], shape, path: Path, variant: str) -> None:
    """The packed file must be the inference form of the model this config trains."""
    if pack_network(net, shape).architecture != architecture:
        raise XnornetError(f"{path}: its architecture is not the {variant} model of this config")


@stage_main
def main(cfg: DictConfig) -> None:
    variant, e = cfg.model.name, cfg.evaluate
    (threads,) = resolve_thread_counts([e.threads])
    packed_path = Path(cfg.packed)
    engine = load_engine(packed_path, threads)
    net = load_trained_net(cfg, Path(cfg.paths.models_dir) / f"{variant}.ckpt")
    check_architecture(net, engine.model.architecture, input_shape(cfg), packed_path, variant)

    dm = build_datamodule(cfg)
    dm.setup()
    x = np.ascontiguousarray(dm.test_set.x.numpy())  # (N, C, H, W) normalized float32
    labels = dm.test_set.y.numpy()
    ours = batched(engine, x, e.batch_size)
    theirs = batched(lambda b: torch_logits(net, b), x, e.batch_size)
    metrics = {"variant": variant, **agreement(ours, theirs, labels, e.tie_tolerance)}

    rows = memory_table(engine.model)
    total = rows[-1]
    binary_bits = sum(v.nbytes for k, v in engine.model.tensors.items() if k.endswith("weight_bits"))
    float_bytes = sum(4 * t.numel() for t in net.state_dict().values() if t.is_floating_point())
    metrics.update({
        "packed_bytes": packed_path.stat().st_size,
        "float_bytes": float_bytes,
        "compression": round(float_bytes / packed_path.stat().st_size, 2),
        "binary_weight_compression": round(4 * total["params_1bit"] / binary_bits, 2),
        "batch_size": e.batch_size, "threads": threads,
    })  # fmt: skip
    batch = x[: e.batch_size]
    metrics.update(time_engine_vs_torch(engine, net, batch, threads, e.warmup, e.repeats))
    if e.nin.enabled:
        metrics.update(nin_speed(threads, e.nin.batch_size, e.warmup, e.nin.repeats))

    reports = write_memory_reports(rows, Path("reports") / f"memory_{variant}")
    client, run_id = start_run(cfg, f"evaluate-{variant}", run_tags(f"evaluate@{variant}", variant=variant))
    record(client, run_id, metrics, Path(cfg.paths.metrics_dir) / f"packed_{variant}.json", reports)
    client.set_terminated(run_id)
    print(markdown_table(rows))
    print(", ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
