"""The range of every numeric config key, checked before a stage runs.

A zero repeat count or a negative thread count used to surface as whatever the library deep
inside said (``StatisticsError: no median for empty data``); a table here names the key and the
range instead, for every stage at once, so a new key gets its check by one line, not a stage edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from xnornet.errors import XnornetError

_MISSING = object()


@dataclass(frozen=True)
class Number:
    """An int (``integer``) or a finite float in [least, most]; ``above`` excludes ``least``;
    ``words`` such as "all" are also accepted; ``nullable`` accepts null."""

    least: float
    integer: bool = True
    above: bool = False
    most: float = math.inf
    words: tuple[str, ...] = ()
    nullable: bool = False

    def expected(self, plural: bool = False) -> str:
        kind = (
            ("integers" if plural else "an integer")
            if self.integer
            else ("numbers" if plural else "a number")
        )
        low = f"> {self.least:g}" if self.above else f"≥ {self.least:g}"
        high = "" if self.most == math.inf else f" and ≤ {self.most:g}"
        extra = "".join(f" or '{w}'" for w in self.words) + (" or null" if self.nullable else "")
        return f"{kind} {low}{high}{extra}"

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, str):
            return value in self.words
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value) or value > self.most:
            return False
        return value > self.least if self.above else value >= self.least


POSITIVE = Number(1)
COUNT = Number(0)  # warm-up rounds, a seed: zero is fine
THREADS = Number(1, words=("all",))
RATE = Number(0, integer=False, above=True)

RULES: dict[str, Number] = {
    "seed": COUNT,
    "train.max_epochs": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.lr": RATE,
    "train.weight_decay": Number(0, integer=False),
    "train.lr_step_epochs": POSITIVE,
    "train.lr_gamma": Number(0, integer=False, above=True, most=1),
    "train.warmup_fraction": Number(0, integer=False, most=1),
    "train.label_smoothing": Number(0, integer=False, most=0.5),
    "train.threads": Number(1, nullable=True),
    "train.devices": POSITIVE,
    "train.num_nodes": POSITIVE,
    "bench.warmup": COUNT,
    "bench.repeats": POSITIVE,
    "bench.peak_iters": POSITIVE,
    "bench.seed": COUNT,
    "bench.threads[]": THREADS,
    "bench.busy_core.rounds": POSITIVE,
    "bench_network.warmup": COUNT,
    "bench_network.repeats": POSITIVE,
    "bench_network.agreement_inputs": POSITIVE,
    "bench_network.seed": COUNT,
    "bench_network.batches[]": POSITIVE,
    "bench_network.threads[]": THREADS,
    "bench_network.calibration.batches": POSITIVE,
    "bench_network.calibration.batch_size": POSITIVE,
    "evaluate.batch_size": POSITIVE,
    "evaluate.threads": THREADS,
    "evaluate.warmup": COUNT,
    "evaluate.repeats": POSITIVE,
    "evaluate.tie_tolerance": Number(0, integer=False),
    "evaluate.nin.batch_size": POSITIVE,
    "evaluate.nin.repeats": POSITIVE,
}


def check_numeric_keys(cfg: DictConfig, reads: tuple[str, ...]) -> None:
    """Every key of ``RULES`` under the config keys a stage ``reads``, within its range (``key[]``:
    each list item); a stage never fails on a key it does not read."""
    for key, rule in RULES.items():
        name, each = key.removesuffix("[]"), key.endswith("[]")
        if not any(name == r or name.startswith(f"{r}.") for r in reads):
            continue
        value = OmegaConf.select(cfg, name, default=_MISSING)
        if value is _MISSING:
            continue
        if each:
            if not isinstance(value, ListConfig | list):
                raise XnornetError(f"{name}={value}: expected a list of {rule.expected(plural=True)}")
            bad = [v for v in value if not rule.accepts(v)]
            if bad or not value:
                shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
                raise XnornetError(
                    f"{name}={shown}: expected a non-empty list of {rule.expected(plural=True)}"
                )
        elif not rule.accepts(value):
            raise XnornetError(f"{name}={value}: expected {rule.expected()}")
