"""dvc.yaml read as the dependency and params tests need it (shared by test_dvc_deps and
test_dvc_params, which must not import each other)."""

from __future__ import annotations

import yaml

from conftest import REPO


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages with foreach expanded: name → {cmd, deps, params}."""
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        for item in stage["foreach"]:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            stages[f"{name}@{item}"] = yaml.safe_load(text)
    return stages


def declared_params(stage: dict) -> dict[str, set[str] | None]:
    """conf file → the keys it declares, or None for the whole file."""
    params: dict[str, set[str] | None] = {}
    for entry in stage.get("params", []):
        for path, keys in entry.items() if isinstance(entry, dict) else [("params.yaml", [entry])]:
            params[path] = None if not keys else set(keys)
    return params
