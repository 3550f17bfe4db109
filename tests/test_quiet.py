"""xnornet.quiet drops exactly the noise it names, and lets every other warning and line through."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from xnornet import quiet

LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."


def shown(message: str, category: type[Warning]) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.install()  # inside the block: the filters it adds go when the block ends
        warnings.warn(message, category, stacklevel=1)
    return bool(caught)


def test_named_deprecation_is_dropped_and_others_are_shown():
    assert not shown(LEAFSPEC, FutureWarning)
    assert shown("`isinstance(x, Other)` is deprecated", FutureWarning)
    assert shown(LEAFSPEC, UserWarning)  # the same words as another category: not the one named


@pytest.mark.parametrize(
    "logger,message,dropped",
    [
        ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging, try installing "
         "litlogger to enable LitLogger.", True),
        ("pytorch_lightning.utilities.rank_zero", "GPU available: False, used: False", True),
        ("pytorch_lightning.utilities.rank_zero", "TPU available: False, using: 0 TPU cores", True),
        ("pytorch_lightning.utilities.rank_zero", "GPU available: True (cuda), used: True", False),
        ("pytorch_lightning.utilities.rank_zero", "`Trainer.fit` stopped: `max_epochs=1` reached.", False),
        ("mlflow.store.db.utils", "Creating initial MLflow database tables...", True),
        ("mlflow.store.db.utils", "Database migration failed", False),
    ],
)  # fmt: skip
def test_named_log_lines_are_dropped_and_others_kept(logger, message, dropped):
    quiet.install()
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, None, None)
    assert logging.getLogger(logger).filter(record) is not dropped


def summary(total_flops: int) -> str:
    from pytorch_lightning.callbacks.rich_model_summary import RichModelSummary
    from rich import get_console

    quiet.install()
    data = [(" ", ["0"]), ("Name", ["net"]), ("Type", ["LeNet5"]), ("Params", ["432 K"]),
            ("Mode", ["train"]), ("FLOPs", ["2.3 M" if total_flops else "0"])]  # fmt: skip
    with get_console().capture() as capture:
        modes = {"train": 14, "eval": 0}
        RichModelSummary.summarize(data, 432_000, 432_000, 1.7, modes, total_flops=total_flops)
    return capture.get()


def test_summary_leaves_out_flops_only_when_none_were_counted():
    text = summary(0)
    assert "FLOPs" not in text and "Total params" in text and "LeNet5" in text
    assert "Total FLOPs" in summary(2_300_000)


def test_a_stage_that_trains_nothing_never_imports_lightning():
    """Lightning's import is 3–4 s of every stage's start; only the stages that train pay it."""
    code = (
        "import sys; import xnornet.stages.machine; from xnornet import quiet; quiet.install(); "
        "print('pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
