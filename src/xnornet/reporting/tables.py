"""The results tables of reports/results.md, built from the metrics files with the published
anchors beside what this pipeline measured."""

from __future__ import annotations

import json
from pathlib import Path

from xnornet.errors import XnornetError

VARIANTS = ("fp", "bwn", "xnor")
# MNIST LeNet-5 top-1 (%), XNOR-Net-PyTorch (jiecaoyu), 60 epochs (README.md, reference results).
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
