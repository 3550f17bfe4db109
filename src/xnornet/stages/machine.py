"""DVC stage `machine` (always runs, in well under a second): metrics/machine.json, the fingerprint
of this machine. The speed stages depend on that file, so a clone on another CPU reruns them and
a second `dvc repro` on the same one does not."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from xnornet.files import write_metrics
from xnornet.machine import fingerprint
from xnornet.stages import stage_main


@stage_main("paths.metrics_dir")
def main(cfg: DictConfig) -> None:
    machine = fingerprint()
    write_metrics(Path(cfg.paths.metrics_dir) / "machine.json", machine)
    print(json.dumps(machine))


if __name__ == "__main__":
    main()
