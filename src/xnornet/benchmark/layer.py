"""One layer shape, torch float32 against the binary layer (and its GEMM alone), per ISA path and
thread count, timed side by side (benchmark.timing)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xnornet.benchmark.shapes import LayerShape
from xnornet.benchmark.timing import time_interleaved, time_steady, with_isa, with_threads
from xnornet.kernels import (
    BinaryConv2dLayer,
    BinaryConvWeights,
    BinaryLinearLayer,
    PackedColumns,
    gemm_packed,
    im2col_bits,
    pack_bits,
    pack_nhwc,
    popcount_peak,
)
from xnornet.kernels.isa import ENV_VAR, comparison_isas

# a sample of the limit loop: about 5 ms on a Zen 4 core with AVX-512, one call per steady round
LIMIT_ITERS_PER_SAMPLE = 1_000_000


def torch_fns(shape: LayerShape, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    """float32 conv2d (NCHW and channels-last) or linear, and matmul on the same GEMM."""
    m, n, k = shape.gemm
    a = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
    b = torch.from_numpy(rng.standard_normal((k, n), dtype=np.float32))
    fns = {"torch_matmul": lambda: torch.mm(a, b)}
    if shape.kind == "linear":
        x = torch.from_numpy(rng.standard_normal((shape.batch, shape.c_in), dtype=np.float32))
        w = torch.from_numpy(rng.standard_normal((shape.c_out, shape.c_in), dtype=np.float32))
        fns["torch_conv"] = lambda: F.linear(x, w)
        return fns
    x = torch.from_numpy(rng.standard_normal((shape.batch, shape.c_in, shape.h, shape.w), dtype=np.float32))
    w = torch.from_numpy(rng.standard_normal((shape.c_out, shape.c_in, shape.k, shape.k), dtype=np.float32))
    xc, wc = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    fns["torch_conv_nchw"] = lambda: F.conv2d(x, w, stride=shape.stride, padding=shape.padding)
    fns["torch_conv_cl"] = lambda: F.conv2d(xc, wc, stride=shape.stride, padding=shape.padding)
    return fns


def binary_fns(shape: LayerShape, rng: np.random.Generator, threads: int) -> dict[str, Callable[[], object]]:
    """The whole binary layer (pack + im2col + bgemm + α/bias transform), and its parts alone:
    the sign-pack of the float input, the im2col of a conv (explicit, as ``im2col_bits`` makes it;
    the layer runs its implicit form) and the bgemm on that im2col.

    The layer is a layer object built once, as the packed engine builds its layers: weights, α
    and bias checked once and the workspaces kept, so a call allocates nothing."""
    alpha = rng.random(shape.c_out, dtype=np.float32)
    bias = rng.standard_normal(shape.c_out).astype(np.float32)
    if shape.kind == "linear":
        x = rng.standard_normal((shape.batch, shape.c_in), dtype=np.float32)
        w = rng.standard_normal((shape.c_out, shape.c_in), dtype=np.float32)
        cols = PackedColumns.from_bits(pack_bits(w), shape.c_in)
        x_bits = pack_bits(x)
        linear = BinaryLinearLayer(cols, alpha, bias, threads=threads)
        return {
            "binary_layer": lambda: linear(x),
            "pack": lambda: pack_bits(x, threads=threads),
            "bgemm": lambda: gemm_packed(x_bits, cols, threads=threads),
        }
    x = rng.standard_normal((shape.batch, shape.h, shape.w, shape.c_in), dtype=np.float32)
    w = rng.standard_normal((shape.c_out, shape.c_in, shape.k, shape.k), dtype=np.float32)
    weights = BinaryConvWeights.from_float(w, shape.stride, shape.padding)
    weights.correction(shape.h, shape.w)  # per input size, computed once like the weight packing
    packed = pack_nhwc(x)
    patches = im2col_bits(packed, weights)
    conv = BinaryConv2dLayer(weights, alpha, bias, threads=threads)
    return {
        "binary_layer": lambda: conv(x),
        "pack": lambda: pack_nhwc(x, threads=threads),
        "im2col": lambda: im2col_bits(packed, weights, threads=threads),
        "bgemm": lambda: gemm_packed(patches, weights.columns, threads=threads),
    }


def with_limits(row: dict) -> dict:
    """Add the GEMM's (pct_of_limit) and the whole layer's (layer_pct_of_limit) rate against the
    per-core limit of its ISA, measured in the same rounds, times its threads."""
    limit = row["limit_gops_per_core"] * row["threads"]
    return {**row, "pct_of_limit": round(100 * row["bgemm_gops"] / limit, 1),
            "layer_pct_of_limit": round(100 * row["gops"] / limit, 1)}  # fmt: skip


def resolve_isas(wanted, available: list[str]) -> list[str]:
    """``all`` = every popcount path here; ``simd`` = its AVX-512 and AVX2 paths (or the best one);
    "generic" (for CPUs without POPCNT) only if asked, and
    a former kernel kept for comparison (``avx2-lookup``, isa.COMPARISON_ISAS) too."""
    if wanted == "all":
        return [isa for isa in available if isa != "generic"] or list(available)
    if wanted == "simd":  # the vector paths a CPU of the last decade runs (the best one at least)
        return [isa for isa in available if isa in ("avx512-vpopcntdq", "avx2")] or list(available[:1])
    unknown = [isa for isa in wanted if isa not in available and isa not in comparison_isas()]
    if unknown:
        raise ValueError(f"bench.isas: {unknown} not available here (this CPU runs {available})")
    return list(wanted)


def limit_sampler(rates: list[float], iters: int) -> Callable[[], None]:
    """A call of the popcount-limit loop that keeps its rate: timed in the same rounds as the
    layer, it gives the limit of the moments the layer ran in (a shared host's speed moves by a
    quarter from one minute to the next)."""

    def sample() -> None:
        rates.append(popcount_peak(iters, repeats=1))

    return sample


def bench_shape(
    shape: LayerShape,
    isas: list[str],
    thread_counts: list[int],
    warmup: int,
    repeats: int,
    seed: int,
    tick: Callable[[], None],
    limit_iters: int = LIMIT_ITERS_PER_SAMPLE,
) -> list[dict]:
    """One row per (ISA, threads): torch and binary timings of ``shape``, measured together, both
    steady (back to back, the headline figures) and cold (one call after a pause, ``*_cold_ms``),
    and the popcount limit of each ISA in the same steady rounds (``limit_gops_per_core``)."""
    rng = np.random.default_rng(seed)
    fns: dict[str, Callable[[], object]] = {}
    limit_rates: dict[str, list[float]] = {isa: [] for isa in isas}
    for isa in isas:
        fns[f"limit@{isa}"] = with_isa(limit_sampler(limit_rates[isa], limit_iters), isa)
    torch_layer = torch_fns(shape, rng)
    for t in thread_counts:
        for name, fn in torch_layer.items():
            fns[f"{name}@{t}"] = with_threads(fn, t)
        for isa in isas:
            for name, fn in binary_fns(shape, rng, t).items():
                fns[f"{name}@{isa}@{t}"] = with_isa(fn, isa)
    whole_layers = {k: fn for k, fn in fns.items() if k.startswith(("torch_conv", "binary_layer"))}
    saved = os.environ.get(ENV_VAR), torch.get_num_threads()
    try:
        ms = {k: 1e3 * v for k, v in time_steady(fns, repeats, tick).items()}
        cold = {k: 1e3 * v for k, v in time_interleaved(whole_layers, warmup, repeats, tick).items()}
    finally:
        os.environ.pop(ENV_VAR, None) if saved[0] is None else os.environ.update({ENV_VAR: saved[0]})
        torch.set_num_threads(saved[1])

    def torch_conv(times: dict[str, float], t: int) -> float:
        return min(v for key, v in times.items() if key.startswith("torch_conv") and key.endswith(f"@{t}"))

    m, n, k = shape.gemm
    rows = []
    for t in thread_counts:
        conv_ms, conv_cold_ms = torch_conv(ms, t), torch_conv(cold, t)
        for isa in isas:
            layer_ms, bgemm_ms = ms[f"binary_layer@{isa}@{t}"], ms[f"bgemm@{isa}@{t}"]
            pack_ms, im2col_ms = ms[f"pack@{isa}@{t}"], ms.get(f"im2col@{isa}@{t}", 0.0)
            layer_cold_ms = cold[f"binary_layer@{isa}@{t}"]
            rows.append({
                "shape": shape.name, "isa": isa, "threads": t, "M": m, "N": n, "K": k,
                "limit_gops_per_core": round(statistics.median(limit_rates[isa]) / 1e9, 1),
                "torch_conv_ms": round(conv_ms, 4),
                "torch_matmul_ms": round(ms[f"torch_matmul@{t}"], 4),
                "binary_layer_ms": round(layer_ms, 4),
                "bgemm_ms": round(bgemm_ms, 4),
                "pack_ms": round(pack_ms, 4),
                "im2col_ms": round(im2col_ms, 4),
                # the layer against its parts run one by one: above 1 is time the fused call loses
                "layer_over_parts": round(layer_ms / (pack_ms + im2col_ms + bgemm_ms), 2),
                "speedup_vs_conv": round(conv_ms / layer_ms, 2),
                "speedup_vs_matmul": round(ms[f"torch_matmul@{t}"] / layer_ms, 2),
                "torch_gops": round(shape.ops / conv_ms / 1e6, 1),
                "gops": round(shape.ops / layer_ms / 1e6, 1),
                "bgemm_gops": round(shape.ops / bgemm_ms / 1e6, 1),
                "thread_speedup": round(ms[f"binary_layer@{isa}@{thread_counts[0]}"] / layer_ms, 2),
                "torch_thread_speedup": round(torch_conv(ms, thread_counts[0]) / conv_ms, 2),
                "torch_conv_cold_ms": round(conv_cold_ms, 4),
                "binary_layer_cold_ms": round(layer_cold_ms, 4),
                "speedup_cold": round(conv_cold_ms / layer_cold_ms, 2),
                "cold_over_steady": round(layer_cold_ms / layer_ms, 2),
            })  # fmt: skip
    return rows
