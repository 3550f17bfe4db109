"""A real `dvc exp run -S` in a temporary git copy of the repo on the tiny config, then `dvc exp
show` as a user reads it: the README's experiment command, on files DVC reads as params."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from conftest import make_idx_mirror
from tiny_repo import copy_repo, dvc, shrink_config

# What the README's front door prints for the experiments (docs/pipeline.md explains the flags).
EXP_SHOW = ["exp", "show", "--only-changed", "--drop", "[^:]*/[^:]*$", "--no-pager"]


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                   cwd=repo, check=True, capture_output=True)  # fmt: skip


@pytest.mark.slow
def test_dvc_exp_run_sets_params_files_and_exp_show_reads_them(tmp_path):
    repo = tmp_path / "repo"
    (tmp_path / "mirror").mkdir()
    copy_repo(repo)
    shrink_config(repo, make_idx_mirror(tmp_path / "mirror", n_train=400, n_test=100))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny")

    # the README's command, on the tiny recipe (1 epoch), and the seed in conf/config.yaml
    sets = ["-S", "conf/train/default.yaml:max_epochs=2", "-S", "conf/model/xnor.yaml:train.max_epochs=3",
            "-S", "conf/config.yaml:seed=1"]  # fmt: skip
    run = dvc(repo, "exp", "run", *sets, "train@xnor")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((repo / "metrics" / "train_xnor.json").read_text())["epochs"] == 3
    committed = subprocess.run(["git", "show", "HEAD:conf/model/xnor.yaml"], cwd=repo, capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
    xnor = yaml.safe_load((repo / "conf" / "model" / "xnor.yaml").read_text())
    assert xnor["model"] == yaml.safe_load(committed)["model"]  # the rest as it was: nothing resolved

    shown = dvc(repo, *EXP_SHOW, env={"COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr[-3000:]
    lines = shown.stdout.splitlines()
    assert max(map(len, lines)) <= 160, shown.stdout
    assert "…" not in shown.stdout, shown.stdout  # no column collapsed
    columns = next(line for line in lines if "Experiment" in line).split()
    for path, key in (("conf/train/default.yaml", "max_epochs"), ("conf/model/xnor.yaml", "train.max_epochs"),
                      ("conf/config.yaml", "seed")):  # fmt: skip
        assert key in columns or f"{path}:{key}" in columns, columns  # DVC names the file if keys clash
    experiment = shown.stdout.split("workspace", 1)[1]
    assert "3" in experiment and "1" in experiment

    table = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    exps = [e for row in table for e in (row.get("experiments") or [])]
    assert exps, table
    params = exps[0]["revs"][0]["data"]["params"]
    assert params["conf/model/xnor.yaml"]["data"]["train"]["max_epochs"] == 3
    assert params["conf/train/default.yaml"]["data"]["max_epochs"] == 2
    assert params["conf/config.yaml"]["data"]["seed"] == 1
