"""The one decorator every stage entry point uses: Hydra config in, one-line errors out."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from xnornet.errors import XnornetError


def conf_dir() -> str:
    """conf/ of the repo the command runs in (a DVC experiment's copy too), else this checkout's."""
    here = Path.cwd() / "conf"
    if (here / "config.yaml").is_file():
        return str(here)
    return str(Path(__file__).resolve().parents[2] / "conf")


def stage_main(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
    """Wrap ``fn(cfg)`` as a Hydra app on conf/config.yaml; bad input exits 1 with one line."""

    @functools.wraps(fn)
    def run(cfg: DictConfig) -> None:
        try:
            fn(cfg)
        except XnornetError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")(run)


def output_root() -> Path:
    """Where stage outputs go: the repo-relative fixed paths, or a sweep job's own directory."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(".")
