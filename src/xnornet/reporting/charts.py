"""PNG charts for the results people would rather look at than read."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from xnornet.files import atomic_path


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write the figure atomically (no half-written PNG for DVC to track) and free it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def speedup_bars(
    rows: list[dict], path: Path, title: str, label: Callable[[dict], str], speedup: str
) -> None:
    """Grouped bars of ``row[speedup]`` over torch float32, a group per ``label(row)`` and a bar per
    ISA path and thread count, the legend beside the plot so that it covers no bar."""
    labels = list(dict.fromkeys(label(r) for r in rows))
    series = list(dict.fromkeys((r["isa"], r["threads"]) for r in rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(labels)) + 2, 4.5))
    for i, (isa, threads) in enumerate(series):
        values = {label(r): r[speedup] for r in rows if (r["isa"], r["threads"]) == (isa, threads)}
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [values.get(x, 0) for x in labels], width, label=f"{isa}, {threads} thr")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right")
    ax.set_ylabel("speedup vs torch float32 (×)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_png(fig, path)


def speedup_chart(rows: list[dict], path: Path, title: str) -> None:
    """The bench: the binary layer's steady speedup per layer shape."""
    speedup_bars(rows, path, title, lambda r: r["shape"], "speedup_vs_conv")


def network_speedup_chart(rows: list[dict], path: Path, title: str) -> None:
    """bench_network: the whole network's speedup per network and batch size."""
    speedup_bars(rows, path, title, lambda r: f"{r['network']} b{r['batch']}", "speedup")


def curves_png(plots: Path, out: Path, variants: tuple[str, ...]) -> None:
    """Validation accuracy per epoch, one line per variant, from plots/train_<variant>.csv."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in variants:
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
    save_png(fig, out)


def thread_scaling_chart(rows: list[dict], path: Path, title: str) -> None:
    """Speedup over torch float32 against the thread count, one line per layer shape (best ISA),
    with each side's own scaling in the second panel."""
    best = rows[0]["isa"]
    mine = [r for r in rows if r["isa"] == best]
    shapes = list(dict.fromkeys(r["shape"] for r in mine))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for shape in shapes:
        rs = sorted((r for r in mine if r["shape"] == shape), key=lambda r: r["threads"])
        threads = [r["threads"] for r in rs]
        left.plot(threads, [r["speedup_vs_conv"] for r in rs], marker="o", label=shape)
        line = right.plot(threads, [r["thread_speedup"] for r in rs], marker="o", label=f"{shape} binary")
        right.plot(threads, [r["torch_thread_speedup"] for r in rs], marker="x", linestyle="--",
                   color=line[0].get_color())  # fmt: skip
    top = max(r["threads"] for r in mine)
    right.plot([1, top], [1, top], color="black", linewidth=0.8, label="linear")
    left.set(xlabel="threads", ylabel="binary layer speedup vs torch float32 (×)", title=f"{best}, steady")
    right.set(xlabel="threads", ylabel="speedup over 1 thread (×; dashed: torch)", title="thread scaling")
    counts = sorted({r["threads"] for r in mine})
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(t) for t in counts])
        ax.minorticks_off()
    left.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def peer_speedup_chart(rows: list[dict], path: Path, title: str, label: Callable[[dict], str],
                       ratios: dict[str, str]) -> None:  # fmt: skip
    """Ours against every peer at once: a panel per thread count, a group per ``label(row)`` and a
    bar per peer (``ratios``: legend name → the row's ours-vs-peer key), best ISA path only, on a
    log scale so that 1.2× over int8 and 20× over float32 both read; above 1, ours is faster."""
    best = rows[0]["isa"]
    mine = [r for r in rows if r["isa"] == best]
    ratios = {name: key for name, key in ratios.items() if key in mine[0]}
    counts = sorted({r["threads"] for r in mine})
    labels = list(dict.fromkeys(label(r) for r in mine))
    width = 0.8 / len(ratios)
    fig, axes = plt.subplots(len(counts), 1, figsize=(max(8, 1.2 * len(labels)) + 2, 3.4 * len(counts)),
                             squeeze=False)  # fmt: skip
    for ax, threads in zip(axes[:, 0], counts, strict=True):
        for i, (name, key) in enumerate(ratios.items()):
            values = {label(r): r[key] for r in mine if r["threads"] == threads}
            xs = [j + (i - (len(ratios) - 1) / 2) * width for j in range(len(labels))]
            heights = [values.get(x, float("nan")) - 1 for x in labels]
            ax.bar(xs, heights, width, bottom=1.0, label=name)  # from the 1× line: up ours wins, down theirs
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xticks(range(len(labels)), labels if threads == counts[-1] else [], rotation=25, ha="right")
        ax.set_ylabel(f"ours faster (×), {threads} thr")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(f"{title} ({best}; peer time / xnornet time)", fontsize=10)
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_png(fig, path)
