"""Lightning's MLflow logger on the run the train stage opened, surviving a store that goes away.

Lightning's own logger raises from the middle of training when a logging call fails, and retries
each call for minutes first; a server restarted during a long training would lose the run's
outputs with it. This one logs to a run opened beforehand (xnornet.tracking.open_run) and sends
every call through that run's Outage: once the store stops answering, training goes on and the
names of what was not logged are kept for the stage's closing line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from xnornet.tracking_http import unreachable
from xnornet.tracking_outage import TRACKING_ERRORS, Outage


class ResilientMLFlowLogger(MLFlowLogger):
    def __init__(self, *args: Any, outage: Outage | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outage = outage
        if outage is not None and rank_zero_only.rank == 0:
            try:  # look the run up now, while the store is known up: Lightning asks for its
                _ = self.experiment  # id and name at odd times (checkpoint folders), unguarded
            except TRACKING_ERRORS as e:
                raise unreachable(self._tracking_uri, e) from e

    def _through_outage(self, kind: str, names: list[str], fn: Callable[[], object]) -> None:
        if self._outage is None:
            fn()
        else:
            self._outage.call(kind, names, fn)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        log = super().log_metrics
        self._through_outage("metrics", list(metrics), lambda: log(metrics, step))

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        log = super().log_hyperparams
        self._through_outage("other", ["the module's hyperparameters"], lambda: log(params))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        end = super().finalize
        self._through_outage("other", ["its end status"], lambda: end(status))
