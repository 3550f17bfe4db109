"""Inside a peer's worker process: each bench shape built for one peer runtime, checked against the
reference, then timed steady (k back-to-back calls per sample, as benchmark.timing), per thread count.

Runtimes: ``torch_int8`` (torch's x86 quantized engine), ``openvino_fp32``, ``openvino_int8`` and
``openvino_binary``. OpenVINO models are timed in both layouts (NCHW, NHWC) in the same rounds and
the faster is kept, as the bench keeps the faster of torch's two float layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from xnornet.benchmark.checks import FP32_REL_TOL, INT8_REL_TOL, PeerCheckError, check_close, check_exact
from xnornet.benchmark.layer_data import binary_reference, float_reference, layer_data
from xnornet.benchmark.shapes import LayerShape
from xnornet.benchmark.timing import time_steady


def torch_int8_rows(shape: LayerShape, x, w, ref, threads: list[int], repeats: int) -> list[dict]:
    import torch

    from xnornet.benchmark.torch_int8 import torch_int8_layer

    layer, output = torch_int8_layer(shape, x, w, ref)
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        check = check_close(f"torch_int8 {shape.name}, {t} threads", output(), ref, INT8_REL_TOL)
        sec = time_steady({"q": layer}, repeats, lambda: None)["q"]
        rows.append({"threads": t, "ms": round(1e3 * sec, 4), "layout": "nhwc", "precision": "int8", **check})
    return rows


def openvino_model(runtime: str, shape: LayerShape, x: np.ndarray, w: np.ndarray):
    from xnornet.benchmark.openvino_layers import binary_layer_model, float_layer_model

    if runtime == "openvino_binary":
        return binary_layer_model(shape, w)
    return float_layer_model(shape, w, float(np.abs(x).max()) if runtime == "openvino_int8" else None)


def check_openvino(runtime: str, what: str, y: np.ndarray, ref: np.ndarray, precisions: list[str]) -> dict:
    """Exact for the binary model; within tolerance for fp32/int8, and int8 must have run as int8."""
    if runtime == "openvino_binary":
        return check_exact(what, y, ref)
    if runtime == "openvino_int8":
        if not any(p in ("i8", "u8") for p in precisions):
            raise PeerCheckError(f"{what}: compiled as {precisions}, expected an int8 convolution")
        return check_close(what, y, ref, INT8_REL_TOL)
    return check_close(what, y, ref, FP32_REL_TOL)


def openvino_output(model, xin: np.ndarray, layout: str, threads: int, ref_shape: tuple[int, ...]):
    """Compile ``model`` as a latency user would and run it once on ``xin``: (the infer request,
    its output in the references' layout, the precisions its conv/FC nodes were compiled to)."""
    import openvino as ov

    from xnornet.benchmark.openvino_layers import (
        OPENVINO_LAYER_TYPES,
        compiled_precisions,
        to_reference_layout,
    )
    from xnornet.peers.openvino_binary import compile_for_latency

    compiled = compile_for_latency(model, threads)
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(xin, shared_memory=True))
    request.infer()
    y = to_reference_layout(request.get_output_tensor().data.copy(), layout, ref_shape)
    return request, y, [p.lower() for p in compiled_precisions(compiled, OPENVINO_LAYER_TYPES)]


def openvino_rows(runtime: str, shape: LayerShape, x, w, ref, threads: list[int], repeats: int) -> list[dict]:
    from xnornet.benchmark.openvino_layers import layout_variants

    rows = []
    for t in threads:
        fns: dict[str, Callable[[], object]] = {}
        checks, precisions = {}, []
        for layout, (model, xin) in layout_variants(openvino_model(runtime, shape, x, w), x).items():
            request, y, precisions = openvino_output(model, xin, layout, t, ref.shape)
            what = f"{runtime} {shape.name} ({layout}), {t} threads"
            checks[layout] = check_openvino(runtime, what, y, ref, precisions)
            fns[layout] = request.infer
        sec = time_steady(fns, repeats, lambda: None)
        best = min(sec, key=sec.get)
        rows.append({"threads": t, "ms": round(1e3 * sec[best], 4), "layout": best,
                     "precision": ",".join(sorted(set(precisions))), **checks[best],
                     **{f"{layout}_ms": round(1e3 * s, 4) for layout, s in sec.items()}})  # fmt: skip
    return rows


def layer_job(job: dict) -> list[dict]:
    """Every shape × runtime × thread count of the job: one row each, checked then timed."""
    threads, repeats, seed = [int(t) for t in job["threads"]], int(job["repeats"]), int(job["seed"])
    rows = []
    for spec in job["shapes"]:
        shape = LayerShape(**spec)
        x, w = layer_data(shape, seed)
        refs: dict[str, np.ndarray] = {}
        for runtime in job["runtimes"]:
            kind = "binary" if runtime == "openvino_binary" else "float"
            if kind not in refs:
                refs[kind] = (binary_reference if kind == "binary" else float_reference)(shape, x, w)
            rows_of = torch_int8_rows if runtime == "torch_int8" else partial(openvino_rows, runtime)
            found = rows_of(shape, x, w, refs[kind], threads, repeats)
            rows += [{"shape": shape.name, "runtime": runtime, **r} for r in found]
    return rows
