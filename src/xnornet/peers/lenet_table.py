"""LeNet-5's accuracy–speed–size table: this project's engine against what an x86 user deploys.

Rows, all on the same test images: torch fp32 (the trained float network), OpenVINO fp32 (its
``convert_model``), OpenVINO int8 (NNCF post-training quantization calibrated on training
images), OpenVINO running the exported BWN and XNOR networks, and the engine running the packed
BWN and XNOR files. Columns: test top-1, ms per batch (median of back-to-back calls at one batch
size and thread count), and the bytes of the file each runtime loads.

Protocol: every runtime is timed in a process of its own (runtime_worker) while this one waits,
so no thread pool competes with another; the peers run as a user would configure them: OpenVINO
with the LATENCY hint, float32 precision and our thread count, torch in its faster memory layout.
Without the peers extra the OpenVINO rows are left out and the reason is returned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from xnornet.errors import XnornetError
from xnornet.peers import unavailable_reason

OPENVINO_RUNTIMES = ("openvino_fp32", "openvino_int8", "openvino_bwn", "openvino_xnor")
RUNTIMES = ("torch_fp32", *OPENVINO_RUNTIMES, "engine_bwn", "engine_xnor")
PEER_PACKAGES = ("openvino", "nncf")


def in_own_process(job: dict, folder: Path, timeout: float = 1800.0) -> dict:
    """Run one job of runtime_worker in a fresh Python process; its result, or one-line error."""
    job_path, result_path = folder / "job.json", folder / "result.json"
    job_path.write_text(json.dumps(job))
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "xnornet.peers.runtime_worker", str(job_path), str(result_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not result_path.is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise XnornetError(f"peers_lenet: the {job.get('runtime', job['task'])} worker died ({tail})")
    out = json.loads(result_path.read_text())
    if "error" in out:
        raise XnornetError(f"peers_lenet: {job.get('runtime', job['task'])}: {out['error']}")
    return out["result"]


def file_bytes(path: Path) -> int:
    """A file's bytes; an OpenVINO IR's .xml and .bin together."""
    path = Path(path)
    extra = path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0
    return path.stat().st_size + extra


def lenet_table(
    fp_net: torch.nn.Module,
    packed: dict[str, Path],
    test: tuple[np.ndarray, np.ndarray],
    calibration: np.ndarray,
    thread_counts: list[int],
    batch: int,
    warmup: int,
    repeats: int,
) -> tuple[list[dict], dict[str, str]]:
    """Rows (runtime × thread count) of test_acc, ms_per_batch, file bytes and the memory layout it
    ran in (torch: the faster of NCHW and channels-last); and the runtimes skipped, with why.
    ``packed``: variant (bwn, xnor) → packed file."""
    x, y = test
    skipped: dict[str, str] = {}
    reason = unavailable_reason(PEER_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="xnornet-peers-") as tmp:
        folder = Path(tmp)
        torch.save(fp_net, folder / "fp_net.pt")  # the whole module, for the workers
        torch.save(fp_net.state_dict(), folder / "fp_state.pt")  # what a torch user ships
        np.savez(folder / "test.npz", x=np.ascontiguousarray(x, np.float32), y=y)
        np.save(folder / "calibration.npy", np.ascontiguousarray(calibration, np.float32))
        files = {"torch_fp32": folder / "fp_state.pt", **{f"engine_{v}": Path(p) for v, p in packed.items()}}
        base = {"folder": str(folder), "input_shape": list(x.shape[1:]),
                "packed": {v: str(p) for v, p in packed.items()}}  # fmt: skip
        if reason is None:
            made = in_own_process({**base, "task": "prepare"}, folder)
            files.update({k: Path(v) for k, v in made.items()})
        else:
            skipped.update({r: reason for r in OPENVINO_RUNTIMES})
        rows = []
        for runtime in (r for r in RUNTIMES if r in files):
            size = file_bytes(files[runtime])
            for threads in thread_counts:
                job = {**base, "task": "run", "runtime": runtime, "file": str(files[runtime]),
                       "threads": threads, "batch": batch, "warmup": warmup, "repeats": repeats}  # fmt: skip
                result = in_own_process(job, folder)
                layout = result.get("torch_layout", "nhwc" if runtime.startswith("engine") else "nchw")
                rows.append({"runtime": runtime, "threads": threads, "batch": batch, "layout": layout,
                             "test_acc": result["test_acc"], "ms_per_batch": result["ms_per_batch"],
                             "file_bytes": size, "file_mb": round(size / 1e6, 4)})  # fmt: skip
    return rows, skipped


def summary_metrics(rows: list[dict]) -> dict[str, float]:
    """Flat ``runtime/key`` numbers (MLflow metric names, and the report's lookups)."""
    flat: dict[str, float] = {}
    for r in rows:
        name = r["runtime"]
        flat[f"{name}/test_acc"] = r["test_acc"]
        flat[f"{name}/file_mb"] = r["file_mb"]
        flat[f"{name}/ms_per_batch_t{r['threads']}"] = r["ms_per_batch"]
    return flat


def markdown(rows: list[dict]) -> str:
    """The table as the report would show it, one row per runtime, a ms column per thread count."""
    threads = sorted({r["threads"] for r in rows})
    batch = rows[0]["batch"] if rows else 0
    head = ["runtime", "test top-1", *[f"ms/batch of {batch}, {t} thr" for t in threads], "file MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["runtime"] for r in rows):
        mine = {r["threads"]: r for r in rows if r["runtime"] == name}
        first = next(iter(mine.values()))
        ms = [f"{mine[t]['ms_per_batch']:.2f}" if t in mine else "–" for t in threads]
        lines.append(
            f"| {name} | {100 * first['test_acc']:.2f}% | " + " | ".join(ms) + f" | {first['file_mb']:.3f} |"
        )
    return "\n".join(lines)
