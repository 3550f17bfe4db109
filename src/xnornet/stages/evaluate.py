"""DVC stage `evaluate@<variant>`: run the packed model on the kernel; compare with PyTorch.

Its predictions are compared with the torch model that runs the same layers (torch's quantized
modules where the packed file has int8 layers: packed.int8_reference), which must agree, and with
the trained float model, whose gap is the int8 layers' accuracy cost.

xnornet evaluate model=xnor [packed=any/file.packed]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from xnornet.benchmark.network import nin_speed, time_engine_vs_torch
from xnornet.builders import build_datamodule, input_shape, load_trained_net
from xnornet.errors import XnornetError
from xnornet.machine import resolve_thread_counts
from xnornet.packed.agreement import agreement, batched, torch_logits
from xnornet.packed.engine import load_engine
from xnornet.packed.inference_form import check_architecture
from xnornet.packed.int8_reference import has_int8_layers, int8_layers_in_torch
from xnornet.packed.memory import markdown_table, memory_metrics, memory_table, write_memory_reports
from xnornet.preflight import check_finite_state
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main(
    "model",
    "net",
    "data.image_size",
    "datamodule",
    "paths.models_dir",
    "paths.metrics_dir",
    "paths.reports_dir",
    "logger",
    "evaluate",
    "packed",
    writes=("paths.metrics_dir", "paths.reports_dir"),
)
def main(cfg: DictConfig) -> None:
    variant, e = cfg.model.name, cfg.evaluate
    try:
        (threads,) = resolve_thread_counts([e.threads])
    except (ValueError, TypeError) as err:
        raise XnornetError(f"evaluate.threads={e.threads}: expected a positive integer or 'all'") from err
    if isinstance(e.batch_size, bool) or not isinstance(e.batch_size, int) or e.batch_size < 1:
        raise XnornetError(f"evaluate.batch_size={e.batch_size}: expected a positive integer")
    packed_path = Path(cfg.packed)
    engine = load_engine(packed_path, threads)
    ckpt = Path(cfg.paths.models_dir) / f"{variant}.ckpt"
    net = load_trained_net(cfg, ckpt)
    check_finite_state(net.state_dict(), ckpt)
    check_architecture(net, engine.model.architecture, input_shape(cfg), packed_path, variant)

    # the run opens once the inputs are proved and before any output is written
    with stage_run(cfg, f"evaluate-{variant}", f"evaluate@{variant}", variant=variant) as run:
        dm = build_datamodule(cfg)
        dm.setup()
        x = np.ascontiguousarray(dm.test_set.x.numpy())  # (N, C, H, W) normalized float32
        labels = dm.test_set.y.numpy()
        ours = batched(engine, x, e.batch_size)
        theirs = batched(lambda b: torch_logits(net, b), x, e.batch_size)
        versus_float = agreement(ours, theirs, labels, e.tie_tolerance)
        if has_int8_layers(engine.model):  # else the float model runs the same layers already
            with int8_layers_in_torch(net, engine.model) as same_layers:
                theirs = batched(lambda b: torch_logits(same_layers, b), x, e.batch_size)
        metrics = {"variant": variant, "float_layers": engine.model.info.get("float_layers", "fp32"),
                   **agreement(ours, theirs, labels, e.tie_tolerance),
                   "float_model_test_acc": versus_float["torch_test_acc"],
                   "float_model_agreement": versus_float["agreement"]}  # fmt: skip
        rows = memory_table(engine.model)
        metrics.update(memory_metrics(rows, engine.model, net, packed_path))
        metrics.update({"batch_size": e.batch_size, "threads": threads})
        metrics.update(time_engine_vs_torch(engine, net, x[: e.batch_size], threads, e.warmup, e.repeats))
        if e.nin.enabled:
            metrics.update(nin_speed(threads, e.nin.batch_size, e.warmup, e.nin.repeats))
        reports = write_memory_reports(rows, Path(cfg.paths.reports_dir) / f"memory_{variant}")
        run.record(metrics, Path(cfg.paths.metrics_dir) / f"packed_{variant}.json", reports)
    print(markdown_table(rows))
    print(", ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
