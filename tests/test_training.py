"""Real Lightning training on small synthetic data: every variant, outputs, MLflow, determinism."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import quiet_trainer
from xnornet.builders import build_datamodule, build_module, build_net
from xnornet.nn.layers import binary_layers
from xnornet.stages.train import main as train_stage


@pytest.mark.parametrize("variant", ["fp", "bwn", "xnor"])
def test_fast_dev_run_every_variant(variant, tmp_path, tiny_data_dir, cfg_train):
    cfg = cfg_train(variant)
    module = build_module(cfg, build_net(cfg))
    trainer = quiet_trainer(fast_dev_run=True)
    trainer.fit(module, datamodule=build_datamodule(cfg))
    assert trainer.state.finished


def test_latent_weights_are_clipped_after_each_step(tmp_path, tiny_data_dir, cfg_train):
    cfg = cfg_train("xnor", "train.lr=1.0")
    net = build_net(cfg)
    module = build_module(cfg, net)
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=build_datamodule(cfg))
    for layer in binary_layers(net):
        assert layer.weight.abs().max() <= 1.0
    # full-precision layers are not clipped: with lr=1.0 some weight leaves [-1, 1]
    assert max(p.abs().max() for n, p in net.named_parameters() if n.startswith("0.")) > 1.0


def test_train_stage_writes_outputs_and_mlflow_run(tmp_path, tiny_data_dir, cfg_train):
    cfg = cfg_train("xnor")
    train_stage(cfg)
    saved = json.loads((tmp_path / "metrics" / "train_xnor.json").read_text())
    for key in ("test_acc", "val_acc", "epochs", "train_seconds", "params_total", "params_binary"):
        assert key in saved
    assert 0.0 <= saved["test_acc"] <= 1.0 and saved["epochs"] == 1
    assert saved["params_binary"] == 20 * 50 * 25 + 800 * 500
    rows = list(csv.DictReader(open(tmp_path / "plots" / "train_xnor.csv")))
    assert [r["epoch"] for r in rows] == ["1"]
    ckpt = torch.load(tmp_path / "models" / "xnor.ckpt", weights_only=False)
    assert "state_dict" in ckpt

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("xnornet")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "train-xnor"
    assert run.data.tags["variant"] == "xnor" and run.data.tags["dvc_stage"] == "train@xnor"
    assert run.data.metrics["test_acc"] == pytest.approx(saved["test_acc"])
    assert "val_acc" in run.data.metrics and "train_loss_epoch" in run.data.metrics
    assert run.data.params["model.binarization.inputs"] == "True"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist/train.npz", "mnist/test.npz"}
    train_input = inputs["mnist/train.npz"]
    assert train_input.dataset.source.endswith("train.npz") and len(train_input.dataset.digest) == 32
    assert {t.key: t.value for t in train_input.tags}["mlflow.data.context"] == "training"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"xnor.ckpt", "train_xnor.json", "train_xnor.csv"} <= artifacts


def test_training_is_deterministic_for_a_fixed_seed(tmp_path, tiny_data_dir, cfg_train):
    results = []
    for _ in range(2):
        cfg = cfg_train("bwn")
        train_stage(cfg)
        state = torch.load(tmp_path / "models" / "bwn.ckpt", weights_only=False)["state_dict"]
        results.append(state)
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=0, atol=0)


def one_line_error(stage, cfg, capsys) -> str:
    """What the user sees when a stage refuses its input: exit status 1 and one line."""
    with pytest.raises(SystemExit) as exit_info:
        stage(cfg)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_missing_dataset_is_one_clear_error(tmp_path, capsys, cfg_train):
    cfg = cfg_train("fp")
    assert "train.npz: not found; run `dvc repro fetch`" in one_line_error(train_stage, cfg, capsys)
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize("override,match", [("train.max_epochs=0", "train.max_epochs"),
                                            ("data.val_size=100000", "data.val_size")])  # fmt: skip
def test_bad_train_config_is_rejected(override, match, tmp_path, tiny_data_dir, capsys, cfg_train):
    cfg = cfg_train("fp", override)
    assert match in one_line_error(train_stage, cfg, capsys)


def test_random_shift_moves_content_and_fills_background():
    from xnornet.data.datamodule import random_shift

    x = torch.full((64, 1, 6, 6), -0.5)
    x[:, :, 2:4, 2:4] = 3.0
    torch.manual_seed(0)
    out = random_shift(x, 2, fill=-0.5)
    assert out.shape == x.shape
    assert torch.all((out == -0.5) | (out == 3.0))
    assert torch.all((out == 3.0).sum(dim=(1, 2, 3)) == 4)  # the blob is never cut at ±2 px
    assert len({tuple(torch.nonzero(o[0] == 3.0)[0].tolist()) for o in out}) > 5
    torch.manual_seed(0)
    assert torch.equal(out, random_shift(x, 2, fill=-0.5))


def test_val_in_train_trains_on_every_image_and_still_monitors_the_split(tmp_path, tiny_data_dir, cfg_train):
    held_out = build_datamodule(cfg_train("fp"))
    everything = build_datamodule(cfg_train("fp", "data.val_in_train=true"))
    held_out.setup(), everything.setup()
    assert (len(held_out.train_set), len(held_out.val_set)) == (300, 100)  # 400 images, 100 held out
    assert (len(everything.train_set), len(everything.val_set)) == (400, 100)
    val_rows = {row.numpy().tobytes() for row in held_out.val_set.x}  # the same split, now trained on
    assert val_rows <= {row.numpy().tobytes() for row in everything.train_set.x}


def test_label_smoothing_changes_the_training_loss_only(tmp_path, tiny_data_dir, cfg_train):
    losses = {}
    for smoothing in (0.0, 0.2):
        cfg = cfg_train("fp", f"train.label_smoothing={smoothing}")
        torch.manual_seed(0)
        module = build_module(cfg, build_net(cfg)).eval()
        data = build_datamodule(cfg)
        data.setup()
        batch = next(iter(data.val_dataloader()))
        logged = losses[smoothing] = {}
        module.log = lambda name, value, logged=logged, **_: logged.__setitem__(
            name, float(torch.as_tensor(value).detach())
        )
        module._step(batch, "train"), module._step(batch, "val")
    assert losses[0.2]["train_loss"] != pytest.approx(losses[0.0]["train_loss"])
    assert losses[0.2]["val_loss"] == losses[0.0]["val_loss"]  # held-out loss stays plain cross-entropy
    assert losses[0.0]["train_loss"] == losses[0.0]["val_loss"]
