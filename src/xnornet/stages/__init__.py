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

from xnornet import quiet
from xnornet.config_rules import check_numeric_keys
from xnornet.errors import (
    XnornetError,
    full_errors,
    report_failure,
)  # not "report": a stage module of that name
from xnornet.preflight import (
    check_output_dir,
    check_override_types,
    check_tracking_uri,
    unknown_key,
    value_overrides,
)

_MISSING = object()
SWEPT_KEYS_ENV = "XNORNET_SWEPT_KEYS"  # the keys a sweep varies, set by xnornet.sweep for its jobs
JOB_THREADS_ENV = "XNORNET_JOB_THREADS"  # torch threads per job of a parallel sweep (xnornet.sweep)


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

        @functools.wraps(fn)
        def run(cfg: DictConfig) -> object:
            try:
                preflight(cfg, reads, writes)
                return fn(only(cfg, reads))  # a sweeper's objective (Hydra's optuna sweeper reads it)
            except Exception as e:  # KeyboardInterrupt and SystemExit are not Exceptions
                if _show_tracebacks():
                    raise
                report_failure(stage, e)

        hydra_app = hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")(run)

        @functools.wraps(fn)
        def app(cfg_passthrough: DictConfig | None = None) -> object:
            quiet.install()
            if cfg_passthrough is not None:  # a test's composed config: no command line to parse
                return hydra_app(cfg_passthrough)
            global _user_full_errors
            _user_full_errors = full_errors()
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to us, instead of printing them
            try:
                hydra_app()
            except Exception as e:  # Hydra's compose and override errors: the app never ran
                if _user_full_errors:
                    raise
                report_failure(stage, _with_key_hint(e))
            finally:
                if not _user_full_errors:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                _user_full_errors = None

        app.reads = reads  # what the dependency test of dvc.yaml checks the stage's params against
        return app

    return wrap


# HYDRA_FULL_ERROR as the user set it, while an app runs from the command line (None: a test's call)
_user_full_errors: bool | None = None


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


def _show_tracebacks() -> bool:
    return full_errors() if _user_full_errors is None else _user_full_errors


def preflight(cfg: DictConfig, reads: tuple[str, ...], writes: tuple[str, ...]) -> None:
    """The checks of xnornet.preflight on this run's config and command line."""
    if _user_full_errors is not None and HydraConfig.initialized():  # a command line to check
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
