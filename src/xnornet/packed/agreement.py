"""Packed engine vs the trained PyTorch model: the same predictions, or a difference explained."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def agreement(engine: np.ndarray, reference: np.ndarray, labels: np.ndarray, tol: float) -> dict:
    """Accuracy of both, and where their predicted classes differ, whether it is an exact tie
    (the top two logits of either within ``tol``), the only difference allowed."""
    pe, pr = engine.argmax(1), reference.argmax(1)
    differ = np.flatnonzero(pe != pr)

    def gap(logits: np.ndarray) -> np.ndarray:
        top2 = np.sort(logits[differ], axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    ties = int(np.sum((gap(engine) <= tol) | (gap(reference) <= tol))) if len(differ) else 0
    return {
        "test_acc": round(float(np.mean(pe == labels)), 6),
        "torch_test_acc": round(float(np.mean(pr == labels)), 6),
        "agreement": round(float(np.mean(pe == pr)), 6),
        "disagreements": len(differ),
        "tie_disagreements": ties,
        "max_abs_logit_diff": float(np.abs(engine - reference).max()),
        # BN → sign as a float32 threshold rounds differently from torch's BN arithmetic: an input
        # within ~1e-7 of the threshold can flip one bit, moving that image's logits by 2α·|w|
        "images_logit_diff_over_1e-3": int(np.sum(np.abs(engine - reference).max(axis=1) > 1e-3)),
    }
