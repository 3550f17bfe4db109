"""Side-by-side timing: every implementation of one workload timed interleaved in one process.

One call of each per round, median over rounds, so a busy neighbour or a clock change hits them
alike; the ratios are what the bench reports, never a single absolute time against a constant.
"""

from __future__ import annotations

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
