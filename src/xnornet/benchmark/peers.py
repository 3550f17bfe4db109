"""The stage's side of the peer protocol: each peer library timed in a worker process of its own
(benchmark.peer_worker) while this process waits, and the peers' times turned into ratios of ours.

Without OpenVINO the OpenVINO rows are left out and one line says so; torch int8 needs nothing extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from xnornet.errors import XnornetError

TORCH_PEERS = ("torch_int8",)
OPENVINO_PEERS = ("openvino_fp32", "openvino_int8", "openvino_binary")
LAYER_PEERS = (*TORCH_PEERS, *OPENVINO_PEERS)
NETWORK_PEERS = OPENVINO_PEERS

PROTOCOL = (
    "Each runtime timed apart: xnornet and torch float32 in the stage's own process (their OpenMP "
    "pools left to park between calls), each peer library (torch int8; OpenVINO fp32, int8 and "
    "binary) in a worker process of its own while the stage's process waits idle, since OpenVINO's "
    "TBB pool and the OpenMP pools starve each other when they share a process; in the layer bench "
    "the peers of each shape run right after ours, so each ratio is of the same minutes. Every peer model is "
    "checked before it is timed: OpenVINO's binary convolution exactly against the numpy reference "
    "(layers) or the engine's outputs (networks, relative L2 <= 1e-3), fp32 within relative L2 1e-3 "
    "and int8 within 5e-2 of the float reference, int8 also confirmed to run int8 kernels. Peers at "
    "their best settings: the same thread count as ours, OpenVINO with PERFORMANCE_HINT=LATENCY, "
    "INFERENCE_NUM_THREADS equal to ours and float32 inference precision (its bf16 default would "
    "turn an fp32 row into bf16), the faster of NCHW and NHWC input; torch int8 on the x86 "
    "quantized engine with per-channel weights, channels-last, quantized input to quantized "
    "output. speedup_vs_<peer> = peer time / xnornet time (above 1: ours is faster)."
)


def library_of(runtime: str) -> str:
    return "torch" if runtime in TORCH_PEERS else "openvino"


def run_worker(job: dict, timeout: float = 1800.0) -> dict:
    """Run one job in a fresh ``python -m xnornet.benchmark.peer_worker`` and return its result."""
    with tempfile.TemporaryDirectory(prefix="xnornet-peer-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "xnornet.benchmark.peer_worker", str(job_path), str(result_path)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise XnornetError(f"peer worker ({job['library']}) took over {timeout:.0f} s") from e
        if not result_path.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise XnornetError(f"peer worker ({job['library']}) exited {done.returncode}: {tail[0]}")
        result = json.loads(result_path.read_text())
    if "error" in result:
        raise XnornetError(f"{job['library']} peer: {result['error']}")
    return result


def run_peers(job: dict, runtimes: tuple[str, ...], what: str) -> tuple[list[dict], dict[str, str]]:
    """Every requested peer runtime, one worker per library; (result rows, status per runtime).

    A library that is not installed gives one printed line and a ``skipped: …`` status."""
    rows: list[dict] = []
    status: dict[str, str] = {}
    for library in dict.fromkeys(library_of(r) for r in runtimes):
        mine = [r for r in runtimes if library_of(r) == library]
        if job["task"] == "network" and library == "openvino" and "openvino_int8" in mine:
            packages = "openvino+nncf"
        else:
            packages = library
        result = run_worker({**job, "library": packages, "runtimes": mine})
        if "skipped" in result:
            print(f"{what}: the {', '.join(mine)} rows are skipped: {result['skipped']}")
            status.update({r: f"skipped: {result['skipped']}" for r in mine})
            continue
        rows += result["results"]
        status.update(dict.fromkeys(mine, "timed"))
        for runtime, reason in result.get("skipped_runtimes", {}).items():
            print(f"{what}: the {runtime} rows are skipped: {reason}")
            status[runtime] = f"skipped: {reason}"
    return rows, status


def requested(wanted, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The config's peer list, checked: ``all`` or a list of known runtime names."""
    if wanted in (None, "all"):
        return known
    unknown = [r for r in wanted if r not in known]
    if unknown:
        raise ValueError(f"{what}.peers: {unknown} unknown (known: {list(known)})")
    return tuple(wanted)


def with_peers(row: dict, peer_ms: dict[str, float], ours: str) -> dict:
    """``row`` plus each peer's time (``<peer>_ms`` / ``<peer>_ms_per_image``) and
    ``speedup_vs_<peer>`` = the peer's time over ours (``row[ours]``)."""
    suffix = ours.removeprefix(ours.split("_ms")[0])  # "_ms" or "_ms_per_image", as ours is
    out = dict(row)
    for peer, ms in peer_ms.items():
        out[f"{peer}{suffix}"] = ms
        out[f"speedup_vs_{peer}"] = round(ms / row[ours], 2)
    return out


def peer_columns(row: dict) -> dict:
    """The peer times and ratios ``with_peers`` added to a row."""
    return {k: v for k, v in row.items()
            if any(k == f"speedup_vs_{p}" or k.startswith(f"{p}_ms") for p in LAYER_PEERS)}  # fmt: skip


def peer_ratio_keys() -> dict[str, str]:
    """Legend name → the ours-vs-peer column, for charts."""
    return {p.replace("_", " "): f"speedup_vs_{p}" for p in LAYER_PEERS}
