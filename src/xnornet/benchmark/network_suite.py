"""The bench_network stage's run: the paper's networks with random weights and calibrated
BatchNorm, packed and run on the engine, against torch float32 running the same topology in full
precision, per batch size, thread count and ISA path; with their size and their agreement with the
XNOR model in torch."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from xnornet.benchmark.layer import resolve_isas
from xnornet.benchmark.network import (
    calibrate_batchnorm,
    calibration_inputs,
    counted_speedup,
    first_layer_share,
)
from xnornet.benchmark.peer_networks import save_network_job
from xnornet.benchmark.peers import NETWORK_PEERS, PROTOCOL, requested, run_peers, with_peers
from xnornet.benchmark.timing import time_interleaved, with_isa, with_threads
from xnornet.errors import XnornetError
from xnornet.kernels import available_isas
from xnornet.machine import machine_info, package_version, resolve_thread_counts
from xnornet.nn.binarization import Binarization
from xnornet.packed.agreement import agreement, batched, torch_logits
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import save_packed
from xnornet.packed.inference_form import pack_network
from xnornet.packed.int8_calibration import FLOAT_LAYERS, quantize_float_layers
from xnornet.packed.int8_reference import has_int8_layers, int8_layers_in_torch
from xnornet.packed.memory import float_state_bytes, memory_table

XNOR = Binarization(weights=True, inputs=True)
FLOAT = Binarization()


def build(net_cfg: DictConfig, binarization: Binarization) -> torch.nn.Module:
    try:
        return instantiate(net_cfg, _partial_=True)(binarization=binarization)
    except Exception as e:  # Hydra wraps config errors in several exception types
        raise XnornetError(f"bench_network.networks: cannot build {net_cfg.get('_target_')} ({e})") from e


def size_and_agreement(net: torch.nn.Module, model, x: np.ndarray, threads: int) -> dict:
    """File bytes against the float32 state, 1-bit weights' own ratio, and the engine's predictions
    against the XNOR network's in torch on ``x``.

    The reference is the torch model evaluated in float64, which is exact to the engine's float32
    tolerance; torch's own float32 run is reported beside it, since its summation rounding can flip
    a sign deep in the network (the engine's popcount dots are exact integers). Where the packed
    file has int8 layers, both run them through torch's quantized modules (int8_reference), and
    the agreement with the all-float model is reported too: its gap is the int8 rounding.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.packed"
        save_packed(model, path)
        file_bytes = path.stat().st_size
    table = memory_table(model)
    bit_bytes = sum(v.nbytes for k, v in model.tensors.items() if k.endswith("weight_bits"))
    engine = PackedEngine(model, threads)
    ours = batched(engine, x, 16)
    net64 = copy.deepcopy(net).double()
    with int8_layers_in_torch(net64, model) as same_layers:  # torch's int8 modules where the file has int8
        exact = batched(lambda b: torch_logits(same_layers, b.astype(np.float64)), x, 16)
    with int8_layers_in_torch(net, model) as same_layers:
        single = batched(lambda b: torch_logits(same_layers, b), x, 16)
    float64 = (  # the all-float model: the same as ``exact`` when no layer is int8
        batched(lambda b: torch_logits(net64, b.astype(np.float64)), x, 16)
        if has_int8_layers(model)
        else exact
    )
    same = agreement(ours, exact, exact.argmax(1), tol=1e-5)
    versus_float32 = agreement(ours, single, single.argmax(1), tol=1e-5)
    return {
        "float_layers": model.info.get("float_layers", "fp32"),
        "packed_bytes": file_bytes,
        "float_bytes": float_state_bytes(net),
        "compression": round(float_state_bytes(net) / file_bytes, 2),
        "binary_weight_compression": round(4 * table[-1]["params_1bit"] / bit_bytes, 2),
        "agreement_inputs": len(x),
        **{k: v for k, v in same.items() if k not in ("test_acc", "torch_test_acc")},
        "float32_torch_agreement": versus_float32["agreement"],
        "float32_torch_max_abs_logit_diff": versus_float32["max_abs_logit_diff"],
        "float_model_agreement": agreement(ours, float64, float64.argmax(1), tol=1e-5)["agreement"],
    }


def time_network(xnor_model, fp_net: torch.nn.Module, x: np.ndarray, isas: list[str], threads: int,
                 warmup: int, repeats: int, fp32_layers_model=None) -> list[dict]:  # fmt: skip
    """One row per ISA: engine and torch float32 ms per image at this batch and thread count.

    torch runs the float network both as it comes (NCHW) and channels-last, and the faster of
    the two is the baseline, as the layer bench takes the faster of its convolutions. The engine
    also runs without cross-layer fusion (``fuse_layers=False``) on the first path, in the same
    rounds: ``fusion_speedup`` is what emitting the next layer's bits buys. With
    ``fp32_layers_model`` (the same network, its full-precision layers in float32), that one runs
    in the same rounds too: ``int8_layers_speedup`` is what the int8 layers buy.
    """
    engine = PackedEngine(xnor_model, threads)
    unfused = PackedEngine(xnor_model, threads, fuse_layers=False)
    fp_cl = copy.deepcopy(fp_net).to(memory_format=torch.channels_last)
    xt, xt_cl = torch.from_numpy(x), torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    fns = {"torch_nchw": with_threads(lambda: fp_net(xt), threads),
           "torch_cl": with_threads(lambda: fp_cl(xt_cl), threads)}  # fmt: skip
    for isa in isas:
        fns[isa] = with_isa(with_threads(lambda: engine(x), threads), isa)
    fns["unfused"] = with_isa(with_threads(lambda: unfused(x), threads), isas[0])
    if fp32_layers_model is not None:
        fp32_layers = PackedEngine(fp32_layers_model, threads)
        fns["fp32_layers"] = with_isa(with_threads(lambda: fp32_layers(x), threads), isas[0])
    with torch.no_grad():
        sec = time_interleaved(fns, warmup, repeats, lambda: None)
        profile = with_isa(with_threads(lambda: engine.profile(x), threads), isas[0])()
    batch, torch_sec = len(x), min(sec["torch_nchw"], sec["torch_cl"])
    return [{
        "isa": isa, "batch": batch, "threads": threads,
        "engine_ms_per_image": round(1e3 * sec[isa] / batch, 3),
        "torch_ms_per_image": round(1e3 * torch_sec / batch, 3),
        "torch_nchw_ms_per_image": round(1e3 * sec["torch_nchw"] / batch, 3),
        "torch_channels_last_ms_per_image": round(1e3 * sec["torch_cl"] / batch, 3),
        "speedup": round(torch_sec / sec[isa], 2),
        "fusion_speedup": round(sec["unfused"] / sec[isa], 3) if isa == isas[0] else None,
        "fp32_layers_ms_per_image": round(1e3 * sec["fp32_layers"] / batch, 3)
        if isa == isas[0] and "fp32_layers" in sec else None,
        "int8_layers_speedup": round(sec["fp32_layers"] / sec[isa], 3)
        if isa == isas[0] and "fp32_layers" in sec else None,
        "first_layer_share": round(first_layer_share(engine, profile), 3) if isa == isas[0] else None,
    } for isa in isas]  # fmt: skip


def run_bench_network(b: DictConfig) -> tuple[list[dict], dict]:
    try:
        isas = resolve_isas(b.isas, available_isas())
        thread_counts = resolve_thread_counts(b.threads)
        batches = sorted({int(n) for n in b.batches})
        if batches[0] < 1 or b.agreement_inputs < 1:
            raise ValueError("batches and agreement_inputs must be positive")
        peers = requested(b.get("peers", "all"), NETWORK_PEERS, "bench_network")
        if b.get("float_layers", "int8") not in FLOAT_LAYERS:
            raise ValueError(f"float_layers must be one of {FLOAT_LAYERS}, got {b.float_layers!r}")
    except (TypeError, ValueError) as e:
        raise XnornetError(f"bench_network config: {e}") from e
    rng = np.random.default_rng(b.seed)
    x = rng.standard_normal((max(b.agreement_inputs, *batches), *b.input_shape), dtype=np.float32)
    rows, networks = [], {}
    saved = torch.get_num_threads()
    steps = len(b.networks) * len(batches) * len(thread_counts)
    with tempfile.TemporaryDirectory(prefix="xnornet-bench-network-") as tmp:
        peer_jobs = []
        with tqdm(total=steps, desc="bench_network", unit="config") as bar:
            for name, net_cfg in b.networks.items():
                folder = Path(tmp) / name if peers else None  # what the peers' worker will need
                found, networks[name] = bench_one(
                    name, net_cfg, b, x, isas, thread_counts, batches, bar, folder
                )
                rows += found
                peer_jobs += [{"name": name, "dir": str(folder)}] if folder else []
        torch.set_num_threads(saved)
        # the peers after ours, in a process of their own (benchmark.peers)
        job = {"task": "network", "networks": peer_jobs, "batches": batches, "threads": thread_counts,
               "warmup": int(b.warmup), "repeats": int(b.repeats)}  # fmt: skip
        peer_rows, peer_status = run_peers(job, peers, "bench_network") if peers else ([], {})
    rows = merge_peers(rows, networks, peer_rows, (batches[-1], thread_counts[0]))
    machine = {**machine_info(), "best_isa": isas[0], "openvino": package_version("openvino"),
               "nncf": package_version("nncf")}  # fmt: skip
    summary = {"machine": machine, "protocol": PROTOCOL, "peers": {"status": peer_status}}
    return rows, {**summary, "networks": networks}


def bench_one(name: str, net_cfg: DictConfig, b: DictConfig, x: np.ndarray, isas: list[str],
              thread_counts: list[int], batches: list[int], bar: tqdm,
              folder: Path | None) -> tuple[list, dict]:  # fmt: skip
    """One network: built, calibrated and packed; its size and agreement, and its timing rows; with
    ``folder``, also what the peers' worker needs (peer_networks.save_network_job)."""
    shape = tuple(b.input_shape)
    torch.manual_seed(b.seed)
    xnor = calibrate_batchnorm(build(net_cfg, XNOR), shape, b.calibration.batches,
                               b.calibration.batch_size, b.seed)  # fmt: skip
    fp_net = calibrate_batchnorm(build(net_cfg, FLOAT), shape, 1, b.calibration.batch_size, b.seed)
    model = pack_network(xnor, shape, variant="xnor", network=net_cfg._target_)
    calibration = calibration_inputs(shape, b.calibration.batches, b.calibration.batch_size, b.seed)
    fp32_layers = None
    if b.get("float_layers", "int8") == "int8":  # calibrated as the int8 peer is
        model, fp32_layers = quantize_float_layers(model, calibration), model
    torch.set_num_threads(thread_counts[-1])
    summary = {**size_and_agreement(xnor, model, x[: b.agreement_inputs], thread_counts[-1]),
               **counted_speedup(xnor, shape), "by_path": {}}  # fmt: skip
    rows = []
    for batch in batches:
        for t in thread_counts:
            bar.set_postfix_str(f"{name} batch {batch}, {t} thr")
            timed = time_network(model, fp_net, x[:batch], isas, t, b.warmup, b.repeats, fp32_layers)
            rows += [{"network": name, **row} for row in timed]
            bar.update()
    if folder is not None:  # the int8 peer calibrates on the batches BatchNorm saw
        folder.mkdir()
        # OpenVINO's binary peer runs the export of the packed network with float32 layers: with
        # int8 ones its FakeQuantize rounding differs from torch's requantization, and the binary
        # layers after them amplify it past the 1e-3 check (ResNet-18: relative L2 0.06)
        exported = fp32_layers if fp32_layers is not None else model
        save_network_job(folder, fp_net, exported, calibration, x[: batches[-1]], thread_counts[-1])
    return rows, summary


def merge_peers(rows: list[dict], networks: dict, peer_rows: list[dict],
                headline: tuple[int, int]) -> list[dict]:  # fmt: skip
    """Each row with the peers' ms per image and ours-vs-peer ratios at its network, batch and thread
    count; the rows also filed under their network's ``by_path``, and each peer's check (at the
    ``headline`` batch and thread count) under its ``peer_checks``."""
    peer_ms: dict[tuple, dict[str, float]] = {}
    for p in peer_rows:
        peer_ms.setdefault((p["network"], p["batch"], p["threads"]), {})[p["runtime"]] = p["ms_per_image"]
        if (p["batch"], p["threads"]) == headline:
            check = {k: v for k, v in p.items() if k not in ("network", "runtime", "batch", "threads")}
            networks[p["network"]].setdefault("peer_checks", {})[p["runtime"]] = {
                k: v for k, v in check.items() if "ms" not in k
            }
    merged = []
    for r in rows:
        row = with_peers(r, peer_ms.get((r["network"], r["batch"], r["threads"]), {}), "engine_ms_per_image")
        networks[r["network"]]["by_path"][f"{r['isa']}_b{r['batch']}_t{r['threads']}"] = {
            k: v for k, v in row.items() if v is not None and k != "network"
        }
        merged.append(row)
    return merged


def mlflow_metrics(summary: dict) -> dict[str, float]:
    """Every network's numbers as flat MLflow metric names: network/key and network/path/key."""
    flat = {}
    for name, s in summary["networks"].items():
        flat.update({f"{name}/{k}": v for k, v in s.items() if isinstance(v, int | float)})
        for path, row in s["by_path"].items():
            flat.update(
                {f"{name}/{path}/{k}": v for k, v in row.items() if k.endswith(("ms_per_image", "speedup"))}
            )
    return flat


def print_rows(rows: list[dict], summary: dict) -> None:
    for name, s in summary["networks"].items():
        print(f"{name}: {s['packed_bytes']:,} bytes packed vs {s['float_bytes']:,} float32 "
              f"({s['compression']}× smaller), agreement {s['agreement']} on {s['agreement_inputs']} inputs, "
              f"counted speedup {s['counted_speedup']}×")  # fmt: skip
    head = f"{'network':<10}{'isa':<18}{'batch':>6}{'thr':>4}"
    print(head + f"{'engine ms/img':>15}{'torch ms/img':>14}{'speedup':>9}")
    for r in rows:
        print(f"{r['network']:<10}{r['isa']:<18}{r['batch']:>6}{r['threads']:>4}{r['engine_ms_per_image']:>15.2f}"
              f"{r['torch_ms_per_image']:>14.2f}{r['speedup']:>8.2f}×")  # fmt: skip
