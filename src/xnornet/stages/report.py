"""DVC stage `report`: reports/results.md and reports/train_curves.png from the metrics files."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from xnornet.files import atomic_path
from xnornet.reporting.charts import curves_png
from xnornet.reporting.dashboard import flat_headline, log_figures, measured_tags
from xnornet.reporting.tables import (
    VARIANTS,
    ablation_table,
    accuracy_table,
    bench_table,
    lenet_peers_table,
    lever_table,
    machine_line,
    network_table,
    packed_table,
    paper_table,
    peer_layer_table,
    peer_network_table,
    seed_table,
)
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main(
    "paths.metrics_dir", "paths.plots_dir", "paths.reports_dir", "logger", writes=("paths.reports_dir",)
)
def main(cfg: DictConfig) -> None:
    metrics, plots = Path(cfg.paths.metrics_dir), Path(cfg.paths.plots_dir)
    out = Path(cfg.paths.reports_dir) / "results.md"
    figs = Path(os.path.relpath(plots, out.parent)).as_posix()  # the plots, as the report links them
    text = ["# xnornet results", "", "Measured by `dvc repro` on this repository's machine; the anchors are the",
            "published numbers (docs/method.md, reference results).", "", machine_line(metrics), "",
            "## Accuracy: LeNet-5 on MNIST", "",
            *accuracy_table(metrics), "", "![validation curves](train_curves.png)", "",
            "### Over seeds", "", *seed_table(metrics), "",
            "### What the default recipe's label smoothing buys", "", *lever_table(metrics), "",
            "### The anchors' 60-epoch recipe", "", *paper_table(metrics), "",
            "### Ablations: what each idea from the notes buys", "", *ablation_table(metrics), "",
            "## Packed models run by the XNOR-popcount engine (batch 256)", "", *packed_table(metrics), "",
            "### Accuracy, speed and size against what an x86 user deploys (LeNet-5, MNIST)", "",
            *lenet_peers_table(metrics), "",
            "## Binary layer vs torch float32 conv", "", *bench_table(metrics), "",
            f"![bench]({figs}/bench.png)", "", f"![bench by threads]({figs}/bench_threads.png)", "",
            "### The same layers against the x86 peers (1 thread)", "", *peer_layer_table(metrics), "",
            f"![bench peers]({figs}/bench_peers.png)", "",
            "## The paper's networks, whole: XNOR on the engine vs torch float32", "", *network_table(metrics), "",
            f"![bench_network]({figs}/bench_network.png)", "",
            "### The same networks against the x86 peers", "", *peer_network_table(metrics), "",
            f"![bench_network peers]({figs}/bench_network_peers.png)", ""]  # fmt: skip
    curves = out.with_name("train_curves.png")
    figures = flat_headline(metrics)  # for mlflow ui (reporting.dashboard); a missing file fails here
    with stage_run(cfg, "report", "report", **measured_tags(metrics)) as run:  # before the outputs
        curves_png(plots, curves, VARIANTS)
        with atomic_path(out) as tmp:
            tmp.write_text("\n".join(text))
        run.record({}, None, [out, curves])
        log_figures(run, figures, metrics, plots)
    print("\n".join(text))


if __name__ == "__main__":
    main()
