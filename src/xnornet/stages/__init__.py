"""The pipeline's entry points, one module per DVC stage, each only a ``main()``.

Every stage is a Hydra app on conf/config.yaml made by ``stage_main``, which also enforces what
the stage declares it reads: the function sees only those top-level config keys (interpolations
resolved first), so the list is true by construction and the test of dvc.yaml can trust it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from xnornet import quiet
from xnornet.config_rules import check_numeric_keys
from xnornet.errors import XnornetError, error_boundary, full_errors
from xnornet.preflight import (
    check_output_dir,
    check_override_types,
    check_tracking_uri,
    unknown_key,
    value_overrides,
)

_MISSING = object()


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


def stage_main(
    *reads: str, writes: tuple[str, ...] = ()
) -> Callable[[Callable[[DictConfig], object]], Callable[..., object]]:
    """Make ``fn(cfg)`` a stage: a Hydra app that sees only the config keys in ``reads``.

    Any failure, Hydra's own config errors included, exits 1 with one line naming the input, and
    the traceback goes to the error log (xnornet.errors); KeyboardInterrupt passes through, and
    ``HYDRA_FULL_ERROR=1`` shows the traceback instead. Before ``fn`` runs, command-line values
    are checked against the types of the defaults they replace, and every ``paths.*`` key it
    reads that does not exist yet, and every key in ``writes``, is proved a writable directory, so
    a bad value fails at once rather than after training (xnornet.preflight)."""

    def wrap(fn: Callable[[DictConfig], object]) -> Callable[..., object]:
        module = fn.__module__ if fn.__module__ != "__main__" else sys.modules["__main__"].__spec__.name
        stage = module.rsplit(".", 1)[-1]  # a DDP rank runs the stage as __main__ (python -m …)
        command_line = CommandLine()  # this app's own: set while it runs from a command line

        @functools.wraps(fn)
        def run(cfg: DictConfig) -> object:
            with error_boundary(stage, command_line.tracebacks()):
                preflight(cfg, reads, writes, overrides_to_check=command_line.active)
                return fn(only(cfg, reads))  # a sweeper's objective (Hydra's optuna sweeper reads it)

        hydra_app = hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")(run)

        @functools.wraps(fn)
        def app(cfg_passthrough: DictConfig | None = None) -> object:
            quiet.install()
            if cfg_passthrough is not None:  # a test's composed config: no command line to parse
                return hydra_app(cfg_passthrough)
            with command_line.running():
                # Hydra's compose and override errors: the app never ran
                with error_boundary(stage, command_line.user_full_errors, _with_key_hint):
                    hydra_app()

        app.reads = reads  # what the dependency test of dvc.yaml checks the stage's params against
        return app

    return wrap


@dataclass
class CommandLine:
    """Whether a stage app runs from a command line now (not from a test's composed config), and
    the user's HYDRA_FULL_ERROR then: Hydra is told to raise its errors to the app meanwhile, so
    that they reach its error boundary, and the user's setting decides the tracebacks."""

    active: bool = False
    user_full_errors: bool = False

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.active, self.user_full_errors = True, full_errors()
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            yield
        finally:
            if not self.user_full_errors:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            self.active = False

    def tracebacks(self) -> bool:
        return self.user_full_errors if self.active else full_errors()


def _with_key_hint(e: Exception) -> Exception:
    """Hydra's error for a key the config lacks, as one that names the closest real key; its
    grammar error for an unquoted non-ASCII value, as one that says how to quote it."""
    unquoted = [
        a for a in sys.argv[1:] if not a.isascii() and "=" in a and a.partition("=")[2][:1] not in "'\""
    ]
    if unquoted and "override" in f"{type(e).__name__} {e}".lower():
        key, _, value = unquoted[0].partition("=")
        hint = XnornetError(
            f"{unquoted[0]}: Hydra's override grammar takes only ASCII in an unquoted value; "
            f"quote it, e.g. {key}='{value}' (in a shell: \"{key}='{value}'\")"
        )
        hint.__cause__ = e
        return hint
    if "not in struct" not in str(e.__cause__ or ""):
        return e
    try:
        hint = unknown_key(sys.argv[1:], conf_dir())
    except Exception:  # the hint is a courtesy: never let it hide the error itself
        return e
    if hint is None:
        return e
    hint.__cause__ = e
    return hint


def preflight(
    cfg: DictConfig, reads: tuple[str, ...], writes: tuple[str, ...], overrides_to_check: bool = False
) -> None:
    """The checks of xnornet.preflight on this run's config, and with ``overrides_to_check``, on
    its command line's values against the types of the defaults they replace."""
    if overrides_to_check and HydraConfig.initialized():
        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        groups = {g.split("@")[0] for g in hc.runtime.choices}
        keys = value_overrides(overrides, groups)
        if keys:
            base_overrides = [o for o in overrides if o.partition("=")[0].lstrip("+~") in groups]
            try:
                base = hydra.compose(config_name="config", overrides=base_overrides)
            except Exception:  # the config composed once already; nothing to compare against
                base = None
            if base is not None:
                check_override_types(cfg, base, keys)
    check_numeric_keys(cfg, reads)
    for key in dict.fromkeys([*(k for k in reads if k.startswith("paths.")), *writes]):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, str) or not value.strip():  # "" would write into the working directory
            raise XnornetError(f"{key}={value!r}: expected a directory path")
        path = Path(value)  # one not there yet is an output to be: prove it can be made
        check_output_dir(key, path, probe=key in writes or not path.exists())
    if "logger" in reads:
        check_tracking_uri(OmegaConf.select(cfg, "logger.tracking_uri"))
