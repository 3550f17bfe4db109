"""DVC stage `bench_network`: XNOR AlexNet and ResNet-18 on the engine vs torch float32 and the
OpenVINO peers (fp32, int8, binary), whole."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from xnornet.benchmark.network_suite import mlflow_metrics, print_rows, run_bench_network
from xnornet.benchmark.peers import peer_ratio_keys
from xnornet.files import write_csv, write_metrics
from xnornet.reporting.charts import network_speedup_chart, peer_speedup_chart
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main("bench_network", "paths.metrics_dir", "paths.plots_dir", "logger",
            writes=("paths.metrics_dir", "paths.plots_dir"))  # fmt: skip
def main(cfg: DictConfig) -> None:
    rows, summary = run_bench_network(cfg.bench_network)
    metrics_path = Path(cfg.paths.metrics_dir) / "bench_network.json"
    plots = Path(cfg.paths.plots_dir)
    csv_path, png_path = plots / "bench_network.csv", plots / "bench_network.png"
    peers_png = plots / "bench_network_peers.png"
    cpu = summary["machine"]["cpu"]
    with stage_run(cfg, "bench_network", "bench_network") as run:  # before the outputs
        write_csv(rows, csv_path)
        network_speedup_chart(
            rows, png_path, f"XNOR networks on the engine vs torch float32 — {summary['machine']['cpu']}"
        )
        ratios = {"torch fp32": "speedup", **peer_ratio_keys()}
        peer_speedup_chart(rows, peers_png, f"XNOR networks on the engine vs each peer — {cpu}",
                           lambda r: f"{r['network']} b{r['batch']}", ratios)  # fmt: skip
        write_metrics(metrics_path, summary)
        run.record(mlflow_metrics(summary), None, [metrics_path, csv_path, png_path, peers_png])
    print_rows(rows, summary)


if __name__ == "__main__":
    main()
