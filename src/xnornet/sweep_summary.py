"""A sweep's runs reduced to mean ± std over seeds: what a single seed's 0.1% margin cannot show.

The sweep callback calls ``summarize`` when the sweep ends; the rows go to the parent run and,
when the sweep config names one (``sweep_summary``), to a JSON file the report reads.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from mlflow.entities import Run

from xnornet.files import write_metrics

METRICS = ("test_acc", "val_acc")


def group_key(values: dict[str, str]) -> str:
    """A run's swept values except the seed, as ``key=value`` words: the row it belongs to."""
    return " ".join(f"{k}={v}" for k, v in sorted(values.items()) if k != "seed") or "all"


def seed_of(run: Run) -> int:
    """The seed a sweep job ran with (-1 when the sweep did not vary it)."""
    return int(json.loads(run.data.tags.get("sweep_values", "{}")).get("seed", -1))


def summarize(runs: list[Run]) -> list[dict]:
    """One row per group of finished runs: n, the seeds, and mean/std/values of each metric.

    std is the sample standard deviation (n − 1), 0 for a single run.

    Examples:
        >>> from mlflow.entities import Run, RunData, RunInfo, Metric, RunTag
        >>> def run(seed, acc):
        ...     info = RunInfo("r", "0", "u", "FINISHED", 0, 0, "active")
        ...     tags = [RunTag("sweep_values", f'{{"model": "xnor", "seed": "{seed}"}}')]
        ...     return Run(info, RunData(metrics=[Metric("test_acc", acc, 0, 0)], tags=tags))
        >>> row, = summarize([run(0, 0.99), run(1, 0.993), run(2, 0.992)])
        >>> row["group"], row["seeds"], round(row["test_acc_mean"], 4), round(row["test_acc_std"], 4)
        ('model=xnor', [0, 1, 2], 0.9917, 0.0015)
    """
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.info.status == "FINISHED" and "test_acc" in run.data.metrics:
            groups[group_key(json.loads(run.data.tags.get("sweep_values", "{}")))].append(run)
    rows = []
    for key in sorted(groups):
        members = sorted(groups[key], key=seed_of)
        row = {"group": key, "n": len(members), "seeds": [seed_of(r) for r in members]}
        for metric in METRICS:
            values = [r.data.metrics[metric] for r in members if metric in r.data.metrics]
            if values:
                row[f"{metric}_values"] = [round(v, 6) for v in values]
                row[f"{metric}_mean"] = round(statistics.fmean(values), 6)
                row[f"{metric}_std"] = round(statistics.stdev(values), 6) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def write_summary(path: Path, sweep: dict, rows: list[dict]) -> None:
    """The summary JSON: what was swept (overrides, parent run) and its rows."""
    write_metrics(path, {**sweep, "rows": rows})
