"""Checks a stage runs before any work, so bad input fails in a second and names the input.

- A command-line value whose type differs from the default it replaces (``train.lr=abc``,
  ``train.batch_size=foo``, ``bench.shapes=3``) is refused by name before it reaches a library
  deep inside training, whose error would name neither the key nor what it expected.
- An output location that cannot be created or written (under a regular file, on a read-only or
  virtual file system) is refused before hours of training produce results nowhere to go.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from xnornet.errors import XnornetError

_MISSING = object()


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list | ListConfig):
        return "a list"
    if isinstance(value, dict | DictConfig):
        return "a mapping"
    return "a string"


def type_problem(default: object, value: object) -> str | None:
    """What is wrong with ``value`` replacing ``default``; None when it fits. A null default
    takes anything; a string default takes any scalar (``evaluate.threads: all`` or ``2``)."""
    if default is None or value is None:
        return None
    want, got = _kind(default), _kind(value)
    if want == "a number" and got == "an integer":
        return None
    if want == "a string" and got not in ("a list", "a mapping"):
        return None
    if want != got:
        return f"expected {want} like the default {default!r}, got {got} {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    return None


def value_overrides(overrides: list[str], groups: set[str]) -> list[str]:
    """The dotted keys that plain ``key=value`` overrides set (not groups, additions or deletions)."""
    keys = []
    for override in overrides:
        key, sep, _ = override.partition("=")
        if sep and not key.startswith(("+", "~", "hydra.")) and key.split("@")[0] not in groups:
            keys.append(key)
    return keys


def check_override_types(cfg: DictConfig, base: DictConfig, keys: list[str]) -> None:
    """Each overridden key's value in ``cfg`` against its value in ``base`` (the same config
    without the value overrides)."""
    for key in keys:
        try:
            default = OmegaConf.select(base, key, default=_MISSING)
            value = OmegaConf.select(cfg, key, default=_MISSING)
        except Exception:  # an interpolation that only resolves later: nothing to compare
            continue
        if default is _MISSING or value is _MISSING:
            continue
        problem = type_problem(default, value)
        if problem:
            shown = value if not isinstance(value, DictConfig | ListConfig) else OmegaConf.to_container(value)
            raise XnornetError(f"{key}={shown}: {problem}")


def check_output_dir(key: str, path: Path, probe: bool, shown: object = None) -> None:
    """``path`` (from config ``key``, whose value is ``shown`` if not ``path``) can hold outputs:
    it is, or can be made, a directory. With ``probe``, a scratch directory is created and
    removed in it (or in its nearest existing parent) to prove it is writable: permission bits
    say nothing for root or a read-only mount."""
    name = f"{key}={path if shown is None else shown}"
    if not str(shown if shown is not None else path).strip():
        raise XnornetError(f"{key}='': expected a directory path, got an empty value")
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # exists() is False for a loop or a dangling link
            raise XnornetError(
                f"{name}: {existing} is a symbolic link that does not resolve (a loop or a dangling "
                "link); expected a directory"
            )
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise XnornetError(f"{name}: {where}; expected a directory")
    if probe:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".xnornet-probe.", dir=existing))
        except OSError as e:
            raise XnornetError(
                f"{name}: cannot write in {existing} ({e.strerror}); expected a writable directory"
            ) from e


def check_output_file(key: str, value: object, suffix: str) -> Path:
    """The file a stage will write at config ``key``: a non-empty path ending in ``suffix``, where
    nothing but a file stands (a folder, a link loop or another stage's file is refused, never
    replaced), in a writable directory. Returns it as a Path."""
    if not isinstance(value, str) or not value.strip():
        raise XnornetError(f"{key}={value!r}: expected a path to a {suffix} file")
    path = Path(value)
    if path.suffix != suffix:
        raise XnornetError(
            f"{key}={value}: expected a path ending in {suffix} (this stage writes only {suffix} files, "
            "so it never replaces another stage's file)"
        )
    if path.is_symlink() and not path.exists():
        raise XnornetError(
            f"{key}={value}: is a symbolic link that does not resolve (a loop or a dangling link); "
            f"expected a {suffix} file"
        )
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise XnornetError(f"{key}={value}: is {kind}; expected a {suffix} file (nothing was replaced)")
    check_output_dir(key, path.parent, probe=True, shown=value)
    return path


def check_tracking_uri(uri: object, key: str = "logger.tracking_uri") -> None:
    """An MLflow URI that cannot be opened fails now, not after the stage wrote its outputs: a
    sqlite store must be a file in a writable directory; another scheme must be one MLflow knows;
    an http(s) server must answer one request, within xnornet.tracking_http's bounded wait."""
    if not isinstance(uri, str) or not uri.strip():
        raise XnornetError(f"{key}={uri!r}: expected an MLflow tracking URI such as sqlite:///mlflow.db")
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        db = Path(uri[len(prefix) :])
        if db.is_dir():
            raise XnornetError(f"{key}={uri}: {db} is a directory; expected a sqlite database file")
        check_output_dir(key, db.parent, probe=True, shown=uri)
        return
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    except ImportError:  # a private MLflow name moved: leave the check to MLflow itself
        return
    try:
        _tracking_store_registry.get_store_builder(uri)
    except Exception as e:
        raise XnornetError(
            f"{key}={uri}: MLflow cannot open this URI; expected sqlite:///<file>, http(s)://<server>, "
            "or another scheme MLflow supports"
        ) from e
    from xnornet.tracking_http import probe

    probe(uri, key)


def check_finite_state(state: dict, source: object) -> None:
    """Every floating tensor of a network's state (``net.state_dict()``) finite: a diverged
    training run leaves NaN weights, which pack to meaningless bits and predict nothing."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            bad = int((~tensor.isfinite()).sum())
            raise XnornetError(
                f"{source}: {name} has {bad} NaN or infinite values; expected finite weights "
                "(did training diverge? retrain with a smaller train.lr)"
            )


def unknown_key(args: list[str], config_dir: str) -> XnornetError | None:
    """For a command line with a misspelt key (``trainn.lr=1``), an error that names it and the
    closest real key; None if every key exists (the config is composed once more to list them)."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    groups = {p.name for p in Path(config_dir).iterdir() if p.is_dir()}
    chosen = [o for o in overrides if o.partition("=")[0].lstrip("+~").split("@")[0].split("/")[0] in groups]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name="config", overrides=chosen)
    known: list[str] = []

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                known.append(f"{prefix}{k}")
                walk(v, f"{prefix}{k}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    for override in overrides:
        key = override.partition("=")[0]
        if key.startswith(("+", "~", "hydra.")) or key in groups or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return XnornetError(f"{override}: {key} is not a config key{hint} (to add a new key: +{override})")
    return None
