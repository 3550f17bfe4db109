"""DVC stage `headline`: metrics/headline.json, the few figures `dvc metrics show` and `dvc exp
show` print (xnornet.reporting.headline); the detailed metrics files stay plain outputs."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from xnornet.files import write_metrics
from xnornet.reporting.headline import headline
from xnornet.stages import stage_main


@stage_main("paths.metrics_dir")
def main(cfg: DictConfig) -> None:
    metrics = Path(cfg.paths.metrics_dir)
    figures = headline(metrics)
    write_metrics(metrics / "headline.json", figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
