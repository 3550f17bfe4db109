"""The lr schedules through the real config and a real Lightning run: per batch or per epoch."""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import quiet_trainer
from xnornet.builders import build_datamodule, build_module, build_net
from xnornet.nn.schedules import WarmupCosine


def lrs_after_fit(cfg, steps_per_epoch: int, epochs: int) -> tuple[float, list[float]]:
    """Fit, recording the lr seen by every optimizer step; returns the peak lr and the record."""
    module = build_module(cfg, build_net(cfg))
    seen: list[float] = []

    trainer = quiet_trainer(max_epochs=epochs, limit_train_batches=steps_per_epoch, limit_val_batches=0)
    original = module.training_step

    def step(batch, batch_idx):
        seen.append(trainer.optimizers[0].param_groups[0]["lr"])
        return original(batch, batch_idx)

    module.training_step = step
    trainer.fit(module, datamodule=build_datamodule(cfg))
    return cfg.train.lr, seen


def test_cosine_warms_up_then_decays_every_batch_to_zero(tiny_data_dir, cfg_train):
    cfg = cfg_train("xnor", "train/scheduler=cosine", "train.warmup_fraction=0.25", "train.lr=0.01")
    peak, lrs = lrs_after_fit(cfg, steps_per_epoch=2, epochs=4)
    assert len(lrs) == 8
    assert lrs[0] == pytest.approx(peak / 2) and lrs[1] == pytest.approx(peak)  # 2 warm-up steps
    assert lrs[2] == pytest.approx(peak)  # the cosine starts at the peak
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))  # falls at every step, not per epoch
    assert lrs[-1] < 0.1 * peak  # step 7 of 8: 1/2·(1 + cos(5π/6)) = 0.067 of the peak


def test_step_schedule_changes_only_at_epoch_ends(tiny_data_dir, cfg_train):
    cfg = cfg_train("xnor", "train/scheduler=step", "train.lr_step_epochs=1", "train.lr=0.01")
    peak, lrs = lrs_after_fit(cfg, steps_per_epoch=2, epochs=2)
    assert lrs == pytest.approx([peak, peak, peak / 10, peak / 10])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"total_steps": 0}, "total_steps"), ({"total_steps": 10, "warmup_fraction": 1.0}, "warmup_fraction"),
     ({"total_steps": 10, "final_factor": 2.0}, "final_factor")],
)  # fmt: skip
def test_bad_schedule_values_are_named(kwargs, match):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=match):
        WarmupCosine(opt, **kwargs)
