"""What a stage does when its tracking store stops answering after the stage's run was opened.

Once outputs are being written, losing the server must not lose the work: the stage finishes its
DVC outputs and then prints one line naming what did not reach MLflow. The first failed call
marks the store down for the rest of the run, so a dead server costs one bounded wait
(xnornet.tracking_http) instead of one per logged value; everything later is only listed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from mlflow.exceptions import MlflowException

from xnornet.tracking_http import reason

# what a lost store raises: MLflow's wrapper, or the transport's own error on an artifact upload
TRACKING_ERRORS = (MlflowException, requests.RequestException, OSError)
SHOWN = 8  # names listed in the line before "and N more"


@dataclass
class Outage:
    """The calls of one run that did not reach its tracking store."""

    uri: str
    run_id: str
    cause: str | None = None
    metrics: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def call(self, kind: str, names: list[str], fn: Callable[[], object]) -> bool:
        """Run ``fn``, which logs ``names`` of ``kind`` (metrics, artifacts, or other: "its end
        status"), unless the store is known down; a failure marks it down. True if it got through."""
        if self.cause is None:
            try:
                fn()
                return True
            except TRACKING_ERRORS as e:
                self.cause = reason(e)
        listed = getattr(self, kind)
        listed.extend(n for n in names if n not in listed)
        return False

    def line(self, stage: str) -> str | None:
        """The warning for a run that lost its store; None when every call got through."""
        if self.cause is None:
            return None
        parts = [f"{kind} {_names(names)}" for kind, names in
                 (("metrics", self.metrics), ("artifacts", self.artifacts)) if names]  # fmt: skip
        missing = "; ".join([*parts, *self.other])
        return (
            f"warning: {stage}: the MLflow store {self.uri} stopped answering ({self.cause}); run "
            f"{self.run_id} lacks {missing}. The stage's outputs are complete; rerun it with the "
            "store up to record them"
        )

    def warn(self, stage: str) -> None:
        text = self.line(stage)
        if text is not None:
            print(text, file=sys.stderr, flush=True)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"
