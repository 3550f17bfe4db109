"""Side-by-side timing: every implementation of one workload timed interleaved in one process,
rounds alternating between them and the median over rounds kept, so a busy neighbour or a clock
change hits them alike; the ratios are what the bench reports, never one time against a constant.

Two protocols, because a layer meets two situations:
- steady (``time_steady``): each sample is k calls back to back, k so that a sample lasts a few
  milliseconds: what a layer costs inside a network that runs its layers one after another;
- cold (``time_interleaved``): one call after an idle pause, right after the other
  implementations ran: what a served request sees, caches and thread pools left by someone else.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable

import torch

from xnornet.kernels.isa import ENV_VAR


def with_threads(fn: Callable[[], object], threads: int) -> Callable[[], object]:
    def run():
        torch.set_num_threads(threads)
        return fn()

    return run


def with_isa(fn: Callable[[], object], isa: str) -> Callable[[], object]:
    def run():
        os.environ[ENV_VAR] = isa
        return fn()

    return run


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    tick: Callable[[], None],
    settle: float = 0.005,
) -> dict[str, float]:
    """Median seconds of each function, calling each once per round in turn.

    torch and the kernel bring separate thread pools whose idle workers spin for a while after
    each call; ``settle`` seconds of sleep before every timed call let them park, so no call is
    timed while the other library's threads still burn the cores.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            time.sleep(settle)
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                samples[name].append(time.perf_counter() - start)
        tick()
    return {name: statistics.median(s) for name, s in samples.items()}


def time_steady(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    tick: Callable[[], None],
    min_sample: float = 0.004,
) -> dict[str, float]:
    """Median seconds per call, each sample ``k`` back-to-back calls (``k`` from a first timing,
    so that a sample lasts ``min_sample`` seconds), rounds alternating between the functions."""
    reps: dict[str, int] = {}
    for name, fn in fns.items():
        fn()  # first touch of caches, pages and thread pools
        start = time.perf_counter()
        fn()
        reps[name] = max(1, math.ceil(min_sample / max(time.perf_counter() - start, 1e-7)))
    return steady_rounds(fns, reps, rounds, tick)


def steady_rounds(
    fns: dict[str, Callable[[], object]],
    reps: dict[str, int],
    rounds: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median seconds per call over ``rounds`` rounds alternating between the functions, each
    sample ``reps[name]`` back-to-back calls (how many is the caller's choice)."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / reps[name])
        tick()
    return {name: statistics.median(s) for name, s in samples.items()}
