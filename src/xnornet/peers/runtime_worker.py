"""``python -m xnornet.peers.runtime_worker JOB.json RESULT.json``: one LeNet-5 runtime, alone.

OpenVINO's thread pool (TBB) and the OpenMP pools of torch and the kernel starve each other in one
process at more than one thread, so each runtime of the accuracy–speed–size table (lenet_table)
runs in a process of its own while the stage waits idle. Two tasks:

- ``prepare``: the files the peers deploy, from the trained float network and the packed models:
  OpenVINO fp32 (``openvino.convert_model``), OpenVINO int8 (NNCF post-training quantization on
  training images) and the OpenVINO export of the packed BWN and XNOR networks;
- ``run``: one runtime at one thread count: top-1 on the test images, then ms per batch (median
  of ``repeats`` back-to-back calls after ``warmup``).

The result is ``{"result": ...}`` or ``{"error": one line}``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xnornet.errors import XnornetError

Predict = Callable[[np.ndarray], np.ndarray]


def openvino_ir(folder: Path, name: str) -> Path:
    return folder / f"{name}.xml"


def prepare(job: dict) -> dict:
    """Write the OpenVINO IRs into the job folder; their paths by runtime."""
    import nncf
    import openvino as ov
    import torch

    from xnornet.peers.openvino_export import export_openvino

    folder = Path(job["folder"])
    net = torch.load(folder / "fp_net.pt", weights_only=False).eval()
    shape = [1, *job["input_shape"]]
    with torch.no_grad():
        fp32 = ov.convert_model(net, example_input=torch.zeros(shape), input=[shape])
    ov.save_model(fp32, str(openvino_ir(folder, "openvino_fp32")), compress_to_fp16=False)
    calibration = np.load(folder / "calibration.npy")
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    int8 = nncf.quantize(fp32, dataset, subset_size=len(calibration))
    ov.save_model(int8, str(openvino_ir(folder, "openvino_int8")), compress_to_fp16=False)
    files = {"openvino_fp32": str(openvino_ir(folder, "openvino_fp32")),
             "openvino_int8": str(openvino_ir(folder, "openvino_int8"))}  # fmt: skip
    for variant, packed in job["packed"].items():
        files[f"openvino_{variant}"] = str(
            export_openvino(packed, openvino_ir(folder, f"openvino_{variant}"))
        )
    return files


def torch_predict(job: dict, threads: int) -> tuple[Predict, Predict]:
    """The trained float network in torch; timed both NCHW and channels-last, the faster kept."""
    import torch

    torch.set_num_threads(threads)
    net = torch.load(Path(job["folder"]) / "fp_net.pt", weights_only=False).eval()
    channels_last = torch.load(Path(job["folder"]) / "fp_net.pt", weights_only=False).eval()
    channels_last = channels_last.to(memory_format=torch.channels_last)

    def nchw(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    def cl(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return channels_last(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    return nchw, cl


def openvino_predict(path: str, threads: int, batch: int) -> Predict:
    """A compiled IR at a static batch; a shorter last batch is padded with zeros and cut back."""
    import openvino as ov

    from xnornet.peers.openvino_binary import compile_for_latency

    compiled = compile_for_latency(ov.Core().read_model(path), threads, batch=batch)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n < batch:
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), np.float32)])
        return request.infer([x])[0][:n].copy()

    return run


def engine_predict(path: str, threads: int) -> Predict:
    import torch

    from xnornet.packed.engine import load_engine

    torch.set_num_threads(threads)  # the engine's full-precision layers run on torch
    return load_engine(path, threads)


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(job: dict) -> dict:
    """One runtime at one thread count: test top-1 over every test image, ms per batch."""
    folder, runtime = Path(job["folder"]), job["runtime"]
    threads, batch = int(job["threads"]), int(job["batch"])
    data = np.load(folder / "test.npz")
    x, y = data["x"], data["y"]
    layout = None
    if runtime == "torch_fp32":
        candidates = dict(zip(("nchw", "channels_last"), torch_predict(job, threads), strict=True))
        ms = {
            k: median_ms(lambda f=f: f(x[:batch]), job["warmup"], job["repeats"])
            for k, f in candidates.items()
        }
        layout = min(ms, key=ms.get)
        predict = candidates[layout]
    elif runtime.startswith("openvino_"):
        predict = openvino_predict(job["file"], threads, batch)
    else:
        predict = engine_predict(job["file"], threads)
    logits = np.concatenate([predict(x[i : i + batch]) for i in range(0, len(x), batch)])
    chunk = x[:batch]
    ms_per_batch = median_ms(lambda: predict(chunk), job["warmup"], job["repeats"])
    result = {
        "test_acc": round(float(np.mean(logits.argmax(1) == y)), 6),
        "ms_per_batch": round(ms_per_batch, 3),
    }
    if layout is not None:
        result["torch_layout"] = layout
    np.save(folder / f"logits_{runtime}_t{threads}.npy", logits)
    return result


def main(argv: list[str] | None = None) -> int:
    job_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    job = json.loads(Path(job_path).read_text())
    try:
        out = {"result": prepare(job) if job["task"] == "prepare" else run(job)}
    except (XnornetError, ValueError, KeyError, RuntimeError, OSError) as e:
        out = {"error": str(e) if isinstance(e, XnornetError) else f"{type(e).__name__}: {e}"}
    Path(result_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
