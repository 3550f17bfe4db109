"""DVC stage `train@<variant>`: python -m xnornet.train model=fp|bwn|xnor (Hydra multirun works)."""

from __future__ import annotations

from omegaconf import DictConfig

from xnornet.cli import output_root, stage_main
from xnornet.training import train_variant


@stage_main
def main(cfg: DictConfig) -> None:
    metrics = train_variant(cfg, output_root())
    print(
        f"{metrics['variant']}: test_acc={metrics['test_acc']:.4f} "
        f"({metrics['epochs']} epochs, {metrics['seconds_per_epoch']:.1f} s/epoch)"
    )


if __name__ == "__main__":
    main()
