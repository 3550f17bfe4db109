"""DVC stage `bench`: the XNOR-popcount kernel vs torch float32 at real layer shapes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from xnornet.benchmark.suite import mlflow_metrics, print_table, run_bench
from xnornet.files import write_csv, write_metrics
from xnornet.reporting.charts import speedup_chart
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main("bench", "paths.metrics_dir", "paths.plots_dir", "logger")
def main(cfg: DictConfig) -> None:
    rows, summary = run_bench(cfg.bench)
    metrics_path = Path(cfg.paths.metrics_dir) / "bench.json"
    csv_path, png_path = Path(cfg.paths.plots_dir) / "bench.csv", Path(cfg.paths.plots_dir) / "bench.png"
    write_csv(rows, csv_path)
    speedup_chart(rows, png_path, f"Binary layer vs torch float32 — {summary['machine']['cpu']}")
    write_metrics(metrics_path, summary)
    with stage_run(cfg, "bench", "bench") as run:
        run.record(mlflow_metrics(rows, summary), None, [metrics_path, csv_path, png_path])
    print_table(rows, summary["popcount_limit_gops_per_core"])


if __name__ == "__main__":
    main()
