"""Silence what a user should not see on every run, and nothing else.

Each filter names one message (and where it comes from), so a new or real warning still shows:
- torch's FutureWarning that Lightning's own pytree helper still checks ``isinstance(…, LeafSpec)``
  (a dependency's deprecation; nothing the user can act on);
- Lightning's advertising tip for litlogger, and its "GPU/TPU available: False" lines on a CPU
  run (a GPU that is present but unused still gets Lightning's warning);
- MLflow's "Creating initial MLflow database tables..." / "Updating database tables" on a new store;
- urllib3's "Retrying (…) after connection broken" per retry of a request to a tracking server that
  is down: the stage says so itself, in one line naming the URI (xnornet.tracking_http);
- the model summary's "Total FLOPs: 0" and its column of zeros: Lightning counts FLOPs only for a
  module with an ``example_input_array``; when it measured nothing the column is dropped.

``install()`` is idempotent; the stages call it first (xnornet.stages.stage_main), and it
imports nothing heavy.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import warnings

WARNINGS = [  # (category, message regex): each a dependency's deprecation, not the user's code
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
]

LOG_MESSAGES = {  # logger → regex of the records it should not print
    "pytorch_lightning.utilities.rank_zero": (
        r"💡 Tip: .*litlogger.*"
        r"|[GTH]PU available: False, used: False"
        r"|TPU available: False, using: 0 TPU cores"
    ),
    "lightning_fabric.utilities.rank_zero": r"💡 Tip: .*litlogger.*",
    "mlflow.store.db.utils": r"Creating initial MLflow database tables\.\.\.|Updating database tables",
    "urllib3.connectionpool": r"Retrying \(.*",
}


class DropMessages(logging.Filter):
    """Drop the records whose whole message matches one regex."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.fullmatch(record.getMessage().strip())


def _without_zero_flops(summarize):
    """Wrap RichModelSummary.summarize: with nothing measured (total 0), no FLOPs column or total."""

    @functools.wraps(summarize)
    def wrapped(summary_data, *args, total_flops: int = 0, **kwargs):
        if total_flops:
            return summarize(summary_data, *args, total_flops=total_flops, **kwargs)
        import rich.table

        data = [column for column in summary_data if column[0] != "FLOPs"]
        table = rich.table.Table
        rich.table.Table = _table_without_flops()  # summarize imports it at call time
        try:
            return summarize(data, *args, total_flops=0, **kwargs)
        finally:
            rich.table.Table = table

    wrapped.xnornet_quiet = True
    return wrapped


@functools.cache
def _table_without_flops() -> type:
    from rich.table import Table

    class TableWithoutFlops(Table):
        """A rich Table that leaves out the FLOPs column and the "Total FLOPs" row."""

        def add_column(self, header="", *args, **kwargs) -> None:
            if header != "FLOPs":
                super().add_column(header, *args, **kwargs)

        def add_row(self, *cells, **kwargs) -> None:
            if not (cells and "Total FLOPs" in str(cells[0])):
                super().add_row(*cells, **kwargs)

    return TableWithoutFlops


def patch_model_summary() -> None:
    """Drop the zero FLOPs from Lightning's model summary; ``install`` does it when Lightning is
    loaded already, and the trainer's builder before any fit (xnornet.builders), so that a stage
    that trains nothing never pays Lightning's import (3–4 s)."""
    try:
        from pytorch_lightning.callbacks.rich_model_summary import RichModelSummary
    except ImportError:  # Lightning not installed (the bare-host bench): nothing to patch
        return
    if not getattr(RichModelSummary.summarize, "xnornet_quiet", False):
        RichModelSummary.summarize = staticmethod(_without_zero_flops(RichModelSummary.summarize))


def install() -> None:
    """Install every filter (again: no effect)."""
    for category, message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, pattern in LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(pattern))
    if "pytorch_lightning" in sys.modules:
        patch_model_summary()
