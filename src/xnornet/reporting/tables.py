"""The results tables of reports/results.md, built from the metrics files with the published
anchors beside what this pipeline measured."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from xnornet.errors import XnornetError

VARIANTS = ("fp", "bwn", "xnor")
# MNIST LeNet-5 top-1 (%), XNOR-Net-PyTorch (jiecaoyu), 60 epochs (docs/method.md, reference results).
ANCHOR_MNIST = {"fp": "99.34", "bwn": "–", "xnor": "99.23"}
# Every public binary LeNet-5 result on MNIST the report sets beside ours (docs/method.md).
PUBLIC_MNIST = {
    "XNOR-Net-PyTorch, 60 ep": ANCHOR_MNIST,
    "RedBit, 100 ep": {"fp": "99.59", "bwn": "99.63", "xnor": "99.37"},
    "Pytorch-XNOR-Net Bin_LeNet": {"fp": "99.50", "bwn": "–", "xnor": "99.45"},
}
# This project's goals (%), above every public row: the default recipe's 3-seed mean (its training
# within 10 minutes on 2 cores), and the 60-epoch paper recipe.
GOAL_DEFAULT = {"fp": 99.55, "bwn": 99.55, "xnor": 99.45}
GOAL_PAPER = {"fp": 99.60, "bwn": 99.63, "xnor": 99.50}
# How the public rows and ours differ in what they report (docs/method.md, reference results).
PROTOCOL = (
    "Every public row is the best of the test accuracies measured after each epoch, an epoch chosen "
    "on the test images; ours is the last epoch's"
)


def _public_header() -> tuple[str, str]:
    return " | ".join(PUBLIC_MNIST), "|".join("---" for _ in PUBLIC_MNIST)


def _public_cells(variant: str) -> str:
    return " | ".join(row[variant] for row in PUBLIC_MNIST.values())


def _goal(value: float, goal: float | None) -> str:
    if goal is None:
        return "–"
    return f"≥ {goal:.2f} {'met' if round(value, 2) >= goal else 'missed'}"


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
    lines = ["| variant | full-precision layers | packed acc (%) | trained model acc (%) | agreement | "
             "agreement with the trained model | file bytes | float32 bytes | smaller | "
             "engine ms | torch ms | speedup | NIN speedup | NIN first-layer share |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in ("bwn", "xnor"):
        m = load(metrics / f"packed_{v}.json")
        float_acc, float_agree = (
            m.get("float_model_test_acc", m["torch_test_acc"]),
            m.get("float_model_agreement", "–"),
        )
        lines.append(
            f"| {v} | {m.get('float_layers', 'fp32')} | {100 * m['test_acc']:.2f} | {100 * float_acc:.2f} "
            f"| {m['agreement']} | {float_agree} | {m['packed_bytes']:,} | {m['float_bytes']:,} "
            f"| {m['compression']}× | {m['engine_ms_per_batch']} | {m['torch_ms_per_batch']} | {m['speedup']}× "
            f"| {m.get('nin_speedup', '–')}× | {m.get('nin_first_layer_share', '–')} |"
        )
    lines.append(
        "\n(Agreement: the engine's predictions against the torch model that runs the same layers, "
        "torch's own quantized modules for int8 ones (`pack.float_layers`); against the trained float "
        "model, the gap is the int8 layers' rounding. Torch ms: the trained float model, float32.)"
    )
    return lines


def bench_table(metrics: Path) -> list[str]:
    b = load(metrics / "bench.json")
    limits = ", ".join(f"{k} {v} Gop/s" for k, v in b["popcount_limit_gops_per_core"].items())
    lines = [f"Per-core popcount limit, best of the run: {limits}; each shape's % of the limit is against the limit timed in its own rounds (limit column). Steady: k calls back to back, as in a network; cold: one call after a pause.",
             "", "| shape | M×N×K | torch ms | binary ms | speedup (steady) | speedup (cold) | limit Gop/s | layer % of limit | GEMM % of limit | layer / parts | paper's counted S |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in b["shapes"].items():
        s = paper_speedup(r["K"])
        lines.append(f"| {name} | {r['M']}×{r['N']}×{r['K']} | {r['torch_conv_ms']} | {r['binary_layer_ms']} "
                     f"| {r['speedup_vs_conv']}× | {r.get('speedup_cold', '–')}× | {r.get('limit_gops_per_core', '–')} "
                     f"| {r.get('layer_pct_of_limit', '–')}% | {r['pct_of_limit']}% | {r.get('layer_over_parts', '–')} | {s:.1f}× |")  # fmt: skip
    lines.append(
        f"\n(best ISA `{b['machine']['best_isa']}`, 1 thread; all paths and thread counts: plots/bench.csv. "
        "Layer / parts: the whole layer's time over its sign-pack, explicit im2col and GEMM timed one by "
        "one; a conv layer runs its im2col implicitly, so below 1 is what that saves)"
    )
    for old, f in b.get("former_kernels", {}).items():
        ratios = ", ".join(f"{name} {r}×" for name, r in f["gemm_speedup_1_thread"].items())
        lines.append(
            f"\n`{f['replaced_by']}` GEMM against the former `{old}` kernel, same run, 1 thread: {ratios}."
        )
    return lines


# ImageNet top-1 (%) of the paper (Rastegari et al., 2016), for the networks bench_network runs.
ANCHOR_IMAGENET = {"alexnet": "FP 56.6, BWN 56.8, XNOR 44.2", "resnet18": "FP 69.3, BWN 60.8, XNOR 51.2"}


def machine_line(metrics: Path) -> str:
    m = load(metrics / "machine.json")
    return (f"Machine: {m['cpu']} (family {m.get('cpu_family', '?')}, model {m.get('cpu_model', '?')}), "
            f"{m['cores']} cores, kernel path `{m['kernel_isa']}`, torch {m['torch']}, numpy {m['numpy']}.")  # fmt: skip


def network_table(metrics: Path) -> list[str]:
    """Size and agreement per network, then the speed of every measured batch and thread count on
    the best ISA path (all paths: plots/bench_network.csv)."""
    b = load(metrics / "bench_network.json")
    isa = b["machine"]["best_isa"]
    lines = ["| network | full-precision layers | packed bytes | float32 bytes | smaller | agreement (inputs) | max logit diff | agreement with torch float32 | agreement with the all-float model | counted speedup | paper's ImageNet top-1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, n in b["networks"].items():
        lines.append(f"| {name} | {n.get('float_layers', 'fp32')} | {n['packed_bytes']:,} | {n['float_bytes']:,} | {n['compression']}× "
                     f"| {n['agreement']} ({n['agreement_inputs']}) | {n['max_abs_logit_diff']:.3g} "
                     f"| {n['float32_torch_agreement']} | {n.get('float_model_agreement', '–')} "
                     f"| {n['counted_speedup']}× | {ANCHOR_IMAGENET.get(name, '–')} |")  # fmt: skip
    lines += ["", "| network | batch | threads | engine ms/image | torch float32 ms/image | speedup | first-layer share | fusion speedup | engine ms/image, fp32 layers | int8 layers speedup |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, n in b["networks"].items():
        for r in n["by_path"].values():
            if r["isa"] == isa:
                fusion = f"{r['fusion_speedup']}×" if "fusion_speedup" in r else "–"
                int8 = f"{r['int8_layers_speedup']}×" if "int8_layers_speedup" in r else "–"
                lines.append(f"| {name} | {r['batch']} | {r['threads']} | {r['engine_ms_per_image']} "
                             f"| {r['torch_ms_per_image']} | {r['speedup']}× | {r.get('first_layer_share', '–')} | {fusion} "
                             f"| {r.get('fp32_layers_ms_per_image', '–')} | {int8} |")  # fmt: skip
    lines.append(f"\n(ISA `{isa}`; random weights with calibrated BatchNorm. Fusion speedup: the same engine "
                 "without cross-layer fusion, timed in the same rounds, over the fused one; int8 layers speedup: the "
                 "same engine with its full-precision layers in float32, same rounds. Agreement: predictions of the "
                 "engine against the torch XNOR model evaluated in float64, with torch's quantized modules for the int8 "
                 "layers; torch's float32 run can flip a sign through its own rounding, the engine's binary dots are "
                 "exact. Against the all-float model the gap is the int8 rounding, large here because random weights leave the logits nearly tied; its accuracy cost is measured on MNIST, in the packed table above. Published for comparison: Larq Compute "
                 "Engine QuickNet 25.5 ms on a Pixel 1 and 5.8 ms on an Apple M1, daBNN Bi-Real-18 61.8 ms on a Pixel 1, "
                 "one thread, per image.)")  # fmt: skip
    return lines


def _pct(row: dict, metric: str = "test_acc") -> str:
    if row["n"] < 2:  # one run has no spread to show
        return f"{100 * row[f'{metric}_mean']:.2f} (one run)"
    return f"{100 * row[f'{metric}_mean']:.2f} ± {100 * row[f'{metric}_std']:.2f}"


def _per_seed(row: dict) -> str:
    return ", ".join(f"{100 * v:.2f}" for v in row["test_acc_values"])


def _sweep_rows(path: Path) -> list[dict] | None:
    """The rows of a sweep summary, or None when that sweep has not been run here."""
    return load(path)["rows"] if path.is_file() else None


def seed_table(metrics: Path) -> list[str]:
    """Mean ± std of each variant over the seed sweep (conf/experiment/seeds.yaml)."""
    rows = _sweep_rows(metrics / "sweeps" / "seeds.json")
    if rows is None:
        return ["Not run yet: `xnornet train -m +experiment=seeds` writes metrics/sweeps/seeds.json."]
    by_variant = {r["group"].removeprefix("model="): r for r in rows}
    names, rule = _public_header()
    lines = [f"| variant | runs (seeds) | test top-1 mean ± std (%) | per seed | goal (mean) | {names} |",
             f"|---|---|---|---|---|{rule}|"]  # fmt: skip
    for v in VARIANTS:
        if v in by_variant:
            r = by_variant[v]
            goal = _goal(100 * r["test_acc_mean"], GOAL_DEFAULT[v])
            lines.append(f"| {v} | {r['n']} ({', '.join(map(str, r['seeds']))}) | {_pct(r)} | {_per_seed(r)} "
                         f"| {goal} | {_public_cells(v)} |")  # fmt: skip
    lines.append(
        f"\n(std: sample standard deviation over seeds; `xnornet train -m +experiment=seeds`. {PROTOCOL})"
    )
    return lines


# What each ablation switch (conf/ablation/<name>.yaml) changes, for the report's rows.
ABLATIONS = {
    "scaling": "K/β activation scaling on",
    "first_last_binary": "first and last layers binary",
    "paper_gradient": "the paper's simplified weight gradient",
    "binary_gradients": "binary gradients (max|g|·sign g per sample)",
    "shift_bn": "shift-based BatchNorm",
    "shift_adamax": "shift-based AdaMax instead of Adam",
    "center_weights": "weights centred over input channels and clamped (the reference codes)",
}


# The seed sweep of the recipe before label smoothing (train.label_smoothing=0): the recipe the
# ablations ran on (conf/experiment/ablation.yaml pins it), and the "before" of the lever table.
BEFORE_SMOOTHING = "seeds_without_label_smoothing.json"


def _variant_row(rows: list[dict], variant: str) -> dict | None:
    return next((r for r in rows if r["group"] == f"model={variant}"), None)


def _ablation_baseline(metrics: Path) -> tuple[dict | None, str]:
    before = _sweep_rows(metrics / "sweeps" / BEFORE_SMOOTHING)
    if before is not None:
        return _variant_row(before, "xnor"), "without label smoothing"
    return _variant_row(_sweep_rows(metrics / "sweeps" / "seeds.json") or [], "xnor"), "the seed sweep's xnor"


def ablation_table(metrics: Path) -> list[str]:
    """One switch at a time on the XNOR recipe the ablations ran on, against its seed sweep."""
    rows = _sweep_rows(metrics / "sweeps" / "ablation.json")
    if rows is None:
        return ["Not run yet: `xnornet train -m +experiment=ablation` writes metrics/sweeps/ablation.json."]
    baseline, which = _ablation_baseline(metrics)
    lines = [f"| XNOR LeNet-5, default recipe ({which}) | runs | test top-1 mean ± std (%) "
             "| Δ vs baseline (pp) | per seed |",
             "|---|---|---|---|---|"]  # fmt: skip
    if baseline:
        lines.append(f"| baseline | {baseline['n']} | {_pct(baseline)} | – | {_per_seed(baseline)} |")
    for r in rows:
        name = r["group"].removeprefix("ablation=")
        delta = f"{100 * (r['test_acc_mean'] - baseline['test_acc_mean']):+.2f}" if baseline else "–"
        lines.append(f"| {ABLATIONS.get(name, name)} | {r['n']} | {_pct(r)} | {delta} | {_per_seed(r)} |")
    ran = {r["group"].removeprefix("ablation=") for r in rows}
    lines += [f"| {what} | 0 | not run yet | – | – |" for name, what in ABLATIONS.items() if name not in ran]
    lines.append(
        "\n(each row changes one switch, conf/ablation/<name>.yaml; `xnornet train -m +experiment=ablation`)"
    )
    return lines


def lever_table(metrics: Path) -> list[str]:
    """What the default recipe's label smoothing (conf/train/default.yaml) bought: the seed sweep
    before it against the seed sweep now, per variant."""
    before = _sweep_rows(metrics / "sweeps" / BEFORE_SMOOTHING)
    after = _sweep_rows(metrics / "sweeps" / "seeds.json")
    if before is None or after is None:
        return [f"Not run yet: needs metrics/sweeps/{BEFORE_SMOOTHING} and metrics/sweeps/seeds.json."]
    lines = ["| variant | without label smoothing | label smoothing 0.1 (the default) | Δ (pp) |",
             "|---|---|---|---|"]  # fmt: skip
    for v in VARIANTS:
        b, a = _variant_row(before, v), _variant_row(after, v)
        if a and b:
            delta = 100 * (a["test_acc_mean"] - b["test_acc_mean"])
            lines.append(f"| {v} | {_pct(b)} | {_pct(a)} | {delta:+.2f} |")
    lines.append("\n(3 seeds each, the default recipe otherwise; `xnornet train -m +experiment=seeds`)")
    return lines


# The anchors' 60-epoch recipe over seeds: seed 0 is the frozen DVC stage paper@<variant>, the
# other seeds one sweep (the command in conf/experiment/paper.yaml) that writes this summary.
PAPER_SEEDS = "paper_seeds.json"


def _paper_row(metrics: Path, variant: str) -> dict | None:
    """The paper recipe's runs of one variant as a sweep row: the stage's seed 0 and the sweep's
    seeds, mean and sample std over all of them; None when neither has run."""
    runs: dict[int, float] = {}
    stage = metrics / "paper" / f"train_{variant}.json"
    if stage.is_file():
        runs[0] = load(stage)["test_acc"]
    sweep = _variant_row(_sweep_rows(metrics / "sweeps" / PAPER_SEEDS) or [], variant)
    for seed, acc in zip(sweep["seeds"], sweep["test_acc_values"], strict=True) if sweep else ():
        if seed in runs:
            raise XnornetError(
                f"metrics/sweeps/{PAPER_SEEDS}: seed {seed} of {variant} is the DVC stage's run too; "
                "sweep the other seeds only"
            )
        runs[seed] = acc
    if not runs:
        return None
    seeds = sorted(runs)
    values = [runs[s] for s in seeds]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"n": len(values), "seeds": seeds, "test_acc_values": values,
            "test_acc_mean": statistics.fmean(values), "test_acc_std": std}  # fmt: skip


def paper_table(metrics: Path) -> list[str]:
    """The anchors' own 60-epoch recipe (conf/experiment/paper.yaml) over seeds, beside them."""
    names, rule = _public_header()
    lines = [f"| variant | runs (seeds) | test top-1 mean ± std (%) | per seed | goal (mean) | {names} |",
             f"|---|---|---|---|---|{rule}|"]  # fmt: skip
    for v in VARIANTS:
        r = _paper_row(metrics, v)
        if r is None:
            lines.append(f"| {v} | 0 | not run yet | – | – | {_public_cells(v)} |")
            continue
        goal = _goal(100 * r["test_acc_mean"], GOAL_PAPER[v]) + (" (one seed)" if r["n"] < 2 else "")
        lines.append(f"| {v} | {r['n']} ({', '.join(map(str, r['seeds']))}) | {_pct(r)} | {_per_seed(r)} "
                     f"| {goal} | {_public_cells(v)} |")  # fmt: skip
    lines.append(
        "\n(seed 0: DVC stage paper@<variant>, frozen; the other seeds: "
        f"`xnornet train -m +experiment=paper model=fp,bwn,xnor seed=1,2 sweep_summary=metrics/sweeps/{PAPER_SEEDS}`. "
        f"{PROTOCOL})"
    )
    return lines


PEER_NAMES = {"torch_int8": "torch int8", "openvino_fp32": "OpenVINO fp32", "openvino_int8": "OpenVINO int8",
              "openvino_binary": "OpenVINO binary"}  # fmt: skip


def _peer_cells(row: dict, suffix: str) -> list[str]:
    return [f"{row[f'{p}{suffix}']} ({row[f'speedup_vs_{p}']}×)" if f"speedup_vs_{p}" in row else "–"
            for p in PEER_NAMES]  # fmt: skip


def peer_layer_table(metrics: Path) -> list[str]:
    """Each bench shape's binary layer against every peer a user could run instead, 1 thread, and
    the busy-core ratio (N threads over 1 with another process spinning on a core)."""
    b = load(metrics / "bench.json")
    lines = ["| shape | xnornet ms | torch fp32 ms (×) | " + " | ".join(f"{n} ms (×)" for n in PEER_NAMES.values())
             + " | busy core: N thr / 1 thr |", "|---" * (4 + len(PEER_NAMES)) + "|"]  # fmt: skip
    for name, r in b["shapes"].items():
        lines.append(f"| {name} | {r['binary_layer_ms']} | {r['torch_conv_ms']} ({r['speedup_vs_conv']}×) | "
                     + " | ".join(_peer_cells(r, "_ms")) + f" | {r.get('busy_core_ratio', '–')} |")  # fmt: skip
    skipped = {k: v for k, v in b.get("peers", {}).get("status", {}).items() if v != "timed"}
    lines.append("\n(×: the peer's time over ours, above 1 means xnornet is faster. "
                 + (f"Skipped: {skipped}. " if skipped else "") + b.get("protocol", "") + ")")  # fmt: skip
    return lines


def peer_network_table(metrics: Path) -> list[str]:
    """Whole networks, ms per image, on the engine against torch fp32 and the OpenVINO peers."""
    b = load(metrics / "bench_network.json")
    isa = b["machine"]["best_isa"]
    ov = [p for p in PEER_NAMES if p.startswith("openvino")]
    lines = ["| network | batch | threads | xnornet ms/image | torch fp32 (×) | "
             + " | ".join(f"{PEER_NAMES[p]} (×)" for p in ov) + " |", "|---" * (5 + len(ov)) + "|"]  # fmt: skip
    for name, n in b["networks"].items():
        for r in n["by_path"].values():
            if r["isa"] == isa:
                cells = [f"{r[f'{p}_ms_per_image']} ({r[f'speedup_vs_{p}']}×)" if f"speedup_vs_{p}" in r else "–"
                         for p in ov]  # fmt: skip
                lines.append(f"| {name} | {r['batch']} | {r['threads']} | {r['engine_ms_per_image']} "
                             f"| {r['torch_ms_per_image']} ({r['speedup']}×) | " + " | ".join(cells) + " |")  # fmt: skip
    skipped = {k: v for k, v in b.get("peers", {}).get("status", {}).items() if v != "timed"}
    lines.append("\n(OpenVINO int8: the float network quantized by NNCF's post-training quantization on the "
                 "calibration inputs; OpenVINO binary: this project's export of the same packed XNOR network, its "
                 "full-precision layers in float32 (exported with int8 ones, OpenVINO's FakeQuantize rounding "
                 "moves ResNet-18's logits by 6%, past the check). "
                 + (f"Skipped: {skipped}. " if skipped else "") + "Protocol: " + b.get("protocol", "") + ")")  # fmt: skip
    return lines


def lenet_peers_table(metrics: Path) -> list[str]:
    """LeNet-5 on the 10,000 MNIST test images: accuracy, speed and size per runtime."""
    from xnornet.peers.lenet_table import markdown  # the peers stage's own rendering of its rows

    p = load(metrics / "peers_lenet.json")
    lines = [markdown(p["rows"]), ""]
    if p.get("skipped"):
        lines.append(f"Skipped: {p['skipped']}.")
    lines.append(f"(batch {p['batch_size']}, {p['test_images']:,} test images; {p['protocol']}. "
                 "engine_*: the packed file on the XNOR-popcount engine; openvino_bwn/xnor: its OpenVINO export.)")  # fmt: skip
    return lines
