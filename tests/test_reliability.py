"""Faults a reproducibility tool must survive: a training run killed mid-epoch resumes to the same
result, a stage killed mid-write leaves no half-written output, parallel writers lose nothing, a
second `dvc repro` is refused by DVC's lock, and a rerun with the same seed is bit-identical."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

import xnornet.files
from conftest import compose_config, make_idx_mirror, synthetic_digits, tiny_overrides
from tiny_repo import copy_repo, dvc, shrink_config
from xnornet.files import write_metrics
from xnornet.nn.resume import ResumeState, config_digest, resumable
from xnornet.packed.file_format import load_packed
from xnornet.stages import only
from xnornet.stages.bench import main as bench_stage
from xnornet.stages.evaluate import main as evaluate_stage
from xnornet.stages.pack import main as pack_stage
from xnornet.stages.train import main as train_stage
from xnornet.tracking import ensure_experiment

WALL_CLOCK = ("train_seconds", "seconds_per_epoch")  # the only fields two equal runs differ in


def result_fields(metrics_file: Path) -> dict:
    """A training metrics file less its wall-clock fields, which differ between any two runs."""
    metrics = json.loads(metrics_file.read_text())
    return {k: v for k, v in metrics.items() if k not in WALL_CLOCK}


def train_command(out: Path, data_dir: Path, *extra: str) -> list[str]:
    """`python -m xnornet train` on the tiny data, every output (and the resume checkpoint) in ``out``."""
    overrides = [o for o in tiny_overrides(out, "xnor") if not o.startswith("paths.data_dir")]
    return [sys.executable, "-m", "xnornet", "train", *overrides, f"paths.data_dir={data_dir}",
            f"train.checkpoint_dir={out}/checkpoints", *extra]  # fmt: skip


# ---------------------------------------------------------------- 1. interruption and resume


def test_config_digest_names_the_recipe_not_the_display(tmp_path, tiny_data_dir):
    base = tiny_overrides(tmp_path, "xnor")
    files = [tiny_data_dir / "train.npz", tiny_data_dir / "test.npz"]

    def digest_of(overrides):  # as the train stage computes it: on the config cut to its reads
        return config_digest(only(compose_config(overrides), train_stage.reads), files)

    digest = digest_of(base)
    assert digest == digest_of([*base, "train.progress_bar=true"])
    assert digest == digest_of([*base, "train.checkpoint_dir=elsewhere"])
    assert digest == digest_of([*base, "logger.experiment=elsewhere", "paths.plots_dir=elsewhere"])
    assert digest == digest_of([*base, "bench.repeats=2"])  # not read by the train stage
    assert digest != digest_of([*base, "train.lr=0.02"])
    assert digest != digest_of([*base, "seed=1"])
    assert digest != digest_of([*base, "model.binarization.center_weights=true"])
    images, labels = synthetic_digits(100, seed=7)  # other data under the same file name
    np.savez(tiny_data_dir / "test.npz", images=images, labels=labels)
    assert digest != digest_of(base)


def test_foreign_or_damaged_checkpoint_is_not_resumed(tmp_path, capsys):
    path = tmp_path / "last.ckpt"
    assert resumable(path, "a" * 64) is None  # none yet: nothing said
    assert capsys.readouterr().out == ""
    state = {"config_digest": "b" * 64, "mlflow_run_id": None, "rng": {}}
    torch.save({"epoch": 2, "callbacks": {ResumeState.__qualname__: state}}, path)
    assert resumable(path, "b" * 64)["epoch"] == 2
    assert "resuming after epoch 3" in capsys.readouterr().out
    assert resumable(path, "a" * 64) is None
    assert "different config or data (digest bbbbbbbbbbbb, this run aaaaaaaaaaaa)" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert resumable(path, "b" * 64) is None
    assert "not a resumable checkpoint" in capsys.readouterr().out


def test_a_foreign_checkpoint_is_replaced_by_a_fresh_run(tmp_path, tiny_data_dir, cfg_train, capsys):
    ckpt = tmp_path / "checkpoints" / "bwn" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    state = {"config_digest": "0" * 64, "mlflow_run_id": None, "rng": {}}
    torch.save({"epoch": 5, "callbacks": {ResumeState.__qualname__: state}}, ckpt)
    train_stage(cfg_train("bwn", f"train.checkpoint_dir={tmp_path}/checkpoints"))
    assert "different config or data" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics" / "train_bwn.json").read_text())["epochs"] == 1
    assert not (tmp_path / "checkpoints").exists()  # a finished run leaves no resume state


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(tmp_path):
    """SIGKILL a real `xnornet train` once its first epoch is checkpointed, rerun it: it resumes
    there and ends with the weights, curve and metrics of a run never interrupted."""
    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 600, 0), ("test", 100, 1)):
        images, labels = synthetic_digits(n, seed)
        np.savez(data / f"{split}.npz", images=images, labels=labels)
    extra = ("train.max_epochs=4", "train.batch_size=25", "train.threads=1")  # 20 steps an epoch
    reference, killed = tmp_path / "reference", tmp_path / "killed"

    first = subprocess.Popen(train_command(killed, data, *extra), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = killed / "checkpoints" / "xnor" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert ckpt.exists() and not (killed / "metrics").exists()

    rerun = subprocess.run(train_command(killed, data, *extra), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming after epoch" in rerun.stdout
    assert "weights_only" not in rerun.stdout + rerun.stderr  # no pickle load, no warning about one
    assert not (killed / "checkpoints").exists()
    uninterrupted = subprocess.run(train_command(reference, data, *extra), cwd=tmp_path,
                                   capture_output=True, text=True, timeout=600)  # fmt: skip
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    assert result_fields(killed / "metrics" / "train_xnor.json") == result_fields(
        reference / "metrics" / "train_xnor.json"
    )
    assert (killed / "plots" / "train_xnor.csv").read_bytes() == (
        reference / "plots" / "train_xnor.csv"
    ).read_bytes()
    ours, theirs = (
        torch.load(d / "models" / "xnor.ckpt", weights_only=True)["state_dict"] for d in (killed, reference)
    )
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    # the resumed run continued the killed run's MLflow run: one run, finished, every epoch in it
    client = MlflowClient(f"sqlite:///{killed}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) >= 4  # an epoch redone logs twice


# ---------------------------------------------------------------- 2. no half-written output


def test_a_writer_killed_mid_write_leaves_the_old_file_and_its_litter_goes_next_time(tmp_path):
    target = tmp_path / "out" / "result.json"
    write_metrics(target, {"old": 1})
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom xnornet.files import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp, open(tmp, 'w') as f:\n"
         "    f.write('{\"half'); f.flush(); print('writing', flush=True); time.sleep(120)\n",
         str(target)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert json.loads(target.read_text()) == {"old": 1}
    (litter,) = [p for p in target.parent.iterdir() if p != target]
    assert litter.name.startswith(f".result.json.{writer.pid}.")
    live = target.parent / f".result.json.{os.getpid()}.inflight"  # a live writer's folder stays
    live.mkdir()

    write_metrics(target, {"new": 2})
    assert json.loads(target.read_text()) == {"new": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == [live.name, "result.json"]


class SimulatedCrash(BaseException):
    """Not an Exception: the stage's own error handling does not catch it, as it cannot catch a kill."""


class CrashingOs:
    """``os`` for xnornet.files whose ``crash_at``-th rename first cuts the new file to half, then
    crashes: the moment a kill would leave the most behind."""

    def __init__(self, crash_at: int | None) -> None:
        self.crash_at, self.renames = crash_at, 0

    def __getattr__(self, name: str):
        return getattr(os, name)

    def replace(self, src, dst) -> None:
        self.renames += 1
        if self.renames == self.crash_at:
            src = Path(src)
            if src.is_file():
                src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
            raise SimulatedCrash(dst)
        os.replace(src, dst)


def complete(path: Path) -> bool:
    """Whether an output file is whole: it parses as what its name says."""
    data = path.read_bytes()
    if path.suffix == ".json":
        json.loads(data)
    elif path.suffix == ".csv":
        rows = list(csv.reader(data.decode().splitlines()))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows)
    elif path.suffix == ".png":
        assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
    elif path.suffix == ".packed":
        load_packed(path)
    elif path.suffix == ".md":
        assert data.startswith(b"|") and data.endswith(b"\n")
    return True


@pytest.fixture
def trained_bwn(tmp_path, tiny_data_dir, cfg_train, monkeypatch):
    """A tiny trained and packed BWN under tmp_path, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    cfg = cfg_train("bwn", f"train.checkpoint_dir={tmp_path}/checkpoints")
    train_stage(cfg)
    pack_stage(cfg)
    return cfg


TINY_CONV = "{name: c, kind: conv, batch: 2, c_in: 20, c_out: 17, k: 3, h: 6, w: 6, stride: 1, padding: 1}"
STAGES = {
    "pack": (pack_stage, [], ["models/bwn.packed"]),
    "evaluate": (evaluate_stage, ["evaluate.warmup=1", "evaluate.repeats=1", "evaluate.nin.enabled=false"],
                 ["metrics/packed_bwn.json", "reports/memory_bwn.csv", "reports/memory_bwn.md"]),
    "bench": (bench_stage, ["bench.warmup=1", "bench.repeats=2", "bench.peak_iters=100000",
                            "bench.threads=[1]", f"bench.shapes=[{TINY_CONV}]", "bench.peers=[]"],
              ["metrics/bench.json", "plots/bench.csv", "plots/bench.png", "plots/bench_threads.png",
               "plots/bench_peers.png"]),
}  # fmt: skip


@pytest.mark.parametrize(
    "stage", [pytest.param(s, marks=pytest.mark.slow) if s == "bench" else s for s in STAGES]
)  # the bench: 6 runs
def test_a_stage_crashing_in_each_write_leaves_no_partial_output(stage, trained_bwn, tmp_path, monkeypatch):
    """Crash the stage in its 1st, 2nd, ... output write: every output file then present is
    whole, no temporary file is left, and the next run writes them all."""
    run, overrides, outputs = STAGES[stage]
    cfg = compose_config([*tiny_overrides(tmp_path, "bwn"), *overrides])
    for out in outputs:
        (tmp_path / out).unlink(missing_ok=True)
    counting = CrashingOs(None)
    monkeypatch.setattr(xnornet.files, "os", counting)
    run(cfg)
    writes = counting.renames
    assert writes >= len(outputs)
    for out in outputs:
        (tmp_path / out).unlink()

    for crash_at in range(1, writes + 1):
        monkeypatch.setattr(xnornet.files, "os", CrashingOs(crash_at))
        with pytest.raises(SimulatedCrash):
            run(cfg)
        for out in outputs:
            assert not (tmp_path / out).exists() or complete(tmp_path / out), (crash_at, out)
        for folder in {(tmp_path / out).parent for out in outputs}:
            assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], crash_at

    monkeypatch.setattr(xnornet.files, "os", os)
    run(cfg)
    assert all(complete(tmp_path / out) for out in outputs)


# ---------------------------------------------------------------- 3. concurrency


@pytest.mark.slow
def test_eight_parallel_trainings_record_every_run_in_one_mlflow_store(tmp_path, tiny_data_dir):
    db = tmp_path / "mlflow.db"
    ensure_experiment(compose_config(tiny_overrides(tmp_path, "fp")))  # the store exists first
    jobs = []
    for seed in range(8):
        out = tmp_path / f"job{seed}"
        store = (f"logger.tracking_uri=sqlite:///{db}", f"logger.artifact_dir={tmp_path}/mlartifacts")
        cmd = train_command(out, tiny_data_dir, f"seed={seed}", "train.threads=1", *store)
        jobs.append(
            subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )
    for job in jobs:
        _, err = job.communicate(timeout=900)
        assert job.returncode == 0, err[-3000:]

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    by_seed = {r.data.params["seed"]: r for r in runs}
    assert set(by_seed) == {str(s) for s in range(8)}
    for seed, run in by_seed.items():
        saved = json.loads((tmp_path / f"job{seed}" / "metrics" / "train_xnor.json").read_text())
        for key, value in saved.items():
            if isinstance(value, int | float):
                assert run.data.metrics[key] == pytest.approx(value), (seed, key)
        assert {"val_acc", "val_loss", "train_loss_epoch", "test_loss"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"xnor.ckpt", "train_xnor.json", "train_xnor.csv"} <= artifacts


@pytest.mark.slow
def test_a_second_dvc_repro_is_refused_by_the_lock_and_corrupts_nothing(tmp_path):
    repo, mirror = tmp_path / "repo", tmp_path / "mirror"
    mirror.mkdir()
    copy_repo(repo)
    shrink_config(repo, make_idx_mirror(mirror, n_train=400, n_test=100))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert dvc(repo, "config", "core.analytics", "false").returncode == 0
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train@fp"], cwd=repo, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines = []
    for line in first.stdout:  # wait until it runs a stage, holding the lock
        lines.append(line)
        if "Running stage" in line:
            break
    second = dvc(repo, "repro", "train@fp")
    rest, _ = first.communicate(timeout=900)
    assert first.returncode == 0, "".join(lines) + rest
    assert second.returncode != 0
    assert "lock" in (second.stdout + second.stderr).lower(), second.stderr
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {"fetch", "train@fp"} <= set(lock["stages"])
    assert dvc(repo, "status", "train@fp").stdout.strip().endswith("up to date.")
    assert result_fields(repo / "metrics" / "train_fp.json")["epochs"] == 1


# ---------------------------------------------------------------- 4. determinism


@pytest.fixture
def two_runs(tmp_path, tiny_data_dir, cfg_train, monkeypatch) -> tuple[Path, Path]:
    """Train and pack twice with one seed, each run in its own output folder."""
    monkeypatch.chdir(tmp_path)
    for run in ("a", "b"):
        cfg = cfg_train(
            "xnor", *(f"paths.{kind}_dir={tmp_path}/{run}/{kind}" for kind in ("models", "metrics", "plots"))
        )
        train_stage(cfg)
        pack_stage(cfg)
    return tmp_path / "a", tmp_path / "b"


def test_two_runs_with_one_seed_give_identical_results(two_runs):
    """The same metrics but for the wall-clock fields (left out by name), the same curve, the same
    packed model and byte-identical `.packed` files."""
    a, b = two_runs
    assert result_fields(a / "metrics" / "train_xnor.json") == result_fields(
        b / "metrics" / "train_xnor.json"
    )
    assert (a / "plots" / "train_xnor.csv").read_bytes() == (b / "plots" / "train_xnor.csv").read_bytes()
    ours, theirs = (load_packed(d / "models" / "xnor.packed") for d in (a, b))
    assert ours.architecture == theirs.architecture and ours.info == theirs.info
    assert ours.tensors.keys() == theirs.tensors.keys()
    assert all(np.array_equal(ours.tensors[k], theirs.tensors[k]) for k in ours.tensors)
    # byte-identical as written: save_packed puts the safetensors header in canonical order
    assert (a / "models" / "xnor.packed").read_bytes() == (b / "models" / "xnor.packed").read_bytes()
