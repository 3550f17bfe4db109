"""dvc.yaml must name every input of every stage, or DVC skips a stage whose result changed.

Each stage's real inputs are computed here, independently of dvc.yaml:
- the import closure of ``xnornet <stage>`` inside src/xnornet (every module it can execute);
- the kernel's C and Cython sources, when that closure reaches the compiled kernel;
- the conf files behind every config key the stage reads (``stage_main(...)`` enforces the list),
  following interpolations, with the files of the chosen defaults and global-package overrides:
  as params, or as plain dependencies for the wiring files whose values are interpolations;
- metrics/machine.json, when the stage times anything (it imports benchmark.timing).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF, REPO
from dvc_yaml import declared_params, dvc_stages

SRC = REPO / "src"
WHOLE = "(whole file)"
NESTED = "(nested group) "
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_closure(roots: list[str]) -> set[str]:
    """Every xnornet module that importing ``roots`` can run, packages' __init__ included."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += module_imports(name)
    return seen


@functools.cache  # every stage walks the same modules: parse each once per session
def module_imports(name: str) -> tuple[str, ...]:
    """The xnornet modules that ``name`` imports, submodules imported by name included."""
    found: list[str] = []
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("xnornet")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xnornet"):
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return tuple(found)


def stage_module(cmd: str) -> str:
    words = cmd.split()
    assert words[0] == "xnornet", f"stage command {cmd!r} should be `xnornet <stage> ...`"
    return words[1]


def composed(overrides: list[str]):
    """The composed config, read-only: composing is most of this test's time, and stages share
    their command lines (each is composed once per session)."""
    return _composed(tuple(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def contributions(choices: dict[str, str]) -> dict[str, list[tuple[str, str | None]]]:
    """Top-level key → [(conf file, key inside it, or None for the whole file)] that set it.

    A group file lands under its group's key, a ``# @package _global_`` file at the top level,
    and a file chosen as ``group@package`` (a config's own defaults) under that package.
    """
    out: dict[str, list[tuple[str, str | None]]] = {}
    top = yaml.safe_load((CONF / "config.yaml").read_text())
    for key in top:
        if key not in ("defaults", "hydra"):
            out.setdefault(key, []).append(("conf/config.yaml", key))
    for choice_key, choice in choices.items():
        if choice_key.startswith("hydra") or choice is None:
            continue
        group, _, package = choice_key.partition("@")
        path = CONF / group / f"{choice}.yaml"
        rel = str(path.relative_to(REPO))
        text = path.read_text()
        if package:
            out.setdefault(package.split(".")[0], []).append((rel, WHOLE))
        elif "/" in group:  # a nested group (train/optimizer) fills one key of its parent
            top, _, inner = group.replace("/", ".").partition(".")
            out.setdefault(top, []).append((rel, NESTED + inner))
        elif "# @package _global_" in text:
            for key in yaml.safe_load(text) or {}:
                if key != "defaults":
                    out.setdefault(key, []).append((rel, key))
        else:
            out.setdefault(group, []).append((rel, None))
    return out


def required_params(reads: tuple[str, ...], overrides: list[str]) -> dict[str, set[str | None]]:
    """conf file → keys (None: the whole file) behind what the stage reads, interpolations followed."""
    cfg = composed(overrides)
    choices = dict(cfg.hydra.runtime.choices)
    raw = OmegaConf.to_container(cfg, resolve=False)
    sources = contributions(choices)
    need: dict[str, set[str | None]] = {}

    def add(dotted: str) -> None:
        top, _, rest = dotted.partition(".")
        for path, key in sources.get(top, []):
            if key is WHOLE:  # a file placed somewhere inside the key: needed whole
                need.setdefault(path, set()).add(None)
            elif key is not None and key.startswith(NESTED):  # whole, if the read reaches its key
                inner = key[len(NESTED) :]
                if not rest or rest == inner or rest.startswith(inner + "."):
                    need.setdefault(path, set()).add(None)
            elif key is None:  # a group file: the key inside it, or the whole file
                need.setdefault(path, set()).add(rest or None)
            else:
                need.setdefault(path, set()).add(dotted if rest else key)
        node = raw
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for text in strings(node):
            todo.extend(INTERPOLATION.findall(text))

    done: set[str] = set()
    todo = list(reads)
    while todo:
        dotted = todo.pop()
        if dotted in done:
            continue
        done.add(dotted)
        add(dotted)
    return need


def strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def targets(reads: tuple[str, ...], overrides: list[str]) -> list[str]:
    """Modules that Hydra imports for the ``_target_`` of anything the stage reads."""
    cfg = composed(overrides)
    found = []
    for key in reads:
        node = OmegaConf.to_container(OmegaConf.create({"n": OmegaConf.select(cfg, key)}), resolve=False)
        found += [t.rsplit(".", 1)[0] for t in target_strings(node) if t.startswith("xnornet.")]
    return found


def target_strings(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return own + [t for v in node.values() for t in target_strings(v)]
    if isinstance(node, list):
        return [t for v in node for t in target_strings(v)]
    return []


def covered(declared: dict[str, set[str] | None], path: str, key: str | None) -> bool:
    if path not in declared:
        return False
    keys = declared[path]
    if keys is None:
        return True
    return key is not None and any(key == k or key.startswith(k + ".") for k in keys)


def missing_inputs(name: str, stage: dict) -> list[str]:
    from importlib import import_module

    stage_name = stage_module(stage["cmd"])
    overrides = stage["cmd"].split()[2:]
    reads = import_module(f"xnornet.stages.{stage_name}").main.reads
    closure = import_closure(["xnornet.cli", f"xnornet.stages.{stage_name}", *targets(reads, overrides)])
    want = {str(module_file(m).relative_to(REPO)) for m in closure}
    if any(m.startswith("xnornet.kernels") for m in closure):
        want |= {str(p.relative_to(REPO)) for p in (REPO / "kernels").glob("*.h")}
        want |= {str(p.relative_to(REPO)) for p in (REPO / "kernels").glob("*.pyx")}
    if "xnornet.benchmark.timing" in closure:
        want.add("metrics/machine.json")
    deps = set(stage.get("deps", []))
    missing = sorted(path for path in want if not any(path == d or path.startswith(d + "/") for d in deps))
    declared = declared_params(stage)
    for path, keys in required_params(reads, overrides).items():
        if path in deps:  # a wiring conf file (interpolations), tracked whole as a dependency
            continue
        for key in keys:
            if not covered(declared, path, key):
                missing.append(f"{path}:{key or '(whole file)'}")
    return missing


STAGES = dvc_stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_yaml_names_every_input_of_the_stage(name):
    assert missing_inputs(name, STAGES[name]) == []


def test_a_removed_dependency_is_caught():
    stage = yaml.safe_load(yaml.safe_dump(STAGES["evaluate@xnor"]))
    for dep in ("src/xnornet/benchmark/timing.py", "metrics/machine.json", "kernels"):
        stage["deps"].remove(dep)
    stage["params"] = [p for p in stage["params"] if "conf/evaluate/default.yaml" not in p]
    missing = missing_inputs("evaluate@xnor", stage)
    assert {"src/xnornet/benchmark/timing.py", "metrics/machine.json", "kernels/_xnor.pyx"} <= set(missing)
    assert "conf/evaluate/default.yaml:(whole file)" in missing


def test_the_machine_stage_always_runs_and_the_speed_stages_follow_it():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["machine"]["always_changed"] is True
    assert "metrics/machine.json" in stages["bench"]["deps"]
    assert "metrics/machine.json" in stages["evaluate"]["do"]["deps"]
