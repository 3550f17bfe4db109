"""What the report run logs, so that `mlflow ui` shows every figure of reports/results.md whatever
`dvc repro` skipped.

DVC reruns a speed stage only on a new machine: after a repro on the same one, evaluate, bench
and bench_network open no run, and their figures exist only in the committed metrics files. The
report reads those files anyway, so its run carries them: the headline figures as metrics
(``xnor.faster``, as `dvc metrics show` names them), every metrics JSON and plot PNG it read as
artifacts (under ``metrics/`` and ``plots/``, as in the repository), and tags saying which commit
last changed the metrics and which machine measured them (metrics/machine.json).
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from xnornet.reporting.headline import headline

if TYPE_CHECKING:
    from xnornet.tracking import StageRun


def flat_headline(metrics: Path) -> dict[str, float]:
    """The headline figures under the names `dvc metrics show` prints, so the two dashboards agree."""
    return flatten(headline(metrics))


def flatten(groups: dict[str, dict[str, float]]) -> dict[str, float]:
    """``group.key`` → value: MLflow metrics are flat.

    Examples:
        >>> flatten({"xnor": {"acc": 0.98, "faster": 6.5}, "layer": {"faster_min": 3.0}})
        {'xnor.acc': 0.98, 'xnor.faster': 6.5, 'layer.faster_min': 3.0}
    """
    return {f"{group}.{key}": value for group, figures in groups.items() for key, value in figures.items()}


def figure_files(metrics: Path, plots: Path) -> list[tuple[Path, str]]:
    """Every metrics JSON (sweeps/ and paper/ included) and plot PNG, each with the artifact folder
    that mirrors its place in the repository (metrics/paper/train_fp.json and metrics/train_fp.json
    are different files with the same name)."""
    found = [(p, Path("metrics", p.parent.relative_to(metrics))) for p in sorted(metrics.rglob("*.json"))]
    found += [(p, Path("plots", p.parent.relative_to(plots))) for p in sorted(plots.rglob("*.png"))]
    return [(path, folder.as_posix()) for path, folder in found]


def measured_tags(metrics: Path) -> dict[str, str]:
    """Where the figures come from: the commit that last changed the metrics folder (and whether it
    has changes not committed yet), and the machine that measured them."""
    tags = {"metrics_commit": _git(metrics, "log", "-1", "--format=%H", "--", ".") or "unknown"}
    tags["metrics_uncommitted"] = str(bool(_git(metrics, "status", "--porcelain", "--", "."))).lower()
    machine_file = metrics / "machine.json"
    if machine_file.is_file():
        machine = json.loads(machine_file.read_text())
        tags |= {
            f"machine_{key}": str(machine[key]) for key in ("cpu", "cores", "kernel_isa") if key in machine
        }
    return tags


def _git(folder: Path, *args: str) -> str:
    """git run in ``folder`` (the repository holding the metrics, wherever the stage runs)."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def log_figures(run: StageRun, figures: dict[str, float], metrics: Path, plots: Path) -> None:
    """Log ``figures`` as the run's metrics and every figure file as an artifact, each call through
    the run's outage record (a store lost now costs the report nothing; the warning names the rest)."""
    run.record(figures)
    for path, folder in figure_files(metrics, plots):
        log = functools.partial(run.client.log_artifact, run.run_id, str(path), folder)
        run.outage.call("artifacts", [f"{folder}/{path.name}"], log)
