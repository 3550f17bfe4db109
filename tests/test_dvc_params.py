"""`dvc exp run -S <conf file>:<key>=<value>` works on every conf file dvc.yaml declares as params.

DVC sets a value by loading the file alone, applying the override and resolving every
interpolation in it (dvc.utils.hydra.apply_overrides), so a params file must hold plain values
only: an interpolation into another file fails (``Interpolation key 'train.max_epochs' not
found``), and one into the same file would be written back resolved, cutting the wire. These tests
run DVC's own code on copies of the files; the slow test in test_pipeline runs `dvc exp run`.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from conftest import REPO
from dvc_yaml import declared_params, dvc_stages

PARAMS_FILES = sorted({path for stage in dvc_stages().values() for path in declared_params(stage)})


def leaves(node, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}{key}.")]
    return [] if isinstance(node, list) else [(prefix[:-1], node)]


def changed(value):
    """Another value of the same type, as a command-line override spells it."""
    if isinstance(value, bool):
        return not value, str(not value).lower()
    if isinstance(value, int | float):
        return value + 1, str(value + 1)
    return f"{value}x", f"'{value}x'"  # quoted: a URL's ":" and "/" are override syntax


@pytest.mark.parametrize("rel", PARAMS_FILES)
def test_every_params_file_takes_a_dvc_set_param(rel, tmp_path):
    """A scalar of the file set (DVC resolves the whole file for any one): exactly that key
    changes, nothing else is rewritten. The first and the last scalar, to reach nested keys too."""
    before = yaml.safe_load((REPO / rel).read_text())
    values = {k: v for k, v in before.items() if k != "defaults"}
    scalars = [leaf for leaf in leaves(values) if leaf[1] is not None]
    for key, value in dict([scalars[0], scalars[-1]]).items():
        copy = tmp_path / "params.yaml"
        shutil.copy(REPO / rel, copy)
        new, spelled = changed(value)
        apply_overrides(copy, [f"{key}={spelled}"])
        expected = yaml.safe_load((REPO / rel).read_text())
        node = expected
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = new
        assert yaml.safe_load(copy.read_text()) == expected, f"{rel}:{key}"


def test_the_readme_experiment_command_sets_both_files(tmp_path):
    """The README's `dvc exp run -S 'conf/train/default.yaml:max_epochs=20' -S
    'conf/model/xnor.yaml:train.max_epochs=21'`, DVC's part of it."""
    readme = [("conf/train/default.yaml", "max_epochs=20", ["max_epochs"], 20),
              ("conf/model/xnor.yaml", "train.max_epochs=21", ["train", "max_epochs"], 21)]  # fmt: skip
    for rel, override, path, value in readme:
        copy = tmp_path / rel.replace("/", "_")
        shutil.copy(REPO / rel, copy)
        apply_overrides(copy, [override])
        node = yaml.safe_load(copy.read_text())
        for part in path:
            node = node[part]
        assert node == value
        assert copy.read_text().startswith((REPO / rel).read_text().splitlines()[0])  # comments kept


def test_params_files_hold_no_interpolations():
    """The wiring files (conf/paths, conf/datamodule, conf/train/{optimizer,scheduler,trainer},
    conf/logger) are dependencies in dvc.yaml instead: their interpolations stay Hydra's."""
    found = [f"{rel}:{key}" for rel in PARAMS_FILES
             for key, value in leaves(yaml.safe_load((REPO / rel).read_text()))
             if isinstance(value, str) and "${" in value]  # fmt: skip
    assert found == []
