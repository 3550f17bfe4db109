"""Shift-based AdaMax (BinaryNet, Courbariaux, Hubara et al. 2016, Algorithm 4).

AdaMax's two multiplications per update, by the bias-corrected step α/(1 − β1^t) and by 1/u, become
multiplications by powers of two (AP2), i.e. bit shifts:

    m ← β1·m + (1 − β1)·g
    u ← max(β2·u, |g| + eps)
    θ ← θ − AP2(α / (1 − β1^t)) · m · AP2(1 / u)

Each AP2 is within a factor √2 of what it replaces, so every step points the same way as plain
AdaMax's (``torch.optim.Adamax``) and is between 1/2 and 2 times as long; where α/(1 − β1^t) and u
are already powers of two it is the same step. ``tests/test_shift_method.py`` checks both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from xnornet.nn.quantizers import power_of_two


class ShiftAdaMax(torch.optim.Optimizer):
    """AdaMax whose per-step scalings are powers of two; ``weight_decay`` is added to the gradient
    (L2), as torch's Adamax does."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"shift_adamax: need lr > 0, 0 <= betas < 1, eps > 0, weight_decay >= 0; got "
                             f"lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_inf"] = torch.zeros_like(p)
                state["step"] += 1
                m, u = state["exp_avg"], state["exp_inf"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                torch.maximum(u.mul_(beta2), g.abs().add_(group["eps"]), out=u)
                step = power_of_two(torch.tensor(group["lr"] / (1 - beta1 ** state["step"]), dtype=p.dtype))
                p.sub_(step * m * power_of_two(u.reciprocal()))
        return loss
