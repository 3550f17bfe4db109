"""DVC stage `report`: reports/results.md and reports/train_curves.png from the metrics files,
with the published anchors beside what this pipeline measured."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import DictConfig

from xnornet.cli import stage_main
from xnornet.errors import XnornetError
from xnornet.files import atomic_path

VARIANTS = ("fp", "bwn", "xnor")
# MNIST LeNet-5 top-1 (%), XNOR-Net-PyTorch (jiecaoyu), 60 epochs; see ANCHORS.md.
ANCHOR_MNIST = {"fp": "99.34", "bwn": "–", "xnor": "99.23"}


def paper_speedup(k: int) -> float:
    """XNOR-Net's counted speedup S = 64·c·N_W / (c·N_W + 64), with K = c·N_W the reduction length
    (operations counted, not time: 62.3× for c = 256, 3×3)."""
    return 64 * k / (k + 64)


def load(path: Path) -> dict:
    if not path.is_file():
        raise XnornetError(f"{path}: missing; run the stage that writes it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise XnornetError(f"{path}: not valid JSON ({e})") from e


def accuracy_table(metrics: Path) -> list[str]:
    lines = ["| variant | test top-1 (%) | epochs | s/epoch | binary params | anchor (60 epochs) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for v in VARIANTS:
        m = load(metrics / f"train_{v}.json")
        lines.append(f"| {v} | {100 * m['test_acc']:.2f} | {m['epochs']} | {m['seconds_per_epoch']} "
                     f"| {m['params_binary']:,} / {m['params_total']:,} | {ANCHOR_MNIST[v]} |")  # fmt: skip
    return lines


def packed_table(metrics: Path) -> list[str]:
    lines = ["| variant | packed acc (%) | agreement | file bytes | float32 bytes | smaller | "
             "engine ms | torch ms | speedup | NIN speedup | NIN first-layer share |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in ("bwn", "xnor"):
        m = load(metrics / f"packed_{v}.json")
        lines.append(
            f"| {v} | {100 * m['test_acc']:.2f} | {m['agreement']} | {m['packed_bytes']:,} | {m['float_bytes']:,} "
            f"| {m['compression']}× | {m['engine_ms_per_batch']} | {m['torch_ms_per_batch']} | {m['speedup']}× "
            f"| {m.get('nin_speedup', '–')}× | {m.get('nin_first_layer_share', '–')} |"
        )
    return lines


def bench_table(metrics: Path) -> list[str]:
    b = load(metrics / "bench.json")
    limits = ", ".join(f"{k} {v} Gop/s" for k, v in b["popcount_limit_gops_per_core"].items())
    lines = [f"Machine: {b['machine']['cpu']}, {b['machine']['cores']} cores; per-core popcount limit: {limits}.",
             "", "| shape | M×N×K | torch ms | binary ms | speedup | % of limit | paper's counted S |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in b["shapes"].items():
        s = paper_speedup(r["K"])
        lines.append(f"| {name} | {r['M']}×{r['N']}×{r['K']} | {r['torch_conv_ms']} | {r['binary_layer_ms']} "
                     f"| {r['speedup_vs_conv']}× | {r['pct_of_limit']}% | {s:.1f}× |")  # fmt: skip
    lines.append(
        f"\n(best ISA `{b['machine']['best_isa']}`, 1 thread; all paths and thread counts: plots/bench.csv)"
    )
    return lines


def curves_png(plots: Path, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in VARIANTS:
        with open(plots / f"train_{v}.csv") as f:
            rows = list(csv.DictReader(f))
        ax.plot(
            [int(r["epoch"]) for r in rows], [100 * float(r["val_acc"]) for r in rows], marker="o", label=v
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("LeNet-5 on MNIST")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


@stage_main
def main(cfg: DictConfig) -> None:
    metrics, plots = Path(cfg.paths.metrics_dir), Path(cfg.paths.plots_dir)
    text = ["# xnornet results", "", "Measured by `dvc repro` on this repository's machine; the anchors are the",
            "published numbers (../shared/ANCHORS.md).", "", "## Accuracy: LeNet-5 on MNIST", "",
            *accuracy_table(metrics), "", "![validation curves](train_curves.png)", "",
            "## Packed models run by the XNOR-popcount engine (batch 256)", "", *packed_table(metrics), "",
            "## Binary layer vs torch float32 conv", "", *bench_table(metrics), "",
            "![bench](../plots/bench.png)", ""]  # fmt: skip
    out = Path("reports") / "results.md"
    curves_png(plots, out.with_name("train_curves.png"))
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
