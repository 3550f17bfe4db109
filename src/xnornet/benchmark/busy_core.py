"""The busy-core case: a layer at 1 and N threads, timed side by side on a quiet machine and
again while another process keeps one core busy (issue 20, item 3).

On a laptop or a shared server some other process usually holds a core. An N-thread call whose
threads wait for each other then waits for the one that shares a core with that process, and
can be far slower than one thread (before kernels/xn_team.h: 16 ms against 0.25 ms on 2 Zen 4
cores). The figures that matter are ratios within one phase, both thread counts timed in the
same rounds (``time_threads``): ``busy_core_ratio`` = N-thread / 1-thread time with the core
busy (the kernel's promise: at most 1.3), and ``quiet_thread_speedup`` = 1-thread / N-thread
time without it (what the all-core figures keep).

The busy process is a plain Python spin loop started here and stopped by its own PID. "Quiet"
means without it: other load on the machine is not ours to stop, so each phase records the
load average it started at.

Examples:
    >>> from xnornet.benchmark.shapes import LayerShape
    >>> shape = LayerShape("tiny", "conv", batch=1, c_in=8, c_out=16, k=3, h=6, w=6, padding=1)
    >>> r = bench_busy_core(shape, threads=2, rounds=1, settle=0.0)
    >>> sorted(r["busy_ms"]) == sorted(r["quiet_ms"]) == ["1", "2"]
    True
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import yaml

from xnornet.benchmark.layer import binary_fns
from xnornet.benchmark.shapes import LayerShape
from xnornet.benchmark.timing import steady_rounds, with_isa
from xnornet.kernels.isa import ENV_VAR
from xnornet.kernels.team import fixed_teams, reset_teams, team_counts
from xnornet.machine import cpu_fields, usable_cores

SPIN = "while True: pass"
CONFIG = Path(__file__).resolve().parents[3] / "conf" / "bench" / "default.yaml"


@contextmanager
def busy_core(cpu: int | None = None, settle: float = 0.2) -> Iterator[subprocess.Popen]:
    """Another process spinning on one core (on ``cpu`` if given, else where the scheduler puts
    it) for the duration of the block; ``settle`` seconds for it to start spinning first."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
    try:
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(proc.pid, {cpu})
        time.sleep(settle)
        yield proc
    finally:
        proc.kill()  # ours alone, by its PID
        proc.wait()


def time_threads(
    layer_at: Callable[[int], Callable[[], object]],
    threads: int,
    rounds: int,
    warmup: float = 0.05,
    min_sample: float = 0.02,
) -> dict[str, float]:
    """Milliseconds per call of the layer at 1 and ``threads`` threads, timed in the same rounds:
    the steady protocol of benchmark.timing (each sample back-to-back calls, rounds alternating,
    median over rounds), with the calls per sample sized from ``warmup`` seconds of calls, not
    from one: with a core busy a single call can be a held-up one, 10-100x the others, and the
    samples would hold one call each, left to the luck of the scheduler. Samples of
    ``min_sample`` seconds hold many calls, so the occasional probe of a busy core is in them at
    its own rate. The team back-off is reset first: a phase does not inherit the last one's."""
    reset_teams()
    fns = {str(t): layer_at(t) for t in sorted({1, threads})}
    reps = {}
    for name, fn in fns.items():
        times, end = [], time.perf_counter() + warmup
        while len(times) < 3 or time.perf_counter() < end:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        reps[name] = max(1, math.ceil(min_sample / max(statistics.median(times), 1e-7)))
    return {name: 1e3 * seconds for name, seconds in steady_rounds(fns, reps, rounds).items()}


def busy_core_ratios(
    layer_at: Callable[[int], Callable[[], object]],
    threads: int,
    rounds: int = 5,
    settle: float = 0.2,
    cpu: int | None = None,
    fixed: bool = False,
) -> dict[str, object]:
    """Quiet, then with a busy core: the layer at 1 and ``threads`` threads in each phase, and
    the two ratios (module docstring). ``layer_at(t)`` returns the call to time at t threads.

    ``fixed``: the kernel keeps every team it is asked for (``kernels.team.fixed_teams``): the
    behaviour without the back-off, for comparison."""
    n = str(threads)
    policy = fixed_teams() if fixed else nullcontext()
    with policy:
        load_quiet = os.getloadavg()[0]
        quiet = time_threads(layer_at, threads, rounds)
        quiet_counts = team_counts()
        with busy_core(cpu, settle):
            load_busy = os.getloadavg()[0]
            busy = time_threads(layer_at, threads, rounds)
            busy_counts = team_counts()
    return {
        "threads": threads,
        "team_policy": "fixed" if fixed else "adaptive",
        "quiet_ms": {k: round(v, 4) for k, v in quiet.items()},
        "busy_ms": {k: round(v, 4) for k, v in busy.items()},
        "quiet_thread_speedup": round(quiet["1"] / quiet[n], 3),
        "busy_core_ratio": round(busy[n] / busy["1"], 3),
        "load_avg": {"quiet": round(load_quiet, 2), "busy": round(load_busy, 2)},
        "team_counts": {"quiet": quiet_counts, "busy": busy_counts},
    }


def bench_busy_core(
    shape: LayerShape,
    threads: int,
    isa: str | None = None,
    rounds: int = 5,
    seed: int = 0,
    settle: float = 0.2,
    cpu: int | None = None,
    fixed: bool = False,
) -> dict[str, object]:
    """``busy_core_ratios`` of a bench shape's whole binary layer (benchmark.layer.binary_fns:
    a layer object built once per thread count), on ``isa`` (default: the kernel's own path)."""
    rng = np.random.default_rng(seed)
    layers = {t: binary_fns(shape, rng, t)["binary_layer"] for t in sorted({1, threads})}

    def layer_at(t: int) -> Callable[[], object]:
        return with_isa(layers[t], isa) if isa else layers[t]

    saved = os.environ.get(ENV_VAR)
    try:
        result = busy_core_ratios(layer_at, threads, rounds, settle, cpu, fixed)
    finally:
        os.environ.pop(ENV_VAR, None) if saved is None else os.environ.update({ENV_VAR: saved})
    return {"shape": shape.name, "isa": isa or "default", **result}


def add_busy_core(
    summary: dict, shapes: list[LayerShape], config: dict | None, isa: str, threads: int
) -> None:
    """The bench's hook (``bench.busy_core``): each shape's busy-core case on ``isa`` at
    ``threads`` threads (all the cores), written into ``summary["shapes"][name]`` as
    ``busy_core_ratio`` and ``busy_core`` (the whole record), and the settings as
    ``summary["busy_core"]``. Nothing is measured when it is off or on a single core."""
    config = config or {}
    if not config.get("enabled", False):
        return
    if threads < 2:
        summary["busy_core"] = {"skipped": f"{threads} core: no second thread to hold up"}
        return
    rounds, seed = int(config.get("rounds", 9)), int(config.get("seed", 0))
    settle = float(config.get("settle", 0.2))
    summary["busy_core"] = {"threads": threads, "isa": isa, "rounds": rounds, "busy_process": SPIN}
    for shape in shapes:
        r = bench_busy_core(shape, threads, isa, rounds, seed, settle)
        record = {k: v for k, v in r.items() if k not in ("shape", "isa", "threads")}
        summary["shapes"][shape.name].update(busy_core_ratio=r["busy_core_ratio"], busy_core=record)
        print(f"busy core: {shape.name:<24} {threads} threads / 1 = {r['busy_core_ratio']:.2f} "
              f"with a core busy, {r['quiet_thread_speedup']:.2f}x faster without")  # fmt: skip


def busy_core_metrics(summary: dict) -> dict[str, float]:
    """The busy-core figures as flat MLflow metric names: shape/busy_core/{ratio,quiet_speedup}."""
    flat = {}
    for name, s in summary.get("shapes", {}).items():
        if "busy_core" in s:
            flat[f"{name}/busy_core/ratio"] = s["busy_core"]["busy_core_ratio"]
            flat[f"{name}/busy_core/quiet_speedup"] = s["busy_core"]["quiet_thread_speedup"]
    return flat


def main(argv: list[str] | None = None) -> None:
    """``python -m xnornet.benchmark.busy_core [SHAPE …] [--fixed]``: the busy-core case of
    conf/bench's shapes (all, or those named), printed as a table and as JSON."""
    parser = argparse.ArgumentParser(prog="python -m xnornet.benchmark.busy_core")
    parser.add_argument("shapes", nargs="*", help="shape names of conf/bench (default: all)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="a conf/bench YAML file")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--rounds", type=int, default=9, help="rounds of each phase")
    parser.add_argument("--repeat", type=int, default=1, help="measure every shape this many times")
    parser.add_argument("--fixed", action="store_true", help="also time with the back-off off (fixed teams)")
    parser.add_argument("--json", type=Path, help="write every record here")
    args = parser.parse_args(argv)
    shapes = [LayerShape(**s) for s in yaml.safe_load(args.config.read_text())["shapes"]]
    shapes = [s for s in shapes if not args.shapes or s.name in args.shapes]
    print(f"{cpu_fields()['cpu']}, {usable_cores()} cores; N = {args.threads} threads")
    print(f"{'shape':<24}{'teams':<10}{'quiet 1t':>10}{'quiet Nt':>10}{'N×':>7}{'busy 1t':>10}{'busy Nt':>10}"
          f"{'ratio':>8}{'load':>11}{'held/team':>11}{'alone':>7}")  # fmt: skip
    records = []
    for _ in range(args.repeat):
        for shape in shapes:
            for fixed in (False, True) if args.fixed else (False,):
                r = bench_busy_core(shape, args.threads, rounds=args.rounds, fixed=fixed)
                records.append(r)
                q, b, n, c = r["quiet_ms"], r["busy_ms"], str(args.threads), r["team_counts"]["busy"]
                print(f"{shape.name:<24}{r['team_policy']:<10}{q['1']:>10.3f}{q[n]:>10.3f}"
                      f"{r['quiet_thread_speedup']:>7.2f}{b['1']:>10.3f}{b[n]:>10.3f}{r['busy_core_ratio']:>8.2f}"
                      f"{r['load_avg']['quiet']:>5.1f}/{r['load_avg']['busy']:<5.1f}"
                      f"{c['held_up']:>5}/{c['team_calls']:<5}{c['ran_alone']:>7}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
