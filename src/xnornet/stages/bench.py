"""DVC stage `bench`: the XNOR-popcount kernel vs torch float32 and the peers (torch int8, OpenVINO
fp32, int8 and binary) at real layer shapes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from xnornet.benchmark.peers import peer_ratio_keys
from xnornet.benchmark.suite import mlflow_metrics, print_table, run_bench
from xnornet.errors import XnornetError
from xnornet.files import write_csv, write_metrics
from xnornet.reporting.charts import peer_speedup_chart, speedup_chart, thread_scaling_chart
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main("bench", "paths.metrics_dir", "paths.plots_dir", "logger",
            writes=("paths.metrics_dir", "paths.plots_dir"))  # fmt: skip
def main(cfg: DictConfig) -> None:
    if not isinstance(cfg.bench.shapes, ListConfig) or not cfg.bench.shapes:
        raise XnornetError(f"bench.shapes={cfg.bench.shapes}: expected a non-empty list of layer shapes")
    rows, summary = run_bench(OmegaConf.to_container(cfg.bench))
    metrics_path = Path(cfg.paths.metrics_dir) / "bench.json"
    plots = Path(cfg.paths.plots_dir)
    csv_path, png_path, threads_png = plots / "bench.csv", plots / "bench.png", plots / "bench_threads.png"
    peers_png = plots / "bench_peers.png"
    cpu = summary["machine"]["cpu"]
    with stage_run(cfg, "bench", "bench") as run:  # before the outputs
        write_csv(rows, csv_path)
        speedup_chart(rows, png_path, f"Binary layer vs torch float32 (steady) — {cpu}")
        thread_scaling_chart(rows, threads_png, f"Binary layer vs torch float32 by thread count — {cpu}")
        peer_speedup_chart(rows, peers_png, f"Binary layer vs each peer — {cpu}", lambda r: r["shape"],
                           {"torch fp32": "speedup_vs_conv", **peer_ratio_keys()})  # fmt: skip
        write_metrics(metrics_path, summary)
        pngs = [png_path, threads_png, peers_png]
        run.record(mlflow_metrics(rows, summary), None, [metrics_path, csv_path, *pngs])
    print_table(rows, summary["popcount_limit_gops_per_core"])


if __name__ == "__main__":
    main()
