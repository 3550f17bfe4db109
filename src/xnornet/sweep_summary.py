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

from xnornet.errors import XnornetError, report_failure
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


def sweep_runs(client, parent_run_ids: list[str]) -> list[Run]:
    """The child runs of one or more sweeps, refusing a seed that finished twice in one group.

    Several parents serve a sweep run in parts (seed 0 today, seeds 1 and 2 tomorrow); a
    duplicate would weigh one seed twice in the mean, so it is an error, not a silent choice.
    """
    runs: list[Run] = []
    seen: dict[tuple[str, int], str] = {}
    for parent_id in parent_run_ids:
        parent = client.get_run(parent_id)
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.sweep_id = '{parent_id}'"
        )
        for run in children:
            if run.info.status == "FINISHED" and "test_acc" in run.data.metrics:
                key = (group_key(json.loads(run.data.tags.get("sweep_values", "{}"))), seed_of(run))
                if key in seen:
                    raise XnornetError(
                        f"sweep runs {seen[key]} and {run.info.run_id} both finished {key[0]} "
                        f"with seed {key[1]}: give each seed once (leave one parent out)"
                    )
                seen[key] = run.info.run_id
            runs.append(run)
    return runs


def summarize_sweep(tracking_uri: str, parent_run_id: str | list[str], out: Path | None) -> list[dict]:
    """Summarize a sweep from the store, e.g. one that was stopped before its end wrote it.

    Given several parent runs, their child runs are pooled into one summary: a sweep stopped
    early and then finished by a second sweep over the seeds that were missing.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent_ids = [parent_run_id] if isinstance(parent_run_id, str) else list(parent_run_id)
    rows = summarize(sweep_runs(client, parent_ids))
    if out is not None:
        overrides = [client.get_run(p).data.tags.get("sweep_overrides", "") for p in parent_ids]
        if len(parent_ids) == 1:
            sweep = {"parent_run_id": parent_ids[0], "overrides": overrides[0]}
        else:
            sweep = {"parent_run_ids": parent_ids, "overrides": overrides}
        write_summary(out, sweep, rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m xnornet.sweep_summary", description=summarize_sweep.__doc__
    )
    parser.add_argument(
        "parent_run_id", nargs="+", help="the sweep's parent run (its run id in mlflow ui); several pool"
    )
    parser.add_argument(
        "--out", type=Path, help="write the summary JSON here (e.g. metrics/sweeps/seeds.json)"
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args(argv)
    try:
        rows = summarize_sweep(args.tracking_uri, args.parent_run_id, args.out)
    except Exception as e:  # an unknown run id or a duplicate seed: one line, not a traceback
        report_failure("sweep_summary", e)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
