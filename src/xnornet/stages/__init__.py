"""The pipeline's entry points, one module per DVC stage, each only a ``main()``.

Every stage is a Hydra app on conf/config.yaml made by ``stage_main``, which also enforces what
the stage declares it reads: the function sees only those top-level config keys (interpolations
resolved first), so the list is true by construction and the test of dvc.yaml can trust it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from xnornet.errors import XnornetError

_MISSING = object()
SWEPT_KEYS_ENV = "XNORNET_SWEPT_KEYS"  # the keys a sweep varies, set by xnornet.sweep for its jobs


def conf_dir() -> str:
    """conf/ of the repo the command runs in (a DVC experiment's copy too), else this checkout's."""
    here = Path.cwd() / "conf"
    if (here / "config.yaml").is_file():
        return str(here)
    return str(Path(__file__).resolve().parents[3] / "conf")


def only(cfg: DictConfig, keys: tuple[str, ...]) -> DictConfig:
    """``cfg`` resolved, cut down to ``keys`` (dotted paths such as ``paths.metrics_dir``);
    reading anything else raises."""
    OmegaConf.resolve(cfg)
    sub = OmegaConf.create({})
    for key in keys:
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            raise KeyError(f"stage reads {key!r}, which conf/config.yaml does not define")
        OmegaConf.update(sub, key, value, force_add=True)
    OmegaConf.set_struct(sub, True)
    return sub


def stage_main(*reads: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], None]]:
    """Make ``fn(cfg)`` a stage: a Hydra app that sees only the config keys in ``reads``, and
    whose bad input exits 1 with one line instead of a traceback."""

    def wrap(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @functools.wraps(fn)
        def run(cfg: DictConfig) -> None:
            try:
                fn(only(cfg, reads))
            except XnornetError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(1)

        app = hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")(run)
        app.reads = reads  # what the dependency test of dvc.yaml checks the stage's params against
        return app

    return wrap


def output_root() -> Path:
    """Where stage outputs go: the repo-relative fixed paths, or a sweep job's own directory."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(".")


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
