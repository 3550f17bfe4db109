"""Inside the OpenVINO worker process: one whole network as OpenVINO fp32 (the float network
converted), int8 (NNCF post-training quantization of it, calibrated on the stage's calibration
inputs) and binary (the exporter's OpenVINO IR of the packed XNOR network), each checked against
its reference, then timed per batch size and thread count.

The stage saves what the worker needs in the job's folder (``save_network_job``): the float torch
network, the packed network, the calibration batches, the inputs, and the reference logits of
torch float32 and of the engine; no torch or kernel thread pool runs in this process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xnornet.benchmark.checks import FP32_REL_TOL, INT8_REL_TOL, PeerCheckError, check_close
from xnornet.benchmark.timing import time_interleaved

FILES = {
    "float_net": "float_net.pt",
    "packed": "xnor.packed",
    "calibration": "calibration.npy",
    "inputs": "inputs.npy",
    "float_logits": "float_logits.npy",
    "engine_logits": "engine_logits.npy",
}
INT8_KINDS = ("i8", "u8")


class PeerUnavailable(Exception):
    """This runtime cannot be built here (its exporter is missing): its rows are skipped, said why."""


def save_network_job(folder: Path, fp_net: torch.nn.Module, packed_model, calibration: np.ndarray,
                     x: np.ndarray, threads: int) -> None:  # fmt: skip
    """Write the worker's inputs (FILES) into ``folder``, with the references computed here: torch
    float32's logits and the engine's (``threads`` threads) on ``x``."""
    from xnornet.packed.agreement import batched, torch_logits
    from xnornet.packed.engine import PackedEngine
    from xnornet.packed.file_format import save_packed

    torch.save(fp_net, folder / FILES["float_net"])
    save_packed(packed_model, folder / FILES["packed"])
    np.save(folder / FILES["calibration"], calibration)
    np.save(folder / FILES["inputs"], x)
    np.save(folder / FILES["float_logits"], batched(lambda v: torch_logits(fp_net, v), x, 16))
    np.save(folder / FILES["engine_logits"], batched(PackedEngine(packed_model, threads), x, 16))


def float_model(folder: Path, example: np.ndarray):
    """The float network as converted by OpenVINO's own PyTorch frontend (batch left dynamic)."""
    import openvino as ov

    torch.set_num_threads(1)  # conversion traces the network once: no torch pool beside OpenVINO's
    net = torch.load(folder / FILES["float_net"], weights_only=False).eval()
    with torch.no_grad():
        return ov.convert_model(net, example_input=torch.from_numpy(example[:1]))


def int8_model(fp32, folder: Path):
    """NNCF's default post-training quantization, one calibration item per stage calibration batch."""
    import nncf

    batches = list(np.load(folder / FILES["calibration"]))  # (n, B, C, H, W) → n items of (B, C, H, W)
    return nncf.quantize(fp32, nncf.Dataset(batches), subset_size=len(batches))


def binary_model(folder: Path):
    """The packed XNOR network exported by the exporter (xnornet.peers.openvino_export)."""
    import openvino as ov

    from xnornet.packed.file_format import load_packed

    try:
        from xnornet.peers.openvino_export import export_openvino
    except ImportError as e:
        raise PeerUnavailable(f"no OpenVINO export of packed networks in this checkout ({e})") from e
    path = folder / "xnor_openvino.xml"
    made = export_openvino(load_packed(folder / FILES["packed"]), path)
    return made if isinstance(made, ov.Model) else ov.Core().read_model(path)


def check_network(runtime: str, what: str, y: np.ndarray, folder: Path, batch: int,
                  precisions: list[str]) -> dict:  # fmt: skip
    """fp32 and int8 against torch float32's logits, binary against the engine's; int8 must run int8."""
    if runtime == "openvino_binary":
        ref = np.load(folder / FILES["engine_logits"])[:batch]
        return {**check_close(what, y, ref, FP32_REL_TOL), "argmax_agreement": agreement(y, ref)}
    ref = np.load(folder / FILES["float_logits"])[:batch]
    if runtime == "openvino_int8" and not any(p in INT8_KINDS for p in precisions):
        raise PeerCheckError(f"{what}: compiled as {sorted(set(precisions))}, expected int8 convolutions")
    tol = INT8_REL_TOL if runtime == "openvino_int8" else FP32_REL_TOL
    return {**check_close(what, y, ref, tol), "argmax_agreement": agreement(y, ref)}


def agreement(y: np.ndarray, ref: np.ndarray) -> float:
    return round(float((y.argmax(1) == ref.argmax(1)).mean()), 4)


def network_job(job: dict) -> tuple[list[dict], dict[str, str]]:
    """Every network × runtime × batch × thread count: one row each, checked then timed; and the
    runtimes skipped, with why."""
    rows, skipped = [], {}
    for net in job["networks"]:
        rows += network_rows(net["name"], Path(net["dir"]), job, skipped)
    return rows, skipped


def network_rows(name: str, folder: Path, job: dict, skipped: dict[str, str]) -> list[dict]:
    import openvino as ov

    from xnornet.benchmark.openvino_layers import OPENVINO_LAYER_TYPES, compiled_precisions
    from xnornet.peers.openvino_binary import compile_for_latency

    x = np.load(folder / FILES["inputs"])
    fp32 = float_model(folder, x) if {"openvino_fp32", "openvino_int8"} & set(job["runtimes"]) else None
    rows = []
    for runtime in job["runtimes"]:
        build = {"openvino_fp32": lambda: fp32, "openvino_int8": lambda: int8_model(fp32, folder),
                 "openvino_binary": lambda: binary_model(folder)}[runtime]  # fmt: skip
        try:
            model = build()
        except PeerUnavailable as e:
            skipped[runtime] = str(e)
            continue
        for batch in job["batches"]:
            for t in job["threads"]:
                compiled = compile_for_latency(model, t, batch=batch)
                request = compiled.create_infer_request()
                request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x[:batch]), shared_memory=True))
                request.infer()
                y = request.get_output_tensor().data.copy()
                precisions = compiled_precisions(compiled, OPENVINO_LAYER_TYPES)
                what = f"{runtime} {name}, batch {batch}, {t} threads"
                check = check_network(runtime, what, y, folder, batch, [p.lower() for p in precisions])
                sec = time_interleaved({runtime: request.infer}, job["warmup"], job["repeats"], lambda: None)
                rows.append({"network": name, "runtime": runtime, "batch": batch, "threads": t,
                             "ms_per_batch": round(1e3 * sec[runtime], 3),
                             "ms_per_image": round(1e3 * sec[runtime] / batch, 3), **check})  # fmt: skip
                del request, compiled
    return rows
