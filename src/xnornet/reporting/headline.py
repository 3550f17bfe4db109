"""The headline figures: the dozen or so numbers a DVC user compares between experiments.

`dvc metrics show` and `dvc exp show` print every key of every metrics file, so only this small
file is declared as DVC metrics; the detailed JSONs (train_*, packed_*, bench, bench_network) are
plain outputs that the report reads. Every value is copied or picked from them, never measured
here, so the headline can never disagree with reports/results.md.

Keys are grouped by what they describe (DVC flattens them to ``xnor.faster``); ratios are
"× torch float32" on the same machine (``vs_ov_*``: × the OpenVINO peer), so a bigger number is
always better.
"""

from __future__ import annotations

from pathlib import Path

from xnornet.reporting.tables import VARIANTS, load

BINARY_VARIANTS = ("bwn", "xnor")


def headline(metrics: Path) -> dict[str, dict[str, float]]:
    """The headline figures from the detailed metrics files in ``metrics``.

    Examples:
        >>> import json, tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for v in VARIANTS:
        ...     _ = (d / f"train_{v}.json").write_text(json.dumps({"test_acc": 0.99}))
        >>> for v in BINARY_VARIANTS:
        ...     _ = (d / f"packed_{v}.json").write_text(json.dumps({"compression": 20.4, "speedup": 6.5}))
        >>> shape = {"speedup_vs_conv": 18.0, "layer_pct_of_limit": 90.0}
        >>> _ = (d / "bench.json").write_text(json.dumps({"shapes": {"a": shape}}))
        >>> row = {"isa": "avx2", "batch": 16, "threads": 1, "speedup": 5.0}
        >>> net = {"compression": 11.1, "by_path": {"avx2_b16_t1": row}}
        >>> _ = (d / "bench_network.json").write_text(
        ...     json.dumps({"machine": {"best_isa": "avx2"}, "networks": {"resnet18": net}}))
        >>> headline(d)["resnet18"]
        {'faster': 5.0, 'smaller': 11.1}
    """
    out: dict[str, dict[str, float]] = {
        v: {"acc": load(metrics / f"train_{v}.json")["test_acc"]} for v in VARIANTS
    }
    for v in BINARY_VARIANTS:  # the packed LeNet-5 on the engine, batch 256
        packed = load(metrics / f"packed_{v}.json")
        out[v] |= {"smaller": packed["compression"], "faster": packed["speedup"]}
    shapes = load(metrics / "bench.json")["shapes"].values()  # one binary layer, steady, 1 thread
    speedups = [s["speedup_vs_conv"] for s in shapes]
    limits = [s["layer_pct_of_limit"] for s in shapes]
    out["layer"] = {"faster_min": min(speedups), "faster_max": max(speedups),
                    "pct_limit_min": min(limits), "pct_limit_max": max(limits)}  # fmt: skip
    vs_binary = [s["speedup_vs_openvino_binary"] for s in shapes if "speedup_vs_openvino_binary" in s]
    if vs_binary:  # the peer a binary-network user would deploy instead (absent without OpenVINO)
        out["layer"]["vs_ov_binary_min"] = min(vs_binary)
    networks = load(metrics / "bench_network.json")
    best = networks["machine"]["best_isa"]
    for name, net in networks["networks"].items():  # largest batch, 1 thread, best ISA path
        rows = [r for r in net["by_path"].values() if r["isa"] == best and r["threads"] == 1]
        top = max(rows, key=lambda r: r["batch"])
        out[name] = {"faster": top["speedup"], "smaller": net["compression"]}
        if "speedup_vs_openvino_int8" in top:  # the float network quantized to int8 in OpenVINO
            out[name]["vs_ov_int8"] = top["speedup_vs_openvino_int8"]
    return out
