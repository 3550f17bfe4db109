"""The bench stage's run: every configured layer shape, ISA path and thread count, with the
per-core popcount limit measured beside them."""

from __future__ import annotations

import dataclasses
import os

from tqdm import tqdm

from xnornet.benchmark.busy_core import add_busy_core, busy_core_metrics
from xnornet.benchmark.layer import bench_shape, resolve_isas, with_limits
from xnornet.benchmark.peers import LAYER_PEERS, PROTOCOL, peer_columns, requested, run_peers, with_peers
from xnornet.benchmark.shapes import LayerShape
from xnornet.errors import XnornetError
from xnornet.kernels import available_isas, popcount_peak
from xnornet.kernels.isa import COMPARISON_ISAS, ENV_VAR, comparison_isas
from xnornet.machine import machine_info, package_version, resolve_thread_counts, usable_cores


def measure_limits(isas: list[str], iters: int) -> dict[str, float]:
    """Per-core binary ops/s of each path, measured now, not quoted."""
    limits = {}
    for isa in isas:
        os.environ[ENV_VAR] = isa
        limits[isa] = popcount_peak(iters)
    os.environ.pop(ENV_VAR, None)
    return limits


def run_bench(b: dict) -> tuple[list[dict], dict]:
    """The whole layer bench from conf/bench as a plain dict (no Hydra needed, see __main__)."""
    try:
        shapes = [LayerShape(**s) for s in b["shapes"]]
        isas = resolve_isas(b["isas"], available_isas())
        former = former_kernels(b.get("former") or [], isas)
        # a list written for a big host ([1, 2, 4, …, 16]) measures what this one has
        thread_counts = [t for t in resolve_thread_counts(b["threads"]) if t <= usable_cores()]
        warmup, repeats, peak_iters, seed = (int(b[k]) for k in ("warmup", "repeats", "peak_iters", "seed"))
        peers = requested(b.get("peers", "all"), LAYER_PEERS, "bench")
    except (TypeError, ValueError, KeyError) as e:
        raise XnornetError(f"bench config: {e!s}") from e
    # Each row's % of the limit uses the limit timed in its own rounds (benchmark.layer); the
    # best limit of the run, re-measured before every shape, is the machine's figure.
    limits = dict.fromkeys(isas, 0.0)
    limits.update(dict.fromkeys(former, 0.0))
    timed: list[tuple[LayerShape, dict]] = []
    peer_rows: list[dict] = []
    peer_status: dict[str, str] = {}
    with tqdm(total=len(shapes) * (warmup + 2 * repeats), desc="bench", unit="round") as bar:
        for shape in shapes:
            bar.set_postfix_str(shape.name)
            for isa, value in measure_limits([*isas, *former], peak_iters).items():
                limits[isa] = max(limits[isa], value)
            paths = isas + list(former)
            timed.append((shape, bench_shape(shape, paths, thread_counts, warmup, repeats, seed, bar.update)))
            # the peers right after ours, shape by shape, each library in a process of its own
            # (benchmark.peers): a ratio then compares one minute of this host, not the run's
            # start with its end (the host's speed moves by a quarter between minutes)
            job = {"task": "layer", "shapes": [dataclasses.asdict(shape)], "threads": thread_counts,
                   "repeats": repeats, "seed": seed}  # fmt: skip
            found, status = run_peers(job, peers, "bench") if peers else ([], {})
            peer_rows += found
            peer_status.update(status)
            peers = tuple(r for r in peers if status.get(r) == "timed")  # a skipped library is said once
    peer_ms: dict[tuple[str, int], dict[str, float]] = {}
    for p in peer_rows:
        peer_ms.setdefault((p["shape"], p["threads"]), {})[p["runtime"]] = p["ms"]
    rows = [with_peers(with_limits(r), peer_ms.get((r["shape"], r["threads"]), {}), "binary_layer_ms")
            for _, shape_rows in timed for r in shape_rows]  # fmt: skip
    summary = {
        "machine": {**machine_info(), "best_isa": isas[0], "openvino": package_version("openvino")},
        "popcount_limit_gops_per_core": {isa: round(v / 1e9, 1) for isa, v in limits.items()},
        "protocol": PROTOCOL,
        "peers": {"status": peer_status, "checks": peer_checks(peer_rows, thread_counts[0])},
        "shapes": {},
    }
    for shape in shapes:
        mine = [r for r in rows if r["shape"] == shape.name]
        headline = next(r for r in mine if r["isa"] == isas[0] and r["threads"] == thread_counts[0])
        summary["shapes"][shape.name] = {
            **{k: v for k, v in headline.items() if k != "shape"},
            "by_path": {f"{r['isa']}_t{r['threads']}": {
                k: r[k] for k in ("binary_layer_ms", "torch_conv_ms", "speedup_vs_conv", "pct_of_limit",
                                  "limit_gops_per_core",
                                  "layer_pct_of_limit", "layer_over_parts", "thread_speedup",
                                  "torch_thread_speedup", "binary_layer_cold_ms", "torch_conv_cold_ms",
                                  "speedup_cold")
            } | peer_columns(r) for r in mine},
        }  # fmt: skip
    summary["former_kernels"] = {
        old: {
            "replaced_by": new,
            "gemm_speedup_1_thread": {  # the new path's GEMM over the former one's, same shapes, same run
                shape.name: round(gemm_ms(rows, shape.name, old, thread_counts[0])
                                  / gemm_ms(rows, shape.name, new, thread_counts[0]), 2)
                for shape in shapes
            },
        }
        for old, new in former.items()
    }  # fmt: skip
    # N threads against 1 with another process on a core (issue 20): busy_core_ratio per shape
    add_busy_core(summary, shapes, b.get("busy_core"), isas[0], thread_counts[-1])
    return rows, summary


def peer_checks(peer_rows: list[dict], threads: int) -> dict[str, dict[str, dict]]:
    """How each peer passed its check, per shape (at the first thread count): the check, its error,
    the layout kept and the precision the compiled layer ran in."""
    checks: dict[str, dict[str, dict]] = {}
    for p in peer_rows:
        if p["threads"] == threads:
            kept = {k: v for k, v in p.items() if k not in ("shape", "runtime", "threads") and "ms" not in k}
            checks.setdefault(p["shape"], {})[p["runtime"]] = kept
    return checks


def former_kernels(wanted: list[str], isas: list[str]) -> dict[str, str]:
    """The former kernels to time beside the paths that replaced them (``bench.former``): each
    one that this CPU runs and whose successor is measured, mapped to that successor."""
    runnable = comparison_isas()
    unknown = [name for name in wanted if name not in COMPARISON_ISAS]
    if unknown:
        raise ValueError(f"bench.former: {unknown} is not a former kernel (known: {sorted(COMPARISON_ISAS)})")
    return {name: COMPARISON_ISAS[name][1] for name in wanted
            if name in runnable and COMPARISON_ISAS[name][1] in isas}  # fmt: skip


def gemm_ms(rows: list[dict], shape: str, isa: str, threads: int) -> float:
    return next(r["bgemm_ms"] for r in rows if (r["shape"], r["isa"], r["threads"]) == (shape, isa, threads))


def print_table(rows: list[dict], limits: dict) -> None:
    print(f"per-core popcount limit (Gop/s): {limits}")
    head = f"{'shape':<22}{'isa':<18}{'thr':>4}{'torch ms':>10}{'binary ms':>11}{'speedup':>9}{'cold':>8}"
    print(head + f"{'layer %':>9}{'gemm %':>8}{'/parts':>8}{'thr ×':>7}{'torch thr ×':>12}")
    for r in rows:
        print(f"{r['shape']:<22}{r['isa']:<18}{r['threads']:>4}{r['torch_conv_ms']:>10.3f}"
              f"{r['binary_layer_ms']:>11.3f}{r['speedup_vs_conv']:>8.1f}×{r['speedup_cold']:>7.1f}×"
              f"{r['layer_pct_of_limit']:>8.1f}%{r['pct_of_limit']:>7.1f}%{r['layer_over_parts']:>8.2f}"
              f"{r['thread_speedup']:>7.2f}"
              f"{r['torch_thread_speedup']:>12.2f}")  # fmt: skip
    print_peer_table(rows)


def print_peer_table(rows: list[dict]) -> None:
    """Ours against each peer that was timed, per shape and thread count (the best ISA path)."""
    peers = [p for p in LAYER_PEERS if f"{p}_ms" in rows[0]]
    if not peers:
        return
    best = rows[0]["isa"]
    print(f"{'shape':<24}{'thr':>4}{'xnornet ms':>11}" + "".join(f"{p + ' ms (ours ×)':>30}" for p in peers))
    for r in (r for r in rows if r["isa"] == best):
        cells = "".join(f"{r[f'{p}_ms']:>22.3f} ({r[f'speedup_vs_{p}']:>5.2f})" for p in peers)
        print(f"{r['shape']:<24}{r['threads']:>4}{r['binary_layer_ms']:>11.3f}{cells}")


def mlflow_metrics(rows: list[dict], summary: dict) -> dict[str, float]:
    """Every row's headline numbers as flat MLflow metric names: shape/isa/threads/key."""
    keys = (
        "speedup_vs_conv",
        "speedup_cold",
        "binary_layer_ms",
        "binary_layer_cold_ms",
        "torch_conv_ms",
        "gops",
        "pct_of_limit",
        "layer_pct_of_limit",
        "layer_over_parts",
    )
    flat = {f"{r['shape']}/{r['isa']}/t{r['threads']}/{k}": r[k] for r in rows for k in keys}
    flat.update({f"{r['shape']}/{r['isa']}/t{r['threads']}/{k}": v for r in rows
                 for k, v in peer_columns(r).items()})  # fmt: skip
    flat.update({f"limit_gops/{k}": v for k, v in summary["popcount_limit_gops_per_core"].items()})
    for old, f in summary.get("former_kernels", {}).items():
        flat.update({f"{shape}/{f['replaced_by']}_vs_{old}/gemm_speedup": r
                     for shape, r in f["gemm_speedup_1_thread"].items()})  # fmt: skip
    flat.update(busy_core_metrics(summary))
    return flat
