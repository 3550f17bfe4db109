"""What a stage needs to know when it runs as one job of a sweep (a Hydra multirun): where its
outputs go, its share of the cores, and the values its sweep varies. The sweep launcher
(xnornet.sweep) sets the environment; the stages and the tracking read it. A module of its own,
below both, so that tracking never imports the stage package it serves.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

SWEPT_KEYS_ENV = "XNORNET_SWEPT_KEYS"  # the keys a sweep varies, set by xnornet.sweep for its jobs
JOB_THREADS_ENV = "XNORNET_JOB_THREADS"  # torch threads per job of a parallel sweep (xnornet.sweep)


def output_root() -> Path:
    """Where stage outputs go: the repo-relative fixed paths, or a sweep job's own directory."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(".")


def torch_threads(configured: int | None) -> int | None:
    """The thread count to set: the configured one, else a parallel sweep's share of the cores
    (so jobs × threads ≤ cores), else None (torch's default)."""
    if configured:
        return int(configured)
    share = os.environ.get(JOB_THREADS_ENV)
    return int(share) if share else None


def swept_values() -> dict[str, str]:
    """A sweep job's value of each key its sweep varies (``{"model": "xnor", "seed": "1"}``); {}
    outside a sweep. Tagged on the job's run, so a sweep summary can group runs by them."""
    swept = set(filter(None, os.environ.get(SWEPT_KEYS_ENV, "").split(",")))
    if not swept or not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return {}
    values = {}
    for override in HydraConfig.get().overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if key in swept:
            values[key] = value
    return values


def sweep_suffix() -> str:
    """A sweep job's values of the keys the sweep varies, as a run-name suffix ("-seed1"); "" outside
    a sweep. The variant is already in the name."""
    return "".join(f"-{key.split('.')[-1]}{value}" for key, value in swept_values().items() if key != "model")
