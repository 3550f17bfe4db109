"""Learning-rate schedules stepped every batch: a short run has too few epochs for epoch steps.

A step schedule (×0.1 every few epochs) makes a sudden jump that a binary network, whose signs
flip with every update, answers with a dip in accuracy; a cosine decay with a short linear
warm-up lowers the lr smoothly and ends near zero, where the signs settle.
"""

from __future__ import annotations

import math

import torch


class WarmupCosine(torch.optim.lr_scheduler.LambdaLR):
    """lr × (a linear warm-up over the first ``warmup_fraction`` of the run, then half a cosine
    down to ``final_factor``).

    ``interval = "step"`` tells the LightningModule to step it every batch; ``total_steps`` comes
    from the trainer (the number of optimizer steps of the whole run).

    Examples:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = WarmupCosine(opt, total_steps=10, warmup_fraction=0.2)
        >>> [round(s.lr_lambda(i), 3) for i in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """

    interval = "step"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.0,
        final_factor: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"WarmupCosine: total_steps must be at least 1, got {total_steps}")
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"WarmupCosine: warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0 <= final_factor <= 1:
            raise ValueError(f"WarmupCosine: final_factor must be in [0, 1], got {final_factor}")
        self.total_steps, self.final_factor = total_steps, final_factor
        self.warmup_steps = round(warmup_fraction * total_steps)
        super().__init__(optimizer, self.lr_lambda)

    def lr_lambda(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))
